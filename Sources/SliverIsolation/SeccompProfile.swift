#if canImport(Glibc)
import Glibc
#endif
import CSeccomp
import CSliverShim
import SliverSystem

/// The seccomp allowlist a sliver runs under. Default action EPERM: a syscall nobody listed
/// fails cleanly instead of killing the process, so new kernels' syscalls degrade gracefully.
///
/// Not listed, and so refused: the keyring (keyctl, add_key, request_key: keys are not
/// namespaced), bpf, unshare and setns (no nested namespaces: CVE-2022-0185/0492 need them),
/// mount and the new mount API (fsopen, fsconfig, fsmount, fspick, open_tree, move_mount,
/// mount_setattr), pivot_root, kexec, module loading, open_by_handle_at (the "shocker" escape),
/// perf_event_open, userfaultfd, io_uring (bypasses seccomp for the work it queues), swapon,
/// iopl/ioperm, reboot, acct, quotactl, clock and time setting, syslog.
public struct SeccompProfile: Sendable {
    public var name: String
    public var allowed: [String]

    public init(name: String, allowed: [String]) {
        self.name = name
        self.allowed = allowed
    }

    /// Namespace-creating clone flags. clone(2) with any of them is refused; CLONE_NEWTIME is
    /// 0x80, which clone(2) reads as part of the exit signal, so only clone3 could pass it — and
    /// clone3 is answered ENOSYS (its flags live in memory seccomp cannot inspect), which makes
    /// glibc fall back to clone(2).
    static let namespaceCloneFlags: UInt64 = 0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000
        | 0x1000_0000 | 0x2000_0000 | 0x4000_0000

