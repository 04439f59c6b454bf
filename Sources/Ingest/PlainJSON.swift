import Foundation

/// A one-pass reader of the generic webhook's bodies as they normally come: exactly the known
/// keys, each once, string values without escapes, integers as plain digits. It declines
/// (returns nil) on anything else — an escape, an unknown or repeated key, a missing required
/// field, a null where a value is required, a fraction or exponent, invalid UTF-8, trailing
/// bytes — and `GenericWebhook.decode` then hands the body to Foundation's `JSONDecoder`, which
/// decodes it or names the field at fault. So whatever this reader accepts, `JSONDecoder` decodes
/// to the same value; it only saves `JSONDecoder`'s cost on the common case.
enum PlainJSON {
    static func order(_ body: [UInt8]) -> GenericWebhook.OrderJSON? {
        body.withUnsafeBufferPointer { buf in
            var c = Cursor(buf)
            guard let order = c.order(), c.atEnd() else { return nil }
            return order
        }
    }

    static func refund(_ body: [UInt8]) -> GenericWebhook.RefundJSON? {
        body.withUnsafeBufferPointer { buf in
            var c = Cursor(buf)
            guard let refund = c.refund(), c.atEnd() else { return nil }
            return refund
        }
    }

    struct Cursor {
        let p: UnsafeBufferPointer<UInt8>
        var i = 0

        init(_ p: UnsafeBufferPointer<UInt8>) { self.p = p }

        mutating func ws() {
            while i < p.count, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 }
        }

        mutating func eat(_ c: UInt8) -> Bool {
            ws()
            guard i < p.count, p[i] == c else { return false }
            i += 1
            return true
        }

        mutating func atEnd() -> Bool {
            ws()
            return i == p.count
        }

        /// A string without escapes or control characters: its bytes (not validated).
        mutating func rawString() -> UnsafeBufferPointer<UInt8>? {
            guard eat(UInt8(ascii: "\"")) else { return nil }
            let start = i
            while i < p.count {
                let b = p[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    return UnsafeBufferPointer(rebasing: p[start..<(i - 1)])
                }
                if b == UInt8(ascii: "\\") || b < 0x20 { return nil }
                i += 1
            }
            return nil
        }

        mutating func string() -> String? {
            guard let raw = rawString() else { return nil }
            return String(validating: raw, as: UTF8.self)
        }

        /// `null` (consumed) or not.
        mutating func null() -> Bool {
            ws()
            guard i + 4 <= p.count, p[i] == UInt8(ascii: "n"), p[i + 1] == UInt8(ascii: "u"), p[i + 2] == UInt8(ascii: "l"), p[i + 3] == UInt8(ascii: "l") else { return false }
            i += 4
            return true
        }

        /// `-?(0|[1-9][0-9]{0,17})` followed by a delimiter (no fraction or exponent).
        mutating func int() -> Int64? {
            ws()
            var negative = false
            if i < p.count, p[i] == UInt8(ascii: "-") { negative = true; i += 1 }
            let start = i
            var v: Int64 = 0
            while i < p.count, p[i] &- UInt8(ascii: "0") < 10 {
                // 18 digits never overflow; a longer number goes to JSONDecoder.
                guard i - start < 18 else { return nil }
                v = v * 10 + Int64(p[i] &- UInt8(ascii: "0"))
                i += 1
            }
            let digits = i - start
            guard digits >= 1, digits <= 18, !(digits > 1 && p[start] == UInt8(ascii: "0")), !(negative && v == 0) else { return nil }
            if i < p.count {
                let d = p[i]
                guard d == UInt8(ascii: ",") || d == UInt8(ascii: "}") || d == UInt8(ascii: "]") || d == 0x20 || d == 0x0A || d == 0x0D || d == 0x09 else { return nil }
            }
            return negative ? -v : v
        }

        /// An optional value: nil for `null`, `.some(nil)` when it is neither null nor parses.
        mutating func optionalString() -> String?? {
            if null() { return .some(nil) }
            guard let s = string() else { return nil }
            return .some(s)
        }

        mutating func optionalInt() -> Int64?? {
            if null() { return .some(nil) }
            guard let v = int() else { return nil }
            return .some(v)
        }

        /// Reads an object, calling `field` with each key's index in `keys` (a key not there, or
        /// seen twice, declines); returns the keys seen as bits.
        mutating func object(_ keys: [StaticString], _ field: (inout Cursor, Int) -> Bool) -> UInt32? {
            guard eat(UInt8(ascii: "{")) else { return nil }
            var seen: UInt32 = 0
            if eat(UInt8(ascii: "}")) { return seen }
            while true {
                guard let key = rawString(), eat(UInt8(ascii: ":")) else { return nil }
                guard let k = keys.firstIndex(where: { Self.equal(key, $0) }), seen & (1 << k) == 0 else { return nil }
                seen |= 1 << k
                guard field(&self, k) else { return nil }
                if eat(UInt8(ascii: ",")) { continue }
                return eat(UInt8(ascii: "}")) ? seen : nil
            }
        }

