import Foundation
import Bootstrap
import Worker

/// A condition that raises an alert while it holds (`livesync.alerting.rules` in the file).
public enum AlertRule: Sendable, Equatable {
    /// Orders failing to sync (rejected for stock or dead-lettered) above `threshold` (0…1) of
    /// the orders decided in the last `windowSeconds`, once at least `minOrders` were decided.
    case syncFailureRate(threshold: Double, windowSeconds: Int, minOrders: Int)
    /// An order with no outcome `seconds` after ingest.
    case orderUnsynced(seconds: Int)
    /// A SKU's available stock at or below `safetyLevel`, or selling out within `sellOutMinutes`
    /// at the rate of the last `rateWindowSeconds`. It resolves once the condition has not held
    /// for `resolveAfterSeconds`, so a sold-out level bouncing to 1 and back as out-of-stock
    /// orders release their other lines does not end and restart the incident.
    case stockLow(safetyLevel: Int64, sellOutMinutes: Double?, rateWindowSeconds: Int, resolveAfterSeconds: Int = 10)
    /// A consumer more than `max` messages behind.
    case consumerLag(max: Int64)
    /// A message reached the dead-letter topic; resolves after `resolveAfterSeconds` without another.
    case deadLetters(resolveAfterSeconds: Int)
    /// A registered process that has not answered `/readyz` for `seconds`.
    case processSilent(seconds: Int)
    /// The consistency inspection (`livesync inspect`) every `intervalSeconds`.
    case inspection(intervalSeconds: Int, graceSeconds: Double)
    /// An ERP target (`livesync-erp`) that would need more than `maxSeconds` to write what it has
    /// queued at its last minute's rate (or writes nothing while orders wait), or has orders in
    /// its pending queue (待处理队列) when `pending` is set.
    case erpDrain(maxSeconds: Int, pending: Bool)

    public var kind: String {
        switch self {
        case .syncFailureRate: AlertKind.syncFailureRate
        case .orderUnsynced: AlertKind.orderNotSynced
        case .stockLow: AlertKind.stockLow
        case .consumerLag: AlertKind.consumerLag
        case .deadLetters: AlertKind.deadLetter
        case .processSilent: AlertKind.processSilent
        case .inspection: AlertKind.inspectionMismatch
        case .erpDrain: AlertKind.erpDrainSlow
        }
    }

    /// Whether the rule reads the read model (`livesync-book`, `book.url`): the ERP book's
    /// decisions and undecided orders, the stock levels, the inspection's copies.
    public var readsTheBook: Bool {
        switch self {
        case .syncFailureRate, .orderUnsynced, .stockLow, .inspection: true
        case .consumerLag, .deadLetters, .processSilent, .erpDrain: false
        }
    }
}

/// The kinds of alert, as they appear in payloads and in the `alerts` table.
public enum AlertKind {
    public static let syncFailureRate = "sync_failure_rate"
    public static let orderNotSynced = "order_not_synced"
    public static let stockLow = "stock_low"
    public static let consumerLag = "consumer_lag"
    public static let deadLetter = "dead_letter"
    public static let processSilent = "process_silent"
    public static let inspectionMismatch = "inspection_mismatch"
    public static let erpDrainSlow = "erp_drain_slow"
    public static let all = [syncFailureRate, orderNotSynced, stockLow, consumerLag, deadLetter, processSilent, inspectionMismatch, erpDrainSlow]
}

/// SMTP settings of an e-mail channel.
public struct SMTPSettings: Sendable, Equatable {
    public var host: String
    public var port: Int
    /// `starttls` (default on 587), `tls` (implicit, 465) or `none` (local relays only).
    public var security: String
    public var username: String?
    public var password: String?
    public var from: String
    public var to: [String]
}

/// Where alerts go (`livesync.alerting.channels` in the file).
public enum ChannelSettings: Sendable, Equatable {
    case webhook(name: String, url: String)
    case wecom(name: String, url: String)
    case dingtalk(name: String, url: String, secret: String?)
    case feishu(name: String, url: String, secret: String?)
    case email(name: String, smtp: SMTPSettings)

