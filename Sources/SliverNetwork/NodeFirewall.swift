#if canImport(Glibc)
import Glibc
#endif
import CNftables

/// The node's nftables table, owned by Sliverd alone (`inet <table>`), changed only in atomic
/// transactions through libnftables (in-process: no `nft` per sliver). Static rules refer to sets;
/// a sliver's arrival or departure is one transaction that adds or deletes its set elements.
///
/// What the rules enforce:
/// - a sliver reaches nothing of the host itself (its gateway address included): input from a
///   sliver veth is dropped, except the neighbour discovery IPv6 needs to find its gateway;
/// - anti-spoofing: a packet from a sliver's veth whose source is not that sliver's address is
///   dropped (`iifname . saddr` must be in the sliver's set);
/// - slivers reach only the uplink (never each other's private addresses), inbound to a sliver
///   only replies and its reserved ports; outbound leaves with the node's public address (source
///   NAT); one sliver reaches another only through a reserved public port (hairpin NAT). The
///   same for IPv4 and IPv6 (FamilyRules): a reserved port is one port on both public addresses;
///   a pool address (1:1 NAT) is of either family;
/// - link scheduling: a packet a sliver sends out of the uplink gets the sliver's HTB class id as
///   its `skb->priority` (map `sliver_class`, keyed by the veth it came in on), which the uplink's
///   HTB root takes as the class directly (LinkScheduler); this happens in the forward hook,
///   before source NAT makes every sliver's packets look like the node's own;
/// - "exceptional" packets (ICMP, ICMPv6, GRE, bare TCP SYN or RST) are limited per sliver: a
///   meter keyed by the sliver's veth, so one sliver's flood never eats another's allowance.
public final class NodeFirewall {
    public let table: String
    public let uplink: String
    public let publicIPv4: String?
    /// The node's public IPv6 address: reserved ports are DNATed from it and sliver IPv6 flows
    /// leave from it. nil: IPv6 flows are masqueraded and no port is reachable over IPv6.
    public let publicIPv6: String?
    public let plan: SliverAddressPlan
    /// Per-sliver rate of "exceptional" packets (ICMP, ICMPv6, GRE, TCP SYN or RST without ACK).
    public let exceptionalPPS: Int
    /// Source ports for flows from unreserved ports: everything below the reservable range.
    public let ephemeralPorts: String
    private let ctx: OpaquePointer

