import Inventory
import Testing

@Test func reservationNeverTakesAvailableBelowZero() {
    var level = StockLevel(onHand: 5, reserved: 0)
    let results = [3, 3, 2, 1, 0].map { level.reserve($0) }
    #expect(results == [true, false, true, false, false])
    #expect(level.available == 0)
    #expect(level.reserved == 5)
}

@Test func releaseReturnsUnitsAndNeverUnderflows() {
    var level = StockLevel(onHand: 5, reserved: 4)
    level.release(3)
    #expect(level.available == 4)
    level.release(10)
    #expect(level.reserved == 0)
}

@Test func setAvailableKeepsReservationsAndRefusesNegatives() throws {
    var level = StockLevel(onHand: 10, reserved: 4)
    try level.setAvailable(2)
    #expect(level == StockLevel(onHand: 6, reserved: 4))
    #expect(throws: StockRuleError.negativeQuantity(-1)) { try level.setAvailable(-1) }
}

@Test func removingMoreThanAvailableIsRefused() throws {
    var level = StockLevel(onHand: 10, reserved: 8)
    try level.adjust(by: -2)
    #expect(level.available == 0)
    #expect(throws: StockRuleError.self) { try level.adjust(by: -1) }
    try level.adjust(by: 5)
    #expect(level.available == 5)
}
