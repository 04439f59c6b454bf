import Bootstrap
import ErpAdapters
import Foundation
import GRDB
import Hummingbird
import Kafka
import Logging
import Metrics
import Model
import ServiceLifecycle
import Telemetry
import Worker

/// What `GET /erp/status` answers: one instance's view of its ERP target.
public struct ErpStatus: Sendable, Codable, Equatable {
    public var target: String
    public var kind: String
    /// `orders.outcomes` partitions this instance writes.
    public var partitions: [Int32]
    public var queued: Int
    /// Decided orders this instance has not consumed yet (its consumer lag on its partitions).
    public var consumerLag: Int64
    public var pending: Int
    public var documents: Int
    /// Age of the oldest queued item, seconds (0 when empty).
    public var oldestQueuedSeconds: Double
    /// Seconds to drain the queue and the consumer's lag at the last minute's write rate; nil when nothing waits,
    /// infinity encoded as -1 when orders are queued and none was written in the last minute.
    public var drainEtaSeconds: Double?
    public var statistics: ErpWriterStatistics

    public init(target: String, kind: String, partitions: [Int32], queued: Int, consumerLag: Int64, pending: Int, documents: Int,
                oldestQueuedSeconds: Double, drainEtaSeconds: Double?, statistics: ErpWriterStatistics) {
        self.target = target
        self.kind = kind
        self.partitions = partitions
        self.queued = queued
        self.consumerLag = consumerLag
        self.pending = pending
        self.documents = documents
        self.oldestQueuedSeconds = oldestQueuedSeconds
        self.drainEtaSeconds = drainEtaSeconds
        self.statistics = statistics
    }

    public static func eta(queued: Int, perSecond: Double) -> Double? {
        guard queued > 0 else { return nil }
        return perSecond > 0 ? Double(queued) / perSecond : -1
    }
}

/// The writer's loop beside the consumer: drains the queue at the trigger's pace, publishes the
/// target's gauges, pulls the ERP's stock on schedule. On SIGTERM it finishes the pass in
/// hand (calls in flight get their answers recorded) and stops.
public struct ErpWriterService: Service {
    public let writer: ErpWriter
    public let pull: ErpStockPull?
    public let pullInterval: Duration
    let logger: Logger

    public init(writer: ErpWriter, pull: ErpStockPull?, pullInterval: Duration, logger: Logger) {
        self.writer = writer
        self.pull = pull
        self.pullInterval = pullInterval
        self.logger = logger
    }

    public func run() async throws {
        let gauges = ErpGauges(target: writer.target)
        var nextPull = ContinuousClock.now + pullInterval
        var lastGauges = ContinuousClock.now - .seconds(2)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var handled = 0
            do { handled = try await writer.drainOnce() } catch {
                logger.error("ERP queue could not be read", metadata: ["error": "\(error)"])
            }
            if ContinuousClock.now - lastGauges >= .seconds(1) {
                lastGauges = ContinuousClock.now
                if let status = try? await ErpSyncAPI.status(writer) { gauges.record(status) }
            }
            if let pull, pullInterval > .zero, ContinuousClock.now >= nextPull {
                nextPull = ContinuousClock.now + pullInterval
                // One member pulls on schedule: the one writing partition 0.
                if writer.owned().contains(0) {
                    do {
                        let n = try await pull.pull()
                        logger.info("ERP stock pulled", metadata: ["target": "\(writer.target)", "levels": "\(n)"])
                    } catch {
                        logger.warning("ERP stock pull failed; next try at the next interval", metadata: ["error": "\(error)"])
                    }
                }
            }
            if handled == 0 {
                guard await pauseUnlessShuttingDown(for: writer.configuration.idlePoll) else { break }
            }
        }
        logger.info("ERP writer stopped", metadata: ["target": "\(writer.target)"])
    }
}

/// The target's gauges on `/metrics` (label `target`).
struct ErpGauges {
    let queued, pending, eta, rate: Gauge
    let written: Counter
    let calls: [String: Counter]
    var lastWritten = 0
    init(target: String) {
        queued = Gauge(label: MetricNames.erpQueued, dimensions: [("target", target)])
        pending = Gauge(label: MetricNames.erpPending, dimensions: [("target", target)])
        eta = Gauge(label: MetricNames.erpDrainEta, dimensions: [("target", target)])
        rate = Gauge(label: "livesync_erp_written_per_second", dimensions: [("target", target)])
        written = Counter(label: MetricNames.erpWritten, dimensions: [("target", target)])
        calls = Dictionary(uniqueKeysWithValues: ["ok", "retryable", "permanent"].map {
            ($0, Counter(label: MetricNames.erpCalls, dimensions: [("target", target), ("result", $0)]))
        })
    }

