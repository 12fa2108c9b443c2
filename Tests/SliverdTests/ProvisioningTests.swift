#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import Testing
@testable import NodeManager
import SliverSystem

/// Issue 6's acceptance list against the real sliverd, real slivers and plcd (which checks the
/// node's HMAC like PLCAPI). Poll period 1 s; "within one poll" is checked as period + 1 s.
@Suite(.serialized, .enabled(if: TestEnvironment.isRoot, "needs root"))
struct ProvisioningTests {
    @Test func sliceLifecycleFollowsPLC() throws {
        let p = try ProvisionedNode()
        defer { p.cleanup() }
        let a = p.node.name("a")
        var slice = TestSlice(name: a, id: 1, attributes: [("vref", "busybox"), ("initscript", "count"),
                                                           ("cpu_share", "3"), ("memlock_hard", "131072"), ("vsys", "vif_up")])
        try p.start()

        // A new slice: a running sliver with its keys and resources within one poll.
        try p.publish([slice])
        let appeared = try p.eventually("sliver created", timeout: p.period + 3) { try p.views()[a]?.state == "running" }
        #expect(appeared <= p.period + 1)
        #expect(try p.keys(a) == [TestKeys.alice])
        #expect(p.cgroupValue(a, "cpu.shares") == "3072")
        #expect(p.cgroupValue(a, "memory.limit_in_bytes") == String(131_072 * 1024))
        try p.eventually("initscript start", timeout: 3) { try p.initscriptRuns(a) == ["start \(a)"] }
        let pid = try #require(try p.views()[a]?.initPid)

        // A key change is live within one poll, without a restart.
        slice.keys = [TestKeys.bob]
        try p.publish([slice])
        let rekeyed = try p.eventually("key change", timeout: p.period + 3) { try p.keys(a) == [TestKeys.bob] }
        #expect(rekeyed <= p.period + 1)
        #expect(try p.views()[a]?.initPid == pid)
        #expect(try p.initscriptRuns(a) == ["start \(a)"])

        // An attribute change applies live too; a tag PLC drops returns to its default.
        slice.attributes = [("vref", "busybox"), ("initscript", "count"), ("cpu_share", "7")]
        try p.publish([slice])
        try p.eventually("cpu_share 7", timeout: p.period + 3) { p.cgroupValue(a, "cpu.shares") == "7168" }
        #expect(p.cgroupValue(a, "memory.limit_in_bytes").flatMap { UInt64($0) }.map { $0 > 1 << 40 } == true)
        #expect(try p.views()[a]?.initPid == pid)

        // Removing the slice destroys the sliver completely.
        #expect(try p.exec(a, "echo before > /root/marker").status == 0)
        try p.publish([])
        try p.eventually("destroyed", timeout: p.period + 3) { try p.views()[a] == nil }
        #expect(p.traces(a).isEmpty, "\(p.traces(a))")
        #expect(ProcessIdentity.of(pid: pid) == nil)

        // Re-adding the name gives a fresh sliver: the marker is gone.
        try p.publish([slice])
        try p.eventually("re-created", timeout: p.period + 3) { try p.views()[a]?.state == "running" }
        #expect(try p.exec(a, "test -e /root/marker").status == 1)
        #expect(try p.views()[a]?.initPid != pid)

        // Expiry: destroyed when `expires` passes (the timer fires then, not at the next poll).
        slice.expires = Int(Date().timeIntervalSince1970) + 2
        try p.publish([slice])
        try p.eventually("expired", timeout: 2 + p.period + 3) { try p.views()[a] == nil }
        #expect(p.traces(a).isEmpty)

        // Every step is an event with the sliver's name and the reason.
        let events = try p.events().filter { $0.sliver == a }
        for (kind, reason) in [(ProvisioningEvent.Kind.create, "new in the snapshot"), (.update, "keys 1 -> 1"),
                               (.update, "cpu_share 3 -> 7, memlock_hard 131072 -> default"), (.destroy, "not in the snapshot"),
                               (.destroy, "expired at"), (.notice, "vsys=vif_up")] {
            #expect(events.contains { $0.kind == kind && $0.reason.contains(reason) }, "no \(kind) event with \"\(reason)\": \(events)")
        }
    }

