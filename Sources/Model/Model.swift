import Foundation
import SwiftProtobuf

// Short names for the wire messages (generated from Protos/livesync/v1/livesync.proto).
public typealias Platform = Livesync_V1_Platform
public typealias Buyer = Livesync_V1_Buyer
public typealias OrderLine = Livesync_V1_OrderLine
public typealias Order = Livesync_V1_Order
public typealias StockAdjustment = Livesync_V1_StockAdjustment
public typealias AdjustmentKind = Livesync_V1_AdjustmentKind
public typealias Reservation = Livesync_V1_Reservation
public typealias ReservationStatus = Livesync_V1_ReservationStatus
public typealias Shipment = Livesync_V1_Shipment
public typealias ShipmentLine = Livesync_V1_ShipmentLine
public typealias ShipmentShipped = Livesync_V1_ShipmentShipped
public typealias RefundRequest = Livesync_V1_RefundRequest
public typealias OrderOutcome = Livesync_V1_OrderOutcome
public typealias OutcomeKind = Livesync_V1_OutcomeKind
public typealias DeadLetter = Livesync_V1_DeadLetter
public typealias ChangelogEntry = Livesync_V1_ChangelogEntry
public typealias InstanceAnnouncement = Livesync_V1_InstanceAnnouncement

extension SwiftProtobuf.Message {
    /// The message's Protobuf encoding (cannot fail for LiveSync's proto3 messages).
    public var bytes: [UInt8] {
        // Serialising a proto3 message without required fields never throws.
        (try? serializedBytes()) ?? []
    }
}

extension Platform {
    /// The lower-case name used in routes, ids and configuration (`douyin`, `generic`, ...).
    public var slug: String {
        switch self {
        case .generic: "generic"
        case .douyin: "douyin"
        case .kuaishou: "kuaishou"
        case .wechatChannels: "wechat"
        case .taobao: "taobao"
        case .jd: "jd"
        case .pinduoduo: "pinduoduo"
        case .tiktokShop: "tiktok"
        case .unspecified, .UNRECOGNIZED: "unknown"
        }
    }
}

/// Identifiers are built the same way everywhere, so a redelivered order maps to the same ids.
public enum Identifiers {
    /// "<platform>:<shop>:<platform order id>".
    public static func orderID(platform: Platform, shop: String, platformOrderID: String) -> String {
        "\(platform.slug):\(shop):\(platformOrderID)"
    }

    /// "<order id>:<line no>".
    public static func lineEventID(orderID: String, lineNo: UInt32) -> String {
        "\(orderID):\(lineNo)"
    }
}

/// Currencies whose amounts LiveSync accepts, in their minor unit ("fen" for CNY).
public enum Currency {
    public static let supported: Set<String> = ["CNY", "HKD", "USD", "EUR", "GBP", "SGD", "MYR", "THB", "IDR", "VND", "PHP"]
}

/// Masks personal data for logs and operator screens: `13812341234` -> `138****1234`.
public enum PIIMask {
    public static func phone(_ phone: String) -> String {
        let chars = Array(phone)
        guard chars.count > 7 else { return String(repeating: "*", count: chars.count) }
        return String(chars.prefix(3)) + "****" + String(chars.suffix(4))
    }

    public static func name(_ name: String) -> String {
        guard let first = name.first else { return "" }
        return String(first) + String(repeating: "*", count: max(1, name.count - 1))
    }

    public static func address(_ address: String) -> String {
        let chars = Array(address)
        return String(chars.prefix(6)) + (chars.count > 6 ? "****" : "")
    }
}

extension StockAdjustment {
    /// The release of an order line's reservation (the order was rejected or cancelled). Its id
    /// is derived from the line, so stock applies it once however often it is sent.
    public static func release(_ line: OrderLine, reason: String, now: Int64) -> StockAdjustment {
        var adj = StockAdjustment()
        adj.adjustmentID = "release:\(line.eventID)"
        adj.sku = line.sku
        adj.warehouse = line.warehouse
        adj.kind = .release
        adj.quantity = line.quantity
        adj.releaseEventID = line.eventID
        adj.reason = reason
        adj.createdAtUs = now
        return adj
    }
}
