import ErpBookStore
import AfterSales
import Foundation
import Fulfillment
import GRDB
import Kafka
import Model
import Testing
import Worker

/// Dispatch's order book (with its running totals, as the read model keeps it).
struct ErpHarness {
    let store: StateStore
    let dispatch: DispatchProcessor
    var offset: Int64 = 0

    init(dispatch: DispatchProcessor = DispatchProcessor(keepsTotals: true)) throws {
        self.dispatch = dispatch
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("erp-\(UUID().uuidString)")
        store = try StateStore(StateStoreConfiguration(path: dir.appendingPathComponent("erp.sqlite").path, synchronous: "OFF"))
        try store.database.write { db in
            try dispatch.prepare(db)
        }
    }

    /// Applies one batch; each message goes to partition `partition(value)` (default 0).
    mutating func apply(_ processor: any BatchProcessor, _ items: [(String, [UInt8])], partition: (String, [UInt8]) -> Int32 = { _, _ in 0 }) throws -> BatchOutput {
        let messages = items.map { item -> KafkaMessage in
            offset += 1
            return KafkaMessage(topic: item.0, partition: partition(item.0, item.1), offset: offset, key: [], value: item.1)
        }
        return try store.database.write { db in
            var out = BatchOutput(group: "test")
            try processor.apply(messages, db: db, output: &out)
            return out
        }
    }

    func status(_ orderID: String) throws -> String? {
        try store.database.read { try String.fetchOne($0, sql: "SELECT status FROM erp_orders WHERE order_id = ?", arguments: [orderID]) }
    }

    func count(_ sql: String) throws -> Int {
        try store.database.read { try Int.fetchOne($0, sql: sql) ?? 0 }
    }
}

func order(_ id: String, skus: [(String, String)]) -> Order {
    var o = Order()
    o.orderID = id
    o.platform = .generic
    o.shopID = "shop-1"
    o.platformOrderID = id
    o.currency = "CNY"
    o.ingestedAtUs = 1
    for (i, (sku, wh)) in skus.enumerated() {
        var l = OrderLine()
        l.orderID = id
        l.lineNo = UInt32(i + 1)
        l.eventID = "\(id):\(i + 1)"
        l.sku = sku
        l.warehouse = wh
        l.quantity = 1
        l.lineCount = UInt32(skus.count)
        o.lines.append(l)
    }
    return o
}

func reservation(_ o: Order, line: Int, _ status: ReservationStatus) -> (String, [UInt8]) {
    var r = Reservation()
    r.eventID = o.lines[line].eventID
    r.orderID = o.orderID
    r.lineNo = o.lines[line].lineNo
    r.sku = o.lines[line].sku
    r.status = status
    return (Topics.stockReservations, r.bytes)
}

func placed(_ o: Order) -> (String, [UInt8]) { (Topics.ordersPlaced, o.bytes) }

func refund(_ orderID: String, _ id: String) -> (String, [UInt8]) {
    var r = RefundRequest()
    r.orderID = orderID
    r.refundID = id
    r.amountFen = 100
    return (Topics.refundRequests, r.bytes)
}

