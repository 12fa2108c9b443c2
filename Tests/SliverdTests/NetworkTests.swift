#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import NodeManager
import SliverNetwork
import SliverSystem

/// Sliver networking on the real kernel. The test makes its own world: a "node" network
/// namespace (where sliverd runs, with uplink `up0`) and a "remote" one standing in for the
/// Internet, joined by a veth; nothing of the host's own network is touched.
@Suite(.serialized, .enabled(if: TestEnvironment.isRoot, "needs root"))
struct NetworkTests {
    /// Two namespaces and the veth between them; `remove()` deletes both (and so every veth).
    final class TestNetwork {
        let node: String
        let remote: String
        static let nodeAddress = "198.51.100.1"
        static let remoteAddress = "198.51.100.2"
        static let nodeAddress6 = "2001:db8:100::1"
        static let remoteAddress6 = "2001:db8:100::2"

        init(prefix: String) throws {
            node = "sdn\(prefix)"
            remote = "sdr\(prefix)"
            do {
                try run(["ip", "netns", "add", node])
                try run(["ip", "netns", "add", remote])
                try run(["ip", "-n", node, "link", "add", "up0", "type", "veth", "peer", "name", "rem0", "netns", remote])
                try run(["ip", "-n", node, "addr", "add", Self.nodeAddress + "/24", "dev", "up0"])
                // nodad: usable at once.
                try run(["ip", "-n", node, "addr", "add", Self.nodeAddress6 + "/64", "dev", "up0", "nodad"])
                try run(["ip", "-n", node, "link", "set", "up0", "up"])
                try run(["ip", "-n", node, "link", "set", "lo", "up"])
                try run(["ip", "-n", remote, "addr", "add", Self.remoteAddress + "/24", "dev", "rem0"])
                try run(["ip", "-n", remote, "addr", "add", Self.remoteAddress6 + "/64", "dev", "rem0", "nodad"])
                try run(["ip", "-n", remote, "link", "set", "rem0", "up"])
                try run(["ip", "-n", remote, "link", "set", "lo", "up"])
            } catch {
                remove()  // half made: nothing stays behind
                throw error
            }
        }

        func remove() {
            _ = try? Spawn.run(["/usr/sbin/ip", "netns", "del", node])
            _ = try? Spawn.run(["/usr/sbin/ip", "netns", "del", remote])
        }

        @discardableResult
        func run(_ argv: [String]) throws -> CompletedProcess {
            let result = try Spawn.run(["/usr/sbin/ip"] + argv.dropFirst())
            guard result.status == 0 else { throw TestSetupError("\(argv.joined(separator: " ")): \(result.stderr)") }
            return result
        }

        /// A command in one of the namespaces (network only).
        func exec(in ns: String, _ argv: [String]) throws -> CompletedProcess {
            try Spawn.run(["/usr/bin/nsenter", "--net=/run/netns/\(ns)", "--"] + argv)
        }
    }

    /// A test node's daemon running inside a TestNetwork, and the processes a test starts around
    /// it (listeners in the remote namespace): `cleanup()` removes all of it, the node included,
    /// in whatever state the test stopped.
    final class NetworkedDaemon {
        let node: TestNode
        let network: TestNetwork
        let daemon: DaemonTests.Daemon
        /// Killed and reaped by cleanup().
        var processes: [SpawnedProcess] = []

        init(_ node: TestNode) throws {
            self.node = node
            do {
                network = try TestNetwork(prefix: node.prefix)
            } catch {
                node.cleanup()
                throw error
            }
            do {
                daemon = try DaemonTests.Daemon(node, netns: network.node)
            } catch {
                node.cleanup()
                network.remove()
                throw error
            }
        }

        func cleanup() {
            for process in processes {
                kill(process.pid, SIGKILL)
                var status: Int32 = 0
                waitpid(process.pid, &status, 0)
            }
            daemon.stop(signal: SIGKILL)
            node.cleanup()
            network.remove()
        }
    }

