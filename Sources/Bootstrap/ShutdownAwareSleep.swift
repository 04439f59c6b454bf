import Worker
import Dispatch
import Synchronization
import ServiceLifecycle

/// Waits `duration`, or less when a graceful shutdown (SIGTERM) or cancellation comes first.
///
/// A periodic service must not sleep through SIGTERM: `ServiceGroup` stops its services one by
/// one, so a service asleep for its interval (an hourly inspection, a poller's cycle) would hold
/// up every other service's shutdown behind it.
/// - Returns: false when the wait was cut short: the caller should stop.
public func pauseUnlessShuttingDown(for duration: Duration) async -> Bool {
    guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return false }
    do {
        try await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) }
    } catch {
        return false
    }
    return !Task.isShuttingDownGracefully && !Task.isCancelled
}

/// A stop request for blocking work running off the cooperative pool (topic reads, scans),
/// which Swift task cancellation cannot reach: the work checks `isRequested` between steps.
public final class StopRequest: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public var isRequested: Bool { flag.load(ordering: .relaxed) }
    public func request() { flag.store(true, ordering: .relaxed) }
}

/// Stopped on request, between steps, by the owner (shutdown); the partial result is discarded.
public struct StoppedOnRequest: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "stopped on request (shutting down)" }
}

/// Runs blocking `work` on a global queue and awaits it; cancelling the awaiting task (or a
/// graceful shutdown) requests a stop, which `work` honours between its steps.
public func runBlocking<T: Sendable>(_ work: @escaping @Sendable (StopRequest) throws -> T) async throws -> T {
    let stop = StopRequest()
    return try await withTaskCancellationHandler {
        try await withGracefulShutdownHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
                DispatchQueue.global(qos: .utility).async { c.resume(with: Result { try work(stop) }) }
            }
        } onGracefulShutdown: { stop.request() }
    } onCancel: { stop.request() }
}
