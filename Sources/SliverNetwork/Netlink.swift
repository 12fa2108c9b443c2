#if canImport(Glibc)
import Glibc
#endif
import CMnl

/// One rtnetlink request as bytes: a netlink header, a fixed family header (tcmsg for traffic
/// control) and attributes, some nested. Built in Swift, so no pointer into a shared buffer
/// outlives the call that wrote it; the socket fills in the sequence number when it sends.
struct NetlinkMessage {
    private(set) var bytes: [UInt8]
    /// What the message does, for the error of a refused one ("RTM_NEWTCLASS 1:1001 on up0").
    let what: String
    private var nests: [Int] = []

    init(type: Int32, flags: Int32, what: String) {
        self.what = what
        bytes = [UInt8](repeating: 0, count: MemoryLayout<nlmsghdr>.size)
        withHeader { header in
            header.nlmsg_type = UInt16(type)
            header.nlmsg_flags = UInt16(flags)
        }
    }

    private mutating func withHeader(_ body: (inout nlmsghdr) -> Void) {
        var header = bytes.withUnsafeBytes { $0.loadUnaligned(as: nlmsghdr.self) }
        body(&header)
        header.nlmsg_len = UInt32(bytes.count)
        withUnsafeBytes(of: header) { raw in bytes.replaceSubrange(0..<raw.count, with: raw) }
    }

    /// Appends a C struct (the family header or an attribute payload), padded to 4 bytes.
    mutating func append<T>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
        pad()
    }

    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
        withHeader { _ in }
    }

    mutating func attribute(_ type: Int32, _ payload: [UInt8]) {
        let header = nlattr(nla_len: UInt16(MemoryLayout<nlattr>.size + payload.count), nla_type: UInt16(type))
        withUnsafeBytes(of: header) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: payload)
        pad()
    }

    mutating func attribute<T>(_ type: Int32, value: T) {
        attribute(type, withUnsafeBytes(of: value) { Array($0) })
    }

    mutating func attribute(_ type: Int32, string: String) {
        attribute(type, Array(string.utf8) + [0])
    }

    /// Attributes added until `endNest` go inside this one (NLA_F_NESTED is not set: the
    /// traffic-control options are parsed with the kernel's deprecated, flag-less parser).
    mutating func beginNest(_ type: Int32) {
        nests.append(bytes.count)
        attribute(type, [])
    }

    mutating func endNest() {
        let start = nests.removeLast()
        let length = UInt16(bytes.count - start)
        withUnsafeBytes(of: length) { bytes.replaceSubrange(start..<start + 2, with: $0) }
    }
}

/// Walks netlink attributes (`struct nlattr` + payload, 4-byte aligned) in a buffer.
func forEachAttribute(_ buffer: UnsafeRawBufferPointer, _ body: (_ type: Int32, _ payload: UnsafeRawBufferPointer) -> Void) {
    var offset = 0
    let headerSize = MemoryLayout<nlattr>.size
    while offset + headerSize <= buffer.count {
        let header = buffer.loadUnaligned(fromByteOffset: offset, as: nlattr.self)
        let length = Int(header.nla_len)
        guard length >= headerSize, offset + length <= buffer.count else { return }
        // The top bits are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER), not part of the type.
        body(Int32(header.nla_type) & ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER), UnsafeRawBufferPointer(rebasing: buffer[(offset + headerSize)..<(offset + length)]))
        offset += (length + 3) & ~3
    }
}

/// A NETLINK_ROUTE socket of the caller's network namespace (libmnl), for one batch of
/// requests or one dump. Requests are packed several to a datagram (the kernel handles each
/// message of a datagram in turn and acknowledges each one), so installing a thousand classes
/// is a few dozen system calls, not thousands.
final class NetlinkSocket {
    private let nl: OpaquePointer
    private var seq = UInt32(truncatingIfNeeded: time(nil))
    /// Large enough for the kernel's dump datagrams (it sizes them after the reader's buffer).
    private let receiveSize = 65536
    private let buffer: UnsafeMutableRawPointer
    /// Requests per datagram: their acknowledgements (36 bytes each with NETLINK_CAP_ACK) must
    /// fit the socket's receive buffer, or the kernel drops them.
    static let batchSize = 128

