import Bootstrap
import ErpAdapters
import Foundation
import Model
import Worker

/// How LiveSync's canonical order becomes the merchant's ERP sale order: which ERP codes a SKU,
/// a shop and a warehouse are, and which amounts and remark go in. Loaded once at start from the
/// mapping file (`erp.mappingFile`); a bad entry is refused naming its line.
///
/// ```json
/// { "material":     { "SKU-0001": "1.01.001" },            // default: the SKU itself
///   "customer":     { "default": "LIVESYNC", "douyin": "CUST-DY", "douyin:shop-7": "CUST-DY7" },
///   "warehouse":    { "main": "CK01", "east": "CK02" },    // default: LiveSync's warehouse code
///   "organization": "100",
///   "discounts":    true,                                  // send promotion + coupon as the discount
///   "remark":       "{platform} {platformOrderId} {shop}" }
/// ```
public struct ErpFieldMapping: Sendable, Equatable {
    /// SKU → ERP material code; unmapped SKUs are sent as they are.
    public var material: [String: String] = [:]
    /// `platform:shop`, then `platform`, then `default` → ERP customer code.
    public var customer: [String: String] = ["default": "LIVESYNC"]
    /// LiveSync warehouse → ERP warehouse code; unmapped ones are sent as they are.
    public var warehouse: [String: String] = [:]
    /// ERP organisation (Kingdee sale org, Yonyou org), empty where the ERP has none.
    public var organization = ""
    /// Whether the platform's promotion and coupon amounts go to the ERP as the order's discount.
    public var discounts = true
    /// Remark template; placeholders `{platform}`, `{shop}`, `{platformOrderId}`, `{orderId}`.
    public var remark = "{platform} {platformOrderId}"

    public init() {}

    static let placeholders: Set<String> = ["platform", "shop", "platformOrderId", "orderId"]

    /// The ERP customer code of a shop.
    public func customer(platform: String, shop: String) -> String {
        customer["\(platform):\(shop)"] ?? customer[platform] ?? customer["default"] ?? ""
    }

    public func material(sku: String) -> String { material[sku] ?? sku }
    public func erpWarehouse(_ liveSync: String) -> String { warehouse[liveSync] ?? liveSync }

    /// LiveSync's SKU of an ERP material code (for stock read back from the ERP).
    public func sku(material code: String) -> String {
        material.first { $0.value == code }?.key ?? code
    }

    /// LiveSync's warehouse of an ERP warehouse code.
    public func liveSyncWarehouse(_ code: String) -> String {
        warehouse.first { $0.value == code }?.key ?? code
    }

    /// The sale orders `order` becomes: one per warehouse its lines ship from (an ERP sale order
    /// has one warehouse). Their references are the order id, or `<order id>#<warehouse>` when
    /// the order spans warehouses, so a re-driven order always asks the ERP for the same ones.
    public func saleOrders(_ order: Order) -> [ErpSaleOrder] {
        let groups = Self.warehouses(of: order)
        let platform = order.platform.slug
        let customer = customer(platform: platform, shop: order.shopID)
        var remark = remark
        for (k, v) in [("platform", platform), ("shop", order.shopID), ("platformOrderId", order.platformOrderID), ("orderId", order.orderID)] {
            remark = remark.replacingOccurrences(of: "{\(k)}", with: v)
        }
        return groups.map { warehouse in
            let lines = order.lines.filter { $0.warehouse == warehouse }
            let gross = lines.reduce(Int64(0)) { $0 + $1.quantity * $1.unitPriceFen }
            let allGross = order.lines.reduce(Int64(0)) { $0 + $1.quantity * $1.unitPriceFen }
            // A split order's discount is shared out by each warehouse's share of the gross amount.
            let orderDiscount = discounts ? order.promotionFen + order.couponFen : 0
            let discount = allGross > 0 ? orderDiscount * gross / allGross : 0
            return ErpSaleOrder(
                reference: Self.reference(orderID: order.orderID, warehouse: warehouse, split: groups.count > 1),
                platform: platform, shopID: order.shopID, platformOrderID: order.platformOrderID,
                customer: customer, organization: organization, warehouse: erpWarehouse(warehouse),
                currency: order.currency.isEmpty ? "CNY" : order.currency, paidAtUs: order.paidAtUs,
                lines: lines.map { .init(material: material(sku: $0.sku), quantity: $0.quantity, unitPriceFen: $0.unitPriceFen, lineNo: Int($0.lineNo)) },
                totalFen: gross - discount, discountFen: discount, remark: remark)
        }
    }

