import Foundation

/// One live-stream order as the merchant's ERP receives it: already mapped to the ERP's codes
/// (material, customer, warehouse, organisation) by `ErpSync`'s field mapping, so an adapter only
/// puts values into its ERP's envelope and never decides what they are.
public struct ErpSaleOrder: Sendable, Equatable {
    /// LiveSync's order id (`<platform>:<platform order id>`): written into the ERP's reference field
    /// (Kingdee bill number / custom field, Odoo `client_order_ref`, Tryton `reference`, Jushuitan
    /// `so_id`) and the only key `lookup` searches by, so a re-driven order is found, not created twice.
    public var reference: String
    /// Platform slug (`douyin`, `kuaishou`, ...) and shop id, for remarks and shop-level fields.
    public var platform: String
    public var shopID: String
    public var platformOrderID: String
    /// ERP customer code (mapping: per shop, per platform, or a default).
    public var customer: String
    /// ERP organisation / company code, where the ERP has one (Kingdee FSaleOrgId, Yonyou org).
    public var organization: String
    /// ERP warehouse code the order ships from.
    public var warehouse: String
    public var currency: String
    /// When the buyer paid (microseconds since 1970, UTC).
    public var paidAtUs: Int64
    public var lines: [Line]
    /// Order total after discounts, in fen (分).
    public var totalFen: Int64
    /// Platform promotion and coupon amounts, in fen, when the mapping sends them.
    public var discountFen: Int64
    public var remark: String

    public struct Line: Sendable, Equatable {
        /// ERP material / product code (mapping: SKU → material, identity by default).
        public var material: String
        public var quantity: Int64
        /// Unit price in fen.
        public var unitPriceFen: Int64
        /// LiveSync's line number, 1-based.
        public var lineNo: Int
        public init(material: String, quantity: Int64, unitPriceFen: Int64, lineNo: Int) {
            self.material = material
            self.quantity = quantity
            self.unitPriceFen = unitPriceFen
            self.lineNo = lineNo
        }
    }

    public init(reference: String, platform: String, shopID: String, platformOrderID: String, customer: String,
                organization: String = "", warehouse: String, currency: String = "CNY", paidAtUs: Int64,
                lines: [Line], totalFen: Int64, discountFen: Int64 = 0, remark: String = "") {
        self.reference = reference
        self.platform = platform
        self.shopID = shopID
        self.platformOrderID = platformOrderID
        self.customer = customer
        self.organization = organization
        self.warehouse = warehouse
        self.currency = currency
        self.paidAtUs = paidAtUs
        self.lines = lines
        self.totalFen = totalFen
        self.discountFen = discountFen
        self.remark = remark
    }
}

/// Where a sale order stands in the ERP, as far as LiveSync's sync needs to know.
public enum ErpDocumentState: String, Sendable, Equatable, Codable {
    /// Saved but not submitted/confirmed (Kingdee 创建/暂存, Odoo draft quotation, Tryton draft/quotation).
    case draft
    /// Submitted, audited or confirmed: the ERP plans the goods out (Kingdee 已审核, Odoo `sale`, Tryton confirmed/processing).
    case confirmed
    /// Shipped or done in the ERP.
    case done
    /// Cancelled (作废/取消) in the ERP.
    case cancelled
}

/// A sale order document in the ERP.
public struct ErpDocument: Sendable, Equatable, Codable {
    /// The `ErpSaleOrder.reference` it was created with.
    public var reference: String
    /// The ERP's own id (Kingdee FID, Odoo/Tryton record id, Jushuitan o_id) as text.
    public var id: String
    /// The ERP's document number (Kingdee FBillNo, Odoo `name`, Tryton `number`), when it has one.
    public var number: String
    public var state: ErpDocumentState

    public init(reference: String, id: String, number: String = "", state: ErpDocumentState) {
        self.reference = reference
        self.id = id
        self.number = number
        self.state = state
    }
}

/// Why an ERP call failed, with the ERP's own code and message so the operator sees what the ERP said.
public enum ErpError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Worth retrying as is: timeout, connection refused, 5xx, throttling (限流), session expired
    /// after a failed re-login, ERP busy. The order stays queued and the target builds lag.
    case retryable(code: String, message: String)
    /// The ERP refused this order itself (unknown customer / material / warehouse, validation):
    /// retrying without a fix in the ERP or the mapping cannot help. The order goes to the
    /// pending queue (待处理队列) with this reason.
    case permanent(code: String, message: String)

    public var isRetryable: Bool { if case .retryable = self { true } else { false } }
    public var code: String {
        switch self { case .retryable(let c, _), .permanent(let c, _): c }
    }
    public var message: String {
        switch self { case .retryable(_, let m), .permanent(_, let m): m }
    }
    public var description: String {
        switch self {
        case .retryable(let c, let m): "retryable [\(c)]: \(m)"
        case .permanent(let c, let m): "refused [\(c)]: \(m)"
        }
    }
}

