import Foundation
import GRDB
import Logging
import Synchronization
import Telemetry
import Worker

/// Evaluates the configured rules against the alert store, the stock store and the running
/// processes: raises an alert per condition that holds and resolves the ones that ended.
final class RuleEvaluator: Sendable {
    let configuration: AlertingConfiguration
    let store: StateStore
    let logger: Logger
    private let lastAnswered = Mutex<[String: Int64]>([:])
    private let stock = Mutex<DatabaseQueue?>(nil)

    init(configuration: AlertingConfiguration, store: StateStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
    }

    func evaluate(now: Int64) async throws {
        var processRules: [AlertRule] = []
        for rule in configuration.rules.rules {
            switch rule {
            case .orderUnsynced(let seconds): try evaluateUnsynced(seconds: seconds, now: now)
            case .syncFailureRate(let threshold, let window, let minOrders): try evaluateFailureRate(threshold: threshold, windowSeconds: window, minOrders: minOrders, now: now)
            case .stockLow(let safety, let minutes, let window): try evaluateStock(safetyLevel: safety, sellOutMinutes: minutes, windowSeconds: window, now: now)
            case .deadLetters(let quiet):
                try await store.database.write { try AlertStore.resolveQuiet($0, kind: AlertKind.deadLetter, quietMicros: Int64(quiet) * 1_000_000, now: now) }
            case .consumerLag, .processSilent: processRules.append(rule)
            case .inspection: break  // InspectionSchedule runs it
            }
        }
        if !processRules.isEmpty { try await evaluateProcesses(processRules, now: now) }
    }

    /// `order_not_synced`: one alert while any order waits longer than `seconds` for its outcome.
    func evaluateUnsynced(seconds: Int, now: Int64) throws {
        let cutoff = now - Int64(seconds) * 1_000_000
        try store.database.write { db in
            let late = try String.fetchAll(db, sql: """
                SELECT order_id FROM alert_orders WHERE decided = 0 AND ingested_at_us < ? ORDER BY ingested_at_us LIMIT 10000
                """, arguments: [cutoff])
            if late.isEmpty {
                try AlertStore.resolve(db, kind: AlertKind.orderNotSynced, except: [], now: now)
            } else {
                let sample = late.prefix(20).joined(separator: ", ")
                try AlertStore.raise(db, key: AlertKind.orderNotSynced, kind: AlertKind.orderNotSynced,
                                     message: "\(late.count)\(late.count == 10_000 ? "+" : "") order(s) not synced to the ERP within \(seconds) s: \(sample)\(late.count > 20 ? ", …" : "")", now: now)
            }
            // Decided orders older than an hour are no longer needed.
            try db.execute(sql: "DELETE FROM alert_orders WHERE decided = 1 AND ingested_at_us < ?", arguments: [now - 3_600_000_000])
        }
    }

