import Crypto
import ErpAdapters
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A local in-house ERP speaking LiveSync's generic webhook protocol (docs/erp-adapters.md,
/// "Generic webhook"), as a merchant's receiver should: it checks `X-LiveSync-Timestamp` (± 5
/// minutes), refuses a replayed `X-LiveSync-Nonce`, verifies `X-LiveSync-Signature` (401
/// otherwise), creates idempotently by reference, refuses unknown materials per order, and answers
/// every operation in the documented shape. Listens on 127.0.0.1 only.
///
/// Endpoint names for `calls(_:)`: the operation (`create`, `lookup`, `confirm`, `cancel`, `shipped`, `stock`).
public final class FakeWebhookErp: FakeErp, Sendable {
    public let kit = FakeErpKit()
    public static let path = "/livesync/erp"
    let secret: Mutex<String>
    /// Seconds a request's timestamp may be off the fake's clock.
    public let tolerance: Double = 300

    public struct Document: Sendable, Equatable {
        public var reference: String
        public var id: String
        public var number: String
        public var state: ErpDocumentState
        public var lines: [String: Int64]
        public var warehouse: String
        public var tracking: String
    }
    struct Store {
        var documents: [String: Document] = [:]
        var next = 1
        var materials: Set<String> = []
        var onHand: [String: [String: Int64]] = [:]  // warehouse → material → units
        var nonces: [String: Double] = [:]
        /// `create` received for a reference already created (answered with the existing document).
        var repeats = 0
    }
    let store = Mutex(Store())
    /// Requests refused for a bad signature, stale timestamp or replayed nonce.
    public let refused = Atomic<Int>(0)

    public init(secret: String = "dev-webhook-secret") { self.secret = Mutex(secret) }

    /// The merchant rotated the secret: requests signed with the old one are refused.
    public func rotateSecret(_ secret: String) { self.secret.withLock { $0 = secret } }
    public func addMaterial(_ material: String, onHand: Int64 = 0, warehouse: String = "WH1") {
        store.withLock { s in
            s.materials.insert(material)
            s.onHand[warehouse, default: [:]][material] = onHand
        }
    }
    public var documents: [String: Document] { store.withLock { $0.documents } }
    public var repeatedCreates: Int { store.withLock { $0.repeats } }

    public func routes(_ router: Router<BasicRequestContext>) {
        router.post(RouterPath(stringLiteral: Self.path)) { request, _ in
            let body = try await request.body.collect(upTo: 64 << 20)
            await self.kit.pause()
            let bytes = Data(buffer: body)
            func header(_ name: String) -> String? { HTTPField.Name(name).flatMap { request.headers[$0] } }
            guard let ts = header("X-LiveSync-Timestamp"), let nonce = header("X-LiveSync-Nonce"), let signature = header("X-LiveSync-Signature") else {
                return self.unauthorised("missing X-LiveSync-Timestamp, X-LiveSync-Nonce or X-LiveSync-Signature")
            }
            guard let t = Double(ts), abs(Date().timeIntervalSince1970 - t) <= self.tolerance else {
                return self.unauthorised("X-LiveSync-Timestamp is more than 300 s off")
            }
            // Verified here apart from the adapter's signing: HMAC-SHA256 over "timestamp\nnonce\n" + the raw body.
            let key = SymmetricKey(data: Data(self.secret.withLock { $0 }.utf8))
            let expected = HMAC<SHA256>.authenticationCode(for: Data((ts + "\n" + nonce + "\n").utf8) + bytes, using: key)
                .map { String(format: "%02x", $0) }.joined()
            guard Self.constantTimeEqual(expected, signature.lowercased()) else { return self.unauthorised("X-LiveSync-Signature does not match") }
            let fresh = self.store.withLock { s -> Bool in
                let now = Date().timeIntervalSince1970
                s.nonces = s.nonces.filter { now - $0.value <= 2 * self.tolerance }
                if s.nonces[nonce] != nil { return false }
                s.nonces[nonce] = now
                return true
            }
            guard fresh else { return self.unauthorised("X-LiveSync-Nonce was already used") }
            guard let json = (try? JSONSerialization.jsonObject(with: bytes)) as? [String: Any], json["version"] as? Int == 1,
                  let op = json["op"] as? String, op == header("X-LiveSync-Operation") else {
                return Self.error(.badRequest, "bad_request", "body must be a JSON object with version 1 and op equal to X-LiveSync-Operation", retryable: false)
            }
            self.kit.count(op)
            switch self.kit.nextFailure() {
            case .throttle?: return Self.error(.tooManyRequests, "throttled", "too many requests, slow down", retryable: true)
            case .http(let status)?: return FakeErpKit.text("Service Unavailable", status: .init(code: status))
            case .refuse(let code, let message)?: return Self.error(.init(code: 422), code, message, retryable: false)
            case .serializationFailure?: return Self.error(.conflict, "conflict", "concurrent update, retry", retryable: true)
            case nil: break
            }
            switch op {
            case "create": return FakeErpKit.json(["results": (json["orders"] as? [[String: Any]] ?? []).map(self.create)])
            case "lookup":
                let refs = json["references"] as? [String] ?? []
                let docs = self.store.withLock { s in refs.compactMap { s.documents[$0] } }
                return FakeErpKit.json(["documents": docs.map(Self.json)])
            case "confirm", "cancel", "shipped":
                let list = (json[op == "shipped" ? "shipments" : "documents"] as? [[String: Any]] ?? [])
                return FakeErpKit.json(["results": list.map { self.transition(op, $0) }])
            case "stock":
                let materials = json["materials"] as? [String] ?? []
                let rows = self.store.withLock { s -> [[String: Any]] in
                    var rows: [[String: Any]] = []
                    for (warehouse, levels) in s.onHand.sorted(by: { $0.key < $1.key }) {
                        for (m, units) in levels.sorted(by: { $0.key < $1.key }) where materials.isEmpty || materials.contains(m) {
                            var recorded: Int64 = 0
                            for d in s.documents.values where d.warehouse == warehouse && (d.state == .confirmed || d.state == .draft) {
                                recorded += d.lines[m] ?? 0
                            }
                            rows.append(["material": m, "warehouse": warehouse, "on_hand": units, "available": units - recorded, "recorded_by_livesync": recorded])
                        }
                    }
                    return rows
                }
                return FakeErpKit.json(["stock": rows])
            default:
                return Self.error(.badRequest, "unknown_op", "unknown op \(op)", retryable: false)
            }
        }
    }

