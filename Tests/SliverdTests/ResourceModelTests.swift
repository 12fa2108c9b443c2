#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
import Testing
@testable import NodeManager
@testable import SliverResources
import SliverIsolation
import SliverSystem

/// The resource model without a kernel: CPU lists, the node-wide CPU plan, attribute
/// conversions, the [storage] config, the drivers' writes, project quotas against a stand-in
/// kernel, and the `top` table.
@Suite struct CPUListTests {
    @Test func parsesAndFormats() {
        #expect(CPUList.parse("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11])
        #expect(CPUList.parse("") == [])
        #expect(CPUList.parse("3-1") == nil)
        #expect(CPUList.parse("a") == nil)
        #expect(CPUList.format([5, 0, 1, 2]) == "0-2,5")
        #expect(CPUList.format([1]) == "1")
        #expect(CPUList.format([]) == "")
    }
}

@Suite struct CPUPlanTests {
    @Test func wholeCoresKeepOnePoolCPU() {
        // Two CPUs handed out highest first: the first asker gets CPU 1, the second nothing.
        let plan = CPUPlan.make(cpus: [1, 0], demands: [
            CPUDemand(name: "a", share: 1, cores: 1, withPool: false),
            CPUDemand(name: "b", share: 1, cores: 1, withPool: false),
            CPUDemand(name: "c", share: 1),
        ])
        #expect(plan.assignments["a"]?.cpus == [1])
        #expect(plan.assignments["a"]?.exclusive == [1])
        #expect(plan.assignments["b"]?.cpus == [0])
        #expect(plan.shortfalls == ["b": 1])
        #expect(plan.assignments["c"]?.cpus == [0])
        #expect(plan.pool == [0])
        // Not running: the pool.
        #expect(plan.assignment("x") == CPUAssignment(cpus: [0]))
    }

    @Test func bestEffortAddsThePool() {
        let plan = CPUPlan.make(cpus: [3, 2, 1, 0], demands: [
            CPUDemand(name: "a", share: 1, cores: 2, withPool: true),
            CPUDemand(name: "b", share: 1, cores: 5, withPool: false),
        ])
        #expect(plan.assignments["a"]?.cpus == [0, 2, 3])
        #expect(plan.assignments["a"]?.exclusive == [2, 3])
        // b asked for 5, got what was left above the one pool CPU.
        #expect(plan.assignments["b"]?.cpus == [1])
        #expect(plan.shortfalls["b"] == 4)
        #expect(plan.pool == [0])
    }

    @Test func noCpusetNoCpus() {
        let plan = CPUPlan.make(cpus: [], demands: [CPUDemand(name: "a", share: 1, cores: 1, withPool: false)])
        #expect(plan.assignments["a"]?.cpus == nil)
        #expect(plan.pool == nil)
    }

    @Test func guaranteeIsItsPercentOfTheTotalWeight() {
        let plan = CPUPlan.make(cpus: [1, 0], demands: [
            CPUDemand(name: "g", share: 1, guaranteePercent: 30),
            CPUDemand(name: "b", share: 1),
            CPUDemand(name: "c", share: 1),
        ])
        let extra = plan.assignments["g"]!.guaranteeWeight
        #expect(extra == 1317)  // 30 * 3072 / 70
        #expect(plan.assignments["b"]!.guaranteeWeight == 0)
        // All busy: 30 % guaranteed + a third of the other 70 %.
        let fraction = Double(1024 + extra) / Double(3 * 1024 + extra)
        #expect(abs(fraction - (0.30 + 0.70 / 3)) < 0.001)
        // Alone: 25 % of its own weight... and everything, since nobody else wants CPU.
        let alone = CPUPlan.make(cpus: [1, 0], demands: [CPUDemand(name: "g", share: 1, guaranteePercent: 25)])
        #expect(alone.assignments["g"]!.guaranteeWeight == 341)
    }

    @Test func oversubscribedGuaranteesScaleDown() {
        let plan = CPUPlan.make(cpus: [], demands: [
            CPUDemand(name: "a", share: 1, guaranteePercent: 60),
            CPUDemand(name: "b", share: 1, guaranteePercent: 60),
        ])
        // Scaled to 45 + 45 = 90 %: each 45 * 2048 / 10.
        #expect(plan.assignments["a"]!.guaranteeWeight == 9216)
        #expect(plan.assignments["b"]!.guaranteeWeight == 9216)
    }

