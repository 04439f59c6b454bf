import Foundation
import GRDB
import Kafka
import Logging
import Model

/// Keeps a copy of other consumers' state, every partition, by applying their changelogs: the
/// store behind a read model that any number of views can ask, built from Kafka alone.
///
/// Each source is a `ChangelogProcessor` (for example dispatch's order book) whose changelog
/// this processor consumes; entries are applied through the processor's own `restore`, so the
/// copy has the source's schema and the source's read API works on it. The copy follows each
/// partition's committed chain: an entry that extends the applied head is applied, one seen
/// before (a republished outbox) is skipped, and any other (a fork left by a member that lost
/// the partition without knowing it) makes the partition be rebuilt from its whole changelog
/// with `ChangelogChain.longest`, exactly as a restoring member would. The copy's heads and
/// the sources' next offsets are stored under the source's group, as a member stores them.
///
/// A replica must hold every partition of its changelogs: each replica instance is its own
/// consumer group.
public final class ChangelogReplica: BatchProcessor {
    public struct Source {
        /// The group whose state this is (its heads and positions are stored under it).
        public var group: String
        public var processor: any ChangelogProcessor

        public init(group: String, processor: any ChangelogProcessor) {
            self.group = group
            self.processor = processor
        }
    }

    let sources: [String: (store: ConsumerStore, processor: any ChangelogProcessor)]
    let kafka: KafkaConfiguration
    let logger: Logger
    var reader: KafkaPartitionReader?
    /// Entries a partition keeps marked as seen behind its head (duplicates and forks come from
    /// the last few batches of a writer).
    static let seenWindow: Int64 = 10_000

    public init(sources: [Source], kafka: KafkaConfiguration, logger: Logger) {
        var byTopic: [String: (ConsumerStore, any ChangelogProcessor)] = [:]
        for s in sources { byTopic[s.processor.changelogTopic] = (ConsumerStore(group: s.group, owner: "\(s.group)/replica"), s.processor) }
        self.sources = byTopic
        self.kafka = kafka
        self.logger = logger
    }

    /// The changelog topics this replica consumes (subscribe to the first, the others as companions:
    /// they are co-partitioned by source partition number).
    public var topics: [String] { sources.keys.sorted() }

