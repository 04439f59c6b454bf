import Bootstrap
import Foundation
import GRDB
import Kafka
import Model
import ReadModel
import Worker

/// Settings of `livesync-alerting`.
public struct AlertingConfiguration: Sendable {
    /// An order with no terminal outcome this long after ingest raises an alert. Default 5 s.
    /// (Used for the default `order_unsynced` rule.)
    public var unsyncedAfterSeconds: Int
    /// Where alerts are POSTed as JSON (none: log only). Adds a generic webhook channel.
    public var webhookURL: String?
    /// How often rules are evaluated and deliveries run. Default 1 s.
    public var sweepInterval: Duration
    /// Rules and channels (from the configuration file).
    public var rules: AlertRulesConfiguration
    /// Where `consumer_lag` and `process_silent` find the processes: their announcements on
    /// `livesync.instances` (nil: those rules see no process).
    public var instances: InstanceDirectory?
    /// The read model (`book.url`) `order_unsynced`, `sync_failure_rate`, `stock_low` and the
    /// scheduled inspection read: the ERP book's decisions and undecided orders, dispatch's
    /// replicated positions and the stock levels. nil: those rules find nothing.
    public var book: BookClient?
    /// Where `order_unsynced` reads the orders dispatch had not read yet (`orders.placed`).
    public var kafka: KafkaConfiguration?
    /// Dispatch's consumer group, whose positions on `orders.placed` the read model replicates.
    public var dispatchGroup: String
    /// How often `consumer_lag` and `process_silent` ask every process's `/readyz` (each answer
    /// costs the process a broker round trip and a SQLite lock probe). Default 5 s; at least
    /// twice within the shortest `process_silent` time.
    public var processCheckInterval: Duration

    public init(unsyncedAfterSeconds: Int = 5, webhookURL: String? = nil, sweepInterval: Duration = .seconds(1),
                rules: AlertRulesConfiguration? = nil, instances: InstanceDirectory? = nil,
                book: BookClient? = nil, kafka: KafkaConfiguration? = nil, dispatchGroup: String = "livesync-dispatch",
                processCheckInterval: Duration = .seconds(5)) {
        self.unsyncedAfterSeconds = unsyncedAfterSeconds
        self.webhookURL = webhookURL
        self.sweepInterval = sweepInterval
        var rules = rules ?? AlertRulesConfiguration(rules: [.orderUnsynced(seconds: unsyncedAfterSeconds), .deadLetters(resolveAfterSeconds: 600)], channels: [])
        if let webhookURL, !webhookURL.isEmpty, !rules.channels.contains(where: { $0.name == "webhook" }) {
            rules.channels.append(.webhook(name: "webhook", url: webhookURL))
        }
        self.rules = rules
        self.instances = instances
        self.book = book
        self.kafka = kafka
        self.dispatchGroup = dispatchGroup
        self.processCheckInterval = processCheckInterval
    }
}

