import CRdkafka
import Foundation

/// A Kafka client's settings: the ones LiveSync decides on, typed, with one documented default
/// each, and any other librdkafka property (CONFIGURATION.md) by its own name in `properties`
/// (TLS and SASL, for instance), so nothing in librdkafka needs a Swift change to be set.
public struct KafkaConfiguration: Sendable, Hashable {
    /// `bootstrap.servers`: comma-separated host:port list.
    public var bootstrapServers: String
    /// `linger.ms` of producers: how long a producer gathers messages into one batch. Default
    /// 5 ms (the embedded broker scans every message set on each fetch, so `livesync dev` gives
    /// ingest's many small requests more).
    public var linger: Duration = .milliseconds(5)
    /// `session.timeout.ms` of group members: how long the group waits for a silent member.
    /// Default 45 s, Kafka's; the embedded broker waits this minus 1 s before each rebalance,
    /// so `livesync dev` uses 6 s.
    public var sessionTimeout: Duration = .seconds(45)
    /// `group.instance.id` of group members: static membership on a real cluster (a restart
    /// within the session timeout keeps the member's partitions). Default none.
    public var groupInstanceID: String?
    /// Any other librdkafka property; it overrides LiveSync's defaults and the typed settings.
    public var properties: [String: String]

    public init(bootstrapServers: String, properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
    }

    /// The kinds of client, each with its own defaults.
    enum Client {
        case producer, consumer, partitionReader, admin
    }

    /// Every property a client of `kind` is created with: LiveSync's defaults for the kind, the
    /// typed settings that apply to it, `properties` over them, and the bootstrap servers.
    func settings(for kind: Client) -> [String: String] {
        var merged: [String: String]
        switch kind {
        case .producer:
            merged = Self.producerDefaults
            merged["linger.ms"] = String(linger.wholeMillisecondsForKafka)
        case .consumer:
            merged = Self.consumerDefaults
            merged["session.timeout.ms"] = String(sessionTimeout.wholeMillisecondsForKafka)
            if let groupInstanceID, !groupInstanceID.isEmpty { merged["group.instance.id"] = groupInstanceID }
        case .partitionReader:
            // Outside any group: partitions are assigned by hand, nothing is committed.
            merged = Self.consumerDefaults
            merged["enable.partition.eof"] = "true"
            merged["partition.assignment.strategy"] = nil
            merged["session.timeout.ms"] = nil
            merged["heartbeat.interval.ms"] = nil
            merged["queued.min.messages"] = "100000"
        case .admin:
            merged = [:]
        }
        for (k, v) in properties { merged[k] = v }
        if kind == .partitionReader { merged["group.instance.id"] = nil }
        merged["bootstrap.servers"] = bootstrapServers
        return merged
    }

    /// Producer defaults: idempotent (acks=all), Java-compatible keyed partitioning, lz4 batches
    /// (the embedded broker keeps only 5 MiB per partition, so batches are compressed).
    public static let producerDefaults: [String: String] = [
        "enable.idempotence": "true",
        "acks": "all",
        "partitioner": "murmur2_random",
        "compression.type": "lz4",
        "batch.num.messages": "10000",
        "queue.buffering.max.messages": "1000000",
        "queue.buffering.max.kbytes": "1048576",
        "message.timeout.ms": "30000",
        "socket.nagle.disable": "true",
    ]

    /// Consumer defaults: cooperative-sticky, offsets owned by the application (kept in SQLite).
    public static let consumerDefaults: [String: String] = [
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.auto.commit": "false",
        "enable.auto.offset.store": "false",
        "auto.offset.reset": "error",
        "enable.partition.eof": "false",
        "fetch.wait.max.ms": "20",
        "queued.min.messages": "200000",
        "heartbeat.interval.ms": "1000",
        "socket.nagle.disable": "true",
    ]

    /// Parses `k=v,k=v` (how operators pass extra librdkafka properties); `source` names the
    /// setting in the error.
    public static func parseProperties(_ text: String, source: String) throws -> [String: String] {
        var properties: [String: String] = [:]
        for pair in text.split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, !kv[0].isEmpty else {
                throw KafkaError.configuration("\(source) entry '\(pair)' is not key=value")
            }
            properties[kv[0]] = kv[1]
        }
        return properties
    }

}

/// A topic and partition, as Kafka names them.
public struct TopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32
    public init(_ topic: String, _ partition: Int32) {
        self.topic = topic
        self.partition = partition
    }
    public var description: String { "\(topic)[\(partition)]" }
}

extension Duration {
    /// Whole milliseconds, for librdkafka's `*.ms` properties.
    var wholeMillisecondsForKafka: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000 + attoseconds / 1_000_000_000_000_000
    }
}
