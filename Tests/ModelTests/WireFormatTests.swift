import Foundation
import Kafka
import Model
import Testing
import Worker

@Test func orderRoundTripsThroughTheProtobufWireFormat() throws {
    var order = Order()
    order.orderID = Identifiers.orderID(platform: .douyin, shop: "s1", platformOrderID: "6912345")
    order.platform = .douyin
    order.currency = "CNY"
    order.totalFen = 12_345
    order.buyer.phone = "13812341234"
    var line = OrderLine()
    line.eventID = Identifiers.lineEventID(orderID: order.orderID, lineNo: 1)
    line.sku = "SKU-1"
    line.quantity = 2
    order.lines = [line]
    let decoded = try Order(serializedBytes: order.bytes)
    #expect(decoded == order)
    #expect(decoded.orderID == "douyin:s1:6912345")
    #expect(decoded.lines[0].eventID == "douyin:s1:6912345:1")
}

@Test func unknownFieldsFromANewerWriterSurviveDecoding() throws {
    // Field 99 (varint 7) is unknown to v1 readers: they must still decode the rest.
    var line = OrderLine()
    line.sku = "SKU-9"
    var bytes = line.bytes
    bytes += [0x98, 0x06, 0x07]
    let decoded = try OrderLine(serializedBytes: bytes)
    #expect(decoded.sku == "SKU-9")
}

@Test func phoneNumbersAreMaskedForOperators() {
    #expect(PIIMask.phone("13812341234") == "138****1234")
    #expect(PIIMask.phone("123") == "***")
    #expect(PIIMask.name("张伟") == "张*")
}

@Test func outboxFramesRoundTripAndRejectTruncation() throws {
    let messages = [
        ProducerMessage(topic: "a", key: "k1", value: [1, 2, 3]),
        ProducerMessage(topic: "stock.reservations", key: "", value: []),
    ]
    let framed = OutboxFrame.encode(messages)
    let back = try OutboxFrame.decode(framed)
    #expect(back.map(\.topic) == ["a", "stock.reservations"])
    #expect(back.map(\.key) == [Array("k1".utf8), []])
    #expect(back.map(\.value) == [[1, 2, 3], []])
    #expect(throws: OutboxFrameError.self) { try OutboxFrame.decode(Array(framed.dropLast())) }
}

@Test func sameKeyedTopicsHaveTheSamePartitionCount() {
    let counts = Dictionary(uniqueKeysWithValues: Topics.all().map { ($0.name, $0.partitions) })
    #expect(counts[Topics.orderLines] == counts[Topics.stockAdjustments])
    #expect(counts[Topics.ordersPlaced] == counts[Topics.stockReservations])
    #expect(counts[Topics.ordersPlaced] == counts[Topics.refundRequests])
}
