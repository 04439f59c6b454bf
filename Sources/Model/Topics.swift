import Kafka

/// LiveSync's topics. Topics that are joined or that share a key space have the same
/// partition count, so equal keys land in equal partition numbers (co-partitioning).
public enum Topics {
    /// Order lines, key = SKU. Producer: ingest. Consumer: stock.
    public static let orderLines = "orders.lines"
    /// Stock changes, key = SKU (co-partitioned with `orders.lines`). Producers: operators, dispatch, after-sales.
    public static let stockAdjustments = "stock.adjustments"
    /// Whole orders, key = order id. Producer: ingest. Consumer: dispatch (alerting reads, outside
    /// any group, the orders dispatch has not read yet).
    public static let ordersPlaced = "orders.placed"
    /// Per-line stock decisions, key = order id (co-partitioned with `orders.placed`). Producer: stock. Consumer: dispatch.
    public static let stockReservations = "stock.reservations"
    /// Shipments written to the ERP book, key = order id. Producer: dispatch.
    public static let shipments = "fulfillment.shipments"
    /// Shipments handed to the carrier (carrier, tracking number), key = order id. Producer: ingest
    /// (`POST /erp/shipments/{id}/shipped`). Consumers: channels (platform write-back), dispatch (ERP book).
    public static let shipmentsShipped = "fulfillment.shipped"
    /// Refund requests, key = order id (co-partitioned with `orders.placed`). Producer: ingest.
    /// Consumer: dispatch, which applies them to the order (`RefundRules`).
    public static let refundRequests = "aftersales.requests"
    /// Terminal order states, key = order id. Producer: dispatch. Consumers: none in
    /// LiveSync (the merchant's own tools; alerting counts decisions from the ERP book instead).
    public static let orderOutcomes = "orders.outcomes"
    /// Messages that could not be decoded or applied, key = the source key. Consumer: alerting.
    public static let deadLetter = "deadletter"
    /// The stock store's changelog: one entry per batch and source partition, written to the
    /// partition of the same number (co-partitioned with `orders.lines`), key = that number.
    /// Producer: stock. Consumer: a stock member restoring a partition it gains.
    public static let stockChangelog = "stock.changelog"
    /// Where each running process announces its telemetry URL (`InstanceAnnouncement`), key =
    /// process name (`dispatch-2`). Producer: every long-running executable, once listening, then
    /// periodically, and `stopping` on a clean stop. Readers: `livesync status`, the dashboard,
    /// alerting, chaos (outside any group: hosts share nothing but Kafka). One partition: a few
    /// messages per process and interval, read whole.
    public static let instances = "livesync.instances"

    /// The order book's changelog (dispatch's state): one entry per batch and source partition
    /// (co-partitioned with `orders.placed`), key = that number, payload = the batch's writes to
    /// the ERP book (`BookEntry`; its inputs in entries of earlier releases). Producer: dispatch. Consumers: a dispatch member restoring a partition it
    /// gains; the ERP book read model (`livesync-book`).
    public static let dispatchChangelog = "dispatch.changelog"

    /// A changelog holds batch deltas that are replayed in order, not latest-value-per-key
    /// records: compaction would drop deltas, so it keeps everything (no time or size limit).
    public static let changelogConfig = ["cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"]

    /// Only the latest announcement per process matters, so on real Kafka the topic is compacted
    /// (the embedded broker takes no topic configuration; readers ignore what is too old anyway).
    public static let instancesConfig = ["cleanup.policy": "compact"]

    /// Partitions of the SKU-keyed and order-keyed topics. More partitions spread the hot
    /// keys' neighbours and, on the embedded broker, multiply its 5 MiB-per-partition retention.
    public static let partitions: Int32 = 16

    /// Every topic with its partition count.
    public static func all(partitions: Int32 = Topics.partitions, replicationFactor: Int32 = 1) -> [TopicSpecification] {
        [orderLines, stockAdjustments, ordersPlaced, stockReservations, shipments, shipmentsShipped, refundRequests, orderOutcomes]
            .map { TopicSpecification(name: $0, partitions: partitions, replicationFactor: replicationFactor) }
            + [stockChangelog, dispatchChangelog].map { TopicSpecification(name: $0, partitions: partitions, replicationFactor: replicationFactor, config: changelogConfig) }
            + [TopicSpecification(name: deadLetter, partitions: 4, replicationFactor: replicationFactor),
               TopicSpecification(name: instances, partitions: 1, replicationFactor: replicationFactor, config: instancesConfig)]
    }
}