    @Test func exclusiveSliversDoNotCompeteOnThePool() {
        let plan = CPUPlan.make(cpus: [1, 0], demands: [
            CPUDemand(name: "x", share: 5, guaranteePercent: 50, cores: 1, withPool: false),
            CPUDemand(name: "g", share: 1, guaranteePercent: 25),
        ])
        #expect(plan.assignments["x"]!.guaranteeWeight == 0)
        #expect(plan.assignments["g"]!.guaranteeWeight == 341)
    }

    @Test func siblingsStayTogether() {
        // Intel-style numbering: CPUs 0 and 2 are one core, 1 and 3 the other.
        let order = CPUTopology.allocationOrder([0, 1, 2, 3]) { "0:\($0 % 2)" }
        #expect(order == [1, 3, 0, 2])
        let plan = CPUPlan.make(cpus: order, demands: [CPUDemand(name: "a", share: 1, cores: 2, withPool: false)])
        #expect(plan.assignments["a"]?.cpus == [1, 3])
        #expect(plan.pool == [0, 2])
    }
}

@Suite struct ResourceAttributeTests {
    @Test func cpuAttributes() throws {
        #expect(try SliceAttributes([:]).cpuCores == (0, true))
        #expect(try SliceAttributes(["cpu_cores": "0b"]).cpuCores == (0, true))
        #expect(try SliceAttributes(["cpu_cores": "0"]).cpuCores == (0, true))
        #expect(try SliceAttributes(["cpu_cores": "2"]).cpuCores == (2, false))
        #expect(try SliceAttributes(["cpu_cores": "1b"]).cpuCores == (1, true))
        let attrs = try SliceAttributes(["cpu_cap": "150", "cpu_pct": "25"])
        #expect(attrs.resourceSettings(defaultPidsMax: nil).cpuCapPercent == 150)
        #expect(attrs.resourceSettings(defaultPidsMax: nil).cfsQuotaMicroseconds == 150_000)
        #expect(attrs.cpuGuaranteePercent == 25)
        #expect(throws: NodeError.self) { try SliceAttributes(["cpu_cap": "0"]) }
    }

    @Test func diskLimit() throws {
        #expect(try SliceAttributes(["disk_max": "8192"]).diskLimit(defaultKiB: 1) == DiskLimit(bytes: 8 << 20))
        #expect(try SliceAttributes([:]).diskLimit(defaultKiB: 10_000_000) == DiskLimit(bytes: 10_000_000 * 1024))
        #expect(try SliceAttributes(["disk_max": "0"]).diskLimit(defaultKiB: 5) == DiskLimit())
        #expect(try SliceAttributes(["disk_inodes_max": "100"]).diskLimit(defaultKiB: 0) == DiskLimit(inodes: 100))
    }

    @Test func weights() {
        var settings = ResourceSettings()
        settings.cpuShare = 1
        settings.cpuGuaranteeWeight = 341
        #expect(settings.cpuSharesV1 == 1365)
        #expect(settings.cpuWeightV2 == 133)
        settings.cpuShare = 1000
        #expect(settings.cpuSharesV1 == 262_144)
        #expect(settings.cpuWeightV2 == 10_000)
    }
}

@Suite struct StorageConfigTests {
    @Test func readsStorage() throws {
        let config = try NodeConfig(toml: """
        [storage]
        quota = "btrfs"
        default_disk_max = 0
        project_id_base = 5000
        """)
        #expect(config.diskQuota == .btrfs)
        #expect(config.defaultDiskMaxKiB == 0)
        #expect(config.projectIDBase == 5000)
        #expect(NodeConfig().diskQuota == DiskQuotaKind.none)
        #expect(NodeConfig().defaultDiskMaxKiB == 10_000_000)
        #expect(NodeConfig().imagesDir == "/var/lib/sliverd/images")
        #expect(try NodeConfig(toml: "[storage]\nimages_dir = \"/srv/images\"").imagesDir == "/srv/images")
        #expect(try NodeConfig(toml: "[storage]\nimages_dir = \"\"").imagesDir == "")
    }

    @Test(arguments: [
        ("[storage]\nquota = \"zfs\"", "storage.quota"),
        ("[storage]\ndefault_disk_max = -1", "storage.default_disk_max"),
        ("[storage]\nproject_id_base = 0", "storage.project_id_base"),
        ("[storage]\ninodes = 1", "storage.inodes"),
        ("[storage]\nimages_dir = \"images\"", "storage.images_dir"),
        ("[storage]\nimages_dir = \"/srv/../etc\"", "storage.images_dir"),
    ])
    func refuses(_ text: String, _ field: String) {
        do {
            _ = try NodeConfig(toml: text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.field == field, "\(error.message)")
        }
    }
}

