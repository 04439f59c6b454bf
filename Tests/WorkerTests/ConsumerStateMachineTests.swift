import Foundation
import Kafka
import Model
import Testing
@testable import Worker

/// Delivery handles are plain numbers here: the state machine only stores them.
typealias Machine = ConsumerStateMachine<Int>

private func machine(changelog: String? = nil, maxBatch: Int = 1_000, waitMs: UInt64 = 5, shutdownSeconds: UInt64 = 30) -> Machine {
    Machine(maxBatchSize: maxBatch, maxBatchWaitNanoseconds: waitMs * 1_000_000, changelogTopic: changelog,
            shutdownTimeoutNanoseconds: shutdownSeconds * 1_000_000_000)
}

private func message(_ topic: String, _ partition: Int32, _ offset: Int64) -> KafkaMessage {
    KafkaMessage(topic: topic, partition: partition, offset: offset, key: [], value: Array("\(topic)/\(partition)/\(offset)".utf8))
}

private func ids(_ messages: [KafkaMessage]) -> [String] { messages.map { "\($0.topic)[\($0.partition)]@\($0.offset)" } }

private func entry(_ writer: String, _ seq: Int64, after prev: (String, Int64)?, payload: String = "") -> ChangelogEntry {
    var e = ChangelogEntry()
    e.writer = writer
    e.seq = seq
    if let prev { e.prevWriter = prev.0; e.prevSeq = prev.1 }
    e.payload = Data(payload.utf8)
    return e
}

/// A linear chain `writer#1 ... writer#n`, as `ChangelogChain.longest` picks it from the log.
private func chain(_ writer: String, _ seqs: ClosedRange<Int64>) -> [ChangelogEntry] {
    ChangelogChain.longest(seqs.map { entry(writer, $0, after: $0 == 1 ? nil : (writer, $0 - 1), payload: "\(writer)\($0)") })
}

private func heads(_ entries: some Sequence<ChangelogEntry>) -> [String] { entries.map(\.head.description) }

private func produced(_ topic: String, _ value: String) -> ProducerMessage { ProducerMessage(topic: topic, key: "k", value: Array(value.utf8)) }

private func values(_ messages: [ProducerMessage]) -> [String] { messages.map { String(decoding: $0.value, as: UTF8.self) } }

private let t = "orders"
private let u = "adjustments"

// MARK: Restore on assignment

@Test func restoreRebuildsTheWholeChainWhenTheLocalCopyIsMissing() {
    let action = machine(changelog: "cl").restoreAction(partition: 3, local: nil, chain: chain("a", 1...3))
    guard case .rebuild(let entries, let tip) = action else { Issue.record("got \(action)"); return }
    #expect(heads(entries) == ["a#1", "a#2", "a#3"])
    #expect(tip == ChangelogHead(writer: "a", seq: 3))
}

@Test func restoreAppliesOnlyTheEntriesAfterALocalCopyThatIsBehind() {
    let log = chain("a", 1...2) + [entry("b", 3, after: ("a", 2), payload: "b3"), entry("b", 4, after: ("b", 3), payload: "b4")]
    let action = machine(changelog: "cl").restoreAction(partition: 0, local: ChangelogHead(writer: "a", seq: 2), chain: ChangelogChain.longest(log))
    guard case .applyTail(let entries, let tip) = action else { Issue.record("got \(action)"); return }
    #expect(heads(entries) == ["b#3", "b#4"])
    #expect(tip == ChangelogHead(writer: "b", seq: 4))
}

@Test func restoreRebuildsFromScratchWhenTheLocalCopyDivergedFromTheChain() {
    // The local store committed a#3, a fork the chain did not keep (b went on from a#2).
    let log = chain("a", 1...2) + [entry("b", 3, after: ("a", 2)), entry("b", 4, after: ("b", 3))]
    let action = machine(changelog: "cl").restoreAction(partition: 0, local: ChangelogHead(writer: "a", seq: 3), chain: ChangelogChain.longest(log))
    guard case .rebuild(let entries, let tip) = action else { Issue.record("got \(action)"); return }
    #expect(heads(entries) == ["a#1", "a#2", "b#3", "b#4"])
    #expect(tip == ChangelogHead(writer: "b", seq: 4))
}

