/* SPDX-License-Identifier: MIT */
/* policy_decide: the decisions taken from a loaded snapshot: L4 (may this client reach
 * host:port, and which endpoints allowed it), L7 (may this method and canonical path go there,
 * and if not, which rule is missing or which deny rule refused), and whether an address a name
 * resolved to is covered by allowed_ips. Reads the snapshot, never writes it: any thread may
 * decide at any time. Invariant: when several endpoints match, the answer is the one an
 * operator reads from the file: allow by any, deny names the earliest. */
#include "airlock/policy.h"

#include <stdio.h>
#include <string.h>

#include "airlock/json.h"
#include "airlock/path.h"
#include "airlock/target.h"
#include "policy_internal.h"

/* ---- decisions ---- */

static bool port_matches(const struct endpoint *e, uint16_t port)
{
    for (size_t i = 0; i < e->nports; i++) {
        if (port >= e->ports[i].lo && port <= e->ports[i].hi)
            return true;
    }
    return false;
}

static bool binary_listed(const struct endpoint *e, const char *exe)
{
    for (size_t i = 0; i < e->nbinaries; i++) {
        const struct binary *b = &e->binaries[i];
        if (b->subtree ? strncmp(exe, b->path, b->len) == 0 : strcmp(exe, b->path) == 0)
            return true;
    }
    return false;
}

/* One process runs one of the policy's executables (or, unless the endpoint is exact, descends
 * from one). */
static bool process_matches(const struct endpoint *e, const char *const *exes)
{
    for (const char *const *x = exes; *x; x++) {
        if (binary_listed(e, *x))
            return true;
        if (e->binaries_exact)
            break;
    }
    return false;
}

/* Every process holding the client's socket must match: any of them can write the bytes, so one
 * listed process must not lend its identity to another sharing its socket. An unknown peer
 * matches only when identity checking is off: failing closed is the point of naming binaries. */
static bool peer_matches(const struct endpoint *e, const struct policy_peer *peer)
{
    if (!e->has_binaries || (peer && peer->binary_identity_off))
        return true;
    if (!peer || peer->nprocs == 0)
        return false;
    for (size_t i = 0; i < peer->nprocs && i < POLICY_PEER_MAX; i++) {
        if (!peer->procs[i] || !process_matches(e, peer->procs[i]))
            return false;
    }
    return true;
}

typedef void (*visit_fn)(const struct endpoint *e, void *ctx);

/* Call fn for every endpoint whose host pattern matches host (already normalised), in no
 * particular order: the exact slot, then one slot per parent domain for wildcards. A name has
 * at most 127 labels, so this is a bounded number of hash probes whatever the policy size. */
static void for_each_host_match(const struct policy *p, const char *host, visit_fn fn, void *ctx)
{
    const struct slot *s = policy_find_slot(p, host);
    for (uint32_t i = 0; s && i < s->count; i++) {
        const struct endpoint *e = &p->endpoints[p->order[s->first + i]];
        if (e->kind == HOST_EXACT)
            fn(e, ctx);
    }
    if (host[0] == '.')
        return;
    const char *first_dot = strchr(host, '.');
    for (const char *d = first_dot; d; d = strchr(d + 1, '.')) {
        if (d[1] == '\0' || d[-1] == '.')
            return;
        s = policy_find_slot(p, d + 1);
        for (uint32_t i = 0; s && i < s->count; i++) {
            const struct endpoint *e = &p->endpoints[p->order[s->first + i]];
            if (e->kind == HOST_ANY_LABELS || (e->kind == HOST_ONE_LABEL && d == first_dot))
                fn(e, ctx);
        }
    }
}

/* Hosts should arrive normalised (target.h); normalise anyway, so a caller that forgot can
 * only be refused, never let through by a case mismatch. */
static bool normalise_query_host(const char *host, char out[TARGET_HOST_MAX + 1])
{
    enum target_host_kind kind;
    return host && target_normalise_host(host, strlen(host), false, out, &kind) == 0;
}

struct l4_ctx {
    uint16_t port;
    const struct policy_peer *peer;
    const struct endpoint *best;        /* lowest index matching host, port and peer */
    const struct endpoint *bin_refused; /* lowest index matching host and port only */
};

