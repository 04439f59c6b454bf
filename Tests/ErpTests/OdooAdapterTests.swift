import ErpAdapters
import Foundation
import LiveSyncTesting
import Testing

fileprivate func order(_ n: Int, sku: String = "SKU-A", qty: Int64 = 1, customer: String = "C001") -> ErpSaleOrder {
    ErpSaleOrder(reference: "kuaishou:\(n)", platform: "kuaishou", shopID: "shop-1", platformOrderID: "\(n)", customer: customer,
                 warehouse: "WH1", paidAtUs: 1_764_590_400_000_000,
                 lines: [.init(material: sku, quantity: qty, unitPriceFen: 2550, lineNo: 1)], totalFen: 2550 * qty)
}

/// A fake Odoo with products SKU-A (10 on hand in WH1) and SKU-B, customer C001 and warehouse WH1.
fileprivate func withOdoo(password: String? = nil, _ body: (FakeOdoo, OdooAdapter) async throws -> Void) async throws {
    let fake = FakeOdoo()
    fake.addProduct("SKU-A")
    fake.addProduct("SKU-B")
    fake.addPartner("C001")
    fake.addWarehouse("WH1")
    fake.setOnHand("SKU-A", warehouse: "WH1", 10)
    let (url, task) = try await fake.serve()
    defer { task.cancel() }
    let adapter = OdooAdapter(OdooConfiguration(url: url, database: fake.database, login: fake.login, password: password ?? "dev-odoo-api-key",
                                                timeout: .seconds(10), stockWarehouses: ["WH1"]))
    try await body(fake, adapter)
}

@Suite struct OdooAdapterTests {
    @Test func aBatchIsCreatedWithOneCreateCallAndConfirmedWithOneActionConfirm() async throws {
        try await withOdoo { fake, adapter in
            let results = try await adapter.create((1...10).map { order($0) })
            #expect(fake.calls("sale.order.create") == 1)
            #expect(fake.calls("sale.order.action_confirm") == 1)
            #expect(fake.calls("authenticate") == 1)
            #expect(results.count == 10)
            let doc = try #require(try results["kuaishou:4"]?.get())
            #expect(doc.state == .confirmed)
            #expect(doc.number.hasPrefix("S0"))
            #expect(fake.saleOrders.count == 10)
            #expect(fake.saleOrders.allSatisfy { $0.state == "sale" })
            // Codes are cached: a second batch resolves nothing again.
            let lookups = fake.calls("product.product.search_read")
            _ = try await adapter.create([order(11)])
            #expect(fake.calls("product.product.search_read") == lookups)
            #expect(fake.calls("sale.order.create") == 2)
        }
    }

