/* SPDX-License-Identifier: MIT */
/* proxy: what the first request of a client connection leads to. CONNECT: every L4 decision
 * (policy, binary identity, SSRF) and, for rest endpoints, the verified upstream TLS handshake
 * happen before the client is answered, so a refusal is a 403 or 502 instead of a 200 followed
 * by a silent close. An absolute-form http:// or https:// request turns the connection into a
 * forward proxy whose requests go through the same relay; an https:// origin's upstream is a
 * verified TLS connection, as a tunnel's is. */
#include "proxy_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airlock/ca.h"
#include "airlock/creds.h"
#include "airlock/h2.h"
#include "airlock/json.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/netguard.h"
#include "airlock/peer.h"
#include "airlock/pipe.h"
#include "airlock/policy.h"
#include "airlock/relay.h"
#include "airlock/server.h"
#include "airlock/target.h"
#include "airlock/tls.h"

static void relay_io_outcome(void *ctx, const struct relay_result *res);

/* The private address the upstream is connected to, or NULL (see proxy_state). */
static const struct sockaddr *upstream_private_addr(const struct conn *c)
{
    const struct proxy_state *ps = c->session_state;
    return ps->private_addr.ss_family == AF_UNSPEC ? NULL
                                                   : (const struct sockaddr *)&ps->private_addr;
}

struct relay *proxy_relay(const struct conn *c)
{
    return ((struct proxy_state *)c->session_state)->relay;
}

/* ---- the handlers this controller installs, one per phase -------------------------------- */

static size_t relay_on_data(struct conn *c, enum side_id id, const char *p, size_t len)
{
    return relay_feed(proxy_relay(c), id, p, len);
}

static void relay_on_eof(struct conn *c, enum side_id id)
{
    relay_eof(proxy_relay(c), id);
}

static void relay_on_resume(struct conn *c, enum side_id id)
{
    relay_resume(proxy_relay(c), id);
}

/* The first request on the plain client connection, then HTTP exchanges inside the tunnel (or
 * the forward proxy's): the relay reads them all. */
const struct conn_handler proxy_http_exchanges = {
    .on_data = relay_on_data,
    .on_eof = relay_on_eof,
    .on_resume = relay_on_resume,
};

void proxy_enter(struct conn *c, enum conn_state state, const struct conn_handler *h)
{
    conn_set_state(c, state);
    conn_set_handler(c, h);
}

/* ---- the relay's side of the connection (relay_io) ---------------------------------------- */

static int relay_io_write(void *ctx, enum side_id to, const struct http_span *spans,
                          unsigned nspans)
{
    uv_buf_t bufs[4];
    if (nspans > sizeof bufs / sizeof bufs[0])
        return -1;
    for (unsigned i = 0; i < nspans; i++)
        bufs[i] = uv_buf_init((char *)spans[i].p, (unsigned)spans[i].len);
    return conn_writev(ctx, to, bufs, nspans);
}

static void relay_io_log(void *ctx, struct log_event *ev)
{
    conn_log(ctx, ev);
}

void proxy_io_judge(void *ctx, const struct authority *target, const struct policy_request *q,
                    struct policy_l7 *d)
{
    struct conn *c = ctx;
    struct policy *pol = server_policy(c->w->server);
    struct policy_peer peer;
    conn_policy_peer(c, &peer);
    policy_check_l7(pol, target->host, target->port, &peer, upstream_private_addr(c), q, d);
    conn_adopt_policy(c, pol, d->policy_name); /* keeps d's borrowed strings alive */
}

struct creds *proxy_io_creds(void *ctx)
{
    struct conn *c = ctx;
    return server_creds(c->w->server);
}

static void relay_io_progress(void *ctx, enum relay_progress p)
{
    struct conn *c = ctx;
    struct proxy_state *ps = c->session_state;
    const struct server_config *cfg = c->w->server->cfg;
    switch (p) {
    case RELAY_HEAD_STARTED:
        conn_head_started(c);
        break;
    case RELAY_REQUEST_SENT:
        conn_set_timeout(c, cfg->response_timeout_ms, 504, "no response from upstream in time");
        ps->request_sent_at = uv_now(&c->w->loop);
        break;
    case RELAY_RESPONSE_STARTED:
        metrics_observe_ms(H_TIME_TO_FIRST_BYTE, uv_now(&c->w->loop) - ps->request_sent_at);
        c->flags |= CONN_F_RESPONSE_STARTED;
        break;
    }
}