@Test func restoreDoesNothingWhenTheLocalCopyIsAlreadyAtTheTip() {
    let action = machine(changelog: "cl").restoreAction(partition: 0, local: ChangelogHead(writer: "a", seq: 3), chain: chain("a", 1...3))
    #expect(action == .upToDate(ChangelogHead(writer: "a", seq: 3)))
    #expect(action.entries.isEmpty)
    #expect(action.republished.isEmpty)
}

@Test func restoreKeepsTheLocalStateWhenTheChangelogIsEmpty() {
    let action = machine(changelog: "cl").restoreAction(partition: 0, local: ChangelogHead(writer: "a", seq: 7), chain: [])
    #expect(action == .keepLocal(ChangelogHead(writer: "a", seq: 7)))
}

@Test func restoreWithNoLocalHeadAndAnEmptyChangelogStillRebuildsSoStrayRowsAreDropped() {
    let action = machine(changelog: "cl").restoreAction(partition: 0, local: nil, chain: [])
    #expect(action == .rebuild([], tip: nil))
}

@Test func restoreRefusesWhenRetentionDroppedTheChainsStart() {
    // a#1 and a#2 are gone: the log starts at a#3, which follows a#2.
    let log = ChangelogChain.longest([entry("a", 3, after: ("a", 2)), entry("a", 4, after: ("a", 3))])
    let expected = ChangelogStartDropped(changelog: TopicPartition("cl", 5), missing: ChangelogHead(writer: "a", seq: 2))
    let m = machine(changelog: "cl")
    #expect(m.restoreAction(partition: 5, local: nil, chain: log) == .refuse(expected))
    #expect(m.restoreAction(partition: 5, local: ChangelogHead(writer: "z", seq: 9), chain: log) == .refuse(expected))
    #expect(expected.description.contains("changelog cl[5] no longer holds the start of its chain (its first entry follows a#2, which is gone)"))
    // A local copy still on the surviving part of the chain only needs the tail: no refusal.
    guard case .applyTail(let entries, _) = m.restoreAction(partition: 5, local: ChangelogHead(writer: "a", seq: 3), chain: log) else {
        Issue.record("expected the tail to be applied"); return
    }
    #expect(heads(entries) == ["a#4"])
}

@Test func restoreRepublishesTheOutputsOfOnlyTheLastEightEntriesItApplies() {
    let m = machine(changelog: "cl")
    #expect(Machine.republishedEntries == 8)
    let rebuilt = m.restoreAction(partition: 0, local: nil, chain: chain("a", 1...12))
    #expect(heads(rebuilt.republished) == (5...12).map { "a#\($0)" })
    let tail = m.restoreAction(partition: 0, local: ChangelogHead(writer: "a", seq: 9), chain: chain("a", 1...12))
    #expect(heads(tail.republished) == ["a#10", "a#11", "a#12"])
    let launch = m.restoredLaunch(seq: 42, messages: [produced("cl", "entry"), produced("out", "o")])
    #expect(launch.seq == 42)
    #expect(launch.first.isEmpty)  // restored outputs are not staged behind anything
    #expect(values(launch.messages) == ["entry", "o"])
}

@Test func onlyPartitionsNotRestoredYetAreRestoredEvenIfRestoredWithoutAHead() {
    var m = machine(changelog: "cl")
    m.restored(partition: 0, head: nil)
    m.restored(partition: 2, head: ChangelogHead(writer: "a", seq: 1))
    let gained = [TopicPartition(t, 2), TopicPartition(u, 1), TopicPartition(t, 0), TopicPartition(t, 1), TopicPartition(u, 3)]
    #expect(m.partitionsToRestore(gained) == [1, 3])
}

