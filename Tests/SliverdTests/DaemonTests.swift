#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import Testing
@testable import NodeManager
import SliverSystem

/// The sliverd and sliverctl executables, as an operator runs them.
@Suite(.serialized, .enabled(if: TestEnvironment.isRoot, "needs root"))
struct DaemonTests {
    /// A running sliverd for one test node.
    final class Daemon {
        let node: TestNode
        let configPath: String
        /// Network namespace (under /run/netns) the daemon runs in, for the network tests.
        let netns: String?
        var process: SpawnedProcess?

        /// `extra`: more TOML tables for the config ([provisioning] in ProvisioningTests).
        init(_ node: TestNode, netns: String? = nil, extra: String = "") throws {
            self.node = node
            self.netns = netns
            configPath = node.root + "/sliverd.toml"
            let config = """
            [daemon]
            state_dir = "\(node.config.stateDir)"
            storage_dir = "\(node.config.storageDir)"
            run_dir = "\(node.config.runDir)"
            socket = "\(node.config.socketPath)"
            vsh_socket = "\(node.config.vshSocketPath)"
            helper = "\(node.config.helperPath)"
            log_level = "debug"
            [ids]
            first = \(node.config.idFirst)
            slots = \(node.config.idSlots)
            [cgroups]
            parent = "\(node.config.cgroupParent)"
            [sliver]
            stop_timeout_s = 2
            [storage]
            images_dir = "\(node.config.imagesDir)"
            [accounts]
            manage = \(node.config.manageAccounts)
            vsh = "\(node.config.vshPath)"
            home_dir = "\(node.config.homeBase)"
            group = "\(node.config.accountGroup)"
            [network]
            uplink = "\(node.config.uplink)"
            public_addresses = [\(node.config.publicAddresses.map { "\"\($0)\"" }.joined(separator: ", "))]
            address_pool = [\(node.config.addressPool.map { "\"\($0)\"" }.joined(separator: ", "))]
            nft_table = "\(node.config.nftTable)"
            exceptional_pps = \(node.config.exceptionalPPS)
            bandwidth_cap_kbit = \(node.config.bandwidthCapKbit)
            bwmon_period_s = \(node.config.bwmonPeriod)
            \(extra)
            """
            try FileSystem.writeAtomically(configPath, Array(config.utf8), mode: 0o644)
        }

        func start() throws {
            let log = open(node.root + "/sliverd.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
            defer { close(log); close(devnull) }
            // nsenter --net only (not `ip netns exec`, which remounts /sys and would hide cgroupfs).
            let prefix = netns.map { ["/usr/bin/nsenter", "--net=/run/netns/\($0)", "--"] } ?? []
            process = try Spawn.start(prefix + [TestEnvironment.sliverd, "--config", configPath], stdio: (devnull, log, log))
            for _ in 0..<500 {
                if (try? ControlClient(socketPath: node.config.socketPath).call(ControlRequest(op: "ping")))?.ok == true { return }
                usleep(10_000)
            }
            throw TestSetupError("sliverd did not come up: \((try? FileSystem.readString(node.root + "/sliverd.log")) ?? "")")
        }

        func stop(signal: Int32) {
            guard let process else { return }
            _ = sliver_pidfd_send_signal(process.pidfd, signal)
            var status: Int32 = 0
            while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
            close(process.pidfd)
            self.process = nil
        }

        func client() throws -> ControlClient { try ControlClient(socketPath: node.config.socketPath) }

        /// sliverctl with this daemon's socket.
        func ctl(_ arguments: [String]) throws -> CompletedProcess {
            try Spawn.run([TestEnvironment.sliverctl, "--socket", node.config.socketPath] + arguments)
        }
    }

    @Test func sigkillRestartKeepsSlivers() throws {
        let node = try TestNode()
        let daemon = try Daemon(node)
        defer {
            daemon.stop(signal: SIGKILL)
            node.cleanup()
        }
        try daemon.start()
        let name = node.name("keep")
        var create = ControlRequest(op: "create", name: name)
        create.image = "busybox"
        create.attributes = ["cpu_share": "3"]
        let before = try daemon.client().result(create, as: SliverView.self)
        #expect(before.state == "running")
        let pid = try #require(before.initPid)

        daemon.stop(signal: SIGKILL)
        #expect(ProcessIdentity.of(pid: pid) != nil, "the sliver died with the daemon")
        try daemon.start()

        let after = try daemon.client().result(ControlRequest(op: "show", name: name), as: SliverView.self)
        #expect(after.state == "running")
        #expect(after.initPid == pid)
        // Still manageable: exec through the restarted daemon, change attributes, destroy.
        let exec = try daemon.ctl(["exec", name, "--", "/bin/sh", "-c", "cat /etc/slicename; exit 3"])
        #expect(exec.status == 3)
        #expect(exec.stdout == name + "\n")
        #expect(try daemon.ctl(["set", name, "cpu_share=4"]).status == 0)
        #expect(try daemon.ctl(["destroy", name]).status == 0)
        #expect(ProcessIdentity.of(pid: pid) == nil)
        daemon.stop(signal: SIGTERM)
    }

