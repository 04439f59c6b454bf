import ErpAdapters
import Foundation
import LiveSyncTesting
import Testing

fileprivate func order(_ n: Int, sku: String = "SKU-A", qty: Int64 = 1, warehouse: String = "") -> ErpSaleOrder {
    ErpSaleOrder(reference: "douyin:\(n)", platform: "douyin", shopID: "shop-1", platformOrderID: "\(n)", customer: "C001",
                 warehouse: warehouse, paidAtUs: 1_764_590_400_000_000,
                 lines: [.init(material: sku, quantity: qty, unitPriceFen: 1999, lineNo: 1)], totalFen: 1999 * qty)
}

/// A fake with SKU-A (10 on hand) and SKU-B (5), and an adapter pointed at it.
fileprivate func withJushuitan(secret: String? = nil, refreshToken: String? = nil,
                               _ body: (FakeJushuitan, JushuitanAdapter) async throws -> Void) async throws {
    let fake = FakeJushuitan()
    fake.addSKU("SKU-A", onHand: 10)
    fake.addSKU("SKU-B", onHand: 5)
    let (url, task) = try await fake.serve()
    defer { task.cancel() }
    let adapter = JushuitanAdapter(JushuitanConfiguration(
        baseURL: url, appKey: fake.appKey, appSecret: secret ?? fake.appSecret, accessToken: fake.accessToken,
        refreshToken: refreshToken ?? fake.refreshToken, shopID: 10_001, timeout: .seconds(10), callsPerSecond: 0))
    try await body(fake, adapter)
}

