import ErpAdapters
import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// A local Odoo external API (`POST /jsonrpc`, services `common` and `object`) built from Odoo's
/// "External API" documentation and `odoo/http.py`: `authenticate` answers the uid or `false`,
/// every `execute_kw` re-checks db, uid and password (AccessDenied otherwise), errors come as
/// `{"code": 200, "message": "Odoo Server Error", "data": {"name", "message", "arguments", "context", "debug"}}`.
/// Models: `sale.order` (create with a list of vals in one transaction, search_read, read,
/// action_confirm, action_cancel), `product.product`, `res.partner`, `stock.warehouse` and
/// `stock.quant` (search_read). Listens on 127.0.0.1 only.
///
/// Endpoint names for `calls(_:)`: `authenticate`, `version`, and `<model>.<method>` (`sale.order.create`).
public final class FakeOdoo: FakeErp, Sendable {
    public let kit = FakeErpKit()
    public let database: String
    public let login: String

    struct SaleOrder {
        var id: Int
        var name: String
        var ref: String
        var partner: Int
        var warehouse: Int
        var state: String
        var lines: [(product: Int, qty: Double, price: Double)]
        var locked = false
    }
    struct Store {
        var password: String
        var uid = 2
        var products: [Int: String] = [:]  // id → default_code
        var partners: [Int: String] = [:]  // id → ref
        var warehouses: [Int: String] = [:]  // id → code
        var onHand: [Int: [Int: Double]] = [:]  // warehouse → product → quantity
        var orders: [Int: SaleOrder] = [:]
        var nextID = 1
        var refusals: [String: String] = [:]  // client_order_ref → ValidationError message
    }
    let store: Mutex<Store>
    /// execute_kw calls refused for bad credentials.
    public let refused = Atomic<Int>(0)

    public init(database: String = "livesync", login: String = "livesync@example.com", password: String = "dev-odoo-api-key") {
        self.database = database
        self.login = login
        self.store = Mutex(Store(password: password))
    }

    // MARK: Knobs

    func newID(_ s: inout Store) -> Int { defer { s.nextID += 1 }; return s.nextID }

    @discardableResult public func addProduct(_ code: String) -> Int { store.withLock { s in let id = newID(&s); s.products[id] = code; return id } }
    @discardableResult public func addPartner(_ ref: String) -> Int { store.withLock { s in let id = newID(&s); s.partners[id] = ref; return id } }
    @discardableResult public func addWarehouse(_ code: String) -> Int { store.withLock { s in let id = newID(&s); s.warehouses[id] = code; return id } }
    /// Puts `quantity` of `product` on hand in the warehouse's stock location.
    public func setOnHand(_ product: String, warehouse: String, _ quantity: Double) {
        store.withLock { s in
            guard let p = s.products.first(where: { $0.value == product })?.key, let w = s.warehouses.first(where: { $0.value == warehouse })?.key else { return }
            s.onHand[w, default: [:]][p] = quantity
        }
    }
    /// `sale.order` create answers ValidationError `message` for a batch holding this reference
    /// (a merchant's constraint, say); the whole transaction rolls back, as in Odoo.
    public func refuse(reference: String, message: String) { store.withLock { $0.refusals[reference] = message } }
    /// The order can no longer be cancelled (UserError), as a locked/done order.
    public func lock(reference: String) { store.withLock { s in for (id, o) in s.orders where o.ref == reference { s.orders[id]?.locked = true } } }
    /// The user's uid changes (database restored, user recreated): `execute_kw` with the old uid is AccessDenied.
    public func renumberUser() { store.withLock { $0.uid += 100 } }
    /// The API key is revoked: every call is AccessDenied and `authenticate` answers false.
    public func revokeKey() { store.withLock { $0.password = "revoked-" + UUID().uuidString } }

    public struct Document: Sendable, Equatable {
        public var id: Int
        public var name: String
        public var reference: String
        public var state: String
    }
    public var saleOrders: [Document] {
        store.withLock { $0.orders.values.sorted { $0.id < $1.id }.map { Document(id: $0.id, name: $0.name, reference: $0.ref, state: $0.state) } }
    }
    /// `client_order_ref` values held by more than one sale order (tests assert none).
    public var duplicateReferences: [String] {
        store.withLock { Dictionary(grouping: $0.orders.values, by: \.ref).filter { $0.value.count > 1 }.keys.sorted() }
    }

    // MARK: JSON-RPC

    struct Fault: Error {
        var name: String
        var message: String
    }

