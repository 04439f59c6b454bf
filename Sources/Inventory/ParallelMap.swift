import Dispatch
import Foundation

/// Maps a large array on every core, in contiguous chunks, preserving order: for the pure,
/// CPU-bound steps of a batch (decoding, encoding) while the SQLite part stays on one thread.
public enum ParallelMap {
    public static func map<T: Sendable, R: Sendable>(_ input: [T], minimumChunk: Int = 1024, _ transform: @escaping @Sendable (T) -> R) -> [R] {
        let n = input.count
        let chunks = min(ProcessInfo.processInfo.activeProcessorCount, n / minimumChunk)
        guard chunks > 1 else { return input.map(transform) }
        return [R](unsafeUninitializedCapacity: n) { buffer, count in
            let out = UncheckedPointer(base: buffer.baseAddress!)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                // Each chunk initialises its own disjoint index range.
                for i in (c * n / chunks)..<((c + 1) * n / chunks) {
                    (out.base + i).initialize(to: transform(input[i]))
                }
            }
            count = n
        }
    }

    private struct UncheckedPointer<R>: @unchecked Sendable {
        let base: UnsafeMutablePointer<R>
    }
}