extension AlertingConfiguration {
    /// `livesync-alerting`'s settings, read once at start over this type's defaults:
    /// `alerting.unsyncedAfterSeconds`, `alerting.sweepIntervalMs`, `alerting.processCheckIntervalMs`,
    /// `alerting.webhookUrl`, `book.url` (required when a rule reads the read model, as the
    /// default `order_unsynced` does), `group.dispatch`, the processes' directory (`kafka.*`,
    /// `telemetry.instanceMaxAgeMs`), and the rules and channels of `configFile` (a bad rule or
    /// channel is refused naming its line).
    public static func load(_ settings: LiveSyncConfig, configFile: String?) throws -> AlertingConfiguration {
        let defaults = AlertingConfiguration()
        let unsynced = try settings.int("alerting.unsyncedAfterSeconds", default: defaults.unsyncedAfterSeconds)
        let rules = try AlertRulesConfiguration.load(file: configFile, unsyncedAfterSeconds: unsynced,
                                                     webhookURL: settings.optionalString("alerting.webhookUrl"))
        let book = try rules.rules.contains(where: \.readsTheBook) ? settings.bookClient : settings.optionalBookClient
        return AlertingConfiguration(
            unsyncedAfterSeconds: unsynced,
            sweepInterval: .milliseconds(try settings.int("alerting.sweepIntervalMs", default: defaults.sweepInterval.wholeMilliseconds)),
            rules: rules, instances: InstanceDirectory(try settings.instanceDirectory()),
            book: book, kafka: try settings.kafka(),
            dispatchGroup: settings.string("group.dispatch", default: defaults.dispatchGroup),
            processCheckInterval: .milliseconds(try settings.int("alerting.processCheckIntervalMs", default: defaults.processCheckInterval.wholeMilliseconds)))
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
            CREATE TABLE IF NOT EXISTS alerts (
                id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL, kind TEXT NOT NULL,
                message TEXT NOT NULL, count INTEGER NOT NULL, created_at_us INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS alert_notifications (
                id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id INTEGER NOT NULL, channel TEXT NOT NULL,
                event TEXT NOT NULL, created_at_us INTEGER NOT NULL, delivered_at_us INTEGER,
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at_us INTEGER NOT NULL DEFAULT 0, last_error TEXT);
            CREATE INDEX IF NOT EXISTS alert_notifications_due ON alert_notifications (delivered_at_us, next_attempt_at_us);
            CREATE TABLE IF NOT EXISTS alert_sku_reserved (
                sku TEXT NOT NULL, warehouse TEXT NOT NULL, minute INTEGER NOT NULL, reserved INTEGER NOT NULL,
                sampled_at_us INTEGER NOT NULL, PRIMARY KEY (sku, warehouse, minute)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS alert_unsynced_orders (
                order_id TEXT PRIMARY KEY, ingested_at_us INTEGER NOT NULL, found_at_us INTEGER NOT NULL) WITHOUT ROWID;
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
        try db.execute(sql: """
            CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts (dedupe_key) WHERE resolved_at_us IS NULL;
            """)
        // Stores of earlier releases kept a row per order (`alert_orders`) and per reserved line's
        // SKU and minute (`alert_sku_sales`), read from `orders.placed` and `stock.reservations`;
        // neither is read any more, so their positions go too (a position left behind would be
        // checked by the inspection long after retention dropped its messages).
        // Nor are `orders.outcomes` (counted per second in `alert_outcome_counts`): the ERP book
        // counts its decisions per second now.
        try db.execute(sql: """
            DROP TABLE IF EXISTS alert_orders;
            DROP TABLE IF EXISTS alert_sku_sales;
            DROP TABLE IF EXISTS alert_outcome_counts;
            """)
        try StateStore.forgetPositions(db, topics: [Topics.ordersPlaced, Topics.stockReservations, Topics.orderOutcomes])
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

/// Raises dead letters at once (the only topic alerting consumes). Every other rule reads on its
/// sweep instead (`RuleEvaluator`): decisions per second, undecided orders and stock levels from
/// the read model (`BookClient`), the unread head of `orders.placed` from Kafka.
public final class AlertingProcessor: BatchProcessor {
    /// The topics it consumes.
    /// Dead letters only: the failure rate is read from the ERP book's decisions per second, so
    /// no topic at the session's volume is consumed (each fetch costs the broker too).
    public static let topics = [Topics.deadLetter]

    public init() {}

    public func prepare(_ db: Database) throws { try AlertStore.createSchema(db) }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        let now = Clock.nowMicros()
        for message in messages {
            switch message.topic {
            case Topics.deadLetter:
                let dl = try? DeadLetter(serializedBytes: message.value)
                let source = dl.map { "\($0.sourceTopic)[\($0.sourcePartition)]@\($0.sourceOffset)" } ?? "unknown"
                try AlertStore.raise(db, key: "dead_letter:\(dl?.sourceTopic ?? "?")", kind: AlertKind.deadLetter,
                                     message: "message dead-lettered from \(source) by \(dl?.consumerGroup ?? "?"): \(dl?.error ?? "undecodable dead letter")", now: now)
            default:
                continue  // a topic of an earlier release's subscription
            }
        }
    }
}
