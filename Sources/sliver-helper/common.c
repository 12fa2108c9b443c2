/* Errors, raw syscall wrappers and the process-restriction steps shared by create and enter. */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <linux/capability.h>
#include <linux/seccomp.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

int sh_status_fd = -1;
void (*sh_on_fail)(void);

/* ---------------------------------------------------------------- errors */

static _Noreturn void vfail(int code, const char *stage, int err, const char *fmt, va_list ap)
{
    struct sh_msg m = {.kind = MSG_ERROR};
    char what[300];
    vsnprintf(what, sizeof what, fmt, ap);
    snprintf(m.text, sizeof m.text, "sliver-helper: %s: %s: %s (errno %d)\n", stage, what, strerror(err), err);
    if (sh_status_fd >= 0) {
        /* Sliver side of create: the host-side parent prints the line; stderr may be anything. */
        sh_send(&m);
        _exit(code);
    }
    if (write(STDERR_FILENO, m.text, strlen(m.text)) < 0) { /* nothing left to report to */ }
    if (sh_on_fail) sh_on_fail();
    _exit(code);
}

void sh_fail(const char *stage, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(1, stage, err, fmt, ap);
}

void sh_fail_code(int code, const char *stage, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(code, stage, err, fmt, ap);
}

void sh_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(2, "usage", EINVAL, fmt, ap);
}

/* Appends the filesystem context's own log (e.g. "e overlay: ...") to a failure report. */
void sh_fs_fail(int fsfd, const char *stage, int err, const char *what)
{
    char log[200] = "";
    ssize_t n = read(fsfd, log, sizeof log - 1);
    log[n > 0 ? n : 0] = 0;
    if (n > 0 && log[n - 1] == '\n') log[n - 1] = 0;
    sh_fail(stage, err, "%s%s%s", what, n > 0 ? ": " : "", log);
}

void sh_send(const struct sh_msg *m)
{
    /* One write of less than PIPE_BUF bytes: atomic, so C and I never interleave. If nobody reads
     * any more (the host side died), this fails with EPIPE and the caller dies. */
    if (write(sh_status_fd, m, sizeof *m) != (ssize_t)sizeof *m) _exit(1);
}

void sh_write_all(int fd, const void *buf, size_t len, const char *stage, const char *what)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) sh_fail(stage, n < 0 ? errno : EIO, "write %s", what);
        p += n;
        len -= (size_t)n;
    }
}

/* ---------------------------------------------------------------- raw syscalls */

int sh_open_tree(int dfd, const char *path, unsigned flags)
{
    return (int)syscall(__NR_open_tree, dfd, path, flags);
}

int sh_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{
    return (int)syscall(__NR_move_mount, from_dfd, from, to_dfd, to, flags);
}

int sh_mount_setattr(int dfd, const char *path, unsigned flags, struct sh_mount_attr *attr)
{
    return (int)syscall(__NR_mount_setattr, dfd, path, flags, attr, sizeof *attr);
}

int sh_fsopen(const char *fs, unsigned flags)
{
    return (int)syscall(__NR_fsopen, fs, flags);
}

int sh_fsconfig(int fd, unsigned cmd, const char *key, const void *value, int aux)
{
    return (int)syscall(__NR_fsconfig, fd, cmd, key, value, aux);
}

int sh_fsmount(int fd, unsigned flags, unsigned attrs)
{
    return (int)syscall(__NR_fsmount, fd, flags, attrs);
}

int sh_openat2(int dfd, const char *path, uint64_t flags, uint64_t resolve)
{
    struct sh_open_how how = {.flags = flags, .resolve = resolve};
    return (int)syscall(__NR_openat2, dfd, path, &how, sizeof how);
}

int sh_pidfd_open(pid_t pid)
{
    return (int)syscall(__NR_pidfd_open, pid, 0);
}

