import Connectors
import Bootstrap
import AsyncHTTPClient
import Foundation
import GRDB
import Kafka
import Logging
import Metrics
import Model
import Synchronization
import Telemetry
import ServiceLifecycle
import Worker

/// A shop on a platform: where stock is pushed and shipments are written back.
public struct Channel: Sendable, Hashable {
    public var platform: Platform
    public var shopID: String
    public init(platform: Platform, shopID: String) {
        self.platform = platform
        self.shopID = shopID
    }
    var key: String { "\(platform.slug):\(shopID)" }
}

/// How much of the warehouse's available stock a channel may sell.
public struct ChannelAllocation: Sendable, Equatable {
    /// Share of available stock offered on this channel, 0...1 (default 1: all of it).
    public var share: Double
    /// Units held back from this channel (default 0).
    public var safetyStock: Int64

    public init(share: Double = 1, safetyStock: Int64 = 0) {
        self.share = share
        self.safetyStock = safetyStock
    }

    /// The quantity to show on the channel: `max(0, floor(available × share) − safety stock)`.
    public func quantity(available: Int64) -> Int64 {
        max(0, Int64((Double(max(0, available)) * min(1, max(0, share))).rounded(.down)) - safetyStock)
    }
}

/// Why a platform call failed: the platform's own code and message are kept for the dead letter.
public enum OutboundError: Error, Equatable, CustomStringConvertible {
    /// Worth retrying (network, 5xx, rate limit, system busy).
    case retryable(String)
    /// The platform refused the request itself (unknown SKU, order already shipped, ...): dead-letter at once.
    case permanent(String)

    public var description: String {
        switch self {
        case .retryable(let m): "retryable: \(m)"
        case .permanent(let m): "refused: \(m)"
        }
    }
}

/// A platform's stock and shipment write-back calls.
public protocol ChannelClient: Sendable {
    var platform: Platform { get }
    func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError)
    func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError)
}

/// Settings of the outbound dispatcher.
public struct OutboundConfiguration: Sendable {
    /// Calls per second per shop (the platforms limit per app and shop). Default 5.
    public var callsPerSecondPerShop: Double = 5
    /// Attempts before a job is dead-lettered. Default 8.
    public var maxAttempts = 8
    /// Backoff before retry n: `initialBackoff × 2^(n−1)`, at most `maxBackoff`.
    public var initialBackoff: Duration = .seconds(1)
    public var maxBackoff: Duration = .seconds(300)
    public init() {}
}

/// `livesync-channels`' settings, read once at start; each default is stated once, here or in
/// `OutboundConfiguration`.
public struct ChannelsConfiguration: Sendable {
    /// `channels.list`: the channels that get stock, with their allocation (`douyin:shop-1=0.5/2;taobao:tb-1`). Default none.
    public var channels: [Channel: ChannelAllocation] = [:]
    /// `channels.skuMap`: each channel's id of a LiveSync SKU where it differs. Default none.
    public var skuMap: [Channel: [String: String]] = [:]
    /// `channels.tokens`: access token per channel (`platform:shop=token;…`, `*` for every shop). Default none.
    public var tokens: [String: String] = [:]
    /// `channels.callsPerSecondPerShop` and `channels.maxAttempts` over the dispatcher's defaults.
    public var outbound = OutboundConfiguration()

    public init() {}

    /// Reads the settings; a malformed list, map or number is refused naming the setting.
    public static func load(_ settings: LiveSyncConfig) throws -> ChannelsConfiguration {
        var c = ChannelsConfiguration()
        c.channels = try ChannelList.parse(settings.string("channels.list", default: ""))
        c.skuMap = try ChannelSKUMap.parse(settings.string("channels.skuMap", default: ""))
        c.tokens = AccessTokens.parse(settings.string("channels.tokens", default: "")).tokens
        c.outbound.callsPerSecondPerShop = Double(try settings.int("channels.callsPerSecondPerShop", default: Int(c.outbound.callsPerSecondPerShop)))
        c.outbound.maxAttempts = try settings.int("channels.maxAttempts", default: c.outbound.maxAttempts)
        return c
    }
}

/// Stock levels and shipments to send to the channels, kept in SQLite so nothing is lost across
/// restarts. Stock jobs are coalesced: while a push for a channel SKU is pending, a newer level
/// replaces it (only the latest value matters). A job that keeps failing is dead-lettered with
/// the platform's error, in the table and (when a producer is given) on the `deadletter` topic.
public final class OutboundQueue: Sendable {
    public let database: DatabaseQueue

