#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import PLCProtocol
import SliverSystem

/// One fetch of the desired state, run in a child process so the daemon's event loop never
/// waits for PLC.
///
/// Why a process: PLCClient is synchronous (a GetSession and a GetSlivers, each up to the
/// transport timeout, plus a re-authentication when PLC refused the session), and the https
/// transport waits for curl anyway. Run on the loop, a slow or black-holed PLC would stall
/// every sliverctl command, every vsh login and every init-exit notification for minutes. A
/// thread would need locks around nothing else in the daemon; a child process
/// (`sliverd --fetch-snapshot ...`, the daemon's own binary, not the C helper) shares nothing,
/// can be killed at its deadline whatever it is stuck in, and keeps the XML parsing of a large
/// answer off the loop. It costs one posix_spawn per poll (every 600 s by default).
///
/// The child writes one SnapshotEnvelope on stdout; the loop reads the pipe as data arrives
/// (non-blocking), and kills the child if the whole fetch takes longer than `timeout_s` + 5 s.
/// Worst case for the loop: a few non-blocking reads and one JSON decode of the answer.
final class SnapshotFetch {
    let process: SpawnedProcess
    /// Read end of the child's stdout, non-blocking.
    let output: Int32
    /// CLOCK_MONOTONIC second after which the child is killed.
    let deadline: Double
    let forced: Bool
    private var buffer: [UInt8] = []
    static let maxOutput = 256 << 20

    private init(process: SpawnedProcess, output: Int32, deadline: Double, forced: Bool) {
        self.process = process
        self.output = output
        self.deadline = deadline
        self.forced = forced
    }

    static func start(_ command: [String], timeout: Double, forced: Bool) throws(NodeError) -> SnapshotFetch {
        var pipe: [Int32] = [0, 0]
        guard sliver_pipe_cloexec(&pipe) == 0 else { throw NodeError(SystemError(stage: "provisioning.fetch", attempted: "pipe2", errno: errno)) }
        _ = fcntl(pipe[0], F_SETFL, fcntl(pipe[0], F_GETFL) | O_NONBLOCK)
        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(pipe[1])
            close(devnull)
        }
        do {
            // stderr is the daemon's: whatever the child has to say lands in the same log.
            let process = try Spawn.start(command, stdio: (devnull, pipe[1], 2))
            return SnapshotFetch(process: process, output: pipe[0], deadline: Monotonic.now() + timeout + 5, forced: forced)
        } catch {
            close(pipe[0])
            throw NodeError(error)
        }
    }

    /// Reads what the child has written so far; true once the child closed its end (or wrote
    /// more than any snapshot can be).
    func read() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(output, $0.baseAddress, $0.count) }
            if n > 0 {
                buffer.append(contentsOf: chunk[0..<n])
                if buffer.count > Self.maxOutput { return true }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            return n == 0 || errno != EAGAIN
        }
    }

    /// After read() returned true: reaps the child (it is exiting: it closed its output last)
    /// and decodes what it wrote. The caller removes `output` from the loop.
    func finish() -> Result<SliversSnapshot, NodeError> {
        var status: Int32 = 0
        if sliver_pidfd_wait(process.pidfd, &status, 1) != 1 {
            // Still running with its output closed (or over the size limit): it has nothing more to say.
            _ = sliver_pidfd_send_signal(process.pidfd, SIGKILL)
            while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
        }
        close(process.pidfd)
        guard buffer.count <= Self.maxOutput else {
            return .failure(NodeError(.unavailable, "the fetch wrote more than \(Self.maxOutput) bytes", field: "provisioning"))
        }
        guard !buffer.isEmpty else {
            return .failure(NodeError(.internal, "the fetch process exited with status \(status) without an answer", field: "provisioning"))
        }
        do {
            return .success(try SnapshotEnvelope.decode(buffer))
        } catch {
            return .failure(error)
        }
    }

    /// Past the deadline: kill and reap the child.
    func kill() {
        _ = sliver_pidfd_send_signal(process.pidfd, SIGKILL)
        var status: Int32 = 0
        while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
        close(process.pidfd)
    }
}

/// The child's side: `sliverd --fetch-snapshot` with the source's settings as arguments (not
/// the config path: the child must use what the running daemon was configured with).
public enum SnapshotFetchChild {
    public static let flag = "--fetch-snapshot"

    static func arguments(_ settings: ProvisioningSettings, stateDir: String) -> [String] {
        [flag, "--source", settings.source.rawValue, "--file", settings.file, "--plc-url", settings.plcURL,
         "--ca-cert", settings.caCert, "--credentials", settings.nodeCredentials,
         "--timeout", String(settings.timeout), "--state-dir", stateDir]
    }

    /// Runs the fetch and writes the envelope on stdout; the exit status is 0 when an envelope
    /// (snapshot or error) was written.
    public static func main(_ arguments: [String]) -> Int32 {
        var settings = ProvisioningSettings()
        var stateDir = ""
        var rest = arguments[...]
        while let option = rest.popFirst() {
            let value = rest.popFirst() ?? ""
            switch option {
            case "--source": settings.source = ProvisioningSettings.Source(rawValue: value) ?? .file
            case "--file": settings.file = value
            case "--plc-url": settings.plcURL = value
            case "--ca-cert": settings.caCert = value
            case "--credentials": settings.nodeCredentials = value
            case "--timeout": settings.timeout = Double(value) ?? settings.timeout
            case "--state-dir": stateDir = value
            default: break
            }
        }
        let envelope: [UInt8]
        do {
            envelope = SnapshotEnvelope.encode(try DesiredStateSources.make(settings, stateDir: stateDir).fetch())
        } catch {
            envelope = SnapshotEnvelope.encode(error)
        }
        var offset = 0
        while offset < envelope.count {
            let n = envelope.withUnsafeBytes { write(1, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return 1 }
            offset += n
        }
        return 0
    }
}
