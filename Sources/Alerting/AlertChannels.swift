import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore

/// What a channel is asked to deliver: an alert's start (`firing`), a reminder while it lasts
/// (`reminder`), or its end (`resolved`).
public struct AlertNotification: Sendable, Equatable {
    public var alert: Alert
    public var event: String
    public var resolvedAtUs: Int64?

    public static let firing = "firing"
    public static let reminder = "reminder"
    public static let resolved = "resolved"

    public var title: String {
        switch event {
        case Self.resolved: "[LiveSync] RESOLVED \(alert.kind)"
        case Self.reminder: "[LiveSync] STILL FIRING \(alert.kind)"
        default: "[LiveSync] ALERT \(alert.kind)"
        }
    }

    /// Plain text for chat robots and e-mail.
    public var text: String {
        var lines = [title, alert.message, "key: \(alert.key)", "since: \(Self.time(alert.createdAtUs))", "occurrences: \(alert.count)"]
        if let resolvedAtUs { lines.append("resolved: \(Self.time(resolvedAtUs))") }
        return lines.joined(separator: "\n")
    }

    /// Markdown for the robots that render it (WeCom, DingTalk).
    public var markdown: String {
        var lines = ["### \(title)", "> \(alert.message)", "", "- key: `\(alert.key)`", "- since: \(Self.time(alert.createdAtUs))", "- occurrences: \(alert.count)"]
        if let resolvedAtUs { lines.append("- resolved: \(Self.time(resolvedAtUs))") }
        return lines.joined(separator: "\n")
    }

    static func time(_ us: Int64) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: Double(us) / 1e6))
    }
}

/// A destination for alert notifications. `send` returns only when the receiver accepted the
/// message; anything else throws and the notification is retried with backoff.
public protocol AlertChannel: Sendable {
    var name: String { get }
    func send(_ notification: AlertNotification, now: Int64) async throws
}

public struct ChannelError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// JSON POSTs shared by the HTTP channels.
enum HTTPDelivery {
    static func post(_ url: String, json: [String: Any]) async throws -> (status: UInt, body: [String: Any]) {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        let object = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
        guard (200..<300).contains(response.status.code) else {
            throw ChannelError("answered HTTP \(response.status.code): \(String(buffer: body).prefix(200))")
        }
        return (response.status.code, object)
    }

    /// The robots answer 200 with an error code in the body: 0 means accepted.
    static func requireZero(_ body: [String: Any], _ field: String, channel: String) throws {
        let code = (body[field] as? NSNumber)?.intValue ?? (body["StatusCode"] as? NSNumber)?.intValue
        guard code == 0 else {
            throw ChannelError("\(channel) refused the message: \(field)=\(code.map(String.init) ?? "missing") \(body["errmsg"] ?? body["msg"] ?? "")")
        }
    }

    static func hmacSHA256Base64(key: String, message: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: Data(key.utf8)))
        return Data(mac).base64EncodedString()
    }
}

/// A generic JSON webhook: `{key, kind, status, event, message, createdAtUs, count, resolvedAtUs}`; any 2xx accepts.
public struct WebhookChannel: AlertChannel {
    public let name: String
    let url: String
    public init(name: String, url: String) {
        self.name = name
        self.url = url
    }

    public static func payload(_ n: AlertNotification) -> [String: Any] {
        var body: [String: Any] = [
            "key": n.alert.key, "kind": n.alert.kind, "message": n.alert.message, "createdAtUs": n.alert.createdAtUs,
            "count": n.alert.count, "event": n.event, "status": n.event == AlertNotification.resolved ? "resolved" : "firing",
        ]
        if let r = n.resolvedAtUs { body["resolvedAtUs"] = r }
        return body
    }

    public func send(_ notification: AlertNotification, now: Int64) async throws {
        _ = try await HTTPDelivery.post(url, json: Self.payload(notification))
    }
}

/// WeCom (企业微信) group robot: `{"msgtype":"markdown","markdown":{"content":…}}` to the robot's
/// webhook URL (with its `key`); accepted when the answer's `errcode` is 0.
public struct WeComChannel: AlertChannel {
    public let name: String
    let url: String
    public init(name: String, url: String) {
        self.name = name
        self.url = url
    }

