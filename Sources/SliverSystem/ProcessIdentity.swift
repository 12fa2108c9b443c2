#if canImport(Glibc)
import Glibc
#endif

/// A process named by its pid *and* its start time (field 22 of /proc/PID/stat, in clock ticks
/// since boot): after a daemon restart a bare pid may have been reused by an unrelated process,
/// the pair cannot.
public struct ProcessIdentity: Codable, Sendable, Equatable, Hashable {
    public var pid: Int32
    public var startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// Reads the identity of a live process; nil if it is gone or a zombie (this machine's pid 1
    /// reaps orphans 1-2 s late, so a zombie counts as dead).
    public static func of(pid: Int32) -> ProcessIdentity? {
        guard let stat = try? FileSystem.readString("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name (which may contain spaces and parentheses) start at 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X",
              let start = UInt64(fields[19]) else { return nil }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// True when this exact process still runs.
    public var isAlive: Bool { ProcessIdentity.of(pid: pid) == self }
}
