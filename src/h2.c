/* SPDX-License-Identifier: MIT */
/* h2: the two nghttp2 sessions of an HTTP/2 tunnel (h2.h), the limits a hostile peer meets,
 * and the pump that writes what both sessions want to send. h2_stream.c holds the streams.
 *
 * Limits, beyond what nghttp2 enforces itself (HPACK table sizes, frame sizes, the header
 * fields of RFC 9113 §8.2, CONTINUATION counts, queued SETTINGS and PING acknowledgements):
 * - at most H2_MAX_STREAMS concurrent client streams (SETTINGS; nghttp2 refuses the rest),
 *   counting those the client closed whose request still waits for the upstream;
 * - a header list over H2_MAX_HEADER: that stream is answered 431;
 * - rapid reset (CVE-2023-44487): every stream the client resets, or makes nghttp2 reset by
 *   breaking the rules on it (MadeYouReset, CVE-2025-8671), costs one from a budget of
 *   H2_RESET_BUDGET that each stream it lets complete earns back. Past half of it the client
 *   is throttled to 10 concurrent streams; past all of it, GOAWAY ENHANCE_YOUR_CALM. A stream
 *   airlock refuses before it goes upstream (403, 421, 400, 431) costs the same: on HTTP/1.1 a
 *   refusal ends the connection, and a flood of them on one HTTP/2 connection must not be free
 *   (each is a log line).
 * - control-frame floods (SETTINGS, PING, PRIORITY, WINDOW_UPDATE, empty DATA, from either
 *   peer): past H2_CONTROL_BUDGET more of them than frames that carry requests or responses
 *   (HEADERS, DATA with a payload, received or sent to that peer: a peer acknowledges the DATA
 *   it is sent with WINDOW_UPDATEs, for the stream and the connection), GOAWAY
 *   ENHANCE_YOUR_CALM. */
#include "airlock/h2.h"

#include <stdlib.h>
#include <string.h>

#include "airlock/log.h"
#include "airlock/metrics.h"
#include "h2_internal.h"

#define H2_THROTTLED_STREAMS 10

static struct h2_stream *stream_of(nghttp2_session *session, int32_t id)
{
    return nghttp2_session_get_stream_user_data(session, id);
}

static enum side_id side_of(const struct h2 *h, nghttp2_session *session)
{
    return session == h->sessions[SIDE_CLIENT] ? SIDE_CLIENT : SIDE_UPSTREAM;
}

/* ---- abuse -------------------------------------------------------------------------------- */

void h2_abuse(struct h2 *h, enum side_id from, uint32_t code, const char *why)
{
    if (h->done)
        return;
    h->broken = true;
    metrics_inc(M_H2_ABUSE);
    struct log_event ev = {.class_uid = LOG_CLASS_FINDING,
                           .activity = LOG_ACTIVITY_FINDING,
                           .action = LOG_ACTION_DENY,
                           .severity = LOG_SEV_MEDIUM,
                           .reason = why,
                           .http_version = "2",
                           .overflow = -1};
    h->io->log(h->ctx, &ev);
    log_msg(LOG_WARN, "conn %llu: h2: the %s %s: GOAWAY", (unsigned long long)h->setup.id,
            from == SIDE_CLIENT ? "client" : "upstream", why);
    nghttp2_session_terminate_session(h->sessions[from], code);
    if (from == SIDE_UPSTREAM)
        h2_shutdown(h, why);
}

void h2_stream_completed(struct h2 *h)
{
    h->completed++;
}

/* A stream that did the client no good: one it reset, made nghttp2 reset, or had refused. */
static void count_wasted(struct h2 *h, const char *what)
{
    h->resets++;
    uint64_t budget = H2_RESET_BUDGET + h->completed;
    if (h->resets > budget) {
        h2_abuse(h, SIDE_CLIENT, NGHTTP2_ENHANCE_YOUR_CALM, what);
    } else if (h->resets == H2_RESET_BUDGET / 2 + h->completed) {
        nghttp2_settings_entry throttle = {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                           H2_THROTTLED_STREAMS};
        nghttp2_submit_settings(h->sessions[SIDE_CLIENT], NGHTTP2_FLAG_NONE, &throttle, 1);
        log_msg(LOG_INFO,
                "conn %llu: h2: the client's streams are reset or refused more than they "
                "complete: throttled to %d",
                (unsigned long long)h->setup.id, H2_THROTTLED_STREAMS);
    }
}

