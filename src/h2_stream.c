/* SPDX-License-Identifier: MIT */
/* h2_stream: one client stream and the upstream stream it maps to. The request's headers are
 * checked (RFC 9113 §8.3 beyond what nghttp2 enforces), written as an HTTP/1.1 head and fed to
 * the stream's own relay, which judges it exactly as it judges HTTP/1.1; what the relay writes
 * (the request it lets go upstream, the response or answer it gives the client) is parsed back
 * with airlock's own parser and submitted as frames. Body bytes wait in a queue per direction
 * until the receiving session takes them, and only then are they acknowledged to the sender:
 * HTTP/2 flow control is the backpressure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "airlock/answer.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "h2_internal.h"

static enum side_id other(enum side_id s)
{
    return s == SIDE_CLIENT ? SIDE_UPSTREAM : SIDE_CLIENT;
}

static int32_t id_on(const struct h2_stream *s, enum side_id side)
{
    return side == SIDE_CLIENT ? s->client_id : s->upstream_id;
}

/* ---- queues ------------------------------------------------------------------------------- */

static int queue_append(struct h2_queue *q, const char *p, size_t len)
{
    if (q->off > 0 && q->off == q->len)
        q->off = q->len = 0;
    if (q->len + len > q->cap) {
        if (q->off > 0) { /* slide the unread rest to the front first */
            memmove(q->data, q->data + q->off, q->len - q->off);
            q->len -= q->off;
            q->off = 0;
        }
        size_t cap = q->cap ? q->cap : 16 * 1024;
        while (cap < q->len + len)
            cap *= 2;
        if (cap != q->cap) {
            char *grown = realloc(q->data, cap);
            if (!grown)
                return -1;
            q->data = grown;
            q->cap = cap;
        }
    }
    memcpy(q->data + q->len, p, len);
    q->len += len;
    return 0;
}

static void queue_free(struct h2_queue *q)
{
    free(q->data);
    free(q->trailers);
    memset(q, 0, sizeof *q);
}

/* Acknowledge n bytes received from side (a WINDOW_UPDATE goes out with the next pump). */
static void ack(struct h2_stream *s, enum side_id from, size_t n)
{
    if (n == 0)
        return;
    nghttp2_session *session = s->h->sessions[from];
    int32_t id = id_on(s, from);
    bool open = from == SIDE_CLIENT ? s->client_open : s->upstream_open;
    if (open && id > 0)
        nghttp2_session_consume(session, id, n);
    else
        nghttp2_session_consume_connection(session, n);
}

/* ---- header lists as nghttp2 wants them --------------------------------------------------- */

