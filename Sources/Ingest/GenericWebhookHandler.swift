import Foundation
import HTTPTypes
import Kafka
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Serves the hot generic webhooks (`POST /webhooks/generic` and `/webhooks/generic/refunds`)
/// on the connection's event loop: it reads the body, accepts it (`GenericWebhookRoute`, as the
/// router's routes do), enqueues its messages and answers when Kafka's delivery reports come
/// back (`DeliveryGroup.onComplete`, hopping back to the loop), with no Swift task or async
/// stream per request. Every other request is handed on to Hummingbird's router unchanged.
///
/// It sits in Hummingbird's HTTP/1 pipeline after the HTTP decoding (`additionalChannelHandlers`).
/// Answers keep the order of the requests on a keep-alive connection:
/// - a request is served here only when every request handed on before it has been answered
///   (its answer's end was written); otherwise it is handed on too, and the router serves it;
/// - while a request of ours is being answered, everything read after it (and the socket's
///   reads) is held back, then replayed in order once the answer is written.
/// As Hummingbird does, a request with `Connection: close` closes the connection's output after
/// its answer and nothing read after it is served; a body past `maxBodyBytes` is answered 413
/// at once and the rest of it is dropped unread.
final class GenericWebhookHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What the handlers of every connection share.
    struct Shared: Sendable {
        let configuration: IngestConfiguration
        let publisher: OrderPublisher
        let logger: Logger
        let metrics: IngestMetrics
        /// The `Server` header Hummingbird adds to its answers.
        let serverName: String
    }

    private let shared: Shared

    /// Requests served here (not handed on) since the process started: tests check the path taken.
    static let served = Atomic<Int>(0)

    init(_ shared: Shared) {
        self.shared = shared
    }

    /// A request served here while its body is read.
    private struct Serving {
        let route: GenericWebhookRoute
        let headers: HTTPFields
        let close: Bool
        var body: ByteBuffer?
    }

    private enum Reading {
        /// Between requests.
        case idle
        /// A request handed on: its parts follow it (`close`: it asked for `Connection: close`).
        case forwarding(close: Bool)
        /// A request of ours (`serving`): its body is being read.
        case serving
        /// The rest of a request already answered 413: dropped.
        case draining
        /// After a `Connection: close` request, or once quiescing: nothing more is served.
        case closed
    }

    private enum Held {
        case part(HTTPRequestPart)
        case error(any Error)
    }

    private var context: ChannelHandlerContext?
    private var reading = Reading.idle
    private var serving: Serving?
    /// Requests handed on whose answer's end has not been written yet.
    private var handedOn = 0
    /// A request of ours has been read whole and is being answered (awaiting Kafka).
    private var answering = false
    /// What was read while `answering`, replayed in order once answered.
    private var held = CircularBuffer<Held>()
    /// A `read` asked for while holding back.
    private var readHeld = false
    /// A quiesce event (graceful shutdown) held back until our answer is written.
    private var quiesceHeld = false
    private var quiescing = false
    private var replaying = false
    /// Something was handed on while replaying: Hummingbird's stream takes reads in at the read's end.
    private var forwardedWhileReplaying = false

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if answering || !held.isEmpty {
            held.append(.part(part))
            return
        }
        process(part, context: context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if answering || !held.isEmpty {
            held.append(.error(error))
            return
        }
        forwardError(error, context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        if answering || serving != nil {
            quiesceHeld = true
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func forwardError(_ error: any Error, context: ChannelHandlerContext) {
        // A request of ours cut short by a parse error is dropped: Hummingbird answers the error.
        if case .serving = reading {
            serving = nil
            reading = .idle
        }
        context.fireErrorCaught(error)
    }

    private func process(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch reading {
        case .closed:
            return
        case .draining:
            if case .end = part { reading = .idle }
        case .forwarding(let close):
            // After a `Connection: close` request Hummingbird serves nothing more: neither do we.
            if case .end = part { reading = close ? .closed : .idle }
            forward(part, context: context)
        case .serving:
            switch part {
            case .head:
                // The decoder always ends a request before the next head; hand it on if it did not.
                serving = nil
                reading = .idle
                process(part, context: context)
            case .body(let buffer):
                let size = (serving?.body?.readableBytes ?? 0) + buffer.readableBytes
                if size > shared.configuration.maxBodyBytes {
                    let request = serving!
                    serving = nil
                    reading = .draining
                    refuse(.tooLarge(limit: shared.configuration.maxBodyBytes), route: request.route, close: request.close, context: context)
                } else if serving!.body == nil {
                    serving!.body = buffer
                } else {
                    serving!.body!.writeImmutableBuffer(buffer)
                }
            case .end:
                let request = serving!
                serving = nil
                reading = .idle
                serve(request, context: context)
            }
        case .idle:
            guard case .head(let head) = part else {
                forward(part, context: context)
                return
            }
            if head.method == .post, handedOn == 0, !quiescing, let path = head.path, let route = GenericWebhookRoute.matching(path: path) {
                route.received(shared.metrics)
                Self.served.add(1, ordering: .relaxed)
                serving = Serving(route: route, headers: head.headerFields, close: head.headerFields[.connection] == "close")
                reading = .serving
            } else {
                handedOn += 1
                reading = .forwarding(close: head.headerFields[.connection] == "close")
                forward(part, context: context)
            }
        }
    }

    private func forward(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        if replaying { forwardedWhileReplaying = true }
        context.fireChannelRead(wrapInboundOut(part))
    }

    /// Accepts a request read whole, publishes it and answers once Kafka acknowledged it.
    private func serve(_ request: Serving, context: ChannelHandlerContext) {
        answering = true
        let body = request.body.map { Array($0.readableBytesView) } ?? []
        let accepted: GenericWebhookRoute.Accepted
        do throws(IngestError) {
            accepted = try request.route.accept(body, headers: request.headers, configuration: shared.configuration, publisher: shared.publisher)
        } catch {
            refuse(error, route: request.route, close: request.close, context: context)
            return
        }
        let group: DeliveryGroup
        do { group = try shared.publisher.producer.enqueue(accepted.messages) } catch {
            refuse(.unavailable("\(error)"), route: request.route, close: request.close, context: context)
            return
        }
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let (route, close, reply) = (request.route, request.close, accepted.reply)
        group.onComplete { error in
            eventLoop.execute { handler.value.delivered(route: route, close: close, reply: reply, error: error) }
        }
    }

    private func delivered(route: GenericWebhookRoute, close: Bool, reply: String, error: KafkaError?) {
        guard let context else { return }
        if let error {
            refuse(.unavailable("\(error)"), route: route, close: close, context: context)
        } else {
            route.published(shared.metrics)
            answer(status: 200, body: reply, close: close, context: context)
        }
    }

    private func refuse(_ error: IngestError, route: GenericWebhookRoute, close: Bool, context: ChannelHandlerContext) {
        let refusal = route.refusal(error, metrics: shared.metrics, logger: shared.logger)
        answer(status: refusal.status, body: refusal.body, close: close, context: context)
    }

    /// Writes the answer as Hummingbird's router would (same headers), then goes on with what was held.
    private func answer(status: Int, body: String, close: Bool, context: ChannelHandlerContext) {
        let buffer = context.channel.allocator.buffer(string: body)
        var fields = HTTPFields()
        fields.reserveCapacity(4)
        fields[.contentType] = "application/json"
        fields[.contentLength] = String(buffer.readableBytes)
        fields[.date] = HTTPDate.now()
        fields[.server] = shared.serverName
        context.write(wrapOutboundOut(.head(HTTPResponse(status: HTTPResponse.Status(code: status), headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(buffer)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        answering = false
        if close {
            stopServing(context: context)
            // As Hummingbird does: close the output once written, and wait for the client to close.
            let channel = context.channel
            let closed = context.eventLoop.makePromise(of: Void.self)
            closed.futureResult.whenFailure { _ in channel.close(promise: nil) }
            context.close(mode: .output, promise: closed)
        } else if quiesceHeld {
            stopServing(context: context)
        } else {
            resume(context: context)
        }
        if quiesceHeld {
            quiesceHeld = false
            context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
    }

    private func stopServing(context: ChannelHandlerContext) {
        reading = .closed
        serving = nil
        held.removeAll()
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Replays what was held back, in order, until a request of ours is being answered again.
    private func resume(context: ChannelHandlerContext) {
        guard !replaying else { return }
        replaying = true
        defer { replaying = false }
        while !answering, let next = held.popFirst() {
            switch next {
            case .part(let part): process(part, context: context)
            case .error(let error): forwardError(error, context: context)
            }
        }
        // NIOAsyncChannel passes what it was given on to Hummingbird at the end of a read.
        if forwardedWhileReplaying {
            forwardedWhileReplaying = false
            context.fireChannelReadComplete()
        }
        if !answering, readHeld {
            readHeld = false
            context.read()
        }
    }

    // MARK: Outbound

    func read(context: ChannelHandlerContext) {
        if answering || !held.isEmpty {
            readHeld = true
        } else {
            context.read()
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), handedOn > 0 {
            handedOn -= 1
        }
        context.write(data, promise: promise)
    }
}

@available(*, unavailable)
extension GenericWebhookHandler: Sendable {}

/// The `Date` header's value (RFC 9110 IMF-fixdate), formatted once per second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func now() -> String {
        let second = Int(time(nil))
        return cache.withLock { cache in
            if cache.second == second { return cache.text }
            cache = (second, format(second))
            return cache.text
        }
    }

    static func format(_ second: Int) -> String {
        var t = time_t(second)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
