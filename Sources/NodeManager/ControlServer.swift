#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import Foundation
import Logging
import SliverSystem

/// The daemon's single event loop: one epoll set holding the control socket, its clients, a
/// signalfd, the pidfds of running `exec`s, the pidfd of every sliver's init and, when the node
/// is provisioned, the provisioner's timerfd, fetch pipe and initscript pidfds, and with
/// networking the byte-cap timerfd (one pass over all slivers every bwmon_period_s). One thread
/// serves every sliver; nothing per sliver but an fd in the set.
public final class ControlServer: ProvisioningLoop {
    private enum Source {
        case listener, vshListener, signals, client, exec(client: Int32), sliverInit(name: String, identity: ProcessIdentity)
        /// A sliver's broker socket (bound into it at /run/sliverd/broker.sock).
        case brokerListener(name: String)
        case provisioning
        /// The daily byte caps' periodic pass (ByteCapMonitor).
        case byteCaps
    }

    private struct Client {
        var buffer = Data()
        var fds: [Int32] = []
        var uid: uid_t = 0
        /// Connected through the vsh socket: only login, winch and signal are served.
        var restricted = false
        /// Connected through a sliver's broker socket: only that sliver's broker requests.
        var brokerFor: String?
        /// pidfd of the exec this client waits for; requests queue behind it.
        var exec: Int32?
        /// Waiting for a `sync` to finish; requests queue behind it.
        var waitingSync = false
        /// Tells connections apart when a descriptor number is reused.
        var serial = 0
    }

    let manager: SliverManager
    /// nil when provisioning is off ([provisioning] source = "file" with no file).
    let provisioner: Provisioner?
    var log: Logger
    private var serials = 0
    let socketPath: String
    private let epfd: Int32
    private let listenFD: Int32
    private let vshListenFD: Int32
    private let signalFD: Int32
    private var sources: [Int32: Source] = [:]
    private var clients: [Int32: Client] = [:]
    private var initWatches: [String: Int32] = [:]
    private var brokerListeners: [String: Int32] = [:]
    private var running = true
    private var byteCapTimer: Int32 = -1
    private var receiveBuffer = [UInt8](repeating: 0, count: 65536)

