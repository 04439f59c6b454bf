import Metrics
import Synchronization
import Telemetry

/// Ingest's counters per platform: orders received, published (Kafka acknowledged) and refused
/// (by reason). Counters are created once per label set and cached; an increment is an atomic add.
public final class IngestMetrics: Sendable {
    private let counters = Mutex<[String: Counter]>([:])

    public init() {}

    func counter(_ name: String, _ dimensions: [(String, String)]) -> Counter {
        let key = name + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        return counters.withLock { c in
            if let counter = c[key] { return counter }
            let counter = Counter(label: name, dimensions: dimensions)
            c[key] = counter
            return counter
        }
    }

    public func received(platform: String) { counter(MetricNames.ordersReceived, [("platform", platform)]).increment() }
    public func published(platform: String) { counter(MetricNames.ordersPublished, [("platform", platform)]).increment() }
    public func refused(platform: String, reason: String) {
        counter(MetricNames.ordersRefused, [("platform", platform), ("reason", reason)]).increment()
    }
}

extension IngestError {
    /// The `reason` label of a refusal: the same code as the JSON body's `error`.
    public var reason: String {
        switch self {
        case .malformed: "malformed"
        case .invalidField: "invalid_field"
        case .unknownShop: "unknown_shop"
        case .badSignature: "bad_signature"
        case .tooLarge: "too_large"
        case .unavailable: "unavailable"
        case .configuration: "configuration"
        }
    }
}