    /// The warehouses of an order's lines, in first-seen order.
    public static func warehouses(of order: Order) -> [String] {
        var seen: [String] = []
        for line in order.lines where !seen.contains(line.warehouse) { seen.append(line.warehouse) }
        return seen
    }

    public static func reference(orderID: String, warehouse: String, split: Bool) -> String {
        split ? "\(orderID)#\(warehouse)" : orderID
    }

    /// Parses the mapping file; every error names the line and what to write instead.
    public static func parse(_ text: String, source: String) throws(ConfigurationError) -> ErpFieldMapping {
        let root: LocatedJSON
        do { root = try LocatedJSON.parse(text) } catch let e as LocatedJSON.SyntaxError {
            throw ConfigurationError("\(source):\(e.line): \(e.message)")
        } catch { throw ConfigurationError("\(source): \(error)") }
        guard case .object(let members, _) = root else {
            throw ConfigurationError("\(source):\(root.line): the ERP mapping must be a JSON object with material, customer, warehouse, organization, discounts, remark")
        }
        var m = ErpFieldMapping()
        func table(_ v: LocatedJSON, _ name: String) throws(ConfigurationError) -> [String: String] {
            guard case .object(let entries, _) = v else { throw ConfigurationError("\(source):\(v.line): \(name) must be an object of code → ERP code") }
            var out: [String: String] = [:]
            for e in entries {
                guard case .string(let code, _) = e.value, !code.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw ConfigurationError("\(source):\(e.value.line): \(name) \"\(e.key)\" must map to a non-empty ERP code string")
                }
                guard !e.key.isEmpty else { throw ConfigurationError("\(source):\(e.value.line): \(name) has an empty key") }
                out[e.key] = code
            }
            return out
        }
        for (key, value) in members {
            switch key {
            case "material": m.material = try table(value, "material")
            case "warehouse": m.warehouse = try table(value, "warehouse")
            case "customer":
                m.customer = try table(value, "customer")
                if case .object(let entries, _) = value {
                    for e in entries where e.key != "default" {
                        let parts = e.key.split(separator: ":", omittingEmptySubsequences: false)
                        guard parts.count <= 2, let p = parts.first, Platform.allCases.contains(where: { $0.slug == String(p) }), parts.count == 1 || !parts[1].isEmpty else {
                            throw ConfigurationError("\(source):\(e.value.line): customer key \"\(e.key)\" must be \"default\", a platform (\(Platform.allCases.filter { $0 != .unspecified }.map(\.slug).joined(separator: ", "))) or platform:shop")
                        }
                    }
                }
                guard m.customer["default"] != nil else {
                    throw ConfigurationError("\(source):\(value.line): customer needs a \"default\" entry (the ERP customer of shops not listed)")
                }
            case "organization":
                guard case .string(let s, _) = value else { throw ConfigurationError("\(source):\(value.line): organization must be a string") }
                m.organization = s
            case "discounts":
                guard case .bool(let b, _) = value else { throw ConfigurationError("\(source):\(value.line): discounts must be true or false") }
                m.discounts = b
            case "remark":
                guard case .string(let s, _) = value else { throw ConfigurationError("\(source):\(value.line): remark must be a string") }
                var rest = Substring(s)
                while let open = rest.firstIndex(of: "{") {
                    guard let close = rest[open...].firstIndex(of: "}") else { throw ConfigurationError("\(source):\(value.line): remark has an unclosed {") }
                    let name = String(rest[rest.index(after: open)..<close])
                    guard placeholders.contains(name) else {
                        throw ConfigurationError("\(source):\(value.line): remark placeholder {\(name)} is unknown; use \(placeholders.sorted().map { "{\($0)}" }.joined(separator: ", "))")
                    }
                    rest = rest[rest.index(after: close)...]
                }
                m.remark = s
            default:
                throw ConfigurationError("\(source):\(value.line): unknown mapping field \"\(key)\"; expected material, customer, warehouse, organization, discounts, remark")
            }
        }
        return m
    }
}
