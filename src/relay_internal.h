/* SPDX-License-Identifier: MIT */
/* The relay's state, shared by its three files: relay.c (the machine: feeding, outcomes, the
 * log), relay_request.c (judging a request and writing it upstream) and relay_response.c
 * (writing responses to the client). Not a public header. */
#ifndef AIRLOCK_RELAY_INTERNAL_H
#define AIRLOCK_RELAY_INTERNAL_H

#include "airlock/creds.h"
#include "airlock/http.h"
#include "airlock/relay.h"

/* One HTTP exchange: a request and its response. */
struct exchange {
    struct http_head *req; /* the request head until the exchange ends */
    char method[24];
    char log_path[256]; /* canonical path (no query) for the log, truncated */
    bool active;        /* a request head was received and judged */
    bool req_done, resp_done;
    bool req_chunked_out;  /* we re-chunk the request body upstream */
    bool resp_chunked_out; /* we re-chunk the response body to the client */
    bool resp_head_sent;   /* a final response head went to the client */
    bool close_after;      /* Connection: close from either side, or HTTP/1.0 */
    bool upgrade_asked;    /* a websocket upgrade the client asked for, forwarded upstream */
    bool head_request;     /* HEAD: the response has no body */
    bool host_has_port;    /* the client's Host named a port (so does the forwarded one) */
    bool audit;
    bool interim;             /* the response being parsed is a 1xx */
    bool upgraded;            /* a valid 101 went to the client */
    bool logged;              /* the request's line is written */
    const char *audit_reason; /* why the policy would have refused (audit), static */
    int status;
    char ws_accept[32]; /* the Sec-WebSocket-Accept the 101 must carry */
    /* providers whose secret this request carries (placeholder or inject), bound to this
     * host and port; borrowed from relay.creds */
    const struct creds_provider *creds_used[8];
    unsigned ncreds_used;
    /* providers whose secret may be echoed in this exchange's response: every provider bound
     * to the tunnel's host and port once any secret went out on the connection (borrowed from
     * relay.creds or relay.echo_creds) */
    const struct creds_provider *redact_with[8];
    unsigned nredact;
    /* the response body's redactor (redact.h) when nredact > 0 and it has a body */
    struct redactor *redact;
};

enum relay_mode {
    RELAY_MODE_FIRST,   /* the connection's first request: CONNECT or absolute-form */
    RELAY_MODE_TUNNEL,  /* requests inside a verified TLS tunnel to target */
    RELAY_MODE_FORWARD, /* forward proxy (requests in clear text from the client), currently
                         * connected to target: in clear text too, or over TLS (target_tls) */
};

struct relay {
    const struct relay_io *io;
    void *ctx;
    uint64_t id;
    const bool *draining;
    const struct http_limits *limits;
    enum relay_mode mode;
    /* A terminal outcome was reported or a write failed: nothing more is parsed or written. */
    bool stopped;
    bool dial_pending;         /* a DIAL is reported once the parser has paused */
    bool resume_after_upgrade; /* the client's upgrade was refused: parse its bytes as HTTP */
    bool upstream_eof;         /* the upstream finished sending */
    bool inspected;            /* a verified TLS hop both ways: credentials may go out */
    struct authority target;   /* the tunnel's authority, or the forward proxy's upstream */
    /* The forward proxy's upstream is an https:// origin, reached over verified TLS: its
     * requests are inspected as a tunnel's (credentials, redaction). */
    bool target_tls;
    struct http_parser req_parser, resp_parser;
    struct creds *creds; /* the providers snapshot of the current request, or NULL */
    /* the providers snapshot under which a secret last went out on this connection (a
     * reference), or NULL: from then on every response is redacted */
    struct creds *echo_creds;
    struct exchange ex;
};

/* relay.c */
int relay_write(struct relay *r, enum side_id to, const char *p, size_t len);
int relay_writev(struct relay *r, enum side_id to, const struct http_span *spans, unsigned n);
/* Report an outcome (a terminal one stops the relay first). */
void relay_report(struct relay *r, const struct relay_result *res);
/* Refuse the current request or response: REFUSED with an answer naming it. */
void relay_refuse(struct relay *r, int status, const char *error, const char *detail);
void relay_refuse_l7(struct relay *r, const struct policy_l7 *d);
/* Log the current request refused (status) with decision deny. */
void relay_log_denied(struct relay *r, int status, const char *reason, enum log_severity sev);
/* A finding about the current request, answered with status. */
void relay_log_finding(struct relay *r, int status, enum log_severity sev, const char *reason);
/* A valid 101 went to the client: the exchange's line, with outcome UPGRADED. */
void relay_log_upgraded(struct relay *r);
/* The exchange is over: log it, report its outcome. */
void relay_exchange_end(struct relay *r, enum relay_outcome outcome);
/* Copy src into dst of cap bytes, cut to fit: log fields are bounded. */
void relay_copy_truncated(char *dst, size_t cap, const char *src);

/* relay_request.c: a request head in ex.req, checked, judged and written upstream. Returns an
 * http_head_action. */
int relay_start_request(struct relay *r);
int relay_write_chunk(struct relay *r, enum side_id to, const char *p, size_t len);
int relay_write_last_chunk(struct relay *r, enum side_id to, const struct http_head *trailers);

/* relay_response.c: the parser callbacks of the response side. */
int relay_on_resp_head(void *owner, struct http_head *head);
int relay_on_resp_body(void *owner, const char *p, size_t len);
int relay_on_resp_complete(void *owner, const struct http_head *trailers);
/* Append a field value, with every secret this exchange may echo replaced by its placeholder. */
void relay_append_redacted(struct relay *r, struct http_buf *b, const char *p, size_t len);

#endif
