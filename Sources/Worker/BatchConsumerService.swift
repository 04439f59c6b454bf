import Foundation
import GRDB
import GRDBSQLite
import Kafka
import Logging
import Model
import ServiceLifecycle
import Synchronization

/// Settings of a batching consumer.
public struct BatchConsumerConfiguration: Sendable {
    public var kafka: KafkaConfiguration
    /// Consumer group; each instance of an executable joins the same one.
    public var groupID: String
    public var topics: [String]
    /// Topics co-partitioned with `topics` whose partition `p` this member consumes exactly when
    /// it holds partition `p` of `topics` (see `KafkaConsumer.companions`). Default none.
    public var companionTopics: [String]
    /// This member's stable identity (survives restarts): it owns its outbox rows, so instances
    /// sharing a database never publish or delete each other's outputs.
    public var instanceID: String
    /// Most messages applied in one SQLite transaction. Default 50,000 (a batch only grows that large when there is a backlog).
    public var maxBatchSize: Int
    /// Most key and value bytes applied in one transaction. Default 8 MiB: a backlog of whole
    /// orders (about 1 KiB each) makes batches of about 8,000, large enough to amortise the
    /// commit and small enough that each consumer stays well under 200 MB.
    public var maxBatchBytes: Int
    /// How long a batch may wait to fill after its first message. Default 5 ms: the bound on the
    /// latency batching adds.
    public var maxBatchWait: Duration
    /// How long a stopping consumer (graceful shutdown or task cancellation) waits for its
    /// outputs' delivery reports. Default 30 s. Past it, it leaves: the unacknowledged outputs
    /// stay in the outbox and are republished at the next start, so nothing is lost.
    public var shutdownTimeout: Duration

    public init(kafka: KafkaConfiguration, groupID: String, topics: [String], companionTopics: [String] = [], instanceID: String = "default", maxBatchSize: Int = 50_000, maxBatchBytes: Int = 8 << 20, maxBatchWait: Duration = .milliseconds(5), shutdownTimeout: Duration = .seconds(30)) {
        self.maxBatchBytes = maxBatchBytes
        self.companionTopics = companionTopics
        self.kafka = kafka
        self.groupID = groupID
        self.topics = topics
        self.instanceID = instanceID
        self.maxBatchSize = maxBatchSize
        self.maxBatchWait = maxBatchWait
        self.shutdownTimeout = shutdownTimeout
    }
}

/// Statistics a consumer publishes after each batch (for logs, status and benchmarks).
public struct BatchStatistics: Sendable {
    public var batches = 0
    public var messages = 0
    public var deadLetters = 0
    public var lastBatchAtUs: Int64 = 0
    /// Owned partitions with their next offset and high watermark (refreshed about once a second).
    public var partitions: [TopicPartition: PartitionPosition] = [:]
    /// Messages behind the high watermarks, over the owned partitions.
    public var lag: Int64 { partitions.values.reduce(0) { $0 + $1.lag } }
}

/// A consumer-group member that applies messages in batches, one SQLite transaction per batch,
/// with the batch's offsets and outbox row in that same transaction.
///
/// Guarantees: a message's effects and its offset commit together (a crash repeats nothing and
/// loses nothing); outputs are published after commit, from the outbox, at least once. A
/// dedicated thread owns the librdkafka consumer and blocks in `poll`, so nothing spins. On
/// graceful shutdown (SIGTERM) or cancellation (a sibling service failed) it finishes the batch
/// in hand, commits, waits for its outputs' delivery reports at most `shutdownTimeout` and
/// leaves the group.
public final class BatchConsumerService: Service, Sendable {
    public let configuration: BatchConsumerConfiguration
    private let store: StateStore
    private let producer: KafkaProducer
    private let makeProcessor: @Sendable () throws -> any BatchProcessor
    private let logger: Logger
    private let stop = StopFlag()
    /// When the stop was requested (uptime nanoseconds), 0 before: delivery waits end
    /// `shutdownTimeout` after it.
    private let stopRequestedAt = Atomic<UInt64>(0)
    private let stats = Mutex<BatchStatistics>(BatchStatistics())
    private let metrics: ConsumerMetrics

