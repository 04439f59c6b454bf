import ErpBookStore
import Foundation
import Fulfillment
import GRDB
import Kafka
import Model
import Testing
import Worker

/// The order id's partition, as ingest keys `orders.placed` (and every order-keyed topic,
/// `fulfillment.shipped` included).
func partitionOf(_ topic: String, _ value: [UInt8]) -> Int32 {
    let orderID: String
    switch topic {
    case Topics.ordersPlaced: orderID = (try? Order(serializedBytes: value))?.orderID ?? ""
    case Topics.stockReservations: orderID = (try? Reservation(serializedBytes: value))?.orderID ?? ""
    case Topics.refundRequests: orderID = (try? RefundRequest(serializedBytes: value))?.orderID ?? ""
    case Topics.shipmentsShipped: orderID = (try? ShipmentShipped(serializedBytes: value))?.orderID ?? ""
    default: orderID = ""
    }
    return Murmur2.partition(forKey: orderID, partitionCount: Topics.partitions)
}

/// Every row of the book's tables, as text, for comparing two books.
func dump(_ store: StateStore, totals: Bool = true) throws -> [String] {
    var tables = ["erp_orders", "erp_order_lines", "erp_shipments", "erp_shipment_lines", "erp_shipment_tracking", "erp_refunds",
                  "dispatch_pending_orders", "dispatch_pending_reservations"]
    if totals { tables += ["erp_summary_orders", "erp_summary_sync_ms", "erp_summary_rejected", "erp_summary_decisions"] }
    return try store.database.read { db in
        try tables.flatMap { table in
            try Row.fetchAll(db, sql: "SELECT * FROM \(table)").map { "\(table) \($0)" }.sorted()
        }
    }
}

/// A mixed session: orders decided in several batches, rejections, refunds before and after
/// the decision, a shipment report, and duplicates.
func session() -> [[(String, [UInt8])]] {
    var batches: [[(String, [UInt8])]] = [[], [], []]
    for i in 0..<40 {
        var o = order("cl\(i)", skus: [("A", "main"), ("HOT", i % 2 == 0 ? "main" : "east")])
        o.ingestedAtUs = Int64(i) * 3_000_000 + 1
        batches[i % 2] += [placed(o), reservation(o, line: 0, .reserved)]
        batches[(i + 1) % 3] += [reservation(o, line: 1, i % 5 == 0 ? .rejected : .reserved), placed(o)]
        if i % 9 == 4 { batches[0].append(refund(o.orderID, "early-\(i)")) }
        if i % 7 == 3 { batches[2].append(refund(o.orderID, "late-\(i)")) }
    }
    var shipped = ShipmentShipped()
    shipped.shipmentID = "cl1/main"
    shipped.orderID = "cl1"
    shipped.carrier = "SF"
    shipped.trackingNo = "SF1"
    batches[2].append((Topics.shipmentsShipped, shipped.bytes))
    batches.append(batches[1])  // a redelivered batch
    return batches
}

/// Each partition's changelog payloads, in order, and what the writer published, from
/// `batches` applied by `writers` (one per batch, cycling).
func record(_ h: inout ErpHarness, _ writers: [DispatchProcessor], _ batches: [[(String, [UInt8])]]) throws -> (entries: [Int32: [[UInt8]]], published: [String]) {
    var entries: [Int32: [[UInt8]]] = [:]
    var published: [String] = []
    for (i, batch) in batches.enumerated() {
        let out = try h.apply(writers[i % writers.count], batch, partition: partitionOf)
        for (p, payload) in out.changelog { entries[p, default: []].append(payload) }
        published += out.messages.filter { $0.topic != Topics.deadLetter }.map { "\($0.topic) \($0.key) \($0.value)" }
    }
    return (entries, published)
}

/// Restores every entry into `copy` as a restoring member does (`restore`, then
/// `outputs(ofRestored:)`); returns the outputs recreated.
func restore(_ copy: ErpHarness, _ entries: [Int32: [[UInt8]]]) throws -> [String] {
    var republished: [String] = []
    try copy.store.database.write { db in
        for (p, payloads) in entries.sorted(by: { $0.key < $1.key }) {
            for payload in payloads {
                var out = BatchOutput(group: "test")
                try copy.dispatch.restore(payload, partition: p, db: db, output: &out)
                try copy.dispatch.outputs(ofRestored: payload, partition: p, output: &out)
                republished += out.messages.map { "\($0.topic) \($0.key) \($0.value)" }
            }
        }
    }
    return republished
}

