import Crypto
import Foundation
import Synchronization

/// How LiveSync reaches one merchant's Yonyou 用友 YonSuite / YonBIP through its open API
/// (self-built app 自建应用: signed `access_token` request, then `?access_token=` on every call,
/// answers `{code: "200", message, data}`). Sources and inferences: docs/erp-adapters.md, "Yonyou 用友".
public struct YonyouConfiguration: Sendable, Equatable {
    /// The tenant's API gateway, e.g. `https://c3.yonyoucloud.com/iuap-api-gateway` (from
    /// `open-auth/dataCenter/getGatewayAddress`).
    public var gatewayURL: String
    /// The tenant's token host, e.g. `https://c3.yonyoucloud.com/iuap-api-auth`.
    public var authURL: String
    public var appKey: String
    public var appSecret: String
    /// 交易类型 (`transactionTypeId`, id or code), e.g. `SO01`.
    public var transactionType: String
    /// Sales / settlement organisation when the order's mapping leaves `organization` empty.
    public var defaultOrganization: String
    /// 汇率类型 code.
    public var exchangeRateType: String
    /// Audit each saved order (`voucherorder/batchaudit`, one call per batch): the merchant's setting.
    public var audit: Bool
    /// Warehouses (`warehouse` as the tenant names them) `stockLevels` reads; empty = all.
    public var stockWarehouses: [String]
    /// Orders per `create` call. Yonyou's sales-order save takes one order (see the doc), so a
    /// batch is sent as that many concurrent saves, at most `maxConcurrentSaves` at a time.
    public var batchSize: Int
    public var maxConcurrentSaves: Int
    /// Answer codes that mean the access token is expired or invalid (re-authenticate, repeat once).
    public var tokenInvalidCodes: Set<String>
    /// Answer codes that mean throttling (限流): retryable.
    public var throttleCodes: Set<String>

    public init(gatewayURL: String, authURL: String? = nil, appKey: String, appSecret: String, transactionType: String,
                defaultOrganization: String = "", exchangeRateType: String = "01", audit: Bool = true, stockWarehouses: [String] = [],
                batchSize: Int = 50, maxConcurrentSaves: Int = 4, tokenInvalidCodes: Set<String> = ["401"],
                throttleCodes: Set<String> = ["429"]) {
        func trimmed(_ s: String) -> String { s.hasSuffix("/") ? String(s.dropLast()) : s }
        self.gatewayURL = trimmed(gatewayURL)
        self.authURL = trimmed(authURL ?? gatewayURL)
        self.appKey = appKey
        self.appSecret = appSecret
        self.transactionType = transactionType
        self.defaultOrganization = defaultOrganization
        self.exchangeRateType = exchangeRateType
        self.audit = audit
        self.stockWarehouses = stockWarehouses
        self.batchSize = max(1, batchSize)
        self.maxConcurrentSaves = max(1, maxConcurrentSaves)
        self.tokenInvalidCodes = tokenInvalidCodes
        self.throttleCodes = throttleCodes
    }
}

/// The open-API paths the adapter calls.
public enum YonyouAPI {
    public static let token = "/open-auth/selfAppAuth/getAccessToken"
    public static let saveOrder = "/yonbip/sd/voucherorder/singleSave"
    public static let listOrders = "/yonbip/sd/voucherorder/list"
    public static let auditOrders = "/yonbip/sd/voucherorder/batchaudit"
    public static let currentStock = "/yonbip/scm/stock/QueryCurrentStocksByCondition"
}

