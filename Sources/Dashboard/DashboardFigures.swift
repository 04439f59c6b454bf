import ErpSync
import Alerting
import Bootstrap
import Foundation
import Model
import ReadModel
import Telemetry
import Worker

/// Settings of the live dashboard.
public struct DashboardConfiguration: Sendable {
    /// The read model (`book.url`): ERP totals, waiting and recent orders, rejections and stock
    /// levels, in one snapshot per refresh. nil: those figures are empty (`unavailable` says so).
    public var book: BookClient?
    /// Alerting's telemetry server (`alerting.url`): the alert list and the late orders its last
    /// sweep found. nil or unreachable: those parts are empty; the rest of the page is not.
    public var alerting: AlertingClient?
    /// Orders waiting longer than this are listed as beyond the SLA. Default 5 s.
    public var slaSeconds: Double
    /// How often figures are recomputed and pushed to open pages. Default 5 s.
    public var refreshMilliseconds: Int
    /// Where the processes listed with their health and lag are found: their announcements on
    /// `livesync.instances`. nil: none are listed.
    public var instances: InstanceDirectory?

    public init(book: BookClient? = nil, alerting: AlertingClient? = nil, instances: InstanceDirectory? = nil,
                slaSeconds: Double = 5, refreshMilliseconds: Int = 5_000) {
        self.book = book
        self.alerting = alerting
        self.instances = instances
        self.slaSeconds = slaSeconds
        self.refreshMilliseconds = refreshMilliseconds
    }
}

/// Everything the page shows, computed from the read model (the ERP book's orders, sync times,
/// platforms, rejections and waiting orders; the stock levels), alerting's HTTP API (alerts,
/// late orders found on `orders.placed`) and the processes' `/readyz` (lag). Buyer data is
/// masked before it leaves this type.
public struct DashboardSnapshot: Sendable, Codable, Equatable {
    public struct Minute: Sendable, Codable, Equatable { public var minute: Int64; public var orders: Int }
    public struct HotSku: Sendable, Codable, Equatable {
        public var sku: String
        public var warehouse: String
        public var available: Int64
        public var soldLast5Min: Int64
        /// Units reserved over the last 5 minutes (from the stock store's counters, sampled each
        /// refresh); minutes to sell-out at that rate, nil when nothing sold.
        public var minutesToSellOut: Double?
        /// Units reserved so far (the stock store's counter the sales rate is derived from).
        public var reserved: Int64 = 0
    }
    public struct Platform: Sendable, Codable, Equatable { public var platform: String; public var synced: Int; public var failed: Int; public var cancelled: Int }
    public struct Rejection: Sendable, Codable, Equatable { public var sku: String; public var lines: Int }
    public struct Consumer: Sendable, Codable, Equatable { public var process: String; public var health: String; public var partitions: Int?; public var lag: Int64?; public var lastBatchAtUs: Int64? }
    public struct AlertRow: Sendable, Codable, Equatable { public var kind: String; public var message: String; public var createdAtUs: Int64; public var resolvedAtUs: Int64? }
    public struct RecentOrder: Sendable, Codable, Equatable {
        public var orderID: String
        public var platform: String
        public var status: String
        public var totalFen: Int64
        public var buyer: String
        public var phone: String
        public var syncMs: Double
    }

    public var generatedAtUs: Int64 = 0
    public var ordersPerMinute: [Minute] = []
    public var total = 0
    public var synced = 0
    public var failed = 0
    public var cancelled = 0
    public var waiting = 0
    public var avgSyncMs = 0.0
    public var p99SyncMs = 0.0
    public var unsyncedBeyondSla = 0
    public var unsyncedIDs: [String] = []
    public var hotSkus: [HotSku] = []
    public var rejectedLines = 0
    public var rejections: [Rejection] = []
    public var platforms: [Platform] = []
    public var consumers: [Consumer] = []
    public var alerts: [AlertRow] = []
    /// Each ERP target (`livesync-erp`), summed over its instances.
    public struct ErpTarget: Sendable, Codable, Equatable {
        public var target: String
        public var kind: String
        public var instances: Int
        /// Decided orders not in the ERP yet: queued plus not yet consumed.
        public var lag: Int
        public var pending: Int
        public var written: Int
        public var writtenPerSecond: Double
        /// Failed calls (retryable and refused) over all calls since the instances started.
        public var errorRate: Double
        /// Seconds to write the lag at the current rate; -1: nothing written while orders wait.
        public var drainEtaSeconds: Double?
        public var lastError: String
    }
    public var erp: [ErpTarget] = []
    public var recentOrders: [RecentOrder] = []
    /// The sources that could not be read for this snapshot (the read model, alerting), with the
    /// reason: their figures are empty rather than stale.
    public var unavailable: [String] = []
}

