import Foundation
import Hummingbird
import HummingbirdTesting
import Metrics
import Testing

@testable import Telemetry

@Suite struct TelemetryTests {
    func app(_ endpoints: HealthEndpoints) -> some ApplicationProtocol {
        let router = Router()
        endpoints.addRoutes(to: router)
        return Application(router: router)
    }

    @Test func readyzAnswers503AndNamesTheFailingCheck() async throws {
        let endpoints = HealthEndpoints(process: "stock-1", checks: [
            HealthCheck("broker_reachable") { .pass() },
            HealthCheck("sqlite_writable") { .fail("/data/stock.sqlite: attempt to write a readonly database") },
        ], consumption: { ConsumptionSnapshot(partitions: 3, lag: 12, lastBatchAtUs: 5) })
        try await app(endpoints).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let report = try JSONDecoder().decode(ReadinessReport.self, from: Data(buffer: response.body))
                #expect(report.failed == ["sqlite_writable"])
                #expect(report.status == "not_ready")
                #expect(report.checks["sqlite_writable"]?.detail.contains("readonly") == true)
                #expect(report.checks["broker_reachable"]?.ok == true)
                #expect(report.consumption == ConsumptionSnapshot(partitions: 3, lag: 12, lastBatchAtUs: 5))
            }
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
            }
        }
    }

    /// Instances on other hosts share no process folder: `livesync status --endpoint` asks each
    /// configured URL, names the row by the process's own report, and shows a silent one as down.
    @Test func statusAsksConfiguredEndpointsAndNamesEachRowByItsReport() async throws {
        let endpoints = HealthEndpoints(process: "dispatch-2", checks: [HealthCheck("broker_reachable") { .pass() }],
                                        consumption: { ConsumptionSnapshot(partitions: 5, lag: 7, lastBatchAtUs: 9) })
        try await Application(router: { let r = Router(); endpoints.addRoutes(to: r); return r }(),
                              configuration: .init(address: .hostname("127.0.0.1", port: 0))).test(.live) { client in
            let url = "http://127.0.0.1:\(try #require(client.port))"
            let rows = await ProcessStatus.collect(endpoints: [url + "/", url, "http://127.0.0.1:9"], timeout: .seconds(2))
            #expect(rows.count == 2, "the same endpoint given twice is asked once")
            let up = try #require(rows.first { $0.url == url })
            #expect(up.process == "dispatch-2" && up.isReady && up.partitions == 5 && up.lag == 7)
            let down = try #require(rows.first { $0.url == "http://127.0.0.1:9" })
            #expect(down.process == "http://127.0.0.1:9" && !down.isReady && down.health.hasPrefix("down"))
        }
    }

    @Test func readyzAnswers200WhenEveryCheckPasses() async throws {
        let endpoints = HealthEndpoints(process: "ingest", checks: [HealthCheck("broker_reachable") { .pass() }])
        try await app(endpoints).test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
                let report = try JSONDecoder().decode(ReadinessReport.self, from: Data(buffer: response.body))
                #expect(report.ready && report.failed.isEmpty && report.process == "ingest")
            }
        }
    }

    @Test func metricsRecordedThroughSwiftMetricsAppearInThePrometheusExposition() async throws {
        Telemetry.bootstrap()
        Counter(label: "livesync_test_events_total", dimensions: [("platform", "douyin")]).increment(by: 3)
        Metrics.Timer(label: MetricNames.syncLatency, dimensions: [("status", "synced")]).recordMilliseconds(40)
        try await app(HealthEndpoints(process: "t", checks: [])).test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(#"livesync_test_events_total{platform="douyin"} 3"#))
                #expect(text.contains(#"livesync_sync_latency_seconds_bucket{status="synced",le="0.05"} 1"#))
                #expect(response.headers[.contentType]?.hasPrefix("text/plain") == true)
            }
        }
    }

    /// The announced URL must be reachable from other machines: a wildcard listen address is
    /// replaced by the host name, and an advertised host wins over both.
    @Test func theAdvertisedURLNamesAHostOthersCanReach() {
        #expect(TelemetryConfiguration.advertisedURL(listenHost: "127.0.0.1", port: 9464, advertisedHost: nil) == "http://127.0.0.1:9464")
        #expect(TelemetryConfiguration.advertisedURL(listenHost: "0.0.0.0", port: 9464, advertisedHost: nil) == "http://\(ProcessInfo.processInfo.hostName):9464")
        #expect(TelemetryConfiguration.advertisedURL(listenHost: "0.0.0.0", port: 9464, advertisedHost: "10.1.2.3") == "http://10.1.2.3:9464")
        #expect(TelemetryConfiguration.advertisedURL(listenHost: "::", port: 80, advertisedHost: "fd00::5") == "http://[fd00::5]:80")
    }

    /// A process announced from this host whose pid is gone is down for good; a pid announced
    /// from another host says nothing here.
    @Test func onlyThisHostsPidsAreJudged() {
        #expect(ProcessStatus.isGoneFromThisHost(host: ProcessInfo.processInfo.hostName, pid: getpid()) == false)
        #expect(ProcessStatus.isGoneFromThisHost(host: "elsewhere.invalid", pid: Int32.max) == false)
        #expect(ProcessStatus.isGoneFromThisHost(host: ProcessInfo.processInfo.hostName, pid: Int32.max) == true)
    }

    /// A process's own routes (alerting's `/alerts`) are served beside the health endpoints.
    @Test func theTelemetryServerServesAProcesssOwnRoutesBesideItsHealthEndpoints() async throws {
        let app = TelemetryServer.make(endpoints: HealthEndpoints(process: "alerting-1", checks: []), configuration: .init(port: 0),
                                       logger: .init(label: "test"), addingRoutes: { router in router.get("/alerts") { _, _ in "[]" } })
        try await app.test(.router) { client in
            try await client.execute(uri: "/alerts", method: .get) { #expect($0.status == .ok && String(buffer: $0.body) == "[]") }
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
        }
    }
}
