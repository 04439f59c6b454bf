import CRdkafka
import Foundation

/// A topic LiveSync needs, with its partition count.
public struct TopicSpecification: Sendable, Hashable {
    public var name: String
    public var partitions: Int32
    public var replicationFactor: Int32
    public var config: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int32 = 1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

/// Topic administration against a real Kafka cluster (CreateTopics, Metadata).
///
/// The embedded broker has no CreateTopics handler: create its topics with
/// `EmbeddedBroker.createTopic` instead.
public final class KafkaAdmin {
    private let handle: OpaquePointer

    public init(configuration: KafkaConfiguration) throws {
        handle = try RdKafka.handle(RD_KAFKA_PRODUCER, settings: configuration.settings(for: .admin))
    }

    deinit { rd_kafka_destroy(handle) }

    /// Creates the topics; a topic that already exists is left as it is (and not an error).
    public func createTopics(_ specs: [TopicSpecification], timeoutMilliseconds: Int32 = 15_000) throws {
        guard !specs.isEmpty else { return }
        var errbuf = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { for t in newTopics { rd_kafka_NewTopic_destroy(t) } }
        for spec in specs {
            guard let nt = rd_kafka_NewTopic_new(spec.name, spec.partitions, spec.replicationFactor, &errbuf, errbuf.count) else {
                throw KafkaError.configuration("topic \(spec.name): \(errbuf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })")
            }
            for (k, v) in spec.config { rd_kafka_NewTopic_set_config(nt, k, v) }
            newTopics.append(nt)
        }
        guard let queue = rd_kafka_queue_new(handle) else { throw KafkaError.configuration("cannot create a queue") }
        defer { rd_kafka_queue_destroy(queue) }
        let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        rd_kafka_AdminOptions_set_request_timeout(options, Int32(timeoutMilliseconds), &errbuf, errbuf.count)
        newTopics.withUnsafeMutableBufferPointer { buf in
            rd_kafka_CreateTopics(handle, buf.baseAddress, buf.count, options, queue)
        }
        guard let event = rd_kafka_queue_poll(queue, timeoutMilliseconds + 5_000) else {
            throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "no answer to CreateTopics", context: "creating topics")
        }
        defer { rd_kafka_event_destroy(event) }
        let err = rd_kafka_event_error(event)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            throw KafkaError(err, context: "creating topics")
        }
        let result = rd_kafka_event_CreateTopics_result(event)
        var count = 0
        guard let topics = rd_kafka_CreateTopics_result_topics(result, &count) else { return }
        for i in 0..<count {
            let t = topics[i]
            let terr = rd_kafka_topic_result_error(t)
            if terr != RD_KAFKA_RESP_ERR_NO_ERROR && terr != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
                throw KafkaError(terr, context: "creating topic \(String(cString: rd_kafka_topic_result_name(t)))")
            }
        }
    }

    /// The partition count of each named topic that exists (topics absent from the cluster are omitted).
    public func partitionCounts(_ topics: [String], timeoutMilliseconds: Int32 = 10_000) throws -> [String: Int32] {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 1, nil, &metadata, timeoutMilliseconds)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { throw KafkaError(err, context: "reading metadata") }
        defer { rd_kafka_metadata_destroy(metadata) }
        var result: [String: Int32] = [:]
        let wanted = Set(topics)
        for i in 0..<Int(metadata.pointee.topic_cnt) {
            let t = metadata.pointee.topics[i]
            let name = String(cString: t.topic)
            if wanted.contains(name), t.err == RD_KAFKA_RESP_ERR_NO_ERROR { result[name] = t.partition_cnt }
        }
        return result
    }

    /// Low and high watermarks (first offset held, next offset to be written) of a partition.
    public func watermarks(_ tp: TopicPartition, timeoutMilliseconds: Int32 = 5_000) throws -> (low: Int64, high: Int64) {
        var low: Int64 = 0
        var high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(handle, tp.topic, tp.partition, &low, &high, timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "reading watermarks of \(tp)") }
        return (low, high)
    }
}
