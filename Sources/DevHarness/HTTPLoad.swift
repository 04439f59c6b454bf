import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// HTTP/1.1 requests serialised to their wire bytes once, before a load run's clock starts: all of
/// them in one buffer, each a slice of it, so sending one is a single write of bytes that already
/// exist (no encoding, signing, header building or copy per request).
public struct WireRequests: Sendable {
    private var storage = ByteBuffer()
    private var offsets: [Int] = [0]

    public init() {}

    public var count: Int { offsets.count - 1 }
    public var isEmpty: Bool { count == 0 }

    /// Appends `POST <target>` (path and query) with `headers` and `body`; adds `Host` and `Content-Length`.
    public mutating func appendPOST(target: String, host: String, headers: [(String, String)], body: some Collection<UInt8>) {
        storage.writeString("POST \(target) HTTP/1.1\r\nHost: \(host)\r\nContent-Length: \(body.count)\r\n")
        for (name, value) in headers where name.lowercased() != "content-length" && name.lowercased() != "host" {
            storage.writeString("\(name): \(value)\r\n")
        }
        storage.writeStaticString("\r\n")
        storage.writeBytes(body)
        offsets.append(storage.writerIndex)
    }

    /// The wire bytes of request `i` (empty: nothing to send); shares the one buffer's storage.
    public func request(_ i: Int) -> ByteBuffer {
        storage.getSlice(at: offsets[i], length: offsets[i + 1] - offsets[i])!
    }

    public var totalBytes: Int { storage.writerIndex }
}

/// Where a load run sends: an `http://host:port` base URL, resolved once.
public struct HTTPLoadTarget: Sendable {
    public var host: String
    public var port: Int
    /// `host:port` for the `Host` header.
    public var authority: String
    /// The URL's path prefix (usually empty), prepended to every request's path.
    public var basePath: String

    /// Nil for anything but plain `http://` (those go through AsyncHTTPClient).
    public init?(url: String) {
        guard let u = URL(string: url), u.scheme?.lowercased() == "http", let host = u.host, !host.isEmpty else { return nil }
        self.host = host
        self.port = u.port ?? 80
        self.authority = u.port.map { "\(host):\($0)" } ?? host
        var path = u.path
        while path.hasSuffix("/") { path.removeLast() }
        self.basePath = path
    }
}

/// The outcome of one request after its retries.
public enum LoadOutcome: Sendable {
    case accepted, refused, failed
}

/// Fires pre-built requests over a fixed pool of keep-alive HTTP/1.1 connections on NIO event
/// loops: each connection keeps up to `pipelineDepth` requests in flight (HTTP/1.1 pipelining;
/// 1 = one at a time) and takes the next request the moment one is answered. A request answered
/// 2xx is accepted, 429 or 5xx or a lost connection is retried with backoff (100 ms · 2^attempt,
/// 8 attempts in all, as platforms retry), any other 4xx is refused. The responses are parsed
/// just far enough to find their status and length; nothing is allocated per request but the
/// slice of the pre-built buffer.
public final class HTTPLoadRun: Sendable {
    public struct Options: Sendable {
        public var connections = 256
        public var pipelineDepth = 1
        /// Event-loop threads of the load generator.
        public var threads = 1
        public var connectTimeout: TimeAmount = .seconds(5)
        /// No answer within this long: the connection is dropped and its requests retried.
        public var readTimeout: TimeAmount = .seconds(30)
        public var attempts = 8
        public var firstBackoff: TimeAmount = .milliseconds(100)
        public init() {}
    }

    let requests: WireRequests
    /// Seconds after the start at which each request is due (nil: all at once).
    let due: [Double]?
    let options: Options
    let address: SocketAddress
    let onOutcome: @Sendable (Int, LoadOutcome) -> Void
    private let next = Atomic<Int>(0)
    private let completed = Atomic<Int>(0)
    private let start = Mutex<NIODeadline>(.now())
    private let finished: Mutex<EventLoopPromise<Void>?>
    let group: MultiThreadedEventLoopGroup

