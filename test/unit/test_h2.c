/* SPDX-License-Identifier: MIT */
/* Unit tests for h2: whole HTTP/2 connections driven in memory. The client is an nghttp2 client
 * session whose bytes are fed to h2 as the client's; the upstream is an nghttp2 server session
 * fed with what h2 writes upstream, whose bytes go back to h2 as the upstream's. Both libraries
 * check what h2 writes (a frame or field that HTTP/2 forbids resets the stream or ends the
 * connection, which the tests see). A few tests speak raw frames instead, to do what a
 * well-behaved library never does: floods, garbage. The judge decides by path ("/deny..." is
 * denied). Each test checks what each peer saw per stream, the judgements, and how the session
 * ended; every test frees everything. */
#include "airlock/h2.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <nghttp2/nghttp2.h>

#include "airlock/creds.h"
#include "test.h"

#define TARGET_HOST "api.example.com"
#define SECRET      "s3cretTOKENvalue42"
#define SECRET_ENV  "AIRLOCK_TEST_H2_SECRET"
#define PH          "AIRLOCK_PLACEHOLDER_API_000001"

#define STR_MAX  512
#define REC_MAX  64   /* log events and judgements kept (all are counted) */
#define MAX_ID   2048 /* stream ids a test may use */
#define KIB      1024
#define MIB      (1024 * 1024)
#define PEER_WIN 65535 /* the initial window of both test peers (RFC 9113 §6.9.2) */

/* api.example.com:443 holds the placeholder PH (its secret is SECRET). */
static const char creds_json[] =
    "{\"version\": 1, \"providers\": {"
    " \"api\": {\"placeholder\": \"" PH "\", \"secret\": {\"env\": \"" SECRET_ENV "\"},"
    "  \"endpoints\": [{\"host\": \"" TARGET_HOST "\", \"port\": 443}]}}}";

static struct creds *the_creds;

/* Bodies large enough to turn every window: a pattern nobody could produce by accident. */
static char *big;
#define BIG_LEN (3 * MIB)

static void copy_str(char *dst, const char *src)
{
    snprintf(dst, STR_MAX, "%s", src ? src : "(null)");
}

/* ---- what each peer saw on a stream ------------------------------------------------------ */

struct rec {
    int32_t id;
    bool opened; /* a HEADERS frame opened it (received or sent) */
    char method[64], path[STR_MAX], authority[STR_MAX], scheme[64];
    int status;  /* the final status (client side) */
    int interim; /* the last 1xx status (client side) */
    bool cur_interim, in_trailers, head_done;
    struct http_buf headers;  /* "name: value\n" lines of the request or final response */
    struct http_buf trailers; /* the same for the trailer section */
    struct http_buf body;
    size_t body_len;          /* bytes received, kept in body unless the peer discards them */
    struct http_buf interims; /* the 1xx statuses received, "100,103," */
    struct http_buf noindex;  /* names of the fields received never-indexed, "a,b," */
    bool end_stream;          /* END_STREAM received */
    bool closed;
    uint32_t close_code;
    bool rst_recv;
    uint32_t rst_code;
    size_t unconsumed; /* received but not yet consumed (a peer that does not read) */
    /* what this peer sends on the stream: a borrowed body, and trailers after it */
    const char *src;
    size_t src_len, src_off;
    bool src_hold;  /* the body waits (NGHTTP2_ERR_DEFERRED) until the test releases it */
    bool src_open;  /* after its bytes the body waits instead of ending */
    bool src_cycle; /* the body is src_len bytes of big, round and round */
    const nghttp2_nv *src_trailers;
    size_t src_ntrailers;
};

struct peer {
    nghttp2_session *s; /* NULL: a raw client (the test writes frames itself) */
    struct rec *recs[MAX_ID];
    int recv_error;        /* the first error its session returned on h2's bytes */
    size_t invalid_frames; /* frames it rejected (a malformed field resets a stream) */
    size_t not_sent;       /* frames it could not send (a test setup mistake) */
    bool goaway;
    uint32_t goaway_code;
    int32_t goaway_last;
    size_t ping_acks, settings_acks;
    bool manual_window; /* it acknowledges nothing until peer_consume */
    bool discard;       /* it counts the bodies it receives, and keeps none */
};

struct rec_log {
    int status;
    uint32_t stream_id;
    char version[16];
    enum log_decision decision;
    char method[STR_MAX], path[STR_MAX], reason[STR_MAX];
};

struct rec_judge {
    struct authority target;
    char method[STR_MAX], path[STR_MAX];
};

struct world {
    struct h2 *h;
    struct authority target;
    struct peer client, up;
    bool raw;                   /* the client speaks raw frames */
    struct http_buf to[2];      /* what h2 wrote for each side and the peer has not read */
    struct http_buf raw_client; /* raw: everything h2 wrote to the client */
    bool with_creds;
    bool write_fails[2];
    unsigned done_calls;
    bool done_error;
    char done_why[STR_MAX];
    size_t late_writes; /* writes after io.done (a defect: every frame was written by then) */
    size_t feeds_short; /* h2_feed took fewer bytes than given (a defect) */
    struct rec_log logs[REC_MAX];
    size_t nlogs;
    struct rec_judge judges[REC_MAX];
    size_t njudges;
};

static struct peer *peer_of(struct world *w, nghttp2_session *s)
{
    return s == w->client.s ? &w->client : &w->up;
}

static struct rec *rec_get(struct peer *p, int32_t id)
{
    if (id <= 0 || id >= MAX_ID)
        return NULL;
    if (!p->recs[id]) {
        p->recs[id] = calloc(1, sizeof *p->recs[id]);
        p->recs[id]->id = id;
    }
    return p->recs[id];
}

/* The rec of a stream, never NULL (a stream id out of range fails the test). */
static struct rec *rec_at(struct peer *p, int32_t id)
{
    static struct rec none;
    struct rec *r = rec_get(p, id);

    CHECK(r != NULL);
    return r ? r : &none;
}

static void peer_free(struct peer *p)
{
    nghttp2_session_del(p->s);
    for (int i = 0; i < MAX_ID; i++) {
        struct rec *r = p->recs[i];

        if (!r)
            continue;
        http_buf_free(&r->headers);
        http_buf_free(&r->trailers);
        http_buf_free(&r->body);
        http_buf_free(&r->interims);
        http_buf_free(&r->noindex);
        free(r);
    }
}

/* The value of a field in "name: value\n" lines, copied (NULL when absent). */
static const char *field(const struct http_buf *b, const char *name)
{
    static char value[STR_MAX];
    size_t nlen = strlen(name);

    for (size_t i = 0; i < b->len;) {
        const char *line = b->data + i;
        const char *nl = memchr(line, '\n', b->len - i);
        size_t len = nl ? (size_t)(nl - line) : b->len - i;

        if (len > nlen + 1 && !memcmp(line, name, nlen) && line[nlen] == ':' &&
            line[nlen + 1] == ' ') {
            snprintf(value, sizeof value, "%.*s", (int)(len - nlen - 2), line + nlen + 2);
            return value;
        }
        i += len + 1;
    }
    return NULL;
}

static size_t field_count(const struct http_buf *b, const char *name)
{
    size_t n = 0, nlen = strlen(name);

    for (size_t i = 0; i < b->len;) {
        const char *line = b->data + i;
        const char *nl = memchr(line, '\n', b->len - i);
        size_t len = nl ? (size_t)(nl - line) : b->len - i;

        n += len > nlen && !memcmp(line, name, nlen) && line[nlen] == ':';
        i += len + 1;
    }
    return n;
}

/* The first upstream stream that carried this :path (NULL when none did). */
static struct rec *up_find(struct world *w, const char *path)
{
    for (int i = 1; i < MAX_ID; i++)
        if (w->up.recs[i] && w->up.recs[i]->opened && !strcmp(w->up.recs[i]->path, path))
            return w->up.recs[i];
    return NULL;
}

static size_t up_streams(const struct world *w)
{
    size_t n = 0;

    for (int i = 1; i < MAX_ID; i++)
        n += w->up.recs[i] && w->up.recs[i]->opened;
    return n;
}

/* A field from two literals, and one whose value is only known at run time. */
#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE         \
    }
#define NVS(n, v)                                                                                  \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

/* ---- nghttp2 callbacks, for both peers --------------------------------------------------- */

static void up_answer(struct world *w, struct rec *r);

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    struct rec *r = rec_get(peer_of(ud, s), frame->hd.stream_id);

    if (r) {
        r->opened = true;
        r->in_trailers = r->head_done;
        r->cur_interim = false;
    }
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    struct rec *r = rec_get(peer_of(ud, s), frame->hd.stream_id);
    char v[STR_MAX];

    if (!r)
        return 0;
    snprintf(v, sizeof v, "%.*s", (int)valuelen, (const char *)value);
    if (namelen == 7 && !memcmp(name, ":status", 7)) {
        int status = atoi(v);

        r->cur_interim = status < 200;
        if (status < 200) {
            r->interim = status;
            http_buf_printf(&r->interims, "%d,", status);
        } else {
            r->status = status;
        }
        return 0;
    }
    if (namelen == 7 && !memcmp(name, ":method", 7))
        copy_str(r->method, v);
    else if (namelen == 5 && !memcmp(name, ":path", 5))
        copy_str(r->path, v);
    else if (namelen == 10 && !memcmp(name, ":authority", 10))
        copy_str(r->authority, v);
    else if (namelen == 7 && !memcmp(name, ":scheme", 7))
        copy_str(r->scheme, v);
    if (r->cur_interim)
        return 0;
    if (flags & NGHTTP2_NV_FLAG_NO_INDEX) {
        http_buf_append(&r->noindex, (const char *)name, namelen);
        http_buf_puts(&r->noindex, ",");
    }
    struct http_buf *b = r->in_trailers ? &r->trailers : &r->headers;
    http_buf_append(b, (const char *)name, namelen);
    http_buf_puts(b, ": ");
    http_buf_append(b, (const char *)value, valuelen);
    http_buf_puts(b, "\n");
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *ud)
{
    struct world *w = ud;
    struct peer *p = peer_of(w, s);
    struct rec *r = rec_get(p, frame->hd.stream_id);
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;

    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (r && !r->in_trailers && !r->cur_interim)
            r->head_done = true;
        /* fall through */
    case NGHTTP2_DATA:
        if (r && end) {
            r->end_stream = true;
            if (p == &w->up)
                up_answer(w, r);
        }
        break;
    case NGHTTP2_RST_STREAM:
        if (r) {
            r->rst_recv = true;
            r->rst_code = frame->rst_stream.error_code;
        }
        break;
    case NGHTTP2_GOAWAY:
        p->goaway = true;
        p->goaway_code = frame->goaway.error_code;
        p->goaway_last = frame->goaway.last_stream_id;
        break;
    case NGHTTP2_PING:
        p->ping_acks += !!(frame->hd.flags & NGHTTP2_FLAG_ACK);
        break;
    case NGHTTP2_SETTINGS:
        p->settings_acks += !!(frame->hd.flags & NGHTTP2_FLAG_ACK);
        break;
    default:
        break;
    }
    return 0;
}

static int on_invalid_frame(nghttp2_session *s, const nghttp2_frame *frame, int error, void *ud)
{
    struct peer *p = peer_of(ud, s);

    p->invalid_frames++;
    fprintf(stderr, "  the %s rejected a frame of type %u on stream %d: %s\n",
            p == &((struct world *)ud)->client ? "client" : "upstream", frame->hd.type,
            frame->hd.stream_id, nghttp2_strerror(error));
    return 0;
}

