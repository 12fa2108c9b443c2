import SliverIsolation
import SliverResources

/// The slice attributes of a sliver: PLCAPI's tag names with string values, one vocabulary from
/// `sliverctl --set` to PLC. Validated on entry, so a stored set is always well-formed.
public struct SliceAttributes: Codable, Sendable, Equatable {
    public private(set) var values: [String: String]

    public init() { values = [:] }

    public init(_ values: [String: String]) throws(NodeError) {
        self.values = [:]
        try merge(values)
    }

    public subscript(_ name: String) -> String? { values[name] }

    /// Validates and sets every attribute, or none (the first invalid one is reported).
    public mutating func merge(_ changes: [String: String]) throws(NodeError) {
        for (name, value) in changes.sorted(by: { $0.key < $1.key }) {
            try Self.validate(name, value)
        }
        for (name, value) in changes { values[name] = value }
    }

    public mutating func remove(_ name: String) { values[name] = nil }

    public init(from decoder: any Decoder) throws {
        values = try decoder.singleValueContainer().decode([String: String].self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(values)
    }

    // MARK: vocabulary

    enum Kind: Sendable {
        /// An integer in a closed range.
        case integer(ClosedRange<Int64>)
        /// "0" or "1".
        case flag
        /// cpu_cores: "N" or "Nb".
        case cores
        /// Free text (names of images and initscripts, code).
        case text
        /// An rlimit value: a non-negative integer, or "-1"/"unlimited".
        case rlimit
        /// A comma-separated subset of icmp, udp, tcp, gre ("" = none).
        case rawProtocols
    }

    /// Every attribute Sliverd knows, with its unit (PLCAPI's, see conf/sliverd.toml).
    static let vocabulary: [String: Kind] = {
        var v: [String: Kind] = [
            "enabled": .flag,
            "system": .flag,
            "cpu_share": .integer(1...1000),
            "cpu_pct": .integer(0...100),                       // % of the shared pool, guaranteed
            "cpu_cap": .integer(1...102_400),                   // Sliverd extension: % of one CPU, hard
            "cpu_cores": .cores,
            "cpu_freezable": .flag,
            "disk_max": .integer(0...Int64(1) << 40),           // KiB, 0 = no limit
            "disk_inodes_max": .integer(0...Int64(1) << 32),    // Sliverd extension, 0 = no limit
            "memlock_hard": .integer(1024...Int64(1) << 40),    // KiB -> memory limit
            "memlock_soft": .integer(1024...Int64(1) << 40),    // KiB -> memory soft limit
            "pids_max": .integer(16...4_194_304),               // Sliverd extension
            "net_min_rate": .integer(0...10_000_000),           // kbit/s
            "net_max_rate": .integer(8...10_000_000),
            "net_share": .integer(1...1000),
            "net_i2_min_rate": .integer(0...10_000_000),
            "net_i2_max_rate": .integer(8...10_000_000),
            "net_i2_share": .integer(1...1000),
            "net_max_kbyte": .integer(0...Int64(1) << 40),       // KiB per day
            "net_thresh_kbyte": .integer(0...Int64(1) << 40),
            "net_i2_max_kbyte": .integer(0...Int64(1) << 40),
            "net_i2_thresh_kbyte": .integer(0...Int64(1) << 40),
            "vref": .text,
            // Sliverd extension: raw socket protocols the broker hands this slice (default icmp).
            "raw_protocols": .rawProtocols,
            "initscript": .text,
            "initscript_code": .text,
        ]
        // PLCAPI's rlimit tags (<rlimit>_soft/_hard) for the limits Linux has; memlock_* is
        // the memory limit on LXC nodes (PlanetLab's choice), so RLIMIT_MEMLOCK is not among them.
        for limit in ["cpu", "rss", "nproc", "nofile", "as", "locks", "sigpending", "msgqueue", "core", "stack", "fsize"] {
            v[limit + "_soft"] = .rlimit
            v[limit + "_hard"] = .rlimit
        }
        return v
    }()

    public static var knownNames: [String] { vocabulary.keys.sorted() }

    static func validate(_ name: String, _ value: String) throws(NodeError) {
        guard let kind = vocabulary[name] else {
            throw NodeError(.invalidArgument, "unknown attribute \"\(name)\" (known: \(knownNames.joined(separator: ", ")))", field: name)
        }
        func invalid(_ shown: String, _ reason: String) -> NodeError {
            NodeError(.invalidArgument, "invalid attribute \(name) \"\(shown)\": \(reason)", field: name)
        }
        switch kind {
        case .integer(let range):
            guard let number = Int64(value) else { throw invalid(value, "not an integer") }
            guard range.contains(number) else {
                throw invalid(value, "out of range \(range.lowerBound)...\(range.upperBound)")
            }
        case .flag:
            guard value == "0" || value == "1" else { throw invalid(value, "must be 0 or 1") }
        case .cores:
            let digits = value.hasSuffix("b") ? String(value.dropLast()) : value
            guard let n = Int(digits), n >= 0, n < 1024 else { throw invalid(value, "must be N or Nb (whole cores)") }
        case .text:
            guard value.utf8.count <= 65536, !value.contains("\0") else { throw invalid(value.prefix(40) + "...", "too long or contains NUL") }
        case .rawProtocols:
            let items = value.split(separator: ",").map { String($0).trimmed }
            guard items.allSatisfy({ ["icmp", "udp", "tcp", "gre"].contains($0) }) else {
                throw invalid(value, "must be a comma-separated subset of icmp, udp, tcp, gre")
            }
        case .rlimit:
            guard value == "-1" || value == "unlimited" || UInt64(value) != nil else {
                throw invalid(value, "must be a non-negative integer, -1 or unlimited")
            }
        }
    }

    // MARK: derived settings

    public var isEnabled: Bool { values["enabled"] != "0" }

    /// Raw socket protocols the broker may hand out (default: icmp, so ping works).
    public var rawProtocols: Set<String> {
        Set((values["raw_protocols"] ?? "icmp").split(separator: ",").map { String($0).trimmed })
    }

    private func int(_ name: String) -> Int64? { values[name].flatMap { Int64($0) } }

    /// The cgroup settings these attributes ask for. Node-wide parts (the cpu_pct guarantee
    /// weight, the cpuset from cpu_cores) are filled in by the manager's CPU plan.
    public func resourceSettings(defaultPidsMax: Int?) -> ResourceSettings {
        var settings = ResourceSettings()
        settings.cpuShare = Int(int("cpu_share") ?? 1)
        settings.cpuCapPercent = int("cpu_cap").map { Int($0) }
        settings.memoryMaxBytes = int("memlock_hard").map { UInt64($0) * 1024 }
        settings.memoryHighBytes = int("memlock_soft").map { UInt64($0) * 1024 }
        settings.pidsMax = int("pids_max").map { Int($0) } ?? defaultPidsMax
        settings.frozen = !isEnabled
        return settings
    }

    /// cpu_pct: percent of the shared pool's CPU time guaranteed to the sliver (0 = none).
    public var cpuGuaranteePercent: Int { Int(int("cpu_pct") ?? 0) }

    /// cpu_cores "N" or "Nb" (PLCAPI default "0b"): N whole cores for the sliver alone; "b" also
    /// lets it run on the shared pool. A sliver without cores always runs on the pool.
    public var cpuCores: (count: Int, withPool: Bool) {
        guard let value = values["cpu_cores"] else { return (0, true) }
        let withPool = value.hasSuffix("b")
        let count = Int(withPool ? String(value.dropLast()) : value) ?? 0
        return (count, withPool || count == 0)
    }

    /// The disk limit: disk_max KiB (or `defaultKiB` when the slice sets none), 0 = no limit;
    /// disk_inodes_max inodes where the backend can limit them.
    public func diskLimit(defaultKiB: UInt64) -> DiskLimit {
        let kib = int("disk_max").map { UInt64($0) } ?? defaultKiB
        let inodes = int("disk_inodes_max").map { UInt64($0) } ?? 0
        return DiskLimit(bytes: kib == 0 ? nil : kib * 1024, inodes: inodes == 0 ? nil : inodes)
    }

    /// The rlimits every process of the sliver starts with.
    public var resourceLimits: [ResourceLimit] {
        var limits: [String: ResourceLimit] = [:]
        func parse(_ value: String) -> UInt64? { value == "-1" || value == "unlimited" ? nil : UInt64(value) }
        for (name, value) in values {
            for suffix in ["_soft", "_hard"] where name.hasSuffix(suffix) && Self.vocabulary[name].map({ if case .rlimit = $0 { true } else { false } }) == true {
                let resource = String(name.dropLast(suffix.count))
                var limit = limits[resource] ?? ResourceLimit(resource: resource, soft: nil, hard: nil)
                if suffix == "_soft" { limit.soft = parse(value) } else { limit.hard = parse(value) }
                limits[resource] = limit
            }
        }
        // A soft limit above the hard one is invalid for setrlimit: clamp.
        return limits.values.sorted { $0.resource < $1.resource }.map { limit in
            var limit = limit
            if let hard = limit.hard, limit.soft ?? .max > hard { limit.soft = hard }
            return limit
        }
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