@Test func assignedPartitionsStartAtTheStoredOffsetOrTheBeginning() {
    var m = machine()
    m.assigned([TopicPartition(t, 0), TopicPartition(t, 1)], stored: [TopicPartition(t, 1): 17, TopicPartition(t, 9): 3])
    #expect(m.next == [TopicPartition(t, 0): 0, TopicPartition(t, 1): 17])
}

// MARK: Changelog entries

@Test func aBatchsChangelogEntryFollowsThePartitionsHeadAndCarriesEveryTopicsNextOffset() {
    var m = machine(changelog: "cl")
    m.assigned([TopicPartition(t, 1), TopicPartition(u, 1), TopicPartition(t, 2)], stored: [TopicPartition(t, 1): 10, TopicPartition(u, 1): 4, TopicPartition(t, 2): 8])
    m.restored(partition: 1, head: ChangelogHead(writer: "a", seq: 6))
    m.restored(partition: 2, head: nil)
    let offsets: [TopicPartition: Int64] = [TopicPartition(t, 1): 12]
    #expect(m.changelogPartitions(offsets: offsets, deltas: [2: [1], 1: [2]]) == [1, 2])
    let e1 = m.changelogEntry(partition: 1, offsets: offsets, delta: [9, 9], writer: "g/b", now: 77)
    #expect(e1.head == ChangelogHead(writer: "g/b", seq: 7))
    #expect(e1.previous == ChangelogHead(writer: "a", seq: 6))
    #expect(e1.nextOffsets == [t: 12, u: 4])
    #expect(e1.payload == Data([9, 9]))
    #expect(e1.writtenAtUs == 77)
    let e2 = m.changelogEntry(partition: 2, offsets: offsets, delta: nil, writer: "g/b", now: 77)
    #expect(e2.head == ChangelogHead(writer: "g/b", seq: 1))
    #expect(e2.previous == nil)
    #expect(e2.nextOffsets == [t: 8])
    // Once committed, the next entry follows the new head.
    m.committed(Machine.Commit(messages: [], offsets: offsets), heads: [1: e1.head])
    #expect(m.changelogEntry(partition: 1, offsets: [:], delta: nil, writer: "g/b", now: 78).previous == e1.head)
    #expect(m.next[TopicPartition(t, 1)] == 12)
}

// MARK: Batches and duplicate filtering

@Test func reDeliveriesBelowNextAreNotAppliedAgain() {
    var m = machine()
    m.assigned([TopicPartition(t, 0)], stored: [TopicPartition(t, 0): 5])
    for o in Int64(3)...7 { m.received(message(t, 0, o), now: 0) }
    let commit = m.takeBatch()
    #expect(ids(commit?.messages ?? []) == ["orders[0]@5", "orders[0]@6", "orders[0]@7"])
    #expect(commit?.offsets == [TopicPartition(t, 0): 8])
    #expect(m.batch.isEmpty)
}

@Test func messagesOfPartitionsNoLongerOursAreNotApplied() {
    var m = machine()
    m.assigned([TopicPartition(t, 0)], stored: [:])
    m.received(message(t, 1, 0), now: 0)
    m.buffered(message(t, 0, 0))
    m.buffered(message(u, 0, 0))  // same partition number, another topic: not assigned
    let commit = m.takeBatch()
    #expect(ids(commit?.messages ?? []) == ["orders[0]@0"])
    #expect(commit?.offsets == [TopicPartition(t, 0): 1])
}