static int on_frame_not_sent(nghttp2_session *s, const nghttp2_frame *frame, int error, void *ud)
{
    peer_of(ud, s)->not_sent++;
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    struct peer *p = peer_of(ud, s);
    struct rec *r = rec_get(p, id);

    if (r) {
        if (!p->discard)
            http_buf_append(&r->body, (const char *)data, len);
        r->body_len += len;
        if (p->manual_window)
            r->unconsumed += len;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct rec *r = rec_get(peer_of(ud, s), id);

    if (r) {
        r->closed = true;
        r->close_code = code;
    }
    return 0;
}

/* A stream's body from r->src, then its trailers (RFC 9113 §8.1). */
static ssize_t read_src(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *source, void *ud)
{
    struct rec *r = rec_get(peer_of(ud, s), id);
    size_t n;

    if (!r)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    n = r->src_len - r->src_off;
    if (r->src_hold)
        return NGHTTP2_ERR_DEFERRED;
    if (n > len)
        n = len;
    if (n == 0 && r->src_open)
        return NGHTTP2_ERR_DEFERRED;
    if (r->src_cycle) {
        size_t at = r->src_off % BIG_LEN;

        if (n > BIG_LEN - at)
            n = BIG_LEN - at;
        memcpy(buf, big + at, n);
    } else {
        memcpy(buf, r->src + r->src_off, n);
    }
    r->src_off += n;
    if (r->src_off == r->src_len && !r->src_open) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (r->src_ntrailers) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            CHECK_EQ(nghttp2_submit_trailer(s, id, r->src_trailers, r->src_ntrailers), 0);
        }
    }
    return (ssize_t)n;
}

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cb;

    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_sent);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    return cb;
}

/* ---- the mock controller: h2's io --------------------------------------------------------- */

static int io_write(void *ctx, enum side_id to, const char *p, size_t len)
{
    struct world *w = ctx;

    if (w->done_calls)
        w->late_writes++;
    if (w->write_fails[to])
        return -1;
    http_buf_append(&w->to[to], p, len);
    return 0;
}

static void io_log(void *ctx, struct log_event *ev)
{
    struct world *w = ctx;
    struct rec_log *l;

    /* no log line ever carries a secret or a placeholder */
    CHECK(!ev->path || (!strstr(ev->path, SECRET) && !strstr(ev->path, PH)));
    CHECK(!ev->reason || (!strstr(ev->reason, SECRET) && !strstr(ev->reason, PH)));
    if (w->nlogs == REC_MAX)
        return;
    l = &w->logs[w->nlogs++];
    l->status = ev->status;
    l->decision = ev->l7_decision;
    l->stream_id = ev->stream_id;
    copy_str(l->version, ev->http_version);
    copy_str(l->method, ev->method);
    copy_str(l->path, ev->path);
    copy_str(l->reason, ev->reason);
}

/* Allow everything but paths under /deny. The judgement's strings are static: no snapshot. */
static struct policy *io_judge(void *ctx, const struct authority *target,
                               const struct policy_request *q, struct policy_l7 *d)
{
    struct world *w = ctx;

    memset(d, 0, sizeof *d);
    d->policy_name = "test";
    d->verdict = POLICY_ALLOW;
    if (!strncmp(q->path, "/deny", 5)) {
        d->verdict = POLICY_DENY;
        d->reason = "no rule allows method and path";
        snprintf(d->rule_missing, sizeof d->rule_missing, "{\"method\":\"%s\",\"path\":\"%s\"}",
                 q->method, q->path);
    }
    if (w->njudges < REC_MAX) {
        struct rec_judge *j = &w->judges[w->njudges];

        j->target = *target;
        copy_str(j->method, q->method);
        copy_str(j->path, q->path);
    }
    w->njudges++;
    return NULL;
}

static struct creds *io_creds(void *ctx)
{
    struct world *w = ctx;

    if (!w->with_creds)
        return NULL;
    creds_ref(the_creds);
    return the_creds;
}

static void io_done(void *ctx, const char *why, bool error)
{
    struct world *w = ctx;

    w->done_calls++;
    w->done_error = error;
    CHECK(why != NULL);
    copy_str(w->done_why, why);
}

/* What the connection knows for an answer: its target and the policy that let it through. */
static void io_describe(void *ctx, struct answer *a)
{
    struct world *w = ctx;

    a->host = w->target.host;
    a->port = w->target.port;
    a->policy = "test";
}

static const struct h2_io mock_io = {.write = io_write,
                                     .log = io_log,
                                     .judge = io_judge,
                                     .creds = io_creds,
                                     .describe = io_describe,
                                     .done = io_done};

/* ---- opening, pumping, closing ----------------------------------------------------------- */

struct opts {
    const char *host;         /* the tunnel's target (TARGET_HOST) */
    bool raw;                 /* a raw client */
    bool creds;               /* the providers are on */
    bool client_hold_win;     /* the client acknowledges nothing it receives until consumed */
    bool up_hold_win;         /* nor does the upstream */
    uint32_t up_max_streams;  /* the upstream's SETTINGS_MAX_CONCURRENT_STREAMS (100) */
    uint32_t client_peer_max; /* streams the client may open before h2's SETTINGS (100) */
};

static nghttp2_session *session_new(struct world *w, bool server, bool hold_win, uint32_t peer_max)
{
    nghttp2_session_callbacks *cb = callbacks();
    nghttp2_option *opt;
    nghttp2_session *s;
    int rc;

    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, hold_win);
    nghttp2_option_set_max_send_header_block_length(opt, 512 * KIB);
    if (peer_max)
        nghttp2_option_set_peer_max_concurrent_streams(opt, peer_max);
    rc = server ? nghttp2_session_server_new2(&s, cb, w, opt)
                : nghttp2_session_client_new2(&s, cb, w, opt);
    CHECK_EQ(rc, 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    return rc ? NULL : s;
}

static struct world *world_open_with(const struct opts *o)
{
    struct world *w = calloc(1, sizeof *w);
    const char *host = o->host ? o->host : TARGET_HOST;
    struct h2_setup setup = {.id = 1, .limits = &http_default_limits};
    nghttp2_settings_entry up_settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->up_max_streams ? o->up_max_streams : 100},
    };
    nghttp2_settings_entry client_settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};

    CHECK_EQ(target_parse_authority(host, strlen(host), false, 443, &w->target), 0);
    w->raw = o->raw;
    w->with_creds = o->creds;
    setup.target = w->target;
    w->up.s = session_new(w, true, o->up_hold_win, 0);
    w->up.manual_window = o->up_hold_win;
    CHECK_EQ(nghttp2_submit_settings(w->up.s, NGHTTP2_FLAG_NONE, up_settings, 1), 0);
    if (!o->raw) {
        w->client.s = session_new(w, false, o->client_hold_win, o->client_peer_max);
        w->client.manual_window = o->client_hold_win;
        CHECK_EQ(nghttp2_submit_settings(w->client.s, NGHTTP2_FLAG_NONE, client_settings, 1), 0);
    }
    w->h = h2_new(&setup, &mock_io, w);
    CHECK(w->h != NULL);
    h2_flush(w->h); /* as the controller does: airlock's SETTINGS and preface go out first */
    return w;
}

static struct world *world_open(void)
{
    static const struct opts none;

    return world_open_with(&none);
}

/* Plaintext from a side, as the transport hands it over; nothing is read once h2 said done. */
static void feed(struct world *w, enum side_id from, const void *p, size_t len)
{
    size_t took;

    if (w->done_calls)
        return;
    took = h2_feed(w->h, from, p, len);
    CHECK_EQ(took, len);
    w->feeds_short += took != len;
}

/* A peer's session sends all it has. */
static bool peer_send(struct world *w, enum side_id side)
{
    struct peer *p = side == SIDE_CLIENT ? &w->client : &w->up;
    const uint8_t *data;
    ssize_t n;
    bool moved = false;

    if (!p->s || w->done_calls)
        return false;
    while ((n = nghttp2_session_mem_send(p->s, &data)) > 0) {
        feed(w, side, data, (size_t)n);
        moved = true;
    }
    CHECK(n == 0);
    return moved;
}

/* A peer reads what h2 wrote to it. */
static bool deliver(struct world *w, enum side_id side)
{
    struct peer *p = side == SIDE_CLIENT ? &w->client : &w->up;
    struct http_buf b = w->to[side];
    ssize_t n;

    if (b.len == 0)
        return false;
    memset(&w->to[side], 0, sizeof w->to[side]);
    if (!p->s) {
        http_buf_append(&w->raw_client, b.data, b.len);
    } else if (!p->recv_error) {
        n = nghttp2_session_mem_recv(p->s, (const uint8_t *)b.data, b.len);
        if (n < 0) {
            p->recv_error = (int)n;
            fprintf(stderr, "  the %s failed on h2's bytes: %s\n",
                    side == SIDE_CLIENT ? "client" : "upstream", nghttp2_strerror((int)n));
        }
    }
    http_buf_free(&b);
    return true;
}

/* Move bytes until nothing moves. */
static void pump(struct world *w)
{
    for (int round = 0; round < 100000; round++) {
        bool moved = peer_send(w, SIDE_CLIENT);

        moved |= peer_send(w, SIDE_UPSTREAM);
        moved |= deliver(w, SIDE_CLIENT);
        moved |= deliver(w, SIDE_UPSTREAM);
        if (!moved)
            return;
    }
    CHECK(!"the connection never went quiet");
}

/* A peer that held its window back now acknowledges all it received (and from here on reads
 * as it receives). */
static void peer_consume(struct world *w, struct peer *p)
{
    for (int i = 1; i < MAX_ID; i++) {
        struct rec *r = p->recs[i];

        if (!r || !r->unconsumed)
            continue;
        if (nghttp2_session_find_stream(p->s, i))
            CHECK_EQ(nghttp2_session_consume(p->s, i, r->unconsumed), 0);
        else
            CHECK_EQ(nghttp2_session_consume_connection(p->s, r->unconsumed), 0);
        r->unconsumed = 0;
    }
}

/* Neither peer found anything wrong in what h2 wrote, and h2 kept its own contract. */
static void expect_sane(const struct world *w)
{
    CHECK_EQ(w->client.recv_error, 0);
    CHECK_EQ(w->up.recv_error, 0);
    CHECK_EQ(w->client.invalid_frames, 0);
    CHECK_EQ(w->up.invalid_frames, 0);
    CHECK_EQ(w->client.not_sent, 0);
    CHECK_EQ(w->up.not_sent, 0);
    CHECK_EQ(w->late_writes, 0);
    CHECK_EQ(w->feeds_short, 0);
    CHECK(w->done_calls <= 1);
}

/* Nothing ended the connection. */
static void expect_alive(const struct world *w)
{
    CHECK_EQ(w->done_calls, 0);
    CHECK(!w->client.goaway);
    CHECK(!w->up.goaway);
}

static void world_close(struct world *w)
{
    if (w->h)
        h2_free(w->h);
    CHECK_EQ(w->late_writes, 0);
    CHECK(w->done_calls <= 1);
    peer_free(&w->client);
    peer_free(&w->up);
    for (int s = 0; s < 2; s++)
        http_buf_free(&w->to[s]);
    http_buf_free(&w->raw_client);
    free(w);
}

/* ---- the client's requests --------------------------------------------------------------- */

