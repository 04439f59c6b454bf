import AsyncHTTPClient
import Foundation
import Ingest
import Kafka
import Logging
import Model
import NIOCore
import Synchronization
import Worker

/// Where the replay producer sends a session.
public enum ReplayTarget: Sendable {
    /// Through ingest's HTTP webhooks, signed with each shop's secret (the real parsing path).
    case http(ingestURL: String, shops: [String: String])
    /// Straight into Kafka, normalised exactly as ingest would.
    case kafka
}

/// What the replay producer saw.
public struct ReplayResult: Sendable {
    /// Canonical ids of the orders ingest acknowledged (2xx).
    public var accepted: [String] = []
    public var refundsAccepted = 0
    /// Refused with a 4xx (bad input): not retried.
    public var refused = 0
    /// Still failing (5xx or network) after every retry.
    public var failed = 0
    public var stockRecords = 0
    public var startedAt = Date()
    public var finishedAt = Date()
}

/// Sends a session at its recorded pace (or as fast as possible) with bounded concurrency.
public struct ReplaySender: Sendable {
    public var target: ReplayTarget
    public var producer: KafkaProducer
    /// Requests in flight at once (HTTP) — a live session's many buyers.
    public var concurrency = 256
    public var logger: Logger
    /// Called after each accepted order with the running count (for chaos hooks).
    public var onProgress: (@Sendable (Int) async -> Void)?
    /// The fake platform API that serves order details for records in a platform's format
    /// (`livesync dev` runs one; cluster.json names it).
    public var platformAPIURL: String?

    public init(target: ReplayTarget, producer: KafkaProducer, logger: Logger) {
        self.target = target
        self.producer = producer
        self.logger = logger
    }

    /// Publishes the session's initial stock (SET adjustments) to `stock.adjustments`.
    public func publishStock(_ records: [ReplayRecord], sessionID: String) async throws -> [String: Int64] {
        var messages: [ProducerMessage] = []
        var levels: [String: Int64] = [:]
        for rec in records {
            guard let s = rec.stock else { continue }
            var adj = StockAdjustment()
            adj.adjustmentID = "load:\(sessionID):\(s.sku):\(s.warehouse)"
            adj.sku = s.sku
            adj.warehouse = s.warehouse
            adj.kind = .set
            adj.quantity = s.available
            adj.reason = "session stock load"
            adj.createdAtUs = Clock.nowMicros()
            messages.append(ProducerMessage(topic: Topics.stockAdjustments, key: s.sku, value: adj.bytes))
            levels["\(s.sku)@\(s.warehouse)"] = s.available
        }
        try await producer.send(messages)
        return levels
    }

    /// A session made ready to send: over HTTP, every request encoded, signed and serialised to
    /// its wire bytes (and platform orders registered at the fake platform API), so that the
    /// send itself — and the CPU it is charged — is only the sending.
    public struct Prepared: Sendable {
        var events: [ReplayRecord]
        var stockRecords: Int
        var http: HTTPSession?

        struct HTTPSession: Sendable {
            var target: HTTPLoadTarget
            var wire: WireRequests
            /// Per request: seconds after the start it is due, the canonical order id (nil: a refund).
            var due: [Double]
            var orderIDs: [String?]
        }

        /// Requests to send (over HTTP) or events to publish (straight into Kafka).
        public var count: Int { http?.wire.count ?? events.count }
    }

    /// Encodes and signs every request of the session up front (that is the platforms' work, not
    /// LiveSync's, and it would otherwise compete with the cluster for this machine's cores).
    public func prepare(_ records: [ReplayRecord]) async throws -> Prepared {
        let events = records.filter { $0.type != "stock" }
        var prepared = Prepared(events: events, stockRecords: records.count - events.count, http: nil)
        if case .http(let url, let shops) = target, let endpoint = HTTPLoadTarget(url: url) {
            prepared.http = try await Self.prepareHTTP(events, url: url, endpoint: endpoint, shops: shops, platformAPIURL: platformAPIURL)
        }
        return prepared
    }

