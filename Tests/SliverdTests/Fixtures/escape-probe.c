// escape-probe: run inside a sliver by the integration tests. Tries each operation a sliver must
// not be able to do and prints one line per attempt: "<name> ok" or "<name> denied <errno>".
// It also reports the descriptors open at exec ("fds 0,1,2"). Built static at test time.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <netinet/in.h>
#include <unistd.h>

static void report(const char *name, long rc) {
    if (rc >= 0) printf("%s ok\n", name);
    else printf("%s denied %d\n", name, errno);
}

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    // Safety: these attempts succeed on a host run as root (a tmpfs over /tmp, ...). Only run
    // where the sliver runtime wrote /etc/slicename and we are pid-namespaced (pid 1 is not ours).
    if (access("/etc/slicename", F_OK) != 0 || getpid() > 4096) {
        fprintf(stderr, "escape-probe: refusing to run outside a sliver\n");
        return 99;
    }
    // Descriptors first, before this program opens any of its own.
    DIR *d = opendir("/proc/self/fd");
    int dfd = d ? dirfd(d) : -1;
    printf("fds");
    char sep = ' ';
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dfd) continue;
        printf("%c%s", sep, e->d_name);
        sep = ',';
    }
    printf("\n");
    if (d) closedir(d);

    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("raw_socket", socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    report("packet_socket", socket(AF_PACKET, SOCK_RAW, 0));
    report("mknod", mknod("/tmp/probe-null", S_IFCHR | 0666, makedev(1, 3)));
    report("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0));
    report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -3));
    report("bpf", syscall(SYS_bpf, 0, NULL, 0));
    report("unshare_user", unshare(CLONE_NEWUSER));
    report("unshare_net", unshare(CLONE_NEWNET));
    long child = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0);
    if (child == 0) _exit(0);
    if (child > 0) waitpid((pid_t)child, NULL, 0);
    report("clone_newpid", child);
    report("setns", setns(0, 0));
    int fd = open("/proc/sys/kernel/hostname", O_WRONLY);
    report("proc_sys_write", fd < 0 ? -1 : write(fd, "x", 1));
    report("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 0));
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, 0));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    // A masked /proc/kcore reads as empty (/dev/null bound over it) or cannot be opened.
    int kcore = open("/proc/kcore", O_RDONLY);
    char byte;
    long got = kcore < 0 ? -1 : read(kcore, &byte, 1);
    printf("kcore_bytes %ld\n", got);
    report("sysrq_write", open("/proc/sysrq-trigger", O_WRONLY));
    report("chroot_escape_dotdot", chdir("/../../../../.."));
    fflush(stdout);
    return 0;
}
