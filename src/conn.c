/* SPDX-License-Identifier: MIT */
/* conn: the lifecycle of one client connection: accept, reads through the TLS layer into the
 * current consumer (relay, pipe), writes with backpressure, one idle-or-deadline timer, error
 * answers, and the one close path. Invariant: a connection is freed only by the last
 * conn_unref(), which only handle close callbacks and finished async requests reach. */
#include "airlock/conn.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "airlock/answer.h"
#include "airlock/http.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/origdst.h"
#include "airlock/peer.h"
#include "airlock/policy.h"
#include "airlock/server.h"
#include "airlock/tls.h"

static atomic_uint_fast64_t next_conn_id = 1;
static atomic_size_t live_conns;

struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

const char *conn_state_name(enum conn_state s)
{
    switch (s) {
    case CONN_S_FIRST:
        return "first";
    case CONN_S_SNIFF:
        return "sniff";
    case CONN_S_DIALING:
        return "dialing";
    case CONN_S_UPSTREAM_TLS:
        return "upstream_tls";
    case CONN_S_CLIENT_TLS:
        return "client_tls";
    case CONN_S_HTTP:
        return "http";
    case CONN_S_PIPE:
        return "pipe";
    case CONN_S_LINGER:
        return "linger";
    case CONN_S_CLOSING:
        return "closing";
    }
    return "?";
}

static enum side_id side_of(struct conn *c, const void *handle)
{
    return handle == (const void *)&c->sides[SIDE_CLIENT].tcp ? SIDE_CLIENT : SIDE_UPSTREAM;
}

static enum side_id other(enum side_id id)
{
    return id == SIDE_CLIENT ? SIDE_UPSTREAM : SIDE_CLIENT;
}

void conn_set_state(struct conn *c, enum conn_state s)
{
    if (c->state == s)
        return;
    log_msg(LOG_DEBUG, "conn %llu: %s -> %s", (unsigned long long)c->id, conn_state_name(c->state),
            conn_state_name(s));
    c->state = s;
}

void conn_adopt_policy(struct conn *c, struct policy *pol, const char *name)
{
    if (c->policy)
        policy_unref(c->policy);
    c->policy = pol;
    c->policy_name = name;
}

void conn_log(struct conn *c, struct log_event *ev)
{
    ev->conn_id = c->id;
    ev->src_ip = c->peer_ip;
    ev->src_port = c->peer_port;
    if (!ev->dst_host && c->target.host[0]) {
        ev->dst_host = c->target.host;
        ev->dst_port = c->target.port;
    }
    if (!ev->policy)
        ev->policy = c->policy_name;
    if (!ev->process && c->peer)
        ev->process = c->peer->procs[0].exes[0];
    log_event(ev);
}

void conn_policy_peer(const struct conn *c, struct policy_peer *out)
{
    static_assert(POLICY_PEER_MAX >= PEER_MAX_HOLDERS, "every holder reaches the policy");
    memset(out, 0, sizeof(*out));
    out->binary_identity_off = c->w->server->cfg->binary_identity_off;
    for (size_t i = 0; c->peer && i < c->peer->n; i++)
        out->procs[out->nprocs++] = (const char *const *)c->peer->procs[i].exes;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    w->session->free(c);
    for (int i = 0; i < 2; i++) {
        tls_free(c->sides[i].tls);
        free(c->sides[i].stash);
    }
    peer_info_free(c->peer);
    free(c->peer);
    if (c->policy)
        policy_unref(c->policy);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    if (c->flags & CONN_F_COUNTED) {
        atomic_fetch_sub(&live_conns, 1);
        metrics_gauge_add(G_CONN_ACTIVE, -1);
    }
    if (c->flags & CONN_F_UPGRADE_GAUGE)
        metrics_gauge_add(G_UPGRADES_ACTIVE, -1);
    free(c);
}

void conn_ref(struct conn *c)
{
    c->refs++;
}

