import AsyncHTTPClient
import Foundation
import Model

/// Taobao/Tmall TOP: `taobao.trades.sold.increment.get` (orders modified in a window of at most
/// one day, paged with `use_has_next`), signed `md5` or `hmac` over the sorted parameters;
/// token refresh with `taobao.top.auth.token.refresh`.
public struct TaobaoPollAPI: OrderPollAPI {
    public let platform: Platform = .taobao
    public let maxWindowSeconds: Int64 = 86_400
    public var gateway: String
    public var appKey: String
    public var appSecret: String
    /// `md5` (default) or `hmac`.
    public var signMethod: String
    let http: PlatformHTTP

    public init(gateway: String = "https://eco.taobao.com/router/rest", appKey: String, appSecret: String, signMethod: String = "md5", client: HTTPClient) {
        self.gateway = gateway
        self.appKey = appKey
        self.appSecret = appSecret
        self.signMethod = signMethod
        self.http = PlatformHTTP(client: client)
    }

    static func time(_ s: Int64) -> String { FieldMapping.chinaFormatter.string(from: Date(timeIntervalSince1970: TimeInterval(s))) }

    package func call(_ method: String, _ extra: [String: String]) async throws(PollError) -> [String: Any] {
        var params = ["method": method, "app_key": appKey, "timestamp": Self.time(Int64(Date().timeIntervalSince1970)),
                      "format": "json", "v": "2.0", "sign_method": signMethod]
        params.merge(extra) { _, new in new }
        params["sign"] = signMethod == "hmac" ? APISigning.topHMAC(params: params, secret: appSecret) : APISigning.md5Wrapped(params: params, secret: appSecret)
        let obj = try await http.form(gateway, params)
        if let err = obj["error_response"] as? [String: Any] {
            let code = JSON.string(err["code"]) ?? ""
            let text = "\(code) \(JSON.string(err["sub_code"]) ?? "") \(JSON.string(err["msg"]) ?? "")"
            // 7: App Call Limited; 27: Invalid session (expired or revoked).
            if code == "7" || (JSON.string(err["sub_code"]) ?? "").hasPrefix("accesscontrol.limited") { throw .rateLimited(text) }
            if code == "27" { throw .tokenExpired(text) }
            throw .failed("TOP error \(text)")
        }
        return obj
    }

    public func page(from: Int64, to: Int64, page: Int, pageSize: Int, accessToken: String) async throws(PollError) -> PolledPage {
        let obj = try await call("taobao.trades.sold.increment.get", [
            "session": accessToken, "start_modified": Self.time(from), "end_modified": Self.time(to),
            "page_no": String(page), "page_size": String(pageSize), "use_has_next": "true",
            "fields": "tid,status,modified,pay_time,buyer_message,discount_fee,coupon_fee,receiver_name,receiver_mobile,receiver_state,receiver_city,receiver_district,receiver_address,orders",
        ])
        guard let r = obj["trades_sold_increment_get_response"] as? [String: Any] else { throw .failed("no trades_sold_increment_get_response") }
        let trades = ((r["trades"] as? [String: Any])?["trade"] as? [[String: Any]]) ?? []
        return PolledPage(orders: trades.compactMap { t in
            guard let tid = JSON.string(t["tid"]) else { return nil }
            // Only paid trades awaiting shipment become orders.
            guard (JSON.string(t["status"]) ?? "WAIT_SELLER_SEND_GOODS") == "WAIT_SELLER_SEND_GOODS" else { return nil }
            return (tid, JSON.string(t["modified"]).flatMap(FieldMapping.chinaTime) ?? to, Array(JSON.encode(t).utf8))
        }, hasMore: (r["has_next"] as? Bool) ?? false)
    }

    public func refresh(_ tokens: ShopTokens) async throws(PollError) -> ShopTokens {
        let obj = try await call("taobao.top.auth.token.refresh", ["refresh_token": tokens.refreshToken])
        guard let text = ((obj["top_auth_token_refresh_response"] as? [String: Any])?["token_result"] as? String),
              let result = try? JSON.object(Array(text.utf8)), let access = JSON.string(result["access_token"]) else {
            throw .failed("token refresh answered without token_result")
        }
        return ShopTokens(accessToken: access, refreshToken: JSON.string(result["refresh_token"]) ?? tokens.refreshToken)
    }
}
