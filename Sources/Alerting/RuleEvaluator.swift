import Bootstrap
import Dispatch
import ErpSync
import Foundation
import GRDB
import Inspection
import Logging
import Model
import ReadModel
import Synchronization
import Telemetry
import Worker

/// Evaluates the configured rules against the read model (the ERP book's decisions and
/// undecided orders, the stock levels), `orders.placed`, the alert store and the running
/// processes: raises an alert per condition that holds and resolves the ones that ended.
final class RuleEvaluator: Sendable {
    let configuration: AlertingConfiguration
    let store: StateStore
    let logger: Logger
    private let lastAnswered = Mutex<[String: Int64]>([:])
    /// The minute whose stock sample was stored, and when old samples and counts were last dropped.
    private let sampledMinute = Mutex<Int64?>(nil)
    private let prunedMinute = Mutex<Int64?>(nil)
    /// When the process rules last asked every `/readyz`.
    private let processesCheckedAt = Mutex<Int64?>(nil)
    let unsyncedOrders: UnsyncedOrderFinder?

    init(configuration: AlertingConfiguration, store: StateStore, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        unsyncedOrders = configuration.book.map {
            UnsyncedOrderFinder(book: $0, kafka: configuration.kafka, dispatchGroup: configuration.dispatchGroup)
        }
    }

    func evaluate(now: Int64) async throws {
        var processRules: [AlertRule] = []
        try prune(now: now)
        for rule in configuration.rules.rules {
            // A read model or topic that cannot be read leaves the rule's alerts as they are; the
            // other rules go on.
            func readingTheBook(_ evaluate: () async throws -> Void) async throws {
                do { try await evaluate() } catch let stopped as StoppedOnRequest { throw stopped } catch {
                    logger.warning("\(rule.kind) could not be evaluated", metadata: ["error": "\(error)"])
                }
            }
            switch rule {
            case .orderUnsynced(let seconds):
                try await readingTheBook { try await evaluateUnsynced(seconds: seconds, now: now) }
            case .syncFailureRate(let threshold, let window, let minOrders):
                try await readingTheBook { try await evaluateFailureRate(threshold: threshold, windowSeconds: window, minOrders: minOrders, now: now) }
            case .stockLow(let safety, let minutes, let window, let resolveAfter):
                try await readingTheBook {
                    try await evaluateStock(safetyLevel: safety, sellOutMinutes: minutes, windowSeconds: window, resolveAfterSeconds: resolveAfter, now: now)
                }
            case .deadLetters(let quiet):
                try await store.database.write { try AlertStore.resolveQuiet($0, kind: AlertKind.deadLetter, quietMicros: Int64(quiet) * 1_000_000, now: now) }
            case .consumerLag, .processSilent, .erpDrain: processRules.append(rule)
            case .inspection: break  // InspectionSchedule runs it
            }
        }
        // At least twice within the shortest `process_silent` time, so it can hold for that long.
        let silentMs = configuration.rules.rules.compactMap { rule -> Int? in
            if case .processSilent(let seconds) = rule { return seconds * 500 } else { return nil }
        }.min() ?? Int.max
        let interval = min(configuration.processCheckInterval.wholeMicroseconds, silentMs == Int.max ? Int64.max : Int64(silentMs) * 1_000)
        let due = processesCheckedAt.withLock { last in
            guard last.map({ now - $0 >= interval || now < $0 }) ?? true else { return false }
            last = now
            return true
        }
        if !processRules.isEmpty && due { try await evaluateProcesses(processRules, now: now) }
    }

    /// Drops outcome counts older than the longest failure-rate window (an hour) and stock
    /// samples older than the longest sales-rate window, once a minute.
    func prune(now: Int64) throws {
        let minute = now / 60_000_000
        guard prunedMinute.withLock({ m in defer { m = minute }; return m != minute }) else { return }
        let rateWindow = configuration.rules.rules.compactMap { rule -> Int? in
            if case .stockLow(_, _, let window, _) = rule { return window } else { return nil }
        }.max() ?? 0
        try store.database.write { db in
            try db.execute(sql: "DELETE FROM alert_sku_reserved WHERE minute < ?", arguments: [minute - Int64(rateWindow / 60) - 1])
        }
    }

