import ErpAdapters
import Synchronization

/// An ERP that lives in memory and keeps the adapter contract as a real one does: references
/// are unique (a second create of one is refused, as Kingdee refuses a duplicate bill number),
/// unknown materials and customers are refused per order, and a knob makes the next calls
/// fail as a down or throttling ERP would. For `ErpWriter`'s tests, apart from any HTTP.
public final class InMemoryErp: ErpAdapter, Sendable {
    public let kind = "memory"
    public let maxBatchSize: Int
    public let capabilities: Set<ErpCapability> = [.cancel, .shipped, .stock]

    public struct State: Sendable {
        public var documents: [String: ErpDocument] = [:]
        public var lines: [String: [ErpSaleOrder.Line]] = [:]
        public var materials: Set<String>
        public var customers: Set<String>
        /// Units on hand per material (one warehouse is enough here).
        public var onHand: [String: Int64] = [:]
        public var calls: [String: Int] = [:]
        /// Creates that carried an already-used reference (must stay 0).
        public var duplicateCreates = 0
        /// The next N calls of any kind fail with this error.
        public var failNext = 0
        public var failure: ErpError = .retryable(code: "http_503", message: "ERP down")
        /// Creates take effect but the answer is lost (a crash or timeout after the ERP committed).
        public var loseNextCreateAnswer = false
        public var confirmOnCreate = true
        /// Confirm calls fail as a down ERP's would.
        public var failConfirm = false
    }

    public let state: Mutex<State>

    public init(materials: Set<String>, customers: Set<String> = ["LIVESYNC"], maxBatchSize: Int = 50) {
        self.maxBatchSize = maxBatchSize
        state = Mutex(State(materials: materials, customers: customers))
    }

    func enter(_ call: String) throws(ErpError) {
        let failure: ErpError? = state.withLock { s in
            s.calls[call, default: 0] += 1
            guard s.failNext > 0 else { return nil }
            s.failNext -= 1
            return s.failure
        }
        if let failure { throw failure }
    }

    public func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument] {
        try enter("lookup")
        return state.withLock { s in s.documents.filter { references.contains($0.key) } }
    }

    public func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try enter("create")
        let (results, lose) = state.withLock { s -> ([String: Result<ErpDocument, ErpError>], Bool) in
            var out: [String: Result<ErpDocument, ErpError>] = [:]
            for o in orders {
                if s.documents[o.reference] != nil {
                    s.duplicateCreates += 1
                    out[o.reference] = .failure(.permanent(code: "duplicate", message: "reference \(o.reference) exists"))
                    continue
                }
                if let bad = o.lines.first(where: { !s.materials.contains($0.material) }) {
                    out[o.reference] = .failure(.permanent(code: "unknown_material", message: "material \(bad.material) does not exist"))
                    continue
                }
                guard s.customers.contains(o.customer) else {
                    out[o.reference] = .failure(.permanent(code: "unknown_customer", message: "customer \(o.customer) does not exist"))
                    continue
                }
                let doc = ErpDocument(reference: o.reference, id: "\(s.documents.count + 1)", number: "SO\(s.documents.count + 1)", state: s.confirmOnCreate ? .confirmed : .draft)
                s.documents[o.reference] = doc
                s.lines[o.reference] = o.lines
                out[o.reference] = .success(doc)
            }
            let lose = s.loseNextCreateAnswer
            s.loseNextCreateAnswer = false
            return (out, lose)
        }
        if lose { throw .retryable(code: "timeout", message: "no answer before the deadline") }
        return results
    }

    public func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try enter("confirm")
        if state.withLock({ $0.failConfirm }) { throw .retryable(code: "http_503", message: "ERP down") }
        return state.withLock { s in
            var out: [String: Result<ErpDocument, ErpError>] = [:]
            for d in documents {
                s.documents[d.reference]?.state = .confirmed
                out[d.reference] = s.documents[d.reference].map { .success($0) } ?? .failure(.permanent(code: "missing", message: "no \(d.reference)"))
            }
            return out
        }
    }

    public func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try enter("cancel")
        return state.withLock { s in
            var out: [String: Result<ErpDocument, ErpError>] = [:]
            for d in documents {
                s.documents[d.reference]?.state = .cancelled
                out[d.reference] = s.documents[d.reference].map { .success($0) } ?? .failure(.permanent(code: "missing", message: "no \(d.reference)"))
            }
            return out
        }
    }

    public func markShipped(_ shipments: [ErpShipmentNotice]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try enter("ship")
        return state.withLock { s in
            var out: [String: Result<ErpDocument, ErpError>] = [:]
            for n in shipments {
                s.documents[n.document.reference]?.state = .done
                out[n.document.reference] = s.documents[n.document.reference].map { .success($0) } ?? .failure(.permanent(code: "missing", message: "no \(n.document.reference)"))
            }
            return out
        }
    }

    /// Units of live (not cancelled) documents per material.
    public func recorded(_ material: String) -> Int64 {
        state.withLock { s in
            s.documents.filter { $0.value.state != .cancelled }.keys.reduce(Int64(0)) { sum, ref in
                sum + (s.lines[ref] ?? []).filter { $0.material == material }.reduce(0) { $0 + $1.quantity }
            }
        }
    }

    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        try enter("stock")
        let list = materials.isEmpty ? state.withLock { Array($0.onHand.keys).sorted() } : materials
        return list.map { m in
            let recorded = recorded(m)
            let onHand = state.withLock { $0.onHand[m] ?? 0 }
            return ErpStockLevel(material: m, warehouse: "main", onHand: onHand, available: onHand - recorded, recordedByLiveSync: recorded)
        }
    }

    public var documentCount: Int { state.withLock { $0.documents.count } }
    public func calls(_ name: String) -> Int { state.withLock { $0.calls[name] ?? 0 } }
}
