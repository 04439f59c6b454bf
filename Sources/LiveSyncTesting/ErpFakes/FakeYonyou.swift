import ErpAdapters
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A local fake of Yonyou 用友 YonSuite/YonBIP's open API for a self-built app, built from the
/// open-platform docs (docs/erp-adapters.md): the signed token request
/// (`/iuap-api-auth/open-auth/selfAppAuth/getAccessToken`, HmacSHA256 over
/// `appKey…timestamp…`, a timestamp within 10 minutes), `access_token` on every gateway call
/// (`/iuap-api-gateway/yonbip/…`; unknown or expired → the token-invalid answer), the sales order
/// `singleSave` body (`data` with org, transaction type, customer, details with product,
/// warehouse, quantity and prices; unknown codes refused with `code` 999), `resubmitCheckKey`
/// idempotency, duplicate `code`; `voucherorder/list` by `code`, `batchaudit`, and
/// `QueryCurrentStocksByCondition`. Knobs: throttle, fail with 5xx, expire tokens, be slow.
/// The exact codes Yonyou answers for a stale token and for throttling were not in the sources
/// checked; the fake uses `401` and `429` in the body (see the doc).
public final class FakeYonyou: Sendable {
    public struct Line: Sendable, Equatable {
        public var product: String
        public var warehouse: String
        public var quantity: Double
        public var taxUnitPrice: Double
        public init(product: String, warehouse: String, quantity: Double, taxUnitPrice: Double) {
            self.product = product
            self.warehouse = warehouse
            self.quantity = quantity
            self.taxUnitPrice = taxUnitPrice
        }
    }

    public struct Document: Sendable, Equatable {
        public var id: String
        public var code: String
        public var resubmitCheckKey: String
        public var customer: String
        public var organization: String
        public var transactionType: String
        public var vouchdate: String
        public var lines: [Line]
        /// 0 开立, 2 已审核.
        public var verifystate: Int
        public var nextStatusName: String
    }

    public enum Failure: Sendable, Equatable {
        /// `{"code":"429","message":"…限流…"}`.
        case throttle
        /// That HTTP status with a gateway error page.
        case status(Int)
    }

    public let appKey: String
    public let appSecret: String
    public let organizations: Set<String>
    public let transactionTypes: Set<String>
    public let customers: Set<String>
    public let products: Set<String>
    public let warehouses: Set<String>

    struct State {
        var tokens: [String: Date] = [:]
        var tokenLifetime: TimeInterval = 7200
        var documents: [Document] = []
        var nextID = 2_282_800_216_590_000
        var stock: [(warehouse: String, product: String, current: Double, available: Double)] = []
        var calls: [String: Int] = [:]
        var failures: [Failure] = []
        var latency: Duration = .zero
        var inFlight = 0
        var maxInFlight = 0
        var tokenRequestsRefused = 0
    }
    let state = Mutex(State())

    public init(appKey: String = "41832a3d2df94989b500da6a22268747", appSecret: String = "b6b1cbd3a0e04d0c8b3f9e7d2a1c5f60",
                organizations: Set<String> = ["ORG01"], transactionTypes: Set<String> = ["SO01"],
                customers: Set<String> = ["CUST-DOUYIN", "CUST-KUAISHOU"], products: Set<String> = ["SKU-A", "SKU-B", "SKU-C"],
                warehouses: Set<String> = ["WH01", "WH02"]) {
        self.appKey = appKey
        self.appSecret = appSecret
        self.organizations = organizations
        self.transactionTypes = transactionTypes
        self.customers = customers
        self.products = products
        self.warehouses = warehouses
    }

    // MARK: Knobs and views

