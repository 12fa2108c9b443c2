#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import NodeManager
import SliverSystem

/// A slice as the tests put it into plcd's data file.
struct TestSlice {
    var name: String
    var id: Int
    var keys: [String] = [TestKeys.alice]
    var attributes: [(String, String)] = [("vref", "busybox"), ("initscript", "count")]
    /// Fixed: plcd's default (now + 2 weeks) would change the snapshot at every poll.
    var expires: Int? = 2_000_000_000
    var instantiation = "plc-instantiated"

    var json: [String: Any] {
        var slice: [String: Any] = [
            "name": name, "slice_id": id, "nodes": [12], "instantiation": instantiation,
            "keys": keys.map { ["key_type": "ssh", "key": $0] },
            "attributes": attributes.map { ["tagname": $0.0, "value": $0.1] },
        ]
        if let expires { slice["expires"] = expires }
        return slice
    }
}

enum TestKeys {
    static let alice = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICVqF3hMrDpRDboVK5VSSb+/BjII6JfpbNoIeZEI8sL4 alice@example.org"
    static let bob = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE50+N6h26aY99lRV9rlhuAggpC9KeNqPUgJLZevEViC bob@example.org"
}

/// A test node whose sliverd is provisioned by a plcd (HMAC-checked, like PLCAPI) or by a
/// snapshot file, with a short poll period. `cleanup()` removes everything, also after a failure.
final class ProvisionedNode {
    let node: TestNode
    let period: Double
    private(set) var daemon: DaemonTests.Daemon!
    private(set) var plc: PLCDServer?
    private var listen = "127.0.0.1:0"
    let snapshotFile: String
    /// With `network`: the daemon runs in a network namespace of its own with an uplink
    /// (NetworkTests.TestNetwork), so slivers get veths and nftables elements.
    private(set) var network: NetworkTests.TestNetwork?
    var nodeKey = "secret-key-12"
    /// Counts its arguments in the sliver: one line per `start`/`restart`/`stop`.
    static let countScript = "#!/bin/sh\necho \"$1 $2\" >> /root/initscript.runs\n"

    init(usePLC: Bool = true, period: Double = 1, accounts: Bool = false, slots: Int = 4, network: Bool = false,
         configure: (inout NodeConfig) -> Void = { _ in }) throws {
        node = try TestNode(accounts: accounts)
        self.period = period
        snapshotFile = node.root + "/slivers.json"
        node.config.idSlots = slots
        configure(&node.config)
        do {
            if network {
                self.network = try NetworkTests.TestNetwork(prefix: node.prefix)
                node.config.uplink = "up0"
                node.config.nftTable = "sliverd_prov"
            }
            try FileSystem.writeAtomically(node.root + "/plnode.txt", Array("NODE_ID=\"12\"\nNODE_KEY=\"\(nodeKey)\"\n".utf8), mode: 0o600)
            var source = "source = \"file\"\nfile = \"\(snapshotFile)\""
            if usePLC {
                plc = try PLCDServer(data: plcData([]))
                listen = plc!.url.replacingOccurrences(of: "http://", with: "").replacingOccurrences(of: "/PLCAPI/", with: "")
                source = "source = \"plc\"\nplc_url = \"\(plc!.url)\"\nnode_credentials = \"\(node.root)/plnode.txt\""
            }
            daemon = try DaemonTests.Daemon(node, netns: self.network?.node, extra: """
            [provisioning]
            \(source)
            period_s = \(period)
            jitter_s = 0
            timeout_s = 2
            admin_keys_dir = "\(node.root)/admin-keys"
            """)
        } catch {
            cleanup()
            throw error
        }
    }

    func plcData(_ slices: [TestSlice], timestamp: Int? = nil, faults: [String: Any]? = nil,
                 accounts: [[String: Any]] = [], script: String = ProvisionedNode.countScript) -> String {
        var data: [String: Any] = [
            "nodes": [["node_id": 12, "node_key": nodeKey, "hostname": "node1.test"]],
            "slices": slices.map(\.json),
            "initscripts": [["initscript_id": 1, "name": "count", "enabled": true, "script": script]],
            "accounts": accounts,
        ]
        if let timestamp { data["timestamp"] = timestamp }
        if let faults { data["faults"] = faults }
        return String(decoding: try! JSONSerialization.data(withJSONObject: data, options: [.sortedKeys]), as: UTF8.self)
    }

    /// What PLC (or the file) says from now on.
    func publish(_ slices: [TestSlice], timestamp: Int? = nil, faults: [String: Any]? = nil,
                 accounts: [[String: Any]] = [], script: String = ProvisionedNode.countScript) throws {
        if let plc {
            try plc.write(plcData(slices, timestamp: timestamp, faults: faults, accounts: accounts, script: script))
        } else {
            // The file source: GetSlivers' shape directly.
            let slivers = slices.map { slice -> [String: Any] in
                var s = slice.json
                s["nodes"] = nil
                s["expires"] = slice.expires ?? 2_147_483_647
                return s
            }
            let snapshot: [String: Any] = ["timestamp": timestamp ?? Int(Date().timeIntervalSince1970), "slivers": slivers,
                                           "initscripts": [["name": "count", "enabled": true, "script": script]]]
            try FileSystem.writeAtomically(snapshotFile, Array(try JSONSerialization.data(withJSONObject: snapshot)))
        }
    }

