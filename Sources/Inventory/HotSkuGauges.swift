import Bootstrap
import Foundation
import GRDB
import Logging
import Metrics
import ServiceLifecycle
import Telemetry
import Worker

/// Publishes available stock of the hottest SKUs (most units reserved) as gauges
/// (`livesync_stock_available_units{sku,warehouse}`), read from the stock store every few
/// seconds: off the consumer's path, one small indexed-free query on a table of SKUs.
public struct HotSkuGauges: Service {
    let store: StateStore
    let count: Int
    let interval: Duration
    let logger: Logger

    /// - Parameter count: how many SKUs to publish (default 10; `metrics.hotSkus`).
    public init(store: StateStore, count: Int = 10, interval: Duration = .seconds(2), logger: Logger) {
        self.store = store
        self.count = count
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var gauges: [String: Gauge] = [:]
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let rows = try await store.database.read { [count] db -> [(String, String, Int64)] in
                    guard try db.tableExists("stock") else { return [] }
                    return try Row.fetchAll(db, sql: "SELECT sku, warehouse, on_hand - reserved FROM stock ORDER BY reserved DESC, sku LIMIT ?", arguments: [count])
                        .map { ($0[0], $0[1], $0[2]) }
                }
                var seen: Set<String> = []
                for (sku, warehouse, available) in rows {
                    let key = "\(sku)@\(warehouse)"
                    seen.insert(key)
                    let gauge = gauges[key] ?? Gauge(label: MetricNames.stockAvailable, dimensions: [("sku", sku), ("warehouse", warehouse)])
                    gauges[key] = gauge
                    gauge.record(available)
                }
                for (key, gauge) in gauges where !seen.contains(key) {
                    gauge.destroy()
                    gauges[key] = nil
                }
            } catch {
                logger.warning("could not read hot SKUs for metrics", metadata: ["error": "\(error)"])
            }
            guard await pauseUnlessShuttingDown(for: interval) else { break }
        }
    }
}
