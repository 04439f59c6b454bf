import Bootstrap
import ArgumentParser
import AsyncHTTPClient
import Connectors
import Ingest
import Kafka
import Logging
import NIOCore
import NIOPosix
import ReadModel
import ServiceLifecycle
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
        // Optionally run Swift concurrency's jobs on NIO's event loops instead of a pool of its own:
        // a request read on an event loop is then handled and answered on that loop, without the
        // thread hops per request (loop → pool → loop). Off by default: it did not lower ingest's
        // CPU per order measurably (docs/performance.md), and the platform connectors' synchronous
        // ledger writes (SQLite) would then block an event loop instead of a pool thread.
        let onEventLoops = settings.string("ingest.eventLoopExecutor", default: "false").lowercased()
        guard ["true", "false"].contains(onEventLoops) else {
            throw ConfigurationError("ingest.eventLoopExecutor must be true or false, not '\(onEventLoops)'")
        }
        if onEventLoops == "true", !NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() {
            logger.warning("could not run Swift concurrency on NIO's event loops; using its own pool")
        }
        let shops = try ShopCredentials.parseList(settings.string("ingest.shops", default: ""))
        let connectors = try ConnectorsConfiguration.load(settings, client: HTTPClient.shared)
        guard !shops.isEmpty || !connectors.platforms.isEmpty || !connectors.polls.isEmpty else {
            throw ConfigurationError("no shops configured: set ingest.shops (LIVESYNC_INGEST_SHOPS=shop=secret[@warehouse];…) or a platform connector (connectors.*)")
        }
        // The warehouse's shipment reports ask the read model whether a shipment is booked:
        // book.url is required with erp.secret (checked before anything connects).
        let erpSecret = settings.optionalString("erp.secret")
        let book = erpSecret == nil ? nil : try settings.bookClient
        let kafka = try settings.kafka()
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        logger.info("starting", metadata: ["bootstrap": "\(kafka.bootstrapServers)", "ledger": "\(connectors.ledgerPath)"])
        let publisher = OrderPublisher(producer: producer, sealer: connectors.sealer)
        let ledger = try MessageLedger(path: connectors.ledgerPath)
        for book in connectors.tokenBooks { try book.attach(ledger.database) }
        let pipeline = ConnectorPipeline(publisher: publisher, ledger: ledger, logger: logger)
        let pollers = connectors.pollers(publisher: publisher, ledger: ledger, logger: logger)
        let maxBody = try settings.int("ingest.maxBodyBytes", default: 1 << 20)
        logger.info("platform connectors", metadata: ["platforms": "\(connectors.platforms.map(\.connector.platform.slug))",
                                                      "pii_sealing": "\(connectors.sealer != nil)"])
        // The warehouse/ERP's shipment reports (POST /erp/shipments/{id}/shipped), when it has a secret.
        let erpMaxBody = try settings.int("erp.maxBodyBytes", default: 16 << 10)
        let announcer = try settings.instanceAnnouncer(name: "ingest", producer: producer, logger: logger)
        let webhooksOnEventLoop = settings.string("ingest.webhooksOnEventLoop", default: "true").lowercased()
        guard ["true", "false"].contains(webhooksOnEventLoop) else {
            throw ConfigurationError("ingest.webhooksOnEventLoop must be true or false, not '\(webhooksOnEventLoop)'")
        }
        let app = IngestApp.make(
            configuration: IngestConfiguration(
                host: settings.string("ingest.host", default: "127.0.0.1"),
                port: try settings.int("ingest.port", default: 8080),
                shops: shops,
                maxBodyBytes: try settings.int("ingest.maxBodyBytes", default: 1 << 20),
                addressFile: settings.optionalString("ingest.addressFile"),
                webhooksOnEventLoop: webhooksOnEventLoop == "true"),
            publisher: publisher, logger: logger,
            extraRoutes: { router in
                ConnectorRoutes.register(on: router, platforms: connectors.platforms, pipeline: pipeline, maxBodyBytes: maxBody)
                if let secret = erpSecret, let book {
                    ShipmentShippedRoute.register(on: router, configuration: ShipmentShippedConfiguration(
                        secret: secret, book: book, maxBodyBytes: erpMaxBody), producer: producer, logger: logger)
                }
            },
            health: HealthEndpoints(process: settings.processName("ingest"), checks: [StandardChecks.brokerReachable(producer)]),
            advertisedHost: try settings.telemetry.advertisedHost, onListening: { url in announcer.listening(url: url) })
        // The announcer first: services stop in reverse order, so `stopping` is announced last.
        var services: [any Service] = [announcer, app]
        if !pollers.isEmpty { services.append(PollerService(pollers: pollers, interval: connectors.poll.interval)) }
        try await ServiceRunner.run(services, logger: logger)
        producer.close()
    }
}

