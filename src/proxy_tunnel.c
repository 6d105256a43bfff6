/* SPDX-License-Identifier: MIT */
/* proxy_tunnel: what a CONNECT tunnel, or a connection the kernel redirected to airlock
 * (transparent mode), becomes. The client's first bytes tell TLS from plain HTTP (sniff.h): a
 * CONNECT is answered 200 after the L4 decision and the upstream TCP connect, then its first
 * bytes decide; a redirected connection is read first, since its host is in those bytes (the
 * ClientHello's SNI, or the Host field). TLS: the verified upstream handshake, then the client's
 * with a leaf for the host, then the relay; a failure of the upstream's handshake after the 200
 * is answered inside the client's completed handshake (502, JSON), never by a silent close.
 * Plain HTTP: the relay, with no credential on the plain hop. Neither: a tcp endpoint's pipe
 * (redirected connections), or a close with a log line. */
#include <stdlib.h>
#include <string.h>

#include "airlock/addr.h"
#include "airlock/ca.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/netguard.h"
#include "airlock/pipe.h"
#include "airlock/relay.h"
#include "airlock/server.h"
#include "airlock/tls.h"
#include "proxy_internal.h"

static void on_tls_ready(struct conn *c, enum side_id id);
static void on_tls_failed(struct conn *c, enum side_id id, const char *why);
static bool on_waiting_timeout(struct conn *c);
static void on_waiting_eof(struct conn *c, enum side_id id);
static void on_waiting_resume(struct conn *c, enum side_id id);

/* Dialling, and the TLS handshakes: the client's bytes wait, a close ends it all. */
const struct conn_handler proxy_waiting = {
    .on_eof = on_waiting_eof,
    .on_resume = on_waiting_resume,
    .on_tls_ready = on_tls_ready,
    .on_tls_failed = on_tls_failed,
    .on_timeout = on_waiting_timeout,
};

static struct proxy_state *state_of(const struct conn *c)
{
    return c->session_state;
}

/* ---- plain HTTP ---------------------------------------------------------------------------- */

static void relay_plain(struct conn *c)
{
    const struct server_config *cfg = c->w->server->cfg;
    proxy_enter(c, CONN_S_HTTP, &proxy_http_exchanges);
    relay_begin_plain_tunnel(proxy_relay(c), &c->target);
    conn_set_timeout(c, cfg->idle_timeout_ms, 0, "keep-alive idle");
    conn_update_reading(c, SIDE_UPSTREAM);
    conn_release(c, SIDE_CLIENT);
}

/* ---- TLS ----------------------------------------------------------------------------------- */

/* "Connecting" to an upstream ends with its verified TLS handshake, so one timeout
 * (--connect-timeout) bounds both. A deadline: an upstream that dribbles its hello byte by byte
 * must not hold the client for longer. */
void proxy_start_upstream_tls(struct conn *c, const struct conn_handler *h)
{
    const struct server_config *cfg = c->w->server->cfg;
    struct side *us = &c->sides[SIDE_UPSTREAM];
    us->tls = tls_client_new(c->w->server->upstream_ctx, c->target.host, c->target.port);
    /* h2 upstream only for a client that offered it: ALPN never translates. */
    if (us->tls && state_of(c)->client_offers_h2 && tls_offer_h2(us->tls) < 0) {
        tls_free(us->tls);
        us->tls = NULL;
    }
    if (!us->tls) {
        conn_close(c, "out of memory");
        return;
    }
    proxy_enter(c, CONN_S_UPSTREAM_TLS, h);
    conn_set_deadline(c, cfg->connect_timeout_ms, 502, "upstream TLS handshake timed out");
    conn_update_reading(c, SIDE_UPSTREAM);
    tls_handshake(us->tls); /* queues the ClientHello */
    conn_flush_tls(c, SIDE_UPSTREAM);
}

/* The client's handshake, with a leaf for the host it asked for; its ClientHello waits in the
 * stash. */
