import Worker
import Kafka
import Connectors
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Ingest
import Model
import NIOCore
import Synchronization

/// The platforms' side of the protocols, built from their documentation: signed (and for
/// WeChat and Kuaishou encrypted) push requests, and order-detail responses in each platform's
/// shape. The replay producer uses it to drive ingest through the real parsing path, and the
/// tests use it with `FakePlatformAPI` as the local stand-in for the platforms' APIs.
public struct PlatformEmulator: Sendable {
    public var credentials: PlatformCredentials

    public init(credentials: PlatformCredentials) { self.credentials = credentials }

    /// A signed push announcing `kind` for `platformOrderID` (message id `messageID`).
    public func push(_ platform: Platform, kind: EventKind, shopID: String, platformOrderID: String, messageID: String,
                     refundID: String? = nil, amountFen: Int64 = 0, timestamp: Int64 = Int64(Date().timeIntervalSince1970)) throws -> WebhookRequest {
        let c = credentials
        switch platform {
        case .douyin:
            let tag = switch kind {
            case .paid: "101"
            case .cancelled: "106"
            case .addressChanged: "105"
            case .refundRequested: "200"
            case .refundApproved: "206"
            case .returnShipped: "203"
            case .ignored: "102"
            }
            var data: [String: Any] = ["p_id": Int64(platformOrderID) as Any? ?? platformOrderID, "shop_id": Int64(shopID) as Any? ?? shopID,
                                       "order_status": 2, "pay_time": timestamp]
            if let refundID { data["aftersale_id"] = refundID; data["refund_amount"] = amountFen }
            let body = Array(JSON.encode([["tag": tag, "msg_id": messageID, "data": JSON.encode(data)]]).utf8)
            return WebhookRequest(headers: ["app-id": c.douyinAppKey, "event-sign": DouyinConnector.sign(body: body, appKey: c.douyinAppKey, appSecret: c.douyinAppSecret),
                                            "Content-Type": "application/json"], body: body)
        case .kuaishou:
            let (event, status): (String, Int) = switch kind {
            case .paid: ("kwaishop_order_paySuccess", 30)
            case .cancelled: ("kwaishop_order_orderFail", 80)
            case .addressChanged: ("kwaishop_order_addressChange", 30)
            case .refundRequested: ("kwaishop_aftersales_addRefund", 10)
            case .refundApproved: ("kwaishop_aftersales_updateRefund", 60)
            case .returnShipped: ("kwaishop_aftersales_updateRefund", 40)
            case .ignored: ("kwaishop_order_delivering", 40)
            }
            var info: [String: Any] = ["oid": Int64(platformOrderID) as Any? ?? platformOrderID, "sellerId": Int64(shopID) as Any? ?? shopID,
                                       "status": status, "updateTime": timestamp * 1000]
            if let refundID { info["refundId"] = refundID; info["refundFee"] = amountFen; info["orderId"] = info["oid"] }
            let msg: [String: Any] = ["eventId": "e-\(messageID)", "msgId": messageID, "bizId": info["oid"]!, "userId": info["sellerId"]!,
                                      "appKey": c.kuaishouAppKey, "event": event, "info": JSON.encode(info), "createTime": timestamp * 1000, "test": false]
            let connector = try KuaishouConnector(appKey: c.kuaishouAppKey, messageSecret: c.kuaishouMessageSecret)
            return WebhookRequest(headers: ["Content-Type": "text/plain"], body: Array(connector.encrypt(Array(JSON.encode(msg).utf8)).utf8))
        case .wechatChannels:
            var msg: [String: Any] = ["ToUserName": "gh_livesync", "FromUserName": "o-buyer", "CreateTime": timestamp, "MsgType": "event"]
            switch kind {
            case .paid: msg["Event"] = "channels_ec_order_pay"; msg["order_info"] = ["order_id": platformOrderID, "pay_time": timestamp]
            case .cancelled: msg["Event"] = "channels_ec_order_cancel"; msg["order_info"] = ["order_id": platformOrderID, "cancel_type": 1]
            case .addressChanged: msg["Event"] = "channels_ec_order_ext_info_update"; msg["order_info"] = ["order_id": platformOrderID, "type": 2]
            case .refundRequested, .refundApproved, .returnShipped, .ignored:
                let status = switch kind {
                case .refundRequested: "MERCHANT_PROCESSING"
                case .refundApproved: "MERCHANT_REFUND_SUCCESS"
                case .returnShipped: "MERCHANT_WAIT_RECEIPT"
                default: "USER_CANCELD"
                }
                msg["Event"] = "channels_ec_aftersale_update"
                msg["finder_shop_aftersale_status_update"] = ["status": status, "after_sale_order_id": refundID ?? "AS\(platformOrderID)", "order_id": platformOrderID]
            }
            let crypto = try WeChatMessageCrypto(token: c.wechatToken, encodingAESKey: c.wechatEncodingAESKey, appID: c.wechatAppID)
            let encrypted = crypto.encrypt(Array(JSON.encode(msg).utf8))
            let nonce = String(UInt32.random(in: 1...UInt32.max))
            let ts = String(timestamp)
            return WebhookRequest(
                query: ["timestamp": ts, "nonce": nonce, "encrypt_type": "aes",
                        "signature": WeChatMessageCrypto.signature([c.wechatToken, ts, nonce]),
                        "msg_signature": WeChatMessageCrypto.signature([c.wechatToken, ts, nonce, encrypted])],
                headers: ["Content-Type": "application/json"], body: Array(JSON.encode(["ToUserName": "gh_livesync", "Encrypt": encrypted]).utf8))
        default:
            let (type, data): (Int, [String: Any]) = switch kind {
            case .paid: (1, ["order_id": platformOrderID, "order_status": "AWAITING_SHIPMENT", "update_time": timestamp])
            case .cancelled: (1, ["order_id": platformOrderID, "order_status": "CANCEL", "update_time": timestamp])
            case .addressChanged: (3, ["order_id": platformOrderID, "update_time": timestamp])
            case .refundRequested: (12, ["order_id": platformOrderID, "return_id": refundID ?? "R\(platformOrderID)", "return_status": "RETURN_OR_REFUND_REQUEST_PENDING"])
            case .refundApproved: (12, ["order_id": platformOrderID, "return_id": refundID ?? "R\(platformOrderID)", "return_status": "RETURN_OR_REFUND_REQUEST_COMPLETE"])
            case .returnShipped: (12, ["order_id": platformOrderID, "return_id": refundID ?? "R\(platformOrderID)", "return_status": "BUYER_SHIPPED_ITEM"])
            case .ignored: (4, ["order_id": platformOrderID, "package_id": "P1"])
            }
            let body = Array(JSON.encode(["type": type, "tts_notification_id": messageID, "shop_id": shopID, "timestamp": timestamp, "data": data]).utf8)
            return WebhookRequest(headers: ["Authorization": TikTokShopConnector.sign(body: body, appKey: c.tiktokAppKey, appSecret: c.tiktokAppSecret),
                                            "Content-Type": "application/json"], body: body)
        }
    }

