import LiveSyncTesting
import AsyncHTTPClient
import Bootstrap
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

/// A local JSON webhook that records every alert notification it receives.
final class AlertSink: Sendable {
    let received = Mutex<[[String: String]]>([])

    func events(key: String) -> [String] { received.withLock { $0.filter { $0["key"] == key }.map { $0["status"] ?? "?" } } }
    func keys(kind: String) -> Set<String> { Set(received.withLock { $0.filter { $0["kind"] == kind }.compactMap { $0["key"] } }) }

    func start() async throws -> (Task<Void, any Error>, String) {
        let router = Router()
        router.post("/alerts") { request, _ in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            if let json = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any] {
                self.received.withLock { $0.append(json.mapValues { "\($0)" }) }
            }
            return Response(status: .ok)
        }
        let (url, task) = try await LocalServer.serve(router, label: "alert-sink")
        return (task, url + "/alerts")
    }
}

func waitFor(_ what: String, timeout: Double = 60, seen: @autoclosure () -> String = "", _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(250))
    }
    let state = seen()
    Issue.record("timed out after \(Int(timeout)) s waiting for \(what)\(state.isEmpty ? "" : "; saw \(state)")")
    throw CancellationError()
}

func httpGet(_ url: String) async throws -> (Int, String) {
    let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
    return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 16 << 20)))
}

/// Sums every sample of `name` (any labels) in a Prometheus text exposition.
func metricSum(_ text: String, _ name: String) -> Double {
    text.split(separator: "\n").filter { $0.hasPrefix(name + "{") || $0.hasPrefix(name + " ") }
        .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
}

/// The operator's view during a replayed session on `livesync dev`: metrics move on every
/// process, `livesync status` shows them ready, `livesync inspect` passes and then fails after
/// an ERP row is deleted, and a stock-out and a killed consumer each give one alert and one
/// "resolved" on the webhook.
@Suite(.serialized) struct OperationsTests {
    @Test func metricsStatusInspectionAndAlertsDuringAReplayedSession() async throws {
        let sink = AlertSink()
        let (server, hook) = try await sink.start()
        defer { server.cancel() }
        let dir = temporaryDirectory("ops")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let configFile = dir + "-alerting.json"
        try """
        {"livesync": {"alerting": {
          "rules": {
            "stockout": {"kind": "stock_low", "safetyLevel": 0},
            "silent": {"kind": "process_silent", "seconds": 1},
            "inspection": {"kind": "inspection", "intervalSeconds": 2, "graceSeconds": 10}
          },
          "channels": {"sink": {"type": "webhook", "url": "\(hook)"}}
        }}}
        """.write(toFile: configFile, atomically: true, encoding: .utf8)

        let dev = Process()
        dev.executableURL = URL(fileURLWithPath: binDirectory + "/livesync")
        dev.arguments = ["dev", "--data-dir", dir, "--alerting-config", configFile]
        var env = ProcessInfo.processInfo.environment
        env["LIVESYNC_ALERTING_SWEEP_INTERVAL_MS"] = "250"
        dev.environment = env
        dev.standardOutput = FileHandle.nullDevice
        dev.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try dev.run()
        defer {
            kill(dev.processIdentifier, SIGTERM)
            dev.waitUntilExit()
        }
        let livesync = binDirectory + "/livesync"
        try await waitFor("six processes ready in livesync status") {
            let r = try runCommand(livesync, ["status", "--data-dir", dir])
            return r.status == 0 && r.stdout.split(separator: "\n").count == 7
        }

        // No refunds: a refund released after the hot SKU sold out would put units back, and with
        // the concurrent load generator their order against the last sales is not fixed.
        let replay = try runCommand(livesync, ["replay", "--cluster", dir + "/cluster.json", "--orders", "3000", "--seed", "5", "--refund-rate", "0"])
        #expect(replay.status == 0, "\(replay.stderr.suffix(2000))")

        // Every process's /metrics shows the session; each announced its URL on livesync.instances.
        let bootstrap = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/cluster.json"))) as! [String: Any]
        let announced = try await InstanceDirectory(kafka: KafkaConfiguration(bootstrapServers: bootstrap["bootstrap"] as! String)).instances()
        let urls = Dictionary(announced.map { ($0.process, $0.url) }, uniquingKeysWith: { _, last in last })
        #expect(Set(urls.keys) == ["ingest", "stock-1", "dispatch-1", "book-1", "alerting-1", "channels-1"])
        #expect(!FileManager.default.fileExists(atPath: dir + "/processes"), "no process writes a record file any more")
        try await waitFor("dispatch to book the session") {
            let (_, text) = try await httpGet(urls["dispatch-1"]! + "/metrics")
            return metricSum(text, "livesync_sync_latency_seconds_count") >= 3000
        }
        let (_, ingest) = try await httpGet(urls["ingest"]! + "/metrics")
        #expect(metricSum(ingest, "livesync_ingest_orders_received_total") == 3000)
        #expect(metricSum(ingest, "livesync_ingest_orders_published_total") == 3000)
        let (_, stock) = try await httpGet(urls["stock-1"]! + "/metrics")
        #expect(metricSum(stock, "livesync_stock_lines_total") > 3000)
        #expect(metricSum(stock, "livesync_consumer_batches_total") > 0)
        // The hot-SKU gauges are read from the store every 2 s: await the sold-out level.
        try await waitFor("the sold-out hot SKU's gauge") {
            try await httpGet(urls["stock-1"]! + "/metrics").1.contains(#"livesync_stock_available_units{sku="SKU-0000",warehouse="main"} 0.0"#)
        }
        for name in ["book-1", "channels-1"] {
            let (_, text) = try await httpGet(urls[name]! + "/metrics")
            #expect(metricSum(text, "livesync_consumer_messages_total") > 0, "\(name) consumed nothing")
        }
        // Alerting consumes only dead letters; its sweeps are what moves.
        let (_, alerting) = try await httpGet(urls["alerting-1"]! + "/metrics")
        #expect(metricSum(alerting, "livesync_alerting_sweeps_total") > 0, "alerting evaluated no rule")
        let status = try runCommand(livesync, ["status", "--data-dir", dir])
        #expect(status.status == 0 && status.stdout.contains("dispatch-1") && status.stdout.contains("ready"), "\(status.stdout)")

        // The hot SKU sold out: one alert; restocking it ends the alert.
        let hotKey = "stock_low:SKU-0000:main"
        try await waitFor("the stock-out alert", seen: "\(sink.events(key: hotKey))") { sink.events(key: hotKey) == ["firing"] }
        let info = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/cluster.json"))) as! [String: Any]
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: info["bootstrap"] as! String))
        var restock = StockAdjustment()
        restock.adjustmentID = "restock-1"
        restock.sku = "SKU-0000"
        restock.warehouse = "main"
        restock.kind = .delta
        restock.quantity = 500
        restock.createdAtUs = Clock.nowMicros()
        try producer.sendAndWait([ProducerMessage(topic: Topics.stockAdjustments, key: "SKU-0000", value: restock.bytes)])
        producer.close()
        try await waitFor("the stock-out to resolve", seen: "\(sink.events(key: hotKey))") { sink.events(key: hotKey) == ["firing", "resolved"] }