void conn_unref(struct conn *c)
{
    assert(c->refs > 0);
    if (--c->refs == 0)
        conn_free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

void conn_close(struct conn *c, const char *reason)
{
    if (c->flags & CONN_F_CLOSING)
        return;
    c->flags |= CONN_F_CLOSING;
    log_msg(LOG_DEBUG, "conn %llu: close in %s: %s", (unsigned long long)c->id,
            conn_state_name(c->state), reason ? reason : "done");
    conn_set_state(c, CONN_S_CLOSING);
    /* In-flight lookups and connects are cancelled where possible; their callbacks still run
     * (with UV_ECANCELED or later) and drop their own references. */
    c->w->session->cancel(c);
    for (int i = 0; i < 2; i++) {
        struct side *s = &c->sides[i];
        if (s->flags & SIDE_F_OPEN) {
            s->flags &= ~(SIDE_F_OPEN | SIDE_F_READING);
            uv_close((uv_handle_t *)&s->tcp, on_handle_closed);
        }
    }
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* ---- writing ----------------------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *wr = (struct wreq *)req;
    struct conn *c = req->data;
    uv_stream_t *stream = req->handle;
    free(wr);
    /* Cancelled: we closed that side ourselves (conn_finish closes the upstream while the
     * client's answer drains), which is no failure of the connection. */
    if ((c->flags & CONN_F_CLOSING) || status == UV_ECANCELED)
        return;
    if (status < 0) {
        conn_close(c,
                   status == UV_EPIPE || status == UV_ECONNRESET ? "peer reset" : "write failed");
        return;
    }
    enum side_id id = side_of(c, stream);
    struct side *src = &c->sides[other(id)];
    /* Low-water mark reached: the side we stopped may read again. */
    if ((src->flags & SIDE_F_PAUSED) && stream->write_queue_size <= CONN_LOW_WATER) {
        src->flags &= ~SIDE_F_PAUSED;
        conn_update_reading(c, other(id));
    }
}

static void apply_backpressure(struct conn *c, enum side_id dest)
{
    struct side *d = &c->sides[dest];
    struct side *src = &c->sides[other(dest)];
    if (d->tcp.write_queue_size > CONN_HIGH_WATER && !(src->flags & SIDE_F_PAUSED)) {
        src->flags |= SIDE_F_PAUSED;
        conn_update_reading(c, other(dest));
    }
}

/* Write bytes to the socket: synchronously when nothing is queued (no copy), else one
 * allocation holding the rest. */
static int side_write_raw(struct conn *c, enum side_id id, const uv_buf_t *bufs, unsigned nbufs)
{
    struct side *s = &c->sides[id];
    if (c->flags & CONN_F_CLOSING)
        return -1;
    if (!(s->flags & SIDE_F_CONNECTED))
        return -1;
    size_t total = 0;
    for (unsigned i = 0; i < nbufs; i++)
        total += bufs[i].len;
    if (total == 0)
        return 0;
    s->bytes_out += total;
    metrics_add(M_BYTES_OUT, total);
    conn_touch(c);
    size_t skip = 0;
    if (s->tcp.write_queue_size == 0) {
        int r = uv_try_write((uv_stream_t *)&s->tcp, bufs, nbufs);
        if (r > 0) {
            skip = (size_t)r;
        } else if (r < 0 && r != UV_EAGAIN) {
            conn_close(c, r == UV_EPIPE || r == UV_ECONNRESET ? "peer reset" : "write failed");
            return -1;
        }
        if (skip == total)
            return 0;
    }
    size_t rest = total - skip;
    struct wreq *wr = malloc(sizeof *wr + rest);
    if (!wr) {
        conn_close(c, "out of memory");
        return -1;
    }
    wr->len = rest;
    char *o = wr->data;
    for (unsigned i = 0; i < nbufs; i++) {
        size_t n = bufs[i].len;
        const char *p = bufs[i].base;
        if (skip >= n) {
            skip -= n;
            continue;
        }
        p += skip;
        n -= skip;
        skip = 0;
        memcpy(o, p, n);
        o += n;
    }
    wr->req.data = c;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)rest);
    int r = uv_write(&wr->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (r < 0) {
        free(wr);
        conn_close(c, "write failed");
        return -1;
    }
    apply_backpressure(c, id);
    return 0;
}

