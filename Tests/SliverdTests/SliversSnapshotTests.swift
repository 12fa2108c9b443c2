import Foundation
import Testing
@testable import PLCProtocol

@Suite struct SliversSnapshotTests {
    /// The shape of plcapi-node.md §3.2, in JSON, with an unknown field sprinkled in.
    static let example = """
    { "timestamp": 1400000000, "node_id": 12, "hostname": "node1.example.org", "some_future_field": [1, 2],
      "interfaces": [{"interface_id": 5, "node_id": 12, "is_primary": true, "method": "static", "type": "ipv4",
                      "ip": "192.0.2.10", "mac": "52:54:00:12:34:56", "gateway": "192.0.2.1", "network": "192.0.2.0",
                      "broadcast": "192.0.2.255", "netmask": "255.255.255.0", "dns1": "192.0.2.53", "dns2": null,
                      "bwlimit": null, "hostname": null, "interface_tag_ids": [], "last_updated": 1399990000}],
      "groups": ["Internet2"], "conf_files": [],
      "initscripts": [{"initscript_id": 1, "name": "initscript_by_name", "enabled": true, "script": "#!/bin/bash\\necho $1\\n"}],
      "slivers": [
        {"name": "pl_netflow", "slice_id": 2, "instantiation": "plc-instantiated", "expires": 2147483647,
         "keys": [{"key_type": "ssh", "key": "ssh-rsa AAAA... admin@plc"}],
         "attributes": [{"tagname": "system", "value": "1"}, {"tagname": "vref", "value": "planetflow"}],
         "GetSliceFamily": "planetflow-f20-x86_64"},
        {"name": "princeton_sl1", "slice_id": 42, "instantiation": "plc-instantiated", "expires": 1400600000,
         "keys": [{"key_type": "ssh", "key": "ssh-rsa AAAA... alice@example.org"}],
         "attributes": [{"tagname": "vsys", "value": "vif_up"}, {"tagname": "vsys", "value": "fd_tuntap"},
                        {"tagname": "cpu_share", "value": "2"}, {"tagname": "initscript", "value": "initscript_by_name"}],
         "GetSliceFamily": "lxc-f20-x86_64"}],
      "accounts": [{"name": "site_admin", "keys": ["ssh-rsa AAAA... pi@example.org"]},
                   {"name": "root", "keys": ["ssh-rsa AAAA... admin@plc"]}],
      "xmpp": {"server": null}, "hrn": "plc.princeton.node1", "reservation_policy": "none", "leases": null,
      "lease_granularity": 3600 }
    """

    @Test func decodesTheReferenceExampleFromJSON() throws {
        let s = try SliversSnapshot(json: Array(Self.example.utf8))
        #expect(s.timestamp == 1_400_000_000 && s.nodeID == 12 && s.hostname == "node1.example.org")
        #expect(s.slivers.map(\.name) == ["pl_netflow", "princeton_sl1"])
        #expect(s.slivers[0].expires == 2_147_483_647 && s.slivers[0].family == "planetflow-f20-x86_64")
        #expect(s.slivers[1].keys == [SliversSnapshot.Key(keyType: "ssh", key: "ssh-rsa AAAA... alice@example.org")])
        #expect(s.slivers[1].attributes.filter { $0.tagname == "vsys" }.map(\.value) == ["vif_up", "fd_tuntap"])
        #expect(s.slivers[1].attribute("cpu_share") == "2")
        #expect(s.initscripts == [SliversSnapshot.InitScript(initscriptID: 1, name: "initscript_by_name", script: "#!/bin/bash\necho $1\n")])
        #expect(s.accounts.map(\.name) == ["site_admin", "root"])
        #expect(s.interfaces.count == 1 && s.interfaces[0].ip == "192.0.2.10" && s.interfaces[0].dns2 == nil && s.interfaces[0].isPrimary == true)
        #expect(s.rejected.isEmpty)
    }

    @Test func sameSnapshotThroughXMLRPC() throws {
        let fromJSON = try SliversSnapshot(json: Array(Self.example.utf8))
        let value = try XMLRPCValue(json: Array(Self.example.utf8))
        let wire = try XMLRPCEncoder.encode(.success(value))
        guard case .success(let decoded) = try XMLRPCDecoder.decodeResponse(wire) else { Issue.record("fault"); return }
        #expect(try SliversSnapshot(xmlrpc: decoded) == fromJSON)
        // And the typed model serializes back to a GetSlivers struct that decodes identically.
        #expect(try SliversSnapshot(xmlrpc: fromJSON.xmlrpcValue) == fromJSON)
        #expect(try SliversSnapshot(json: fromJSON.xmlrpcValue.jsonBytes()) == fromJSON)
    }