static void count_reset(struct h2 *h)
{
    count_wasted(h, "reset streams faster than it let them complete (rapid reset)");
}

void h2_stream_refused(struct h2 *h)
{
    count_wasted(h, "had streams refused far more often than completed (a flood of refused "
                    "requests)");
}

/* Frames that make a peer cost work without asking for any: counted against the frames that
 * carry requests or responses. */
static void count_frame(struct h2 *h, enum side_id from, const nghttp2_frame *f)
{
    bool control = false;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
        control = !(f->hd.flags & NGHTTP2_FLAG_ACK);
        break;
    case NGHTTP2_PRIORITY:
    case NGHTTP2_WINDOW_UPDATE:
        control = true;
        break;
    case NGHTTP2_DATA:
        control = f->hd.length == 0 && !(f->hd.flags & NGHTTP2_FLAG_END_STREAM);
        break;
    default:
        break;
    }
    if (!control) {
        if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && h->control[from])
            h->control[from]--;
        return;
    }
    if (++h->control[from] > H2_CONTROL_BUDGET)
        h2_abuse(h, from, NGHTTP2_ENHANCE_YOUR_CALM,
                 "sent control frames (SETTINGS, PING, PRIORITY, WINDOW_UPDATE, empty DATA) "
                 "far beyond its requests (flood)");
}

/* ---- callbacks: both sessions --------------------------------------------------------------*/

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct h2 *h = user;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (side_of(h, session) == SIDE_UPSTREAM) {
        struct h2_stream *s = stream_of(session, f->hd.stream_id);
        if (s)
            s->header_bytes = 0;
        return 0;
    }
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        struct h2_stream *s = stream_of(session, f->hd.stream_id);
        if (s) /* trailers: collected like fields, fed after the last chunk */
            http_buf_free(&s->fields);
        return 0;
    }
    if (h->nstreams >= H2_MAX_STREAMS) {
        /* A stream the client closed stays while its request waits in nghttp2's queue for a
         * slot at the upstream, which a busy or hostile upstream may never give: such streams
         * count as the client's, or opening and resetting streams behind it grew airlock
         * without bound. Not processed, so the client may retry it (RFC 9113 §8.7). */
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct h2_stream *s = h2_stream_new(h, f->hd.stream_id);
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(session, f->hd.stream_id, s);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct h2 *h = user;
    struct h2_stream *s = stream_of(session, f->hd.stream_id);
    if (!s || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    return side_of(h, session) == SIDE_CLIENT
               ? h2_stream_request_header(s, name, namelen, value, valuelen)
               : h2_stream_response_header(s, name, namelen, value, valuelen);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct h2 *h = user;
    enum side_id from = side_of(h, session);
    count_frame(h, from, f);
    bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
    struct h2_stream *s = f->hd.stream_id ? stream_of(session, f->hd.stream_id) : NULL;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (!s)
            return 0;
        if (from == SIDE_UPSTREAM)
            h2_stream_response_headers_done(s, end);
        else if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            h2_stream_request_headers_done(s, end);
        else if (end)
            h2_stream_request_end(s);
        return 0;
    case NGHTTP2_DATA:
        if (s && end)
            from == SIDE_UPSTREAM ? h2_stream_response_end(s) : h2_stream_request_end(s);
        return 0;
    case NGHTTP2_RST_STREAM:
        if (from == SIDE_CLIENT) {
            if (s)
                s->client_reset = true;
            count_reset(h);
        }
        return 0;
    case NGHTTP2_GOAWAY:
        /* Streams already open finish; the other side hears GOAWAY too. */
        h->goaway_from[from] = true;
        h2_shutdown(h,
                    from == SIDE_UPSTREAM ? "the upstream sent GOAWAY" : "the client sent GOAWAY");
        return 0;
    default:
        return 0;
    }
}

