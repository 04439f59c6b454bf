import AsyncHTTPClient
import Crypto
import Foundation
import Model
import NIOCore
import NIOHTTP1
import Synchronization

/// Fetches one order's detail from the platform (push messages carry only ids), with the
/// platform's request signing. Returns the decoded JSON response.
public protocol OrderDetailSource: Sendable {
    func orderDetail(shopID: String, platformOrderID: String) async throws(ConnectorError) -> Any
}

/// Per-shop access tokens (`shop=token;shop2=token`), as the merchant authorised the app.
public struct AccessTokens: Sendable {
    public var tokens: [String: String]
    public init(_ tokens: [String: String]) { self.tokens = tokens }

    public static func parse(_ text: String) -> AccessTokens {
        var t: [String: String] = [:]
        for entry in text.split(separator: ";") {
            let kv = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, !kv[0].isEmpty { t[kv[0]] = kv[1] }
        }
        return AccessTokens(t)
    }

    func token(_ shop: String) throws(ConnectorError) -> String {
        guard let t = tokens[shop] ?? tokens["*"] else { throw .notConfigured("no access token for shop \(shop)") }
        return t
    }
}

/// Request signatures of the platforms' open APIs.
public enum APISigning {
    /// Douyin shop: `md5(app_secret + "app_key" + k + "method" + m + "param_json" + p + "timestamp" + t + "v" + v + app_secret)`.
    public static func douyin(appKey: String, appSecret: String, method: String, paramJSON: String, timestamp: String, version: String = "2") -> String {
        Digests.md5Hex(Data((appSecret + "app_key\(appKey)method\(method)param_json\(paramJSON)timestamp\(timestamp)v\(version)" + appSecret).utf8))
    }

    /// Kuaishou shop: `md5("access_token=…&appkey=…&method=…&param=…&signMethod=MD5&timestamp=…&version=1&signSecret=…")`.
    public static func kuaishou(params: [String: String], signSecret: String) -> String {
        let text = params.filter { $0.key != "sign" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        return Digests.md5Hex(Data((text + "&signSecret=" + signSecret).utf8))
    }

    /// Taobao TOP, JD JOS and Pinduoduo: `upper(md5(secret + k1v1k2v2… (sorted, without sign) + secret))`.
    public static func md5Wrapped(params: [String: String], secret: String) -> String {
        let pairs = params.filter { $0.key != "sign" }.sorted { $0.key < $1.key }.map { $0.key + $0.value }.joined()
        return Digests.md5Hex(Data((secret + pairs + secret).utf8)).uppercased()
    }

    /// Taobao TOP with `sign_method=hmac`: `upper(hex(HMAC-MD5(secret, k1v1k2v2…)))`.
    public static func topHMAC(params: [String: String], secret: String) -> String {
        let pairs = params.filter { $0.key != "sign" }.sorted { $0.key < $1.key }.map { $0.key + $0.value }.joined()
        return Digests.hex(HMAC<Insecure.MD5>.authenticationCode(for: Data(pairs.utf8), using: SymmetricKey(data: Data(secret.utf8)))).uppercased()
    }

    /// TikTok Shop (202309 APIs): `hex(HMAC-SHA256(secret, secret + path + sorted(k + v, without sign and access_token) + body + secret))`.
    public static func tiktok(path: String, params: [String: String], body: String, appSecret: String) -> String {
        let pairs = params.filter { $0.key != "sign" && $0.key != "access_token" }.sorted { $0.key < $1.key }.map { $0.key + $0.value }.joined()
        return Digests.hmacSHA256Hex(Data((appSecret + path + pairs + body + appSecret).utf8), key: appSecret)
    }
}

/// Shared HTTP plumbing: one GET/POST with a timeout, JSON response, platform error mapping.
package struct PlatformHTTP: Sendable {
    package let client: HTTPClient
    package var timeout: TimeAmount = .seconds(10)

    package init(client: HTTPClient, timeout: TimeAmount = .seconds(10)) {
        self.client = client
        self.timeout = timeout
    }

    /// A request with `headers` and, when given, a JSON `body`.
    package static func request(_ url: String, method: HTTPMethod, headers: [(String, String)], json body: String?) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        return request
    }

    package func call(_ url: String, method: HTTPMethod = .GET, headers: [(String, String)] = [], body: String? = nil) async throws(ConnectorError) -> [String: Any] {
        let request = Self.request(url, method: method, headers: headers, json: body)
        let bytes: ByteBuffer
        let status: UInt
        do {
            let response = try await client.execute(request, timeout: timeout)
            status = response.status.code
            bytes = try await response.body.collect(upTo: 4 << 20)
        } catch {
            throw .retryLater("order-detail call failed: \(error)")
        }
        guard (200..<300).contains(status) else { throw .retryLater("order-detail call answered HTTP \(status)") }
        guard let obj = try? JSON.object(Array(bytes.readableBytesView)) else { throw .retryLater("order-detail response is not JSON") }
        return obj
    }

