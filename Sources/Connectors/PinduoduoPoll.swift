import AsyncHTTPClient
import Foundation
import Model

/// Pinduoduo: `pdd.order.number.list.increment.get` (orders updated in a window of at most 30
/// minutes, `use_has_next`), signed `upper(md5(client_secret + sorted k+v + client_secret))`;
/// token refresh with `pdd.pop.auth.token.refresh`.
public struct PinduoduoPollAPI: OrderPollAPI {
    public let platform: Platform = .pinduoduo
    public let maxWindowSeconds: Int64 = 1_800
    public var gateway: String
    public var clientID: String
    public var clientSecret: String
    let http: PlatformHTTP

    public init(gateway: String = "https://gw-api.pinduoduo.com/api/router", clientID: String, clientSecret: String, client: HTTPClient) {
        self.gateway = gateway
        self.clientID = clientID
        self.clientSecret = clientSecret
        self.http = PlatformHTTP(client: client)
    }

    package func call(_ type: String, _ extra: [String: String]) async throws(PollError) -> [String: Any] {
        var params = ["type": type, "client_id": clientID, "timestamp": String(Int64(Date().timeIntervalSince1970)), "data_type": "JSON"]
        params.merge(extra) { _, new in new }
        params["sign"] = APISigning.md5Wrapped(params: params, secret: clientSecret)
        let obj = try await http.form(gateway, params)
        if let err = obj["error_response"] as? [String: Any] {
            let code = JSON.int(err["error_code"]) ?? 0
            let text = "\(code) \(JSON.string(err["error_msg"]) ?? "") \(JSON.string(err["sub_msg"]) ?? "")"
            // 10019/10035 "access_token已过期"; 70031/70032 "调用过于频繁", 70033 "接口因系统维护暂时下线，请稍后再试",
            // 52101 "当前接口被限流，请稍后重试": all waited out.
            if code == 10019 || code == 10035 { throw .tokenExpired(text) }
            if [70031, 70032, 70033, 52101].contains(code) { throw .rateLimited(text) }
            throw .failed("Pinduoduo error \(text)")
        }
        return obj
    }

    public func page(from: Int64, to: Int64, page: Int, pageSize: Int, accessToken: String) async throws(PollError) -> PolledPage {
        let obj = try await call("pdd.order.number.list.increment.get", [
            "access_token": accessToken, "is_lucky_flag": "0", "order_status": "1", "refund_status": "1",
            "start_updated_at": String(from), "end_updated_at": String(to), "page": String(page), "page_size": String(pageSize), "use_has_next": "true",
        ])
        guard let r = obj["order_sn_increment_get_response"] as? [String: Any] else { throw .failed("no order_sn_increment_get_response") }
        let list = r["order_sn_list"] as? [[String: Any]] ?? []
        return PolledPage(orders: list.compactMap { o in
            guard let sn = JSON.string(o["order_sn"]) else { return nil }
            return (sn, JSON.string(o["updated_at"]).flatMap(FieldMapping.chinaTime) ?? to, Array(JSON.encode(o).utf8))
        }, hasMore: (r["has_next"] as? Bool) ?? false)
    }

    public func refresh(_ tokens: ShopTokens) async throws(PollError) -> ShopTokens {
        let obj = try await call("pdd.pop.auth.token.refresh", ["refresh_token": tokens.refreshToken])
        guard let r = obj["pop_auth_token_refresh_response"] as? [String: Any], let access = JSON.string(r["access_token"]) else {
            throw .failed("token refresh answered without pop_auth_token_refresh_response.access_token")
        }
        return ShopTokens(accessToken: access, refreshToken: JSON.string(r["refresh_token"]) ?? tokens.refreshToken)
    }
}