    public static func payload(_ n: AlertNotification) -> [String: Any] {
        ["msgtype": "markdown", "markdown": ["content": n.markdown]]
    }

    public func send(_ notification: AlertNotification, now: Int64) async throws {
        let (_, body) = try await HTTPDelivery.post(url, json: Self.payload(notification))
        try HTTPDelivery.requireZero(body, "errcode", channel: "WeCom")
    }
}

/// DingTalk (钉钉) custom robot with the signed-timestamp security setting: the URL gets
/// `timestamp` (ms) and `sign` = URL-encoded Base64 of HmacSHA256(secret, "timestamp\nsecret");
/// body `{"msgtype":"markdown","markdown":{"title":…,"text":…}}`; accepted when `errcode` is 0.
public struct DingTalkChannel: AlertChannel {
    public let name: String
    let url: String
    let secret: String?
    public init(name: String, url: String, secret: String?) {
        self.name = name
        self.url = url
        self.secret = secret
    }

    public static func sign(timestampMs: Int64, secret: String) -> String {
        HTTPDelivery.hmacSHA256Base64(key: secret, message: "\(timestampMs)\n\(secret)")
    }

    public func signedURL(nowMs: Int64) -> String {
        guard let secret, !secret.isEmpty else { return url }
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let sign = Self.sign(timestampMs: nowMs, secret: secret).addingPercentEncoding(withAllowedCharacters: allowed)!
        return url + (url.contains("?") ? "&" : "?") + "timestamp=\(nowMs)&sign=\(sign)"
    }

    public static func payload(_ n: AlertNotification) -> [String: Any] {
        ["msgtype": "markdown", "markdown": ["title": n.title, "text": n.markdown]]
    }

    public func send(_ notification: AlertNotification, now: Int64) async throws {
        let (_, body) = try await HTTPDelivery.post(signedURL(nowMs: now / 1_000), json: Self.payload(notification))
        try HTTPDelivery.requireZero(body, "errcode", channel: "DingTalk")
    }
}

/// Feishu/Lark custom bot with signature verification: body `{"timestamp": seconds, "sign":
/// Base64(HmacSHA256(key: "timestamp\nsecret", message: "")), "msg_type":"text","content":{"text":…}}`;
/// accepted when `code` is 0.
public struct FeishuChannel: AlertChannel {
    public let name: String
    let url: String
    let secret: String?
    public init(name: String, url: String, secret: String?) {
        self.name = name
        self.url = url
        self.secret = secret
    }

    public static func sign(timestamp: Int64, secret: String) -> String {
        HTTPDelivery.hmacSHA256Base64(key: "\(timestamp)\n\(secret)", message: "")
    }

    public func payload(_ n: AlertNotification, nowSeconds: Int64) -> [String: Any] {
        var body: [String: Any] = ["msg_type": "text", "content": ["text": n.text]]
        if let secret, !secret.isEmpty {
            body["timestamp"] = String(nowSeconds)
            body["sign"] = Self.sign(timestamp: nowSeconds, secret: secret)
        }
        return body
    }

    public func send(_ notification: AlertNotification, now: Int64) async throws {
        let (_, body) = try await HTTPDelivery.post(url, json: payload(notification, nowSeconds: now / 1_000_000))
        try HTTPDelivery.requireZero(body, "code", channel: "Feishu")
    }
}

extension ChannelSettings {
    /// The channel that delivers to these settings.
    public func makeChannel() -> any AlertChannel {
        switch self {
        case .webhook(let name, let url): WebhookChannel(name: name, url: url)
        case .wecom(let name, let url): WeComChannel(name: name, url: url)
        case .dingtalk(let name, let url, let secret): DingTalkChannel(name: name, url: url, secret: secret)
        case .feishu(let name, let url, let secret): FeishuChannel(name: name, url: url, secret: secret)
        case .email(let name, let smtp): EmailChannel(name: name, smtp: smtp)
        }
    }
}
