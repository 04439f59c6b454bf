import LiveSyncTesting
import Bootstrap
import Foundation
import Fulfillment
import GRDB
import Hummingbird
import Inspection
import Inventory
import Kafka
import Logging
import Model
import NIOCore
import ServiceLifecycle
import ReadModel
import Synchronization
import Testing
import Worker

@testable import Alerting

func alertStore() throws -> StateStore {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("alerting-\(UUID().uuidString)")
    let store = try StateStore(StateStoreConfiguration(path: dir.appendingPathComponent("alerting.sqlite").path, synchronous: "OFF"))
    try store.database.write { try AlertingProcessor().prepare($0) }
    return store
}

func apply(_ store: StateStore, _ items: [(String, [UInt8])]) throws {
    let messages = items.enumerated().map { KafkaMessage(topic: $0.element.0, partition: 0, offset: Int64($0.offset), key: [], value: $0.element.1) }
    try store.database.write { db in
        var out = BatchOutput(group: "test")
        try AlertingProcessor().apply(messages, db: db, output: &out)
    }
}

func alerts(_ store: StateStore) throws -> [(kind: String, count: Int, resolved: Bool)] {
    try store.database.read { db in
        try Row.fetchAll(db, sql: "SELECT kind, count, resolved_at_us IS NOT NULL FROM alerts ORDER BY id").map { ($0[0], $0[1], $0[2]) }
    }
}

func notifications(_ store: StateStore) throws -> [(channel: String, event: String, delivered: Bool, attempts: Int)] {
    try store.database.read { db in
        try Row.fetchAll(db, sql: "SELECT channel, event, delivered_at_us IS NOT NULL, attempts FROM alert_notifications ORDER BY id").map { ($0[0], $0[1], $0[2], $0[3]) }
    }
}

/// A local webhook that records what it receives and answers with `status`.
final class FakeWebhook: Sendable {
    let bodies = Mutex<[String]>([])
    let status = Mutex(200)
}

func withWebhook(_ body: (String, FakeWebhook) async throws -> Void) async throws {
    let fake = FakeWebhook()
    let router = Router()
    router.post("/hook") { request, _ in
        var request = request
        let buffer = try await request.collectBody(upTo: 1 << 20)
        fake.bodies.withLock { $0.append(String(buffer: buffer)) }
        return Response(status: .init(code: fake.status.withLock { $0 }))
    }
    let (url, server) = try await LocalServer.serve(router, label: "fake-webhook")
    defer { server.cancel() }
    try await body(url + "/hook", fake)
}

/// A read model (the real `BookServer` over its own store, written by the real dispatch join
/// keeping totals) beside the alert store: what alerting's rules ask over HTTP.
func readModel(beside store: StateStore) async throws -> LocalReadModel {
    try await LocalReadModel.start(path: (store.configuration.path as NSString).deletingLastPathComponent + "/book.sqlite")
}

func order(_ id: String, ingestedAtUs: Int64) -> Order {
    var o = Order()
    o.orderID = id
    o.ingestedAtUs = ingestedAtUs
    o.currency = "CNY"
    var line = OrderLine()
    line.orderID = id
    line.lineNo = 1
    line.eventID = "\(id):1"
    line.sku = "SKU-1"
    line.warehouse = "main"
    line.quantity = 1
    line.lineCount = 1
    o.lines = [line]
    return o
}

func reservation(_ id: String) -> Reservation {
    var r = Reservation()
    r.orderID = id
    r.eventID = "\(id):1"
    r.lineNo = 1
    r.sku = "SKU-1"
    r.warehouse = "main"
    r.quantity = 1
    r.status = .reserved
    r.lineCount = 1
    return r
}


func openAlert(_ store: StateStore, kind: String) throws -> (count: Int, message: String)? {
    try store.database.read { db in
        try Row.fetchOne(db, sql: "SELECT count, message FROM alerts WHERE kind = ? AND resolved_at_us IS NULL", arguments: [kind]).map { ($0[0], $0[1]) }
    }
}

