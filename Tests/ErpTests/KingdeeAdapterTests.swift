import ErpAdapters
import Foundation
import LiveSyncTesting
import Synchronization
import Testing

/// The Kingdee 金蝶云星空 adapter against `FakeKingdee` (built from Kingdee's SDKs and docs).
@Suite struct KingdeeAdapterTests {
    static func order(_ n: Int, customer: String = "CUST-DOUYIN", material: String = "SKU-A", warehouse: String = "WH01") -> ErpSaleOrder {
        ErpSaleOrder(reference: "douyin:\(n)", platform: "douyin", shopID: "shop-1", platformOrderID: "\(n)", customer: customer,
                     organization: "100", warehouse: warehouse, paidAtUs: 1_764_000_000_000_000,
                     lines: [.init(material: material, quantity: 2, unitPriceFen: 1999, lineNo: 1)], totalFen: 3998)
    }

    /// Runs `body` with a fresh fake on 127.0.0.1 and an adapter pointed at it.
    func withKingdee(_ fake: FakeKingdee = FakeKingdee(), login: KingdeeConfiguration.Login? = nil, referenceField: String = "FBillNo",
                     submitAndAudit: Bool = true, warehouses: [String] = [],
                     _ body: (FakeKingdee, KingdeeAdapter) async throws -> Void) async throws {
        let (url, task) = try await fake.serve()
        defer { task.cancel() }
        let configuration = KingdeeConfiguration(baseURL: url, acctID: fake.acctID, login: login ?? .password(user: fake.user, password: fake.password),
                                                 referenceField: referenceField, submitAndAudit: submitAndAudit, stockWarehouses: warehouses)
        try await body(fake, KingdeeAdapter(configuration: configuration, http: ErpHTTP(timeout: .seconds(10))))
    }

    @Test func aBatchIsSavedWithOneBatchSaveThenSubmittedAndAuditedWithOneCallEach() async throws {
        try await withKingdee { fake, adapter in
            let orders = (1...5).map { Self.order($0) }
            let results = try await adapter.create(orders)
            #expect(fake.calls("ValidateUser") == 1)
            #expect(fake.calls("BatchSave") == 1)
            #expect(fake.calls("Submit") == 1)
            #expect(fake.calls("Audit") == 1)
            #expect(fake.documents.count == 5)
            #expect(fake.documents.allSatisfy { $0.documentStatus == "C" })
            for o in orders {
                let document = try #require(try results[o.reference]?.get())
                #expect(document.state == .confirmed)
                #expect(document.number == o.reference)  // FBillNo carries the reference
            }
            let saved = try #require(fake.documents.first)
            #expect(saved.customer == "CUST-DOUYIN" && saved.organization == "100")
            #expect(saved.lines == [FakeKingdee.Line(material: "SKU-A", quantity: 2, taxPrice: 19.99, warehouse: "WH01")])
            #expect(saved.date == "2025-11-25 00:00:00")  // 1_764_000_000 s = 2025-11-24 16:00 UTC = 2025-11-25 00:00 UTC+8
        }
    }

    @Test func aValidationErrorAtOneIndexRefusesOnlyThatOrderWithKingdeesMessage() async throws {
        try await withKingdee { fake, adapter in
            let orders = [Self.order(1), Self.order(2, customer: "CUST-NOPE"), Self.order(3, material: "SKU-GONE")]
            let results = try await adapter.create(orders)
            #expect(fake.calls("BatchSave") == 1)
            #expect(try results["douyin:1"]?.get().state == .confirmed)
            guard case .failure(let refused)? = results["douyin:2"] else { Issue.record("douyin:2 should be refused"); return }
            #expect(!refused.isRetryable)
            #expect(refused.code == "MsgCode 11")
            #expect(refused.message.contains("客户编码[CUST-NOPE]"))
            guard case .failure(let material)? = results["douyin:3"] else { Issue.record("douyin:3 should be refused"); return }
            #expect(material.message.contains("SKU-GONE") && !material.isRetryable)
            #expect(fake.documents.map(\.reference) == ["douyin:1"])
        }
    }

    @Test func lookupFindsCreatedOrdersByReferenceSoARetryDoesNotDuplicate() async throws {
        try await withKingdee(submitAndAudit: false) { fake, adapter in
            _ = try await adapter.create([Self.order(1), Self.order(2), Self.order(3, customer: "CUST-NOPE")])
            let found = try await adapter.lookup(references: ["douyin:1", "douyin:2", "douyin:3", "douyin:4"])
            #expect(Set(found.keys) == ["douyin:1", "douyin:2"])
            #expect(found["douyin:1"]?.state == .draft)
            #expect(found["douyin:1"]?.id == String(fake.documents[0].id))
            #expect(fake.calls("ExecuteBillQuery") == 1)
            // A re-driven order that skipped the lookup is still refused by the unique bill number.
            let again = try await adapter.create([Self.order(1)])
            guard case .failure(let duplicate)? = again["douyin:1"] else { Issue.record("a second douyin:1 must be refused"); return }
            #expect(duplicate.message.contains("已经存在"))
            #expect(fake.documents.filter { $0.reference == "douyin:1" }.count == 1)
        }
    }

