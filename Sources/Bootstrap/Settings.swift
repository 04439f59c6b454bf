import Worker
import Configuration
import Foundation
import Hummingbird
import Kafka
import Logging
import ServiceLifecycle
import SystemPackage
import Telemetry

/// Where every LiveSync executable reads its configuration: environment variables first
/// (`LIVESYNC_KAFKA_BOOTSTRAP`), then an optional JSON file (`{"livesync": {"kafka": {"bootstrap": …}}}`),
/// then the documented defaults.
public struct LiveSyncConfig: Sendable {
    public let reader: ConfigReader

    public init(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) async throws {
        var providers: [any ConfigProvider] = [EnvironmentVariablesProvider(environmentVariables: environment)]
        if let file {
            guard FileManager.default.fileExists(atPath: file) else {
                throw ConfigurationError("configuration file \(file) does not exist")
            }
            providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(file)))
        }
        reader = ConfigReader(providers: providers)
    }

    public func string(_ key: String, default value: String) -> String {
        reader.string(forKey: ConfigKey("livesync.\(key)"), default: value)
    }

    public func optionalString(_ key: String) -> String? {
        reader.string(forKey: ConfigKey("livesync.\(key)"))
    }

    /// An integer setting, or `value` when it is not set. A value that is set but is not an
    /// integer (`LIVESYNC_INGEST_PORT=80a`, `"port": 80.5`) is refused naming the key, never
    /// silently replaced by the default.
    public func int(_ key: String, default value: Int) throws -> Int {
        let k = ConfigKey("livesync.\(key)")
        if let text = reader.string(forKey: k) {
            guard let v = Int(text.trimmingCharacters(in: .whitespaces)) else {
                throw ConfigurationError("\(key) must be an integer, not '\(text)' (\(Self.environmentName(key)) or livesync.\(key) in the file)")
            }
            return v
        }
        if let v = reader.int(forKey: k) { return v }
        if let d = reader.double(forKey: k) {
            throw ConfigurationError("\(key) must be an integer, not \(d) (\(Self.environmentName(key)) or livesync.\(key) in the file)")
        }
        if let b = reader.bool(forKey: k) {
            throw ConfigurationError("\(key) must be an integer, not \(b) (\(Self.environmentName(key)) or livesync.\(key) in the file)")
        }
        return value
    }

    /// The environment variable of a key: `kafka.sessionTimeoutMs` → `LIVESYNC_KAFKA_SESSION_TIMEOUT_MS`.
    public static func environmentName(_ key: String) -> String {
        var name = "LIVESYNC_"
        for c in key {
            if c == "." { name.append("_") } else if c.isUppercase { name.append("_"); name.append(c) } else { name.append(contentsOf: c.uppercased()) }
        }
        return name
    }

    /// The Kafka client settings, over `KafkaConfiguration`'s defaults:
    /// - `kafka.bootstrap` (default `127.0.0.1:9092`; `livesync dev` passes the embedded broker's),
    /// - `kafka.lingerMs` (producers' `linger.ms`), `kafka.sessionTimeoutMs` (members'
    ///   `session.timeout.ms`), `kafka.instanceId` (static membership, `group.instance.id`),
    /// - `kafka.properties`: any other librdkafka property, `k=v,k=v` (e.g. SASL/TLS settings).
    public func kafka() throws -> KafkaConfiguration {
        let properties = try KafkaConfiguration.parseProperties(optionalString("kafka.properties") ?? "", source: "kafka.properties")
        var kafka = KafkaConfiguration(bootstrapServers: string("kafka.bootstrap", default: "127.0.0.1:9092"), properties: properties)
        kafka.linger = .milliseconds(try int("kafka.lingerMs", default: kafka.linger.wholeMilliseconds))
        kafka.sessionTimeout = .milliseconds(try int("kafka.sessionTimeoutMs", default: kafka.sessionTimeout.wholeMilliseconds))
        if let id = optionalString("kafka.instanceId"), !id.isEmpty { kafka.groupInstanceID = id }
        return kafka
    }

    /// The instance's identity in its group: `kafka.instanceId` (→ `group.instance.id`, static
    /// membership on real Kafka; also names this instance's outbox rows). Default: the host name.
    public var instanceID: String {
        let id = optionalString("kafka.instanceId") ?? ""
        return id.isEmpty ? ProcessInfo.processInfo.hostName : id
    }

    /// The state database of an executable: `<dataDir>/<name>.sqlite` unless `db.<name>` names a path.
    /// `db.synchronous` (default FULL) applies to all.
    public func stateStore(_ name: String) throws -> StateStoreConfiguration {
        let dir = string("dataDir", default: "var/data")
        let sync = string("db.synchronous", default: "FULL").uppercased()
        guard ["OFF", "NORMAL", "FULL", "EXTRA"].contains(sync) else {
            throw ConfigurationError("db.synchronous must be OFF, NORMAL, FULL or EXTRA, not '\(sync)'")
        }
        return StateStoreConfiguration(path: string("db.\(name)", default: "\(dir)/\(name).sqlite"), synchronous: sync)
    }

    /// The batching consumer's settings for `group` over `BatchConsumerConfiguration`'s defaults:
    /// `consumer.maxBatch`, `consumer.maxBatchBytes`, `consumer.maxWaitMs`, `consumer.shutdownTimeoutMs`,
    /// `kafka.sessionTimeoutMs` (default 45000, Kafka's; the embedded broker waits this minus 1 s
    /// before each rebalance, so dev uses 6000), and the static membership id (`kafka.instanceId`).
    public func consumer(group: String, topics: [String], companionTopics: [String] = []) throws -> BatchConsumerConfiguration {
        let kafka = try kafka()
        let defaults = BatchConsumerConfiguration(kafka: kafka, groupID: group, topics: topics)
        for key in ["consumer.maxBatch", "consumer.maxBatchBytes"] where try int(key, default: 1) < 1 {
            throw ConfigurationError("\(key) must be at least 1 (\(Self.environmentName(key)) or livesync.\(key) in the file)")
        }
        return BatchConsumerConfiguration(
            kafka: kafka, groupID: group, topics: topics, companionTopics: companionTopics, instanceID: instanceID,
            maxBatchSize: try int("consumer.maxBatch", default: defaults.maxBatchSize),
            maxBatchBytes: try int("consumer.maxBatchBytes", default: defaults.maxBatchBytes),
            maxBatchWait: .milliseconds(try int("consumer.maxWaitMs", default: defaults.maxBatchWait.wholeMilliseconds)),
            shutdownTimeout: .milliseconds(try int("consumer.shutdownTimeoutMs", default: defaults.shutdownTimeout.wholeMilliseconds)))
    }
}