    public var name: String {
        switch self {
        case .webhook(let n, _), .wecom(let n, _), .dingtalk(let n, _, _), .feishu(let n, _, _), .email(let n, _): n
        }
    }
}

/// Alert rules and channels, validated at start-up.
public struct AlertRulesConfiguration: Sendable, Equatable {
    public var rules: [AlertRule]
    public var channels: [ChannelSettings]
    /// While an alert lasts, it is sent again this often. Default 30 minutes.
    public var renotifySeconds: Int

    public init(rules: [AlertRule], channels: [ChannelSettings], renotifySeconds: Int = 1_800) {
        self.rules = rules
        self.channels = channels
        self.renotifySeconds = renotifySeconds
    }

    /// Without `rules` in the file: unsynced orders, stock-outs, dead letters, silent processes,
    /// consumer lag, and the hourly inspection.
    public static func defaultRules(unsyncedAfterSeconds: Int) -> [AlertRule] {
        [.orderUnsynced(seconds: unsyncedAfterSeconds),
         .stockLow(safetyLevel: 0, sellOutMinutes: nil, rateWindowSeconds: 300),
         .deadLetters(resolveAfterSeconds: 600),
         .processSilent(seconds: 30),
         .consumerLag(max: 100_000),
         .inspection(intervalSeconds: 3_600, graceSeconds: 60),
         .erpDrain(maxSeconds: 600, pending: true)]
    }

    /// Reads `livesync.alerting.rules`, `.channels` and `.renotifyMinutes` from the JSON file;
    /// an invalid entry is refused with its line. Absent rules take `defaultRules`; a
    /// `webhookUrl` (file or environment) adds a generic webhook channel.
    public static func load(file: String?, unsyncedAfterSeconds: Int, webhookURL: String?) throws -> AlertRulesConfiguration {
        var config = AlertRulesConfiguration(rules: defaultRules(unsyncedAfterSeconds: unsyncedAfterSeconds), channels: [])
        if let file {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            config = try parse(text, source: file, unsyncedAfterSeconds: unsyncedAfterSeconds)
        }
        if let webhookURL, !webhookURL.isEmpty, !config.channels.contains(where: { $0.name == "webhook" }) {
            config.channels.append(.webhook(name: "webhook", url: webhookURL))
        }
        return config
    }

    public static func parse(_ text: String, source: String, unsyncedAfterSeconds: Int = 5) throws -> AlertRulesConfiguration {
        let root: LocatedJSON
        do { root = try LocatedJSON.parse(text) } catch let e as LocatedJSON.SyntaxError {
            throw ConfigurationError("\(source) line \(e.line): \(e.message)")
        }
        var config = AlertRulesConfiguration(rules: defaultRules(unsyncedAfterSeconds: unsyncedAfterSeconds), channels: [])
        guard let alerting = root["livesync"]?["alerting"] else { return config }
        let r = Fields(alerting, path: "alerting", source: source)
        try r.only(["rules", "channels", "renotifyMinutes", "webhookUrl", "unsyncedAfterSeconds", "sweepIntervalMs", "inspectIntervalSeconds"])
        if let minutes = try r.number("renotifyMinutes") {
            guard minutes >= 1 else { throw r.fail("renotifyMinutes", "must be at least 1") }
            config.renotifySeconds = Int(minutes * 60)
        }
        // Named objects, not arrays: the file is also read by swift-configuration, which
        // accepts nested objects but no arrays of objects.
        if let rules = alerting["rules"] {
            guard case .object(let members, _) = rules else {
                throw r.fail("rules", "must be an object of named rules, {\"name\": {\"kind\": …}, …} (arrays of objects cannot be read)")
            }
            config.rules = try members.map { try rule($0.value, path: "alerting.rules.\($0.key)", source: source) }
        }
        if let channels = alerting["channels"] {
            guard case .object(let members, _) = channels else {
                throw r.fail("channels", "must be an object of named channels, {\"name\": {\"type\": …}, …} (arrays of objects cannot be read)")
            }
            config.channels = try members.map { try channel($0.value, name: $0.key, path: "alerting.channels.\($0.key)", source: source) }
        }
        return config
    }

