import ErpBookStore
import ErpSync
import LiveSyncTesting
import Model
import Foundation
import GRDB
import Histogram
import Inventory
import Kafka
import Logging
import ReadModel
import Worker

/// Settings of `livesync demo`.
public struct DemoConfiguration: Sendable {
    public var shape = SessionShape()
    public var dataDirectory = "var/demo"
    public var viaKafka = false
    public var concurrency = 256
    /// SIGKILL `livesync-stock` once this many orders were accepted (it is restarted a second later).
    public var killStockAfter: Int?
    /// How long to wait for every accepted order to reach a terminal state.
    public var settleTimeoutSeconds: Double = 120
    public var stockInstances = 1
    public var dispatchInstances = 1
    public var synchronous = "FULL"
    public var alerting = true
    /// Run each instance as on a host of its own (see `DevClusterConfiguration.isolated`).
    public var isolated = false
    /// Write every decided order into this local ERP through `livesync-erp` (`tryton`), seeded
    /// with the session's stock, and audit it at the end.
    public var erp: String?
    /// SIGKILL `livesync-erp` once this many orders were accepted (the supervisor restarts it).
    public var killErpAfter: Int?
    /// Stop the ERP server once this many orders were accepted, and start it again 5 s later.
    public var restartErpServerAfter: Int?
    /// Pull the ERP's stock into LiveSync once this many orders were accepted (mid-burst).
    public var pullStockAfter: Int?
    /// How long to wait for the ERP to catch up after the last order settled.
    public var erpDrainTimeoutSeconds: Double = 900

    public init() {}
}

/// The demo's verdict, in the fields `--json` prints.
public struct DemoSummary: Codable, Sendable {
    public var accepted = 0
    public var synced = 0
    public var rejected = 0
    public var cancelled = 0
    /// Units promised beyond stock, counted from the stock store and from the ERP book: must be 0.
    public var oversold: Int64 = 0
    /// Accepted orders with no terminal state in the ERP book: must be 0.
    public var lost = 0
    public var orders_per_sec = 0.0
    public var p50_ms = 0.0
    public var p99_ms = 0.0
    public var refused = 0
    public var failed = 0
    public var refunds = 0
    /// SKUs whose reserved stock differs from the units of synced orders (a double or missed deduction): must be 0.
    public var stock_mismatched_skus = 0
    public var kills = 0
    public var duration_sec = 0.0
    /// CPU microseconds per accepted order, per kind of process (`ingest`, `stock`, `dispatch`,
    /// `book`, `alerting`, `channels`, `broker`, `load_generator`) and in all but the load
    /// generator (`pipeline`), read from the OS over the session, from the first order sent to
    /// the last one settled (`CPUAccount`). After-sales is part of dispatch.
    public var cpu_us_per_order: [String: Double] = [:]
    /// Peak resident set in MiB per kind of process (its largest instance; `VmHWM`), and of the
    /// harness's own process (`broker_and_load_generator`), sampled with the CPU.
    public var peak_rss_mib: [String: Int] = [:]
    /// With `--erp`: synced orders' sale orders present (and live) in the ERP, per warehouse document.
    public var erp_written: Int?
    /// Synced orders' documents missing from the ERP when it caught up: must be 0.
    public var erp_missing: Int?
    /// Orders refused by the ERP, waiting in the pending queue (待处理队列).
    public var erp_pending: Int?
    /// References with more than one sale order in the ERP: must be 0.
    public var erp_duplicates: Int?
    /// Cancelled orders whose sale order is still live in the ERP: must be 0.
    public var erp_not_cancelled: Int?
    /// SKUs whose ERP forecast is not initial stock − units LiveSync sold: must be 0.
    public var erp_stock_mismatched_skus: Int?
    /// Seconds from the last order settled in LiveSync until the ERP caught up.
    public var erp_drain_sec: Double?
    /// ERP documents written per second by livesync-erp over the session.
    public var erp_orders_per_sec: Double?
    public var erp_kills: Int?
    public var erp_server_restarts: Int?

