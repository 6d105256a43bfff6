/* SPDX-License-Identifier: MIT */
/* The session controller's state and steps, shared by proxy.c (the session, the relay's
 * callbacks and outcomes, the dial) and proxy_tunnel.c (what a CONNECT or a redirected
 * connection becomes once it is dialled: sniffing, TLS handshakes, pipe). Not a public header. */
#ifndef AIRLOCK_PROXY_INTERNAL_H
#define AIRLOCK_PROXY_INTERNAL_H

#include "airlock/answer.h"
#include "airlock/log.h"
#include "airlock/proxy.h"
#include "airlock/sniff.h"

/* What the controller keeps per connection. */
struct proxy_state {
    struct relay *relay;
    uint64_t request_sent_at;   /* loop time the current request went upstream */
    struct netguard_dial *dial; /* resolving and connecting the upstream */
    uv_work_t peer_work;        /* identifying the client's process (binary identity) */
    bool peer_work_active;
    /* The upstream address connected to when it is not public (allowed_ips opened it), else
     * ss_family AF_UNSPEC: later decisions on the connection are bound to it. Kept after the
     * dial, reset by the next one. */
    struct sockaddr_storage private_addr;
    /* The client's first bytes, while telling TLS from plain HTTP (sniff.h); NULL after. */
    uint8_t *sniff;
    size_t sniff_len;
    enum sniff_kind sniffed; /* what they were */
    /* An answer owed to the client once its TLS is up: the upstream's failed after a 200, or
     * a redirected TLS client was refused before anything was dialled. Its strings are static
     * or live as long as the connection; owed_rule is its own copy of rule_missing. */
    struct answer owed;
    /* The forward proxy's current origin is https:// (the relay's DIAL said so): its upstream
     * is dialled, then verified in a TLS handshake before the held request goes out. */
    bool forward_tls;
    char *owed_rule;
    /* The client offered h2 in its ClientHello: so does airlock to the upstream. */
    bool client_offers_h2;
    struct h2 *h2;        /* both TLS handshakes selected h2: the HTTP/2 module, else NULL */
    bool h2_streams_open; /* what the timer is armed for (proxy_h2.c) */
};

extern const struct conn_handler proxy_http_exchanges;
extern const struct conn_handler proxy_waiting;

struct relay *proxy_relay(const struct conn *c);
void proxy_enter(struct conn *c, enum conn_state state, const struct conn_handler *h);
void proxy_log_connect(struct conn *c, enum log_action action, int status, const char *reason);
/* Identify the client when needed, decide L4, dial through netguard; tunnel_dialed or the relay
 * continues. */
void proxy_start_dial(struct conn *c);

/* The policy's L7 judgement and the providers current now, for the relay and HTTP/2 alike. */
void proxy_io_judge(void *ctx, const struct authority *target, const struct policy_request *q,
                    struct policy_l7 *d);
struct creds *proxy_io_creds(void *ctx);

/* proxy_h2.c */
/* Both handshakes selected h2: frames from here. */
void proxy_h2_start(struct conn *c);
/* conn_session.drain: GOAWAY to an HTTP/2 client (open streams finish); false for others. */
bool proxy_h2_drain(struct conn *c);

/* proxy_tunnel.c */
/* A redirected connection was accepted: find its destination from its first bytes. */
void tunnel_start_transparent(struct conn *c);
/* A CONNECT's or a redirected connection's upstream is connected. */
void tunnel_dialed(struct conn *c);
/* The verified TLS handshake with the connected upstream, under --connect-timeout, with h as
 * the connection's handler meanwhile (its on_tls_ready continues). */
void proxy_start_upstream_tls(struct conn *c, const struct conn_handler *h);
/* conn_session.take_answer: an answer to a client whose ClientHello waits goes inside the
 * handshake it is about to complete (with a leaf for the name it asked for); a redirected
 * client that spoke neither TLS nor HTTP gets a close instead. */
bool tunnel_take_answer(struct conn *c, const struct answer *a);

#endif
