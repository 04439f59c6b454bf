import Foundation
import GRDB
import Worker

/// The alert store's read API (`alerting.sqlite`, which only `livesync-alerting` writes): what
/// alerting serves of it over HTTP (`AlertingAPI`, for the dashboard). Read-only; `read` runs
/// its body in one read transaction.
public final class AlertStoreView: Sendable {
    private let queue: DatabaseQueue

    /// The store at `path`, or nil while alerting has not created it.
    public static func ifPresent(path: String) throws -> AlertStoreView? {
        FileManager.default.fileExists(atPath: path) ? AlertStoreView(queue: try StateStore.openForReading(path)) : nil
    }

    private init(queue: DatabaseQueue) { self.queue = queue }

    public func read<T>(_ body: (Reader) throws -> T) throws -> T {
        try queue.read { db in
            // Alerting creates and migrates the schema: never trust a cached "no such table".
            db.clearSchemaCache()
            return try body(Reader(db: db))
        }
    }

    /// An alert as operators see it listed.
    public struct ListedAlert: Sendable, Codable, Equatable {
        public var kind: String
        public var message: String
        public var createdAtUs: Int64
        public var resolvedAtUs: Int64?
    }

    public struct Reader {
        let db: Database

        /// The latest alerts, newest first.
        public func recentAlerts(limit: Int) throws -> [ListedAlert] {
            guard try db.tableExists("alerts") else { return [] }
            return try Row.fetchAll(db, sql: "SELECT kind, message, created_at_us, resolved_at_us FROM alerts ORDER BY id DESC LIMIT ?", arguments: [limit])
                .map { ListedAlert(kind: $0[0], message: $0[1], createdAtUs: $0[2], resolvedAtUs: $0[3]) }
        }

        /// The undecided orders alerting's last sweep found (including those dispatch had not read
        /// from `orders.placed` yet), ingested before `cutoff`, oldest first.
        public func unsyncedOrders(ingestedBefore cutoff: Int64, limit: Int) throws -> [(orderID: String, ingestedAtUs: Int64)] {
            guard try db.tableExists("alert_unsynced_orders") else { return [] }
            return try Row.fetchAll(db, sql: "SELECT order_id, ingested_at_us FROM alert_unsynced_orders WHERE ingested_at_us < ? ORDER BY 2, 1 LIMIT ?",
                                    arguments: [cutoff, limit]).map { (orderID: $0[0] as String, ingestedAtUs: $0[1] as Int64) }
        }
    }
}
