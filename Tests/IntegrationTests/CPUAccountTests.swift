import DevHarness
import Foundation
import Testing

/// How `cpu_us_per_order` reads the OS and adds up.
@Suite struct CPUAccountTests {
    @Test func aStatLinesUserAndSystemTicksAreReadPastACommandWithSpacesAndParentheses() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("stat-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
        try "4242 (livesync (demo) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 100 0 0".write(toFile: dir + "/stat", atomically: true, encoding: .utf8)
        #expect(CPUAccount.ticks(dir + "/stat") == 1234 + 567)
        #expect(CPUAccount.ticks(dir + "/missing") == nil)
        #expect(CPUAccount.ticks("/proc/self/stat") != nil)
    }

    @Test func aProcessesPeakResidentSetIsReadFromVmHWMInKiB() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("status-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "Name:\tlivesync-stock\nVmPeak:\t  900000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\n".write(toFile: dir + "/status", atomically: true, encoding: .utf8)
        #expect(CPUAccount.peakResidentKiB(dir + "/status") == 81234)
        #expect(CPUAccount.peakResidentKiB(dir + "/missing") == nil)
        #expect((CPUAccount.peakResidentKiB("/proc/self/status") ?? 0) > 0)
        let supervisor = try Supervisor(logDirectory: dir + "/logs", logger: .init(label: "test"))
        let account = CPUAccount(supervisor: supervisor)
        _ = account.stop()
        #expect((account.peakResidentMiB()["broker_and_load_generator"] ?? 0) > 0)
    }

    @Test func instancesCountUnderTheirKind() {
        #expect(CPUAccount.kind(ofInstance: "stock-2") == "stock")
        #expect(CPUAccount.kind(ofInstance: "dispatch") == "dispatch")
        #expect(CPUAccount.kind(ofInstance: "book") == "book")
        #expect(CPUAccount.kind(ofInstance: "load-generator") == "load-generator")
    }

    @Test func thePipelineIsEveryKindButTheLoadGenerator() {
        let perOrder = CPUAccount.perOrder(["ingest": 1.5, "stock": 0.5, "broker": 1.0, "load_generator": 2.0], orders: 10_000)
        #expect(perOrder == ["ingest": 150, "stock": 50, "broker": 100, "load_generator": 200, "pipeline": 300])
        #expect(CPUAccount.perOrder(["ingest": 1], orders: 0).isEmpty)
    }

    /// This process's own threads count: a busy loop here shows up as load generator time.
    @Test func thisProcessesThreadsCountAsLoadGeneratorOrBroker() throws {
        let supervisor = try Supervisor(logDirectory: FileManager.default.temporaryDirectory.appendingPathComponent("sup-\(UUID().uuidString)").path,
                                        logger: .init(label: "test"))
        let account = CPUAccount(supervisor: supervisor)
        // Spin until this thread itself has had 0.2 s of CPU (not of wall time: on a busy machine
        // 0.3 s of wall time can hold less than 0.1 s of CPU).
        func threadCPUSeconds() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        let start = threadCPUSeconds(), giveUp = Date().addingTimeInterval(30)
        var x: UInt64 = 0
        while threadCPUSeconds() - start < 0.2 && Date() < giveUp { x &+= 1 }
        let seconds = account.stop()
        #expect(x > 0)
        #expect((seconds["load_generator"] ?? 0) >= 0.1, "\(seconds)")
    }
}
