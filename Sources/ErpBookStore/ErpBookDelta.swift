import Foundation
import GRDB
import Model

extension ErpBook {
    /// The writes one batch made to the book, in the order it made them: what a reader of the
    /// batch's changelog entry applies (`Writer.apply`) to get the same rows, without deciding,
    /// decoding orders or looking anything up.
    ///
    /// A `Writer` made with `recording:` appends each of its writes here. Every write is recorded
    /// with the values it bound (an `INSERT OR IGNORE` or a conditional `UPDATE` is recorded as
    /// such), so applied to the same rows as the writer had before the batch — what a changelog
    /// chain guarantees — it leaves the same rows. Besides the rows: the running totals' changes
    /// (`Summary`), applied only by a book that keeps them, and the messages the batch published,
    /// which `apply` skips and `published(in:from:)` returns (a restoring member republishes the
    /// last entries' outputs).
    ///
    /// Layout after the caller's prefix (little-endian): per write, a u8 `Op` and its fields;
    /// an integer is 8 bytes, an optional integer a u8 flag then 8 bytes when present, text and
    /// bytes a u32 length then the bytes.
    public final class Delta {
        public private(set) var bytes: [UInt8]

        /// A delta appended to `prefix` (the changelog entry's own header).
        public init(prefix: [UInt8] = []) {
            bytes = prefix
            bytes.reserveCapacity(2048)
        }

        enum Op: UInt8 {
            case holdOrder = 1, holdReservation, releasePending, settleRefunds, bookOrder, bookLine, bookShipment,
                 bookShipmentLine, bookRefund, cancelOrder, markShipped, summary, published
        }

        /// Records a message the batch published (skipped by `apply`; see `published(in:from:)`).
        public func published(topic: String, key: [UInt8], value: [UInt8]) {
            op(.published)
            text(topic)
            blob(key)
            blob(value)
        }

        func op(_ op: Op) { bytes.append(op.rawValue) }

        func int(_ v: Int64) {
            withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
        }

        func int(_ v: Int64?) {
            if let v {
                bytes.append(1)
                int(v)
            } else {
                bytes.append(0)
            }
        }

        func flag(_ b: Bool) { bytes.append(b ? 1 : 0) }

        func length(_ n: Int) {
            withUnsafeBytes(of: UInt32(n).littleEndian) { bytes.append(contentsOf: $0) }
        }

        func text(_ s: String) {
            var s = s
            s.withUTF8 { utf8 in
                length(utf8.count)
                bytes.append(contentsOf: utf8)
            }
        }

        func blob(_ b: [UInt8]) {
            length(b.count)
            bytes += b
        }

        func summary(_ s: Summary) {
            op(.summary)
            int(Int64(s.orders.count))
            for (key, value) in s.orders {
                text(key.platform)
                text(key.status)
                int(key.minute)
                int(value.count)
                int(value.syncMicros)
            }
            int(Int64(s.syncMilliseconds.count))
            for (ms, count) in s.syncMilliseconds {
                int(ms)
                int(count)
            }
            int(Int64(s.rejected.count))
            for (sku, count) in s.rejected {
                text(sku)
                int(count)
            }
            int(Int64(s.decisions.count))
            for (second, c) in s.decisions {
                int(second)
                int(c.synced)
                int(c.rejected)
                int(c.cancelled)
            }
        }

        /// The messages recorded with `published`, in order, from the delta starting at `offset`.
        public static func published(in bytes: [UInt8], from offset: Int) throws -> [(topic: String, key: [UInt8], value: [UInt8])] {
            var r = Reader(bytes: bytes, at: offset)
            var result: [(topic: String, key: [UInt8], value: [UInt8])] = []
            while !r.atEnd {
                let op = try r.op()
                if op == .published {
                    result.append((try r.text(), try r.blob(), try r.blob()))
                } else {
                    try r.skip(op)
                }
            }
            return result
        }
    }

    public enum DeltaError: Error, CustomStringConvertible, Equatable {
        case truncated(at: Int)
        case unknownOp(UInt8, at: Int)

        public var description: String {
            switch self {
            case .truncated(let at): "ERP book delta is truncated at byte \(at)"
            case .unknownOp(let op, let at): "ERP book delta has a write of unknown kind \(op) at byte \(at): upgrade every dispatch and read-model instance"
            }
        }
    }

