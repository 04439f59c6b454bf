import Model
import Bootstrap
import AfterSales
import ArgumentParser
import Worker

/// After-sales: books refund requests, cancelling unshipped orders and releasing their stock.
@main
struct AfterSalesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-aftersales",
        abstract: "Books refunds in the ERP book; cancels unshipped orders and releases their stock.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        try await ConsumerMain.run(
            name: "aftersales", group: "livesync-aftersales",
            topics: [Topics.refundRequests], database: "erp", configFile: config
        ) { _ in RefundProcessor() }
    }
}

