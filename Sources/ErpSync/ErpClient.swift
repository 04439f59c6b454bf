import AsyncHTTPClient
import Bootstrap
import Foundation
import Model
import NIOCore
import NIOHTTP1

/// The typed client of `livesync-erp`'s HTTP API, over every instance of every ERP target
/// (found on `livesync.instances` by their group, `livesync-erp-<target>`): what `livesync erp`,
/// the demo and the dashboard use. Hosts share nothing but Kafka, so this is how they see a
/// target's queue and pending orders.
public struct ErpClient: Sendable {
    /// Telemetry base URLs of the instances.
    public var urls: [String]
    public var timeout: Duration

    public init(urls: [String], timeout: Duration = .seconds(10)) {
        self.urls = urls
        self.timeout = timeout
    }

    /// The ERP instances `directory` lists (optionally of one target).
    public static func discover(_ directory: InstanceDirectory, target: String? = nil) async throws -> ErpClient {
        let all = try await directory.instances()
        let prefix = target.map { "livesync-erp-\($0)" }
        return ErpClient(urls: all.filter { a in
            a.group.hasPrefix("livesync-erp-") && (prefix == nil || a.group == prefix!) && !a.url.isEmpty
        }.map(\.url))
    }

    public struct Failure: Error, CustomStringConvertible {
        public var url: String
        public var message: String
        public var description: String { "\(url): \(message)" }
    }

    func call(_ method: HTTPMethod, _ url: String) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.method = method
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(Int64(timeout.components.seconds)))
        } catch {
            throw Failure(url: url, message: "no answer: \(error)")
        }
        let body = Data(buffer: try await response.body.collect(upTo: 32 << 20))
        guard response.status.code == 200 else {
            throw Failure(url: url, message: "HTTP \(response.status.code): \(String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return body
    }

    /// Each instance's status.
    public func status() async throws -> [ErpStatus] {
        var out: [ErpStatus] = []
        for url in urls { out.append(try JSONDecoder().decode(ErpStatus.self, from: try await call(.GET, "\(url)/erp/status"))) }
        return out
    }

    /// Every instance's pending orders, oldest first.
    public func pending() async throws -> [ErpSyncStore.PendingRow] {
        var out: [ErpSyncStore.PendingRow] = []
        for url in urls { out += try JSONDecoder().decode([ErpSyncStore.PendingRow].self, from: try await call(.GET, "\(url)/erp/pending")) }
        return out.sorted { $0.sinceUs < $1.sinceUs }
    }

    /// Re-drives pending orders (all, or those of one order id / reference) on every instance.
    public func retry(order: String?) async throws -> Int {
        var n = 0
        let query = order.map { "?order=\($0.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed.subtracting(CharacterSet(charactersIn: "&=+#"))) ?? $0)" } ?? ""
        for url in urls {
            let answer = try JSONDecoder().decode([String: Int].self, from: try await call(.POST, "\(url)/erp/retry\(query)"))
            n += answer["redriven"] ?? 0
        }
        return n
    }

    /// Asks one instance to read the ERP's stock now and publish it; returns the levels published.
    public func pullStock() async throws -> Int {
        guard let url = urls.first else { throw Failure(url: "-", message: "no livesync-erp instance is announced") }
        return try JSONDecoder().decode([String: Int].self, from: try await call(.POST, "\(url)/erp/pull-stock"))["published"] ?? 0
    }

    /// `livesync erp status`'s table.
    public static func render(_ rows: [ErpStatus]) -> String {
        var lines = ["target     kind       partitions  queued  pending  written  rate/s  drain ETA  last error"]
        for r in rows.sorted(by: { ($0.target, $0.partitions.first ?? 0) < ($1.target, $1.partitions.first ?? 0) }) {
            let eta = r.drainEtaSeconds.map { $0 < 0 ? "stalled" : String(format: "%.0f s", $0) } ?? "-"
            lines.append([r.target.padding(toLength: 10, withPad: " ", startingAt: 0), r.kind.padding(toLength: 10, withPad: " ", startingAt: 0),
                          String(r.partitions.count).padding(toLength: 11, withPad: " ", startingAt: 0),
                          String(r.queued).padding(toLength: 7, withPad: " ", startingAt: 0), String(r.pending).padding(toLength: 8, withPad: " ", startingAt: 0),
                          String(r.statistics.written).padding(toLength: 8, withPad: " ", startingAt: 0),
                          String(format: "%.1f", r.statistics.writtenPerSecond).padding(toLength: 7, withPad: " ", startingAt: 0),
                          eta.padding(toLength: 10, withPad: " ", startingAt: 0), r.statistics.lastError].joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }

    /// `livesync erp pending`'s table (待处理队列).
    public static func render(pending rows: [ErpSyncStore.PendingRow]) -> String {
        guard !rows.isEmpty else { return "待处理队列为空 — no pending orders" }
        var lines = ["order / reference                          work    ERP code              since                 reason"]
        let f = ISO8601DateFormatter()
        for r in rows {
            lines.append([r.reference.padding(toLength: 42, withPad: " ", startingAt: 0), r.work.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0),
                          r.code.padding(toLength: 21, withPad: " ", startingAt: 0),
                          f.string(from: Date(timeIntervalSince1970: Double(r.sinceUs) / 1e6)).padding(toLength: 21, withPad: " ", startingAt: 0),
                          r.message].joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }
}
