import CRdkafka
import Dispatch
import Foundation
import Logging

/// A consumed record. Key and value are copied out of librdkafka's buffers.
public struct KafkaMessage: Sendable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]
    public var value: [UInt8]

    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8], value: [UInt8]) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
    }

    public var topicPartition: TopicPartition { TopicPartition(topic, partition) }
}

/// Receives the group's partition changes, on the consumer's own thread, inside `poll`.
public protocol KafkaRebalanceDelegate: AnyObject {
    /// Called before the partitions are assigned: return where each one starts
    /// (the next offset to read; absent means the beginning of the partition).
    func partitionsAssigned(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64]
    /// Called before the partitions are taken away. `lost` means another member may already
    /// own them (session expired): the delegate must not write anything for them.
    func partitionsRevoked(_ partitions: [TopicPartition], lost: Bool)
}

/// A balanced consumer-group member whose offsets belong to the application.
///
/// Not thread-safe by design: one thread owns it, calls `poll` in a loop (each call blocks up
/// to its timeout, never spins), and receives rebalance callbacks on that same thread.
public final class KafkaConsumer {
    private let handle: OpaquePointer
    private let logger: Logger
    private weak var delegate: (any KafkaRebalanceDelegate)?
    private var topicNames: [OpaquePointer: String] = [:]
    private var pendingError: (any Error)?
    private var isClosed = false
    public private(set) var assignment: Set<TopicPartition> = []
    /// Topics co-partitioned with the subscribed ones: partition `p` of each is assigned and
    /// revoked together with partition `p` of a subscribed topic (see `init`).
    public let companions: [String]

