import AsyncHTTPClient
import Foundation
import NIOCore


/// One row of `livesync status`: a process found in `<dataDir>/processes`, and what its
/// `/readyz` answered.
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

    static func query(_ record: ProcessRecord, timeout: TimeAmount) async -> ProcessStatusRow {
        var row = ProcessStatusRow(process: record.name, url: record.url, health: "down")
        do {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: record.url + "/readyz"), timeout: timeout)
            let body = try await response.body.collect(upTo: 1 << 20)
            let report = try JSONDecoder().decode(ReadinessReport.self, from: Data(buffer: body))
            row.report = report
            row.health = report.ready ? "ready" : "not_ready: " + report.failed.joined(separator: ",")
            row.partitions = report.consumption?.partitions
            row.lag = report.consumption?.lag
            row.lastBatchAtUs = report.consumption?.lastBatchAtUs
        } catch {
            row.pidAlive = kill(record.pid, 0) == 0
            row.health = row.pidAlive ? "down (no answer: \(error))" : "down (pid \(record.pid) gone)"
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
