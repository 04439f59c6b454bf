import ErpAdapters
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// A local fake of Kingdee 金蝶云星空's WebAPI (`/k3cloud/<service>.common.kdsvc`), built from
/// Kingdee's SDKs and docs (docs/erp-adapters.md): it checks the login (ValidateUser password, or
/// the app signature headers), the `kdservice-sessionid` cookie on every call (unknown or expired
/// → 会话信息已丢失, `MsgCode` 1), the envelope (`formid`, `data` as a JSON string), required
/// fields and known customers / materials / warehouses / organisations per `DIndex`, duplicate
/// references; keeps the sale orders in memory with their 单据状态, holds stock per material and
/// warehouse, and can fail the next calls (5xx, 429, 服务器繁忙), expire sessions and be slow.
/// Listens on 127.0.0.1 only.
public final class FakeKingdee: Sendable {
    public struct Line: Sendable, Equatable {
        public var material: String
        public var quantity: Double
        public var taxPrice: Double
        public var warehouse: String
        public init(material: String, quantity: Double, taxPrice: Double, warehouse: String) {
            self.material = material
            self.quantity = quantity
            self.taxPrice = taxPrice
            self.warehouse = warehouse
        }
    }

    /// A `SAL_SaleOrder` the fake saved.
    public struct Document: Sendable, Equatable {
        public var id: Int
        public var billNo: String
        /// The value of the configured reference field.
        public var reference: String
        public var customer: String
        public var organization: String
        public var date: String
        public var lines: [Line]
        /// FDocumentStatus: A 创建, B 审核中, C 已审核, D 重新审核, Z 暂存.
        public var documentStatus: String
        /// FCancelStatus: A 未作废, B 已作废.
        public var cancelStatus: String
    }

    /// An answer the fake gives a service call instead of processing it.
    public enum Failure: Sendable, Equatable {
        /// That HTTP status (500, 502, 503, 429) with an HTML-ish body, as a proxy answers.
        case status(Int)
        /// Kingdee's own busy answer in the envelope (服务器繁忙).
        case busy
    }

    public let acctID: String
    public let user: String
    public let password: String
    /// `<clientID>_<encoded client secret>` and the app secret, for the signed app login.
    public let appID: String
    public let appSecret: String
    /// The header field holding the reference (`FBillNo` or a custom field).
    public let referenceField: String
    public let customers: Set<String>
    public let materials: Set<String>
    public let warehouses: Set<String>
    public let organizations: Set<String>
    public let currencies: Set<String> = ["PRE001"]

    struct State {
        var sessions: Set<String> = []
        var documents: [Document] = []
        var nextID = 100_001
        var stock: [(material: String, warehouse: String, onHand: Double, available: Double)] = []
        var calls: [String: Int] = [:]
        var failures: [(service: String?, failure: Failure)] = []
        var latency: Duration = .zero
        var loginsRefused = 0
    }
    let state = Mutex(State())

    public init(acctID: String = "66c3712248af25", user: String = "livesync", password: String = "Kd@2026!",
                appID: String = KingdeeSigning.appID(clientID: "300416", secretBytes: Array("livesync-kingdee-secret!".utf8)),
                appSecret: String = "0f3c9a1e2d4b5c6a7e8f9a0b1c2d3e4f", referenceField: String = "FBillNo",
                customers: Set<String> = ["CUST-DOUYIN", "CUST-KUAISHOU"], materials: Set<String> = ["SKU-A", "SKU-B", "SKU-C"],
                warehouses: Set<String> = ["WH01", "WH02"], organizations: Set<String> = ["100"]) {
        self.acctID = acctID
        self.user = user
        self.password = password
        self.appID = appID
        self.appSecret = appSecret
        self.referenceField = referenceField
        self.customers = customers
        self.materials = materials
        self.warehouses = warehouses
        self.organizations = organizations
    }

    // MARK: Knobs and views

