import Foundation
import GRDB
import Kafka
import Model
import Testing
@testable import Worker

/// A real `StateStore` in a temporary directory, removed at the end of the test.
private func withTemporaryStore<T>(_ body: (StateStore) throws -> T) throws -> T {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("worker-tests-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    let store = try StateStore(StateStoreConfiguration(path: dir.appendingPathComponent("state.sqlite").path, synchronous: "OFF"))
    return try body(store)
}

private func produced(_ topic: String, _ value: String, partition: Int32? = nil) -> ProducerMessage {
    ProducerMessage(topic: topic, key: "k-\(value)", value: Array(value.utf8), partition: partition)
}

private func values(_ messages: [ProducerMessage]) -> [String] { messages.map { String(decoding: $0.value, as: UTF8.self) } }

@Test func offsetsOfABatchAndOfARestoredEntryAreUpsertedForTheGroup() throws {
    try withTemporaryStore { store in
        let a = ConsumerStore(group: "stock", owner: "stock/a")
        let other = ConsumerStore(group: "dispatch", owner: "dispatch/a")
        try store.database.write { db in
            try a.saveOffsets([TopicPartition("orders", 0): 5, TopicPartition("orders", 1): 7], at: 1, db)
            try other.saveOffsets([TopicPartition("orders", 0): 99], at: 1, db)
            try a.saveOffsets([TopicPartition("orders", 0): 6], at: 2, db)
            try a.saveOffsets(["adjustments": 3, "orders": 8], partition: 1, at: 3, db)
        }
        #expect(try store.offsets(group: "stock") == [
            TopicPartition("orders", 0): 6, TopicPartition("orders", 1): 8, TopicPartition("adjustments", 1): 3,
        ])
        #expect(try store.offsets(group: "dispatch") == [TopicPartition("orders", 0): 99])
    }
}

@Test func aRebuildForgetsOnlyThatPartitionsOffsetsAndHead() throws {
    try withTemporaryStore { store in
        let a = ConsumerStore(group: "stock", owner: "stock/a")
        try store.database.write { db in
            try a.saveOffsets([TopicPartition("orders", 0): 5, TopicPartition("adjustments", 0): 2, TopicPartition("orders", 1): 7], at: 1, db)
            try a.saveHead(ChangelogHead(writer: "stock/a", seq: 3), partition: 0, db)
            try a.saveHead(ChangelogHead(writer: "stock/b", seq: 9), partition: 1, db)
            try a.saveHead(ChangelogHead(writer: "stock/a", seq: 4), partition: 0, db)
        }
        #expect(try store.database.read { db in try a.head(partition: 0, db) } == ChangelogHead(writer: "stock/a", seq: 4))
        try store.database.write { db in try a.forget(partition: 0, db) }
        #expect(try store.database.read { db in try a.head(partition: 0, db) } == nil)
        #expect(try store.database.read { db in try a.head(partition: 1, db) } == ChangelogHead(writer: "stock/b", seq: 9))
        #expect(try store.offsets(group: "stock") == [TopicPartition("orders", 1): 7])
    }
}

@Test func outboxRowsRoundTripAndAreDeletedOnlyForTheirOwnerUpToTheRetiredSeq() throws {
    try withTemporaryStore { store in
        let a = ConsumerStore(group: "stock", owner: "stock/a")
        let b = ConsumerStore(group: "stock", owner: "stock/b")
        let (s1, s2, s3) = try store.database.write { db in
            let s1 = try a.insertOutbox(OutboxFrame.encode([produced("out", "o1"), produced("cl", "e1", partition: 2)]), db)
            let s2 = try b.insertOutbox(OutboxFrame.encode([produced("out", "b1")]), db)
            let s3 = try a.insertOutbox(OutboxFrame.encode([produced("out", "o2")]), db)
            return (s1, s2, s3)
        }
        #expect(s1 < s2 && s2 < s3)
        let rows = try store.database.read { db in try a.outbox(db) }
        #expect(rows.map(\.seq) == [s1, s3])
        #expect(rows.map { values($0.messages) } == [["o1", "e1"], ["o2"]])
        #expect(rows[0].messages[1].topic == "cl" && rows[0].messages[1].partition == 2 && rows[0].messages[0].partition == nil)
        #expect(rows[0].messages[0].key == Array("k-o1".utf8))
        // Retiring a's s3 deletes a's older rows too, never b's.
        try store.database.write { db in try a.deleteOutbox(through: s3, db) }
        #expect(try store.database.read { db in try a.outbox(db) }.isEmpty)
        #expect(try store.database.read { db in try b.outbox(db) }.map(\.seq) == [s2])
    }
}

