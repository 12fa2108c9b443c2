#if canImport(Glibc)
import Glibc
#endif
import SliverSystem
import CSliverShim

/// Everything the helper needs to build and boot one sliver.
public struct LaunchSpec: Sendable {
    public var name: String
    public var idRange: IDRange
    public var image: String
    public var layout: SliverLayout
    /// Cgroup directories joined before any namespace exists, so every process of the sliver,
    /// from the first, is accounted and limited.
    public var cgroups: [String]
    public var seccompProgram: String
    public var capabilities: CapabilitySet
    public var rlimits: [ResourceLimit]
    /// Program inside the sliver that init runs as `PATH start NAME`.
    public var bootProgram: String?
    /// Host directory bound read-only onto /run/sliverd inside (the broker socket and client).
    public var brokerDirectory: String?
    /// The veth to create (host end name) and the addresses ("A/LEN") of both ends, if any.
    public var network: (veth: String, sliverIPv4: String, hostIPv4: String, sliverIPv6: String?, hostIPv6: String?)?

    public init(name: String, idRange: IDRange, image: String, layout: SliverLayout, cgroups: [String],
                seccompProgram: String, capabilities: CapabilitySet, rlimits: [ResourceLimit], bootProgram: String?) {
        self.name = name
        self.idRange = idRange
        self.image = image
        self.layout = layout
        self.cgroups = cgroups
        self.seccompProgram = seccompProgram
        self.capabilities = capabilities
        self.rlimits = rlimits
        self.bootProgram = bootProgram
    }
}

/// What a process entering a running sliver gets.
public struct EnterSpec: Sendable {
    public var initProcess: ProcessIdentity
    public var cgroups: [String]
    public var seccompProgram: String
    public var capabilities: CapabilitySet
    public var rlimits: [ResourceLimit]
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var cwd: String = "/"
    public var environment: [String] = []
    /// Run as this user of the sliver (created in it on first use) instead of uid/gid.
    public var user: String?
    /// The user's login shell instead of argv (needs user).
    public var login = false
    /// A fresh terminal from the sliver's devpts, relayed to stdio.
    public var pty = false
    public var argv: [String]

    public init(initProcess: ProcessIdentity, cgroups: [String], seccompProgram: String,
                capabilities: CapabilitySet, rlimits: [ResourceLimit], argv: [String]) {
        self.initProcess = initProcess
        self.cgroups = cgroups
        self.seccompProgram = seccompProgram
        self.capabilities = capabilities
        self.rlimits = rlimits
        self.argv = argv
    }
}

/// Runs `sliver-helper` (see docs/helper-interface.md): the only code between clone and exec.
public struct SliverLauncher: Sendable {
    public let helper: String

    public init(helper: String) {
        self.helper = helper
    }

    /// Builds and boots a sliver; returns its init once every restriction is in place.
    public func create(_ spec: LaunchSpec) throws(IsolationError) -> ProcessIdentity {
        var argv = [helper, "create", "--name", spec.name,
                    "--id-base", String(spec.idRange.base), "--id-count", String(spec.idRange.count),
                    "--image", spec.image, "--sliver-dir", spec.layout.directory,
                    "--seccomp", spec.seccompProgram, "--caps", spec.capabilities.hex]
        for cgroup in spec.cgroups { argv += ["--cgroup", cgroup] }
        for limit in spec.rlimits { argv += ["--rlimit", limit.helperArgument] }
        if let boot = spec.bootProgram { argv += ["--boot", boot] }
        if let broker = spec.brokerDirectory { argv += ["--broker-dir", broker] }
        if let net = spec.network {
            argv += ["--veth", net.veth, "--sliver-ipv4", net.sliverIPv4, "--host-ipv4", net.hostIPv4]
            if let v6 = net.sliverIPv6, let h6 = net.hostIPv6 { argv += ["--sliver-ipv6", v6, "--host-ipv6", h6] }
        }
        let result: CompletedProcess
        do {
            result = try Spawn.run(argv)
        } catch {
            throw IsolationError(error)
        }
        guard result.status == 0 else {
            throw IsolationError(.helper, stage: "sliver.create", Self.helperMessage(result))
        }
        for line in result.stdout.split(separator: "\n") where line.hasPrefix("init_pid=") {
            if let pid = Int32(line.dropFirst("init_pid=".count)), let identity = ProcessIdentity.of(pid: pid) {
                return identity
            }
        }
        throw IsolationError(.helper, stage: "sliver.create",
                             "helper reported no running init (stdout: \(result.stdout.prefix(200)))")
    }

