import Foundation
import GRDB
import Kafka
import Model

/// The embedded ERP book: the orders, shipments and refunds as the merchant's ERP holds them,
/// and dispatch's join state (orders waiting for their stock decisions).
///
/// One SQLite file shared by dispatch and after-sales (each write is an IMMEDIATE transaction,
/// so their decisions about one order are serialised). Schema: docs/erp-book.md. This module is
/// the only one with SQL on these tables: writers use `ErpBook.Writer` inside their batch's
/// transaction, views use `ErpBookView`.
public enum ErpBook {
    public enum Status {
        public static let synced = "synced"
        public static let outOfStock = "out_of_stock"
        public static let cancelled = "cancelled"
    }

    /// Creates the book's tables if missing; `totals`: also its running totals (`Summary`),
    /// counted from the rows already there.
    public static func createSchema(_ db: Database, totals: Bool = true) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS erp_orders (
                order_id TEXT PRIMARY KEY, platform TEXT NOT NULL, shop_id TEXT NOT NULL,
                platform_order_id TEXT NOT NULL, status TEXT NOT NULL, currency TEXT NOT NULL,
                total_fen INTEGER NOT NULL, buyer_name TEXT NOT NULL, buyer_phone TEXT NOT NULL,
                buyer_address TEXT NOT NULL, remark TEXT NOT NULL, line_count INTEGER NOT NULL,
                paid_at_us INTEGER NOT NULL, ingested_at_us INTEGER NOT NULL,
                decided_at_us INTEGER NOT NULL, cancelled_at_us INTEGER) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS erp_order_lines (
                order_id TEXT NOT NULL, line_no INTEGER NOT NULL, event_id TEXT NOT NULL,
                sku TEXT NOT NULL, warehouse TEXT NOT NULL, quantity INTEGER NOT NULL,
                unit_price_fen INTEGER NOT NULL, reservation TEXT NOT NULL,
                PRIMARY KEY (order_id, line_no)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS erp_shipments (
                shipment_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, warehouse TEXT NOT NULL,
                status TEXT NOT NULL, created_at_us INTEGER NOT NULL) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS erp_shipments_order ON erp_shipments (order_id);
            CREATE TABLE IF NOT EXISTS erp_shipment_lines (
                shipment_id TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL,
                PRIMARY KEY (shipment_id, sku)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS erp_shipment_tracking (
                shipment_id TEXT PRIMARY KEY, carrier TEXT NOT NULL, tracking_no TEXT NOT NULL,
                shipped_at_us INTEGER NOT NULL, recorded_at_us INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS erp_refunds (
                refund_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount_fen INTEGER NOT NULL,
                reason TEXT NOT NULL, status TEXT NOT NULL, requested_at_us INTEGER NOT NULL,
                booked_at_us INTEGER) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS erp_refunds_order ON erp_refunds (order_id);
            -- The latest decisions, for live views, without a scan.
            CREATE INDEX IF NOT EXISTS erp_orders_decided ON erp_orders (decided_at_us);
            CREATE TABLE IF NOT EXISTS dispatch_pending_orders (
                order_id TEXT PRIMARY KEY, payload BLOB NOT NULL, received_at_us INTEGER NOT NULL,
                ingested_at_us INTEGER) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS dispatch_pending_reservations (
                event_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, line_no INTEGER NOT NULL,
                status INTEGER NOT NULL) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS dispatch_pending_reservations_order ON dispatch_pending_reservations (order_id);
            """)
        // Books of an earlier release: the order's ingest time, which alerting reads to find
        // orders waiting beyond their SLA (NULL on rows stored before).
        if try !db.columns(in: "dispatch_pending_orders").contains(where: { $0.name == "ingested_at_us" }) {
            try db.execute(sql: "ALTER TABLE dispatch_pending_orders ADD COLUMN ingested_at_us INTEGER")
        }
        if totals { try Summary.createSchema(db) }
    }

    /// Deletes every row of the orders in source partition `partition` (of `partitionCount`, by
    /// murmur2 of the order id, as ingest keys `orders.placed`): the book's share of one
    /// partition, before it is rebuilt from `dispatch.changelog`. A rare, scanning operation.
    /// The running totals, when the book keeps them, are recounted from the remaining rows.
    public static func dropPartition(_ partition: Int32, of partitionCount: Int32, db: Database) throws {
        db.add(function: DatabaseFunction("livesync_partition", argumentCount: 1, pure: true) { values in
            guard let key = String.fromDatabaseValue(values[0]) else { return nil }
            return Int64(Murmur2.partition(forKey: key, partitionCount: partitionCount))
        })
        let inPartition = "livesync_partition(order_id) = \(partition)"
        try db.execute(sql: """
            DELETE FROM erp_shipment_lines WHERE shipment_id IN (SELECT shipment_id FROM erp_shipments WHERE \(inPartition));
            DELETE FROM erp_shipment_tracking WHERE shipment_id IN (SELECT shipment_id FROM erp_shipments WHERE \(inPartition));
            DELETE FROM erp_shipments WHERE \(inPartition);
            DELETE FROM erp_order_lines WHERE \(inPartition);
            DELETE FROM erp_orders WHERE \(inPartition);
            DELETE FROM erp_refunds WHERE \(inPartition);
            DELETE FROM dispatch_pending_orders WHERE \(inPartition);
            DELETE FROM dispatch_pending_reservations WHERE \(inPartition);
            """)
        if try db.tableExists("erp_summary_orders") { try Summary.recount(db) }
    }

    /// Running totals of the book, kept in the same transactions as the rows they count, so that
    /// a live view (the dashboard) reads a few hundred rows instead of scanning every order:
    ///
    /// - `erp_summary_orders`: orders per platform, status and minute of ingest, with the sum of
    ///   their ingest→decision times;
    /// - `erp_summary_sync_ms`: synced orders per whole millisecond of ingest→decision time;
    /// - `erp_summary_rejected`: rejected (out-of-stock) lines per SKU;
    /// - `erp_summary_decisions`: decisions per second (an order synced, rejected or cancelled
    ///   by dispatch, and a synced order cancelled by after-sales), for the failure-rate alert;
    ///   only the last `decisionSeconds` are kept.
    ///
    /// Each equals the `GROUP BY` of the rows it counts (tests compare them); a book from before
    /// the summary is counted once when the schema is created.
    public struct Summary {
        struct OrderKey: Hashable { var platform: String, status: String, minute: Int64 }
        var orders: [OrderKey: (count: Int64, syncMicros: Int64)] = [:]
        var syncMilliseconds: [Int64: Int64] = [:]
        var rejected: [String: Int64] = [:]
        var decisions: [Int64: (synced: Int64, rejected: Int64, cancelled: Int64)] = [:]

        public init() {}

        /// How long decisions per second are kept: the longest failure-rate window.
        public static let decisionSeconds: Int64 = 3_600

        /// Counts the totals again from the rows (after rows were dropped).
        public static func recount(_ db: Database) throws {
            for table in ["erp_summary_decisions", "erp_summary_orders", "erp_summary_sync_ms", "erp_summary_rejected"] {
                try db.execute(sql: "DROP TABLE IF EXISTS \(table)")
            }
            try createSchema(db)
        }

        static func createSchema(_ db: Database) throws {
            if try !db.tableExists("erp_summary_decisions") {
                // A synced order cancelled later was decided twice: synced, then cancelled.
                try db.execute(sql: """
                    CREATE TABLE erp_summary_decisions (
                        second INTEGER PRIMARY KEY, synced INTEGER NOT NULL, rejected INTEGER NOT NULL, cancelled INTEGER NOT NULL);
                    INSERT INTO erp_summary_decisions (second, synced, rejected, cancelled)
                        SELECT second, SUM(s), SUM(r), SUM(c) FROM (
                            SELECT decided_at_us / 1000000 AS second,
                                   status = 'synced' OR (status = 'cancelled' AND cancelled_at_us <> decided_at_us) AS s,
                                   status = 'out_of_stock' AS r,
                                   status = 'cancelled' AND cancelled_at_us = decided_at_us AS c
                              FROM erp_orders
                            UNION ALL
                            SELECT cancelled_at_us / 1000000, 0, 0, 1 FROM erp_orders WHERE status = 'cancelled' AND cancelled_at_us <> decided_at_us)
                        GROUP BY second;
                    """)
            }
            guard try !db.tableExists("erp_summary_orders") else { return }
            try db.execute(sql: """
                CREATE TABLE erp_summary_orders (
                    platform TEXT NOT NULL, status TEXT NOT NULL, minute INTEGER NOT NULL,
                    orders INTEGER NOT NULL, sync_us_sum INTEGER NOT NULL,
                    PRIMARY KEY (platform, status, minute)) WITHOUT ROWID;
                CREATE TABLE erp_summary_sync_ms (ms INTEGER PRIMARY KEY, orders INTEGER NOT NULL);
                CREATE TABLE erp_summary_rejected (sku TEXT PRIMARY KEY, lines INTEGER NOT NULL) WITHOUT ROWID;
                INSERT INTO erp_summary_orders
                    SELECT platform, status, ingested_at_us / 60000000, COUNT(*), SUM(decided_at_us - ingested_at_us) FROM erp_orders GROUP BY 1, 2, 3;
                INSERT INTO erp_summary_sync_ms
                    SELECT (decided_at_us - ingested_at_us) / 1000, COUNT(*) FROM erp_orders WHERE status = 'synced' GROUP BY 1;
                INSERT INTO erp_summary_rejected
                    SELECT sku, COUNT(*) FROM erp_order_lines WHERE reservation = 'rejected' GROUP BY 1;
                """)
        }

        /// Counts a booked order (`sign` 1) or takes it back (`sign` -1, when its status changes).
        public mutating func order(platform: String, status: String, ingestedAtUs: Int64, decidedAtUs: Int64, sign: Int64 = 1) {
            let syncMicros = decidedAtUs - ingestedAtUs
            let key = OrderKey(platform: platform, status: status, minute: ingestedAtUs / 60_000_000)
            let current = orders[key] ?? (0, 0)
            orders[key] = (current.count + sign, current.syncMicros + sign * syncMicros)
            if status == Status.synced { syncMilliseconds[syncMicros / 1_000, default: 0] += sign }
        }

        public mutating func rejectedLine(sku: String) { rejected[sku, default: 0] += 1 }

        /// Counts a decision (`synced`, `out_of_stock` or `cancelled`) in its second.
        public mutating func decided(_ status: String, atUs: Int64) {
            let second = atUs / 1_000_000
            var c = decisions[second] ?? (0, 0, 0)
            switch status {
            case Status.synced: c.synced += 1
            case Status.outOfStock: c.rejected += 1
            default: c.cancelled += 1
            }
            decisions[second] = c
        }

        /// Adds the counted changes to the tables, inside the caller's transaction.
        public func write(_ db: Database) throws {
            if !orders.isEmpty {
                let upsert = try db.cachedStatement(sql: """
                    INSERT INTO erp_summary_orders (platform, status, minute, orders, sync_us_sum) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (platform, status, minute) DO UPDATE SET orders = orders + excluded.orders, sync_us_sum = sync_us_sum + excluded.sync_us_sum
                    """)
                for (key, value) in orders where value.count != 0 || value.syncMicros != 0 {
                    try upsert.execute(arguments: [key.platform, key.status, key.minute, value.count, value.syncMicros])
                }
            }
            if !syncMilliseconds.isEmpty {
                let upsert = try db.cachedStatement(sql: """
                    INSERT INTO erp_summary_sync_ms (ms, orders) VALUES (?, ?) ON CONFLICT (ms) DO UPDATE SET orders = orders + excluded.orders
                    """)
                for (ms, count) in syncMilliseconds where count != 0 { try upsert.execute(arguments: [ms, count]) }
            }
            if !rejected.isEmpty {
                let upsert = try db.cachedStatement(sql: """
                    INSERT INTO erp_summary_rejected (sku, lines) VALUES (?, ?) ON CONFLICT (sku) DO UPDATE SET lines = lines + excluded.lines
                    """)
                for (sku, count) in rejected where count != 0 { try upsert.execute(arguments: [sku, count]) }
            }
            if !decisions.isEmpty {
                let upsert = try db.cachedStatement(sql: """
                    INSERT INTO erp_summary_decisions (second, synced, rejected, cancelled) VALUES (?, ?, ?, ?)
                    ON CONFLICT (second) DO UPDATE SET synced = synced + excluded.synced, rejected = rejected + excluded.rejected,
                        cancelled = cancelled + excluded.cancelled
                    """)
                for (second, c) in decisions { try upsert.execute(arguments: [second, c.synced, c.rejected, c.cancelled]) }
                // One indexed range delete per batch, nearly always of nothing.
                try db.execute(sql: "DELETE FROM erp_summary_decisions WHERE second < ?",
                               arguments: [decisions.keys.max()! - Self.decisionSeconds])
            }
        }
    }

    /// Records a warehouse's "handed to the carrier" report: a `pending` shipment becomes
    /// `shipped` and its first carrier and tracking number are kept. A repeat, or a report for a
    /// shipment already cancelled by a refund, changes nothing (the tracking row still records it).
    public static func markShipped(_ db: Database, _ shipped: ShipmentShipped, now: Int64 = Clock.nowMicros()) throws {
        try Writer(db).markShipped(shipped, now: now)
    }
}
