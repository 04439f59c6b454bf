import Foundation
import Worker

/// One batch's change to one source partition of the stock store: the payload of its
/// `stock.changelog` entry. Restoring the deltas of a partition's chain in order rebuilds its
/// rows exactly: final levels of the SKUs it touched, the lines it decided (or released) and
/// the adjustments it applied, so duplicates stay duplicates after a move.
///
/// Encoding (version 1, big-endian): u8 version, i64 decided-at µs, then three sections, each a
/// u32 count followed by its records — rows (sku, warehouse, i64 on hand, i64 reserved), lines
/// (u8 flags, event id, then order id unless flag 1 (it is the event id less `:<line no>`), sku
/// unless flag 2 and warehouse unless flag 4 (as the previous line's); u8 status, then varints:
/// quantity, line number, line count, available after, as published in the reservation) and adjustments (id, sku,
/// warehouse, u8 kind, i64 quantity); strings are u16 length + UTF-8.
public struct StockDelta: Sendable, Equatable {
    public struct Row: Sendable, Equatable { public var sku, warehouse: String; public var onHand, reserved: Int64 }
    public struct Line: Sendable, Equatable {
        public var eventID, orderID, sku, warehouse: String
        public var quantity: Int64
        public var status: UInt8
        public var lineNo: UInt32 = 0, lineCount: UInt32 = 0
        public var availableAfter: Int64 = 0
    }
    public struct Adjustment: Sendable, Equatable { public var id, sku, warehouse: String; public var kind: UInt8; public var quantity: Int64 }

    public var decidedAtUs: Int64 = 0
    public var rows: [Row] = []
    public var lines: [Line] = []
    public var adjustments: [Adjustment] = []

    /// Builds a delta while the batch is applied, appending bytes directly (no per-line objects).
    public struct Writer: Sendable {
        let now: Int64
        var rows = BinaryWriter(), lines = BinaryWriter(capacity: 4096), adjustments = BinaryWriter()
        var rowCount: UInt32 = 0, lineCount: UInt32 = 0, adjustmentCount: UInt32 = 0
        var lastSKU = "", lastWarehouse = ""

        public init(now: Int64) { self.now = now }

        public mutating func row(sku: String, warehouse: String, onHand: Int64, reserved: Int64) {
            rows.string(sku); rows.string(warehouse); rows.i64(onHand); rows.i64(reserved)
            rowCount += 1
        }

        public mutating func line(_ eventID: String, order: String, sku: String, warehouse: String, quantity: Int64, status: UInt8,
                                  lineNo: UInt32 = 0, lineCount: UInt32 = 0, availableAfter: Int64 = 0) {
            // Hot partitions hold long runs of one SKU and ids derived from the order id: a flag
            // byte says which of order id, SKU and warehouse are left out (derived / as the previous line).
            let derived = StockDelta.isDerived(eventID, order: order, lineNo: lineNo)
            let flags: UInt8 = (derived ? 1 : 0) | (self.lineCount > 0 && sku == lastSKU ? 2 : 0) | (self.lineCount > 0 && warehouse == lastWarehouse ? 4 : 0)
            lines.u8(flags)
            lines.string(eventID)
            if flags & 1 == 0 { lines.string(order) }
            if flags & 2 == 0 { lines.string(sku) }
            if flags & 4 == 0 { lines.string(warehouse) }
            lastSKU = sku
            lastWarehouse = warehouse
            lines.u8(status)
            lines.signedVarint(quantity); lines.varint(UInt64(lineNo)); lines.varint(UInt64(lineCount)); lines.signedVarint(availableAfter)
            self.lineCount += 1
        }

        public mutating func adjustment(_ id: String, sku: String, warehouse: String, kind: UInt8, quantity: Int64) {
            adjustments.string(id); adjustments.string(sku); adjustments.string(warehouse)
            adjustments.u8(kind); adjustments.i64(quantity)
            adjustmentCount += 1
        }

        public func encoded() -> [UInt8] {
            var out = BinaryWriter(capacity: 21 + rows.bytes.count + lines.bytes.count + adjustments.bytes.count)
            out.u8(1)
            out.i64(now)
            var bytes = out.bytes
            var n = BinaryWriter(); n.u32(rowCount); bytes += n.bytes; bytes += rows.bytes
            n = BinaryWriter(); n.u32(lineCount); bytes += n.bytes; bytes += lines.bytes
            n = BinaryWriter(); n.u32(adjustmentCount); bytes += n.bytes; bytes += adjustments.bytes
            return bytes
        }
    }

    /// Whether `event` is exactly `<order>:<lineNo>` (the id scheme of `Identifiers`), without
    /// building the string: this runs once per decided line.
    static func isDerived(_ event: String, order: String, lineNo: UInt32) -> Bool {
        let e = event.utf8, o = order.utf8
        guard e.count > o.count + 1 else { return false }
        // Byte comparison (memcmp on native strings), not Unicode-equivalence `hasPrefix`.
        let prefixMatches = e.withContiguousStorageIfAvailable { eb in
            o.withContiguousStorageIfAvailable { ob in ob.isEmpty || memcmp(eb.baseAddress!, ob.baseAddress!, ob.count) == 0 }
        } ?? nil
        guard prefixMatches ?? e.starts(with: o) else { return false }
        let rest = e.dropFirst(o.count)
        guard rest.first == UInt8(ascii: ":") else { return false }
        let digits = rest.dropFirst()
        guard digits.count <= 10, digits.count == 1 || digits.first != UInt8(ascii: "0") else { return false }
        var v: UInt64 = 0
        for c in digits {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return false }
            v = v * 10 + UInt64(c - UInt8(ascii: "0"))
        }
        return v == UInt64(lineNo)
    }

    public static func decode(_ bytes: [UInt8]) throws -> StockDelta {
        var r = BinaryReader(bytes)
        let version = try r.u8()
        guard version == 1 else { throw BinaryCodingError.unsupportedVersion(version) }
        var d = StockDelta()
        d.decidedAtUs = try r.i64()
        for _ in 0..<(try r.u32()) {
            d.rows.append(Row(sku: try r.string(), warehouse: try r.string(), onHand: try r.i64(), reserved: try r.i64()))
        }
        var lastSKU = "", lastWarehouse = ""
        for _ in 0..<(try r.u32()) {
            let flags = try r.u8()
            let eventID = try r.string()
            let order = flags & 1 == 0 ? try r.string() : nil
            if flags & 2 == 0 { lastSKU = try r.string() }
            if flags & 4 == 0 { lastWarehouse = try r.string() }
            let status = try r.u8(), quantity = try r.signedVarint()
            let lineNo = UInt32(truncatingIfNeeded: try r.varint()), lineCount = UInt32(truncatingIfNeeded: try r.varint()), after = try r.signedVarint()
            d.lines.append(Line(eventID: eventID, orderID: order ?? String(eventID.dropLast("\(lineNo)".count + 1)),
                                sku: lastSKU, warehouse: lastWarehouse, quantity: quantity, status: status,
                                lineNo: lineNo, lineCount: lineCount, availableAfter: after))
        }
        for _ in 0..<(try r.u32()) {
            d.adjustments.append(Adjustment(id: try r.string(), sku: try r.string(), warehouse: try r.string(), kind: try r.u8(), quantity: try r.i64()))
        }
        return d
    }
}
