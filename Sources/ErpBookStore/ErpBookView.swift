import Foundation
import GRDB
import Kafka
import Model
import Worker

/// The ERP book's read API: what inspection, the dashboard, alerting, ingest's shipment route,
/// the demo and chaos ask of it. It opens the file read-only (it never writes, and waits for the
/// writers' lock up to `busyTimeout`); `read` runs its body in one read transaction, so the
/// figures it returns agree with each other.
public final class ErpBookView: Sendable {
    public let path: String
    private let queue: DatabaseQueue

    /// Opens the book at `path`; throws when the file cannot be opened.
    public init(path: String, busyTimeout: Duration? = .seconds(5)) throws {
        self.path = path
        queue = try StateStore.openForReading(path, busyTimeout: busyTimeout.map { TimeInterval($0.wholeMilliseconds) / 1_000 })
    }

    /// The book at `path`, or nil while no writer has created it yet.
    public static func ifPresent(path: String, busyTimeout: Duration? = .seconds(5)) throws -> ErpBookView? {
        FileManager.default.fileExists(atPath: path) ? try ErpBookView(path: path, busyTimeout: busyTimeout) : nil
    }

    /// Runs `body` in one read transaction of the book.
    public func read<T>(_ body: (Reader) throws -> T) throws -> T {
        try queue.read { db in
            // Another process creates and writes the schema: never trust a cached "no such table".
            db.clearSchemaCache()
            return try body(Reader(db: db, hasOrders: try db.tableExists("erp_orders")))
        }
    }

    /// One decided order, as the demo and chaos count them.
    public struct Decision: Sendable, Codable, Equatable {
        public var orderID: String
        public var status: String
        public var ingestedAtUs: Int64
        public var decidedAtUs: Int64

        public init(orderID: String, status: String, ingestedAtUs: Int64, decidedAtUs: Int64) {
            (self.orderID, self.status, self.ingestedAtUs, self.decidedAtUs) = (orderID, status, ingestedAtUs, decidedAtUs)
        }
    }

    /// Booked units of one SKU in one warehouse, with the book's last activity on it.
    public struct SkuBooking: Sendable {
        public var sku: String
        public var warehouse: String
        /// Units on synced orders.
        public var syncedUnits: Int64
        /// Latest decision or cancellation touching the SKU.
        public var lastActivityAtUs: Int64
    }

    /// The book's running totals (`ErpBook.Summary`), or the same aggregated from the rows of a
    /// book written before them.
    public struct Totals: Sendable {
        public struct Group: Sendable {
            public var platform: String
            public var status: String
            public var minute: Int64
            public var orders: Int
            /// Sum of the group's ingest→decision times.
            public var syncMicros: Int64
        }
        /// Orders per platform, status and minute of ingest.
        public var groups: [Group] = []
        /// Synced orders per whole millisecond of ingest→decision time, ascending.
        public var syncMilliseconds: [(ms: Int64, orders: Int)] = []
        /// The SKUs with the most rejected (out-of-stock) lines, most first.
        public var mostRejected: [(sku: String, lines: Int)] = []
        public var rejectedLines = 0
    }

    /// One of the latest decided orders (buyer fields as the book holds them: masked under a PII key).
    public struct RecentOrder: Sendable {
        public var orderID: String
        public var platform: String
        public var status: String
        public var totalFen: Int64
        public var buyerName: String
        public var buyerPhone: String
        public var syncMicros: Int64
    }

    /// A booked shipment and the platform order it belongs to.
    public struct ShipmentOwner: Sendable, Codable, Equatable {
        public var orderID: String
        public var platform: String
        public var shopID: String
        public var platformOrderID: String

        public init(orderID: String, platform: String, shopID: String, platformOrderID: String) {
            (self.orderID, self.platform, self.shopID, self.platformOrderID) = (orderID, platform, shopID, platformOrderID)
        }
    }

    /// The queries, valid inside `read`.
    public struct Reader {
        let db: Database
        let hasOrders: Bool

