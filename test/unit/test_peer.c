/* SPDX-License-Identifier: MIT */
/* Unit tests for peer: real loopback connections made by this process (IPv4, IPv6, and across
 * families through IPv4-mapped addresses, through netlink and through /proc/net), by a child
 * running a deleted copy of this binary under an awkward comm (the " (deleted)" suffix and the
 * ppid parse), sockets shared between processes and threads, which must all be reported, and
 * executable paths forged with mounts of another namespace, which must not be. */
#include "airlock/peer.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
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
static int identify_accepted(int afd, const struct peer_limits *lim, struct peer_info *out)
{
    struct sockaddr_storage peer, ours;
    socklen_t plen = sizeof(peer), olen = sizeof(ours);

    if (getpeername(afd, (struct sockaddr *)&peer, &plen) != 0 ||
        getsockname(afd, (struct sockaddr *)&ours, &olen) != 0)
        return -errno;
    return peer_identify((struct sockaddr *)&peer, (struct sockaddr *)&ours, lim, out);
}

static void check_chain(const struct peer_process *p)
{
    CHECK(p->n >= 1);
    CHECK(p->n <= PEER_MAX_EXES);
    CHECK(p->exes[p->n] == NULL);
    for (size_t i = 0; i < p->n; i++)
        CHECK(p->exes[i] != NULL && p->exes[i][0] == '/');
}

/* The one holder is this process, running this binary. */
static void check_only_self(const struct peer_info *info)
{
    CHECK_EQ(info->n, 1);
    if (info->n >= 1) {
        CHECK_EQ(info->procs[0].pid, getpid());
        check_chain(&info->procs[0]);
        CHECK_STR(info->procs[0].exes[0], self_exe);
    }
}

