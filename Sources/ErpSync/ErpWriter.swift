import ErpAdapters
import Foundation
import GRDB
import Logging
import Model
import Synchronization
import Worker

/// How `livesync-erp` feeds its ERP: when a batch goes, how big, how fast.
public struct ErpWriterConfiguration: Sendable, Equatable {
    /// When queued orders are sent.
    public enum Trigger: Sendable, Equatable {
        /// Each decided order at once (a call as soon as anything is queued).
        case eachOrder
        /// When `orders` are queued or the oldest has waited `every`, whichever comes first.
        case batched(orders: Int, every: Duration)
    }
    /// Default: batches of 100 orders or every 2 s.
    public var trigger: Trigger = .batched(orders: 100, every: .seconds(2))
    /// Documents per ERP call; `nil`: the adapter's own batch limit (`ErpAdapter.maxBatchSize`).
    public var batchSize: Int?
    /// Calls in flight at once (each on different orders). Default 2.
    public var concurrency = 2
    /// ERP calls per second, all kinds together (the ERP's rate limit). Default 10.
    public var callsPerSecond: Double = 10
    /// Backoff after a retryable failure: `initialBackoff × 2^(attempts−1)`, at most `maxBackoff`.
    public var initialBackoff: Duration = .seconds(1)
    public var maxBackoff: Duration = .seconds(60)
    /// How often an idle writer looks at its queue. Default 200 ms.
    public var idlePoll: Duration = .milliseconds(200)
    public init() {}

    func backoff(attempts: Int) -> Duration {
        let factor = 1 << min(20, max(0, attempts - 1))
        return min(maxBackoff, initialBackoff * factor)
    }
}

/// Figures of a writer since it started, for `/erp/status`, `/metrics` and the dashboard.
public struct ErpWriterStatistics: Sendable, Codable, Equatable {
    public var written = 0
    public var cancelled = 0
    public var shipped = 0
    /// Found in the ERP by reference instead of created (a retry after a crash, a re-driven order).
    public var foundExisting = 0
    /// Cancelled before they reached the ERP: never created.
    public var skippedCancelled = 0
    public var refused = 0
    public var callsOK = 0
    public var callsRetryable = 0
    public var callsRefused = 0
    public var lastError = ""
    public var lastCallAtUs: Int64 = 0
    /// Orders written per second over the last minute.
    public var writtenPerSecond: Double = 0
    public init() {}
}

/// Takes the queue to the ERP: looks references up before creating (so a retry after a crash
/// between the ERP's answer and the local commit finds the document instead of creating a
/// second), creates in the ERP's batch calls, confirms, cancels and records shipments; the
/// ERP's refusals go to the pending queue, its failures back into the queue with a backoff.
///
/// Only items of `owned()` partitions are taken, so each order has one writer at a time.
public final class ErpWriter: Sendable {
    public let target: String
    public let adapter: any ErpAdapter
    public let mapping: ErpFieldMapping
    public let configuration: ErpWriterConfiguration
    let database: DatabaseQueue
    let owned: @Sendable () -> Set<Int32>
    /// Messages of the owned partitions not consumed yet (the consumer's lag): orders decided
    /// but not even queued here.
    let consumerLag: @Sendable () -> Int64
    let limiter: RateLimiter
    let logger: Logger
    let stats = Mutex(ErpWriterStatistics())
    let window = Mutex<[(at: Int64, n: Int)]>([])

    public init(target: String, adapter: any ErpAdapter, mapping: ErpFieldMapping, configuration: ErpWriterConfiguration,
                database: DatabaseQueue, owned: @escaping @Sendable () -> Set<Int32>, consumerLag: @escaping @Sendable () -> Int64 = { 0 }, logger: Logger) {
        self.target = target
        self.adapter = adapter
        self.mapping = mapping
        self.configuration = configuration
        self.database = database
        self.owned = owned
        self.consumerLag = consumerLag
        self.limiter = RateLimiter(perSecond: configuration.callsPerSecond)
        self.logger = logger
    }

    public var statistics: ErpWriterStatistics {
        var s = stats.withLock { $0 }
        s.writtenPerSecond = rate(now: Clock.nowMicros())
        return s
    }

    var batchSize: Int { max(1, min(configuration.batchSize ?? adapter.maxBatchSize, adapter.maxBatchSize)) }

