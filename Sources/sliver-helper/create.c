/*
 * create, host side (P) and the user-namespace child (C).
 *
 * P: join cgroups -> private mount ns -> clone C in a new user ns -> write C's id maps -> idmapped,
 *    read-only image on lower/ -> overlay on rootfs/ -> release C -> relay C's and I's reports.
 * C: new mount/pid/net/uts/ipc/cgroup/time namespaces -> ids 0 -> hostname -> fork the init I (init.c).
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define SETUP_TIMEOUT_MS 30000

/* What P hands to C when it releases it: the identity of the overlay root C must find. */
struct go_msg {
    dev_t dev;
    ino_t ino;
};

struct sliver_dirs {
    int image, lower, upper, work, rootfs;
};

/* Children P started; killed and waited for on any failure, so a failed create leaves no process. */
static pid_t c_pid = -1;
static int c_pidfd = -1, i_pidfd = -1;

static void kill_started(void)
{
    if (i_pidfd >= 0) {
        /* I is pid 1 of its pid namespace: SIGKILL from an ancestor namespace always reaches it,
         * and its death kills everything else in the namespace. */
        sh_pidfd_kill(i_pidfd, SIGKILL);
        struct pollfd p = {.fd = i_pidfd, .events = POLLIN};
        (void)poll(&p, 1, 2000);
    }
    if (c_pidfd >= 0) {
        sh_pidfd_kill(c_pidfd, SIGKILL);
        while (waitpid(c_pid, NULL, 0) < 0 && errno == EINTR) {}
    }
}

/* ---------------------------------------------------------------- P: inputs */

/* Opens a pre-created directory of the sliver dir without following symlinks and checks its owner. */
static int open_sliver_subdir(int sdfd, const char *sliver_dir, const char *name, int check_owner, uint32_t owner)
{
    /* O_RDONLY (not O_PATH): fsconfig(FSCONFIG_SET_FD) refuses O_PATH files. */
    int fd = sh_openat2(sdfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW,
                        SH_RESOLVE_BENEATH | SH_RESOLVE_NO_SYMLINKS | SH_RESOLVE_NO_MAGICLINKS | SH_RESOLVE_NO_XDEV);
    if (fd < 0) sh_fail("sliver-dir", errno, "open %s/%s (directory, no symlinks)", sliver_dir, name);
    struct stat st;
    if (fstat(fd, &st) < 0) sh_fail("sliver-dir", errno, "fstat %s/%s", sliver_dir, name);
    if (check_owner && (st.st_uid != owner || st.st_gid != owner))
        sh_fail("sliver-dir", EPERM, "%s/%s is owned by %u:%u, expected %u:%u", sliver_dir, name,
                (unsigned)st.st_uid, (unsigned)st.st_gid, owner, owner);
    return fd;
}

