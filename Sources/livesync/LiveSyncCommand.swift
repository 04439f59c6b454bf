import Operations
import ReadModel
import Model
import Bootstrap
import ArgumentParser
import AsyncHTTPClient
import DevHarness
import Dashboard
import Foundation
import Ingest
import Inspection
import Inventory
import Telemetry
import Kafka
import Logging
import Worker
import ReadModel
import Alerting

@main
struct LiveSyncCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync",
        abstract: "LiveSync operator CLI: run the embedded cluster, replay live sessions, run the demo.",
        subcommands: [Dev.self, Demo.self, Chaos.self, Replay.self, Restart.self, Kill.self, Scale.self, Dlq.self, CreateTopics.self, Bench.self, Status.self, Inspect.self, DashboardCommand.self, Erp.self])
}

struct SessionOptions: ParsableArguments {
    @Option(help: "Orders in the synthetic session.") var orders = 20_000
    @Option(help: "Mean arrival rate in orders/s, in bursts (0: as fast as possible).") var rate = 0.0
    @Option(help: "SKUs in the catalogue (Zipf popularity; SKU-0000 is hot and sells out).") var skus = 200
    @Option(help: "Fraction of orders refunded.") var refundRate = 0.02
    @Option(help: "Random seed (same seed, same session).") var seed: UInt64 = 42
    @Option(help: "Push formats the orders arrive in, round robin: generic, douyin, kuaishou, wechat, tiktok (comma-separated).") var platforms = "generic"

    var shape: SessionShape {
        var s = SessionShape()
        s.orders = orders
        s.ratePerSecond = rate
        s.skus = skus
        s.refundRate = refundRate
        s.seed = seed
        s.platforms = platforms.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return s
    }

    func validate() throws {
        guard orders > 0 else { throw ValidationError("--orders must be positive") }
        guard skus > 0 else { throw ValidationError("--skus must be positive") }
        guard rate >= 0 else { throw ValidationError("--rate must not be negative") }
        guard (0...1).contains(refundRate) else { throw ValidationError("--refund-rate must be between 0 and 1") }
        for p in platforms.split(separator: ",") where !["generic", "douyin", "kuaishou", "wechat", "tiktok"].contains(p.trimmingCharacters(in: .whitespaces)) {
            throw ValidationError("--platforms: unknown platform '\(p)' (generic, douyin, kuaishou, wechat, tiktok)")
        }
    }
}

extension LiveSyncCommand {
    struct Dev: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the embedded Kafka broker, create the topics and run every executable.")

        @Option(help: "State, logs and cluster.json (reset at start).") var dataDir = "var/dev"
        @Option(help: "livesync-stock instances.") var stockInstances = 1
        @Option(help: "livesync-dispatch instances.") var dispatchInstances = 1
        @Option(help: "Admin port on 127.0.0.1 (0: any free port).") var adminPort = 0
        @Option(help: "Alert webhook URL for livesync-alerting.") var alertWebhook: String?
        @Option(help: "Configuration file for livesync-alerting (alert rules and channels).") var alertingConfig: String?
        @Flag(help: "Run each instance as on a host of its own: its own data directory (mode 0700; as root, its own user) and environment, nothing shared but the broker's and the read model's addresses.") var isolated = false
        @Option(help: "Run livesync-erp against a local ERP: tryton (installed from PyPI on first use; its URL, database and login are printed and written to cluster.json).") var erp: String?

