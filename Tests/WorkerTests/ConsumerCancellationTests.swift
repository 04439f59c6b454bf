import LiveSyncTesting
import Foundation
import GRDB
import Kafka
import Logging
import Testing
@testable import Worker

/// Records every message it applies and emits one output per message.
private final class RecordingProcessor: BatchProcessor {
    func prepare(_ db: Database) throws {
        try db.execute(sql: "CREATE TABLE IF NOT EXISTS applied (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, PRIMARY KEY (topic, partition, offset))")
    }

    func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws {
        let insert = try db.cachedStatement(sql: "INSERT INTO applied (topic, partition, offset) VALUES (?, ?, ?)")
        for m in messages {
            try insert.execute(arguments: [m.topic, m.partition, m.offset])
            output.emit(topic: "applied", key: "k", value: m.value)
        }
    }
}

/// A `ServiceGroup` cancels its services when one of them fails: the consumer must then stop
/// as it does on SIGTERM (commit, publish its outputs, leave), not run on in its thread.
@Test func cancellingTheTaskRunningTheConsumerStopsItCleanly() async throws {
    let broker = try EmbeddedBroker()
    try broker.createTopic(TopicSpecification(name: "lines", partitions: 2))
    try broker.createTopic(TopicSpecification(name: "applied", partitions: 2))
    let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: ["log_level": "3"])
    let producer = try KafkaProducer(configuration: kafka)
    defer { producer.close() }
    let lines = (0..<20).map { ProducerMessage(topic: "lines", key: "k\($0)", value: Array("line \($0)".utf8)) }
    try producer.sendAndWait(lines)

    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("worker-tests-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: dir) }
    let store = try StateStore(StateStoreConfiguration(path: dir.appendingPathComponent("state.sqlite").path, synchronous: "OFF"))
    let service = BatchConsumerService(
        configuration: BatchConsumerConfiguration(kafka: kafka, groupID: "cancel-test", topics: ["lines"], shutdownTimeout: .seconds(10)),
        store: store, producer: producer, logger: Logger(label: "cancel-test")) { RecordingProcessor() }

    let returned = StopFlag()
    let running = Task {
        defer { returned.set() }
        try await service.run()
    }
    // Joining the group on the embedded broker takes a few seconds.
    for _ in 0..<600 where service.statistics.messages < lines.count { try await Task.sleep(for: .milliseconds(50)) }
    #expect(service.statistics.messages == lines.count)

    running.cancel()
    for _ in 0..<600 where !returned.isSet { try await Task.sleep(for: .milliseconds(50)) }
    try #require(returned.isSet, "run() returned within 30 s of the cancellation")
    try await running.value
    let offsets = try store.offsets(group: "cancel-test")
    #expect(offsets.values.reduce(0, +) == Int64(lines.count))
    #expect(try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM applied") } == lines.count)
    #expect(try await store.database.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM outbox") } == 0, "outputs acknowledged and retired")
}
