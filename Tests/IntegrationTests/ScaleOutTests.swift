import DevHarness
import Foundation
import GRDB
import Inventory
import Kafka
import Logging
import Model
import Testing
import Worker

/// State that follows its partitions, dead letters that can be re-driven, and the chaos run.
@Suite(.serialized) struct ScaleOutTests {
    /// Waits until `cluster`'s stock store (whichever instance holds each partition) has consumed `topic` to its end.
    func waitStockConsumed(_ cluster: DevCluster, topic: String, admin: KafkaAdmin) async throws {
        let highs = try (0..<Topics.partitions).map { try admin.watermarks(TopicPartition(topic, $0)).high }
        for _ in 0..<600 {
            let view = try StockStoreView.read(cluster.stockDatabases)
            if (0..<Topics.partitions).allSatisfy({ p in highs[Int(p)] == 0 || (view.offsets["\(topic)[\(p)]"] ?? 0) >= highs[Int(p)] }) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("stock did not consume \(topic) in 60 s")
    }

    func log(_ cluster: DevCluster, _ name: String) -> String {
        (try? String(contentsOfFile: "\(cluster.configuration.dataDirectory)/logs/\(name).log", encoding: .utf8)) ?? ""
    }

    @Test func aStockInstanceOnAnEmptyDiskRestoresThePartitionsItGainsAndCountsRight() async throws {
        var config = DevClusterConfiguration(dataDirectory: temporaryDirectory("scale"), binDirectory: binDirectory)
        config.withAlerting = false
        config.sessionTimeoutMilliseconds = 4_000
        let cluster = try await DevCluster(configuration: config, logger: Logger(label: "test"))
        defer { cluster.stop() }
        let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrap)
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }
        let admin = try KafkaAdmin(configuration: kafka)

        var shape = SessionShape()
        shape.orders = 9_000
        shape.skus = 40
        shape.refundRate = 0
        let records = SessionGenerator.generate(shape)
        let stock = records.filter { $0.type == "stock" }
        let orders = records.filter { $0.type != "stock" }
        let sender = ReplaySender(target: .kafka, producer: producer, logger: Logger(label: "test"))
        let initial = try await sender.publishStock(stock, sessionID: "scale")
        try await Demo.waitForStockLoad(cluster, expected: initial.count, timeout: 60)

        // One instance takes the first third of the session.
        var accepted = try await sender.send(Array(orders[0..<3_000])).accepted
        try await waitStockConsumed(cluster, topic: Topics.orderLines, admin: admin)

        // A second instance starts on an empty disk: it must restore what it is given before it counts.
        try cluster.scale(.stock, to: 2)
        // The group rebalances in two cooperative rounds; stock-2 restores what it is given in the second.
        for _ in 0..<600 where !log(cluster, "stock-2").contains("partition restored from the changelog") { try await Task.sleep(for: .milliseconds(100)) }
        let restoredLines = log(cluster, "stock-2").split(separator: "\n").filter { $0.contains("partition restored from the changelog") && $0.contains("fromScratch=true") }
        #expect(!restoredLines.isEmpty, "stock-2 restored its partitions from the changelog")
        #expect(restoredLines.contains { !$0.contains("entries=0 ") }, "with the first instance's entries in them")
        accepted += try await sender.send(Array(orders[3_000..<6_000])).accepted
        // Stock-2 decides its share before it goes: scaling down at once could stop it before it
        // fetched anything, and then there would be nothing for the first instance to catch up on.
        try await waitStockConsumed(cluster, topic: Topics.orderLines, admin: admin)

        // Back to one: the first instance catches up on what stock-2 wrote meanwhile, then takes the rest.
        try cluster.scale(.stock, to: 1)
        accepted += try await sender.send(Array(orders[6_000...])).accepted
        try await waitStockConsumed(cluster, topic: Topics.orderLines, admin: admin)

