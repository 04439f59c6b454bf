import ErpAdapters
import Foundation
import LiveSyncTesting
import Testing

fileprivate func order(_ n: Int, material: String = "M-1", qty: Int64 = 1) -> ErpSaleOrder {
    ErpSaleOrder(reference: "wechat:\(n)", platform: "wechat", shopID: "shop-1", platformOrderID: "\(n)", customer: "C001",
                 warehouse: "WH1", paidAtUs: 1_764_590_400_000_000,
                 lines: [.init(material: material, quantity: qty, unitPriceFen: 990, lineNo: 1)], totalFen: 990 * qty)
}

fileprivate func withWebhookErp(secret: String? = nil, _ body: (FakeWebhookErp, WebhookErpAdapter) async throws -> Void) async throws {
    let fake = FakeWebhookErp()
    fake.addMaterial("M-1", onHand: 20)
    fake.addMaterial("M-2", onHand: 4)
    let (url, task) = try await fake.serve()
    defer { task.cancel() }
    let adapter = WebhookErpAdapter(WebhookErpConfiguration(url: url + FakeWebhookErp.path, secret: secret ?? "dev-webhook-secret", timeout: .seconds(10)))
    try await body(fake, adapter)
}

@Suite struct WebhookErpAdapterTests {
    @Test func theSignatureIsHexHmacSha256OfTimestampNonceAndBody() {
        // Pinned vector of the documented algorithm (docs/erp-adapters.md, Generic webhook).
        #expect(WebhookErpAdapter.signature(secret: "whsec-test", timestamp: "1764590400", nonce: "abc123", body: Data(#"{"op":"create"}"#.utf8))
                == "2d2547f8638808e04b5401d454f666f4763c85bc5e9e00b7b05d8b28611b6650")
    }

    @Test func aBatchIsPostedInOneCall() async throws {
        try await withWebhookErp { fake, adapter in
            let results = try await adapter.create((1...20).map { order($0) })
            #expect(fake.calls("create") == 1)
            #expect(results.count == 20)
            #expect(results.values.allSatisfy { (try? $0.get())?.state == .confirmed })
            #expect(fake.documents.count == 20)
            #expect(fake.documents["wechat:20"]?.lines == ["M-1": 1])
        }
    }

    @Test func anUnknownMaterialRefusesThatOrderOnlyWithTheErpsMessage() async throws {
        try await withWebhookErp { fake, adapter in
            let results = try await adapter.create([order(1), order(2, material: "M-404"), order(3, material: "M-2")])
            #expect(refusal(results["wechat:2"]) ==
                    .permanent(code: "unknown_material", message: "material M-404 is not in the item master"))
            #expect((try? results["wechat:1"]?.get()) != nil)
            #expect((try? results["wechat:3"]?.get()) != nil)
            #expect(fake.documents.keys.sorted() == ["wechat:1", "wechat:3"])
        }
    }

    @Test func lookupFindsCreatedOrdersAndARepeatedCreateIsIdempotent() async throws {
        try await withWebhookErp { fake, adapter in
            let created = try await adapter.create((1...3).map { order($0) })
            let found = try await adapter.lookup(references: ["wechat:1", "wechat:2", "wechat:3", "wechat:9"])
            #expect(found.count == 3)
            #expect(found["wechat:2"] == (try created["wechat:2"]?.get()))
            let again = try await adapter.create([order(2)])
            #expect((try? again["wechat:2"]?.get()) == (try created["wechat:2"]?.get()))
            #expect(fake.documents.count == 3)
            #expect(fake.repeatedCreates == 1)
        }
    }

    @Test func aWrongSecretIsRefusedAndNothingIsWritten() async throws {
        try await withWebhookErp(secret: "not-the-secret") { fake, adapter in
            let error = await expectError { _ = try await adapter.create([order(1)]) }
            #expect(error == .permanent(code: "signature", message: "X-LiveSync-Signature does not match"))
            #expect(fake.refused.load(ordering: .relaxed) == 1)
            #expect(fake.documents.isEmpty)
        }
    }

    @Test func throttlingServerErrorsAndConflictsAreRetryable() async throws {
        try await withWebhookErp { fake, adapter in
            fake.failNext([.throttle, .http(503), .serializationFailure, .refuse(code: "closed_period", message: "the accounting period is closed")])
            for expected in ["http_429", "http_503", "conflict"] {
                let error = await expectError { _ = try await adapter.create([order(1)]) }
                #expect(error?.isRetryable == true)
                #expect(error?.code == expected)
            }
            let refused = await expectError { _ = try await adapter.create([order(1)]) }
            #expect(refused == .permanent(code: "closed_period", message: "the accounting period is closed"))
            #expect(fake.documents.isEmpty)
            let finally = try await adapter.create([order(1)])
            #expect((try? finally["wechat:1"]?.get()) != nil)
        }
    }

    @Test func aTimedOutCreateIsRetryableAndLookupThenFindsTheOrder() async throws {
        let fake = FakeWebhookErp()
        fake.addMaterial("M-1", onHand: 20)
        let (url, task) = try await fake.serve()
        defer { task.cancel() }
        let adapter = WebhookErpAdapter(WebhookErpConfiguration(url: url + FakeWebhookErp.path, secret: "dev-webhook-secret", timeout: .milliseconds(300)))
        fake.slow(.seconds(1))
        let error = await expectError { _ = try await adapter.create([order(1)]) }
        #expect(error?.isRetryable == true)
        #expect(error?.code == "transport")
        // The ERP wrote it after LiveSync stopped waiting: the retry looks it up instead of creating it again.
        try await Task.sleep(for: .seconds(1))
        fake.slow(.zero)
        let found = try await adapter.lookup(references: ["wechat:1"])
        #expect(found["wechat:1"]?.state == .confirmed)
        #expect(fake.documents.count == 1)
    }

    @Test func cancelAndShippedMoveTheDocuments() async throws {
        try await withWebhookErp { fake, adapter in
            let created = try await adapter.create((1...2).map { order($0) })
            let one = try created["wechat:1"]!.get(), two = try created["wechat:2"]!.get()
            let shipped = try await adapter.markShipped([ErpShipmentNotice(document: two, carrier: "SF", trackingNumber: "SF123", shippedAtUs: 1)])
            #expect((try? shipped["wechat:2"]?.get())?.state == .done)
            let cancelled = try await adapter.cancel([one, two])
            #expect((try? cancelled["wechat:1"]?.get())?.state == .cancelled)
            guard case .failure(let e)? = cancelled["wechat:2"] else { Issue.record("a shipped document cannot be cancelled"); return }
            #expect(e.code == "shipped")
            #expect(fake.documents["wechat:2"]?.tracking == "SF123")
            #expect(fake.calls("cancel") == 1)
        }
    }

    @Test func stockIsParsedWithWhatTheErpRecordedForLiveSync() async throws {
        try await withWebhookErp { fake, adapter in
            _ = try await adapter.create([order(1, qty: 3)])
            let levels = try await adapter.stockLevels(materials: ["M-1"])
            #expect(levels == [ErpStockLevel(material: "M-1", warehouse: "WH1", onHand: 20, available: 17, recordedByLiveSync: 3)])
            let all = try await adapter.stockLevels(materials: [])
            #expect(Set(all.map(\.material)) == ["M-1", "M-2"])
            #expect(fake.calls("stock") == 2)
        }
    }
}