@Test func aLargeOutboxFrameIsStoredByteForByte() throws {
    try withTemporaryStore { store in
        let a = ConsumerStore(group: "stock", owner: "stock/a")
        let big = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let message = ProducerMessage(topic: "out", key: [1, 2, 3], value: big)
        let seq = try store.database.write { db in try a.insertOutbox(OutboxFrame.encode([message]), db) }
        let stored: Data? = try store.database.read { db in try Data.fetchOne(db, sql: "SELECT messages FROM outbox WHERE seq = ?", arguments: [seq]) }
        #expect(stored.map(Array.init) == OutboxFrame.encode([message]))
        #expect(try store.database.read { db in try a.outbox(db) }.first?.messages.first?.value == big)
    }
}

/// The loop's exactly-once step, with a real database: the batch the state machine keeps, its
/// offsets and its outbox row in one transaction; a revoke commits the batch in hand, a loss does not.
@Test func revokeWritesTheBatchInHandWithItsOffsetsWhileALostPartitionWritesNothing() throws {
    try withTemporaryStore { store in
        let a = ConsumerStore(group: "stock", owner: "stock/a")
        func commit(_ m: inout ConsumerStateMachine<Int>) throws {
            guard let batch = m.takeBatch() else { return }
            let retire = m.retiredOutboxSeq
            let seq = try store.database.write { db in
                try a.saveOffsets(batch.offsets, at: 1, db)
                if let retire { try a.deleteOutbox(through: retire, db) }
                return try a.insertOutbox(OutboxFrame.encode(batch.messages.map { produced("out", "\($0.topic)@\($0.offset)") }), db)
            }
            m.committed(batch, heads: [:])
            m.track(m.launch(outputs: [produced("out", "x")], seq: seq)!, delivery: Int(seq))
        }
        var m = ConsumerStateMachine<Int>(maxBatchSize: 100, maxBatchWaitNanoseconds: 0, changelogTopic: nil, shutdownTimeoutNanoseconds: 0)
        let p0 = TopicPartition("orders", 0), p1 = TopicPartition("orders", 1)
        m.assigned([p0, p1], stored: try store.offsets(group: "stock", for: [p0, p1]))
        m.buffered(KafkaMessage(topic: "orders", partition: 0, offset: 0, key: [], value: []))
        m.buffered(KafkaMessage(topic: "orders", partition: 1, offset: 0, key: [], value: []))
        #expect(m.revoke([p1], lost: false) == .commitBatchAndSettle)
        try commit(&m)
        m.forget([p1])
        #expect(try store.offsets(group: "stock") == [p0: 1, p1: 1])

        m.buffered(KafkaMessage(topic: "orders", partition: 0, offset: 1, key: [], value: []))
        m.assigned([p1], stored: try store.offsets(group: "stock", for: [p1]))
        m.buffered(KafkaMessage(topic: "orders", partition: 1, offset: 1, key: [], value: []))
        #expect(m.revoke([p1], lost: true) == .dropped)
        m.forget([p1])
        try commit(&m)
        #expect(try store.offsets(group: "stock") == [p0: 2, p1: 1])
        let rows = try store.database.read { db in try a.outbox(db) }
        #expect(rows.map { values($0.messages) } == [["orders@0", "orders@0"], ["orders@1"]])
        // The first row's outputs are acknowledged: the next batch's transaction deletes it.
        m.delivered()
        m.buffered(KafkaMessage(topic: "orders", partition: 0, offset: 2, key: [], value: []))
        try commit(&m)
        #expect(try store.database.read { db in try a.outbox(db) }.map(\.seq) == [rows[1].seq, rows[1].seq + 1])
    }
}
