/// Stock of one SKU in one warehouse.
///
/// `onHand` counts every unit in the warehouse, `reserved` those promised to paid orders;
/// `available = onHand - reserved` is what can still be sold and is never negative.
public struct StockLevel: Sendable, Equatable {
    public var onHand: Int64
    public var reserved: Int64

    public init(onHand: Int64 = 0, reserved: Int64 = 0) {
        self.onHand = onHand
        self.reserved = reserved
    }

    public var available: Int64 { onHand - reserved }

    /// Reserves `quantity` if that many are available; otherwise changes nothing.
    /// - Returns: whether the units were reserved.
    public mutating func reserve(_ quantity: Int64) -> Bool {
        guard quantity > 0, quantity <= available else { return false }
        reserved += quantity
        return true
    }

    /// Returns a reservation's units to available stock.
    public mutating func release(_ quantity: Int64) {
        reserved -= min(quantity, reserved)
    }

    /// Sets what is free to sell (a warehouse count of unreserved goods); reservations stay.
    public mutating func setAvailable(_ quantity: Int64) throws(StockRuleError) {
        guard quantity >= 0 else { throw .negativeQuantity(quantity) }
        onHand = reserved + quantity
    }

    /// Takes the ERP's figures as the truth about physical stock, while LiveSync's own orders are
    /// in flight: `erpAvailable` is what the ERP can still promise (it already subtracts the
    /// `erpRecorded` units of LiveSync's orders it has recorded), so on hand before LiveSync's
    /// reservations is `erpAvailable + erpRecorded` and available becomes
    /// `erpAvailable − (reserved − erpRecorded)`: the units reserved here that the ERP has not
    /// recorded yet are subtracted once, never twice, never not at all.
    /// - Returns: the units the ERP is short of LiveSync's reservations (0 normally); on hand is
    ///   then kept at `reserved` so available is 0, not negative, and the shortfall is reported.
    public mutating func setFromErp(available erpAvailable: Int64, recorded erpRecorded: Int64) throws(StockRuleError) -> Int64 {
        guard erpRecorded >= 0 else { throw .negativeQuantity(erpRecorded) }
        let target = erpAvailable + erpRecorded
        onHand = max(reserved, target)
        return max(0, reserved - target)
    }

    /// Adds received goods (positive) or removes damaged/lost ones (negative).
    public mutating func adjust(by delta: Int64) throws(StockRuleError) {
        guard available + delta >= 0 else { throw .wouldGoNegative(available: available, delta: delta) }
        onHand += delta
    }
}

/// Why a stock adjustment cannot be applied.
public enum StockRuleError: Error, CustomStringConvertible, Equatable {
    case negativeQuantity(Int64)
    case wouldGoNegative(available: Int64, delta: Int64)
    case missingField(String)

    public var description: String {
        switch self {
        case .negativeQuantity(let q): "a SET adjustment needs a quantity >= 0, got \(q)"
        case .wouldGoNegative(let a, let d): "removing \(-d) units would take available stock below zero (available \(a)); count the warehouse and send a SET instead"
        case .missingField(let f): "the adjustment has no \(f)"
        }
    }
}