        /// Every booked order id.
        public func orderIDs() throws -> Set<String> {
            guard hasOrders else { return [] }
            return Set(try String.fetchAll(db, sql: "SELECT order_id FROM erp_orders"))
        }

        /// Every booked order with its decision.
        public func decisions() throws -> [Decision] {
            guard hasOrders else { return [] }
            return try Row.fetchAll(db, sql: "SELECT order_id, status, ingested_at_us, decided_at_us FROM erp_orders")
                .map { Decision(orderID: $0[0], status: $0[1], ingestedAtUs: $0[2], decidedAtUs: $0[3]) }
        }

        /// Which of `ids` the book has decided, or (`includingPending`) dispatch holds waiting for stock.
        public func known(_ ids: [String], includingPending: Bool = false) throws -> Set<String> {
            var known: Set<String> = []
            guard !ids.isEmpty else { return known }
            for table in includingPending ? ["erp_orders", "dispatch_pending_orders"] : ["erp_orders"] {
                guard try db.tableExists(table) else { continue }
                let statement = try db.makeStatement(sql: "SELECT 1 FROM \(table) WHERE order_id = ?")
                known.formUnion(try ids.filter { try Bool.fetchOne(statement, arguments: [$0]) == true })
            }
            return known
        }

        /// Units booked per SKU and warehouse.
        public func skuBookings() throws -> [SkuBooking] {
            guard hasOrders else { return [] }
            return try Row.fetchAll(db, sql: """
                SELECT l.sku, l.warehouse, SUM(CASE WHEN o.status = 'synced' THEN l.quantity ELSE 0 END),
                       MAX(MAX(o.decided_at_us), MAX(COALESCE(o.cancelled_at_us, 0)))
                FROM erp_order_lines l JOIN erp_orders o ON o.order_id = l.order_id GROUP BY l.sku, l.warehouse
                """).map { SkuBooking(sku: $0[0], warehouse: $0[1], syncedUnits: $0[2], lastActivityAtUs: $0[3]) }
        }

        /// The book's totals (a few hundred rows however many orders).
        public func totals() throws -> Totals {
            var t = Totals()
            guard hasOrders else { return t }
            let summarised = try db.tableExists("erp_summary_orders")
            for row in try Row.fetchAll(db, sql: summarised
                ? "SELECT platform, status, minute, orders, sync_us_sum FROM erp_summary_orders WHERE orders != 0"
                : "SELECT platform, status, ingested_at_us / 60000000, COUNT(*), SUM(decided_at_us - ingested_at_us) FROM erp_orders GROUP BY 1, 2, 3") {
                t.groups.append(.init(platform: row[0], status: row[1], minute: row[2], orders: row[3], syncMicros: row[4]))
            }
            for row in try Row.fetchAll(db, sql: summarised
                ? "SELECT ms, orders FROM erp_summary_sync_ms WHERE orders != 0 ORDER BY 1"
                : "SELECT (decided_at_us - ingested_at_us) / 1000, COUNT(*) FROM erp_orders WHERE status = 'synced' GROUP BY 1 ORDER BY 1") {
                t.syncMilliseconds.append((row[0], row[1]))
            }
            if summarised {
                for row in try Row.fetchAll(db, sql: "SELECT sku, lines FROM erp_summary_rejected WHERE lines != 0 ORDER BY lines DESC, sku LIMIT 5") {
                    t.mostRejected.append((row[0], row[1]))
                }
                t.rejectedLines = try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(lines), 0) FROM erp_summary_rejected") ?? 0
            } else {
                for row in try Row.fetchAll(db, sql: """
                    SELECT sku, COUNT(*) FROM erp_order_lines WHERE reservation = 'rejected' GROUP BY sku ORDER BY COUNT(*) DESC, sku LIMIT 5
                    """) { t.mostRejected.append((row[0], row[1])) }
                t.rejectedLines = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erp_order_lines WHERE reservation = 'rejected'") ?? 0
            }
            return t
        }