        static func equal(_ key: UnsafeBufferPointer<UInt8>, _ s: StaticString) -> Bool {
            guard key.count == s.utf8CodeUnitCount else { return false }
            let w = s.utf8Start
            for k in 0..<key.count where key[k] != w[k] { return false }
            return true
        }

        static let orderKeys: [StaticString] = ["shop_id", "order_id", "currency", "paid_at_ms", "buyer", "remark", "lines"]
        static let buyerKeys: [StaticString] = ["name", "phone", "address"]
        static let lineKeys: [StaticString] = ["sku", "quantity", "unit_price_fen", "warehouse"]
        static let refundKeys: [StaticString] = ["shop_id", "order_id", "refund_id", "amount_fen", "reason"]

        mutating func order() -> GenericWebhook.OrderJSON? {
            var shop = "", orderID = "", currency = "", remark: String?, paidAt: Int64?
            var buyer: GenericWebhook.BuyerJSON?
            var lines: [GenericWebhook.Line] = []
            guard let seen = object(Self.orderKeys, { c, k in
                switch k {
                case 0: guard let s = c.string() else { return false }; shop = s
                case 1: guard let s = c.string() else { return false }; orderID = s
                case 2: guard let s = c.string() else { return false }; currency = s
                case 3: guard let v = c.optionalInt() else { return false }; paidAt = v
                case 4: guard let b = c.buyer() else { return false }; buyer = b
                case 5: guard let s = c.optionalString() else { return false }; remark = s
                default: guard let l = c.lines() else { return false }; lines = l
                }
                return true
            }) else { return nil }
            // shop_id, order_id, currency, buyer and lines are required.
            guard seen & 0b101_0111 == 0b101_0111, let buyer else { return nil }
            return GenericWebhook.OrderJSON(shop_id: shop, order_id: orderID, currency: currency, paid_at_ms: paidAt, buyer: buyer, remark: remark, lines: lines)
        }

        mutating func buyer() -> GenericWebhook.BuyerJSON? {
            var name = "", phone = "", address = ""
            guard let seen = object(Self.buyerKeys, { c, k in
                guard let s = c.string() else { return false }
                switch k {
                case 0: name = s
                case 1: phone = s
                default: address = s
                }
                return true
            }), seen == 0b111 else { return nil }
            return GenericWebhook.BuyerJSON(name: name, phone: phone, address: address)
        }

        mutating func lines() -> [GenericWebhook.Line]? {
            guard eat(UInt8(ascii: "[")) else { return nil }
            var lines: [GenericWebhook.Line] = []
            if eat(UInt8(ascii: "]")) { return lines }
            while true {
                guard let line = line() else { return nil }
                lines.append(line)
                if eat(UInt8(ascii: ",")) { continue }
                return eat(UInt8(ascii: "]")) ? lines : nil
            }
        }

        mutating func line() -> GenericWebhook.Line? {
            var sku = "", quantity: Int64 = 0, price: Int64 = 0, warehouse: String?
            guard let seen = object(Self.lineKeys, { c, k in
                switch k {
                case 0: guard let s = c.string() else { return false }; sku = s
                case 1: guard let v = c.int() else { return false }; quantity = v
                case 2: guard let v = c.int() else { return false }; price = v
                default: guard let s = c.optionalString() else { return false }; warehouse = s
                }
                return true
            }), seen & 0b111 == 0b111 else { return nil }
            return GenericWebhook.Line(sku: sku, quantity: quantity, unit_price_fen: price, warehouse: warehouse)
        }

        mutating func refund() -> GenericWebhook.RefundJSON? {
            var shop = "", orderID = "", refundID = "", amount: Int64 = 0, reason: String?
            guard let seen = object(Self.refundKeys, { c, k in
                switch k {
                case 0: guard let s = c.string() else { return false }; shop = s
                case 1: guard let s = c.string() else { return false }; orderID = s
                case 2: guard let s = c.string() else { return false }; refundID = s
                case 3: guard let v = c.int() else { return false }; amount = v
                default: guard let s = c.optionalString() else { return false }; reason = s
                }
                return true
            }), seen & 0b1111 == 0b1111 else { return nil }
            return GenericWebhook.RefundJSON(shop_id: shop, order_id: orderID, refund_id: refundID, amount_fen: amount, reason: reason)
        }
    }
}