/* Each frame that carries a request or response to a peer earns back the WINDOW_UPDATEs it
 * will answer with (one for the stream, one for the connection). */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *f, void *user)
{
    struct h2 *h = user;
    enum side_id to = side_of(h, session);
    if (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS)
        h->control[to] = h->control[to] > 2 ? h->control[to] - 2 : 0;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *p,
                         size_t len, void *user)
{
    struct h2 *h = user;
    struct h2_stream *s = stream_of(session, id);
    if (!s) {
        nghttp2_session_consume(session, id, len);
        return 0;
    }
    if (side_of(h, session) == SIDE_CLIENT)
        h2_stream_request_data(s, p, len);
    else
        h2_stream_response_data(s, p, len);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t code, void *user)
{
    struct h2 *h = user;
    struct h2_stream *s = stream_of(session, id);
    if (!s)
        return 0;
    enum side_id side = side_of(h, session);
    /* A reset that neither the client nor airlock chose is nghttp2's answer to a stream the
     * client broke the rules on (more DATA than its content-length, a bad field ...): it costs
     * what the client's own RST_STREAM would, or breaking streams on purpose would be a rapid
     * reset with no budget (MadeYouReset, CVE-2025-8671). */
    if (side == SIDE_CLIENT && code != NGHTTP2_NO_ERROR && !s->client_reset && !s->reset_sent)
        count_reset(h);
    h2_stream_closed(s, side, code);
    return 0;
}

static int on_error(nghttp2_session *session, int code, const char *msg, size_t len, void *user)
{
    struct h2 *h = user;
    /* nghttp2 quotes a refused field's name and value: a value an upstream echoed may be the
     * credential it was sent, so only the fact is logged. */
    if (code == NGHTTP2_ERR_HTTP_HEADER) {
        msg = "an invalid header field (name and value not logged)";
        len = strlen(msg);
    }
    log_msg(LOG_INFO, "conn %llu: h2: %s: %.*s", (unsigned long long)h->setup.id,
            side_of(h, session) == SIDE_CLIENT ? "client" : "upstream", (int)len, msg);
    return 0;
}

static int on_invalid_frame(nghttp2_session *session, const nghttp2_frame *f, int code, void *user)
{
    struct h2 *h = user;
    log_msg(LOG_INFO, "conn %llu: h2: %s sent an invalid frame (type %u, stream %d): %s",
            (unsigned long long)h->setup.id,
            side_of(h, session) == SIDE_CLIENT ? "client" : "upstream", (unsigned)f->hd.type,
            f->hd.stream_id, nghttp2_strerror(code));
    return 0;
}

/* ---- the sessions ------------------------------------------------------------------------- */

static nghttp2_session_callbacks *callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_error_callback2(cb, on_error);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    return cb;
}

static nghttp2_option *options(void)
{
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        return NULL;
    /* Windows open as the other side takes the bytes, not as they arrive (h2_stream_read). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* HPACK: whatever table size a peer announces, our encoder keeps 4 KiB. */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 100);
    /* CVE-2024-27316's shape: a header block in endless CONTINUATION frames. */
    nghttp2_option_set_max_continuations(opt, 16);
    nghttp2_option_set_peer_max_concurrent_streams(opt, H2_MAX_STREAMS);
    return opt;
}

static int start_session(struct h2 *h, enum side_id side, nghttp2_session_callbacks *cb,
                         nghttp2_option *opt)
{
    nghttp2_session **out = &h->sessions[side];
    int rc = side == SIDE_CLIENT ? nghttp2_session_server_new2(out, cb, h, opt)
                                 : nghttp2_session_client_new2(out, cb, h, opt);
    if (rc != 0)
        return -1;
    nghttp2_settings_entry client_settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER},
    };
    /* Towards the upstream: no server push (RFC 9113 §8.4), and nothing the client could not
     * have asked for itself. */
    nghttp2_settings_entry upstream_settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 2 * H2_MAX_HEADER},
    };
    bool client = side == SIDE_CLIENT;
    if (nghttp2_submit_settings(*out, NGHTTP2_FLAG_NONE,
                                client ? client_settings : upstream_settings, 3) != 0)
        return -1;
    /* The connection window beyond its 65,535 default. */
    return nghttp2_session_set_local_window_size(*out, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) == 0
               ? 0
               : -1;
}