int conn_flush_tls(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    s->flags &= ~SIDE_F_DIRTY;
    if (!s->tls)
        return 0;
    size_t n;
    while ((n = tls_out_pending(s->tls)) > 0) {
        char *buf = c->w->out_buf;
        size_t got = tls_out_take(s->tls, buf, n < sizeof c->w->out_buf ? n : sizeof c->w->out_buf);
        if (got == 0)
            break;
        uv_buf_t b = uv_buf_init(buf, (unsigned)got);
        if (side_write_raw(c, id, &b, 1) < 0)
            return -1;
    }
    return 0;
}

int conn_writev(struct conn *c, enum side_id id, const uv_buf_t *bufs, unsigned nbufs)
{
    struct side *s = &c->sides[id];
    if (c->flags & CONN_F_CLOSING)
        return -1;
    if (!s->tls)
        return side_write_raw(c, id, bufs, nbufs);
    for (unsigned i = 0; i < nbufs; i++) {
        if (bufs[i].len && tls_write(s->tls, bufs[i].base, bufs[i].len) != TLS_DONE) {
            log_msg(LOG_WARN, "conn %llu: tls write: %s", (unsigned long long)c->id,
                    tls_last_error(s->tls));
            conn_close(c, "tls write failed");
            return -1;
        }
    }
    /* Inside a read callback the records of one socket read leave in one write at its end
     * (a 64 KiB read is four 16 KiB records: one syscall, not four). */
    if (c->flags & CONN_F_CORKED) {
        s->flags |= SIDE_F_DIRTY;
        return 0;
    }
    return conn_flush_tls(c, id);
}

int conn_write(struct conn *c, enum side_id id, const char *p, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    return conn_writev(c, id, &b, 1);
}

/* Our TLS towards a side ends with close_notify, unless what we relay to it ended without one:
 * then the FIN alone passes the upstream's (or client's) unauthenticated end on as it came, and
 * the log says so. false when the connection closed meanwhile. */
static bool end_tls_towards(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    if (!s->tls || !tls_handshake_done(s->tls))
        return true;
    if (s->flags & SIDE_F_BARE_END) {
        struct log_event ev = {.class_uid = LOG_CLASS_NETWORK,
                               .activity = LOG_ACTIVITY_CLOSE,
                               .action = LOG_ACTION_ALLOW,
                               .severity = LOG_SEV_LOW,
                               .reason = id == SIDE_CLIENT
                                             ? "upstream closed without TLS close_notify: "
                                               "passed on to the client as a FIN alone "
                                               "(possibly truncated)"
                                             : "client closed without TLS close_notify: "
                                               "passed on to the upstream as a FIN alone",
                               .overflow = -1};
        conn_log(c, &ev);
        return true;
    }
    tls_close_notify(s->tls);
    return conn_flush_tls(c, id) == 0;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    c->pending_shutdowns--;
    if (!(c->flags & CONN_F_CLOSING) && c->state == CONN_S_PIPE) {
        enum side_id id = req == &c->sides[SIDE_CLIENT].shutdown_req ? SIDE_CLIENT : SIDE_UPSTREAM;
        if (c->sides[other(id)].flags & SIDE_F_EOF && c->sides[id].flags & SIDE_F_EOF &&
            c->pending_shutdowns == 0)
            conn_close(c, "both sides closed");
    }
    conn_unref(c);
}

void conn_shutdown_side(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    if ((c->flags & CONN_F_CLOSING) || (s->flags & SIDE_F_SHUT) || !(s->flags & SIDE_F_CONNECTED))
        return;
    s->flags |= SIDE_F_SHUT;
    if (!end_tls_towards(c, id))
        return;
    s->shutdown_req.data = c;
    /* libuv sends the FIN once every queued write is done. */
    if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_shutdown) == 0) {
        c->pending_shutdowns++;
        conn_ref(c);
    }
}

