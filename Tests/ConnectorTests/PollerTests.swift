import LiveSyncTesting
import Connectors
import Foundation
import Hummingbird
import HummingbirdTesting
import Ingest
import Logging
import Model
import Synchronization
import Testing
import Worker

/// A local fake of the four order-search APIs, from their documentation: it checks each
/// request's signature and access token, answers windows and pages, and can be told to answer
/// with the platform's rate-limit or expired-token errors.
final class FakeSearchAPI: Sendable {
    struct Stored: Sendable { var platform: Platform; var id: String; var updatedAt: Int64; var json: String }
    let secret = "search-secret"
    let orders = Mutex<[Stored]>([])
    let token = Mutex("token-1")
    let rateLimitsToAnswer = Mutex(0)
    let expireNext = Mutex(false)
    /// Error bodies answered (one per call, after the signature check) before anything else.
    let scripted = Mutex<[String]>([])
    let badSignatures = Atomic<Int>(0)
    let calls = Atomic<Int>(0)

    func add(_ p: Platform, _ o: GenericWebhook.OrderJSON, updatedAt: Int64) {
        let t = FieldMappingFixtures.china(updatedAt)
        let json: [String: Any]
        switch p {
        case .taobao:
            json = ["tid": o.order_id, "status": "WAIT_SELLER_SEND_GOODS", "modified": t, "pay_time": t, "buyer_message": o.remark ?? "",
                    "receiver_name": o.buyer.name, "receiver_mobile": o.buyer.phone, "receiver_state": "浙江省", "receiver_city": "杭州市",
                    "receiver_district": "余杭区", "receiver_address": o.buyer.address, "discount_fee": "1.00",
                    "orders": ["order": o.lines.map { ["outer_sku_id": $0.sku, "num": $0.quantity, "price": yuan($0.unit_price_fen)] }]]
        case .jd:
            json = ["orderId": o.order_id, "modified": t, "paymentConfirmTime": t, "orderRemark": o.remark ?? "",
                    "consigneeInfo": ["fullname": o.buyer.name, "mobile": o.buyer.phone, "fullAddress": o.buyer.address],
                    "itemInfoList": o.lines.map { ["outerSkuId": $0.sku, "itemTotal": String($0.quantity), "jdPrice": yuan($0.unit_price_fen)] }]
        case .pinduoduo:
            json = ["order_sn": o.order_id, "updated_at": t, "pay_time": t, "buyer_memo": o.remark ?? "", "receiver_name": o.buyer.name,
                    "receiver_phone": o.buyer.phone, "province": "", "city": "", "town": "", "address": o.buyer.address,
                    "item_list": o.lines.map { ["outer_id": $0.sku, "goods_count": $0.quantity, "goods_price": Double($0.unit_price_fen) / 100] }]
        default:
            var d = (PlatformEmulator.detail(.douyin, order: o)["data"] as! [String: Any])["shop_order_detail"] as! [String: Any]
            d["update_time"] = updatedAt
            d["order_status"] = 2
            json = d
        }
        let text = String(decoding: try! JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        orders.withLock { $0.append(Stored(platform: p, id: o.order_id, updatedAt: updatedAt, json: text)) }
    }

    func yuan(_ fen: Int64) -> String { String(format: "%d.%02d", fen / 100, fen % 100) }

    /// Orders of `p` updated in [from, to], in update order.
    func window(_ p: Platform, _ from: Int64, _ to: Int64) -> [Stored] {
        orders.withLock { $0.filter { $0.platform == p && $0.updatedAt >= from && $0.updatedAt <= to }.sorted { $0.updatedAt < $1.updatedAt } }
    }

    func nextScripted() -> Response? {
        scripted.withLock { $0.isEmpty ? nil : Self.json($0.removeFirst()) }
    }

    func gate() -> String? {
        calls.add(1, ordering: .relaxed)
        let limited = rateLimitsToAnswer.withLock { n -> Bool in if n > 0 { n -= 1; return true }; return false }
        if limited { return "rate" }
        if expireNext.withLock({ v -> Bool in let x = v; v = false; return x }) { token.withLock { $0 = "expired" } }
        return nil
    }

    static func params(_ request: Request) async throws -> [String: String] {
        var q: [String: String] = [:]
        for (k, v) in request.uri.queryParameters { q[String(k)] = String(v) }
        let body = try await request.body.collect(upTo: 1 << 20)
        for pair in String(buffer: body).split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if kv.count == 2 { q[kv[0]] = kv[1] }
        }
        return q
    }

