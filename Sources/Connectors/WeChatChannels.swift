import Crypto
import Foundation
import Model
import _CryptoExtras

/// WeChat's message encryption (WXBizMsgCrypt), used by WeChat Channels shop pushes.
///
/// `Encrypt = Base64(AES-256-CBC(key, iv = key[0..<16], PKCS#7 to 32 bytes(random16 | msg_len(4, big endian) | msg | appid)))`,
/// with `key = Base64Decode(EncodingAESKey + "=")`; `msg_signature = sha1(sort(token, timestamp, nonce, Encrypt))`.
public struct WeChatMessageCrypto: Sendable {
    public let token: String
    public let appID: String
    let keyBytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: keyBytes) }
    let iv: [UInt8]

    public init(token: String, encodingAESKey: String, appID: String) throws(ConnectorError) {
        guard encodingAESKey.count == 43, let raw = Data(base64Encoded: encodingAESKey + "="), raw.count == 32 else {
            throw .notConfigured("wechat EncodingAESKey must be the 43-character key from the shop console")
        }
        self.token = token
        self.appID = appID
        self.keyBytes = Array(raw)
        self.iv = Array(raw.prefix(16))
    }

    /// `sha1` over the lexicographically sorted parts, as WeChat signs URLs and messages.
    public static func signature(_ parts: [String]) -> String {
        Digests.sha1Hex(parts.sorted().joined())
    }

    /// Decrypts an `Encrypt` value and checks that it was sealed for this app id.
    public func decrypt(_ encrypted: String) throws(ConnectorError) -> [UInt8] {
        guard let cipher = Data(base64Encoded: encrypted), cipher.count >= 32, cipher.count % 16 == 0 else {
            throw .malformed("Encrypt is not base64 of whole AES blocks")
        }
        let padded: [UInt8]
        do {
            padded = Array(try AES._CBC.decrypt(cipher, using: key, iv: AES._CBC.IV(ivBytes: iv), noPadding: true))
        } catch {
            throw .badSignature("Encrypt does not decrypt under the EncodingAESKey")
        }
        // WeChat pads to 32-byte blocks (PKCS#7 with block size 32).
        guard let pad = padded.last, pad >= 1, pad <= 32, Int(pad) <= padded.count,
              padded.suffix(Int(pad)).allSatisfy({ $0 == pad }) else {
            throw .badSignature("Encrypt has invalid padding (wrong EncodingAESKey?)")
        }
        let plain = padded.dropLast(Int(pad))
        guard plain.count >= 20 else { throw .malformed("decrypted message is too short") }
        let lenBytes = plain[plain.startIndex + 16..<plain.startIndex + 20]
        let msgLen = lenBytes.reduce(0) { $0 << 8 | Int($1) }
        guard 20 + msgLen <= plain.count else { throw .malformed("decrypted message length \(msgLen) exceeds the payload") }
        let msgStart = plain.startIndex + 20
        let msg = Array(plain[msgStart..<msgStart + msgLen])
        let receiver = String(decoding: plain[(msgStart + msgLen)...], as: UTF8.self)
        guard receiver == appID else { throw .badSignature("message was encrypted for app id '\(receiver)', not this shop's") }
        return msg
    }

    /// Encrypts `message` as WeChat does (for replies, tests and the replay producer).
    public func encrypt(_ message: [UInt8], random: [UInt8]? = nil) -> String {
        var rng = SystemRandomNumberGenerator()
        var plain = random ?? (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let n = UInt32(message.count)
        plain += [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)]
        plain += message
        plain += Array(appID.utf8)
        let pad = 32 - plain.count % 32
        plain += Array(repeating: UInt8(pad), count: pad)
        // Cannot fail: the key is 32 bytes, the IV 16 and the input whole blocks.
        let cipher = (try? AES._CBC.encrypt(plain, using: key, iv: AES._CBC.IV(ivBytes: iv), noPadding: true)) ?? Data()
        return cipher.base64EncodedString()
    }
}

/// WeChat Channels shop (视频号小店) message push.
///
/// - URL verification: `GET ?signature&timestamp&nonce&echostr`, answered with `echostr` when
///   `signature = sha1(sort(token, timestamp, nonce))`.
/// - Push (security mode, the shop console's only choice): `POST ?timestamp&nonce&encrypt_type=aes&msg_signature`
///   with JSON `{"ToUserName": …, "Encrypt": …}`; plaintext mode (`signature` only, JSON body) is
///   also accepted when configured, for the message-push debugging tool.
/// - Events: `channels_ec_order_pay`, `channels_ec_order_cancel`, `channels_ec_aftersale_update`,
///   `channels_ec_order_ext_info_update` (address), acknowledged with the text `success`.
public struct WeChatChannelsConnector: WebhookConnector {
    public let platform: Platform = .wechatChannels
    public let crypto: WeChatMessageCrypto
    /// Accept plaintext-mode pushes (signed, not encrypted). Default false: security mode only.
    public var allowPlaintext: Bool
    /// The shop id LiveSync files these orders under (a Channels shop pushes only its own events).
    public var shopID: String

