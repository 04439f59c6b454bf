import ErpBookStore
import Foundation
import Inventory
import Kafka
import Worker

/// What the read model answers: the ERP book and the stock levels of the whole cluster, as its
/// copy of the changelogs stands, read in one transaction so the figures agree with each other.
/// Parts are fetched only when asked for (`BookQuery`).
public struct BookSnapshot: Codable, Sendable {
    public struct Group: Codable, Sendable, Equatable {
        public var platform: String
        public var status: String
        public var minute: Int64
        public var orders: Int
        public var syncMicros: Int64
    }

    public struct Count: Codable, Sendable, Equatable {
        public var key: String
        public var count: Int64
    }

    public struct RecentOrder: Codable, Sendable, Equatable {
        public var orderID: String
        public var platform: String
        public var status: String
        public var totalFen: Int64
        public var buyerName: String
        public var buyerPhone: String
        public var syncMicros: Int64
    }

    public struct Waiting: Codable, Sendable, Equatable {
        public var orderID: String
        public var ingestedAtUs: Int64
    }

    public struct StockLevel: Codable, Sendable, Equatable {
        public var sku: String
        public var warehouse: String
        public var onHand: Int64
        public var reserved: Int64
        public var partition: Int32
        public var updatedAtUs: Int64
        public var available: Int64 { onHand - reserved }
    }

    public struct LineTotal: Codable, Sendable, Equatable {
        public var sku: String
        public var warehouse: String
        public var partition: Int32
        public var reservedUnits: Int64
        public var lastDecidedAtUs: Int64
    }

    public struct SkuBooking: Codable, Sendable, Equatable {
        public var sku: String
        public var warehouse: String
        public var syncedUnits: Int64
        public var lastActivityAtUs: Int64
    }

    public struct Position: Codable, Sendable, Equatable {
        public var group: String
        public var topic: String
        public var partition: Int32
        public var next: Int64
    }

    /// When the read model read it (µs).
    public var readAtUs: Int64 = 0
    /// Orders per platform, status and minute of ingest, with their summed ingest→decision time.
    public var groups: [Group]?
    /// Synced orders per whole millisecond of ingest→decision time, ascending.
    public var syncMilliseconds: [Count]?
    /// The most rejected SKUs (at most 5) and the rejected lines in all.
    public var mostRejected: [Count]?
    public var rejectedLines: Int?
    public var recentOrders: [RecentOrder]?
    /// Decisions since `BookQuery.decisionsSinceSecond`: all, and the rejected ones.
    public var decisions: Int?
    public var rejectedDecisions: Int?
    /// Orders dispatch holds waiting for their stock decisions, ingested before
    /// `BookQuery.waitingIngestedBefore` (all of them without it), and the oldest of those.
    public var waitingCount: Int?
    public var oldestWaiting: [Waiting]?
    /// Every order dispatch holds waiting for its stock decisions, whatever its ingest time
    /// (asked with `waitingLimit`).
    public var waitingTotal: Int?
    /// Synced order lines whose shipments carry another quantity (an exactly-once check; a scan).
    public var shipmentMismatches: Int?
    public var stock: [StockLevel]?
    public var lineTotals: [LineTotal]?
    public var skuBookings: [SkuBooking]?
    /// Where dispatch and stock stood when they committed what the copy holds (from their
    /// changelog entries), per group, topic and partition.
    public var positions: [Position]?

    public init() {}
}

/// Which parts of the `BookSnapshot` to read (each costs a query; the shipment check scans).
public struct BookQuery: Sendable, Equatable {
    /// `groups`, `syncMilliseconds`, `mostRejected`, `rejectedLines` (`totals=1`).
    public var totals = false
    /// `recentOrders`: this many of the latest decided orders (`recent=N`, at most 1,000).
    public var recentOrders: Int?
    /// `decisions` and `rejectedDecisions` since this Unix second (`decisionsSince=S`).
    public var decisionsSinceSecond: Int64?
    /// With `waitingLimit`: only orders ingested before this (Unix µs) count as waiting (`waitingBefore=µs`).
    public var waitingIngestedBefore: Int64?
    /// `waitingCount`, `waitingTotal` and at most this many `oldestWaiting` (`waitingLimit=N`, at most 10,000).
    public var waitingLimit: Int?
    /// `shipmentMismatches` (`shipmentMismatches=1`; a scan of the synced orders).
    public var shipmentMismatches = false
    /// `stock`: every stock level (`stock=1`).
    public var stock = false
    /// `lineTotals`: reserved units per SKU from the stock lines (`lineTotals=1`).
    public var lineTotals = false
    /// `skuBookings`: units on synced orders per SKU (`skuBookings=1`).
    public var skuBookings = false
    /// `positions`: the replicated consumer positions (`positions=1`).
    public var positions = false

    public init(totals: Bool = false, recentOrders: Int? = nil, decisionsSinceSecond: Int64? = nil, waitingIngestedBefore: Int64? = nil,
                waitingLimit: Int? = nil, shipmentMismatches: Bool = false, stock: Bool = false, lineTotals: Bool = false,
                skuBookings: Bool = false, positions: Bool = false) {
        self.totals = totals
        self.recentOrders = recentOrders
        self.decisionsSinceSecond = decisionsSinceSecond
        self.waitingIngestedBefore = waitingIngestedBefore
        self.waitingLimit = waitingLimit
        self.shipmentMismatches = shipmentMismatches
        self.stock = stock
        self.lineTotals = lineTotals
        self.skuBookings = skuBookings
        self.positions = positions
    }

