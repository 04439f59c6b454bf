import Foundation
import GRDB
import Kafka
import Model
import Worker
import ErpBookStore

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

    public func prepare(_ db: Database) throws { try ErpBook.createSchema(db) }

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
        let s = try ErpBook.Writer(db)
        let now = Clock.nowMicros()
        var summary = ErpBook.Summary()
        for orderID in touched {
            guard var p = pending[orderID] else { continue }
            if try s.isDecided(orderID) { continue }  // duplicate of a decided order
            // Merge what earlier batches left pending.
            if let payload = try s.pendingOrder(orderID) {
                p.orderIsStored = true
                if p.order == nil { p.order = try? Order(serializedBytes: payload) }
            }
            try s.pendingReservations(orderID) { lineNo, status in
                if p.statusByLine[lineNo] == nil { p.statusByLine[lineNo] = status }
            }
            if let order = p.order, order.lines.allSatisfy({ p.statusByLine[$0.lineNo] != nil }) {
                try decide(order, statusByLine: p.statusByLine, s: s, summary: &summary, output: &output, now: now)
                try s.releasePending(orderID)
            } else {
                if let payload = p.payload, !p.orderIsStored {
                    try s.holdOrder(orderID, payload: payload, receivedAtUs: now, ingestedAtUs: p.order?.ingestedAtUs)
                }
                for r in p.newReservations {
                    try s.holdReservation(eventID: r.eventID, orderID: orderID, lineNo: r.lineNo, status: r.status)
                }
            }
        }
        try summary.write(db)
    }

    private func decide(_ order: Order, statusByLine: [UInt32: Int], s: ErpBook.Writer, summary: inout ErpBook.Summary, output: inout BatchOutput, now: Int64) throws {
        let orderID = order.orderID
        let reservedRaw = ReservationStatus.reserved.rawValue
        let allReserved = order.lines.allSatisfy { statusByLine[$0.lineNo] == reservedRaw }
        let refundWaiting = try s.hasRefundWaiting(orderID)
        let status = refundWaiting ? ErpBook.Status.cancelled : (allReserved ? ErpBook.Status.synced : ErpBook.Status.outOfStock)

        try s.bookOrder(order, status: status, decidedAtUs: now)
        summary.order(platform: order.platform.slug, status: status, ingestedAtUs: order.ingestedAtUs, decidedAtUs: now)
        summary.decided(status, atUs: now)
        for line in order.lines {
            let reserved = statusByLine[line.lineNo] == reservedRaw
            try s.bookLine(line, of: orderID, reserved: reserved)
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
                var totals: [String: Int64] = [:]
                for line in lines { totals[line.sku, default: 0] += line.quantity }
                for (sku, qty) in totals.sorted(by: { $0.key < $1.key }) {
                    var sl = ShipmentLine()
                    sl.sku = sku
                    sl.quantity = qty
                    shipment.lines.append(sl)
                }
                try s.bookShipment(shipment)
                output.emit(topic: Topics.shipments, key: orderID, value: shipment.bytes)
            }
        case ErpBook.Status.outOfStock:
            outcome.kind = .rejectedOutOfStock
            outcome.detail = order.lines.filter { statusByLine[$0.lineNo] != reservedRaw }.map(\.sku).joined(separator: ",")
        default:
            outcome.kind = .cancelled
            outcome.detail = "refund requested before the order was synced"
            try s.settleWaitingRefunds(orderID, atUs: now)
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
