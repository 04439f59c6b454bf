import ErpAdapters
import Foundation
import GRDB

/// `livesync-erp`'s tables, in the consumer's state store (so an order is queued in the same
/// transaction as the offset that brought it): the queue of ERP work, the documents the ERP
/// confirmed, and the pending queue (待处理队列) of orders the ERP refused. Nobody else writes them.
///
/// Rows are per ERP document (`reference`); `partition` is the `orders.outcomes` partition the
/// order came from, so an instance only drains the partitions it owns (one writer per order).
public enum ErpSyncStore {
    /// What a queue row asks of the ERP.
    public enum Work: String, Sendable, Codable {
        /// Create the sale order (the order was paid and its stock reserved).
        case create
        /// Cancel it (refunded or cancelled before shipping).
        case cancel
        /// Record its shipment.
        case ship
    }

    public static func createSchema(_ db: Database) throws {
        try db.execute(sql: """
            CREATE TABLE IF NOT EXISTS erp_queue (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                reference TEXT NOT NULL, order_id TEXT NOT NULL, work TEXT NOT NULL,
                partition INTEGER NOT NULL, payload BLOB NOT NULL,
                enqueued_at_us INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_us INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '');
            CREATE UNIQUE INDEX IF NOT EXISTS erp_queue_once ON erp_queue (reference, work);
            CREATE INDEX IF NOT EXISTS erp_queue_order ON erp_queue (order_id);
            CREATE TABLE IF NOT EXISTS erp_documents (
                reference TEXT PRIMARY KEY, order_id TEXT NOT NULL, warehouse TEXT NOT NULL,
                erp_id TEXT NOT NULL, number TEXT NOT NULL, state TEXT NOT NULL,
                written_at_us INTEGER NOT NULL, updated_at_us INTEGER NOT NULL) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS erp_documents_order ON erp_documents (order_id);
            CREATE TABLE IF NOT EXISTS erp_pending (
                reference TEXT NOT NULL, work TEXT NOT NULL, order_id TEXT NOT NULL,
                partition INTEGER NOT NULL, payload BLOB NOT NULL,
                code TEXT NOT NULL, message TEXT NOT NULL, since_us INTEGER NOT NULL, attempts INTEGER NOT NULL,
                PRIMARY KEY (reference, work)) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS erp_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
            """)
    }

    /// A unit of ERP work.
    public struct Item: Sendable, Equatable {
        public var seq: Int64
        public var reference: String
        public var orderID: String
        public var work: Work
        public var partition: Int32
        /// `create`: the `Order` (protobuf); `ship`: the `ShipmentShipped`; `cancel`: empty.
        public var payload: [UInt8]
        public var enqueuedAtUs: Int64
        public var attempts: Int

        public init(seq: Int64 = 0, reference: String, orderID: String, work: Work, partition: Int32, payload: [UInt8], enqueuedAtUs: Int64, attempts: Int = 0) {
            self.seq = seq
            self.reference = reference
            self.orderID = orderID
            self.work = work
            self.partition = partition
            self.payload = payload
            self.enqueuedAtUs = enqueuedAtUs
            self.attempts = attempts
        }
    }

    /// An ERP document LiveSync created (or found by its reference).
    public struct DocumentRow: Sendable, Equatable {
        public var document: ErpDocument
        public var orderID: String
        public var warehouse: String
    }

    /// An order the ERP refused, waiting for the operator.
    public struct PendingRow: Sendable, Equatable, Codable {
        public var reference: String
        public var orderID: String
        public var work: Work
        public var code: String
        public var message: String
        public var sinceUs: Int64
        public var attempts: Int
    }

    // MARK: Writes (the processor's batch transaction and the writer's)

    /// Queues work once per reference and kind; a redelivered message changes nothing.
    /// - Returns: whether it was queued now.
    @discardableResult
    public static func enqueue(_ item: Item, _ db: Database) throws -> Bool {
        if item.work == .create, try document(item.reference, db) != nil { return false }
        if try Int.fetchOne(db, sql: "SELECT 1 FROM erp_pending WHERE reference = ? AND work = ?", arguments: [item.reference, item.work.rawValue]) != nil { return false }
        try db.execute(sql: """
            INSERT OR IGNORE INTO erp_queue (reference, order_id, work, partition, payload, enqueued_at_us)
            VALUES (?, ?, ?, ?, ?, ?)
            """, arguments: [item.reference, item.orderID, item.work.rawValue, item.partition, Data(item.payload), item.enqueuedAtUs])
        return db.changesCount == 1
    }