    public init(
        configuration: BatchConsumerConfiguration,
        store: StateStore,
        producer: KafkaProducer,
        logger: Logger,
        makeProcessor: @escaping @Sendable () throws -> any BatchProcessor
    ) {
        self.configuration = configuration
        self.store = store
        self.producer = producer
        self.logger = logger
        self.makeProcessor = makeProcessor
        self.metrics = ConsumerMetrics(group: configuration.groupID)
    }

    public var statistics: BatchStatistics { stats.withLock { $0 } }

    /// Runs until graceful shutdown or cancellation of the calling task (a `ServiceGroup` cancels
    /// its services when one of them fails), either of which stops the consumer's thread cleanly.
    public func run() async throws {
        try await withTaskCancellationHandler {
            try await withGracefulShutdownHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let thread = Thread { [self] in
                        do {
                            let loop = try ConsumerLoop(service: self, processor: try makeProcessor())
                            try loop.run()
                            continuation.resume()
                        } catch {
                            continuation.resume(throwing: error)
                        }
                    }
                    thread.name = "consumer-\(configuration.groupID)"
                    thread.stackSize = 8 << 20
                    thread.start()
                }
            } onGracefulShutdown: {
                self.requestStop()
            }
        } onCancel: {
            self.requestStop()
        }
    }

    /// Asks the consumer's thread to stop (it checks between polls), and starts the shutdown clock.
    private func requestStop() {
        _ = stopRequestedAt.compareExchange(expected: 0, desired: max(1, DispatchTime.now().uptimeNanoseconds), ordering: .relaxed)
        stop.set()
    }

    /// When the stop was requested (uptime nanoseconds), or `nil`.
    private var stopRequestTime: UInt64? {
        let t = stopRequestedAt.load(ordering: .relaxed)
        return t == 0 ? nil : t
    }

    /// The thread-confined part: owns the consumer and carries out the decisions of its
    /// `ConsumerStateMachine` (the pending batch, offsets, heads, in-flight outputs) with
    /// librdkafka and SQLite.
    private final class ConsumerLoop: KafkaRebalanceDelegate {
        let service: BatchConsumerService
        let processor: any BatchProcessor
        /// The processor as a changelog processor, when it is one.
        let changelogged: (any ChangelogProcessor)?
        var consumer: KafkaConsumer?
        var state: ConsumerStateMachine<DeliveryGroup>
        let consumerStore: ConsumerStore
        var changelogReader: KafkaPartitionReader?
        var group: String { service.configuration.groupID }
        /// Owner of this member's outbox rows.
        var owner: String { consumerStore.owner }
        var log: Logger { service.logger }

        init(service: BatchConsumerService, processor: any BatchProcessor) throws {
            self.service = service
            self.processor = processor
            let changelogged = processor as? any ChangelogProcessor
            self.changelogged = changelogged
            let configuration = service.configuration
            self.consumerStore = ConsumerStore(group: configuration.groupID, owner: "\(configuration.groupID)/\(configuration.instanceID)")
            self.state = ConsumerStateMachine(
                maxBatchSize: configuration.maxBatchSize,
                maxBatchBytes: configuration.maxBatchBytes,
                maxBatchWaitNanoseconds: Self.nanoseconds(configuration.maxBatchWait),
                changelogTopic: changelogged?.changelogTopic,
                shutdownTimeoutNanoseconds: Self.nanoseconds(configuration.shutdownTimeout))
            try service.store.database.write { db in try processor.prepare(db) }
        }

        static func nanoseconds(_ d: Duration) -> UInt64 {
            let (seconds, attoseconds) = d.components
            guard seconds >= 0 else { return 0 }
            let (ns, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
            return overflow ? .max : ns &+ UInt64(max(0, attoseconds) / 1_000_000_000)
        }

        func run() throws {
            try republishOutbox()
            let consumer = try KafkaConsumer(
                configuration: service.configuration.kafka, groupID: group,
                topics: service.configuration.topics, companions: service.configuration.companionTopics, delegate: self, logger: log)
            self.consumer = consumer
            defer { self.consumer = nil }
            while !service.stop.isSet {
                let timeout = state.pollTimeoutMilliseconds(now: DispatchTime.now().uptimeNanoseconds)
                if let message = try consumer.poll(timeoutMilliseconds: timeout) {
                    state.received(message, now: DispatchTime.now().uptimeNanoseconds)
                    // Drain what librdkafka already holds without waiting.
                    while state.batchHasRoom, let more = try consumer.poll(timeoutMilliseconds: 0) {
                        state.buffered(more)
                    }
                }
                switch state.afterPoll(now: DispatchTime.now().uptimeNanoseconds) {
                case .commitBatch: try flush()
                case .retireDelivered: try retireDelivered()
                case .poll: break
                }
                publishPositions(force: false)
                commitOffsetsToKafka(force: false)
            }
            try flush()
            commitOffsetsToKafka(force: true)
            consumer.close()
            try settleInFlight(waitForAll: true)
            try deleteRetiredOutbox()
            log.info("consumer stopped", metadata: ["group": "\(group)"])
        }

        // MARK: Rebalance (called inside poll, on this thread)

        func partitionsAssigned(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
            if let changelogged {
                // State first: the start offsets are the ones the restored state was committed with.
                for p in state.partitionsToRestore(partitions) {
                    let head = try restore(partition: p, changelogged)
                    state.restored(partition: p, head: head)
                }
            }
            let stored = try service.store.offsets(group: group, for: partitions)
            state.assigned(partitions, stored: stored)
            publishPositions(force: true)
            log.info("start offsets loaded from SQLite", metadata: ["offsets": "\(stored.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ","))"])
            return stored
        }

        func partitionsRevoked(_ partitions: [TopicPartition], lost: Bool) {
            switch state.revoke(partitions, lost: lost) {
            case .dropped:
                break
            case .commitBatchAndSettle:
                do {
                    try flush()
                    try settleInFlight(waitForAll: true)
                } catch {
                    log.error("could not commit the batch in hand on revoke; the new owner re-applies it", metadata: ["error": "\(error)"])
                    state.dropPending(of: partitions)
                }
            }
            if !lost { commitOffsetsToKafka(force: true) }
            state.forget(partitions)
            publishPositions(force: true)
        }

        // MARK: Changelog

        /// Brings source partition `p`'s local state up to the changelog's committed chain, as
        /// `ConsumerStateMachine.restoreAction` decides; returns the partition's head after it.
        func restore(partition p: Int32, _ changelogged: any ChangelogProcessor) throws -> ChangelogHead? {
            let started = DispatchTime.now().uptimeNanoseconds
            if changelogReader == nil {
                changelogReader = try KafkaPartitionReader(configuration: service.configuration.kafka, logger: log)
            }
            var entries: [ChangelogEntry] = []
            let tp = TopicPartition(changelogged.changelogTopic, p)
            try changelogReader!.read(tp) { m in entries.append(try ChangelogEntry(serializedBytes: m.value)) }
            let chain = ChangelogChain.longest(ChangelogChain.assemble(entries))
            let local = try service.store.database.read { [consumerStore] db in try consumerStore.head(partition: p, db) }
            let action = state.restoreAction(partition: p, local: local, chain: chain)
            let fromScratch: Bool
            let tip: ChangelogHead?
            switch action {
            case .upToDate(let head):
                return head
            case .keepLocal(let head):
                log.warning("changelog \(tp) is empty but local state is at \(head): keeping the local state (was the topic recreated?)")
                return head
            case .refuse(let error):
                if let local { log.warning("local state of partition \(p) (\(local)) is not on the changelog's chain: rebuilding it from the changelog") }
                throw error
            case .applyTail(_, let t):
                fromScratch = false
                tip = t
            case .rebuild(_, let t):
                if let local { log.warning("local state of partition \(p) (\(local)) is not on the changelog's chain: rebuilding it from the changelog") }
                fromScratch = true
                tip = t
            }
            let apply = action.entries
            let restoredOutputs: (seq: Int64, messages: [ProducerMessage])? = try service.store.database.write { [group, consumerStore] db in
                if fromScratch {
                    try changelogged.dropPartition(p, db: db)
                    try consumerStore.forget(partition: p, db)
                }
                let now = Clock.nowMicros()
                // The last writer may have crashed with its disk between the entry's acknowledgement and
                // its outputs' publication (at most its in-flight batches): publish those outputs again,
                // through this member's outbox so a crash here does not lose them either.
                var output = BatchOutput(group: group)
                let republishedFrom = action.republished.startIndex
                for (i, entry) in zip(apply.indices, apply) {
                    // A replaying processor recreates the batch's outputs while it restores it.
                    var replayed = BatchOutput(group: group)
                    try changelogged.restore([UInt8](entry.payload), partition: p, db: db, output: &replayed)
                    try consumerStore.saveOffsets(entry.nextOffsets, partition: p, at: now, db)
                    if i >= republishedFrom {
                        output.messages += replayed.messages
                        try changelogged.outputs(ofRestored: [UInt8](entry.payload), partition: p, output: &output)
                    }
                }
                if let tip { try consumerStore.saveHead(tip, partition: p, db) }
                guard !output.messages.isEmpty else { return nil }
                return (try consumerStore.insertOutbox(OutboxFrame.encode(output.messages), db), output.messages)
            }
            if let restoredOutputs {
                let launch = state.restoredLaunch(seq: restoredOutputs.seq, messages: restoredOutputs.messages)
                let delivery = service.producer.enqueueInBackground(launch.messages, after: launch.first)
                state.track(launch, delivery: delivery)
            }
            log.info("partition restored from the changelog", metadata: [
                "partition": "\(tp)", "entries": "\(apply.count)", "of": "\(entries.count)", "fromScratch": "\(fromScratch)",
                "tip": "\(tip.map(\.description) ?? "-")", "ms": "\((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)",
            ])
            return tip
        }

        /// Wraps each touched partition's delta in the next entry of its chain (inside the batch's
        /// transaction, so heads, state and offsets move together) and adds it to the outputs.
        func appendChangelog(_ changelogged: any ChangelogProcessor, offsets: [TopicPartition: Int64], output: inout BatchOutput, db: Database) throws -> [Int32: ChangelogHead] {
            var newHeads: [Int32: ChangelogHead] = [:]
            let now = Clock.nowMicros()
            for p in state.changelogPartitions(offsets: offsets, deltas: output.changelog) {
                let entry = state.changelogEntry(partition: p, offsets: offsets, delta: output.changelog[p], writer: owner, now: now)
                for part in ChangelogChain.split(entry) {
                    output.messages.append(ProducerMessage(topic: changelogged.changelogTopic, key: String(p), value: try part.serializedBytes(), partition: p))
                }
                try consumerStore.saveHead(entry.head, partition: p, db)
                newHeads[p] = entry.head
            }
            return newHeads
        }

        /// Writes the committed offsets to Kafka when the state machine says so (for lag tools).
        func commitOffsetsToKafka(force: Bool) {
            if let offsets = state.offsetsForKafka(now: DispatchTime.now().uptimeNanoseconds, force: force) { consumer?.commitAsync(offsets) }
        }

        /// Publishes each owned partition's position and lag (statistics and metrics), at most
        /// once a second unless forced: librdkafka's cached watermarks, no broker round trip.
        var positionsPublishedAt: UInt64 = 0
        func publishPositions(force: Bool) {
            let now = DispatchTime.now().uptimeNanoseconds
            guard force || now &- positionsPublishedAt >= 1_000_000_000 else { return }
            positionsPublishedAt = now
            var positions: [TopicPartition: PartitionPosition] = [:]
            for (tp, n) in state.next { positions[tp] = PartitionPosition(next: n, highWatermark: consumer?.cachedHighWatermark(tp)) }
            service.stats.withLock { $0.partitions = positions }
            service.metrics.positions(positions)
        }

        // MARK: Batches

        /// Commits the batch in hand (what `takeBatch` keeps of it) in one transaction with its
        /// offsets, changelog entries and outbox row, then hands its outputs to the producer.
        func flush() throws {
            guard let batch = state.takeBatch() else { return }
            // Acknowledged outputs' outbox rows are deleted in this batch's transaction.
            let t0 = DispatchTime.now().uptimeNanoseconds
            try settleInFlight(waitForAll: false)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let retiredSeq = state.retiredOutboxSeq
            var attempt = 0
            while true {
                do {
                    let (output, seq, newHeads) = try commit(batch, retire: retiredSeq)
                    state.committed(batch, heads: newHeads)
                    let t2 = DispatchTime.now().uptimeNanoseconds
                    if log.logLevel <= .debug {
                        log.debug("batch committed", metadata: [
                            "messages": "\(batch.messages.count)", "outputs": "\(output.messages.count)",
                            "waitDeliveryMs": "\((t1 - t0) / 1_000_000)", "commitMs": "\((t2 - t1) / 1_000_000)",
                            "applyMs": "\(phaseMs.apply)", "changelogMs": "\(phaseMs.changelog)", "offsetsAndOutboxMs": "\(phaseMs.outbox)",
                        ])
                    }
                    commitOffsetsToKafka(force: false)
                    if let launch = state.launch(outputs: output.messages, seq: seq) {
                        let delivery = service.producer.enqueueInBackground(launch.messages, after: launch.first)
                        state.track(launch, delivery: delivery)
                    }
                    let committedAt = Clock.nowMicros()
                    service.stats.withLock {
                        $0.batches += 1
                        $0.messages += batch.messages.count
                        $0.deadLetters += output.deadLetters
                        $0.lastBatchAtUs = committedAt
                    }
                    service.metrics.batchCommitted(messages: batch.messages.count, output: output, commitNanoseconds: t2 - t1, at: committedAt)
                    return
                } catch let error as DatabaseError where attempt < 20 && (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED) {
                    attempt += 1
                    log.warning("SQLite busy, retrying batch", metadata: ["attempt": "\(attempt)"])
                    usleep(UInt32(min(1_000_000, 10_000 * attempt)))
                }
            }
        }

        /// Where the last batch's transaction spent its time (debug log).
        var phaseMs: (apply: UInt64, changelog: UInt64, outbox: UInt64) = (0, 0, 0)

        func commit(_ batch: ConsumerStateMachine<DeliveryGroup>.Commit, retire: Int64?) throws -> (BatchOutput, Int64, [Int32: ChangelogHead]) {
            try service.store.database.writeWithoutTransaction { [group, processor, changelogged, consumerStore] db in
                var result: (BatchOutput, Int64, [Int32: ChangelogHead])?
                try db.inTransaction(.immediate) {
                    var output = BatchOutput(group: group)
                    let started = DispatchTime.now().uptimeNanoseconds
                    try processor.apply(batch.messages, db: db, output: &output)
                    let applied = DispatchTime.now().uptimeNanoseconds
                    var newHeads: [Int32: ChangelogHead] = [:]
                    if let changelogged {
                        newHeads = try appendChangelog(changelogged, offsets: batch.offsets, output: &output, db: db)
                    }
                    let changelogDone = DispatchTime.now().uptimeNanoseconds
                    try consumerStore.saveOffsets(batch.offsets, at: Clock.nowMicros(), db)
                    if let retire { try consumerStore.deleteOutbox(through: retire, db) }
                    var seq: Int64 = 0
                    if !output.messages.isEmpty {
                        seq = try consumerStore.insertOutbox(OutboxFrame.encode(output.messages, skipping: changelogged?.derivedOutputTopic), db)
                    }
                    phaseMs = ((applied - started) / 1_000_000, (changelogDone - applied) / 1_000_000, (DispatchTime.now().uptimeNanoseconds - changelogDone) / 1_000_000)
                    result = (output, seq, newHeads)
                    return .commit
                }
                return result!
            }
        }

        // MARK: Outputs

        enum DeliveryOutcome {
            case acknowledged
            case failed(any Error)
            /// A stop was requested `shutdownTimeout` ago and the reports are still outstanding.
            case timedOut
        }

        /// Waits for `group`'s delivery reports without spinning (the thread parks until they
        /// arrive, waking every 100 ms to check the shutdown clock); gives up once a stop was
        /// requested more than `shutdownTimeout` ago.
        func awaitDelivery(_ group: DeliveryGroup) -> DeliveryOutcome {
            if !group.isComplete {
                let reported = DispatchSemaphore(value: 0)
                Task.detached {
                    try? await group.value()
                    reported.signal()
                }
                while !group.isComplete {
                    if state.shutdownTimedOut(now: DispatchTime.now().uptimeNanoseconds, stopRequestedAt: service.stopRequestTime) {
                        return .timedOut
                    }
                    _ = reported.wait(timeout: .now() + .milliseconds(100))
                }
            }
            do {
                try group.wait()
                return .acknowledged
            } catch {
                return .failed(error)
            }
        }

        /// Retires the acknowledged flights at the head of the queue (their outbox rows go in the
        /// next transaction), waiting only when `ConsumerStateMachine.settleAction` says so. A
        /// failed flight is published again until acknowledged; it stays in the outbox meanwhile,
        /// and nothing after it is retired before it.
        func settleInFlight(waitForAll: Bool) throws {
            while case .wait(let delivery) = state.settleAction(waitForAll: waitForAll, isComplete: { $0.isComplete }) {
                switch awaitDelivery(delivery) {
                case .acknowledged:
                    state.delivered()
                case .timedOut:
                    // Left in the outbox (with everything after it), republished at the next start.
                    log.warning("shutdown timeout passed: leaving unacknowledged outputs in the outbox for the next start", metadata: [
                        "flights": "\(state.inFlight.count)", "timeout": "\(service.configuration.shutdownTimeout)",
                    ])
                    state.leaveInFlightInOutbox()
                    return
                case .failed(let error):
                    switch state.deliveryFailed(stopping: service.stop.isSet) {
                    case .leaveInOutbox(let attempt):
                        log.error("publishing outputs failed, retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                        // Stopping: left in the outbox (with everything after it), republished at
                        // the next start, rather than holding the shutdown for more timeouts.
                        return
                    case .republish(let first, let messages, let attempt, let delay):
                        log.error("publishing outputs failed, retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                        usleep(delay)
                        let delivery = try service.producer.enqueue(messages, after: first)
                        state.republished(delivery)
                    }
                }
            }
        }

        /// Deletes the retired outbox rows now (when no batch is coming to carry the delete).
        func deleteRetiredOutbox() throws {
            guard let seq = state.retiredOutboxSeq else { return }
            try service.store.database.write { [consumerStore] db in try consumerStore.deleteOutbox(through: seq, db) }
            state.outboxDeleted()
        }

        /// Between batches: retire what has been acknowledged.
        func retireDelivered() throws {
            try settleInFlight(waitForAll: false)
            try deleteRetiredOutbox()
        }

        /// The outputs a changelog processor's outbox rows leave out, recreated from their entries.
        func recreatedOutputs(of messages: [ProducerMessage]) throws -> [ProducerMessage] {
            guard let changelogged, changelogged.derivedOutputTopic != nil else { return [] }
            // Sequence numbers count per partition: assemble each partition's entries on their own.
            var byPartition: [Int32: [ChangelogEntry]] = [:]
            for m in messages where m.topic == changelogged.changelogTopic {
                byPartition[m.partition ?? -1, default: []].append(try ChangelogEntry(serializedBytes: m.value))
            }
            var output = BatchOutput(group: group)
            // Outbox rows are whole batches: every entry's parts are there.
            for (p, entries) in byPartition.sorted(by: { $0.key < $1.key }) {
                for entry in ChangelogChain.assemble(entries) {
                    try changelogged.outputs(ofRestored: [UInt8](entry.payload), partition: p, output: &output)
                }
            }
            return output.messages
        }

        /// After a crash: outputs committed but maybe never published go out again, before any
        /// new batch.
        func republishOutbox() throws {
            let rows = try service.store.database.read { [consumerStore] db in try consumerStore.outbox(db) }
            guard let launch = try state.recovery(of: rows, recreating: recreatedOutputs) else { return }
            log.info("republishing outbox left by the previous run", metadata: ["rows": "\(rows.count)", "messages": "\(launch.first.count + launch.messages.count)"])
            let delivery = try service.producer.enqueue(launch.messages, after: launch.first)
            state.track(launch, delivery: delivery)
            try settleInFlight(waitForAll: true)
            try deleteRetiredOutbox()
        }
    }
}
