import Worker
import Kafka
import Ingest
import Connectors
import Foundation
import Hummingbird
import Model

/// The fake platforms' OAuth side: access tokens that expire (`expireAccessToken`) and the
/// platforms' refresh endpoints, each checking what the platform checks and rotating the
/// refresh token as the platforms do (the old one stops working).
extension FakePlatformAPI {
    /// From now on the current access token is answered as expired, as a platform does once
    /// its lifetime is over; only a refresh issues a working one.
    public func expireAccessToken() {
        tokenState.withLock { s in
            if let valid = s.valid { s.retired.insert(valid) }
            s.valid = nil
        }
    }

    func retired(_ token: String?) -> Bool {
        guard let token else { return false }
        return tokenState.withLock { $0.retired.contains(token) }
    }

    /// Each platform's "access token expired" answer.
    func expired(_ platform: Platform) -> Response {
        expiredAnswers.add(1, ordering: .relaxed)
        return switch platform {
        case .douyin: Self.json(#"{"code":40003,"msg":"非法的参数","sub_code":"isv.access-token-expired","sub_msg":"access_token已过期"}"#)
        case .kuaishou: Self.json(#"{"result":28,"error_msg":"access_token expired"}"#)
        default: Self.json(#"{"code":105002,"message":"Expired credentials","data":{}}"#)
        }
    }

    /// Issues a new pair for `refreshToken` if it is the current one.
    func grant(_ refreshToken: String?) -> (access: String, refresh: String)? {
        tokenState.withLock { s -> (String, String)? in
            guard let refreshToken, refreshToken == s.refresh else { return nil }
            if let valid = s.valid { s.retired.insert(valid) }
            s.generation += 1
            s.valid = "dev-access-token-r\(s.generation)"
            s.refresh = "dev-refresh-token-r\(s.generation)"
            refreshes.add(1, ordering: .relaxed)
            return (s.valid!, s.refresh)
        }
    }

    func tokenRoutes(_ router: Router<BasicRequestContext>) {
        let c = credentials
        // Douyin `token.refresh`: signed like every Douyin call, without an access token.
        router.get("/token/refresh") { request, _ in
            let q = Self.query(request)
            guard q["method"] == "token.refresh", let pj = q["param_json"], let ts = q["timestamp"], q["access_token"] == nil,
                  q["sign"] == APISigning.douyin(appKey: c.douyinAppKey, appSecret: c.douyinAppSecret, method: "token.refresh", paramJSON: pj, timestamp: ts),
                  let p = try? JSON.object(Array(pj.utf8)), JSON.string(p["grant_type"]) == "refresh_token" else {
                return self.refuse(#"{"code":40003,"msg":"非法的参数","sub_code":"isv.signature-invalid"}"#)
            }
            guard let pair = self.grant(JSON.string(p["refresh_token"])) else {
                return Self.json(#"{"code":50001,"msg":"平台处理失败","sub_code":"dop.token-generate-failed:token-invalid"}"#)
            }
            return Self.json(#"{"code":10000,"msg":"success","data":{"access_token":"\#(pair.access)","refresh_token":"\#(pair.refresh)","expires_in":604800}}"#)
        }
        // Kuaishou `oauth2/refresh_token`.
        router.get("/oauth2/refresh_token") { request, _ in
            let q = Self.query(request)
            guard q["app_id"] == c.kuaishouAppKey, q["app_secret"] == self.kuaishouAppSecret, q["grant_type"] == "refresh_token" else {
                return self.refuse(#"{"result":100200100,"error":"invalid_client","error_msg":"app_id or app_secret invalid"}"#)
            }
            guard let pair = self.grant(q["refresh_token"]) else {
                return Self.json(#"{"result":100200101,"error":"invalid_grant","error_msg":"refresh_token invalid"}"#)
            }
            return Self.json(#"{"result":1,"access_token":"\#(pair.access)","refresh_token":"\#(pair.refresh)","expires_in":172800}"#)
        }
        // TikTok Shop token service `api/v2/token/refresh`.
        router.get("/api/v2/token/refresh") { request, _ in
            let q = Self.query(request)
            guard q["app_key"] == c.tiktokAppKey, q["app_secret"] == c.tiktokAppSecret, q["grant_type"] == "refresh_token" else {
                return self.refuse(#"{"code":36004004,"message":"invalid app_key or app_secret"}"#)
            }
            guard let pair = self.grant(q["refresh_token"]) else {
                return Self.json(#"{"code":36004005,"message":"invalid refresh_token"}"#)
            }
            return Self.json(#"{"code":0,"message":"success","data":{"access_token":"\#(pair.access)","refresh_token":"\#(pair.refresh)","access_token_expire_in":604800}}"#)
        }
    }
}