int sh_pidfd_kill(int pidfd, int sig)
{
    return (int)syscall(__NR_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Closes every fd >= lowfd except keep_a and keep_b (-1 = none). */
void sh_close_from(int lowfd, int keep_a, int keep_b)
{
    int keep[2] = {keep_a < keep_b ? keep_a : keep_b, keep_a < keep_b ? keep_b : keep_a};
    unsigned lo = (unsigned)lowfd;
    for (int i = 0; i < 2; i++) {
        if (keep[i] < lowfd) continue;
        if ((unsigned)keep[i] > lo && syscall(__NR_close_range, lo, (unsigned)keep[i] - 1, 0) < 0)
            sh_fail("close_range", errno, "close_range(%u, %d)", lo, keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    if (syscall(__NR_close_range, lo, ~0u, 0) < 0) sh_fail("close_range", errno, "close_range(%u, ~0)", lo);
}

/* setgroups/setresgid/setresuid as raw syscalls: the glibc wrappers broadcast the change to all
 * threads with signals (setxid), which is neither needed nor wanted here. Supplementary groups go
 * first (needs CAP_SETGID), then the gid, then the uid (after which CAP_SETUID/SETGID may be gone). */
int sh_set_ids(uid_t uid, gid_t gid)
{
    if (syscall(SYS_setgroups, 0, NULL) < 0) sh_fail("ids", errno, "setgroups(0, NULL)");
    if (syscall(SYS_setresgid, gid, gid, gid) < 0) sh_fail("ids", errno, "setresgid(%u)", (unsigned)gid);
    if (syscall(SYS_setresuid, uid, uid, uid) < 0) sh_fail("ids", errno, "setresuid(%u)", (unsigned)uid);
    return 0;
}

/* ---------------------------------------------------------------- restrictions */

/* Default dispositions and an empty mask: ignored signals and the mask survive execve, and sliverd
 * (like most Swift servers) ignores SIGPIPE; sliver processes must not inherit that. */
void sh_reset_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigemptyset(&sa.sa_mask);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        (void)sigaction(sig, &sa, NULL); /* EINVAL for glibc's internal signals: fine */
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

int sh_cap_last(void)
{
    char buf[16] = {0};
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) sh_fail("caps", errno, "open /proc/sys/kernel/cap_last_cap");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n <= 0) sh_fail("caps", n < 0 ? err : EIO, "read /proc/sys/kernel/cap_last_cap");
    int last = atoi(buf);
    if (last <= 0 || last > 63) sh_fail("caps", ERANGE, "cap_last_cap is %d", last);
    return last;
}

/* The bounding set caps what any later execve can give back (root's exec gets bounding as its
 * permitted set), so it is the mask that lasts. Dropping needs CAP_SETPCAP: do it before the ids
 * change takes the capabilities away. */
void sh_drop_bounding(uint64_t keep, int last)
{
    for (int cap = 0; cap <= last; cap++) {
        if (keep & (1ull << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) sh_fail("caps", errno, "PR_CAPBSET_DROP %d", cap);
    }
}

/* permitted = effective = keep (as far as still permitted), inheritable = ambient = empty
 * (a non-empty inheritable set leaks capabilities through exec: CVE-2022-27650 and kin). */
void sh_set_caps(uint64_t keep)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0) sh_fail("caps", errno, "capget");
    uint64_t permitted = ((uint64_t)data[1].permitted << 32 | data[0].permitted) & keep;
    for (int i = 0; i < 2; i++) {
        data[i].permitted = data[i].effective = (uint32_t)(permitted >> (32 * i));
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &hdr, data) < 0) sh_fail("caps", errno, "capset permitted=effective=0x%llx",
                                                     (unsigned long long)permitted);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        sh_fail("caps", errno, "PR_CAP_AMBIENT_CLEAR_ALL");
}

/* Reads the raw classic-BPF program on the host side, before any namespace exists. */
void sh_read_seccomp(struct sh_config *cfg)
{
    const char *path = cfg->seccomp_path;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) sh_fail("seccomp", errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) sh_fail("seccomp", errno, "fstat %s", path);
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size % (off_t)sizeof(struct sock_filter) != 0 ||
        st.st_size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS)
        sh_fail("seccomp", EINVAL, "%s: %lld bytes is not a whole program of 1..%d sock_filter entries", path,
                (long long)st.st_size, BPF_MAXINSNS);
    cfg->bpf = malloc((size_t)st.st_size);
    if (!cfg->bpf) sh_fail("seccomp", ENOMEM, "allocate %lld bytes", (long long)st.st_size);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, (char *)cfg->bpf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) sh_fail("seccomp", n < 0 ? errno : EIO, "read %s", path);
        got += (size_t)n;
    }
    close(fd);
    cfg->bpf_len = (unsigned short)(st.st_size / (off_t)sizeof(struct sock_filter));
}

/* no_new_privs first: it is what lets an unprivileged-in-the-kernel's-eyes process install a filter,
 * and it makes setuid/file-capability binaries unable to regain anything. The filter comes last. */
void sh_load_seccomp(const struct sh_config *cfg)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) sh_fail("seccomp", errno, "PR_SET_NO_NEW_PRIVS");
    struct sock_fprog prog = {.len = cfg->bpf_len, .filter = cfg->bpf};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        sh_fail("seccomp", errno, "PR_SET_SECCOMP SECCOMP_MODE_FILTER %s (%u instructions)", cfg->seccomp_path,
                cfg->bpf_len);
}

/* Writing "0" moves the writer itself; every process forked later is born in the cgroup, so the
 * sliver is accounted from its first process. On v1 hierarchies the helper writes the per-thread
 * `tasks` file: it is single-threaded, so moving its one thread moves the whole process, and
 * cgroup.procs would take the threadgroup write lock with an RCU grace period for each of the
 * eight hierarchies (about 7 ms against 0.2 ms measured here). v2 has only cgroup.procs. */
void sh_join_cgroups(const struct sh_config *cfg)
{
    char path[4096];
    for (int i = 0; i < cfg->n_cgroups; i++) {
        /* v1 has "tasks" (this thread: the helper is single-threaded), v2 only "cgroup.procs".
         * Opened straight away, the other name on ENOENT: every login pays for each lookup in
         * cgroupfs, eight of them on a v1 node. */
        if (snprintf(path, sizeof path, "%s/tasks", cfg->cgroups[i]) >= (int)sizeof path)
            sh_fail("cgroup", ENAMETOOLONG, "%s/tasks", cfg->cgroups[i]);
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT) {
            if (snprintf(path, sizeof path, "%s/cgroup.procs", cfg->cgroups[i]) >= (int)sizeof path)
                sh_fail("cgroup", ENAMETOOLONG, "%s/cgroup.procs", cfg->cgroups[i]);
            fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        }
        if (fd < 0) sh_fail("cgroup", errno, "open %s", path);
        if (write(fd, "0", 1) != 1) sh_fail("cgroup", errno, "write 0 to %s", path);
        close(fd);
    }
}
