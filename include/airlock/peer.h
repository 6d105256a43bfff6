/* SPDX-License-Identifier: MIT */
/* peer: which executables are on the other end of an accepted loopback TCP connection (Linux).
 * The client's socket is looked up by its 4-tuple (NETLINK_SOCK_DIAG, else /proc/net/tcp{,6}),
 * which gives its inode and owner uid. Every process that holds that socket is then found by
 * searching the fd tables (/proc/PID/task/TID/fd) of the processes that run as that uid, and the
 * exe of each holder and of its ancestors is read. Any holder may be the one writing on the
 * socket, so all of them are reported: a caller that trusts only the first would let a process
 * borrow the identity of another that shares its socket. An exe path is reported only when its
 * mounts cannot have been forged: the process is in our user namespace and ran a file of its
 * own mount namespace. Blocking file I/O: call it from a worker thread (uv_queue_work), never on
 * the event loop. */
#ifndef AIRLOCK_PEER_H
#define AIRLOCK_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PEER_MAX_EXES    16 /* per holder: the process itself, then its ancestors */
#define PEER_MAX_HOLDERS 16 /* processes sharing one socket; more is not an answer */

/* The default bound on one lookup's work: the processes it looks at plus the fd entries it
 * reads. An fd costs 3 to 7 us to read, so a lookup holds a pool thread for at most a few
 * hundred ms. */
#define PEER_FD_BUDGET (64 * 1024)

struct peer_process {
    pid_t pid;
    size_t n;
    char *exes[PEER_MAX_EXES + 1]; /* malloc'd absolute paths, NULL-terminated: the process
                                    * itself first, then its ancestors up to (not incl.) PID 1
                                    * or the first one whose path cannot be trusted */
};

struct peer_info {
    unsigned long inode; /* the client's socket */
    uid_t uid;           /* its owner (the creator's fsuid) */
    size_t n;            /* holders, in /proc order */
    struct peer_process procs[PEER_MAX_HOLDERS];
    pid_t blocker; /* on an error, the process it came from (0: none in particular) */
};

struct peer_limits {
    size_t fd_budget; /* processes looked at plus fd entries read, at most, before giving up
                       * with -E2BIG */
    pid_t skip_pid;   /* a process never searched (the caller's own: it is not its own client;
                       * 0 for none) */
    bool proc_net;    /* find the socket through /proc/net/tcp{,6} only (tests the fallback) */
};

/* Identify every process holding the socket whose local address is peer_addr (the client's
 * side) and remote address is our_addr. 0 with out filled (n >= 1), or a negative errno, and
 * then out is empty but for blocker: -ENOENT when the socket or its holders cannot be found
 * (e.g. another PID namespace), -EACCES when a process of the socket's uid could not be searched
 * or a holder's exe not read (the set of holders is then unknown), -E2BIG when the budget ran
 * out or more than PEER_MAX_HOLDERS processes hold it, -EXDEV when a holder's exe path cannot be
 * trusted (it is in another user namespace, whose mounts it may have made, or its executable's
 * mount is not in its own mount namespace). lim NULL: PEER_FD_BUDGET, no skipped process. */
int peer_identify(const struct sockaddr *peer_addr, const struct sockaddr *our_addr,
                  const struct peer_limits *lim, struct peer_info *out);
void peer_info_free(struct peer_info *p);

/* Static text for a peer_identify() error, for logs. */
const char *peer_strerror(int rc);

#endif
