import Alerting
import Bootstrap
import Model
import ErpBookStore
import Dispatch
import Foundation
import Inventory
import Telemetry
import Worker

/// Settings of the live dashboard.
public struct DashboardConfiguration: Sendable {
    /// Data directory of the cluster: the ERP book, stock store and alert store.
    public var dataDir: String
    public var erpDatabase: String
    /// The first stock instance's database; further instances' (`stock-2.sqlite`, …) beside it are read too.
    public var stockDatabase: String
    public var alertingDatabase: String
    /// Orders waiting longer than this are listed as beyond the SLA. Default 5 s.
    public var slaSeconds: Double
    /// How often figures are recomputed and pushed to open pages. Default 5 s.
    public var refreshMilliseconds: Int
    /// Where the processes listed with their health and lag are found: their announcements on
    /// `livesync.instances`. nil: none are listed.
    public var instances: InstanceDirectory?

    public init(dataDir: String, slaSeconds: Double = 5, refreshMilliseconds: Int = 5_000, instances: InstanceDirectory? = nil) {
        self.dataDir = dataDir
        self.instances = instances
        self.erpDatabase = "\(dataDir)/erp.sqlite"
        self.stockDatabase = "\(dataDir)/stock.sqlite"
        self.alertingDatabase = "\(dataDir)/alerting.sqlite"
        self.slaSeconds = slaSeconds
        self.refreshMilliseconds = refreshMilliseconds
    }
}

/// Everything the page shows, computed from the ERP book (orders, sync times, platforms,
/// rejections), the stock store (remaining stock), the alert store (waiting orders, alerts)
/// and the processes' `/readyz` (lag). Buyer data is masked before it leaves this type.
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
    public var recentOrders: [RecentOrder] = []
}

public enum DashboardFigures {

    public static func compute(_ configuration: DashboardConfiguration, now: Int64 = Clock.nowMicros()) async throws -> DashboardSnapshot {
        // Blocking SQLite reads: off the cooperative pool.
        var s = try await withCheckedThrowingContinuation { (c: CheckedContinuation<DashboardSnapshot, any Error>) in
            DispatchQueue.global(qos: .utility).async { c.resume(with: Result { try stored(configuration, now: now) }) }
        }
        if let instances = configuration.instances {
            do {
                s.consumers = try await ProcessStatus.collect(discovering: instances, timeout: .seconds(2)).map {
                    .init(process: $0.process, health: $0.health, partitions: $0.partitions, lag: $0.lag, lastBatchAtUs: $0.lastBatchAtUs)
                }
            } catch {
                // Said on the page rather than an empty list that would look like no process runs.
                s.consumers = [.init(process: Topics.instances, health: "unreadable: \(error)", partitions: nil, lag: nil, lastBatchAtUs: nil)]
            }
        }
        return s
    }

    /// The figures that come from the databases.
    public static func stored(_ configuration: DashboardConfiguration, now: Int64) throws -> DashboardSnapshot {
        var s = DashboardSnapshot()
        /// Orders not decided beyond the SLA, with their ingest time.
        var late: [String: Int64] = [:]
        s.generatedAtUs = now
        if let erp = try? ErpBookView.ifPresent(path: configuration.erpDatabase) {
            try erp.read { book in
                // From the book's running totals (`ErpBook.Summary`: a few hundred rows however many orders).
                let totals = try book.totals()
                var platforms: [String: DashboardSnapshot.Platform] = [:]
                var latencySum: Int64 = 0
                let firstMinute = now / 60_000_000 - 59
                var perMinute: [Int64: Int] = [:]
                for g in totals.groups {
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
                    for bucket in totals.syncMilliseconds {
                        seen += bucket.orders
                        if seen >= rank { s.p99SyncMs = Double(bucket.ms); break }
                    }
                }
                // Orders dispatch holds for their stock decisions beyond the SLA.
                let waiting = try book.waitingForStock(limit: 0).count
                s.waiting = waiting
                for o in try book.waitingForStock(ingestedBefore: now - Int64(configuration.slaSeconds * 1e6), limit: 1000).oldest {
                    late[o.orderID] = o.ingestedAtUs
                }
                s.rejections = totals.mostRejected.map { .init(sku: $0.sku, lines: $0.lines) }
                s.rejectedLines = totals.rejectedLines
                for o in try book.recentOrders(limit: 10) {
                    s.recentOrders.append(.init(orderID: o.orderID, platform: o.platform, status: o.status, totalFen: o.totalFen,
                                                buyer: PIIMask.name(o.buyerName), phone: PIIMask.phone(o.buyerPhone), syncMs: Double(o.syncMicros) / 1_000))
                }
            }
        }
        // Each SKU from the stock instance that owns its partition.
        let stock = try StockStoreView.read(StockStoreView.databases(beside: configuration.stockDatabase), parts: .rows)
        let hottest = stock.rows.sorted { ($0.reserved, $1.sku, $1.warehouse) > ($1.reserved, $0.sku, $0.warehouse) }.prefix(10)
        s.hotSkus = hottest.map { .init(sku: $0.sku, warehouse: $0.warehouse, available: $0.available, soldLast5Min: 0, minutesToSellOut: nil, reserved: $0.reserved) }
        if let alerting = try? AlertStoreView.ifPresent(path: configuration.alertingDatabase) {
            try alerting.read { store in
                // What alerting found on its last sweep, including orders dispatch has not read
                // from `orders.placed` yet (which only a topic read shows).
                for o in try store.unsyncedOrders(ingestedBefore: now - Int64(configuration.slaSeconds * 1e6), limit: 1000) where late[o.orderID] == nil {
                    late[o.orderID] = o.ingestedAtUs
                }
                s.alerts = try store.recentAlerts(limit: 15).map { .init(kind: $0.kind, message: $0.message, createdAtUs: $0.createdAtUs, resolvedAtUs: $0.resolvedAtUs) }
            }
        }
        // The alert store's list is up to a sweep old: drop what the ERP book decided since.
        let booked = try booked(Array(late.keys), configuration)
        let waiting = late.filter { !booked.contains($0.key) }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(1000)
        s.unsyncedBeyondSla = waiting.count
        s.unsyncedIDs = waiting.prefix(20).map(\.key)
        return s
    }

    /// Which of `ids` the ERP book holds (the alert store may not have seen their outcome yet).
    static func booked(_ ids: [String], _ configuration: DashboardConfiguration) throws -> Set<String> {
        guard !ids.isEmpty, let erp = try ErpBookView.ifPresent(path: configuration.erpDatabase) else { return [] }
        return try erp.read { try $0.known(ids) }
    }
}
