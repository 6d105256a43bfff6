/* SPDX-License-Identifier: MIT */
/* http: the llhttp wrapper, one parser per direction. It collects a message head (start line
 * and fields) into a bounded heap arena, hands it over complete, then streams body bytes as
 * llhttp yields them (de-chunked), then trailers and completion. Never lenient: llhttp's strict
 * defaults stay on, and a few RFC 9112 checks that llhttp leaves to the caller are added here.
 * Also the small field helpers the relay needs to rebuild heads. Pure: no sockets. */
#ifndef AIRLOCK_HTTP_H
#define AIRLOCK_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#define HTTP_HEAD_MAX   (32 * 1024) /* start line + fields of one head, else 431 */
#define HTTP_TARGET_MAX 8192        /* request-target bytes, else 414 */

/* What one message may carry; a request over a limit gets 431 (400 in a trailer section or for
 * chunk extensions), a response 502. The defaults are what a hostile peer is held to unless the
 * operator says otherwise (airlock run --max-field-size, --max-fields, --max-chunk-ext). */
#define HTTP_FIELD_SIZE_DEFAULT (16 * 1024) /* name + value of one field line */
#define HTTP_FIELDS_DEFAULT     100         /* field lines in one head or trailer section */
#define HTTP_CHUNK_EXT_DEFAULT  (16 * 1024) /* chunk-extension bytes over one whole message */
#define HTTP_FIELDS_CAP         1000        /* the largest --max-fields accepted */
struct http_limits {
    size_t field_size;
    size_t fields;
    size_t chunk_ext;
};
extern const struct http_limits http_default_limits;

struct http_field {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing whitespace removed */
    size_t value_len;
};

/* One complete head, owned by whoever received it from on_head (free with http_head_free).
 * Every pointer points into the head's own arena (one allocation), and every string is also
 * NUL-terminated (the NUL is not counted in its length). method and target are NULL in a
 * response head, reason in a request head, all three in a trailer section. */
struct http_head {
    bool is_request;
    uint8_t version_major, version_minor;
    /* request */
    const char *method; /* as sent, e.g. "GET" */
    size_t method_len;
    llhttp_method_t method_id;
    const char *target;
    size_t target_len;
    /* response */
    int status;
    const char *reason;
    size_t reason_len;
    /* fields in order, names as sent */
    struct http_field *fields;
    size_t nfields;
    /* framing, as llhttp decided it at the end of the head (RFC 9112 §6). keep_alive is taken
     * before on_head can answer HTTP_HEAD_NO_BODY, so for a HEAD response without framing it
     * is false; llhttp_should_keep_alive(&p->llhttp) inside on_complete knows better. upgrade
     * is also set for CONNECT: it is true exactly when HTTP_UPGRADE follows the message. */
    bool keep_alive;         /* llhttp_should_keep_alive() */
    bool chunked;            /* Transfer-Encoding ends in chunked */
    bool has_content_length; /* Content-Length present (and valid) */
    uint64_t content_length;
    bool upgrade; /* Connection: upgrade and an Upgrade field (request), or 101 */
    /* The transfer codings in order (Transfer-Encoding values joined with ", ", each checked
     * to be a token, chunked at most once and only last), or NULL without the field. This is
     * what a proxy forwards: it re-frames the chunks but must keep every other coding. */
    const char *transfer_codings;
};

void http_head_free(struct http_head *h);

/* Case-insensitive lookup of the first field called name; NULL when absent. */
const struct http_field *http_head_find(const struct http_head *h, const char *name);
/* Number of fields called name. */
size_t http_head_count(const struct http_head *h, const char *name);
/* true when a comma-separated field value list contains token (case-insensitive, OWS trimmed),
 * over every field called name: e.g. (h, "connection", "upgrade"). */
bool http_head_has_token(const struct http_head *h, const char *name, const char *token);
/* true for a hop-by-hop field (RFC 9110 §7.6.1): Connection, Keep-Alive, Proxy-Connection,
 * Proxy-Authenticate, Proxy-Authorization, TE, Trailer, Transfer-Encoding, Upgrade, and any
 * field the head's Connection field names. */
bool http_field_is_hop_by_hop(const struct http_head *h, const struct http_field *f);
/* true for a field whose value a relay writes itself from the parsed message (RFC 9112 §6:
 * Content-Length, Transfer-Encoding) or from its own state (Host, Connection): these are
 * never copied from, nor dropped because of, what a peer sends. */
bool http_field_is_framing(const struct http_field *f);

/* What the owner's on_head returns. */
enum http_head_action {
    HTTP_HEAD_CONTINUE = 0, /* parse the body as framed */
    HTTP_HEAD_NO_BODY = 1,  /* response to HEAD, or 204/304: the message has no body */
    HTTP_HEAD_PAUSE = 2,    /* stop parsing after the head; http_parser_resume() continues */
    HTTP_HEAD_ERROR = -1,   /* stop: http_parser_execute returns HTTP_ERROR */
};