    func create(_ o: [String: Any]) -> [String: Any] {
        guard let reference = o["reference"] as? String, !reference.isEmpty, let lines = o["lines"] as? [[String: Any]], !lines.isEmpty,
              o["total_fen"] is Int, o["customer"] is String, let warehouse = o["warehouse"] as? String else {
            return ["reference": o["reference"] ?? "", "ok": false, "error": ["code": "bad_order", "message": "reference, customer, warehouse, total_fen and lines are required", "retryable": false]]
        }
        return store.withLock { s -> [String: Any] in
            if let existing = s.documents[reference] {  // idempotent by reference
                s.repeats += 1
                return Self.result(existing)
            }
            var units: [String: Int64] = [:]
            for l in lines {
                guard let m = l["material"] as? String, let q = l["quantity"] as? Int, q > 0, l["unit_price_fen"] is Int else {
                    return ["reference": reference, "ok": false, "error": ["code": "bad_line", "message": "every line needs material, quantity > 0 and unit_price_fen", "retryable": false]]
                }
                guard s.materials.contains(m) else {
                    return ["reference": reference, "ok": false, "error": ["code": "unknown_material", "message": "material \(m) is not in the item master", "retryable": false]]
                }
                units[m, default: 0] += Int64(q)
            }
            let doc = Document(reference: reference, id: String(s.next), number: String(format: "SO-%06d", s.next), state: .confirmed,
                               lines: units, warehouse: warehouse, tracking: "")
            s.next += 1
            s.documents[reference] = doc
            return Self.result(doc)
        }
    }

    func transition(_ op: String, _ d: [String: Any]) -> [String: Any] {
        let reference = d["reference"] as? String ?? ""
        return store.withLock { s -> [String: Any] in
            guard var doc = s.documents[reference], doc.id == d["id"] as? String else {
                return ["reference": reference, "ok": false, "error": ["code": "not_found", "message": "no document \(reference) with that id", "retryable": false]]
            }
            switch op {
            case "confirm": if doc.state == .draft { doc.state = .confirmed }
            case "cancel":
                guard doc.state != .done else {
                    return ["reference": reference, "ok": false, "error": ["code": "shipped", "message": "\(doc.number) has shipped and cannot be cancelled", "retryable": false]]
                }
                doc.state = .cancelled
            default:
                guard let tracking = d["tracking_number"] as? String, !tracking.isEmpty else {
                    return ["reference": reference, "ok": false, "error": ["code": "bad_shipment", "message": "tracking_number is required", "retryable": false]]
                }
                doc.state = .done
                doc.tracking = tracking
            }
            s.documents[reference] = doc
            return Self.result(doc)
        }
    }

    static func json(_ d: Document) -> [String: Any] { ["reference": d.reference, "id": d.id, "number": d.number, "state": d.state.rawValue] }
    static func result(_ d: Document) -> [String: Any] { json(d).merging(["ok": true]) { a, _ in a } }

    func unauthorised(_ message: String) -> Response {
        refused.add(1, ordering: .relaxed)
        return Self.error(.unauthorized, "signature", message, retryable: false)
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String, retryable: Bool) -> Response {
        FakeErpKit.json(["error": ["code": code, "message": message, "retryable": retryable]], status: status)
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    /// Runs the fake on 127.0.0.1 (an ephemeral port) until the returned task is cancelled; the
    /// endpoint is `<url>` + `FakeWebhookErp.path`.
    public func serve(port: Int = 0) async throws -> (url: String, task: Task<Void, Error>) {
        let router = Router()
        routes(router)
        return try await LocalServer.serve(router, label: "livesync.fake-webhook-erp", serverName: "livesync-fake-webhook-erp", port: port)
    }
}
