import Foundation
import Hummingbird
import Logging
import NIOCore

/// Computes the figures at most once per refresh however many pages are open, and only while
/// someone looks (no page, no queries).
actor SnapshotHub {
    let configuration: DashboardConfiguration
    var cached: DashboardSnapshot?
    var computedAt: UInt64 = 0
    /// Reserved units per SKU as sampled at each refresh (the last 5 minutes), for sales rates
    /// without scanning the ERP book.
    var samples: [(atUs: Int64, reserved: [String: Int64])] = []

    init(configuration: DashboardConfiguration) { self.configuration = configuration }

    func latest() async throws -> DashboardSnapshot {
        let now = DispatchTime.now().uptimeNanoseconds
        if let cached, now - computedAt < UInt64(configuration.refreshMilliseconds) * 500_000 { return cached }
        // Aged from when the reads began: a cached snapshot is never older than half a refresh,
        // however long the computation took.
        let started = now
        var snapshot = try await DashboardFigures.compute(configuration)
        let current = Dictionary(snapshot.hotSkus.map { ("\($0.sku)@\($0.warehouse)", $0.reserved) }, uniquingKeysWith: { a, _ in a })
        samples.append((snapshot.generatedAtUs, current))
        samples.removeAll { $0.atUs < snapshot.generatedAtUs - 300_000_000 }
        if let oldest = samples.first, snapshot.generatedAtUs > oldest.atUs {
            let minutes = Double(snapshot.generatedAtUs - oldest.atUs) / 60e6
            for i in snapshot.hotSkus.indices {
                let key = "\(snapshot.hotSkus[i].sku)@\(snapshot.hotSkus[i].warehouse)"
                let sold = max(0, snapshot.hotSkus[i].reserved - (oldest.reserved[key] ?? snapshot.hotSkus[i].reserved))
                snapshot.hotSkus[i].soldLast5Min = sold
                if sold > 0 { snapshot.hotSkus[i].minutesToSellOut = (Double(snapshot.hotSkus[i].available) / (Double(sold) / minutes) * 10).rounded() / 10 }
            }
        }
        cached = snapshot
        computedAt = started
        return snapshot
    }
}

/// The live dashboard: `GET /dashboard` (the page; every asset inline, nothing fetched from
/// the internet), `GET /dashboard/snapshot` (the figures as JSON), `GET /dashboard/events`
/// (Server-Sent Events: the figures every refresh).
public enum DashboardApp {
    public static func addRoutes(to router: Router<BasicRequestContext>, configuration: DashboardConfiguration) {
        let hub = SnapshotHub(configuration: configuration)
        router.get("/dashboard") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: DashboardPage.html)))
        }
        router.get("/dashboard/snapshot") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encode(try await hub.latest()))))
        }
        router.get("/dashboard/events") { request, _ in
            // `?limit=N` ends the stream after N updates (headless checks); the page reconnects.
            let limit = request.uri.queryParameters.get("limit").flatMap(Int.init) ?? Int.max
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    var sent = 0
                    while !Task.isCancelled && sent < limit {
                        sent += 1
                        let data = try encode(try await hub.latest())
                        var buffer = ByteBuffer(string: "data: ")
                        buffer.writeBytes(data)
                        buffer.writeString("\n\n")
                        try await writer.write(buffer)
                        if sent >= limit { break }
                        try await Task.sleep(for: .milliseconds(configuration.refreshMilliseconds))
                    }
                    try await writer.finish(nil)
                })
        }
    }

    static func encode(_ s: DashboardSnapshot) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(s))
    }

    /// A server of its own (`livesync dashboard`).
    public static func make(configuration: DashboardConfiguration, host: String, port: Int, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        addRoutes(to: router, configuration: configuration)
        router.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/dashboard"]) }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "livesync-dashboard"),
            onServerRunning: { channel in
                let url = "http://\(host):\(channel.localAddress?.port ?? port)/dashboard"
                logger.info("dashboard listening", metadata: ["url": "\(url)"])
                FileHandle.standardOutput.write(Data("dashboard:  \(url)\n".utf8))
            },
            logger: logger)
    }
}