    @Test func repeatedPollsOfTheSameSnapshotChangeNothing() throws {
        let p = try ProvisionedNode()
        defer { p.cleanup() }
        let names = ["x", "y", "z"].map { p.node.name($0) }
        try p.publish(names.enumerated().map { TestSlice(name: $1, id: $0 + 1) },
                      accounts: [["name": "root", "keys": [TestKeys.alice]], ["name": "site_admin", "keys": [TestKeys.bob]]])
        try p.start()
        try p.eventually("all running", timeout: p.period + 3) { try p.views().values.filter { $0.state == "running" }.count == 3 }
        for name in names { try p.eventually("initscript of \(name)", timeout: 3) { try p.initscriptRuns(name).count == 1 } }
        let adminKeys = p.node.root + "/admin-keys"
        #expect(try FileSystem.readString(adminKeys + "/root") == TestKeys.alice + "\n")
        #expect(try FileSystem.readString(adminKeys + "/site_admin") == TestKeys.bob + "\n")
        let session = try FileSystem.statOwner(p.node.config.stateDir + "/provisioning/plc-session")
        #expect(session.uid == 0 && session.mode & 0o777 == 0o600)

        func state() throws -> [String] {
            try p.views().values.sorted { $0.name < $1.name }.map { "\($0.name) \($0.initPid ?? 0) \($0.startedAt ?? 0)" }
                + names.map { "\($0) \(p.recordMtime($0))" }
                + [p.node.config.stateDir + "/provisioning/last-snapshot.json", adminKeys + "/root", adminKeys + "/site_admin"]
                    .map { path in var st = stat(); stat(path, &st); return "\(path) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" }
        }
        let before = try state()
        let runs = try names.map(p.initscriptRuns)
        func unchangedPolls() throws -> Int { try p.events().last { $0.reason == "snapshot unchanged" }?.count ?? 0 }
        let polls = try unchangedPolls()
        try p.eventually("three more polls", timeout: 3 * p.period + 3) { try unchangedPolls() >= polls + 3 }
        // And two forced ones: nothing to do.
        for _ in 0..<2 {
            let report = try p.sync()
            #expect(report.applied && report.reconcile == ReconcileReport(), "\(report)")
        }
        #expect(try state() == before)
        #expect(try names.map(p.initscriptRuns) == runs)
        #expect(try p.events().filter { !$0.sliver.isEmpty && [.create, .update, .start, .destroy, .failure].contains($0.kind) }.count == 3)
    }

    @Test func plcOutageDestroysNothingAndRestartBringsAllBack() throws {
        let p = try ProvisionedNode()
        defer { p.cleanup() }
        let (a, b, c, d) = (p.node.name("a"), p.node.name("b"), p.node.name("c"), p.node.name("d"))
        var slices = [TestSlice(name: a, id: 1), TestSlice(name: b, id: 2), TestSlice(name: c, id: 3)]
        try p.publish(slices)
        try p.start()
        try p.eventually("all running", timeout: p.period + 3) { try p.views().values.filter { $0.state == "running" }.count == 3 }
        let pids = try p.views().mapValues(\.initPid)

        // PLC down for several periods: nothing is created or destroyed, logins still work.
        p.stopPLC()
        try p.eventually("failed polls", timeout: 4 * p.period + 3) {
            try (p.events().last { $0.kind == .failure && $0.sliver.isEmpty }?.count ?? 0) >= 3
        }
        #expect(try p.views().mapValues(\.initPid) == pids)
        #expect(try p.exec(a, "cat /etc/slicename").stdout == a + "\n")
        let failure = try #require(try p.events().last { $0.kind == .failure })
        #expect(failure.reason.contains("node unchanged") && failure.reason.contains("connect to 127.0.0.1"), "\(failure.reason)")

        // An operator destroys b by hand during the outage; then the node dies (sliverd kill -9
        // and every sliver process killed, as in a reboot) and comes back while PLC is still down.
        #expect(try p.daemon.ctl(["destroy", b]).status == 0)
        p.daemon.stop(signal: SIGKILL)
        for dir in p.node.cgroupDirectories {
            for child in (try? FileSystem.listDirectory(dir)) ?? [] {
                for pid in ((try? FileSystem.readString("\(dir)/\(child)/cgroup.procs")) ?? "").split(separator: "\n") {
                    kill(pid_t(pid) ?? 0, SIGKILL)
                }
            }
        }
        let restart = Date()
        try p.start()
        #expect(Date().timeIntervalSince(restart) < 2, "startup waited for PLC")
        // All slivers back from the last good snapshot: a and c restarted by recovery, b re-created.
        try p.eventually("all back", timeout: 5) { try p.views().values.filter { $0.state == "running" }.count == 3 }
        let back = try p.views()
        #expect(Set(back.keys) == [a, b, c])
        #expect(back[a]?.initPid != pids[a] && back[c]?.initPid != pids[c])
        try p.eventually("initscripts of the new boots", timeout: 3) {
            try p.initscriptRuns(a) == ["start \(a)", "start \(a)"] && p.initscriptRuns(b) == ["start \(b)"]
        }

        // PLC returns with changes: converged within one poll (the retry period is period_s).
        slices[0].keys = [TestKeys.bob]
        slices.remove(at: 2)
        slices.append(TestSlice(name: d, id: 4))
        try p.startPLC(slices)
        let converged = try p.eventually("converged", timeout: p.period + 3) {
            let views = try p.views(), keys = try p.keys(a)
            return Set(views.keys) == [a, b, d] && views.values.allSatisfy { $0.state == "running" } && keys == [TestKeys.bob]
        }
        #expect(converged <= p.period + 1)
        #expect(p.traces(c).isEmpty)
    }

