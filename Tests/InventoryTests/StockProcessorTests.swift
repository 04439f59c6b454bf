import Foundation
import GRDB
import Inventory
import Kafka
import Model
import Testing
import Worker

struct StockHarness {
    let store: StateStore
    let processor = StockProcessor()
    var offset: Int64 = 0

    init() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stock-\(UUID().uuidString)")
        store = try StateStore(StateStoreConfiguration(path: dir.appendingPathComponent("stock.sqlite").path, synchronous: "OFF"))
        try store.database.write { try processor.prepare($0) }
    }

    mutating func apply(_ items: [(String, [UInt8])]) throws -> BatchOutput {
        let messages = items.map { item -> KafkaMessage in
            offset += 1
            return KafkaMessage(topic: item.0, partition: 0, offset: offset, key: [], value: item.1)
        }
        return try store.database.write { [processor] db in
            var out = BatchOutput(group: "test")
            try processor.apply(messages, db: db, output: &out)
            return out
        }
    }

    func level(_ sku: String, _ warehouse: String = "main") throws -> StockLevel {
        try store.database.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT on_hand, reserved FROM stock WHERE sku = ? AND warehouse = ?", arguments: [sku, warehouse])
            return row.map { StockLevel(onHand: $0[0], reserved: $0[1]) } ?? StockLevel()
        }
    }
}

func setStock(_ sku: String, _ qty: Int64, id: String = UUID().uuidString) -> (String, [UInt8]) {
    var adj = StockAdjustment()
    adj.adjustmentID = id
    adj.sku = sku
    adj.warehouse = "main"
    adj.kind = .set
    adj.quantity = qty
    return (Topics.stockAdjustments, adj.bytes)
}

func line(_ order: String, _ sku: String, _ qty: Int64, lineNo: UInt32 = 1) -> (String, [UInt8]) {
    var l = OrderLine()
    l.orderID = order
    l.lineNo = lineNo
    l.eventID = "\(order):\(lineNo)"
    l.sku = sku
    l.warehouse = "main"
    l.quantity = qty
    l.lineCount = 1
    return (Topics.orderLines, l.bytes)
}

func reservations(_ out: BatchOutput) throws -> [Reservation] {
    try out.messages.filter { $0.topic == Topics.stockReservations }.map { try Reservation(serializedBytes: $0.value) }
}

@Test func hotSKUReservesExactlyItsStockAndRejectsTheRest() throws {
    var h = try StockHarness()
    _ = try h.apply([setStock("HOT", 10)])
    let out = try h.apply((0..<25).map { line("o\($0)", "HOT", 1) })
    let rs = try reservations(out)
    #expect(rs.count == 25)
    #expect(rs.filter { $0.status == .reserved }.count == 10)
    #expect(rs.filter { $0.status == .rejected }.count == 15)
    #expect(try h.level("HOT") == StockLevel(onHand: 10, reserved: 10))
    // Reservation messages are keyed by order id, for the dispatch join.
    #expect(out.messages.allSatisfy { String(decoding: $0.key, as: UTF8.self).hasPrefix("o") })
}

@Test func aDuplicateLineChangesNothing() throws {
    var h = try StockHarness()
    _ = try h.apply([setStock("A", 5)])
    let first = try h.apply([line("o1", "A", 2)])
    #expect(try reservations(first).count == 1)
    let again = try h.apply([line("o1", "A", 2), line("o1", "A", 2)])
    #expect(again.messages.isEmpty)
    #expect(try h.level("A") == StockLevel(onHand: 5, reserved: 2))
}

@Test func releaseReturnsAReservationOnceAndIgnoresRejectedLines() throws {
    var h = try StockHarness()
    _ = try h.apply([setStock("A", 2)])
    _ = try h.apply([line("o1", "A", 2), line("o2", "A", 1)])  // o2 rejected
    func release(_ event: String) -> (String, [UInt8]) {
        var adj = StockAdjustment()
        adj.adjustmentID = "release:\(event)"
        adj.sku = "A"
        adj.kind = .release
        adj.releaseEventID = event
        return (Topics.stockAdjustments, adj.bytes)
    }
    _ = try h.apply([release("o1:1"), release("o1:1"), release("o2:1")])
    #expect(try h.level("A") == StockLevel(onHand: 2, reserved: 0))
}

@Test func aDuplicateAdjustmentIsAppliedOnce() throws {
    var h = try StockHarness()
    var delta = StockAdjustment()
    delta.adjustmentID = "grn-1"
    delta.sku = "A"
    delta.warehouse = "main"
    delta.kind = .delta
    delta.quantity = 7
    _ = try h.apply([(Topics.stockAdjustments, delta.bytes), (Topics.stockAdjustments, delta.bytes)])
    #expect(try h.level("A").available == 7)
}

@Test func undecodableAndInvalidMessagesAreDeadLetteredAndTheBatchGoesOn() throws {
    var h = try StockHarness()
    _ = try h.apply([setStock("A", 5)])
    let out = try h.apply([
        (Topics.orderLines, [0xFF, 0xFF, 0xFF]),
        line("o1", "A", 0),
        setStock("A", -4),
        line("o2", "A", 1),
    ])
    #expect(out.deadLetters == 3)
    let dls = try out.messages.filter { $0.topic == Topics.deadLetter }.map { try DeadLetter(serializedBytes: $0.value) }
    #expect(dls.map(\.sourceOffset) == [2, 3, 4])
    #expect(dls[0].value == Data([0xFF, 0xFF, 0xFF]))
    #expect(try reservations(out).map(\.orderID) == ["o2"])
    #expect(try h.level("A").available == 4)
}