        func run() async throws {
            ServiceRunner.bootstrapLogging()
            let logger = Logger(label: "livesync.dev")
            var config = DevClusterConfiguration(dataDirectory: dataDir)
            config.stockInstances = stockInstances
            config.dispatchInstances = dispatchInstances
            config.alertWebhookURL = alertWebhook
            config.alertingConfigFile = alertingConfig
            config.isolated = isolated
            var erpServer: DevErpServer?
            if let erp {
                guard ErpDemo.kinds.contains(erp) else { throw ValidationError("--erp must be one of \(ErpDemo.kinds.joined(separator: ", ")), not '\(erp)'") }
                // The ERP starts with the default catalogue (SKU-0000…SKU-0199) and its stock;
                // LiveSync's stock comes from it: `livesync erp pull-stock` once the cluster runs.
                let (server, target) = try await ErpDemo.startTryton(dataDirectory: dataDir, stock: nil, logger: logger)
                erpServer = server
                config.erp = target
            }
            let cluster = try await DevCluster(configuration: config, logger: logger)
            say("bootstrap:  \(cluster.bootstrap)")
            say("ingest:     \(cluster.ingestURL)/webhooks/generic")
            say("platforms:  \(cluster.ingestURL)/webhooks/{douyin,kuaishou,wechat,tiktok}  (fake platform API \(cluster.platformAPIURL); `livesync replay --platforms …`)")
            say("read model: \(cluster.bookURL)/book/snapshot?totals=1  (livesync-book; `livesync dashboard`, `inspect` ask it)")
            say("cluster:    \(cluster.clusterFile)  (shop secrets; used by `livesync replay`)")
            say("logs:       \(dataDir)/logs/")
            if isolated { say("instances:  \(dataDir)/hosts/  (\(Isolation.directories(cluster).joined(separator: ", ")))") }
            if let erpServer, let erpURL = cluster.erpURL {
                say("ERP:        \(erpServer.url)  database \(erpServer.database), login \(erpServer.login) / \(erpServer.password)  (Tryton; livesync-erp at \(erpURL)/erp/status; `livesync erp status|pending|retry|pull-stock`)")
            }
            let admin = AdminServer.make(cluster: cluster, port: adminPort, logger: logger)
            do {
                try await ServiceRunner.run([admin], logger: logger)
            } catch {
                cluster.stop()
                try? await erpServer?.stop()
                throw error
            }
            cluster.stop()
            try? await erpServer?.stop()
        }
    }

    struct Demo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the cluster on the embedded broker, replay a live session through it and print the summary.")

        @OptionGroup var session: SessionOptions
        @Flag(help: "Print the summary as one JSON object.") var json = false
        @Flag(help: "Publish straight into Kafka instead of through ingest's HTTP.") var viaKafka = false
        @Option(help: "Concurrent HTTP requests (a live session's many buyers; ingest answers after Kafka acknowledged, so throughput is about concurrency / ack latency).") var concurrency = 256
        @Option(help: "SIGKILL livesync-stock after this many accepted orders (it restarts).") var killStockAfter: Int?
        @Option(help: "Seconds to wait for every order to settle.") var settleTimeout = 120.0
        @Option(help: "State and logs (reset at start).") var dataDir = "var/demo"
        @Option(help: "PRAGMA synchronous of state databases (FULL or NORMAL).") var synchronous = "FULL"
        @Flag(help: "Run without livesync-alerting.") var noAlerting = false
        @Flag(help: "Run each instance as on a host of its own: its own data directory (mode 0700; as root, its own user) and environment, nothing shared but the broker's and the read model's addresses.") var isolated = false
        @Option(help: "Write every decided order into a local ERP through livesync-erp and audit it at the end: tryton (installed from PyPI on first use).") var erp: String?
        @Option(help: "With --erp: SIGKILL livesync-erp after this many accepted orders (it restarts).") var killErpAfter: Int?
        @Option(help: "With --erp: stop the ERP server after this many accepted orders and start it again 5 s later.") var restartErpAfter: Int?
        @Option(help: "With --erp: pull the ERP's stock into LiveSync after this many accepted orders (mid-burst).") var pullStockAfter: Int?
        @Option(help: "With --erp: seconds to wait for the ERP to catch up after the last order settled.") var erpDrainTimeout = 900.0

        func run() async throws {
            ServiceRunner.bootstrapLogging()
            var logger = Logger(label: "livesync.demo")
            if json { logger.logLevel = .warning }
            var config = DemoConfiguration()
            config.shape = session.shape
            config.viaKafka = viaKafka
            config.concurrency = concurrency
            config.killStockAfter = killStockAfter
            config.settleTimeoutSeconds = settleTimeout
            config.dataDirectory = dataDir
            config.synchronous = synchronous
            config.alerting = !noAlerting
            config.isolated = isolated
            config.erp = erp
            config.killErpAfter = killErpAfter
            config.restartErpServerAfter = restartErpAfter
            config.pullStockAfter = pullStockAfter
            config.erpDrainTimeoutSeconds = erpDrainTimeout
            if erp == nil && (killErpAfter != nil || restartErpAfter != nil || pullStockAfter != nil) {
                throw ValidationError("--kill-erp-after, --restart-erp-after and --pull-stock-after need --erp")
            }
            let summary = try await DevHarness.Demo.run(config, logger: logger)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(summary), as: UTF8.self))
            } else {
                print(DevHarness.Demo.render(summary))
            }
            if !summary.passed { throw ExitCode(1) }
        }
    }

    struct Chaos: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replays a live session while consumers are SIGKILLed, scaled 1→3→1, disks lost and the broker fails; checks every invariant.",
            discussion: "Exits non-zero when any order is lost or doubled, any SKU is oversold or its stock not conserved, the changelog does not restore to the live store, or a message is left unconsumed.")

        @Option(help: "Orders in the session.") var orders = 100_000
        @Option(help: "Mean arrival rate in orders/s (the faults are spread over the session).") var rate = 1_500.0
        @Option(help: "Random seed (same seed, same session and fault choices).") var seed: UInt64 = 42
        @Option(help: "Most stock and dispatch instances while scaled out.") var maxInstances = 3
        @Flag(help: "Publish straight into Kafka instead of through ingest's HTTP.") var viaKafka = false
        @Flag(help: "No broker faults.") var noBrokerFaults = false
        @Flag(help: "Never give a stock or dispatch instance an empty disk.") var noDiskLoss = false
        @Option(help: "Seconds to wait for every order to settle after the replay.") var settleTimeout = 300.0
        @Option(help: "State and logs (reset at start).") var dataDir = "var/chaos"
        @Flag(help: "Print the report as one JSON object (last line).") var json = false
        @Flag(help: "Run each instance as on a host of its own: its own data directory (mode 0700; as root, its own user) and environment, nothing shared but the broker's and the read model's addresses.") var isolated = false

        func validate() throws {
            guard orders > 0 else { throw ValidationError("--orders must be positive") }
            guard rate > 0 else { throw ValidationError("--rate must be positive: the faults are spread over the session's duration") }
            guard (2...9).contains(maxInstances) else { throw ValidationError("--max-instances must be 2...9") }
        }

        func run() async throws {
            ServiceRunner.bootstrapLogging()
            var logger = Logger(label: "livesync.chaos")
            logger.logLevel = .warning
            var config = ChaosConfiguration()
            config.shape.orders = orders
            config.shape.ratePerSecond = rate
            config.shape.seed = seed
            config.maxInstances = maxInstances
            config.viaKafka = viaKafka
            config.brokerFaults = !noBrokerFaults
            config.loseDisks = !noDiskLoss
            config.settleTimeoutSeconds = settleTimeout
            config.dataDirectory = dataDir
            config.isolated = isolated
            let report = try await DevHarness.Chaos.run(config, logger: logger)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(DevHarness.Chaos.render(report))
            }
            if !report.passed { throw ExitCode(1) }
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay a live session (synthetic or recorded JSONL) into a running cluster.")

        @OptionGroup var session: SessionOptions
        @Option(help: "cluster.json written by `livesync dev`.") var cluster = "var/dev/cluster.json"
        @Option(help: "Kafka bootstrap servers (overrides cluster.json).") var bootstrap: String?
        @Option(help: "Ingest base URL (overrides cluster.json).") var ingestURL: String?
        @Option(help: "shop=secret;… for signing (overrides cluster.json).") var shops: String?
        @Flag(help: "Publish straight into Kafka instead of through ingest's HTTP.") var viaKafka = false
        @Option(help: "Replay this recorded session (JSONL) instead of a synthetic one.") var file: String?
        @Option(help: "Write the session as JSONL here and exit without sending.") var record: String?
        @Option(help: "Concurrent HTTP requests (a live session's many buyers; ingest answers after Kafka acknowledged, so throughput is about concurrency / ack latency).") var concurrency = 256
        @Flag(help: "Do not publish the session's initial stock.") var noStock = false
        @Option(help: "Fake platform API for --platforms orders (overrides cluster.json).") var platformAPIURL: String?

        func run() async throws {
            ServiceRunner.bootstrapLogging()
            let logger = Logger(label: "livesync.replay")
            let records = try file.map(SessionGenerator.load) ?? SessionGenerator.generate(session.shape)
            if let record {
                try SessionGenerator.save(records, to: record)
                print("wrote \(records.count) records to \(record)")
                return
            }
            let info = try? ClusterInfo.load(cluster)
            guard let bootstrap = bootstrap ?? info?.bootstrap else {
                throw ValidationError("no Kafka bootstrap: start `livesync dev` (writes \(cluster)) or pass --bootstrap")
            }
            var shopSecrets = info?.shops ?? [:]
            if let shops {
                // Same format as ingest's `ingest.shops`.
                shopSecrets = try ShopCredentials.parseList(shops).mapValues(\.secret)
            }
            let target: ReplayTarget
            if viaKafka {
                target = .kafka
            } else {
                guard let url = ingestURL ?? info?.ingestURL else { throw ValidationError("no ingest URL: pass --ingest-url or start `livesync dev`") }
                target = .http(ingestURL: url, shops: shopSecrets)
            }
            let producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: bootstrap))
            defer { producer.close() }
            var sender = ReplaySender(target: target, producer: producer, logger: logger)
            sender.concurrency = concurrency
            sender.platformAPIURL = platformAPIURL ?? info?.platformAPIURL
            if !noStock {
                let loaded = try await sender.publishStock(records, sessionID: try file.map(SessionGenerator.sessionID(ofRecording:)) ?? "replay-\(session.seed)")
                // A live session starts once the shelves are stocked: on `livesync dev`, wait until stock
                // applied the load, or the first orders would race it and be rejected.
                if let info, bootstrap == info.bootstrap, let bookURL = info.bookURL {
                    try await DevHarness.Demo.waitForStockLoad(book: BookClient(baseURL: bookURL), expected: loaded.count, timeout: 60)
                }
            }
            let result = try await sender.send(records)
            let seconds = result.finishedAt.timeIntervalSince(result.startedAt)
            print("accepted \(result.accepted.count) orders and \(result.refundsAccepted) refunds in \(String(format: "%.1f", seconds)) s (\(Int(Double(result.accepted.count) / max(seconds, 0.001))) orders/s); refused \(result.refused), failed \(result.failed)")
            if result.failed > 0 { throw ExitCode(1) }
        }
    }

    struct CreateTopics: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-topics",
            abstract: "Create LiveSync's topics on a real Kafka cluster (CreateTopics) and check their partition counts.")
        @Option(help: "Kafka bootstrap servers.") var bootstrap: String
        @Option(help: "Partitions of each keyed topic (co-partitioned topics must match).") var partitions: Int32 = Topics.partitions
        @Option(help: "Replication factor.") var replication: Int32 = 3
        @Option(help: "Extra librdkafka properties, k=v,k=v (security.protocol, sasl.*).") var properties: String?

        func run() async throws {
            let props = try KafkaConfiguration.parseProperties(properties ?? "", source: "--properties")
            let admin = try KafkaAdmin(configuration: KafkaConfiguration(bootstrapServers: bootstrap, properties: props))
            let specs = Topics.all(partitions: partitions, replicationFactor: replication)
            try admin.createTopics(specs)
            let counts = try admin.partitionCounts(specs.map(\.name))
            var mismatch = false
            for spec in specs {
                let have = counts[spec.name]
                print("\(spec.name): \(have.map(String.init) ?? "missing") partitions (want \(spec.partitions))")
                if have != spec.partitions { mismatch = true }
            }
            if mismatch {
                print("partition counts differ: SKU- and order-keyed topics must be co-partitioned; fix them before starting consumers")
                throw ExitCode(1)
            }
        }
    }

    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Benchmarks (figures for docs/performance.md).", subcommands: [Stock.self, LoadGen.self])

        struct Stock: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Lines of one hot SKU per second through livesync-stock, durably (SQLite commit + offsets + published reservations).")
            @Option(help: "Lines to preload and apply.") var lines = 300_000
            @Option(help: "PRAGMA synchronous (FULL or NORMAL).") var synchronous = "FULL"
            @Option(help: "Most lines per batch transaction.") var maxBatch = 50_000
            @Option(help: "Working directory (reset).") var dataDir = "var/bench-stock"
            @Flag(help: "Print the result as JSON.") var json = false

            func run() async throws {
                ServiceRunner.bootstrapLogging()
                var bench = StockBenchmark()
                bench.lines = lines
                bench.synchronous = synchronous
                bench.maxBatch = maxBatch
                bench.dataDirectory = dataDir
                let r = try await bench.run(logger: Logger(label: "livesync.bench"))
                if json {
                    print(String(decoding: try JSONEncoder().encode(r), as: UTF8.self))
                } else {
                    print("livesync-stock applied \(r.lines) lines of one SKU in \(String(format: "%.2f", r.seconds)) s: \(Int(r.lines_per_sec)) lines/s (synchronous=\(r.synchronous); reserved \(r.reserved), rejected \(r.rejected), reservations published \(r.reservations_published))")
                }
            }
        }
        struct LoadGen: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "loadgen",
                abstract: "Requests per second the replay's HTTP load generator offers, and its CPU per request, against a local sink answering 200.",
                discussion: "The requests are the demo's signed generic webhooks, built before the clock starts and sent over the same keep-alive connection pool as `livesync demo` and `livesync replay`.")
            @Option(help: "Orders of the synthetic session (refunds come on top).") var orders = 100_000
            @Option(help: "Keep-alive connections (the demo and replay use --concurrency, 256).") var connections = 256
            @Option(help: "Requests in flight per connection (HTTP/1.1 pipelining; 1: one at a time, as against ingest).") var pipelineDepth = 1
            @Option(help: "Event-loop threads of the load generator.") var threads = 1
            @Flag(help: "Print the result as JSON.") var json = false

            func run() async throws {
                ServiceRunner.bootstrapLogging()
                var bench = LoadGenBenchmark()
                bench.orders = orders
                bench.connections = connections
                bench.pipelineDepth = pipelineDepth
                bench.threads = threads
                let r = try await bench.run()
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    print(String(decoding: try encoder.encode(r), as: UTF8.self))
                } else {
                    print("""
                    load generator: \(r.requests) requests (\(r.accepted) answered 200, \(r.failed) failed) over \(r.connections) connections × \(r.pipeline_depth) in \(String(format: "%.2f", r.seconds)) s: \(Int(r.requests_per_sec)) requests/s
                      CPU per request: load generator \(r.load_generator_cpu_us_per_request) µs, sink \(r.sink_cpu_us_per_request) µs, whole process \(r.process_cpu_us_per_request) µs
                      prepared (built and signed) before the clock in \(r.prepare_seconds) s, \(r.request_bytes / 1024) KiB
                    """)
                }
            }
        }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Gracefully restart one process of a running `livesync dev`.")
        @Argument(help: "Process name (ingest, stock, dispatch, book, alerting, channels, or stock-N / dispatch-N with instances).") var name: String
        @Option(help: "cluster.json written by `livesync dev`.") var cluster = "var/dev/cluster.json"
        func run() async throws { try await admin(cluster, "/processes/\(name)/restart") }
    }

    struct Kill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "SIGKILL one process of a running `livesync dev` (it is restarted).")
        @Argument(help: "Process name.") var name: String
        @Option(help: "cluster.json written by `livesync dev`.") var cluster = "var/dev/cluster.json"
        func run() async throws { try await admin(cluster, "/processes/\(name)/kill") }
    }
}

