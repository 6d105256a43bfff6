/* SPDX-License-Identifier: MIT */
/* Unit tests for peer: real loopback connections made by this process (IPv4, IPv6, and across
 * families through IPv4-mapped addresses), and by a child running a deleted copy of this binary
 * under an awkward comm, so the " (deleted)" suffix and the ppid parse are exercised. */
#include "airlock/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

static char self_exe[PATH_MAX];

/* A loopback listener on an ephemeral port; -1 when the family is unavailable here. */
static int listen_on(int family, const char *addr, bool v6only)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, on = v6only;

    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        inet_pton(AF_INET, addr, &sin->sin_addr);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, addr, &sin6->sin6_addr);
        len = sizeof(*sin6);
    }
    fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 4) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Connect a new socket of family to the listener's port at addr; -1 on failure. */
static int connect_to(int family, const char *addr, int lfd)
{
    struct sockaddr_storage ss, ls;
    socklen_t llen = sizeof(ls), len;
    uint16_t port;
    int fd;

    if (getsockname(lfd, (struct sockaddr *)&ls, &llen) != 0)
        return -1;
    port = ls.ss_family == AF_INET ? ((struct sockaddr_in *)&ls)->sin_port
                                   : ((struct sockaddr_in6 *)&ls)->sin6_port;
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = port;
        inet_pton(AF_INET, addr, &sin->sin_addr);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = port;
        inet_pton(AF_INET6, addr, &sin6->sin6_addr);
        len = sizeof(*sin6);
    }
    fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Identify the peer of an accepted socket the way the daemon does: its peer and local names. */
static int identify_accepted(int afd, struct peer_exes *out)
{
    struct sockaddr_storage peer, ours;
    socklen_t plen = sizeof(peer), olen = sizeof(ours);

    if (getpeername(afd, (struct sockaddr *)&peer, &plen) != 0 ||
        getsockname(afd, (struct sockaddr *)&ours, &olen) != 0)
        return -errno;
    return peer_identify((struct sockaddr *)&peer, (struct sockaddr *)&ours, out);
}

static void check_chain(const struct peer_exes *e)
{
    CHECK(e->n >= 1);
    CHECK(e->n <= PEER_MAX_EXES);
    CHECK(e->paths[e->n] == NULL);
    for (size_t i = 0; i < e->n; i++)
        CHECK(e->paths[i] != NULL && e->paths[i][0] == '/');
}

/* One connection within this process: the client end is ours, so the first path is us. */
static void check_self(int lfamily, const char *laddr, bool v6only, int cfamily, const char *caddr,
                       const char *what)
{
    struct sockaddr_storage local, remote;
    socklen_t llen = sizeof(local), rlen = sizeof(remote);
    struct peer_exes e;
    int lfd, cfd, afd, rc;

    lfd = listen_on(lfamily, laddr, v6only);
    if (lfd < 0) {
        printf("skip %s: no listener (%s)\n", what, strerror(errno));
        return;
    }
    cfd = connect_to(cfamily, caddr, lfd);
    if (cfd < 0) {
        printf("skip %s: cannot connect (%s)\n", what, strerror(errno));
        close(lfd);
        return;
    }
    afd = accept(lfd, NULL, NULL);
    CHECK(afd >= 0);

    /* From the client's socket: its local name is the peer, its remote name is us. */
    CHECK_EQ(getsockname(cfd, (struct sockaddr *)&local, &llen), 0);
    CHECK_EQ(getpeername(cfd, (struct sockaddr *)&remote, &rlen), 0);
    rc = peer_identify((struct sockaddr *)&local, (struct sockaddr *)&remote, &e);
    if (rc != 0)
        fprintf(stderr, "  %s: client view: %s\n", what, strerror(-rc));
    CHECK_EQ(rc, 0);
    if (rc == 0) {
        check_chain(&e);
        CHECK_STR(e.paths[0], self_exe);
    }
    peer_exes_free(&e);
    CHECK_EQ(e.n, 0);

    /* From the accepted socket, as the daemon sees it (possibly IPv4-mapped). */
    if (afd >= 0) {
        rc = identify_accepted(afd, &e);
        if (rc != 0)
            fprintf(stderr, "  %s: server view: %s\n", what, strerror(-rc));
        CHECK_EQ(rc, 0);
        if (rc == 0)
            CHECK_STR(e.paths[0], self_exe);
        peer_exes_free(&e);
        close(afd);
    }
    close(cfd);
    close(lfd);
}

static void test_self_v4(void)
{
    check_self(AF_INET, "127.0.0.1", false, AF_INET, "127.0.0.1", "ipv4");
}

static void test_self_v6(void)
{
    check_self(AF_INET6, "::1", true, AF_INET6, "::1", "ipv6");
}

/* An AF_INET client of a dual-stack listener: the client's row is in /proc/net/tcp, while the
 * daemon sees ::ffff:127.0.0.1. */
static void test_self_dual_stack(void)
{
    check_self(AF_INET6, "::", false, AF_INET, "127.0.0.1", "dual-stack listener");
}

