import LiveSyncTesting
import Model
import Connectors
import Crypto
import Foundation
import Inventory
import Kafka
import Logging
import Worker

/// Settings of the one-machine cluster `livesync dev` and `livesync demo` run.
public struct DevClusterConfiguration: Sendable {
    /// Where state databases, logs and `cluster.json` go. Reset at start: the embedded broker is
    /// in memory, so offsets from an earlier broker would point nowhere.
    public var dataDirectory: String
    /// Directory holding the `livesync-*` executables (default: next to the running one).
    public var binDirectory: String
    /// Instances of each consumer executable.
    public var stockInstances = 1
    public var dispatchInstances = 1
    /// Group session timeout; the embedded broker waits this minus 1 s before each rebalance.
    public var sessionTimeoutMilliseconds = 6_000
    /// Alert webhook passed to livesync-alerting.
    public var alertWebhookURL: String?
    /// Configuration file (alert rules and channels) passed to livesync-alerting as `--config`.
    public var alertingConfigFile: String?
    /// `PRAGMA synchronous` of every state database.
    public var synchronous = "FULL"
    /// Run without the alerting process.
    public var withAlerting = true
    /// Ingest's `linger.ms` on the embedded broker (see `kafka.lingerMs`).
    public var ingestLingerMilliseconds = 20
    /// Run `livesync-channels` (stock push and shipment write-back to the fake platform API).
    public var withChannels = true
    /// Channels whose stock `livesync-channels` pushes to the fake platform (`channels.list`).
    /// Default `douyin:dev-shop`: every SKU's level is pushed to one Douyin shop.
    public var channelsList = "douyin:dev-shop"

    public init(dataDirectory: String, binDirectory: String = DevClusterConfiguration.defaultBinDirectory) {
        self.dataDirectory = dataDirectory
        self.binDirectory = binDirectory
    }

    public static var defaultBinDirectory: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }
}

/// What a running dev cluster tells other processes (`<dataDir>/cluster.json`).
public struct ClusterInfo: Codable, Sendable {
    public var bootstrap: String
    public var ingestURL: String
    public var shops: [String: String]
    public var dataDirectory: String
    public var adminURL: String?
    /// The fake platform API (order details for the platforms' webhooks), when dev runs one.
    public var platformAPIURL: String?
    /// The secret the warehouse/ERP signs `POST /erp/shipments/{id}/shipped` with (`erp.secret`).
    public var erpSecret: String?
    public var bookURL: String?  // the read model's base URL (livesync-book), for the views
    public var alertingURL: String?  // livesync-alerting's telemetry server (/alerts, /positions)

    public static func load(_ path: String) throws -> ClusterInfo {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("\(path) not found: start `livesync dev` first, or pass --ingest-url/--bootstrap")
        }
        return try JSONDecoder().decode(ClusterInfo.self, from: data)
    }
}

/// The embedded broker with LiveSync's topics, and every executable as a supervised child.
public final class DevCluster: Sendable {
    public let configuration: DevClusterConfiguration
    public let broker: EmbeddedBroker
    public let supervisor: Supervisor
    public let shops: [String: String]
    public let ingestURL: String
    /// The local fake of the platforms' order-detail APIs ingest's connectors call (dev credentials).
    public let platformAPIURL: String
    /// The fake platform itself: what it was told (stock pushes, shipment write-backs).
    public let platformAPI: FakePlatformAPI
    /// The secret the warehouse/ERP signs its shipment reports with (ingest's `erp.secret`).
    public let erpSecret: String
    let platformAPITask: Task<Void, Error>
    let logger: Logger
    let environment: [String: String]

    public var bootstrap: String { broker.bootstrapServers }
    /// The first stock instance's database (each instance has its own, as on its own host).
    public var stockDatabase: String { stockDatabase(instance: 1) }
    /// Stock instance `i`'s database: `stock.sqlite` for the first, `stock-<i>.sqlite` after.
    public func stockDatabase(instance i: Int) -> String {
        "\(configuration.dataDirectory)/\(i == 1 ? "stock" : "stock-\(i)").sqlite"
    }
    /// Every stock database present (instances that ran, running or not).
    public var stockDatabases: [String] {
        StockStoreView.databases(in: configuration.dataDirectory)
    }
    public var erpDatabase: String { "\(configuration.dataDirectory)/erp.sqlite" }
    public var clusterFile: String { "\(configuration.dataDirectory)/cluster.json" }

    public init(configuration: DevClusterConfiguration, logger: Logger) async throws {
        self.configuration = configuration
        self.logger = logger
        let fm = FileManager.default
        let dir = configuration.dataDirectory
        for binary in ["livesync-ingest", "livesync-stock", "livesync-dispatch", "livesync-aftersales", "livesync-alerting"] + (configuration.withChannels ? ["livesync-channels"] : []) {
            guard fm.isExecutableFile(atPath: "\(configuration.binDirectory)/\(binary)") else {
                throw ConfigurationError("\(binary) not found in \(configuration.binDirectory): build the package first (swift build -c release)")
            }
        }
        if fm.fileExists(atPath: dir) {
            logger.info("resetting \(dir): the embedded broker starts empty, so earlier state and offsets do not apply")
            try fm.removeItem(atPath: dir)
        }
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)