    /// Every sale order saved, in order (tests count them and look for duplicates).
    public var documents: [Document] { state.withLock { $0.documents } }
    /// Calls per service short name (`ValidateUser`, `BatchSave`, `Submit`, `Audit`, `ExecuteBillQuery`, …).
    public func calls(_ service: String) -> Int { state.withLock { $0.calls[service] ?? 0 } }
    /// Logins (password or app) the fake refused.
    public var loginsRefused: Int { state.withLock { $0.loginsRefused } }
    /// Forgets every session: the next call with an old cookie is answered 会话信息已丢失.
    public func expireSessions() { state.withLock { $0.sessions.removeAll() } }
    /// Queues answers the next service calls get (logins excluded), in order; with `service`
    /// (a short name such as `Audit`) only calls of that service take them.
    public func failNext(_ failures: [Failure], service: String? = nil) {
        state.withLock { $0.failures.append(contentsOf: failures.map { (service, $0) }) }
    }
    /// Delay before each answer.
    public func setLatency(_ latency: Duration) { state.withLock { $0.latency = latency } }
    /// Replaces the stock rows of a material in a warehouse with one row (or several lots).
    public func setStock(material: String, warehouse: String, lots: [(onHand: Double, available: Double)]) {
        state.withLock { s in
            s.stock.removeAll { $0.material == material && $0.warehouse == warehouse }
            for lot in lots { s.stock.append((material, warehouse, lot.onHand, lot.available)) }
        }
    }

    /// Runs the fake on 127.0.0.1; the base URL it returns ends in `/k3cloud/`.
    public func serve(port: Int = 0) async throws -> (url: String, task: Task<Void, Error>) {
        let router = Router()
        routes(router)
        let (url, task) = try await LocalServer.serve(router, label: "livesync.fake-kingdee", serverName: "livesync-fake-kingdee", port: port)
        return (url + "/k3cloud/", task)
    }

    public func routes(_ router: Router<BasicRequestContext>) {
        router.post("/k3cloud/:service") { request, context in
            let name = context.parameters.get("service") ?? ""
            let body = try await request.body.collect(upTo: 64 << 20)
            return await self.handle(service: name, path: request.uri.path, headers: request.headers, body: Data(body.readableBytesView))
        }
    }

    // MARK: Protocol

    func handle(service name: String, path: String, headers: HTTPFields, body: Data) async -> Response {
        guard name.hasSuffix(".common.kdsvc") else { return Self.text(.notFound, "no such service") }
        let service = String(name.dropLast(".common.kdsvc".count))
        let short = service.split(separator: ".").last.map(String.init) ?? service
        let latency = state.withLock { s -> Duration in s.calls[short, default: 0] += 1; return s.latency }
        if latency > .zero { try? await Task.sleep(for: latency) }
        guard let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            return Self.envelopeError("请求数据格式错误：不是 JSON 对象", msgCode: 4)
        }
        if service == KingdeeService.validateUser { return validateUser(json) }

