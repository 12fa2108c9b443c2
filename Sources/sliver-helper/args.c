/* Command-line parsing. Every malformed argument is a usage error (exit 2) before anything happens. */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int resource;
} rlimit_names[] = {
    {"cpu", RLIMIT_CPU},         {"fsize", RLIMIT_FSIZE},       {"data", RLIMIT_DATA},
    {"stack", RLIMIT_STACK},     {"core", RLIMIT_CORE},         {"rss", RLIMIT_RSS},
    {"nproc", RLIMIT_NPROC},     {"nofile", RLIMIT_NOFILE},     {"memlock", RLIMIT_MEMLOCK},
    {"as", RLIMIT_AS},           {"locks", RLIMIT_LOCKS},       {"sigpending", RLIMIT_SIGPENDING},
    {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},       {"rtprio", RLIMIT_RTPRIO},
};

static uint64_t parse_u64(const char *opt, const char *s, int base, uint64_t max)
{
    char *end;
    if (!*s || !isxdigit((unsigned char)*s)) sh_usage("%s: \"%s\" is not a number", opt, s);
    errno = 0;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end || v > max) sh_usage("%s: \"%s\" is not a number in 0..%llu", opt, s, (unsigned long long)max);
    return v;
}

static uint32_t parse_u32(const char *opt, const char *s)
{
    if (!isdigit((unsigned char)*s)) sh_usage("%s: \"%s\" is not a decimal number", opt, s);
    return (uint32_t)parse_u64(opt, s, 10, UINT32_MAX - 1); /* (uid_t)-1 means "unchanged" to the kernel */
}

/* A mask with a bit the running kernel does not know is refused rather than silently cut. */
static uint64_t parse_caps(const char *s, int last)
{
    const char *hex = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? s + 2 : s;
    if (strlen(hex) > 16) sh_usage("--caps: \"%s\" is longer than 64 bits", s);
    uint64_t mask = parse_u64("--caps", hex, 16, UINT64_MAX);
    if (last < 63 && (mask >> (last + 1)) != 0)
        sh_usage("--caps: 0x%llx has bits above CAP_LAST_CAP (%d)", (unsigned long long)mask, last);
    return mask;
}

static rlim_t parse_rlim(const char *s)
{
    if (strcmp(s, "unlimited") == 0) return RLIM_INFINITY;
    if (!isdigit((unsigned char)*s)) sh_usage("--rlimit: \"%s\" is neither a number nor unlimited", s);
    return (rlim_t)parse_u64("--rlimit", s, 10, RLIM_INFINITY - 1);
}

static void parse_rlimit(struct sh_config *cfg, const char *arg)
{
    char res[32];
    const char *eq = strchr(arg, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (!eq || !colon || (size_t)(eq - arg) >= sizeof res) sh_usage("--rlimit: \"%s\" is not RES=SOFT:HARD", arg);
    memcpy(res, arg, (size_t)(eq - arg));
    res[eq - arg] = 0;
    char soft[32];
    if ((size_t)(colon - eq - 1) >= sizeof soft) sh_usage("--rlimit: \"%s\": soft limit too long", arg);
    memcpy(soft, eq + 1, (size_t)(colon - eq - 1));
    soft[colon - eq - 1] = 0;
    if (cfg->n_rlimits >= SH_MAX_LIST) sh_usage("--rlimit: more than %d limits", SH_MAX_LIST);
    struct sh_rlimit *r = &cfg->rlimits[cfg->n_rlimits];
    r->resource = -1;
    for (size_t i = 0; i < sizeof rlimit_names / sizeof rlimit_names[0]; i++)
        if (strcmp(res, rlimit_names[i].name) == 0) r->resource = rlimit_names[i].resource;
    if (r->resource < 0) sh_usage("--rlimit: unknown resource \"%s\"", res);
    r->limit.rlim_cur = parse_rlim(soft);
    r->limit.rlim_max = parse_rlim(colon + 1);
    if (r->limit.rlim_cur > r->limit.rlim_max) sh_usage("--rlimit: \"%s\": soft limit above hard limit", arg);
    cfg->n_rlimits++;
}

/* Used as hostname (at most 64 bytes) and file content: a conservative character set. */
static void check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-') sh_usage("--name: \"%s\" is not a valid sliver name", name);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && !strchr("_.-", name[i]))
            sh_usage("--name: \"%s\" has a character outside [A-Za-z0-9_.-]", name);
}

