import Model
import Bootstrap
import ArgumentParser
import Fulfillment
import Worker

/// Fulfillment dispatch: the order book of the partitions it holds (orders joined with their stock
/// decisions, refunds, shipment reports), its state following its partitions through `dispatch.changelog`.
@main
struct DispatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-dispatch",
        abstract: "Books fully reserved orders and their shipments, releases stock of rejected or refunded ones, for the partitions it holds.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        try await ConsumerMain.run(
            name: "dispatch", group: "livesync-dispatch",
            topics: [Topics.ordersPlaced], companionTopics: [Topics.stockReservations, Topics.shipmentsShipped, Topics.refundRequests], database: "dispatch", configFile: config
        ) { settings in
            // `inputs` only while upgrading from a release whose dispatch and read model read no deltas (docs/deployment.md).
            let format = settings.string("dispatch.changelogFormat", default: DispatchProcessor.ChangelogFormat.deltas.rawValue)
            guard let changelogFormat = DispatchProcessor.ChangelogFormat(rawValue: format) else {
                throw ValidationError("dispatch.changelogFormat (LIVESYNC_DISPATCH_CHANGELOG_FORMAT) is \"\(format)\": expected deltas or inputs")
            }
            return DispatchProcessor(changelogFormat: changelogFormat)
        }
    }
}