    func start() throws { try daemon.start() }

    /// plcd goes away (the node sees connection refused).
    func stopPLC() {
        plc?.stop()
        plc = nil
    }

    /// plcd comes back on the same port, with fresh sessions (as after a PLC restart).
    func startPLC(_ slices: [TestSlice], timestamp: Int? = nil) throws {
        plc = try PLCDServer(data: plcData(slices, timestamp: timestamp), listen: listen)
    }

    func views() throws -> [String: SliverView] {
        let list = try daemon.client().result(ControlRequest(op: "list"), as: [SliverView].self)
        return Dictionary(uniqueKeysWithValues: list.map { ($0.name, $0) })
    }

    func events() throws -> [ProvisioningEvent] {
        try daemon.client().result(ControlRequest(op: "events"), as: [ProvisioningEvent].self)
    }

    func sync() throws -> SyncReport {
        try daemon.client().result(ControlRequest(op: "sync"), as: SyncReport.self)
    }

    func keys(_ name: String) throws -> [String] {
        try daemon.client().result(ControlRequest(op: "keys", name: name), as: [String].self)
    }

    /// Runs a command in a sliver through sliverctl exec.
    func exec(_ name: String, _ script: String) throws -> CompletedProcess {
        try daemon.ctl(["exec", name, "--", "/bin/sh", "-c", script])
    }

    /// Initscript runs recorded inside the sliver ("start NAME", "restart NAME", ...).
    func initscriptRuns(_ name: String) throws -> [String] {
        try exec(name, "cat /root/initscript.runs 2>/dev/null").stdout.split(separator: "\n").map(String.init)
    }

    /// Polls `check` every 20 ms until it holds; returns the seconds it took.
    @discardableResult
    func eventually(_ what: String, timeout: Double, _ check: () throws -> Bool) throws -> Double {
        let start = Date()
        while Date().timeIntervalSince(start) < timeout {
            if (try? check()) == true { return Date().timeIntervalSince(start) }
            usleep(20_000)
        }
        throw TestSetupError("\(what): not within \(timeout) s; daemon log:\n\(log.suffix(4000))")
    }

    var log: String { (try? FileSystem.readString(node.root + "/sliverd.log")) ?? "" }

    func recordMtime(_ name: String) -> Double {
        var st = stat()
        guard stat("\(node.config.stateDir)/slivers/\(name).json", &st) == 0 else { return -1 }
        return Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
    }

    /// A cgroup file of a sliver, e.g. "cpu.shares".
    func cgroupValue(_ name: String, _ file: String) -> String? {
        // Each file exists in exactly one hierarchy (cpu.shares only where cpu is mounted).
        for dir in node.cgroupDirectories where FileSystem.exists("\(dir)/\(name)/\(file)") {
            if let text = try? FileSystem.readString("\(dir)/\(name)/\(file)") { return text.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        return nil
    }

    /// Every trace of a sliver on the host: cgroups, storage, record, host account.
    func traces(_ name: String) -> [String] {
        var found: [String] = []
        for dir in node.cgroupDirectories where FileSystem.exists("\(dir)/\(name)") { found.append("\(dir)/\(name)") }
        for path in ["\(node.config.storageDir)/\(name)", "\(node.config.stateDir)/slivers/\(name).json", "\(node.config.homeBase)/\(name)"]
        where FileSystem.exists(path) { found.append(path) }
        if node.config.manageAccounts && node.config.hostAccounts.account(name) != nil { found.append("account \(name)") }
        return found
    }

    /// Links named slv* (sliver veths) in the daemon's network namespace.
    func veths() throws -> [String] {
        guard let network else { return [] }
        return try network.exec(in: network.node, ["/usr/sbin/ip", "-o", "link", "show"]).stdout
            .split(separator: "\n").filter { $0.contains(": slv") }.map(String.init)
    }

    /// Class ids of the uplink's HTB tree ("1:1", "1:1fff", "1:1000", ...).
    func htbClasses() throws -> Set<String> {
        guard let network else { return [] }
        return try Set(LinkSchedulingTests.classes(network).keys)
    }

    /// Elements of the firewall's per-sliver sets and maps (source addresses, classes by veth).
    func firewallElements() throws -> String {
        guard let network else { return "" }
        return try ["src4", "src6", "sliver_class"].map {
            try network.exec(in: network.node, ["/usr/sbin/nft", "list", $0 == "sliver_class" ? "map" : "set", "inet", node.config.nftTable, $0]).stdout
        }.joined()
    }

    func cleanup() {
        daemon?.stop(signal: SIGKILL)
        plc?.stop()
        node.cleanup()
        network?.remove()
    }
}
