import Foundation
import Synchronization

/// Where and how LiveSync reaches a merchant's Odoo through its external JSON-RPC API
/// (`POST /jsonrpc`, services `common` and `object`).
public struct OdooConfiguration: Sendable {
    /// The server's base URL (`https://mycompany.odoo.com`); the adapter posts to `<url>/jsonrpc`.
    public var url: String
    public var database: String
    public var login: String
    /// The user's password or, preferably, an API key (Preferences → Account Security).
    public var password: String
    /// Orders per `sale.order` `create` call (Odoo has no hard limit; one call is one transaction).
    public var batchSize: Int
    public var timeout: Duration
    /// `action_confirm` right after `create` (quotation → sales order). Off: orders stay quotations.
    public var confirmOnCreate: Bool
    /// Warehouse codes (`stock.warehouse.code`) `stockLevels` reads; empty: every warehouse.
    public var stockWarehouses: [String]
    /// `res.partner` field the customer code is matched on (`ref`, the partner's "Reference").
    public var partnerCodeField: String
    /// Extra `context` for every `execute_kw` (e.g. `{"lang": "zh_CN"}`); company is the user's.
    public var context: [String: String]

    public init(url: String, database: String, login: String, password: String, batchSize: Int = 100, timeout: Duration = .seconds(60),
                confirmOnCreate: Bool = true, stockWarehouses: [String] = [], partnerCodeField: String = "ref", context: [String: String] = [:]) {
        self.url = url
        self.database = database
        self.login = login
        self.password = password
        self.batchSize = batchSize
        self.timeout = timeout
        self.confirmOnCreate = confirmOnCreate
        self.stockWarehouses = stockWarehouses
        self.partnerCodeField = partnerCodeField
        self.context = context
    }
}

/// The Odoo external-API adapter (JSON-RPC `execute_kw`).
///
/// - create: `sale.order` `create` with a list of vals (one call, one transaction, Odoo ≥ 12),
///   `client_order_ref` = reference; then `action_confirm` on the new ids; then `search_read` for
///   `name`/`state`. Codes are resolved first with cached `search_read`s of `product.product`
///   (`default_code`), `res.partner` (`ref`) and `stock.warehouse` (`code`): an unknown code refuses
///   that order only. A create or confirm Odoo refuses as a whole is narrowed down by halves (the
///   transaction rolled back, so nothing was written) to the orders Odoo refuses.
/// - lookup: `sale.order` `search_read` `[["client_order_ref","in",refs]]`.
/// - cancel: `action_cancel` (context `disable_cancel_warning`), then the states read back.
/// - stock: `stock.quant` `search_read` by `product_id.default_code` and `warehouse_id`.
public struct OdooAdapter: ErpAdapter {
    public let kind = "odoo"
    public let configuration: OdooConfiguration
    public var maxBatchSize: Int { configuration.batchSize }
    public let capabilities: Set<ErpCapability> = [.cancel, .stock]
    let http: ErpHTTP
    let session: Session

    public init(_ configuration: OdooConfiguration, http: ErpHTTP? = nil) {
        self.configuration = configuration
        self.http = http ?? ErpHTTP(timeout: configuration.timeout)
        self.session = Session()
    }

    /// The uid from `authenticate` and the code → id caches (products, partners, warehouses).
    final class Session: Sendable {
        struct State {
            var uid: Int?
            var generation = 0
            var products: [String: Int] = [:]
            var productCodes: [Int: String] = [:]
            var partners: [String: Int] = [:]
            var warehouses: [String: Int] = [:]
            var warehouseCodes: [Int: String] = [:]
        }
        let state = Mutex(State())
    }

    // MARK: JSON-RPC

    func rpc(service: String, method: String, args: [Any]) async throws(ErpError) -> Any {
        let body: [String: Any] = ["jsonrpc": "2.0", "method": "call", "id": Int.random(in: 1...Int(Int32.max)),
                                   "params": ["service": service, "method": method, "args": args]]
        let (response, json) = try await http.postJSON(url: configuration.url + "/jsonrpc", json: body)
        guard let object = json as? [String: Any] else {
            throw .permanent(code: "http_\(response.status)", message: "Odoo answered /jsonrpc with JSON that is not an object")
        }
        if let error = object["error"] as? [String: Any] { throw Self.classify(error) }
        guard response.status < 400 else { throw .permanent(code: "http_\(response.status)", message: "Odoo answered HTTP \(response.status)") }
        return object["result"] ?? NSNull()
    }