    public convenience init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        try self.init(database: path == ":memory:" ? try DatabaseQueue(configuration: config) : try DatabaseQueue(path: path, configuration: config))
    }

    /// The queue in an existing database (a consumer's state store, so that jobs are queued in
    /// the same transaction as the consumed offsets).
    public init(database: DatabaseQueue) throws {
        self.database = database
        try database.write { db in try Self.createSchema(db) }
    }

    public static func createSchema(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS outbound_jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                channel TEXT NOT NULL, kind TEXT NOT NULL, job_key TEXT NOT NULL, payload TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_us INTEGER NOT NULL, last_error TEXT NOT NULL DEFAULT '', updated_at_us INTEGER NOT NULL);
            CREATE UNIQUE INDEX IF NOT EXISTS outbound_pending ON outbound_jobs (channel, kind, job_key) WHERE status = 'pending';
            """)
    }

    /// Queues the channel quantity for `sku`, replacing a pending push of the same SKU.
    public func enqueueStock(_ channel: Channel, sku: String, quantity: Int64, now: Int64 = Model.Clock.nowMicros()) throws {
        try database.write { db in try Self.enqueueStock(db, channel, sku: sku, quantity: quantity, now: now) }
    }

    /// The same inside the caller's transaction.
    public static func enqueueStock(_ db: Database, _ channel: Channel, sku: String, quantity: Int64, now: Int64 = Model.Clock.nowMicros()) throws {
        // Cached: prepared once per connection, not per SKU of every batch (GRDB's authorizer
        // runs on each preparation).
        try db.cachedStatement(sql: """
            INSERT INTO outbound_jobs (channel, kind, job_key, payload, next_attempt_us, updated_at_us) VALUES (?, 'stock', ?, ?, ?, ?)
            ON CONFLICT (channel, kind, job_key) WHERE status = 'pending' DO UPDATE SET payload = excluded.payload, updated_at_us = excluded.updated_at_us
            """).execute(arguments: [channel.key, sku, String(quantity), now, now])
    }

    /// Queues a shipment write-back (one per order and tracking number).
    public func enqueueShipment(_ channel: Channel, platformOrderID: String, carrier: String, trackingNumber: String, now: Int64 = Model.Clock.nowMicros()) throws {
        try database.write { db in
            try Self.enqueueShipment(db, channel, platformOrderID: platformOrderID, carrier: carrier, trackingNumber: trackingNumber, now: now)
        }
    }

    /// The same inside the caller's transaction.
    public static func enqueueShipment(_ db: Database, _ channel: Channel, platformOrderID: String, carrier: String, trackingNumber: String, now: Int64 = Model.Clock.nowMicros()) throws {
        let payload = JSON.encode(["carrier": carrier, "tracking": trackingNumber])
        try db.cachedStatement(sql: """
            INSERT INTO outbound_jobs (channel, kind, job_key, payload, next_attempt_us, updated_at_us) VALUES (?, 'shipment', ?, ?, ?, ?)
            ON CONFLICT (channel, kind, job_key) WHERE status = 'pending' DO UPDATE SET payload = excluded.payload
            """).execute(arguments: [channel.key, platformOrderID + "|" + trackingNumber, payload, now, now])
    }

    public struct Job: Sendable {
        public var id: Int64
        public var channel: String
        public var kind: String
        public var key: String
        public var payload: String
        public var attempts: Int
    }

    func due(now: Int64, limit: Int) throws -> [Job] {
        try database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, channel, kind, job_key, payload, attempts FROM outbound_jobs
                WHERE status = 'pending' AND next_attempt_us <= ? ORDER BY next_attempt_us, id LIMIT ?
                """, arguments: [now, limit]).map { Job(id: $0[0], channel: $0[1], kind: $0[2], key: $0[3], payload: $0[4], attempts: $0[5]) }
        }
    }

    /// Ends a job that was sent (or refused) with `payload`. A pending job whose payload was
    /// replaced while it was in flight (a newer stock level) stays pending, so the newer value is
    /// sent too; returns whether the job ended.
    @discardableResult
    func finish(_ id: Int64, payload: String, status: String, error: String = "", now: Int64) throws -> Bool {
        try database.write { db in try Self.finish(db, id, payload: payload, status: status, error: error, now: now) }
    }

    /// Marks stock pushes sent, all in one transaction (a pass sends hundreds; one commit each
    /// cost an fsync each). Same rule as `finish` for a payload replaced in flight.
    func finishSent(_ jobs: [(id: Int64, payload: String)], now: Int64) throws {
        guard !jobs.isEmpty else { return }
        try database.write { db in
            for job in jobs { _ = try Self.finish(db, job.id, payload: job.payload, status: "done", now: now) }
        }
    }

    private static func finish(_ db: Database, _ id: Int64, payload: String, status: String, error: String = "", now: Int64) throws -> Bool {
        try db.cachedStatement(sql: "UPDATE outbound_jobs SET status = ?, last_error = ?, updated_at_us = ? WHERE id = ? AND payload = ?")
            .execute(arguments: [status, error, now, id, payload])
        return db.changesCount == 1
    }

    func retry(_ id: Int64, attempts: Int, at: Int64, error: String, now: Int64) throws {
        try database.write { db in
            try db.execute(sql: "UPDATE outbound_jobs SET attempts = ?, next_attempt_us = ?, last_error = ?, updated_at_us = ? WHERE id = ?",
                           arguments: [attempts, at, error, now, id])
        }
    }

    /// Jobs by status (`pending`, `done`, `dead`).
    public func count(_ status: String) throws -> Int {
        try database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM outbound_jobs WHERE status = ?", arguments: [status]) ?? 0 }
    }

    public func deadLetters() throws -> [(channel: String, key: String, error: String)] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT channel, job_key, last_error FROM outbound_jobs WHERE status = 'dead' ORDER BY id").map { ($0[0], $0[1], $0[2]) }
        }
    }
}

