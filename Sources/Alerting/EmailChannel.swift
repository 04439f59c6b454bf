import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// E-mail over SMTP (RFC 5321): EHLO, STARTTLS (or implicit TLS) when configured, AUTH PLAIN
/// when credentials are given, one message to every recipient, a UTF-8 text/plain body.
/// Delivered means the server answered 250 to the end of DATA.
public struct EmailChannel: AlertChannel {
    public let name: String
    let smtp: SMTPSettings

    public init(name: String, smtp: SMTPSettings) {
        self.name = name
        self.smtp = smtp
    }

    public func send(_ notification: AlertNotification, now: Int64) async throws {
        try await SMTPSession.deliver(smtp, subject: notification.title, body: notification.text, now: now)
    }
}

enum SMTPSession {
    static func deliver(_ smtp: SMTPSettings, subject: String, body: String, now: Int64) async throws {
        let replies = ReplyReader()
        let tlsContext = smtp.security == "none" ? nil : try NIOSSLContext(configuration: .makeClientConfiguration())
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if smtp.security == "tls", let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: tlsContext, serverHostname: smtp.host))
                    }
                    try channel.pipeline.syncOperations.addHandler(replies)
                }
            }
            .connect(host: smtp.host, port: smtp.port).get()
        defer { channel.close(promise: nil) }

        func command(_ line: String?, expect: Int) async throws -> String {
            if let line { try await channel.writeAndFlush(ByteBuffer(string: line + "\r\n")).get() }
            let (code, text) = try await replies.next(timeout: .seconds(30))
            guard code == expect else {
                let shown = line.map { $0.hasPrefix("AUTH") ? "AUTH PLAIN …" : $0 } ?? "greeting"
                throw ChannelError("SMTP \(smtp.host):\(smtp.port) answered \(code) \(text) to \(shown)")
            }
            return text
        }
        _ = try await command(nil, expect: 220)
        var ehlo = try await command("EHLO livesync", expect: 250)
        if smtp.security == "starttls" {
            guard ehlo.uppercased().contains("STARTTLS") else { throw ChannelError("SMTP \(smtp.host) does not offer STARTTLS; set \"security\": \"none\" only for a local relay") }
            _ = try await command("STARTTLS", expect: 220)
            try await channel.pipeline.addHandler(try NIOSSLClientHandler(context: tlsContext!, serverHostname: smtp.host), position: .first).get()
            ehlo = try await command("EHLO livesync", expect: 250)
        }
        if let user = smtp.username, let password = smtp.password {
            let token = Data("\0\(user)\0\(password)".utf8).base64EncodedString()
            _ = try await command("AUTH PLAIN \(token)", expect: 235)
        }
        _ = try await command("MAIL FROM:<\(smtp.from)>", expect: 250)
        for to in smtp.to { _ = try await command("RCPT TO:<\(to)>", expect: 250) }
        _ = try await command("DATA", expect: 354)
        _ = try await command(message(smtp, subject: subject, body: body, now: now) + "\r\n.", expect: 250)
        _ = try? await command("QUIT", expect: 221)
    }

    /// RFC 5322 message: UTF-8 subject as an encoded word, base64 body (no line needs dot-stuffing).
    static func message(_ smtp: SMTPSettings, subject: String, body: String, now: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(now) / 1e6)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        let encodedBody = Data(body.utf8).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        let domain = smtp.from.split(separator: "@").last.map(String.init) ?? "livesync"
        return [
            "From: <\(smtp.from)>",
            "To: " + smtp.to.map { "<\($0)>" }.joined(separator: ", "),
            "Subject: =?UTF-8?B?\(Data(subject.utf8).base64EncodedString())?=",
            "Date: \(f.string(from: date))",
            "Message-ID: <\(now).\(UInt32.random(in: 0...UInt32.max))@\(domain)>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
            "",
            encodedBody,
        ].joined(separator: "\r\n")
    }
}

/// Collects SMTP replies (multi-line `250-…` continued until `250 …`) for the session to await.
final class ReplyReader: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    // Touched only on the channel's event loop, except `next`, which hops onto it.
    private var buffer = ""
    private var lines: [String] = []
    private var ready: [(Int, String)] = []
    private var waiter: EventLoopPromise<(Int, String)>?
    private var failure: (any Error)?
    private var loop: (any EventLoop)?

    func handlerAdded(context: ChannelHandlerContext) { loop = context.eventLoop }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer += bytes.readString(length: bytes.readableBytes) ?? ""
        while let range = buffer.range(of: "\r\n") ?? buffer.range(of: "\n") {
            let line = String(buffer[..<range.lowerBound])
            buffer.removeSubrange(..<range.upperBound)
            lines.append(line)
            if line.count < 4 || line[line.index(line.startIndex, offsetBy: 3)] != "-" {
                let code = Int(line.prefix(3)) ?? 0
                let text = lines.map { String($0.dropFirst(4)) }.joined(separator: "\n")
                lines.removeAll()
                if let waiter { self.waiter = nil; waiter.succeed((code, text)) } else { ready.append((code, text)) }
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let error = ChannelError("SMTP server closed the connection")
        failure = error
        waiter?.fail(error)
        waiter = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failure = error
        waiter?.fail(error)
        waiter = nil
        context.close(promise: nil)
    }

    func next(timeout: TimeAmount) async throws -> (Int, String) {
        guard let loop else { throw ChannelError("SMTP connection not set up") }
        let future: EventLoopFuture<(Int, String)> = try await loop.submit {
            if !self.ready.isEmpty { return loop.makeSucceededFuture(self.ready.removeFirst()) }
            if let failure = self.failure { return loop.makeFailedFuture(failure) }
            let promise = loop.makePromise(of: (Int, String).self)
            self.waiter = promise
            loop.scheduleTask(in: timeout) {
                if let w = self.waiter, w.futureResult === promise.futureResult {
                    self.waiter = nil
                    w.fail(ChannelError("SMTP server did not answer within \(timeout.nanoseconds / 1_000_000_000) s"))
                }
            }
            return promise.futureResult
        }.get()
        return try await future.get()
    }
}
