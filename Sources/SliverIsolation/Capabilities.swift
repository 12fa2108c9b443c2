import CCap

/// A set of Linux capabilities as the 64-bit mask the kernel uses.
public struct CapabilitySet: Sendable, Equatable, CustomStringConvertible {
    public var mask: UInt64

    public init(mask: UInt64) { self.mask = mask }

    /// Parses names like "CAP_CHOWN" or "chown" (case-insensitive) with libcap.
    public init(names: [String]) throws(IsolationError) {
        var mask: UInt64 = 0
        for name in names {
            let lower = name.lowercased()
            let full = lower.hasPrefix("cap_") ? lower : "cap_" + lower
            var value: cap_value_t = 0
            guard cap_from_name(full, &value) == 0, value >= 0, value < 64 else {
                throw IsolationError(.invalidArgument, stage: "capabilities", "unknown capability \"\(name)\"")
            }
            mask |= 1 << UInt64(value)
        }
        self.mask = mask
    }

    public var names: [String] {
        (0..<64).compactMap { bit -> String? in
            guard mask & (1 << UInt64(bit)) != 0 else { return nil }
            guard let name = cap_to_name(cap_value_t(bit)) else { return "cap_\(bit)" }
            defer { cap_free(name) }
            return String(cString: name).uppercased()
        }
    }

    public var hex: String { "0x" + String(mask, radix: 16) }
    public var description: String { names.joined(separator: ",") }

    /// What a sliver keeps by default: enough for a root user to manage its own files, users and
    /// services inside its namespaces, and nothing that reaches the kernel or other slivers.
    public static let sliverDefault = try! CapabilitySet(names: [
        "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
        "NET_BIND_SERVICE", "SYS_CHROOT", "AUDIT_WRITE", "SETFCAP",
    ])

    /// Never granted to a sliver, whatever the configuration says: raw packets and network
    /// configuration go through the broker, mounts and namespaces through the daemon, and the
    /// rest reaches hardware, the clock, the kernel log, BPF or the security modules.
    public static let forbidden = try! CapabilitySet(names: [
        "NET_RAW", "NET_ADMIN", "SYS_ADMIN", "SYS_MODULE", "SYS_RAWIO", "SYS_TIME", "SYS_BOOT",
        "MKNOD", "DAC_READ_SEARCH", "SYSLOG", "BPF", "PERFMON", "MAC_OVERRIDE", "MAC_ADMIN",
    ])
}
