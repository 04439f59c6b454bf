import LiveSyncTesting
import Connectors
import Foundation
import Hummingbird
import HummingbirdTesting
import Kafka
import Model
import Synchronization
import Testing
import Worker

/// `livesync-channels` as a process: reservations on the embedded broker become signed Douyin
/// `sku.syncStock` calls with the channel's allocation, coalesced to the latest level.
@Test func channelsProcessPushesTheAllocatedLatestLevelOfEachReservedSKUToTheChannel() async throws {
    let broker = try EmbeddedBroker()
    for spec in Topics.all() { try broker.createTopic(spec) }
    let received = Mutex<[String: String]>([:])  // code -> stock_num
    let badSignatures = Atomic<Int>(0)
    let router = Router()
    router.get("/sku/syncStock") { request, _ in
        var q: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { q[String(k)] = String(v) }
        guard let pj = q["param_json"], let ts = q["timestamp"], q["access_token"] == "dy-token",
              q["sign"] == APISigning.douyin(appKey: "dy-app", appSecret: "dy-secret", method: "sku.syncStock", paramJSON: pj, timestamp: ts),
              let p = try? JSONSerialization.jsonObject(with: Data(pj.utf8)) as? [String: Any], let code = p["code"] as? String else {
            badSignatures.add(1, ordering: .relaxed)
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"code":40004,"msg":"sign invalid"}"#)))
        }
        received.withLock { $0[code] = "\(p["stock_num"] ?? "")" }
        return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"code":10000,"msg":"success"}"#)))
    }
    try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { client in
        let api = "http://127.0.0.1:\(try #require(client.port))"
        let dir = temporaryDirectory("channels")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binDirectory + "/livesync-channels")
        var env = ProcessInfo.processInfo.environment
        env["LIVESYNC_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["LIVESYNC_KAFKA_SESSION_TIMEOUT_MS"] = "6000"
        env["LIVESYNC_DATA_DIR"] = dir
        env["LIVESYNC_CONNECTORS_DOUYIN_APP_KEY"] = "dy-app"
        env["LIVESYNC_CONNECTORS_DOUYIN_APP_SECRET"] = "dy-secret"
        env["LIVESYNC_CONNECTORS_DOUYIN_API_BASE"] = api
        env["LIVESYNC_CHANNELS_LIST"] = "douyin:dy-1=0.5/1"
        env["LIVESYNC_CHANNELS_TOKENS"] = "douyin:dy-1=dy-token"
        process.environment = env
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }

        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        defer { producer.close() }
        var messages: [ProducerMessage] = []
        for (sku, levels) in [("SKU-A", [40, 30, 21]), ("SKU-B", [3])] {
            for level in levels {
                var r = Reservation()
                r.sku = sku
                r.warehouse = "main"
                r.availableAfter = Int64(level)
                messages.append(ProducerMessage(topic: Topics.stockReservations, key: sku, value: r.bytes))
            }
        }
        try await producer.send(messages)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, received.withLock({ $0.count }) < 2 { try await Task.sleep(for: .milliseconds(100)) }
        // share 0.5, safety stock 1: SKU-A's latest 21 → 9, SKU-B's 3 → 0.
        #expect(received.withLock { $0 } == ["SKU-A": "9", "SKU-B": "0"])
        #expect(badSignatures.load(ordering: .relaxed) == 0)
    }
}
