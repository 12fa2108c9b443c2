import SliverIsolation
import SliverNetwork
import SliverResources
import SliverSystem

/// The daemon's configuration (`/etc/sliverd/sliverd.toml`). Every field has a default; the file
/// only names what differs. conf/sliverd.toml documents each key.
public struct NodeConfig: Sendable, Equatable {
    // [daemon]
    /// Records of slivers and images (JSON, atomic writes).
    public var stateDir = "/var/lib/sliverd/state"
    /// Per-sliver writable layers: `<storage_dir>/<name>/{upper,work}`.
    public var storageDir = "/var/lib/sliverd/slivers"
    /// The control socket of sliverctl.
    public var socketPath = "/run/sliverd/sliverd.sock"
    /// Its permission bits: root only by default.
    public var socketMode: UInt32 = 0o600
    /// The socket vsh connects to (mode 0666: any local user may ask; the daemon decides from the
    /// caller's SO_PEERCRED uid who may enter which sliver, and serves nothing else there).
    public var vshSocketPath = "/run/sliverd/vsh.sock"
    /// Where compiled seccomp programs are written (once per profile, at start).
    public var runDir = "/run/sliverd"
    /// The C helper that builds and enters slivers; "" = `sliver-helper` next to the sliverd binary.
    public var helperPath = ""
    public var logLevel = "info"

    // [ids]
    public var idFirst: UInt32 = 1_048_576
    public var idSlots = 4096

    // [cgroups]
    /// All sliver cgroups live under `<hierarchy>/<parent>/`.
    public var cgroupParent = "sliverd"
    /// nil = detect.
    public var cgroupVersion: CgroupVersion? = nil

    // [sliver]
    /// Capabilities every sliver keeps (bounding, permitted and effective set of its root).
    public var capabilities: [String] = CapabilitySet.sliverDefault.names
    /// pids.max for a sliver that sets no pids_max attribute.
    public var defaultPidsMax = 1024
    /// Seconds a stopping sliver gets after SIGTERM before its cgroup is killed.
    public var stopTimeout = 5.0
    /// Program inside every sliver that init runs at start (`PATH start NAME`), if it exists.
    public var bootProgram = "/etc/rc.sliver"

    // [accounts]
    /// Create a host account per slice (login shell vsh) and its SSH keys.
    public var manageAccounts = true
    /// Login shell of slice accounts.
    public var vshPath = "/usr/local/bin/vsh"
    /// Slice homes: <home_dir>/<name>.
    public var homeBase = "/home"
    /// Group of every slice account (the sshd snippet matches on it).
    public var accountGroup = "slices"
    /// Where the account files are (not in the config file: tests point it at a private copy).
    public var etcDir = "/etc"

    // [network]
    /// The node's uplink interface; "" = slivers get no network (loopback only).
    public var uplink = ""
    /// The node's shared public addresses, at most one IPv4 and one IPv6: outbound sliver
    /// traffic of each family leaves from it, reserved ports are reachable on it. A family
    /// without one: masquerade with whatever address the uplink has, no reserved port inbound.
    public var publicAddresses: [String] = []
    /// Extra public addresses (IPv4 or IPv6) that can be given whole to slivers (1:1 NAT).
    public var addressPool: [String] = []
    /// Private ranges: a /30 per sliver from sliver_ipv4, a /64 per sliver from sliver_ipv6 (/48 or wider).
    public var sliverIPv4 = "10.77.0.0/16"
    public var sliverIPv6 = "fd77:5d1e::/48"
    /// Ports slivers may reserve on the public address(es) (PlanetLab's range), and how many each.
    public var portRange = "61000-65535"
    public var portsPerSlice = 16
    /// Rate limit of "exceptional" packets (ICMP, raw IP, GRE, TCP SYN/RST floods) per sliver.
    public var exceptionalPPS = 100
    /// Name of the nftables table Sliverd owns (inet family).
    public var nftTable = "sliverd"
    /// The node's cap on the uplink in kbit/s: rate and ceil of HTB class 1:1, the most any
    /// sliver's class may reach. 1 Gbit/s, PlanetLab's bwmax.
    public var bandwidthCapKbit: UInt64 = 1_000_000
    /// Seconds between two passes of the daily byte-cap monitor (bwmon) over all slivers.
    public var bwmonPeriod = 60.0