extension LiveSyncCommand {
    struct Dlq: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dlq", abstract: "Shows and re-drives the dead-letter topic.", subcommands: [List.self, Replay.self])

        struct Target: ParsableArguments {
            @Option(help: "cluster.json written by `livesync dev`.") var cluster = "var/dev/cluster.json"
            @Option(help: "Kafka bootstrap servers (overrides cluster.json).") var bootstrap: String?
            @Option(help: "Extra librdkafka properties, k=v,k=v (security.protocol, sasl.*).") var properties: String?

            func kafka() throws -> KafkaConfiguration {
                let servers = try bootstrap ?? ClusterInfo.load(cluster).bootstrap
                return KafkaConfiguration(bootstrapServers: servers, properties: try KafkaConfiguration.parseProperties(properties ?? "", source: "--properties"))
            }
        }

        struct List: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Lists every dead letter: id, source topic/partition/offset, group, error.")
            @OptionGroup var target: Target
            @Option(help: "Only those of this consumer group.") var group: String?
            @Flag(help: "One JSON object per line.") var json = false

            func run() async throws {
                var (entries, undecodable) = try DeadLetters.list(bootstrap: try target.kafka())
                if let group { entries = entries.filter { $0.consumerGroup == group } }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    for e in entries { print(String(decoding: try encoder.encode(e), as: UTF8.self)) }
                } else {
                    print(DeadLetters.render(entries))
                }
                if undecodable > 0 { FileHandle.standardError.write(Data("\(undecodable) records on the dead-letter topic are not dead letters (skipped)\n".utf8)) }
            }
        }

        struct Replay: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Publishes dead letters' original bytes to their source topics again (fix the cause first).",
                discussion: "Consumers drop what they already applied, so replaying an entry twice changes nothing. An entry that fails again is dead-lettered again.")
            @OptionGroup var target: Target
            @Option(name: .customLong("id"), help: "A dead letter's id (partition:offset from `dlq list`); repeat for several.") var ids: [String] = []
            @Option(help: "Every dead letter of this consumer group.") var group: String?
            @Flag(help: "Every dead letter.") var all = false

            func validate() throws {
                guard all || group != nil || !ids.isEmpty else { throw ValidationError("say which: --id P:O (repeatable), --group NAME or --all") }
            }

            func run() async throws {
                let kafka = try target.kafka()
                let (entries, _) = try DeadLetters.list(bootstrap: kafka)
                var chosen = entries
                if !ids.isEmpty {
                    let known = Set(entries.map(\.id))
                    let unknown = ids.filter { !known.contains($0) }
                    if !unknown.isEmpty { throw DeadLetterError.unknownIDs(unknown) }
                    chosen = entries.filter { ids.contains($0.id) }
                }
                if let group { chosen = chosen.filter { $0.consumerGroup == group } }
                let producer = try KafkaProducer(configuration: kafka)
                defer { producer.close() }
                try DeadLetters.replay(chosen, producer: producer)
                print("replayed \(chosen.count) dead letters to their source topics")
            }
        }
    }
}

