import Foundation
import GRDB
import Testing

/// A live session whose orders arrive in every platform's own push format (signed, and for
/// WeChat Channels and Kuaishou encrypted), through the real executables: each is verified,
/// its detail fetched from the fake platform API, mapped and published by SKU, and buyer data
/// reaches the ERP book only masked.
@Test func mixedPlatformSessionReachesTheERPThroughEveryConnectorWithBuyerDataMasked() throws {
    let dir = temporaryDirectory("platforms")
    let s = try runDemo(["--orders", "3000", "--seed", "5", "--platforms", "generic,douyin,kuaishou,wechat,tiktok", "--no-alerting"], dataDir: dir)
    #expect(s.accepted == 3000)
    #expect(s.refused == 0 && s.failed == 0)
    #expect(s.lost == 0 && s.oversold == 0 && s.stock_mismatched_skus == 0)
    #expect(s.accepted == s.synced + s.rejected + s.cancelled)
    let erp = try openDatabase(dir + "/book.sqlite")
    let perPlatform = try erp.read { db in
        try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: """
            SELECT substr(order_id, 1, instr(order_id, ':') - 1), COUNT(*) FROM erp_orders GROUP BY 1
            """).map { ($0[0] as String, $0[1] as Int) })
    }
    #expect(perPlatform == ["generic": 600, "douyin": 600, "kuaishou": 600, "wechat": 600, "tiktok": 600])
    let clearPhones = try erp.read { db in
        try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM erp_orders WHERE buyer_phone NOT LIKE '138****%'") ?? -1
    }
    #expect(clearPhones == 0, "the ERP book holds only masked phones")
    let ledger = try openDatabase(dir + "/connectors.sqlite")
    #expect(try ledger.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM platform_messages WHERE kind = 'paid'") } == 2400)
}
