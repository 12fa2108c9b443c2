#if canImport(Glibc)
import Glibc
#endif
import CSliverShim

/// A child process started with posix_spawn. The daemon never forks: posix_spawn (vfork+exec in
/// glibc) runs no Swift code in the child, which is what a multi-threaded process needs.
public struct SpawnedProcess: Sendable {
    public let pid: pid_t
    /// pidfd of the child (close-on-exec): becomes readable when the child exits, and names the
    /// child without the pid-reuse race of kill(pid).
    public let pidfd: Int32
}

/// The output of a helper run to completion.
public struct CompletedProcess: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

public enum Spawn {
    /// Starts `argv[0]` with the given descriptors as its stdin/stdout/stderr and a clean signal
    /// state. Blocked signals survive execve, and the daemon blocks SIGTERM/SIGINT/SIGCHLD for its
    /// signalfd, so the child's mask is reset explicitly (POSIX_SPAWN_SETSIGMASK) as are handlers.
    public static func start(
        _ argv: [String], environment: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        stdio: (Int32, Int32, Int32)
    ) throws(SystemError) -> SpawnedProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears FD_CLOEXEC on the target; everything else the daemon holds is CLOEXEC.
        posix_spawn_file_actions_adddup2(&actions, stdio.0, 0)
        posix_spawn_file_actions_adddup2(&actions, stdio.1, 1)
        posix_spawn_file_actions_adddup2(&actions, stdio.2, 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, cEnv)
        if rc != 0 {
            throw SystemError(stage: "spawn", attempted: "posix_spawn \(argv[0])", errno: rc)
        }
        let pidfd = sliver_pidfd_open(pid)
        if pidfd < 0 {
            let err = errno
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw SystemError(stage: "spawn", attempted: "pidfd_open \(pid)", errno: err)
        }
        return SpawnedProcess(pid: pid, pidfd: pidfd)
    }

    /// Runs a helper to completion, collecting stdout and stderr (each up to 1 MiB).
    public static func run(_ argv: [String]) throws(SystemError) -> CompletedProcess {
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        try sysCall("spawn", "pipe2") { sliver_pipe_cloexec(&outPipe) }
        if sliver_pipe_cloexec(&errPipe) != 0 {
            let err = errno
            close(outPipe[0]); close(outPipe[1])
            throw SystemError(stage: "spawn", attempted: "pipe2", errno: err)
        }
        let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        let process: SpawnedProcess
        do {
            process = try start(argv, stdio: (devnull, outPipe[1], errPipe[1]))
        } catch {
            [outPipe[0], outPipe[1], errPipe[0], errPipe[1], devnull].forEach { close($0) }
            throw error
        }
        [outPipe[1], errPipe[1], devnull].forEach { close($0) }
        let (out, err) = drain(outPipe[0], errPipe[0])
        close(outPipe[0]); close(errPipe[0])
        var status: Int32 = 0
        while sliver_pidfd_wait(process.pidfd, &status, 0) < 0 && errno == EINTR {}
        close(process.pidfd)
        return CompletedProcess(status: status, stdout: out, stderr: err)
    }

    /// Reads two pipes to EOF without deadlocking on either.
    private static func drain(_ a: Int32, _ b: Int32) -> (String, String) {
        var outputs: [[UInt8]] = [[], []]
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 16384)
        var open = 2
        while open > 0 {
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fds[i].fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    if outputs[i].count < 1 << 20 { outputs[i].append(contentsOf: buffer[0..<n]) }
                } else if n == 0 || errno != EINTR {
                    fds[i].fd = -1
                    open -= 1
                }
            }
        }
        return (String(decoding: outputs[0], as: UTF8.self), String(decoding: outputs[1], as: UTF8.self))
    }
}
