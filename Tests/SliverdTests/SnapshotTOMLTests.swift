import Testing
@testable import NodeManager
import PLCProtocol
import SliverSystem

/// The GetSlivers snapshot in TOML: the file source's second format, decoded through the same
/// mapping as JSON and XML-RPC.
@Suite struct SnapshotTOMLTests {
    /// conf/default-slivers.json, written in TOML: arrays of tables and inline tables mixed, the
    /// initscript as a multi-line string.
    static let defaultSlivers = #"""
    timestamp = 1700000000
    hostname = "standalone.sliverd.local"
    accounts = []

    [[initscripts]]
    initscript_id = 1
    name = "hello"
    enabled = true
    script = """
    #!/bin/sh
    # Runs inside the sliver as: initscript start|restart|stop SLICE
    echo "$1 $2 at $(date)" >> /tmp/initscript.log
    """

    [[slivers]]
    name = "demo_web"
    slice_id = 1
    instantiation = "plc-instantiated"
    expires = 2_147_483_647
    keys = [{ key_type = "ssh", key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICVqF3hMrDpRDboVK5VSSb+/BjII6JfpbNoIeZEI8sL4 alice@example.org" }]
    attributes = [
        { tagname = "vref", value = "busybox" },
        { tagname = "cpu_share", value = "2" },
        { tagname = "memlock_hard", value = "262144" },
        { tagname = "initscript", value = "hello" },
    ]

    [[slivers]]
    name = "demo_measure"
    slice_id = 2
    instantiation = 'plc-instantiated'
    expires = 2147483647
    [[slivers.keys]]
    key_type = "ssh"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE50+N6h26aY99lRV9rlhuAggpC9KeNqPUgJLZevEViC bob@example.org"
    [[slivers.attributes]]
    tagname = "vref"
    value = "busybox"
    [[slivers.attributes]]
    tagname = "cpu_share"
    value = "1"
    [[slivers.attributes]]
    tagname = "pids_max"
    value = "256"
    [[slivers.attributes]]
    tagname = "vsys"
    value = "vif_up"
    """#

    static var defaultSliversJSON: String { TestEnvironment.repoRoot + "/conf/default-slivers.json" }

    @Test func defaultSliversInTOMLIsTheJSONSnapshot() throws {
        let json = try FileSystem.readFile(Self.defaultSliversJSON)
        let fromJSON = try SliversSnapshot(json: json)
        #expect(try SliversSnapshot(toml: Self.defaultSlivers) == fromJSON)
        // Not only the same snapshot: the same GetSlivers struct before the mapping.
        #expect(XMLRPCValue(.table(try TOMLDocument(parsing: Self.defaultSlivers).root)) == (try XMLRPCValue(json: json)))
        #expect(fromJSON.slivers.count == 2 && fromJSON.initscripts[0].script.hasSuffix("/tmp/initscript.log\n"))
    }

    /// SliversSnapshotTests.example (plcapi-node.md §3.2) in TOML: interfaces, accounts, the
    /// family, unknown fields. JSON's nulls are keys left out.
    @Test func referenceExampleInTOMLIsTheJSONSnapshot() throws {
        let toml = #"""
        timestamp = 1400000000
        node_id = 12
        hostname = "node1.example.org"
        some_future_field = [1, 2]
        groups = ["Internet2"]
        conf_files = []
        hrn = "plc.princeton.node1"
        reservation_policy = "none"
        lease_granularity = 3600
        xmpp = {}

        [[interfaces]]
        interface_id = 5
        node_id = 12
        is_primary = true
        method = "static"
        type = "ipv4"
        ip = "192.0.2.10"
        mac = "52:54:00:12:34:56"
        gateway = "192.0.2.1"
        network = "192.0.2.0"
        broadcast = "192.0.2.255"
        netmask = "255.255.255.0"
        dns1 = "192.0.2.53"
        interface_tag_ids = []
        last_updated = 1399990000

        [[initscripts]]
        initscript_id = 1
        name = "initscript_by_name"
        enabled = true
        script = "#!/bin/bash\necho $1\n"

        [[slivers]]
        name = "pl_netflow"
        slice_id = 2
        instantiation = "plc-instantiated"
        expires = 2147483647
        GetSliceFamily = "planetflow-f20-x86_64"
        keys = [{ key_type = "ssh", key = "ssh-rsa AAAA... admin@plc" }]
        attributes = [{ tagname = "system", value = "1" }, { tagname = "vref", value = "planetflow" }]

        [[slivers]]
        name = "princeton_sl1"
        slice_id = 42
        instantiation = "plc-instantiated"
        expires = 1400600000
        GetSliceFamily = "lxc-f20-x86_64"
        keys = [{ key_type = "ssh", key = "ssh-rsa AAAA... alice@example.org" }]
        [[slivers.attributes]]
        tagname = "vsys"
        value = "vif_up"
        [[slivers.attributes]]
        tagname = "vsys"
        value = "fd_tuntap"
        [[slivers.attributes]]
        tagname = "cpu_share"
        value = "2"
        [[slivers.attributes]]
        tagname = "initscript"
        value = "initscript_by_name"

        [[accounts]]
        name = "site_admin"
        keys = ["ssh-rsa AAAA... pi@example.org"]
        [[accounts]]
        name = "root"
        keys = ["ssh-rsa AAAA... admin@plc"]
        """#
        let fromTOML = try SliversSnapshot(toml: toml)
        #expect(fromTOML == (try SliversSnapshot(json: Array(SliversSnapshotTests.example.utf8))))
        #expect(fromTOML.interfaces.first?.dns2 == nil && fromTOML.slivers[1].attributes.count == 4)
    }

    /// The mapping's errors are the JSON path's: they name the member, not a TOML line.
    @Test func mappingErrorsNameThePath() throws {
        let s = try SliversSnapshot(toml: """
        timestamp = 1
        [[slivers]]
        name = "good_one"
        slice_id = 1
        expires = 10
        [[slivers]]
        name = "bad_one"
        slice_id = "7"
        expires = 10
        """)
        #expect(s.slivers.map(\.name) == ["good_one"])
        #expect(s.rejected.first?.reason.contains("slivers[1].slice_id: expected an int, got string \"7\"") == true)
        for (text, fragment) in [("timestamp = 1.5\nslivers = []", "GetSlivers.timestamp: expected an int, got double 1.5"),
                                 ("timestamp = 1", "GetSlivers.slivers: missing")] {
            let error = #expect(throws: NodeError.self) { try SliversSnapshot(toml: text) }
            #expect(error?.message.contains(fragment) == true, "\(String(describing: error))")
        }
    }

    @Test func fileSourceReadsTOMLByItsName() throws {
        let dir = "/tmp/sliverd-toml-test-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try FileSystem.makeDirectories(dir, mode: 0o700)
        defer { try? FileSystem.removeTree(dir) }
        let expected = try SliversSnapshot(json: try FileSystem.readFile(Self.defaultSliversJSON))

        try FileSystem.writeAtomically(dir + "/slivers.toml", Array(Self.defaultSlivers.utf8))
        #expect(try FileSource(path: dir + "/slivers.toml").fetch() == expected)
        #expect(try FileSource(path: Self.defaultSliversJSON).fetch() == expected)

        // The name decides: TOML in a .json file is read as JSON, and refused.
        try FileSystem.writeAtomically(dir + "/slivers.json", Array(Self.defaultSlivers.utf8))
        let asJSON = #expect(throws: NodeError.self) { try FileSource(path: dir + "/slivers.json").fetch() }
        #expect(asJSON?.message.contains("not valid JSON") == true)

        let bad = dir + "/bad.toml"
        try FileSystem.writeAtomically(bad, Array("timestamp = 1\n\n[[slivers]]\nname = \"\"\"never closed\nslice_id = 1\n".utf8))
        do {
            _ = try FileSource(path: bad).fetch()
            Issue.record("accepted \(bad)")
        } catch {
            #expect(error.message == "\(bad): line 4: unterminated multi-line string")
            #expect(error.field == "provisioning.file" && error.code == .invalidArgument)
        }
    }
}
