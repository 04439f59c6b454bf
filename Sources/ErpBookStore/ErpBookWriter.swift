import Foundation
import GRDB
import Model

extension ErpBook {
    /// The book's writes, as dispatch and after-sales make them inside their batch's transaction.
    ///
    /// Statements are prepared once per connection (SQLite caches them); a `Writer` is made per
    /// batch and is only valid inside that batch's transaction. Made with `recording:`, it also
    /// appends each write to that `Delta` (the batch's changelog entry), which `apply` replays.
    public struct Writer {
        let db: Database
        var recorder: Delta?
        private let decided, pendingOrder, pendingReservations, insertPendingOrder, insertPendingReservation: Statement
        private let deletePendingOrder, deletePendingReservations, refundWaiting, settleRefunds: Statement
        private let insertOrder, insertLine, insertShipment, insertShipmentLine: Statement
        private let shipShipment, insertTracking: Statement

        public init(_ db: Database, recording recorder: Delta? = nil) throws {
            self.db = db
            self.recorder = recorder
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
            shipShipment = try db.cachedStatement(sql: "UPDATE erp_shipments SET status = 'shipped' WHERE shipment_id = ? AND status = 'pending'")
            insertTracking = try db.cachedStatement(sql: """
                INSERT OR IGNORE INTO erp_shipment_tracking (shipment_id, carrier, tracking_no, shipped_at_us, recorded_at_us) VALUES (?, ?, ?, ?, ?)
                """)
        }

        /// The same writer recording into `delta` instead (no statement looked up again).
        public func recording(_ delta: Delta?) -> Writer {
            var w = self
            w.recorder = delta
            return w
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
            if let r = recorder {
                r.op(.holdOrder)
                r.text(orderID)
                r.blob(payload)
                r.int(receivedAtUs)
                r.int(ingestedAtUs)
            }
        }

        /// Keeps a line's stock decision until its order can be decided (a repeat changes nothing).
        public func holdReservation(eventID: String, orderID: String, lineNo: UInt32, status: Int) throws {
            try insertPendingReservation.execute(arguments: [eventID, orderID, lineNo, status])
            if let r = recorder {
                r.op(.holdReservation)
                r.text(eventID)
                r.text(orderID)
                r.int(Int64(lineNo))
                r.int(Int64(status))
            }
        }

        /// Forgets what was held for a decided order.
        public func releasePending(_ orderID: String) throws {
            try deletePendingOrder.execute(arguments: [orderID])
            try deletePendingReservations.execute(arguments: [orderID])
            if let r = recorder {
                r.op(.releasePending)
                r.text(orderID)
            }
        }

        // MARK: Orders and shipments

        /// Whether a refund arrived for the order before it was decided.
        public func hasRefundWaiting(_ orderID: String) throws -> Bool { try Bool.fetchOne(refundWaiting, arguments: [orderID]) == true }

        /// Books the refunds that waited for the order as refunded (the order was cancelled).
        public func settleWaitingRefunds(_ orderID: String, atUs now: Int64) throws {
            try settleRefunds.execute(arguments: [now, orderID])
            if let r = recorder {
                r.op(.settleRefunds)
                r.text(orderID)
                r.int(now)
            }
        }

        /// Books a decided order (`status`: one of `ErpBook.Status`); a cancelled one is cancelled at its decision.
        public func bookOrder(_ order: Order, status: String, decidedAtUs now: Int64) throws {
            let platform = order.platform.slug
            let cancelledAtUs: Int64? = status == Status.cancelled ? now : nil
            try insertOrder.execute(arguments: [
                order.orderID, platform, order.shopID, order.platformOrderID, status, order.currency, order.totalFen,
                order.buyer.name, order.buyer.phone, order.buyer.address, order.buyerRemark, order.lines.count,
                order.paidAtUs, order.ingestedAtUs, now, cancelledAtUs,
            ])
            if let r = recorder {
                r.op(.bookOrder)
                r.text(order.orderID)
                r.text(platform)
                r.text(order.shopID)
                r.text(order.platformOrderID)
                r.text(status)
                r.text(order.currency)
                r.int(order.totalFen)
                r.text(order.buyer.name)
                r.text(order.buyer.phone)
                r.text(order.buyer.address)
                r.text(order.buyerRemark)
                r.int(Int64(order.lines.count))
                r.int(order.paidAtUs)
                r.int(order.ingestedAtUs)
                r.int(now)
                r.int(cancelledAtUs)
            }
        }