    /// An `application/x-www-form-urlencoded` POST (the TOP, JOS and Pinduoduo gateways).
    package func form(_ url: String, _ params: [String: String]) async throws(PollError) -> [String: Any] {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded;charset=utf-8")
        request.body = .bytes(ByteBuffer(string: Self.query(params)))
        do {
            let response = try await client.execute(request, timeout: timeout)
            let bytes = try await response.body.collect(upTo: 16 << 20)
            guard (200..<300).contains(response.status.code) else { throw PollError.failed("HTTP \(response.status.code)") }
            guard let obj = try? JSON.object(Array(bytes.readableBytesView)) else { throw PollError.failed("response is not a JSON object") }
            return obj
        } catch let e as PollError {
            throw e
        } catch {
            throw .failed("\(error)")
        }
    }

    package static func query(_ params: [String: String]) -> String {
        var allowed = CharacterSet.urlQueryAllowed
        allowed.remove(charactersIn: "&=+?/:,{}\"")
        return params.sorted { $0.key < $1.key }
            .map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.value)" }.joined(separator: "&")
    }
}

/// One signed call to Douyin shop's open API: `GET {base}/<method with / for .>?app_key&method&param_json&timestamp&v=2&sign[&access_token]`.
/// Returns the response code (10000 is success) with the body; transport failures throw.
package struct DouyinGateway: Sendable {
    package var baseURL: String
    package var appKey: String
    package var appSecret: String
    package let http: PlatformHTTP

    package init(baseURL: String, appKey: String, appSecret: String, http: PlatformHTTP) {
        self.baseURL = baseURL
        self.appKey = appKey
        self.appSecret = appSecret
        self.http = http
    }

    package static let timestampFormat: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "Asia/Shanghai")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f
    }()

    package func call(_ method: String, _ param: [String: Any], accessToken: String?) async throws(ConnectorError) -> (code: Int64, text: String, body: [String: Any]) {
        let paramJSON = JSON.encode(param)
        let timestamp = Self.timestampFormat.string(from: Date())
        var params = ["app_key": appKey, "method": method, "param_json": paramJSON, "timestamp": timestamp, "v": "2",
                      "sign": APISigning.douyin(appKey: appKey, appSecret: appSecret, method: method, paramJSON: paramJSON, timestamp: timestamp)]
        if let accessToken { params["access_token"] = accessToken }
        let obj = try await http.call("\(baseURL)/\(method.replacingOccurrences(of: ".", with: "/"))?\(PlatformHTTP.query(params))")
        let code = JSON.int(obj["code"]) ?? -1
        return (code, "Douyin \(method) \(code): \(JSON.string(obj["msg"]) ?? "") \(JSON.string(obj["sub_code"]) ?? "") \(JSON.string(obj["sub_msg"]) ?? "")", obj)
    }

    /// Whether an answer says the access token expired or no longer exists (code 40003 with
    /// sub-code `isv.access-token-expired` or `isv.access-token-no-existed`): refresh it.
    package static func tokenExpired(_ body: [String: Any]) -> Bool {
        DouyinPollAPI.expiredTokenSubCodes.contains(JSON.string(body["sub_code"]) ?? "")
    }
}

/// Douyin shop `order.orderDetail` (`GET {base}/order/orderDetail`); an expired access token
/// (code 40003, `isv.access-token-expired` / `isv.access-token-no-existed`) is refreshed once
/// with `token.refresh` and the call repeated.
public struct DouyinOrderAPI: OrderDetailSource {
    public var tokens: ShopTokenBook
    let gateway: DouyinGateway

    public init(baseURL: String, appKey: String, appSecret: String, tokens: ShopTokenBook, client: HTTPClient) {
        self.tokens = tokens
        self.gateway = DouyinGateway(baseURL: baseURL, appKey: appKey, appSecret: appSecret, http: PlatformHTTP(client: client))
    }

    public func orderDetail(shopID: String, platformOrderID: String) async throws(ConnectorError) -> Any {
        var token = try tokens.accessToken(shopID)
        for attempt in 0..<2 {
            let r = try await gateway.call("order.orderDetail", ["shop_order_id": platformOrderID], accessToken: token)
            if r.code == 10000 { return r.body }
            guard attempt == 0, DouyinGateway.tokenExpired(r.body) else { throw .retryLater(r.text) }
            token = try await tokens.renew(shopID, rejected: token, using: DouyinTokenRefresher(gateway: gateway))
        }
        throw .retryLater("Douyin order.orderDetail: access token rejected after refresh")
    }
}

