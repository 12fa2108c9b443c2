/*
 * sliver-helper: the single-threaded C helper between sliverd and a sliver.
 * Interface and sequence: docs/helper-interface.md.
 *
 * Everything here is raw syscalls: no threads, no libcap, no libseccomp. Structures and constants of
 * the newer kernel interfaces are defined locally (prefixed sh_/SH_) so the build does not depend on
 * the glibc or kernel-header version (glibc 2.36 lacks some wrappers, and <sys/mount.h> and
 * <linux/mount.h> conflict there).
 */
#ifndef SLIVER_HELPER_COMMON_H
#define SLIVER_HELPER_COMMON_H

/* Every .c file includes this header first: SwiftPM does not define _GNU_SOURCE for C targets, and
 * unshare, setns, pipe2, prlimit and friends need it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/filter.h>

/* ---- syscall numbers (identical on every architecture but alpha for these) ---- */
#ifndef __NR_pidfd_send_signal
#define __NR_pidfd_send_signal 424
#endif
#ifndef __NR_open_tree
#define __NR_open_tree 428
#endif
#ifndef __NR_move_mount
#define __NR_move_mount 429
#endif
#ifndef __NR_fsopen
#define __NR_fsopen 430
#endif
#ifndef __NR_fsconfig
#define __NR_fsconfig 431
#endif
#ifndef __NR_fsmount
#define __NR_fsmount 432
#endif
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_close_range
#define __NR_close_range 436
#endif
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef __NR_mount_setattr
#define __NR_mount_setattr 442
#endif

/* ---- new mount API ---- */
#define SH_OPEN_TREE_CLONE 1u
#define SH_MOVE_MOUNT_F_EMPTY_PATH 0x04u
#define SH_MOVE_MOUNT_T_EMPTY_PATH 0x40u
#define SH_FSOPEN_CLOEXEC 1u
#define SH_FSMOUNT_CLOEXEC 1u
#define SH_FSCONFIG_SET_FLAG 0u
#define SH_FSCONFIG_SET_STRING 1u
#define SH_FSCONFIG_SET_FD 5u
#define SH_FSCONFIG_CMD_CREATE 6u
#define SH_MOUNT_ATTR_RDONLY 0x01ull
#define SH_MOUNT_ATTR_NOSUID 0x02ull
#define SH_MOUNT_ATTR_NODEV 0x04ull
#define SH_MOUNT_ATTR_NOEXEC 0x08ull
#define SH_MOUNT_ATTR_IDMAP 0x00100000ull
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct sh_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* ---- openat2 ---- */
struct sh_open_how {
    uint64_t flags, mode, resolve;
};
#define SH_RESOLVE_NO_XDEV 0x01ull
#define SH_RESOLVE_NO_MAGICLINKS 0x02ull
#define SH_RESOLVE_NO_SYMLINKS 0x04ull
#define SH_RESOLVE_BENEATH 0x08ull
#define SH_RESOLVE_IN_ROOT 0x10ull

/* ---- clone3 ---- */
struct sh_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        set_tid_size, cgroup;
};
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* ---- configuration, built by argument parsing; inherited by every child through fork ---- */
#define SH_MAX_LIST 32

struct sh_rlimit {
    int resource;
    struct rlimit limit;
};