    public var documents: [Document] { state.withLock { $0.documents } }
    /// Calls per path's last segment (`getAccessToken`, `singleSave`, `list`, `batchaudit`, `QueryCurrentStocksByCondition`).
    public func calls(_ name: String) -> Int { state.withLock { $0.calls[name] ?? 0 } }
    /// Most saves the fake had in progress at once.
    public var maxConcurrentSaves: Int { state.withLock { $0.maxInFlight } }
    public var tokenRequestsRefused: Int { state.withLock { $0.tokenRequestsRefused } }
    /// Every token issued so far stops working (the next call gets the token-invalid answer).
    public func expireTokens() { state.withLock { $0.tokens.removeAll() } }
    /// `expire` (seconds) of the tokens issued from now on.
    public func setTokenLifetime(_ seconds: TimeInterval) { state.withLock { $0.tokenLifetime = seconds } }
    public func failNext(_ failures: [Failure]) { state.withLock { $0.failures.append(contentsOf: failures) } }
    public func setLatency(_ latency: Duration) { state.withLock { $0.latency = latency } }
    public func setStock(warehouse: String, product: String, current: Double, available: Double) {
        state.withLock { s in
            s.stock.removeAll { $0.warehouse == warehouse && $0.product == product }
            s.stock.append((warehouse, product, current, available))
        }
    }

    /// Runs the fake; returns the gateway URL (`…/iuap-api-gateway`) and the auth URL (`…/iuap-api-auth`).
    public func serve(port: Int = 0) async throws -> (gatewayURL: String, authURL: String, task: Task<Void, Error>) {
        let router = Router()
        routes(router)
        let (url, task) = try await LocalServer.serve(router, label: "livesync.fake-yonyou", serverName: "livesync-fake-yonyou", port: port)
        return (url + "/iuap-api-gateway", url + "/iuap-api-auth", task)
    }

    public func routes(_ router: Router<BasicRequestContext>) {
        router.get(RouterPath(stringLiteral: "/iuap-api-auth" + YonyouAPI.token)) { request, _ in self.token(Self.query(request)) }
        for path in [YonyouAPI.saveOrder, YonyouAPI.listOrders, YonyouAPI.auditOrders, YonyouAPI.currentStock] {
            router.post(RouterPath(stringLiteral: "/iuap-api-gateway" + path)) { request, _ in
                let body = try await request.body.collect(upTo: 16 << 20)
                return await self.gateway(path: path, query: Self.query(request), body: Data(body.readableBytesView))
            }
        }
    }

    // MARK: Protocol

    func token(_ q: [String: String]) -> Response {
        state.withLock { $0.calls["getAccessToken", default: 0] += 1 }
        guard q["appKey"] == appKey, let ts = q["timestamp"], let ms = Double(ts), abs(Date().timeIntervalSince1970 * 1000 - ms) < 600_000,
              let signature = q["signature"], signature == YonyouSigning.signature(appKey: appKey, timestamp: ts, appSecret: appSecret) else {
            state.withLock { $0.tokenRequestsRefused += 1 }
            return Self.json(["code": "401", "message": "签名校验失败：appKey、timestamp 或 signature 无效", "data": NSNull()])
        }
        let token = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let lifetime = state.withLock { s -> TimeInterval in s.tokens[token] = Date().addingTimeInterval(s.tokenLifetime); return s.tokenLifetime }
        return Self.json(["code": "00000", "message": "成功！", "data": ["access_token": token, "expire": Int(lifetime)] as [String: Any]])
    }

