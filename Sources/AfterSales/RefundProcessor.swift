import Foundation
import ErpBookStore
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
        let book = try ErpBook.Writer(db)
        for message in messages {
            guard message.topic == Topics.refundRequests else {
                output.deadLetter(message, error: "after-sales does not consume topic \(message.topic)")
                continue
            }
            guard let refund = try? RefundRequest(serializedBytes: message.value), !refund.refundID.isEmpty, !refund.orderID.isEmpty, refund.amountFen >= 0 else {
                output.deadLetter(message, error: "not a valid RefundRequest (needs refund_id, order_id, amount_fen >= 0)")
                continue
            }
            if try book.refundExists(refund.refundID) { continue }
            let row = try book.orderState(refund.orderID)
            var refundStatus = "refunded"
            var outcome = OrderOutcome()
            outcome.orderID = refund.orderID
            outcome.decidedAtUs = now
            outcome.kind = .refundBooked
            if let row {
                outcome.ingestedAtUs = row.ingestedAtUs
                if row.status == ErpBook.Status.synced {
                    if try book.isShipped(refund.orderID) {
                        refundStatus = "awaiting_return"
                        outcome.detail = "order already shipped: refund waits for the return"
                    } else {
                        // Moved from synced to cancelled in the running totals.
                        summary.order(platform: row.platform, status: row.status, ingestedAtUs: row.ingestedAtUs, decidedAtUs: row.decidedAtUs, sign: -1)
                        summary.order(platform: row.platform, status: ErpBook.Status.cancelled, ingestedAtUs: row.ingestedAtUs, decidedAtUs: row.decidedAtUs)
                        summary.decided(ErpBook.Status.cancelled, atUs: now)
                        for line in try book.cancelOrder(refund.orderID, atUs: now) {
                            output.emit(topic: Topics.stockAdjustments, key: line.sku, value: DispatchProcessor.release(line, reason: "refund", now: now).bytes)
                        }
                        outcome.kind = .cancelled
                        outcome.detail = "refund before shipping"
                    }
                }
            } else {
                refundStatus = "pending"
            }
            try book.bookRefund(refund, status: refundStatus, atUs: now)
            if refundStatus != "pending" {
                output.emit(topic: Topics.orderOutcomes, key: refund.orderID, value: outcome.bytes)
            }
        }
        try summary.write(db)
    }
}
