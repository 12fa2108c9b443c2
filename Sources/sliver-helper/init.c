/*
 * create, the sliver's init I (pid 1 of the new pid namespace).
 *
 * Builds /dev, /proc and /sys inside the overlay root through fds only, pivots into it, applies every
 * restriction to itself, starts the boot program, reports ready and stays as the reaper.
 * Every mount target is resolved with openat2 relative to the root fd and without symlinks, and
 * every mount is attached with move_mount onto that fd: no path string inside the sliver's
 * (tenant-writable) tree reaches a mount call (CVE-2021-30465, CVE-2019-19921 and kin).
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#define IN_ROOT (SH_RESOLVE_IN_ROOT | SH_RESOLVE_NO_SYMLINKS | SH_RESOLVE_NO_MAGICLINKS)
#define BENEATH (SH_RESOLVE_BENEATH | SH_RESOLVE_NO_SYMLINKS | SH_RESOLVE_NO_MAGICLINKS | SH_RESOLVE_NO_XDEV)
#define F_T_EMPTY (SH_MOVE_MOUNT_F_EMPTY_PATH | SH_MOVE_MOUNT_T_EMPTY_PATH)
#define RO_MASK (unsigned)(SH_MOUNT_ATTR_RDONLY | SH_MOUNT_ATTR_NOSUID | SH_MOUNT_ATTR_NODEV | SH_MOUNT_ATTR_NOEXEC)
#define SHUTDOWN_GRACE_S 5
#define BOOT_PATH_ENV "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Hidden behind /dev/null (files) or an empty read-only tmpfs (directories): kernel memory, keys,
 * timing side channels, hardware. */
static const char *const masked_proc[] = {"acpi", "asound", "kcore", "keys", "key-users", "latency_stats",
                                          "timer_list", "timer_stats", "sched_debug", "scsi", NULL};
/* Read-only binds over themselves: sysctls, sysrq, irq affinity, bus and fs tunables. */
static const char *const readonly_proc[] = {"bus", "fs", "irq", "sys", "sysrq-trigger", NULL};
static const char *const masked_sys[] = {"firmware", "devices/virtual/powercap", NULL};

static const struct {
    const char *name;
    unsigned major, minor;
} devices[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};

struct fs_option {
    const char *key, *value; /* value NULL: a flag */
};

/* ---------------------------------------------------------------- mount helpers */

static void attach(int mnt, int target, const char *what)
{
    if (sh_move_mount(mnt, "", target, "", F_T_EMPTY) < 0) sh_fail("mount", errno, "move_mount %s", what);
    close(mnt);
}

/* A fresh filesystem as a detached mount (fsopen/fsconfig/fsmount). proc and sysfs are mountable
 * in a user namespace only while a fully visible instance exists in the mount namespace: that is
 * why they are made before the old root is detached. */