@Test func aLateOrderRaisesOneAlertThatResolvesWhenDispatchDecidesIt() async throws {
    let store = try alertStore()
    let erp = try await readModel(beside: store)
    defer { erp.stop() }
    let now = Clock.nowMicros()
    // Both orders were ingested 10 s ago; "done" got its stock decision, "late" still waits for it.
    try erp.dispatch([(Topics.ordersPlaced, order("late", ingestedAtUs: now - 10_000_000).bytes),
                       (Topics.ordersPlaced, order("done", ingestedAtUs: now - 10_000_000).bytes),
                       (Topics.ordersPlaced, order("fresh", ingestedAtUs: now - 1_000_000).bytes),
                       (Topics.stockReservations, reservation("done").bytes)])
    let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.orderUnsynced(seconds: 5)], channels: []),
                                       book: erp.client)
    let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
    try await notifier.sweep(now: now)
    try await notifier.sweep(now: now + 1)
    var a = try alerts(store)
    #expect(a.map(\.kind) == ["order_not_synced"] && a.first?.count == 2 && a.first?.resolved == false)
    let message = try openAlert(store, kind: "order_not_synced")?.message ?? ""
    #expect(message.hasPrefix("1 order(s)") && message.contains("late") && !message.contains("done") && !message.contains("fresh"), "\(message)")
    #expect(message.contains("1 waiting for stock decisions"), "\(message)")
    // The dashboard's copy of the late orders.
    let listed = try await store.database.read { try String.fetchAll($0, sql: "SELECT order_id FROM alert_unsynced_orders") }
    #expect(listed == ["late"])
    try erp.dispatch([(Topics.stockReservations, reservation("late").bytes)])
    try await notifier.sweep(now: now + 2)
    a = try alerts(store)
    #expect(a.count == 1 && a.first?.resolved == true)
    #expect(try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM alert_unsynced_orders") } == 0)
}

/// `orders.placed` on an embedded broker, with a producer for it.
final class PlacedTopic {
    let broker: EmbeddedBroker
    let kafka: KafkaConfiguration
    let producer: KafkaProducer

    init() throws {
        broker = try EmbeddedBroker()
        try broker.createTopic(TopicSpecification(name: Topics.ordersPlaced, partitions: Topics.partitions))
        kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3"])
        producer = try KafkaProducer(configuration: kafka)
    }

    func close() { producer.close() }
}

@Test func ordersDispatchHasNotReadYetRaiseTheAlertUntilItDecidesThem() async throws {
    let topic = try PlacedTopic()
    defer { topic.close() }  // and keeps the broker up until the test ends
    let (kafka, producer) = (topic.kafka, topic.producer)
    let now = Clock.nowMicros()
    let ids = ["o-a", "o-b", "o-c"]
    let placed = ids.map { order($0, ingestedAtUs: now - 20_000_000) } + [order("o-fresh", ingestedAtUs: now)]
    try producer.sendAndWait(placed.map { ProducerMessage(topic: Topics.ordersPlaced, key: $0.orderID, value: $0.bytes) })

    let store = try alertStore()
    let erp = try await readModel(beside: store)
    defer { erp.stop() }
    let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.orderUnsynced(seconds: 5)], channels: []),
                                       book: erp.client, kafka: kafka)
    let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
    // Dispatch has read nothing: the three late orders are only on the topic.
    try await notifier.sweep(now: now)
    let message = try #require(try openAlert(store, kind: "order_not_synced")).message
    #expect(message.hasPrefix("3 order(s)") && message.contains("3 not yet read by dispatch"), "\(message)")
    for id in ids { #expect(message.contains(id)) }
    #expect(!message.contains("o-fresh"))

    // Dispatch reads them and decides them; the read model replicates the decisions and, from the
    // same changelog entries, the positions dispatch committed with them.
    try erp.dispatch(placed.map { (Topics.ordersPlaced, $0.bytes) } + placed.map { (Topics.stockReservations, reservation($0.orderID).bytes) })
    let reader = try KafkaPartitionReader(configuration: kafka)
    let highs = try (0..<Topics.partitions).map { try reader.watermarks(TopicPartition(Topics.ordersPlaced, $0)).high }
    try await erp.store.database.write { db in
        for p in 0..<Topics.partitions {
            let high = highs[Int(p)]
            try db.execute(sql: "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at_us) VALUES ('livesync-dispatch', ?, ?, ?, 0)",
                           arguments: [Topics.ordersPlaced, p, high])
        }
    }
    try await notifier.sweep(now: now + 1_000_000)
    #expect(try openAlert(store, kind: "order_not_synced") == nil, "resolved once decided")
    // A redelivered copy of a decided order, not read yet, is not late: its first copy is in the book.
    try producer.sendAndWait([ProducerMessage(topic: Topics.ordersPlaced, key: "o-a", value: placed[0].bytes)])
    try await notifier.sweep(now: now + 2_000_000)
    #expect(try openAlert(store, kind: "order_not_synced") == nil)
    #expect(try alerts(store).count == 1)
}

