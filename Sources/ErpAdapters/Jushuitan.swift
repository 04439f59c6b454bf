import Foundation
import Crypto
import Synchronization

/// Where and how LiveSync reaches a merchant's Jushuitan 聚水潭 ERP through its open platform
/// (`openapi.jushuitan.com`, the "新版开放平台" API of `openweb.jushuitan.com`).
public struct JushuitanConfiguration: Sendable {
    /// `https://openapi.jushuitan.com` (test environment: `https://dev-api.jushuitan.com`).
    public var baseURL: String
    public var appKey: String
    public var appSecret: String
    /// The merchant's authorised `access_token` and the `refresh_token` that renews it
    /// (`/openWeb/auth/refreshToken`) when Jushuitan answers code 100.
    public var accessToken: String
    public var refreshToken: String
    /// 店铺编号 of the merchant's "自有商城" shop orders are uploaded into (`shop_id`).
    public var shopID: Int
    /// Per LiveSync shop (`ErpSaleOrder.shopID`) overrides of `shopID`.
    public var shopIDs: [String: Int]
    /// ERP warehouse code (`ErpSaleOrder.warehouse`) → 分仓编号 `wms_co_id`. A code absent here
    /// that is a number is sent as is; anything else ships from the main warehouse (no `wms_co_id`).
    public var warehouses: [String: Int]
    /// Warehouse codes `stockLevels` reads (each through its `wms_co_id`); empty: the all-warehouse
    /// total (`wms_co_id` 0), reported under warehouse code "".
    public var stockWarehouses: [String]
    /// Orders per upload call (`maxBatchSize`). 50: the limit Jushuitan documents for its batch
    /// write calls (orderbyoid/cancel "一次最大支持50条", skumap/upload "单次最多上传50个").
    public var batchSize: Int
    public var timeout: Duration
    /// Calls per second the adapter allows itself (Jushuitan: "请求频率一秒不超过5次"; code 199 past it).
    /// 0 turns pacing off.
    public var callsPerSecond: Double
    /// `shop_status` of an uploaded paid order.
    public var shopStatus: String
    /// `cancel_type` and `remark` of `/open/jushuitan/orderbyoid/cancel`.
    public var cancelType: String
    public var cancelRemark: String
    /// Offset of the merchant's wall clock from UTC for `order_date`/`pay_date` (Beijing: +8 h).
    public var utcOffsetSeconds: Int

    public init(baseURL: String = "https://openapi.jushuitan.com", appKey: String, appSecret: String, accessToken: String,
                refreshToken: String = "", shopID: Int, shopIDs: [String: Int] = [:], warehouses: [String: Int] = [:],
                stockWarehouses: [String] = [], batchSize: Int = 50, timeout: Duration = .seconds(30), callsPerSecond: Double = 5,
                shopStatus: String = "WAIT_SELLER_SEND_GOODS", cancelType: String = "其他", cancelRemark: String = "LiveSync: cancelled on the platform",
                utcOffsetSeconds: Int = 8 * 3600) {
        self.baseURL = baseURL
        self.appKey = appKey
        self.appSecret = appSecret
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.shopID = shopID
        self.shopIDs = shopIDs
        self.warehouses = warehouses
        self.stockWarehouses = stockWarehouses
        self.batchSize = batchSize
        self.timeout = timeout
        self.callsPerSecond = callsPerSecond
        self.shopStatus = shopStatus
        self.cancelType = cancelType
        self.cancelRemark = cancelRemark
        self.utcOffsetSeconds = utcOffsetSeconds
    }
}

/// The Jushuitan 聚水潭 open-API adapter.
///
/// Calls (all `POST` form-encoded `app_key, access_token, timestamp, charset=utf-8, version=2, biz, sign`):
/// - create: `/open/jushuitan/orders/upload` with the whole batch (`so_id` = reference);
/// - lookup: `/open/orders/single/query` by `so_ids` (Jushuitan takes at most 20 per call);
/// - cancel: `/open/jushuitan/orderbyoid/cancel` by `o_ids` (≤ 50 per call);
/// - stock: `/open/inventory/query` by `sku_ids` (≤ 100 per call) per warehouse.
/// Code 100 (token invalid/expired) refreshes the token once through `/openWeb/auth/refreshToken`.
public struct JushuitanAdapter: ErpAdapter {
    public let kind = "jushuitan"
    public let configuration: JushuitanConfiguration
    public var maxBatchSize: Int { configuration.batchSize }
    public let capabilities: Set<ErpCapability> = [.cancel, .stock]
    let http: ErpHTTP
    let tokens: Tokens
    let pacer: Pacer

