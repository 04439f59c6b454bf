import Foundation
import Kafka
import Model

/// The batching consumer's decisions, apart from its I/O: which messages a batch applies and
/// with which offsets, how a gained partition is restored from its changelog, what a revocation
/// keeps, and when committed outputs are retired from the outbox.
///
/// A value type with no Kafka or SQLite in it: `ConsumerLoop` feeds it what it polled, read or
/// was told by librdkafka, and carries out what it answers. `Delivery` is the handle of a group
/// of produced messages (`DeliveryGroup` in the loop); the state machine only stores it.
struct ConsumerStateMachine<Delivery> {
    /// Outputs of committed batches at most outstanding before the loop waits for the oldest.
    static var maxInFlight: Int { 4 }
    /// Entries at a restored chain's tip whose outputs are published again: more than the
    /// batches a writer can have in flight (`maxInFlight`) plus the one it was committing.
    static var republishedEntries: Int { 8 }

    let maxBatchSize: Int
    /// Most key and value bytes in one batch: with large messages (whole orders) a batch of
    /// `maxBatchSize` would hold hundreds of megabytes at once, decoded, encoded again as
    /// outputs, in the outbox and in the changelog entry.
    let maxBatchBytes: Int
    let maxBatchWaitNanoseconds: UInt64
    /// The changelog topic of a `ChangelogProcessor`, `nil` for a plain processor.
    let changelogTopic: String?
    /// How long delivery waits may go on once a stop was requested.
    let shutdownTimeoutNanoseconds: UInt64

    init(maxBatchSize: Int, maxBatchBytes: Int = .max, maxBatchWaitNanoseconds: UInt64, changelogTopic: String?, shutdownTimeoutNanoseconds: UInt64) {
        self.maxBatchSize = maxBatchSize
        self.maxBatchBytes = maxBatchBytes
        self.maxBatchWaitNanoseconds = maxBatchWaitNanoseconds
        self.changelogTopic = changelogTopic
        self.shutdownTimeoutNanoseconds = shutdownTimeoutNanoseconds
    }

    /// Messages polled and not yet committed, in poll order.
    private(set) var batch: [KafkaMessage] = []
    /// Key and value bytes of `batch`.
    private(set) var batchBytes = 0
    /// When the batch in hand must be committed even if not full (uptime nanoseconds).
    private(set) var batchDeadline: UInt64 = 0
    /// Next offset to apply per owned partition; anything below it is a re-delivery.
    private(set) var next: [TopicPartition: Int64] = [:]
    /// Changelog chain head per source partition this member holds (changelog processors only);
    /// a key present with a `nil` head means restored, with no chain yet.
    private(set) var heads: [Int32: ChangelogHead?] = [:]
    /// Outputs of committed batches not yet acknowledged, oldest first. Producing overlaps the
    /// next batches; at most `maxInFlight` are outstanding before the loop waits.
    private(set) var inFlight: [Flight] = []
    /// The newest outbox row whose outputs are acknowledged in order: it and every older row of
    /// this owner are deleted by the next transaction (`outboxDeleted()` once done).
    private(set) var retiredOutboxSeq: Int64?

    struct Flight {
        var delivery: Delivery
        /// Outbox row holding these outputs.
        let seq: Int64
        /// Changelog entries, acknowledged before `messages` are produced (see `stages`).
        let first: [ProducerMessage]
        let messages: [ProducerMessage]
        var attempts = 0
    }

    /// Outputs to hand to the producer: `messages` once every one of `first` is acknowledged.
    struct Launch {
        let seq: Int64
        let first: [ProducerMessage]
        let messages: [ProducerMessage]
    }

    // MARK: Polling and batches

