import Operations
import ReadModel
import Dashboard
import ErpBookStore
import Foundation
import GRDB
import Inventory
import Kafka
import Logging
import Model
import Synchronization
import Telemetry
import Worker

/// Settings of `livesync chaos`.
public struct ChaosConfiguration: Sendable {
    /// The replayed session; `ratePerSecond` spreads it over time so the faults land mid-stream.
    public var shape: SessionShape
    public var dataDirectory = "var/chaos"
    /// Send orders to ingest over HTTP (default) or straight into Kafka.
    public var viaKafka = false
    public var concurrency = 128
    /// Most instances of stock and dispatch while scaled out.
    public var maxInstances = 3
    /// Inject broker faults (request errors, the broker down and back).
    public var brokerFaults = true
    /// SIGKILL a stock and a dispatch instance and give each an empty disk (they restore from their changelogs).
    public var loseDisks = true
    /// Run each instance as on a host of its own (see `DevClusterConfiguration.isolated`).
    public var isolated = false
    /// Group session timeout: a killed member's partitions move after this long.
    public var sessionTimeoutMilliseconds = 4_000
    public var settleTimeoutSeconds: Double = 300

    public init() {
        shape = SessionShape()
        shape.orders = 100_000
        shape.ratePerSecond = 1_500
    }
}

/// What `livesync chaos` measured; `violations` lists every broken invariant.
public struct ChaosReport: Codable, Sendable {
    public var summary = DemoSummary()
    public var kills = 0
    public var scaleChanges = 0
    public var brokerFaults = 0
    public var disksLost = 0
    public var restocks = 0
    /// Orders in the ERP book that the replay never had accepted (a phantom or a double).
    public var unexpectedOrders = 0
    /// Synced order lines whose shipped quantity differs from the ordered one.
    public var shipmentMismatches = 0
    /// SKUs whose initial + adjustments differs from available + reserved (+ shipped).
    public var conservationViolations = 0
    /// Changelog entries in which some SKU had less than zero available.
    public var negativeAvailableSeen = 0
    /// Partitions whose changelog, restored from scratch, differs from the live store.
    public var restoreMismatches = 0
    /// Orders whose decision in the read model differs from the dispatch shard that owns them
    /// (or that only one of the two has).
    public var bookShardMismatches = 0
    /// 1 when the dashboard's order figures differ from the book's decisions.
    public var dashboardMismatches = 0
    /// SKU levels in the read model that differ from the stock instance owning them.
    public var bookStockMismatches = 0
    /// Files of the cluster's directory an instance held open outside its own (isolated mode).
    public var foreignFilesOpen = 0
    /// Messages consumed by no group (committed offset below the end) outside the dead-letter topic.
    public var stuckMessages: Int64 = 0
    public var deadLetters: Int64 = 0
    /// Dead letters by consumer group and error (first words).
    public var deadLetterCauses: [String: Int] = [:]
    public var events: [String] = []
    public var violations: [String] = []

    public var passed: Bool { violations.isEmpty }
}

