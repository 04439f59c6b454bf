import Foundation
import GRDB
import Kafka
import Model
import Worker

/// Settings of `livesync-alerting`.
public struct AlertingConfiguration: Sendable {
    /// An order with no terminal outcome this long after ingest raises an alert. Default 5 s.
    /// (Used for the default `order_unsynced` rule.)
    public var unsyncedAfterSeconds: Int
    /// Where alerts are POSTed as JSON (none: log only). Adds a generic webhook channel.
    public var webhookURL: String?
    /// How often rules are evaluated and deliveries run. Default 1 s.
    public var sweepIntervalMilliseconds: Int
    /// Rules and channels (from the configuration file).
    public var rules: AlertRulesConfiguration
    /// Where the rules read the stock store and the process records.
    public var stockDatabase: String?
    public var dataDir: String?

    public init(unsyncedAfterSeconds: Int = 5, webhookURL: String? = nil, sweepIntervalMilliseconds: Int = 1_000,
                rules: AlertRulesConfiguration? = nil, stockDatabase: String? = nil, dataDir: String? = nil) {
        self.unsyncedAfterSeconds = unsyncedAfterSeconds
        self.webhookURL = webhookURL
        self.sweepIntervalMilliseconds = sweepIntervalMilliseconds
        var rules = rules ?? AlertRulesConfiguration(rules: [.orderUnsynced(seconds: unsyncedAfterSeconds), .deadLetters(resolveAfterSeconds: 600)], channels: [])
        if let webhookURL, !webhookURL.isEmpty, !rules.channels.contains(where: { $0.name == "webhook" }) {
            rules.channels.append(.webhook(name: "webhook", url: webhookURL))
        }
        self.rules = rules
        self.stockDatabase = stockDatabase
        self.dataDir = dataDir
    }
}

/// One alert (an incident), de-duplicated by `key` while it is open.
public struct Alert: Sendable, Codable, Equatable {
    public var key: String
    public var kind: String
    public var message: String
    public var createdAtUs: Int64
    public var count: Int
}