public enum DashboardFigures {

    public static func compute(_ configuration: DashboardConfiguration, now: Int64 = Clock.nowMicros()) async throws -> DashboardSnapshot {
        var s = await figures(configuration, now: now)
        if let instances = configuration.instances {
            do {
                s.consumers = try await ProcessStatus.collect(discovering: instances, timeout: .seconds(2)).map {
                    .init(process: $0.process, health: $0.health, partitions: $0.partitions, lag: $0.lag, lastBatchAtUs: $0.lastBatchAtUs)
                }
            } catch {
                // Said on the page rather than an empty list that would look like no process runs.
                s.consumers = [.init(process: Topics.instances, health: "unreadable: \(error)", partitions: nil, lag: nil, lastBatchAtUs: nil)]
            }
            do {
                s.erp = erpTargets(try await ErpClient.discover(instances).status())
            } catch {
                s.unavailable.append("ERP sync: \(error)")
            }
        }
        return s
    }

    /// Instances' statuses summed per target.
    static func erpTargets(_ statuses: [ErpStatus]) -> [DashboardSnapshot.ErpTarget] {
        Dictionary(grouping: statuses, by: \.target).map { target, rows in
            let lag = rows.reduce(0) { $0 + $1.queued + Int($1.consumerLag) }
            let rate = rows.reduce(0.0) { $0 + $1.statistics.writtenPerSecond }
            let calls = rows.reduce(0) { $0 + $1.statistics.callsOK + $1.statistics.callsRetryable + $1.statistics.callsRefused }
            let failed = rows.reduce(0) { $0 + $1.statistics.callsRetryable + $1.statistics.callsRefused }
            return .init(target: target, kind: rows.first?.kind ?? "", instances: rows.count, lag: lag, pending: rows.reduce(0) { $0 + $1.pending },
                         written: rows.reduce(0) { $0 + $1.statistics.written }, writtenPerSecond: rate,
                         errorRate: calls > 0 ? Double(failed) / Double(calls) : 0, drainEtaSeconds: ErpStatus.eta(queued: lag, perSecond: rate),
                         lastError: rows.map(\.statistics.lastError).first { !$0.isEmpty } ?? "")
        }.sorted { $0.target < $1.target }
    }

    /// The figures from the read model (one snapshot) and alerting, asked concurrently. A source
    /// that does not answer leaves its figures empty and is named in `unavailable`.
    public static func figures(_ configuration: DashboardConfiguration, now: Int64) async -> DashboardSnapshot {
        var s = DashboardSnapshot()
        s.generatedAtUs = now
        let cutoff = now - Int64(configuration.slaSeconds * 1e6)
        let book = configuration.book, alerting = configuration.alerting
        async let fromBook = answer(book) {
            try await $0.snapshot(BookQuery(totals: true, recentOrders: 10, waitingIngestedBefore: cutoff, waitingLimit: 1_000, stock: true))
        }
        async let alerts = answer(alerting) { try await $0.recentAlerts(limit: 15) }
        async let foundLate = answer(alerting) { try await $0.unsyncedOrders(ingestedBefore: cutoff, limit: 1_000) }

        /// Orders not decided beyond the SLA, with their ingest time.
        var late: [String: Int64] = [:]
        switch await fromBook {
        case .success(let b): bookFigures(b, into: &s, late: &late, now: now)
        case .failure(let error): s.unavailable.append("read model: \(error)")
        case nil: s.unavailable.append("read model: book.url is not set")
        }
        if case .failure(let error) = await alerts { s.unavailable.append("alerting: \(error)") }
        s.alerts = ((try? await alerts?.get()) ?? []).map { .init(kind: $0.kind, message: $0.message, createdAtUs: $0.createdAtUs, resolvedAtUs: $0.resolvedAtUs) }
        // What alerting found on its last sweep, including orders dispatch has not read from
        // `orders.placed` yet (which only a topic read shows). Up to a sweep old: drop what the
        // book decided since (when the book cannot say, they stay listed).
        var found: [String: Int64] = [:]
        for o in (try? await foundLate?.get()) ?? [] where late[o.orderID] == nil { found[o.orderID] = o.ingestedAtUs }
        if let book, !found.isEmpty, let decided = try? await book.known(Array(found.keys)) {
            found = found.filter { !decided.contains($0.key) }
        }
        late.merge(found) { a, _ in a }
        let waiting = late.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(1000)
        s.unsyncedBeyondSla = waiting.count
        s.unsyncedIDs = waiting.prefix(20).map(\.key)
        return s
    }

