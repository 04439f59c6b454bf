import Connectors
import Bootstrap
import AsyncHTTPClient
import Foundation
import Model
import NIOCore
import NIOHTTP1
import Worker

// The write-back clients of Kuaishou, WeChat Channels, TikTok Shop, JD and Pinduoduo. Each speaks
// the platform's own API with the signer its order-detail or polling client already uses, and
// sorts failures the same way: network errors, HTTP 429 and 5xx and the platform's busy or
// throttle codes are retryable; every other refusal is permanent and keeps the platform's code
// and message for the dead letter. Channel SKUs that need product and SKU ids come from the
// channel SKU map (`channels.skuMap`), as Taobao's `num_iid:sku_id` does.

extension OutboundError {
    /// A polling client's error (TOP, JOS and Pinduoduo share the gateway code) as an outbound
    /// failure: the platform's refusals (`failed` with the platform's prefix) and an expired
    /// session are permanent, throttling and transport failures retryable.
    static func from(_ error: PollError, platformPrefix: String) -> OutboundError {
        switch error {
        case .rateLimited(let m): .retryable(m)
        case .tokenExpired(let m): .permanent("session expired: \(m)")
        case .failed(let m): m.hasPrefix(platformPrefix) ? .permanent(m) : .retryable(m)
        }
    }
}

extension PlatformHTTP {
    /// One request whose answer is classified by the caller: the HTTP status and the body when it
    /// is a JSON object. Only a failure to reach the platform throws (retryable).
    func send(_ url: String, method: HTTPMethod = .POST, headers: [(String, String)] = [], json body: String?) async throws(OutboundError) -> (status: UInt, body: [String: Any]?) {
        let request = Self.request(url, method: method, headers: headers, json: body)
        do {
            let response = try await client.execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 4 << 20)
            return (response.status.code, try? JSON.object(Array(bytes.readableBytesView)))
        } catch {
            throw .retryable("call failed: \(error)")
        }
    }
}

/// Splits a channel SKU `a:b[:c]` into its parts, the first `numeric` of which must be integers, or
/// refuses it (permanent: the SKU map has to be fixed, retrying cannot help).
func channelSKUParts(_ sku: String, platform: String, shape: String, count: ClosedRange<Int>, numeric: Int) throws(OutboundError) -> [String] {
    let parts = sku.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    guard count.contains(parts.count), parts.enumerated().allSatisfy({ !$1.isEmpty && ($0 >= numeric || Int64($1) != nil) }) else {
        throw .permanent("\(platform) channel SKU '\(sku)' is not \(shape); map it in channels.skuMap")
    }
    return parts
}

/// Kuaishou shop: `open.item.sku.stock.update` and `open.seller.order.goods.deliver`, signed like
/// `open.order.detail` (`APISigning.kuaishou`, MD5), parameters as a form, business parameters
/// as the JSON string `param`; success is `result: 1`, a refusal `result` ≠ 1 with `error_msg`.
/// The stock API only adds or removes units (`changeType` 1/2), so a push first reads the SKU's
/// current stock with `open.item.sku.list.get` and sends the difference. Channel SKU:
/// `kwaiItemId:skuId`. The carrier is Kuaishou's numeric `expressCode`.
public struct KuaishouChannelClient: ChannelClient {
    public let platform: Platform = .kuaishou
    public var baseURL: String
    public var appKey: String
    public var signSecret: String
    let http: PlatformHTTP

    public init(baseURL: String = "https://openapi.kwaixiaodian.com", appKey: String, signSecret: String, client: HTTPClient) {
        self.baseURL = baseURL
        self.appKey = appKey
        self.signSecret = signSecret
        self.http = PlatformHTTP(client: client)
    }

    func signed(_ method: String, _ param: [String: Any], token: String) -> [String: String] {
        var params = ["appkey": appKey, "method": method, "version": "1", "access_token": token, "param": JSON.encode(param),
                      "timestamp": String(Int64(Date().timeIntervalSince1970 * 1000)), "signMethod": "MD5"]
        params["sign"] = APISigning.kuaishou(params: params, signSecret: signSecret)
        return params
    }

