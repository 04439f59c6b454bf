import ErpAdapters
import ErpSync
import Foundation
import Inventory
import Model
import Testing
import Worker

@Suite struct ErpMappingTests {
    @Test func mappingSendsTheErpCodesOfSkuShopAndWarehouse() throws {
        let m = try ErpFieldMapping.parse("""
            {
              "material": {"SKU-1": "1.01.001"},
              "customer": {"default": "C0", "generic": "C-GEN", "generic:shop-9": "C-9"},
              "warehouse": {"main": "CK01"},
              "organization": "100",
              "discounts": true,
              "remark": "{platform} {platformOrderId}"
            }
            """, source: "mapping.json")
        var o = ErpWriterTests.order(5)
        o.promotionFen = 100
        let sale = try #require(m.saleOrders(o).first)
        #expect(sale.reference == o.orderID)
        #expect(sale.customer == "C-GEN")
        #expect(sale.warehouse == "CK01")
        #expect(sale.organization == "100")
        #expect(sale.lines.map(\.material) == ["1.01.001"])
        #expect(sale.totalFen == 2 * 1990 - 100)
        #expect(sale.remark == "generic 5")
        #expect(m.sku(material: "1.01.001") == "SKU-1")
    }

    @Test func aBadMappingIsRefusedNamingItsLine() {
        let cases: [(String, String)] = [
            ("{\n\"material\": {\"SKU-1\": 5}\n}", "mapping.json:2"),
            ("{\n\"customer\": {\"default\": \"C\",\n \"nosuchplatform\": \"X\"}\n}", "mapping.json:3"),
            ("{\n\"customer\": {\"douyin\": \"X\"}\n}", "mapping.json:2"),
            ("{\n\n\"remark\": \"{buyerPhone}\"\n}", "mapping.json:3"),
            ("{\n\"colour\": \"red\"\n}", "mapping.json:2"),
        ]
        for (text, prefix) in cases {
            #expect {
                _ = try ErpFieldMapping.parse(text, source: "mapping.json")
            } throws: { error in
                "\(error)".hasPrefix(prefix)
            }
        }
    }

    @Test func aStockPullSubtractsOnlyTheReservationsTheErpHasNotRecorded() throws {
        // LiveSync reserved 30; the ERP recorded 20 of them (its available already excludes
        // those) and has 70 it can still promise: LiveSync may sell 70 − (30 − 20) = 60.
        var level = StockLevel(onHand: 100, reserved: 30)
        #expect(try level.setFromErp(available: 70, recorded: 20) == 0)
        #expect(level.available == 60)
        // The ERP has less than LiveSync already promised: nothing more is sold, the shortfall is reported.
        var short = StockLevel(onHand: 100, reserved: 30)
        #expect(try short.setFromErp(available: 5, recorded: 10) == 15)
        #expect(short.available == 0)
    }

    @Test func aSaleRecordedBetweenTheTwoReadsIsNeverCountedAsAvailable() {
        // First read: recorded 20 then available 70; a sale of 5 is recorded; second read: 25.
        let first = [ErpStockLevel(material: "M", warehouse: "W", onHand: 90, available: 70, recordedByLiveSync: 20)]
        let second = [ErpStockLevel(material: "M", warehouse: "W", onHand: 90, available: 65, recordedByLiveSync: 25)]
        let a = ErpStockPull.adjustments(first: first, second: second, mapping: .init(), target: "t", at: 1)
        #expect(a.count == 1)
        #expect(a[0].kind == .erpSnapshot)
        #expect(a[0].quantity == 70)
        #expect(a[0].erpRecorded == 20)
        // A cancellation between the reads (recorded 20 → 15): the smaller recorded count is used.
        let cancelled = [ErpStockLevel(material: "M", warehouse: "W", onHand: 90, available: 75, recordedByLiveSync: 15)]
        #expect(ErpStockPull.adjustments(first: first, second: cancelled, mapping: .init(), target: "t", at: 1)[0].erpRecorded == 15)
    }
}