/// Stock levels in the read model's copy, as its replica holds them after replaying
/// `stock.changelog` (each SKU as the instance owning its partition committed it).
@discardableResult
func stockLevels(_ book: LocalReadModel, _ rows: [(sku: String, onHand: Int64, reserved: Int64, partition: Int32)]) throws -> LocalReadModel {
    try book.store.database.write { db in
        for r in rows {
            try db.execute(sql: "INSERT INTO stock (sku, warehouse, on_hand, reserved, updated_at_us, partition) VALUES (?, 'main', ?, ?, 1, ?)",
                           arguments: [r.sku, r.onHand, r.reserved, r.partition])
        }
    }
    return book
}

@Test func stockLowReadsTheLevelsOfTheReadModel() async throws {
    let store = try alertStore()
    let book = try stockLevels(try await readModel(beside: store), [("COLD", 50, 0, 1), ("SOLD-OUT", 8, 8, 5), ("LOW", 10, 7, 7)])
    defer { book.stop() }
    let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.stockLow(safetyLevel: 3, sellOutMinutes: nil, rateWindowSeconds: 300)], channels: []),
                                       book: book.client)
    try await AlertNotifier(configuration: config, store: store, logger: Logger(label: "t")).sweep(now: Clock.nowMicros())
    let keys = try await store.database.read { try String.fetchAll($0, sql: "SELECT dedupe_key FROM alerts WHERE resolved_at_us IS NULL ORDER BY 1") }
    #expect(keys == ["stock_low:LOW:main", "stock_low:SOLD-OUT:main"])
}

/// A read model that does not answer leaves the book's rules' alerts as they are (no false
/// resolve) while the other rules go on.
@Test func anUnreachableReadModelLeavesTheBooksAlertsAsTheyAreAndTheOtherRulesGoOn() async throws {
    let store = try alertStore()
    let book = try stockLevels(try await readModel(beside: store), [("SOLD-OUT", 8, 8, 5)])
    let rules = AlertRulesConfiguration(rules: [.stockLow(safetyLevel: 0, sellOutMinutes: nil, rateWindowSeconds: 300, resolveAfterSeconds: 1),
                                                .syncFailureRate(threshold: 0.1, windowSeconds: 60, minOrders: 1), .deadLetters(resolveAfterSeconds: 1)], channels: [])
    defer { book.stop() }
    let now = Clock.nowMicros()
    try await AlertNotifier(configuration: AlertingConfiguration(rules: rules, book: book.client), store: store, logger: Logger(label: "t")).sweep(now: now)
    try await store.database.write { try AlertStore.raise($0, key: "dead_letter:x", kind: AlertKind.deadLetter, message: "m", now: now) }
    // The same rules, with the read model gone (nothing listens on port 9).
    let gone = AlertingConfiguration(rules: rules, book: BookClient(baseURL: "http://127.0.0.1:9", timeout: .seconds(1)))
    try await AlertNotifier(configuration: gone, store: store, logger: Logger(label: "t")).sweep(now: now + 10_000_000)
    let open = try await store.database.read { try String.fetchAll($0, sql: "SELECT dedupe_key FROM alerts WHERE resolved_at_us IS NULL ORDER BY 1") }
    #expect(open == ["stock_low:SOLD-OUT:main"], "stock_low kept; dead_letters resolved by its own rule: \(open)")
}