    /// `{"code": 200, "message": "Odoo Server Error", "data": {"name": "odoo.exceptions.…", "message": …}}`.
    static func classify(_ error: [String: Any]) -> ErpError {
        let data = error["data"] as? [String: Any] ?? [:]
        let name = data["name"] as? String ?? (error["message"] as? String ?? "odoo_error")
        let message = (data["message"] as? String).flatMap { $0.isEmpty ? nil : $0 } ?? (error["message"] as? String ?? "Odoo error")
        let retryable = ["SerializationFailure", "OperationalError", "LockNotAvailable", "ConcurrencyError", "ConnectionError",
                         "TransactionRollbackError", "DeadlockDetected", "InterfaceError", "SessionExpired", "TimeoutError", "PoolError"]
        // A database that does not exist is a configuration error, not a passing one.
        if retryable.contains(where: { name.contains($0) }), !message.contains("does not exist") { return .retryable(code: name, message: message) }
        if let code = error["code"] as? Int, code == 100 { return .retryable(code: name, message: message) }  // "Odoo Session Expired"
        return .permanent(code: name, message: message)
    }

    func authenticate(seenGeneration: Int?) async throws(ErpError) -> (uid: Int, generation: Int) {
        if let seenGeneration {
            let current = session.state.withLock { ($0.uid, $0.generation) }
            if current.1 != seenGeneration, let uid = current.0 { return (uid, current.1) }
        }
        let c = configuration
        let result = try await rpc(service: "common", method: "authenticate", args: [c.database, c.login, c.password, [String: Any]()])
        guard let uid = result as? Int, uid > 0 else {
            throw .permanent(code: "odoo.exceptions.AccessDenied", message: "Odoo refused the login \(c.login) on database \(c.database) (authenticate returned false)")
        }
        return session.state.withLock { s in
            s.uid = uid
            s.generation += 1
            return (uid, s.generation)
        }
    }

    /// `object.execute_kw(db, uid, password, model, method, args, kwargs)`; authenticates first, and
    /// once more when Odoo answers AccessDenied (uid changed, database restored), then gives up.
    func execute(_ model: String, _ method: String, _ args: [Any], _ kwargs: [String: Any] = [:]) async throws(ErpError) -> Any {
        var (uid, generation) = session.state.withLock { ($0.uid, $0.generation) }
        if uid == nil {
            let a = try await authenticate(seenGeneration: nil)
            uid = a.uid
            generation = a.generation
        }
        var kw = kwargs
        if !configuration.context.isEmpty || kw["context"] != nil {
            var ctx = configuration.context as [String: Any]
            for (k, v) in kw["context"] as? [String: Any] ?? [:] { ctx[k] = v }
            kw["context"] = ctx
        }
        let c = configuration
        var reauthenticated = false
        while true {
            do throws(ErpError) {
                return try await rpc(service: "object", method: "execute_kw", args: [c.database, uid!, c.password, model, method, args, kw])
            } catch {
                guard error.code.hasSuffix("AccessDenied"), !reauthenticated else { throw error }
                reauthenticated = true
                let a = try await authenticate(seenGeneration: generation)
                uid = a.uid
                generation = a.generation
            }
        }
    }

    /// One domain leaf `[field, operator, value]`.
    func term(_ field: String, _ op: String, _ value: Any) -> [Any] { [field, op, value] }

    // MARK: Codes

    /// Resolves the codes the orders use that the caches lack: one `search_read` per kind.
    func resolve(products: Set<String>, partners: Set<String>, warehouses: Set<String>) async throws(ErpError) {
        let missing = session.state.withLock { s in
            (products.filter { s.products[$0] == nil }, partners.filter { s.partners[$0] == nil }, warehouses.filter { s.warehouses[$0] == nil })
        }
        if !missing.0.isEmpty {
            let rows = try await execute("product.product", "search_read", [[term("default_code", "in", Array(missing.0).sorted())]],
                                         ["fields": ["id", "default_code"]]) as? [[String: Any]] ?? []
            session.state.withLock { s in
                for r in rows { if let id = r["id"] as? Int, let code = r["default_code"] as? String { s.products[code] = id; s.productCodes[id] = code } }
            }
        }
        if !missing.1.isEmpty {
            let field = configuration.partnerCodeField
            let rows = try await execute("res.partner", "search_read", [[term(field, "in", Array(missing.1).sorted())]],
                                         ["fields": ["id", field]]) as? [[String: Any]] ?? []
            session.state.withLock { s in
                for r in rows { if let id = r["id"] as? Int, let code = r[field] as? String, s.partners[code] == nil { s.partners[code] = id } }
            }
        }
        if !missing.2.isEmpty { try await resolveWarehouses(Array(missing.2)) }
    }