    /// One pass over the due items of the owned partitions, if the trigger says they should go.
    /// - Returns: how many items it handled (0: nothing was due; the caller waits `idlePoll`).
    @discardableResult
    public func drainOnce(now: Int64 = Clock.nowMicros(), force: Bool = false) async throws -> Int {
        let partitions = owned()
        let size = batchSize
        let items = try await database.read { db in try ErpSyncStore.due(partitions: partitions, now: now, limit: size * max(1, self.configuration.concurrency), db) }
        guard !items.isEmpty else { return 0 }
        if !force, case .batched(let orders, let every) = configuration.trigger {
            let oldest = items.map(\.enqueuedAtUs).min() ?? now
            let waited = Duration.microseconds(now - oldest)
            guard items.count >= orders || waited >= every || items.contains(where: { $0.attempts > 0 }) else { return 0 }
        }
        let chunks = Self.chunks(items, size: size)
        await withTaskGroup(of: Void.self) { group in
            for chunk in chunks {
                group.addTask { await self.process(chunk) }
            }
        }
        return items.count
    }

    /// Splits items into chunks of at most `size`, keeping every item of an order in one chunk
    /// (its create, cancel and shipment are decided together, in order).
    static func chunks(_ items: [ErpSyncStore.Item], size: Int) -> [[ErpSyncStore.Item]] {
        var byOrder: [String: [ErpSyncStore.Item]] = [:]
        var order: [String] = []
        for item in items {
            if byOrder[item.orderID] == nil { order.append(item.orderID) }
            byOrder[item.orderID, default: []].append(item)
        }
        var chunks: [[ErpSyncStore.Item]] = []
        var current: [ErpSyncStore.Item] = []
        for id in order {
            let group = byOrder[id]!
            if !current.isEmpty && current.count + group.count > size {
                chunks.append(current)
                current = []
            }
            current += group
        }
        if !current.isEmpty { chunks.append(current) }
        return chunks
    }

    // MARK: One chunk

    func process(_ chunk: [ErpSyncStore.Item]) async {
        let creates = chunk.filter { $0.work == .create }
        let cancels = chunk.filter { $0.work == .cancel }
        let ships = chunk.filter { $0.work == .ship }
        let cancelling = Set(cancels.map(\.orderID))
        do {
            if !creates.isEmpty { try await create(creates, cancelling: cancelling) }
            if !cancels.isEmpty { try await cancel(cancels) }
            if !ships.isEmpty { try await ship(ships) }
        } catch {
            logger.error("ERP writer pass failed on the local store; the items stay queued", metadata: ["error": "\(error)"])
        }
    }

    /// Runs one adapter call through the rate limit and counts its outcome. A whole-call
    /// failure puts `items` back in the queue with a backoff (or, `unsupported`, in the
    /// pending queue) and returns nil.
    func call<T: Sendable>(_ what: String, items: [ErpSyncStore.Item], _ body: () async throws(ErpError) -> T) async throws -> T? {
        await limiter.acquire()
        do {
            let value = try await body()
            stats.withLock { $0.callsOK += 1; $0.lastCallAtUs = Clock.nowMicros() }
            return value
        } catch {
            let now = Clock.nowMicros()
            stats.withLock {
                if error.isRetryable { $0.callsRetryable += 1 } else { $0.callsRefused += 1 }
                $0.lastError = "\(what): \(error)"
                $0.lastCallAtUs = now
            }
            logger.warning("ERP call failed", metadata: ["target": "\(target)", "call": "\(what)", "error": "\(error)", "items": "\(items.count)"])
            try await database.write { db in
                for item in items {
                    if error.code == "unsupported" {
                        try ErpSyncStore.refuse(item, error: error, now: now, db)
                    } else {
                        // Wrong credentials or a broken ERP refuse the whole call: that is lag
                        // and an alert, not a reason to park every order.
                        try ErpSyncStore.retryLater(item.seq, at: now + self.configuration.backoff(attempts: item.attempts + 1).microseconds, error: "\(error)", db)
                    }
                }
            }
            return nil
        }
    }

