import AsyncHTTPClient
import Foundation
import GRDB
import Model
import Synchronization

/// Exchanges a shop's refresh token for a new token pair through the platform's OAuth API.
public protocol TokenRefresher: Sendable {
    func refresh(_ tokens: ShopTokens) async throws(ConnectorError) -> ShopTokens
}

/// The OAuth tokens ingest's order-detail calls use, per shop: the configured pair
/// (`connectors.<platform>.accessTokens`, `shop=accessToken[:refreshToken];…`, `*` for every shop)
/// until the platform rejects it, then the pair a refresh returned. Refreshed pairs are kept in
/// the connectors' SQLite database (`shop_tokens`) so they survive a restart (Douyin, Kuaishou
/// and TikTok invalidate the old refresh token when they issue a new one); one refresh per shop
/// runs at a time however many pushes arrive. Changing the configured access token (a merchant
/// who re-authorised the app) takes precedence over a stored pair.
public final class ShopTokenBook: Sendable {
    public let platform: Platform
    let configured: [String: ShopTokens]
    let store = Mutex<DatabaseQueue?>(nil)
    let cache = Mutex<[String: ShopTokens]>([:])
    let renewals = Mutex<[String: Task<ShopTokens, any Error>]>([:])

    public init(platform: Platform, tokens: [String: ShopTokens]) {
        self.platform = platform
        self.configured = tokens
    }

    /// Parses `shop=accessToken[:refreshToken];…` (`*=…` applies to every shop).
    public static func parse(platform: Platform, _ text: String) -> ShopTokenBook {
        var tokens: [String: ShopTokens] = [:]
        for (shop, pair) in AccessTokens.parse(text).tokens {
            let parts = pair.split(separator: ":", maxSplits: 1).map(String.init)
            tokens[shop] = ShopTokens(accessToken: parts.first ?? "", refreshToken: parts.count > 1 ? parts[1] : "")
        }
        return ShopTokenBook(platform: platform, tokens: tokens)
    }

