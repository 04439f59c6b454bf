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

    public init(host: String = "127.0.0.1", port: Int = 8080, shops: [String: ShopCredentials], maxBodyBytes: Int = 1 << 20, addressFile: String? = nil) {
        self.host = host
        self.port = port
        self.shops = shops
        self.maxBodyBytes = maxBodyBytes
        self.addressFile = addressFile
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
        var order = order
        try sealer?.seal(&order)
        try await producer.send(Self.messages(for: order))
    }

    public func publish(_ refund: RefundRequest) async throws {
        try await producer.send([ProducerMessage(topic: Topics.refundRequests, key: refund.orderID, value: refund.bytes)])
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
        router.post("/webhooks/generic") { request, _ in
            await handle(request, configuration: configuration, logger: logger, metrics: (metrics, "generic")) { body, authenticate, now in
                let json = try GenericWebhook.decode(GenericWebhook.OrderJSON.self, body)
                let order = try GenericWebhook.order(from: json, shop: try authenticate(json.shop_id), now: now)
                do { try await publisher.publish(order) } catch { throw IngestError.unavailable("\(error)") }
                metrics.published(platform: "generic")
                return #"{"status":"accepted","order_id":"\#(order.orderID)","lines":\#(order.lines.count)}"#
            }
        }
        router.post("/webhooks/generic/refunds") { request, _ in
            await handle(request, configuration: configuration, logger: logger) { body, authenticate, now in
                let json = try GenericWebhook.decode(GenericWebhook.RefundJSON.self, body)
                _ = try authenticate(json.shop_id)
                let refund = try GenericWebhook.refund(from: json, now: now)
                do { try await publisher.publish(refund) } catch { throw IngestError.unavailable("\(error)") }
                return #"{"status":"accepted","refund_id":"\#(refund.refundID)"}"#
            }
        }
        let addressFile = configuration.addressFile
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "livesync-ingest", backlog: 1024),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? configuration.port
                let address = "http://\(configuration.host):\(port)"
                logger.info("ingest listening", metadata: ["url": "\(address)"])
                if let addressFile { try? address.write(toFile: addressFile, atomically: true, encoding: .utf8) }
                onListening(TelemetryConfiguration.advertisedURL(listenHost: configuration.host, port: port, advertisedHost: advertisedHost))
            },
            logger: logger)
    }

    /// Reads the body (413 past the limit) and runs `accept`, which decodes it and calls
    /// `authenticate(shopID)` to check the signature under that shop's secret. With the
    /// `X-LiveSync-Shop` header the signature is checked before the body is parsed at all.
    /// Every refusal is a JSON error; nothing is published for a refused request.
    static func handle(
        _ request: Request, configuration: IngestConfiguration, logger: Logger,
        metrics: (IngestMetrics, platform: String)? = nil,
        accept: (_ body: [UInt8], _ authenticate: (String) throws(IngestError) -> ShopCredentials, _ now: Int64) async throws -> String
    ) async -> Response {
        var request = request
        metrics.map { $0.0.received(platform: $0.platform) }
        do {
            let buffer: ByteBuffer
            do { buffer = try await request.collectBody(upTo: configuration.maxBodyBytes) } catch {
                throw IngestError.tooLarge(limit: configuration.maxBodyBytes)
            }
            let body = Array(buffer.readableBytesView)
            let signature = request.headers[signatureField]
            let headerShop = request.headers[shopField]
            func check(_ shopID: String) throws(IngestError) -> ShopCredentials {
                guard let shop = configuration.shops[shopID] else { throw .unknownShop(shopID) }
                guard GenericWebhook.verify(body, header: signature, secret: shop.secret) else { throw .badSignature }
                return shop
            }
            var verified: ShopCredentials?
            if let headerShop { verified = try check(headerShop) }
            let authenticate = { (bodyShop: String) throws(IngestError) -> ShopCredentials in
                if let headerShop {
                    guard bodyShop == headerShop else { throw .invalidField(field: "shop_id", reason: "does not match the \(GenericWebhook.shopHeader) header") }
                    return verified!
                }
                return try check(bodyShop)
            }
            return json(200, try await accept(body, authenticate, Clock.nowMicros()))
        } catch let error as IngestError {
            metrics.map { $0.0.refused(platform: $0.platform, reason: error.reason) }
            if error.status >= 500 { logger.error("request failed", metadata: ["error": "\(error)"]) }
            return json(error.status, error.jsonBody)
        } catch {
            metrics.map { $0.0.refused(platform: $0.platform, reason: "internal") }
            logger.error("request failed", metadata: ["error": "\(error)"])
            return json(500, #"{"error":"internal"}"#)
        }
    }

    static let signatureField = HTTPField.Name(GenericWebhook.signatureHeader)!
    static let shopField = HTTPField.Name(GenericWebhook.shopHeader)!

    static func json(_ status: Int, _ body: String) -> Response {
        Response(
            status: HTTPResponse.Status(code: status),
            headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
