@testable import DevHarness
import Foundation
import Hummingbird
import LiveSyncTesting
import NIOCore
import Synchronization
import Testing

/// The replay's HTTP load generator: its response reading, and its outcomes (accepted,
/// retried on 429/5xx and lost connections, refused on other 4xx) against a real Hummingbird
/// server, one request at a time and pipelined.
@Suite struct LoadGeneratorTests {
    struct Parsed: Equatable {
        var status: Int
        var close: Bool
        var length: Int
    }

    func parse(_ text: String) throws -> Parsed? {
        let bytes = Array(text.utf8)
        return try bytes.withUnsafeBytes { raw in
            try ResponseReader.parse(raw).map { Parsed(status: $0.0.status, close: $0.0.close, length: $0.1) }
        }
    }

    @Test func readsStatusLengthAndCloseOfEachResponse() throws {
        let ok = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 5\r\n\r\nhello"
        #expect(try parse(ok) == Parsed(status: 200, close: false, length: ok.utf8.count))
        #expect(try parse(String(ok.dropLast())) == nil)  // body incomplete
        #expect(try parse("HTTP/1.1 200 OK\r\nContent-Len") == nil)  // head incomplete
        let chunked = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        #expect(try parse(chunked) == Parsed(status: 503, close: true, length: chunked.utf8.count))
        #expect(try parse(String(chunked.dropLast(2))) == nil)
        let interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n"
        #expect(try parse(interim) == Parsed(status: 429, close: false, length: interim.utf8.count))
        #expect(try parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")?.close == true)
        #expect(throws: (any Error).self) { try parse("SMTP 220 mail.example.com ready\r\n\r\n") }
        #expect(throws: (any Error).self) { try parse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n") }
    }

    @Test func readsPipelinedResponsesSplitAnywhere() throws {
        let one = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        let two = "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad"
        let all = Array((one + two + one).utf8)
        for cut in 1..<all.count {
            var reader = ResponseReader()
            var statuses: [Int] = []
            for part in [all[..<cut], all[cut...]] {
                var buffer = ByteBuffer(bytes: part)
                reader.append(&buffer)
                while let r = try reader.next() { statuses.append(r.status) }
            }
            #expect(statuses == [200, 400, 200], "cut at \(cut)")
        }
    }

    @Test func sinkFindsEachPipelinedRequest() throws {
        var wire = WireRequests()
        wire.appendPOST(target: "/webhooks/generic", host: "127.0.0.1:1", headers: [("Content-Type", "application/json")], body: Array("{\"a\":1}".utf8))
        wire.appendPOST(target: "/x", host: "127.0.0.1:1", headers: [], body: [UInt8]())
        let one = wire.request(0), two = wire.request(1)
        #expect(String(buffer: one).hasPrefix("POST /webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1:1\r\nContent-Length: 7\r\n"))
        #expect(String(buffer: one).hasSuffix("\r\n\r\n{\"a\":1}"))
        var both = one
        var second = two
        both.writeBuffer(&second)
        let lengths = try both.withUnsafeReadableBytes { raw in
            (try OKSink.requestLength(raw), try OKSink.requestLength(UnsafeRawBufferPointer(rebasing: raw[one.readableBytes...])))
        }
        #expect(lengths.0 == one.readableBytes)
        #expect(lengths.1 == two.readableBytes)
        #expect(try one.withUnsafeReadableBytes { try OKSink.requestLength(UnsafeRawBufferPointer(rebasing: $0[..<($0.count - 1)])) } == nil)
    }

    /// A server answering by path: `/ok/N` 200, `/busy/N` 503 then 200, `/throttled/N` 429 then
    /// 200, `/bad/N` 400, `/down/N` always 503.
    final class Attempts: Sendable {
        let counts = Mutex<[String: Int]>([:])
    }

