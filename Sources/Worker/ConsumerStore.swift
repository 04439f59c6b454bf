import Foundation
import GRDB
import GRDBSQLite
import Kafka

/// The SQL of a consumer's own tables (`consumer_offsets`, `changelog_heads`, `outbox`, created
/// by `StateStore`), in one place. Every call takes the caller's `Database`, so a batch's
/// state, offsets, head and outbox row still change in the one transaction the caller opened.
struct ConsumerStore {
    /// Consumer group whose offsets and heads these are.
    let group: String
    /// Owner of the outbox rows this member writes, deletes and republishes (`group/instance`),
    /// so instances sharing a database never touch each other's outputs.
    let owner: String

    /// One outbox row: a committed batch's outputs.
    struct OutboxRow {
        let seq: Int64
        let messages: [ProducerMessage]
    }

    // MARK: consumer_offsets

    private static let upsertOffset = """
        INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at_us) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at_us = excluded.updated_at_us
        """

    /// Records each partition's next offset (a batch's).
    func saveOffsets(_ offsets: [TopicPartition: Int64], at now: Int64, _ db: Database) throws {
        let upsert = try db.cachedStatement(sql: Self.upsertOffset)
        for (tp, o) in offsets {
            try upsert.execute(arguments: [group, tp.topic, tp.partition, o, now])
        }
    }

    /// Records source partition `p`'s next offset per topic (a restored changelog entry's).
    func saveOffsets(_ offsets: [String: Int64], partition p: Int32, at now: Int64, _ db: Database) throws {
        let upsert = try db.cachedStatement(sql: Self.upsertOffset)
        for (topic, o) in offsets {
            try upsert.execute(arguments: [group, topic, p, o, now])
        }
    }

    // MARK: changelog_heads

    /// The head of source partition `p`'s chain the local state was committed with.
    func head(partition p: Int32, _ db: Database) throws -> ChangelogHead? {
        // Read per changelog entry by the read model: prepared once per connection.
        try Row.fetchOne(db.cachedStatement(sql: "SELECT writer, seq FROM changelog_heads WHERE group_id = ? AND partition = ?"), arguments: [group, p])
            .map { ChangelogHead(writer: $0[0], seq: $0[1]) }
    }

    func saveHead(_ head: ChangelogHead, partition p: Int32, _ db: Database) throws {
        try db.cachedStatement(sql: """
            INSERT INTO changelog_heads (group_id, partition, writer, seq) VALUES (?, ?, ?, ?)
            ON CONFLICT (group_id, partition) DO UPDATE SET writer = excluded.writer, seq = excluded.seq
            """).execute(arguments: [group, p, head.writer, head.seq])
    }

    /// Forgets source partition `p`'s offsets (every topic) and head, before a rebuild from scratch.
    func forget(partition p: Int32, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM consumer_offsets WHERE group_id = ? AND partition = ?", arguments: [group, p])
        try db.execute(sql: "DELETE FROM changelog_heads WHERE group_id = ? AND partition = ?", arguments: [group, p])
    }

    // MARK: outbox

    /// Inserts one outbox row and returns its seq. The frame's bytes are bound in place (one
    /// copy fewer of megabytes per batch than binding a `Data`).
    func insertOutbox(_ frame: [UInt8], _ db: Database) throws -> Int64 {
        let insert = try db.cachedStatement(sql: "INSERT INTO outbox (owner, messages) VALUES (?, ?)")
        insert.setUncheckedArguments([owner])
        let rc = frame.withUnsafeBytes { buf in
            sqlite3_bind_blob(insert.sqliteStatement, 2, buf.baseAddress, Int32(buf.count), nil) == SQLITE_OK
                ? sqlite3_step(insert.sqliteStatement) : sqlite3_errcode(db.sqliteConnection)
        }
        sqlite3_reset(insert.sqliteStatement)
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: "INSERT INTO outbox")
        }
        return db.lastInsertedRowID
    }

    /// Deletes this owner's rows up to `seq` (their outputs are acknowledged).
    func deleteOutbox(through seq: Int64, _ db: Database) throws {
        try db.cachedStatement(sql: "DELETE FROM outbox WHERE seq <= ? AND owner = ?").execute(arguments: [seq, owner])
    }

    /// This owner's rows, oldest first (left by a run that stopped or crashed before their
    /// outputs were acknowledged).
    func outbox(_ db: Database) throws -> [OutboxRow] {
        try Row.fetchAll(db, sql: "SELECT seq, messages FROM outbox WHERE owner = ? ORDER BY seq", arguments: [owner]).map { row in
            let data: Data = row[1]
            return OutboxRow(seq: row[0], messages: try OutboxFrame.decode(Array(data)))
        }
    }
}
