import Foundation

/// A free TCP port on 127.0.0.1 (bound and released: another process may take it before the
/// caller binds it, which is acceptable for tests and `livesync dev`).
public enum FreePort {
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
    }

    public static func next() throws -> Int {
        let fd = socket(AF_INET, 1 /* SOCK_STREAM, on Linux and the BSDs */, 0)
        guard fd >= 0 else { throw Unavailable(description: "no socket for a free port: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw Unavailable(description: "could not bind a free port: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
