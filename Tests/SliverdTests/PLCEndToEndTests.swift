#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import Testing
@testable import PLCProtocol
import SliverSystem

/// A plcd process on 127.0.0.1 with a kernel-chosen port and a temporary data file.
final class PLCDServer {
    let dir: String
    let dataPath: String
    private(set) var url = ""
    private let process: SpawnedProcess

    static var binary: String { TestEnvironment.buildDirectory + "/plcd" }

    /// `listen`: 127.0.0.1:0 picks a free port; a restarted plcd passes the port it had.
    init(data: String, listen: String = "127.0.0.1:0") throws {
        guard FileSystem.exists(Self.binary) else { throw TestSetupError("\(Self.binary) is missing: run `swift build` before `swift test`") }
        dir = "/tmp/plcd-test-\(String(UInt32.random(in: 0..<UInt32.max), radix: 16))"
        try FileSystem.makeDirectories(dir, mode: 0o700)
        dataPath = dir + "/plc.json"
        try FileSystem.writeAtomically(dataPath, Array(data.utf8))
        var out: [Int32] = [0, 0]
        _ = sliver_pipe_cloexec(&out)
        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let log = open(dir + "/plcd.log", O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        defer { [out[1], devnull, log].forEach { close($0) } }
        process = try Spawn.start([Self.binary, "--data", dataPath, "--listen", listen], stdio: (devnull, out[1], log))
        // The first stdout line names the port: "plcd listening on http://127.0.0.1:PORT/PLCAPI/".
        var line = [UInt8]()
        var pfd = pollfd(fd: out[0], events: Int16(POLLIN), revents: 0)
        var byte: UInt8 = 0
        while line.last != UInt8(ascii: "\n"), poll(&pfd, 1, 10_000) > 0, read(out[0], &byte, 1) == 1 { line.append(byte) }
        close(out[0])
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let range = text.range(of: "http://") else {
            stop()
            throw TestSetupError("plcd did not start: \"\(text)\" \((try? FileSystem.readString(dir + "/plcd.log")) ?? "")")
        }
        url = String(text[range.lowerBound...])
    }

    /// Replaces the data file (rename: a new inode, so plcd sees the change at once).
    func write(_ data: String) throws {
        try FileSystem.writeAtomically(dataPath, Array(data.utf8))
    }

    var log: String { (try? FileSystem.readString(dir + "/plcd.log")) ?? "" }

    func stop() {
        _ = sliver_pidfd_send_signal(process.pidfd, SIGKILL)
        var status: Int32 = 0
        while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
        close(process.pidfd)
        try? FileSystem.removeTree(dir)
    }

    func client(key: String = "secret-key-12", node: Int = 12, timeout: Double = 5) throws -> PLCClient {
        PLCClient(transport: LoopbackHTTPTransport(endpoint: try PLCEndpoint(url: url), timeout: timeout),
                  credentials: NodeCredentials(nodeID: node, nodeKey: key))
    }

    static let standardData = """
    {"nodes": [
       {"node_id": 12, "node_key": "secret-key-12", "hostname": "node1.example.org",
        "interfaces": [{"interface_id": 5, "node_id": 12, "is_primary": true, "method": "static", "type": "ipv4",
                        "ip": "192.0.2.10", "dns2": null, "bwlimit": null}]},
       {"node_id": 13, "node_key": "other", "hostname": "node2.example.org"}],
     "slices": [
       {"name": "pl_netflow", "slice_id": 2, "expires": 4000000000,
        "attributes": [{"tagname": "system", "value": "1"}, {"tagname": "vref", "value": "planetflow"}]},
       {"name": "princeton_sl1", "slice_id": 42, "expires": 1900000000, "nodes": [12],
        "keys": [{"key_type": "ssh", "key": "ssh-ed25519 AAAA alice"}],
        "attributes": [{"tagname": "cpu_share", "value": "2"}, {"tagname": "cpu_share", "value": "5", "node_id": 12},
                       {"tagname": "vsys", "value": "vif_up"}, {"tagname": "vsys", "value": "fd_tuntap"},
                       {"tagname": "net_max_rate", "value": "100", "node_id": 13}]},
       {"name": "princeton_other", "slice_id": 43, "nodes": [13], "expires": 1900000000}],
     "initscripts": [{"initscript_id": 1, "name": "hello", "enabled": true, "script": "#!/bin/sh\\necho $1 $2\\n"},
                     {"name": "off", "enabled": false, "script": "x"}],
     "accounts": [{"name": "root", "keys": ["ssh-rsa AAAA admin@plc"]}]}
    """
}

@Suite(.serialized) struct PLCEndToEndTests {
    @Test func hmacSessionThenGetSlivers() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        var client = try plc.client()
        let snapshot = try client.getSlivers()
        #expect(client.authentications == 1 && client.session != nil)
        #expect(snapshot.nodeID == 12 && snapshot.hostname == "node1.example.org")
        #expect(abs(snapshot.timestamp - Int(Date().timeIntervalSince1970)) < 60)
        // System slice everywhere (expiry clamped to 2^31-1), the bound slice, not node 13's.
        #expect(snapshot.slivers.map(\.name) == ["pl_netflow", "princeton_sl1"])
        #expect(snapshot.slivers[0].expires == 2_147_483_647 && snapshot.slivers[0].family == "planetflow-f20-x86_64")
        let sl1 = snapshot.slivers[1]
        #expect(sl1.sliceID == 42 && sl1.instantiation == "plc-instantiated" && sl1.family == "lxc-f20-x86_64")
        #expect(sl1.keys == [SliversSnapshot.Key(keyType: "ssh", key: "ssh-ed25519 AAAA alice")])
        // The sliver attribute for node 12 wins over the slice's; node 13's is not shipped.
        #expect(sl1.attributes.filter { $0.tagname == "cpu_share" }.map(\.value) == ["5"])
        #expect(sl1.attributes.filter { $0.tagname == "vsys" }.map(\.value) == ["vif_up", "fd_tuntap"])
        #expect(sl1.attribute("net_max_rate") == nil)
        #expect(snapshot.initscripts.map(\.name) == ["hello"] && snapshot.initscripts[0].script == "#!/bin/sh\necho $1 $2\n")
        #expect(snapshot.accounts == [SliversSnapshot.Account(name: "root", keys: ["ssh-rsa AAAA admin@plc"])])
        #expect(snapshot.interfaces.first?.ip == "192.0.2.10" && snapshot.interfaces.first?.isPrimary == true)
        #expect(try client.authCheck())
        #expect(client.authentications == 1)