    /// Due items of the owned partitions, oldest first.
    public static func due(partitions: Set<Int32>, now: Int64, limit: Int, _ db: Database) throws -> [Item] {
        guard !partitions.isEmpty else { return [] }
        return try Row.fetchAll(db, sql: """
            SELECT seq, reference, order_id, work, partition, payload, enqueued_at_us, attempts FROM erp_queue
            WHERE next_attempt_us <= ? AND partition IN (\(list(partitions))) ORDER BY seq LIMIT ?
            """, arguments: [now, limit]).map(item)
    }

    static func item(_ r: Row) -> Item {
        Item(seq: r[0], reference: r[1], orderID: r[2], work: Work(rawValue: r[3]) ?? .create, partition: r[4],
             payload: [UInt8]((r[5] as Data?) ?? Data()), enqueuedAtUs: r[6], attempts: r[7])
    }

    public static func done(_ seq: Int64, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM erp_queue WHERE seq = ?", arguments: [seq])
    }

    public static func retryLater(_ seq: Int64, at: Int64, error: String, _ db: Database) throws {
        try db.execute(sql: "UPDATE erp_queue SET attempts = attempts + 1, next_attempt_us = ?, last_error = ? WHERE seq = ?", arguments: [at, error, seq])
    }

    /// Moves an item the ERP refused to the pending queue with the ERP's reason.
    public static func refuse(_ item: Item, error: ErpError, now: Int64, _ db: Database) throws {
        try db.execute(sql: """
            INSERT OR REPLACE INTO erp_pending (reference, work, order_id, partition, payload, code, message, since_us, attempts)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [item.reference, item.work.rawValue, item.orderID, item.partition, Data(item.payload), error.code, error.message, now, item.attempts + 1])
        try done(item.seq, db)
    }

    public static func record(_ document: ErpDocument, orderID: String, warehouse: String, now: Int64, _ db: Database) throws {
        try db.execute(sql: """
            INSERT INTO erp_documents (reference, order_id, warehouse, erp_id, number, state, written_at_us, updated_at_us)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (reference) DO UPDATE SET erp_id = excluded.erp_id, number = excluded.number,
                state = excluded.state, updated_at_us = excluded.updated_at_us
            """, arguments: [document.reference, orderID, warehouse, document.id, document.number, document.state.rawValue, now, now])
    }

    /// Puts pending items of `partitions` back in the queue (all, or those of `orderID`), due now.
    /// - Returns: how many were re-driven.
    @discardableResult
    public static func redrive(orderID: String?, partitions: Set<Int32>, now: Int64, _ db: Database) throws -> Int {
        let filter = " WHERE partition IN (\(list(partitions)))" + (orderID == nil ? "" : " AND (order_id = ? OR reference = ?)")
        let args: StatementArguments = orderID.map { [$0, $0] } ?? []
        try db.execute(sql: """
            INSERT OR IGNORE INTO erp_queue (reference, order_id, work, partition, payload, enqueued_at_us, attempts)
            SELECT reference, order_id, work, partition, payload, \(now), attempts FROM erp_pending\(filter)
            """, arguments: args)
        try db.execute(sql: "DELETE FROM erp_pending\(filter)", arguments: args)
        return db.changesCount
    }

    /// Drops queued and pending work of `orderID` of kind `work` (a create cancelled before it reached the ERP).
    public static func drop(orderID: String, work: Work, _ db: Database) throws {
        try db.execute(sql: "DELETE FROM erp_queue WHERE order_id = ? AND work = ?", arguments: [orderID, work.rawValue])
        try db.execute(sql: "DELETE FROM erp_pending WHERE order_id = ? AND work = ?", arguments: [orderID, work.rawValue])
    }

    public static func add(_ counter: String, _ n: Int, _ db: Database) throws {
        guard n != 0 else { return }
        try db.execute(sql: "INSERT INTO erp_counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", arguments: [counter, n])
    }

    // MARK: Reads (the typed read API)

    public static func document(_ reference: String, _ db: Database) throws -> DocumentRow? {
        try Row.fetchOne(db, sql: "SELECT reference, erp_id, number, state, order_id, warehouse FROM erp_documents WHERE reference = ?", arguments: [reference]).map(documentRow)
    }

    public static func documents(orderID: String, _ db: Database) throws -> [DocumentRow] {
        try Row.fetchAll(db, sql: "SELECT reference, erp_id, number, state, order_id, warehouse FROM erp_documents WHERE order_id = ? ORDER BY reference", arguments: [orderID]).map(documentRow)
    }

    static func documentRow(_ r: Row) -> DocumentRow {
        DocumentRow(document: ErpDocument(reference: r[0], id: r[1], number: r[2], state: ErpDocumentState(rawValue: r[3]) ?? .draft), orderID: r[4], warehouse: r[5])
    }

    /// The references of the order's work of this kind still queued or pending.
    public static func openReferences(orderID: String, work: Work, _ db: Database) throws -> [String] {
        try String.fetchAll(db, sql: "SELECT reference FROM erp_queue WHERE order_id = ? AND work = ? UNION SELECT reference FROM erp_pending WHERE order_id = ? AND work = ?",
                            arguments: [orderID, work.rawValue, orderID, work.rawValue])
    }

    /// Whether work of this kind is still queued or pending for the order.
    public static func hasOpen(orderID: String, work: Work, _ db: Database) throws -> Bool {
        try Int.fetchOne(db, sql: "SELECT 1 FROM erp_queue WHERE order_id = ? AND work = ? UNION ALL SELECT 1 FROM erp_pending WHERE order_id = ? AND work = ? LIMIT 1",
                         arguments: [orderID, work.rawValue, orderID, work.rawValue]) != nil
    }

    /// The pending queue of `partitions` (the owned ones: rows of partitions this instance lost
    /// are another instance's now, and come back to life only if the partition does).
    public static func pending(partitions: Set<Int32>, limit: Int = 1000, _ db: Database) throws -> [PendingRow] {
        try Row.fetchAll(db, sql: "SELECT reference, order_id, work, code, message, since_us, attempts FROM erp_pending WHERE partition IN (\(list(partitions))) ORDER BY since_us LIMIT ?", arguments: [limit]).map {
            PendingRow(reference: $0[0], orderID: $0[1], work: Work(rawValue: $0[2]) ?? .create, code: $0[3], message: $0[4], sinceUs: $0[5], attempts: $0[6])
        }
    }

    static func list(_ partitions: Set<Int32>) -> String {
        partitions.isEmpty ? "NULL" : partitions.sorted().map(String.init).joined(separator: ",")
    }

    /// Queue depth, pending count, and the oldest queued item's age base.
    public struct Counts: Sendable, Equatable, Codable {
        public var queued: Int
        public var pending: Int
        public var documents: Int
        public var oldestQueuedAtUs: Int64?
        public var lastError: String
    }

    /// The counts of `partitions` (the owned ones).
    public static func counts(partitions: Set<Int32>, _ db: Database) throws -> Counts {
        let p = list(partitions)
        let row = try Row.fetchOne(db, sql: """
            SELECT (SELECT COUNT(*) FROM erp_queue WHERE partition IN (\(p))), (SELECT COUNT(*) FROM erp_pending WHERE partition IN (\(p))),
                   (SELECT COUNT(*) FROM erp_documents),
                   (SELECT MIN(enqueued_at_us) FROM erp_queue WHERE partition IN (\(p))),
                   (SELECT last_error FROM erp_queue WHERE last_error != '' AND partition IN (\(p)) ORDER BY seq DESC LIMIT 1)
            """)!
        return Counts(queued: row[0], pending: row[1], documents: row[2], oldestQueuedAtUs: row[3], lastError: row[4] ?? "")
    }

    public static func counter(_ name: String, _ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "SELECT value FROM erp_counters WHERE name = ?", arguments: [name]) ?? 0
    }
}
