import AsyncHTTPClient
import Foundation
import NIOCore


/// One row of `livesync status`: a process (announced on `livesync.instances`, or an endpoint
/// given by the operator), and what its `/readyz` answered.
public struct ProcessStatusRow: Sendable, Codable {
    public var process: String
    public var url: String
    /// `ready`, `not_ready: <failed checks>`, or `down` (no answer).
    public var health: String
    public var partitions: Int?
    public var lag: Int64?
    public var lastBatchAtUs: Int64?
    public var report: ReadinessReport?
    /// False only when the process announced this very host and its pid no longer runs here (a
    /// SIGKILLed process announces no stop): it is down for good, not just slow to answer. A
    /// process on another host, or one given by URL, is never judged by pid.
    public var pidAlive = true

    public var isReady: Bool { report?.ready == true }
}

/// A process to ask: its name (used while it does not answer), its telemetry base URL, and
/// where it said it runs.
public struct ProcessEndpoint: Sendable, Equatable {
    public var name: String
    public var url: String
    /// The host name and pid it announced, if any: a process announced on this host whose pid is
    /// gone is reported as such (`ProcessStatusRow.pidAlive`).
    public var host: String?
    public var pid: Int32?

    public init(name: String, url: String, host: String? = nil, pid: Int32? = nil) {
        self.name = name
        self.url = url
        self.host = host
        self.pid = pid
    }
}

/// Queries processes' `/readyz` and renders the operator's table.
public enum ProcessStatus {
    /// Every process of `endpoints`, asked concurrently (each within `timeout`), sorted by name.
    public static func collect(_ endpoints: [ProcessEndpoint], timeout: TimeAmount = .seconds(3)) async -> [ProcessStatusRow] {
        await withTaskGroup(of: ProcessStatusRow.self) { group in
            for endpoint in endpoints {
                group.addTask { await query(endpoint, timeout: timeout) }
            }
            var rows: [ProcessStatusRow] = []
            for await row in group { rows.append(row) }
            return rows.sorted { $0.process < $1.process }
        }
    }

    /// Every instance at `endpoints` (telemetry base URLs, `http://host:port`), as the operator
    /// lists them. A row is named by the process's own report, or by its URL when it is down.
    public static func collect(endpoints: [String], timeout: TimeAmount = .seconds(3)) async -> [ProcessStatusRow] {
        let urls = Set(endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 })
        return await collect(urls.map { ProcessEndpoint(name: $0, url: $0) }, timeout: timeout)
    }

    static func query(_ endpoint: ProcessEndpoint, timeout: TimeAmount) async -> ProcessStatusRow {
        var row = ProcessStatusRow(process: endpoint.name, url: endpoint.url, health: "down")
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: endpoint.url + "/readyz"), timeout: timeout)
            let body = try await response.body.collect(upTo: 1 << 20)
            let report = try JSONDecoder().decode(ReadinessReport.self, from: Data(buffer: body))
            row.process = report.process
            row.report = report
            row.health = report.ready ? "ready" : "not_ready: " + report.failed.joined(separator: ",")
            row.partitions = report.consumption?.partitions
            row.lag = report.consumption?.lag
            row.lastBatchAtUs = report.consumption?.lastBatchAtUs
        } catch {
            row.pidAlive = !isGoneFromThisHost(host: endpoint.host, pid: endpoint.pid)
            row.health = row.pidAlive ? "down (no answer: \(error))" : "down (pid \(endpoint.pid ?? 0) gone)"
        }
        return row
    }

    /// Whether a process that announced `host` and `pid` certainly no longer runs: only when
    /// `host` is this machine's host name and no process has that pid here (ESRCH). Another
    /// host's pid says nothing here.
    static func isGoneFromThisHost(host: String?, pid: Int32?) -> Bool {
        guard let host, let pid, pid > 0, host == ProcessInfo.processInfo.hostName else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    public static func render(_ rows: [ProcessStatusRow], now: Int64) -> String {
        guard !rows.isEmpty else { return "no processes found" }
        let header = ["PROCESS", "HEALTH", "PARTITIONS", "LAG", "LAST BATCH", "URL"]
        let cells: [[String]] = rows.map { r in
            let last: String = {
                guard let at = r.lastBatchAtUs else { return "-" }
                if at == 0 { return "never" }
                return String(format: "%.1f s ago", Double(now - at) / 1e6)
            }()
            return [r.process, r.health, r.partitions.map(String.init) ?? "-", r.lag.map(String.init) ?? "-", last, r.url]
        }
        let widths = header.indices.map { i in ([header[i]] + cells.map { $0[i] }).map(\.count).max()! }
        func line(_ c: [String]) -> String {
            c.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return ([line(header)] + cells.map(line)).joined(separator: "\n")
    }
}
