import ErpBookStore
import Foundation
import HTTPTypes
import Hummingbird
import Ingest
import Kafka
import Logging
import Model
import NIOCore
import ReadModel
import Worker

/// Settings of the warehouse/ERP's "shipment handed to the carrier" route on ingest.
public struct ShipmentShippedConfiguration: Sendable {
    /// HMAC-SHA256 secret the warehouse/ERP signs each body with (`erp.secret`,
    /// `LIVESYNC_ERP_SECRET`). No default: without it the route is not served.
    public var secret: String
    /// The read model (`book.url`, required with `erp.secret`), asked whether the shipment is
    /// booked and for its order's platform, shop and platform order id.
    public var book: BookClient
    /// Largest accepted body (`erp.maxBodyBytes`, default 16 KiB: the body is three fields).
    public var maxBodyBytes: Int

    public init(secret: String, book: BookClient, maxBodyBytes: Int = 16 << 10) {
        self.secret = secret
        self.book = book
        self.maxBodyBytes = maxBodyBytes
    }
}

/// `POST /erp/shipments/{shipment_id}/shipped` with `{"carrier": "SF", "tracking_no": "SF123",
/// "shipped_at": "2026-11-24T10:00:00+08:00"}` (`shipped_at` optional: ISO 8601 or Unix seconds),
/// signed `X-LiveSync-Signature: sha256=<hex HMAC-SHA256 of the body under erp.secret>`.
///
/// A shipment id holds a `/` (`<order id>/<warehouse>`): send it raw or percent-encoded.
/// Answers 202 once Kafka acknowledged the `ShipmentShipped` on `fulfillment.shipped` (key order
/// id); 401 bad signature, 400 bad body, 404 shipment not in the read model's copy of the ERP
/// book (a wrong id, or an order booked moments ago that the copy has not replicated yet: the
/// body says to retry), 413 too large, 503 Kafka or the read model unavailable (retry: repeats
/// are harmless, consumers de-duplicate by shipment id).
public enum ShipmentShippedRoute {
    public static let pathPrefix = "/erp/shipments/"
    public static let pathSuffix = "/shipped"

    /// The body of the request.
    public struct Body: Decodable, Sendable {
        public var carrier: String
        public var tracking_no: String
        public var shipped_at: ShippedAt?
    }