/// Stock the ERP holds for one material in one warehouse, read in one consistent pass.
public struct ErpStockLevel: Sendable, Equatable {
    public var material: String
    public var warehouse: String
    /// Physically on hand (Kingdee FBaseQty, Odoo `quantity`, Tryton `quantity`).
    public var onHand: Int64
    /// What the ERP can still promise: on hand minus the ERP's own open outgoing orders (Tryton
    /// `forecast_quantity`, Odoo `quantity − reserved_quantity`, Kingdee FBaseAvbQty, Jushuitan
    /// `qty − order_lock`). LiveSync's available stock is derived from this (see `ErpSync`).
    public var available: Int64
    /// Units of LiveSync's own sale orders (references it created) the ERP has recorded and not
    /// cancelled: what `available` already subtracts for LiveSync. `nil` when the ERP cannot say.
    /// Read BEFORE `available` within one `stockLevels` call (`ErpStockPull` relies on the order).
    public var recordedByLiveSync: Int64?

    public init(material: String, warehouse: String, onHand: Int64, available: Int64, recordedByLiveSync: Int64? = nil) {
        self.material = material
        self.warehouse = warehouse
        self.onHand = onHand
        self.available = available
        self.recordedByLiveSync = recordedByLiveSync
    }
}

/// What an adapter can do beyond creating and finding sale orders.
public enum ErpCapability: String, Sendable, Hashable, CaseIterable {
    case cancel
    case shipped
    case stock
}

/// One ERP's published API, as LiveSync's ERP sync uses it.
///
/// Contract: every call carries as many documents as the ERP's batch call allows (`maxBatchSize`),
/// never one HTTP call per order where a batch exists; whole-call failures throw `ErpError`,
/// per-document failures come back in the result map keyed by reference. An adapter signs,
/// logs in, re-logs in on session expiry and classifies the ERP's error codes itself; it never
/// retries a create on its own (the caller looks references up first, which is what makes a
/// retry safe).
public protocol ErpAdapter: Sendable {
    /// `tryton`, `kingdee`, `yonyou`, `jushuitan`, `odoo`, `webhook`.
    var kind: String { get }
    /// Most documents one create/lookup call may carry (the ERP's batch limit).
    var maxBatchSize: Int { get }
    var capabilities: Set<ErpCapability> { get }

    /// Finds the sale orders already in the ERP for `references` (one search call per batch).
    /// References absent from the result are not in the ERP.
    func lookup(references: [String]) async throws(ErpError) -> [String: ErpDocument]

    /// Creates `orders` with the ERP's batch call and takes each as far as the merchant's setting
    /// says (Kingdee Submit/Audit, Odoo `action_confirm`, Tryton quote + confirm). A document whose
    /// follow-up step failed comes back as `.draft` (the caller `confirm`s it later).
    func create(_ orders: [ErpSaleOrder]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>]

    /// Takes drafts found by `lookup` (a crash between create and confirm) to `.confirmed`.
    func confirm(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>]

    /// Cancels the documents (refund before shipping, order cancelled). Requires `.cancel`.
    func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>]

    /// Records that the goods left (carrier, tracking number). Requires `.shipped`.
    func markShipped(_ shipments: [ErpShipmentNotice]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>]

    /// Stock per material and warehouse, for `materials` (empty: every material the ERP lists
    /// in the configured warehouses). Requires `.stock`.
    func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel]
}

/// A shipment to record against a sale order already in the ERP.
public struct ErpShipmentNotice: Sendable, Equatable {
    public var document: ErpDocument
    public var carrier: String
    public var trackingNumber: String
    public var shippedAtUs: Int64
    public init(document: ErpDocument, carrier: String, trackingNumber: String, shippedAtUs: Int64) {
        self.document = document
        self.carrier = carrier
        self.trackingNumber = trackingNumber
        self.shippedAtUs = shippedAtUs
    }
}

extension ErpAdapter {
    public func cancel(_ documents: [ErpDocument]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        throw .permanent(code: "unsupported", message: "the \(kind) adapter cannot cancel sale orders")
    }
    public func markShipped(_ shipments: [ErpShipmentNotice]) async throws(ErpError) -> [String: Result<ErpDocument, ErpError>] {
        throw .permanent(code: "unsupported", message: "the \(kind) adapter does not record shipments")
    }
    public func stockLevels(materials: [String]) async throws(ErpError) -> [ErpStockLevel] {
        throw .permanent(code: "unsupported", message: "the \(kind) adapter cannot read stock")
    }
}
