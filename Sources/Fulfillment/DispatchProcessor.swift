import Foundation
import GRDB
import Kafka
import Model
import Worker
import AfterSales
import ErpBookStore

/// The order book of the partitions a dispatch member holds: joins `orders.placed` with
/// `stock.reservations` (co-partitioned by order id), decides each order once every line has its
/// stock decision, and applies the order's refund requests and shipment reports.
///
/// All lines reserved: the order and one shipment per warehouse go into the ERP book and
/// `fulfillment.shipments`. Any line rejected: the reserved lines are released through
/// `stock.adjustments` and the order is booked out of stock. A refund that arrived first
/// cancels it instead (`RefundRules`). Duplicates (by order id, line event id, refund id)
/// change nothing. `fulfillment.shipped` (the warehouse's reports) marks the booked shipments
/// `shipped`. Every input of an order lands in the order's partition, so its one owner
/// serialises them; the partition's state follows it through `dispatch.changelog`, whose
/// entries are the batch's writes to the book (`BookEntry` version 2, an `ErpBook.Delta`),
/// applied as they are on restore; entries of recorded inputs (version 1, earlier releases)
/// are replayed by deciding them again.
public final class DispatchProcessor: ChangelogProcessor {
    /// What a changelog entry records (`BookEntry`).
    public enum ChangelogFormat: String, Sendable, CaseIterable {
        /// The batch's writes (version 2): readers apply rows, decide nothing.
        case deltas
        /// The batch's inputs (version 1): what releases before deltas read; for the first step
        /// of a rolling upgrade from one, until every dispatch and read-model instance reads deltas.
        case inputs
    }

    /// Whether the book keeps its running totals (`ErpBook.Summary`): the read model does, for
    /// the views; a dispatch member does not need them to decide.
    public let keepsTotals: Bool
    /// Partitions of `orders.placed` (to find a partition's rows by order id).
    public let partitionCount: Int32
    /// What this processor's entries record (it reads both).
    public let changelogFormat: ChangelogFormat

    public init(keepsTotals: Bool = false, partitionCount: Int32 = Topics.partitions, changelogFormat: ChangelogFormat = .deltas) {
        self.keepsTotals = keepsTotals
        self.partitionCount = partitionCount
        self.changelogFormat = changelogFormat
    }

    public var changelogTopic: String { Topics.dispatchChangelog }
    public var derivedOutputTopic: String? { nil }

    public func prepare(_ db: Database) throws { try ErpBook.createSchema(db, totals: keepsTotals) }

    public func dropPartition(_ partition: Int32, db: Database) throws {
        try ErpBook.dropPartition(partition, of: partitionCount, db: db)
    }

    /// Applies an entry of writes as recorded (its outputs come from `outputs(ofRestored:)`), or
    /// replays an entry of inputs (recreating the outputs they produced into `output`).
    public func restore(_ payload: [UInt8], partition: Int32, db: Database, output: inout BatchOutput) throws {
        guard let version = payload.first else { return }
        switch version {
        case BookEntry.deltaVersion:
            guard payload.count >= BookEntry.deltaOffset else { throw BookEntryError.truncated(at: payload.count) }
            try ErpBook.Writer(db).apply(payload, from: BookEntry.deltaOffset, totals: keepsTotals)
        default:
            try replay(try BookEntry.decode(payload), db: db, output: &output)
        }
    }

    /// Applies a recorded entry's inputs at its batch time.
    public func replay(_ entry: BookEntry, db: Database, output: inout BatchOutput) throws {
        var inputs: [Input] = []
        inputs.reserveCapacity(entry.inputs.count)
        for (kind, value) in entry.inputs {
            // Only valid inputs are recorded, so they decode as they did when applied.
            switch kind {
            case .order: inputs.append(.order(try Order(serializedBytes: value), value))
            case .reservation: inputs.append(.reservation(try Reservation(serializedBytes: value)))
            case .shipped: inputs.append(.shipped(try ShipmentShipped(serializedBytes: value)))
            case .refund: inputs.append(.refund(try RefundRequest(serializedBytes: value)))
            }
        }
        try apply(inputs, now: entry.decidedAtUs, db: db, output: &output)
    }