static void open_inputs(const struct sh_config *cfg, struct sliver_dirs *d)
{
    d->image = open(cfg->image, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (d->image < 0) sh_fail("image", errno, "open %s (directory)", cfg->image);
    int sdfd = open(cfg->sliver_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sdfd < 0) sh_fail("sliver-dir", errno, "open %s (directory)", cfg->sliver_dir);
    d->lower = open_sliver_subdir(sdfd, cfg->sliver_dir, "lower", 0, 0);
    d->upper = open_sliver_subdir(sdfd, cfg->sliver_dir, "upper", 1, cfg->id_base);
    d->work = open_sliver_subdir(sdfd, cfg->sliver_dir, "work", 1, cfg->id_base);
    d->rootfs = open_sliver_subdir(sdfd, cfg->sliver_dir, "rootfs", 0, 0);
    close(sdfd);
}

/* ---------------------------------------------------------------- P: namespace and maps */

static void private_mount_ns(void)
{
    /* Everything P mounts lives in this namespace only; MS_PRIVATE|MS_REC stops propagation back
     * to the host, and the namespace (and its mounts) vanishes when P exits. */
    if (unshare(CLONE_NEWNS) < 0) sh_fail("mount-ns", errno, "unshare(CLONE_NEWNS)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        sh_fail("mount-ns", errno, "mount / MS_REC|MS_PRIVATE");
}

static void write_map(pid_t pid, const char *file, uint32_t base, uint32_t count)
{
    char path[64], map[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int n = snprintf(map, sizeof map, "0 %u %u\n", base, count);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) sh_fail("idmap", errno, "open %s", path);
    /* The map must arrive in one write; P is privileged in the parent namespace, so neither
     * "deny" in setgroups nor a self-mapping restriction applies. */
    if (write(fd, map, (size_t)n) != n) sh_fail("idmap", errno, "write \"0 %u %u\" to %s", base, count, path);
    close(fd);
}

/* Sliver limits are applied to C by P, which has CAP_SYS_RESOURCE in the initial namespace: inside
 * the user namespace raising a hard limit would fail. I and every sliver process inherit them. */
static void apply_rlimits(const struct sh_config *cfg, pid_t pid)
{
    for (int i = 0; i < cfg->n_rlimits; i++)
        if (prlimit(pid, (__rlimit_resource_t)cfg->rlimits[i].resource, &cfg->rlimits[i].limit, NULL) < 0)
            sh_fail("rlimit", errno, "prlimit(%d, resource %d, %llu:%llu)", (int)pid, cfg->rlimits[i].resource,
                    (unsigned long long)cfg->rlimits[i].limit.rlim_cur,
                    (unsigned long long)cfg->rlimits[i].limit.rlim_max);
}

/* ---------------------------------------------------------------- P: filesystem */

/* Image -> lower/: a detached clone of the image made read-only, nosuid, nodev and idmapped through
 * C's user namespace, so host uid N appears as N inside and as base+N to the overlay. Idmapping is
 * only allowed on a detached mount, hence open_tree(OPEN_TREE_CLONE) + mount_setattr + move_mount. */
static int mount_lower(const struct sh_config *cfg, const struct sliver_dirs *d, int usernsfd)
{
    int tree = sh_open_tree(d->image, "", SH_OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH);
    if (tree < 0) sh_fail("lower", errno, "open_tree %s OPEN_TREE_CLONE", cfg->image);
    struct sh_mount_attr attr = {
        .attr_set = SH_MOUNT_ATTR_IDMAP | SH_MOUNT_ATTR_RDONLY | SH_MOUNT_ATTR_NOSUID | SH_MOUNT_ATTR_NODEV,
        .userns_fd = (uint64_t)usernsfd,
    };
    if (sh_mount_setattr(tree, "", AT_EMPTY_PATH, &attr) < 0)
        sh_fail("lower", errno, "mount_setattr %s MOUNT_ATTR_IDMAP|RDONLY|NOSUID|NODEV", cfg->image);
    if (sh_move_mount(tree, "", d->lower, "", SH_MOVE_MOUNT_F_EMPTY_PATH | SH_MOVE_MOUNT_T_EMPTY_PATH) < 0)
        sh_fail("lower", errno, "move_mount idmapped %s onto %s/lower", cfg->image, cfg->sliver_dir);
    /* The O_PATH tree fd now names the attached mount's root; overlay wants a readable fd. */
    int fd = openat(tree, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) sh_fail("lower", errno, "open %s/lower after mounting", cfg->sliver_dir);
    close(tree);
    return fd;
}

/* Layers are passed as fds (kernel >= 6.13), never as path strings; older kernels get the same fds
 * through /proc/self/fd/N. */
static void overlay_layer(int fs, const char *key, const char *old_key, int fd)
{
    if (sh_fsconfig(fs, SH_FSCONFIG_SET_FD, key, NULL, fd) == 0) return;
    char path[32];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (sh_fsconfig(fs, SH_FSCONFIG_SET_STRING, old_key, path, 0) < 0) {
        char what[64];
        snprintf(what, sizeof what, "fsconfig overlay %s=fd %d", key, fd);
        sh_fs_fail(fs, "overlay", errno, what);
    }
}

static struct go_msg mount_overlay(const struct sh_config *cfg, const struct sliver_dirs *d, int lowerfd)
{
    int fs = sh_fsopen("overlay", SH_FSOPEN_CLOEXEC);
    if (fs < 0) sh_fail("overlay", errno, "fsopen overlay");
    overlay_layer(fs, "lowerdir+", "lowerdir", lowerfd);
    overlay_layer(fs, "upperdir", "upperdir", d->upper);
    overlay_layer(fs, "workdir", "workdir", d->work);
    if (sh_fsconfig(fs, SH_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        sh_fs_fail(fs, "overlay", errno, "fsconfig overlay FSCONFIG_CMD_CREATE");
    /* nodev: no device node in the sliver's tree opens anything; nosuid: with no_new_privs it would
     * not work anyway. */
    int mnt = sh_fsmount(fs, SH_FSMOUNT_CLOEXEC, (unsigned)(SH_MOUNT_ATTR_NODEV | SH_MOUNT_ATTR_NOSUID));
    if (mnt < 0) sh_fs_fail(fs, "overlay", errno, "fsmount overlay nodev,nosuid");
    if (sh_move_mount(mnt, "", d->rootfs, "", SH_MOVE_MOUNT_F_EMPTY_PATH | SH_MOVE_MOUNT_T_EMPTY_PATH) < 0)
        sh_fail("overlay", errno, "move_mount overlay onto %s/rootfs", cfg->sliver_dir);
    struct stat st;
    if (fstat(mnt, &st) < 0) sh_fail("overlay", errno, "fstat overlay root");
    close(mnt);
    close(fs);
    return (struct go_msg){.dev = st.st_dev, .ino = st.st_ino};
}

/* ---------------------------------------------------------------- C */

/* Dies with the host side: SIGKILL when P exits (then I follows the same way). Must be re-armed
 * after every credential change, which clears it; getppid() closes the race with an earlier death. */
static void die_with_parent(pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) sh_fail("child", errno, "PR_SET_PDEATHSIG");
    if (getppid() != parent) _exit(1);
}

static int open_rootfs(const struct sh_config *cfg, const struct go_msg *go)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/rootfs", cfg->sliver_dir) >= (int)sizeof path)
        sh_fail("rootfs", ENAMETOOLONG, "%s/rootfs", cfg->sliver_dir);
    /* Opened after unshare(CLONE_NEWNS), so the fd names the overlay in C's own copy of the mount
     * table (an fd from P's namespace could not be a mount target there), and while still host
     * uid 0, so the 0700 root-owned sliver directory can be traversed. Identity checked against
     * what P mounted. */
    int fd = open(path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) sh_fail("rootfs", errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0) sh_fail("rootfs", errno, "fstat %s", path);
    if (st.st_dev != go->dev || st.st_ino != go->ino) sh_fail("rootfs", EXDEV, "%s is not the overlay root", path);
    return fd;
}

/* The overlay came into C's mount namespace as a copy from a more privileged one, so it is locked
 * (MNT_LOCKED) and pivot_root refuses it. A bind of it onto itself made inside the namespace is
 * not locked; the returned fd names that new top mount. */
static int unlocked_root(const struct sh_config *cfg, int rootfd)
{
    int tree = sh_open_tree(rootfd, "", SH_OPEN_TREE_CLONE | O_CLOEXEC | AT_EMPTY_PATH);
    if (tree < 0) sh_fail("rootfs", errno, "open_tree %s/rootfs OPEN_TREE_CLONE", cfg->sliver_dir);
    if (sh_move_mount(tree, "", rootfd, "", SH_MOVE_MOUNT_F_EMPTY_PATH | SH_MOVE_MOUNT_T_EMPTY_PATH) < 0)
        sh_fail("rootfs", errno, "move_mount bind of %s/rootfs onto itself", cfg->sliver_dir);
    close(rootfd);
    return tree;
}

static void new_namespaces(void)
{
    /* CLONE_NEWPID and CLONE_NEWTIME apply to children only: the fork below makes pid 1. The new
     * cgroup namespace is rooted at the cgroups joined above. */
    int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWCGROUP;
    if (unshare(flags | CLONE_NEWTIME) == 0) return;
    if (errno != EINVAL || unshare(flags) < 0)
        sh_fail("namespaces", errno, "unshare(NEWNS|NEWUTS|NEWIPC|NEWNET|NEWPID|NEWCGROUP[|NEWTIME])");
}

static _Noreturn void child_c(const struct sh_config *cfg, pid_t parent, int statusfd, int gofd)
{
    sh_status_fd = statusfd;
    sh_on_fail = NULL;
    /* P's host directory fds (image, sliver dir) are of no use here: none travels towards I. */
    sh_close_from(3, statusfd, gofd);
    die_with_parent(parent);
    /* Blocks until P has written the id maps and mounted the root; EOF means P failed and reported. */
    struct go_msg go;
    if (read(gofd, &go, sizeof go) != (ssize_t)sizeof go) _exit(1);
    close(gofd);
    new_namespaces();
    int rootfd = unlocked_root(cfg, open_rootfs(cfg, &go));
    /* The maps exist now: become root of the user namespace (host uid/gid = base). Caps in the
     * namespace stay, because the new euid is the namespace's root. */
    sh_set_ids(0, 0);
    die_with_parent(parent);
    if (sethostname(cfg->name, strlen(cfg->name)) < 0) sh_fail("hostname", errno, "sethostname %s", cfg->name);
    int done[2];
    if (pipe2(done, O_CLOEXEC) < 0) sh_fail("child", errno, "pipe2");
    pid_t init = fork();
    if (init < 0) sh_fail("child", errno, "fork init");
    if (init == 0) {
        close(done[0]);
        sh_init(cfg, rootfd, done[1]);
    }
    close(done[1]);
    struct sh_msg m = {.kind = MSG_PID, .pid = init};
    sh_send(&m);
    /* I closes its end once it has reported ready (or dies); C must outlive I's setup because I's
     * parent-death signal is tied to C. */
    char byte;
    while (read(done[0], &byte, 1) < 0 && errno == EINTR) {}
    _exit(waitpid(init, NULL, WNOHANG) == 0 ? 0 : 1);
}

/* ---------------------------------------------------------------- P */

static pid_t clone_userns_child(int *pidfd)
{
    /* A raw clone3 returns in the child like fork (no new stack). The child is born in a new user
     * namespace with full capabilities there and none outside, and has no ids until P maps them. */
    struct sh_clone_args args = {
        .flags = CLONE_NEWUSER | CLONE_PIDFD,
        .pidfd = (uint64_t)(uintptr_t)pidfd,
        .exit_signal = SIGCHLD,
    };
    long r = syscall(__NR_clone3, &args, sizeof args);
    if (r < 0) sh_fail("clone", errno, "clone3(CLONE_NEWUSER|CLONE_PIDFD)");
    return (pid_t)r;
}

/* Reads C's and I's reports: I's host pid (from C) and "ready" (from I), or one error line. */
static pid_t wait_ready(const struct sh_config *cfg, int statusfd)
{
    pid_t init = -1;
    int ready = 0;
    while (init < 0 || !ready) {
        struct pollfd p = {.fd = statusfd, .events = POLLIN};
        int r = poll(&p, 1, SETUP_TIMEOUT_MS);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) sh_fail("init", r < 0 ? errno : ETIMEDOUT, "wait for the sliver's init to report ready");
        struct sh_msg m;
        ssize_t n = read(statusfd, &m, sizeof m);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) sh_fail("init", ECHILD, "the sliver exited before reporting ready");
        if (n != (ssize_t)sizeof m) sh_fail("init", n < 0 ? errno : EPROTO, "read status pipe");
        if (m.kind == MSG_ERROR) {
            m.text[sizeof m.text - 1] = 0;
            if (write(STDERR_FILENO, m.text, strlen(m.text)) < 0) {}
            kill_started();
            _exit(1);
        }
        if (m.kind == MSG_PID) {
            init = m.pid;
            i_pidfd = sh_pidfd_open(init);
            if (i_pidfd < 0) sh_fail("init", errno, "pidfd_open %d", (int)init);
            /* I's network namespace exists now (C unshared it before forking I). */
            if (cfg->veth) sh_setup_network(cfg, init);
        }
        if (m.kind == MSG_READY) ready = 1;
    }
    return init;
}

