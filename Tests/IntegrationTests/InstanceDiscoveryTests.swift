import Bootstrap
import Foundation
import Kafka
import LiveSyncTesting
import Logging
import Model
import ServiceLifecycle
import Testing

/// Processes find each other through `livesync.instances` only (hosts share nothing but Kafka):
/// an announcer's process is listed while it runs, gone once it announced its stop, and one not
/// heard from for the directory's maximum age is left out.
@Suite(.serialized) struct InstanceDiscoveryTests {
    func broker() throws -> EmbeddedBroker {
        let broker = try EmbeddedBroker()
        for spec in Topics.all() { try broker.createTopic(spec) }
        return broker
    }

    /// One documented default each; a non-positive interval or age is refused (an interval of
    /// zero would announce in a loop), naming its environment variable.
    @Test func theAnnounceIntervalAndMaximumAgeAreTypedSettingsWithOneDefault() async throws {
        let defaults = try await LiveSyncConfig(file: nil, environment: [:])
        #expect(try defaults.telemetry.announceInterval == .seconds(10))
        #expect(try defaults.telemetry.advertisedHost == nil)
        #expect(try defaults.instanceDirectory().maxAge == .seconds(600))
        let set = try await LiveSyncConfig(file: nil, environment: [
            "LIVESYNC_TELEMETRY_ANNOUNCE_INTERVAL_MS": "2500", "LIVESYNC_TELEMETRY_INSTANCE_MAX_AGE_MS": "60000",
            "LIVESYNC_TELEMETRY_ADVERTISED_HOST": "10.0.0.7"])
        #expect(try set.telemetry.announceInterval == .milliseconds(2500))
        #expect(try set.telemetry.advertisedHost == "10.0.0.7")
        #expect(try set.instanceDirectory().maxAge == .seconds(60))
        let zero = try await LiveSyncConfig(file: nil, environment: ["LIVESYNC_TELEMETRY_ANNOUNCE_INTERVAL_MS": "0", "LIVESYNC_TELEMETRY_INSTANCE_MAX_AGE_MS": "-1"])
        #expect { _ = try zero.telemetry } throws: { "\($0)".contains("LIVESYNC_TELEMETRY_ANNOUNCE_INTERVAL_MS") }
        #expect { _ = try zero.instanceDirectory() } throws: { "\($0)".contains("LIVESYNC_TELEMETRY_INSTANCE_MAX_AGE_MS") }
    }

    @Test func anAnnouncedProcessIsListedUntilItAnnouncesItsStop() async throws {
        let broker = try broker()
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers)
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }
        let logger = Logger(label: "test.announcer")
        let announcer = InstanceAnnouncer(process: "dispatch-2", group: "livesync-dispatch", producer: producer,
                                          interval: .milliseconds(200), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: announcer)], logger: logger))
        let running = Task { try await group.run() }
        let directory = InstanceDirectory(kafka: kafka)

        // Nothing is announced before the server listens.
        #expect(try await directory.instances().isEmpty)
        announcer.listening(url: "http://10.0.0.7:9464")
        var first: InstanceAnnouncement?
        try await waitFor("the announcement", timeout: 30) {
            first = try await directory.instances().first
            return first != nil
        }
        let a = try #require(first)
        #expect(a.process == "dispatch-2" && a.url == "http://10.0.0.7:9464" && a.group == "livesync-dispatch")
        #expect(a.pid == getpid() && a.host == ProcessInfo.processInfo.hostName && a.instanceID == announcer.instanceID && !a.stopping)
        // Announced again every interval (the directory keeps the latest).
        try await waitFor("a later announcement", timeout: 30) {
            try await directory.instances().first.map { $0.announcedAtUs > a.announcedAtUs } == true
        }

        // A clean stop announces `stopping`: the process leaves the list.
        await group.triggerGracefulShutdown()
        try await running.value
        try await waitFor("the stop to be read", timeout: 30) { try await directory.instances().isEmpty }
        // A fresh reader (another host's `livesync status`) sees the same.
        #expect(try await InstanceDirectory(kafka: kafka).instances().isEmpty)
    }

    @Test func anAnnouncementOlderThanTheMaximumAgeIsLeftOut() async throws {
        let broker = try broker()
        let kafka = KafkaConfiguration(bootstrapServers: broker.bootstrapServers)
        let producer = try KafkaProducer(configuration: kafka)
        defer { producer.close() }
        let now = Clock.nowMicros()
        func announcement(_ process: String, at: Int64) -> ProducerMessage {
            var a = InstanceAnnouncement()
            a.process = process
            a.url = "http://127.0.0.1:9"
            a.announcedAtUs = at
            return ProducerMessage(topic: Topics.instances, key: process, value: a.bytes)
        }
        // stock-3 was killed 11 minutes ago (no stop announced); stock-1 announced just now.
        try producer.sendAndWait([announcement("stock-3", at: now - 660_000_000), announcement("stock-1", at: now)])
        let directory = InstanceDirectory(InstanceDirectory.Configuration(kafka: kafka, maxAge: .seconds(600)))
        #expect(try await directory.instances(now: now).map(\.process) == ["stock-1"])
        // Ten minutes on without a further announcement, stock-1 is left out too.
        #expect(try await directory.instances(now: now + 601_000_000).isEmpty)
        // stock-3 comes back: its newer announcement replaces the stale one.
        try producer.sendAndWait([announcement("stock-3", at: now + 1)])
        #expect(try await directory.instances(now: now + 2).map(\.process) == ["stock-1", "stock-3"])
    }

    /// `livesync status` without `--endpoint` finds a running `livesync-stock` through the broker,
    /// shows it ready, and no longer lists it once it stopped cleanly.
    @Test func statusFindsARunningConsumerThroughTheBroker() async throws {
        let broker = try broker()
        let dir = temporaryDirectory("instances")
        let stock = Process()
        stock.executableURL = URL(fileURLWithPath: binDirectory + "/livesync-stock")
        var env = ProcessInfo.processInfo.environment
        env["LIVESYNC_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["LIVESYNC_KAFKA_SESSION_TIMEOUT_MS"] = "6000"
        env["LIVESYNC_KAFKA_INSTANCE_ID"] = "stock-7"
        env["LIVESYNC_DATA_DIR"] = dir
        env["LIVESYNC_TELEMETRY_ANNOUNCE_INTERVAL_MS"] = "500"
        stock.environment = env
        stock.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try stock.run()
        defer { if stock.isRunning { kill(stock.processIdentifier, SIGKILL); stock.waitUntilExit() } }

        let livesync = binDirectory + "/livesync"
        var seen = ""
        try await waitFor("stock-7 ready in livesync status", seen: seen) {
            let r = try runCommand(livesync, ["status", "--bootstrap", broker.bootstrapServers, "--data-dir", dir], timeout: .seconds(60))
            seen = r.stdout + r.stderr
            return r.status == 0 && r.stdout.contains("stock-7") && r.stdout.contains("ready")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/processes"), "no process record is written")

        kill(stock.processIdentifier, SIGTERM)
        stock.waitUntilExit()
        #expect(stock.terminationStatus == 0)
        let after = try runCommand(livesync, ["status", "--bootstrap", broker.bootstrapServers, "--data-dir", dir], timeout: .seconds(60))
        #expect(after.status == 1 && !after.stdout.contains("stock-7") && after.stdout.contains("no processes found"), "\(after.stdout)")
    }
}
