import AsyncHTTPClient
import Bootstrap
import Foundation
import GRDB
import Kafka
import Model
import NIOCore
import ReadModel
import Worker

/// Settings of a consistency inspection (健康巡检).
public struct InspectionConfiguration: Sendable {
    /// Where `orders.placed` is read (outside any consumer group) and the retained ranges are asked.
    public var kafka: KafkaConfiguration
    /// The read model (`livesync-book`, `book.url`): stock levels and reserved lines, the ERP
    /// book's decided orders and booked units, and the consumer positions stock and dispatch
    /// committed with what it replicated. No database of another process is opened.
    public var book: BookClient
    /// Where alerting's own consumer positions (on `deadletter`) come from; nil: not checked.
    public var alertingPositions: AlertingPositions?
    /// Orders and SKUs with activity younger than this are in flight, not mismatches. Default 30 s.
    public var graceSeconds: Double
    /// Problems listed per check (the counts are always complete). Default 20.
    public var maxListed: Int

    public init(kafka: KafkaConfiguration, book: BookClient, alertingPositions: AlertingPositions? = nil,
                graceSeconds: Double = 30, maxListed: Int = 20) {
        self.kafka = kafka
        self.book = book
        self.alertingPositions = alertingPositions
        self.graceSeconds = graceSeconds
        self.maxListed = maxListed
    }
}

/// Where the inspection finds alerting's stored consumer positions.
public enum AlertingPositions: Sendable {
    /// Alerting's own store: the scheduled inspection inside `livesync-alerting`, which owns the file.
    case store(path: String)
    /// Alerting's telemetry server (`GET <url>/positions`, `ReportedPosition`s): `livesync
    /// inspect`, on any host.
    case url(String)

    /// The positions, read off the cooperative pool (file) or over HTTP.
    func read(timeout: TimeAmount = .seconds(10)) async throws -> [StoredPosition] {
        switch self {
        case .store(let path):
            return try await runBlocking { _ in try StateStore.openForReading(path, busyTimeout: 10).read { try StateStore.storedPositions($0) } }
        case .url(let base):
            let url = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/positions"
            let response: HTTPClientResponse
            let body: ByteBuffer
            do {
                response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: timeout)
                body = try await response.body.collect(upTo: 1 << 22)
            } catch {
                throw InspectionError.alertingUnreachable(url, "\(error)")
            }
            guard response.status == .ok else { throw InspectionError.alertingUnreachable(url, "answered \(response.status.code): \(String(buffer: body))") }
            return try JSONDecoder().decode([ReportedPosition].self, from: Data(buffer: body)).map(\.stored)
        }
    }
}

/// A stored consumer position as a process reports it over HTTP (alerting's `GET /positions`).
public struct ReportedPosition: Codable, Sendable, Equatable {
    public var group: String
    public var topic: String
    public var partition: Int32
    public var next: Int64

    public init(_ position: StoredPosition) {
        (group, topic, partition, next) = (position.group, position.partition.topic, position.partition.partition, position.next)
    }

    public var stored: StoredPosition { StoredPosition(group: group, partition: TopicPartition(topic, partition), next: next) }
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
    case alertingUnreachable(String, String)
    public var description: String {
        switch self {
        case .alertingUnreachable(let url, let error):
            "alerting's positions could not be read from \(url) (\(error)): is livesync-alerting running, and is alerting.url (--alerting-url) right?"
        }
    }
}