struct http_parser_cbs {
    /* The head is complete: ownership of head passes to the owner. */
    int (*on_head)(void *owner, struct http_head *head);
    /* Body bytes (chunked framing removed). Return 0, or -1 to stop with HTTP_ERROR, or
     * HTTP_PAUSE_BODY to pause after this span (backpressure). */
    int (*on_body)(void *owner, const char *p, size_t len);
    /* The message ended. trailers is NULL unless a chunked body ended with a trailer section
     * (borrowed until the callback returns; no start line, only fields). Return 0, or
     * HTTP_PAUSE_BODY to stop after this message (one exchange at a time: pipelining). */
    int (*on_complete)(void *owner, const struct http_head *trailers);
};
#define HTTP_PAUSE_BODY 1

enum http_kind { HTTP_KIND_REQUEST, HTTP_KIND_RESPONSE };

enum http_exec_status {
    HTTP_OK = 0,      /* every byte consumed, want more */
    HTTP_PAUSED = 1,  /* a callback paused; *consumed bytes used, call resume then execute rest */
    HTTP_UPGRADE = 2, /* message done and the connection switches protocol (101, or a request
                       * with Upgrade, or CONNECT): bytes past *consumed are not HTTP */
    HTTP_ERROR = 3,   /* see error_status / error_reason; nothing more may be parsed */
};

struct http_parser {
    llhttp_t llhttp;
    enum http_kind kind;
    const struct http_parser_cbs *cbs;
    void *owner;
    struct http_head *building; /* the head being collected, or NULL */
    /* private state of the implementation */
    char *arena;
    size_t arena_len, arena_cap;
    int field_state;
    bool in_trailers;
    bool bad_codings; /* the head's Transfer-Encoding is not a list of tokens ending in chunked */
    bool keep_alive;  /* at the end of the last message, trailers included */
    struct http_limits limits;
    size_t field_size;     /* bytes of the field line being collected */
    size_t chunk_ext_size; /* chunk-extension bytes seen in this message */
    /* set on HTTP_ERROR: the status to answer (400, 413, 414, 431, or 502 for a response
     * parser) and a short static reason for the log */
    int error_status;
    const char *error_reason;
};

void http_parser_init(struct http_parser *p, enum http_kind kind, const struct http_parser_cbs *cbs,
                      void *owner);
/* The limits start as http_default_limits; set them before the first execute. */
void http_parser_set_limits(struct http_parser *p, const struct http_limits *limits);
/* Frees any half-built head. The parser may be initialised again afterwards. */
void http_parser_deinit(struct http_parser *p);

/* Parse data; *consumed says how many bytes were used (all of them for HTTP_OK). After
 * HTTP_PAUSED call http_parser_resume(), then execute the unconsumed rest even when it is
 * empty (data NULL and len 0 are fine): a bodiless message paused at its head completes
 * (on_complete) only inside execute. Executing while still paused returns HTTP_PAUSED with
 * *consumed 0; likewise HTTP_UPGRADE and HTTP_ERROR stick. */
enum http_exec_status http_parser_execute(struct http_parser *p, const char *data, size_t len,
                                          size_t *consumed);
void http_parser_resume(struct http_parser *p);

/* After HTTP_UPGRADE for a request whose upgrade the upstream refused (a final non-101
 * response): go on parsing HTTP on this connection. */
void http_parser_resume_after_upgrade(struct http_parser *p);

/* The peer closed: completes a read-until-close body (calls on_complete) and returns 0; -1
 * when the close cut a message short; 0 also when no message was in progress. Call it after
 * every byte was executed; a pending pause is resumed first. */
int http_parser_finish(struct http_parser *p);

/* Inside on_complete and after it: whether the connection may carry another message, taking the
 * trailer section into account (a head's keep_alive cannot). */
bool http_parser_keep_alive(const struct http_parser *p);

/* true between the first byte of a message and its completion. */
bool http_parser_in_message(const struct http_parser *p);

/* The next element of a list field value v (RFC 9110 §5.6.1: elements separated by commas
 * with optional whitespace, empty ones skipped; no quoted strings) from *pos on: true with
 * [*start, *end) its bytes, trimmed, and *pos moved past it; false at the end of the list. */
bool http_list_next(const char *v, size_t len, size_t *pos, size_t *start, size_t *end);

/* Growable output buffer for re-serialised heads (and small bodies such as error JSON). */
struct http_buf {
    char *data;
    size_t len, cap;
    bool failed; /* an allocation failed; contents are incomplete */
    /* Set before a secret goes in: growth then copies into a fresh block and wipes the old one
     * (realloc would leave it, secret and all, in freed heap), and http_buf_free wipes the
     * whole capacity before freeing. */
    bool wipe;
};
void http_buf_append(struct http_buf *b, const char *p, size_t len);
void http_buf_puts(struct http_buf *b, const char *s);
void http_buf_printf(struct http_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Frees the data (wiped first when b->wipe) and empties b; the wipe flag stays. */
void http_buf_free(struct http_buf *b);

/* Bytes to write, borrowed: several go out as one write. */
struct http_span {
    const char *p;
    size_t len;
};

#endif
