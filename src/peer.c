/* SPDX-License-Identifier: MIT */
/* peer: from a loopback TCP 4-tuple to the executables of every process holding the client end,
 * through NETLINK_SOCK_DIAG (or /proc/net/tcp{,6}), /proc/PID/task/TID/fd, /proc/PID/exe and
 * /proc/PID/stat (Linux only). Owns no state: every call opens, reads and closes its own files,
 * so calls may run on any number of pool threads at once. Answers are best effort against a
 * changing /proc, and a missing or partial answer is an error, never a guess. */
#include "airlock/peer.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/kcmp.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* One side of a TCP connection, IPv4 held as ::ffff:a.b.c.d so that both tables and both
 * socket families compare alike: a client's AF_INET socket shows in /proc/net/tcp as plain
 * IPv4 while a dual-stack listener sees it as IPv4-mapped (RFC 4291 §2.5.5.2). */
struct endpoint {
    uint8_t addr[16];
    uint16_t port; /* host order */
};

static void set_mapped(uint8_t *addr, const void *v4)
{
    memset(addr, 0, 10);
    addr[10] = addr[11] = 0xff;
    memcpy(addr + 12, v4, 4);
}

static int endpoint_of(const struct sockaddr *sa, struct endpoint *ep)
{
    if (sa == NULL)
        return -EINVAL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        set_mapped(ep->addr, &sin->sin_addr.s_addr);
        ep->port = ntohs(sin->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        memcpy(ep->addr, sin6->sin6_addr.s6_addr, 16);
        ep->port = ntohs(sin6->sin6_port);
        return 0;
    }
    return -EAFNOSUPPORT;
}

static bool endpoint_eq(const struct endpoint *a, const struct endpoint *b)
{
    return a->port == b->port && memcmp(a->addr, b->addr, 16) == 0;
}

/* Exactly n hex digits at p. */
static bool parse_hex(const char *p, size_t n, uint32_t *out)
{
    uint32_t v = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return false;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return true;
}

/* "0100007F:1F90" or the 32-digit IPv6 form. The kernel prints each 32-bit word of the address
 * as a native integer (seq_printf "%08X" of a __be32 in tcp4_seq_show, of s6_addr32[i] in
 * tcp6_seq_show), so storing each parsed word back in native order restores the network-order
 * bytes on either endianness. The port is printed after ntohs(), so it is already host order. */
static bool parse_endpoint(const char *tok, size_t len, bool v6, struct endpoint *ep)
{
    size_t words = v6 ? 4 : 1;
    uint32_t w, port;

    if (len != words * 8 + 5 || tok[words * 8] != ':')
        return false;
    for (size_t i = 0; i < words; i++) {
        if (!parse_hex(tok + i * 8, 8, &w))
            return false;
        if (v6)
            memcpy(ep->addr + i * 4, &w, 4);
        else
            set_mapped(ep->addr, &w);
    }
    if (!parse_hex(tok + words * 8 + 1, 4, &port))
        return false;
    ep->port = (uint16_t)port;
    return true;
}

/* The next whitespace-separated token at *p, advancing *p past it. */
static const char *next_token(const char **p, size_t *len)
{
    const char *s = *p, *start;

    while (*s == ' ' || *s == '\t')
        s++;
    start = s;
    while (*s != '\0' && *s != ' ' && *s != '\t' && *s != '\n')
        s++;
    *p = s;
    *len = (size_t)(s - start);
    return *len ? start : NULL;
}

static bool parse_decimal(const char *tok, size_t len, unsigned long *out)
{
    char *end;

    if (!isdigit((unsigned char)tok[0]))
        return false;
    errno = 0;
    *out = strtoul(tok, &end, 10);
    return errno == 0 && end == tok + len;
}

/* A row is "sl: local remote st tx:rx tr:when retrnsmt uid timeout inode ...". */
static bool parse_row(const char *line, bool v6, struct endpoint *local, struct endpoint *remote,
                      unsigned long *uid, unsigned long *inode)
{
    const char *p = line, *tok = NULL;
    size_t len = 0;

    if (next_token(&p, &len) == NULL) /* sl */
        return false;
    tok = next_token(&p, &len);
    if (tok == NULL || !parse_endpoint(tok, len, v6, local))
        return false;
    tok = next_token(&p, &len);
    if (tok == NULL || !parse_endpoint(tok, len, v6, remote))
        return false;
    /* st, tx:rx, tr:when and retrnsmt, then the decimal uid, timeout and inode */
    for (int i = 0; i < 7; i++) {
        if ((tok = next_token(&p, &len)) == NULL)
            return false;
        if ((i == 4 && !parse_decimal(tok, len, uid)) ||
            (i == 6 && !parse_decimal(tok, len, inode)))
            return false;
    }
    return true;
}

