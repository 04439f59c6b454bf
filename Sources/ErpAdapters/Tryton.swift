import AsyncHTTPClient
import Foundation
import Synchronization

/// Where and how LiveSync reaches one Tryton (8.2) server.
public struct TrytonConfiguration: Sendable, Equatable {
    /// `http://host:port`, without the database (`scripts/tryton.sh start` prints it as `url=`).
    public var baseURL: String
    public var database: String
    public var login: String
    public var password: String
    /// The `company.company` id every call's context carries; `nil`: the login's own company
    /// (`res.user.get_preferences`), read once per adapter.
    public var companyID: Int?
    /// LiveSync warehouse code → Tryton warehouse location `code` (`stock.location`, type
    /// `warehouse`). Codes absent from the map are used as they are. `stockLevels` reads the
    /// warehouses named here (values), or every Tryton warehouse when the map is empty.
    public var warehouses: [String: String]
    /// Sales per `sale.sale.create` call (the consumer batch is cut to this).
    public var batchSize: Int
    /// Per-call deadline; a create+quote+confirm of 100 sales takes a few seconds on SQLite.
    public var timeout: Duration
    /// Quote and confirm after create (Tryton then processes the sale: shipments, forecast).
    /// `false`: sales stay drafts for the merchant to confirm in Tryton.
    public var confirm: Bool
    /// How LiveSync's sales are recognised in Tryton: their `description` starts with this word
    /// (`"LiveSync douyin shop-1"`). `recordedByLiveSync` sums the stock moves of those sales.
    public var marker: String
    /// The day written as `sale_date` is the payment time's date in this zone.
    public var timeZone: TimeZone

    public init(baseURL: String, database: String, login: String, password: String, companyID: Int? = nil,
                warehouses: [String: String] = [:], batchSize: Int = 100, timeout: Duration = .seconds(60),
                confirm: Bool = true, marker: String = "LiveSync",
                timeZone: TimeZone = TimeZone(identifier: "Asia/Shanghai") ?? .gmt) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.database = database
        self.login = login
        self.password = password
        self.companyID = companyID
        self.warehouses = warehouses
        self.batchSize = batchSize
        self.timeout = timeout
        self.confirm = confirm
        self.marker = marker
        self.timeZone = timeZone
    }

    /// The JSON-RPC endpoint of the database: `POST <base>/<db>/rpc/` (trytond 8.2
    /// `protocols/dispatcher.py`, route `/<database_name>/rpc/`).
    public var endpoint: String { "\(baseURL)/\(database)/rpc/" }
}

/// Tryton's JSON-RPC, as `trytond` 8.2 with the `sale` and `stock` modules serves it.
///
/// Calls (all `POST <base>/<db>/rpc/`, body `{"method", "params", "id"}`, header
/// `Authorization: Session base64(login:user_id:session)`, context `{"company": id}` last):
/// - `common.db.login [login, {"password"}]` → `[user_id, session, bus_url]`; an expired or
///   unknown session answers HTTP 401 with an empty body: the adapter logs in again once and
///   repeats the call.
/// - `model.sale.sale.create [[sale, ...], ctx]`: the whole batch in one call, lines as
///   `[["create", [line, ...]]]`; then `quote [ids, ctx]`, `confirm [ids, ctx]` (confirm runs
///   `process`, which creates the customer shipments, after its commit), and a
///   `search_read` by id to read the state back.
/// - `model.sale.sale.search_read [[["reference", "in", refs]], ...]` for lookup.
/// - cancel: `cancel` (draft/quotation), `draft` + `cancel` (confirmed, not processed), or, for
///   a processing sale, `model.stock.shipment.out.cancel` of its shipments and the wizard
///   `sale.handle.shipment.exception` ignoring the cancelled moves (Tryton has no
///   processing → cancelled transition).
/// - `model.product.product.search_read` with context `locations: [warehouse]` for
///   `quantity`/`forecast_quantity`, and `model.stock.move.search_read` of LiveSync's sale
///   moves for `recordedByLiveSync`.
///
/// Errors: JSON-RPC `{"error": ["UserError", [message, description, domain]]}` is permanent;
/// `["ConcurrencyException", message]`, transport failures, 5xx (504 is trytond's timeout) and a
/// locked SQLite database are retryable.
public struct TrytonAdapter: ErpAdapter {
    public let configuration: TrytonConfiguration
    public var kind: String { "tryton" }
    public var maxBatchSize: Int { configuration.batchSize }
    public var capabilities: Set<ErpCapability> { [.cancel, .stock] }

