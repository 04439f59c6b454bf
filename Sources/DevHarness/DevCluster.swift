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
    /// `dispatch.changelogFormat` on the embedded broker: `inputs` (default here; see `start`)
    /// or `deltas` (the executables' default, for a real cluster).
    public var dispatchChangelogFormat = "inputs"
    /// Run `livesync-channels` (stock push and shipment write-back to the fake platform API).
    public var withChannels = true
    /// Channels whose stock `livesync-channels` pushes to the fake platform (`channels.list`).
    /// Default `douyin:dev-shop`: every SKU's level is pushed to one Douyin shop.
    public var channelsList = "douyin:dev-shop"
    /// Run each instance as on a host of its own (`--isolated`): its own data directory
    /// (`<dataDir>/hosts/<instance>`, mode 0700, owned by a user of its own when run as root), an
    /// environment with its own settings and nothing shared but the broker's and the read model's
    /// addresses. Default off: one data directory, each instance with files of its own in it.
    public var isolated = false
    /// Run `livesync-erp` against this ERP (`--erp tryton`); nil: no ERP target.
    public var erp: ErpDevTarget?

    public init(dataDirectory: String, binDirectory: String = DevClusterConfiguration.defaultBinDirectory) {
        self.dataDirectory = dataDirectory
        self.binDirectory = binDirectory
    }

    public static var defaultBinDirectory: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }
}

/// The merchant ERP a dev cluster's `livesync-erp` writes to.
public struct ErpDevTarget: Codable, Sendable {
    /// Adapter (`erp.kind`) and target name (`erp.target`).
    public var kind: String
    public var target: String
    /// The ERP server: URL, database and login, as `livesync dev` prints them.
    public var serverURL: String
    public var database: String
    public var login: String
    /// `LIVESYNC_ERP_*` settings for livesync-erp (credentials included; not written to cluster.json).
    public var environment: [String: String]

    public init(kind: String, target: String, serverURL: String, database: String, login: String, environment: [String: String]) {
        self.kind = kind
        self.target = target
        self.serverURL = serverURL
        self.database = database
        self.login = login
        self.environment = environment
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
    /// The read model (`livesync-book`): where views read the ERP book and stock levels.
    public var bookURL: String?
    /// Alerting's telemetry server (its alerts and last sweep's unsynced orders).
    public var alertingURL: String?
    /// `livesync-erp`'s telemetry server (`/erp/status`, `/erp/pending`), when dev runs one.
    public var erpURL: String?
    /// The ERP it writes to: kind, URL, database, login (no password).
    public var erpKind: String?
    public var erpServerURL: String?
    public var erpDatabase: String?
    public var erpLogin: String?

    public static func load(_ path: String) throws -> ClusterInfo {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("\(path) not found: start `livesync dev` first, or pass --ingest-url/--bootstrap")
        }
        return try JSONDecoder().decode(ClusterInfo.self, from: data)
    }
}

/// The embedded broker with LiveSync's topics, and every executable as a supervised child.
///
/// Instances share nothing but the broker and the read model's address: each has its own
/// state files (its own directory in `isolated` mode). What reads across instances here —
/// `stockDatabases`, `dispatchDatabases` — is the test oracle's view of the disks, not a
/// path any process uses.
public final class DevCluster: Sendable {
    public let configuration: DevClusterConfiguration
    public let broker: EmbeddedBroker
    public let supervisor: Supervisor
    public let shops: [String: String]
    public let ingestURL: String
    /// The read model (`livesync-book`) the views ask.
    public let bookURL: String
    /// Alerting's telemetry server.
    public let alertingURL: String?
    /// `livesync-erp`'s telemetry server, when an ERP target is configured.
    public let erpURL: String?
    /// The local fake of the platforms' order-detail APIs ingest's connectors call (dev credentials).
    public let platformAPIURL: String
    /// The fake platform itself: what it was told (stock pushes, shipment write-backs).
    public let platformAPI: FakePlatformAPI
    /// The secret the warehouse/ERP signs its shipment reports with (ingest's `erp.secret`).
    public let erpSecret: String
    let platformAPITask: Task<Void, Error>
    let logger: Logger
    /// What every instance is told (the broker, the read model; in shared mode the caller's environment too).
    let environment: [String: String]
    /// Whether isolated instances run as users of their own (only root can).
    let separateUsers: Bool

