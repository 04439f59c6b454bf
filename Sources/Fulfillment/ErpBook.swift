import GRDB
import Model
import Worker

/// The embedded ERP book: the orders, shipments and refunds as the merchant's ERP holds them.
///
/// One SQLite file shared by dispatch and after-sales (each write is an IMMEDIATE transaction,
/// so their decisions about one order are serialised). Schema: docs/erp-book.md.
public enum ErpBook {
    public enum Status {
        public static let synced = "synced"
        public static let outOfStock = "out_of_stock"
        public static let cancelled = "cancelled"
    }

    public static func createSchema(_ db: Database) throws {
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
            """)
    }

    /// Records a warehouse's "handed to the carrier" report: a `pending` shipment becomes
    /// `shipped` and its first carrier and tracking number are kept. A repeat, or a report for a
    /// shipment already cancelled by a refund, changes nothing (the tracking row still records it).
    public static func markShipped(_ db: Database, _ shipped: ShipmentShipped, now: Int64 = Clock.nowMicros()) throws {
        try db.execute(sql: "UPDATE erp_shipments SET status = 'shipped' WHERE shipment_id = ? AND status = 'pending'", arguments: [shipped.shipmentID])
        try db.execute(sql: """
            INSERT OR IGNORE INTO erp_shipment_tracking (shipment_id, carrier, tracking_no, shipped_at_us, recorded_at_us) VALUES (?, ?, ?, ?, ?)
            """, arguments: [shipped.shipmentID, shipped.carrier, shipped.trackingNo, shipped.shippedAtUs, now])
    }
}