    /// Idle: 100 ms, so the stop flag is seen promptly. Filling a batch: what is left of its
    /// wait, rounded *up* to a whole millisecond: rounded down, the last sub-millisecond became
    /// `poll(0)` calls in a loop, spinning on the CPU until the deadline passed.
    func pollTimeoutMilliseconds(now: UInt64) -> Int32 {
        guard !batch.isEmpty else { return 100 }
        let left = max(0, Int64(batchDeadline) - Int64(now))
        return Int32((left + 999_999) / 1_000_000)
    }

    /// A message from a waiting poll; the first one of a batch starts its wait.
    mutating func received(_ message: KafkaMessage, now: UInt64) {
        if batch.isEmpty { batchDeadline = now + maxBatchWaitNanoseconds }
        batch.append(message)
        batchBytes += message.key.count + message.value.count
    }

    /// Whether more of what librdkafka already holds fits in the batch.
    var batchHasRoom: Bool { batch.count < maxBatchSize && batchBytes < maxBatchBytes }

    /// A message librdkafka already held (drained without waiting).
    mutating func buffered(_ message: KafkaMessage) {
        batch.append(message)
        batchBytes += message.key.count + message.value.count
    }

    enum PollAction: Equatable {
        /// The batch is full or its wait is over: commit it.
        case commitBatch
        /// Nothing in hand: retire what has been acknowledged.
        case retireDelivered
        /// Keep filling the batch.
        case poll
    }

    func afterPoll(now: UInt64) -> PollAction {
        if batch.isEmpty { return .retireDelivered }
        return !batchHasRoom || now >= batchDeadline ? .commitBatch : .poll
    }

    /// A batch to apply in one transaction, with each partition's next offset after it.
    struct Commit {
        var messages: [KafkaMessage]
        var offsets: [TopicPartition: Int64]
    }

    /// Takes the batch in hand, dropping re-deliveries (below `next`) and messages of partitions
    /// no longer held; `nil` when nothing is left to apply. The batch is emptied either way.
    mutating func takeBatch() -> Commit? {
        guard !batch.isEmpty else { return nil }
        // One pass. Messages come in runs from one partition, so look each run up once.
        var messages: [KafkaMessage] = []
        messages.reserveCapacity(batch.count)
        var offsets: [TopicPartition: Int64] = [:]
        var runPartition: (topic: String, partition: Int32)?
        var runNext: Int64?
        var runLast: Int64 = -1
        func closeRun() {
            if let run = runPartition, runLast >= 0 {
                let tp = TopicPartition(run.topic, run.partition)
                offsets[tp] = max(offsets[tp] ?? 0, runLast + 1)
            }
        }
        for m in batch {
            if runPartition?.partition != m.partition || runPartition?.topic != m.topic {
                closeRun()
                runPartition = (m.topic, m.partition)
                runNext = next[m.topicPartition]
                runLast = -1
            }
            guard let n = runNext, m.offset >= n else { continue }  // not ours (any more), or a re-delivery
            messages.append(m)
            runLast = max(runLast, m.offset)
        }
        closeRun()
        batch.removeAll(keepingCapacity: true)
        batchBytes = 0
        guard !messages.isEmpty else { return nil }
        return Commit(messages: messages, offsets: offsets)
    }

    /// The batch's transaction committed (its outbox delete included): its offsets are the
    /// partitions' next, its changelog entries their heads.
    mutating func committed(_ commit: Commit, heads newHeads: [Int32: ChangelogHead]) {
        for (p, h) in newHeads { heads[p] = h }
        retiredOutboxSeq = nil
        for (tp, o) in commit.offsets {
            next[tp] = o
            kafkaOffsetsOwed[tp] = o
        }
    }

    // MARK: Kafka's committed offsets

    /// How often committed offsets are written to Kafka. They serve lag tools only (KEDA,
    /// `kafka-consumer-groups`); SQLite is the truth, so one OffsetCommit a second replaces
    /// one per batch.
    static var kafkaCommitIntervalNanoseconds: UInt64 { 1_000_000_000 }
    /// Offsets committed in SQLite and not yet written to Kafka.
    private(set) var kafkaOffsetsOwed: [TopicPartition: Int64] = [:]
    private(set) var kafkaOffsetsWrittenAt: UInt64 = 0