/// `livesync chaos`: a replayed live session while consumers are SIGKILLed, scaled out and in,
/// disks are lost and the broker fails; then the invariants are checked from the ERP book, the
/// stock store, the changelog and the topics.
public enum Chaos {
    public static func run(_ config: ChaosConfiguration, logger: Logger) async throws -> ChaosReport {
        var clusterConfig = DevClusterConfiguration(dataDirectory: config.dataDirectory)
        clusterConfig.sessionTimeoutMilliseconds = config.sessionTimeoutMilliseconds
        clusterConfig.isolated = config.isolated
        let cluster = try await DevCluster(configuration: clusterConfig, logger: logger)
        defer { cluster.stop() }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrap))
        defer { producer.close() }

        let records = SessionGenerator.generate(config.shape)
        var (sender, expected) = try await Demo.stockedSession(cluster, records: records, viaKafka: config.viaKafka, concurrency: config.concurrency,
                                                               sessionID: "chaos-\(config.shape.seed)", producer: producer, logger: logger)
        say("chaos: stock loaded (\(expected.count) SKUs); replaying \(config.shape.orders) orders at ~\(Int(config.shape.ratePerSecond))/s")

        // The fault plan: one step per tenth of the session, run one after another.
        let plan = Self.plan(config)
        let monkey = ChaosMonkey(cluster: cluster, producer: producer, config: config, logger: logger)
        let total = config.shape.orders
        let next = Atomic<Int>(0)
        let runner = StepRunner()
        sender.onProgress = { accepted in
            while true {
                let i = next.load(ordering: .relaxed)
                guard i < plan.count, accepted >= Int(plan[i].at * Double(total)) else { return }
                guard next.compareExchange(expected: i, desired: i + 1, ordering: .relaxed).exchanged else { continue }
                runner.enqueue { await monkey.perform(plan[i].step) }
            }
        }
        // Requests are built and signed before the clock and the CPU count start.
        let prepared = try await sender.prepare(records)
        let cpu = CPUAccount(supervisor: cluster.supervisor)
        let replay = try await sender.send(prepared)
        say("chaos: replay done: \(replay.accepted.count) accepted, \(replay.refused) refused, \(replay.failed) failed; finishing the fault plan")
        await runner.drain()
        // Back to one instance each, everything up: the state must converge.
        await monkey.perform(.scale(.stock, 1))
        await monkey.perform(.scale(.dispatch, 1))
        try? cluster.broker.setBroker(1, up: true)

        var report = ChaosReport()
        report.foreignFilesOpen = monkey.foreignFilesOpen
        for (key, delta) in monkey.restocked { expected[key, default: 0] += delta }
        var cpuSeconds: CPUAccount.Seconds = [:]
        report.summary = try await Demo.settle(cluster: cluster, accepted: replay.accepted, initial: expected, timeout: config.settleTimeoutSeconds,
                                               whenDecided: { cpuSeconds = cpu.stop() })
        report.summary.refused = replay.refused
        report.summary.failed = replay.failed
        report.summary.refunds = replay.refundsAccepted
        report.summary.cpu_us_per_order = CPUAccount.perOrder(cpuSeconds, orders: report.summary.accepted)
        report.summary.peak_rss_mib = cpu.peakResidentMiB()
        try await waitForNoLag(cluster, timeout: 60)
        let m = monkey.counts
        report.kills = m.kills
        report.scaleChanges = m.scaleChanges
        report.brokerFaults = m.brokerFaults
        report.disksLost = m.disksLost
        report.restocks = m.restocks
        report.summary.kills = m.kills
        report.events = m.events
        if config.isolated { report.foreignFilesOpen += Isolation.foreignFilesOpen(cluster).count }
        try await check(cluster, accepted: replay.accepted, expected: expected, into: &report)
        return report
    }

    /// When (fraction of the accepted orders) and what.
    static func plan(_ c: ChaosConfiguration) -> [(at: Double, step: ChaosMonkey.Step)] {
        var steps: [(Double, ChaosMonkey.Step)] = [
            (0.05, .scale(.stock, c.maxInstances)),
            (0.10, .killRandom),
            (0.15, .scale(.dispatch, c.maxInstances)),
            (0.25, .killRandom),
            (0.30, .restock),
            (0.45, .killRandom),
            (0.55, .scale(.stock, 1)),
            (0.60, .scale(.dispatch, 1)),
            (0.65, .killRandom),
            (0.70, .scale(.stock, 2)),
            (0.75, .restock),
            (0.80, .killRandom),
            (0.90, .scale(.stock, 1)),
        ]
        if c.brokerFaults {
            steps += [(0.20, .requestErrors), (0.50, .brokerDown(seconds: 3)), (0.85, .requestErrors)]
        }
        if c.loseDisks { steps += [(0.35, .loseDisk(.stock)), (0.40, .loseDisk(.dispatch))] }
        return steps.sorted { $0.0 < $1.0 }
    }

    /// Waits until every group has consumed every partition to its end.
    static func waitForNoLag(_ cluster: DevCluster, timeout: Double) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await stuck(cluster).total) == 0 { return }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Messages not yet consumed per group, from the topics' ends and each group's positions:
    /// stock's and alerting's from their own databases (the oracle's view of their disks),
    /// dispatch's as its changelog entries committed them and the read model's own, both as the
    /// read model reports them.
    static func stuck(_ cluster: DevCluster) async throws -> (total: Int64, detail: [String]) {
        let reader = try KafkaPartitionReader(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrap))
        var ends: [TopicPartition: Int64] = [:]
        func end(_ tp: TopicPartition) throws -> Int64 {
            if let e = ends[tp] { return e }
            let e = try reader.watermarks(tp).high
            ends[tp] = e
            return e
        }
        var total: Int64 = 0
        var detail: [String] = []
        let stock = try StockStoreView.read(cluster.stockDatabases)
        let positions = try await BookClient(baseURL: cluster.bookURL).snapshot(BookQuery(positions: true)).positions ?? []
        func replicated(_ group: String, _ tp: TopicPartition) -> Int64 {
            positions.first { $0.group == group && $0.topic == tp.topic && $0.partition == tp.partition }?.next ?? 0
        }
        let bookGroup = positions.first { $0.group.hasPrefix("livesync-book") }?.group ?? "livesync-book-book-1"
        let groups: [(group: String, topics: [String], offsets: (TopicPartition) throws -> Int64)] = [
            ("livesync-stock", [Topics.orderLines, Topics.stockAdjustments], { tp in stock.offsets["\(tp.topic)[\(tp.partition)]"] ?? 0 }),
            ("livesync-dispatch", [Topics.ordersPlaced, Topics.stockReservations, Topics.refundRequests], { tp in replicated("livesync-dispatch", tp) }),
            (bookGroup, [Topics.dispatchChangelog, Topics.stockChangelog], { tp in replicated(bookGroup, tp) }),
            ("livesync-alerting", [Topics.deadLetter], { tp in try committed(cluster.alertingDatabase, "livesync-alerting", tp) }),
        ]
        for g in groups {
            for topic in g.topics {
                let partitions = topic == Topics.deadLetter ? 4 : Topics.partitions
                for p in 0..<partitions {
                    let tp = TopicPartition(topic, p)
                    let behind = try end(tp) - g.offsets(tp)
                    if behind > 0 { total += behind; detail.append("\(g.group) \(tp): \(behind)") }
                }
            }
        }
        return (total, detail)
    }

    static func committed(_ path: String, _ group: String, _ tp: TopicPartition) throws -> Int64 {
        guard FileManager.default.fileExists(atPath: path) else { return 0 }
        let positions = try StateStore.openForReading(path, busyTimeout: nil).read {
            try StateStore.storedPositions($0, group: group, topic: tp.topic)
        }
        return positions.first { $0.partition == tp }?.next ?? 0
    }

    /// Every order's decision as the dispatch shards hold it: each partition from the instance
    /// database holding the tip of its changelog chain (the oracle reads the disks directly).
    static func shardDecisions(_ cluster: DevCluster) throws -> Set<String> {
        var best: [Int32: (seq: Int64, path: String)] = [:]
        for path in cluster.dispatchDatabases {
            try StateStore.openForReading(path, busyTimeout: 10).read { db in
                for (p, seq) in try StateStore.changelogSequences(db, group: "livesync-dispatch") where seq > best[p]?.seq ?? -1 {
                    best[p] = (seq, path)
                }
            }
        }
        var result: Set<String> = []
        for path in Set(best.values.map(\.path)) {
            let owned = Set(best.filter { $0.value.path == path }.map(\.key))
            let decisions = try ErpBookView(path: path, busyTimeout: .seconds(10)).read { try $0.decisions() }
            for d in decisions where owned.contains(Murmur2.partition(forKey: d.orderID, partitionCount: Topics.partitions)) {
                result.insert("\(d.orderID) \(d.status) \(d.decidedAtUs)")
            }
        }
        return result
    }

    /// Every invariant, from the stores and the topics.
    static func check(_ cluster: DevCluster, accepted: [String], expected: [String: Int64], into r: inout ChaosReport) async throws {
        let s = r.summary
        if s.lost > 0 { r.violations.append("\(s.lost) accepted orders never reached a terminal state in the ERP book") }
        if s.oversold > 0 { r.violations.append("\(s.oversold) units oversold") }
        if s.accepted != s.synced + s.rejected + s.cancelled {
            r.violations.append("accepted \(s.accepted) != synced \(s.synced) + rejected \(s.rejected) + cancelled \(s.cancelled)")
        }

        // Exactly once in the ERP book (as the read model serves it): no order it should not
        // have, every synced line shipped once, and the same decisions as the shards' union.
        let acceptedSet = Set(accepted)
        let book = BookClient(baseURL: cluster.bookURL, timeout: .seconds(60))
        let deadline = Date().addingTimeInterval(60)
        let decisions = try await Demo.retrying(until: deadline) { try await book.decisions() }
        for d in decisions where !acceptedSet.contains(d.orderID) { r.unexpectedOrders += 1 }
        let snapshot = try await Demo.retrying(until: deadline) { try await book.snapshot(BookQuery(shipmentMismatches: true, stock: true)) }
        r.shipmentMismatches = snapshot.shipmentMismatches ?? 0
        if r.unexpectedOrders > 0 { r.violations.append("\(r.unexpectedOrders) orders in the ERP book were never accepted") }
        if r.shipmentMismatches > 0 { r.violations.append("\(r.shipmentMismatches) synced order lines shipped a different quantity than ordered") }
        // The dashboard shows the book's figures (its running totals, through the read model).
        let page = await DashboardFigures.figures(DashboardConfiguration(book: book), now: Clock.nowMicros())
        var byStatus: [String: Int] = [:]
        for d in decisions { byStatus[d.status, default: 0] += 1 }
        let shown = (page.total, page.synced, page.failed, page.cancelled)
        let booked = (decisions.count, byStatus["synced", default: 0], byStatus["out_of_stock", default: 0], byStatus["cancelled", default: 0])
        if shown != booked {
            r.dashboardMismatches = 1
            r.violations.append("the dashboard shows total/synced/failed/cancelled \(shown) but the book holds \(booked)")
        }
        let shards = try shardDecisions(cluster)
        let served = Set(decisions.map { "\($0.orderID) \($0.status) \($0.decidedAtUs)" })
        r.bookShardMismatches = shards.symmetricDifference(served).count
        if r.bookShardMismatches > 0 {
            r.violations.append("\(r.bookShardMismatches) order decisions differ between the read model and the dispatch shards (\(served.count) vs \(shards.count))")
        }

        // Conservation per SKU: initial + adjustments == available + reserved (nothing ships in the book yet).
        let view = try StockStoreView.read(cluster.stockDatabases)
        var seen: Set<String> = []
        for row in view.rows {
            let key = "\(row.sku)@\(row.warehouse)"
            seen.insert(key)
            if row.onHand != expected[key, default: 0] || row.available < 0 { r.conservationViolations += 1 }
        }
        for (key, units) in expected where units > 0 && !seen.contains(key) { r.conservationViolations += 1 }
        if r.conservationViolations > 0 { r.violations.append("\(r.conservationViolations) SKUs break initial + adjustments == available + reserved") }
        let servedLevels = Set((snapshot.stock ?? []).map { "\($0.sku)@\($0.warehouse)=\($0.onHand)/\($0.reserved)" })
        let ownedLevels = Set(view.rows.map { "\($0.sku)@\($0.warehouse)=\($0.onHand)/\($0.reserved)" })
        r.bookStockMismatches = servedLevels.symmetricDifference(ownedLevels).count
        if r.bookStockMismatches > 0 { r.violations.append("\(r.bookStockMismatches) SKU levels differ between the read model and the stock instances") }
        if r.foreignFilesOpen > 0 { r.violations.append("\(r.foreignFilesOpen) times an instance held open a file in another instance's directory") }
        if s.stock_mismatched_skus > 0 { r.violations.append("\(s.stock_mismatched_skus) SKUs whose reservations differ from the ERP book's synced units") }

        try checkStockChangelog(cluster, live: view, into: &r)
        if r.negativeAvailableSeen > 0 { r.violations.append("available went below zero in \(r.negativeAvailableSeen) changelog entries") }
        if r.restoreMismatches > 0 { r.violations.append("\(r.restoreMismatches) partitions restore from the changelog to something other than the live store") }

        let stuck = try await stuck(cluster)
        r.stuckMessages = stuck.total
        if stuck.total > 0 { r.violations.append("\(stuck.total) messages not consumed: \(stuck.detail.prefix(5).joined(separator: "; "))") }
        for e in try DeadLetters.list(bootstrap: KafkaConfiguration(bootstrapServers: cluster.bootstrap)).entries {
            r.deadLetters += 1
            r.deadLetterCauses["\(e.consumerGroup): \(e.error.split(separator: " ").prefix(5).joined(separator: " "))", default: 0] += 1
        }
    }

    /// The stock changelog: never a negative level in its whole history, and a restore from
    /// scratch reproduces the live store.
    static func checkStockChangelog(_ cluster: DevCluster, live view: StockStoreView, into r: inout ChaosReport) throws {
        let reader = try KafkaPartitionReader(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrap))
        for p in 0..<Topics.partitions {
            var entries: [ChangelogEntry] = []
            try reader.read(TopicPartition(Topics.stockChangelog, p)) { m in entries.append(try ChangelogEntry(serializedBytes: m.value)) }
            let chain = ChangelogChain.longest(ChangelogChain.assemble(entries))
            let scratch = try StateStore(StateStoreConfiguration(path: "\(cluster.configuration.dataDirectory)/verify/stock-\(p).sqlite", synchronous: "OFF"))
            let processor = StockProcessor()
            try scratch.database.write { db in
                try processor.prepare(db)
                for e in chain {
                    let payload = [UInt8](e.payload)
                    if !payload.isEmpty, try StockDelta.decode(payload).rows.contains(where: { $0.onHand < $0.reserved || $0.reserved < 0 }) {
                        r.negativeAvailableSeen += 1
                    }
                    var ignored = BatchOutput(group: "chaos")
                    try processor.restore(payload, partition: p, db: db, output: &ignored)
                }
            }
            let restored = Set(try StockStoreView.read([scratch.configuration.path], parts: .rows).rows.map { "\($0.sku)@\($0.warehouse)=\($0.onHand)/\($0.reserved)" })
            let live = Set(view.rows.filter { $0.partition == p }.map { "\($0.sku)@\($0.warehouse)=\($0.onHand)/\($0.reserved)" })
            if restored != live { r.restoreMismatches += 1 }
        }
    }

    public static func render(_ r: ChaosReport) -> String {
        let s = r.summary
        return """
        LiveSync chaos
          accepted / refused / failed   \(s.accepted) / \(s.refused) / \(s.failed)
          synced / rejected / cancelled \(s.synced) / \(s.rejected) / \(s.cancelled)
          lost                          \(s.lost)   (must be 0)
          oversold units                \(s.oversold)   (must be 0)
          unexpected ERP orders         \(r.unexpectedOrders)   (must be 0)
          shipment mismatches           \(r.shipmentMismatches)   (must be 0)
          stock vs ERP mismatches       \(s.stock_mismatched_skus)   (SKUs; must be 0)
          conservation violations       \(r.conservationViolations)   (SKUs; must be 0)
          negative available seen       \(r.negativeAvailableSeen)   (changelog entries; must be 0)
          changelog restore mismatches  \(r.restoreMismatches)   (partitions; must be 0)
          read model vs dispatch shards \(r.bookShardMismatches)   (orders; must be 0)
          read model vs stock instances \(r.bookStockMismatches)   (SKUs; must be 0)
          dashboard vs book             \(r.dashboardMismatches)   (must be 0)
          foreign files open            \(r.foreignFilesOpen)   (must be 0)
          stuck messages                \(r.stuckMessages)   (must be 0)
          dead letters                  \(r.deadLetters)\(r.deadLetterCauses.sorted { $0.key < $1.key }.map { "\n            \($0.value) × \($0.key)" }.joined())
          kills / scale changes         \(r.kills) / \(r.scaleChanges)
          broker faults / disks lost    \(r.brokerFaults) / \(r.disksLost)
          restocks                      \(r.restocks)
          throughput                    \(s.orders_per_sec) orders/s, ingest→ERP p99 \(s.p99_ms) ms
          CPU µs per order              \(Demo.renderCPU(s.cpu_us_per_order))
          peak RSS MiB                  \(Demo.renderRSS(s.peak_rss_mib))
          verdict                       \(r.passed ? "PASS" : "FAIL: " + r.violations.joined(separator: "; "))
        """
    }
}

