import Foundation
import Metrics
import Prometheus

/// The process-wide metrics backend: swift-metrics bootstrapped with a Prometheus registry.
///
/// Libraries record through the swift-metrics API (`Counter`, `Timer`, `Gauge`, `Recorder`);
/// only executables bootstrap, so tests and tools that do not bootstrap pay nothing (no-op
/// handlers). Bootstrapping is idempotent: the first call wins.
public enum Telemetry {
    /// The registry `/metrics` renders. Bootstraps `MetricsSystem` on first use.
    public static var registry: PrometheusCollectorRegistry { bootstrapped }

    /// Bootstraps the metrics system (once per process). Call before creating any metric.
    @discardableResult
    public static func bootstrap() -> PrometheusCollectorRegistry { bootstrapped }

    private static let bootstrapped: PrometheusCollectorRegistry = {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets = MetricNames.valueBuckets
        factory.durationHistogramBuckets = MetricNames.durationBuckets
        MetricsSystem.bootstrap(factory)
        return registry
    }()

    /// The Prometheus text exposition of every metric recorded in this process.
    public static func exposition() -> [UInt8] { registry.emitToBuffer() }
}

/// Every metric LiveSync records, by name (Prometheus conventions: `livesync_` prefix, base
/// units, `_total` on counters). Listed with their labels in docs/operations.md.
public enum MetricNames {
    // Consumers (label `group`)
    public static let consumerBatches = "livesync_consumer_batches_total"
    public static let consumerMessages = "livesync_consumer_messages_total"
    public static let consumerBatchSize = "livesync_consumer_batch_size_messages"
    public static let consumerBatchCommit = "livesync_consumer_batch_commit_seconds"
    public static let consumerDeadLetters = "livesync_consumer_dead_letters_total"
    public static let consumerLastBatch = "livesync_consumer_last_batch_timestamp_seconds"
    /// Labels `group`, `topic`, `partition`.
    public static let consumerLag = "livesync_consumer_lag_messages"
    public static let consumerAssigned = "livesync_consumer_assigned_partitions"
    // Ingest (labels `platform`, and `reason` on refusals)
    public static let ordersReceived = "livesync_ingest_orders_received_total"
    public static let ordersPublished = "livesync_ingest_orders_published_total"
    public static let ordersRefused = "livesync_ingest_orders_refused_total"
    // Stock (label `decision`: reserved, rejected)
    public static let stockLines = "livesync_stock_lines_total"
    /// Units an ERP stock snapshot was short of LiveSync's reservations (oversold in the ERP).
    public static let stockErpShort = "livesync_stock_erp_short_units_total"
    /// Labels `sku`, `warehouse`: the hottest SKUs only.
    public static let stockAvailable = "livesync_stock_available_units"
    // Dispatch (label `status`: synced, out_of_stock, cancelled)
    public static let syncLatency = "livesync_sync_latency_seconds"
    // Alerting (labels `channel`, `result`: delivered, failed)
    public static let notifications = "livesync_alert_notifications_total"
    /// Label `result`: ok, failed. Rule evaluations; alerting consumes almost nothing, so this
    /// is the counter that shows it working.
    public static let alertSweeps = "livesync_alerting_sweeps_total"
    /// Label `kind`: alerts open after the last sweep.
    public static let alertsOpen = "livesync_alerts_open"
    // Channels (labels `platform`, `kind`: stock, shipment; `outcome`: ok, retry, dead)
    public static let outboundCalls = "livesync_outbound_calls_total"
    // ERP sync (label `target`; `result` on calls: ok, retryable, permanent)
    public static let erpQueued = "livesync_erp_queued_orders"
    public static let erpPending = "livesync_erp_pending_orders"
    public static let erpWritten = "livesync_erp_written_orders_total"
    public static let erpCalls = "livesync_erp_calls_total"
    /// Seconds to drain the queue at the recent write rate (absent rate: +Inf when queued).
    public static let erpDrainEta = "livesync_erp_drain_eta_seconds"

    static let valueBuckets: [String: [Double]] = [
        consumerBatchSize: [1, 10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000],
    ]
    static let durationBuckets: [String: [Duration]] = [
        consumerBatchCommit: [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                              .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5)],
        syncLatency: [.milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
                      .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60)],
    ]
}