    public init(table: String, uplink: String, publicIPv4: String?, publicIPv6: String? = nil, plan: SliverAddressPlan,
                exceptionalPPS: Int = 100, reservable: ClosedRange<Int> = 61000...65535) throws(NetworkError) {
        guard let ctx = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
            throw NetworkError(stage: "nftables", "nft_ctx_new", errno: errno)
        }
        // Errors land in a buffer we can put in the error message instead of on stderr.
        nft_ctx_buffer_output(ctx)
        nft_ctx_buffer_error(ctx)
        self.ctx = ctx
        self.table = table
        self.uplink = uplink
        self.publicIPv4 = publicIPv4
        self.publicIPv6 = publicIPv6
        self.plan = plan
        self.exceptionalPPS = exceptionalPPS
        ephemeralPorts = "1024-\(max(1024, reservable.lowerBound - 1))"
    }

    deinit { nft_ctx_free(ctx) }

    /// Runs one transaction: all of it or nothing.
    func run(_ commands: String, _ what: String) throws(NetworkError) {
        let rc = nft_run_cmd_from_buffer(ctx, commands)
        if rc != 0 {
            let detail = nft_ctx_get_error_buffer(ctx).map { String(cString: $0) } ?? ""
            throw NetworkError(stage: "nftables", "\(what): \(detail.split(separator: "\n").first ?? "")", errno: EINVAL)
        }
    }

    var ruleset: String {
        let prefix = SliverAddressPlan.vethPrefix
        let v4 = FamilyRules(family: "ip", publicAddress: publicIPv4, sliverRange: plan.ipv4.description,
                             reservedSource: "reserved_src", dnatMap: "dnat4", ephemeralPorts: ephemeralPorts, vethPrefix: prefix)
        // Without a private IPv6 range the slivers have no IPv6 at all: nothing to translate.
        let v6 = plan.ipv6.map {
            FamilyRules(family: "ip6", publicAddress: publicIPv6, sliverRange: $0.description,
                        reservedSource: "reserved_src6", dnatMap: "dnat6", ephemeralPorts: ephemeralPorts, vethPrefix: prefix)
        }
        return """
        table inet \(table) {
            set src4 { type ifname . ipv4_addr; }
            set src6 { type ifname . ipv6_addr; }
            map pool_in4 { type ipv4_addr : ipv4_addr; }
            map pool_out4 { type ipv4_addr : ipv4_addr; }
            map pool_in6 { type ipv6_addr : ipv6_addr; }
            map pool_out6 { type ipv6_addr : ipv6_addr; }
            map tcp_dnat4 { type inet_service : ipv4_addr; }
            map udp_dnat4 { type inet_service : ipv4_addr; }
            map tcp_dnat6 { type inet_service : ipv6_addr; }
            map udp_dnat6 { type inet_service : ipv6_addr; }
            set tcp_reserved { type inet_service; }
            set udp_reserved { type inet_service; }
            set reserved_src { type ipv4_addr . inet_proto . inet_service; }
            set reserved_src6 { type ipv6_addr . inet_proto . inet_service; }
            map sliver_class { type ifname : classid; }
            chain prerouting {
                type nat hook prerouting priority dstnat; policy accept;
                dnat ip to ip daddr map @pool_in4
                dnat ip6 to ip6 daddr map @pool_in6
        \(v4.dnat)
        \(v6?.dnat ?? "")
            }
            chain input {
                type filter hook input priority filter; policy accept;
                iifname "\(prefix)*" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept
                iifname "\(prefix)*" drop
            }
            chain forward {
                type filter hook forward priority filter; policy accept;
                iifname "\(prefix)*" oifname "\(uplink)" meta priority set iifname map @sliver_class
                iifname "\(prefix)*" meta nfproto ipv4 iifname . ip saddr != @src4 drop
                iifname "\(prefix)*" meta nfproto ipv6 iifname . ip6 saddr != @src6 drop
                iifname "\(prefix)*" oifname "\(prefix)*" ct status dnat accept
                iifname "\(prefix)*" oifname != "\(uplink)" drop
                iifname "\(prefix)*" meta l4proto { icmp, ipv6-icmp, gre } meter exceptional_ip size 65536 { iifname limit rate over \(exceptionalPPS)/second burst \(max(5, exceptionalPPS / 10)) packets } drop
                iifname "\(prefix)*" tcp flags & (syn | rst | ack) == syn meter exceptional_syn size 65536 { iifname limit rate over \(exceptionalPPS)/second burst \(max(5, exceptionalPPS / 10)) packets } drop
                iifname "\(prefix)*" tcp flags & (rst | ack) == rst meter exceptional_rst size 65536 { iifname limit rate over \(exceptionalPPS)/second burst \(max(5, exceptionalPPS / 10)) packets } drop
                oifname "\(prefix)*" iifname != "\(uplink)" drop
                oifname "\(prefix)*" ct state established,related accept
                oifname "\(prefix)*" iifname "\(uplink)" ct status dnat accept
                oifname "\(prefix)*" drop
            }
            chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
        \(v4.hairpin)
        \(v6?.hairpin ?? "")
                oifname "\(uplink)" snat ip to ip saddr map @pool_out4
                oifname "\(uplink)" snat ip6 to ip6 saddr map @pool_out6
        \(v4.snat(uplink: uplink))
        \(v6?.snat(uplink: uplink) ?? "")
            }
        }
        """
    }

    /// Replaces the whole table in one transaction (declaring it first makes the delete valid
    /// when it does not exist yet), with the elements of the slivers that run now.
    public func install(slivers: [(SliverAddressPlan.Assignment, [Port])], pool: [(SliverAddressPlan.Assignment, String)] = []) throws(NetworkError) {
        var commands = "table inet \(table) {}\ndelete table inet \(table)\n" + ruleset + "\n"
        for (sliver, ports) in slivers { commands += elements("add", sliver, ports: ports) }
        for (sliver, address) in pool {
            commands += try poolElements("add", address, sliver)
        }
        try run(commands, "install table inet \(table)")
    }

    /// A port on the public address reserved for one sliver.
    public struct Port: Sendable, Equatable {
        public var proto: String  // "tcp" or "udp"
        public var port: Int
        public init(proto: String, port: Int) {
            self.proto = proto
            self.port = port
        }
    }

    func elements(_ verb: String, _ a: SliverAddressPlan.Assignment, ports: [Port] = []) -> String {
        var out = "\(verb) element inet \(table) src4 { \"\(a.veth)\" . \(a.sliverIPv4.address) }\n"
        if let v6 = a.sliverIPv6 { out += "\(verb) element inet \(table) src6 { \"\(a.veth)\" . \(v6.address) }\n" }
        if let id = LinkScheduler.classID(slot: a.id) {
            out += "\(verb) element inet \(table) sliver_class { \"\(a.veth)\" : \(LinkScheduler.format(id)) }\n"
        }
        for p in ports { out += portElements(verb, a, p) }
        return out
    }

    /// A reservation is per port, not per address family: the same port on the public IPv4 and
    /// IPv6 addresses reaches the owner, and its flows from it keep it on both.
    func portElements(_ verb: String, _ a: SliverAddressPlan.Assignment, _ p: Port) -> String {
        let address = a.sliverIPv4.address
        var out = """
        \(verb) element inet \(table) \(p.proto)_dnat4 { \(p.port) : \(address) }
        \(verb) element inet \(table) \(p.proto)_reserved { \(p.port) }
        \(verb) element inet \(table) reserved_src { \(address) . \(p.proto) . \(p.port) }

        """
        if let v6 = a.sliverIPv6?.address {
            out += """
            \(verb) element inet \(table) \(p.proto)_dnat6 { \(p.port) : \(v6) }
            \(verb) element inet \(table) reserved_src6 { \(v6) . \(p.proto) . \(p.port) }

            """
        }
        return out
    }

    /// A whole public address from the pool for one sliver (1:1 NAT): everything to it reaches the
    /// sliver, everything the sliver sends in its family leaves from it. An IPv6 pool address maps
    /// to the sliver's private IPv6 address (the other family still leaves from the shared one).
    public func setPoolAddress(_ address: String, of a: SliverAddressPlan.Assignment, assigned: Bool) throws(NetworkError) {
        let commands = try poolElements(assigned ? "add" : "delete", address, a)
        if assigned {
            try run(commands, "assign \(address) to \(a.veth)")
        } else {
            deleteEach(commands, "unassign \(address)")
        }
    }

    func poolElements(_ verb: String, _ address: String, _ a: SliverAddressPlan.Assignment) throws(NetworkError) -> String {
        let (suffix, sliver): (String, String?) = IPNetwork(address)?.family == .v6 ? ("6", a.sliverIPv6?.address) : ("4", a.sliverIPv4.address)
        guard let sliver else { throw NetworkError(stage: "nftables", "pool address \(address): \(a.veth) has no IPv6 address", errno: EINVAL) }
        return """
        \(verb) element inet \(table) pool_in\(suffix) { \(address) : \(sliver) }
        \(verb) element inet \(table) pool_out\(suffix) { \(sliver) : \(address) }

        """
    }

    /// Makes a reservation live (or takes it back) for a running sliver.
    public func setPort(_ p: Port, of a: SliverAddressPlan.Assignment, reserved: Bool) throws(NetworkError) {
        if reserved {
            try run(portElements("add", a, p), "reserve \(p.proto) port \(p.port) for \(a.veth)")
        } else {
            deleteEach(portElements("delete", a, p), "release port")
        }
    }

    /// Idempotent: "add element" of an existing element is no error.
    public func add(_ sliver: SliverAddressPlan.Assignment, ports: [Port] = []) throws(NetworkError) {
        try run(elements("add", sliver, ports: ports), "add sliver \(sliver.veth)")
    }

    public func remove(_ sliver: SliverAddressPlan.Assignment, ports: [Port] = []) {
        deleteEach(elements("delete", sliver, ports: ports), "remove sliver \(sliver.veth)")
    }

    /// Runs each `delete element` line as its own transaction and ignores the ones that fail:
    /// "destroy" (nft >= 1.0.8) would ignore missing elements; 1.0.6 has only delete, which
    /// fails on a missing one, so removal takes away what is there, one element at a time.
    private func deleteEach(_ commands: String, _ what: String) {
        for line in commands.split(separator: "\n") { _ = try? run(String(line), what) }
    }

    /// Removes the table (daemon tests; an operator's uninstall).
    public func uninstall() {
        _ = try? run("table inet \(table) {}\ndelete table inet \(table)\n", "remove table")
    }

    /// The table as nft lists it (for `sliverctl` diagnostics and tests).
    public func list() -> String {
        guard nft_run_cmd_from_buffer(ctx, "list table inet \(table)") == 0 else { return "" }
        return nft_ctx_get_output_buffer(ctx).map { String(cString: $0) } ?? ""
    }
}