    public var bootstrap: String { broker.bootstrapServers }
    public var clusterFile: String { "\(configuration.dataDirectory)/cluster.json" }

    /// The data directory of instance `name`: its own under `hosts/` when isolated.
    public func dataDirectory(of name: String) -> String {
        configuration.isolated ? "\(configuration.dataDirectory)/hosts/\(name)" : configuration.dataDirectory
    }

    /// Instance `i`'s name: `stock`, `stock-2`, ….
    static func name(_ kind: Scalable, _ i: Int) -> String { i == 1 ? kind.rawValue : "\(kind.rawValue)-\(i)" }

    /// Instance `i`'s state database: `<its dir>/<kind>.sqlite`, or `<kind>-<i>.sqlite` beside the
    /// first one's when instances share the data directory.
    public func database(_ kind: Scalable, instance i: Int) -> String {
        let name = Self.name(kind, i)
        return configuration.isolated || i == 1 ? "\(dataDirectory(of: name))/\(kind.rawValue).sqlite" : "\(dataDirectory(of: name))/\(name).sqlite"
    }

    /// The first stock instance's database.
    public var stockDatabase: String { database(.stock, instance: 1) }
    /// Every stock database present (instances that ran, running or not).
    public var stockDatabases: [String] { databases(.stock) }
    /// Every dispatch database present (each holds the shards of the partitions it owned).
    public var dispatchDatabases: [String] { databases(.dispatch) }
    /// The read model's copy of the book and stock levels.
    public var bookDatabase: String { "\(dataDirectory(of: "book"))/book.sqlite" }
    public var alertingDatabase: String { "\(dataDirectory(of: "alerting"))/alerting.sqlite" }

    func databases(_ kind: Scalable) -> [String] {
        (1...9).map { database(kind, instance: $0) }.filter { FileManager.default.fileExists(atPath: $0) }
    }