static void start_client_tls(struct conn *c)
{
    const struct server_config *cfg = c->w->server->cfg;
    struct server *s = c->w->server;
    X509 *leaf = ca_leaf(s->ca, c->target.host);
    struct side *cs = &c->sides[SIDE_CLIENT];
    if (leaf)
        cs->tls =
            tls_server_new(s->client_ctx, leaf, ca_leaf_key(s->ca), ca_cert(s->ca), c->target.host);
    X509_free(leaf);
    /* The client is offered what the upstream selected: h2 only when it did. */
    struct tls *up = c->sides[SIDE_UPSTREAM].tls;
    if (cs->tls && up && strcmp(tls_alpn(up), "h2") == 0)
        tls_offer_h2(cs->tls);
    if (!cs->tls) {
        conn_close(c, "could not mint a certificate");
        return;
    }
    proxy_enter(c, CONN_S_CLIENT_TLS, &proxy_waiting);
    /* A deadline from the start: a client that sends its ClientHello a byte at a time must not
     * hold a verified upstream connection open for longer. */
    conn_set_deadline(c, cfg->handshake_timeout_ms, 0, "client TLS handshake timed out");
    if (conn_stash_to_tls(c, SIDE_CLIENT) < 0)
        return;
    conn_release(c, SIDE_CLIENT);
    /* Until the client speaks, the upstream only needs watching for its close. */
    if (c->sides[SIDE_UPSTREAM].flags & SIDE_F_OPEN)
        conn_update_reading(c, SIDE_UPSTREAM);
}

static void on_upstream_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

/* The upstream's TLS failed after the client was told 200 (or, redirected, was told nothing):
 * the client still completes its handshake with us and reads a 502 it can act on. */
static void upstream_tls_failed(struct conn *c, const char *why)
{
    struct proxy_state *ps = state_of(c);
    struct log_event ev = {.class_uid = LOG_CLASS_FINDING,
                           .activity = LOG_ACTIVITY_TLS,
                           .action = LOG_ACTION_DENY,
                           .severity = LOG_SEV_MEDIUM,
                           .status = 502,
                           .reason = why,
                           .overflow = -1};
    metrics_inc(M_FINDINGS);
    conn_log(c, &ev);
    ps->owed = (struct answer){.status = 502,
                               .error = "upstream_tls_failed",
                               .detail = "the upstream's TLS certificate or handshake was refused"};
    conn_close_upstream(c, on_upstream_closed);
    start_client_tls(c);
}

/* A refusal (policy, SSRF guard, connect failure or timeout) for a client that speaks no plain
 * HTTP, as only a redirected one is before its dial. Bytes of HTTP would be garbage to it: a
 * client whose ClientHello waits completes its handshake first and reads the answer inside; one
 * that spoke neither TLS nor HTTP gets a close (the refusal is logged already). The handshake
 * starts when the client side is resumed (on_waiting_resume): a refusal can come while the
 * last bytes of the ClientHello are still being read, before they are stashed. */
bool tunnel_take_answer(struct conn *c, const struct answer *a)
{
    struct proxy_state *ps = state_of(c);
    if (ps && ps->sniffed == SNIFF_OTHER && (c->flags & CONN_F_TRANSPARENT)) {
        conn_close(c, a->detail);
        return true;
    }
    if (!ps || ps->sniffed != SNIFF_TLS || c->sides[SIDE_CLIENT].tls)
        return false;
    if (ps->owed.status)
        return true; /* one answer per connection: the first is owed already */
    ps->owed = *a;
    if (a->rule_missing) {
        if (!(ps->owed_rule = strdup(a->rule_missing))) {
            conn_close(c, "out of memory");
            return true;
        }
        ps->owed.rule_missing = ps->owed_rule;
    }
    if (ps->dial) {
        netguard_dial_cancel(ps->dial); /* its callback finds the connection moved on */
        ps->dial = NULL;
    }
    conn_close_upstream(c, on_upstream_closed);
    proxy_enter(c, CONN_S_CLIENT_TLS, &proxy_waiting);
    conn_release(c, SIDE_CLIENT);
    return true;
}