    public var networkEnabled: Bool { !uplink.isEmpty }

    // [storage]
    /// Disk-quota backend of `<storage_dir>/<name>`: none (default), btrfs (a subvolume + qgroup
    /// per sliver), project (ext4/XFS project quotas).
    public var diskQuota: DiskQuotaKind = .none
    /// disk_max in KiB for a sliver whose slice sets none; 0 = no limit. PLCAPI NodeManager's
    /// default allocation (10 000 000 KiB).
    public var defaultDiskMaxKiB: UInt64 = 10_000_000
    /// Project quotas: the sliver in ID slot n gets project id project_id_base + n.
    public var projectIDBase: UInt32 = 1_000_000
    /// Reference images by name: an image a sliver asks for (a slice's vref) that is not
    /// registered yet but exists as `<images_dir>/<name>` is registered on first use, with the
    /// checks of `sliverctl image add`. Where bootscripts/sliverd-prepare-node builds them.
    /// "" = only registered images.
    public var imagesDir = "/var/lib/sliverd/images"

    // [provisioning] (ProvisioningSettings.swift)
    public var provisioning = ProvisioningSettings()

    public init() {}

    /// With networking, slot 4095 is never handed out: its HTB class id would be 1:1fff, the
    /// default class of unclassified traffic (LinkScheduler.slots).
    public var idAllocator: IDRangeAllocator {
        IDRangeAllocator(first: idFirst, slots: networkEnabled ? min(idSlots, LinkScheduler.slots) : idSlots)
    }

    public static func load(path: String) throws(NodeError) -> NodeConfig {
        let text: String
        do {
            text = try FileSystem.readString(path)
        } catch {
            throw NodeError(.invalidArgument, "cannot read config \(path): \(error)", field: "config")
        }
        return try NodeConfig(toml: text)
    }

