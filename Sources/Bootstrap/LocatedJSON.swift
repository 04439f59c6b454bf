import Foundation

/// A JSON value that remembers the line it starts on, so a configuration error can name the
/// line of the bad rule or channel (Foundation's parsers keep no positions).
public indirect enum LocatedJSON: Sendable {
    case object([(key: String, value: LocatedJSON)], line: Int)
    case array([LocatedJSON], line: Int)
    case string(String, line: Int)
    case number(Double, line: Int)
    case bool(Bool, line: Int)
    case null(line: Int)

    public var line: Int {
        switch self {
        case .object(_, let l), .array(_, let l), .string(_, let l), .number(_, let l), .bool(_, let l), .null(let l): l
        }
    }

    public subscript(key: String) -> LocatedJSON? {
        if case .object(let members, _) = self { return members.last { $0.key == key }?.value }
        return nil
    }

    public static func parse(_ text: String) throws -> LocatedJSON {
        var parser = Parser(bytes: Array(text.utf8))
        parser.skipSpace()
        let value = try parser.value()
        parser.skipSpace()
        guard parser.i == parser.bytes.count else { throw parser.error("unexpected text after the JSON value") }
        return value
    }

    public struct SyntaxError: Error, CustomStringConvertible {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    struct Parser {
        let bytes: [UInt8]
        var i = 0
        var line = 1

        func error(_ message: String) -> SyntaxError { SyntaxError(line: line, message: message) }

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) {
                if bytes[i] == 0x0A { line += 1 }
                i += 1
            }
        }

        mutating func expect(_ c: UInt8) throws {
            skipSpace()
            guard i < bytes.count, bytes[i] == c else { throw error("expected '\(Character(UnicodeScalar(c)))'") }
            i += 1
        }

        mutating func value() throws -> LocatedJSON {
            skipSpace()
            guard i < bytes.count else { throw error("unexpected end of file") }
            let start = line
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(String, LocatedJSON)] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object([], line: start) }
                while true {
                    skipSpace()
                    guard case .string(let key, _) = try value() else { throw error("expected a string key") }
                    try expect(UInt8(ascii: ":"))
                    members.append((key, try value()))
                    skipSpace()
                    guard i < bytes.count else { throw error("unterminated object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members.map { (key: $0.0, value: $0.1) }, line: start) }
                    throw error("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [LocatedJSON] = []
                skipSpace()
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array([], line: start) }
                while true {
                    items.append(try value())
                    skipSpace()
                    guard i < bytes.count else { throw error("unterminated array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items, line: start) }
                    throw error("expected ',' or ']'")
                }
            case UInt8(ascii: "\""):
                // Find the closing quote (skipping escapes) and let Foundation decode the literal.
                var j = i + 1
                while j < bytes.count, bytes[j] != UInt8(ascii: "\"") {
                    if bytes[j] == UInt8(ascii: "\\") { j += 1 }
                    if j < bytes.count, bytes[j] == 0x0A { throw error("newline inside a string") }
                    j += 1
                }
                guard j < bytes.count else { throw error("unterminated string") }
                let literal = Data(bytes[i...j])
                i = j + 1
                guard let s = try? JSONDecoder().decode(String.self, from: literal) else { throw error("invalid string escape") }
                return .string(s, line: start)
            case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
                for (word, v) in [("true", LocatedJSON.bool(true, line: start)), ("false", .bool(false, line: start)), ("null", .null(line: start))] {
                    let w = Array(word.utf8)
                    if i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w { i += w.count; return v }
                }
                throw error("unexpected word")
            default:
                var j = i
                while j < bytes.count, "+-0123456789.eE".utf8.contains(bytes[j]) { j += 1 }
                guard j > i, let d = Double(String(decoding: bytes[i..<j], as: UTF8.self)) else { throw error("unexpected character") }
                i = j
                return .number(d, line: start)
            }
        }
    }
}
