#if canImport(Glibc)
import Glibc
#endif
import SliverNetwork
import SliverSystem

extension NodeConfig {
    /// Checks the [network] values that need no look at the machine: every address parses, the
    /// private ranges hold every ID slot, nothing overlaps, the port range is sane.
    func validateNetworkSyntax() throws(NodeError) {
        guard let v4 = IPNetwork(sliverIPv4), v4.family == .v4, v4.prefix <= 30 else {
            throw NodeError.invalid("network.sliver_ipv4", sliverIPv4, "must be an IPv4 network of /30 or wider")
        }
        guard let v6 = IPNetwork(sliverIPv6), v6.family == .v6, v6.prefix <= 48 else {
            throw NodeError.invalid("network.sliver_ipv6", sliverIPv6, "must be an IPv6 network of /48 or wider")
        }
        let plan = SliverAddressPlan(ipv4: v4, ipv6: v6)
        guard plan.capacity >= idSlots else {
            throw NodeError.invalid("network.sliver_ipv4", sliverIPv4, "holds \(plan.capacity) slivers (/30 each) but ids.slots is \(idSlots)")
        }
        for (field, list) in [("network.public_addresses", publicAddresses), ("network.address_pool", addressPool)] {
            var families: [IPNetwork.Family: String] = [:]
            for text in list {
                guard let address = IPNetwork(text) else { throw NodeError.invalid(field, text, "not an IP address") }
                guard address.prefix == address.bytes.count * 8 else {
                    throw NodeError.invalid(field, text, "must be a single address, without a /prefix")
                }
                if v4.overlaps(address) || v6.overlaps(address) {
                    throw NodeError.invalid(field, text, "overlaps the sliver range \(address.family == .v4 ? sliverIPv4 : sliverIPv6)")
                }
                // The firewall NATs every sliver to one shared address per family.
                if field == "network.public_addresses", let other = families[address.family] {
                    throw NodeError.invalid(field, text, "a second \(address.family == .v4 ? "IPv4" : "IPv6") address (have \(other)): at most one of each family")
                }
                families[address.family] = text
            }
        }
        let bounds = portRange.split(separator: "-").compactMap { Int($0) }
        guard bounds.count == 2, bounds[0] >= 1024, bounds[0] <= bounds[1], bounds[1] <= 65535 else {
            throw NodeError.invalid("network.port_range", portRange, "must be LOW-HIGH within 1024-65535")
        }
    }

    var addressPlan: SliverAddressPlan {
        SliverAddressPlan(ipv4: IPNetwork(sliverIPv4)!, ipv6: IPNetwork(sliverIPv6))
    }
}

/// The node side of sliver networking that the manager drives: the firewall table, the link
/// scheduler on the uplink, forwarding, and the stale-veth cleanup. Present only when [network]
/// names an uplink.
final class NodeNetwork {
    let plan: SliverAddressPlan
    let firewall: NodeFirewall
    let scheduler: LinkScheduler

