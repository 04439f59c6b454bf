import Channels
import Worker
import Kafka
import Ingest
import Connectors
import Model

/// Turns stock levels into per-channel quantities (allocation and safety stock) and queues them.
public struct StockFanout: Sendable {
    /// Channels selling each SKU, with their allocation; `"*"` applies to every SKU.
    public var channels: [Channel: ChannelAllocation]
    /// The channel's id of each LiveSync SKU where it differs (Taobao: `num_iid:sku_id`); SKUs
    /// missing from a channel's map are pushed under their own code (the merchant code).
    public var skuMap: [Channel: [String: String]]
    public var queue: OutboundQueue

    public init(channels: [Channel: ChannelAllocation], skuMap: [Channel: [String: String]] = [:], queue: OutboundQueue) {
        self.channels = channels
        self.skuMap = skuMap
        self.queue = queue
    }

    /// Queues the channel quantities for a new available level of `sku`.
    public func levelChanged(sku: String, available: Int64) throws {
        for (channel, allocation) in channels {
            try queue.enqueueStock(channel, sku: skuMap[channel]?[sku] ?? sku, quantity: allocation.quantity(available: available))
        }
    }

    /// Feeds the levels carried by stock reservations (`available_after`), latest per SKU.
    public func apply(_ reservations: [Reservation]) throws {
        var latest: [String: Int64] = [:]
        for r in reservations { latest[r.sku] = r.availableAfter }
        for (sku, level) in latest { try levelChanged(sku: sku, available: level) }
    }
}