static const struct relay_io relay_io = {
    .write = relay_io_write,
    .log = relay_io_log,
    .judge = proxy_io_judge,
    .creds = proxy_io_creds,
    .progress = relay_io_progress,
    .outcome = relay_io_outcome,
};

/* ---- the session ------------------------------------------------------------------------- */

static int session_start(struct conn *c)
{
    struct proxy_state *ps = calloc(1, sizeof *ps);
    if (!ps)
        return -1;
    struct relay_setup setup = {
        .id = c->id, .limits = &c->w->server->cfg->http_limits, .draining = &c->w->draining};
    ps->relay = relay_new(&setup, &relay_io, c);
    if (!ps->relay) {
        free(ps);
        return -1;
    }
    c->session_state = ps;
    if (c->flags & CONN_F_TRANSPARENT)
        tunnel_start_transparent(c);
    else
        proxy_enter(c, CONN_S_FIRST, &proxy_http_exchanges);
    return 0;
}

/* The connection is closing: give up the dial and the identification in flight (their
 * callbacks still run, and drop the references they hold). */
static void session_cancel(struct conn *c)
{
    struct proxy_state *ps = c->session_state;
    if (!ps)
        return;
    if (ps->dial)
        netguard_dial_cancel(ps->dial);
    if (ps->peer_work_active)
        uv_cancel((uv_req_t *)&ps->peer_work);
}

static void session_free(struct conn *c)
{
    struct proxy_state *ps = c->session_state;
    if (!ps)
        return;
    relay_free(ps->relay);
    h2_free(ps->h2);
    free(ps->sniff);
    free(ps->owed_rule);
    free(ps);
    c->session_state = NULL;
}

static bool session_idle(struct conn *c)
{
    struct proxy_state *ps = c->session_state;
    if (ps && ps->h2)
        return h2_open_streams(ps->h2) == 0;
    return !ps ||
           ((c->state == CONN_S_FIRST || c->state == CONN_S_HTTP) && relay_idle(proxy_relay(c)));
}

static void session_describe(struct conn *c, struct answer *a)
{
    if (c->session_state)
        relay_describe(proxy_relay(c), a);
}

const struct conn_session proxy_session = {
    .start = session_start,
    .cancel = session_cancel,
    .free = session_free,
    .idle = session_idle,
    .describe = session_describe,
    .recheck = proxy_recheck_policy,
    .take_answer = tunnel_take_answer,
    .drain = proxy_h2_drain,
};

/* ---- the relay's outcomes ---------------------------------------------------------------- */

static void on_upstream_closed_for_redial(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (!(c->flags & CONN_F_CLOSING) && c->state == CONN_S_DIALING)
        proxy_start_dial(c);
    conn_unref(c);
}