        // The raw answer carries every top-level key of PLCAPI's GetSlivers.
        let raw = try client.call("GetSlivers", [])
        for key in ["timestamp", "node_id", "hostname", "interfaces", "groups", "conf_files", "initscripts", "slivers",
                    "accounts", "xmpp", "hrn", "reservation_policy", "leases", "lease_granularity"] {
            #expect(raw[key] != nil, "GetSlivers lacks \(key)")
        }
    }

    @Test func wrongNodeKeyIsRefused() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        for (node, key, detail) in [(12, "not-the-key", "Call could not be authenticated"), (99, "x", "No such node")] {
            var client = try plc.client(key: key, node: node)
            do {
                _ = try client.getSlivers()
                Issue.record("node \(node) with a wrong key got slivers")
            } catch {
                #expect(error.code == .authentication && error.faultCode == 103, "\(error)")
                #expect(error.message.contains("refused the key of node \(node)") && error.message.contains(detail), "\(error)")
                #expect(client.session == nil)
            }
        }
        // Node 13's key does not open node 12.
        var cross = try plc.client(key: "other", node: 12)
        #expect(throws: PLCProtocolError.self) { try cross.authenticate() }
    }

    @Test func refusedSessionTriggersReauthentication() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        var first = try plc.client()
        _ = try first.getSlivers()
        let oldSession = first.session
        // A second GetSession for the same node replaces the first one's session (PLCAPI keeps
        // one session per node), so the first client's next call is refused with fault 103...
        var second = try plc.client()
        try second.authenticate()
        #expect(throws: PLCProtocolError.self) { try first.rawCall("AuthCheck", [NodeAuth.sessionAuth(oldSession!)]) }
        // ...and the client gets a new session with the node key and succeeds.
        let again = try first.getSlivers()
        #expect(again.slivers.count == 2)
        #expect(first.authentications == 2 && first.session != oldSession)

        // A stale session from an earlier run (or a PLC restart) is handled the same way.
        var restored = PLCClient(transport: first.transport, credentials: first.credentials, session: "bogus-session")
        #expect(try restored.authCheck())
        #expect(restored.authentications == 1 && restored.session != "bogus-session")
    }

    @Test func reloadsTheDataFileAndKeepsOldDataWhenTheNewIsBad() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        var client = try plc.client()
        #expect(try client.getSlivers().slivers.count == 2)
        try plc.write(PLCDServer.standardData.replacingOccurrences(of: "\"nodes\": [13]", with: "\"nodes\": [12, 13]")
            .replacingOccurrences(of: "\"accounts\"", with: "\"timestamp\": 1000, \"accounts\""))
        let updated = try client.getSlivers()
        #expect(updated.slivers.map(\.name) == ["pl_netflow", "princeton_sl1", "princeton_other"])
        #expect(updated.timestamp == 1000)
        try plc.write("{\"nodes\": [{\"node_id\": \"twelve\"}]}")
        #expect(try client.getSlivers().slivers.count == 3)
        #expect(plc.log.contains("keeping the previous data") && plc.log.contains("nodes[0].node_id"))
    }

    /// What a broken PLC or a proxy in front of it answers: each a clear error, never a snapshot.
    @Test func misbehavingServer() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        var client = try plc.client(timeout: 1.5)
        try client.authenticate()
        func expectFailure(_ mode: String, delay: Double = 0, _ check: (PLCProtocolError) -> Bool) throws {
            try plc.write(PLCDServer.standardData.replacingOccurrences(of: "\"accounts\"", with: "\"faults\": {\"mode\": \"\(mode)\", \"delay_s\": \(delay)}, \"accounts\""))
            do {
                let snapshot = try client.getSlivers()
                Issue.record("\(mode): got a snapshot \(snapshot)")
            } catch {
                #expect(check(error), "\(mode): \(error)")
            }
        }
        try expectFailure("html") { $0.code == .http && $0.message.contains("HTTP 502") && $0.message.contains("502 Bad Gateway") }
        try expectFailure("html200") { $0.code == .http && $0.message.contains("HTML page") }
        try expectFailure("truncated") { $0.code == .malformed && $0.stage == "plc.GetSlivers" }
        try expectFailure("wrong_types") { $0.code == .invalidShape && $0.message.contains("GetSlivers.slivers: expected an array") }
        try expectFailure("close") { $0.code == .malformed && $0.message.contains("without an answer") }
        try expectFailure("none", delay: 3) { $0.code == .timeout && $0.message.contains("within 1.5 s") }
        try plc.write(PLCDServer.standardData)
        usleep(1_700_000)  // let the delayed answer go out before the next request
        #expect(try client.getSlivers().slivers.count == 2)
    }

    @Test func connectionRefusedIsATransportError() throws {
        var client = PLCClient(transport: LoopbackHTTPTransport(endpoint: try PLCEndpoint(url: "http://127.0.0.1:1/PLCAPI/"), timeout: 2),
                               credentials: NodeCredentials(nodeID: 1, nodeKey: "k"))
        #expect { try client.getSlivers() } throws: { error in
            let e = error as? PLCProtocolError
            return e?.code == .transport && e?.message.contains("connect to 127.0.0.1:1") == true && e?.message.contains("refused") == true
        }
    }

    /// The https transport (curl) speaks to plcd over plain http here; TLS is tested below.
    @Test(.enabled(if: FileSystem.exists("/usr/bin/curl"), "needs curl"))
    func curlTransport() throws {
        let plc = try PLCDServer(data: PLCDServer.standardData)
        defer { plc.stop() }
        let transport = CurlTransport(endpoint: try PLCEndpoint(url: plc.url), caCert: "/dev/null", timeout: 5)
        var client = PLCClient(transport: transport, credentials: NodeCredentials(nodeID: 12, nodeKey: "secret-key-12"))
        #expect(try client.getSlivers().slivers.count == 2)
        var wrong = PLCClient(transport: transport, credentials: NodeCredentials(nodeID: 12, nodeKey: "wrong"))
        #expect { try wrong.authenticate() } throws: { ($0 as? PLCProtocolError)?.faultCode == 103 }
        let closed = CurlTransport(endpoint: try PLCEndpoint(url: "http://127.0.0.1:1/"), caCert: "/dev/null", timeout: 5)
        #expect { try closed.post([]) } throws: { ($0 as? PLCProtocolError)?.code == .transport }
    }
}
