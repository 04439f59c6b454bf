import Foundation
import GRDB
@testable import Inventory
import Kafka
import Model
import Testing
import Worker

private func entry(_ writer: String, _ seq: Int64, after prev: (String, Int64)?) -> ChangelogEntry {
    var e = ChangelogEntry()
    e.writer = writer
    e.seq = seq
    if let prev { e.prevWriter = prev.0; e.prevSeq = prev.1 }
    return e
}

private func heads(_ chain: [ChangelogEntry]) -> [String] { chain.map { "\($0.writer)#\($0.seq)" } }

@Test func chainFollowsPreviousLinksAcrossOwners() {
    let log = [entry("a", 1, after: nil), entry("a", 2, after: ("a", 1)), entry("b", 3, after: ("a", 2)), entry("b", 4, after: ("b", 3))]
    #expect(heads(ChangelogChain.longest(log)) == ["a#1", "a#2", "b#3", "b#4"])
}

@Test func chainIgnoresRepublishedDuplicatesAndOutOfOrderRetries() {
    // a#2 was retried after a#3 had landed; a#1 was republished after a crash.
    let log = [entry("a", 1, after: nil), entry("a", 3, after: ("a", 2)), entry("a", 2, after: ("a", 1)), entry("a", 1, after: nil)]
    #expect(heads(ChangelogChain.longest(log)) == ["a#1", "a#2", "a#3"])
}

@Test func chainDropsTheShortForkOfAMemberThatLostThePartition() {
    // a#3 was written by a member that no longer owned the partition; b went on from a#2.
    let log = [entry("a", 1, after: nil), entry("a", 2, after: ("a", 1)), entry("a", 3, after: ("a", 2)),
               entry("b", 3, after: ("a", 2)), entry("b", 4, after: ("b", 3))]
    #expect(heads(ChangelogChain.longest(log)) == ["a#1", "a#2", "b#3", "b#4"])
}

@Test func emptyLogHasNoChain() {
    #expect(ChangelogChain.longest([]).isEmpty)
}

@Test func stockDeltaRoundTrips() throws {
    var w = StockDelta.Writer(now: 42)
    w.line("o1:1", order: "o1", sku: "SKU-1", warehouse: "main", quantity: 2, status: 1)
    w.adjustment("load:1", sku: "SKU-1", warehouse: "main", kind: 1, quantity: 10)
    w.row(sku: "SKU-1", warehouse: "main", onHand: 10, reserved: 2)
    let d = try StockDelta.decode(w.encoded())
    #expect(d.decidedAtUs == 42)
    #expect(d.rows == [.init(sku: "SKU-1", warehouse: "main", onHand: 10, reserved: 2)])
    #expect(d.lines == [.init(eventID: "o1:1", orderID: "o1", sku: "SKU-1", warehouse: "main", quantity: 2, status: 1)])
    #expect(d.adjustments.count == 1)
    #expect(throws: BinaryCodingError.self) { try StockDelta.decode(Array(w.encoded().dropLast(3))) }
}

/// Rows of the three stock tables, for comparing two stores.
private func snapshot(_ store: StateStore) throws -> [String] {
    try store.database.read { db in
        try Row.fetchAll(db, sql: "SELECT sku, warehouse, on_hand, reserved, partition FROM stock ORDER BY sku, warehouse").map { "\($0)" }
            + Row.fetchAll(db, sql: "SELECT event_id, order_id, sku, warehouse, quantity, status, partition FROM stock_lines ORDER BY event_id").map { "\($0)" }
            + Row.fetchAll(db, sql: "SELECT adjustment_id, sku, warehouse, kind, quantity, partition FROM stock_adjustments_applied ORDER BY adjustment_id").map { "\($0)" }
    }
}

@Test func restoringTheDeltasRebuildsTheSameStore() throws {
    var original = try StockHarness()
    var deltas: [[UInt8]] = []
    func keep(_ out: BatchOutput) { if let d = out.changelog[0] { deltas.append(d) } }
    keep(try original.apply([setStock("HOT", 5, id: "load:HOT"), setStock("COLD", 1, id: "load:COLD")]))
    keep(try original.apply([line("o1", "HOT", 2), line("o2", "HOT", 2), line("o3", "HOT", 2), line("o4", "COLD", 1)]))
    keep(try original.apply([line("o2", "HOT", 2)]))  // duplicate: no delta content beyond nothing
    var release = StockAdjustment()
    release.adjustmentID = "release:o1:1"
    release.kind = .release
    release.releaseEventID = "o1:1"
    keep(try original.apply([(Topics.stockAdjustments, release.bytes)]))

    let copy = try StockHarness()
    try copy.store.database.write { db in
        var ignored = BatchOutput(group: "test")
        for d in deltas { try copy.processor.restore(d, partition: 0, db: db, output: &ignored) }
    }
    #expect(try snapshot(copy.store) == snapshot(original.store))
    #expect(try copy.level("HOT") == StockLevel(onHand: 5, reserved: 2))

    // The restored copy keeps duplicates out exactly like the original.
    var restored = copy
    let out = try restored.apply([line("o3", "HOT", 2), line("o5", "HOT", 3)])
    #expect(out.messages.count == 1)  // o3 was already decided; o5 is new
    #expect(try restored.level("HOT") == StockLevel(onHand: 5, reserved: 5))

    try copy.store.database.write { db in try copy.processor.dropPartition(0, db: db) }
    #expect(try snapshot(copy.store).isEmpty)
}

