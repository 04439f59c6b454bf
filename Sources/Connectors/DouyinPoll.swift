import AsyncHTTPClient
import Foundation
import Model

/// Douyin shop order search: `order.searchList` by update time (pages from 0), signed as every
/// Douyin API (`md5(app_secret + "app_key…method…param_json…timestamp…v2" + app_secret)`);
/// token refresh with `token.refresh`.
public struct DouyinPollAPI: OrderPollAPI {
    public let platform: Platform = .douyin
    public let maxWindowSeconds: Int64 = 86_400
    let gateway: DouyinGateway

    public init(baseURL: String = "https://openapi-fxg.jinritemai.com", appKey: String, appSecret: String, client: HTTPClient) {
        self.gateway = DouyinGateway(baseURL: baseURL, appKey: appKey, appSecret: appSecret, http: PlatformHTTP(client: client))
    }

    /// `sub_code`s of code 40003 that a refreshed access token cures (Douyin's platform error
    /// catalogue, op.jinritemai.com/docs/guide-docs/212/1427, as the public SDKs quote it).
    static let expiredTokenSubCodes: Set<String> = ["isv.access-token-expired", "isv.access-token-no-existed"]

    /// Sorts a non-success answer: an expired token is refreshed, code 60000
    /// (`isv.traffic-limited`) is waited out, everything else fails the cycle.
    static func classify(code: Int64, subCode: String, text: String) -> PollError {
        if expiredTokenSubCodes.contains(subCode) { return .tokenExpired(text) }
        if code == 60000 || subCode == "isv.traffic-limited" { return .rateLimited(text) }
        return .failed(text)
    }

    package func call(_ method: String, param: [String: Any], accessToken: String?) async throws(PollError) -> [String: Any] {
        let r: (code: Int64, text: String, body: [String: Any])
        do { r = try await gateway.call(method, param, accessToken: accessToken) } catch { throw .failed("\(error)") }
        guard r.code == 10000 else {
            throw Self.classify(code: r.code, subCode: JSON.string(r.body["sub_code"]) ?? "", text: r.text)
        }
        return r.body
    }

    public func page(from: Int64, to: Int64, page: Int, pageSize: Int, accessToken: String) async throws(PollError) -> PolledPage {
        let obj = try await call("order.searchList",
                                 param: ["update_time_start": from, "update_time_end": to, "page": page - 1, "size": pageSize,
                                         "order_by": "update_time", "order_asc": true], accessToken: accessToken)
        let data = obj["data"] as? [String: Any] ?? [:]
        let list = data["shop_order_list"] as? [[String: Any]] ?? []
        let total = JSON.int(data["total"]) ?? 0
        return PolledPage(orders: list.compactMap { o in
            guard let id = JSON.string(o["order_id"]) else { return nil }
            // order_status 2: paid, awaiting shipment.
            guard (JSON.int(o["order_status"]) ?? 2) == 2 else { return nil }
            return (id, JSON.int(o["update_time"]) ?? to, Array(JSON.encode(o).utf8))
        }, hasMore: Int64(page * pageSize) < total)
    }

    public func refresh(_ tokens: ShopTokens) async throws(PollError) -> ShopTokens {
        let obj = try await call("token.refresh",
                                 param: ["grant_type": "refresh_token", "refresh_token": tokens.refreshToken], accessToken: nil)
        guard let data = obj["data"] as? [String: Any], let access = JSON.string(data["access_token"]) else {
            throw .failed("token.refresh answered without data.access_token")
        }
        return ShopTokens(accessToken: access, refreshToken: JSON.string(data["refresh_token"]) ?? tokens.refreshToken)
    }
}
