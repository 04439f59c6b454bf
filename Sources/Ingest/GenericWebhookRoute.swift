import HTTPTypes
import Kafka
import Logging
import Model

/// One of LiveSync's two generic webhooks (`POST /webhooks/generic` for orders,
/// `POST /webhooks/generic/refunds`): what is done with a request's body up to publishing, and
/// the answer to each outcome. Shared by the router's routes (`IngestApp.handle`) and the event
/// loop's `GenericWebhookHandler`, so both answer every input alike.
enum GenericWebhookRoute: Sendable {
    case orders
    case refunds

    /// The route a request's path names (the query is ignored, as the router does), or nil.
    static func matching(path: String) -> GenericWebhookRoute? {
        let path = path.utf8.firstIndex(of: UInt8(ascii: "?")).map { path[..<$0] } ?? Substring(path)
        switch path {
        case "/webhooks/generic": return .orders
        case "/webhooks/generic/refunds": return .refunds
        default: return nil
        }
    }

    /// Orders are counted per platform (`IngestMetrics`); refunds are not.
    var platform: String? { self == .orders ? "generic" : nil }

    func received(_ metrics: IngestMetrics) { platform.map { metrics.received(platform: $0) } }
    func published(_ metrics: IngestMetrics) { platform.map { metrics.published(platform: $0) } }

    /// What an accepted body publishes, and the 200 answer once Kafka acknowledged it.
    struct Accepted: Sendable {
        var messages: [ProducerMessage]
        var reply: String
    }

    /// Checks the signature and decodes, validates and normalises the body (sealing an order's
    /// PII when the publisher has a sealer). With the `X-LiveSync-Shop` header the signature is
    /// checked under that shop's secret before the body is parsed at all; without it the body's
    /// `shop_id` picks the secret.
    func accept(
        _ body: [UInt8], headers: HTTPFields, configuration: IngestConfiguration, publisher: OrderPublisher
    ) throws(IngestError) -> Accepted {
        let signature = headers[IngestApp.signatureField]
        let headerShop = headers[IngestApp.shopField]
        func check(_ shopID: String) throws(IngestError) -> ShopCredentials {
            guard let shop = configuration.shops[shopID] else { throw .unknownShop(shopID) }
            guard GenericWebhook.verify(body, header: signature, secret: shop.secret) else { throw .badSignature }
            return shop
        }
        var verified: ShopCredentials?
        if let headerShop { verified = try check(headerShop) }
        func authenticate(_ bodyShop: String) throws(IngestError) -> ShopCredentials {
            if let headerShop {
                guard bodyShop == headerShop else { throw .invalidField(field: "shop_id", reason: "does not match the \(GenericWebhook.shopHeader) header") }
                return verified!
            }
            return try check(bodyShop)
        }
        let now = Clock.nowMicros()
        switch self {
        case .orders:
            let json = try GenericWebhook.decode(GenericWebhook.OrderJSON.self, body)
            let order = try GenericWebhook.order(from: json, shop: try authenticate(json.shop_id), now: now)
            let messages: [ProducerMessage]
            do { messages = try publisher.messages(sealing: order) } catch { throw .unavailable("\(error)") }
            return Accepted(messages: messages, reply: #"{"status":"accepted","order_id":"\#(order.orderID)","lines":\#(order.lines.count)}"#)
        case .refunds:
            let json = try GenericWebhook.decode(GenericWebhook.RefundJSON.self, body)
            _ = try authenticate(json.shop_id)
            let refund = try GenericWebhook.refund(from: json, now: now)
            return Accepted(messages: OrderPublisher.messages(for: refund), reply: #"{"status":"accepted","refund_id":"\#(refund.refundID)"}"#)
        }
    }

    /// The answer to a refusal (status and JSON body), counting it and logging server-side failures.
    func refusal(_ error: IngestError, metrics: IngestMetrics, logger: Logger) -> (status: Int, body: String) {
        platform.map { metrics.refused(platform: $0, reason: error.reason) }
        if error.status >= 500 { logger.error("request failed", metadata: ["error": "\(error)"]) }
        return (error.status, error.jsonBody)
    }
}
