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

    /// Received and published counters by platform: looked up on every request without building a key.
    private let perPlatform = Mutex<[String: (received: Counter, published: Counter)]>([:])

    private func platformCounters(_ platform: String) -> (received: Counter, published: Counter) {
        if let c = perPlatform.withLock({ $0[platform] }) { return c }
        let c = (counter(MetricNames.ordersReceived, [("platform", platform)]), counter(MetricNames.ordersPublished, [("platform", platform)]))
        perPlatform.withLock { $0[platform] = c }
        return c
    }

    public func received(platform: String) { platformCounters(platform).received.increment() }
    public func published(platform: String) { platformCounters(platform).published.increment() }
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