    public func prepare(_ db: Database) throws {
        for (_, source) in sources { try source.processor.prepare(db) }
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS replica_seen (
                group_id TEXT NOT NULL, partition INTEGER NOT NULL, writer TEXT NOT NULL, seq INTEGER NOT NULL,
                PRIMARY KEY (group_id, partition, seq, writer)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS replica_parts (
                group_id TEXT NOT NULL, partition INTEGER NOT NULL, writer TEXT NOT NULL, seq INTEGER NOT NULL,
                part INTEGER NOT NULL, entry BLOB NOT NULL,
                PRIMARY KEY (group_id, partition, writer, seq, part)) WITHOUT ROWID;
            """)
    }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        var touched: Set<TopicPartition> = []
        for message in messages {
            guard let source = sources[message.topic] else {
                output.deadLetter(message, error: "the replica does not consume topic \(message.topic)")
                continue
            }
            guard let part = try? ChangelogEntry(serializedBytes: message.value) else {
                output.deadLetter(message, error: "not a ChangelogEntry")
                continue
            }
            guard let entry = try assemble(part, partition: message.partition, store: source.store, db: db) else { continue }
            let p = message.partition
            if try isSeen(entry.head, partition: p, store: source.store, db: db) { continue }
            let head = try source.store.head(partition: p, db)
            if entry.previous == head {
                var discarded = BatchOutput(group: source.store.group)
                try source.processor.restore([UInt8](entry.payload), partition: p, db: db, output: &discarded)
                try source.store.saveOffsets(entry.nextOffsets, partition: p, at: entry.writtenAtUs, db)
                try source.store.saveHead(entry.head, partition: p, db)
                try markSeen([entry.head], partition: p, store: source.store, db: db)
            } else {
                try rebuild(partition: p, topic: message.topic, source: source, db: db)
            }
            touched.insert(message.topicPartition)
        }
        // Forget what lies far behind each touched partition's head.
        for tp in touched {
            guard let source = sources[tp.topic], let head = try source.store.head(partition: tp.partition, db) else { continue }
            try db.cachedStatement(sql: "DELETE FROM replica_seen WHERE group_id = ? AND partition = ? AND seq < ?")
                .execute(arguments: [source.store.group, tp.partition, head.seq - Self.seenWindow])
        }
    }

    /// The whole entry once every part of it is in (parts wait in `replica_parts`).
    func assemble(_ part: ChangelogEntry, partition p: Int32, store: ConsumerStore, db: Database) throws -> ChangelogEntry? {
        guard part.parts > 1 else { return part }
        try db.execute(sql: "INSERT OR IGNORE INTO replica_parts (group_id, partition, writer, seq, part, entry) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [store.group, p, part.writer, part.seq, part.part, try part.serializedData()])
        let stored = try Data.fetchAll(db, sql: "SELECT entry FROM replica_parts WHERE group_id = ? AND partition = ? AND writer = ? AND seq = ? ORDER BY part",
                                       arguments: [store.group, p, part.writer, part.seq])
        guard stored.count == Int(part.parts) else { return nil }
        try db.execute(sql: "DELETE FROM replica_parts WHERE group_id = ? AND partition = ? AND writer = ? AND seq = ?",
                       arguments: [store.group, p, part.writer, part.seq])
        return ChangelogChain.assemble(try stored.map { try ChangelogEntry(serializedBytes: [UInt8]($0)) }).first
    }

    func isSeen(_ head: ChangelogHead, partition p: Int32, store: ConsumerStore, db: Database) throws -> Bool {
        try Bool.fetchOne(db.cachedStatement(sql: "SELECT 1 FROM replica_seen WHERE group_id = ? AND partition = ? AND seq = ? AND writer = ?"),
                          arguments: [store.group, p, head.seq, head.writer]) == true
    }

    func markSeen(_ heads: [ChangelogHead], partition p: Int32, store: ConsumerStore, db: Database) throws {
        let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO replica_seen (group_id, partition, writer, seq) VALUES (?, ?, ?, ?)")
        for h in heads { try insert.execute(arguments: [store.group, p, h.writer, h.seq]) }
    }

    /// Rebuilds source partition `p` from its whole changelog, as a restoring member would. Every
    /// entry read is marked seen, so the consumer skips them when it reaches them.
    func rebuild(partition p: Int32, topic: String, source: (store: ConsumerStore, processor: any ChangelogProcessor), db: Database) throws {
        if reader == nil { reader = try KafkaPartitionReader(configuration: kafka, logger: logger) }
        var records: [ChangelogEntry] = []
        try reader!.read(TopicPartition(topic, p)) { m in records.append(try ChangelogEntry(serializedBytes: m.value)) }
        let entries = ChangelogChain.assemble(records)
        let chain = ChangelogChain.longest(entries)
        if let missing = chain.first?.previous {
            logger.error("the changelog no longer holds the start of its chain: the read model's copy of this partition misses those batches", metadata: [
                "changelog": "\(topic)[\(p)]", "missing": "\(missing)",
            ])
        }
        logger.warning("changelog entry off the applied chain (a fork or a gap): rebuilding the partition's copy from the changelog", metadata: [
            "changelog": "\(topic)[\(p)]", "entries": "\(chain.count)",
        ])
        try source.processor.dropPartition(p, db: db)
        try source.store.forget(partition: p, db)
        for entry in chain {
            var discarded = BatchOutput(group: source.store.group)
            try source.processor.restore([UInt8](entry.payload), partition: p, db: db, output: &discarded)
            try source.store.saveOffsets(entry.nextOffsets, partition: p, at: entry.writtenAtUs, db)
        }
        if let tip = chain.last?.head { try source.store.saveHead(tip, partition: p, db) }
        try markSeen(entries.map(\.head), partition: p, store: source.store, db: db)
        try db.execute(sql: "DELETE FROM replica_parts WHERE group_id = ? AND partition = ?", arguments: [source.store.group, p])
    }
}
