import CRdkafka

/// An error reported by librdkafka or by LiveSync's use of it.
///
/// `code` is librdkafka's `rd_kafka_resp_err_t` value (negative values are client-side errors,
/// positive ones come from the broker), so operators can look it up in librdkafka's docs.
public struct KafkaError: Error, CustomStringConvertible, Sendable, Equatable {
    public let code: Int32
    public let message: String
    /// What LiveSync was doing when the error happened.
    public let context: String

    public init(code: Int32, message: String, context: String) {
        self.code = code
        self.message = message
        self.context = context
    }

    package init(_ err: rd_kafka_resp_err_t, context: String) {
        self.code = err.rawValue
        self.message = String(cString: rd_kafka_err2str(err))
        self.context = context
    }

    public var description: String {
        let name = String(cString: rd_kafka_err2name(rd_kafka_resp_err_t(rawValue: code)))
        return "Kafka error \(name) (\(code)) while \(context): \(message)"
    }

    package static func configuration(_ message: String) -> KafkaError {
        KafkaError(code: RD_KAFKA_RESP_ERR__INVALID_ARG.rawValue, message: message, context: "configuring the client")
    }
}
