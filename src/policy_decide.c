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

/* Every spelling of the path that deny rules are matched against (policy.h lists them): at
 * most four bases, each without and with a trailing slash, stored as "B\0B/\0". Built on
 * first use, since most endpoints have no deny rules. */
#define DENY_FORMS_MAX 8

struct deny_forms {
    const char *source; /* the path they spell, at most PATH_MAX_LEN long */
    bool built;
    const char *path[DENY_FORMS_MAX];
    size_t n;
    size_t used;
    char buf[DENY_FORMS_MAX * (PATH_MAX_LEN + 2)];
};

/* One method of a request as the L7 decision judges it. */
struct l7_request {
    const char *method;
    const char *path; /* canonical, for allow rules */
    bool upgrade;
    bool override;            /* method is a method override's value */
    struct deny_forms *forms; /* of path, shared by every method judged */
};

static const struct deny_forms *deny_forms_get(struct deny_forms *f);

/* An upgrade needs a preset that allows writing: read-only's GET would otherwise open a
 * two-way channel whose frames no rule ever sees. */
static bool access_grants(enum access a, const struct l7_request *q)
{
    if (q->upgrade && a == ACCESS_READ_ONLY)
        return false;
    return access_allows(a, q->method);
}

/* Allow rules are exact: method, case and trailing slash as written. */
static bool allow_rule_matches(const struct rule *r, const struct l7_request *q)
{
    return (!r->method || strcmp(r->method, q->method) == 0) && path_glob_match(r->glob, q->path);
}

/* Deny rules fail closed where upstreams are lenient. Most frameworks route "/a" and "/a/" to
 * one handler, many servers (IIS, Windows and macOS file systems, case-folding routers) treat
 * "/ADMIN" as "/admin", IIS drops trailing dots and spaces, Rails and Spring serve
 * "/admin.json" from "/admin", and HEAD is answered by the GET handler (RFC 9110 §9.3.2): a
 * deny rule that missed any of these would be a bypass. */
static bool deny_rule_matches(const struct rule *r, const struct l7_request *q)
{
    if (r->method && strcmp(r->method, q->method) != 0 &&
        !(strcmp(r->method, "GET") == 0 && strcmp(q->method, "HEAD") == 0))
        return false;
    const struct deny_forms *f = deny_forms_get(q->forms);
    for (size_t i = 0; i < f->n; i++) {
        if (path_glob_match_nocase(r->glob, f->path[i]))
            return true;
    }
    return false;
}

/* Why one endpoint refuses a request. */
enum refusal_kind {
    REFUSAL_NONE = 0,
    REFUSAL_DENY_RULE,
    REFUSAL_READ_ONLY,
    REFUSAL_READ_WRITE,
    REFUSAL_NO_RULE,
    REFUSAL_UPGRADE_READ_ONLY,
};

/* The static reason of a refusal; a method override's says so, since the method the client
 * sees in the answer is not the one refused. */
static const char *refusal_reason(enum refusal_kind k, bool override)
{
    static const char *const reasons[][2] = {
        [REFUSAL_NONE] = {NULL, NULL},
        [REFUSAL_DENY_RULE] = {"matched deny rule", "method override: matched deny rule"},
        [REFUSAL_READ_ONLY] = {"method not allowed by access read-only",
                               "method override: method not allowed by access read-only"},
        [REFUSAL_READ_WRITE] = {"method not allowed by access read-write",
                                "method override: method not allowed by access read-write"},
        [REFUSAL_NO_RULE] = {"no rule allows method and path",
                             "method override: no rule allows method and path"},
        [REFUSAL_UPGRADE_READ_ONLY] =
            {"websocket upgrade not allowed by access read-only",
             "method override: websocket upgrade not allowed by access read-only"},
    };
    return reasons[k][override ? 1 : 0];
}

/* REFUSAL_NONE when e allows the request, else why it refuses, and *deny the deny rule that
 * refused (NULL when the preset and rules did). Deny rules first: they win over the preset and
 * every allow rule. */