        /// Books one line of a decided order with its stock decision.
        public func bookLine(_ line: OrderLine, of orderID: String, reserved: Bool) throws {
            try insertLine.execute(arguments: [orderID, line.lineNo, line.eventID, line.sku, line.warehouse, line.quantity, line.unitPriceFen, reserved ? "reserved" : "rejected"])
            if let r = recorder {
                r.op(.bookLine)
                r.text(orderID)
                r.int(Int64(line.lineNo))
                r.text(line.eventID)
                r.text(line.sku)
                r.text(line.warehouse)
                r.int(line.quantity)
                r.int(line.unitPriceFen)
                r.flag(reserved)
            }
        }

        /// Books a pending shipment with its lines (units per SKU).
        public func bookShipment(_ shipment: Shipment) throws {
            try insertShipment.execute(arguments: [shipment.shipmentID, shipment.orderID, shipment.warehouse, shipment.createdAtUs])
            if let r = recorder {
                r.op(.bookShipment)
                r.text(shipment.shipmentID)
                r.text(shipment.orderID)
                r.text(shipment.warehouse)
                r.int(shipment.createdAtUs)
            }
            for line in shipment.lines {
                try insertShipmentLine.execute(arguments: [shipment.shipmentID, line.sku, line.quantity])
                if let r = recorder {
                    r.op(.bookShipmentLine)
                    r.text(shipment.shipmentID)
                    r.text(line.sku)
                    r.int(line.quantity)
                }
            }
        }

        /// Records a warehouse's "handed to the carrier" report (see `ErpBook.markShipped`).
        public func markShipped(_ shipped: ShipmentShipped, now: Int64) throws {
            try shipShipment.execute(arguments: [shipped.shipmentID])
            try insertTracking.execute(arguments: [shipped.shipmentID, shipped.carrier, shipped.trackingNo, shipped.shippedAtUs, now])
            if let r = recorder {
                r.op(.markShipped)
                r.text(shipped.shipmentID)
                r.text(shipped.carrier)
                r.text(shipped.trackingNo)
                r.int(shipped.shippedAtUs)
                r.int(now)
            }
        }

        /// Records the batch's changes to the running totals in the delta (the caller writes them
        /// to its own book when that keeps them).
        public func recordTotals(_ summary: Summary) {
            recorder?.summary(summary)
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
            let bookedAtUs: Int64? = status == "pending" ? nil : now
            try insertRefund(refund.refundID, refund.orderID, refund.amountFen, refund.reason, status, refund.requestedAtUs, bookedAtUs)
            if let r = recorder {
                r.op(.bookRefund)
                r.text(refund.refundID)
                r.text(refund.orderID)
                r.int(refund.amountFen)
                r.text(refund.reason)
                r.text(status)
                r.int(refund.requestedAtUs)
                r.int(bookedAtUs)
            }
        }

