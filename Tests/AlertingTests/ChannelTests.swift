import LiveSyncTesting
import Model
import Bootstrap
import Crypto
import Foundation
import GRDB
import Hummingbird
import Kafka
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Telemetry
import Testing
import Worker

@testable import Alerting

/// Local fakes of the robots' webhooks: each checks the signature and the body the way the
/// platform documents it, records what it accepted, and answers in the platform's format.
final class FakeRobots: Sendable {
    struct Received: Sendable {
        var channel: String
        var text: String
    }
    let received = Mutex<[Received]>([])
    let rejected = Mutex<[String]>([])
    static let dingSecret = "SEC0123456789abcdef"
    static let feishuSecret = "feishu-secret"

    func texts(_ channel: String) -> [String] { received.withLock { $0.filter { $0.channel == channel }.map(\.text) } }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/wecom") { request, _ in
            var request = request
            let json = try await Self.json(&request)
            guard request.uri.queryParameters.get("key") == "robot-key", json["msgtype"] as? String == "markdown",
                  let content = (json["markdown"] as? [String: Any])?["content"] as? String, !content.isEmpty else {
                self.rejected.withLock { $0.append("wecom: \(json)") }
                return Self.answer(#"{"errcode":40008,"errmsg":"invalid message type"}"#)
            }
            self.received.withLock { $0.append(Received(channel: "wecom", text: content)) }
            return Self.answer(#"{"errcode":0,"errmsg":"ok"}"#)
        }
        router.post("/dingtalk") { request, _ in
            var request = request
            let json = try await Self.json(&request)
            let q = request.uri.queryParameters
            // DingTalk: sign = Base64(HmacSHA256(secret, "timestamp\nsecret")), URL-encoded in the query.
            guard let ts = q.get("timestamp"), let t = Int64(ts), abs(t - Clock.nowMicros() / 1_000) < 3_600_000,
                  let sign = q.get("sign")?.removingPercentEncoding,
                  sign == Self.hmac(key: Self.dingSecret, message: "\(ts)\n\(Self.dingSecret)"),
                  q.get("access_token") == "ding-token",
                  json["msgtype"] as? String == "markdown", let md = json["markdown"] as? [String: Any],
                  let title = md["title"] as? String, !title.isEmpty, let text = md["text"] as? String else {
                self.rejected.withLock { $0.append("dingtalk: \(request.uri) \(json)") }
                return Self.answer(#"{"errcode":310000,"errmsg":"sign not match"}"#)
            }
            self.received.withLock { $0.append(Received(channel: "dingtalk", text: text)) }
            return Self.answer(#"{"errcode":0,"errmsg":"ok"}"#)
        }
        router.post("/feishu") { request, _ in
            var request = request
            let json = try await Self.json(&request)
            // Feishu: sign = Base64(HmacSHA256(key: "timestamp\nsecret", message: "")), timestamp in seconds.
            guard let ts = json["timestamp"] as? String, let t = Int64(ts), abs(t - Clock.nowMicros() / 1_000_000) < 3_600,
                  json["sign"] as? String == Self.hmac(key: "\(ts)\n\(Self.feishuSecret)", message: ""),
                  json["msg_type"] as? String == "text", let text = (json["content"] as? [String: Any])?["text"] as? String else {
                self.rejected.withLock { $0.append("feishu: \(json)") }
                return Self.answer(#"{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}"#)
            }
            self.received.withLock { $0.append(Received(channel: "feishu", text: text)) }
            return Self.answer(#"{"code":0,"msg":"success","data":{}}"#)
        }
        router.post("/hook") { request, _ in
            var request = request
            let json = try await Self.json(&request)
            self.received.withLock { $0.append(Received(channel: "webhook", text: "\(json["status"] ?? "") \(json["kind"] ?? "") \(json["message"] ?? "")")) }
            return Self.answer("{}")
        }
        return router
    }

    static func hmac(key: String, message: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Data(message.utf8), using: SymmetricKey(data: Data(key.utf8)))).base64EncodedString()
    }

    static func json(_ request: inout Request) async throws -> [String: Any] {
        let body = try await request.collectBody(upTo: 1 << 20)
        return (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any] ?? [:]
    }

    static func answer(_ body: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// A local SMTP server (plain, AUTH PLAIN) that records each message it accepts.
final class FakeSMTP: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let messages = Mutex<[(from: String, to: [String], data: String, user: String)]>([])
    // Per connection state lives in a fresh handler; this one is the template (see `serve`).
    var buffer = ""
    var inData = false
    var from = "", to: [String] = [], data = "", user = ""
    weak var parent: FakeSMTP?

    func channelActive(context: ChannelHandlerContext) { reply(context, "220 fake ESMTP") }

    func reply(_ context: ChannelHandlerContext, _ line: String) {
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: line + "\r\n")), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data incoming: NIOAny) {
        var bytes = unwrapInboundIn(incoming)
        buffer += bytes.readString(length: bytes.readableBytes) ?? ""
        while let r = buffer.range(of: "\r\n") {
            let line = String(buffer[..<r.lowerBound])
            buffer.removeSubrange(..<r.upperBound)
            if inData {
                if line == "." {
                    inData = false
                    parent?.messages.withLock { $0.append((from, to, data, user)) }
                    reply(context, "250 OK queued")
                } else { data += line + "\r\n" }
                continue
            }
            let upper = line.uppercased()
            if upper.hasPrefix("EHLO") { reply(context, "250-fake\r\n250 AUTH PLAIN LOGIN") }
            else if upper.hasPrefix("AUTH PLAIN ") {
                let decoded = Data(base64Encoded: String(line.dropFirst(11))).map { String(decoding: $0, as: UTF8.self) } ?? ""
                let parts = decoded.split(separator: "\0", omittingEmptySubsequences: false)
                if parts.count == 3 && parts[1] == "alerts" && parts[2] == "pw" { user = String(parts[1]); reply(context, "235 2.7.0 Authentication successful") }
                else { reply(context, "535 5.7.8 Authentication failed") }
            }
            else if upper.hasPrefix("MAIL FROM:") { from = String(line.dropFirst(10)); reply(context, "250 OK") }
            else if upper.hasPrefix("RCPT TO:") { to.append(String(line.dropFirst(8))); reply(context, "250 OK") }
            else if upper == "DATA" { inData = true; data = ""; reply(context, "354 End data with <CR><LF>.<CR><LF>") }
            else if upper == "QUIT" { reply(context, "221 Bye"); context.close(promise: nil) }
            else { reply(context, "502 unknown") }
        }
    }

    func serve() async throws -> (any Channel, Int) {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { ch in
                let h = FakeSMTP()
                h.parent = self
                return ch.pipeline.addHandler(h)
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (channel, channel.localAddress!.port!)
    }
}

func withRobots(_ body: (String, FakeRobots) async throws -> Void) async throws {
    let robots = FakeRobots()
    let (url, server) = try await LocalServer.serve(robots.router(), label: "fake-robots")
    defer { server.cancel() }
    try await body(url, robots)
}

@Suite struct ChannelTests {
    @Test func aStockOutReachesEveryChannelOnceAndItsEndOnceSignedAsEachPlatformRequires() async throws {
        try await withRobots { base, robots in
            let smtp = FakeSMTP()
            let (smtpChannel, smtpPort) = try await smtp.serve()
            defer { smtpChannel.close(promise: nil) }
            let store = try alertStore()
            let book = try await readModel(beside: store)
            defer { book.stop() }
            let stock = book.store.database
            try await stock.write { db in
                try db.execute(sql: "INSERT INTO stock (sku, warehouse, on_hand, reserved, updated_at_us, partition) VALUES ('HOT', 'main', 100, 100, 0, 1), ('COLD', 'main', 50, 1, 0, 2)")
            }
            let channels: [ChannelSettings] = [
                .wecom(name: "wecom", url: "\(base)/wecom?key=robot-key"),
                .dingtalk(name: "dingtalk", url: "\(base)/dingtalk?access_token=ding-token", secret: FakeRobots.dingSecret),
                .feishu(name: "feishu", url: "\(base)/feishu", secret: FakeRobots.feishuSecret),
                .webhook(name: "webhook", url: "\(base)/hook"),
                .email(name: "email", smtp: SMTPSettings(host: "127.0.0.1", port: smtpPort, security: "none", username: "alerts", password: "pw",
                                                         from: "livesync@shop.example", to: ["ops@shop.example", "boss@shop.example"])),
            ]
            let config = AlertingConfiguration(
                rules: AlertRulesConfiguration(rules: [.stockLow(safetyLevel: 0, sellOutMinutes: nil, rateWindowSeconds: 300)], channels: channels),
                book: book.client)
            let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
            let now = Clock.nowMicros()
            for i in 0..<3 { try await notifier.sweep(now: now + Int64(i) * 1_000_000) }
            try await stock.write { try $0.execute(sql: "UPDATE stock SET on_hand = 300 WHERE sku = 'HOT'") }  // restocked
            // Resolved once it has not held for the rule's 10 s.
            for i in [3, 4, 13, 14] { try await notifier.sweep(now: now + Int64(i) * 1_000_000) }

            #expect(robots.rejected.withLock { $0 }.isEmpty, "every fake accepted the signature and body: \(robots.rejected.withLock { $0 })")
            for channel in ["wecom", "dingtalk", "feishu", "webhook"] {
                let texts = robots.texts(channel)
                #expect(texts.count == 2, "\(channel): one alert and one resolved, got \(texts)")
                #expect(texts.first?.contains("HOT") == true && texts.first?.contains("sold out") == true)
                #expect(texts.last?.contains("RESOLVED") == true || texts.last?.hasPrefix("resolved") == true)
            }
            let mails = smtp.messages.withLock { $0 }
            #expect(mails.count == 2)
            #expect(mails.first?.to == ["<ops@shop.example>", "<boss@shop.example>"] && mails.first?.user == "alerts")
            let first = mails.first?.data ?? ""
            #expect(first.contains("Subject: =?UTF-8?B?\(Data("[LiveSync] ALERT stock_low".utf8).base64EncodedString())?="))
            let bodyB64 = first.components(separatedBy: "\r\n\r\n").dropFirst().joined().replacingOccurrences(of: "\r\n", with: "")
            #expect(String(decoding: Data(base64Encoded: bodyB64) ?? Data(), as: UTF8.self).contains("SKU HOT in warehouse main is sold out"))
            #expect(try notifications(store).allSatisfy(\.delivered))
            #expect(try alerts(store).map(\.kind) == ["stock_low"])
        }
    }

    @Test func dingTalkAndFeishuSignaturesMatchTheirDocumentedExamples() {
        // Same inputs as the platforms' sample code (Python: hmac.new(key, msg, sha256), base64, quote_plus).
        let ding = DingTalkChannel.sign(timestampMs: 1_552_920_546_388, secret: "this is secret")
        #expect(ding == FakeRobots.hmac(key: "this is secret", message: "1552920546388\nthis is secret"))
        let url = DingTalkChannel(name: "d", url: "https://oapi.dingtalk.com/robot/send?access_token=T", secret: "this is secret").signedURL(nowMs: 1_552_920_546_388)
        #expect(url.hasPrefix("https://oapi.dingtalk.com/robot/send?access_token=T&timestamp=1552920546388&sign="))
        #expect(!url.contains("+") && !url.contains("/robot/send?access_token=T&timestamp=1552920546388&sign=" + ding) || !ding.contains(where: { "+/=".contains($0) }))
        let feishu = FeishuChannel.sign(timestamp: 1_599_360_473, secret: "demo")
        #expect(feishu == FakeRobots.hmac(key: "1599360473\ndemo", message: ""))
    }
}

@Suite struct AlertConfigurationTests {
    let good = """
    {
      "livesync": {
        "kafka": { "bootstrap": "k1:9092" },
        "alerting": {
          "renotifyMinutes": 15,
          "rules": {
            "failures": { "kind": "sync_failure_rate", "threshold": 0.05, "windowSeconds": 300 },
            "late": { "kind": "order_unsynced", "seconds": 10 },
            "stock": { "kind": "stock_low", "safetyLevel": 20, "sellOutMinutes": 10 },
            "lag": { "kind": "consumer_lag", "max": 50000 },
            "dlq": { "kind": "dead_letters" },
            "silent": { "kind": "process_silent", "seconds": 15 },
            "inspection": { "kind": "inspection", "intervalSeconds": 300 }
          },
          "channels": {
            "wecom": { "type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K" },
            "dingtalk": { "type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=T", "secret": "SEC1" },
            "feishu": { "type": "feishu", "url": "https://open.feishu.cn/open-apis/bot/v2/hook/H", "secret": "S" },
            "email": { "type": "email", "host": "smtp.example.com", "from": "a@example.com", "to": ["ops@example.com"], "username": "u", "password": "p" },
            "pager": { "type": "webhook", "url": "https://alerts.example.com/livesync" }
          }
        }
      }
    }
    """

    @Test func aValidFileGivesEveryRuleAndChannel() throws {
        let c = try AlertRulesConfiguration.parse(good, source: "livesync.json")
        #expect(c.rules.count == 7 && c.channels.count == 5 && c.renotifySeconds == 900)
        #expect(c.rules.contains(.stockLow(safetyLevel: 20, sellOutMinutes: 10, rateWindowSeconds: 300)))
        #expect(c.channels.map(\.name) == ["wecom", "dingtalk", "feishu", "email", "pager"])
    }

    @Test(arguments: [
        ("\"kind\": \"order_unsynced\", \"seconds\": 10", "\"kind\": \"order_unsyncd\", \"seconds\": 10", "line 8: alerting.rules.late.kind: unknown rule kind 'order_unsyncd'"),
        ("\"threshold\": 0.05", "\"threshold\": 5", "line 7: alerting.rules.failures.threshold: must be a fraction"),
        ("\"max\": 50000", "\"max\": 50000, \"maxx\": 1", "line 10: alerting.rules.lag: unknown key 'maxx'"),
        ("\"type\": \"feishu\", \"url\": \"https://open.feishu.cn/open-apis/bot/v2/hook/H\"", "\"type\": \"feishu\", \"url\": \"open.feishu.cn\"", "line 18: alerting.channels.feishu.url: needs \\\"url\\\", an http(s) URL"),
        ("\"to\": [\"ops@example.com\"]", "\"to\": []", "line 19: alerting.channels.email.to"),
        ("\"type\": \"wecom\"", "\"type\": \"slack\"", "line 16: alerting.channels.wecom.type: unknown channel type 'slack'"),
    ])
    func anInvalidRuleOrChannelIsRefusedNamingItsLine(_ replacement: (String, String, String)) throws {
        let bad = good.replacingOccurrences(of: replacement.0, with: replacement.1)
        #expect(bad != good)
        do {
            _ = try AlertRulesConfiguration.parse(bad, source: "livesync.json")
            Issue.record("accepted: \(replacement.1)")
        } catch {
            let expected = replacement.2.replacingOccurrences(of: "\\\"", with: "\"")
            #expect("\(error)".contains("livesync.json " + expected), "\(error)")
        }
    }

    @Test func theFileIsAlsoReadableByTheSharedConfiguration() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).json").path
        try good.write(toFile: path, atomically: true, encoding: .utf8)
        let settings = try await LiveSyncConfig(file: path, environment: [:])
        #expect(settings.string("kafka.bootstrap", default: "") == "k1:9092")
        #expect(try AlertRulesConfiguration.load(file: path, unsyncedAfterSeconds: 5, webhookURL: nil).rules.count == 7)
    }

