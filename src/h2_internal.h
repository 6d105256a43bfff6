/* SPDX-License-Identifier: MIT */
/* The HTTP/2 module's state, shared by h2.c (the two sessions, their limits, pumping frames)
 * and h2_stream.c (one stream: its relay, and the HTTP/1.1 text the relay reads and writes
 * turned into frames). Not a public header. */
#ifndef AIRLOCK_H2_INTERNAL_H
#define AIRLOCK_H2_INTERNAL_H

#include <nghttp2/nghttp2.h>

#include "airlock/h2.h"
#include "airlock/http.h"
#include "airlock/relay.h"

/* Bytes waiting for one side's session to take them as DATA. */
struct h2_queue {
    char *data;
    size_t len, off, cap;
    bool eof;             /* the body ended: END_STREAM (or trailers) after the bytes */
    nghttp2_nv *trailers; /* sent after the body, or NULL; one allocation with their bytes */
    size_t ntrailers;
    /* Bytes the sender's session received for this body that are not yet acknowledged
     * (WINDOW_UPDATE): they are, as this queue drains. */
    size_t unacked;
};

struct h2_stream {
    struct h2 *h;
    struct h2_stream *next, *prev; /* the session's list of open streams */
    int32_t client_id;             /* on the client's session */
    int32_t upstream_id;           /* on the upstream's, or 0 before the request went */
    bool client_open, upstream_open;

    /* The request's headers as they arrive: pseudo-headers, then an HTTP/1.1 head. */
    struct http_buf fields;                          /* "name: value\r\n" of the regular fields */
    char *method, *scheme, *authority, *path, *host; /* pseudo-headers (and host), malloc'd */
    size_t header_bytes; /* the decoded list so far, as SETTINGS_MAX_HEADER_LIST_SIZE counts */
    bool has_content_length;
    bool head_request;
    bool req_chunked_in; /* the relay is given the request body as chunks */
    bool client_ended;   /* END_STREAM from the client */
    /* Who reset the client's stream, if anyone: a reset by neither is nghttp2's, for a stream
     * the client broke the rules on (h2.c counts it as the client's). */
    bool client_reset, reset_sent;

    struct relay *relay;
    struct policy *judged_under; /* keeps the strings of the stream's judgement alive */
    bool relay_done;             /* the relay reported its outcome: nothing more is fed to it */
    /* What the relay writes, parsed back: the request it sends upstream, the response it sends
     * the client. */
    struct http_parser up_parser, down_parser;
    bool request_submitted, response_submitted, response_ended;
    bool down_interim; /* the response being parsed back is an interim (1xx) one */
    /* After the response ends, the rest of the request is not wanted: RST_STREAM(NO_ERROR) to
     * the client (RFC 9113 §8.1) and CANCEL upstream. */
    bool cut_request;
    /* Headers of the upstream's response being received (name: value lines), and :status. */
    struct http_buf resp_fields;
    int resp_status;
    bool resp_trailers; /* the headers being received are the response's trailers */
    bool resp_chunked_in;
    bool resp_has_length; /* the headers being received carry content-length */
    /* The upstream's response ended with its headers (gRPC's trailers-only answer, a 204):
     * so does the client's, with no empty DATA frame after them. */
    bool resp_headers_only;

    struct h2_queue to_upstream, to_client;
};

struct h2 {
    const struct h2_io *io;
    void *ctx;
    struct h2_setup setup;
    nghttp2_session *sessions[2]; /* by enum side_id: server towards the client, client
                                   * towards the upstream */
    struct h2_stream *streams;
    size_t nstreams;
    bool never; /* the relays' draining flag: GOAWAY does what Connection: close would */
    bool done, shutting_down;
    bool upstream_gone;  /* its session is over: every stream that waited on it has failed */
    bool goaway_from[2]; /* a peer said GOAWAY: its session may end without a fault */
    bool broken;         /* a peer broke the protocol or abused it: io.done says error */
    bool in_pump;        /* frames are being written: a nested pump waits for the outer one */
    /* Abuse accounting (h2.c): resets a client sent versus streams it completed; control
     * frames versus frames that carry requests. */
    uint64_t resets, completed, control[2];
    struct http_buf out[2]; /* frames gathered for one write per side and pump */
};

/* h2.c */
/* Write what both sessions want to send; end the session when neither has more to do. */
void h2_pump(struct h2 *h);
/* A peer broke the rules: GOAWAY with code to the client, and the session ends. */
void h2_abuse(struct h2 *h, enum side_id from, uint32_t code, const char *why);
/* The client's stream ended well: it earns back the budget for resets. */
void h2_stream_completed(struct h2 *h);
/* A stream was refused before its request went upstream: it costs from the reset budget. */
void h2_stream_refused(struct h2 *h);

/* h2_stream.c */
struct h2_stream *h2_stream_new(struct h2 *h, int32_t client_id);
/* Unlink and free (every relay, parser and queue); bytes still unacknowledged are given back
 * to the sessions' connection windows. */
void h2_stream_free(struct h2_stream *s);
/* One header of the client's request (0, or an nghttp2 error code to reset the stream). */
int h2_stream_request_header(struct h2_stream *s, const uint8_t *name, size_t namelen,
                             const uint8_t *value, size_t valuelen);
/* The request's headers ended: check, hand to the relay. */
void h2_stream_request_headers_done(struct h2_stream *s, bool end_stream);
/* Request body bytes, and its end (trailers: the fields received as trailers, or NULL). */
void h2_stream_request_data(struct h2_stream *s, const uint8_t *p, size_t len);
void h2_stream_request_end(struct h2_stream *s);
/* One header of the upstream's response (or its trailers). */
int h2_stream_response_header(struct h2_stream *s, const uint8_t *name, size_t namelen,
                              const uint8_t *value, size_t valuelen);
void h2_stream_response_headers_done(struct h2_stream *s, bool end_stream);
void h2_stream_response_data(struct h2_stream *s, const uint8_t *p, size_t len);
void h2_stream_response_end(struct h2_stream *s);
/* A side closed its stream (RST_STREAM or the session's end) with code. */
void h2_stream_closed(struct h2_stream *s, enum side_id side, uint32_t code);
/* Data for a side's session: the read callback of its data provider. */
ssize_t h2_stream_read(struct h2_stream *s, enum side_id to, uint8_t *buf, size_t len,
                       uint32_t *flags);
/* The connection timed out with this stream open (h2_timeout). */
void h2_stream_timeout(struct h2_stream *s);

#endif
