import Model
import Bootstrap
import Foundation
import Inspection
import Logging
import ServiceLifecycle
import Worker

/// Runs the consistency inspection (`livesync inspect`) on a schedule inside `livesync-alerting`
/// and raises an `inspection_mismatch` alert while it fails; the alert resolves when a later
/// inspection passes.
public struct InspectionSchedule: Service {
    let inspection: InspectionConfiguration
    let interval: Duration
    let store: StateStore
    let logger: Logger

    public init(inspection: InspectionConfiguration, interval: Duration, store: StateStore, logger: Logger) {
        self.inspection = inspection
        self.interval = interval
        self.store = store
        self.logger = logger
    }

    public func run() async throws {
        while await pauseUnlessShuttingDown(for: interval) {
            do { try await runOnce() } catch is StoppedOnRequest { return } catch {
                logger.warning("scheduled inspection could not run", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Inspects once and raises or resolves the alert; returns the report.
    @discardableResult
    public func runOnce(now: Int64 = Clock.nowMicros()) async throws -> InspectionReport {
        // Asks the read model over HTTP; the topic reads run off the cooperative pool and stop on SIGTERM.
        let report = try await Inspector.run(inspection, now: now)
        try await store.database.write { db in
            if report.passed {
                try AlertStore.resolve(db, kind: AlertKind.inspectionMismatch, except: [], now: now)
            } else {
                let failed = report.checks.filter { !$0.passed }
                let detail = failed.map { "\($0.name): \($0.problemCount) problem(s), e.g. \($0.problems.first ?? "")" }.joined(separator: "; ")
                try AlertStore.raise(db, key: "inspection", kind: AlertKind.inspectionMismatch,
                                     message: "consistency inspection failed: \(detail)", now: now)
            }
        }
        if !report.passed { logger.warning("inspection failed", metadata: ["checks": "\(report.failedChecks)"]) }
        return report
    }
}
