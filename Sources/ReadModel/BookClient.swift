import AsyncHTTPClient
import ErpBookStore
import Foundation
import NIOCore
import NIOHTTP1

/// Asks a read model (`livesync-book`) over HTTP: how views (the dashboard, `livesync inspect`,
/// alerting, ingest's shipment route, demo and chaos) read the ERP book and stock levels, on
/// hosts that share nothing but Kafka.
public struct BookClient: Sendable {
    /// The read model's base URL (`book.url`), e.g. `http://book:8090`.
    public let baseURL: String
    public let timeout: TimeAmount

    public init(baseURL: String, timeout: TimeAmount = .seconds(10)) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.timeout = timeout
    }

    /// The parts of the snapshot `query` asks for.
    public func snapshot(_ query: BookQuery) async throws -> BookSnapshot {
        var components = URLComponents(string: baseURL + "/book/snapshot")
        let items = query.queryItems
        components?.queryItems = items.isEmpty ? nil : items
        guard let url = components?.string else { throw BookClientError.badURL(baseURL) }
        return try JSONDecoder().decode(BookSnapshot.self, from: try await get(url))
    }

    /// Every decided order with its decision.
    public func decisions() async throws -> [ErpBookView.Decision] {
        let data = try await get(baseURL + "/book/decisions", limit: 1 << 30)
        var result: [ErpBookView.Decision] = []
        for line in data.split(separator: UInt8(ascii: "\n")) {
            let f = line.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false)
            guard f.count == 4, let ingested = Int64(String(decoding: f[2], as: UTF8.self)), let decided = Int64(String(decoding: f[3], as: UTF8.self)) else {
                throw BookClientError.malformed("/book/decisions line '\(String(decoding: line, as: UTF8.self))'")
            }
            result.append(.init(orderID: String(decoding: f[0], as: UTF8.self), status: String(decoding: f[1], as: UTF8.self), ingestedAtUs: ingested, decidedAtUs: decided))
        }
        return result
    }

    /// Which of `ids` the book has decided, or (`includingPending`) dispatch holds waiting for stock.
    public func known(_ ids: [String], includingPending: Bool = false) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        var request = HTTPClientRequest(url: baseURL + "/book/known")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(BookServer.KnownRequest(ids: ids, includingPending: includingPending))))
        let data = try await send(request, what: "/book/known", limit: 1 << 26)
        return Set(try JSONDecoder().decode(BookServer.KnownResponse.self, from: data).known)
    }

    /// The booked shipment and its order, or nil when the book has no such shipment.
    public func shipmentOwner(_ shipmentID: String) async throws -> ErpBookView.ShipmentOwner? {
        var components = URLComponents(string: baseURL + "/book/shipment")
        components?.queryItems = [URLQueryItem(name: "id", value: shipmentID)]
        guard let url = components?.string else { throw BookClientError.badURL(baseURL) }
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        let response = try await HTTPClient.shared.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 1 << 20)
        if response.status == .notFound { return nil }
        guard response.status == .ok else { throw BookClientError.status(Int(response.status.code), "/book/shipment", String(buffer: body)) }
        return try JSONDecoder().decode(ErpBookView.ShipmentOwner.self, from: Data(buffer: body))
    }

    func get(_ url: String, limit: Int = 1 << 26) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        return try await send(request, what: url, limit: limit)
    }

    func send(_ request: HTTPClientRequest, what: String, limit: Int) async throws -> Data {
        let response: HTTPClientResponse
        do { response = try await HTTPClient.shared.execute(request, timeout: timeout) } catch {
            throw BookClientError.unreachable(baseURL, "\(error)")
        }
        let body = try await response.body.collect(upTo: limit)
        guard response.status == .ok else { throw BookClientError.status(Int(response.status.code), what, String(buffer: body)) }
        return Data(buffer: body)
    }
}

public enum BookClientError: Error, CustomStringConvertible {
    case badURL(String)
    case unreachable(String, String)
    case status(Int, String, String)
    case malformed(String)

    public var description: String {
        switch self {
        case .badURL(let url): "book.url '\(url)' is not a valid URL"
        case .unreachable(let url, let error): "the read model at \(url) did not answer (\(error)): is livesync-book running, and is book.url right?"
        case .status(let code, let what, let body): "the read model answered \(code) to \(what): \(body.trimmingCharacters(in: .whitespacesAndNewlines))"
        case .malformed(let what): "the read model sent a malformed \(what)"
        }
    }
}
