import Foundation
import GRDB
import GRDBSQLite
import Kafka
import Model
import Worker

/// Applies order lines and stock adjustments to the stock store, one SKU partition's single
/// writer at a time, so no lock is ever taken on a SKU.
///
/// Guarantees: available stock never goes below zero; a line (by event id) or an adjustment
/// (by adjustment id) applied twice changes nothing the second time; every line gets exactly
/// one reservation decision, published to `stock.reservations`.
///
/// Every batch also yields, per source partition, a `StockDelta` for `stock.changelog`, so a member
/// that gains a partition (or lost its disk) rebuilds exactly the same rows.
public final class StockProcessor: ChangelogProcessor {
    public init() {}

    public var changelogTopic: String { Topics.stockChangelog }
    /// Reservations are recreated from the changelog delta (see `outputs(ofRestored:)`).
    public var derivedOutputTopic: String? { Topics.stockReservations }

    struct Key: Hashable {
        var sku: String
        var warehouse: String
    }

    public func prepare(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS stock (
                sku TEXT NOT NULL, warehouse TEXT NOT NULL,
                on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL,
                updated_at_us INTEGER NOT NULL,
                partition INTEGER NOT NULL,
                CHECK (reserved >= 0 AND on_hand >= reserved),
                PRIMARY KEY (sku, warehouse)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS stock_lines (
                event_id TEXT PRIMARY KEY, order_id TEXT NOT NULL,
                sku TEXT NOT NULL, warehouse TEXT NOT NULL, quantity INTEGER NOT NULL,
                status INTEGER NOT NULL, -- 1 reserved, 2 rejected, 3 released
                decided_at_us INTEGER NOT NULL,
                partition INTEGER NOT NULL) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS stock_adjustments_applied (
                adjustment_id TEXT PRIMARY KEY, sku TEXT NOT NULL, warehouse TEXT NOT NULL,
                kind INTEGER NOT NULL, quantity INTEGER NOT NULL, applied_at_us INTEGER NOT NULL,
                partition INTEGER NOT NULL) WITHOUT ROWID;
            """)
    }

    /// Scans the tables (no index on `partition`: an index would cost every line's insert, and
    /// dropping happens only before a restore from scratch, usually on an empty disk).
    public func dropPartition(_ partition: Int32, db: Database) throws {
        for table in ["stock", "stock_lines", "stock_adjustments_applied"] {
            try db.execute(sql: "DELETE FROM \(table) WHERE partition = ?", arguments: [partition])
        }
    }

    public func restore(_ payload: [UInt8], partition: Int32, db: Database, output: inout BatchOutput) throws {
        guard !payload.isEmpty else { return }
        let delta = try StockDelta.decode(payload)
        let row = try db.cachedStatement(sql: """
            INSERT INTO stock (sku, warehouse, on_hand, reserved, updated_at_us, partition) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved,
                updated_at_us = excluded.updated_at_us, partition = excluded.partition
            """)
        for r in delta.rows { try row.execute(arguments: [r.sku, r.warehouse, r.onHand, r.reserved, delta.decidedAtUs, partition]) }
        let line = try db.cachedStatement(sql: """
            INSERT OR REPLACE INTO stock_lines (event_id, order_id, sku, warehouse, quantity, status, decided_at_us, partition)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for l in delta.lines { try line.execute(arguments: [l.eventID, l.orderID, l.sku, l.warehouse, l.quantity, Int(l.status), delta.decidedAtUs, partition]) }
        let adjustment = try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO stock_adjustments_applied (adjustment_id, sku, warehouse, kind, quantity, applied_at_us, partition)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        for a in delta.adjustments { try adjustment.execute(arguments: [a.id, a.sku, a.warehouse, Int(a.kind), a.quantity, delta.decidedAtUs, partition]) }
    }

    /// A line's decision as `stock.reservations` carries it.
    static func reservation(event: String, order: String, lineNo: UInt32, lineCount: UInt32, sku: String, warehouse: String,
                            quantity: Int64, reserved: Bool, availableAfter: Int64, at: Int64) -> Reservation {
        var r = Reservation()
        r.eventID = event
        r.orderID = order
        r.lineNo = lineNo
        r.sku = sku
        r.warehouse = warehouse
        r.quantity = quantity
        r.status = reserved ? .reserved : .rejected
        r.availableAfter = availableAfter
        r.lineCount = lineCount
        r.decidedAtUs = at
        return r
    }

    /// The reservations the delta's decisions published (releases publish none).
    public func outputs(ofRestored payload: [UInt8], partition: Int32, output: inout BatchOutput) throws {
        guard !payload.isEmpty else { return }
        let delta = try StockDelta.decode(payload)
        for l in delta.lines where l.status == 1 || l.status == 2 {
            let r = Self.reservation(event: l.eventID, order: l.orderID, lineNo: l.lineNo, lineCount: l.lineCount, sku: l.sku, warehouse: l.warehouse,
                                     quantity: l.quantity, reserved: l.status == 1, availableAfter: l.availableAfter, at: delta.decidedAtUs)
            output.emit(topic: Topics.stockReservations, key: r.orderID, value: r.bytes)
        }
    }

    public func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        let now = Clock.nowMicros()
        var levels: [Key: StockLevel] = [:]
        var dirty: Set<Key> = []
        let select = try db.cachedStatement(sql: "SELECT on_hand, reserved FROM stock WHERE sku = ? AND warehouse = ?")
        func level(_ key: Key) throws -> StockLevel {
            if let l = levels[key] { return l }
            let row = try Row.fetchOne(select, arguments: [key.sku, key.warehouse])
            let l = row.map { StockLevel(onHand: $0[0], reserved: $0[1]) } ?? StockLevel()
            levels[key] = l
            return l
        }
        let insertLine = LineInsert(try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO stock_lines (event_id, order_id, sku, warehouse, quantity, status, decided_at_us, partition)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """), db: db)
        let insertAdjustment = try db.cachedStatement(sql: """
            INSERT OR IGNORE INTO stock_adjustments_applied (adjustment_id, sku, warehouse, kind, quantity, applied_at_us, partition)
            VALUES (?, ?, ?, ?, ?, ?, ?)
            """)
        // Each source partition's delta for the changelog, built as the batch is applied.
        var deltas: [Int32: StockDelta.Writer] = [:]
        var keyPartition: [Key: Int32] = [:]

        // Decoding is pure: spread it over the cores. Decisions and SQL stay in order, on this thread.
        let decoded: [Result<OrderLine, any Error>?] = ParallelMap.map(messages) { m in
            m.topic == Topics.orderLines ? Result { try OrderLine(serializedBytes: m.value) } : nil
        }
        var reservations: [Reservation] = []
        reservations.reserveCapacity(messages.count)
        var hot: (key: Key, level: StockLevel, dirty: Bool)?
        for (index, message) in messages.enumerated() {
            switch message.topic {
            case Topics.orderLines:
                let line: OrderLine
                switch decoded[index] {
                case .success(let l)?: line = l
                case .failure(let error)?:
                    output.deadLetter(message, error: "not an OrderLine: \(error)")
                    continue
                case nil: continue
                }
                guard !line.eventID.isEmpty, !line.sku.isEmpty, line.quantity > 0 else {
                    output.deadLetter(message, error: "order line needs event_id, sku and quantity > 0")
                    continue
                }
                // A hot SKU's lines come in long runs: keep its level at hand instead of hashing per line.
                if hot?.key.sku != line.sku || hot?.key.warehouse != line.warehouse {
                    if let h = hot { levels[h.key] = h.level }
                    let key = Key(sku: line.sku, warehouse: line.warehouse)
                    hot = (key, try level(key), false)
                }
                var l = hot!.level
                let reserved = l.reserve(line.quantity)
                guard try insertLine.insert(line, status: reserved ? 1 : 2, now: now, partition: message.partition) else { continue }  // duplicate line: already decided
                deltas[message.partition, default: StockDelta.Writer(now: now)].line(
                    line.eventID, order: line.orderID, sku: line.sku, warehouse: line.warehouse, quantity: line.quantity, status: reserved ? 1 : 2,
                    lineNo: line.lineNo, lineCount: line.lineCount, availableAfter: l.available)
                if reserved {
                    hot!.level = l
                    if !hot!.dirty { dirty.insert(hot!.key); hot!.dirty = true; keyPartition[hot!.key] = message.partition }
                }
                let r = Self.reservation(event: line.eventID, order: line.orderID, lineNo: line.lineNo, lineCount: line.lineCount, sku: line.sku,
                                         warehouse: line.warehouse, quantity: line.quantity, reserved: reserved, availableAfter: l.available, at: now)
                reservations.append(r)

            case Topics.stockAdjustments:
                // Adjustments read and write `levels` directly: hand the hot level back first.
                if let h = hot { levels[h.key] = h.level; hot = nil }
                let adj: StockAdjustment
                do { adj = try StockAdjustment(serializedBytes: message.value) } catch {
                    output.deadLetter(message, error: "not a StockAdjustment: \(error)")
                    continue
                }
                guard !adj.adjustmentID.isEmpty else {
                    output.deadLetter(message, error: StockRuleError.missingField("adjustment_id").description)
                    continue
                }
                switch adj.kind {
                case .release:
                    guard let row = try Row.fetchOne(try db.cachedStatement(sql: "SELECT sku, warehouse, quantity, status, order_id FROM stock_lines WHERE event_id = ?"), arguments: [adj.releaseEventID]) else {
                        output.deadLetter(message, error: "release of unknown line \(adj.releaseEventID)")
                        continue
                    }
                    let status: Int = row[3]
                    guard status == 1 else { continue }  // rejected or already released: nothing to return
                    let key = Key(sku: row[0], warehouse: row[1])
                    var l = try level(key)
                    l.release(row[2])
                    levels[key] = l
                    dirty.insert(key)
                    keyPartition[key] = message.partition
                    try db.cachedStatement(sql: "UPDATE stock_lines SET status = 3, decided_at_us = ? WHERE event_id = ?").execute(arguments: [now, adj.releaseEventID])
                    deltas[message.partition, default: StockDelta.Writer(now: now)].line(adj.releaseEventID, order: row[4], sku: key.sku, warehouse: key.warehouse, quantity: row[2], status: 3)
                case .set, .delta, .erpSnapshot:
                    guard !adj.sku.isEmpty else {
                        output.deadLetter(message, error: StockRuleError.missingField("sku").description)
                        continue
                    }
                    let key = Key(sku: adj.sku, warehouse: adj.warehouse)
                    var l = try level(key)
                    do {
                        switch adj.kind {
                        case .set: try l.setAvailable(adj.quantity)
                        case .erpSnapshot:
                            let short = try l.setFromErp(available: adj.quantity, recorded: adj.erpRecorded)
                            if short > 0 { output.count(.erpStockShort, by: Int(short)) }
                        default: try l.adjust(by: adj.quantity)
                        }
                    } catch {
                        output.deadLetter(message, error: error.description)
                        continue
                    }
                    try insertAdjustment.execute(arguments: [adj.adjustmentID, adj.sku, adj.warehouse, adj.kind.rawValue, adj.quantity, now, message.partition])
                    guard db.changesCount == 1 else { continue }  // duplicate adjustment
                    levels[key] = l
                    dirty.insert(key)
                    keyPartition[key] = message.partition
                    deltas[message.partition, default: StockDelta.Writer(now: now)].adjustment(adj.adjustmentID, sku: adj.sku, warehouse: adj.warehouse, kind: UInt8(truncatingIfNeeded: adj.kind.rawValue), quantity: adj.quantity)
                case .unspecified, .UNRECOGNIZED:
                    output.deadLetter(message, error: "unknown adjustment kind \(adj.kind.rawValue)")
                }

            default:
                output.deadLetter(message, error: "stock does not consume topic \(message.topic)")
            }
        }

        if let h = hot { levels[h.key] = h.level }
        var reservedCount = 0
        for r in reservations where r.status == .reserved { reservedCount += 1 }
        output.count(.linesReserved, by: reservedCount)
        output.count(.linesRejected, by: reservations.count - reservedCount)
        // Encoding is pure too.
        let encoded = ParallelMap.map(reservations) { $0.bytes }
        for (r, bytes) in zip(reservations, encoded) {
            output.emit(topic: Topics.stockReservations, key: r.orderID, value: bytes)
        }

        let upsert = try db.cachedStatement(sql: """
            INSERT INTO stock (sku, warehouse, on_hand, reserved, updated_at_us, partition) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (sku, warehouse) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, updated_at_us = excluded.updated_at_us
            """)
        for key in dirty {
            let l = levels[key]!
            precondition(l.available >= 0, "stock rules let available go negative for \(key)")
            let p = keyPartition[key]!
            try upsert.execute(arguments: [key.sku, key.warehouse, l.onHand, l.reserved, now, p])
            deltas[p, default: StockDelta.Writer(now: now)].row(sku: key.sku, warehouse: key.warehouse, onHand: l.onHand, reserved: l.reserved)
        }
        for (p, delta) in deltas { output.changelog(partition: p, payload: delta.encoded()) }
    }
}

/// The per-line insert of the hot path, bound straight through SQLite's C API: GRDB's
/// `StatementArguments` boxing costs more than the insert itself at hundreds of thousands of lines/s.
struct LineInsert {
    let statement: Statement
    let db: Database

    init(_ statement: Statement, db: Database) {
        self.statement = statement
        self.db = db
    }

    /// Inserts the line's decision; `false` when the event id was already decided (a duplicate).
    func insert(_ line: OrderLine, status: Int32, now: Int64, partition: Int32) throws -> Bool {
        let stmt = statement.sqliteStatement
        sqlite3_reset(stmt)
        let rc: Int32 = line.eventID.withCString { event in
            line.orderID.withCString { order in
                line.sku.withCString { sku in
                    line.warehouse.withCString { wh in
                        // SQLITE_STATIC (nil): the strings outlive the step below.
                        sqlite3_bind_text(stmt, 1, event, -1, nil)
                        sqlite3_bind_text(stmt, 2, order, -1, nil)
                        sqlite3_bind_text(stmt, 3, sku, -1, nil)
                        sqlite3_bind_text(stmt, 4, wh, -1, nil)
                        sqlite3_bind_int64(stmt, 5, line.quantity)
                        sqlite3_bind_int(stmt, 6, status)
                        sqlite3_bind_int64(stmt, 7, now)
                        sqlite3_bind_int(stmt, 8, partition)
                        let rc = sqlite3_step(stmt)
                        sqlite3_clear_bindings(stmt)
                        return rc
                    }
                }
            }
        }
        guard rc == SQLITE_DONE else {
            throw DatabaseError(resultCode: ResultCode(rawValue: rc), message: String(cString: sqlite3_errmsg(db.sqliteConnection)), sql: "INSERT INTO stock_lines")
        }
        return sqlite3_changes(db.sqliteConnection) == 1
    }
}
