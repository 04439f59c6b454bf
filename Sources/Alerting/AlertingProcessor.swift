import Foundation
import GRDB
import Kafka
import Model
import Worker

/// Settings of `livesync-alerting`.
public struct AlertingConfiguration: Sendable {
    /// An order with no terminal outcome this long after ingest raises an alert. Default 5 s.
    public var unsyncedAfterSeconds: Int
    /// Where alerts are POSTed as JSON (none: log only).
    public var webhookURL: String?
    /// How often the unsynced-order sweep and deliveries run. Default 1 s.
    public var sweepIntervalMilliseconds: Int

    public init(unsyncedAfterSeconds: Int = 5, webhookURL: String? = nil, sweepIntervalMilliseconds: Int = 1_000) {
        self.unsyncedAfterSeconds = unsyncedAfterSeconds
        self.webhookURL = webhookURL
        self.sweepIntervalMilliseconds = sweepIntervalMilliseconds
    }
}

/// One alert, de-duplicated by `key`.
public struct Alert: Sendable, Codable, Equatable {
    public var key: String
    public var kind: String
    public var message: String
    public var createdAtUs: Int64
    public var count: Int
}

/// Alert storage, shared by the consumer (which raises alerts) and the notifier (which delivers them).
public enum AlertStore {
    public static func createSchema(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS alert_orders (
                order_id TEXT PRIMARY KEY, ingested_at_us INTEGER NOT NULL,
                decided INTEGER NOT NULL DEFAULT 0, alerted INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS alert_orders_open ON alert_orders (decided, alerted, ingested_at_us);
            CREATE TABLE IF NOT EXISTS alerts (
                id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                message TEXT NOT NULL, count INTEGER NOT NULL, created_at_us INTEGER NOT NULL,
                delivered_at_us INTEGER, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at_us INTEGER NOT NULL DEFAULT 0,
                last_error TEXT);
            """)
    }

    /// Raises an alert, or counts one more occurrence of an alert with the same key.
    public static func raise(_ db: Database, key: String, kind: String, message: String, now: Int64) throws {
        try db.execute(sql: """
            INSERT INTO alerts (dedupe_key, kind, message, count, created_at_us) VALUES (?, ?, ?, 1, ?)
            ON CONFLICT (dedupe_key) DO UPDATE SET count = count + 1
            """, arguments: [key, kind, message, now])
    }
}

/// Watches the flow for what an operator must know now: stock-outs, dead letters, slow orders.
public final class AlertingProcessor: BatchProcessor {
    public init() {}

    public func prepare(_ db: Database) throws { try AlertStore.createSchema(db) }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        let now = Clock.nowMicros()
        let hour = now / 3_600_000_000
        let placed = try db.cachedStatement(sql: "INSERT OR IGNORE INTO alert_orders (order_id, ingested_at_us) VALUES (?, ?)")
        let decided = try db.cachedStatement(sql: """
            INSERT INTO alert_orders (order_id, ingested_at_us, decided) VALUES (?, ?, 1)
            ON CONFLICT (order_id) DO UPDATE SET decided = 1
            """)
        for message in messages {
            switch message.topic {
            case Topics.ordersPlaced:
                guard let order = try? Order(serializedBytes: message.value) else { continue }  // dispatch dead-letters it
                try placed.execute(arguments: [order.orderID, order.ingestedAtUs])
            case Topics.orderOutcomes:
                guard let outcome = try? OrderOutcome(serializedBytes: message.value) else { continue }
                try decided.execute(arguments: [outcome.orderID, outcome.ingestedAtUs])
            case Topics.stockReservations:
                guard let r = try? Reservation(serializedBytes: message.value), r.status == .rejected else { continue }
                try AlertStore.raise(db, key: "stockout:\(r.sku):\(r.warehouse):\(hour)", kind: "out_of_stock",
                                     message: "SKU \(r.sku) in warehouse \(r.warehouse) is out of stock: order lines are being rejected (available \(r.availableAfter))", now: now)
            case Topics.deadLetter:
                let dl = try? DeadLetter(serializedBytes: message.value)
                let source = dl.map { "\($0.sourceTopic)[\($0.sourcePartition)]@\($0.sourceOffset)" } ?? "unknown"
                try AlertStore.raise(db, key: "deadletter:\(dl?.sourceTopic ?? "?"):\(hour)", kind: "dead_letter",
                                     message: "message dead-lettered from \(source) by \(dl?.consumerGroup ?? "?"): \(dl?.error ?? "undecodable dead letter")", now: now)
            default:
                continue
            }
        }
    }
}
