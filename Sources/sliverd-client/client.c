/*
 * sliverd-client: the in-sliver client of the sliverd broker, a static binary at
 * /run/sliverd/sliverd-client in every sliver (docs/broker-protocol.md).
 *
 *   sliverd-client ping HOST [COUNT]         ICMP echo through a brokered raw socket
 *   sliverd-client reserve|release tcp|udp PORT
 *   sliverd-client ports
 *   sliverd-client raw icmp|udp|tcp|gre      ask for a raw socket (prints "ok" and exits)
 *   sliverd-client sniff icmp|udp|tcp|gre SECONDS
 *                                            count what a brokered raw socket receives
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define BROKER "/run/sliverd/broker.sock"

/* One request line; the answer line into `reply`; a passed descriptor into *fd (or -1). */
static int call(const char *request, char *reply, size_t size, int *fd)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", BROKER);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "sliverd-client: cannot reach the broker at %s: %s\n", BROKER, strerror(errno));
        exit(1);
    }
    if (write(s, request, strlen(request)) < 0) exit(1);
    size_t got = 0;
    *fd = -1;
    while (got < size - 1) {
        union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } control;
        struct iovec iov = {.iov_base = reply + got, .iov_len = size - 1 - got};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
        ssize_t n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
        if (n <= 0) break;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) memcpy(fd, CMSG_DATA(c), sizeof(int));
        got += (size_t)n;
        if (memchr(reply, '\n', got)) break;
    }
    reply[got] = 0;
    close(s);
    if (!strstr(reply, "\"ok\":true")) {
        fprintf(stderr, "sliverd-client: %s", reply);
        return 1;
    }
    return 0;
}

static uint16_t checksum(const void *data, size_t len)
{
    const uint16_t *p = data;
    uint32_t sum = 0;
    for (; len > 1; len -= 2) sum += *p++;
    if (len) sum += *(const uint8_t *)p;
    sum = (sum >> 16) + (sum & 0xffff);
    return (uint16_t)~(sum + (sum >> 16));
}

static int ping(const char *host, int count)
{
    char reply[4096];
    int fd;
    if (call("{\"v\":1,\"op\":\"raw\",\"proto\":\"icmp\"}\n", reply, sizeof reply, &fd) || fd < 0) return 1;
    struct sockaddr_in to = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1) { fprintf(stderr, "sliverd-client: %s is not an IPv4 address\n", host); return 2; }
    uint16_t ident = (uint16_t)getpid();
    int answered = 0;
    for (int seq = 1; seq <= count; seq++) {
        unsigned char pkt[64] = {8, 0};
        memcpy(pkt + 4, &ident, 2);
        uint16_t nseq = htons((uint16_t)seq);
        memcpy(pkt + 6, &nseq, 2);
        uint16_t sum = checksum(pkt, sizeof pkt);
        memcpy(pkt + 2, &sum, 2);
        struct timeval t0, t1;
        gettimeofday(&t0, NULL);
        if (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) < 0) { perror("sendto"); return 1; }
        for (;;) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 1000) <= 0) { printf("no reply for seq %d\n", seq); break; }
            unsigned char in[1500];
            ssize_t n = recv(fd, in, sizeof in, 0);
            if (n < 28) continue;
            size_t ihl = (size_t)(in[0] & 0x0f) * 4;
            if ((size_t)n < ihl + 8 || in[ihl] != 0 || memcmp(in + ihl + 4, &ident, 2) != 0) continue;
            gettimeofday(&t1, NULL);
            printf("reply from %s: seq=%d time=%.2f ms\n", host, ntohs(*(uint16_t *)(in + ihl + 6)),
                   (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_usec - t0.tv_usec) / 1e3);
            answered++;
            break;
        }
    }
    return answered > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    char reply[65536], request[256];
    int fd;
    if (argc >= 3 && strcmp(argv[1], "ping") == 0) return ping(argv[2], argc > 3 ? atoi(argv[3]) : 3);
    if (argc == 4 && (strcmp(argv[1], "reserve") == 0 || strcmp(argv[1], "release") == 0)) {
        snprintf(request, sizeof request, "{\"v\":1,\"op\":\"%s\",\"proto\":\"%s\",\"port\":%d}\n", argv[1], argv[2], atoi(argv[3]));
        if (call(request, reply, sizeof reply, &fd)) return 1;
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "ports") == 0) {
        if (call("{\"v\":1,\"op\":\"ports\"}\n", reply, sizeof reply, &fd)) return 1;
        fputs(reply, stdout);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "raw") == 0) {
        snprintf(request, sizeof request, "{\"v\":1,\"op\":\"raw\",\"proto\":\"%s\"}\n", argv[2]);
        if (call(request, reply, sizeof reply, &fd) || fd < 0) return 1;
        printf("ok\n");
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "sniff") == 0) {
        snprintf(request, sizeof request, "{\"v\":1,\"op\":\"raw\",\"proto\":\"%s\"}\n", argv[2]);
        if (call(request, reply, sizeof reply, &fd) || fd < 0) return 1;
        struct timeval t0, t;
        gettimeofday(&t0, NULL);
        long packets = 0, limit_ms = atol(argv[3]) * 1000;
        for (;;) {
            gettimeofday(&t, NULL);
            long left = limit_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_usec - t0.tv_usec) / 1000);
            if (left <= 0) break;
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, (int)left) > 0 && recv(fd, reply, sizeof reply, 0) > 0) packets++;
        }
        printf("%ld\n", packets);
        return 0;
    }
    fprintf(stderr, "usage: sliverd-client ping HOST [COUNT] | reserve|release tcp|udp PORT | ports | raw icmp|udp|tcp|gre | sniff PROTO SECONDS\n");
    return 2;
}