static enum refusal_kind endpoint_refusal(const struct endpoint *e, const struct l7_request *q,
                                          const struct rule **deny)
{
    *deny = NULL;
    for (size_t i = 0; i < e->ndeny; i++) {
        if (deny_rule_matches(&e->deny[i], q)) {
            *deny = &e->deny[i];
            return REFUSAL_DENY_RULE;
        }
    }
    if (access_grants(e->access, q))
        return REFUSAL_NONE;
    for (size_t i = 0; i < e->nrules; i++) {
        if (allow_rule_matches(&e->rules[i], q))
            return REFUSAL_NONE;
    }
    switch (e->access) {
    case ACCESS_READ_ONLY:
        return q->upgrade && access_allows(e->access, q->method) ? REFUSAL_UPGRADE_READ_ONLY
                                                                 : REFUSAL_READ_ONLY;
    case ACCESS_READ_WRITE:
        return REFUSAL_READ_WRITE;
    default:
        return REFUSAL_NO_RULE;
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
    r.reason = refusal_reason(endpoint_refusal(e, &c->q, &r.deny), c->q.override);
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

/* Adds base (a path without a trailing slash, or "/") as itself and with a trailing slash,
 * skipping spellings already there. */
static void deny_forms_add(struct deny_forms *f, const char *base, size_t n)
{
    for (int slash = 0; slash <= (n > 1); slash++) {
        char *w = f->buf + f->used;
        memcpy(w, base, n);
        if (slash)
            w[n] = '/';
        w[n + (size_t)slash] = '\0';
        bool seen = false;
        for (size_t i = 0; i < f->n && !seen; i++)
            seen = strcmp(f->path[i], w) == 0;
        if (!seen) {
            f->path[f->n++] = w;
            f->used += n + (size_t)slash + 1;
        }
    }
}

/* The segments of path[0..n) (which starts with '/') with each one's trailing run of '.' and
 * "%20" removed, a segment left empty dropped, into out; returns the length, "/" at least.
 * Windows and IIS open "/admin." and "/admin%20" as "/admin". */
static size_t trim_segments(const char *path, size_t n, char *out)
{
    size_t w = 0, r = 0;
    while (r < n) {
        size_t start = ++r; /* past the '/' */
        while (r < n && path[r] != '/')
            r++;
        size_t end = r;
        for (;;) {
            if (end > start && path[end - 1] == '.')
                end--;
            else if (end - start >= 3 && memcmp(path + end - 3, "%20", 3) == 0)
                end -= 3;
            else
                break;
        }
        if (end > start) {
            out[w++] = '/';
            memcpy(out + w, path + start, end - start);
            w += end - start;
        }
    }
    if (w == 0)
        out[w++] = '/';
    return w;
}

/* Fills f with the spellings of path (at most PATH_MAX_LEN long) that deny rules match. */
static void deny_forms_build(struct deny_forms *f, const char *path)
{
    char trimmed[PATH_MAX_LEN + 1];
    size_t n = strlen(path);

    f->n = f->used = 0;
    /* The asterisk-form (OPTIONS *) asks about the server as a whole: a deny rule that covers
     * "/" covers it. */
    if (strcmp(path, "*") == 0)
        path = "/", n = 1;
    if (path[0] != '/') {
        deny_forms_add(f, path, n); /* no glob matches it */
        return;
    }
    if (n > 1 && path[n - 1] == '/')
        n--;
    deny_forms_add(f, path, n);
    n = trim_segments(path, n, trimmed);
    deny_forms_add(f, trimmed, n);

    /* The last segment without its suffix, cut at its first and at its last dot: Rails routes
     * "/admin.json" to /admin with format json, Spring's suffix match serves "/admin.*". A dot
     * that starts the segment ("/.env") is part of the name. */
    const char *last = (const char *)memrchr(trimmed, '/', n) + 1;
    const char *end = trimmed + n;
    if (last + 1 < end) {
        const char *first_dot = memchr(last + 1, '.', (size_t)(end - last - 1));
        const char *last_dot = memrchr(last + 1, '.', (size_t)(end - last - 1));
        if (first_dot)
            deny_forms_add(f, trimmed, (size_t)(first_dot - trimmed));
        if (last_dot)
            deny_forms_add(f, trimmed, (size_t)(last_dot - trimmed));
    }
}

static const struct deny_forms *deny_forms_get(struct deny_forms *f)
{
    if (!f->built) {
        deny_forms_build(f, f->source);
        f->built = true;
    }
    return f;
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

/* Where one method of the request is judged: the connection's facts and the request's. */
struct l7_target {
    const struct policy *p;
    const char *host; /* normalised, or NULL when it could not be: nothing matches */
    uint16_t port;
    const struct policy_peer *peer;
    const struct sockaddr *private_addr;
    bool checkable; /* false when the path is too long for deny rules to be checked */
};

/* The decision for one method of the request (its own, or an override's). */
static void decide_method(const struct l7_target *t, const struct l7_request *q,
                          struct policy_l7 *out)
{
    struct l7_ctx c;
    memset(&c, 0, sizeof(c));
    c.port = t->port;
    c.peer = t->peer;
    c.private_addr = t->private_addr;
    c.q = *q;

    if (t->checkable && t->host)
        for_each_host_match(t->p, t->host, visit_l7, &c);
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
    } else if (!t->checkable) {
        /* Longer than any canonical path (relay answers 414 first): no deny rule can be
         * checked against it, so nothing may allow it. */
        out->reason = "path too long";
    } else {
        out->reason = "no endpoint matches host and port";
    }
}

void policy_check_l7(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, const struct sockaddr *private_addr,
                     const struct policy_request *q, struct policy_l7 *out)
{
    char h[TARGET_HOST_MAX + 1];
    struct deny_forms forms;
    struct l7_target t = {p, NULL, port, peer, private_addr, false};
    struct l7_request r = {q->method ? q->method : "", q->path ? q->path : "", q->upgrade, false,
                           &forms};

    forms.source = r.path;
    forms.built = false;
    /* Longer than any canonical path: deny rules could not be checked on it. */
    t.checkable = strlen(r.path) <= PATH_MAX_LEN;
    if (normalise_query_host(host, h))
        t.host = h;
    decide_method(&t, &r, out);

    /* A framework that honours an override performs that method instead: each is judged as
     * a method of its own, and any refusal refuses the request. */
    const char *method = r.method;
    for (size_t i = 0; i < q->noverrides && out->verdict != POLICY_DENY; i++) {
        struct policy_l7 o;
        if (strcmp(q->overrides[i], method) == 0)
            continue;
        r.method = q->overrides[i];
        r.override = true;
        decide_method(&t, &r, &o);
        if (o.verdict == POLICY_DENY || (o.verdict == POLICY_AUDIT && out->verdict == POLICY_ALLOW))
            *out = o;
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