    /// `order_not_synced`: one alert while any order waits longer than `seconds` to be decided in
    /// the ERP book, found on the sweep (`UnsyncedOrderFinder`: the orders dispatch holds, from
    /// the read model, and those on `orders.placed` it has not read yet). The oldest late orders
    /// are kept in `alert_unsynced_orders` for the dashboard (`GET /alerts/unsynced`).
    func evaluateUnsynced(seconds: Int, now: Int64) async throws {
        guard let finder = unsyncedOrders else { return }
        let cutoff = now - Int64(seconds) * 1_000_000
        // The topic reads block: the finder runs them off the cooperative pool.
        let late = try await finder.find(cutoff: cutoff, listed: 1_000)
        try await store.database.write { db in
            let hadRows = try Bool.fetchOne(db, sql: "SELECT 1 FROM alert_unsynced_orders LIMIT 1") == true
            if hadRows { try db.execute(sql: "DELETE FROM alert_unsynced_orders") }
            let insert = try db.cachedStatement(sql: "INSERT OR IGNORE INTO alert_unsynced_orders (order_id, ingested_at_us, found_at_us) VALUES (?, ?, ?)")
            for order in late.oldest { try insert.execute(arguments: [order.orderID, order.ingestedAtUs, now]) }
            if late.count == 0 {
                try AlertStore.resolve(db, kind: AlertKind.orderNotSynced, except: [], now: now)
            } else {
                let sample = late.oldest.prefix(20).map(\.orderID).joined(separator: ", ")
                try AlertStore.raise(db, key: AlertKind.orderNotSynced, kind: AlertKind.orderNotSynced,
                                     message: "\(late.count)\(late.capped ? "+" : "") order(s) not synced to the ERP within \(seconds) s (\(late.waitingForStock) waiting for stock decisions, \(late.notReadByDispatch)\(late.capped ? "+" : "") not yet read by dispatch): \(sample)\(late.count > 20 ? ", …" : "")", now: now)
            }
        }
    }

    /// `sync_failure_rate`: rejected share of the decisions in the window, from the ERP book's
    /// decisions per second (`erp_summary_decisions`, kept by the read model with its copy).
    func evaluateFailureRate(threshold: Double, windowSeconds: Int, minOrders: Int, now: Int64) async throws {
        guard let book = configuration.book else { return }
        let counts = try await book.snapshot(BookQuery(decisionsSinceSecond: (now - Int64(windowSeconds) * 1_000_000) / 1_000_000))
        let (total, failed) = (counts.decisions ?? 0, counts.rejectedDecisions ?? 0)
        try await store.database.write { db in
            let rate = total > 0 ? Double(failed) / Double(total) : 0
            if total >= minOrders && rate > threshold {
                try AlertStore.raise(db, key: AlertKind.syncFailureRate, kind: AlertKind.syncFailureRate,
                                     message: String(format: "%.1f%% of the %d orders decided in the last %d s failed to sync (rejected), above %.1f%%", rate * 100, total, windowSeconds, threshold * 100), now: now)
            } else {
                try AlertStore.resolve(db, kind: AlertKind.syncFailureRate, except: [], now: now)
            }
        }
    }

    /// `stock_low`: available at or below the safety level, or selling out within N minutes.
    ///
    /// Levels come from the read model's copy of every stock partition (`stock.changelog`, so
    /// each SKU as the instance owning its partition committed it). The sales rate is the growth
    /// of the SKU's reserved units since the oldest sample within the window (sampled once a
    /// minute, net of releases). An alert resolves once its condition has not held for
    /// `resolveAfterSeconds`.
    func evaluateStock(safetyLevel: Int64, sellOutMinutes: Double?, windowSeconds: Int, resolveAfterSeconds: Int, now: Int64) async throws {
        guard let book = configuration.book else { return }
        let levels = try await book.snapshot(BookQuery(stock: true)).stock ?? []
        try await store.database.write { db in
            var rate: [String: Double] = [:]
            if sellOutMinutes != nil {
                let minute = now / 60_000_000
                if sampledMinute.withLock({ m in defer { m = minute }; return m != minute }) {
                    let sample = try db.cachedStatement(sql: """
                        INSERT OR IGNORE INTO alert_sku_reserved (sku, warehouse, minute, reserved, sampled_at_us) VALUES (?, ?, ?, ?, ?)
                        """)
                    for level in levels { try sample.execute(arguments: [level.sku, level.warehouse, minute, level.reserved, now]) }
                }
                var current: [String: Int64] = [:]
                for level in levels { current["\(level.sku)@\(level.warehouse)"] = level.reserved }
                // Per SKU, its oldest sample within the window (SQLite returns the row of MIN()).
                for row in try Row.fetchAll(db, sql: """
                    SELECT sku, warehouse, reserved, MIN(sampled_at_us) FROM alert_sku_reserved WHERE sampled_at_us >= ? GROUP BY sku, warehouse
                    """, arguments: [now - Int64(windowSeconds) * 1_000_000]) {
                    let key = "\(row[0] as String)@\(row[1] as String)"
                    let then: Int64 = row[2], at: Int64 = row[3]
                    guard let reserved = current[key], reserved > then else { continue }
                    // Over at least a minute, so a sample taken moments ago does not extrapolate a burst.
                    rate[key] = Double(reserved - then) / max(Double(now - at) / 60e6, 1)
                }
            }
            for level in levels {
                let (sku, warehouse, available) = (level.sku, level.warehouse, level.available)
                let key = "\(AlertKind.stockLow):\(sku):\(warehouse)"
                var reason: String?
                if available <= safetyLevel {
                    reason = available <= 0 ? "is sold out (available \(available))" : "is at \(available), at or below its safety level \(safetyLevel)"
                } else if let minutes = sellOutMinutes, let perMinute = rate["\(sku)@\(warehouse)"], perMinute > 0 {
                    let left = Double(available) / perMinute
                    if left <= minutes { reason = String(format: "sells out in %.1f min at %.0f units/min (available %d)", left, perMinute, available) }
                }
                if let reason {
                    try AlertStore.raise(db, key: key, kind: AlertKind.stockLow, message: "SKU \(sku) in warehouse \(warehouse) \(reason)", now: now)
                }
            }
            // `raise` just stamped the holding ones `now`, so only those quiet for the time resolve.
            try AlertStore.resolveQuiet(db, kind: AlertKind.stockLow, quietMicros: Int64(resolveAfterSeconds) * 1_000_000, now: now)
        }
    }

