import AsyncHTTPClient
import Connectors
import Foundation
import Hummingbird
import Ingest
import Kafka
import LiveSyncTesting
import Logging
import Model
import NIOCore
import ReadModel
import Testing

/// The warehouse's shipment report on ingest, against a real read model (`BookServer` over a
/// copy written by the dispatch join): ingest never opens the ERP book's file.
@Suite struct ShipmentShippedRouteTests {
    let secret = "erp-secret"
    let body = #"{"carrier":"SF","tracking_no":"SF1234567890","shipped_at":"2026-11-24T10:00:00+08:00"}"#

    func serve(book: BookClient, producer: KafkaProducer) async throws -> (url: String, task: Task<Void, Error>) {
        let router = Router()
        ShipmentShippedRoute.register(on: router, configuration: ShipmentShippedConfiguration(secret: secret, book: book), producer: producer,
                                      logger: Logger(label: "test"))
        return try await LocalServer.serve(router, label: "test-ingest")
    }

    func report(_ base: String, _ shipmentID: String) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: base + "/erp/shipments/" + shipmentID.replacingOccurrences(of: "/", with: "%2F") + "/shipped")
        request.method = .POST
        request.headers.add(name: GenericWebhook.signatureHeader, value: GenericWebhook.sign(Array(body.utf8), secret: secret))
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 16)))
    }

    @Test func aBookedShipmentIsPublishedAnUnknownOneIsA404ToRetryAndNoReadModelIsA503() async throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic(TopicSpecification(name: Topics.shipmentsShipped, partitions: Topics.partitions))
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3"])
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }

        // Dispatch booked a Douyin order: its shipment from warehouse main is in the read model.
        let book = try await LocalReadModel.start(path: FileManager.default.temporaryDirectory.appendingPathComponent("ship-\(UUID().uuidString).sqlite").path)
        defer { book.stop() }
        let orderID = "douyin:dev-shop:DY1001"
        var order = Order()
        order.orderID = orderID
        order.platform = .douyin
        order.shopID = "dev-shop"
        order.platformOrderID = "DY1001"
        order.ingestedAtUs = 1
        var line = OrderLine()
        (line.orderID, line.lineNo, line.eventID, line.sku, line.warehouse, line.quantity, line.lineCount) = (orderID, 1, "\(orderID):1", "S", "main", 1, 1)
        order.lines = [line]
        var reservation = Reservation()
        (reservation.orderID, reservation.eventID, reservation.lineNo, reservation.sku, reservation.warehouse, reservation.quantity, reservation.lineCount) =
            (orderID, "\(orderID):1", 1, "S", "main", 1, 1)
        reservation.status = .reserved
        try book.dispatch([(Topics.ordersPlaced, order.bytes), (Topics.stockReservations, reservation.bytes)])

        let ingest = try await serve(book: book.client, producer: producer)
        defer { ingest.task.cancel() }
        let unknown = try await report(ingest.url, "douyin:dev-shop:NOPE/main")
        #expect(unknown.0 == 404 && unknown.1.contains("unknown_shipment") && unknown.1.contains("retry"), "\(unknown)")
        let accepted = try await report(ingest.url, "\(orderID)/main")
        #expect(accepted.0 == 202 && accepted.1.contains(orderID), "\(accepted)")

        var published: [ShipmentShipped] = []
        try KafkaPartitionReader(configuration: kafka).readAll((0..<Topics.partitions).map { TopicPartition(Topics.shipmentsShipped, $0) }) { m in
            published.append(try ShipmentShipped(serializedBytes: m.value))
        }
        #expect(published.count == 1)
        #expect(published.first.map { [$0.shipmentID, $0.orderID, $0.shopID, $0.platformOrderID, $0.carrier, $0.trackingNo] }
                == ["\(orderID)/main", orderID, "dev-shop", "DY1001", "SF", "SF1234567890"])
        #expect(published.first?.platform == .douyin)

        // The read model does not answer: the warehouse is told to retry.
        let orphan = try await serve(book: BookClient(baseURL: "http://127.0.0.1:9", timeout: .seconds(1)), producer: producer)
        defer { orphan.task.cancel() }
        let unavailable = try await report(orphan.url, "\(orderID)/main")
        #expect(unavailable.0 == 503 && unavailable.1.contains("unavailable"), "\(unavailable)")
    }
}
