import AsyncHTTPClient
import ErpBookStore
import Foundation
import GRDB
import Fulfillment
import Inventory
import Kafka
import LiveSyncTesting
import Logging
import Model
import NIOCore
import ReadModel
import Testing
import Worker

/// The read model's HTTP API (`BookServer`) and its client, over a copy written by the real
/// dispatch join: what every view relies on.
@Suite struct ReadModelTests {
    func get(_ url: String) async throws -> (Int, String) {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 20)))
    }

    @Test func aParameterThatIsNotANumberIsRefusedNamingIt() async throws {
        let book = try await LocalReadModel.start(path: temporaryDirectory("book-400") + "/book.sqlite")
        defer { book.stop() }
        let (status, body) = try await get(book.url + "/book/snapshot?totals=1&waitingLimit=ten")
        #expect(status == 400 && body.contains("waitingLimit") && body.contains("'ten'"), "\(status) \(body)")
        let (missing, reason) = try await get(book.url + "/book/shipment")
        #expect(missing == 400 && reason.contains("id"), "\(missing) \(reason)")
    }

    @Test func anUnknownShipmentIs404AndAKnownOneNamesItsOrder() async throws {
        let book = try await LocalReadModel.start(path: temporaryDirectory("book-shipment") + "/book.sqlite")
        defer { book.stop() }
        let id = "douyin:shop-1:DY1"
        try book.dispatch([(Topics.ordersPlaced, placedOrder(id, ingested: 1, quantity: 2, platform: .douyin, shopID: "shop-1").bytes), (Topics.stockReservations, reserved(id, .reserved, quantity: 2).bytes)])
        let (status, _) = try await get(book.url + "/book/shipment?id=douyin:shop-1:NOPE%2Fmain")
        #expect(status == 404)
        #expect(try await book.client.shipmentOwner("douyin:shop-1:NOPE/main") == nil)
        let owner = try #require(try await book.client.shipmentOwner("\(id)/main"))
        #expect(owner == ErpBookView.ShipmentOwner(orderID: id, platform: "douyin", shopID: "shop-1", platformOrderID: "DY1"))
        // A 404 from a server that is not a read model is not "no such shipment".
        await #expect(throws: BookClientError.self) { try await BookClient(baseURL: book.url + "/elsewhere").shipmentOwner("\(id)/main") }
    }

    @Test func decisionsKnownAndTheSnapshotRoundTrip() async throws {
        let book = try await LocalReadModel.start(path: temporaryDirectory("book-roundtrip") + "/book.sqlite")
        defer { book.stop() }
        let now = Clock.nowMicros()
        try book.dispatch([
            (Topics.ordersPlaced, placedOrder("o:synced", ingested: now - 3_000_000, quantity: 2, platform: .douyin, shopID: "shop-1").bytes), (Topics.stockReservations, reserved("o:synced", .reserved, quantity: 2).bytes),
            (Topics.ordersPlaced, placedOrder("o:rejected", ingested: now - 2_000_000, quantity: 2, platform: .douyin, shopID: "shop-1").bytes), (Topics.stockReservations, reserved("o:rejected", .rejected, quantity: 2).bytes),
            (Topics.ordersPlaced, placedOrder("o:waiting", ingested: now - 60_000_000, quantity: 2, platform: .douyin, shopID: "shop-1").bytes),
        ])
        let decisions = try await book.client.decisions().sorted { $0.orderID < $1.orderID }
        #expect(decisions.map(\.orderID) == ["o:rejected", "o:synced"] && decisions.map(\.status) == ["out_of_stock", "synced"])
        #expect(decisions.first?.ingestedAtUs == now - 2_000_000)
        #expect(try await book.client.known(["o:synced", "o:waiting", "o:none"]) == ["o:synced"])
        #expect(try await book.client.known(["o:synced", "o:waiting", "o:none"], includingPending: true) == ["o:synced", "o:waiting"])
        let s = try await book.client.snapshot(BookQuery(totals: true, recentOrders: 5, decisionsSinceSecond: now / 1_000_000 - 60,
                                                         waitingIngestedBefore: now - 30_000_000, waitingLimit: 10))
        #expect(s.decisions == 2 && s.rejectedDecisions == 1)
        #expect(s.waitingCount == 1 && s.waitingTotal == 1 && s.oldestWaiting?.map(\.orderID) == ["o:waiting"])
        #expect(s.groups?.reduce(0) { $0 + $1.orders } == 2 && s.rejectedLines == 1)
        #expect(s.recentOrders?.count == 2 && s.stock == nil, "parts not asked for are left out")
    }

    /// The copy as `livesync-book` writes it: `ChangelogReplica` applying dispatch's changelog
    /// entries. The client then sees the decisions and, from the same entry, the position
    /// dispatch committed with them (what `order_unsynced` reads from beyond); a republished
    /// entry changes nothing.
    @Test func whatTheReplicaAppliesFromTheChangelogIsWhatTheClientSees() async throws {
        let book = try await LocalReadModel.start(path: temporaryDirectory("book-replica") + "/book.sqlite")
        defer { book.stop() }
        let replica = ChangelogReplica(sources: [
            .init(group: "livesync-dispatch", processor: DispatchProcessor(keepsTotals: true)),
            .init(group: "livesync-stock", processor: StockProcessor()),
        ], kafka: KafkaConfiguration(bootstrapServers: "127.0.0.1:1"), logger: Logger(label: "test"))
        let id = "douyin:shop-1:DY7"
        var payload = BookEntry.Encoder(decidedAtUs: 5_000_000)
        payload.append(.order, placedOrder(id, ingested: 1_000_000, quantity: 2, platform: .douyin, shopID: "shop-1").bytes)
        payload.append(.reservation, reserved(id, .reserved, quantity: 2).bytes)
        var entry = ChangelogEntry()
        entry.writer = "livesync-dispatch/dispatch-1"
        entry.seq = 1
        entry.nextOffsets = [Topics.ordersPlaced: 8, Topics.stockReservations: 3]
        entry.payload = Data(payload.bytes)
        entry.writtenAtUs = 5_000_000
        let message = KafkaMessage(topic: Topics.dispatchChangelog, partition: 3, offset: 0, key: [], value: try entry.serializedBytes())
        // The entry, then a republished copy of it, in the consumer's batch transactions.
        func consume(_ messages: [KafkaMessage]) throws {
            try book.store.database.write { db in
                try replica.prepare(db)
                var out = BatchOutput(group: "livesync-book")
                try replica.apply(messages, db: db, output: &out)
            }
        }
        var republished = message
        republished.offset = 1
        try consume([message])
        try consume([republished])
        let s = try await book.client.snapshot(BookQuery(totals: true, positions: true))
        #expect(s.groups?.reduce(0) { $0 + $1.orders } == 1, "applied once")
        let dispatch = (s.positions ?? []).filter { $0.group == "livesync-dispatch" }.map { "\($0.topic)[\($0.partition)]=\($0.next)" }.sorted()
        #expect(dispatch == ["orders.placed[3]=8", "stock.reservations[3]=3"], "\(dispatch)")
        #expect(try await book.client.known([id]) == [id])
        #expect(try await book.client.shipmentOwner("\(id)/main")?.orderID == id)
    }

    /// Dispatch's entries of writes (`BookEntry` version 2), as a member without running totals
    /// writes them, applied by the replica as `livesync-book` does: the same rows as the
    /// member's, pending ones included, and totals counted from the entries.
    @Test func theReplicasCopyFromEntriesOfWritesEqualsTheMembersBookWithTotals() throws {
        let dir = temporaryDirectory("book-deltas")
        let member = try StateStore(StateStoreConfiguration(path: dir + "/dispatch.sqlite", synchronous: "OFF"))
        let dispatch = DispatchProcessor()
        try member.database.write { try dispatch.prepare($0) }
        let (a, b) = ("douyin:shop-1:DA", "douyin:shop-1:DB")
        let batches: [[(String, [UInt8])]] = [
            [(Topics.ordersPlaced, placedOrder(a, ingested: 1_000_000, platform: .douyin, shopID: "shop-1").bytes),
             (Topics.ordersPlaced, placedOrder(b, ingested: 2_000_000, platform: .douyin, shopID: "shop-1").bytes),
             (Topics.stockReservations, reserved(a).bytes)],
            [(Topics.stockReservations, reserved(b, .rejected).bytes)],
        ]
        var entries: [ChangelogEntry] = []
        var offset: Int64 = 0
        for batch in batches {
            let messages = batch.map { item -> KafkaMessage in
                offset += 1
                return KafkaMessage(topic: item.0, partition: 3, offset: offset, key: [], value: item.1)
            }
            let out = try member.database.write { db in
                var out = BatchOutput(group: "livesync-dispatch")
                try dispatch.apply(messages, db: db, output: &out)
                return out
            }
            let payload = try #require(out.changelog[3])
            #expect(payload.first == BookEntry.deltaVersion)
            var e = ChangelogEntry()
            (e.writer, e.seq, e.writtenAtUs) = ("livesync-dispatch/dispatch-1", Int64(entries.count + 1), offset)
            if let last = entries.last { (e.prevWriter, e.prevSeq) = (last.writer, last.seq) }
            e.nextOffsets = [Topics.ordersPlaced: offset]
            e.payload = Data(payload)
            entries.append(e)
        }

        let book = try StateStore(StateStoreConfiguration(path: dir + "/book.sqlite", synchronous: "OFF"))
        let replica = ChangelogReplica(sources: [.init(group: "livesync-dispatch", processor: DispatchProcessor(keepsTotals: true))],
                                       kafka: KafkaConfiguration(bootstrapServers: "127.0.0.1:1"), logger: Logger(label: "test"))
        try book.database.write { db in
            try replica.prepare(db)
            var out = BatchOutput(group: "livesync-book")
            let messages = try entries.enumerated().map { i, e in
                KafkaMessage(topic: Topics.dispatchChangelog, partition: 3, offset: Int64(i), key: [], value: try e.serializedBytes())
            }
            try replica.apply(messages, db: db, output: &out)
        }
        func rows(_ store: StateStore) throws -> [String] {
            try store.database.read { db in
                try ["erp_orders", "erp_order_lines", "erp_shipments", "erp_shipment_lines", "dispatch_pending_orders", "dispatch_pending_reservations"]
                    .flatMap { table in try Row.fetchAll(db, sql: "SELECT * FROM \(table)").map { "\(table) \($0)" }.sorted() }
            }
        }
        #expect(try rows(book) == rows(member))
        #expect(try rows(book).filter { $0.hasPrefix("erp_orders ") }.count == 2)
        let totals = try book.database.read { db in
            (try Int.fetchOne(db, sql: "SELECT SUM(orders) FROM erp_summary_orders"), try Int.fetchOne(db, sql: "SELECT SUM(lines) FROM erp_summary_rejected"),
             try Int.fetchOne(db, sql: "SELECT SUM(orders) FROM erp_summary_sync_ms"))
        }
        #expect(totals.0 == 2 && totals.1 == 1 && totals.2 == 1)
    }
}
