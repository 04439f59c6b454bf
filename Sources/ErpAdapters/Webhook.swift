import Crypto
import Foundation

/// Where LiveSync posts orders for an in-house ERP that speaks LiveSync's own signed JSON webhook
/// protocol (docs/erp-adapters.md, "Generic webhook").
public struct WebhookErpConfiguration: Sendable {
    /// The merchant's endpoint; every operation is a `POST` to it, named by `op` in the body and the
    /// `X-LiveSync-Operation` header.
    public var url: String
    /// The shared secret of `X-LiveSync-Signature` (HMAC-SHA256).
    public var secret: String
    /// Orders per call (the endpoint's batch limit).
    public var batchSize: Int
    public var timeout: Duration
    /// Operations the endpoint implements beyond `create`, `lookup` and `confirm`.
    public var capabilities: Set<ErpCapability>
    /// Extra headers (an API gateway's key, say); never the signature's.
    public var headers: [String: String]

    public init(url: String, secret: String, batchSize: Int = 100, timeout: Duration = .seconds(30),
                capabilities: Set<ErpCapability> = [.cancel, .shipped, .stock], headers: [String: String] = [:]) {
        self.url = url
        self.secret = secret
        self.batchSize = batchSize
        self.timeout = timeout
        self.capabilities = capabilities
        self.headers = headers
    }
}

/// LiveSync's generic signed JSON webhook for in-house ERPs: one `POST` per batch and operation
/// (`create`, `lookup`, `confirm`, `cancel`, `shipped`, `stock`), signed with
/// `hex(HMAC-SHA256(secret, timestamp + "\n" + nonce + "\n" + body))`, answered with per-document
/// results keyed by reference.
public struct WebhookErpAdapter: ErpAdapter {
    public let kind = "webhook"
    public let configuration: WebhookErpConfiguration
    public var maxBatchSize: Int { configuration.batchSize }
    public var capabilities: Set<ErpCapability> { configuration.capabilities }
    let http: ErpHTTP

    public static let version = 1

    public init(_ configuration: WebhookErpConfiguration, http: ErpHTTP? = nil) {
        self.configuration = configuration
        self.http = http ?? ErpHTTP(timeout: configuration.timeout)
    }

