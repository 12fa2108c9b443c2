#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import SliverSystem

/// HTTPS through `curl --cacert CA`, one process per request (see PLCTransport for why).
/// The request body reaches curl on stdin from a memfd; curl writes the body of the answer on
/// stdout followed by a marker line carrying the status and content type (`--write-out`), so
/// no temporary file is involved. curl's own limits (`--connect-timeout`, `--max-time`) are
/// backed by a kill of the process when the deadline passes anyway.
public struct CurlTransport: PLCTransport {
    public let endpoint: PLCEndpoint
    public let caCert: String
    public let timeout: Double
    public let curl: String

    static let marker = "\n--sliverd-curl-result:"

    public init(endpoint: PLCEndpoint, caCert: String, timeout: Double, curl: String = "/usr/bin/curl") {
        self.endpoint = endpoint
        self.caCert = caCert
        self.timeout = timeout
        self.curl = curl
    }

    var arguments: [String] {
        [curl, "-q", // first argument: ignore ~/.curlrc
         "--silent", "--show-error",
         "--proto", "=\(endpoint.scheme.rawValue)", // no redirect or other protocol
         "--cacert", caCert,
         "--connect-timeout", String(max(1, Int(min(timeout, 30)))),
         "--max-time", String(max(1, Int(timeout.rounded(.up)))),
         "--max-filesize", String(HTTPMessage.maxBody),
         "--request", "POST",
         "--header", "Content-Type: text/xml",
         "--header", "Expect:", // no 100-continue round trip
         "--user-agent", "sliverd-plc/1",
         "--data-binary", "@-",
         "--output", "-",
         "--write-out", Self.marker + "%{http_code} %{content_type}",
         endpoint.url]
    }

    public func post(_ body: [UInt8]) throws(PLCProtocolError) -> HTTPResponse {
        let stdin = sliver_memfd("plc-request")
        guard stdin >= 0 else { throw PLCProtocolError(.transport, stage: "https.curl", "memfd_create: \(errnoText(errno))") }
        defer { close(stdin) }
        var written = 0
        while written < body.count {
            let n = body.withUnsafeBytes { write(stdin, $0.baseAddress! + written, $0.count - written) }
            guard n > 0 else { throw PLCProtocolError(.transport, stage: "https.curl", "write request to memfd: \(errnoText(errno))") }
            written += n
        }
        lseek(stdin, 0, SEEK_SET)
        // Started with PATH only: no proxy variables, no CURL_CA_BUNDLE from the daemon's environment.
        let result = try SubprocessRunner.run(arguments, stdin: stdin, deadline: Deadline(seconds: timeout + 5))
        if result.timedOut {
            throw PLCProtocolError(.timeout, stage: "https.curl", "\(endpoint.url): no answer within \(timeout) s (curl killed)")
        }
        let message = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
        switch result.status {
        case 0: break
        case 28:
            throw PLCProtocolError(.timeout, stage: "https.curl", "\(endpoint.url): no answer within \(timeout) s: \(message)")
        case 35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91:
            throw PLCProtocolError(.transport, stage: "https.tls", "\(endpoint.url): TLS failed (curl exit \(result.status)): \(message) [CA \(caCert)]")
        case 127:
            throw PLCProtocolError(.transport, stage: "https.curl", "cannot run \(curl): \(message)")
        default:
            throw PLCProtocolError(.transport, stage: "https.curl", "\(endpoint.url): curl exit \(result.status): \(message)")
        }
        let marker = Array(Self.marker.utf8)
        guard let at = lastIndex(of: marker, in: result.stdout) else {
            throw PLCProtocolError(.malformed, stage: "https.curl", "curl output without its status line")
        }
        let tail = String(decoding: result.stdout[(at + marker.count)...], as: UTF8.self)
        let status = Int(tail.prefix { $0 != " " }) ?? 0
        let contentType = String(tail.drop { $0 != " " }.dropFirst())
        return HTTPResponse(status: status, reason: "", contentType: contentType, body: Array(result.stdout[..<at]))
    }

    private func lastIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = haystack.count - needle.count
        while i >= 0 {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i -= 1
        }
        return nil
    }
}

/// Runs a host tool to completion with a deadline: stdout and stderr collected, killed when
/// the deadline passes.
enum SubprocessRunner {
    struct Result {
        var status: Int32
        var stdout: [UInt8]
        var stderr: String
        var timedOut: Bool
    }

    static func run(_ argv: [String], stdin: Int32, deadline: Deadline) throws(PLCProtocolError) -> Result {
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        guard sliver_pipe_cloexec(&out) == 0 else { throw PLCProtocolError(.transport, stage: "spawn", "pipe2: \(errnoText(errno))") }
        guard sliver_pipe_cloexec(&err) == 0 else {
            close(out[0]); close(out[1])
            throw PLCProtocolError(.transport, stage: "spawn", "pipe2: \(errnoText(errno))")
        }
        let process: SpawnedProcess
        do {
            process = try Spawn.start(argv, stdio: (stdin, out[1], err[1]))
        } catch {
            [out[0], out[1], err[0], err[1]].forEach { close($0) }
            throw PLCProtocolError(.transport, stage: "spawn", "cannot start \(argv[0]): \(error)")
        }
        close(out[1]); close(err[1])
        defer { close(out[0]); close(err[0]); close(process.pidfd) }
        var outputs: [[UInt8]] = [[], []]
        var fds = [pollfd(fd: out[0], events: Int16(POLLIN), revents: 0), pollfd(fd: err[0], events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 65536)
        var open = 2
        var timedOut = false
        while open > 0 {
            let n = poll(&fds, 2, deadline.remainingMilliseconds)
            if n < 0 && errno == EINTR { continue }
            if n == 0 {
                timedOut = true
                _ = sliver_pidfd_send_signal(process.pidfd, SIGKILL)
                break
            }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let got = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if got > 0 {
                    if outputs[i].count <= HTTPMessage.maxBody + 4096 { outputs[i].append(contentsOf: buffer[0..<got]) }
                } else if got == 0 || errno != EINTR {
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        var status: Int32 = 0
        while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
        return Result(status: status, stdout: outputs[0], stderr: String(decoding: outputs[1], as: UTF8.self), timedOut: timedOut)
    }
}