    /// `sync_failure_rate`: rejected share of the orders decided in the window.
    func evaluateFailureRate(threshold: Double, windowSeconds: Int, minOrders: Int, now: Int64) throws {
        try store.database.write { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COUNT(*), COALESCE(SUM(outcome = 'rejected'), 0) FROM alert_orders WHERE decided = 1 AND decided_at_us >= ?
                """, arguments: [now - Int64(windowSeconds) * 1_000_000])!
            let total: Int = row[0], failed: Int = row[1]
            let rate = total > 0 ? Double(failed) / Double(total) : 0
            if total >= minOrders && rate > threshold {
                try AlertStore.raise(db, key: AlertKind.syncFailureRate, kind: AlertKind.syncFailureRate,
                                     message: String(format: "%.1f%% of the %d orders decided in the last %d s failed to sync (rejected), above %.1f%%", rate * 100, total, windowSeconds, threshold * 100), now: now)
            } else {
                try AlertStore.resolve(db, kind: AlertKind.syncFailureRate, except: [], now: now)
            }
        }
    }

    func stockDatabase() -> DatabaseQueue? {
        stock.withLock { db in
            if let db { return db }
            guard let path = configuration.stockDatabase, FileManager.default.fileExists(atPath: path) else { return nil }
            var config = Configuration()
            config.readonly = true
            config.busyMode = .timeout(5)
            db = try? DatabaseQueue(path: path, configuration: config)
            return db
        }
    }

    /// `stock_low`: available at or below the safety level, or selling out within N minutes.
    func evaluateStock(safetyLevel: Int64, sellOutMinutes: Double?, windowSeconds: Int, now: Int64) throws {
        guard let stock = stockDatabase() else { return }
        let levels: [(String, String, Int64)] = try stock.read { db in
            // Another process creates and writes the schema: do not trust a cached "no such table".
            db.clearSchemaCache()
            guard try db.tableExists("stock") else { return [] }
            return try Row.fetchAll(db, sql: "SELECT sku, warehouse, on_hand - reserved FROM stock").map { ($0[0], $0[1], $0[2]) }
        }
        try store.database.write { db in
            var sales: [String: Int64] = [:]
            if sellOutMinutes != nil {
                let firstMinute = (now - Int64(windowSeconds) * 1_000_000) / 60_000_000
                for row in try Row.fetchAll(db, sql: "SELECT sku, warehouse, SUM(units) FROM alert_sku_sales WHERE minute >= ? GROUP BY sku, warehouse", arguments: [firstMinute]) {
                    sales["\(row[0] as String)@\(row[1] as String)"] = row[2]
                }
            }
            var holding: Set<String> = []
            for (sku, warehouse, available) in levels {
                let key = "\(AlertKind.stockLow):\(sku):\(warehouse)"
                var reason: String?
                if available <= safetyLevel {
                    reason = available <= 0 ? "is sold out (available \(available))" : "is at \(available), at or below its safety level \(safetyLevel)"
                } else if let minutes = sellOutMinutes, let sold = sales["\(sku)@\(warehouse)"], sold > 0 {
                    let perMinute = Double(sold) / (Double(windowSeconds) / 60)
                    let left = Double(available) / perMinute
                    if left <= minutes { reason = String(format: "sells out in %.1f min at %.0f units/min (available %d)", left, perMinute, available) }
                }
                if let reason {
                    holding.insert(key)
                    try AlertStore.raise(db, key: key, kind: AlertKind.stockLow, message: "SKU \(sku) in warehouse \(warehouse) \(reason)", now: now)
                }
            }
            try AlertStore.resolve(db, kind: AlertKind.stockLow, except: holding, now: now)
            try db.execute(sql: "DELETE FROM alert_sku_sales WHERE minute < ?", arguments: [now / 60_000_000 - 1_440])
        }
    }

    /// `consumer_lag` and `process_silent`, from every registered process's `/readyz`.
    func evaluateProcesses(_ rules: [AlertRule], now: Int64) async throws {
        guard let dataDir = configuration.dataDir else { return }
        let rows = await ProcessStatus.collect(dataDir: dataDir, timeout: .seconds(2))
        // Silent: no answer for the rule's time, or dead at once when its recorded pid is gone
        // (killed; the record of a cleanly stopped process is removed instead).
        let silent: [(String, Int64, Bool)] = lastAnswered.withLock { last in
            rows.map { row in
                if row.report != nil || last[row.process] == nil { last[row.process] = now }
                return (row.process, now - last[row.process]!, !row.pidAlive)
            }
        }
        try await store.database.write { db in
            for rule in rules {
                switch rule {
                case .processSilent(let seconds):
                    var holding: Set<String> = []
                    for (name, quietFor, dead) in silent where dead || quietFor >= Int64(seconds) * 1_000_000 {
                        let key = "\(AlertKind.processSilent):\(name)"
                        holding.insert(key)
                        try AlertStore.raise(db, key: key, kind: AlertKind.processSilent,
                                             message: dead ? "process \(name) died (its pid is gone) and has not come back"
                                                 : "process \(name) has not answered its health check for \(quietFor / 1_000_000) s", now: now)
                    }
                    try AlertStore.resolve(db, kind: AlertKind.processSilent, except: holding, now: now)
                case .consumerLag(let max):
                    var holding: Set<String> = []
                    for row in rows {
                        guard let lag = row.lag, lag > max else { continue }
                        let key = "\(AlertKind.consumerLag):\(row.process)"
                        holding.insert(key)
                        try AlertStore.raise(db, key: key, kind: AlertKind.consumerLag,
                                             message: "consumer \(row.process) is \(lag) messages behind (threshold \(max))", now: now)
                    }
                    try AlertStore.resolve(db, kind: AlertKind.consumerLag, except: holding, now: now)
                default: break
                }
            }
        }
    }
}
