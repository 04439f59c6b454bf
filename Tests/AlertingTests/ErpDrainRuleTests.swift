import Bootstrap
import ErpSync
import Foundation
import GRDB
import Hummingbird
import Kafka
import LiveSyncTesting
import Logging
import Model
import NIOCore
import Synchronization
import Testing
import Worker
@testable import Alerting

@Suite struct ErpDrainRuleTests {
    /// A `livesync-erp` instance announced on `livesync.instances` whose `/erp/status` shows a
    /// stalled queue, then refused orders, then a drained queue.
    @Test func aStalledOrRefusingErpTargetRaisesAnAlertThatResolvesWhenItDrains() async throws {
        let status = Mutex(ErpStatus(target: "tryton", kind: "tryton", partitions: [0, 1], queued: 1_200, consumerLag: 300, pending: 0, documents: 10,
                                     oldestQueuedSeconds: 90, drainEtaSeconds: -1, statistics: ErpWriterStatistics()))
        let router = Router()
        router.get("/erp/status") { _, _ in
            let body = try JSONEncoder().encode(status.withLock { $0 })
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        let (url, server) = try await LocalServer.serve(router, label: "fake-erp")
        defer { server.cancel() }
        let processes = try AnnouncedProcesses()
        let kafka = processes.kafka
        try processes.announce("erp-1", url: url, pid: getpid(), group: "livesync-erp-tryton")

        let store = try alertStore()
        let config = AlertingConfiguration(
            rules: AlertRulesConfiguration(rules: [.erpDrain(maxSeconds: 600, pending: true)], channels: []),
            instances: InstanceDirectory(kafka: kafka), processCheckInterval: .seconds(1))
        let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
        func open() async throws -> [(String, String)] {
            try await store.database.read { db in
                try Row.fetchAll(db, sql: "SELECT dedupe_key, message FROM alerts WHERE resolved_at_us IS NULL").map { ($0[0], $0[1]) }
            }
        }
        let now = Clock.nowMicros()
        try await notifier.sweep(now: now)
        var alerts = try await open()
        #expect(alerts.map(\.0) == ["erp_drain_slow:erp-1"])
        #expect(alerts.first?.1.contains("积压 1500 单") == true)

        status.withLock { $0.queued = 0; $0.consumerLag = 0; $0.drainEtaSeconds = nil; $0.pending = 3 }
        try await notifier.sweep(now: now + 2_000_000)
        alerts = try await open()
        #expect(alerts.first?.1.contains("待处理队列有 3 单") == true)

        status.withLock { $0.pending = 0 }
        try await notifier.sweep(now: now + 4_000_000)
        #expect(try await open().isEmpty)
        withExtendedLifetime(processes) {}  // the broker lives until the sweeps are done
    }

    @Test func theRuleIsReadFromTheFile() throws {
        let c = try AlertRulesConfiguration.parse("""
            {"livesync": {"alerting": {"rules": {"erp": {"kind": "erp_drain", "maxSeconds": 300, "pending": false}}}}}
            """, source: "f.json")
        #expect(c.rules == [.erpDrain(maxSeconds: 300, pending: false)])
    }
}
