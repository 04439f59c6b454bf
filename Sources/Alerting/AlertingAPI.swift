import AsyncHTTPClient
import Bootstrap
import Foundation
import Hummingbird
import Telemetry
import Inspection
import Model
import NIOCore
import ReadModel
import Worker

/// What `livesync-alerting` serves of its own store over HTTP, on its telemetry server beside
/// `/metrics`, `/healthz` and `/readyz` (so views on other hosts never open `alerting.sqlite`):
///
/// - `GET /alerts?limit=N` — the latest alerts, newest first (`AlertStoreView.ListedAlert`, JSON;
///   `limit` 1...1,000, default 15);
/// - `GET /alerts/unsynced?before=µs&limit=N` — the undecided orders the last `order_unsynced`
///   sweep found ingested before `before` (default now), oldest first (`UnsyncedOrders.Late`,
///   JSON; `limit` 1...10,000, default 1,000), including those dispatch had not read from
///   `orders.placed` yet, which only a topic read shows;
/// - `GET /positions` — the consumer positions alerting stored (`ReportedPosition`, JSON), for
///   `livesync inspect`'s `no_offset_gap`.
///
/// A parameter that is not a number in range is answered 400 naming it. Reads run off the
/// cooperative pool (`runBlocking`).
public enum AlertingAPI {
    public static func addRoutes(to router: Router<BasicRequestContext>, storePath: String) {
        router.get("/alerts") { request, _ in
            let limit: Int
            do { limit = try parameter(request, "limit", default: 15, in: 1...1_000) } catch { return text(.badRequest, "\(error)\n") }
            let alerts = try await runBlocking { _ in
                try AlertStoreView.ifPresent(path: storePath)?.read { try $0.recentAlerts(limit: limit) } ?? []
            }
            return json(alerts)
        }
        router.get("/alerts/unsynced") { request, _ in
            let before: Int64, limit: Int
            do {
                before = Int64(try parameter(request, "before", default: Int(Model.Clock.nowMicros()), in: 0...Int.max))
                limit = try parameter(request, "limit", default: 1_000, in: 1...10_000)
            } catch { return text(.badRequest, "\(error)\n") }
            let orders = try await runBlocking { _ in
                try AlertStoreView.ifPresent(path: storePath)?.read { try $0.unsyncedOrders(ingestedBefore: before, limit: limit) } ?? []
            }
            return json(orders.map { UnsyncedOrders.Late(orderID: $0.orderID, ingestedAtUs: $0.ingestedAtUs) })
        }
        router.get("/positions") { _, _ in
            let positions = try await runBlocking { _ in
                try StateStore.openForReading(storePath, busyTimeout: 10).read { try StateStore.storedPositions($0) }
            }
            return json(positions.map(ReportedPosition.init))
        }
    }

    struct BadParameter: Error, CustomStringConvertible {
        let name: String
        let value: String
        let range: ClosedRange<Int>
        var description: String { "query parameter \(name) must be an integer in \(range.lowerBound)...\(range.upperBound), not '\(value)'" }
    }

    static func parameter(_ request: Request, _ name: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let raw = request.uri.queryParameters.get(name) else { return value }
        guard let v = Int(raw), range.contains(v) else { throw BadParameter(name: name, value: raw, range: range) }
        return v
    }

    static func json(_ value: some Encodable) -> Response { HTTPAnswer.json(value) }

    static func text(_ status: HTTPResponse.Status, _ message: String) -> Response { HTTPAnswer.text(status, message) }
}

/// Asks `livesync-alerting` over HTTP (`AlertingAPI`): the dashboard's alert list and the
/// unsynced orders alerting's last sweep found. `baseURL` is its telemetry server (`alerting.url`).
public struct AlertingClient: Sendable {
    public let baseURL: String
    /// How long a call waits for alerting (connecting included). Default 2 s: the dashboard
    /// refreshes every few seconds and shows the rest without it.
    public let timeout: TimeAmount

    public init(baseURL: String, timeout: TimeAmount = .seconds(2)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.timeout = timeout
    }

    /// The latest alerts, newest first.
    public func recentAlerts(limit: Int) async throws -> [AlertStoreView.ListedAlert] {
        try await get("/alerts?limit=\(limit)")
    }

    /// The undecided orders alerting's last sweep found ingested before `cutoff` (Unix µs), oldest first.
    public func unsyncedOrders(ingestedBefore cutoff: Int64, limit: Int) async throws -> [UnsyncedOrders.Late] {
        try await get("/alerts/unsynced?before=\(max(0, cutoff))&limit=\(limit)")
    }

    func get<T: Decodable>(_ path: String) async throws -> T {
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await HTTPClient.shared.execute(HTTPClientRequest(url: baseURL + path), timeout: timeout)
            body = try await response.body.collect(upTo: 1 << 24)
        } catch {
            throw AlertingClientError.unreachable(baseURL, "\(error)")
        }
        guard response.status == .ok else { throw AlertingClientError.status(Int(response.status.code), path, String(buffer: body)) }
        do { return try JSONDecoder().decode(T.self, from: Data(buffer: body)) } catch {
            throw AlertingClientError.malformed(path, "\(error)")
        }
    }
}

public enum AlertingClientError: Error, CustomStringConvertible {
    case unreachable(String, String)
    case status(Int, String, String)
    case malformed(String, String)

    public var description: String {
        switch self {
        case .unreachable(let url, let error): "alerting at \(url) did not answer (\(error)): is livesync-alerting running, and is alerting.url its telemetry URL?"
        case .status(let code, let path, let body): "alerting answered \(code) to \(path): \(body.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .malformed(let path, let error): "alerting sent a malformed answer to \(path): \(error)"
        }
    }
}

extension LiveSyncConfig {
    /// `alerting.url` (`LIVESYNC_ALERTING_URL`): alerting's telemetry server, where the
    /// dashboard asks for alerts and late orders. No default: without it those parts are empty.
    public var optionalAlertingClient: AlertingClient? {
        get throws {
            guard let url = optionalString("alerting.url"), !url.isEmpty else { return nil }
            guard BookClient.isHTTPURL(url) else {
                throw ConfigurationError("alerting.url (\(LiveSyncConfig.environmentName("alerting.url"))) '\(url)' is not an http(s) URL with a host, e.g. http://alerting:9100")
            }
            return AlertingClient(baseURL: url)
        }
    }
}