/// `livesync_outbound_calls_total{platform, kind, outcome}`: every job the dispatcher finished a
/// pass on, by platform (`douyin`, …), kind (`stock`, `shipment`) and outcome (`ok` sent, `retry`
/// failed and rescheduled, `dead` refused, out of attempts or without a client). Counters are
/// created once per label set and cached; an increment is an atomic add.
public final class OutboundMetrics: Sendable {
    private let factory: (any MetricsFactory)?
    private let counters = Mutex<[String: Counter]>([:])

    /// Counters of the process's metrics system (`MetricsSystem.bootstrap`), or of `factory`.
    public init(factory: (any MetricsFactory)? = nil) { self.factory = factory }

    public func record(platform: String, kind: String, outcome: String) {
        let key = "\(platform)|\(kind)|\(outcome)"
        let counter = counters.withLock { c in
            if let counter = c[key] { return counter }
            let dimensions = [("platform", platform), ("kind", kind), ("outcome", outcome)]
            let counter = factory.map { Counter(label: MetricNames.outboundCalls, dimensions: dimensions, factory: $0) }
                ?? Counter(label: MetricNames.outboundCalls, dimensions: dimensions)
            c[key] = counter
            return counter
        }
        counter.increment()
    }
}

/// Sends due jobs to the platforms: per-shop rate limit, retries with exponential backoff, and
/// dead letters carrying the platform's error once a job is refused or out of attempts.
public struct OutboundDispatcher: Sendable {
    public var queue: OutboundQueue
    public var clients: [Platform: any ChannelClient]
    /// Access token per channel key (`platform:shop`).
    public var tokens: [String: String]
    public var configuration: OutboundConfiguration
    public var deadLetterProducer: KafkaProducer?
    public var logger: Logger
    public var metrics: OutboundMetrics
    /// When jobs are due and retries scheduled (injected in tests).
    public var clock: WallClock
    let limiter = RateLimiter()

    public init(queue: OutboundQueue, clients: [Platform: any ChannelClient], tokens: [String: String], configuration: OutboundConfiguration = .init(),
                deadLetterProducer: KafkaProducer? = nil, metrics: OutboundMetrics = OutboundMetrics(), clock: WallClock = .system, logger: Logger) {
        self.clock = clock
        self.queue = queue
        self.clients = clients
        self.tokens = tokens
        self.configuration = configuration
        self.deadLetterProducer = deadLetterProducer
        self.metrics = metrics
        self.logger = logger
    }

    public struct RunResult: Sendable, Equatable {
        public var sent = 0
        public var retried = 0
        public var dead = 0
        public init() {}
    }

