import Foundation
import HTTPTypes
import Hummingbird
import Kafka
import Logging
import Model
import NIOCore
import Telemetry
import Worker

/// Settings of `livesync-ingest`.
public struct IngestConfiguration: Sendable {
    /// Listen address (default 127.0.0.1:8080; port 0 picks a free port).
    public var host: String
    public var port: Int
    /// Shops allowed to post, with their webhook secrets.
    public var shops: [String: ShopCredentials]
    /// Largest body accepted (default 1 MiB); larger ones get 413.
    public var maxBodyBytes: Int
    /// Where the bound address is written once listening (lets `livesync dev` use port 0).
    public var addressFile: String?
    /// Serve the generic webhooks on the event loop (`GenericWebhookHandler`, the default) rather
    /// than through Hummingbird's router; both answer alike (`ingest.webhooksOnEventLoop`).
    public var webhooksOnEventLoop: Bool

    public init(
        host: String = "127.0.0.1", port: Int = 8080, shops: [String: ShopCredentials], maxBodyBytes: Int = 1 << 20,
        addressFile: String? = nil, webhooksOnEventLoop: Bool = true
    ) {
        self.host = host
        self.port = port
        self.shops = shops
        self.maxBodyBytes = maxBodyBytes
        self.addressFile = addressFile
        self.webhooksOnEventLoop = webhooksOnEventLoop
    }
}

/// Publishes normalised orders: one message per line to `orders.lines` (key SKU) and the order
/// to `orders.placed` (key order id), returning only once Kafka acknowledged all of them.
public struct OrderPublisher: Sendable {
    public let producer: KafkaProducer
    /// When set, buyer name, phone and address are sealed (AES-256-GCM) and masked before publishing.
    public let sealer: PIISealer?

    public init(producer: KafkaProducer, sealer: PIISealer? = nil) {
        self.producer = producer
        self.sealer = sealer
    }

    public static func messages(for order: Order) -> [ProducerMessage] {
        var messages = order.lines.map { ProducerMessage(topic: Topics.orderLines, key: $0.sku, value: $0.bytes) }
        messages.append(ProducerMessage(topic: Topics.ordersPlaced, key: order.orderID, value: order.bytes))
        return messages
    }

    public func publish(_ order: Order) async throws {
        try await producer.send(try messages(sealing: order))
    }

    public func publish(_ refund: RefundRequest) async throws {
        try await producer.send(Self.messages(for: refund))
    }

    /// The messages `publish(order)` sends: the order's PII sealed first when a sealer is set.
    public func messages(sealing order: Order) throws -> [ProducerMessage] {
        var order = order
        try sealer?.seal(&order)
        return Self.messages(for: order)
    }

    public static func messages(for refund: RefundRequest) -> [ProducerMessage] {
        [ProducerMessage(topic: Topics.refundRequests, key: refund.orderID, value: refund.bytes)]
    }
}

/// The HTTP side of ingest.
public enum IngestApp {
    /// - Parameters:
    ///   - extraRoutes: registers further routes (the platform connectors' webhooks) on the same server.
    ///   - health: `/metrics`, `/healthz`, `/readyz` served beside the webhooks; nil: a plain `/healthz`.
    ///   - metrics: counts orders received, published and refused per platform.
    ///   - onListening: called once listening, with the base URL other machines reach it at
    ///     (`advertisedHost`, see `TelemetryConfiguration.advertisedURL`): ingest announces it on
    ///     `livesync.instances`, since it serves `/readyz` on this server.
    public static func make(
        configuration: IngestConfiguration, publisher: OrderPublisher, logger: Logger,
        extraRoutes: (Router<BasicRequestContext>) -> Void = { _ in },
        health: HealthEndpoints? = nil, metrics: IngestMetrics = IngestMetrics(),
        advertisedHost: String? = nil, onListening: @escaping @Sendable (String) -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let router = Router()
        extraRoutes(router)
        if let health { health.addRoutes(to: router) } else {
            router.get("/healthz") { _, _ in json(200, #"{"status":"ok"}"#) }
        }
        // Normally served by `GenericWebhookHandler` on the event loop (see `server` below):
        // these routes answer the requests it hands on (pipelined behind another route's).
        router.post("/webhooks/generic") { request, _ in
            await handle(request, route: .orders, configuration: configuration, publisher: publisher, logger: logger, metrics: metrics)
        }
        router.post("/webhooks/generic/refunds") { request, _ in
            await handle(request, route: .refunds, configuration: configuration, publisher: publisher, logger: logger, metrics: metrics)
        }
        let addressFile = configuration.addressFile
        let serverName = "livesync-ingest"
        let fastPath = GenericWebhookHandler.Shared(
            configuration: configuration, publisher: publisher, logger: logger, metrics: metrics, serverName: serverName)
        return Application(
            router: router,
            server: .http1(configuration: .init(
                additionalChannelHandlers: configuration.webhooksOnEventLoop ? [GenericWebhookHandler(fastPath)] : [])),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: serverName, backlog: 1024),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                let address = "http://\(configuration.host):\(port)"
                logger.info("ingest listening", metadata: ["url": "\(address)"])
                if let addressFile { try? address.write(toFile: addressFile, atomically: true, encoding: .utf8) }
                onListening(TelemetryConfiguration.advertisedURL(listenHost: configuration.host, port: port, advertisedHost: advertisedHost))
            },
            logger: logger)
    }

    /// Reads the body (413 past the limit), accepts it (`GenericWebhookRoute.accept`), publishes
    /// its messages and answers once Kafka acknowledged all of them. Every refusal is a JSON
    /// error; nothing is published for a refused request.
    static func handle(
        _ request: Request, route: GenericWebhookRoute, configuration: IngestConfiguration, publisher: OrderPublisher,
        logger: Logger, metrics: IngestMetrics
    ) async -> Response {
        var request = request
        route.received(metrics)
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: configuration.maxBodyBytes) } catch {
            return json(route.refusal(.tooLarge(limit: configuration.maxBodyBytes), metrics: metrics, logger: logger))
        }
        let accepted: GenericWebhookRoute.Accepted
        do throws(IngestError) {
            accepted = try route.accept(
                Array(buffer.readableBytesView), headers: request.headers, configuration: configuration, publisher: publisher)
        } catch {
            return json(route.refusal(error, metrics: metrics, logger: logger))
        }
        do { try await publisher.producer.send(accepted.messages) } catch {
            return json(route.refusal(.unavailable("\(error)"), metrics: metrics, logger: logger))
        }
        route.published(metrics)
        return json(200, accepted.reply)
    }

    static let signatureField = HTTPField.Name(GenericWebhook.signatureHeader)!
    static let shopField = HTTPField.Name(GenericWebhook.shopHeader)!

    static func json(_ answer: (status: Int, body: String)) -> Response { json(answer.status, answer.body) }

    static func json(_ status: Int, _ body: String) -> Response {
        Response(
            status: HTTPResponse.Status(code: status),
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
