// vsh: enter a sliver.
//
//   as a slice account's login shell (sshd runs it):  -vsh  (interactive)  |  vsh -c 'COMMAND'
//   as an admin (root) or a slice user:               vsh [--socket PATH] SLICE [-- CMD ARGS...]
//
// vsh has no privileges and no setuid bit. It connects to sliverd's vsh socket and hands over its
// stdin, stdout and stderr (SCM_RIGHTS); sliverd identifies the caller by its uid (SO_PEERCRED),
// starts the process inside the sliver (a fresh terminal there if vsh runs on one), and answers
// with the exit status, which vsh exits with. While it runs, vsh forwards window-size changes and
// INT/TERM/HUP/QUIT. It links no Foundation: entering is on every login's path.
#if canImport(Glibc)
import Glibc
#endif
import CSliverShim

func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = "vsh: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

/// JSON string literal.
func json(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

// MARK: arguments

var arguments = CommandLine.arguments
let invokedAs = arguments.first ?? "vsh"
var socketPath = getenv("SLIVERD_VSH_SOCKET").map { String(cString: $0) } ?? "/run/sliverd/vsh.sock"
var slice: String?
var command: String?
var commandArgv: [String]?
if invokedAs.hasPrefix("-") {
    // login(1)/sshd convention for an interactive login shell: argv[0] = "-vsh".
} else if arguments.count >= 3 && arguments[1] == "-c" {
    command = arguments[2]  // sshd: the user's shell -c "remote command"
} else {
    var rest = Array(arguments.dropFirst())
    if rest.first == "--socket" {
        guard rest.count >= 2 else { fail("--socket needs a path", status: 2) }
        socketPath = rest[1]
        rest.removeFirst(2)
    }
    if let first = rest.first, first == "-h" || first == "--help" {
        print("usage: vsh [--socket PATH] [SLICE [-- CMD ARGS...]]   (as a login shell: -vsh | vsh -c COMMAND)")
        exit(0)
    }
    if let first = rest.first, !first.hasPrefix("-") {
        slice = first
        rest.removeFirst()
    }
    if rest.first == "--" { rest.removeFirst() }
    if !rest.isEmpty { commandArgv = rest }
}

// MARK: connect and hand over stdio

let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
guard sock >= 0 else { fail("socket: \(String(cString: strerror(errno)))") }
var address = sockaddr_un()
address.sun_family = sa_family_t(AF_UNIX)
let pathBytes = Array(socketPath.utf8)
guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { fail("socket path too long") }
withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in pathBytes.enumerated() { raw[i] = b } }
let connected = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
}
guard connected == 0 else { fail("cannot reach sliverd at \(socketPath): \(String(cString: strerror(errno)))") }

let tty = isatty(0) == 1
var fields = ["\"v\":1", "\"op\":\"login\"", "\"tty\":\(tty)"]
if let slice { fields.append("\"name\":" + json(slice)) }
if let command { fields.append("\"command\":" + json(command)) }
if let commandArgv { fields.append("\"argv\":[" + commandArgv.map(json).joined(separator: ",") + "]") }
var env: [String] = []
for key in ["TERM", "LANG", "LC_ALL"] {
    if let value = getenv(key) { env.append(json(key) + ":" + json(String(cString: value))) }
}
fields.append("\"env\":{" + env.joined(separator: ",") + "}")
let request = Array(("{" + fields.joined(separator: ",") + "}\n").utf8)
let stdio: [Int32] = [0, 1, 2]
let sent = request.withUnsafeBytes { raw in stdio.withUnsafeBufferPointer { sliver_send_fds(sock, raw.baseAddress, raw.count, $0.baseAddress, 3) } }
guard sent == request.count else { fail("cannot send the login request: \(String(cString: strerror(errno)))") }

// MARK: terminal and signals

// On a terminal, the sliver's pty does the line editing and signal generation: ours passes every
// byte through (raw mode), restored on every way out.
var saved = termios()
let rawMode = tty && tcgetattr(0, &saved) == 0
if rawMode {
    var raw = saved
    cfmakeraw(&raw)
    tcsetattr(0, TCSANOW, &raw)
}
@MainActor func restoreTerminal() {
    if rawMode { tcsetattr(0, TCSANOW, &saved) }
}

let forwarded: [Int32] = [SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT]
let signalFD = forwarded.withUnsafeBufferPointer { sliver_block_signals_fd($0.baseAddress, Int32($0.count)) }

@MainActor func send(_ line: String) {
    let bytes = Array(line.utf8)
    _ = bytes.withUnsafeBytes { Glibc.send(sock, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
}

// MARK: wait for the answer

var response: [UInt8] = []
var buffer = [UInt8](repeating: 0, count: 4096)
loop: while true {
    var fds = [pollfd(fd: sock, events: Int16(POLLIN), revents: 0), pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0)]
    if poll(&fds, 2, -1) < 0 {
        if errno == EINTR { continue }
        break
    }
    if fds[1].revents != 0 {
        var info = signalfd_siginfo()
        while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            let signal = Int32(info.ssi_signo)
            send(signal == SIGWINCH ? "{\"v\":1,\"op\":\"winch\"}\n" : "{\"v\":1,\"op\":\"signal\",\"signal\":\(signal)}\n")
        }
    }
    if fds[0].revents != 0 {
        let n = buffer.withUnsafeMutableBytes { read(sock, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        response.append(contentsOf: buffer[0..<n])
        if response.contains(UInt8(ascii: "\n")) { break loop }
    }
}
restoreTerminal()

let text = String(decoding: response, as: UTF8.self)
/// The number or string value after `"key":` in the one-line response.
@MainActor func value(_ key: String) -> Substring? {
    let needle = Array("\"\(key)\":".utf8)
    let bytes = Array(text.utf8)
    guard bytes.count >= needle.count,
          let start = (0...(bytes.count - needle.count)).first(where: { Array(bytes[$0..<$0 + needle.count]) == needle }) else { return nil }
    var rest = Substring(String(decoding: bytes[(start + needle.count)...], as: UTF8.self))
    if rest.first == "\"" {
        rest = rest.dropFirst()
        var out = Substring()
        var escaped = false
        for c in rest {
            if escaped { out.append(c); escaped = false; continue }
            if c == "\\" { escaped = true; continue }
            if c == "\"" { break }
            out.append(c)
        }
        return out
    }
    return rest.prefix { $0 == "-" || $0.isNumber }
}
if text.contains("\"ok\":true"), let status = value("status").flatMap({ Int32($0) }) {
    exit(status)
}
if text.isEmpty { fail("sliverd closed the connection") }
fail(value("message").map(String.init) ?? "login failed")
