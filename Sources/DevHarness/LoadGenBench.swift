import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// `livesync bench loadgen`: how many requests per second the replay's HTTP load generator
/// offers, and its CPU per request, against a sink that answers every request 200 at once (so
/// the figure is the load generator's, not a server's). The requests are the demo's: a
/// synthetic session's signed generic order and refund webhooks, pre-built exactly as
/// `livesync demo` and `livesync replay` build them, sent over the same connection pool.
public struct LoadGenBenchmark: Sendable {
    public var orders = 100_000
    public var connections = 256
    public var pipelineDepth = 1
    public var threads = 1
    public var seed: UInt64 = 42

    public init() {}

    public struct Result: Codable, Sendable {
        public var requests: Int
        public var accepted: Int
        public var refused: Int
        public var failed: Int
        public var connections: Int
        public var pipeline_depth: Int
        public var request_bytes: Int
        /// Building and signing every request, before the clock starts.
        public var prepare_seconds: Double
        public var seconds: Double
        public var requests_per_sec: Double
        /// CPU of the load generator's event-loop threads per request (user + system).
        public var load_generator_cpu_us_per_request: Double
        /// CPU of the sink's event-loop thread per request.
        public var sink_cpu_us_per_request: Double
        /// CPU of the whole benchmark process per request over the run (both, plus the harness).
        public var process_cpu_us_per_request: Double
    }

    public func run() async throws -> Result {
        let sinkGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let sink = try await ServerBootstrap(group: sinkGroup)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(OKSink()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = sink.localAddress!.port!
        let url = "http://127.0.0.1:\(port)"

        var shape = SessionShape()
        shape.orders = orders
        shape.seed = seed
        let records = SessionGenerator.generate(shape)
        let events = records.filter { $0.type != "stock" }
        let shops = Dictionary(uniqueKeysWithValues: shape.shops.map { ($0, "bench-secret-\($0)") })
        let preparing = ContinuousClock.now
        let session = try await ReplaySender.prepareHTTP(events, url: url, endpoint: HTTPLoadTarget(url: url)!, shops: shops, platformAPIURL: nil)
        let prepareSeconds = (ContinuousClock.now - preparing) / .seconds(1)

        let counts = OutcomeCounts()
        var options = HTTPLoadRun.Options()
        options.connections = connections
        options.pipelineDepth = pipelineDepth
        options.threads = threads
        let run = try HTTPLoadRun(requests: session.wire, target: session.target, options: options) { _, outcome in counts.add(outcome) }
        let sinkLoop = sinkGroup.next()
        let genBefore = try await run.loopCPUSeconds()
        let sinkBefore = try await sinkLoop.submit { threadCPUSeconds() }.get()
        let processBefore = processCPUSeconds()
        let started = ContinuousClock.now
        try await run.run()
        let seconds = (ContinuousClock.now - started) / .seconds(1)
        let processAfter = processCPUSeconds()
        let genAfter = try await run.loopCPUSeconds()
        let sinkAfter = try await sinkLoop.submit { threadCPUSeconds() }.get()
        try await run.shutdown()
        try await sink.close().get()
        try await sinkGroup.shutdownGracefully()

        let n = Double(session.wire.count)
        let c = counts.snapshot
        func perRequest(_ s: Double) -> Double { (s / n * 1e6 * 100).rounded() / 100 }
        return Result(
            requests: session.wire.count, accepted: c.accepted, refused: c.refused, failed: c.failed,
            connections: connections, pipeline_depth: pipelineDepth, request_bytes: session.wire.totalBytes,
            prepare_seconds: (prepareSeconds * 100).rounded() / 100, seconds: (seconds * 1000).rounded() / 1000,
            requests_per_sec: (n / seconds).rounded(),
            load_generator_cpu_us_per_request: perRequest(genAfter - genBefore),
            sink_cpu_us_per_request: perRequest(sinkAfter - sinkBefore),
            process_cpu_us_per_request: perRequest(processAfter - processBefore))
    }
}

/// The process's CPU seconds so far (user + system).
func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

private final class OutcomeCounts: Sendable {
    private let counts = Mutex((accepted: 0, refused: 0, failed: 0))
    func add(_ outcome: LoadOutcome) {
        counts.withLock { c in
            switch outcome {
            case .accepted: c.accepted += 1
            case .refused: c.refused += 1
            case .failed: c.failed += 1
            }
        }
    }
    var snapshot: (accepted: Int, refused: Int, failed: Int) { counts.withLock { $0 } }
}

/// Answers every HTTP/1.1 request 200 with a small JSON body, without looking further than
/// its head's `Content-Length`; pipelined requests get their answers in one write.
final class OKSink: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let answer: ByteBuffer = {
        let body = #"{"status":"accepted"}"#
        return ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
    }()

    private var pending: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if pending == nil || pending!.readableBytes == 0 { pending = incoming } else { pending!.writeBuffer(&incoming) }
        var answered = 0
        while var b = pending, b.readableBytes > 0 {
            let length: Int?
            do { length = try b.withUnsafeReadableBytes { try Self.requestLength($0) } } catch {
                context.close(promise: nil)
                return
            }
            guard let length else { break }
            b.moveReaderIndex(forwardBy: length)
            pending = b.readableBytes == 0 ? nil : b
            answered += 1
        }
        for _ in 0..<answered { context.write(wrapOutboundOut(Self.answer), promise: nil) }
        if answered > 0 { context.flush() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }

    /// The length of the complete request at the start of `raw` (head and `Content-Length` body); nil if incomplete.
    static func requestLength(_ raw: UnsafeRawBufferPointer) throws -> Int? {
        let n = raw.count
        var contentLength = 0
        var lineStart = 0
        var i = 0
        while i + 1 < n {
            if raw[i] == 13, raw[i + 1] == 10 {
                if i == lineStart {
                    let end = i + 2 + contentLength
                    return end <= n ? end : nil
                }
                // "content-length:" (15 bytes), case-insensitive.
                let name = "content-length:".utf8
                if i - lineStart > name.count, zip(name, UnsafeRawBufferPointer(rebasing: raw[lineStart..<(lineStart + name.count)])).allSatisfy({ $0 == $1 | 0x20 }) {
                    var v = 0
                    for k in (lineStart + name.count)..<i where raw[k] != 32 {
                        let d = raw[k] &- 48
                        guard d < 10, v < 1 << 30 else { throw ResponseReader.Malformed() }
                        v = v * 10 + Int(d)
                    }
                    contentLength = v
                }
                lineStart = i + 2
                i += 2
            } else {
                i += 1
            }
        }
        return nil
    }
}
