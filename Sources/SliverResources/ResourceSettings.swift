/// The cgroup-enforced resources of one sliver, in kernel-neutral units. nil leaves the
/// kernel's default (unlimited) in place.
public struct ResourceSettings: Sendable, Equatable, Codable {
    /// Proportional CPU share (PLCAPI cpu_share, 1-1000).
    public var cpuShare: Int = 1
    /// Weight added for a cpu_pct guarantee, in v1 cpu.shares units (1024 = one share). It is a
    /// node-wide decision (it depends on every other sliver's share), made by NodeManager's CPU
    /// plan; 0 = no guarantee.
    public var cpuGuaranteeWeight: Int = 0
    /// Hard CPU cap in percent of one CPU (v1 cfs_quota_us / v2 cpu.max), nil = no cap.
    /// 150 = one and a half CPUs.
    public var cpuCapPercent: Int? = nil
    /// CPUs the sliver may run on (cpuset.cpus), nil = leave the cpuset as it is.
    public var cpus: [Int]? = nil
    /// memory.limit_in_bytes / memory.max.
    public var memoryMaxBytes: UInt64? = nil
    /// memory.soft_limit_in_bytes / memory.high.
    public var memoryHighBytes: UInt64? = nil
    /// pids.max: contains fork bombs. Default 1024.
    public var pidsMax: Int? = 1024
    /// enabled=0 in PLCAPI: every process of the sliver is frozen.
    public var frozen: Bool = false

    public init() {}

    /// CFS bandwidth period used with a cap: 100 ms, the kernel's default.
    public static let cfsPeriodMicroseconds = 100_000

    /// The total weight in cpu.shares units: 1024 per share plus the guarantee weight.
    public var cpuWeightUnits: Int { 1024 * cpuShare + max(0, cpuGuaranteeWeight) }

    /// v1 cpu.shares. The kernel silently clamps to 2...262144; clamping here keeps what is
    /// written equal to what is read back.
    public var cpuSharesV1: Int { min(262_144, max(2, cpuWeightUnits)) }

    /// v2 cpu.weight (1...10000, default 100 = one share): 100 per share.
    public var cpuWeightV2: Int { min(10_000, max(1, cpuWeightUnits * 100 / 1024)) }

    /// CFS quota for the cap, microseconds per period; nil = no cap.
    public var cfsQuotaMicroseconds: Int? {
        cpuCapPercent.map { max(1000, Self.cfsPeriodMicroseconds * $0 / 100) }
    }
}

/// What a sliver has used, read from its cgroups and its disk-quota backend. nil = not known
/// (the controller or backend does not report it).
public struct ResourceUsage: Sendable, Equatable, Codable {
    public var cpuNanoseconds: UInt64?
    public var memoryBytes: UInt64?
    public var memoryPeakBytes: UInt64?
    /// Processes killed by the OOM killer inside the sliver (its memory limit was hit).
    public var oomKills: UInt64?
    public var pids: UInt64?
    /// The CPUs the sliver may run on, in the kernel's list format ("0-1").
    public var cpus: String?
    /// Bytes charged to the sliver's quota (btrfs: as of the last transaction commit).
    public var diskBytes: UInt64?
    public var diskLimitBytes: UInt64?
    public var diskInodes: UInt64?

    public init() {}
}
