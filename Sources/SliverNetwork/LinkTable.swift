#if canImport(Glibc)
import Glibc
#endif
import CMnl

/// A network interface as rtnetlink reports it.
public struct Link: Sendable, Equatable {
    public var index: Int32
    public var name: String
    public var isUp: Bool
}

/// The interfaces of the caller's network namespace over rtnetlink (NetlinkSocket, the socket
/// the link scheduler uses too), no `ip` subprocess.
public enum LinkTable {
    /// Deletes an interface by name (RTM_DELLINK); deleting one end of a veth pair deletes both.
    /// Returns false when there was no such interface.
    @discardableResult
    public static func delete(_ name: String) throws(NetworkError) -> Bool {
        let index = if_nametoindex(name)
        if index == 0 { return false }
        var message = NetlinkMessage(type: Int32(RTM_DELLINK), flags: 0, what: "RTM_DELLINK \(name)")
        message.append(header(index: Int32(index)))
        do {
            try NetlinkSocket().transact([message])
        } catch {
            // Gone between the name lookup and the request: what the caller wanted.
            if error.errno == ENODEV { return false }
            throw error
        }
        return true
    }

    /// Every interface, from one RTM_GETLINK dump.
    public static func dump() throws(NetworkError) -> [Link] {
        var request = NetlinkMessage(type: Int32(RTM_GETLINK), flags: 0, what: "RTM_GETLINK dump")
        request.append(header(index: 0))
        var links: [Link] = []
        let headerSize = MemoryLayout<ifinfomsg>.size
        try NetlinkSocket().dump(request) { message, payload in
            guard Int32(message.nlmsg_type) == RTM_NEWLINK, payload.count >= headerSize else { return }
            let info = payload.loadUnaligned(as: ifinfomsg.self)
            var name = ""
            forEachAttribute(UnsafeRawBufferPointer(rebasing: payload[headerSize...])) { type, value in
                if type == IFLA_IFNAME { name = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self) }
            }
            links.append(Link(index: info.ifi_index, name: name, isUp: info.ifi_flags & UInt32(IFF_UP) != 0))
        }
        return links
    }

    /// The family header of RTM_*LINK: interface `index` (0 = all), any address family.
    private static func header(index: Int32) -> ifinfomsg {
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        info.ifi_index = index
        return info
    }
}
