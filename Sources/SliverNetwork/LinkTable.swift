#if canImport(Glibc)
import Glibc
#endif
import CMnl
import CSliverShim

/// A network interface as rtnetlink reports it.
public struct Link: Sendable, Equatable {
    public var index: Int32
    public var name: String
    public var isUp: Bool
}

/// One rtnetlink socket (libmnl) of the caller's network namespace with its receive buffer, for
/// one request: RTM_*LINK messages carry an ifinfomsg header and are answered on the same socket.
private final class RtnetlinkRequest {
    let nl: OpaquePointer
    let size = sliver_mnl_socket_buffer_size()
    let buffer: UnsafeMutableRawPointer
    let seq = UInt32(truncatingIfNeeded: time(nil))

    init() throws(NetworkError) {
        guard let nl = mnl_socket_open2(NETLINK_ROUTE, Int32(SOCK_CLOEXEC.rawValue)) else {
            throw NetworkError(stage: "netlink.open", "socket(AF_NETLINK, NETLINK_ROUTE)", errno: errno)
        }
        guard mnl_socket_bind(nl, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let err = errno
            mnl_socket_close(nl)
            throw NetworkError(stage: "netlink.bind", "bind rtnetlink socket", errno: err)
        }
        self.nl = nl
        buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
    }

    deinit {
        buffer.deallocate()
        mnl_socket_close(nl)
    }

    var portid: UInt32 { mnl_socket_get_portid(nl) }

    /// Sends `type` with `flags` about interface `index` (0 = all).
    func send(type: Int32, flags: Int32, index: Int32, _ what: String) throws(NetworkError) {
        let header = mnl_nlmsg_put_header(buffer)!
        header.pointee.nlmsg_type = UInt16(type)
        header.pointee.nlmsg_flags = UInt16(flags)
        header.pointee.nlmsg_seq = seq
        let info = mnl_nlmsg_put_extra_header(header, MemoryLayout<ifinfomsg>.size)!.assumingMemoryBound(to: ifinfomsg.self)
        info.pointee.ifi_family = UInt8(AF_UNSPEC)
        info.pointee.ifi_index = index
        guard mnl_socket_sendto(nl, header, Int(header.pointee.nlmsg_len)) >= 0 else {
            throw NetworkError(stage: "netlink.send", what, errno: errno)
        }
    }

    func receive(_ what: String) throws(NetworkError) -> Int {
        let n = mnl_socket_recvfrom(nl, buffer, size)
        if n < 0 { throw NetworkError(stage: "netlink.recv", what, errno: errno) }
        return n
    }
}

/// The interfaces of the caller's network namespace over rtnetlink (libmnl), no `ip` subprocess.
public enum LinkTable {
    /// Deletes an interface by name (RTM_DELLINK); deleting one end of a veth pair deletes both.
    /// Returns false when there was no such interface.
    @discardableResult
    public static func delete(_ name: String) throws(NetworkError) -> Bool {
        let index = if_nametoindex(name)
        if index == 0 { return false }
        let request = try RtnetlinkRequest()
        try request.send(type: Int32(RTM_DELLINK), flags: NLM_F_REQUEST | NLM_F_ACK, index: Int32(index), "RTM_DELLINK \(name)")
        let n = try request.receive("RTM_DELLINK \(name)")
        // The ACK is an NLMSG_ERROR with error 0; mnl_cb_run turns a non-zero one into -1/errno.
        if mnl_cb_run(request.buffer, n, request.seq, request.portid, nil, nil) < 0 {
            if errno == ENODEV { return false }
            throw NetworkError(stage: "netlink.dellink", "delete interface \(name)", errno: errno)
        }
        return true
    }

    /// Every interface, from one RTM_GETLINK dump.
    public static func dump() throws(NetworkError) -> [Link] {
        let request = try RtnetlinkRequest()
        try request.send(type: Int32(RTM_GETLINK), flags: NLM_F_REQUEST | NLM_F_DUMP, index: 0, "RTM_GETLINK dump request")
        var links: [Link] = []
        while true {
            let n = try request.receive("RTM_GETLINK dump")
            let rc = withUnsafeMutablePointer(to: &links) { out in
                mnl_cb_run(request.buffer, n, request.seq, request.portid, { message, data in
                    guard let message, let data else { return MNL_CB_ERROR }
                    let out = data.assumingMemoryBound(to: [Link].self)
                    let info = mnl_nlmsg_get_payload(message)!.assumingMemoryBound(to: ifinfomsg.self).pointee
                    var name = ""
                    var attr = mnl_nlmsg_get_payload_offset(message, MemoryLayout<ifinfomsg>.size)!
                        .assumingMemoryBound(to: nlattr.self)
                    let tail = mnl_nlmsg_get_payload_tail(message)!
                    while mnl_attr_ok(attr, Int32(tail - UnsafeMutableRawPointer(attr))) {
                        if mnl_attr_get_type(attr) == IFLA_IFNAME, let value = mnl_attr_get_str(attr) {
                            name = String(cString: value)
                        }
                        attr = mnl_attr_next(attr)
                    }
                    out.pointee.append(Link(index: info.ifi_index, name: name, isUp: info.ifi_flags & UInt32(IFF_UP) != 0))
                    return MNL_CB_OK
                }, out)
            }
            if rc == MNL_CB_ERROR { throw NetworkError(stage: "netlink.parse", "RTM_GETLINK dump", errno: errno) }
            if rc == MNL_CB_STOP { break }
        }
        return links
    }
}