    func url(_ method: String) -> String { "\(baseURL)/\(method.replacingOccurrences(of: ".", with: "/"))" }

    static func check(_ method: String, _ obj: [String: Any]) throws(OutboundError) -> [String: Any] {
        guard JSON.int(obj["result"]) == 1 else {
            throw .permanent("Kuaishou \(method) \(JSON.string(obj["result"]) ?? "?"): \(JSON.string(obj["error_msg"]) ?? "")")
        }
        return obj
    }

    func get(_ method: String, _ param: [String: Any], token: String) async throws(OutboundError) -> [String: Any] {
        let obj: [String: Any]
        do { obj = try await http.call("\(url(method))?\(PlatformHTTP.query(signed(method, param, token: token)))") } catch {
            throw .retryable("Kuaishou \(method): \(error)")
        }
        return try Self.check(method, obj)
    }

    func post(_ method: String, _ param: [String: Any], token: String) async throws(OutboundError) -> [String: Any] {
        let obj: [String: Any]
        do { obj = try await http.form(url(method), signed(method, param, token: token)) } catch {
            throw .retryable("Kuaishou \(method): \(error)")  // transport, HTTP 429/5xx, not JSON
        }
        return try Self.check(method, obj)
    }

    public func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        let ids = try channelSKUParts(sku, platform: "Kuaishou", shape: "kwaiItemId:skuId", count: 2...2, numeric: 2)
        let (item, skuID) = (Int64(ids[0])!, Int64(ids[1])!)
        let listed = try await get("open.item.sku.list.get", ["kwaiItemId": item], token: accessToken)
        let skus = listed["data"] as? [[String: Any]] ?? []
        guard let entry = skus.first(where: { JSON.int($0["kwaiSkuId"]) == skuID }), let current = JSON.int(entry["skuStock"]) else {
            throw .permanent("Kuaishou open.item.sku.list.get: item \(item) has no SKU \(skuID)")
        }
        let difference = quantity - current
        guard difference != 0 else { return }
        _ = try await post("open.item.sku.stock.update", ["kwaiItemId": item, "skuId": skuID, "skuChangeStock": abs(difference),
                                                          "changeType": difference > 0 ? 1 : 2], token: accessToken)
    }

    public func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {
        guard let order = Int64(platformOrderID) else { throw .permanent("Kuaishou order id '\(platformOrderID)' is not numeric") }
        guard let express = Int64(carrier) else { throw .permanent("Kuaishou expressCode '\(carrier)' is not numeric (Kuaishou's carrier code list)") }
        _ = try await post("open.seller.order.goods.deliver", ["orderId": order, "expressNo": trackingNumber, "expressCode": express], token: accessToken)
    }
}

/// WeChat Channels shop: `POST /channels/ec/product/stock/update` (`diff_type` 3: set) and
/// `POST /channels/ec/order/delivery/send`, `access_token` in the query, JSON bodies, answered
/// `{"errcode", "errmsg"}`. The delivery names the packed products, read from the order with
/// `channels/ec/order/get`. Channel SKU: `product_id:sku_id`; the carrier is WeChat's
/// `delivery_id`. The token is fetched with `stable_token` (app id and secret) or taken from
/// `channels.tokens`.
public struct WeChatChannelClient: ChannelClient {
    public let platform: Platform = .wechatChannels
    public var baseURL: String
    let tokens: WeChatAccessToken?
    let http: PlatformHTTP

    /// Fetching (and renewing) the shop's token itself with its app id and secret.
    public init(baseURL: String = "https://api.weixin.qq.com", appID: String, appSecret: String, client: HTTPClient) {
        self.baseURL = baseURL
        self.http = PlatformHTTP(client: client)
        self.tokens = WeChatAccessToken(baseURL: baseURL, appID: appID, appSecret: appSecret, http: http)
    }

