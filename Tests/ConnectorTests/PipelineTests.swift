import LiveSyncTesting
import AsyncHTTPClient
import Connectors
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import Ingest
import Kafka
import Logging
import Model
import Testing
import Worker

/// An embedded broker with LiveSync's topics, the fake platform API on a live port, and a
/// pipeline wired to every platform with the development credentials.
struct Harness: @unchecked Sendable {  // used from one test task at a time
    let broker: EmbeddedBroker
    let producer: KafkaProducer
    let admin: KafkaAdmin
    let ledger: MessageLedger
    let fake: FakePlatformAPI
    let emulator = PlatformEmulator(credentials: .development)
    let wirings: [Platform: PlatformWiring]
    let pipeline: ConnectorPipeline
    let kafka: KafkaConfiguration

    init(apiBase: String, fake: FakePlatformAPI, sealer: PIISealer? = nil) throws {
        broker = try EmbeddedBroker()
        for spec in Topics.all() { try broker.createTopic(spec) }
        kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3", "linger.ms": "1"])
        producer = try KafkaProducer(configuration: kafka)
        admin = try KafkaAdmin(configuration: kafka)
        ledger = try MessageLedger(path: ":memory:")
        self.fake = fake
        let c = PlatformCredentials.development
        func tokens(_ platform: Platform) -> ShopTokenBook {
            ShopTokenBook(platform: platform, tokens: ["*": ShopTokens(accessToken: fake.accessToken, refreshToken: "")])
        }
        let client = HTTPClient.shared
        let wechat = WeChatChannelsConnector(crypto: try WeChatMessageCrypto(token: c.wechatToken, encodingAESKey: c.wechatEncodingAESKey, appID: c.wechatAppID), shopID: "wx-shop-1")
        wirings = [
            .douyin: PlatformWiring(connector: DouyinConnector(appKey: c.douyinAppKey, appSecret: c.douyinAppSecret),
                                    details: DouyinOrderAPI(baseURL: apiBase, appKey: c.douyinAppKey, appSecret: c.douyinAppSecret, tokens: tokens(.douyin), client: client)),
            .kuaishou: PlatformWiring(connector: try KuaishouConnector(appKey: c.kuaishouAppKey, messageSecret: c.kuaishouMessageSecret),
                                      details: KuaishouOrderAPI(baseURL: apiBase, appKey: c.kuaishouAppKey, signSecret: c.kuaishouSignSecret, tokens: tokens(.kuaishou), client: client)),
            .wechatChannels: PlatformWiring(connector: wechat, details: WeChatOrderAPI(baseURL: apiBase, accessToken: fake.accessToken, client: client)),
            .tiktokShop: PlatformWiring(connector: TikTokShopConnector(appKey: c.tiktokAppKey, appSecret: c.tiktokAppSecret),
                                        details: TikTokOrderAPI(baseURL: apiBase, appKey: c.tiktokAppKey, appSecret: c.tiktokAppSecret, tokens: tokens(.tiktokShop),
                                                                shopCiphers: AccessTokens([:]), client: client)),
        ]
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        pipeline = ConnectorPipeline(publisher: OrderPublisher(producer: producer, sealer: sealer), ledger: ledger, logger: logger)
    }

    /// Messages published so far on `topic` (sum of the partitions' high watermarks).
    func published(_ topic: String) throws -> Int64 {
        let n: Int32 = topic == Topics.deadLetter ? 4 : Topics.partitions
        return try (0..<n).reduce(0) { $0 + (try admin.watermarks(TopicPartition(topic, $1)).high) }
    }

    func total() throws -> Int64 {
        try published(Topics.orderLines) + published(Topics.ordersPlaced) + published(Topics.refundRequests)
    }

    func shop(_ p: Platform) -> String { p == .wechatChannels ? "wx-shop-1" : "1001" }

    func order(_ p: Platform, _ id: String, lines: [GenericWebhook.Line]) -> GenericWebhook.OrderJSON {
        GenericWebhook.OrderJSON(shop_id: shop(p), order_id: id, currency: p == .tiktokShop ? "USD" : "CNY", paid_at_ms: 1_700_000_000_000,
                                 buyer: .init(name: "张伟", phone: "13812341234", address: "浙江省杭州市余杭区文一西路969号"), remark: "请尽快发货", lines: lines)
    }

    /// The first message on `topic` (reads from the earliest offset).
    func first(_ topic: String) throws -> KafkaMessage {
        let delegate = NoRebalance()
        var config = kafka
        config.properties["session.timeout.ms"] = "6000"
        config.properties["auto.offset.reset"] = "earliest"
        let consumer = try KafkaConsumer(configuration: config, groupID: "read-\(topic)-\(UUID().uuidString)", topics: [topic], delegate: delegate)
        defer { consumer.close() }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let m = try consumer.poll(timeoutMilliseconds: 100) { return withExtendedLifetime(delegate) { m } }
        }
        throw ReadTimeout()
    }

    func close() {
        producer.close()
    }
}