/* ---- reading ----------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    /* One buffer per worker: every read callback consumes (or stashes) its bytes before it
     * returns, so connections need no read buffer of their own while idle. */
    buf->base = c->w->read_buf;
    buf->len = sizeof c->w->read_buf;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

void conn_update_reading(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    if (c->flags & CONN_F_CLOSING)
        return;
    bool want = (s->flags & SIDE_F_OPEN) && (s->flags & SIDE_F_CONNECTED) &&
                !(s->flags & (SIDE_F_PAUSED | SIDE_F_HELD | SIDE_F_EOF));
    if (want && !(s->flags & SIDE_F_READING)) {
        if (uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) == 0)
            s->flags |= SIDE_F_READING;
    } else if (!want && (s->flags & SIDE_F_READING)) {
        uv_read_stop((uv_stream_t *)&s->tcp);
        s->flags &= ~SIDE_F_READING;
    }
}

void conn_set_handler(struct conn *c, const struct conn_handler *h)
{
    c->handler = h;
}

static size_t dispatch(struct conn *c, enum side_id id, const char *p, size_t len)
{
    if (c->state == CONN_S_LINGER)
        return len; /* discarded: the answer is written, the client's rest is not wanted */
    if (c->handler && c->handler->on_data)
        return c->handler->on_data(c, id, p, len);
    /* Bytes that arrive before their consumer exists (a ClientHello sent before our 200, say)
     * wait in the stash. */
    c->sides[id].flags |= SIDE_F_HELD;
    return 0;
}

static int stash_append(struct conn *c, struct side *s, const char *p, size_t len)
{
    if (s->stash_off > 0) {
        memmove(s->stash, s->stash + s->stash_off, s->stash_len - s->stash_off);
        s->stash_len -= s->stash_off;
        s->stash_off = 0;
    }
    char *n = realloc(s->stash, s->stash_len + len);
    if (!n) {
        conn_close(c, "out of memory");
        return -1;
    }
    memcpy(n + s->stash_len, p, len);
    s->stash = n;
    s->stash_len += len;
    return 0;
}

/* Hand fresh plaintext to the consumer; whatever it does not take is stashed in order. */
static void side_consume(struct conn *c, enum side_id id, const char *p, size_t len)
{
    struct side *s = &c->sides[id];
    if (c->state == CONN_S_LINGER)
        return; /* the answer is out: what the client still sends is not wanted */
    while (len > 0 && !(c->flags & CONN_F_CLOSING)) {
        if ((s->flags & SIDE_F_HELD) || s->stash) {
            stash_append(c, s, p, len);
            return;
        }
        size_t n = dispatch(c, id, p, len);
        if (n == 0 && !(s->flags & SIDE_F_HELD) && !(c->flags & CONN_F_CLOSING))
            s->flags |= SIDE_F_HELD;
        p += n;
        len -= n;
    }
}

static void side_process_stash(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    while (s->stash && !(s->flags & SIDE_F_HELD) && !(c->flags & CONN_F_CLOSING)) {
        size_t n = dispatch(c, id, s->stash + s->stash_off, s->stash_len - s->stash_off);
        if (c->flags & CONN_F_CLOSING)
            return;
        s->stash_off += n;
        if (s->stash_off == s->stash_len) {
            free(s->stash);
            s->stash = NULL;
            s->stash_len = s->stash_off = 0;
        } else if (n == 0 && !(s->flags & SIDE_F_HELD)) {
            s->flags |= SIDE_F_HELD;
        }
    }
}

static void side_on_eof(struct conn *c, enum side_id id, const char *why)
{
    struct side *s = &c->sides[id];
    if (s->flags & SIDE_F_EOF)
        return;
    s->flags |= SIDE_F_EOF;
    conn_update_reading(c, id);
    if (c->state == CONN_S_LINGER) {
        /* The phase is over and so is its handler (its bytes are discarded too). Both ends are
         * finished once our FIN is out: close now if it is, else on_linger_shutdown will, after
         * the queued answer has gone (closing sooner would cut it short). */
        if (c->pending_shutdowns == 0)
            conn_close(c, why);
        return;
    }
    if (c->handler && c->handler->on_eof)
        c->handler->on_eof(c, id);
    else
        conn_close(c, why);
}