@Test func nextOffsetsAreComputedPerPartitionAcrossInterleavedRuns() {
    var m = machine()
    m.assigned([TopicPartition(t, 0), TopicPartition(t, 1), TopicPartition(u, 0)], stored: [TopicPartition(t, 1): 10])
    let polled = [message(t, 0, 0), message(t, 0, 1), message(t, 1, 10), message(u, 0, 4), message(t, 0, 2),
                  message(t, 1, 9), message(t, 1, 11), message(t, 0, 3)]
    for m2 in polled { m.buffered(m2) }
    let commit = m.takeBatch()
    #expect(ids(commit?.messages ?? []) == ["orders[0]@0", "orders[0]@1", "orders[1]@10", "adjustments[0]@4", "orders[0]@2", "orders[1]@11", "orders[0]@3"])
    #expect(commit?.offsets == [TopicPartition(t, 0): 4, TopicPartition(t, 1): 12, TopicPartition(u, 0): 5])
    // Nothing moves until the batch commits; then those offsets are next.
    #expect(m.next[TopicPartition(t, 1)] == 10)
    m.committed(commit!, heads: [:])
    #expect(m.next == [TopicPartition(t, 0): 4, TopicPartition(t, 1): 12, TopicPartition(u, 0): 5])
}

@Test func aBatchOfOnlyReDeliveriesCommitsNothingAndIsEmptied() {
    var m = machine()
    m.assigned([TopicPartition(t, 0)], stored: [TopicPartition(t, 0): 10])
    m.buffered(message(t, 0, 8))
    m.buffered(message(t, 0, 9))
    #expect(m.takeBatch() == nil)
    #expect(m.batch.isEmpty)
    #expect(m.takeBatch() == nil)
}

@Test func aBatchIsCommittedWhenFullOrOnceItsWaitIsOver() {
    var m = machine(maxBatch: 3, waitMs: 5)
    #expect(m.pollTimeoutMilliseconds(now: 0) == 100)
    #expect(m.afterPoll(now: 0) == .retireDelivered)
    m.received(message(t, 0, 0), now: 1_000_000_000)
    #expect(m.pollTimeoutMilliseconds(now: 1_002_000_000) == 3)
    #expect(m.afterPoll(now: 1_004_999_999) == .poll)
    #expect(m.afterPoll(now: 1_005_000_000) == .commitBatch)
    #expect(m.pollTimeoutMilliseconds(now: 1_009_000_000) == 0)
    // Less than a millisecond left waits a whole one: a poll(0) here would spin until the deadline.
    #expect(m.pollTimeoutMilliseconds(now: 1_004_600_000) == 1)
    #expect(m.pollTimeoutMilliseconds(now: 1_004_999_999) == 1)
    #expect(m.pollTimeoutMilliseconds(now: 1_002_500_000) == 3)
    // A later message does not move the batch's deadline.
    m.received(message(t, 0, 1), now: 1_004_000_000)
    #expect(m.afterPoll(now: 1_005_000_000) == .commitBatch)
    #expect(m.batchHasRoom)
    m.buffered(message(t, 0, 2))
    #expect(!m.batchHasRoom)
    #expect(m.afterPoll(now: 1_000_000_000) == .commitBatch)
}

// MARK: Revoke and lost

@Test func revokeCommitsTheBatchInHandIncludingTheRevokedPartitions() {
    var m = machine()
    m.assigned([TopicPartition(t, 0), TopicPartition(t, 1)], stored: [:])
    m.buffered(message(t, 0, 0))
    m.buffered(message(t, 1, 0))
    m.buffered(message(t, 1, 1))
    #expect(m.revoke([TopicPartition(t, 1)], lost: false) == .commitBatchAndSettle)
    let commit = m.takeBatch()
    #expect(ids(commit?.messages ?? []) == ["orders[0]@0", "orders[1]@0", "orders[1]@1"])
    #expect(commit?.offsets == [TopicPartition(t, 0): 1, TopicPartition(t, 1): 2])
    m.committed(commit!, heads: [:])
    m.forget([TopicPartition(t, 1)])
    #expect(m.next == [TopicPartition(t, 0): 1])
}

@Test func lostPartitionsPendingMessagesAreDroppedWithoutWriting() {
    var m = machine()
    m.assigned([TopicPartition(t, 0), TopicPartition(t, 1)], stored: [:])
    m.buffered(message(t, 0, 0))
    m.buffered(message(t, 1, 0))
    m.buffered(message(t, 0, 1))
    #expect(m.revoke([TopicPartition(t, 1)], lost: true) == .dropped)
    #expect(ids(m.batch) == ["orders[0]@0", "orders[0]@1"])
    m.forget([TopicPartition(t, 1)])
    let commit = m.takeBatch()
    #expect(commit?.offsets == [TopicPartition(t, 0): 2])
}

