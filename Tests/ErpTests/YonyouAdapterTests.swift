import ErpAdapters
import Foundation
import LiveSyncTesting
import Synchronization
import Testing

/// The Yonyou 用友 YonSuite/YonBIP adapter against `FakeYonyou` (built from the open-platform docs).
@Suite struct YonyouAdapterTests {
    static func order(_ n: Int, customer: String = "CUST-DOUYIN", material: String = "SKU-A", warehouse: String = "WH01") -> ErpSaleOrder {
        ErpSaleOrder(reference: "douyin:\(n)", platform: "douyin", shopID: "shop-1", platformOrderID: "\(n)", customer: customer,
                     organization: "ORG01", warehouse: warehouse, paidAtUs: 1_764_000_000_000_000,
                     lines: [.init(material: material, quantity: 3, unitPriceFen: 1250, lineNo: 1)], totalFen: 3750)
    }

    func withYonyou(_ fake: FakeYonyou = FakeYonyou(), secret: String? = nil, audit: Bool = true, concurrency: Int = 4, warehouses: [String] = [],
                    _ body: (FakeYonyou, YonyouAdapter) async throws -> Void) async throws {
        let (gateway, auth, task) = try await fake.serve()
        defer { task.cancel() }
        let configuration = YonyouConfiguration(gatewayURL: gateway, authURL: auth, appKey: fake.appKey, appSecret: secret ?? fake.appSecret,
                                                transactionType: "SO01", audit: audit, stockWarehouses: warehouses, maxConcurrentSaves: concurrency)
        try await body(fake, YonyouAdapter(configuration: configuration, http: ErpHTTP(timeout: .seconds(10))))
    }

