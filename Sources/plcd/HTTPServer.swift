#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import PLCProtocol

/// A single-threaded HTTP/1.1 server: one poll() loop over the listening socket and its
/// clients, one request per connection (answered with `Connection: close`). Between events it
/// checks whether the data file changed and reloads it (a bad file is logged, the old data kept).
final class HTTPServer {
    private let listenFD: Int32
    private let dataPath: String
    private var service: PLCService
    private var dataStamp: [Int]
    private var clients: [Int32: [UInt8]] = [:]
    let address: String

    init(listen: String, dataPath: String) throws(PLCProtocolError) {
        self.dataPath = dataPath
        service = PLCService(data: try PLCData.load(dataPath))
        dataStamp = HTTPServer.stamp(dataPath)
        (listenFD, address) = try HTTPServer.bind(listen)
    }

    private static func bind(_ spec: String) throws(PLCProtocolError) -> (Int32, String) {
        func fail(_ what: String) -> PLCProtocolError { PLCProtocolError(.invalidArgument, stage: "plcd.listen", "\(spec): \(what)") }
        guard let colon = spec.lastIndex(of: ":"), let port = UInt16(spec[spec.index(after: colon)...]) else {
            throw fail("expected HOST:PORT (IPv4 address, port 0 = any free port)")
        }
        let host = String(spec[..<colon])
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(port.bigEndian)
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else { throw fail("not an IPv4 address") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw fail("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, Glibc.listen(fd, 128) == 0 else {
            let err = errno
            close(fd)
            throw fail("bind/listen: \(String(cString: strerror(err)))")
        }
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, "\(host):\(UInt16(bigEndian: bound.sin_port))")
    }

    /// inode, size and mtime (ns): any change of the file triggers a reload.
    private static func stamp(_ path: String) -> [Int] {
        var st = stat()
        guard stat(path, &st) == 0 else { return [] }
        return [Int(st.st_ino), Int(st.st_size), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec)]
    }

    private func reloadIfChanged() {
        let now = HTTPServer.stamp(dataPath)
        guard now != dataStamp else { return }
        dataStamp = now
        do {
            service.data = try PLCData.load(dataPath)
            log("reloaded \(dataPath): \(service.data.nodes.count) nodes, \(service.data.slices?.count ?? 0) slices")
        } catch {
            log("keeping the previous data: \(error)")
        }
    }

    func run() -> Never {
        while true {
            reloadIfChanged()
            var fds = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
            fds += clients.keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), 250)
            if n <= 0 { continue }
            for entry in fds where entry.revents != 0 {
                if entry.fd == listenFD { accept() } else { read(entry.fd) }
            }
        }
    }

    private func accept() {
        while true {
            let fd = sliver_accept(listenFD)
            if fd < 0 { return }
            clients[fd] = []
        }
    }

    private func read(_ fd: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                clients[fd, default: []].append(contentsOf: buffer[0..<n])
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { break }
            finish(fd)  // EOF or error before a complete request
            return
        }
        do {
            guard let request = try HTTPMessage.parseRequest(clients[fd] ?? []) else { return }
            respond(fd, to: request)
        } catch {
            send(fd, HTTPMessage.encodeResponse(status: 400, reason: "Bad Request", contentType: "text/plain", body: Array("\(error)\n".utf8)))
        }
        finish(fd)
    }

    private func finish(_ fd: Int32) {
        clients[fd] = nil
        close(fd)
    }

    private func respond(_ fd: Int32, to request: HTTPRequest) {
        guard request.method == "POST" else {
            send(fd, HTTPMessage.encodeResponse(status: 405, reason: "Method Not Allowed", contentType: "text/plain",
                                                body: Array("plcd serves XML-RPC: POST a methodCall\n".utf8)))
            return
        }
        // A request answers from the file as it is now, even if it changed during poll().
        reloadIfChanged()
        let faults = service.data.faults
        if let delay = faults?.delay_s, delay > 0 { usleep(UInt32(min(delay, 600) * 1_000_000)) }
        let body: [UInt8]
        do {
            let call = try XMLRPCDecoder.decodeCall(request.body)
            let (response, line) = service.handle(call, now: Int(Date().timeIntervalSince1970))
            log(line)
            body = try XMLRPCEncoder.encode(response)
        } catch {
            log("bad request: \(error)")
            body = (try? XMLRPCEncoder.encode(.fault(code: PLCFault.invalidArgument, string: PLCFault.string(PLCFault.invalidArgument, error.message)))) ?? []
        }
        switch faults?.mode ?? "none" {
        case "html", "html200":
            let page = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><hr></body></html>\n"
            let status = faults?.mode == "html" ? 502 : 200
            send(fd, HTTPMessage.encodeResponse(status: status, reason: status == 200 ? "OK" : "Bad Gateway", contentType: "text/html", body: Array(page.utf8)))
        case "truncated":
            send(fd, HTTPMessage.encodeResponse(status: 200, reason: "OK", contentType: "text/xml", body: Array(body.prefix(body.count / 2))))
        case "close":
            return
        default:
            send(fd, HTTPMessage.encodeResponse(status: 200, reason: "OK", contentType: "text/xml", body: body))
        }
    }

    /// Blocking send with a bound: a client that does not read within 5 s is dropped.
    private func send(_ fd: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { offset += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&pfd, 1, 5000) > 0 { continue }
            }
            log("dropping a client that does not read its answer")
            return
        }
    }
}

func log(_ line: String) {
    FileHandle.standardError.write(Data("plcd: \(line)\n".utf8))
}