/* Decrypt what the side's TLS layer holds and pass it on, driving the handshake first. The
 * plaintext buffer is on the stack: a consumer on one side may resume the other side, whose
 * processing must not overwrite the bytes still being consumed here. */
static void side_process_tls(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    char plain[CONN_PLAIN_BUF];
    while (!(c->flags & CONN_F_CLOSING) && s->tls && !(s->flags & SIDE_F_HELD) && !s->stash) {
        if (!tls_handshake_done(s->tls)) {
            int r = tls_handshake(s->tls);
            if (conn_flush_tls(c, id) < 0)
                return;
            if (r == TLS_AGAIN)
                return;
            if (r != TLS_DONE) {
                metrics_inc(id == SIDE_CLIENT ? M_TLS_FAILURES_CLIENT : M_TLS_FAILURES_UPSTREAM);
                struct log_event ev = {.class_uid = LOG_CLASS_NETWORK,
                                       .activity = LOG_ACTIVITY_TLS,
                                       .action = LOG_ACTION_DENY,
                                       .severity = LOG_SEV_MEDIUM,
                                       .reason = tls_last_error(s->tls),
                                       .overflow = -1};
                ev.status = id == SIDE_UPSTREAM ? 502 : 0;
                conn_log(c, &ev);
                if (c->handler && c->handler->on_tls_failed)
                    c->handler->on_tls_failed(c, id, tls_last_error(s->tls));
                else if (id == SIDE_UPSTREAM)
                    conn_respond_error(c, 502, "upstream_tls_failed",
                                       "the upstream's TLS certificate or handshake was refused");
                else
                    conn_close(c, "client tls handshake failed");
                return;
            }
            metrics_inc(id == SIDE_CLIENT ? M_TLS_HANDSHAKES_CLIENT : M_TLS_HANDSHAKES_UPSTREAM);
            if (c->handler && c->handler->on_tls_ready)
                c->handler->on_tls_ready(c, id);
            continue;
        }
        size_t n = 0;
        int r = tls_read(s->tls, plain, sizeof plain, &n);
        if (tls_out_pending(s->tls) && conn_flush_tls(c, id) < 0)
            return;
        if (r == TLS_DONE) {
            side_consume(c, id, plain, n);
        } else if (r == TLS_AGAIN) {
            return;
        } else if (r == TLS_EOF) {
            side_on_eof(c, id, "tls close_notify");
            return;
        } else {
            log_msg(LOG_INFO, "conn %llu: %s tls: %s", (unsigned long long)c->id,
                    id == SIDE_CLIENT ? "client" : "upstream", tls_last_error(s->tls));
            conn_close(c, "tls error");
            return;
        }
    }
}

void conn_release(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    if (c->flags & CONN_F_CLOSING)
        return;
    s->flags &= ~SIDE_F_HELD;
    s->flags |= SIDE_F_KICK;
    if (!(c->flags & CONN_F_KICKED)) {
        c->flags |= CONN_F_KICKED;
        conn_ref(c);
        c->kick_next = c->w->kicks;
        c->w->kicks = c;
        uv_idle_start(&c->w->kick, conn_on_kick);
    }
}

static void side_kick(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    if (!(s->flags & SIDE_F_KICK))
        return;
    /* The release is newer than any hold its own parser set on the way out. */
    s->flags &= ~(SIDE_F_KICK | SIDE_F_HELD);
    if (c->flags & CONN_F_CLOSING)
        return;
    if (c->handler && c->handler->on_resume)
        c->handler->on_resume(c, id);
    side_process_stash(c, id);
    if (!(s->flags & SIDE_F_HELD) && !s->stash)
        side_process_tls(c, id);
    conn_update_reading(c, id);
}