extension LiveSyncCommand {
    struct Scale: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Runs N instances of stock or dispatch in a running `livesync dev` (new stock instances start on an empty disk).")
        @Argument(help: "stock or dispatch.") var kind: String
        @Argument(help: "Instances, 1...9.") var count: Int
        @Option(help: "cluster.json written by `livesync dev`.") var cluster = "var/dev/cluster.json"

        func validate() throws {
            guard kind == "stock" || kind == "dispatch" else { throw ValidationError("kind must be stock or dispatch") }
            guard (1...9).contains(count) else { throw ValidationError("count must be 1...9") }
        }

        func run() async throws { try await admin(cluster, "/scale/\(kind)/\(count)") }
    }
}

func admin(_ clusterFile: String, _ path: String) async throws {
    let info = try ClusterInfo.load(clusterFile)
    guard let base = info.adminURL else { throw ValidationError("\(clusterFile) has no admin URL: is `livesync dev` running?") }
    var request = HTTPClientRequest(url: base + path)
    request.method = .POST
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
    let body = try await response.body.collect(upTo: 1 << 16)
    print(String(buffer: body))
    if response.status.code != 200 { throw ExitCode(1) }
}

extension LiveSyncCommand {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every process announced on livesync.instances (or at the given --endpoint URLs): health, partitions, lag, last batch. Exits 1 unless all are ready, 2 if the topic cannot be read.")
        @Option(help: "Data directory of the cluster (its cluster.json gives the bootstrap for `livesync dev`). Default: dataDir of --config, else var/dev.") var dataDir: String?
        @Option(help: "JSON configuration file of the cluster (kafka.*, telemetry.instanceMaxAgeMs).") var config: String?
        @Option(help: "Kafka bootstrap servers (overrides cluster.json and the configuration).") var bootstrap: String?
        @Option(name: .customLong("endpoint"), help: "An instance's telemetry base URL, http://host:port (repeat it): asks these instead of discovering them through Kafka.") var endpoints: [String] = []
        @Flag(help: "Print the rows as JSON.") var json = false