static void visit_l4(const struct endpoint *e, void *arg)
{
    struct l4_ctx *c = arg;
    if (!port_matches(e, c->port))
        return;
    if (!peer_matches(e, c->peer)) {
        if (!c->bin_refused || e->index < c->bin_refused->index)
            c->bin_refused = e;
        return;
    }
    if (!c->best || e->index < c->best->index)
        c->best = e;
}

void policy_check_l4(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, struct policy_l4 *out)
{
    char h[TARGET_HOST_MAX + 1];
    struct l4_ctx c = {port, peer, NULL, NULL};

    if (normalise_query_host(host, h))
        for_each_host_match(p, h, visit_l4, &c);
    memset(out, 0, sizeof(*out));
    if (c.best) {
        out->verdict = POLICY_ALLOW;
        out->protocol = c.best->protocol;
        out->policy_name = c.best->policy_name;
    } else if (c.bin_refused) {
        out->verdict = POLICY_DENY;
        out->policy_name = c.bin_refused->policy_name;
        out->reason = "binary not allowed";
    } else {
        out->verdict = POLICY_DENY;
        out->reason = "no endpoint matches host and port";
    }
}

static bool method_in(const char *m, const char *const *set)
{
    for (; *set; set++) {
        if (strcmp(m, *set) == 0)
            return true;
    }
    return false;
}