    public init(crypto: WeChatMessageCrypto, shopID: String, allowPlaintext: Bool = false) {
        self.crypto = crypto
        self.shopID = shopID
        self.allowPlaintext = allowPlaintext
    }

    public var acknowledgement: WebhookReply { WebhookReply(status: 200, contentType: "text/plain", body: "success") }

    public func rejection(_ error: ConnectorError) -> WebhookReply {
        WebhookReply(status: error.status, contentType: "text/plain", body: "\(error)")
    }

    public func parse(_ request: WebhookRequest) throws(ConnectorError) -> WebhookParse {
        guard let timestamp = request.query["timestamp"], let nonce = request.query["nonce"] else {
            throw .badSignature("timestamp and nonce query parameters are required")
        }
        if request.method == "GET" {
            guard let signature = request.query["signature"], let echo = request.query["echostr"] else {
                throw .badSignature("signature and echostr are required for URL verification")
            }
            guard Digests.equal(WeChatMessageCrypto.signature([crypto.token, timestamp, nonce]), signature) else {
                throw .badSignature("signature does not match sha1(sort(token, timestamp, nonce))")
            }
            return .handshake(WebhookReply(status: 200, contentType: "text/plain", body: echo))
        }
        let plaintext: [UInt8]
        if let msgSignature = request.query["msg_signature"] {
            let envelope = try JSON.object(request.body)
            guard let encrypted = envelope["Encrypt"] as? String else { throw .malformed("Encrypt is required in security mode") }
            guard Digests.equal(WeChatMessageCrypto.signature([crypto.token, timestamp, nonce, encrypted]), msgSignature) else {
                throw .badSignature("msg_signature does not match sha1(sort(token, timestamp, nonce, Encrypt))")
            }
            plaintext = try crypto.decrypt(encrypted)
        } else {
            guard allowPlaintext else { throw .badSignature("msg_signature is required (security mode)") }
            guard let signature = request.query["signature"],
                  Digests.equal(WeChatMessageCrypto.signature([crypto.token, timestamp, nonce]), signature) else {
                throw .badSignature("signature does not match sha1(sort(token, timestamp, nonce))")
            }
            plaintext = request.body
        }
        return .events(try events(from: try JSON.object(plaintext)))
    }

    /// `order_info.type` values of `channels_ec_order_ext_info_update` after which the order ships to
    /// a new address: 2 商家主动地址修改或通过用户修改地址申请, 16 买家已同意修改，请按新地址发货,
    /// 19 买家已主动修改地址，请按新地址发货. (3 is a merchant remark change, 4 only a buyer's request.)
    static let addressChangedTypes: Set<Int64> = [2, 16, 19]

    /// Maps one decrypted event. WeChat events carry no message id; WeChat's guidance is to
    /// de-duplicate on sender + creation time, so the id is event, order and CreateTime (plus the
    /// after-sale id and status for after-sale updates).
    func events(from msg: [String: Any]) throws(ConnectorError) -> [PlatformEvent] {
        let event = try JSON.require(msg, "Event", in: "message")
        let created = JSON.string(msg["CreateTime"]) ?? "0"
        func make(_ kind: EventKind, order: String, refund: String? = nil, amount: Int64? = nil, idSuffix: String = "") -> PlatformEvent {
            PlatformEvent(platform: .wechatChannels, messageID: "\(event):\(order)\(idSuffix):\(created)", shopID: shopID,
                          kind: kind, tag: event, platformOrderID: order, refundID: refund, amountFen: amount)
        }
        switch event {
        case "channels_ec_order_pay", "channels_ec_order_cancel", "channels_ec_order_ext_info_update":
            guard let info = msg["order_info"] as? [String: Any] else { throw .malformed("order_info is required for \(event)") }
            let order = try JSON.require(info, "order_id", in: "order_info")
            let kind: EventKind = switch event {
            case "channels_ec_order_pay": .paid
            case "channels_ec_order_cancel": .cancelled
            default: Self.addressChangedTypes.contains(JSON.int(info["type"]) ?? 0) ? .addressChanged : .ignored
            }
            return [make(kind, order: order)]
        case "channels_ec_aftersale_update":
            guard let info = msg["finder_shop_aftersale_status_update"] as? [String: Any] else {
                throw .malformed("finder_shop_aftersale_status_update is required")
            }
            let order = try JSON.require(info, "order_id", in: "finder_shop_aftersale_status_update")
            let afterSale = try JSON.require(info, "after_sale_order_id", in: "finder_shop_aftersale_status_update")
            let status = JSON.string(info["status"]) ?? ""
            let kind: EventKind = switch status {
            case "MERCHANT_PROCESSING", "USER_WAIT_RETURN": .refundRequested
            case "MERCHANT_WAIT_RECEIPT": .returnShipped
            case "MERCHANT_REFUND_SUCCESS", "MERCHANT_RETURN_SUCCESS": .refundApproved
            default: .ignored
            }
            return [make(kind, order: order, refund: afterSale, idSuffix: ":\(afterSale):\(status)")]
        default:
            return [PlatformEvent(platform: .wechatChannels, messageID: "\(event):\(created)", shopID: shopID, kind: .ignored, tag: event, platformOrderID: "")]
        }
    }
}