    /// Most `so_ids` one `/open/orders/single/query` takes ("最大限制20条").
    public static let lookupLimit = 20
    /// Most `sku_ids` one `/open/inventory/query` takes ("最大不超过100个"), and its page size limit.
    public static let inventoryLimit = 100

    public init(_ configuration: JushuitanConfiguration, http: ErpHTTP? = nil) {
        self.configuration = configuration
        self.http = http ?? ErpHTTP(timeout: configuration.timeout)
        self.tokens = Tokens(access: configuration.accessToken, refresh: configuration.refreshToken)
        self.pacer = Pacer(perSecond: configuration.callsPerSecond)
    }

    final class Tokens: Sendable {
        let state: Mutex<(access: String, refresh: String, generation: Int)>
        init(access: String, refresh: String) { state = Mutex((access, refresh, 0)) }
    }

    /// Spaces calls `1/perSecond` apart across every task using this adapter.
    final class Pacer: Sendable {
        let interval: Duration
        let next = Mutex<ContinuousClock.Instant?>(nil)
        init(perSecond: Double) { interval = perSecond > 0 ? .milliseconds(Int64(1000 / perSecond)) : .zero }
        func wait() async {
            guard interval > .zero else { return }
            let now = ContinuousClock.now
            let slot = next.withLock { n -> ContinuousClock.Instant in
                let s = max(n ?? now, now)
                n = s + interval
                return s
            }
            if slot > now { try? await Task.sleep(until: slot, clock: .continuous) }
        }
    }

    // MARK: Signing

    /// `md5(app_secret + k1 + v1 + k2 + v2 …)` over every parameter but `sign`, keys in byte order,
    /// lower-case hex (openweb.jushuitan.com/doc?docId=70).
    public static func sign(_ params: [String: String], appSecret: String) -> String {
        var text = appSecret
        for key in params.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) where key != "sign" {
            text += key + params[key]!
        }
        return Insecure.MD5.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    static func formEncode(_ params: [String: String]) -> Data {
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        let text = params.keys.sorted().map { k in
            "\(k.addingPercentEncoding(withAllowedCharacters: allowed) ?? k)=\(params[k]!.addingPercentEncoding(withAllowedCharacters: allowed) ?? "")"
        }.joined(separator: "&")
        return Data(text.utf8)
    }

    // MARK: Calls

    /// One business call: signs, posts, reads the `{code, msg, data}` envelope; on code 100 refreshes
    /// the token once and calls again. Returns `data`.
    func call(_ path: String, biz: JSTJSON) async throws(ErpError) -> Any? {
        var refreshed = false
        while true {
            let (token, generation) = tokens.state.withLock { ($0.access, $0.generation) }
            let envelope = try await post(path, params: [
                "app_key": configuration.appKey, "access_token": token, "timestamp": String(Int(Date().timeIntervalSince1970)),
                "charset": "utf-8", "version": "2", "biz": biz.text,
            ])
            let code = Self.code(envelope["code"])
            if code == 0 { return envelope["data"] }
            let message = envelope["msg"] as? String ?? envelope["message"] as? String ?? ""
            if code == 100, !refreshed {
                refreshed = true
                try await refreshToken(seenGeneration: generation)
                continue
            }
            throw Self.classify(code: code, message: message)
        }
    }