    /// With the per-shop tokens the dispatcher passes (`channels.tokens`).
    public init(baseURL: String = "https://api.weixin.qq.com", client: HTTPClient) {
        self.baseURL = baseURL
        self.http = PlatformHTTP(client: client)
        self.tokens = nil
    }

    /// -1 system busy, 45009 daily quota reached, 45011 per-minute quota reached.
    static let retryableCodes: Set<Int64> = [-1, 45009, 45011]
    /// 40001 invalid credential, 42001 expired, 40014 invalid token.
    static let tokenCodes: Set<Int64> = [40001, 42001, 40014]

    func post(_ path: String, _ body: [String: Any], token given: String) async throws(OutboundError) -> [String: Any] {
        for attempt in 0..<2 {
            let token: String
            if let tokens {
                do { token = try await tokens.current(forceRefresh: attempt > 0) } catch { throw .retryable("\(error)") }
            } else {
                guard !given.isEmpty else { throw .permanent("no WeChat access token for the shop (channels.tokens or connectors.wechat.appSecret)") }
                token = given
            }
            let (status, obj) = try await http.send("\(baseURL)\(path)?access_token=\(token)", json: JSON.encode(body))
            guard let obj, status < 500, status != 429 else {
                let text = "WeChat \(path) HTTP \(status)"
                throw (status >= 500 || status == 429 || (200..<300).contains(status)) ? .retryable(text) : .permanent(text)
            }
            let code = JSON.int(obj["errcode"]) ?? 0
            if code == 0 { return obj }
            let text = "WeChat \(path) \(code): \(JSON.string(obj["errmsg"]) ?? "")"
            if Self.tokenCodes.contains(code) {
                if tokens != nil, attempt == 0 { continue }
                throw .permanent("access token rejected: \(text)")
            }
            throw Self.retryableCodes.contains(code) ? .retryable(text) : .permanent(text)
        }
        throw .retryable("WeChat \(path): access token rejected after renewal")
    }

    public func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        let ids = try channelSKUParts(sku, platform: "WeChat Channels", shape: "product_id:sku_id", count: 2...2, numeric: 0)
        _ = try await post("/channels/ec/product/stock/update", ["product_id": ids[0], "sku_id": ids[1], "diff_type": 3, "num": quantity], token: accessToken)
    }

    public func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {
        let order = try await post("/channels/ec/order/get", ["order_id": platformOrderID], token: accessToken)
        let lines = (((order["order"] as? [String: Any])?["order_detail"] as? [String: Any])?["product_infos"] as? [[String: Any]]) ?? []
        let products: [[String: Any]] = lines.compactMap { l in
            guard let product = JSON.string(l["product_id"]), let sku = JSON.string(l["sku_id"]), let count = JSON.int(l["sku_cnt"]), count > 0 else { return nil }
            return ["product_id": product, "sku_id": sku, "product_cnt": count]
        }
        guard !products.isEmpty, products.count == lines.count else {
            throw .permanent("WeChat order \(platformOrderID): order/get has no product_infos with product_id, sku_id and sku_cnt")
        }
        _ = try await post("/channels/ec/order/delivery/send", [
            "order_id": platformOrderID,
            "delivery_list": [["delivery_id": carrier, "waybill_id": trackingNumber, "deliver_type": 1, "product_infos": products]],
        ], token: accessToken)
    }
}

/// TikTok Shop (202309 APIs): `POST /product/202309/products/{product_id}/inventory/update` and
/// Mark Package As Shipped, `POST /fulfillment/202309/orders/{order_id}/packages`, signed like
/// Get Order Detail (`APISigning.tiktok` over path, query and JSON body), token in
/// `x-tts-access-token`, `shop_cipher` per shop; success is `code: 0`. Channel SKU:
/// `product_id:sku_id[:warehouse_id]`; the carrier is TikTok's `shipping_provider_id`.
public struct TikTokChannelClient: ChannelClient {
    public let platform: Platform = .tiktokShop
    public var baseURL: String
    public var appKey: String
    public var appSecret: String
    public var shopCiphers: AccessTokens
    let http: PlatformHTTP