@Test func aSoldOutLevelBouncingAboveZeroStaysOneIncidentUntilItHasNotHeldForTheResolveTime() async throws {
    let store = try alertStore()
    let book = try stockLevels(try await readModel(beside: store), [("HOT", 100, 100, 1)])
    defer { book.stop() }
    let stock = book.store
    let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.stockLow(safetyLevel: 0, sellOutMinutes: nil, rateWindowSeconds: 300,
                                                                                        resolveAfterSeconds: 10)], channels: []),
                                       book: book.client)
    let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
    func rows() throws -> [(String, Bool)] {
        try store.database.read { db in
            try Row.fetchAll(db, sql: "SELECT dedupe_key, resolved_at_us IS NOT NULL FROM alerts ORDER BY id").map { ($0[0], $0[1]) }
        }
    }
    func level(reserved: Int64) throws { try stock.database.write { try $0.execute(sql: "UPDATE stock SET reserved = ? WHERE sku = 'HOT'", arguments: [reserved]) } }
    let now = Clock.nowMicros()
    try await notifier.sweep(now: now)
    // An out-of-stock order releases its other lines: 1 unit back for a moment, then sold again.
    try level(reserved: 99)
    try await notifier.sweep(now: now + 1_000_000)
    try level(reserved: 100)
    try await notifier.sweep(now: now + 2_000_000)
    try level(reserved: 99)
    try await notifier.sweep(now: now + 11_000_000)
    #expect(try rows().map(\.0) == ["stock_low:HOT:main"] && !(try rows()[0].1), "still the one open incident")
    try await notifier.sweep(now: now + 12_500_000)
    #expect(try rows().count == 1 && (try rows()[0].1), "resolved after 10 s without the condition")
}

@Test func aSkuSellingOutWithinTheWindowRaisesAForecastFromTheStoresReservedUnits() async throws {
    let store = try alertStore()
    let book = try stockLevels(try await readModel(beside: store), [("HOT", 1_000, 100, 1), ("SLOW", 1_000, 100, 2)])
    defer { book.stop() }
    let stock = book.store
    let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.stockLow(safetyLevel: 0, sellOutMinutes: 10, rateWindowSeconds: 300)], channels: []),
                                       book: book.client)
    let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
    let now = Clock.nowMicros()
    try await notifier.sweep(now: now)
    #expect(try alerts(store).isEmpty, "no rate yet")
    // Two minutes later HOT reserved 600 more units (300/min, 300 left: 1 min), SLOW 10 (5/min: 178 min).
    try await stock.database.write { db in
        try db.execute(sql: "UPDATE stock SET reserved = 700 WHERE sku = 'HOT'")
        try db.execute(sql: "UPDATE stock SET reserved = 110 WHERE sku = 'SLOW'")
    }
    try await notifier.sweep(now: now + 120_000_000)
    let open = try await store.database.read { try Row.fetchAll($0, sql: "SELECT dedupe_key, message FROM alerts WHERE resolved_at_us IS NULL") }
    #expect(open.map { $0[0] as String } == ["stock_low:HOT:main"])
    #expect((open.first?[1] as String?)?.contains("sells out in 1.0 min at 300 units/min") == true, "\(open.map { $0[1] as String })")
}