struct h2 *h2_new(const struct h2_setup *setup, const struct h2_io *io, void *ctx)
{
    struct h2 *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->io = io;
    h->ctx = ctx;
    h->setup = *setup;
    if (!h->setup.limits)
        h->setup.limits = &http_default_limits;
    nghttp2_session_callbacks *cb = callbacks();
    nghttp2_option *opt = options();
    int rc = cb && opt ? 0 : -1;
    for (int side = 0; side < 2 && rc == 0; side++)
        rc = start_session(h, (enum side_id)side, cb, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc < 0) {
        h2_free(h);
        return NULL;
    }
    metrics_inc(M_H2_SESSIONS);
    return h;
}

void h2_free(struct h2 *h)
{
    if (!h)
        return;
    while (h->streams) {
        struct h2_stream *s = h->streams;
        /* The sessions go next: no callback may find the stream again. */
        if (s->client_id > 0 && h->sessions[SIDE_CLIENT])
            nghttp2_session_set_stream_user_data(h->sessions[SIDE_CLIENT], s->client_id, NULL);
        if (s->upstream_id > 0 && h->sessions[SIDE_UPSTREAM])
            nghttp2_session_set_stream_user_data(h->sessions[SIDE_UPSTREAM], s->upstream_id, NULL);
        h2_stream_free(s);
    }
    nghttp2_session_del(h->sessions[SIDE_CLIENT]);
    nghttp2_session_del(h->sessions[SIDE_UPSTREAM]);
    http_buf_free(&h->out[0]);
    http_buf_free(&h->out[1]);
    free(h);
}

/* ---- moving frames ------------------------------------------------------------------------ */

static int flush_side(struct h2 *h, enum side_id side, bool *wrote);

/* The session is over: the upstream is told so too (GOAWAY, unless its session ended
 * already), then the controller. */
static void finish(struct h2 *h, const char *why, bool error)
{
    if (h->done)
        return;
    if (!h->upstream_gone) {
        bool wrote;
        nghttp2_session_terminate_session(h->sessions[SIDE_UPSTREAM], NGHTTP2_NO_ERROR);
        flush_side(h, SIDE_UPSTREAM, &wrote);
    }
    h->done = true;
    h->io->done(h->ctx, why, error || h->broken);
}

/* Gather what one session wants to send into one write. -1: the transport failed. */
static int flush_side(struct h2 *h, enum side_id side, bool *wrote)
{
    struct http_buf *b = &h->out[side];
    b->len = 0;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->sessions[side], &data);
        if (n < 0) {
            log_msg(LOG_INFO, "conn %llu: h2: %s session: %s", (unsigned long long)h->setup.id,
                    side == SIDE_CLIENT ? "client" : "upstream", nghttp2_strerror((int)n));
            return -1;
        }
        if (n == 0)
            break;
        http_buf_append(b, (const char *)data, (size_t)n);
        if (b->len >= 64 * 1024)
            break; /* one TLS flush's worth; the loop in h2_pump comes back for the rest */
    }
    if (b->failed)
        return -1;
    if (b->len == 0)
        return 0;
    *wrote = true;
    return h->io->write(h->ctx, side, b->data, b->len);
}

static bool session_over(nghttp2_session *s)
{
    return !nghttp2_session_want_read(s) && !nghttp2_session_want_write(s);
}

/* The upstream's session is over (it closed, or broke the protocol and was sent GOAWAY): the
 * streams that wait for it fail (502, or a reset once a response started), and no new one is
 * taken. */
static void upstream_gone(struct h2 *h, const char *why)
{
    h->upstream_gone = true;
    for (struct h2_stream *s = h->streams, *next; s; s = next) {
        next = s->next;
        if (!s->upstream_open && s->upstream_id > 0)
            continue; /* its upstream stream ended already */
        s->upstream_open = false;
        if (s->upstream_id > 0)
            nghttp2_session_set_stream_user_data(h->sessions[SIDE_UPSTREAM], s->upstream_id, NULL);
        h2_stream_closed(s, SIDE_UPSTREAM, NGHTTP2_INTERNAL_ERROR);
    }
    h2_shutdown(h, why);
}

