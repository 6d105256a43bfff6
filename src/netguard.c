/* SPDX-License-Identifier: MIT */
/* netguard: resolve, vet, connect. A name the policy allowed is resolved once by us; every
 * answer is classified, the whole name is refused if any answer is blocked (a mixed answer is
 * an attack), and only the vetted addresses are dialled, in order, so DNS rebinding between a
 * check and a connect cannot happen. Cloud metadata is refused whatever the policy says. */
#include "airlock/netguard.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "airlock/addr.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/policy.h"
#include "airlock/server.h"

static void dial_done(struct conn *c, int status, const char *why)
{
    free(c->dial_addrs);
    c->dial_addrs = NULL;
    c->ndial = 0;
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
    struct policy_peer peer = {.exe_paths = (const char *const *)c->exe_paths,
                               .binary_identity_off = c->w->server->cfg->binary_identity_off};
    if (policy_ip_allowed(c->policy, c->target.host, c->target.port, &peer, sa))
        return NULL;
    return addr_class_name(cls);
}

static void dial_next(struct conn *c);

/* The dial was abandoned (the connection answered, timed out or closed meanwhile). */
static bool abandoned(const struct conn *c)
{
    return (c->flags & CONN_F_CLOSING) || c->state != CONN_S_DIALING;
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (abandoned(c))
        return;
    if (status < 0) {
        c->dial_error = status;
        char ip[64];
        addr_format((struct sockaddr *)&c->dial_addrs[c->dial_next - 1], ip, sizeof ip);
        log_msg(LOG_INFO, "conn %llu: connect %s port %u: %s", (unsigned long long)c->id, ip,
                (unsigned)c->target.port, uv_strerror(status));
        dial_next(c);
        return;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&c->dial_addrs[c->dial_next - 1];
    if (addr_classify(sa) != ADDR_PUBLIC)
        memcpy(&c->private_addr, sa, sizeof c->private_addr);
    struct side *us = &c->sides[SIDE_UPSTREAM];
    us->flags |= SIDE_F_CONNECTED;
    uv_tcp_nodelay(&us->tcp, 1);
    metrics_observe_ms(H_UPSTREAM_CONNECT, uv_now(&c->w->loop) - c->dial_started);
    dial_done(c, NETGUARD_OK, NULL);
}

static void on_retry_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (!abandoned(c))
        dial_next(c);
    conn_unref(c);
}

static void dial_next(struct conn *c)
{
    struct side *us = &c->sides[SIDE_UPSTREAM];
    if (us->flags & SIDE_F_OPEN) {
        /* A handle whose connect failed cannot connect again: close it, then try the next
         * address with a fresh one. */
        conn_close_upstream(c, on_retry_closed);
        return;
    }
    if (c->dial_next >= c->ndial) {
        dial_done(c, NETGUARD_FAILED,
                  c->dial_error ? uv_strerror(c->dial_error) : "no address to connect to");
        return;
    }
    int r = conn_init_upstream(c);
    if (r < 0) {
        dial_done(c, NETGUARD_FAILED, uv_strerror(r));
        return;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&c->dial_addrs[c->dial_next++];
    c->connect_req.data = c;
    r = uv_tcp_connect(&c->connect_req, &us->tcp, sa, on_connect);
    if (r < 0) {
        c->dial_error = r;
        dial_next(c);
    }
}

/* Vet every candidate; refuse all if one is blocked. */
static void vet_and_dial(struct conn *c)
{
    for (size_t i = 0; i < c->ndial; i++) {
        const char *why = vet(c, (struct sockaddr *)&c->dial_addrs[i]);
        if (why) {
            char ip[64];
            addr_format((struct sockaddr *)&c->dial_addrs[i], ip, sizeof ip);
            log_msg(LOG_INFO, "conn %llu: %s resolves to %s (%s): refused",
                    (unsigned long long)c->id, c->target.host, ip, why);
            dial_done(c, NETGUARD_SSRF, why);
            return;
        }
    }
    c->dial_next = 0;
    dial_next(c);
}

static void add_candidate(struct conn *c, const struct sockaddr *sa, uint16_t port)
{
    if (c->ndial >= NETGUARD_MAX_ADDRS)
        return;
    struct sockaddr_storage *ss = &c->dial_addrs[c->ndial++];
    memset(ss, 0, sizeof *ss);
    if (sa->sa_family == AF_INET) {
        memcpy(ss, sa, sizeof(struct sockaddr_in));
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    } else {
        memcpy(ss, sa, sizeof(struct sockaddr_in6));
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct conn *c = req->data;
    c->gai_active = false;
    if (!abandoned(c)) {
        if (status < 0) {
            dial_done(c, NETGUARD_FAILED, uv_strerror(status));
        } else {
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
                if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
                    add_candidate(c, ai->ai_addr, c->target.port);
            if (c->ndial == 0)
                dial_done(c, NETGUARD_FAILED, "no usable address");
            else
                vet_and_dial(c);
        }
    }
    uv_freeaddrinfo(res);
    conn_unref(c);
}

void netguard_dial(struct conn *c)
{
    const char *host = c->target.host;
    c->ndial = 0;
    c->dial_error = 0;
    memset(&c->private_addr, 0, sizeof c->private_addr);
    free(c->dial_addrs);
    c->dial_addrs = calloc(NETGUARD_MAX_ADDRS, sizeof *c->dial_addrs);
    if (!c->dial_addrs) {
        dial_done(c, NETGUARD_FAILED, "out of memory");
        return;
    }
    c->dial_started = uv_now(&c->w->loop);
    if (addr_is_metadata_name(host)) {
        dial_done(c, NETGUARD_SSRF, "cloud metadata name");
        return;
    }
    if (c->target.kind != TARGET_DNS || addr_is_localhost_name(host)) {
        /* IP literals, and localhost names, which never go to DNS (RFC 6761 §6.3). */
        struct sockaddr_storage ss;
        if (c->target.kind == TARGET_IPV6)
            uv_ip6_addr(host, c->target.port, (struct sockaddr_in6 *)&ss);
        else
            uv_ip4_addr(c->target.kind == TARGET_IPV4 ? host : "127.0.0.1", c->target.port,
                        (struct sockaddr_in *)&ss);
        add_candidate(c, (struct sockaddr *)&ss, c->target.port);
        vet_and_dial(c);
        return;
    }
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    c->gai_req.data = c;
    int r = uv_getaddrinfo(&c->w->loop, &c->gai_req, on_resolved, host, NULL, &hints);
    if (r < 0) {
        dial_done(c, NETGUARD_FAILED, uv_strerror(r));
        return;
    }
    c->gai_active = true;
    conn_ref(c);
}

const struct sockaddr *netguard_private_addr(const struct conn *c)
{
    return c->private_addr.ss_family == AF_UNSPEC ? NULL
                                                  : (const struct sockaddr *)&c->private_addr;
}
