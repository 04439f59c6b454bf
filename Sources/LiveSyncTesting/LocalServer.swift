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
