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
        ) { _ in DispatchProcessor() }
    }
}

