/// A TCP or UDP port on the node's public address, reserved exclusively for one sliver: inbound
/// traffic to it reaches that sliver, outbound flows from it keep it as their public source port.
public struct PortReservation: Codable, Sendable, Equatable, Hashable {
    public var proto: String
    public var port: Int

    public init(proto: String, port: Int) {
        self.proto = proto
        self.port = port
    }

    static func validate(proto: String, port: Int, range: ClosedRange<Int>) throws(NodeError) {
        guard proto == "tcp" || proto == "udp" else { throw NodeError.invalid("proto", proto, "must be tcp or udp") }
        guard range.contains(port) else { throw NodeError.invalid("port", String(port), "outside the reservable range \(range.lowerBound)-\(range.upperBound)") }
    }
}

extension NodeConfig {
    var reservablePorts: ClosedRange<Int> {
        let bounds = portRange.split(separator: "-").compactMap { Int($0) }
        return bounds.count == 2 && bounds[0] <= bounds[1] ? bounds[0]...bounds[1] : 61000...65535
    }
}
