import ErpAdapters
import ErpSync
import Foundation
import GRDB
import Kafka
import LiveSyncTesting
import Logging
import Model
import Testing
import Worker

/// `livesync-erp`'s queue and writer against an ERP that keeps the adapter contract in memory.
@Suite struct ErpWriterTests {
    let db: DatabaseQueue
    let erp: InMemoryErp
    let processor = ErpOutcomeProcessor(send: [.paid, .refunded, .shipped])

    init() throws {
        db = try DatabaseQueue()
        erp = InMemoryErp(materials: ["SKU-1", "SKU-2"], maxBatchSize: 50)
        try db.write { try processor.prepare($0) }
    }

    func writer(owned: Set<Int32> = Set(0..<16), mapping: ErpFieldMapping = ErpFieldMapping(), backoff: Duration = .milliseconds(10)) -> ErpWriter {
        var c = ErpWriterConfiguration()
        c.trigger = .eachOrder
        c.callsPerSecond = 10_000
        c.initialBackoff = backoff
        return ErpWriter(target: "test", adapter: erp, mapping: mapping, configuration: c, database: db, owned: { owned }, logger: Logger(label: "test"))
    }

    static func order(_ n: Int, sku: String = "SKU-1", warehouses: [String] = ["main"]) -> Order {
        var o = Order()
        o.orderID = "generic:shop-1:\(n)"
        o.platform = .generic
        o.shopID = "shop-1"
        o.platformOrderID = "\(n)"
        o.currency = "CNY"
        for (i, w) in warehouses.enumerated() {
            var l = OrderLine()
            l.orderID = o.orderID
            l.lineNo = UInt32(i + 1)
            l.sku = sku
            l.warehouse = w
            l.quantity = 2
            l.unitPriceFen = 1990
            o.lines.append(l)
        }
        return o
    }

    func deliver(_ outcomes: [OrderOutcome], partition: Int32 = 3) throws {
        var output = BatchOutput(group: "test")
        let messages = outcomes.enumerated().map { KafkaMessage(topic: Topics.orderOutcomes, partition: partition, offset: Int64($0.offset), key: Array($0.element.orderID.utf8), value: $0.element.bytes) }
        try db.write { try processor.apply(messages, db: $0, output: &output) }
        #expect(output.deadLetters == 0)
    }

    static func synced(_ order: Order) -> OrderOutcome {
        var o = OrderOutcome()
        o.orderID = order.orderID
        o.kind = .synced
        o.order = order
        return o
    }

    static func cancelled(_ orderID: String) -> OrderOutcome {
        var o = OrderOutcome()
        o.orderID = orderID
        o.kind = .cancelled
        return o
    }

    var counts: ErpSyncStore.Counts { get throws { try db.read { try ErpSyncStore.counts(partitions: Set(0..<16), $0) } } }

    @Test func decidedOrdersReachTheErpInOneBatchCallEachOnce() async throws {
        try deliver((1...30).map { Self.synced(Self.order($0)) })
        try deliver((1...30).map { Self.synced(Self.order($0)) })  // redelivered: queued once
        #expect(try counts.queued == 30)
        let w = writer()
        _ = try await w.drainOnce(force: true)
        #expect(erp.documentCount == 30)
        #expect(erp.calls("create") == 1)
        #expect(erp.calls("lookup") == 1)
        #expect(try counts.queued == 0)
        #expect(try counts.documents == 30)
        // Delivered again after they were written: nothing is queued, nothing is sent.
        try deliver((1...30).map { Self.synced(Self.order($0)) })
        #expect(try counts.queued == 0)
        #expect(erp.state.withLock { $0.duplicateCreates } == 0)
    }

    @Test func anAnswerLostAfterTheErpCommittedIsFoundByReferenceNotCreatedTwice() async throws {
        try deliver((1...5).map { Self.synced(Self.order($0)) })
        erp.state.withLock { $0.loseNextCreateAnswer = true }
        let w = writer()
        _ = try await w.drainOnce(force: true)
        #expect(erp.documentCount == 5)
        #expect(try counts.queued == 5)  // LiveSync does not know they were made
        _ = try await w.drainOnce(now: Clock.nowMicros() + 3_600_000_000, force: true)
        #expect(try counts.queued == 0)
        #expect(erp.calls("create") == 1)
        #expect(erp.state.withLock { $0.duplicateCreates } == 0)
        #expect(w.statistics.foundExisting == 5)
    }

    @Test func anOrderTheErpRefusesWaitsInThePendingQueueAndIsRedrivenAfterTheFix() async throws {
        try deliver([Self.synced(Self.order(1)), Self.synced(Self.order(2, sku: "SKU-NEW"))])
        let w = writer()
        _ = try await w.drainOnce(force: true)
        #expect(erp.documentCount == 1)
        let pending = try await db.read { try ErpSyncStore.pending(partitions: Set(0..<16), $0) }
        #expect(pending.map(\.orderID) == ["generic:shop-1:2"])
        #expect(pending.first?.code == "unknown_material")
        #expect(pending.first?.message.contains("SKU-NEW") == true)
        // Redelivery does not queue it again behind the operator's back.
        try deliver([Self.synced(Self.order(2, sku: "SKU-NEW"))])
        #expect(try counts.queued == 0)
        // The merchant adds the material in the ERP, the operator re-drives it.
        erp.state.withLock { _ = $0.materials.insert("SKU-NEW") }
        #expect(try await db.write { try ErpSyncStore.redrive(orderID: "generic:shop-1:2", partitions: Set(0..<16), now: Clock.nowMicros(), $0) } == 1)
        _ = try await w.drainOnce(force: true)
        #expect(erp.documentCount == 2)
        #expect(try counts.pending == 0)
    }

