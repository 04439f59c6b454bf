import LiveSyncTesting
import Alerting
import Dashboard
import Foundation
import Fulfillment
import GRDB
import Inspection
import Inventory
import Kafka
import Model
import Hummingbird
import ReadModel
import Testing
import Worker

/// The read model's copy of the stock tables, as its replica holds them after replaying
/// `stock.changelog`: levels and reserved lines per partition, and the positions stock
/// committed with its entries (group `livesync-stock`).
func stockCopy(_ book: LocalReadModel, rows: [(sku: String, onHand: Int64, reserved: Int64, partition: Int32)],
               lines: [(sku: String, quantity: Int64, partition: Int32)] = [], positions: [Int32: Int64] = [:]) throws {
    try book.store.database.write { db in
        for r in rows {
            try db.execute(sql: "INSERT INTO stock (sku, warehouse, on_hand, reserved, updated_at_us, partition) VALUES (?, 'main', ?, ?, 1, ?)",
                           arguments: [r.sku, r.onHand, r.reserved, r.partition])
        }
        for (i, l) in lines.enumerated() {
            try db.execute(sql: """
                INSERT INTO stock_lines (event_id, order_id, sku, warehouse, quantity, status, decided_at_us, partition) VALUES (?, ?, ?, 'main', ?, 1, 1, ?)
                """, arguments: ["o\(i):1", "o\(i)", l.sku, l.quantity, l.partition])
        }
        for (p, next) in positions {
            try db.execute(sql: "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at_us) VALUES ('livesync-stock', ?, ?, ?, 0)",
                           arguments: [Topics.orderLines, p, next])
        }
    }
}

/// Alerting's HTTP API (`AlertingAPI`, as its telemetry server serves it) over an alert store.
func alertingServer(_ dir: String, _ write: @Sendable (Database) throws -> Void) async throws -> (client: AlertingClient, url: String, task: Task<Void, Error>) {
    let alerting = try StateStore(StateStoreConfiguration(path: dir + "/alerting.sqlite", synchronous: "OFF"))
    try await alerting.database.write { db in
        try AlertingProcessor().prepare(db)
        try write(db)
    }
    let router = Router()
    AlertingAPI.addRoutes(to: router, storePath: alerting.configuration.path)
    let (url, task) = try await LocalServer.serve(router, label: "test-alerting")
    return (AlertingClient(baseURL: url), url, task)
}

@Suite struct InspectionTests {
    /// The inspection reads the read model over HTTP and the topics: a placed order the book
    /// lacks, a SKU whose reserved units the book does not have on synced orders, and positions
    /// (stock's, replicated, and alerting's, over its HTTP API) beyond their partitions' ends.
    @Test func inspectionComparesTheTopicsWithTheReadModelAndAlertingsPositions() async throws {
        let broker = try EmbeddedBroker()
        for topic in Topics.all() { try broker.createTopic(topic) }
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3"])
        let dir = temporaryDirectory("inspect-book")
        let book = try await LiveSyncTesting.LocalReadModel.start(path: dir + "/book.sqlite")
        defer { book.stop() }
        try stockCopy(book, rows: [("COLD", 50, 2, 1), ("ONLY-2", 10, 4, 5)], lines: [("COLD", 2, 1), ("ONLY-2", 4, 5)], positions: [1: 0, 5: 99])
        let now = Clock.nowMicros()
        let placed = [placedOrder("booked", ingested: now - 60_000_000), placedOrder("missing", ingested: now - 60_000_000), placedOrder("fresh", ingested: now)]
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }
        try producer.sendAndWait(placed.map { ProducerMessage(topic: Topics.ordersPlaced, key: $0.orderID, value: $0.bytes) })
        try book.dispatch([(Topics.ordersPlaced, placed[0].bytes), (Topics.stockReservations, reserved("booked").bytes)])
        let alerting = try await alertingServer(dir) { db in
            try db.execute(sql: "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at_us) VALUES ('livesync-alerting', ?, 0, 7, 0)",
                           arguments: [Topics.deadLetter])
        }
        defer { alerting.task.cancel() }

        let report = try await Inspector.run(InspectionConfiguration(kafka: kafka, book: book.client, alertingPositions: .url(alerting.url)), now: now)
        let booked = try #require(report.checks.first { $0.name == "placed_orders_booked" })
        #expect(booked.problems == ["order missing is on orders.placed but not in the ERP book"], "\(booked.problems)")
        #expect(booked.summary.hasPrefix("3 orders on orders.placed, 1 in the ERP book, 1 in flight"), "\(booked.summary)")
        let stock = try #require(report.checks.first { $0.name == "stock_conserved" })
        // S, booked just now, is in its grace period: compared with the store only.
        #expect(stock.problems == ["COLD@main: 2 units reserved in the stock store, 0 units on synced orders in the ERP book",
                                   "ONLY-2@main: 4 units reserved in the stock store, 0 units on synced orders in the ERP book"], "\(stock.problems)")
        #expect(stock.summary.hasPrefix("3 SKUs compared (1 with activity"), "\(stock.summary)")
        let offsets = try #require(report.checks.first { $0.name == "no_offset_gap" })
        #expect(offsets.problems == [
            "book livesync-stock orders.lines[5]: next offset 99 is beyond the end of the partition (0): the position does not belong to this topic",
            "alerting livesync-alerting deadletter[0]: next offset 7 is beyond the end of the partition (0): the position does not belong to this topic",
        ], "\(offsets.problems)")
        #expect(!report.passed)
    }

    /// Without a read model the inspection says which setting to fix.
    @Test func anUnreachableReadModelIsAnErrorNamingTheSetting() async throws {
        let config = InspectionConfiguration(kafka: KafkaConfiguration(bootstrapServers: "127.0.0.1:1"), book: BookClient(baseURL: "http://127.0.0.1:9", timeout: .seconds(1)))
        let error = await #expect(throws: BookClientError.self) { try await Inspector.run(config) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("book.url"))
    }
}

