import Channels
import LiveSyncTesting
import Bootstrap
import Connectors
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import Kafka
import Logging
import MetricsTestKit
import Model
import Synchronization
import Testing
import Worker

/// A local fake of Douyin's `sku.syncStock` / `order.logisticsAdd` and Taobao's
/// `taobao.item.quantity.update` / `taobao.logistics.offline.send`: checks signatures, records
/// what it was told, and answers with queued platform errors first.
final class FakeChannelAPI: Sendable {
    let secret = "channel-secret"
    let received = Mutex<[(method: String, params: [String: String])]>([])
    /// Douyin answers, in order, before succeeding: (code, msg).
    let douyinErrors = Mutex<[(Int, String)]>([])
    let badSignatures = Atomic<Int>(0)

    func routes(_ router: Router<BasicRequestContext>) {
        for path in ["/sku/syncStock", "/order/logisticsAdd"] {
            router.get(RouterPath(stringLiteral: path)) { request, _ in
                let q = try await FakeSearchAPI.params(request)
                guard let pj = q["param_json"], let ts = q["timestamp"], let m = q["method"],
                      q["sign"] == APISigning.douyin(appKey: "dy-app", appSecret: self.secret, method: m, paramJSON: pj, timestamp: ts) else {
                    self.badSignatures.add(1, ordering: .relaxed)
                    return FakeSearchAPI.json(#"{"code":40004,"msg":"sign invalid"}"#)
                }
                if let e = self.douyinErrors.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                    return FakeSearchAPI.json(#"{"code":\#(e.0),"msg":"\#(e.1)"}"#)
                }
                var params = (try JSONSerialization.jsonObject(with: Data(pj.utf8)) as! [String: Any]).mapValues { "\($0)" }
                params["access_token"] = q["access_token"]
                self.received.withLock { $0.append((m, params)) }
                return FakeSearchAPI.json(#"{"code":10000,"msg":"success","data":{}}"#)
            }
        }
        router.post("/router/rest") { request, _ in
            let q = try await FakeSearchAPI.params(request)
            guard q["sign"] == APISigning.md5Wrapped(params: q, secret: self.secret) else {
                self.badSignatures.add(1, ordering: .relaxed)
                return FakeSearchAPI.json(#"{"error_response":{"code":25,"msg":"Invalid signature"}}"#)
            }
            self.received.withLock { $0.append((q["method"]!, q)) }
            return FakeSearchAPI.json(#"{"item_quantity_update_response":{"item":{}}}"#)
        }
    }
}

/// Runs dispatcher passes until nothing is pending; between passes `clock` moves past the longest
/// backoff, so retries come due without the test sleeping.
func drainOutbound(_ d: OutboundDispatcher, clock: ManualWallClock) async throws -> OutboundDispatcher.RunResult {
    var total = OutboundDispatcher.RunResult()
    for _ in 0..<50 {
        let r = try await d.runOnce()
        total.sent += r.sent; total.retried += r.retried; total.dead += r.dead
        if try d.queue.count("pending") == 0 { break }
        clock.advance(by: d.configuration.maxBackoff)
    }
    return total
}

@Suite(.serialized) struct OutboundTests {
    /// Each test's own clock (Swift Testing makes a suite instance per test).
    let clock = ManualWallClock()
    let douyinShop = Channel(platform: .douyin, shopID: "dy-1")
    let taobaoShop = Channel(platform: .taobao, shopID: "tb-1")

    func withChannelAPI(_ body: @escaping @Sendable (String, FakeChannelAPI) async throws -> Void) async throws {
        let fake = FakeChannelAPI()
        let router = Router()
        fake.routes(router)
        try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { client in
            try await body("http://127.0.0.1:\(try #require(client.port))", fake)
        }
    }

    func dispatcher(_ base: String, _ fake: FakeChannelAPI, _ queue: OutboundQueue, producer: KafkaProducer? = nil, maxAttempts: Int = 4) -> OutboundDispatcher {
        var config = OutboundConfiguration()
        config.initialBackoff = .milliseconds(1)
        config.maxBackoff = .milliseconds(5)
        config.maxAttempts = maxAttempts
        config.callsPerSecondPerShop = 200
        var logger = Logger(label: "outbound")
        logger.logLevel = .critical
        return OutboundDispatcher(
            queue: queue,
            clients: [.douyin: DouyinChannelClient(baseURL: base, appKey: "dy-app", appSecret: fake.secret, client: .shared),
                      .taobao: TaobaoChannelClient(api: TaobaoPollAPI(gateway: base + "/router/rest", appKey: "tb-app", appSecret: fake.secret, client: .shared))],
            tokens: ["douyin:dy-1": "dy-token", "taobao:tb-1": "tb-session"], configuration: config, deadLetterProducer: producer, clock: clock.wallClock, logger: logger)
    }

    func drain(_ d: OutboundDispatcher) async throws -> OutboundDispatcher.RunResult { try await drainOutbound(d, clock: clock) }

    @Test func allocationSharesAvailableStockAndHoldsBackSafetyStock() {
        #expect(ChannelAllocation().quantity(available: 17) == 17)
        #expect(ChannelAllocation(share: 0.5).quantity(available: 17) == 8)
        #expect(ChannelAllocation(share: 0.5, safetyStock: 3).quantity(available: 17) == 5)
        #expect(ChannelAllocation(share: 1, safetyStock: 30).quantity(available: 17) == 0)
        #expect(ChannelAllocation().quantity(available: -4) == 0)
    }

    @Test func stockLevelsAreCoalescedToTheLatestPerChannelSKUAndPushedWithEachChannelsAllocation() async throws {
        try await withChannelAPI { base, fake in
            let queue = try OutboundQueue(path: ":memory:")
            let fanout = StockFanout(channels: [douyinShop: ChannelAllocation(share: 0.5), taobaoShop: ChannelAllocation(safetyStock: 2)],
                                     skuMap: [taobaoShop: ["SKU-1": "6001:42"]], queue: queue)
            var reservations: [Reservation] = []
            for level in [100, 90, 80, 10] {
                var r = Reservation()
                r.sku = "SKU-1"
                r.availableAfter = Int64(level)
                reservations.append(r)
            }
            try fanout.apply(Array(reservations.prefix(2)))
            try fanout.apply(Array(reservations.suffix(2)))
            #expect(try queue.count("pending") == 2)  // one per channel, whatever the number of levels
            let r = try await drain(dispatcher(base, fake, queue))
            #expect(r.sent == 2 && r.dead == 0)
            let got = fake.received.withLock { $0 }
            let douyin = try #require(got.first { $0.method == "sku.syncStock" })
            #expect(douyin.params["code"] == "SKU-1" && douyin.params["stock_num"] == "5" && douyin.params["access_token"] == "dy-token")
            let taobao = try #require(got.first { $0.method == "taobao.item.quantity.update" })
            #expect(taobao.params["num_iid"] == "6001" && taobao.params["sku_id"] == "42" && taobao.params["quantity"] == "8" && taobao.params["session"] == "tb-session")
            #expect(fake.badSignatures.load(ordering: .relaxed) == 0)
        }
    }

    @Test func callsToOneShopAreSpacedByItsRateLimitWhileAnotherShopIsNotHeldUp() async throws {
        try await withChannelAPI { base, fake in
            let queue = try OutboundQueue(path: ":memory:")
            for i in 0..<5 { try queue.enqueueStock(douyinShop, sku: "SKU-\(i)", quantity: 1) }
            try queue.enqueueStock(taobaoShop, sku: "7001", quantity: 1)
            var d = dispatcher(base, fake, queue)
            d.configuration.callsPerSecondPerShop = 20  // one call per 50 ms per shop
            let start = ContinuousClock.now
            let r = try await d.runOnce()
            #expect(r.sent == 6)
            // Five calls to one shop need four 50 ms gaps.
            #expect(ContinuousClock.now - start >= .milliseconds(200))
        }
    }

    @Test func reservationsFeedEveryChannelTheAllocatedTotalOverWarehousesInTheBatchTransaction() throws {
        let db = try DatabaseQueue()
        let processor = ChannelStockProcessor(channels: [douyinShop: ChannelAllocation(share: 0.5, safetyStock: 1), taobaoShop: ChannelAllocation()],
                                              skuMap: [taobaoShop: ["SKU-1": "6001:42"]])
        func message(_ sku: String, _ warehouse: String, _ available: Int64, offset: Int64) -> KafkaMessage {
            var r = Reservation()
            r.sku = sku
            r.warehouse = warehouse
            r.availableAfter = available
            return KafkaMessage(topic: Topics.stockReservations, partition: 0, offset: offset, key: Array(sku.utf8), value: r.bytes)
        }
        var output = BatchOutput(group: "g")
        try db.write { d in
            try processor.prepare(d)
            try processor.apply([message("SKU-1", "main", 30, offset: 0), message("SKU-1", "east", 12, offset: 1), message("SKU-1", "main", 20, offset: 2),
                                 KafkaMessage(topic: Topics.stockReservations, partition: 0, offset: 3, key: [], value: [0xFF, 0xFF])], db: d, output: &output)
        }
        #expect(output.deadLetters == 1)
        let jobs = try db.read { d in try Row.fetchAll(d, sql: "SELECT channel, job_key, payload FROM outbound_jobs WHERE status = 'pending' ORDER BY channel") }
        #expect(jobs.count == 2)
        #expect(jobs[0]["channel"] as String == "douyin:dy-1" && jobs[0]["job_key"] as String == "SKU-1" && jobs[0]["payload"] as String == "15")  // (20 + 12) / 2 - 1
        #expect(jobs[1]["channel"] as String == "taobao:tb-1" && jobs[1]["job_key"] as String == "6001:42" && jobs[1]["payload"] as String == "32")
        #expect(try ChannelList.parse("douyin:dy-1=0.5/1;taobao:tb-1") == [douyinShop: ChannelAllocation(share: 0.5, safetyStock: 1), taobaoShop: ChannelAllocation()])
        #expect(throws: (any Error).self) { try ChannelList.parse("nowhere:x") }
    }

    @Test func shipmentsAreWrittenBackWithCarrierAndTrackingNumber() async throws {
        try await withChannelAPI { base, fake in
            let queue = try OutboundQueue(path: ":memory:")
            try queue.enqueueShipment(douyinShop, platformOrderID: "6920000000000000001", carrier: "zhongtong", trackingNumber: "ZT100")
            try queue.enqueueShipment(taobaoShop, platformOrderID: "3300000000000001", carrier: "YTO", trackingNumber: "YT200")
            let r = try await drain(dispatcher(base, fake, queue))
            #expect(r.sent == 2)
            let got = fake.received.withLock { $0 }
            let dy = try #require(got.first { $0.method == "order.logisticsAdd" })
            #expect(dy.params["order_id"] == "6920000000000000001" && dy.params["company_code"] == "zhongtong" && dy.params["logistics_code"] == "ZT100")
            let tb = try #require(got.first { $0.method == "taobao.logistics.offline.send" })
            #expect(tb.params["tid"] == "3300000000000001" && tb.params["out_sid"] == "YT200" && tb.params["company_code"] == "YTO")
        }
    }

    @Test func platformFailuresAreRetriedWithBackoffThenDeadLetteredWithThePlatformsError() async throws {
        try await withChannelAPI { base, fake in
            let broker = try EmbeddedBroker()
            try broker.createTopic(TopicSpecification(name: Topics.deadLetter, partitions: 4))
            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3"]))
            defer { producer.close() }
            let queue = try OutboundQueue(path: ":memory:")
            // Busy twice, then fine: retried, then sent.
            fake.douyinErrors.withLock { $0 = [(60000, "触发限流，请稍后重试"), (60000, "触发限流，请稍后重试")] }
            try queue.enqueueStock(douyinShop, sku: "SKU-A", quantity: 3)
            var r = try await drain(dispatcher(base, fake, queue, producer: producer))
            #expect(r.retried == 2 && r.sent == 1 && r.dead == 0)
            // Refused by the platform: dead-lettered at once with its code and message.
            fake.douyinErrors.withLock { $0 = [(40003, "商家编码不存在")] }
            try queue.enqueueStock(douyinShop, sku: "SKU-X", quantity: 1)
            // Busy beyond the attempts allowed: dead-lettered after the last one.
            clock.advance(by: .milliseconds(5))
            r = try await drain(dispatcher(base, fake, queue, producer: producer))
            #expect(r.dead == 1)
            fake.douyinErrors.withLock { $0 = Array(repeating: (60000, "触发限流，请稍后重试"), count: 10) }
            try queue.enqueueShipment(douyinShop, platformOrderID: "1", carrier: "zt", trackingNumber: "T1")
            r = try await drain(dispatcher(base, fake, queue, producer: producer, maxAttempts: 3))
            #expect(r.retried == 2 && r.dead == 1)
            let dead = try queue.deadLetters()
            #expect(dead.count == 2)
            #expect(dead[0].error.contains("40003") && dead[0].error.contains("商家编码不存在"))
            #expect(dead[1].error.contains("60000"))
            let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
            let letters = try (0..<4).reduce(Int64(0)) { $0 + (try admin.watermarks(TopicPartition(Topics.deadLetter, $1)).high) }
            #expect(letters == 2)
        }
    }

}

/// The write-back clients of Kuaishou, WeChat Channels, TikTok Shop, JD and Pinduoduo against
/// `FakePlatformAPI`, which checks each request's signature and body as the platform does.
@Suite(.serialized) struct PlatformWriteBackTests {
    /// Each test's own clock (Swift Testing makes a suite instance per test).
    let clock = ManualWallClock()
    static let shops: [Platform: String] = [.kuaishou: "ks-1", .wechatChannels: "wx-1", .tiktokShop: "tt-1", .jd: "jd-1", .pinduoduo: "pdd-1"]
    static let platforms: [Platform] = [.kuaishou, .wechatChannels, .tiktokShop, .jd, .pinduoduo]
    /// LiveSync's SKU-1 on each channel.
    static let channelSKU: [Platform: String] = [.kuaishou: "5100:88", .wechatChannels: "P1:S1", .tiktokShop: "1729:1730:WH1", .jd: "2001", .pinduoduo: "9001:77"]
    /// Each platform's order id and carrier code for a shipment.
    static let shipment: [Platform: (order: String, carrier: String, tracking: String)] = [
        .kuaishou: ("2001001", "4", "KS100"), .wechatChannels: ("3700001", "SF", "SF100"), .tiktokShop: ("5760001", "6617675021119438849", "TT100"),
        .jd: ("3000001", "467", "JD100"), .pinduoduo: ("240101-0001", "121", "YD100"),
    ]

    static func channel(_ p: Platform) -> Channel { Channel(platform: p, shopID: shops[p]!) }

    static func clients(_ base: String, _ c: PlatformCredentials = .development) -> [Platform: any ChannelClient] {
        [.kuaishou: KuaishouChannelClient(baseURL: base, appKey: c.kuaishouAppKey, signSecret: c.kuaishouSignSecret, client: .shared),
         .wechatChannels: WeChatChannelClient(baseURL: base, client: .shared),
         .tiktokShop: TikTokChannelClient(baseURL: base, appKey: c.tiktokAppKey, appSecret: c.tiktokAppSecret, shopCiphers: AccessTokens(["tt-1": "cipher-1"]), client: .shared),
         .jd: JDChannelClient(api: JDPollAPI(gateway: base + "/routerjson", appKey: c.jdAppKey, appSecret: c.jdAppSecret, client: .shared)),
         .pinduoduo: PinduoduoChannelClient(api: PinduoduoPollAPI(gateway: base + "/api/router", clientID: c.pinduoduoClientID, clientSecret: c.pinduoduoClientSecret,
                                                                  client: .shared))]
    }

    func dispatcher(_ clients: [Platform: any ChannelClient], _ queue: OutboundQueue, token: String, metrics: OutboundMetrics = OutboundMetrics(),
                    initialBackoff: Duration = .milliseconds(1)) -> OutboundDispatcher {
        var config = OutboundConfiguration()
        config.initialBackoff = initialBackoff
        config.maxBackoff = .seconds(1)
        config.maxAttempts = 4
        config.callsPerSecondPerShop = 200
        var logger = Logger(label: "outbound")
        logger.logLevel = .critical
        let tokens = Dictionary(uniqueKeysWithValues: Self.platforms.map { ("\($0.slug):*", token) })
        return OutboundDispatcher(queue: queue, clients: clients, tokens: tokens, configuration: config, metrics: metrics, clock: clock.wallClock, logger: logger)
    }

    func drain(_ d: OutboundDispatcher) async throws -> OutboundDispatcher.RunResult { try await drainOutbound(d, clock: clock) }

    /// Stock level 7 of SKU-1 and one shipment for every platform.
    func enqueueEverything(_ queue: OutboundQueue, fake: FakePlatformAPI) throws {
        fake.setChannelStock(.kuaishou, sku: "5100:88", 10)
        fake.put(.wechatChannels, platformOrderID: "3700001", response: [
            "errcode": 0, "errmsg": "ok",
            "order": ["order_id": "3700001", "order_detail": ["product_infos": [["product_id": "P1", "sku_id": "S1", "sku_cnt": 2, "sku_code": "SKU-1"]]]],
        ])
        let fanout = StockFanout(channels: Dictionary(uniqueKeysWithValues: Self.platforms.map { (Self.channel($0), ChannelAllocation()) }),
                                 skuMap: Dictionary(uniqueKeysWithValues: Self.platforms.map { (Self.channel($0), ["SKU-1": Self.channelSKU[$0]!]) }), queue: queue)
        try fanout.levelChanged(sku: "SKU-1", available: 7)
        for p in Self.platforms {
            let s = Self.shipment[p]!
            try queue.enqueueShipment(Self.channel(p), platformOrderID: s.order, carrier: s.carrier, trackingNumber: s.tracking)
        }
    }

    @Test func eachPlatformsStockPushAndShipmentReachItsAPISignedAndInThePlatformsShape() async throws {
        try await withFakeAPI { base, fake in
            let queue = try OutboundQueue(path: ":memory:")
            try enqueueEverything(queue, fake: fake)
            let r = try await drain(dispatcher(Self.clients(base), queue, token: fake.accessToken))
            #expect(r.sent == 10 && r.dead == 0 && r.retried == 0)
            #expect(fake.refused.load(ordering: .relaxed) == 0)
            #expect(try queue.deadLetters().isEmpty)
            // Every platform now shows 7 for SKU-1 (Kuaishou from 10: minus 3).
            #expect(fake.channelStock == ["kuaishou:5100:88": 7, "wechat:P1:S1": 7, "tiktok:1729:1730": 7, "jd:2001": 7, "pinduoduo:9001:77": 7])
            let calls = fake.outboundCalls
            let ks = try #require(calls.first { $0.api == "open.item.sku.stock.update" })
            #expect(ks.params["kwaiItemId"] == "5100" && ks.params["skuId"] == "88" && ks.params["skuChangeStock"] == "3" && ks.params["changeType"] == "2")
            let wx = try #require(calls.first { $0.api == "/channels/ec/product/stock/update" })
            #expect(wx.params["product_id"] == "P1" && wx.params["sku_id"] == "S1" && wx.params["diff_type"] == "3" && wx.params["num"] == "7")
            let tt = try #require(calls.first { $0.api == "/product/202309/products/1729/inventory/update" })
            #expect(tt.params["skus"] == #"[{"id":"1730","inventory":[{"quantity":7,"warehouse_id":"WH1"}]}]"#)
            let jd = try #require(calls.first { $0.api == "jingdong.stock.write.updateSkuStock" })
            #expect(jd.params["skuId"] == "2001" && jd.params["stockNum"] == "7")
            let pdd = try #require(calls.first { $0.api == "pdd.goods.quantity.update" })
            #expect(pdd.params["goods_id"] == "9001" && pdd.params["sku_id"] == "77" && pdd.params["quantity"] == "7" && pdd.params["update_type"] == "1")
            // Shipments: order, the platform's carrier code and the tracking number, once each.
            let expected = Self.platforms.map { p in
                FakePlatformAPI.WriteBack(platform: p, platformOrderID: Self.shipment[p]!.order, carrier: Self.shipment[p]!.carrier, trackingNumber: Self.shipment[p]!.tracking)
            }
            #expect(fake.writeBacks.count == 5 && Set(fake.writeBacks.map(\.platformOrderID)) == Set(expected.map(\.platformOrderID)))
            for e in expected { #expect(fake.writeBacks.contains(e)) }
            let delivery = try #require(calls.first { $0.api == "/channels/ec/order/delivery/send" })
            #expect(delivery.params["delivery_list"] == #"[{"deliver_type":1,"delivery_id":"SF","product_infos":[{"product_cnt":2,"product_id":"P1","sku_id":"S1"}],"waybill_id":"SF100"}]"#)
        }
    }

    @Test func requestsSignedWithTheWrongSecretOrTokenAreRefusedByThePlatformAndDeadLettered() async throws {
        try await withFakeAPI { base, fake in
            let queue = try OutboundQueue(path: ":memory:")
            for p in Self.platforms { try queue.enqueueStock(Self.channel(p), sku: Self.channelSKU[p]!, quantity: 1) }
            var wrong = PlatformCredentials.development
            wrong.kuaishouSignSecret = "not-the-secret"
            wrong.tiktokAppSecret = "not-the-secret"
            wrong.jdAppSecret = "not-the-secret"
            wrong.pinduoduoClientSecret = "not-the-secret"
            let r = try await drain(dispatcher(Self.clients(base, wrong), queue, token: "not-the-token"))
            #expect(r.dead == 5 && r.sent == 0)
            #expect(fake.refused.load(ordering: .relaxed) == 5)
            #expect(fake.channelStock.isEmpty && fake.outboundCalls.isEmpty)
            let errors = try queue.deadLetters().map(\.error).joined(separator: "\n")
            for text in ["sign invalid", "40001", "106001", "session expired: 19", "session expired: 10019"] { #expect(errors.contains(text)) }
        }
    }

    @Test func aThrottleAnswerIsRetriedAfterTheBackoffAndThenSent() async throws {
        try await withFakeAPI { base, fake in
            let queue = try OutboundQueue(path: ":memory:")
            fake.setChannelStock(.kuaishou, sku: "5100:88", 0)
            for p in Self.platforms {
                try queue.enqueueStock(Self.channel(p), sku: Self.channelSKU[p]!, quantity: 4)
                fake.failNext(p, [.throttle])
            }
            let metrics = TestMetrics()
            let d = dispatcher(Self.clients(base), queue, token: fake.accessToken, metrics: OutboundMetrics(factory: metrics), initialBackoff: .milliseconds(400))
            var r = try await d.runOnce()
            #expect(r.retried == 5 && r.sent == 0 && r.dead == 0)
            let waiting = try queue.database.read { db in try Row.fetchAll(db, sql: "SELECT attempts, last_error FROM outbound_jobs WHERE status = 'pending'") }
            #expect(waiting.count == 5 && waiting.allSatisfy { ($0["attempts"] as Int) == 1 && !($0["last_error"] as String).isEmpty })
            // Not due before the backoff has passed.
            r = try await d.runOnce()
            #expect(r == OutboundDispatcher.RunResult())
            clock.advance(by: .milliseconds(400))
            r = try await d.runOnce()
            #expect(r.sent == 5 && r.retried == 0 && r.dead == 0)
            #expect(fake.channelStock == ["kuaishou:5100:88": 4, "wechat:P1:S1": 4, "tiktok:1729:1730": 4, "jd:2001": 4, "pinduoduo:9001:77": 4])
            for p in Self.platforms {
                #expect(try metrics.expectCounter("livesync_outbound_calls_total", [("platform", p.slug), ("kind", "stock"), ("outcome", "retry")]).totalValue == 1)
                #expect(try metrics.expectCounter("livesync_outbound_calls_total", [("platform", p.slug), ("kind", "stock"), ("outcome", "ok")]).totalValue == 1)
            }
        }
    }

    @Test func aPermanentRefusalIsDeadLetteredAtOnceWithThePlatformsCodeAndMessage() async throws {
        try await withFakeAPI { base, fake in
            let broker = try EmbeddedBroker()
            try broker.createTopic(TopicSpecification(name: Topics.deadLetter, partitions: 4))
            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3"]))
            defer { producer.close() }
            let queue = try OutboundQueue(path: ":memory:")
            let refusals: [Platform: (Int64, String)] = [
                .kuaishou: (802102, "订单状态不允许发货"), .wechatChannels: (10020054, "订单已发货"), .tiktokShop: (21011001, "Order status does not allow shipping"),
                .jd: (10400001, "订单已出库"), .pinduoduo: (30002, "订单已发货"),
            ]
            for p in Self.platforms {
                let s = Self.shipment[p]!
                try queue.enqueueShipment(Self.channel(p), platformOrderID: s.order, carrier: s.carrier, trackingNumber: s.tracking)
                fake.failNext(p, [.refuse(code: refusals[p]!.0, message: refusals[p]!.1)])
            }
            fake.put(.wechatChannels, platformOrderID: "3700001", response: [
                "errcode": 0, "order": ["order_id": "3700001", "order_detail": ["product_infos": [["product_id": "P1", "sku_id": "S1", "sku_cnt": 1]]]],
            ])
            let metrics = TestMetrics()
            var d = dispatcher(Self.clients(base), queue, token: fake.accessToken, metrics: OutboundMetrics(factory: metrics))
            d.deadLetterProducer = producer
            let r = try await d.runOnce()
            #expect(r.dead == 5 && r.retried == 0 && r.sent == 0)
            #expect(fake.writeBacks.isEmpty)
            let dead = try queue.deadLetters()
            for p in Self.platforms {
                let letter = try #require(dead.first { $0.channel == "\(p.slug):\(Self.shops[p]!)" })
                #expect(letter.error.contains(String(refusals[p]!.0)) && letter.error.contains(refusals[p]!.1), "\(p.slug): \(letter.error)")
                #expect(try metrics.expectCounter("livesync_outbound_calls_total", [("platform", p.slug), ("kind", "shipment"), ("outcome", "dead")]).totalValue == 1)
            }
            let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
            let letters = try (0..<4).reduce(Int64(0)) { $0 + (try admin.watermarks(TopicPartition(Topics.deadLetter, $1)).high) }
            #expect(letters == 5)
        }
    }

    @Test func channelSKUsTheMapDoesNotShapeForThePlatformAreDeadLetteredWithAMappingHint() async throws {
        try await withFakeAPI { base, fake in
            let queue = try OutboundQueue(path: ":memory:")
            for p in Self.platforms { try queue.enqueueStock(Self.channel(p), sku: "SKU-1", quantity: 1) }
            // WeChat ids are opaque strings, but a product and a SKU id are both needed.
            let r = try await drain(dispatcher(Self.clients(base), queue, token: fake.accessToken))
            #expect(r.dead == 5 && fake.outboundCalls.isEmpty)
            #expect(try queue.deadLetters().allSatisfy { $0.error.contains("channels.skuMap") })
        }
        #expect(try ChannelSKUMap.parse("taobao:tb-1:SKU-1=6001:42; kuaishou:ks-1:A:B=5100:88") == [
            Channel(platform: .taobao, shopID: "tb-1"): ["SKU-1": "6001:42"], Channel(platform: .kuaishou, shopID: "ks-1"): ["A:B": "5100:88"],
        ])
        #expect(throws: (any Error).self) { try ChannelSKUMap.parse("kuaishou:ks-1=5100:88") }
        #expect(throws: (any Error).self) { try ChannelSKUMap.parse("nowhere:x:SKU=1") }
    }

    @Test func platformsWithCredentialsInTheSettingsGetAClientAndNoLongerDeadLetterForWantOfOne() async throws {
        try await withFakeAPI { base, fake in
            let c = PlatformCredentials.development
            let env = [
                "LIVESYNC_CONNECTORS_KUAISHOU_APP_KEY": c.kuaishouAppKey, "LIVESYNC_CONNECTORS_KUAISHOU_SIGN_SECRET": c.kuaishouSignSecret,
                "LIVESYNC_CONNECTORS_KUAISHOU_API_BASE": base,
                "LIVESYNC_CONNECTORS_WECHAT_API_BASE": base,
                "LIVESYNC_CONNECTORS_TIKTOK_APP_KEY": c.tiktokAppKey, "LIVESYNC_CONNECTORS_TIKTOK_APP_SECRET": c.tiktokAppSecret,
                "LIVESYNC_CONNECTORS_TIKTOK_API_BASE": base, "LIVESYNC_CONNECTORS_TIKTOK_SHOP_CIPHERS": "tt-1=cipher-1",
                "LIVESYNC_CONNECTORS_POLL_JD_APP_KEY": c.jdAppKey, "LIVESYNC_CONNECTORS_POLL_JD_APP_SECRET": c.jdAppSecret,
                "LIVESYNC_CONNECTORS_POLL_JD_GATEWAY": base + "/routerjson",
                "LIVESYNC_CONNECTORS_POLL_PINDUODUO_APP_KEY": c.pinduoduoClientID, "LIVESYNC_CONNECTORS_POLL_PINDUODUO_APP_SECRET": c.pinduoduoClientSecret,
                "LIVESYNC_CONNECTORS_POLL_PINDUODUO_GATEWAY": base + "/api/router",
                "LIVESYNC_CHANNELS_TOKENS": Self.platforms.map { "\($0.slug):*=\(fake.accessToken)" }.joined(separator: ";"),
            ]
            let settings = try await LiveSyncConfig(file: nil, environment: env)
            let clients = try ChannelClients.configured(settings, client: .shared)
            #expect(Set(clients.keys) == Set(Self.platforms))
            #expect(try ChannelClients.configured(try await LiveSyncConfig(file: nil, environment: [:]), client: .shared).isEmpty)
            let queue = try OutboundQueue(path: ":memory:")
            try enqueueEverything(queue, fake: fake)
            var d = dispatcher(clients, queue, token: "")
            d.tokens = AccessTokens.parse(settings.string("channels.tokens", default: "")).tokens
            let r = try await drain(d)
            #expect(r.sent == 10 && r.dead == 0)
            #expect(fake.refused.load(ordering: .relaxed) == 0)
        }
    }
}

/// A channel client that records each pushed quantity and, on its first push, has a newer level
/// queued for the same SKU, as the consumer's batch does while a push is in flight.
final class LevelReplacedInFlightClient: ChannelClient, Sendable {
    let platform: Platform = .douyin
    let queue: OutboundQueue
    let channel: Channel
    let pushed = Mutex<[Int64]>([])
    init(queue: OutboundQueue, channel: Channel) { self.queue = queue; self.channel = channel }

    func pushStock(shopID: String, sku: String, quantity: Int64, accessToken: String) async throws(OutboundError) {
        let first = pushed.withLock { $0.append(quantity); return $0.count == 1 }
        if first { try? queue.enqueueStock(channel, sku: sku, quantity: quantity - 7) }
    }

    func confirmShipment(shopID: String, platformOrderID: String, carrier: String, trackingNumber: String, accessToken: String) async throws(OutboundError) {}
}

@Suite struct OutboundInFlightTests {
    @Test func aStockLevelReplacedWhileItsPushIsInFlightIsPushedAfterIt() async throws {
        let queue = try OutboundQueue(path: ":memory:")
        let shop = Channel(platform: .douyin, shopID: "dy-1")
        let client = LevelReplacedInFlightClient(queue: queue, channel: shop)
        var logger = Logger(label: "outbound")
        logger.logLevel = .critical
        let clock = ManualWallClock()
        let dispatcher = OutboundDispatcher(queue: queue, clients: [.douyin: client], tokens: [:], clock: clock.wallClock, logger: logger)
        try queue.enqueueStock(shop, sku: "SKU-HOT", quantity: 50)
        _ = try await dispatcher.runOnce()
        // The newer level (43) replaced the pending job while 50 was being sent: it is still owed.
        #expect(try queue.count("pending") == 1)
        _ = try await dispatcher.runOnce()
        #expect(client.pushed.withLock { $0 } == [50, 43])
        #expect(try queue.count("pending") == 0 && queue.count("done") == 1)
    }
}