struct req {
    const char *method;    /* GET */
    const char *path;      /* "/" */
    const char *authority; /* TARGET_HOST; "" leaves it out */
    const char *scheme;    /* https */
    const nghttp2_nv *extra;
    size_t nextra;
    const char *body; /* borrowed until the stream ends */
    size_t len;
    bool content_length; /* send content-length: len */
    bool hold;           /* the body waits for client_release */
    bool cycle;          /* len bytes of big, round and round (body unused) */
    const nghttp2_nv *trailers;
    size_t ntrailers;
};

static int32_t request(struct world *w, const struct req *q)
{
    nghttp2_nv nva[40];
    size_t n = 0;
    char cl[32];
    nghttp2_data_provider prd;
    bool with_body = q->body || q->hold || q->cycle || q->ntrailers;
    int32_t id;

    nva[n++] = (nghttp2_nv)NVS(":method", q->method ? q->method : "GET");
    if (!q->method || strcmp(q->method, "CONNECT")) {
        nva[n++] = (nghttp2_nv)NVS(":scheme", q->scheme ? q->scheme : "https");
        nva[n++] = (nghttp2_nv)NVS(":path", q->path ? q->path : "/");
    }
    if (!q->authority || *q->authority)
        nva[n++] = (nghttp2_nv)NVS(":authority", q->authority ? q->authority : TARGET_HOST);
    for (size_t i = 0; i < q->nextra && n < 38; i++)
        nva[n++] = q->extra[i];
    if (q->content_length) {
        snprintf(cl, sizeof cl, "%zu", q->len);
        nva[n++] = (nghttp2_nv)NVS("content-length", cl);
    }
    prd.source.ptr = NULL; /* read_src finds the stream's rec by its id */
    prd.read_callback = read_src;
    id = nghttp2_submit_request(w->client.s, NULL, nva, n, with_body ? &prd : NULL, NULL);
    CHECK(id > 0);
    if (id <= 0)
        return 1;
    struct rec *r = rec_at(&w->client, id);
    r->opened = true;
    r->src = q->body;
    r->src_len = q->len;
    r->src_hold = q->hold;
    r->src_cycle = q->cycle;
    r->src_trailers = q->trailers;
    r->src_ntrailers = q->ntrailers;
    return id;
}

static int32_t get(struct world *w, const char *path)
{
    return request(w, &(struct req){.path = path});
}

static void client_release(struct world *w, int32_t id)
{
    rec_at(&w->client, id)->src_hold = false;
    CHECK_EQ(nghttp2_session_resume_data(w->client.s, id), 0);
}

/* ---- the upstream's answers -------------------------------------------------------------- */

struct resp {
    int status; /* 200 */
    const nghttp2_nv *extra;
    size_t nextra;
    const char *body; /* borrowed until the stream ends */
    size_t len;
    bool content_length;
    bool open;  /* the body stays open after its bytes (a response cut short) */
    bool cycle; /* len bytes of big, round and round (src unused) */
    const nghttp2_nv *trailers;
    size_t ntrailers;
};

static void up_respond(struct world *w, struct rec *r, const struct resp *a)
{
    nghttp2_nv nva[24];
    size_t n = 0;
    char status[8], cl[32];
    nghttp2_data_provider prd = {.source.ptr = NULL, .read_callback = read_src};
    bool with_body = a->body || a->open || a->cycle || a->ntrailers;

    snprintf(status, sizeof status, "%d", a->status ? a->status : 200);
    nva[n++] = (nghttp2_nv)NVS(":status", status);
    for (size_t i = 0; i < a->nextra && n < 22; i++)
        nva[n++] = a->extra[i];
    if (a->content_length) {
        snprintf(cl, sizeof cl, "%zu", a->len);
        nva[n++] = (nghttp2_nv)NVS("content-length", cl);
    }
    r->src = a->body;
    r->src_len = a->len;
    r->src_off = 0;
    r->src_open = a->open;
    r->src_cycle = a->cycle;
    r->src_trailers = a->trailers;
    r->src_ntrailers = a->ntrailers;
    CHECK_EQ(nghttp2_submit_response(w->up.s, r->id, nva, n, with_body ? &prd : NULL), 0);
}

static const char grpc_msg[] = "\0\0\0\0\5hello"; /* one length-prefixed message */
static const nghttp2_nv grpc_head[] = {NV("content-type", "application/grpc")};
static const nghttp2_nv grpc_trailers[] = {NV("grpc-status", "0"), NV("grpc-message", "fine")};
static const nghttp2_nv text_plain[] = {NV("content-type", "text/plain")};
static const nghttp2_nv secret_head[] = {NV("x-key", SECRET)};
static const char secret_body[] = "{\"k\":\"" SECRET "\"}";
#define BIG_RESPONSE (3 * MIB / 2)
#define HUGE_LEN     (40 * MIB) /* a long transfer: hundreds of window updates */

static bool starts(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

/* The upstream answers a request once it has all of it, by its path: /hold waits for the test,
 * /reset resets the stream, /big is 1.5 MiB, /grpc answers with trailers, /echo sends the body
 * back, /secret echoes SECRET, /204 has no content, /hints sends a 100 and a 103 first,
 * /refuse resets with REFUSED_STREAM; HEAD gets the
 * head of "ok", anything else "ok". */
static void up_answer(struct world *w, struct rec *r)
{
    if (starts(r->path, "/hold"))
        return;
    if (starts(r->path, "/reset")) {
        CHECK_EQ(
            nghttp2_submit_rst_stream(w->up.s, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_INTERNAL_ERROR),
            0);
    } else if (starts(r->path, "/huge")) {
        up_respond(w, r, &(struct resp){.len = HUGE_LEN, .cycle = true});
    } else if (starts(r->path, "/big")) {
        up_respond(w, r, &(struct resp){.body = big, .len = BIG_RESPONSE, .content_length = true});
    } else if (starts(r->path, "/grpc")) {
        up_respond(w, r,
                   &(struct resp){.extra = grpc_head,
                                  .nextra = 1,
                                  .body = grpc_msg,
                                  .len = sizeof grpc_msg - 1,
                                  .trailers = grpc_trailers,
                                  .ntrailers = 2});
    } else if (starts(r->path, "/echo")) {
        up_respond(w, r,
                   &(struct resp){.body = r->body.data ? r->body.data : "", .len = r->body.len});
    } else if (starts(r->path, "/secret")) {
        up_respond(w, r,
                   &(struct resp){.extra = secret_head,
                                  .nextra = 1,
                                  .body = secret_body,
                                  .len = sizeof secret_body - 1,
                                  .content_length = true});
    } else if (starts(r->path, "/204")) {
        up_respond(w, r, &(struct resp){.status = 204});
    } else if (starts(r->path, "/hints")) {
        nghttp2_nv cont[] = {NV(":status", "100")};
        nghttp2_nv hints[] = {NV(":status", "103"), NV("link", "</s.css>; rel=preload")};

        CHECK_EQ(nghttp2_submit_headers(w->up.s, NGHTTP2_FLAG_NONE, r->id, NULL, cont, 1, NULL), 0);
        CHECK_EQ(nghttp2_submit_headers(w->up.s, NGHTTP2_FLAG_NONE, r->id, NULL, hints, 2, NULL),
                 0);
        up_respond(w, r, &(struct resp){.body = "ok", .len = 2, .content_length = true});
    } else if (starts(r->path, "/refuse")) {
        CHECK_EQ(
            nghttp2_submit_rst_stream(w->up.s, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_REFUSED_STREAM),
            0);
    } else if (!strcmp(r->method, "HEAD")) {
        up_respond(w, r, &(struct resp){.len = 2, .content_length = true});
    } else {
        up_respond(
            w, r,
            &(struct resp){
                .extra = text_plain, .nextra = 1, .body = "ok", .len = 2, .content_length = true});
    }
}

/* ---- expectations ------------------------------------------------------------------------ */

/* A stream that ended well: its final status, the whole body, END_STREAM, no reset. */
#define EXPECT_RESPONSE(r, st, b, l) expect_response(r, st, b, l, __FILE__, __LINE__)
static void expect_response(const struct rec *r, int status, const char *body, size_t len,
                            const char *file, int line)
{
    bool ok = r->status == status && r->body.len == len &&
              (len == 0 || memcmp(r->body.data, body, len) == 0) && r->end_stream && r->closed &&
              r->close_code == NGHTTP2_NO_ERROR;

    if (ok) {
        test_passed++;
        return;
    }
    test_failed++;
    fprintf(stderr,
            "%s:%d: stream %d: want %d with %zu body bytes, ended; got %d with %zu body bytes "
            "(%s), end_stream %d, closed %d with code %u\n",
            file, line, r->id, status, len, r->status, r->body.len,
            r->body.len == len ? "differing" : "another length", r->end_stream, r->closed,
            r->close_code);
}

/* airlock's own answer on a stream: the status, a JSON body whose "error" is error, and the
 * stream ended well. */
#define EXPECT_ANSWER(r, st, e) expect_answer(r, st, e, __FILE__, __LINE__)
static void expect_answer(const struct rec *r, int status, const char *error, const char *file,
                          int line)
{
    cJSON *json = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(json, "error");
    const char *ct = field(&r->headers, "content-type");
    bool ok = r->status == status && cJSON_IsString(e) && !strcmp(e->valuestring, error) && ct &&
              starts(ct, "application/json") && r->end_stream && r->closed &&
              r->close_code == NGHTTP2_NO_ERROR;

    if (ok) {
        test_passed++;
    } else {
        test_failed++;
        fprintf(stderr,
                "%s:%d: stream %d: want %d {\"error\":\"%s\"}; got %d, error %s, content-type "
                "%s, end_stream %d, closed %d with code %u, body \"%.*s\"\n",
                file, line, r->id, status, error, r->status,
                cJSON_IsString(e) ? e->valuestring : "(none)", ct ? ct : "(none)", r->end_stream,
                r->closed, r->close_code, (int)(r->body.len > 300 ? 300 : r->body.len),
                r->body.data ? r->body.data : "");
    }
    cJSON_Delete(json);
}

/* A string member of the JSON body of a stream (copied), or NULL. */
static const char *json_str(const struct rec *r, const char *key)
{
    static char value[STR_MAX];
    cJSON *json = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, key);
    const char *out = NULL;

    if (cJSON_IsString(v)) {
        copy_str(value, v->valuestring);
        out = value;
    }
    cJSON_Delete(json);
    return out;
}

/* A stream refused one way or the other: airlock's answer with one of the statuses, or a
 * reset (RST_STREAM with an error). */
#define EXPECT_REFUSED(r, s1, s2) expect_refused(r, s1, s2, __FILE__, __LINE__)
static void expect_refused(const struct rec *r, int s1, int s2, const char *file, int line)
{
    bool answered = (r->status == s1 || r->status == s2) && r->end_stream && r->closed;
    bool reset = r->closed && r->close_code != NGHTTP2_NO_ERROR && r->status != 200;

    if (answered || reset) {
        test_passed++;
        return;
    }
    test_failed++;
    fprintf(stderr,
            "%s:%d: stream %d: want %d, %d or a reset; got status %d, end_stream %d, closed %d "
            "with code %u\n",
            file, line, r->id, s1, s2, r->status, r->end_stream, r->closed, r->close_code);
}

/* An authority upstream names the tunnel's target (the port may be left out). */
static void expect_names_target(const struct world *w, const char *authority)
{
    struct authority a;

    CHECK(authority && target_parse_authority(authority, strlen(authority), false, 443, &a) == 0 &&
          !strcmp(a.host, w->target.host) && a.port == w->target.port);
}

