/* SPDX-License-Identifier: MIT */
/* relay: the HTTP/1.1 state machine of one client connection, over byte buffers. It is fed the
 * plaintext each side sends and answers through a table of callbacks: bytes to write to a side,
 * events for the log, the policy's judgement of a request, progress to time, and the outcome
 * of each exchange, which the session controller (proxy.c) acts on. There is no libuv, socket or
 * TLS in it, so a unit test or a fuzzer drives whole connections in memory.
 *
 * The contract (docs/relay.md): the first request is CONNECT (RELAY_TUNNEL) or an absolute-form
 * http:// or https:// request (RELAY_DIAL); then one exchange at a time. Each request head is
 * checked (authority, canonical path, credentials, L7 policy) and re-serialised upstream from its
 * parsed fields, with airlock's own framing; its body and the response are streamed as they arrive.
 * Each exchange ends in exactly one outcome: REUSABLE (the next request may follow), CONSUMED
 * (the connection ends), UPGRADED (a valid 101 answered a websocket upgrade the client asked
 * for: raw bytes from here), or REFUSED (airlock answers the client and the connection ends).
 * After any outcome but REUSABLE and the DIAL/TUNNEL steps, the relay takes no more input:
 * relay_feed consumes and discards. */
#ifndef AIRLOCK_RELAY_H
#define AIRLOCK_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airlock/answer.h"
#include "airlock/http.h"
#include "airlock/log.h"
#include "airlock/policy.h"
#include "airlock/side.h"
#include "airlock/target.h"

struct relay;
struct creds;

/* The first three are the log's values (logfmt.h names them from its one table). */
enum relay_outcome {
    RELAY_REUSABLE = LOG_OUTCOME_REUSABLE, /* release both sides; the next request follows */
    RELAY_CONSUMED = LOG_OUTCOME_CONSUMED, /* finish the connection (flush, close_notify, FIN) */
    RELAY_UPGRADED = LOG_OUTCOME_UPGRADED, /* pipe raw bytes both ways from here */
    RELAY_REFUSED = 16, /* send result.answer (or close, if a response already started) */
    RELAY_ABORTED,      /* close at once: nothing more can be said on this connection */
    RELAY_TUNNEL,       /* the first request was CONNECT result.target: open the tunnel */
    RELAY_DIAL,         /* a forward-proxy request for result.target waits: dial, then
                         * relay_dialed (first request, or another origin than the last) */
};

struct relay_result {
    enum relay_outcome outcome;
    const char *reason; /* static text for the log */
    /* CONSUMED: the response was ended by the upstream's close (read until close), or cut
     * short by it (truncated): the client must see such an end as it came, and always when
     * truncated (RFC 8446 §6.1: a FIN without close_notify). */
    bool until_close, truncated;
    size_t overflow;         /* UPGRADED: upstream bytes after the 101 in the same feed */
    struct answer answer;    /* REFUSED (host, port and policy left for the controller) */
    struct authority target; /* TUNNEL, DIAL */
    /* DIAL: the origin is https://. The upstream must be a verified TLS connection to target
     * (as a tunnel's is) before relay_dialed: credentials go on it, and only on it. */
    bool tls;
};

/* What the relay reports while an exchange runs, for the controller's timers and metrics. */
enum relay_progress {
    RELAY_HEAD_STARTED,     /* the first byte of a request head: its deadline starts */
    RELAY_REQUEST_SENT,     /* a request head went upstream: the response timeout starts */
    RELAY_RESPONSE_STARTED, /* a final response head went to the client: from here an error
                             * can only close the connection */
};

struct relay_io {
    /* Bytes for a side, in order (the spans go out as one write). 0, or -1 when the transport
     * failed: the relay then stops, the controller is closing. */
    int (*write)(void *ctx, enum side_id to, const struct http_span *spans, unsigned nspans);
    /* One event for the log; the controller adds source, destination, policy and process. */
    void (*log)(void *ctx, struct log_event *ev);
    /* The L7 judgement of a request to host:port under the policy current now. d's borrowed
     * strings must stay valid until the next judge or the relay's end. */
    void (*judge)(void *ctx, const struct authority *target, const struct policy_request *q,
                  struct policy_l7 *d);
    /* The credential providers current now: a reference (the relay releases it), or NULL. */
    struct creds *(*creds)(void *ctx);
    void (*progress)(void *ctx, enum relay_progress p);
    /* The outcome of the exchange or step (called once each; see enum relay_outcome). */
    void (*outcome)(void *ctx, const struct relay_result *res);
};

struct relay_setup {
    uint64_t id;                      /* the connection's, for diagnostics */
    const struct http_limits *limits; /* borrowed for the relay's life */
    const bool *draining;             /* read at each request: when set, the exchange is the
                                       * connection's last (Connection: close both ways) */
};

/* A relay in first-request mode. NULL when out of memory. */
struct relay *relay_new(const struct relay_setup *setup, const struct relay_io *io, void *ctx);
/* Free it; an exchange still open is logged as CONSUMED (the connection closed under it). */
void relay_free(struct relay *r);

/* Plaintext from a side. Returns the bytes taken; fewer than len: the side is held, and what
 * is left waits (in the transport) until relay_resume. */
size_t relay_feed(struct relay *r, enum side_id from, const char *p, size_t len);
/* A held side may go on (after REUSABLE, TUNNEL's handshake, DIAL's relay_dialed): its parser
 * resumes and runs what it owes, then the transport feeds what waited. */
void relay_resume(struct relay *r, enum side_id side);
/* A side finished sending (FIN or close_notify). */
void relay_eof(struct relay *r, enum side_id from);

/* After RELAY_TUNNEL, or for a connection redirected to airlock (transparent mode): the
 * client's TLS is up (an inspected rest tunnel), its requests for target follow. */
void relay_begin_tunnel(struct relay *r, const struct authority *target);
/* After RELAY_TUNNEL, or for a connection redirected to airlock (transparent mode): requests for
 * target in plain HTTP follow. They are judged as in a TLS tunnel, but no credential is ever
 * substituted on a plain hop (a placeholder is refused). */
void relay_begin_plain_tunnel(struct relay *r, const struct authority *target);
/* After RELAY_DIAL: a fresh upstream for result.target is connected (over verified TLS when
 * result.tls); the held request goes out (or is refused). The client side is then resumed by
 * the controller. */
void relay_dialed(struct relay *r);

/* No request is in progress: a drain may end the connection now. */
bool relay_idle(const struct relay *r);
/* The current request's method and canonical path, for an answer the controller sends
 * itself (a timeout): fills a->method, a->path and a->in_request when there is one. */
void relay_describe(const struct relay *r, struct answer *a);

#endif
