import AsyncHTTPClient
import DevHarness
import Foundation
import GRDB
import Ingest
import Kafka
import Logging
import Model
import NIOCore
import Testing
import Worker

/// Ingest's HTTP contract on a live cluster: duplicates are harmless, bad input publishes nothing,
/// and every line sits in the partition Java's murmur2 gives its SKU.
@Suite(.serialized) struct IngestTests {
    func post(_ url: String, _ body: String, secret: String?, shopHeader: String? = nil) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        if let shopHeader { request.headers.add(name: GenericWebhook.shopHeader, value: shopHeader) }
        if let secret { request.headers.add(name: GenericWebhook.signatureHeader, value: GenericWebhook.sign(Array(body.utf8), secret: secret)) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 16))
        return (Int(response.status.code), text)
    }

    /// Waits until `group` has consumed everything on `topic` (its SQLite offsets reach the high watermarks).
    func waitConsumed(_ db: String, group: String, topic: String, admin: KafkaAdmin) async throws {
        let highs = try (0..<Topics.partitions).map { try admin.watermarks(TopicPartition(topic, $0)).high }
        for _ in 0..<300 {
            let stored = try StateStore(StateStoreConfiguration(path: db)).offsets(group: group)
            if (0..<Topics.partitions).allSatisfy({ p in highs[Int(p)] == 0 || (stored[TopicPartition(topic, p)] ?? 0) >= highs[Int(p)] }) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("\(group) did not consume \(topic) in 30 s")
    }

    @Test func aRedeliveredWebhookChangesNothingAndBadRequestsPublishNothing() async throws {
        let dir = temporaryDirectory("ingest")
        var config = DevClusterConfiguration(dataDirectory: dir, binDirectory: binDirectory)
        config.withAlerting = false
        let cluster = try await DevCluster(configuration: config, logger: Logger(label: "test"))
        defer { cluster.stop() }
        let kafka = KafkaConfiguration(bootstrapServers: cluster.bootstrap)
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }
        let admin = try KafkaAdmin(configuration: kafka)

        var sender = ReplaySender(target: .kafka, producer: producer, logger: Logger(label: "test"))
        sender.concurrency = 1
        _ = try await sender.publishStock([
            ReplayRecord(type: "stock", at: 0, stock: .init(sku: "SKU-T1", warehouse: "main", available: 5)),
            ReplayRecord(type: "stock", at: 0, stock: .init(sku: "SKU-T2", warehouse: "main", available: 5)),
        ], sessionID: "t")
        try await waitConsumed(cluster.stockDatabase, group: "livesync-stock", topic: Topics.stockAdjustments, admin: admin)

        let secret = cluster.shops["shop-1"]!
        let url = cluster.ingestURL + "/webhooks/generic"
        let order = #"{"shop_id":"shop-1","order_id":"D1","currency":"CNY","buyer":{"name":"王芳","phone":"13900001111","address":"上海"},"lines":[{"sku":"SKU-T1","quantity":2,"unit_price_fen":990},{"sku":"SKU-T2","quantity":1,"unit_price_fen":100}]}"#
        let first = try await post(url, order, secret: secret)
        #expect(first.0 == 200)
        let again = try await post(url, order, secret: secret)
        #expect(again.0 == 200)

        let unsigned = try await post(url, order.replacingOccurrences(of: "D1", with: "D2"), secret: "wrong")
        #expect(unsigned.0 == 401)
        #expect(unsigned.1.contains("bad_signature"))
        let noHeader = try await post(url, order.replacingOccurrences(of: "D1", with: "D3"), secret: nil)
        #expect(noHeader.0 == 401)
        let badQty = order.replacingOccurrences(of: "D1", with: "D4").replacingOccurrences(of: #""quantity":2"#, with: #""quantity":0"#)
        let invalid = try await post(url, badQty, secret: secret)
        #expect(invalid.0 == 400)
        #expect(invalid.1.contains(#""field":"lines[0].quantity""#))
        let badCurrency = try await post(url, order.replacingOccurrences(of: "D1", with: "D5").replacingOccurrences(of: "CNY", with: "XYZ"), secret: secret)
        #expect(badCurrency.0 == 400 && badCurrency.1.contains(#""field":"currency""#))
        let malformed = try await post(url, #"{"shop_id":"shop-1","order_id":"#, secret: secret)
        #expect(malformed.0 == 400)
        let unknownShop = try await post(url, order.replacingOccurrences(of: "shop-1", with: "shop-x"), secret: secret)
        #expect(unknownShop.0 == 401)
        // With the shop header the signature is checked before parsing, and the body must agree.
        let headerBadSig = try await post(url, "not even json", secret: "wrong", shopHeader: "shop-1")
        #expect(headerBadSig.0 == 401)
        let headerMismatch = try await post(url, order.replacingOccurrences(of: "D1", with: "D6"), secret: cluster.shops["shop-2"]!, shopHeader: "shop-2")
        #expect(headerMismatch.0 == 400 && headerMismatch.1.contains(#""field":"shop_id""#))

        try await waitConsumed(cluster.stockDatabase, group: "livesync-stock", topic: Topics.orderLines, admin: admin)
        try await waitConsumed(cluster.bookDatabase, group: "livesync-dispatch", topic: Topics.ordersPlaced, admin: admin)
        try await waitConsumed(cluster.bookDatabase, group: "livesync-dispatch", topic: Topics.stockReservations, admin: admin)

        // Only the accepted order reached Kafka, twice (the redelivery), and nothing else.
        let placedCount = try (0..<Topics.partitions).reduce(Int64(0)) { $0 + (try admin.watermarks(TopicPartition(Topics.ordersPlaced, $1)).high) }
        #expect(placedCount == 2)

        let stock = try openDatabase(cluster.stockDatabase)
        let reserved = try await stock.read { try Int64.fetchOne($0, sql: "SELECT reserved FROM stock WHERE sku = 'SKU-T1'") }
        #expect(reserved == 2, "the redelivered order must not reserve twice")
        let erp = try openDatabase(cluster.bookDatabase)
        let rows = try await erp.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erp_orders") ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erp_order_lines") ?? 0,
             try String.fetchOne(db, sql: "SELECT status FROM erp_orders WHERE order_id = 'generic:shop-1:D1'"))
        }
        #expect(rows.0 == 1)
        #expect(rows.1 == 2)
        #expect(rows.2 == "synced")
    }

    @Test func kcatReadsOrderLinesKeyedBySKUInTheirJavaMurmur2Partition() async throws {
        let dir = temporaryDirectory("kcat")
        var config = DevClusterConfiguration(dataDirectory: dir, binDirectory: binDirectory)
        config.withAlerting = false
        let cluster = try await DevCluster(configuration: config, logger: Logger(label: "test"))
        defer { cluster.stop() }
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrap))
        defer { producer.close() }
        var shape = SessionShape()
        shape.orders = 300
        shape.skus = 40
        let records = SessionGenerator.generate(shape)
        let sender = ReplaySender(target: .http(ingestURL: cluster.ingestURL, shops: cluster.shops), producer: producer, logger: Logger(label: "test"))
        let result = try await sender.send(records)
        #expect(result.accepted.count == 300)

        // kcat's simple consumer (-C without -G): a group member with another assignor would crash the mock.
        let kcat = ["/usr/bin/kcat", "/usr/local/bin/kcat"].first { FileManager.default.isExecutableFile(atPath: $0) }
        try #require(kcat != nil, "kcat is installed by the README's test command (apt-get install kcat)")
        let out = try runCommand(kcat!, ["-C", "-b", cluster.bootstrap, "-t", Topics.orderLines, "-e", "-q", "-f", "%k %p\\n"], timeout: .seconds(60))
        let rows = out.stdout.split(separator: "\n").map { $0.split(separator: " ") }
        let expectedLines = records.compactMap(\.order).reduce(0) { $0 + $1.lines.count }
        #expect(rows.count == expectedLines)
        for row in rows {
            #expect(row.count == 2)
            let sku = String(row[0])
            #expect(sku.hasPrefix("SKU-"))
            #expect(Int32(row[1]) == Murmur2.partition(forKey: sku, partitionCount: Topics.partitions))
        }
    }
}