static const char *absolute(const char *opt, const char *path)
{
    if (path[0] != '/') sh_usage("%s: \"%s\" is not an absolute path", opt, path);
    return path;
}

static void set_once(const char **slot, const char *opt, const char *v)
{
    if (*slot) sh_usage("%s given twice", opt);
    *slot = v;
}

/* Options shared by create and enter; returns 0 if `opt` is not one of them. */
static int common_option(struct sh_config *cfg, const char *opt, const char *v, const char **caps)
{
    if (strcmp(opt, "--cgroup") == 0) {
        if (cfg->n_cgroups >= SH_MAX_LIST) sh_usage("--cgroup: more than %d cgroups", SH_MAX_LIST);
        cfg->cgroups[cfg->n_cgroups++] = absolute(opt, v);
    } else if (strcmp(opt, "--seccomp") == 0) {
        set_once(&cfg->seccomp_path, opt, v);
    } else if (strcmp(opt, "--caps") == 0) {
        set_once(caps, opt, v);
    } else if (strcmp(opt, "--rlimit") == 0) {
        parse_rlimit(cfg, v);
    } else {
        return 0;
    }
    return 1;
}

static void finish_common(struct sh_config *cfg, const char *caps)
{
    if (!cfg->seccomp_path) sh_usage("--seccomp is required");
    if (!caps) sh_usage("--caps is required");
    cfg->cap_last = sh_cap_last();
    cfg->caps = parse_caps(caps, cfg->cap_last);
}

void sh_parse_create(struct sh_config *cfg, int argc, char **argv)
{
    const char *caps = NULL, *base = NULL, *count = NULL;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) sh_usage("%s needs a value", opt);
        const char *v = argv[++i];
        if (common_option(cfg, opt, v, &caps)) continue;
        if (strcmp(opt, "--name") == 0) set_once(&cfg->name, opt, v);
        else if (strcmp(opt, "--id-base") == 0) set_once(&base, opt, v);
        else if (strcmp(opt, "--id-count") == 0) set_once(&count, opt, v);
        else if (strcmp(opt, "--image") == 0) set_once(&cfg->image, opt, absolute(opt, v));
        else if (strcmp(opt, "--sliver-dir") == 0) set_once(&cfg->sliver_dir, opt, absolute(opt, v));
        else if (strcmp(opt, "--boot") == 0) set_once(&cfg->boot, opt, absolute(opt, v));
        else if (strcmp(opt, "--veth") == 0) {
            /* An interface name: 1-15 bytes, no '/', ':' or whitespace (dev_valid_name). */
            size_t len = strlen(v);
            if (len == 0 || len >= 16 || strpbrk(v, "/: \t\n") || strcmp(v, ".") == 0 || strcmp(v, "..") == 0)
                sh_usage("--veth: \"%s\" is not a valid interface name", v);
            set_once(&cfg->veth, opt, v);
        }
        else if (strcmp(opt, "--broker-dir") == 0) set_once(&cfg->broker_dir, opt, absolute(opt, v));
        else if (strcmp(opt, "--sliver-ipv4") == 0) set_once(&cfg->sliver_ipv4, opt, v);
        else if (strcmp(opt, "--host-ipv4") == 0) set_once(&cfg->host_ipv4, opt, v);
        else if (strcmp(opt, "--sliver-ipv6") == 0) set_once(&cfg->sliver_ipv6, opt, v);
        else if (strcmp(opt, "--host-ipv6") == 0) set_once(&cfg->host_ipv6, opt, v);
        else sh_usage("unknown option %s for create", opt);
    }
    if (!cfg->name || !base || !count || !cfg->image || !cfg->sliver_dir)
        sh_usage("create needs --name, --id-base, --id-count, --image and --sliver-dir");
    check_name(cfg->name);
    if (!cfg->veth && (cfg->sliver_ipv4 || cfg->host_ipv4 || cfg->sliver_ipv6 || cfg->host_ipv6))
        sh_usage("addresses need --veth");
    cfg->id_base = parse_u32("--id-base", base);
    cfg->id_count = parse_u32("--id-count", count);
    /* Host root must never be inside a sliver's range, and the range must fit in 32 bits. */
    if (cfg->id_base == 0 || cfg->id_count == 0 || (uint64_t)cfg->id_base + cfg->id_count - 1 >= UINT32_MAX)
        sh_usage("--id-base %u --id-count %u is not a valid range above 0", cfg->id_base, cfg->id_count);
    finish_common(cfg, caps);
}

