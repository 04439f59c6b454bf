import ArgumentParser
import Ingest
import Kafka
import Logging
import Telemetry
import Worker

/// Webhook ingest: verifies, normalises and publishes orders by SKU.
@main
struct IngestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-ingest",
        abstract: "Receives signed order webhooks and publishes their lines to Kafka by SKU.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        ServiceRunner.bootstrapLogging()
        Telemetry.bootstrap()
        let logger = Logger(label: "livesync.ingest")
        let settings = try await LiveSyncConfig(file: config)
        let shops = try ShopCredentials.parseList(settings.string("ingest.shops", default: ""))
        guard !shops.isEmpty else {
            throw ConfigurationError("no shops configured: set ingest.shops (LIVESYNC_INGEST_SHOPS=shop=secret[@warehouse];…)")
        }
        let producer = try KafkaProducer(configuration: settings.producerKafka(), logger: logger)
        let app = IngestApp.make(
            configuration: IngestConfiguration(
                host: settings.string("ingest.host", default: "127.0.0.1"),
                port: settings.int("ingest.port", default: 8080),
                shops: shops,
                maxBodyBytes: settings.int("ingest.maxBodyBytes", default: 1 << 20),
                addressFile: settings.optionalString("ingest.addressFile")),
            publisher: OrderPublisher(producer: producer), logger: logger,
            health: HealthEndpoints(process: settings.processName("ingest"), checks: [StandardChecks.brokerReachable(producer)]),
            dataDir: settings.telemetry.dataDir)
        try await ServiceRunner.run([app], logger: logger)
        if let dataDir = settings.telemetry.dataDir { ProcessRecord.remove(name: settings.processName("ingest"), dataDir: dataDir) }
        producer.close()
    }
}

