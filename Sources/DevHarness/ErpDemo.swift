import ErpAdapters
import ErpBookStore
import ErpSync
import Foundation
import LiveSyncTesting
import Logging
import Model

/// The local ERP server `livesync dev|demo --erp` runs (a real Tryton).
public typealias DevErpServer = TrytonServer

/// The merchant ERP of `livesync dev|demo --erp tryton`: a real Tryton on 127.0.0.1, seeded with
/// the session's stock, fed by `livesync-erp`, and audited at the end against LiveSync's book.
public enum ErpDemo {
    /// ERPs the dev cluster can run locally.
    public static let kinds = ["tryton"]

    /// Starts Tryton in `<dataDir>/tryton` with `stock` as its initial stock, and the target
    /// `livesync-erp` is told about (batches of 100, every 500 ms, quick retries for a demo).
    public static func startTryton(dataDirectory: String, stock: [TrytonServer.Stock]?, logger: Logger) async throws -> (TrytonServer, ErpDevTarget) {
        // Beside the cluster's directory, which the dev cluster resets when it starts.
        let dir = "\(dataDirectory)-tryton"
        try? FileManager.default.removeItem(atPath: dir)
        logger.info("starting Tryton (installs it on first use; see scripts/tryton.sh)")
        let server = try await TrytonServer.start(in: dir, stock: stock)
        let target = ErpDevTarget(
            kind: "tryton", target: "tryton", serverURL: server.url, database: server.database, login: server.login,
            environment: [
                "LIVESYNC_ERP_TRYTON_URL": server.url, "LIVESYNC_ERP_TRYTON_DATABASE": server.database,
                "LIVESYNC_ERP_TRYTON_LOGIN": server.login, "LIVESYNC_ERP_TRYTON_PASSWORD": server.password,
                "LIVESYNC_ERP_BATCH_ORDERS": "100", "LIVESYNC_ERP_BATCH_EVERY_MS": "500",
                "LIVESYNC_ERP_CALLS_PER_SECOND": "50", "LIVESYNC_ERP_MAX_BACKOFF_MS": "4000",
                // Tryton on SQLite writes one transaction at a time: concurrent calls only lock each other out.
                "LIVESYNC_ERP_CONCURRENCY": "1",
            ])
        return (server, target)
    }

    /// What Tryton holds against what LiveSync decided.
    public struct Audit: Codable, Sendable, Equatable {
        /// Synced orders (per warehouse document) present in Tryton and not cancelled.
        public var written = 0
        /// Synced orders with no live sale in Tryton.
        public var missing = 0
        /// References with more than one sale: must be 0.
        public var duplicates = 0
        /// Orders LiveSync cancelled whose sale in Tryton is not cancelled.
        public var notCancelled = 0
        /// SKU-warehouses whose Tryton forecast is not initial stock − units LiveSync sold.
        public var stockMismatchedSkus = 0
    }

    /// Compares every sale in Tryton with the read model's decisions and stock.
    /// - Parameters:
    ///   - decisions: every order's decision (the read model's).
    ///   - orders: the warehouses of each order (to know its references).
    ///   - sold: units reserved per `sku@warehouse` (synced orders only).
    public static func audit(_ server: TrytonServer, decisions: [ErpBookView.Decision], warehousesOf: [String: [String]],
                             initial: [String: Int64], sold: [String: Int64]) async throws -> Audit {
        let adapter = TrytonAdapter(configuration: server.configuration)
        let rows = try await adapter.searchRead(model: "sale.sale", domain: [], fields: ["reference", "state"])
        var byReference: [String: [String]] = [:]
        for r in rows {
            guard let ref = r["reference"] as? String, !ref.isEmpty else { continue }
            byReference[ref, default: []].append(r["state"] as? String ?? "")
        }
        var audit = Audit()
        audit.duplicates = byReference.values.filter { $0.count > 1 }.count
        // Whether a sale is live is the adapter's reading (a processed sale whose shipments were
        // cancelled stays "processing" in Tryton, with every move cancelled).
        var expected: [(status: String, reference: String)] = []
        for d in decisions where d.status == "synced" || d.status == "cancelled" {
            let whs = warehousesOf[d.orderID] ?? []
            for w in whs { expected.append((d.status, ErpFieldMapping.reference(orderID: d.orderID, warehouse: w, split: whs.count > 1))) }
        }
        var state: [String: ErpDocumentState] = [:]
        let refs = expected.map(\.reference).filter { byReference[$0] != nil }
        for start in stride(from: 0, to: refs.count, by: 500) {
            for (ref, doc) in try await adapter.lookup(references: Array(refs[start..<min(start + 500, refs.count)])) { state[ref] = doc.state }
        }
        for e in expected {
            let live = state[e.reference].map { $0 != .cancelled } ?? false
            if e.status == "synced" { if live { audit.written += 1 } else { audit.missing += 1 } } else if live { audit.notCancelled += 1 }
        }
        let levels = try await adapter.stockLevels(materials: [])
        for level in levels {
            let key = "\(level.material)@\(level.warehouse)"
            guard let start = initial[key] else { continue }
            if start - level.available != sold[key, default: 0] { audit.stockMismatchedSkus += 1 }
        }
        return audit
    }

    /// Waits until the `livesync-erp` instances own every partition and have nothing queued or
    /// unconsumed (three answers in a row, a second apart: the consumer's lag is refreshed about
    /// once a second).
    /// - Returns: the seconds it took, or nil at the deadline.
    public static func waitForDrain(_ client: ErpClient, timeout: Duration) async throws -> Double? {
        let start = ContinuousClock.now
        var quiet = 0
        while ContinuousClock.now - start < timeout {
            let statuses = (try? await client.status()) ?? []
            // Every partition owned (an instance rejoining owns none and sees nothing queued).
            let owned = Set(statuses.flatMap(\.partitions))
            if owned.count == Int(Topics.partitions) && statuses.allSatisfy({ $0.queued == 0 && $0.consumerLag == 0 }) {
                quiet += 1
                if quiet >= 3 {
                    let d = ContinuousClock.now - start - .seconds(2)
                    return max(0, Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
                }
            } else {
                quiet = 0
            }
            try await Task.sleep(for: .seconds(1))
        }
        return nil
    }
}