    /// The order-detail response `platform`'s API returns for `order`, in the shape the default
    /// `FieldMapping` reads (and the platform documents).
    public static func detail(_ platform: Platform, order o: GenericWebhook.OrderJSON, anchorID: String = "anchor-1",
                              promotionFen: Int64 = 0, couponFen: Int64 = 0) -> [String: Any] {
        let paid = (o.paid_at_ms ?? Int64(Date().timeIntervalSince1970 * 1000)) / 1000
        switch platform {
        case .douyin:
            return ["code": 10000, "msg": "success", "data": ["shop_order_detail": [
                "order_id": o.order_id, "pay_time": paid, "buyer_words": o.remark ?? "", "post_receiver": o.buyer.name, "post_tel": o.buyer.phone,
                "post_addr": ["province": ["name": ""], "city": ["name": ""], "town": ["name": ""], "street": ["name": ""], "detail": o.buyer.address],
                "promotion_amount": promotionFen, "promotion_platform_amount": couponFen,
                "sku_order_list": o.lines.map { l -> [String: Any] in
                    ["code": l.sku, "item_num": l.quantity, "origin_amount": l.unit_price_fen, "author_id": anchorID,
                     "inventory_list": [["warehouse_id": l.warehouse ?? ""]]]
                }] as [String: Any]]]
        case .kuaishou:
            // Kuaishou's detail carries one item per order; multi-line orders arrive as separate orders.
            let l = o.lines[0]
            return ["result": 1, "data": [
                "orderBaseInfo": ["oid": o.order_id, "payTime": paid * 1000, "remark": o.remark ?? "", "discountFee": promotionFen,
                                  "couponFee": couponFen, "carrierId": anchorID] as [String: Any],
                "orderItemInfo": ["skuNick": l.sku, "num": l.quantity, "price": l.unit_price_fen] as [String: Any],
                "orderAddress": ["consignee": o.buyer.name, "mobile": o.buyer.phone, "province": "", "city": "", "district": "", "address": o.buyer.address],
            ] as [String: Any]]
        case .wechatChannels:
            return ["errcode": 0, "errmsg": "ok", "order": ["order_id": o.order_id, "order_detail": [
                // The fake's product and SKU ids are derived from the merchant SKU (the real ones are the shop's numeric ids).
                "product_infos": o.lines.map { ["product_id": "P-\($0.sku)", "sku_id": "S-\($0.sku)", "sku_code": $0.sku, "sku_cnt": $0.quantity,
                                                "sale_price": $0.unit_price_fen] as [String: Any] },
                "pay_info": ["pay_time": paid],
                "price_info": ["discounted_price": promotionFen, "merchant_discounted_price": couponFen],
                "delivery_info": ["address_info": ["user_name": o.buyer.name, "tel_number": o.buyer.phone, "province_name": "", "city_name": "",
                                                   "county_name": "", "detail_info": o.buyer.address]],
                "ext_info": ["customer_notes": o.remark ?? ""],
                "source_infos": [["account_id": anchorID]],
            ] as [String: Any]] as [String: Any]]
        default:
            func yuan(_ fen: Int64) -> String { String(format: "%d.%02d", fen / 100, fen % 100) }
            var items: [[String: Any]] = []
            for l in o.lines { for _ in 0..<l.quantity { items.append(["seller_sku": l.sku, "sale_price": yuan(l.unit_price_fen)]) } }
            return ["code": 0, "message": "Success", "data": ["orders": [[
                "id": o.order_id, "status": "AWAITING_SHIPMENT", "paid_time": paid, "buyer_message": o.remark ?? "",
                "recipient_address": ["name": o.buyer.name, "phone_number": o.buyer.phone, "full_address": o.buyer.address],
                "payment": ["currency": o.currency, "seller_discount": yuan(promotionFen), "platform_discount": yuan(couponFen)],
                "line_items": items,
            ] as [String: Any]]]]
        }
    }
}