/// Alert storage, shared by the consumer (which raises event alerts), the rules and the notifier.
///
/// An alert is open from `raise` until `resolve`; raising an open key again only counts it.
/// Notifications (one per channel for the start, reminders, the end) are rows of
/// `alert_notifications`, kept until the channel accepted them.
public enum AlertStore {
    public static func createSchema(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS alert_orders (
                order_id TEXT PRIMARY KEY, ingested_at_us INTEGER NOT NULL,
                decided INTEGER NOT NULL DEFAULT 0, alerted INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS alerts (
                id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL, kind TEXT NOT NULL,
                message TEXT NOT NULL, count INTEGER NOT NULL, created_at_us INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS alert_notifications (
                id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id INTEGER NOT NULL, channel TEXT NOT NULL,
                event TEXT NOT NULL, created_at_us INTEGER NOT NULL, delivered_at_us INTEGER,
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at_us INTEGER NOT NULL DEFAULT 0, last_error TEXT);
            CREATE INDEX IF NOT EXISTS alert_notifications_due ON alert_notifications (delivered_at_us, next_attempt_at_us);
            CREATE TABLE IF NOT EXISTS alert_sku_sales (
                sku TEXT NOT NULL, warehouse TEXT NOT NULL, minute INTEGER NOT NULL, units INTEGER NOT NULL,
                PRIMARY KEY (sku, warehouse, minute)) WITHOUT ROWID;
            """)
        // Files of the first release: `dedupe_key` was UNIQUE for ever (one alert per key), now only
        // while open. SQLite cannot drop that constraint, so the table is rebuilt once.
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = 'alerts' AND name LIKE 'sqlite_autoindex_alerts_%'") == true {
            try db.execute(sql: """
                CREATE TABLE alerts_v2 (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL, kind TEXT NOT NULL,
                    message TEXT NOT NULL, count INTEGER NOT NULL, created_at_us INTEGER NOT NULL);
                INSERT INTO alerts_v2 (id, dedupe_key, kind, message, count, created_at_us)
                    SELECT id, dedupe_key, kind, message, count, created_at_us FROM alerts;
                DROP TABLE alerts;
                ALTER TABLE alerts_v2 RENAME TO alerts;
                """)
        }
        // Columns added after the first release (older files get them here).
        let alertColumns = Set(try db.columns(in: "alerts").map(\.name))
        for (column, type) in [("last_seen_at_us", "INTEGER NOT NULL DEFAULT 0"), ("resolved_at_us", "INTEGER"),
                               ("notified_at_us", "INTEGER"), ("resolved_notified", "INTEGER NOT NULL DEFAULT 0")]
            where !alertColumns.contains(column) {
            try db.execute(sql: "ALTER TABLE alerts ADD COLUMN \(column) \(type)")
        }
        let orderColumns = Set(try db.columns(in: "alert_orders").map(\.name))
        for (column, type) in [("outcome", "TEXT"), ("decided_at_us", "INTEGER")] where !orderColumns.contains(column) {
            try db.execute(sql: "ALTER TABLE alert_orders ADD COLUMN \(column) \(type)")
        }
        try db.execute(sql: """
            CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts (dedupe_key) WHERE resolved_at_us IS NULL;
            CREATE INDEX IF NOT EXISTS alert_orders_open ON alert_orders (decided, alerted, ingested_at_us);
            CREATE INDEX IF NOT EXISTS alert_orders_decided ON alert_orders (decided_at_us);
            """)
    }

    /// Opens an alert, or counts one more occurrence of the open alert with the same key
    /// (its message is refreshed).
    public static func raise(_ db: Database, key: String, kind: String, message: String, now: Int64) throws {
        try db.execute(sql: """
            UPDATE alerts SET count = count + 1, last_seen_at_us = ?, message = ? WHERE dedupe_key = ? AND resolved_at_us IS NULL
            """, arguments: [now, message, key])
        if db.changesCount == 0 {
            try db.execute(sql: """
                INSERT INTO alerts (dedupe_key, kind, message, count, created_at_us, last_seen_at_us) VALUES (?, ?, ?, 1, ?, ?)
                """, arguments: [key, kind, message, now, now])
        }
    }

    /// Resolves the open alerts of `kind` whose key is not in `except` (the conditions that still hold).
    public static func resolve(_ db: Database, kind: String, except: Set<String>, now: Int64) throws {
        let open = try String.fetchAll(db, sql: "SELECT dedupe_key FROM alerts WHERE kind = ? AND resolved_at_us IS NULL", arguments: [kind])
        for key in open where !except.contains(key) {
            try db.execute(sql: "UPDATE alerts SET resolved_at_us = ? WHERE dedupe_key = ? AND resolved_at_us IS NULL", arguments: [now, key])
        }
    }

    /// Resolves the open alerts of `kind` not raised again for `quietMicros`.
    public static func resolveQuiet(_ db: Database, kind: String, quietMicros: Int64, now: Int64) throws {
        try db.execute(sql: "UPDATE alerts SET resolved_at_us = ? WHERE kind = ? AND resolved_at_us IS NULL AND last_seen_at_us < ?",
                       arguments: [now, kind, now - quietMicros])
    }
}

/// Watches the flow for what an operator must know now: order outcomes (for the unsynced and
/// failure-rate rules), sales per SKU (for sell-out forecasts) and dead letters.
public final class AlertingProcessor: BatchProcessor {
    public init() {}

    public func prepare(_ db: Database) throws { try AlertStore.createSchema(db) }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        let now = Clock.nowMicros()
        let placed = try db.cachedStatement(sql: "INSERT OR IGNORE INTO alert_orders (order_id, ingested_at_us) VALUES (?, ?)")
        let decided = try db.cachedStatement(sql: """
            INSERT INTO alert_orders (order_id, ingested_at_us, decided, outcome, decided_at_us) VALUES (?, ?, 1, ?, ?)
            ON CONFLICT (order_id) DO UPDATE SET decided = 1, outcome = excluded.outcome, decided_at_us = excluded.decided_at_us
            """)
        var sales: [String: (sku: String, warehouse: String, minute: Int64, units: Int64)] = [:]
        for message in messages {
            switch message.topic {
            case Topics.ordersPlaced:
                guard let order = try? Order(serializedBytes: message.value) else { continue }  // dispatch dead-letters it
                try placed.execute(arguments: [order.orderID, order.ingestedAtUs])
            case Topics.orderOutcomes:
                guard let outcome = try? OrderOutcome(serializedBytes: message.value) else { continue }
                let kind = switch outcome.kind {
                case .synced: "synced"
                case .rejectedOutOfStock: "rejected"
                case .cancelled: "cancelled"
                default: "other"
                }
                try decided.execute(arguments: [outcome.orderID, outcome.ingestedAtUs, kind, outcome.decidedAtUs > 0 ? outcome.decidedAtUs : now])
            case Topics.stockReservations:
                guard let r = try? Reservation(serializedBytes: message.value), r.status == .reserved else { continue }
                let minute = (r.decidedAtUs > 0 ? r.decidedAtUs : now) / 60_000_000
                let key = "\(r.sku)\u{0}\(r.warehouse)\u{0}\(minute)"
                sales[key, default: (r.sku, r.warehouse, minute, 0)].units += Int64(r.quantity)
            case Topics.deadLetter:
                let dl = try? DeadLetter(serializedBytes: message.value)
                let source = dl.map { "\($0.sourceTopic)[\($0.sourcePartition)]@\($0.sourceOffset)" } ?? "unknown"
                try AlertStore.raise(db, key: "dead_letter:\(dl?.sourceTopic ?? "?")", kind: AlertKind.deadLetter,
                                     message: "message dead-lettered from \(source) by \(dl?.consumerGroup ?? "?"): \(dl?.error ?? "undecodable dead letter")", now: now)
            default:
                continue
            }
        }
        if !sales.isEmpty {
            let upsert = try db.cachedStatement(sql: """
                INSERT INTO alert_sku_sales (sku, warehouse, minute, units) VALUES (?, ?, ?, ?)
                ON CONFLICT (sku, warehouse, minute) DO UPDATE SET units = units + excluded.units
                """)
            for s in sales.values { try upsert.execute(arguments: [s.sku, s.warehouse, s.minute, s.units]) }
        }
    }
}