        func run() async throws {
            for url in endpoints where URL(string: url)?.host == nil || !url.hasPrefix("http") {
                throw ValidationError("--endpoint \(url) is not an http(s) URL with a host (e.g. http://10.0.0.5:9100)")
            }
            let rows: [ProcessStatusRow]
            if endpoints.isEmpty {
                let settings = try await LiveSyncConfig(file: config)
                var directory = try settings.instanceDirectory()
                directory.kafka.bootstrapServers = clusterBootstrap(bootstrap, dataDir: dataDir ?? settings.optionalString("dataDir") ?? "var/dev")
                    ?? directory.kafka.bootstrapServers
                do {
                    rows = try await ProcessStatus.collect(discovering: InstanceDirectory(directory))
                } catch {
                    // Exit 2, not 1: nothing is known about the processes.
                    FileHandle.standardError.write(Data("cannot read \(Topics.instances) from \(directory.kafka.bootstrapServers): \(error) (pass --bootstrap, or --endpoint URLs)\n".utf8))
                    throw ExitCode(2)
                }
            } else {
                rows = await ProcessStatus.collect(endpoints: endpoints)
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                print(String(decoding: try encoder.encode(rows), as: UTF8.self))
            } else {
                print(ProcessStatus.render(rows, now: Clock.nowMicros()))
            }
            if rows.isEmpty || rows.contains(where: { !$0.isReady }) { throw ExitCode(1) }
        }
    }
}

