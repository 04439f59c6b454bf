import CRdkafka
import Foundation

/// librdkafka client properties (see librdkafka's CONFIGURATION.md), with LiveSync's defaults.
///
/// Properties are kept as librdkafka's own names so anything in CONFIGURATION.md can be set
/// from configuration files without a Swift change.
public struct KafkaConfiguration: Sendable, Hashable {
    /// `bootstrap.servers`: comma-separated host:port list.
    public var bootstrapServers: String
    /// Extra librdkafka properties; they override the defaults of each client kind.
    public var properties: [String: String]

    public init(bootstrapServers: String, properties: [String: String] = [:]) {
        self.bootstrapServers = bootstrapServers
        self.properties = properties
    }

    /// Producer defaults: idempotent (acks=all), Java-compatible keyed partitioning, lz4 batches
    /// (the embedded broker keeps only 5 MiB per partition, so batches are compressed).
    public static let producerDefaults: [String: String] = [
        "enable.idempotence": "true",
        "acks": "all",
        "partitioner": "murmur2_random",
        "compression.type": "lz4",
        "linger.ms": "5",
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
        "session.timeout.ms": "45000",
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