        broker = try EmbeddedBroker()
        for topic in Topics.all() { try broker.createTopic(topic) }
        supervisor = try Supervisor(logDirectory: "\(dir)/logs", logger: logger)

        var shops: [String: String] = [:]
        for i in 1...3 {
            shops["shop-\(i)"] = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0).base64EncodedString() }
                .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-")
        }
        self.shops = shops

        var env = ProcessInfo.processInfo.environment
        env["LIVESYNC_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["LIVESYNC_KAFKA_SESSION_TIMEOUT_MS"] = String(configuration.sessionTimeoutMilliseconds)
        env["LIVESYNC_DATA_DIR"] = dir
        env["LIVESYNC_DB_SYNCHRONOUS"] = configuration.synchronous
        let addressFile = "\(dir)/ingest.url"
        var ingestEnv = env
        // Every platform connector, with development credentials, against a local fake of the
        // platforms' order-detail APIs (replay registers its orders' details there). A
        // `LIVESYNC_CONNECTORS_*` variable overrides its credential for the connectors, the fake
        // and replay alike (docs/operations.md).
        let credentials = PlatformCredentials.development(overriddenBy: env)
        let fake = FakePlatformAPI(credentials: credentials)
        let (apiURL, apiTask) = try await fake.serve()
        platformAPI = fake
        platformAPIURL = apiURL
        platformAPITask = apiTask
        ingestEnv.merge(ConnectorsConfiguration.developmentEnvironment(apiBase: apiURL, credentials: credentials)) { current, _ in current }
        // Buyer data is sealed (AES-256-GCM) before it leaves ingest; the ERP book and logs see
        // only masked values. The key is per cluster, in a file only this user can read.
        if env["LIVESYNC_PII_KEY"] == nil && env["LIVESYNC_PII_KEY_FILE"] == nil {
            let keyFile = "\(dir)/pii.key"
            try SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }.write(toFile: keyFile, atomically: true, encoding: .utf8)
            chmod(keyFile, 0o600)
            ingestEnv["LIVESYNC_PII_KEY_FILE"] = keyFile
        }
        ingestEnv["LIVESYNC_INGEST_SHOPS"] = shops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";")
        erpSecret = env["LIVESYNC_ERP_SECRET"] ?? SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).map { String(format: "%02x", $0) }.joined() }
        ingestEnv["LIVESYNC_ERP_SECRET"] = erpSecret
        ingestEnv["LIVESYNC_INGEST_PORT"] = env["LIVESYNC_INGEST_PORT"] ?? "0"
        ingestEnv["LIVESYNC_INGEST_ADDRESS_FILE"] = addressFile
        ingestEnv["LIVESYNC_KAFKA_INSTANCE_ID"] = "ingest"
        // Ingest sends one small produce per webhook; the embedded broker scans every message set
        // it holds on each fetch, so fewer, larger sets keep it fast (adds up to this much latency).
        ingestEnv["LIVESYNC_KAFKA_LINGER_MS"] = env["LIVESYNC_KAFKA_LINGER_MS"] ?? String(configuration.ingestLingerMilliseconds)
        let bin = configuration.binDirectory
        self.environment = env
        try supervisor.start(ChildSpec(name: "ingest", executable: "\(bin)/livesync-ingest", environment: ingestEnv))
        for i in 1...max(1, configuration.stockInstances) { try supervisor.start(Self.instance(.stock, i, env: env, cluster: configuration)) }
        for i in 1...max(1, configuration.dispatchInstances) { try supervisor.start(Self.instance(.dispatch, i, env: env, cluster: configuration)) }
        var a = env
        a["LIVESYNC_KAFKA_INSTANCE_ID"] = "aftersales-1"
        try supervisor.start(ChildSpec(name: "aftersales", executable: "\(bin)/livesync-aftersales", environment: a))
        if configuration.withAlerting {
            var al = env
            al["LIVESYNC_KAFKA_INSTANCE_ID"] = "alerting-1"
            if let url = configuration.alertWebhookURL { al["LIVESYNC_ALERTING_WEBHOOK_URL"] = url }
            try supervisor.start(ChildSpec(name: "alerting", executable: "\(bin)/livesync-alerting",
                                           arguments: configuration.alertingConfigFile.map { ["--config", $0] } ?? [], environment: al))
        }
        if configuration.withChannels {
            // Stock pushes and shipment write-backs go to the same fake platform, with the
            // development apps and the access token it accepts (every platform's client is
            // configured; `channelsList` decides which channels get stock).
            var ch = env
            ch.merge(ConnectorsConfiguration.developmentEnvironment(apiBase: apiURL, credentials: credentials)) { current, _ in current }
            let c = credentials
            ch.merge(["LIVESYNC_CONNECTORS_POLL_JD_APP_KEY": c.jdAppKey, "LIVESYNC_CONNECTORS_POLL_JD_APP_SECRET": c.jdAppSecret,
                      "LIVESYNC_CONNECTORS_POLL_JD_GATEWAY": apiURL + "/routerjson",
                      "LIVESYNC_CONNECTORS_POLL_PINDUODUO_APP_KEY": c.pinduoduoClientID, "LIVESYNC_CONNECTORS_POLL_PINDUODUO_APP_SECRET": c.pinduoduoClientSecret,
                      "LIVESYNC_CONNECTORS_POLL_PINDUODUO_GATEWAY": apiURL + "/api/router"]) { current, _ in current }
            ch["LIVESYNC_KAFKA_INSTANCE_ID"] = "channels-1"
            ch["LIVESYNC_CHANNELS_LIST"] = env["LIVESYNC_CHANNELS_LIST"] ?? configuration.channelsList
            ch["LIVESYNC_CHANNELS_TOKENS"] = env["LIVESYNC_CHANNELS_TOKENS"]
                ?? ["douyin", "kuaishou", "wechat", "tiktok", "jd", "pinduoduo"].map { "\($0):*=\(fake.accessToken)" }.joined(separator: ";")
            try supervisor.start(ChildSpec(name: "channels", executable: "\(bin)/livesync-channels", environment: ch))
        }

        // Wait for ingest to listen (it writes its URL once bound).
        let deadline = Date().addingTimeInterval(60)
        var url: String?
        while url == nil && Date() < deadline {
            if let data = fm.contents(atPath: addressFile), !data.isEmpty { url = String(decoding: data, as: UTF8.self) } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        guard let url else {
            supervisor.stopAll()
            apiTask.cancel()
            throw ConfigurationError("livesync-ingest did not start listening within 60 s; see \(dir)/logs/ingest.log")
        }
        ingestURL = url
        try writeInfo(adminURL: nil)
    }

    public func writeInfo(adminURL: String?) throws {
        var info = ClusterInfo(bootstrap: bootstrap, ingestURL: ingestURL, shops: shops, dataDirectory: configuration.dataDirectory, adminURL: adminURL)
        info.platformAPIURL = platformAPIURL
        info.erpSecret = erpSecret
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(info).write(to: URL(fileURLWithPath: clusterFile))
        chmod(clusterFile, 0o600)
    }

    /// The consumer executables that scale out.
    public enum Scalable: String, Sendable, CaseIterable {
        case stock, dispatch
    }

    /// Instance `i` of a scalable consumer: named `stock`, `stock-2`, …; every stock instance has
    /// its own database (an empty disk when first started), dispatch instances share the ERP book.
    static func instance(_ kind: Scalable, _ i: Int, env: [String: String], cluster: DevClusterConfiguration) -> ChildSpec {
        var e = env
        e["LIVESYNC_KAFKA_INSTANCE_ID"] = "\(kind.rawValue)-\(i)"
        if kind == .stock, i > 1 { e["LIVESYNC_DB_STOCK"] = "\(cluster.dataDirectory)/stock-\(i).sqlite" }
        return ChildSpec(name: i == 1 ? kind.rawValue : "\(kind.rawValue)-\(i)", executable: "\(cluster.binDirectory)/livesync-\(kind.rawValue)", environment: e)
    }

    /// Instances of `kind` running now.
    public func instances(_ kind: Scalable) -> Int {
        supervisor.names.filter { $0 == kind.rawValue || $0.hasPrefix("\(kind.rawValue)-") }.count
    }

    /// Starts or gracefully stops instances of `kind` until `count` run (1...9). New ones join the
    /// group and are given partitions; stopped ones finish their batch and hand theirs over.
    public func scale(_ kind: Scalable, to count: Int) throws {
        guard (1...9).contains(count) else { throw ConfigurationError("instances must be 1...9, not \(count)") }
        var have = instances(kind)
        while have < count {
            have += 1
            try supervisor.start(Self.instance(kind, have, env: environment, cluster: configuration))
        }
        while have > count {
            supervisor.remove("\(kind.rawValue)-\(have)")
            have -= 1
        }
        logger.info("\(kind.rawValue) scaled to \(count)")
    }

    /// A crashed host replaced by a new one: SIGKILLs stock instance `i`, deletes its database
    /// and starts it again on the empty disk; it restores its partitions from the changelog.
    public func loseDisk(stockInstance i: Int) throws {
        let spec = Self.instance(.stock, i, env: environment, cluster: configuration)
        supervisor.remove(spec.name, signal: SIGKILL)
        let path = stockDatabase(instance: i)
        for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            try FileManager.default.removeItem(atPath: path + suffix)
        }
        try supervisor.start(spec)
    }

    /// Stops every process gracefully (each finishes and commits its batch).
    public func stop() {
        supervisor.stopAll()
        platformAPITask.cancel()
    }
}