/* What the controller does with each outcome: the relay decides, the connection acts. */
static void relay_io_outcome(void *ctx, const struct relay_result *res)
{
    struct conn *c = ctx;
    const struct server_config *cfg = c->w->server->cfg;
    struct side *us = &c->sides[SIDE_UPSTREAM];
    switch (res->outcome) {
    case RELAY_REUSABLE:
        c->flags &= ~CONN_F_RESPONSE_STARTED;
        conn_set_timeout(c, cfg->idle_timeout_ms, 0, "keep-alive idle");
        /* The parsers resume on the next loop turn (the relay is inside one of them now). The
         * upstream stays readable between exchanges so that its close is seen at once. */
        conn_release(c, SIDE_UPSTREAM);
        conn_release(c, SIDE_CLIENT);
        return;
    case RELAY_CONSUMED:
        /* An end that came bare (a FIN without close_notify) reaches the client as bare. */
        if (res->truncated || (res->until_close && (us->flags & SIDE_F_BARE_EOF)))
            c->sides[SIDE_CLIENT].flags |= SIDE_F_BARE_END;
        conn_finish(c, res->reason);
        return;
    case RELAY_UPGRADED:
        pipe_start(c, res->overflow);
        return;
    case RELAY_REFUSED:
        conn_respond(c, &res->answer);
        return;
    case RELAY_ABORTED:
        conn_close(c, res->reason);
        return;
    case RELAY_TUNNEL:
        c->flags |= CONN_F_TUNNEL;
        c->target = res->target;
        proxy_start_dial(c);
        return;
    case RELAY_DIAL:
        c->target = res->target;
        ((struct proxy_state *)c->session_state)->forward_tls = res->tls;
        if (c->flags & CONN_F_FORWARD) {
            /* Another origin on the same proxy connection: a fresh upstream for it. */
            proxy_enter(c, CONN_S_DIALING, &proxy_waiting);
            c->sides[SIDE_CLIENT].flags |= SIDE_F_HELD;
            conn_update_reading(c, SIDE_CLIENT);
            conn_close_upstream(c, on_upstream_closed_for_redial);
            return;
        }
        c->flags |= CONN_F_FORWARD;
        proxy_start_dial(c);
        return;
    }
}

void proxy_log_connect(struct conn *c, enum log_action action, int status, const char *reason)
{
    metrics_inc(action != LOG_ACTION_ALLOW ? M_CONNECT_DENY : M_CONNECT_ALLOW);
    struct log_event ev = {.class_uid = LOG_CLASS_NETWORK,
                           .activity = c->flags & CONN_F_FORWARD ? LOG_ACTIVITY_FORWARD
                                                                 : LOG_ACTIVITY_CONNECT,
                           .action = action,
                           .severity = status >= 400 ? LOG_SEV_MEDIUM : LOG_SEV_INFO,
                           .status = status,
                           .reason = reason,
                           .overflow = -1};
    conn_log(c, &ev);
}

/* ---- dialing ----------------------------------------------------------------------------- */

static void on_dialed(struct conn *c, int status, const char *why);
static void forward_start_tls(struct conn *c);
static void forward_ready(struct conn *c);

/* A redirected connection's original destination is not among airlock's own answers for the
 * name it asked for: the client meant another server than the one it named (or DNS answers
 * differ, as CDNs do). airlock dials its own answers only, so nothing reaches the address the
 * client picked; the finding is logged. */
static void log_destination_mismatch(struct conn *c)
{
    metrics_inc(M_FINDINGS);
    struct log_event ev = {.class_uid = LOG_CLASS_FINDING,
                           .activity = LOG_ACTIVITY_FINDING,
                           .action = LOG_ACTION_ALLOW,
                           .severity = LOG_SEV_LOW,
                           .reason = "original destination is not among airlock's answers for the "
                                     "name: dialled airlock's own",
                           .overflow = -1};
    conn_log(c, &ev);
}

/* netguard's answer: a connected socket becomes the upstream side. */
static void on_netguard(void *data, const struct netguard_result *res)
{
    struct conn *c = data;
    struct proxy_state *ps = c->session_state;
    ps->dial = NULL;
    int status = res->status;
    const char *why = res->why;
    if (status == NETGUARD_CANCELLED || (c->flags & CONN_F_CLOSING) || c->state != CONN_S_DIALING) {
        /* abandoned: the connection answered, timed out or closed meanwhile */
        if (res->fd >= 0)
            close(res->fd);
        conn_unref(c);
        return;
    }
    if (res->private_addr)
        memcpy(&ps->private_addr, res->private_addr,
               res->private_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                        : sizeof(struct sockaddr_in));
    if ((c->flags & CONN_F_TRANSPARENT) && status == NETGUARD_OK && !res->expected_seen)
        log_destination_mismatch(c);
    if (status == NETGUARD_OK) {
        struct side *us = &c->sides[SIDE_UPSTREAM];
        int r = conn_init_upstream(c);
        if (r == 0 && (r = uv_tcp_open(&us->tcp, res->fd)) == 0) {
            us->flags |= SIDE_F_CONNECTED;
            uv_tcp_nodelay(&us->tcp, 1);
        } else {
            close(res->fd); /* the handle did not take it */
            status = NETGUARD_FAILED;
            why = uv_strerror(r);
        }
    }
    on_dialed(c, status, why);
    conn_unref(c);
}