    /// Sends every job due now (one pass). Returns what happened. Stops between jobs when the
    /// process shuts down (a pass can take minutes under the per-shop rate limit); the jobs left
    /// stay pending in SQLite for the next start.
    public func runOnce(limit: Int = 500) async throws -> RunResult {
        var result = RunResult()
        // Sent stock pushes are marked done in batches: at most `settleEvery` jobs or
        // `settleInterval` after the first, and at the end of the pass. A crash in between sends
        // those levels again, which is harmless: a push sets an absolute quantity.
        var sent: [(id: Int64, payload: String)] = []
        var firstSentAt: Int64 = 0
        func settleSent(force: Bool) throws {
            guard !sent.isEmpty else { return }
            let now = clock.nowMicros()
            guard force || sent.count >= Self.settleEvery || now - firstSentAt >= Self.settleInterval.wholeMicroseconds else { return }
            try queue.finishSent(sent, now: now)
            sent.removeAll(keepingCapacity: true)
        }
        defer { try? settleSent(force: true) }
        for job in try queue.due(now: clock.nowMicros(), limit: limit) {
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            let parts = job.channel.split(separator: ":", maxSplits: 1).map(String.init)
            guard parts.count == 2, let platform = Platform.allCases.first(where: { $0.slug == parts[0] }), let client = clients[platform] else {
                try await deadLetter(job, error: "no client configured for channel \(job.channel)")
                result.dead += 1
                metrics.record(platform: parts[0], kind: job.kind, outcome: "dead")
                continue
            }
            await limiter.wait(job.channel, perSecond: configuration.callsPerSecondPerShop)
            let token = tokens[job.channel] ?? tokens["\(parts[0]):*"] ?? ""
            let outcome: OutboundError?
            do {
                if job.kind == "stock" {
                    try await client.pushStock(shopID: parts[1], sku: job.key, quantity: Int64(job.payload) ?? 0, accessToken: token)
                } else {
                    let p = (try? JSON.object(Array(job.payload.utf8))) ?? [:]
                    let order = String(job.key.split(separator: "|").first ?? "")
                    try await client.confirmShipment(shopID: parts[1], platformOrderID: order, carrier: JSON.string(p["carrier"]) ?? "",
                                                     trackingNumber: JSON.string(p["tracking"]) ?? "", accessToken: token)
                }
                outcome = nil
            } catch {
                outcome = error
            }
            let now = clock.nowMicros()
            switch outcome {
            case nil where job.kind == "stock":
                if sent.isEmpty { firstSentAt = now }
                sent.append((job.id, job.payload))
                try settleSent(force: false)
                result.sent += 1
                metrics.record(platform: platform.slug, kind: job.kind, outcome: "ok")
            case nil:
                // A shipment is marked at once: sending one twice is not harmless everywhere.
                try queue.finish(job.id, payload: job.payload, status: "done", now: now)
                result.sent += 1
                metrics.record(platform: platform.slug, kind: job.kind, outcome: "ok")
            case .retryable(let m)? where job.attempts + 1 < configuration.maxAttempts:
                let attempts = job.attempts + 1
                let backoff = min(configuration.maxBackoff, configuration.initialBackoff * (1 << min(attempts - 1, 20)))
                try queue.retry(job.id, attempts: attempts, at: now + backoff.wholeMicroseconds, error: m, now: now)
                result.retried += 1
                metrics.record(platform: platform.slug, kind: job.kind, outcome: "retry")
            case .retryable(let m)?, .permanent(let m)?:
                try await deadLetter(job, error: m)
                result.dead += 1
                metrics.record(platform: platform.slug, kind: job.kind, outcome: "dead")
            }
        }
        try settleSent(force: true)
        return result
    }

    static let settleEvery = 128
    static let settleInterval: Duration = .milliseconds(200)

    func deadLetter(_ job: OutboundQueue.Job, error: String) async throws {
        let now = clock.nowMicros()
        // A newer level replaced the refused one in flight: it stays pending and is tried on its own.
        guard try queue.finish(job.id, payload: job.payload, status: "dead", error: error, now: now) else { return }
        logger.error("outbound call dead-lettered", metadata: ["channel": "\(job.channel)", "kind": "\(job.kind)", "key": "\(job.key)", "error": "\(error)"])
        guard let producer = deadLetterProducer else { return }
        var letter = DeadLetter()
        letter.sourceTopic = "outbound.\(job.kind)"
        letter.key = Data("\(job.channel):\(job.key)".utf8)
        letter.value = Data(job.payload.utf8)
        letter.error = error
        letter.consumerGroup = "livesync-outbound"
        letter.failedAtUs = now
        try await producer.send([ProducerMessage(topic: Topics.deadLetter, key: job.channel, value: letter.bytes)])
    }
}

