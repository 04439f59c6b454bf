import Bootstrap
import AsyncHTTPClient
import Foundation
import Ingest
import Logging
import Model
import Worker

/// Which platform connectors ingest runs and with which credentials, read from the
/// configuration (`connectors.<platform>.*`, environment `LIVESYNC_CONNECTORS_<PLATFORM>_*`).
/// A platform is enabled by setting its secrets; nothing is enabled by default.
///
/// - `connectors.douyin.appKey`, `.appSecret`, `.apiBase` (default `https://openapi-fxg.jinritemai.com`)
/// - `connectors.kuaishou.appKey`, `.signSecret`, `.messageSecret`, `.apiBase` (default `https://openapi.kwaixiaodian.com`)
/// - `connectors.wechat.token`, `.encodingAesKey`, `.appId`, `.shopId`, `.appSecret` (the token is then fetched and
///   renewed with `stable_token`) or a fixed `.accessToken`, `.allowPlaintext` (default false),
///   `.apiBase` (default `https://api.weixin.qq.com`)
/// - `connectors.tiktok.appKey`, `.appSecret`, `.shopCiphers` (`shop=cipher;…`), `.apiBase` (default `https://open-api.tiktokglobalshop.com`)
/// - per platform: `.accessTokens` (`shop=accessToken[:refreshToken];…`, `*=…` for all; with a refresh token an
///   expired access token is refreshed — Kuaishou also needs `.appSecret`, TikTok's token service is `.authBase`,
///   default `https://auth.tiktok-shops.com`), `.warehouse` (default `main`),
///   `.mapping.<field>` (see `FieldMapping`)
/// - polling (`connectors.poll.<platform>.*` for taobao, jd, pinduoduo, douyin): `.appKey`, `.appSecret`
///   (Pinduoduo: client id and secret), `.gateway` (the API base), `.shops` (`shop=accessToken:refreshToken;…`),
///   `.warehouse`, `.mapping.<field>`; `connectors.poll.intervalSeconds` (default 30), `.overlapSeconds` (default 300)
/// - `connectors.ledger`: the message ledger (default `<dataDir>/connectors.sqlite`)
/// - `pii.key` (base64 of 32 bytes) or `pii.keyFile`: seal buyer data (AES-256-GCM); `pii.keyId` (default `k1`).
public struct ConnectorsConfiguration: Sendable {
    public var platforms: [PlatformWiring]
    public var ledgerPath: String
    public var sealer: PIISealer?
    /// Order-search pollers to run: the API, its shops with their tokens, the default warehouse.
    public var polls: [(api: any OrderPollAPI, shops: [String: ShopTokens], warehouse: String, mapping: FieldMapping)] = []
    public var poll = PollerConfiguration()
    /// The push connectors' per-shop tokens: `attach` them to the ledger so refreshed pairs persist.
    public var tokenBooks: [ShopTokenBook] = []

    public init(platforms: [PlatformWiring], ledgerPath: String, sealer: PIISealer?) {
        self.platforms = platforms
        self.ledgerPath = ledgerPath
        self.sealer = sealer
    }

    /// One poller per configured shop, sharing the publisher and ledger.
    public func pollers(publisher: OrderPublisher, ledger: MessageLedger, logger: Logger) -> [OrderPoller] {
        polls.flatMap { entry in
            entry.shops.sorted { $0.key < $1.key }.map { shop, tokens in
                OrderPoller(api: entry.api, shopID: shop, mapping: entry.mapping, defaultWarehouse: entry.warehouse, configuration: poll,
                            publisher: publisher, ledger: ledger, initialTokens: tokens, logger: logger)
            }
        }
    }