    init() throws(NetworkError) {
        guard let nl = mnl_socket_open2(NETLINK_ROUTE, Int32(SOCK_CLOEXEC.rawValue)) else {
            throw NetworkError(stage: "netlink.open", "socket(AF_NETLINK, NETLINK_ROUTE)", errno: errno)
        }
        guard mnl_socket_bind(nl, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let err = errno
            mnl_socket_close(nl)
            throw NetworkError(stage: "netlink.bind", "bind rtnetlink socket", errno: err)
        }
        // CAP_ACK: an error does not echo the whole request back; EXT_ACK: it carries the
        // kernel's own explanation ("NLM_F_REPLACE needed to override"), which goes in our error.
        var one: Int32 = 1
        _ = mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &one, socklen_t(MemoryLayout<Int32>.size))
        self.nl = nl
        buffer = UnsafeMutableRawPointer.allocate(byteCount: receiveSize, alignment: 8)
    }

    deinit {
        buffer.deallocate()
        mnl_socket_close(nl)
    }

    /// Sends every message (each with NLM_F_ACK) and waits for every acknowledgement. All of a
    /// datagram's messages are processed by the kernel even when one fails; the first failure is
    /// thrown after its datagram, and later datagrams are not sent.
    func transact(_ messages: [NetlinkMessage]) throws(NetworkError) {
        var start = 0
        while start < messages.count {
            let chunk = messages[start..<min(messages.count, start + Self.batchSize)]
            start += chunk.count
            var datagram: [UInt8] = []
            var pending: [UInt32: String] = [:]
            for message in chunk {
                seq &+= 1
                var bytes = message.bytes
                bytes.withUnsafeMutableBytes { raw in
                    var header = raw.loadUnaligned(as: nlmsghdr.self)
                    header.nlmsg_seq = seq
                    header.nlmsg_flags |= UInt16(NLM_F_REQUEST | NLM_F_ACK)
                    raw.storeBytes(of: header, as: nlmsghdr.self)
                }
                datagram += bytes
                pending[seq] = message.what
            }
            let sent = datagram.withUnsafeBytes { mnl_socket_sendto(nl, $0.baseAddress, $0.count) }
            guard sent >= 0 else { throw NetworkError(stage: "netlink.send", chunk.first?.what ?? "", errno: errno) }
            var failure: NetworkError?
            while !pending.isEmpty {
                try receive("acknowledgement of \(pending.values.first ?? "")") { header, payload in
                    guard Int32(header.nlmsg_type) == NLMSG_ERROR, let what = pending.removeValue(forKey: header.nlmsg_seq) else { return }
                    let (code, message) = Self.parseError(header, payload)
                    if code != 0, failure == nil {
                        failure = NetworkError(stage: "netlink.request", what + (message.isEmpty ? "" : ": " + message), errno: -code)
                    }
                }
            }
            if let failure { throw failure }
        }
    }

    /// Sends one dump request and hands every answer message to `body`, until NLMSG_DONE.
    func dump(_ request: NetlinkMessage, _ body: (nlmsghdr, UnsafeRawBufferPointer) -> Void) throws(NetworkError) {
        seq &+= 1
        var bytes = request.bytes
        let expected = seq
        bytes.withUnsafeMutableBytes { raw in
            var header = raw.loadUnaligned(as: nlmsghdr.self)
            header.nlmsg_seq = expected
            header.nlmsg_flags = UInt16(NLM_F_REQUEST | NLM_F_DUMP)
            raw.storeBytes(of: header, as: nlmsghdr.self)
        }
        let sent = bytes.withUnsafeBytes { mnl_socket_sendto(nl, $0.baseAddress, $0.count) }
        guard sent >= 0 else { throw NetworkError(stage: "netlink.send", request.what, errno: errno) }
        var done = false
        var failure: NetworkError?
        while !done {
            try receive(request.what) { header, payload in
                guard header.nlmsg_seq == expected else { return }
                switch Int32(header.nlmsg_type) {
                case NLMSG_DONE: done = true
                case NLMSG_ERROR:
                    let (code, message) = Self.parseError(header, payload)
                    failure = NetworkError(stage: "netlink.dump", request.what + (message.isEmpty ? "" : ": " + message), errno: -code)
                    done = true
                default: body(header, payload)
                }
            }
        }
        if let failure { throw failure }
    }

    /// One datagram from the kernel, split into its messages.
    private func receive(_ what: String, _ body: (nlmsghdr, UnsafeRawBufferPointer) -> Void) throws(NetworkError) {
        let n = mnl_socket_recvfrom(nl, buffer, receiveSize)
        guard n >= 0 else { throw NetworkError(stage: "netlink.recv", what, errno: errno) }
        let datagram = UnsafeRawBufferPointer(start: buffer, count: n)
        let headerSize = MemoryLayout<nlmsghdr>.size
        var offset = 0
        while offset + headerSize <= datagram.count {
            let header = datagram.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self)
            let length = Int(header.nlmsg_len)
            guard length >= headerSize, offset + length <= datagram.count else { break }
            body(header, UnsafeRawBufferPointer(rebasing: datagram[(offset + headerSize)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
    }

    /// An NLMSG_ERROR: its code (0 = acknowledgement, else -errno) and, with NETLINK_EXT_ACK,
    /// the kernel's message, which follows the echoed request header (or the whole request
    /// when the kernel did not cap it).
    private static func parseError(_ header: nlmsghdr, _ payload: UnsafeRawBufferPointer) -> (Int32, String) {
        guard payload.count >= MemoryLayout<nlmsgerr>.size else { return (-EPROTO, "short error message") }
        let error = payload.loadUnaligned(as: nlmsgerr.self)
        guard Int32(header.nlmsg_flags) & NLM_F_ACK_TLVS != 0 else { return (error.error, "") }
        var offset = MemoryLayout<nlmsgerr>.size
        if Int32(header.nlmsg_flags) & NLM_F_CAPPED == 0 { offset += Int(error.msg.nlmsg_len) - MemoryLayout<nlmsghdr>.size }
        guard offset <= payload.count else { return (error.error, "") }
        var message = ""
        forEachAttribute(UnsafeRawBufferPointer(rebasing: payload[offset...])) { type, value in
            if type == Int32(NLMSGERR_ATTR_MSG.rawValue) {
                message = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        return (error.error, message)
    }
}