    /// The offsets to write to Kafka now, if any: at most once per interval, or at once when
    /// `force`d (a revocation, a stop).
    mutating func offsetsForKafka(now: UInt64, force: Bool) -> [TopicPartition: Int64]? {
        guard !kafkaOffsetsOwed.isEmpty, force || now &- kafkaOffsetsWrittenAt >= Self.kafkaCommitIntervalNanoseconds else { return nil }
        kafkaOffsetsWrittenAt = now
        defer { kafkaOffsetsOwed.removeAll(keepingCapacity: true) }
        return kafkaOffsetsOwed
    }

    // MARK: Changelog entries

    /// Source partitions that get an entry in this batch: those it moved or changed, ascending.
    func changelogPartitions(offsets: [TopicPartition: Int64], deltas: [Int32: [UInt8]]) -> [Int32] {
        var partitions = Set(offsets.keys.map(\.partition))
        partitions.formUnion(deltas.keys)
        return partitions.sorted()
    }

    /// The next entry of partition `p`'s chain: linked to its current head, carrying every
    /// source topic's next offset for `p` after this batch (so a restore resumes exactly there).
    func changelogEntry(partition p: Int32, offsets: [TopicPartition: Int64], delta: [UInt8]?, writer: String, now: Int64) -> ChangelogEntry {
        let prev = heads[p] ?? nil
        var entry = ChangelogEntry()
        entry.writer = writer
        entry.seq = (prev?.seq ?? 0) + 1
        if let prev {
            entry.prevWriter = prev.writer
            entry.prevSeq = prev.seq
        }
        for (tp, o) in next where tp.partition == p { entry.nextOffsets[tp.topic] = o }
        for (tp, o) in offsets where tp.partition == p { entry.nextOffsets[tp.topic] = o }
        entry.payload = Data(delta ?? [])
        entry.writtenAtUs = now
        return entry
    }

    // MARK: Assignment and restore

    /// Source partitions among `partitions` whose state is not restored yet, ascending (state
    /// first: the start offsets are those the restored state was committed with).
    func partitionsToRestore(_ partitions: [TopicPartition]) -> [Int32] {
        Set(partitions.map(\.partition)).sorted().filter { heads[$0] == nil }
    }

    mutating func restored(partition p: Int32, head: ChangelogHead?) {
        heads[p] = .some(head)
    }

    /// Partitions gained, with the offsets SQLite holds for them (absent: from the beginning).
    mutating func assigned(_ partitions: [TopicPartition], stored: [TopicPartition: Int64]) {
        for tp in partitions { next[tp] = stored[tp] ?? 0 }
    }

    enum RestoreAction: Equatable {
        /// The local head is the chain's tip: nothing to do.
        case upToDate(ChangelogHead)
        /// The changelog is empty but the local store is not (a recreated topic?): keep it.
        case keepLocal(ChangelogHead)
        /// The local head is on the chain: apply the entries after it.
        case applyTail(ArraySlice<ChangelogEntry>, tip: ChangelogHead)
        /// The local copy is missing or diverged: drop the partition's rows, offsets and head,
        /// then apply the whole chain (possibly empty).
        case rebuild(ArraySlice<ChangelogEntry>, tip: ChangelogHead?)
        /// Rebuilding is needed but retention dropped the chain's start: restoring would miscount.
        case refuse(ChangelogStartDropped)

        /// The entries applied, in chain order.
        var entries: ArraySlice<ChangelogEntry> {
            switch self {
            case .applyTail(let e, _), .rebuild(let e, _): e
            default: []
            }
        }

        /// Entries whose outputs are published again (through the outbox): the last writer may
        /// have crashed with its disk between an entry's acknowledgement and its outputs'.
        var republished: ArraySlice<ChangelogEntry> { entries.suffix(ConsumerStateMachine.republishedEntries) }
    }