    /// Starts `nc -l -p PORT -e /bin/echo ANSWER` in the background inside `sliver` (it answers
    /// one connection, then exits) and returns once the port listens there (/proc/net/tcp and
    /// tcp6 of the sliver's namespace), not after a guessed sleep: a connection that came before
    /// the listener would be refused, and a test of an unreachable one would prove nothing.
    static func listen(_ daemon: DaemonTests.Daemon, _ sliver: String, port: Int, answer: String) throws {
        let hex = String(format: "%04X", port)
        let script = "nc -l -p \(port) -e /bin/echo \(answer) >/dev/null 2>&1 & "
            + "for i in $(seq 200); do grep -qE ':\(hex) [0-9A-F]+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null && exit 0; sleep 0.02; done; exit 1"
        let result = try daemon.ctl(["exec", sliver, "--", "/bin/sh", "-c", script])
        guard result.status == 0 else { throw TestSetupError("no listener on port \(port) in \(sliver) after 4 s: \(result.stderr)") }
    }

    /// The remote host: TCP 8080 and UDP 9090 answer "peer=<source address>"; UDP 9091 records
    /// every packet's source in a file and never answers.
    static let remoteServer = """
    import socket, sys, threading, os
    log = sys.argv[1]
    def tcp():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 8080)); s.listen(64)
        while True:
            c, a = s.accept(); c.sendall(("peer=%s\\n" % a[0]).encode()); c.close()
    def udp(port, answer):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
        while True:
            data, a = s.recvfrom(2048)
            if answer: s.sendto(("peer=%s\\n" % a[0]).encode(), a)
            else:
                with open(log, "a") as f: f.write(a[0] + "\\n")
    threading.Thread(target=tcp, daemon=True).start()
    threading.Thread(target=udp, args=(9091, False), daemon=True).start()
    open(log + ".ready", "w").close()
    udp(9090, True)
    """

