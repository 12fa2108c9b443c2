/*
 * enter: run a command inside a running sliver.
 *
 * Host side: limits, cgroups, then setns(pidfd, every namespace) in one call (the kernel orders the
 * user namespace correctly and it is atomic), then fork into the pid namespace. The child drops to
 * the sliver's restrictions and execs; the parent forwards signals and returns the child's status.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <termios.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif
#define DEVPTS_MAGIC 0x1cd1

static volatile pid_t child_pid;
static volatile sig_atomic_t winch_pending;

static void forward_signal(int sig)
{
    if (child_pid > 0) kill(child_pid, sig);
}

static void on_winch(int sig)
{
    (void)sig;
    winch_pending = 1;
}

/* The pty master, from the sliver's own devpts instance (mounted newinstance by its init). Opened
 * after setns(mnt), so the path resolves in the sliver; /dev/pts is a mount point the sliver
 * cannot move or replace, and the fd is checked to be devpts' ptmx before it is trusted. */
static int open_pty_master(void)
{
    int fd = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) sh_fail("pty", errno, "open /dev/pts/ptmx in the sliver");
    struct stat st;
    struct statfs sfs;
    if (fstat(fd, &st) < 0 || fstatfs(fd, &sfs) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(5, 2) ||
        sfs.f_type != DEVPTS_MAGIC)
        sh_fail("pty", ENOTTY, "/dev/pts/ptmx of the sliver is not devpts' ptmx");
    int unlock = 0;
    if (ioctl(fd, TIOCSPTLCK, &unlock) < 0) sh_fail("pty", errno, "unlock pty");
    return fd;
}

/* The caller's terminal size (fd 0, when it is a terminal) onto the sliver's pty. */
static void copy_window_size(int master)
{
    struct winsize ws;
    if (ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(master, TIOCSWINSZ, &ws);
}

/* Copies the caller's input to the pty and the pty's output to the caller until the terminal's
 * last user is gone (read on the master fails with EIO) or the command has exited. */
static void relay(int master, pid_t pid)
{
    char buf[16384];
    int input_open = 1;
    copy_window_size(master);
    for (;;) {
        if (winch_pending) {
            winch_pending = 0;
            copy_window_size(master);
        }
        struct pollfd fds[2] = {{.fd = master, .events = POLLIN}, {.fd = input_open ? 0 : -1, .events = POLLIN}};
        int n = poll(fds, 2, 200);
        if (n < 0 && errno != EINTR) break;
        if (n <= 0) {
            /* Idle: stop once the command is gone and nothing is left to read. */
            siginfo_t info = {0};
            /* WNOWAIT: only look; the status is collected by sh_enter's waitpid. */
            if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
                int pending = 0;
                if (ioctl(master, FIONREAD, &pending) < 0 || pending == 0) break;
            }
            continue;
        }
        if (fds[0].revents) {
            ssize_t r = read(master, buf, sizeof buf);
            if (r <= 0) break; /* EIO: no process holds the terminal any more */
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(1, buf + off, (size_t)(r - off));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) return;
                off += w;
            }
        }
        if (fds[1].revents) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                input_open = 0;
                continue;
            }
            for (ssize_t off = 0; off < r;) {
                ssize_t w = write(master, buf + off, (size_t)(r - off));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) break;
                off += w;
            }
        }
    }
}

/* Defaults (PATH, HOME=/root, the caller's TERM), each overridden or extended by --env K=V. */
static char **build_env(const struct sh_config *cfg)
{
    static char *env[SH_MAX_LIST + 8]; /* + defaults + USER, LOGNAME, SHELL for --user */
    static char term[256];
    int n = 0;
    env[n++] = "PATH=" DEFAULT_PATH;
    env[n++] = "HOME=/root";
    const char *t = getenv("TERM");
    if (t && snprintf(term, sizeof term, "TERM=%s", t) < (int)sizeof term) env[n++] = term;
    for (int i = 0; i < cfg->n_env; i++) {
        size_t klen = (size_t)(strchr(cfg->env[i], '=') - cfg->env[i]) + 1;
        int j = 0;
        while (j < n && strncmp(env[j], cfg->env[i], klen) != 0) j++;
        env[j] = (char *)cfg->env[i];
        if (j == n) n++;
    }
    env[n] = NULL;
    return env;
}