/* Fields that belong to one HTTP/1.1 hop and have no place in HTTP/2 (RFC 9113 §8.2.2). */
static bool connection_specific(const char *name, size_t len, const char *value, size_t vlen)
{
    static const char *const names[] = {"connection",        "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade",    "host"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (len == strlen(names[i]) && strncasecmp(name, names[i], len) == 0)
            return true;
    if (len == 2 && strncasecmp(name, "te", 2) == 0)
        return !(vlen == 8 && strncasecmp(value, "trailers", 8) == 0);
    return false;
}

/* Values HPACK should never put in its dynamic table, where they would outlive the stream. */
static bool sensitive(const char *name, size_t len)
{
    static const char *const names[] = {"authorization", "proxy-authorization", "cookie",
                                        "set-cookie"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (len == strlen(names[i]) && strncasecmp(name, names[i], len) == 0)
            return true;
    return memmem(name, len, "key", 3) || memmem(name, len, "token", 5) ||
           memmem(name, len, "secret", 6);
}

/* An nv array for up to npseudo pseudo-headers plus the head's fields (lower-cased names
 * copied into the same allocation). NULL when out of memory. */
struct nv_list {
    nghttp2_nv *nv;
    size_t n;
    char *names;
};

static int nv_list_init(struct nv_list *l, const struct http_head *head, size_t npseudo)
{
    size_t names = 0;
    for (size_t i = 0; i < head->nfields; i++)
        names += head->fields[i].name_len;
    l->n = 0;
    l->nv = malloc((npseudo + head->nfields) * sizeof *l->nv + names + 1);
    if (!l->nv)
        return -1;
    l->names = (char *)(l->nv + npseudo + head->nfields);
    return 0;
}

static void nv_add(struct nv_list *l, const char *name, size_t nlen, const char *value, size_t vlen)
{
    uint8_t flags = sensitive(name, nlen) ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
    l->nv[l->n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nlen, vlen, flags};
}

/* A field name as HTTP/2 writes it (RFC 9113 §8.2.1: lower case), into out; returns out. */
static char *copy_lower(char *out, const char *name, size_t len)
{
    for (size_t k = 0; k < len; k++)
        out[k] = name[k] >= 'A' && name[k] <= 'Z' ? (char)(name[k] + 32) : name[k];
    return out;
}

/* The head's fields that go on over HTTP/2, names lower-cased. */
static void nv_add_fields(struct nv_list *l, const struct http_head *head)
{
    char *out = l->names;
    for (size_t i = 0; i < head->nfields; i++) {
        const struct http_field *f = &head->fields[i];
        if (connection_specific(f->name, f->name_len, f->value, f->value_len))
            continue;
        nv_add(l, copy_lower(out, f->name, f->name_len), f->name_len, f->value, f->value_len);
        out += f->name_len;
    }
}

/* Trailers to keep for after a body: one allocation with their bytes. */
static int keep_trailers(struct h2_queue *q, const struct http_head *t)
{
    if (!t || t->nfields == 0)
        return 0;
    size_t bytes = 0;
    for (size_t i = 0; i < t->nfields; i++)
        bytes += t->fields[i].name_len + t->fields[i].value_len;
    q->trailers = malloc(t->nfields * sizeof *q->trailers + bytes + 1);
    if (!q->trailers)
        return -1;
    char *out = (char *)(q->trailers + t->nfields);
    q->ntrailers = 0;
    for (size_t i = 0; i < t->nfields; i++) {
        const struct http_field *f = &t->fields[i];
        if (connection_specific(f->name, f->name_len, f->value, f->value_len))
            continue;
        char *name = copy_lower(out, f->name, f->name_len);
        out += f->name_len;
        memcpy(out, f->value, f->value_len);
        q->trailers[q->ntrailers++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)out, f->name_len,
                                                   f->value_len, NGHTTP2_NV_FLAG_NONE};
        out += f->value_len;
    }
    return 0;
}

/* A head that carried secrets: wipe what it held before freeing it. */
static void head_wipe_free(struct http_head *head)
{
    if (!head)
        return;
    if (head->target)
        OPENSSL_cleanse((void *)head->target, head->target_len);
    for (size_t i = 0; i < head->nfields; i++)
        OPENSSL_cleanse((void *)head->fields[i].value, head->fields[i].value_len);
    http_head_free(head);
}

/* ---- resets ------------------------------------------------------------------------------- */

static void reset(struct h2_stream *s, enum side_id side, uint32_t code)
{
    bool open = side == SIDE_CLIENT ? s->client_open : s->upstream_open;
    int32_t id = id_on(s, side);
    if (!open || id <= 0)
        return;
    if (side == SIDE_CLIENT)
        s->reset_sent = true;
    nghttp2_submit_rst_stream(s->h->sessions[side], NGHTTP2_FLAG_NONE, id, code);
}

/* Nothing more can be said on this stream: both sides reset. */
static void abort_stream(struct h2_stream *s, uint32_t code)
{
    s->relay_done = true;
    reset(s, SIDE_CLIENT, code);
    reset(s, SIDE_UPSTREAM, NGHTTP2_CANCEL);
}

/* ---- what the relay writes, parsed back --------------------------------------------------- */

static nghttp2_data_provider provider(struct h2_stream *s);

/* The request the relay lets go upstream. */
static int on_up_head(void *owner, struct http_head *head)
{
    struct h2_stream *s = owner;
    const struct http_field *host = http_head_find(head, "host");
    struct nv_list l;
    if (!host || nv_list_init(&l, head, 4) < 0) {
        head_wipe_free(head);
        return HTTP_HEAD_ERROR;
    }
    nv_add(&l, ":method", 7, head->method, head->method_len);
    nv_add(&l, ":scheme", 7, "https", 5);
    nv_add(&l, ":authority", 10, host->value, host->value_len);
    nv_add(&l, ":path", 5, head->target, head->target_len);
    nv_add_fields(&l, head);
    bool body = head->chunked || (head->has_content_length && head->content_length > 0);
    nghttp2_data_provider prd = provider(s);
    int32_t id = nghttp2_submit_request(s->h->sessions[SIDE_UPSTREAM], NULL, l.nv, l.n,
                                        body ? &prd : NULL, s);
    free(l.nv);
    head_wipe_free(head);
    if (id < 0) {
        /* The upstream said GOAWAY, or ran out of stream ids: the client may retry. */
        log_msg(LOG_INFO, "conn %llu: h2 stream %d: the upstream takes no new stream: %s",
                (unsigned long long)s->h->setup.id, s->client_id, nghttp2_strerror(id));
        abort_stream(s, NGHTTP2_REFUSED_STREAM);
        return HTTP_HEAD_ERROR;
    }
    s->upstream_id = id;
    s->upstream_open = true;
    s->request_submitted = true;
    if (!body)
        s->to_upstream.eof = true;
    return HTTP_HEAD_CONTINUE;
}

static int on_queue_body(struct h2_stream *s, enum side_id to, const char *p, size_t len)
{
    struct h2_queue *q = to == SIDE_UPSTREAM ? &s->to_upstream : &s->to_client;
    if (queue_append(q, p, len) < 0)
        return -1;
    int32_t id = id_on(s, to);
    if (id > 0)
        nghttp2_session_resume_data(s->h->sessions[to], id);
    return 0;
}

static int on_queue_end(struct h2_stream *s, enum side_id to, const struct http_head *trailers)
{
    struct h2_queue *q = to == SIDE_UPSTREAM ? &s->to_upstream : &s->to_client;
    if (keep_trailers(q, trailers) < 0)
        return -1;
    q->eof = true;
    int32_t id = id_on(s, to);
    if (id > 0)
        nghttp2_session_resume_data(s->h->sessions[to], id);
    return 0;
}

static int on_up_body(void *owner, const char *p, size_t len)
{
    return on_queue_body(owner, SIDE_UPSTREAM, p, len);
}

static int on_up_complete(void *owner, const struct http_head *trailers)
{
    return on_queue_end(owner, SIDE_UPSTREAM, trailers);
}

/* The response (or airlock's answer) the relay gives the client. */
static int on_down_head(void *owner, struct http_head *head)
{
    struct h2_stream *s = owner;
    char status[4];
    struct nv_list l;
    if (head->status < 100 || head->status == 101 || head->status > 999 ||
        nv_list_init(&l, head, 1) < 0) {
        http_head_free(head);
        return HTTP_HEAD_ERROR;
    }
    snprintf(status, sizeof status, "%d", head->status);
    nv_add(&l, ":status", 7, status, 3);
    nv_add_fields(&l, head);
    if (head->status < 200) { /* an interim response: a HEADERS frame of its own */
        s->down_interim = true;
        if (s->client_open)
            nghttp2_submit_headers(s->h->sessions[SIDE_CLIENT], NGHTTP2_FLAG_NONE, s->client_id,
                                   NULL, l.nv, l.n, NULL);
        free(l.nv);
        http_head_free(head);
        return HTTP_HEAD_CONTINUE;
    }
    bool no_body =
        s->head_request || head->status == 204 || head->status == 304 || s->resp_headers_only;
    nghttp2_data_provider prd = provider(s);
    int rc = -1;
    if (s->client_open)
        rc = nghttp2_submit_response(s->h->sessions[SIDE_CLIENT], s->client_id, l.nv, l.n,
                                     no_body ? NULL : &prd);
    free(l.nv);
    http_head_free(head);
    if (rc < 0)
        return HTTP_HEAD_ERROR;
    s->response_submitted = true;
    if (no_body) {
        s->to_client.eof = true;
        s->response_ended = true;
    }
    /* A headers-only answer may still come from the relay framed as an empty body (it
     * re-frames what it redacts): parsed, and nothing of it sent. */
    return no_body && !s->resp_headers_only ? HTTP_HEAD_NO_BODY : HTTP_HEAD_CONTINUE;
}

static int on_down_body(void *owner, const char *p, size_t len)
{
    struct h2_stream *s = owner;
    return s->response_ended ? 0 : on_queue_body(s, SIDE_CLIENT, p, len);
}

static int on_down_complete(void *owner, const struct http_head *trailers)
{
    struct h2_stream *s = owner;
    if (s->down_interim) { /* the final response is still to come */
        s->down_interim = false;
        return 0;
    }
    return s->response_ended ? 0 : on_queue_end(s, SIDE_CLIENT, trailers);
}

static const struct http_parser_cbs up_cbs = {
    .on_head = on_up_head, .on_body = on_up_body, .on_complete = on_up_complete};
static const struct http_parser_cbs down_cbs = {
    .on_head = on_down_head, .on_body = on_down_body, .on_complete = on_down_complete};

/* Bytes the relay (or an answer) writes towards a side. */
static int parse_back(struct h2_stream *s, enum side_id to, const char *p, size_t len)
{
    struct http_parser *hp = to == SIDE_UPSTREAM ? &s->up_parser : &s->down_parser;
    size_t used;
    enum http_exec_status st = http_parser_execute(hp, p, len, &used);
    if (st == HTTP_OK)
        return 0;
    if (st == HTTP_ERROR && !s->relay_done)
        log_msg(LOG_WARN, "conn %llu: h2 stream %d: relay output unreadable: %s",
                (unsigned long long)s->h->setup.id, s->client_id,
                hp->error_reason ? hp->error_reason : "?");
    abort_stream(s, NGHTTP2_INTERNAL_ERROR);
    return -1;
}

/* ---- the stream's relay ------------------------------------------------------------------- */

static int relay_write(void *ctx, enum side_id to, const struct http_span *spans, unsigned n)
{
    struct h2_stream *s = ctx;
    for (unsigned i = 0; i < n; i++)
        if (parse_back(s, to, spans[i].p, spans[i].len) < 0)
            return -1;
    return 0;
}

static void relay_log(void *ctx, struct log_event *ev)
{
    struct h2_stream *s = ctx;
    ev->stream_id = (uint32_t)s->client_id;
    ev->http_version = "2";
    if (ev->class_uid == LOG_CLASS_HTTP && ev->activity == LOG_ACTIVITY_REQUEST)
        metrics_inc(ev->l7_decision == LOG_DECISION_DENY    ? M_H2_STREAMS_DENY
                    : ev->l7_decision == LOG_DECISION_AUDIT ? M_H2_STREAMS_AUDIT
                                                            : M_H2_STREAMS_ALLOW);
    s->h->io->log(s->h->ctx, ev);
}

static void relay_judge(void *ctx, const struct authority *target, const struct policy_request *q,
                        struct policy_l7 *d)
{
    struct h2_stream *s = ctx;
    struct policy *p = s->h->io->judge(s->h->ctx, target, q, d);
    if (s->judged_under)
        policy_unref(s->judged_under);
    s->judged_under = p;
}

static struct creds *relay_creds(void *ctx)
{
    struct h2_stream *s = ctx;
    return s->h->io->creds(s->h->ctx);
}

static void relay_progress(void *ctx, enum relay_progress p)
{
}

/* airlock's own answer on this stream, as the relay would give it to an HTTP/1.1 client. */
static void answer_on_stream(struct h2_stream *s, struct answer *a)
{
    if (s->response_submitted) {
        abort_stream(s, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (!a->host)
        s->h->io->describe(s->h->ctx, a);
    struct http_buf b = {0};
    answer_build(a, &b);
    if (b.failed) {
        abort_stream(s, NGHTTP2_INTERNAL_ERROR);
    } else {
        /* The answer is the whole response; whatever the relay half-wrote is moot. */
        http_parser_deinit(&s->down_parser);
        http_parser_init(&s->down_parser, HTTP_KIND_RESPONSE, &down_cbs, s);
        parse_back(s, SIDE_CLIENT, b.data, b.len);
        s->cut_request = true;
        reset(s, SIDE_UPSTREAM, NGHTTP2_CANCEL);
    }
    http_buf_free(&b);
}

static void relay_outcome(void *ctx, const struct relay_result *res)
{
    struct h2_stream *s = ctx;
    struct answer a;
    s->relay_done = true;
    switch (res->outcome) {
    case RELAY_REUSABLE:
        h2_stream_completed(s->h);
        return;
    case RELAY_CONSUMED:
        if (res->truncated || !s->response_submitted)
            abort_stream(s, NGHTTP2_INTERNAL_ERROR);
        else { /* answered before the request ended: the rest of it is not wanted */
            s->cut_request = true;
            reset(s, SIDE_UPSTREAM, NGHTTP2_CANCEL);
        }
        return;
    case RELAY_REFUSED:
        a = res->answer;
        answer_on_stream(s, &a);
        if (!s->request_submitted)
            h2_stream_refused(s->h);
        return;
    default: /* ABORTED; never UPGRADED, TUNNEL or DIAL here */
        abort_stream(s, NGHTTP2_PROTOCOL_ERROR);
        return;
    }
}

static const struct relay_io stream_relay_io = {
    .write = relay_write,
    .log = relay_log,
    .judge = relay_judge,
    .creds = relay_creds,
    .progress = relay_progress,
    .outcome = relay_outcome,
};

/* Feed the relay a side's bytes (it takes all of them: nothing is pipelined on a stream). */
static void feed(struct h2_stream *s, enum side_id from, const char *p, size_t len)
{
    if (!s->relay_done)
        relay_feed(s->relay, from, p, len);
}

static void feed_chunk(struct h2_stream *s, enum side_id from, const uint8_t *p, size_t len)
{
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    feed(s, from, size, (size_t)n);
    feed(s, from, (const char *)p, len);
    feed(s, from, "\r\n", 2);
}

/* ---- life --------------------------------------------------------------------------------- */

struct h2_stream *h2_stream_new(struct h2 *h, int32_t client_id)
{
    struct h2_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    struct relay_setup setup = {
        .id = h->setup.id, .limits = h->setup.limits, .draining = &h->never};
    s->relay = relay_new(&setup, &stream_relay_io, s);
    if (!s->relay) {
        free(s);
        return NULL;
    }
    relay_begin_tunnel(s->relay, &h->setup.target);
    s->h = h;
    s->client_id = client_id;
    s->client_open = true;
    http_parser_init(&s->up_parser, HTTP_KIND_REQUEST, &up_cbs, s);
    http_parser_init(&s->down_parser, HTTP_KIND_RESPONSE, &down_cbs, s);
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->nstreams++;
    return s;
}

void h2_stream_free(struct h2_stream *s)
{
    struct h2 *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    h->nstreams--;
    /* What was received and never passed on still counts against the connection windows. */
    if (s->to_upstream.unacked)
        nghttp2_session_consume_connection(h->sessions[SIDE_CLIENT], s->to_upstream.unacked);
    if (s->to_client.unacked)
        nghttp2_session_consume_connection(h->sessions[SIDE_UPSTREAM], s->to_client.unacked);
    relay_free(s->relay); /* may log with the judgement's strings: before the policy goes */
    if (s->judged_under)
        policy_unref(s->judged_under);
    http_parser_deinit(&s->up_parser);
    http_parser_deinit(&s->down_parser);
    http_buf_free(&s->fields);
    http_buf_free(&s->resp_fields);
    free(s->method);
    free(s->scheme);
    free(s->authority);
    free(s->path);
    free(s->host);
    if (s->to_upstream.data) /* a request body may carry what a secret was substituted into */
        OPENSSL_cleanse(s->to_upstream.data, s->to_upstream.cap);
    queue_free(&s->to_upstream);
    queue_free(&s->to_client);
    free(s);
}

/* ---- the client's request ----------------------------------------------------------------- */

static bool is(const uint8_t *p, size_t len, const char *s)
{
    return len == strlen(s) && memcmp(p, s, len) == 0;
}

/* "name: value\r\n", as the relay's HTTP/1.1 heads carry a field. */
static void append_field(struct http_buf *b, const uint8_t *name, size_t namelen,
                         const uint8_t *value, size_t valuelen)
{
    http_buf_append(b, (const char *)name, namelen);
    http_buf_puts(b, ": ");
    http_buf_append(b, (const char *)value, valuelen);
    http_buf_puts(b, "\r\n");
}

/* The last chunk of a body handed to the relay in chunks, with the trailer fields received. */
static void feed_last_chunk(struct h2_stream *s, enum side_id from, const struct http_buf *fields)
{
    struct http_buf end = {0};
    http_buf_puts(&end, "0\r\n");
    http_buf_append(&end, fields->data, fields->len);
    http_buf_puts(&end, "\r\n");
    if (!end.failed)
        feed(s, from, end.data, end.len);
    http_buf_free(&end);
}

static int keep_pseudo(char **slot, const uint8_t *value, size_t len)
{
    if (*slot)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 refuses duplicates first */
    *slot = strndup((const char *)value, len);
    return *slot ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

int h2_stream_request_header(struct h2_stream *s, const uint8_t *name, size_t namelen,
                             const uint8_t *value, size_t valuelen)
{
    /* RFC 9113 §6.5.2: each field counts its name, its value and 32 octets. */
    s->header_bytes += namelen + valuelen + 32;
    if (s->header_bytes > H2_MAX_HEADER)
        return 0; /* answered 431 once the headers end */
    if (namelen > 0 && name[0] == ':') {
        if (is(name, namelen, ":method"))
            return keep_pseudo(&s->method, value, valuelen);
        if (is(name, namelen, ":scheme"))
            return keep_pseudo(&s->scheme, value, valuelen);
        if (is(name, namelen, ":authority"))
            return keep_pseudo(&s->authority, value, valuelen);
        if (is(name, namelen, ":path"))
            return keep_pseudo(&s->path, value, valuelen);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* :protocol: extended CONNECT is off */
    }
    if (is(name, namelen, "host"))
        return keep_pseudo(&s->host, value, valuelen);
    if (is(name, namelen, "content-length"))
        s->has_content_length = true;
    append_field(&s->fields, name, namelen, value, valuelen);
    return 0;
}

/* A request refused before its relay saw it: the same answer and log line the relay gives. */
static void refuse_early(struct h2_stream *s, int status, const char *error, const char *detail)
{
    struct log_event ev = {.class_uid = LOG_CLASS_HTTP,
                           .activity = LOG_ACTIVITY_REQUEST,
                           .action = LOG_ACTION_DENY,
                           .severity = LOG_SEV_LOW,
                           .method = s->method,
                           .status = status,
                           .l7_decision = LOG_DECISION_DENY,
                           .reason = detail,
                           .overflow = -1};
    relay_log(s, &ev);
    metrics_inc(M_REQ_DENY);
    struct answer a = {.status = status,
                       .error = error,
                       .detail = detail,
                       .method = s->method,
                       .in_request = true};
    s->relay_done = true;
    answer_on_stream(s, &a);
    h2_stream_refused(s->h);
}

/* RFC 9113 §8.3.1 beyond nghttp2's own checks: what a request inside a TLS tunnel must be. NULL
 * when fine. */
static const char *request_problem(const struct h2_stream *s)
{
    if (!s->method)
        return "a request needs :method";
    if (strcmp(s->method, "CONNECT") == 0)
        return "CONNECT inside a tunnel is not supported";
    if (!s->scheme || strcmp(s->scheme, "https") != 0)
        return "a request inside a TLS tunnel must have :scheme https";
    if (!s->path || !s->path[0])
        return "a request needs :path";
    if (!s->authority && !s->host)
        return "a request needs :authority or Host";
    if (s->authority && s->host && strcasecmp(s->authority, s->host) != 0)
        return "Host differs from :authority";
    return NULL;
}

void h2_stream_request_headers_done(struct h2_stream *s, bool end_stream)
{
    s->client_ended = end_stream;
    if (s->header_bytes > H2_MAX_HEADER) {
        refuse_early(s, 431, "header_too_large", "the request's header list is too large");
        return;
    }
    const char *bad = request_problem(s);
    if (bad) {
        refuse_early(s, 400, "bad_request", bad);
        return;
    }
    s->head_request = strcmp(s->method, "HEAD") == 0;
    struct http_buf head = {0};
    http_buf_printf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\n", s->method, s->path,
                    s->authority ? s->authority : s->host);
    http_buf_append(&head, s->fields.data, s->fields.len);
    /* A body without Content-Length is handed over in chunks; either way its length is
     * nghttp2's to check against the DATA frames (RFC 9113 §8.1.1). */
    s->req_chunked_in = !end_stream && !s->has_content_length;
    if (s->req_chunked_in)
        http_buf_puts(&head, "Transfer-Encoding: chunked\r\n");
    http_buf_puts(&head, "\r\n");
    http_buf_free(&s->fields);
    if (head.failed)
        abort_stream(s, NGHTTP2_INTERNAL_ERROR);
    else
        feed(s, SIDE_CLIENT, head.data, head.len);
    http_buf_free(&head);
}

void h2_stream_request_data(struct h2_stream *s, const uint8_t *p, size_t len)
{
    if (s->relay_done || s->cut_request) {
        ack(s, SIDE_CLIENT, len); /* nobody wants it: the window opens at once */
        return;
    }
    s->to_upstream.unacked += len;
    if (s->req_chunked_in)
        feed_chunk(s, SIDE_CLIENT, p, len);
    else
        feed(s, SIDE_CLIENT, (const char *)p, len);
}

void h2_stream_request_end(struct h2_stream *s)
{
    s->client_ended = true;
    if (s->req_chunked_in) /* trailers the client sent after its body go on with it */
        feed_last_chunk(s, SIDE_CLIENT, &s->fields);
    http_buf_free(&s->fields);
}

/* ---- the upstream's response -------------------------------------------------------------- */

int h2_stream_response_header(struct h2_stream *s, const uint8_t *name, size_t namelen,
                              const uint8_t *value, size_t valuelen)
{
    s->header_bytes += namelen + valuelen + 32;
    if (s->header_bytes > 2 * H2_MAX_HEADER)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream: relayed as 502 */
    if (is(name, namelen, ":status")) {
        if (valuelen != 3)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        s->resp_status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
        return 0;
    }
    if (namelen > 0 && name[0] == ':')
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (is(name, namelen, "content-length"))
        s->resp_has_length = true;
    append_field(&s->resp_fields, name, namelen, value, valuelen);
    return 0;
}

/* The response headers received, as the HTTP/1.1 head the relay reads, with the framing given
 * (NULL: an interim response, which has none). */
static void feed_response_head(struct h2_stream *s, const char *framing)
{
    struct http_buf head = {0};
    http_buf_printf(&head, "HTTP/1.1 %d %s\r\n", s->resp_status,
                    answer_reason_phrase(s->resp_status));
    http_buf_append(&head, s->resp_fields.data, s->resp_fields.len);
    http_buf_puts(&head, framing ? framing : "");
    http_buf_puts(&head, "\r\n");
    http_buf_free(&s->resp_fields);
    s->resp_has_length = false;
    if (!head.failed)
        feed(s, SIDE_UPSTREAM, head.data, head.len);
    else if (framing)
        abort_stream(s, NGHTTP2_INTERNAL_ERROR);
    http_buf_free(&head);
}

void h2_stream_response_headers_done(struct h2_stream *s, bool end_stream)
{
    if (s->resp_trailers) { /* trailers: the response ends with them */
        h2_stream_response_end(s);
        return;
    }
    s->header_bytes = 0;
    if (s->resp_status < 200) {
        /* Interim responses go on (RFC 9110 §15.2), through the relay like a final one, so
         * that their fields are redacted as its are; 101 has no meaning in HTTP/2 (RFC 9113
         * §8.6): a connection error nghttp2 raises itself. */
        if (s->resp_status != 101) {
            feed_response_head(s, NULL);
        } else {
            http_buf_free(&s->resp_fields);
            s->resp_has_length = false;
        }
        return;
    }
    s->resp_chunked_in = !end_stream && !s->resp_has_length;
    s->resp_headers_only = end_stream;
    const char *framing = s->resp_chunked_in ? "Transfer-Encoding: chunked\r\n"
                          : end_stream && !s->resp_has_length && !s->head_request
                              ? "Content-Length: 0\r\n"
                              : "";
    s->resp_trailers = true; /* any HEADERS after this one are trailers */
    feed_response_head(s, framing);
    if (end_stream)
        h2_stream_response_end(s);
}

void h2_stream_response_data(struct h2_stream *s, const uint8_t *p, size_t len)
{
    if (s->relay_done) {
        ack(s, SIDE_UPSTREAM, len); /* nobody wants it: the window opens at once */
        return;
    }
    s->to_client.unacked += len;
    if (s->resp_chunked_in)
        feed_chunk(s, SIDE_UPSTREAM, p, len);
    else
        feed(s, SIDE_UPSTREAM, (const char *)p, len);
}

void h2_stream_response_end(struct h2_stream *s)
{
    if (s->resp_chunked_in)
        feed_last_chunk(s, SIDE_UPSTREAM, &s->resp_fields);
    http_buf_free(&s->resp_fields);
}

/* ---- ends --------------------------------------------------------------------------------- */

void h2_stream_closed(struct h2_stream *s, enum side_id side, uint32_t code)
{
    if (side == SIDE_CLIENT) {
        s->client_open = false;
        /* The client is gone (or has all it wanted): so is the upstream's stream. */
        reset(s, SIDE_UPSTREAM, code == NGHTTP2_NO_ERROR ? NGHTTP2_CANCEL : code);
    } else {
        s->upstream_open = false;
        if (!s->to_client.eof && !s->relay_done) {
            if (code == NGHTTP2_REFUSED_STREAM && !s->response_submitted) {
                /* Not processed upstream (RFC 9113 §8.7): the client may retry it. */
                s->relay_done = true;
                reset(s, SIDE_CLIENT, NGHTTP2_REFUSED_STREAM);
            } else if (!s->response_submitted) {
                relay_eof(s->relay, SIDE_UPSTREAM); /* answered 502 */
            } else {
                abort_stream(s, code == NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code);
            }
        }
    }
    if (!s->client_open && !s->upstream_open)
        h2_stream_free(s);
}

static bool waiting(const struct h2_queue *q)
{
    return q->off < q->len;
}

void h2_stream_timeout(struct h2_stream *s)
{
    if (s->response_submitted || s->relay_done) {
        /* A whole timeout with no byte either way, and bytes still wait for a side: it opened
         * no window for them. A quiet stream (gRPC's between two messages) has nothing waiting
         * and goes on; this one would hold its buffers and its upstream stream for good, where
         * HTTP/1.1 gives up on a response that stopped moving. */
        if (waiting(&s->to_client) || waiting(&s->to_upstream)) {
            log_msg(LOG_INFO, "conn %llu: h2 stream %d: the %s took no byte in time: reset",
                    (unsigned long long)s->h->setup.id, s->client_id,
                    waiting(&s->to_client) ? "client" : "upstream");
            abort_stream(s, NGHTTP2_CANCEL);
        }
        return;
    }
    s->relay_done = true;
    log_msg(LOG_INFO, "conn %llu: h2 stream %d: no response from upstream in time",
            (unsigned long long)s->h->setup.id, s->client_id);
    struct answer a = {.status = 504,
                       .error = "upstream_timeout",
                       .detail = "no response from upstream in time",
                       .in_request = true};
    relay_describe(s->relay, &a);
    answer_on_stream(s, &a);
}

ssize_t h2_stream_read(struct h2_stream *s, enum side_id to, uint8_t *buf, size_t len,
                       uint32_t *flags)
{
    struct h2_queue *q = to == SIDE_UPSTREAM ? &s->to_upstream : &s->to_client;
    size_t avail = q->len - q->off;
    size_t n = avail < len ? avail : len;
    if (n > 0) /* an empty queue may have no buffer yet: memcpy from NULL is undefined */
        memcpy(buf, q->data + q->off, n);
    q->off += n;
    /* The bytes are on their way: the sender may send as many more. */
    size_t give = q->off == q->len ? q->unacked : (n < q->unacked ? n : q->unacked);
    q->unacked -= give;
    ack(s, other(to), give);
    if (q->off < q->len)
        return (ssize_t)n;
    q->off = q->len = 0;
    if (!q->eof)
        return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (q->ntrailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_submit_trailer(s->h->sessions[to], id_on(s, to), q->trailers, q->ntrailers);
    }
    if (to == SIDE_CLIENT) {
        s->response_ended = true;
        if (s->cut_request && !s->client_ended)
            reset(s, SIDE_CLIENT, NGHTTP2_NO_ERROR);
    }
    return (ssize_t)n;
}

static ssize_t read_for(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t len,
                        uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct h2_stream *s = source->ptr;
    struct h2 *h = user;
    return h2_stream_read(s, session == h->sessions[SIDE_CLIENT] ? SIDE_CLIENT : SIDE_UPSTREAM, buf,
                          len, flags);
}

static nghttp2_data_provider provider(struct h2_stream *s)
{
    return (nghttp2_data_provider){.source.ptr = s, .read_callback = read_for};
}
