/* SPDX-License-Identifier: MIT */
/* relay: one HTTP/1.1 exchange at a time inside a client connection (a terminated CONNECT
 * tunnel, or a forward-proxy connection). Requests are checked (authority, canonical path,
 * L7 policy) and re-serialised upstream; responses are relayed as they arrive. Each exchange
 * ends in one outcome (DESIGN.md "The relay contract"), which the connection acts on. */
#ifndef AIRLOCK_RELAY_H
#define AIRLOCK_RELAY_H

#include <stddef.h>

#include "airlock/conn.h"
#include "airlock/log.h"

/* The values are the log's (logfmt.h), which names them from its one table. */
enum relay_outcome {
    RELAY_REUSABLE = LOG_OUTCOME_REUSABLE,
    RELAY_CONSUMED = LOG_OUTCOME_CONSUMED,
    RELAY_UPGRADED = LOG_OUTCOME_UPGRADED,
};

/* Set up both parsers for a connection (the request parser reads the first request too). */
void relay_init(struct conn *c);
void relay_deinit(struct conn *c);
/* Start the request parser afresh (after the client TLS handshake). */
void relay_reset_request_parser(struct conn *c);
/* Start the response parser afresh (a forward proxy's new upstream). */
void relay_reset_response_parser(struct conn *c);

/* Plaintext from a side in CONN_S_FIRST / CONN_S_HTTP: returns the bytes consumed; fewer than
 * len means the side is held (SIDE_F_HELD) or the connection changed state. */
size_t relay_on_data(struct conn *c, enum side_id id, const char *p, size_t len);
/* Resume a side's paused parser before its held bytes are consumed again. */
void relay_resume(struct conn *c, enum side_id id);
/* A side finished sending while an exchange may be in progress. */
void relay_on_eof(struct conn *c, enum side_id id);

/* Begin an exchange with a request head the connection already holds (c->ex.req): checks it
 * and forwards it upstream. Used for every request, and by proxy.c for the first request of
 * a forward-proxy connection once the upstream is connected. Returns an http_head_action. */
int relay_start_request(struct conn *c);

#endif
