/* SPDX-License-Identifier: MIT */
/* netguard: resolve, vet, connect. A name the policy allowed is resolved once by us; every
 * answer is classified, the whole name is refused if any answer is blocked (a mixed answer is
 * an attack), and only the vetted addresses are dialled, so DNS rebinding between a check and
 * a connect cannot happen. Cached answers are vetted again, against the policy of this
 * connection, exactly like fresh ones. Cloud metadata is refused whatever the policy says. */
#include "airlock/netguard.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "airlock/dial.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/resolve.h"

struct netguard_dial {
    uv_loop_t *loop;
    struct resolver_client *resolver;
    struct authority target;
    struct policy *policy;
    struct policy_peer peer;
    uint64_t log_id;
    uint32_t mark;
    uint64_t started; /* loop time, for the connect-time histogram */
    netguard_cb cb;
    void *data;
    struct resolve_req *resolve_req; /* a lookup in flight */
    struct dial *race;               /* a connection race in flight */
    bool cancelled;
    bool has_expected, expected_seen;
    struct sockaddr_storage expected;
};

/* The one end of a dial: report and free. */
static void finish(struct netguard_dial *d, enum netguard_status status, const char *why, int fd,
                   const struct sockaddr *private_addr)
{
    if (d->cancelled) {
        if (fd >= 0)
            close(fd);
        status = NETGUARD_CANCELLED;
        why = "cancelled";
        fd = -1;
        private_addr = NULL;
    }
    struct netguard_result res = {.status = status,
                                  .why = why,
                                  .fd = fd,
                                  .private_addr = private_addr,
                                  .expected_seen = d->expected_seen};
    d->cb(d->data, &res);
    policy_unref(d->policy);
    free(d);
}

/* Whether the answer sa is the address the client meant (ports aside). */
static bool is_expected(const struct netguard_dial *d, const struct sockaddr *sa)
{
    if (!d->has_expected)
        return false;
    char a[64], b[64];
    addr_format(sa, a, sizeof a);
    addr_format((const struct sockaddr *)&d->expected, b, sizeof b);
    return a[0] && strcmp(a, b) == 0;
}

/* NULL when the address may be dialled, else the reason (static). */
static const char *vet(const struct netguard_dial *d, const struct sockaddr *sa)
{
    enum addr_class cls = addr_classify(sa);
    if (cls == ADDR_METADATA)
        return "cloud metadata address";
    if (cls == ADDR_PUBLIC)
        return NULL;
    /* The same peer as the L4 decision, so that only the endpoints that allowed this
     * connection can open a private address for it. */
    if (policy_ip_allowed(d->policy, d->target.host, d->target.port, &d->peer, sa))
        return NULL;
    return addr_class_name(cls);
}

/* The race is over: result is the winner's socket, or why every attempt failed. */
static void on_raced(int result, void *data)
{
    struct netguard_dial *d = data;
    d->race = NULL;
    if (result < 0) {
        finish(d, NETGUARD_FAILED, uv_strerror(result), -1, NULL);
        return;
    }
    metrics_observe_ms(H_UPSTREAM_CONNECT, uv_now(d->loop) - d->started);
    /* Which of the raced addresses won: later decisions bind to it when it is private. */
    struct sockaddr_storage won;
    socklen_t won_len = sizeof won;
    bool private = getpeername(result, (struct sockaddr *)&won, &won_len) == 0 &&
                   addr_classify((const struct sockaddr *)&won) != ADDR_PUBLIC;
    finish(d, NETGUARD_OK, NULL, result, private ? (const struct sockaddr *)&won : NULL);
}

/* Vet every answer (refuse all if one is blocked), then race the vetted ones. false when the
 * dial finished here. */
