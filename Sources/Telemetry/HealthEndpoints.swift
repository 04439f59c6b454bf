import Foundation
import Hummingbird
import Logging
import NIOCore

/// One readiness check's outcome.
public struct CheckResult: Sendable, Codable, Equatable {
    public var ok: Bool
    public var detail: String
    public init(ok: Bool, detail: String) {
        self.ok = ok
        self.detail = detail
    }
    public static func pass(_ detail: String = "ok") -> CheckResult { CheckResult(ok: true, detail: detail) }
    public static func fail(_ detail: String) -> CheckResult { CheckResult(ok: false, detail: detail) }
}

/// A named readiness check (`broker_reachable`, `partitions_assigned`, `sqlite_writable`, `lag_under_threshold`).
public struct HealthCheck: Sendable {
    public var name: String
    public var run: @Sendable () async -> CheckResult
    public init(_ name: String, run: @escaping @Sendable () async -> CheckResult) {
        self.name = name
        self.run = run
    }
}

/// What a process reports about its consumption, for `/readyz` and `livesync status`.
public struct ConsumptionSnapshot: Sendable, Codable, Equatable {
    public var partitions: Int
    public var lag: Int64
    public var lastBatchAtUs: Int64
    public init(partitions: Int, lag: Int64, lastBatchAtUs: Int64) {
        self.partitions = partitions
        self.lag = lag
        self.lastBatchAtUs = lastBatchAtUs
    }
}

/// The `/readyz` body: every check by name, the failing ones listed, and the consumption figures.
public struct ReadinessReport: Sendable, Codable, Equatable {
    public var process: String
    public var pid: Int32
    public var status: String
    public var failed: [String]
    public var checks: [String: CheckResult]
    public var consumption: ConsumptionSnapshot?
    public var ready: Bool { failed.isEmpty }
}

/// `/metrics`, `/healthz` and `/readyz` for one process, on its own small server or added to
/// an existing router (ingest).
///
/// `/healthz` answers 200 while the process serves HTTP at all (liveness); `/readyz` runs every
/// check and answers 200 when all pass, 503 otherwise, naming the failing ones.
public struct HealthEndpoints: Sendable {
    public var process: String
    public var checks: [HealthCheck]
    public var consumption: (@Sendable () -> ConsumptionSnapshot)?

    public init(process: String, checks: [HealthCheck], consumption: (@Sendable () -> ConsumptionSnapshot)? = nil) {
        self.process = process
        self.checks = checks
        self.consumption = consumption
    }

    public func readiness() async -> ReadinessReport {
        var results: [String: CheckResult] = [:]
        await withTaskGroup(of: (String, CheckResult).self) { group in
            for check in checks { group.addTask { (check.name, await check.run()) } }
            for await (name, result) in group { results[name] = result }
        }
        let failed = results.filter { !$0.value.ok }.map(\.key).sorted()
        return ReadinessReport(process: process, pid: getpid(), status: failed.isEmpty ? "ready" : "not_ready",
                               failed: failed, checks: results, consumption: consumption?())
    }

    public func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: Telemetry.exposition())))
        }
        router.get("/healthz") { _, _ in
            Self.json(.ok, #"{"status":"ok","process":"\#(process)"}"#)
        }
        router.get("/readyz") { _, _ in
            let report = await readiness()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let body = (try? encoder.encode(report)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return Self.json(report.ready ? .ok : .serviceUnavailable, body)
        }
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Settings of a process's telemetry server.
public struct TelemetryConfiguration: Sendable {
    /// Listen address. Default 127.0.0.1, port 0 (any free port, announced on
    /// `livesync.instances`); set a fixed port for Prometheus to scrape.
    public var host: String
    public var port: Int
    /// The host other machines reach this server at, in the URL the process announces. nil: `host`,
    /// or this machine's host name when `host` is a wildcard (`0.0.0.0`, `::`), which no other
    /// machine could connect to. Set it to the pod's IP on Kubernetes.
    public var advertisedHost: String?
    /// How often the process announces its URL again (a reader leaves out what it has not heard
    /// from for its maximum age). Default 10 s.
    public var announceInterval: Duration

    public init(host: String = "127.0.0.1", port: Int = 0, advertisedHost: String? = nil, announceInterval: Duration = .seconds(10)) {
        self.host = host
        self.port = port
        self.advertisedHost = advertisedHost
        self.announceInterval = announceInterval
    }

    /// The base URL (`http://host:port`) under which a server bound to `listenHost`:`port` is
    /// reached from other machines: `advertisedHost` if set, else `listenHost` unless it is a
    /// wildcard address, then this machine's host name.
    public static func advertisedURL(listenHost: String, port: Int, advertisedHost: String?) -> String {
        var host = advertisedHost.flatMap { $0.isEmpty ? nil : $0 } ?? listenHost
        if advertisedHost?.isEmpty ?? true, ["0.0.0.0", "::", "[::]", ""].contains(listenHost) {
            host = ProcessInfo.processInfo.hostName
        }
        if host.contains(":") && !host.hasPrefix("[") { host = "[\(host)]" }  // an IPv6 literal
        return "http://\(host):\(port)"
    }
}

/// The telemetry HTTP server of a consumer process (ingest adds the routes to its own server).
public enum TelemetryServer {
    /// - Parameter onListening: called once the server listens, with its advertised base URL
    ///   (the process announces it on `livesync.instances`).
    /// - Parameter addingRoutes: adds a process's own routes beside the health endpoints (for
    ///   example alerting's `/alerts`), so what a view asks of it is served where it already listens.
    public static func make(endpoints: HealthEndpoints, configuration: TelemetryConfiguration, logger: Logger,
                            onListening: @escaping @Sendable (String) -> Void = { _ in },
                            addingRoutes: (Router<BasicRequestContext>) throws -> Void = { _ in }) rethrows -> some ApplicationProtocol {
        let router = Router()
        endpoints.addRoutes(to: router)
        try addingRoutes(router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "livesync-\(endpoints.process)"),
            onServerRunning: { channel in
                let url = TelemetryConfiguration.advertisedURL(
                    listenHost: configuration.host, port: channel.localAddress?.port ?? configuration.port, advertisedHost: configuration.advertisedHost)
                logger.info("telemetry listening", metadata: ["url": "\(url)"])
                onListening(url)
            },
            logger: logger)
    }
}