    func serve() async throws -> (url: String, task: Task<Void, Error>, attempts: Attempts) {
        let attempts = Attempts()
        let router = Router()
        router.post("/:kind/:n") { request, context -> Response in
            let path = request.uri.path
            let n = attempts.counts.withLock { a in
                a[path, default: 0] += 1
                return a[path]!
            }
            _ = try await request.body.collect(upTo: 1 << 16)
            let status: HTTPResponse.Status = switch context.parameters.get("kind") ?? "" {
            case "ok": .ok
            case "busy": n == 1 ? .serviceUnavailable : .ok
            case "throttled": n == 1 ? .tooManyRequests : .ok
            case "bad": .badRequest
            default: .serviceUnavailable
            }
            return Response(status: status, body: ResponseBody(byteBuffer: ByteBuffer(string: "{}")))
        }
        let (url, task) = try await LocalServer.serve(router, label: "loadgen-test")
        return (url, task, attempts)
    }

    final class Outcomes: Sendable {
        let seen = Mutex<[Int: [LoadOutcome]]>([:])
    }

    func runAll(depth: Int) async throws {
        let server = try await serve()
        defer { server.task.cancel() }
        let target = HTTPLoadTarget(url: server.url)!
        var wire = WireRequests()
        var kinds: [String] = []
        for n in 0..<200 {
            let kind = n % 50 == 7 ? "bad" : n % 50 == 9 ? "down" : n % 10 == 3 ? "busy" : n % 10 == 5 ? "throttled" : "ok"
            kinds.append(kind)
            wire.appendPOST(target: "/\(kind)/\(n)", host: target.authority, headers: [("Content-Type", "application/json")], body: Array("{\"n\":\(n)}".utf8))
        }
        var options = HTTPLoadRun.Options()
        options.connections = 8
        options.pipelineDepth = depth
        options.firstBackoff = .milliseconds(1)
        options.attempts = 3
        let outcomes = Outcomes()
        let run = try HTTPLoadRun(requests: wire, target: target, options: options) { i, outcome in
            outcomes.seen.withLock { $0[i, default: []].append(outcome) }
        }
        try await run.run()
        try await run.shutdown()
        let seen = outcomes.seen.withLock { $0 }
        let attempts = server.attempts.counts.withLock { $0 }
        #expect(seen.count == 200)
        for (n, kind) in kinds.enumerated() {
            let expected: LoadOutcome = switch kind { case "bad": .refused; case "down": .failed; default: .accepted }
            #expect(seen[n]?.count == 1, "request \(n) has one outcome")
            #expect(seen[n]?.first == expected, "request \(n) (\(kind))")
            let tries = attempts["/\(kind)/\(n)"]
            switch kind {
            case "ok", "bad": #expect(tries == 1, "\(kind)/\(n)")
            case "busy", "throttled": #expect(tries == 2, "\(kind)/\(n)")
            default: #expect(tries == 3, "\(kind)/\(n): every attempt used")
            }
        }
    }

    @Test func retriesBusyAndThrottledRefusesBadGivesUpOnDown() async throws {
        try await runAll(depth: 1)
    }

    @Test func pipelinedConnectionsGiveTheSameOutcomes() async throws {
        try await runAll(depth: 4)
    }

    /// Nothing listening: every request uses its attempts and fails; none is lost.
    @Test func deadTargetFailsEveryRequestAfterItsAttempts() async throws {
        // A port that was just free.
        let server = try await serve()
        server.task.cancel()
        _ = await server.task.result
        let target = HTTPLoadTarget(url: server.url)!
        var wire = WireRequests()
        for n in 0..<20 { wire.appendPOST(target: "/ok/\(n)", host: target.authority, headers: [], body: [UInt8]()) }
        var options = HTTPLoadRun.Options()
        options.connections = 4
        options.firstBackoff = .milliseconds(1)
        options.attempts = 2
        let outcomes = Outcomes()
        let run = try HTTPLoadRun(requests: wire, target: target, options: options) { i, outcome in
            outcomes.seen.withLock { $0[i, default: []].append(outcome) }
        }
        try await run.run()
        try await run.shutdown()
        let seen = outcomes.seen.withLock { $0 }
        #expect(seen.count == 20)
        #expect(seen.values.allSatisfy { $0.count == 1 && $0.first == .failed })
    }
}
