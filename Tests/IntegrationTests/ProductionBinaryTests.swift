import Foundation
import Testing

/// The worker executables are what runs in production: none of them may contain the test and
/// development tooling (`LiveSyncTesting`: the embedded broker, the platform emulator, fake
/// platform APIs, development credentials), nor reach librdkafka's mock cluster.
@Suite struct ProductionBinaryTests {
    static let workers = ["livesync-ingest", "livesync-stock", "livesync-dispatch", "livesync-book", "livesync-alerting", "livesync-channels", "livesync-erp"]

    /// Symbols of `binary` (defined and undefined), as Swift mangles them: a symbol of module
    /// `LiveSyncTesting` carries `15LiveSyncTesting`.
    func symbols(_ binary: String) throws -> [Substring] {
        let nm = ["/usr/bin/nm", "/usr/local/bin/nm"].first { FileManager.default.isExecutableFile(atPath: $0) }
        try #require(nm != nil, "nm (binutils) is part of the Swift toolchain's requirements")
        let result = try runCommand(nm!, [binary], timeout: .seconds(120))
        #expect(result.status == 0, "nm \(binary): \(result.stderr)")
        return result.stdout.split(separator: "\n")
    }

    @Test func workerExecutablesContainNoTestToolingOrMockBroker() throws {
        for name in Self.workers {
            let symbols = try symbols(binDirectory + "/" + name)
            #expect(symbols.count > 1_000, "\(name): nm listed \(symbols.count) symbols, expected a Swift executable's")
            let tooling = symbols.filter {
                $0.contains("15LiveSyncTesting") || $0.contains("PlatformEmulator") || $0.contains("FakePlatformAPI")
                    || $0.contains("EmbeddedBroker") || $0.contains("PlatformCredentials") || $0.contains("rd_kafka_mock_")
            }
            #expect(tooling.isEmpty, "\(name) contains test tooling: \(tooling.prefix(5))")
        }
    }

    /// The check above can fail: the operator CLI (`livesync`, which runs `livesync dev`) does link the tooling.
    @Test func theDevCommandLinksTheTooling() throws {
        let symbols = try symbols(binDirectory + "/livesync")
        #expect(symbols.contains { $0.contains("15LiveSyncTesting14EmbeddedBroker") })
        #expect(symbols.contains { $0.contains("rd_kafka_mock_cluster_new") })
    }
}
