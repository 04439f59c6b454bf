import Foundation
import Hummingbird
import NIOCore

/// The answers of LiveSync's small JSON APIs (the read model's, alerting's): a value as JSON
/// with sorted keys, or a plain-text message with its status.
public enum HTTPAnswer {
    /// `value` as JSON (200); a value that cannot be encoded is a 500 saying why.
    public static func json(_ value: some Encodable) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
        } catch {
            return text(.internalServerError, "could not encode the answer: \(error)\n")
        }
    }

    public static func text(_ status: HTTPResponse.Status, _ message: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: message)))
    }
}