    /// `/openWeb/auth/refreshToken` (grant_type=refresh_token, scope=all); skipped when another task
    /// already refreshed since `seenGeneration`.
    func refreshToken(seenGeneration: Int) async throws(ErpError) {
        let (refresh, generation) = tokens.state.withLock { ($0.refresh, $0.generation) }
        if generation != seenGeneration { return }
        guard !refresh.isEmpty else {
            throw .retryable(code: "100", message: "Jushuitan says the access_token is invalid or expired and no refresh_token is configured; re-authorise the app")
        }
        let envelope = try await post("/openWeb/auth/refreshToken", params: [
            "app_key": configuration.appKey, "timestamp": String(Int(Date().timeIntervalSince1970)), "grant_type": "refresh_token",
            "charset": "utf-8", "refresh_token": refresh, "scope": "all",
        ])
        let code = Self.code(envelope["code"])
        guard code == 0, let data = envelope["data"] as? [String: Any], let access = data["access_token"] as? String, !access.isEmpty else {
            // The contract: a session that cannot be renewed is retryable (lag, visible), not a refusal of the orders.
            throw .retryable(code: "\(code)", message: "Jushuitan token refresh failed: \(envelope["msg"] as? String ?? "no access_token in the answer")")
        }
        let newRefresh = data["refresh_token"] as? String
        tokens.state.withLock {
            $0.access = access
            if let newRefresh, !newRefresh.isEmpty { $0.refresh = newRefresh }
            $0.generation += 1
        }
    }

    func post(_ path: String, params: [String: String]) async throws(ErpError) -> [String: Any] {
        var params = params
        params["sign"] = Self.sign(params, appSecret: configuration.appSecret)
        await pacer.wait()
        let response = try await http.send(url: configuration.baseURL + path,
                                           headers: [("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")],
                                           body: Self.formEncode(params))
        guard let object = try ErpHTTP.decode(response) as? [String: Any] else {
            throw .permanent(code: "http_\(response.status)", message: "Jushuitan answered \(path) with JSON that is not an object")
        }
        if response.status >= 400, object["code"] == nil {
            throw .permanent(code: "http_\(response.status)", message: "Jushuitan answered \(path) with HTTP \(response.status)")
        }
        return object
    }

    /// Jushuitan's codes (openweb.jushuitan.com/doc?docId=320, ieu/jst-java `JstErrorCode`).
    static func classify(code: Int, message: String) -> ErpError {
        switch code {
        case 199, 200: return .retryable(code: "\(code)", message: message.isEmpty ? "Jushuitan: 调用频次超过限制" : message)
        case 100: return .retryable(code: "100", message: message.isEmpty ? "Jushuitan: invalid or expired access_token" : message)
        default:
            let lower = message.lowercased()
            if lower.contains("timestamp") || message.contains("时间戳") || message.contains("繁忙") || message.contains("超时") {
                return .retryable(code: "\(code)", message: message)
            }
            return .permanent(code: "\(code)", message: message.isEmpty ? "Jushuitan refused the call (code \(code))" : message)
        }
    }

    static func code(_ value: Any?) -> Int {
        switch value {
        case let n as Int: n
        case let n as NSNumber: n.intValue
        case let s as String: Int(s) ?? -1
        default: -1
        }
    }

    static func text(_ value: Any?) -> String? {
        switch value {
        case let s as String: s
        case let n as Int: String(n)
        case let n as Int64: String(n)
        case let n as NSNumber: n.stringValue
        default: nil
        }
    }

    // MARK: ErpAdapter

