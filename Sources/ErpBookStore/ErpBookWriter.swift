import Foundation
import GRDB
import Model

extension ErpBook {
    /// The book's writes, as dispatch and after-sales make them inside their batch's transaction.
    ///
    /// Statements are prepared once per connection (SQLite caches them); a `Writer` is made per
    /// batch and is only valid inside that batch's transaction.
    public struct Writer {
        let db: Database
        private let decided, pendingOrder, pendingReservations, insertPendingOrder, insertPendingReservation: Statement
        private let deletePendingOrder, deletePendingReservations, refundWaiting, settleRefunds: Statement
        private let insertOrder, insertLine, insertShipment, insertShipmentLine: Statement

        public init(_ db: Database) throws {
            self.db = db
            decided = try db.cachedStatement(sql: "SELECT 1 FROM erp_orders WHERE order_id = ?")
            pendingOrder = try db.cachedStatement(sql: "SELECT payload FROM dispatch_pending_orders WHERE order_id = ?")
            pendingReservations = try db.cachedStatement(sql: "SELECT line_no, status FROM dispatch_pending_reservations WHERE order_id = ?")
            insertPendingOrder = try db.cachedStatement(sql: "INSERT OR IGNORE INTO dispatch_pending_orders (order_id, payload, received_at_us, ingested_at_us) VALUES (?, ?, ?, ?)")
            insertPendingReservation = try db.cachedStatement(sql: "INSERT OR IGNORE INTO dispatch_pending_reservations (event_id, order_id, line_no, status) VALUES (?, ?, ?, ?)")
            deletePendingOrder = try db.cachedStatement(sql: "DELETE FROM dispatch_pending_orders WHERE order_id = ?")
            deletePendingReservations = try db.cachedStatement(sql: "DELETE FROM dispatch_pending_reservations WHERE order_id = ?")
            refundWaiting = try db.cachedStatement(sql: "SELECT 1 FROM erp_refunds WHERE order_id = ? AND status = 'pending' LIMIT 1")
            settleRefunds = try db.cachedStatement(sql: "UPDATE erp_refunds SET status = 'refunded', booked_at_us = ? WHERE order_id = ? AND status = 'pending'")
            insertOrder = try db.cachedStatement(sql: """
                INSERT INTO erp_orders (order_id, platform, shop_id, platform_order_id, status, currency, total_fen,
                    buyer_name, buyer_phone, buyer_address, remark, line_count, paid_at_us, ingested_at_us, decided_at_us, cancelled_at_us)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            insertLine = try db.cachedStatement(sql: """
                INSERT INTO erp_order_lines (order_id, line_no, event_id, sku, warehouse, quantity, unit_price_fen, reservation)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """)
            insertShipment = try db.cachedStatement(sql: "INSERT INTO erp_shipments (shipment_id, order_id, warehouse, status, created_at_us) VALUES (?, ?, ?, 'pending', ?)")
            insertShipmentLine = try db.cachedStatement(sql: "INSERT INTO erp_shipment_lines (shipment_id, sku, quantity) VALUES (?, ?, ?)")
        }

        // MARK: Dispatch's join state

        /// Whether the order has been decided (booked) already: a later copy changes nothing.
        public func isDecided(_ orderID: String) throws -> Bool { try Bool.fetchOne(decided, arguments: [orderID]) == true }

        /// The order as received, while it waits for its stock decisions.
        public func pendingOrder(_ orderID: String) throws -> Data? { try Data.fetchOne(pendingOrder, arguments: [orderID]) }

        /// The stock decisions (`ReservationStatus` raw values) received so far for the order's lines.
        public func pendingReservations(_ orderID: String, _ body: (_ lineNo: UInt32, _ status: Int) -> Void) throws {
            let rows = try Row.fetchCursor(pendingReservations, arguments: [orderID])
            while let row = try rows.next() { body(row[0], row[1]) }
        }

        /// Keeps an order until every line has its stock decision (a repeat changes nothing).
        public func holdOrder(_ orderID: String, payload: [UInt8], receivedAtUs: Int64, ingestedAtUs: Int64?) throws {
            try insertPendingOrder.execute(arguments: [orderID, Data(payload), receivedAtUs, ingestedAtUs])
        }

        /// Keeps a line's stock decision until its order can be decided (a repeat changes nothing).
        public func holdReservation(eventID: String, orderID: String, lineNo: UInt32, status: Int) throws {
            try insertPendingReservation.execute(arguments: [eventID, orderID, lineNo, status])
        }

        /// Forgets what was held for a decided order.
        public func releasePending(_ orderID: String) throws {
            try deletePendingOrder.execute(arguments: [orderID])
            try deletePendingReservations.execute(arguments: [orderID])
        }

        // MARK: Orders and shipments

        /// Whether a refund arrived for the order before it was decided.
        public func hasRefundWaiting(_ orderID: String) throws -> Bool { try Bool.fetchOne(refundWaiting, arguments: [orderID]) == true }

        /// Books the refunds that waited for the order as refunded (the order was cancelled).
        public func settleWaitingRefunds(_ orderID: String, atUs now: Int64) throws { try settleRefunds.execute(arguments: [now, orderID]) }

        /// Books a decided order (`status`: one of `ErpBook.Status`); a cancelled one is cancelled at its decision.
        public func bookOrder(_ order: Order, status: String, decidedAtUs now: Int64) throws {
            try insertOrder.execute(arguments: [
                order.orderID, order.platform.slug, order.shopID, order.platformOrderID, status, order.currency, order.totalFen,
                order.buyer.name, order.buyer.phone, order.buyer.address, order.buyerRemark, order.lines.count,
                order.paidAtUs, order.ingestedAtUs, now, status == Status.cancelled ? now : nil,
            ])
        }

        /// Books one line of a decided order with its stock decision.
        public func bookLine(_ line: OrderLine, of orderID: String, reserved: Bool) throws {
            try insertLine.execute(arguments: [orderID, line.lineNo, line.eventID, line.sku, line.warehouse, line.quantity, line.unitPriceFen, reserved ? "reserved" : "rejected"])
        }

        /// Books a pending shipment with its lines (units per SKU).
        public func bookShipment(_ shipment: Shipment) throws {
            try insertShipment.execute(arguments: [shipment.shipmentID, shipment.orderID, shipment.warehouse, shipment.createdAtUs])
            for line in shipment.lines { try insertShipmentLine.execute(arguments: [shipment.shipmentID, line.sku, line.quantity]) }
        }

        // MARK: After-sales

        /// A booked order's state, as after-sales needs it to decide a refund.
        public struct OrderState: Sendable {
            public var status: String
            public var platform: String
            public var ingestedAtUs: Int64
            public var decidedAtUs: Int64
        }

        public func refundExists(_ refundID: String) throws -> Bool {
            try Bool.fetchOne(db, sql: "SELECT 1 FROM erp_refunds WHERE refund_id = ?", arguments: [refundID]) == true
        }

        public func orderState(_ orderID: String) throws -> OrderState? {
            try Row.fetchOne(db, sql: "SELECT status, platform, ingested_at_us, decided_at_us FROM erp_orders WHERE order_id = ?", arguments: [orderID])
                .map { OrderState(status: $0[0], platform: $0[1], ingestedAtUs: $0[2], decidedAtUs: $0[3]) }
        }

        /// Whether any of the order's shipments was handed to the carrier.
        public func isShipped(_ orderID: String) throws -> Bool {
            try Bool.fetchOne(db, sql: "SELECT 1 FROM erp_shipments WHERE order_id = ? AND status = 'shipped' LIMIT 1", arguments: [orderID]) == true
        }

        /// Books a refund request (`status`: `refunded`, `awaiting_return` or `pending`; a pending one has no booking time).
        public func bookRefund(_ refund: RefundRequest, status: String, atUs now: Int64) throws {
            try db.execute(sql: """
                INSERT INTO erp_refunds (refund_id, order_id, amount_fen, reason, status, requested_at_us, booked_at_us)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [refund.refundID, refund.orderID, refund.amountFen, refund.reason, status, refund.requestedAtUs, status == "pending" ? nil : now])
        }

        /// Cancels a synced order and its shipments; returns its reserved lines, whose stock goes back.
        public func cancelOrder(_ orderID: String, atUs now: Int64) throws -> [OrderLine] {
            try db.execute(sql: "UPDATE erp_orders SET status = ?, cancelled_at_us = ? WHERE order_id = ?", arguments: [Status.cancelled, now, orderID])
            try db.execute(sql: "UPDATE erp_shipments SET status = 'cancelled' WHERE order_id = ?", arguments: [orderID])
            return try Row.fetchAll(db, sql: "SELECT event_id, sku, warehouse, quantity FROM erp_order_lines WHERE order_id = ? AND reservation = 'reserved'", arguments: [orderID]).map { row in
                var line = OrderLine()
                line.eventID = row[0]
                line.sku = row[1]
                line.warehouse = row[2]
                line.quantity = row[3]
                return line
            }
        }
    }
}
