/* SPDX-License-Identifier: MIT */
/* libFuzzer target for relay, differential: whole connections are driven in memory as the
 * transport and the session controller drive them, and what the relay wrote is read back with
 * refhttp (test/fuzz/refhttp.c), a strict parser written apart from llhttp and src/http.c:
 *   (a) the bytes written upstream parse to exactly the requests the relay judged allowed (or
 *       audit), in order: same method, same canonical path, a Host naming the judged authority,
 *       no hop-by-hop field of the client's, and the body the client sent (when refhttp reads
 *       the client's stream too); nothing else;
 *   (b) the bytes written to the client parse to the responses the upstream sent, in order, at
 *       most one final response per forwarded request, with the upstream's status and body and
 *       no field the upstream did not send (when refhttp reads the upstream's stream too);
 *   (c) raw bytes start only after a 101 that validly answered a valid websocket request.
 * Also: no secret or placeholder in a log line, no secret to a host no provider binds, and
 * nothing written or decided after a final outcome. A violation aborts with a message.
 *
 * Input: 4 header bytes, then the client's stream, the marker "\n<<>>\n", the upstream's.
 *   [0] mode bits: 0 a CONNECT tunnel to the host bits 1-2 pick, and so its policy (clear: a
 *       forward proxy, the client's first request names the origin), 3 credential providers
 *       on, 4 draining, 5 the client closes at the end, 6 the upstream does, 7 after REUSABLE
 *       the client is released before the upstream
 *   [1], [2] chunk sizes for the client and upstream: 0 the whole stream, 1..127 that many
 *       bytes, bit 7 set a random size from 1 to (the low bits + 1)
 *   [3] the seed of the schedule (which side sends next) and of random chunk sizes; with bit 0
 *       of [0] set, bit 7 makes the tunnel a plain-HTTP one (relay_begin_plain_tunnel) */
#include "airlock/relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "airlock/creds.h"
#include "airlock/policy.h"
#include "refhttp.h"

#define SECRET     "s3cretTOKENvalue42"
#define SECRET_ENV "AIRLOCK_FUZZ_RELAY_SECRET"
#define PH         "AIRLOCK_PLACEHOLDER_API_000001"
#define PH_ELSE    "AIRLOCK_PLACEHOLDER_ELSE_00002"
#define PH_INJECT  "AIRLOCK_PLACEHOLDER_INJ_000003"
#define REDACTED   "[CREDENTIAL]"
#define MARKER     "\n<<>>\n"

#define MAX_JUDGED 64

enum {
    MODE_TUNNEL = 1 << 0,
    MODE_HOST_SHIFT = 1,
    MODE_CREDS = 1 << 3,
    MODE_DRAINING = 1 << 4,
    MODE_CLIENT_EOF = 1 << 5,
    MODE_UPSTREAM_EOF = 1 << 6,
    MODE_CLIENT_FIRST = 1 << 7,
};

/* The tunnel's host (by mode bits 1-2) and what the policy grants there: full access; read-only
 * with a POST rule and a deny rule; read-only in audit mode; explicit rules only. The forward
 * proxy may reach example.com:80 (full) and other.example.com:80 (read-only). */
static const char *const tunnel_hosts[4] = {"api.example.com", "ro.example.com",
                                            "audit.example.com", "rules.example.com"};

static const char policy_json[] =
    "{'version': 1, 'network_policies': {"
    " 'api': {'endpoints': [{'host': 'api.example.com', 'port': 443, 'access': 'full'}]},"
    " 'ro': {'endpoints': [{'host': 'ro.example.com', 'port': 443, 'access': 'read-only',"
    "  'rules': [{'method': 'POST', 'path': '/repos/*/*/issues'}],"
    "  'deny_rules': [{'method': '*', 'path': '/admin/**'}]}]},"
    " 'aud': {'endpoints': [{'host': 'audit.example.com', 'port': 443, 'access': 'read-only',"
    "  'enforcement': 'audit'}]},"
    " 'rules': {'endpoints': [{'host': 'rules.example.com', 'port': 443,"
    "  'rules': [{'method': 'GET', 'path': '/ws'}, {'method': 'GET', 'path': '/a/**'},"
    "   {'method': 'POST', 'path': '/p/*'}, {'method': 'OPTIONS', 'path': '/**'}],"
    "  'deny_rules': [{'method': 'GET', 'path': '/a/secret'}]}]},"
    " 'fwd': {'endpoints': [{'host': 'example.com', 'port': 80, 'access': 'full'},"
    "  {'host': 'other.example.com', 'port': 80, 'access': 'read-only'}]}}}";

/* "api" binds api.example.com and may stand anywhere; "inj" injects Authorization on
 * ro.example.com; "else" binds a host no tunnel here goes to. */
static const char creds_json[] =
    "{'version': 1, 'providers': {"
    " 'api': {'placeholder': '" PH "', 'secret': {'env': '" SECRET_ENV "'},"
    "  'endpoints': [{'host': 'api.example.com', 'port': 443}]},"
    " 'inj': {'placeholder': '" PH_INJECT "', 'secret': {'env': '" SECRET_ENV "'},"
    "  'endpoints': [{'host': 'ro.example.com', 'port': 443}],"
    "  'inject': {'header': 'Authorization', 'format': 'Bearer {secret}'}},"
    " 'else': {'placeholder': '" PH_ELSE "', 'secret': {'env': '" SECRET_ENV "'},"
    "  'endpoints': [{'host': 'else.example.com', 'port': 443}]}}}";

