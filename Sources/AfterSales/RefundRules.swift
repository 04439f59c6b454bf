import ErpBookStore
import Foundation
import GRDB
import Model
import Worker

/// What a refund request does to its order, applied by the order's one writer (the dispatch
/// member holding the order's partition) inside its batch transaction, so a refund, the order's
/// stock decision and the warehouse's shipment report are serialised without any shared lock.
///
/// Unshipped synced order: cancelled, its shipments cancelled, its stock released. Shipped
/// order: the refund waits for the return. Order not decided yet: the refund is kept pending
/// and the order is cancelled when it is decided. A refund id seen before changes nothing.
public enum RefundRules {
    /// Books `refund` against the book as it stands; adds the releases and the outcome to
    /// `output` and the status change to `summary`.
    public static func apply(_ refund: RefundRequest, book: ErpBook.Writer, summary: inout ErpBook.Summary,
                             output: inout BatchOutput, now: Int64) throws {
        if try book.refundExists(refund.refundID) { return }
        var refundStatus = "refunded"
        var outcome = OrderOutcome()
        outcome.orderID = refund.orderID
        outcome.decidedAtUs = now
        outcome.kind = .refundBooked
        outcome.refundID = refund.refundID
        outcome.refundFen = refund.amountFen
        if let row = try book.orderState(refund.orderID) {
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
                        output.emit(topic: Topics.stockAdjustments, key: line.sku, value: StockAdjustment.release(line, reason: "refund", now: now).bytes)
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

    /// Whether a message's refund request is one the rules can book.
    public static func isValid(_ refund: RefundRequest) -> Bool {
        !refund.refundID.isEmpty && !refund.orderID.isEmpty && refund.amountFen >= 0
    }
}
