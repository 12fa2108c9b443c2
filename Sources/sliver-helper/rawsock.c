/*
 * rawsock: a raw socket for a sliver, made by host root inside the sliver's network namespace
 * (slivers hold no CAP_NET_RAW), with a locked receive filter, handed to the daemon over fd 1
 * (a Unix socket) with SCM_RIGHTS. The daemon passes it on to the sliver.
 *
 * Only the network namespace is joined: the socket belongs to the sliver's stack, so it sees only
 * the sliver's own traffic (no other sliver's packets exist there). The filter narrows it further
 * to what the sliver owns: for TCP and UDP, its reserved ports; ICMP and GRE pass whole. It is
 * locked (SO_LOCK_FILTER): the sliver can neither remove nor replace it.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/filter.h>
#include <sys/socket.h>

#ifndef SO_LOCK_FILTER
#define SO_LOCK_FILTER 44
#endif
#ifndef IPPROTO_GRE
#define IPPROTO_GRE 47
#endif

/* Accept IPv4 packets whose destination port (TCP or UDP, right after the IP header) is one of
 * `ports`; drop the rest. */
static int port_filter(struct sock_filter *f, const int *ports, int n)
{
    int i = 0;
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0);  /* X = IP header length */
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2);   /* A = destination port */
    for (int p = 0; p < n; p++)
        f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)ports[p], (unsigned char)(n - p), 0);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffff);
    return i;
}

int sh_rawsock(struct sh_config *cfg)
{
    int proto;
    if (strcmp(cfg->raw_proto, "icmp") == 0) proto = IPPROTO_ICMP;
    else if (strcmp(cfg->raw_proto, "udp") == 0) proto = IPPROTO_UDP;
    else if (strcmp(cfg->raw_proto, "tcp") == 0) proto = IPPROTO_TCP;
    else if (strcmp(cfg->raw_proto, "gre") == 0) proto = IPPROTO_GRE;
    else sh_usage("--proto: %s is not icmp, udp, tcp or gre", cfg->raw_proto);

    int pidfd = sh_pidfd_open(cfg->pid);
    if (pidfd < 0) sh_fail("rawsock", errno, "pidfd_open %d", (int)cfg->pid);
    if (setns(pidfd, CLONE_NEWNET) < 0) sh_fail("rawsock", errno, "setns into the network namespace of %d", (int)cfg->pid);
    close(pidfd);
    int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, proto);
    if (fd < 0) sh_fail("rawsock", errno, "socket(AF_INET, SOCK_RAW, %s)", cfg->raw_proto);

    struct sock_filter code[SH_MAX_LIST + 4];
    int len;
    if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        len = port_filter(code, cfg->raw_ports, cfg->n_raw_ports);
    } else {
        code[0] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, 0xffff);
        len = 1;
    }
    struct sock_fprog prog = {.len = (unsigned short)len, .filter = code};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) sh_fail("rawsock", errno, "SO_ATTACH_FILTER");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof one) < 0) sh_fail("rawsock", errno, "SO_LOCK_FILTER");

    char byte = 'R';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    if (sendmsg(1, &msg, MSG_NOSIGNAL) != 1) sh_fail("rawsock", errno, "send the socket to the daemon over fd 1");
    return 0;
}