    func create(_ items: [ErpSyncStore.Item], cancelling: Set<String>) async throws {
        let now0 = Clock.nowMicros()
        // 1. What the ERP already has: local records first, then one lookup for the rest.
        let local = try await database.read { db in
            try Dictionary(uniqueKeysWithValues: items.compactMap { i in try ErpSyncStore.document(i.reference, db).map { (i.reference, $0.document) } })
        }
        let unknown = items.filter { local[$0.reference] == nil }
        var found: [String: ErpDocument] = [:]
        if !unknown.isEmpty {
            for part in stride(from: 0, to: unknown.count, by: batchSize).map({ Array(unknown[$0..<min($0 + batchSize, unknown.count)]) }) {
                guard let f = try await call("lookup", items: part, { () async throws(ErpError) in try await adapter.lookup(references: part.map(\.reference)) }) else { return }
                found.merge(f) { a, _ in a }
            }
        }
        // 2. Create what is missing, unless the order is being cancelled in this same pass.
        let known = found
        let sorted = try await database.write { db in
            var out = Sorted()
            for item in items {
                if let doc = local[item.reference] ?? known[item.reference] {
                    if local[item.reference] == nil {
                        try ErpSyncStore.record(doc, orderID: item.orderID, warehouse: Self.warehouse(of: item), now: now0, db)
                        out.found += 1
                    }
                    if doc.state == .draft && !cancelling.contains(item.orderID) {
                        out.drafts.append((item, doc))  // done once confirmed
                    } else {
                        try ErpSyncStore.done(item.seq, db)
                    }
                } else if cancelling.contains(item.orderID) {
                    try ErpSyncStore.done(item.seq, db)
                    out.skipped += 1
                } else if let order = try? Order(serializedBytes: item.payload),
                          let sale = self.mapping.saleOrders(order).first(where: { $0.reference == item.reference }) {
                    out.toCreate.append((item, sale))
                } else {
                    try ErpSyncStore.refuse(item, error: .permanent(code: "livesync_payload", message: "the queued order \(item.orderID) cannot be decoded into a sale order"), now: now0, db)
                }
            }
            return out
        }
        var drafts = sorted.drafts
        stats.withLock { $0.foundExisting += sorted.found; $0.skippedCancelled += sorted.skipped }
        if sorted.found > 0 {
            logger.info("found orders already in the ERP by reference: not created again", metadata: ["target": "\(target)", "count": "\(sorted.found)"])
        }
        // 3. One batch call per `batchSize` orders.
        let toCreate = sorted.toCreate
        for part in stride(from: 0, to: toCreate.count, by: batchSize).map({ Array(toCreate[$0..<min($0 + batchSize, toCreate.count)]) }) {
            let orders = part.map(\.1)
            guard let results = try await call("create", items: part.map(\.0), { () async throws(ErpError) in try await adapter.create(orders) }) else { continue }
            let now = Clock.nowMicros()
            let (written, refused, newDrafts) = try await database.write { db in
                var written = 0, refused = 0
                var newDrafts: [(ErpSyncStore.Item, ErpDocument)] = []
                for (item, sale) in part {
                    switch results[sale.reference] {
                    case .success(let doc)?:
                        try ErpSyncStore.record(doc, orderID: item.orderID, warehouse: Self.warehouse(of: item), now: now, db)
                        if doc.state == .draft { newDrafts.append((item, doc)) } else { try ErpSyncStore.done(item.seq, db) }
                        written += 1
                    case .failure(let error)? where error.isRetryable:
                        try ErpSyncStore.retryLater(item.seq, at: now + self.configuration.backoff(attempts: item.attempts + 1).microseconds, error: "\(error)", db)
                    case .failure(let error)?:
                        try ErpSyncStore.refuse(item, error: error, now: now, db)
                        refused += 1
                    case nil:
                        // The ERP said nothing of it: ask again later (the lookup finds it if it was made).
                        try ErpSyncStore.retryLater(item.seq, at: now + self.configuration.backoff(attempts: item.attempts + 1).microseconds,
                                                    error: "the ERP's answer did not mention \(sale.reference)", db)
                    }
                }
                try ErpSyncStore.add("written", written, db)
                return (written, refused, newDrafts)
            }
            drafts += newDrafts
            if refused > 0 {
                logger.warning("the ERP refused orders: they wait in the pending queue (livesync erp pending)", metadata: ["target": "\(target)", "count": "\(refused)"])
            }
            record(written: written, refused: refused)
        }
        // 4. Drafts (a follow-up step failed, or a crash or restart between create and confirm)
        // are confirmed; their items stay queued until they are, so a draft is never forgotten.
        if !drafts.isEmpty {
            let drafts = drafts
            let documents = drafts.map(\.1)
            guard let results = try await call("confirm", items: drafts.map(\.0), { () async throws(ErpError) in try await adapter.confirm(documents) }) else { return }
            let now = Clock.nowMicros()
            try await database.write { db in
                for (item, doc) in drafts {
                    switch results[doc.reference] {
                    case .success(let confirmed)? where confirmed.state != .draft:
                        try ErpSyncStore.record(confirmed, orderID: item.orderID, warehouse: try ErpSyncStore.document(doc.reference, db)?.warehouse ?? "", now: now, db)
                        try ErpSyncStore.done(item.seq, db)
                    case .failure(let error)? where !error.isRetryable:
                        try ErpSyncStore.refuse(item, error: error, now: now, db)
                    default:
                        try ErpSyncStore.retryLater(item.seq, at: now + self.configuration.backoff(attempts: item.attempts + 1).microseconds,
                                                    error: "\(doc.reference) is still a draft in the ERP: confirming it again", db)
                    }
                }
            }
        }
    }