/// Kuaishou `open.order.detail` (`GET {base}/open/order/detail`); an expired access token is
/// refreshed once with `oauth2/refresh_token` and the call repeated.
public struct KuaishouOrderAPI: OrderDetailSource {
    public var baseURL: String
    public var appKey: String
    public var signSecret: String
    public var tokens: ShopTokenBook
    let refresher: KuaishouTokenRefresher
    let http: PlatformHTTP

    /// - Parameter appSecret: the app secret (for token refresh; not the sign secret).
    public init(baseURL: String, appKey: String, signSecret: String, appSecret: String = "", tokens: ShopTokenBook, client: HTTPClient) {
        self.baseURL = baseURL
        self.appKey = appKey
        self.signSecret = signSecret
        self.tokens = tokens
        self.http = PlatformHTTP(client: client)
        self.refresher = KuaishouTokenRefresher(baseURL: baseURL, appKey: appKey, appSecret: appSecret, http: http)
    }

    /// Kuaishou answers an expired or invalid token with result 24 or 28 and an `error_msg`
    /// naming the access token.
    static func tokenExpired(_ obj: [String: Any]) -> Bool {
        let message = (JSON.string(obj["error_msg"]) ?? "").lowercased()
        return message.contains("access_token") || ([24, 28].contains(JSON.int(obj["result"]) ?? 0) && message.contains("token"))
    }

    public func orderDetail(shopID: String, platformOrderID: String) async throws(ConnectorError) -> Any {
        var token = try tokens.accessToken(shopID)
        for attempt in 0..<2 {
            var params = ["appkey": appKey, "method": "open.order.detail", "version": "1", "access_token": token,
                          "param": JSON.encode(["oid": Int64(platformOrderID) as Any? ?? platformOrderID]),
                          "timestamp": String(Int64(Date().timeIntervalSince1970 * 1000)), "signMethod": "MD5"]
            params["sign"] = APISigning.kuaishou(params: params, signSecret: signSecret)
            let obj = try await http.call("\(baseURL)/open/order/detail?\(PlatformHTTP.query(params))")
            if JSON.int(obj["result"]) == 1 { return obj }
            guard attempt == 0, Self.tokenExpired(obj), !refresher.appSecret.isEmpty else {
                throw .retryLater("Kuaishou open.order.detail error \(JSON.string(obj["result"]) ?? "?"): \(JSON.string(obj["error_msg"]) ?? "")")
            }
            token = try await tokens.renew(shopID, rejected: token, using: refresher)
        }
        throw .retryLater("Kuaishou open.order.detail: access token rejected after refresh")
    }
}

/// WeChat Channels `POST {base}/channels/ec/order/get?access_token=…`.
public struct WeChatOrderAPI: OrderDetailSource {
    public var baseURL: String
    let tokens: WeChatAccessToken
    let http: PlatformHTTP

    /// With a fixed access token (issued elsewhere).
    public init(baseURL: String, accessToken: String, client: HTTPClient) {
        self.baseURL = baseURL
        self.tokens = WeChatAccessToken(fixed: accessToken)
        self.http = PlatformHTTP(client: client)
    }

    /// Fetching (and renewing) the shop's access token itself with its app id and secret
    /// (`POST /cgi-bin/stable_token`, grant `client_credential`).
    public init(baseURL: String, appID: String, appSecret: String, client: HTTPClient) {
        self.baseURL = baseURL
        self.http = PlatformHTTP(client: client)
        self.tokens = WeChatAccessToken(baseURL: baseURL, appID: appID, appSecret: appSecret, http: http)
    }

    public func orderDetail(shopID: String, platformOrderID: String) async throws(ConnectorError) -> Any {
        for attempt in 0..<2 {
            let token = try await tokens.current(forceRefresh: attempt > 0)
            let obj = try await http.call("\(baseURL)/channels/ec/order/get?access_token=\(token)", method: .POST,
                                          body: JSON.encode(["order_id": platformOrderID]))
            let code = JSON.int(obj["errcode"]) ?? 0
            if code == 0 { return obj }
            // 40001 invalid credential, 42001 expired, 40014 invalid token: renew once and retry.
            if [40001, 42001, 40014].contains(code), tokens.canRefresh, attempt == 0 { continue }
            throw .retryLater("WeChat order/get error \(code): \(JSON.string(obj["errmsg"]) ?? "")")
        }
        throw .retryLater("WeChat access token rejected after renewal")
    }
}

