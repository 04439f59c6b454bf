import Foundation
import GRDB
import Kafka

/// Settings of a SQLite state database.
public struct StateStoreConfiguration: Sendable {
    /// Path of the database file; its directory is created if missing.
    public var path: String
    /// `PRAGMA synchronous`: `FULL` (default) syncs the WAL at every commit, so a committed
    /// batch survives power loss; `NORMAL` survives process crashes only, and is faster.
    public var synchronous: String
    /// How long a writer waits for another process's write lock (shared ERP book). Default 10 s.
    public var busyTimeout: TimeInterval

    public init(path: String, synchronous: String = "FULL", busyTimeout: TimeInterval = 10) {
        self.path = path
        self.synchronous = synchronous
        self.busyTimeout = busyTimeout
    }
}

/// A SQLite database holding a consumer's state, its consumed offsets and its outbox, so that
/// all three change in one transaction.
public final class StateStore: Sendable {
    public let database: DatabaseQueue
    public let configuration: StateStoreConfiguration

    public init(_ configuration: StateStoreConfiguration) throws {
        self.configuration = configuration
        let dir = (configuration.path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var config = Configuration()
        config.busyMode = .timeout(configuration.busyTimeout)
        config.journalMode = .wal
        let sync = configuration.synchronous
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(sync)")
            // 64 MiB page cache: the hot tables' upper B-tree levels stay in memory.
            try db.execute(sql: "PRAGMA cache_size = -65536")
        }
        database = try DatabaseQueue(path: configuration.path, configuration: config)
        try database.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS consumer_offsets (
                    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    next_offset INTEGER NOT NULL, updated_at_us INTEGER NOT NULL,
                    PRIMARY KEY (group_id, topic, partition)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS changelog_heads (
                    group_id TEXT NOT NULL, partition INTEGER NOT NULL,
                    writer TEXT NOT NULL, seq INTEGER NOT NULL,
                    PRIMARY KEY (group_id, partition)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, messages BLOB NOT NULL);
                """)
        }
    }

    /// The next offset to read for each partition this group has state for
    /// (`partitions == nil`: every partition it has state for).
    public func offsets(group: String, for partitions: [TopicPartition]? = nil) throws -> [TopicPartition: Int64] {
        let wanted = partitions.map(Set.init)
        return try database.read { db in
            var result: [TopicPartition: Int64] = [:]
            let rows = try Row.fetchAll(db, sql: "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = ?", arguments: [group])
            for row in rows {
                let tp = TopicPartition(row[0], row[1])
                if wanted?.contains(tp) ?? true { result[tp] = row[2] }
            }
            return result
        }
    }
}

/// Frames a batch's output messages into one outbox row (one insert per batch, not per message).
///
/// Layout, repeated: u16 topic length, topic, i32 partition (-1: by key), u32 key length, key,
/// u32 value length, value (big-endian).
public enum OutboxFrame {
    /// - Parameter skipping: a topic whose messages are left out (recreated on republish instead).
    public static func encode(_ messages: [ProducerMessage], skipping: String? = nil) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(messages.reduce(0) { $1.topic == skipping ? $0 : $0 + 14 + $1.topic.utf8.count + $1.key.count + $1.value.count })
        for m in messages where m.topic != skipping {
            append(&out, UInt32(m.topic.utf8.count), bytes: 2)
            out.append(contentsOf: m.topic.utf8)
            append(&out, UInt32(bitPattern: m.partition ?? -1), bytes: 4)
            append(&out, UInt32(m.key.count), bytes: 4)
            out += m.key
            append(&out, UInt32(m.value.count), bytes: 4)
            out += m.value
        }
        return out
    }

    public static func decode(_ bytes: [UInt8]) throws -> [ProducerMessage] {
        var messages: [ProducerMessage] = []
        var i = 0
        func read(_ n: Int) throws -> Int {
            guard i + n <= bytes.count else { throw OutboxFrameError.truncated(at: i) }
            var v = 0
            for _ in 0..<n { v = (v << 8) | Int(bytes[i]); i += 1 }
            return v
        }
        func take(_ n: Int) throws -> [UInt8] {
            guard i + n <= bytes.count else { throw OutboxFrameError.truncated(at: i) }
            defer { i += n }
            return Array(bytes[i..<(i + n)])
        }
        while i < bytes.count {
            let topic = String(decoding: try take(try read(2)), as: UTF8.self)
            let partition = Int32(bitPattern: UInt32(try read(4)))
            let key = try take(try read(4))
            let value = try take(try read(4))
            messages.append(ProducerMessage(topic: topic, key: key, value: value, partition: partition >= 0 ? partition : nil))
        }
        return messages
    }

    private static func append(_ out: inout [UInt8], _ v: UInt32, bytes: Int) {
        for shift in stride(from: (bytes - 1) * 8, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }
}

public enum OutboxFrameError: Error, CustomStringConvertible {
    case truncated(at: Int)
    public var description: String {
        switch self { case .truncated(let at): "outbox row is truncated at byte \(at)" }
    }
}

extension StateStore {
    /// Opens another process's SQLite file for reading only (inspection, alerting, the
    /// dashboard): it never writes, and waits up to `busyTimeout` seconds for the owner's lock.
    public static func openForReading(_ path: String, busyTimeout: TimeInterval? = 5) throws -> DatabaseQueue {
        var config = Configuration()
        config.readonly = true
        if let busyTimeout { config.busyMode = .timeout(busyTimeout) }
        return try DatabaseQueue(path: path, configuration: config)
    }
}
