import Bootstrap
import Alerting
import ArgumentParser
import Foundation
import Inspection
import ReadModel
import ServiceLifecycle
import Worker

/// Alerting: rules from the configuration file, delivered to the configured channels.
@main
struct AlertingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-alerting",
        abstract: "Raises alerts (stock, unsynced orders, failure rate, lag, silent processes, dead letters, inspection) to WeCom, DingTalk, Feishu, e-mail and webhooks.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence); alert rules and channels are read from it.")
    var config: String?

    func run() async throws {
        let configFile = config
        try await ConsumerMain.run(
            name: "alerting", group: "livesync-alerting",
            topics: AlertingProcessor.topics,
            configFile: configFile,
            extraServices: { settings, store, logger in
                let configuration = try AlertingConfiguration.load(settings, configFile: configFile)
                logger.info("alert rules", metadata: ["rules": "\(configuration.rules.rules.map(\.kind))", "channels": "\(configuration.rules.channels.map(\.name))"])
                var services: [any Service] = [AlertNotifier(configuration: configuration, store: store, logger: logger)]
                for case .inspection(let interval, let grace) in configuration.rules.rules {
                    services.append(InspectionSchedule(
                        inspection: InspectionConfiguration(
                            kafka: try settings.kafka(), book: try settings.bookClient,
                            alertingPositions: .store(path: store.configuration.path), graceSeconds: grace),
                        interval: .seconds(interval), store: store, logger: logger))
                }
                return services
            },
            // The dashboard's alert list and late orders, and alerting's positions for `livesync
            // inspect`, served from its own store beside /readyz (views never open alerting.sqlite).
            telemetryRoutes: { _, store, router in AlertingAPI.addRoutes(to: router, storePath: store.configuration.path) }
        ) { _ in AlertingProcessor() }
    }
}