void conn_on_kick(uv_idle_t *idle)
{
    struct worker *w = idle->data;
    while (w->kicks) {
        struct conn *c = w->kicks;
        w->kicks = c->kick_next;
        c->kick_next = NULL;
        c->flags &= ~CONN_F_KICKED;
        side_kick(c, SIDE_UPSTREAM);
        side_kick(c, SIDE_CLIENT);
        conn_unref(c);
    }
    uv_idle_stop(idle);
}

/* Feed bytes that were stashed as plaintext but are really ciphertext (the client's
 * ClientHello sent right behind CONNECT) into the side's new TLS layer. */
int conn_unread(struct conn *c, enum side_id id, const char *p, size_t len)
{
    struct side *s = &c->sides[id];
    s->flags |= SIDE_F_HELD;
    if (len == 0)
        return 0; /* nothing to give back: the side is only held */
    size_t waiting = s->stash ? s->stash_len - s->stash_off : 0;
    char *n = malloc(len + waiting);
    if (!n) {
        conn_close(c, "out of memory");
        return -1;
    }
    memcpy(n, p, len);
    if (waiting)
        memcpy(n + len, s->stash + s->stash_off, waiting);
    free(s->stash);
    s->stash = n;
    s->stash_len = len + waiting;
    s->stash_off = 0;
    return 0;
}

int conn_stash_to_tls(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    if (!s->stash)
        return 0;
    int r = tls_feed(s->tls, s->stash + s->stash_off, s->stash_len - s->stash_off);
    free(s->stash);
    s->stash = NULL;
    s->stash_len = s->stash_off = 0;
    return r;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = stream->data;
    if (c->flags & CONN_F_CLOSING)
        return;
    enum side_id id = side_of(c, stream);
    struct side *s = &c->sides[id];
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF) {
            /* A TLS peer's clean end is its close_notify (TLS_EOF, which stops our reads). */
            if (s->tls && tls_handshake_done(s->tls) && !(s->flags & SIDE_F_EOF))
                s->flags |= SIDE_F_BARE_EOF;
            side_on_eof(c, id, id == SIDE_CLIENT ? "client closed" : "upstream closed");
        } else if (id == SIDE_UPSTREAM) {
            /* An upstream's reset is its end, only ruder: the phase still answers the client
             * (a 502 before a response, inside TLS after a CONNECT's 200; a bare end after
             * one started), never a silent close. */
            s->flags |= SIDE_F_BARE_EOF;
            side_on_eof(c, id, "upstream reset");
        } else {
            conn_close(c, id == SIDE_CLIENT ? "client read error" : "upstream read error");
        }
        return;
    }
    s->bytes_in += (uint64_t)nread;
    metrics_add(M_BYTES_IN, (uint64_t)nread);
    /* While lingering only our answer draining counts as activity: a client that keeps
     * writing (and never reads) must not hold the connection open. */
    if (c->state != CONN_S_LINGER)
        conn_touch(c);
    if (s->tls) {
        if (tls_feed(s->tls, buf->base, (size_t)nread) < 0) {
            conn_close(c, "out of memory");
            return;
        }
        c->flags |= CONN_F_CORKED;
        side_process_tls(c, id);
        c->flags &= ~CONN_F_CORKED;
        for (int i = 0; i < 2; i++)
            if ((c->sides[i].flags & SIDE_F_DIRTY) && !(c->flags & CONN_F_CLOSING))
                conn_flush_tls(c, (enum side_id)i);
    } else {
        side_consume(c, id, buf->base, (size_t)nread);
    }
    if (!(c->flags & CONN_F_CLOSING))
        conn_update_reading(c, id);
}

/* ---- finishing --------------------------------------------------------------------------- */

static void on_linger_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    c->pending_shutdowns--;
    /* Our FIN is out. Keep reading (and discarding) a little so that unread client bytes do
     * not turn our close into a reset that destroys the answer in flight. */
    if (!(c->flags & CONN_F_CLOSING)) {
        if (status < 0 || (c->sides[SIDE_CLIENT].flags & SIDE_F_EOF))
            conn_close(c, "finished");
        else
            conn_set_deadline(c, 2000, 0, "linger");
    }
    conn_unref(c);
}