    /// - Parameter onOutcome: called on an event loop for every request, once, with its outcome (keep it short).
    public init(requests: WireRequests, due: [Double]? = nil, target: HTTPLoadTarget, options: Options = Options(),
                onOutcome: @escaping @Sendable (Int, LoadOutcome) -> Void) throws {
        self.requests = requests
        self.due = due?.contains(where: { $0 > 0 }) == true ? due : nil
        self.options = options
        self.onOutcome = onOutcome
        self.address = try SocketAddress.makeAddressResolvingHost(target.host, port: target.port)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, options.threads))
        self.finished = Mutex(nil)
    }

    /// The event loops' threads' CPU seconds so far (user + system, `CLOCK_THREAD_CPUTIME_ID`).
    public func loopCPUSeconds() async throws -> Double {
        var total = 0.0
        for loop in group.makeIterator() {
            total += try await loop.submit { threadCPUSeconds() }.get()
        }
        return total
    }

    /// Sends every request and returns once each one has its outcome.
    public func run() async throws {
        let total = requests.count
        guard total > 0 else { return }
        let loop = group.next()
        let promise = loop.makePromise(of: Void.self)
        finished.withLock { $0 = promise }
        start.withLock { $0 = .now() }
        let loops = Array(group.makeIterator())
        for c in 0..<max(1, min(options.connections, total)) {
            let el = loops[c % loops.count]
            el.execute { [self] in
                let connection = LoadConnection(run: self, eventLoop: el)
                connection.pump()
            }
        }
        try await promise.futureResult.get()
    }

    public func shutdown() async throws {
        try await group.shutdownGracefully()
    }

    // MARK: shared by the connections (thread-safe)

    /// The next request index not yet taken, or nil when all are.
    func take() -> Int? {
        let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
        return i < requests.count ? i : nil
    }

    var exhausted: Bool { next.load(ordering: .relaxed) >= requests.count }

    func deadline(of i: Int) -> NIODeadline? {
        guard let due, due[i] > 0 else { return nil }
        return start.withLock { $0 } + .nanoseconds(Int64(due[i] * 1e9))
    }

    func complete(_ i: Int, _ outcome: LoadOutcome) {
        onOutcome(i, outcome)
        if completed.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == requests.count {
            finished.withLock { $0 }?.succeed(())
        }
    }
}

/// CPU seconds of the calling thread.
func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// One keep-alive connection of a load run and the requests it holds; lives on one event loop.
final class LoadConnection {
    struct Held {
        var index: Int
        var attempt: Int
    }

    let run: HTTPLoadRun
    let eventLoop: any EventLoop
    private var channel: (any Channel)?
    private var connecting = false
    /// Sent, awaiting their answers in order.
    private var inFlight = CircularBuffer<Held>()
    /// Ready to send (a retry whose backoff is over, or a request whose time has come).
    private var ready = CircularBuffer<Held>()
    /// Waiting for a backoff or for their time.
    private var waiting = 0
    private var reader = ResponseReader()
    private var generation = 0
    /// When the connection last wrote or was answered (for the read timeout).
    private var lastProgress = NIODeadline.now()
    private var watchdog: Scheduled<Void>?

    init(run: HTTPLoadRun, eventLoop: any EventLoop) {
        self.run = run
        self.eventLoop = eventLoop
    }

    private var held: Int { inFlight.count + ready.count + waiting }

    /// Takes work up to the pipeline depth and sends what is ready.
    func pump() {
        let depth = run.options.pipelineDepth
        while held < depth, let i = run.take() {
            if let at = run.deadline(of: i), at > .now() {
                later(Held(index: i, attempt: 0), at: at)
            } else {
                ready.append(Held(index: i, attempt: 0))
            }
        }
        guard !ready.isEmpty else {
            if held == 0, run.exhausted { close() }
            return
        }
        guard let channel else { connect(); return }
        var wrote = false
        while let h = ready.popFirst() {
            inFlight.append(h)
            channel.write(run.requests.request(h.index), promise: nil)
            wrote = true
        }
        if wrote {
            channel.flush()
            lastProgress = .now()
        }
    }