    /// The messages an entry of writes recorded as published (an entry of inputs recreates them
    /// in `restore`).
    public func outputs(ofRestored payload: [UInt8], partition: Int32, output: inout BatchOutput) throws {
        guard payload.first == BookEntry.deltaVersion else { return }
        for m in try ErpBook.Delta.published(in: payload, from: BookEntry.deltaOffset) {
            output.emit(topic: m.topic, key: String(decoding: m.key, as: UTF8.self), value: m.value)
        }
    }

    /// One valid input of a batch.
    enum Input {
        case order(Order, [UInt8])
        case reservation(Reservation)
        case shipped(ShipmentShipped)
        case refund(RefundRequest)
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
        let now = Clock.nowMicros()
        // Each partition's valid inputs in arrival order (partitions in order of first input):
        // every input of an order is in the order's partition, so partitions are decided apart.
        var inputs: [Int32: [Input]] = [:]
        var partitions: [Int32] = []
        // Format `inputs`: each partition's valid inputs, recorded as its changelog entry.
        var entries: [Int32: BookEntry.Encoder] = [:]
        let recordsInputs = changelogFormat == .inputs
        func record(_ message: KafkaMessage, _ kind: BookEntry.Kind, _ input: Input) {
            if inputs[message.partition] == nil { partitions.append(message.partition) }
            inputs[message.partition, default: []].append(input)
            if recordsInputs { entries[message.partition, default: BookEntry.Encoder(decidedAtUs: now)].append(kind, message.value) }
        }
        for message in messages {
            switch message.topic {
            case Topics.ordersPlaced:
                guard let order = try? Order(serializedBytes: message.value), !order.orderID.isEmpty, !order.lines.isEmpty else {
                    output.deadLetter(message, error: "not a valid Order (needs order_id and lines)")
                    continue
                }
                record(message, .order, .order(order, message.value))
            case Topics.stockReservations:
                guard let r = try? Reservation(serializedBytes: message.value), !r.orderID.isEmpty, !r.eventID.isEmpty else {
                    output.deadLetter(message, error: "not a valid Reservation (needs order_id and event_id)")
                    continue
                }
                record(message, .reservation, .reservation(r))
            case Topics.shipmentsShipped:
                guard let shipped = try? ShipmentShipped(serializedBytes: message.value), !shipped.shipmentID.isEmpty else {
                    output.deadLetter(message, error: "not a valid ShipmentShipped (needs shipment_id)")
                    continue
                }
                record(message, .shipped, .shipped(shipped))
            case Topics.refundRequests:
                guard let refund = try? RefundRequest(serializedBytes: message.value), RefundRules.isValid(refund) else {
                    output.deadLetter(message, error: "not a valid RefundRequest (needs refund_id, order_id, amount_fen >= 0)")
                    continue
                }
                record(message, .refund, .refund(refund))
            default:
                output.deadLetter(message, error: "dispatch does not consume topic \(message.topic)")
            }
        }
        guard !partitions.isEmpty else { return }
        let book = try ErpBook.Writer(db)
        for p in partitions {
            if recordsInputs {
                try apply(inputs[p]!, now: now, db: db, output: &output, book: book)
                output.changelog(partition: p, payload: entries[p]!.bytes)
            } else {
                // The partition's writes, then the messages they published, as its entry.
                let delta = ErpBook.Delta(prefix: BookEntry.deltaHeader(decidedAtUs: now))
                let first = output.messages.count
                try apply(inputs[p]!, now: now, db: db, output: &output, book: book.recording(delta))
                for m in output.messages[first...] { delta.published(topic: m.topic, key: m.key, value: m.value) }
                output.changelog(partition: p, payload: delta.bytes)
            }
        }
    }