        let summary = try await Demo.settle(cluster: cluster, accepted: accepted, initial: initial, timeout: 120)
        #expect(summary.accepted == 9_000)
        #expect(summary.lost == 0)
        #expect(summary.oversold == 0)
        #expect(summary.stock_mismatched_skus == 0, "a line counted twice or missed after a move would show here")
        #expect(summary.rejected > 0, "the hot SKU sold out across the moves")
        let caughtUp = log(cluster, "stock").split(separator: "\n").filter { $0.contains("partition restored from the changelog") && $0.contains("fromScratch=false") }
        #expect(!caughtUp.isEmpty, "the first instance applied stock-2's entries on top of its own copy")
        // Each partition's store is the one its changelog rebuilds: the stock-2 copy is not needed any more.
        let view = try StockStoreView.read(cluster.stockDatabases)
        #expect(Set(view.owners.values) == [cluster.stockDatabase])
    }

    @Test func aDeadLetterIsListedWithItsSourceAndReplayedOnceItsCauseIsFixed() async throws {
        var config = DevClusterConfiguration(dataDirectory: temporaryDirectory("dlq"), binDirectory: binDirectory)
        config.withAlerting = false
        let cluster = try await DevCluster(configuration: config, logger: Logger(label: "test"))
        defer { cluster.stop() }
        let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrap)
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }
        let admin = try KafkaAdmin(configuration: kafka)

        var load = StockAdjustment()
        load.adjustmentID = "load:DLQ"
        load.sku = "SKU-DLQ"
        load.warehouse = "main"
        load.kind = .set
        load.quantity = 10
        // A release that arrives before the line it releases: stock cannot apply it yet.
        var release = StockAdjustment()
        release.adjustmentID = "release:o-dlq:1"
        release.sku = "SKU-DLQ"
        release.kind = .release
        release.releaseEventID = "o-dlq:1"
        try producer.sendAndWait([
            ProducerMessage(topic: Topics.stockAdjustments, key: "SKU-DLQ", value: load.bytes),
            ProducerMessage(topic: Topics.stockAdjustments, key: "SKU-DLQ", value: release.bytes),
        ])
        try await waitStockConsumed(cluster, topic: Topics.stockAdjustments, admin: admin)

        let list = try runCommand(binDirectory + "/livesync", ["dlq", "list", "--bootstrap", cluster.bootstrap, "--json"])
        #expect(list.status == 0, "\(list.stderr)")
        let entries = list.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        try #require(entries.count == 1, "\(list.stdout)")
        #expect(entries[0]["source_topic"] as? String == Topics.stockAdjustments)
        #expect(entries[0]["consumer_group"] as? String == "livesync-stock")
        #expect((entries[0]["error"] as? String ?? "").contains("release of unknown line o-dlq:1"))
        let sourcePartition = Murmur2.partition(forKey: "SKU-DLQ", partitionCount: Topics.partitions)
        #expect(entries[0]["source_partition"] as? Int == Int(sourcePartition))
        #expect(entries[0]["source_offset"] as? Int == 1)

        // The line arrives; now the release can be re-driven and returns the units.
        var line = OrderLine()
        line.orderID = "o-dlq"
        line.lineNo = 1
        line.eventID = "o-dlq:1"
        line.sku = "SKU-DLQ"
        line.warehouse = "main"
        line.quantity = 4
        line.lineCount = 1
        try producer.sendAndWait([ProducerMessage(topic: Topics.orderLines, key: "SKU-DLQ", value: line.bytes)])
        try await waitStockConsumed(cluster, topic: Topics.orderLines, admin: admin)
        #expect(try StockStoreView.read(cluster.stockDatabases).rows.first { $0.sku == "SKU-DLQ" }?.reserved == 4)

        let bad = try runCommand(binDirectory + "/livesync", ["dlq", "replay", "--bootstrap", cluster.bootstrap, "--id", "9:999"])
        #expect(bad.status != 0 && bad.stderr.contains("no dead letter with id 9:999"), "\(bad.stderr)")
        let replay = try runCommand(binDirectory + "/livesync", ["dlq", "replay", "--bootstrap", cluster.bootstrap, "--id", entries[0]["id"] as? String ?? ""])
        #expect(replay.status == 0, "\(replay.stderr)")
        try await waitStockConsumed(cluster, topic: Topics.stockAdjustments, admin: admin)
        let row = try #require(try StockStoreView.read(cluster.stockDatabases).rows.first { $0.sku == "SKU-DLQ" })
        #expect(row.reserved == 0 && row.onHand == 10, "the replayed release returned the units once")
        // Replaying again changes nothing: the release is applied once.
        _ = try runCommand(binDirectory + "/livesync", ["dlq", "replay", "--bootstrap", cluster.bootstrap, "--all"])
        try await waitStockConsumed(cluster, topic: Topics.stockAdjustments, admin: admin)
        #expect(try StockStoreView.read(cluster.stockDatabases).rows.first { $0.sku == "SKU-DLQ" }?.available == 10)
    }

    struct ChaosJSON: Decodable {
        struct Summary: Decodable { var accepted: Int; var lost: Int; var oversold: Int64; var stock_mismatched_skus: Int }
        var summary: Summary
        var kills: Int
        var scaleChanges: Int
        var brokerFaults: Int
        var disksLost: Int
        var stuckMessages: Int64
        var restoreMismatches: Int
        var conservationViolations: Int
        var bookShardMismatches: Int
        var bookStockMismatches: Int
        var dashboardMismatches: Int
        var foreignFilesOpen: Int
        var violations: [String]
    }

    /// Every instance as on a host of its own (`--isolated`: its own directory, user and
    /// environment; nothing shared but the broker's and the read model's addresses), while
    /// consumers are killed, stock and dispatch scaled 1→3→1, a stock and a dispatch instance
    /// lose their disks and the broker fails.
    @Test func aShortIsolatedChaosRunKeepsEveryInvariant() throws {
        func chaos() throws -> CommandResult {
            try runCommand(binDirectory + "/livesync", ["chaos", "--isolated", "--orders", "20000", "--rate", "500", "--json",
                                                        "--data-dir", temporaryDirectory("chaos"), "--settle-timeout", "180"])
        }
        var result = try chaos()
        // librdkafka 2.0.2's embedded broker can abort its own process on a group join racing an
        // outage (docs/operations.md); that is the test bed failing, not LiveSync: run once more.
        if result.status == 6 && result.stderr.contains("rdkafka_mock_cgrp") {
            print("chaos: the embedded broker aborted (\(result.stderr.split(separator: "\n").first { $0.contains("rdkafka_mock_cgrp") } ?? "")); running again")
            result = try chaos()
        }
        guard let line = result.stdout.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            Issue.record("chaos printed no JSON (status \(result.status)): \(result.stdout.suffix(2000)) \(result.stderr.suffix(2000))")
            return
        }
        let report = try JSONDecoder().decode(ChaosJSON.self, from: Data(line.utf8))
        #expect(report.violations.isEmpty, "\(report.violations)")
        #expect(result.status == 0)
        #expect(report.summary.accepted == 20_000)
        #expect(report.kills >= 4, "every consumer type was SIGKILLed")
        #expect(report.scaleChanges >= 4)
        #expect(report.disksLost == 2, "a stock and a dispatch instance restarted on empty disks")
        #expect(report.brokerFaults == 3)
        #expect(report.stuckMessages == 0 && report.restoreMismatches == 0 && report.conservationViolations == 0)
        #expect(report.bookShardMismatches == 0 && report.bookStockMismatches == 0, "the read model serves the union of the shards")
        #expect(report.foreignFilesOpen == 0, "no instance opened a file in another's directory")
        #expect(report.dashboardMismatches == 0, "the dashboard's figures are the book's")
    }
}
