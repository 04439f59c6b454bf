import CRdkafka
import Dispatch
import Foundation
import Logging
import Synchronization

/// One message to publish. The key decides the partition (murmur2, as Java does).
public struct ProducerMessage: Sendable {
    public var topic: String
    public var key: [UInt8]
    public var value: [UInt8]
    /// An explicit partition (a changelog written for its source partition), or `nil` to
    /// partition by key (murmur2, as Java clients do).
    public var partition: Int32?

    public init(topic: String, key: [UInt8], value: [UInt8], partition: Int32? = nil) {
        self.topic = topic
        self.key = key
        self.value = value
        self.partition = partition
    }

    public init(topic: String, key: String, value: [UInt8], partition: Int32? = nil) {
        self.init(topic: topic, key: Array(key.utf8), value: value, partition: partition)
    }
}

/// The delivery reports of a group of produced messages.
///
/// Completes once the broker acknowledged (acks=all) or librdkafka gave up on every message;
/// it then carries the first delivery error, if any. Waiting never spins: the blocking
/// variant parks the thread on a semaphore, the async one suspends, and `onComplete` calls back
/// (an event loop's handler goes on without a task).
public final class DeliveryGroup: Sendable {
    private struct State {
        var remaining: Int
        var firstError: KafkaError?
        var continuations: [CheckedContinuation<Void, any Error>] = []
        var callbacks: [@Sendable (KafkaError?) -> Void] = []
        var done: Bool
        /// Set while reports are outstanding, so librdkafka's callbacks can reach the group.
        var keepAlive: DeliveryGroup?
    }
    private let state: Mutex<State>
    private let semaphore = DispatchSemaphore(value: 0)

    init(count: Int) {
        state = Mutex(State(remaining: count, done: count == 0))
        if count == 0 { semaphore.signal() }
    }

    /// Keeps the group alive until every message has its report (librdkafka holds only a raw pointer).
    func retainUntilComplete() {
        state.withLock { if !$0.done { $0.keepAlive = self } }
    }

    func complete(_ error: KafkaError?, count: Int = 1) {
        typealias Waiters = (continuations: [CheckedContinuation<Void, any Error>], callbacks: [@Sendable (KafkaError?) -> Void])
        let (waiters, keepAlive): (Waiters?, DeliveryGroup?) = state.withLock { s in
            if s.firstError == nil, let error { s.firstError = error }
            s.remaining -= count
            guard s.remaining == 0 else { return (nil, nil) }
            s.done = true
            defer { s.continuations = []; s.callbacks = []; s.keepAlive = nil }
            return ((s.continuations, s.callbacks), s.keepAlive)
        }
        // `keepAlive` may hold the last reference to `self`: keep it until this call is done.
        withExtendedLifetime(keepAlive) {
            guard let waiters else { return }
            semaphore.signal()
            let error = state.withLock { $0.firstError }
            for w in waiters.continuations {
                if let error { w.resume(throwing: error) } else { w.resume() }
            }
            for body in waiters.callbacks { body(error) }
        }
    }

    /// Calls `body` once every message is acknowledged, with the first failure or nil: on the
    /// thread that serves the last delivery report (librdkafka's poll thread), or at once on the
    /// calling thread when the group is already complete. `body` must not block.
    public func onComplete(_ body: @escaping @Sendable (KafkaError?) -> Void) {
        let done: KafkaError?? = state.withLock { s in
            if s.done { return .some(s.firstError) }
            s.callbacks.append(body)
            return .none
        }
        if let done { body(done) }
    }

    /// Blocks the calling thread until every message is acknowledged; throws the first failure.
    public func wait() throws(KafkaError) {
        semaphore.wait()
        semaphore.signal()
        if let error = state.withLock({ $0.firstError }) { throw error }
    }

    /// Suspends until every message is acknowledged; throws the first failure.
    public func value() async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let result: Result<Void, KafkaError>? = state.withLock { s in
                if s.done { return s.firstError.map { .failure($0) } ?? .success(()) }
                s.continuations.append(c)
                return nil
            }
            if let result { c.resume(with: result.mapError { $0 as any Error }) }
        }
    }

    public var isComplete: Bool { state.withLock { $0.done } }
}

/// An idempotent Kafka producer with delivery reports.
///
/// Thread-safe (librdkafka's producer is); a dedicated thread serves delivery reports with a
/// blocking `rd_kafka_poll`, so no caller ever polls or flushes per message.
public final class KafkaProducer: @unchecked Sendable {
    private let handle: OpaquePointer
    private let topics = Mutex<[String: OpaquePointer]>([:])
    private let closed = StopFlag()
    private let pollerDone = DispatchSemaphore(value: 0)
    private let backgroundQueue = DispatchQueue(label: "livesync.kafka.produce")
    private let logger: Logger

    public init(configuration: KafkaConfiguration, logger: Logger = Logger(label: "livesync.kafka.producer")) throws {
        self.logger = logger
        let rk = try RdKafka.handle(RD_KAFKA_PRODUCER, settings: configuration.settings(for: .producer)) { conf in
            rd_kafka_conf_set_dr_msg_cb(conf) { _, message, _ in
                guard let message, let opaque = message.pointee._private else { return }
                // The group keeps itself alive until its last report (see DeliveryGroup.retainUntilComplete).
                let group = Unmanaged<DeliveryGroup>.fromOpaque(opaque).takeUnretainedValue()
                let err = message.pointee.err
                group.complete(err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : KafkaError(err, context: "delivering a message"))
            }
        }
        self.handle = rk
        let thread = Thread { [handle = UncheckedHandle(rk), closed, done = pollerDone] in
            while !closed.isSet {
                rd_kafka_poll(handle.pointer, 100)
            }
            done.signal()
        }
        thread.name = "kafka-producer-poll"
        thread.start()
    }