@Test func theFailureRateRuleFiresAboveItsThresholdOnly() async throws {
    let store = try alertStore()
    let erp = try await readModel(beside: store)
    defer { erp.stop() }
    // Dispatch decides 20 orders: 3 rejected for stock, 17 synced (counted per second in the book).
    var items: [(String, [UInt8])] = []
    for i in 0..<20 {
        var r = reservation("o\(i)")
        if i < 3 { r.status = .rejected }
        items += [(Topics.ordersPlaced, order("o\(i)", ingestedAtUs: 1).bytes), (Topics.stockReservations, r.bytes)]
    }
    try erp.dispatch(items)
    let now = Clock.nowMicros()
    func run(_ threshold: Double) async throws -> [(kind: String, count: Int, resolved: Bool)] {
        let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.syncFailureRate(threshold: threshold, windowSeconds: 60, minOrders: 10)], channels: []),
                                           book: erp.client)
        try await AlertNotifier(configuration: config, store: store, logger: Logger(label: "t")).sweep(now: now)
        return try alerts(store)
    }
    #expect(try await run(0.2).isEmpty, "15% is under a 20% threshold")
    let a = try await run(0.1)
    #expect(a.map(\.kind) == ["sync_failure_rate"] && a.first?.resolved == false)
}

@Test func notificationsAreRetriedWithBackoffUntilAcceptedAndNeverRepeatedOnceDelivered() async throws {
    try await withWebhook { url, fake in
        let store = try alertStore()
        var dl = DeadLetter()
        dl.sourceTopic = Topics.orderLines
        dl.error = "not an OrderLine"
        dl.consumerGroup = "livesync-stock"
        try apply(store, [(Topics.deadLetter, dl.bytes)])
        let config = AlertingConfiguration(webhookURL: url, rules: AlertRulesConfiguration(rules: [.deadLetters(resolveAfterSeconds: 600)], channels: []))
        let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
        let now = Clock.nowMicros()
        fake.status.withLock { $0 = 503 }
        try await notifier.sweep(now: now)
        var n = try notifications(store)
        #expect(n.count == 1 && n.first?.delivered == false && n.first?.attempts == 1, "a failed delivery stays pending")
        try await notifier.sweep(now: now + 100_000)
        #expect(fake.bodies.withLock { $0.count } == 1, "not retried before its backoff")
        fake.status.withLock { $0 = 200 }
        try await notifier.sweep(now: now + 60_000_000)
        n = try notifications(store)
        #expect(n.count == 1 && n.first?.delivered == true && n.first?.attempts == 2)
        try await notifier.sweep(now: now + 120_000_000)
        let bodies = fake.bodies.withLock { $0 }
        #expect(bodies.count == 2, "delivered once after the failure, never again")
        let json = try JSONSerialization.jsonObject(with: Data(bodies.last!.utf8)) as? [String: Any]
        #expect(json?["kind"] as? String == "dead_letter" && json?["status"] as? String == "firing")
        #expect((json?["message"] as? String)?.contains("not an OrderLine") == true)
        // Quiet for the rule's period: resolved, and told once.
        try await notifier.sweep(now: now + 700_000_000)
        try await notifier.sweep(now: now + 701_000_000)
        let last = fake.bodies.withLock { $0 }
        #expect(last.count == 3)
        let resolved = try JSONSerialization.jsonObject(with: Data(last.last!.utf8)) as? [String: Any]
        #expect(resolved?["status"] as? String == "resolved")
    }
}

@Test func aLongAlertIsRemindedAtTheRenotifyInterval() async throws {
    try await withWebhook { url, fake in
        let store = try alertStore()
        try await store.database.write { try AlertStore.raise($0, key: "k", kind: "dead_letter", message: "m", now: 1) }
        let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [], channels: [.webhook(name: "webhook", url: url)], renotifySeconds: 60))
        let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
        let now = Clock.nowMicros()
        try await notifier.sweep(now: now)
        try await notifier.sweep(now: now + 30_000_000)
        try await notifier.sweep(now: now + 61_000_000)
        let events = try notifications(store).map(\.event)
        #expect(events == ["firing", "reminder"])
        #expect(fake.bodies.withLock { $0.count } == 2)
    }
}