/// Every secret of the four push platforms (and of JD and Pinduoduo's write-back), as the merchant configures them.
public struct PlatformCredentials: Sendable {
    public var douyinAppKey: String
    public var douyinAppSecret: String
    public var kuaishouAppKey: String
    public var kuaishouSignSecret: String
    /// Base64 AES key ("消息秘钥").
    public var kuaishouMessageSecret: String
    public var wechatToken: String
    /// The 43-character EncodingAESKey.
    public var wechatEncodingAESKey: String
    public var wechatAppID: String
    public var tiktokAppKey: String
    public var tiktokAppSecret: String
    public var jdAppKey: String
    public var jdAppSecret: String
    /// Pinduoduo's `client_id` and `client_secret`.
    public var pinduoduoClientID: String
    public var pinduoduoClientSecret: String

    public init(douyinAppKey: String, douyinAppSecret: String, kuaishouAppKey: String, kuaishouSignSecret: String, kuaishouMessageSecret: String,
                wechatToken: String, wechatEncodingAESKey: String, wechatAppID: String, tiktokAppKey: String, tiktokAppSecret: String,
                jdAppKey: String = "", jdAppSecret: String = "", pinduoduoClientID: String = "", pinduoduoClientSecret: String = "") {
        self.jdAppKey = jdAppKey
        self.jdAppSecret = jdAppSecret
        self.pinduoduoClientID = pinduoduoClientID
        self.pinduoduoClientSecret = pinduoduoClientSecret
        self.douyinAppKey = douyinAppKey
        self.douyinAppSecret = douyinAppSecret
        self.kuaishouAppKey = kuaishouAppKey
        self.kuaishouSignSecret = kuaishouSignSecret
        self.kuaishouMessageSecret = kuaishouMessageSecret
        self.wechatToken = wechatToken
        self.wechatEncodingAESKey = wechatEncodingAESKey
        self.wechatAppID = wechatAppID
        self.tiktokAppKey = tiktokAppKey
        self.tiktokAppSecret = tiktokAppSecret
    }

