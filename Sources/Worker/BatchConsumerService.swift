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
    /// How long a batch may wait to fill after its first message. Default 5 ms: the bound on the
    /// latency batching adds.
    public var maxBatchWaitMilliseconds: Int

    public init(kafka: KafkaConfiguration, groupID: String, topics: [String], companionTopics: [String] = [], instanceID: String = "default", maxBatchSize: Int = 50_000, maxBatchWaitMilliseconds: Int = 5) {
        self.companionTopics = companionTopics
        self.kafka = kafka
        self.groupID = groupID
        self.topics = topics
        self.instanceID = instanceID
        self.maxBatchSize = maxBatchSize
        self.maxBatchWaitMilliseconds = maxBatchWaitMilliseconds
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
/// graceful shutdown (SIGTERM) it finishes the batch in hand, commits, waits for its outputs'
/// delivery reports and leaves the group.
public final class BatchConsumerService: Service, Sendable {
    public let configuration: BatchConsumerConfiguration
    private let store: StateStore
    private let producer: KafkaProducer
    private let makeProcessor: @Sendable () throws -> any BatchProcessor
    private let logger: Logger
    private let stop = StopFlag()
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

    public func run() async throws {
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
            self.stop.set()
        }
    }

    /// The thread-confined part: owns the consumer, the pending batch and the in-flight outputs.
    private final class ConsumerLoop: KafkaRebalanceDelegate {
        let service: BatchConsumerService
        let processor: any BatchProcessor
        var consumer: KafkaConsumer?
        var batch: [KafkaMessage] = []
        /// Next offset to apply per owned partition; anything below it is a re-delivery.
        var next: [TopicPartition: Int64] = [:]
        /// Outputs of committed batches not yet acknowledged, oldest first. Producing overlaps the
        /// next batches; at most `maxInFlight` are outstanding before the loop waits.
        var inFlight: [Flight] = []
        let maxInFlight = 4
        struct Flight {
            var group: DeliveryGroup
            let seq: Int64
            /// Changelog entries, acknowledged before `messages` are produced (see `stages`).
            let first: [ProducerMessage]
            let messages: [ProducerMessage]
            var attempts = 0
        }

        /// Splits outputs into the changelog entries and the rest. The entries go out first: an
        /// output someone has seen always belongs to a batch a restore will replay, so a member
        /// that lost its disk never re-decides a line differently from what was published.
        func stages(_ messages: [ProducerMessage]) -> (first: [ProducerMessage], rest: [ProducerMessage]) {
            guard let topic = (processor as? any ChangelogProcessor)?.changelogTopic else { return ([], messages) }
            var first: [ProducerMessage] = [], rest: [ProducerMessage] = []
            rest.reserveCapacity(messages.count)
            for m in messages { if m.topic == topic { first.append(m) } else { rest.append(m) } }
            return (first, rest)
        }
        /// Changelog chain head per source partition this member holds (changelog processors only).
        var heads: [Int32: ChangelogHead?] = [:]
        var changelogReader: KafkaPartitionReader?
        var restoredOutputs: [(Int64, [ProducerMessage])] = []
        /// Entries at a restored chain's tip whose outputs are published again: more than the
        /// batches a writer can have in flight (`maxInFlight`) plus the one it was committing.
        static let republishedEntries = 8
        var group: String { service.configuration.groupID }
        /// Owner of this member's outbox rows.
        var owner: String { "\(service.configuration.groupID)/\(service.configuration.instanceID)" }
        var log: Logger { service.logger }

        init(service: BatchConsumerService, processor: any BatchProcessor) throws {
            self.service = service
            self.processor = processor
            try service.store.database.write { db in try processor.prepare(db) }
        }

        func run() throws {
            try republishOutbox()
            let consumer = try KafkaConsumer(
                configuration: service.configuration.kafka, groupID: group,
                topics: service.configuration.topics, companions: service.configuration.companionTopics, delegate: self, logger: log)
            self.consumer = consumer
            let maxBatch = service.configuration.maxBatchSize
            let maxWaitNs = UInt64(service.configuration.maxBatchWaitMilliseconds) * 1_000_000
            var deadline: UInt64 = 0
            defer { self.consumer = nil }
            while !service.stop.isSet {
                let now = DispatchTime.now().uptimeNanoseconds
                let timeout: Int32 = batch.isEmpty ? 100 : Int32(max(0, Int64(deadline) - Int64(now)) / 1_000_000)
                if let message = try consumer.poll(timeoutMilliseconds: timeout) {
                    if batch.isEmpty { deadline = DispatchTime.now().uptimeNanoseconds + maxWaitNs }
                    batch.append(message)
                    // Drain what librdkafka already holds without waiting.
                    while batch.count < maxBatch, let more = try consumer.poll(timeoutMilliseconds: 0) {
                        batch.append(more)
                    }
                }
                if !batch.isEmpty && (batch.count >= maxBatch || DispatchTime.now().uptimeNanoseconds >= deadline) {
                    try flush()
                } else if batch.isEmpty {
                    try retireDelivered()
                }
                publishPositions(force: false)
            }
            try flush()
            consumer.close()
            try settleInFlight(waitForAll: true)
            try deleteRetiredOutbox()
            log.info("consumer stopped", metadata: ["group": "\(group)"])
        }

        // MARK: Rebalance (called inside poll, on this thread)

        func partitionsAssigned(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
            if let changelogged = processor as? any ChangelogProcessor {
                // State first: the start offsets are the ones the restored state was committed with.
                for p in Set(partitions.map { $0.partition }).sorted() where heads[p] == nil {
                    heads[p] = try restore(partition: p, changelogged)
                }
            }
            let stored = try service.store.offsets(group: group, for: partitions)
            for tp in partitions { next[tp] = stored[tp] ?? 0 }
            publishPositions(force: true)
            log.info("start offsets loaded from SQLite", metadata: ["offsets": "\(stored.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ","))"])
            return stored
        }

        func partitionsRevoked(_ partitions: [TopicPartition], lost: Bool) {
            let revoked = Set(partitions)
            if lost {
                // Another member may own them already: drop, never write, their pending messages.
                batch.removeAll { revoked.contains($0.topicPartition) }
            } else {
                do {
                    try flush()
                    // The new owner restores from the changelog: it must hold this member's last entries.
                    try settleInFlight(waitForAll: true)
                } catch {
                    log.error("could not commit the batch in hand on revoke; the new owner re-applies it", metadata: ["error": "\(error)"])
                    batch.removeAll { revoked.contains($0.topicPartition) }
                }
            }
            for tp in partitions { next[tp] = nil }
            let held = Set(next.keys.map(\.partition))
            for p in Set(partitions.map(\.partition)) where !held.contains(p) { heads[p] = nil }
            publishPositions(force: true)
        }

        // MARK: Changelog

        /// Brings source partition `p`'s local state up to the changelog's committed chain:
        /// nothing to do when the local head is the chain's tip, the missing tail when it is on
        /// the chain, a rebuild from scratch when the local copy is missing or diverged.
        func restore(partition p: Int32, _ changelogged: any ChangelogProcessor) throws -> ChangelogHead? {
            let started = DispatchTime.now().uptimeNanoseconds
            if changelogReader == nil {
                changelogReader = try KafkaPartitionReader(configuration: service.configuration.kafka, logger: log)
            }
            var entries: [ChangelogEntry] = []
            let tp = TopicPartition(changelogged.changelogTopic, p)
            try changelogReader!.read(tp) { m in entries.append(try ChangelogEntry(serializedBytes: m.value)) }
            let chain = ChangelogChain.longest(ChangelogChain.assemble(entries))
            let local: ChangelogHead? = try service.store.database.read { [group] db in
                try Row.fetchOne(db, sql: "SELECT writer, seq FROM changelog_heads WHERE group_id = ? AND partition = ?", arguments: [group, p])
                    .map { ChangelogHead(writer: $0[0], seq: $0[1]) }
            }
            let apply: ArraySlice<ChangelogEntry>
            let fromScratch: Bool
            if let local, let i = chain.firstIndex(where: { $0.head == local }) {
                apply = chain[(i + 1)...]
                fromScratch = false
            } else if let local, chain.isEmpty {
                log.warning("changelog \(tp) is empty but local state is at \(local): keeping the local state (was the topic recreated?)")
                return local
            } else {
                if let local { log.warning("local state of partition \(p) (\(local)) is not on the changelog's chain: rebuilding it from the changelog") }
                apply = chain[...]
                fromScratch = true
            }
            guard fromScratch || !apply.isEmpty else { return local }
            if fromScratch, let first = chain.first, let missing = first.previous {
                // Retention dropped the chain's start: a restore would miss those batches' rows.
                throw ConfigurationError(
                    "changelog \(tp) no longer holds the start of its chain (its first entry follows \(missing), which is gone): "
                        + "partition \(p) cannot be restored without a wrong count. Keep the changelog's retention unlimited "
                        + "(deploy/kafka/topics.sh) and restore the instance's disk from a backup.")
            }
            let tip = chain.last?.head
            try service.store.database.write { [group] db in
                if fromScratch {
                    try changelogged.dropPartition(p, db: db)
                    try db.execute(sql: "DELETE FROM consumer_offsets WHERE group_id = ? AND partition = ?", arguments: [group, p])
                    try db.execute(sql: "DELETE FROM changelog_heads WHERE group_id = ? AND partition = ?", arguments: [group, p])
                }
                let upsert = try db.cachedStatement(sql: """
                    INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at_us) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at_us = excluded.updated_at_us
                    """)
                let now = Clock.nowMicros()
                for entry in apply {
                    try changelogged.restore([UInt8](entry.payload), partition: p, db: db)
                    for (topic, offset) in entry.nextOffsets {
                        try upsert.execute(arguments: [group, topic, p, offset, now])
                    }
                }
                if let tip {
                    try db.execute(sql: """
                        INSERT INTO changelog_heads (group_id, partition, writer, seq) VALUES (?, ?, ?, ?)
                        ON CONFLICT (group_id, partition) DO UPDATE SET writer = excluded.writer, seq = excluded.seq
                        """, arguments: [group, p, tip.writer, tip.seq])
                }
                // The last writer may have crashed with its disk between the entry's acknowledgement and
                // its outputs' publication (at most its in-flight batches): publish those outputs again,
                // through this member's outbox so a crash here does not lose them either.
                var output = BatchOutput(group: group)
                for entry in apply.suffix(Self.republishedEntries) {
                    try changelogged.outputs(ofRestored: [UInt8](entry.payload), partition: p, output: &output)
                }
                if !output.messages.isEmpty {
                    try db.execute(sql: "INSERT INTO outbox (owner, messages) VALUES (?, ?)", arguments: [owner, Data(OutboxFrame.encode(output.messages))])
                    restoredOutputs.append((db.lastInsertedRowID, output.messages))
                }
            }
            for (seq, messages) in restoredOutputs {
                inFlight.append(Flight(group: service.producer.enqueueInBackground(messages), seq: seq, first: [], messages: messages))
            }
            restoredOutputs.removeAll()
            log.info("partition restored from the changelog", metadata: [
                "partition": "\(tp)", "entries": "\(apply.count)", "of": "\(entries.count)", "fromScratch": "\(fromScratch)",
                "tip": "\(tip.map(\.description) ?? "-")", "ms": "\((DispatchTime.now().uptimeNanoseconds - started) / 1_000_000)",
            ])
            return tip
        }

        /// Wraps each touched partition's delta in the next entry of its chain (inside the batch's
        /// transaction, so heads, state and offsets move together) and adds it to the outputs.
        func appendChangelog(_ changelogged: any ChangelogProcessor, offsets: [TopicPartition: Int64], output: inout BatchOutput, db: Database) throws -> [Int32: ChangelogHead] {
            var partitions = Set(offsets.keys.map(\.partition))
            partitions.formUnion(output.changelog.keys)
            var newHeads: [Int32: ChangelogHead] = [:]
            let now = Clock.nowMicros()
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO changelog_heads (group_id, partition, writer, seq) VALUES (?, ?, ?, ?)
                ON CONFLICT (group_id, partition) DO UPDATE SET writer = excluded.writer, seq = excluded.seq
                """)
            for p in partitions.sorted() {
                let prev = heads[p] ?? nil
                var entry = ChangelogEntry()
                entry.writer = owner
                entry.seq = (prev?.seq ?? 0) + 1
                if let prev {
                    entry.prevWriter = prev.writer
                    entry.prevSeq = prev.seq
                }
                for (tp, o) in next where tp.partition == p { entry.nextOffsets[tp.topic] = o }
                for (tp, o) in offsets where tp.partition == p { entry.nextOffsets[tp.topic] = o }
                entry.payload = Data(output.changelog[p] ?? [])
                entry.writtenAtUs = now
                for part in ChangelogChain.split(entry) {
                    output.messages.append(ProducerMessage(topic: changelogged.changelogTopic, key: String(p), value: try part.serializedBytes(), partition: p))
                }
                try upsert.execute(arguments: [group, p, owner, entry.seq])
                newHeads[p] = entry.head
            }
            return newHeads
        }

        /// Publishes each owned partition's position and lag (statistics and metrics), at most
        /// once a second unless forced: librdkafka's cached watermarks, no broker round trip.
        var positionsPublishedAt: UInt64 = 0
        func publishPositions(force: Bool) {
            let now = DispatchTime.now().uptimeNanoseconds
            guard force || now &- positionsPublishedAt >= 1_000_000_000 else { return }
            positionsPublishedAt = now
            var positions: [TopicPartition: PartitionPosition] = [:]
            for (tp, n) in next { positions[tp] = PartitionPosition(next: n, highWatermark: consumer?.cachedHighWatermark(tp)) }
            service.stats.withLock { $0.partitions = positions }
            service.metrics.positions(positions)
        }

        // MARK: Batches

        func flush() throws {
            guard !batch.isEmpty else { return }
            // One pass: drop re-deliveries and partitions no longer ours, and find each partition's
            // next offset. Messages come in runs from one partition, so look each run up once.
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
            guard !messages.isEmpty else { return }
            // Acknowledged outputs' outbox rows are deleted in this batch's transaction.
            let t0 = DispatchTime.now().uptimeNanoseconds
            try settleInFlight(waitForAll: false)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let retiredSeq = retiredOutboxSeq
            var attempt = 0
            while true {
                do {
                    let (output, seq, newHeads) = try commit(messages, offsets: offsets, retire: retiredSeq)
                    for (p, h) in newHeads { heads[p] = h }
                    let t2 = DispatchTime.now().uptimeNanoseconds
                    if log.logLevel <= .debug {
                        log.debug("batch committed", metadata: [
                            "messages": "\(messages.count)", "outputs": "\(output.messages.count)",
                            "waitDeliveryMs": "\((t1 - t0) / 1_000_000)", "commitMs": "\((t2 - t1) / 1_000_000)",
                            "applyMs": "\(phaseMs.apply)", "changelogMs": "\(phaseMs.changelog)", "offsetsAndOutboxMs": "\(phaseMs.outbox)",
                        ])
                    }
                    retiredOutboxSeq = nil
                    for (tp, o) in offsets { next[tp] = o }
                    consumer?.commitAsync(offsets)
                    if !output.messages.isEmpty {
                        let (first, rest) = stages(output.messages)
                        inFlight.append(Flight(group: service.producer.enqueueInBackground(rest, after: first), seq: seq, first: first, messages: rest))
                    }
                    let committedAt = Clock.nowMicros()
                    service.stats.withLock {
                        $0.batches += 1
                        $0.messages += messages.count
                        $0.deadLetters += output.deadLetters
                        $0.lastBatchAtUs = committedAt
                    }
                    service.metrics.batchCommitted(messages: messages.count, output: output, commitNanoseconds: t2 - t1, at: committedAt)
                    return
                } catch let error as DatabaseError where attempt < 20 && (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED) {
                    attempt += 1
                    log.warning("SQLite busy, retrying batch", metadata: ["attempt": "\(attempt)"])
                    usleep(UInt32(min(1_000_000, 10_000 * attempt)))
                }
            }
        }

        var retiredOutboxSeq: Int64?
        /// Where the last batch's transaction spent its time (debug log).
        var phaseMs: (apply: UInt64, changelog: UInt64, outbox: UInt64) = (0, 0, 0)

        func commit(_ messages: [KafkaMessage], offsets: [TopicPartition: Int64], retire: Int64?) throws -> (BatchOutput, Int64, [Int32: ChangelogHead]) {
            try service.store.database.writeWithoutTransaction { [group, owner, processor] db in
                var result: (BatchOutput, Int64, [Int32: ChangelogHead])?
                try db.inTransaction(.immediate) {
                    var output = BatchOutput(group: group)
                    let started = DispatchTime.now().uptimeNanoseconds
                    try processor.apply(messages, db: db, output: &output)
                    let applied = DispatchTime.now().uptimeNanoseconds
                    var newHeads: [Int32: ChangelogHead] = [:]
                    if let changelogged = processor as? any ChangelogProcessor {
                        newHeads = try appendChangelog(changelogged, offsets: offsets, output: &output, db: db)
                    }
                    let changelogged = DispatchTime.now().uptimeNanoseconds
                    let now = Clock.nowMicros()
                    let upsert = try db.cachedStatement(sql: """
                        INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at_us) VALUES (?, ?, ?, ?, ?)
                        ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at_us = excluded.updated_at_us
                        """)
                    for (tp, o) in offsets {
                        try upsert.execute(arguments: [group, tp.topic, tp.partition, o, now])
                    }
                    if let retire {
                        try db.execute(sql: "DELETE FROM outbox WHERE seq <= ? AND owner = ?", arguments: [retire, owner])
                    }
                    var seq: Int64 = 0
                    if !output.messages.isEmpty {
                        let frame = OutboxFrame.encode(output.messages, skipping: (processor as? any ChangelogProcessor)?.derivedOutputTopic)
                        let insert = try db.cachedStatement(sql: "INSERT INTO outbox (owner, messages) VALUES (?, ?)")
                        try insert.setUncheckedArguments([owner])
                        // Bind the frame's bytes in place: one copy fewer of megabytes per batch.
                        let rc = frame.withUnsafeBytes { buf in
                            sqlite3_bind_blob(insert.sqliteStatement, 2, buf.baseAddress, Int32(buf.count), nil) == SQLITE_OK
                                ? sqlite3_step(insert.sqliteStatement) : sqlite3_errcode(db.sqliteConnection)
                        }
                        sqlite3_reset(insert.sqliteStatement)
                        guard rc == SQLITE_DONE else {
                            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: "INSERT INTO outbox")
                        }
                        seq = db.lastInsertedRowID
                    }
                    phaseMs = ((applied - started) / 1_000_000, (changelogged - applied) / 1_000_000, (DispatchTime.now().uptimeNanoseconds - changelogged) / 1_000_000)
                    result = (output, seq, newHeads)
                    return .commit
                }
                return result!
            }
        }

        /// Retires the acknowledged flights at the head of the queue (their outbox rows go in the
        /// next transaction), waiting only when told to or when too many are outstanding. A failed
        /// flight is published again until acknowledged; it stays in the outbox meanwhile, and
        /// nothing after it is retired before it.
        func settleInFlight(waitForAll: Bool) throws {
            while !inFlight.isEmpty {
                if !inFlight[0].group.isComplete && !waitForAll && inFlight.count <= maxInFlight { return }
                do {
                    try inFlight[0].group.wait()
                } catch {
                    inFlight[0].attempts += 1
                    let attempt = inFlight[0].attempts
                    log.error("publishing outputs failed, retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                    if service.stop.isSet {
                        // Stopping: left in the outbox (with everything after it), republished at
                        // the next start, rather than holding the shutdown for more timeouts.
                        inFlight.removeAll()
                        return
                    }
                    usleep(UInt32(min(5_000_000, 200_000 * attempt)))
                    inFlight[0].group = try service.producer.enqueue(inFlight[0].messages, after: inFlight[0].first)
                    continue
                }
                retiredOutboxSeq = inFlight.removeFirst().seq
            }
        }

        /// Deletes the retired outbox rows now (when no batch is coming to carry the delete).
        func deleteRetiredOutbox() throws {
            guard let seq = retiredOutboxSeq else { return }
            try service.store.database.write { db in
                try db.execute(sql: "DELETE FROM outbox WHERE seq <= ? AND owner = ?", arguments: [seq, self.owner])
            }
            retiredOutboxSeq = nil
        }

        /// Between batches: retire what has been acknowledged.
        func retireDelivered() throws {
            try settleInFlight(waitForAll: false)
            try deleteRetiredOutbox()
        }

        /// After a crash: outputs committed but maybe never published go out again.
        /// The outputs a changelog processor's outbox rows leave out, recreated from their entries.
        func recreatedOutputs(of messages: [ProducerMessage]) throws -> [ProducerMessage] {
            guard let changelogged = processor as? any ChangelogProcessor, changelogged.derivedOutputTopic != nil else { return [] }
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

        func republishOutbox() throws {
            let rows = try service.store.database.read { db in
                try Row.fetchAll(db, sql: "SELECT seq, messages FROM outbox WHERE owner = ? ORDER BY seq", arguments: [owner])
            }
            guard !rows.isEmpty else { return }
            var messages: [ProducerMessage] = []
            var last: Int64 = 0
            for row in rows {
                let data: Data = row[1]
                messages += try OutboxFrame.decode(Array(data))
                last = row[0]
            }
            messages += try recreatedOutputs(of: messages)
            log.info("republishing outbox left by the previous run", metadata: ["rows": "\(rows.count)", "messages": "\(messages.count)"])
            let (first, rest) = stages(messages)
            inFlight.append(Flight(group: try service.producer.enqueue(rest, after: first), seq: last, first: first, messages: rest))
            try settleInFlight(waitForAll: true)
            try deleteRetiredOutbox()
        }
    }
}
