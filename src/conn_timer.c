/* SPDX-License-Identifier: MIT */
/* conn_timer: a connection's one timer, and the worker's sweep that gives idle connections'
 * TLS buffers back. It is an idle timeout (activity pushes it back: only
 * idleness, never age, ends a connection) or a deadline (conn_set_deadline: phases a peer could
 * otherwise stretch by dribbling bytes). When it fires: a log line, then the handler's say
 * (on_timeout), else the timer's status is answered through conn_respond, or the connection
 * closes. Part of the conn module (conn.h). */
#include "airlock/conn.h"
#include "airlock/log.h"
#include "airlock/server.h"
#include "airlock/tls.h"

void conn_touch(struct conn *c)
{
    c->last_activity = uv_now(&c->w->loop);
    c->buffers_live = true;
}

void conn_sweep_idle(uv_timer_t *t)
{
    struct worker *w = t->data;
    uint64_t now = uv_now(&w->loop);
    for (struct conn *c = w->conns; c; c = c->next) {
        if (!c->buffers_live || now - c->last_activity < CONN_BUFFER_IDLE_MS ||
            (c->flags & CONN_F_CLOSING))
            continue;
        c->buffers_live = false;
        for (int id = 0; id < 2; id++)
            if (c->sides[id].tls)
                tls_release_buffers(c->sides[id].tls);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->flags & CONN_F_CLOSING)
        return;
    uint64_t now = uv_now(&c->w->loop);
    if (!c->timer_absolute && now - c->last_activity < c->timeout_ms) {
        /* Bytes moved since the timer was armed: idleness, never age, is what ends a
         * connection, so wait for the rest of the idle period. */
        uv_timer_start(&c->timer, on_timer, c->timeout_ms - (now - c->last_activity), 0);
        return;
    }
    if (c->state == CONN_S_LINGER) {
        conn_close(c, "linger timeout");
        return;
    }
    struct log_event ev = {.class_uid = LOG_CLASS_NETWORK,
                           .activity = LOG_ACTIVITY_TIMEOUT,
                           .action = LOG_ACTION_DENY,
                           .severity = LOG_SEV_LOW,
                           .reason = c->timeout_reason,
                           .status = c->timeout_status,
                           .overflow = -1};
    conn_log(c, &ev);
    if (c->handler && c->handler->on_timeout && c->handler->on_timeout(c))
        return;
    /* conn_respond closes instead when the answer cannot be given in HTTP any more. */
    if (c->timeout_status)
        conn_respond_error(c, c->timeout_status,
                           c->timeout_status == 408   ? "request_timeout"
                           : c->timeout_status == 504 ? "upstream_timeout"
                                                      : "upstream_failed",
                           c->timeout_reason);
    else
        conn_close(c, c->timeout_reason);
}

void conn_set_timeout(struct conn *c, uint64_t timeout_ms, int status, const char *reason)
{
    c->timer_absolute = false;
    c->timeout_ms = timeout_ms;
    c->timeout_status = status;
    c->timeout_reason = reason;
    conn_touch(c);
    if (timeout_ms == 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, timeout_ms, 0);
}

void conn_set_deadline(struct conn *c, uint64_t timeout_ms, int status, const char *reason)
{
    conn_set_timeout(c, timeout_ms, status, reason);
    c->timer_absolute = true;
}

/* The first byte of a request head arrived: the head must be whole by --head-timeout. */
void conn_head_started(struct conn *c)
{
    const struct server_config *cfg = c->w->server->cfg;
    conn_set_deadline(c, cfg->head_timeout_ms, 408, "request head not complete in time");
}