int sh_create(struct sh_config *cfg)
{
    /* A dead reader must show up as EPIPE (and a reported failure), not as a silent SIGPIPE death.
     * C and I inherit this; the boot program and enter's command get default dispositions back. */
    signal(SIGPIPE, SIG_IGN);
    sh_read_seccomp(cfg);
    /* Host root's supplementary groups would follow into the sliver and grant host file access. */
    if (syscall(SYS_setgroups, 0, NULL) < 0) sh_fail("ids", errno, "setgroups(0, NULL)");
    sh_join_cgroups(cfg);
    private_mount_ns();
    /* Opened after the unshare: an fd names a mount of the namespace it was opened in, and
     * open_tree/move_mount only act on mounts of the caller's own namespace. */
    struct sliver_dirs d;
    open_inputs(cfg, &d);

    int status[2], go[2];
    if (pipe2(status, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) sh_fail("pipe", errno, "pipe2(O_CLOEXEC)");
    pid_t parent = getpid();
    c_pid = clone_userns_child(&c_pidfd);
    if (c_pid == 0) child_c(cfg, parent, status[1], go[0]);
    sh_on_fail = kill_started;
    close(status[1]);
    close(go[0]);

    write_map(c_pid, "uid_map", cfg->id_base, cfg->id_count);
    write_map(c_pid, "gid_map", cfg->id_base, cfg->id_count);
    apply_rlimits(cfg, c_pid);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)c_pid);
    int usernsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (usernsfd < 0) sh_fail("lower", errno, "open %s", path);
    int lowerfd = mount_lower(cfg, &d, usernsfd);
    struct go_msg msg = mount_overlay(cfg, &d, lowerfd);
    close(usernsfd);
    close(lowerfd);
    /* Release C. */
    sh_write_all(go[1], &msg, sizeof msg, "child", "release message to the user-namespace child");
    close(go[1]);

    pid_t init = wait_ready(cfg, status[0]);
    /* A caller that cannot learn the pid could never stop the sliver: then it is killed. */
    if (printf("init_pid=%d\n", (int)init) < 0 || fflush(stdout) != 0)
        sh_fail("report", errno, "write init_pid=%d to stdout", (int)init);
    while (waitpid(c_pid, NULL, 0) < 0 && errno == EINTR) {}
    return 0;
}
