#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation

/// A connection to sliverd's control socket (used by sliverctl and the tests).
public final class ControlClient {
    let fd: Int32
    private var buffer = Data()

    public init(socketPath: String) throws(NodeError) {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw NodeError(.unavailable, "socket(AF_UNIX): errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(socketPath.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw NodeError.invalid("socket", socketPath, "path too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let err = errno
            close(fd)
            let reason = err == ENOENT || err == ECONNREFUSED ? "is sliverd running?" : String(cString: strerror(err))
            throw NodeError(.unavailable, "cannot connect to sliverd at \(socketPath): \(reason)")
        }
    }

    deinit { close(fd) }

    /// Sends one request (with descriptors, for exec) and waits for its response.
    public func call(_ request: ControlRequest, fds: [Int32] = []) throws(NodeError) -> ControlResponse {
        var line: Data
        do {
            line = try JSONEncoder().encode(request)
        } catch {
            throw NodeError(.internal, "encode request: \(error)")
        }
        line.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < line.count {
            // Descriptors ride on the first sendmsg only.
            let n = line.withUnsafeBytes { raw in
                fds.withUnsafeBufferPointer { f in
                    sliver_send_fds(fd, raw.baseAddress! + offset, raw.count - offset, offset == 0 ? f.baseAddress : nil, offset == 0 ? Int32(f.count) : 0)
                }
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw NodeError(.unavailable, "sliverd connection lost while sending: errno \(errno)")
            }
            offset += n
        }
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let response = buffer[buffer.startIndex..<newline]
                buffer.removeSubrange(buffer.startIndex...newline)
                do {
                    return try ControlResponse.decode(Data(response))
                } catch {
                    throw NodeError(.internal, "malformed response from sliverd: \(error)")
                }
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw NodeError(.unavailable, "sliverd closed the connection") }
            buffer.append(contentsOf: chunk[0..<n])
        }
    }

    /// call() that turns an error response into a thrown NodeError and decodes the result.
    public func result<T: Decodable>(_ request: ControlRequest, as type: T.Type, fds: [Int32] = []) throws(NodeError) -> T {
        let response = try call(request, fds: fds)
        guard response.ok, let data = response.result else {
            let body = response.error
            throw NodeError(NodeError.Code(rawValue: body?.code ?? "internal") ?? .internal, body?.message ?? "request failed", field: body?.field)
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw NodeError(.internal, "unexpected result from sliverd: \(error)")
        }
    }
}
