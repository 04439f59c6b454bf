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

    /// Whether `url` is an http(s) URL with a host (what `book.url` and `--book-url` must be).
    public static func isHTTPURL(_ url: String) -> Bool {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased() else { return false }
        return (scheme == "http" || scheme == "https") && !(parsed.host ?? "").isEmpty
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

    /// The booked shipment and its order, or nil when the read model's copy of the book has no
    /// such shipment (a wrong id, or one dispatch booked moments ago that the copy has not
    /// replicated yet). A 404 of a server that is not a read model throws instead.
    public func shipmentOwner(_ shipmentID: String) async throws -> ErpBookView.ShipmentOwner? {
        var components = URLComponents(string: baseURL + "/book/shipment")
        components?.queryItems = [URLQueryItem(name: "id", value: shipmentID)]
        guard let url = components?.string else { throw BookClientError.badURL(baseURL) }
        let (status, body) = try await exchange(HTTPClientRequest(url: url), limit: 1 << 20)
        if status == .notFound, String(buffer: body).hasPrefix(BookServer.unknownShipment) { return nil }
        guard status == .ok else { throw BookClientError.status(Int(status.code), "/book/shipment", String(buffer: body)) }
        do { return try JSONDecoder().decode(ErpBookView.ShipmentOwner.self, from: Data(buffer: body)) } catch {
            throw BookClientError.malformed("/book/shipment answer (\(error))")
        }
    }

    func get(_ url: String, limit: Int = 1 << 26) async throws -> Data {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        return try await send(request, what: url, limit: limit)
    }

    func send(_ request: HTTPClientRequest, what: String, limit: Int) async throws -> Data {
        let (status, body) = try await exchange(request, limit: limit)
        guard status == .ok else { throw BookClientError.status(Int(status.code), what, String(buffer: body)) }
        return Data(buffer: body)
    }

    /// One request and its whole answer; a server that cannot be reached (or stops answering
    /// within `timeout`) throws `unreachable`.
    func exchange(_ request: HTTPClientRequest, limit: Int) async throws -> (HTTPResponseStatus, ByteBuffer) {
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: timeout)
            return (response.status, try await response.body.collect(upTo: limit))
        } catch let error as NIOTooManyBytesError {
            throw BookClientError.malformed("answer larger than \(limit) bytes (\(error))")
        } catch {
            throw BookClientError.unreachable(baseURL, "\(error)")
        }
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
