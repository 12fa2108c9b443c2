import Testing
@testable import SliverResources
import SliverSystem
import Synchronization

/// A stand-in for cgroupfs that records writes: cgroup v2 with controllers does not exist on
/// the test machines (their unified hierarchy has none).
final class RecordingCgroupFS: CgroupFilesystem {
    let state = Mutex<(dirs: Set<String>, files: [String: String], log: [String])>((["/cg"], [:], []))

    func makeDirectory(_ path: String) throws(SystemError) { state.withLock { _ = $0.dirs.insert(path) } }
    func removeDirectory(_ path: String) throws(SystemError) { state.withLock { _ = $0.dirs.remove(path) } }
    func exists(_ path: String) -> Bool { state.withLock { $0.dirs.contains(path) || $0.files[path] != nil } }
    func write(_ path: String, _ value: String) throws(SystemError) {
        state.withLock { $0.files[path] = value; $0.log.append("\(path)=\(value)") }
    }
    func read(_ path: String) throws(SystemError) -> String {
        guard let value = state.withLock({ $0.files[path] }) else { throw SystemError(stage: "test", attempted: path, errno: 2) }
        return value
    }
    func list(_ path: String) throws(SystemError) -> [String] {
        state.withLock { s in s.dirs.filter { $0.hasPrefix(path + "/") && !$0.dropFirst(path.count + 1).contains("/") }
            .map { String($0.dropFirst(path.count + 1)) }.sorted() }
    }
}

@Suite struct CgroupV2DriverTests {
    @Test func createApplyFreezeKillRemove() throws {
        let fs = RecordingCgroupFS()
        let driver = CgroupV2Driver(root: "/cg", parent: "sliverd", filesystem: fs)
        try driver.create("a_b")
        #expect(fs.state.withLock { $0.files["/cg/cgroup.subtree_control"] } == "+cpu +cpuset +memory +pids +io")
        #expect(driver.directories(of: "a_b") == ["/cg/sliverd/a_b"])
        var settings = ResourceSettings()
        settings.cpuShare = 3
        settings.cpuCapPercent = 25
        settings.memoryMaxBytes = 1 << 30
        settings.pidsMax = 100
        try driver.apply(settings, to: "a_b")
        let files = fs.state.withLock { $0.files }
        #expect(files["/cg/sliverd/a_b/cpu.weight"] == "300")
        #expect(files["/cg/sliverd/a_b/cpu.max"] == "25000 100000")
        #expect(files["/cg/sliverd/a_b/memory.max"] == "1073741824")
        #expect(files["/cg/sliverd/a_b/memory.high"] == "max")
        #expect(files["/cg/sliverd/a_b/pids.max"] == "100")
        #expect(files["/cg/sliverd/a_b/cgroup.freeze"] == "0")
        settings.frozen = true
        try driver.apply(settings, to: "a_b")
        #expect(fs.state.withLock { $0.files["/cg/sliverd/a_b/cgroup.freeze"] } == "1")
        try fs.write("/cg/sliverd/a_b/cgroup.procs", "")
        try driver.killAll("a_b")
        #expect(fs.state.withLock { $0.files["/cg/sliverd/a_b/cgroup.kill"] } == "1")
        #expect(driver.slivers() == ["a_b"])
        try driver.remove("a_b")
        #expect(!driver.exists("a_b"))
    }

    @Test func usageParsing() throws {
        let fs = RecordingCgroupFS()
        let driver = CgroupV2Driver(root: "/cg", parent: "p", filesystem: fs)
        try fs.write("/cg/p/x/cpu.stat", "usage_usec 1500\nuser_usec 1000\n")
        try fs.write("/cg/p/x/memory.current", "4096\n")
        try fs.write("/cg/p/x/memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n")
        try fs.write("/cg/p/x/pids.current", "3\n")
        let usage = driver.usage(of: "x")
        #expect(usage.cpuNanoseconds == 1_500_000)
        #expect(usage.memoryBytes == 4096)
        #expect(usage.oomKills == 1)
        #expect(usage.pids == 3)
    }

    @Test func v1MountParsing() {
        let mounts = """
        cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
        cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
        cgroup /x/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0
        cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
        cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
        cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0
        """
        let h = CgroupV1Driver.hierarchies(fromMounts: mounts)
        #expect(h["memory"] == "/sys/fs/cgroup/memory")
        #expect(h["cpu"] == "/x/cpu,cpuacct")
        #expect(h["systemd"] == nil)
    }
}
