import Foundation
import Kafka
import Model
import Worker

/// `livesync dlq`: what is on the dead-letter topic, and re-driving it to where it came from.
public enum DeadLetters {
    /// One dead letter and where it sits on the `deadletter` topic.
    public struct Entry: Sendable, Encodable {
        /// `partition:offset` on the dead-letter topic: how `replay --id` names it.
        public var id: String
        public var sourceTopic: String
        public var sourcePartition: Int32
        public var sourceOffset: Int64
        public var consumerGroup: String
        public var error: String
        public var failedAtUs: Int64
        public var bytes: Int
        var key: [UInt8]
        var value: [UInt8]

        enum CodingKeys: String, CodingKey {
            case id, sourceTopic = "source_topic", sourcePartition = "source_partition", sourceOffset = "source_offset"
            case consumerGroup = "consumer_group", error, failedAtUs = "failed_at_us", bytes
        }
    }

    /// Every dead letter, oldest first per partition; `undecodable` counts records that are not
    /// DeadLetter messages (they are reported, never replayed).
    public static func list(bootstrap: KafkaConfiguration) throws -> (entries: [Entry], undecodable: Int) {
        let reader = try KafkaPartitionReader(configuration: bootstrap)
        var entries: [Entry] = []
        var undecodable = 0
        let partitions = try KafkaAdmin(configuration: bootstrap).partitionCounts([Topics.deadLetter])[Topics.deadLetter] ?? 4
        for p in 0..<partitions {
            try reader.read(TopicPartition(Topics.deadLetter, p)) { m in
                guard let dl = try? DeadLetter(serializedBytes: m.value) else { undecodable += 1; return }
                entries.append(Entry(
                    id: "\(p):\(m.offset)", sourceTopic: dl.sourceTopic, sourcePartition: dl.sourcePartition,
                    sourceOffset: dl.sourceOffset, consumerGroup: dl.consumerGroup, error: dl.error,
                    failedAtUs: dl.failedAtUs, bytes: dl.value.count, key: [UInt8](dl.key), value: [UInt8](dl.value)))
            }
        }
        return (entries, undecodable)
    }

    /// Publishes each entry's original key and bytes to its source topic again (after the cause
    /// was fixed). Consumers drop what they already applied, so replaying twice is harmless.
    public static func replay(_ entries: [Entry], producer: KafkaProducer) throws {
        let messages = try entries.map { e -> ProducerMessage in
            guard !e.sourceTopic.isEmpty else { throw DeadLetterError.noSource(e.id) }
            return ProducerMessage(topic: e.sourceTopic, key: e.key, value: e.value)
        }
        try producer.sendAndWait(messages)
    }

    public static func render(_ entries: [Entry]) -> String {
        var lines = ["ID        SOURCE                       GROUP                 FAILED AT (UTC)       ERROR"]
        let formatter = ISO8601DateFormatter()
        for e in entries {
            let at = formatter.string(from: Date(timeIntervalSince1970: Double(e.failedAtUs) / 1e6))
            let source = "\(e.sourceTopic)[\(e.sourcePartition)]@\(e.sourceOffset)"
            lines.append("\(e.id.padding(toLength: 9, withPad: " ", startingAt: 0)) \(source.padding(toLength: 28, withPad: " ", startingAt: 0)) \(e.consumerGroup.padding(toLength: 21, withPad: " ", startingAt: 0)) \(at)  \(e.error)")
        }
        lines.append("\(entries.count) dead letters")
        return lines.joined(separator: "\n")
    }
}

public enum DeadLetterError: Error, CustomStringConvertible {
    case noSource(String)
    case unknownIDs([String])

    public var description: String {
        switch self {
        case .noSource(let id): "dead letter \(id) names no source topic: it cannot be replayed"
        case .unknownIDs(let ids): "no dead letter with id \(ids.joined(separator: ", ")) (ids are partition:offset, see `livesync dlq list`)"
        }
    }
}