    @Test func aCustomReferenceFieldIsWrittenAndSearched() async throws {
        try await withKingdee(FakeKingdee(referenceField: "F_LS_Reference"), referenceField: "F_LS_Reference") { fake, adapter in
            let results = try await adapter.create([Self.order(7)])
            let document = try #require(try results["douyin:7"]?.get())
            #expect(document.number.hasPrefix("XSDD"))
            let found = try await adapter.lookup(references: ["douyin:7"])
            #expect(found["douyin:7"]?.number == document.number)
            #expect(found["douyin:7"]?.state == .confirmed)
            #expect(fake.documents.first?.reference == "douyin:7")
        }
    }

    @Test func aLostSessionLogsInAgainOnceAndRepeatsTheCall() async throws {
        try await withKingdee { fake, adapter in
            _ = try await adapter.create([Self.order(1)])
            fake.expireSessions()
            let results = try await adapter.create([Self.order(2)])
            #expect(try results["douyin:2"]?.get().state == .confirmed)
            #expect(fake.calls("ValidateUser") == 2)
            #expect(fake.calls("BatchSave") == 3)  // 1, then the refused one (会话信息已丢失) and its repeat
            #expect(fake.documents.map(\.reference) == ["douyin:1", "douyin:2"])
            #expect(adapter.logins.load(ordering: .relaxed) == 2)
        }
    }

    @Test func aWrongPasswordIsRefusedPermanentlyWithKingdeesMessage() async throws {
        let fake = FakeKingdee()
        try await withKingdee(fake, login: .password(user: fake.user, password: "wrong")) { fake, adapter in
            let e = await #expect(throws: ErpError.self) { _ = try await adapter.create([Self.order(1)]) }
            #expect(e?.isRetryable == false && e?.code == "LoginResultType 0")
            #expect(e?.message.contains("用户名或密码错误") == true)
            #expect(fake.calls("BatchSave") == 0)
            #expect(fake.loginsRefused == 1)
        }
    }

    @Test func theSignedAppLoginOpensASessionWithoutValidateUserAndReopensItWhenLost() async throws {
        let fake = FakeKingdee()
        try await withKingdee(fake, login: .appSecret(user: fake.user, appID: fake.appID, appSecret: fake.appSecret)) { fake, adapter in
            _ = try await adapter.create([Self.order(1), Self.order(2)])
            fake.expireSessions()
            let found = try await adapter.lookup(references: ["douyin:1", "douyin:2"])
            #expect(found.count == 2)
            #expect(fake.calls("ValidateUser") == 0)
            #expect(fake.loginsRefused == 0)
            #expect(fake.calls("ExecuteBillQuery") == 2)  // lost, then repeated with a fresh signed session
        }
    }

    @Test func aWrongAppSecretIsRefusedPermanently() async throws {
        let fake = FakeKingdee()
        try await withKingdee(fake, login: .appSecret(user: fake.user, appID: fake.appID, appSecret: "not-the-secret")) { fake, adapter in
            let e = await #expect(throws: ErpError.self) { _ = try await adapter.lookup(references: ["douyin:1"]) }
            #expect(e?.isRetryable == false && e?.code == "kingdee_login")
            #expect(e?.message.contains("会话信息已丢失") == true)
            #expect(fake.loginsRefused == 1)
        }
    }

    @Test func busyAnswersThrottlingAndServerErrorsAreRetryableAndSaveNothing() async throws {
        try await withKingdee { fake, adapter in
            for failure: FakeKingdee.Failure in [.status(503), .status(429), .busy] {
                fake.failNext([failure])
                let e = await #expect(throws: ErpError.self) { _ = try await adapter.create([Self.order(1), Self.order(2)]) }
                #expect(e?.isRetryable == true, "\(failure) should be retryable, got \(String(describing: e))")
            }
            #expect(fake.documents.isEmpty)
            let results = try await adapter.create([Self.order(1), Self.order(2)])
            #expect(results.values.allSatisfy { (try? $0.get()) != nil })
            #expect(fake.documents.count == 2)
        }
    }

    @Test func withoutTheSubmitAndAuditSettingOrdersStayDraftUntilConfirmed() async throws {
        try await withKingdee(submitAndAudit: false) { fake, adapter in
            let results = try await adapter.create([Self.order(1), Self.order(2)])
            #expect(fake.calls("Submit") == 0 && fake.calls("Audit") == 0)
            #expect(fake.documents.allSatisfy { $0.documentStatus == "A" })
            let drafts = try results.values.map { try $0.get() }
            #expect(drafts.allSatisfy { $0.state == .draft })
            let confirmed = try await adapter.confirm(drafts)
            #expect(confirmed.values.allSatisfy { (try? $0.get())?.state == .confirmed })
            #expect(fake.documents.allSatisfy { $0.documentStatus == "C" })
        }
    }