    public var passed: Bool {
        oversold == 0 && lost == 0 && stock_mismatched_skus == 0 && accepted == synced + rejected + cancelled
            && (erp_written == nil || (erp_missing == 0 && erp_duplicates == 0 && erp_not_cancelled == 0 && erp_stock_mismatched_skus == 0 && erp_drain_sec != nil))
    }
}

public enum Demo {
    /// A replay sender for `cluster` (through ingest's HTTP or straight into Kafka) once the
    /// session's stock load is published and applied, with the levels it loaded.
    static func stockedSession(_ cluster: DevCluster, records: [ReplayRecord], viaKafka: Bool, concurrency: Int, sessionID: String,
                               producer: KafkaProducer, logger: Logger) async throws -> (ReplaySender, [String: Int64]) {
        var sender = ReplaySender(target: viaKafka ? .kafka : .http(ingestURL: cluster.ingestURL, shops: cluster.shops), producer: producer, logger: logger)
        sender.concurrency = concurrency
        sender.platformAPIURL = cluster.platformAPIURL
        let initial = try await sender.publishStock(records, sessionID: sessionID)
        try await waitForStockLoad(cluster, expected: initial.count, timeout: 60)
        return (sender, initial)
    }

    public static func run(_ config: DemoConfiguration, logger: Logger) async throws -> DemoSummary {
        var clusterConfig = DevClusterConfiguration(dataDirectory: config.dataDirectory)
        clusterConfig.stockInstances = config.stockInstances
        clusterConfig.dispatchInstances = config.dispatchInstances
        clusterConfig.synchronous = config.synchronous
        clusterConfig.withAlerting = config.alerting
        clusterConfig.isolated = config.isolated
        let records = SessionGenerator.generate(config.shape)
        var erpServer: TrytonServer?
        if let kind = config.erp {
            guard ErpDemo.kinds.contains(kind) else { throw ConfigurationError("--erp must be one of \(ErpDemo.kinds.joined(separator: ", ")), not '\(kind)'") }
            let stock = records.compactMap(\.stock).map { TrytonServer.Stock(sku: $0.sku, warehouse: $0.warehouse, quantity: $0.available) }
            let (server, target) = try await ErpDemo.startTryton(dataDirectory: config.dataDirectory, stock: stock, logger: logger)
            erpServer = server
            clusterConfig.erp = target
        }
        // Stopped before returning, not in a detached task: the process may exit first and leave
        // the ERP server running.
        let summary: DemoSummary
        do {
            summary = try await session(config, clusterConfig: clusterConfig, records: records, erpServer: erpServer, logger: logger)
        } catch {
            try? await erpServer?.stop()
            throw error
        }
        try? await erpServer?.stop()
        return summary
    }