/* ---- the slice user inside the sliver ---- */

struct sh_user {
    uid_t uid;
    gid_t gid;
    char home[512], shell[512];
};

/* Finds NAME in the sliver's /etc/passwd. Runs as the sliver's root, inside its mount namespace,
 * so whatever the tenant put in these files can only mislead the tenant's own session. */
static int find_user(const char *name, struct sh_user *u, uid_t *max_uid)
{
    FILE *f = fopen("/etc/passwd", "re");
    if (!f) return -1;
    char line[2048];
    int found = -1;
    size_t nlen = strlen(name);
    *max_uid = 999;
    while (fgets(line, sizeof line, f)) {
        char *fields[7];
        int n = 0;
        for (char *p = line, *tok; n < 7 && (tok = strsep(&p, ":\n")); ) fields[n++] = tok;
        if (n < 7) continue;
        uid_t uid = (uid_t)strtoul(fields[2], NULL, 10);
        if (uid >= 1000 && uid < 60000 && uid > *max_uid) *max_uid = uid;
        if (found == 0 || strlen(fields[0]) != nlen || strcmp(fields[0], name) != 0) continue;
        u->uid = uid;
        u->gid = (gid_t)strtoul(fields[3], NULL, 10);
        snprintf(u->home, sizeof u->home, "%s", fields[5][0] ? fields[5] : "/");
        snprintf(u->shell, sizeof u->shell, "%s", fields[6][0] ? fields[6] : "/bin/sh");
        found = 0;
    }
    fclose(f);
    return found;
}

static void append_line(const char *path, const char *line, int required)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (!required && errno == ENOENT) return;
        sh_fail("user", errno, "open %s in the sliver", path);
    }
    sh_write_all(fd, line, strlen(line), "user", path);
    close(fd);
}

/* The slice's user in the sliver: looked up, or created on first use (uid/gid 1000 or the next
 * free one, home /home/NAME, shell /bin/sh), so any image works without preparation. */
static void resolve_user(const char *name, struct sh_user *u)
{
    uid_t max_uid = 999;
    if (find_user(name, u, &max_uid) == 0) return;
    u->uid = max_uid + 1;
    u->gid = u->uid;
    snprintf(u->home, sizeof u->home, "/home/%s", name);
    snprintf(u->shell, sizeof u->shell, "/bin/sh");
    char line[2048];
    snprintf(line, sizeof line, "%s:x:%u:%u:slice %s:%s:%s\n", name, u->uid, u->gid, name, u->home, u->shell);
    append_line("/etc/passwd", line, 1);
    snprintf(line, sizeof line, "%s:x:%u:\n", name, u->gid);
    append_line("/etc/group", line, 1);
    snprintf(line, sizeof line, "%s:*:19000:0:99999:7:::\n", name);
    append_line("/etc/shadow", line, 0);
    if (mkdir("/home", 0755) < 0 && errno != EEXIST) sh_fail("user", errno, "mkdir /home in the sliver");
    if (mkdir(u->home, 0700) < 0 && errno != EEXIST) sh_fail("user", errno, "mkdir %s in the sliver", u->home);
    if (lchown(u->home, u->uid, u->gid) < 0) sh_fail("user", errno, "chown %s", u->home);
}

