import Bootstrap
import Foundation
import GRDB
import Ingest
import Logging
import Model
import ServiceLifecycle
import Worker

/// One page of orders from a platform's incremental order search.
public struct PolledPage: Sendable {
    /// Each order's JSON (as the platform returns it, encoded) with its id and update time.
    public var orders: [(platformOrderID: String, updatedAt: Int64, json: [UInt8])]
    public var hasMore: Bool

    public init(orders: [(platformOrderID: String, updatedAt: Int64, json: [UInt8])], hasMore: Bool) {
        self.orders = orders
        self.hasMore = hasMore
    }
}

/// Why a poll call failed, as the engine needs to react to it.
public enum PollError: Error, Equatable, CustomStringConvertible {
    /// The platform's rate limit: back off and retry the same page.
    case rateLimited(String)
    /// The access token expired or was revoked: refresh it and retry.
    case tokenExpired(String)
    /// Anything else (network, 5xx, unexpected body): the cycle stops, the watermark stays.
    case failed(String)

    public var description: String {
        switch self {
        case .rateLimited(let m): "rate limited: \(m)"
        case .tokenExpired(let m): "access token expired: \(m)"
        case .failed(let m): m
        }
    }
}

/// A shop's OAuth tokens.
public struct ShopTokens: Sendable, Equatable {
    public var accessToken: String
    public var refreshToken: String
    public init(accessToken: String, refreshToken: String) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
    }
}

/// A platform's incremental order search ("orders updated between t1 and t2, page n") and
/// its token refresh, with the platform's request signing.
public protocol OrderPollAPI: Sendable {
    var platform: Platform { get }
    /// Longest window one query may span (Taobao: 1 day, Pinduoduo: 30 minutes, ...).
    var maxWindowSeconds: Int64 { get }
    func page(from: Int64, to: Int64, page: Int, pageSize: Int, accessToken: String) async throws(PollError) -> PolledPage
    func refresh(_ tokens: ShopTokens) async throws(PollError) -> ShopTokens
}

/// Settings of one shop's poller.
public struct PollerConfiguration: Sendable {
    /// Seconds re-read before the watermark on every cycle, so orders whose update became
    /// visible late (the platforms' search indexes lag) are not missed. Default 300.
    public var overlapSeconds: Int64 = 300
    /// The newest seconds are not read yet (index lag). Default 5.
    public var lagSeconds: Int64 = 5
    /// Where a new shop starts: this many seconds back. Default 3 days.
    public var initialLookbackSeconds: Int64 = 3 * 86_400
    public var pageSize = 50
    /// Backoff after a rate-limit answer: doubles from this, up to `maxBackoff`, `maxRetries` times.
    public var initialBackoff: Duration = .milliseconds(500)
    public var maxBackoff: Duration = .seconds(30)
    public var maxRetries = 6
    /// Time between cycles of the service.
    public var interval: Duration = .seconds(30)

    public init() {}
}

/// Per-shop poll state (watermark and tokens) in the connectors' SQLite database.
extension MessageLedger {
    func createPollSchema() throws {
        try database.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS poll_state (
                    platform TEXT NOT NULL, shop_id TEXT NOT NULL,
                    watermark INTEGER NOT NULL, access_token TEXT NOT NULL, refresh_token TEXT NOT NULL,
                    updated_at_us INTEGER NOT NULL,
                    PRIMARY KEY (platform, shop_id)) WITHOUT ROWID;
                """)
        }
    }

    public func pollState(_ platform: Platform, shop: String) throws -> (watermark: Int64, tokens: ShopTokens)? {
        try createPollSchema()
        return try database.read { db in
            try Row.fetchOne(db, sql: "SELECT watermark, access_token, refresh_token FROM poll_state WHERE platform = ? AND shop_id = ?",
                             arguments: [platform.slug, shop]).map { ($0[0], ShopTokens(accessToken: $0[1], refreshToken: $0[2])) }
        }
    }

    public func savePollState(_ platform: Platform, shop: String, watermark: Int64, tokens: ShopTokens) throws {
        try createPollSchema()
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO poll_state (platform, shop_id, watermark, access_token, refresh_token, updated_at_us) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (platform, shop_id) DO UPDATE SET watermark = excluded.watermark, access_token = excluded.access_token,
                    refresh_token = excluded.refresh_token, updated_at_us = excluded.updated_at_us
                """, arguments: [platform.slug, shop, watermark, tokens.accessToken, tokens.refreshToken, Model.Clock.nowMicros()])
        }
    }
}

/// Polls one shop: incremental by update time over `[watermark - overlap, now - lag]` in
/// windows the platform allows, page by page; each order not yet published (by push or an
/// earlier poll) is mapped and published by SKU; the watermark advances only after a whole
/// window was read and published, so a crash re-reads rather than skips.
public struct OrderPoller: Sendable {
    public var api: any OrderPollAPI
    public var shopID: String
    public var mapping: FieldMapping
    public var defaultWarehouse: String
    public var configuration: PollerConfiguration
    public var publisher: OrderPublisher
    public var ledger: MessageLedger
    public var logger: Logger
    /// Tokens to start with when the database has none for this shop.
    public var initialTokens: ShopTokens