void conn_finish(struct conn *c, const char *reason)
{
    if (c->flags & CONN_F_CLOSING)
        return;
    if (c->state == CONN_S_LINGER)
        return;
    conn_set_state(c, CONN_S_LINGER);
    log_msg(LOG_DEBUG, "conn %llu: finish: %s", (unsigned long long)c->id, reason);
    struct side *cs = &c->sides[SIDE_CLIENT];
    /* The upstream has nothing more to give us, and neither has a lookup or a connection
     * race still running (an attempt to a blackholed address would hold its socket for the
     * kernel's whole SYN timeout). */
    c->w->session->cancel(c);
    struct side *us = &c->sides[SIDE_UPSTREAM];
    /* What the session wrote upstream last (an HTTP/2 GOAWAY saying why) still leaves if the
     * socket takes it now; the rest is cancelled with the close. */
    if ((us->flags & SIDE_F_DIRTY) && (us->flags & SIDE_F_CONNECTED) &&
        conn_flush_tls(c, SIDE_UPSTREAM) < 0)
        return; /* closing */
    if (us->flags & SIDE_F_OPEN) {
        us->flags &= ~(SIDE_F_OPEN | SIDE_F_READING | SIDE_F_CONNECTED);
        uv_close((uv_handle_t *)&us->tcp, on_handle_closed);
    }
    cs->flags &= ~(SIDE_F_PAUSED | SIDE_F_HELD);
    /* What the client sent and nobody will read is discarded, not kept: a client that never
     * reads its answer and keeps writing must not grow a stash while the answer drains. */
    free(cs->stash);
    cs->stash = NULL;
    cs->stash_len = cs->stash_off = 0;
    if (!(cs->flags & SIDE_F_CONNECTED)) {
        conn_close(c, reason);
        return;
    }
    if (!end_tls_towards(c, SIDE_CLIENT))
        return;
    cs->flags |= SIDE_F_SHUT;
    cs->shutdown_req.data = c;
    if (uv_shutdown(&cs->shutdown_req, (uv_stream_t *)&cs->tcp, on_linger_shutdown) == 0) {
        c->pending_shutdowns++;
        conn_ref(c);
        /* Bounded wait for the queued answer to drain to a slow client. */
        conn_set_timeout(c, 30000, 0, "linger");
        conn_update_reading(c, SIDE_CLIENT);
    } else {
        conn_close(c, reason);
    }
}

void conn_respond(struct conn *c, const struct answer *a)
{
    /* One answer per connection: after the first, the connection is already finishing. */
    if (c->state == CONN_S_LINGER || (c->flags & CONN_F_CLOSING))
        return;
    if (c->w->session->take_answer && c->w->session->take_answer(c, a))
        return;
    struct side *cs = &c->sides[SIDE_CLIENT];
    /* A response is under way, or the client's TLS (inside a tunnel) is not up yet: there is
     * no way to answer in HTTP. */
    if ((c->flags & CONN_F_RESPONSE_STARTED) || (cs->tls && !tls_handshake_done(cs->tls))) {
        conn_close(c, a->detail);
        return;
    }
    struct answer full = *a;
    if (!full.host && c->target.host[0]) {
        full.host = c->target.host;
        full.port = c->target.port;
        full.policy = c->policy_name;
    }
    if (!full.method && c->w->session->describe)
        c->w->session->describe(c, &full);
    struct http_buf out = {0};
    answer_build(&full, &out);
    if (!out.failed)
        conn_write(c, SIDE_CLIENT, out.data, out.len);
    http_buf_free(&out);
    conn_finish(c, a->detail);
}

void conn_respond_error(struct conn *c, int status, const char *error, const char *detail)
{
    conn_respond(c, &(struct answer){.status = status, .error = error, .detail = detail});
}

/* ---- accept ------------------------------------------------------------------------------ */

