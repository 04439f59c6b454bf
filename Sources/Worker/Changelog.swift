import Foundation
import Model

/// Identifies a changelog entry: who committed it and where it sits in its partition's chain.
public struct ChangelogHead: Hashable, Sendable, CustomStringConvertible {
    public var writer: String
    public var seq: Int64

    public init(writer: String, seq: Int64) {
        self.writer = writer
        self.seq = seq
    }

    public var description: String { "\(writer)#\(seq)" }
}

extension ChangelogEntry {
    public var head: ChangelogHead { ChangelogHead(writer: writer, seq: seq) }
    /// The entry this one follows; `nil` for the first entry of a chain.
    public var previous: ChangelogHead? { prevSeq == 0 ? nil : ChangelogHead(writer: prevWriter, seq: prevSeq) }
}

/// Picks, from one changelog partition's entries in log order, the chain of batches the store
/// actually committed in sequence.
///
/// The log can hold more than that chain: an entry published twice (an outbox republished after
/// a crash), an entry that arrived after its successor (a retried delivery), or a short fork
/// left by a member that lost the partition without knowing it while its outbox was still
/// being delivered. The chain is the longest path of `previous` links from a root (an entry
/// with no predecessor, or whose predecessor retention already dropped); on a tie the path
/// reaching the later-written tip wins. Every member computes the same chain from the same log.
public enum ChangelogChain {
    /// Payload bytes per Kafka message: a larger batch delta is split into parts (the broker
    /// refuses messages over `message.max.bytes`, 1 MB by default).
    public static let maxPartBytes = 512 * 1024

    /// Splits an entry whose payload exceeds `maxPartBytes` into consecutive parts.
    public static func split(_ entry: ChangelogEntry) -> [ChangelogEntry] {
        let payload = entry.payload
        guard payload.count > maxPartBytes else { return [entry] }
        let parts = (payload.count + maxPartBytes - 1) / maxPartBytes
        return (0..<parts).map { i in
            var part = entry
            let start = payload.startIndex + i * maxPartBytes
            part.payload = payload[start..<min(payload.endIndex, start + maxPartBytes)]
            part.part = Int32(i)
            part.parts = Int32(parts)
            return part
        }
    }

    /// Joins split entries back together, in the log order in which each became complete;
    /// an entry missing a part (its writer died mid-publication) is left out. Repeated parts
    /// (a republished outbox) count once.
    public static func assemble(_ records: [ChangelogEntry]) -> [ChangelogEntry] {
        var result: [ChangelogEntry] = []
        var pending: [ChangelogHead: [Int32: ChangelogEntry]] = [:]
        var done: Set<ChangelogHead> = []
        for r in records {
            guard r.parts > 1 else { result.append(r); continue }
            let head = r.head
            guard !done.contains(head) else { continue }
            pending[head, default: [:]][r.part] = r
            if pending[head]!.count == Int(r.parts) {
                var whole = r
                whole.payload = Data(pending[head]!.sorted { $0.key < $1.key }.flatMap { $0.value.payload })
                whole.part = 0
                whole.parts = 1
                result.append(whole)
                pending[head] = nil
                done.insert(head)
            }
        }
        return result
    }

    public static func longest(_ entries: [ChangelogEntry]) -> [ChangelogEntry] {
        var byHead: [ChangelogHead: Int] = [:]
        var order: [Int] = []
        for (i, e) in entries.enumerated() where byHead[e.head] == nil {
            byHead[e.head] = i
            order.append(i)
        }
        var children: [ChangelogHead: [Int]] = [:]
        var roots: [Int] = []
        for i in order {
            let e = entries[i]
            if let prev = e.previous, byHead[prev] != nil {
                children[prev, default: []].append(i)
            } else {
                roots.append(i)
            }
        }
        // Depth of the longest path below each entry, computed leaves-first without recursion.
        // Links always point to a lower seq, so visiting by descending seq sees children first.
        var depth: [Int: Int] = [:]
        var bestChild: [Int: Int] = [:]
        for i in order.sorted(by: { entries[$0].seq > entries[$1].seq }) {
            var d = 1
            var best: Int?
            for c in children[entries[i].head] ?? [] {
                let cd = (depth[c] ?? 1) + 1
                if cd > d || (cd == d && best.map { tipIndex(c, bestChild) > tipIndex($0, bestChild) } ?? true) {
                    d = cd
                    best = c
                }
            }
            depth[i] = d
            if let best { bestChild[i] = best }
        }
        guard var at = roots.max(by: { (depth[$0]!, tipIndex($0, bestChild)) < (depth[$1]!, tipIndex($1, bestChild)) }) else { return [] }
        var chain = [entries[at]]
        while let next = bestChild[at] {
            chain.append(entries[next])
            at = next
        }
        return chain
    }

    /// Log position of the tip a path from `i` ends at (to break ties towards the newest write).
    private static func tipIndex(_ i: Int, _ bestChild: [Int: Int]) -> Int {
        var at = i
        while let next = bestChild[at] { at = next }
        return at
    }
}
