import AsyncHTTPClient
import Foundation
import GRDB
import Logging
import NIOCore
import ServiceLifecycle
import Worker

/// Finds orders not synced in time and delivers pending alerts to the log and the webhook.
///
/// Delivery is at least once: an alert stays pending, retried with exponential backoff
/// (1 s doubling to 5 min), until the webhook answers 2xx; it is never dropped.
public struct AlertNotifier: Service {
    let configuration: AlertingConfiguration
    let store: StateStore
    let logger: Logger

    public init(configuration: AlertingConfiguration, store: StateStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try sweepUnsynced(now: Clock.nowMicros())
                try await deliver(now: Clock.nowMicros())
            } catch {
                logger.error("alert sweep failed", metadata: ["error": "\(error)"])
            }
            try? await Task.sleep(for: .milliseconds(configuration.sweepIntervalMilliseconds))
        }
    }

    /// Raises one alert per sweep for the orders that passed the SLA since the last one.
    public func sweepUnsynced(now: Int64) throws {
        let cutoff = now - Int64(configuration.unsyncedAfterSeconds) * 1_000_000
        try store.database.write { db in
            let late = try String.fetchAll(db, sql: """
                SELECT order_id FROM alert_orders WHERE decided = 0 AND alerted = 0 AND ingested_at_us < ?
                ORDER BY ingested_at_us LIMIT 10000
                """, arguments: [cutoff])
            if !late.isEmpty {
                for id in late { try db.execute(sql: "UPDATE alert_orders SET alerted = 1 WHERE order_id = ?", arguments: [id]) }
                let sample = late.prefix(20).joined(separator: ", ")
                try AlertStore.raise(db, key: "unsynced:\(now)", kind: "order_not_synced",
                                     message: "\(late.count) order(s) not synced to the ERP within \(configuration.unsyncedAfterSeconds) s: \(sample)\(late.count > 20 ? ", …" : "")", now: now)
            }
            // Decided orders older than an hour are no longer needed.
            try db.execute(sql: "DELETE FROM alert_orders WHERE decided = 1 AND ingested_at_us < ?", arguments: [now - 3_600_000_000])
        }
    }

    func deliver(now: Int64) async throws {
        let due = try await store.database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT id, dedupe_key, kind, message, count, created_at_us, attempts FROM alerts
                WHERE delivered_at_us IS NULL AND next_attempt_at_us <= ? ORDER BY id LIMIT 100
                """, arguments: [now])
        }
        for row in due {
            let id: Int64 = row[0]
            let alert = Alert(key: row[1], kind: row[2], message: row[3], createdAtUs: row[5], count: row[4])
            let attempts: Int = row[6]
            if attempts == 0 {
                logger.warning("ALERT \(alert.kind): \(alert.message)", metadata: ["key": "\(alert.key)"])
            }
            var error: String?
            if let url = configuration.webhookURL, !url.isEmpty {
                do {
                    var request = HTTPClientRequest(url: url)
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/json")
                    let body = try JSONEncoder().encode(alert)
                    request.body = .bytes(ByteBuffer(bytes: body))
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
                    if !(200..<300).contains(response.status.code) { error = "webhook answered \(response.status.code)" }
                } catch let e {
                    error = "\(e)"
                }
            }
            try await store.database.write { [error] db in
                if let error {
                    let backoff = min(300_000_000, 1_000_000 << min(attempts, 20))
                    try db.execute(sql: "UPDATE alerts SET attempts = attempts + 1, next_attempt_at_us = ?, last_error = ? WHERE id = ?",
                                   arguments: [now + Int64(backoff), error, id])
                } else {
                    try db.execute(sql: "UPDATE alerts SET attempts = attempts + 1, delivered_at_us = ? WHERE id = ?", arguments: [now, id])
                }
            }
            if let error { logger.error("alert delivery failed; will retry", metadata: ["key": "\(alert.key)", "error": "\(error)"]) }
        }
    }
}
