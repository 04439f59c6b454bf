import Crypto
import Foundation
import Model

/// A shop's credentials for signed webhooks.
public struct ShopCredentials: Sendable, Hashable {
    public var secret: String
    /// Warehouse used for lines that do not name one.
    public var defaultWarehouse: String

    public init(secret: String, defaultWarehouse: String = "main") {
        self.secret = secret
        self.defaultWarehouse = defaultWarehouse
    }

    /// Parses `shop=secret[@warehouse];shop2=secret2` (the `ingest.shops` setting).
    public static func parseList(_ text: String) throws(IngestError) -> [String: ShopCredentials] {
        var shops: [String: ShopCredentials] = [:]
        for entry in text.split(separator: ";").map({ $0.trimmingCharacters(in: .whitespaces) }) where !entry.isEmpty {
            let kv = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, !kv[0].isEmpty, !kv[1].isEmpty else {
                throw .configuration("ingest.shops entry '\(kv.first ?? "")' is not shop=secret[@warehouse]")
            }
            let sw = kv[1].split(separator: "@", maxSplits: 1).map(String.init)
            shops[kv[0]] = ShopCredentials(secret: sw[0], defaultWarehouse: sw.count > 1 ? sw[1] : "main")
        }
        return shops
    }
}

/// Why ingest refused a request; each maps to one HTTP status and a JSON body naming the problem.
public enum IngestError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case invalidField(field: String, reason: String)
    case unknownShop(String)
    case badSignature
    case tooLarge(limit: Int)
    case unavailable(String)
    case configuration(String)

    public var status: Int {
        switch self {
        case .malformed, .invalidField: 400
        case .unknownShop, .badSignature: 401
        case .tooLarge: 413
        case .unavailable: 503
        case .configuration: 500
        }
    }

    public var description: String {
        switch self {
        case .malformed(let m): "malformed JSON: \(m)"
        case .invalidField(let f, let r): "invalid field \(f): \(r)"
        case .unknownShop(let s): "unknown shop \(s)"
        case .badSignature: "signature does not match the body under the shop's secret"
        case .tooLarge(let l): "body larger than \(l) bytes"
        case .unavailable(let m): "Kafka did not acknowledge the order; retry later (\(m))"
        case .configuration(let m): m
        }
    }

    /// The JSON body answered to the caller.
    public var jsonBody: String {
        var obj: [String: String] = ["message": description]
        switch self {
        case .malformed: obj["error"] = "malformed"
        case .invalidField(let f, _): obj["error"] = "invalid_field"; obj["field"] = f
        case .unknownShop: obj["error"] = "unknown_shop"
        case .badSignature: obj["error"] = "bad_signature"
        case .tooLarge: obj["error"] = "too_large"
        case .unavailable: obj["error"] = "unavailable"
        case .configuration: obj["error"] = "server_configuration"
        }
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}

/// LiveSync's own signed JSON webhook (for ERPs, mini-programs and the replay producer).
///
/// Signature: header `X-LiveSync-Signature: sha256=<hex HMAC-SHA256 of the raw body under the shop's secret>`.
public enum GenericWebhook {
    public static let signatureHeader = "X-LiveSync-Signature"
    /// Names the shop whose secret signed the body, so the signature is checked before the body
    /// is parsed. Optional: without it the body's `shop_id` picks the secret.
    public static let shopHeader = "X-LiveSync-Shop"

    public struct Line: Codable, Sendable {
        public var sku: String
        public var quantity: Int64
        public var unit_price_fen: Int64
        public var warehouse: String?
        public init(sku: String, quantity: Int64, unit_price_fen: Int64, warehouse: String? = nil) {
            self.sku = sku
            self.quantity = quantity
            self.unit_price_fen = unit_price_fen
            self.warehouse = warehouse
        }
    }

    public struct BuyerJSON: Codable, Sendable {
        public var name: String
        public var phone: String
        public var address: String
        public init(name: String, phone: String, address: String) {
            self.name = name
            self.phone = phone
            self.address = address
        }
    }

