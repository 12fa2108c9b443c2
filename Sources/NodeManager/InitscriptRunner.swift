#if canImport(Glibc)
import Glibc
#endif
import CSliverShim
import SliverSystem

/// Runs a slice's initscript inside its sliver, through the same path as `sliverctl exec`
/// (sliver-helper enter: the sliver's namespaces, cgroups, capabilities, seccomp and rlimits).
/// Nothing is written into the sliver's directories from the host: a shell inside the sliver
/// installs the code it reads from a memfd on stdin as /etc/sliverd/initscript (0755), and runs
/// it as NodeManager ran vinit.slice: `initscript start SLICE` once per boot, `restart SLICE`
/// when the code changed, `stop SLICE` (then removed) when the slice no longer has one. Its
/// output goes to /var/log/initscript.log inside the sliver.
///
/// The daemon does not wait: the returned process is watched by the event loop, which logs its
/// exit status. A script that never ends (it runs a service in the foreground) just keeps its
/// helper process until the sliver stops.
enum InitscriptRunner {
    static let path = "/etc/sliverd/initscript"

    /// The shell program for each action; $1 = action, $2 = slice name, stdin = the code.
    static func program(_ action: InitscriptAction) -> String {
        switch action {
        case .start, .restart:
            return """
            set -e
            umask 022
            mkdir -p /etc/sliverd /var/log
            cat > \(path).new
            chmod 0755 \(path).new
            mv -f \(path).new \(path)
            exec \(path) "$1" "$2" </dev/null >>/var/log/initscript.log 2>&1
            """
        case .stop:
            return """
            [ -x \(path) ] || exit 0
            \(path) "$1" "$2" </dev/null >>/var/log/initscript.log 2>&1
            status=$?
            rm -f \(path)
            exit $status
            """
        }
    }

    static func run(_ manager: SliverManager, _ name: String, _ action: InitscriptAction, code: String?) throws(NodeError) -> SpawnedProcess {
        let stdin = sliver_memfd("initscript")
        guard stdin >= 0 else { throw NodeError(SystemError(stage: "initscript", attempted: "memfd_create", errno: errno)) }
        defer { close(stdin) }
        let bytes = Array((code ?? "").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(stdin, $0.baseAddress! + offset, $0.count - offset) }
            guard n > 0 else { throw NodeError(SystemError(stage: "initscript", attempted: "write the code to a memfd", errno: errno)) }
            offset += n
        }
        lseek(stdin, 0, SEEK_SET)
        let devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { close(devnull) }
        return try manager.exec(name, argv: ["/bin/sh", "-c", program(action), "initscript", action.rawValue, name],
                                environment: [:], cwd: "/", stdio: (stdin, devnull, devnull))
    }
}