    /// Applies valid inputs at batch time `now`: shipment reports and refunds in arrival order,
    /// then a decision for every order whose lines all have their stock decision. The same
    /// inputs on the same rows give the same rows and outputs (a changelog of inputs relies on
    /// it). `book`: the batch's writer (when it records, every write and the totals' changes
    /// are appended to its delta).
    func apply(_ inputs: [Input], now: Int64, db: Database, output: inout BatchOutput, book: ErpBook.Writer? = nil) throws {
        guard !inputs.isEmpty else { return }
        let s = try book ?? ErpBook.Writer(db)
        var summary = ErpBook.Summary()
        var pending: [String: Pending] = [:]
        var touched: [String] = []
        for input in inputs {
            switch input {
            case .order(let order, let payload):
                if pending[order.orderID] == nil { touched.append(order.orderID) }
                if pending[order.orderID, default: Pending()].order == nil {
                    pending[order.orderID, default: Pending()].order = order
                    pending[order.orderID, default: Pending()].payload = payload
                }
            case .reservation(let r):
                if pending[r.orderID] == nil { touched.append(r.orderID) }
                if pending[r.orderID, default: Pending()].statusByLine[r.lineNo] == nil {
                    pending[r.orderID, default: Pending()].statusByLine[r.lineNo] = r.status.rawValue
                    pending[r.orderID, default: Pending()].newReservations.append((r.eventID, r.lineNo, r.status.rawValue))
                }
            case .shipped(let shipped):
                try s.markShipped(shipped, now: now)
            case .refund(let refund):
                // Before this batch's decisions: an order decided below sees its refund waiting.
                try RefundRules.apply(refund, book: s, summary: &summary, output: &output, now: now)
            }
        }
        for orderID in touched {
            guard var p = pending[orderID] else { continue }
            if try s.isDecided(orderID) { continue }  // duplicate of a decided order
            // Merge what earlier batches left pending.
            if let stored = try s.pendingOrder(orderID) {
                p.orderIsStored = true
                if p.order == nil {
                    p.order = try? Order(serializedBytes: stored)
                    p.payload = [UInt8](stored)
                }
            }
            try s.pendingReservations(orderID) { lineNo, status in
                if p.statusByLine[lineNo] == nil { p.statusByLine[lineNo] = status }
            }
            if let order = p.order, order.lines.allSatisfy({ p.statusByLine[$0.lineNo] != nil }) {
                try decide(order, payload: p.payload ?? order.bytes, statusByLine: p.statusByLine, s: s, summary: &summary, output: &output, now: now)
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
        s.recordTotals(summary)
        if keepsTotals { try summary.write(db) }
    }

    /// `payload`: the order as received (what a synced outcome carries, without encoding it again).
    private func decide(_ order: Order, payload: [UInt8], statusByLine: [UInt32: Int], s: ErpBook.Writer, summary: inout ErpBook.Summary, output: inout BatchOutput, now: Int64) throws {
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
                output.emit(topic: Topics.stockAdjustments, key: line.sku, value: StockAdjustment.release(line, reason: status, now: now).bytes)
            }
        }
        var outcome = OrderOutcome()
        outcome.orderID = orderID
        outcome.ingestedAtUs = order.ingestedAtUs
        outcome.decidedAtUs = now
        switch status {
        case ErpBook.Status.synced:
            outcome.kind = .synced
            // Carries the order (below): what the merchant's ERP sale order is made of (livesync-erp).
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
        output.emit(topic: Topics.orderOutcomes, key: orderID, value: status == ErpBook.Status.synced ? Self.bytes(of: outcome, order: payload) : outcome.bytes)
        output.recordDuration(Self.latencyKeys[status] ?? .syncLatency(status: status), nanoseconds: max(0, now - order.ingestedAtUs) * 1_000)
    }

    /// `outcome`'s encoding with `order` (an `Order`'s encoding) as its field 6, appended as
    /// bytes rather than encoded again. Fields 7 and 8 (a refund's) are never set on a synced
    /// outcome, so this is the field order Protobuf writes.
    static func bytes(of outcome: OrderOutcome, order: [UInt8]) -> [UInt8] {
        var bytes = outcome.bytes
        bytes.reserveCapacity(bytes.count + order.count + 11)
        bytes.append(6 << 3 | 2)  // field 6, length-delimited
        var n = UInt64(order.count)
        while n >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: n) | 0x80)
            n >>= 7
        }
        bytes.append(UInt8(n))
        bytes += order
        return bytes
    }

    static let latencyKeys: [String: MetricKey] = Dictionary(uniqueKeysWithValues:
        [ErpBook.Status.synced, ErpBook.Status.outOfStock, ErpBook.Status.cancelled].map { ($0, MetricKey.syncLatency(status: $0)) })

}
