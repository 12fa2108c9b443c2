#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import NodeManager
import SliverIsolation
import SliverSystem

/// Real slivers on the real kernel: what a process inside one can see and do.
@Suite(.serialized, .enabled(if: TestEnvironment.isRoot, "needs root"))
struct SliverRuntimeTests {
    @Test func isolationSeenFromInside() throws {
        let node = try TestNode()
        defer { node.cleanup() }
        let name = node.name("iso")
        let record = try node.manager.create(name: name, image: "busybox", attributes: [:], start: true)
        #expect(record.state == .running)
        let initPid = try #require(record.initProcess?.pid)

        // Identity: hostname, /etc/slicename, uid 0 mapped to the sliver's private range.
        let who = try node.run(name, ["/bin/sh", "-c", "hostname; cat /etc/slicename; id -u; cat /proc/self/uid_map; cat /proc/self/gid_map"])
        #expect(who.status == 0, "\(who.stderr)")
        let lines = who.stdout.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        #expect(lines.count == 5)
        #expect(lines[0] == name)
        #expect(lines[1] == name)
        #expect(lines[2] == "0")
        #expect(lines[3] == "0 \(record.idRange.base) 65536")
        #expect(lines[4] == "0 \(record.idRange.base) 65536")
        #expect(record.idRange.base >= node.config.idFirst)

        // From the host, the init runs as the unprivileged host uid of the range.
        let hostStatus = statusFields(try FileSystem.readString("/proc/\(initPid)/status"))
        #expect(hostStatus["Uid"]?.split(separator: "\t").first.map(String.init) == String(record.idRange.base))

        // Every namespace kind differs from the host's (time where the kernel has it).
        for kind in ["user", "pid", "mnt", "net", "uts", "ipc", "cgroup", "time"] {
            let host = linkTarget("/proc/self/ns/\(kind)")
            if host == nil && kind == "time" { continue }
            let sliver = linkTarget("/proc/\(initPid)/ns/\(kind)")
            #expect(host != nil && sliver != nil && host != sliver, "\(kind) namespace is shared with the host")
        }

        // /sys is read-only, /proc/sys too; the network namespace has only a loopback, up.
        #expect(try node.run(name, ["/bin/sh", "-c", "echo 1 > /sys/kernel/profiling"]).status != 0)
        #expect(try node.run(name, ["/bin/ls", "/sys/class/net"]).stdout == "lo\n")

        // Only its own processes: init is pid 1, and every pid is in the sliver's pid namespace.
        let ps = try node.run(name, ["/bin/sh", "-c", "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '"])
        let pids = ps.stdout.split(separator: " ").compactMap { Int($0) }
        #expect(pids.first == 1)
        #expect(pids.allSatisfy { $0 < 100 }, "pids visible: \(pids)")

        // Capabilities, seccomp, no_new_privs.
        let status = statusFields(try node.run(name, ["/bin/cat", "/proc/self/status"]).stdout)
        let expected = String(format: "%016llx", node.config.capabilitySet.mask)
        #expect(status["CapEff"] == expected)
        #expect(status["CapBnd"] == expected)
        #expect(status["CapPrm"] == expected)
        #expect(status["CapInh"] == "0000000000000000")
        #expect(status["CapAmb"] == "0000000000000000")
        #expect(status["Seccomp"] == "2")
        #expect(status["NoNewPrivs"] == "1")
        let dangerous: UInt64 = CapabilitySet.forbidden.mask
        #expect(UInt64(status["CapBnd"] ?? "", radix: 16).map { $0 & dangerous } == 0)

        // No host path shows through init's command line.
        let cmdline = try node.run(name, ["/bin/cat", "/proc/1/cmdline"]).stdout
        #expect(cmdline.hasPrefix("sliver-init \(name)"), "\(cmdline)")
        #expect(!cmdline.contains(node.root) && !cmdline.contains("/sys/fs/cgroup"), "\(cmdline)")

        // The init itself runs restricted too.
        let initStatus = statusFields(try node.run(name, ["/bin/cat", "/proc/1/status"]).stdout)
        #expect(initStatus["Seccomp"] == "2" || initStatus["Seccomp"] == nil)
        #expect(initStatus["NoNewPrivs"] == "1" || initStatus["NoNewPrivs"] == nil)
    }