    /// Checks the machine (the uplink exists) and turns on forwarding in this network namespace.
    init(config: NodeConfig) throws(NodeError) {
        let links: [Link]
        do { links = try LinkTable.dump() } catch { throw NodeError(.internal, "\(error)") }
        guard links.contains(where: { $0.name == config.uplink }) else {
            throw NodeError.invalid("network.uplink", config.uplink, "no such interface (have: \(links.map(\.name).joined(separator: ", ")))")
        }
        plan = config.addressPlan
        scheduler = LinkScheduler(device: config.uplink, capacity: config.bandwidthCapKbit * 1000)
        // validateNetworkSyntax allowed at most one address of each family.
        let publicIPv4 = config.publicAddresses.first { IPNetwork($0)?.family == .v4 }
        let publicIPv6 = config.publicAddresses.first { IPNetwork($0)?.family == .v6 }.flatMap { IPNetwork($0)?.address }
        do {
            firewall = try NodeFirewall(table: config.nftTable, uplink: config.uplink, publicIPv4: publicIPv4, publicIPv6: publicIPv6, plan: plan,
                                        exceptionalPPS: config.exceptionalPPS, reservable: config.reservablePorts)
        } catch {
            throw NodeError(.internal, "\(error)")
        }
        // A router between the slivers' veths and the uplink (per network namespace settings).
        for file in ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"] {
            do { try FileSystem.writeExisting(file, "1") } catch { throw NodeError(error) }
        }
    }

    func assignment(_ record: SliverRecord) -> SliverAddressPlan.Assignment? { plan.assignment(id: record.id) }

    static func ports(_ record: SliverRecord) -> [NodeFirewall.Port] {
        record.ports.map { NodeFirewall.Port(proto: $0.proto, port: $0.port) }
    }

    /// The firewall table and the uplink's HTB tree with exactly the running slivers (`classes`:
    /// each one's HTB class by name). Returns the slivers whose class was made now (the others
    /// were adopted with their counters).
    @discardableResult
    func install(running: [SliverRecord], classes: [String: HTBClass]) throws(NodeError) -> Set<String> {
        let slivers = running.compactMap { r in assignment(r).map { ($0, Self.ports(r)) } }
        let pool = running.compactMap { r -> (SliverAddressPlan.Assignment, String)? in
            guard let address = r.poolAddress, let a = assignment(r) else { return nil }
            return (a, address)
        }
        var bySlot: [Int: HTBClass] = [:]
        for record in running { bySlot[record.id] = classes[record.name] }
        do {
            // The classes first: the firewall's map then points at classes that exist.
            let created = try scheduler.install(slivers: bySlot)
            try firewall.install(slivers: slivers, pool: pool)
            return Set(running.filter { created.contains($0.id) }.map(\.name))
        } catch {
            throw NodeError(.internal, "\(error)")
        }
    }

    /// Creates or changes a running sliver's HTB class (live); true when it was made now.
    @discardableResult
    func setClass(_ record: SliverRecord, _ spec: HTBClass) throws(NodeError) -> Bool {
        do { return try scheduler.set(slot: record.id, spec) } catch { throw NodeError(.internal, "\(error)") }
    }

    /// Gives a starting sliver its HTB class and its firewall elements; true when the class was
    /// made now (its counter starts at zero).
    func attach(_ record: SliverRecord, _ spec: HTBClass) throws(NodeError) -> Bool {
        guard let a = assignment(record) else { return false }
        do {
            let created = try scheduler.set(slot: record.id, spec)
            try firewall.add(a, ports: Self.ports(record))
            if let address = record.poolAddress { try firewall.setPoolAddress(address, of: a, assigned: true) }
            return created
        } catch {
            throw NodeError(.internal, "\(error)")
        }
    }

    func setPort(_ port: PortReservation, of record: SliverRecord, reserved: Bool) throws(NodeError) {
        guard let a = assignment(record) else { return }
        do {
            try firewall.setPort(NodeFirewall.Port(proto: port.proto, port: port.port), of: a, reserved: reserved)
        } catch {
            throw NodeError(.internal, "\(error)")
        }
    }

    /// Removes what a sliver had: its firewall elements, its HTB class and, if its namespace is
    /// somehow still alive, its veth (normally the pair vanished with the namespace). Returns
    /// the class's last byte counter (nil: it had none).
    @discardableResult
    func detach(_ record: SliverRecord) -> UInt64? {
        guard let a = assignment(record) else { return nil }
        firewall.remove(a, ports: Self.ports(record))
        if let address = record.poolAddress { try? firewall.setPoolAddress(address, of: a, assigned: false) }
        _ = try? LinkTable.delete(a.veth)
        return (try? scheduler.remove(slot: record.id)) ?? nil
    }
}

extension NodeNetwork {
    func setPoolAddress(_ address: String, of record: SliverRecord, assigned: Bool) throws(NodeError) {
        guard let a = assignment(record) else { return }
        do { try firewall.setPoolAddress(address, of: a, assigned: assigned) } catch { throw NodeError(.internal, "\(error)") }
    }
}
