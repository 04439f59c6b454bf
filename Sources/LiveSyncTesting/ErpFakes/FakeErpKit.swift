import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// What the ERP fakes (Jushuitan, Odoo, webhook) share: JSON answers, form bodies, call counts,
/// the slow-answer knob and the "fail the next N calls" queue.
public final class FakeErpKit: Sendable {
    /// Calls by endpoint (`/open/jushuitan/orders/upload`, `sale.order.create`, `create`, …), every
    /// call the fake received whatever its answer.
    let counts = Mutex<[String: Int]>([:])
    let delay = Mutex<Duration>(.zero)
    let failures = Mutex<[FakeErpFailure]>([])

    init() {}

    func count(_ key: String) { counts.withLock { $0[key, default: 0] += 1 } }
    func calls(_ key: String) -> Int { counts.withLock { $0[key] ?? 0 } }
    var allCalls: [String: Int] { counts.withLock { $0 } }

    func nextFailure() -> FakeErpFailure? { failures.withLock { $0.isEmpty ? nil : $0.removeFirst() } }

    func pause() async {
        let d = delay.withLock { $0 }
        if d > .zero { try? await Task.sleep(for: d) }
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("null".utf8)
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func text(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "text/plain"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// An `application/x-www-form-urlencoded` body's fields (`+` is a space).
    static func form(_ body: ByteBuffer) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in String(buffer: body).split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String($0) }
            fields[kv[0]] = kv.count == 2 ? kv[1] : ""
        }
        return fields
    }
}

/// An answer an ERP fake gives instead of doing the call, in the vendor's own shape.
public enum FakeErpFailure: Sendable, Equatable {
    /// The vendor's throttling answer (Jushuitan code 199, webhook HTTP 429, Odoo: a 429 from its proxy).
    case throttle
    /// An HTTP status with a plain body (502 from a gateway, 503 while restarting).
    case http(Int)
    /// Odoo only: the serialization failure Odoo answers when concurrent transactions collide.
    case serializationFailure
    /// The vendor refuses the call with its code and message (Jushuitan `code`/`msg`, Odoo exception name/message, webhook error).
    case refuse(code: String, message: String)
}

/// The ERP fakes' common knobs.
public protocol FakeErp: AnyObject, Sendable {
    var kit: FakeErpKit { get }
}

extension FakeErp {
    /// The next answers, in order, before the fake behaves again.
    public func failNext(_ failures: [FakeErpFailure]) { kit.failures.withLock { $0.append(contentsOf: failures) } }
    public func failNext(_ count: Int, with failure: FakeErpFailure) { failNext(Array(repeating: failure, count: count)) }
    /// Every answer waits this long first (a slow ERP); `.zero` turns it off.
    public func slow(_ delay: Duration) { kit.delay.withLock { $0 = delay } }
    /// Calls received on `endpoint` (see each fake for its endpoint names).
    public func calls(_ endpoint: String) -> Int { kit.calls(endpoint) }
    public var allCalls: [String: Int] { kit.allCalls }
}