/* An AF_INET6 client dialing ::ffff:127.0.0.1: its row is in /proc/net/tcp6 as mapped
 * addresses, while the daemon's AF_INET socket sees plain IPv4. */
static void test_self_mapped_client(void)
{
    check_self(AF_INET, "127.0.0.1", false, AF_INET6, "::ffff:127.0.0.1", "mapped client");
}

static void test_not_found(void)
{
    struct sockaddr_in a, b;
    struct sockaddr_in6 c, d;
    struct peer_exes e;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(1);
    inet_pton(AF_INET, "127.1.2.3", &a.sin_addr);
    b = a;
    b.sin_port = htons(2);
    inet_pton(AF_INET, "127.3.2.1", &b.sin_addr);
    CHECK_EQ(peer_identify((struct sockaddr *)&a, (struct sockaddr *)&b, &e), -ENOENT);
    CHECK_EQ(e.n, 0);
    CHECK(e.paths[0] == NULL);

    memset(&c, 0, sizeof(c));
    c.sin6_family = AF_INET6;
    c.sin6_port = htons(1);
    inet_pton(AF_INET6, "2001:db8::1", &c.sin6_addr);
    d = c;
    d.sin6_port = htons(2);
    CHECK_EQ(peer_identify((struct sockaddr *)&c, (struct sockaddr *)&d, &e), -ENOENT);

    a.sin_family = AF_UNIX;
    CHECK_EQ(peer_identify((struct sockaddr *)&a, (struct sockaddr *)&b, &e), -EAFNOSUPPORT);
    peer_exes_free(&e);
}

static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    ssize_t n = 0;
    int in, out, rc = 0;

    in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) {
        close(in);
        return -1;
    }
    while (rc == 0 && (n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (n < 0)
        rc = -1;
    close(in);
    if (close(out) != 0)
        rc = -1;
    return rc;
}

/* The child's side: rename the process so its comm has the characters that break a naive stat
 * parse, connect, and wait for the parent to close. */
static int child_main(const char *port_text)
{
    struct sockaddr_in sin;
    char c;
    int fd;

    prctl(PR_SET_NAME, "x) 1 (y) Z 7 ", 0, 0, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)atoi(port_text));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0)
        return 1;
    while (read(fd, &c, 1) > 0)
        ;
    close(fd);
    return 0;
}

/* A child runs a copy of this binary that is then deleted: its exe reads "<copy> (deleted)",
 * which must come back as the copy's path, and the walk must reach us through the child's
 * odd comm. */
static void test_child_deleted_exe(void)
{
    char dir[] = "/tmp/airlock-peer-XXXXXX", copy[sizeof(dir) + 16], port[8];
    struct sockaddr_in ls;
    socklen_t llen = sizeof(ls);
    struct pollfd pfd;
    struct peer_exes e;
    int lfd, afd, status, rc;
    pid_t child;

    if (mkdtemp(dir) == NULL) {
        printf("skip deleted exe: mkdtemp (%s)\n", strerror(errno));
        return;
    }
    snprintf(copy, sizeof(copy), "%s/peer-child", dir);
    if (copy_file(self_exe, copy) != 0) {
        printf("skip deleted exe: copy (%s)\n", strerror(errno));
        unlink(copy);
        rmdir(dir);
        return;
    }
    lfd = listen_on(AF_INET, "127.0.0.1", false);
    CHECK(lfd >= 0);
    CHECK_EQ(getsockname(lfd, (struct sockaddr *)&ls, &llen), 0);
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(ls.sin_port));

    child = fork();
    if (child == 0) {
        execl(copy, copy, "--child", port, (char *)NULL);
        _exit(127);
    }
    CHECK(child > 0);

    /* A child whose exec failed (say, /tmp mounted noexec) never connects. */
    pfd.fd = lfd;
    pfd.events = POLLIN;
    if (child < 0 || poll(&pfd, 1, 10000) != 1) {
        printf("skip deleted exe: child did not connect\n");
        if (child > 0) {
            kill(child, SIGKILL);
            waitpid(child, &status, 0);
        }
        goto out;
    }
    afd = accept(lfd, NULL, NULL);
    CHECK(afd >= 0);
    CHECK_EQ(unlink(copy), 0);

    rc = identify_accepted(afd, &e);
    CHECK_EQ(rc, 0);
    if (rc == 0) {
        check_chain(&e);
        CHECK_STR(e.paths[0], copy);
        CHECK(e.n >= 2);
        if (e.n >= 2)
            CHECK_STR(e.paths[1], self_exe);
    }
    peer_exes_free(&e);

    close(afd);
    CHECK_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
out:
    close(lfd);
    unlink(copy);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2]);
    if (realpath("/proc/self/exe", self_exe) == NULL) {
        perror("realpath /proc/self/exe");
        return 1;
    }
    RUN(test_self_v4);
    RUN(test_self_v6);
    RUN(test_self_dual_stack);
    RUN(test_self_mapped_client);
    RUN(test_not_found);
    RUN(test_child_deleted_exe);
    return test_report();
}