    func resolveWarehouses(_ codes: [String]?) async throws(ErpError) {
        let domain: [Any] = codes.map { [term("code", "in", $0.sorted())] } ?? []
        let rows = try await execute("stock.warehouse", "search_read", [domain], ["fields": ["id", "code"]]) as? [[String: Any]] ?? []
        session.state.withLock { s in
            for r in rows { if let id = r["id"] as? Int, let code = r["code"] as? String { s.warehouses[code] = id; s.warehouseCodes[id] = code } }
        }
    }

    // MARK: ErpAdapter

    public func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument] {
        guard !references.isEmpty else { return [:] }
        let rows = try await execute("sale.order", "search_read", [[term("client_order_ref", "in", references)]],
                                     ["fields": ["id", "name", "state", "client_order_ref"], "order": "id asc"]) as? [[String: Any]] ?? []
        var found: [String: ErpDocument] = [:]
        for r in rows {
            guard let doc = Self.document(r), found[doc.reference] == nil || found[doc.reference]!.state == .cancelled else { continue }
            found[doc.reference] = doc
        }
        return found
    }

    static func document(_ r: [String: Any]) -> ErpDocument? {
        guard let id = r["id"] as? Int, let ref = r["client_order_ref"] as? String else { return nil }
        return ErpDocument(reference: ref, id: String(id), number: r["name"] as? String ?? "", state: state(r["state"] as? String ?? ""))
    }

    /// `sale.order.state`: draft, sent (quotations), sale, done (≤ 16), cancel.
    static func state(_ s: String) -> ErpDocumentState {
        switch s {
        case "sale": .confirmed
        case "done": .done
        case "cancel": .cancelled
        default: .draft
        }
    }

    public func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !orders.isEmpty else { return [:] }
        try await resolve(products: Set(orders.flatMap { $0.lines.map(\.material) }), partners: Set(orders.map(\.customer)),
                          warehouses: Set(orders.map(\.warehouse).filter { !$0.isEmpty }))
        var results: [String: Result<ErpDocument, ErpError>] = [:]
        var vals: [(ErpSaleOrder, [String: Any])] = []
        let s = session.state.withLock { $0 }
        for o in orders {
            guard let partner = s.partners[o.customer] else {
                results[o.reference] = .failure(.permanent(code: "res.partner", message: "no res.partner with \(configuration.partnerCodeField) '\(o.customer)' in Odoo"))
                continue
            }
            if let unknown = o.lines.first(where: { s.products[$0.material] == nil }) {
                results[o.reference] = .failure(.permanent(code: "product.product", message: "no product.product with default_code '\(unknown.material)' in Odoo"))
                continue
            }
            var v: [String: Any] = [
                "partner_id": partner, "client_order_ref": o.reference,
                "date_order": Self.odooDatetime(o.paidAtUs),
                "order_line": o.lines.map { l -> [Any] in
                    [0, 0, ["product_id": s.products[l.material]!, "product_uom_qty": l.quantity,
                            "price_unit": NSDecimalNumber(decimal: ErpAmount.decimal(l.unitPriceFen)).doubleValue, "sequence": l.lineNo * 10] as [String: Any]]
                },
                "note": o.remark.isEmpty ? "LiveSync \(o.platform) \(o.platformOrderID)" : o.remark,
            ]
            if !o.warehouse.isEmpty {
                guard let wh = s.warehouses[o.warehouse] else {
                    results[o.reference] = .failure(.permanent(code: "stock.warehouse", message: "no stock.warehouse with code '\(o.warehouse)' in Odoo"))
                    continue
                }
                v["warehouse_id"] = wh
            }
            vals.append((o, v))
        }
        var created: [(reference: String, id: Int)] = []
        try await createSplitting(vals, created: &created, results: &results)
        guard !created.isEmpty else { return results }
        var drafts = Set(created.map(\.id))
        if configuration.confirmOnCreate {
            var confirmed: [Int] = []
            var refused: [Int: ErpError] = [:]
            do throws(ErpError) {
                try await confirmSplitting(created.map(\.id), confirmed: &confirmed, refused: &refused)
            } catch {
                // Created but not confirmed (Odoo busy): they come back as drafts for `confirm` later.
            }
            drafts.subtract(confirmed)
        }
        let rows: [[String: Any]]
        do throws(ErpError) {
            rows = try await execute("sale.order", "search_read", [[term("id", "in", created.map(\.id))]],
                                     ["fields": ["id", "name", "state", "client_order_ref"]]) as? [[String: Any]] ?? []
        } catch {
            // The orders exist: report them with what is known; `lookup` reads the rest later.
            for c in created { results[c.reference] = .success(ErpDocument(reference: c.reference, id: String(c.id), state: drafts.contains(c.id) ? .draft : .confirmed)) }
            return results
        }
        let byID = Dictionary(rows.compactMap { r in (r["id"] as? Int).map { ($0, r) } }, uniquingKeysWith: { a, _ in a })
        for c in created {
            var doc = byID[c.id].flatMap(Self.document) ?? ErpDocument(reference: c.reference, id: String(c.id), state: .draft)
            doc.reference = c.reference
            results[c.reference] = .success(doc)
        }
        return results
    }

    /// `create` is one transaction: when Odoo refuses the batch, nothing was written, and the refusal
    /// is narrowed down by halves to the orders Odoo refuses (their own error, the others created).
    func createSplitting(_ vals: [(ErpSaleOrder, [String: Any])], created: inout [(reference: String, id: Int)],
                         results: inout [String: Result<ErpDocument, ErpError>]) async throws(ErpError) {
        guard !vals.isEmpty else { return }
        do throws(ErpError) {
            let answer = try await execute("sale.order", "create", [vals.map(\.1)])
            let ids = answer as? [Int] ?? (answer as? Int).map { [$0] } ?? []
            guard ids.count == vals.count else {
                throw ErpError.retryable(code: "odoo.create", message: "sale.order create answered \(ids.count) ids for \(vals.count) orders")
            }
            for (i, v) in vals.enumerated() { created.append((v.0.reference, ids[i])) }
        } catch {
            if error.isRetryable { throw error }
            guard vals.count > 1 else {
                results[vals[0].0.reference] = .failure(error)
                return
            }
            let half = vals.count / 2
            try await createSplitting(Array(vals[..<half]), created: &created, results: &results)
            try await createSplitting(Array(vals[half...]), created: &created, results: &results)
        }
    }

    func confirmSplitting(_ ids: [Int], confirmed: inout [Int], refused: inout [Int: ErpError]) async throws(ErpError) {
        guard !ids.isEmpty else { return }
        do throws(ErpError) {
            _ = try await execute("sale.order", "action_confirm", [ids])
            confirmed += ids
        } catch {
            if error.isRetryable { throw error }
            guard ids.count > 1 else {
                refused[ids[0]] = error
                return
            }
            let half = ids.count / 2
            try await confirmSplitting(Array(ids[..<half]), confirmed: &confirmed, refused: &refused)
            try await confirmSplitting(Array(ids[half...]), confirmed: &confirmed, refused: &refused)
        }
    }

    public func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try await act(documents, method: "action_confirm", kwargs: [:], pending: [.draft])
    }

    public func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try await act(documents, method: "action_cancel", kwargs: ["context": ["disable_cancel_warning": true]], pending: [.draft, .confirmed, .done])
    }

    /// Runs `method` on the documents in `pending` states (narrowing refusals down by halves) and reads the states back.
    func act(_ documents: [ErpDocument], method: String, kwargs: [String: Any], pending: Set<ErpDocumentState>) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        var results: [String: Result<ErpDocument, ErpError>] = [:]
        var ids: [Int] = []
        var byID: [Int: ErpDocument] = [:]
        for d in documents {
            guard let id = Int(d.id) else { results[d.reference] = .failure(.permanent(code: "id", message: "Odoo record id '\(d.id)' is not a number")); continue }
            byID[id] = d
            if pending.contains(d.state) { ids.append(id) }
        }
        var refused: [Int: ErpError] = [:]
        try await actSplitting(ids, method: method, kwargs: kwargs, refused: &refused)
        let rows = try await execute("sale.order", "search_read", [[term("id", "in", Array(byID.keys).sorted())]],
                                     ["fields": ["id", "name", "state", "client_order_ref"]]) as? [[String: Any]] ?? []
        for r in rows {
            guard let id = r["id"] as? Int, let d = byID[id] else { continue }
            if let e = refused[id] { results[d.reference] = .failure(e); continue }
            var doc = Self.document(r) ?? d
            doc.reference = d.reference
            results[d.reference] = .success(doc)
        }
        for (id, d) in byID where results[d.reference] == nil {
            results[d.reference] = .failure(.permanent(code: "odoo.exceptions.MissingError", message: "sale.order \(id) does not exist in Odoo"))
        }
        return results
    }

    func actSplitting(_ ids: [Int], method: String, kwargs: [String: Any], refused: inout [Int: ErpError]) async throws(ErpError) {
        guard !ids.isEmpty else { return }
        do throws(ErpError) {
            _ = try await execute("sale.order", method, [ids], kwargs)
        } catch {
            if error.isRetryable { throw error }
            guard ids.count > 1 else {
                refused[ids[0]] = error
                return
            }
            let half = ids.count / 2
            try await actSplitting(Array(ids[..<half]), method: method, kwargs: kwargs, refused: &refused)
            try await actSplitting(Array(ids[half...]), method: method, kwargs: kwargs, refused: &refused)
        }
    }

    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        let codes = configuration.stockWarehouses
        try await resolveWarehouses(codes.isEmpty ? nil : codes)
        let warehouseIDs = session.state.withLock { s in codes.isEmpty ? Array(s.warehouseCodes.keys) : codes.compactMap { s.warehouses[$0] } }
        guard !warehouseIDs.isEmpty else { return [] }
        var domain: [Any] = [term("warehouse_id", "in", warehouseIDs.sorted()), term("location_id.usage", "=", "internal")]
        if !materials.isEmpty { domain.append(term("product_id.default_code", "in", materials)) }
        let rows = try await execute("stock.quant", "search_read", [domain],
                                     ["fields": ["product_id", "warehouse_id", "quantity", "reserved_quantity"]]) as? [[String: Any]] ?? []
        // Many2one fields read as [id, display_name].
        func ref(_ v: Any?) -> Int? { (v as? [Any])?.first as? Int }
        let unknown = Set(rows.compactMap { ref($0["product_id"]) }).filter { id in session.state.withLock { $0.productCodes[id] == nil } }
        if !unknown.isEmpty {
            let products = try await execute("product.product", "search_read", [[term("id", "in", unknown.sorted())]],
                                             ["fields": ["id", "default_code"], "context": ["active_test": false]]) as? [[String: Any]] ?? []
            session.state.withLock { s in
                for p in products { if let id = p["id"] as? Int, let code = p["default_code"] as? String { s.productCodes[id] = code; s.products[code] = id } }
            }
        }
        let (productCodes, warehouseCodes) = session.state.withLock { ($0.productCodes, $0.warehouseCodes) }
        var totals: [String: (onHand: Double, reserved: Double, material: String, warehouse: String)] = [:]
        for r in rows {
            guard let pid = ref(r["product_id"]), let material = productCodes[pid], let wid = ref(r["warehouse_id"]), let warehouse = warehouseCodes[wid] else { continue }
            let key = material + "\u{1}" + warehouse
            var t = totals[key] ?? (0, 0, material, warehouse)
            t.onHand += (r["quantity"] as? Double) ?? Double(r["quantity"] as? Int ?? 0)
            t.reserved += (r["reserved_quantity"] as? Double) ?? Double(r["reserved_quantity"] as? Int ?? 0)
            totals[key] = t
        }
        return totals.values.sorted { ($0.material, $0.warehouse) < ($1.material, $1.warehouse) }.map { t in
            ErpStockLevel(material: t.material, warehouse: t.warehouse, onHand: Int64(t.onHand.rounded(.down)),
                          available: Int64((t.onHand - t.reserved).rounded(.down)))
        }
    }

    /// Odoo datetimes are UTC `YYYY-MM-DD HH:MM:SS`.
    static func odooDatetime(_ us: Int64) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = .gmt
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: Double(us) / 1_000_000))
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }
}