    private func later(_ h: Held, at deadline: NIODeadline) {
        waiting += 1
        eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
            waiting -= 1
            ready.append(h)
            pump()
        }
    }

    /// Retries `h` after its backoff, or gives up on it after the last attempt.
    private func retry(_ h: Held) {
        guard h.attempt + 1 < run.options.attempts else {
            run.complete(h.index, .failed)
            return
        }
        let backoff = TimeAmount.nanoseconds(run.options.firstBackoff.nanoseconds << h.attempt)
        later(Held(index: h.index, attempt: h.attempt + 1), at: .now() + backoff)
    }

    private func connect() {
        guard !connecting else { return }
        connecting = true
        generation += 1
        let gen = generation
        ClientBootstrap(group: eventLoop)
            .connectTimeout(run.options.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(to: run.address)
            .assumeIsolated()
            .whenComplete { [self] result in
                connecting = false
                switch result {
                case .success(let ch):
                    do {
                        try ch.pipeline.syncOperations.addHandler(ResponseHandler(connection: self, generation: gen))
                    } catch {
                        ch.close(promise: nil)
                        failHeld()
                        return
                    }
                    channel = ch
                    reader = ResponseReader()
                    startWatchdog(generation: gen)
                    ch.closeFuture.assumeIsolated().whenComplete { [self] _ in lost(generation: gen, charge: true) }
                    pump()
                case .failure:
                    failHeld()
                }
            }
    }

    /// A connection could not be made: each request held counts a failed attempt (one is taken
    /// if none is held, so a dead target uses up attempts instead of spinning).
    private func failHeld() {
        if ready.isEmpty, waiting == 0, let i = run.take() { ready.append(Held(index: i, attempt: 0)) }
        while let h = ready.popFirst() { retry(h) }
        if held == 0 { pump() }
    }

    /// The connection closed or broke: requests without an answer go back (charged an attempt
    /// unless the server announced the close), and the next pump reconnects.
    func lost(generation gen: Int, charge: Bool) {
        guard gen == generation, let ch = channel else { return }
        channel = nil
        generation += 1
        watchdog?.cancel()
        watchdog = nil
        ch.close(promise: nil)
        while let h = inFlight.popFirst() {
            if charge { retry(h) } else { ready.append(h) }
        }
        pump()
    }

    /// One answer arrived (answers come in request order).
    func answered(status: Int, close: Bool, generation gen: Int) {
        guard gen == generation, let h = inFlight.popFirst() else { return }
        switch status {
        case 200..<300: run.complete(h.index, .accepted)
        case 429: retry(h)
        case 400..<500: run.complete(h.index, .refused)
        default: retry(h)
        }
        if close {
            lost(generation: gen, charge: false)
            return
        }
        lastProgress = .now()
        pump()
    }

    func broken(generation gen: Int) { lost(generation: gen, charge: true) }

    /// Checks a few times per read timeout that a connection with requests in flight is answered
    /// (one timer per connection, not one per request).
    private func startWatchdog(generation gen: Int) {
        let timeout = run.options.readTimeout
        watchdog = eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(max(timeout.nanoseconds / 4, 1_000_000))) { [self] in
            guard gen == generation else { return }
            if !inFlight.isEmpty, NIODeadline.now() - lastProgress > timeout {
                lost(generation: gen, charge: true)
            } else {
                startWatchdog(generation: gen)
            }
        }
    }

    private func close() {
        watchdog?.cancel()
        watchdog = nil
        generation += 1
        channel?.close(promise: nil)
        channel = nil
    }

    func feed(_ buffer: inout ByteBuffer, generation gen: Int) {
        guard gen == generation else { return }
        reader.append(&buffer)
        while true {
            let parsed: ResponseReader.Response?
            do { parsed = try reader.next() } catch {
                broken(generation: gen)
                return
            }
            guard let r = parsed else { return }
            answered(status: r.status, close: r.close, generation: gen)
            if gen != generation { return }
        }
    }
}

/// Hands a connection's bytes to its `LoadConnection`.
final class ResponseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let connection: LoadConnection
    let generation: Int

    init(connection: LoadConnection, generation: Int) {
        self.connection = connection
        self.generation = generation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        connection.feed(&buffer, generation: generation)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.broken(generation: generation)
    }
}

/// Reads HTTP/1.1 responses just far enough to know their status, where each ends
/// (`Content-Length` or chunked) and whether the server closes after it.
struct ResponseReader {
    struct Response {
        var status: Int
        var close: Bool
    }
    struct Malformed: Error {}

    private var buffer: ByteBuffer?

    mutating func append(_ bytes: inout ByteBuffer) {
        if buffer == nil || buffer!.readableBytes == 0 {
            buffer = bytes
        } else {
            buffer!.writeBuffer(&bytes)
        }
    }

    /// The next complete response, consumed; nil until one is complete.
    mutating func next() throws -> Response? {
        guard var b = buffer, b.readableBytes > 0 else { return nil }
        let parsed: (Response, Int)? = try b.withUnsafeReadableBytes { raw in try Self.parse(raw) }
        guard let (response, length) = parsed else { return nil }
        b.moveReaderIndex(forwardBy: length)
        buffer = b.readableBytes == 0 ? nil : b
        return response
    }