@Test func anOrderIsSyncedOnlyWhenEveryLineIsReservedWhateverTheArrivalOrder() throws {
    var h = try ErpHarness()
    let o = order("o1", skus: [("A", "main"), ("B", "east")])
    _ = try h.apply(h.dispatch, [reservation(o, line: 1, .reserved)])
    #expect(try h.status("o1") == nil)
    _ = try h.apply(h.dispatch, [placed(o)])
    #expect(try h.status("o1") == nil)
    let out = try h.apply(h.dispatch, [reservation(o, line: 0, .reserved)])
    #expect(try h.status("o1") == ErpBook.Status.synced)
    // One shipment per warehouse, in the book and on the topic.
    #expect(try h.count("SELECT COUNT(*) FROM erp_shipments WHERE order_id = 'o1'") == 2)
    #expect(out.messages.filter { $0.topic == Topics.shipments }.count == 2)
    #expect(out.messages.filter { $0.topic == Topics.orderOutcomes }.count == 1)
    // The outcome carries the whole order: what livesync-erp makes the ERP's sale order of.
    let outcome = try OrderOutcome(serializedBytes: try #require(out.messages.first { $0.topic == Topics.orderOutcomes }).value)
    #expect(outcome.kind == .synced)
    #expect(outcome.order == o)
    var encoded = outcome
    encoded.order = o
    #expect(out.messages.first { $0.topic == Topics.orderOutcomes }?.value == encoded.bytes, "the order's bytes as received are its encoding")
}

@Test func aRejectedLineReleasesTheReservedOnesAndBooksTheOrderOutOfStock() throws {
    var h = try ErpHarness()
    let o = order("o2", skus: [("A", "main"), ("HOT", "main")])
    let out = try h.apply(h.dispatch, [placed(o), reservation(o, line: 0, .reserved), reservation(o, line: 1, .rejected)])
    #expect(try h.status("o2") == ErpBook.Status.outOfStock)
    let releases = try out.messages.filter { $0.topic == Topics.stockAdjustments }.map { try StockAdjustment(serializedBytes: $0.value) }
    #expect(releases.map(\.releaseEventID) == ["o2:1"])
    #expect(releases.allSatisfy { $0.kind == .release && $0.adjustmentID == "release:\($0.releaseEventID)" })
    #expect(try h.count("SELECT COUNT(*) FROM erp_shipments") == 0)
}

@Test func duplicatesOfADecidedOrderChangeNothing() throws {
    var h = try ErpHarness()
    let o = order("o3", skus: [("A", "main")])
    _ = try h.apply(h.dispatch, [placed(o), reservation(o, line: 0, .reserved)])
    let again = try h.apply(h.dispatch, [placed(o), reservation(o, line: 0, .reserved)])
    #expect(again.messages.isEmpty)
    #expect(try h.count("SELECT COUNT(*) FROM erp_orders") == 1)
    #expect(try h.count("SELECT COUNT(*) FROM dispatch_pending_orders") == 0)
}

@Test func aRefundOfAnUnshippedOrderCancelsItAndReleasesItsStockOnce() throws {
    var h = try ErpHarness()
    let o = order("o4", skus: [("A", "main"), ("B", "main")])
    _ = try h.apply(h.dispatch, [placed(o), reservation(o, line: 0, .reserved), reservation(o, line: 1, .reserved)])
    let out = try h.apply(h.dispatch, [refund("o4", "r1"), refund("o4", "r1")])
    #expect(try h.status("o4") == ErpBook.Status.cancelled)
    #expect(out.messages.filter { $0.topic == Topics.stockAdjustments }.count == 2)
    #expect(try h.count("SELECT COUNT(*) FROM erp_refunds WHERE status = 'refunded'") == 1)
    #expect(try h.count("SELECT COUNT(*) FROM erp_shipments WHERE status = 'cancelled'") == 1)
}

@Test func aRefundBeforeTheOrderIsDecidedCancelsItWhenDispatchDecides() throws {
    var h = try ErpHarness()
    let o = order("o5", skus: [("A", "main")])
    _ = try h.apply(h.dispatch, [refund("o5", "r5")])
    #expect(try h.count("SELECT COUNT(*) FROM erp_refunds WHERE status = 'pending'") == 1)
    let out = try h.apply(h.dispatch, [placed(o), reservation(o, line: 0, .reserved)])
    #expect(try h.status("o5") == ErpBook.Status.cancelled)
    #expect(out.messages.filter { $0.topic == Topics.stockAdjustments }.count == 1)
    #expect(try h.count("SELECT COUNT(*) FROM erp_refunds WHERE status = 'refunded'") == 1)
}

@Test func aRefundOfAShippedOrderWaitsForTheReturn() throws {
    var h = try ErpHarness()
    let o = order("o6", skus: [("A", "main")])
    _ = try h.apply(h.dispatch, [placed(o), reservation(o, line: 0, .reserved)])
    try h.store.database.write { try $0.execute(sql: "UPDATE erp_shipments SET status = 'shipped'") }
    let out = try h.apply(h.dispatch, [refund("o6", "r6")])
    #expect(try h.status("o6") == ErpBook.Status.synced)
    #expect(out.messages.filter { $0.topic == Topics.stockAdjustments }.isEmpty)
    #expect(try h.count("SELECT COUNT(*) FROM erp_refunds WHERE status = 'awaiting_return'") == 1)
}

/// The ERP book's running totals, as `GROUP BY`s of the rows they count.
func summaryFromRows(_ h: ErpHarness) throws -> [String] {
    try h.store.database.read { db in
        try String.fetchAll(db, sql: """
            SELECT 'o|' || platform || '|' || status || '|' || (ingested_at_us / 60000000) || '|' || COUNT(*) || '|' || SUM(decided_at_us - ingested_at_us)
              FROM erp_orders GROUP BY platform, status, ingested_at_us / 60000000
            UNION ALL SELECT 'l|' || ((decided_at_us - ingested_at_us) / 1000) || '|' || COUNT(*) FROM erp_orders WHERE status = 'synced' GROUP BY (decided_at_us - ingested_at_us) / 1000
            UNION ALL SELECT 'r|' || sku || '|' || COUNT(*) FROM erp_order_lines WHERE reservation = 'rejected' GROUP BY sku
            UNION ALL SELECT 'd|' || second || '|' || SUM(s) || '|' || SUM(r) || '|' || SUM(c) FROM (
                SELECT decided_at_us / 1000000 AS second, status IN ('synced', 'cancelled') AND cancelled_at_us IS NOT decided_at_us AS s,
                       status = 'out_of_stock' AS r, status = 'cancelled' AND cancelled_at_us = decided_at_us AS c FROM erp_orders
                UNION ALL SELECT cancelled_at_us / 1000000, 0, 0, 1 FROM erp_orders WHERE status = 'cancelled' AND cancelled_at_us <> decided_at_us)
              GROUP BY second
            ORDER BY 1
            """)
    }
}

func summaryTables(_ h: ErpHarness) throws -> [String] {
    try h.store.database.read { db in
        try String.fetchAll(db, sql: """
            SELECT 'o|' || platform || '|' || status || '|' || minute || '|' || orders || '|' || sync_us_sum FROM erp_summary_orders WHERE orders != 0
            UNION ALL SELECT 'l|' || ms || '|' || orders FROM erp_summary_sync_ms WHERE orders != 0
            UNION ALL SELECT 'r|' || sku || '|' || lines FROM erp_summary_rejected WHERE lines != 0
            UNION ALL SELECT 'd|' || second || '|' || synced || '|' || rejected || '|' || cancelled FROM erp_summary_decisions
            ORDER BY 1
            """)
    }
}

@Test func theBooksRunningTotalsEqualItsRowsThroughDecisionsDuplicatesAndRefunds() throws {
    var h = try ErpHarness()
    var batch: [(String, [UInt8])] = []
    for i in 0..<60 {
        var o = order("s\(i)", skus: [("A", "main"), ("HOT", i % 2 == 0 ? "main" : "east")])
        o.ingestedAtUs = Int64(i) * 7_000_000 + 1  // spread over several minutes
        o.platform = i % 3 == 0 ? .douyin : .generic
        batch += [placed(o), reservation(o, line: 0, .reserved), reservation(o, line: 1, i % 4 == 0 ? .rejected : .reserved)]
        if i % 10 == 5 { batch.append(refund(o.orderID, "early-\(i)")) }  // refunds some before dispatch decides
    }
    // Refunds that come first cancel at dispatch; the others decide in two batches, one duplicated.
    _ = try h.apply(h.dispatch, batch.filter { $0.0 == Topics.refundRequests })
    let decisions = batch.filter { $0.0 != Topics.refundRequests }
    _ = try h.apply(h.dispatch, Array(decisions.prefix(90)))
    _ = try h.apply(h.dispatch, Array(decisions.suffix(from: 60)))
    // Refunds after the decision: synced orders move to cancelled, the others stay.
    _ = try h.apply(h.dispatch, (0..<60).filter { $0 % 7 == 1 }.map { refund("s\($0)", "late-\($0)") })
    #expect(try h.count("SELECT COUNT(*) FROM erp_orders WHERE status = 'cancelled'") > 6)
    #expect(try h.count("SELECT COUNT(*) FROM erp_orders WHERE status = 'out_of_stock'") > 0)
    let rows = try summaryFromRows(h)
    #expect(rows.count > 10)
    #expect(try summaryTables(h) == rows)

    // A book written before the totals existed is counted when the schema is next created.
    try h.store.database.write { db in
        try db.execute(sql: "DROP TABLE erp_summary_orders; DROP TABLE erp_summary_sync_ms; DROP TABLE erp_summary_rejected; DROP TABLE erp_summary_decisions")
        try h.dispatch.prepare(db)
    }
    #expect(try summaryTables(h) == rows)
}

@Test func decisionsPerSecondKeepOnlyTheLastHour() throws {
    let db = try DatabaseQueue()
    try db.write { db in
        try ErpBook.createSchema(db)
        let start: Int64 = 1_700_000_000_000_000
        var first = ErpBook.Summary()
        first.decided(ErpBook.Status.synced, atUs: start)
        first.decided(ErpBook.Status.outOfStock, atUs: start + 1_000_000)
        try first.write(db)
        var later = ErpBook.Summary()
        later.decided(ErpBook.Status.cancelled, atUs: start + (ErpBook.Summary.decisionSeconds + 1) * 1_000_000)
        try later.write(db)
        let seconds = try Int64.fetchAll(db, sql: "SELECT second - ? FROM erp_summary_decisions ORDER BY second", arguments: [start / 1_000_000])
        #expect(seconds == [1, ErpBook.Summary.decisionSeconds + 1], "the second an hour and more before the latest is gone")
    }
}
