import Foundation
import GRDB
import Kafka
import Model
import Worker

/// Joins `orders.placed` with `stock.reservations` (co-partitioned by order id) and decides
/// each order once every line has its stock decision.
///
/// All lines reserved: the order and one shipment per warehouse go into the ERP book and
/// `fulfillment.shipments`. Any line rejected: the reserved lines are released through
/// `stock.adjustments` and the order is booked out of stock. A refund that arrived first
/// cancels it instead. Duplicates (by order id, by line event id) change nothing.
/// `fulfillment.shipped` (the warehouse's reports) marks the booked shipments `shipped`.
public final class DispatchProcessor: BatchProcessor {
    public init() {}

    public func prepare(_ db: Database) throws {
        try ErpBook.createSchema(db)
        try db.execute(sql: """
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
    }

    /// An order's pieces gathered in one batch: what arrived now, merged with what was pending.
    struct Pending {
        var order: Order?
        /// The order exactly as received, kept pending until its reservations are in.
        var payload: [UInt8]?
        var orderIsStored = false
        var statusByLine: [UInt32: Int] = [:]
        var newReservations: [(eventID: String, lineNo: UInt32, status: Int)] = []
    }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        var pending: [String: Pending] = [:]
        var touched: [String] = []
        for message in messages {
            switch message.topic {
            case Topics.ordersPlaced:
                guard let order = try? Order(serializedBytes: message.value), !order.orderID.isEmpty, !order.lines.isEmpty else {
                    output.deadLetter(message, error: "not a valid Order (needs order_id and lines)")
                    continue
                }
                if pending[order.orderID] == nil { touched.append(order.orderID) }
                if pending[order.orderID, default: Pending()].order == nil {
                    pending[order.orderID, default: Pending()].order = order
                    pending[order.orderID, default: Pending()].payload = message.value
                }
            case Topics.stockReservations:
                guard let r = try? Reservation(serializedBytes: message.value), !r.orderID.isEmpty, !r.eventID.isEmpty else {
                    output.deadLetter(message, error: "not a valid Reservation (needs order_id and event_id)")
                    continue
                }
                if pending[r.orderID] == nil { touched.append(r.orderID) }
                if pending[r.orderID, default: Pending()].statusByLine[r.lineNo] == nil {
                    pending[r.orderID, default: Pending()].statusByLine[r.lineNo] = r.status.rawValue
                    pending[r.orderID, default: Pending()].newReservations.append((r.eventID, r.lineNo, r.status.rawValue))
                }
            case Topics.shipmentsShipped:
                guard let shipped = try? ShipmentShipped(serializedBytes: message.value), !shipped.shipmentID.isEmpty else {
                    output.deadLetter(message, error: "not a valid ShipmentShipped (needs shipment_id)")
                    continue
                }
                try ErpBook.markShipped(db, shipped)
            default:
                output.deadLetter(message, error: "dispatch does not consume topic \(message.topic)")
            }
        }
        guard !touched.isEmpty else { return }
        let s = try Statements(db)
        let now = Clock.nowMicros()
        var summary = ErpBook.Summary()
        for orderID in touched {
            guard var p = pending[orderID] else { continue }
            if try Bool.fetchOne(s.decided, arguments: [orderID]) == true { continue }  // duplicate of a decided order
            // Merge what earlier batches left pending.
            if let payload = try Data.fetchOne(s.pendingOrder, arguments: [orderID]) {
                p.orderIsStored = true
                if p.order == nil { p.order = try? Order(serializedBytes: payload) }
            }
            for row in try Row.fetchAll(s.pendingReservations, arguments: [orderID]) {
                let lineNo: UInt32 = row[0]
                if p.statusByLine[lineNo] == nil { p.statusByLine[lineNo] = row[1] }
            }
            if let order = p.order, order.lines.allSatisfy({ p.statusByLine[$0.lineNo] != nil }) {
                try decide(order, statusByLine: p.statusByLine, s: s, summary: &summary, output: &output, now: now)
                try s.deletePendingOrder.execute(arguments: [orderID])
                try s.deletePendingReservations.execute(arguments: [orderID])
            } else {
                if let payload = p.payload, !p.orderIsStored {
                    try s.insertPendingOrder.execute(arguments: [orderID, Data(payload), now, p.order?.ingestedAtUs])
                }
                for r in p.newReservations {
                    try s.insertPendingReservation.execute(arguments: [r.eventID, orderID, r.lineNo, r.status])
                }
            }
        }
        try summary.write(db)
    }

    /// The statements of the join, prepared once per connection (SQLite caches them).
    struct Statements {
        let decided, pendingOrder, pendingReservations, insertPendingOrder, insertPendingReservation: Statement
        let deletePendingOrder, deletePendingReservations, refundWaiting, settleRefunds: Statement
        let insertOrder, insertLine, insertShipment, insertShipmentLine: Statement

        init(_ db: Database) throws {
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
    }

    private func decide(_ order: Order, statusByLine: [UInt32: Int], s: Statements, summary: inout ErpBook.Summary, output: inout BatchOutput, now: Int64) throws {
        let orderID = order.orderID
        let reservedRaw = ReservationStatus.reserved.rawValue
        let allReserved = order.lines.allSatisfy { statusByLine[$0.lineNo] == reservedRaw }
        let refundWaiting = try Bool.fetchOne(s.refundWaiting, arguments: [orderID]) == true
        let status = refundWaiting ? ErpBook.Status.cancelled : (allReserved ? ErpBook.Status.synced : ErpBook.Status.outOfStock)

        try s.insertOrder.execute(arguments: [
            orderID, order.platform.slug, order.shopID, order.platformOrderID, status, order.currency, order.totalFen,
            order.buyer.name, order.buyer.phone, order.buyer.address, order.buyerRemark, order.lines.count,
            order.paidAtUs, order.ingestedAtUs, now, status == ErpBook.Status.cancelled ? now : nil,
        ])
        summary.order(platform: order.platform.slug, status: status, ingestedAtUs: order.ingestedAtUs, decidedAtUs: now)
        summary.decided(status, atUs: now)
        for line in order.lines {
            let reserved = statusByLine[line.lineNo] == reservedRaw
            try s.insertLine.execute(arguments: [orderID, line.lineNo, line.eventID, line.sku, line.warehouse, line.quantity, line.unitPriceFen, reserved ? "reserved" : "rejected"])
            if !reserved { summary.rejectedLine(sku: line.sku) }
            if reserved && status != ErpBook.Status.synced {
                output.emit(topic: Topics.stockAdjustments, key: line.sku, value: Self.release(line, reason: status, now: now).bytes)
            }
        }
        var outcome = OrderOutcome()
        outcome.orderID = orderID
        outcome.ingestedAtUs = order.ingestedAtUs
        outcome.decidedAtUs = now
        switch status {
        case ErpBook.Status.synced:
            outcome.kind = .synced
            var byWarehouse: [String: [OrderLine]] = [:]
            for line in order.lines { byWarehouse[line.warehouse, default: []].append(line) }
            for (warehouse, lines) in byWarehouse.sorted(by: { $0.key < $1.key }) {
                var shipment = Shipment()
                shipment.shipmentID = "\(orderID)/\(warehouse)"
                shipment.orderID = orderID
                shipment.warehouse = warehouse
                shipment.createdAtUs = now
                try s.insertShipment.execute(arguments: [shipment.shipmentID, orderID, warehouse, now])
                var totals: [String: Int64] = [:]
                for line in lines { totals[line.sku, default: 0] += line.quantity }
                for (sku, qty) in totals.sorted(by: { $0.key < $1.key }) {
                    try s.insertShipmentLine.execute(arguments: [shipment.shipmentID, sku, qty])
                    var sl = ShipmentLine()
                    sl.sku = sku
                    sl.quantity = qty
                    shipment.lines.append(sl)
                }
                output.emit(topic: Topics.shipments, key: orderID, value: shipment.bytes)
            }
        case ErpBook.Status.outOfStock:
            outcome.kind = .rejectedOutOfStock
            outcome.detail = order.lines.filter { statusByLine[$0.lineNo] != reservedRaw }.map(\.sku).joined(separator: ",")
        default:
            outcome.kind = .cancelled
            outcome.detail = "refund requested before the order was synced"
            try s.settleRefunds.execute(arguments: [now, orderID])
        }
        output.emit(topic: Topics.orderOutcomes, key: orderID, value: outcome.bytes)
        output.recordDuration(Self.latencyKeys[status] ?? .syncLatency(status: status), nanoseconds: max(0, now - order.ingestedAtUs) * 1_000)
    }

    static let latencyKeys: [String: MetricKey] = Dictionary(uniqueKeysWithValues:
        [ErpBook.Status.synced, ErpBook.Status.outOfStock, ErpBook.Status.cancelled].map { ($0, MetricKey.syncLatency(status: $0)) })

    /// A release of a line's reservation; its id is derived from the line so stock applies it once.
    public static func release(_ line: OrderLine, reason: String, now: Int64) -> StockAdjustment {
        var adj = StockAdjustment()
        adj.adjustmentID = "release:\(line.eventID)"
        adj.sku = line.sku
        adj.warehouse = line.warehouse
        adj.kind = .release
        adj.quantity = line.quantity
        adj.releaseEventID = line.eventID
        adj.reason = reason
        adj.createdAtUs = now
        return adj
    }
}