@Suite struct JushuitanAdapterTests {
    @Test func signatureMatchesThePublishedAlgorithm() {
        // Vectors of ieu/jst-java DefaultJstDigestTest (md5 of app_secret + sorted key+value pairs).
        let secret = "e9c5ca33fecb404b8e6cdbd0ef4a6d25"
        #expect(JushuitanAdapter.sign([
            "app_key": "5b53060f23d84ddf9703056e84fa5a2d", "access_token": "d7b01bf0842a4742a9450e21ffd95f60", "timestamp": "1639128407",
            "charset": "utf-8", "version": "2", "biz": #"{"page_index":"1","page_size":"100","nicks":["老板"]}"#,
        ], appSecret: secret) == "395f5a78b446be465ac03a02491296c7")
        #expect(JushuitanAdapter.sign([
            "app_key": "5b53060f23d84ddf9703056e84fa5a2d", "timestamp": "1639128407", "grant_type": "authorization_code",
            "charset": "utf-8", "code": "123456", "sign": "ignored",
        ], appSecret: secret) == "05e3a51e19e0883afd1882ccd309e0b9")
    }

    @Test func callsArePacedToFivePerSecond() async throws {
        let fake = FakeJushuitan()
        let (url, task) = try await fake.serve()
        defer { task.cancel() }
        let adapter = JushuitanAdapter(JushuitanConfiguration(baseURL: url, appKey: fake.appKey, appSecret: fake.appSecret,
                                                              accessToken: fake.accessToken, shopID: 10_001))
        let start = ContinuousClock.now
        for _ in 0..<4 { _ = try await adapter.lookup(references: ["douyin:1"]) }
        // 4 calls at 5/s: the 4th waits until 0.6 s after the first.
        #expect(ContinuousClock.now - start >= .milliseconds(590))
        #expect(fake.calls("/open/orders/single/query") == 4)
    }

    @Test func aBatchOfOrdersIsUploadedInOneCall() async throws {
        try await withJushuitan { fake, adapter in
            let orders = (1...30).map { order($0) }
            let results = try await adapter.create(orders)
            #expect(fake.calls("/open/jushuitan/orders/upload") == 1)
            #expect(results.count == 30)
            #expect(results.values.allSatisfy { (try? $0.get())?.state == .confirmed })
            #expect(fake.orders.count == 30)
            #expect(fake.orders["douyin:7"]?.status == "WaitConfirm")  // paid: pay.amount == pay_amount
            #expect(fake.orders["douyin:7"]?.payAmount == "19.99")
            #expect(try results["douyin:7"]?.get().id == String(fake.orders["douyin:7"]!.oID))
        }
    }

    @Test func anUnknownSkuRefusesThatOrderOnlyWithJushuitansMessage() async throws {
        try await withJushuitan { fake, adapter in
            let results = try await adapter.create([order(1), order(2, sku: "NOPE"), order(3, sku: "SKU-B")])
            #expect(fake.calls("/open/jushuitan/orders/upload") == 1)
            guard case .failure(let e)? = results["douyin:2"] else { Issue.record("douyin:2 should be refused"); return }
            #expect(!e.isRetryable)
            #expect(e.message == "商品编码[NOPE]不存在")
            #expect((try? results["douyin:1"]?.get()) != nil)
            #expect((try? results["douyin:3"]?.get()) != nil)
            #expect(fake.orders.keys.sorted() == ["douyin:1", "douyin:3"])
        }
    }

    @Test func lookupFindsUploadedOrdersBySoIDAndAReuploadDoesNotDuplicate() async throws {
        try await withJushuitan { fake, adapter in
            let orders = (1...25).map { order($0) }
            let created = try await adapter.create(orders)
            let found = try await adapter.lookup(references: orders.map(\.reference) + ["douyin:999"])
            #expect(found.count == 25)
            #expect(found["douyin:999"] == nil)
            #expect(found["douyin:25"]?.id == (try created["douyin:25"]?.get().id))
            // Jushuitan takes at most 20 so_ids per query.
            #expect(fake.calls("/open/orders/single/query") == 2)
            _ = try await adapter.create([order(5)])
            #expect(fake.orders.count == 25)
            #expect(fake.orders["douyin:5"]?.uploads == 2)
        }
    }

    @Test func aWrongSecretIsRefusedAsABadSignature() async throws {
        try await withJushuitan(secret: "not-the-secret") { fake, adapter in
            let error = await expectError { _ = try await adapter.create([order(1)]) }
            #expect(error == .permanent(code: "10", message: "验证失败！无效签名"))
            #expect(fake.refused.load(ordering: .relaxed) == 1)
            #expect(fake.orders.isEmpty)
        }
    }

    @Test func anExpiredTokenIsRefreshedOnceAndTheCallRepeated() async throws {
        try await withJushuitan { fake, adapter in
            fake.expireAccessToken()
            let results = try await adapter.create([order(1)])
            #expect((try? results["douyin:1"]?.get()) != nil)
            #expect(fake.refreshes.load(ordering: .relaxed) == 1)
            #expect(fake.calls("/open/jushuitan/orders/upload") == 2)
            // The renewed token is kept: no further refresh.
            _ = try await adapter.lookup(references: ["douyin:1"])
            #expect(fake.refreshes.load(ordering: .relaxed) == 1)
        }
    }

    @Test func aTokenThatCannotBeRefreshedIsRetryableNotARefusal() async throws {
        try await withJushuitan { fake, adapter in
            fake.expireAccessToken()
            fake.expireRefreshToken()
            let error = await expectError { _ = try await adapter.create([order(1)]) }
            #expect(error?.isRetryable == true)
            #expect(error?.code == "100")
            #expect(fake.calls("/openWeb/auth/refreshToken") == 1)
        }
    }

    @Test func throttlingAndGatewayErrorsAreRetryable() async throws {
        try await withJushuitan { fake, adapter in
            fake.failNext([.throttle, .http(502)])
            let throttled = await expectError { _ = try await adapter.create([order(1)]) }
            #expect(throttled == .retryable(code: "199", message: "调用频次超过限制!请稍后再试"))
            let gateway = await expectError { _ = try await adapter.create([order(1)]) }
            #expect(gateway?.isRetryable == true)
            #expect(gateway?.code == "http_502")
            #expect(fake.orders.isEmpty)
            let results = try await adapter.create([order(1)])
            #expect((try? results["douyin:1"]?.get()) != nil)
        }
    }

    @Test func cancelCancelsTheBatchAndNarrowsAShippedOrderDown() async throws {
        try await withJushuitan { fake, adapter in
            let created = try await adapter.create((1...4).map { order($0) })
            fake.ship(soID: "douyin:3")
            let docs = try (1...4).map { try created["douyin:\($0)"]!.get() }
            let results = try await adapter.cancel(docs)
            for n in [1, 2, 4] {
                #expect((try? results["douyin:\(n)"]?.get())?.state == .cancelled)
                #expect(fake.orders["douyin:\(n)"]?.status == "Cancelled")
            }
            guard case .failure(let e)? = results["douyin:3"] else { Issue.record("the shipped order should be refused"); return }
            #expect(!e.isRetryable)
            #expect(e.message.contains("已发货"))
            #expect(fake.orders["douyin:3"]?.status == "Sent")
            let found = try await adapter.lookup(references: ["douyin:1", "douyin:3"])
            #expect(found["douyin:1"]?.state == .cancelled)
            #expect(found["douyin:3"]?.state == .done)
        }
    }

    @Test func stockIsOnHandMinusOrderLock() async throws {
        try await withJushuitan { fake, adapter in
            _ = try await adapter.create([order(1, qty: 3)])
            let levels = try await adapter.stockLevels(materials: ["SKU-A", "SKU-B"])
            #expect(fake.calls("/open/inventory/query") == 1)
            #expect(levels.first { $0.material == "SKU-A" } == ErpStockLevel(material: "SKU-A", warehouse: "", onHand: 10, available: 7))
            #expect(levels.first { $0.material == "SKU-B" } == ErpStockLevel(material: "SKU-B", warehouse: "", onHand: 5, available: 5))
            // No materials: every SKU, by ts.
            let all = try await adapter.stockLevels(materials: [])
            #expect(Set(all.map(\.material)) == ["SKU-A", "SKU-B"])
        }
    }
}
