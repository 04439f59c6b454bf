import Model
import Synchronization

/// A wall clock a test moves forward: the real time plus every `advance` so far, so jobs stamped
/// with the real time stay in order with it while backoffs and schedules pass without sleeping.
public final class ManualWallClock: Sendable {
    private let offset = Atomic<Int64>(0)

    public init() {}

    public var nowMicros: Int64 { Clock.nowMicros() + offset.load(ordering: .relaxed) }

    /// Moves the clock forward by `duration`.
    public func advance(by duration: Duration) {
        offset.add(duration.wholeMicroseconds, ordering: .relaxed)
    }

    /// The clock to inject where a `WallClock` is taken.
    public var wallClock: WallClock { WallClock { [self] in self.nowMicros } }
}