    public func routes(_ router: Router<BasicRequestContext>) {
        router.post("/jsonrpc") { request, _ in
            let body = try await request.body.collect(upTo: 64 << 20)
            await self.kit.pause()
            guard let call = (try? JSONSerialization.jsonObject(with: Data(buffer: body))) as? [String: Any],
                  call["jsonrpc"] as? String == "2.0", call["method"] as? String == "call",
                  let params = call["params"] as? [String: Any], let service = params["service"] as? String,
                  let method = params["method"] as? String, let args = params["args"] as? [Any] else {
                return FakeErpKit.json(["jsonrpc": "2.0", "id": NSNull(), "error": ["code": -32600, "message": "Invalid Request"]], status: .badRequest)
            }
            let id = call["id"] ?? NSNull()
            let endpoint = service == "object" && args.count > 4 ? "\(args[3]).\(args[4])" : method
            self.kit.count(endpoint)
            switch self.kit.nextFailure() {
            case .throttle?: return FakeErpKit.text("Too Many Requests", status: .tooManyRequests)
            case .http(let status)?: return FakeErpKit.text("Bad Gateway", status: .init(code: status))
            case .serializationFailure?:
                return self.error(id, Fault(name: "psycopg2.errors.SerializationFailure", message: "could not serialize access due to concurrent update"))
            case .refuse(let code, let message)?: return self.error(id, Fault(name: code, message: message))
            case nil: break
            }
            do {
                let result = try self.dispatch(service, method, args)
                return FakeErpKit.json(["jsonrpc": "2.0", "id": id, "result": result])
            } catch let fault as Fault {
                return self.error(id, fault)
            }
        }
    }

    func dispatch(_ service: String, _ method: String, _ args: [Any]) throws -> Any {
        switch (service, method) {
        case ("common", "version"): return ["server_version": "17.0", "server_version_info": [17, 0, 0, "final", 0, ""] as [Any], "protocol_version": 1] as [String: Any]
        case ("common", "authenticate"): return try authenticate(args)
        case ("object", "execute_kw"): return try executeKW(args)
        default: throw Fault(name: "builtins.KeyError", message: "'\(service).\(method)'")
        }
    }

    func error(_ id: Any, _ fault: Fault) -> Response {
        FakeErpKit.json(["jsonrpc": "2.0", "id": id, "error": [
            "code": 200, "message": "Odoo Server Error",
            "data": ["name": fault.name, "message": fault.message, "arguments": [fault.message], "context": [String: Any](),
                     "debug": "Traceback (most recent call last):\n  (fake Odoo)\n\(fault.name): \(fault.message)"] as [String: Any],
        ] as [String: Any]])
    }

    func authenticate(_ args: [Any]) throws -> Any {
        guard args.count == 4, let db = args[0] as? String, let login = args[1] as? String, let password = args[2] as? String else {
            throw Fault(name: "builtins.TypeError", message: "authenticate() takes 4 arguments: db, login, password, user_agent_env")
        }
        guard db == database else { throw Fault(name: "psycopg2.OperationalError", message: "connection to server failed: FATAL:  database \"\(db)\" does not exist") }
        return store.withLock { s -> Any in login == self.login && password == s.password ? s.uid : false }
    }

    func executeKW(_ args: [Any]) throws -> Any {
        guard args.count >= 6, let db = args[0] as? String, let model = args[3] as? String, let method = args[4] as? String, let positional = args[5] as? [Any] else {
            throw Fault(name: "builtins.TypeError", message: "execute_kw() takes db, uid, password, model, method, args[, kwargs]")
        }
        let kwargs = args.count > 6 ? args[6] as? [String: Any] ?? [:] : [:]
        guard db == database else { throw Fault(name: "psycopg2.OperationalError", message: "database \"\(db)\" does not exist") }
        let authorised = store.withLock { s in (args[1] as? Int) == s.uid && (args[2] as? String) == s.password }
        guard authorised else {
            refused.add(1, ordering: .relaxed)
            throw Fault(name: "odoo.exceptions.AccessDenied", message: "Access Denied")
        }
        switch (model, method) {
        case ("sale.order", "create"): return try createOrders(positional)
        case ("sale.order", "action_confirm"): return try act(positional, confirm: true)
        case ("sale.order", "action_cancel"): return try act(positional, confirm: false)
        case (_, "search_read"), (_, "read"):
            guard ["sale.order", "product.product", "res.partner", "stock.warehouse", "stock.quant"].contains(model) else {
                throw Fault(name: "builtins.KeyError", message: "'\(model)'")
            }
            let readIDs: [Any] = ["id", "in", positional.first as? [Int] ?? []]
            let domain: [Any] = method == "read" ? [readIDs] : positional.first as? [Any] ?? kwargs["domain"] as? [Any] ?? []
            let fields = (method == "read" && positional.count > 1 ? positional[1] : kwargs["fields"]) as? [String] ?? []
            return try searchRead(model, domain: domain, fields: fields)
        default:
            throw Fault(name: "builtins.AttributeError", message: "type object '\(model)' has no attribute '\(method)'")
        }
    }

