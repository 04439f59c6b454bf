import DevHarness
import Foundation
import Testing

@Suite struct ReplayTests {
    /// A recording's stock load is published under ids derived from the recording itself: a
    /// second, different recording replayed into the same cluster is not dropped as a duplicate
    /// of the first one's load, and the same recording replayed twice loads once.
    @Test func eachRecordingGetsItsOwnStockLoadIds() throws {
        let dir = temporaryDirectory("replay-ids")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var shape = SessionShape()
        shape.orders = 20
        shape.seed = 42
        let first = SessionGenerator.generate(shape)
        shape.seed = 43
        let second = SessionGenerator.generate(shape)
        try SessionGenerator.save(first, to: dir + "/a.jsonl")
        try SessionGenerator.save(second, to: dir + "/b.jsonl")
        try SessionGenerator.save(first, to: dir + "/a-again.jsonl")
        let a = try SessionGenerator.sessionID(ofRecording: dir + "/a.jsonl")
        #expect(a != (try SessionGenerator.sessionID(ofRecording: dir + "/b.jsonl")))
        #expect(a == (try SessionGenerator.sessionID(ofRecording: dir + "/a-again.jsonl")))
        #expect(throws: (any Error).self) { _ = try SessionGenerator.sessionID(ofRecording: dir + "/missing.jsonl") }
    }
}
