/* SPDX-License-Identifier: MIT */
/* pipe: raw bytes both ways once a connection is UPGRADED (through both TLS layers) or for a
 * `protocol: tcp` endpoint (plain). No parsing and no age limit; backpressure comes from
 * conn_write, and an EOF on one side becomes a half-close towards the other. The connection
 * closes when both directions have finished. */
#include "airlock/pipe.h"

#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/server.h"

static const struct conn_handler piping = {
    .on_data = pipe_on_data,
    .on_eof = pipe_on_eof,
};

void pipe_start(struct conn *c, size_t upstream_overflow)
{
    const struct server_config *cfg = c->w->server->cfg;
    struct side *cs = &c->sides[SIDE_CLIENT];
    conn_set_state(c, CONN_S_PIPE);
    conn_set_handler(c, &piping);
    /* Only the operator's idle timeout (off by default) ends a quiet piped connection. */
    conn_set_timeout(c, cfg->tunnel_idle_timeout_ms, 0, "tunnel idle timeout");
    struct log_event ev = {
        .class_uid = LOG_CLASS_NETWORK,
        .activity = c->protocol == POLICY_TCP ? LOG_ACTIVITY_PIPE : LOG_ACTIVITY_UPGRADE,
        .action = LOG_ACTION_ALLOW,
        .severity = LOG_SEV_INFO,
        .l7_decision = c->protocol == POLICY_TCP ? LOG_DECISION_ALLOW : LOG_DECISION_ALLOW_UPGRADE,
        .relay_outcome = LOG_OUTCOME_UPGRADED,
        .overflow = (long)(upstream_overflow + (cs->stash ? cs->stash_len - cs->stash_off : 0))};
    conn_log(c, &ev);
    if (c->protocol != POLICY_TCP)
        metrics_inc(M_TUNNELS_UPGRADED);
    metrics_gauge_add(G_UPGRADES_ACTIVE, 1);
    c->flags |= CONN_F_UPGRADE_GAUGE;
    /* The client's bytes that came behind its upgrade request go first (the upstream's overflow
     * is handed to pipe_on_data by the caller). */
    conn_release(c, SIDE_CLIENT);
    conn_update_reading(c, SIDE_UPSTREAM);
}

size_t pipe_on_data(struct conn *c, enum side_id id, const char *p, size_t len)
{
    conn_write(c, id == SIDE_CLIENT ? SIDE_UPSTREAM : SIDE_CLIENT, p, len);
    return len;
}

void pipe_on_eof(struct conn *c, enum side_id id)
{
    enum side_id to = id == SIDE_CLIENT ? SIDE_UPSTREAM : SIDE_CLIENT;
    /* A bare FIN (no close_notify) reaches the other side as bare as it came. */
    if (c->sides[id].flags & SIDE_F_BARE_EOF)
        c->sides[to].flags |= SIDE_F_BARE_END;
    /* Pass the half-close on as it came (close_notify and FIN once the queued bytes are out, or
     * the FIN alone when this side sent no close_notify). */
    conn_shutdown_side(c, to);
    if ((c->sides[SIDE_CLIENT].flags & SIDE_F_EOF) &&
        (c->sides[SIDE_UPSTREAM].flags & SIDE_F_EOF) && c->pending_shutdowns == 0)
        conn_close(c, "both sides closed");
}
