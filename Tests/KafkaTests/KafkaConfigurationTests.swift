import Testing
@testable import Kafka

/// Each client kind gets LiveSync's defaults, the typed settings that apply to it, and the
/// operator's librdkafka properties over both.
@Suite struct KafkaConfigurationTests {
    @Test func eachClientKindGetsOnlyTheTypedSettingsThatApplyToItWithPropertiesOverThem() {
        var c = KafkaConfiguration(bootstrapServers: "k1:9092,k2:9092", properties: ["security.protocol": "SASL_SSL"])
        c.linger = .milliseconds(20)
        c.sessionTimeout = .seconds(6)
        c.groupInstanceID = "stock-1"
        let producer = c.settings(for: .producer)
        #expect(producer["linger.ms"] == "20" && producer["session.timeout.ms"] == nil && producer["group.instance.id"] == nil)
        #expect(producer["enable.idempotence"] == "true" && producer["bootstrap.servers"] == "k1:9092,k2:9092")
        let consumer = c.settings(for: .consumer)
        #expect(consumer["session.timeout.ms"] == "6000" && consumer["group.instance.id"] == "stock-1" && consumer["linger.ms"] == nil)
        #expect(consumer["partition.assignment.strategy"] == "cooperative-sticky")
        let reader = c.settings(for: .partitionReader)
        #expect(reader["group.instance.id"] == nil && reader["session.timeout.ms"] == nil && reader["enable.partition.eof"] == "true")
        for kind in [KafkaConfiguration.Client.producer, .consumer, .partitionReader, .admin] {
            #expect(c.settings(for: kind)["security.protocol"] == "SASL_SSL")
        }
        c.properties["linger.ms"] = "50"
        #expect(c.settings(for: .producer)["linger.ms"] == "50", "a librdkafka property overrides the typed setting")
    }

    @Test func theDefaultsAreKafkasForMembersAndShortForProducers() {
        let c = KafkaConfiguration(bootstrapServers: "127.0.0.1:9092")
        #expect(c.settings(for: .producer)["linger.ms"] == "5")
        #expect(c.settings(for: .consumer)["session.timeout.ms"] == "45000")
        #expect(c.settings(for: .consumer)["group.instance.id"] == nil)
    }
}
