import Crypto
import Foundation
import Ingest
import Model

/// A deterministic pseudo-random generator (SplitMix64), so a seed replays the same session.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// One event of a live session, as replayed (and as recorded in JSONL, one per line).
public struct ReplayRecord: Codable, Sendable {
    public struct Stock: Codable, Sendable {
        public var sku: String
        public var warehouse: String
        public var available: Int64
        public init(sku: String, warehouse: String, available: Int64) {
            self.sku = sku
            self.warehouse = warehouse
            self.available = available
        }
    }
    /// "stock" (initial available stock), "order" or "refund".
    public var type: String
    /// Seconds after the session start at which the event happens.
    public var at: Double
    public var stock: Stock?
    public var order: GenericWebhook.OrderJSON?
    public var refund: GenericWebhook.RefundJSON?
    /// The platform whose push format carries this order or refund (`douyin`, `kuaishou`,
    /// `wechat`, `tiktok`); absent or `generic`: LiveSync's generic signed JSON.
    public var platform: String?

    public init(type: String, at: Double, stock: Stock? = nil, order: GenericWebhook.OrderJSON? = nil, refund: GenericWebhook.RefundJSON? = nil, platform: String? = nil) {
        self.type = type
        self.at = at
        self.stock = stock
        self.order = order
        self.refund = refund
        self.platform = platform
    }
}

/// Shape of a synthetic live session.
public struct SessionShape: Sendable {
    public var orders = 20_000
    public var skus = 200
    /// Zipf exponent of SKU popularity; SKU-0000 is the hot one.
    public var zipfExponent = 1.1
    /// The hot SKU's stock as a fraction of its expected demand (< 1: it sells out).
    public var hotStockRatio = 0.6
    /// Fraction of orders refunded during the session.
    public var refundRate = 0.02
    /// Mean arrival rate in orders/s (0: as fast as possible). Arrivals come in bursts:
    /// each 10 s, 2 s at 3x the rate (the streamer's flash sale) and 8 s at 0.5x.
    public var ratePerSecond = 0.0
    public var seed: UInt64 = 42
    public var shops = ["shop-1", "shop-2", "shop-3"]
    /// Push formats the orders arrive in, round robin (`generic`, `douyin`, `kuaishou`, `wechat`,
    /// `tiktok`). A Kuaishou order has one line (its order detail carries one item), and WeChat
    /// Channels orders belong to the one Channels shop the connector serves (`wx-shop-1`).
    public var platforms = ["generic"]

    public init() {}
}

