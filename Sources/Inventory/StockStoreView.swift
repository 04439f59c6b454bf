import Foundation
import GRDB
import Worker

/// The stock store as the whole cluster holds it: each source partition's rows come from the
/// instance database holding the tip of that partition's changelog chain (its current or last
/// owner), since stock instances keep their state on their own disks.
///
/// Read by everything that shows or checks stock (`livesync inspect`, the dashboard, the
/// `stock_low` alert rule, the demo and chaos tools), so a SKU whose partition moved to a second
/// instance is read from that instance's database, not from a stale copy in the first one.
public struct StockStoreView: Sendable {
    public struct Row: Sendable, Hashable {
        public var sku: String
        public var warehouse: String
        public var onHand: Int64
        public var reserved: Int64
        public var partition: Int32
        /// When the level last changed (the batch that wrote it).
        public var updatedAtUs: Int64 = 0
        public var available: Int64 { onHand - reserved }
    }

    /// Per SKU and warehouse, the units of its lines still reserved and its latest line decision.
    public struct LineTotals: Sendable, Hashable {
        public var sku: String
        public var warehouse: String
        public var partition: Int32
        public var reservedUnits: Int64
        public var lastDecidedAtUs: Int64
    }

    /// What a read fetches besides the owners (each costs a scan of its table per database).
    public struct Parts: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Stock levels (`stock`).
        public static let rows = Parts(rawValue: 1)
        /// Adjustment ids applied (`stock_adjustments_applied`).
        public static let adjustmentIDs = Parts(rawValue: 2)
        /// Consumer positions (`consumer_offsets`).
        public static let offsets = Parts(rawValue: 4)
        /// Reserved line totals per SKU (`stock_lines`, aggregated in SQLite).
        public static let lineTotals = Parts(rawValue: 8)
        public static let all: Parts = [.rows, .adjustmentIDs, .offsets, .lineTotals]
    }

    public var rows: [Row] = []
    /// Adjustment ids applied, per partition owner.
    public var adjustmentIDs: Set<String> = []
    /// Next offset per (topic, partition) as the owning database committed it, keyed `topic[partition]`.
    public var offsets: [String: Int64] = [:]
    /// The same positions with their topic and partition, for tools that check them.
    public var positions: [(topic: String, partition: Int32, nextOffset: Int64)] = []
    public var lineTotals: [LineTotals] = []
    /// Which database each partition was read from.
    public var owners: [Int32: String] = [:]

    /// The stock databases of a dev cluster's data directory (`stock.sqlite`, `stock-2.sqlite`, …).
    public static func databases(in directory: String) -> [String] {
        databases(beside: "\(directory)/stock.sqlite")
    }

    /// The first instance's database and those of the further instances named after it in the
    /// same directory (`stock.sqlite` → `stock-2.sqlite` … `stock-9.sqlite`), the ones that exist.
    public static func databases(beside first: String) -> [String] {
        let url = URL(fileURLWithPath: first)
        let directory = url.deletingLastPathComponent().path
        let ext = url.pathExtension
        let base = ext.isEmpty ? url.lastPathComponent : String(url.lastPathComponent.dropLast(ext.count + 1))
        let others = (2...9).map { "\(directory)/\(base)-\($0)\(ext.isEmpty ? "" : ".\(ext)")" }
        return ([first] + others).filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// Reads `paths` (missing files are skipped). A partition comes from the database with the
    /// highest changelog head for it; partitions no database has a head for (a store written
    /// without a changelog) come from the first database of `paths` that exists.
    public static func read(_ paths: [String], group: String = "livesync-stock", parts: Parts = [.rows, .adjustmentIDs, .offsets]) throws -> StockStoreView {
        var best: [Int32: (seq: Int64, path: String)] = [:]
        var queues: [(path: String, queue: DatabaseQueue)] = []
        for path in paths where FileManager.default.fileExists(atPath: path) && !queues.contains(where: { $0.path == path }) {
            let q = try StateStore.openForReading(path, busyTimeout: 10)
            queues.append((path, q))
            try q.read { db in
                for (p, seq) in try StateStore.changelogSequences(db, group: group) where seq > best[p]?.seq ?? -1 {
                    best[p] = (seq, path)
                }
            }
        }
        var view = StockStoreView()
        for (p, owner) in best { view.owners[p] = owner.path }
        let first = queues.first?.path
        for (path, q) in queues {
            try q.read { db in
                // Another process creates and writes the schema: do not trust a cached "no such table".
                db.clearSchemaCache()
                // Rows of a partition are taken from its owner; `partition` is absent only from
                // stores written before partitions were recorded (one instance: all rows are its own).
                func owns(_ p: Int32) -> Bool { (view.owners[p] ?? first) == path }
                if parts.contains(.rows), try db.tableExists("stock") {
                    let hasPartition = try db.columns(in: "stock").contains { $0.name == "partition" }
                    let hasUpdated = try db.columns(in: "stock").contains { $0.name == "updated_at_us" }
                    for r in try GRDB.Row.fetchAll(db, sql: """
                        SELECT sku, warehouse, on_hand, reserved, \(hasPartition ? "partition" : "-1"), \(hasUpdated ? "updated_at_us" : "0") FROM stock
                        """) {
                        let p: Int32 = r[4]
                        guard owns(p) else { continue }
                        view.rows.append(Row(sku: r[0], warehouse: r[1], onHand: r[2], reserved: r[3], partition: p, updatedAtUs: r[5]))
                    }
                }
                if parts.contains(.lineTotals), try db.tableExists("stock_lines") {
                    for r in try GRDB.Row.fetchAll(db, sql: """
                        SELECT partition, sku, warehouse, SUM(CASE WHEN status = 1 THEN quantity ELSE 0 END), MAX(decided_at_us)
                        FROM stock_lines GROUP BY partition, sku, warehouse
                        """) {
                        let p: Int32 = r[0]
                        guard owns(p) else { continue }
                        view.lineTotals.append(LineTotals(sku: r[1], warehouse: r[2], partition: p, reservedUnits: r[3], lastDecidedAtUs: r[4]))
                    }
                }
                if parts.contains(.adjustmentIDs), try db.tableExists("stock_adjustments_applied") {
                    for r in try GRDB.Row.fetchAll(db, sql: "SELECT partition, adjustment_id FROM stock_adjustments_applied") where owns(r[0]) {
                        view.adjustmentIDs.insert(r[1])
                    }
                }
                if parts.contains(.offsets) {
                    for position in try StateStore.storedPositions(db, group: group) {
                        let (topic, p) = (position.partition.topic, position.partition.partition)
                        guard owns(p) else { continue }
                        view.offsets["\(topic)[\(p)]"] = position.next
                        view.positions.append((topic, p, position.next))
                    }
                }
            }
        }
        return view
    }
}
