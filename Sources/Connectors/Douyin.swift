import Foundation
import Model

/// Douyin shop (抖店) message push.
///
/// - Headers `app-id` and `event-sign`; `event-sign = md5(app_key + raw body + app_secret)` (hex).
/// - Body: a JSON array of `{"tag": "101", "msg_id": "…", "data": "<JSON string>"}` — pushes are batched.
/// - Acknowledgement: `{"code":0,"msg":"success"}`; anything else makes Douyin redeliver.
/// - The push-URL test in the console sends tag `"0"`; it is verified and acknowledged.
public struct DouyinConnector: WebhookConnector {
    public let platform: Platform = .douyin
    public var appKey: String
    public var appSecret: String

    public init(appKey: String, appSecret: String) {
        self.appKey = appKey
        self.appSecret = appSecret
    }

    /// `md5(app_key + body + app_secret)`, lower-case hex.
    public static func sign(body: [UInt8], appKey: String, appSecret: String) -> String {
        Digests.md5Hex(Array(appKey.utf8) + body + Array(appSecret.utf8))
    }

    public var acknowledgement: WebhookReply { WebhookReply(status: 200, body: #"{"code":0,"msg":"success"}"#) }

    public func rejection(_ error: ConnectorError) -> WebhookReply {
        WebhookReply(status: error.status, body: JSON.encode(["code": error.status, "msg": "\(error)"]))
    }

    public func parse(_ request: WebhookRequest) throws(ConnectorError) -> WebhookParse {
        if let app = request.header("app-id"), app != appKey { throw .unknownApp("app-id \(app) is not the configured Douyin app") }
        guard let given = request.header("event-sign") else { throw .badSignature("event-sign header is missing") }
        guard Digests.equal(Self.sign(body: request.body, appKey: appKey, appSecret: appSecret), given) else {
            throw .badSignature("event-sign does not match md5(app_key + body + app_secret)")
        }
        let messages = try JSON.array(request.body)
        var events: [PlatformEvent] = []
        for (i, m) in messages.enumerated() {
            guard let msg = m as? [String: Any] else { throw .malformed("[\(i)] is not an object") }
            let tag = try JSON.require(msg, "tag", in: "[\(i)]")
            if tag == "0" { continue } // console connectivity test
            let msgID = try JSON.require(msg, "msg_id", in: "[\(i)]")
            guard let dataText = msg["data"] as? String, let data = try? JSON.object(Array(dataText.utf8)) else {
                throw .malformed("[\(i)].data must be a JSON object encoded as a string")
            }
            events.append(try event(tag: tag, msgID: msgID, data: data, index: i))
        }
        return .events(events)
    }

    /// Tags from the Douyin message catalogue (doudian_trade_* and doudian_refund_*).
    func event(tag: String, msgID: String, data: [String: Any], index i: Int) throws(ConnectorError) -> PlatformEvent {
        let kind: EventKind = switch tag {
        case "101": .paid                 // doudian_trade_TradePaid
        case "106": .cancelled            // doudian_trade_TradeCanceled
        case "105": .addressChanged       // doudian_trade_TradeAddressChanged
        case "200": .refundRequested      // doudian_refund_RefundCreated
        case "201", "206": .refundApproved // doudian_refund_RefundAgreed, doudian_refund_RefundSuccess
        case "203": .returnShipped        // doudian_refund_BuyerReturnGoods
        default: .ignored
        }
        let shop = JSON.string(data["shop_id"]) ?? ""
        let order = JSON.string(data["p_id"]) ?? ""
        if kind != .ignored {
            guard !shop.isEmpty else { throw .malformed("[\(i)].data.shop_id is required") }
            guard !order.isEmpty else { throw .malformed("[\(i)].data.p_id is required") }
        }
        return PlatformEvent(platform: .douyin, messageID: msgID, shopID: shop, kind: kind, tag: tag, platformOrderID: order,
                             refundID: JSON.string(data["aftersale_id"]), amountFen: JSON.int(data["refund_amount"]))
    }
}