    static let ruleKinds = ["sync_failure_rate", "order_unsynced", "stock_low", "consumer_lag", "dead_letters", "process_silent", "inspection", "erp_drain"]

    static func rule(_ json: LocatedJSON, path: String, source: String) throws -> AlertRule {
        let f = Fields(json, path: path, source: source)
        guard case .object = json else { throw f.fail(nil, "must be an object with a \"kind\"") }
        guard let kind = try f.string("kind") else { throw f.fail(nil, "needs \"kind\", one of \(ruleKinds.joined(separator: ", "))") }
        switch kind {
        case "sync_failure_rate":
            try f.only(["kind", "threshold", "windowSeconds", "minOrders"])
            guard let threshold = try f.number("threshold") else { throw f.fail(nil, "needs \"threshold\" (a fraction between 0 and 1)") }
            guard threshold > 0 && threshold <= 1 else { throw f.fail("threshold", "must be a fraction above 0 and at most 1, not \(threshold)") }
            let window = try f.positiveInt("windowSeconds", default: 300, max: 3_600)
            return .syncFailureRate(threshold: threshold, windowSeconds: window, minOrders: try f.positiveInt("minOrders", default: 20))
        case "order_unsynced":
            try f.only(["kind", "seconds"])
            return .orderUnsynced(seconds: try f.positiveInt("seconds", default: 5))
        case "stock_low":
            try f.only(["kind", "safetyLevel", "sellOutMinutes", "rateWindowSeconds", "resolveAfterSeconds"])
            let safety = try f.number("safetyLevel") ?? 0
            guard safety >= 0 else { throw f.fail("safetyLevel", "must not be negative") }
            let minutes = try f.number("sellOutMinutes")
            if let minutes, minutes <= 0 { throw f.fail("sellOutMinutes", "must be positive") }
            let resolveAfter = try f.number("resolveAfterSeconds") ?? 10
            guard resolveAfter >= 0, resolveAfter <= 86_400, resolveAfter == resolveAfter.rounded() else {
                throw f.fail("resolveAfterSeconds", "must be a whole number of seconds from 0 to 86400, not \(resolveAfter)")
            }
            return .stockLow(safetyLevel: Int64(safety), sellOutMinutes: minutes, rateWindowSeconds: try f.positiveInt("rateWindowSeconds", default: 300),
                             resolveAfterSeconds: Int(resolveAfter))
        case "consumer_lag":
            try f.only(["kind", "max"])
            guard let max = try f.number("max"), max >= 0 else { throw f.fail("max", "needs \"max\", a number of messages (0 or more)") }
            return .consumerLag(max: Int64(max))
        case "dead_letters":
            try f.only(["kind", "resolveAfterSeconds"])
            return .deadLetters(resolveAfterSeconds: try f.positiveInt("resolveAfterSeconds", default: 600))
        case "process_silent":
            try f.only(["kind", "seconds"])
            return .processSilent(seconds: try f.positiveInt("seconds", default: 30))
        case "erp_drain":
            try f.only(["kind", "maxSeconds", "pending"])
            let pending: Bool
            switch json["pending"] {
            case nil: pending = true
            case .bool(let b, _)?: pending = b
            case _?: throw f.fail("pending", "must be true or false")
            }
            return .erpDrain(maxSeconds: try f.positiveInt("maxSeconds", default: 600), pending: pending)
        case "inspection":
            try f.only(["kind", "intervalSeconds", "graceSeconds"])
            let grace = try f.number("graceSeconds") ?? 60
            guard grace >= 0 else { throw f.fail("graceSeconds", "must not be negative") }
            return .inspection(intervalSeconds: try f.positiveInt("intervalSeconds", default: 3_600), graceSeconds: grace)
        default:
            throw f.fail("kind", "unknown rule kind '\(kind)'; expected one of \(ruleKinds.joined(separator: ", "))")
        }
    }

    static let channelTypes = ["webhook", "wecom", "dingtalk", "feishu", "email"]