/// Spaces calls per key to at most `perSecond` (a shop's share of the platform's rate limit).
actor RateLimiter {
    private var next: [String: ContinuousClock.Instant] = [:]

    func wait(_ key: String, perSecond: Double) async {
        guard perSecond > 0 else { return }
        let interval = Duration.nanoseconds(Int64(1_000_000_000 / perSecond))
        let now = ContinuousClock.now
        let slot = max(now, next[key] ?? now)
        next[key] = slot + interval
        if slot > now { try? await Task.sleep(until: slot) }
    }
}

/// Douyin shop: `sku.syncStock` (by merchant code) and `order.logisticsAdd`.
public struct DouyinChannelClient: ChannelClient {
    public let platform: Platform = .douyin
    let gateway: DouyinGateway

    public init(baseURL: String = "https://openapi-fxg.jinritemai.com", appKey: String, appSecret: String, client: HTTPClient) {
        self.gateway = DouyinGateway(baseURL: baseURL, appKey: appKey, appSecret: appSecret, http: PlatformHTTP(client: client))
    }

    func call(_ method: String, _ param: [String: Any], token: String) async throws(OutboundError) {
        let r: (code: Int64, text: String, body: [String: Any])
        do { r = try await gateway.call(method, param, accessToken: token) } catch { throw .retryable("\(error)") }
        // Douyin's error catalogue: 20000 service unavailable, 20001 internal timeout and 60000
        // (`isv.traffic-limited`) throttling are worth retrying; 4xxxx (parameters, signature, token),
        // 3xxxx (permissions) and 5xxxx (the platform refused the business operation) are not.
        guard r.code == 10000 else {
            let retry = [20000, 20001, 60000].contains(r.code) || JSON.string(r.body["sub_code"]) == "isv.traffic-limited"
            throw retry ? .retryable(r.text) : .permanent(r.text)
        }
    }

    public func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        try await call("sku.syncStock", ["code": sku, "stock_num": quantity, "incremental": false], token: accessToken)
    }

    public func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {
        try await call("order.logisticsAdd", ["order_id": platformOrderID, "company_code": carrier, "logistics_code": trackingNumber], token: accessToken)
    }
}

/// Taobao TOP: `taobao.item.quantity.update` (by outer SKU id) and `taobao.logistics.offline.send`.
public struct TaobaoChannelClient: ChannelClient {
    public let platform: Platform = .taobao
    public var api: TaobaoPollAPI

    public init(api: TaobaoPollAPI) { self.api = api }

    func call(_ method: String, _ params: [String: String]) async throws(OutboundError) {
        do {
            _ = try await api.call(method, params)
        } catch {
            switch error {
            case .rateLimited(let m): throw .retryable(m)
            case .tokenExpired(let m): throw .permanent("session expired: \(m)")
            case .failed(let m): throw m.hasPrefix("TOP error") ? .permanent(m) : .retryable(m)
            }
        }
    }

    public func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        // The channel SKU is `num_iid:sku_id` (or `num_iid` for an item without SKUs); type 1 sets the total.
        let ids = sku.split(separator: ":").map(String.init)
        guard let numIID = ids.first, Int64(numIID) != nil else { throw .permanent("Taobao channel SKU '\(sku)' is not num_iid[:sku_id]; map it in the channel SKU map") }
        var params = ["session": accessToken, "num_iid": numIID, "quantity": String(quantity), "type": "1"]
        if ids.count > 1 { params["sku_id"] = ids[1] }
        try await call("taobao.item.quantity.update", params)
    }

    public func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {
        try await call("taobao.logistics.offline.send", ["session": accessToken, "tid": platformOrderID, "out_sid": trackingNumber, "company_code": carrier])
    }
}

/// The channel-stock consumer: reads `stock.reservations`, keeps each SKU's latest available
/// level per warehouse, and queues every channel's quantity for the SKUs whose total changed —
/// in the batch's transaction, with the consumed offsets. It also reads `fulfillment.shipped`
/// and queues each shipment's write-back once (`ShipmentWriteBack`).
public final class ChannelStockProcessor: BatchProcessor {
    public let fanout: [Channel: ChannelAllocation]
    public let skuMap: [Channel: [String: String]]

    public init(channels: [Channel: ChannelAllocation], skuMap: [Channel: [String: String]] = [:]) {
        self.fanout = channels
        self.skuMap = skuMap
    }