    /// - Parameter companions: topics that must move with the subscribed topics' partitions of the
    ///   same number (a store keyed like them, e.g. stock adjustments with order lines). Kafka's
    ///   assignors, cooperative-sticky included, balance each topic on its own and would split
    ///   them across members; so only `topics` are subscribed and companions follow by hand, as
    ///   Kafka Streams does for co-partitioned inputs.
    public init(
        configuration: KafkaConfiguration,
        groupID: String,
        topics: [String],
        companions: [String] = [],
        delegate: any KafkaRebalanceDelegate,
        logger: Logger = Logger(label: "livesync.kafka.consumer")
    ) throws {
        self.logger = logger
        self.delegate = delegate
        self.companions = companions
        var config = configuration
        config.properties["group.id"] = groupID
        // librdkafka copies the opaque at rd_kafka_new, before `self` exists: point it at a box.
        let box = OpaqueBox()
        let rk = try RdKafka.handle(RD_KAFKA_CONSUMER, settings: config.settings(for: .consumer)) { conf in
            rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
                guard let rk, let opaque else { return }
                let box = Unmanaged<OpaqueBox>.fromOpaque(opaque).takeUnretainedValue()
                box.consumer?.rebalance(rk: rk, err: err, partitions: partitions)
            }
            rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(box).toOpaque())
        }
        self.handle = rk
        self.opaqueBox = box
        box.consumer = self
        rd_kafka_poll_set_consumer(rk)
        let err = try RdKafka.withPartitionList(topics.map { (TopicPartition($0, RD_KAFKA_PARTITION_UA), nil) }) { rd_kafka_subscribe(rk, $0) }
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "subscribing to \(topics)") }
    }

    private let opaqueBox: OpaqueBox

    /// Waits up to `timeoutMilliseconds` for the next message; `nil` when none arrived.
    ///
    /// Throws when the group can no longer make progress safely: the start offsets could not
    /// be loaded, or a partition's position is gone from the broker (fell behind retention).
    public func poll(timeoutMilliseconds: Int32) throws -> KafkaMessage? {
        let raw = rd_kafka_consumer_poll(handle, timeoutMilliseconds)
        if let error = pendingError {
            pendingError = nil
            if let raw { rd_kafka_message_destroy(raw) }
            throw error
        }
        guard let raw else { return nil }
        defer { rd_kafka_message_destroy(raw) }
        let m = raw.pointee
        if m.err != RD_KAFKA_RESP_ERR_NO_ERROR {
            switch m.err {
            case RD_KAFKA_RESP_ERR__PARTITION_EOF:
                return nil
            case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
                let where_ = m.rkt.map { "\(topicName($0))[\(m.partition)]" } ?? "?"
                throw KafkaError(
                    code: m.err.rawValue,
                    message: "the stored position of \(where_) is no longer on the broker (retention dropped it): messages were lost to this consumer",
                    context: "fetching")
            default:
                let detail = m.payload.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) } ?? ""
                logger.warning("consumer error", metadata: ["error": "\(KafkaError(m.err, context: "consuming")) \(detail)"])
                return nil
            }
        }
        let topic = m.rkt.map(topicName) ?? ""
        let key: [UInt8] = m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) } ?? []
        let value: [UInt8] = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? []
        return KafkaMessage(topic: topic, partition: m.partition, offset: m.offset, key: key, value: value)
    }

    /// The partition's high watermark as of the last fetch response (librdkafka's cache: no
    /// broker round trip), or nil when none has been seen yet. For lag figures.
    public func cachedHighWatermark(_ tp: TopicPartition) -> Int64? {
        var low: Int64 = -1, high: Int64 = -1
        let err = rd_kafka_get_watermark_offsets(handle, tp.topic, tp.partition, &low, &high)
        return err == RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 ? high : nil
    }

    /// Commits offsets to the group without waiting (for lag tools only: the truth is in SQLite).
    public func commitAsync(_ offsets: [TopicPartition: Int64]) {
        guard !offsets.isEmpty else { return }
        _ = try? RdKafka.withPartitionList(offsets.map { ($0.key, $0.value) }) { rd_kafka_commit(handle, $0, 1) }
    }

    /// Leaves the group (revoking the assignment through the delegate), waiting at most
    /// `timeoutMilliseconds`: with the coordinator unreachable, librdkafka's close could wait a
    /// whole session timeout or more, and a stopping process must not hang on it.
    public func close(timeoutMilliseconds: Int = 10_000) {
        guard !isClosed else { return }
        isClosed = true
        guard let queue = rd_kafka_queue_new(handle) else { return }
        defer { rd_kafka_queue_destroy(queue) }
        if let error = rd_kafka_consumer_close_queue(handle, queue) {
            logger.warning("consumer close", metadata: ["error": "\(String(cString: rd_kafka_error_string(error)))"])
            rd_kafka_error_destroy(error)
            return
        }
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(timeoutMilliseconds) * 1_000_000
        while rd_kafka_consumer_closed(handle) == 0 {
            guard DispatchTime.now().uptimeNanoseconds < deadline else {
                logger.warning("leaving the group did not finish in \(timeoutMilliseconds) ms (coordinator unreachable?); closing anyway")
                return
            }
            guard let event = rd_kafka_queue_poll(queue, 100) else { continue }
            // With the close queue, rebalance callbacks arrive as events: serve them the same way.
            if rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE {
                rebalance(rk: handle, err: rd_kafka_event_error(event), partitions: rd_kafka_event_topic_partition_list(event))
            }
            rd_kafka_event_destroy(event)
        }
    }

    deinit {
        close()
        // The group was left above (or given up on): do not let destroy try again and block.
        rd_kafka_destroy_flags(handle, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE)
    }

    private func topicName(_ rkt: OpaquePointer) -> String {
        if let name = topicNames[rkt] { return name }
        let name = String(cString: rd_kafka_topic_name(rkt))
        topicNames[rkt] = name
        return name
    }

    private func rebalance(rk: OpaquePointer, err: rd_kafka_resp_err_t, partitions groupPartitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        var tps: [TopicPartition] = []
        if let groupPartitions {
            for i in 0..<Int(groupPartitions.pointee.cnt) {
                let e = groupPartitions.pointee.elems[i]
                tps.append(TopicPartition(String(cString: e.topic), e.partition))
            }
        }
        // Companion partitions travel with the group's partitions of the same number.
        let numbers = Set(tps.map(\.partition))
        for topic in companions {
            for p in numbers.sorted() where !tps.contains(TopicPartition(topic, p)) { tps.append(TopicPartition(topic, p)) }
        }
        do {
            switch err {
            case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
                var starts: [TopicPartition: Int64] = [:]
                do {
                    starts = try delegate?.partitionsAssigned(tps) ?? [:]
                } catch {
                    pendingError = error
                }
                try RdKafka.withPartitionList(tps.map { ($0, starts[$0] ?? Int64(RD_KAFKA_OFFSET_BEGINNING)) }) { partitions in
                    if cooperative {
                        if let e = rd_kafka_incremental_assign(rk, partitions) {
                            pendingError = KafkaError(rd_kafka_error_code(e), context: "assigning \(tps)")
                            rd_kafka_error_destroy(e)
                        }
                    } else {
                        let e = rd_kafka_assign(rk, partitions)
                        if e != RD_KAFKA_RESP_ERR_NO_ERROR { pendingError = KafkaError(e, context: "assigning \(tps)") }
                    }
                }
                assignment.formUnion(tps)
                logger.info("partitions assigned", metadata: ["partitions": "\(tps.map(\.description).joined(separator: ","))"])
                return
            case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
                let lost = rd_kafka_assignment_lost(rk) != 0
                delegate?.partitionsRevoked(tps, lost: lost)
                if cooperative {
                    try RdKafka.withPartitionList(tps.map { ($0, nil) }) { partitions in
                        if let e = rd_kafka_incremental_unassign(rk, partitions) { rd_kafka_error_destroy(e) }
                    }
                } else {
                    _ = rd_kafka_assign(rk, nil)
                }
                assignment.subtract(tps)
                logger.info("partitions revoked", metadata: ["partitions": "\(tps.map(\.description).joined(separator: ","))", "lost": "\(lost)"])
                return
            default:
                break
            }
        } catch {
            pendingError = error
            return
        }
        logger.error("rebalance error", metadata: ["error": "\(KafkaError(err, context: "rebalancing"))"])
        _ = rd_kafka_assign(rk, nil)
        assignment.removeAll()
    }
}

/// Lets librdkafka's C callbacks find the consumer without keeping it alive.
private final class OpaqueBox {
    weak var consumer: KafkaConsumer?
}