/// Runs the fault steps one at a time, in the background of the replay.
final class StepRunner: Sendable {
    private let tasks = Mutex<[Task<Void, Never>]>([])

    func enqueue(_ step: @escaping @Sendable () async -> Void) {
        tasks.withLock { tasks in
            let previous = tasks.last
            tasks.append(Task {
                await previous?.value
                await step()
            })
        }
    }

    func drain() async {
        while let last = tasks.withLock({ $0.last }) {
            await last.value
            if tasks.withLock({ $0.last }) == last { return }
        }
    }
}

/// Performs the faults on the dev cluster and keeps the tally.
final class ChaosMonkey: Sendable {
    enum Step: Sendable {
        case killRandom
        case scale(DevCluster.Scalable, Int)
        case requestErrors
        case brokerDown(seconds: Int)
        case loseDisk(DevCluster.Scalable)
        case restock
    }

    static let killOrder = ["stock", "dispatch", "book", "alerting", "channels"]

    struct Counts: Sendable {
        var kills = 0, scaleChanges = 0, brokerFaults = 0, disksLost = 0, restocks = 0
        var events: [String] = []
    }

    let cluster: DevCluster
    let producer: KafkaProducer
    let config: ChaosConfiguration
    let logger: Logger
    private let state = Mutex<(counts: Counts, rng: SplitMix64, restocked: [String: Int64], foreign: Int)>((Counts(), SplitMix64(seed: 0), [:], 0))

