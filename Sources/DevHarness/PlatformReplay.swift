import LiveSyncTesting
import AsyncHTTPClient
import Connectors
import Foundation
import Ingest
import Model
import NIOCore

/// Replays orders and refunds in the platforms' own push formats: each order's detail is
/// registered at the fake platform API (which ingest's connectors call back), and the push is
/// signed (and encrypted) exactly as the platform would send it, so a load test runs through
/// the real verification, decryption, envelope and mapping code.
enum PlatformReplay {
    struct Prepared: Sendable {
        var url: String
        var body: ByteBuffer
        var headers: [(String, String)]
        /// Canonical id of the order (nil for refunds).
        var orderID: String?
    }

    static func platform(_ slug: String?) throws -> Platform? {
        guard let slug, slug != "generic" else { return nil }
        guard let p = Platform.allCases.first(where: { $0.slug == slug }), [.douyin, .kuaishou, .wechatChannels, .tiktokShop].contains(p) else {
            throw ReplayError.target("unknown platform '\(slug)' (use generic, douyin, kuaishou, wechat or tiktok)")
        }
        return p
    }

    /// Prepared requests by record index, for every record that names a platform.
    static func prepare(_ events: [ReplayRecord], ingestURL: String, platformAPIURL: String?, client: HTTPClient) async throws -> [Int: Prepared] {
        var prepared: [Int: Prepared] = [:]
        var registrations: [[String: Any]] = []
        let emulator = PlatformEmulator(credentials: .development(overriddenBy: ProcessInfo.processInfo.environment))
        var refundNo = 0
        for (i, event) in events.enumerated() {
            guard let platform = try platform(event.platform) else { continue }
            let push: WebhookRequest
            var orderID: String?
            if let o = event.order {
                registrations.append(["platform": platform.slug, "order_id": o.order_id, "response": PlatformEmulator.detail(platform, order: o)])
                push = try emulator.push(platform, kind: .paid, shopID: o.shop_id, platformOrderID: o.order_id, messageID: "replay-\(o.order_id)")
                orderID = Identifiers.orderID(platform: platform, shop: o.shop_id, platformOrderID: o.order_id)
            } else if let r = event.refund {
                refundNo += 1
                push = try emulator.push(platform, kind: .refundApproved, shopID: r.shop_id, platformOrderID: r.order_id,
                                         messageID: "replay-refund-\(r.refund_id)", refundID: r.refund_id, amountFen: r.amount_fen)
            } else { continue }
            var url = ingestURL + ConnectorRoutes.path(platform)
            if !push.query.isEmpty {
                url += "?" + push.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0.value)" }.joined(separator: "&")
            }
            prepared[i] = Prepared(url: url, body: ByteBuffer(bytes: push.body), headers: push.headers.map { ($0.key, $0.value) }, orderID: orderID)
        }
        if !registrations.isEmpty {
            guard let platformAPIURL else {
                throw ReplayError.target("the session has platform orders but no fake platform API: replay into `livesync dev` (cluster.json names it) or pass --platform-api-url")
            }
            for chunk in stride(from: 0, to: registrations.count, by: 5_000) {
                var request = HTTPClientRequest(url: platformAPIURL + FakePlatformAPI.registrationPath)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                let part = Array(registrations[chunk..<min(chunk + 5_000, registrations.count)])
                request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: part)))
                let response = try await client.execute(request, timeout: .seconds(60))
                _ = try await response.body.collect(upTo: 1 << 16)
                guard response.status == .ok else { throw ReplayError.target("the fake platform API refused the order details (HTTP \(response.status.code))") }
            }
        }
        return prepared
    }
}