    @Test func sliversReachTheInternetAndNothingElse() throws {
        let node = try TestNode()
        node.config.uplink = "up0"
        node.config.publicAddresses = [TestNetwork.nodeAddress]
        node.config.nftTable = "sliverd_test"
        node.config.exceptionalPPS = 50
        let fixture = try NetworkTests.NetworkedDaemon(node)
        defer { fixture.cleanup() }
        let (network, daemon) = (fixture.network, fixture.daemon)
        try daemon.start()
        let a = node.name("neta"), b = node.name("netb")
        #expect(try daemon.ctl(["create", a, "--image", "busybox"]).status == 0)
        #expect(try daemon.ctl(["create", b, "--image", "busybox"]).status == 0)
        let plan = node.config.addressPlan
        let viewA = try daemon.client().result(ControlRequest(op: "show", name: a), as: SliverView.self)
        let viewB = try daemon.client().result(ControlRequest(op: "show", name: b), as: SliverView.self)
        let addrA = try #require(plan.assignment(id: viewA.id)), addrB = try #require(plan.assignment(id: viewB.id))

        // Inside: eth0 with the sliver's addresses, default routes; the host end is named by id.
        let inside = try daemon.ctl(["exec", a, "--", "/bin/sh", "-c", "ip -o addr show dev eth0; ip route"])
        #expect(inside.stdout.contains(addrA.sliverIPv4.description), "\(inside.stdout)")
        #expect(inside.stdout.contains("default via \(addrA.hostIPv4.address)"), "\(inside.stdout)")
        #expect(try network.exec(in: network.node, ["/usr/sbin/ip", "-br", "link", "show", addrA.veth]).status == 0)

        // The remote host (the Internet) answers TCP and UDP, and sees the node's public address.
        let log = node.root + "/remote.log"
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        fixture.processes.append(try Spawn.start(["/usr/bin/nsenter", "--net=/run/netns/\(network.remote)", "--", "/usr/bin/python3", "-c",
                                                  Self.remoteServer, log], stdio: (devnull, devnull, devnull)))
        close(devnull)
        for _ in 0..<300 where !FileSystem.exists(log + ".ready") { usleep(10_000) }
        let tcp = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "tcp", TestNetwork.remoteAddress, "8080"])
        #expect(tcp.status == 0 && tcp.stdout == "peer=\(TestNetwork.nodeAddress)\n", "\(tcp.stdout)\(tcp.stderr)")
        let udp = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "udp", TestNetwork.remoteAddress, "9090"])
        #expect(udp.status == 0 && udp.stdout == "peer=\(TestNetwork.nodeAddress)\n", "\(udp.stdout)\(udp.stderr)")

        // A cannot reach B's private address, nor a listener on the host's gateway address.
        try NetworkTests.listen(daemon, b, port: 8081, answer: "hello")
        let toB = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "tcp", addrB.sliverIPv4.address, "8081", "1"])
        #expect(toB.status == 1, "reached B: \(toB.stdout)")
        let hostListener = try Spawn.start(["/usr/bin/nsenter", "--net=/run/netns/\(network.node)", "--", "/bin/busybox", "nc", "-l",
                                            "-s", addrA.hostIPv4.address, "-p", "8082", "-e", "/bin/echo", "host"],
                                           stdio: (0, 1, 2))
        defer { kill(hostListener.pid, SIGKILL); var s: Int32 = 0; waitpid(hostListener.pid, &s, 0) }
        let toHost = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "tcp", addrA.hostIPv4.address, "8082", "1"])
        #expect(toHost.status == 1, "reached the host: \(toHost.stdout)")

        // Anti-spoofing: a packet with a source that is not A's own never reaches the remote host.
        // (Forged as host root with A's network namespace: slivers themselves cannot even try.)
        let pid = try #require(viewA.initPid)
        let forge = """
        import socket
        for src in ["10.77.255.250", "\(addrA.sliverIPv4.address)"]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0)); s.sendto(b"x", ("\(TestNetwork.remoteAddress)", 9091)); s.close()
        """
        let forged = try Spawn.run(["/usr/bin/nsenter", "-t", String(pid), "-n", "--", "/usr/sbin/ip", "addr", "add", "10.77.255.250/32", "dev", "eth0"])
        #expect(forged.status == 0, "\(forged.stderr)")
        let sent = try Spawn.run(["/usr/bin/nsenter", "-t", String(pid), "-n", "--", "/usr/bin/python3", "-c", forge])
        #expect(sent.status == 0, "\(sent.stderr)")
        usleep(300_000)
        let seen = (try? FileSystem.readString(log)) ?? ""
        #expect(seen == TestNetwork.nodeAddress + "\n", "remote saw: \(seen)")

        // An ICMP flood from A is held to the configured rate (50/s here): 1000 echo requests sent
        // as fast as possible within ~0.5 s get about 50*0.5 + burst answers, not 1000.
        let flood = """
        import socket, struct, time
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        def csum(b):
            t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xffff); return ~(t + (t >> 16)) & 0xffff
        start = time.time()
        for i in range(1000):
            h = struct.pack("!BBHHH", 8, 0, 0, 7, i); p = b"x" * 8
            s.sendto(struct.pack("!BBHHH", 8, 0, csum(h + p), 7, i) + p, ("\(TestNetwork.remoteAddress)", 0))
        s.settimeout(0.5); replies = 0
        try:
            while True:
                d = s.recv(2048)
                if d[20] == 0: replies += 1
        except socket.timeout: pass
        print(replies, round(time.time() - start, 2))
        """
        let flooded = try Spawn.run(["/usr/bin/nsenter", "-t", String(pid), "-n", "--", "/usr/bin/python3", "-c", flood])
        let replies = Int(flooded.stdout.split(separator: " ").first ?? "") ?? -1
        let seconds = Double(flooded.stdout.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 1
        #expect(replies > 0 && Double(replies) <= 50 * seconds + 5 + 10, "replies \(replies) in \(seconds) s: \(flooded.stderr)")

        // Destroy removes the veth and the firewall elements.
        #expect(try daemon.ctl(["destroy", a]).status == 0)
        #expect(try network.exec(in: network.node, ["/usr/sbin/ip", "link", "show", addrA.veth]).status != 0)
        let elements = try network.exec(in: network.node, ["/usr/sbin/nft", "list", "set", "inet", "sliverd_test", "src4"]).stdout
        #expect(!elements.contains(addrA.veth), "\(elements)")
        #expect(elements.contains(addrB.veth), "\(elements)")
        daemon.stop(signal: SIGTERM)
    }

    @Test func fiveHundredSliversLeakNothing() throws {
        let count = Int(ProcessInfo.processInfo.environment["SLIVERD_TEST_SCALE"] ?? "") ?? 500
        let node = try TestNode()
        node.config.uplink = "up0"
        node.config.nftTable = "sliverd_scale"
        node.config.idSlots = count
        let fixture = try NetworkTests.NetworkedDaemon(node)
        defer { fixture.cleanup() }
        let (network, daemon) = (fixture.network, fixture.daemon)
        try daemon.start()
        let client = try daemon.client()
        let names = (0..<count).map { node.name("s\($0)") }
        for name in names {
            var create = ControlRequest(op: "create", name: name)
            create.image = "busybox"
            _ = try client.result(create, as: SliverView.self)
        }
        let links = try network.exec(in: network.node, ["/usr/sbin/ip", "-o", "link", "show"]).stdout
        #expect(links.split(separator: "\n").filter { $0.contains(": slv") }.count == count)
        for name in names { _ = try client.result(ControlRequest(op: "destroy", name: name), as: [String: String].self) }
        let after = try network.exec(in: network.node, ["/usr/sbin/ip", "-o", "link", "show"]).stdout
        #expect(!after.contains("slv"), "veths left: \(after)")
        let addresses = try network.exec(in: network.node, ["/usr/sbin/ip", "-o", "addr", "show"]).stdout
        #expect(!addresses.contains("10.77."), "addresses left: \(addresses)")
        for set in ["src4", "src6"] {
            let elements = try network.exec(in: network.node, ["/usr/sbin/nft", "list", "set", "inet", "sliverd_scale", set]).stdout
            #expect(!elements.contains("slv"), "nft elements left in \(set): \(elements)")
        }
        for dir in node.cgroupDirectories { #expect(((try? FileSystem.listDirectory(dir)) ?? []).filter { FileSystem.isDirectory(dir + "/" + $0) }.isEmpty) }
        daemon.stop(signal: SIGTERM)
    }

    @Test func addressPlanIsStableAndDisjoint() throws {
        let plan = SliverAddressPlan(ipv4: IPNetwork("10.77.0.0/16")!, ipv6: IPNetwork("fd77:5d1e::/48"))
        let a = try #require(plan.assignment(id: 0)), b = try #require(plan.assignment(id: 4095))
        #expect(a.veth == "slv000000" && b.veth == "slv000fff")
        #expect(a.sliverIPv4.description == "10.77.0.2/30" && a.hostIPv4.description == "10.77.0.1/30")
        #expect(b.sliverIPv4.description == "10.77.63.254/30")
        #expect(a.sliverIPv6?.description == "fd77:5d1e:0:0::2/64" || a.sliverIPv6?.description == "fd77:5d1e::2/64")
        #expect(b.sliverIPv6?.address == "fd77:5d1e:0:fff::2")
        #expect(plan.capacity == 16384)
        #expect(plan.assignment(id: 16384) == nil)
        #expect(!a.sliverIPv4.overlaps(b.sliverIPv4))
    }

    @Test(arguments: [
        ("[network]\nsliver_ipv4 = \"10.0.0.0/31\"", "network.sliver_ipv4"),
        ("[network]\nsliver_ipv4 = \"10.77.0.0/24\"", "network.sliver_ipv4"),  // too small for 4096 slots
        ("[network]\nsliver_ipv6 = \"fd00::/64\"", "network.sliver_ipv6"),
        ("[network]\npublic_addresses = [\"10.77.1.1\"]", "network.public_addresses"),
        ("[network]\npublic_addresses = [\"fd77:5d1e:0:1::9\"]", "network.public_addresses"),  // in sliver_ipv6
        ("[network]\npublic_addresses = [\"198.51.100.1\", \"198.51.100.2\"]", "network.public_addresses"),
        ("[network]\npublic_addresses = [\"2001:db8::1\", \"198.51.100.1\", \"2001:db8::2\"]", "network.public_addresses"),
        ("[network]\npublic_addresses = [\"2001:db8::/64\"]", "network.public_addresses"),
        ("[network]\npublic_addresses = [\"2001:db8::zz\"]", "network.public_addresses"),
        ("[network]\naddress_pool = [\"2001:db8::10/128\", \"fd77:5d1e::10\"]", "network.address_pool"),  // in sliver_ipv6
        ("[network]\naddress_pool = [\"2001:db8::/64\"]", "network.address_pool"),
        ("[network]\nport_range = \"100-200\"", "network.port_range"),
        ("[network]\nuplink = \"a/b\"", "network.uplink"),
    ])
    func refusesBadNetworkConfig(_ text: String, _ field: String) {
        do {
            _ = try NodeConfig(toml: text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.field == field, "\(error.message)")
        }
    }

    @Test func acceptsOnePublicAddressOfEachFamily() throws {
        let config = try NodeConfig(toml: "[network]\npublic_addresses = [\"2001:db8:100::1\", \"198.51.100.1\"]")
        #expect(config.publicAddresses == ["2001:db8:100::1", "198.51.100.1"])
        do {
            _ = try NodeConfig(toml: "[network]\npublic_addresses = [\"2001:db8::1\", \"2001:db8::2\"]")
            Issue.record("accepted two IPv6 addresses")
        } catch {
            #expect(error.message.contains("2001:db8::2") && error.message.contains("at most one of each family"), "\(error.message)")
        }
    }

    @Test func refusesMissingUplink() throws {
        var config = NodeConfig()
        config.uplink = "nosuchif0"
        do {
            _ = try NodeNetwork(config: config)
            Issue.record("accepted a missing uplink")
        } catch {
            #expect(error.field == "network.uplink")
            #expect(error.message.contains("nosuchif0"))
        }
    }
}