    public init(configuration: DevClusterConfiguration, logger: Logger) async throws {
        self.configuration = configuration
        self.logger = logger
        let fm = FileManager.default
        let dir = configuration.dataDirectory
        for binary in ["livesync-ingest", "livesync-stock", "livesync-dispatch", "livesync-book", "livesync-alerting"] + (configuration.withChannels ? ["livesync-channels"] : []) + (configuration.erp != nil ? ["livesync-erp"] : []) {
            guard fm.isExecutableFile(atPath: "\(configuration.binDirectory)/\(binary)") else {
                throw ConfigurationError("\(binary) not found in \(configuration.binDirectory): build the package first (swift build -c release)")
            }
        }
        if fm.fileExists(atPath: dir) {
            logger.info("resetting \(dir): the embedded broker starts empty, so earlier state and offsets do not apply")
            try fm.removeItem(atPath: dir)
        }
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let unreachable = [configuration.binDirectory + "/livesync-stock", dir].filter { !Self.othersCanReach($0) }
        separateUsers = configuration.isolated && getuid() == 0 && unreachable.isEmpty
        if configuration.isolated && !separateUsers {
            logger.warning("isolated mode: each instance gets a directory of its own (mode 0700) but runs as this user", metadata: [
                "why": "\(getuid() != 0 ? "not root" : "other users cannot reach \(unreachable.joined(separator: ", "))")",
            ])
        }

        broker = try EmbeddedBroker()
        for topic in Topics.all() { try broker.createTopic(topic) }
        supervisor = try Supervisor(logDirectory: "\(dir)/logs", logger: logger)

        var shops: [String: String] = [:]
        for i in 1...3 {
            shops["shop-\(i)"] = SymmetricKey(size: .bits128).withUnsafeBytes { Data($0).base64EncodedString() }
                .replacingOccurrences(of: "=", with: "").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-")
        }
        self.shops = shops

        // What every instance is told. Shared mode: the caller's environment as well (its
        // LIVESYNC_* overrides apply). Isolated: only LIVESYNC_* settings that name no path.
        let parent = ProcessInfo.processInfo.environment
        var env: [String: String]
        if configuration.isolated {
            env = parent.filter { key, _ in
                key.hasPrefix("LIVESYNC_") && !key.hasPrefix("LIVESYNC_DB_") && !key.hasSuffix("_FILE") && key != "LIVESYNC_DATA_DIR"
            }
            env["PATH"] = parent["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        } else {
            env = parent
        }
        env["LIVESYNC_KAFKA_BOOTSTRAP"] = broker.bootstrapServers
        env["LIVESYNC_KAFKA_SESSION_TIMEOUT_MS"] = String(configuration.sessionTimeoutMilliseconds)
        env["LIVESYNC_DATA_DIR"] = dir
        env["LIVESYNC_DB_SYNCHRONOUS"] = configuration.synchronous
        // The embedded broker keeps at most 5 MiB per partition and drops the oldest silently.
        // dispatch.changelog entries as writes (`deltas`, about 1 KiB per order) outgrow that in
        // a 300,000-order session (all 16 partitions lost their first entries); as inputs (about
        // 250 bytes) they do not. So here dispatch writes inputs unless told otherwise; on a real
        // cluster (retention -1) the default is deltas.
        env["LIVESYNC_DISPATCH_CHANGELOG_FORMAT"] = parent["LIVESYNC_DISPATCH_CHANGELOG_FORMAT"] ?? configuration.dispatchChangelogFormat

        // The read model first: every view is told its address.
        let bookDir = try Self.makeDirectory("book", configuration: configuration, separateUsers: separateUsers)
        let bookAddressFile = "\(bookDir)/book.url"
        var bookEnv = env
        bookEnv["LIVESYNC_KAFKA_INSTANCE_ID"] = "book-1"
        bookEnv["LIVESYNC_BOOK_ADDRESS_FILE"] = bookAddressFile
        // A port of its own that survives restarts: the views are told one address.
        bookEnv["LIVESYNC_BOOK_PORT"] = String(try Self.freePort())
        let bin = configuration.binDirectory
        try supervisor.start(Self.spec(name: "book", executable: "\(bin)/livesync-book", environment: bookEnv, configuration: configuration, separateUsers: separateUsers))
        guard let bookURL = try await Self.waitForAddress(bookAddressFile, timeout: 60) else {
            supervisor.stopAll()
            throw ConfigurationError("livesync-book did not start listening within 60 s; see \(dir)/logs/book.log")
        }
        self.bookURL = bookURL
        env["LIVESYNC_BOOK_URL"] = bookURL

        let ingestDir = try Self.makeDirectory("ingest", configuration: configuration, separateUsers: separateUsers)
        let addressFile = "\(ingestDir)/ingest.url"
        var ingestEnv = env
        // Every platform connector, with development credentials, against a local fake of the
        // platforms' order-detail APIs (replay registers its orders' details there). A
        // `LIVESYNC_CONNECTORS_*` variable overrides its credential for the connectors, the fake
        // and replay alike (docs/operations.md).
        let credentials = PlatformCredentials.development(overriddenBy: parent)
        let fake = FakePlatformAPI(credentials: credentials)
        let (apiURL, apiTask) = try await fake.serve()
        platformAPI = fake
        platformAPIURL = apiURL
        platformAPITask = apiTask
        ingestEnv.merge(ConnectorsConfiguration.developmentEnvironment(apiBase: apiURL, credentials: credentials)) { current, _ in current }
        // Buyer data is sealed (AES-256-GCM) before it leaves ingest; the ERP book and logs see
        // only masked values. The key is per cluster, in a file only ingest's user can read.
        if parent["LIVESYNC_PII_KEY"] == nil && (configuration.isolated || parent["LIVESYNC_PII_KEY_FILE"] == nil) {
            let keyFile = "\(ingestDir)/pii.key"
            try SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }.write(toFile: keyFile, atomically: true, encoding: .utf8)
            chmod(keyFile, 0o600)
            if separateUsers { chown(keyFile, Self.uid(of: "ingest"), Self.uid(of: "ingest")) }
            ingestEnv["LIVESYNC_PII_KEY_FILE"] = keyFile
        }
        ingestEnv["LIVESYNC_INGEST_SHOPS"] = shops.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";")
        erpSecret = parent["LIVESYNC_ERP_SECRET"] ?? SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).map { String(format: "%02x", $0) }.joined() }
        ingestEnv["LIVESYNC_ERP_SECRET"] = erpSecret
        ingestEnv["LIVESYNC_INGEST_PORT"] = parent["LIVESYNC_INGEST_PORT"] ?? "0"
        ingestEnv["LIVESYNC_INGEST_ADDRESS_FILE"] = addressFile
        ingestEnv["LIVESYNC_KAFKA_INSTANCE_ID"] = "ingest"
        // Ingest sends one small produce per webhook; the embedded broker scans every message set
        // it holds on each fetch, so fewer, larger sets keep it fast (adds up to this much latency).
        ingestEnv["LIVESYNC_KAFKA_LINGER_MS"] = parent["LIVESYNC_KAFKA_LINGER_MS"] ?? String(configuration.ingestLingerMilliseconds)
        self.environment = env
        try supervisor.start(Self.spec(name: "ingest", executable: "\(bin)/livesync-ingest", environment: ingestEnv, configuration: configuration, separateUsers: separateUsers))
        for i in 1...max(1, configuration.stockInstances) { try supervisor.start(try Self.instance(.stock, i, env: env, cluster: configuration, separateUsers: separateUsers)) }
        for i in 1...max(1, configuration.dispatchInstances) { try supervisor.start(try Self.instance(.dispatch, i, env: env, cluster: configuration, separateUsers: separateUsers)) }
        if configuration.withAlerting {
            _ = try Self.makeDirectory("alerting", configuration: configuration, separateUsers: separateUsers)
            var al = env
            al["LIVESYNC_KAFKA_INSTANCE_ID"] = "alerting-1"
            // A port of its own, so the dashboard can be told where alerting's alerts are.
            let port = try Self.freePort()
            al["LIVESYNC_TELEMETRY_PORT"] = String(port)
            alertingURL = "http://127.0.0.1:\(port)"
            if let url = configuration.alertWebhookURL { al["LIVESYNC_ALERTING_WEBHOOK_URL"] = url }
            try supervisor.start(Self.spec(name: "alerting", executable: "\(bin)/livesync-alerting",
                                           arguments: configuration.alertingConfigFile.map { ["--config", $0] } ?? [], environment: al,
                                           configuration: configuration, separateUsers: separateUsers))
        } else {
            alertingURL = nil
        }
        if let erp = configuration.erp {
            _ = try Self.makeDirectory("erp", configuration: configuration, separateUsers: separateUsers)
            var e = env
            e.merge(erp.environment) { _, new in new }
            e["LIVESYNC_ERP_KIND"] = erp.kind
            e["LIVESYNC_ERP_TARGET"] = erp.target
            e["LIVESYNC_KAFKA_INSTANCE_ID"] = "erp-1"
            let port = try Self.freePort()
            e["LIVESYNC_TELEMETRY_PORT"] = String(port)
            erpURL = "http://127.0.0.1:\(port)"
            try supervisor.start(Self.spec(name: "erp", executable: "\(bin)/livesync-erp", environment: e, configuration: configuration, separateUsers: separateUsers))
        } else {
            erpURL = nil
        }
        if configuration.withChannels {
            // Stock pushes and shipment write-backs go to the same fake platform, with the
            // development apps and the access token it accepts (every platform's client is
            // configured; `channelsList` decides which channels get stock).
            _ = try Self.makeDirectory("channels", configuration: configuration, separateUsers: separateUsers)
            var ch = env
            ch.merge(ConnectorsConfiguration.developmentEnvironment(apiBase: apiURL, credentials: credentials)) { current, _ in current }
            let c = credentials
            ch.merge(["LIVESYNC_CONNECTORS_POLL_JD_APP_KEY": c.jdAppKey, "LIVESYNC_CONNECTORS_POLL_JD_APP_SECRET": c.jdAppSecret,
                      "LIVESYNC_CONNECTORS_POLL_JD_GATEWAY": apiURL + "/routerjson",
                      "LIVESYNC_CONNECTORS_POLL_PINDUODUO_APP_KEY": c.pinduoduoClientID, "LIVESYNC_CONNECTORS_POLL_PINDUODUO_APP_SECRET": c.pinduoduoClientSecret,
                      "LIVESYNC_CONNECTORS_POLL_PINDUODUO_GATEWAY": apiURL + "/api/router"]) { current, _ in current }
            ch["LIVESYNC_KAFKA_INSTANCE_ID"] = "channels-1"
            ch["LIVESYNC_CHANNELS_LIST"] = parent["LIVESYNC_CHANNELS_LIST"] ?? configuration.channelsList
            ch["LIVESYNC_CHANNELS_TOKENS"] = parent["LIVESYNC_CHANNELS_TOKENS"]
                ?? ["douyin", "kuaishou", "wechat", "tiktok", "jd", "pinduoduo"].map { "\($0):*=\(fake.accessToken)" }.joined(separator: ";")
            try supervisor.start(Self.spec(name: "channels", executable: "\(bin)/livesync-channels", environment: ch, configuration: configuration, separateUsers: separateUsers))
        }

        // Wait for ingest to listen (it writes its URL once bound).
        guard let url = try await Self.waitForAddress(addressFile, timeout: 60) else {
            supervisor.stopAll()
            apiTask.cancel()
            throw ConfigurationError("livesync-ingest did not start listening within 60 s; see \(dir)/logs/ingest.log")
        }
        ingestURL = url
        try writeInfo(adminURL: nil)
    }

    /// Waits for a child to write its URL to `file`; nil after `timeout` seconds.
    static func waitForAddress(_ file: String, timeout: Double) async throws -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: file), !data.isEmpty { return String(decoding: data, as: UTF8.self) }
            try await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    /// A free TCP port on 127.0.0.1 (bound and released: dev only).
    static func freePort() throws -> Int { try FreePort.next() }

    /// Whether users other than the owner can reach `path`: every directory above it searchable
    /// by others (and the file itself, when it exists, executable by them).
    static func othersCanReach(_ path: String) -> Bool {
        var url = URL(fileURLWithPath: path).standardizedFileURL
        var st = stat()
        if stat(url.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_mode & 0o001 == 0 { return false }
        while url.path != "/" {
            url.deleteLastPathComponent()
            guard stat(url.path, &st) == 0 else { continue }
            if st.st_mode & 0o001 == 0 { return false }
        }
        return true
    }

    /// The user an isolated instance runs as: one per instance name, outside the usual ranges.
    static func uid(of name: String) -> uid_t {
        let kinds = ["ingest": 0, "book": 1, "alerting": 2, "channels": 3, "erp": 4, "stock": 10, "dispatch": 20]
        let parts = name.split(separator: "-")
        let base = kinds[String(parts[0])] ?? 30
        let index = parts.count > 1 ? Int(parts[1]) ?? 1 : 1
        return uid_t(62_000 + base + index - 1)
    }

    /// Creates instance `name`'s data directory (isolated: its own, mode 0700, owned by its user).
    @discardableResult
    static func makeDirectory(_ name: String, configuration: DevClusterConfiguration, separateUsers: Bool) throws -> String {
        let dir = configuration.isolated ? "\(configuration.dataDirectory)/hosts/\(name)" : configuration.dataDirectory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if configuration.isolated {
            chmod("\(configuration.dataDirectory)/hosts", 0o755)
            chmod(dir, 0o700)
            if separateUsers { chown(dir, uid(of: name), uid(of: name)) }
        }
        return dir
    }

    /// The child spec of instance `name`: isolated, its data directory is its own and, as root,
    /// it runs as its own user (`setpriv`, which execs it: the pid is the instance's).
    static func spec(name: String, executable: String, arguments: [String] = [], environment: [String: String],
                     configuration: DevClusterConfiguration, separateUsers: Bool) -> ChildSpec {
        var e = environment
        guard configuration.isolated else { return ChildSpec(name: name, executable: executable, arguments: arguments, environment: e) }
        let dir = "\(configuration.dataDirectory)/hosts/\(name)"
        e["LIVESYNC_DATA_DIR"] = dir
        e["HOME"] = dir
        e["TMPDIR"] = dir
        guard separateUsers else { return ChildSpec(name: name, executable: executable, arguments: arguments, environment: e) }
        let uid = uid(of: name)
        return ChildSpec(name: name, executable: "/usr/bin/setpriv",
                         arguments: ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--", executable] + arguments, environment: e)
    }

    public func writeInfo(adminURL: String?) throws {
        var info = ClusterInfo(bootstrap: bootstrap, ingestURL: ingestURL, shops: shops, dataDirectory: configuration.dataDirectory, adminURL: adminURL)
        info.platformAPIURL = platformAPIURL
        info.erpSecret = erpSecret
        info.bookURL = bookURL
        info.alertingURL = alertingURL
        info.erpURL = erpURL
        if let erp = configuration.erp {
            info.erpKind = erp.kind
            info.erpServerURL = erp.serverURL
            info.erpDatabase = erp.database
            info.erpLogin = erp.login
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(info).write(to: URL(fileURLWithPath: clusterFile))
        chmod(clusterFile, 0o600)
    }

    /// The consumer executables that scale out.
    public enum Scalable: String, Sendable, CaseIterable {
        case stock, dispatch
    }

    /// Instance `i` of a scalable consumer: named `stock`, `stock-2`, …; every instance has its own
    /// database (an empty disk when first started), restored from its changelog.
    static func instance(_ kind: Scalable, _ i: Int, env: [String: String], cluster: DevClusterConfiguration, separateUsers: Bool) throws -> ChildSpec {
        let name = name(kind, i)
        try makeDirectory(name, configuration: cluster, separateUsers: separateUsers)
        var e = env
        e["LIVESYNC_KAFKA_INSTANCE_ID"] = "\(kind.rawValue)-\(i)"
        if !cluster.isolated && i > 1 { e["LIVESYNC_DB_\(kind.rawValue.uppercased())"] = "\(cluster.dataDirectory)/\(name).sqlite" }
        return spec(name: name, executable: "\(cluster.binDirectory)/livesync-\(kind.rawValue)", environment: e, configuration: cluster, separateUsers: separateUsers)
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
            try supervisor.start(try Self.instance(kind, have, env: environment, cluster: configuration, separateUsers: separateUsers))
        }
        while have > count {
            supervisor.remove(Self.name(kind, have))
            have -= 1
        }
        logger.info("\(kind.rawValue) scaled to \(count)")
    }

    /// A crashed host replaced by a new one: SIGKILLs instance `i` of `kind`, deletes its
    /// database and starts it again on the empty disk; it restores its partitions from the changelog.
    public func loseDisk(_ kind: Scalable, instance i: Int) throws {
        let spec = try Self.instance(kind, i, env: environment, cluster: configuration, separateUsers: separateUsers)
        supervisor.remove(spec.name, signal: SIGKILL)
        let path = database(kind, instance: i)
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