    func cancel(_ items: [ErpSyncStore.Item]) async throws {
        // Whatever of the order is still queued or pending will not be created now; but a create
        // whose answer was lost (a timeout, the ERP restarting) may have been made: the ERP is
        // asked for those references before they are given up.
        let (known, unsure) = try await database.read { db in
            var known: [String: [ErpDocument]] = [:]
            var unsure: [String: [String]] = [:]
            for item in items {
                known[item.orderID] = try ErpSyncStore.documents(orderID: item.orderID, db).map(\.document)
                let open = try ErpSyncStore.openReferences(orderID: item.orderID, work: .create, db)
                if !open.isEmpty { unsure[item.orderID] = open }
            }
            return (known, unsure)
        }
        let asked = unsure.values.flatMap { $0 }
        var found: [String: ErpDocument] = [:]
        if !asked.isEmpty {
            guard let f = try await call("lookup", items: items, { () async throws(ErpError) in try await adapter.lookup(references: asked) }) else { return }
            found = f
        }
        let now0 = Clock.nowMicros()
        let inErp = found
        let (targets, skipped) = try await database.write { db in
            var targets: [(ErpSyncStore.Item, [ErpDocument])] = []
            var skipped = 0
            for item in items {
                var docs = known[item.orderID] ?? []
                for ref in unsure[item.orderID] ?? [] {
                    if let doc = inErp[ref] {
                        try ErpSyncStore.record(doc, orderID: item.orderID, warehouse: String(ref.split(separator: "#").dropFirst().first ?? ""), now: now0, db)
                        docs.append(doc)
                    } else {
                        skipped += 1
                    }
                }
                if unsure[item.orderID] != nil { try ErpSyncStore.drop(orderID: item.orderID, work: .create, db) }
                docs = docs.filter { $0.state != .cancelled }
                if docs.isEmpty {
                    try ErpSyncStore.done(item.seq, db)
                } else {
                    targets.append((item, docs))
                }
            }
            return (targets, skipped)
        }
        stats.withLock { $0.skippedCancelled += skipped }
        guard !targets.isEmpty else { return }
        let docs = targets.flatMap(\.1)
        guard let results = try await call("cancel", items: targets.map(\.0), { () async throws(ErpError) in try await adapter.cancel(docs) }) else { return }
        let now = Clock.nowMicros()
        let cancelled = try await database.write { db in
            var cancelled = 0
            for (item, docs) in targets {
                var retry: ErpError?
                var refusal: ErpError?
                for doc in docs {
                    switch results[doc.reference] {
                    case .success(let d)?:
                        try ErpSyncStore.record(d, orderID: item.orderID, warehouse: try ErpSyncStore.document(doc.reference, db)?.warehouse ?? "", now: now, db)
                    case .failure(let e)? where e.isRetryable: retry = e
                    case .failure(let e)?: refusal = e
                    case nil: retry = .retryable(code: "no_answer", message: "the ERP's answer did not mention \(doc.reference)")
                    }
                }
                if let refusal {
                    try ErpSyncStore.refuse(item, error: refusal, now: now, db)
                } else if let retry {
                    try ErpSyncStore.retryLater(item.seq, at: now + self.configuration.backoff(attempts: item.attempts + 1).microseconds, error: "\(retry)", db)
                } else {
                    try ErpSyncStore.done(item.seq, db)
                    cancelled += 1
                }
            }
            return cancelled
        }
        stats.withLock { $0.cancelled += cancelled }
    }