static const struct rec_log *find_log(const struct world *w, const char *path)
{
    for (size_t i = 0; i < w->nlogs; i++)
        if (!strcmp(w->logs[i].path, path))
            return &w->logs[i];
    return NULL;
}

/* ---- raw frames -------------------------------------------------------------------------- */

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

static void frame(struct http_buf *b, uint8_t type, uint8_t flags, uint32_t sid,
                  const void *payload, size_t len)
{
    unsigned char hd[9] = {
        (unsigned char)(len >> 16),
        (unsigned char)(len >> 8),
        (unsigned char)len,
        type,
        flags,
        (unsigned char)(sid >> 24 & 0x7f),
        (unsigned char)(sid >> 16),
        (unsigned char)(sid >> 8),
        (unsigned char)sid,
    };

    http_buf_append(b, (const char *)hd, sizeof hd);
    if (len)
        http_buf_append(b, payload, len);
}

/* HPACK without any table state (RFC 7541 §6.1, §6.2.2): :method GET or POST, :path /,
 * :scheme https from the static table, :authority TARGET_HOST as a literal never indexed. */
static void raw_headers(struct http_buf *b, uint32_t sid, bool post, bool end_stream)
{
    unsigned char block[64] = {post ? 0x83 : 0x82, 0x84, 0x87, 0x01,
                               (unsigned char)(sizeof TARGET_HOST - 1)};

    memcpy(block + 5, TARGET_HOST, sizeof TARGET_HOST - 1);
    frame(b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | (end_stream ? NGHTTP2_FLAG_END_STREAM : 0),
          sid, block, 5 + sizeof TARGET_HOST - 1);
}

/* Raw bytes from the client, in pieces no larger than a TLS record. */
static void raw_send(struct world *w, const struct http_buf *b)
{
    for (size_t off = 0; off < b->len; off += 16 * KIB) {
        size_t n = b->len - off < 16 * KIB ? b->len - off : 16 * KIB;

        feed(w, SIDE_CLIENT, b->data + off, n);
    }
}

/* A raw client past its preface, h2's SETTINGS acknowledged. */
static struct world *raw_open(void)
{
    struct world *w = world_open_with(&(struct opts){.raw = true});
    struct http_buf b = {0};

    http_buf_puts(&b, PREFACE);
    frame(&b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
    raw_send(w, &b);
    pump(w);
    b.len = 0;
    frame(&b, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, NULL, 0);
    raw_send(w, &b);
    pump(w);
    http_buf_free(&b);
    return w;
}

struct raw_seen {
    size_t goaways, ping_acks, settings_acks, rsts, frames;
    uint32_t goaway_code;
    bool malformed;
};

/* The frames h2 wrote to a raw client. */
static struct raw_seen raw_frames(const struct world *w)
{
    struct raw_seen s = {0};
    const unsigned char *p = (const unsigned char *)w->raw_client.data;
    size_t len = w->raw_client.len, off = 0;

    while (off + 9 <= len) {
        size_t flen = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 | p[off + 2];
        uint8_t type = p[off + 3], flags = p[off + 4];

        if (off + 9 + flen > len)
            break;
        s.frames++;
        if (type == NGHTTP2_GOAWAY && flen >= 8) {
            s.goaways++;
            s.goaway_code = (uint32_t)p[off + 13] << 24 | (uint32_t)p[off + 14] << 16 |
                            (uint32_t)p[off + 15] << 8 | p[off + 16];
        }
        s.ping_acks += type == NGHTTP2_PING && (flags & NGHTTP2_FLAG_ACK);
        s.settings_acks += type == NGHTTP2_SETTINGS && (flags & NGHTTP2_FLAG_ACK);
        s.rsts += type == NGHTTP2_RST_STREAM;
        off += 9 + flen;
    }
    s.malformed = off != len;
    return s;
}

/* ---- exchanges --------------------------------------------------------------------------- */

static void test_get_is_relayed_end_to_end(void)
{
    static const nghttp2_nv extra[] = {NV("user-agent", "t/1"), NV("accept", "*/*")};
    struct world *w = world_open();
    int32_t id = request(w, &(struct req){.path = "/x/y?q=1", .extra = extra, .nextra = 2});

    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *u = up_find(w, "/x/y?q=1");
    CHECK(u != NULL);
    if (u) {
        CHECK_STR(u->method, "GET");
        CHECK_STR(u->scheme, "https");
        expect_names_target(w, u->authority);
        /* a Host field upstream, if any, says the same */
        CHECK(field_count(&u->headers, "host") == 0 ||
              !strcmp(field(&u->headers, "host"), TARGET_HOST));
        CHECK_STR(field(&u->headers, "user-agent"), "t/1");
        CHECK_STR(field(&u->headers, "accept"), "*/*");
        CHECK(u->end_stream);
        CHECK_EQ(u->body.len, 0);
    }
    CHECK_EQ(up_streams(w), 1);
    struct rec *c = rec_at(&w->client, id);
    EXPECT_RESPONSE(c, 200, "ok", 2);
    CHECK_STR(field(&c->headers, "content-type"), "text/plain");
    CHECK_EQ(w->njudges, 1);
    CHECK_STR(w->judges[0].target.host, TARGET_HOST);
    CHECK_EQ(w->judges[0].target.port, 443);
    CHECK_STR(w->judges[0].method, "GET");
    CHECK_STR(w->judges[0].path, "/x/y");
    const struct rec_log *l = find_log(w, "/x/y");
    CHECK(l != NULL);
    if (l) {
        CHECK_EQ(l->status, 200);
        CHECK_STR(l->method, "GET");
        CHECK_EQ(l->decision, LOG_DECISION_ALLOW);
        CHECK_STR(l->version, "2");
        CHECK_EQ(l->stream_id, id);
    }
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);
}

/* The authority as clients write it: with or without the default port. */
static void test_authority_naming_the_target_is_relayed(void)
{
    static const char *const ok[] = {TARGET_HOST ":443", "API.Example.COM"};

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct world *w = world_open();
        int32_t id = request(w, &(struct req){.path = "/a", .authority = ok[i]});

        pump(w);
        expect_sane(w);
        EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
        struct rec *u = up_find(w, "/a");
        CHECK(u != NULL);
        if (u)
            expect_names_target(w, u->authority);
        world_close(w);
    }
}

static void test_denied_stream_gets_403_and_the_connection_goes_on(void)
{
    struct world *w = world_open();
    int32_t denied = get(w, "/deny/x");
    int32_t allowed = get(w, "/fine");

    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *c = rec_at(&w->client, denied);
    EXPECT_ANSWER(c, 403, "policy_denied");
    CHECK_STR(json_str(c, "method"), "GET");
    CHECK_STR(json_str(c, "path"), "/deny/x");
    CHECK(up_find(w, "/deny/x") == NULL);
    EXPECT_RESPONSE(rec_at(&w->client, allowed), 200, "ok", 2);
    const struct rec_log *l = find_log(w, "/deny/x");
    CHECK(l != NULL);
    if (l) {
        CHECK_EQ(l->status, 403);
        CHECK_EQ(l->decision, LOG_DECISION_DENY);
    }
    /* and a stream opened after it */
    int32_t later = get(w, "/later");
    pump(w);
    EXPECT_RESPONSE(rec_at(&w->client, later), 200, "ok", 2);
    CHECK_EQ(up_streams(w), 2);
    CHECK_EQ(h2_open_streams(w->h), 0);
    expect_sane(w);
    world_close(w);
}

/* docs/http2.md: a refusal that comes before the whole request body was sent is followed by
 * RST_STREAM(NO_ERROR), so that the client stops sending (RFC 9113 §8.1). */
static void test_refusal_before_the_body_ends_stops_the_upload(void)
{
    struct world *w = world_open();
    int32_t denied = request(
        w,
        &(struct req){.method = "POST", .path = "/deny/up", .body = big, .len = 10, .hold = true});
    int32_t elsewhere = request(w, &(struct req){.method = "POST",
                                                 .path = "/x",
                                                 .authority = "evil.example",
                                                 .body = big,
                                                 .len = 10,
                                                 .hold = true});

    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *c = rec_at(&w->client, denied);
    EXPECT_ANSWER(c, 403, "policy_denied");
    CHECK(c->rst_recv && c->rst_code == NGHTTP2_NO_ERROR);
    c = rec_at(&w->client, elsewhere);
    EXPECT_ANSWER(c, 421, "request_authority_mismatch");
    CHECK(c->rst_recv && c->rst_code == NGHTTP2_NO_ERROR);
    CHECK_EQ(up_streams(w), 0);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);
}

static void test_authority_mismatch_gets_421(void)
{
    static const char *const bad[] = {"evil.example", TARGET_HOST ":8443",
                                      TARGET_HOST ".evil.example", "127.0.0.1"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = world_open();
        int32_t id = request(w, &(struct req){.path = "/a", .authority = bad[i]});
        int32_t good = get(w, "/b");

        pump(w);
        expect_sane(w);
        expect_alive(w);
        EXPECT_ANSWER(rec_at(&w->client, id), 421, "request_authority_mismatch");
        CHECK(up_find(w, "/a") == NULL);
        EXPECT_RESPONSE(rec_at(&w->client, good), 200, "ok", 2);
        CHECK_EQ(w->njudges, 1);
        world_close(w);
    }
}

/* RFC 9113 §8.3.1: a Host field that names another authority than :authority makes the request
 * malformed; whichever of the two airlock would read, the other must not reach the upstream. */
static void test_host_field_contradicting_the_authority_is_refused(void)
{
    static const nghttp2_nv evil_host[] = {NV("host", "evil.example")};
    static const nghttp2_nv good_host[] = {NV("host", TARGET_HOST)};
    struct world *w = world_open();
    int32_t a = request(w, &(struct req){.path = "/a", .extra = evil_host, .nextra = 1});
    int32_t b = request(
        w,
        &(struct req){.path = "/b", .authority = "evil.example", .extra = good_host, .nextra = 1});

    pump(w);
    expect_sane(w);
    EXPECT_REFUSED(rec_at(&w->client, a), 400, 421);
    EXPECT_REFUSED(rec_at(&w->client, b), 400, 421);
    CHECK_EQ(up_streams(w), 0);
    world_close(w);
}

