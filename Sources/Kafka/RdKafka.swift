import CRdkafka

/// The one place LiveSync creates librdkafka handles and topic-partition lists (used by the
/// clients here and, package-internally, by the embedded broker in `LiveSyncTesting`).
package enum RdKafka {
    /// A configuration object with `settings` applied in key order; a rejected setting names itself.
    package static func conf(_ settings: [String: String]) throws -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else { throw KafkaError.configuration("rd_kafka_conf_new failed") }
        for (key, value) in settings.sorted(by: { $0.key < $1.key }) {
            var errbuf = [CChar](repeating: 0, count: 512)
            if rd_kafka_conf_set(conf, key, value, &errbuf, errbuf.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                let detail = errbuf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                throw KafkaError.configuration("property \(key)=\(value) rejected: \(detail)")
            }
        }
        return conf
    }

    /// A client handle of `type` from `settings`; `customize` sets callbacks and the opaque on the
    /// configuration before librdkafka copies it. The configuration is consumed either way.
    package static func handle(_ type: rd_kafka_type_t, settings: [String: String], customize: (OpaquePointer) -> Void = { _ in }) throws -> OpaquePointer {
        let conf = try conf(settings)
        customize(conf)
        var errbuf = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(type, conf, &errbuf, errbuf.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError.configuration(errbuf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        return rk
    }

    /// Calls `body` with a partition list holding `entries` (an absent offset leaves librdkafka's
    /// default), destroyed when `body` returns.
    package static func withPartitionList<T>(_ entries: some Collection<(TopicPartition, Int64?)>,
                                             _ body: (UnsafeMutablePointer<rd_kafka_topic_partition_list_t>) throws -> T) throws -> T {
        guard let list = rd_kafka_topic_partition_list_new(Int32(max(1, entries.count))) else {
            throw KafkaError.configuration("cannot allocate a partition list")
        }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for (tp, offset) in entries {
            let element = rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition)!
            if let offset { element.pointee.offset = offset }
        }
        return try body(list)
    }
}