void sh_parse_enter(struct sh_config *cfg, int argc, char **argv)
{
    const char *caps = NULL, *pid = NULL, *uid = NULL, *gid = NULL;
    int i;
    for (i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--pty") == 0 || strcmp(opt, "--login") == 0) {
            if (opt[2] == 'p') cfg->pty = 1; else cfg->login = 1;
            continue;
        }
        if (i + 1 >= argc) sh_usage("%s needs a value", opt);
        const char *v = argv[++i];
        if (common_option(cfg, opt, v, &caps)) continue;
        if (strcmp(opt, "--pid") == 0) set_once(&pid, opt, v);
        else if (strcmp(opt, "--uid") == 0) set_once(&uid, opt, v);
        else if (strcmp(opt, "--gid") == 0) set_once(&gid, opt, v);
        else if (strcmp(opt, "--user") == 0) {
            check_name(v);
            set_once(&cfg->user, opt, v);
        }
        else if (strcmp(opt, "--cwd") == 0) set_once(&cfg->cwd, opt, absolute(opt, v));
        else if (strcmp(opt, "--env") == 0) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v) sh_usage("--env: \"%s\" is not K=V", v);
            if (cfg->n_env >= SH_MAX_LIST) sh_usage("--env: more than %d variables", SH_MAX_LIST);
            cfg->env[cfg->n_env++] = v;
        } else sh_usage("unknown option %s for enter", opt);
    }
    if (cfg->login) {
        if (!cfg->user) sh_usage("--login needs --user");
        if (i < argc - 1) sh_usage("--login takes no command");
        cfg->argv = NULL;
    } else {
        if (i >= argc - 1) sh_usage("enter needs -- CMD [ARGS...] (or --user NAME --login)");
        cfg->argv = argv + i + 1;
    }
    if (!pid) sh_usage("enter needs --pid");
    uint32_t p = parse_u32("--pid", pid);
    if (p == 0 || p > 0x3fffffff) sh_usage("--pid: %s is not a process id", pid);
    cfg->pid = (pid_t)p;
    cfg->uid = uid ? parse_u32("--uid", uid) : 0;
    cfg->gid = gid ? parse_u32("--gid", gid) : 0;
    if (!cfg->cwd) cfg->cwd = "/";
    finish_common(cfg, caps);
}

void sh_parse_rawsock(struct sh_config *cfg, int argc, char **argv)
{
    const char *pid = NULL;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) sh_usage("%s needs a value", opt);
        const char *v = argv[++i];
        if (strcmp(opt, "--pid") == 0) set_once(&pid, opt, v);
        else if (strcmp(opt, "--proto") == 0) set_once(&cfg->raw_proto, opt, v);
        else if (strcmp(opt, "--port") == 0) {
            uint32_t port = parse_u32("--port", v);
            if (port == 0 || port > 65535) sh_usage("--port: %s is not a port", v);
            if (cfg->n_raw_ports >= SH_MAX_LIST) sh_usage("--port: more than %d ports", SH_MAX_LIST);
            cfg->raw_ports[cfg->n_raw_ports++] = (int)port;
        } else sh_usage("unknown option %s for rawsock", opt);
    }
    if (!pid || !cfg->raw_proto) sh_usage("rawsock needs --pid and --proto");
    uint32_t p = parse_u32("--pid", pid);
    if (p == 0 || p > 0x3fffffff) sh_usage("--pid: %s is not a process id", pid);
    cfg->pid = (pid_t)p;
}
