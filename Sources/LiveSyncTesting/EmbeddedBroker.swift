import Worker
import Kafka
import Ingest
import Model
import Connectors
import CRdkafka
import Dispatch
import Foundation

/// librdkafka's mock cluster: a real Kafka-protocol broker on 127.0.0.1, in memory.
///
/// It lives as long as this object (and its process). Any Kafka client, in this process or
/// another, reaches it through `bootstrapServers`. It has no CreateTopics handler, and
/// auto-creates unknown topics with 4 partitions: create every topic here, with its real
/// partition count, before any client starts. It keeps at most 5 MiB per partition.
public final class EmbeddedBroker: @unchecked Sendable {
    private let handle: OpaquePointer
    private let cluster: OpaquePointer
    /// Comma-separated `127.0.0.1:port` addresses of the mock brokers.
    public let bootstrapServers: String

    public init(brokers: Int32 = 1) throws {
        let rk = try RdKafka.handle(RD_KAFKA_PRODUCER, settings: ["log_level": "3"])
        guard let mc = rd_kafka_mock_cluster_new(rk, brokers) else {
            rd_kafka_destroy(rk)
            throw KafkaError.configuration("the mock cluster could not start")
        }
        handle = rk
        cluster = mc
        bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(mc))
        // The 2.0.2 mock never sets TCP_NODELAY on the connections it accepts: a response written
        // in two segments then waits for the client's delayed ACK (40 ms on Linux) at every hop.
        // Sweep this process's TCP sockets and disable Nagle on them (cheap, and only in the broker process).
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "livesync.broker.nodelay"))
        timer.schedule(deadline: .now(), repeating: .milliseconds(50))
        timer.setEventHandler { Self.disableNagleOnTCPSockets() }
        timer.resume()
        nodelayTimer = timer
    }

    private var nodelayTimer: (any DispatchSourceTimer)?

    static func disableNagleOnTCPSockets() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for entry in entries {
            guard let fd = Int32(entry) else { continue }
            var type: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0, type == Int32(SOCK_STREAM.rawValue) else { continue }
            var storage = sockaddr_storage()
            var slen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let isInet = withUnsafeMutablePointer(to: &storage) { ptr in
                ptr.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &slen) == 0 }
            } && (Int32(storage.ss_family) == AF_INET || Int32(storage.ss_family) == AF_INET6)
            guard isInet else { continue }
            var on: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    deinit {
        nodelayTimer?.cancel()
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(handle)
    }

    /// Creates a topic with its real partition count (idempotent for an existing topic).
    public func createTopic(_ spec: TopicSpecification) throws {
        let err = rd_kafka_mock_topic_create(cluster, spec.name, spec.partitions, spec.replicationFactor)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS {
            throw KafkaError(err, context: "creating topic \(spec.name) on the embedded broker")
        }
    }

    /// Fault injection: take broker `id` (1-based) down, or bring it back on the same port.
    public func setBroker(_ id: Int32, up: Bool) throws {
        let err = up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR { throw KafkaError(err, context: "setting broker \(id) \(up ? "up" : "down")") }
    }

    /// Fault injection: the next requests of API `apiKey` fail with `errors` (librdkafka codes), in order.
    public func pushRequestErrors(apiKey: Int16, errors: [Int32]) {
        var errs = errors.map { rd_kafka_resp_err_t(rawValue: $0) }
        errs.withUnsafeMutableBufferPointer { buf in
            rd_kafka_mock_push_request_errors_array(cluster, apiKey, buf.count, buf.baseAddress)
        }
    }
}