@Suite struct DriverWriteTests {
    @Test func v2WritesCpusetGuaranteeAndLiftsCapToKill() throws {
        let fs = RecordingCgroupFS()
        let driver = CgroupV2Driver(root: "/cg", parent: "p", filesystem: fs)
        try driver.create("a_b")
        var settings = ResourceSettings()
        settings.cpuGuaranteeWeight = 341
        settings.cpus = [1]
        settings.cpuCapPercent = 25
        try driver.apply(settings, to: "a_b")
        let files = fs.state.withLock { $0.files }
        #expect(files["/cg/p/a_b/cpu.weight"] == "133")
        #expect(files["/cg/p/a_b/cpuset.cpus"] == "1")
        try fs.write("/cg/p/a_b/cgroup.procs", "")
        try driver.killAll("a_b")
        #expect(fs.state.withLock { $0.files["/cg/p/a_b/cpu.max"] } == "max 100000")
        try fs.write("/cg/cpuset.cpus.effective", "0-3\n")
        #expect(driver.availableCPUs() == [0, 1, 2, 3])
    }

    @Test func v1KeepsMemswAboveTheLimitAtEveryStep() throws {
        let fs = RecordingCgroupFS()
        let hierarchies = ["cpu": "/v1/cpu", "memory": "/v1/memory", "pids": "/v1/pids", "freezer": "/v1/freezer", "cpuset": "/v1/cpuset"]
        let driver = try CgroupV1Driver(hierarchies: hierarchies, parent: "p", filesystem: fs)
        try fs.write("/v1/memory/p/s_x/memory.memsw.limit_in_bytes", "9223372036854771712")
        try fs.write("/v1/freezer/p/s_x/freezer.state", "THAWED")
        var settings = ResourceSettings()
        settings.memoryMaxBytes = 32 << 20
        settings.cpus = [0, 1]
        try driver.apply(settings, to: "s_x")
        let log = fs.state.withLock { $0.log }.filter { $0.contains("memory.limit") || $0.contains("memsw") }
        #expect(log.suffix(3) == [
            "/v1/memory/p/s_x/memory.memsw.limit_in_bytes=-1",
            "/v1/memory/p/s_x/memory.limit_in_bytes=33554432",
            "/v1/memory/p/s_x/memory.memsw.limit_in_bytes=33554432",
        ])
        #expect(fs.state.withLock { $0.files["/v1/cpuset/p/s_x/cpuset.cpus"] } == "0-1")
        #expect(fs.state.withLock { $0.files["/v1/cpu/p/s_x/cpu.cfs_quota_us"] } == "-1")
    }
}

/// Project quotas cannot run on the test machines' kernel: the backend's logic runs against
/// this stand-in; the real kernel calls are checked to fail cleanly where quotas are off.
final class FakeProjectKernel: ProjectQuotaKernel {
    let state = Mutex<(enabled: Bool, projects: [String: UInt32], limits: [UInt32: (UInt64, UInt64)])>((true, [:], [:]))

    func checkEnabled(_ path: String) throws(SystemError) {
        if !state.withLock({ $0.enabled }) { throw SystemError(stage: "fake", attempted: "Q_GETINFO", errno: ESRCH) }
    }
    func setProject(_ path: String, _ id: UInt32) throws(SystemError) { state.withLock { $0.projects[path] = id } }
    func project(of path: String) throws(SystemError) -> UInt32 { state.withLock { $0.projects[path] ?? 0 } }
    func setLimits(_ storage: String, id: UInt32, blockKiB: UInt64, inodes: UInt64) throws(SystemError) {
        state.withLock { $0.limits[id] = (blockKiB, inodes) }
    }
    func usage(_ storage: String, id: UInt32) throws(SystemError) -> (bytes: UInt64, inodes: UInt64, blockKiB: UInt64, inodeLimit: UInt64) {
        let limit: (UInt64, UInt64) = state.withLock { $0.limits[id] } ?? (0, 0)
        return (4096, 3, limit.0, limit.1)
    }
}