    /// Keeps refreshed pairs in `database` (the connectors' ledger) from now on.
    public func attach(_ database: DatabaseQueue) throws {
        try database.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS shop_tokens (
                    platform TEXT NOT NULL, shop_key TEXT NOT NULL,
                    configured_access_token TEXT NOT NULL, access_token TEXT NOT NULL, refresh_token TEXT NOT NULL,
                    refreshed_at_us INTEGER NOT NULL,
                    PRIMARY KEY (platform, shop_key)) WITHOUT ROWID;
                """)
        }
        store.withLock { $0 = database }
        cache.withLock { $0.removeAll() }
    }

    /// The key a shop's tokens are configured under (the shop, or `*`).
    func key(_ shop: String) throws(ConnectorError) -> String {
        if configured[shop] != nil { return shop }
        if configured["*"] != nil { return "*" }
        throw .notConfigured("no \(platform.slug) access token for shop \(shop): set connectors.\(platform.slug).accessTokens")
    }

    /// The shop's current pair.
    public func tokens(_ shop: String) throws(ConnectorError) -> ShopTokens {
        let key = try key(shop)
        if let cached = cache.withLock({ $0[key] }) { return cached }
        let seed = configured[key]!
        var current = seed
        if let database = store.withLock({ $0 }) {
            let row = try? database.read { db in
                try Row.fetchOne(db, sql: """
                    SELECT configured_access_token, access_token, refresh_token FROM shop_tokens WHERE platform = ? AND shop_key = ?
                    """, arguments: [platform.slug, key])
            }
            if let row, (row[0] as String) == seed.accessToken { current = ShopTokens(accessToken: row[1], refreshToken: row[2]) }
        }
        cache.withLock { $0[key] = current }
        return current
    }

    /// The shop's access token.
    public func accessToken(_ shop: String) throws(ConnectorError) -> String { try tokens(shop).accessToken }

    /// After the platform rejected `rejected` as expired: a fresh access token — the one another
    /// call already obtained, or a new pair from `refresher`, stored before it is used.
    public func renew(_ shop: String, rejected: String, using refresher: any TokenRefresher) async throws(ConnectorError) -> String {
        let key = try key(shop)
        let current = try tokens(shop)
        if current.accessToken != rejected { return current.accessToken }
        guard !current.refreshToken.isEmpty else {
            throw .retryLater("\(platform.slug) access token of shop \(shop) expired and no refresh token is configured: re-authorise the app and set connectors.\(platform.slug).accessTokens (shop=accessToken:refreshToken)")
        }
        let task = renewals.withLock { running -> Task<ShopTokens, any Error> in
            if let task = running[key] { return task }
            let task = Task<ShopTokens, any Error> {
                defer { _ = self.renewals.withLock { $0.removeValue(forKey: key) } }
                let fresh = try await refresher.refresh(current)
                try self.save(key, fresh)
                return fresh
            }
            running[key] = task
            return task
        }
        do {
            return try await task.value.accessToken
        } catch let e as ConnectorError {
            throw e
        } catch {
            throw .retryLater("\(platform.slug) token refresh of shop \(shop) failed: \(error)")
        }
    }

    func save(_ key: String, _ fresh: ShopTokens) throws {
        if let database = store.withLock({ $0 }) {
            try database.write { db in
                try db.execute(sql: """
                    INSERT INTO shop_tokens (platform, shop_key, configured_access_token, access_token, refresh_token, refreshed_at_us)
                    VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (platform, shop_key) DO UPDATE SET configured_access_token = excluded.configured_access_token,
                        access_token = excluded.access_token, refresh_token = excluded.refresh_token, refreshed_at_us = excluded.refreshed_at_us
                    """, arguments: [platform.slug, key, configured[key]!.accessToken, fresh.accessToken, fresh.refreshToken,
                                     Int64(Date().timeIntervalSince1970 * 1_000_000)])
            }
        }
        cache.withLock { $0[key] = fresh }
    }
}

/// Douyin shop `token.refresh` (`grant_type=refresh_token`), signed as every Douyin call, no access token.
struct DouyinTokenRefresher: TokenRefresher {
    let gateway: DouyinGateway

    func refresh(_ tokens: ShopTokens) async throws(ConnectorError) -> ShopTokens {
        let r = try await gateway.call("token.refresh", ["grant_type": "refresh_token", "refresh_token": tokens.refreshToken], accessToken: nil)
        guard r.code == 10000, let data = r.body["data"] as? [String: Any], let access = JSON.string(data["access_token"]), !access.isEmpty else {
            throw .retryLater("Douyin token.refresh refused: \(r.text)")
        }
        return ShopTokens(accessToken: access, refreshToken: JSON.string(data["refresh_token"]) ?? tokens.refreshToken)
    }
}

/// Kuaishou `GET {base}/oauth2/refresh_token?app_id&app_secret&grant_type=refresh_token&refresh_token`
/// (`{"result":1,"access_token","refresh_token",…}`).
struct KuaishouTokenRefresher: TokenRefresher {
    let baseURL: String
    let appKey: String
    let appSecret: String
    let http: PlatformHTTP

    func refresh(_ tokens: ShopTokens) async throws(ConnectorError) -> ShopTokens {
        let q = PlatformHTTP.query(["app_id": appKey, "app_secret": appSecret, "grant_type": "refresh_token", "refresh_token": tokens.refreshToken])
        let obj = try await http.call("\(baseURL)/oauth2/refresh_token?\(q)")
        guard JSON.int(obj["result"]) == 1, let access = JSON.string(obj["access_token"]), !access.isEmpty else {
            throw .retryLater("Kuaishou oauth2/refresh_token refused \(JSON.string(obj["result"]) ?? "?"): \(JSON.string(obj["error_msg"]) ?? JSON.string(obj["error"]) ?? "")")
        }
        return ShopTokens(accessToken: access, refreshToken: JSON.string(obj["refresh_token"]) ?? tokens.refreshToken)
    }
}

/// TikTok Shop `GET {auth base}/api/v2/token/refresh?app_key&app_secret&refresh_token&grant_type=refresh_token`
/// (`{"code":0,"data":{"access_token","refresh_token",…}}`).
struct TikTokTokenRefresher: TokenRefresher {
    let authBaseURL: String
    let appKey: String
    let appSecret: String
    let http: PlatformHTTP

    func refresh(_ tokens: ShopTokens) async throws(ConnectorError) -> ShopTokens {
        let q = PlatformHTTP.query(["app_key": appKey, "app_secret": appSecret, "grant_type": "refresh_token", "refresh_token": tokens.refreshToken])
        let obj = try await http.call("\(authBaseURL)/api/v2/token/refresh?\(q)")
        guard JSON.int(obj["code"]) == 0, let data = obj["data"] as? [String: Any], let access = JSON.string(data["access_token"]), !access.isEmpty else {
            throw .retryLater("TikTok Shop token refresh refused \(JSON.string(obj["code"]) ?? "?"): \(JSON.string(obj["message"]) ?? "")")
        }
        return ShopTokens(accessToken: access, refreshToken: JSON.string(data["refresh_token"]) ?? tokens.refreshToken)
    }
}