    @Test func badAnswersLeaveTheNodeUnchanged() throws {
        // A long period: only `sync` polls, so every answer below is seen exactly once.
        let p = try ProvisionedNode(period: 600)
        defer { p.cleanup() }
        let slices = [TestSlice(name: p.node.name("a"), id: 1), TestSlice(name: p.node.name("b"), id: 2)]
        try p.publish(slices)
        try p.start()
        try p.eventually("running", timeout: 5) { try p.views().values.filter { $0.state == "running" }.count == 2 }
        let before = try p.views().mapValues(\.initPid)
        let applied = try #require(try p.sync().timestamp)

        // Each answer would destroy both slivers if it were applied.
        for (faults, expected) in [(["mode": "truncated"], "plc.GetSlivers:"), (["mode": "wrong_types"], "GetSlivers.slivers: expected an array"),
                                   (["mode": "html"], "HTTP 502 Bad Gateway (HTML page \"502 Bad Gateway\")"),
                                   (["mode": "html200"], "HTML page"), (["mode": "close"], "without an answer")] {
            try p.publish([], faults: faults)
            let report = try p.sync()
            #expect(!report.applied && report.error?.contains(expected) == true, "\(faults): \(report)")
            #expect(try p.views().mapValues(\.initPid) == before)
            #expect(try p.events().last?.reason.contains(expected) == true)
        }
        // A stale snapshot (older than the applied one) is ignored.
        try p.publish([], timestamp: applied - 1)
        let stale = try p.sync()
        #expect(stale.stale && !stale.applied)
        #expect(try p.events().last?.reason == "stale snapshot ignored: timestamp \(applied - 1) is older than the applied \(applied)")
        #expect(try p.views().mapValues(\.initPid) == before)

        // A wrong node key: PLC (restarted, so the saved session is gone) refuses it.
        p.stopPLC()
        p.nodeKey = "not-the-node-key"
        try p.startPLC([])
        let refused = try p.sync()
        #expect(refused.error?.contains("auth.hmac: PLC refused the key of node 12") == true, "\(refused)")
        #expect(try p.views().mapValues(\.initPid) == before)

        // A PLC slower than timeout_s: the fetch gives up, and the daemon keeps answering meanwhile.
        p.stopPLC()
        p.nodeKey = "secret-key-12"
        try p.startPLC(slices)
        try p.publish([], faults: ["mode": "none", "delay_s": 4])
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(devnull) }
        let sync = try Spawn.start([TestEnvironment.sliverctl, "--socket", p.node.config.socketPath, "sync"], stdio: (devnull, devnull, devnull))
        usleep(300_000)
        let ping = Date()
        _ = try p.daemon.client().call(ControlRequest(op: "ping"))
        #expect(Date().timeIntervalSince(ping) < 0.5, "the event loop waited for PLC")
        var status: Int32 = 0
        while sliver_pidfd_wait(sync.pidfd, &status, 0) < 0 && errno == EINTR {}
        close(sync.pidfd)
        #expect(status == 1)
        let timeout = try p.events().last?.reason ?? ""
        #expect(timeout.contains("within 2"), "\(timeout)")
        #expect(try p.views().mapValues(\.initPid) == before)
        for expected in ["plc.GetSlivers:", "expected an array", "HTTP 502", "stale snapshot", "refused the key", "node unchanged"] {
            #expect(p.log.contains(expected), "the log lacks \(expected)")
        }
    }

    @Test func oneBadSliverDoesNotBlockTheOthers() throws {
        let p = try ProvisionedNode(usePLC: false)
        defer { p.cleanup() }
        let (good, other, noImage, badValue) = (p.node.name("good"), p.node.name("other"), p.node.name("noimg"), p.node.name("badval"))
        try p.publish([TestSlice(name: good, id: 1),
                       TestSlice(name: noImage, id: 2, attributes: [("vref", "nope")]),
                       TestSlice(name: badValue, id: 3, attributes: [("vref", "busybox"), ("cpu_share", "lots")]),
                       TestSlice(name: other, id: 4, attributes: [("vref", "busybox"), ("codemux", "host,80"), ("net_max_rate", "-5")])])
        try p.start()
        try p.eventually("good running", timeout: p.period + 3) { try p.views()[good]?.state == "running" }
        let views = try p.views()
        #expect(views[noImage] == nil && views[badValue] == nil && views[other] == nil)
        let failure = try #require(try p.events().first { $0.sliver == noImage && $0.kind == .failure })
        #expect(failure.reason.contains("unknown image \"nope\"") && failure.reason.contains("retry in 5 s"), "\(failure.reason)")
        #expect(try p.events().contains { $0.sliver == badValue && $0.reason.contains("invalid attribute cpu_share \"lots\"") })
        #expect(try p.events().contains { $0.sliver == other && $0.reason.contains("invalid attribute net_max_rate \"-5\"") })

        // plan shows what the next reconcile would do, without doing it.
        let plan = try p.daemon.client().result(ControlRequest(op: "plan"), as: PlanView.self)
        let pending = try #require(plan.actions.first { $0.sliver == noImage })
        #expect(pending.steps.first?.hasPrefix("create image nope") == true && pending.lastError?.contains("unknown image") == true)
        #expect(plan.skipped[badValue]?.contains("cpu_share") == true)
        #expect(try p.views()[noImage] == nil)
        let text = try p.daemon.ctl(["plan"])
        #expect(text.status == 0 && text.stdout.contains("create image nope"), "\(text.stdout)")

        // The image appears: a forced sync does not wait for the backoff.
        #expect(try p.daemon.ctl(["image", "add", "nope", TestEnvironment.image]).status == 0)
        #expect(try p.sync().reconcile?.created == 1)
        #expect(try p.views()[noImage]?.state == "running")
    }

    /// Creating many slivers takes a while; the reconcile runs in slices of 0.2 s so the event
    /// loop keeps answering (sliverctl, vsh logins, init exits) in between.
    @Test func longReconcileKeepsTheLoopResponsive() throws {
        // Enough creates that the reconcile spans several 0.2 s slices on a fast machine (40 took
        // only 0.35 s once creation got faster, and one slice's wait is then half of it).
        let count = 100
        let p = try ProvisionedNode(usePLC: false, slots: count + 4) { config in
            config.idFirst = 0x6800_0000 + UInt32.random(in: 0..<8) * 65536 * 128
        }
        defer { p.cleanup() }
        try p.publish((0..<count).map { TestSlice(name: p.node.name("r\($0)"), id: $0 + 1, attributes: [("vref", "busybox")]) })
        try p.start()
        let start = Date()
        // Every request (list, ping) is timed: each may arrive while a slice runs.
        var slowest = 0.0
        func timed<T>(_ body: () throws -> T) rethrows -> T {
            let sent = Date()
            defer { slowest = max(slowest, Date().timeIntervalSince(sent)) }
            return try body()
        }
        while try timed({ try p.views() }).count < count {
            _ = try timed { try p.daemon.client().call(ControlRequest(op: "ping")) }
            #expect(Date().timeIntervalSince(start) < 60)
            usleep(UInt32.random(in: 1_000...30_000))
        }
        let total = Date().timeIntervalSince(start)
        print("\(count) creates took \(String(format: "%.2f", total)) s; slowest request meanwhile \(String(format: "%.3f", slowest)) s")
        #expect(slowest < 0.6 && slowest < total / 2, "a request waited \(slowest) s while \(count) creates took \(total) s")
    }

    /// sliverd killed with SIGKILL at random moments while it provisions, sometimes with every
    /// sliver process killed too (a reboot): after each restart the node converges, and at the
    /// end nothing is left. Networking is on (the daemon in its own network namespace), so veths
    /// and nftables elements are checked too. SLIVERD_KILL_SLIVERS / SLIVERD_KILL_ROUNDS give the
    /// size (the issue's 50 x 20 by hand; 10 x 5 in the suite).
    @Test func killNineWhileProvisioningConverges() throws {
        let environment = ProcessInfo.processInfo.environment
        let count = environment["SLIVERD_KILL_SLIVERS"].flatMap(Int.init) ?? 10
        let rounds = environment["SLIVERD_KILL_ROUNDS"].flatMap(Int.init) ?? 5
        let slots = count * 2 + 4
        precondition(slots <= 128, "at most 62 slivers")
        let p = try ProvisionedNode(usePLC: false, accounts: true, slots: slots, network: true) { config in
            // A region of the id space no other test node uses, large enough for the slots.
            config.idFirst = 0x5800_0000 + UInt32.random(in: 0..<16) * 65536 * 128
        }
        defer { p.cleanup() }
        let all = (0..<(count + count / 2)).map { p.node.name("k\($0)") }
        let base = Int(Date().timeIntervalSince1970)
        var started = Date()
        for round in 0..<rounds {
            // Alternate between two overlapping sets: each round creates and destroys.
            let wanted = round % 2 == 0 ? Array(all[0..<count]) : Array(all[(count / 2)...])
            try p.publish(wanted.enumerated().map { TestSlice(name: $1, id: $0 + 1) }, timestamp: base + round)
            if round == 0 { try p.start() }
            usleep(UInt32.random(in: 0...UInt32(1_000_000 + count * 30_000)))
            p.daemon.stop(signal: SIGKILL)
            let reboot = Bool.random()
            if reboot {
                for dir in p.node.cgroupDirectories {
                    for child in (try? FileSystem.listDirectory(dir)) ?? [] {
                        for pid in ((try? FileSystem.readString("\(dir)/\(child)/cgroup.procs")) ?? "").split(separator: "\n") {
                            kill(pid_t(pid) ?? 0, SIGKILL)
                        }
                    }
                }
            }
            started = Date()
            try p.start()
            try p.eventually("round \(round) converged", timeout: 30 + Double(count)) {
                let views = try p.views()
                return Set(views.keys) == Set(wanted) && views.values.allSatisfy { $0.state == "running" }
            }
            let views = try p.views()
            #expect(Set(views.values.map(\.idBase)).count == wanted.count, "round \(round): an ID range is shared")
            for name in all where !wanted.contains(name) { #expect(p.traces(name).isEmpty, "round \(round): \(p.traces(name))") }
            let veths = try p.veths()
            #expect(veths.count == wanted.count, "round \(round): \(veths)")
            // One HTB class per running sliver besides 1:1 and 1:1fff, none of a gone one.
            let classes = try p.htbClasses()
            #expect(classes.count == wanted.count + 2 && classes.isSuperset(of: ["1:1", "1:1fff"]), "round \(round): \(classes.sorted())")
            print("kill -9 round \(round): reboot \(reboot), \(wanted.count) slivers converged \(String(format: "%.2f", Date().timeIntervalSince(started))) s after the restart")
        }
        try p.publish([], timestamp: base + rounds)
        try p.eventually("all destroyed", timeout: 30 + Double(count)) { try p.views().isEmpty }
        p.daemon.stop(signal: SIGTERM)

        // Nothing left that belongs to no sliver: cgroups, directories, records, accounts,
        // processes in the node's ID region, mounts.
        for dir in p.node.cgroupDirectories {
            let children = ((try? FileSystem.listDirectory(dir)) ?? []).filter { FileSystem.isDirectory("\(dir)/\($0)") }
            #expect(children.isEmpty, "\(dir): \(children)")
        }
        #expect((try? FileSystem.listDirectory(p.node.config.storageDir)) == [])
        #expect((try? FileSystem.listDirectory(p.node.config.stateDir + "/slivers")) == [])
        #expect(p.node.config.hostAccounts.members().isEmpty)
        for name in all { #expect(p.node.config.hostAccounts.account(name) == nil) }
        let region = UInt64(p.node.config.idFirst)..<(UInt64(p.node.config.idFirst) + UInt64(slots) * 65536)
        for entry in (try? FileSystem.listDirectory("/proc")) ?? [] where Int32(entry) != nil {
            let status = statusFields((try? FileSystem.readString("/proc/\(entry)/status")) ?? "")
            // A zombie is dead; this machine's pid 1 reaps orphans a second or two late.
            guard status["State"]?.hasPrefix("Z") == false, let uid = status["Uid"]?.split(separator: "\t").first.flatMap({ UInt64($0) }) else { continue }
            #expect(!region.contains(uid), "process \(entry) (\(status["Name"] ?? "")) runs as uid \(uid)")
        }
        #expect(!((try? FileSystem.readString("/proc/self/mountinfo")) ?? "").contains(p.node.root))
        let veths = try p.veths()
        #expect(veths.isEmpty, "veths left: \(veths)")
        let elements = try p.firewallElements()
        #expect(elements.contains("src4") && elements.contains("sliver_class") && !elements.contains("slv"), "nftables elements left: \(elements)")
        #expect(try p.htbClasses() == ["1:1", "1:1fff"], "HTB classes left")
    }
}