    /// Blocks the daemon's signals and returns a signalfd for them. Call first thing in main,
    /// before any thread exists: threads inherit the mask, and a thread created earlier with
    /// SIGTERM unblocked would take the default action (terminate) instead of the event.
    /// SIGPIPE is irrelevant with MSG_NOSIGNAL but blocked for safety; spawned children get
    /// default masks (posix_spawn resets them).
    public static func blockSignals() -> Int32 {
        let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGPIPE]
        return signals.withUnsafeBufferPointer { sliver_block_signals_fd($0.baseAddress, Int32($0.count)) }
    }

    public init(manager: SliverManager, provisioner: Provisioner? = nil, signalFD: Int32, logger: Logger) throws(NodeError) {
        self.manager = manager
        self.provisioner = provisioner
        self.log = logger
        self.signalFD = signalFD
        socketPath = manager.config.socketPath
        let epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        do {
            try sysCall("control.listen", "signalfd") { signalFD }
            try sysCall("control.listen", "epoll_create1") { epfd }
            listenFD = try Self.listen(path: manager.config.socketPath, mode: manager.config.socketMode)
            vshListenFD = try Self.listen(path: manager.config.vshSocketPath, mode: 0o666)
        } catch {
            throw NodeError(error)
        }
        self.epfd = epfd
        add(listenFD, .listener)
        add(vshListenFD, .vshListener)
        add(signalFD, .signals)
        syncInitWatches()
        try provisioner?.attach(to: self)
        if manager.config.networkEnabled {
            byteCapTimer = try Self.periodicTimer(manager.config.bwmonPeriod)
            add(byteCapTimer, .byteCaps)
        }
    }

    /// A timerfd that fires every `seconds` (first after `seconds`): missed expirations while
    /// the loop was busy add up in its counter and give one event, not a burst of passes.
    static func periodicTimer(_ seconds: Double) throws(NodeError) -> Int32 {
        let fd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK))
        guard fd >= 0 else { throw NodeError(SystemError(stage: "bwmon", attempted: "timerfd_create", errno: errno)) }
        var interval = timespec()
        interval.tv_sec = Int(seconds)
        interval.tv_nsec = Int((seconds - Double(Int(seconds))) * 1e9)
        var spec = itimerspec(it_interval: interval, it_value: interval)
        guard timerfd_settime(fd, 0, &spec, nil) == 0 else {
            let err = errno
            close(fd)
            throw NodeError(SystemError(stage: "bwmon", attempted: "timerfd_settime \(seconds) s", errno: err))
        }
        return fd
    }

    /// One byte-cap pass; caps set or lifted become provisioning events (or log lines on a
    /// node without provisioning).
    private func byteCapPass() {
        var expirations: UInt64 = 0
        _ = read(byteCapTimer, &expirations, 8)
        for change in manager.byteCapPass() {
            if let provisioner {
                provisioner.note(change.sliver, change.reason)
            } else {
                log.notice("\(change.reason.prefix { $0 != ":" })", metadata: ["sliver": "\(change.sliver)", "reason": "\(change.reason)"])
            }
        }
    }

    func watch(_ fd: Int32) { add(fd, .provisioning) }

    func unwatch(_ fd: Int32) { remove(fd) }

    /// Creates the listening socket. A stale socket file from a previous daemon is replaced; any
    /// other file at that path is refused rather than deleted.
    static func listen(path: String, mode: UInt32) throws(SystemError) -> Int32 {
        try FileSystem.makeDirectories(FileSystem.parentDirectory(path), mode: 0o755)
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw SystemError(stage: "control.listen", attempted: "replace \(path) (exists and is not a socket)", errno: EEXIST)
            }
            unlink(path)
        }
        let fd = try sysCall("control.listen", "socket(AF_UNIX)") {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw SystemError(stage: "control.listen", attempted: "bind \(path) (path too long)", errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in for (i, b) in bytes.enumerated() { raw[i] = b } }
        // umask 0177 around bind: the socket never exists with looser permissions than asked.
        let old = umask(0o177)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        do {
            try sysCall("control.listen", "bind \(path)") { rc }
            try sysCall("control.listen", "chmod \(path)") { chmod(path, mode_t(mode)) }
            try sysCall("control.listen", "listen \(path)") { Glibc.listen(fd, 512) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    private func add(_ fd: Int32, _ source: Source) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
        event.data.fd = fd
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &event)
        sources[fd] = source
    }

    private func remove(_ fd: Int32) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
        sources[fd] = nil
        close(fd)
    }

    /// Runs until SIGTERM or SIGINT. Slivers keep running when the daemon stops.
    public func run() {
        SystemdNotify.send("READY=1\nSTATUS=serving \(manager.records.count) slivers")
        log.info("sliverd ready", metadata: ["socket": "\(socketPath)", "slivers": "\(manager.records.count)"])
        var events = [epoll_event](repeating: epoll_event(), count: 64)
        while running {
            let n = epoll_wait(epfd, &events, Int32(events.count), -1)
            if n < 0 {
                if errno == EINTR { continue }
                log.critical("epoll_wait failed", metadata: ["errno": "\(errno)"])
                break
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                guard let source = sources[fd] else { continue }
                switch source {
                case .listener: accept(listenFD, restricted: false)
                case .vshListener: accept(vshListenFD, restricted: true)
                case .brokerListener(let name): accept(fd, restricted: true, broker: name)
                case .signals: handleSignal()
                case .client: readClient(fd, hangup: events[i].events & (EPOLLHUP.rawValue | EPOLLRDHUP.rawValue | EPOLLERR.rawValue) != 0)
                case .exec(let client): finishExec(pidfd: fd, client: client)
                case .sliverInit(let name, let identity):
                    remove(fd)
                    initWatches[name] = nil
                    manager.initExited(name, identity: identity)
                case .provisioning:
                    provisioner?.handle(fd)
                    syncInitWatches()
                case .byteCaps:
                    byteCapPass()
                }
            }
        }
        SystemdNotify.send("STOPPING=1")
        log.info("sliverd stopping; slivers keep running", metadata: ["slivers": "\(manager.records.count)"])
        close(listenFD)
        close(vshListenFD)
        unlink(socketPath)
        unlink(manager.config.vshSocketPath)
    }

    private func handleSignal() {
        var info = signalfd_siginfo()
        while read(signalFD, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
            let signal = Int32(info.ssi_signo)
            if signal == SIGTERM || signal == SIGINT {
                log.info("received signal, stopping", metadata: ["signal": "\(signal)"])
                running = false
            }
        }
    }

    private func accept(_ listener: Int32, restricted: Bool, broker: String? = nil) {
        while true {
            let fd = sliver_accept(listener)
            if fd < 0 { return }
            var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
            guard sliver_peer_creds(fd, &pid, &uid, &gid) == 0 else { close(fd); continue }
            var client = Client()
            client.uid = uid
            client.restricted = restricted
            client.brokerFor = broker
            serials += 1
            client.serial = serials
            clients[fd] = client
            add(fd, .client)
        }
    }

    private func readClient(_ fd: Int32, hangup: Bool) {
        var fds = [Int32](repeating: -1, count: 8)
        var closed = false
        while true {
            var nfds: Int32 = 0
            // One receive buffer for the loop's life: a zeroed 64 KiB array per readable event
            // cost as much as the rest of a login's request handling.
            let n = receiveBuffer.withUnsafeMutableBytes { sliver_recv_fds(fd, $0.baseAddress, $0.count, &fds, 8, &nfds) }
            clients[fd]?.fds.append(contentsOf: fds.prefix(Int(nfds)))
            if n > 0 {
                clients[fd]?.buffer.append(contentsOf: receiveBuffer[0..<n])
                if (clients[fd]?.buffer.count ?? 0) > ControlProtocol.maxLine + 1 {
                    respond(fd, ResponseEncoding.failure(NodeError(.invalidArgument, "request longer than \(ControlProtocol.maxLine) bytes")))
                    closed = true
                    break
                }
                continue
            }
            if n == 0 || (errno != EAGAIN && errno != EINTR) { closed = true }
            break
        }
        processLines(fd)
        if closed || (hangup && clients[fd]?.buffer.isEmpty != false) { disconnect(fd) }
    }

    private func disconnect(_ fd: Int32) {
        guard let client = clients[fd] else { return }
        client.fds.forEach { close($0) }
        if let exec = client.exec {
            // The caller is gone: end what it started inside the sliver (the helper passes the
            // signal to the command), and let finishExec reap it.
            _ = sliver_pidfd_send_signal(exec, SIGTERM)
            sources[exec] = .exec(client: -1)
        }
        clients[fd] = nil
        remove(fd)
    }

    private func processLines(_ fd: Int32) {
        while var client = clients[fd], let newline = client.buffer.firstIndex(of: UInt8(ascii: "\n")) {
            if client.waitingSync { return }
            let line = client.buffer[client.buffer.startIndex..<newline]
            if let exec = client.exec {
                // While a command runs, the connection carries only its window-size changes and
                // signals; anything else waits until the command has ended.
                guard let control = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)),
                      control.op == "winch" || control.op == "signal" else { return }
                client.buffer.removeSubrange(client.buffer.startIndex...newline)
                clients[fd] = client
                let allowed: Set<Int32> = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]
                let signal = control.op == "winch" ? SIGWINCH : control.signal ?? 0
                if allowed.contains(signal) || signal == SIGWINCH { _ = sliver_pidfd_send_signal(exec, signal) }
                continue
            }
            client.buffer.removeSubrange(client.buffer.startIndex...newline)
            let fds = client.fds
            client.fds = []
            clients[fd] = client
            handle(fd, line: Data(line), fds: fds, uid: client.uid)
        }
    }

    private func respond(_ fd: Int32, _ data: Data, passing passed: Int32? = nil) {
        var bytes = Array(data)
        bytes.append(UInt8(ascii: "\n"))
        var offset = 0
        while offset < bytes.count {
            // A passed descriptor rides on the first chunk only.
            let fds: [Int32] = offset == 0 ? passed.map { [$0] } ?? [] : []
            let n = bytes.withUnsafeBytes { raw in
                fds.withUnsafeBufferPointer { sliver_send_fds(fd, raw.baseAddress! + offset, raw.count - offset, $0.baseAddress, Int32($0.count)) }
            }
            if n > 0 { offset += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EINTR) {
                // A slow reader: wait a little for room, but never block the loop for long.
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&pfd, 1, 5000) > 0 { continue }
            }
            log.warning("dropping client that does not read its responses", metadata: ["fd": "\(fd)"])
            return
        }
    }

    private func handle(_ fd: Int32, line: Data, fds: [Int32], uid: uid_t) {
        // The daemon's copies of passed descriptors are closed whatever happens: a spawned
        // helper holds its own, and keeping them would delay the caller's EOF.
        defer { fds.forEach { close($0) } }
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: line)
        } catch {
            respond(fd, ResponseEncoding.failure(NodeError(.invalidArgument, "malformed request: \(String(describing: error).prefix(200))")))
            return
        }
        guard request.v == ControlProtocol.version else {
            respond(fd, ResponseEncoding.failure(NodeError(.unsupportedVersion, "protocol version \(request.v) not supported (this sliverd speaks \(ControlProtocol.version))", field: "v")))
            return
        }
        if let sliver = clients[fd]?.brokerFor {
            handleBroker(fd, sliver: sliver, request: request)
            return
        }
        let restricted = clients[fd]?.restricted ?? true
        // The vsh socket also answers root's `keys` (vsh --authorized-keys, sshd's
        // AuthorizedKeysCommand): root may ask the control socket the same anyway.
        guard request.op == "login" || (uid == 0 && (!restricted || request.op == "keys")) else {
            let reason = restricted ? "the vsh socket serves only login (and keys, to root)" : "the control API is for root; uid \(uid) refused"
            respond(fd, ResponseEncoding.failure(NodeError(.permissionDenied, reason)))
            return
        }
        do {
            if request.op == "login" {
                guard fds.count == 3 else {
                    throw NodeError(.invalidArgument, "login needs exactly 3 descriptors (stdin, stdout, stderr), got \(fds.count)", field: "fds")
                }
                let process = try manager.login(callerUid: uid, name: request.name, command: request.command, argv: request.argv,
                                                tty: request.tty ?? false,
                                                environment: request.env ?? [:], stdio: (fds[0], fds[1], fds[2]))
                clients[fd]?.exec = process.pidfd
                add(process.pidfd, .exec(client: fd))
                return
            }
            if request.op == "exec" {
                guard fds.count == 3 else {
                    throw NodeError(.invalidArgument, "exec needs exactly 3 descriptors (stdin, stdout, stderr), got \(fds.count)", field: "fds")
                }
                let process = try manager.exec(try required(request.name, "name"), argv: request.argv ?? [],
                                               environment: request.env ?? [:], cwd: request.cwd,
                                               stdio: (fds[0], fds[1], fds[2]))
                clients[fd]?.exec = process.pidfd
                add(process.pidfd, .exec(client: fd))
                log.info("exec started", metadata: ["sliver": "\(request.name ?? "")", "pid": "\(process.pid)", "argv0": "\(request.argv?.first ?? "")"])
                return
            }
            if request.op == "sync" {
                try startSync(fd)
                return
            }
            respond(fd, try dispatch(request))
        } catch let error as NodeError {
            respond(fd, ResponseEncoding.failure(error))
        } catch {
            respond(fd, ResponseEncoding.failure(NodeError(.internal, "\(error)")))
        }
        syncInitWatches()
    }

    private func required(_ value: String?, _ field: String) throws(NodeError) -> String {
        guard let value, !value.isEmpty else { throw NodeError(.invalidArgument, "missing \(field)", field: field) }
        return value
    }

    /// `counters`: the uplink's class counters, read once for a whole list.
    private func view(_ record: SliverRecord, counters: [Int: UInt64]? = nil) -> SliverView {
        SliverView(record, usage: manager.reportedUsage(record), network: manager.networkUsage(record, counters: counters))
    }

    private func dispatch(_ request: ControlRequest) throws(NodeError) -> Data {
        switch request.op {
        case "ping":
            struct Pong: Encodable { let version: String; let pid: Int32; let slivers: Int }
            return ResponseEncoding.success(Pong(version: SliverdVersion.string, pid: getpid(), slivers: manager.records.count))
        case "image.add":
            return ResponseEncoding.success(try manager.addImage(name: try required(request.name, "name"), path: try required(request.path, "path")))
        case "image.list":
            return ResponseEncoding.success(manager.images.values.sorted { $0.name < $1.name })
        case "image.remove":
            try manager.removeImage(name: try required(request.name, "name"))
            return ResponseEncoding.success([String: String]())
        case "create":
            let record = try manager.create(name: try required(request.name, "name"), image: try required(request.image, "image"),
                                            attributes: request.attributes ?? [:], start: request.start ?? true,
                                            keys: request.keys ?? [])
            return ResponseEncoding.success(view(record))
        case "set":
            return ResponseEncoding.success(view(try manager.set(try required(request.name, "name"), attributes: request.attributes ?? [:])))
        case "start":
            return ResponseEncoding.success(view(try manager.start(try required(request.name, "name"))))
        case "stop":
            return ResponseEncoding.success(view(try manager.stop(try required(request.name, "name"))))
        case "destroy":
            try manager.destroy(try required(request.name, "name"))
            return ResponseEncoding.success([String: String]())
        case "ports.reserve", "ports.release":
            let name = try required(request.name, "name")
            guard let port = request.port else { throw NodeError(.invalidArgument, "missing port", field: "port") }
            let proto = try required(request.proto, "proto")
            let record = request.op == "ports.reserve" ? try manager.reservePort(name, proto: proto, port: port)
                                                       : try manager.releasePort(name, proto: proto, port: port)
            return ResponseEncoding.success(record.ports)
        case "address.assign":
            return ResponseEncoding.success(view(try manager.assignPoolAddress(try required(request.name, "name"), address: request.address)))
        case "ports.list":
            if let name = request.name { return ResponseEncoding.success([name: try manager.record(name).ports]) }
            var all: [String: [PortReservation]] = [:]
            for record in manager.records.values where !record.ports.isEmpty { all[record.name] = record.ports }
            return ResponseEncoding.success(all)
        case "keys":
            return ResponseEncoding.success(try manager.record(try required(request.name, "name")).keys)
        case "keys.set":
            return ResponseEncoding.success(try manager.setKeys(try required(request.name, "name"), request.keys ?? []).keys)
        case "show":
            let record = try manager.record(try required(request.name, "name"))
            return ResponseEncoding.success(view(record, counters: manager.linkCounters()))
        case "list":
            let counters = manager.linkCounters()
            return ResponseEncoding.success(manager.records.values.sorted { $0.name < $1.name }.map { view($0, counters: counters) })
        case "plan":
            guard let provisioner else { throw Self.provisioningOff }
            return ResponseEncoding.success(provisioner.planView())
        case "events":
            guard let provisioner else { throw Self.provisioningOff }
            return ResponseEncoding.success(provisioner.events)
        default:
            throw NodeError(.invalidArgument, "unknown op \"\(request.op)\"", field: "op")
        }
    }

    /// `sync` answers when the poll it started is applied; the connection's further requests
    /// wait behind it, as behind an exec.
    private func startSync(_ fd: Int32) throws(NodeError) {
        guard let provisioner else { throw Self.provisioningOff }
        guard let serial = clients[fd]?.serial else { return }
        clients[fd]?.waitingSync = true
        provisioner.sync { [unowned self] report in
            guard clients[fd]?.serial == serial else { return }
            clients[fd]?.waitingSync = false
            respond(fd, ResponseEncoding.success(report))
            processLines(fd)
        }
    }

    static let provisioningOff = NodeError(.failedPrecondition,
        "provisioning is off: set [provisioning] source = \"plc\" (with plc_url) or a file in sliverd.toml", field: "provisioning")

    private func finishExec(pidfd: Int32, client: Int32) {
        var status: Int32 = 0
        guard sliver_pidfd_wait(pidfd, &status, 1) == 1 else { return }
        remove(pidfd)
        guard client >= 0, clients[client] != nil else { return }
        clients[client]?.exec = nil
        struct Exit: Encodable { let status: Int32 }
        respond(client, ResponseEncoding.success(Exit(status: status)))
        processLines(client)
    }

    /// The broker protocol (docs/broker-protocol.md), served to one sliver on its own socket: the
    /// socket says who is asking, so no request can name another sliver.
    private func handleBroker(_ fd: Int32, sliver: String, request: ControlRequest) {
        do {
            switch request.op {
            case "raw":
                let socket = try manager.rawSocket(sliver, proto: try required(request.proto, "proto"))
                defer { close(socket) }
                respond(fd, ResponseEncoding.success([String: String]()), passing: socket)
                return
            case "reserve", "release":
                guard let port = request.port else { throw NodeError(.invalidArgument, "missing port", field: "port") }
                let proto = try required(request.proto, "proto")
                let record = request.op == "reserve" ? try manager.reservePort(sliver, proto: proto, port: port)
                                                     : try manager.releasePort(sliver, proto: proto, port: port)
                respond(fd, ResponseEncoding.success(record.ports))
            case "ports":
                respond(fd, ResponseEncoding.success(try manager.record(sliver).ports))
            default:
                throw NodeError(.invalidArgument, "unknown broker op \"\(request.op)\" (raw, reserve, release, ports)", field: "op")
            }
        } catch let error as NodeError {
            respond(fd, ResponseEncoding.failure(error))
        } catch {
            respond(fd, ResponseEncoding.failure(NodeError(.internal, "\(error)")))
        }
    }

    /// One broker socket per sliver that has a broker directory (network enabled), made after
    /// the sliver's start and removed with the sliver.
    private func syncBrokerListeners() {
        guard manager.config.networkEnabled else { return }
        for (name, fd) in brokerListeners where manager.records[name] == nil {
            remove(fd)
            brokerListeners[name] = nil
        }
        for record in manager.records.values where brokerListeners[record.name] == nil {
            let dir = manager.brokerDirectory(record.name)
            guard FileSystem.isDirectory(dir) else { continue }
            do {
                let fd = try Self.listen(path: dir + "/broker.sock", mode: 0o666)
                add(fd, .brokerListener(name: record.name))
                brokerListeners[record.name] = fd
            } catch {
                log.error("broker socket failed", metadata: ["sliver": "\(record.name)", "error": "\(error)"])
            }
        }
    }

    /// Keeps exactly one pidfd watch per running sliver's init (and the broker sockets in step).
    private func syncInitWatches() {
        syncBrokerListeners()
        for (name, fd) in initWatches {
            guard case .sliverInit(_, let identity)? = sources[fd],
                  let record = manager.records[name], record.state == .running, record.initProcess == identity else {
                remove(fd)
                initWatches[name] = nil
                continue
            }
        }
        for record in manager.records.values where record.state == .running && initWatches[record.name] == nil {
            guard let identity = record.initProcess else { continue }
            let fd = sliver_pidfd_open_checked(identity)
            if fd < 0 {
                manager.initExited(record.name, identity: identity)
                continue
            }
            add(fd, .sliverInit(name: record.name, identity: identity))
            initWatches[record.name] = fd
        }
    }
}

public enum SliverdVersion {
    public static let string = "0.1.0"
}
