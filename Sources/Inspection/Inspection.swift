import Bootstrap
import ErpBookStore
import Foundation
import GRDB
import Inventory
import Kafka
import Model
import Worker

/// Settings of a consistency inspection (健康巡检).
public struct InspectionConfiguration: Sendable {
    public var kafka: KafkaConfiguration
    /// The stock store (the first instance's database; those of further instances beside it,
    /// `stock-2.sqlite` …, are read too), the ERP book and (optional) the alert store.
    public var stockDatabase: String
    public var erpDatabase: String
    public var alertingDatabase: String?
    /// Orders and SKUs with activity younger than this are in flight, not mismatches. Default 30 s.
    public var graceSeconds: Double
    /// Problems listed per check (the counts are always complete). Default 20.
    public var maxListed: Int

    public init(kafka: KafkaConfiguration, stockDatabase: String, erpDatabase: String, alertingDatabase: String? = nil,
                graceSeconds: Double = 30, maxListed: Int = 20) {
        self.kafka = kafka
        self.stockDatabase = stockDatabase
        self.erpDatabase = erpDatabase
        self.alertingDatabase = alertingDatabase
        self.graceSeconds = graceSeconds
        self.maxListed = maxListed
    }
}

/// One check's verdict: what was compared, how many problems, the first few of them.
public struct InspectionCheck: Sendable, Codable, Equatable {
    public var name: String
    public var passed: Bool
    public var summary: String
    public var problemCount: Int
    public var problems: [String]
}

public struct InspectionReport: Sendable, Codable, Equatable {
    public var checks: [InspectionCheck]
    public var inspectedAtUs: Int64
    public var passed: Bool { checks.allSatisfy(\.passed) }
    public var failedChecks: [String] { checks.filter { !$0.passed }.map(\.name) }

    public func render() -> String {
        var lines = ["LiveSync inspection"]
        for c in checks {
            lines.append("  \(c.passed ? "PASS" : "FAIL")  \(c.name): \(c.summary)")
            for p in c.problems { lines.append("          - \(p)") }
            if c.problemCount > c.problems.count { lines.append("          … and \(c.problemCount - c.problems.count) more") }
        }
        lines.append("  verdict: \(passed ? "PASS" : "FAIL (\(failedChecks.joined(separator: ", ")))")")
        return lines.joined(separator: "\n")
    }
}

public enum InspectionError: Error, CustomStringConvertible {
    case missingDatabase(String)
    public var description: String {
        switch self {
        case .missingDatabase(let p): "\(p) does not exist: pass the data directory of the cluster to inspect (--data-dir) or db.* paths in --config"
        }
    }
}

/// Compares the topics, the stock store and the ERP book:
/// - `placed_orders_booked`: every order on `orders.placed` is in the ERP book (all its states are terminal);
/// - `stock_conserved`: per SKU, reserved units equal the stock store's reserved lines and the
///   ERP book's synced units, and never exceed on hand;
/// - `no_offset_gap`: every stored consumer position lies within its partition's retained range.
///
/// Read-only: opens the databases for reading and the topics outside any consumer group.
public enum Inspector {
    /// - Parameter stop: checked while the topics are read; a requested stop throws `StoppedOnRequest`.
    public static func run(_ configuration: InspectionConfiguration, now: Int64 = Clock.nowMicros(), stop: StopRequest? = nil) throws -> InspectionReport {
        for path in [configuration.stockDatabase, configuration.erpDatabase] where !FileManager.default.fileExists(atPath: path) {
            throw InspectionError.missingDatabase(path)
        }
        // Every stock instance's database; each partition from the one that owns it.
        let stock = try StockStoreView.read(StockStoreView.databases(beside: configuration.stockDatabase), parts: [.rows, .lineTotals, .offsets])
        let erp = try ErpBookView(path: configuration.erpDatabase, busyTimeout: .seconds(10))
        let reader = try KafkaPartitionReader(configuration: configuration.kafka)
        let cutoff = now - Int64(configuration.graceSeconds * 1e6)
        var checks: [InspectionCheck] = []
        checks.append(try placedOrdersBooked(reader: reader, erp: erp, cutoff: cutoff, max: configuration.maxListed, stop: stop))
        checks.append(try stockConserved(stock: stock, erp: erp, cutoff: cutoff, max: configuration.maxListed))
        var positions = [("stock", stock.positions.map { StoredPosition(group: "livesync-stock", partition: TopicPartition($0.topic, $0.partition), next: $0.nextOffset) })]
        positions.append(("erp", try erp.read { try $0.positions() }))
        if let path = configuration.alertingDatabase, FileManager.default.fileExists(atPath: path) {
            positions.append(("alerting", try StateStore.openForReading(path, busyTimeout: 10).read { try StateStore.storedPositions($0) }))
        }
        checks.append(try noOffsetGap(reader: reader, positions: positions, max: configuration.maxListed))
        return InspectionReport(checks: checks, inspectedAtUs: now)
    }

    static func check(_ name: String, _ summary: String, _ problems: [String], max: Int) -> InspectionCheck {
        InspectionCheck(name: name, passed: problems.isEmpty, summary: summary, problemCount: problems.count, problems: Array(problems.prefix(max)))
    }