/// Runs `body` with the fake platform API listening on 127.0.0.1.
func withFakeAPI(_ body: @escaping @Sendable (String, FakePlatformAPI) async throws -> Void) async throws {
    let fake = FakePlatformAPI()
    let router = Router()
    fake.routes(router)
    let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    try await app.test(.live) { client in
        let port = try #require(client.port)
        try await body("http://127.0.0.1:\(port)", fake)
    }
}

let pushPlatforms: [Platform] = [.douyin, .kuaishou, .wechatChannels, .tiktokShop]

@Suite(.serialized) struct PipelineTests {
    @Test func eachPlatformsSignedPaidPushPublishesTheOrderBySKUOnceAndRedeliveryPublishesNothing() async throws {
        try await withFakeAPI { base, fake in
            let h = try Harness(apiBase: base, fake: fake)
            defer { h.close() }
            var expectedLines: Int64 = 0
            for (n, p) in pushPlatforms.enumerated() {
                let id = "69000000000000000\(n)1"
                // Kuaishou's order detail has one item; the others carry two lines.
                let lines = p == .kuaishou ? [GenericWebhook.Line(sku: "SKU-A", quantity: 2, unit_price_fen: 1990)]
                    : [.init(sku: "SKU-A", quantity: 2, unit_price_fen: 1990), .init(sku: "SKU-B", quantity: 1, unit_price_fen: 500, warehouse: "east")]
                h.fake.put(p, platformOrderID: id, response: PlatformEmulator.detail(p, order: h.order(p, id, lines: lines), promotionFen: 100, couponFen: 50))
                let push = try h.emulator.push(p, kind: .paid, shopID: h.shop(p), platformOrderID: id, messageID: "m-\(p.slug)-1")
                let wiring = try #require(h.wirings[p])
                let reply = await h.pipeline.handle(push, wiring: wiring)
                #expect(reply == wiring.connector.acknowledgement, "\(p.slug): \(reply.body)")
                expectedLines += Int64(lines.count)
                #expect(try h.published(Topics.orderLines) == expectedLines, "\(p.slug)")
                #expect(try h.published(Topics.ordersPlaced) == Int64(n + 1), "\(p.slug)")
                // The platform redelivers the same message: acknowledged, nothing more published.
                let again = await h.pipeline.handle(push, wiring: wiring)
                #expect(again == wiring.connector.acknowledgement)
                #expect(try h.published(Topics.orderLines) == expectedLines)
            }
            #expect(fake.refused.load(ordering: .relaxed) == 0)
            #expect(try h.ledger.count() == 4)
        }
    }

    @Test func publishedOrderCarriesTheMappedFieldsUnderThePlatformsIds() async throws {
        try await withFakeAPI { base, fake in
            let h = try Harness(apiBase: base, fake: fake)
            defer { h.close() }
            let id = "3705115058471208448"
            let o = h.order(.tiktokShop, id, lines: [.init(sku: "SKU-T", quantity: 3, unit_price_fen: 1234)])
            fake.put(.tiktokShop, platformOrderID: id, response: PlatformEmulator.detail(.tiktokShop, order: o, anchorID: "", promotionFen: 250, couponFen: 99))
            let reply = await h.pipeline.handle(try h.emulator.push(.tiktokShop, kind: .paid, shopID: "1001", platformOrderID: id, messageID: "n1"),
                                                wiring: h.wirings[.tiktokShop]!)
            #expect(reply.status == 200)
            let order = try Order(serializedBytes: try h.first(Topics.ordersPlaced).value)
            #expect(order.orderID == "tiktok:1001:\(id)")
            #expect(order.platform == .tiktokShop)
            #expect(order.lines.count == 1)  // three one-unit line items merged
            #expect(order.lines[0].quantity == 3 && order.lines[0].unitPriceFen == 1234 && order.lines[0].sku == "SKU-T")
            #expect(order.lines[0].eventID == "tiktok:1001:\(id):1")
            #expect(order.currency == "USD" && order.promotionFen == 250 && order.couponFen == 99)
            #expect(order.buyerRemark == "请尽快发货")
            #expect(order.paidAtUs == 1_700_000_000_000_000)
        }
    }

