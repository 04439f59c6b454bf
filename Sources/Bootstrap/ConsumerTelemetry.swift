import Worker
import Dispatch
import Foundation
import GRDB
import Hummingbird
import Kafka
import Logging
import ServiceLifecycle
import Synchronization
import Telemetry

/// The readiness checks every executable shares.
public enum StandardChecks {
    /// `broker_reachable`: a broker answers a metadata request within 2 s.
    public static func brokerReachable(_ producer: KafkaProducer) -> HealthCheck {
        HealthCheck("broker_reachable") {
            let ok = await withCheckedContinuation { c in
                DispatchQueue.global().async { c.resume(returning: producer.brokerReachable(timeoutMilliseconds: 2_000)) }
            }
            return ok ? .pass() : .fail("no broker answered a metadata request within 2 s")
        }
    }

    /// `sqlite_writable`: the state database grants a write lock (taken and rolled back on a
    /// connection of its own, waiting at most half a second: a lock held by a batch in progress
    /// means the file is being written, which passes).
    public static func sqliteWritable(_ store: StateStore) -> HealthCheck {
        let path = store.configuration.path
        let probe = Mutex<DatabaseQueue?>(nil)
        return HealthCheck("sqlite_writable") {
            await withCheckedContinuation { c in
                DispatchQueue.global().async {
                    c.resume(returning: probe.withLock { queue -> CheckResult in
                        do {
                            if queue == nil {
                                var config = Configuration()
                                config.busyMode = .timeout(0.5)
                                queue = try DatabaseQueue(path: path, configuration: config)
                            }
                            try queue!.writeWithoutTransaction { db in try db.inTransaction(.immediate) { .rollback } }
                            return .pass(path)
                        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
                            return .pass("\(path) (busy: a batch holds the write lock)")
                        } catch {
                            return .fail("\(path): \(error)")
                        }
                    })
                }
            }
        }
    }

    /// `partitions_assigned`: the consumer owns at least one partition.
    public static func partitionsAssigned(_ service: BatchConsumerService) -> HealthCheck {
        HealthCheck("partitions_assigned") {
            let n = service.statistics.partitions.count
            return n > 0 ? .pass("\(n) partitions") : .fail("no partitions assigned (joining the group, or more members than partitions)")
        }
    }

    /// `lag_under_threshold`: messages behind the high watermarks, over the owned partitions, at most `maxLag`.
    public static func lagUnder(_ service: BatchConsumerService, maxLag: Int64) -> HealthCheck {
        HealthCheck("lag_under_threshold") {
            let lag = service.statistics.lag
            return lag <= maxLag ? .pass("lag \(lag) <= \(maxLag)") : .fail("lag \(lag) > \(maxLag) messages")
        }
    }
}

/// Runs a process's telemetry server; once it listens, `announcer` (if any) announces its URL.
public struct TelemetryService: Service {
    let app: any Service

    /// - Parameter addingRoutes: the process's own routes, served beside the health endpoints.
    public init(endpoints: HealthEndpoints, configuration: TelemetryConfiguration, logger: Logger, announcer: InstanceAnnouncer? = nil,
                addingRoutes: (Router<BasicRequestContext>) throws -> Void = { _ in }) rethrows {
        app = try TelemetryServer.make(endpoints: endpoints, configuration: configuration, logger: logger,
                                       onListening: { url in announcer?.listening(url: url) }, addingRoutes: addingRoutes)
    }

    public func run() async throws {
        try await app.run()
    }
}

extension LiveSyncConfig {
    /// `telemetry.host` (default 127.0.0.1), `telemetry.port` (default 0: any free port, announced
    /// on `livesync.instances`), `telemetry.advertisedHost` (default: the host, or the host name
    /// when listening on a wildcard address) and `telemetry.announceIntervalMs` (default 10000).
    public var telemetry: TelemetryConfiguration {
        get throws {
            let defaults = TelemetryConfiguration()
            let interval = try int("telemetry.announceIntervalMs", default: defaults.announceInterval.wholeMilliseconds)
            guard interval > 0 else {
                throw ConfigurationError("telemetry.announceIntervalMs must be positive, not \(interval) (\(Self.environmentName("telemetry.announceIntervalMs")))")
            }
            return TelemetryConfiguration(host: string("telemetry.host", default: defaults.host), port: try int("telemetry.port", default: defaults.port),
                                          advertisedHost: optionalString("telemetry.advertisedHost").flatMap { $0.isEmpty ? nil : $0 },
                                          announceInterval: .milliseconds(interval))
        }
    }

    /// The announcer of a process named `name` (`processName`), in consumer group `group` (none
    /// for ingest), producing through `producer` every `telemetry.announceIntervalMs`.
    public func instanceAnnouncer(name: String, group: String = "", producer: KafkaProducer, logger: Logger) throws -> InstanceAnnouncer {
        InstanceAnnouncer(process: processName(name), group: group, producer: producer, interval: try telemetry.announceInterval, logger: logger)
    }

    /// The name this process reports under: `kafka.instanceId` when set, else `<name>-<pid>`.
    public func processName(_ name: String) -> String {
        let id = optionalString("kafka.instanceId") ?? ""
        return id.isEmpty ? "\(name)-\(getpid())" : id
    }

    /// `health.maxLag` (default 100,000 messages): above it `/readyz` fails `lag_under_threshold`.
    public var maxLag: Int64 { get throws { Int64(try int("health.maxLag", default: 100_000)) } }
}

extension ConsumerMain {
    /// `/metrics`, `/healthz` and `/readyz` for a consumer executable.
    static func telemetryService(name: String, config: LiveSyncConfig, store: StateStore, producer: KafkaProducer,
                                 service: BatchConsumerService, announcer: InstanceAnnouncer, logger: Logger,
                                 addingRoutes: (Router<BasicRequestContext>) throws -> Void = { _ in }) throws -> TelemetryService {
        let endpoints = HealthEndpoints(
            process: config.processName(name),
            checks: [
                StandardChecks.brokerReachable(producer), StandardChecks.partitionsAssigned(service),
                StandardChecks.sqliteWritable(store), StandardChecks.lagUnder(service, maxLag: try config.maxLag),
            ],
            consumption: {
                let s = service.statistics
                return ConsumptionSnapshot(partitions: s.partitions.count, lag: s.lag, lastBatchAtUs: s.lastBatchAtUs)
            })
        return try TelemetryService(endpoints: endpoints, configuration: try config.telemetry, logger: logger, announcer: announcer,
                                    addingRoutes: addingRoutes)
    }
}
