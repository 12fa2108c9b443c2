/*
 * net: the sliver's network link, made by the host side of `create` over rtnetlink.
 *
 * Once the sliver's network namespace exists (C has unshared it and forked I), P creates a veth
 * pair in the host namespace whose peer is born directly in the sliver's namespace as eth0
 * (IFLA_NET_NS_FD), so no other namespace ever holds it. P then addresses and raises the host
 * end, enters the sliver's network namespace only (P is single-threaded host root: setns affects
 * just itself), addresses eth0, raises it, adds the default routes, and returns to the host
 * namespace. The host end's name comes from the sliver's stable id (the daemon passes it), so a
 * restarted daemon and destroy find it; the pair vanishes with the sliver's namespace.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/socket.h>

struct nl_req {
    struct nlmsghdr h;
    char payload[1024];
};

static uint32_t nl_seq;

static int nl_open(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) sh_fail("network", errno, "socket(AF_NETLINK, NETLINK_ROUTE)");
    return fd;
}

static void nl_init(struct nl_req *r, int type, int flags, const void *header, size_t len)
{
    memset(r, 0, sizeof *r);
    r->h.nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
    r->h.nlmsg_type = (uint16_t)type;
    r->h.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
    r->h.nlmsg_seq = ++nl_seq;
    memcpy(NLMSG_DATA(&r->h), header, len);
}

static struct rtattr *nl_attr(struct nl_req *r, int type, const void *data, size_t len)
{
    size_t at = NLMSG_ALIGN(r->h.nlmsg_len);
    if (at + RTA_SPACE(len) > sizeof *r) sh_fail("network", EMSGSIZE, "netlink request too large");
    struct rtattr *a = (struct rtattr *)((char *)r + at);
    a->rta_type = (unsigned short)type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len) memcpy(RTA_DATA(a), data, len);
    r->h.nlmsg_len = (uint32_t)(at + RTA_SPACE(len));
    return a;
}

static void nl_nest_end(struct nl_req *r, struct rtattr *nest)
{
    nest->rta_len = (unsigned short)((char *)r + r->h.nlmsg_len - (char *)nest);
}

/* Sends one request and waits for its acknowledgement; a kernel error fails the stage. */
static void nl_talk(int fd, struct nl_req *r, const char *what)
{
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, r, r->h.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        sh_fail("network", errno, "netlink send: %s", what);
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) sh_fail("network", errno, "netlink receive: %s", what);
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != r->h.nlmsg_seq || h->nlmsg_type != NLMSG_ERROR) continue;
            int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
            if (err) sh_fail("network", -err, "%s", what);
            return;
        }
    }
}

static int ifindex(const char *name)
{
    unsigned idx = if_nametoindex(name);
    if (!idx) sh_fail("network", errno, "find interface %s", name);
    return (int)idx;
}

static void link_up(int fd, int idx, const char *name)
{
    struct nl_req r;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = idx, .ifi_flags = IFF_UP, .ifi_change = IFF_UP};
    nl_init(&r, RTM_NEWLINK, 0, &ifi, sizeof ifi);
    char what[64];
    snprintf(what, sizeof what, "set %s up", name);
    nl_talk(fd, &r, what);
}

/* "A/LEN" or "A" (then a host route length) into family, bytes and prefix length. */
static int parse_addr(const char *text, unsigned char *bytes, int *prefix)
{
    char copy[INET6_ADDRSTRLEN + 8];
    snprintf(copy, sizeof copy, "%s", text);
    char *slash = strchr(copy, '/');
    if (slash) *slash = 0;
    int family = strchr(copy, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, copy, bytes) != 1) sh_usage("not an IP address: %s", text);
    *prefix = slash ? atoi(slash + 1) : (family == AF_INET ? 32 : 128);
    if (*prefix < 0 || *prefix > (family == AF_INET ? 32 : 128)) sh_usage("bad prefix length in %s", text);
    return family;
}

static void add_addr(int fd, int idx, const char *text, const char *ifname)
{
    unsigned char bytes[16];
    int prefix;
    int family = parse_addr(text, bytes, &prefix);
    size_t len = family == AF_INET ? 4 : 16;
    struct nl_req r;
    /* IFA_F_NODAD: the addresses are ours by construction; duplicate address detection would
     * leave IPv6 unusable ("tentative") for a second or two after the sliver starts. */
    struct ifaddrmsg ifa = {.ifa_family = (unsigned char)family, .ifa_prefixlen = (unsigned char)prefix,
                            .ifa_index = (unsigned)idx, .ifa_flags = IFA_F_NODAD, .ifa_scope = RT_SCOPE_UNIVERSE};
    nl_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof ifa);
    nl_attr(&r, IFA_LOCAL, bytes, len);
    nl_attr(&r, IFA_ADDRESS, bytes, len);
    uint32_t flags = IFA_F_NODAD;
    nl_attr(&r, IFA_FLAGS, &flags, sizeof flags);
    char what[128];
    snprintf(what, sizeof what, "add address %s to %s", text, ifname);
    nl_talk(fd, &r, what);
}

