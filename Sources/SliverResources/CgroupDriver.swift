#if canImport(Glibc)
import Glibc
#endif
import SliverSystem

public enum CgroupVersion: String, Sendable, Codable {
    case v1, v2
}

/// Creates, limits, freezes, kills and removes the cgroups of slivers. Every sliver's cgroups are
/// `<hierarchy>/<parent>/<sliver name>`, so a restarted daemon finds them by name and a destroy
/// removes exactly them.
public protocol CgroupDriver: Sendable {
    var version: CgroupVersion { get }
    /// The directories a process joins to be fully inside the sliver's cgroups.
    func directories(of sliver: String) -> [String]
    func create(_ sliver: String) throws(ResourceError)
    /// Writes every limit of `settings` (CPU, cpuset, memory, pids, freezer). Safe on a running
    /// sliver: the kernel applies each file to the processes already in the cgroup.
    func apply(_ settings: ResourceSettings, to sliver: String) throws(ResourceError)
    /// Writes only the CPU part (weight, cap, cpuset): what a node-wide CPU re-plan changes.
    func applyCPU(_ settings: ResourceSettings, to sliver: String) throws(ResourceError)
    /// The CPUs slivers may use: the cpuset of the sliver parent (or of the root while the
    /// parent does not exist yet); empty when the node has no cpuset controller.
    func availableCPUs() -> [Int]
    func exists(_ sliver: String) -> Bool
    func processes(of sliver: String) -> [Int32]
    /// Freezes or thaws every process of the sliver.
    func setFrozen(_ frozen: Bool, _ sliver: String) throws(ResourceError)
    /// Kills every process, even ones forking as fast as they can, and waits until none is left.
    func killAll(_ sliver: String) throws(ResourceError)
    /// Removes the (empty) cgroups. Idempotent.
    func remove(_ sliver: String) throws(ResourceError)
    /// Names of all sliver cgroups under the parent (to find orphans after a crash).
    func slivers() -> [String]
    func usage(of sliver: String) -> ResourceUsage
}

extension CgroupDriver {
    /// Polls until `condition` holds, for at most `timeout` seconds.
    func waitUntil(timeout: Double, _ condition: () -> Bool) -> Bool {
        var waited = 0.0
        var step = 0.001
        while !condition() {
            if waited >= timeout { return false }
            usleep(UInt32(step * 1_000_000))
            waited += step
            step = min(step * 2, 0.05)
        }
        return true
    }
}

public enum CgroupDetection {
    /// The driver for this node: v1 when the v1 hierarchies carry the controllers slivers need
    /// (hybrid hosts such as the CI machines), v2 when the unified hierarchy does.
    public static func detect(parent: String, root: String = "/sys/fs/cgroup",
                              preference: CgroupVersion? = nil) throws(ResourceError) -> any CgroupDriver {
        let mounts = (try? FileSystem.readString("/proc/self/mounts")) ?? ""
        let v1 = CgroupV1Driver.hierarchies(fromMounts: mounts)
        let unified = mounts.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count > 2 && fields[2] == "cgroup2" ? String(fields[1]) : nil
        }.first
        let v2Controllers = unified.flatMap { try? FileSystem.readString($0 + "/cgroup.controllers") }?
            .split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init) ?? []
        let v2Usable = unified != nil && Set(["cpu", "memory", "pids"]).isSubset(of: v2Controllers)
        switch preference {
        case .v2?:
            guard let unified, v2Usable else {
                throw ResourceError(.unavailable, stage: "cgroup.detect", "cgroup v2 requested but the unified hierarchy has no cpu, memory and pids controllers")
            }
            return CgroupV2Driver(root: unified, parent: parent)
        case .v1?:
            return try CgroupV1Driver(hierarchies: v1, parent: parent)
        case nil:
            if v2Usable, let unified { return CgroupV2Driver(root: unified, parent: parent) }
            return try CgroupV1Driver(hierarchies: v1, parent: parent)
        }
    }
}
