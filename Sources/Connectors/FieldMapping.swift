import Foundation
import Ingest
import Model

/// Where each canonical order field is found in a platform's order-detail JSON. Paths are
/// dot-separated keys with optional `[n]` indexes (`data.orders[0]`); a comma joins several
/// paths (address parts). Every field can be overridden in the configuration file under
/// `connectors.<platform>.mapping.<field>` (e.g. a merchant whose SKU code lives in another field).
public struct FieldMapping: Sendable, Equatable {
    /// The order object inside the API response.
    public var orderRoot: String
    /// The lines array (or a single line object) inside the order.
    public var lines: String
    // Per line:
    public var sku: String
    /// Empty: each line is one unit (TikTok Shop lists one line item per unit).
    public var quantity: String
    public var unitPrice: String
    /// Warehouse hint; empty or absent falls back to the shop's default warehouse.
    public var warehouse: String
    // Per order:
    public var buyerName: String
    public var buyerPhone: String
    public var buyerAddress: String
    public var remark: String
    public var promotion: String
    public var coupon: String
    public var anchorID: String
    public var paidAt: String
    /// `s` or `ms`.
    public var paidAtUnit: String
    /// Path of the currency code; empty uses `defaultCurrency`.
    public var currency: String
    public var defaultCurrency: String
    /// `fen` (integer minor units) or `yuan` (decimal major units, as strings or numbers).
    public var moneyUnit: String

    public static let fields = ["orderRoot", "lines", "sku", "quantity", "unitPrice", "warehouse", "buyerName", "buyerPhone",
                                "buyerAddress", "remark", "promotion", "coupon", "anchorID", "paidAt", "paidAtUnit", "currency",
                                "defaultCurrency", "moneyUnit"]

    private static func keyPath(_ field: String) -> WritableKeyPath<FieldMapping, String> {
        switch field {
        case "orderRoot": \.orderRoot
        case "lines": \.lines
        case "sku": \.sku
        case "quantity": \.quantity
        case "unitPrice": \.unitPrice
        case "warehouse": \.warehouse
        case "buyerName": \.buyerName
        case "buyerPhone": \.buyerPhone
        case "buyerAddress": \.buyerAddress
        case "remark": \.remark
        case "promotion": \.promotion
        case "coupon": \.coupon
        case "anchorID": \.anchorID
        case "paidAt": \.paidAt
        case "paidAtUnit": \.paidAtUnit
        case "currency": \.currency
        case "defaultCurrency": \.defaultCurrency
        default: \.moneyUnit
        }
    }

    /// This mapping with the fields `override` returns a value for replaced.
    public func overridden(by override: (String) -> String?) -> FieldMapping {
        var m = self
        for f in Self.fields { if let v = override(f) { m[keyPath: Self.keyPath(f)] = v } }
        return m
    }

    /// Douyin shop `order.orderDetail` (`data.shop_order_detail`).
    public static let douyin = FieldMapping(
        orderRoot: "data.shop_order_detail", lines: "sku_order_list", sku: "code", quantity: "item_num", unitPrice: "origin_amount",
        warehouse: "inventory_list[0].warehouse_id", buyerName: "post_receiver", buyerPhone: "post_tel",
        buyerAddress: "post_addr.province.name,post_addr.city.name,post_addr.town.name,post_addr.street.name,post_addr.detail",
        remark: "buyer_words", promotion: "promotion_amount", coupon: "promotion_platform_amount", anchorID: "sku_order_list[0].author_id",
        paidAt: "pay_time", paidAtUnit: "s", currency: "", defaultCurrency: "CNY", moneyUnit: "fen")

    /// Kuaishou `open.order.detail` (`data`).
    public static let kuaishou = FieldMapping(
        orderRoot: "data", lines: "orderItemInfo", sku: "skuNick", quantity: "num", unitPrice: "price", warehouse: "",
        buyerName: "orderAddress.consignee", buyerPhone: "orderAddress.mobile",
        buyerAddress: "orderAddress.province,orderAddress.city,orderAddress.district,orderAddress.address",
        remark: "orderBaseInfo.remark", promotion: "orderBaseInfo.discountFee", coupon: "orderBaseInfo.couponFee",
        anchorID: "orderBaseInfo.carrierId", paidAt: "orderBaseInfo.payTime", paidAtUnit: "ms", currency: "", defaultCurrency: "CNY", moneyUnit: "fen")