        // Session: a known cookie, or (no cookie) a valid signed app login that opens one.
        var setCookie: String?
        let cookie = Self.cookie(headers)
        if let cookie {
            guard state.withLock({ $0.sessions.contains(cookie) }) else { return Self.sessionLost(query: short == "ExecuteBillQuery") }
        } else {
            guard verifyAppSignature(path: path, headers) else {
                state.withLock { $0.loginsRefused += 1 }
                return Self.sessionLost(query: short == "ExecuteBillQuery")
            }
            let sid = UUID().uuidString.lowercased()
            state.withLock { _ = $0.sessions.insert(sid) }
            setCookie = sid
        }
        var response = process(service: service, short: short, json)
        if let setCookie { response.headers[.setCookie] = "\(KingdeeService.sessionCookie)=\(setCookie); path=/; HttpOnly" }
        return response
    }

    func process(service: String, short: String, _ json: [String: Any]) -> Response {
        let failure = state.withLock { s -> Failure? in
            guard let i = s.failures.firstIndex(where: { $0.service == nil || $0.service == short }) else { return nil }
            return s.failures.remove(at: i).failure
        }
        if let failure {
            switch failure {
            case .status(let code): return Self.text(HTTPResponse.Status(code: code), "<html><body>\(code) Service Unavailable</body></html>")
            case .busy: return Self.envelopeError("服务器繁忙，请稍后再试", msgCode: 0)
            }
        }
        // The envelope as Kingdee's SDKs send it: `data` is a JSON string.
        guard let dataText = json["data"] as? String, let data = (try? JSONSerialization.jsonObject(with: Data(dataText.utf8))) as? [String: Any] else {
            return Self.envelopeError("参数data必须是JSON字符串", msgCode: 4)
        }
        if service == KingdeeService.executeBillQuery { return query(data) }
        guard let formID = json["formid"] as? String, formID == "SAL_SaleOrder" else {
            return Self.envelopeError("业务对象不存在：\(json["formid"] ?? "(formid 缺失)")", msgCode: 0)
        }
        switch service {
        case KingdeeService.batchSave: return batchSave(data)
        case KingdeeService.submit: return operate(data, op: "Submit")
        case KingdeeService.audit: return operate(data, op: "Audit")
        case KingdeeService.unAudit: return operate(data, op: "UnAudit")
        case KingdeeService.excuteOperation: return operate(data, op: (json["opNumber"] as? String) ?? "")
        default: return Self.envelopeError("服务[\(short)]不存在", msgCode: 0)
        }
    }

    func validateUser(_ json: [String: Any]) -> Response {
        // Named parameters or the old `parameters` array [acctID, username, password, lcid].
        let p = json["parameters"] as? [Any]
        let acct = (json["acctID"] as? String) ?? (p?.first as? String)
        let name = (json["username"] as? String) ?? (p.flatMap { $0.count > 1 ? $0[1] as? String : nil })
        let pass = (json["password"] as? String) ?? (p.flatMap { $0.count > 2 ? $0[2] as? String : nil })
        guard acct == acctID else {
            state.withLock { $0.loginsRefused += 1 }
            return Self.json(["LoginResultType": 0, "Message": "数据中心[\(acct ?? "")]不存在", "KDSVCSessionId": NSNull(), "IsSuccessByAPI": false])
        }
        guard name == user, pass == password else {
            state.withLock { $0.loginsRefused += 1 }
            return Self.json(["LoginResultType": 0, "Message": "用户名或密码错误！", "KDSVCSessionId": NSNull(), "IsSuccessByAPI": false])
        }
        let sid = UUID().uuidString.lowercased()
        state.withLock { _ = $0.sessions.insert(sid) }
        var response = Self.json(["LoginResultType": 1, "Message": NSNull(), "KDSVCSessionId": sid, "Lcid": 2052, "IsSuccessByAPI": true])
        response.headers[.setCookie] = "\(KingdeeService.sessionCookie)=\(sid); path=/; HttpOnly"
        return response
    }

    func verifyAppSignature(path: String, _ headers: HTTPFields) -> Bool {
        func h(_ name: String) -> String? { HTTPField.Name(name).flatMap { headers[$0] } }
        guard let appKey = h("X-Kd-Appkey"), appKey == appID, let ts = h("x-api-timestamp"), let nonce = h("x-api-nonce"),
              let tsValue = Double(ts), abs(Date().timeIntervalSince1970 - tsValue) < 600,
              h("X-Api-ClientID") == KingdeeSigning.clientSecret(appID: appID).clientID,
              let appDataB64 = h("X-Kd-Appdata"), let appData = Data(base64Encoded: appDataB64).map({ String(decoding: $0, as: UTF8.self) }) else { return false }
        let fields = appData.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 4, fields[0] == acctID, fields[1] == user else { return false }
        let secret = KingdeeSigning.clientSecret(appID: appID).secret
        return h("X-Api-Signature") == KingdeeSigning.hmac(KingdeeSigning.apiSignatureContent(path: path, nonce: nonce, timestamp: ts), key: secret)
            && h("X-Kd-Signature") == KingdeeSigning.hmac(appID + appData, key: appSecret)
    }

    // MARK: Services

    func batchSave(_ data: [String: Any]) -> Response {
        guard let models = data["Model"] as? [[String: Any]], !models.isEmpty else {
            return Self.envelopeError("Model 不能为空", msgCode: 4)
        }
        return state.withLock { s -> Response in
            var errors: [[String: Any]] = []
            var successes: [[String: Any]] = []
            var taken = Set(s.documents.map(\.reference))
            for (index, m) in models.enumerated() {
                var problems: [(String, String)] = []
                func number(_ key: String, in object: [String: Any]) -> String? {
                    guard let ref = object[key] as? [String: Any] else { return nil }
                    return (ref["FNumber"] as? String) ?? (ref["FNUMBER"] as? String)
                }
                let reference = (m[referenceField] as? String) ?? ""
                if reference.isEmpty { problems.append((referenceField, "字段“\(referenceField)”是必填项")) }
                else if taken.contains(reference) { problems.append((referenceField, "单据编号[\(reference)]已经存在，不允许重复")) }
                if (number("FBillTypeID", in: m) ?? "").isEmpty { problems.append(("FBillTypeID", "字段“单据类型”是必填项")) }
                let date = (m["FDate"] as? String) ?? ""
                if date.count < 10 { problems.append(("FDate", "字段“日期”是必填项")) }
                let org = number("FSaleOrgId", in: m) ?? ""
                if !organizations.contains(org) { problems.append(("FSaleOrgId", "销售组织[\(org)]不存在或未审核")) }
                let customer = number("FCustId", in: m) ?? ""
                if !customers.contains(customer) { problems.append(("FCustId", "客户编码[\(customer)]的基础资料不存在或未审核")) }
                let finance = m["FSaleOrderFinance"] as? [String: Any] ?? [:]
                let currency = number("FSettleCurrId", in: finance) ?? ""
                if !currencies.contains(currency) { problems.append(("FSettleCurrId", "结算币别[\(currency)]不存在")) }
                let entries = m["FSaleOrderEntry"] as? [[String: Any]] ?? []
                if entries.isEmpty { problems.append(("FSaleOrderEntry", "订单明细不能为空")) }
                var lines: [Line] = []
                for (row, e) in entries.enumerated() {
                    let material = number("FMaterialId", in: e) ?? ""
                    if !materials.contains(material) { problems.append(("FMaterialId", "第\(row + 1)行分录，物料编码[\(material)]的基础资料不存在或未审核")) }
                    let qty = (e["FQty"] as? NSNumber)?.doubleValue ?? 0
                    if qty <= 0 { problems.append(("FQty", "第\(row + 1)行分录，销售数量必须大于0")) }
                    guard let price = (e["FTaxPrice"] as? NSNumber)?.doubleValue, price >= 0 else {
                        problems.append(("FTaxPrice", "第\(row + 1)行分录，含税单价无效")); continue
                    }
                    let warehouse = number("FStockId", in: e) ?? ""
                    if !warehouses.contains(warehouse) { problems.append(("FStockId", "第\(row + 1)行分录，仓库[\(warehouse)]不存在或未审核")) }
                    lines.append(Line(material: material, quantity: qty, taxPrice: price, warehouse: warehouse))
                }
                if !problems.isEmpty {
                    for p in problems { errors.append(["FieldName": p.0, "Message": p.1, "DIndex": index]) }
                    continue
                }
                let id = s.nextID
                s.nextID += 1
                let billNo = referenceField == "FBillNo" ? reference : "XSDD\(id)"
                s.documents.append(Document(id: id, billNo: billNo, reference: reference, customer: customer, organization: org, date: date,
                                            lines: lines, documentStatus: "A", cancelStatus: "A"))
                taken.insert(reference)
                successes.append(["Id": id, "Number": billNo, "DIndex": index])
            }
            return Self.status(errors: errors, successes: successes)
        }
    }

    /// Submit (A/D → B), Audit (B → C), UnAudit (C → D), Cancel 作废 (A/D/Z, not cancelled → cancelled).
    func operate(_ data: [String: Any], op: String) -> Response {
        let ids = ((data["Ids"] as? String) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let numbers = (data["Numbers"] as? [String]) ?? []
        guard !ids.isEmpty || !numbers.isEmpty else { return Self.envelopeError("Ids 和 Numbers 不能同时为空", msgCode: 4) }
        guard ["Submit", "Audit", "UnAudit", "Cancel"].contains(op) else { return Self.envelopeError("操作[\(op)]不存在", msgCode: 0) }
        return state.withLock { s -> Response in
            var errors: [[String: Any]] = []
            var successes: [[String: Any]] = []
            let keys = ids.isEmpty ? numbers : ids
            for (index, key) in keys.enumerated() {
                guard let i = s.documents.firstIndex(where: { ids.isEmpty ? $0.billNo == key : String($0.id) == key }) else {
                    errors.append(["FieldName": NSNull(), "Message": "单据[\(key)]不存在", "DIndex": index]); continue
                }
                var d = s.documents[i]
                let allowed: Bool
                switch op {
                case "Submit": allowed = (d.documentStatus == "A" || d.documentStatus == "D") && d.cancelStatus == "A"; if allowed { d.documentStatus = "B" }
                case "Audit": allowed = d.documentStatus == "B" && d.cancelStatus == "A"; if allowed { d.documentStatus = "C" }
                case "UnAudit": allowed = d.documentStatus == "C"; if allowed { d.documentStatus = "D" }
                default: allowed = ["A", "D", "Z"].contains(d.documentStatus) && d.cancelStatus == "A"; if allowed { d.cancelStatus = "B" }
                }
                guard allowed else {
                    errors.append(["FieldName": NSNull(), "Message": "单据编号为“\(d.billNo)”的单据，当前状态(\(d.documentStatus)/\(d.cancelStatus))不允许\(op)", "DIndex": index])
                    continue
                }
                s.documents[i] = d
                successes.append(["Id": d.id, "Number": d.billNo, "DIndex": index])
            }
            return Self.status(errors: errors, successes: successes)
        }
    }

    func query(_ data: [String: Any]) -> Response {
        let form = (data["FormId"] as? String) ?? ""
        let keys = ((data["FieldKeys"] as? String) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let start = (data["StartRow"] as? NSNumber)?.intValue ?? 0
        let limit = min((data["Limit"] as? NSNumber)?.intValue ?? 2000, 10_000)
        guard let filters = Self.parseFilter((data["FilterString"] as? String) ?? "") else {
            return Self.queryError("过滤条件[\(data["FilterString"] ?? "")]语法错误")
        }
        var rows: [[Any]] = []
        switch form {
        case "SAL_SaleOrder":
            let known = Set(["FID", "FBillNo", "FDocumentStatus", "FCancelStatus", "FCloseStatus", referenceField])
            if let bad = (keys + filters.map(\.0)).first(where: { !known.contains($0) }) { return Self.queryError("字段[\(bad)]在表单SAL_SaleOrder中不存在") }
            for d in documents {
                var values: [String: Any] = ["FID": d.id, "FBillNo": d.billNo, "FDocumentStatus": d.documentStatus, "FCancelStatus": d.cancelStatus,
                                             "FCloseStatus": "A"]
                values[referenceField] = d.reference
                if filters.allSatisfy({ $0.1.contains(FakeKingdee.text(values[$0.0])) }) { rows.append(keys.map { values[$0]! }) }
            }
        case "STK_Inventory":
            let known = Set(["FMaterialId.FNumber", "FStockId.FNumber", "FBaseQty", "FBaseAVBQty"])
            if let bad = (keys + filters.map(\.0)).first(where: { !known.contains($0) }) { return Self.queryError("字段[\(bad)]在表单STK_Inventory中不存在") }
            for r in state.withLock({ $0.stock }) {
                let values: [String: Any] = ["FMaterialId.FNumber": r.material, "FStockId.FNumber": r.warehouse, "FBaseQty": r.onHand, "FBaseAVBQty": r.available]
                if filters.allSatisfy({ $0.1.contains(FakeKingdee.text(values[$0.0])) }) { rows.append(keys.map { values[$0]! }) }
            }
        default:
            return Self.queryError("业务对象[\(form)]不存在")
        }
        let page = Array(rows.dropFirst(start).prefix(limit))
        return Self.json(page)
    }

    // MARK: Answers

    /// `A IN ('x','y') AND B = 'z'`: field → allowed values; nil if the text is not of that form.
    static func parseFilter(_ text: String) -> [(String, Set<String>)]? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return [] }
        var out: [(String, Set<String>)] = []
        for clause in trimmed.components(separatedBy: " AND ") {
            let c = clause.trimmingCharacters(in: .whitespaces)
            if let r = c.range(of: " IN (") , c.hasSuffix(")") {
                let field = String(c[..<r.lowerBound])
                let list = String(c[r.upperBound..<c.index(before: c.endIndex)])
                guard let values = quotedValues(list) else { return nil }
                out.append((field, Set(values)))
            } else if let r = c.range(of: " = ") {
                guard let values = quotedValues(String(c[r.upperBound...])), values.count == 1 else { return nil }
                out.append((String(c[..<r.lowerBound]), Set(values)))
            } else {
                return nil
            }
        }
        return out
    }

    static func quotedValues(_ list: String) -> [String]? {
        var values: [String] = []
        var chars = Array(list)
        var i = 0
        while i < chars.count {
            if chars[i] == " " || chars[i] == "," { i += 1; continue }
            guard chars[i] == "'" else { return nil }
            i += 1
            var value = ""
            while i < chars.count {
                if chars[i] == "'" {
                    if i + 1 < chars.count, chars[i + 1] == "'" { value.append("'"); i += 2; continue }
                    break
                }
                value.append(chars[i]); i += 1
            }
            guard i < chars.count else { return nil }
            i += 1
            values.append(value)
        }
        chars.removeAll()
        return values
    }

    static func text(_ value: Any?) -> String {
        switch value {
        case let s as String: s
        case let n as NSNumber: n.stringValue
        default: ""
        }
    }

    static func cookie(_ headers: HTTPFields) -> String? {
        for field in headers where field.name == .cookie {
            for part in field.value.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2, kv[0] == KingdeeService.sessionCookie { return kv[1] }
            }
        }
        return nil
    }

    static func status(errors: [[String: Any]], successes: [[String: Any]]) -> Response {
        json(["Result": [
            "ResponseStatus": [
                "ErrorCode": errors.isEmpty ? 0 : 500, "IsSuccess": errors.isEmpty, "Errors": errors, "SuccessEntitys": successes,
                "SuccessMessages": [Any](), "MsgCode": errors.isEmpty ? 0 : 11,
            ] as [String: Any],
            "Id": "", "Number": "", "NeedReturnData": [Any](),
        ] as [String: Any]])
    }

    static func envelopeError(_ message: String, msgCode: Int) -> Response {
        json(["Result": ["ResponseStatus": [
            "ErrorCode": 500, "IsSuccess": false, "Errors": [["FieldName": NSNull(), "Message": message, "DIndex": 0]],
            "SuccessEntitys": [Any](), "SuccessMessages": [Any](), "MsgCode": msgCode,
        ] as [String: Any]]])
    }

    static func sessionLost(query: Bool) -> Response {
        let status: [String: Any] = ["Result": ["ResponseStatus": [
            "ErrorCode": 500, "IsSuccess": false, "Errors": [["FieldName": NSNull(), "Message": "会话信息已丢失，请重新登录", "DIndex": 0]],
            "SuccessEntitys": [Any](), "SuccessMessages": [Any](), "MsgCode": 1,
        ] as [String: Any]]]
        return query ? json([[status]]) : json(status)
    }

    static func queryError(_ message: String) -> Response {
        json([[["Result": ["ResponseStatus": [
            "ErrorCode": 500, "IsSuccess": false, "Errors": [["FieldName": NSNull(), "Message": message, "DIndex": 0]],
            "SuccessEntitys": [Any](), "SuccessMessages": [Any](), "MsgCode": 0,
        ] as [String: Any]]]]])
    }

    static func json(_ object: Any) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data("{}".utf8)
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/html"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}
