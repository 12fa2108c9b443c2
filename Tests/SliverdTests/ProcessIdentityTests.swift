import Testing
import SliverSystem
#if canImport(Glibc)
import Glibc
#endif

/// ProcessIdentity.of parses /proc/PID/stat by bytes; these pin it to what proc(5) says.
struct ProcessIdentityTests {
    @Test func readsTheStartTimeOfALiveProcess() throws {
        let pid = getpid()
        let identity = try #require(ProcessIdentity.of(pid: pid))
        // Field 22 (starttime) the plain way: split what follows the last ')' on spaces.
        let stat = try FileSystem.readString("/proc/\(pid)/stat")
        let rest = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
        #expect(identity == ProcessIdentity(pid: pid, startTime: try #require(UInt64(rest[19]))))
        #expect(identity.isAlive)
        #expect(!ProcessIdentity(pid: pid, startTime: identity.startTime + 1).isAlive)
    }

    @Test func aZombieAndAMissingProcessAreNotAlive() throws {
        // posix_spawn, not fork: no Swift code runs in a child of this multi-threaded process.
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { argv.forEach { free($0) } }
        try #require(posix_spawn(&child, "/bin/true", nil, nil, argv, nil) == 0)
        defer { var status: Int32 = 0; waitpid(child, &status, 0) }
        // Not reaped yet: a zombie ("Z") until waitpid; give it a moment to exit.
        var zombie = false
        for _ in 0..<200 where !zombie {
            zombie = ProcessIdentity.of(pid: child) == nil
            if !zombie { usleep(5000) }
        }
        #expect(zombie)
        #expect(ProcessIdentity.of(pid: Int32.max) == nil)
    }
}