    @Test func restartCleansUpHalfCreatedSlivers() throws {
        let node = try TestNode()
        let daemon = try Daemon(node)
        defer {
            daemon.stop(signal: SIGKILL)
            node.cleanup()
        }
        // What a daemon killed in the middle of a create leaves: a record in state creating, its
        // cgroups and its directory; plus an orphan cgroup with no record at all.
        let half = node.name("half"), orphan = node.name("orphan")
        let manager = node.manager!
        _ = try manager.create(name: half, image: "busybox", attributes: [:], start: true)
        var record = try manager.record(half)
        record.state = .creating
        try StateStore(directory: node.config.stateDir).save(record)
        try manager.cgroups.create(orphan)
        try daemon.start()
        let list = try daemon.client().result(ControlRequest(op: "list"), as: [SliverView].self)
        #expect(list.isEmpty)
        #expect(record.initProcess?.isAlive == false)
        for dir in node.cgroupDirectories {
            #expect(!FileSystem.exists(dir + "/" + half))
            #expect(!FileSystem.exists(dir + "/" + orphan))
        }
        #expect(!FileSystem.exists(node.config.storageDir + "/" + half))
        daemon.stop(signal: SIGTERM)
    }

    @Test func cliReportsBadInputClearly() throws {
        let node = try TestNode()
        let daemon = try Daemon(node)
        defer {
            daemon.stop(signal: SIGKILL)
            node.cleanup()
        }
        // Not running yet.
        let down = try daemon.ctl(["list"])
        #expect(down.status != 0)
        #expect(down.stderr.contains("is sliverd running?"))

        try daemon.start()
        #expect(try daemon.ctl(["image", "add", "busybox", TestEnvironment.image]).status == 0)
        let badName = try daemon.ctl(["create", "Bad/Name", "--image", "busybox"])
        #expect(badName.status != 0)
        #expect(badName.stderr.contains("invalid name \"Bad/Name\""), "\(badName.stderr)")
        let badImage = try daemon.ctl(["create", node.name("a"), "--image", "nope"])
        #expect(badImage.stderr.contains("unknown image \"nope\""), "\(badImage.stderr)")
        let badAttr = try daemon.ctl(["create", node.name("a"), "--image", "busybox", "--set", "cpu_share=lots"])
        #expect(badAttr.stderr.contains("invalid attribute cpu_share \"lots\""), "\(badAttr.stderr)")
        let unknownAttr = try daemon.ctl(["create", node.name("a"), "--image", "busybox", "--set", "warp=9"])
        #expect(unknownAttr.stderr.contains("unknown attribute \"warp\""), "\(unknownAttr.stderr)")
        let ghost = try daemon.ctl(["destroy", node.name("ghost")])
        #expect(ghost.status == 3)
        #expect(ghost.stderr.contains("no sliver"))
        #expect(try daemon.ctl(["list", "--json"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" ||
                (try daemon.ctl(["list", "--json"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) == "[]")

        let ok = try daemon.ctl(["create", node.name("a"), "--image", "busybox", "--set", "cpu_share=2"])
        #expect(ok.status == 0, "\(ok.stderr)")
        let dup = try daemon.ctl(["create", node.name("a"), "--image", "busybox"])
        #expect(dup.stderr.contains("already exists"))
        let show = try daemon.ctl(["show", node.name("a"), "--json"])
        let view = try JSONDecoder().decode(SliverView.self, from: Data(show.stdout.utf8))
        #expect(view.state == "running")
        #expect(view.initPid != nil)
        #expect(view.attributes["cpu_share"] == "2")
        #expect(try daemon.ctl(["list"]).stdout.contains(node.name("a")))
        #expect(try daemon.ctl(["stop", node.name("a")]).status == 0)
        #expect(try daemon.ctl(["start", node.name("a")]).status == 0)
        #expect(try daemon.ctl(["destroy", node.name("a")]).status == 0)
        daemon.stop(signal: SIGTERM)
    }
}
