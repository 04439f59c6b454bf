import ErpBookStore
import Bootstrap
import Foundation
import Hummingbird
import Telemetry
import Logging
import Model
import NIOCore
import ServiceLifecycle

/// Settings of the read model's HTTP API.
public struct BookServerConfiguration: Sendable {
    /// Listen address. Default 127.0.0.1.
    public var host: String
    /// Listen port. Default 0 (any free port, logged and written to `addressFile`); production sets one.
    public var port: Int
    /// When set, the server's base URL is written there once it listens (dev tooling reads it).
    public var addressFile: String?

    public init(host: String = "127.0.0.1", port: Int = 0, addressFile: String? = nil) {
        self.host = host
        self.port = port
        self.addressFile = addressFile
    }
}

/// The read model's HTTP API, over its own copy of the cluster's state (`ChangelogReplica`):
///
/// - `GET /book/snapshot?…` — a `BookSnapshot` with the parts asked for (`BookQuery`), JSON;
/// - `GET /book/decisions` — every decided order, one per line: `order_id<TAB>status<TAB>ingested_at_us<TAB>decided_at_us`;
/// - `POST /book/known` — `{"ids": […], "includingPending": bool}` → `{"known": […]}`;
/// - `GET /book/shipment?id=…` — the booked shipment's order (`ErpBookView.ShipmentOwner`), or
///   404 with a body starting `no shipment` (what `BookClient.shipmentOwner` reads as "not in the book").
///
/// Bad input is answered 400 naming the parameter; nothing here writes. The SQLite reads block,
/// so each runs on a global queue (`runBlocking`), never on the cooperative pool.
public enum BookServer {
    /// The start of the 404 body for an unknown shipment (the client tells it from a 404 of a
    /// server that is not a read model by it).
    static let unknownShipment = "no shipment"

    public static func addRoutes(to router: Router<BasicRequestContext>, bookPath: String) {
        router.get("/book/snapshot") { request, _ in
            var parameters: [String: String] = [:]
            for (k, v) in request.uri.queryParameters { parameters[String(k)] = String(v) }
            let query: BookQuery
            do { query = try BookQuery(parameters: parameters) } catch { return text(.badRequest, "\(error)\n") }
            let snapshot = try await runBlocking { _ in try BookSnapshot.read(path: bookPath, query: query, now: Clock.nowMicros()) }
            return json(snapshot)
        }
        router.get("/book/decisions") { _, _ in
            let buffer = try await runBlocking { _ in
                let decisions = try ErpBookView(path: bookPath, busyTimeout: .seconds(10)).read { try $0.decisions() }
                var buffer = ByteBuffer()
                buffer.reserveCapacity(decisions.count * 64)
                for d in decisions { buffer.writeString("\(d.orderID)\t\(d.status)\t\(d.ingestedAtUs)\t\(d.decidedAtUs)\n") }
                return buffer
            }
            return Response(status: .ok, headers: [.contentType: "text/tab-separated-values"], body: .init(byteBuffer: buffer))
        }
        router.post("/book/known") { request, _ in
            let body = try await request.body.collect(upTo: 16 << 20)
            let ask: KnownRequest
            do { ask = try JSONDecoder().decode(KnownRequest.self, from: Data(buffer: body)) } catch {
                return text(.badRequest, "body must be {\"ids\": [order ids], \"includingPending\": bool}: \(error)\n")
            }
            let known = try await runBlocking { _ in
                try ErpBookView(path: bookPath, busyTimeout: .seconds(10)).read { try $0.known(ask.ids, includingPending: ask.includingPending ?? false) }
            }
            return json(KnownResponse(known: known.sorted()))
        }
        router.get("/book/shipment") { request, _ in
            guard let id = request.uri.queryParameters.get("id"), !id.isEmpty else { return text(.badRequest, "query parameter id (the shipment id) is required\n") }
            let owner = try await runBlocking { _ in try ErpBookView(path: bookPath, busyTimeout: .seconds(10)).read { try $0.shipmentOwner(id) } }
            guard let owner else { return text(.notFound, "\(unknownShipment) \(id) in the book\n") }
            return json(owner)
        }
    }

    struct KnownRequest: Codable {
        var ids: [String]
        var includingPending: Bool?
    }

    struct KnownResponse: Codable {
        var known: [String]
    }

    static func json(_ value: some Encodable) -> Response { HTTPAnswer.json(value) }

    static func text(_ status: HTTPResponse.Status, _ message: String) -> Response { HTTPAnswer.text(status, message) }

    /// The read model's API server, as a service beside its consumer.
    public static func make(bookPath: String, configuration: BookServerConfiguration, logger: Logger) -> some Service {
        let router = Router()
        addRoutes(to: router, bookPath: bookPath)
        return Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "livesync-book"),
            onServerRunning: { channel in
                let url = "http://\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"
                logger.info("read model listening", metadata: ["url": "\(url)"])
                if let file = configuration.addressFile {
                    do { try url.write(toFile: file, atomically: true, encoding: .utf8) } catch {
                        logger.warning("could not write the address file", metadata: ["file": "\(file)", "error": "\(error)"])
                    }
                }
            },
            logger: logger)
    }
}
