import Model
import Bootstrap
import ArgumentParser
import Fulfillment
import Worker

/// Fulfillment dispatch: joins `orders.placed` with `stock.reservations` into the ERP book.
@main
struct DispatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-dispatch",
        abstract: "Writes fully reserved orders and their shipments into the ERP book; releases stock of rejected ones.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        try await ConsumerMain.run(
            name: "dispatch", group: "livesync-dispatch",
            topics: [Topics.ordersPlaced], companionTopics: [Topics.stockReservations, Topics.shipmentsShipped], database: "erp", configFile: config
        ) { _ in DispatchProcessor() }
    }
}