@Suite struct ProjectQuotaTests {
    @Test func directoryGetsItsProjectAndLimits() throws {
        let storage = "/tmp/sliverd-test-project-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileSystem.makeDirectories(storage)
        defer { try? FileSystem.removeTree(storage) }
        let kernel = FakeProjectKernel()
        let quota = try ProjectQuota(storage: storage, kernel: kernel)
        let dir = storage + "/a_b"
        try quota.createDirectory(dir, quotaID: 1_000_007)
        #expect(FileSystem.isDirectory(dir))
        #expect(try FileSystem.statOwner(dir).mode & 0o777 == 0o700)
        #expect(kernel.state.withLock { $0.projects[dir] } == 1_000_007)
        // 1 KiB blocks, rounded up.
        try quota.setLimit(DiskLimit(bytes: 8 << 20, inodes: 1000), path: dir, quotaID: 1_000_007)
        #expect(kernel.state.withLock { $0.limits[1_000_007]! } == (8192, 1000))
        try quota.setLimit(DiskLimit(bytes: 1025), path: dir, quotaID: 1_000_007)
        #expect(kernel.state.withLock { $0.limits[1_000_007]! } == (2, 0))
        #expect(quota.usage(path: dir, quotaID: 1_000_007) == DiskUsage(bytes: 4096, limitBytes: 2048, inodes: 3, inodeLimit: nil))
        // A directory with another project id (made under another backend) is refused.
        #expect(throws: ResourceError.self) { try quota.setLimit(DiskLimit(bytes: 1), path: dir, quotaID: 5) }
        // Removal clears the id's limits, reading the id from the directory.
        try quota.removeDirectory(dir, quotaID: 0)
        #expect(!FileSystem.exists(dir))
        #expect(kernel.state.withLock { $0.limits[1_000_007]! } == (0, 0))
        #expect(throws: ResourceError.self) { try quota.createDirectory(dir, quotaID: 0) }
    }

    @Test func refusedWhereQuotasAreOff() throws {
        let kernel = FakeProjectKernel()
        kernel.state.withLock { $0.enabled = false }
        do {
            _ = try ProjectQuota(storage: "/tmp", kernel: kernel)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.message.contains("prjquota"))
        }
        // The real kernel calls: no project quotas (and no btrfs) on the test machines' /tmp.
        #expect(throws: ResourceError.self) { try ProjectQuota(storage: "/tmp") }
        #expect(throws: ResourceError.self) { try BtrfsQuota(storage: "/tmp") }
        #expect((try? DiskQuotaBackend.open(.none, storage: "/tmp"))?.kind == DiskQuotaKind.none)
    }
}

@Suite struct UsageTableTests {
    func view(_ name: String, cpu: UInt64?, pid: Int32? = 10) -> SliverView {
        var view = SliverView(try! SliverRecordFixture.record(name), usage: nil)
        var usage = ResourceUsage()
        usage.cpuNanoseconds = cpu
        usage.memoryBytes = 1536
        usage.memoryPeakBytes = 5 << 20
        usage.oomKills = 0
        usage.pids = 2
        usage.diskBytes = 1 << 20
        usage.diskLimitBytes = 8 << 20
        view.usage = usage
        view.initPid = pid
        return view
    }

    @Test func sortedByCPU() {
        let before = [view("a_x", cpu: 0), view("b_x", cpu: 0), view("c_x", cpu: 100)]
        let after = [view("a_x", cpu: 250_000_000), view("b_x", cpu: 1_000_000_000), view("c_x", cpu: 200, pid: 11)]
        let rows = UsageTable.rows(previous: before, current: after, elapsed: 1)
        #expect(rows.map(\.name) == ["b_x", "a_x", "c_x"])
        #expect(rows[0].cpuPercent == 100)
        #expect(rows[1].cpuPercent == 25)
        #expect(rows[2].cpuPercent == nil)  // restarted in between: no rate
        let text = UsageTable.render(rows)
        let lines = text.split(separator: "\n")
        #expect(lines[0].split(separator: " ").map(String.init) == UsageTable.header)
        #expect(lines[1].split(separator: " ").map(String.init) == ["b_x", "running", "100.0", "1.5K", "5.0M", "0", "2", "1.0M/8.0M"])
        #expect(lines[3].split(separator: " ")[2] == "-")
    }

    @Test func bytes() {
        #expect(UsageTable.bytes(512) == "512B")
        #expect(UsageTable.bytes(1536) == "1.5K")
        #expect(UsageTable.bytes(32 << 20) == "32M")
        #expect(UsageTable.bytes(3 << 30) == "3.0G")
    }
}

enum SliverRecordFixture {
    static func record(_ name: String) throws -> SliverRecord {
        SliverRecord(name: name, image: "busybox", imagePath: "/img", attributes: SliceAttributes(),
                     idRange: try IDRangeAllocator(first: 1 << 20, slots: 4).allocate(excluding: []),
                     state: .running, initProcess: nil, createdAt: 0, startedAt: nil)
    }
}