static void on_waiting_resume(struct conn *c, enum side_id id)
{
    if (id == SIDE_CLIENT && state_of(c)->owed.status && !c->sides[SIDE_CLIENT].tls)
        start_client_tls(c);
}

static void on_tls_ready(struct conn *c, enum side_id id)
{
    const struct server_config *cfg = c->w->server->cfg;
    if (id == SIDE_UPSTREAM) {
        start_client_tls(c);
        return;
    }
    struct proxy_state *ps = state_of(c);
    if (ps->owed.status) {
        if (strcmp(tls_alpn(c->sides[SIDE_CLIENT].tls), "h2") == 0)
            conn_close(c, ps->owed.detail); /* no HTTP/1.1 answer to an HTTP/2 client */
        else
            conn_respond(c, &ps->owed);
        return;
    }
    /* The client trusts us: parse its requests, in the protocol both sides selected. */
    struct tls *up = c->sides[SIDE_UPSTREAM].tls;
    bool client_h2 = strcmp(tls_alpn(c->sides[SIDE_CLIENT].tls), "h2") == 0;
    if (client_h2 != (up && strcmp(tls_alpn(up), "h2") == 0)) {
        log_msg(LOG_WARN, "conn %llu: ALPN differs between the client and the upstream: closed",
                (unsigned long long)c->id);
        conn_close(c, "ALPN mismatch");
        return;
    }
    if (client_h2) {
        proxy_h2_start(c);
        return;
    }
    proxy_enter(c, CONN_S_HTTP, &proxy_http_exchanges);
    relay_begin_tunnel(proxy_relay(c), &c->target);
    conn_set_timeout(c, cfg->idle_timeout_ms, 0, "keep-alive idle");
}

static void on_tls_failed(struct conn *c, enum side_id id, const char *why)
{
    if (id == SIDE_UPSTREAM)
        upstream_tls_failed(c, why);
    else
        conn_close(c, "client tls handshake failed");
}

static bool on_waiting_timeout(struct conn *c)
{
    if (c->state != CONN_S_UPSTREAM_TLS)
        return false;
    upstream_tls_failed(c, "upstream TLS handshake timed out");
    return true;
}

static void on_waiting_eof(struct conn *c, enum side_id id)
{
    struct proxy_state *ps = state_of(c);
    if (id == SIDE_UPSTREAM && c->state == CONN_S_UPSTREAM_TLS) {
        upstream_tls_failed(c, "the upstream closed during its TLS handshake");
    } else if (id == SIDE_UPSTREAM && c->state == CONN_S_CLIENT_TLS && !ps->owed.status) {
        /* Gone while the client's handshake runs: it still completes, and the client reads
         * why its tunnel has nowhere to go instead of a bare close. */
        ps->owed = (struct answer){.status = 502,
                                   .error = "upstream_closed",
                                   .detail = "the upstream closed before the first request"};
        conn_close_upstream(c, on_upstream_closed);
    } else {
        conn_close(c, id == SIDE_CLIENT ? "client closed" : "upstream closed");
    }
}

/* ---- sniffing ------------------------------------------------------------------------------ */

static void sniffed(struct conn *c, enum sniff_kind kind, const struct sniff_result *res);

/* The client's first bytes, collected until sniff_classify knows what they are. The bytes that
 * decide it are left to the connection (returned unconsumed) behind the earlier ones, which go
 * back (conn_unread): the consumer that follows reads them all, in order. */
