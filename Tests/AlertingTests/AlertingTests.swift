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

func alerts(_ store: StateStore) throws -> [(kind: String, count: Int, delivered: Bool, attempts: Int)] {
    try store.database.read { db in
        try Row.fetchAll(db, sql: "SELECT kind, count, delivered_at_us IS NOT NULL, attempts FROM alerts ORDER BY id").map { ($0[0], $0[1], $0[2], $0[3]) }
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

@Test func stockOutRejectionsRaiseOneAlertPerSKUAndCountRepeats() throws {
    let store = try alertStore()
    var r = Reservation()
    r.orderID = "o1"
    r.sku = "HOT"
    r.warehouse = "main"
    r.status = .rejected
    var ok = r
    ok.status = .reserved
    try apply(store, [(Topics.stockReservations, r.bytes), (Topics.stockReservations, r.bytes), (Topics.stockReservations, ok.bytes)])
    let a = try alerts(store)
    #expect(a.count == 1)
    #expect(a.first?.kind == "out_of_stock")
    #expect(a.first?.count == 2)
}

@Test func anOrderWithoutOutcomePastTheSLAIsReportedOnce() throws {
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
    let notifier = AlertNotifier(configuration: AlertingConfiguration(unsyncedAfterSeconds: 5), store: store, logger: Logger(label: "t"))
    try notifier.sweepUnsynced(now: now)
    try notifier.sweepUnsynced(now: now + 1)
    let a = try alerts(store)
    #expect(a.map(\.kind) == ["order_not_synced"])
    let message = try store.database.read { try String.fetchOne($0, sql: "SELECT message FROM alerts") } ?? ""
    #expect(message.contains("late") && !message.contains("done"))
}

@Test func alertsAreDeliveredToTheWebhookOnceAndRetriedWhileItFails() async throws {
    try await withWebhook { url, fake in
        let store = try alertStore()
        var dl = DeadLetter()
        dl.sourceTopic = Topics.orderLines
        dl.error = "not an OrderLine"
        dl.consumerGroup = "livesync-stock"
        try apply(store, [(Topics.deadLetter, dl.bytes)])
        let notifier = AlertNotifier(configuration: AlertingConfiguration(webhookURL: url), store: store, logger: Logger(label: "t"))

        fake.status.withLock { $0 = 503 }
        try await notifier.deliver(now: Clock.nowMicros())
        var a = try alerts(store)
        #expect(a.first?.delivered == false && a.first?.attempts == 1, "a failed delivery stays pending")
        // Backoff: not retried before its time, retried after.
        try await notifier.deliver(now: Clock.nowMicros())
        #expect(fake.bodies.withLock { $0.count } == 1)
        fake.status.withLock { $0 = 200 }
        try await notifier.deliver(now: Clock.nowMicros() + 60_000_000)
        a = try alerts(store)
        #expect(a.first?.delivered == true)
        try await notifier.deliver(now: Clock.nowMicros() + 120_000_000)
        let bodies = fake.bodies.withLock { $0 }
        #expect(bodies.count == 2, "delivered once after the failure, never again")
        let json = try JSONSerialization.jsonObject(with: Data(bodies.last!.utf8)) as? [String: Any]
        #expect(json?["kind"] as? String == "dead_letter")
        #expect((json?["message"] as? String)?.contains("not an OrderLine") == true)
    }
}