    /// Fixed development credentials (`livesync dev`, tests, replay). Never use them for a real shop.
    public static let development = PlatformCredentials(
        douyinAppKey: "7000000000000000001", douyinAppSecret: "dev-douyin-secret",
        kuaishouAppKey: "ks700000000000000001", kuaishouSignSecret: "dev-kuaishou-sign-secret",
        kuaishouMessageSecret: "ZGV2LWt1YWlzaG91LW1zZy1rZXktMzJieXRlcyEhISE=",
        wechatToken: "devtoken", wechatEncodingAESKey: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", wechatAppID: "wxdev00000000001",
        tiktokAppKey: "6devtiktokkey", tiktokAppSecret: "dev-tiktok-secret",
        jdAppKey: "devjdappkey", jdAppSecret: "dev-jd-secret", pinduoduoClientID: "devpddclientid", pinduoduoClientSecret: "dev-pdd-secret")
}

/// A local fake of the four platforms' order-detail APIs and of the stock push and shipment
/// write-back of Douyin, Kuaishou, WeChat Channels, TikTok Shop, JD and Pinduoduo, built from
/// their documentation: it checks each request's signature (and token) exactly as the platform
/// does, checks the write-back bodies, serves the orders registered with `put`, and answers the
/// failures queued with `failNext` (throttling, refusals) before succeeding. Listens on 127.0.0.1 only.
public final class FakePlatformAPI: Sendable {
    public let credentials: PlatformCredentials
    /// The access token the fake accepts now (for every shop and platform); see `expireAccessToken`.
    public var accessToken: String { tokenState.withLock { $0.valid ?? "" } }
    /// The refresh token that renews it now.
    public var refreshToken: String { tokenState.withLock { $0.refresh } }
    let tokenState: Mutex<(valid: String?, refresh: String, retired: Set<String>, generation: Int)>
    /// Token refreshes the fake granted, and calls it answered "access token expired".
    public let refreshes = Atomic<Int>(0)
    public let expiredAnswers = Atomic<Int>(0)
    /// Kuaishou app secret the fake's `oauth2/refresh_token` accepts.
    public let kuaishouAppSecret = "dev-kuaishou-app-secret"
    private let orders = Mutex<[String: [UInt8]]>([:])
    /// Requests refused for a bad signature or token (tests assert it stays 0).
    public let refused = Atomic<Int>(0)
    public let served = Atomic<Int>(0)
    /// WeChat app secret the fake's `stable_token` accepts, and how many tokens it issued.
    public let wechatAppSecret = "dev-wechat-secret"
    public let tokensIssued = Atomic<Int>(0)

    /// A shipment write-back the fake accepted (Douyin `order.logisticsAdd`, and the other platforms' calls).
    public struct WriteBack: Sendable, Equatable {
        public var platform: Platform
        public var platformOrderID: String
        public var carrier: String
        public var trackingNumber: String
        public init(platform: Platform = .douyin, platformOrderID: String, carrier: String, trackingNumber: String) {
            self.platform = platform
            self.platformOrderID = platformOrderID
            self.carrier = carrier
            self.trackingNumber = trackingNumber
        }
    }
    let writeBackLog = Mutex<[WriteBack]>([])
    private let stockLevels = Mutex<[String: Int64]>([:])

    /// An answer the fake gives instead of success, in the platform's own shape.
    public enum Failure: Sendable, Equatable {
        /// The platform's throttling answer (see each route).
        case throttle
        /// The platform refuses the request with its code and message.
        case refuse(code: Int64, message: String)
    }
    let failures = Mutex<[Platform: [Failure]]>([:])
    /// A write-back call the fake accepted: platform, API (method or path) and the business parameters as text.
    public struct OutboundCall: Sendable, Equatable {
        public var platform: Platform
        public var api: String
        public var params: [String: String]
    }
    let outboundLog = Mutex<[OutboundCall]>([])
    /// Channel stock of the non-Douyin platforms by `<platform slug>:<channel SKU>`.
    let channelStockLevels = Mutex<[String: Int64]>([:])
    /// Every write-back accepted, in arrival order (repeats included: tests assert exactly once).
    public var writeBacks: [WriteBack] { writeBackLog.withLock { $0 } }
    /// The latest stock pushed per Douyin merchant code (`sku.syncStock`).
    public var stock: [String: Int64] { stockLevels.withLock { $0 } }
    /// The other platforms' channel stock by `<platform slug>:<channel SKU>` (`kuaishou:5100:88`,
    /// `wechat:P1:S1`, `tiktok:17:18`, `jd:2001`, `pinduoduo:9001:77`).
    public var channelStock: [String: Int64] { channelStockLevels.withLock { $0 } }
    /// Sets a channel SKU's stock (what Kuaishou's `open.item.sku.list.get` reports before a push).
    public func setChannelStock(_ platform: Platform, sku: String, _ quantity: Int64) {
        channelStockLevels.withLock { $0["\(platform.slug):\(sku)"] = quantity }
    }
    /// Every write-back call accepted (not Douyin's), in arrival order.
    public var outboundCalls: [OutboundCall] { outboundLog.withLock { $0 } }
    /// Queues answers `platform`'s write-back routes give, in order, before they succeed again.
    public func failNext(_ platform: Platform, _ answers: [Failure]) {
        failures.withLock { $0[platform, default: []].append(contentsOf: answers) }
    }

