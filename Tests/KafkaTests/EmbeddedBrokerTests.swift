import LiveSyncTesting
import Foundation
import Kafka
import Testing

final class RecordingDelegate: KafkaRebalanceDelegate {
    var starts: [TopicPartition: Int64] = [:]
    var assigned: [TopicPartition] = []
    var revoked: [TopicPartition] = []
    func partitionsAssigned(_ partitions: [TopicPartition]) throws -> [TopicPartition: Int64] {
        assigned += partitions
        return starts.filter { partitions.contains($0.key) }
    }
    func partitionsRevoked(_ partitions: [TopicPartition], lost: Bool) { revoked += partitions }
}

func consume(_ consumer: KafkaConsumer, count: Int, timeout: TimeInterval = 30) throws -> [KafkaMessage] {
    var got: [KafkaMessage] = []
    let deadline = Date().addingTimeInterval(timeout)
    while got.count < count && Date() < deadline {
        if let m = try consumer.poll(timeoutMilliseconds: 100) { got.append(m) }
    }
    return got
}

@Suite(.serialized) struct EmbeddedBrokerTests {
    let fast = ["session.timeout.ms": "6000", "heartbeat.interval.ms": "500", "log_level": "3"]

    @Test func keyedMessagesLandInTheJavaMurmur2PartitionAndComeBackInOrder() throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic(TopicSpecification(name: "t.keys", partitions: 8))
        let config = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: fast)
        let producer = try KafkaProducer(configuration: config)
        let keys = (0..<200).map { "SKU-\($0 % 23)" }
        try producer.sendAndWait(keys.enumerated().map { ProducerMessage(topic: "t.keys", key: $0.element, value: Array("v\($0.offset)".utf8)) })

        let delegate = RecordingDelegate()
        let consumer = try KafkaConsumer(configuration: config, groupID: "g1", topics: ["t.keys"], delegate: delegate)
        let got = try consume(consumer, count: keys.count)
        #expect(got.count == keys.count)
        for m in got {
            #expect(m.partition == Murmur2.partition(forKey: String(decoding: m.key, as: UTF8.self), partitionCount: 8))
        }
        // Per key, values arrive in the order produced.
        var lastIndex: [String: Int] = [:]
        for m in got {
            let key = String(decoding: m.key, as: UTF8.self)
            let idx = Int(String(decoding: m.value.dropFirst(), as: UTF8.self))!
            #expect(idx > lastIndex[key, default: -1])
            lastIndex[key] = idx
        }
        #expect(Set(delegate.assigned).count == 8)
        consumer.close()
        producer.close()
    }

    @Test func consumerStartsAtTheOffsetsTheApplicationStored() throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic(TopicSpecification(name: "t.start", partitions: 1))
        let config = KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: fast)
        let producer = try KafkaProducer(configuration: config)
        try producer.sendAndWait((0..<10).map { ProducerMessage(topic: "t.start", key: "k", value: [UInt8($0)]) })
        let delegate = RecordingDelegate()
        delegate.starts = [TopicPartition("t.start", 0): 7]
        let consumer = try KafkaConsumer(configuration: config, groupID: "g2", topics: ["t.start"], delegate: delegate)
        let got = try consume(consumer, count: 3)
        #expect(got.map(\.offset) == [7, 8, 9])
        #expect(got.map { $0.value[0] } == [7, 8, 9])
        consumer.close()
    }

    @Test func asyncSendReturnsAfterTheBrokerAcknowledged() async throws {
        let broker = try EmbeddedBroker()
        try broker.createTopic(TopicSpecification(name: "t.async", partitions: 2))
        let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers, properties: fast))
        try await producer.send([ProducerMessage(topic: "t.async", key: "a", value: [1])])
        let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        let wm = try admin.watermarks(TopicPartition("t.async", Murmur2.partition(forKey: "a", partitionCount: 2)))
        #expect(wm.high == 1)
        #expect(try admin.partitionCounts(["t.async"]) == ["t.async": 2])
    }
}
