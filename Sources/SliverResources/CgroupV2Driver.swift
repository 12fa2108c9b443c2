#if canImport(Glibc)
import Glibc
#endif
import SliverSystem

/// cgroup v2 (production nodes): one directory `<root>/<parent>/<sliver>` with the cpu, memory,
/// pids, cpuset and io controllers enabled from the root down through subtree_control.
public struct CgroupV2Driver: CgroupDriver {
    public let version = CgroupVersion.v2
    public let root: String
    public let parent: String
    let fs: any CgroupFilesystem

    static let controllers = ["cpu", "cpuset", "memory", "pids", "io"]

    public init(root: String, parent: String, filesystem: any CgroupFilesystem = KernelCgroupFilesystem()) {
        self.root = root
        self.parent = parent
        self.fs = filesystem
    }

    static func isValidComponent(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && name.utf8.count <= 255
    }

    var parentPath: String { "\(root)/\(parent)" }
    func path(_ sliver: String) -> String { "\(parentPath)/\(sliver)" }

    public func directories(of sliver: String) -> [String] { [path(sliver)] }

    public func create(_ sliver: String) throws(ResourceError) {
        do {
            if !fs.exists(parentPath) { try fs.makeDirectory(parentPath) }
            // Controllers must be enabled in every ancestor's subtree_control ("no internal
            // processes": the parent itself holds no process, only sliver cgroups).
            let enable = Self.controllers.map { "+" + $0 }.joined(separator: " ")
            try fs.write("\(root)/cgroup.subtree_control", enable)
            try fs.write("\(parentPath)/cgroup.subtree_control", enable)
            try fs.makeDirectory(path(sliver))
        } catch {
            throw ResourceError(error)
        }
    }

    public func apply(_ settings: ResourceSettings, to sliver: String) throws(ResourceError) {
        try applyCPU(settings, to: sliver)
        let dir = path(sliver)
        do {
            // memory.max is the hard limit (the OOM killer acts inside the cgroup when reclaim
            // cannot keep it); memory.high throttles and reclaims above it without killing.
            try fs.write(dir + "/memory.max", settings.memoryMaxBytes.map(String.init) ?? "max")
            try fs.write(dir + "/memory.high", settings.memoryHighBytes.map(String.init) ?? "max")
            try fs.write(dir + "/pids.max", settings.pidsMax.map(String.init) ?? "max")
        } catch {
            throw ResourceError(error)
        }
        try setFrozen(settings.frozen, sliver)
    }

    public func applyCPU(_ settings: ResourceSettings, to sliver: String) throws(ResourceError) {
        let dir = path(sliver)
        do {
            // cpu.weight divides contended CPU time among siblings (work conserving); cpu.max
            // "QUOTA PERIOD" caps it, "max PERIOD" removes the cap.
            try fs.write(dir + "/cpu.weight", String(settings.cpuWeightV2))
            let period = ResourceSettings.cfsPeriodMicroseconds
            try fs.write(dir + "/cpu.max", settings.cfsQuotaMicroseconds.map { "\($0) \(period)" } ?? "max \(period)")
            if let cpus = settings.cpus, !cpus.isEmpty {
                try fs.write(dir + "/cpuset.cpus", CPUList.format(cpus))
            }
        } catch {
            throw ResourceError(error)
        }
    }

    public func availableCPUs() -> [Int] {
        for dir in [parentPath, root] {
            if let text = try? fs.read(dir + "/cpuset.cpus.effective"), let cpus = CPUList.parse(text), !cpus.isEmpty { return cpus }
        }
        return []
    }

    public func exists(_ sliver: String) -> Bool { fs.exists(path(sliver)) }

    public func processes(of sliver: String) -> [Int32] {
        let text = (try? fs.read(path(sliver) + "/cgroup.procs")) ?? ""
        return text.split(separator: "\n").compactMap { Int32($0) }
    }

    public func setFrozen(_ frozen: Bool, _ sliver: String) throws(ResourceError) {
        do {
            try fs.write(path(sliver) + "/cgroup.freeze", frozen ? "1" : "0")
        } catch {
            throw ResourceError(error)
        }
    }

    /// cgroup.kill (5.14+) SIGKILLs every process of the subtree atomically, forks included.
    public func killAll(_ sliver: String) throws(ResourceError) {
        guard exists(sliver) else { return }
        // A killed process still needs CPU time to exit: lift a CPU cap first (start re-applies it).
        try? fs.write(path(sliver) + "/cpu.max", "max \(ResourceSettings.cfsPeriodMicroseconds)")
        do {
            try fs.write(path(sliver) + "/cgroup.kill", "1")
        } catch {
            throw ResourceError(error)
        }
        if !waitUntil(timeout: 5, { processes(of: sliver).isEmpty }) {
            throw ResourceError(.busy, stage: "cgroup.kill", "processes of \(sliver) survived cgroup.kill")
        }
    }

    public func remove(_ sliver: String) throws(ResourceError) {
        do {
            try fs.removeDirectory(path(sliver))
        } catch {
            throw ResourceError(error)
        }
    }

    public func slivers() -> [String] { (try? fs.list(parentPath)) ?? [] }

    public func usage(of sliver: String) -> ResourceUsage {
        let dir = path(sliver)
        func keyed(_ file: String, _ key: String) -> UInt64? {
            guard let text = try? fs.read(dir + "/" + file) else { return nil }
            for line in text.split(separator: "\n") where line.hasPrefix(key + " ") {
                return UInt64(line.dropFirst(key.count + 1))
            }
            return nil
        }
        func number(_ file: String) -> UInt64? {
            (try? fs.read(dir + "/" + file)).flatMap { UInt64($0.trimmingCharacters(in: "\n ")) }
        }
        var usage = ResourceUsage()
        usage.cpuNanoseconds = keyed("cpu.stat", "usage_usec").map { $0 * 1000 }
        usage.memoryBytes = number("memory.current")
        usage.memoryPeakBytes = number("memory.peak")
        // memory.events oom_kill: processes the OOM killer chose inside this cgroup.
        usage.oomKills = keyed("memory.events", "oom_kill")
        usage.pids = number("pids.current")
        usage.cpus = (try? fs.read(dir + "/cpuset.cpus.effective")).map { $0.trimmingCharacters(in: "\n ") }
        return usage
    }
}