    /// The figures of the read model's snapshot: totals (a few hundred rows however many
    /// orders), waiting, rejections, the latest orders (buyer masked), the hottest SKUs.
    static func bookFigures(_ b: BookSnapshot, into s: inout DashboardSnapshot, late: inout [String: Int64], now: Int64) {
        var platforms: [String: DashboardSnapshot.Platform] = [:]
        var latencySum: Int64 = 0
        let firstMinute = now / 60_000_000 - 59
        var perMinute: [Int64: Int] = [:]
        for g in b.groups ?? [] {
            let n = g.orders
            s.total += n
            if g.minute >= firstMinute { perMinute[g.minute, default: 0] += n }
            var p = platforms[g.platform] ?? .init(platform: g.platform, synced: 0, failed: 0, cancelled: 0)
            switch g.status {
            case "synced": s.synced += n; p.synced += n; latencySum += g.syncMicros
            case "out_of_stock": s.failed += n; p.failed += n
            default: s.cancelled += n; p.cancelled += n
            }
            platforms[g.platform] = p
        }
        s.platforms = platforms.values.sorted { $0.platform < $1.platform }
        if let first = perMinute.keys.min() {
            s.ordersPerMinute = (first...(now / 60_000_000)).map { .init(minute: $0, orders: perMinute[$0] ?? 0) }
        }
        if s.synced > 0 {
            s.avgSyncMs = (Double(latencySum) / Double(s.synced) / 1_000 * 10).rounded() / 10
            // Nearest-rank p99 over whole milliseconds (a histogram at 1 ms resolution).
            let rank = Int((0.99 * Double(s.synced)).rounded(.up))
            var seen = 0
            for bucket in b.syncMilliseconds ?? [] {
                seen += Int(bucket.count)
                if seen >= rank { s.p99SyncMs = Double(bucket.key) ?? 0; break }
            }
        }
        // Orders dispatch holds for their stock decisions, and those beyond the SLA.
        s.waiting = b.waitingTotal ?? 0
        for o in b.oldestWaiting ?? [] { late[o.orderID] = o.ingestedAtUs }
        s.rejections = (b.mostRejected ?? []).map { .init(sku: $0.key, lines: Int($0.count)) }
        s.rejectedLines = b.rejectedLines ?? 0
        s.recentOrders = (b.recentOrders ?? []).map {
            .init(orderID: $0.orderID, platform: $0.platform, status: $0.status, totalFen: $0.totalFen,
                  buyer: PIIMask.name($0.buyerName), phone: PIIMask.phone($0.buyerPhone), syncMs: Double($0.syncMicros) / 1_000)
        }
        // Every SKU as the stock instance owning its partition committed it (the read model
        // replicates each partition's chain).
        let hottest = (b.stock ?? []).sorted { ($0.reserved, $1.sku, $1.warehouse) > ($1.reserved, $0.sku, $0.warehouse) }.prefix(10)
        s.hotSkus = hottest.map { .init(sku: $0.sku, warehouse: $0.warehouse, available: $0.available, soldLast5Min: 0, minutesToSellOut: nil, reserved: $0.reserved) }
    }

    /// `ask(client)`'s answer or error; nil without a client.
    static func answer<Client: Sendable, T: Sendable>(_ client: Client?, _ ask: @Sendable (Client) async throws -> T) async -> Result<T, any Error>? {
        guard let client else { return nil }
        do { return .success(try await ask(client)) } catch { return .failure(error) }
    }
}
