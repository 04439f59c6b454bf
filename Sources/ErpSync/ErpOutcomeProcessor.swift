import GRDB
import Kafka
import Model
import Worker

/// Which order states reach the ERP (the merchant's choice, `erp.send`).
public enum ErpSendState: String, Sendable, CaseIterable {
    /// Paid orders whose stock LiveSync reserved: a sale order is created.
    case paid
    /// Orders refunded or cancelled before shipping: their sale order is cancelled.
    case refunded
    /// Shipments handed to the carrier: recorded against the sale order.
    case shipped
}

/// `livesync-erp`'s consumer logic: turns decided orders (`orders.outcomes`) and shipments
/// (`fulfillment.shipped`) into queued ERP work, in the batch's transaction with the offsets, so
/// nothing consumed is lost and a redelivery queues nothing twice. No ERP call happens here:
/// the consumer keeps Kafka's pace, `ErpWriter` keeps the ERP's.
public final class ErpOutcomeProcessor: BatchProcessor {
    let send: Set<ErpSendState>

    public init(send: Set<ErpSendState>) { self.send = send }

    public func prepare(_ db: Database) throws { try ErpSyncStore.createSchema(db) }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        let now = Clock.nowMicros()
        for message in messages {
            switch message.topic {
            case Topics.orderOutcomes:
                let outcome: OrderOutcome
                do { outcome = try OrderOutcome(serializedBytes: message.value) } catch {
                    output.deadLetter(message, error: "not an OrderOutcome: \(error)")
                    continue
                }
                guard !outcome.orderID.isEmpty else {
                    output.deadLetter(message, error: "the outcome has no order_id")
                    continue
                }
                switch outcome.kind {
                case .synced where send.contains(.paid):
                    guard outcome.hasOrder, !outcome.order.lines.isEmpty else {
                        output.deadLetter(message, error: "a synced outcome without its order (written by a dispatch older than livesync-erp?): the ERP cannot be given its lines")
                        continue
                    }
                    let payload: [UInt8] = try outcome.order.serializedBytes()
                    let warehouses = ErpFieldMapping.warehouses(of: outcome.order)
                    for w in warehouses {
                        try ErpSyncStore.enqueue(.init(reference: ErpFieldMapping.reference(orderID: outcome.orderID, warehouse: w, split: warehouses.count > 1),
                                                       orderID: outcome.orderID, work: .create, partition: message.partition, payload: payload, enqueuedAtUs: now), db)
                    }
                case .cancelled where send.contains(.refunded):
                    try ErpSyncStore.enqueue(.init(reference: outcome.orderID, orderID: outcome.orderID, work: .cancel, partition: message.partition, payload: [], enqueuedAtUs: now), db)
                default:
                    // Out of stock (never sold), refunds of shipped orders (a return, booked
                    // in the ERP by its own after-sales), states the merchant does not send.
                    continue
                }
            case Topics.shipmentsShipped:
                guard send.contains(.shipped) else { continue }
                let shipped: ShipmentShipped
                do { shipped = try ShipmentShipped(serializedBytes: message.value) } catch {
                    output.deadLetter(message, error: "not a ShipmentShipped: \(error)")
                    continue
                }
                guard !shipped.orderID.isEmpty, !shipped.shipmentID.isEmpty else {
                    output.deadLetter(message, error: "the shipment has no order_id or shipment_id")
                    continue
                }
                try ErpSyncStore.enqueue(.init(reference: shipped.shipmentID, orderID: shipped.orderID, work: .ship, partition: message.partition,
                                               payload: message.value, enqueuedAtUs: now), db)
            default:
                output.deadLetter(message, error: "livesync-erp does not consume topic \(message.topic)")
            }
        }
    }
}
