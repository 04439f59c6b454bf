import Connectors
import GRDB
import Kafka
import Model
import Worker

/// Turns the warehouse's `ShipmentShipped` reports into platform write-back jobs, once per
/// shipment id: a repeat of the report (a retried POST, a redelivered batch) queues nothing.
/// Orders of LiveSync's own generic webhook have no platform to tell and are only recorded.
/// Orders of a platform without a configured write-back client are queued all the same, and
/// the dispatcher dead-letters them ("no client configured"), so a missing write-back is loud.
public enum ShipmentWriteBack {
    public static func createSchema(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS channel_shipments (
                shipment_id TEXT PRIMARY KEY, order_id TEXT NOT NULL, channel TEXT NOT NULL,
                platform_order_id TEXT NOT NULL, carrier TEXT NOT NULL, tracking_no TEXT NOT NULL,
                shipped_at_us INTEGER NOT NULL, recorded_at_us INTEGER NOT NULL, queued INTEGER NOT NULL) WITHOUT ROWID;
            """)
    }

    /// Applies one message of `fulfillment.shipped` inside the batch's transaction.
    public static func apply(_ message: KafkaMessage, db: Database, output: inout BatchOutput, now: Int64) throws {
        guard let s = try? ShipmentShipped(serializedBytes: message.value), !s.shipmentID.isEmpty, !s.platformOrderID.isEmpty,
              !s.carrier.isEmpty, !s.trackingNo.isEmpty else {
            output.deadLetter(message, error: "not a valid ShipmentShipped (needs shipment_id, platform_order_id, carrier, tracking_no)")
            return
        }
        let channel = Channel(platform: s.platform, shopID: s.shopID)
        let queue = s.platform != .generic
        try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO channel_shipments (shipment_id, order_id, channel, platform_order_id, carrier, tracking_no, shipped_at_us, recorded_at_us, queued)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [s.shipmentID, s.orderID, channel.key, s.platformOrderID, s.carrier, s.trackingNo, s.shippedAtUs, now, queue])
        guard db.changesCount == 1, queue else { return }  // a repeat, or nothing to write back
        try OutboundQueue.enqueueShipment(db, channel, platformOrderID: s.platformOrderID, carrier: s.carrier, trackingNumber: s.trackingNo, now: now)
    }
}
