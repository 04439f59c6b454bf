/// Kafka's default partitioner hash (Java `Utils.murmur2`), bit for bit.
///
/// librdkafka's `murmur2_random` partitioner uses the same function, so a key produced by
/// LiveSync lands in the partition a Java producer would choose.
public enum Murmur2 {
    /// The signed 32-bit hash exactly as Java returns it.
    public static func hash<Bytes: Collection>(_ data: Bytes) -> Int32 where Bytes.Element == UInt8 {
        let bytes = Array(data)
        let length = bytes.count
        let seed: UInt32 = 0x9747_b28c
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = seed ^ UInt32(truncatingIfNeeded: length)
        let length4 = length / 4
        for i in 0..<length4 {
            let i4 = i * 4
            var k = UInt32(bytes[i4]) | (UInt32(bytes[i4 + 1]) << 8) | (UInt32(bytes[i4 + 2]) << 16) | (UInt32(bytes[i4 + 3]) << 24)
            k = k &* m
            k ^= k >> r
            k = k &* m
            h = h &* m
            h ^= k
        }
        let tail = length & ~3
        switch length % 4 {
        case 3:
            h ^= UInt32(bytes[tail + 2]) << 16
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h = h &* m
        case 2:
            h ^= UInt32(bytes[tail + 1]) << 8
            h ^= UInt32(bytes[tail])
            h = h &* m
        case 1:
            h ^= UInt32(bytes[tail])
            h = h &* m
        default:
            break
        }
        h ^= h >> 13
        h = h &* m
        h ^= h >> 15
        return Int32(bitPattern: h)
    }

    /// The partition Java's `DefaultPartitioner` picks for a non-null key.
    public static func partition(forKey key: String, partitionCount: Int32) -> Int32 {
        precondition(partitionCount > 0, "partition count must be positive")
        let positive = hash(Array(key.utf8)) & 0x7fff_ffff
        return positive % partitionCount
    }
}
