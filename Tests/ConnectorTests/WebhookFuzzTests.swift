import LiveSyncTesting
import Connectors
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Ingest
import Model
import Testing
import Worker

/// Every webhook parser against malformed, truncated, oversized, bit-flipped and wrongly signed
/// bodies: each gets a clear 4xx in the platform's rejection format and nothing is published.
@Suite(.serialized) struct WebhookFuzzTests {
    /// Deterministic mutations of a valid signed push.
    static func mutations(of request: WebhookRequest, platform: Platform, seed: UInt64) -> [(String, WebhookRequest)] {
        var rng = SplitMix(seed: seed)
        var out: [(String, WebhookRequest)] = []
        let body = request.body
        for cut in [0, 1, body.count / 3, body.count / 2, max(0, body.count - 1)] {
            var r = request
            r.body = Array(body.prefix(cut))
            out.append(("truncated to \(cut)", r))
        }
        // WeChat signs only the Encrypt value (ToUserName is not covered), so flips go there.
        var region = 0..<body.count
        if platform == .wechatChannels, let text = String(bytes: body, encoding: .utf8), let r = text.range(of: #""Encrypt":""#) {
            let start = text.utf8.distance(from: text.startIndex, to: r.upperBound)
            let end = start + (body[start...].firstIndex(of: UInt8(ascii: "\"")).map { $0 - start } ?? 0)
            region = start..<end
        }
        for i in 0..<24 {
            var r = request
            guard !region.isEmpty else { break }
            let at = region.lowerBound + Int(rng.next() % UInt64(region.count))
            r.body[at] ^= UInt8(1 << (i % 8))
            out.append(("bit flip at \(at)", r))
        }
        for garbage in ["", "null", "[]", "{}", "[{}]", "\"x\"", "{\"Encrypt\":1}", String(repeating: "[", count: 5000), "\u{0}\u{1}\u{2}"] {
            var r = request
            r.body = Array(garbage.utf8)
            out.append(("garbage \(garbage.prefix(12))", r))
        }
        var unsigned = request
        unsigned.headers = [:]
        unsigned.query = request.query.filter { $0.key == "timestamp" || $0.key == "nonce" }
        // Kuaishou has no signature header: its body's encryption is the authentication.
        if platform != .kuaishou { out.append(("no signature", unsigned)) }
        var wrongKey = request
        for k in ["event-sign", "authorization"] where wrongKey.headers[k] != nil { wrongKey.headers[k] = String(repeating: "0", count: wrongKey.headers[k]!.count) }
        if wrongKey.query["msg_signature"] != nil { wrongKey.query["msg_signature"] = String(repeating: "a", count: 40) }
        if platform != .kuaishou { out.append(("wrong signature", wrongKey)) }
        return out
    }

    @Test func malformedTruncatedAndWronglySignedPushesGetA4xxAndPublishNothing() async throws {
        try await withFakeAPI { base, fake in
            let h = try Harness(apiBase: base, fake: fake)
            defer { h.close() }
            // Every order exists at the fake API, so only the push itself can stop publishing.
            for p in pushPlatforms {
                fake.put(p, platformOrderID: "900", response: PlatformEmulator.detail(p, order: h.order(p, "900", lines: [.init(sku: "S", quantity: 1, unit_price_fen: 1)])))
            }
            var cases = 0
            for (n, p) in pushPlatforms.enumerated() {
                let valid = try h.emulator.push(p, kind: .paid, shopID: h.shop(p), platformOrderID: "900", messageID: "fuzz-\(p.slug)")
                for (name, request) in Self.mutations(of: valid, platform: p, seed: UInt64(n + 1)) {
                    let reply = await h.pipeline.handle(request, wiring: h.wirings[p]!)
                    // A bit flip inside a JSON string value can leave a body that still verifies only
                    // if the signature does not cover it; every platform's does, so all must fail.
                    #expect((400..<500).contains(reply.status), "\(p.slug) \(name): \(reply.status) \(reply.body)")
                    #expect(!reply.body.isEmpty)
                    cases += 1
                }
                // Signed by another app's secret.
                var other = PlatformCredentials.development
                other.douyinAppSecret = "x"; other.tiktokAppSecret = "x"; other.wechatToken = "x"
                other.kuaishouMessageSecret = Data(repeating: 9, count: 32).base64EncodedString()
                other.wechatEncodingAESKey = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
                let forged = try PlatformEmulator(credentials: other).push(p, kind: .paid, shopID: h.shop(p), platformOrderID: "900", messageID: "forged")
                let reply = await h.pipeline.handle(forged, wiring: h.wirings[p]!)
                #expect((400..<500).contains(reply.status), "\(p.slug) forged: \(reply.status) \(reply.body)")
            }
            #expect(cases > 150)
            #expect(try h.total() == 0)
            #expect(try h.ledger.count() == 0)
        }
    }

    @Test func routesAnswerTheHandshakeRefuseOversizedBodiesAndUnknownPlatformsAre404() async throws {
        try await withFakeAPI { base, fake in
            let h = try Harness(apiBase: base, fake: fake)
            defer { h.close() }
            let router = Router()
            ConnectorRoutes.register(on: router, platforms: Array(h.wirings.values), pipeline: h.pipeline, maxBodyBytes: 4096)
            let app = Application(router: router)
            try await app.test(.router) { client in
                let c = PlatformCredentials.development
                let sig = WeChatMessageCrypto.signature([c.wechatToken, "1714036504", "1514711492"])
                try await client.execute(uri: "/webhooks/wechat?signature=\(sig)&echostr=hello123&timestamp=1714036504&nonce=1514711492", method: .get) { r in
                    #expect(r.status == .ok)
                    #expect(String(buffer: r.body) == "hello123")
                }
                try await client.execute(uri: "/webhooks/wechat?signature=bad&echostr=hello123&timestamp=1&nonce=2", method: .get) { r in
                    #expect(r.status == .unauthorized)
                }
                for p in pushPlatforms {
                    try await client.execute(uri: ConnectorRoutes.path(p), method: .post, body: ByteBuffer(repeating: UInt8(ascii: "x"), count: 10_000)) { r in
                        #expect(r.status == .contentTooLarge, "\(p.slug)")
                    }
                }
                try await client.execute(uri: "/webhooks/jd", method: .post, body: ByteBuffer(string: "{}")) { r in
                    #expect(r.status == .notFound)
                }
                // A real signed push through the HTTP route.
                let push = try h.emulator.push(.douyin, kind: .refundApproved, shopID: "1001", platformOrderID: "1", messageID: "http-1", refundID: "R1")
                var headers = HTTPFields()
                for (k, v) in push.headers { headers[HTTPField.Name(k)!] = v }
                try await client.execute(uri: "/webhooks/douyin", method: .post, headers: headers, body: ByteBuffer(bytes: push.body)) { r in
                    #expect(r.status == .ok)
                    #expect(String(buffer: r.body) == #"{"code":0,"msg":"success"}"#)
                }
            }
            #expect(try h.published(Topics.refundRequests) == 1)
            #expect(try h.published(Topics.orderLines) == 0)
        }
    }
}

/// xorshift64: a seeded, reproducible choice of mutation positions.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
}
