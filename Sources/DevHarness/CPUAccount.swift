import Foundation
import Synchronization

/// The CPU time a dev cluster's processes spend over a window, read from the OS
/// (`/proc/<pid>/stat`, user + system), per kind of process: what `livesync demo --json` and
/// `chaos --json` report as `cpu_us_per_order`.
///
/// Each supervised child counts under its kind (`stock-2` under `stock`). The process running
/// the cluster holds two more: the embedded broker (librdkafka's mock cluster thread,
/// `rdk:mock`) and the load generator (every other thread of that process: the replay's HTTP
/// clients and producer, the harness). A process or thread that starts inside the window counts
/// from zero; one that dies counts up to its last sample (taken every `interval`), so a SIGKILLed
/// process's last fraction of a second is missed.
public final class CPUAccount: Sendable {
    /// Seconds per kind: `ingest`, `stock`, `dispatch`, `book`, `alerting`, `channels`, `broker`, `load_generator`.
    public typealias Seconds = [String: Double]

    struct Counter {
        var kind: String
        var first: UInt64
        var last: UInt64
    }

    private let supervisor: Supervisor
    private let interval: Duration
    private let counters = Mutex<[String: Counter]>([:])
    /// Largest resident set (`VmHWM`, KiB) seen per kind; an instance counts on its own, so a
    /// kind's figure is its largest instance, not their sum.
    private let peakResident = Mutex<[String: UInt64]>([:])
    private let sampler = Mutex<Task<Void, Never>?>(nil)
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// Starts counting now.
    public init(supervisor: Supervisor, interval: Duration = .milliseconds(250)) {
        self.supervisor = supervisor
        self.interval = interval
        sample(baseline: true)
        let task = Task.detached { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                self?.sample(baseline: false)
            }
        }
        sampler.withLock { $0 = task }
    }

    /// Stops counting and returns the seconds each kind spent since `init`.
    public func stop() -> Seconds {
        sampler.withLock { $0?.cancel(); $0 = nil }
        sample(baseline: false)
        var seconds: Seconds = [:]
        for c in counters.withLock({ Array($0.values) }) {
            seconds[c.kind, default: 0] += Double(c.last &- c.first) / Self.ticksPerSecond
        }
        return seconds
    }

    /// Reads every child and this process's threads; `baseline`: what runs now counts from here.
    func sample(baseline: Bool) {
        var seen: [(key: String, kind: String, ticks: UInt64)] = []
        var resident: [(kind: String, kib: UInt64)] = []
        for child in supervisor.status where child.pid > 0 {
            if let ticks = Self.ticks("/proc/\(child.pid)/stat") {
                seen.append(("pid \(child.pid)", Self.kind(ofInstance: child.name), ticks))
            }
            if let kib = Self.peakResidentKiB("/proc/\(child.pid)/status") { resident.append((Self.kind(ofInstance: child.name), kib)) }
        }
        // The broker and the load generator share this process: one figure for both.
        if let kib = Self.peakResidentKiB("/proc/self/status") { resident.append(("broker_and_load_generator", kib)) }
        peakResident.withLock { peaks in
            for r in resident { peaks[r.kind] = max(peaks[r.kind] ?? 0, r.kib) }
        }
        let tasks = "/proc/self/task"
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? [] {
            guard let ticks = Self.ticks("\(tasks)/\(tid)/stat") else { continue }
            let name = (try? String(contentsOfFile: "\(tasks)/\(tid)/comm", encoding: .utf8)) ?? ""
            seen.append(("tid \(tid)", name.hasPrefix("rdk:mock") ? "broker" : "load_generator", ticks))
        }
        counters.withLock { counters in
            for s in seen {
                if var c = counters[s.key], c.kind == s.kind {
                    c.last = max(c.last, s.ticks)
                    counters[s.key] = c
                } else {
                    // New in the window (or a reused id): all of its time is the window's.
                    counters[s.key] = Counter(kind: s.kind, first: baseline ? s.ticks : 0, last: s.ticks)
                }
            }
        }
    }

    /// The largest resident set each kind reached so far, in MiB (rounded up).
    public func peakResidentMiB() -> [String: Int] {
        peakResident.withLock { $0.mapValues { Int(($0 + 1023) / 1024) } }
    }

    /// `VmHWM` of a `/proc/…/status` file (the process's peak resident set), in KiB.
    public static func peakResidentKiB(_ path: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) }
    }

    /// `stock-2` → `stock`.
    public static func kind(ofInstance name: String) -> String {
        guard let dash = name.lastIndex(of: "-"), Int(name[name.index(after: dash)...]) != nil else { return name }
        return String(name[..<dash])
    }

    /// utime + stime of a `/proc/…/stat` file, in clock ticks.
    public static func ticks(_ path: String) -> UInt64? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3 of stat(5), utime 14 and stime 15.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }

    /// Microseconds per order of each kind, and `pipeline`: every kind but the load generator.
    public static func perOrder(_ seconds: Seconds, orders: Int) -> [String: Double] {
        guard orders > 0 else { return [:] }
        var result: [String: Double] = [:]
        for (kind, s) in seconds { result[kind] = (s * 1e6 / Double(orders)).rounded() }
        result["pipeline"] = (seconds.filter { $0.key != "load_generator" }.values.reduce(0, +) * 1e6 / Double(orders)).rounded()
        return result
    }
}