static void test_upstream_gets_the_canonical_path_that_was_judged(void)
{
    static const struct {
        const char *sent, *judged, *upstream;
    } cases[] = {
        {"/a/../b", "/b", "/b"},
        {"/a/%2e%2e/b", "/b", "/b"},
        {"//x//y", "/x/y", "/x/y"},
        {"/a;p=1/%7euser?x=%2e", "/a/~user", "/a/~user?x=%2e"},
        {"/%41b/./c/", "/Ab/c/", "/Ab/c/"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct world *w = world_open();
        int32_t id = get(w, cases[i].sent);

        pump(w);
        expect_sane(w);
        CHECK_EQ(w->njudges, 1);
        CHECK_STR(w->judges[0].path, cases[i].judged);
        CHECK_EQ(up_streams(w), 1);
        CHECK(up_find(w, cases[i].upstream) != NULL);
        if (!up_find(w, cases[i].upstream))
            fprintf(stderr, "  %s should have gone upstream as %s\n", cases[i].sent,
                    cases[i].upstream);
        EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
        world_close(w);
    }
}

static void test_paths_that_climb_or_hide_get_400(void)
{
    static const char *const bad[] = {"/%2e%2e/x", "/../x", "/a%2fb", "/a%00", "/a%252e%252e/x"};
    struct world *w = world_open();
    int32_t ids[5];

    for (size_t i = 0; i < 5; i++)
        ids[i] = get(w, bad[i]);
    int32_t good = get(w, "/fine");
    pump(w);
    expect_sane(w);
    expect_alive(w);
    for (size_t i = 0; i < 5; i++)
        EXPECT_ANSWER(rec_at(&w->client, ids[i]), 400, "bad_request");
    EXPECT_RESPONSE(rec_at(&w->client, good), 200, "ok", 2);
    CHECK_EQ(up_streams(w), 1);
    CHECK_EQ(w->njudges, 1);
    world_close(w);
}

/* A stream's CONNECT would open a tunnel inside the tunnel, past every judgement. */
static void test_connect_in_a_stream_is_refused(void)
{
    struct world *w = world_open();
    int32_t id = request(w, &(struct req){.method = "CONNECT", .authority = TARGET_HOST ":443"});
    int32_t good = get(w, "/fine");

    pump(w);
    expect_sane(w);
    EXPECT_REFUSED(rec_at(&w->client, id), 400, 405);
    EXPECT_RESPONSE(rec_at(&w->client, good), 200, "ok", 2);
    CHECK_EQ(up_streams(w), 1);
    world_close(w);
}

/* ---- bodies and flow control ------------------------------------------------------------- */

static void test_request_body_over_the_windows_arrives_whole(void)
{
    const size_t len = 600 * KIB; /* over H2_STREAM_WINDOW and the upstream's window */
    struct world *w = world_open();
    int32_t id = request(
        w,
        &(struct req){
            .method = "POST", .path = "/upload", .body = big, .len = len, .content_length = true});

    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *u = up_find(w, "/upload");
    CHECK(u != NULL);
    if (u) {
        CHECK_STR(u->method, "POST");
        CHECK_EQ(u->body.len, len);
        CHECK(u->body.len == len && !memcmp(u->body.data, big, len));
        CHECK(u->end_stream);
        CHECK_STR(field(&u->headers, "content-length"), "614400");
    }
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
    world_close(w);
}

static void test_response_body_over_a_mebibyte_arrives_whole(void)
{
    struct world *w = world_open();
    int32_t id = get(w, "/big");

    pump(w);
    expect_sane(w);
    expect_alive(w);
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, big, BIG_RESPONSE);
    world_close(w);
}

/* A gRPC call: a request body of unknown length with trailers, te: trailers upstream (gRPC
 * servers need it), and a response whose status is in its trailers. */
static void test_grpc_like_exchange_keeps_trailers_both_ways(void)
{
    static const nghttp2_nv head[] = {NV("content-type", "application/grpc"), NV("te", "trailers")};
    static const nghttp2_nv req_trailers[] = {NV("x-req-trailer", "done")};
    const size_t len = 300 * KIB;
    struct world *w = world_open();
    int32_t id = request(w, &(struct req){.method = "POST",
                                          .path = "/grpc/pkg.Svc/Call",
                                          .extra = head,
                                          .nextra = 2,
                                          .body = big + 1,
                                          .len = len,
                                          .trailers = req_trailers,
                                          .ntrailers = 1});

    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *u = up_find(w, "/grpc/pkg.Svc/Call");
    CHECK(u != NULL);
    if (u) {
        CHECK_STR(field(&u->headers, "content-type"), "application/grpc");
        CHECK_STR(field(&u->headers, "te"), "trailers");
        CHECK_EQ(u->body.len, len);
        CHECK(u->body.len == len && !memcmp(u->body.data, big + 1, len));
        CHECK_STR(field(&u->trailers, "x-req-trailer"), "done");
        CHECK(u->end_stream);
    }
    struct rec *c = rec_at(&w->client, id);
    EXPECT_RESPONSE(c, 200, grpc_msg, sizeof grpc_msg - 1);
    CHECK_STR(field(&c->headers, "content-type"), "application/grpc");
    CHECK_STR(field(&c->trailers, "grpc-status"), "0");
    CHECK_STR(field(&c->trailers, "grpc-message"), "fine");
    CHECK(field(&c->headers, "grpc-status") == NULL);
    world_close(w);
}

/* Bytes wait in airlock only up to the window it advertised: an upstream that reads nothing
 * holds the client to H2_STREAM_WINDOW plus what the upstream's own window took. */
static void test_upstream_that_never_reads_holds_the_client_at_the_window(void)
{
    const size_t len = 2 * MIB;
    struct world *w = world_open_with(&(struct opts){.up_hold_win = true});
    int32_t id =
        request(w, &(struct req){.method = "POST", .path = "/upload", .body = big, .len = len});
    struct rec *c = rec_at(&w->client, id);

    pump(w);
    expect_sane(w);
    struct rec *u = up_find(w, "/upload");
    CHECK(u != NULL);
    CHECK(c->src_off > 0);
    CHECK(c->src_off <= H2_STREAM_WINDOW + PEER_WIN);
    if (c->src_off > H2_STREAM_WINDOW + PEER_WIN)
        fprintf(stderr, "  the client sent %zu bytes to an upstream that took %zu\n", c->src_off,
                u ? u->body.len : 0);
    if (!u) {
        world_close(w);
        return;
    }
    CHECK(u->body.len > 0 && u->body.len <= PEER_WIN);
    /* the upstream reads: the rest flows, whole */
    for (int i = 0; i < 1000 && !u->end_stream; i++) {
        peer_consume(w, &w->up);
        pump(w);
    }
    CHECK_EQ(u->body.len, len);
    CHECK(u->body.len == len && !memcmp(u->body.data, big, len));
    EXPECT_RESPONSE(c, 200, "ok", 2);
    expect_sane(w);
    world_close(w);
}

static void test_client_that_never_reads_holds_the_upstream_at_the_window(void)
{
    struct world *w = world_open_with(&(struct opts){.client_hold_win = true});
    int32_t id = get(w, "/big");
    struct rec *c = rec_at(&w->client, id);

    pump(w);
    expect_sane(w);
    struct rec *u = up_find(w, "/big");
    CHECK(u != NULL);
    if (!u) {
        world_close(w);
        return;
    }
    CHECK(u->src_off > 0);
    CHECK(u->src_off <= H2_STREAM_WINDOW + PEER_WIN);
    if (u->src_off > H2_STREAM_WINDOW + PEER_WIN)
        fprintf(stderr, "  the upstream sent %zu bytes to a client that took %zu\n", u->src_off,
                c->body.len);
    CHECK(c->body.len <= PEER_WIN);
    for (int i = 0; i < 1000 && !c->end_stream; i++) {
        peer_consume(w, &w->client);
        pump(w);
    }
    EXPECT_RESPONSE(c, 200, big, BIG_RESPONSE);
    expect_sane(w);
    world_close(w);
}

/* Flow control is no flood: a long transfer through peers that keep the default 64 KiB
 * windows costs hundreds of WINDOW_UPDATE frames from the side that only receives. */
static void test_long_transfers_with_small_windows_are_no_flood(void)
{
    struct world *w = world_open();

    w->client.discard = true;
    int32_t id = get(w, "/huge");
    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *c = rec_at(&w->client, id);
    CHECK_EQ(c->body_len, HUGE_LEN);
    CHECK(c->end_stream && c->closed && c->close_code == NGHTTP2_NO_ERROR);
    if (w->client.goaway)
        fprintf(stderr, "  a %d MiB download got GOAWAY code %u after %zu bytes\n", HUGE_LEN / MIB,
                w->client.goaway_code, c->body_len);
    world_close(w);

    w = world_open();
    w->up.discard = true;
    id = request(
        w, &(struct req){.method = "POST", .path = "/upload", .len = HUGE_LEN, .cycle = true});
    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *u = up_find(w, "/upload");
    CHECK(u && u->body_len == HUGE_LEN && u->end_stream);
    if (u && u->body_len != HUGE_LEN)
        fprintf(stderr, "  a %d MiB upload stopped after %zu bytes (upstream GOAWAY %d)\n",
                HUGE_LEN / MIB, u->body_len, w->up.goaway);
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
    world_close(w);
}

/* Streams interleave: each gets its own body back, whole. */
static void test_concurrent_streams_each_get_their_own_body(void)
{
    enum { N = 8 };
    struct world *w = world_open();
    int32_t ids[N];
    char path[N][32];

    for (int i = 0; i < N; i++) {
        snprintf(path[i], sizeof path[i], "/echo/%d", i);
        ids[i] = request(w, &(struct req){.method = "POST",
                                          .path = path[i],
                                          .body = big + 7 * i,
                                          .len = 100 * KIB + 1000 * (size_t)i});
    }
    pump(w);
    expect_sane(w);
    expect_alive(w);
    for (int i = 0; i < N; i++)
        EXPECT_RESPONSE(rec_at(&w->client, ids[i]), 200, big + 7 * i, 100 * KIB + 1000 * (size_t)i);
    CHECK_EQ(up_streams(w), N);
    world_close(w);
}

/* A request head goes upstream as soon as it is judged: its body streams behind it. */
static void test_request_head_goes_up_before_its_body(void)
{
    for (int with_length = 0; with_length < 2; with_length++) {
        struct world *w = world_open();
        int32_t id = request(w, &(struct req){.method = "PUT",
                                              .path = "/upload",
                                              .body = "later",
                                              .len = 5,
                                              .content_length = with_length,
                                              .hold = true});

        pump(w);
        struct rec *u = up_find(w, "/upload");
        CHECK(u != NULL);
        if (!u) {
            fprintf(stderr, "  the head of a PUT %s Content-Length waits for its body\n",
                    with_length ? "with" : "without");
            world_close(w);
            continue;
        }
        CHECK(!u->end_stream);
        CHECK_EQ(u->body.len, 0);
        client_release(w, id);
        pump(w);
        expect_sane(w);
        CHECK(u->end_stream);
        CHECK(u->body.len == 5 && !memcmp(u->body.data, "later", 5));
        EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
        world_close(w);
    }
}

static void test_head_and_204_have_no_body(void)
{
    struct world *w = world_open();
    int32_t head = request(w, &(struct req){.method = "HEAD", .path = "/h"});
    int32_t empty = get(w, "/204");
    int32_t after = get(w, "/after");

    pump(w);
    expect_sane(w);
    expect_alive(w);
    EXPECT_RESPONSE(rec_at(&w->client, head), 200, "", 0);
    EXPECT_RESPONSE(rec_at(&w->client, empty), 204, "", 0);
    EXPECT_RESPONSE(rec_at(&w->client, after), 200, "ok", 2);
    world_close(w);
}

/* docs/http2.md: interim responses (100, 103) go on (RFC 9110 §15.2), then the final one. */
static void test_interim_responses_then_the_final_one(void)
{
    struct world *w = world_open();
    int32_t id = get(w, "/hints");

    pump(w);
    expect_sane(w);
    struct rec *c = rec_at(&w->client, id);
    CHECK(c->interims.len == 8 && !memcmp(c->interims.data, "100,103,", 8));
    EXPECT_RESPONSE(c, 200, "ok", 2);
    world_close(w);
}

/* ---- resets and GOAWAY ------------------------------------------------------------------- */

