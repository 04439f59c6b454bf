#if canImport(Glibc)
import Glibc
#endif
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// A Hummingbird server on 127.0.0.1 for tests and the dev harness's fakes.
public enum LocalServer {
    /// Starts `router` on 127.0.0.1 (`port` 0: an ephemeral port) and returns its base URL once
    /// the server is bound (it reports its port; nothing polls for it), and the task running it:
    /// cancel the task to stop the server. Throws if the server fails before it is bound.
    public static func serve<Context: RequestContext>(_ router: sending Router<Context>, label: String, serverName: String? = nil, port: Int = 0) async throws -> (url: String, task: Task<Void, Error>)
    where Context.Source == ApplicationRequestContextSource {
        let (bound, report) = AsyncStream<Result<String, any Error>>.makeStream()
        let task = Task<Void, Error> {
            var logger = Logger(label: label)
            logger.logLevel = .critical  // cancellation at shutdown is expected, not an error
            let app = Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: serverName),
                onServerRunning: { channel in
                    report.yield(.success("http://127.0.0.1:\(channel.localAddress?.port ?? port)"))
                }, logger: logger)
            defer { report.finish() }
            do { try await app.runService(gracefulShutdownSignals: []) } catch {
                report.yield(.failure(error))
                throw error
            }
        }
        for await result in bound { return (try result.get(), task) }
        task.cancel()  // the caller was cancelled before the server was bound
        throw CancellationError()
    }
}

/// A free TCP port on 127.0.0.1 (bound and released: another process may take it before the
/// caller binds it, which is acceptable for tests and `livesync dev`).
public enum FreePort {
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    public static func next() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Unavailable(description: "no socket for a free port: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw Unavailable(description: "could not bind a free port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
