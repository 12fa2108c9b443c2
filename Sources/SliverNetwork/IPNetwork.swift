#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 network or address with a prefix length ("10.77.0.0/16", "fd77::/48").
public struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    public enum Family: Sendable { case v4, v6 }
    public let family: Family
    /// Address bytes (4 or 16), network order.
    public let bytes: [UInt8]
    public let prefix: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first else { return nil }
        let address = String(first)
        var buffer = [UInt8](repeating: 0, count: 16)
        if address.contains(":") {
            guard inet_pton(AF_INET6, address, &buffer) == 1 else { return nil }
            family = .v6
            bytes = buffer
        } else {
            guard inet_pton(AF_INET, address, &buffer) == 1 else { return nil }
            family = .v4
            bytes = Array(buffer[0..<4])
        }
        let maxPrefix = bytes.count * 8
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...maxPrefix).contains(p) else { return nil }
            prefix = p
        } else {
            prefix = maxPrefix
        }
    }

    public init(family: Family, bytes: [UInt8], prefix: Int) {
        self.family = family
        self.bytes = bytes
        self.prefix = prefix
    }

    public var address: String {
        var out = [CChar](repeating: 0, count: 64)
        _ = inet_ntop(family == .v4 ? AF_INET : AF_INET6, bytes, &out, 64)
        return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public var description: String { "\(address)/\(prefix)" }

    /// The network address (host bits cleared).
    public var network: IPNetwork {
        IPNetwork(family: family, bytes: bytes.enumerated().map { i, b in b & Self.maskByte(prefix, i) }, prefix: prefix)
    }

    static func maskByte(_ prefix: Int, _ index: Int) -> UInt8 {
        let bits = max(0, min(8, prefix - index * 8))
        return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
    }

    public func contains(_ other: IPNetwork) -> Bool {
        guard family == other.family, other.prefix >= prefix else { return false }
        return (0..<bytes.count).allSatisfy { (bytes[$0] ^ other.bytes[$0]) & Self.maskByte(prefix, $0) == 0 }
    }

    public func overlaps(_ other: IPNetwork) -> Bool { contains(other) || other.contains(self) }

    /// This network plus `offset` addresses (big-endian addition), with a new prefix length.
    public func adding(_ offset: UInt64, prefix newPrefix: Int) -> IPNetwork {
        var out = bytes
        var carry = offset
        var i = out.count - 1
        while carry > 0 && i >= 0 {
            let sum = UInt64(out[i]) + (carry & 0xFF)
            out[i] = UInt8(truncatingIfNeeded: sum)
            carry = (carry >> 8) + (sum >> 8)
            i -= 1
        }
        return IPNetwork(family: family, bytes: out, prefix: newPrefix)
    }
}