    @Test func defaultsAndLegacyNames() throws {
        let s = try SliversSnapshot(json: Array("""
        {"timestamp": 5, "slivers": [{"name": "a_b", "slice_id": 1, "expires": 10,
          "attributes": [{"name": "cpu_share", "value": "3"}]}],
         "networks": [{"ip": "10.0.0.1"}]}
        """.utf8))
        #expect(s.slivers[0].instantiation == "plc-instantiated" && s.slivers[0].keys.isEmpty)
        #expect(s.slivers[0].attributes == [SliversSnapshot.Attribute("cpu_share", "3")])
        #expect(s.interfaces.first?.ip == "10.0.0.1")
        #expect(s.nodeID == nil)
    }

    @Test(arguments: [
        ("{\"slivers\": []}", "GetSlivers.timestamp: missing"),
        ("{\"timestamp\": 1}", "GetSlivers.slivers: missing"),
        ("{\"timestamp\": \"1\", \"slivers\": []}", "GetSlivers.timestamp: expected an int, got string \"1\""),
        ("{\"timestamp\": 1, \"slivers\": \"x\"}", "GetSlivers.slivers: expected an array"),
        ("{\"timestamp\": 1, \"slivers\": [], \"initscripts\": [{\"name\": \"x\"}]}", "initscripts[0].script: missing"),
        ("{\"timestamp\": 1, \"slivers\": [], \"accounts\": [{\"name\": \"root\", \"keys\": [1]}]}", "accounts[0].keys[0]: expected a string"),
        ("[1, 2]", "GetSlivers: expected a struct"),
        ("{\"timestamp\": 1, ", "not valid JSON"),
    ])
    func refusesWithPath(_ json: String, _ fragment: String) {
        do {
            let s = try SliversSnapshot(json: Array(json.utf8))
            Issue.record("accepted: \(s)")
        } catch {
            #expect(error.message.contains(fragment), "\(error)")
        }
    }

    @Test func aBadSliverIsRejectedAloneWithItsName() throws {
        let s = try SliversSnapshot(json: Array("""
        {"timestamp": 1, "slivers": [
          {"name": "good_one", "slice_id": 1, "expires": 10},
          {"name": "bad_one", "slice_id": "seven", "expires": 10},
          {"name": "bad_two", "slice_id": 3, "expires": 10, "attributes": [{"tagname": "cpu_share", "value": 2}]},
          {"slice_id": 4, "expires": 10}]}
        """.utf8))
        #expect(s.slivers.map(\.name) == ["good_one"])
        #expect(s.rejected.map(\.name) == ["bad_one", "bad_two", nil])
        #expect(s.rejected[0].reason.contains("slivers[1].slice_id: expected an int, got string \"seven\""))
        #expect(s.rejected[1].reason.contains("slivers[2].attributes[0].value: expected a string, got int 2"))
        #expect(s.rejected[2].reason.contains("slivers[3].name: missing"))
    }

    /// XMLRPCValue(json:) reads JSON directly; it must agree with JSONDecoder on every value.
    @Test func jsonScannerMatchesJSONDecoder() throws {
        let text = #"{"a": [1, -2, 3.5, 1e3, -0.25E-2, true, false, null, "", "x\"y\\z\/\n\t\u00e9\ud83d\ude00"], "b": {"c": {}}, "d": [], "e": 9223372036854775807}"#
        let fast = try XMLRPCValue(json: Array(text.utf8))
        let codable = try JSONDecoder().decode(XMLRPCValue.self, from: Data(text.utf8))
        #expect(fast == codable)
        #expect(fast["a"] == [1, -2, 3.5, 1000, -0.0025, true, false, nil, "", "x\"y\\z/\n\té😀"])
        #expect(fast["e"] == .int(Int.max))
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "tru", "\"unterminated", "[1] 2", "\"\\x\"", "\"\\ud83d\"", "01x", "-", "\"a\u{01}\""] {
            #expect(throws: PLCProtocolError.self, "\(bad)") { try XMLRPCValue(json: Array(bad.utf8)) }
        }
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(throws: PLCProtocolError.self) { try XMLRPCValue(json: Array(deep.utf8)) }
    }
}