/* One connection within this process: the client end is ours, so the one holder is us. */
static void check_self(int lfamily, const char *laddr, bool v6only, int cfamily, const char *caddr,
                       const char *what)
{
    struct sockaddr_storage local, remote;
    socklen_t llen = sizeof(local), rlen = sizeof(remote);
    struct peer_info info;
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

    /* Through netlink, then through the /proc/net tables. */
    int fds_before = test_count_fds();
    for (int pass = 0; pass < 2; pass++) {
        struct peer_limits lim = {.fd_budget = PEER_FD_BUDGET, .proc_net = pass == 1};
        /* From the client's socket: its local name is the peer, its remote name is us. */
        CHECK_EQ(getsockname(cfd, (struct sockaddr *)&local, &llen), 0);
        CHECK_EQ(getpeername(cfd, (struct sockaddr *)&remote, &rlen), 0);
        rc = peer_identify((struct sockaddr *)&local, (struct sockaddr *)&remote, &lim, &info);
        if (rc != 0)
            fprintf(stderr, "  %s, pass %d: client view: %s\n", what, pass, strerror(-rc));
        CHECK_EQ(rc, 0);
        if (rc == 0) {
            check_only_self(&info);
            CHECK_EQ(info.uid, geteuid());
            CHECK(info.inode != 0);
        }
        peer_info_free(&info);
        CHECK_EQ(info.n, 0);

        /* From the accepted socket, as the daemon sees it (possibly IPv4-mapped). */
        if (afd >= 0) {
            rc = identify_accepted(afd, &lim, &info);
            if (rc != 0)
                fprintf(stderr, "  %s, pass %d: server view: %s\n", what, pass, strerror(-rc));
            CHECK_EQ(rc, 0);
            if (rc == 0)
                check_only_self(&info);
            peer_info_free(&info);
        }
    }
    CHECK_EQ(test_count_fds(), fds_before);
    if (afd >= 0)
        close(afd);
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
    struct peer_info info;
    struct peer_limits proc_net = {.fd_budget = PEER_FD_BUDGET, .proc_net = true};

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(1);
    inet_pton(AF_INET, "127.1.2.3", &a.sin_addr);
    b = a;
    b.sin_port = htons(2);
    inet_pton(AF_INET, "127.3.2.1", &b.sin_addr);
    CHECK_EQ(peer_identify((struct sockaddr *)&a, (struct sockaddr *)&b, NULL, &info), -ENOENT);
    CHECK_EQ(info.n, 0);
    CHECK_EQ(peer_identify((struct sockaddr *)&a, (struct sockaddr *)&b, &proc_net, &info),
             -ENOENT);

    memset(&c, 0, sizeof(c));
    c.sin6_family = AF_INET6;
    c.sin6_port = htons(1);
    inet_pton(AF_INET6, "2001:db8::1", &c.sin6_addr);
    d = c;
    d.sin6_port = htons(2);
    CHECK_EQ(peer_identify((struct sockaddr *)&c, (struct sockaddr *)&d, NULL, &info), -ENOENT);

    a.sin_family = AF_UNIX;
    CHECK_EQ(peer_identify((struct sockaddr *)&a, (struct sockaddr *)&b, NULL, &info),
             -EAFNOSUPPORT);
    peer_info_free(&info);
    CHECK(peer_strerror(-ENOENT) != NULL && peer_strerror(-EIO) != NULL);
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

/* The parent's side of a child running this binary (exe): fork it and wait for it. */
static int spawn_main(const char *port_text, const char *exe)
{
    int status;
    pid_t pid = fork();

    if (pid == 0) {
        execl(exe, exe, "--child", port_text, (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
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
    struct peer_info info;
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

    rc = identify_accepted(afd, NULL, &info);
    CHECK_EQ(rc, 0);
    if (rc == 0) {
        CHECK_EQ(info.n, 1);
        CHECK_EQ(info.procs[0].pid, child);
        check_chain(&info.procs[0]);
        CHECK_STR(info.procs[0].exes[0], copy);
        CHECK(info.procs[0].n >= 2);
        if (info.procs[0].n >= 2)
            CHECK_STR(info.procs[0].exes[1], self_exe);
    }
    peer_info_free(&info);

    close(afd);
    CHECK_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
out:
    close(lfd);
    unlink(copy);
    rmdir(dir);
}

/* A loopback connection made by this process: the listener, the client end and the accepted end.
 * false (and nothing open) when loopback is unusable here. */
struct conn3 {
    int lfd, cfd, afd;
};

static bool conn3_open(struct conn3 *c)
{
    c->lfd = listen_on(AF_INET, "127.0.0.1", false);
    c->cfd = c->lfd >= 0 ? connect_to(AF_INET, "127.0.0.1", c->lfd) : -1;
    c->afd = c->cfd >= 0 ? accept(c->lfd, NULL, NULL) : -1;
    if (c->afd < 0) {
        if (c->cfd >= 0)
            close(c->cfd);
        if (c->lfd >= 0)
            close(c->lfd);
        return false;
    }
    return true;
}

static void conn3_close(struct conn3 *c)
{
    if (c->cfd >= 0)
        close(c->cfd);
    close(c->afd);
    close(c->lfd);
}

/* A forked child that keeps every fd it inherited until told to go (by closing go[1]). */
static pid_t fork_holder(int go[2])
{
    char b;
    pid_t pid;

    if (pipe(go) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        close(go[1]);
        while (read(go[0], &b, 1) > 0)
            ;
        _exit(0);
    }
    close(go[0]);
    return pid;
}

static void reap_holder(pid_t pid, int go[2])
{
    int status;

    close(go[1]);
    waitpid(pid, &status, 0);
}

static bool holds_pid(const struct peer_info *info, pid_t pid)
{
    for (size_t i = 0; i < info->n; i++)
        if (info->procs[i].pid == pid)
            return true;
    return false;
}

/* A socket shared by a fork: both processes hold it, and both are reported (the first one found
 * is not "the" peer: either may write). Skipping our own process leaves the child. */
static void test_shared_socket(void)
{
    struct peer_limits skip_self = {.fd_budget = PEER_FD_BUDGET, .skip_pid = getpid()};
    struct peer_info info;
    struct conn3 c;
    int go[2], rc;
    pid_t child;

    if (!conn3_open(&c)) {
        printf("skip shared socket: no loopback\n");
        return;
    }
    child = fork_holder(go);
    CHECK(child > 0);
    if (child > 0) {
        rc = identify_accepted(c.afd, NULL, &info);
        CHECK_EQ(rc, 0);
        CHECK_EQ(info.n, 2);
        CHECK(holds_pid(&info, getpid()));
        CHECK(holds_pid(&info, child));
        for (size_t i = 0; i < info.n; i++) {
            check_chain(&info.procs[i]);
            CHECK_STR(info.procs[i].exes[0], self_exe);
        }
        peer_info_free(&info);

        rc = identify_accepted(c.afd, &skip_self, &info);
        CHECK_EQ(rc, 0);
        CHECK_EQ(info.n, 1);
        CHECK(holds_pid(&info, child));
        /* the child's parent is us */
        CHECK(info.n == 1 && info.procs[0].n >= 2 && strcmp(info.procs[0].exes[1], self_exe) == 0);
        peer_info_free(&info);
        reap_holder(child, go);
    }
    conn3_close(&c);
}

/* The search looks at most at fd_budget processes and fd entries, then refuses to answer. */
static void test_budget(void)
{
    struct peer_limits tiny = {.fd_budget = 1};
    struct peer_info info;
    struct conn3 c;

    if (!conn3_open(&c)) {
        printf("skip budget: no loopback\n");
        return;
    }
    /* this process alone has more than one fd (stdio and the three sockets) */
    CHECK_EQ(identify_accepted(c.afd, &tiny, &info), -E2BIG);
    CHECK_EQ(info.n, 0);

    /* Another process of our uid with 3,000 fds, none on the socket, so that every one of them
     * is read: a budget that covers every process but not those fds refuses, the default one
     * answers. */
    int go[2], extra[3000];
    size_t nextra = 0, nprocs = 0;
    DIR *proc = opendir("/proc");
    for (struct dirent *de; proc && (de = readdir(proc)) != NULL;)
        nprocs += de->d_name[0] >= '0' && de->d_name[0] <= '9';
    if (proc)
        closedir(proc);
    while (nextra < 3000 && (extra[nextra] = dup(c.lfd)) >= 0)
        nextra++;
    CHECK_EQ(pipe(go), 0);
    pid_t child = fork();
    if (child == 0) {
        char b;
        close(c.cfd);
        close(go[1]);
        while (read(go[0], &b, 1) > 0)
            ;
        _exit(0);
    }
    close(go[0]);
    for (size_t i = 0; i < nextra; i++)
        close(extra[i]);
    if (nextra < 3000 || child <= 0) {
        printf("skip budget: could not open 3000 fds\n");
    } else {
        struct peer_limits some = {.fd_budget = nprocs + 64 + 2000};
        CHECK_EQ(identify_accepted(c.afd, &some, &info), -E2BIG);
        CHECK_EQ(identify_accepted(c.afd, NULL, &info), 0);
        check_only_self(&info);
        peer_info_free(&info);
    }
    if (child > 0)
        reap_holder(child, go);
    conn3_close(&c);
}

/* A thread that unshared its fd table keeps the socket after the rest of the process closed it:
 * /proc/PID/fd no longer shows it, /proc/PID/task/TID/fd does. */
struct private_table {
    int ready[2], done[2];
};

static void *private_table_thread(void *arg)
{
    struct private_table *pt = arg;
    char b = 0;

    if (unshare(CLONE_FILES) != 0)
        b = 1;
    if (write(pt->ready[1], &b, 1) != 1)
        return NULL;
    /* Its table (copies of every fd, the client end among them) goes when the thread does. */
    if (read(pt->done[0], &b, 1) != 1)
        return NULL;
    return NULL;
}

static void test_thread_private_table(void)
{
    struct private_table pt;
    struct peer_info info;
    struct conn3 c;
    pthread_t th;
    char b = 1;
    int rc;

    if (!conn3_open(&c)) {
        printf("skip private table: no loopback\n");
        return;
    }
    CHECK_EQ(pipe(pt.ready), 0);
    CHECK_EQ(pipe(pt.done), 0);
    CHECK_EQ(pthread_create(&th, NULL, private_table_thread, &pt), 0);
    CHECK_EQ(read(pt.ready[0], &b, 1), 1);
    if (b != 0) {
        printf("skip private table: unshare(CLONE_FILES) failed\n");
    } else {
        /* Our table drops the client end; the thread's copy stays. */
        close(c.cfd);
        c.cfd = -1;
        rc = identify_accepted(c.afd, NULL, &info);
        CHECK_EQ(rc, 0);
        check_only_self(&info);
        peer_info_free(&info);
    }
    CHECK_EQ(write(pt.done[1], &b, 1), 1);
    pthread_join(th, NULL);
    close(pt.done[1]);
    close(pt.done[0]);
    close(pt.ready[0]);
    close(pt.ready[1]);
    conn3_close(&c);
}

/* A holder whose effective uid is not the socket's (a setuid program the user ran, keeping its
 * socket): its /proc directory shows the effective uid, its status file the real one, which is
 * the socket's. It is searched like any process of the user. Needs root (setresuid). */
static void test_holder_with_another_euid(void)
{
    struct peer_info info;
    struct pollfd pfd;
    int lfd, afd, go[2], status;
    pid_t child;

    if (geteuid() != 0) {
        printf("skip another euid: needs root\n");
        return;
    }
    lfd = listen_on(AF_INET, "127.0.0.1", false);
    CHECK(lfd >= 0);
    CHECK_EQ(pipe(go), 0);
    child = fork();
    if (child == 0) {
        char b;
        close(go[1]);
        /* The socket is made as 65534, then the effective uid goes back to root (saved). */
        if (setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 0) != 0)
            _exit(1);
        int fd = connect_to(AF_INET, "127.0.0.1", lfd);
        if (fd < 0 || seteuid(0) != 0)
            _exit(1);
        while (read(go[0], &b, 1) > 0)
            ;
        _exit(0);
    }
    close(go[0]);
    pfd.fd = lfd;
    pfd.events = POLLIN;
    CHECK(child > 0 && poll(&pfd, 1, 10000) == 1);
    afd = accept(lfd, NULL, NULL);
    CHECK(afd >= 0);
    CHECK_EQ(identify_accepted(afd, NULL, &info), 0);
    CHECK_EQ(info.uid, 65534);
    CHECK_EQ(info.n, 1);
    CHECK(holds_pid(&info, child));
    peer_info_free(&info);
    close(afd);
    close(go[1]);
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(lfd);
}

/* A child in a user namespace of its own, keeping the fds it inherited until go[1] closes. -1
 * when user namespaces are not available here. */
static pid_t fork_in_userns(int go[2], int flags, const char *bind_from, const char *bind_over)
{
    int ready[2];
    char ok = 0;
    pid_t pid;

    if (pipe(go) != 0)
        return -1;
    if (pipe(ready) != 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        char b = 1;
        close(go[1]);
        close(ready[0]);
        if (unshare(CLONE_NEWUSER | flags) != 0)
            b = 0;
        /* What an unprivileged agent can do in there: make a listed path show another file.
         * The new mount namespace's mounts do not propagate back to ours (it is owned by a
         * less privileged user namespace), and private makes sure. */
        if (b && bind_over != NULL &&
            (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
             mount(bind_from, bind_over, NULL, MS_BIND, NULL) != 0))
            b = 0;
        if (write(ready[1], &b, 1) != 1)
            _exit(1);
        while (read(go[0], &b, 1) > 0)
            ;
        _exit(0);
    }
    close(go[0]);
    close(ready[1]);
    if (pid > 0 && (read(ready[0], &ok, 1) != 1 || !ok)) {
        reap_holder(pid, go);
        pid = -1;
    } else if (pid < 0) {
        close(go[1]);
    }
    close(ready[0]);
    return pid;
}

/* A process in another user namespace may have made its own mounts, so the path of its
 * executable proves nothing: the lookup has no answer (-EXDEV), naming it. */
static void test_holder_in_another_user_namespace(void)
{
    struct peer_info info;
    struct conn3 c;
    int go[2];
    pid_t child;

    if (!conn3_open(&c)) {
        printf("skip another user namespace: no loopback\n");
        return;
    }
    child = fork_in_userns(go, 0, NULL, NULL);
    if (child < 0) {
        printf("skip another user namespace: unshare(CLONE_NEWUSER) failed\n");
        conn3_close(&c);
        return;
    }
    close(c.cfd); /* the child alone holds the client's end */
    c.cfd = -1;
    CHECK_EQ(identify_accepted(c.afd, NULL, &info), -EXDEV);
    CHECK_EQ(info.n, 0);
    CHECK_EQ(info.blocker, child);
    peer_info_free(&info);
    reap_holder(child, go);
    conn3_close(&c);
}

/* A scratch directory holding a copy of this binary and an empty decoy file; the decoy stands for
 * a listed program. false (with a reason printed) when it cannot be made. */
struct forgery {
    char dir[32], copy[64], decoy[64], via[96];
    pid_t forger; /* in a user and mount namespace of its own, the copy bind-mounted over decoy */
    int go[2];
};

static bool forgery_open(struct forgery *f, const char *what)
{
    int fd;

    snprintf(f->dir, sizeof(f->dir), "/tmp/airlock-peer-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        printf("skip %s: mkdtemp (%s)\n", what, strerror(errno));
        return false;
    }
    snprintf(f->copy, sizeof(f->copy), "%s/copy", f->dir);
    snprintf(f->decoy, sizeof(f->decoy), "%s/decoy", f->dir);
    fd = open(f->decoy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (fd >= 0)
        close(fd);
    f->forger = fd >= 0 && copy_file(self_exe, f->copy) == 0
                    ? fork_in_userns(f->go, CLONE_NEWNS, f->copy, f->decoy)
                    : -1;
    if (f->forger < 0) {
        printf("skip %s: no user and mount namespace to forge in\n", what);
        unlink(f->copy);
        unlink(f->decoy);
        rmdir(f->dir);
        return false;
    }
    /* The forger's mounts, reached through its root from our namespace. */
    snprintf(f->via, sizeof(f->via), "/proc/%d/root%s", (int)f->forger, f->decoy);
    return true;
}

static void forgery_close(struct forgery *f)
{
    reap_holder(f->forger, f->go);
    unlink(f->copy);
    unlink(f->decoy);
    rmdir(f->dir);
}

/* Run the forged decoy from our own namespaces with args; the child connects to lfd (directly,
 * or through a grandchild running this binary) and the connection is accepted. */
static int run_forged(struct forgery *f, int lfd, const char *mode, pid_t *child)
{
    struct sockaddr_in ls;
    socklen_t llen = sizeof(ls);
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    char port[8];

    if (getsockname(lfd, (struct sockaddr *)&ls, &llen) != 0)
        return -1;
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(ls.sin_port));
    *child = fork();
    if (*child == 0) {
        execl(f->via, f->decoy, mode, port, self_exe, (char *)NULL);
        _exit(127);
    }
    if (*child < 0 || poll(&pfd, 1, 10000) != 1)
        return -1;
    return accept(lfd, NULL, NULL);
}

/* A process of our own namespaces that runs a file through another namespace's mounts (here
 * the forger's bind mount, reached through /proc/PID/root): /proc shows the decoy's path, but
 * the file is the copy, and its mount is not in the process's namespace: no answer. */
static void test_exe_from_another_mount_namespace(void)
{
    struct peer_info info;
    struct forgery f;
    int lfd, afd, status;
    pid_t child;

    if (!forgery_open(&f, "exe from another mount namespace"))
        return;
    lfd = listen_on(AF_INET, "127.0.0.1", false);
    CHECK(lfd >= 0);
    afd = run_forged(&f, lfd, "--child", &child);
    CHECK(afd >= 0);
    if (afd >= 0) {
        CHECK_EQ(identify_accepted(afd, NULL, &info), -EXDEV);
        CHECK_EQ(info.blocker, child);
        peer_info_free(&info);
        close(afd);
    }
    if (child > 0)
        waitpid(child, &status, 0);
    close(lfd);
    forgery_close(&f);
}

/* The same forged process as the parent of an honest one: the holder is identified, and its
 * ancestor chain ends before the forged decoy instead of naming it. */
static void test_forged_ancestor_ends_the_chain(void)
{
    struct peer_info info;
    struct forgery f;
    int lfd, afd, status, rc;
    pid_t child;

    if (!forgery_open(&f, "forged ancestor"))
        return;
    lfd = listen_on(AF_INET, "127.0.0.1", false);
    CHECK(lfd >= 0);
    afd = run_forged(&f, lfd, "--spawn", &child);
    CHECK(afd >= 0);
    if (afd >= 0) {
        rc = identify_accepted(afd, NULL, &info);
        CHECK_EQ(rc, 0);
        if (rc == 0) {
            CHECK_EQ(info.n, 1);
            CHECK_STR(info.procs[0].exes[0], self_exe);
            CHECK_EQ(info.procs[0].n, 1);
            for (size_t i = 0; i < info.procs[0].n; i++)
                CHECK(strcmp(info.procs[0].exes[i], f.decoy) != 0);
        }
        peer_info_free(&info);
        close(afd);
    }
    if (child > 0)
        waitpid(child, &status, 0);
    close(lfd);
    forgery_close(&f);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2]);
    if (argc == 4 && strcmp(argv[1], "--spawn") == 0)
        return spawn_main(argv[2], argv[3]);
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
    RUN(test_shared_socket);
    RUN(test_budget);
    RUN(test_thread_private_table);
    RUN(test_holder_with_another_euid);
    RUN(test_holder_in_another_user_namespace);
    RUN(test_exe_from_another_mount_namespace);
    RUN(test_forged_ancestor_ends_the_chain);
    return test_report();
}