static int side_init(struct conn *c, enum side_id id)
{
    struct side *s = &c->sides[id];
    int r = uv_tcp_init(&c->w->loop, &s->tcp);
    if (r < 0)
        return r;
    s->tcp.data = c;
    s->flags |= SIDE_F_OPEN;
    conn_ref(c);
    return 0;
}

int conn_init_upstream(struct conn *c)
{
    return side_init(c, SIDE_UPSTREAM);
}

/* Close the upstream alone (a forward proxy's next origin): its handle, its TLS layer and
 * what it stashed; the next upstream starts clean (plain, or with a TLS layer of its own). */
void conn_close_upstream(struct conn *c, uv_close_cb cb)
{
    struct side *s = &c->sides[SIDE_UPSTREAM];
    if (!(s->flags & SIDE_F_OPEN))
        return;
    s->flags = 0;
    tls_free(s->tls);
    s->tls = NULL;
    free(s->stash);
    s->stash = NULL;
    s->stash_len = s->stash_off = 0;
    uv_close((uv_handle_t *)&s->tcp, cb);
}

void conn_accept(struct worker *w, const struct listener *l, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_msg(LOG_ERROR, "out of memory: connection dropped");
        close(fd);
        return;
    }
    c->w = w;
    c->id = atomic_fetch_add(&next_conn_id, 1);
    if (l && l->transparent) {
        c->flags |= CONN_F_TRANSPARENT;
        if (origdst_get(fd, &c->orig_dst) < 0)
            c->orig_dst.ss_family = AF_UNSPEC;
    }
    c->refs = 1; /* held until the end of this function */
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    conn_ref(c);
    struct side *cs = &c->sides[SIDE_CLIENT];
    int r = side_init(c, SIDE_CLIENT);
    if (r == 0)
        r = uv_tcp_open(&cs->tcp, fd);
    if (r < 0) {
        log_msg(LOG_WARN, "accept: %s", uv_strerror(r));
        close(fd); /* the handle did not take it */
        conn_close(c, "accept failed");
        conn_unref(c);
        return;
    }
    cs->flags |= SIDE_F_CONNECTED;
    uv_tcp_nodelay(&cs->tcp, 1);
    int len = sizeof c->peer_addr;
    uv_tcp_getpeername(&cs->tcp, (struct sockaddr *)&c->peer_addr, &len);
    len = sizeof c->local_addr;
    uv_tcp_getsockname(&cs->tcp, (struct sockaddr *)&c->local_addr, &len);
    addr_format((const struct sockaddr *)&c->peer_addr, c->peer_ip, sizeof c->peer_ip);
    c->peer_port = addr_port((const struct sockaddr *)&c->peer_addr);
    const struct server_config *cfg = w->server->cfg;
    size_t n = atomic_fetch_add(&live_conns, 1) + 1;
    c->flags |= CONN_F_COUNTED;
    metrics_inc(M_CONN_ACCEPTED);
    metrics_gauge_add(G_CONN_ACTIVE, 1);
    size_t max = w->server->max_connections;
    if (max && n > max) {
        metrics_inc(M_CONN_REFUSED_LIMIT);
        log_msg(LOG_WARN, "connection from %s refused with 503: --max-connections %zu reached",
                c->peer_ip, max);
        conn_respond_error(c, 503, "too_many_connections",
                           "airlock is at its connection limit; retry later");
        conn_unref(c);
        return;
    }
    if (w->draining) {
        conn_close(c, "draining");
        conn_unref(c);
        return;
    }
    /* Until the first byte: the keep-alive idle timeout; from it, the head deadline. */
    conn_set_timeout(c, cfg->idle_timeout_ms, 0, "idle before first request");
    /* The session may refuse the connection at once (it closes it then). */
    if (w->session->start(c) < 0)
        conn_close(c, "out of memory");
    if (!(c->flags & CONN_F_CLOSING))
        conn_update_reading(c, SIDE_CLIENT);
    conn_unref(c);
}

size_t conn_live_count(void)
{
    return atomic_load(&live_conns);
}
