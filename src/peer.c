/* SPDX-License-Identifier: MIT */
/* peer: from a loopback TCP 4-tuple to the executables of the process holding the client end,
 * through /proc/net/tcp{,6}, /proc/PID/fd, /proc/PID/exe and /proc/PID/stat (Linux only).
 * Owns no state: every call opens, reads and closes its own files, so calls may run on any
 * number of pool threads at once. Answers are best effort against a changing /proc, and a
 * missing answer is an error (-ENOENT), never a guess. */
#include "airlock/peer.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* A row is "sl: local remote st tx:rx tr:when retrnsmt uid timeout inode ...". */
static bool parse_row(const char *line, bool v6, struct endpoint *local, struct endpoint *remote,
                      unsigned long *inode)
{
    const char *p = line, *tok = NULL;
    size_t len = 0;
    char *end;

    if (next_token(&p, &len) == NULL) /* sl */
        return false;
    tok = next_token(&p, &len);
    if (tok == NULL || !parse_endpoint(tok, len, v6, local))
        return false;
    tok = next_token(&p, &len);
    if (tok == NULL || !parse_endpoint(tok, len, v6, remote))
        return false;
    for (int i = 0; i < 7; i++) /* st through inode */
        if ((tok = next_token(&p, &len)) == NULL)
            return false;
    if (!isdigit((unsigned char)tok[0]))
        return false;
    errno = 0;
    *inode = strtoul(tok, &end, 10);
    return errno == 0 && end == tok + len;
}

static int scan_table(const char *path, bool v6, const struct endpoint *local,
                      const struct endpoint *remote, unsigned long *inode)
{
    struct endpoint l, r;
    unsigned long ino;
    char *line = NULL;
    size_t cap = 0;
    int rc = -ENOENT;
    FILE *f = fopen(path, "re");

    if (f == NULL)
        return -errno;
    /* The first line is the column header, which parse_row() rejects. */
    while (getline(&line, &cap, f) != -1) {
        /* Inode 0 is a socket no process holds any more (TIME_WAIT, or orphaned). */
        if (parse_row(line, v6, &l, &r, &ino) && ino != 0 && endpoint_eq(&l, local) &&
            endpoint_eq(&r, remote)) {
            *inode = ino;
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

/* The client's socket may be either family whatever ours is (an AF_INET6 client can dial
 * ::ffff:127.0.0.1 and reach an AF_INET listener), so both tables are searched. tcp6 is absent
 * on a kernel without IPv6, which is no error. */
static int find_inode(const struct endpoint *local, const struct endpoint *remote,
                      unsigned long *inode)
{
    int rc4 = scan_table("/proc/net/tcp", false, local, remote, inode);
    int rc6;

    if (rc4 == 0)
        return 0;
    rc6 = scan_table("/proc/net/tcp6", true, local, remote, inode);
    if (rc6 == 0)
        return 0;
    return rc4 != -ENOENT ? rc4 : rc6;
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

/* Whether any fd of the process whose /proc directory is name links to want. */
static bool holds_socket(int proc_fd, const char *name, const char *want, size_t wlen)
{
    char path[300], link[64]; /* a d_name is at most 255 bytes */
    struct dirent *de;
    bool found = false;
    DIR *fds;
    int fd;

    snprintf(path, sizeof(path), "%s/fd", name);
    fd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    fds = fdopendir(fd);
    if (fds == NULL) {
        close(fd);
        return false;
    }
    while (!found && (de = readdir(fds)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        ssize_t n = readlinkat(fd, de->d_name, link, sizeof(link));
        found = n == (ssize_t)wlen && memcmp(link, want, wlen) == 0;
    }
    closedir(fds);
    return found;
}

/* The first process, in /proc order, with an fd on the socket. A forked child may share it,
 * and any holder is as much the peer as another; stopping at the first keeps a busy machine's
 * scan short. Processes we may not inspect (exited, or another user's without
 * CAP_SYS_PTRACE) are skipped. */
static int find_pid(unsigned long inode, pid_t *pid)
{
    char want[48];
    struct dirent *de;
    int rc = -ENOENT;
    size_t wlen;
    DIR *proc;

    wlen = (size_t)snprintf(want, sizeof(want), "socket:[%lu]", inode);
    proc = opendir("/proc");
    if (proc == NULL)
        return -errno;
    while ((de = readdir(proc)) != NULL) {
        if (!is_pid_name(de->d_name))
            continue;
        if (holds_socket(dirfd(proc), de->d_name, want, wlen)) {
            *pid = (pid_t)strtol(de->d_name, NULL, 10);
            rc = 0;
            break;
        }
    }
    closedir(proc);
    return rc;
}

static int read_exe(pid_t pid, char **out)
{
    static const char deleted[] = " (deleted)";
    const size_t dlen = sizeof(deleted) - 1;
    char path[32], buf[PATH_MAX];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    n = readlink(path, buf, sizeof(buf));
    if (n < 0)
        return -errno;
    if ((size_t)n >= sizeof(buf))
        return -ENAMETOOLONG;
    /* The kernel appends " (deleted)" when the binary was unlinked or replaced after exec
     * (d_path()), as a package upgrade does to a running program: it still ran from that path. */
    if ((size_t)n > dlen && memcmp(buf + n - dlen, deleted, dlen) == 0)
        n -= (ssize_t)dlen;
    buf[n] = '\0';
    *out = strdup(buf);
    return *out ? 0 : -ENOMEM;
}

/* ppid from /proc/PID/stat, "pid (comm) state ppid ...". comm is the program's own choice of up
 * to 15 bytes and may hold spaces and parentheses, so the fields are read after the last ')'. */
static int read_ppid(pid_t pid, pid_t *ppid)
{
    char path[32], buf[512];
    const char *p;
    ssize_t n;
    int fd, v;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, buf, sizeof(buf) - 1);
    if (n < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    close(fd);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 1, " %*c %d", &v) != 1 || v < 0)
        return -EINVAL;
    *ppid = (pid_t)v;
    return 0;
}

void peer_exes_free(struct peer_exes *e)
{
    if (e == NULL)
        return;
    for (size_t i = 0; i < e->n; i++) {
        free(e->paths[i]);
        e->paths[i] = NULL;
    }
    e->n = 0;
}

int peer_identify(const struct sockaddr *peer_addr, const struct sockaddr *our_addr,
                  struct peer_exes *out)
{
    struct endpoint local, remote;
    unsigned long inode;
    pid_t pid = 0, ppid;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = endpoint_of(peer_addr, &local)) != 0 || (rc = endpoint_of(our_addr, &remote)) != 0)
        return rc;
    /* The client's socket is the row whose local side is the peer and whose remote side is us;
     * our accepted socket is the mirror row and must not match. */
    if ((rc = find_inode(&local, &remote, &inode)) != 0)
        return rc;
    if ((rc = find_pid(inode, &pid)) != 0)
        return rc;

    /* The process's own exe must be readable, or there is no answer. After that, an ancestor
     * that has exited or is not ours to read ends the chain: a shorter chain can only match
     * fewer `binaries` entries, never more. PID 1 is init (or a container's), whose exe says
     * nothing about the client, and ppid 0 means the parent is outside our PID namespace. */
    for (;;) {
        rc = read_exe(pid, &out->paths[out->n]);
        if (rc != 0)
            break;
        out->n++;
        if (out->n == PEER_MAX_EXES || read_ppid(pid, &ppid) != 0 || ppid <= 1)
            break;
        pid = ppid;
    }
    if (out->n == 0)
        return rc;
    out->paths[out->n] = NULL;
    return 0;
}
