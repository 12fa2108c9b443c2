// vsh: enter a sliver.
//
//   as a slice account's login shell (sshd runs it):  -vsh  (interactive)  |  vsh -c 'COMMAND'
//   as an admin (root) or a slice user:               vsh [--socket PATH] SLICE [-- CMD ARGS...]
//   as sshd's AuthorizedKeysCommand (root):            vsh [--socket PATH] --authorized-keys SLICE
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
import JSONText

func fail(_ message: String, status: Int32 = 1) -> Never {
    let line = "vsh: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(status)
}

// Everything below works on bytes and C strings: vsh runs on every login and every `ssh slice@node
// cmd`, and the Swift runtime's generic-metadata and String-search machinery cost more CPU than
// the rest of vsh together (measured with perf: half of vsh's user time went to them).

/// Appends `s` as a JSON string literal.
func appendJSON(_ out: inout [UInt8], _ s: UnsafePointer<CChar>) {
    let hex: [UInt8] = Array("0123456789abcdef".utf8)
    out.append(UInt8(ascii: "\""))
    var p = UnsafeRawPointer(s).assumingMemoryBound(to: UInt8.self)
    while p.pointee != 0 {
        let byte = p.pointee
        switch byte {
        case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
        case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
        case UInt8(ascii: "\n"): out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
        case UInt8(ascii: "\r"): out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
        case UInt8(ascii: "\t"): out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
        case 0..<0x20: out += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
        default: out.append(byte)  // UTF-8 passes through as it is
        }
        p += 1
    }
    out.append(UInt8(ascii: "\""))
}

func appendASCII(_ out: inout [UInt8], _ text: StaticString) {
    text.withUTF8Buffer { out.append(contentsOf: $0) }
}

func isEqual(_ s: UnsafePointer<CChar>?, _ literal: StaticString) -> Bool {
    guard let s else { return false }
    return literal.withUTF8Buffer { lit in strlen(s) == lit.count && memcmp(s, lit.baseAddress!, lit.count) == 0 }
}

// MARK: arguments

let argc = Int(CommandLine.argc)
let argv = CommandLine.unsafeArgv
var socketPath: UnsafePointer<CChar> = UnsafePointer(getenv("SLIVERD_VSH_SOCKET") ?? strdup("/run/sliverd/vsh.sock")!)
var slice: UnsafePointer<CChar>?
var command: UnsafePointer<CChar>?
var commandStart = 0  // index in argv of the first argument of an explicit command, 0 = none
var keysOf: UnsafePointer<CChar>?  // --authorized-keys SLICE
if argc > 0, let invokedAs = argv[0], invokedAs.pointee == CChar(UInt8(ascii: "-")) {
    // login(1)/sshd convention for an interactive login shell: argv[0] = "-vsh".
} else if argc >= 3 && isEqual(argv[1], "-c") {
    command = UnsafePointer(argv[2])  // sshd: the user's shell -c "remote command"
} else {
    var i = 1
    if i < argc && isEqual(argv[i], "--socket") {
        guard i + 1 < argc, let path = argv[i + 1] else { fail("--socket needs a path", status: 2) }
        socketPath = UnsafePointer(path)
        i += 2
    }
    if i < argc && (isEqual(argv[i], "-h") || isEqual(argv[i], "--help")) {
        print("usage: vsh [--socket PATH] [SLICE [-- CMD ARGS...]]   (as a login shell: -vsh | vsh -c COMMAND)")
        print("       vsh [--socket PATH] --authorized-keys SLICE   (sshd's AuthorizedKeysCommand, as root)")
        exit(0)
    }
    if i < argc && isEqual(argv[i], "--authorized-keys") {
        guard i + 1 < argc, let name = argv[i + 1] else { fail("--authorized-keys needs a slice name", status: 2) }
        keysOf = UnsafePointer(name)
        i = argc
    }
    if i < argc, let first = argv[i], first.pointee != CChar(UInt8(ascii: "-")) {
        slice = UnsafePointer(first)
        i += 1
    }
    if i < argc && isEqual(argv[i], "--") { i += 1 }
    if i < argc { commandStart = i }
}

// MARK: connect and hand over stdio

let sock = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
guard sock >= 0 else { fail("socket: \(String(cString: strerror(errno)))") }
var address = sockaddr_un()
address.sun_family = sa_family_t(AF_UNIX)
let pathLength = strlen(socketPath)
guard pathLength < MemoryLayout.size(ofValue: address.sun_path) else { fail("socket path too long") }
_ = withUnsafeMutableBytes(of: &address.sun_path) { memcpy($0.baseAddress!, socketPath, pathLength) }
let connected = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(sock, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
}
guard connected == 0 else { fail("cannot reach sliverd at \(String(cString: socketPath)): \(String(cString: strerror(errno)))") }

// MARK: answers

/// Where `key` ("\"status\":") ends in the one-line response, if it occurs.
func find(_ key: StaticString, in response: [UInt8]) -> Int? {
    key.withUTF8Buffer { needle in
        guard response.count >= needle.count else { return nil }
        for start in 0...(response.count - needle.count) where response[start] == needle[0] {
            var match = true
            for j in 1..<needle.count where response[start + j] != needle[j] { match = false; break }
            if match { return start + needle.count }
        }
        return nil
    }
}

/// The JSON string starting at `i` (its opening quote), unescaped; `i` ends after its closing
/// quote. nil if there is none or it is malformed.
func jsonString(_ bytes: [UInt8], _ i: inout Int) -> [UInt8]? {
    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { return nil }
    return try? JSONString.read(bytes, at: &i)
}

