#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import Logging
import Testing
@testable import NodeManager
import SliverIsolation
import SliverResources
import SliverSystem

/// Locations of the built executables and a shared test image.
enum TestEnvironment {
    static let isRoot = getuid() == 0

    /// The directory of the test binary: SwiftPM puts sliverd and sliver-helper next to it
    /// (bootscripts/sliverd-build before `swift test`, as .ci/run does).
    static let buildDirectory: String = {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        var dir = FileSystem.parentDirectory(exe)
        // Some runners live inside the .xctest bundle directory.
        if !FileSystem.exists(dir + "/sliver-helper"), dir.hasSuffix(".xctest") { dir = FileSystem.parentDirectory(dir) }
        return dir
    }()

    static var helper: String { buildDirectory + "/sliver-helper" }
    static var sliverd: String { buildDirectory + "/sliverd" }
    static var sliverctl: String { buildDirectory + "/sliverctl" }
    static var vsh: String { buildDirectory + "/vsh" }

    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// A minimal busybox root filesystem plus the static escape probe, built once per test run.
    static let image: String = {
        let dir = "/tmp/sliverd-test-image-\(getpid())"
        let script = """
        set -e
        rm -rf \(dir)
        mkdir -p \(dir)/bin \(dir)/sbin \(dir)/etc \(dir)/proc \(dir)/sys \(dir)/dev \(dir)/tmp \(dir)/root \(dir)/var/log \(dir)/run
        chmod 1777 \(dir)/tmp
        cp /bin/busybox \(dir)/bin/busybox
        for applet in $(\(dir)/bin/busybox --list); do [ -e \(dir)/bin/$applet ] || ln -s busybox \(dir)/bin/$applet; done
        printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/:/bin/false\\n' > \(dir)/etc/passwd
        printf 'root:x:0:\\ntty:x:5:\\nnogroup:x:65534:\\n' > \(dir)/etc/group
        echo image-original > \(dir)/etc/marker
        gcc -static -O1 -o \(dir)/bin/escape-probe \(repoRoot)/Tests/SliverdTests/Fixtures/escape-probe.c
        gcc -static -O1 -o \(dir)/bin/netprobe \(repoRoot)/Tests/SliverdTests/Fixtures/netprobe.c
        chmod -R go-w \(dir)
        """
        let result = try! Spawn.run(["/bin/sh", "-c", script])
        precondition(result.status == 0, "building the test image failed: \(result.stderr)")
        return dir
    }()

    static func requireBuilt() throws {
        for path in [helper, sliverd] where !FileSystem.exists(path) {
            throw TestSetupError("\(path) is missing: run bootscripts/sliverd-build before swift test")
        }
    }
}

struct TestSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One isolated "node" for a test: its own state dir, storage dir, socket, cgroup parent
/// (`sliverd-test-<prefix>`) and ID region, all removed by `cleanup()` even after a failure.
/// With `btrfsMiB`, the storage dir is a fresh btrfs filesystem of that size on a loop device
/// with quotas enabled (storage.quota = btrfs); cleanup unmounts it and frees the loop device.
final class TestNode {
    let prefix: String
    let root: String
    var config: NodeConfig
    private(set) var manager: SliverManager!
    private(set) var btrfsImage: String?

    init(accounts: Bool = false, btrfsMiB: Int? = nil) throws {
        try TestEnvironment.requireBuilt()
        prefix = String(UInt32.random(in: 0..<UInt32.max), radix: 16)
        root = "/tmp/sliverd-test-\(prefix)"
        config = NodeConfig()
        config.stateDir = root + "/state"
        config.storageDir = root + "/slivers"
        config.runDir = root + "/run"
        config.socketPath = root + "/sliverd.sock"
        config.vshSocketPath = root + "/vsh.sock"
        // Host accounts only where a test asks for them (VshTests): the others leave /etc alone.
        config.manageAccounts = false
        config.vshPath = TestEnvironment.vsh
        config.homeBase = root + "/home"
        // Its own account group: orphan-account cleanup only ever looks at this node's group.
        config.accountGroup = "st\(prefix)"
        config.helperPath = TestEnvironment.helper
        config.cgroupParent = "sliverd-test-\(prefix)"
        config.stopTimeout = 2
        // Never the host's /var/lib/sliverd/images: only what a test puts into its own.
        config.imagesDir = root + "/images"
        // A private region of the id space per test node: never the daemon's, never another test's.
        config.idFirst = 0x1000_0000 + UInt32.random(in: 0..<4096) * 65536 * 4
        config.idSlots = 4
        config.manageAccounts = accounts
        try FileSystem.makeDirectories(root, mode: 0o755)
        do {
            if let btrfsMiB { try mountBtrfs(sizeMiB: btrfsMiB) }
            manager = try makeManager()
            _ = try manager.addImage(name: "busybox", path: TestEnvironment.image)
        } catch {
            cleanup()
            throw error
        }
    }

