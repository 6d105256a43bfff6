/* SPDX-License-Identifier: MIT */
/* netguard: the SSRF guard on the dial path. Resolves the target itself (resolve.h: its own
 * thread pool and a short-lived cache of raw answers), vets every answer on every use (addr.h
 * classes; blocked unless the allowed_ips of an endpoint that allowed this connection covers it,
 * see policy_ip_allowed; metadata always), refuses the whole name when any answer is blocked,
 * and connects only to the vetted addresses (dial.h: raced, RFC 8305), so a second lookup (DNS
 * rebinding) never happens. */
#ifndef AIRLOCK_NETGUARD_H
#define AIRLOCK_NETGUARD_H

#include "airlock/conn.h"

enum netguard_status {
    NETGUARD_OK = 0,
    NETGUARD_SSRF = -1,   /* refused by the guard: answer 403 ssrf_denied */
    NETGUARD_FAILED = -2, /* resolution or connect failed: answer 502 */
    NETGUARD_BUSY = -3,   /* the resolver's queue is full: answer 503 */
};

/* Resolve, vet and connect c->target with the policy snapshot c->policy. Calls
 * c->on_dialed(c, status, why) exactly once (not when the connection closes first); on
 * NETGUARD_OK the upstream side is connected. */
void netguard_dial(struct conn *c);

/* The connection is closing: give up a lookup or a race in flight. Their callbacks still run
 * later and drop the references they hold; on_dialed is not called. */
void netguard_cancel(struct conn *c);
/* The address c's upstream is connected to when it is not public (the guard dialled it only
 * because allowed_ips cover it), else NULL; borrowed from c until its next dial. Later
 * decisions on the connection pass it to policy (policy_check_l7, policy_ip_allowed after a
 * reload), so that only endpoints whose allowed_ips cover it count. */
const struct sockaddr *netguard_private_addr(const struct conn *c);

#endif
