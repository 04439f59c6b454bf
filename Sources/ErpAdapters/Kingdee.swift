import Crypto
import Foundation
import Synchronization

/// How LiveSync reaches one merchant's Kingdee 金蝶云星空 (K/3 Cloud) through its WebAPI
/// (`<base>/<service>.common.kdsvc`, JSON bodies, session cookie `kdservice-sessionid`).
/// Sources and inferences: docs/erp-adapters.md, "Kingdee 金蝶云星空".
public struct KingdeeConfiguration: Sendable, Equatable {
    public enum Login: Sendable, Equatable {
        /// `AuthService.ValidateUser` with the user's password; the answer's `kdservice-sessionid`
        /// cookie is the session.
        case password(user: String, password: String)
        /// 第三方系统登录授权, as Kingdee's newer SDKs do it: every call carries the signed
        /// `X-Api-*` / `X-Kd-*` headers (the app ID is `<clientID>_<encoded client secret>` as
        /// Kingdee issues it), the server opens a session on the first call and answers its cookie.
        case appSecret(user: String, appID: String, appSecret: String)
    }

    /// `http(s)://host/k3cloud/` (the trailing slash is added when missing).
    public var baseURL: String
    /// 数据中心 (account set) id.
    public var acctID: String
    public var login: Login
    /// 2052 = 简体中文.
    public var lcid: Int
    /// Organisation number sent in the app login data (`X-Kd-Appdata`), empty = 0 (default org).
    public var loginOrgNumber: String
    public var saleOrderFormID: String
    public var inventoryFormID: String
    /// `FBillTypeID.FNUMBER`: 标准销售订单 is `XSDD01_SYS`.
    public var billTypeNumber: String
    /// The header field that carries `ErpSaleOrder.reference`: `FBillNo` (the coding rule must
    /// allow manual numbers) or a custom text field such as `F_LS_Reference`. `lookup` filters on it.
    public var referenceField: String
    /// The merchant's setting: Submit and Audit each saved order (one call each per batch).
    public var submitAndAudit: Bool
    /// Orders per `BatchSave` (and ids per query).
    public var batchSize: Int
    /// ISO currency → Kingdee currency number (`FSettleCurrId.FNumber`); CNY is `PRE001`.
    public var currencyNumbers: [String: String]
    /// Warehouses `stockLevels` reads (`FStockId.FNumber`); empty = every warehouse.
    public var stockWarehouses: [String]
    /// `STK_Inventory` quantity fields (base unit): on hand and available.
    public var onHandField: String
    public var availableField: String

    public init(baseURL: String, acctID: String, login: Login, lcid: Int = 2052, loginOrgNumber: String = "",
                saleOrderFormID: String = "SAL_SaleOrder", inventoryFormID: String = "STK_Inventory",
                billTypeNumber: String = "XSDD01_SYS", referenceField: String = "FBillNo", submitAndAudit: Bool = true,
                batchSize: Int = 100, currencyNumbers: [String: String] = ["CNY": "PRE001"], stockWarehouses: [String] = [],
                onHandField: String = "FBaseQty", availableField: String = "FBaseAVBQty") {
        self.baseURL = baseURL.hasSuffix("/") ? baseURL : baseURL + "/"
        self.acctID = acctID
        self.login = login
        self.lcid = lcid
        self.loginOrgNumber = loginOrgNumber
        self.saleOrderFormID = saleOrderFormID
        self.inventoryFormID = inventoryFormID
        self.billTypeNumber = billTypeNumber
        self.referenceField = referenceField
        self.submitAndAudit = submitAndAudit
        self.batchSize = max(1, batchSize)
        self.currencyNumbers = currencyNumbers
        self.stockWarehouses = stockWarehouses
        self.onHandField = onHandField
        self.availableField = availableField
    }
}

/// Kingdee's WebAPI services, as their `.common.kdsvc` names.
public enum KingdeeService {
    public static let validateUser = "Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser"
    public static let batchSave = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.BatchSave"
    public static let submit = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Submit"
    public static let audit = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.Audit"
    public static let unAudit = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.UnAudit"
    /// Kingdee spells it `ExcuteOperation`.
    public static let excuteOperation = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExcuteOperation"
    public static let executeBillQuery = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery"
    /// The session cookie.
    public static let sessionCookie = "kdservice-sessionid"
}

