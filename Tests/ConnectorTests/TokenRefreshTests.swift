import LiveSyncTesting
import AsyncHTTPClient
import Connectors
import Foundation
import GRDB
import Ingest
import Model
import Testing

/// Order-detail calls of the push connectors keep working when a shop's access token expires:
/// the platform's refresh API is called once, the new pair is stored and survives a restart.
@Suite struct TokenRefreshTests {
    static let platforms: [Platform] = [.douyin, .kuaishou, .tiktokShop]

    static func api(_ platform: Platform, base: String, book: ShopTokenBook, fake: FakePlatformAPI) -> any OrderDetailSource {
        let c = PlatformCredentials.development
        return switch platform {
        case .douyin: DouyinOrderAPI(baseURL: base, appKey: c.douyinAppKey, appSecret: c.douyinAppSecret, tokens: book, client: .shared)
        case .kuaishou: KuaishouOrderAPI(baseURL: base, appKey: c.kuaishouAppKey, signSecret: c.kuaishouSignSecret,
                                         appSecret: fake.kuaishouAppSecret, tokens: book, client: .shared)
        default: TikTokOrderAPI(baseURL: base, authBaseURL: base, appKey: c.tiktokAppKey, appSecret: c.tiktokAppSecret, tokens: book,
                                shopCiphers: AccessTokens([:]), client: .shared)
        }
    }

    static func register(_ platform: Platform, _ id: String, on fake: FakePlatformAPI) {
        let order = GenericWebhook.OrderJSON(shop_id: "1001", order_id: id, currency: "CNY", paid_at_ms: 1_700_000_000_000,
                                             buyer: .init(name: "张伟", phone: "13812341234", address: "浙江省杭州市"), remark: "",
                                             lines: [.init(sku: "S", quantity: 1, unit_price_fen: 100)])
        fake.put(platform, platformOrderID: id, response: PlatformEmulator.detail(platform, order: order))
    }

    @Test(arguments: platforms)
    func anExpiredAccessTokenIsRefreshedOnceAndTheNewPairSurvivesARestart(_ platform: Platform) async throws {
        try await withFakeAPI { base, fake in
            let database = try DatabaseQueue()
            let book = ShopTokenBook(platform: platform, tokens: ["*": ShopTokens(accessToken: fake.accessToken, refreshToken: fake.refreshToken)])
            try book.attach(database)
            let api = Self.api(platform, base: base, book: book, fake: fake)
            for id in (1...6).map({ "70\($0)" }) { Self.register(platform, id, on: fake) }
            _ = try await api.orderDetail(shopID: "1001", platformOrderID: "701")
            #expect(fake.refreshes.load(ordering: .relaxed) == 0)

            // The token's lifetime ends while five pushes arrive at once: one refresh serves them all.
            fake.expireAccessToken()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for id in (2...6).map({ "70\($0)" }) {
                    group.addTask { _ = try await api.orderDetail(shopID: "1001", platformOrderID: id) }
                }
                try await group.waitForAll()
            }
            #expect(fake.refreshes.load(ordering: .relaxed) == 1)
            #expect(fake.expiredAnswers.load(ordering: .relaxed) >= 1)
            #expect(fake.refused.load(ordering: .relaxed) == 0, "every call and the refresh were signed as the platform requires")
            #expect(try book.tokens("1001") == ShopTokens(accessToken: fake.accessToken, refreshToken: fake.refreshToken))

            // A restarted ingest (same database, same configuration) uses the refreshed pair.
            let restarted = ShopTokenBook(platform: platform, tokens: ["*": ShopTokens(accessToken: "dev-access-token", refreshToken: "dev-refresh-token")])
            try restarted.attach(database)
            #expect(try restarted.accessToken("1001") == fake.accessToken)
            _ = try await Self.api(platform, base: base, book: restarted, fake: fake).orderDetail(shopID: "1001", platformOrderID: "701")
            #expect(fake.refreshes.load(ordering: .relaxed) == 1)

            // A merchant who re-authorised and configured a new token: the configuration wins.
            let reauthorised = ShopTokenBook(platform: platform, tokens: ["*": ShopTokens(accessToken: "new-from-console", refreshToken: "r")])
            try reauthorised.attach(database)
            #expect(try reauthorised.accessToken("1001") == "new-from-console")
        }
    }

    @Test func anExpiredTokenWithoutARefreshTokenAsksToReauthoriseAndPublishesNothing() async throws {
        try await withFakeAPI { base, fake in
            let book = ShopTokenBook.parse(platform: .douyin, "1001=\(fake.accessToken)")
            let api = Self.api(.douyin, base: base, book: book, fake: fake)
            Self.register(.douyin, "801", on: fake)
            fake.expireAccessToken()
            do {
                _ = try await api.orderDetail(shopID: "1001", platformOrderID: "801")
                Issue.record("an expired token cannot fetch the order")
            } catch let error as ConnectorError {
                #expect(error.status == 503)
                #expect("\(error)".contains("re-authorise"))
            }
            #expect(fake.refreshes.load(ordering: .relaxed) == 0)
            #expect(throws: ConnectorError.self) { try book.accessToken("other-shop") }
        }
    }

    @Test func tokensParseWithAndWithoutARefreshToken() throws {
        let book = ShopTokenBook.parse(platform: .tiktokShop, "shop-a=AT1:RT1; shop-b=AT2")
        #expect(try book.tokens("shop-a") == ShopTokens(accessToken: "AT1", refreshToken: "RT1"))
        #expect(try book.tokens("shop-b") == ShopTokens(accessToken: "AT2", refreshToken: ""))
    }
}
