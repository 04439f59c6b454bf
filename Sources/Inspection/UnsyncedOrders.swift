import Bootstrap
import Foundation
import Kafka
import Model
import ReadModel
import Worker

/// Orders ingested before a cutoff that the ERP book has not decided yet (synced, rejected or
/// cancelled), found without keeping any state per order, from the read model (`livesync-book`)
/// and `orders.placed`:
///
/// - orders dispatch holds, waiting for their lines' stock decisions (`dispatch_pending_orders`
///   in the read model's copy of the book);
/// - orders on `orders.placed` that dispatch had not read: from the position dispatch committed
///   with the partition's latest entry the read model replicated (same entry as the decisions
///   the copy holds) to the partition's end, read in offset order until the first order within
///   the cutoff.
///
/// Both come from one read of the copy, so an order dispatch had read is either decided there or
/// pending there and nothing falls between the two; an order dispatch read after that entry is
/// counted as not read until the copy catches up (a moment; the cutoff is seconds). An order
/// dispatch dead-lettered (invalid) is reported by `dead_letters`.
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

/// Finds `UnsyncedOrders` on each call; keeps one topic reader between calls. The topic reads
/// block and run off the cooperative pool; calls are serialised there.
public final class UnsyncedOrderFinder: @unchecked Sendable {
    /// The read model: the orders dispatch holds and dispatch's replicated positions.
    public let book: BookClient
    /// Without it, only the orders dispatch holds are found.
    public let kafka: KafkaConfiguration?
    public let dispatchGroup: String
    public let partitions: Int32
    /// Guards `reader`, `head` and `reads` (held only inside the blocking topic read).
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

    public init(book: BookClient, kafka: KafkaConfiguration?, dispatchGroup: String = "livesync-dispatch", partitions: Int32 = Topics.partitions) {
        self.book = book
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
    /// Cancelling the calling task (or a graceful shutdown) stops the topic read (`StoppedOnRequest`).
    public func find(cutoff: Int64, listed: Int, readLimit: Int = 10_000) async throws -> UnsyncedOrders {
        var result = UnsyncedOrders()
        // One read of the copy: the pending orders and the positions they were read up to agree.
        let snapshot = try await book.snapshot(BookQuery(waitingIngestedBefore: cutoff, waitingLimit: listed, positions: kafka != nil))
        result.waitingForStock = snapshot.waitingCount ?? 0
        var late = (snapshot.oldestWaiting ?? []).map { UnsyncedOrders.Late(orderID: $0.orderID, ingestedAtUs: $0.ingestedAtUs) }
        if kafka != nil {
            var stored: [Int32: Int64] = [:]
            for p in snapshot.positions ?? [] where p.group == dispatchGroup && p.topic == Topics.ordersPlaced { stored[p.partition] = p.next }
            let positions = stored
            let (found, capped) = try await runBlocking { stop in
                try self.readUnread(after: positions, cutoff: cutoff, readLimit: readLimit, stop: stop)
            }
            var unread = found
            // A redelivered order may be decided, or pending (counted above), from its first copy.
            if !unread.isEmpty {
                let known = try await book.known(unread.map(\.orderID), includingPending: true)
                unread.removeAll { known.contains($0.orderID) }
            }
            result.capped = capped
            result.notReadByDispatch = unread.count
            late += unread
        }
        result.oldest = Array(late.sorted { ($0.ingestedAtUs, $0.orderID) < ($1.ingestedAtUs, $1.orderID) }.prefix(listed))
        return result
    }

    /// The orders on `orders.placed` beyond `stored` (dispatch's positions) ingested before
    /// `cutoff`, each once, and whether `readLimit` cut the read short. Blocking.
    func readUnread(after stored: [Int32: Int64], cutoff: Int64, readLimit: Int, stop: StopRequest) throws -> ([UnsyncedOrders.Late], Bool) {
        guard let kafka else { return ([], false) }
        lock.lock()
        defer { lock.unlock() }
        if reader == nil { reader = try KafkaPartitionReader(configuration: kafka) }
        let reader = reader!
        var unread: [UnsyncedOrders.Late] = []
        var seen: Set<String> = []
        var budget = readLimit
        var capped = false
        do {
            for p in 0..<partitions where budget > 0 {
                if stop.isRequested { throw StoppedOnRequest() }
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
                    if stop.isRequested { throw StoppedOnRequest() }
                    guard let order = try? Order(serializedBytes: message.value), !order.orderID.isEmpty else { return budget > 0 }  // dispatch dead-letters it
                    guard order.ingestedAtUs < cutoff else {
                        head[p] = (message.offset, order.ingestedAtUs)
                        return false
                    }
                    if seen.insert(order.orderID).inserted { unread.append(.init(orderID: order.orderID, ingestedAtUs: order.ingestedAtUs)) }
                    if budget == 0 { capped = true }
                    return budget > 0
                })
            }
        } catch {
            // A broker that does not answer: a new reader next time.
            self.reader = nil
            throw error
        }
        return (unread, capped)
    }
}
