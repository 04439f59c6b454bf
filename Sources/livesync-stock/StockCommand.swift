import Model
import Bootstrap
import ArgumentParser
import Inventory
import Worker

/// Stock deduction: consumes `orders.lines` and `stock.adjustments`, publishes `stock.reservations`.
@main
struct StockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-stock",
        abstract: "Reserves stock for order lines, per SKU partition, never below zero.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        try await ConsumerMain.run(
            name: "stock", group: "livesync-stock",
            topics: [Topics.orderLines], companionTopics: [Topics.stockAdjustments], configFile: config,
            extraServices: { settings, store, logger in
                [HotSkuGauges(store: store, count: try settings.int("metrics.hotSkus", default: 10), logger: logger)]
            }
        ) { _ in StockProcessor() }
    }
}