    /// The cluster and the session of `run`, with the ERP server (if any) already started.
    static func session(_ config: DemoConfiguration, clusterConfig: DevClusterConfiguration, records: [ReplayRecord], erpServer: TrytonServer?,
                        logger: Logger) async throws -> DemoSummary {
        let cluster = try await DevCluster(configuration: clusterConfig, logger: logger)
        defer { cluster.stop() }
        logger.info("embedded broker at \(cluster.bootstrap), ingest at \(cluster.ingestURL)")

        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrap))
        defer { producer.close() }
        var (sender, initial) = try await stockedSession(cluster, records: records, viaKafka: config.viaKafka, concurrency: config.concurrency,
                                                         sessionID: "demo-\(config.shape.seed)", producer: producer, logger: logger)
        logger.info("stock loaded: \(initial.count) SKUs; replaying \(config.shape.orders) orders")

        let kills = KillSwitch(), erpKills = KillSwitch(), erpRestarts = KillSwitch(), pulls = KillSwitch()
        let erpClient = cluster.erpURL.map { ErpClient(urls: [$0]) }
        let (killStockAfter, killErpAfter, restartAfter, pullAfter) = (config.killStockAfter, config.killErpAfter, config.restartErpServerAfter, config.pullStockAfter)
        let server = erpServer
        sender.onProgress = { count in
            if let after = killStockAfter, count >= after, kills.fire() {
                let name = cluster.supervisor.names.first { $0.hasPrefix("stock") } ?? "stock"
                try? cluster.supervisor.signal(name, SIGKILL)
            }
            if let after = killErpAfter, count >= after, erpKills.fire() {
                try? cluster.supervisor.signal("erp", SIGKILL)
            }
            if let after = restartAfter, count >= after, let server, erpRestarts.fire() {
                Task {
                    try? await server.stop()
                    try? await Task.sleep(for: .seconds(5))
                    do { try await server.restart() } catch { logger.error("the ERP server did not start again: \(error)") }
                }
            }
            if let after = pullAfter, count >= after, let erpClient, pulls.fire() {
                Task {
                    do {
                        let n = try await erpClient.pullStock()
                        logger.info("pulled \(n) stock levels from the ERP mid-session")
                    } catch {
                        logger.error("mid-session stock pull failed: \(error)")
                    }
                }
            }
        }
        // Requests are built and signed before the clock and the CPU count start.
        let prepared = try await sender.prepare(records)
        let cpu = CPUAccount(supervisor: cluster.supervisor)
        let replay = try await sender.send(prepared)
        logger.info("replay done: \(replay.accepted.count) accepted, \(replay.refused) refused, \(replay.failed) failed")

        var cpuSeconds: CPUAccount.Seconds = [:]
        var summary = try await settle(cluster: cluster, accepted: replay.accepted, initial: initial, timeout: config.settleTimeoutSeconds,
                                       whenDecided: { cpuSeconds = cpu.stop() })
        summary.cpu_us_per_order = CPUAccount.perOrder(cpuSeconds, orders: summary.accepted)
        summary.peak_rss_mib = cpu.peakResidentMiB()
        summary.refused = replay.refused
        summary.failed = replay.failed
        summary.refunds = replay.refundsAccepted
        summary.kills = kills.fired ? 1 : 0
        if let erpServer, let erpClient {
            try await erpFigures(&summary, server: erpServer, client: erpClient, cluster: cluster, records: records, initial: initial,
                                 timeout: .seconds(config.erpDrainTimeoutSeconds), logger: logger)
            summary.erp_kills = erpKills.fired ? 1 : 0
            summary.erp_server_restarts = erpRestarts.fired ? 1 : 0
        }
        return summary
    }

    /// Waits for the ERP to catch up, then audits it against the read model.
    static func erpFigures(_ summary: inout DemoSummary, server: TrytonServer, client: ErpClient, cluster: DevCluster, records: [ReplayRecord],
                           initial: [String: Int64], timeout: Duration, logger: Logger) async throws {
        logger.info("waiting for the ERP to catch up")
        summary.erp_drain_sec = try await ErpDemo.waitForDrain(client, timeout: timeout)
        let book = BookClient(baseURL: cluster.bookURL, timeout: .seconds(60))
        let decisions = try await book.decisions()
        let snapshot = try await book.snapshot(BookQuery(stock: true, skuBookings: true))
        var sold: [String: Int64] = [:]
        for b in snapshot.skuBookings ?? [] { sold["\(b.sku)@\(b.warehouse)"] = b.syncedUnits }
        var warehouses: [String: [String]] = [:]
        for r in records {
            guard let o = r.order else { continue }
            var seen: [String] = []
            for l in o.lines where !seen.contains(l.warehouse ?? "") { seen.append(l.warehouse ?? "") }
            warehouses["\(o.shop_id):\(o.order_id)"] = seen
        }
        var byOrder: [String: [String]] = [:]
        for d in decisions {
            let parts = d.orderID.split(separator: ":", maxSplits: 1)
            if parts.count == 2, let w = warehouses[String(parts[1])] { byOrder[d.orderID] = w }
        }
        let audit = try await ErpDemo.audit(server, decisions: decisions, warehousesOf: byOrder, initial: initial, sold: sold)
        let statuses = try await client.status()
        summary.erp_written = audit.written
        summary.erp_missing = audit.missing
        summary.erp_duplicates = audit.duplicates
        summary.erp_not_cancelled = audit.notCancelled
        summary.erp_stock_mismatched_skus = audit.stockMismatchedSkus
        summary.erp_pending = statuses.reduce(0) { $0 + $1.pending }
        let written = statuses.reduce(0) { $0 + $1.statistics.written }
        if let first = decisions.map(\.ingestedAtUs).min() {
            let span = Double(Clock.nowMicros() - first) / 1e6 - 2
            summary.erp_orders_per_sec = span > 0 ? (Double(written) / span * 10).rounded() / 10 : nil
        }
    }

    public static func waitForStockLoad(_ cluster: DevCluster, expected: Int, timeout: Double) async throws {
        try await waitForStockLoad(book: BookClient(baseURL: cluster.bookURL), expected: expected, timeout: timeout)
    }

    /// Waits until the read model shows `expected` SKU levels (the stock load applied and replicated).
    public static func waitForStockLoad(book: BookClient, expected: Int, timeout: Double) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let levels = try? await book.snapshot(BookQuery(stock: true)).stock, levels.count >= expected { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ConfigurationError("the stock load did not reach the read model within \(Int(timeout)) s; see the stock and book logs")
    }

    /// Waits until every accepted order is decided and stock agrees with the ERP book, as the
    /// read model serves them, then measures.
    /// Waits until the read model decided every accepted order, then audits it. While orders are
    /// still in flight it asks only for the book's counts (`totals`, kept in summary tables), not
    /// for every decision: a full read of 100,000 decisions costs the read model about as much
    /// CPU as booking them, and counted in the session's `cpu_us_per_order` it would make the
    /// pipeline look dearer than it is. `whenDecided` runs once, when the count is reached (or
    /// the deadline passed), before the first full read: where the CPU count stops.
    public static func settle(cluster: DevCluster, accepted: [String], initial: [String: Int64], timeout: Double,
                              whenDecided: () -> Void = {}) async throws -> DemoSummary {
        let book = BookClient(baseURL: cluster.bookURL, timeout: .seconds(60))
        let deadline = Date().addingTimeInterval(timeout)
        let acceptedCount = Set(accepted).count
        while Date() < deadline {
            let totals = try await retrying(until: deadline) { try await book.snapshot(BookQuery(totals: true)) }
            if (totals.groups ?? []).reduce(0, { $0 + $1.orders }) >= acceptedCount { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        whenDecided()
        var summary = DemoSummary()
        while true {
            // The read model may be restarting (a chaos kill): ask again until the deadline.
            let (snapshot, decisions) = try await retrying(until: deadline) {
                (try await book.snapshot(BookQuery(stock: true, skuBookings: true)), try await book.decisions())
            }
            summary = measure(decisions: decisions, snapshot: snapshot, accepted: accepted, initial: initial)
            if (summary.lost == 0 && summary.stock_mismatched_skus == 0) || Date() >= deadline { break }
            try await Task.sleep(for: .milliseconds(250))
        }
        return summary
    }

    /// `body`'s result, asked again every 250 ms while it throws, until `deadline` (then its error).
    static func retrying<T>(until deadline: Date, _ body: () async throws -> T) async throws -> T {
        while true {
            do { return try await body() } catch {
                if Date() >= deadline { throw error }
                try await Task.sleep(for: .milliseconds(250))
            }
        }
    }

    static func measure(decisions: [ErpBookView.Decision], snapshot: BookSnapshot, accepted: [String], initial: [String: Int64]) -> DemoSummary {
        var s = DemoSummary()
        s.accepted = Set(accepted).count
        var statusByOrder: [String: String] = [:]
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        var first = Int64.max, last = Int64.min
        var syncedUnits: [String: Int64] = [:]
        for d in decisions {
            statusByOrder[d.orderID] = d.status
            first = min(first, d.ingestedAtUs)
            last = max(last, d.decidedAtUs)
            if d.status == "synced" { _ = histogram.record(UInt64(max(0, d.decidedAtUs - d.ingestedAtUs))) }
        }
        for b in snapshot.skuBookings ?? [] { syncedUnits["\(b.sku)@\(b.warehouse)"] = b.syncedUnits }
        for id in Set(accepted) {
            switch statusByOrder[id] {
            case "synced": s.synced += 1
            case "out_of_stock": s.rejected += 1
            case "cancelled": s.cancelled += 1
            default: s.lost += 1
            }
        }
        var oversoldStore: Int64 = 0, oversoldBook: Int64 = 0
        for row in snapshot.stock ?? [] {
            let key = "\(row.sku)@\(row.warehouse)"
            oversoldStore += max(0, row.reserved - row.onHand)
            if row.reserved != syncedUnits[key, default: 0] || row.available != initial[key, default: 0] - syncedUnits[key, default: 0] {
                s.stock_mismatched_skus += 1
            }
        }
        for (key, units) in syncedUnits { oversoldBook += max(0, units - initial[key, default: 0]) }
        s.oversold = max(oversoldStore, oversoldBook)
        if last > first {
            s.duration_sec = Double(last - first) / 1e6
            s.orders_per_sec = (Double(s.accepted) / s.duration_sec).rounded()
        }
        if histogram.totalCount > 0 {
            s.p50_ms = Double(histogram.valueAtPercentile(50)) / 1000
            s.p99_ms = Double(histogram.valueAtPercentile(99)) / 1000
        }
        return s
    }

    /// `pipeline 393 (ingest 148, dispatch 78, …; load generator 147)`, largest first.
    static func renderCPU(_ cpu: [String: Double]) -> String {
        guard let pipeline = cpu["pipeline"] else { return "-" }
        let parts = cpu.filter { $0.key != "pipeline" && $0.key != "load_generator" }.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
            .map { "\($0.key) \(Int($0.value))" }
        return "pipeline \(Int(pipeline)) (\(parts.joined(separator: ", ")); load generator \(Int(cpu["load_generator"] ?? 0)))"
    }

    static func renderRSS(_ rss: [String: Int]) -> String {
        rss.isEmpty ? "-" : rss.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    static func renderErp(_ s: DemoSummary) -> String {
        guard let written = s.erp_written else { return "" }
        return """

          ERP written         \(written) sale orders, \(s.erp_orders_per_sec ?? 0) /s; caught up \(s.erp_drain_sec.map { String(format: "%.1f s", $0) } ?? "NEVER") after the last order
          ERP missing / dup   \(s.erp_missing ?? 0) / \(s.erp_duplicates ?? 0)   (must be 0)
          ERP not cancelled   \(s.erp_not_cancelled ?? 0)   (must be 0)
          ERP stock mismatch  \(s.erp_stock_mismatched_skus ?? 0)   (SKUs; must be 0)
          ERP pending 待处理   \(s.erp_pending ?? 0)
        """
    }

    public static func render(_ s: DemoSummary) -> String {
        """
        LiveSync demo
          accepted            \(s.accepted)
          synced to ERP       \(s.synced)
          rejected for stock  \(s.rejected)
          cancelled (refund)  \(s.cancelled)
          oversold            \(s.oversold)   (must be 0)
          lost                \(s.lost)   (must be 0)
          stock mismatches    \(s.stock_mismatched_skus)   (SKUs; must be 0)
          refused / failed    \(s.refused) / \(s.failed)
          refunds             \(s.refunds)
          stock kills         \(s.kills)
          throughput          \(s.orders_per_sec) orders/s over \(String(format: "%.1f", s.duration_sec)) s
          ingest→ERP latency  p50 \(s.p50_ms) ms, p99 \(s.p99_ms) ms
          CPU µs per order    \(renderCPU(s.cpu_us_per_order))
          peak RSS MiB        \(renderRSS(s.peak_rss_mib))\(renderErp(s))
          verdict             \(s.passed ? "PASS" : "FAIL")
        """
    }
}

/// Fires once.
final class KillSwitch: Sendable {
    private let flag = StopFlag()
    func fire() -> Bool { flag.set() }
    var fired: Bool { flag.isSet }
}
