import AsyncHTTPClient
import Foundation
import Model

/// JD JOS: `jingdong.pop.order.search` (orders modified in a window, `dateType` 0 = modified
/// time), signed `upper(md5(secret + sorted k+v + secret))`; parameters in `360buy_param_json`.
/// Token refresh through the JOS OAuth endpoint (`/oauth2/refresh_token`).
public struct JDPollAPI: OrderPollAPI {
    public let platform: Platform = .jd
    public let maxWindowSeconds: Int64 = 30 * 86_400
    public var gateway: String
    public var oauthBase: String
    public var appKey: String
    public var appSecret: String
    let http: PlatformHTTP

    public init(gateway: String = "https://api.jd.com/routerjson", oauthBase: String = "https://open-oauth.jd.com", appKey: String, appSecret: String, client: HTTPClient) {
        self.gateway = gateway
        self.oauthBase = oauthBase
        self.appKey = appKey
        self.appSecret = appSecret
        self.http = PlatformHTTP(client: client)
    }

    /// One signed JOS call through `/routerjson`: the method's parameters go in `360buy_param_json`.
    /// Code 19 (invalid or expired token) is `tokenExpired`, 2, 37 or a frequency message `rateLimited`,
    /// other `error_response`s `failed("JOS error …")`.
    package func call(_ method: String, _ param: [String: Any], accessToken: String) async throws(PollError) -> [String: Any] {
        var params = ["method": method, "app_key": appKey, "access_token": accessToken,
                      "timestamp": TaobaoPollAPI.time(Int64(Date().timeIntervalSince1970)), "v": "2.0", "360buy_param_json": JSON.encode(param)]
        params["sign"] = APISigning.md5Wrapped(params: params, secret: appSecret)
        let obj = try await http.form(gateway, params)
        if let err = obj["error_response"] as? [String: Any] {
            let code = JSON.string(err["code"]) ?? ""
            let text = "\(code) \(JSON.string(err["zh_desc"]) ?? JSON.string(err["en_desc"]) ?? "")"
            // JOS gateway codes: 19 "Invalid access_token" (expired or revoked: refresh), 2 "App Call
            // Limited". 37 is kept as a rate limit although no published table was found for it.
            if code == "19" { throw .tokenExpired(text) }
            if code == "2" || code == "37" || text.contains("频") { throw .rateLimited(text) }
            throw .failed("JOS error \(text)")
        }
        return obj
    }

    public func page(from: Int64, to: Int64, page: Int, pageSize: Int, accessToken: String) async throws(PollError) -> PolledPage {
        let obj = try await call("jingdong.pop.order.search", [
            "start_date": TaobaoPollAPI.time(from), "end_date": TaobaoPollAPI.time(to), "order_state": "WAIT_SELLER_STOCK_OUT",
            "page": String(page), "page_size": String(pageSize), "dateType": "0",
            "optional_fields": "orderId,modified,itemInfoList,consigneeInfo,orderRemark,paymentConfirmTime,sellerDiscount"], accessToken: accessToken)
        guard let result = ((obj["jingdong_pop_order_search_responce"] as? [String: Any])?["searchorderinfo_result"] as? [String: Any]) else {
            throw .failed("no jingdong_pop_order_search_responce.searchorderinfo_result")
        }
        let list = result["orderInfoList"] as? [[String: Any]] ?? []
        let total = JSON.int(result["orderTotal"]) ?? 0
        return PolledPage(orders: list.compactMap { o in
            guard let id = JSON.string(o["orderId"]) else { return nil }
            return (id, JSON.string(o["modified"]).flatMap(FieldMapping.chinaTime) ?? to, Array(JSON.encode(o).utf8))
        }, hasMore: Int64(page * pageSize) < total)
    }

    public func refresh(_ tokens: ShopTokens) async throws(PollError) -> ShopTokens {
        let obj = try await http.form("\(oauthBase)/oauth2/refresh_token", ["app_key": appKey, "app_secret": appSecret,
                                                                            "grant_type": "refresh_token", "refresh_token": tokens.refreshToken])
        guard let access = JSON.string(obj["access_token"]) else { throw .failed("JOS token refresh answered without access_token") }
        return ShopTokens(accessToken: access, refreshToken: JSON.string(obj["refresh_token"]) ?? tokens.refreshToken)
    }
}
