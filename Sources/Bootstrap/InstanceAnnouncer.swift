import Foundation
import Kafka
import Logging
import Model
import ServiceLifecycle
import Synchronization

/// Tells the cluster where this process's telemetry answers, on `livesync.instances` (key =
/// process name): once the server listens, again every `interval`, and a last time with
/// `stopping` when the service stops. Readers (`InstanceDirectory`: `livesync status`, the
/// dashboard, alerting) need no folder shared with this host, only Kafka.
///
/// Announcing never blocks or fails the process: messages are handed to the producer's
/// background queue, and a delivery that fails (broker down, topic missing) is only logged as a
/// warning; the next interval tries again. The stop announcement is delivered by the
/// producer's flush on close, which every executable does after its services stopped.
///
/// Register it first among the process's services: `ServiceGroup` stops services in reverse
/// order, so `stopping` goes out once everything else has stopped.
public final class InstanceAnnouncer: Service, Sendable {
    /// The name the process reports under (`LiveSyncConfig.processName`), the message key.
    public let process: String
    /// Its consumer group, empty for ingest.
    public let group: String
    public let interval: Duration
    /// Random per start: tells two runs under the same name apart.
    public let instanceID = UUID().uuidString
    let startedAtUs = Clock.nowMicros()
    let producer: KafkaProducer
    let logger: Logger
    private let urls: AsyncStream<String>
    private let urlSink: AsyncStream<String>.Continuation

    public init(process: String, group: String = "", producer: KafkaProducer, interval: Duration, logger: Logger) {
        precondition(interval > .zero, "the announce interval must be positive")
        self.process = process
        self.group = group
        self.producer = producer
        self.interval = interval
        self.logger = logger
        (urls, urlSink) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The server listens at `url` (its advertised base URL): call from `onServerRunning`.
    /// Announcing starts then; before it, nothing is announced.
    public func listening(url: String) {
        urlSink.yield(url)
    }

    public func run() async {
        var url: String?
        for await listening in urls.cancelOnGracefulShutdown() {
            url = listening
            break
        }
        guard let url else { return }  // stopped before the server listened: nothing to take back
        announce(url: url, stopping: false)
        while await pauseUnlessShuttingDown(for: interval) {
            announce(url: url, stopping: false)
        }
        announce(url: url, stopping: true)
        logger.info("announced the stop on \(Topics.instances)", metadata: ["process": "\(process)"])
    }

    /// The announcement as sent now.
    public func announcement(url: String, stopping: Bool) -> InstanceAnnouncement {
        var a = InstanceAnnouncement()
        a.process = process
        a.instanceID = instanceID
        a.group = group
        a.url = url
        a.host = ProcessInfo.processInfo.hostName
        a.pid = getpid()
        a.startedAtUs = startedAtUs
        a.announcedAtUs = Clock.nowMicros()
        a.stopping = stopping
        return a
    }

    /// Hands one announcement to the producer without waiting; a failed delivery is logged.
    func announce(url: String, stopping: Bool) {
        // Partition 0 whatever the topic's count (say a broker auto-created it with several):
        // readers read that one partition.
        let message = ProducerMessage(topic: Topics.instances, key: process, value: announcement(url: url, stopping: stopping).bytes, partition: 0)
        let delivery = producer.enqueueInBackground([message])
        let (logger, process) = (logger, process)
        // Ends with the delivery report, at most `message.timeout.ms` (30 s) later.
        Task {
            do { try await delivery.value() } catch {
                logger.warning("could not announce this process on \(Topics.instances); `livesync status`, the dashboard and alerting may not list it",
                               metadata: ["process": "\(process)", "stopping": "\(stopping)", "error": "\(error)"])
            }
        }
    }
}