    /// The query string of `GET /book/snapshot`.
    var queryItems: [URLQueryItem] {
        var items: [URLQueryItem] = []
        if totals { items.append(.init(name: "totals", value: "1")) }
        if let recentOrders { items.append(.init(name: "recent", value: String(recentOrders))) }
        if let decisionsSinceSecond { items.append(.init(name: "decisionsSince", value: String(decisionsSinceSecond))) }
        if let waitingLimit { items.append(.init(name: "waitingLimit", value: String(waitingLimit))) }
        if let waitingIngestedBefore { items.append(.init(name: "waitingBefore", value: String(waitingIngestedBefore))) }
        if shipmentMismatches { items.append(.init(name: "shipmentMismatches", value: "1")) }
        if stock { items.append(.init(name: "stock", value: "1")) }
        if lineTotals { items.append(.init(name: "lineTotals", value: "1")) }
        if skuBookings { items.append(.init(name: "skuBookings", value: "1")) }
        if positions { items.append(.init(name: "positions", value: "1")) }
        return items
    }

    /// Parses the query string; a value that is not a number is refused with its name.
    init(parameters: [String: String]) throws {
        func number(_ name: String) throws -> Int64? {
            guard let raw = parameters[name] else { return nil }
            guard let v = Int64(raw) else { throw BookQueryError(parameter: name, value: raw) }
            return v
        }
        func flag(_ name: String) -> Bool { parameters[name].map { $0 == "1" || $0 == "true" } ?? false }
        totals = flag("totals")
        recentOrders = try number("recent").map { Int(min(1_000, max(0, $0))) }
        decisionsSinceSecond = try number("decisionsSince")
        waitingLimit = try number("waitingLimit").map { Int(min(10_000, max(0, $0))) }
        waitingIngestedBefore = try number("waitingBefore")
        shipmentMismatches = flag("shipmentMismatches")
        stock = flag("stock")
        lineTotals = flag("lineTotals")
        skuBookings = flag("skuBookings")
        positions = flag("positions")
    }
}

struct BookQueryError: Error, CustomStringConvertible {
    let parameter: String
    let value: String
    var description: String { "query parameter \(parameter) must be an integer, not '\(value)'" }
}

extension BookSnapshot {
    /// Reads the parts `query` asks for from the read model's copy at `path`.
    static func read(path: String, query: BookQuery, now: Int64) throws -> BookSnapshot {
        var s = BookSnapshot()
        s.readAtUs = now
        let book = try ErpBookView(path: path, busyTimeout: .seconds(10))
        try book.read { r in
            if query.totals {
                let t = try r.totals()
                s.groups = t.groups.map { Group(platform: $0.platform, status: $0.status, minute: $0.minute, orders: $0.orders, syncMicros: $0.syncMicros) }
                s.syncMilliseconds = t.syncMilliseconds.map { Count(key: String($0.ms), count: Int64($0.orders)) }
                s.mostRejected = t.mostRejected.map { Count(key: $0.sku, count: Int64($0.lines)) }
                s.rejectedLines = t.rejectedLines
            }
            if let limit = query.recentOrders {
                s.recentOrders = try r.recentOrders(limit: limit).map {
                    RecentOrder(orderID: $0.orderID, platform: $0.platform, status: $0.status, totalFen: $0.totalFen,
                                buyerName: $0.buyerName, buyerPhone: $0.buyerPhone, syncMicros: $0.syncMicros)
                }
            }
            if let since = query.decisionsSinceSecond {
                let c = try r.decisionCounts(sinceSecond: since)
                (s.decisions, s.rejectedDecisions) = (c.total, c.rejected)
            }
            if let limit = query.waitingLimit {
                let w = try r.waitingForStock(ingestedBefore: query.waitingIngestedBefore, limit: limit)
                s.waitingCount = w.count
                s.oldestWaiting = w.oldest.map { Waiting(orderID: $0.orderID, ingestedAtUs: $0.ingestedAtUs) }
                s.waitingTotal = query.waitingIngestedBefore == nil ? w.count : try r.waitingForStock(limit: 0).count
            }
            if query.shipmentMismatches { s.shipmentMismatches = try r.shipmentMismatches() }
            if query.skuBookings {
                s.skuBookings = try r.skuBookings().map { SkuBooking(sku: $0.sku, warehouse: $0.warehouse, syncedUnits: $0.syncedUnits, lastActivityAtUs: $0.lastActivityAtUs) }
            }
            if query.positions {
                s.positions = try r.positions().map { Position(group: $0.group, topic: $0.partition.topic, partition: $0.partition.partition, next: $0.next) }
            }
        }
        if query.stock || query.lineTotals {
            var parts: StockStoreView.Parts = []
            if query.stock { parts.insert(.rows) }
            if query.lineTotals { parts.insert(.lineTotals) }
            let stock = try StockStoreView.read([path], parts: parts)
            if query.stock {
                s.stock = stock.rows.map { StockLevel(sku: $0.sku, warehouse: $0.warehouse, onHand: $0.onHand, reserved: $0.reserved, partition: $0.partition, updatedAtUs: $0.updatedAtUs) }
            }
            if query.lineTotals {
                s.lineTotals = stock.lineTotals.map { LineTotal(sku: $0.sku, warehouse: $0.warehouse, partition: $0.partition, reservedUnits: $0.reservedUnits, lastDecidedAtUs: $0.lastDecidedAtUs) }
            }
        }
        return s
    }
}