static size_t sniff_on_data(struct conn *c, enum side_id id, const char *p, size_t len)
{
    struct proxy_state *ps = state_of(c);
    if (id == SIDE_UPSTREAM)
        return 0; /* an upstream that speaks first waits for the relay */
    if (!ps->sniff && !(ps->sniff = malloc(SNIFF_MAX))) {
        conn_close(c, "out of memory");
        return len;
    }
    size_t before = ps->sniff_len;
    if (before == 0 && (c->flags & CONN_F_TRANSPARENT))
        /* Silence waited for the idle timeout (a server may speak first); from the first byte,
         * what names the host must come whole in time, as after a CONNECT (start_sniff): one
         * byte now and then must not hold the connection. */
        conn_set_deadline(c, c->w->server->cfg->handshake_timeout_ms, 0,
                          "the client's first bytes did not come in time");
    size_t take = len < SNIFF_MAX - before ? len : SNIFF_MAX - before;
    memcpy(ps->sniff + before, p, take);
    ps->sniff_len += take;
    struct sniff_result res;
    enum sniff_kind kind = sniff_classify(ps->sniff, ps->sniff_len, &res);
    if (kind == SNIFF_NEED_MORE)
        return take;
    int rc = conn_unread(c, SIDE_CLIENT, (const char *)ps->sniff, before);
    free(ps->sniff);
    ps->sniff = NULL;
    ps->sniff_len = 0;
    if (rc == 0)
        sniffed(c, kind, &res);
    return 0;
}

/* Silence: a protocol whose server speaks first. A redirected connection is then judged by its
 * original destination alone (a tcp endpoint); a CONNECT tunnel to a rest endpoint closes. */
static bool sniff_on_timeout(struct conn *c)
{
    struct proxy_state *ps = state_of(c);
    if (!(c->flags & CONN_F_TRANSPARENT) || ps->sniff_len > 0)
        return false;
    struct sniff_result res = {.kind = SNIFF_OTHER, .reason = "the client sent nothing"};
    c->sides[SIDE_CLIENT].flags |= SIDE_F_HELD;
    sniffed(c, SNIFF_OTHER, &res);
    return true;
}

static const struct conn_handler sniffing = {
    .on_data = sniff_on_data,
    .on_timeout = sniff_on_timeout,
};

static void start_sniff(struct conn *c)
{
    const struct server_config *cfg = c->w->server->cfg;
    proxy_enter(c, CONN_S_SNIFF, &sniffing);
    conn_set_deadline(c, cfg->handshake_timeout_ms, 0,
                      "the client's first bytes did not come in time");
    conn_release(c, SIDE_CLIENT);
}

/* Neither TLS nor HTTP where one was needed, or a malformed start: a close with a log line (an
 * HTTP client gets its status first). */
static void refuse_sniffed(struct conn *c, const struct sniff_result *res)
{
    log_msg(LOG_INFO, "conn %llu: %s (%s): closed", (unsigned long long)c->id,
            res->kind == SNIFF_OTHER ? "the client spoke neither TLS nor HTTP" : "malformed start",
            res->reason && res->reason[0] ? res->reason : sniff_kind_name(res->kind));
    if (res->kind == SNIFF_INVALID && res->http_status)
        conn_respond_error(c, res->http_status,
                           res->http_status == 431 ? "header_too_large" : "bad_request",
                           res->reason);
    else
        conn_close(c, "neither TLS nor HTTP");
}

/* What the client spoke decides the rest. */
static void continue_sniffed(struct conn *c)
{
    struct proxy_state *ps = state_of(c);
    if (ps->sniffed == SNIFF_TLS) {
        proxy_start_upstream_tls(c, &proxy_waiting);
    } else if (ps->sniffed == SNIFF_HTTP) {
        relay_plain(c);
    } else {
        log_msg(LOG_INFO, "conn %llu: neither TLS nor HTTP to a rest endpoint: closed",
                (unsigned long long)c->id);
        conn_close(c, "neither TLS nor HTTP to a rest endpoint");
    }
}

/* ---- transparent mode ---------------------------------------------------------------------- */