    @Test func aBatchIsSavedConcurrentlyWithinTheBoundOnOneTokenAndAuditedInOneCall() async throws {
        let fake = FakeYonyou()
        fake.setLatency(.milliseconds(60))
        try await withYonyou(fake, concurrency: 3) { fake, adapter in
            let orders = (1...8).map { Self.order($0) }
            let results = try await adapter.create(orders)
            #expect(fake.calls("getAccessToken") == 1)
            #expect(fake.calls("singleSave") == 8)  // the sales order save takes one order: no batch save to use
            #expect(fake.calls("batchaudit") == 1)
            #expect(fake.maxConcurrentSaves <= 3 && fake.maxConcurrentSaves >= 2)
            #expect(fake.documents.count == 8)
            #expect(fake.documents.allSatisfy { $0.verifystate == 2 })
            for o in orders { #expect(try results[o.reference]?.get().state == .confirmed) }
            let saved = try #require(fake.documents.first { $0.code == "douyin:1" })
            #expect(saved.lines == [FakeYonyou.Line(product: "SKU-A", warehouse: "WH01", quantity: 3, taxUnitPrice: 12.5)])
            #expect(saved.vouchdate == "2025-11-25 00:00:00")
            #expect(saved.resubmitCheckKey == YonyouSigning.resubmitCheckKey("douyin:1") && saved.resubmitCheckKey.count == 32)
        }
    }

    @Test func aValidationErrorRefusesOnlyThatOrderWithYonyousCodeAndMessage() async throws {
        try await withYonyou { fake, adapter in
            let results = try await adapter.create([Self.order(1), Self.order(2, customer: "CUST-NOPE"), Self.order(3, warehouse: "WH-X")])
            #expect(try results["douyin:1"]?.get().state == .confirmed)
            guard case .failure(let refused)? = results["douyin:2"] else { Issue.record("douyin:2 should be refused"); return }
            #expect(!refused.isRetryable && refused.code == "999" && refused.message.contains("CUST-NOPE"))
            guard case .failure(let warehouse)? = results["douyin:3"] else { Issue.record("douyin:3 should be refused"); return }
            #expect(!warehouse.isRetryable && warehouse.message.contains("WH-X"))
            #expect(fake.documents.map(\.code) == ["douyin:1"])
        }
    }

    @Test func lookupFindsSavedOrdersByCodeAndASecondSaveOfTheSameOrderIsNotASecondDocument() async throws {
        try await withYonyou(audit: false) { fake, adapter in
            let created = try await adapter.create([Self.order(1), Self.order(2)])
            let found = try await adapter.lookup(references: ["douyin:1", "douyin:2", "douyin:9"])
            #expect(Set(found.keys) == ["douyin:1", "douyin:2"])
            #expect(found["douyin:1"]?.id == (try created["douyin:1"]?.get().id))
            #expect(found["douyin:1"]?.state == .draft)
            #expect(fake.calls("list") == 1)
            // Re-sent after a lost answer: same resubmitCheckKey, same document.
            let again = try await adapter.create([Self.order(1)])
            #expect(try again["douyin:1"]?.get().id == (try created["douyin:1"]?.get().id))
            #expect(fake.documents.filter { $0.code == "douyin:1" }.count == 1)
        }
    }

    @Test func anExpiredTokenIsRenewedOnceAndTheCallRepeated() async throws {
        try await withYonyou { fake, adapter in
            _ = try await adapter.create([Self.order(1)])
            fake.expireTokens()
            let found = try await adapter.lookup(references: ["douyin:1"])
            #expect(found["douyin:1"]?.state == .confirmed)
            #expect(fake.calls("getAccessToken") == 2)
            #expect(fake.calls("list") == 2)  // refused, then repeated with the new token
            #expect(adapter.tokensRequested.load(ordering: .relaxed) == 2)
        }
    }

    @Test func aTokenIsCachedUntilItsExpiryIsNear() async throws {
        let fake = FakeYonyou()
        fake.setTokenLifetime(30)  // under the one-minute margin: renewed before every call
        try await withYonyou(fake) { fake, adapter in
            _ = try await adapter.lookup(references: ["a"])
            _ = try await adapter.lookup(references: ["b"])
            #expect(fake.calls("getAccessToken") == 2)
            fake.setTokenLifetime(7200)
            _ = try await adapter.lookup(references: ["c"])
            _ = try await adapter.lookup(references: ["d"])
            _ = try await adapter.stockLevels(materials: [])
            #expect(fake.calls("getAccessToken") == 3)
        }
    }

    @Test func aWrongAppSecretIsRefusedClearlyAndNothingIsSent() async throws {
        try await withYonyou(secret: "wrong-secret") { fake, adapter in
            let e = await #expect(throws: ErpError.self) { _ = try await adapter.create([Self.order(1), Self.order(2)]) }
            #expect(e?.isRetryable == false && e?.code == "yonyou_auth")
            #expect(e?.message.contains("签名校验失败") == true)
            #expect(fake.calls("singleSave") == 0)
            #expect(fake.tokenRequestsRefused == 1)
        }
    }

    @Test func throttlingAndServerErrorsAreRetryable() async throws {
        try await withYonyou { fake, adapter in
            fake.failNext([.throttle])
            let throttled = await #expect(throws: ErpError.self) { _ = try await adapter.create([Self.order(1)]) }
            #expect(throttled?.isRetryable == true && throttled?.code == "429")
            fake.failNext([.status(502)])
            let down = await #expect(throws: ErpError.self) { _ = try await adapter.lookup(references: ["douyin:1"]) }
            #expect(down?.isRetryable == true && down?.code == "http_502")
            #expect(fake.documents.isEmpty)
            _ = try await adapter.create([Self.order(1)])
            #expect(fake.documents.count == 1)
        }
    }

    @Test func withoutTheAuditSettingOrdersStayOpenUntilConfirmed() async throws {
        try await withYonyou(audit: false) { fake, adapter in
            let results = try await adapter.create([Self.order(1), Self.order(2)])
            #expect(fake.calls("batchaudit") == 0)
            let drafts = try results.values.map { try $0.get() }
            #expect(drafts.allSatisfy { $0.state == .draft })
            let confirmed = try await adapter.confirm(drafts)
            #expect(confirmed.values.allSatisfy { (try? $0.get())?.state == .confirmed })
            #expect(fake.documents.allSatisfy { $0.verifystate == 2 })
        }
    }

    @Test func stockIsReadPerWarehouseAndFilteredToTheMaterialsAsked() async throws {
        try await withYonyou(warehouses: ["WH01", "WH02"]) { fake, adapter in
            fake.setStock(warehouse: "WH01", product: "SKU-A", current: 20, available: 17)
            fake.setStock(warehouse: "WH02", product: "SKU-A", current: 4, available: 4)
            fake.setStock(warehouse: "WH01", product: "SKU-B", current: 8, available: 2)
            let levels = try await adapter.stockLevels(materials: ["SKU-A"])
            #expect(Set(levels.map { "\($0.material)@\($0.warehouse)=\($0.onHand)/\($0.available)" }) == ["SKU-A@WH01=20/17", "SKU-A@WH02=4/4"])
            #expect(fake.calls("QueryCurrentStocksByCondition") == 2)
            let all = try await adapter.stockLevels(materials: [])
            #expect(all.count == 3)
        }
    }

    @Test func theTokenSignatureIsTheDocumentedHmacSHA256() {
        // Computed with Python's hmac/base64 from the documented example parameters.
        let signature = YonyouSigning.signature(appKey: "41832a3d2df94989b500da6a22268747", timestamp: "1568098531823", appSecret: "secret-123")
        #expect(signature == "Jg5tohKPd7X4DC5tj4F+sDVoSU99oD32pCYka5CteFw=")
        #expect(YonyouSigning.urlEncoded(signature) == "Jg5tohKPd7X4DC5tj4F%2BsDVoSU99oD32pCYka5CteFw%3D")
    }
}