    init(cluster: DevCluster, producer: KafkaProducer, config: ChaosConfiguration, logger: Logger) {
        self.cluster = cluster
        self.producer = producer
        self.config = config
        self.logger = logger
        state.withLock { $0.rng = SplitMix64(seed: config.shape.seed &+ 7) }
    }

    var counts: Counts { state.withLock { $0.counts } }
    var restocked: [String: Int64] { state.withLock { $0.restocked } }
    /// Files seen open outside their instance's directory, at the steps (isolated mode).
    var foreignFilesOpen: Int { state.withLock { $0.foreign } }

    private func note(_ event: String, _ update: (inout Counts) -> Void) {
        say("chaos: \(event)")
        state.withLock { update(&$0.counts); $0.counts.events.append(event) }
    }

    /// Waits until every registered process is alive and each consumer owns partitions, seen
    /// twice in a row a second apart, or until `timeout`.
    func waitForSettledGroups(timeout: Double) async {
        let deadline = Date().addingTimeInterval(timeout)
        var settledPolls = 0
        while Date() < deadline && settledPolls < 2 {
            let rows = (try? await ProcessStatus.collect(discovering: KafkaConfiguration(bootstrapServers: cluster.broker.bootstrapServers), timeout: .seconds(2))) ?? []
            let settled = !rows.isEmpty && rows.allSatisfy { row in
                row.pidAlive && row.report.map { $0.checks["partitions_assigned"]?.ok ?? true } == true
            }
            settledPolls = settled ? settledPolls + 1 : 0
            try? await Task.sleep(for: .seconds(1))
        }
    }