    public init(baseURL: String = "https://open-api.tiktokglobalshop.com", appKey: String, appSecret: String, shopCiphers: AccessTokens, client: HTTPClient) {
        self.baseURL = baseURL
        self.appKey = appKey
        self.appSecret = appSecret
        self.shopCiphers = shopCiphers
        self.http = PlatformHTTP(client: client)
    }

    func post(_ path: String, _ body: [String: Any], shopID: String, token: String) async throws(OutboundError) -> [String: Any] {
        let text = JSON.encode(body)
        var params = ["app_key": appKey, "timestamp": String(Int64(Date().timeIntervalSince1970))]
        if let cipher = shopCiphers.tokens[shopID] ?? shopCiphers.tokens["*"], !cipher.isEmpty { params["shop_cipher"] = cipher }
        params["sign"] = APISigning.tiktok(path: path, params: params, body: text, appSecret: appSecret)
        let (status, obj) = try await http.send("\(baseURL)\(path)?\(PlatformHTTP.query(params))", headers: [("x-tts-access-token", token)], json: text)
        if status == 429 || status >= 500 {
            throw .retryable("TikTok Shop \(path) HTTP \(status): \(JSON.string(obj?["code"]) ?? "") \(JSON.string(obj?["message"]) ?? "")")
        }
        guard let obj else { throw (200..<300).contains(status) ? .retryable("TikTok Shop \(path): answer is not JSON") : .permanent("TikTok Shop \(path) HTTP \(status)") }
        guard JSON.int(obj["code"]) == 0 else {
            throw .permanent("TikTok Shop \(path) \(JSON.string(obj["code"]) ?? "?"): \(JSON.string(obj["message"]) ?? "")")
        }
        return obj
    }

    public func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        let ids = try channelSKUParts(sku, platform: "TikTok Shop", shape: "product_id:sku_id[:warehouse_id]", count: 2...3, numeric: 2)
        var inventory: [String: Any] = ["quantity": quantity]
        if ids.count == 3 { inventory["warehouse_id"] = ids[2] }
        _ = try await post("/product/202309/products/\(ids[0])/inventory/update", ["skus": [["id": ids[1], "inventory": [inventory]]]],
                           shopID: shopID, token: accessToken)
    }

    public func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {
        guard Int64(platformOrderID) != nil else { throw .permanent("TikTok Shop order id '\(platformOrderID)' is not numeric") }
        _ = try await post("/fulfillment/202309/orders/\(platformOrderID)/packages", ["tracking_number": trackingNumber, "shipping_provider_id": carrier],
                           shopID: shopID, token: accessToken)
    }
}

/// A JOS or Pinduoduo answer that came back without `error_response` may still report a failed
/// write as `success`/`is_success: false` inside the method's response object (searched through
/// its nested objects; the whole answer when the response key is absent).
func refusedInside(_ obj: [String: Any], responseKey: String, platform: String) throws(OutboundError) {
    var nodes: [[String: Any]] = [obj[responseKey] as? [String: Any] ?? obj]
    while let node = nodes.popLast() {
        for key in ["success", "is_success"] {
            if let flag = node[key] as? Bool, !flag {
                let detail = ["code", "errorCode", "chineseErrCode", "errorMessage", "error_msg", "msg"].compactMap { JSON.string(node[$0]) }.joined(separator: " ")
                throw .permanent("\(platform) \(responseKey): \(key) false \(detail)")
            }
        }
        nodes.append(contentsOf: node.values.compactMap { $0 as? [String: Any] })
    }
}

/// JD (JOS): `jingdong.stock.write.updateSkuStock` (absolute `stockNum`) and
/// `jingdong.pop.order.shipment`, through `/routerjson` with the polling client's signer
/// (`JDPollAPI.call`). Channel SKU: the JD `skuId`; the carrier is JD's `logiCoprId`.
public struct JDChannelClient: ChannelClient {
    public let platform: Platform = .jd
    public var api: JDPollAPI