static bool access_allows(enum access a, const char *method)
{
    static const char *const ro[] = {"GET", "HEAD", "OPTIONS", NULL};
    static const char *const rw[] = {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", NULL};
    switch (a) {
    case ACCESS_FULL:
        return true;
    case ACCESS_READ_WRITE:
        return method_in(method, rw);
    case ACCESS_READ_ONLY:
        return method_in(method, ro);
    case ACCESS_NONE:
        break;
    }
    return false;
}

/* One request as the L7 decision sees it. */
struct l7_request {
    const char *method;
    const char *path;     /* canonical */
    const char *path_alt; /* path with one trailing slash added or removed; NULL for "/" */
};

/* Allow rules are exact: method, case and trailing slash as written. */
static bool allow_rule_matches(const struct rule *r, const struct l7_request *q)
{
    return (!r->method || strcmp(r->method, q->method) == 0) && path_glob_match(r->glob, q->path);
}

/* Deny rules fail closed where upstreams are lenient. Most frameworks route "/a" and "/a/" to
 * one handler, many servers (IIS, Windows and macOS file systems, case-folding routers) treat
 * "/ADMIN" as "/admin", and HEAD is answered by the GET handler (RFC 9110 §9.3.2): a deny
 * rule that missed any of these would be a bypass. */
static bool deny_rule_matches(const struct rule *r, const struct l7_request *q)
{
    if (r->method && strcmp(r->method, q->method) != 0 &&
        !(strcmp(r->method, "GET") == 0 && strcmp(q->method, "HEAD") == 0))
        return false;
    return path_glob_match_nocase(r->glob, q->path) ||
           (q->path_alt && path_glob_match_nocase(r->glob, q->path_alt));
}

/* NULL when e allows the request, else the static reason it refuses, and *deny the deny rule
 * that refused (NULL when the preset and rules did). Deny rules first: they win over the
 * preset and every allow rule. */
static const char *endpoint_refusal(const struct endpoint *e, const struct l7_request *q,
                                    const struct rule **deny)
{
    *deny = NULL;
    for (size_t i = 0; i < e->ndeny; i++) {
        if (deny_rule_matches(&e->deny[i], q)) {
            *deny = &e->deny[i];
            return "matched deny rule";
        }
    }
    if (access_allows(e->access, q->method))
        return NULL;
    for (size_t i = 0; i < e->nrules; i++) {
        if (allow_rule_matches(&e->rules[i], q))
            return NULL;
    }
    switch (e->access) {
    case ACCESS_READ_ONLY:
        return "method not allowed by access read-only";
    case ACCESS_READ_WRITE:
        return "method not allowed by access read-write";
    default:
        return "no rule allows method and path";
    }
}

/* One endpoint's refusal: the endpoint, its static reason, and the deny rule that refused
 * (NULL when its preset and rules did). */
struct refusal {
    const struct endpoint *e;
    const char *reason;
    const struct rule *deny;
};

struct l7_ctx {
    uint16_t port;
    const struct policy_peer *peer;
    const struct sockaddr *private_addr;
    struct l7_request q;
    const struct endpoint *allow; /* lowest index that allows */
    struct refusal audit;         /* lowest index in audit mode that refuses */
    struct refusal deny;          /* highest index refusing by preset or rules ("last denied") */
    struct refusal deny_by_rule;  /* highest index refusing by a deny rule */
    const struct endpoint *bin_refused;
    const struct endpoint *ip_refused; /* lowest index whose allowed_ips miss private_addr */
};

static bool ips_cover(const struct endpoint *e, const struct sockaddr *sa)
{
    for (size_t i = 0; i < e->nips; i++) {
        if (addr_cidr_contains(&e->ips[i], sa))
            return true;
    }
    return false;
}

static void visit_l7(const struct endpoint *e, void *arg)
{
    struct l7_ctx *c = arg;
    if (e->protocol != POLICY_REST || !port_matches(e, c->port))
        return;
    if (!peer_matches(e, c->peer)) {
        if (!c->bin_refused || e->index < c->bin_refused->index)
            c->bin_refused = e;
        return;
    }
    /* allowed_ips opened this connection's address for the endpoints that list it: any other
     * endpoint never agreed to that traffic, so it neither allows nor audits it. */
    if (c->private_addr && !ips_cover(e, c->private_addr)) {
        if (!c->ip_refused || e->index < c->ip_refused->index)
            c->ip_refused = e;
        return;
    }
    /* Once something allows, only an earlier allowing endpoint can change the answer. */
    if (c->allow && e->index > c->allow->index)
        return;
    struct refusal r = {e, NULL, NULL};
    r.reason = endpoint_refusal(e, &c->q, &r.deny);
    if (!r.reason) {
        c->allow = e;
    } else if (e->audit) {
        if (!c->audit.e || e->index < c->audit.e->index)
            c->audit = r;
    } else {
        /* Kept apart: an allow rule can fix a refusal by preset or rules, never one by a deny
         * rule, and the answer should name one that can be fixed when there is one. */
        struct refusal *slot = r.deny ? &c->deny_by_rule : &c->deny;
        if (!slot->e || e->index > slot->e->index)
            *slot = r;
    }
}

static bool append_raw(char *out, size_t cap, size_t *w, const char *s)
{
    size_t n = strlen(s);
    if (*w + n >= cap)
        return false;
    memcpy(out + *w, s, n + 1);
    *w += n;
    return true;
}

static bool format_rule(char *out, size_t cap, const char *method, const char *path, size_t plen,
                        bool globstar)
{
    size_t w = 0;
    return append_raw(out, cap, &w, "{\"method\":\"") &&
           json_escape_buf(out, cap, &w, method, strlen(method)) &&
           append_raw(out, cap, &w, "\",\"path\":\"") &&
           json_escape_buf(out, cap, &w, path, plen) &&
           (!globstar || append_raw(out, cap, &w, "/**")) && append_raw(out, cap, &w, "\"}");
}

/* The rule an operator could add to allow this request. When the path is too long for the
 * buffer, a shorter prefix with a trailing globstar still allows it, so suggest that. */
static void rule_missing(char *out, size_t cap, const char *method, const char *path)
{
    size_t plen = strlen(path);
    if (format_rule(out, cap, method, path, plen, false))
        return;
    while (plen > 0) {
        while (plen > 0 && path[plen - 1] != '/')
            plen--;
        if (plen > 0)
            plen--; /* the '/' too: the globstar suffix brings its own */
        if (format_rule(out, cap, method, path, plen, true))
            return;
    }
    if (!format_rule(out, cap, "*", "", 0, true))
        out[0] = '\0';
}

/* The path with one trailing slash removed or added, written to buf, for deny rules. *alt is
 * NULL for "/" and for a path that does not start with '/' (no glob matches those). Returns
 * false when the path is too long to fit buf: the caller must refuse, not skip the check. */
static bool toggle_trailing_slash(const char *path, char *buf, size_t cap, const char **alt)
{
    size_t n = strlen(path);
    *alt = NULL;
    if (path[0] != '/' || n == 1)
        return true;
    if (n + 2 > cap)
        return false;
    memcpy(buf, path, n);
    if (path[n - 1] == '/')
        n--;
    else
        buf[n++] = '/';
    buf[n] = '\0';
    *alt = buf;
    return true;
}

/* The answer from one refusal; rule_missing only when an allow rule could fix it. */
static void report_refusal(const struct refusal *r, const struct l7_request *q,
                           struct policy_l7 *out)
{
    out->policy_name = r->e->policy_name;
    out->reason = r->reason;
    if (r->deny) {
        out->deny_rule.method = r->deny->method ? r->deny->method : "*";
        out->deny_rule.path = r->deny->glob;
    } else {
        rule_missing(out->rule_missing, sizeof(out->rule_missing), q->method,
                     q->path[0] == '/' ? q->path : "/");
    }
}

void policy_check_l7(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, const struct sockaddr *private_addr,
                     const char *method, const char *path, struct policy_l7 *out)
{
    char h[TARGET_HOST_MAX + 1], alt[PATH_MAX_LEN + 2];
    struct l7_ctx c;
    memset(&c, 0, sizeof(c));
    c.port = port;
    c.peer = peer;
    c.private_addr = private_addr;
    c.q.method = method ? method : "";
    c.q.path = path ? path : "";

    bool checkable = toggle_trailing_slash(c.q.path, alt, sizeof(alt), &c.q.path_alt);
    if (checkable && normalise_query_host(host, h))
        for_each_host_match(p, h, visit_l7, &c);
    memset(out, 0, sizeof(*out));
    if (c.allow) {
        out->verdict = POLICY_ALLOW;
        out->policy_name = c.allow->policy_name;
        return;
    }
    if (c.audit.e) {
        out->verdict = POLICY_AUDIT;
        report_refusal(&c.audit, &c.q, out);
        return;
    }
    out->verdict = POLICY_DENY;
    if (c.deny.e || c.deny_by_rule.e) {
        report_refusal(c.deny.e ? &c.deny : &c.deny_by_rule, &c.q, out);
        return;
    }
    /* From here on no endpoint judged the method and path, so no allow rule can help: no
     * rule_missing. */
    if (c.ip_refused) {
        out->policy_name = c.ip_refused->policy_name;
        out->reason = "connected address not in allowed_ips";
    } else if (c.bin_refused) {
        out->policy_name = c.bin_refused->policy_name;
        out->reason = "binary not allowed";
    } else if (!checkable) {
        /* Longer than any canonical path (relay answers 414 first): no deny rule can be
         * checked against it, so nothing may allow it. */
        out->reason = "path too long";
    } else {
        out->reason = "no endpoint matches host and port";
    }
}

struct ip_ctx {
    uint16_t port;
    const struct policy_peer *peer;
    enum policy_protocol protocol;
    const struct sockaddr *sa;
    bool allowed;
};

/* Only endpoints that take part in this peer's L4 decision lend their allowed_ips: one for
 * another binary, or for the protocol L4 did not choose, allows none of this traffic, so it
 * must not open an address for it either. */
static void visit_ip(const struct endpoint *e, void *arg)
{
    struct ip_ctx *c = arg;
    if (c->allowed || e->protocol != c->protocol || !port_matches(e, c->port) ||
        !peer_matches(e, c->peer))
        return;
    c->allowed = ips_cover(e, c->sa);
}

bool policy_ip_allowed(const struct policy *p, const char *host, uint16_t port,
                       const struct policy_peer *peer, const struct sockaddr *sa)
{
    char h[TARGET_HOST_MAX + 1];
    if (!sa || !normalise_query_host(host, h))
        return false;
    struct l4_ctx l4 = {port, peer, NULL, NULL};
    for_each_host_match(p, h, visit_l4, &l4);
    if (!l4.best)
        return false;
    struct ip_ctx c = {port, peer, l4.best->protocol, sa, false};
    for_each_host_match(p, h, visit_ip, &c);
    return c.allowed;
}