    public init(toml text: String) throws(NodeError) {
        let document: TOMLDocument
        do {
            document = try TOMLDocument(parsing: text)
        } catch {
            throw NodeError(.invalidArgument, "config \(error.message)", field: "config")
        }
        var config = NodeConfig()
        let known: [String: Set<String>] = [
            "": [],
            "daemon": ["state_dir", "storage_dir", "socket", "socket_mode", "vsh_socket", "run_dir", "helper", "log_level"],
            "accounts": ["manage", "vsh", "home_dir", "group"],
            "ids": ["first", "slots"],
            "cgroups": ["parent", "version"],
            "sliver": ["capabilities", "default_pids_max", "stop_timeout_s", "boot_program"],
            "network": ["uplink", "public_addresses", "address_pool", "sliver_ipv4", "sliver_ipv6", "port_range",
                        "ports_per_slice", "exceptional_pps", "nft_table", "bandwidth_cap_kbit", "bwmon_period_s"],
            "storage": ["quota", "default_disk_max", "project_id_base", "images_dir"],
            "provisioning": ProvisioningSettings.keys,
        ]
        for (table, keys) in document.tables {
            guard let allowed = known[table] else {
                throw NodeError(.invalidArgument, "config: unknown table [\(table)] (known: \(known.keys.filter { !$0.isEmpty }.sorted().joined(separator: ", ")))", field: table)
            }
            for key in keys.keys where !allowed.contains(key) {
                let where_ = table.isEmpty ? key : "\(table).\(key)"
                throw NodeError(.invalidArgument, "config: unknown key \(where_) (line \(document.lines[where_] ?? 0))", field: where_)
            }
        }
        func string(_ t: String, _ k: String) throws(NodeError) -> String? {
            guard let v = document.tables[t]?[k] else { return nil }
            guard case .string(let s) = v else { throw NodeError.invalid("\(t).\(k)", "\(v)", "must be a string") }
            return s
        }
        func integer(_ t: String, _ k: String, _ range: ClosedRange<Int64>) throws(NodeError) -> Int64? {
            guard let v = document.tables[t]?[k] else { return nil }
            guard case .integer(let n) = v else { throw NodeError.invalid("\(t).\(k)", "\(v)", "must be an integer") }
            guard range.contains(n) else { throw NodeError.invalid("\(t).\(k)", "\(n)", "out of range \(range)") }
            return n
        }
        func path(_ t: String, _ k: String) throws(NodeError) -> String? {
            guard let p = try string(t, k) else { return nil }
            guard p.hasPrefix("/"), !p.split(separator: "/").contains("..") else {
                throw NodeError.invalid("\(t).\(k)", p, "must be an absolute path without ..")
            }
            return p
        }
        if let v = try path("daemon", "state_dir") { config.stateDir = v }
        if let v = try path("daemon", "storage_dir") { config.storageDir = v }
        if let v = try path("daemon", "socket") { config.socketPath = v }
        if let v = try path("daemon", "run_dir") { config.runDir = v }
        if let v = try path("daemon", "vsh_socket") { config.vshSocketPath = v }
        if let v = document.tables["accounts"]?["manage"] {
            guard case .bool(let b) = v else { throw NodeError.invalid("accounts.manage", "\(v)", "must be true or false") }
            config.manageAccounts = b
        }
        if let v = try path("accounts", "vsh") { config.vshPath = v }
        if let v = try path("accounts", "home_dir") { config.homeBase = v }
        if let v = try string("accounts", "group") {
            guard (try? SliceName.validateAccountGroup(v)) != nil else { throw NodeError.invalid("accounts.group", v, "must be a valid group name") }
            config.accountGroup = v
        }
        if let v = try string("daemon", "helper") { config.helperPath = v }
        if let v = try string("daemon", "socket_mode") {
            guard let mode = UInt32(v, radix: 8), mode <= 0o777 else { throw NodeError.invalid("daemon.socket_mode", v, "must be octal like \"0600\"") }
            config.socketMode = mode
        }
        if let v = try string("daemon", "log_level") {
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(v) else {
                throw NodeError.invalid("daemon.log_level", v, "must be trace, debug, info, notice, warning, error or critical")
            }
            config.logLevel = v
        }
        if let v = try integer("ids", "first", 65536...Int64(Int32.max)) { config.idFirst = UInt32(v) }
        if let v = try integer("ids", "slots", 1...32768) { config.idSlots = Int(v) }
        guard config.idAllocator.isValid else {
            throw NodeError.invalid("ids.slots", "\(config.idSlots)", "first + slots*65536 must stay below 2^31")
        }
        if let v = try string("cgroups", "parent") {
            guard !v.isEmpty, !v.contains("/"), v != ".", v != ".." else { throw NodeError.invalid("cgroups.parent", v, "must be one path component") }
            config.cgroupParent = v
        }
        if let v = try string("cgroups", "version") {
            switch v {
            case "auto": config.cgroupVersion = nil
            case "v1": config.cgroupVersion = .v1
            case "v2": config.cgroupVersion = .v2
            default: throw NodeError.invalid("cgroups.version", v, "must be auto, v1 or v2")
            }
        }
        if let v = document.tables["sliver"]?["capabilities"] {
            guard case .array(let items) = v else { throw NodeError.invalid("sliver.capabilities", "\(v)", "must be an array of names") }
            var names: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw NodeError.invalid("sliver.capabilities", "\(item)", "must be a string") }
                names.append(s)
            }
            let set: CapabilitySet
            do { set = try CapabilitySet(names: names) } catch { throw NodeError.invalid("sliver.capabilities", error.message, "unknown capability") }
            let refused = CapabilitySet(mask: set.mask & CapabilitySet.forbidden.mask)
            guard refused.mask == 0 else {
                throw NodeError.invalid("sliver.capabilities", refused.description, "never granted to a sliver")
            }
            config.capabilities = names
        }
        if let v = try integer("sliver", "default_pids_max", 16...4_194_304) { config.defaultPidsMax = Int(v) }
        if let v = document.tables["sliver"]?["stop_timeout_s"] {
            switch v {
            case .integer(let n) where (0...600).contains(n): config.stopTimeout = Double(n)
            case .float(let d) where (0...600).contains(d): config.stopTimeout = d
            default: throw NodeError.invalid("sliver.stop_timeout_s", "\(v)", "must be 0-600 seconds")
            }
        }
        if let v = try string("sliver", "boot_program") { config.bootProgram = v }
        func strings(_ t: String, _ k: String) throws(NodeError) -> [String]? {
            guard let v = document.tables[t]?[k] else { return nil }
            guard case .array(let items) = v else { throw NodeError.invalid("\(t).\(k)", "\(v)", "must be an array of strings") }
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item else { throw NodeError.invalid("\(t).\(k)", "\(item)", "must be a string") }
                out.append(s)
            }
            return out
        }
        if let v = try string("network", "uplink") {
            guard v.utf8.count < 16, !v.contains("/"), !v.contains(" ") else { throw NodeError.invalid("network.uplink", v, "not an interface name") }
            config.uplink = v
        }
        if let v = try strings("network", "public_addresses") { config.publicAddresses = v }
        if let v = try strings("network", "address_pool") { config.addressPool = v }
        if let v = try string("network", "sliver_ipv4") { config.sliverIPv4 = v }
        if let v = try string("network", "sliver_ipv6") { config.sliverIPv6 = v }
        if let v = try string("network", "port_range") { config.portRange = v }
        if let v = try integer("network", "ports_per_slice", 0...65535) { config.portsPerSlice = Int(v) }
        if let v = try integer("network", "exceptional_pps", 1...1_000_000) { config.exceptionalPPS = Int(v) }
        if let v = try string("network", "nft_table") {
            guard !v.isEmpty, v.utf8.count <= 64, v.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                throw NodeError.invalid("network.nft_table", v, "must be [A-Za-z0-9_-], at most 64")
            }
            config.nftTable = v
        }
        if let v = try integer("network", "bandwidth_cap_kbit", 1000...100_000_000) { config.bandwidthCapKbit = UInt64(v) }
        if let v = document.tables["network"]?["bwmon_period_s"] {
            switch v {
            case .integer(let n) where (1...86400).contains(n): config.bwmonPeriod = Double(n)
            case .float(let d) where (0.1...86400).contains(d): config.bwmonPeriod = d
            default: throw NodeError.invalid("network.bwmon_period_s", "\(v)", "must be 0.1-86400 seconds")
            }
        }
        try config.validateNetworkSyntax()
        if let v = try string("storage", "quota") {
            guard let kind = DiskQuotaKind(rawValue: v) else {
                throw NodeError.invalid("storage.quota", v, "must be none, btrfs or project")
            }
            config.diskQuota = kind
        }
        if let v = try integer("storage", "default_disk_max", 0...Int64(1) << 40) { config.defaultDiskMaxKiB = UInt64(v) }
        if let v = try string("storage", "images_dir") { config.imagesDir = v.isEmpty ? "" : try path("storage", "images_dir") ?? v }
        if let v = try integer("storage", "project_id_base", 1...Int64(UInt32.max) - Int64(config.idSlots)) {
            config.projectIDBase = UInt32(v)
        }
        config.provisioning = try ProvisioningSettings(table: document.tables["provisioning"] ?? [:])
        self = config
    }

    public var hostAccounts: HostAccounts {
        HostAccounts(etc: etcDir, homeBase: homeBase, shell: vshPath, group: accountGroup)
    }

    /// The capability set slivers get.
    public var capabilitySet: CapabilitySet {
        (try? CapabilitySet(names: capabilities)) ?? .sliverDefault
    }
}
