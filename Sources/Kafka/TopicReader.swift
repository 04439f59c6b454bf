import CRdkafka
import Dispatch
import Foundation

/// Reads whole topics outside any consumer group, from each partition's low watermark up to
/// the high watermark it had when reading began (for inspections; commits nothing).
public final class TopicReader {
    private let handle: OpaquePointer

    public init(configuration: KafkaConfiguration) throws {
        var config = configuration
        config.properties["group.id"] = "livesync-inspect-\(getpid())"
        config.properties["enable.auto.commit"] = "false"
        config.properties["enable.auto.offset.store"] = "false"
        config.properties["enable.partition.eof"] = "true"
        let conf = try config.makeConf(defaults: KafkaConfiguration.consumerDefaults)
        var errbuf = [CChar](repeating: 0, count: 512)
        guard let rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errbuf, errbuf.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError.configuration(errbuf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        }
        handle = rk
        rd_kafka_poll_set_consumer(rk)
    }

    deinit {
        rd_kafka_destroy_flags(handle, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
    }

    /// Low and high watermarks of a partition, asked of the broker.
    public func watermarks(_ tp: TopicPartition, timeoutMilliseconds: Int32 = 5_000) throws -> (low: Int64, high: Int64) {
        var low: Int64 = 0, high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(handle, tp.topic, tp.partition, &low, &high, timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "reading watermarks of \(tp)") }
        return (low, high)
    }

    /// Calls `body` with every message of `partitions` between the low watermark and the high
    /// watermark as of the call. Throws if the broker stops answering for `timeoutMilliseconds`.
    public func readAll(_ partitions: [TopicPartition], timeoutMilliseconds: Int = 30_000, _ body: (KafkaMessage) throws -> Void) throws {
        var end: [TopicPartition: Int64] = [:]
        guard let list = rd_kafka_topic_partition_list_new(Int32(partitions.count)) else { throw KafkaError.configuration("cannot allocate a partition list") }
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for tp in partitions {
            let (low, high) = try watermarks(tp)
            guard high > low else { continue }
            end[tp] = high
            rd_kafka_topic_partition_list_add(list, tp.topic, tp.partition).pointee.offset = low
        }
        guard !end.isEmpty else { return }
        let err = rd_kafka_assign(handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "assigning \(partitions.count) partitions") }
        defer { _ = rd_kafka_assign(handle, nil) }
        var lastProgress = DispatchTime.now().uptimeNanoseconds
        while !end.isEmpty {
            guard let raw = rd_kafka_consumer_poll(handle, 200) else {
                if DispatchTime.now().uptimeNanoseconds - lastProgress > UInt64(timeoutMilliseconds) * 1_000_000 {
                    throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "no progress reading \(end.keys.map(\.description).sorted().joined(separator: ","))", context: "reading topics")
                }
                continue
            }
            defer { rd_kafka_message_destroy(raw) }
            lastProgress = DispatchTime.now().uptimeNanoseconds
            let m = raw.pointee
            let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
            let tp = TopicPartition(topic, m.partition)
            if m.err == RD_KAFKA_RESP_ERR__PARTITION_EOF {
                end[tp] = nil
                continue
            }
            if m.err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(m.err, context: "reading \(tp)") }
            guard let stop = end[tp], m.offset < stop else { continue }
            let key: [UInt8] = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) } ?? []
            let value: [UInt8] = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
            try body(KafkaMessage(topic: topic, partition: m.partition, offset: m.offset, key: key, value: value))
            if m.offset + 1 >= stop { end[tp] = nil }
        }
    }
}
