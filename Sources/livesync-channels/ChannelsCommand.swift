import Channels
import Bootstrap
import ArgumentParser
import AsyncHTTPClient
import Connectors
import Kafka
import Model
import Worker

/// Channel sync: pushes each SKU's allocated stock to the platforms' shops and writes shipments back.
@main
struct ChannelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livesync-channels",
        abstract: "Pushes stock levels to each channel's SKUs (allocation, safety stock, coalesced, rate-limited) and writes shipments back, with retries and dead letters.")

    @Option(help: "JSON configuration file (environment variables LIVESYNC_* take precedence).")
    var config: String?

    func run() async throws {
        try await ConsumerMain.run(
            name: "channels", group: "livesync-channels", topics: [Topics.stockReservations], companionTopics: [Topics.shipmentsShipped], configFile: config,
            extraServices: { settings, store, logger in
                let channels = try ChannelsConfiguration.load(settings)
                let clients = try ChannelClients.configured(settings, client: .shared)
                for channel in channels.channels.keys where clients[channel.platform] == nil {
                    logger.warning("no write-back client configured for this channel: its stock pushes and shipments will be dead-lettered",
                                   metadata: ["channel": "\(channel.platform.slug):\(channel.shopID)"])
                }
                let dispatcher = OutboundDispatcher(
                    queue: try OutboundQueue(database: store.database), clients: clients, tokens: channels.tokens,
                    configuration: channels.outbound, deadLetterProducer: try KafkaProducer(configuration: settings.kafka(), logger: logger), logger: logger)
                return [OutboundService(dispatcher: dispatcher)]
            }
        ) { settings in
            let channels = try ChannelsConfiguration.load(settings)
            return ChannelStockProcessor(channels: channels.channels, skuMap: channels.skuMap)
        }
    }
}
