import CRdkafka
import Dispatch
import Foundation
import Logging

/// Reads whole partitions outside any consumer group: to restore a store from its changelog,
/// or for tools (`livesync dlq`, `chaos`) that inspect a topic.
///
/// Not thread-safe: one thread uses it. Each read blocks in `rd_kafka_consumer_poll`, never spins.
public final class KafkaPartitionReader {
    private let handle: OpaquePointer
    private let logger: Logger

    public init(configuration: KafkaConfiguration, logger: Logger = Logger(label: "livesync.kafka.reader")) throws {
        self.logger = logger
        var config = configuration
        // Partitions are assigned by hand and no offset is ever committed; librdkafka still wants
        // a group id for `assign`, one that no member ever joins.
        config.properties["group.id"] = "livesync-reader-\(UUID().uuidString)"
        let rk = try RdKafka.handle(RD_KAFKA_CONSUMER, settings: config.settings(for: .partitionReader))
        handle = rk
        rd_kafka_poll_set_consumer(rk)
    }

    deinit {
        rd_kafka_destroy_flags(handle, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
    }

    /// Low and high watermarks of a partition (first offset held, next offset to be written).
    public func watermarks(_ tp: TopicPartition, timeoutMilliseconds: Int32 = 10_000) throws -> (low: Int64, high: Int64) {
        var low: Int64 = 0, high: Int64 = 0
        let err = rd_kafka_query_watermark_offsets(handle, tp.topic, tp.partition, &low, &high, timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "reading watermarks of \(tp)") }
        return (low, high)
    }

    /// Calls `body` with every message of `tp` from `start` (default: the first one held) up to
    /// the high watermark as of the call, in offset order.
    ///
    /// Throws when `start` is no longer held (retention dropped it: the caller would miss data)
    /// or the partition cannot be read within `timeoutMilliseconds`.
    /// - Returns: the watermarks the read was bounded by.
    @discardableResult
    public func read(
        _ tp: TopicPartition, from start: Int64? = nil, timeoutMilliseconds: Int = 60_000,
        _ body: (KafkaMessage) throws -> Void
    ) throws -> (low: Int64, high: Int64) {
        try read(tp, from: start, timeoutMilliseconds: timeoutMilliseconds, while: { try body($0); return true })
    }

    /// Like `read(_:from:timeoutMilliseconds:_:)`, but stops after the first message for which
    /// `body` returns false (what follows is not fetched further).
    @discardableResult
    public func read(
        _ tp: TopicPartition, from start: Int64? = nil, timeoutMilliseconds: Int = 60_000,
        while body: (KafkaMessage) throws -> Bool
    ) throws -> (low: Int64, high: Int64) {
        let (low, high) = try watermarks(tp)
        let first = start ?? low
        if first < low {
            throw KafkaError(code: RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE.rawValue,
                             message: "\(tp) no longer holds offset \(first) (first held: \(low)): retention dropped data this read needs",
                             context: "reading \(tp)")
        }
        guard first < high else { return (low, high) }
        var err = try RdKafka.withPartitionList([(tp, first)]) { rd_kafka_assign(handle, $0) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "assigning \(tp)") }
        defer { _ = rd_kafka_assign(handle, nil) }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMilliseconds) * 1_000_000
        var next = first
        while next < high {
            guard DispatchTime.now().uptimeNanoseconds < deadline else {
                throw KafkaError(code: RD_KAFKA_RESP_ERR__TIMED_OUT.rawValue, message: "read \(tp) only up to offset \(next) of \(high) in \(timeoutMilliseconds) ms", context: "reading \(tp)")
            }
            guard let raw = rd_kafka_consumer_poll(handle, 200) else { continue }
            defer { rd_kafka_message_destroy(raw) }
            let m = raw.pointee
            err = m.err
            if err == RD_KAFKA_RESP_ERR__PARTITION_EOF { continue }
            if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                if err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE {
                    throw KafkaError(code: err.rawValue, message: "\(tp) dropped offset \(next) while it was being read", context: "reading \(tp)")
                }
                logger.warning("read error", metadata: ["partition": "\(tp)", "error": "\(KafkaError(err, context: "reading"))"])
                continue
            }
            // Only this partition's messages from `next` on (not one left queued by an earlier read).
            guard m.partition == tp.partition, m.offset >= next else { continue }
            let key: [UInt8] = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) } ?? []
            let value: [UInt8] = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
            next = m.offset + 1
            guard try body(KafkaMessage(topic: tp.topic, partition: tp.partition, offset: m.offset, key: key, value: value)) else { break }
        }
        return (low, high)
    }

    /// Calls `body` with every message of `partitions` (read together, interleaved) between the low
    /// watermark and the high watermark as of the call, for inspections. Throws if the broker stops answering for `timeoutMilliseconds`.
    public func readAll(_ partitions: [TopicPartition], timeoutMilliseconds: Int = 30_000, _ body: (KafkaMessage) throws -> Void) throws {
        var end: [TopicPartition: Int64] = [:]
        var starts: [(TopicPartition, Int64?)] = []
        for tp in partitions {
            let (low, high) = try watermarks(tp)
            guard high > low else { continue }
            end[tp] = high
            starts.append((tp, low))
        }
        guard !end.isEmpty else { return }
        let err = try RdKafka.withPartitionList(starts) { rd_kafka_assign(handle, $0) }
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
