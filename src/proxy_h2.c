/* SPDX-License-Identifier: MIT */
/* proxy_h2: an inspected tunnel whose two TLS handshakes both selected h2 (ALPN never
 * translates: see tls_offer_h2). The connection's bytes go to the HTTP/2 module (h2.h), whose
 * streams are judged by the same policy, credentials and log as the relay's requests; this file
 * is the glue: frames to the sides, the policy and providers current now, and the timer. */
#include <string.h>

#include "airlock/h2.h"
#include "airlock/log.h"
#include "airlock/server.h"
#include "proxy_internal.h"

static struct h2 *h2_of(const struct conn *c)
{
    return ((struct proxy_state *)c->session_state)->h2;
}

/* No stream open: the keep-alive idle timeout, then GOAWAY. Streams open: the response timeout
 * (streams still waiting for a response head are answered 504 when it fires; flowing ones are
 * never cut). Re-armed only when that changes: activity itself pushes the timer back. */
static void arm_timer(struct conn *c, bool force)
{
    struct proxy_state *ps = c->session_state;
    const struct server_config *cfg = c->w->server->cfg;
    bool open = h2_open_streams(ps->h2) > 0;
    if (!force && open == ps->h2_streams_open)
        return;
    ps->h2_streams_open = open;
    if (open)
        conn_set_timeout(c, cfg->response_timeout_ms, 0, "no HTTP/2 frame in time");
    else
        conn_set_timeout(c, cfg->idle_timeout_ms, 0, "keep-alive idle");
}

static size_t h2_on_data(struct conn *c, enum side_id id, const char *p, size_t len)
{
    struct h2 *h = h2_of(c);
    size_t n = h2_feed(h, id, p, len);
    if (!(c->flags & CONN_F_CLOSING) && c->state == CONN_S_HTTP)
        arm_timer(c, false);
    return n;
}

static void h2_on_eof(struct conn *c, enum side_id id)
{
    h2_eof(h2_of(c), id);
}

static bool h2_on_timeout(struct conn *c)
{
    struct h2 *h = h2_of(c);
    if (h2_open_streams(h) == 0) {
        h2_shutdown(h, "keep-alive idle"); /* GOAWAY, then io.done */
        return true;
    }
    h2_timeout(h);
    if (!(c->flags & CONN_F_CLOSING) && c->state == CONN_S_HTTP)
        arm_timer(c, true);
    return true;
}

static const struct conn_handler h2_exchanges = {
    .on_data = h2_on_data,
    .on_eof = h2_on_eof,
    .on_timeout = h2_on_timeout,
};

/* ---- the HTTP/2 module's side of the connection (h2_io) ------------------------------------ */

static int io_write(void *ctx, enum side_id to, const char *p, size_t len)
{
    return conn_write(ctx, to, p, len);
}

static void io_log(void *ctx, struct log_event *ev)
{
    conn_log(ctx, ev);
}

static struct policy *io_judge(void *ctx, const struct authority *target,
                               const struct policy_request *q, struct policy_l7 *d)
{
    struct conn *c = ctx;
    proxy_io_judge(c, target, q, d); /* adopts the snapshot that judged */
    if (c->policy)
        policy_ref(c->policy);
    return c->policy;
}

static void io_describe(void *ctx, struct answer *a)
{
    struct conn *c = ctx;
    a->host = c->target.host;
    a->port = c->target.port;
    a->policy = c->policy_name;
}

static void io_done(void *ctx, const char *why, bool error)
{
    struct conn *c = ctx;
    if (c->flags & CONN_F_CLOSING)
        return;
    /* Every frame (a GOAWAY last) is queued already: it goes out before the close. */
    conn_finish(c, why);
}

static const struct h2_io h2_io = {
    .write = io_write,
    .log = io_log,
    .judge = io_judge,
    .creds = proxy_io_creds,
    .describe = io_describe,
    .done = io_done,
};

void proxy_h2_start(struct conn *c)
{
    struct proxy_state *ps = c->session_state;
    struct h2_setup setup = {
        .id = c->id, .limits = &c->w->server->cfg->http_limits, .target = c->target};
    ps->h2 = h2_new(&setup, &h2_io, c);
    if (!ps->h2) {
        conn_close(c, "out of memory");
        return;
    }
    log_msg(LOG_DEBUG, "conn %llu: h2 both ways", (unsigned long long)c->id);
    proxy_enter(c, CONN_S_HTTP, &h2_exchanges);
    arm_timer(c, true);
    conn_release(c, SIDE_UPSTREAM);
    conn_release(c, SIDE_CLIENT);
    h2_flush(ps->h2); /* airlock's SETTINGS, and its preface to the upstream */
}

bool proxy_h2_drain(struct conn *c)
{
    struct proxy_state *ps = c->session_state;
    if (!ps || !ps->h2 || (c->flags & CONN_F_CLOSING))
        return false;
    h2_shutdown(ps->h2, "draining");
    return true;
}