static int new_mount(const char *type, const struct fs_option *opts, unsigned attrs)
{
    char what[96];
    int fs = sh_fsopen(type, SH_FSOPEN_CLOEXEC);
    if (fs < 0) sh_fail("mount", errno, "fsopen %s", type);
    for (; opts && opts->key; opts++) {
        unsigned cmd = opts->value ? SH_FSCONFIG_SET_STRING : SH_FSCONFIG_SET_FLAG;
        if (sh_fsconfig(fs, cmd, opts->key, opts->value, 0) < 0) {
            snprintf(what, sizeof what, "fsconfig %s %s=%s", type, opts->key, opts->value ? opts->value : "");
            sh_fs_fail(fs, "mount", errno, what);
        }
    }
    snprintf(what, sizeof what, "create %s", type);
    if (sh_fsconfig(fs, SH_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) sh_fs_fail(fs, "mount", errno, what);
    int mnt = sh_fsmount(fs, SH_FSMOUNT_CLOEXEC, attrs);
    snprintf(what, sizeof what, "fsmount %s attrs 0x%x", type, attrs);
    if (mnt < 0) sh_fs_fail(fs, "mount", errno, what);
    close(fs);
    return mnt;
}

/* A detached bind of a host device node, verified to be the expected character device: a path
 * that has been swapped for something else is refused (CVE-2025-31133). */
static int clone_dev(const char *name, unsigned major, unsigned minor, uint64_t attrs)
{
    char path[32];
    snprintf(path, sizeof path, "/dev/%s", name);
    int fd = sh_open_tree(AT_FDCWD, path, SH_OPEN_TREE_CLONE | O_CLOEXEC | AT_SYMLINK_NOFOLLOW);
    if (fd < 0) sh_fail("dev", errno, "open_tree %s OPEN_TREE_CLONE", path);
    struct stat st;
    if (fstat(fd, &st) < 0) sh_fail("dev", errno, "fstat %s", path);
    if (!S_ISCHR(st.st_mode) || st.st_rdev != makedev(major, minor))
        sh_fail("dev", ENODEV, "%s is not the character device %u:%u", path, major, minor);
    struct sh_mount_attr attr = {.attr_set = attrs};
    if (sh_mount_setattr(fd, "", AT_EMPTY_PATH, &attr) < 0) sh_fail("dev", errno, "mount_setattr %s", path);
    return fd;
}

/* A mount point directly under the new root: a directory, created if missing; a symlinked /proc,
 * /sys or /dev is refused rather than followed. */
static int root_dir(int rootfd, const char *name)
{
    const uint64_t flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = sh_openat2(rootfd, name, flags, IN_ROOT | SH_RESOLVE_NO_XDEV);
    if (fd < 0 && errno == ENOENT) {
        if (mkdirat(rootfd, name, 0755) < 0 && errno != EEXIST) sh_fail("rootfs", errno, "mkdir /%s", name);
        fd = sh_openat2(rootfd, name, flags, IN_ROOT | SH_RESOLVE_NO_XDEV);
    }
    if (fd < 0) sh_fail("rootfs", errno, "open /%s in the new root (directory, no symlinks)", name);
    return fd;
}

/* Covers dirfd/name (file: /dev/null; directory: empty read-only tmpfs). Absent paths are skipped. */
static void mask(int dirfd, const char *base, const char *name)
{
    int t = sh_openat2(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, BENEATH);
    if (t < 0 && errno == ENOENT) return;
    if (t < 0) sh_fail("mask", errno, "open %s/%s", base, name);
    struct stat st;
    if (fstat(t, &st) < 0) sh_fail("mask", errno, "fstat %s/%s", base, name);
    static const struct fs_option tiny[] = {{"size", "4k"}, {"mode", "0555"}, {NULL, NULL}};
    int src = S_ISDIR(st.st_mode) ? new_mount("tmpfs", tiny, RO_MASK)
                                  : clone_dev("null", 1, 3, SH_MOUNT_ATTR_RDONLY | SH_MOUNT_ATTR_NOSUID |
                                                                SH_MOUNT_ATTR_NOEXEC);
    attach(src, t, name);
    close(t);
}

/* Binds dirfd/name read-only over itself (absent paths are skipped). */
static void make_readonly(int dirfd, const char *base, const char *name)
{
    int t = sh_openat2(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC, BENEATH);
    if (t < 0 && errno == ENOENT) return;
    if (t < 0) sh_fail("readonly", errno, "open %s/%s", base, name);
    int src = sh_open_tree(t, "", SH_OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH);
    if (src < 0) sh_fail("readonly", errno, "open_tree %s/%s OPEN_TREE_CLONE", base, name);
    struct sh_mount_attr attr = {.attr_set = RO_MASK};
    if (sh_mount_setattr(src, "", AT_EMPTY_PATH, &attr) < 0)
        sh_fail("readonly", errno, "mount_setattr %s/%s RDONLY", base, name);
    attach(src, t, name);
    close(t);
}

/* ---------------------------------------------------------------- stages */

static void setup_dev(int rootfd)
{
    static const struct fs_option tmpfs[] = {{"mode", "0755"}, {"size", "65536k"}, {NULL, NULL}};
    static const struct fs_option devpts[] = {
        {"newinstance", NULL}, {"ptmxmode", "0666"}, {"mode", "0620"}, {"gid", "5"}, {NULL, NULL}};
    static const char *const links[][2] = {{"ptmx", "pts/ptmx"},       {"fd", "/proc/self/fd"},
                                           {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
                                           {"stderr", "/proc/self/fd/2"}};
    int target = root_dir(rootfd, "dev");
    /* nodev on the tmpfs: device nodes work only as the binds below, each its own mount. */
    int dev = new_mount("tmpfs", tmpfs, (unsigned)(SH_MOUNT_ATTR_NOSUID | SH_MOUNT_ATTR_NODEV | SH_MOUNT_ATTR_NOEXEC));
    if (sh_move_mount(dev, "", target, "", F_T_EMPTY) < 0) sh_fail("dev", errno, "move_mount tmpfs onto /dev");
    close(target);
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        int src = clone_dev(devices[i].name, devices[i].major, devices[i].minor,
                            SH_MOUNT_ATTR_NOSUID | SH_MOUNT_ATTR_NOEXEC);
        int node = openat(dev, devices[i].name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (node < 0) sh_fail("dev", errno, "create /dev/%s", devices[i].name);
        attach(src, node, devices[i].name);
        close(node);
    }
    if (mkdirat(dev, "pts", 0755) < 0) sh_fail("dev", errno, "mkdir /dev/pts");
    int pts = openat(dev, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (pts < 0) sh_fail("dev", errno, "open /dev/pts");
    /* A private devpts instance: the sliver sees only its own ptys, never the host's. */
    attach(new_mount("devpts", devpts, (unsigned)(SH_MOUNT_ATTR_NOSUID | SH_MOUNT_ATTR_NOEXEC)), pts, "devpts");
    close(pts);
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlinkat(links[i][1], dev, links[i][0]) < 0) sh_fail("dev", errno, "symlink /dev/%s", links[i][0]);
    if (mkdirat(dev, "shm", 01777) < 0 || fchmodat(dev, "shm", 01777, 0) < 0)
        sh_fail("dev", errno, "mkdir /dev/shm 1777");
    close(dev);
}

static void setup_proc(int rootfd)
{
    int target = root_dir(rootfd, "proc");
    /* The pid namespace of a new proc instance is the caller's: I's, so the sliver sees only itself. */
    int proc = new_mount("proc", NULL, (unsigned)(SH_MOUNT_ATTR_NOSUID | SH_MOUNT_ATTR_NODEV | SH_MOUNT_ATTR_NOEXEC));
    if (sh_move_mount(proc, "", target, "", F_T_EMPTY) < 0) sh_fail("proc", errno, "move_mount proc onto /proc");
    close(target);
    /* Masks first, then the read-only binds (a bind made first would hide nothing the masks need). */
    for (int i = 0; masked_proc[i]; i++) mask(proc, "/proc", masked_proc[i]);
    for (int i = 0; readonly_proc[i]; i++) make_readonly(proc, "/proc", readonly_proc[i]);
    close(proc);
}

static void setup_sys(int rootfd)
{
    int target = root_dir(rootfd, "sys");
    /* sysfs shows the network namespace of the mounter (C's new one); read-only for the sliver. */
    int sys = new_mount("sysfs", NULL, RO_MASK);
    if (sh_move_mount(sys, "", target, "", F_T_EMPTY) < 0) sh_fail("sys", errno, "move_mount sysfs onto /sys");
    close(target);
    for (int i = 0; masked_sys[i]; i++) mask(sys, "/sys", masked_sys[i]);
    close(sys);
}

/* The sliver's side of the broker: the daemon's per-sliver directory (its broker socket and the
 * static client) bound read-only onto /run/sliverd. The source is a root-owned host directory
 * the sliver cannot write; the target is resolved inside the new root without symlinks. */
static void setup_broker(const struct sh_config *cfg, int rootfd)
{
    if (!cfg->broker_dir) return;
    int tree = sh_open_tree(AT_FDCWD, cfg->broker_dir, SH_OPEN_TREE_CLONE | O_CLOEXEC | AT_SYMLINK_NOFOLLOW);
    if (tree < 0) sh_fail("broker", errno, "open_tree %s", cfg->broker_dir);
    struct sh_mount_attr attr = {.attr_set = SH_MOUNT_ATTR_RDONLY | SH_MOUNT_ATTR_NOSUID | SH_MOUNT_ATTR_NODEV};
    if (sh_mount_setattr(tree, "", AT_EMPTY_PATH, &attr) < 0) sh_fail("broker", errno, "mount_setattr %s read-only", cfg->broker_dir);
    int run = root_dir(rootfd, "run");
    if (mkdirat(run, "sliverd", 0755) < 0 && errno != EEXIST) sh_fail("broker", errno, "mkdir /run/sliverd");
    int target = sh_openat2(run, "sliverd", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, BENEATH);
    if (target < 0) sh_fail("broker", errno, "open /run/sliverd in the new root (directory, no symlinks)");
    attach(tree, target, "broker directory onto /run/sliverd");
    close(target);
    close(run);
}

static void pivot(const struct sh_config *cfg, int rootfd)
{
    /* pivot_root(".", "."): the old root ends up stacked on the new one at "/", and detaching "."
     * removes it with every host mount under it; no put_old directory is created in the sliver. */
    if (fchdir(rootfd) < 0) sh_fail("pivot_root", errno, "fchdir %s/rootfs", cfg->sliver_dir);
    if (syscall(SYS_pivot_root, ".", ".") < 0) sh_fail("pivot_root", errno, "pivot_root into %s/rootfs", cfg->sliver_dir);
    if (umount2(".", MNT_DETACH) < 0) sh_fail("pivot_root", errno, "umount2 old root MNT_DETACH");
    if (chdir("/") < 0) sh_fail("pivot_root", errno, "chdir /");
    /* A cwd outside the root shows as "(unreachable)..." (CVE-2024-21626): make sure it is "/". */
    char cwd[64];
    errno = 0;
    if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, "/") != 0)
        sh_fail("pivot_root", errno ? errno : EXDEV, "verify that the cwd is /");
}