    /// Whether this machine can run the btrfs tests: mkfs.btrfs, btrfs and the filesystem.
    static var canUseBtrfs: Bool {
        FileSystem.exists("/sbin/mkfs.btrfs") || FileSystem.exists("/usr/sbin/mkfs.btrfs") || FileSystem.exists("/usr/bin/mkfs.btrfs")
    }

    private func mountBtrfs(sizeMiB: Int) throws {
        let image = root + "/btrfs.img"
        btrfsImage = image
        let script = """
        set -e
        truncate -s \(sizeMiB)M \(image)
        mkfs.btrfs -q \(image) >/dev/null
        mkdir -p \(config.storageDir)
        mount -t btrfs -o loop,noatime \(image) \(config.storageDir)
        btrfs quota enable \(config.storageDir)
        """
        let result = try Spawn.run(["/bin/sh", "-c", script])
        guard result.status == 0 else { throw TestSetupError("btrfs setup failed: \(result.stderr)") }
        config.diskQuota = .btrfs
    }

    /// Unmounts the btrfs storage and detaches every loop device backed by its image.
    private func unmountBtrfs() {
        guard let image = btrfsImage else { return }
        let script = """
        if grep -q " \(config.storageDir) " /proc/mounts; then umount \(config.storageDir) || umount -l \(config.storageDir); fi
        for dev in $(losetup -j \(image) -O NAME -n 2>/dev/null); do losetup -d "$dev"; done
        true
        """
        _ = try? Spawn.run(["/bin/sh", "-c", script])
        btrfsImage = nil
    }

    func makeManager(network: Bool = true) throws -> SliverManager {
        let driver = try CgroupDetection.detect(parent: config.cgroupParent, preference: .v1)
        var log = Logger(label: "test")
        log.logLevel = .warning
        var config = self.config
        if !network { config.uplink = "" }  // the test's uplink lives in a namespace of its own
        return try SliverManager(config: config, cgroups: driver, logger: log)
    }

    /// A sliver name unique to this node.
    func name(_ suffix: String) -> String { "t\(prefix.prefix(6))_\(suffix)" }

    var cgroupDirectories: [String] {
        let mounts = (try? FileSystem.readString("/proc/self/mounts")) ?? ""
        return Set(CgroupV1Driver.hierarchies(fromMounts: mounts).values).map { "\($0)/\(config.cgroupParent)" }
    }

    /// Destroys every sliver and removes every cgroup and file of this node.
    func cleanup() {
        // A daemon of this node may have created slivers this process never saw: reload the
        // state (recover also removes orphans), then destroy everything.
        let current = (try? makeManager(network: false)) ?? manager
        try? current?.recover()
        for name in current?.records.keys.sorted() ?? [] { try? current?.destroy(name) }
        for dir in cgroupDirectories where FileSystem.exists(dir) {
            for child in (try? FileSystem.listDirectory(dir)) ?? [] where FileSystem.isDirectory(dir + "/" + child) {
                for pid in ((try? FileSystem.readString("\(dir)/\(child)/cgroup.procs")) ?? "").split(separator: "\n") {
                    if let pid = Int32(pid) { kill(pid, SIGKILL) }
                }
                for _ in 0..<100 where rmdir("\(dir)/\(child)") != 0 { usleep(20_000) }
            }
            rmdir(dir)
        }
        unmountBtrfs()
        try? FileSystem.removeTree(root)
    }

    /// Runs a command inside a sliver and collects its output.
    func run(_ sliver: String, _ argv: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        _ = sliver_pipe_cloexec(&out)
        _ = sliver_pipe_cloexec(&err)
        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let process: SpawnedProcess
        do {
            process = try manager.exec(sliver, argv: argv, environment: [:], cwd: nil, stdio: (devnull, out[1], err[1]))
        } catch {
            [out[0], out[1], err[0], err[1], devnull].forEach { close($0) }
            throw error
        }
        [out[1], err[1], devnull].forEach { close($0) }
        let stdout = readAll(out[0]), stderr = readAll(err[0])
        var status: Int32 = 0
        while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
        close(process.pidfd)
        return (status, stdout, stderr)
    }

    private func readAll(_ fd: Int32) -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        close(fd)
        return String(decoding: data, as: UTF8.self)
    }
}

/// Lines of `/proc/self/status`-style text as a dictionary.
func statusFields(_ text: String) -> [String: String] {
    var fields: [String: String] = [:]
    for line in text.split(separator: "\n") {
        guard let colon = line.firstIndex(of: ":") else { continue }
        fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return fields
}