static void add_default_route(int fd, int idx, const char *gateway)
{
    unsigned char bytes[16];
    int prefix;
    int family = parse_addr(gateway, bytes, &prefix);
    struct nl_req r;
    struct rtmsg rt = {.rtm_family = (unsigned char)family, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT,
                       .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST};
    nl_init(&r, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof rt);
    nl_attr(&r, RTA_GATEWAY, bytes, family == AF_INET ? 4 : 16);
    nl_attr(&r, RTA_OIF, &idx, sizeof idx);
    char what[128];
    snprintf(what, sizeof what, "add default route via %s", gateway);
    nl_talk(fd, &r, what);
}

static void create_veth(int fd, const char *host_name, int netnsfd)
{
    struct nl_req r;
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    nl_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
    nl_attr(&r, IFLA_IFNAME, host_name, strlen(host_name) + 1);
    struct rtattr *linkinfo = nl_attr(&r, IFLA_LINKINFO, NULL, 0);
    nl_attr(&r, IFLA_INFO_KIND, "veth", 4);
    struct rtattr *data = nl_attr(&r, IFLA_INFO_DATA, NULL, 0);
    struct rtattr *peer = nl_attr(&r, VETH_INFO_PEER, NULL, 0);
    /* The peer's own ifinfomsg, then its attributes: born as eth0 inside the sliver's netns. */
    struct ifinfomsg peer_ifi = {.ifi_family = AF_UNSPEC};
    size_t at = NLMSG_ALIGN(r.h.nlmsg_len);
    memcpy((char *)&r + at, &peer_ifi, sizeof peer_ifi);
    r.h.nlmsg_len = (uint32_t)(at + NLMSG_ALIGN(sizeof peer_ifi));
    nl_attr(&r, IFLA_IFNAME, "eth0", 5);
    nl_attr(&r, IFLA_NET_NS_FD, &netnsfd, sizeof netnsfd);
    nl_nest_end(&r, peer);
    nl_nest_end(&r, data);
    nl_nest_end(&r, linkinfo);
    char what[128];
    snprintf(what, sizeof what, "create veth %s (peer eth0 in the sliver)", host_name);
    nl_talk(fd, &r, what);
}

/* The host end's link-local address without duplicate address detection. The kernel sends a
 * neighbour solicitation for a packet it forwards (whose source is not one of its own addresses)
 * only from a link-local address that has passed DAD; until then (a second or two after link up)
 * an inbound connection to a sliver that has not sent anything yet finds no neighbour and is
 * lost. Must be written before the link goes up, when DAD would start. No IPv6: no file. */
static void host_end_without_dad(const char *ifname)
{
    char path[96];
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/accept_dad", ifname);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return;
        sh_fail("network", errno, "open %s", path);
    }
    if (write(fd, "0", 1) != 1) sh_fail("network", errno, "write %s", path);
    close(fd);
}

void sh_setup_network(const struct sh_config *cfg, pid_t init)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", (int)init);
    int sliver_ns = open(path, O_RDONLY | O_CLOEXEC);
    if (sliver_ns < 0) sh_fail("network", errno, "open %s", path);
    int host_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (host_ns < 0) sh_fail("network", errno, "open /proc/self/ns/net");

    int fd = nl_open();
    create_veth(fd, cfg->veth, sliver_ns);
    int host_idx = ifindex(cfg->veth);
    if (cfg->host_ipv4) add_addr(fd, host_idx, cfg->host_ipv4, cfg->veth);
    if (cfg->host_ipv6) add_addr(fd, host_idx, cfg->host_ipv6, cfg->veth);
    if (cfg->host_ipv6) host_end_without_dad(cfg->veth);
    link_up(fd, host_idx, cfg->veth);
    close(fd);

    if (setns(sliver_ns, CLONE_NEWNET) < 0) sh_fail("network", errno, "setns into the sliver's network namespace");
    fd = nl_open(); /* a netlink socket talks to the namespace it was created in */
    int idx = ifindex("eth0");
    if (cfg->sliver_ipv4) add_addr(fd, idx, cfg->sliver_ipv4, "eth0");
    if (cfg->sliver_ipv6) add_addr(fd, idx, cfg->sliver_ipv6, "eth0");
    link_up(fd, idx, "eth0");
    if (cfg->host_ipv4) add_default_route(fd, idx, cfg->host_ipv4);
    if (cfg->host_ipv6) add_default_route(fd, idx, cfg->host_ipv6);
    close(fd);
    if (setns(host_ns, CLONE_NEWNET) < 0) sh_fail("network", errno, "setns back into the host network namespace");
    close(host_ns);
    close(sliver_ns);
}
