import Alerting
import ArgumentParser
import Kafka
import Logging
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
        ServiceRunner.bootstrapLogging()
        let logger = Logger(label: "livesync.alerting")
        let settings = try await LiveSyncConfig(file: config)
        let store = try StateStore(try settings.stateStore("alerting"))
        let producer = try KafkaProducer(configuration: try settings.producerKafka(), logger: logger)
        let consumer = BatchConsumerService(
            configuration: try settings.consumer(
                group: settings.string("group.alerting", default: "livesync-alerting"),
                topics: [Topics.ordersPlaced, Topics.orderOutcomes, Topics.stockReservations, Topics.deadLetter]),
            store: store, producer: producer, logger: logger, makeProcessor: { AlertingProcessor() })
        let notifier = AlertNotifier(
            configuration: AlertingConfiguration(
                unsyncedAfterSeconds: settings.int("alerting.unsyncedAfterSeconds", default: 5),
                webhookURL: settings.optionalString("alerting.webhookUrl"),
                sweepIntervalMilliseconds: settings.int("alerting.sweepIntervalMs", default: 1_000)),
            store: store, logger: logger)
        try await ServiceRunner.run([consumer, notifier], logger: logger)
        producer.close()
    }
}