static void write_slicename(const struct sh_config *cfg, int rootfd)
{
    int etc = sh_openat2(rootfd, "etc", O_PATH | O_DIRECTORY | O_CLOEXEC, IN_ROOT);
    if (etc < 0 && errno == ENOENT && mkdirat(rootfd, "etc", 0755) == 0)
        etc = sh_openat2(rootfd, "etc", O_PATH | O_DIRECTORY | O_CLOEXEC, IN_ROOT);
    if (etc < 0) sh_fail("slicename", errno, "open /etc (directory, no symlinks)");
    /* Whatever the image or a previous run left there (symlink, fifo, device) is replaced by a
     * regular file; O_NONBLOCK keeps a planted fifo from blocking init. */
    for (int attempt = 0;; attempt++) {
        int fd = openat(etc, "slicename", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0644);
        int err = errno;
        struct stat st;
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
            sh_write_all(fd, cfg->name, strlen(cfg->name), "slicename", "/etc/slicename");
            sh_write_all(fd, "\n", 1, "slicename", "/etc/slicename");
            close(fd);
            close(etc);
            return;
        }
        if (fd >= 0) {
            close(fd);
            err = EEXIST;
        }
        if (attempt > 0 || unlinkat(etc, "slicename", 0) < 0) sh_fail("slicename", err, "create /etc/slicename");
    }
}