static struct policy *the_policy;
static struct creds *the_creds;

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void violation(const char *fmt, ...)
{
    va_list ap;

    fputs("fuzz_relay: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            violation(__VA_ARGS__);                                                                \
    } while (0)

static char *dq(const char *s)
{
    char *d = strdup(s);

    for (char *c = d; c && *c; c++)
        if (*c == '\'')
            *c = '"';
    return d;
}

static void load_once(void)
{
    char *json, *errors = NULL;

    if (the_policy)
        return;
    json = dq(policy_json);
    the_policy = policy_parse(json, strlen(json), &errors);
    REQUIRE(the_policy, "policy: %s", errors ? errors : "?");
    free(json);
    free(errors);
    errors = NULL;
    setenv(SECRET_ENV, SECRET, 1);
    json = dq(creds_json);
    the_creds = creds_parse(json, strlen(json), &errors);
    REQUIRE(the_creds, "providers: %s", errors ? errors : "?");
    free(json);
    free(errors);
}

/* ---- one run ----------------------------------------------------------------------------- */

struct judged {
    struct authority target;
    char *method, *path;
    enum policy_verdict verdict;
    bool upgrade;
};

struct side_in {
    const uint8_t *p;
    size_t len, pos;      /* pos: handed to the transport so far */
    struct http_buf wait; /* handed over, not taken by the relay */
    bool held, eof_sent, closes;
    uint8_t chunk;
};

struct run {
    struct relay *r;
    unsigned mode;
    bool draining;
    struct side_in in[2];
    struct http_buf out[2]; /* what the relay wrote to each side */
    uint64_t rng;
    /* what the relay reported */
    struct judged judged[MAX_JUDGED];
    size_t njudged, nreusable, nsent, ndials;
    size_t outcomes_seen, outcomes_handled;
    struct relay_result last;
    struct relay_result *queue; /* every outcome; the controller acts on them in order */
    size_t nqueue, queue_cap;
    bool terminal, upstream_skipped, awaiting, tunnel_seen;
    int client_offset; /* index of the first judged request in the client's stream */
    struct authority target;
    bool have_target;
    /* the secret may go to an upstream (a provider binds it and the hop is verified TLS): to
     * some of this connection's, to all of them */
    /* any_bound: a provider substitutes on some origin (over verified TLS only); any_named,
     * all_named: a provider names some (every) origin, whose responses are redacted over
     * either hop (a provider's host may hand back a secret it stored) */
    bool secret_in_client, any_bound, any_named, all_named;
};

static uint64_t next_rand(struct run *r)
{
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return r->rng;
}

static const char *side_name(enum side_id s)
{
    return s == SIDE_CLIENT ? "client" : "upstream";
}

static int io_write(void *ctx, enum side_id to, const struct http_span *spans, unsigned nspans)
{
    struct run *r = ctx;

    REQUIRE(!r->terminal, "a write to the %s after the final outcome", side_name(to));
    REQUIRE(nspans > 0 && spans, "an empty write");
    for (unsigned i = 0; i < nspans; i++) {
        REQUIRE(spans[i].len == 0 || spans[i].p, "a span without bytes");
        http_buf_append(&r->out[to], spans[i].p, spans[i].len);
    }
    return 0;
}

static bool contains(const char *s, size_t len, const char *needle)
{
    return s && memmem(s, len, needle, strlen(needle)) != NULL;
}

/* No secret (unless the client sent it itself) and no placeholder in what is logged. */
static void check_log_text(const struct run *r, const char *what, const char *s)
{
    if (!s)
        return;
    REQUIRE(r->secret_in_client || !contains(s, strlen(s), SECRET), "the secret in a log line's %s",
            what);
    /* without providers a placeholder is only text */
    REQUIRE(!(r->mode & MODE_CREDS) ||
                (!contains(s, strlen(s), PH) && !contains(s, strlen(s), PH_ELSE) &&
                 !contains(s, strlen(s), PH_INJECT)),
            "a placeholder in a log line's %s: %s", what, s);
}

static void io_log(void *ctx, struct log_event *ev)
{
    struct run *r = ctx;

    check_log_text(r, "method", ev->method);
    check_log_text(r, "path", ev->path);
    check_log_text(r, "reason", ev->reason);
}

static void io_judge(void *ctx, const struct authority *target, const struct policy_request *q,
                     struct policy_l7 *d)
{
    static const struct policy_peer anyone = {.binary_identity_off = true};
    struct run *r = ctx;
    struct judged *j;

    REQUIRE(!r->terminal, "a judgement after the final outcome");
    REQUIRE(r->have_target, "a judgement before TUNNEL or DIAL named the target");
    /* a forward proxy may judge a request for another origin before it asks for the dial */
    if (r->tunnel_seen)
        REQUIRE(!strcmp(target->host, r->target.host) && target->port == r->target.port,
                "judged for %s:%u in a tunnel to %s:%u", target->host, (unsigned)target->port,
                r->target.host, (unsigned)r->target.port);
    REQUIRE(q->method && q->path, "a judgement without method or path");
    check_log_text(r, "judged path", q->path);
    policy_check_l7(the_policy, target->host, target->port, &anyone, NULL, q, d);
    REQUIRE(r->njudged < MAX_JUDGED, "more judgements than the harness keeps");
    if (r->njudged > 0)
        REQUIRE(r->judged[r->njudged - 1].verdict != POLICY_DENY,
                "a judgement after a denial (the denial must end the connection)");
    j = &r->judged[r->njudged++];
    j->target = *target;
    j->method = strdup(q->method);
    j->path = strdup(q->path);
    REQUIRE(j->method && j->path, "out of memory");
    j->verdict = d->verdict;
    j->upgrade = q->upgrade;
}

static struct creds *io_creds(void *ctx)
{
    struct run *r = ctx;

    if (!(r->mode & MODE_CREDS))
        return NULL;
    creds_ref(the_creds);
    return the_creds;
}

static void io_progress(void *ctx, enum relay_progress p)
{
    struct run *r = ctx;

    REQUIRE(!r->terminal, "progress after the final outcome");
    if (p == RELAY_REQUEST_SENT) {
        const struct authority *t = r->njudged ? &r->judged[r->njudged - 1].target : NULL;

        REQUIRE(t && r->have_target, "a request sent that was never judged");
        REQUIRE(!strcmp(t->host, r->target.host) && t->port == r->target.port,
                "a request judged for %s:%u sent on a connection to %s:%u", t->host,
                (unsigned)t->port, r->target.host, (unsigned)r->target.port);
        r->nsent++;
        r->awaiting = true;
    }
}

static void io_outcome(void *ctx, const struct relay_result *res)
{
    struct run *r = ctx;

    REQUIRE(!r->terminal, "outcome %d after the final outcome", (int)res->outcome);
    if (r->nqueue == r->queue_cap) {
        r->queue_cap = r->queue_cap ? 2 * r->queue_cap : 16;
        r->queue = realloc(r->queue, r->queue_cap * sizeof *r->queue);
        REQUIRE(r->queue, "out of memory");
    }
    r->queue[r->nqueue++] = *res;
    r->last = *res;
    r->outcomes_seen++;
    switch (res->outcome) {
    case RELAY_REUSABLE:
        REQUIRE(!r->draining, "REUSABLE while draining");
        r->nreusable++;
        r->awaiting = false;
        break;
    case RELAY_TUNNEL:
        REQUIRE(!r->have_target, "TUNNEL after the first request");
        r->target = res->target;
        r->have_target = true;
        r->tunnel_seen = true;
        break;
    case RELAY_DIAL:
        REQUIRE(!r->tunnel_seen, "DIAL inside a tunnel");
        r->target = res->target;
        r->have_target = true;
        r->ndials++;
        break;
    case RELAY_REFUSED:
        REQUIRE(res->answer.status >= 400 && res->answer.status <= 599, "REFUSED with status %d",
                res->answer.status);
        REQUIRE(res->answer.error && res->answer.detail, "REFUSED without error or detail");
        check_log_text(r, "answer path", res->answer.path);
        /* fall through */
    case RELAY_CONSUMED:
    case RELAY_UPGRADED:
    case RELAY_ABORTED:
        r->terminal = true;
        break;
    default:
        violation("unknown outcome %d", (int)res->outcome);
    }
}

static const struct relay_io fuzz_io = {io_write, io_log,      io_judge,
                                        io_creds, io_progress, io_outcome};

static void drop_front(struct http_buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* The transport: hand what waits to the relay until it holds the side or takes it all. */
static void pump(struct run *r, enum side_id s)
{
    struct side_in *in = &r->in[s];

    while (in->wait.len > 0 && !in->held && !r->terminal) {
        size_t len = in->wait.len, seen = r->outcomes_seen;
        size_t n = relay_feed(r->r, s, in->wait.data, len);

        REQUIRE(n <= len, "relay_feed took %zu of %zu bytes", n, len);
        if (r->outcomes_seen != seen && r->last.outcome == RELAY_UPGRADED) {
            REQUIRE(s == SIDE_UPSTREAM, "UPGRADED on the client's bytes");
            REQUIRE(n + r->last.overflow == len,
                    "UPGRADED: took %zu of %zu bytes with an overflow of %zu", n, len,
                    r->last.overflow);
        }
        drop_front(&in->wait, n);
        if (n < len)
            in->held = true;
    }
}

static void release(struct run *r, enum side_id s)
{
    r->in[s].held = false;
    relay_resume(r->r, s);
    pump(r, s);
}

/* The controller's answer to each step the relay reported. */
/* The relay now talks to target: through verified TLS (a tunnel, an https:// origin) when
 * inspected, where the providers that bind it substitute and redact. */
static void enter_origin(struct run *r, const struct authority *target, bool inspected)
{
    bool named =
        (r->mode & MODE_CREDS) && target->port == 443 &&
        (!strcmp(target->host, "api.example.com") || !strcmp(target->host, "ro.example.com"));

    r->any_bound |= named && inspected;
    r->any_named |= named;
    r->all_named &= named;
}

static void handle_outcomes(struct run *r)
{
    bool client_first = (r->mode & MODE_CLIENT_FIRST) != 0;

    /* acting on one may report more (appended to the queue, handled in this same loop) */
    while (r->outcomes_handled < r->nqueue && !r->terminal) {
        struct relay_result res = r->queue[r->outcomes_handled++];

        switch (res.outcome) {
        case RELAY_REUSABLE:
            release(r, client_first ? SIDE_CLIENT : SIDE_UPSTREAM);
            release(r, client_first ? SIDE_UPSTREAM : SIDE_CLIENT);
            break;
        case RELAY_TUNNEL:
            /* what follows CONNECT is the client's plaintext through its TLS */
            relay_begin_tunnel(r->r, &res.target);
            enter_origin(r, &res.target, true);
            release(r, SIDE_CLIENT);
            break;
        case RELAY_DIAL:
            /* a fresh upstream: what the old one sent and the relay held is gone */
            if (r->ndials > 1 && r->in[SIDE_UPSTREAM].wait.len > 0)
                r->upstream_skipped = true;
            r->in[SIDE_UPSTREAM].wait.len = 0;
            r->in[SIDE_UPSTREAM].held = false;
            enter_origin(r, &res.target, res.tls);
            relay_dialed(r->r);
            release(r, SIDE_CLIENT);
            break;
        default:
            break;
        }
    }
}

static size_t chunk_size(struct run *r, uint8_t sel, size_t left)
{
    size_t n;

    if (sel == 0)
        n = left;
    else if (sel & 0x80)
        n = 1 + (size_t)(next_rand(r) % ((sel & 0x7f) + 1u));
    else
        n = sel;
    return n < left ? n : left;
}

static bool can_send(const struct run *r, enum side_id s)
{
    const struct side_in *in = &r->in[s];

    return !in->held && in->pos < in->len;
}

static bool can_close(const struct run *r, enum side_id s)
{
    const struct side_in *in = &r->in[s];

    return in->closes && !in->held && !in->eof_sent && in->pos == in->len && in->wait.len == 0;
}

/* One step of the schedule; false when nothing can happen any more. */
static bool step(struct run *r)
{
    bool c = can_send(r, SIDE_CLIENT), u = can_send(r, SIDE_UPSTREAM);
    enum side_id s;

    if (c || u) {
        if (c && u) {
            /* mostly as real peers do: a client sends, an upstream answers what it was sent */
            unsigned roll = (unsigned)(next_rand(r) % 8);
            s = (r->awaiting ? roll < 6 : roll == 0) ? SIDE_UPSTREAM : SIDE_CLIENT;
        } else {
            s = c ? SIDE_CLIENT : SIDE_UPSTREAM;
        }
        struct side_in *in = &r->in[s];
        size_t n = chunk_size(r, in->chunk, in->len - in->pos);
        http_buf_append(&in->wait, (const char *)in->p + in->pos, n);
        in->pos += n;
        pump(r, s);
        return true;
    }
    bool cc = can_close(r, SIDE_CLIENT), uc = can_close(r, SIDE_UPSTREAM);
    if (!cc && !uc)
        return false;
    s = cc && uc ? (next_rand(r) & 1 ? SIDE_CLIENT : SIDE_UPSTREAM)
        : cc     ? SIDE_CLIENT
                 : SIDE_UPSTREAM;
    r->in[s].eof_sent = true;
    relay_eof(r->r, s);
    return true;
}

/* ---- the checks -------------------------------------------------------------------------- */

static bool bytes_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* s with every occurrence of from replaced by to, in a new buffer. */
static char *replace_all(const char *s, const char *from, const char *to)
{
    struct http_buf b = {0};
    size_t flen = strlen(from);
    const char *hit;

    while ((hit = strstr(s, from)) != NULL) {
        http_buf_append(&b, s, (size_t)(hit - s));
        http_buf_puts(&b, to);
        s = hit + flen;
    }
    http_buf_puts(&b, s);
    REQUIRE(!b.failed, "out of memory");
    return b.data;
}

/* Every placeholder as the secret, as a substitution writes it (the secret needs no escape). */
static char *replace_placeholders(const char *s)
{
    char *a = replace_all(s, PH, SECRET);
    char *b = replace_all(a, PH_INJECT, SECRET);
    char *c = replace_all(b, PH_ELSE, SECRET);

    free(a);
    free(b);
    return c;
}

/* The path and query of a request-target (origin form, absolute form or "*"). */
static void split_target(const char *target, char **path, char **query)
{
    const char *p = target, *q;

    if (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0) {
        p = strstr(p, "://") + 3;
        p += strcspn(p, "/?");
        if (!*p || *p == '?') {
            *path = strdup("/");
            *query = *p ? strdup(p + 1) : NULL;
            return;
        }
    }
    q = strchr(p, '?');
    *path = q ? strndup(p, (size_t)(q - p)) : strdup(p);
    *query = q ? strdup(q + 1) : NULL;
}

static bool list_has(const char *value, const char *token)
{
    size_t n = strlen(token);

    for (const char *p = value; p && *p;) {
        p += strspn(p, " \t,");
        size_t len = strcspn(p, ",");
        size_t end = len;

        while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        if (end == n && strncasecmp(p, token, n) == 0)
            return true;
        p += len;
    }
    return false;
}

static size_t field_count(const struct ref_msg *m, const char *name)
{
    size_t k = 0;

    for (size_t i = 0; i < m->nfields; i++)
        k += strcasecmp(m->fields[i].name, name) == 0;
    return k;
}

/* A websocket key is 16 bytes in base64: 24 characters ending in "==". */
static bool valid_ws_key(const char *key)
{
    unsigned char raw[24];

    return key && strlen(key) == 24 && !strcmp(key + 22, "==") &&
           EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}

static void ws_accept(const char *key, char out[32])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    REQUIRE(ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
                EVP_DigestUpdate(ctx, key, strlen(key)) &&
                EVP_DigestUpdate(ctx, guid, sizeof guid - 1) && EVP_DigestFinal_ex(ctx, md, &mdlen),
            "sha1");
    EVP_MD_CTX_free(ctx);
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

/* A request as airlock writes it upstream: Host is the judged authority's, and of the client's
 * hop-by-hop fields only "TE: trailers" is left; Connection and Upgrade are airlock's own. */
static void check_upstream_head(const struct run *r, const struct ref_msg *m, size_t k)
{
    const struct authority *t = &r->judged[k].target;
    const char *host = ref_field(m, "host");
    size_t hlen = strlen(t->host);
    char port[8];

    snprintf(port, sizeof port, "%u", (unsigned)t->port);
    /* an IPv6 literal is bracketed in Host */
    bool v6 = t->kind == TARGET_IPV6;
    const char *h = host;
    if (h && v6 && *h == '[')
        h++;
    REQUIRE(h && strncasecmp(h, t->host, hlen) == 0, "request %zu: Host %s for %s", k,
            host ? host : "(none)", t->host);
    h += hlen;
    if (v6)
        REQUIRE(*h == ']', "request %zu: Host %s unbracketed", k, host);
    h += v6;
    REQUIRE(!*h || (*h == ':' && !strcmp(h + 1, port)), "request %zu: Host %s for port %s", k, host,
            port);
    for (size_t i = 0; i < m->nfields; i++) {
        const struct ref_field *f = &m->fields[i];

        REQUIRE(strcasecmp(f->name, "keep-alive") && strcasecmp(f->name, "proxy-connection") &&
                    strcasecmp(f->name, "proxy-authorization") && strcasecmp(f->name, "trailer"),
                "request %zu: hop-by-hop %s forwarded", k, f->name);
        if (!strcasecmp(f->name, "te"))
            REQUIRE(!strcasecmp(f->value, "trailers"), "request %zu: TE: %s forwarded", k,
                    f->value);
        if (!strcasecmp(f->name, "upgrade"))
            REQUIRE(!strcasecmp(f->value, "websocket"), "request %zu: Upgrade: %s forwarded", k,
                    f->value);
        if (!strcasecmp(f->name, "connection"))
            REQUIRE(!strcasecmp(f->value, "close") || !strcasecmp(f->value, "upgrade"),
                    "request %zu: Connection: %s forwarded", k, f->value);
    }
    REQUIRE(field_count(m, "connection") <= 1, "request %zu: two Connection fields", k);
    if (ref_field(m, "upgrade")) {
        REQUIRE(!strcmp(m->method, "GET") && list_has(ref_field(m, "connection"), "upgrade") &&
                    valid_ws_key(ref_field(m, "sec-websocket-key")) &&
                    field_count(m, "sec-websocket-key") == 1 &&
                    ref_field(m, "sec-websocket-version") &&
                    !strcmp(ref_field(m, "sec-websocket-version"), "13") && m->body_len == 0 &&
                    !ref_field(m, "content-length") && !ref_field(m, "transfer-encoding"),
                "request %zu: an upgrade that is not a whole websocket handshake", k);
    } else if (r->draining) {
        REQUIRE(list_has(ref_field(m, "connection"), "close"),
                "request %zu: no Connection: close while draining", k);
    }
}

/* (a) upstream bytes = the judged requests, in order, and nothing else. Returns the parse of
 * the client's stream for the caller's (b). */
static void check_upstream(struct run *r, const struct ref_stream *client, size_t *nforwarded)
{
    struct ref_stream w;
    size_t nallowed = 0, nw;

    ref_parse_requests((const uint8_t *)r->out[SIDE_UPSTREAM].data, r->out[SIDE_UPSTREAM].len, &w);
    REQUIRE(!w.error, "upstream bytes do not parse: %s at %zu", w.error, w.error_at);
    for (size_t i = 0; i < r->njudged; i++)
        nallowed += r->judged[i].verdict != POLICY_DENY;
    nw = w.nmsgs + (w.truncated ? 1 : 0);
    REQUIRE(r->nsent == nw, "%zu requests reported sent, %zu written", r->nsent, nw);
    /* every allowed request went up, but the last when a later check refused it */
    REQUIRE(nw == nallowed ||
                (nw + 1 == nallowed && r->terminal && r->last.outcome == RELAY_REFUSED &&
                 r->judged[r->njudged - 1].verdict != POLICY_DENY),
            "%zu requests upstream, %zu judged allowed", nw, nallowed);
    if (r->njudged && r->judged[r->njudged - 1].verdict == POLICY_DENY)
        REQUIRE(r->terminal && r->last.outcome == RELAY_REFUSED && r->last.answer.status == 403,
                "a denied request did not end in a 403");
    for (size_t k = 0; k < w.nmsgs; k++) {
        const struct ref_msg *m = &w.msgs[k];
        const struct judged *j = &r->judged[k];
        char *path, *query, *wpath, *jpath;

        REQUIRE(!strcmp(m->method, j->method), "request %zu: %s upstream, %s judged", k, m->method,
                j->method);
        split_target(m->target, &path, &query);
        REQUIRE(path[0] == '/' || !strcmp(path, "*"), "request %zu: target %s upstream", k,
                m->target);
        REQUIRE(strncasecmp(m->target, "http", 4) != 0, "request %zu: absolute form upstream", k);
        wpath = replace_all(path, SECRET, REDACTED);
        jpath = replace_all(j->path, SECRET, REDACTED);
        REQUIRE(!strcmp(wpath, jpath), "request %zu: path %s upstream, %s judged", k, path,
                j->path);
        check_upstream_head(r, m, k);
        /* the client's own request, when refhttp reads the client's stream as well */
        size_t ci = k + (size_t)r->client_offset;
        if (ci < client->nmsgs) {
            const struct ref_msg *cm = &client->msgs[ci];
            char *cpath, *cquery;

            REQUIRE(!strcmp(cm->method, m->method), "request %zu: the client sent %s, %s went up",
                    k, cm->method, m->method);
            REQUIRE(bytes_eq(cm->body, cm->body_len, m->body, m->body_len),
                    "request %zu: the client sent a body of %zu bytes, %zu went up", k,
                    cm->body_len, m->body_len);
            split_target(cm->target, &cpath, &cquery);
            /* the query goes up as sent, placeholders aside */
            if (!cquery || !strchr(cquery, '%')) {
                char *want = !cquery                  ? NULL
                             : (r->mode & MODE_CREDS) ? replace_placeholders(cquery)
                                                      : strdup(cquery);

                REQUIRE((!want && !query) || (want && query && !strcmp(want, query)),
                        "request %zu: query %s sent, %s went up", k, cquery ? cquery : "(none)",
                        query ? query : "(none)");
                free(want);
            }
            free(cpath);
            free(cquery);
        }
        free(wpath);
        free(jpath);
        free(path);
        free(query);
    }
    if (r->terminal && r->last.outcome == RELAY_UPGRADED) {
        REQUIRE(w.nmsgs > 0 && !w.truncated, "UPGRADED without a whole request upstream");
        REQUIRE(ref_field(&w.msgs[w.nmsgs - 1], "upgrade") && r->judged[w.nmsgs - 1].upgrade,
                "UPGRADED after a request that asked for no websocket");
    }
    *nforwarded = nw;
    ref_stream_free(&w);
}

/* The transfer codings of a Transfer-Encoding value but a last "chunked", lower case, without
 * spaces or empty list elements (RFC 9110 §5.6.1): "gzip, , chunked" is "gzip". */
static void codings_but_chunked(const char *te, char *out, size_t cap)
{
    size_t n = 0;

    out[0] = '\0';
    while (te && *te) {
        te += strspn(te, " \t,");
        size_t len = strcspn(te, ",");
        size_t end = len;

        while (end > 0 && (te[end - 1] == ' ' || te[end - 1] == '\t'))
            end--;
        for (size_t k = 0; k < end && n + 2 < cap; k++) {
            if (k == 0 && n > 0)
                out[n++] = ',';
            out[n++] = (char)(te[k] >= 'A' && te[k] <= 'Z' ? te[k] + 32 : te[k]);
        }
        out[n] = '\0';
        te += len;
    }
    if (n >= 7 && !strcmp(out + n - 7, "chunked") && (n == 7 || out[n - 8] == ','))
        out[n == 7 ? 0 : n - 8] = '\0';
}

static bool is_final(const struct ref_msg *m)
{
    return m->status >= 200 || m->status == 101;
}

static const char *const resp_hop[] = {"keep-alive", "proxy-authenticate", "proxy-connection",
                                       "trailer", "te"};

/* (b) and (c): client bytes = the upstream's responses, in order. */
static void check_client(struct run *r, size_t nforwarded)
{
    struct ref_stream c, u;
    const char *methods[MAX_JUDGED];
    size_t nmethods = 0, cf = 0, uf = 0, ci = 0, ui = 0, cfinal = 0;

    for (size_t i = 0; i < r->njudged; i++)
        if (r->judged[i].verdict != POLICY_DENY)
            methods[nmethods++] = r->judged[i].method;
    ref_parse_responses((const uint8_t *)r->out[SIDE_CLIENT].data, r->out[SIDE_CLIENT].len, methods,
                        nmethods, &c);
    REQUIRE(!c.error, "client bytes do not parse: %s at %zu", c.error, c.error_at);
    if (r->terminal && r->last.outcome == RELAY_CONSUMED && !r->last.truncated)
        REQUIRE(!c.truncated, "CONSUMED, not truncated, yet the client's last response is cut");
    if (r->all_named && !r->secret_in_client)
        REQUIRE(!contains(r->out[SIDE_CLIENT].data, r->out[SIDE_CLIENT].len, SECRET),
                "the secret reached the client");

    for (size_t i = 0; i < c.nmsgs; i++) {
        const struct ref_msg *m = &c.msgs[i];

        cf += is_final(m);
        if (!r->all_named || r->secret_in_client)
            continue;
        /* an echo is redacted wherever it stands: reason, field, body (de-chunked), trailer */
        REQUIRE(!contains(m->reason, strlen(m->reason), SECRET) &&
                    !contains((const char *)m->body, m->body_len, SECRET),
                "response %zu: the secret reached the client", i);
        for (size_t f = 0; f < m->nfields; f++)
            REQUIRE(!contains(m->fields[f].value, strlen(m->fields[f].value), SECRET),
                    "response %zu: the secret in field %s", i, m->fields[f].name);
        for (size_t f = 0; f < m->ntrailers; f++)
            REQUIRE(!contains(m->trailers[f].value, strlen(m->trailers[f].value), SECRET),
                    "response %zu: the secret in trailer %s", i, m->trailers[f].name);
    }
    REQUIRE(cf <= nforwarded, "%zu final responses to %zu forwarded requests", cf, nforwarded);
    REQUIRE(cf >= r->nreusable, "%zu final responses for %zu reusable exchanges", cf, r->nreusable);

    /* (c) a 101 reached the client exactly when the relay said UPGRADED */
    bool upgraded = r->terminal && r->last.outcome == RELAY_UPGRADED;
    REQUIRE(upgraded == (c.upgraded_at != 0), "UPGRADED %d, a 101 to the client %d", upgraded,
            c.upgraded_at != 0);
    if (upgraded) {
        const struct ref_msg *m = &c.msgs[c.nmsgs - 1];
        const char *acc = ref_field(m, "sec-websocket-accept");

        REQUIRE(c.upgraded_at == r->out[SIDE_CLIENT].len, "bytes to the client after the 101");
        REQUIRE(m->status == 101 && list_has(ref_field(m, "upgrade"), "websocket") &&
                    list_has(ref_field(m, "connection"), "upgrade") && acc,
                "the 101 to the client is not a websocket one");
        (void)acc;
    }

    ref_parse_responses(r->in[SIDE_UPSTREAM].p, r->in[SIDE_UPSTREAM].len, methods, nmethods, &u);
    if (r->upstream_skipped) {
        ref_stream_free(&u);
        ref_stream_free(&c);
        return;
    }
    /* Final responses pair up in order; an interim one may be dropped (an HTTP/1.0 client). */
    while (ci < c.nmsgs && ui < u.nmsgs) {
        const struct ref_msg *cm = &c.msgs[ci], *um = &u.msgs[ui];

        if (!is_final(um) && is_final(cm)) {
            ui++;
            continue;
        }
        REQUIRE(cm->status == um->status, "response %zu: %d to the client, %d from upstream", ci,
                cm->status, um->status);
        /* a body the upstream transfer-coded (gzip, ...) reaches the client with its codings
         * named, never as if it were the representation itself */
        bool bodiless = cm->status < 200 || cm->status == 204 || cm->status == 304 ||
                        (cfinal < nmethods && !strcmp(methods[cfinal], "HEAD"));
        if (!bodiless) {
            char uc[128], cc[128];

            codings_but_chunked(ref_field(um, "transfer-encoding"), uc, sizeof uc);
            codings_but_chunked(ref_field(cm, "transfer-encoding"), cc, sizeof cc);
            REQUIRE(!strcmp(uc, cc),
                    "response %zu: codings \"%s\" from upstream, \"%s\" to the client", ci, uc, cc);
        }
        bool redacting = r->any_named;
        bool last_c = ci + 1 == c.nmsgs;
        if (!redacting || !contains((const char *)um->body, um->body_len, SECRET)) {
            if (cm->close_framed || (last_c && c.truncated))
                REQUIRE(cm->body_len <= um->body_len &&
                            (cm->body_len == 0 || !memcmp(cm->body, um->body, cm->body_len)),
                        "response %zu: a body that is no prefix of the upstream's", ci);
            else if (!um->close_framed)
                REQUIRE(bytes_eq(cm->body, cm->body_len, um->body, um->body_len),
                        "response %zu: %zu body bytes to the client, %zu from upstream", ci,
                        cm->body_len, um->body_len);
        }
        /* nothing invented: every field the client got (framing and connection aside) came
         * from the upstream; and nothing the upstream named hop-by-hop went on */
        for (size_t f = 0; f < cm->nfields; f++) {
            const struct ref_field *fl = &cm->fields[f];
            bool found = false;

            if (!strcasecmp(fl->name, "connection") || !strcasecmp(fl->name, "upgrade") ||
                !strcasecmp(fl->name, "transfer-encoding") ||
                !strcasecmp(fl->name, "content-length"))
                continue;
            /* redaction may rewrite a name or value (the secret raw, in Base64, ...) */
            found = redacting;
            for (size_t g = 0; g < um->nfields && !found; g++)
                found = !strcasecmp(fl->name, um->fields[g].name) &&
                        (redacting || !strcmp(fl->value, um->fields[g].value));
            REQUIRE(found, "response %zu: field %s: %s the upstream did not send", ci, fl->name,
                    fl->value);
            for (size_t h = 0; h < sizeof resp_hop / sizeof resp_hop[0]; h++)
                REQUIRE(strcasecmp(fl->name, resp_hop[h]), "response %zu: hop-by-hop %s", ci,
                        fl->name);
            for (size_t g = 0; g < um->nfields; g++)
                if (!strcasecmp(um->fields[g].name, "connection"))
                    REQUIRE(!list_has(um->fields[g].value, fl->name),
                            "response %zu: %s forwarded though Connection named it", ci, fl->name);
        }
        for (size_t t = 0; t < cm->ntrailers; t++) {
            bool found = false;

            found = redacting;
            for (size_t g = 0; g < um->ntrailers && !found; g++)
                found = !strcasecmp(cm->trailers[t].name, um->trailers[g].name);
            REQUIRE(found, "response %zu: trailer %s the upstream did not send", ci,
                    cm->trailers[t].name);
        }
        if (cm->status == 101) {
            const char *key = NULL;
            char want[32];
            struct ref_stream w;

            /* the request that asked: the last one upstream */
            ref_parse_requests((const uint8_t *)r->out[SIDE_UPSTREAM].data,
                               r->out[SIDE_UPSTREAM].len, &w);
            if (w.nmsgs)
                key = ref_field(&w.msgs[w.nmsgs - 1], "sec-websocket-key");
            REQUIRE(valid_ws_key(key), "a 101 to a request without a valid key");
            ws_accept(key, want);
            REQUIRE(ref_field(cm, "sec-websocket-accept") &&
                        !strcmp(ref_field(cm, "sec-websocket-accept"), want),
                    "a 101 whose accept does not match the key");
            ref_stream_free(&w);
        }
        uf += is_final(um);
        cfinal += is_final(cm);
        ci++;
        ui++;
    }
    (void)uf;
    ref_stream_free(&u);
    ref_stream_free(&c);
}

/* ---- the entry point --------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    struct run *r;
    const uint8_t *body, *mark;
    size_t len, nforwarded = 0;
    struct ref_stream client;

    if (size < 4)
        return 0;
    load_once();
    r = calloc(1, sizeof *r);
    REQUIRE(r, "out of memory");
    r->mode = in[0];
    r->draining = (r->mode & MODE_DRAINING) != 0;
    r->in[SIDE_CLIENT].chunk = in[1];
    r->in[SIDE_UPSTREAM].chunk = in[2];
    r->rng = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)in[3] << 32 | in[1] << 8 | in[2]);
    body = in + 4;
    len = size - 4;
    mark = memmem(body, len, MARKER, sizeof MARKER - 1);
    /* private copies, so that ASan sees a read past what the relay was given */
    size_t clen = mark ? (size_t)(mark - body) : len;
    size_t ulen = mark ? len - clen - (sizeof MARKER - 1) : 0;
    uint8_t *cbuf = malloc(clen + 1), *ubuf = malloc(ulen + 1);
    REQUIRE(cbuf && ubuf, "out of memory");
    memcpy(cbuf, body, clen);
    if (ulen)
        memcpy(ubuf, mark + sizeof MARKER - 1, ulen);
    r->in[SIDE_CLIENT].p = cbuf;
    r->in[SIDE_CLIENT].len = clen;
    r->in[SIDE_UPSTREAM].p = ubuf;
    r->in[SIDE_UPSTREAM].len = ulen;
    r->in[SIDE_CLIENT].closes = (r->mode & MODE_CLIENT_EOF) != 0;
    r->in[SIDE_UPSTREAM].closes = (r->mode & MODE_UPSTREAM_EOF) != 0;
    r->secret_in_client = contains((const char *)cbuf, clen, SECRET);
    r->all_named = (r->mode & MODE_CREDS) != 0;
    bool plain = (in[3] & 0x80) != 0;

    struct relay_setup setup = {.id = 1, .limits = &http_default_limits, .draining = &r->draining};
    r->r = relay_new(&setup, &fuzz_io, r);
    REQUIRE(r->r, "relay_new");

    if (r->mode & MODE_TUNNEL) {
        const char *host = tunnel_hosts[(r->mode >> MODE_HOST_SHIFT) & 3];
        char connect[160];
        int n = snprintf(connect, sizeof connect, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n",
                         host, host);

        REQUIRE(relay_feed(r->r, SIDE_CLIENT, connect, (size_t)n) == (size_t)n,
                "CONNECT not taken whole");
        REQUIRE(r->nqueue == 1 && r->last.outcome == RELAY_TUNNEL, "CONNECT gave no TUNNEL");
        r->outcomes_handled = 1;
        /* a redirected plain-HTTP connection (transparent mode) is judged alike, but no
         * secret ever goes on its clear-text hop */
        if (plain) {
            relay_begin_plain_tunnel(r->r, &r->last.target);
        } else {
            relay_begin_tunnel(r->r, &r->last.target);
        }
        enter_origin(r, &r->last.target, !plain);
        relay_resume(r->r, SIDE_CLIENT);
    } else if (clen >= 7 && !strncmp((const char *)cbuf, "CONNECT", 7)) {
        r->client_offset = 1; /* its CONNECT is message 0 of the client's stream */
    }

    for (;;) {
        handle_outcomes(r);
        if (r->terminal || !step(r))
            break;
    }
    handle_outcomes(r);

    /* after the last outcome the relay takes everything and does nothing with it */
    if (r->terminal) {
        for (int s = 0; s < 2; s++) {
            struct side_in *si = &r->in[s];

            http_buf_append(&si->wait, (const char *)si->p + si->pos, si->len - si->pos);
            if (si->wait.len)
                REQUIRE(relay_feed(r->r, (enum side_id)s, si->wait.data, si->wait.len) ==
                            si->wait.len,
                        "bytes from the %s not discarded after the final outcome",
                        side_name((enum side_id)s));
        }
    }
    if (!r->any_bound && !r->secret_in_client)
        REQUIRE(!contains(r->out[SIDE_UPSTREAM].data, r->out[SIDE_UPSTREAM].len, SECRET),
                "the secret went to %s, which no provider binds over TLS", r->target.host);

    ref_parse_requests(cbuf, clen, &client);
    check_upstream(r, &client, &nforwarded);
    check_client(r, nforwarded);
    ref_stream_free(&client);

    relay_free(r->r);
    for (int s = 0; s < 2; s++) {
        http_buf_free(&r->out[s]);
        http_buf_free(&r->in[s].wait);
    }
    free(cbuf);
    free(ubuf);
    for (size_t i = 0; i < r->njudged; i++) {
        free(r->judged[i].method);
        free(r->judged[i].path);
    }
    free(r->queue);
    free(r);
    return 0;
}
