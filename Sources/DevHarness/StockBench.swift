import LiveSyncTesting
import Foundation
import GRDB
import Kafka
import Logging
import Model
import Worker

/// `livesync bench stock`: how many lines of one hot SKU `livesync-stock` applies per second,
/// durably (SQLite commit with offsets and outbox, reservations published and acknowledged).
public struct StockBenchmark: Sendable {
    public var lines = 300_000
    public var dataDirectory = "var/bench-stock"
    public var synchronous = "FULL"
    public var maxBatch = 50_000

    public init() {}

    public struct Result: Codable, Sendable {
        public var lines: Int
        public var seconds: Double
        public var lines_per_sec: Double
        public var reserved: Int64
        public var rejected: Int64
        public var reservations_published: Int64
        public var synchronous: String
    }

    public func run(logger: Logger) async throws -> Result {
        let fm = FileManager.default
        if fm.fileExists(atPath: dataDirectory) { try fm.removeItem(atPath: dataDirectory) }
        try fm.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let broker = try EmbeddedBroker()
        for t in Topics.all() { try broker.createTopic(t) }
        // zstd: the mock keeps 5 MiB per partition and every line of the hot SKU is in one partition.
        let producer = try KafkaProducer(configuration: KafkaConfiguration(
            bootstrapServers: broker.bootstrapServers,
            properties: ["compression.type": "zstd", "linger.ms": "50", "batch.size": "4000000", "batch.num.messages": "100000"]))
        defer { producer.close() }
        let sku = "SKU-HOT"
        var adj = StockAdjustment()
        adj.adjustmentID = "bench-load"
        adj.sku = sku
        adj.warehouse = "main"
        adj.kind = .set
        adj.quantity = Int64(lines / 2)
        try await producer.send([ProducerMessage(topic: Topics.stockAdjustments, key: sku, value: adj.bytes)])
        let now = Clock.nowMicros()
        var chunk: [ProducerMessage] = []
        for i in 0..<lines {
            var line = OrderLine()
            // Fixed-width, increasing ids, like platforms' order numbers.
            line.orderID = "generic:shop-1:\(6_900_000_000_000_000_000 + i)"
            line.lineNo = 1
            line.eventID = "\(line.orderID):1"
            line.sku = sku
            line.warehouse = "main"
            line.quantity = 1
            line.unitPriceFen = 9900
            line.platform = .generic
            line.shopID = "shop-1"
            line.ingestedAtUs = now
            line.lineCount = 1
            chunk.append(ProducerMessage(topic: Topics.orderLines, key: sku, value: line.bytes))
            if chunk.count == 50_000 { try await producer.send(chunk); chunk.removeAll(keepingCapacity: true) }
        }
        try await producer.send(chunk)
        let partition = Murmur2.partition(forKey: sku, partitionCount: Topics.partitions)
        let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: broker.bootstrapServers))
        let wm = try admin.watermarks(TopicPartition(Topics.orderLines, partition))
        guard wm.low == 0, wm.high == Int64(lines) else {
            throw ConfigurationError("the embedded broker kept offsets \(wm.low)..<\(wm.high) of \(lines) lines (5 MiB per partition): use fewer --lines")
        }
        logger.info("loaded \(lines) lines of \(sku) into \(Topics.orderLines)[\(partition)]; starting livesync-stock")

        var env = ProcessInfo.processInfo.environment
        env["LIVESYNC_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["LIVESYNC_KAFKA_SESSION_TIMEOUT_MS"] = "6000"
        env["LIVESYNC_DATA_DIR"] = dataDirectory
        env["LIVESYNC_DB_SYNCHRONOUS"] = synchronous
        env["LIVESYNC_CONSUMER_MAX_BATCH"] = String(maxBatch)
        let supervisor = try Supervisor(logDirectory: "\(dataDirectory)/logs", logger: logger)
        try supervisor.start(ChildSpec(name: "stock", executable: "\(DevClusterConfiguration.defaultBinDirectory)/livesync-stock", environment: env))
        defer { supervisor.stopAll() }

        let dbPath = "\(dataDirectory)/stock.sqlite"
        let tp = TopicPartition(Topics.orderLines, partition)
        var first: (at: Date, offset: Int64)?
        var end: Date?
        let deadline = Date().addingTimeInterval(300)
        while end == nil && Date() < deadline {
            try await Task.sleep(for: .milliseconds(20))
            guard fm.fileExists(atPath: dbPath), let store = try? StateStore(StateStoreConfiguration(path: dbPath)),
                  let offset = try? store.offsets(group: "livesync-stock", for: [tp])[tp] else { continue }
            if first == nil { first = (Date(), offset) }
            if offset >= Int64(lines) { end = Date() }
        }
        guard let first, let end else { throw ConfigurationError("livesync-stock did not finish within 300 s; see \(dataDirectory)/logs/stock.log") }
        let seconds = end.timeIntervalSince(first.at)
        let applied = Int64(lines) - first.offset
        let db = try DatabaseQueue(path: dbPath)
        let (reserved, rejected) = try await db.read { db in
            (try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM stock_lines WHERE status = 1") ?? 0,
             try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM stock_lines WHERE status = 2") ?? 0)
        }
        // Wait for the last outputs' delivery: every line's reservation must be on the topic.
        var published: Int64 = 0
        for _ in 0..<200 {
            published = try (0..<Topics.partitions).reduce(Int64(0)) { $0 + (try admin.watermarks(TopicPartition(Topics.stockReservations, $1)).high) }
            if published >= Int64(lines) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        return Result(lines: lines, seconds: seconds, lines_per_sec: (Double(applied) / seconds).rounded(),
                      reserved: reserved, rejected: rejected, reservations_published: published, synchronous: synchronous)
    }
}
