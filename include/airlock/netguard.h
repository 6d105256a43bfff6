/* SPDX-License-Identifier: MIT */
/* netguard: the SSRF guard on the dial path, as one object per dial. It resolves the target
 * itself (resolve.h: its own thread pool and a short-lived cache of raw answers), vets every
 * answer on every use (addr.h classes; blocked unless the allowed_ips of an endpoint that
 * allowed this connection covers it, see policy_ip_allowed; metadata always), refuses the whole
 * name when any answer is blocked, and connects only to the vetted addresses (dial.h: raced,
 * RFC 8305), so a second lookup (DNS rebinding) never happens. Knows no connection: it hands a
 * connected socket to its callback. */
#ifndef AIRLOCK_NETGUARD_H
#define AIRLOCK_NETGUARD_H

#include <stdint.h>

#include <sys/socket.h>
#include <uv.h>

#include "airlock/policy.h"
#include "airlock/target.h"

struct resolver_client;
struct netguard_dial;

enum netguard_status {
    NETGUARD_OK = 0,
    NETGUARD_SSRF = -1,      /* refused by the guard: answer 403 ssrf_denied */
    NETGUARD_FAILED = -2,    /* resolution or connect failed: answer 502 */
    NETGUARD_BUSY = -3,      /* the resolver's queue is full: answer 503 */
    NETGUARD_CANCELLED = -4, /* netguard_dial_cancel: nothing to answer */
};

/* What one dial needs. policy and peer decide which private addresses allowed_ips open; the
 * dial takes its own reference to policy and copies peer (whose strings must outlive it). */
struct netguard_request {
    uv_loop_t *loop;
    struct resolver_client *resolver;
    const struct authority *target; /* copied */
    struct policy *policy;
    const struct policy_peer *peer;
    uint64_t log_id; /* names the connection in log lines */
    uint32_t mark;   /* SO_MARK for the upstream socket (--mark), or 0 */
    /* An address the client meant (the original destination of a redirected connection), or
     * NULL: the result says whether airlock's own answers for the name contained it. */
    const struct sockaddr *expected;
};

struct netguard_result {
    enum netguard_status status;
    const char *why; /* static text on failure */
    /* NETGUARD_OK: a connected, non-blocking socket the callee now owns; else -1 */
    int fd;
    /* The address connected to when it is not public (allowed_ips opened it: later decisions
     * on the connection must be bound to it), else NULL; valid during the callback. */
    const struct sockaddr *private_addr;
    bool expected_seen; /* request.expected was among the answers */
};

typedef void (*netguard_cb)(void *data, const struct netguard_result *res);

/* Start a dial; cb fires exactly once. It fires before this returns when the outcome is known
 * at once (a metadata name, a refused literal address, a full resolver queue, out of memory):
 * the return value is then NULL. Otherwise the dial in flight, for netguard_dial_cancel. */
struct netguard_dial *netguard_dial_start(const struct netguard_request *req, netguard_cb cb,
                                          void *data);
/* Give up: the lookup or race is cancelled and cb fires later, with NETGUARD_CANCELLED (a socket
 * that won meanwhile is closed). */
void netguard_dial_cancel(struct netguard_dial *d);

#endif