    /// Reads a delta's fields in place.
    struct Reader {
        let bytes: [UInt8]
        var at: Int

        init(bytes: [UInt8], at: Int) {
            self.bytes = bytes
            self.at = at
        }

        var atEnd: Bool { at >= bytes.count }

        mutating func need(_ n: Int) throws {
            guard n >= 0, at + n <= bytes.count else { throw DeltaError.truncated(at: at) }
        }

        mutating func op() throws -> Delta.Op {
            try need(1)
            guard let op = Delta.Op(rawValue: bytes[at]) else { throw DeltaError.unknownOp(bytes[at], at: at) }
            at += 1
            return op
        }

        mutating func byte() throws -> UInt8 {
            try need(1)
            defer { at += 1 }
            return bytes[at]
        }

        mutating func int() throws -> Int64 {
            try need(8)
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(bytes[at + k]) << UInt64(8 * k) }
            at += 8
            return Int64(bitPattern: v)
        }

        /// A count of entries (each at least one byte, so a corrupt count fails as truncated).
        mutating func count() throws -> Int {
            let n = try int()
            guard n >= 0, n <= bytes.count - at else { throw DeltaError.truncated(at: at - 8) }
            return Int(n)
        }

        mutating func optionalInt() throws -> Int64? {
            try byte() == 0 ? nil : try int()
        }

        mutating func length() throws -> Int {
            try need(4)
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(bytes[at + k]) << UInt32(8 * k) }
            at += 4
            try need(Int(v))
            return Int(v)
        }

        mutating func text() throws -> String {
            let n = try length()
            defer { at += n }
            return String(decoding: bytes[at..<(at + n)], as: UTF8.self)
        }

        mutating func blob() throws -> [UInt8] {
            let n = try length()
            defer { at += n }
            return Array(bytes[at..<(at + n)])
        }

        mutating func data() throws -> Data {
            let n = try length()
            defer { at += n }
            return Data(bytes[at..<(at + n)])
        }

        mutating func skipLength() throws { at += try length() }

        mutating func skipInts(_ n: Int) throws {
            try need(8 * n)
            at += 8 * n
        }

        /// Steps over one write's fields (after its op byte).
        mutating func skip(_ op: Delta.Op) throws {
            switch op {
            case .holdOrder: try skipLength(); try skipLength(); try skipInts(1); _ = try optionalInt()
            case .holdReservation: try skipLength(); try skipLength(); try skipInts(2)
            case .releasePending: try skipLength()
            case .settleRefunds: try skipLength(); try skipInts(1)
            case .bookOrder:
                for _ in 0..<6 { try skipLength() }
                try skipInts(1)
                for _ in 0..<4 { try skipLength() }
                try skipInts(4)
                _ = try optionalInt()
            case .bookLine: try skipLength(); try skipInts(1); for _ in 0..<3 { try skipLength() }; try skipInts(2); _ = try byte()
            case .bookShipment: for _ in 0..<3 { try skipLength() }; try skipInts(1)
            case .bookShipmentLine: try skipLength(); try skipLength(); try skipInts(1)
            case .bookRefund: try skipLength(); try skipLength(); try skipInts(1); try skipLength(); try skipLength(); try skipInts(1); _ = try optionalInt()
            case .cancelOrder: try skipLength(); try skipInts(1)
            case .markShipped: for _ in 0..<3 { try skipLength() }; try skipInts(2)
            case .summary: _ = try summary()
            case .published: for _ in 0..<3 { try skipLength() }
            }
        }

        mutating func summary() throws -> Summary {
            var s = Summary()
            for _ in 0..<(try count()) {
                let platform = try text(), status = try text(), minute = try int()
                let orders = try int(), syncMicros = try int()
                s.orders[Summary.OrderKey(platform: platform, status: status, minute: minute)] = (orders, syncMicros)
            }
            for _ in 0..<(try count()) {
                let ms = try int()
                s.syncMilliseconds[ms] = try int()
            }
            for _ in 0..<(try count()) {
                let sku = try text()
                s.rejected[sku] = try int()
            }
            for _ in 0..<(try count()) {
                let second = try int()
                let synced = try int(), rejected = try int(), cancelled = try int()
                s.decisions[second] = (synced, rejected, cancelled)
            }
            return s
        }
    }
}
