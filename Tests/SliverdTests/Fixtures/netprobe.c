// netprobe: a TCP/UDP client for the network tests, run inside slivers (built static at test
// time). `netprobe tcp|udp ADDRESS PORT [TIMEOUT_S]` connects (TCP) or sends "ping\n" (UDP) and
// prints what the peer answers; exit 0 when an answer came, 1 otherwise (with the reason).
// A 5th argument binds the local port first (to use a reserved port).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int probe(int argc, char **argv);

// A 6th argument repeats the whole probe COUNT times (one process for a burst of connections).
int main(int argc, char **argv) {
    int count = argc > 6 ? atoi(argv[6]) : 1, failures = 0;
    for (int i = 0; i < count; i++) failures += probe(argc > 5 && atoi(argv[5]) == 0 ? 5 : argc, argv) != 0;
    return failures ? 1 : 0;
}

static int probe(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: netprobe tcp|udp ADDRESS PORT [TIMEOUT_S]\n"); return 2; }
    int udp = strcmp(argv[1], "udp") == 0;
    int timeout_ms = (argc > 4 ? atoi(argv[4]) : 2) * 1000;
    struct sockaddr_storage ss = {0};
    socklen_t len;
    int family;
    if (strchr(argv[2], ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = family = AF_INET6;
        a->sin6_port = htons((unsigned short)atoi(argv[3]));
        if (inet_pton(AF_INET6, argv[2], &a->sin6_addr) != 1) return 2;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = family = AF_INET;
        a->sin_port = htons((unsigned short)atoi(argv[3]));
        if (inet_pton(AF_INET, argv[2], &a->sin_addr) != 1) return 2;
        len = sizeof *a;
    }
    int fd = socket(family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
    if (fd < 0) { printf("socket failed %d\n", errno); return 1; }
    if (argc > 5) {
        // The wildcard address of the peer's family, on the given port.
        struct sockaddr_storage local = {0};
        unsigned short port = htons((unsigned short)atoi(argv[5]));
        if (family == AF_INET6) {
            ((struct sockaddr_in6 *)&local)->sin6_family = AF_INET6;
            ((struct sockaddr_in6 *)&local)->sin6_port = port;
        } else {
            ((struct sockaddr_in *)&local)->sin_family = AF_INET;
            ((struct sockaddr_in *)&local)->sin_port = port;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&local, len) < 0) { printf("bind failed %d\n", errno); return 1; }
    }
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) { printf("connect failed %d\n", errno); return 1; }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, timeout_ms) <= 0) { printf("connect timeout\n"); return 1; }
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) { printf("connect failed %d\n", err); return 1; }
    if (udp && send(fd, "ping\n", 5, 0) < 0) { printf("send failed %d\n", errno); return 1; }
    p.events = POLLIN;
    if (poll(&p, 1, timeout_ms) <= 0) { printf("no answer\n"); return 1; }
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) { printf("no answer %d\n", n < 0 ? errno : 0); return 1; }
    buf[n] = 0;
    fputs(buf, stdout);
    close(fd);
    return 0;
}
