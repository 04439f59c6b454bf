import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// The HTTP round trip every adapter makes: one request, the whole body back, and transport
/// failures already classified (timeouts, refused connections, 5xx and 429 are retryable).
public struct ErpHTTP: Sendable {
    public var client: HTTPClient
    /// Per-call deadline. Default 30 s: ERP batch saves of a few hundred orders take seconds.
    public var timeout: Duration

    public init(client: HTTPClient = .shared, timeout: Duration = .seconds(30)) {
        self.client = client
        self.timeout = timeout
    }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: Data
        public func header(_ name: String) -> String? {
            headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
        }
    }

    /// Sends the request; returns any 2xx–4xx answer (the adapter reads the ERP's own error
    /// envelope), throws `.retryable` for transport failures, 5xx and 429.
    public func send(_ method: HTTPMethod = .POST, url: String, headers: [(String, String)] = [], body: Data? = nil) async throws(ErpError) -> Response {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000))
            let buffer = try await response.body.collect(upTo: 64 << 20)
            let status = Int(response.status.code)
            let out = Response(status: status, headers: response.headers.map { ($0.name, $0.value) }, body: Data(buffer.readableBytesView))
            if status == 429 { throw ErpError.retryable(code: "http_429", message: "throttled by the ERP (HTTP 429)") }
            if status >= 500 {
                throw ErpError.retryable(code: "http_\(status)", message: "ERP answered HTTP \(status): \(String(decoding: out.body.prefix(300), as: UTF8.self))")
            }
            return out
        } catch let error as ErpError {
            throw error
        } catch {
            throw .retryable(code: "transport", message: "\(url): \(error)")
        }
    }

    /// POSTs a JSON body and returns the decoded JSON object of the answer (`[String: Any]` or
    /// array); a body that is not JSON is retryable only with a 5xx (already thrown), else permanent.
    public func postJSON(url: String, headers: [(String, String)] = [], json: Any) async throws(ErpError) -> (Response, Any) {
        let body: Data
        do { body = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) } catch {
            throw .permanent(code: "encoding", message: "request body is not valid JSON: \(error)")
        }
        let response = try await send(url: url, headers: [("Content-Type", "application/json; charset=utf-8")] + headers, body: body)
        return (response, try Self.decode(response))
    }

    /// The answer's body as JSON.
    public static func decode(_ response: Response) throws(ErpError) -> Any {
        do { return try JSONSerialization.jsonObject(with: response.body, options: [.fragmentsAllowed]) } catch {
            throw .permanent(code: "http_\(response.status)", message: "ERP answered HTTP \(response.status) with a body that is not JSON: \(String(decoding: response.body.prefix(300), as: UTF8.self))")
        }
    }
}

/// Amounts: LiveSync counts fen (分); ERPs take yuan with two decimals.
public enum ErpAmount {
    /// `1234` → `"12.34"`.
    public static func yuan(_ fen: Int64) -> String {
        let sign = fen < 0 ? "-" : ""
        let a = fen.magnitude
        let cents = a % 100
        return "\(sign)\(a / 100).\(cents < 10 ? "0" : "")\(cents)"
    }
    /// `1234` → `Decimal(12.34)`, exact.
    public static func decimal(_ fen: Int64) -> Decimal { Decimal(fen) / 100 }
}

/// ERP dates: Chinese ERPs take local (UTC+8) wall-clock time as text.
public enum ErpChinaTime {
    /// `yyyy-MM-dd HH:mm:ss` in UTC+8 for microseconds since 1970.
    public static func chinaDateTime(us: Int64) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(secondsFromGMT: 8 * 3600)!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(us) / 1_000_000))
        func two(_ v: Int?) -> String { let v = v ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        return "\(c.year ?? 1970)-\(two(c.month))-\(two(c.day)) \(two(c.hour)):\(two(c.minute)):\(two(c.second))"
    }
}
