/* SPDX-License-Identifier: MIT */
/* h2: HTTP/2 through an inspected tunnel, over byte buffers (nghttp2 for the framing, HPACK and
 * flow control). Used only when both TLS handshakes selected h2 (ALPN never translates: see
 * docs/http2.md): a server session towards the client and a client session towards the
 * upstream, with each client stream mapped to one upstream stream.
 *
 * Every client stream is one exchange of its own relay (relay.h), the same state machine that
 * judges HTTP/1.1: its request headers are handed to it as an HTTP/1.1 head (pseudo-headers
 * checked first, RFC 9113 §8.3), so the authority check, the canonical path, the credential
 * placeholders, the policy and the response redaction are the same code for both protocols;
 * what the relay writes is parsed back into frames. A refused stream gets the relay's answer on
 * that stream; the connection and its other streams go on.
 *
 * No libuv, socket or TLS here: h2_feed takes the plaintext each side sent, io.write gives back
 * the frames for each side, so a unit test or a fuzzer drives whole connections in memory.
 * Backpressure is HTTP/2's own: bytes a stream received are acknowledged to their sender
 * (WINDOW_UPDATE) only once the other side's session took them, so what waits per stream is
 * bounded by the window airlock advertises (H2_STREAM_WINDOW), and per connection by
 * H2_CONN_WINDOW. */
#ifndef AIRLOCK_H2_H
#define AIRLOCK_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airlock/answer.h"
#include "airlock/http.h"
#include "airlock/log.h"
#include "airlock/policy.h"
#include "airlock/side.h"
#include "airlock/target.h"

struct h2;
struct creds;

#define H2_MAX_STREAMS    100           /* concurrent client streams (SETTINGS) */
#define H2_MAX_HEADER     (64 * 1024)   /* decoded header list of one stream */
#define H2_STREAM_WINDOW  (256 * 1024)  /* what airlock buffers per stream, each way */
#define H2_CONN_WINDOW    (1024 * 1024) /* ... and per connection, each way */
#define H2_RESET_BUDGET   200           /* client resets before a GOAWAY (see h2.c) */
#define H2_CONTROL_BUDGET 1000          /* SETTINGS, PING, empty DATA ... (see h2.c) */

struct h2_io {
    /* Frames for a side. 0, or -1 when the transport failed (the controller is closing). */
    int (*write)(void *ctx, enum side_id to, const char *p, size_t len);
    /* One event for the log (its stream and protocol are filled in). */
    void (*log)(void *ctx, struct log_event *ev);
    /* As relay_io.judge, and a reference to the policy snapshot that judged (or NULL): d's
     * borrowed strings live as long as it, which the stream holds until its end. (Streams
     * overlap: a reload between two of them must not free what the first one still logs.) */
    struct policy *(*judge)(void *ctx, const struct authority *target,
                            const struct policy_request *q, struct policy_l7 *d);
    /* As relay_io.creds. */
    struct creds *(*creds)(void *ctx);
    /* Fill what the connection knows for an answer on a stream: host, port and the policy that
     * decided (as conn_respond does for HTTP/1.1). */
    void (*describe)(void *ctx, struct answer *a);
    /* The session is over: both sides said GOAWAY and no stream is open, or a peer broke the
     * protocol (error). Every frame is written already: flush, then close. why: static. */
    void (*done)(void *ctx, const char *why, bool error);
};

struct h2_setup {
    uint64_t id;                      /* the connection's, for diagnostics */
    const struct http_limits *limits; /* borrowed for the session's life */
    struct authority target;          /* the tunnel's: every stream's :authority must name it */
};

/* Both sessions, with airlock's SETTINGS queued to both sides (and its connection preface to
 * the upstream). NULL when out of memory. */
struct h2 *h2_new(const struct h2_setup *setup, const struct h2_io *io, void *ctx);
/* Free it; open streams are logged as ended by the connection's close. */
void h2_free(struct h2 *h);

/* Write what is queued (airlock's SETTINGS and preface, right after h2_new). */
void h2_flush(struct h2 *h);
/* Plaintext from a side; frames that follow go out through io.write before it returns. Always
 * takes every byte (a protocol error ends the session through io.done). */
size_t h2_feed(struct h2 *h, enum side_id from, const char *p, size_t len);
/* A side finished sending (FIN or close_notify): the session ends. */
void h2_eof(struct h2 *h, enum side_id from);
/* A graceful end (drain, or idle with no stream open): GOAWAY to the client; streams already
 * open finish, then io.done. */
void h2_shutdown(struct h2 *h, const char *why);
/* The connection saw no byte for a while: streams still waiting for their response head are
 * answered 504, and streams with bytes waiting for a side that took none are reset (a reader
 * that stalled); other streams whose response is under way are never cut: a gRPC stream may
 * live, and stay quiet, for hours. */
void h2_timeout(struct h2 *h);
/* Client streams open now. */
size_t h2_open_streams(const struct h2 *h);

#endif
