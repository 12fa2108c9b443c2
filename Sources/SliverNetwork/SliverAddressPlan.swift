/// Where each sliver sits on the node's private networks, derived from its stable id alone, so a
/// restarted daemon computes the same names and addresses and never needs to store them.
///
/// IPv4: a /30 per sliver out of `ipv4` (host end .1, sliver .2 of each block).
/// IPv6: a /64 per sliver out of `ipv6` (which must be /48 or wider): ::1 host end, ::2 sliver.
public struct SliverAddressPlan: Sendable, Equatable {
    public let ipv4: IPNetwork
    public let ipv6: IPNetwork?

    public init(ipv4: IPNetwork, ipv6: IPNetwork?) {
        self.ipv4 = ipv4.network
        self.ipv6 = ipv6?.network
    }

    /// How many slivers the IPv4 range holds.
    public var capacity: Int { ipv4.prefix > 30 ? 0 : 1 << (30 - ipv4.prefix) }

    public struct Assignment: Sendable, Equatable {
        /// The sliver's stable id (its ID-range slot), which names everything below.
        public let id: Int
        /// Host end of the veth pair: "slv" + the id in hex, at most 15 bytes (IFNAMSIZ).
        public let veth: String
        public let sliverIPv4: IPNetwork
        public let hostIPv4: IPNetwork
        public let sliverIPv6: IPNetwork?
        public let hostIPv6: IPNetwork?
    }

    public static let vethPrefix = "slv"

    public func assignment(id: Int) -> Assignment? {
        guard id >= 0, id < capacity else { return nil }
        let block = ipv4.adding(UInt64(id) * 4, prefix: 30)
        let v6 = ipv6.map { net -> IPNetwork in
            // The sliver's /64: the id goes into bits 48-63.
            var bytes = net.bytes
            bytes[6] = UInt8(truncatingIfNeeded: id >> 8)
            bytes[7] = UInt8(truncatingIfNeeded: id)
            return IPNetwork(family: .v6, bytes: bytes, prefix: 64)
        }
        let hex = String(id, radix: 16)
        return Assignment(
            id: id, veth: Self.vethPrefix + String(repeating: "0", count: max(0, 6 - hex.count)) + hex,
            sliverIPv4: block.adding(2, prefix: 30), hostIPv4: block.adding(1, prefix: 30),
            sliverIPv6: v6?.adding(2, prefix: 64), hostIPv6: v6?.adding(1, prefix: 64))
    }
}
