/* SPDX-License-Identifier: MIT */
/* netguard: resolve, vet, connect. A name the policy allowed is resolved once by us; every
 * answer is classified, the whole name is refused if any answer is blocked (a mixed answer is
 * an attack), and only the vetted addresses are dialled, so DNS rebinding between a check and
 * a connect cannot happen. Cached answers are vetted again, against the policy of this
 * connection, exactly like fresh ones. Cloud metadata is refused whatever the policy says. */
#include "airlock/netguard.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "airlock/dial.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/policy.h"
#include "airlock/resolve.h"
#include "airlock/server.h"

static void dial_done(struct conn *c, int status, const char *why)
{
    void (*cb)(struct conn *, int, const char *) = c->on_dialed;
    c->on_dialed = NULL;
    if (cb)
        cb(c, status, why);
}

/* NULL when the address may be dialled, else the reason (static). */
static const char *vet(struct conn *c, const struct sockaddr *sa)
{
    enum addr_class cls = addr_classify(sa);
    if (cls == ADDR_METADATA)
        return "cloud metadata address";
    if (cls == ADDR_PUBLIC)
        return NULL;
    /* The same peer as the L4 decision, so that only the endpoints that allowed this
     * connection can open a private address for it. */
    struct policy_peer peer;
    conn_policy_peer(c, &peer);
    if (policy_ip_allowed(c->policy, c->target.host, c->target.port, &peer, sa))
        return NULL;
    return addr_class_name(cls);
}

/* The dial was abandoned (the connection answered, timed out or closed meanwhile). */
static bool abandoned(const struct conn *c)
{
    return (c->flags & CONN_F_CLOSING) || c->state != CONN_S_DIALING;
}

/* The race is over: result is the winner's socket, or why every attempt failed. */
static void on_raced(int result, void *data)
{
    struct conn *c = data;
    c->dial = NULL;
    if (abandoned(c)) {
        if (result >= 0)
            close(result);
        conn_unref(c);
        return;
    }
    if (result < 0) {
        dial_done(c, NETGUARD_FAILED, uv_strerror(result));
        conn_unref(c);
        return;
    }
    /* Which of the raced addresses won: later decisions bind to it when it is private. */
    struct sockaddr_storage won;
    socklen_t won_len = sizeof won;
    if (getpeername(result, (struct sockaddr *)&won, &won_len) == 0 &&
        addr_classify((const struct sockaddr *)&won) != ADDR_PUBLIC)
        memcpy(&c->private_addr, &won, sizeof c->private_addr);
    struct side *us = &c->sides[SIDE_UPSTREAM];
    int r = conn_init_upstream(c);
    if (r == 0 && (r = uv_tcp_open(&us->tcp, result)) == 0) {
        us->flags |= SIDE_F_CONNECTED;
        uv_tcp_nodelay(&us->tcp, 1);
        metrics_observe_ms(H_UPSTREAM_CONNECT, uv_now(&c->w->loop) - c->dial_started);
        dial_done(c, NETGUARD_OK, NULL);
    } else {
        close(result); /* the handle did not take it */
        dial_done(c, NETGUARD_FAILED, uv_strerror(r));
    }
    conn_unref(c);
}

/* Vet every answer (refuse all if one is blocked), then race the vetted ones. */
static void vet_and_dial(struct conn *c, const union resolve_addr *addrs, unsigned n)
{
    struct sockaddr_storage cand[DIAL_MAX_ADDRS];
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct sockaddr *sa = &addrs[i].sa;
        if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
            continue;
        const char *why = vet(c, sa);
        if (why) {
            char ip[64];
            addr_format(sa, ip, sizeof ip);
            log_msg(LOG_INFO, "conn %llu: %s resolves to %s (%s): refused",
                    (unsigned long long)c->id, c->target.host, ip, why);
            dial_done(c, NETGUARD_SSRF, why);
            return;
        }
        if (k == DIAL_MAX_ADDRS)
            continue;
        struct sockaddr_storage *ss = &cand[k++];
        memset(ss, 0, sizeof *ss);
        if (sa->sa_family == AF_INET) {
            memcpy(ss, &addrs[i].v4, sizeof addrs[i].v4);
            ((struct sockaddr_in *)ss)->sin_port = htons(c->target.port);
        } else {
            memcpy(ss, &addrs[i].v6, sizeof addrs[i].v6);
            ((struct sockaddr_in6 *)ss)->sin6_port = htons(c->target.port);
        }
    }
    if (k == 0) {
        dial_done(c, NETGUARD_FAILED, "no usable address");
        return;
    }
    c->dial = dial_start(&c->w->loop, cand, k, c->id, on_raced, c);
    if (!c->dial) {
        dial_done(c, NETGUARD_FAILED, "out of memory");
        return;
    }
    conn_ref(c);
}

static void on_resolved(struct resolve_req *req, int status, const struct resolve_answer *ans,
                        void *data)
{
    struct conn *c = data;
    c->resolve_req = NULL;
    if (!abandoned(c)) {
        if (status < 0)
            dial_done(c, NETGUARD_FAILED, uv_strerror(status));
        else
            vet_and_dial(c, ans->addrs, ans->n);
    }
    conn_unref(c);
}

/* IP literals, and localhost names, which never go to DNS (RFC 6761 §6.3). */
static void literal_answer(const struct conn *c, struct resolve_answer *ans)
{
    memset(ans, 0, sizeof *ans);
    ans->n = 1;
    if (c->target.kind == TARGET_IPV6)
        uv_ip6_addr(c->target.host, 0, &ans->addrs[0].v6);
    else
        uv_ip4_addr(c->target.kind == TARGET_IPV4 ? c->target.host : "127.0.0.1", 0,
                    &ans->addrs[0].v4);
}

void netguard_dial(struct conn *c)
{
    const char *host = c->target.host;
    /* Each dial decides afresh which address later decisions are bound to. */
    memset(&c->private_addr, 0, sizeof c->private_addr);
    c->dial_started = uv_now(&c->w->loop);
    if (addr_is_metadata_name(host)) {
        dial_done(c, NETGUARD_SSRF, "cloud metadata name");
        return;
    }
    struct resolve_answer ans;
    if (c->target.kind != TARGET_DNS || addr_is_localhost_name(host)) {
        literal_answer(c, &ans);
        vet_and_dial(c, ans.addrs, ans.n);
        return;
    }
    int r = resolve_start(c->w->resolver, host, &ans, on_resolved, c, &c->resolve_req);
    if (r == RESOLVE_ANSWERED) {
        vet_and_dial(c, ans.addrs, ans.n);
    } else if (r == RESOLVE_PENDING) {
        conn_ref(c);
    } else if (r == UV_EAGAIN) {
        log_msg(LOG_WARN, "conn %llu: resolver queue full: %s refused with 503",
                (unsigned long long)c->id, host);
        dial_done(c, NETGUARD_BUSY, "resolver queue full");
    } else {
        dial_done(c, NETGUARD_FAILED, uv_strerror(r));
    }
}

void netguard_cancel(struct conn *c)
{
    if (c->resolve_req)
        resolve_cancel(c->resolve_req);
    if (c->dial)
        dial_cancel(c->dial);
}

const struct sockaddr *netguard_private_addr(const struct conn *c)
{
    return c->private_addr.ss_family == AF_UNSPEC ? NULL
                                                  : (const struct sockaddr *)&c->private_addr;
}