static void test_client_reset_resets_the_upstream_stream(void)
{
    struct world *w = world_open();
    int32_t waiting = get(w, "/hold/a");
    int32_t uploading = request(
        w,
        &(struct req){.method = "POST", .path = "/hold/b", .body = big, .len = 10, .hold = true});

    pump(w);
    struct rec *ua = up_find(w, "/hold/a"), *ub = up_find(w, "/hold/b");
    CHECK(ua && !ua->closed);
    CHECK(ub && !ub->closed);
    CHECK_EQ(h2_open_streams(w->h), 2);
    CHECK_EQ(nghttp2_submit_rst_stream(w->client.s, NGHTTP2_FLAG_NONE, waiting, NGHTTP2_CANCEL), 0);
    CHECK_EQ(nghttp2_submit_rst_stream(w->client.s, NGHTTP2_FLAG_NONE, uploading, NGHTTP2_CANCEL),
             0);
    pump(w);
    expect_sane(w);
    expect_alive(w);
    if (ua && ub) {
        CHECK(ua->closed && ua->rst_recv && ua->close_code != NGHTTP2_NO_ERROR);
        CHECK(ub->closed && ub->rst_recv && ub->close_code != NGHTTP2_NO_ERROR);
        CHECK(!ub->end_stream); /* a cancelled body never looks complete */
    }
    CHECK_EQ(h2_open_streams(w->h), 0);
    int32_t after = get(w, "/after");
    pump(w);
    EXPECT_RESPONSE(rec_at(&w->client, after), 200, "ok", 2);
    world_close(w);
}

/* The upstream reset the stream before it answered: the relay's answer for an upstream gone
 * before its response, on that stream alone. */
static void test_upstream_reset_before_the_response_gets_502(void)
{
    struct world *w = world_open();
    int32_t id = get(w, "/reset");
    int32_t other = get(w, "/fine");

    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *c = rec_at(&w->client, id);
    CHECK_EQ(c->status, 502);
    CHECK(c->end_stream && c->closed && c->close_code == NGHTTP2_NO_ERROR);
    CHECK(json_str(c, "error") != NULL);
    EXPECT_RESPONSE(rec_at(&w->client, other), 200, "ok", 2);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);

    /* REFUSED_STREAM says the request was not processed: passed on, the client may retry */
    w = world_open();
    id = get(w, "/refuse");
    pump(w);
    expect_sane(w);
    expect_alive(w);
    c = rec_at(&w->client, id);
    CHECK(c->closed && c->rst_recv);
    CHECK_EQ(c->close_code, NGHTTP2_REFUSED_STREAM);
    CHECK_EQ(c->status, 0);
    world_close(w);
}

/* Once a response started, a reset can only reset: a body cut short must never end as if
 * whole (END_STREAM). */
static void test_upstream_reset_mid_body_resets_the_client_stream(void)
{
    /* docs/http2.md: the same code, INTERNAL_ERROR for NO_ERROR */
    static const uint32_t codes[][2] = {{NGHTTP2_INTERNAL_ERROR, NGHTTP2_INTERNAL_ERROR},
                                        {NGHTTP2_CANCEL, NGHTTP2_CANCEL},
                                        {NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR}};

    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        struct world *w = world_open();
        int32_t id = get(w, "/hold");

        pump(w);
        struct rec *u = up_find(w, "/hold");
        CHECK(u != NULL);
        if (!u) {
            world_close(w);
            return;
        }
        up_respond(w, u, &(struct resp){.body = big, .len = 10 * KIB, .open = true});
        pump(w);
        struct rec *c = rec_at(&w->client, id);
        CHECK_EQ(c->status, 200);
        CHECK_EQ(c->body.len, 10 * KIB);
        CHECK(!c->closed);
        CHECK_EQ(nghttp2_submit_rst_stream(w->up.s, NGHTTP2_FLAG_NONE, u->id, codes[i][0]), 0);
        pump(w);
        expect_sane(w);
        expect_alive(w);
        CHECK(c->closed && c->rst_recv);
        CHECK_EQ(c->close_code, codes[i][1]);
        CHECK(!c->end_stream);
        CHECK_EQ(h2_open_streams(w->h), 0);
        world_close(w);
    }
}

/* The client says it opens no more streams: the one open finishes, then the session ends,
 * airlock having said GOAWAY too (RFC 9113 §6.8). */
static void test_client_goaway_lets_open_streams_finish(void)
{
    struct world *w = world_open();
    int32_t id = get(w, "/hold");

    pump(w);
    CHECK_EQ(nghttp2_submit_goaway(w->client.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0),
             0);
    pump(w);
    CHECK_EQ(w->done_calls, 0);
    CHECK_EQ(h2_open_streams(w->h), 1);
    struct rec *u = up_find(w, "/hold");
    CHECK(u && !u->closed);
    if (u)
        up_respond(w, u, &(struct resp){.body = "late", .len = 4});
    pump(w);
    expect_sane(w);
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, "late", 4);
    CHECK_EQ(w->done_calls, 1);
    CHECK(!w->done_error);
    CHECK(w->client.goaway);
    CHECK_EQ(w->client.goaway_code, NGHTTP2_NO_ERROR);
    world_close(w);
}

/* The upstream says it takes no more streams: the client is told (its new streams could go
 * nowhere), the stream the upstream kept finishes, one it did not take is refused
 * (REFUSED_STREAM), and the session ends without error. */
static void test_upstream_goaway_ends_the_session_gracefully(void)
{
    struct world *w = world_open();
    int32_t kept = get(w, "/hold/kept");
    int32_t dropped = get(w, "/hold/dropped");

    pump(w);
    struct rec *uk = up_find(w, "/hold/kept");
    CHECK(uk != NULL && up_find(w, "/hold/dropped") != NULL);
    if (!uk) {
        world_close(w);
        return;
    }
    CHECK_EQ(nghttp2_submit_goaway(w->up.s, NGHTTP2_FLAG_NONE, uk->id, NGHTTP2_NO_ERROR, NULL, 0),
             0);
    pump(w);
    CHECK(w->client.goaway);
    CHECK_EQ(w->client.goaway_code, NGHTTP2_NO_ERROR);
    CHECK_EQ(w->done_calls, 0);
    struct rec *cd = rec_at(&w->client, dropped);
    CHECK(cd->closed);
    CHECK_EQ(cd->close_code, NGHTTP2_REFUSED_STREAM); /* docs/http2.md: the client may retry */
    CHECK(cd->status != 200);
    up_respond(w, uk, &(struct resp){.body = "kept", .len = 4});
    pump(w);
    expect_sane(w);
    EXPECT_RESPONSE(rec_at(&w->client, kept), 200, "kept", 4);
    CHECK_EQ(w->done_calls, 1);
    CHECK(!w->done_error);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);
}

static void test_shutdown_finishes_open_streams_then_done(void)
{
    struct world *w = world_open();
    int32_t id = get(w, "/hold");

    pump(w);
    CHECK_EQ(h2_open_streams(w->h), 1);
    h2_shutdown(w->h, "draining");
    pump(w);
    CHECK(w->client.goaway);
    CHECK_EQ(w->client.goaway_code, NGHTTP2_NO_ERROR);
    CHECK(w->client.goaway_last >= id); /* the open stream is not refused */
    CHECK_EQ(w->done_calls, 0);
    CHECK(!rec_at(&w->client, id)->closed);
    struct rec *u = up_find(w, "/hold");
    CHECK(u != NULL);
    if (u)
        up_respond(w, u, &(struct resp){.body = "bye", .len = 3});
    pump(w);
    expect_sane(w);
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, "bye", 3);
    CHECK_EQ(w->done_calls, 1);
    CHECK(!w->done_error);
    CHECK_EQ(h2_open_streams(w->h), 0);
    /* RFC 9113 §6.8: the upstream is told before its connection closes */
    CHECK(w->up.goaway);
    world_close(w);
}

static void test_shutdown_when_idle_is_done_at_once(void)
{
    struct world *w = world_open();
    int32_t id = get(w, "/x");

    pump(w);
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
    h2_shutdown(w->h, "idle");
    pump(w);
    expect_sane(w);
    CHECK(w->client.goaway);
    CHECK_EQ(w->done_calls, 1);
    CHECK(!w->done_error);
    world_close(w);

    /* before the client said anything at all */
    w = world_open();
    h2_shutdown(w->h, "draining");
    pump(w);
    CHECK_EQ(w->done_calls, 1);
    CHECK(!w->done_error);
    CHECK(w->client.goaway);
    CHECK_EQ(w->client.recv_error, 0);
    world_close(w);
}

/* The connection went quiet: a stream still waiting for its response head is answered 504 (and
 * given up upstream); one whose response flows goes on. */
static void test_timeout_answers_waiting_streams_and_spares_flowing_ones(void)
{
    struct world *w = world_open();
    int32_t waiting = get(w, "/hold/waiting");
    int32_t flowing = get(w, "/hold/flowing");

    pump(w);
    struct rec *uw = up_find(w, "/hold/waiting"), *uf = up_find(w, "/hold/flowing");
    CHECK(uw && uf);
    if (!uw || !uf) {
        world_close(w);
        return;
    }
    up_respond(w, uf, &(struct resp){.body = big, .len = 1000, .open = true});
    pump(w);
    h2_timeout(w->h);
    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *cw = rec_at(&w->client, waiting), *cf = rec_at(&w->client, flowing);
    CHECK_EQ(cw->status, 504);
    CHECK(cw->end_stream && cw->closed && cw->close_code == NGHTTP2_NO_ERROR);
    CHECK(json_str(cw, "error") != NULL);
    CHECK(uw->closed); /* nobody waits for that answer any more */
    CHECK_EQ(cf->status, 200);
    CHECK(!cf->closed);
    uf->src_len = 5000;
    uf->src_open = false;
    CHECK_EQ(nghttp2_session_resume_data(w->up.s, uf->id), 0);
    pump(w);
    EXPECT_RESPONSE(cf, 200, big, 5000);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);
}

/* ---- limits ------------------------------------------------------------------------------ */

static void test_streams_over_the_concurrency_limit_are_refused(void)
{
    struct world *w = world_open_with(&(struct opts){.client_peer_max = 1000});
    int32_t ids[H2_MAX_STREAMS + 1];

    /* all sent before the client has read airlock's SETTINGS */
    for (int i = 0; i <= H2_MAX_STREAMS; i++)
        ids[i] = get(w, "/hold");
    pump(w);
    expect_sane(w);
    expect_alive(w);
    CHECK_EQ(up_streams(w), H2_MAX_STREAMS);
    CHECK_EQ(h2_open_streams(w->h), H2_MAX_STREAMS);
    struct rec *over = rec_at(&w->client, ids[H2_MAX_STREAMS]);
    CHECK(over->closed);
    CHECK_EQ(over->close_code, NGHTTP2_REFUSED_STREAM);
    for (int i = 1; i < MAX_ID; i++)
        if (w->up.recs[i] && w->up.recs[i]->opened)
            up_respond(w, w->up.recs[i], &(struct resp){.body = "ok", .len = 2});
    pump(w);
    expect_sane(w);
    for (int i = 0; i < H2_MAX_STREAMS; i++)
        EXPECT_RESPONSE(rec_at(&w->client, ids[i]), 200, "ok", 2);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);

    /* docs/http2.md: once the client acknowledged the limit, breaking it is a connection error
     * (nghttp2's GOAWAY PROTOCOL_ERROR) */
    w = raw_open();
    struct http_buf b = {0};
    for (uint32_t i = 0; i <= H2_MAX_STREAMS; i++)
        raw_headers(&b, 2 * i + 1, true, false); /* uploads that stay open */
    raw_send(w, &b);
    pump(w);
    struct raw_seen seen = raw_frames(w);
    CHECK_EQ(seen.goaways, 1);
    CHECK_EQ(seen.goaway_code, NGHTTP2_PROTOCOL_ERROR);
    CHECK_EQ(w->done_calls, 1);
    CHECK(w->done_error);
    CHECK(up_streams(w) <= H2_MAX_STREAMS);
    http_buf_free(&b);
    world_close(w);
}