static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) sh_fail("loopback", errno, "socket(AF_INET, SOCK_DGRAM)");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) sh_fail("loopback", errno, "SIOCGIFFLAGS lo");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) sh_fail("loopback", errno, "SIOCSIFFLAGS lo up");
    close(s);
}

static void stdio_to_null(void)
{
    /* Opened without O_CLOEXEC on purpose and closed right away: if one of 0-2 was closed by the
     * caller, open() returns that slot and it must survive the boot program's execve. */
    int fd = open("/dev/null", O_RDWR | O_NOCTTY);
    if (fd < 0) sh_fail("stdio", errno, "open /dev/null");
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
        sh_fail("stdio", ENODEV, "/dev/null is not the character device 1:3");
    for (int i = 0; i < 3; i++)
        if (fd != i && dup2(fd, i) < 0) sh_fail("stdio", errno, "dup2 /dev/null to %d", i);
    if (fd > 2) close(fd);
}

/* /proc/1/cmdline inside the sliver reads init's argument area, which still holds the helper's
 * command line: host paths of the image, the storage and the cgroups. Overwrite it in place (the
 * strings init still needs are copied first by the caller). */
static void hide_command_line(const char *name)
{
    if (!sh_args_start || sh_args_len == 0) return;
    memset(sh_args_start, 0, sh_args_len);
    snprintf(sh_args_start, sh_args_len, "sliver-init %s", name);
}

