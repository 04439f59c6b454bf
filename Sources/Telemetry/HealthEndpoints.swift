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

/// Where each running process tells `livesync status` its HTTP address:
/// `<dataDir>/processes/<name>.json`, written once listening, removed on a clean stop.
public struct ProcessRecord: Sendable, Codable, Equatable {
    public var name: String
    public var url: String
    public var pid: Int32
    public var startedAtUs: Int64

    public init(name: String, url: String, pid: Int32 = getpid(), startedAtUs: Int64) {
        self.name = name
        self.url = url
        self.pid = pid
        self.startedAtUs = startedAtUs
    }

    public static func directory(dataDir: String) -> String { "\(dataDir)/processes" }

    /// Writes the record atomically (a reader never sees half a file).
    public func write(dataDir: String) throws {
        let dir = Self.directory(dataDir: dataDir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let data = try JSONEncoder().encode(self)
        try data.write(to: URL(fileURLWithPath: "\(dir)/\(Self.fileName(name))"), options: .atomic)
    }

    public static func remove(name: String, dataDir: String) {
        try? FileManager.default.removeItem(atPath: "\(directory(dataDir: dataDir))/\(fileName(name))")
    }

    /// Every record in the directory, by name.
    public static func all(dataDir: String) -> [ProcessRecord] {
        let dir = directory(dataDir: dataDir)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return files.filter { $0.hasSuffix(".json") }.sorted().compactMap { file in
            FileManager.default.contents(atPath: "\(dir)/\(file)").flatMap { try? JSONDecoder().decode(ProcessRecord.self, from: $0) }
        }
    }

    static func fileName(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" }) + ".json"
    }
}

/// Settings of a process's telemetry server.
public struct TelemetryConfiguration: Sendable {
    /// Listen address. Default 127.0.0.1, port 0 (any free port, written to the process record);
    /// set a fixed port for Prometheus to scrape.
    public var host: String
    public var port: Int
    /// Directory of the process records (`<dataDir>/processes`); nil: no record.
    public var dataDir: String?

    public init(host: String = "127.0.0.1", port: Int = 0, dataDir: String? = nil) {
        self.host = host
        self.port = port
        self.dataDir = dataDir
    }
}

/// The telemetry HTTP server of a consumer process (ingest adds the routes to its own server).
public enum TelemetryServer {
    /// - Parameter addingRoutes: adds a process's own routes beside the health endpoints (for
    ///   example alerting's `/alerts`), so what a view asks of it is served where it already listens.
    public static func make(endpoints: HealthEndpoints, configuration: TelemetryConfiguration, logger: Logger,
                            addingRoutes: (Router<BasicRequestContext>) throws -> Void = { _ in }) rethrows -> some ApplicationProtocol {
        let router = Router()
        endpoints.addRoutes(to: router)
        try addingRoutes(router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "livesync-\(endpoints.process)"),
            onServerRunning: { channel in
                let url = "http://\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"
                logger.info("telemetry listening", metadata: ["url": "\(url)"])
                registerListening(process: endpoints.process, url: url, dataDir: configuration.dataDir, logger: logger)
            },
            logger: logger)
    }

    /// Writes the process record once the server listens (`livesync status` reads it).
    public static func registerListening(process: String, url: String, dataDir: String?, logger: Logger) {
        guard let dataDir else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let record = ProcessRecord(name: process, url: url, startedAtUs: Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000)
        do { try record.write(dataDir: dataDir) } catch {
            logger.warning("could not write the process record; `livesync status` will not list this process", metadata: ["error": "\(error)"])
        }
    }
}
