import Bootstrap
import Alerting
import ArgumentParser
import Foundation
import Inspection
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
                let unsynced = settings.int("alerting.unsyncedAfterSeconds", default: 5)
                // Refused at start-up with the file's line when a rule or channel is invalid.
                let rules = try AlertRulesConfiguration.load(file: configFile, unsyncedAfterSeconds: unsynced,
                                                             webhookURL: settings.optionalString("alerting.webhookUrl"))
                let dataDir = settings.string("dataDir", default: "var/data")
                let stockPath = try settings.stateStore("stock").path
                let configuration = AlertingConfiguration(
                    unsyncedAfterSeconds: unsynced,
                    sweepIntervalMilliseconds: settings.int("alerting.sweepIntervalMs", default: 1_000),
                    rules: rules, stockDatabase: stockPath, dataDir: dataDir,
                    erpDatabase: try settings.stateStore("erp").path, kafka: try settings.kafka(),
                    dispatchGroup: settings.string("group.dispatch", default: "livesync-dispatch"),
                    processCheckIntervalMilliseconds: settings.int("alerting.processCheckIntervalMs", default: 5_000))
                logger.info("alert rules", metadata: ["rules": "\(rules.rules.map(\.kind))", "channels": "\(rules.channels.map(\.name))"])
                var services: [any Service] = [AlertNotifier(configuration: configuration, store: store, logger: logger)]
                for case .inspection(let interval, let grace) in rules.rules {
                    services.append(InspectionSchedule(
                        inspection: InspectionConfiguration(
                            kafka: try settings.kafka(), stockDatabase: stockPath, erpDatabase: try settings.stateStore("erp").path,
                            alertingDatabase: store.configuration.path, graceSeconds: grace),
                        interval: .seconds(interval), store: store, logger: logger))
                }
                return services
            }
        ) { _ in AlertingProcessor() }
    }
}