    /// WeChat Channels `channels/ec/order/get` (`order`).
    public static let wechat = FieldMapping(
        orderRoot: "order", lines: "order_detail.product_infos", sku: "sku_code", quantity: "sku_cnt", unitPrice: "sale_price", warehouse: "",
        buyerName: "order_detail.delivery_info.address_info.user_name", buyerPhone: "order_detail.delivery_info.address_info.tel_number",
        buyerAddress: "order_detail.delivery_info.address_info.province_name,order_detail.delivery_info.address_info.city_name,order_detail.delivery_info.address_info.county_name,order_detail.delivery_info.address_info.detail_info",
        remark: "order_detail.ext_info.customer_notes", promotion: "order_detail.price_info.discounted_price",
        coupon: "order_detail.price_info.merchant_discounted_price", anchorID: "order_detail.source_infos[0].account_id",
        paidAt: "order_detail.pay_info.pay_time", paidAtUnit: "s", currency: "", defaultCurrency: "CNY", moneyUnit: "fen")

    /// TikTok Shop `GET /order/202309/orders` (`data.orders[0]`).
    public static let tiktok = FieldMapping(
        orderRoot: "data.orders[0]", lines: "line_items", sku: "seller_sku", quantity: "", unitPrice: "sale_price", warehouse: "",
        buyerName: "recipient_address.name", buyerPhone: "recipient_address.phone_number", buyerAddress: "recipient_address.full_address",
        remark: "buyer_message", promotion: "payment.seller_discount", coupon: "payment.platform_discount", anchorID: "",
        paidAt: "paid_time", paidAtUnit: "s", currency: "payment.currency", defaultCurrency: "USD", moneyUnit: "yuan")

    public static func defaults(for platform: Platform) -> FieldMapping {
        switch platform {
        case .douyin: .douyin
        case .kuaishou: .kuaishou
        case .wechatChannels: .wechat
        case .taobao: .taobao
        case .jd: .jd
        case .pinduoduo: .pinduoduo
        default: .tiktok
        }
    }

    /// Taobao TOP `taobao.trades.sold.increment.get` (one trade).
    public static let taobao = FieldMapping(
        orderRoot: "", lines: "orders.order", sku: "outer_sku_id", quantity: "num", unitPrice: "price", warehouse: "",
        buyerName: "receiver_name", buyerPhone: "receiver_mobile",
        buyerAddress: "receiver_state,receiver_city,receiver_district,receiver_address", remark: "buyer_message",
        promotion: "discount_fee", coupon: "coupon_fee", anchorID: "", paidAt: "pay_time", paidAtUnit: "datetime",
        currency: "", defaultCurrency: "CNY", moneyUnit: "yuan")

    /// JD JOS `jingdong.pop.order.search` (one `orderInfoList` entry).
    public static let jd = FieldMapping(
        orderRoot: "", lines: "itemInfoList", sku: "outerSkuId", quantity: "itemTotal", unitPrice: "jdPrice", warehouse: "",
        buyerName: "consigneeInfo.fullname", buyerPhone: "consigneeInfo.mobile", buyerAddress: "consigneeInfo.fullAddress",
        remark: "orderRemark", promotion: "sellerDiscount", coupon: "", anchorID: "", paidAt: "paymentConfirmTime", paidAtUnit: "datetime",
        currency: "", defaultCurrency: "CNY", moneyUnit: "yuan")

    /// Pinduoduo `pdd.order.number.list.increment.get` (one `order_sn_list` entry).
    public static let pinduoduo = FieldMapping(
        orderRoot: "", lines: "item_list", sku: "outer_id", quantity: "goods_count", unitPrice: "goods_price", warehouse: "",
        buyerName: "receiver_name", buyerPhone: "receiver_phone", buyerAddress: "province,city,town,address", remark: "buyer_memo",
        promotion: "seller_discount", coupon: "platform_discount", anchorID: "", paidAt: "pay_time", paidAtUnit: "datetime",
        currency: "", defaultCurrency: "CNY", moneyUnit: "yuan")

    /// Douyin shop `order.searchList` (one `shop_order_list` entry): the detail mapping without its root.
    public static let douyinSearch: FieldMapping = {
        var m = FieldMapping.douyin
        m.orderRoot = ""
        return m
    }()