    /// personality(2) values that are harmless (docker's list): PER_LINUX, PER_LINUX32,
    /// UNAME26, PER_LINUX32|UNAME26 and the query 0xffffffff.
    static let allowedPersonalities: [UInt64] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]

    public static let `default` = SeccompProfile(name: "default", allowed: defaultAllowlist)

    /// Compiles the profile into classic BPF for this machine's architecture. Other
    /// architectures' syscall entry points (i386 int 0x80, x32) get libseccomp's default
    /// bad-arch action, which kills the process.
    public func compile() throws(IsolationError) -> [UInt8] {
        guard let ctx = seccomp_init(sliver_scmp_act_errno(EPERM)) else {
            throw IsolationError(.kernel, stage: "seccomp.compile", "seccomp_init failed")
        }
        defer { seccomp_release(ctx) }
        // A binary tree over the syscall numbers instead of libseccomp's default linear list. The
        // kernel emulates the filter for every syscall number of every architecture when it is
        // attached (to precompute its allow bitmap), so each entry pays for the path length:
        // 0.55 ms per entry with the linear list of ~300 rules, measured on this machine.
        guard seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) == 0 else {
            throw IsolationError(.kernel, stage: "seccomp.compile", "seccomp_attr_set(SCMP_FLTATR_CTL_OPTIMIZE, 2) failed")
        }
        func add(_ action: UInt32, _ name: String, _ conditions: [scmp_arg_cmp] = []) throws(IsolationError) {
            let nr = seccomp_syscall_resolve_name(name)
            if nr == __NR_SCMP_ERROR { return }  // not a syscall on this architecture
            var conditions = conditions
            let rc = seccomp_rule_add_array(ctx, action, nr, UInt32(conditions.count), &conditions)
            if rc != 0 {
                throw IsolationError(.kernel, stage: "seccomp.compile", "rule for \(name): \(String(cString: strerror(-rc)))")
            }
        }
        for name in allowed { try add(SCMP_ACT_ALLOW, name) }
        try add(SCMP_ACT_ALLOW, "clone", [scmp_arg_cmp(arg: 0, op: SCMP_CMP_MASKED_EQ, datum_a: Self.namespaceCloneFlags, datum_b: 0)])
        try add(sliver_scmp_act_errno(ENOSYS), "clone3")
        for value in Self.allowedPersonalities {
            try add(SCMP_ACT_ALLOW, "personality", [scmp_arg_cmp(arg: 0, op: SCMP_CMP_EQ, datum_a: value, datum_b: 0)])
        }
        // ioctl is allowed whole. TIOCSTI (pushing input into a terminal, CVE-2017-5226) needs the
        // terminal to be the caller's controlling one, and no sliver process has a host terminal as
        // such: every entry runs setsid(). Filtering it here would need a 64-bit "not equal" on the
        // request, which libseccomp can only express unmasked (so high bits set would bypass it).
        try add(SCMP_ACT_ALLOW, "ioctl")
        let fd = sliver_memfd("seccomp-\(name)")
        guard fd >= 0 else {
            throw IsolationError(.kernel, stage: "seccomp.compile", "memfd_create: errno \(errno)")
        }
        defer { close(fd) }
        let rc = seccomp_export_bpf(ctx, fd)
        guard rc == 0 else {
            throw IsolationError(.kernel, stage: "seccomp.compile", "seccomp_export_bpf: \(String(cString: strerror(-rc)))")
        }
        lseek(fd, 0, SEEK_SET)
        var program: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            program.append(contentsOf: buffer[0..<n])
        }
        return program
    }

    /// Compiles once and writes the program where the helper loads it for every sliver.
    public func install(at path: String) throws(IsolationError) {
        do {
            try FileSystem.writeAtomically(path, try compile(), mode: 0o600)
        } catch let error as SystemError {
            throw IsolationError(error)
        } catch {
            throw error as! IsolationError
        }
    }

    static let defaultAllowlist: [String] = [
        // files and descriptors
        "access", "chdir", "chmod", "chown", "close", "close_range", "copy_file_range", "creat", "dup", "dup2",
        "dup3", "faccessat", "faccessat2", "fadvise64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
        "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fremovexattr",
        "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futimesat", "getcwd", "getdents", "getdents64",
        "getxattr", "lchown", "lgetxattr", "link", "linkat", "listxattr", "llistxattr", "lremovexattr", "lseek",
        "lsetxattr", "lstat", "mkdir", "mkdirat", "mknod", "mknodat", "newfstatat", "open", "openat", "openat2",
        "pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
        "readlinkat", "readv", "removexattr", "rename", "renameat", "renameat2", "rmdir", "sendfile", "setxattr",
        "splice", "stat", "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee",
        "truncate", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vmsplice", "write", "writev",
        "chroot", "name_to_handle_at",
        // events and polling
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd",
        "eventfd2", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "pause", "poll",
        "ppoll", "pselect6", "select", "signalfd", "signalfd4", "timerfd_create", "timerfd_gettime",
        "timerfd_settime", "pipe", "pipe2", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents",
        "io_setup", "io_submit",
        // memory
        "brk", "madvise", "membarrier", "memfd_create", "mincore", "mlock", "mlock2", "mlockall", "mmap",
        "mprotect", "mremap", "msync", "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free",
        "pkey_mprotect", "remap_file_pages", "get_mempolicy", "set_mempolicy", "mbind",
        // processes, threads, signals
        "arch_prctl", "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork", "futex",
        "futex_waitv", "get_robust_list", "set_robust_list", "get_thread_area", "set_thread_area",
        "set_tid_address", "getcpu", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrlimit",
        "getrusage", "getsid", "gettid", "kill", "tgkill", "tkill", "pidfd_open", "pidfd_send_signal",
        "prctl", "prlimit64", "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "restart_syscall",
        "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
        "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
        "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
        "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler",
        "sched_yield", "seccomp", "setpgid", "setpriority", "setrlimit", "setsid", "sigaltstack", "wait4",
        "waitid", "ioprio_get", "ioprio_set", "landlock_add_rule", "landlock_create_ruleset",
        "landlock_restrict_self",
        // credentials (inside the sliver's user namespace)
        "getegid", "geteuid", "getgid", "getgroups", "getresgid", "getresuid", "getuid", "setfsgid", "setfsuid",
        "setgid", "setgroups", "setregid", "setresgid", "setresuid", "setreuid", "setuid",
        // time (reading only)
        "alarm", "clock_getres", "clock_gettime", "clock_nanosleep", "getitimer", "gettimeofday", "nanosleep",
        "setitimer", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_settime", "times",
        // networking (inside the sliver's network namespace)
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt", "listen",
        "recvfrom", "recvmmsg", "recvmsg", "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socket",
        "socketpair",
        // System V and POSIX IPC (inside the sliver's IPC namespace)
        "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink",
        "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop", "shmat", "shmctl",
        "shmdt", "shmget",
        // system information and the sliver's own UTS namespace
        "getrandom", "sethostname", "setdomainname", "sysinfo", "uname",
    ]
}