@Test(arguments: DispatchProcessor.ChangelogFormat.allCases)
func aPartitionRestoredFromItsChangelogEqualsTheSourceTotalsIncludedAndRepublishesTheSameOutputs(_ format: DispatchProcessor.ChangelogFormat) throws {
    var live = try ErpHarness(dispatch: DispatchProcessor(keepsTotals: true, changelogFormat: format))
    let (entries, published) = try record(&live, [live.dispatch], session())
    #expect(entries.count > 4, "the session spreads over several partitions")
    let version = format == .deltas ? BookEntry.deltaVersion : BookEntry.inputsVersion
    #expect(entries.values.joined().allSatisfy { $0.first == version })

    // The read model's copy (with running totals).
    let book = try ErpHarness()
    let republished = try restore(book, entries)
    #expect(try dump(book.store) == dump(live.store))
    #expect(republished.sorted() == published.sorted(), "a restore recreates exactly what the writer published")

    // A dispatch member restoring the partitions (no totals).
    let member = try ErpHarness(dispatch: DispatchProcessor())
    _ = try restore(member, entries)
    #expect(try dump(member.store, totals: false) == dump(live.store, totals: false))
}

/// During a rolling upgrade a partition's chain holds entries of inputs, then entries of
/// writes: each is applied by its own format.
@Test func aChainOfInputsThenDeltasRestoresToTheSameBook() throws {
    var live = try ErpHarness()
    let batches = session()
    let old = DispatchProcessor(keepsTotals: true, changelogFormat: .inputs)
    var (entries, published) = try record(&live, [old], Array(batches.prefix(2)))
    let after = try record(&live, [live.dispatch], Array(batches.dropFirst(2)))
    for (p, payloads) in after.entries { entries[p, default: []] += payloads }
    published += after.published
    #expect(Set(entries.values.joined().map { $0.first }) == [BookEntry.inputsVersion, BookEntry.deltaVersion])

    let book = try ErpHarness()
    let republished = try restore(book, entries)
    #expect(try dump(book.store) == dump(live.store))
    #expect(republished.sorted() == published.sorted())
}

/// A dispatch member keeps no running totals, but its entries carry their changes: the read
/// model's totals equal the `GROUP BY` of its rows, which equal the member's.
@Test func theReadModelKeepsTheTotalsFromTheDeltasOfAMemberThatKeepsNone() throws {
    var member = try ErpHarness(dispatch: DispatchProcessor())
    let (entries, _) = try record(&member, [member.dispatch], session())
    let book = try ErpHarness()
    _ = try restore(book, entries)
    #expect(try dump(book.store, totals: false) == dump(member.store, totals: false))
    #expect(try summaryTables(book) == summaryFromRows(book))
    #expect(try !summaryTables(book).isEmpty)
}

@Test func anEntryOfWritesRefusesWhatItCannotRead() throws {
    var live = try ErpHarness()
    let (entries, _) = try record(&live, [live.dispatch], session())
    let payload = try #require(entries.values.joined().max { $0.count < $1.count })
    let copy = try ErpHarness()
    func restoring(_ bytes: [UInt8]) throws {
        try copy.store.database.write { db in
            var out = BatchOutput(group: "test")
            try copy.dispatch.restore(bytes, partition: 0, db: db, output: &out)
        }
    }
    #expect(throws: ErpBook.DeltaError.self) { try restoring(Array(payload.dropLast())) }
    #expect(throws: ErpBook.DeltaError.unknownOp(99, at: payload.count)) { try restoring(payload + [99]) }
    #expect(throws: BookEntryError.unknownVersion(3)) { try restoring([3] + payload.dropFirst()) }
    #expect(try dump(copy.store).isEmpty, "nothing of a refused entry is kept")
}

@Test func droppingAPartitionRemovesExactlyItsOrdersAndRecountsTheTotals() throws {
    var h = try ErpHarness()
    for batch in session() { _ = try h.apply(h.dispatch, batch, partition: partitionOf) }
    let before = try h.store.database.read { try String.fetchAll($0, sql: "SELECT order_id FROM erp_orders") }
    let victim = Murmur2.partition(forKey: before[0], partitionCount: Topics.partitions)
    try h.store.database.write { try h.dispatch.dropPartition(victim, db: $0) }
    let after = try h.store.database.read { try String.fetchAll($0, sql: "SELECT order_id FROM erp_orders") }
    #expect(Set(after) == Set(before.filter { Murmur2.partition(forKey: $0, partitionCount: Topics.partitions) != victim }))
    #expect(try h.count("SELECT COUNT(*) FROM erp_shipments s WHERE NOT EXISTS (SELECT 1 FROM erp_orders o WHERE o.order_id = s.order_id)") == 0)
    #expect(try h.count("SELECT COUNT(*) FROM erp_order_lines l WHERE NOT EXISTS (SELECT 1 FROM erp_orders o WHERE o.order_id = l.order_id)") == 0)
    #expect(try summaryTables(h) == summaryFromRows(h))
}