    public init(credentials: PlatformCredentials = .development, accessToken: String = "dev-access-token") {
        self.credentials = credentials
        self.tokenState = Mutex((accessToken, "dev-refresh-token", [], 0))
    }

    /// Registers the detail response for an order.
    public func put(_ platform: Platform, platformOrderID: String, response: [String: Any]) {
        let bytes = Array(JSON.encode(response).utf8)
        orders.withLock { $0["\(platform.slug):\(platformOrderID)"] = bytes }
    }

    func lookup(_ platform: Platform, _ id: String) -> [UInt8]? { orders.withLock { $0["\(platform.slug):\(id)"] } }

    /// Registration path: `POST` a JSON array of `{"platform": slug, "order_id": id, "response": {…}}`
    /// (how a replay in another process tells `livesync dev`'s fake which orders exist).
    public static let registrationPath = "/_livesync/fake/orders"

    /// The fake's routes on `router` (mount it on its own Application).
    public func routes(_ router: Router<BasicRequestContext>) {
        let c = credentials
        tokenRoutes(router)
        router.post(RouterPath(stringLiteral: Self.registrationPath)) { request, _ in
            let body = try await request.body.collect(upTo: 256 << 20)
            guard let entries = try? JSON.array(Array(body.readableBytesView)) else { return Self.status(.badRequest, "body must be a JSON array") }
            var stored = 0
            for case let e as [String: Any] in entries {
                guard let slug = e["platform"] as? String, let id = JSON.string(e["order_id"]), let response = e["response"] as? [String: Any],
                      let platform = Platform.allCases.first(where: { $0.slug == slug }) else { continue }
                self.put(platform, platformOrderID: id, response: response)
                stored += 1
            }
            return Self.status(.ok, #"{"stored":\#(stored)}"#)
        }
        router.get("/order/orderDetail") { request, _ in
            let q = Self.query(request)
            if self.retired(q["access_token"]) { return self.expired(.douyin) }
            guard q["access_token"] == self.accessToken, let pj = q["param_json"], let ts = q["timestamp"], let method = q["method"],
                  q["sign"] == APISigning.douyin(appKey: c.douyinAppKey, appSecret: c.douyinAppSecret, method: method, paramJSON: pj, timestamp: ts) else {
                return self.refuse(#"{"code":40004,"msg":"sign or access_token invalid"}"#)
            }
            let id = (try? JSON.object(Array(pj.utf8))).flatMap { JSON.string($0["shop_order_id"]) } ?? ""
            return self.serve(self.lookup(.douyin, id), missing: #"{"code":50002,"msg":"order not found"}"#)
        }
        // Douyin outbound: stock push and shipment write-back, signed as every Douyin call.
        for method in ["sku.syncStock", "order.logisticsAdd"] {
            router.get(RouterPath(stringLiteral: "/" + method.replacingOccurrences(of: ".", with: "/"))) { request, _ in
                let q = Self.query(request)
                guard q["access_token"] == self.accessToken, q["method"] == method, let pj = q["param_json"], let ts = q["timestamp"],
                      q["sign"] == APISigning.douyin(appKey: c.douyinAppKey, appSecret: c.douyinAppSecret, method: method, paramJSON: pj, timestamp: ts),
                      let p = try? JSON.object(Array(pj.utf8)) else {
                    return self.refuse(#"{"code":40004,"msg":"sign or access_token invalid"}"#)
                }
                if method == "sku.syncStock" {
                    guard let code = JSON.string(p["code"]), let n = JSON.int(p["stock_num"]), n >= 0 else {
                        return Self.json(#"{"code":40001,"msg":"code and stock_num >= 0 required"}"#)
                    }
                    self.stockLevels.withLock { $0[code] = n }
                } else {
                    guard let order = JSON.string(p["order_id"]), let company = JSON.string(p["company_code"]), let tracking = JSON.string(p["logistics_code"]),
                          !order.isEmpty, !company.isEmpty, !tracking.isEmpty else {
                        return Self.json(#"{"code":40001,"msg":"order_id, company_code and logistics_code required"}"#)
                    }
                    self.writeBackLog.withLock { $0.append(WriteBack(platformOrderID: order, carrier: company, trackingNumber: tracking)) }
                }
                return Self.json(#"{"code":10000,"msg":"success","data":{}}"#)
            }
        }
        router.get("/open/order/detail") { request, _ in
            let q = Self.query(request)
            if self.retired(q["access_token"]) { return self.expired(.kuaishou) }
            guard q["access_token"] == self.accessToken, let sign = q["sign"], sign == APISigning.kuaishou(params: q, signSecret: c.kuaishouSignSecret) else {
                return self.refuse(#"{"result":28,"error_msg":"sign invalid"}"#)
            }
            let id = (try? JSON.object(Array((q["param"] ?? "").utf8))).flatMap { JSON.string($0["oid"]) } ?? ""
            return self.serve(self.lookup(.kuaishou, id), missing: #"{"result":802000,"error_msg":"order not found"}"#)
        }
        router.post("/cgi-bin/stable_token") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 16)
            let obj = (try? JSON.object(Array(body.readableBytesView))) ?? [:]
            guard JSON.string(obj["grant_type"]) == "client_credential", JSON.string(obj["appid"]) == c.wechatAppID,
                  JSON.string(obj["secret"]) == self.wechatAppSecret else {
                return self.refuse(#"{"errcode":40125,"errmsg":"invalid appsecret"}"#)
            }
            self.tokensIssued.add(1, ordering: .relaxed)
            return Self.json(#"{"access_token":"\#(self.accessToken)","expires_in":7200}"#)
        }
        router.post("/channels/ec/order/get") { request, _ in
            let q = Self.query(request)
            guard q["access_token"] == self.accessToken else { return self.refuse(#"{"errcode":42001,"errmsg":"access_token expired"}"#) }
            let body = try await request.body.collect(upTo: 1 << 16)
            let id = (try? JSON.object(Array(body.readableBytesView))).flatMap { JSON.string($0["order_id"]) } ?? ""
            return self.serve(self.lookup(.wechatChannels, id), missing: #"{"errcode":100002,"errmsg":"order not found"}"#)
        }
        router.get("/order/202309/orders") { request, _ in
            let q = Self.query(request)
            if self.retired(request.headers[HTTPField.Name("x-tts-access-token")!]) { return self.expired(.tiktokShop) }
            guard request.headers[HTTPField.Name("x-tts-access-token")!] == self.accessToken, let sign = q["sign"],
                  sign == APISigning.tiktok(path: "/order/202309/orders", params: q, body: "", appSecret: c.tiktokAppSecret) else {
                return self.refuse(#"{"code":106001,"message":"Invalid signature"}"#)
            }
            return self.serve(self.lookup(.tiktokShop, q["ids"] ?? ""), missing: #"{"code":36009004,"message":"order not found"}"#)
        }
        outboundRoutes(router)
    }

    static func query(_ request: Request) -> [String: String] {
        var q: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { q[String(k)] = String(v) }
        return q
    }

    func refuse(_ body: String) -> Response {
        refused.add(1, ordering: .relaxed)
        return Self.json(body)
    }

    func serve(_ bytes: [UInt8]?, missing: String) -> Response {
        guard let bytes else { return Self.json(missing) }
        served.add(1, ordering: .relaxed)
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func status(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    /// Runs the fake on 127.0.0.1 (an ephemeral port) until the returned task is cancelled.
    public func serve(port: Int = 0) async throws -> (url: String, task: Task<Void, Error>) {
        let router = Router()
        routes(router)
        return try await LocalServer.serve(router, label: "livesync.fake-platform", serverName: "livesync-fake-platform", port: port)
    }

    static func json(_ body: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
