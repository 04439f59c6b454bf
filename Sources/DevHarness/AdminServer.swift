import Bootstrap
import Dispatch
import Dashboard
import Alerting
import Foundation
import ReadModel
import Hummingbird
import Kafka
import Logging
import NIOCore

/// The dev cluster's control channel on 127.0.0.1: list, restart or SIGKILL a process.
///
/// Routes: `GET /processes`, `POST /processes/{name}/restart`, `POST /processes/{name}/kill`,
/// `POST /scale/{stock|dispatch}/{count}`, `POST /broker/down?seconds=N` (fault injection).
public enum AdminServer {
    public static func make(cluster: DevCluster, port: Int = 0, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("/processes") { _, _ in
            let rows = cluster.supervisor.status.map { #"{"name":"\#($0.name)","pid":\#($0.pid),"restarts":\#($0.restarts)}"# }
            return text(200, "[" + rows.joined(separator: ",") + "]")
        }
        router.post("/processes/:name/restart") { _, context in
            let name = context.parameters.get("name") ?? ""
            do {
                // A graceful restart waits for the process to finish its batch: off the event loop.
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                    DispatchQueue.global().async {
                        do { try cluster.supervisor.restart(name); c.resume() } catch { c.resume(throwing: error) }
                    }
                }
                return text(200, #"{"restarted":"\#(name)"}"#)
            } catch { return text(404, #"{"error":"\#(error)"}"#) }
        }
        router.post("/processes/:name/kill") { _, context in
            let name = context.parameters.get("name") ?? ""
            do {
                try cluster.supervisor.signal(name, SIGKILL)
                return text(200, #"{"killed":"\#(name)"}"#)
            } catch { return text(404, #"{"error":"\#(error)"}"#) }
        }
        router.post("/scale/:kind/:count") { _, context in
            guard let kind = DevCluster.Scalable(rawValue: context.parameters.get("kind") ?? ""),
                  let count = context.parameters.get("count").flatMap(Int.init) else {
                return text(400, #"{"error":"use /scale/stock/N or /scale/dispatch/N with N in 1...9"}"#)
            }
            do {
                // Stopping instances waits for their batches to commit: off the event loop.
                try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                    DispatchQueue.global().async {
                        do { try cluster.scale(kind, to: count); c.resume() } catch { c.resume(throwing: error) }
                    }
                }
                return text(200, #"{"scaled":"\#(kind.rawValue)","instances":\#(count)}"#)
            } catch { return text(400, #"{"error":"\#(error)"}"#) }
        }
        router.post("/broker/down") { request, _ in
            let seconds = request.uri.queryParameters.get("seconds").flatMap(Int.init) ?? 3
            guard (1...300).contains(seconds) else { return text(400, #"{"error":"seconds must be 1...300"}"#) }
            do {
                try cluster.broker.setBroker(1, up: false)
                try await Task.sleep(for: .seconds(seconds))
                try cluster.broker.setBroker(1, up: true)
                return text(200, #"{"brokerDownSeconds":\#(seconds)}"#)
            } catch {
                try? cluster.broker.setBroker(1, up: true)
                return text(500, #"{"error":"\#(error)"}"#)
            }
        }
        // The live dashboard of this cluster at /dashboard.
        DashboardApp.addRoutes(to: router, configuration: DashboardConfiguration(
            book: BookClient(baseURL: cluster.bookURL), alerting: cluster.alertingURL.map { AlertingClient(baseURL: $0) },
            instances: InstanceDirectory(kafka: KafkaConfiguration(bootstrapServers: cluster.broker.bootstrapServers))))
        return Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "livesync-dev"),
            onServerRunning: { channel in
                let url = "http://127.0.0.1:\(channel.localAddress?.port ?? port)"
                try? cluster.writeInfo(adminURL: url)
                say("admin:      \(url)  (GET /processes, POST /processes/NAME/restart|kill, /scale/KIND/N, /broker/down?seconds=N)")
                say("dashboard:  \(url)/dashboard")
            },
            logger: logger)
    }

    static func text(_ status: Int, _ body: String) -> Response {
        Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}

/// Writes a line to stdout at once (unbuffered): `livesync dev` runs for hours and whoever
/// tails its output needs the addresses now.
public func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
