import Kafka
import Testing

/// Reference values from Apache Kafka's `UtilsTest.testMurmur2` (Java's `Utils.murmur2`).
@Test(arguments: [
    ("21", Int32(-973_932_308)),
    ("foobar", Int32(-790_332_482)),
    ("a-little-bit-long-string", Int32(-985_981_536)),
    ("a-little-bit-longer-string", Int32(-1_486_304_829)),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", Int32(-58_897_971)),
    ("abc", Int32(479_470_107)),
])
func murmur2MatchesJavaReferenceValues(key: String, expected: Int32) {
    #expect(Murmur2.hash(Array(key.utf8)) == expected)
}

@Test func partitionIsPositiveHashModuloPartitionCount() {
    // toPositive(-973932308) = 1173551340; 1173551340 % 16 = 12
    #expect(Murmur2.partition(forKey: "21", partitionCount: 16) == 12)
    for key in ["SKU-1", "SKU-HOT", "", "商品-001"] {
        let p = Murmur2.partition(forKey: key, partitionCount: 7)
        #expect((0..<7).contains(p))
    }
}
