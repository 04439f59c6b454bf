import Foundation
import Fulfillment
import Hummingbird
import Inventory
import Kafka
import ReadModel
import Worker

/// A read model for tests and tooling, in-process: the store `livesync-book` keeps (the whole ERP
/// book with its running totals, and the stock tables), written by the real processors as its
/// `ChangelogReplica` writes it, and served by the real `BookServer` on 127.0.0.1. Views under
/// test reach it only through `client`, as they reach `livesync-book` in production.
public final class LocalReadModel: Sendable {
    /// The copy the server reads: write it with `dispatch(_:)` (dispatch's join, keeping totals)
    /// or through `StockProcessor`.
    public let store: StateStore
    /// The server's base URL, e.g. `http://127.0.0.1:54321`.
    public let url: String
    private let server: Task<Void, Error>

    private init(store: StateStore, url: String, server: Task<Void, Error>) {
        self.store = store
        self.url = url
        self.server = server
    }

    /// Creates the store at `path` (schemas of `DispatchProcessor(keepsTotals: true)` and
    /// `StockProcessor`, as the read model prepares them) and serves it once bound.
    public static func start(path: String) async throws -> LocalReadModel {
        let store = try StateStore(StateStoreConfiguration(path: path, synchronous: "OFF"))
        try await store.database.write { db in
            try DispatchProcessor(keepsTotals: true).prepare(db)
            try StockProcessor().prepare(db)
        }
        let router = Router()
        BookServer.addRoutes(to: router, bookPath: path)
        let (url, task) = try await LocalServer.serve(router, label: "livesync.test-read-model", serverName: "livesync-book")
        return LocalReadModel(store: store, url: url, server: task)
    }

    /// A client of this read model.
    public var client: BookClient { BookClient(baseURL: url) }

    /// Applies `items` (topic, value) as dispatch decides them, in one batch on partition 0: what
    /// the replica's copy holds once it replayed dispatch's changelog entry for them.
    public func dispatch(_ items: [(String, [UInt8])]) throws {
        let messages = items.enumerated().map { KafkaMessage(topic: $0.element.0, partition: 0, offset: Int64($0.offset), key: [], value: $0.element.1) }
        try store.database.write { db in
            var out = BatchOutput(group: "livesync-dispatch")
            try DispatchProcessor(keepsTotals: true).apply(messages, db: db, output: &out)
        }
    }

    /// Stops the server (the store stays readable).
    public func stop() { server.cancel() }
}