    @Test func anErpThatIsDownBuildsLagNotLoss() async throws {
        try deliver((1...10).map { Self.synced(Self.order($0)) })
        erp.state.withLock { $0.failNext = 3 }
        let w = writer(backoff: .seconds(30))
        _ = try await w.drainOnce(force: true)
        #expect(try counts.queued == 10)
        #expect(try counts.pending == 0)
        #expect(w.statistics.callsRetryable == 1)
        #expect(w.statistics.lastError.contains("ERP down"))
        // Not due before its backoff.
        #expect(try await w.drainOnce() == 0)
        var later = Clock.nowMicros()
        while try counts.queued > 0 {
            later += 120_000_000
            _ = try await w.drainOnce(now: later, force: true)
        }
        #expect(erp.documentCount == 10)
        #expect(erp.state.withLock { $0.duplicateCreates } == 0)
    }

    @Test func anOrderCancelledBeforeItReachedTheErpIsNeverCreatedAndOneCancelledAfterIsCancelled() async throws {
        try deliver([Self.synced(Self.order(1)), Self.cancelled("generic:shop-1:1"), Self.synced(Self.order(2))])
        let w = writer()
        _ = try await w.drainOnce(force: true)
        #expect(erp.state.withLock { $0.documents["generic:shop-1:1"] } == nil)
        #expect(erp.documentCount == 1)
        try deliver([Self.cancelled("generic:shop-1:2")])
        _ = try await w.drainOnce(force: true)
        #expect(erp.state.withLock { $0.documents["generic:shop-1:2"]?.state } == .cancelled)
        #expect(try counts.queued == 0)
    }

    @Test func aCancellationAfterALostCreateAnswerCancelsTheSaleTheErpDidMake() async throws {
        try deliver([Self.synced(Self.order(1))])
        erp.state.withLock { $0.loseNextCreateAnswer = true }
        let w = writer(backoff: .seconds(30))
        _ = try await w.drainOnce(force: true)
        #expect(erp.state.withLock { $0.documents["generic:shop-1:1"]?.state } == .confirmed)  // made, but LiveSync was not told
        // The refund comes while the create waits for its retry: the cancel must find the sale.
        try deliver([Self.cancelled("generic:shop-1:1")])
        _ = try await w.drainOnce(force: true)
        #expect(erp.state.withLock { $0.documents["generic:shop-1:1"]?.state } == .cancelled)
        #expect(try counts.queued == 0)
        #expect(erp.calls("create") == 1)
    }

    @Test func aDraftStaysQueuedUntilTheErpConfirmsIt() async throws {
        try deliver([Self.synced(Self.order(1))])
        erp.state.withLock { $0.confirmOnCreate = false }  // saved, the follow-up step lost (an ERP restart)
        let w = writer(backoff: .seconds(30))
        _ = try await w.drainOnce(force: true)
        #expect(erp.state.withLock { $0.documents["generic:shop-1:1"]?.state } == .confirmed)
        #expect(try counts.queued == 0)

        try deliver([Self.synced(Self.order(2))])
        erp.state.withLock { $0.confirmOnCreate = false }
        // Create succeeds as a draft; the confirm that follows fails as the ERP goes down.
        erp.state.withLock { $0.failConfirm = true }
        _ = try await w.drainOnce(force: true)
        #expect(erp.state.withLock { $0.documents["generic:shop-1:2"]?.state } == .draft)
        #expect(try counts.queued == 1, "still queued: a draft is not a written order")
        erp.state.withLock { $0.failConfirm = false }
        _ = try await w.drainOnce(now: Clock.nowMicros() + 3_600_000_000, force: true)
        #expect(erp.state.withLock { $0.documents["generic:shop-1:2"]?.state } == .confirmed)
        #expect(try counts.queued == 0)
        #expect(erp.calls("create") == 2)
    }

    @Test func anOrderOverTwoWarehousesBecomesOneSaleOrderPerWarehouse() async throws {
        try deliver([Self.synced(Self.order(7, warehouses: ["main", "east"]))])
        _ = try await writer().drainOnce(force: true)
        let refs = erp.state.withLock { Array($0.documents.keys).sorted() }
        #expect(refs == ["generic:shop-1:7#east", "generic:shop-1:7#main"])
    }

    @Test func onlyOwnedPartitionsAreWritten() async throws {
        try deliver([Self.synced(Self.order(1))], partition: 3)
        try deliver([Self.synced(Self.order(2))], partition: 4)
        _ = try await writer(owned: [4]).drainOnce(force: true)
        #expect(erp.state.withLock { Array($0.documents.keys) } == ["generic:shop-1:2"])
        #expect(try counts.queued == 1)
    }

    @Test func aBatchedTriggerWaitsForEnoughOrdersOrTime() async throws {
        var c = ErpWriterConfiguration()
        c.trigger = .batched(orders: 10, every: .seconds(5))
        c.callsPerSecond = 10_000
        let w = ErpWriter(target: "t", adapter: erp, mapping: .init(), configuration: c, database: db, owned: { Set(0..<16) }, logger: Logger(label: "t"))
        try deliver((1...3).map { Self.synced(Self.order($0)) })
        #expect(try await w.drainOnce() == 0)
        #expect(try await w.drainOnce(now: Clock.nowMicros() + 6_000_000) == 3)
        #expect(erp.documentCount == 3)
    }
}