/// Exits with the error message of a failed answer.
func failWith(_ response: [UInt8]) -> Never {
    if response.isEmpty { fail("sliverd closed the connection") }
    if var i = find("\"message\":", in: response), let message = jsonString(response, &i) {
        fail(String(decoding: message, as: UTF8.self))
    }
    fail("request failed")
}

// MARK: sshd's AuthorizedKeysCommand

// The slice's keys, one per line, as sliverd has them now (key rotation rewrites no file). sshd
// runs this as root for every key a client offers: a static program answers in about a
// millisecond, where sliverctl's start-up alone costs most of 20 ms. The vsh socket serves
// `keys` to root only.
if let keysOf {
    var request: [UInt8] = []
    appendASCII(&request, "{\"v\":1,\"op\":\"keys\",\"name\":")
    appendJSON(&request, keysOf)
    appendASCII(&request, "}\n")
    let sent = request.withUnsafeBytes { Glibc.send(sock, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    guard sent == request.count else { fail("cannot send the keys request: \(String(cString: strerror(errno)))") }
    var response: [UInt8] = []
    var buffer: [UInt8] = Array(repeating: 0, count: 4096)
    while !response.contains(UInt8(ascii: "\n")) {
        let n = buffer.withUnsafeMutableBytes { read(sock, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        response.append(contentsOf: buffer[0..<n])
    }
    guard find("\"ok\":true", in: response) != nil, var i = find("\"result\":[", in: response) else { failWith(response) }
    var keys: [UInt8] = []
    while i < response.count, response[i] != UInt8(ascii: "]") {
        if response[i] == UInt8(ascii: ",") || response[i] == UInt8(ascii: " ") { i += 1; continue }
        guard let key = jsonString(response, &i) else { fail("malformed keys answer from sliverd") }
        keys += key
        keys.append(UInt8(ascii: "\n"))
    }
    _ = keys.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
    exit(0)
}

// MARK: login

let tty = isatty(0) == 1
var request: [UInt8] = []
request.reserveCapacity(512)
appendASCII(&request, "{\"v\":1,\"op\":\"login\",\"tty\":")
if tty { appendASCII(&request, "true") } else { appendASCII(&request, "false") }
if let slice {
    appendASCII(&request, ",\"name\":")
    appendJSON(&request, slice)
}
if let command {
    appendASCII(&request, ",\"command\":")
    appendJSON(&request, command)
}
if commandStart > 0 {
    appendASCII(&request, ",\"argv\":[")
    for i in commandStart..<argc {
        if i > commandStart { request.append(UInt8(ascii: ",")) }
        appendJSON(&request, argv[i]!)
    }
    request.append(UInt8(ascii: "]"))
}
appendASCII(&request, ",\"env\":{")
var firstVariable = true
for key in ["TERM", "LANG", "LC_ALL"] as [StaticString] {
    let name = UnsafeRawPointer(key.utf8Start).assumingMemoryBound(to: CChar.self)
    guard let value = getenv(name) else { continue }
    if !firstVariable { request.append(UInt8(ascii: ",")) }
    firstVariable = false
    appendJSON(&request, name)
    request.append(UInt8(ascii: ":"))
    appendJSON(&request, value)
}
appendASCII(&request, "}}\n")
var stdio: (Int32, Int32, Int32) = (0, 1, 2)
let sent = request.withUnsafeBytes { raw in
    withUnsafePointer(to: &stdio) { $0.withMemoryRebound(to: Int32.self, capacity: 3) { sliver_send_fds(sock, raw.baseAddress, raw.count, $0, 3) } }
}
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

var forwarded: (Int32, Int32, Int32, Int32, Int32) = (SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT)
let signalFD = withUnsafePointer(to: &forwarded) { $0.withMemoryRebound(to: Int32.self, capacity: 5) { sliver_block_signals_fd($0, 5) } }

func send(_ line: StaticString) {
    _ = line.withUTF8Buffer { Glibc.send(sock, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
}

func sendSignal(_ signal: Int32) {
    let line = "{\"v\":1,\"op\":\"signal\",\"signal\":\(signal)}\n"
    _ = line.withCString { Glibc.send(sock, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
}

// MARK: wait for the answer

var response: [UInt8] = []
var buffer: [UInt8] = Array(repeating: 0, count: 4096)
var fds: (pollfd, pollfd) = (pollfd(fd: sock, events: Int16(POLLIN), revents: 0), pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0))
loop: while true {
    fds.0.revents = 0
    fds.1.revents = 0
    let ready = withUnsafeMutablePointer(to: &fds) { $0.withMemoryRebound(to: pollfd.self, capacity: 2) { poll($0, 2, -1) } }
    if ready < 0 {
        if errno == EINTR { continue }
        break
    }
    if fds.1.revents != 0 {
        var info = signalfd_siginfo()
        while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            let signal = Int32(info.ssi_signo)
            if signal == SIGWINCH { send("{\"v\":1,\"op\":\"winch\"}\n") } else { sendSignal(signal) }
        }
    }
    if fds.0.revents != 0 {
        let n = buffer.withUnsafeMutableBytes { read(sock, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        response.append(contentsOf: buffer[0..<n])
        if buffer[0..<n].contains(UInt8(ascii: "\n")) { break loop }
    }
}
if rawMode { tcsetattr(0, TCSANOW, &saved) }

if find("\"ok\":true", in: response) != nil, var i = find("\"status\":", in: response) {
    var negative = false
    if i < response.count && response[i] == UInt8(ascii: "-") { negative = true; i += 1 }
    var status: Int32 = 0
    var digits = 0
    while i < response.count, response[i] >= UInt8(ascii: "0"), response[i] <= UInt8(ascii: "9"), digits < 9 {
        status = status * 10 + Int32(response[i] - UInt8(ascii: "0"))
        i += 1
        digits += 1
    }
    if digits > 0 { exit(negative ? -status : status) }
}
failWith(response)
