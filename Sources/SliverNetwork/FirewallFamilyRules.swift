/// The NAT rules of one address family (IPv4 or IPv6) in the node's `inet` table: the same
/// policy for both, written once. Reserved-port sets (`tcp_reserved`, `udp_reserved`) are shared
/// by the families; the maps and sets that hold sliver addresses exist once per family.
struct FamilyRules {
    /// nft's name of the family's header: "ip" or "ip6".
    let family: String
    /// The node's public address of this family (nil: masquerade to the uplink's address, and
    /// no reserved port is reachable in this family).
    let publicAddress: String?
    /// The private range the slivers' addresses of this family come from.
    let sliverRange: String
    /// Set of `sliver address . protocol . port` that are reserved (their flows keep the port).
    let reservedSource: String
    /// Suffix of the `tcp_`/`udp_` maps from a reserved port to the owner's address.
    let dnatMap: String
    let ephemeralPorts: String
    let vethPrefix: String

    private var nfproto: String { family == "ip" ? "ipv4" : "ipv6" }

    /// `snat` needs brackets around an IPv6 address when a port follows it.
    private func snatTo(_ address: String, ports: String?) -> String {
        guard let ports else { return "snat \(family) to \(address)" }
        return family == "ip" ? "snat ip to \(address):\(ports)" : "snat ip6 to [\(address)]:\(ports)"
    }

    /// Prerouting: a reserved port on the public address goes to its owner. A port reserved by
    /// a sliver with no address of this family has no map element: the lookup fails and the
    /// rule does not match (the packet then meets no listener on the node).
    var dnat: String {
        guard let publicAddress else { return "" }
        return ["tcp", "udp"].map { proto in
            "        \(family) daddr \(publicAddress) \(proto) dport @\(proto)_reserved dnat \(family) to \(proto) dport map @\(proto)_\(dnatMap)"
        }.joined(separator: "\n")
    }

    /// Hairpin: a sliver reaching another through the public address and a reserved port is
    /// NATed both ways like any outside host: the owner sees the public address as source.
    var hairpin: String {
        guard let publicAddress else { return "" }
        return "        meta nfproto \(nfproto) oifname \"\(vethPrefix)*\" iifname \"\(vethPrefix)*\" ct status dnat \(snatTo(publicAddress, ports: nil))"
    }

    /// Postrouting to the uplink. Flows from a reserved port keep it (NAT keeps a source port
    /// that is free in the node's conntrack table, and only the owner's flows ever use it);
    /// other TCP/UDP flows get a source port outside the reservable range, so no sliver can
    /// ever hold (or receive replies on) another's reserved port; the rest (ICMP, GRE) leaves
    /// from the public address.
    func snat(uplink: String) -> String {
        let keep = publicAddress.map { snatTo($0, ports: nil) } ?? "masquerade"
        let unreserved = publicAddress.map { snatTo($0, ports: ephemeralPorts) } ?? "masquerade to :\(ephemeralPorts)"
        return """
                oifname "\(uplink)" \(family) saddr . meta l4proto . th sport @\(reservedSource) \(keep)
                oifname "\(uplink)" \(family) saddr \(sliverRange) meta l4proto { tcp, udp } \(unreserved)
                oifname "\(uplink)" \(family) saddr \(sliverRange) \(keep)
        """
    }
}