    /// `consumer_lag` and `process_silent`, from the `/readyz` of every process announced on
    /// `livesync.instances` (`InstanceDirectory`: announced, not stopped, heard from within its
    /// maximum age). If the topic cannot be read the alerts stay as they are until it can.
    func evaluateProcesses(_ rules: [AlertRule], now: Int64) async throws {
        guard let instances = configuration.instances else { return }
        let rows: [ProcessStatusRow]
        do { rows = try await ProcessStatus.collect(discovering: instances, timeout: .seconds(2)) } catch {
            logger.warning("consumer_lag and process_silent could not be evaluated: \(Topics.instances) is unreadable", metadata: ["error": "\(error)"])
            return
        }
        // Silent: no answer for the rule's time since it was last answered (or first listed). A
        // process announced from this very host whose pid is gone is dead at once (`pidAlive`);
        // one that stopped cleanly announced so and is no longer listed.
        let silent: [(String, Int64, Bool)] = lastAnswered.withLock { last in
            rows.map { row in
                if row.report != nil || last[row.process] == nil { last[row.process] = now }
                return (row.process, now - last[row.process]!, !row.pidAlive)
            }
        }
        // ERP targets: each livesync-erp instance's /erp/status (an unanswered one is process_silent's).
        var erp: [(String, ErpStatus)] = []
        if rules.contains(where: { if case .erpDrain = $0 { true } else { false } }) {
            for a in (try? await instances.instances()) ?? [] where a.group.hasPrefix("livesync-erp-") && !a.url.isEmpty {
                if let s = try? await ErpClient(urls: [a.url], timeout: .seconds(2)).status().first { erp.append((a.process, s)) }
            }
        }
        let erpStatuses = erp
        try await store.database.write { db in
            let erp = erpStatuses
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
                case .erpDrain(let maxSeconds, let pending):
                    var holding: Set<String> = []
                    for (process, s) in erp {
                        let key = "\(AlertKind.erpDrainSlow):\(process)"
                        if let eta = s.drainEtaSeconds, eta < 0 || eta > Double(maxSeconds) {
                            holding.insert(key)
                            let waiting = s.queued + Int(s.consumerLag)
                            let why = eta < 0 ? "写入停滞 (nothing written in the last minute)" : "预计 \(Int(eta)) 秒写完 (drain ETA \(Int(eta)) s > \(maxSeconds) s)"
                            try AlertStore.raise(db, key: key, kind: AlertKind.erpDrainSlow,
                                                 message: "ERP \(s.target) (\(s.kind)) 积压 \(waiting) 单, \(why); \(process); last error: \(s.statistics.lastError.isEmpty ? "-" : s.statistics.lastError)", now: now)
                        } else if pending && s.pending > 0 {
                            holding.insert(key)
                            try AlertStore.raise(db, key: key, kind: AlertKind.erpDrainSlow,
                                                 message: "ERP \(s.target) (\(s.kind)) 待处理队列有 \(s.pending) 单被拒 (\(process)): see `livesync erp pending`, fix, then `livesync erp retry --all`", now: now)
                        }
                    }
                    try AlertStore.resolve(db, kind: AlertKind.erpDrainSlow, except: holding, now: now)
                default: break
                }
            }
        }
    }
}
