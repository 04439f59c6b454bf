import Crypto
import Foundation
import Model

/// What a platform message means to LiveSync, whatever the platform calls it.
public enum EventKind: String, Sendable, Codable {
    case paid
    case cancelled
    case addressChanged = "address_changed"
    case refundRequested = "refund_requested"
    case refundApproved = "refund_approved"
    case returnShipped = "return_shipped"
    /// A message LiveSync does not act on (acknowledged so the platform stops redelivering it).
    case ignored
}

/// One message out of a platform push, verified and decoded.
public struct PlatformEvent: Sendable, Equatable {
    public var platform: Platform
    /// The platform's id of this message; redeliveries carry the same id.
    public var messageID: String
    /// The platform's shop id (as the platform names the shop).
    public var shopID: String
    public var kind: EventKind
    /// The platform's raw event name or tag (for logs and the ledger).
    public var tag: String
    public var platformOrderID: String
    public var refundID: String?
    public var amountFen: Int64?

    public init(platform: Platform, messageID: String, shopID: String, kind: EventKind, tag: String, platformOrderID: String, refundID: String? = nil, amountFen: Int64? = nil) {
        self.platform = platform
        self.messageID = messageID
        self.shopID = shopID
        self.kind = kind
        self.tag = tag
        self.platformOrderID = platformOrderID
        self.refundID = refundID
        self.amountFen = amountFen
    }
}

/// An inbound HTTP request as a connector sees it: raw body, query and lower-cased header names.
public struct WebhookRequest: Sendable {
    public var method: String
    public var query: [String: String]
    public var headers: [String: String]
    public var body: [UInt8]

    public init(method: String = "POST", query: [String: String] = [:], headers: [String: String] = [:], body: [UInt8] = []) {
        self.method = method
        self.query = query
        self.headers = Dictionary(headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { a, _ in a })
        self.body = body
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

/// The answer to the platform: status, content type and the exact body its documentation asks for.
public struct WebhookReply: Sendable, Equatable {
    public var status: Int
    public var contentType: String
    public var body: String

    public init(status: Int, contentType: String = "application/json", body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }
}

/// What a verified request turned out to be.
public enum WebhookParse: Sendable {
    /// The platform's URL-verification handshake; answer with this reply and publish nothing.
    case handshake(WebhookReply)
    /// Zero or more business messages (platforms batch them).
    case events([PlatformEvent])
}

/// Why a connector refused or could not finish a request. Refusals (4xx) mean the request can
/// never succeed; `retryLater` (5xx) tells the platform to redeliver.
public enum ConnectorError: Error, Equatable, CustomStringConvertible {
    case badSignature(String)
    case malformed(String)
    case tooLarge(limit: Int)
    case unknownApp(String)
    case notConfigured(String)
    case retryLater(String)

    public var status: Int {
        switch self {
        case .badSignature, .unknownApp: 401
        case .malformed: 400
        case .tooLarge: 413
        case .notConfigured: 404
        case .retryLater: 503
        }
    }

    public var description: String {
        switch self {
        case .badSignature(let m): "signature check failed: \(m)"
        case .malformed(let m): "malformed push: \(m)"
        case .tooLarge(let l): "body larger than \(l) bytes"
        case .unknownApp(let m): "unknown app: \(m)"
        case .notConfigured(let m): "connector not configured: \(m)"
        case .retryLater(let m): "temporarily unable to process, redeliver later: \(m)"
        }
    }
}

/// One platform's webhook protocol: verification, decryption, envelope and replies.
public protocol WebhookConnector: Sendable {
    var platform: Platform { get }
    /// Checks the signature over the raw body (and decrypts it) before anything is parsed.
    func parse(_ request: WebhookRequest) throws(ConnectorError) -> WebhookParse
    /// The acknowledgement body the platform expects once every message was handled.
    var acknowledgement: WebhookReply { get }
    /// The platform's rejection for `error` (a non-success answer it understands).
    func rejection(_ error: ConnectorError) -> WebhookReply
}

/// Digest and encoding helpers shared by the connectors.
enum Digests {
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        var s = ""
        for b in bytes {
            s.append(hexDigits[Int(b >> 4)])
            s.append(hexDigits[Int(b & 0xF)])
        }
        return s
    }

    private static let hexDigits = Array("0123456789abcdef")

    static func md5Hex(_ text: some DataProtocol) -> String { hex(Insecure.MD5.hash(data: text)) }
    static func sha1Hex(_ text: String) -> String { hex(Insecure.SHA1.hash(data: Data(text.utf8))) }
    static func hmacSHA256Hex(_ data: some DataProtocol, key: String) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: data, using: SymmetricKey(data: Data(key.utf8))))
    }

    /// Constant-time comparison of two ASCII signatures, case-insensitive (hex digests).
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.lowercased().utf8), y = Array(b.lowercased().utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

/// Loosely typed JSON access for platform payloads, whose numbers and strings vary by version.
package enum JSON {
    package static func object(_ bytes: some DataProtocol) throws(ConnectorError) -> [String: Any] {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? [String: Any] else {
            throw .malformed("body is not a JSON object")
        }
        return obj
    }

    package static func array(_ bytes: some DataProtocol) throws(ConnectorError) -> [Any] {
        guard let arr = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [Any] else {
            throw .malformed("body is not a JSON array")
        }
        return arr
    }

    /// A string or number as a string (platform ids arrive as either); nil when absent.
    package static func string(_ value: Any?) -> String? {
        switch value {
        case let s as String: return s
        case let n as NSNumber: return n.stringValue
        default: return nil
        }
    }

    package static func int(_ value: Any?) -> Int64? {
        switch value {
        case let n as NSNumber: return n.int64Value
        case let s as String: return Int64(s)
        default: return nil
        }
    }

    package static func require(_ obj: [String: Any], _ key: String, in context: String) throws(ConnectorError) -> String {
        guard let v = string(obj[key]), !v.isEmpty else { throw .malformed("\(context).\(key) is required") }
        return v
    }

    package static func encode(_ obj: Any) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