/// Runs long-lived services until SIGTERM/SIGINT, then shuts them down gracefully.
public enum ServiceRunner {
    public static func run(_ services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        let watchdog = supervisorWatchdog(logger: logger)
        defer { watchdog?.cancel() }
        try await group.run()
    }

    /// Under a supervisor (`livesync dev`, `demo`, `bench`: `LIVESYNC_SUPERVISOR_PID`), a child
    /// whose supervisor died shuts itself down gracefully instead of running on as an orphan.
    static func supervisorWatchdog(logger: Logger) -> Task<Void, Never>? {
        guard let text = ProcessInfo.processInfo.environment["LIVESYNC_SUPERVISOR_PID"], let supervisor = Int32(text) else { return nil }
        return Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(500))
                if getppid() != supervisor {
                    logger.warning("supervisor \(supervisor) is gone; shutting down")
                    kill(getpid(), SIGTERM)
                    return
                }
            }
        }
    }

    /// Standard logging for every executable: stderr, level from `LIVESYNC_LOG_LEVEL` (default info).
    public static func bootstrapLogging() {
        let level = ProcessInfo.processInfo.environment["LIVESYNC_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// What a consumer executable's add-ons are built from: its settings, state store, consumer
/// (owned partitions, statistics) and producer.
public struct ConsumerParts: Sendable {
    public let config: LiveSyncConfig
    public let store: StateStore
    public let consumer: BatchConsumerService
    public let producer: KafkaProducer
    public let logger: Logger
}

/// Services that run beside a consumer and the routes they add to its telemetry server.
public struct ConsumerAddOns {
    public var services: [any Service]
    public var routes: (Router<BasicRequestContext>) throws -> Void
    public init(services: [any Service] = [], routes: @escaping (Router<BasicRequestContext>) throws -> Void = { _ in }) {
        self.services = services
        self.routes = routes
    }
}

/// A consumer executable in one call: state store, producer, batching consumer, service group.
public enum ConsumerMain {
    /// - Parameter groupPerInstance: each instance is a group of its own (`<group>-<instance id>`)
    ///   and so consumes every partition (a read model's copy).
    /// - Parameter extraServices: services that run beside the consumer in the same group
    ///   (for example alerting's notifier), sharing its configuration and state store.
    /// - Parameter telemetryRoutes: routes the process serves on its telemetry server beside
    ///   `/metrics`, `/healthz` and `/readyz` (for example alerting's `/alerts`, read from its own store).
    /// - Parameter addOns: services and routes that need the consumer itself (its owned partitions)
    ///   or the producer, such as `livesync-erp`'s writer.
    public static func run(
        name: String, group: String, groupPerInstance: Bool = false, topics: [String], companionTopics: [String] = [], database: String? = nil, configFile: String?,
        extraServices: (LiveSyncConfig, StateStore, Logger) throws -> [any Service] = { _, _, _ in [] },
        telemetryRoutes: (LiveSyncConfig, StateStore, Router<BasicRequestContext>) throws -> Void = { _, _, _ in },
        addOns: (ConsumerParts) throws -> ConsumerAddOns = { _ in ConsumerAddOns() },
        makeProcessor: @escaping @Sendable (LiveSyncConfig) throws -> any BatchProcessor
    ) async throws {
        ServiceRunner.bootstrapLogging()
        Telemetry.bootstrap()
        let logger = Logger(label: "livesync.\(name)")
        let config = try await LiveSyncConfig(file: configFile)
        let store = try StateStore(try config.stateStore(database ?? name))
        let kafka = try config.kafka()
        let producer = try KafkaProducer(configuration: kafka, logger: logger)
        let groupID = config.string("group.\(name)", default: groupPerInstance ? "\(group)-\(config.instanceID)" : group)
        let service = BatchConsumerService(
            configuration: try config.consumer(group: groupID, topics: topics, companionTopics: companionTopics),
            store: store, producer: producer, logger: logger,
            makeProcessor: { try makeProcessor(config) })
        logger.info("starting", metadata: ["bootstrap": "\(kafka.bootstrapServers)", "db": "\(store.configuration.path)"])
        // First: the group stops services in reverse order, so `stopping` is announced last.
        let announcer = try config.instanceAnnouncer(name: name, group: groupID, producer: producer, logger: logger)
        let more = try addOns(ConsumerParts(config: config, store: store, consumer: service, producer: producer, logger: logger))
        let telemetry = try telemetryService(name: name, config: config, store: store, producer: producer, service: service,
                                             announcer: announcer, logger: logger, addingRoutes: {
                                                 try telemetryRoutes(config, store, $0)
                                                 try more.routes($0)
                                             })
        try await ServiceRunner.run([announcer, service, telemetry] + extraServices(config, store, logger) + more.services, logger: logger)
        producer.close()
    }
}
