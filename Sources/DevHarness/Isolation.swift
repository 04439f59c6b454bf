import Foundation

/// Checks that isolated instances keep to their own data directories (`--isolated`): what each
/// running instance has open, read from `/proc/<pid>/fd`.
public enum Isolation {
    /// Files under the cluster's directory that an instance has open outside its own
    /// (`<dataDir>/hosts/<instance>`), as "instance: path". The logs, which the supervisor opens
    /// and hands to the child as its stdout and stderr, are not the instance's doing.
    public static func foreignFilesOpen(_ cluster: DevCluster) -> [String] {
        guard cluster.configuration.isolated else { return [] }
        let root = URL(fileURLWithPath: cluster.configuration.dataDirectory).standardizedFileURL.path
        let logs = root + "/logs/"
        var found: [String] = []
        for child in cluster.supervisor.status where child.pid > 0 {
            let own = URL(fileURLWithPath: cluster.dataDirectory(of: child.name)).standardizedFileURL.path + "/"
            let fdDir = "/proc/\(child.pid)/fd"
            for fd in (try? FileManager.default.contentsOfDirectory(atPath: fdDir)) ?? [] {
                guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDir)/\(fd)"),
                      target.hasPrefix(root + "/"), !target.hasPrefix(logs), !target.hasPrefix(own) else { continue }
                found.append("\(child.name): \(target)")
            }
        }
        return found
    }

    /// Each instance directory with its mode and owner, for the operator ("name mode uid").
    public static func directories(_ cluster: DevCluster) -> [String] {
        let hosts = "\(cluster.configuration.dataDirectory)/hosts"
        return ((try? FileManager.default.contentsOfDirectory(atPath: hosts)) ?? []).sorted().map { name in
            var st = stat()
            guard stat("\(hosts)/\(name)", &st) == 0 else { return "\(name) ?" }
            return "\(name) \(String(st.st_mode & 0o777, radix: 8)) uid \(st.st_uid)"
        }
    }
}
