import Channels
import Worker
import Kafka
import Ingest
import Connectors
import Foundation
import HTTPTypes
import Hummingbird
import Model
import NIOCore

/// The fake's write-back routes for Kuaishou, WeChat Channels, TikTok Shop, JD and Pinduoduo.
/// Each checks the signature and token as the platform does (a mismatch is refused and counted
/// in `refused`), then answers a queued `Failure` in the platform's shape, then checks the body
/// (a missing or malformed field is the platform's parameter error) and records the call.
extension FakePlatformAPI {
    func nextFailure(_ platform: Platform) -> Failure? {
        failures.withLock { f in f[platform]?.isEmpty == false ? f[platform]!.removeFirst() : nil }
    }

    func record(_ platform: Platform, _ api: String, _ params: [String: Any]) {
        outboundLog.withLock { $0.append(OutboundCall(platform: platform, api: api, params: params.mapValues { JSON.string($0) ?? JSON.encode($0) })) }
    }

    func shipped(_ platform: Platform, _ order: String, _ carrier: String, _ tracking: String) {
        writeBackLog.withLock { $0.append(WriteBack(platform: platform, platformOrderID: order, carrier: carrier, trackingNumber: tracking)) }
    }

    /// Query parameters and, for a form body, its fields.
    static func form(_ request: Request) async throws -> [String: String] {
        var q = query(request)
        let body = try await request.body.collect(upTo: 1 << 20)
        for pair in String(buffer: body).split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if kv.count == 2 { q[kv[0]] = kv[1] }
        }
        return q
    }

    func outboundRoutes(_ router: Router<BasicRequestContext>) {
        let c = credentials

        // Kuaishou: form (POST) or query (GET) parameters, `param` JSON, MD5 sign, `result: 1`.
        for method in ["open.item.sku.list.get", "open.item.sku.stock.update", "open.seller.order.goods.deliver"] {
            let handler: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
                let q = try await Self.form(request)
                guard q["access_token"] == self.accessToken, q["appkey"] == c.kuaishouAppKey, q["method"] == method, q["version"] == "1",
                      q["signMethod"] == "MD5", let sign = q["sign"], sign == APISigning.kuaishou(params: q, signSecret: c.kuaishouSignSecret) else {
                    return self.refuse(#"{"result":28,"error_msg":"sign invalid"}"#)
                }
                switch self.nextFailure(.kuaishou) {
                case .throttle?: return Self.status(.tooManyRequests, #"{"result":0,"error_msg":"too many requests"}"#)
                case .refuse(let code, let message)?: return Self.json(JSON.encode(["result": code, "error_msg": message]))
                case nil: break
                }
                guard let p = try? JSON.object(Array((q["param"] ?? "").utf8)) else { return Self.json(#"{"result":10,"error_msg":"param is not JSON"}"#) }
                switch method {
                case "open.item.sku.list.get":
                    guard let item = JSON.int(p["kwaiItemId"]) else { return Self.json(#"{"result":10,"error_msg":"kwaiItemId required"}"#) }
                    let prefix = "kuaishou:\(item):"
                    let skus = self.channelStock.filter { $0.key.hasPrefix(prefix) }.sorted { $0.key < $1.key }
                        .map { ["kwaiItemId": item, "kwaiSkuId": Int64($0.key.dropFirst(prefix.count)) ?? 0, "skuStock": $0.value] as [String: Any] }
                    return Self.json(JSON.encode(["result": 1, "data": skus]))
                case "open.item.sku.stock.update":
                    guard let item = JSON.int(p["kwaiItemId"]), let sku = JSON.int(p["skuId"]), let n = JSON.int(p["skuChangeStock"]), n > 0,
                          let type = JSON.int(p["changeType"]), type == 1 || type == 2 else {
                        return Self.json(#"{"result":10,"error_msg":"kwaiItemId, skuId, skuChangeStock > 0 and changeType 1|2 required"}"#)
                    }
                    let key = "kuaishou:\(item):\(sku)"
                    let ok = self.channelStockLevels.withLock { levels -> Bool in
                        guard let current = levels[key], type == 1 || current >= n else { return false }
                        levels[key] = current + (type == 1 ? n : -n)
                        return true
                    }
                    guard ok else { return Self.json(#"{"result":10,"error_msg":"unknown SKU or stock below zero"}"#) }
                default:
                    guard let order = JSON.int(p["orderId"]), let express = JSON.int(p["expressCode"]), let tracking = JSON.string(p["expressNo"]), !tracking.isEmpty else {
                        return Self.json(#"{"result":10,"error_msg":"orderId, expressCode and expressNo required"}"#)
                    }
                    self.shipped(.kuaishou, String(order), String(express), tracking)
                }
                self.record(.kuaishou, method, p)
                return Self.json(#"{"result":1}"#)
            }
            let path = RouterPath(stringLiteral: "/" + method.replacingOccurrences(of: ".", with: "/"))
            if method == "open.item.sku.list.get" { router.get(path, use: handler) } else { router.post(path, use: handler) }
        }

        // WeChat Channels: `access_token` query, JSON body, `errcode`/`errmsg`.
        for path in ["/channels/ec/product/stock/update", "/channels/ec/order/delivery/send"] {
            router.post(RouterPath(stringLiteral: path)) { request, _ in
                guard Self.query(request)["access_token"] == self.accessToken else { return self.refuse(#"{"errcode":40001,"errmsg":"invalid credential"}"#) }
                switch self.nextFailure(.wechatChannels) {
                case .throttle?: return Self.json(#"{"errcode":45011,"errmsg":"api minute-quota reach limit"}"#)
                case .refuse(let code, let message)?: return Self.json(JSON.encode(["errcode": code, "errmsg": message]))
                case nil: break
                }
                let body = try await request.body.collect(upTo: 1 << 20)
                guard let p = try? JSON.object(Array(body.readableBytesView)) else { return Self.json(#"{"errcode":47001,"errmsg":"data format error"}"#) }
                if path.hasSuffix("stock/update") {
                    guard let product = p["product_id"] as? String, let sku = p["sku_id"] as? String, JSON.int(p["diff_type"]) == 3,
                          let n = JSON.int(p["num"]), n >= 0 else {
                        return Self.json(#"{"errcode":47001,"errmsg":"product_id, sku_id (strings), diff_type 3 and num >= 0 required"}"#)
                    }
                    self.setChannelStock(.wechatChannels, sku: "\(product):\(sku)", n)
                } else {
                    guard let order = p["order_id"] as? String, let list = p["delivery_list"] as? [[String: Any]], let d = list.first, list.count == 1,
                          let company = d["delivery_id"] as? String, let waybill = d["waybill_id"] as? String, !company.isEmpty, !waybill.isEmpty,
                          JSON.int(d["deliver_type"]) == 1, let products = d["product_infos"] as? [[String: Any]], !products.isEmpty,
                          products.allSatisfy({ $0["product_id"] is String && $0["sku_id"] is String && (JSON.int($0["product_cnt"]) ?? 0) > 0 }) else {
                        return Self.json(#"{"errcode":47001,"errmsg":"order_id and one delivery_list entry with delivery_id, waybill_id, deliver_type 1 and product_infos required"}"#)
                    }
                    guard self.lookup(.wechatChannels, order) != nil else { return Self.json(#"{"errcode":100002,"errmsg":"order not found"}"#) }
                    self.shipped(.wechatChannels, order, company, waybill)
                }
                self.record(.wechatChannels, path, p)
                return Self.json(#"{"errcode":0,"errmsg":"ok"}"#)
            }
        }

        // TikTok Shop 202309: HMAC-SHA256 over path, query and body; `x-tts-access-token`; `code: 0`.
        let tiktok: @Sendable (Request, BasicRequestContext) async throws -> Response = { request, _ in
            let q = Self.query(request)
            let path = request.uri.path
            let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
            guard request.headers[HTTPField.Name("x-tts-access-token")!] == self.accessToken, q["app_key"] == c.tiktokAppKey, q["timestamp"] != nil,
                  let sign = q["sign"], sign == APISigning.tiktok(path: path, params: q, body: body, appSecret: c.tiktokAppSecret) else {
                return self.refuse(#"{"code":106001,"message":"Invalid signature"}"#)
            }
            switch self.nextFailure(.tiktokShop) {
            case .throttle?: return Self.status(.tooManyRequests, #"{"code":429,"message":"Too many requests"}"#)
            case .refuse(let code, let message)?: return Self.json(JSON.encode(["code": code, "message": message]))
            case nil: break
            }
            guard let p = try? JSON.object(Array(body.utf8)) else { return Self.status(.badRequest, #"{"code":40006,"message":"body is not JSON"}"#) }
            let segments = path.split(separator: "/").map(String.init)
            if path.hasSuffix("/inventory/update") {
                guard segments.count == 6, let sku = (p["skus"] as? [[String: Any]])?.first, let id = sku["id"] as? String,
                      let inv = (sku["inventory"] as? [[String: Any]])?.first, let n = JSON.int(inv["quantity"]), n >= 0 else {
                    return Self.json(#"{"code":40006,"message":"skus[0].id and skus[0].inventory[0].quantity >= 0 required"}"#)
                }
                self.setChannelStock(.tiktokShop, sku: "\(segments[3]):\(id)", n)
            } else {
                guard segments.count == 5, let tracking = p["tracking_number"] as? String, let provider = p["shipping_provider_id"] as? String,
                      !tracking.isEmpty, !provider.isEmpty else {
                    return Self.json(#"{"code":40006,"message":"tracking_number and shipping_provider_id required"}"#)
                }
                self.shipped(.tiktokShop, segments[3], provider, tracking)
            }
            self.record(.tiktokShop, path, p)
            return Self.json(#"{"code":0,"message":"Success","data":{}}"#)
        }
        router.post("/product/202309/products/:product_id/inventory/update", use: tiktok)
        router.post("/fulfillment/202309/orders/:order_id/packages", use: tiktok)

        // JD JOS `/routerjson`: form, `360buy_param_json`, upper(md5(secret + k1v1… + secret)).
        router.post("/routerjson") { request, _ in
            let q = try await Self.form(request)
            guard q["app_key"] == c.jdAppKey, q["access_token"] == self.accessToken, q["v"] == "2.0",
                  q["sign"] == APISigning.md5Wrapped(params: q, secret: c.jdAppSecret) else {
                return self.refuse(#"{"error_response":{"code":"19","zh_desc":"签名或token无效"}}"#)
            }
            switch self.nextFailure(.jd) {
            case .throttle?: return Self.json(#"{"error_response":{"code":"37","zh_desc":"调用频率超限"}}"#)
            case .refuse(let code, let message)?: return Self.json(JSON.encode(["error_response": ["code": String(code), "zh_desc": message]]))
            case nil: break
            }
            let method = q["method"] ?? ""
            guard let p = try? JSON.object(Array((q["360buy_param_json"] ?? "").utf8)) else {
                return Self.json(#"{"error_response":{"code":"64","zh_desc":"360buy_param_json is not JSON"}}"#)
            }
            switch method {
            case "jingdong.stock.write.updateSkuStock":
                guard let sku = JSON.int(p["skuId"]), let n = JSON.int(p["stockNum"]), n >= 0 else {
                    return Self.json(#"{"error_response":{"code":"64","zh_desc":"skuId and stockNum >= 0 required"}}"#)
                }
                self.setChannelStock(.jd, sku: String(sku), n)
            case "jingdong.pop.order.shipment":
                guard let order = JSON.int(p["orderId"]), let company = JSON.string(p["logiCoprId"]), let tracking = JSON.string(p["logiNo"]),
                      !company.isEmpty, !tracking.isEmpty else {
                    return Self.json(#"{"error_response":{"code":"64","zh_desc":"orderId, logiCoprId and logiNo required"}}"#)
                }
                self.shipped(.jd, String(order), company, tracking)
            default:
                return Self.json(#"{"error_response":{"code":"22","zh_desc":"unknown method"}}"#)
            }
            self.record(.jd, method, p)
            return Self.json(JSON.encode([method.replacingOccurrences(of: ".", with: "_") + "_responce": ["code": "0", "success": true]]))
        }

        // Pinduoduo `/api/router`: form, `type`, upper(md5(client_secret + k1v1… + client_secret)).
        router.post("/api/router") { request, _ in
            let q = try await Self.form(request)
            guard q["client_id"] == c.pinduoduoClientID, q["access_token"] == self.accessToken, q["data_type"] == "JSON",
                  q["sign"] == APISigning.md5Wrapped(params: q, secret: c.pinduoduoClientSecret) else {
                return self.refuse(#"{"error_response":{"error_code":10019,"error_msg":"sign or access_token invalid"}}"#)
            }
            switch self.nextFailure(.pinduoduo) {
            case .throttle?: return Self.json(#"{"error_response":{"error_code":70031,"error_msg":"调用过于频繁"}}"#)
            case .refuse(let code, let message)?: return Self.json(JSON.encode(["error_response": ["error_code": code, "error_msg": message]]))
            case nil: break
            }
            let type = q["type"] ?? ""
            switch type {
            case "pdd.goods.quantity.update":
                guard let goods = q["goods_id"], Int64(goods) != nil, let sku = q["sku_id"], Int64(sku) != nil,
                      let n = q["quantity"].flatMap({ Int64($0) }), n >= 0, q["update_type"] == "1" else {
                    return Self.json(#"{"error_response":{"error_code":10000,"error_msg":"goods_id, sku_id, quantity >= 0 and update_type 1 required"}}"#)
                }
                self.setChannelStock(.pinduoduo, sku: "\(goods):\(sku)", n)
                self.record(.pinduoduo, type, ["goods_id": goods, "sku_id": sku, "quantity": n, "update_type": 1])
                return Self.json(#"{"goods_quantity_update_response":{"is_success":true}}"#)
            case "pdd.logistics.online.send":
                guard let order = q["order_sn"], !order.isEmpty, let company = q["logistics_id"], Int64(company) != nil,
                      let tracking = q["tracking_number"], !tracking.isEmpty else {
                    return Self.json(#"{"error_response":{"error_code":10000,"error_msg":"order_sn, logistics_id and tracking_number required"}}"#)
                }
                self.shipped(.pinduoduo, order, company, tracking)
                self.record(.pinduoduo, type, ["order_sn": order, "logistics_id": company, "tracking_number": tracking])
                return Self.json(#"{"logistics_online_send_response":{"is_success":true}}"#)
            default:
                return Self.json(#"{"error_response":{"error_code":10001,"error_msg":"unknown type"}}"#)
            }
        }
    }
}