/// Generates a synthetic live session: bursty arrivals, Zipf SKU popularity with one hot SKU
/// whose demand exceeds its stock, multi-line orders and refunds.
public enum SessionGenerator {
    public static func generate(_ shape: SessionShape) -> [ReplayRecord] {
        var rng = SplitMix64(seed: shape.seed)
        let skus = (0..<shape.skus).map { String(format: "SKU-%04d", $0) }
        let warehouse = { (i: Int) -> String in i % 5 == 4 ? "east" : "main" }
        var weights = (1...shape.skus).map { 1.0 / pow(Double($0), shape.zipfExponent) }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        var cdf: [Double] = []
        var acc = 0.0
        for w in weights { acc += w; cdf.append(acc) }
        func pick() -> Int {
            let u = rng.unit()
            var lo = 0, hi = cdf.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        // Lines per order: 1 (70%), 2 (20%), 3 (10%); quantity 1 (80%) or 2.
        let meanLines = 1.4, meanQty = 1.2
        var records: [ReplayRecord] = []
        for (i, sku) in skus.enumerated() {
            let demand = Double(shape.orders) * meanLines * meanQty * weights[i]
            let available = i == 0 ? Int64(demand * shape.hotStockRatio) : Int64(demand * 1.5) + 5
            records.append(ReplayRecord(type: "stock", at: 0, stock: .init(sku: sku, warehouse: warehouse(i), available: available)))
        }
        var t = 0.0
        var pendingRefunds: [(due: Int, record: ReplayRecord)] = []
        let names = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊"]
        for n in 0..<shape.orders {
            if shape.ratePerSecond > 0 {
                let phase = t.truncatingRemainder(dividingBy: 10)
                let rate = shape.ratePerSecond * (phase < 2 ? 3 : 0.5)
                t += -log(1 - rng.unit()) / rate
            }
            let r = rng.unit()
            let lineCount = r < 0.7 ? 1 : (r < 0.9 ? 2 : 3)
            var chosen: [Int] = []
            while chosen.count < lineCount {
                let s = pick()
                if !chosen.contains(s) { chosen.append(s) }
            }
            let platform = shape.platforms.isEmpty ? "generic" : shape.platforms[n % shape.platforms.count]
            let shop = platform == "wechat" ? "wx-shop-1" : shape.shops[n % shape.shops.count]
            // Platform order ids are fixed-width numbers (Douyin's and Taobao's are 19 digits), so
            // ids arrive in increasing order; the synthetic ones are too.
            if platform == "kuaishou" { chosen = Array(chosen.prefix(1)) }
            let lines = chosen.map { i in
                GenericWebhook.Line(sku: skus[i], quantity: rng.unit() < 0.8 ? 1 : 2, unit_price_fen: Int64(1990 + (i % 50) * 1000), warehouse: warehouse(i))
            }
            let phone = String(format: "138%08d", Int(rng.next() % 100_000_000))
            let order = GenericWebhook.OrderJSON(
                shop_id: shop, order_id: "\(690_000_000_000_000_000 + shape.seed % 1000 * 1_000_000_000_000 + UInt64(n))", currency: "CNY", paid_at_ms: nil,
                buyer: .init(name: names[n % names.count], phone: phone, address: "浙江省杭州市余杭区文一西路\(n % 999)号"),
                remark: n % 17 == 0 ? "请尽快发货" : nil, lines: lines)
            records.append(ReplayRecord(type: "order", at: t, order: order, platform: platform == "generic" ? nil : platform))
            if rng.unit() < shape.refundRate {
                let amount = lines.reduce(0) { $0 + $1.quantity * $1.unit_price_fen }
                let refund = GenericWebhook.RefundJSON(shop_id: shop, order_id: order.order_id, refund_id: "R\(order.order_id)", amount_fen: amount, reason: "不想要了")
                pendingRefunds.append((n + 200, ReplayRecord(type: "refund", at: t, refund: refund, platform: platform == "generic" ? nil : platform)))
            }
            while let first = pendingRefunds.first, first.due <= n {
                var rec = first.record
                rec.at = t
                records.append(rec)
                pendingRefunds.removeFirst()
            }
        }
        for (_, var rec) in pendingRefunds {
            rec.at = t
            records.append(rec)
        }
        return records
    }

    /// Reads a recorded session (JSONL); a bad line is reported with its number.
    /// The session id a recording's stock load is published under (its adjustment ids derive
    /// from it): a digest of the file's bytes, so a different recording replayed into the same
    /// cluster gets its own stock load, and the same recording replayed again changes nothing.
    public static func sessionID(ofRecording path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw ReplayError.file("cannot read \(path)") }
        return "file-" + SHA256.hash(data: data).prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    public static func load(_ path: String) throws -> [ReplayRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ReplayError.file("cannot read \(path)") }
        var records: [ReplayRecord] = []
        let decoder = JSONDecoder()
        for (i, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where !line.allSatisfy({ $0 == 32 || $0 == 13 }) {
            do {
                let rec = try decoder.decode(ReplayRecord.self, from: Data(line))
                guard ["stock", "order", "refund"].contains(rec.type),
                      (rec.type == "stock") == (rec.stock != nil), (rec.type == "order") == (rec.order != nil), (rec.type == "refund") == (rec.refund != nil)
                else { throw ReplayError.file("type '\(rec.type)' does not match its payload") }
                records.append(rec)
            } catch {
                throw ReplayError.file("\(path) line \(i + 1): \(error)")
            }
        }
        return records
    }

    public static func save(_ records: [ReplayRecord], to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = Data()
        for r in records {
            out.append(try encoder.encode(r))
            out.append(UInt8(ascii: "\n"))
        }
        try out.write(to: URL(fileURLWithPath: path))
    }
}

public enum ReplayError: Error, CustomStringConvertible {
    case file(String)
    case target(String)
    public var description: String {
        switch self {
        case .file(let m), .target(let m): m
        }
    }
}