@Test func aShardKeepsNoRunningTotalsButTheSameRows() throws {
    var withTotals = try ErpHarness()
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shard-\(UUID().uuidString)")
    let shardStore = try StateStore(StateStoreConfiguration(path: dir.appendingPathComponent("dispatch.sqlite").path, synchronous: "OFF"))
    let shard = DispatchProcessor()
    try shardStore.database.write { try shard.prepare($0) }
    for batch in session() {
        _ = try withTotals.apply(withTotals.dispatch, batch, partition: partitionOf)
        let messages = batch.enumerated().map { KafkaMessage(topic: $1.0, partition: partitionOf($1.0, $1.1), offset: Int64($0), key: [], value: $1.1) }
        try shardStore.database.write { db in
            var out = BatchOutput(group: "test")
            try shard.apply(messages, db: db, output: &out)
        }
    }
    #expect(try shardStore.database.read { try $0.tableExists("erp_summary_orders") } == false)
    // The same decisions (the two books were written at different times).
    func decisions(_ store: StateStore) throws -> [String] {
        try store.database.read { db in
            try String.fetchAll(db, sql: "SELECT order_id || ' ' || status FROM erp_orders ORDER BY 1")
                + String.fetchAll(db, sql: "SELECT refund_id || ' ' || status FROM erp_refunds ORDER BY 1")
                + String.fetchAll(db, sql: "SELECT shipment_id || ' ' || status FROM erp_shipments ORDER BY 1")
        }
    }
    #expect(try decisions(shardStore) == decisions(withTotals.store))
}

@Test func aBookEntryRoundTripsAndRefusesWhatItCannotRead() throws {
    let entry = BookEntry(decidedAtUs: 1_700_000_000_123_456, inputs: [(.order, [1, 2, 3]), (.refund, []), (.shipped, Array(repeating: 7, count: 300))])
    #expect(try BookEntry.decode(entry.encoded()) == entry)
    var truncated = entry.encoded()
    truncated.removeLast()
    #expect(throws: BookEntryError.self) { try BookEntry.decode(truncated) }
    var future = entry.encoded()
    future[0] = 9
    #expect(throws: BookEntryError.unknownVersion(9)) { try BookEntry.decode(future) }
}

/// The book's raw-bound writes keep every value as given: empty and non-ASCII text, large
/// integers, a NULL ingest time and the order's payload bytes.
@Test func theBooksWritesKeepEveryValueAsGiven() throws {
    var h = try ErpHarness()
    var o = order("raw-1", skus: [("SKU-甲", "仓-1")])
    o.buyer.name = "王芳"
    o.buyerRemark = ""
    o.totalFen = Int64(Int32.max) * 3
    o.paidAtUs = 1_700_000_000_123_456
    _ = try h.apply(h.dispatch, [placed(o)])
    let held = try h.store.database.read { try Data.fetchOne($0, sql: "SELECT payload FROM dispatch_pending_orders WHERE order_id = 'raw-1'") }
    #expect(held.map { [UInt8]($0) } == o.bytes)
    _ = try h.apply(h.dispatch, [reservation(o, line: 0, .reserved)])
    let row = try #require(try h.store.database.read { try Row.fetchOne($0, sql: "SELECT buyer_name, remark, total_fen, paid_at_us, cancelled_at_us FROM erp_orders WHERE order_id = 'raw-1'") })
    #expect(row[0] as String == "王芳" && row[1] as String == "" && row[2] as Int64 == Int64(Int32.max) * 3 && row[3] as Int64 == 1_700_000_000_123_456)
    #expect((row[4] as Int64?) == nil)
    #expect(try h.count("SELECT COUNT(*) FROM erp_order_lines WHERE sku = 'SKU-甲' AND warehouse = '仓-1' AND reservation = 'reserved'") == 1)
    #expect(try h.count("SELECT COUNT(*) FROM erp_shipment_lines WHERE shipment_id = 'raw-1/仓-1' AND sku = 'SKU-甲'") == 1)
}
