#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import NodeManager
import SliverSystem

/// `ssh SLICE@NODE` through a real OpenSSH server on 127.0.0.1 with the shipped sshd snippet.
@Suite(.serialized, .enabled(if: TestEnvironment.isRoot && FileSystem.exists("/usr/sbin/sshd"), "needs root and openssh-server"))
struct VshTests {
    /// An sshd on a free high port of 127.0.0.1, configured with conf/sshd_config.d/sliverd.conf
    /// (paths of this build substituted), stopped by `stop()`.
    final class SSHServer {
        let port: Int
        let root: String
        /// sshd runs an AuthorizedKeysCommand only from a path whose every directory is root-owned
        /// and not group/world-writable: a checkout under /tmp is not, so the test uses a copy here.
        let keysDir: String
        var process: SpawnedProcess?

        init(root: String, daemon: DaemonTests.Daemon) throws {
            self.root = root
            port = Int.random(in: 20000..<60000)
            keysDir = "/run/sliverd-test-keys-\(daemon.node.prefix)"
            try FileSystem.makeDirectories(keysDir, mode: 0o755)
            try FileSystem.writeAtomically(keysDir + "/vsh", try FileSystem.readFile(TestEnvironment.vsh, limit: 256 << 20), mode: 0o755)
            try FileSystem.makeDirectories("/run/sshd", mode: 0o755)
            _ = try Spawn.run(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", root + "/hostkey"])
            let snippet = try FileSystem.readString(TestEnvironment.repoRoot + "/conf/sshd_config.d/sliverd.conf")
                .replacingOccurrences(of: "/usr/local/bin/vsh --authorized-keys %u",
                                      with: "\(keysDir)/vsh --socket \(daemon.node.config.vshSocketPath) --authorized-keys %u")
                .replacingOccurrences(of: "Match Group slices", with: "Match Group \(daemon.node.config.accountGroup)")
            let config = """
            Port \(port)
            ListenAddress 127.0.0.1
            HostKey \(root)/hostkey
            PidFile \(root)/sshd.pid
            UsePAM no
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            # Keys only from sliverd (AuthorizedKeysCommand in the snippet).
            AuthorizedKeysFile none
            StrictModes no
            SetEnv SLIVERD_VSH_SOCKET=\(daemon.node.config.vshSocketPath)
            \(snippet)
            """
            try FileSystem.writeAtomically(root + "/sshd_config", Array(config.utf8), mode: 0o600)
            let log = open(root + "/sshd.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            let devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)
            defer { close(log); close(devnull) }
            process = try Spawn.start(["/usr/sbin/sshd", "-D", "-e", "-f", root + "/sshd_config"], stdio: (devnull, log, log))
            for _ in 0..<300 {
                if ((try? FileSystem.readString(root + "/sshd.log")) ?? "").contains("Server listening") { return }
                usleep(10_000)
            }
            throw TestSetupError("sshd did not start: \((try? FileSystem.readString(root + "/sshd.log")) ?? "")")
        }

        func stop() {
            try? FileSystem.removeTree(keysDir)
            guard let process else { return }
            kill(process.pid, SIGTERM)
            var status: Int32 = 0
            waitpid(process.pid, &status, 0)
            close(process.pidfd)
            self.process = nil
        }

        /// ssh USER@127.0.0.1 -p PORT with one key and no interaction.
        func ssh(_ user: String, key: String, tty: Bool = false, _ command: String) throws -> CompletedProcess {
            var argv = ["/usr/bin/ssh", "-i", key, "-p", String(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]
            if tty { argv.append("-tt") }
            return try Spawn.run(argv + ["\(user)@127.0.0.1", command])
        }
    }

    /// On a terminal: the sliver's pty takes the caller's window size and follows SIGWINCH,
    /// Ctrl-C becomes SIGINT inside the sliver, Ctrl-D is EOF there, and vsh exits with the
    /// command's status. Driven through a real pty by Fixtures/pty-session.py.
    @Test func terminalSession() throws {
        let node = try TestNode()
        let daemon = try DaemonTests.Daemon(node)
        defer {
            daemon.stop(signal: SIGKILL)
            node.cleanup()
        }
        try daemon.start()
        let a = node.name("tty")
        #expect(try daemon.ctl(["create", a, "--image", "busybox"]).status == 0)
        let session = try Spawn.run(["/usr/bin/python3", TestEnvironment.repoRoot + "/Tests/SliverdTests/Fixtures/pty-session.py",
                                     TestEnvironment.vsh, node.config.vshSocketPath, a])
        #expect(session.status == 0, "\(session.stdout)\(session.stderr)")
        #expect(session.stdout == "size 30 100\nresized 40 120\nctrl-c\neof\nstatus 3\n", "\(session.stderr)")
    }

    @Test func sshLoginLandsInTheSliver() throws {
        let node = try TestNode(accounts: true)
        let daemon = try DaemonTests.Daemon(node)
        var sshd: SSHServer?
        defer {
            sshd?.stop()
            daemon.stop(signal: SIGKILL)
            node.cleanup()
        }
        for key in ["key1", "key2"] {
            _ = try Spawn.run(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", key, "-f", node.root + "/" + key])
        }
        let key1 = try FileSystem.readString(node.root + "/key1.pub").trimmingCharacters(in: .whitespacesAndNewlines)
        try daemon.start()
        let a = node.name("ssha"), b = node.name("sshb")
        #expect(try daemon.ctl(["create", a, "--image", "busybox", "--key-file", node.root + "/key1.pub"]).status == 0)
        #expect(try daemon.ctl(["create", b, "--image", "busybox"]).status == 0)
        // The host account: shell vsh, no password, member of slices, home with authorized_keys.
        let account = try #require(node.config.hostAccounts.account(a))
        #expect(FileSystem.exists(account.home + "/.ssh/authorized_keys"))
        #expect(try daemon.ctl(["keys", a]).stdout == key1 + "\n")
        // sshd's AuthorizedKeysCommand: vsh answers root with the same keys over the vsh socket;
        // a slice account (or anyone not root) gets nothing; an unknown slice is an error.
        let vshKeys = ["/usr/bin/env", "SLIVERD_VSH_SOCKET=\(node.config.vshSocketPath)", TestEnvironment.vsh, "--authorized-keys"]
        let keys = try Spawn.run(vshKeys + [a])
        #expect(keys.status == 0 && keys.stdout == key1 + "\n", "\(keys.stderr)")
        let asSlice = try Spawn.run(["/usr/bin/setpriv", "--reuid=\(account.uid)", "--regid=\(account.gid)", "--clear-groups"] + vshKeys + [a])
        #expect(asSlice.status == 1 && asSlice.stdout.isEmpty && asSlice.stderr.contains("serves only login"), "\(asSlice.stderr)")
        let unknown = try Spawn.run(vshKeys + [node.name("nokeys")])
        #expect(unknown.status == 1 && unknown.stderr.contains("no sliver"), "\(unknown.stderr)")
        sshd = try SSHServer(root: node.root, daemon: daemon)
        let server = try #require(sshd)
        let key = node.root + "/key1"

        let who = try server.ssh(a, key: key, "hostname; id -un; cat /etc/slicename")
        #expect(who.status == 0, "\(who.stderr)")
        #expect(who.stdout == "\(a)\n\(a)\n\(a)\n")
        #expect(try server.ssh(a, key: key, "false").status == 1)
        #expect(try server.ssh(a, key: key, "exit 7").status == 7)
        #expect(try server.ssh(a, key: node.root + "/key2", "true").status == 255)  // wrong key

        // Inside a vsh session: only the sliver's processes, only fds 0-2, the sliver's
        // restrictions and cgroups (its cgroup namespace root), and no host terminal.
        let inside = try server.ssh(a, key: key, "ps -o pid,comm | wc -l; ls /proc/self/fd | tr '\\n' ' '; echo; grep -E '^(CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; cut -d: -f3 /proc/self/cgroup | sort -u")
        let lines = inside.stdout.split(separator: "\n").map(String.init)
        #expect(inside.status == 0, "\(inside.stderr)")
        #expect((Int(lines.first?.trimmingCharacters(in: .whitespaces) ?? "") ?? 99) <= 8, "\(inside.stdout)")
        #expect(lines.count > 1 && lines[1] == "0 1 2 3 ", "\(inside.stdout)")
        #expect(inside.stdout.contains("CapBnd:\t" + String(format: "%016llx", node.config.capabilitySet.mask)))
        #expect(inside.stdout.contains("Seccomp:\t2"))
        #expect(inside.stdout.contains("NoNewPrivs:\t1"))
        #expect(lines.last == "/", "cgroup paths: \(inside.stdout)")
        // With -t the session gets pty 0 of the sliver's own, fresh devpts instance, which holds
        // nothing else: the host's terminal (sshd's pty) is never handed into the sliver.
        let terminal = try server.ssh(a, key: key, tty: true, "tty; ls /dev/pts | tr '\\n' ' '; echo")
        #expect(terminal.status == 0, "\(terminal.stderr)")
        #expect(terminal.stdout.replacingOccurrences(of: "\r", with: "") == "/dev/pts/0\n0 ptmx \n", "\(terminal.stdout)")

        // A cannot enter B; nobody (no slice, not root) cannot enter any; root can.
        let uid = account.uid, gid = account.gid
        let cross = try Spawn.run(["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups",
                                   "/usr/bin/env", "SLIVERD_VSH_SOCKET=\(node.config.vshSocketPath)", TestEnvironment.vsh, b, "--", "true"])
        #expect(cross.status == 1)
        #expect(cross.stderr.contains("may not enter sliver \(b)"), "\(cross.stderr)")
        let nobody = try Spawn.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    "/usr/bin/env", "SLIVERD_VSH_SOCKET=\(node.config.vshSocketPath)", TestEnvironment.vsh, a, "--", "true"])
        #expect(nobody.status == 1)
        #expect(nobody.stderr.contains("not a slice account"), "\(nobody.stderr)")
        let admin = try Spawn.run(["/usr/bin/env", "SLIVERD_VSH_SOCKET=\(node.config.vshSocketPath)", TestEnvironment.vsh, b, "--", "cat", "/etc/slicename"])
        #expect(admin.status == 0 && admin.stdout == b + "\n", "\(admin.stderr)")

        // Comments are free text: quotes, backslashes and non-ASCII come back from vsh's JSON
        // reader exactly as sliverctl prints them (two keys, one per line).
        let odd = key1.split(separator: " ")[0...1].joined(separator: " ") + " al\"ice\\ü 😀 end"
        try FileSystem.writeAtomically(node.root + "/odd.pub", Array((key1 + "\n" + odd + "\n").utf8), mode: 0o644)
        #expect(try daemon.ctl(["keys", a, "--set-file", node.root + "/odd.pub"]).status == 0)
        let oddKeys = try Spawn.run(vshKeys + [a])
        #expect(oddKeys.status == 0 && oddKeys.stdout == key1 + "\n" + odd + "\n", "\(oddKeys.stdout)")
        #expect(oddKeys.stdout == (try daemon.ctl(["keys", a])).stdout)

        // Key removal is live: refused at once, nothing restarted.
        let pid = try daemon.client().result(ControlRequest(op: "show", name: a), as: SliverView.self).initPid
        try FileSystem.writeAtomically(node.root + "/empty.pub", [], mode: 0o644)
        #expect(try daemon.ctl(["keys", a, "--set-file", node.root + "/empty.pub"]).status == 0)
        #expect(try server.ssh(a, key: key, "true").status == 255)
        #expect(try daemon.client().result(ControlRequest(op: "show", name: a), as: SliverView.self).initPid == pid)

        // A stopped or suspended sliver refuses logins with one clear line and a non-zero status.
        #expect(try daemon.ctl(["stop", b]).status == 0)
        let stopped = try Spawn.run(["/usr/bin/env", "SLIVERD_VSH_SOCKET=\(node.config.vshSocketPath)", TestEnvironment.vsh, b, "--", "true"])
        #expect(stopped.status == 1)
        #expect(stopped.stderr == "vsh: sliver \(b) is stopped; logins are refused\n", "\(stopped.stderr)")
        #expect(try daemon.ctl(["set", a, "enabled=0"]).status == 0)
        let suspended = try Spawn.run(["/usr/bin/env", "SLIVERD_VSH_SOCKET=\(node.config.vshSocketPath)", TestEnvironment.vsh, a, "--", "true"])
        #expect(suspended.stderr.contains("suspended"), "\(suspended.stderr)")

        // Destroy removes the host account and its home.
        #expect(try daemon.ctl(["destroy", a]).status == 0)
        #expect(node.config.hostAccounts.account(a) == nil)
        #expect(!FileSystem.exists(account.home))
        #expect(!node.config.hostAccounts.members().contains(a))
        daemon.stop(signal: SIGTERM)
    }
}