static void start_boot(const struct sh_config *cfg)
{
    /* The boot program is optional: a sliver whose filesystem has none boots without it. We are
     * already inside the new root, so this looks at the sliver's own file. */
    struct stat st;
    if (lstat(cfg->boot, &st) < 0 && errno == ENOENT) return;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) sh_fail("boot", errno, "pipe2");
    pid_t pid = fork();
    if (pid < 0) sh_fail("boot", errno, "fork");
    if (pid == 0) {
        /* Restrictions are inherited; only the signal mask and handlers are init's own. */
        sh_reset_signals();
        setsid();
        char *argv[] = {(char *)cfg->boot, "start", (char *)cfg->name, NULL};
        char *envp[] = {BOOT_PATH_ENV, "HOME=/root", NULL};
        execve(cfg->boot, argv, envp);
        int err = errno;
        if (write(pipefd[1], &err, sizeof err) < 0) {}
        _exit(127);
    }
    close(pipefd[1]);
    int err = 0;
    ssize_t n;
    while ((n = read(pipefd[0], &err, sizeof err)) < 0 && errno == EINTR) {}
    close(pipefd[0]);
    if (n == (ssize_t)sizeof err) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        sh_fail("boot", err, "execve %s start %s", cfg->boot, cfg->name);
    }
}

/* ---------------------------------------------------------------- pid 1 */

static void on_signal(int sig)
{
    (void)sig;
}

/* pid 1 of a namespace gets only signals it has a handler for (SIGKILL from outside excepted). They
 * are blocked from the start and taken with sigwaitinfo, so none is lost during setup. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, set, NULL) < 0) sh_fail("signals", errno, "sigprocmask");
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGCHLD, &sa, NULL) < 0) sh_fail("signals", errno, "sigaction");
}

static void reap_all(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* SIGTERM to every process of the namespace, up to 5 s for them to go, then SIGKILL. Processes
 * init may not signal (other uid and no CAP_KILL) are killed by the kernel when pid 1 exits. */
static _Noreturn void shutdown_sliver(const sigset_t *set)
{
    kill(-1, SIGTERM);
    double deadline = now() + SHUTDOWN_GRACE_S;
    for (;;) {
        reap_all();
        /* kill(-1, 0) fails with ESRCH once no process but init is left (zombies count until reaped). */
        if (kill(-1, 0) < 0 && errno == ESRCH) _exit(0);
        double left = deadline - now();
        if (left <= 0) break;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = left < 0.1 ? (long)(left * 1e9) : 100000000L};
        sigtimedwait(set, NULL, &ts);
    }
    kill(-1, SIGKILL);
    _exit(0);
}

void sh_init(const struct sh_config *cfg, int rootfd, int donefd)
{
    sigset_t set;
    block_signals(&set);
    /* I's parent is C; C stays until I reports, so a killed helper takes the half-built sliver along. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) sh_fail("init", errno, "PR_SET_PDEATHSIG");
    umask(022);
    setup_dev(rootfd);
    setup_proc(rootfd);
    setup_sys(rootfd);
    setup_broker(cfg, rootfd);
    pivot(cfg, rootfd);
    write_slicename(cfg, rootfd);
    loopback_up();
    /* Bounding set while CAP_SETPCAP is still there, then the capability sets themselves. */
    sh_drop_bounding(cfg->caps, cfg->cap_last);
    sh_set_caps(cfg->caps);
    /* Non-dumpable: sliver processes cannot ptrace init nor open its /proc/1/{mem,exe,fd} (the
     * helper binary and its fds are host objects: CVE-2016-9962, CVE-2019-5736). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) sh_fail("init", errno, "PR_SET_DUMPABLE 0");
    sh_load_seccomp(cfg);
    stdio_to_null();
    /* Nothing of the host stays open: only the two pipes to the helper, closed after reporting. */
    sh_close_from(3, sh_status_fd, donefd);
    /* cfg's strings live in the argument area: keep copies of the two still needed. */
    static char name[256], boot[4096];
    static struct sh_config kept;
    kept = *cfg;
    snprintf(name, sizeof name, "%s", cfg->name);
    kept.name = name;
    if (cfg->boot) {
        snprintf(boot, sizeof boot, "%s", cfg->boot);
        kept.boot = boot;
    }
    cfg = &kept;
    hide_command_line(cfg->name);
    if (cfg->boot) start_boot(cfg);
    if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0) sh_fail("init", errno, "PR_SET_PDEATHSIG 0");
    struct sh_msg ready = {.kind = MSG_READY};
    sh_send(&ready);
    close(sh_status_fd);
    sh_status_fd = -1;
    close(donefd);
    for (;;) {
        reap_all();
        if (sigwaitinfo(&set, NULL) == SIGTERM) shutdown_sliver(&set);
    }
}