/// Compares the topics with the read model's copy of the stock store and the ERP book:
/// - `placed_orders_booked`: every order on `orders.placed` is in the ERP book (all its states are terminal);
/// - `stock_conserved`: per SKU, reserved units equal the stock store's reserved lines and the
///   ERP book's synced units, and never exceed on hand;
/// - `no_offset_gap`: every stored consumer position lies within its partition's retained range.
///
/// Read-only: asks the read model (`livesync-book`) over HTTP and reads the topics outside any
/// consumer group; the read model's copy lags its writers by a moment, which the grace period covers.
public enum Inspector {
    /// The topic reads block: they run off the cooperative pool and stop (`StoppedOnRequest`)
    /// when the calling task is cancelled or the service group shuts down.
    public static func run(_ configuration: InspectionConfiguration, now: Int64 = Clock.nowMicros()) async throws -> InspectionReport {
        let book = configuration.book
        let snapshot = try await book.snapshot(BookQuery(stock: true, lineTotals: true, skuBookings: true, positions: true))
        // Where stock and dispatch stood when they committed what the read model holds, and the
        // read model's own positions on the changelogs.
        var positions = [("book", (snapshot.positions ?? []).map { StoredPosition(group: $0.group, partition: TopicPartition($0.topic, $0.partition), next: $0.next) })]
        if let alerting = configuration.alertingPositions { positions.append(("alerting", try await alerting.read())) }
        let kafka = configuration.kafka, max = configuration.maxListed, stored = positions
        let (placed, gaps) = try await runBlocking { stop in
            let reader = try KafkaPartitionReader(configuration: kafka)
            return (try readPlaced(reader: reader, stop: stop), try noOffsetGap(reader: reader, positions: stored, max: max))
        }
        // Read after the topic: an order decided while the topic was read counts as booked.
        let booked = Set(try await book.decisions().map(\.orderID))
        let cutoff = now - Int64(configuration.graceSeconds * 1e6)
        return InspectionReport(checks: [
            placedOrdersBooked(placed: placed, booked: booked, cutoff: cutoff, max: max),
            stockConserved(snapshot, cutoff: cutoff, max: max),
            gaps,
        ], inspectedAtUs: now)
    }

    static func check(_ name: String, _ summary: String, _ problems: [String], max: Int) -> InspectionCheck {
        InspectionCheck(name: name, passed: problems.isEmpty, summary: summary, problemCount: problems.count, problems: Array(problems.prefix(max)))
    }

    /// Every order on `orders.placed` with its ingest time, and how many values were not orders.
    struct Placed: Sendable {
        var orders: [String: Int64] = [:]
        var undecodable = 0
    }

    static func readPlaced(reader: KafkaPartitionReader, stop: StopRequest?) throws -> Placed {
        var placed = Placed()
        let partitions = (0..<Topics.partitions).map { TopicPartition(Topics.ordersPlaced, $0) }
        try reader.readAll(partitions) { m in
            if let stop, m.offset % 1_024 == 0, stop.isRequested { throw StoppedOnRequest() }
            guard let order = try? Order(serializedBytes: m.value), !order.orderID.isEmpty else { placed.undecodable += 1; return }
            placed.orders[order.orderID] = order.ingestedAtUs
        }
        return placed
    }

    static func placedOrdersBooked(placed: Placed, booked: Set<String>, cutoff: Int64, max: Int) -> InspectionCheck {
        var problems: [String] = []
        var inFlight = 0
        for (id, ingested) in placed.orders.sorted(by: { ($0.value, $0.key) < ($1.value, $1.key) }) where !booked.contains(id) {
            if ingested >= cutoff { inFlight += 1 } else { problems.append("order \(id) is on \(Topics.ordersPlaced) but not in the ERP book") }
        }
        return check("placed_orders_booked",
                     "\(placed.orders.count) orders on \(Topics.ordersPlaced), \(booked.count) in the ERP book, \(inFlight) in flight, \(problems.count) missing (undecodable, dead-lettered by dispatch: \(placed.undecodable))",
                     problems, max: max)
    }

    struct SkuKey: Hashable, Comparable {
        var sku: String
        var warehouse: String
        static func < (a: SkuKey, b: SkuKey) -> Bool { (a.sku, a.warehouse) < (b.sku, b.warehouse) }
        var text: String { "\(sku)@\(warehouse)" }
    }

    static func stockConserved(_ book: BookSnapshot, cutoff: Int64, max: Int) -> InspectionCheck {
        var levels: [SkuKey: (onHand: Int64, reserved: Int64)] = [:]
        var reservedLines: [SkuKey: Int64] = [:]
        var lastActivity: [SkuKey: Int64] = [:]
        for row in book.stock ?? [] {
            let k = SkuKey(sku: row.sku, warehouse: row.warehouse)
            levels[k] = (row.onHand, row.reserved)
            lastActivity[k] = row.updatedAtUs
        }
        for t in book.lineTotals ?? [] {
            let k = SkuKey(sku: t.sku, warehouse: t.warehouse)
            reservedLines[k, default: 0] += t.reservedUnits
            lastActivity[k] = Swift.max(lastActivity[k] ?? 0, t.lastDecidedAtUs)
        }
        var bookedUnits: [SkuKey: Int64] = [:]
        for b in book.skuBookings ?? [] {
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

    /// `positions` per source: the read model's (the positions stock and dispatch committed
    /// with each partition's latest replicated changelog entry, so each partition's from its
    /// current owner, and the read model's own), and alerting's.
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