    public static func load(_ settings: LiveSyncConfig, client: HTTPClient) throws -> ConnectorsConfiguration {
        func s(_ key: String) -> String? {
            let v = settings.optionalString("connectors.\(key)")
            return (v?.isEmpty ?? true) ? nil : v
        }
        func mapping(_ platform: Platform) -> FieldMapping {
            FieldMapping.defaults(for: platform).overridden { s("\(platform.slug).mapping.\($0)") }
        }
        func warehouse(_ p: String) -> String { s("\(p).warehouse") ?? "main" }
        var books: [ShopTokenBook] = []
        func tokens(_ platform: Platform) -> ShopTokenBook {
            let book = ShopTokenBook.parse(platform: platform, s("\(platform.slug).accessTokens") ?? "")
            books.append(book)
            return book
        }
        var wirings: [PlatformWiring] = []
        if let key = s("douyin.appKey"), let secret = s("douyin.appSecret") {
            wirings.append(PlatformWiring(
                connector: DouyinConnector(appKey: key, appSecret: secret),
                details: DouyinOrderAPI(baseURL: s("douyin.apiBase") ?? "https://openapi-fxg.jinritemai.com", appKey: key, appSecret: secret,
                                        tokens: tokens(.douyin), client: client),
                mapping: mapping(.douyin), defaultWarehouse: warehouse("douyin")))
        }
        if let key = s("kuaishou.appKey"), let msg = s("kuaishou.messageSecret") {
            // Without `signSecret` the shop is push-only: orders come from the pushed messages,
            // no order-detail call is made (as for WeChat without credentials).
            wirings.append(PlatformWiring(
                connector: try KuaishouConnector(appKey: key, messageSecret: msg),
                details: s("kuaishou.signSecret").map { sign in
                    KuaishouOrderAPI(baseURL: s("kuaishou.apiBase") ?? "https://openapi.kwaixiaodian.com", appKey: key, signSecret: sign,
                                     appSecret: s("kuaishou.appSecret") ?? "", tokens: tokens(.kuaishou), client: client)
                },
                mapping: mapping(.kuaishou), defaultWarehouse: warehouse("kuaishou")))
        }
        if let token = s("wechat.token"), let aes = s("wechat.encodingAesKey") {
            guard let app = s("wechat.appId") else { throw ConfigurationError("connectors.wechat.appId is required with wechat.token") }
            var connector = WeChatChannelsConnector(crypto: try WeChatMessageCrypto(token: token, encodingAESKey: aes, appID: app),
                                                    shopID: s("wechat.shopId") ?? app)
            connector.allowPlaintext = s("wechat.allowPlaintext") == "true"
            wirings.append(PlatformWiring(
                connector: connector,
                details: { () -> WeChatOrderAPI? in
                    let base = s("wechat.apiBase") ?? "https://api.weixin.qq.com"
                    if let secret = s("wechat.appSecret") { return WeChatOrderAPI(baseURL: base, appID: app, appSecret: secret, client: client) }
                    return s("wechat.accessToken").map { WeChatOrderAPI(baseURL: base, accessToken: $0, client: client) }
                }(),
                mapping: mapping(.wechatChannels), defaultWarehouse: warehouse("wechat")))
        }
        if let key = s("tiktok.appKey"), let secret = s("tiktok.appSecret") {
            wirings.append(PlatformWiring(
                connector: TikTokShopConnector(appKey: key, appSecret: secret),
                details: TikTokOrderAPI(baseURL: s("tiktok.apiBase") ?? "https://open-api.tiktokglobalshop.com",
                                        authBaseURL: s("tiktok.authBase") ?? "https://auth.tiktok-shops.com", appKey: key, appSecret: secret,
                                        tokens: tokens(.tiktokShop), shopCiphers: AccessTokens.parse(s("tiktok.shopCiphers") ?? ""), client: client),
                mapping: mapping(.tiktokShop), defaultWarehouse: warehouse("tiktok")))
        }
        let sealer = try PIISealer.load(base64: settings.optionalString("pii.key"), file: settings.optionalString("pii.keyFile"),
                                        keyID: settings.string("pii.keyId", default: "k1"))
        var polls: [(api: any OrderPollAPI, shops: [String: ShopTokens], warehouse: String, mapping: FieldMapping)] = []
        for platform in ["taobao", "jd", "pinduoduo", "douyin"] {
            guard let key = s("poll.\(platform).appKey"), let secret = s("poll.\(platform).appSecret") else { continue }
            var shops: [String: ShopTokens] = [:]
            for (shop, pair) in AccessTokens.parse(s("poll.\(platform).shops") ?? "").tokens {
                let parts = pair.split(separator: ":", maxSplits: 1).map(String.init)
                shops[shop] = ShopTokens(accessToken: parts[0], refreshToken: parts.count > 1 ? parts[1] : "")
            }
            guard !shops.isEmpty else { throw ConfigurationError("connectors.poll.\(platform).shops is required (shop=accessToken:refreshToken;…)") }
            let gateway = s("poll.\(platform).gateway")
            let api: any OrderPollAPI = switch platform {
            case "taobao": TaobaoPollAPI(gateway: gateway ?? "https://eco.taobao.com/router/rest", appKey: key, appSecret: secret,
                                         signMethod: s("poll.taobao.signMethod") ?? "md5", client: client)
            case "jd": JDPollAPI(gateway: gateway ?? "https://api.jd.com/routerjson", appKey: key, appSecret: secret, client: client)
            case "pinduoduo": PinduoduoPollAPI(gateway: gateway ?? "https://gw-api.pinduoduo.com/api/router", clientID: key, clientSecret: secret, client: client)
            default: DouyinPollAPI(baseURL: gateway ?? "https://openapi-fxg.jinritemai.com", appKey: key, appSecret: secret, client: client)
            }
            // Search results are order objects without the detail API's envelope: `connectors.poll.<p>.mapping.*`
            // overrides first, then the platform's `connectors.<p>.mapping.*` (except `orderRoot`).
            let base = api.platform == .douyin ? FieldMapping.douyinSearch : FieldMapping.defaults(for: api.platform)
            let pollMapping = base.overridden { field in
                s("poll.\(platform).mapping.\(field)") ?? (field == "orderRoot" ? nil : s("\(platform).mapping.\(field)"))
            }
            polls.append((api, shops, s("poll.\(platform).warehouse") ?? "main", pollMapping))
        }
        var poll = PollerConfiguration()
        poll.interval = .seconds(try settings.int("connectors.poll.intervalSeconds", default: 30))
        poll.overlapSeconds = Int64(try settings.int("connectors.poll.overlapSeconds", default: 300))
        let ledger = s("ledger") ?? "\(settings.string("dataDir", default: "var/data"))/connectors.sqlite"
        var result = ConnectorsConfiguration(platforms: wirings, ledgerPath: ledger, sealer: sealer)
        result.polls = polls
        result.poll = poll
        result.tokenBooks = books
        return result
    }
}
