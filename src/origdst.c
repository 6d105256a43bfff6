/* SPDX-License-Identifier: MIT */
/* origdst: the original destination of a redirected connection, asked of conntrack through
 * getsockopt, with the socket's local address as the answer where conntrack has none (tproxy).
 * It owns no state and never closes the fd. Invariant: the answer is the conntrack tuple's
 * destination or the local address, never a guess from the peer's bytes. */
#include "airlock/origdst.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

/* An IPv4 address that stands in an IPv6 socket address as ::ffff:a.b.c.d (RFC 4291 §2.5.5.2)
 * is rewritten as the AF_INET address it is. */
static void unmap_v4(struct sockaddr_storage *ss)
{
    struct sockaddr_in6 six;
    struct sockaddr_in four = {.sin_family = AF_INET};

    if (ss->ss_family != AF_INET6)
        return;
    memcpy(&six, ss, sizeof(six));
    if (!IN6_IS_ADDR_V4MAPPED(&six.sin6_addr))
        return;
    four.sin_port = six.sin6_port;
    memcpy(&four.sin_addr, &six.sin6_addr.s6_addr[12], 4);
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, &four, sizeof(four));
}

/* SO_ORIGINAL_DST is asked at the level of the packets' family, which for a v4-mapped
 * connection on an IPv6 socket is IPv4: the kernel answers SOL_IP on any TCP socket whose
 * connection is IPv4. 0 when conntrack answered. */
static int ask_conntrack(int fd, int family, struct sockaddr_storage *out)
{
    socklen_t len;

    memset(out, 0, sizeof(*out));
    if (family == AF_INET) {
        len = sizeof(struct sockaddr_in);
        if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, out, &len) < 0)
            return -errno;
        return out->ss_family == AF_INET ? 0 : -EAFNOSUPPORT;
    }
    len = sizeof(struct sockaddr_in6);
    if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, out, &len) < 0)
        return -errno;
    return out->ss_family == AF_INET6 ? 0 : -EAFNOSUPPORT;
}

int origdst_get(int fd, struct sockaddr_storage *out)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    int family;

    memset(&local, 0, sizeof(local));
    if (getsockname(fd, (struct sockaddr *)&local, &len) < 0)
        return -errno;
    if (local.ss_family != AF_INET && local.ss_family != AF_INET6)
        return -EAFNOSUPPORT;
    /* conntrack would answer a socket that is not connected with its zero tuple's miss, and
     * the fallback would then name an unbound address: refuse instead */
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    if (getpeername(fd, (struct sockaddr *)&peer, &peer_len) < 0)
        return -errno;
    unmap_v4(&local);
    family = local.ss_family;
    /* conntrack has no entry (ENOENT) when nothing tracked the connection, and the option is
     * unknown (ENOPROTOOPT) where conntrack is not loaded at all: both mean tproxy or no
     * redirect, where the local address is the answer. Other errors are real. */
    int rc = ask_conntrack(fd, family, out);
    if (rc == 0) {
        unmap_v4(out);
        return 0;
    }
    if (rc != -ENOENT && rc != -ENOPROTOOPT)
        return rc;
    memcpy(out, &local, sizeof(local));
    return 0;
}
