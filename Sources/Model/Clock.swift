import Foundation

public enum Clock {
    /// Unix time in microseconds, the unit of every timestamp on the wire.
    public static func nowMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1_000
    }
}

/// Unix time in microseconds, injectable: schedules kept as timestamps (an outbound job's next
/// attempt after its backoff) are tested by advancing a clock instead of sleeping.
public struct WallClock: Sendable {
    public let nowMicros: @Sendable () -> Int64

    public init(nowMicros: @escaping @Sendable () -> Int64) { self.nowMicros = nowMicros }

    /// The system's real-time clock.
    public static let system = WallClock { Clock.nowMicros() }
}

extension Duration {
    /// Whole milliseconds (rounded down): for settings expressed in milliseconds.
    public var wholeMilliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds * 1_000 + attoseconds / 1_000_000_000_000_000)
    }

    /// Whole microseconds (rounded down): for timestamps and intervals on the wire's clock.
    public var wholeMicroseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}
