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
#include <sys/prctl.h>
#include <sys/wait.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static volatile pid_t child_pid;

static void forward_signal(int sig)
{
    if (child_pid > 0) kill(child_pid, sig);
}

/* Defaults (PATH, HOME=/root, the caller's TERM), each overridden or extended by --env K=V. */
static char **build_env(const struct sh_config *cfg)
{
    static char *env[SH_MAX_LIST + 4];
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

static _Noreturn void run_command(const struct sh_config *cfg, char **envp)
{
    sh_reset_signals();
    /* A new session: no controlling terminal, so TIOCSTI into the caller's tty is impossible
     * (CVE-2017-5226) and job-control signals of the caller's terminal do not reach the sliver. */
    if (setsid() < 0) sh_fail("setsid", errno, "setsid");
    /* Bounding set first (needs CAP_SETPCAP, gone once the uid is not 0), then the ids, then what
     * remains of the capabilities (a non-root uid keeps none across execve, ambient is empty). */
    sh_drop_bounding(cfg->caps, cfg->cap_last);
    sh_set_ids(cfg->uid, cfg->gid);
    sh_set_caps(cfg->caps);
    /* The credential change reset dumpability to fs.suid_dumpable; keep the process out of reach
     * of sliver processes (ptrace, /proc/PID/fd) until execve (CVE-2016-9962). */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) sh_fail("dumpable", errno, "PR_SET_DUMPABLE 0");
    /* The command dies with the helper (armed after the id change, which clears it). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) sh_fail("pdeathsig", errno, "PR_SET_PDEATHSIG");
    sh_close_from(3, -1, -1);
    /* Relative to the sliver's root, which setns(CLONE_NEWNS) made this process's root and cwd. */
    if (chdir(cfg->cwd) < 0) sh_fail("cwd", errno, "chdir %s", cfg->cwd);
    char cwd[4096];
    errno = 0;
    if (!getcwd(cwd, sizeof cwd) || cwd[0] != '/') sh_fail("cwd", errno ? errno : EXDEV, "verify cwd %s", cfg->cwd);
    /* no_new_privs + seccomp last: after it only execve runs. */
    sh_load_seccomp(cfg);
    exec_command(cfg->argv, envp);
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
    if (pid == 0) run_command(cfg, envp);
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);

    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) sh_fail("wait", errno, "waitpid %d", (int)pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
