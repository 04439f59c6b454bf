import ErpAdapters
import Foundation
import Kafka
import Logging
import Model
import Synchronization

/// Brings the ERP's stock into LiveSync: the ERP is the master of physical stock. Each level
/// becomes an `ERP_SNAPSHOT` adjustment on `stock.adjustments`, keyed by SKU, so it is applied
/// by the SKU's one stock writer between reservations, never racing them.
///
/// The rule that keeps a pull in the middle of a burst right: LiveSync's available stock becomes
/// `ERP available − (units reserved in LiveSync − units of LiveSync's orders the ERP recorded)`
/// (see `StockLevel.setFromErp`). The ERP's recorded units are read twice, before and after its
/// available quantity (each adapter call reads recorded units first), and the smaller is used: a sale the ERP records between the reads is then
/// subtracted twice at worst (stock hidden until the next pull), and a cancellation between them
/// is counted as not yet returned, so a pull never oversells.
public struct ErpStockPull: Sendable {
    public let target: String
    public let adapter: any ErpAdapter
    public let mapping: ErpFieldMapping
    public let producer: KafkaProducer

    public init(target: String, adapter: any ErpAdapter, mapping: ErpFieldMapping, producer: KafkaProducer) {
        self.target = target
        self.adapter = adapter
        self.mapping = mapping
        self.producer = producer
    }

    /// The adjustments a pull publishes, from two reads of the ERP around one read of its levels.
    public static func adjustments(first: [ErpStockLevel], second: [ErpStockLevel], mapping: ErpFieldMapping, target: String, at now: Int64) -> [StockAdjustment] {
        // Each call reads the recorded units before the available quantity (the adapter
        // contract), so the first call's available lies between the two recorded reads.
        var recordedSecond: [String: Int64?] = [:]
        for l in second { recordedSecond["\(l.material)\u{1F}\(l.warehouse)"] = l.recordedByLiveSync }
        return first.map { level in
            let key = "\(level.material)\u{1F}\(level.warehouse)"
            let sku = mapping.sku(material: level.material)
            let warehouse = mapping.liveSyncWarehouse(level.warehouse)
            var a = StockAdjustment()
            a.adjustmentID = "erp:\(target):\(now):\(sku):\(warehouse)"
            a.sku = sku
            a.warehouse = warehouse
            a.kind = .erpSnapshot
            a.quantity = max(0, level.available)
            // Unknown recorded units count as none: LiveSync's reservations are then all subtracted (never oversells).
            let r1 = level.recordedByLiveSync ?? 0
            let r2 = (recordedSecond[key] ?? nil) ?? 0
            a.erpRecorded = max(0, min(r1, r2))
            a.reason = "erp \(target) stock pull"
            a.createdAtUs = now
            return a
        }
    }

    /// Reads the ERP's stock (materials: the mapped SKUs' materials, or all it lists) and
    /// publishes it; returns how many SKU-warehouse levels were published.
    public func pull(skus: [String] = []) async throws -> Int {
        let materials = skus.map { mapping.material(sku: $0) }
        let first = try await adapter.stockLevels(materials: materials)
        let second = try await adapter.stockLevels(materials: materials)
        let adjustments = Self.adjustments(first: first, second: second, mapping: mapping, target: target, at: Clock.nowMicros())
        guard !adjustments.isEmpty else { return 0 }
        try await producer.send(adjustments.map { ProducerMessage(topic: Topics.stockAdjustments, key: $0.sku, value: $0.bytes) })
        return adjustments.count
    }
}