        // The session is consistent, until a row of the ERP book goes missing (from the read model's copy, which inspect reads).
        try await waitFor("livesync inspect to pass") { try runCommand(livesync, ["inspect", "--data-dir", dir, "--grace", "1"]).status == 0 }
        let firingsBefore = sink.events(key: "inspection").filter { $0 == "firing" }.count
        let erp = try openDatabase(dir + "/book.sqlite")
        let victim = try await erp.write { db -> String in
            let id = try String.fetchOne(db, sql: "SELECT order_id FROM erp_orders WHERE status = 'synced' ORDER BY order_id LIMIT 1")!
            try db.execute(sql: "DELETE FROM erp_orders WHERE order_id = ?", arguments: [id])
            return id
        }
        let failed = try runCommand(livesync, ["inspect", "--data-dir", dir, "--grace", "1"])
        #expect(failed.status == 1)
        #expect(failed.stdout.contains("FAIL  placed_orders_booked") && failed.stdout.contains(victim), "\(failed.stdout)")
        try await waitFor("the scheduled inspection's alert") { 
            let events = sink.events(key: "inspection")
            return events.last == "firing" && events.filter { $0 == "firing" }.count == firingsBefore + 1
        }

        // A consumer killed with SIGKILL is silent until the supervisor restarts it: one alert, one resolved.
        let kill = try runCommand(livesync, ["kill", "dispatch", "--cluster", dir + "/cluster.json"])
        #expect(kill.status == 0)
        try await waitFor("the silent-process alert and its end", seen: "\(sink.events(key: "process_silent:dispatch-1"))") { sink.events(key: "process_silent:dispatch-1") == ["firing", "resolved"] }
        // Two more completed sweeps (each would have re-raised a still-silent process): still one incident.
        func sweeps() async throws -> Double { metricSum(try await httpGet(urls["alerting-1"]! + "/metrics").1, "livesync_alerting_sweeps_total") }
        let resolvedAt = try await sweeps()
        try await waitFor("two more alerting sweeps") { try await sweeps() >= resolvedAt + 2 }
        #expect(sink.events(key: "process_silent:dispatch-1") == ["firing", "resolved"], "exactly one alert and one resolved")
        #expect(sink.events(key: hotKey) == ["firing", "resolved"])
    }
}
