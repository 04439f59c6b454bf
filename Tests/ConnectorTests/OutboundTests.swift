import Connectors
import Foundation
import GRDB
import Hummingbird
import HummingbirdTesting
import Kafka
import Logging
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

@Suite(.serialized) struct OutboundTests {
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
            tokens: ["douyin:dy-1": "dy-token", "taobao:tb-1": "tb-session"], configuration: config, deadLetterProducer: producer, logger: logger)
    }

    /// Runs passes until nothing is pending (retries become due after their short backoff).
    func drain(_ d: OutboundDispatcher) async throws -> OutboundDispatcher.RunResult {
        var total = OutboundDispatcher.RunResult()
        for _ in 0..<50 {
            let r = try await d.runOnce()
            total.sent += r.sent; total.retried += r.retried; total.dead += r.dead
            if try d.queue.count("pending") == 0 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        return total
    }

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
            fake.douyinErrors.withLock { $0 = [(50002, "系统繁忙"), (50002, "系统繁忙")] }
            try queue.enqueueStock(douyinShop, sku: "SKU-A", quantity: 3)
            var r = try await drain(dispatcher(base, fake, queue, producer: producer))
            #expect(r.retried == 2 && r.sent == 1 && r.dead == 0)
            // Refused by the platform: dead-lettered at once with its code and message.
            fake.douyinErrors.withLock { $0 = [(40003, "商家编码不存在")] }
            try queue.enqueueStock(douyinShop, sku: "SKU-X", quantity: 1)
            // Busy beyond the attempts allowed: dead-lettered after the last one.
            try await Task.sleep(for: .milliseconds(5))
            r = try await drain(dispatcher(base, fake, queue, producer: producer))
            #expect(r.dead == 1)
            fake.douyinErrors.withLock { $0 = Array(repeating: (50002, "系统繁忙"), count: 10) }
            try queue.enqueueShipment(douyinShop, platformOrderID: "1", carrier: "zt", trackingNumber: "T1")
            r = try await drain(dispatcher(base, fake, queue, producer: producer, maxAttempts: 3))
            #expect(r.retried == 2 && r.dead == 1)
            let dead = try queue.deadLetters()
            #expect(dead.count == 2)
            #expect(dead[0].error.contains("40003") && dead[0].error.contains("商家编码不存在"))
            #expect(dead[1].error.contains("50002"))
            let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
            let letters = try (0..<4).reduce(Int64(0)) { $0 + (try admin.watermarks(TopicPartition(Topics.deadLetter, $1)).high) }
            #expect(letters == 2)
        }
    }
}