/// The app-login signature of Kingdee's newer WebAPI SDKs (`X-Api-Signature`, `X-Kd-Signature`).
public enum KingdeeSigning {
    /// HMAC-SHA256 as Kingdee's SDK writes it: Base64 of the lowercase hex digest.
    public static func hmac(_ content: String, key: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data(content.utf8), using: SymmetricKey(data: Data(key.utf8)))
        let hex = mac.map { String(format: "%02x", $0) }.joined()
        return Data(hex.utf8).base64EncodedString()
    }

    /// The API-gateway secret hidden in the app ID's second half (32 Base64 characters XORed with
    /// the SDK's fixed key); the SDK signs `X-Api-Signature` with it. Empty when the app ID has no such part.
    public static func clientSecret(appID: String) -> (clientID: String, secret: String) {
        let parts = appID.split(separator: "_", maxSplits: 1).map(String.init)
        guard parts.count == 2, parts[1].count == 32, var bytes = Data(base64Encoded: parts[1]).map({ [UInt8]($0) }) else { return (parts.first ?? "", "") }
        let key = Array("0054f397c6234378b09ca7d3e5debce7".utf8)
        for i in bytes.indices { bytes[i] ^= key[i % key.count] }
        return (parts[0], Data(bytes).base64EncodedString())
    }

    /// The inverse of `clientSecret`: an app ID for a client ID and a 24-byte secret (fakes and tests).
    public static func appID(clientID: String, secretBytes: [UInt8]) -> String {
        let key = Array("0054f397c6234378b09ca7d3e5debce7".utf8)
        let hidden = secretBytes.enumerated().map { $0.element ^ key[$0.offset % key.count] }
        return clientID + "_" + Data(hidden).base64EncodedString()
    }

    /// `POST\n<url-encoded path>\n\nx-api-nonce:<nonce>\nx-api-timestamp:<ts>\n`.
    public static func apiSignatureContent(path: String, nonce: String, timestamp: String) -> String {
        let encoded = path.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? path
        return "POST\n\(encoded)\n\nx-api-nonce:\(nonce)\nx-api-timestamp:\(timestamp)\n"
    }

    /// `acctID,user,lcid,org` (Base64 of it is `X-Kd-Appdata`).
    public static func appData(acctID: String, user: String, lcid: Int, org: String) -> String {
        "\(acctID),\(user),\(lcid),\(org.isEmpty ? "0" : org)"
    }

    /// The signed headers of one call to `path` (e.g. `/k3cloud/Kingdee.BOS....BatchSave.common.kdsvc`).
    public static func headers(path: String, acctID: String, user: String, appID: String, appSecret: String, lcid: Int, org: String,
                               now: Date = Date()) -> [(String, String)] {
        let (clientID, secret) = clientSecret(appID: appID)
        let ts = String(Int64(now.timeIntervalSince1970))
        let nonce = ts
        let data = appData(acctID: acctID, user: user, lcid: lcid, org: org)
        return [
            ("X-Api-ClientID", clientID),
            ("X-Api-Auth-Version", "2.0"),
            ("x-api-timestamp", ts),
            ("x-api-nonce", nonce),
            ("x-api-signheaders", "x-api-timestamp,x-api-nonce"),
            ("X-Api-Signature", hmac(apiSignatureContent(path: path, nonce: nonce, timestamp: ts), key: secret)),
            ("X-Kd-Appkey", appID),
            ("X-Kd-Appdata", Data(data.utf8).base64EncodedString()),
            ("X-Kd-Signature", hmac(appID + data, key: appSecret)),
        ]
    }
}

/// The Kingdee 金蝶云星空 WebAPI adapter: `BatchSave` of `SAL_SaleOrder` (one call per batch),
/// then `Submit` and `Audit` (one call each) when the merchant wants them; `ExecuteBillQuery` for
/// lookup by reference and for `STK_Inventory`; `UnAudit` + `ExcuteOperation("Cancel")` (作废)
/// to cancel. Logs in, keeps the session cookie, logs in again once when Kingdee answers
/// 会话信息已丢失 (`MsgCode` 1) and repeats that call (the session check refused it, so nothing
/// was written).
public final class KingdeeAdapter: ErpAdapter {
    public let configuration: KingdeeConfiguration
    public let http: ErpHTTP
    public var kind: String { "kingdee" }
    public var maxBatchSize: Int { configuration.batchSize }
    public var capabilities: Set<ErpCapability> { [.cancel, .stock] }

