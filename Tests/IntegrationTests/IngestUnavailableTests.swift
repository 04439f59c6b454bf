import AsyncHTTPClient
import Foundation
import Ingest
import NIOCore
import Testing

/// Ingest on its own, with Kafka unreachable: it must say so (503, so the platform retries)
/// rather than acknowledge an order it could not publish.
@Test func ingestAnswers503WhenKafkaDoesNotAcknowledgeAnd413ForOversizedBodies() async throws {
    let dir = temporaryDirectory("ingest-down")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binDirectory + "/livesync-ingest")
    var env = ProcessInfo.processInfo.environment
    env["LIVESYNC_KAFKA_BOOTSTRAP"] = "127.0.0.1:1"  // nothing listens there
    env["LIVESYNC_KAFKA_PROPERTIES"] = "message.timeout.ms=1500"
    env["LIVESYNC_INGEST_SHOPS"] = "shop-1=s3cret"
    env["LIVESYNC_INGEST_PORT"] = "0"
    env["LIVESYNC_INGEST_ADDRESS_FILE"] = dir + "/ingest.url"
    env["LIVESYNC_INGEST_MAX_BODY_BYTES"] = "4096"
    process.environment = env
    process.standardError = FileHandle(forWritingAtPath: "/dev/null")
    try process.run()
    defer { process.terminate(); process.waitUntilExit() }

    var url: String?
    for _ in 0..<300 where url == nil {
        if let data = FileManager.default.contents(atPath: dir + "/ingest.url"), !data.isEmpty { url = String(decoding: data, as: UTF8.self) }
        else { try await Task.sleep(for: .milliseconds(50)) }
    }
    let base = try #require(url, "ingest did not start")

    let body = #"{"shop_id":"shop-1","order_id":"X1","currency":"CNY","buyer":{"name":"a","phone":"1","address":"x"},"lines":[{"sku":"S","quantity":1,"unit_price_fen":1}]}"#
    var request = HTTPClientRequest(url: base + "/webhooks/generic")
    request.method = .POST
    request.headers.add(name: GenericWebhook.signatureHeader, value: GenericWebhook.sign(Array(body.utf8), secret: "s3cret"))
    request.body = .bytes(ByteBuffer(string: body))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
    let text = String(buffer: try await response.body.collect(upTo: 1 << 16))
    #expect(response.status.code == 503)
    #expect(text.contains("unavailable"))

    var big = HTTPClientRequest(url: base + "/webhooks/generic")
    big.method = .POST
    big.body = .bytes(ByteBuffer(string: String(repeating: "x", count: 10_000)))
    let tooBig = try await HTTPClient.shared.execute(big, timeout: .seconds(30))
    #expect(tooBig.status.code == 413)
}
