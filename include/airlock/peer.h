/* SPDX-License-Identifier: MIT */
/* peer: which executable is on the other end of an accepted loopback TCP connection (Linux).
 * The client's 4-tuple is looked up in /proc/net/tcp and tcp6 to find the socket inode, the
 * process holding it is found through /proc/PID/fd, and its /proc/PID/exe and those of its
 * ancestors are read. Blocking file I/O: call it from a worker thread (uv_queue_work), never
 * on the event loop. */
#ifndef AIRLOCK_PEER_H
#define AIRLOCK_PEER_H

#include <stddef.h>
#include <sys/socket.h>

#define PEER_MAX_EXES 16

struct peer_exes {
    size_t n;
    char *paths[PEER_MAX_EXES + 1]; /* malloc'd absolute paths, NULL-terminated: the process
                                     * itself first, then its ancestors up to (not incl.) PID 1 */
};

/* Identify the process owning the socket whose local address is peer_addr (the client's side)
 * and remote address is our_addr. 0 and out filled, or a negative errno (-ENOENT when no
 * process could be found, e.g. another PID namespace). */
int peer_identify(const struct sockaddr *peer_addr, const struct sockaddr *our_addr,
                  struct peer_exes *out);
void peer_exes_free(struct peer_exes *e);

#endif
