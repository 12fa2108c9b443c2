/// The cgroup-enforced resources of one sliver, in kernel-neutral units. nil leaves the
/// kernel's default (unlimited) in place.
public struct ResourceSettings: Sendable, Equatable, Codable {
    /// Proportional CPU share (PLCAPI cpu_share). v1: cpu.shares = 1024 * share;
    /// v2: cpu.weight = 100 * share (clamped to 1...10000).
    public var cpuShare: Int = 1
    /// Hard CPU cap in percent of one CPU (v1 cfs_quota_us / v2 cpu.max), nil = no cap.
    public var cpuCapPercent: Int? = nil
    /// memory.limit_in_bytes / memory.max.
    public var memoryMaxBytes: UInt64? = nil
    /// memory.soft_limit_in_bytes / memory.high.
    public var memoryHighBytes: UInt64? = nil
    /// pids.max: contains fork bombs. Default 1024.
    public var pidsMax: Int? = 1024
    /// enabled=0 in PLCAPI: every process of the sliver is frozen.
    public var frozen: Bool = false

    public init() {}
}

/// What a sliver has used, read from its cgroups.
public struct ResourceUsage: Sendable, Equatable, Codable {
    public var cpuNanoseconds: UInt64?
    public var memoryBytes: UInt64?
    public var memoryPeakBytes: UInt64?
    public var oomKills: UInt64?
    public var pids: UInt64?

    public init() {}
}