    public init(api: any OrderPollAPI, shopID: String, mapping: FieldMapping? = nil, defaultWarehouse: String = "main", configuration: PollerConfiguration = .init(),
                publisher: OrderPublisher, ledger: MessageLedger, initialTokens: ShopTokens, logger: Logger) {
        self.api = api
        self.shopID = shopID
        // Douyin's search returns the same order objects as its detail API, without the envelope.
        self.mapping = mapping ?? (api.platform == .douyin ? .douyinSearch : FieldMapping.defaults(for: api.platform))
        self.defaultWarehouse = defaultWarehouse
        self.configuration = configuration
        self.publisher = publisher
        self.ledger = ledger
        self.initialTokens = initialTokens
        self.logger = logger
    }

    public struct CycleResult: Sendable, Equatable {
        public var seen = 0
        public var published = 0
        public var pages = 0
        public var rateLimited = 0
        public var refreshed = 0
        public var watermark: Int64 = 0
        public init() {}
    }

    /// One cycle up to `now` (Unix seconds).
    public func pollOnce(now: Int64 = Int64(Date().timeIntervalSince1970)) async throws -> CycleResult {
        let platform = api.platform
        let state = try ledger.pollState(platform, shop: shopID)
        var tokens = state?.tokens ?? initialTokens
        var watermark = state?.watermark ?? (now - configuration.initialLookbackSeconds)
        var result = CycleResult()
        let end = now - configuration.lagSeconds
        var from = max(0, watermark - configuration.overlapSeconds)
        while from < end {
            let to = min(end, from + api.maxWindowSeconds)
            var page = 1
            var newest = watermark
            while true {
                let got = try await fetch(from: from, to: to, page: page, tokens: &tokens, result: &result)
                result.pages += 1
                for o in got.orders {
                    result.seen += 1
                    newest = max(newest, o.updatedAt)
                    if try await publishIfNew(o.platformOrderID, json: o.json) { result.published += 1 }
                }
                guard got.hasMore, !got.orders.isEmpty else { break }
                page += 1
            }
            // The window is read and published: advance (never past what the platform showed).
            watermark = max(watermark, to)
            _ = newest
            try ledger.savePollState(platform, shop: shopID, watermark: watermark, tokens: tokens)
            from = to
        }
        result.watermark = watermark
        return result
    }

    /// One page with the shop's access token, refreshing it once when expired and backing off
    /// (doubling, bounded) while the platform answers with its rate limit.
    func fetch(from: Int64, to: Int64, page: Int, tokens: inout ShopTokens, result: inout CycleResult) async throws -> PolledPage {
        var backoff = configuration.initialBackoff
        var refreshed = false
        var attempt = 0
        while true {
            let error: PollError
            do {
                return try await api.page(from: from, to: to, page: page, pageSize: configuration.pageSize, accessToken: tokens.accessToken)
            } catch let e {
                error = e
            }
            switch error {
            case .tokenExpired(let m) where !refreshed:
                logger.info("refreshing access token", metadata: ["platform": "\(api.platform.slug)", "shop": "\(shopID)", "reason": "\(m)"])
                tokens = try await api.refresh(tokens)
                let watermark = try ledger.pollState(api.platform, shop: shopID)?.watermark ?? (from + configuration.overlapSeconds)
                try ledger.savePollState(api.platform, shop: shopID, watermark: watermark, tokens: tokens)
                refreshed = true
                result.refreshed += 1
            case .rateLimited(let m) where attempt < configuration.maxRetries:
                attempt += 1
                result.rateLimited += 1
                logger.warning("rate limited; backing off", metadata: ["platform": "\(api.platform.slug)", "shop": "\(shopID)", "wait": "\(backoff)", "reason": "\(m)"])
                try await Task.sleep(for: backoff)
                backoff = min(configuration.maxBackoff, backoff * 2)
            default:
                throw error
            }
        }
    }

    /// Publishes a polled order unless this order was already published (by a push or an
    /// earlier cycle): polled and pushed copies collapse into one.
    func publishIfNew(_ platformOrderID: String, json: [UInt8]) async throws -> Bool {
        let orderID = Identifiers.orderID(platform: api.platform, shop: shopID, platformOrderID: platformOrderID)
        if try ledger.orderPublished(orderID) { return false }
        guard let obj = try? JSONSerialization.jsonObject(with: Data(json)) else { throw PollError.failed("order \(platformOrderID) is not JSON") }
        let order: Order
        do {
            order = try mapping.order(from: obj, platform: api.platform, shopID: shopID, platformOrderID: platformOrderID,
                                      defaultWarehouse: defaultWarehouse, now: Model.Clock.nowMicros())
        } catch {
            // A platform order that does not map is reported, not silently skipped forever.
            logger.error("polled order does not map; fix connectors.\(api.platform.slug).mapping", metadata: ["order": "\(orderID)", "error": "\(error)"])
            throw error
        }
        try await publisher.publish(order)
        try ledger.markOrderPublished(orderID, via: "poll")
        return true
    }
}

/// Polls every configured shop of one platform every `interval` until shutdown.
public struct PollerService: Service {
    public var pollers: [OrderPoller]
    public var interval: Duration

    public init(pollers: [OrderPoller], interval: Duration) {
        self.pollers = pollers
        self.interval = interval
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            for poller in pollers {
                do {
                    let r = try await poller.pollOnce()
                    poller.logger.debug("poll cycle", metadata: ["platform": "\(poller.api.platform.slug)", "shop": "\(poller.shopID)",
                                                                 "seen": "\(r.seen)", "published": "\(r.published)"])
                } catch {
                    poller.logger.error("poll cycle failed; retrying next cycle", metadata: ["platform": "\(poller.api.platform.slug)", "shop": "\(poller.shopID)", "error": "\(error)"])
                }
            }
            guard await pauseUnlessShuttingDown(for: interval) else { break }
        }
    }
}
