import Foundation
import Model

/// The payload of a `dispatch.changelog` entry, in one of two formats told apart by its first
/// byte, followed by the batch's clock (i64 µs, big-endian):
///
/// - version 2 (`deltaVersion`, what dispatch writes): the batch's writes to the ERP book of
///   one source partition, an `ErpBook.Delta` from byte `deltaOffset` on: the rows it inserted,
///   updated and deleted, the running totals' changes and the messages it published. A reader
///   (a restoring member, the read model) applies the rows without deciding anything.
/// - version 1 (`inputsVersion`, this struct; written by earlier releases, and by dispatch with
///   `dispatch.changelogFormat` `inputs` during a rolling upgrade from them): the batch's valid
///   inputs of one source partition, exactly as received. Dispatch's decisions depend only on
///   the book's rows of the same orders, the inputs and the clock, so replaying the entries of
///   a partition's chain in order rebuilds its rows, and recreates the outputs, exactly as the
///   writer committed them. Layout (big-endian): u8 version (1), i64 batch time µs, then per
///   input: u8 kind, u32 length, the message's value bytes.
///
/// A chain may hold both (entries written before and after an upgrade): each entry is applied
/// by its own format.
public struct BookEntry: Equatable, Sendable {
    /// The first byte of an entry of recorded inputs (replayed by deciding them again).
    public static let inputsVersion: UInt8 = 1
    /// The first byte of an entry of recorded writes (`ErpBook.Delta`, applied as they are).
    public static let deltaVersion: UInt8 = 2
    /// Where a version 2 entry's `ErpBook.Delta` starts: after the version and the batch time.
    public static let deltaOffset = 9

    /// The header of a version 2 entry, which its `ErpBook.Delta` follows.
    public static func deltaHeader(decidedAtUs: Int64) -> [UInt8] {
        var bytes = [deltaVersion]
        Encoder.put(&bytes, UInt64(bitPattern: decidedAtUs), 8)
        return bytes
    }

    public enum Kind: UInt8, Sendable {
        case order = 1, reservation = 2, shipped = 3, refund = 4

        /// The source topic of each kind.
        public var topic: String {
            switch self {
            case .order: Topics.ordersPlaced
            case .reservation: Topics.stockReservations
            case .shipped: Topics.shipmentsShipped
            case .refund: Topics.refundRequests
            }
        }
    }

    public var decidedAtUs: Int64
    public var inputs: [(kind: Kind, value: [UInt8])]

    public init(decidedAtUs: Int64, inputs: [(kind: Kind, value: [UInt8])] = []) {
        self.decidedAtUs = decidedAtUs
        self.inputs = inputs
    }

    public static func == (a: BookEntry, b: BookEntry) -> Bool {
        a.decidedAtUs == b.decidedAtUs && a.inputs.count == b.inputs.count
            && zip(a.inputs, b.inputs).allSatisfy { $0.kind == $1.kind && $0.value == $1.value }
    }

    /// Appends inputs one by one into the encoded form (the batch's hot path: no intermediate array).
    public struct Encoder: Sendable {
        public private(set) var bytes: [UInt8]

        public init(decidedAtUs: Int64) {
            bytes = [BookEntry.inputsVersion]
            bytes.reserveCapacity(4096)
            Self.put(&bytes, UInt64(bitPattern: decidedAtUs), 8)
        }

        public mutating func append(_ kind: Kind, _ value: [UInt8]) {
            bytes.append(kind.rawValue)
            Self.put(&bytes, UInt64(value.count), 4)
            bytes += value
        }

        static func put(_ out: inout [UInt8], _ v: UInt64, _ n: Int) {
            for shift in stride(from: (n - 1) * 8, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: v >> UInt64(shift))) }
        }
    }

    public func encoded() -> [UInt8] {
        var e = Encoder(decidedAtUs: decidedAtUs)
        for i in inputs { e.append(i.kind, i.value) }
        return e.bytes
    }

    /// Decodes a version 1 entry (any other version is refused).
    public static func decode(_ bytes: [UInt8]) throws -> BookEntry {
        var i = 0
        func read(_ n: Int) throws -> UInt64 {
            guard i + n <= bytes.count else { throw BookEntryError.truncated(at: i) }
            var v: UInt64 = 0
            for _ in 0..<n { v = (v << 8) | UInt64(bytes[i]); i += 1 }
            return v
        }
        let version = try read(1)
        guard version == inputsVersion else { throw BookEntryError.unknownVersion(UInt8(version)) }
        var entry = BookEntry(decidedAtUs: Int64(bitPattern: try read(8)))
        while i < bytes.count {
            let raw = UInt8(try read(1))
            guard let kind = Kind(rawValue: raw) else { throw BookEntryError.unknownKind(raw, at: i - 1) }
            let n = Int(try read(4))
            guard i + n <= bytes.count else { throw BookEntryError.truncated(at: i) }
            entry.inputs.append((kind, Array(bytes[i..<(i + n)])))
            i += n
        }
        return entry
    }
}

public enum BookEntryError: Error, CustomStringConvertible, Equatable {
    case truncated(at: Int)
    case unknownVersion(UInt8)
    case unknownKind(UInt8, at: Int)

    public var description: String {
        switch self {
        case .truncated(let at): "dispatch changelog entry is truncated at byte \(at)"
        case .unknownVersion(let v): "dispatch changelog entry has version \(v), which this build does not know: upgrade every dispatch and read-model instance"
        case .unknownKind(let k, let at): "dispatch changelog entry has an input of unknown kind \(k) at byte \(at)"
        }
    }
}