    /// A complete response at the start of `raw` and its length; nil if incomplete.
    static func parse(_ raw: UnsafeRawBufferPointer) throws -> (Response, Int)? {
        let n = raw.count
        // "HTTP/1.x SSS"
        guard n >= 12 else { return nil }
        guard raw[0] == UInt8(ascii: "H"), raw[4] == UInt8(ascii: "/"), raw[8] == UInt8(ascii: " ") else { throw Malformed() }
        var status = 0
        for k in 9..<12 {
            let d = raw[k] &- UInt8(ascii: "0")
            guard d < 10 else { throw Malformed() }
            status = status * 10 + Int(d)
        }
        var close = raw[7] == UInt8(ascii: "0")  // HTTP/1.0 closes unless told otherwise
        var contentLength: Int?
        var chunked = false
        // Header lines: from the end of the status line to an empty line.
        var i = 12
        func lineEnd(from s: Int) -> Int? {
            var j = s
            while j + 1 < n {
                if raw[j] == 13 && raw[j + 1] == 10 { return j }
                j += 1
            }
            return nil
        }
        guard var e = lineEnd(from: i) else { return nil }
        i = e + 2
        while true {
            guard let end = lineEnd(from: i) else { return nil }
            e = end
            if e == i { i += 2; break }
            if let colon = (i..<e).first(where: { raw[$0] == UInt8(ascii: ":") }) {
                var vs = colon + 1
                while vs < e, raw[vs] == 32 || raw[vs] == 9 { vs += 1 }
                var ve = e
                while ve > vs, raw[ve - 1] == 32 || raw[ve - 1] == 9 { ve -= 1 }
                if equalsLowercased(raw, i, colon, "content-length") {
                    var v = 0
                    guard ve > vs else { throw Malformed() }
                    for k in vs..<ve {
                        let d = raw[k] &- UInt8(ascii: "0")
                        guard d < 10, v < 1 << 40 else { throw Malformed() }
                        v = v * 10 + Int(d)
                    }
                    contentLength = v
                } else if equalsLowercased(raw, i, colon, "transfer-encoding") {
                    chunked = containsLowercased(raw, vs, ve, "chunked")
                } else if equalsLowercased(raw, i, colon, "connection") {
                    if containsLowercased(raw, vs, ve, "close") { close = true }
                    if containsLowercased(raw, vs, ve, "keep-alive") { close = false }
                }
            } else {
                throw Malformed()
            }
            i = e + 2
        }
        if (100..<200).contains(status) || status == 204 || status == 304 {
            if (100..<200).contains(status) {
                // An interim answer: skip it; the real one follows.
                let rest = UnsafeRawBufferPointer(rebasing: raw[i...])
                guard let (r, len) = try parse(rest) else { return nil }
                return (r, i + len)
            }
            return (Response(status: status, close: close), i)
        }
        if chunked {
            while true {
                guard let end = lineEnd(from: i) else { return nil }
                var size = 0
                var k = i
                while k < end, raw[k] != UInt8(ascii: ";") {
                    let c = raw[k] | 0x20
                    let d: UInt8
                    switch c {
                    case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                    case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                    default: throw Malformed()
                    }
                    guard size < 1 << 40 else { throw Malformed() }
                    size = size * 16 + Int(d)
                    k += 1
                }
                i = end + 2
                if size == 0 {
                    // Trailers, then an empty line.
                    while true {
                        guard let t = lineEnd(from: i) else { return nil }
                        let empty = t == i
                        i = t + 2
                        if empty { return (Response(status: status, close: close), i) }
                    }
                }
                guard i + size + 2 <= n else { return nil }
                i += size + 2
            }
        }
        guard let contentLength else {
            // No length: the body runs to the close; the connection is not reused.
            return (Response(status: status, close: true), n)
        }
        guard i + contentLength <= n else { return nil }
        return (Response(status: status, close: close), i + contentLength)
    }

    private static func equalsLowercased(_ raw: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ word: StaticString) -> Bool {
        guard e - s == word.utf8CodeUnitCount else { return false }
        let w = word.utf8Start
        for k in 0..<(e - s) where raw[s + k] | 0x20 != w[k] { return false }
        return true
    }

    private static func containsLowercased(_ raw: UnsafeRawBufferPointer, _ s: Int, _ e: Int, _ word: StaticString) -> Bool {
        let len = word.utf8CodeUnitCount
        guard e - s >= len else { return false }
        let w = word.utf8Start
        outer: for start in s...(e - len) {
            for k in 0..<len where raw[start + k] | 0x20 != w[k] { continue outer }
            return true
        }
        return false
    }
}