    static func placedOrdersBooked(reader: KafkaPartitionReader, erp: ErpBookView, cutoff: Int64, max: Int, stop: StopRequest? = nil) throws -> InspectionCheck {
        var placed: [String: Int64] = [:]
        var undecodable = 0
        let partitions = (0..<Topics.partitions).map { TopicPartition(Topics.ordersPlaced, $0) }
        try reader.readAll(partitions) { m in
            if let stop, m.offset % 1_024 == 0, stop.isRequested { throw StoppedOnRequest() }
            guard let order = try? Order(serializedBytes: m.value), !order.orderID.isEmpty else { undecodable += 1; return }
            placed[order.orderID] = order.ingestedAtUs
        }
        let booked = try erp.read { try $0.orderIDs() }
        var problems: [String] = []
        var inFlight = 0
        for (id, ingested) in placed.sorted(by: { $0.value < $1.value }) where !booked.contains(id) {
            if ingested >= cutoff { inFlight += 1 } else { problems.append("order \(id) is on \(Topics.ordersPlaced) but not in the ERP book") }
        }
        return check("placed_orders_booked",
                     "\(placed.count) orders on \(Topics.ordersPlaced), \(booked.count) in the ERP book, \(inFlight) in flight, \(problems.count) missing (undecodable, dead-lettered by dispatch: \(undecodable))",
                     problems, max: max)
    }

    struct SkuKey: Hashable, Comparable {
        var sku: String
        var warehouse: String
        static func < (a: SkuKey, b: SkuKey) -> Bool { (a.sku, a.warehouse) < (b.sku, b.warehouse) }
        var text: String { "\(sku)@\(warehouse)" }
    }

    static func stockConserved(stock: StockStoreView, erp: ErpBookView, cutoff: Int64, max: Int) throws -> InspectionCheck {
        var levels: [SkuKey: (onHand: Int64, reserved: Int64)] = [:]
        var reservedLines: [SkuKey: Int64] = [:]
        var lastActivity: [SkuKey: Int64] = [:]
        for row in stock.rows {
            let k = SkuKey(sku: row.sku, warehouse: row.warehouse)
            levels[k] = (row.onHand, row.reserved)
            lastActivity[k] = row.updatedAtUs
        }
        for t in stock.lineTotals {
            let k = SkuKey(sku: t.sku, warehouse: t.warehouse)
            reservedLines[k, default: 0] += t.reservedUnits
            lastActivity[k] = Swift.max(lastActivity[k] ?? 0, t.lastDecidedAtUs)
        }
        var bookedUnits: [SkuKey: Int64] = [:]
        for b in try erp.read({ try $0.skuBookings() }) {
            let k = SkuKey(sku: b.sku, warehouse: b.warehouse)
            bookedUnits[k] = b.syncedUnits
            lastActivity[k] = Swift.max(lastActivity[k] ?? 0, b.lastActivityAtUs)
        }
        var problems: [String] = []
        var busy = 0
        let keys = Set(levels.keys).union(reservedLines.keys).union(bookedUnits.keys).sorted()
        for k in keys {
            let level = levels[k] ?? (0, 0)
            let lines = reservedLines[k] ?? 0
            let booked = bookedUnits[k] ?? 0
            if level.reserved > level.onHand {
                problems.append("\(k.text): \(level.reserved) units reserved but only \(level.onHand) on hand (oversold)")
            }
            if level.reserved != lines {
                problems.append("\(k.text): stock level says \(level.reserved) reserved, its reserved lines add up to \(lines)")
            }
            if lastActivity[k] ?? 0 >= cutoff {
                busy += 1
            } else if level.reserved != booked {
                problems.append("\(k.text): \(level.reserved) units reserved in the stock store, \(booked) units on synced orders in the ERP book")
            }
        }
        return check("stock_conserved", "\(keys.count) SKUs compared (\(busy) with activity in the grace period compared with the store only)", problems, max: max)
    }

    /// `positions` per store; the stock store's are those of each partition's owning instance
    /// (a copy a partition moved away from keeps an old position that is no longer read).
    static func noOffsetGap(reader: KafkaPartitionReader, positions stores: [(String, [StoredPosition])], max: Int) throws -> InspectionCheck {
        var problems: [String] = []
        var positions = 0
        var watermarks: [TopicPartition: (low: Int64, high: Int64)] = [:]
        for (name, stored) in stores {
            for position in stored {
                let group = position.group
                let tp = position.partition
                let next = position.next
                positions += 1
                let w = try watermarks[tp] ?? reader.watermarks(tp)
                watermarks[tp] = w
                if next < w.low {
                    problems.append("\(name) \(group) \(tp): next offset \(next) is below the first retained offset \(w.low): messages \(next)..<\(w.low) were never applied")
                } else if next > w.high {
                    problems.append("\(name) \(group) \(tp): next offset \(next) is beyond the end of the partition (\(w.high)): the position does not belong to this topic")
                }
            }
        }
        return check("no_offset_gap", "\(positions) stored positions within their partitions' retained ranges", problems, max: max)
    }
}
