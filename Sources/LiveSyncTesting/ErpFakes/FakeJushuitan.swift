import Crypto
import ErpAdapters
import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// A local Jushuitan 聚水潭 open platform built from its documentation (openweb.jushuitan.com and
/// the ieu/jst-java SDK's request/response models): form-encoded calls signed
/// `md5(app_secret + sorted key+value)`, the `{code, msg, data}` envelope and its codes (10 bad
/// signature, 100 token invalid/expired, 140 timestamp outside 15 minutes, 199 throttled),
/// order upload/query/cancel and inventory query. Keeps orders by `so_id` (a re-upload updates,
/// never duplicates) and stock per `wms_co_id`. Listens on 127.0.0.1 only.
///
/// Endpoint names for `calls(_:)`: the request path (`/open/jushuitan/orders/upload`, …).
public final class FakeJushuitan: FakeErp, Sendable {
    public let kit = FakeErpKit()
    public let appKey: String
    public let appSecret: String
    /// The 店铺编号 orders may be uploaded into.
    public let shopIDs: Set<Int>

    struct Tokens { var access: String; var refresh: String; var retired: Set<String> }
    let tokens: Mutex<Tokens>

    public struct Order: Sendable, Equatable {
        public var oID: Int
        public var soID: String
        public var shopID: Int
        public var wmsCoID: Int
        /// Jushuitan's status: WaitConfirm (paid, awaiting review), WaitPay, Sent, Cancelled.
        public var status: String
        public var shopStatus: String
        public var payAmount: String
        public var items: [(sku: String, qty: Int64)]
        public var uploads: Int
        public static func == (a: Order, b: Order) -> Bool {
            a.oID == b.oID && a.soID == b.soID && a.status == b.status && a.uploads == b.uploads
        }
    }
    struct Store {
        var orders: [String: Order] = [:]
        var nextOID = 10_000_001
        /// `wms_co_id` → sku → physically on hand (0 is the main warehouse).
        var stock: [Int: [String: Int64]] = [:]
        var skus: Set<String> = []
    }
    let store = Mutex(Store())
    /// Requests refused for a bad sign, app_key, token or timestamp.
    public let refused = Atomic<Int>(0)
    public let refreshes = Atomic<Int>(0)

    public init(appKey: String = "dev-jst-app-key", appSecret: String = "dev-jst-app-secret", accessToken: String = "dev-jst-access-token",
                refreshToken: String = "dev-jst-refresh-token", shopIDs: Set<Int> = [10_001]) {
        self.appKey = appKey
        self.appSecret = appSecret
        self.shopIDs = shopIDs
        self.tokens = Mutex(Tokens(access: accessToken, refresh: refreshToken, retired: []))
    }

    public var accessToken: String { tokens.withLock { $0.access } }
    public var refreshToken: String { tokens.withLock { $0.refresh } }

    /// The current access token stops working (Jushuitan answers code 100) until refreshed.
    public func expireAccessToken() {
        tokens.withLock { $0.retired.insert($0.access); $0.access = "jst-at-" + UUID().uuidString }
    }
    /// The refresh token stops working too (the merchant must re-authorise).
    public func expireRefreshToken() { tokens.withLock { $0.refresh = "jst-rt-" + UUID().uuidString } }

    /// Registers an item (普通商品资料) with its stock in a warehouse (`wms_co_id` 0: main).
    public func addSKU(_ sku: String, onHand: Int64 = 0, wmsCoID: Int = 0) {
        store.withLock { s in
            s.skus.insert(sku)
            s.stock[wmsCoID, default: [:]][sku] = onHand
        }
    }

    public var orders: [String: Order] { store.withLock { $0.orders } }
    /// Marks an order shipped (Sent): it can no longer be cancelled.
    public func ship(soID: String) { store.withLock { $0.orders[soID]?.status = "Sent" } }

    /// Units of open (not cancelled, not sent) orders per sku in a warehouse: Jushuitan's `order_lock`.
    func orderLock(_ s: Store, wms: Int, sku: String) -> Int64 {
        var units: Int64 = 0
        for o in s.orders.values where (o.wmsCoID == wms || wms == 0) && o.status != "Cancelled" && o.status != "Sent" {
            for item in o.items where item.sku == sku { units += item.qty }
        }
        return units
    }

    // MARK: Routes