    @Test func forbiddenOperationsFail() throws {
        let node = try TestNode()
        defer { node.cleanup() }
        let name = node.name("probe")
        _ = try node.manager.create(name: name, image: "busybox", attributes: [:], start: true)
        let result = try node.run(name, ["/bin/escape-probe"])
        #expect(result.status == 0, "\(result.stderr)")
        var outcome: [String: String] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { outcome[String(parts[0])] = String(parts[1]) }
        }
        // Only fds 0-2 at exec.
        #expect(outcome["fds"] == "0,1,2")
        for attempt in ["mount", "raw_socket", "packet_socket", "mknod", "keyctl", "add_key", "bpf", "unshare_user",
                        "unshare_net", "clone_newpid", "setns", "proc_sys_write", "open_tree", "perf_event_open",
                        "userfaultfd", "io_uring_setup", "sysrq_write"] {
            #expect(outcome[attempt]?.hasPrefix("denied") == true, "\(attempt): \(outcome[attempt] ?? "not reported")")
        }
        #expect(outcome["kcore_bytes"] == "0" || outcome["kcore_bytes"] == "-1")
    }

    @Test func filesystemIsCopyOnWriteAndPrivate() throws {
        let node = try TestNode()
        defer { node.cleanup() }
        let a = node.name("fsa"), b = node.name("fsb")
        _ = try node.manager.create(name: a, image: "busybox", attributes: [:], start: true)
        let recordB = try node.manager.create(name: b, image: "busybox", attributes: [:], start: true)
        // A host file outside the image.
        let secret = node.root + "/host-secret"
        try FileSystem.writeAtomically(secret, Array("secret".utf8), mode: 0o644)

        let write = try node.run(a, ["/bin/sh", "-c", "echo changed > /etc/marker && cat /etc/marker && echo mine > /root/a-file && ls -ln /etc/passwd"])
        #expect(write.status == 0, "\(write.stderr)")
        #expect(write.stdout.hasPrefix("changed\n"))
        // The image's files appear owned by the sliver's root.
        #expect(write.stdout.contains(" 0 0 ") || write.stdout.contains(" 0        0 "), "\(write.stdout)")
        // The shared image is untouched; the change lives in A's upper layer, owned by A's range.
        #expect(try FileSystem.readString(TestEnvironment.image + "/etc/marker") == "image-original\n")
        let upper = SliverLayout(storage: node.config.storageDir, name: a).upper
        #expect(try FileSystem.readString(upper + "/etc/marker") == "changed\n")
        let owner = try FileSystem.statOwner(upper + "/root/a-file")
        #expect(owner.uid == node.manager.records[a]!.idRange.base)
        // B sees the original, not A's change; nobody sees host files or the other sliver's files.
        #expect(try node.run(b, ["/bin/cat", "/etc/marker"]).stdout == "image-original\n")
        #expect(try node.run(b, ["/bin/cat", "/root/a-file"]).status != 0)
        #expect(try node.run(a, ["/bin/cat", secret]).status != 0)
        #expect(try node.run(a, ["/bin/ls", node.config.storageDir]).status != 0)
        #expect(try node.run(a, ["/bin/ls", "/proc/\(recordB.initProcess!.pid)/root/"]).stdout.isEmpty)
        // No host mount carries a sliver: mounts live only in the slivers' own namespaces.
        let hostMounts = try FileSystem.readString("/proc/self/mounts")
        #expect(!hostMounts.contains(node.root))
    }

    @Test func exitStatusAndStopStartDestroy() throws {
        let node = try TestNode()
        defer { node.cleanup() }
        let name = node.name("life")
        let created = try node.manager.create(name: name, image: "busybox", attributes: ["cpu_share": "2", "pids_max": "64"], start: true)
        #expect(try node.run(name, ["/bin/sh", "-c", "exit 7"]).status == 7)
        #expect(try node.run(name, ["/bin/false"]).status == 1)
        #expect(try node.run(name, ["/no/such/program"]).status == 127)

        // Attributes reached the cgroups; set changes them live without touching the processes.
        let cpu = "/sys/fs/cgroup/cpu/\(node.config.cgroupParent)/\(name)"
        #expect(try FileSystem.readString(cpu + "/cpu.shares") == "2048\n")
        #expect(try FileSystem.readString("/sys/fs/cgroup/pids/\(node.config.cgroupParent)/\(name)/pids.max") == "64\n")
        _ = try node.manager.set(name, attributes: ["cpu_share": "5"])
        #expect(try FileSystem.readString(cpu + "/cpu.shares") == "5120\n")
        #expect(node.manager.records[name]?.initProcess == created.initProcess)
        #expect(created.initProcess?.isAlive == true)

        // enabled=0 freezes, enabled=1 thaws.
        _ = try node.manager.set(name, attributes: ["enabled": "0"])
        let freezer = "/sys/fs/cgroup/freezer/\(node.config.cgroupParent)/\(name)/freezer.state"
        #expect(try FileSystem.readString(freezer) == "FROZEN\n")
        #expect(throws: NodeError.self) { try node.run(name, ["/bin/true"]) }
        _ = try node.manager.set(name, attributes: ["enabled": "1"])
        #expect(try FileSystem.readString(freezer) == "THAWED\n")

        // A background process resists SIGTERM; stop still ends everything.
        _ = try node.run(name, ["/bin/sh", "-c", "trap '' TERM; (trap '' TERM; sleep 1000) >/dev/null 2>&1 & echo started"])
        let stopped = try node.manager.stop(name)
        #expect(stopped.state == .stopped)
        #expect(created.initProcess?.isAlive == false)
        #expect(node.manager.cgroups.processes(of: name).isEmpty)
        #expect(throws: NodeError.self) { try node.run(name, ["/bin/true"]) }

        // Files survive stop/start.
        _ = try node.manager.start(name)
        #expect(try node.run(name, ["/bin/sh", "-c", "echo kept > /root/f"]).status == 0)
        _ = try node.manager.stop(name)
        _ = try node.manager.start(name)
        #expect(try node.run(name, ["/bin/cat", "/root/f"]).stdout == "kept\n")

        // Destroy leaves nothing: no process, cgroup, directory, record or ID reservation.
        let record = try node.manager.record(name)
        try node.manager.destroy(name)
        #expect(record.initProcess?.isAlive == false)
        for dir in node.cgroupDirectories { #expect(!FileSystem.exists(dir + "/" + name)) }
        #expect(!FileSystem.exists(node.config.storageDir + "/" + name))
        #expect(!FileSystem.exists(node.config.stateDir + "/slivers/\(name).json"))
        #expect(node.manager.records[name] == nil)
        #expect(!(try FileSystem.readString("/proc/self/mounts")).contains(name))
        let again = try node.manager.create(name: name, image: "busybox", attributes: [:], start: false)
        #expect(again.idRange == record.idRange)  // the slot was released and is the lowest free
        #expect(again.state == .stopped)
    }

    @Test func badInputChangesNothing() throws {
        let node = try TestNode()
        defer { node.cleanup() }
        func expectError(_ code: NodeError.Code, field: String?, _ body: () throws -> Void) {
            do {
                try body()
                Issue.record("no error")
            } catch let error as NodeError {
                #expect(error.code == code, "\(error)")
                if let field { #expect(error.field == field, "\(error)") }
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
        expectError(.invalidArgument, field: "name") { _ = try node.manager.create(name: "../etc", image: "busybox", attributes: [:], start: false) }
        expectError(.notFound, field: "image") { _ = try node.manager.create(name: node.name("x"), image: "nope", attributes: [:], start: false) }
        expectError(.invalidArgument, field: "cpu_share") { _ = try node.manager.create(name: node.name("x"), image: "busybox", attributes: ["cpu_share": "-3"], start: false) }
        expectError(.notFound, field: "name") { try node.manager.destroy(node.name("ghost")) }
        expectError(.invalidArgument, field: "path") { _ = try node.manager.addImage(name: "tmp", path: "/tmp") }
        #expect(node.manager.records.isEmpty)
        #expect(try FileSystem.listDirectory(node.config.storageDir).isEmpty)
        _ = try node.manager.create(name: node.name("dup"), image: "busybox", attributes: [:], start: false)
        expectError(.alreadyExists, field: "name") { _ = try node.manager.create(name: node.name("dup"), image: "busybox", attributes: [:], start: false) }
        #expect(node.manager.records.count == 1)
    }

    /// An image that is not registered but sits in images_dir is registered on first use (with
    /// addImage's checks); a name that is neither fails naming both places; a name that is not an
    /// image name never becomes a path.
    @Test func imagesDirectoryRegistersOnFirstUse() throws {
        let node = try TestNode()
        defer { node.cleanup() }
        let directory = node.config.imagesDir + "/auto"
        try FileSystem.makeDirectories(node.config.imagesDir, mode: 0o755)
        #expect(try Spawn.run(["/bin/cp", "-a", TestEnvironment.image, directory]).status == 0)
        let name = node.name("img")
        let record = try node.manager.create(name: name, image: "auto", attributes: [:], start: true)
        #expect(record.image == "auto" && record.state == .running)
        #expect(node.manager.images["auto"]?.path == directory)
        #expect(try node.run(name, ["/bin/cat", "/etc/marker"]).stdout == "image-original\n")
        do {
            _ = try node.manager.create(name: node.name("img2"), image: "missing", attributes: [:], start: false)
            Issue.record("an image in neither place was accepted")
        } catch {
            #expect(error.code == .notFound && error.description.contains("no directory \(node.config.imagesDir)/missing"), "\(error)")
        }
        #expect(throws: NodeError.self) { _ = try node.manager.create(name: node.name("img3"), image: "../auto", attributes: [:], start: false) }
        // Group-writable: refused like `sliverctl image add` refuses it.
        #expect(try Spawn.run(["/bin/cp", "-a", TestEnvironment.image, node.config.imagesDir + "/loose"]).status == 0)
        chmod(node.config.imagesDir + "/loose", 0o775)
        #expect(throws: NodeError.self) { _ = try node.manager.create(name: node.name("img4"), image: "loose", attributes: [:], start: false) }
        #expect(node.manager.images["loose"] == nil)
        try node.manager.destroy(name)
    }

    @Test func helperFailureRollsBack() throws {
        let node = try TestNode()
        defer { node.cleanup() }
        // An image without the directories the sliver needs still boots (the helper creates
        // mount points in the upper layer), but a missing image directory must fail cleanly.
        let broken = node.root + "/broken-image"
        try FileSystem.makeDirectories(broken + "/bin", mode: 0o755)
        symlink("/nonexistent", broken + "/bin/sh")
        _ = try node.manager.addImage(name: "broken", path: broken)
        try FileSystem.removeTree(broken)
        #expect(throws: NodeError.self) { _ = try node.manager.create(name: node.name("rb"), image: "broken", attributes: [:], start: true) }
        #expect(node.manager.records.isEmpty)
        #expect(try FileSystem.listDirectory(node.config.storageDir).isEmpty)
        for dir in node.cgroupDirectories { #expect(!FileSystem.exists(dir + "/" + node.name("rb"))) }
    }
}

func linkTarget(_ path: String) -> String? {
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = buffer.withUnsafeMutableBufferPointer { raw in
        raw.baseAddress!.withMemoryRebound(to: CChar.self, capacity: 256) { readlink(path, $0, 255) }
    }
    return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : nil
}