/// The broker inside slivers: brokered raw sockets and port reservations.
@Suite(.serialized, .enabled(if: TestEnvironment.isRoot, "needs root"))
struct BrokerTests {
    @Test func portsAndRawSockets() throws {
        let node = try TestNode()
        node.config.uplink = "up0"
        node.config.publicAddresses = [NetworkTests.TestNetwork.nodeAddress]
        node.config.nftTable = "sliverd_broker"
        node.config.addressPool = ["198.51.100.10"]
        // B opens 1000 connections below: above the default SYN rate limit (tested elsewhere).
        node.config.exceptionalPPS = 100_000
        let fixture = try NetworkTests.NetworkedDaemon(node)
        defer { fixture.cleanup() }
        let (network, daemon) = (fixture.network, fixture.daemon)
        try daemon.start()
        let a = node.name("bra"), b = node.name("brb")
        #expect(try daemon.ctl(["create", a, "--image", "busybox", "--set", "raw_protocols=icmp,tcp"]).status == 0)
        #expect(try daemon.ctl(["create", b, "--image", "busybox"]).status == 0)
        let log = node.root + "/remote.log"
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        fixture.processes.append(try Spawn.start(["/usr/bin/nsenter", "--net=/run/netns/\(network.remote)", "--", "/usr/bin/python3", "-c",
                                                  NetworkTests.remoteServer, log], stdio: (devnull, devnull, devnull)))
        close(devnull)
        for _ in 0..<300 where !FileSystem.exists(log + ".ready") { usleep(10_000) }
        let client = "/run/sliverd/sliverd-client"

        // The remote host answers pings sent through a brokered raw ICMP socket (no CAP_NET_RAW).
        let ping = try daemon.ctl(["exec", a, "--", client, "ping", NetworkTests.TestNetwork.remoteAddress, "2"])
        #expect(ping.status == 0 && ping.stdout.contains("reply from \(NetworkTests.TestNetwork.remoteAddress)"), "\(ping.stdout)\(ping.stderr)")
        // A raw protocol the slice is not granted is refused with the reason.
        let udpRaw = try daemon.ctl(["exec", b, "--", client, "raw", "tcp"])
        #expect(udpRaw.status != 0 && udpRaw.stderr.contains("not allowed"), "\(udpRaw.stderr)")

        // A reserves TCP 61000 from inside; the remote host reaches A's listener there through the
        // node's public address; an unreserved port is not reachable; B cannot take A's port.
        #expect(try daemon.ctl(["exec", a, "--", client, "reserve", "tcp", "61000"]).status == 0)
        try NetworkTests.listen(daemon, a, port: 61000, answer: "from-a")
        let inbound = try network.exec(in: network.remote, ["/bin/busybox", "nc", "-w", "2", NetworkTests.TestNetwork.nodeAddress, "61000"])
        #expect(inbound.stdout == "from-a\n", "\(inbound.stdout)\(inbound.stderr)")
        // B reaches A's reserved port through the public address (hairpin), like any outside host.
        try NetworkTests.listen(daemon, a, port: 61000, answer: "from-a-again")
        let hairpin = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", NetworkTests.TestNetwork.nodeAddress, "61000", "2"])
        #expect(hairpin.stdout == "from-a-again\n", "\(hairpin.stdout)\(hairpin.stderr)")
        // Reservations survive a daemon killed with SIGKILL and restarted (the table is rebuilt
        // from the records at start).
        daemon.stop(signal: SIGKILL)
        try daemon.start()
        try NetworkTests.listen(daemon, a, port: 61000, answer: "after-restart")
        let afterRestart = try network.exec(in: network.remote, ["/bin/busybox", "nc", "-w", "2", NetworkTests.TestNetwork.nodeAddress, "61000"])
        #expect(afterRestart.stdout == "after-restart\n", "\(afterRestart.stdout)\(afterRestart.stderr)")
        let closed = try network.exec(in: network.remote, ["/bin/busybox", "nc", "-w", "1", NetworkTests.TestNetwork.nodeAddress, "61001"])
        #expect(!closed.stdout.contains("from"), "\(closed.stdout)")
        let steal = try daemon.ctl(["exec", b, "--", client, "reserve", "tcp", "61000"])
        #expect(steal.status != 0 && steal.stderr.contains("reserved by sliver \(a)"), "\(steal.stderr)")
        #expect(try daemon.ctl(["ports", "list"]).stdout.contains("\(a)\ttcp\t61000"))

        // A's raw TCP socket (filtered to its reserved ports) sees none of B's 1000 connections,
        // and sees the SYN/ACK of its own connection from its reserved port.
        _ = try daemon.ctl(["exec", a, "--", "/bin/sh", "-c", "pkill -f 'nc -l -p 61000' ; true"])
        _ = try daemon.ctl(["exec", a, "--", "/bin/sh", "-c", "\(client) sniff tcp 6 > /tmp/sniffed 2>&1 &"])
        usleep(300_000)
        let own = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "tcp", NetworkTests.TestNetwork.remoteAddress, "8080", "2", "61000"])
        #expect(own.stdout == "peer=\(NetworkTests.TestNetwork.nodeAddress)\n", "\(own.stdout)")
        let flood = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", NetworkTests.TestNetwork.remoteAddress, "8080", "2", "0", "1000"])
        #expect(flood.status == 0 && flood.stdout.split(separator: "\n").count == 1000, "\(flood.stderr)")
        for _ in 0..<100 where (try? daemon.ctl(["exec", a, "--", "/bin/cat", "/tmp/sniffed"]).stdout.isEmpty) ?? true { usleep(100_000) }
        let sniffed = Int(try daemon.ctl(["exec", a, "--", "/bin/cat", "/tmp/sniffed"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        // Its own connection: SYN/ACK, the data segment, FIN (and ACKs) arrive at port 61000;
        // B's 1000 connections would be thousands of packets.
        #expect(sniffed >= 1 && sniffed < 20, "A's raw socket saw \(sniffed) packets")

        // A whole pool address for B (1:1 NAT): reachable on any port, and B's flows leave from it.
        // (The operator routes pool addresses to the node; here: configured on the uplink.)
        try network.run(["ip", "-n", network.node, "addr", "add", "198.51.100.10/32", "dev", "up0"])
        #expect(try daemon.ctl(["address", "assign", b, "198.51.100.10"]).status == 0)
        let other = try daemon.ctl(["address", "assign", a, "198.51.100.10"])
        #expect(other.status != 0 && other.stderr.contains("assigned to sliver \(b)"), "\(other.stderr)")
        #expect(try daemon.ctl(["address", "assign", a, "203.0.113.9"]).stderr.contains("not in network.address_pool"))
        let fromPool = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", NetworkTests.TestNetwork.remoteAddress, "8080"])
        #expect(fromPool.stdout == "peer=198.51.100.10\n", "\(fromPool.stdout)")
        try NetworkTests.listen(daemon, b, port: 7777, answer: "b-by-pool")
        let toPool = try network.exec(in: network.remote, ["/bin/busybox", "nc", "-w", "2", "198.51.100.10", "7777"])
        #expect(toPool.stdout == "b-by-pool\n", "\(toPool.stdout)\(toPool.stderr)")
        #expect(try daemon.ctl(["address", "release", b]).status == 0)
        let released = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", NetworkTests.TestNetwork.remoteAddress, "8080"])
        #expect(released.stdout == "peer=\(NetworkTests.TestNetwork.nodeAddress)\n", "\(released.stdout)")

        // After A's destroy the port is free again.
        #expect(try daemon.ctl(["destroy", a]).status == 0)
        #expect(try daemon.ctl(["exec", b, "--", client, "reserve", "tcp", "61000"]).status == 0)
        daemon.stop(signal: SIGTERM)
    }

    /// The remote host over IPv6: TCP and UDP 8086 answer "peer=<source address> port=<source port>".
    static let remoteServer6 = """
    import socket, sys, threading
    def udp():
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::", 8086))
        while True:
            data, a = s.recvfrom(2048); s.sendto(("peer=%s port=%d\\n" % (a[0], a[1])).encode(), a)
    threading.Thread(target=udp, daemon=True).start()
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", 8086)); s.listen(64)
    open(sys.argv[1], "w").close()
    while True:
        c, a = s.accept(); c.sendall(("peer=%s port=%d\\n" % (a[0], a[1])).encode()); c.close()
    """

    /// Reserved ports on the node's public IPv6 address: the same reservation as IPv4 (per port,
    /// not per family), DNAT to the owner's private IPv6 address, its flows from the port keep
    /// it, every other flow leaves from a port below the reservable range.
    @Test func reservedPortsOnPublicIPv6() throws {
        typealias Net = NetworkTests.TestNetwork
        let node = try TestNode()
        node.config.uplink = "up0"
        node.config.publicAddresses = [Net.nodeAddress, Net.nodeAddress6]
        node.config.nftTable = "sliverd_v6"
        node.config.addressPool = ["198.51.100.10", "2001:db8:100::10"]
        let fixture = try NetworkTests.NetworkedDaemon(node)
        defer { fixture.cleanup() }
        let (network, daemon) = (fixture.network, fixture.daemon)
        try daemon.start()
        let a = node.name("v6a"), b = node.name("v6b")
        #expect(try daemon.ctl(["create", a, "--image", "busybox"]).status == 0)
        #expect(try daemon.ctl(["create", b, "--image", "busybox"]).status == 0)
        let ready = node.root + "/remote6.ready"
        let devnull = open("/dev/null", O_RDWR | O_CLOEXEC)
        fixture.processes.append(try Spawn.start(["/usr/bin/nsenter", "--net=/run/netns/\(network.remote)", "--", "/usr/bin/python3", "-c",
                                                  Self.remoteServer6, ready], stdio: (devnull, devnull, devnull)))
        close(devnull)
        for _ in 0..<300 where !FileSystem.exists(ready) { usleep(10_000) }
        let client = "/run/sliverd/sliverd-client"
        func listen(_ port: Int, _ answer: String) throws {
            try NetworkTests.listen(daemon, a, port: port, answer: answer)
        }
        func fromRemote(_ port: Int) throws -> String {
            let result = try network.exec(in: network.remote, ["/bin/busybox", "nc", "-w", "2", Net.nodeAddress6, String(port)])
            return result.stdout + result.stderr
        }

        // A reserves TCP 61000: the remote host reaches A's listener at [public6]:61000 (within
        // a second of A's start: the helper's host end needs no DAD to find A), and
        // (the same reservation) at public4:61000; A's unreserved 61001 is not reachable.
        #expect(try daemon.ctl(["exec", a, "--", client, "reserve", "tcp", "61000"]).status == 0)
        try listen(61000, "a-over-v6")
        #expect(try fromRemote(61000) == "a-over-v6\n")
        try listen(61000, "a-over-v4")
        let v4 = try network.exec(in: network.remote, ["/bin/busybox", "nc", "-w", "2", Net.nodeAddress, "61000"]).stdout
        #expect(v4 == "a-over-v4\n")
        try listen(61001, "unreserved")
        #expect(try !fromRemote(61001).contains("unreserved"))
        // B reaches A's reserved port through the public IPv6 address (hairpin).
        try listen(61000, "a-hairpin")
        let hairpin = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", Net.nodeAddress6, "61000", "2"])
        #expect(hairpin.stdout == "a-hairpin\n", "\(hairpin.stdout)\(hairpin.stderr)")

        // Outbound: from the reserved port, A's flow arrives from [public6]:61000; an
        // unreserved flow arrives from public6 with a port below the reservable range.
        let own = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "tcp", Net.remoteAddress6, "8086", "2", "61000"])
        #expect(own.stdout == "peer=\(Net.nodeAddress6) port=61000\n", "\(own.stdout)\(own.stderr)")
        for sliver in [a, b] {
            let plain = try daemon.ctl(["exec", sliver, "--", "/bin/netprobe", "tcp", Net.remoteAddress6, "8086"])
            let port = Int(plain.stdout.split(separator: "=").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
            #expect(plain.stdout.hasPrefix("peer=\(Net.nodeAddress6) port=") && (1024..<61000).contains(port), "\(plain.stdout)\(plain.stderr)")
        }
        // The same for UDP: from A's reserved UDP port the datagram keeps it, B's do not.
        #expect(try daemon.ctl(["exec", a, "--", client, "reserve", "udp", "61002"]).status == 0)
        let udpOwn = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "udp", Net.remoteAddress6, "8086", "2", "61002"])
        #expect(udpOwn.stdout == "peer=\(Net.nodeAddress6) port=61002\n", "\(udpOwn.stdout)\(udpOwn.stderr)")
        let udpOther = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "udp", Net.remoteAddress6, "8086", "2", "61002"])
        let udpPort = Int(udpOther.stdout.split(separator: "=").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
        #expect(udpOther.stdout.hasPrefix("peer=\(Net.nodeAddress6) port=") && (1024..<61000).contains(udpPort), "\(udpOther.stdout)")
        // B binding A's reserved port does not get it as public source port.
        let stolen = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", Net.remoteAddress6, "8086", "2", "61000"])
        #expect(stolen.stdout.hasPrefix("peer=\(Net.nodeAddress6) port=") && !stolen.stdout.contains("port=61000"), "\(stolen.stdout)")

        // A whole IPv6 pool address for B (1:1 NAT): reachable on any port, B's IPv6 flows leave
        // from it, and after release from the shared address again.
        // (The operator routes pool addresses to the node; here: configured on the uplink.)
        let pool6 = "2001:db8:100::10"
        try network.run(["ip", "-n", network.node, "addr", "add", pool6 + "/128", "dev", "up0", "nodad"])
        #expect(try daemon.ctl(["address", "assign", b, pool6]).status == 0)
        // (It survives a daemon killed and restarted: the table is rebuilt with it.)
        daemon.stop(signal: SIGKILL)
        try daemon.start()
        let fromPool = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", Net.remoteAddress6, "8086"])
        #expect(fromPool.stdout.hasPrefix("peer=\(pool6) port="), "\(fromPool.stdout)\(fromPool.stderr)")
        try NetworkTests.listen(daemon, b, port: 7777, answer: "b-by-pool6")
        let toPool = try network.exec(in: network.remote, ["/bin/busybox", "nc", "-w", "2", pool6, "7777"])
        #expect(toPool.stdout == "b-by-pool6\n", "\(toPool.stdout)\(toPool.stderr)")
        #expect(try daemon.ctl(["address", "release", b]).status == 0)
        let unpooled = try daemon.ctl(["exec", b, "--", "/bin/netprobe", "tcp", Net.remoteAddress6, "8086"])
        #expect(unpooled.stdout.hasPrefix("peer=\(Net.nodeAddress6) port="), "\(unpooled.stdout)")

        // Released: the port is not reachable over IPv6 any more, nor kept as source port.
        #expect(try daemon.ctl(["exec", a, "--", client, "release", "tcp", "61000"]).status == 0)
        try listen(61000, "after-release")
        #expect(try !fromRemote(61000).contains("after-release"))
        let released = try daemon.ctl(["exec", a, "--", "/bin/netprobe", "tcp", Net.remoteAddress6, "8086", "2", "61000"])
        #expect(!released.stdout.contains("port=61000"), "\(released.stdout)")

        // Destroyed: a reservation made again leaves no IPv6 element behind.
        #expect(try daemon.ctl(["exec", a, "--", client, "reserve", "tcp", "61000"]).status == 0)
        let reserved = try network.exec(in: network.node, ["/usr/sbin/nft", "list", "map", "inet", "sliverd_v6", "tcp_dnat6"]).stdout
        #expect(reserved.contains("61000"), "\(reserved)")
        #expect(try daemon.ctl(["destroy", a]).status == 0)
        for (kind, name) in [("map", "tcp_dnat6"), ("set", "reserved_src6"), ("set", "tcp_reserved")] {
            let left = try network.exec(in: network.node, ["/usr/sbin/nft", "list", kind, "inet", "sliverd_v6", name]).stdout
            #expect(!left.contains("61000"), "\(name): \(left)")
        }
        #expect(try !fromRemote(61000).contains("after-release"))
        daemon.stop(signal: SIGTERM)
    }
}