        /// The latest decided orders, newest first.
        public func recentOrders(limit: Int) throws -> [RecentOrder] {
            guard hasOrders else { return [] }
            return try Row.fetchAll(db, sql: """
                SELECT order_id, platform, status, total_fen, buyer_name, buyer_phone, decided_at_us - ingested_at_us
                FROM erp_orders ORDER BY decided_at_us DESC, order_id LIMIT ?
                """, arguments: [limit]).map {
                RecentOrder(orderID: $0[0], platform: $0[1], status: $0[2], totalFen: $0[3], buyerName: $0[4], buyerPhone: $0[5], syncMicros: $0[6])
            }
        }

        /// Decisions since `second` (Unix seconds): all of them and the rejected ones (`erp_summary_decisions`).
        public func decisionCounts(sinceSecond second: Int64) throws -> (total: Int, rejected: Int) {
            guard try db.tableExists("erp_summary_decisions") else { return (0, 0) }
            let row = try Row.fetchOne(db, sql: """
                SELECT COALESCE(SUM(synced + rejected + cancelled), 0), COALESCE(SUM(rejected), 0) FROM erp_summary_decisions WHERE second >= ?
                """, arguments: [second])!
            return (row[0], row[1])
        }

        /// The booked shipment `shipmentID` and its order, or nil.
        public func shipmentOwner(_ shipmentID: String) throws -> ShipmentOwner? {
            guard try db.tableExists("erp_shipments") else { return nil }
            return try Row.fetchOne(db, sql: """
                SELECT s.order_id, o.platform, o.shop_id, o.platform_order_id FROM erp_shipments s
                JOIN erp_orders o ON o.order_id = s.order_id WHERE s.shipment_id = ?
                """, arguments: [shipmentID]).map { ShipmentOwner(orderID: $0[0], platform: $0[1], shopID: $0[2], platformOrderID: $0[3]) }
        }

        /// Synced order lines whose shipments carry a different quantity of the SKU (exactly-once check).
        public func shipmentMismatches() throws -> Int {
            guard hasOrders else { return 0 }
            return try Int.fetchOne(db, sql: """
                SELECT COUNT(*) FROM (
                  SELECT l.order_id, l.sku, SUM(l.quantity) AS ordered,
                    (SELECT COALESCE(SUM(sl.quantity), 0) FROM erp_shipments s JOIN erp_shipment_lines sl ON sl.shipment_id = s.shipment_id
                      WHERE s.order_id = l.order_id AND sl.sku = l.sku) AS shipped
                  FROM erp_order_lines l JOIN erp_orders o ON o.order_id = l.order_id
                  WHERE o.status = 'synced' GROUP BY l.order_id, l.sku)
                WHERE ordered != shipped
                """) ?? 0
        }

        /// Orders dispatch holds waiting for stock decisions: how many, and the oldest of those
        /// ingested before `cutoff` (at most `limit`), oldest first. Rows of an earlier release
        /// have no ingest time: dispatch's receive time (not earlier than ingest) stands in.
        public func waitingForStock(ingestedBefore cutoff: Int64? = nil, limit: Int) throws -> (count: Int, oldest: [(orderID: String, ingestedAtUs: Int64)]) {
            guard try db.tableExists("dispatch_pending_orders") else { return (0, []) }
            let hasIngested = try db.columns(in: "dispatch_pending_orders").contains { $0.name == "ingested_at_us" }
            let at = hasIngested ? "COALESCE(ingested_at_us, received_at_us)" : "received_at_us"
            let bound = cutoff ?? Int64.max
            let count = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM dispatch_pending_orders WHERE \(at) < ?", arguments: [bound]) ?? 0
            let oldest = try Row.fetchAll(db, sql: "SELECT order_id, \(at) FROM dispatch_pending_orders WHERE \(at) < ? ORDER BY 2, 1 LIMIT ?",
                                          arguments: [bound, limit]).map { (orderID: $0[0] as String, ingestedAtUs: $0[1] as Int64) }
            return (count, oldest)
        }

        /// The writers' consumer positions stored with the book (same transaction as their decisions).
        public func positions(group: String? = nil, topic: String? = nil) throws -> [StoredPosition] {
            try StateStore.storedPositions(db, group: group, topic: topic)
        }
    }
}
