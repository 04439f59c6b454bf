import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
@testable import Ingest
import Kafka
import LiveSyncTesting
import Logging
import Model
import Testing

/// The generic webhooks served on the event loop (`GenericWebhookHandler`): every answer is the
/// one Hummingbird's router gives for the same request, answers keep the order of pipelined
/// requests, and a 200 means the messages are on their topics. Each test runs ingest in this
/// process on an embedded broker and talks to it over raw sockets.
@Suite(.serialized) struct IngestEventLoopTests {
    static let secret = "s3cret"
    static let maxBody = 4096

    static func orderBody(_ id: String, shop: String = "shop-1", quantity: Int = 2, extra: String = "") -> String {
        #"{"shop_id":"\#(shop)","order_id":"\#(id)","currency":"CNY","buyer":{"name":"王芳","phone":"13900001111","address":"上海"},"lines":[{"sku":"SKU-A","quantity":\#(quantity),"unit_price_fen":990},{"sku":"SKU-B","quantity":1,"unit_price_fen":100}]\#(extra)}"#
    }

    static func request(
        _ path: String, _ body: String, secret: String? = IngestEventLoopTests.secret, shop: String? = nil,
        headers: [String] = [], chunks: Int? = nil
    ) -> [UInt8] {
        var head = "POST \(path) HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        if let secret { head += "\(GenericWebhook.signatureHeader): \(GenericWebhook.sign(Array(body.utf8), secret: secret))\r\n" }
        if let shop { head += "\(GenericWebhook.shopHeader): \(shop)\r\n" }
        for h in headers { head += h + "\r\n" }
        let bytes = Array(body.utf8)
        guard let chunks else { return Array((head + "Content-Length: \(bytes.count)\r\n\r\n").utf8) + bytes }
        // Chunked: each chunk reaches the handler as a body part of its own.
        var out = Array((head + "Transfer-Encoding: chunked\r\n\r\n").utf8)
        let size = (bytes.count + chunks - 1) / chunks
        var i = 0
        while i < bytes.count {
            let chunk = bytes[i..<min(i + size, bytes.count)]
            out += Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + Array("\r\n".utf8)
            i += size
        }
        return out + Array("0\r\n\r\n".utf8)
    }