    func ship(_ items: [ErpSyncStore.Item]) async throws {
        let now0 = Clock.nowMicros()
        let notices = try await database.write { db in
            var notices: [(ErpSyncStore.Item, ErpShipmentNotice)] = []
            for item in items {
                guard let shipped = try? ShipmentShipped(serializedBytes: item.payload) else {
                    try ErpSyncStore.refuse(item, error: .permanent(code: "livesync_payload", message: "the queued shipment cannot be decoded"), now: now0, db)
                    continue
                }
                let warehouse = shipped.shipmentID.split(separator: "/").last.map(String.init) ?? ""
                let docs = try ErpSyncStore.documents(orderID: item.orderID, db)
                guard let doc = docs.first(where: { $0.warehouse == warehouse }) ?? (docs.count == 1 ? docs.first : nil) else {
                    if try ErpSyncStore.hasOpen(orderID: item.orderID, work: .create, db) {
                        // The sale order is not in the ERP yet: the shipment waits behind it.
                        try ErpSyncStore.retryLater(item.seq, at: now0 + self.configuration.backoff(attempts: item.attempts + 1).microseconds,
                                                    error: "waiting for the sale order to reach the ERP", db)
                    } else {
                        try ErpSyncStore.refuse(item, error: .permanent(code: "no_sale_order", message: "no ERP sale order for \(shipped.shipmentID)"), now: now0, db)
                    }
                    continue
                }
                notices.append((item, ErpShipmentNotice(document: doc.document, carrier: shipped.carrier, trackingNumber: shipped.trackingNo, shippedAtUs: shipped.shippedAtUs)))
            }
            return notices
        }
        guard !notices.isEmpty else { return }
        let list = notices.map(\.1)
        guard let results = try await call("markShipped", items: notices.map(\.0), { () async throws(ErpError) in try await adapter.markShipped(list) }) else { return }
        let now = Clock.nowMicros()
        let shippedCount = try await database.write { db in
            var shippedCount = 0
            for (item, notice) in notices {
                switch results[notice.document.reference] {
                case .success(let d)?:
                    try ErpSyncStore.record(d, orderID: item.orderID, warehouse: try ErpSyncStore.document(d.reference, db)?.warehouse ?? "", now: now, db)
                    try ErpSyncStore.done(item.seq, db)
                    shippedCount += 1
                case .failure(let e)? where !e.isRetryable:
                    try ErpSyncStore.refuse(item, error: e, now: now, db)
                case .failure(let e)?:
                    try ErpSyncStore.retryLater(item.seq, at: now + self.configuration.backoff(attempts: item.attempts + 1).microseconds, error: "\(e)", db)
                case nil:
                    try ErpSyncStore.retryLater(item.seq, at: now + self.configuration.backoff(attempts: item.attempts + 1).microseconds, error: "no answer for \(notice.document.reference)", db)
                }
            }
            return shippedCount
        }
        stats.withLock { $0.shipped += shippedCount }
    }

    /// What step 2 of `create` made of the items.
    struct Sorted {
        var toCreate: [(ErpSyncStore.Item, ErpSaleOrder)] = []
        var drafts: [(ErpSyncStore.Item, ErpDocument)] = []
        var found = 0
        var skipped = 0
    }

    static func warehouse(of item: ErpSyncStore.Item) -> String {
        if let i = item.reference.lastIndex(of: "#") { return String(item.reference[item.reference.index(after: i)...]) }
        return (try? Order(serializedBytes: item.payload))?.lines.first?.warehouse ?? ""
    }

    // MARK: Rate

    func record(written: Int, refused: Int) {
        let now = Clock.nowMicros()
        stats.withLock { $0.written += written; $0.refused += refused }
        window.withLock { w in
            w.append((now, written))
            w.removeAll { now - $0.at > 60_000_000 }
        }
    }

    func rate(now: Int64) -> Double {
        window.withLock { w in
            let recent = w.filter { now - $0.at <= 60_000_000 }
            guard let first = recent.first else { return 0 }
            let span = max(1.0, Double(now - first.at) / 1e6)
            return Double(recent.reduce(0) { $0 + $1.n }) / span
        }
    }
}

extension Duration {
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
}

/// Spaces calls `1/perSecond` apart (a token bucket of one): the ERP's rate limit, shared by
/// every concurrent call of a writer. Waiting is a timed sleep, never a spin.
actor RateLimiter {
    let interval: Duration
    var next = ContinuousClock.now

    init(perSecond: Double) {
        interval = perSecond > 0 ? .nanoseconds(Int64(1e9 / perSecond)) : .zero
    }

    func acquire() async {
        let now = ContinuousClock.now
        let slot = max(now, next)
        next = slot + interval
        if slot > now { try? await Task.sleep(until: slot, clock: .continuous) }
    }
}
