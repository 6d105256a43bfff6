/* SPDX-License-Identifier: MIT */
/* refhttp: a deliberately small, strict HTTP/1.1 parser for tests, written independently of
 * llhttp and of src/http.c. It reads what airlock WROTE (to an upstream or to a client), which
 * must be in the canonical form RFC 9112 asks a sender to generate: token methods and field
 * names, no whitespace before a colon, no obs-fold, one framing (Content-Length or
 * Transfer-Encoding ending in chunked), lower-case-insensitive names. Anything else is an error:
 * a differential test treats an unparsable stream as a relay defect. No streaming: it takes the
 * whole stream at once. */
#ifndef AIRLOCK_REFHTTP_H
#define AIRLOCK_REFHTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ref_field {
    char *name;
    char *value;
};

struct ref_msg {
    /* request */
    char *method;
    char *target;
    /* response */
    int status;
    char *reason;
    struct ref_field *fields;
    size_t nfields;
    struct ref_field *trailers;
    size_t ntrailers;
    bool chunked;      /* Transfer-Encoding ended in chunked */
    bool close_framed; /* a response body that ran until the end of the stream */
    uint8_t *body;     /* de-chunked */
    size_t body_len;
};

struct ref_stream {
    struct ref_msg *msgs;
    size_t nmsgs;
    bool truncated;     /* the stream ended inside a message (that message is not in msgs) */
    size_t upgraded_at; /* offset just past a 101's head, where raw bytes start; 0 when none */
    const char *error;  /* static text, NULL when the stream parsed */
    size_t error_at;
};

/* Requests, back to back, until the stream ends. */
void ref_parse_requests(const uint8_t *p, size_t len, struct ref_stream *out);
/* Responses; methods[i] is the method of the request the i-th final response answers (HEAD
 * responses have no body). Interim 1xx responses are kept in msgs as well. A 101 ends parsing
 * (upgraded_at). */
void ref_parse_responses(const uint8_t *p, size_t len, const char *const *methods, size_t nmethods,
                         struct ref_stream *out);
void ref_stream_free(struct ref_stream *s);

/* The value of the first field called name (case-insensitive), or NULL. */
const char *ref_field(const struct ref_msg *m, const char *name);

#endif
