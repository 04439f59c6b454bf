import ArgumentParser
import Bootstrap
import ErpSync
import Model
import Worker

/// ERP sync: writes decided orders into the merchant's ERP at the pace it can take, and pulls its stock back.
@main
struct ErpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-erp",
        abstract: "Writes decided orders into the merchant's ERP (Kingdee, Yonyou, Jushuitan, Odoo, Tryton, webhook) in batches, exactly once, and pulls its stock back.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        let erp = try ErpSyncConfiguration.load(try await LiveSyncConfig(file: config))
        try await ConsumerMain.run(
            name: "erp", group: erp.group, topics: [Topics.orderOutcomes], companionTopics: [Topics.shipmentsShipped], configFile: config,
            addOns: { parts in
                let adapter = try ErpAdapterSettings.adapter(kind: erp.kind, settings: parts.config)
                let consumer = parts.consumer
                let writer = ErpWriter(
                    target: erp.target, adapter: adapter, mapping: erp.mapping, configuration: erp.writer, database: parts.store.database,
                    owned: { Set(consumer.statistics.partitions.keys.filter { $0.topic == Topics.orderOutcomes }.map(\.partition)) },
                    consumerLag: { consumer.statistics.lag },
                    logger: parts.logger)
                let pull = adapter.capabilities.contains(.stock)
                    ? ErpStockPull(target: erp.target, adapter: adapter, mapping: erp.mapping, producer: parts.producer) : nil
                parts.logger.info("ERP target", metadata: ["target": "\(erp.target)", "kind": "\(erp.kind)", "send": "\(erp.send.map(\.rawValue).sorted())",
                                                         "trigger": "\(erp.writer.trigger)", "batchSize": "\(writer.adapter.maxBatchSize)"])
                return ConsumerAddOns(
                    services: [ErpWriterService(writer: writer, pull: pull, pullInterval: erp.stockPullInterval, logger: parts.logger)],
                    routes: { ErpSyncAPI.addRoutes(to: $0, writer: writer, pull: pull) })
            }
        ) { _ in ErpOutcomeProcessor(send: erp.send) }
    }
}
