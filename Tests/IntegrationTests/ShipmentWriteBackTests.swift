import AsyncHTTPClient
import DevHarness
import Connectors
import Foundation
import GRDB
import Ingest
import Kafka
import Logging
import Model
import NIOCore
import ReadModel
import Testing
import Worker

/// The warehouse's shipment report on a `livesync dev` cluster: ingest checks the signature and
/// the ERP book, channels writes the shipment back to the (fake) platform once per shipment id
/// however often it is reported, and dispatch marks the ERP book's shipment shipped; and the
/// session's stock levels reach the fake platform's stock push.
@Test func aShipmentReportedTwiceIsWrittenBackToThePlatformOnceAndBadReportsAreRefused() async throws {
    let dir = temporaryDirectory("shipped")
    var config = DevClusterConfiguration(dataDirectory: dir, binDirectory: binDirectory)
    config.withAlerting = false
    let cluster = try await DevCluster(configuration: config, logger: Logger(label: "test"))
    defer { cluster.stop() }

    // A Douyin order, booked by dispatch once stock reserved its line (published straight to
    // Kafka as ingest and stock would); the read model then knows its shipment.
    let orderID = "douyin:dev-shop:DY1001"
    let shipmentID = "\(orderID)/main"
    var placed = placedOrder(orderID, ingested: 0, sku: "SKU-S1", platform: .douyin, shopID: "dev-shop")
    placed.currency = "CNY"
    placed.totalFen = 100
    let decision = reserved(orderID, sku: "SKU-S1")
    let fixtures = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrap))
    defer { fixtures.close() }
    try await fixtures.send([ProducerMessage(topic: Topics.ordersPlaced, key: orderID, value: placed.bytes),
                             ProducerMessage(topic: Topics.stockReservations, key: orderID, value: decision.bytes)])
    let readModel = BookClient(baseURL: cluster.bookURL)
    try await waitFor("the read model holds the booked shipment", timeout: 60) { try await readModel.shipmentOwner(shipmentID) != nil }
    let book = try openDatabase(cluster.bookDatabase)

    func report(_ path: String, _ body: String, secret: String) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: cluster.ingestURL + path)
        request.method = .POST
        request.headers.add(name: GenericWebhook.signatureHeader, value: GenericWebhook.sign(Array(body.utf8), secret: secret))
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 16)))
    }
    let body = #"{"carrier":"SF","tracking_no":"SF1234567890","shipped_at":"2026-11-24T10:00:00+08:00"}"#
    // Refused: wrong secret, unknown shipment, missing tracking number; nothing is written back for them.
    #expect(try await report("/erp/shipments/\(shipmentID)/shipped", body, secret: "not-the-secret").0 == 401)
    let unknown = try await report("/erp/shipments/douyin:dev-shop:NOPE%2Fmain/shipped", body, secret: cluster.erpSecret)
    #expect(unknown.0 == 404 && unknown.1.contains("unknown_shipment"))
    #expect(try await report("/erp/shipments/\(shipmentID)/shipped", #"{"carrier":"SF"}"#, secret: cluster.erpSecret).0 == 400)
    // Accepted twice: raw and percent-encoded id, as a retrying warehouse system would send it.
    let first = try await report("/erp/shipments/\(shipmentID)/shipped", body, secret: cluster.erpSecret)
    #expect(first.0 == 202, "\(first.1)")
    let second = try await report("/erp/shipments/douyin:dev-shop:DY1001%2Fmain/shipped", body, secret: cluster.erpSecret)
    #expect(second.0 == 202, "\(second.1)")

    // Channels has applied both reports once its position on `fulfillment.shipped` covers two
    // messages (in the transaction that queued the write-back); a second write-back, had the repeat
    // queued one, would then be a job of its own, pending or sent: none may exist.
    let channels = try StateStore.openForReading(dir + "/channels.sqlite", busyTimeout: 10)
    try await waitFor("channels applied both shipment reports", timeout: 30) {
        try await channels.read { db in
            try StateStore.storedPositions(db, group: "livesync-channels", topic: Topics.shipmentsShipped).reduce(0) { $0 + $1.next } >= 2
        }
    }
    try await waitFor("the write-back was sent", timeout: 30) { !cluster.platformAPI.writeBacks.isEmpty }
    let jobs = try await channels.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM outbound_jobs WHERE kind = 'shipment'") }
    #expect(jobs == 1)
    #expect(cluster.platformAPI.writeBacks == [.init(platformOrderID: "DY1001", carrier: "SF", trackingNumber: "SF1234567890")])
    #expect(cluster.platformAPI.refused.load(ordering: .relaxed) == 0)

    var status = ""
    for _ in 0..<100 {
        status = try await book.read { try String.fetchOne($0, sql: "SELECT status FROM erp_shipments WHERE shipment_id = ?", arguments: [shipmentID]) } ?? ""
        if status == "shipped" { break }
        try await Task.sleep(for: .milliseconds(100))
    }
    #expect(status == "shipped")
    let tracking = try await book.read { try String.fetchOne($0, sql: "SELECT tracking_no FROM erp_shipment_tracking WHERE shipment_id = ?", arguments: [shipmentID]) }
    #expect(tracking == "SF1234567890")

    // The same dev session pushes stock: 5 on hand, an order of 2 → the Douyin channel shows 3.
    let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrap))
    defer { producer.close() }
    var sender = ReplaySender(target: .kafka, producer: producer, logger: Logger(label: "test"))
    sender.concurrency = 1
    _ = try await sender.publishStock([ReplayRecord(type: "stock", at: 0, stock: .init(sku: "SKU-W1", warehouse: "main", available: 5))], sessionID: "w")
    let stock = try openDatabase(cluster.stockDatabase)
    for _ in 0..<200 {
        if try await stock.read({ try $0.tableExists("stock") && Int64.fetchOne($0, sql: "SELECT on_hand FROM stock WHERE sku = 'SKU-W1'") == 5 }) { break }
        try await Task.sleep(for: .milliseconds(100))
    }
    let order = #"{"shop_id":"shop-1","order_id":"W1","currency":"CNY","buyer":{"name":"王芳","phone":"13900001111","address":"上海"},"lines":[{"sku":"SKU-W1","quantity":2,"unit_price_fen":990}]}"#
    var request = HTTPClientRequest(url: cluster.ingestURL + "/webhooks/generic")
    request.method = .POST
    request.headers.add(name: GenericWebhook.signatureHeader, value: GenericWebhook.sign(Array(order.utf8), secret: cluster.shops["shop-1"]!))
    request.body = .bytes(ByteBuffer(string: order))
    #expect(try await HTTPClient.shared.execute(request, timeout: .seconds(30)).status.code == 200)
    for _ in 0..<200 where cluster.platformAPI.stock["SKU-W1"] != 3 { try await Task.sleep(for: .milliseconds(100)) }
    #expect(cluster.platformAPI.stock["SKU-W1"] == 3)
}
