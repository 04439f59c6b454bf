import Foundation
import Fulfillment
import GRDB
import Kafka
import Model
import Worker

/// Books refund requests in the ERP book.
///
/// Unshipped synced order: cancelled, its shipments cancelled, its stock released. Shipped
/// order: the refund waits for the return. Order not decided yet: the refund is kept pending
/// and dispatch cancels the order when it decides it. A refund id seen before changes nothing.
public final class RefundProcessor: BatchProcessor {
    public init() {}

    public func prepare(_ db: Database) throws { try ErpBook.createSchema(db) }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        let now = Clock.nowMicros()
        // The book's running totals of the batch's cancellations, written once with them.
        var summary = ErpBook.Summary()
        for message in messages {
            guard message.topic == Topics.refundRequests else {
                output.deadLetter(message, error: "after-sales does not consume topic \(message.topic)")
                continue
            }
            guard let refund = try? RefundRequest(serializedBytes: message.value), !refund.refundID.isEmpty, !refund.orderID.isEmpty, refund.amountFen >= 0 else {
                output.deadLetter(message, error: "not a valid RefundRequest (needs refund_id, order_id, amount_fen >= 0)")
                continue
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM erp_refunds WHERE refund_id = ?", arguments: [refund.refundID]) == true { continue }
            let row = try Row.fetchOne(db, sql: "SELECT status, ingested_at_us, platform, decided_at_us FROM erp_orders WHERE order_id = ?", arguments: [refund.orderID])
            var refundStatus = "refunded"
            var outcome = OrderOutcome()
            outcome.orderID = refund.orderID
            outcome.decidedAtUs = now
            outcome.kind = .refundBooked
            if let row {
                let status: String = row[0]
                outcome.ingestedAtUs = row[1]
                if status == ErpBook.Status.synced {
                    let shipped = try Bool.fetchOne(db, sql: "SELECT 1 FROM erp_shipments WHERE order_id = ? AND status = 'shipped' LIMIT 1", arguments: [refund.orderID]) == true
                    if shipped {
                        refundStatus = "awaiting_return"
                        outcome.detail = "order already shipped: refund waits for the return"
                    } else {
                        // Moved from synced to cancelled in the running totals.
                        summary.order(platform: row[2], status: status, ingestedAtUs: row[1], decidedAtUs: row[3], sign: -1)
                        summary.order(platform: row[2], status: ErpBook.Status.cancelled, ingestedAtUs: row[1], decidedAtUs: row[3])
                        summary.decided(ErpBook.Status.cancelled, atUs: now)
                        try cancel(refund.orderID, db: db, output: &output, now: now)
                        outcome.kind = .cancelled
                        outcome.detail = "refund before shipping"
                    }
                }
            } else {
                refundStatus = "pending"
            }
            try db.execute(sql: """
                INSERT INTO erp_refunds (refund_id, order_id, amount_fen, reason, status, requested_at_us, booked_at_us)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [refund.refundID, refund.orderID, refund.amountFen, refund.reason, refundStatus, refund.requestedAtUs, refundStatus == "pending" ? nil : now])
            if refundStatus != "pending" {
                output.emit(topic: Topics.orderOutcomes, key: refund.orderID, value: outcome.bytes)
            }
        }
        try summary.write(db)
    }

    private func cancel(_ orderID: String, db: Database, output: inout BatchOutput, now: Int64) throws {
        try db.execute(sql: "UPDATE erp_orders SET status = ?, cancelled_at_us = ? WHERE order_id = ?", arguments: [ErpBook.Status.cancelled, now, orderID])
        try db.execute(sql: "UPDATE erp_shipments SET status = 'cancelled' WHERE order_id = ?", arguments: [orderID])
        for row in try Row.fetchAll(db, sql: "SELECT event_id, sku, warehouse, quantity FROM erp_order_lines WHERE order_id = ? AND reservation = 'reserved'", arguments: [orderID]) {
            var line = OrderLine()
            line.eventID = row[0]
            line.sku = row[1]
            line.warehouse = row[2]
            line.quantity = row[3]
            output.emit(topic: Topics.stockAdjustments, key: line.sku, value: DispatchProcessor.release(line, reason: "refund", now: now).bytes)
        }
    }
}