    /// `shipped_at` as an ISO 8601 string or Unix seconds.
    public struct ShippedAt: Decodable, Sendable {
        public var micros: Int64
        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let seconds = try? c.decode(Int64.self) {
                micros = seconds * 1_000_000
                return
            }
            let text = try c.decode(String.self)
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime]
            let g = ISO8601DateFormatter()
            g.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            guard let date = f.date(from: text) ?? g.date(from: text) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "shipped_at '\(text)' is neither ISO 8601 (2026-11-24T10:00:00+08:00) nor Unix seconds")
            }
            micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        }
    }

    /// What the ERP book says about a shipment.
    public struct BookedShipment: Sendable, Equatable {
        public var orderID: String
        public var platform: Platform
        public var shopID: String
        public var platformOrderID: String
    }

    /// Why a request was refused.
    enum Refusal: Error {
        case ingest(IngestError)
        case unknownShipment(String)
        case bookUnavailable(String)

        var status: HTTPResponse.Status {
            switch self {
            case .ingest(let e): HTTPResponse.Status(code: e.status)
            case .unknownShipment: .notFound
            case .bookUnavailable: .serviceUnavailable
            }
        }

        var body: String {
            switch self {
            case .ingest(let e): return e.jsonBody
            case .unknownShipment(let id):
                return JSON.encode(["error": "unknown_shipment", "message": "shipment '\(id)' is not in the ERP book: check the id (<order id>/<warehouse>); if dispatch booked the order just now, retry in a few seconds (ingest asks the book's read model, which follows dispatch by a moment)"])
            case .bookUnavailable(let m):
                return JSON.encode(["error": "unavailable", "message": "the ERP book's read model cannot be asked; retry later (\(m))"])
            }
        }
    }

    /// Registers the route on ingest's router.
    public static func register(on router: Router<BasicRequestContext>, configuration: ShipmentShippedConfiguration, producer: KafkaProducer, logger: Logger) {
        router.post("/erp/shipments/**") { request, _ in
            var request = request
            do {
                let (shipmentID, body) = try await verified(&request, configuration: configuration)
                guard let booked = try await lookUp(shipmentID, in: configuration.book) else { throw Refusal.unknownShipment(shipmentID) }
                let now = Model.Clock.nowMicros()
                var event = ShipmentShipped()
                event.shipmentID = shipmentID
                event.orderID = booked.orderID
                event.platform = booked.platform
                event.shopID = booked.shopID
                event.platformOrderID = booked.platformOrderID
                event.carrier = body.carrier
                event.trackingNo = body.tracking_no
                event.shippedAtUs = body.shipped_at?.micros ?? now
                event.receivedAtUs = now
                do {
                    try await producer.send([ProducerMessage(topic: Topics.shipmentsShipped, key: booked.orderID, value: event.bytes)])
                } catch {
                    throw Refusal.ingest(.unavailable("\(error)"))
                }
                return response(.accepted, JSON.encode(["status": "accepted", "shipment_id": shipmentID, "order_id": booked.orderID]))
            } catch let refusal as Refusal {
                if refusal.status.code >= 500 { logger.error("shipment report failed", metadata: ["error": "\(refusal.body)"]) }
                return response(refusal.status, refusal.body)
            } catch {
                logger.error("shipment report failed", metadata: ["error": "\(error)"])
                return response(.internalServerError, #"{"error":"internal"}"#)
            }
        }
    }

    /// The shipment id from the path and the verified, validated body.
    static func verified(_ request: inout Request, configuration: ShipmentShippedConfiguration) async throws(Refusal) -> (String, Body) {
        let path = request.uri.path
        guard path.hasPrefix(pathPrefix), path.hasSuffix(pathSuffix), path.count > pathPrefix.count + pathSuffix.count else {
            throw .ingest(.invalidField(field: "path", reason: "use POST \(pathPrefix){shipment_id}\(pathSuffix)"))
        }
        let raw = String(path.dropFirst(pathPrefix.count).dropLast(pathSuffix.count))
        guard let shipmentID = raw.removingPercentEncoding, !shipmentID.isEmpty, shipmentID.count <= 256 else {
            throw .ingest(.invalidField(field: "shipment_id", reason: "not a valid percent-encoded id of at most 256 characters"))
        }
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: configuration.maxBodyBytes) } catch {
            throw .ingest(.tooLarge(limit: configuration.maxBodyBytes))
        }
        let bytes = Array(buffer.readableBytesView)
        guard GenericWebhook.verify(bytes, header: request.headers[HTTPField.Name(GenericWebhook.signatureHeader)!], secret: configuration.secret) else {
            throw .ingest(.badSignature)
        }
        let body: Body
        do { body = try JSONDecoder().decode(Body.self, from: Data(bytes)) } catch {
            throw .ingest(.malformed("expected {\"carrier\": string, \"tracking_no\": string, \"shipped_at\"?: ISO 8601 or Unix seconds}: \(error)"))
        }
        for (field, value) in [("carrier", body.carrier), ("tracking_no", body.tracking_no)] {
            guard !value.isEmpty, value.count <= 64, value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                throw .ingest(.invalidField(field: field, reason: "must be 1...64 ASCII letters, digits, '-' or '_'"))
            }
        }
        return (shipmentID, body)
    }

    /// The booked shipment from the read model; a read model that cannot be asked is a refusal
    /// the warehouse retries (503).
    static func lookUp(_ shipmentID: String, in book: BookClient) async throws(Refusal) -> BookedShipment? {
        let owner: ErpBookView.ShipmentOwner?
        do { owner = try await book.shipmentOwner(shipmentID) } catch { throw .bookUnavailable("\(error)") }
        return owner.map { o in
            BookedShipment(orderID: o.orderID, platform: Platform.allCases.first { $0.slug == o.platform } ?? .unspecified,
                           shopID: o.shopID, platformOrderID: o.platformOrderID)
        }
    }

    static func response(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

