import Foundation
import Model

/// TikTok Shop webhooks.
///
/// - Header `Authorization` = lower-case hex `HMAC-SHA256(key: app_secret, message: app_key + raw body)`.
/// - Body: `{"type": 1, "tts_notification_id": "…", "shop_id": "…", "timestamp": …, "data": {…}}`
///   (the partner doc's type 3 example carries no `tts_notification_id`: see `notificationID`).
/// - Types: 1 ORDER_STATUS_CHANGE, 3 RECIPIENT_ADDRESS_UPDATE, 11 CANCELLATION_STATUS_CHANGE,
///   12 RETURN_STATUS_CHANGE; the rest are acknowledged and ignored.
/// - Acknowledgement: HTTP 200 (TikTok Shop retries anything else).
public struct TikTokShopConnector: WebhookConnector {
    public let platform: Platform = .tiktokShop
    public var appKey: String
    public var appSecret: String

    public init(appKey: String, appSecret: String) {
        self.appKey = appKey
        self.appSecret = appSecret
    }

    public static func sign(body: [UInt8], appKey: String, appSecret: String) -> String {
        Digests.hmacSHA256Hex(Array(appKey.utf8) + body, key: appSecret)
    }

    public var acknowledgement: WebhookReply { WebhookReply(status: 200, body: #"{"code":0,"message":"success"}"#) }

    public func rejection(_ error: ConnectorError) -> WebhookReply {
        WebhookReply(status: error.status, body: JSON.encode(["code": error.status, "message": "\(error)"]))
    }

    /// `tts_notification_id`, or — for a notification published without one (the partner doc's
    /// type 3 example has none) — type, order and the event's `update_time` (else `timestamp`),
    /// which a redelivery repeats.
    static func notificationID(_ msg: [String: Any], type: Int64, order: String, data: [String: Any]) throws(ConnectorError) -> String {
        if let id = JSON.string(msg["tts_notification_id"]), !id.isEmpty { return id }
        guard let at = JSON.string(data["update_time"]) ?? JSON.string(msg["timestamp"]) else {
            throw .malformed("tts_notification_id is required (or data.update_time / timestamp to identify the notification)")
        }
        return "\(type):\(order):\(at)"
    }

    public func parse(_ request: WebhookRequest) throws(ConnectorError) -> WebhookParse {
        guard let given = request.header("authorization") else { throw .badSignature("Authorization header is missing") }
        guard Digests.equal(Self.sign(body: request.body, appKey: appKey, appSecret: appSecret), given) else {
            throw .badSignature("Authorization does not match HMAC-SHA256(app_secret, app_key + body)")
        }
        let msg = try JSON.object(request.body)
        guard let type = JSON.int(msg["type"]) else { throw .malformed("type is required") }
        let shop = try JSON.require(msg, "shop_id", in: "body")
        let data = msg["data"] as? [String: Any] ?? [:]
        let order = JSON.string(data["order_id"]) ?? ""
        let id = try Self.notificationID(msg, type: type, order: order, data: data)
        let kind: EventKind
        switch type {
        case 1:
            kind = switch JSON.string(data["order_status"]) ?? "" {
            case "AWAITING_SHIPMENT": .paid
            case "CANCEL", "CANCELLED": .cancelled  // the webhook doc lists CANCEL; the order API says CANCELLED
            default: .ignored
            }
        case 3: kind = .addressChanged
        case 11:
            kind = JSON.string(data["cancel_status"]) == "CANCELLATION_REQUEST_COMPLETE" ? .cancelled : .ignored
        case 12:
            kind = switch JSON.string(data["return_status"]) ?? "" {
            case "RETURN_OR_REFUND_REQUEST_PENDING": .refundRequested
            case "BUYER_SHIPPED_ITEM": .returnShipped
            case "RETURN_OR_REFUND_REQUEST_COMPLETE": .refundApproved
            default: .ignored
            }
        default: kind = .ignored
        }
        if kind != .ignored, order.isEmpty { throw .malformed("data.order_id is required for type \(type)") }
        return .events([PlatformEvent(platform: .tiktokShop, messageID: id, shopID: shop, kind: kind, tag: "\(type)",
                                      platformOrderID: order, refundID: JSON.string(data["return_id"]) ?? JSON.string(data["cancel_id"]))])
    }
}