static int scan_table(const char *path, bool v6, const struct endpoint *local,
                      const struct endpoint *remote, unsigned long *inode, uid_t *uid)
{
    struct endpoint l, r;
    unsigned long ino, u;
    char *line = NULL;
    size_t cap = 0;
    int rc = -ENOENT;
    FILE *f = fopen(path, "re");

    if (f == NULL)
        return -errno;
    /* The first line is the column header, which parse_row() rejects. */
    while (getline(&line, &cap, f) != -1) {
        /* Inode 0 is a socket no process holds any more (TIME_WAIT, or orphaned). */
        if (parse_row(line, v6, &l, &r, &u, &ino) && ino != 0 && endpoint_eq(&l, local) &&
            endpoint_eq(&r, remote)) {
            *inode = ino;
            *uid = (uid_t)u;
            rc = 0;
            break;
        }
    }
    if (rc != 0 && ferror(f))
        rc = -EIO;
    free(line);
    fclose(f);
    return rc;
}

/* The slow way, for a kernel without inet_diag: every TCP socket of the namespace is a row.
 * The client's socket may be either family whatever ours is (an AF_INET6 client can dial
 * ::ffff:127.0.0.1 and reach an AF_INET listener), so both tables are searched. tcp6 is absent
 * on a kernel without IPv6, which is no error. */
static int find_socket_proc(const struct endpoint *local, const struct endpoint *remote,
                            unsigned long *inode, uid_t *uid)
{
    int rc4 = scan_table("/proc/net/tcp", false, local, remote, inode, uid);
    int rc6;

    if (rc4 == 0)
        return 0;
    rc6 = scan_table("/proc/net/tcp6", true, local, remote, inode, uid);
    if (rc6 == 0)
        return 0;
    return rc4 != -ENOENT ? rc4 : rc6;
}

static bool is_mapped(const struct endpoint *ep)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(ep->addr, prefix, sizeof(prefix)) == 0;
}

/* Fill the 4-tuple of an inet_diag request or answer in the family's layout. */
static void diag_set_addr(__be32 *dst, const struct endpoint *ep, int family)
{
    if (family == AF_INET)
        memcpy(dst, ep->addr + 12, 4);
    else
        memcpy(dst, ep->addr, 16);
}

/* One exact-match SOCK_DIAG_BY_FAMILY request (no dump): the kernel looks the 4-tuple up in its
 * hash table, so the cost does not grow with the number of sockets. The answer is queued before
 * sendto() returns (the kernel handles a netlink request in the sender's context), so the read
 * need not block. */
static int find_socket_diag(int family, const struct endpoint *local, const struct endpoint *remote,
                            unsigned long *inode, uid_t *uid)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    union {
        struct nlmsghdr nlh;
        char bytes[8192];
    } ans;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    int rc = -ENOENT;
    ssize_t n;

    memset(&msg, 0, sizeof(msg));
    msg.nlh.nlmsg_len = sizeof(msg);
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.nlh.nlmsg_seq = 1;
    msg.req.sdiag_family = (uint8_t)family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    /* The client's socket: its source is the peer, its destination is us. */
    msg.req.id.idiag_sport = htons(local->port);
    msg.req.id.idiag_dport = htons(remote->port);
    diag_set_addr(msg.req.id.idiag_src, local, family);
    diag_set_addr(msg.req.id.idiag_dst, remote, family);
    msg.req.id.idiag_cookie[0] = msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0)
        return -errno;
    if (sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    n = recv(fd, &ans, sizeof(ans), MSG_DONTWAIT);
    if (n < 0)
        rc = -errno;
    close(fd);
    for (struct nlmsghdr *h = &ans.nlh; n > 0 && NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);
            if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(*e)) && e->error < 0)
                rc = e->error;
            break;
        }
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
            h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
            continue;
        const struct inet_diag_msg *m = NLMSG_DATA(h);
        /* The lookup falls back to a listener on the requested destination: only the exact
         * socket will do. Inode 0 is one no process holds any more (TIME_WAIT). */
        if (m->id.idiag_sport != msg.req.id.idiag_sport ||
            m->id.idiag_dport != msg.req.id.idiag_dport || m->idiag_inode == 0)
            break;
        *inode = m->idiag_inode;
        *uid = (uid_t)m->idiag_uid;
        rc = 0;
        break;
    }
    return rc;
}