    static func get(_ path: String) -> [UInt8] { Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8) }

    @Test func everyAnswerIsTheRoutersAnswerForTheSameRequest() async throws {
        try await IngestUnderTest.with { ingest in
            let valid = Self.orderBody("E1")
            let cases: [(String, [UInt8])] = [
                ("accepted", Self.request("/webhooks/generic", valid)),
                ("accepted with the shop header", Self.request("/webhooks/generic", Self.orderBody("E2"), shop: "shop-1")),
                ("accepted through JSONDecoder (an escape)", Self.request("/webhooks/generic", Self.orderBody("E3", extra: #","remark":"a\"b""#))),
                ("query string", Self.request("/webhooks/generic?source=test", Self.orderBody("E4"))),
                ("bad signature", Self.request("/webhooks/generic", valid, secret: "wrong")),
                ("no signature", Self.request("/webhooks/generic", valid, secret: nil)),
                ("unknown shop", Self.request("/webhooks/generic", Self.orderBody("E5", shop: "shop-x"))),
                ("invalid quantity", Self.request("/webhooks/generic", Self.orderBody("E6", quantity: 0))),
                ("invalid currency", Self.request("/webhooks/generic", valid.replacingOccurrences(of: "CNY", with: "XYZ"))),
                ("missing field", Self.request("/webhooks/generic", valid.replacingOccurrences(of: #""currency":"CNY","#, with: ""))),
                ("wrong type", Self.request("/webhooks/generic", valid.replacingOccurrences(of: #""quantity":2"#, with: #""quantity":"2""#))),
                ("malformed", Self.request("/webhooks/generic", #"{"shop_id":"shop-1","order_id":"#)),
                ("empty body", Self.request("/webhooks/generic", "")),
                ("shop header, bad signature, unparsed body", Self.request("/webhooks/generic", "not even json", secret: "wrong", shop: "shop-1")),
                ("shop header disagrees with the body", Self.request("/webhooks/generic", Self.orderBody("E7", shop: "shop-2"), secret: "other", shop: "shop-2")),
                ("unknown shop header", Self.request("/webhooks/generic", valid, shop: "shop-x")),
                ("too large", Self.request("/webhooks/generic", String(repeating: "x", count: Self.maxBody + 1))),
                ("at the limit", Self.request("/webhooks/generic", String(repeating: " ", count: Self.maxBody - valid.utf8.count) + valid)),
                ("too large, chunked", Self.request("/webhooks/generic", String(repeating: "x", count: Self.maxBody * 2), chunks: 5)),
                ("refund accepted", Self.request("/webhooks/generic/refunds", #"{"shop_id":"shop-1","order_id":"E1","refund_id":"R1","amount_fen":100}"#)),
                ("refund invalid", Self.request("/webhooks/generic/refunds", #"{"shop_id":"shop-1","order_id":"E1","refund_id":"","amount_fen":100}"#)),
                ("refund bad signature", Self.request("/webhooks/generic/refunds", #"{"shop_id":"shop-1","order_id":"E1","refund_id":"R2","amount_fen":1}"#, secret: "wrong")),
            ]
            for (name, bytes) in cases {
                let before = GenericWebhookHandler.served.load(ordering: .relaxed)
                let fast = try await ingest.fast.exchange(bytes)
                #expect(GenericWebhookHandler.served.load(ordering: .relaxed) == before + 1, "\(name): served on the event loop")
                let router = try await ingest.router.exchange(bytes)
                #expect(GenericWebhookHandler.served.load(ordering: .relaxed) == before + 1, "\(name): the router-only server served it")
                #expect(fast.status == router.status, "\(name)")
                #expect(fast.body == router.body, "\(name)")
                #expect(fast.headerNames == router.headerNames, "\(name)")
                #expect(fast.headers["server"] == "livesync-ingest" && fast.headers["content-type"] == "application/json", "\(name)")
            }
            // Spot checks of what the answers are.
            #expect(try await ingest.fast.exchange(Self.request("/webhooks/generic", valid, secret: "wrong")).status == 401)
            let tooLarge = try await ingest.fast.exchange(Self.request("/webhooks/generic", String(repeating: "x", count: Self.maxBody + 1)))
            #expect(tooLarge.status == 413 && tooLarge.body.contains(#""error":"too_large""#))
            let invalid = try await ingest.fast.exchange(Self.request("/webhooks/generic", Self.orderBody("E8", quantity: 0)))
            #expect(invalid.status == 400 && invalid.body.contains(#""field":"lines[0].quantity""#))
        }
    }

    @Test func theDateHeaderIsAnRFC9110Date() {
        #expect(HTTPDate.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.format(1_796_140_926) == "Tue, 01 Dec 2026 16:02:06 GMT")
        #expect(HTTPDate.now().hasSuffix(" GMT") && HTTPDate.now().utf8.count == 29)
    }

    @Test func aBodyInSeveralPartsIsReadWholeAndTheConnectionServesTheNextRequestAfter413() async throws {
        try await IngestUnderTest.with { ingest in
            let connection = try ingest.fast.connect()
            let before = GenericWebhookHandler.served.load(ordering: .relaxed)
            // One order in 7 chunks, then one past the limit in 9, then another order: one connection.
            try connection.send(Self.request("/webhooks/generic", Self.orderBody("S1"), chunks: 7))
            try connection.send(Self.request("/webhooks/generic", String(repeating: "y", count: Self.maxBody * 3), chunks: 9))
            try connection.send(Self.request("/webhooks/generic", Self.orderBody("S2"), chunks: 3))
            let answers = try await connection.responses(3)
            #expect(answers.map(\.status) == [200, 413, 200])
            #expect(answers[0].body.contains(#""order_id":"generic:shop-1:S1""#))
            #expect(answers[2].body.contains(#""order_id":"generic:shop-1:S2""#))
            #expect(GenericWebhookHandler.served.load(ordering: .relaxed) == before + 3)
            #expect(try ingest.count(Topics.ordersPlaced) == 2)
            connection.close()
        }
    }

    @Test func pipelinedRequestsAreAnsweredInRequestOrderAcrossBothPaths() async throws {
        try await IngestUnderTest.with { ingest in
            // Fast, slow (held until the first answer was read), fast: all in one write.
            let connection = try ingest.fast.connect()
            let before = GenericWebhookHandler.served.load(ordering: .relaxed)
            try connection.send(Self.request("/webhooks/generic", Self.orderBody("P1")) + Self.get("/test/slow")
                + Self.request("/webhooks/generic", Self.orderBody("P2")) + Self.get("/healthz")
                + Self.request("/webhooks/generic/refunds", #"{"shop_id":"shop-1","order_id":"P1","refund_id":"R1","amount_fen":1}"#))
            let first = try await connection.responses(1)
            #expect(first.first?.body.contains("generic:shop-1:P1") == true)
            #expect(GenericWebhookHandler.served.load(ordering: .relaxed) == before + 1)
            await ingest.slowGate.open()
            let rest = try await connection.responses(4)
            #expect(rest.map(\.status) == [200, 200, 200, 200])
            #expect(rest.count == 4 && rest[0].body == "slow")
            #expect(rest.count == 4 && rest[1].body.contains("generic:shop-1:P2"))
            #expect(rest.count == 4 && rest[2].body.contains("ok"))
            #expect(rest.count == 4 && rest[3].body.contains("generic:shop-1:R1"))
            connection.close()

            // Fast requests pipelined behind each other while Kafka acknowledges: in order, all served here.
            let again = try ingest.fast.connect()
            let mark = GenericWebhookHandler.served.load(ordering: .relaxed)
            try again.send((1...20).flatMap { Self.request("/webhooks/generic", Self.orderBody("Q\($0)")) })
            let answers = try await again.responses(20)
            #expect(answers.map(\.body) == (1...20).map { #"{"status":"accepted","order_id":"generic:shop-1:Q\#($0)","lines":2}"# })
            #expect(GenericWebhookHandler.served.load(ordering: .relaxed) == mark + 20)
            again.close()
        }
    }

    @Test func connectionCloseEndsTheConnectionAfterItsAnswerAsHummingbirdDoes() async throws {
        try await IngestUnderTest.with { ingest in
            for server in [ingest.fast, ingest.router] {
                let connection = try server.connect()
                try connection.send(Self.request("/webhooks/generic", Self.orderBody("C1"), headers: ["Connection: close"])
                    + Self.request("/webhooks/generic", Self.orderBody("C2")))
                let answers = try await connection.responses(2)
                #expect(answers.map(\.status) == [200], "only the first request is answered, then the output closes")
                connection.close()
            }
        }
    }

    @Test func aTwoHundredMeansTheMessagesAreOnTheirTopics() async throws {
        try await IngestUnderTest.with { ingest in
            let order = try await ingest.fast.exchange(Self.request("/webhooks/generic", Self.orderBody("K1")))
            #expect(order.status == 200)
            // No waiting: the answer came after Kafka acknowledged every message.
            #expect(try ingest.count(Topics.orderLines) == 2)
            #expect(try ingest.count(Topics.ordersPlaced) == 1)
            let refund = try await ingest.fast.exchange(Self.request("/webhooks/generic/refunds", #"{"shop_id":"shop-1","order_id":"K1","refund_id":"R9","amount_fen":5}"#))
            #expect(refund.status == 200)
            #expect(try ingest.count(Topics.refundRequests) == 1)
        }
    }

    @Test func kafkaUnavailableIs503AndPublishesNothing() async throws {
        try await IngestUnderTest.with(messageTimeoutMilliseconds: 1500) { ingest in
            try ingest.broker.setBroker(1, up: false)
            let fast = try await ingest.fast.exchange(Self.request("/webhooks/generic", Self.orderBody("U1")))
            let router = try await ingest.router.exchange(Self.request("/webhooks/generic", Self.orderBody("U2")))
            try ingest.broker.setBroker(1, up: true)
            #expect(fast.status == 503)
            #expect(fast.body.contains(#""error":"unavailable""#))
            #expect(fast.status == router.status)
            #expect(fast.body == router.body)
            #expect(try ingest.count(Topics.orderLines) == 0)
            #expect(try ingest.count(Topics.ordersPlaced) == 0)
        }
    }
}

/// Two ingest servers in this process on one embedded broker: `fast` serves the generic webhooks
/// on the event loop, `router` only through Hummingbird's router. Both have a `/test/slow` route
/// that answers once `slowGate` opens.
struct IngestUnderTest {
    let broker: EmbeddedBroker
    let admin: KafkaAdmin
    let fast: RawServer
    let router: RawServer
    let slowGate: Gate

    static func with(messageTimeoutMilliseconds: Int = 30_000, _ body: (IngestUnderTest) async throws -> Void) async throws {
        let broker = try EmbeddedBroker()
        for topic in [Topics.orderLines, Topics.ordersPlaced, Topics.refundRequests] {
            try broker.createTopic(TopicSpecification(name: topic, partitions: Topics.partitions))
        }
        let kafka = KafkaConfiguration(
            bootstrapServers: broker.bootstrapServers,
            properties: ["message.timeout.ms": "\(messageTimeoutMilliseconds)", "log_level": "0"])
        let producer = try KafkaProducer(configuration: kafka)
        let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        let gate = Gate()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let shops = ["shop-1": ShopCredentials(secret: IngestEventLoopTests.secret), "shop-2": ShopCredentials(secret: "other")]
        var urls: [String] = []
        var tasks: [Task<Void, any Error>] = []
        for onEventLoop in [true, false] {
            let (stream, continuation) = AsyncStream.makeStream(of: String.self)
            let app = IngestApp.make(
                configuration: IngestConfiguration(host: "127.0.0.1", port: 0, shops: shops, maxBodyBytes: IngestEventLoopTests.maxBody, webhooksOnEventLoop: onEventLoop),
                publisher: OrderPublisher(producer: producer), logger: logger,
                extraRoutes: { router in
                    router.get("/test/slow") { _, _ in
                        await gate.wait()
                        return "slow"
                    }
                },
                onListening: { continuation.yield($0) })
            tasks.append(Task { try await app.run() })
            var iterator = stream.makeAsyncIterator()
            urls.append(try #require(await iterator.next()))
        }
        defer {
            for task in tasks { task.cancel() }
            producer.close(timeoutMilliseconds: 1_000)
        }
        try await body(IngestUnderTest(broker: broker, admin: admin, fast: RawServer(url: urls[0]), router: RawServer(url: urls[1]), slowGate: gate))
    }

    /// Messages on `topic`, over all its partitions.
    func count(_ topic: String) throws -> Int64 {
        try (0..<Topics.partitions).reduce(Int64(0)) { $0 + (try admin.watermarks(TopicPartition(topic, $1)).high) }
    }
}

/// Holds waiters until opened.
actor Gate {
    private var opened = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func wait() async {
        if opened { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        opened = true
        for w in waiters { w.resume() }
        waiters = []
    }
}

struct RawResponse {
    var status: Int
    var headers: [String: String]
    var body: String
    /// Header names, lowercased and sorted (the values of Date differ from answer to answer).
    var headerNames: [String] { headers.keys.sorted() }
}

struct RawServer {
    let port: UInt16

    init(url: String) {
        port = UInt16(url.split(separator: ":").last.flatMap { Int($0.prefix { $0.isNumber }) } ?? 0)
    }

    func connect() throws -> RawConnection { try RawConnection(port: port) }

    /// One request on a connection of its own, and its answer.
    func exchange(_ request: [UInt8]) async throws -> RawResponse {
        let connection = try connect()
        defer { connection.close() }
        try connection.send(request)
        let answers = try await connection.responses(1)
        return try #require(answers.first, "no answer")
    }
}

/// A blocking TCP connection to 127.0.0.1 (reads run on a dispatch thread, not the test's).
final class RawConnection: @unchecked Sendable {  // one test drives it at a time
    let fd: Int32
    private var buffer: [UInt8] = []

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw POSIXError(.EPIPE) }
            sent += n
        }
    }

    func close() { Glibc.close(fd) }

    /// Up to `count` answers, fewer if the server closes the connection first.
    func responses(_ count: Int) async throws -> [RawResponse] {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try self.readResponses(count) })
            }
        }
    }

    private func readResponses(_ count: Int) throws -> [RawResponse] {
        var out: [RawResponse] = []
        while out.count < count, let response = try readResponse() { out.append(response) }
        return out
    }

    /// Reads more bytes; false at the end of the stream.
    private func fill() throws -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw POSIXError(.ETIMEDOUT) }
        buffer += chunk[0..<n]
        return n > 0
    }

    private func readResponse() throws -> RawResponse? {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while true {
            if buffer.count >= 4, let i = (0...(buffer.count - 4)).first(where: { Array(buffer[$0..<$0 + 4]) == separator }) { headEnd = i; break }
            if try !fill() { return nil }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(head[0].split(separator: " ")[1]) ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let start = headEnd! + 4
        while buffer.count < start + length {
            if try !fill() { return nil }
        }
        let body = String(decoding: buffer[start..<start + length], as: UTF8.self)
        buffer.removeFirst(start + length)
        return RawResponse(status: status, headers: headers, body: body)
    }
}