    public func enterArguments(_ spec: EnterSpec) -> [String] {
        var argv = [helper, "enter", "--pid", String(spec.initProcess.pid),
                    "--seccomp", spec.seccompProgram, "--caps", spec.capabilities.hex,
                    "--uid", String(spec.uid), "--gid", String(spec.gid), "--cwd", spec.cwd]
        for cgroup in spec.cgroups { argv += ["--cgroup", cgroup] }
        for limit in spec.rlimits { argv += ["--rlimit", limit.helperArgument] }
        for variable in spec.environment { argv += ["--env", variable] }
        if let user = spec.user { argv += ["--user", user] }
        if spec.pty { argv.append("--pty") }
        if spec.login { return argv + ["--login"] }
        return argv + ["--"] + spec.argv
    }

    /// Starts a process inside a running sliver with the given stdio; the caller watches the
    /// returned pidfd and collects the status (the helper exits with the command's status).
    public func enter(_ spec: EnterSpec, stdio: (Int32, Int32, Int32)) throws(IsolationError) -> SpawnedProcess {
        guard spec.initProcess.isAlive else {
            throw IsolationError(.invalidArgument, stage: "sliver.enter", "the sliver's init (pid \(spec.initProcess.pid)) is not running")
        }
        do {
            return try Spawn.start(enterArguments(spec), stdio: stdio)
        } catch {
            throw IsolationError(error)
        }
    }

    static func helperMessage(_ result: CompletedProcess) -> String {
        let line = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
        return line.isEmpty ? "sliver-helper exited with status \(result.status)" : line
    }
}

extension SliverLauncher {
    /// A raw socket inside the network namespace of `initProcess`, filtered to `ports` for TCP/UDP
    /// and locked, made by the helper (host root) and received here over a socketpair.
    public func rawSocket(initProcess: ProcessIdentity, proto: String, ports: [Int]) throws(IsolationError) -> Int32 {
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw IsolationError(.kernel, stage: "rawsock", "socketpair: errno \(errno)")
        }
        defer { close(pair[0]) }
        var argv = [helper, "rawsock", "--pid", String(initProcess.pid), "--proto", proto]
        for port in ports { argv += ["--port", String(port)] }
        var errPipe: [Int32] = [0, 0]
        _ = sliver_pipe_cloexec(&errPipe)
        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let process: SpawnedProcess
        do {
            process = try Spawn.start(argv, stdio: (devnull, pair[1], errPipe[1]))
        } catch {
            [pair[1], errPipe[0], errPipe[1], devnull].forEach { close($0) }
            throw IsolationError(error)
        }
        [pair[1], errPipe[1], devnull].forEach { close($0) }
        var status: Int32 = 0
        while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
        close(process.pidfd)
        var message = [UInt8](repeating: 0, count: 512)
        let n = message.withUnsafeMutableBytes { read(errPipe[0], $0.baseAddress, $0.count) }
        close(errPipe[0])
        guard status == 0 else {
            let text = n > 0 ? String(decoding: message[0..<n], as: UTF8.self).trimmingNewline : "status \(status)"
            throw IsolationError(.helper, stage: "rawsock", text)
        }
        var byte: UInt8 = 0
        var fds: [Int32] = [-1]
        var nfds: Int32 = 0
        let got = sliver_recv_fds(pair[0], &byte, 1, &fds, 1, &nfds)
        guard got == 1, nfds == 1, fds[0] >= 0 else { throw IsolationError(.helper, stage: "rawsock", "the helper passed no socket") }
        return fds[0]
    }
}

extension String {
    var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