    /// How to bring source partition `p`'s local state (at `local`) to the changelog's committed
    /// chain (`ChangelogChain.longest`).
    func restoreAction(partition p: Int32, local: ChangelogHead?, chain: [ChangelogEntry]) -> RestoreAction {
        if let local, let i = chain.firstIndex(where: { $0.head == local }) {
            let tail = chain[(i + 1)...]
            guard let tip = chain.last?.head, !tail.isEmpty else { return .upToDate(local) }
            return .applyTail(tail, tip: tip)
        }
        if let local, chain.isEmpty { return .keepLocal(local) }
        if let first = chain.first, let missing = first.previous {
            return .refuse(ChangelogStartDropped(changelog: TopicPartition(changelogTopic ?? "", p), missing: missing))
        }
        return .rebuild(chain[...], tip: chain.last?.head)
    }

    /// Outputs a restore republishes, in their outbox row `seq`: no changelog entries to stage.
    func restoredLaunch(seq: Int64, messages: [ProducerMessage]) -> Launch {
        Launch(seq: seq, first: [], messages: messages)
    }

    // MARK: Revocation

    enum RevokeAction: Equatable {
        /// Commit the batch in hand (the revoked partitions' messages included) and settle every
        /// in-flight output: the new owner restores from the changelog and needs its last entries.
        case commitBatchAndSettle
        /// Lost: another member may own them already; their pending messages were dropped unwritten.
        case dropped
    }

    mutating func revoke(_ partitions: [TopicPartition], lost: Bool) -> RevokeAction {
        guard lost else { return .commitBatchAndSettle }
        dropPending(of: partitions)
        return .dropped
    }

    /// Drops the batch's messages of `partitions` (lost, or a commit on revoke that failed: the
    /// new owner re-applies them).
    mutating func dropPending(of partitions: [TopicPartition]) {
        let revoked = Set(partitions)
        batch.removeAll { revoked.contains($0.topicPartition) }
        batchBytes = batch.reduce(0) { $0 + $1.key.count + $1.value.count }
    }

    /// After a revocation: forgets the partitions' next offsets, and the heads of source
    /// partitions no longer held under any topic.
    mutating func forget(_ partitions: [TopicPartition]) {
        for tp in partitions { next[tp] = nil; kafkaOffsetsOwed[tp] = nil }
        let held = Set(next.keys.map(\.partition))
        for p in Set(partitions.map(\.partition)) where !held.contains(p) { heads[p] = nil }
    }

    // MARK: Outbox

    /// Splits outputs into the changelog entries and the rest. The entries go out first: an
    /// output someone has seen always belongs to a batch a restore will replay, so a member
    /// that lost its disk never re-decides a line differently from what was published.
    func stages(_ messages: [ProducerMessage]) -> (first: [ProducerMessage], rest: [ProducerMessage]) {
        guard let topic = changelogTopic else { return ([], messages) }
        var first: [ProducerMessage] = [], rest: [ProducerMessage] = []
        rest.reserveCapacity(messages.count)
        for m in messages { if m.topic == topic { first.append(m) } else { rest.append(m) } }
        return (first, rest)
    }

    /// A committed batch's outputs, in outbox row `seq`; `nil` when it has none.
    func launch(outputs: [ProducerMessage], seq: Int64) -> Launch? {
        guard !outputs.isEmpty else { return nil }
        let (first, rest) = stages(outputs)
        return Launch(seq: seq, first: first, messages: rest)
    }

    /// After a crash: outputs committed but maybe never published go out again, every row left
    /// in this owner's outbox as one flight (retiring it deletes them all), the changelog entries
    /// first. `recreating` adds the outputs the rows leave out (`derivedOutputTopic`).
    func recovery(of rows: [ConsumerStore.OutboxRow], recreating: ([ProducerMessage]) throws -> [ProducerMessage]) rethrows -> Launch? {
        guard let last = rows.last?.seq else { return nil }
        var messages: [ProducerMessage] = []
        for row in rows { messages += row.messages }
        messages += try recreating(messages)
        let (first, rest) = stages(messages)
        return Launch(seq: last, first: first, messages: rest)
    }

