import Bootstrap
import ErpBookStore
import Foundation
import GRDB
import Kafka
import Model
import Worker

/// Orders ingested before a cutoff that the ERP book has not decided yet (synced, rejected or
/// cancelled), found without keeping any state per order:
///
/// - orders dispatch holds, waiting for their lines' stock decisions (`dispatch_pending_orders`
///   in the ERP book);
/// - orders on `orders.placed` that dispatch has not read yet: from the position dispatch stored
///   with its last batch (`consumer_offsets` in the ERP book, same transaction as its decisions)
///   to the partition's end, read in offset order until the first order within the cutoff.
///
/// An order dispatch has read is either decided in the book or pending there, so nothing falls
/// between the two; an order dispatch dead-lettered (invalid) is reported by `dead_letters`.
public struct UnsyncedOrders: Sendable, Equatable {
    public struct Late: Sendable, Equatable, Codable {
        public var orderID: String
        public var ingestedAtUs: Int64
        public init(orderID: String, ingestedAtUs: Int64) {
            self.orderID = orderID
            self.ingestedAtUs = ingestedAtUs
        }
    }

    /// Late orders: exact, unless `capped` (then at least this many).
    public var count: Int { waitingForStock + notReadByDispatch }
    /// Orders dispatch holds for their stock decisions.
    public var waitingForStock = 0
    /// Orders on `orders.placed` beyond dispatch's stored position.
    public var notReadByDispatch = 0
    /// `orders.placed` had more late orders than one look reads: `count` is a lower bound.
    public var capped = false
    /// The oldest late orders, oldest first.
    public var oldest: [Late] = []

    public init() {}
}

/// Finds `UnsyncedOrders` on each call; keeps one topic reader between calls.
/// Blocking (SQLite, Kafka): call it off the cooperative pool; calls are serialised.
public final class UnsyncedOrderFinder: @unchecked Sendable {
    public let erpDatabase: String
    /// Without it, only the orders dispatch holds are found.
    public let kafka: KafkaConfiguration?
    public let dispatchGroup: String
    public let partitions: Int32
    private let lock = NSLock()
    private var reader: KafkaPartitionReader?
    /// Per partition, the first order a read found beyond dispatch's position: its offset and ingest time.
    private var head: [Int32: (offset: Int64, ingestedAtUs: Int64)] = [:]
    /// How far ingest times may run out of offset order within a partition (several ingest
    /// instances, producer batching). Default 1 s.
    public let reorderMicros: Int64 = 1_000_000
    /// Partition reads so far (each walks the partition's log on the embedded broker).
    public var partitionReads: Int { lock.withLock { reads } }
    private var reads = 0

    public init(erpDatabase: String, kafka: KafkaConfiguration?, dispatchGroup: String = "livesync-dispatch", partitions: Int32 = Topics.partitions) {
        self.erpDatabase = erpDatabase
        var kafka = kafka
        if var k = kafka {
            // Reads a few orders at the head of each partition: no prefetch beyond them (on the
            // embedded broker every fetch walks the partition's whole log).
            k.properties["queued.min.messages"] = k.properties["queued.min.messages"] ?? "1"
            k.properties["max.partition.fetch.bytes"] = k.properties["max.partition.fetch.bytes"] ?? "65536"
            kafka = k
        }
        self.kafka = kafka
        self.dispatchGroup = dispatchGroup
        self.partitions = partitions
    }

    /// - Parameters:
    ///   - cutoff: orders ingested before it (Unix µs) are late.
    ///   - listed: how many of the oldest to return.
    ///   - readLimit: at most this many messages read from `orders.placed` per call.
    ///   - stop: checked between partitions and messages; a requested stop throws `StoppedOnRequest`.
    public func find(cutoff: Int64, listed: Int, readLimit: Int = 10_000, stop: StopRequest? = nil) throws -> UnsyncedOrders {
        lock.lock()
        defer { lock.unlock() }
        var result = UnsyncedOrders()
        var late: [UnsyncedOrders.Late] = []
        var stored: [Int32: Int64] = [:]
        var erp: ErpBookView?
        if let book = try ErpBookView.ifPresent(path: erpDatabase) {
            erp = book
            // One read transaction: the pending orders and the positions they were read up to agree.
            try book.read { r in
                let waiting = try r.waitingForStock(ingestedBefore: cutoff, limit: listed)
                result.waitingForStock = waiting.count
                late += waiting.oldest.map { .init(orderID: $0.orderID, ingestedAtUs: $0.ingestedAtUs) }
                for position in try r.positions(group: dispatchGroup, topic: Topics.ordersPlaced) {
                    stored[position.partition.partition] = position.next
                }
            }
        }
        if let kafka {
            if reader == nil { reader = try KafkaPartitionReader(configuration: kafka) }
            let reader = reader!
            var unread: [UnsyncedOrders.Late] = []
            var seen: Set<String> = []
            var budget = readLimit
            do {
                for p in 0..<partitions where budget > 0 {
                    if stop?.isRequested == true { throw StoppedOnRequest() }
                    let tp = TopicPartition(Topics.ordersPlaced, p)
                    let (low, high) = try reader.watermarks(tp)
                    let start = max(stored[p] ?? low, low)
                    guard start < high else { head[p] = nil; continue }
                    // Orders are appended in ingest order (give or take `reorderMicros`): when an
                    // earlier read found, at or before `start`, an order still within the cutoff,
                    // every unread order is too, and this partition needs no read.
                    if let seen = head[p], seen.offset <= start, seen.ingestedAtUs - reorderMicros >= cutoff { continue }
                    head[p] = nil
                    reads += 1
                    try reader.read(tp, from: start, timeoutMilliseconds: 10_000, while: { (message: KafkaMessage) -> Bool in
                        budget -= 1
                        if stop?.isRequested == true { throw StoppedOnRequest() }
                        guard let order = try? Order(serializedBytes: message.value), !order.orderID.isEmpty else { return budget > 0 }  // dispatch dead-letters it
                        guard order.ingestedAtUs < cutoff else {
                            head[p] = (message.offset, order.ingestedAtUs)
                            return false
                        }
                        if seen.insert(order.orderID).inserted { unread.append(.init(orderID: order.orderID, ingestedAtUs: order.ingestedAtUs)) }
                        if budget == 0 { result.capped = true }
                        return budget > 0
                    })
                }
            } catch {
                // A broker that does not answer: a new reader next time.
                self.reader = nil
                throw error
            }
            // A redelivered order may be decided, or pending (counted above), from its first copy.
            if !unread.isEmpty, let erp {
                let known = try erp.read { try $0.known(unread.map(\.orderID), includingPending: true) }
                unread.removeAll { known.contains($0.orderID) }
            }
            result.notReadByDispatch = unread.count
            late += unread
        }
        result.oldest = Array(late.sorted { ($0.ingestedAtUs, $0.orderID) < ($1.ingestedAtUs, $1.orderID) }.prefix(listed))
        return result
    }
}