/// The bootstrap an operator command uses: `--bootstrap`, else that of the `livesync dev`
/// cluster whose `cluster.json` is in `dataDir`, else nil (the configuration's `kafka.bootstrap`).
func clusterBootstrap(_ bootstrap: String?, dataDir: String) -> String? {
    bootstrap ?? (try? ClusterInfo.load("\(dataDir)/cluster.json"))?.bootstrap
}

extension LiveSyncCommand {
    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Consistency inspection: topics vs the read model's stock store and ERP book (placed orders booked, stock conserved per SKU, no offset gap). Exits 1 on a mismatch.")
        @Option(help: "Data directory of a `livesync dev` cluster: its cluster.json gives the bootstrap, the read model's and alerting's URLs. Default: dataDir of --config, else var/dev.") var dataDir: String?
        @Option(help: "JSON configuration file of the cluster (kafka.*, book.url, alerting.url).") var config: String?
        @Option(help: "Kafka bootstrap servers (overrides cluster.json and the configuration).") var bootstrap: String?
        @Option(help: "The read model's URL, http://host:port (overrides book.url and cluster.json).") var bookUrl: String?
        @Option(help: "Alerting's telemetry URL, to check its stored positions too (overrides alerting.url and cluster.json; without any, they are not checked).") var alertingUrl: String?
        @Option(help: "Seconds of recent activity treated as in flight rather than as a mismatch.") var grace = 30.0
        @Flag(help: "Print the report as JSON.") var json = false