static void on_dialed(struct conn *c, int status, const char *why)
{
    if (status == NETGUARD_SSRF) {
        metrics_inc(M_SSRF_DENIED);
        metrics_inc(M_CONNECT_DENY);
        struct log_event ev = {.class_uid = LOG_CLASS_FINDING,
                               .activity = LOG_ACTIVITY_SSRF,
                               .action = LOG_ACTION_DENY,
                               .severity = LOG_SEV_HIGH,
                               .status = 403,
                               .reason = why,
                               .l7_decision = LOG_DECISION_DENY,
                               .overflow = -1};
        conn_log(c, &ev);
        conn_respond_error(c, 403, "ssrf_denied",
                           "the destination resolves to an address that this policy does not "
                           "allow (private, loopback, link-local or metadata)");
        return;
    }
    if (status == NETGUARD_BUSY) {
        proxy_log_connect(c, LOG_ACTION_DENY, 503, why);
        conn_respond_error(c, 503, "resolver_busy",
                           "too many name lookups are waiting for the resolver; retry later");
        return;
    }
    if (status != NETGUARD_OK) {
        metrics_inc(M_UPSTREAM_CONNECT_FAILURES);
        proxy_log_connect(c, LOG_ACTION_DENY, 502, why);
        conn_respond_error(c, 502, "upstream_connect_failed", "could not connect to the upstream");
        return;
    }
    if (c->flags & CONN_F_TUNNEL) {
        tunnel_dialed(c);
        return;
    }
    /* Forward proxy: an https:// origin is verified first, as a tunnel's upstream is. */
    if (((struct proxy_state *)c->session_state)->forward_tls)
        forward_start_tls(c);
    else
        forward_ready(c);
}

static void dial_checked(struct conn *c)
{
    const struct server_config *cfg = c->w->server->cfg;
    struct policy *pol = server_policy(c->w->server);
    struct policy_peer peer;
    conn_policy_peer(c, &peer);
    struct policy_l4 d;
    policy_check_l4(pol, c->target.host, c->target.port, &peer, &d);
    conn_adopt_policy(c, pol, d.policy_name);
    if (d.verdict != POLICY_ALLOW) {
        /* The endpoint that would allow it: the host is normalised (LDH or an IP literal). */
        struct http_buf rule = {0};
        http_buf_puts(&rule, "{\"host\":");
        json_string_append(&rule, c->target.host);
        http_buf_printf(&rule, ",\"port\":%u}", (unsigned)c->target.port);
        proxy_log_connect(c, LOG_ACTION_DENY, 403, d.reason);
        conn_respond(c,
                     &(struct answer){
                         .status = 403,
                         .error = "policy_denied",
                         .detail = d.reason ? d.reason
                                            : "no endpoint of the policy allows this host and port",
                         .rule_missing = rule.failed ? NULL : rule.data});
        http_buf_free(&rule);
        return;
    }
    c->protocol = d.protocol;
    if (c->protocol == POLICY_TCP) {
        /* Nothing is substituted in bytes we do not inspect: a provider bound to a tcp endpoint
         * would either leak its placeholder or wrongly look protected. */
        struct creds *cr = server_creds(c->w->server);
        bool bound = false;
        for (size_t i = 0; cr && i < creds_count(cr) && !bound; i++)
            bound = creds_binds(creds_at(cr, i), c->target.host, c->target.port);
        if (cr)
            creds_unref(cr);
        if (bound) {
            proxy_log_connect(c, LOG_ACTION_DENY, 403,
                              "a credential provider is bound to a tcp endpoint");
            conn_respond_error(c, 403, "uninspected_credentials",
                               "a credential provider names this endpoint, but its protocol is "
                               "tcp: airlock cannot inject credentials into uninspected bytes");
            return;
        }
    }
    if ((c->flags & CONN_F_FORWARD) && c->protocol == POLICY_TCP) {
        conn_respond_error(c, 403, "policy_denied", "this endpoint is tcp-only: use CONNECT");
        return;
    }
    /* Resolution and the TCP connect share one budget from here (nothing extends it). */
    conn_set_deadline(c, cfg->connect_timeout_ms, 502, "upstream connect timed out");
    struct proxy_state *ps = c->session_state;
    /* Each dial decides afresh which address later decisions are bound to. */
    memset(&ps->private_addr, 0, sizeof ps->private_addr);
    struct netguard_request req = {
        .loop = &c->w->loop,
        .resolver = c->w->resolver,
        .target = &c->target,
        .policy = c->policy,
        .peer = &peer,
        .log_id = c->id,
        .mark = cfg->upstream_mark,
        .expected = c->flags & CONN_F_TRANSPARENT ? (const struct sockaddr *)&c->orig_dst : NULL};
    conn_ref(c); /* until on_netguard */
    ps->dial = netguard_dial_start(&req, on_netguard, c);
}

