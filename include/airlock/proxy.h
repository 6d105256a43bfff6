/* SPDX-License-Identifier: MIT */
/* proxy: the first request on a client connection. CONNECT host:port opens a tunnel (after the
 * L4 policy, the SSRF guard, the upstream connect and, for rest endpoints, the verified upstream
 * TLS handshake: only then is 200 sent); an absolute-form http:// request makes the connection a
 * forward proxy. Anything else is answered 400. */
#ifndef AIRLOCK_PROXY_H
#define AIRLOCK_PROXY_H

#include "airlock/conn.h"
#include "airlock/http.h"

/* The first request head is complete (called from the request parser). Takes ownership of
 * head. Returns an http_head_action. */
int proxy_on_first_head(struct conn *c, struct http_head *head);
/* The CONNECT message ended; the rest of the client's bytes are TLS (or raw, for tcp). */
void proxy_on_connect_complete(struct conn *c);
/* A TLS handshake on a side finished. */
void proxy_on_handshake_done(struct conn *c, enum side_id id);
/* Dial again for a forward-proxy request whose authority differs from the current upstream. */
void proxy_redial(struct conn *c);

/* The session controller's hooks, for the server to give every worker. */
extern const struct conn_session proxy_session;

/* After a policy reload: close the connection if it is piped (upgraded or tcp) and no endpoint
 * of the new policy allows its host, port and protocol any more, or its upstream address is
 * private and no allowed_ips of the new policy open it for this connection. */
void proxy_recheck_policy(struct conn *c, struct policy *p);

#endif
