import Bootstrap
import ErpAdapters
import Foundation
import Worker

/// `livesync-erp`'s settings, read once at start. Each default is stated once, here or in
/// `ErpWriterConfiguration`; the adapter's own settings are read by `ErpAdapterSettings`.
public struct ErpSyncConfiguration: Sendable {
    /// The ERP target's name (`erp.target`, default `erp`): its consumer group is
    /// `livesync-erp-<target>`, so each configured ERP consumes every order once.
    public var target = "erp"
    /// Which adapter (`erp.kind`): tryton, kingdee, yonyou, jushuitan, odoo, webhook.
    public var kind = ""
    /// Which order states are sent (`erp.send`, default `paid,refunded`).
    public var send: Set<ErpSendState> = [.paid, .refunded]
    public var writer = ErpWriterConfiguration()
    /// How often the ERP's stock is pulled into LiveSync (`erp.stockPullIntervalMs`, default 0:
    /// only on demand, `livesync erp pull-stock`). Only the member owning partition 0 pulls on schedule.
    public var stockPullInterval: Duration = .zero
    public var mapping = ErpFieldMapping()

    public init() {}

    public var group: String { "livesync-erp-\(target)" }

    public static func load(_ settings: LiveSyncConfig) throws -> ErpSyncConfiguration {
        var c = ErpSyncConfiguration()
        c.target = settings.string("erp.target", default: c.target)
        guard c.target.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }), !c.target.isEmpty else {
            throw ConfigurationError("erp.target must be letters, digits, - or _ (it names the consumer group), not '\(c.target)'")
        }
        c.kind = settings.string("erp.kind", default: "")
        guard ErpAdapterSettings.kinds.contains(c.kind) else {
            throw ConfigurationError("erp.kind must be one of \(ErpAdapterSettings.kinds.joined(separator: ", ")) (LIVESYNC_ERP_KIND), not '\(c.kind)'")
        }
        let send = settings.string("erp.send", default: c.send.map(\.rawValue).sorted().joined(separator: ","))
        var states: Set<ErpSendState> = []
        for s in send.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !s.isEmpty {
            guard let state = ErpSendState(rawValue: s) else {
                throw ConfigurationError("erp.send: '\(s)' is not a state; use \(ErpSendState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            states.insert(state)
        }
        c.send = states
        switch settings.string("erp.trigger", default: "batch") {
        case "each": c.writer.trigger = .eachOrder
        case "batch":
            let orders = try settings.int("erp.batchOrders", default: 100)
            let every = try settings.int("erp.batchEveryMs", default: 2000)
            guard orders > 0, every >= 0 else { throw ConfigurationError("erp.batchOrders must be > 0 and erp.batchEveryMs >= 0") }
            c.writer.trigger = .batched(orders: orders, every: .milliseconds(every))
        case let other:
            throw ConfigurationError("erp.trigger must be 'each' (every decided order at once) or 'batch' (erp.batchOrders / erp.batchEveryMs), not '\(other)'")
        }
        let size = try settings.int("erp.batchSize", default: 0)
        c.writer.batchSize = size > 0 ? size : nil
        c.writer.concurrency = try settings.int("erp.concurrency", default: c.writer.concurrency)
        c.writer.callsPerSecond = Double(try settings.int("erp.callsPerSecond", default: Int(c.writer.callsPerSecond)))
        guard c.writer.concurrency >= 1, c.writer.callsPerSecond > 0 else {
            throw ConfigurationError("erp.concurrency must be >= 1 and erp.callsPerSecond > 0")
        }
        c.writer.initialBackoff = .milliseconds(try settings.int("erp.initialBackoffMs", default: 1000))
        c.writer.maxBackoff = .milliseconds(try settings.int("erp.maxBackoffMs", default: 60_000))
        c.stockPullInterval = .milliseconds(try settings.int("erp.stockPullIntervalMs", default: 0))
        if let file = settings.optionalString("erp.mappingFile"), !file.isEmpty {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ConfigurationError("erp.mappingFile \(file) cannot be read")
            }
            c.mapping = try ErpFieldMapping.parse(text, source: file)
        }
        return c
    }
}
