#if canImport(Glibc)
import Glibc
#endif
import SliverSystem

/// cgroup v1: one directory per hierarchy (cpu, cpuacct, cpuset, memory, pids, freezer, devices,
/// blkio — separate or co-mounted), each `<mount>/<parent>/<sliver>`.
public struct CgroupV1Driver: CgroupDriver {
    public let version = CgroupVersion.v1
    /// Controller name -> mount point of the hierarchy that carries it.
    public let hierarchies: [String: String]
    public let parent: String
    let fs: any CgroupFilesystem

    /// Controllers a sliver cannot run without; the rest are used when present.
    static let required = ["cpu", "memory", "pids", "freezer"]
    static let optional = ["cpuacct", "cpuset", "devices", "blkio"]

    /// Devices a sliver may use (devices.allow syntax). Everything else is denied, even if a node
    /// appears in the sliver's /dev: null zero full random urandom tty, ptmx and the pts of its
    /// own devpts instance.
    static let allowedDevices = [
        "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm",
    ]

    public init(hierarchies: [String: String], parent: String,
                filesystem: any CgroupFilesystem = KernelCgroupFilesystem()) throws(ResourceError) {
        let missing = Self.required.filter { hierarchies[$0] == nil }
        guard missing.isEmpty else {
            throw ResourceError(.unavailable, stage: "cgroup.detect", "cgroup v1 controllers not mounted: \(missing.joined(separator: ", "))")
        }
        guard CgroupV2Driver.isValidComponent(parent) else {
            throw ResourceError(.invalidArgument, stage: "cgroup.parent", "invalid cgroup parent \"\(parent)\"")
        }
        self.hierarchies = hierarchies.filter { (Self.required + Self.optional).contains($0.key) }
        self.parent = parent
        self.fs = filesystem
    }