@Test func aRestoredDeltaRepublishesExactlyTheReservationsItsBatchPublished() throws {
    var original = try StockHarness()
    _ = try original.apply([setStock("HOT", 3, id: "load:HOT")])
    var lineA = OrderLine(), lineB = OrderLine()
    for (l, order) in [(0, "o1"), (1, "o2")] {
        var x = OrderLine()
        x.orderID = order; x.lineNo = 1; x.eventID = "\(order):1"; x.sku = "HOT"; x.warehouse = "main"; x.quantity = 2; x.lineCount = 2
        if l == 0 { lineA = x } else { lineB = x }
    }
    let out = try original.apply([(Topics.orderLines, lineA.bytes), (Topics.orderLines, lineB.bytes)])
    var again = BatchOutput(group: "test")
    try original.processor.outputs(ofRestored: try #require(out.changelog[0]), partition: 0, output: &again)
    let published = try out.messages.map { try Reservation(serializedBytes: $0.value) }
    let republished = try again.messages.map { try Reservation(serializedBytes: $0.value) }
    #expect(published.count == 2)
    #expect(republished == published)
    #expect(again.messages.map(\.key) == out.messages.map(\.key))
}

@Test func aLargeEntryIsSplitIntoPartsAndOnlyACompleteOneIsRestored() {
    var big = entry("a", 1, after: nil)
    big.payload = Data((0..<(ChangelogChain.maxPartBytes * 2 + 10)).map { UInt8(truncatingIfNeeded: $0) })
    let parts = ChangelogChain.split(big)
    #expect(parts.count == 3)
    #expect(parts.allSatisfy { $0.parts == 3 && $0.seq == 1 })
    // A republished part counts once; the entry completes with its last part.
    let next = entry("a", 2, after: ("a", 1))
    let assembled = ChangelogChain.assemble([parts[0], parts[1], parts[0], parts[2], next])
    #expect(assembled.map(\.seq) == [1, 2])
    #expect(assembled[0].payload == big.payload)
    // A writer that died mid-publication leaves an incomplete entry: it is not there.
    #expect(ChangelogChain.assemble([parts[0], parts[1]]).isEmpty)
}

@Test func stockDeltaLeavesOutDerivableOrderIdsAndRepeatedSKUsButKeepsTheirValues() throws {
    var w = StockDelta.Writer(now: 1)
    w.line("generic:shop-1:9:2", order: "generic:shop-1:9", sku: "HOT", warehouse: "", quantity: 1, status: 1, lineNo: 2, lineCount: 2)
    w.line("generic:shop-1:10:1", order: "generic:shop-1:10", sku: "HOT", warehouse: "", quantity: 1, status: 2, lineNo: 1, lineCount: 1)
    w.line("x:01", order: "x", sku: "HOT", warehouse: "east", quantity: 3, status: 1, lineNo: 1, lineCount: 1)  // leading zero: not derived
    w.line("custom-id", order: "o-7", sku: "COLD", warehouse: "east", quantity: 1, status: 1, lineNo: 1, lineCount: 1)
    let lines = try StockDelta.decode(w.encoded()).lines
    #expect(lines.map(\.orderID) == ["generic:shop-1:9", "generic:shop-1:10", "x", "o-7"])
    #expect(lines.map(\.sku) == ["HOT", "HOT", "HOT", "COLD"])
    #expect(lines.map(\.warehouse) == ["", "", "east", "east"])
    #expect(StockDelta.isDerived("o:12", order: "o", lineNo: 12))
    #expect(!StockDelta.isDerived("o:12", order: "o", lineNo: 1))
    #expect(!StockDelta.isDerived("o:", order: "o", lineNo: 0))
    #expect(!StockDelta.isDerived("oo:1", order: "o", lineNo: 1))
}
