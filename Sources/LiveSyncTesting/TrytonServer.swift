import ErpAdapters
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real Tryton 8.2 (SQLite) on 127.0.0.1, run by `scripts/tryton.sh` in a directory: for the
/// Tryton adapter's tests and `livesync dev|demo --erp tryton`.
///
/// `start` installs Tryton when missing (a venv under `$LIVESYNC_TRYTON_HOME`, default
/// `~/.cache/livesync-tryton`), sets up the database (company in CNY, warehouses `main`/`east`,
/// customer `LIVESYNC`, products `SKU-0000`…`SKU-0199` with their stock, or `stock` given), and
/// starts `trytond`; the script itself waits until Tryton answers JSON-RPC, so nothing here polls.
public final class TrytonServer: Sendable {
    /// One SKU's initial stock in one warehouse, as `scripts/tryton.sh setup` takes it.
    public struct Stock: Sendable, Codable, Equatable {
        public var sku: String
        public var warehouse: String
        public var quantity: Int64
        public var priceFen: Int64?
        public init(sku: String, warehouse: String, quantity: Int64, priceFen: Int64? = nil) {
            self.sku = sku
            self.warehouse = warehouse
            self.quantity = quantity
            self.priceFen = priceFen
        }
        enum CodingKeys: String, CodingKey { case sku, warehouse, quantity, priceFen = "price_fen" }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let directory: String
    public let port: Int
    /// `http://127.0.0.1:<port>` (the JSON-RPC endpoint is `<url>/<database>/rpc/`).
    public let url: String
    public let database: String
    public let login: String
    public let password: String

    /// The adapter configuration for this server (company: the admin's, warehouses by code).
    public var configuration: TrytonConfiguration {
        TrytonConfiguration(baseURL: url, database: database, login: login, password: password)
    }

    /// `scripts/tryton.sh` of this source tree, or `$LIVESYNC_TRYTON_SCRIPT`.
    public static var script: String {
        if let path = ProcessInfo.processInfo.environment["LIVESYNC_TRYTON_SCRIPT"], !path.isEmpty { return path }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/tryton.sh").path
    }

    private init(directory: String, port: Int, url: String, database: String, login: String, password: String) {
        self.directory = directory
        self.port = port
        self.url = url
        self.database = database
        self.login = login
        self.password = password
    }

    /// Installs Tryton into the shared venv when it is not there yet (idempotent, about 30 s).
    public static func install() async throws {
        _ = try await run(["install"])
    }

    /// Sets up (unless already done in `directory`) and starts Tryton on `port` (default: a free one).
    /// `customers`: party codes made besides `LIVESYNC` (e.g. one per shop).
    public static func start(in directory: String, port: Int? = nil, stock: [Stock]? = nil, customers: [String] = []) async throws -> TrytonServer {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var setup = ["setup", directory]
        if let stock {
            let file = "\(directory)/stock.json"
            try JSONEncoder().encode(stock).write(to: URL(fileURLWithPath: file))
            setup.append(file)
        }
        _ = try await run(setup, environment: customers.isEmpty ? [:] : ["LIVESYNC_TRYTON_CUSTOMERS": customers.joined(separator: " ")])
        let port = try port ?? freePort()
        return try parse(await run(["start", directory, String(port)]), directory: directory, port: port)
    }

    /// Stops `trytond` (SIGTERM, then SIGKILL after 10 s); the database stays in `directory`.
    public func stop() async throws {
        _ = try await Self.run(["stop", directory])
    }

    /// Stops and starts it again on the same port and database (sessions in the database
    /// survive; an adapter's in-flight calls fail as transport errors meanwhile).
    public func restart() async throws {
        try await stop()
        _ = try await Self.run(["start", directory, String(port)])
    }

    static func parse(_ output: String, directory: String, port: Int) throws -> TrytonServer {
        guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("url=") }) else {
            throw Failure(description: "scripts/tryton.sh start printed no url= line: \(output)")
        }
        var fields: [String: String] = [:]
        for part in line.split(separator: " ") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
        }
        return TrytonServer(directory: directory, port: port, url: fields["url"] ?? "http://127.0.0.1:\(port)",
                            database: fields["database"] ?? "livesync", login: fields["login"] ?? "admin",
                            password: fields["password"] ?? "")
    }

    /// Runs the script to its end and returns its standard output; throws with its output when it fails.
    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> String {
        let process = Process()
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script] + arguments
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("tryton-\(UUID().uuidString).out")
        FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outputFile) }
        let output = try FileHandle(forWritingTo: outputFile)
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { p in continuation.resume(returning: p.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
            }
        }
        try? output.close()
        let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw Failure(description: "scripts/tryton.sh \(arguments.joined(separator: " ")) failed (\(status)): \(text.suffix(2000))")
        }
        return text
    }

    /// A free TCP port on 127.0.0.1 (bound and released).
    static func freePort() throws -> Int { try FreePort.next() }
}