/* An upstream that allows fewer streams than the client opens: every stream still ends, none
 * hangs (answered, or refused so that the client may retry). */
static void test_upstream_allowing_fewer_streams_holds_none_forever(void)
{
    enum { N = 6 };
    struct world *w = world_open_with(&(struct opts){.up_max_streams = 2});
    int32_t ids[N];
    size_t answered = 0;

    pump(w); /* the upstream's SETTINGS first */
    for (int i = 0; i < N; i++)
        ids[i] = get(w, "/fine");
    pump(w);
    expect_sane(w);
    expect_alive(w);
    for (int i = 0; i < N; i++) {
        struct rec *c = rec_at(&w->client, ids[i]);

        CHECK(c->closed);
        CHECK(c->status == 200 || c->close_code == NGHTTP2_REFUSED_STREAM);
        answered += c->status == 200;
    }
    CHECK(answered >= 2);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);
}

/* docs/http2.md: over H2_MAX_HEADER (as RFC 9113 §6.5.2 counts), or over the relay's own
 * limits for a head (32 KiB), 431 on that stream; the connection goes on. */
static void test_header_list_over_the_limit_is_refused(void)
{
    enum { VALUE = 7000 };
    static const int fields[] = {12, 6}; /* 84 KiB: over H2_MAX_HEADER; 42 KiB: over 32 KiB */
    static char value[VALUE + 1];
    static char names[12][16];
    nghttp2_nv extra[12];

    memset(value, 'v', VALUE);
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "x-big-%02d", i);
        extra[i] = (nghttp2_nv){(uint8_t *)names[i], (uint8_t *)value, strlen(names[i]), VALUE,
                                NGHTTP2_NV_FLAG_NO_INDEX};
    }
    CHECK(12 * (VALUE + 8 + 32) > H2_MAX_HEADER);
    for (size_t k = 0; k < 2; k++) {
        struct world *w = world_open();
        int32_t id = request(
            w, &(struct req){.path = "/bighead", .extra = extra, .nextra = (size_t)fields[k]});

        pump(w);
        expect_sane(w);
        expect_alive(w);
        EXPECT_ANSWER(rec_at(&w->client, id), 431, "header_too_large");
        CHECK(up_find(w, "/bighead") == NULL);
        int32_t after = get(w, "/after");
        pump(w);
        EXPECT_RESPONSE(rec_at(&w->client, after), 200, "ok", 2);
        expect_sane(w);
        world_close(w);
    }
}

/* Open a stream and reset it at once, n times, each pair as the client's library sends it. */
static void open_and_reset(struct world *w, int n)
{
    for (int i = 0; i < n && !w->done_calls; i++) {
        int32_t id = get(w, "/hold");

        peer_send(w, SIDE_CLIENT);
        CHECK_EQ(nghttp2_submit_rst_stream(w->client.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL), 0);
        peer_send(w, SIDE_CLIENT);
    }
}

/* CVE-2023-44487: streams opened and reset at once cost the upstream work and the client
 * nothing. */
