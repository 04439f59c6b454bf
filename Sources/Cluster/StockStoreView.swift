import Foundation
import GRDB

/// The stock store as the whole cluster holds it: each source partition's rows come from the
/// instance database holding the tip of that partition's changelog chain (its current or last
/// owner), since stock instances keep their state on their own disks.
public struct StockStoreView: Sendable {
    public struct Row: Sendable, Hashable {
        public var sku: String
        public var warehouse: String
        public var onHand: Int64
        public var reserved: Int64
        public var partition: Int32
        public var available: Int64 { onHand - reserved }
    }

    public var rows: [Row] = []
    /// Adjustment ids applied, per partition owner.
    public var adjustmentIDs: Set<String> = []
    /// Next offset per (topic, partition) as the owning database committed it.
    public var offsets: [String: Int64] = [:]
    /// Which database each partition was read from.
    public var owners: [Int32: String] = [:]

    /// The stock databases of a dev cluster's data directory (`stock.sqlite`, `stock-2.sqlite`, …).
    public static func databases(in directory: String) -> [String] {
        (1...9).map { "\(directory)/\($0 == 1 ? "stock" : "stock-\($0)").sqlite" }.filter { FileManager.default.fileExists(atPath: $0) }
    }

    public static func read(_ paths: [String], group: String = "livesync-stock") throws -> StockStoreView {
        var best: [Int32: (seq: Int64, path: String)] = [:]
        var queues: [String: DatabaseQueue] = [:]
        for path in paths where FileManager.default.fileExists(atPath: path) {
            var config = Configuration()
            config.readonly = true
            config.busyMode = .timeout(10)
            let q = try DatabaseQueue(path: path, configuration: config)
            queues[path] = q
            try q.read { db in
                guard try db.tableExists("changelog_heads") else { return }
                for r in try GRDB.Row.fetchAll(db, sql: "SELECT partition, seq FROM changelog_heads WHERE group_id = ?", arguments: [group]) {
                    let p: Int32 = r[0], seq: Int64 = r[1]
                    if seq > best[p]?.seq ?? -1 { best[p] = (seq, path) }
                }
            }
        }
        var view = StockStoreView()
        for (p, owner) in best {
            view.owners[p] = owner.path
            try queues[owner.path]!.read { db in
                for r in try GRDB.Row.fetchAll(db, sql: "SELECT sku, warehouse, on_hand, reserved FROM stock WHERE partition = ?", arguments: [p]) {
                    view.rows.append(Row(sku: r[0], warehouse: r[1], onHand: r[2], reserved: r[3], partition: p))
                }
                for id in try String.fetchAll(db, sql: "SELECT adjustment_id FROM stock_adjustments_applied WHERE partition = ?", arguments: [p]) {
                    view.adjustmentIDs.insert(id)
                }
                for r in try GRDB.Row.fetchAll(db, sql: "SELECT topic, next_offset FROM consumer_offsets WHERE group_id = ? AND partition = ?", arguments: [group, p]) {
                    view.offsets["\(r[0] as String)[\(p)]"] = r[1]
                }
            }
        }
        return view
    }
}