@Test func aCommitThatFailedOnRevokeLeavesTheRevokedMessagesToTheNewOwner() {
    var m = machine()
    m.assigned([TopicPartition(t, 0), TopicPartition(t, 1)], stored: [:])
    m.buffered(message(t, 1, 0))
    m.buffered(message(t, 0, 0))
    m.dropPending(of: [TopicPartition(t, 1)])
    #expect(ids(m.batch) == ["orders[0]@0"])
}

@Test func forgettingRevokedPartitionsKeepsTheHeadOfASourcePartitionStillHeldUnderAnotherTopic() {
    var m = machine(changelog: "cl")
    m.restored(partition: 0, head: ChangelogHead(writer: "a", seq: 1))
    m.restored(partition: 1, head: ChangelogHead(writer: "a", seq: 2))
    m.assigned([TopicPartition(t, 0), TopicPartition(u, 0), TopicPartition(t, 1)], stored: [:])
    m.forget([TopicPartition(t, 0), TopicPartition(t, 1)])
    #expect(m.next == [TopicPartition(u, 0): 0])
    #expect(m.heads[0] == .some(ChangelogHead(writer: "a", seq: 1)))
    #expect(m.heads[1] == nil)
    // Partition 1 comes back: it is restored again (its local copy may be behind by now).
    #expect(m.partitionsToRestore([TopicPartition(t, 1), TopicPartition(t, 0)]) == [1])
}

// MARK: Outbox retirement

private func launch(_ m: inout Machine, seq: Int64, delivery: Int) {
    m.track(m.launch(outputs: [produced("out", "\(seq)")], seq: seq)!, delivery: delivery)
}

private func waitsFor(_ action: Machine.SettleAction) -> Int? {
    if case .wait(let d) = action { return d }
    return nil
}

@Test func settlingWaitsOnlyForAnAcknowledgedFlightTooManyFlightsOrWhenToldToWaitForAll() {
    var m = machine()
    #expect(waitsFor(m.settleAction(waitForAll: true, isComplete: { _ in false })) == nil)
    for i in 1...4 { launch(&m, seq: Int64(10 * i), delivery: i) }
    // Four outstanding, none acknowledged: go on with the next batch.
    #expect(waitsFor(m.settleAction(waitForAll: false, isComplete: { _ in false })) == nil)
    #expect(waitsFor(m.settleAction(waitForAll: true, isComplete: { _ in false })) == 1)
    #expect(waitsFor(m.settleAction(waitForAll: false, isComplete: { $0 == 1 })) == 1)
    launch(&m, seq: 50, delivery: 5)
    #expect(waitsFor(m.settleAction(waitForAll: false, isComplete: { _ in false })) == 1)
}

@Test func aFailedOlderFlightBlocksTheRetirementOfLaterOnes() {
    var m = machine()
    for i in 1...3 { launch(&m, seq: Int64(10 * i), delivery: i) }
    // Flights 2 and 3 are acknowledged, 1 is not: nothing is retired.
    #expect(waitsFor(m.settleAction(waitForAll: false, isComplete: { $0 != 1 })) == nil)
    #expect(m.retiredOutboxSeq == nil)
    // 1 fails: it is published again, still first in line.
    guard case .republish(_, let messages, let attempt, let delay) = m.deliveryFailed(stopping: false) else { Issue.record("expected a republish"); return }
    #expect(values(messages) == ["10"])
    #expect(attempt == 1)
    #expect(delay == 200_000)
    m.republished(11)
    #expect(m.inFlight.map(\.seq) == [10, 20, 30])
    #expect(waitsFor(m.settleAction(waitForAll: false, isComplete: { $0 != 11 })) == nil)
    #expect(waitsFor(m.settleAction(waitForAll: false, isComplete: { _ in true })) == 11)
}