static void test_rapid_reset_gets_goaway(void)
{
    struct world *w = world_open();

    pump(w);
    open_and_reset(w, 2 * H2_RESET_BUDGET);
    pump(w);
    CHECK(w->client.goaway);
    CHECK_EQ(w->client.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
    CHECK_EQ(w->done_calls, 1);
    CHECK(w->done_error);
    CHECK_EQ(w->late_writes, 0);
    world_close(w);
}

/* A client that cancels now and then is no attacker. */
static void test_resets_under_the_budget_are_tolerated(void)
{
    struct world *w = world_open();

    pump(w);
    open_and_reset(w, H2_RESET_BUDGET / 2);
    pump(w);
    expect_sane(w);
    expect_alive(w);
    /* docs/http2.md: past half the budget, throttled to 10 concurrent streams */
    CHECK_EQ(
        nghttp2_session_get_remote_settings(w->client.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
        10);
    int32_t id = get(w, "/after");
    pump(w);
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);
}

/* Each completed stream earns a reset back: a client that cancels half of what it asks is no
 * attacker, however long it lives. */
static void test_resets_between_completed_streams_are_tolerated(void)
{
    struct world *w = world_open();

    pump(w);
    for (int i = 0; i < 2 * H2_RESET_BUDGET && !w->done_calls; i++) {
        open_and_reset(w, 1);
        int32_t id = get(w, "/fine");
        pump(w);
        if (!rec_at(&w->client, id)->closed)
            break;
    }
    expect_sane(w);
    expect_alive(w);
    int32_t id = get(w, "/after");
    pump(w);
    EXPECT_RESPONSE(rec_at(&w->client, id), 200, "ok", 2);
    world_close(w);
}

enum flood { FLOOD_PING, FLOOD_SETTINGS, FLOOD_EMPTY_DATA, FLOOD_PRIORITY, FLOOD_WINDOW_UPDATE };

static void flood(struct http_buf *b, enum flood kind, int n)
{
    static const char ping[8] = "pingpong";
    /* stream 3 depends on stream 1, weight 16 (RFC 9113 §6.3, deprecated but valid) */
    static const unsigned char prio[5] = {0, 0, 0, 1, 15};
    static const unsigned char incr[4] = {0, 0, 0, 1};

    for (int i = 0; i < n; i++) {
        switch (kind) {
        case FLOOD_PING:
            frame(b, NGHTTP2_PING, 0, 0, ping, sizeof ping);
            break;
        case FLOOD_SETTINGS:
            frame(b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
            break;
        case FLOOD_EMPTY_DATA:
            frame(b, NGHTTP2_DATA, 0, 1, NULL, 0);
            break;
        case FLOOD_PRIORITY:
            frame(b, NGHTTP2_PRIORITY, 0, 3, prio, sizeof prio);
            break;
        case FLOOD_WINDOW_UPDATE:
            frame(b, NGHTTP2_WINDOW_UPDATE, 0, 0, incr, sizeof incr);
            break;
        }
    }
}

/* Frames that cost airlock work (an answer, a wake-up) and carry nothing: past
 * H2_CONTROL_BUDGET the client is told GOAWAY and the session ends in error. */
static void test_control_floods_get_goaway(void)
{
    static const struct {
        enum flood kind;
        const char *name;
    } cases[] = {
        {FLOOD_PING, "PING"}, {FLOOD_SETTINGS, "SETTINGS"}, {FLOOD_EMPTY_DATA, "empty DATA"}};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct world *w = raw_open();
        struct http_buf b = {0};

        raw_headers(&b, 1, true, false); /* an upload that never sends a byte */
        flood(&b, cases[i].kind, 2 * H2_CONTROL_BUDGET);
        raw_send(w, &b);
        pump(w);
        struct raw_seen s = raw_frames(w);
        CHECK(!s.malformed);
        CHECK_EQ(s.goaways, 1);
        CHECK_EQ(s.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
        CHECK_EQ(w->done_calls, 1);
        CHECK(w->done_error);
        CHECK_EQ(w->late_writes, 0);
        if (w->done_calls != 1 || !s.goaways)
            fprintf(stderr, "  a flood of %d %s frames was taken\n", 2 * H2_CONTROL_BUDGET,
                    cases[i].name);
        http_buf_free(&b);
        world_close(w);
    }
}

/* The same for two other frames that carry nothing a stream needs (docs/http2.md): PRIORITY
 * for streams that never open (CVE-2019-9513's resource loop) and 1-byte window updates. */
static void test_other_empty_floods_get_goaway(void)
{
    static const enum flood kinds[] = {FLOOD_PRIORITY, FLOOD_WINDOW_UPDATE};

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        struct world *w = raw_open();
        struct http_buf b = {0};

        flood(&b, kinds[i], 2 * H2_CONTROL_BUDGET);
        raw_send(w, &b);
        pump(w);
        struct raw_seen s = raw_frames(w);
        CHECK_EQ(s.goaways, 1);
        CHECK_EQ(s.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
        CHECK_EQ(w->done_calls, 1);
        CHECK(w->done_error);
        if (w->done_calls != 1)
            fprintf(stderr, "  a flood of %d %s frames was taken\n", 2 * H2_CONTROL_BUDGET,
                    kinds[i] == FLOOD_PRIORITY ? "PRIORITY" : "WINDOW_UPDATE");
        http_buf_free(&b);
        world_close(w);
    }
}

static void test_control_frames_under_the_budget_are_answered(void)
{
    struct world *w = raw_open();
    struct http_buf b = {0};
    struct raw_seen before = raw_frames(w);

    flood(&b, FLOOD_PING, 10);
    flood(&b, FLOOD_SETTINGS, 10);
    raw_send(w, &b);
    pump(w);
    struct raw_seen s = raw_frames(w);
    CHECK(!s.malformed);
    CHECK_EQ(s.ping_acks, 10);
    CHECK_EQ(s.settings_acks - before.settings_acks, 10);
    CHECK_EQ(s.goaways, 0);
    CHECK_EQ(w->done_calls, 0);
    http_buf_free(&b);
    world_close(w);
}

/* docs/http2.md: a header block in more than 16 CONTINUATION frames (CVE-2024-27316's shape)
 * gets GOAWAY ENHANCE_YOUR_CALM; fewer are fine. */
static void test_continuation_flood_gets_goaway(void)
{
    static const int pieces[] = {8, 20};

    for (size_t k = 0; k < 2; k++) {
        struct world *w = raw_open();
        struct http_buf whole = {0}, b = {0};

        raw_headers(&whole, 1, false, true);
        const char *block = whole.data + 9;
        size_t len = whole.len - 9, each = (len + (size_t)pieces[k] - 1) / (size_t)pieces[k];
        for (size_t off = 0; off < len; off += each) {
            size_t n = len - off < each ? len - off : each;
            uint8_t flags = (off + n == len ? NGHTTP2_FLAG_END_HEADERS : 0) |
                            (off == 0 ? NGHTTP2_FLAG_END_STREAM : 0);

            frame(&b, off == 0 ? NGHTTP2_HEADERS : NGHTTP2_CONTINUATION, flags, 1, block + off, n);
        }
        raw_send(w, &b);
        pump(w);
        struct raw_seen s = raw_frames(w);
        if (pieces[k] <= 16) {
            CHECK_EQ(s.goaways, 0);
            CHECK_EQ(up_streams(w), 1);
        } else {
            CHECK_EQ(s.goaways, 1);
            CHECK_EQ(s.goaway_code, NGHTTP2_ENHANCE_YOUR_CALM);
            CHECK_EQ(w->done_calls, 1);
            CHECK(w->done_error);
            CHECK_EQ(up_streams(w), 0);
        }
        http_buf_free(&whole);
        http_buf_free(&b);
        world_close(w);
    }
}

/* docs/http2.md: more than 32 entries in one SETTINGS frame, or an HPACK table size update
 * above the 4 KiB airlock announced, end the connection with GOAWAY. */
static void test_settings_and_hpack_abuse_get_goaway(void)
{
    struct world *w = raw_open();
    struct http_buf b = {0};
    unsigned char entries[40 * 6];

    for (int i = 0; i < 40; i++) {
        static const unsigned char one[6] = {0, NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 0, 0, 0x40, 0};

        memcpy(entries + 6 * i, one, 6);
    }
    frame(&b, NGHTTP2_SETTINGS, 0, 0, entries, sizeof entries);
    raw_send(w, &b);
    pump(w);
    struct raw_seen s = raw_frames(w);
    CHECK_EQ(s.goaways, 1);
    CHECK_EQ(w->done_calls, 1);
    CHECK(w->done_error);
    http_buf_free(&b);
    world_close(w);

    /* a dynamic table size update to 8192 (RFC 7541 §6.3), then GET / */
    static const unsigned char block[] = {0x3f, 0xe1, 0x3f, 0x82, 0x84, 0x87, 0x01, 15,
                                          'a',  'p',  'i',  '.',  'e',  'x',  'a',  'm',
                                          'p',  'l',  'e',  '.',  'c',  'o',  'm'};
    w = raw_open();
    b = (struct http_buf){0};
    frame(&b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, block,
          sizeof block);
    raw_send(w, &b);
    pump(w);
    s = raw_frames(w);
    CHECK_EQ(s.goaways, 1);
    CHECK_EQ(s.goaway_code, NGHTTP2_COMPRESSION_ERROR);
    CHECK_EQ(w->done_calls, 1);
    CHECK(w->done_error);
    CHECK_EQ(up_streams(w), 0);
    http_buf_free(&b);
    world_close(w);
}

/* ---- broken peers ------------------------------------------------------------------------ */

static void test_garbage_instead_of_a_preface_ends_the_session(void)
{
    static const char *const client[] = {
        "GET / HTTP/1.1\r\nHost: " TARGET_HOST "\r\n\r\n",
        "\x16\x03\x01\x02\x01\x01 a ClientHello again",
        PREFACE "\0\0\x08\x06\0\0\0\0\0pingpong", /* a PING where SETTINGS must be */
    };

    for (size_t i = 0; i < sizeof client / sizeof client[0]; i++) {
        struct world *w = world_open_with(&(struct opts){.raw = true});
        size_t len = i == 2 ? sizeof PREFACE - 1 + 17 : strlen(client[i]);

        feed(w, SIDE_CLIENT, client[i], len);
        pump(w);
        CHECK_EQ(w->done_calls, 1);
        CHECK(w->done_error);
        CHECK_EQ(up_streams(w), 0);
        world_close(w);
    }

    /* an upstream that answers in HTTP/1.1 */
    static const char http1[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    struct world *w = world_open();
    int32_t id = get(w, "/x");
    peer_send(w, SIDE_CLIENT);
    feed(w, SIDE_UPSTREAM, http1, sizeof http1 - 1);
    pump(w);
    CHECK_EQ(w->done_calls, 1);
    CHECK(w->done_error);
    CHECK(rec_at(&w->client, id)->closed || w->client.goaway);
    CHECK(rec_at(&w->client, id)->status != 200);
    world_close(w);
}

/* An upstream that breaks the protocol mid-session (a connection error, RFC 9113 §5.4.1: here
 * DATA on stream 0) ends the session in error at once: the streams that waited for it do not
 * wait for the idle timeout. */
static void test_upstream_protocol_error_ends_the_session(void)
{
    struct world *w = world_open();
    int32_t id = get(w, "/hold");
    struct http_buf b = {0};

    pump(w);
    CHECK(up_find(w, "/hold") != NULL);
    frame(&b, NGHTTP2_DATA, 0, 0, "x", 1);
    feed(w, SIDE_UPSTREAM, b.data, b.len);
    pump(w);
    struct rec *c = rec_at(&w->client, id);
    CHECK(w->up.goaway && w->up.goaway_code == NGHTTP2_PROTOCOL_ERROR);
    CHECK(c->closed || w->client.goaway);
    CHECK(c->status != 200);
    CHECK_EQ(w->done_calls, 1);
    CHECK(w->done_error);
    CHECK_EQ(w->late_writes, 0);
    http_buf_free(&b);
    world_close(w);
}

/* The upstream's connection ended: a stream with no response yet gets 502, a stream whose
 * response was flowing is reset, then GOAWAY (docs/http2.md). */
static void test_upstream_eof_ends_the_streams(void)
{
    struct world *w = world_open();
    int32_t waiting = get(w, "/hold/waiting");
    int32_t flowing = get(w, "/hold/flowing");

    pump(w);
    struct rec *uf = up_find(w, "/hold/flowing");
    CHECK(uf != NULL);
    if (uf)
        up_respond(w, uf, &(struct resp){.body = big, .len = 100, .open = true});
    pump(w);
    h2_eof(w->h, SIDE_UPSTREAM);
    pump(w);
    expect_sane(w);
    struct rec *cw = rec_at(&w->client, waiting), *cf = rec_at(&w->client, flowing);
    CHECK_EQ(cw->status, 502);
    CHECK(cw->end_stream && cw->closed && cw->close_code == NGHTTP2_NO_ERROR);
    CHECK(json_str(cw, "error") != NULL);
    CHECK_EQ(cf->status, 200);
    CHECK(cf->closed && cf->close_code != NGHTTP2_NO_ERROR && !cf->end_stream);
    CHECK(w->client.goaway);
    CHECK_EQ(w->done_calls, 1);
    CHECK_EQ(h2_open_streams(w->h), 0);
    world_close(w);
}

/* Freed with streams open: each is logged as ended by the close (h2.h), nothing leaks. */
static void test_free_with_open_streams_logs_them(void)
{
    struct world *w = world_open();

    get(w, "/hold/a");
    request(w,
            &(struct req){
                .method = "POST", .path = "/hold/b", .body = big, .len = 70 * KIB, .hold = true});
    get(w, "/hold/c");
    pump(w);
    struct rec *uc = up_find(w, "/hold/c");
    CHECK(uc != NULL);
    if (uc) /* a response that started and never ends */
        up_respond(w, uc, &(struct resp){.body = big, .len = 100, .open = true});
    pump(w);
    CHECK_EQ(h2_open_streams(w->h), 3);
    size_t before = w->nlogs;
    h2_free(w->h);
    w->h = NULL;
    CHECK(w->nlogs >= before + 3);
    CHECK(find_log(w, "/hold/a") != NULL); /* went upstream, no response yet */
    CHECK(find_log(w, "/hold/b") != NULL); /* its body still coming */
    CHECK(find_log(w, "/hold/c") != NULL); /* its response cut short */
    CHECK_EQ(w->late_writes, 0);
    world_close(w);
}

/* ---- credentials ------------------------------------------------------------------------- */

static bool holds(const struct http_buf *b, const char *s)
{
    return b->len && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

static void test_placeholder_is_substituted_and_its_echo_redacted(void)
{
    static const nghttp2_nv auth[] = {NV("authorization", "Bearer " PH)};
    struct world *w = world_open_with(&(struct opts){.creds = true});
    int32_t id = request(w, &(struct req){.path = "/secret", .extra = auth, .nextra = 1});

    pump(w);
    expect_sane(w);
    expect_alive(w);
    struct rec *u = up_find(w, "/secret");
    CHECK(u != NULL);
    if (u) {
        CHECK_STR(field(&u->headers, "authorization"), "Bearer " SECRET);
        CHECK(!holds(&u->headers, PH));
        /* docs/http2.md: a secret stays out of the HPACK tables */
        CHECK(holds(&u->noindex, "authorization,"));
    }
    struct rec *c = rec_at(&w->client, id);
    static const char redacted[] = "{\"k\":\"" PH "\"}";
    EXPECT_RESPONSE(c, 200, redacted, sizeof redacted - 1);
    CHECK_STR(field(&c->headers, "x-key"), PH);
    CHECK(!holds(&c->headers, SECRET) && !holds(&c->body, SECRET) && !holds(&c->trailers, SECRET));
    world_close(w);
}

static void test_placeholder_to_an_unbound_host_is_refused(void)
{
    static const nghttp2_nv auth[] = {NV("authorization", "Bearer " PH)};
    struct world *w = world_open_with(&(struct opts){.host = "other.example.com", .creds = true});
    int32_t id = request(
        w,
        &(struct req){.path = "/p", .authority = "other.example.com", .extra = auth, .nextra = 1});

    pump(w);
    expect_sane(w);
    EXPECT_ANSWER(rec_at(&w->client, id), 403, "credential_endpoint_mismatch");
    CHECK_EQ(up_streams(w), 0);
    world_close(w);
}

int main(void)
{
    char *errors = NULL;

    setenv(SECRET_ENV, SECRET, 1);
    the_creds = creds_parse(creds_json, strlen(creds_json), &errors);
    if (!the_creds) {
        fprintf(stderr, "providers: %s", errors ? errors : "?\n");
        free(errors);
        return 1;
    }
    big = malloc(BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (char)('a' + (i * 7 + i / 4093) % 26);

    RUN(test_get_is_relayed_end_to_end);
    RUN(test_authority_naming_the_target_is_relayed);
    RUN(test_denied_stream_gets_403_and_the_connection_goes_on);
    RUN(test_refusal_before_the_body_ends_stops_the_upload);
    RUN(test_authority_mismatch_gets_421);
    RUN(test_host_field_contradicting_the_authority_is_refused);
    RUN(test_upstream_gets_the_canonical_path_that_was_judged);
    RUN(test_paths_that_climb_or_hide_get_400);
    RUN(test_connect_in_a_stream_is_refused);
    RUN(test_request_body_over_the_windows_arrives_whole);
    RUN(test_response_body_over_a_mebibyte_arrives_whole);
    RUN(test_grpc_like_exchange_keeps_trailers_both_ways);
    RUN(test_upstream_that_never_reads_holds_the_client_at_the_window);
    RUN(test_client_that_never_reads_holds_the_upstream_at_the_window);
    RUN(test_long_transfers_with_small_windows_are_no_flood);
    RUN(test_concurrent_streams_each_get_their_own_body);
    RUN(test_request_head_goes_up_before_its_body);
    RUN(test_head_and_204_have_no_body);
    RUN(test_interim_responses_then_the_final_one);
    RUN(test_client_reset_resets_the_upstream_stream);
    RUN(test_upstream_reset_before_the_response_gets_502);
    RUN(test_upstream_reset_mid_body_resets_the_client_stream);
    RUN(test_client_goaway_lets_open_streams_finish);
    RUN(test_upstream_goaway_ends_the_session_gracefully);
    RUN(test_shutdown_finishes_open_streams_then_done);
    RUN(test_shutdown_when_idle_is_done_at_once);
    RUN(test_timeout_answers_waiting_streams_and_spares_flowing_ones);
    RUN(test_streams_over_the_concurrency_limit_are_refused);
    RUN(test_upstream_allowing_fewer_streams_holds_none_forever);
    RUN(test_header_list_over_the_limit_is_refused);
    RUN(test_rapid_reset_gets_goaway);
    RUN(test_resets_under_the_budget_are_tolerated);
    RUN(test_resets_between_completed_streams_are_tolerated);
    RUN(test_control_floods_get_goaway);
    RUN(test_other_empty_floods_get_goaway);
    RUN(test_control_frames_under_the_budget_are_answered);
    RUN(test_continuation_flood_gets_goaway);
    RUN(test_settings_and_hpack_abuse_get_goaway);
    RUN(test_garbage_instead_of_a_preface_ends_the_session);
    RUN(test_upstream_protocol_error_ends_the_session);
    RUN(test_upstream_eof_ends_the_streams);
    RUN(test_free_with_open_streams_logs_them);
    RUN(test_placeholder_is_substituted_and_its_echo_redacted);
    RUN(test_placeholder_to_an_unbound_host_is_refused);

    free(big);
    creds_unref(the_creds);
    return test_report();
}
