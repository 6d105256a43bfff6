/* SPDX-License-Identifier: MIT */
/* resolve: DNS lookups off the event loops, on airlock's own thread pool (not libuv's shared
 * one), with a bounded queue, one lookup per name at a time (concurrent askers share it) and a
 * bounded LRU cache of raw answers kept for a fixed time. The answers are not vetted here: the
 * caller (netguard) checks every address on every use, cached or fresh. One resolver per
 * process; one resolver_client per event loop receives its completions. */
#ifndef AIRLOCK_RESOLVE_H
#define AIRLOCK_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#define RESOLVE_MAX_ADDRS     8    /* addresses kept per name, in the system resolver's order */
#define RESOLVE_CACHE_ENTRIES 4096 /* names kept; the least recently used goes first */

union resolve_addr {
    struct sockaddr sa;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
};

struct resolve_answer {
    unsigned n;
    union resolve_addr addrs[RESOLVE_MAX_ADDRS]; /* port 0 */
};

/* A blocking lookup, run on a pool thread: fills ans and returns 0, or returns a negative
 * libuv error (UV_EAI_NONAME ...). resolve_system_lookup (getaddrinfo) is the default; unit
 * tests inject their own. */
typedef int (*resolve_lookup_fn)(const char *host, struct resolve_answer *ans, void *arg);
int resolve_system_lookup(const char *host, struct resolve_answer *ans, void *arg);

struct resolver_config {
    unsigned threads;         /* pool size, >= 1 */
    size_t max_queued;        /* lookups that may wait for a free thread */
    size_t cache_entries;     /* 0: no cache */
    uint64_t cache_ttl_ms;    /* how long an answer is reused; 0: no cache */
    resolve_lookup_fn lookup; /* NULL: resolve_system_lookup */
    void *lookup_arg;
};

struct resolver;
struct resolver_client;
struct resolve_req;

/* Start the pool. NULL (with errno) when a thread or memory is missing. */
struct resolver *resolver_new(const struct resolver_config *cfg);
/* Stop the pool once every client is closed. A thread still blocked in a lookup is waited for
 * up to wait_ms; past that it is left to finish on its own, and the last thread out frees
 * the pool (unless the process exits first). */
void resolver_free(struct resolver *r, uint64_t wait_ms);

/* A loop's endpoint for completions (one uv_async_t on loop). NULL when out of memory. */
struct resolver_client *resolver_client_new(struct resolver *r, uv_loop_t *loop);
/* On the client's loop, after every request of this client finished or was cancelled: runs
 * the callbacks still due, closes the handle, and frees the client on its close callback. */
void resolver_client_close(struct resolver_client *rc);

/* cb runs on the client's loop: status 0 with the answer (borrowed until cb returns), a
 * negative libuv error, or UV_ECANCELED after resolve_cancel. The request is freed after. */
typedef void (*resolve_cb)(struct resolve_req *req, int status, const struct resolve_answer *ans,
                           void *data);

enum { RESOLVE_ANSWERED = 0, RESOLVE_PENDING = 1 };

/* Look host up. RESOLVE_ANSWERED: a fresh cached answer is in *ans and no callback follows.
 * RESOLVE_PENDING: *req is set and cb fires exactly once. UV_EAGAIN: the queue is full (the
 * caller refuses with 503). UV_ENOMEM, or UV_ECANCELED when the client is closing. */
int resolve_start(struct resolver_client *rc, const char *host, struct resolve_answer *ans,
                  resolve_cb cb, void *data, struct resolve_req **req);
/* Give up waiting: cb still fires, with UV_ECANCELED, on a later loop turn (unless the answer
 * is already on its way, in which case it fires with that). A queued lookup nobody waits for
 * any more is dropped before it takes a thread; one that is running finishes and is cached. */
void resolve_cancel(struct resolve_req *req);

struct resolver_stats {
    uint64_t cache_hits, lookups, joined, refused; /* since start */
    size_t queued, running, cached;                /* now */
};
void resolver_get_stats(struct resolver *r, struct resolver_stats *out);

#endif