/// The self-built app's token signature.
public enum YonyouSigning {
    /// Base64(HmacSHA256(appSecret, "appKey" + appKey + "timestamp" + timestamp)): the parameters
    /// sorted by name, names and values concatenated. The query carries it URL-encoded.
    public static func signature(appKey: String, timestamp: String, appSecret: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("appKey\(appKey)timestamp\(timestamp)".utf8), using: SymmetricKey(data: Data(appSecret.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// URL encoding of a query value (as Java's `URLEncoder` does for Base64: `+` `/` `=` escaped).
    public static func urlEncoded(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? value
    }

    /// 32 hex characters: the `resubmitCheckKey` for a reference, so a repeated save of the same
    /// order is one save for Yonyou's idempotency check (MDD幂等性).
    public static func resubmitCheckKey(_ reference: String) -> String {
        Insecure.MD5.hash(data: Data(reference.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

/// The Yonyou YonSuite/YonBIP adapter: sales order `singleSave` per order (bounded concurrency,
/// `code` = reference, `resubmitCheckKey` = MD5(reference)), `batchaudit` once per batch when
/// configured, `voucherorder/list` filtered by `code` IN (…) for lookup, and
/// `QueryCurrentStocksByCondition` for stock. The token is cached until its `expire`, renewed
/// early, and renewed once when an answer says it is invalid (that request was refused, so it is
/// repeated once).
public final class YonyouAdapter: ErpAdapter {
    public let configuration: YonyouConfiguration
    public let http: ErpHTTP
    public var kind: String { "yonyou" }
    public var maxBatchSize: Int { configuration.batchSize }
    public var capabilities: Set<ErpCapability> { [.stock] }
    /// Tokens requested, for tests and logs.
    public let tokensRequested = Atomic<Int>(0)
    private let token = Mutex<(value: String, expires: Date, generation: Int)?>(nil)
    private let now: @Sendable () -> Date

    public init(configuration: YonyouConfiguration, http: ErpHTTP = ErpHTTP(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.configuration = configuration
        self.http = http
        self.now = now
    }

    // MARK: The contract

    public func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !orders.isEmpty else { return [:] }
        _ = try await accessToken()  // a refused app login fails the whole call, not each order
        let limit = configuration.maxConcurrentSaves
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        await withTaskGroup(of: (String, Result<ErpDocument, ErpError>).self) { group in
            var next = 0
            func add() {
                guard next < orders.count else { return }
                let order = orders[next]
                next += 1
                group.addTask { (order.reference, await self.save(order)) }
            }
            for _ in 0..<min(limit, orders.count) { add() }
            while let (reference, result) = await group.next() {
                out[reference] = result
                add()
            }
        }
        let failures = out.values.compactMap { result -> ErpError? in
            if case .failure(let e) = result { return e }
            return nil
        }
        if failures.count == orders.count, let first = failures.first, first.isRetryable || first.code == "yonyou_auth" {
            throw first  // nothing got through: the batch failed as a whole (down, throttled, token refused)
        }
        guard configuration.audit else { return out }
        let saved = orders.compactMap { try? out[$0.reference]?.get() }
        if let audited = try? await auditDocuments(saved) {
            for (reference, result) in audited { if case .success(let d) = result { out[reference] = .success(d) } }
        }
        return out
    }

    public func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try await auditDocuments(documents)
    }

    public func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument] {
        var out: [String: ErpDocument] = [:]
        let pageSize = 100
        for start in stride(from: 0, to: references.count, by: configuration.batchSize) {
            let chunk = Array(references[start..<min(start + configuration.batchSize, references.count)])
            let wanted = Set(chunk)
            var page = 1
            while true {
                let body: [String: Any] = ["pageIndex": page, "pageSize": pageSize, "isSum": true,
                                           "simpleVOs": [["field": "code", "op": "in", "value1": chunk] as [String: Any]]]
                let data = try await call(YonyouAPI.listOrders, body) as? [String: Any]
                let records = (data?["recordList"] as? [[String: Any]]) ?? []
                for r in records {
                    let code = Self.text(r["code"])
                    guard wanted.contains(code), out[code] == nil else { continue }
                    out[code] = ErpDocument(reference: code, id: Self.text(r["id"]), number: code, state: Self.state(r))
                }
                if records.count < pageSize { break }
                page += 1
            }
        }
        return out
    }

    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        let wanted = Set(materials)
        var totals: [String: ErpStockLevel] = [:]
        var order: [String] = []
        let warehouses: [String?] = configuration.stockWarehouses.isEmpty ? [nil] : configuration.stockWarehouses
        for warehouse in warehouses {
            var body: [String: Any] = [:]
            if let warehouse { body["warehouse"] = warehouse }
            let data = try await call(YonyouAPI.currentStock, body)
            let rows = (data as? [[String: Any]]) ?? ((data as? [String: Any])?["recordList"] as? [[String: Any]]) ?? []
            for r in rows {
                let material = Self.text(r["product_code"]).isEmpty ? Self.text(r["productsku_code"]) : Self.text(r["product_code"])
                guard wanted.isEmpty || wanted.contains(material) else { continue }
                let w = warehouse ?? (Self.text(r["warehouse_code"]).isEmpty ? Self.text(r["warehouse"]) : Self.text(r["warehouse_code"]))
                let key = material + "\u{1}" + w
                if totals[key] == nil { totals[key] = ErpStockLevel(material: material, warehouse: w, onHand: 0, available: 0); order.append(key) }
                totals[key]!.onHand += Self.quantity(r["currentqty"])
                totals[key]!.available += Self.quantity(r["availableqty"])
            }
        }
        return order.map { totals[$0]! }
    }

    // MARK: Envelopes

    /// The `data` of one `singleSave`.
    func saveBody(_ o: ErpSaleOrder) -> [String: Any] {
        let c = configuration
        let org = o.organization.isEmpty ? c.defaultOrganization : o.organization
        let date = ErpChinaTime.chinaDateTime(us: o.paidAtUs)
        return [
            "resubmitCheckKey": YonyouSigning.resubmitCheckKey(o.reference),
            "salesOrgId": org,
            "settlementOrgId": org,
            "transactionTypeId": c.transactionType,
            "vouchdate": date,
            "code": o.reference,
            "agentId": o.customer,
            "invoiceAgentId": o.customer,
            "orderPrices": ["currency": o.currency, "natCurrency": o.currency, "exchRate": 1, "exchangeRateType": c.exchangeRateType,
                            "taxInclusive": true] as [String: Any],
            "payMoney": ErpAmount.decimal(o.totalFen),
            "memo": o.remark.isEmpty ? "\(o.platform) \(o.shopID) \(o.platformOrderID)" : o.remark,
            "_status": "Insert",
            "orderDetails": o.lines.map { l -> [String: Any] in
                [
                    "productId": l.material,
                    "stockId": o.warehouse,
                    "stockOrgId": org,
                    "qty": l.quantity,
                    "oriTaxUnitPrice": ErpAmount.decimal(l.unitPriceFen),
                    "oriSum": ErpAmount.decimal(l.unitPriceFen * l.quantity),
                    "consignTime": date,
                    "_status": "Insert",
                ]
            },
        ]
    }

    func save(_ order: ErpSaleOrder) async -> Result<ErpDocument, ErpError> {
        do {
            let data = try await call(YonyouAPI.saveOrder, ["data": saveBody(order)]) as? [String: Any] ?? [:]
            let id = Self.text(data["id"])
            guard !id.isEmpty else { return .failure(.retryable(code: "yonyou_envelope", message: "singleSave answered 200 without data.id")) }
            let code = Self.text(data["code"]).isEmpty ? order.reference : Self.text(data["code"])
            return .success(ErpDocument(reference: order.reference, id: id, number: code, state: Self.state(data)))
        } catch {
            return .failure(error)
        }
    }

    /// `batchaudit` of `documents` in one call: audited ones come back `.confirmed`.
    func auditDocuments(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !documents.isEmpty else { return [:] }
        let data = try await call(YonyouAPI.auditOrders, ["data": documents.map { ["id": $0.id] }]) as? [String: Any] ?? [:]
        let audited = Set(((data["infos"] as? [[String: Any]]) ?? []).map { Self.text($0["id"]) })
        let messages = ((data["messages"] as? [Any]) ?? []).map { Self.text($0) }.joined(separator: "; ")
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        for d in documents {
            if audited.contains(d.id) || d.state == .confirmed {
                var c = d
                c.state = .confirmed
                out[d.reference] = .success(c)
            } else {
                out[d.reference] = .failure(.permanent(code: "batchaudit", message: messages.isEmpty ? "not audited" : messages))
            }
        }
        return out
    }

    // MARK: Calls

    /// POST `gateway + path?access_token=…` and the answer's `data`; an invalid-token answer
    /// renews the token and repeats once.
    func call(_ path: String, _ body: [String: Any]) async throws(ErpError) -> Any? {
        for attempt in 0..<2 {
            let (value, generation) = try await accessToken()
            let url = configuration.gatewayURL + path + "?access_token=" + YonyouSigning.urlEncoded(value)
            let (response, json) = try await http.postJSON(url: url, json: body)
            let answer = json as? [String: Any] ?? [:]
            let code = Self.text(answer["code"])
            if code == "200" && response.status < 300 { return answer["data"] }
            let message = Self.text(answer["message"]).isEmpty ? "HTTP \(response.status)" : Self.text(answer["message"])
            if response.status == 401 || configuration.tokenInvalidCodes.contains(code) || Self.saysTokenInvalid(message) {
                invalidate(generation)
                if attempt == 0 { continue }
                throw .retryable(code: code.isEmpty ? "http_401" : code, message: "access token refused again after renewal: \(message)")
            }
            throw classify(code: code.isEmpty ? "http_\(response.status)" : code, message: message)
        }
        throw .retryable(code: "yonyou_token", message: "access token refused")
    }

    /// The codes Yonyou uses for a stale token are not in the sources checked; a message naming
    /// the token as expired or invalid counts too.
    static func saysTokenInvalid(_ message: String) -> Bool {
        let lower = message.lowercased()
        guard lower.contains("token") else { return false }
        return ["过期", "失效", "无效", "非法", "expired", "invalid"].contains { lower.contains($0) }
    }

    func classify(code: String, message: String) -> ErpError {
        let transient = ["限流", "频繁", "流量", "繁忙", "超时", "稍后", "timeout", "too many", "busy"]
        let lower = message.lowercased()
        if configuration.throttleCodes.contains(code) || transient.contains(where: { lower.contains($0) })
            || (Int(code).map { (500...599).contains($0) } ?? false) {
            return .retryable(code: code, message: message)
        }
        return .permanent(code: code, message: message)
    }

    /// The cached token while more than a minute of it is left; else a new signed request.
    func accessToken() async throws(ErpError) -> (String, Int) {
        let current = now()
        if let t = token.withLock({ $0 }), t.expires.timeIntervalSince(current) > 60 { return (t.value, t.generation) }
        let c = configuration
        let timestamp = String(Int64(current.timeIntervalSince1970 * 1000))
        let signature = YonyouSigning.signature(appKey: c.appKey, timestamp: timestamp, appSecret: c.appSecret)
        let url = c.authURL + YonyouAPI.token + "?appKey=\(YonyouSigning.urlEncoded(c.appKey))&timestamp=\(timestamp)&signature=\(YonyouSigning.urlEncoded(signature))"
        let response = try await http.send(.GET, url: url)
        let answer = try ErpHTTP.decode(response) as? [String: Any] ?? [:]
        let code = Self.text(answer["code"])
        guard code == "00000" || code == "200", let data = answer["data"] as? [String: Any], let value = data["access_token"] as? String, !value.isEmpty else {
            let message = Self.text(answer["message"])
            throw .permanent(code: "yonyou_auth", message: "Yonyou refused the token request of app \(c.appKey) [\(code)]: \(message)")
        }
        tokensRequested.add(1, ordering: .relaxed)
        let expire = Double(Self.text(data["expire"])) ?? 7200
        return token.withLock { t in
            let generation = (t?.generation ?? 0) + 1
            t = (value, current.addingTimeInterval(expire), generation)
            return (value, generation)
        }
    }

    private func invalidate(_ generation: Int) {
        token.withLock { t in if t?.generation == generation { t = nil } }
    }

    // MARK: Values

    /// `nextStatusName` (OPPOSE 已取消, ENDORDER 已完成, delivery states) and `verifystate` (2 = 已审核).
    static func state(_ r: [String: Any]) -> ErpDocumentState {
        switch text(r["nextStatusName"]) {
        case "OPPOSE": return .cancelled
        case "ENDORDER": return .done
        case "DELIVERGOODS", "DELIVERY_PART", "DELIVERY_TAKE_PART", "TAKEDELIVERY": return .confirmed
        default: return text(r["verifystate"]) == "2" ? .confirmed : .draft
        }
    }

    static func text(_ value: Any?) -> String {
        switch value {
        case let s as String: s
        case let n as NSNumber: n.stringValue
        case nil, is NSNull: ""
        default: "\(value!)"
        }
    }

    static func quantity(_ value: Any?) -> Int64 {
        switch value {
        case let n as NSNumber: Int64(n.doubleValue.rounded(.towardZero))
        case let s as String: Int64((Double(s) ?? 0).rounded(.towardZero))
        default: 0
        }
    }
}