    /// The session id, and how many times it was replaced (so concurrent calls that saw the same
    /// lost session log in once).
    private let session = Mutex<(id: String?, generation: Int)>((nil, 0))
    /// Logins made (password) or sessions opened (app), for tests and logs.
    public let logins = Atomic<Int>(0)

    public init(configuration: KingdeeConfiguration, http: ErpHTTP = ErpHTTP()) {
        self.configuration = configuration
        self.http = http
    }

    // MARK: The contract

    public func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !orders.isEmpty else { return [:] }
        let c = configuration
        let data: [String: Any] = [
            "NeedUpDateFields": [String](), "NeedReturnFields": ["FBillNo", c.referenceField],
            "IsDeleteEntry": "true", "IsVerifyBaseDataField": "true", "ValidateFlag": "true", "NumberSearch": "true",
            "IsAutoSubmitAndAudit": "false", "Model": orders.map(model),
        ]
        let status = try await formCall(KingdeeService.batchSave, formID: c.saleOrderFormID, data: data)
        if let whole = status.wholeCallError, whole.isRetryable { throw whole }  // busy / timeout: nothing was saved
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        for s in status.successes where orders.indices.contains(s.index) {
            out[orders[s.index].reference] = .success(ErpDocument(reference: orders[s.index].reference, id: s.id, number: s.number, state: .draft))
        }
        for (index, error) in status.errorsByIndex where orders.indices.contains(index) && out[orders[index].reference] == nil {
            out[orders[index].reference] = .failure(error)
        }
        for order in orders where out[order.reference] == nil {
            out[order.reference] = .failure(status.wholeCallError ?? .retryable(code: "kingdee_no_answer", message: "BatchSave answered nothing for this order"))
        }
        guard c.submitAndAudit else { return out }
        let saved = orders.compactMap { try? out[$0.reference]?.get() }
        // A follow-up failure leaves the saved order `.draft`: `confirm` takes it further later.
        let confirmed = (try? await submitAndAudit(saved)) ?? [:]
        for (reference, result) in confirmed { if case .success(let d) = result { out[reference] = .success(d) } }
        return out
    }

    public func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        try await submitAndAudit(documents)
    }

    public func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument] {
        let c = configuration
        var out: [String: ErpDocument] = [:]
        var keys = ["FID", "FBillNo", "FDocumentStatus", "FCancelStatus", "FCloseStatus"]
        if !keys.contains(c.referenceField) { keys.append(c.referenceField) }
        let refColumn = keys.firstIndex(of: c.referenceField)!
        for chunk in Self.chunks(references, c.batchSize) {
            let rows = try await billQuery(formID: c.saleOrderFormID, fieldKeys: keys, filter: "\(c.referenceField) IN (\(Self.sqlList(chunk)))")
            for row in rows where row.count == keys.count {
                let reference = Self.text(row[refColumn])
                guard chunk.contains(reference), out[reference] == nil else { continue }
                let state: ErpDocumentState
                if Self.text(row[3]) == "B" { state = .cancelled }
                else if Self.text(row[4]) == "B" { state = .done }
                else if Self.text(row[2]) == "C" { state = .confirmed }
                else { state = .draft }
                out[reference] = ErpDocument(reference: reference, id: Self.text(row[0]), number: Self.text(row[1]), state: state)
            }
        }
        return out
    }

    /// 作废: audited documents are un-audited first (Kingdee cancels only unaudited bills), then
    /// `ExcuteOperation` with op `Cancel` on all of them, one call each.
    public func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        var pending = documents.filter { $0.state != .cancelled }
        for d in documents where d.state == .cancelled { out[d.reference] = .success(d) }
        let audited = pending.filter { $0.state == .confirmed || $0.state == .done }
        if !audited.isEmpty {
            let r = try await operate(KingdeeService.unAudit, opNumber: nil, audited)
            for (reference, result) in r { if case .failure = result { out[reference] = result } }
            pending.removeAll { out[$0.reference] != nil }
        }
        guard !pending.isEmpty else { return out }
        for (reference, result) in try await operate(KingdeeService.excuteOperation, opNumber: "Cancel", pending) {
            out[reference] = result.map { var d = $0; d.state = .cancelled; return d }
        }
        return out
    }

    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        let c = configuration
        let keys = ["FMaterialId.FNumber", "FStockId.FNumber", c.onHandField, c.availableField]
        var totals: [String: ErpStockLevel] = [:]
        var order: [String] = []
        let materialChunks: [[String]] = materials.isEmpty ? [[]] : Self.chunks(materials, c.batchSize)
        for chunk in materialChunks {
            var filters: [String] = []
            if !chunk.isEmpty { filters.append("FMaterialId.FNumber IN (\(Self.sqlList(chunk)))") }
            if !c.stockWarehouses.isEmpty { filters.append("FStockId.FNumber IN (\(Self.sqlList(c.stockWarehouses)))") }
            // One row per lot / stock status: summed per material and warehouse.
            for row in try await billQuery(formID: c.inventoryFormID, fieldKeys: keys, filter: filters.joined(separator: " AND ")) where row.count == 4 {
                let material = Self.text(row[0]), warehouse = Self.text(row[1])
                let key = material + "\u{1}" + warehouse
                if totals[key] == nil { totals[key] = ErpStockLevel(material: material, warehouse: warehouse, onHand: 0, available: 0); order.append(key) }
                totals[key]!.onHand += Self.quantity(row[2])
                totals[key]!.available += Self.quantity(row[3])
            }
        }
        return order.map { totals[$0]! }
    }

    // MARK: Envelopes

    /// One `SAL_SaleOrder` model for `BatchSave`.
    func model(_ o: ErpSaleOrder) -> [String: Any] {
        let c = configuration
        let date = ErpChinaTime.chinaDateTime(us: o.paidAtUs)
        var m: [String: Any] = [
            "FBillTypeID": ["FNUMBER": c.billTypeNumber],
            "FDate": date,
            "FSaleOrgId": ["FNumber": o.organization],
            "FCustId": ["FNumber": o.customer],
            "FNote": o.remark.isEmpty ? "\(o.platform) \(o.shopID) \(o.platformOrderID)" : o.remark,
            "FSaleOrderFinance": [
                "FSettleCurrId": ["FNumber": c.currencyNumbers[o.currency] ?? o.currency],
                "FIsIncludedTax": true,
                "FIsPriceExcludeTax": true,
            ] as [String: Any],
            "FSaleOrderEntry": o.lines.map { l -> [String: Any] in
                [
                    "FMaterialId": ["FNumber": l.material],
                    "FQty": l.quantity,
                    "FTaxPrice": ErpAmount.decimal(l.unitPriceFen),
                    "FEntryNote": "\(o.reference)#\(l.lineNo)",
                    "FDeliveryDate": date,
                    "FStockOrgId": ["FNumber": o.organization],
                    "FSettleOrgIds": ["FNumber": o.organization],
                    "FStockId": ["FNumber": o.warehouse],
                ]
            },
        ]
        if c.referenceField == "FBillNo" { m["FBillNo"] = o.reference } else { m[c.referenceField] = o.reference }
        return m
    }

    /// Submit, then Audit; each one call. Audit is asked for every document, not only those this
    /// Submit took: a bill already 审核中 (submitted earlier, its audit lost) refuses the Submit but
    /// takes the Audit. Per document: `.confirmed`, or a failure with Kingdee's messages.
    func submitAndAudit(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        guard !documents.isEmpty else { return [:] }
        let submitted = try await operate(KingdeeService.submit, opNumber: nil, documents)
        let audited = try await operate(KingdeeService.audit, opNumber: nil, documents)
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        for d in documents {
            switch audited[d.reference] {
            case .success?:
                var c = d
                c.state = .confirmed
                out[d.reference] = .success(c)
            case .failure(let auditError)?:
                if case .failure(let submitError)? = submitted[d.reference] {
                    let message = "Submit: \(submitError.message); Audit: \(auditError.message)"
                    out[d.reference] = .failure(submitError.isRetryable || auditError.isRetryable
                        ? .retryable(code: auditError.code, message: message) : .permanent(code: auditError.code, message: message))
                } else {
                    out[d.reference] = .failure(auditError)
                }
            case nil:
                out[d.reference] = .failure(.retryable(code: "kingdee_no_answer", message: "Audit answered nothing for \(d.number)"))
            }
        }
        return out
    }

    /// Submit / Audit / UnAudit / ExcuteOperation on `documents` by `Ids` in one call; successes
    /// are matched by Id, errors by `DIndex` (position in `Ids`).
    func operate(_ service: String, opNumber: String?, _ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        let data: [String: Any] = ["Ids": documents.map(\.id).joined(separator: ","), "Numbers": [String]()]
        let status = try await formCall(service, formID: configuration.saleOrderFormID, opNumber: opNumber, data: data)
        if let whole = status.wholeCallError, whole.isRetryable { throw whole }
        var out: [String: Result<ErpDocument, ErpError>] = [:]
        let byID = Dictionary(documents.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for s in status.successes { if let d = byID[s.id] { out[d.reference] = .success(d) } }
        for (index, error) in status.errorsByIndex where documents.indices.contains(index) && out[documents[index].reference] == nil {
            out[documents[index].reference] = .failure(error)
        }
        for d in documents where out[d.reference] == nil {
            out[d.reference] = .failure(status.wholeCallError ?? .retryable(code: "kingdee_no_answer", message: "\(service) answered nothing for \(d.number)"))
        }
        return out
    }

    // MARK: Calls

    struct Status {
        var successes: [(id: String, number: String, index: Int)] = []
        var errorsByIndex: [Int: ErpError] = [:]
        /// Set when the call failed as a whole (IsSuccess false and nothing succeeded).
        var wholeCallError: ErpError?
    }

    /// A form service call (`formid`, optional `opNumber`, `data` as a JSON string as Kingdee's
    /// SDKs send it) and its `Result.ResponseStatus`.
    func formCall(_ service: String, formID: String, opNumber: String? = nil, data: [String: Any]) async throws(ErpError) -> Status {
        var body: [String: Any] = ["formid": formID, "data": try Self.jsonString(data)]
        if let opNumber { body["opNumber"] = opNumber }
        let json = try await call(service, body)
        guard let status = Self.responseStatus(json) else {
            throw .permanent(code: "kingdee_envelope", message: "\(service) answered without Result.ResponseStatus: \(String(describing: json).prefix(300))")
        }
        return Self.parse(status)
    }

    /// `ExecuteBillQuery`, paged by `StartRow` / `Limit` (Kingdee caps a page at 10,000 rows).
    func billQuery(formID: String, fieldKeys: [String], filter: String) async throws(ErpError) -> [[Any]] {
        let limit = 2000
        var rows: [[Any]] = []
        var start = 0
        while true {
            let data: [String: Any] = ["FormId": formID, "FieldKeys": fieldKeys.joined(separator: ","), "FilterString": filter,
                                       "OrderString": "", "TopRowCount": 0, "StartRow": start, "Limit": limit, "SubSystemId": ""]
            let json = try await call(KingdeeService.executeBillQuery, ["data": try Self.jsonString(data)])
            if let status = Self.responseStatus(json) {
                let parsed = Self.parse(status)
                throw parsed.wholeCallError ?? parsed.errorsByIndex.values.first ?? .permanent(code: "kingdee_query", message: "ExecuteBillQuery failed")
            }
            guard let page = json as? [Any] else {
                throw .permanent(code: "kingdee_envelope", message: "ExecuteBillQuery answered \(String(describing: json).prefix(300))")
            }
            let pageRows = page.compactMap { $0 as? [Any] }
            rows.append(contentsOf: pageRows)
            if pageRows.count < limit { return rows }
            start += limit
        }
    }

    /// One POST to `<base><service>.common.kdsvc` with the session (logging in first in password
    /// mode); on session lost, one new login and one repeat.
    func call(_ service: String, _ body: [String: Any]) async throws(ErpError) -> Any {
        let url = configuration.baseURL + service + ".common.kdsvc"
        let payload: Data
        do { payload = try JSONSerialization.data(withJSONObject: body) } catch {
            throw .permanent(code: "encoding", message: "request body is not valid JSON: \(error)")
        }
        for attempt in 0..<2 {
            let (sid, generation) = try await currentSession()
            var headers: [(String, String)] = [("Content-Type", "application/json; charset=utf-8"), ("Accept-Charset", "utf-8")]
            if case .appSecret(let user, let appID, let secret) = configuration.login {
                headers += KingdeeSigning.headers(path: URL(string: url)?.path ?? "/", acctID: configuration.acctID, user: user, appID: appID,
                                                  appSecret: secret, lcid: configuration.lcid, org: configuration.loginOrgNumber)
            }
            if let sid { headers.append(("Cookie", "\(KingdeeService.sessionCookie)=\(sid)")) }
            let response = try await http.send(url: url, headers: headers, body: payload)
            let json = try Self.decode(response, service: service)
            if let lost = Self.sessionLost(json) {
                forget(generation: generation)
                if sid == nil {
                    // Nothing to lose: the signed login itself was refused (Kingdee answers a bad
                    // app signature or authorisation with this same message).
                    throw .permanent(code: "kingdee_login", message: "Kingdee refused the app login (acctID \(configuration.acctID)): \(lost)")
                }
                if attempt == 0 { continue }
                throw .retryable(code: "MsgCode 1", message: "session lost again after a new login: \(lost)")
            }
            if let cookie = Self.sessionCookie(response), cookie != sid { adopt(cookie) }
            return json
        }
        throw .retryable(code: "MsgCode 1", message: "session lost")
    }

    /// The session to use: the kept one; in password mode, a new login when there is none.
    func currentSession() async throws(ErpError) -> (String?, Int) {
        let (sid, generation) = session.withLock { ($0.id, $0.generation) }
        if sid != nil { return (sid, generation) }
        guard case .password(let user, let password) = configuration.login else { return (nil, generation) }
        let body: [String: Any] = ["acctID": configuration.acctID, "username": user, "password": password, "lcid": configuration.lcid]
        let (response, json) = try await http.postJSON(url: configuration.baseURL + KingdeeService.validateUser + ".common.kdsvc", json: body)
        guard let answer = json as? [String: Any] else { throw .permanent(code: "kingdee_login", message: "ValidateUser answered \(String(describing: json).prefix(200))") }
        let type = Self.int(answer["LoginResultType"]) ?? 0
        guard type == 1 else {
            let message = (answer["Message"] as? String) ?? "login refused"
            throw .permanent(code: "LoginResultType \(type)", message: "Kingdee refused user \(user) on account set \(configuration.acctID): \(message)")
        }
        guard let new = Self.sessionCookie(response) ?? (answer["KDSVCSessionId"] as? String), !new.isEmpty else {
            throw .retryable(code: "kingdee_login", message: "ValidateUser succeeded without a session id")
        }
        logins.add(1, ordering: .relaxed)
        return session.withLock { s in
            if let current = s.id { return (current, s.generation) }  // a concurrent login won
            s.id = new
            s.generation += 1
            return (new, s.generation)
        }
    }

    private func forget(generation: Int) {
        session.withLock { s in if s.generation == generation { s.id = nil; s.generation += 1 } }
    }

    private func adopt(_ cookie: String) {
        session.withLock { s in
            if s.id != cookie { s.id = cookie; s.generation += 1 }
        }
        if case .appSecret = configuration.login { logins.add(1, ordering: .relaxed) }
    }

    // MARK: Answers

    static func decode(_ response: ErpHTTP.Response, service: String) throws(ErpError) -> Any {
        let text = String(decoding: response.body, as: UTF8.self)
        if text.hasPrefix("response_error:") {
            // The SDKs' transport-level failure text (server exception before the envelope).
            throw .retryable(code: "response_error", message: "\(service): \(text.dropFirst("response_error:".count).prefix(300))")
        }
        return try ErpHTTP.decode(response)
    }

    static func sessionCookie(_ response: ErpHTTP.Response) -> String? {
        for (name, value) in response.headers where name.caseInsensitiveCompare("Set-Cookie") == .orderedSame {
            for part in value.split(separator: ";") {
                let kv = part.trimmingCharacters(in: .whitespaces).split(separator: "=", maxSplits: 1).map(String.init)
                if kv.count == 2, kv[0].caseInsensitiveCompare(KingdeeService.sessionCookie) == .orderedSame, !kv[1].isEmpty { return kv[1] }
            }
        }
        return nil
    }

    /// `Result.ResponseStatus`, also inside ExecuteBillQuery's `[[{…}]]` error shape.
    static func responseStatus(_ json: Any) -> [String: Any]? {
        if let rows = json as? [Any], let row = rows.first as? [Any], let cell = row.first { return responseStatus(cell) }
        if let rows = json as? [Any], let cell = rows.first as? [String: Any] { return responseStatus(cell) }
        guard let object = json as? [String: Any], let result = object["Result"] as? [String: Any] else { return nil }
        return result["ResponseStatus"] as? [String: Any]
    }

    /// Kingdee's session-lost answer (`MsgCode` 1, 会话信息已丢失), with its message.
    static func sessionLost(_ json: Any) -> String? {
        guard let status = responseStatus(json), (status["IsSuccess"] as? Bool) != true else { return nil }
        let messages = ((status["Errors"] as? [[String: Any]]) ?? []).compactMap { $0["Message"] as? String }
        if int(status["MsgCode"]) == 1 || messages.contains(where: { $0.contains("会话信息已丢失") }) {
            return messages.first ?? "会话信息已丢失，请重新登录"
        }
        return nil
    }

    static func parse(_ status: [String: Any]) -> Status {
        var out = Status()
        for s in (status["SuccessEntitys"] as? [[String: Any]]) ?? [] {
            out.successes.append((text(s["Id"]), text(s["Number"]), int(s["DIndex"]) ?? 0))
        }
        let msgCode = int(status["MsgCode"]) ?? 0
        let errors = (status["Errors"] as? [[String: Any]]) ?? []
        var messages: [Int: [String]] = [:]
        for e in errors {
            let field = (e["FieldName"] as? String).map { $0.isEmpty ? "" : "\($0): " } ?? ""
            messages[int(e["DIndex"]) ?? 0, default: []].append(field + ((e["Message"] as? String) ?? "error"))
        }
        for (index, list) in messages { out.errorsByIndex[index] = classify(msgCode: msgCode, message: list.joined(separator: "; ")) }
        if (status["IsSuccess"] as? Bool) != true, out.successes.isEmpty {
            let message = errors.compactMap { $0["Message"] as? String }.joined(separator: "; ")
            out.wholeCallError = classify(msgCode: msgCode, message: message.isEmpty ? "IsSuccess false, ErrorCode \(text(status["ErrorCode"]))" : message)
        }
        return out
    }

    /// Busy / timeout / lock answers can pass on a retry; the rest (基础资料不存在, validation,
    /// duplicate numbers, permissions) need a fix in Kingdee or the mapping.
    static func classify(msgCode: Int, message: String) -> ErpError {
        let transient = ["繁忙", "busy", "超时", "timeout", "timed out", "稍后", "死锁", "deadlock", "网络"]
        let lower = message.lowercased()
        if msgCode == 1 || transient.contains(where: { lower.contains($0.lowercased()) }) {
            return .retryable(code: "MsgCode \(msgCode)", message: message)
        }
        return .permanent(code: "MsgCode \(msgCode)", message: message)
    }

    // MARK: Values

    static func jsonString(_ object: [String: Any]) throws(ErpError) -> String {
        do { return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) } catch {
            throw .permanent(code: "encoding", message: "data is not valid JSON: \(error)")
        }
    }

    static func sqlList(_ values: [String]) -> String {
        values.map { "'" + $0.replacingOccurrences(of: "'", with: "''") + "'" }.joined(separator: ",")
    }

    static func chunks<T>(_ values: [T], _ size: Int) -> [[T]] {
        stride(from: 0, to: values.count, by: max(1, size)).map { Array(values[$0..<min($0 + max(1, size), values.count)]) }
    }

    static func text(_ value: Any?) -> String {
        switch value {
        case let s as String: s
        case let n as NSNumber: n.stringValue
        case nil, is NSNull: ""
        default: "\(value!)"
        }
    }

    static func int(_ value: Any?) -> Int? {
        switch value {
        case let n as NSNumber: n.intValue
        case let s as String: Int(s)
        default: nil
        }
    }

    /// Quantities come back as numbers or decimal strings; whole units are kept (toward zero).
    static func quantity(_ value: Any?) -> Int64 {
        switch value {
        case let n as NSNumber: Int64(n.doubleValue.rounded(.towardZero))
        case let s as String: Int64((Double(s) ?? 0).rounded(.towardZero))
        default: 0
        }
    }
}