    func gateway(path: String, query: [String: String], body: Data) async -> Response {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let latency = state.withLock { s -> Duration in
            s.calls[name, default: 0] += 1
            if name == "singleSave" { s.inFlight += 1; s.maxInFlight = max(s.maxInFlight, s.inFlight) }
            return s.latency
        }
        defer { if name == "singleSave" { state.withLock { $0.inFlight -= 1 } } }
        if latency > .zero { try? await Task.sleep(for: latency) }
        let valid = state.withLock { s -> Bool in
            guard let t = query["access_token"], let expiry = s.tokens[t] else { return false }
            return expiry > Date()
        }
        guard valid else { return Self.json(["code": "401", "message": "access_token已过期或无效，请重新获取token"]) }
        if let failure = state.withLock({ $0.failures.isEmpty ? nil : $0.failures.removeFirst() }) {
            switch failure {
            case .throttle: return Self.json(["code": "429", "message": "接口调用过于频繁，已被限流，请稍后重试"])
            case .status(let code):
                return Response(status: HTTPResponse.Status(code: code), headers: [.contentType: "text/html"],
                                body: ResponseBody(byteBuffer: ByteBuffer(string: "<html><body>\(code) Bad Gateway</body></html>")))
            }
        }
        guard let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            return Self.json(["code": "999", "message": "请求体不是合法的JSON"])
        }
        switch path {
        case YonyouAPI.saveOrder: return save(json)
        case YonyouAPI.listOrders: return list(json)
        case YonyouAPI.auditOrders: return audit(json)
        default: return stock(json)
        }
    }

    func save(_ json: [String: Any]) -> Response {
        guard let d = json["data"] as? [String: Any] else { return Self.refuse("参数data不能为空") }
        func s(_ key: String) -> String { (d[key] as? String) ?? "" }
        func s(_ key: String, _ object: [String: Any]) -> String { (object[key] as? String) ?? "" }
        let key = s("resubmitCheckKey")
        guard !key.isEmpty, key.count <= 32 else { return Self.refuse("resubmitCheckKey不能为空且长度不能超过32位") }
        guard s("_status") == "Insert" else { return Self.refuse("_status必须为Insert") }
        guard organizations.contains(s("salesOrgId")) else { return Self.refuse("销售组织[\(s("salesOrgId"))]不存在") }
        guard organizations.contains(s("settlementOrgId")) else { return Self.refuse("开票组织[\(s("settlementOrgId"))]不存在") }
        guard transactionTypes.contains(s("transactionTypeId")) else { return Self.refuse("交易类型[\(s("transactionTypeId"))]不存在") }
        guard s("vouchdate").count == 19 else { return Self.refuse("单据日期格式应为yyyy-MM-dd HH:mm:ss") }
        guard customers.contains(s("agentId")) else { return Self.refuse("客户[\(s("agentId"))]不存在或未启用") }
        guard let prices = d["orderPrices"] as? [String: Any], !s("currency", prices).isEmpty else { return Self.refuse("orderPrices.currency不能为空") }
        let code = s("code")
        guard !code.isEmpty else { return Self.refuse("单据编码规则为手工编号，code不能为空") }
        guard let details = d["orderDetails"] as? [[String: Any]], !details.isEmpty else { return Self.refuse("销售订单子表orderDetails不能为空") }
        var lines: [Line] = []
        for (i, line) in details.enumerated() {
            guard products.contains(s("productId", line)) else { return Self.refuse("第\(i + 1)行：商品[\(s("productId", line))]不存在") }
            guard warehouses.contains(s("stockId", line)) else { return Self.refuse("第\(i + 1)行：仓库[\(s("stockId", line))]不存在") }
            guard let qty = (line["qty"] as? NSNumber)?.doubleValue, qty > 0 else { return Self.refuse("第\(i + 1)行：数量必须大于0") }
            guard let price = (line["oriTaxUnitPrice"] as? NSNumber)?.doubleValue, let sum = (line["oriSum"] as? NSNumber)?.doubleValue,
                  abs(price * qty - sum) < 0.005 else { return Self.refuse("第\(i + 1)行：含税单价与含税金额不一致") }
            lines.append(Line(product: s("productId", line), warehouse: s("stockId", line), quantity: qty, taxUnitPrice: price))
        }
        return state.withLock { st -> Response in
            if let same = st.documents.first(where: { $0.resubmitCheckKey == key }) {
                return Self.json(["code": "200", "message": "操作成功", "data": Self.record(same)])  // 幂等: the first save's answer
            }
            guard !st.documents.contains(where: { $0.code == code }) else { return Self.refuse("单据编码[\(code)]已存在，不能重复") }
            let doc = Document(id: String(st.nextID), code: code, resubmitCheckKey: key, customer: s("agentId"), organization: s("salesOrgId"),
                               transactionType: s("transactionTypeId"), vouchdate: s("vouchdate"), lines: lines, verifystate: 0, nextStatusName: "CONFIRMORDER")
            st.nextID += 1
            st.documents.append(doc)
            return Self.json(["code": "200", "message": "操作成功", "data": Self.record(doc)])
        }
    }

    func list(_ json: [String: Any]) -> Response {
        let pageIndex = (json["pageIndex"] as? NSNumber)?.intValue ?? 1
        let pageSize = (json["pageSize"] as? NSNumber)?.intValue ?? 10
        var codes: Set<String>?
        for vo in (json["simpleVOs"] as? [[String: Any]]) ?? [] {
            guard (vo["field"] as? String) == "code" else { return Self.refuse("不支持的查询字段\(vo["field"] ?? "")") }
            switch vo["op"] as? String {
            case "in": codes = Set((vo["value1"] as? [String]) ?? [])
            case "eq": codes = [(vo["value1"] as? String) ?? ""]
            default: return Self.refuse("不支持的操作符\(vo["op"] ?? "")")
            }
        }
        let all = documents.filter { codes?.contains($0.code) ?? true }
        let page = Array(all.dropFirst((pageIndex - 1) * pageSize).prefix(pageSize))
        return Self.json(["code": "200", "message": "操作成功", "data": [
            "pageIndex": pageIndex, "pageSize": pageSize, "recordCount": all.count, "recordList": page.map(Self.record),
        ] as [String: Any]])
    }

    func audit(_ json: [String: Any]) -> Response {
        guard let items = json["data"] as? [[String: Any]], !items.isEmpty else { return Self.refuse("参数data不能为空") }
        return state.withLock { st -> Response in
            var infos: [[String: Any]] = []
            var messages: [String] = []
            for item in items {
                let id = FakeKingdee.text(item["id"])
                guard let i = st.documents.firstIndex(where: { $0.id == id }) else { messages.append("单据[\(id)]不存在"); continue }
                guard st.documents[i].verifystate == 0 else { messages.append("单据[\(st.documents[i].code)]已审核"); continue }
                st.documents[i].verifystate = 2
                st.documents[i].nextStatusName = "DELIVERGOODS"
                infos.append(Self.record(st.documents[i]))
            }
            return Self.json(["code": "200", "message": "操作成功", "data": [
                "count": items.count, "sucessCount": infos.count, "failCount": items.count - infos.count, "messages": messages, "infos": infos,
            ] as [String: Any]])
        }
    }

    func stock(_ json: [String: Any]) -> Response {
        let warehouse = json["warehouse"] as? String
        let product = json["product"] as? String
        let rows = state.withLock { $0.stock }.filter { (warehouse == nil || $0.warehouse == warehouse) && (product == nil || $0.product == product) }
        return Self.json(["code": "200", "message": "操作成功", "data": rows.map {
            ["warehouse": $0.warehouse, "product_code": $0.product, "currentqty": $0.current, "availableqty": $0.available] as [String: Any]
        }])
    }

    // MARK: Answers

    static func record(_ d: Document) -> [String: Any] {
        ["id": d.id, "code": d.code, "verifystate": d.verifystate, "nextStatusName": d.nextStatusName, "agentId": d.customer, "salesOrgId": d.organization]
    }

    static func refuse(_ message: String) -> Response { json(["code": "999", "message": message]) }

    static func query(_ request: Request) -> [String: String] {
        var q: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { q[String(k)] = String(v).removingPercentEncoding ?? String(v) }
        return q
    }

    static func json(_ object: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8)
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
