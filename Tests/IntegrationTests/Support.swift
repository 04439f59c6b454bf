import Foundation
import GRDB
import Model
import Synchronization
import Testing

/// The directory holding the built executables (the test bundle sits next to them).
let binDirectory: String = {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var dir = (exe as NSString).deletingLastPathComponent
    // On some layouts the runner lives inside the .xctest bundle.
    while !FileManager.default.isExecutableFile(atPath: dir + "/livesync") && dir.count > 1 {
        dir = (dir as NSString).deletingLastPathComponent
    }
    return dir
}()

func temporaryDirectory(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("livesync-\(name)-\(UUID().uuidString.prefix(8))").path
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// A command that had not finished within its timeout (it was terminated, then killed).
struct CommandTimedOut: Error, CustomStringConvertible {
    var command: String
    var timeout: Duration
    var stderr: String
    var description: String { "\(command) did not finish within \(timeout); it was stopped. Its last output: \(stderr.suffix(2000))" }
}

/// Runs a command to completion, capturing its output (stderr goes to a file to avoid pipe
/// stalls). Past `timeout` the command gets SIGTERM, then SIGKILL 5 s later, and this throws
/// `CommandTimedOut`: a hung executable fails its test instead of hanging the suite.
func runCommand(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(600)) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let out = Pipe()
    let errPath = temporaryDirectory("stderr") + ".log"
    FileManager.default.createFile(atPath: errPath, contents: nil)
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let timedOut = Mutex(false)
    let timer = DispatchSource.makeTimerSource(queue: .global())
    timer.schedule(deadline: .now() + .milliseconds(Int(timeout.components.seconds * 1_000)))
    timer.setEventHandler { [pid = process.processIdentifier] in
        timedOut.withLock { $0 = true }
        kill(pid, SIGTERM)
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) { kill(pid, SIGKILL) }
    }
    timer.resume()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    timer.cancel()
    try? err.close()
    let errText = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    if timedOut.withLock({ $0 }) {
        throw CommandTimedOut(command: ([executable] + arguments).joined(separator: " "), timeout: timeout, stderr: errText)
    }
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: data, as: UTF8.self), stderr: errText)
}

struct DemoJSON: Decodable {
    var accepted: Int
    var synced: Int
    var rejected: Int
    var cancelled: Int
    var oversold: Int64
    var lost: Int
    var orders_per_sec: Double
    var p50_ms: Double
    var p99_ms: Double
    var stock_mismatched_skus: Int
    var kills: Int
    var refused: Int
    var failed: Int
    var cpu_us_per_order: [String: Double]
    var peak_rss_mib: [String: Int]
    var erp_written: Int?
    var erp_missing: Int?
    var erp_pending: Int?
    var erp_duplicates: Int?
    var erp_not_cancelled: Int?
    var erp_stock_mismatched_skus: Int?
    var erp_drain_sec: Double?
    var erp_kills: Int?
    var erp_server_restarts: Int?
}

func runDemo(_ arguments: [String], dataDir: String) throws -> DemoJSON {
    let result = try runCommand(binDirectory + "/livesync", ["demo", "--json", "--data-dir", dataDir] + arguments)
    guard let line = result.stdout.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
        Issue.record("demo printed no JSON (status \(result.status)): \(result.stderr.suffix(3000))")
        throw CancellationError()
    }
    return try JSONDecoder().decode(DemoJSON.self, from: Data(line.utf8))
}

func openDatabase(_ path: String) throws -> DatabaseQueue {
    var config = Configuration()
    config.busyMode = .timeout(10)
    return try DatabaseQueue(path: path, configuration: config)
}

/// A one-line order as ingest publishes it (line `<id>:1` of `quantity` units of `sku` in `main`).
func placedOrder(_ id: String, ingested: Int64, sku: String = "S", quantity: Int64 = 1,
                 platform: Livesync_V1_Platform? = nil, shopID: String = "") -> Order {
    var o = Order()
    o.orderID = id
    o.ingestedAtUs = ingested
    if let platform {
        o.platform = platform
        o.shopID = shopID
        o.platformOrderID = String(id.split(separator: ":").last ?? "")
    }
    var line = OrderLine()
    line.orderID = id
    line.lineNo = 1
    line.eventID = "\(id):1"
    line.sku = sku
    line.warehouse = "main"
    line.quantity = quantity
    line.lineCount = 1
    o.lines = [line]
    return o
}

/// Stock's decision on the only line of `placedOrder(id, …)`.
func reserved(_ id: String, _ status: ReservationStatus = .reserved, sku: String = "S", quantity: Int64 = 1) -> Reservation {
    var r = Reservation()
    r.orderID = id
    r.eventID = "\(id):1"
    r.lineNo = 1
    r.sku = sku
    r.warehouse = "main"
    r.quantity = quantity
    r.lineCount = 1
    r.status = status
    return r
}
