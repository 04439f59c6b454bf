import Dispatch
import Kafka
import Metrics
import Synchronization
import Telemetry

/// A counter or histogram sample a processor reports with its batch; recorded only once the
/// batch has committed (a rolled-back batch reports nothing).
public struct MetricKey: Hashable, Sendable {
    public var name: String
    /// Label names and values, alternating: `["decision", "reserved"]`.
    public var labels: [String]
    public init(_ name: String, _ labels: [String] = []) {
        self.name = name
        self.labels = labels
    }
    var dimensions: [(String, String)] {
        stride(from: 0, to: labels.count - 1, by: 2).map { (labels[$0], labels[$0 + 1]) }
    }
}

/// Where a partition is: the next offset this member applies and the broker's high watermark.
public struct PartitionPosition: Sendable, Equatable {
    public var next: Int64
    public var highWatermark: Int64?
    public var lag: Int64 { max(0, (highWatermark ?? next) - next) }
}

/// A consumer's metrics, recorded once per batch (never per message) so the hot path pays
/// a few atomic increments per tens of thousands of messages. No-ops unless the process
/// bootstrapped `Telemetry`.
final class ConsumerMetrics: Sendable {
    let group: String
    let batches: Counter
    let messages: Counter
    let deadLetters: Counter
    let batchSize: Recorder
    let commit: Metrics.Timer
    let lastBatch: Gauge
    let assigned: Gauge
    private let lagGauges = Mutex<[TopicPartition: Gauge]>([:])

    init(group: String) {
        self.group = group
        let d = [("group", group)]
        batches = Counter(label: MetricNames.consumerBatches, dimensions: d)
        messages = Counter(label: MetricNames.consumerMessages, dimensions: d)
        deadLetters = Counter(label: MetricNames.consumerDeadLetters, dimensions: d)
        batchSize = Recorder(label: MetricNames.consumerBatchSize, dimensions: d, aggregate: true)
        commit = Metrics.Timer(label: MetricNames.consumerBatchCommit, dimensions: d)
        lastBatch = Gauge(label: MetricNames.consumerLastBatch, dimensions: d)
        assigned = Gauge(label: MetricNames.consumerAssigned, dimensions: d)
    }

    func batchCommitted(messages count: Int, output: BatchOutput, commitNanoseconds: UInt64, at nowUs: Int64) {
        batches.increment()
        messages.increment(by: count)
        if output.deadLetters > 0 { deadLetters.increment(by: output.deadLetters) }
        batchSize.record(count)
        commit.recordNanoseconds(Int64(commitNanoseconds))
        lastBatch.record(Double(nowUs) / 1e6)
        for (key, n) in output.counts where n > 0 {
            Counter(label: key.name, dimensions: key.dimensions).increment(by: n)
        }
        if !output.durations.isEmpty {
            let durations = output.durations
            // Tens of thousands of samples per batch: off the consumer thread.
            DispatchQueue.global(qos: .utility).async {
                for (key, values) in durations {
                    let timer = Metrics.Timer(label: key.name, dimensions: key.dimensions)
                    for v in values { timer.recordNanoseconds(v) }
                }
            }
        }
    }

    func positions(_ positions: [TopicPartition: PartitionPosition]) {
        assigned.record(positions.count)
        lagGauges.withLock { gauges in
            for (tp, gauge) in gauges where positions[tp] == nil {
                gauge.destroy()
                gauges[tp] = nil
            }
            for (tp, p) in positions {
                let gauge = gauges[tp] ?? {
                    let g = Gauge(label: MetricNames.consumerLag, dimensions: [("group", group), ("topic", tp.topic), ("partition", String(tp.partition))])
                    gauges[tp] = g
                    return g
                }()
                gauge.record(p.lag)
            }
        }
    }
}

extension MetricKey {
    /// Stock decisions on order lines (`livesync_stock_lines_total{decision}`).
    public static let linesReserved = MetricKey(MetricNames.stockLines, ["decision", "reserved"])
    public static let linesRejected = MetricKey(MetricNames.stockLines, ["decision", "rejected"])
    public static let erpStockShort = MetricKey(MetricNames.stockErpShort)
    /// Ingest → ERP book latency per order, by the status it was booked with.
    public static func syncLatency(status: String) -> MetricKey { MetricKey(MetricNames.syncLatency, ["status", status]) }
}