/* Binary identity reads /proc, which blocks: it runs on libuv's thread pool. */
struct peer_job {
    struct conn *c;
    struct sockaddr_storage peer, local;
    struct peer_info info;
    int result;
};

static void peer_work(uv_work_t *req)
{
    struct peer_job *job = req->data;
    /* Our own process holds thousands of sockets when busy, never the client's. */
    struct peer_limits lim = {.fd_budget = PEER_FD_BUDGET, .skip_pid = getpid()};
    job->result = peer_identify((struct sockaddr *)&job->peer, (struct sockaddr *)&job->local, &lim,
                                &job->info);
}

/* One line naming every process when several share the socket: the log's process field names
 * only the first, and a refusal is about any of them. */
static void log_shared_socket(const struct conn *c, const struct peer_info *info)
{
    char list[1024];
    size_t used = 0;

    list[0] = '\0';
    for (size_t i = 0; i < info->n && used < sizeof(list); i++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s (pid %d)", i ? ", " : "",
                                 info->procs[i].exes[0], (int)info->procs[i].pid);
    log_msg(LOG_INFO, "conn %llu: %zu processes hold the client's socket: %s",
            (unsigned long long)c->id, info->n, list);
}

static void peer_after(uv_work_t *req, int status)
{
    struct peer_job *job = req->data;
    struct conn *c = job->c;
    ((struct proxy_state *)c->session_state)->peer_work_active = false;
    c->peer_known = true;
    if (status == 0 && job->result == 0) {
        c->peer = malloc(sizeof(*c->peer));
        if (c->peer) {
            *c->peer = job->info; /* the paths move with it */
            job->info.n = 0;
            if (c->peer->n > 1)
                log_shared_socket(c, c->peer);
        }
    } else if (status == 0) {
        /* Unknown: endpoints that name binaries refuse this client. */
        log_msg(LOG_WARN, "conn %llu: binary identity: %s (pid %d)", (unsigned long long)c->id,
                peer_strerror(job->result), (int)job->info.blocker);
    }
    peer_info_free(&job->info);
    free(job);
    if (!(c->flags & CONN_F_CLOSING) && c->state == CONN_S_DIALING)
        dial_checked(c);
    conn_unref(c);
}

void proxy_start_dial(struct conn *c)
{
    const struct server_config *cfg = c->w->server->cfg;
    proxy_enter(c, CONN_S_DIALING, &proxy_waiting);
    c->sides[SIDE_CLIENT].flags |= SIDE_F_HELD;
    conn_update_reading(c, SIDE_CLIENT);
    struct policy *pol = server_policy(c->w->server);
    bool need_peer = !c->peer_known && !cfg->binary_identity_off && policy_uses_binaries(pol);
    policy_unref(pol);
    if (!need_peer) {
        dial_checked(c);
        return;
    }
    struct peer_job *job = calloc(1, sizeof *job);
    if (!job) {
        conn_respond_error(c, 502, "internal_error", "out of memory");
        return;
    }
    job->c = c;
    job->peer = c->peer_addr;
    job->local = c->local_addr;
    struct proxy_state *ps = c->session_state;
    ps->peer_work.data = job;
    if (uv_queue_work(&c->w->loop, &ps->peer_work, peer_work, peer_after) < 0) {
        free(job);
        c->peer_known = true;
        dial_checked(c);
        return;
    }
    ps->peer_work_active = true;
    conn_ref(c);
}