/* execve, searching the new environment's PATH for a bare command name. */
static _Noreturn void exec_command(char **argv, char **envp)
{
    if (strchr(argv[0], '/')) {
        execve(argv[0], argv, envp);
        sh_fail_code(127, "exec", errno, "execve %s", argv[0]);
    }
    const char *path = DEFAULT_PATH;
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    int err = ENOENT;
    char file[4096];
    for (const char *p = path; *p;) {
        size_t len = strcspn(p, ":");
        if (len > 0 && snprintf(file, sizeof file, "%.*s/%s", (int)len, p, argv[0]) < (int)sizeof file) {
            execve(file, argv, envp);
            if (errno != ENOENT && errno != ENOTDIR) err = errno;
        }
        p += len;
        if (*p == ':') p++;
    }
    sh_fail_code(127, "exec", err, "execve %s (searched PATH=%s)", argv[0], path);
}

static _Noreturn void run_command(const struct sh_config *cfg, char **envp, int master)
{
    sh_reset_signals();
    /* A new session: no controlling terminal, so TIOCSTI into the caller's tty is impossible
     * (CVE-2017-5226) and job-control signals of the caller's terminal do not reach the sliver. */
    if (setsid() < 0) sh_fail("setsid", errno, "setsid");
    if (master >= 0) {
        /* The pty's other end straight from the master (no path lookup in the sliver), made the
         * session's controlling terminal; the caller's descriptors are replaced on 0-2, so the
         * command never holds the caller's terminal. */
        int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
        if (slave < 0) sh_fail("pty", errno, "TIOCGPTPEER");
        if (ioctl(slave, TIOCSCTTY, 0) < 0) sh_fail("pty", errno, "TIOCSCTTY");
        for (int fd = 0; fd < 3; fd++)
            if (dup2(slave, fd) < 0) sh_fail("pty", errno, "dup2 pty to %d", fd);
        if (slave > 2) close(slave);
        close(master);
    }
    /* Bounding set first (needs CAP_SETPCAP, gone once the uid is not 0), then the ids, then what
     * remains of the capabilities (a non-root uid keeps none across execve, ambient is empty). */
    sh_drop_bounding(cfg->caps, cfg->cap_last);
    uid_t uid = cfg->uid;
    gid_t gid = cfg->gid;
    const char *cwd = cfg->cwd;
    char **argv = cfg->argv;
    static char *login_argv[2];
    static char login_shell[512];
    static char argv0[520], env_home[530], env_user[300], env_logname[300], env_shell[530];
    if (cfg->user) {
        /* As the sliver's root (never as host root: files made now belong to the sliver's range). */
        sh_set_ids(0, 0);
        struct sh_user u;
        resolve_user(cfg->user, &u);
        uid = u.uid;
        gid = u.gid;
        cwd = u.home;
        snprintf(env_home, sizeof env_home, "HOME=%s", u.home);
        snprintf(env_user, sizeof env_user, "USER=%s", cfg->user);
        snprintf(env_logname, sizeof env_logname, "LOGNAME=%s", cfg->user);
        snprintf(env_shell, sizeof env_shell, "SHELL=%s", u.shell);
        for (char **e = envp; *e; e++)
            if (strncmp(*e, "HOME=", 5) == 0) *e = env_home;
        int n = 0;
        while (envp[n]) n++;
        envp[n++] = env_user;
        envp[n++] = env_logname;
        envp[n++] = env_shell;
        envp[n] = NULL;
        if (cfg->login) {
            /* A login shell: argv[0] is "-" + the shell's name, as login(1) and sshd do. */
            const char *base = strrchr(u.shell, '/');
            snprintf(argv0, sizeof argv0, "-%s", base ? base + 1 : u.shell);
            snprintf(login_shell, sizeof login_shell, "%s", u.shell);
            login_argv[0] = argv0;
            login_argv[1] = NULL;
            argv = login_argv;
        }
    }
    sh_set_ids(uid, gid);
    sh_set_caps(cfg->caps);
    /* The credential change reset dumpability to fs.suid_dumpable; keep the process out of reach
     * of sliver processes (ptrace, /proc/PID/fd) until execve (CVE-2016-9962). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) sh_fail("dumpable", errno, "PR_SET_DUMPABLE 0");
    /* The command dies with the helper (armed after the id change, which clears it). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) sh_fail("pdeathsig", errno, "PR_SET_PDEATHSIG");
    sh_close_from(3, -1, -1);
    /* Relative to the sliver's root, which setns(CLONE_NEWNS) made this process's root and cwd. */
    if (chdir(cwd) < 0) sh_fail("cwd", errno, "chdir %s", cwd);
    char here[4096];
    errno = 0;
    if (!getcwd(here, sizeof here) || here[0] != '/') sh_fail("cwd", errno ? errno : EXDEV, "verify cwd %s", cwd);
    /* no_new_privs + seccomp last: after it only execve runs. */
    sh_load_seccomp(cfg);
    if (argv == login_argv) {
        execve(login_shell, argv, envp);
        sh_fail_code(127, "exec", errno, "execve login shell %s", login_shell);
    }
    exec_command(argv, envp);
}

