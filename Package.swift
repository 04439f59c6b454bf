// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "LiveSync",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "livesync", targets: ["livesync"]),
        .executable(name: "livesync-ingest", targets: ["livesync-ingest"]),
        .executable(name: "livesync-stock", targets: ["livesync-stock"]),
        .executable(name: "livesync-dispatch", targets: ["livesync-dispatch"]),
        .executable(name: "livesync-alerting", targets: ["livesync-alerting"]),
        .executable(name: "livesync-channels", targets: ["livesync-channels"]),
        .executable(name: "livesync-book", targets: ["livesync-book"]),
        .executable(name: "livesync-erp", targets: ["livesync-erp"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // librdkafka from the system (Debian: librdkafka-dev), including the mock cluster API.
        .systemLibrary(
            name: "CRdkafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),

        // MARK: Libraries, one per concern (production)

        /// Kafka clients over librdkafka: producer, balanced consumer, admin, partition reader, murmur2.
        .target(
            name: "Kafka",
            dependencies: [
                "CRdkafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The canonical order model, its Protobuf wire format (generated code is committed), the
        /// topics (names, keys, partition counts) and the wire's clock.
        .target(
            name: "Model",
            dependencies: [
                "Kafka",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Metrics (swift-metrics bootstrapped with a Prometheus registry), `/metrics`,
        /// `/healthz`, `/readyz`, and `livesync status`'s queries of them.
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The consumer runtime: the batching consumer loop, its SQLite state store with offsets,
        /// changelog heads and outbox, and the changelog chain.
        .target(
            name: "Worker",
            dependencies: [
                "Kafka", "Model", "Telemetry",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// How a LiveSync process starts: configuration loading (environment, file, defaults),
        /// logging, the service group with health endpoints, shutdown-aware waits, announcing
        /// the process on `livesync.instances` and finding the others there.
        .target(
            name: "Bootstrap",
            dependencies: [
                "Kafka", "Model", "Telemetry", "Worker",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Stock per SKU and warehouse: reservation rules, the stock-deduction processor, the stock store's read API.
        .target(
            name: "Inventory",
            dependencies: [
                "Worker", "Bootstrap", "Model", "Kafka", "Telemetry", .product(name: "Metrics", package: "swift-metrics"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Webhook ingest: signature checks, normalisation, publishing order lines by SKU.
        .target(
            name: "Ingest",
            dependencies: [
                "Worker", "Model", "Kafka", "Telemetry", .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The merchant's ERPs, outbound: each ERP's published API (auth, signing, envelopes,
        /// batch calls, error codes) behind one `ErpAdapter` contract.
        .target(
            name: "ErpAdapters",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// `livesync-erp`'s work: decided orders queued per ERP document, written through an
        /// `ErpAdapter` in batches at the ERP's pace, the pending queue, stock pulled back.
        .target(
            name: "ErpSync",
            dependencies: [
                "ErpAdapters", "Worker", "Bootstrap", "Model", "Kafka", "Telemetry",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The ERP book (erp.sqlite): its schema, the typed writes dispatch and after-sales make in
        /// their batch transactions, and the one read API every view uses (`ErpBookView`).
        .target(
            name: "ErpBookStore",
            dependencies: ["Worker", "Model", "Kafka", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        /// Live-stream platform connectors, inbound: each platform's webhook protocol (signatures,
        /// decryption, envelopes, acknowledgements), its signed API calls and tokens, order-detail
        /// APIs, pollers, field mapping, message de-duplication.
        .target(
            name: "Connectors",
            dependencies: [
                "Ingest", "Model", "Worker", "Kafka", "Telemetry", "Bootstrap", "ErpBookStore", "ReadModel",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Channels, outbound: stock pushed to each channel's SKUs (allocation, coalescing, rate
        /// limits) and shipments written back, through a durable queue with retries and dead letters.
        .target(
            name: "Channels",
            dependencies: [
                "Connectors", "Model", "Worker", "Kafka", "Telemetry", "Bootstrap",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The dispatch join (orders x reservations -> shipments), booked through `ErpBook`.
        .target(
            name: "Fulfillment",
            dependencies: ["Worker", "Model", "Kafka", "ErpBookStore", "AfterSales", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        /// The read model: a copy of the whole ERP book and the stock levels, built from the
        /// changelogs (`ChangelogReplica`), its HTTP API and the client the views use.
        .target(
            name: "ReadModel",
            dependencies: ["Worker", "Model", "Kafka", "Bootstrap", "Telemetry", "ErpBookStore", "Inventory", "Fulfillment",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: swiftSettings
        ),
        /// Refunds: what a refund request does to its order, applied by dispatch.
        .target(
            name: "AfterSales",
            dependencies: ["Worker", "Model", "ErpBookStore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        /// Alerts on stock-outs, dead letters and orders not synced in time.
        .target(
            name: "Alerting",
            dependencies: [
                "Worker", "Model", "Kafka", "Inspection", "Telemetry", "Bootstrap", "ReadModel", "ErpSync",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Consistency inspection (健康巡检): topics vs the read model's stock store and ERP book.
        .target(
            name: "Inspection",
            dependencies: ["Kafka", "Model", "Worker", "Bootstrap", "ReadModel", .product(name: "GRDB", package: "GRDB.swift"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        /// The live dashboard: figures from the read model (ERP book, stock levels) and alerting's
        /// HTTP API (alerts, unsynced orders), pushed over SSE.
        .target(
            name: "Dashboard",
            dependencies: [
                "Worker", "Telemetry", "Bootstrap", "Alerting", "Model", "ReadModel", "ErpSync",
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Production operator tools: dead letters (`livesync dlq list|replay`).
        .target(
            name: "Operations",
            dependencies: ["Kafka", "Model", "Worker", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),

        // MARK: Test and development tooling (never linked into a worker executable)

        /// What tests and `livesync dev` stand in for the outside world with: the embedded Kafka
        /// broker (librdkafka's mock cluster), the platform emulator and fake platform APIs, the
        /// development credentials.
        .target(
            name: "LiveSyncTesting",
            dependencies: [
                "CRdkafka", "Kafka", "Model", "Worker", "Ingest", "Connectors", "Channels", "ReadModel", "Fulfillment", "Inventory", "ErpAdapters",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The dev harness: embedded dev cluster supervisor, replay producer, demo, chaos, benchmarks.
        .target(
            name: "DevHarness",
            dependencies: [
                "Kafka", "Model", "Worker", "Bootstrap", "Ingest", "Fulfillment", "ErpBookStore", "Inventory", "Connectors", "Dashboard", "Inspection", "Operations", "Telemetry", "LiveSyncTesting", "ReadModel", "Alerting", "ErpSync", "ErpAdapters",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Executables: wiring only

        .executableTarget(
            name: "livesync",
            dependencies: [
                "DevHarness", "Operations", "Ingest", "Kafka", "Model", "Worker", "Bootstrap", "Inspection", "Inventory", "Telemetry", "Dashboard", "ReadModel", "Alerting", "ErpSync",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-ingest",
            dependencies: ["Ingest", "Connectors", "Worker", "Bootstrap", "Model", "Telemetry", "ReadModel", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-stock",
            dependencies: ["Inventory", "Worker", "Bootstrap", "Model", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-dispatch",
            dependencies: ["Fulfillment", "Worker", "Bootstrap", "Model", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-book",
            dependencies: ["ReadModel", "Fulfillment", "Inventory", "Worker", "Bootstrap", "Model", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-erp",
            dependencies: ["ErpSync", "Worker", "Bootstrap", "Model", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-alerting",
            dependencies: ["Alerting", "Worker", "Bootstrap", "Model", "Inspection", "ReadModel", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "livesync-channels",
            dependencies: ["Channels", "Connectors", "Worker", "Bootstrap", "Model", "Kafka", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client")],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests

        .testTarget(name: "KafkaTests", dependencies: ["Kafka", "LiveSyncTesting"], swiftSettings: swiftSettings),
        .testTarget(
            name: "TelemetryTests",
            dependencies: [
                "Telemetry",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "ModelTests", dependencies: ["Model", "Ingest", "Kafka", "Worker", "Bootstrap"], swiftSettings: swiftSettings),
        .testTarget(
            name: "WorkerTests",
            dependencies: ["Worker", "Kafka", "Model", "LiveSyncTesting", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InventoryTests",
            dependencies: ["Inventory", "Worker", "Bootstrap", "LiveSyncTesting", "Model", "Kafka", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FulfillmentTests",
            dependencies: ["Fulfillment", "AfterSales", "ErpBookStore", "Worker", "Model", "Kafka", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AlertingTests",
            dependencies: [
                "Alerting", "Worker", "Bootstrap", "ErpBookStore", "LiveSyncTesting", "Model", "Kafka", "Telemetry", "Inventory", "Fulfillment", "Inspection", "ReadModel", "ErpSync",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ConnectorTests",
            dependencies: [
                "Connectors", "Channels", "LiveSyncTesting", "Bootstrap", "Ingest", "Model", "Kafka", "Worker", "ReadModel", "Fulfillment",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ErpTests",
            dependencies: [
                "ErpAdapters", "ErpSync", "LiveSyncTesting", "Model", "Worker", "Kafka", "Inventory", "Bootstrap",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "DevHarness", "LiveSyncTesting", "Operations", "Bootstrap", "ErpBookStore", "Kafka", "Model", "Ingest", "Worker",
                "Connectors", "Inventory", "Inspection", "Dashboard", "Fulfillment", "Alerting", "ReadModel",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