/// The shop's WeChat access token: cached until shortly before `expires_in`, renewed through
/// `stable_token` (which returns the same token until it nears expiry, so several ingest
/// instances do not invalidate each other's tokens).
package final class WeChatAccessToken: Sendable {
    package let fixed: String?
    package let baseURL: String
    package let appID: String
    package let appSecret: String
    package let http: PlatformHTTP?
    package let cached = Mutex<(token: String, expires: Date)?>(nil)

    package init(fixed: String) {
        self.fixed = fixed
        baseURL = ""; appID = ""; appSecret = ""; http = nil
    }

    package init(baseURL: String, appID: String, appSecret: String, http: PlatformHTTP) {
        fixed = nil
        self.baseURL = baseURL
        self.appID = appID
        self.appSecret = appSecret
        self.http = http
    }

    package var canRefresh: Bool { fixed == nil }

    package func current(forceRefresh: Bool) async throws(ConnectorError) -> String {
        if let fixed { return fixed }
        if !forceRefresh, let c = cached.withLock({ $0 }), c.expires > Date() { return c.token }
        guard let http else { throw .notConfigured("no WeChat app secret") }
        let obj = try await http.call("\(baseURL)/cgi-bin/stable_token", method: .POST, body: JSON.encode(
            ["grant_type": "client_credential", "appid": appID, "secret": appSecret, "force_refresh": forceRefresh]))
        guard let token = JSON.string(obj["access_token"]), !token.isEmpty else {
            throw .retryLater("WeChat stable_token error \(JSON.string(obj["errcode"]) ?? "?"): \(JSON.string(obj["errmsg"]) ?? "")")
        }
        let ttl = Double(JSON.int(obj["expires_in"]) ?? 7200)
        cached.withLock { $0 = (token, Date().addingTimeInterval(max(60, ttl - 300))) }
        return token
    }
}

/// TikTok Shop `GET {base}/order/202309/orders?ids=…`; an expired access token (code 105002)
/// is refreshed once at the auth service (`/api/v2/token/refresh`) and the call repeated.
public struct TikTokOrderAPI: OrderDetailSource {
    public var baseURL: String
    public var appKey: String
    public var appSecret: String
    public var tokens: ShopTokenBook
    /// Per-shop `shop_cipher` from Get Authorized Shops.
    public var shopCiphers: AccessTokens
    let refresher: TikTokTokenRefresher
    let http: PlatformHTTP

    /// - Parameter authBaseURL: the token service (default `https://auth.tiktok-shops.com`).
    public init(baseURL: String, authBaseURL: String = "https://auth.tiktok-shops.com", appKey: String, appSecret: String,
                tokens: ShopTokenBook, shopCiphers: AccessTokens, client: HTTPClient) {
        self.baseURL = baseURL
        self.appKey = appKey
        self.appSecret = appSecret
        self.tokens = tokens
        self.shopCiphers = shopCiphers
        self.http = PlatformHTTP(client: client)
        self.refresher = TikTokTokenRefresher(authBaseURL: authBaseURL, appKey: appKey, appSecret: appSecret, http: http)
    }

    /// 105002: expired credentials (105001 invalid credentials is not cured by a refresh).
    static let expiredToken: Int64 = 105002

    public func orderDetail(shopID: String, platformOrderID: String) async throws(ConnectorError) -> Any {
        let path = "/order/202309/orders"
        var token = try tokens.accessToken(shopID)
        for attempt in 0..<2 {
            var params = ["app_key": appKey, "timestamp": String(Int64(Date().timeIntervalSince1970)), "ids": platformOrderID,
                          "shop_cipher": (try? shopCiphers.token(shopID)) ?? ""]
            params["sign"] = APISigning.tiktok(path: path, params: params, body: "", appSecret: appSecret)
            let obj = try await http.call("\(baseURL)\(path)?\(PlatformHTTP.query(params))", headers: [("x-tts-access-token", token)])
            if JSON.int(obj["code"]) == 0 { return obj }
            guard attempt == 0, JSON.int(obj["code"]) == Self.expiredToken else {
                throw .retryLater("TikTok Shop Get Order Detail error \(JSON.string(obj["code"]) ?? "?"): \(JSON.string(obj["message"]) ?? "")")
            }
            token = try await tokens.renew(shopID, rejected: token, using: refresher)
        }
        throw .retryLater("TikTok Shop Get Order Detail: access token rejected after refresh")
    }
}