    private let http: ErpHTTP
    private let state: TrytonState

    public init(configuration: TrytonConfiguration, client: HTTPClient = .shared) {
        self.configuration = configuration
        self.http = ErpHTTP(client: client, timeout: configuration.timeout)
        self.state = TrytonState()
    }

    // MARK: ErpAdapter

    public func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument] {
        guard !references.isEmpty else { return [:] }
        let rows = try await searchRead("sale.sale", [Self.clause("reference", "in", references)], Self.saleFields)
        let documents = try await documents(from: rows)
        var out: [String: ErpDocument] = [:]
        // Several sales with one reference would be a duplicate made outside LiveSync: prefer the
        // live one, then the oldest.
        for document in documents.sorted(by: { (Int($0.id) ?? 0) < (Int($1.id) ?? 0) }) {
            if let existing = out[document.reference], existing.state != .cancelled || document.state == .cancelled { continue }
            out[document.reference] = document
        }
        return out
    }

    public func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !orders.isEmpty else { return [:] }
        var results: [String: Result<ErpDocument, ErpError>] = [:]
        let codes = try await resolve(customers: Set(orders.map(\.customer)), materials: Set(orders.flatMap { $0.lines.map(\.material) }),
                                      warehouses: Set(orders.map { warehouseCode($0.warehouse) }), currencies: Set(orders.map(\.currency)))
        var accepted: [(order: ErpSaleOrder, sale: [String: Any])] = []
        for order in orders {
            switch saleValues(order, codes) {
            case .success(let sale): accepted.append((order, sale))
            case .failure(let error): results[order.reference] = .failure(error)
            }
        }
        guard !accepted.isEmpty else { return results }

        // One create for the batch. Tryton creates all or nothing: when it refuses the batch for
        // one order's sake, each order is sent alone to find which (only on that failure path).
        var created: [(reference: String, id: Int)] = []
        do throws(ErpError) {
            let ids = try await call("model.sale.sale.create", [accepted.map(\.sale), context()])
            guard let ids = ids as? [Any], ids.count == accepted.count else {
                throw ErpError.permanent(code: "protocol", message: "sale.sale.create answered \(ids) for \(accepted.count) sales")
            }
            created = zip(accepted, ids).map { ($0.order.reference, Self.int($1) ?? 0) }
        } catch let error where !error.isRetryable {
            if accepted.count == 1 { results[accepted[0].order.reference] = .failure(error) }
            for (order, sale) in accepted where accepted.count > 1 {
                do throws(ErpError) {
                    let ids = try await call("model.sale.sale.create", [[sale], context()])
                    if let id = (ids as? [Any])?.first.flatMap(Self.int) { created.append((order.reference, id)) }
                } catch let error where !error.isRetryable {
                    results[order.reference] = .failure(error)
                }
            }
        }
        guard !created.isEmpty else { return results }
        let ids = created.map(\.id)
        if configuration.confirm {
            // Follow-up failures leave the sale a draft/quotation: read back and reported as `.draft`.
            let quoted = (try? await step("quote", ids))?.done ?? []
            if !quoted.isEmpty { _ = try? await step("confirm", quoted) }
        }
        let documents: [ErpDocument]
        do {
            documents = try await self.documents(from: searchRead("sale.sale", [Self.clause("id", "in", ids)], Self.saleFields))
        } catch {
            // Created, but not read back (Tryton went away): the caller confirms drafts later.
            documents = created.map { ErpDocument(reference: $0.reference, id: String($0.id), state: .draft) }
        }
        let byID = Dictionary(documents.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for (reference, id) in created {
            results[reference] = .success(byID[String(id)] ?? ErpDocument(reference: reference, id: String(id), state: .draft))
        }
        return results
    }

    public func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !documents.isEmpty else { return [:] }
        let rows = try await read(documents)
        var drafts: [Int] = [], quotations: [Int] = [], unprocessed: [Int] = []
        var failures: [Int: ErpError] = [:]
        for row in rows {
            guard let id = Self.int(row["id"]) else { continue }
            switch row["state"] as? String {
            case "draft": drafts.append(id)
            case "quotation": quotations.append(id)
            case "confirmed": unprocessed.append(id)  // confirmed, but `process` failed: run it again
            default: break
            }
        }
        do throws(ErpError) {
            let quoted = try await step("quote", drafts)
            quotations += quoted.done
            failures.merge(quoted.refused) { a, _ in a }
        } catch { for id in drafts { failures[id] = error } }
        do throws(ErpError) { failures.merge(try await step("confirm", quotations).refused) { a, _ in a } } catch { for id in quotations { failures[id] = error } }
        if !unprocessed.isEmpty { _ = try? await call("model.sale.sale.process", [unprocessed, context()]) }
        return try await readBack(documents, failures: failures)
    }

    public func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !documents.isEmpty else { return [:] }
        let rows = try await read(documents)
        var toCancel: [Int] = [], toDraft: [Int] = [], processing: [Int: [Int]] = [:]
        for row in rows {
            guard let id = Self.int(row["id"]) else { continue }
            switch row["state"] as? String {
            case "draft", "quotation": toCancel.append(id)
            case "confirmed": toDraft.append(id)
            case "processing", "done": processing[id] = Self.ints(row["shipments"])
            default: break
            }
        }
        var failures: [Int: ErpError] = [:]
        do throws(ErpError) {
            let drafted = try await step("draft", toDraft)
            toCancel += drafted.done
            failures.merge(drafted.refused) { a, _ in a }
        } catch { for id in toDraft { failures[id] = error } }
        do throws(ErpError) { failures.merge(try await step("cancel", toCancel).refused) { a, _ in a } } catch { for id in toCancel { failures[id] = error } }
        if !processing.isEmpty {
            // Tryton 8.2 has no processing → cancelled transition: cancel the customer shipments
            // not yet done (their moves are cancelled, so the forecast returns), then ignore the
            // cancelled moves with the sale's shipment-exception wizard, as a user would.
            let shipmentIDs = Array(Set(processing.values.joined())).sorted()
            var openShipments: [Int] = []
            if !shipmentIDs.isEmpty {
                let shipments = try await call("model.stock.shipment.out.read", [shipmentIDs, ["state"], context()]) as? [[String: Any]] ?? []
                openShipments = shipments.compactMap { s in
                    let st = s["state"] as? String
                    return st == "done" || st == "cancelled" ? nil : Self.int(s["id"])
                }
            }
            if !openShipments.isEmpty {
                do throws(ErpError) { _ = try await call("model.stock.shipment.out.cancel", [openShipments, context()]) } catch let error where !error.isRetryable {
                    for id in processing.keys { failures[id] = error }
                }
            }
            let moveRows = try await searchRead("stock.move", [Self.clause("origin.sale", "in", Array(processing.keys), "sale.line"), Self.clause("state", "=", "cancelled")], ["origin"])
            var cancelledMoves: [Int: [Int]] = [:]
            for move in moveRows {
                if let origin = move["origin"] as? String, let lineID = Int(origin.split(separator: ",").last ?? ""), let moveID = Self.int(move["id"]) {
                    cancelledMoves[lineID, default: []].append(moveID)
                }
            }
            let saleLines = try await searchRead("sale.line", [Self.clause("sale", "in", Array(processing.keys))], ["sale"])
            var movesBySale: [Int: [Int]] = [:]
            for line in saleLines {
                if let lineID = Self.int(line["id"]), let sale = Self.int(line["sale"]) { movesBySale[sale, default: []] += cancelledMoves[lineID] ?? [] }
            }
            for (sale, moves) in movesBySale where failures[sale] == nil && !moves.isEmpty {
                do throws(ErpError) { try await ignoreCancelledMoves(sale: sale, moves: moves) } catch let error where !error.isRetryable { failures[sale] = error }
            }
        }
        return try await readBack(documents, failures: failures)
    }

    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        let warehouseRows: [[String: Any]]
        if configuration.warehouses.isEmpty {
            warehouseRows = try await searchRead("stock.location", [Self.clause("type", "=", "warehouse")], ["code"])
        } else {
            warehouseRows = try await searchRead("stock.location", [Self.clause("type", "=", "warehouse"), Self.clause("code", "in", Array(Set(configuration.warehouses.values)))], ["code"])
        }
        let liveSyncCode = Dictionary(configuration.warehouses.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
        let productDomain: [Any] = materials.isEmpty ? [Self.clause("type", "=", "goods")] : [Self.clause("code", "in", materials)]
        var levels: [ErpStockLevel] = []
        for warehouse in warehouseRows {
            guard let whID = Self.int(warehouse["id"]), let whCode = warehouse["code"] as? String else { continue }
            var ctx = context()
            ctx["locations"] = [whID]
            guard let products = try await call("model.product.product.search_read", [productDomain, 0, NSNull(), NSNull(), ["code", "quantity", "forecast_quantity"], ctx]) as? [[String: Any]] else { continue }
            let productIDs = products.compactMap { Self.int($0["id"]) }
            var recorded: [Int: Double] = [:]
            if !productIDs.isEmpty {
                // LiveSync's sales' moves leaving this warehouse, not cancelled (done ones too: they
                // left `quantity`; pending ones are in `forecast_quantity`).
                let moves = try await searchRead("stock.move", [
                    Self.clause("origin.sale.description", "like", "\(configuration.marker) %", "sale.line"),
                    Self.clause("state", "!=", "cancelled"),
                    Self.clause("product", "in", productIDs),
                    Self.clause("from_location", "child_of", [whID], "parent"),
                    Self.clause("to_location.type", "=", "customer"),
                ], ["product", "quantity"])
                for move in moves { if let p = Self.int(move["product"]) { recorded[p, default: 0] += Self.double(move["quantity"]) ?? 0 } }
            }
            for product in products {
                guard let code = product["code"] as? String, let id = Self.int(product["id"]) else { continue }
                levels.append(ErpStockLevel(material: code, warehouse: liveSyncCode[whCode] ?? whCode,
                                            onHand: Int64((Self.double(product["quantity"]) ?? 0).rounded()),
                                            available: Int64((Self.double(product["forecast_quantity"]) ?? 0).rounded()),
                                            recordedByLiveSync: Int64((recorded[id] ?? 0).rounded())))
            }
        }
        return levels
    }

    /// The current session token (tests log it out behind the adapter's back).
    var sessionToken: String? { state.token }

    // MARK: Sales

    static let saleFields = ["reference", "number", "state", "shipment_state", "moves", "shipments"]

    private func warehouseCode(_ liveSync: String) -> String { configuration.warehouses[liveSync] ?? liveSync }

    private func saleValues(_ order: ErpSaleOrder, _ codes: TrytonCodes) -> Result<[String: Any], ErpError> {
        guard let party = codes.parties[order.customer] else {
            return .failure(.permanent(code: "unknown_customer", message: "Tryton has no party with code \(order.customer)"))
        }
        guard let address = party.address else {
            return .failure(.permanent(code: "customer_without_address", message: "Tryton party \(order.customer) has no address (sales need an invoice and shipment address)"))
        }
        let wh = warehouseCode(order.warehouse)
        guard let warehouse = codes.warehouses[wh] else {
            return .failure(.permanent(code: "unknown_warehouse", message: "Tryton has no warehouse with code \(wh)"))
        }
        guard let currency = codes.currencies[order.currency] else {
            return .failure(.permanent(code: "unknown_currency", message: "Tryton has no currency \(order.currency)"))
        }
        let unknown = order.lines.map(\.material).filter { codes.products[$0] == nil }
        if !unknown.isEmpty {
            return .failure(.permanent(code: "unknown_material", message: "Tryton has no product with code \(Array(Set(unknown)).sorted().joined(separator: ", "))"))
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = configuration.timeZone
        let day = calendar.dateComponents([.year, .month, .day], from: Date(timeIntervalSince1970: Double(order.paidAtUs) / 1_000_000))
        let lines: [[String: Any]] = order.lines.sorted { $0.lineNo < $1.lineNo }.map { line in
            let product = codes.products[line.material]!
            return [
                "type": "line",
                "sequence": line.lineNo,
                "product": product.id,
                "unit": product.unit,
                "quantity": Double(line.quantity),
                "unit_price": ["__class__": "Decimal", "decimal": ErpAmount.yuan(line.unitPriceFen)],
            ]
        }
        var sale: [String: Any] = [
            "party": party.id,
            "invoice_address": address,
            "shipment_address": address,
            "warehouse": warehouse,
            "currency": currency,
            "reference": order.reference,
            "description": "\(configuration.marker) \(order.platform) \(order.shopID)",
            "sale_date": ["__class__": "date", "year": day.year ?? 1970, "month": day.month ?? 1, "day": day.day ?? 1] as [String: Any],
            "invoice_method": "manual",
            "shipment_method": "order",
            "lines": [["create", lines] as [Any]],
        ]
        if let company = context()["company"] { sale["company"] = company }
        var comment = "\(order.platform) order \(order.platformOrderID), shop \(order.shopID), total \(ErpAmount.yuan(order.totalFen)) \(order.currency)"
        if order.discountFen != 0 { comment += ", discount \(ErpAmount.yuan(order.discountFen))" }
        if !order.remark.isEmpty { comment += "\n\(order.remark)" }
        sale["comment"] = comment
        return .success(sale)
    }

    /// Runs a sale workflow button on `ids` in one call; on a refusal of the whole call, one call
    /// per sale, so one bad sale does not hold back the others. Returns the ids it succeeded for.
    private func step(_ button: String, _ ids: [Int]) async throws(ErpError) -> (done: [Int], refused: [Int: ErpError]) {
        guard !ids.isEmpty else { return ([], [:]) }
        do throws(ErpError) {
            _ = try await call("model.sale.sale.\(button)", [ids, context()])
            return (ids, [:])
        } catch let error where !error.isRetryable {
            if ids.count == 1 { return ([], [ids[0]: error]) }
            var done: [Int] = [], refused: [Int: ErpError] = [:]
            for id in ids {
                do throws(ErpError) {
                    _ = try await call("model.sale.sale.\(button)", [[id], context()])
                    done.append(id)
                } catch let error where !error.isRetryable {
                    refused[id] = error
                }
            }
            return (done, refused)
        }
    }

    private func ignoreCancelledMoves(sale: Int, moves: [Int]) async throws(ErpError) {
        let wizard = "wizard.sale.handle.shipment.exception"
        var ctx = context()
        ctx["active_id"] = sale
        ctx["active_ids"] = [sale]
        ctx["active_model"] = "sale.sale"
        guard let session = (try await call("\(wizard).create", [context()]) as? [Any])?.first.flatMap(Self.int) else {
            throw .permanent(code: "protocol", message: "\(wizard).create answered no session")
        }
        let answer: [String: Any] = ["domain_moves": moves, "ignore_moves": moves, "recreate_moves": [Int]()]
        let executed: ErpError?
        do throws(ErpError) { _ = try await call("\(wizard).execute", [session, ["ask": answer] as [String: Any], "handle", ctx]); executed = nil } catch { executed = error }
        _ = try? await call("\(wizard).delete", [session, context()])
        if let executed { throw executed }
    }

    private func read(_ documents: [ErpDocument]) async throws(ErpError) -> [[String: Any]] {
        let ids = documents.compactMap { Int($0.id) }
        return try await searchRead("sale.sale", [Self.clause("id", "in", ids)], Self.saleFields)
    }

    private func readBack(_ documents: [ErpDocument], failures: [Int: ErpError]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        let fresh = try await self.documents(from: read(documents))
        let byID = Dictionary(fresh.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        for document in documents {
            if let id = Int(document.id), let failure = failures[id] {
                out[document.reference] = .failure(failure)
            } else if let now = byID[document.id] {
                out[document.reference] = .success(now)
            } else {
                out[document.reference] = .failure(.permanent(code: "not_found", message: "Tryton has no sale \(document.id) (reference \(document.reference))"))
            }
        }
        return out
    }

    /// Sale rows → documents. A processing or done sale whose stock moves are all cancelled (see
    /// `cancel`) is `.cancelled`.
    private func documents(from rows: [[String: Any]]) async throws(ErpError) -> [ErpDocument] {
        let moveIDs = rows.filter { ["processing", "done"].contains($0["state"] as? String ?? "") }.flatMap { Self.ints($0["moves"]) }
        var moveState: [Int: String] = [:]
        if !moveIDs.isEmpty, let moves = try await call("model.stock.move.read", [moveIDs, ["state"], context()]) as? [[String: Any]] {
            for move in moves { if let id = Self.int(move["id"]) { moveState[id] = move["state"] as? String } }
        }
        return rows.compactMap { row in
            guard let id = Self.int(row["id"]) else { return nil }
            let moves = Self.ints(row["moves"])
            let allMovesCancelled = !moves.isEmpty && moves.allSatisfy { moveState[$0] == "cancelled" }
            let state: ErpDocumentState
            switch row["state"] as? String ?? "" {
            // Confirmed but not processed (its `process` failed or never ran after the confirm's
            // commit, e.g. on a restart or a locked database): no shipment, no moves, so the ERP
            // does not plan the goods out yet. Reported as a draft, so the writer confirms it
            // again (`confirm` runs `process`) until it is.
            case "draft", "quotation", "confirmed": state = .draft
            case "cancelled": state = .cancelled
            case "processing" where allMovesCancelled, "done" where allMovesCancelled: state = .cancelled
            case "done": state = .done
            default: state = .confirmed
            }
            return ErpDocument(reference: row["reference"] as? String ?? "", id: String(id), number: row["number"] as? String ?? "", state: state)
        }
    }

    // MARK: Codes

    /// Resolves customer, material, warehouse and currency codes to Tryton ids, one `search_read`
    /// per kind for the codes not cached yet.
    private func resolve(customers: Set<String>, materials: Set<String>, warehouses: Set<String>, currencies: Set<String>) async throws(ErpError) -> TrytonCodes {
        var codes = state.codes
        let newParties = customers.subtracting(codes.parties.keys)
        if !newParties.isEmpty {
            for row in try await searchRead("party.party", [Self.clause("code", "in", Array(newParties))], ["code", "addresses"]) {
                if let code = row["code"] as? String, let id = Self.int(row["id"]) { codes.parties[code] = .init(id: id, address: Self.ints(row["addresses"]).first) }
            }
        }
        let newProducts = materials.subtracting(codes.products.keys)
        if !newProducts.isEmpty {
            for row in try await searchRead("product.product", [Self.clause("code", "in", Array(newProducts))], ["code", "default_uom"]) {
                if let code = row["code"] as? String, let id = Self.int(row["id"]), let unit = Self.int(row["default_uom"]) { codes.products[code] = .init(id: id, unit: unit) }
            }
        }
        let newWarehouses = warehouses.subtracting(codes.warehouses.keys)
        if !newWarehouses.isEmpty {
            for row in try await searchRead("stock.location", [Self.clause("type", "=", "warehouse"), Self.clause("code", "in", Array(newWarehouses))], ["code"]) {
                if let code = row["code"] as? String, let id = Self.int(row["id"]) { codes.warehouses[code] = id }
            }
        }
        let newCurrencies = currencies.subtracting(codes.currencies.keys)
        if !newCurrencies.isEmpty {
            for row in try await searchRead("currency.currency", [Self.clause("code", "in", Array(newCurrencies))], ["code"]) {
                if let code = row["code"] as? String, let id = Self.int(row["id"]) { codes.currencies[code] = id }
            }
        }
        state.remember(codes)
        return codes
    }

    private func companyID() async throws(ErpError) -> Int? {
        if let id = configuration.companyID { return id }
        let preferences = try await call("model.res.user.get_preferences", [true, [String: Any]()], withContext: false) as? [String: Any]
        return Self.int(preferences?["company"])
    }

    private func context() -> [String: Any] {
        var ctx: [String: Any] = [:]
        if let company = configuration.companyID ?? state.cachedCompany.withLock({ $0 }) { ctx["company"] = company }
        return ctx
    }

    /// `model.<model>.search_read` with the company context: for audits of what Tryton holds
    /// (the demo compares every sale with LiveSync's book).
    public func searchRead(model: String, domain: [Any], fields: [String]) async throws(ErpError) -> [[String: Any]] {
        try await searchRead(model, domain, fields)
    }

    private func searchRead(_ model: String, _ domain: [Any], _ fields: [String]) async throws(ErpError) -> [[String: Any]] {
        let answer = try await call("model.\(model).search_read", [domain, 0, NSNull(), NSNull(), fields, context()])
        guard let rows = answer as? [[String: Any]] else {
            throw .permanent(code: "protocol", message: "\(model).search_read answered \(String(describing: answer).prefix(200))")
        }
        return rows
    }

    // MARK: JSON-RPC

    /// One JSON-RPC call with the session; an HTTP 401 (session expired or unknown, e.g. after a
    /// Tryton restart with a new session table, or `session.timeout`) logs in again once and
    /// repeats the call.
    func call(_ method: String, _ params: [Any], withContext: Bool = true) async throws(ErpError) -> Any {
        if withContext, configuration.companyID == nil, state.cachedCompany.withLock({ $0 }) == nil {
            _ = try await resolveCompanyOnce()
        }
        var params = params
        if withContext, let company = configuration.companyID ?? state.cachedCompany.withLock({ $0 }),
           var ctx = params.last as? [String: Any], ctx["company"] == nil {
            ctx["company"] = company
            params[params.count - 1] = ctx
        }
        var token = try await session(replacing: nil)
        for attempt in 0..<2 {
            let id = state.nextID()
            let (response, body) = try await post(["method": method, "params": params, "id": id], authorization: "Session \(token)")
            if response.status == 401 {
                if attempt == 0 { token = try await session(replacing: token); continue }
                throw .retryable(code: "session_expired", message: "Tryton refused the session again after a fresh login (HTTP 401) on \(method)")
            }
            return try Self.result(of: method, response: response, body: body)
        }
        throw .retryable(code: "session_expired", message: "Tryton refused the session (HTTP 401) on \(method)")
    }

    private func resolveCompanyOnce() async throws(ErpError) -> Int? {
        let company = try await companyID()
        state.cachedCompany.withLock { $0 = company }
        return company
    }

    private func post(_ json: [String: Any], authorization: String?) async throws(ErpError) -> (ErpHTTP.Response, Any?) {
        let body: Data
        do { body = try JSONSerialization.data(withJSONObject: json) } catch {
            throw .permanent(code: "encoding", message: "request is not valid JSON: \(error)")
        }
        var headers = [("Content-Type", "application/json")]
        if let authorization { headers.append(("Authorization", authorization)) }
        let response = try await http.send(url: configuration.endpoint, headers: headers, body: body)
        let parsed = response.body.isEmpty ? nil : try? JSONSerialization.jsonObject(with: response.body, options: [.fragmentsAllowed])
        return (response, parsed)
    }

    /// The session token (`base64(login:user_id:session)`), logging in when there is none or
    /// when `replacing` is the one Tryton just refused.
    private func session(replacing stale: String?) async throws(ErpError) -> String {
        if let token = state.token, token != stale || stale == nil { return token }
        let (response, body) = try await post(["method": "common.db.login", "params": [configuration.login, ["password": configuration.password]], "id": 0], authorization: nil)
        if response.status == 401 || response.status == 403 {
            throw .permanent(code: "login_failed", message: "Tryton refused the login \(configuration.login) on database \(configuration.database) (HTTP \(response.status))")
        }
        if response.status == 404 {
            throw .permanent(code: "unknown_database", message: "Tryton has no database \(configuration.database) (HTTP 404 on login)")
        }
        let result = try Self.result(of: "common.db.login", response: response, body: body)
        guard let list = result as? [Any], list.count >= 2, let user = Self.int(list[0]), let key = list[1] as? String else {
            throw .permanent(code: "protocol", message: "common.db.login answered \(String(describing: result).prefix(200))")
        }
        let token = Data("\(configuration.login):\(user):\(key)".utf8).base64EncodedString()
        state.setToken(token)
        return token
    }

    /// The `result` of a JSON-RPC answer, or its `error` classified.
    static func result(of method: String, response: ErpHTTP.Response, body: Any?) throws(ErpError) -> Any {
        guard let object = body as? [String: Any] else {
            let text = String(decoding: response.body.prefix(300), as: UTF8.self)
            if response.status == 429 || response.status == 423 || response.status == 409 {
                throw .retryable(code: "http_\(response.status)", message: "Tryton answered HTTP \(response.status) to \(method): \(text)")
            }
            throw .permanent(code: "http_\(response.status)", message: "Tryton answered HTTP \(response.status) to \(method): \(text)")
        }
        if let error = object["error"], !(error is NSNull) { throw classify(error, method: method) }
        return object["result"] ?? NSNull()
    }

    /// Tryton's JSON-RPC errors (`protocols/jsonrpc.py`: `response['error'] = exception.args`):
    /// `["UserError", [message, description, domain]]`, `["UserWarning", [name, message, description]]`,
    /// `["ConcurrencyException", message]`, `["LoginException", [name, message, type]]`, or, for any
    /// other exception, `[str(exception), traceback]`.
    static func classify(_ error: Any, method: String) -> ErpError {
        guard let list = error as? [Any], let name = list.first as? String else {
            return .permanent(code: "tryton", message: "\(method): \(error)")
        }
        let args = list.count > 1 ? list[1] : NSNull()
        switch name {
        case "UserError":
            let parts = args as? [Any] ?? []
            let message = parts.first as? String ?? "\(args)"
            let description = parts.count > 1 ? (parts[1] as? String ?? "") : ""
            return .permanent(code: "UserError", message: description.isEmpty ? message : "\(message) \(description)")
        case "UserWarning":
            let parts = args as? [Any] ?? []
            return .permanent(code: "UserWarning", message: parts.count > 1 ? "\(parts[1])" : "\(args)")
        case "ConcurrencyException":
            return .retryable(code: "ConcurrencyException", message: "\(args)")
        case "LoginException":
            return .retryable(code: "LoginException", message: "\(args)")
        default:
            let text = "\(name)"
            let lowered = text.lowercased()
            if lowered.contains("database is locked") || lowered.contains("could not obtain lock") || lowered.contains("timeout") {
                return .retryable(code: "database_locked", message: "\(method): \(text)")
            }
            return .permanent(code: "server_error", message: "\(method): \(text)")
        }
    }

    static func int(_ value: Any?) -> Int? {
        switch value {
        case let v as Int: v
        case let v as NSNumber: v.intValue
        case let v as Double: Int(v)
        default: nil
        }
    }

    static func double(_ value: Any?) -> Double? {
        switch value {
        case let v as Double: v
        case let v as NSNumber: v.doubleValue
        case let v as Int: Double(v)
        case let v as [String: Any]: (v["decimal"] as? String).flatMap(Double.init)
        default: nil
        }
    }

    static func ints(_ value: Any?) -> [Int] { (value as? [Any] ?? []).compactMap(int) }

    /// One domain clause, `["field", "operator", value]` (or with a fourth element, the target model of a Reference).
    static func clause(_ parts: Any...) -> [Any] { parts }
}

/// Ids the adapter found for codes; cached per adapter (codes are master data that rarely change,
/// and an unknown code is looked up again on the next batch, so adding it in Tryton fixes it).
struct TrytonCodes: Sendable {
    struct Party: Sendable { var id: Int; var address: Int? }
    struct Product: Sendable { var id: Int; var unit: Int }
    var parties: [String: Party] = [:]
    var products: [String: Product] = [:]
    var warehouses: [String: Int] = [:]
    var currencies: [String: Int] = [:]
}

/// The adapter's session and caches, shared by its copies.
final class TrytonState: Sendable {
    private let storage = Mutex<Storage>(Storage())
    let cachedCompany = Mutex<Int?>(nil)
    struct Storage: Sendable {
        var token: String?
        var codes = TrytonCodes()
        var id = 0
    }
    var token: String? { storage.withLock { $0.token } }
    var codes: TrytonCodes { storage.withLock { $0.codes } }
    func setToken(_ token: String?) { storage.withLock { $0.token = token } }
    func remember(_ codes: TrytonCodes) {
        storage.withLock { s in
            s.codes.parties.merge(codes.parties) { _, new in new }
            s.codes.products.merge(codes.products) { _, new in new }
            s.codes.warehouses.merge(codes.warehouses) { _, new in new }
            s.codes.currencies.merge(codes.currencies) { _, new in new }
        }
    }
    func nextID() -> Int { storage.withLock { $0.id += 1; return $0.id } }
}