    // MARK: Models

    func createOrders(_ positional: [Any]) throws -> Any {
        let single = positional.first as? [String: Any]
        guard let list = single.map({ [$0] }) ?? positional.first as? [[String: Any]] else {
            throw Fault(name: "builtins.TypeError", message: "create() missing 1 required positional argument: 'vals_list'")
        }
        return try store.withLock { s -> Any in
            // One transaction: validate every vals first, write only when all pass.
            var pending: [SaleOrder] = []
            for v in list {
                guard let partner = v["partner_id"] as? Int else {
                    throw Fault(name: "odoo.exceptions.ValidationError", message: "The operation cannot be completed:\n- Create/update: a mandatory field is not set.\n- Delete: another model requires the record being deleted.\n\nModel: Sales Order (sale.order), Field: Customer (partner_id)")
                }
                guard s.partners[partner] != nil else {
                    throw Fault(name: "odoo.exceptions.MissingError", message: "Record does not exist or has been deleted.\n(Record: res.partner(\(partner),), User: \(s.uid))")
                }
                let warehouse = v["warehouse_id"] as? Int ?? s.warehouses.keys.min() ?? 0
                if v["warehouse_id"] != nil, s.warehouses[warehouse] == nil {
                    throw Fault(name: "odoo.exceptions.MissingError", message: "Record does not exist or has been deleted.\n(Record: stock.warehouse(\(warehouse),), User: \(s.uid))")
                }
                let ref = v["client_order_ref"] as? String ?? ""
                if let message = s.refusals[ref] { throw Fault(name: "odoo.exceptions.ValidationError", message: message) }
                var lines: [(product: Int, qty: Double, price: Double)] = []
                for case let command as [Any] in v["order_line"] as? [Any] ?? [] {
                    guard command.count == 3, command[0] as? Int == 0, let l = command[2] as? [String: Any] else {
                        throw Fault(name: "builtins.ValueError", message: "order_line expects (0, 0, values) commands")
                    }
                    guard let product = l["product_id"] as? Int else {
                        throw Fault(name: "odoo.exceptions.ValidationError", message: "Missing required fields on accountable sale order line.")
                    }
                    guard s.products[product] != nil else {
                        throw Fault(name: "odoo.exceptions.MissingError", message: "Record does not exist or has been deleted.\n(Record: product.product(\(product),), User: \(s.uid))")
                    }
                    let qty = (l["product_uom_qty"] as? Double) ?? Double(l["product_uom_qty"] as? Int ?? 1)
                    let price = (l["price_unit"] as? Double) ?? Double(l["price_unit"] as? Int ?? 0)
                    lines.append((product, qty, price))
                }
                pending.append(SaleOrder(id: 0, name: "", ref: ref, partner: partner, warehouse: warehouse, state: "draft", lines: lines))
            }
            var ids: [Int] = []
            for var o in pending {
                o.id = newID(&s)
                o.name = String(format: "S%05d", s.orders.count + 1)
                s.orders[o.id] = o
                ids.append(o.id)
            }
            return single != nil ? ids[0] : ids
        }
    }

    func act(_ positional: [Any], confirm: Bool) throws -> Any {
        let ids = positional.first as? [Int] ?? (positional.first as? Int).map { [$0] } ?? []
        return try store.withLock { s -> Any in
            for id in ids {
                guard let o = s.orders[id] else {
                    throw Fault(name: "odoo.exceptions.MissingError", message: "Record does not exist or has been deleted.\n(Record: sale.order(\(id),), User: \(s.uid))")
                }
                if confirm, !["draft", "sent"].contains(o.state) {
                    throw Fault(name: "odoo.exceptions.UserError", message: "The following orders are not in a state requiring confirmation: \(o.name)")
                }
                if !confirm, o.locked { throw Fault(name: "odoo.exceptions.UserError", message: "You cannot cancel a locked order. Please unlock it first.") }
            }
            for id in ids { s.orders[id]?.state = confirm ? "sale" : "cancel" }
            return true
        }
    }