    public init(api: JDPollAPI) { self.api = api }

    func call(_ method: String, _ param: [String: Any], token: String) async throws(OutboundError) {
        let obj: [String: Any]
        do { obj = try await api.call(method, param, accessToken: token) } catch { throw .from(error, platformPrefix: "JOS error") }
        try refusedInside(obj, responseKey: method.replacingOccurrences(of: ".", with: "_") + "_responce", platform: "JD \(method)")
    }

    public func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        let ids = try channelSKUParts(sku, platform: "JD", shape: "skuId", count: 1...1, numeric: 1)
        try await call("jingdong.stock.write.updateSkuStock", ["skuId": Int64(ids[0])!, "stockNum": quantity], token: accessToken)
    }

    public func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {
        guard let order = Int64(platformOrderID) else { throw .permanent("JD order id '\(platformOrderID)' is not numeric") }
        try await call("jingdong.pop.order.shipment", ["orderId": order, "logiCoprId": carrier, "logiNo": trackingNumber], token: accessToken)
    }
}

/// Pinduoduo: `pdd.goods.quantity.update` (`update_type` 1: set the total) and
/// `pdd.logistics.online.send`, through the gateway with the polling client's signer
/// (`PinduoduoPollAPI.call`). Channel SKU: `goods_id:sku_id`; the carrier is Pinduoduo's numeric
/// `logistics_id`.
public struct PinduoduoChannelClient: ChannelClient {
    public let platform: Platform = .pinduoduo
    public var api: PinduoduoPollAPI

    public init(api: PinduoduoPollAPI) { self.api = api }

    func call(_ type: String, _ params: [String: String], responseKey: String) async throws(OutboundError) {
        let obj: [String: Any]
        do { obj = try await api.call(type, params) } catch { throw .from(error, platformPrefix: "Pinduoduo error") }
        try refusedInside(obj, responseKey: responseKey, platform: "Pinduoduo \(type)")
    }

    public func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        let ids = try channelSKUParts(sku, platform: "Pinduoduo", shape: "goods_id:sku_id", count: 2...2, numeric: 2)
        try await call("pdd.goods.quantity.update", ["access_token": accessToken, "goods_id": ids[0], "sku_id": ids[1], "quantity": String(quantity), "update_type": "1"],
                       responseKey: "goods_quantity_update_response")
    }

    public func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {
        guard Int64(carrier) != nil else { throw .permanent("Pinduoduo logistics_id '\(carrier)' is not numeric (pdd.logistics.companies.get)") }
        try await call("pdd.logistics.online.send", ["access_token": accessToken, "order_sn": platformOrderID, "logistics_id": carrier, "tracking_number": trackingNumber],
                       responseKey: "logistics_online_send_response")
    }
}