/* The client's socket inode and owner. An IPv4-mapped tuple is asked as IPv4: the kernel keeps
 * both families' sockets in one hash, where a dual-stack socket talking to IPv4 is found by its
 * IPv4 addresses. Any netlink failure (no inet_diag module, a seccomp filter, or a socket gone)
 * falls back to reading the tables, which gives the same answer more slowly. */
static int find_socket(const struct endpoint *local, const struct endpoint *remote,
                       const struct peer_limits *lim, unsigned long *inode, uid_t *uid)
{
    if (!lim->proc_net) {
        int family = is_mapped(local) && is_mapped(remote) ? AF_INET : AF_INET6;
        if (find_socket_diag(family, local, remote, inode, uid) == 0)
            return 0;
    }
    return find_socket_proc(local, remote, inode, uid);
}

/* A process or thread that exited while we looked at it: it holds nothing any more. */
static bool gone(int rc)
{
    return rc == -ENOENT || rc == -ESRCH;
}

static bool is_pid_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Read a small /proc file at dirfd/path into buf (NUL-terminated). 0 or -errno. */
static int read_small(int dirfd, const char *path, char *buf, size_t cap)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = read(fd, buf, cap - 1);
    if (n < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    close(fd);
    buf[n] = '\0';
    return 0;
}

/* Whether the process whose /proc directory is name runs as uid: its real, effective, saved or
 * filesystem uid. The directory's owner is the effective uid, which answers most processes with
 * one stat; a program of the user that runs setuid (real uid the user's, effective another) is
 * checked in its status file. 1, 0, or -errno (-ENOENT: it exited). */
static int runs_as(int proc_fd, const char *name, uid_t uid)
{
    char path[300], buf[2048]; /* "Uid:" is the ninth line, after a comm of at most 64 bytes */
    unsigned long ids[4];
    struct stat st;
    const char *line;
    int rc;

    if (fstatat(proc_fd, name, &st, 0) != 0)
        return -errno;
    if (st.st_uid == uid)
        return 1;
    snprintf(path, sizeof(path), "%s/status", name);
    if ((rc = read_small(proc_fd, path, buf, sizeof(buf))) != 0)
        return rc;
    line = strstr(buf, "\nUid:");
    if (line == NULL ||
        sscanf(line + 5, "%lu %lu %lu %lu", &ids[0], &ids[1], &ids[2], &ids[3]) != 4)
        return -EINVAL;
    for (int i = 0; i < 4; i++)
        if (ids[i] == uid)
            return 1;
    return 0;
}

/* The socket searched for, and what the search may still cost. */
struct search {
    char want[48]; /* "socket:[INODE]", as readlink shows an fd on it */
    size_t wlen;
    size_t budget; /* fd entries and processes left to look at */
};

/* Charge one unit of work: false once the budget is spent. */
static bool spend(struct search *s)
{
    if (s->budget == 0)
        return false;
    s->budget--;
    return true;
}

/* Whether the fd table listed at dirfd/path links to the socket. 1, 0, or -errno (-E2BIG when
 * the budget runs out). */