    /// Parses /proc/self/mounts: `cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0`.
    public static func hierarchies(fromMounts mounts: String) -> [String: String] {
        var result: [String: String] = [:]
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 4, fields[2] == "cgroup" else { continue }
            for option in fields[3].split(separator: ",") where (required + optional).contains(String(option)) {
                result[String(option)] = String(fields[1])
            }
        }
        return result
    }

    /// Distinct hierarchy mounts (co-mounted controllers share one).
    var mounts: [String] { Array(Set(hierarchies.values)).sorted() }

    func path(_ controller: String, _ sliver: String) -> String? {
        hierarchies[controller].map { "\($0)/\(parent)/\(sliver)" }
    }

    public func directories(of sliver: String) -> [String] {
        mounts.map { "\($0)/\(parent)/\(sliver)" }
    }

    public func create(_ sliver: String) throws(ResourceError) {
        do {
            for mount in mounts {
                let parentDir = "\(mount)/\(parent)"
                if !fs.exists(parentDir) {
                    try fs.makeDirectory(parentDir)
                    if hierarchies["cpuset"] == mount { try copyCpuset(from: mount, to: parentDir) }
                }
                let dir = "\(parentDir)/\(sliver)"
                try fs.makeDirectory(dir)
                // A v1 cpuset starts with empty cpus/mems and refuses tasks until they are set.
                if hierarchies["cpuset"] == mount { try copyCpuset(from: parentDir, to: dir) }
            }
            if let devices = path("devices", sliver) {
                try fs.write(devices + "/devices.deny", "a")
                for rule in Self.allowedDevices { try fs.write(devices + "/devices.allow", rule) }
            }
        } catch {
            throw ResourceError(error)
        }
    }

    private func copyCpuset(from source: String, to target: String) throws(SystemError) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let value = try fs.read("\(source)/\(file)").trimmingCharacters(in: "\n ")
            try fs.write("\(target)/\(file)", value.isEmpty ? "\n" : value)
        }
    }

    public func apply(_ settings: ResourceSettings, to sliver: String) throws(ResourceError) {
        try applyCPU(settings, to: sliver)
        do {
            try applyMemory(settings, path("memory", sliver)!)
            try fs.write(path("pids", sliver)! + "/pids.max", settings.pidsMax.map(String.init) ?? "max")
        } catch {
            throw ResourceError(error)
        }
        try setFrozen(settings.frozen, sliver)
    }

    public func applyCPU(_ settings: ResourceSettings, to sliver: String) throws(ResourceError) {
        do {
            let cpu = path("cpu", sliver)!
            // Proportional weight among sibling cgroups that want CPU at the same time: it
            // divides contended time and never leaves a CPU idle (work conserving).
            try fs.write(cpu + "/cpu.shares", String(settings.cpuSharesV1))
            // CFS bandwidth control: at most quota us of CPU time per period, across all CPUs;
            // -1 = no cap. The period is written first so the quota is checked against it.
            try fs.write(cpu + "/cpu.cfs_period_us", String(ResourceSettings.cfsPeriodMicroseconds))
            try fs.write(cpu + "/cpu.cfs_quota_us", settings.cfsQuotaMicroseconds.map(String.init) ?? "-1")
            if let cpus = settings.cpus, !cpus.isEmpty, let cpuset = path("cpuset", sliver) {
                // Tasks already in the cgroup are migrated to the new set by the kernel.
                try fs.write(cpuset + "/cpuset.cpus", CPUList.format(cpus))
            }
        } catch {
            throw ResourceError(error)
        }
    }

    /// memory.limit_in_bytes bounds RAM (page cache included); when swap accounting is on,
    /// memory.memsw.limit_in_bytes (RAM + swap) gets the same value, so a sliver cannot use swap
    /// to exceed its limit. The kernel requires memsw >= limit at every step: open memsw first,
    /// set the limit, then set memsw. Lowering the limit below current use makes the kernel
    /// reclaim first; EBUSY if it cannot. -1 is "unlimited" for every file here.
    private func applyMemory(_ settings: ResourceSettings, _ memory: String) throws(SystemError) {
        let limit = settings.memoryMaxBytes.map(String.init) ?? "-1"
        let memsw = memory + "/memory.memsw.limit_in_bytes"
        let hasMemsw = fs.exists(memsw)
        if hasMemsw { try fs.write(memsw, "-1") }
        try fs.write(memory + "/memory.limit_in_bytes", limit)
        if hasMemsw { try fs.write(memsw, limit) }
        try fs.write(memory + "/memory.soft_limit_in_bytes", settings.memoryHighBytes.map(String.init) ?? "-1")
    }

    public func availableCPUs() -> [Int] {
        guard let mount = hierarchies["cpuset"] else { return [] }
        for dir in ["\(mount)/\(parent)", mount] where fs.exists(dir) {
            if let text = try? fs.read(dir + "/cpuset.cpus"), let cpus = CPUList.parse(text), !cpus.isEmpty { return cpus }
        }
        return []
    }

    public func exists(_ sliver: String) -> Bool {
        mounts.contains { fs.exists("\($0)/\(parent)/\(sliver)") }
    }

    public func processes(of sliver: String) -> [Int32] {
        var pids = Set<Int32>()
        for dir in directories(of: sliver) {
            let text = (try? fs.read(dir + "/cgroup.procs")) ?? ""
            for line in text.split(separator: "\n") { if let pid = Int32(line) { pids.insert(pid) } }
        }
        return pids.sorted()
    }

    public func setFrozen(_ frozen: Bool, _ sliver: String) throws(ResourceError) {
        let state = path("freezer", sliver)! + "/freezer.state"
        do {
            try fs.write(state, frozen ? "FROZEN" : "THAWED")
        } catch {
            throw ResourceError(error)
        }
        guard frozen else { return }
        // FREEZING becomes FROZEN once every task has stopped; a task in an uninterruptible
        // sleep can delay that.
        let done = waitUntil(timeout: 5) { ((try? fs.read(state)) ?? "").hasPrefix("FROZEN") }
        if !done { throw ResourceError(.busy, stage: "cgroup.freeze", "\(state) did not reach FROZEN within 5 s") }
    }

    /// v1 has no cgroup.kill: freeze first so that nothing forks between reading the task list
    /// and signalling it, SIGKILL every task (delivered on thaw), thaw, and wait for the exits.
    public func killAll(_ sliver: String) throws(ResourceError) {
        guard exists(sliver) else { return }
        // A killed process still needs CPU time to exit: lift a CPU cap first so that a sliver
        // that used up its quota does not die at the cap's pace (start re-applies the cap).
        if let cpu = path("cpu", sliver) { try? fs.write(cpu + "/cpu.cfs_quota_us", "-1") }
        for _ in 0..<5 {
            let frozen = (try? setFrozen(true, sliver)) != nil
            for pid in processes(of: sliver) { kill(pid, SIGKILL) }
            if frozen { try? setFrozen(false, sliver) }
            if waitUntil(timeout: 2, { processes(of: sliver).isEmpty }) { return }
        }
        throw ResourceError(.busy, stage: "cgroup.kill", "processes \(processes(of: sliver)) of \(sliver) survived SIGKILL")
    }

    public func remove(_ sliver: String) throws(ResourceError) {
        for dir in directories(of: sliver) where fs.exists(dir) {
            // rmdir fails with EBUSY while exiting tasks are still being released; retry briefly.
            var lastError: SystemError?
            let removed = waitUntil(timeout: 2) {
                do throws(SystemError) { try fs.removeDirectory(dir); return true } catch { lastError = error; return false }
            }
            if !removed, let lastError { throw ResourceError(lastError) }
        }
    }

    public func slivers() -> [String] {
        var names = Set<String>()
        for mount in mounts { (try? fs.list("\(mount)/\(parent)"))?.forEach { names.insert($0) } }
        return names.sorted()
    }

    public func usage(of sliver: String) -> ResourceUsage {
        func number(_ controller: String, _ file: String) -> UInt64? {
            guard let dir = path(controller, sliver), let text = try? fs.read(dir + "/" + file) else { return nil }
            return UInt64(text.trimmingCharacters(in: "\n "))
        }
        var usage = ResourceUsage()
        usage.cpuNanoseconds = number("cpuacct", "cpuacct.usage")
        usage.memoryBytes = number("memory", "memory.usage_in_bytes")
        usage.memoryPeakBytes = number("memory", "memory.max_usage_in_bytes")
        usage.pids = number("pids", "pids.current")
        if let dir = path("cpuset", sliver), let text = try? fs.read(dir + "/cpuset.cpus") {
            usage.cpus = text.trimmingCharacters(in: "\n ")
        }
        // memory.oom_control: "oom_kill N" counts the processes the OOM killer chose inside this
        // cgroup because its limit was hit (kernel 4.13+).
        if let dir = path("memory", sliver), let text = try? fs.read(dir + "/memory.oom_control") {
            for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
                usage.oomKills = UInt64(line.dropFirst("oom_kill ".count))
            }
        }
        return usage
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var slice = Substring(self)
        while let first = slice.first, set.contains(first) { slice.removeFirst() }
        while let last = slice.last, set.contains(last) { slice.removeLast() }
        return String(slice)
    }
}
