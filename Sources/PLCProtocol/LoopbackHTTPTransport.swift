#if canImport(Glibc)
import Glibc
#endif

/// HTTP/1.1 over a plain TCP socket to a loopback address: one request per connection
/// (`Connection: close`), non-blocking socket with poll() so that connect, send and receive
/// together never take longer than `timeout`.
public struct LoopbackHTTPTransport: PLCTransport {
    public let endpoint: PLCEndpoint
    public let timeout: Double

    public init(endpoint: PLCEndpoint, timeout: Double) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    public func post(_ body: [UInt8]) throws(PLCProtocolError) -> HTTPResponse {
        guard endpoint.isLoopback else {
            throw PLCProtocolError(.invalidArgument, stage: "http.connect", "\(endpoint.url): plain http only to loopback")
        }
        let deadline = Deadline(seconds: timeout)
        let fd = try connect(deadline)
        defer { close(fd) }
        let request = HTTPMessage.encodeRequest(endpoint, body: body)
        try sendAll(fd, request, deadline)
        return try receive(fd, deadline)
    }

    private var target: String { "\(endpoint.host):\(endpoint.port)" }

    private func connect(_ deadline: Deadline) throws(PLCProtocolError) -> Int32 {
        let v6 = endpoint.host == "::1"
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw PLCProtocolError(.transport, stage: "http.connect", "socket: \(errnoText(errno))") }
        var rc: Int32
        if v6 {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(endpoint.port).bigEndian)
            inet_pton(AF_INET6, "::1", &address.sin6_addr)
            rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(endpoint.port).bigEndian)
            inet_pton(AF_INET, endpoint.host == "localhost" ? "127.0.0.1" : endpoint.host, &address.sin_addr)
            rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        if rc != 0 && errno != EINPROGRESS {
            let err = errno
            close(fd)
            throw PLCProtocolError(.transport, stage: "http.connect", "connect to \(target): \(errnoText(err))")
        }
        if rc != 0 {
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            while true {
                let n = poll(&pfd, 1, deadline.remainingMilliseconds)
                if n < 0 && errno == EINTR { continue }
                if n == 0 {
                    close(fd)
                    throw PLCProtocolError(.timeout, stage: "http.connect", "connect to \(target): no answer within \(timeout) s")
                }
                break
            }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                close(fd)
                throw PLCProtocolError(.transport, stage: "http.connect", "connect to \(target): \(errnoText(err))")
            }
        }
        return fd
    }

    private func sendAll(_ fd: Int32, _ bytes: [UInt8], _ deadline: Deadline) throws(PLCProtocolError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { offset += n; continue }
            let err = errno
            guard n < 0, err == EAGAIN || err == EINTR else {
                throw PLCProtocolError(.transport, stage: "http.send", "send to \(target): \(errnoText(err))")
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            if poll(&pfd, 1, deadline.remainingMilliseconds) == 0 {
                throw PLCProtocolError(.timeout, stage: "http.send", "\(target) did not take the request within \(timeout) s")
            }
        }
    }

    private func receive(_ fd: Int32, _ deadline: Deadline) throws(PLCProtocolError) -> HTTPResponse {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                data.append(contentsOf: buffer[0..<n])
                guard data.count <= HTTPMessage.maxBody + HTTPMessage.maxHeader else {
                    throw PLCProtocolError(.malformed, stage: "http.response", "answer from \(target) larger than \(HTTPMessage.maxBody) bytes")
                }
                // Content-Length reached: done even if the server keeps the connection open.
                if let response = try HTTPMessage.parseResponse(data, complete: false) { return response }
                continue
            }
            if n == 0 {
                guard let response = try HTTPMessage.parseResponse(data, complete: true) else {
                    throw PLCProtocolError(.malformed, stage: "http.response", "incomplete answer from \(target)")
                }
                return response
            }
            let err = errno
            if err == EINTR { continue }
            guard err == EAGAIN else { throw PLCProtocolError(.transport, stage: "http.receive", "receive from \(target): \(errnoText(err))") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, deadline.remainingMilliseconds) == 0 {
                throw PLCProtocolError(.timeout, stage: "http.receive",
                                       "no complete answer from \(target) within \(timeout) s (\(data.count) bytes received)")
            }
        }
    }
}