    /// Outputs handed to the producer.
    mutating func track(_ launch: Launch, delivery: Delivery) {
        inFlight.append(Flight(delivery: delivery, seq: launch.seq, first: launch.first, messages: launch.messages))
    }

    enum SettleAction {
        /// Nothing to wait for now.
        case done
        /// Wait for the oldest flight's delivery reports, then report `delivered()` or `deliveryFailed`.
        case wait(Delivery)
    }

    /// Whether to wait for the oldest flight: when it is complete anyway, when told to wait for
    /// all (revoke, stop), or when more than `maxInFlight` are outstanding. Only the oldest is
    /// ever retired, so a failed older flight holds back every later one.
    func settleAction(waitForAll: Bool, isComplete: (Delivery) -> Bool) -> SettleAction {
        guard let oldest = inFlight.first else { return .done }
        if !isComplete(oldest.delivery) && !waitForAll && inFlight.count <= Self.maxInFlight { return .done }
        return .wait(oldest.delivery)
    }

    /// The oldest flight is acknowledged: its outbox row (and every older one) is retired.
    mutating func delivered() {
        retiredOutboxSeq = inFlight.removeFirst().seq
    }

    enum FailureAction {
        /// Stopping: leave it, and everything after it, in the outbox; the next start republishes them.
        case leaveInOutbox(attempt: Int)
        /// Publish the oldest flight again after `delayMicroseconds`, then report `republished`.
        case republish(first: [ProducerMessage], messages: [ProducerMessage], attempt: Int, delayMicroseconds: UInt32)
    }

    /// The oldest flight's delivery failed: it stays in the outbox and is published again until
    /// acknowledged (with a growing pause, up to 5 s), unless the consumer is stopping.
    mutating func deliveryFailed(stopping: Bool) -> FailureAction {
        inFlight[0].attempts += 1
        let attempt = inFlight[0].attempts
        if stopping {
            inFlight.removeAll()
            return .leaveInOutbox(attempt: attempt)
        }
        return .republish(first: inFlight[0].first, messages: inFlight[0].messages, attempt: attempt,
                          delayMicroseconds: UInt32(min(5_000_000, 200_000 * attempt)))
    }

    mutating func republished(_ delivery: Delivery) {
        inFlight[0].delivery = delivery
    }

    /// Stops tracking every flight without retiring it: its outbox rows stay for the next start.
    mutating func leaveInFlightInOutbox() {
        inFlight.removeAll()
    }

    /// The retired rows were deleted outside a batch (`retiredOutboxSeq` is spent).
    mutating func outboxDeleted() {
        retiredOutboxSeq = nil
    }

    // MARK: Shutdown

    /// Whether delivery waits must give up: a stop was requested at `stopRequestedAt` (uptime
    /// nanoseconds) and the shutdown timeout has passed since.
    func shutdownTimedOut(now: UInt64, stopRequestedAt: UInt64?) -> Bool {
        guard let stopRequestedAt else { return false }
        return now >= stopRequestedAt &+ shutdownTimeoutNanoseconds
    }
}

/// A partition needs a rebuild from its changelog, but retention dropped the chain's start:
/// the restore would miss those batches' rows, so the consumer refuses to start.
struct ChangelogStartDropped: Error, Equatable, CustomStringConvertible {
    let changelog: TopicPartition
    /// The entry the chain's first surviving entry follows.
    let missing: ChangelogHead

    var description: String {
        "changelog \(changelog) no longer holds the start of its chain (its first entry follows \(missing), which is gone): "
            + "partition \(changelog.partition) cannot be restored without a wrong count. Keep the changelog's retention unlimited "
            + "(deploy/kafka/topics.sh) and restore the instance's disk from a backup."
    }
}