    @Test func aSyntaxErrorNamesItsLine() {
        #expect(throws: ConfigurationError.self) { try AlertRulesConfiguration.parse("{\n \"livesync\": {\n \"alerting\": [1,,]\n}}", source: "f.json") }
        do { _ = try AlertRulesConfiguration.parse("{\n \"livesync\": {\n \"alerting\": [1,,]\n}}", source: "f.json") } catch {
            #expect("\(error)".hasPrefix("f.json line 3:"))
        }
    }
}

@Suite struct ProcessRuleTests {
    /// A consumer's `/readyz` reporting its lag, served locally and announced on
    /// `livesync.instances` like a real process; a killed one's last announcement left behind.
    @Test func consumerLagAndADeadProcessRaiseAlertsThatResolve() async throws {
        let lag = Mutex<Int64>(500)
        let router = Router()
        router.get("/readyz") { _, _ in
            let body = #"{"checks":{},"consumption":{"lag":\#(lag.withLock { $0 }),"lastBatchAtUs":1,"partitions":4},"failed":[],"pid":1,"process":"stock-1","status":"ready"}"#
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        let (url, server) = try await LocalServer.serve(router, label: "fake-readyz")
        defer { server.cancel() }
        let processes = try AnnouncedProcesses()
        let kafka = processes.kafka
        func announce(_ process: String, url: String, pid: Int32, stopping: Bool = false) throws {
            try processes.announce(process, url: url, pid: pid, stopping: stopping)
        }

        let store = try alertStore()
        try announce("stock-1", url: url, pid: getpid())
        // A process that was killed: its last announcement stays, with a pid that no longer runs here.
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        try announce("dispatch-1", url: "http://127.0.0.1:9", pid: gone.processIdentifier)

        let config = AlertingConfiguration(
            rules: AlertRulesConfiguration(rules: [.consumerLag(max: 100), .processSilent(seconds: 30)], channels: []),
            instances: InstanceDirectory(kafka: kafka), processCheckInterval: .seconds(1))
        let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
        let now = Clock.nowMicros()
        try await notifier.sweep(now: now)
        let keys = try await store.database.read { try String.fetchAll($0, sql: "SELECT dedupe_key FROM alerts WHERE resolved_at_us IS NULL ORDER BY dedupe_key") }
        #expect(keys == ["consumer_lag:stock-1", "process_silent:dispatch-1"])
        lag.withLock { $0 = 10 }
        try announce("dispatch-1", url: "http://127.0.0.1:9", pid: getpid(), stopping: true)  // restarted and stopped cleanly
        try await notifier.sweep(now: now + 1_000_000)
        #expect(try alerts(store).allSatisfy(\.resolved))
        withExtendedLifetime(processes) {}  // the broker lives until the sweeps are done
    }

    /// Silent means announced, not stopped, and no answer for the rule's time: a process on
    /// another host that stops answering is not dead at once, only after `seconds`.
    @Test func aProcessElsewhereIsSilentOnlyAfterTheRulesTime() async throws {
        let processes = try AnnouncedProcesses()
        let kafka = processes.kafka
        try processes.announce("stock-2", url: "http://127.0.0.1:9", pid: 1, host: "another-host.invalid")

        let store = try alertStore()
        let config = AlertingConfiguration(
            rules: AlertRulesConfiguration(rules: [.processSilent(seconds: 30)], channels: []),
            instances: InstanceDirectory(kafka: kafka), processCheckInterval: .seconds(1))
        let notifier = AlertNotifier(configuration: config, store: store, logger: Logger(label: "t"))
        let now = Clock.nowMicros()
        try await notifier.sweep(now: now)
        #expect(try alerts(store).isEmpty, "not answering for less than the rule's 30 s")
        try await notifier.sweep(now: now + 31_000_000)
        let keys = try await store.database.read { try String.fetchAll($0, sql: "SELECT dedupe_key FROM alerts WHERE resolved_at_us IS NULL") }
        #expect(keys == ["process_silent:stock-2"])
        withExtendedLifetime(processes) {}
    }
}
