import Foundation
import GRDB
import Model

/// Remembers which platform messages were fully handled, so a redelivered push (platforms
/// redeliver until they see their acknowledgement, and sometimes after) is acknowledged
/// without publishing again. A message is recorded only after its effects were published.
public final class MessageLedger: Sendable {
    public let database: DatabaseQueue

    /// - Parameter path: SQLite file (`:memory:` for tests); its directory is created if missing.
    public init(path: String) throws {
        if path != ":memory:" {
            let dir = (path as NSString).deletingLastPathComponent
            if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        }
        var config = Configuration()
        config.busyMode = .timeout(10)
        if path != ":memory:" { config.journalMode = .wal }
        database = path == ":memory:" ? try DatabaseQueue(configuration: config) : try DatabaseQueue(path: path, configuration: config)
        try database.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS platform_messages (
                    platform TEXT NOT NULL, message_id TEXT NOT NULL, shop_id TEXT NOT NULL,
                    kind TEXT NOT NULL, tag TEXT NOT NULL, order_id TEXT NOT NULL,
                    handled_at_us INTEGER NOT NULL,
                    PRIMARY KEY (platform, message_id)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS published_orders (
                    order_id TEXT PRIMARY KEY, via TEXT NOT NULL, published_at_us INTEGER NOT NULL) WITHOUT ROWID;
                """)
        }
    }

    /// Whether this message was already handled.
    public func seen(_ event: PlatformEvent) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM platform_messages WHERE platform = ? AND message_id = ?",
                              arguments: [event.platform.slug, event.messageID]) ?? false
        }
    }

    /// Records the message as handled (idempotent).
    public func record(_ event: PlatformEvent, orderID: String, now: Int64) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT OR IGNORE INTO platform_messages (platform, message_id, shop_id, kind, tag, order_id, handled_at_us)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [event.platform.slug, event.messageID, event.shopID, event.kind.rawValue, event.tag, orderID, now])
        }
    }

    /// Whether the order (canonical id) was already published, by a push or a poll.
    public func orderPublished(_ orderID: String) throws -> Bool {
        try database.read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM published_orders WHERE order_id = ?", arguments: [orderID]) ?? false }
    }

    public func markOrderPublished(_ orderID: String, via: String) throws {
        try database.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO published_orders (order_id, via, published_at_us) VALUES (?, ?, ?)",
                           arguments: [orderID, via, Int64(Date().timeIntervalSince1970 * 1_000_000)])
        }
    }

    public func count() throws -> Int {
        try database.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM platform_messages") ?? 0 }
    }
}