        func run() async throws {
            let settings = try await LiveSyncConfig(file: config)
            var kafka = try settings.kafka()
            let dir = dataDir ?? settings.optionalString("dataDir") ?? "var/dev"
            let cluster = try? ClusterInfo.load("\(dir)/cluster.json")
            if let bootstrap {
                kafka.bootstrapServers = bootstrap
            } else if let cluster {
                kafka.bootstrapServers = cluster.bootstrap
            }
            let views = try ViewEndpoints(bookOption: bookUrl, alertingOption: alertingUrl, settings: settings, cluster: cluster, clusterFile: "\(dir)/cluster.json")
            let report = try await Inspector.run(InspectionConfiguration(
                kafka: kafka, book: views.book, alertingPositions: views.alertingURL.map { .url($0) }, graceSeconds: grace))
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
            } else {
                print(report.render())
            }
            if !report.passed { throw ExitCode(1) }
        }
    }
}

/// Where `livesync inspect` and `livesync dashboard` find the read model and alerting: the
/// command's option, else the setting (`book.url`, `alerting.url`), else the `livesync dev`
/// cluster's cluster.json. No file of another process is opened.
struct ViewEndpoints {
    let book: BookClient
    let alertingURL: String?

    init(bookOption: String?, alertingOption: String?, settings: LiveSyncConfig, cluster: ClusterInfo?, clusterFile: String) throws {
        for (option, value) in [("--book-url", bookOption), ("--alerting-url", alertingOption)] {
            if let value, !BookClient.isHTTPURL(value) { throw ValidationError("\(option) \(value) is not an http(s) URL with a host (e.g. http://10.0.0.5:8090)") }
        }
        if let url = bookOption ?? settings.optionalString("book.url").flatMap({ $0.isEmpty ? nil : $0 }) ?? cluster?.bookURL {
            guard BookClient.isHTTPURL(url) else { throw ValidationError("book.url \(url) is not an http(s) URL with a host (e.g. http://book:8090)") }
            book = BookClient(baseURL: url)
        } else {
            throw ValidationError("""
                book.url is not set: pass --book-url http://host:port, set book.url (\(LiveSyncConfig.environmentName("book.url"))) or give the \
                data directory of a `livesync dev` cluster whose \(clusterFile) names its read model
                """)
        }
        alertingURL = try alertingOption ?? settings.optionalAlertingClient?.baseURL ?? cluster?.alertingURL
    }
}

