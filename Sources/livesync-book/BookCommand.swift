import ArgumentParser
import Bootstrap
import Fulfillment
import Inventory
import Logging
import Model
import ReadModel
import Worker

/// The read model: a copy of the whole ERP book and of every stock level, built from
/// `dispatch.changelog` and `stock.changelog`, served over HTTP to the views.
@main
struct BookCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-book",
        abstract: "Keeps the whole ERP book and the stock levels from the changelogs and answers the views over HTTP.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        // Every instance holds every partition: each is a group of its own.
        try await ConsumerMain.run(
            name: "book", group: "livesync-book", groupPerInstance: true,
            topics: [Topics.dispatchChangelog], companionTopics: [Topics.stockChangelog], configFile: config,
            extraServices: { settings, store, logger in
                [BookServer.make(bookPath: store.configuration.path, configuration: try settings.bookServer, logger: logger)]
            }
        ) { settings in
            ChangelogReplica(sources: [
                .init(group: settings.string("group.dispatch", default: "livesync-dispatch"), processor: DispatchProcessor(keepsTotals: true)),
                .init(group: settings.string("group.stock", default: "livesync-stock"), processor: StockProcessor()),
            ], kafka: try settings.kafka(), logger: Logger(label: "livesync.book.replica"))
        }
    }
}
