import Alerting
import ArgumentParser
import Worker

/// Alerting: out-of-stock rejections, dead letters, orders not synced in time.
@main
struct AlertingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-alerting",
        abstract: "Raises alerts to the log and a webhook for stock-outs, dead letters and late orders.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        try await ConsumerMain.run(
            name: "alerting", group: "livesync-alerting",
            topics: [Topics.ordersPlaced, Topics.orderOutcomes, Topics.stockReservations, Topics.deadLetter],
            configFile: config,
            extraServices: { settings, store, logger in
                [AlertNotifier(
                    configuration: AlertingConfiguration(
                        unsyncedAfterSeconds: settings.int("alerting.unsyncedAfterSeconds", default: 5),
                        webhookURL: settings.optionalString("alerting.webhookUrl"),
                        sweepIntervalMilliseconds: settings.int("alerting.sweepIntervalMs", default: 1_000)),
                    store: store, logger: logger)]
            }
        ) { _ in AlertingProcessor() }
    }
}