@Test func theRetiredSeqIsThatOfTheNewestFlightAcknowledgedInOrder() {
    var m = machine()
    for i in 1...3 { launch(&m, seq: Int64(10 * i), delivery: i) }
    let acknowledged: Set<Int> = [1, 2]
    while let d = waitsFor(m.settleAction(waitForAll: false, isComplete: { acknowledged.contains($0) })) {
        #expect(acknowledged.contains(d))
        m.delivered()
    }
    #expect(m.retiredOutboxSeq == 20)
    #expect(m.inFlight.map(\.seq) == [30])
    // The next batch's transaction deletes them; after it nothing is pending.
    m.committed(Machine.Commit(messages: [], offsets: [:]), heads: [:])
    #expect(m.retiredOutboxSeq == nil)
    m.delivered()
    #expect(m.retiredOutboxSeq == 30)
    m.outboxDeleted()
    #expect(m.retiredOutboxSeq == nil)
}

@Test func aFailedDeliveryIsRetriedWithAGrowingPauseUpToFiveSeconds() {
    var m = machine()
    launch(&m, seq: 1, delivery: 1)
    var delays: [UInt32] = []
    for _ in 1...30 {
        guard case .republish(_, _, _, let delay) = m.deliveryFailed(stopping: false) else { Issue.record("expected a republish"); return }
        delays.append(delay)
    }
    #expect(Array(delays.prefix(3)) == [200_000, 400_000, 600_000])
    #expect(delays.last == 5_000_000)
    #expect(m.inFlight.first?.attempts == 30)
}

@Test func onStopAFailedFlightAndEverythingAfterItStayInTheOutbox() {
    var m = machine()
    for i in 1...3 { launch(&m, seq: Int64(10 * i), delivery: i) }
    m.delivered()
    guard case .leaveInOutbox(let attempt) = m.deliveryFailed(stopping: true) else { Issue.record("expected to leave them"); return }
    #expect(attempt == 1)
    #expect(m.inFlight.isEmpty)
    #expect(m.retiredOutboxSeq == 10)  // only what was acknowledged is deleted
}

@Test func deliveryWaitsGiveUpOnlyOnceAStopIsOlderThanTheShutdownTimeout() {
    var m = machine(shutdownSeconds: 30)
    #expect(!m.shutdownTimedOut(now: .max / 2, stopRequestedAt: nil))
    #expect(!m.shutdownTimedOut(now: 29_999_999_999 + 5, stopRequestedAt: 5))
    #expect(m.shutdownTimedOut(now: 30_000_000_000 + 5, stopRequestedAt: 5))
    for i in 1...2 { launch(&m, seq: Int64(i), delivery: i) }
    m.delivered()
    m.leaveInFlightInOutbox()
    #expect(m.inFlight.isEmpty)
    #expect(m.retiredOutboxSeq == 1)
}

// MARK: Staging and republication after a crash

@Test func aBatchsChangelogEntriesArePublishedBeforeItsOutputs() {
    let outputs = [produced("out", "o1"), produced("cl", "e1"), produced("out", "o2"), produced("cl", "e2")]
    let staged = machine(changelog: "cl").launch(outputs: outputs, seq: 9)
    #expect(staged?.seq == 9)
    #expect(values(staged?.first ?? []) == ["e1", "e2"])
    #expect(values(staged?.messages ?? []) == ["o1", "o2"])
    let plain = machine().launch(outputs: outputs, seq: 9)
    #expect(plain?.first.isEmpty == true)
    #expect(values(plain?.messages ?? []) == ["o1", "e1", "o2", "e2"])
    #expect(machine().launch(outputs: [], seq: 9) == nil)
}