    public func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument] {
        var found: [String: ErpDocument] = [:]
        var start = 0
        while start < references.count {
            let chunk = Array(references[start..<min(start + Self.lookupLimit, references.count)])
            start += chunk.count
            var page = 1
            while true {
                let data = try await call("/open/orders/single/query", biz: .object([
                    ("so_ids", .array(chunk.map { JSTJSON.string($0) })), ("page_index", .int(Int64(page))), ("page_size", .int(Int64(Self.inventoryLimit))),
                ])) as? [String: Any]
                for case let o as [String: Any] in data?["orders"] as? [Any] ?? [] {
                    guard let so = Self.text(o["so_id"]), let oid = Self.text(o["o_id"]), chunk.contains(so) else { continue }
                    let state = Self.state(o["status"] as? String ?? "")
                    // A split or merged order leaves several ERP orders for one so_id: keep the live one.
                    if let existing = found[so], existing.state != .cancelled, state == .cancelled { continue }
                    found[so] = ErpDocument(reference: so, id: oid, number: oid, state: state)
                }
                guard data?["has_next"] as? Bool == true else { break }
                page += 1
            }
        }
        return found
    }

    public func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !orders.isEmpty else { return [:] }
        let data = try await call("/open/jushuitan/orders/upload", biz: .array(orders.map(uploadJSON))) as? [String: Any]
        var results: [String: Result<ErpDocument, ErpError>] = [:]
        for case let d as [String: Any] in data?["datas"] as? [Any] ?? [] {
            guard let so = Self.text(d["so_id"]) else { continue }
            let message = d["msg"] as? String ?? ""
            if d["issuccess"] as? Bool == true, let oid = Self.text(d["o_id"]) {
                results[so] = .success(ErpDocument(reference: so, id: oid, number: oid, state: .confirmed))
            } else {
                results[so] = .failure(.permanent(code: "issuccess=false", message: message.isEmpty ? "Jushuitan refused the order" : message))
            }
        }
        for o in orders where results[o.reference] == nil {
            results[o.reference] = .failure(.retryable(code: "no_result", message: "Jushuitan's upload answer has no entry for so_id \(o.reference)"))
        }
        return results
    }

    /// Uploaded orders are already in Jushuitan's order flow (已付款待审核): nothing to confirm.
    public func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        Dictionary(documents.map { d -> (String, Result<ErpDocument, ErpError>) in
            var c = d
            if c.state == .draft { c.state = .confirmed }
            return (d.reference, .success(c))
        }, uniquingKeysWith: { a, _ in a })
    }

    public func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        var results: [String: Result<ErpDocument, ErpError>] = [:]
        var valid: [ErpDocument] = []
        for d in documents {
            if Int(d.id) == nil { results[d.reference] = .failure(.permanent(code: "o_id", message: "Jushuitan o_id '\(d.id)' is not a number")) } else { valid.append(d) }
        }
        var start = 0
        while start < valid.count {
            let chunk = Array(valid[start..<min(start + 50, valid.count)])
            start += chunk.count
            try await cancelSplitting(chunk, into: &results)
        }
        return results
    }

    /// The cancel call is all-or-nothing: a refusal of a batch is narrowed down by halves so one
    /// shipped order does not keep the others from being cancelled.
    func cancelSplitting(_ documents: [ErpDocument], into results: inout [String: Result<ErpDocument, ErpError>]) async throws(ErpError) {
        do throws(ErpError) {
            _ = try await call("/open/jushuitan/orderbyoid/cancel", biz: .object([
                ("o_ids", .array(documents.map { .int(Int64($0.id)!) })), ("cancel_type", .string(configuration.cancelType)),
                ("remark", .string(configuration.cancelRemark)),
            ]))
            for d in documents {
                var c = d
                c.state = .cancelled
                results[d.reference] = .success(c)
            }
        } catch {
            if error.isRetryable { throw error }
            guard documents.count > 1 else {
                results[documents[0].reference] = .failure(error)
                return
            }
            let half = documents.count / 2
            try await cancelSplitting(Array(documents[..<half]), into: &results)
            try await cancelSplitting(Array(documents[half...]), into: &results)
        }
    }

    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        let warehouses: [(code: String, wms: Int)] = configuration.stockWarehouses.isEmpty
            ? [("", 0)] : configuration.stockWarehouses.map { ($0, wmsCoID($0) ?? 0) }
        var levels: [ErpStockLevel] = []
        for w in warehouses {
            // Without materials: every SKU, paged from ts 0 ("如果用ts查询不需要传时间查询条件").
                var chunks: [[String]?] = []
            if materials.isEmpty { chunks = [nil] }
            for start in stride(from: 0, to: materials.count, by: Self.inventoryLimit) {
                chunks.append(Array(materials[start..<min(start + Self.inventoryLimit, materials.count)]))
            }
            for chunk in chunks {
                var page = 1
                while true {
                    var fields: [(String, JSTJSON)] = [("wms_co_id", .int(Int64(w.wms))), ("page_index", .int(Int64(page))), ("page_size", .int(Int64(Self.inventoryLimit)))]
                    if let chunk { fields.append(("sku_ids", .string(chunk.joined(separator: ",")))) } else { fields.append(("ts", .int(0))) }
                    let data = try await call("/open/inventory/query", biz: .object(fields)) as? [String: Any]
                    for case let i as [String: Any] in data?["inventorys"] as? [Any] ?? [] {
                        guard let sku = Self.text(i["sku_id"]) else { continue }
                        let qty = Int64(Self.code(i["qty"] ?? 0))
                        let lock = Int64(Self.code(i["order_lock"] ?? 0))
                        levels.append(ErpStockLevel(material: sku, warehouse: w.code, onHand: qty, available: qty - lock))
                    }
                    guard data?["has_next"] as? Bool == true else { break }
                    page += 1
                }
            }
        }
        return levels
    }

    // MARK: Mapping

    func wmsCoID(_ warehouse: String) -> Int? {
        if let id = configuration.warehouses[warehouse] { return id }
        return Int(warehouse)
    }

    func wallClock(_ us: Int64) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: configuration.utcOffsetSeconds) ?? .gmt
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(us) / 1_000_000))
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    func uploadJSON(_ o: ErpSaleOrder) -> JSTJSON {
        let date = wallClock(o.paidAtUs)
        var fields: [(String, JSTJSON)] = [
            ("shop_id", .int(Int64(configuration.shopIDs[o.shopID] ?? configuration.shopID))),
            ("so_id", .string(o.reference)),
            ("order_date", .string(date)),
            ("shop_status", .string(configuration.shopStatus)),
            ("shop_buyer_id", .string("\(o.platform):\(o.shopID)")),
            ("pay_amount", .number(ErpAmount.yuan(o.totalFen))),
            ("freight", .number("0")),
            ("remark", .string(o.remark.isEmpty ? "LiveSync \(o.platform) \(o.platformOrderID)" : o.remark)),
            ("items", .array(o.lines.map { l -> JSTJSON in
                .object([
                    ("sku_id", .string(l.material)), ("shop_sku_id", .string(l.material)), ("name", .string(l.material)),
                    ("amount", .number(ErpAmount.yuan(l.unitPriceFen * l.quantity))), ("base_price", .number(ErpAmount.yuan(l.unitPriceFen))),
                    ("price", .number(ErpAmount.yuan(l.unitPriceFen))), ("qty", .int(l.quantity)), ("outer_oi_id", .string("\(o.reference)#\(l.lineNo)")),
                ])
            })),
            ("pay", .object([
                ("outer_pay_id", .string(o.reference)), ("pay_date", .string(date)), ("payment", .string(o.platform)),
                ("seller_account", .string(o.shopID)), ("buyer_account", .string(o.platform)), ("amount", .number(ErpAmount.yuan(o.totalFen))),
            ])),
        ]
        if let wms = wmsCoID(o.warehouse), wms != 0 { fields.insert(("wms_co_id", .int(Int64(wms))), at: 1) }
        if o.currency != "CNY" { fields.append(("currency", .string(o.currency))) }
        return .object(fields)
    }

    /// Jushuitan's order `status` (WaitPay, Delivering, Merged, Question, Split, WaitOuterSent,
    /// WaitConfirm, WaitFConfirm, Sent, Cancelled).
    static func state(_ status: String) -> ErpDocumentState {
        switch status {
        case "Cancelled": .cancelled
        case "Sent": .done
        default: .confirmed
        }
    }
}

/// JSON text written exactly as sent (the `biz` string is signed, and amounts must stay decimal yuan).
enum JSTJSON: Sendable {
    case string(String)
    /// A number literal as text (`"12.34"`).
    case number(String)
    case int(Int64)
    case bool(Bool)
    case array([JSTJSON])
    case object([(String, JSTJSON)])

    var text: String {
        var out = ""
        write(into: &out)
        return out
    }

    func write(into out: inout String) {
        switch self {
        case .string(let s): Self.quote(s, into: &out)
        case .number(let n): out += n
        case .int(let i): out += String(i)
        case .bool(let b): out += b ? "true" : "false"
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, (k, v)) in o.enumerated() {
                if i > 0 { out += "," }
                Self.quote(k, into: &out)
                out += ":"
                v.write(into: &out)
            }
            out += "}"
        }
    }

    static func quote(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        out += "\""
    }
}
