/* SPDX-License-Identifier: MIT */
/* Unit tests for origdst, on loopback sockets of this namespace: a connection that no rule
 * redirected names the listener's own address (what a tproxy socket also answers), an IPv4
 * connection on a dual-stack socket comes out as AF_INET, and sockets that cannot answer give
 * a negative errno. The redirected case needs a namespace with nftables: see
 * test/e2e/test_transparent.py. */
#include "airlock/origdst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "test.h"

/* A connected pair over loopback: *listener, *client and *server fds, or -1 on failure. */
static int connect_pair(int family, const char *listen_ip, const char *connect_ip, bool v6only,
                        int *listener, int *client, int *server)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    int one = 1, flag = v6only ? 1 : 0;

    *listener = *client = *server = -1;
    *listener = socket(family, SOCK_STREAM, 0);
    if (*listener < 0)
        return -1;
    if (family == AF_INET6)
        setsockopt(*listener, IPPROTO_IPV6, IPV6_V6ONLY, &flag, sizeof(flag));
    setsockopt(*listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr_parse_hostport(listen_ip, &ss) < 0)
        return -1;
    len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(*listener, (struct sockaddr *)&ss, len) < 0 || listen(*listener, 4) < 0)
        return -1;
    len = sizeof(ss);
    if (getsockname(*listener, (struct sockaddr *)&ss, &len) < 0)
        return -1;
    uint16_t port = addr_port((struct sockaddr *)&ss);
    char text[80];
    snprintf(text, sizeof(text), strchr(connect_ip, ':') ? "[%s]:%u" : "%s:%u", connect_ip,
             (unsigned)port);
    if (addr_parse_hostport(text, &ss) < 0)
        return -1;
    *client = socket(ss.ss_family, SOCK_STREAM, 0);
    len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (*client < 0 || connect(*client, (struct sockaddr *)&ss, len) < 0)
        return -1;
    *server = accept(*listener, NULL, NULL);
    return *server < 0 ? -1 : 0;
}

static void close_all(int a, int b, int c)
{
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
    if (c >= 0)
        close(c);
}

static void check_endpoint(const struct sockaddr_storage *ss, const char *want)
{
    char text[80];

    addr_format_endpoint((const struct sockaddr *)ss, text, sizeof(text));
    CHECK_STR(text, want);
}

/* What the listener is bound to, as addr_format_endpoint writes it, with the port. */
static void local_text(int fd, const char *ip, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    getsockname(fd, (struct sockaddr *)&ss, &len);
    snprintf(buf, cap, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip,
             (unsigned)addr_port((struct sockaddr *)&ss));
}

static void test_unredirected_v4_names_the_listener(void)
{
    int l, c, s;
    struct sockaddr_storage out;
    char want[80];

    CHECK_EQ(connect_pair(AF_INET, "127.0.0.1:0", "127.0.0.1", false, &l, &c, &s), 0);
    if (s >= 0) {
        local_text(l, "127.0.0.1", want, sizeof(want));
        CHECK_EQ(origdst_get(s, &out), 0);
        CHECK_EQ(out.ss_family, AF_INET);
        check_endpoint(&out, want);
    }
    close_all(l, c, s);
}

static void test_unredirected_v6_names_the_listener(void)
{
    int l, c, s;
    struct sockaddr_storage out;
    char want[80];

    if (connect_pair(AF_INET6, "[::1]:0", "::1", true, &l, &c, &s) < 0) {
        fprintf(stderr, "no IPv6 loopback here: skipped\n");
        close_all(l, c, s);
        return;
    }
    local_text(l, "::1", want, sizeof(want));
    CHECK_EQ(origdst_get(s, &out), 0);
    CHECK_EQ(out.ss_family, AF_INET6);
    check_endpoint(&out, want);
    close_all(l, c, s);
}

/* An IPv4 client of a dual-stack listener is ::ffff:127.0.0.1 to the socket API; the answer
 * is the IPv4 address. */
static void test_dual_stack_v4_comes_out_as_inet(void)
{
    int l, c, s;
    struct sockaddr_storage out;
    char want[80];

    if (connect_pair(AF_INET6, "[::]:0", "127.0.0.1", false, &l, &c, &s) < 0) {
        fprintf(stderr, "no dual-stack socket here: skipped\n");
        close_all(l, c, s);
        return;
    }
    local_text(l, "127.0.0.1", want, sizeof(want));
    CHECK_EQ(origdst_get(s, &out), 0);
    CHECK_EQ(out.ss_family, AF_INET);
    check_endpoint(&out, want);
    close_all(l, c, s);
}

static void test_sockets_that_cannot_answer(void)
{
    struct sockaddr_storage out;
    int fds[2], fd;

    CHECK_EQ(origdst_get(-1, &out), -EBADF);
    CHECK(pipe(fds) == 0);
    CHECK_EQ(origdst_get(fds[0], &out), -ENOTSOCK);
    close(fds[0]);
    close(fds[1]);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    CHECK_EQ(origdst_get(fds[0], &out), -EAFNOSUPPORT);
    close(fds[0]);
    close(fds[1]);
    /* a TCP socket that is not connected has no destination at all */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK_EQ(origdst_get(fd, &out), -ENOTCONN);
    close(fd);
}

int main(void)
{
    RUN(test_unredirected_v4_names_the_listener);
    RUN(test_unredirected_v6_names_the_listener);
    RUN(test_dual_stack_v4_comes_out_as_inet);
    RUN(test_sockets_that_cannot_answer);
    return test_report();
}