    final class Seen: @unchecked Sendable { var written = 0, ok = 0, retryable = 0, refused = 0 }
    let seen = Seen()

    func record(_ s: ErpStatus) {
        queued.record(s.queued)
        pending.record(s.pending)
        eta.record(s.drainEtaSeconds.map { $0 < 0 ? Double.infinity : $0 } ?? 0)
        rate.record(s.statistics.writtenPerSecond)
        let st = s.statistics
        written.increment(by: max(0, st.written - seen.written)); seen.written = st.written
        calls["ok"]!.increment(by: max(0, st.callsOK - seen.ok)); seen.ok = st.callsOK
        calls["retryable"]!.increment(by: max(0, st.callsRetryable - seen.retryable)); seen.retryable = st.callsRetryable
        calls["permanent"]!.increment(by: max(0, st.callsRefused - seen.refused)); seen.refused = st.callsRefused
    }
}

/// `livesync-erp`'s HTTP API, on its telemetry server (views and `livesync erp` reach every
/// instance through `livesync.instances`, never its files):
///
/// - `GET /erp/status` — `ErpStatus` (queue, pending, written, rate, drain ETA);
/// - `GET /erp/pending?limit=N` — the pending queue (待处理队列) with the ERP's reasons;
/// - `POST /erp/retry[?order=<order id or reference>]` — re-drives pending orders (all, or one);
/// - `POST /erp/pull-stock` — reads the ERP's stock now and publishes it.
public enum ErpSyncAPI {
    public static func status(_ writer: ErpWriter) async throws -> ErpStatus {
        let owned = writer.owned()
        let counts = try await writer.database.read { try ErpSyncStore.counts(partitions: owned, $0) }
        let stats = writer.statistics
        let now = Clock.nowMicros()
        let lag = writer.consumerLag()
        return ErpStatus(
            target: writer.target, kind: writer.adapter.kind, partitions: owned.sorted(),
            queued: counts.queued, consumerLag: lag, pending: counts.pending, documents: counts.documents,
            oldestQueuedSeconds: counts.oldestQueuedAtUs.map { Double(max(0, now - $0)) / 1e6 } ?? 0,
            drainEtaSeconds: ErpStatus.eta(queued: counts.queued + Int(lag), perSecond: stats.writtenPerSecond),
            statistics: stats)
    }

    public static func addRoutes(to router: Router<BasicRequestContext>, writer: ErpWriter, pull: ErpStockPull?) {
        router.get("/erp/status") { _, _ in HTTPAnswer.json(try await status(writer)) }
        router.get("/erp/pending") { request, _ in
            let text = request.uri.queryParameters.get("limit") ?? "1000"
            guard let limit = Int(text), (1...10_000).contains(limit) else {
                return HTTPAnswer.text(.badRequest, "query parameter limit must be an integer in 1...10000, not '\(text)'\n")
            }
            let owned = writer.owned()
            return HTTPAnswer.json(try await writer.database.read { try ErpSyncStore.pending(partitions: owned, limit: limit, $0) })
        }
        router.post("/erp/retry") { request, _ in
            let order = request.uri.queryParameters.get("order")
            if let order, order.isEmpty { return HTTPAnswer.text(.badRequest, "query parameter order must not be empty (leave it out to re-drive every pending order)\n") }
            let owned = writer.owned()
            let n = try await writer.database.write { try ErpSyncStore.redrive(orderID: order, partitions: owned, now: Clock.nowMicros(), $0) }
            return HTTPAnswer.json(["redriven": n])
        }
        router.post("/erp/pull-stock") { _, _ in
            guard let pull else { return HTTPAnswer.text(.conflict, "the \(writer.adapter.kind) adapter cannot read stock\n") }
            do {
                return HTTPAnswer.json(["published": try await pull.pull()])
            } catch let error as ErpError {
                return HTTPAnswer.text(error.isRetryable ? .serviceUnavailable : .badGateway, "the ERP's stock could not be read: \(error)\n")
            }
        }
    }
}
