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
        .executable(name: "livesync-aftersales", targets: ["livesync-aftersales"]),
        .executable(name: "livesync-alerting", targets: ["livesync-alerting"]),
        .executable(name: "livesync-channels", targets: ["livesync-channels"]),
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
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // librdkafka from the system (Debian: librdkafka-dev), including the mock cluster API.
        .systemLibrary(
            name: "CRdkafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),

        // MARK: Libraries, one per concern

        /// Kafka clients over librdkafka: producer, balanced consumer, admin, embedded broker, murmur2.
        .target(
            name: "Kafka",
            dependencies: [
                "CRdkafka",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The canonical order model and its Protobuf wire format (generated code is committed).
        .target(
            name: "Model",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Metrics (swift-metrics bootstrapped with a Prometheus registry), `/metrics`,
        /// `/healthz`, `/readyz`, and the process records `livesync status` reads.
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
        /// The batching consumer loop, SQLite state with offsets and outbox, service wiring.
        .target(
            name: "Worker",
            dependencies: [
                "Kafka", "Model", "Telemetry",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Stock per SKU and warehouse: reservation rules and the stock-deduction processor.
        .target(
            name: "Inventory",
            dependencies: [
                "Worker", "Model", "Kafka", "Telemetry", .product(name: "Metrics", package: "swift-metrics"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "Logging", package: "swift-log"),
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
            ],
            swiftSettings: swiftSettings
        ),
        /// Live-stream platform connectors: each platform's webhook protocol (signatures, decryption,
        /// envelopes, acknowledgements), order-detail APIs, field mapping, message de-duplication.
        .target(
            name: "Connectors",
            dependencies: [
                "Ingest", "Model", "Worker", "Kafka", "Telemetry",
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
        /// The ERP book and the dispatch join (orders x reservations -> shipments).
        .target(
            name: "Fulfillment",
            dependencies: ["Worker", "Model", "Kafka", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        /// Refunds: cancel unshipped orders, release their stock, book the refund.
        .target(
            name: "AfterSales",
            dependencies: ["Worker", "Model", "Kafka", "Fulfillment", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        /// Alerts on stock-outs, dead letters and orders not synced in time.
        .target(
            name: "Alerting",
            dependencies: [
                "Worker", "Model", "Kafka", "Inspection", "Inventory", "Telemetry",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        /// Consistency inspection (健康巡检): topics vs stock store vs ERP book.
        .target(
            name: "Inspection",
            dependencies: ["Kafka", "Model", "Worker", "Inventory", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        /// The live dashboard: figures from the ERP book, stock and alert stores, pushed over SSE.
        .target(
            name: "Dashboard",
            dependencies: [
                "Worker", "Telemetry", "Inventory",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        /// The operator's side: embedded dev cluster supervisor, replay producer, demo summary.
        .target(
            name: "Cluster",
            dependencies: [
                "Kafka", "Model", "Worker", "Ingest", "Fulfillment", "Inventory", "Connectors", "Dashboard", "Inspection", "Telemetry",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: Executables: wiring only

        .executableTarget(
            name: "livesync",
            dependencies: [
                "Cluster", "Ingest", "Kafka", "Worker", "Inspection", "Inventory", "Telemetry", "Dashboard",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-ingest",
            dependencies: ["Ingest", "Connectors", "Worker", "Telemetry", .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "AsyncHTTPClient", package: "async-http-client"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-stock",
            dependencies: ["Inventory", "Worker", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-dispatch",
            dependencies: ["Fulfillment", "Worker", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-aftersales",
            dependencies: ["AfterSales", "Worker", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "livesync-alerting",
            dependencies: ["Alerting", "Worker", "Inspection", .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "livesync-channels",
            dependencies: ["Connectors", "Worker", "Model", "Kafka", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "AsyncHTTPClient", package: "async-http-client")],
            swiftSettings: swiftSettings
        ),

        // MARK: Tests

        .testTarget(name: "KafkaTests", dependencies: ["Kafka"], swiftSettings: swiftSettings),
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
        .testTarget(name: "ModelTests", dependencies: ["Model", "Ingest", "Kafka", "Worker"], swiftSettings: swiftSettings),
        .testTarget(
            name: "WorkerTests",
            dependencies: ["Worker", "Kafka", "Model", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "InventoryTests",
            dependencies: ["Inventory", "Worker", "Model", "Kafka", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "FulfillmentTests",
            dependencies: ["Fulfillment", "AfterSales", "Worker", "Model", "Kafka", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "AlertingTests",
            dependencies: [
                "Alerting", "Worker", "Model", "Kafka", "Telemetry", "Inventory", "Fulfillment", "Inspection",
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
                "Connectors", "Ingest", "Model", "Kafka", "Worker",
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
            name: "IntegrationTests",
            dependencies: [
                "Cluster", "Kafka", "Model", "Ingest", "Worker",
                "Connectors", "Inventory", "Inspection", "Dashboard", "Fulfillment", "Alerting",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
