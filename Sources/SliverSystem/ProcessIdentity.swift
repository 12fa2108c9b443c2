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
        guard let stat = try? FileSystem.readFile("/proc/\(pid)/stat", limit: 4096),
              let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // Fields after the command name (which may contain spaces and parentheses) start at 3:
        // " S ppid ...": the state is field 3, the start time field 22, i.e. the 20th after it.
        // Parsed as bytes: this runs on every login and every liveness check.
        var field = 0
        var state: UInt8 = 0
        var start: UInt64 = 0
        var index = stat.index(after: close)
        while index < stat.endIndex {
            let byte = stat[index]
            index += 1
            if byte == UInt8(ascii: " ") {
                field += 1
                if field > 20 { break }
                continue
            }
            if field == 1 && state == 0 { state = byte }
            if field == 20 {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                start = start * 10 + UInt64(byte - UInt8(ascii: "0"))
            }
        }
        guard field >= 20, state != UInt8(ascii: "Z"), state != UInt8(ascii: "X") else { return nil }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// True when this exact process still runs.
    public var isAlive: Bool { ProcessIdentity.of(pid: pid) == self }
}