struct sh_config {
    const char *name, *image, *sliver_dir, *boot, *cwd;
    uint32_t id_base, id_count, uid, gid;
    pid_t pid;
    const char *cgroups[SH_MAX_LIST];
    int n_cgroups;
    struct sh_rlimit rlimits[SH_MAX_LIST];
    int n_rlimits;
    const char *env[SH_MAX_LIST + 4];
    int n_env;
    uint64_t caps;
    int cap_last; /* /proc/sys/kernel/cap_last_cap, read on the host side */
    const char *seccomp_path;
    struct sock_filter *bpf; /* loaded by the host-side parent, before any namespace exists */
    unsigned short bpf_len;
    char **argv; /* enter: the command */
    int pty;     /* enter --pty: a fresh terminal from the sliver's own devpts */
    /* create --veth NAME: a veth pair, host end NAME, peer eth0 in the sliver, with these addresses
     * ("A/LEN"; the host end's address is the sliver's gateway). */
    const char *veth, *sliver_ipv4, *host_ipv4, *sliver_ipv6, *host_ipv6;
    const char *broker_dir; /* create --broker-dir: bound read-only onto /run/sliverd */
    const char *raw_proto;  /* rawsock --proto */
    int raw_ports[SH_MAX_LIST]; /* rawsock --port (repeatable): the sliver's reserved ports */
    int n_raw_ports;
    const char *user; /* enter --user: run as this user of the sliver (created if missing) */
    int login;   /* enter --login: the user's login shell instead of a command */
};

/* ---- status messages from the sliver side (C and I) to the host-side parent; < PIPE_BUF so atomic ---- */
enum { MSG_PID = 'P', MSG_READY = 'R', MSG_ERROR = 'E' };
struct sh_msg {
    char kind;
    int pid;
    char text[500];
};

/* The helper's own argument area (main's argv strings, contiguous), which init overwrites so that
 * the sliver's `ps` shows "sliver-init NAME" instead of host paths. */
extern char *sh_args_start;
extern size_t sh_args_len;

/* ---- errors (common.c) ---- */
/* Where a failure goes: stderr (host side, enter child) or the status pipe (sliver side of create). */
extern int sh_status_fd;
/* Host side of create: run before exiting on failure (kills what was started). */
extern void (*sh_on_fail)(void);
_Noreturn void sh_fail(const char *stage, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
_Noreturn void sh_fail_code(int code, const char *stage, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
_Noreturn void sh_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sh_send(const struct sh_msg *m);
_Noreturn void sh_fs_fail(int fsfd, const char *stage, int err, const char *what);

/* ---- raw syscall wrappers (common.c) ---- */
int sh_open_tree(int dfd, const char *path, unsigned flags);
int sh_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags);
int sh_mount_setattr(int dfd, const char *path, unsigned flags, struct sh_mount_attr *attr);
int sh_fsopen(const char *fs, unsigned flags);
int sh_fsconfig(int fd, unsigned cmd, const char *key, const void *value, int aux);
int sh_fsmount(int fd, unsigned flags, unsigned attrs);
int sh_openat2(int dfd, const char *path, uint64_t flags, uint64_t resolve);
int sh_pidfd_open(pid_t pid);
int sh_pidfd_kill(int pidfd, int sig);
void sh_close_from(int lowfd, int keep_a, int keep_b);
int sh_set_ids(uid_t uid, gid_t gid);

/* ---- process setup shared by create and enter (common.c) ---- */
void sh_reset_signals(void);
void sh_drop_bounding(uint64_t keep, int last);
void sh_set_caps(uint64_t keep);
void sh_load_seccomp(const struct sh_config *cfg);
void sh_read_seccomp(struct sh_config *cfg);
void sh_join_cgroups(const struct sh_config *cfg);
int sh_cap_last(void);
void sh_write_all(int fd, const void *buf, size_t len, const char *stage, const char *what);

/* ---- argument parsing (args.c) ---- */
void sh_parse_create(struct sh_config *cfg, int argc, char **argv);
void sh_parse_enter(struct sh_config *cfg, int argc, char **argv);

/* ---- the three programs ---- */
int sh_create(struct sh_config *cfg);                      /* create.c: host side + child C */
_Noreturn void sh_init(const struct sh_config *cfg, int rootfd, int donefd); /* init.c: pid 1 */
int sh_enter(struct sh_config *cfg);                       /* enter.c */
void sh_setup_network(const struct sh_config *cfg, pid_t init); /* net.c: host side of create */
int sh_rawsock(struct sh_config *cfg);                     /* rawsock.c */
void sh_parse_rawsock(struct sh_config *cfg, int argc, char **argv);

#endif
