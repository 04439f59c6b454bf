import ErpAdapters
import Foundation
import Testing

@Suite struct ErpAmountTests {
    @Test func fenBecomeYuanWithTwoDecimals() {
        #expect(ErpAmount.yuan(1234) == "12.34")
        #expect(ErpAmount.yuan(5) == "0.05")
        #expect(ErpAmount.yuan(100) == "1.00")
        #expect(ErpAmount.yuan(-250) == "-2.50")
        #expect(ErpAmount.decimal(1999) == Decimal(string: "19.99"))
    }
}
