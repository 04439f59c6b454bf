import Alerting
import AsyncHTTPClient
import Foundation
import Fulfillment
import Kafka
import LiveSyncTesting
import Model
import NIOCore
import ReadModel
import Synchronization
import Testing
import Worker

/// A worker executable as a child process, its stderr kept to find what it logs (its URLs).
final class ChildProcess: @unchecked Sendable {
    final class Log: Sendable { let text = Mutex("") }
    let process: Process
    let log = Log()
    /// What it logged so far.
    var stderr: String { log.text.withLock { $0 } }

    init(_ name: String, environment: [String: String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binDirectory + "/" + name)
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("LIVESYNC_") }.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = FileHandle.nullDevice
        let log = self.log
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            log.text.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
        self.process = process
    }

    /// The URL logged after `marker` (`url=http://…`), once logged.
    func loggedURL(_ marker: String) -> String? {
        log.text.withLock { log in
            guard let line = log.split(separator: "\n").first(where: { $0.contains(marker) }),
                  let start = line.range(of: "url=http://") else { return nil }
            return String(line[start.lowerBound...].dropFirst(4).prefix { !$0.isWhitespace })
        }
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

/// The real executables on hosts that share nothing but Kafka (separate data directories):
/// `livesync-book` replicates dispatch's changelog and answers the views; `livesync-alerting`
/// asks it (`book.url`) and serves its own alerts and positions beside `/readyz`; `livesync
/// inspect` reads both over HTTP.
@Test func theViewsReachTheReadModelAndAlertingOverHTTPOnly() async throws {
    let broker = try EmbeddedBroker()
    for topic in Topics.all() { try broker.createTopic(topic) }
    let dir = temporaryDirectory("views-http")
    let common = ["LIVESYNC_KAFKA_BOOTSTRAP": broker.bootstrapServers, "LIVESYNC_KAFKA_SESSION_TIMEOUT_MS": "6000", "LIVESYNC_DB_SYNCHRONOUS": "OFF"]
    let bookProcess = try ChildProcess("livesync-book", environment: common.merging([
        "LIVESYNC_DATA_DIR": dir + "/book-host", "LIVESYNC_KAFKA_INSTANCE_ID": "book-1"]) { $1 })
    defer { bookProcess.stop() }
    try await waitFor("the read model listening", timeout: 60, seen: bookProcess.stderr) { bookProcess.loggedURL("read model listening") != nil }
    let bookURL = try #require(bookProcess.loggedURL("read model listening"))

    // Dispatch commits an order on partition 3 and publishes the batch's changelog entry.
    let id = "douyin:shop-1:DY9"
    var order = Order()
    (order.orderID, order.shopID, order.platformOrderID, order.ingestedAtUs) = (id, "shop-1", "DY9", 1)
    order.platform = .douyin
    var line = OrderLine()
    (line.orderID, line.lineNo, line.eventID, line.sku, line.warehouse, line.quantity, line.lineCount) = (id, 1, "\(id):1", "S", "main", 1, 1)
    order.lines = [line]
    var reservation = Reservation()
    (reservation.orderID, reservation.eventID, reservation.lineNo, reservation.sku, reservation.warehouse, reservation.quantity, reservation.lineCount) =
        (id, "\(id):1", 1, "S", "main", 1, 1)
    reservation.status = .reserved
    var payload = BookEntry.Encoder(decidedAtUs: Clock.nowMicros())
    payload.append(.order, order.bytes)
    payload.append(.reservation, reservation.bytes)
    var entry = ChangelogEntry()
    (entry.writer, entry.seq, entry.writtenAtUs) = ("livesync-dispatch/dispatch-1", 1, Clock.nowMicros())
    entry.nextOffsets = [Topics.ordersPlaced: 0, Topics.stockReservations: 0]
    entry.payload = Data(payload.bytes)
    let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3"]))
    defer { producer.close() }
    try producer.sendAndWait([ProducerMessage(topic: Topics.dispatchChangelog, key: "3", value: try entry.serializedBytes(), partition: 3)])
    let book = BookClient(baseURL: bookURL)
    try await waitFor("the read model replicated the order", timeout: 60, seen: bookProcess.stderr) {
        (try? await book.known([id])) == [id]
    }

    let alerting = try ChildProcess("livesync-alerting", environment: common.merging([
        "LIVESYNC_DATA_DIR": dir + "/alerting-host", "LIVESYNC_KAFKA_INSTANCE_ID": "alerting-1", "LIVESYNC_BOOK_URL": bookURL]) { $1 })
    defer { alerting.stop() }
    try await waitFor("alerting's telemetry listening", timeout: 60, seen: alerting.stderr) { alerting.loggedURL("telemetry listening") != nil }
    let alertingURL = try #require(alerting.loggedURL("telemetry listening"))
    #expect(try await httpGet(alertingURL + "/alerts?limit=5").0 == 200)
    #expect(try await httpGet(alertingURL + "/alerts?limit=x").0 == 400)
    #expect(try await AlertingClient(baseURL: alertingURL).unsyncedOrders(ingestedBefore: Clock.nowMicros(), limit: 10).isEmpty)

    // The inspection, from a third place: the read model and alerting over HTTP, the topics from Kafka.
    let inspect = try runCommand(binDirectory + "/livesync", ["inspect", "--data-dir", dir + "/operator", "--bootstrap", broker.bootstrapServers,
                                                              "--book-url", bookURL, "--alerting-url", alertingURL, "--json"], timeout: .seconds(120))
    let report = try JSONDecoder().decode(InspectionReportJSON.self, from: Data(inspect.stdout.utf8))
    #expect(report.checks.map(\.name) == ["placed_orders_booked", "stock_conserved", "no_offset_gap"], "\(inspect.stdout) \(inspect.stderr)")
    let gap = report.checks.first { $0.name == "no_offset_gap" }
    #expect(gap?.passed == true, "\(gap?.summary ?? inspect.stderr)")
}

struct InspectionReportJSON: Decodable {
    struct Check: Decodable { var name: String; var passed: Bool; var summary: String }
    var checks: [Check]
}
