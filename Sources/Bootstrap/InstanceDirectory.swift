import Dispatch
import Foundation
import Kafka
import Logging
import Model
import NIOCore
import Synchronization
import Telemetry
import Worker

/// The running processes as they announce themselves on `livesync.instances`
/// (`InstanceAnnouncer`): what `livesync status`, the dashboard and alerting ask, on hosts that
/// share nothing but Kafka.
///
/// A process is listed by its latest announcement (the topic's order: one partition) unless
/// that one said `stopping` (a clean stop) or is older than `maxAge` (a process killed, or cut
/// off from Kafka, that long ago). A process killed more recently is still listed; its `/readyz`
/// then does not answer, which is how it shows as down.
///
/// One instance reads the topic incrementally: the first call reads it whole, later calls only
/// what was appended since, so a long-lived reader (alerting, the dashboard) stays cheap.
/// Thread-safe; reads run off the cooperative pool, one at a time.
public final class InstanceDirectory: Sendable {
    public struct Configuration: Sendable {
        public var kafka: KafkaConfiguration
        /// Announcements older than this are left out. Default 10 minutes: far above the announce
        /// interval (10 s), so a live process that missed a few announcements stays listed.
        public var maxAge: Duration
        /// How long one read of the topic may take before it fails.
        public var readTimeout: Duration

        public init(kafka: KafkaConfiguration, maxAge: Duration = .seconds(600), readTimeout: Duration = .seconds(10)) {
            self.kafka = kafka
            self.maxAge = maxAge
            self.readTimeout = readTimeout
        }
    }

    public let configuration: Configuration
    let logger: Logger
    private struct State {
        var reader: KafkaPartitionReader?
        /// The next offset to read, and the latest announcement per process up to it.
        var next: Int64 = 0
        var latest: [String: InstanceAnnouncement] = [:]
    }
    private let state = Mutex(State())

    public init(_ configuration: Configuration, logger: Logger = Logger(label: "livesync.instances")) {
        self.configuration = configuration
        self.logger = logger
    }

    public convenience init(kafka: KafkaConfiguration) {
        self.init(Configuration(kafka: kafka))
    }

    /// The processes announced and neither stopped nor older than `maxAge` at `now`, by name.
    /// Throws when the topic cannot be read (broker unreachable, topic missing).
    public func instances(now: Int64 = Clock.nowMicros()) async throws -> [InstanceAnnouncement] {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<[InstanceAnnouncement], any Error>) in
            DispatchQueue.global(qos: .utility).async { c.resume(with: Result { try self.read(now: now) }) }
        }
    }

    /// Reads what was appended since the last call (blocking) and returns the listed processes.
    func read(now: Int64) throws -> [InstanceAnnouncement] {
        let oldest = now - configuration.maxAge.wholeMicroseconds
        return try state.withLock { s in
            if s.reader == nil { s.reader = try KafkaPartitionReader(configuration: configuration.kafka, logger: logger) }
            let reader = s.reader!
            let tp = TopicPartition(Topics.instances, 0)
            let (low, high) = try reader.watermarks(tp)
            if s.next > high {  // the topic was recreated: start over
                s.latest = [:]
                s.next = 0
            }
            var next = max(s.next, low)  // below `low` retention or compaction removed it: nothing to miss
            var latest = s.latest
            try reader.read(tp, from: next, timeoutMilliseconds: configuration.readTimeout.wholeMilliseconds) { (m: KafkaMessage) -> Void in
                next = m.offset + 1
                let key = String(decoding: m.key, as: UTF8.self)
                if m.value.isEmpty {  // a tombstone: the process's announcements were deleted
                    latest[key] = nil
                } else if let a = try? InstanceAnnouncement(serializedBytes: m.value), !a.process.isEmpty {
                    latest[a.process] = a
                } else {
                    logger.debug("skipping an undecodable announcement", metadata: ["offset": "\(m.offset)", "key": "\(key)"])
                }
            }
            s.next = next
            s.latest = latest
            return latest.values.filter { !$0.stopping && $0.announcedAtUs >= oldest }.sorted { $0.process < $1.process }
        }
    }
}

extension ProcessStatus {
    /// Every process `directory` lists, with what its `/readyz` answers (each within `timeout`).
    /// A process that announced itself recently but does not answer is `down`.
    public static func collect(discovering directory: InstanceDirectory, timeout: TimeAmount = .seconds(3)) async throws -> [ProcessStatusRow] {
        let instances = try await directory.instances()
        return await collect(instances.map { ProcessEndpoint(name: $0.process, url: $0.url, host: $0.host, pid: $0.pid) }, timeout: timeout)
    }

    /// The processes announced on the cluster at `kafka` (a one-off read of `livesync.instances`).
    public static func collect(discovering kafka: KafkaConfiguration, timeout: TimeAmount = .seconds(3)) async throws -> [ProcessStatusRow] {
        try await collect(discovering: InstanceDirectory(kafka: kafka), timeout: timeout)
    }
}

extension LiveSyncConfig {
    /// Where this configuration's processes are found: `kafka.*`, and `telemetry.instanceMaxAgeMs`
    /// (default 600000, 10 minutes): announcements older than that are left out.
    public func instanceDirectory() throws -> InstanceDirectory.Configuration {
        let defaults = InstanceDirectory.Configuration(kafka: try kafka())
        let maxAge = try int("telemetry.instanceMaxAgeMs", default: defaults.maxAge.wholeMilliseconds)
        guard maxAge > 0 else {
            throw ConfigurationError("telemetry.instanceMaxAgeMs must be positive, not \(maxAge) (\(Self.environmentName("telemetry.instanceMaxAgeMs")))")
        }
        return InstanceDirectory.Configuration(kafka: defaults.kafka, maxAge: .milliseconds(maxAge), readTimeout: defaults.readTimeout)
    }
}