    /// The order body.
    public struct OrderJSON: Codable, Sendable {
        public var shop_id: String
        public var order_id: String
        public var currency: String
        /// Unix milliseconds; ingest time when absent.
        public var paid_at_ms: Int64?
        public var buyer: BuyerJSON
        public var remark: String?
        public var lines: [Line]
        public init(shop_id: String, order_id: String, currency: String, paid_at_ms: Int64?, buyer: BuyerJSON, remark: String?, lines: [Line]) {
            self.shop_id = shop_id
            self.order_id = order_id
            self.currency = currency
            self.paid_at_ms = paid_at_ms
            self.buyer = buyer
            self.remark = remark
            self.lines = lines
        }
    }

    /// The refund body.
    public struct RefundJSON: Codable, Sendable {
        public var shop_id: String
        public var order_id: String
        public var refund_id: String
        public var amount_fen: Int64
        public var reason: String?
        public init(shop_id: String, order_id: String, refund_id: String, amount_fen: Int64, reason: String?) {
            self.shop_id = shop_id
            self.order_id = order_id
            self.refund_id = refund_id
            self.amount_fen = amount_fen
            self.reason = reason
        }
    }

    /// `sha256=<hex>` for `body` under `secret`.
    public static func sign(_ body: some DataProtocol, secret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// Constant-time check of the signature header against the body.
    public static func verify(_ body: [UInt8], header: String?, secret: String) -> Bool {
        guard let header, header.hasPrefix("sha256="), let given = hexBytes(header.dropFirst(7)) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(given, authenticating: body, using: SymmetricKey(data: Data(secret.utf8)))
    }

    private static func hexBytes(_ hex: Substring) -> [UInt8]? {
        guard hex.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var it = hex.utf8.makeIterator()
        while let hi = it.next(), let lo = it.next() {
            guard let h = nibble(hi), let l = nibble(lo) else { return nil }
            out.append(h << 4 | l)
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 97...102: c - 87
        case 65...70: c - 55
        default: nil
        }
    }

    /// Decodes `T`, reporting the failing field by its JSON path.
    /// The order and refund bodies as they normally come are read in one pass (`PlainJSON`);
    /// anything else goes through `JSONDecoder`, which names the field at fault.
    public static func decode<T: Decodable>(_ type: T.Type, _ body: [UInt8]) throws(IngestError) -> T {
        if T.self == OrderJSON.self, let order = PlainJSON.order(body) { return order as! T }
        if T.self == RefundJSON.self, let refund = PlainJSON.refund(body) { return refund as! T }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body))
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw .invalidField(field: path(ctx.codingPath + [key]), reason: "is required")
        } catch let DecodingError.typeMismatch(type, ctx) {
            throw .invalidField(field: path(ctx.codingPath), reason: "must be \(typeName(type))")
        } catch let DecodingError.valueNotFound(type, ctx) {
            throw .invalidField(field: path(ctx.codingPath), reason: "must be \(typeName(type)), not null")
        } catch let DecodingError.dataCorrupted(ctx) {
            if ctx.codingPath.isEmpty { throw .malformed(ctx.debugDescription) }
            throw .invalidField(field: path(ctx.codingPath), reason: ctx.debugDescription)
        } catch {
            throw .malformed("\(error)")
        }
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is Int64.Type, is Int.Type: "an integer"
        case is String.Type: "a string"
        default: "\(type)"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        var s = ""
        for k in keys {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s.isEmpty ? "(body)" : s
    }

    static let maxLines = 500
    static let maxQuantity: Int64 = 1_000_000

    /// Validates and normalises an order body into the canonical order.
    public static func order(from body: [UInt8], shop: ShopCredentials, now: Int64) throws(IngestError) -> Order {
        try order(from: try decode(OrderJSON.self, body), shop: shop, now: now)
    }

    /// Validates and normalises a decoded order body into the canonical order.
    public static func order(from json: OrderJSON, shop: ShopCredentials, now: Int64) throws(IngestError) -> Order {
        func require(_ ok: Bool, _ field: String, _ reason: String) throws(IngestError) {
            if !ok { throw .invalidField(field: field, reason: reason) }
        }
        try require(!json.order_id.isEmpty && json.order_id.count <= 128, "order_id", "must be 1 to 128 characters")
        try require(!json.order_id.contains(":"), "order_id", "must not contain ':'")
        try require(Currency.supported.contains(json.currency), "currency", "unknown currency '\(json.currency)' (supported: \(Currency.supported.sorted().joined(separator: ", ")))")
        try require(!json.lines.isEmpty, "lines", "must have at least one line")
        try require(json.lines.count <= maxLines, "lines", "at most \(maxLines) lines")
        try require(!json.buyer.name.isEmpty, "buyer.name", "is required")
        try require(!json.buyer.phone.isEmpty, "buyer.phone", "is required")
        try require(!json.buyer.address.isEmpty, "buyer.address", "is required")
        var order = Order()
        order.platform = .generic
        order.shopID = json.shop_id
        order.platformOrderID = json.order_id
        order.orderID = Identifiers.orderID(platform: .generic, shop: json.shop_id, platformOrderID: json.order_id)
        order.currency = json.currency
        order.buyer.name = json.buyer.name
        order.buyer.phone = json.buyer.phone
        order.buyer.address = json.buyer.address
        order.buyerRemark = json.remark ?? ""
        order.paidAtUs = json.paid_at_ms.map { $0 * 1_000 } ?? now
        order.ingestedAtUs = now
        var total: Int64 = 0
        for (i, l) in json.lines.enumerated() {
            try require(!l.sku.isEmpty && l.sku.count <= 64, "lines[\(i)].sku", "must be 1 to 64 characters")
            try require(l.quantity > 0, "lines[\(i)].quantity", "must be greater than 0")
            try require(l.quantity <= maxQuantity, "lines[\(i)].quantity", "must be at most \(maxQuantity)")
            try require(l.unit_price_fen >= 0, "lines[\(i)].unit_price_fen", "must not be negative")
            try require(l.unit_price_fen <= 100_000_000_00, "lines[\(i)].unit_price_fen", "is implausibly large")
            var line = OrderLine()
            line.lineNo = UInt32(i + 1)
            line.eventID = Identifiers.lineEventID(orderID: order.orderID, lineNo: line.lineNo)
            line.orderID = order.orderID
            line.sku = l.sku
            line.warehouse = (l.warehouse?.isEmpty == false) ? l.warehouse! : shop.defaultWarehouse
            line.quantity = l.quantity
            line.unitPriceFen = l.unit_price_fen
            line.platform = .generic
            line.shopID = json.shop_id
            line.ingestedAtUs = now
            line.lineCount = UInt32(json.lines.count)
            total += l.quantity * l.unit_price_fen
            order.lines.append(line)
        }
        order.totalFen = total
        return order
    }

    /// Validates a refund body.
    public static func refund(from body: [UInt8], now: Int64) throws(IngestError) -> RefundRequest {
        try refund(from: try decode(RefundJSON.self, body), now: now)
    }

    /// Validates a decoded refund body.
    public static func refund(from json: RefundJSON, now: Int64) throws(IngestError) -> RefundRequest {
        guard !json.order_id.isEmpty, !json.order_id.contains(":") else { throw .invalidField(field: "order_id", reason: "is required and must not contain ':'") }
        guard !json.refund_id.isEmpty, json.refund_id.count <= 128 else { throw .invalidField(field: "refund_id", reason: "must be 1 to 128 characters") }
        guard json.amount_fen >= 0 else { throw .invalidField(field: "amount_fen", reason: "must not be negative") }
        var r = RefundRequest()
        r.orderID = Identifiers.orderID(platform: .generic, shop: json.shop_id, platformOrderID: json.order_id)
        r.refundID = "generic:\(json.shop_id):\(json.refund_id)"
        r.amountFen = json.amount_fen
        r.reason = json.reason ?? ""
        r.requestedAtUs = now
        return r
    }
}
