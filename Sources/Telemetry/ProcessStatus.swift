import AsyncHTTPClient
import Foundation
import NIOCore


/// One row of `livesync status`: a process (registered in `<dataDir>/processes`, or an
/// endpoint from the configuration), and what its `/readyz` answered.
public struct ProcessStatusRow: Sendable, Codable {
    public var process: String
    public var url: String
    /// `ready`, `not_ready: <failed checks>`, or `down` (no answer).
    public var health: String
    public var partitions: Int?
    public var lag: Int64?
    public var lastBatchAtUs: Int64?
    public var report: ReadinessReport?
    /// Whether the recorded pid still runs on this host (a SIGKILLed process leaves its record behind).
    public var pidAlive = true

    public var isReady: Bool { report?.ready == true }
}

/// Queries every running process's `/readyz` and renders the operator's table.
public enum ProcessStatus {
    public static func collect(dataDir: String, timeout: TimeAmount = .seconds(3)) async -> [ProcessStatusRow] {
        let records = ProcessRecord.all(dataDir: dataDir)
        return await withTaskGroup(of: ProcessStatusRow.self) { group in
            for record in records {
                group.addTask { await query(record, timeout: timeout) }
            }
            var rows: [ProcessStatusRow] = []
            for await row in group { rows.append(row) }
            return rows.sorted { $0.process < $1.process }
        }
    }

    /// Every instance at `endpoints` (telemetry base URLs, `http://host:port`), as the
    /// configuration lists them: on hosts that share nothing but Kafka no folder lists the
    /// processes. A row is named by the process's own report, or by its URL when it is down.
    public static func collect(endpoints: [String], timeout: TimeAmount = .seconds(3)) async -> [ProcessStatusRow] {
        await withTaskGroup(of: ProcessStatusRow.self) { group in
            for url in Set(endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }) {
                group.addTask { await query(name: url, url: url, pid: nil, timeout: timeout) }
            }
            var rows: [ProcessStatusRow] = []
            for await row in group { rows.append(row) }
            return rows.sorted { $0.process < $1.process }
        }
    }

    static func query(_ record: ProcessRecord, timeout: TimeAmount) async -> ProcessStatusRow {
        await query(name: record.name, url: record.url, pid: record.pid, timeout: timeout)
    }

    /// `pid`: the recorded process on this host, to tell a killed process from a silent one.
    static func query(name: String, url: String, pid: Int32?, timeout: TimeAmount) async -> ProcessStatusRow {
        var row = ProcessStatusRow(process: name, url: url, health: "down")
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url + "/readyz"), timeout: timeout)
            let body = try await response.body.collect(upTo: 1 << 20)
            let report = try JSONDecoder().decode(ReadinessReport.self, from: Data(buffer: body))
            row.process = report.process
            row.report = report
            row.health = report.ready ? "ready" : "not_ready: " + report.failed.joined(separator: ",")
            row.partitions = report.consumption?.partitions
            row.lag = report.consumption?.lag
            row.lastBatchAtUs = report.consumption?.lastBatchAtUs
        } catch {
            row.pidAlive = pid.map { kill($0, 0) == 0 } ?? true
            row.health = row.pidAlive ? "down (no answer: \(error))" : "down (pid \(pid ?? 0) gone)"
        }
        return row
    }

    public static func render(_ rows: [ProcessStatusRow], now: Int64) -> String {
        guard !rows.isEmpty else { return "no processes registered" }
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
