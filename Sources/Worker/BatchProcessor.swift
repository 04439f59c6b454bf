import Dispatch
import Foundation
import GRDB
import Kafka
import Model

/// What a batch's processing produces, besides its state changes.
///
/// Outputs are written to the outbox in the batch's transaction and published after it
/// commits, so a crash can repeat an output (consumers drop duplicates) but never lose one.
public struct BatchOutput: Sendable {
    public internal(set) var messages: [ProducerMessage] = []
    public internal(set) var deadLetters = 0
    /// Each source partition's state delta of this batch (see `ChangelogProcessor`).
    public internal(set) var changelog: [Int32: [UInt8]] = [:]
    /// Counter increments to record once the batch commits (see `count`).
    public internal(set) var counts: [MetricKey: Int] = [:]
    /// Duration samples in nanoseconds to record once the batch commits (see `recordDuration`).
    public internal(set) var durations: [MetricKey: [Int64]] = [:]
    let group: String

    /// Adds `n` to a counter metric, recorded only if this batch commits. Call once per batch
    /// with a total rather than once per message.
    public mutating func count(_ key: MetricKey, by n: Int) {
        counts[key, default: 0] += n
    }

    /// Adds a duration sample (nanoseconds) to a histogram metric, recorded only if the batch commits.
    public mutating func recordDuration(_ key: MetricKey, nanoseconds: Int64) {
        durations[key, default: []].append(nanoseconds)
    }

    public init(group: String) { self.group = group }

    /// Publishes `value` to `topic` under `key` once the batch has committed.
    public mutating func emit(topic: String, key: String, value: [UInt8]) {
        messages.append(ProducerMessage(topic: topic, key: key, value: value))
    }

    /// Records the batch's state change for source partition `partition` (a `ChangelogProcessor`'s
    /// store-specific delta). The consumer wraps it in a chained `ChangelogEntry` with the
    /// partition's offsets and publishes it with the batch's outputs.
    public mutating func changelog(partition: Int32, payload: [UInt8]) {
        changelog[partition] = payload
    }

    /// Sends a message that cannot be decoded or applied to the dead-letter topic, with the
    /// error and where it came from; processing goes on with the next message.
    public mutating func deadLetter(_ message: KafkaMessage, error: String) {
        var dl = DeadLetter()
        dl.sourceTopic = message.topic
        dl.sourcePartition = message.partition
        dl.sourceOffset = message.offset
        dl.key = Data(message.key)
        dl.value = Data(message.value)
        dl.error = error
        dl.consumerGroup = group
        dl.failedAtUs = Clock.nowMicros()
        messages.append(ProducerMessage(topic: Topics.deadLetter, key: message.key, value: dl.bytes))
        deadLetters += 1
    }
}

/// The state logic of one consumer executable.
///
/// Lives on the consumer's thread. `apply` runs inside the batch's SQLite transaction; anything
/// it throws rolls the whole batch back (offsets included) and the batch is retried, so it must
/// keep no state outside the database that a rollback would leave behind.
public protocol BatchProcessor: AnyObject {
    /// Creates the processor's tables if missing; called once, before consuming.
    func prepare(_ db: Database) throws
    /// Applies the batch (messages from any assigned partitions, in offset order per partition).
    func apply(_ messages: [KafkaMessage], db: Database, output: inout BatchOutput) throws
}

/// A processor whose state can be rebuilt from a changelog topic, one chain of entries per
/// source partition (the sources are co-partitioned, so partition `p` of every source topic
/// shares changelog partition `p`).
///
/// Local SQLite stays the fast path; the changelog is what survives a lost disk and what a
/// member restores from when it gains a partition whose local copy is missing or behind.
public protocol ChangelogProcessor: BatchProcessor {
    /// The changelog topic: as many partitions as the source topics.
    var changelogTopic: String { get }
    /// Deletes every row of source partition `partition` (before a restore from scratch).
    func dropPartition(_ partition: Int32, db: Database) throws
    /// Applies one entry's payload, as `apply` produced it, to the local store. A processor whose
    /// entries are its inputs (it replays the batch) emits the batch's outputs into `output`; the
    /// consumer publishes them again for the chain's last entries and drops them for the rest.
    func restore(_ payload: [UInt8], partition: Int32, db: Database, output: inout BatchOutput) throws
    /// The outputs the batch behind a restored entry published, recreated from a state delta
    /// (re-emitted after a restore, since a writer that crashed with its disk may not have
    /// published them; consumers drop duplicates). A replaying processor, whose `restore` emits
    /// them already, adds nothing here.
    func outputs(ofRestored payload: [UInt8], partition: Int32, output: inout BatchOutput) throws
    /// Topics whose outputs `outputs(ofRestored:)` recreates exactly from the batch's entries: the
    /// outbox row stores the entries only and recreates these when it is republished (megabytes
    /// fewer written to SQLite per batch).
    var derivedOutputTopic: String? { get }
}
