import Foundation
import HTTPTypes
import Hummingbird
import Ingest
import Logging
import Model
import Worker
import NIOCore

/// Everything one platform's webhook route needs.
public struct PlatformWiring: Sendable {
    public var connector: any WebhookConnector
    /// Where paid orders' details come from (push messages carry only ids).
    public var details: (any OrderDetailSource)?
    public var mapping: FieldMapping
    /// Warehouse for lines whose detail names none.
    public var defaultWarehouse: String

    public init(connector: any WebhookConnector, details: (any OrderDetailSource)?, mapping: FieldMapping? = nil, defaultWarehouse: String = "main") {
        self.connector = connector
        self.details = details
        self.mapping = mapping ?? FieldMapping.defaults(for: connector.platform)
        self.defaultWarehouse = defaultWarehouse
    }
}

/// Turns verified platform messages into LiveSync's messages: a paid order is fetched, mapped,
/// sealed and published by SKU; a cancellation or approved refund becomes a refund request.
/// A message is recorded in the ledger only once its effects were acknowledged by Kafka, so a
/// failure answers the platform's "retry" and the redelivery does the work; a redelivery of a
/// handled message publishes nothing.
public struct ConnectorPipeline: Sendable {
    public var publisher: OrderPublisher
    public var ledger: MessageLedger
    public var logger: Logger

    public init(publisher: OrderPublisher, ledger: MessageLedger, logger: Logger) {
        self.publisher = publisher
        self.ledger = ledger
        self.logger = logger
    }

    /// Handles one request end to end and returns the platform's reply.
    public func handle(_ request: WebhookRequest, wiring: PlatformWiring) async -> WebhookReply {
        let connector = wiring.connector
        do {
            switch try connector.parse(request) {
            case .handshake(let reply):
                logger.info("platform URL verification answered", metadata: ["platform": "\(connector.platform.slug)"])
                return reply
            case .events(let events):
                for event in events { try await apply(event, wiring: wiring) }
                return connector.acknowledgement
            }
        } catch {
            if error.status >= 500 {
                logger.error("platform push not processed; platform will redeliver", metadata: ["platform": "\(connector.platform.slug)", "error": "\(error)"])
            } else {
                logger.warning("platform push refused", metadata: ["platform": "\(connector.platform.slug)", "error": "\(error)"])
            }
            return connector.rejection(error)
        }
    }

    func apply(_ event: PlatformEvent, wiring: PlatformWiring) async throws(ConnectorError) {
        do { if try ledger.seen(event) { return } } catch { throw .retryLater("message ledger: \(error)") }
        let now = Model.Clock.nowMicros()
        let orderID = Identifiers.orderID(platform: event.platform, shop: event.shopID, platformOrderID: event.platformOrderID)
        switch event.kind {
        case .paid:
            // Already published (by the poller, or under another message id): collapse.
            let already: Bool
            do { already = try ledger.orderPublished(orderID) } catch { throw .retryLater("message ledger: \(error)") }
            if already { break }
            guard let details = wiring.details else { throw .notConfigured("no order-detail API configured for \(event.platform.slug)") }
            let response = try await details.orderDetail(shopID: event.shopID, platformOrderID: event.platformOrderID)
            let order: Order
            do {
                order = try wiring.mapping.order(from: response, platform: event.platform, shopID: event.shopID,
                                                 platformOrderID: event.platformOrderID, defaultWarehouse: wiring.defaultWarehouse, now: now)
            } catch {
                throw .malformed("order \(event.platformOrderID) detail does not map: \(error)")
            }
            do { try await publisher.publish(order) } catch { throw .retryLater("Kafka did not acknowledge: \(error)") }
            do { try ledger.markOrderPublished(orderID, via: "push") } catch { throw .retryLater("message ledger: \(error)") }
            logger.debug("platform order published", metadata: ["order": "\(order.orderID)", "lines": "\(order.lines.count)",
                                                                 "phone": "\(PIIMask.phone(order.buyer.phone))"])
        case .cancelled, .refundApproved:
            var refund = RefundRequest()
            refund.orderID = orderID
            refund.refundID = "\(event.platform.slug):\(event.shopID):\(event.refundID ?? "cancel-\(event.platformOrderID)")"
            refund.amountFen = max(0, event.amountFen ?? 0)
            refund.reason = "\(event.platform.slug) \(event.kind.rawValue) (\(event.tag))"
            refund.requestedAtUs = now
            do { try await publisher.publish(refund) } catch { throw .retryLater("Kafka did not acknowledge: \(error)") }
        case .addressChanged, .refundRequested, .returnShipped, .ignored:
            break // recorded below; the ERP sees these through the platform's own after-sales flow
        }
        do { try ledger.record(event, orderID: orderID, now: now) } catch { throw .retryLater("message ledger: \(error)") }
    }
}

/// Registers `POST /webhooks/<platform>` (and `GET` for URL verification) for each wired platform.
public enum ConnectorRoutes {
    /// The route segment of each platform: douyin, kuaishou, wechat, tiktok.
    public static func path(_ platform: Platform) -> String { "/webhooks/\(platform.slug)" }

    public static func register<Context: RequestContext>(
        on router: Router<Context>, platforms: [PlatformWiring], pipeline: ConnectorPipeline, maxBodyBytes: Int
    ) {
        for wiring in platforms {
            let path = RouterPath(stringLiteral: path(wiring.connector.platform))
            let handler: @Sendable (Request, Context) async throws -> Response = { request, _ in
                var request = request
                let buffer: ByteBuffer
                do { buffer = try await request.collectBody(upTo: maxBodyBytes) } catch {
                    return response(wiring.connector.rejection(.tooLarge(limit: maxBodyBytes)))
                }
                var headers: [String: String] = [:]
                for field in request.headers { headers[field.name.canonicalName] = field.value }
                var query: [String: String] = [:]
                for (k, v) in request.uri.queryParameters { query[String(k)] = String(v) }
                let webhook = WebhookRequest(method: request.method.rawValue, query: query, headers: headers, body: Array(buffer.readableBytesView))
                return response(await pipeline.handle(webhook, wiring: wiring))
            }
            router.post(path, use: handler)
            router.get(path, use: handler)
        }
    }

    static func response(_ reply: WebhookReply) -> Response {
        Response(status: HTTPResponse.Status(code: reply.status), headers: [.contentType: reply.contentType],
                 body: ResponseBody(byteBuffer: ByteBuffer(string: reply.body)))
    }
}