/* Whether addr is one of airlock's own listeners (a client dialled the transparent port
 * itself, or a rule redirected airlock's traffic back to it: either way, a loop). */
static bool is_own_listener(const struct worker *w, const struct sockaddr_storage *addr)
{
    char ip[64], lip[64];
    addr_format((const struct sockaddr *)addr, ip, sizeof ip);
    uint16_t port = addr_port((const struct sockaddr *)addr);
    for (size_t i = 0; i < w->nlisteners; i++) {
        const struct sockaddr *la = (const struct sockaddr *)&w->listeners[i].addr;
        addr_format(la, lip, sizeof lip);
        bool any = !strcmp(lip, "0.0.0.0") || !strcmp(lip, "::");
        if (addr_port(la) == port && (any || !strcmp(ip, lip)))
            return true;
    }
    return false;
}

/* The host a redirected connection is judged by: the one it named, else its original
 * destination's address; the port is always the original destination's. */
static int transparent_target(struct conn *c, const struct sniff_result *res)
{
    char ip[64];
    uint16_t port = addr_port((const struct sockaddr *)&c->orig_dst);
    addr_format((const struct sockaddr *)&c->orig_dst, ip, sizeof ip);
    struct authority a;
    if ((res->kind == SNIFF_TLS || res->kind == SNIFF_HTTP) && res->authority.host[0])
        a = res->authority;
    else if (target_parse_authority(ip, strlen(ip), false, port, &a) < 0 &&
             !(strchr(ip, ':') &&
               target_normalise_host(ip, strlen(ip), false, a.host, &a.kind) == 0))
        return -1;
    a.port = port;
    a.port_present = res->kind == SNIFF_HTTP && res->authority.port_present;
    c->target = a;
    return 0;
}

void tunnel_start_transparent(struct conn *c)
{
    c->flags |= CONN_F_TUNNEL;
    if (c->orig_dst.ss_family == AF_UNSPEC || is_own_listener(c->w, &c->orig_dst)) {
        log_msg(LOG_WARN,
                "conn %llu: a connection to the transparent port that was not "
                "redirected to it (or a loop): closed",
                (unsigned long long)c->id);
        conn_close(c, "not a redirected connection");
        return;
    }
    proxy_enter(c, CONN_S_SNIFF, &sniffing);
}

/* ---- the decision ------------------------------------------------------------------------- */

static void sniffed(struct conn *c, enum sniff_kind kind, const struct sniff_result *res)
{
    struct proxy_state *ps = state_of(c);
    ps->sniffed = kind;
    ps->client_offers_h2 = kind == SNIFF_TLS && res->alpn.h2;
    if (kind == SNIFF_INVALID) {
        refuse_sniffed(c, res);
        return;
    }
    if (!(c->flags & CONN_F_TRANSPARENT)) {
        /* a CONNECT tunnel to a rest endpoint, already answered 200 */
        if (kind == SNIFF_OTHER)
            refuse_sniffed(c, res);
        else
            continue_sniffed(c);
        return;
    }
    if (transparent_target(c, res) < 0) {
        conn_close(c, "original destination unknown");
        return;
    }
    proxy_start_dial(c);
}

void tunnel_dialed(struct conn *c)
{
    bool transparent = c->flags & CONN_F_TRANSPARENT;
    if (!transparent) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        proxy_log_connect(c, LOG_ACTION_ALLOW, 200, NULL);
        if (conn_write(c, SIDE_CLIENT, ok, sizeof ok - 1) < 0)
            return;
    } else {
        proxy_log_connect(c, LOG_ACTION_ALLOW, 0, "redirected connection");
    }
    if (c->protocol == POLICY_TCP) {
        /* no TLS termination, no parsing; bytes go through untouched */
        pipe_start(c, 0);
        return;
    }
    if (!transparent) {
        start_sniff(c);
        return;
    }
    continue_sniffed(c);
}