    /// Odoo domains as the adapter sends them: `[field, op, value]` terms (implicitly AND-ed), ops `=`, `in`, `child_of`.
    func matches(_ domain: [Any], _ value: (String) -> Any?) throws -> Bool {
        for case let term as [Any] in domain {
            guard term.count == 3, let field = term[0] as? String, let op = term[1] as? String else {
                throw Fault(name: "builtins.ValueError", message: "Invalid leaf \(term)")
            }
            let v = value(field)
            switch op {
            case "=": if !Self.same(v, term[2]) { return false }
            case "in":
                guard let list = term[2] as? [Any] else { throw Fault(name: "builtins.ValueError", message: "'in' needs a list") }
                if !list.contains(where: { Self.same(v, $0) }) { return false }
            default: throw Fault(name: "builtins.ValueError", message: "Invalid domain operator '\(op)' in the fake")
            }
        }
        return true
    }

    static func same(_ a: Any?, _ b: Any) -> Bool {
        switch (a, b) {
        case (let x as Int, let y as Int): x == y
        case (let x as String, let y as String): x == y
        default: false
        }
    }

    func searchRead(_ model: String, domain: [Any], fields: [String]) throws -> Any {
        try store.withLock { s -> Any in
            var rows: [[String: Any]] = []
            func pick(_ all: [String: Any]) -> [String: Any] {
                fields.isEmpty ? all : all.filter { fields.contains($0.key) || $0.key == "id" }
            }
            switch model {
            case "sale.order":
                for o in s.orders.values.sorted(by: { $0.id < $1.id }) {
                    let all: [String: Any] = ["id": o.id, "name": o.name, "client_order_ref": o.ref, "state": o.state,
                                              "partner_id": [o.partner, s.partners[o.partner] ?? ""], "warehouse_id": [o.warehouse, s.warehouses[o.warehouse] ?? ""]]
                    guard try matches(domain, { all[$0] }) else { continue }
                    rows.append(pick(all))
                }
            case "product.product", "res.partner", "stock.warehouse":
                let (table, field) = model == "product.product" ? (s.products, "default_code") : model == "res.partner" ? (s.partners, "ref") : (s.warehouses, "code")
                for (id, code) in table.sorted(by: { $0.key < $1.key }) {
                    let nameField = model == "res.partner" ? "name" : "display_name"
                    var all: [String: Any] = ["id": id, field: code, nameField: code]
                    if model == "stock.warehouse" { all["lot_stock_id"] = [id * 1000, "\(code)/Stock"] }
                    guard try matches(domain, { all[$0] }) else { continue }
                    rows.append(pick(all))
                }
            case "stock.quant":
                var quantID = 0
                for (w, products) in s.onHand.sorted(by: { $0.key < $1.key }) {
                    for (p, quantity) in products.sorted(by: { $0.key < $1.key }) {
                        quantID += 1
                        // Confirmed orders reserve their lines (the delivery's reservation), cancelled ones release them.
                        var reserved = 0.0
                        for o in s.orders.values where o.state == "sale" && o.warehouse == w {
                            for l in o.lines where l.product == p { reserved += l.qty }
                        }
                        let all: [String: Any] = ["id": quantID, "product_id": [p, "[\(s.products[p]!)] \(s.products[p]!)"],
                                                  "warehouse_id": [w, s.warehouses[w]!], "location_id": [w * 1000, "\(s.warehouses[w]!)/Stock"],
                                                  "quantity": quantity, "reserved_quantity": min(reserved, quantity),
                                                  "product_id.default_code": s.products[p]!, "location_id.usage": "internal"]
                        guard try matches(domain, { f -> Any? in
                            switch f {
                            case "warehouse_id": return w
                            case "product_id": return p
                            default: return all[f]
                            }
                        }) else { continue }
                        rows.append(pick(all).filter { !$0.key.contains(".") })
                    }
                }
            default: break
            }
            return rows
        }
    }

    /// Runs the fake on 127.0.0.1 (an ephemeral port) until the returned task is cancelled.
    public func serve(port: Int = 0) async throws -> (url: String, task: Task<Void, Error>) {
        let router = Router()
        routes(router)
        return try await LocalServer.serve(router, label: "livesync.fake-odoo", serverName: "livesync-fake-odoo", port: port)
    }
}