/* ---- the forward proxy's https:// origins ------------------------------------------------- */

/* The upstream is ready (connected, and verified when the origin is https://): the held
 * request goes out now. */
static void forward_ready(struct conn *c)
{
    proxy_log_connect(c, LOG_ACTION_ALLOW, 0, NULL);
    proxy_enter(c, CONN_S_HTTP, &proxy_http_exchanges);
    conn_update_reading(c, SIDE_UPSTREAM);
    relay_dialed(proxy_relay(c));
    if (!(c->flags & CONN_F_CLOSING) && c->state == CONN_S_HTTP)
        conn_release(c, SIDE_CLIENT);
}

/* The client's hop stays clear text: only the upstream has a TLS layer to be ready. */
static void forward_on_tls_ready(struct conn *c, enum side_id id)
{
    (void)id;
    forward_ready(c);
}

/* An upstream that closes in the middle of its handshake is a failed handshake: the client,
 * still waiting for its first answer on this origin, hears 502 (never a silent close). */
static void forward_on_handshake_eof(struct conn *c, enum side_id id)
{
    if (id == SIDE_CLIENT) {
        conn_close(c, "client closed");
        return;
    }
    metrics_inc(M_TLS_FAILURES_UPSTREAM);
    proxy_log_connect(c, LOG_ACTION_DENY, 502, "upstream closed during the TLS handshake");
    conn_respond_error(c, 502, "upstream_tls_failed",
                       "the upstream closed the connection during the TLS handshake");
}

/* The upstream TLS handshake of an https:// origin: the client's bytes wait. A certificate
 * that does not verify gets 502 upstream_tls_failed from conn's handshake path. */
static const struct conn_handler forward_handshake = {
    .on_eof = forward_on_handshake_eof,
    .on_tls_ready = forward_on_tls_ready,
};

/* Start the verified TLS handshake to an https:// origin: the same context, name check and
 * deadline as a tunnel's upstream, since the same credentials may go on it. */
static void forward_start_tls(struct conn *c)
{
    proxy_start_upstream_tls(c, &forward_handshake);
}

/* ---- reload ------------------------------------------------------------------------------- */

void proxy_recheck_policy(struct conn *c, struct policy *p)
{
    if (c->state != CONN_S_PIPE || (c->flags & CONN_F_CLOSING))
        return;
    struct policy_peer peer;
    conn_policy_peer(c, &peer);
    struct policy_l4 d;
    policy_check_l4(p, c->target.host, c->target.port, &peer, &d);
    /* The SSRF guard's question again, on the new snapshot: an address that only allowed_ips
     * opened stays reachable only while they still do. */
    const struct sockaddr *private_addr = upstream_private_addr(c);
    const char *why = NULL;
    if (d.verdict != POLICY_ALLOW)
        why = "policy reload: endpoint no longer allowed";
    else if (d.protocol != c->protocol)
        /* a tcp pipe carries bytes no rule has seen; an upgraded one was judged as HTTP */
        why = "policy reload: the endpoint's protocol changed";
    else if (private_addr &&
             !policy_ip_allowed(p, c->target.host, c->target.port, &peer, private_addr))
        why = "policy reload: allowed_ips no longer cover the upstream address";
    if (!why)
        return;
    struct log_event ev = {.class_uid = LOG_CLASS_NETWORK,
                           .activity = LOG_ACTIVITY_CLOSE,
                           .action = LOG_ACTION_DENY,
                           .severity = LOG_SEV_MEDIUM,
                           .relay_outcome = LOG_OUTCOME_UPGRADED,
                           .reason = why,
                           .overflow = -1};
    conn_log(c, &ev);
    conn_close(c, why);
}
