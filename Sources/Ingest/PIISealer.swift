import Crypto
import Foundation
import Model

/// Seals the buyer's name, phone and address with AES-256-GCM before an order leaves ingest:
/// the sealed box goes to `Order.buyer_sealed`, and `Order.buyer` keeps only masked values
/// (`138****1234`), so logs, the ERP book and operator screens never hold the clear data.
public struct PIISealer: Sendable {
    public let keyID: String
    let keyBytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: keyBytes) }

    public init(key: SymmetricKey, keyID: String) {
        self.keyBytes = key.withUnsafeBytes { Array($0) }
        self.keyID = keyID
    }

    /// The key from `LIVESYNC_PII_KEY` (base64 of 32 bytes) or from a file holding the same text
    /// (`piiKeyFile`); nil when neither is set. A key of the wrong size is an error, never ignored.
    public static func load(base64: String?, file: String?, keyID: String = "k1") throws(IngestError) -> PIISealer? {
        var text = base64
        if text == nil || text!.isEmpty, let file, !file.isEmpty {
            guard let data = FileManager.default.contents(atPath: file) else { throw .configuration("cannot read PII key file \(file)") }
            text = String(decoding: data, as: UTF8.self)
        }
        guard let text = text?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
        guard let raw = Data(base64Encoded: text), raw.count == 32 else {
            throw .configuration("the PII key must be base64 of 32 random bytes (openssl rand -base64 32)")
        }
        return PIISealer(key: SymmetricKey(data: raw), keyID: keyID)
    }

    /// Seals `order.buyer` into `buyer_sealed` and masks `buyer`.
    public func seal(_ order: inout Order) throws {
        let box = try AES.GCM.seal(order.buyer.bytes, using: key)
        order.buyerSealed = box.combined ?? Data()
        order.buyerKeyID = keyID
        order.buyer = Self.masked(order.buyer)
    }

    /// The clear buyer of a sealed order (for the ERP export, which holds the key).
    public func open(_ order: Order) throws -> Buyer {
        let box = try AES.GCM.SealedBox(combined: order.buyerSealed)
        return try Buyer(serializedBytes: Array(try AES.GCM.open(box, using: key)))
    }

    public static func masked(_ buyer: Buyer) -> Buyer {
        var m = Buyer()
        m.name = PIIMask.name(buyer.name)
        m.phone = PIIMask.phone(buyer.phone)
        m.address = PIIMask.address(buyer.address)
        return m
    }
}