void h2_pump(struct h2 *h)
{
    if (h->in_pump || h->done)
        return;
    h->in_pump = true;
    /* Sending on one side can open a window or queue frames on the other: go round until
     * neither has anything left. */
    bool wrote = true;
    int rc = 0;
    while (wrote && rc == 0) {
        wrote = false;
        rc = flush_side(h, SIDE_CLIENT, &wrote);
        if (rc == 0)
            rc = flush_side(h, SIDE_UPSTREAM, &wrote);
    }
    h->in_pump = false;
    if (rc < 0) {
        finish(h, "h2 session failed", true);
        return;
    }
    if (!h->upstream_gone && session_over(h->sessions[SIDE_UPSTREAM])) {
        /* Without a GOAWAY from it, nghttp2 ended it: the upstream broke the protocol. */
        if (!h->goaway_from[SIDE_UPSTREAM])
            h->broken = true;
        upstream_gone(h, "the upstream's session ended");
        return;
    }
    /* Over without a GOAWAY either way: nghttp2 ended it for the client's protocol error. */
    if (session_over(h->sessions[SIDE_CLIENT]))
        finish(h, h->shutting_down ? "h2 session ended (GOAWAY)" : "h2 session ended",
               !h->shutting_down);
}

size_t h2_feed(struct h2 *h, enum side_id from, const char *p, size_t len)
{
    if (h->done)
        return len;
    ssize_t n = nghttp2_session_mem_recv(h->sessions[from], (const uint8_t *)p, len);
    if (n < 0) {
        h->broken = true;
        bool flood = n == NGHTTP2_ERR_FLOODED || n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ||
                     n == NGHTTP2_ERR_HEADER_COMP;
        if (flood)
            h2_abuse(h, from,
                     n == NGHTTP2_ERR_HEADER_COMP ? NGHTTP2_COMPRESSION_ERROR
                                                  : NGHTTP2_ENHANCE_YOUR_CALM,
                     nghttp2_strerror((int)n));
        else
            log_msg(LOG_INFO, "conn %llu: h2: the %s broke the protocol: %s",
                    (unsigned long long)h->setup.id, from == SIDE_CLIENT ? "client" : "upstream",
                    nghttp2_strerror((int)n));
        nghttp2_session_terminate_session(h->sessions[from], n == NGHTTP2_ERR_HEADER_COMP
                                                                 ? NGHTTP2_COMPRESSION_ERROR
                                                                 : NGHTTP2_PROTOCOL_ERROR);
        if (from == SIDE_UPSTREAM)
            nghttp2_session_terminate_session(h->sessions[SIDE_CLIENT], NGHTTP2_NO_ERROR);
        h2_pump(h);
        finish(h, "h2 protocol error", true);
        return len;
    }
    h2_pump(h);
    return len;
}

void h2_eof(struct h2 *h, enum side_id from)
{
    if (h->done)
        return;
    if (from == SIDE_CLIENT)
        finish(h, "client closed", false);
    else
        upstream_gone(h, "the upstream closed");
}

void h2_shutdown(struct h2 *h, const char *why)
{
    if (h->done)
        return;
    if (!h->shutting_down) {
        h->shutting_down = true;
        log_msg(LOG_DEBUG, "conn %llu: h2: GOAWAY to the client: %s",
                (unsigned long long)h->setup.id, why);
        nghttp2_session *cs = h->sessions[SIDE_CLIENT];
        nghttp2_submit_goaway(cs, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(cs),
                              NGHTTP2_NO_ERROR, NULL, 0);
    }
    h2_pump(h);
}

void h2_timeout(struct h2 *h)
{
    for (struct h2_stream *s = h->streams, *next; s; s = next) {
        next = s->next;
        h2_stream_timeout(s);
    }
    h2_pump(h);
}

void h2_flush(struct h2 *h)
{
    h2_pump(h);
}

size_t h2_open_streams(const struct h2 *h)
{
    return h->nstreams;
}
