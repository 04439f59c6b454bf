import ArgumentParser
import Bootstrap
import DevHarness
import ErpSync
import Foundation

extension LiveSyncCommand {
    /// `livesync erp …`: the ERP targets' queues, their pending queue (待处理队列) and stock pulls,
    /// through the instances' HTTP APIs found on `livesync.instances`.
    struct Erp: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "ERP sync: status, pending orders (待处理队列), re-drive, stock pull.",
            subcommands: [StatusCommand.self, Pending.self, Retry.self, PullStock.self])

        struct Options: ParsableArguments {
            @Option(help: "Data directory of the cluster (its cluster.json gives the bootstrap for `livesync dev`). Default: dataDir of --config, else var/dev.") var dataDir: String?
            @Option(help: "JSON configuration file of the cluster (kafka.*).") var config: String?
            @Option(help: "Kafka bootstrap servers (overrides cluster.json and the configuration).") var bootstrap: String?
            @Option(help: "Only this ERP target (erp.target of its livesync-erp instances).") var target: String?
            @Option(name: .customLong("endpoint"), help: "A livesync-erp instance's telemetry base URL (repeat it): asks these instead of discovering them through Kafka.") var endpoints: [String] = []

            func client() async throws -> ErpClient {
                if !endpoints.isEmpty { return ErpClient(urls: endpoints) }
                let settings = try await LiveSyncConfig(file: config)
                var directory = try settings.instanceDirectory()
                directory.kafka.bootstrapServers = clusterBootstrap(bootstrap, dataDir: dataDir ?? settings.optionalString("dataDir") ?? "var/dev")
                    ?? directory.kafka.bootstrapServers
                let client = try await ErpClient.discover(InstanceDirectory(directory), target: target)
                guard !client.urls.isEmpty else {
                    throw ValidationError("no livesync-erp instance\(target.map { " of target \($0)" } ?? "") is announced on livesync.instances at \(directory.kafka.bootstrapServers)")
                }
                return client
            }
        }

        struct StatusCommand: AsyncParsableCommand {
            static let configuration = CommandConfiguration(commandName: "status", abstract: "Each ERP instance's queue, pending count, write rate and drain ETA.")
            @OptionGroup var options: Options
            @Flag(help: "Print JSON.") var json = false
            func run() async throws {
                let rows = try await options.client().status()
                if json { try printJSON(rows) } else { print(ErpClient.render(rows)) }
            }
        }

        struct Pending: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Orders the ERP refused (待处理队列), with the ERP's code and reason.")
            @OptionGroup var options: Options
            @Flag(help: "Print JSON.") var json = false
            func run() async throws {
                let rows = try await options.client().pending()
                if json { try printJSON(rows) } else { print(ErpClient.render(pending: rows)) }
            }
        }

        struct Retry: AsyncParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Re-drives pending orders after the cause was fixed (e.g. the material added in the ERP).")
            @OptionGroup var options: Options
            @Option(help: "Only this order id (or ERP reference); default: every pending order.") var order: String?
            @Flag(help: "Re-drive every pending order (required when --order is not given).") var all = false
            func run() async throws {
                guard order != nil || all else { throw ValidationError("name the order (--order <id>) or re-drive everything (--all)") }
                let n = try await options.client().retry(order: order)
                print("re-driven: \(n) order(s) back in the ERP queue")
            }
        }

        struct PullStock: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Reads the ERP's stock now and publishes it as stock snapshots (available = ERP available − reservations the ERP has not recorded).")
            @OptionGroup var options: Options
            func run() async throws {
                let n = try await options.client().pullStock()
                print("published \(n) SKU-warehouse level(s) from the ERP")
            }
        }
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