    public func prepare(_ db: Database) throws {
        try OutboundQueue.createSchema(db)
        try ShipmentWriteBack.createSchema(db)
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS channel_levels (
                sku TEXT NOT NULL, warehouse TEXT NOT NULL, available INTEGER NOT NULL,
                PRIMARY KEY (sku, warehouse)) WITHOUT ROWID;
            """)
    }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        var latest: [String: [String: Int64]] = [:]
        for message in messages {
            if message.topic == Topics.shipmentsShipped {
                try ShipmentWriteBack.apply(message, db: db, output: &output, now: Model.Clock.nowMicros())
                continue
            }
            guard message.topic == Topics.stockReservations, let r = try? Reservation(serializedBytes: message.value), !r.sku.isEmpty else {
                output.deadLetter(message, error: "not a Reservation on \(Topics.stockReservations)")
                continue
            }
            latest[r.sku, default: [:]][r.warehouse] = r.availableAfter
        }
        let now = Model.Clock.nowMicros()
        let upsertLevel = try db.cachedStatement(sql: """
            INSERT INTO channel_levels (sku, warehouse, available) VALUES (?, ?, ?)
            ON CONFLICT (sku, warehouse) DO UPDATE SET available = excluded.available
            """)
        let sumLevels = try db.cachedStatement(sql: "SELECT SUM(MAX(available, 0)) FROM channel_levels WHERE sku = ?")
        for (sku, levels) in latest {
            for (warehouse, available) in levels {
                try upsertLevel.execute(arguments: [sku, warehouse, available])
            }
            let total = try Int64.fetchOne(sumLevels, arguments: [sku]) ?? 0
            for (channel, allocation) in fanout {
                try OutboundQueue.enqueueStock(db, channel, sku: skuMap[channel]?[sku] ?? sku, quantity: allocation.quantity(available: total), now: now)
            }
        }
    }
}

/// Runs the dispatcher every `interval` until shutdown.
public struct OutboundService: Service {
    public var dispatcher: OutboundDispatcher
    public var interval: Duration

    public init(dispatcher: OutboundDispatcher, interval: Duration = .milliseconds(500)) {
        self.dispatcher = dispatcher
        self.interval = interval
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do { _ = try await dispatcher.runOnce() } catch {
                dispatcher.logger.error("outbound pass failed", metadata: ["error": "\(error)"])
            }
            guard await pauseUnlessShuttingDown(for: interval) else { break }
        }
    }
}

/// Channels from `channels.list`: `douyin:shop-1=0.5/2;taobao:tb-1` (platform:shop[=share[/safety stock]]).
public enum ChannelList {
    public static func parse(_ text: String) throws -> [Channel: ChannelAllocation] {
        var result: [Channel: ChannelAllocation] = [:]
        for entry in text.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let kv = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let ps = kv[0].split(separator: ":", maxSplits: 1).map(String.init)
            guard ps.count == 2, let platform = Platform.allCases.first(where: { $0.slug == ps[0] }) else {
                throw ConfigurationError("channels.list entry '\(entry)' is not platform:shop[=share[/safety]]")
            }
            var allocation = ChannelAllocation()
            if kv.count == 2 {
                let parts = kv[1].split(separator: "/").map(String.init)
                guard let share = Double(parts[0]), (0...1).contains(share), parts.count < 2 || Int64(parts[1]) != nil else {
                    throw ConfigurationError("channels.list entry '\(entry)': share must be 0...1 and safety stock an integer")
                }
                allocation = ChannelAllocation(share: share, safetyStock: parts.count > 1 ? Int64(parts[1])! : 0)
            }
            result[Channel(platform: platform, shopID: ps[1])] = allocation
        }
        return result
    }
}

/// The channel SKU map from `channels.skuMap`: `taobao:tb-1:SKU-1=6001:42;kuaishou:ks-1:SKU-1=5100:88`
/// (platform:shop:LiveSync SKU=channel SKU). The LiveSync SKU is everything after the second `:`.
public enum ChannelSKUMap {
    public static func parse(_ text: String) throws -> [Channel: [String: String]] {
        var result: [Channel: [String: String]] = [:]
        for entry in text.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let kv = entry.split(separator: "=", maxSplits: 1).map(String.init)
            let left = kv[0].split(separator: ":", maxSplits: 2).map(String.init)
            guard kv.count == 2, !kv[1].isEmpty, left.count == 3, !left[1].isEmpty, !left[2].isEmpty,
                  let platform = Platform.allCases.first(where: { $0.slug == left[0] }) else {
                throw ConfigurationError("channels.skuMap entry '\(entry)' is not platform:shop:sku=channelSku")
            }
            result[Channel(platform: platform, shopID: left[1]), default: [:]][left[2]] = kv[1]
        }
        return result
    }
}