@Test func anAlertStoreOfTheFirstReleaseIsMigratedAndAKeyCanFireAgainAfterItResolved() async throws {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("old-alerting-\(UUID().uuidString).sqlite").path
    let old = try DatabaseQueue(path: path)
    try await old.write { db in
        try db.execute(sql: """
            CREATE TABLE alert_orders (order_id TEXT PRIMARY KEY, ingested_at_us INTEGER NOT NULL,
                decided INTEGER NOT NULL DEFAULT 0, alerted INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
            CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, dedupe_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
                message TEXT NOT NULL, count INTEGER NOT NULL, created_at_us INTEGER NOT NULL,
                delivered_at_us INTEGER, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at_us INTEGER NOT NULL DEFAULT 0, last_error TEXT);
            INSERT INTO alerts (dedupe_key, kind, message, count, created_at_us) VALUES ('k', 'dead_letter', 'old', 3, 1);
            """)
    }
    let store = try StateStore(StateStoreConfiguration(path: path, synchronous: "OFF"))
    try await store.database.write { db in
        // Positions on topics an earlier release consumed.
        for topic in [Topics.ordersPlaced, Topics.stockReservations, Topics.orderOutcomes] {
            try db.execute(sql: "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, updated_at_us) VALUES ('livesync-alerting', ?, 0, 5, 0)", arguments: [topic])
        }
        try AlertingProcessor().prepare(db)
        #expect(try String.fetchAll(db, sql: "SELECT topic FROM consumer_offsets").isEmpty)
        #expect(try !db.tableExists("alert_orders"))
        try AlertStore.resolve(db, kind: "dead_letter", except: [], now: 2)
        try AlertStore.raise(db, key: "k", kind: "dead_letter", message: "new", now: 3)
    }
    let a = try alerts(store)
    #expect(a.map(\.count) == [3, 1] && a.map(\.resolved) == [true, false])
}

/// SIGTERM must not wait out an interval: the group stops its services one by one, so an
/// hourly inspection asleep would have held alerting (and its consumer) for up to an hour.
@Test func alertingsPeriodicServicesLeaveTheGroupPromptlyOnGracefulShutdown() async throws {
    let store = try alertStore()
    let logger = Logger(label: "test")
    let schedule = InspectionSchedule(
        inspection: InspectionConfiguration(kafka: KafkaConfiguration(bootstrapServers: "127.0.0.1:1"), book: BookClient(baseURL: "http://127.0.0.1:9")),
        interval: .seconds(3_600), store: store, logger: logger)
    let notifier = AlertNotifier(configuration: AlertingConfiguration(sweepInterval: .seconds(600)), store: store, logger: logger)
    let group = ServiceGroup(services: [notifier, schedule], logger: logger)
    let started = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        try await Task.sleep(for: .milliseconds(500))
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
    }
    #expect(ContinuousClock.now - started < .seconds(5))
}

/// Blocking work off the pool (topic reads, scans) is asked to stop when its task is cancelled.
@Test func blockingWorkIsAskedToStopWhenItsTaskIsCancelled() async throws {
    let (started, signal) = AsyncStream<Void>.makeStream()
    let task = Task {
        try await runBlocking { stop -> Int in
            signal.yield()
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if stop.isRequested { throw StoppedOnRequest() }
                usleep(1_000)
            }
            return 0
        }
    }
    for await _ in started { break }  // the work is running
    let cancelled = ContinuousClock.now
    task.cancel()
    await #expect(throws: StoppedOnRequest.self) { try await task.value }
    #expect(ContinuousClock.now - cancelled < .seconds(2))
}