        private func insertRefund(_ refundID: String, _ orderID: String, _ amountFen: Int64, _ reason: String, _ status: String,
                                  _ requestedAtUs: Int64, _ bookedAtUs: Int64?) throws {
            try db.execute(sql: """
                INSERT INTO erp_refunds (refund_id, order_id, amount_fen, reason, status, requested_at_us, booked_at_us)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [refundID, orderID, amountFen, reason, status, requestedAtUs, bookedAtUs])
        }

        /// Cancels a synced order and its shipments; returns its reserved lines, whose stock goes back.
        public func cancelOrder(_ orderID: String, atUs now: Int64) throws -> [OrderLine] {
            try markCancelled(orderID, atUs: now)
            if let r = recorder {
                r.op(.cancelOrder)
                r.text(orderID)
                r.int(now)
            }
            return try Row.fetchAll(db, sql: "SELECT event_id, sku, warehouse, quantity FROM erp_order_lines WHERE order_id = ? AND reservation = 'reserved'", arguments: [orderID]).map { row in
                var line = OrderLine()
                line.eventID = row[0]
                line.sku = row[1]
                line.warehouse = row[2]
                line.quantity = row[3]
                return line
            }
        }

        private func markCancelled(_ orderID: String, atUs now: Int64) throws {
            try db.execute(sql: "UPDATE erp_orders SET status = ?, cancelled_at_us = ? WHERE order_id = ?", arguments: [Status.cancelled, now, orderID])
            try db.execute(sql: "UPDATE erp_shipments SET status = 'cancelled' WHERE order_id = ?", arguments: [orderID])
        }

        // MARK: Applying a recorded batch

        /// Applies the writes recorded in `delta` from byte `offset` on, in their order and with
        /// their recorded values: the rows the recording writer left, when this book held the
        /// same rows before (a changelog chain's guarantee). `totals`: also the running totals'
        /// changes (a book that keeps them). Nothing is decided, decoded or looked up. Records
        /// nothing. Throws `DeltaError` on bytes it cannot read.
        public func apply(_ delta: [UInt8], from offset: Int, totals: Bool) throws {
            var r = Reader(bytes: delta, at: offset)
            while !r.atEnd {
                let op = try r.op()
                switch op {
                case .holdOrder:
                    let orderID = try r.text(), payload = try r.data(), receivedAtUs = try r.int(), ingestedAtUs = try r.optionalInt()
                    try insertPendingOrder.execute(arguments: [orderID, payload, receivedAtUs, ingestedAtUs])
                case .holdReservation:
                    let eventID = try r.text(), orderID = try r.text(), lineNo = try r.int(), status = try r.int()
                    try insertPendingReservation.execute(arguments: [eventID, orderID, lineNo, status])
                case .releasePending:
                    let orderID = try r.text()
                    try deletePendingOrder.execute(arguments: [orderID])
                    try deletePendingReservations.execute(arguments: [orderID])
                case .settleRefunds:
                    let orderID = try r.text(), now = try r.int()
                    try settleRefunds.execute(arguments: [now, orderID])
                case .bookOrder:
                    let orderID = try r.text(), platform = try r.text(), shopID = try r.text(), platformOrderID = try r.text()
                    let status = try r.text(), currency = try r.text(), totalFen = try r.int()
                    let name = try r.text(), phone = try r.text(), address = try r.text(), remark = try r.text()
                    let lineCount = try r.int(), paidAtUs = try r.int(), ingestedAtUs = try r.int(), decidedAtUs = try r.int()
                    let cancelledAtUs = try r.optionalInt()
                    try insertOrder.execute(arguments: [
                        orderID, platform, shopID, platformOrderID, status, currency, totalFen,
                        name, phone, address, remark, lineCount, paidAtUs, ingestedAtUs, decidedAtUs, cancelledAtUs,
                    ])
                case .bookLine:
                    let orderID = try r.text(), lineNo = try r.int(), eventID = try r.text(), sku = try r.text(), warehouse = try r.text()
                    let quantity = try r.int(), unitPriceFen = try r.int(), reserved = try r.byte() != 0
                    try insertLine.execute(arguments: [orderID, lineNo, eventID, sku, warehouse, quantity, unitPriceFen, reserved ? "reserved" : "rejected"])
                case .bookShipment:
                    let shipmentID = try r.text(), orderID = try r.text(), warehouse = try r.text(), createdAtUs = try r.int()
                    try insertShipment.execute(arguments: [shipmentID, orderID, warehouse, createdAtUs])
                case .bookShipmentLine:
                    let shipmentID = try r.text(), sku = try r.text(), quantity = try r.int()
                    try insertShipmentLine.execute(arguments: [shipmentID, sku, quantity])
                case .bookRefund:
                    let refundID = try r.text(), orderID = try r.text(), amountFen = try r.int(), reason = try r.text()
                    let status = try r.text(), requestedAtUs = try r.int(), bookedAtUs = try r.optionalInt()
                    try insertRefund(refundID, orderID, amountFen, reason, status, requestedAtUs, bookedAtUs)
                case .cancelOrder:
                    let orderID = try r.text(), now = try r.int()
                    try markCancelled(orderID, atUs: now)
                case .markShipped:
                    let shipmentID = try r.text(), carrier = try r.text(), trackingNo = try r.text(), shippedAtUs = try r.int(), now = try r.int()
                    try shipShipment.execute(arguments: [shipmentID])
                    try insertTracking.execute(arguments: [shipmentID, carrier, trackingNo, shippedAtUs, now])
                case .summary:
                    let summary = try r.summary()
                    if totals { try summary.write(db) }
                case .published:
                    try r.skip(.published)
                }
            }
        }
    }
}