    @Test func anOrderOdooRefusesIsNarrowedDownAndCarriesOdoosMessage() async throws {
        try await withOdoo { fake, adapter in
            fake.refuse(reference: "kuaishou:3", message: "Orders from this shop need an approved credit limit.")
            let results = try await adapter.create((1...5).map { order($0) })
            guard case .failure(let e)? = results["kuaishou:3"] else { Issue.record("kuaishou:3 should be refused"); return }
            #expect(e == .permanent(code: "odoo.exceptions.ValidationError", message: "Orders from this shop need an approved credit limit."))
            for n in [1, 2, 4, 5] { #expect((try? results["kuaishou:\(n)"]?.get())?.state == .confirmed) }
            #expect(fake.saleOrders.map(\.reference).sorted() == ["kuaishou:1", "kuaishou:2", "kuaishou:4", "kuaishou:5"])
            #expect(fake.duplicateReferences.isEmpty)
            // Halving, not one call per order: 5 → 2+3 → 1+2 → 1+1.
            #expect(fake.calls("sale.order.create") < 5 + 1)
        }
    }

    @Test func unknownCodesRefuseTheirOrderWithoutReachingCreate() async throws {
        try await withOdoo { fake, adapter in
            let results = try await adapter.create([order(1), order(2, sku: "NOPE"), order(3, customer: "C404")])
            #expect(refusal(results["kuaishou:2"])?.code == "product.product")
            #expect(refusal(results["kuaishou:2"])?.isRetryable == false)
            #expect(refusal(results["kuaishou:3"])?.code == "res.partner")
            #expect(fake.saleOrders.map(\.reference) == ["kuaishou:1"])
            #expect(fake.calls("sale.order.create") == 1)
        }
    }

    @Test func lookupFindsCreatedOrdersByClientOrderRef() async throws {
        try await withOdoo { fake, adapter in
            let created = try await adapter.create((1...3).map { order($0) })
            let found = try await adapter.lookup(references: ["kuaishou:1", "kuaishou:2", "kuaishou:3", "kuaishou:9"])
            #expect(fake.calls("sale.order.search_read") >= 1)
            #expect(found.count == 3)
            #expect(found["kuaishou:2"] == (try created["kuaishou:2"]?.get()))
            #expect(found["kuaishou:9"] == nil)
        }
    }

    @Test func aChangedUidIsReauthenticatedOnce() async throws {
        try await withOdoo { fake, adapter in
            _ = try await adapter.lookup(references: ["kuaishou:1"])
            fake.renumberUser()
            let results = try await adapter.create([order(1)])
            #expect((try? results["kuaishou:1"]?.get()) != nil)
            #expect(fake.calls("authenticate") == 2)
        }
    }

    @Test func aRevokedKeyIsPermanentAfterOneReauthentication() async throws {
        try await withOdoo { fake, adapter in
            _ = try await adapter.lookup(references: ["kuaishou:1"])
            fake.revokeKey()
            let error = await expectError { _ = try await adapter.lookup(references: ["kuaishou:1"]) }
            #expect(error?.isRetryable == false)
            #expect(error?.code == "odoo.exceptions.AccessDenied")
            #expect(fake.calls("authenticate") == 2)
        }
    }

    @Test func serializationFailuresAndGatewayErrorsAreRetryable() async throws {
        try await withOdoo { fake, adapter in
            fake.failNext([.serializationFailure, .http(503), .throttle])
            for expected in ["psycopg2.errors.SerializationFailure", "http_503", "http_429"] {
                let error = await expectError { _ = try await adapter.lookup(references: ["kuaishou:1"]) }
                #expect(error?.isRetryable == true)
                #expect(error?.code == expected)
            }
            let none = try await adapter.lookup(references: ["kuaishou:1"])
            #expect(none.isEmpty)
        }
    }

    @Test func cancelCancelsAndALockedOrderIsRefusedAlone() async throws {
        try await withOdoo { fake, adapter in
            let created = try await adapter.create((1...3).map { order($0) })
            fake.lock(reference: "kuaishou:2")
            let results = try await adapter.cancel(try (1...3).map { try created["kuaishou:\($0)"]!.get() })
            #expect((try? results["kuaishou:1"]?.get())?.state == .cancelled)
            #expect((try? results["kuaishou:3"]?.get())?.state == .cancelled)
            guard case .failure(let e)? = results["kuaishou:2"] else { Issue.record("the locked order should be refused"); return }
            #expect(e == .permanent(code: "odoo.exceptions.UserError", message: "You cannot cancel a locked order. Please unlock it first."))
            #expect(fake.saleOrders.map(\.state) == ["cancel", "sale", "cancel"])
        }
    }

    @Test func stockIsQuantityMinusReservedPerWarehouse() async throws {
        try await withOdoo { fake, adapter in
            _ = try await adapter.create([order(1, qty: 3)])
            let levels = try await adapter.stockLevels(materials: ["SKU-A"])
            #expect(levels == [ErpStockLevel(material: "SKU-A", warehouse: "WH1", onHand: 10, available: 7)])
            #expect(fake.calls("stock.quant.search_read") == 1)
        }
    }
}
