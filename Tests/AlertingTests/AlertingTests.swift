import Foundation
import GRDB
import Hummingbird
import Kafka
import Logging
import Model
import NIOCore
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
    let port = Mutex(0)
    let app = Application(
        router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port ?? 0 } },
        logger: Logger(label: "fake-webhook"))
    let server = Task { try await app.runService() }
    defer { server.cancel() }
    for _ in 0..<200 where port.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
    try await body("http://127.0.0.1:\(port.withLock { $0 })/hook", fake)
}

@Test func aLateOrderRaisesOneAlertThatResolvesWhenItsOutcomeArrives() async throws {
    let store = try alertStore()
    let now = Clock.nowMicros()
    var late = Order()
    late.orderID = "late"
    late.ingestedAtUs = now - 10_000_000
    var done = Order()
    done.orderID = "done"
    done.ingestedAtUs = now - 10_000_000
    var outcome = OrderOutcome()
    outcome.orderID = "done"
    outcome.kind = .synced
    try apply(store, [(Topics.ordersPlaced, late.bytes), (Topics.ordersPlaced, done.bytes), (Topics.orderOutcomes, outcome.bytes)])
    let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.orderUnsynced(seconds: 5)], channels: []))
    let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
    try await notifier.sweep(now: now)
    try await notifier.sweep(now: now + 1)
    var a = try alerts(store)
    #expect(a.map(\.kind) == ["order_not_synced"] && a.first?.count == 2 && a.first?.resolved == false)
    let message = try await store.database.read { try String.fetchOne($0, sql: "SELECT message FROM alerts") } ?? ""
    #expect(message.contains("late") && !message.contains("done"))
    outcome.orderID = "late"
    try apply(store, [(Topics.orderOutcomes, outcome.bytes)])
    try await notifier.sweep(now: now + 2)
    a = try alerts(store)
    #expect(a.count == 1 && a.first?.resolved == true)
}

@Test func theFailureRateRuleFiresAboveItsThresholdOnly() async throws {
    let store = try alertStore()
    let now = Clock.nowMicros()
    var items: [(String, [UInt8])] = []
    for i in 0..<20 {
        var o = OrderOutcome()
        o.orderID = "o\(i)"
        o.kind = i < 3 ? .rejectedOutOfStock : .synced
        o.decidedAtUs = now - 1_000_000
        items.append((Topics.orderOutcomes, o.bytes))
    }
    try apply(store, items)
    func run(_ threshold: Double) async throws -> [(kind: String, count: Int, resolved: Bool)] {
        let config = AlertingConfiguration(rules: AlertRulesConfiguration(rules: [.syncFailureRate(threshold: threshold, windowSeconds: 60, minOrders: 10)], channels: []))
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
        try AlertingProcessor().prepare(db)
        try AlertStore.resolve(db, kind: "dead_letter", except: [], now: 2)
        try AlertStore.raise(db, key: "k", kind: "dead_letter", message: "new", now: 3)
    }
    let a = try alerts(store)
    #expect(a.map(\.count) == [3, 1] && a.map(\.resolved) == [true, false])
}