    static func channel(_ json: LocatedJSON, name: String, path: String, source: String) throws -> ChannelSettings {
        let f = Fields(json, path: path, source: source)
        guard case .object = json else { throw f.fail(nil, "must be an object with a \"type\"") }
        guard let type = try f.string("type") else { throw f.fail(nil, "needs \"type\", one of \(channelTypes.joined(separator: ", "))") }
        func url() throws -> String {
            guard let u = try f.string("url"), let parsed = URL(string: u), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host != nil else {
                throw f.fail("url", "needs \"url\", an http(s) URL")
            }
            return u
        }
        switch type {
        case "webhook":
            try f.only(["type", "url"])
            return .webhook(name: name, url: try url())
        case "wecom":
            try f.only(["type", "url"])
            return .wecom(name: name, url: try url())
        case "dingtalk":
            try f.only(["type", "url", "secret"])
            return .dingtalk(name: name, url: try url(), secret: try f.string("secret"))
        case "feishu", "lark":
            try f.only(["type", "url", "secret"])
            return .feishu(name: name, url: try url(), secret: try f.string("secret"))
        case "email":
            try f.only(["type", "host", "port", "security", "username", "password", "from", "to"])
            guard let host = try f.string("host"), !host.isEmpty else { throw f.fail("host", "needs \"host\", the SMTP server") }
            let security = try f.string("security") ?? "starttls"
            guard ["starttls", "tls", "none"].contains(security) else { throw f.fail("security", "must be starttls, tls or none, not '\(security)'") }
            let port = try f.positiveInt("port", default: security == "tls" ? 465 : 587, max: 65_535)
            guard let from = try f.string("from"), from.contains("@") else { throw f.fail("from", "needs \"from\", an e-mail address") }
            guard case .array(let list, _)? = json["to"], !list.isEmpty else { throw f.fail("to", "needs \"to\", a non-empty array of addresses") }
            let to = try list.map { item -> String in
                guard case .string(let a, _) = item, a.contains("@") else { throw f.fail("to", "every entry must be an e-mail address") }
                return a
            }
            let username = try f.string("username"), password = try f.string("password")
            guard (username == nil) == (password == nil) else { throw f.fail("username", "give both \"username\" and \"password\", or neither") }
            return .email(name: name, smtp: SMTPSettings(host: host, port: port, security: security, username: username, password: password, from: from, to: to))
        default:
            throw f.fail("type", "unknown channel type '\(type)'; expected one of \(channelTypes.joined(separator: ", "))")
        }
    }

    /// Typed access to an object's members with errors naming the file, line and key path.
    struct Fields {
        let json: LocatedJSON
        let path: String
        let source: String
        init(_ json: LocatedJSON, path: String, source: String) {
            self.json = json
            self.path = path
            self.source = source
        }

        func fail(_ key: String?, _ message: String) -> ConfigurationError {
            let line = key.flatMap { json[$0]?.line } ?? json.line
            return ConfigurationError("\(source) line \(line): \(path)\(key.map { ".\($0)" } ?? ""): \(message)")
        }
        func only(_ allowed: [String]) throws {
            guard case .object(let members, _) = json else { return }
            for m in members where !allowed.contains(m.key) {
                throw ConfigurationError("\(source) line \(m.value.line): \(path): unknown key '\(m.key)' (allowed: \(allowed.joined(separator: ", ")))")
            }
        }
        func string(_ key: String) throws -> String? {
            guard let v = json[key] else { return nil }
            guard case .string(let s, _) = v else { throw fail(key, "must be a string") }
            return s
        }
        func number(_ key: String) throws -> Double? {
            guard let v = json[key] else { return nil }
            guard case .number(let d, _) = v else { throw fail(key, "must be a number") }
            return d
        }
        func positiveInt(_ key: String, default value: Int, max: Int = Int(Int32.max)) throws -> Int {
            guard let d = try number(key) else { return value }
            guard d >= 1, d <= Double(max), d == d.rounded() else { throw fail(key, "must be a whole number from 1 to \(max), not \(d)") }
            return Int(d)
        }
    }
}
