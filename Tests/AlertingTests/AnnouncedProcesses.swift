import Foundation
import Kafka
import LiveSyncTesting
import Model

/// An embedded broker with `livesync.instances`, where a test announces processes as they
/// would announce themselves (from this host unless told otherwise).
final class AnnouncedProcesses {
    let broker: EmbeddedBroker
    let kafka: KafkaConfiguration
    let producer: KafkaProducer

    init() throws {
        broker = try EmbeddedBroker()
        try broker.createTopic(TopicSpecification(name: Topics.instances, partitions: 1))
        kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers)
        producer = try KafkaProducer(configuration: kafka)
    }

    deinit { producer.close() }

    func announce(_ process: String, url: String, pid: Int32, group: String = "", host: String = ProcessInfo.processInfo.hostName, stopping: Bool = false) throws {
        var a = InstanceAnnouncement()
        a.process = process
        a.group = group
        a.url = url
        a.host = host
        a.pid = pid
        a.announcedAtUs = Clock.nowMicros()
        a.stopping = stopping
        try producer.sendAndWait([ProducerMessage(topic: Topics.instances, key: process, value: a.bytes)])
    }
}
