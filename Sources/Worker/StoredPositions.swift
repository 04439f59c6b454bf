import GRDB
import Kafka

/// Where a consumer group's members stand, as a state database stores it (`consumer_offsets`,
/// `changelog_heads`): the one read API for them, so no other module writes SQL on these tables.
public struct StoredPosition: Sendable, Hashable {
    public var group: String
    public var partition: TopicPartition
    /// The next offset the group reads from this partition.
    public var next: Int64

    public init(group: String, partition: TopicPartition, next: Int64) {
        self.group = group
        self.partition = partition
        self.next = next
    }
}

extension StateStore {
    /// The positions a state database holds, optionally of one group and one topic, ordered by
    /// group, topic and partition. A database no consumer has opened yet holds none.
    public static func storedPositions(_ db: Database, group: String? = nil, topic: String? = nil) throws -> [StoredPosition] {
        guard try db.tableExists("consumer_offsets") else { return [] }
        var sql = "SELECT group_id, topic, partition, next_offset FROM consumer_offsets"
        var conditions: [String] = []
        var arguments: StatementArguments = []
        if let group { conditions.append("group_id = ?"); arguments += [group] }
        if let topic { conditions.append("topic = ?"); arguments += [topic] }
        if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
        return try Row.fetchAll(db, sql: sql + " ORDER BY group_id, topic, partition", arguments: arguments)
            .map { StoredPosition(group: $0[0], partition: TopicPartition($0[1], $0[2]), next: $0[3]) }
    }

    /// The sequence number of each partition's last changelog entry this database committed, for `group`.
    public static func changelogSequences(_ db: Database, group: String) throws -> [Int32: Int64] {
        guard try db.tableExists("changelog_heads") else { return [:] }
        var result: [Int32: Int64] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT partition, seq FROM changelog_heads WHERE group_id = ?", arguments: [group]) {
            result[row[0]] = row[1]
        }
        return result
    }

    /// Forgets every group's position on `topics` (a consumer that stopped reading them): the
    /// next member to subscribe starts from the beginning or its own restore.
    public static func forgetPositions(_ db: Database, topics: [String]) throws {
        guard !topics.isEmpty, try db.tableExists("consumer_offsets") else { return }
        try db.execute(sql: "DELETE FROM consumer_offsets WHERE topic IN (\(databaseQuestionMarks(count: topics.count)))",
                       arguments: StatementArguments(topics))
    }
}