static int table_holds(int dirfd, const char *path, struct search *s)
{
    char link[64];
    struct dirent *de;
    int rc = 0, fd;
    DIR *fds;

    fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    fds = fdopendir(fd);
    if (fds == NULL) {
        rc = -errno;
        close(fd);
        return rc;
    }
    while (rc == 0 && (de = readdir(fds)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (!spend(s)) {
            rc = -E2BIG;
            break;
        }
        ssize_t n = readlinkat(fd, de->d_name, link, sizeof(link));
        if (n == (ssize_t)s->wlen && memcmp(link, s->want, s->wlen) == 0)
            rc = 1;
        else if (n < 0 && (errno == EACCES || errno == EPERM)) /* else the fd just closed */
            rc = -EACCES;
    }
    closedir(fds);
    return rc;
}

/* Whether task tid uses the same fd table as one already searched. Without kcmp (a kernel
 * without CONFIG_CHECKPOINT_RESTORE) every table is searched. */
static bool table_searched(pid_t tid, const pid_t *searched, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (syscall(SYS_kcmp, searched[i], tid, KCMP_FILES, 0, 0) == 0)
            return true;
    return false;
}

/* Whether any thread of the process whose /proc directory is name holds the socket: 1 with *tid
 * the thread whose table has it, 0, or -errno. The threads of a process usually share one fd
 * table, searched once. A thread that unshared its table (unshare(CLONE_FILES)), or one that
 * outlived the thread-group leader (whose /proc/PID/fd is then empty), has its own, which
 * /proc/PID/fd does not show: each is found through /proc/PID/task and searched apart. */
static int process_holds(int proc_fd, const char *name, struct search *s, pid_t *tid)
{
    pid_t searched[8];
    size_t nsearched = 0;
    char path[300];
    struct dirent *de;
    int rc = 0, fd;
    DIR *tasks;

    snprintf(path, sizeof(path), "%s/task", name);
    fd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    tasks = fdopendir(fd);
    if (tasks == NULL) {
        rc = -errno;
        close(fd);
        return rc;
    }
    while (rc == 0 && (de = readdir(tasks)) != NULL) {
        if (!is_pid_name(de->d_name))
            continue;
        pid_t t = (pid_t)strtol(de->d_name, NULL, 10);
        if (table_searched(t, searched, nsearched))
            continue;
        snprintf(path, sizeof(path), "%s/fd", de->d_name);
        rc = table_holds(fd, path, s);
        if (gone(rc)) /* the thread exited */
            rc = 0;
        else if (rc == 1)
            *tid = t;
        else if (rc == 0 && nsearched < sizeof(searched) / sizeof(searched[0]))
            searched[nsearched++] = t;
    }
    closedir(tasks);
    return rc;
}

/* Every process, in /proc order, with an fd on the socket, apart from lim->skip_pid. Only the
 * processes that run as the socket's owner are searched: the socket was made by that uid, and
 * it reaches a process of another user only if that user takes part (an fd passed over a unix
 * socket). Searching the others would make every lookup pay for every busy daemon on the
 * machine. A process of that uid that cannot be searched (we lack CAP_SYS_PTRACE over it) makes
 * the answer unknown. */
static int find_holders(unsigned long inode, uid_t uid, const struct peer_limits *lim, pid_t *pids,
                        pid_t *tids, size_t *n, pid_t *blocker)
{
    struct search s;
    struct dirent *de;
    int rc = 0;
    DIR *proc;

    s.wlen = (size_t)snprintf(s.want, sizeof(s.want), "socket:[%lu]", inode);
    s.budget = lim->fd_budget;
    *n = 0;
    proc = opendir("/proc");
    if (proc == NULL)
        return -errno;
    while (rc == 0 && (de = readdir(proc)) != NULL) {
        if (!is_pid_name(de->d_name))
            continue;
        pid_t pid = (pid_t)strtol(de->d_name, NULL, 10), tid = 0;
        if (pid == lim->skip_pid)
            continue;
        if (!spend(&s)) {
            rc = -E2BIG;
            break;
        }
        rc = runs_as(dirfd(proc), de->d_name, uid);
        if (rc == 1)
            rc = process_holds(dirfd(proc), de->d_name, &s, &tid);
        if (gone(rc)) /* it exited while we looked */
            rc = 0;
        /* PID 1 that we may not inspect is the runtime's init (a container's, a sandbox
         * supervisor), protected from the processes it runs: not a client. */
        if (pid == 1 && (rc == -EACCES || rc == -EPERM))
            rc = 0;
        if (rc < 0)
            *blocker = pid;
        if (rc == 1) {
            rc = 0;
            if (*n == PEER_MAX_HOLDERS) {
                rc = -E2BIG;
                break;
            }
            pids[*n] = pid;
            tids[*n] = tid;
            (*n)++;
        }
    }
    closedir(proc);
    if (rc == 0 && *n == 0)
        rc = -ENOENT;
    return rc;
}

/* The path of the file open at fd, as /proc shows it to us. The kernel appends " (deleted)" when
 * the file was unlinked or replaced after exec (d_path()), as a package upgrade does to a running
 * program: it still ran from that path. */
static int fd_path(int fd, char **out)
{
    static const char deleted[] = " (deleted)";
    const size_t dlen = sizeof(deleted) - 1;
    char link[64], buf[PATH_MAX];
    ssize_t n;

    snprintf(link, sizeof(link), "/proc/thread-self/fd/%d", fd);
    n = readlink(link, buf, sizeof(buf));
    if (n < 0)
        return -errno;
    if ((size_t)n >= sizeof(buf))
        return -ENAMETOOLONG;
    if ((size_t)n > dlen && memcmp(buf + n - dlen, deleted, dlen) == 0)
        n -= (ssize_t)dlen;
    buf[n] = '\0';
    *out = strdup(buf);
    return *out ? 0 : -ENOMEM;
}

/* The id of the mount the file open at fd lives on (fdinfo's "mnt_id:", Linux 3.15). Mount ids
 * are unique across every mount namespace. */
static int fd_mount_id(int fd, unsigned long *id)
{
    char path[64], buf[512];
    const char *p;
    int rc;

    snprintf(path, sizeof(path), "/proc/thread-self/fdinfo/%d", fd);
    if ((rc = read_small(AT_FDCWD, path, buf, sizeof(buf))) != 0)
        return rc;
    p = strstr(buf, "mnt_id:");
    if (p == NULL || sscanf(p + 7, "%lu", id) != 1)
        return -EINVAL;
    return 0;
}

/* Whether mount id is one of the mounts of the namespace dir/mountinfo lists: 0, -EXDEV when it
 * is not, or -errno. */
static int mount_listed(const char *dir, unsigned long id)
{
    char path[64], *line = NULL;
    size_t cap = 0;
    int rc = -EXDEV;
    FILE *f;

    snprintf(path, sizeof(path), "%s/mountinfo", dir);
    if ((f = fopen(path, "re")) == NULL)
        return -errno;
    while (rc == -EXDEV && getline(&line, &cap, f) != -1) {
        char *end;
        if (strtoul(line, &end, 10) == id && end != line && *end == ' ')
            rc = 0;
    }
    if (rc != 0 && ferror(f))
        rc = -EIO;
    free(line);
    fclose(f);
    return rc;
}

/* Whether the process at dir is in our own user namespace: 0, -EXDEV, or -errno. */
static int same_user_ns(const char *dir, const struct stat *ours)
{
    char path[64];
    struct stat st;

    snprintf(path, sizeof(path), "%s/ns/user", dir);
    if (stat(path, &st) != 0)
        return -errno;
    return st.st_dev == ours->st_dev && st.st_ino == ours->st_ino ? 0 : -EXDEV;
}

/* The executable of the process (or thread) whose /proc directory is dir, if its path can be
 * taken at its word, else -EXDEV. The path /proc shows is where the file sits in the mount tree
 * it was executed from, and mounts can be forged: by a process in a user namespace of its own
 * (unshare -Urm, then a bind mount over a listed program), or by one that executes a file
 * through another namespace's mounts (/proc/PID/root/usr/bin/curl). So the executable's mount
 * must be one of the process's own mount namespace, and the process must be in our user
 * namespace, where making or changing a mount namespace takes CAP_SYS_ADMIN over us. The file
 * is pinned first, so that an exec meanwhile cannot swap it; the user namespace is read last
 * because a process can leave ours but never come back, so finding it there then means its
 * mount namespace, read before, was one it could not have changed. */
static int read_exe(const char *dir, const struct stat *our_userns, char **out)
{
    char path[64];
    unsigned long mnt;
    int fd, rc;

    *out = NULL;
    snprintf(path, sizeof(path), "%s/exe", dir);
    if ((fd = open(path, O_PATH | O_CLOEXEC)) < 0)
        return -errno;
    if ((rc = fd_path(fd, out)) == 0 && (rc = fd_mount_id(fd, &mnt)) == 0 &&
        (rc = mount_listed(dir, mnt)) == 0)
        rc = same_user_ns(dir, our_userns);
    close(fd);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

/* ppid from /proc/PID/stat, "pid (comm) state ppid ...". comm is the program's own choice of up
 * to 15 bytes and may hold spaces and parentheses, so the fields are read after the last ')'. */
static int read_ppid(pid_t pid, pid_t *ppid)
{
    char path[32], buf[512];
    const char *p;
    int rc, v;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((rc = read_small(AT_FDCWD, path, buf, sizeof(buf))) != 0)
        return rc;
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %*c %d", &v) != 1 || v < 0)
        return -EINVAL;
    *ppid = (pid_t)v;
    return 0;
}

/* The holder's own exe (read through the thread that holds the socket: a thread-group leader
 * that has exited has no exe link of its own) must be readable and vouched for, or there is no
 * answer. After that, an ancestor that has exited, is not ours to read or cannot be vouched for
 * ends the chain: a shorter chain can only match fewer `binaries` entries, never more. PID 1 is
 * init (or a container's), whose exe says nothing about the client, and ppid 0 means the parent
 * is outside our PID namespace. */
static int read_chain(pid_t pid, pid_t tid, const struct stat *our_userns, struct peer_process *p)
{
    char dir[64];
    pid_t ppid;
    int rc;

    p->pid = pid;
    snprintf(dir, sizeof(dir), "/proc/%d/task/%d", (int)pid, (int)tid);
    if ((rc = read_exe(dir, our_userns, &p->exes[0])) != 0)
        return rc;
    p->n = 1;
    while (p->n < PEER_MAX_EXES && read_ppid(pid, &ppid) == 0 && ppid > 1) {
        pid = ppid;
        snprintf(dir, sizeof(dir), "/proc/%d", (int)pid);
        if (read_exe(dir, our_userns, &p->exes[p->n]) != 0)
            break;
        p->n++;
    }
    p->exes[p->n] = NULL;
    return 0;
}

void peer_info_free(struct peer_info *info)
{
    if (info == NULL)
        return;
    for (size_t i = 0; i < info->n; i++) {
        struct peer_process *p = &info->procs[i];
        for (size_t j = 0; j < p->n; j++) {
            free(p->exes[j]);
            p->exes[j] = NULL;
        }
        p->n = 0;
    }
    info->n = 0;
}

const char *peer_strerror(int rc)
{
    switch (rc) {
    case -ENOENT:
        return "no process found holding the client's socket";
    case -EACCES:
    case -EPERM:
        return "a process of the client's user could not be inspected (airlock needs "
               "CAP_SYS_PTRACE over it)";
    case -E2BIG:
        return "too many open files or processes to inspect";
    case -EXDEV:
        return "a process holding the client's socket runs a file whose path cannot be trusted "
               "(it is in another user namespace, or ran its executable from outside its own "
               "mount namespace)";
    case -EAFNOSUPPORT:
        return "not a TCP/IP client";
    default:
        return "could not read /proc";
    }
}

int peer_identify(const struct sockaddr *peer_addr, const struct sockaddr *our_addr,
                  const struct peer_limits *lim, struct peer_info *out)
{
    static const struct peer_limits defaults = {.fd_budget = PEER_FD_BUDGET};
    pid_t pids[PEER_MAX_HOLDERS], tids[PEER_MAX_HOLDERS];
    struct endpoint local, remote;
    struct stat our_userns;
    size_t n = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (lim == NULL)
        lim = &defaults;
    if ((rc = endpoint_of(peer_addr, &local)) != 0 || (rc = endpoint_of(our_addr, &remote)) != 0)
        return rc;
    /* The client's socket is the one whose local side is the peer and whose remote side is us;
     * our accepted socket is the mirror and must not match. */
    if ((rc = find_socket(&local, &remote, lim, &out->inode, &out->uid)) != 0)
        return rc;
    if ((rc = find_holders(out->inode, out->uid, lim, pids, tids, &n, &out->blocker)) != 0)
        return rc;
    if (stat("/proc/self/ns/user", &our_userns) != 0)
        return -errno;
    for (size_t i = 0; i < n; i++) {
        rc = read_chain(pids[i], tids[i], &our_userns, &out->procs[out->n]);
        if (gone(rc)) /* it exited since: it holds nothing any more */
            continue;
        if (rc != 0) {
            peer_info_free(out);
            out->blocker = pids[i];
            return rc;
        }
        out->n++;
    }
    return out->n ? 0 : -ENOENT;
}