    /// Enqueues the messages (copied) and returns their delivery group; returns at once.
    public func enqueue(_ messages: [ProducerMessage]) throws(KafkaError) -> DeliveryGroup {
        let group = DeliveryGroup(count: messages.count)
        group.retainUntilComplete()
        try produce(messages, into: group)
        return group
    }

    /// Like `enqueue`, but hands the messages to librdkafka on a background queue, so the
    /// caller (a consumer between two batches) goes on at once; failures arrive through the group.
    public func enqueueInBackground(_ messages: [ProducerMessage]) -> DeliveryGroup {
        let group = DeliveryGroup(count: messages.count)
        group.retainUntilComplete()
        backgroundQueue.async { [self] in try? produce(messages, into: group) }
        return group
    }

    /// Like `enqueueInBackground`, but `messages` go to librdkafka only once every message of
    /// `first` is acknowledged: whoever sees one of `messages` can rely on `first` being in the log
    /// (a store's changelog entry before the outputs that reveal its decisions). The group covers both.
    public func enqueueInBackground(_ messages: [ProducerMessage], after first: [ProducerMessage]) -> DeliveryGroup {
        guard !first.isEmpty else { return enqueueInBackground(messages) }
        let group = DeliveryGroup(count: first.count + messages.count)
        group.retainUntilComplete()
        backgroundQueue.async { [self] in
            let stage = DeliveryGroup(count: first.count)
            stage.retainUntilComplete()
            try? produce(first, into: stage)
            do throws(KafkaError) { try stage.wait() } catch {
                group.complete(error, count: first.count + messages.count)
                return
            }
            group.complete(nil, count: first.count)
            try? produce(messages, into: group)
        }
        return group
    }

    /// `enqueue` with the ordering of `enqueueInBackground(_:after:)`; blocks until `first` is acknowledged.
    public func enqueue(_ messages: [ProducerMessage], after first: [ProducerMessage]) throws(KafkaError) -> DeliveryGroup {
        if !first.isEmpty { try enqueue(first).wait() }
        return try enqueue(messages)
    }

    private func produce(_ messages: [ProducerMessage], into group: DeliveryGroup) throws(KafkaError) {
        let opaque = Unmanaged.passUnretained(group).toOpaque()
        var lastTopic = ""
        var rkt: OpaquePointer?
        for (index, message) in messages.enumerated() {
            do {
                if rkt == nil || message.topic != lastTopic {
                    rkt = try topicHandle(message.topic)
                    lastTopic = message.topic
                }
            } catch {
                group.complete(error, count: messages.count - index)
                throw error
            }
            while true {
                let rc = message.value.withUnsafeBytes { value in
                    message.key.withUnsafeBytes { key in
                        rd_kafka_produce(
                            rkt!, message.partition ?? RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                            UnsafeMutableRawPointer(mutating: value.baseAddress), value.count,
                            key.baseAddress, key.count, opaque)
                    }
                }
                if rc == 0 { break }
                let err = rd_kafka_last_error()
                if err == RD_KAFKA_RESP_ERR__QUEUE_FULL {
                    // Back-pressure: the local queue drains as the poll thread serves reports.
                    usleep(1000)
                    continue
                }
                // Messages not enqueued count as failed so waiters are not left hanging.
                let error = KafkaError(err, context: "producing to \(message.topic)")
                group.complete(error, count: messages.count - index)
                throw error
            }
        }
    }

    /// Produces the messages and suspends until the broker acknowledged all of them.
    public func send(_ messages: [ProducerMessage]) async throws {
        try await enqueue(messages).value()
    }

    /// Produces the messages and blocks until the broker acknowledged all of them.
    public func sendAndWait(_ messages: [ProducerMessage]) throws(KafkaError) {
        try enqueue(messages).wait()
    }

    /// Flushes outstanding messages (bounded by `timeoutMilliseconds`) and stops the poll thread.
    /// Whether a broker answers a metadata request within the timeout (readiness checks).
    /// Thread-safe; costs one round trip.
    public func brokerReachable(timeoutMilliseconds: Int32 = 2_000) -> Bool {
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, nil, &metadata, timeoutMilliseconds)
        if let metadata { rd_kafka_metadata_destroy(metadata) }
        return err == RD_KAFKA_RESP_ERR_NO_ERROR
    }

    public func close(timeoutMilliseconds: Int32 = 10_000) {
        guard closed.set() else { return }
        let err = rd_kafka_flush(handle, timeoutMilliseconds)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            logger.error("producer flush on close did not finish", metadata: ["error": "\(KafkaError(err, context: "flushing"))"])
        }
        pollerDone.wait()
    }

    deinit {
        close()
        topics.withLock { for (_, t) in $0 { rd_kafka_topic_destroy(t) } }
        rd_kafka_destroy(handle)
    }

    private func topicHandle(_ name: String) throws(KafkaError) -> OpaquePointer {
        let result: OpaquePointer? = topics.withLock { cache in
            if let t = cache[name] { return t }
            guard let t = rd_kafka_topic_new(handle, name, nil) else { return nil }
            cache[name] = t
            return t
        }
        guard let result else { throw KafkaError(rd_kafka_last_error(), context: "opening topic \(name)") }
        return result
    }

}

/// A librdkafka handle passed to a thread; librdkafka handles are thread-safe.
struct UncheckedHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

/// A one-way flag shared between threads: set once, read often.
public final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    /// Sets the flag; returns `true` only for the call that set it.
    @discardableResult
    public func set() -> Bool { !flag.exchange(true, ordering: .acquiringAndReleasing) }
    public var isSet: Bool { flag.load(ordering: .acquiring) }
}