static int join_namespaces(const struct sh_config *cfg)
{
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC |
                CLONE_NEWCGROUP;
    if (access("/proc/self/ns/time", F_OK) == 0) flags |= CLONE_NEWTIME;
    /* A pidfd, not the /proc/PID/ns files: no window for the pid to be reused between lookups. */
    int pidfd = sh_pidfd_open(cfg->pid);
    if (pidfd < 0) sh_fail("setns", errno, "pidfd_open %d", (int)cfg->pid);
    /* One call joins all of them atomically; the user namespace must differ from ours, so a host
     * process given by mistake is refused (EINVAL). No other fd is open at this point. */
    if (setns(pidfd, flags) < 0) sh_fail("setns", errno, "setns(pidfd of %d, user|mnt|pid|net|uts|ipc|cgroup%s)",
                                         (int)cfg->pid, flags & CLONE_NEWTIME ? "|time" : "");
    close(pidfd);
    return 0;
}

int sh_enter(struct sh_config *cfg)
{
    sh_read_seccomp(cfg);
    /* Limits are set here, as host root: inside the user namespace raising a hard limit would need
     * CAP_SYS_RESOURCE in the initial namespace. The child inherits them. */
    for (int i = 0; i < cfg->n_rlimits; i++)
        if (setrlimit((__rlimit_resource_t)cfg->rlimits[i].resource, &cfg->rlimits[i].limit) < 0)
            sh_fail("rlimit", errno, "setrlimit(resource %d, %llu:%llu)", cfg->rlimits[i].resource,
                    (unsigned long long)cfg->rlimits[i].limit.rlim_cur,
                    (unsigned long long)cfg->rlimits[i].limit.rlim_max);
    sh_join_cgroups(cfg);
    join_namespaces(cfg);
    char **envp = build_env(cfg);
    int master = cfg->pty ? open_pty_master() : -1;
    if (master >= 0) {
        /* This process relays the terminal and holds the caller's descriptors: keep it out of
         * reach (it is in the host's pid namespace, invisible to the sliver, and non-dumpable). */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) sh_fail("dumpable", errno, "PR_SET_DUMPABLE 0");
        struct sigaction wa = {.sa_handler = on_winch};
        sigemptyset(&wa.sa_mask);
        sigaction(SIGWINCH, &wa, NULL);
    }

    /* Forwarded signals are blocked across fork so none arrives before child_pid is known. */
    sigset_t fwd, old;
    sigemptyset(&fwd);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    struct sigaction sa = {.sa_handler = forward_signal};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        sigaddset(&fwd, sigs[i]);
        sigaction(sigs[i], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &fwd, &old);
    pid_t pid = fork(); /* the child is born in the sliver's pid namespace */
    if (pid < 0) sh_fail("fork", errno, "fork into the pid namespace of %d", (int)cfg->pid);
    if (pid == 0) run_command(cfg, envp, master);
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (master >= 0) {
        relay(master, pid);
        close(master);
    }

    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) sh_fail("wait", errno, "waitpid %d", (int)pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