@Test func republicationAfterACrashSendsEveryRowAsOneFlightWithChangelogEntriesFirst() {
    let rows = [
        ConsumerStore.OutboxRow(seq: 4, messages: [produced("out", "o1"), produced("cl", "e1")]),
        ConsumerStore.OutboxRow(seq: 7, messages: [produced("cl", "e2"), produced("out", "o2")]),
    ]
    var seen: [String] = []
    let m = machine(changelog: "cl")
    let recovery = m.recovery(of: rows) { messages in
        seen = values(messages)
        return [produced("derived", "d1")]
    }
    #expect(seen == ["o1", "e1", "e2", "o2"])
    #expect(recovery?.seq == 7)
    #expect(values(recovery?.first ?? []) == ["e1", "e2"])
    #expect(values(recovery?.messages ?? []) == ["o1", "o2", "d1"])
    #expect(m.recovery(of: [], recreating: { _ in Issue.record("nothing to recreate"); return [] }) == nil)
}

@Test func committedOffsetsReachKafkaAtMostOnceASecondWithTheNewestOffsetPerPartition() {
    var m = machine()
    let a = TopicPartition("orders.lines", 0), b = TopicPartition("orders.lines", 1)
    m.assigned([a, b], stored: [:])
    let second: UInt64 = 1_000_000_000
    m.committed(Machine.Commit(messages: [], offsets: [a: 10]), heads: [:])
    #expect(m.offsetsForKafka(now: 5 * second, force: false) == [a: 10])
    // Two more batches within the second: nothing is written until it has passed.
    m.committed(Machine.Commit(messages: [], offsets: [a: 20, b: 3]), heads: [:])
    #expect(m.offsetsForKafka(now: 5 * second + 1, force: false) == nil)
    m.committed(Machine.Commit(messages: [], offsets: [a: 30]), heads: [:])
    #expect(m.offsetsForKafka(now: 5 * second + second / 2, force: false) == nil)
    #expect(m.offsetsForKafka(now: 6 * second, force: false) == [a: 30, b: 3])
    #expect(m.offsetsForKafka(now: 9 * second, force: false) == nil)  // nothing new: no request
}

@Test func aRevocationOrStopWritesTheOwedOffsetsAtOnceAndAForgottenPartitionsAreDropped() {
    var m = machine()
    let a = TopicPartition("orders.lines", 0), b = TopicPartition("orders.lines", 1)
    m.assigned([a, b], stored: [:])
    m.committed(Machine.Commit(messages: [], offsets: [a: 1]), heads: [:])
    _ = m.offsetsForKafka(now: 1_000_000_000, force: false)
    m.committed(Machine.Commit(messages: [], offsets: [a: 7, b: 4]), heads: [:])
    #expect(m.offsetsForKafka(now: 1_000_000_001, force: true) == [a: 7, b: 4])
    m.committed(Machine.Commit(messages: [], offsets: [a: 9, b: 5]), heads: [:])
    m.forget([b])  // lost: another member owns it now
    #expect(m.offsetsForKafka(now: 1_000_000_002, force: true) == [a: 9])
}

@Test func aBatchIsAlsoFullOnceItHoldsItsMostBytesSoLargeMessagesMakeSmallerBatches() {
    var m = Machine(maxBatchSize: 1_000, maxBatchBytes: 100, maxBatchWaitNanoseconds: 5_000_000, changelogTopic: nil, shutdownTimeoutNanoseconds: 1)
    m.assigned([TopicPartition(t, 0)], stored: [:])
    let big = { (offset: Int64) in KafkaMessage(topic: t, partition: 0, offset: offset, key: Array("k".utf8), value: [UInt8](repeating: 7, count: 39)) }
    m.received(big(0), now: 0)
    #expect(m.batchHasRoom && m.afterPoll(now: 1) == .poll)
    m.buffered(big(1))
    #expect(m.batchHasRoom)  // 80 bytes
    m.buffered(big(2))
    #expect(!m.batchHasRoom)  // 120: full before its wait is over
    #expect(m.afterPoll(now: 1) == .commitBatch)
    #expect(m.takeBatch()?.messages.count == 3)
    // The count starts again with the next batch.
    m.received(big(3), now: 2)
    #expect(m.batchHasRoom && m.afterPoll(now: 3) == .poll)
}
