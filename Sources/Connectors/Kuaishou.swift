import Crypto
import Foundation
import Model
import _CryptoExtras

/// Kuaishou shop (快手小店) message push.
///
/// - Body: `Base64(AES-CBC(key = Base64Decode(message secret), iv = 16 zero bytes, PKCS#5/7))` of
///   `{"eventId", "msgId", "bizId", "userId", "openId", "appKey", "event", "info": "<JSON string>", "createTime", "test"}`.
///   Kuaishou signs nothing else: a body that does not decrypt under the app's message secret to
///   a message naming this app's `appKey` is refused.
/// - Acknowledgement: `{"result":1}` (as Kuaishou's own push-receiver demo answers); anything else makes Kuaishou redeliver.
public struct KuaishouConnector: WebhookConnector {
    public let platform: Platform = .kuaishou
    public var appKey: String
    let keyBytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public init(appKey: String, messageSecret: String) throws(ConnectorError) {
        guard let raw = Data(base64Encoded: messageSecret), [16, 24, 32].contains(raw.count) else {
            throw .notConfigured("kuaishou message secret must be the base64 AES key from the developer console")
        }
        self.appKey = appKey
        self.keyBytes = Array(raw)
    }

    public var acknowledgement: WebhookReply { WebhookReply(status: 200, body: #"{"result":1}"#) }

    public func rejection(_ error: ConnectorError) -> WebhookReply {
        WebhookReply(status: error.status, body: JSON.encode(["result": 0, "error_msg": "\(error)"]))
    }

    /// After-sale `status` codes of `kwaishop_aftersales_updateRefund` LiveSync acts on (Kuaishou's
    /// refund status enum: 10 仅退款申请, 11 退货退款申请, … 40 商品回寄信息待卖家确认, 50 退款执行中,
    /// 60 退款成功, 70 退款失败): 40 the buyer has sent the goods back, 60 refund succeeded.
    static let refundKinds: [Int64: EventKind] = [40: .returnShipped, 60: .refundApproved]

    static let zeroIV = [UInt8](repeating: 0, count: 16)

    /// Encrypts a message as Kuaishou does (for tests and the replay producer).
    public func encrypt(_ plaintext: [UInt8]) -> String {
        let cipher = (try? AES._CBC.encrypt(plaintext, using: key, iv: AES._CBC.IV(ivBytes: Self.zeroIV))) ?? Data()
        return cipher.base64EncodedString()
    }

    public func decrypt(_ body: [UInt8]) throws(ConnectorError) -> [UInt8] {
        let text = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        // Canonical base64 only: a decoder that ignores stray bits would let two bodies mean one message.
        guard let cipher = Data(base64Encoded: text), !cipher.isEmpty, cipher.count % 16 == 0, cipher.base64EncodedString() == text else {
            throw .badSignature("body is not canonical base64 of whole AES blocks")
        }
        do {
            return Array(try AES._CBC.decrypt(cipher, using: key, iv: AES._CBC.IV(ivBytes: Self.zeroIV)))
        } catch {
            throw .badSignature("body does not decrypt under the message secret")
        }
    }

    public func parse(_ request: WebhookRequest) throws(ConnectorError) -> WebhookParse {
        let plain = try decrypt(request.body)
        guard let msg = try? JSON.object(plain) else { throw .badSignature("decrypted body is not JSON (wrong message secret?)") }
        let app = JSON.string(msg["appKey"]) ?? ""
        guard Digests.equal(app, appKey) else { throw .unknownApp("message is for appKey '\(app)'") }
        if (msg["test"] as? Bool) == true { return .events([]) } // console heartbeat
        let msgID = try JSON.require(msg, "msgId", in: "message")
        let event = try JSON.require(msg, "event", in: "message")
        guard let infoText = msg["info"] as? String, let info = try? JSON.object(Array(infoText.utf8)) else {
            throw .malformed("info must be a JSON object encoded as a string")
        }
        let kind: EventKind = switch event {
        case "kwaishop_order_paySuccess": .paid
        case "kwaishop_order_orderFail": .cancelled
        case "kwaishop_order_addressChange": .addressChanged
        case "kwaishop_aftersales_addRefund": .refundRequested
        case "kwaishop_aftersales_updateRefund": Self.refundKinds[JSON.int(info["status"]) ?? -1] ?? .ignored
        default: .ignored
        }
        let order = JSON.string(info["oid"]) ?? JSON.string(info["orderId"]) ?? ""
        if kind != .ignored, order.isEmpty { throw .malformed("info.oid (or info.orderId) is required for \(event)") }
        let shop = JSON.string(info["sellerId"]) ?? JSON.string(msg["userId"]) ?? ""
        return .events([PlatformEvent(platform: .kuaishou, messageID: msgID, shopID: shop, kind: kind, tag: event,
                                      platformOrderID: order, refundID: JSON.string(info["refundId"]), amountFen: JSON.int(info["refundFee"]))])
    }
}