    public func routes(_ router: Router<BasicRequestContext>) {
        router.post("/openWeb/auth/refreshToken") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            self.kit.count("/openWeb/auth/refreshToken")
            await self.kit.pause()
            let f = FakeErpKit.form(body)
            guard f["app_key"] == self.appKey, f["sign"] == Self.sign(f, appSecret: self.appSecret) else {
                self.refused.add(1, ordering: .relaxed)
                return FakeErpKit.json(["code": 10, "msg": "验证失败！无效签名", "data": NSNull()])
            }
            guard f["grant_type"] == "refresh_token", f["scope"] == "all", f["charset"] == "utf-8", let ts = f["timestamp"], self.fresh(ts) else {
                return FakeErpKit.json(["code": 140, "msg": "参数错误：grant_type=refresh_token、scope=all、charset=utf-8 与有效的 timestamp 必填", "data": NSNull()])
            }
            let answer: [String: Any]? = self.tokens.withLock { t in
                guard f["refresh_token"] == t.refresh else { return nil }
                t.retired.insert(t.access)
                t.access = "jst-at-" + UUID().uuidString
                t.refresh = "jst-rt-" + UUID().uuidString
                return ["access_token": t.access, "expires_in": 2_592_000, "refresh_token": t.refresh, "scope": "all"]
            }
            guard let answer else { return FakeErpKit.json(["code": 100, "msg": "refresh_token无效或已过期，请重新授权", "data": NSNull()]) }
            self.refreshes.add(1, ordering: .relaxed)
            return FakeErpKit.json(["code": 0, "msg": "执行成功", "data": answer])
        }
        business(router, "/open/jushuitan/orders/upload") { self.upload($0) }
        business(router, "/open/orders/single/query") { self.query($0) }
        business(router, "/open/jushuitan/orderbyoid/cancel") { self.cancel($0) }
        business(router, "/open/inventory/query") { self.inventory($0) }
    }

    /// Jushuitan's check, written here apart from the adapter's: md5 of the secret followed by
    /// every field but `sign` as key+value in ascending key order, lower-case hex.
    static func sign(_ fields: [String: String], appSecret: String) -> String {
        let text = fields.filter { $0.key != "sign" }.sorted { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }
            .reduce(appSecret) { $0 + $1.key + $1.value }
        return Insecure.MD5.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    func fresh(_ timestamp: String) -> Bool {
        guard let ts = Double(timestamp) else { return false }
        return abs(Date().timeIntervalSince1970 - ts) <= 15 * 60
    }

    /// A business call: the common parameters checked as Jushuitan does, then the queued failures,
    /// then `handler` with the parsed `biz`.
    func business(_ router: Router<BasicRequestContext>, _ path: String, _ handler: @escaping @Sendable (Any) -> [String: Any]) {
        router.post(RouterPath(stringLiteral: path)) { request, _ in
            let body = try await request.body.collect(upTo: 64 << 20)
            self.kit.count(path)
            await self.kit.pause()
            let f = FakeErpKit.form(body)
            guard f["app_key"] == self.appKey, let sign = f["sign"], sign == Self.sign(f, appSecret: self.appSecret) else {
                self.refused.add(1, ordering: .relaxed)
                return FakeErpKit.json(["code": 10, "msg": "验证失败！无效签名", "data": NSNull()])
            }
            let (valid, retired) = self.tokens.withLock { ($0.access, $0.retired) }
            guard let token = f["access_token"], token == valid else {
                self.refused.add(1, ordering: .relaxed)
                _ = retired
                return FakeErpKit.json(["code": 100, "msg": "验证失败！无效的access_token或access_token已过期", "data": NSNull()])
            }
            guard let ts = f["timestamp"], self.fresh(ts) else {
                self.refused.add(1, ordering: .relaxed)
                return FakeErpKit.json(["code": 140, "msg": "验证失败！无效的timestamp，请求最大时间误差15分钟", "data": NSNull()])
            }
            guard f["charset"] == "utf-8", f["version"] == "2" else {
                return FakeErpKit.json(["code": 130, "msg": "charset=utf-8 与 version=2 必填", "data": NSNull()])
            }
            switch self.kit.nextFailure() {
            case .throttle?: return FakeErpKit.json(["code": 199, "msg": "调用频次超过限制!请稍后再试", "data": NSNull()])
            case .http(let status)?: return FakeErpKit.text("upstream unavailable", status: .init(code: status))
            case .refuse(let code, let message)?: return FakeErpKit.json(["code": Int(code) ?? 150, "msg": message, "data": NSNull()])
            case .serializationFailure?, nil: break
            }
            guard let bizText = f["biz"], let biz = try? JSONSerialization.jsonObject(with: Data(bizText.utf8)) else {
                return FakeErpKit.json(["code": 130, "msg": "biz 不是合法的 JSON", "data": NSNull()])
            }
            return FakeErpKit.json(handler(biz))
        }
    }

    static func fail(_ message: String) -> [String: Any] { ["code": 130, "msg": message, "data": NSNull()] }
    static func int(_ v: Any?) -> Int? { (v as? Int) ?? (v as? NSNumber)?.intValue ?? (v as? String).flatMap { Int($0) } }
    static func decimalText(_ v: Any?) -> String? {
        if let n = v as? NSNumber { return n.stringValue }
        return nil
    }

    // MARK: Order upload

    func upload(_ biz: Any) -> [String: Any] {
        guard let list = biz as? [[String: Any]], !list.isEmpty else { return Self.fail("biz 必须是订单数组") }
        var datas: [[String: Any]] = []
        for o in list {
            let so = o["so_id"] as? String ?? ""
            func refuse(_ msg: String) { datas.append(["o_id": 0, "so_id": so, "issuccess": false, "msg": msg]) }
            guard !so.isEmpty, so.count <= 50 else { refuse("so_id 必填且长度<=50"); continue }
            guard let shop = Self.int(o["shop_id"]), shopIDs.contains(shop) else { refuse("店铺编号不存在"); continue }
            guard let date = o["order_date"] as? String, date.count == 19 else { refuse("order_date 格式应为 yyyy-MM-dd HH:mm:ss"); continue }
            guard let shopStatus = o["shop_status"] as? String,
                  ["WAIT_BUYER_PAY", "WAIT_SELLER_SEND_GOODS", "WAIT_BUYER_CONFIRM_GOODS", "TRADE_FINISHED", "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO"].contains(shopStatus)
            else { refuse("shop_status 无效"); continue }
            guard let pay = Self.decimalText(o["pay_amount"]) else { refuse("pay_amount 必填"); continue }
            guard let items = o["items"] as? [[String: Any]], !items.isEmpty else { refuse("items 必填"); continue }
            var parsed: [(sku: String, qty: Int64)] = []
            var problem: String?
            for i in items {
                guard let sku = i["sku_id"] as? String, !sku.isEmpty, let qty = Self.int(i["qty"]), qty > 0, i["shop_sku_id"] is String,
                      Self.decimalText(i["amount"]) != nil, Self.decimalText(i["base_price"]) != nil else {
                    problem = "商品明细 sku_id、shop_sku_id、amount、base_price、qty 必填"
                    break
                }
                guard store.withLock({ $0.skus.contains(sku) }) else { problem = "商品编码[\(sku)]不存在"; break }
                parsed.append((sku, Int64(qty)))
            }
            if let problem { refuse(problem); continue }
            let wms = Self.int(o["wms_co_id"]) ?? 0
            let paid = (o["pay"] as? [String: Any]).flatMap { Self.decimalText($0["amount"]) } == pay
            let status = switch shopStatus {
            case "TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO": "Cancelled"
            case "WAIT_SELLER_SEND_GOODS": paid ? "WaitConfirm" : "WaitPay"
            case "WAIT_BUYER_PAY": "WaitPay"
            default: "Sent"
            }
            let oid: Int = store.withLock { s in
                if var existing = s.orders[so] {  // so_id is unique per shop: a re-upload updates the order
                    existing.uploads += 1
                    existing.shopStatus = shopStatus
                    if existing.status != "Sent" { existing.status = status }
                    s.orders[so] = existing
                    return existing.oID
                }
                let oid = s.nextOID
                s.nextOID += 1
                s.orders[so] = Order(oID: oid, soID: so, shopID: shop, wmsCoID: wms, status: status, shopStatus: shopStatus, payAmount: pay, items: parsed, uploads: 1)
                return oid
            }
            datas.append(["o_id": oid, "so_id": so, "issuccess": true, "msg": ""])
        }
        return ["code": 0, "msg": "执行成功", "data": ["datas": datas]]
    }

    // MARK: Order query

    func query(_ biz: Any) -> [String: Any] {
        guard let q = biz as? [String: Any] else { return Self.fail("biz 必须是对象") }
        let soIDs = q["so_ids"] as? [String] ?? []
        let oIDs = (q["o_ids"] as? [Any] ?? []).compactMap { Self.int($0) }
        guard !soIDs.isEmpty || !oIDs.isEmpty || q["modified_begin"] != nil || q["start_ts"] != nil else {
            return Self.fail("线上单号、内部单号与时间条件不能同时为空")
        }
        guard soIDs.count <= 20 else { return Self.fail("so_ids 最大限制20条") }
        let pageSize = min(Self.int(q["page_size"]) ?? 30, 100)
        let pageIndex = max(Self.int(q["page_index"]) ?? 1, 1)
        let all = store.withLock { s in
            s.orders.values.filter { soIDs.contains($0.soID) || oIDs.contains($0.oID) }.sorted { $0.oID < $1.oID }
        }
        let page = all.dropFirst((pageIndex - 1) * pageSize).prefix(pageSize)
        let orders = page.map { o -> [String: Any] in
            ["o_id": o.oID, "so_id": o.soID, "shop_id": o.shopID, "status": o.status, "shop_status": o.shopStatus, "wms_co_id": o.wmsCoID,
             "pay_amount": Double(o.payAmount) ?? 0,
             "items": o.items.map { ["sku_id": $0.sku, "qty": $0.qty, "o_id": o.oID] as [String: Any] }]
        }
        return ["code": 0, "msg": "执行成功", "data": [
            "page_index": pageIndex, "page_size": pageSize, "data_count": all.count, "page_count": (all.count + pageSize - 1) / pageSize,
            "has_next": pageIndex * pageSize < all.count, "orders": orders,
        ] as [String: Any]]
    }

    // MARK: Cancel by o_id

    func cancel(_ biz: Any) -> [String: Any] {
        guard let q = biz as? [String: Any], let raw = q["o_ids"] as? [Any], !raw.isEmpty, q["cancel_type"] is String else {
            return Self.fail("o_ids 与 cancel_type 必填")
        }
        let ids = raw.compactMap { Self.int($0) }
        guard ids.count == raw.count, ids.count <= 50 else { return Self.fail("o_ids 一次最大支持50条") }
        // All or nothing (inferred: the call answers one code for the whole list).
        return store.withLock { s -> [String: Any] in
            for id in ids {
                guard let o = s.orders.values.first(where: { $0.oID == id }) else { return Self.fail("订单[\(id)]不存在") }
                if o.status == "Sent" { return ["code": 150, "msg": "订单[\(id)]已发货，不允许取消", "data": NSNull()] }
            }
            for (so, o) in s.orders where ids.contains(o.oID) { s.orders[so]?.status = "Cancelled" }
            return ["code": 0, "msg": "执行成功", "data": "取消成功"]
        }
    }

    // MARK: Inventory

    func inventory(_ biz: Any) -> [String: Any] {
        guard let q = biz as? [String: Any] else { return Self.fail("biz 必须是对象") }
        let wms = Self.int(q["wms_co_id"]) ?? 0
        let pageSize = Self.int(q["page_size"]) ?? 30
        guard pageSize <= 100 else { return Self.fail("page_size 最大不超过100") }
        let pageIndex = max(Self.int(q["page_index"]) ?? 1, 1)
        let skuFilter = (q["sku_ids"] as? String).map { $0.split(separator: ",").map(String.init) }
        guard skuFilter != nil || q["ts"] != nil || q["modified_begin"] != nil else { return Self.fail("商品编码与修改时间不能同时为空") }
        if let skuFilter, skuFilter.count > 100 { return Self.fail("sku_ids 最大不超过100个") }
        return store.withLock { s -> [String: Any] in
            var levels: [String: Int64] = [:]
            if wms == 0 { for (_, w) in s.stock { for (k, v) in w { levels[k, default: 0] += v } } } else { levels = s.stock[wms] ?? [:] }
            let skus = levels.keys.filter { skuFilter?.contains($0) ?? true }.sorted()
            let page = skus.dropFirst((pageIndex - 1) * pageSize).prefix(pageSize)
            let rows = page.map { sku -> [String: Any] in
                ["sku_id": sku, "i_id": sku, "qty": levels[sku]!, "order_lock": orderLock(s, wms: wms, sku: sku), "pick_lock": 0, "virtual_qty": 0,
                 "purchase_qty": 0, "return_qty": 0, "in_qty": 0, "defective_qty": 0, "name": sku, "modified": "2026-01-01 00:00:00", "ts": 1]
            }
            return ["code": 0, "msg": "执行成功", "data": [
                "page_index": pageIndex, "page_size": pageSize, "has_next": pageIndex * pageSize < skus.count, "inventorys": rows,
            ] as [String: Any]]
        }
    }

    /// Runs the fake on 127.0.0.1 (an ephemeral port) until the returned task is cancelled.
    public func serve(port: Int = 0) async throws -> (url: String, task: Task<Void, Error>) {
        let router = Router()
        routes(router)
        return try await LocalServer.serve(router, label: "livesync.fake-jushuitan", serverName: "livesync-fake-jushuitan", port: port)
    }
}
