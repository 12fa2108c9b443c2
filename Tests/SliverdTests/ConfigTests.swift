import Foundation
import Testing
@testable import NodeManager

@Suite struct NodeConfigTests {
    @Test func defaults() throws {
        let config = try NodeConfig(toml: "")
        #expect(config == NodeConfig())
        #expect(config.socketMode == 0o600)
        #expect(config.cgroupParent == "sliverd")
    }

    @Test func shippedConfigParsesToDefaults() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("conf/sliverd.toml").path
        #expect(try NodeConfig.load(path: path) == NodeConfig())
    }

    @Test func readsValues() throws {
        let config = try NodeConfig(toml: """
        [daemon]
        state_dir = "/srv/state"
        socket_mode = "0660"
        [ids]
        first = 2000000
        slots = 100
        [cgroups]
        parent = "test"
        version = "v1"
        [sliver]
        capabilities = ["CHOWN", "KILL"]
        stop_timeout_s = 2
        """)
        #expect(config.stateDir == "/srv/state")
        #expect(config.socketMode == 0o660)
        #expect(config.idFirst == 2_000_000 && config.idSlots == 100)
        #expect(config.cgroupParent == "test")
        #expect(config.cgroupVersion == .v1)
        #expect(config.capabilitySet.mask == (1 << 0) | (1 << 5))
        #expect(config.stopTimeout == 2)
    }

    @Test func readsLinkScheduling() throws {
        let defaults = try NodeConfig(toml: "")
        #expect(defaults.bandwidthCapKbit == 1_000_000 && defaults.bwmonPeriod == 60)
        let config = try NodeConfig(toml: "[network]\nbandwidth_cap_kbit = 100000\nbwmon_period_s = 0.5")
        #expect(config.bandwidthCapKbit == 100_000 && config.bwmonPeriod == 0.5)
    }

    @Test func readsProvisioning() throws {
        let defaults = try NodeConfig(toml: "").provisioning
        #expect(defaults.source == .file && defaults.file.isEmpty && !defaults.isEnabled)
        #expect(defaults.period == 600 && defaults.jitter == 300 && defaults.timeout == 90)
        let config = try NodeConfig(toml: """
        [provisioning]
        source = "plc"
        plc_url = "https://plc.example.org/PLCAPI/"
        ca_cert = "/etc/sliverd/plc-ca.pem"
        node_credentials = "/usr/boot/plnode.txt"
        period_s = 60
        jitter_s = 0.5
        timeout_s = 10
        default_image = "lxc-f20-x86_64"
        admin_keys_dir = ""
        """).provisioning
        #expect(config.source == .plc && config.isEnabled)
        #expect(config.plcURL == "https://plc.example.org/PLCAPI/" && config.caCert == "/etc/sliverd/plc-ca.pem")
        #expect(config.nodeCredentials == "/usr/boot/plnode.txt")
        #expect(config.period == 60 && config.jitter == 0.5 && config.timeout == 10)
        #expect(config.defaultImage == "lxc-f20-x86_64" && config.adminKeysDir.isEmpty)
        let file = try NodeConfig(toml: "[provisioning]\nfile = \"/etc/sliverd/slivers.json\"").provisioning
        #expect(file.source == .file && file.isEnabled)
        // Plain http to a loopback PLC (tests, a local plcd) needs no CA.
        #expect(try NodeConfig(toml: "[provisioning]\nsource = \"plc\"\nplc_url = \"http://127.0.0.1:8080/PLCAPI/\"").provisioning.isEnabled)
    }

    @Test(arguments: [
        ("[provisioning]\nsource = \"ftp\"", "provisioning.source"),
        ("[provisioning]\nsource = \"plc\"", "provisioning.plc_url"),
        ("[provisioning]\nplc_url = \"http://plc.example.org/PLCAPI/\"", "provisioning.plc_url"),
        ("[provisioning]\nplc_url = \"https://plc.example.org/PLCAPI/\"", "provisioning.ca_cert"),
        ("[provisioning]\nfile = \"slivers.json\"", "provisioning.file"),
        ("[provisioning]\nperiod_s = 0", "provisioning.period_s"),
        ("[provisioning]\njitter_s = -1", "provisioning.jitter_s"),
        ("[provisioning]\ntimeout_s = \"long\"", "provisioning.timeout_s"),
        ("[provisioning]\ndefault_image = \"../x\"", "provisioning.default_image"),
        ("[provisioning]\nnode_credentials = \"\"", "provisioning.node_credentials"),
        ("[provisioning]\npoll = 1", "provisioning.poll"),
    ])
    func refusesProvisioning(_ text: String, _ field: String) {
        do {
            _ = try NodeConfig(toml: text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.field == field, "\(error.message)")
        }
    }

    @Test(arguments: [
        ("[daemon]\nbogus = 1", "daemon.bogus"),
        ("[nope]\nx = 1", "nope"),
        ("[daemon]\nstate_dir = \"relative\"", "daemon.state_dir"),
        ("[sliver]\ncapabilities = [\"NET_RAW\"]", "sliver.capabilities"),
        ("[cgroups]\nversion = \"v3\"", "cgroups.version"),
        ("[ids]\nslots = 0", "ids.slots"),
        ("[daemon]\nsocket_mode = \"999\"", "daemon.socket_mode"),
        ("[network]\nbandwidth_cap_kbit = 10", "network.bandwidth_cap_kbit"),
        ("[network]\nbwmon_period_s = 0", "network.bwmon_period_s"),
        ("[network]\nbwmon_period_s = \"1m\"", "network.bwmon_period_s"),
    ])
    func refusesWithField(_ text: String, _ field: String) {
        do {
            _ = try NodeConfig(toml: text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.field == field, "\(error.message)")
        }
    }
}
