import Foundation
import Logging
import Synchronization

/// One child process the supervisor runs.
public struct ChildSpec: Sendable {
    public var name: String
    public var executable: String
    public var arguments: [String]
    public var environment: [String: String]

    public init(name: String, executable: String, arguments: [String] = [], environment: [String: String]) {
        self.name = name
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
    }
}

/// Runs LiveSync's executables as child processes, restarts any that die, and lets an
/// operator (or the chaos and kill tests) restart or SIGKILL one by name.
public final class Supervisor: Sendable {
    struct Child {
        var spec: ChildSpec
        var process: Process?
        var restarts = 0
        var expectedExit = false
    }

    private let children = Mutex<[String: Child]>([:])
    private let stopping = Mutex(false)
    private let logDirectory: String
    private let logger: Logger

    public init(logDirectory: String, logger: Logger) throws {
        self.logDirectory = logDirectory
        self.logger = logger
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
    }

    public var names: [String] { children.withLock { $0.keys.sorted() } }

    /// Status of each child: pid (0 when not running) and restart count.
    public var status: [(name: String, pid: Int32, restarts: Int)] {
        children.withLock { c in c.values.sorted { $0.spec.name < $1.spec.name }.map { ($0.spec.name, $0.process?.isRunning == true ? $0.process!.processIdentifier : 0, $0.restarts) } }
    }

    public func start(_ spec: ChildSpec) throws {
        children.withLock { $0[spec.name] = Child(spec: spec) }
        try launch(spec.name)
    }

    private func launch(_ name: String) throws {
        guard let spec = children.withLock({ $0[name]?.spec }) else { throw SupervisorError.unknown(name) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: spec.executable)
        process.arguments = spec.arguments
        var environment = spec.environment
        environment["LIVESYNC_SUPERVISOR_PID"] = String(getpid())
        process.environment = environment
        let logPath = "\(logDirectory)/\(name).log"
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try log.seekToEnd()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        process.terminationHandler = { [weak self] p in
            try? log.close()
            self?.exited(name, process: p)
        }
        try process.run()
        children.withLock { $0[name]?.process = process; $0[name]?.expectedExit = false }
        logger.info("started \(name)", metadata: ["pid": "\(process.processIdentifier)", "log": "\(logPath)"])
    }

    private func exited(_ name: String, process: Process) {
        let (expected, isCurrent) = children.withLock { c -> (Bool, Bool) in
            guard let child = c[name] else { return (true, false) }
            return (child.expectedExit, child.process === process)
        }
        guard isCurrent else { return }
        let stopping = self.stopping.withLock { $0 }
        if stopping || expected { return }
        logger.warning("\(name) exited (status \(process.terminationStatus)); restarting in 1 s")
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { [weak self] in
            guard let self, !self.stopping.withLock({ $0 }) else { return }
            self.children.withLock { $0[name]?.restarts += 1 }
            do { try self.launch(name) } catch { self.logger.error("could not restart \(name): \(error)") }
        }
    }

    /// Sends `signal` to a child. SIGKILL is a crash as far as the child knows; the supervisor
    /// restarts it after a second, like a production orchestrator would.
    public func signal(_ name: String, _ signal: Int32) throws {
        guard let process = children.withLock({ $0[name]?.process }) else { throw SupervisorError.unknown(name) }
        logger.warning("sending signal \(signal) to \(name)", metadata: ["pid": "\(process.processIdentifier)"])
        kill(process.processIdentifier, signal)
    }

    /// Gracefully stops a child (SIGTERM, SIGKILL after `timeout`) and starts it again.
    public func restart(_ name: String, timeout: TimeInterval = 20) throws {
        guard let process = children.withLock({ c -> Process? in c[name]?.expectedExit = true; return c[name]?.process }) else {
            throw SupervisorError.unknown(name)
        }
        terminate(process, timeout: timeout)
        children.withLock { $0[name]?.restarts += 1 }
        try launch(name)
    }

    /// Stops a child for good (SIGTERM, SIGKILL after `timeout`; or `SIGKILL` at once when told
    /// to): it is not restarted.
    public func remove(_ name: String, signal: Int32 = SIGTERM, timeout: TimeInterval = 30) {
        guard let process = children.withLock({ c -> Process? in c[name]?.expectedExit = true; return c[name]?.process }) else { return }
        if signal == SIGKILL, process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        terminate(process, timeout: timeout)
        children.withLock { _ = $0.removeValue(forKey: name) }
        logger.info("stopped \(name)")
    }

    /// Stops every child: SIGTERM, then SIGKILL after `timeout`.
    public func stopAll(timeout: TimeInterval = 20) {
        stopping.withLock { $0 = true }
        let processes = children.withLock { $0.values.compactMap(\.process) }
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGTERM) }
        for p in processes { terminate(p, timeout: timeout) }
    }

    private func terminate(_ process: Process, timeout: TimeInterval) {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            logger.error("pid \(process.processIdentifier) ignored SIGTERM for \(timeout) s; killing it")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

public enum SupervisorError: Error, CustomStringConvertible {
    case unknown(String)
    public var description: String {
        switch self { case .unknown(let n): "no process named \(n)" }
    }
}