    /// The signature over one request: lower-case hex HMAC-SHA256 of `timestamp \n nonce \n body`.
    public static func signature(secret: String, timestamp: String, nonce: String, body: Data) -> String {
        var message = Data("\(timestamp)\n\(nonce)\n".utf8)
        message.append(body)
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Data(secret.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined()
    }

    /// Posts one operation and returns the answer's JSON object; whole-call errors are thrown.
    func post(_ op: String, _ fields: [String: Any]) async throws(ErpError) -> [String: Any] {
        var json = fields
        json["version"] = Self.version
        json["op"] = op
        let body: Data
        do { body = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes]) } catch {
            throw .permanent(code: "encoding", message: "request body is not valid JSON: \(error)")
        }
        let timestamp = String(Int(Date().timeIntervalSince1970))
        let nonce = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        var headers: [(String, String)] = configuration.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        headers += [("Content-Type", "application/json; charset=utf-8"), ("X-LiveSync-Operation", op), ("X-LiveSync-Timestamp", timestamp),
                    ("X-LiveSync-Nonce", nonce), ("X-LiveSync-Signature", Self.signature(secret: configuration.secret, timestamp: timestamp, nonce: nonce, body: body))]
        let response = try await http.send(url: configuration.url, headers: headers, body: body)
        let answer = (try? ErpHTTP.decode(response)) as? [String: Any]
        if response.status >= 300 {
            let e = answer?["error"] as? [String: Any]
            let code = e?["code"] as? String ?? "http_\(response.status)"
            let message = e?["message"] as? String ?? "the ERP webhook answered HTTP \(response.status)"
            throw (e?["retryable"] as? Bool ?? (response.status == 408)) ? .retryable(code: code, message: message) : .permanent(code: code, message: message)
        }
        guard let answer else {
            throw .permanent(code: "http_\(response.status)", message: "the ERP webhook answered \(op) with a body that is not a JSON object")
        }
        return answer
    }

    /// Per-document results `{reference, ok, id, number, state, error: {code, message, retryable}}`;
    /// a reference the answer leaves out is retryable (`lookup` finds it if it was written).
    static func results(_ answer: [String: Any], expected: [String]) -> [String: Result<ErpDocument, ErpError>] {
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        for case let r as [String: Any] in answer["results"] as? [Any] ?? [] {
            guard let reference = r["reference"] as? String, expected.contains(reference) else { continue }
            if r["ok"] as? Bool == true, let doc = document(r) {
                out[reference] = .success(doc)
            } else {
                let e = r["error"] as? [String: Any] ?? [:]
                let code = e["code"] as? String ?? "refused"
                let message = e["message"] as? String ?? "the ERP refused \(reference)"
                out[reference] = .failure(e["retryable"] as? Bool == true ? .retryable(code: code, message: message) : .permanent(code: code, message: message))
            }
        }
        for reference in expected where out[reference] == nil {
            out[reference] = .failure(.retryable(code: "no_result", message: "the ERP webhook's answer has no result for \(reference)"))
        }
        return out
    }

    static func document(_ r: [String: Any]) -> ErpDocument? {
        guard let reference = r["reference"] as? String, let id = r["id"] as? String ?? (r["id"] as? Int).map(String.init),
              let state = ErpDocumentState(rawValue: r["state"] as? String ?? "") else { return nil }
        return ErpDocument(reference: reference, id: id, number: r["number"] as? String ?? "", state: state)
    }

    static func json(_ d: ErpDocument) -> [String: Any] {
        ["reference": d.reference, "id": d.id, "number": d.number, "state": d.state.rawValue]
    }

    static func json(_ o: ErpSaleOrder) -> [String: Any] {
        [
            "reference": o.reference, "platform": o.platform, "shop_id": o.shopID, "platform_order_id": o.platformOrderID,
            "customer": o.customer, "organization": o.organization, "warehouse": o.warehouse, "currency": o.currency,
            "paid_at_us": o.paidAtUs, "paid_at": ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(o.paidAtUs) / 1_000_000)),
            "total_fen": o.totalFen, "total": ErpAmount.yuan(o.totalFen), "discount_fen": o.discountFen, "discount": ErpAmount.yuan(o.discountFen),
            "remark": o.remark,
            "lines": o.lines.map { l in
                ["line_no": l.lineNo, "material": l.material, "quantity": l.quantity, "unit_price_fen": l.unitPriceFen,
                 "unit_price": ErpAmount.yuan(l.unitPriceFen), "amount_fen": l.unitPriceFen * l.quantity] as [String: Any]
            },
        ]
    }

    // MARK: ErpAdapter

    public func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument] {
        guard !references.isEmpty else { return [:] }
        let answer = try await post("lookup", ["references": references])
        var found: [String: ErpDocument] = [:]
        for case let r as [String: Any] in answer["documents"] as? [Any] ?? [] {
            if let d = Self.document(r), references.contains(d.reference) { found[d.reference] = d }
        }
        return found
    }

    public func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !orders.isEmpty else { return [:] }
        return Self.results(try await post("create", ["orders": orders.map(Self.json)]), expected: orders.map(\.reference))
    }

    public func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !documents.isEmpty else { return [:] }
        return Self.results(try await post("confirm", ["documents": documents.map(Self.json)]), expected: documents.map(\.reference))
    }

    public func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard capabilities.contains(.cancel) else { throw .permanent(code: "unsupported", message: "the webhook ERP does not implement cancel") }
        guard !documents.isEmpty else { return [:] }
        return Self.results(try await post("cancel", ["documents": documents.map(Self.json)]), expected: documents.map(\.reference))
    }

    public func markShipped(_ shipments: [ErpShipmentNotice]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard capabilities.contains(.shipped) else { throw .permanent(code: "unsupported", message: "the webhook ERP does not implement shipped") }
        guard !shipments.isEmpty else { return [:] }
        let json = shipments.map { s -> [String: Any] in
            var d = Self.json(s.document)
            d["carrier"] = s.carrier
            d["tracking_number"] = s.trackingNumber
            d["shipped_at_us"] = s.shippedAtUs
            return d
        }
        return Self.results(try await post("shipped", ["shipments": json]), expected: shipments.map(\.document.reference))
    }

    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        guard capabilities.contains(.stock) else { throw .permanent(code: "unsupported", message: "the webhook ERP does not implement stock") }
        let answer = try await post("stock", ["materials": materials])
        var levels: [ErpStockLevel] = []
        for case let s as [String: Any] in answer["stock"] as? [Any] ?? [] {
            guard let material = s["material"] as? String, let onHand = Self.int(s["on_hand"]) else {
                throw .permanent(code: "stock", message: "the ERP webhook's stock entry lacks material or on_hand: \(s)")
            }
            levels.append(ErpStockLevel(material: material, warehouse: s["warehouse"] as? String ?? "", onHand: onHand,
                                        available: Self.int(s["available"]) ?? onHand, recordedByLiveSync: Self.int(s["recorded_by_livesync"])))
        }
        return levels
    }

    static func int(_ v: Any?) -> Int64? {
        switch v {
        case let n as Int: Int64(n)
        case let n as Int64: n
        case let n as Double: Int64(n.rounded(.down))
        case let n as NSNumber: n.int64Value
        default: nil
        }
    }
}