    static func prepareHTTP(_ events: [ReplayRecord], url: String, endpoint: HTTPLoadTarget, shops: [String: String], platformAPIURL: String?) async throws -> Prepared.HTTPSession {
        var platformRequests: [Int: PlatformReplay.Prepared] = [:]
        if events.contains(where: { (try? PlatformReplay.platform($0.platform)) != nil }) {
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                platformRequests = try await PlatformReplay.prepare(events, ingestURL: url, platformAPIURL: platformAPIURL, client: client)
            } catch {
                try? await client.shutdown()
                throw error
            }
            try await client.shutdown()
        }
        let encoder = JSONEncoder()
        var session = Prepared.HTTPSession(target: endpoint, wire: WireRequests(), due: [], orderIDs: [])
        session.due.reserveCapacity(events.count)
        session.orderIDs.reserveCapacity(events.count)
        for (i, event) in events.enumerated() {
            if let p = platformRequests[i] {
                let suffix = p.url.hasPrefix(url) ? String(p.url.dropFirst(url.count)) : p.url
                session.wire.appendPOST(target: endpoint.basePath + suffix, host: endpoint.authority, headers: p.headers, body: p.body.readableBytesView)
                session.orderIDs.append(p.orderID)
            } else {
                let (path, shop, body): (String, String, Data)
                if let o = event.order {
                    (path, shop, body) = ("/webhooks/generic", o.shop_id, try encoder.encode(o))
                } else if let r = event.refund {
                    (path, shop, body) = ("/webhooks/generic/refunds", r.shop_id, try encoder.encode(r))
                } else { continue }
                session.wire.appendPOST(
                    target: endpoint.basePath + path, host: endpoint.authority,
                    headers: [("Content-Type", "application/json"), (GenericWebhook.signatureHeader, GenericWebhook.sign(body, secret: shops[shop] ?? "")),
                              (GenericWebhook.shopHeader, shop)],
                    body: body)
                session.orderIDs.append(event.order.map { Identifiers.orderID(platform: .generic, shop: $0.shop_id, platformOrderID: $0.order_id) })
            }
            session.due.append(event.at)
        }
        return session
    }

    /// Sends every order and refund; returns once each one is acknowledged, refused or given up on.
    public func send(_ records: [ReplayRecord]) async throws -> ReplayResult {
        try await send(try await prepare(records))
    }

    /// Sends a prepared session; `startedAt` is when the first request goes.
    public func send(_ prepared: Prepared) async throws -> ReplayResult {
        var result = ReplayResult()
        result.stockRecords = prepared.stockRecords
        result.startedAt = Date()
        let start = ContinuousClock.now
        switch target {
        case .kafka:
            try await sendToKafka(prepared.events, start: start, result: &result)
        case .http(let url, let shops):
            if let session = prepared.http {
                try await sendOverHTTP(session, result: &result)
            } else {
                try await sendOverAsyncHTTPClient(prepared.events, url: url, shops: shops, start: start, result: &result)
            }
        }
        result.finishedAt = Date()
        return result
    }

    /// Fires the pre-built requests over the keep-alive connection pool (`HTTPLoadRun`): one
    /// connection per concurrent request.
    private func sendOverHTTP(_ session: Prepared.HTTPSession, result: inout ReplayResult) async throws {
        let state = SharedProgress()
        let (progress, progressSink) = AsyncStream.makeStream(of: Int.self, bufferingPolicy: .bufferingNewest(1))
        let onProgress = self.onProgress
        let reporter = Task {
            for await count in progress { await onProgress?(count) }
        }
        let orderIDs = session.orderIDs
        let logger = self.logger
        var options = HTTPLoadRun.Options()
        options.connections = concurrency
        let run = try HTTPLoadRun(requests: session.wire, due: session.due, target: session.target, options: options) { i, outcome in
            let count: Int? = state.result.withLock { r in
                switch outcome {
                case .accepted:
                    if let id = orderIDs[i] {
                        r.accepted.append(id)
                        return r.accepted.count
                    }
                    r.refundsAccepted += 1
                case .refused: r.refused += 1
                case .failed: r.failed += 1
                }
                return nil
            }
            if let count, onProgress != nil { progressSink.yield(count) }
            if case .failed = outcome { logger.error("replayed request failed after every retry", metadata: ["request": "\(i)"]) }
            if case .refused = outcome { logger.warning("ingest refused a replayed request", metadata: ["request": "\(i)"]) }
        }
        do {
            try await run.run()
        } catch {
            progressSink.finish()
            try? await run.shutdown()
            throw error
        }
        progressSink.finish()
        await reporter.value
        try await run.shutdown()
        let r = state.result.withLock { $0 }
        result.accepted = r.accepted
        result.refundsAccepted = r.refundsAccepted
        result.refused = r.refused
        result.failed = r.failed
    }

    private func sendToKafka(_ events: [ReplayRecord], start: ContinuousClock.Instant, result: inout ReplayResult) async throws {
        var pending: [ProducerMessage] = []
        var pendingIDs: [String] = []
        var refunds = 0
        func flush() async throws {
            guard !pending.isEmpty else { return }
            try await producer.send(pending)
            result.accepted += pendingIDs
            result.refundsAccepted += refunds
            await onProgress?(result.accepted.count)
            pending.removeAll(keepingCapacity: true)
            pendingIDs.removeAll(keepingCapacity: true)
            refunds = 0
        }
        for event in events {
            if event.at > 0 {
                let due = start + .milliseconds(Int64(event.at * 1000))
                if due > .now { try await flush(); try await Task.sleep(until: due) }
            }
            let now = Clock.nowMicros()
            do {
                if let o = event.order {
                    let order = try GenericWebhook.order(from: o, shop: ShopCredentials(secret: ""), now: now)
                    pending += OrderPublisher.messages(for: order)
                    pendingIDs.append(order.orderID)
                } else if let r = event.refund {
                    let refund = try GenericWebhook.refund(from: r, now: now)
                    pending.append(ProducerMessage(topic: Topics.refundRequests, key: refund.orderID, value: refund.bytes))
                    refunds += 1
                }
            } catch {
                result.refused += 1
                logger.warning("replay record refused: \(error)")
            }
            if pending.count >= 5_000 { try await flush() }
        }
        try await flush()
    }

    /// The same through AsyncHTTPClient, for what the connection pool does not serve (`https://`).
    private func sendOverAsyncHTTPClient(_ events: [ReplayRecord], url: String, shops: [String: String], start: ContinuousClock.Instant, result: inout ReplayResult) async throws {
        var config = HTTPClient.Configuration()
        config.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: concurrency)
        config.timeout = .init(connect: .seconds(5), read: .seconds(30))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        let state = SharedProgress()
        // Encode and sign every request up front: that is the platforms' work, not LiveSync's,
        // and it would otherwise compete with the cluster for this machine's cores.
        let encoder = JSONEncoder()
        let platformRequests = try await PlatformReplay.prepare(events, ingestURL: url, platformAPIURL: platformAPIURL, client: client)
        let prepared: [PlatformReplay.Prepared?] = try events.enumerated().map { i, event in
            if let p = platformRequests[i] { return p }
            let (path, shop, body): (String, String, Data)
            if let o = event.order {
                (path, shop, body) = ("/webhooks/generic", o.shop_id, try encoder.encode(o))
            } else if let r = event.refund {
                (path, shop, body) = ("/webhooks/generic/refunds", r.shop_id, try encoder.encode(r))
            } else { return nil }
            return PlatformReplay.Prepared(
                url: url + path, body: ByteBuffer(bytes: body),
                headers: [("Content-Type", "application/json"), (GenericWebhook.signatureHeader, GenericWebhook.sign(body, secret: shops[shop] ?? "")),
                          (GenericWebhook.shopHeader, shop)],
                orderID: event.order.map { Identifiers.orderID(platform: .generic, shop: $0.shop_id, platformOrderID: $0.order_id) })
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<concurrency {
                    group.addTask {
                        while true {
                            let i = state.next.add(1, ordering: .relaxed).oldValue
                            guard i < events.count else { return }
                            let event = events[i]
                            if event.at > 0 {
                                let due = start + .milliseconds(Int64(event.at * 1000))
                                if due > .now { try await Task.sleep(until: due) }
                            }
                            guard let request = prepared[i] else { continue }
                            let outcome = await post(client, request.url, body: request.body, headers: request.headers)
                            let count: Int? = state.result.withLock { r in
                                switch outcome {
                                case .accepted:
                                    if let id = request.orderID {
                                        r.accepted.append(id)
                                        return r.accepted.count
                                    }
                                    r.refundsAccepted += 1
                                case .refused: r.refused += 1
                                case .failed: r.failed += 1
                                }
                                return nil
                            }
                            if let count { await onProgress?(count) }
                        }
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        let r = state.result.withLock { $0 }
        result.accepted = r.accepted
        result.refundsAccepted = r.refundsAccepted
        result.refused = r.refused
        result.failed = r.failed
    }

    enum Outcome { case accepted, refused, failed }

    /// Posts one signed webhook; retries 5xx and network errors with backoff, as platforms do.
    private func post(_ client: HTTPClient, _ url: String, body: ByteBuffer, headers: [(String, String)]) async -> Outcome {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(body)
        for attempt in 0..<8 {
            do {
                let response = try await client.execute(request, timeout: .seconds(30))
                _ = try? await response.body.collect(upTo: 1 << 16)
                switch response.status.code {
                case 200..<300: return .accepted
                case 429: break
                case 400..<500:
                    logger.warning("ingest refused a replayed request", metadata: ["status": "\(response.status.code)"])
                    return .refused
                default: break
                }
            } catch {
                if attempt == 7 { logger.error("replayed request failed", metadata: ["error": "\(error)"]) }
            }
            try? await Task.sleep(for: .milliseconds(100 << attempt))
        }
        return .failed
    }
}

/// Progress shared by the replay's concurrent senders.
private final class SharedProgress: Sendable {
    let next = Atomic<Int>(0)
    let result = Mutex(ReplayResult())
}
