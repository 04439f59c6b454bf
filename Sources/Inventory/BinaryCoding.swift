/// Appends a compact big-endian binary encoding: for store deltas written once per line on the
/// hot path, where a protobuf message per line would cost more than the line's SQL insert.
public struct BinaryWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    public var isEmpty: Bool { bytes.isEmpty }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }

    public mutating func u32(_ v: UInt32) {
        bytes.append(UInt8(truncatingIfNeeded: v >> 24)); bytes.append(UInt8(truncatingIfNeeded: v >> 16))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8)); bytes.append(UInt8(truncatingIfNeeded: v))
    }

    public mutating func i64(_ v: Int64) {
        let u = UInt64(bitPattern: v)
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: u >> UInt64(shift))) }
    }

    /// An unsigned LEB128 varint: small counts and quantities take one byte.
    public mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// A signed varint (zigzag: small magnitudes of either sign take one byte).
    public mutating func signedVarint(_ v: Int64) {
        varint(UInt64(bitPattern: (v << 1) ^ (v >> 63)))
    }

    /// A string of at most 65,535 UTF-8 bytes (longer ones are cut: ids and SKU codes are far shorter).
    public mutating func string(_ s: String) {
        var s = s
        s.withUTF8 { utf8 in
            let n = min(utf8.count, 65_535)
            bytes.append(UInt8(n >> 8)); bytes.append(UInt8(n & 0xff))
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[0..<n]))
        }
    }
}

/// Reads what `BinaryWriter` wrote; throws on truncated or malformed input instead of trapping.
public struct BinaryReader {
    let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var isAtEnd: Bool { position >= bytes.count }

    mutating func need(_ n: Int) throws(BinaryCodingError) {
        guard position + n <= bytes.count else { throw .truncated(at: position, needed: n) }
    }

    public mutating func u8() throws(BinaryCodingError) -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u32() throws(BinaryCodingError) -> UInt32 {
        try need(4)
        var v: UInt32 = 0
        for _ in 0..<4 { v = (v << 8) | UInt32(bytes[position]); position += 1 }
        return v
    }

    public mutating func i64() throws(BinaryCodingError) -> Int64 {
        try need(8)
        var v: UInt64 = 0
        for _ in 0..<8 { v = (v << 8) | UInt64(bytes[position]); position += 1 }
        return Int64(bitPattern: v)
    }

    public mutating func varint() throws(BinaryCodingError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard shift < 64 else { throw .truncated(at: position, needed: 1) }
            let b = try u8()
            v |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return v }
            shift += 7
        }
    }

    public mutating func signedVarint() throws(BinaryCodingError) -> Int64 {
        let u = try varint()
        return Int64(bitPattern: u >> 1) ^ -Int64(bitPattern: u & 1)
    }

    public mutating func string() throws(BinaryCodingError) -> String {
        try need(2)
        let n = Int(bytes[position]) << 8 | Int(bytes[position + 1])
        position += 2
        try need(n)
        defer { position += n }
        return String(decoding: bytes[position..<(position + n)], as: UTF8.self)
    }
}

public enum BinaryCodingError: Error, CustomStringConvertible {
    case truncated(at: Int, needed: Int)
    case unsupportedVersion(UInt8)

    public var description: String {
        switch self {
        case .truncated(let at, let needed): "binary record truncated at byte \(at) (\(needed) more bytes expected)"
        case .unsupportedVersion(let v): "binary record version \(v) is not supported by this build: upgrade it"
        }
    }
}
