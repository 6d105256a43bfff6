/* SPDX-License-Identifier: MIT */
/* proxy: the session controller of a client connection. It gives the connection's bytes to the
 * relay (relay.h) and acts on the relay's outcomes: CONNECT host:port opens a tunnel (after the
 * L4 policy, the SSRF guard, the upstream connect and, for rest endpoints, the verified upstream
 * TLS handshake: only then is 200 sent); an absolute-form http:// or https:// request makes the
 * connection a forward proxy (an https:// origin over a verified TLS upstream); each exchange ends
 * REUSABLE, CONSUMED, UPGRADED (the pipe takes over) or REFUSED (the one error answer,
 * conn_respond). */
#ifndef AIRLOCK_PROXY_H
#define AIRLOCK_PROXY_H

#include "airlock/conn.h"

/* The session controller's hooks, for the server to give every worker. */
extern const struct conn_session proxy_session;

/* After a policy reload: close the connection if it is piped (upgraded or tcp) and no endpoint
 * of the new policy allows its host, port and protocol any more, or its upstream address is
 * private and no allowed_ips of the new policy open it for this connection. */
void proxy_recheck_policy(struct conn *c, struct policy *p);

#endif