static bool vet_and_dial(struct netguard_dial *d, const union resolve_addr *addrs, unsigned n)
{
    struct sockaddr_storage cand[DIAL_MAX_ADDRS];
    size_t k = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct sockaddr *sa = &addrs[i].sa;
        if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
            continue;
        if (is_expected(d, sa))
            d->expected_seen = true;
        const char *why = vet(d, sa);
        if (why) {
            char ip[64];
            addr_format(sa, ip, sizeof ip);
            log_msg(LOG_INFO, "conn %llu: %s resolves to %s (%s): refused",
                    (unsigned long long)d->log_id, d->target.host, ip, why);
            finish(d, NETGUARD_SSRF, why, -1, NULL);
            return false;
        }
        if (k == DIAL_MAX_ADDRS)
            continue;
        struct sockaddr_storage *ss = &cand[k++];
        memset(ss, 0, sizeof *ss);
        if (sa->sa_family == AF_INET) {
            memcpy(ss, &addrs[i].v4, sizeof addrs[i].v4);
            ((struct sockaddr_in *)ss)->sin_port = htons(d->target.port);
        } else {
            memcpy(ss, &addrs[i].v6, sizeof addrs[i].v6);
            ((struct sockaddr_in6 *)ss)->sin6_port = htons(d->target.port);
        }
    }
    if (k == 0) {
        finish(d, NETGUARD_FAILED, "no usable address", -1, NULL);
        return false;
    }
    d->race = dial_start(d->loop, cand, k, d->mark, d->log_id, on_raced, d);
    if (!d->race) {
        finish(d, NETGUARD_FAILED, "out of memory", -1, NULL);
        return false;
    }
    return true;
}

static void on_resolved(struct resolve_req *req, int status, const struct resolve_answer *ans,
                        void *data)
{
    (void)req;
    struct netguard_dial *d = data;
    d->resolve_req = NULL;
    if (d->cancelled)
        finish(d, NETGUARD_CANCELLED, NULL, -1, NULL);
    else if (status < 0)
        finish(d, NETGUARD_FAILED, uv_strerror(status), -1, NULL);
    else
        vet_and_dial(d, ans->addrs, ans->n);
}

/* IP literals, and localhost names, which never go to DNS (RFC 6761 §6.3). */
static void literal_answer(const struct authority *t, struct resolve_answer *ans)
{
    memset(ans, 0, sizeof *ans);
    ans->n = 1;
    if (t->kind == TARGET_IPV6)
        uv_ip6_addr(t->host, 0, &ans->addrs[0].v6);
    else
        uv_ip4_addr(t->kind == TARGET_IPV4 ? t->host : "127.0.0.1", 0, &ans->addrs[0].v4);
}

struct netguard_dial *netguard_dial_start(const struct netguard_request *req, netguard_cb cb,
                                          void *data)
{
    struct netguard_dial *d = calloc(1, sizeof *d);
    if (!d) {
        cb(data,
           &(struct netguard_result){.status = NETGUARD_FAILED, .why = "out of memory", .fd = -1});
        return NULL;
    }
    if (req->expected) {
        d->has_expected = true;
        memcpy(&d->expected, req->expected,
               req->expected->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                    : sizeof(struct sockaddr_in));
    }
    d->loop = req->loop;
    d->resolver = req->resolver;
    d->target = *req->target;
    policy_ref(req->policy);
    d->policy = req->policy;
    d->peer = *req->peer;
    d->log_id = req->log_id;
    d->mark = req->mark;
    d->started = uv_now(d->loop);
    d->cb = cb;
    d->data = data;
    const char *host = d->target.host;
    if (addr_is_metadata_name(host)) {
        finish(d, NETGUARD_SSRF, "cloud metadata name", -1, NULL);
        return NULL;
    }
    struct resolve_answer ans;
    if (d->target.kind != TARGET_DNS || addr_is_localhost_name(host)) {
        literal_answer(&d->target, &ans);
        return vet_and_dial(d, ans.addrs, ans.n) ? d : NULL;
    }
    int r = resolve_start(d->resolver, host, &ans, on_resolved, d, &d->resolve_req);
    if (r == RESOLVE_ANSWERED)
        return vet_and_dial(d, ans.addrs, ans.n) ? d : NULL;
    if (r == RESOLVE_PENDING)
        return d;
    if (r == UV_EAGAIN) {
        log_msg(LOG_WARN, "conn %llu: resolver queue full: %s refused with 503",
                (unsigned long long)d->log_id, host);
        finish(d, NETGUARD_BUSY, "resolver queue full", -1, NULL);
    } else {
        finish(d, NETGUARD_FAILED, uv_strerror(r), -1, NULL);
    }
    return NULL;
}

void netguard_dial_cancel(struct netguard_dial *d)
{
    d->cancelled = true;
    if (d->resolve_req)
        resolve_cancel(d->resolve_req);
    if (d->race)
        dial_cancel(d->race);
}