    func perform(_ step: Step) async {
        if config.isolated {
            let foreign = Isolation.foreignFilesOpen(cluster)
            if !foreign.isEmpty {
                say("chaos: files open outside their instance's directory: \(foreign.prefix(3).joined(separator: "; "))")
                state.withLock { $0.foreign += foreign.count }
            }
        }
        do {
            switch step {
            case .killRandom:
                // Every consumer type in turn (so each is killed at least once in a run), a random instance of it.
                let victim = state.withLock { s -> String in
                    let kind = Self.killOrder[s.counts.kills % Self.killOrder.count]
                    let instances = cluster.supervisor.names.filter { $0 == kind || $0.hasPrefix("\(kind)-") }
                    return instances.isEmpty ? kind : instances[Int(s.rng.next() % UInt64(instances.count))]
                }
                try cluster.supervisor.signal(victim, SIGKILL)
                note("SIGKILL \(victim)") { $0.kills += 1 }
            case .scale(let kind, let count):
                guard cluster.instances(kind) != count else { return }
                // Stopping instances waits for their batch to commit: off the cooperative pool.
                try await blocking { try self.cluster.scale(kind, to: count) }
                note("\(kind.rawValue) scaled to \(count)") { $0.scaleChanges += 1 }
            case .requestErrors:
                // Produce (0) and Fetch (1) fail a few times with retriable errors.
                cluster.broker.pushRequestErrors(apiKey: 0, errors: Array(repeating: 19 /* NOT_ENOUGH_REPLICAS */, count: 5))
                cluster.broker.pushRequestErrors(apiKey: 1, errors: Array(repeating: 6 /* NOT_LEADER_OR_FOLLOWER */, count: 5))
                note("broker: 5 produce and 5 fetch requests fail") { $0.brokerFaults += 1 }
            case .brokerDown(let seconds):
                // Not while a group is rebalancing: the embedded broker (librdkafka 2.0.2's mock)
                // aborts its own process (`assert: !member->resp`) when a member's JoinGroup or
                // SyncGroup arrives again while it still holds the last one, which reconnects
                // around a broker outage can cause. A real broker has no such defect.
                await waitForSettledGroups(timeout: 30)
                try cluster.broker.setBroker(1, up: false)
                note("broker down for \(seconds) s") { $0.brokerFaults += 1 }
                try await Task.sleep(for: .seconds(seconds))
                try cluster.broker.setBroker(1, up: true)
                say("chaos: broker up")
            case .loseDisk(let kind):
                let instance = max(1, cluster.instances(kind))
                try await blocking { try self.cluster.loseDisk(kind, instance: instance) }
                note("\(kind.rawValue) instance \(instance) SIGKILLed and restarted on an empty disk") { $0.disksLost += 1 }
            case .restock:
                // Goods arrive for the hottest SKUs mid-session (DELTA adjustments, ids unique per step).
                let n = state.withLock { s -> Int in s.counts.restocks }
                var messages: [ProducerMessage] = []
                var added: [String: Int64] = [:]
                for i in 0..<3 {
                    let sku = String(format: "SKU-%04d", i)
                    let warehouse = i % 5 == 4 ? "east" : "main"
                    var adj = StockAdjustment()
                    adj.adjustmentID = "chaos:restock:\(n):\(sku)"
                    adj.sku = sku
                    adj.warehouse = warehouse
                    adj.kind = .delta
                    adj.quantity = 50
                    adj.reason = "chaos restock"
                    adj.createdAtUs = Clock.nowMicros()
                    messages.append(ProducerMessage(topic: Topics.stockAdjustments, key: sku, value: adj.bytes))
                    added["\(sku)@\(warehouse)"] = 50
                }
                try await producer.send(messages)
                state.withLock { s in for (k, v) in added { s.restocked[k, default: 0] += v } }
                note("restock +50 on 3 hot SKUs") { $0.restocks += 1 }
            }
        } catch {
            say("chaos: step \(step) failed: \(error)")
            logger.error("chaos step failed", metadata: ["step": "\(step)", "error": "\(error)"])
        }
    }

    private func blocking(_ body: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async {
                do { try body(); c.resume() } catch { c.resume(throwing: error) }
            }
        }
    }
}
