import ErpBookStore
import Foundation
import Fulfillment
import GRDB
import Kafka
import LiveSyncTesting
import Logging
import Model
import Testing
import Worker

/// The read model's copy follows each partition's committed chain: duplicates change nothing,
/// and a fork (a member that lost the partition without knowing it) is undone by a rebuild
/// from the whole changelog, on a real broker.
@Suite(.serialized) struct ChangelogReplicaTests {
    /// An entry of partition 0's chain whose payload books one synced order.
    static func entry(writer: String, seq: Int64, previous: (String, Int64)?, order id: String) -> ChangelogEntry {
        var o = placedOrder(id, ingested: 1_000 * seq, sku: "SKU-R", platform: .generic, shopID: "shop-1")
        o.currency = "CNY"
        let r = reserved(id, sku: "SKU-R")
        var e = ChangelogEntry()
        e.writer = writer
        e.seq = seq
        if let previous { (e.prevWriter, e.prevSeq) = previous }
        e.nextOffsets = [Topics.ordersPlaced: seq]
        e.payload = Data(BookEntry(decidedAtUs: 5_000 * seq, inputs: [(.order, o.bytes), (.reservation, r.bytes)]).encoded())
        e.writtenAtUs = seq
        return e
    }

    /// The replica lives on one thread, as on a consumer's: these run synchronously.
    static func prepare(_ replica: ChangelogReplica, _ store: StateStore) throws {
        try store.database.write { try replica.prepare($0) }
    }

    static func apply(_ replica: ChangelogReplica, _ store: StateStore, _ messages: [KafkaMessage]) throws {
        try store.database.write { db in
            var out = BatchOutput(group: "test")
            try replica.apply(messages, db: db, output: &out)
        }
    }

    @Test func aReplicaSkipsDuplicatesAndUndoesAForkByRebuildingFromTheChangelog() async throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic(TopicSpecification(name: Topics.dispatchChangelog, partitions: 1, replicationFactor: 1))
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers)
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("replica-\(UUID().uuidString)").path
        let store = try StateStore(StateStoreConfiguration(path: dir + "/book.sqlite", synchronous: "OFF"))
        let replica = ChangelogReplica(sources: [.init(group: "livesync-dispatch", processor: DispatchProcessor(keepsTotals: true, partitionCount: 1))],
                                       kafka: kafka, logger: Logger(label: "test"))
        try Self.prepare(replica, store)
        var offset: Int64 = 0
        /// Publishes `entries` to the changelog, then hands them to the replica as one batch.
        func deliver(_ entries: [ChangelogEntry]) async throws {
            try await producer.send(try entries.map { ProducerMessage(topic: Topics.dispatchChangelog, key: "0", value: try $0.serializedBytes(), partition: 0) })
            let messages = try entries.map { e -> KafkaMessage in
                defer { offset += 1 }
                return KafkaMessage(topic: Topics.dispatchChangelog, partition: 0, offset: offset, key: Array("0".utf8), value: try e.serializedBytes())
            }
            try Self.apply(replica, store, messages)
        }
        func orders() async throws -> [String] {
            try await store.database.read { try String.fetchAll($0, sql: "SELECT order_id FROM erp_orders ORDER BY order_id") }
        }
        let a1 = Self.entry(writer: "a", seq: 1, previous: nil, order: "o1")
        let a2 = Self.entry(writer: "a", seq: 2, previous: ("a", 1), order: "o2")
        let a3 = Self.entry(writer: "a", seq: 3, previous: ("a", 2), order: "o3")
        // A member that lost the partition wrote its own third entry after a2.
        let f3 = Self.entry(writer: "f", seq: 3, previous: ("a", 2), order: "fork")
        let a4 = Self.entry(writer: "a", seq: 4, previous: ("a", 3), order: "o4")

        try await deliver([a1, a2, a2, a3])
        #expect(try await orders() == ["o1", "o2", "o3"], "the repeated entry changed nothing")
        // The fork ties with the chain (three entries each) and was written later: it is the chain now.
        try await deliver([f3])
        #expect(try await orders() == ["fork", "o1", "o2"])
        // The owner's next entry makes its chain the longest: the copy follows it again.
        try await deliver([a4, a3])
        #expect(try await orders() == ["o1", "o2", "o3", "o4"])
        let head = try await store.database.read { try StateStore.changelogSequences($0, group: "livesync-dispatch") }
        #expect(head == [0: 4])
        let positions = try await store.database.read { try StateStore.storedPositions($0, group: "livesync-dispatch") }
        #expect(positions.map(\.next) == [4], "dispatch's position as its last entry committed it")
        // The running totals were recounted with the rows.
        let totals = try await store.database.read { try Int.fetchOne($0, sql: "SELECT SUM(orders) FROM erp_summary_orders") }
        #expect(totals == 4)
    }
}
