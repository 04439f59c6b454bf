import Bootstrap
import ErpAdapters
import Foundation
import Worker

/// Builds the configured adapter from `erp.<kind>.*` settings (environment
/// `LIVESYNC_ERP_<KIND>_*`); a missing credential is refused naming its key.
public enum ErpAdapterSettings {
    public static let kinds = ["tryton", "kingdee", "yonyou", "jushuitan", "odoo", "webhook"]

    public static func adapter(kind: String, settings: LiveSyncConfig) throws -> any ErpAdapter {
        let s = Reader(kind: kind, settings: settings)
        switch kind {
        case "kingdee":
            let login: KingdeeConfiguration.Login
            if let appID = s.optional("appId") {
                login = .appSecret(user: try s.required("user"), appID: appID, appSecret: try s.required("appSecret"))
            } else {
                login = .password(user: try s.required("user"), password: try s.required("password"))
            }
            let d = KingdeeConfiguration(baseURL: "http://x", acctID: "x", login: login)
            let c = KingdeeConfiguration(
                baseURL: try s.url("url"), acctID: try s.required("acctId"), login: login,
                lcid: try s.int("lcid", d.lcid), loginOrgNumber: s.string("orgNumber", d.loginOrgNumber),
                saleOrderFormID: s.string("saleOrderFormId", d.saleOrderFormID), inventoryFormID: s.string("inventoryFormId", d.inventoryFormID),
                billTypeNumber: s.string("billType", d.billTypeNumber), referenceField: s.string("referenceField", d.referenceField),
                submitAndAudit: try s.bool("submitAndAudit", d.submitAndAudit), batchSize: try s.int("batchSize", d.batchSize),
                stockWarehouses: s.list("stockWarehouses"))
            return KingdeeAdapter(configuration: c)
        case "yonyou":
            let d = YonyouConfiguration(gatewayURL: "http://x", appKey: "x", appSecret: "x", transactionType: "x")
            let c = YonyouConfiguration(
                gatewayURL: try s.url("url"), authURL: s.optional("authUrl"), appKey: try s.required("appKey"), appSecret: try s.required("appSecret"),
                transactionType: try s.required("transactionType"), defaultOrganization: s.string("org", d.defaultOrganization),
                audit: try s.bool("audit", d.audit), stockWarehouses: s.list("stockWarehouses"),
                batchSize: try s.int("batchSize", d.batchSize), maxConcurrentSaves: try s.int("maxConcurrentSaves", d.maxConcurrentSaves))
            return YonyouAdapter(configuration: c)
        case "jushuitan":
            let c = JushuitanConfiguration(
                baseURL: s.string("url", "https://openapi.jushuitan.com"), appKey: try s.required("appKey"), appSecret: try s.required("appSecret"),
                accessToken: try s.required("accessToken"), refreshToken: s.string("refreshToken", ""), shopID: try s.int("shopId", 0),
                shopIDs: try s.intMap("shopIds"), warehouses: try s.intMap("warehouses"), stockWarehouses: s.list("stockWarehouses"),
                batchSize: try s.int("batchSize", 50))
            guard c.shopID > 0 else { throw ConfigurationError("erp.jushuitan.shopId is required: the 店铺编号 orders are uploaded to (LIVESYNC_ERP_JUSHUITAN_SHOP_ID)") }
            return JushuitanAdapter(c)
        case "odoo":
            return OdooAdapter(OdooConfiguration(
                url: try s.url("url"), database: try s.required("database"), login: try s.required("login"), password: try s.required("password"),
                batchSize: try s.int("batchSize", 100), confirmOnCreate: try s.bool("confirm", true), stockWarehouses: s.list("stockWarehouses")))
        case "webhook":
            return WebhookErpAdapter(WebhookErpConfiguration(url: try s.url("url"), secret: try s.required("secret"), batchSize: try s.int("batchSize", 100)))
        case "tryton":
            return TrytonAdapter(configuration: TrytonConfiguration(
                baseURL: try s.url("url"), database: try s.required("database"), login: try s.required("login"), password: try s.required("password"),
                warehouses: try s.map("warehouses"), batchSize: try s.int("batchSize", 100), confirm: try s.bool("confirm", true)))
        default:
            throw ConfigurationError("erp.kind=\(kind) has no adapter in this build; use one of \(kinds.joined(separator: ", "))")
        }
    }

    /// `erp.<kind>.<key>` settings, each refused with its environment variable when wrong.
    struct Reader {
        let kind: String
        let settings: LiveSyncConfig
        func key(_ k: String) -> String { "erp.\(kind).\(k)" }
        func optional(_ k: String) -> String? {
            guard let v = settings.optionalString(key(k)), !v.isEmpty else { return nil }
            return v
        }
        func required(_ k: String) throws -> String {
            guard let v = optional(k) else {
                throw ConfigurationError("\(key(k)) is required for erp.kind=\(kind) (\(LiveSyncConfig.environmentName(key(k))))")
            }
            return v
        }
        func url(_ k: String) throws -> String {
            let v = try required(k)
            guard let u = URL(string: v), u.scheme == "http" || u.scheme == "https", u.host != nil else {
                throw ConfigurationError("\(key(k)) must be an http(s) URL, not '\(v)' (\(LiveSyncConfig.environmentName(key(k))))")
            }
            return v
        }
        func string(_ k: String, _ d: String) -> String { optional(k) ?? d }
        func int(_ k: String, _ d: Int) throws -> Int { try settings.int(key(k), default: d) }
        func bool(_ k: String, _ d: Bool) throws -> Bool {
            guard let v = optional(k) else { return d }
            switch v.lowercased() {
            case "true", "1", "yes": return true
            case "false", "0", "no": return false
            default: throw ConfigurationError("\(key(k)) must be true or false, not '\(v)' (\(LiveSyncConfig.environmentName(key(k))))")
            }
        }
        /// `a=1,b=2`.
        func map(_ k: String) throws -> [String: String] {
            var out: [String: String] = [:]
            for pair in list(k) {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, !kv[0].isEmpty, !kv[1].isEmpty else {
                    throw ConfigurationError("\(key(k)) must be code=value pairs separated by commas, not '\(pair)' (\(LiveSyncConfig.environmentName(key(k))))")
                }
                out[kv[0]] = kv[1]
            }
            return out
        }
        func intMap(_ k: String) throws -> [String: Int] {
            try map(k).mapValues { v in
                guard let n = Int(v) else { throw ConfigurationError("\(key(k)): '\(v)' is not a number (\(LiveSyncConfig.environmentName(key(k))))") }
                return n
            }
        }
        func list(_ k: String) -> [String] {
            (optional(k) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
    }
}