/// The write-back clients `livesync-channels` runs, one per platform whose credentials are set
/// (the same keys as the platform's connector or poller; none is enabled by default):
///
/// - Douyin: `connectors.douyin.appKey`, `.appSecret`, `.apiBase` (default `https://openapi-fxg.jinritemai.com`)
/// - Kuaishou: `connectors.kuaishou.appKey`, `.signSecret`, `.apiBase` (default `https://openapi.kwaixiaodian.com`)
/// - WeChat Channels: `connectors.wechat.appId` and `.appSecret` (token fetched with `stable_token`), or
///   per-shop tokens in `channels.tokens` (`wechat:shop=token`); `.apiBase` (default `https://api.weixin.qq.com`)
/// - TikTok Shop: `connectors.tiktok.appKey`, `.appSecret`, `.shopCiphers` (`shop=cipher;…`), `.apiBase`
///   (default `https://open-api.tiktokglobalshop.com`)
/// - Taobao: `connectors.poll.taobao.appKey`, `.appSecret`, `.gateway` (default `https://eco.taobao.com/router/rest`), `.signMethod`
/// - JD: `connectors.poll.jd.appKey`, `.appSecret`, `.gateway` (default `https://api.jd.com/routerjson`)
/// - Pinduoduo: `connectors.poll.pinduoduo.appKey` (client id), `.appSecret`, `.gateway` (default `https://gw-api.pinduoduo.com/api/router`)
///
/// The access token of each call is the channel's in `channels.tokens` (`platform:shop=token`, `platform:*=token`).
public enum ChannelClients {
    public static func configured(_ settings: LiveSyncConfig, client: HTTPClient) throws -> [Platform: any ChannelClient] {
        func s(_ key: String) -> String? {
            let v = settings.optionalString(key)
            return (v?.isEmpty ?? true) ? nil : v
        }
        var clients: [Platform: any ChannelClient] = [:]
        if let key = s("connectors.douyin.appKey"), let secret = s("connectors.douyin.appSecret") {
            clients[.douyin] = DouyinChannelClient(baseURL: s("connectors.douyin.apiBase") ?? "https://openapi-fxg.jinritemai.com",
                                                   appKey: key, appSecret: secret, client: client)
        }
        if let key = s("connectors.kuaishou.appKey"), let sign = s("connectors.kuaishou.signSecret") {
            clients[.kuaishou] = KuaishouChannelClient(baseURL: s("connectors.kuaishou.apiBase") ?? "https://openapi.kwaixiaodian.com",
                                                       appKey: key, signSecret: sign, client: client)
        }
        let wechatBase = s("connectors.wechat.apiBase") ?? "https://api.weixin.qq.com"
        if let app = s("connectors.wechat.appId"), let secret = s("connectors.wechat.appSecret") {
            clients[.wechatChannels] = WeChatChannelClient(baseURL: wechatBase, appID: app, appSecret: secret, client: client)
        } else if AccessTokens.parse(s("channels.tokens") ?? "").tokens.keys.contains(where: { $0.hasPrefix("wechat:") }) {
            clients[.wechatChannels] = WeChatChannelClient(baseURL: wechatBase, client: client)
        }
        if let key = s("connectors.tiktok.appKey"), let secret = s("connectors.tiktok.appSecret") {
            clients[.tiktokShop] = TikTokChannelClient(baseURL: s("connectors.tiktok.apiBase") ?? "https://open-api.tiktokglobalshop.com",
                                                       appKey: key, appSecret: secret, shopCiphers: AccessTokens.parse(s("connectors.tiktok.shopCiphers") ?? ""),
                                                       client: client)
        }
        if let key = s("connectors.poll.taobao.appKey"), let secret = s("connectors.poll.taobao.appSecret") {
            let method = s("connectors.poll.taobao.signMethod") ?? "md5"
            guard ["md5", "hmac"].contains(method) else { throw ConfigurationError("connectors.poll.taobao.signMethod must be md5 or hmac") }
            clients[.taobao] = TaobaoChannelClient(api: TaobaoPollAPI(gateway: s("connectors.poll.taobao.gateway") ?? "https://eco.taobao.com/router/rest",
                                                                      appKey: key, appSecret: secret, signMethod: method, client: client))
        }
        if let key = s("connectors.poll.jd.appKey"), let secret = s("connectors.poll.jd.appSecret") {
            clients[.jd] = JDChannelClient(api: JDPollAPI(gateway: s("connectors.poll.jd.gateway") ?? "https://api.jd.com/routerjson",
                                                          appKey: key, appSecret: secret, client: client))
        }
        if let id = s("connectors.poll.pinduoduo.appKey"), let secret = s("connectors.poll.pinduoduo.appSecret") {
            clients[.pinduoduo] = PinduoduoChannelClient(api: PinduoduoPollAPI(gateway: s("connectors.poll.pinduoduo.gateway") ?? "https://gw-api.pinduoduo.com/api/router",
                                                                               clientID: id, clientSecret: secret, client: client))
        }
        return clients
    }
}