    static let chinaFormatter: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "Asia/Shanghai")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f
    }()

    /// `yyyy-MM-dd HH:mm:ss` in China time (TOP, JOS, Pinduoduo) as Unix seconds.
    static func chinaTime(_ text: String) -> Int64? {
        chinaFormatter.date(from: text).map { Int64($0.timeIntervalSince1970) }
    }

    // MARK: Applying

    /// The value at `path` (dot keys, `[n]` indexes) in decoded JSON, nil when absent or null.
    public static func lookup(_ root: Any?, _ path: String) -> Any? {
        guard !path.isEmpty else { return nil }
        var current = root
        for part in path.split(separator: ".") {
            var name = Substring(part)
            var indexes: [Int] = []
            while let open = name.lastIndex(of: "["), name.hasSuffix("]"), let i = Int(name[name.index(after: open)..<name.index(before: name.endIndex)]) {
                indexes.insert(i, at: 0)
                name = name[..<open]
            }
            if !name.isEmpty { current = (current as? [String: Any])?[String(name)] }
            for i in indexes {
                guard let arr = current as? [Any], i >= 0, i < arr.count else { return nil }
                current = arr[i]
            }
        }
        return current is NSNull ? nil : current
    }

    func text(_ root: Any?, _ paths: String) -> String {
        paths.split(separator: ",").compactMap { JSON.string(Self.lookup(root, String($0))) }.filter { !$0.isEmpty }.joined(separator: paths.contains(",") ? " " : "")
    }

    func money(_ root: Any?, _ path: String, field: String) throws(IngestError) -> Int64 {
        guard let v = Self.lookup(root, path) else { return 0 }
        if moneyUnit == "yuan" {
            guard let text = JSON.string(v), let dec = Decimal(string: text), dec >= 0 else {
                throw .invalidField(field: field, reason: "is not a decimal amount")
            }
            return NSDecimalNumber(decimal: dec * 100).rounding(accordingToBehavior: nil).int64Value
        }
        guard let n = JSON.int(v) else { throw .invalidField(field: field, reason: "is not an integer amount in fen") }
        return n
    }

    /// The canonical order from an order-detail response, validated as the generic webhook's are.
    public func order(from response: Any, platform: Platform, shopID: String, platformOrderID: String,
                      defaultWarehouse: String, now: Int64) throws(IngestError) -> Order {
        guard let root = (orderRoot.isEmpty ? response : Self.lookup(response, orderRoot)) as? [String: Any] else {
            throw .invalidField(field: orderRoot, reason: "order not found in the platform's response")
        }
        let rawLines: [Any] = switch Self.lookup(root, lines) {
        case let arr as [Any]: arr
        case let obj as [String: Any]: [obj]
        default: []
        }
        // Lines of the same SKU and warehouse are merged (TikTok lists one line item per unit).
        var merged: [(sku: String, warehouse: String, quantity: Int64, price: Int64)] = []
        for (i, l) in rawLines.enumerated() {
            let sku = text(l, sku)
            let qty = quantity.isEmpty ? 1 : (JSON.int(Self.lookup(l, quantity)) ?? 0)
            let price = try money(l, unitPrice, field: "\(lines)[\(i)].\(unitPrice)")
            let wh = text(l, warehouse)
            let line = GenericWebhook.Line(sku: sku, quantity: qty, unit_price_fen: price, warehouse: wh.isEmpty ? nil : wh)
            if let j = merged.firstIndex(where: { $0.sku == sku && $0.warehouse == (line.warehouse ?? "") && $0.price == price }) {
                merged[j].quantity += qty
            } else {
                merged.append((sku, line.warehouse ?? "", qty, price))
            }
        }
        let paid: Int64? = paidAtUnit == "datetime"
            ? JSON.string(Self.lookup(root, paidAt)).flatMap { Self.chinaTime($0) }.map { $0 * 1000 }
            : JSON.int(Self.lookup(root, paidAt)).map { paidAtUnit == "ms" ? $0 : $0 * 1000 }
        let currencyCode = currency.isEmpty ? defaultCurrency : (JSON.string(Self.lookup(root, currency)) ?? defaultCurrency)
        let json = GenericWebhook.OrderJSON(
            shop_id: shopID, order_id: platformOrderID, currency: currencyCode, paid_at_ms: paid,
            buyer: .init(name: text(root, buyerName), phone: text(root, buyerPhone), address: text(root, buyerAddress)),
            remark: text(root, remark),
            lines: merged.map { .init(sku: $0.sku, quantity: $0.quantity, unit_price_fen: $0.price, warehouse: $0.warehouse.isEmpty ? nil : $0.warehouse) })
        var order = try GenericWebhook.order(from: json, shop: ShopCredentials(secret: "", defaultWarehouse: defaultWarehouse), now: now)
        // Re-key under the real platform so redeliveries and polled copies map to the same ids.
        order.platform = platform
        order.orderID = Identifiers.orderID(platform: platform, shop: shopID, platformOrderID: platformOrderID)
        for i in order.lines.indices {
            order.lines[i].platform = platform
            order.lines[i].orderID = order.orderID
            order.lines[i].eventID = Identifiers.lineEventID(orderID: order.orderID, lineNo: order.lines[i].lineNo)
        }
        order.promotionFen = try money(root, promotion, field: promotion)
        order.couponFen = try money(root, coupon, field: coupon)
        order.anchorID = text(root, anchorID)
        return order
    }
}