@Suite struct DashboardFiguresTests {
    /// Hot SKUs are the read model's stock levels, by reserved units.
    @Test func theDashboardShowsTheHottestSkusOfTheReadModel() async throws {
        let dir = temporaryDirectory("dash-book")
        let book = try await LiveSyncTesting.LocalReadModel.start(path: dir + "/book.sqlite")
        defer { book.stop() }
        try stockCopy(book, rows: [("COLD", 50, 2, 1), ("ONLY-2", 10, 4, 5), ("MOVED", 70, 0, 7)])
        let figures = await DashboardFigures.figures(DashboardConfiguration(book: book.client), now: Clock.nowMicros())
        let hot = figures.hotSkus.map { "\($0.sku)=\($0.available)/\($0.reserved)" }
        #expect(hot == ["ONLY-2=6/4", "COLD=48/2", "MOVED=70/0"], "\(hot)")
        #expect(figures.unavailable.isEmpty, "\(figures.unavailable)")
    }

    /// Orders beyond the SLA come from the read model (held by dispatch for their stock
    /// decisions) and from alerting's HTTP API (found on `orders.placed` before dispatch read
    /// them); an order the book decided since is not listed. Alerts come from alerting too.
    @Test func theDashboardListsOrdersUnsyncedBeyondTheSlaFromTheBookAndAlerting() async throws {
        let dir = temporaryDirectory("dash-unsynced")
        let now = Clock.nowMicros()
        let book = try await LiveSyncTesting.LocalReadModel.start(path: dir + "/book.sqlite")
        defer { book.stop() }
        let placed = [placedOrder("held", ingested: now - 9_000_000), placedOrder("recent", ingested: now - 1_000_000), placedOrder("decided", ingested: now - 30_000_000)]
        try book.dispatch(placed.map { (Topics.ordersPlaced, $0.bytes) } + [(Topics.stockReservations, reserved("decided").bytes)])
        let alerting = try await alertingServer(dir) { db in
            // Found on the last sweep: one dispatch had not read, and one it decided since.
            for (id, at) in [("unread", now - 20_000_000), ("decided", now - 30_000_000)] {
                try db.execute(sql: "INSERT INTO alert_unsynced_orders (order_id, ingested_at_us, found_at_us) VALUES (?, ?, ?)", arguments: [id, at, now])
            }
            try AlertStore.raise(db, key: AlertKind.orderNotSynced, kind: AlertKind.orderNotSynced, message: "2 order(s) not synced", now: now)
        }
        defer { alerting.task.cancel() }
        let figures = await DashboardFigures.figures(DashboardConfiguration(book: book.client, alerting: alerting.client, slaSeconds: 5), now: now)
        #expect(figures.unsyncedIDs == ["unread", "held"], "oldest first: \(figures.unsyncedIDs)")
        #expect(figures.unsyncedBeyondSla == 2)
        #expect(figures.waiting == 2, "held and recent wait in dispatch")
        #expect(figures.total == 1 && figures.synced == 1 && figures.recentOrders.map(\.orderID) == ["decided"])
        #expect(figures.alerts.map(\.kind) == [AlertKind.orderNotSynced])
        #expect(figures.unavailable.isEmpty, "\(figures.unavailable)")
    }

    /// Alerting not answering empties its parts only; the page says so.
    @Test func theDashboardShowsTheBookWhenAlertingDoesNotAnswer() async throws {
        let dir = temporaryDirectory("dash-no-alerting")
        let now = Clock.nowMicros()
        let book = try await LiveSyncTesting.LocalReadModel.start(path: dir + "/book.sqlite")
        defer { book.stop() }
        try book.dispatch([(Topics.ordersPlaced, placedOrder("held", ingested: now - 9_000_000).bytes)])
        let figures = await DashboardFigures.figures(
            DashboardConfiguration(book: book.client, alerting: AlertingClient(baseURL: "http://127.0.0.1:9", timeout: .seconds(1))), now: now)
        #expect(figures.unsyncedIDs == ["held"] && figures.waiting == 1)
        #expect(figures.alerts.isEmpty)
        #expect(figures.unavailable.count == 1 && figures.unavailable.first?.hasPrefix("alerting:") == true, "\(figures.unavailable)")
    }
}
