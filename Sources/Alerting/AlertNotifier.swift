import Model
import Bootstrap
import Foundation
import GRDB
import Logging
import Metrics
import ServiceLifecycle
import Telemetry
import Worker

/// Evaluates the rules and delivers notifications, once per sweep (`alerting.sweepIntervalMs`).
///
/// Per alert and channel: one notification when it opens, a reminder every `renotifyMinutes`
/// while it stays open, one "resolved" when it ends. A notification stays in
/// `alert_notifications` until its channel accepted it, retried with backoff from 1 s doubling
/// to 5 min for as long as it takes: never dropped.
public struct AlertNotifier: Service {
    let configuration: AlertingConfiguration
    let store: StateStore
    let logger: Logger
    let channels: [String: any AlertChannel]
    let rules: RuleEvaluator

    public init(configuration: AlertingConfiguration, store: StateStore, logger: Logger, channels: [any AlertChannel]? = nil) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        let list = channels ?? configuration.rules.channels.map { $0.makeChannel() }
        self.channels = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.rules = RuleEvaluator(configuration: configuration, store: store, logger: logger)
    }

    public func run() async throws {
        // The consumer creates the tables too, but the first sweep may come before its first batch.
        try await store.database.write { try AlertStore.createSchema($0) }
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await sweep(now: Clock.nowMicros())
                Counter(label: MetricNames.alertSweeps, dimensions: [("result", "ok")]).increment()
            } catch is StoppedOnRequest {
                break
            } catch {
                Counter(label: MetricNames.alertSweeps, dimensions: [("result", "failed")]).increment()
                logger.error("alert sweep failed", metadata: ["error": "\(error)"])
            }
            guard await pauseUnlessShuttingDown(for: configuration.sweepInterval) else { break }
        }
    }

    /// One round: rules, planning notifications, delivering what is due.
    public func sweep(now: Int64) async throws {
        try await rules.evaluate(now: now)
        try plan(now: now)
        try await deliver(now: now)
        try publishOpenAlerts()
    }

    /// `livesync_alerts_open{kind}` after the sweep, every kind (0 when none is open).
    func publishOpenAlerts() throws {
        let open = try store.database.read { db in
            Dictionary(try Row.fetchAll(db, sql: "SELECT kind, COUNT(*) FROM alerts WHERE resolved_at_us IS NULL GROUP BY kind")
                .map { ($0[0] as String, $0[1] as Int) }, uniquingKeysWith: +)
        }
        for kind in Set(AlertKind.all).union(open.keys) {
            Gauge(label: MetricNames.alertsOpen, dimensions: [("kind", kind)]).record(open[kind] ?? 0)
        }
    }

    /// Kept for callers of the first version: the unsynced-order rule alone.
    public func sweepUnsynced(now: Int64) async throws {
        try await rules.evaluateUnsynced(seconds: configuration.unsyncedAfterSeconds, now: now)
    }

    /// Enqueues per channel: the start of new alerts, reminders of long ones, the end of resolved ones.
    func plan(now: Int64) throws {
        let names = channels.keys.sorted()
        let renotify = Int64(configuration.rules.renotifySeconds) * 1_000_000
        try store.database.write { db in
            let insert = try db.cachedStatement(sql: "INSERT INTO alert_notifications (alert_id, channel, event, created_at_us) VALUES (?, ?, ?, ?)")
            func enqueue(_ id: Int64, _ event: String) throws {
                for name in names { try insert.execute(arguments: [id, name, event, now]) }
            }
            for row in try Row.fetchAll(db, sql: "SELECT id, kind, message FROM alerts WHERE notified_at_us IS NULL") {
                logger.warning("ALERT \(row[1] as String): \(row[2] as String)")
                try enqueue(row[0], AlertNotification.firing)
                try db.execute(sql: "UPDATE alerts SET notified_at_us = ? WHERE id = ?", arguments: [now, row[0] as Int64])
            }
            for id in try Int64.fetchAll(db, sql: "SELECT id FROM alerts WHERE resolved_at_us IS NULL AND notified_at_us < ?", arguments: [now - renotify]) {
                try enqueue(id, AlertNotification.reminder)
                try db.execute(sql: "UPDATE alerts SET notified_at_us = ? WHERE id = ?", arguments: [now, id])
            }
            for row in try Row.fetchAll(db, sql: "SELECT id, kind, dedupe_key FROM alerts WHERE resolved_at_us IS NOT NULL AND resolved_notified = 0") {
                logger.notice("RESOLVED \(row[1] as String)", metadata: ["key": "\(row[2] as String)"])
                try enqueue(row[0], AlertNotification.resolved)
                try db.execute(sql: "UPDATE alerts SET resolved_notified = 1 WHERE id = ?", arguments: [row[0] as Int64])
            }
        }
    }

    func deliver(now: Int64) async throws {
        let due = try await store.database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT n.id, n.channel, n.event, n.attempts, a.dedupe_key, a.kind, a.message, a.created_at_us, a.count, a.resolved_at_us
                FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id
                WHERE n.delivered_at_us IS NULL AND n.next_attempt_at_us <= ? ORDER BY n.id LIMIT 200
                """, arguments: [now])
        }
        struct Due: Sendable {
            var id: Int64
            var attempts: Int
            var notification: AlertNotification
        }
        // Channels deliver concurrently; within a channel, in order.
        var byChannel: [String: [Due]] = [:]
        for row in due {
            let notification = AlertNotification(
                alert: Alert(key: row[4], kind: row[5], message: row[6], createdAtUs: row[7], count: row[8]),
                event: row[2], resolvedAtUs: row[9])
            byChannel[row[1], default: []].append(Due(id: row[0], attempts: row[3], notification: notification))
        }
        let results = await withTaskGroup(of: [(Int64, Int, String?)].self) { group in
            for (name, items) in byChannel {
                let channel = channels[name]
                group.addTask {
                    var out: [(Int64, Int, String?)] = []
                    for item in items {
                        var error: String?
                        if let channel {
                            do { try await channel.send(item.notification, now: Clock.nowMicros()) } catch let e { error = "\(e)" }
                        } else {
                            error = "channel '\(name)' is not configured any more; add it back to deliver this notification"
                        }
                        Counter(label: MetricNames.notifications, dimensions: [("channel", name), ("result", error == nil ? "delivered" : "failed")]).increment()
                        out.append((item.id, item.attempts, error))
                    }
                    return out
                }
            }
            var all: [(Int64, Int, String?)] = []
            for await part in group { all += part }
            return all
        }
        guard !results.isEmpty else { return }
        try await store.database.write { db in
            for (id, attempts, error) in results {
                if let error {
                    let backoff = min(300_000_000, 1_000_000 << min(attempts, 20))
                    try db.execute(sql: "UPDATE alert_notifications SET attempts = attempts + 1, next_attempt_at_us = ?, last_error = ? WHERE id = ?",
                                   arguments: [now + Int64(backoff), error, id])
                } else {
                    try db.execute(sql: "UPDATE alert_notifications SET attempts = attempts + 1, delivered_at_us = ?, last_error = NULL WHERE id = ?",
                                   arguments: [Clock.nowMicros(), id])
                }
            }
        }
        for (_, _, error) in results where error != nil {
            logger.error("alert delivery failed; will retry", metadata: ["error": "\(error!)"])
        }
    }
}