/// The unread head of `orders.placed` is read again only once its first order could be late:
/// a sweep a second does not walk every partition's log on the embedded broker.
@Test func aPartitionWhoseUnreadHeadIsFreshIsNotReadAgainUntilItCouldBeLate() async throws {
    let topic = try PlacedTopic()
    defer { topic.close() }  // and keeps the broker up until the test ends
    let (kafka, producer) = (topic.kafka, topic.producer)
    let now = Clock.nowMicros()
    try producer.sendAndWait([ProducerMessage(topic: Topics.ordersPlaced, key: "o-1", value: order("o-1", ingestedAtUs: now).bytes)])
    let erp = try await readModel(beside: try alertStore())
    defer { erp.stop() }
    let finder = UnsyncedOrderFinder(book: erp.client, kafka: kafka)

    #expect(try await finder.find(cutoff: now - 5_000_000, listed: 10).count == 0)
    #expect(finder.partitionReads == 1)
    // Seconds later, still within the SLA (less the reorder margin): no read.
    #expect(try await finder.find(cutoff: now - 2_000_000, listed: 10).count == 0)
    #expect(finder.partitionReads == 1)
    // Once the order could be late, the partition is read again and the order found.
    let late = try await finder.find(cutoff: now + 1, listed: 10)
    #expect(finder.partitionReads == 2)
    #expect(late.count == 1 && late.notReadByDispatch == 1 && late.oldest.map(\.orderID) == ["o-1"])
}

/// Alerting's rules that read the book refuse to start without `book.url`, naming it; rules
/// that do not, start without it.
@Test func alertingNeedsBookURLOnlyForTheRulesThatReadTheBook() async throws {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("rules-\(UUID().uuidString).json").path
    try #"{"livesync":{"alerting":{"rules":{"dl":{"kind":"dead_letters"}}}}}"#.write(toFile: file, atomically: true, encoding: .utf8)
    let none = try await LiveSyncConfig(file: nil, environment: [:])
    #expect {
        try AlertingConfiguration.load(none, configFile: nil)
    } throws: { "\($0)".contains("book.url") && "\($0)".contains("LIVESYNC_BOOK_URL") }
    #expect(try AlertingConfiguration.load(none, configFile: file).book == nil)
    let notAURL = try await LiveSyncConfig(file: nil, environment: ["LIVESYNC_BOOK_URL": "book:8090"])
    #expect { try AlertingConfiguration.load(notAURL, configFile: nil) } throws: { "\($0)".contains("not an http(s) URL") }
    let set = try await LiveSyncConfig(file: nil, environment: ["LIVESYNC_BOOK_URL": "http://book:8090/"])
    #expect(try AlertingConfiguration.load(set, configFile: nil).book?.baseURL == "http://book:8090")
}

/// Alerting's HTTP API refuses a bad parameter naming it, and serves its store's alerts and
/// late orders.
@Test func alertingsAPIServesItsStoreAndRefusesABadParameterNamingIt() async throws {
    let store = try alertStore()
    let now = Clock.nowMicros()
    try await store.database.write { db in
        try AlertStore.raise(db, key: "k", kind: AlertKind.deadLetter, message: "m", now: now)
        try db.execute(sql: "INSERT INTO alert_unsynced_orders (order_id, ingested_at_us, found_at_us) VALUES ('late', ?, ?), ('later', ?, ?)",
                       arguments: [now - 20_000_000, now, now - 1_000_000, now])
    }
    let router = Router()
    AlertingAPI.addRoutes(to: router, storePath: store.configuration.path)
    let (url, server) = try await LocalServer.serve(router, label: "test-alerting-api")
    defer { server.cancel() }
    let client = AlertingClient(baseURL: url)
    #expect(try await client.recentAlerts(limit: 5).map(\.message) == ["m"])
    #expect(try await client.unsyncedOrders(ingestedBefore: now - 5_000_000, limit: 10).map(\.orderID) == ["late"])
    let badLimit = await #expect(throws: AlertingClientError.self) { _ = try await client.recentAlerts(limit: 0) }
    #expect(badLimit.map { "\($0)" }?.contains("400") == true && badLimit.map { "\($0)" }?.contains("limit") == true, "\(String(describing: badLimit))")
    let badBefore = await #expect(throws: AlertingClientError.self) { let _: [UnsyncedOrders.Late] = try await client.get("/alerts/unsynced?before=yesterday") }
    #expect(badBefore.map { "\($0)" }?.contains("before must be an integer") == true, "\(String(describing: badBefore))")
}