    func page(_ list: [Stored], _ page: Int, _ size: Int) -> (items: [String], hasNext: Bool) {
        let start = (page - 1) * size
        guard start < list.count else { return ([], false) }
        return (list[start..<min(list.count, start + size)].map(\.json), start + size < list.count)
    }

    func routes(_ router: Router<BasicRequestContext>) {
        router.post("/router/rest") { request, _ in  // Taobao TOP
            let q = try await Self.params(request)
            guard q["sign"] == (q["sign_method"] == "hmac" ? APISigning.topHMAC(params: q, secret: self.secret) : APISigning.md5Wrapped(params: q, secret: self.secret)) else {
                self.badSignatures.add(1, ordering: .relaxed)
                return Self.json(#"{"error_response":{"code":25,"msg":"Invalid signature"}}"#)
            }
            if q["method"] == "taobao.top.auth.token.refresh" {
                guard q["refresh_token"] == "refresh-1" else { return Self.json(#"{"error_response":{"code":15,"msg":"bad refresh_token"}}"#) }
                self.token.withLock { $0 = "token-2" }
                return Self.json(#"{"top_auth_token_refresh_response":{"token_result":"{\"access_token\":\"token-2\",\"refresh_token\":\"refresh-2\"}"}}"#)
            }
            if let r = self.nextScripted() { return r }
            if self.gate() != nil { return Self.json(#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"accesscontrol.limited-by-app-access-count"}}"#) }
            guard q["session"] == self.token.withLock({ $0 }) else { return Self.json(#"{"error_response":{"code":27,"msg":"Invalid session"}}"#) }
            let from = FieldMappingFixtures.parse(q["start_modified"]!), to = FieldMappingFixtures.parse(q["end_modified"]!)
            let (items, more) = self.page(self.window(.taobao, from, to), Int(q["page_no"]!)!, Int(q["page_size"]!)!)
            return Self.json(#"{"trades_sold_increment_get_response":{"has_next":\#(more),"trades":{"trade":[\#(items.joined(separator: ","))]}}}"#)
        }
        router.post("/routerjson") { request, _ in  // JD JOS
            let q = try await Self.params(request)
            guard q["sign"] == APISigning.md5Wrapped(params: q, secret: self.secret) else {
                self.badSignatures.add(1, ordering: .relaxed)
                return Self.json(#"{"error_response":{"code":"17","zh_desc":"签名错误"}}"#)
            }
            if let r = self.nextScripted() { return r }
            if self.gate() != nil { return Self.json(#"{"error_response":{"code":"2","zh_desc":"限制时间内调用失败次数","en_desc":"App Call Limited"}}"#) }
            guard q["access_token"] == self.token.withLock({ $0 }) else { return Self.json(#"{"error_response":{"code":"19","zh_desc":"无效access_token","en_desc":"Invalid access_token"}}"#) }
            let p = try JSONSerialization.jsonObject(with: Data(q["360buy_param_json"]!.utf8)) as! [String: String]
            let list = self.window(.jd, FieldMappingFixtures.parse(p["start_date"]!), FieldMappingFixtures.parse(p["end_date"]!))
            let (items, _) = self.page(list, Int(p["page"]!)!, Int(p["page_size"]!)!)
            return Self.json(#"{"jingdong_pop_order_search_responce":{"searchorderinfo_result":{"orderTotal":\#(list.count),"orderInfoList":[\#(items.joined(separator: ","))]}}}"#)
        }
        router.post("/oauth2/refresh_token") { request, _ in
            let q = try await Self.params(request)
            guard q["refresh_token"] == "refresh-1", q["app_secret"] == self.secret else { return Self.json(#"{"code":"400","msg":"bad refresh"}"#) }
            self.token.withLock { $0 = "token-2" }
            return Self.json(#"{"access_token":"token-2","refresh_token":"refresh-2","expires_in":86400}"#)
        }
        router.post("/api/router") { request, _ in  // Pinduoduo
            let q = try await Self.params(request)
            guard q["sign"] == APISigning.md5Wrapped(params: q, secret: self.secret) else {
                self.badSignatures.add(1, ordering: .relaxed)
                return Self.json(#"{"error_response":{"error_code":10016,"error_msg":"sign error"}}"#)
            }
            if q["type"] == "pdd.pop.auth.token.refresh" {
                self.token.withLock { $0 = "token-2" }
                return Self.json(#"{"pop_auth_token_refresh_response":{"access_token":"token-2","refresh_token":"refresh-2"}}"#)
            }
            if let r = self.nextScripted() { return r }
            if self.gate() != nil { return Self.json(#"{"error_response":{"error_code":70031,"error_msg":"调用过于频繁，请调整调用频率"}}"#) }
            guard q["access_token"] == self.token.withLock({ $0 }) else { return Self.json(#"{"error_response":{"error_code":10019,"error_msg":"access_token已过期"}}"#) }
            let (items, more) = self.page(self.window(.pinduoduo, Int64(q["start_updated_at"]!)!, Int64(q["end_updated_at"]!)!), Int(q["page"]!)!, Int(q["page_size"]!)!)
            return Self.json(#"{"order_sn_increment_get_response":{"has_next":\#(more),"order_sn_list":[\#(items.joined(separator: ","))]}}"#)
        }
        router.get("/order/searchList") { request, _ in  // Douyin
            let q = try await Self.params(request)
            guard let pj = q["param_json"], let ts = q["timestamp"],
                  q["sign"] == APISigning.douyin(appKey: "dy-app", appSecret: self.secret, method: "order.searchList", paramJSON: pj, timestamp: ts) else {
                self.badSignatures.add(1, ordering: .relaxed)
                return Self.json(#"{"code":40004,"msg":"sign invalid"}"#)
            }
            if let r = self.nextScripted() { return r }
            if self.gate() != nil { return Self.json(#"{"code":60000,"msg":"触发限流，请稍后重试","sub_code":"isv.traffic-limited","sub_msg":"请求太频繁，请稍后重试"}"#) }
            guard q["access_token"] == self.token.withLock({ $0 }) else {
                return Self.json(#"{"code":40003,"msg":"非法的参数","sub_code":"isv.access-token-expired","sub_msg":"access_token已过期"}"#)
            }
            let p = try JSONSerialization.jsonObject(with: Data(pj.utf8)) as! [String: Any]
            let list = self.window(.douyin, (p["update_time_start"] as! NSNumber).int64Value, (p["update_time_end"] as! NSNumber).int64Value)
            let (items, _) = self.page(list, (p["page"] as! NSNumber).intValue + 1, (p["size"] as! NSNumber).intValue)
            return Self.json(#"{"code":10000,"msg":"success","data":{"total":\#(list.count),"shop_order_list":[\#(items.joined(separator: ","))]}}"#)
        }
        router.get("/token/refresh") { request, _ in
            let q = try await Self.params(request)
            guard let pj = q["param_json"], let ts = q["timestamp"],
                  q["sign"] == APISigning.douyin(appKey: "dy-app", appSecret: self.secret, method: "token.refresh", paramJSON: pj, timestamp: ts) else {
                return Self.json(#"{"code":40004,"msg":"sign invalid"}"#)
            }
            self.token.withLock { $0 = "token-2" }
            return Self.json(#"{"code":10000,"msg":"success","data":{"access_token":"token-2","refresh_token":"refresh-2"}}"#)
        }
    }

    static func json(_ s: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: s)))
    }
}

enum FieldMappingFixtures {
    static let formatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "Asia/Shanghai")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f
    }()
    static func china(_ s: Int64) -> String { formatter.string(from: Date(timeIntervalSince1970: TimeInterval(s))) }
    static func parse(_ s: String) -> Int64 { Int64(formatter.date(from: s)!.timeIntervalSince1970) }
}

@Suite(.serialized) struct PollerTests {
    static let pollPlatforms: [Platform] = [.taobao, .jd, .pinduoduo, .douyin]

    func withSearchAPI(_ body: @escaping @Sendable (String, FakeSearchAPI) async throws -> Void) async throws {
        let fake = FakeSearchAPI()
        let router = Router()
        fake.routes(router)
        try await Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { client in
            try await body("http://127.0.0.1:\(try #require(client.port))", fake)
        }
    }

    func api(_ p: Platform, _ base: String, _ fake: FakeSearchAPI) -> any OrderPollAPI {
        switch p {
        case .taobao: TaobaoPollAPI(gateway: base + "/router/rest", appKey: "tb-app", appSecret: fake.secret, client: .shared)
        case .jd: JDPollAPI(gateway: base + "/routerjson", oauthBase: base, appKey: "jd-app", appSecret: fake.secret, client: .shared)
        case .pinduoduo: PinduoduoPollAPI(gateway: base + "/api/router", clientID: "pdd-client", clientSecret: fake.secret, client: .shared)
        default: DouyinPollAPI(baseURL: base, appKey: "dy-app", appSecret: fake.secret, client: .shared)
        }
    }

    func poller(_ p: Platform, _ base: String, _ fake: FakeSearchAPI, _ h: Harness) -> OrderPoller {
        var config = PollerConfiguration()
        config.pageSize = 2
        config.initialBackoff = .milliseconds(10)
        config.initialLookbackSeconds = 4 * 3600
        var logger = Logger(label: "poll")
        logger.logLevel = .critical
        return OrderPoller(api: api(p, base, fake), shopID: "shop-9", configuration: config, publisher: h.pipeline.publisher, ledger: h.ledger,
                           initialTokens: ShopTokens(accessToken: "token-1", refreshToken: "refresh-1"), logger: logger)
    }

    @Test func eachPlatformsSearchIsPagedAcrossWindowsAndEachOrderPublishedOnce() async throws {
        try await withSearchAPI { base, fake in
            try await withFakeAPI { detailBase, detailFake in
                let h = try Harness(apiBase: detailBase, fake: detailFake)
                defer { h.close() }
                let now: Int64 = 1_780_000_000
                var lines: Int64 = 0
                for (n, p) in Self.pollPlatforms.enumerated() {
                    // Seven orders over the last three hours: several windows (Pinduoduo allows 30 minutes) and pages of two.
                    for i in 0..<7 {
                        fake.add(p, h.order(p, "\(n)00\(i)", lines: [.init(sku: "SKU-\(i % 3)", quantity: 1, unit_price_fen: 1990)]), updatedAt: now - 3 * 3600 + Int64(i) * 1500)
                    }
                    let poller = poller(p, base, fake, h)
                    let first = try await poller.pollOnce(now: now)
                    #expect(first.published == 7, "\(p.slug)")
                    lines += 7
                    #expect(try h.published(Topics.orderLines) == lines, "\(p.slug)")
                    #expect(first.watermark == now - 5)
                    // The next cycle re-reads the overlap but publishes nothing twice.
                    fake.add(p, h.order(p, "\(n)late", lines: [.init(sku: "SKU-L", quantity: 2, unit_price_fen: 100)]), updatedAt: now - 60)
                    let second = try await poller.pollOnce(now: now + 30)
                    #expect(second.published == 1, "\(p.slug): only the late order")
                    lines += 1
                    #expect(try h.published(Topics.orderLines) == lines)
                    let state = try #require(try h.ledger.pollState(p, shop: "shop-9"))
                    #expect(state.watermark == now + 25)
                }
                #expect(fake.badSignatures.load(ordering: .relaxed) == 0)
            }
        }
    }

    @Test func rateLimitsAreWaitedOutAndAnExpiredTokenIsRefreshedAndKept() async throws {
        try await withSearchAPI { base, fake in
            try await withFakeAPI { detailBase, detailFake in
                let h = try Harness(apiBase: detailBase, fake: detailFake)
                defer { h.close() }
                let now: Int64 = 1_780_000_000
                for (n, p) in Self.pollPlatforms.enumerated() {
                    fake.token.withLock { $0 = "token-1" }
                    try h.ledger.savePollState(p, shop: "shop-9", watermark: now - 600, tokens: ShopTokens(accessToken: "token-1", refreshToken: "refresh-1"))
                    fake.add(p, h.order(p, "\(n)rl", lines: [.init(sku: "S", quantity: 1, unit_price_fen: 1)]), updatedAt: now - 100)
                    fake.rateLimitsToAnswer.withLock { $0 = 2 }
                    fake.expireNext.withLock { $0 = true }
                    let r = try await poller(p, base, fake, h).pollOnce(now: now)
                    #expect(r.rateLimited == 2, "\(p.slug)")
                    #expect(r.refreshed == 1, "\(p.slug)")
                    #expect(r.published == 1, "\(p.slug)")
                    #expect(try h.ledger.pollState(p, shop: "shop-9")?.tokens == ShopTokens(accessToken: "token-2", refreshToken: "refresh-2"))
                }
            }
        }
    }

    @Test func aPushedOrderIsNotPublishedAgainByThePollerNorAPolledOneByAPush() async throws {
        try await withSearchAPI { base, fake in
            try await withFakeAPI { detailBase, detailFake in
                let h = try Harness(apiBase: detailBase, fake: detailFake)
                defer { h.close() }
                let now: Int64 = 1_780_000_000
                // Pushed first: the Douyin webhook publishes it.
                let pushed = h.order(.douyin, "8001", lines: [.init(sku: "S", quantity: 1, unit_price_fen: 1)])
                detailFake.put(.douyin, platformOrderID: "8001", response: PlatformEmulator.detail(.douyin, order: pushed))
                var shopPushed = pushed
                shopPushed.shop_id = "shop-9"
                let reply = await h.pipeline.handle(try h.emulator.push(.douyin, kind: .paid, shopID: "shop-9", platformOrderID: "8001", messageID: "p-8001"),
                                                    wiring: h.wirings[.douyin]!)
                #expect(reply.status == 200)
                #expect(try h.published(Topics.ordersPlaced) == 1)
                // The poller then sees it and a second one.
                fake.add(.douyin, shopPushed, updatedAt: now - 100)
                fake.add(.douyin, h.order(.douyin, "8002", lines: [.init(sku: "S", quantity: 1, unit_price_fen: 1)]), updatedAt: now - 90)
                let r = try await poller(.douyin, base, fake, h).pollOnce(now: now)
                #expect(r.seen == 2 && r.published == 1)
                #expect(try h.published(Topics.ordersPlaced) == 2)
                // A later push of the polled order (another message id) publishes nothing.
                detailFake.put(.douyin, platformOrderID: "8002", response: PlatformEmulator.detail(.douyin, order: h.order(.douyin, "8002", lines: [.init(sku: "S", quantity: 1, unit_price_fen: 1)])))
                let late = await h.pipeline.handle(try h.emulator.push(.douyin, kind: .paid, shopID: "shop-9", platformOrderID: "8002", messageID: "p-8002"),
                                                   wiring: h.wirings[.douyin]!)
                #expect(late.status == 200)
                #expect(try h.published(Topics.ordersPlaced) == 2)
            }
        }
    }

    enum Outcome: Equatable { case rateLimited, tokenExpired, failed }

    /// Each platform's published error bodies (docs/connectors.md, "Verified against") and how the
    /// poller must treat them: wait out, refresh the token, or fail the cycle at once.
    static let documentedErrors: [(Platform, String, Outcome)] = [
        (.taobao, #"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"accesscontrol.limited-by-api-access-count"}}"#, .rateLimited),
        (.taobao, #"{"error_response":{"code":27,"msg":"Invalid session","sub_code":"session-expired"}}"#, .tokenExpired),
        (.taobao, #"{"error_response":{"code":25,"msg":"Invalid signature"}}"#, .failed),
        (.jd, #"{"error_response":{"code":"2","zh_desc":"限制时间内调用失败次数","en_desc":"App Call Limited"}}"#, .rateLimited),
        (.jd, #"{"error_response":{"code":"19","zh_desc":"无效access_token","en_desc":"Invalid access_token"}}"#, .tokenExpired),
        (.jd, #"{"error_response":{"code":"20","zh_desc":"缺少app_key参数","en_desc":"Missing app_key"}}"#, .failed),
        (.pinduoduo, #"{"error_response":{"error_code":70031,"error_msg":"调用过于频繁，请调整调用频率"}}"#, .rateLimited),
        (.pinduoduo, #"{"error_response":{"error_code":70032,"error_msg":"调用过于频繁，请调整调用频率"}}"#, .rateLimited),
        (.pinduoduo, #"{"error_response":{"error_code":10019,"error_msg":"access_token已过期"}}"#, .tokenExpired),
        (.pinduoduo, #"{"error_response":{"error_code":10035,"error_msg":"access_token已过期"}}"#, .tokenExpired),
        (.pinduoduo, #"{"error_response":{"error_code":20004,"error_msg":"签名sign校验失败"}}"#, .failed),
        (.douyin, #"{"code":60000,"msg":"触发限流，请稍后重试","sub_code":"isv.traffic-limited","sub_msg":"请求太频繁，请稍后重试"}"#, .rateLimited),
        (.douyin, #"{"code":40003,"msg":"非法的参数","sub_code":"isv.access-token-expired","sub_msg":"access_token已过期"}"#, .tokenExpired),
        (.douyin, #"{"code":40003,"msg":"非法的参数","sub_code":"isv.access-token-no-existed","sub_msg":"access_token不存在，请使用最新的access_token访问"}"#, .tokenExpired),
        (.douyin, #"{"code":40001,"msg":"缺少必选参数","sub_code":"isv.access-token-missing","sub_msg":"认证失败，access_token不能为空"}"#, .failed),
        (.douyin, #"{"code":50002,"msg":"系统繁忙"}"#, .failed),
    ]

    @Test func documentedErrorCodesAreWaitedOutRefreshedOrFailedAsThePlatformsPublishThem() async throws {
        try await withSearchAPI { base, fake in
            let now: Int64 = 1_780_000_000
            for (p, body, expected) in Self.documentedErrors {
                fake.scripted.withLock { $0 = [body] }
                var outcome: Outcome?
                do {
                    _ = try await api(p, base, fake).page(from: now - 600, to: now, page: 1, pageSize: 2, accessToken: "token-1")
                } catch let error as PollError {
                    outcome = switch error { case .rateLimited: .rateLimited; case .tokenExpired: .tokenExpired; case .failed: .failed }
                } catch {
                    Issue.record("\(p.slug): not a PollError: \(error)")
                }
                #expect(outcome == expected, "\(p.slug) \(body)")
            }
            #expect(fake.badSignatures.load(ordering: .relaxed) == 0)
        }
    }
}