    @Test func aFailedAuditLeavesTheSavedOrderDraftAndConfirmFinishesItLater() async throws {
        try await withKingdee { fake, adapter in
            fake.failNext([.busy], service: "Audit")
            let results = try await adapter.create([Self.order(1), Self.order(2)])
            let drafts = try results.values.map { try $0.get() }
            #expect(drafts.count == 2 && drafts.allSatisfy { $0.state == .draft })
            #expect(fake.documents.allSatisfy { $0.documentStatus == "B" })  // submitted, audit lost
            // After a crash the caller finds them by reference and confirms: Submit is refused (审核中), Audit takes them.
            let found = try await adapter.lookup(references: ["douyin:1", "douyin:2"])
            #expect(found.values.allSatisfy { $0.state == .draft })
            let confirmed = try await adapter.confirm(Array(found.values))
            #expect(confirmed.values.allSatisfy { (try? $0.get())?.state == .confirmed })
            #expect(fake.documents.allSatisfy { $0.documentStatus == "C" })
        }
    }

    @Test func aSaveThatTimesOutIsRetryableAndTheLookupAfterwardsFindsWhatKingdeeSaved() async throws {
        let fake = FakeKingdee()
        let (url, task) = try await fake.serve()
        defer { task.cancel() }
        let adapter = KingdeeAdapter(configuration: KingdeeConfiguration(baseURL: url, acctID: fake.acctID, login: .password(user: fake.user, password: fake.password)),
                                     http: ErpHTTP(timeout: .milliseconds(500)))
        _ = try await adapter.lookup(references: ["douyin:0"])  // logged in while fast
        fake.setLatency(.milliseconds(1500))
        let e = await #expect(throws: ErpError.self) { _ = try await adapter.create([Self.order(1)]) }
        #expect(e?.isRetryable == true && e?.code == "transport")
        fake.setLatency(.zero)
        for _ in 0..<40 where fake.documents.isEmpty { try await Task.sleep(for: .milliseconds(100)) }
        #expect(try await adapter.lookup(references: ["douyin:1"])["douyin:1"] != nil)  // so the retry is not a second create
        #expect(fake.documents.count == 1)
    }

    @Test func cancellingAnAuditedOrderUnauditsItThenCancelsIt() async throws {
        try await withKingdee { fake, adapter in
            let created = try await adapter.create([Self.order(1)])
            let document = try #require(try created["douyin:1"]?.get())
            let cancelled = try await adapter.cancel([document])
            #expect(try cancelled["douyin:1"]?.get().state == .cancelled)
            #expect(fake.calls("UnAudit") == 1 && fake.calls("ExcuteOperation") == 1)
            #expect(fake.documents.first?.cancelStatus == "B")
            #expect(try await adapter.lookup(references: ["douyin:1"])["douyin:1"]?.state == .cancelled)
        }
    }

    @Test func stockIsReadFromSTKInventoryAndSummedPerMaterialAndWarehouse() async throws {
        try await withKingdee(warehouses: ["WH01", "WH02"]) { fake, adapter in
            fake.setStock(material: "SKU-A", warehouse: "WH01", lots: [(onHand: 10, available: 7), (onHand: 5, available: 5)])
            fake.setStock(material: "SKU-B", warehouse: "WH02", lots: [(onHand: 3, available: 1)])
            fake.setStock(material: "SKU-C", warehouse: "WH01", lots: [(onHand: 9, available: 9)])
            let levels = try await adapter.stockLevels(materials: ["SKU-A", "SKU-B"])
            #expect(Set(levels.map { "\($0.material)@\($0.warehouse)=\($0.onHand)/\($0.available)" }) == ["SKU-A@WH01=15/12", "SKU-B@WH02=3/1"])
            #expect(fake.calls("ExecuteBillQuery") == 1)
        }
    }

    @Test func theAppSignatureFollowsKingdeesSDK() {
        // Vectors computed with Python's hmac/base64 as Kingdee's Python SDK does (hex digest, then Base64).
        let content = KingdeeSigning.apiSignatureContent(path: "/k3cloud/X.common.kdsvc", nonce: "1700000000", timestamp: "1700000000")
        #expect(content == "POST\n%2Fk3cloud%2FX.common.kdsvc\n\nx-api-nonce:1700000000\nx-api-timestamp:1700000000\n")
        #expect(KingdeeSigning.hmac(content, key: "key") == "MjJlNjYwZWE2NzA3YTdhZjk5ZTc0ZjU4YjE0YTIyZjJmYTY1OWJmMjM1MTI0ZGZhMDc0YmEzY2EwYWRlZDExMQ==")
        let appID = KingdeeSigning.appID(clientID: "300416", secretBytes: Array("livesync-kingdee-secret!".utf8))
        #expect(appID == "300416_XFlDURVKV1ROXVtdU1dSXU9DXAATUhAS")
        let decoded = KingdeeSigning.clientSecret(appID: appID)
        #expect(decoded.clientID == "300416")
        #expect(decoded.secret == "bGl2ZXN5bmMta2luZ2RlZS1zZWNyZXQh")
    }
}