    @Test func cancellationAndApprovedRefundBecomeRefundRequestsOtherEventsAreOnlyRecorded() async throws {
        try await withFakeAPI { base, fake in
            let h = try Harness(apiBase: base, fake: fake)
            defer { h.close() }
            var refunds: Int64 = 0
            for p in pushPlatforms {
                for (i, kind) in [EventKind.cancelled, .refundApproved, .refundRequested, .returnShipped, .addressChanged].enumerated() {
                    let push = try h.emulator.push(p, kind: kind, shopID: h.shop(p), platformOrderID: "77\(i)", messageID: "r-\(p.slug)-\(i)",
                                                   refundID: "RF\(i)", amountFen: 1990)
                    let reply = await h.pipeline.handle(push, wiring: h.wirings[p]!)
                    #expect(reply == h.wirings[p]!.connector.acknowledgement, "\(p.slug) \(kind): \(reply.body)")
                    if kind == .cancelled || kind == .refundApproved { refunds += 1 }
                    #expect(try h.published(Topics.refundRequests) == refunds, "\(p.slug) \(kind)")
                }
            }
            #expect(try h.published(Topics.orderLines) == 0)
            #expect(try h.ledger.count() == 20)
            // Each push was understood as the event the platform meant (the ledger keeps the kind).
            // (WeChat events carry no message id: the ledger keys them by event, order and time, so
            // they are matched by order id.)
            let kinds = try await h.ledger.database.read { db in
                try Row.fetchAll(db, sql: "SELECT platform, order_id, kind FROM platform_messages").map { "\($0[0] as String) \($0[1] as String) \($0[2] as String)" }
            }
            for p in pushPlatforms {
                for (i, kind) in [EventKind.cancelled, .refundApproved, .refundRequested, .returnShipped, .addressChanged].enumerated() {
                    let orderID = Identifiers.orderID(platform: p, shop: h.shop(p), platformOrderID: "77\(i)")
                    #expect(kinds.contains("\(p.slug) \(orderID) \(kind.rawValue)"), "\(p.slug) \(kind): \(kinds.filter { $0.contains(orderID) })")
                }
            }
        }
    }

    @Test func failedDetailCallAnswersRetryAndTheRedeliveryPublishes() async throws {
        try await withFakeAPI { base, fake in
            let h = try Harness(apiBase: base, fake: fake)
            defer { h.close() }
            let push = try h.emulator.push(.douyin, kind: .paid, shopID: "1001", platformOrderID: "4242", messageID: "late-1")
            let first = await h.pipeline.handle(push, wiring: h.wirings[.douyin]!)
            #expect(first.status == 503)  // the platform keeps the message and redelivers it
            #expect(try h.total() == 0)
            #expect(try h.ledger.count() == 0)
            fake.put(.douyin, platformOrderID: "4242", response: PlatformEmulator.detail(.douyin, order: h.order(.douyin, "4242", lines: [.init(sku: "S", quantity: 1, unit_price_fen: 1)])))
            let second = await h.pipeline.handle(push, wiring: h.wirings[.douyin]!)
            #expect(second == h.wirings[.douyin]!.connector.acknowledgement)
            #expect(try h.published(Topics.orderLines) == 1)
        }
    }

    @Test func wechatDetailCallsFetchTheAccessTokenOnceWithStableTokenAndReuseIt() async throws {
        try await withFakeAPI { base, fake in
            let api = WeChatOrderAPI(baseURL: base, appID: PlatformCredentials.development.wechatAppID, appSecret: fake.wechatAppSecret, client: .shared)
            let h = try Harness(apiBase: base, fake: fake)
            defer { h.close() }
            for id in ["W1", "W2"] {
                fake.put(.wechatChannels, platformOrderID: id, response: PlatformEmulator.detail(.wechatChannels, order: h.order(.wechatChannels, id, lines: [.init(sku: "S", quantity: 1, unit_price_fen: 1)])))
                let detail = try await api.orderDetail(shopID: "wx-shop-1", platformOrderID: id)
                #expect(FieldMapping.lookup(detail, "order.order_id") as? String == id)
            }
            #expect(fake.tokensIssued.load(ordering: .relaxed) == 1)
            let wrong = WeChatOrderAPI(baseURL: base, appID: PlatformCredentials.development.wechatAppID, appSecret: "wrong", client: .shared)
            await #expect(throws: ConnectorError.self) { _ = try await wrong.orderDetail(shopID: "wx-shop-1", platformOrderID: "W1") }
        }
    }

    @Test func buyerDataIsSealedWithAESGCMAndOnlyMaskedValuesArePublishedInTheClear() async throws {
        let sealer = PIISealer(key: .init(size: .bits256), keyID: "test-key")
        try await withFakeAPI { base, fake in
            let h = try Harness(apiBase: base, fake: fake, sealer: sealer)
            defer { h.close() }
            let o = h.order(.douyin, "555", lines: [.init(sku: "S", quantity: 1, unit_price_fen: 100)])
            fake.put(.douyin, platformOrderID: "555", response: PlatformEmulator.detail(.douyin, order: o))
            _ = await h.pipeline.handle(try h.emulator.push(.douyin, kind: .paid, shopID: "1001", platformOrderID: "555", messageID: "p1"), wiring: h.wirings[.douyin]!)
            let raw = try h.first(Topics.ordersPlaced).value
            let order = try Order(serializedBytes: raw)
            #expect(order.buyer.phone == "138****1234")
            #expect(order.buyer.name == "张*")
            #expect(!String(decoding: raw, as: UTF8.self).contains("13812341234"))
            #expect(!String(decoding: raw, as: UTF8.self).contains("文一西路969号"))
            #expect(order.buyerKeyID == "test-key")
            let clear = try sealer.open(order)
            #expect(clear.phone == "13812341234" && clear.name == "张伟" && clear.address.hasSuffix("文一西路969号"))
        }
    }
}

struct ReadTimeout: Error {}

final class NoRebalance: KafkaRebalanceDelegate {
    func partitionsAssigned(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] { [:] }
    func partitionsRevoked(_ partitions: [TopicPartition], lost: Bool) {}
}