extension LiveSyncCommand {
    struct DashboardCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dashboard",
            abstract: "Serve the live dashboard (orders, sync times, stock, rejections, lag, alerts) from the read model, alerting and the processes' announcements.")
        @Option(help: "Data directory of a `livesync dev` cluster: its cluster.json gives the broker, the read model's and alerting's URLs.") var dataDir = "var/dev"
        @Option(help: "JSON configuration file (book.url, alerting.url, kafka.*).") var config: String?
        @Option(help: "Kafka bootstrap servers, where the processes announce themselves (overrides cluster.json and the configuration).") var bootstrap: String?
        @Option(help: "The read model's URL, http://host:port (overrides book.url and cluster.json).") var bookUrl: String?
        @Option(help: "Alerting's telemetry URL (overrides alerting.url and cluster.json; without any, alerts and late orders alerting found are not shown).") var alertingUrl: String?
        @Option(help: "Listen address.") var host = "127.0.0.1"
        @Option(help: "Listen port (0: any free port).") var port = 8090
        @Option(help: "Seconds after which a waiting order is listed as beyond the SLA.") var slaSeconds = 5.0
        @Option(help: "Refresh period of the figures, in milliseconds.") var refreshMs = 5_000

        func run() async throws {
            ServiceRunner.bootstrapLogging()
            let logger = Logger(label: "livesync.dashboard")
            let settings = try await LiveSyncConfig(file: config)
            var directory = try settings.instanceDirectory()
            directory.kafka.bootstrapServers = clusterBootstrap(bootstrap, dataDir: dataDir) ?? directory.kafka.bootstrapServers
            let views = try ViewEndpoints(bookOption: bookUrl, alertingOption: alertingUrl, settings: settings,
                                          cluster: try? ClusterInfo.load("\(dataDir)/cluster.json"), clusterFile: "\(dataDir)/cluster.json")
            if views.alertingURL == nil { logger.notice("alerting.url is not set: the page shows no alerts and no late orders alerting found") }
            let app = DashboardApp.make(
                configuration: DashboardConfiguration(book: views.book, alerting: views.alertingURL.map { AlertingClient(baseURL: $0) },
                                                      instances: InstanceDirectory(directory, logger: logger),
                                                      slaSeconds: slaSeconds, refreshMilliseconds: refreshMs),
                host: host, port: port, logger: logger)
            try await ServiceRunner.run([app], logger: logger)
        }
    }
}
