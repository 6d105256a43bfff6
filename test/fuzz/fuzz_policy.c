/* SPDX-License-Identifier: MIT */
/* libFuzzer target for policy: policy_parse on the input, and for a policy that loads, the L4,
 * L7 and allowed_ips decisions for a few fixed requests plus requests made from the policy's
 * own hosts, ports, rule paths and binaries (so that matching code runs on hits, not only on
 * misses). The decisions must be consistent with each other; everything is freed. Invariants
 * are checked with __builtin_trap(). */
#include "airlock/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define PROBE_HOSTS   8 /* up to 5 from the policy, then 3 fixed ones */
#define PROBE_PATHS   6
#define PROBE_METHODS 4
#define PROBE_EXES    3
#define PROBE_LEN     300

struct probes {
    char hosts[PROBE_HOSTS][PROBE_LEN];
    uint16_t ports[PROBE_HOSTS];
    size_t nhosts;
    char paths[PROBE_PATHS][PROBE_LEN];
    size_t npaths;
    char methods[PROBE_METHODS][32];
    size_t nmethods;
    char exes[PROBE_EXES + 1][PROBE_LEN];
    size_t nexes;
};

/* Copy s into a probe slot, turning every '*' into 'x' so that a glob becomes a path (or host)
 * it matches. Returns false when it does not fit. */
static bool unglob(char *out, size_t cap, const char *prefix, const char *s)
{
    size_t pl = strlen(prefix), n = strlen(s);

    if (pl + n >= cap)
        return false;
    memcpy(out, prefix, pl);
    for (size_t i = 0; i < n; i++)
        out[pl + i] = s[i] == '*' ? 'x' : s[i];
    out[pl + n] = '\0';
    return true;
}

static void add_host(struct probes *pr, const char *host, uint16_t port, size_t limit)
{
    if (pr->nhosts >= limit)
        return;
    /* "*.example.com" -> "x.example.com"; "**.example.com" -> "a.b.example.com" */
    const char *prefix = "";
    if (strncmp(host, "**.", 3) == 0) {
        prefix = "a.b.";
        host += 3;
    } else if (strncmp(host, "*.", 2) == 0) {
        prefix = "x.";
        host += 2;
    }
    if (unglob(pr->hosts[pr->nhosts], PROBE_LEN, prefix, host))
        pr->ports[pr->nhosts++] = port;
}

static void add_path(struct probes *pr, const char *glob)
{
    if (pr->npaths < PROBE_PATHS && unglob(pr->paths[pr->npaths], PROBE_LEN, "", glob))
        pr->npaths++;
}

static void add_method(struct probes *pr, const char *m)
{
    if (strcmp(m, "*") == 0)
        m = "PATCH";
    for (size_t i = 0; i < pr->nmethods; i++) {
        if (strcmp(pr->methods[i], m) == 0)
            return;
    }
    if (pr->nmethods < PROBE_METHODS && strlen(m) < sizeof(pr->methods[0]))
        strcpy(pr->methods[pr->nmethods++], m);
}

static uint16_t first_port(const cJSON *ep)
{
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(ep, "port");
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(ep, "ports");
    double v = 0;

    if (cJSON_IsNumber(port))
        v = port->valuedouble;
    else if (cJSON_IsArray(ports) && ports->child && cJSON_IsNumber(ports->child))
        v = ports->child->valuedouble;
    else if (cJSON_IsArray(ports) && ports->child && cJSON_IsString(ports->child))
        v = atoi(ports->child->valuestring); /* "LOW-HIGH": LOW */
    return v >= 1 && v <= 65535 ? (uint16_t)v : 443;
}

static void add_rules(struct probes *pr, const cJSON *rules)
{
    const cJSON *r;

    cJSON_ArrayForEach(r, rules)
    {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(r, "method");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(r, "path");
        if (cJSON_IsString(m))
            add_method(pr, m->valuestring);
        if (cJSON_IsString(p))
            add_path(pr, p->valuestring);
    }
}

/* Requests made from the policy text itself (it loaded, so its shape is known to be right). */
static void collect(struct probes *pr, const char *json)
{
    cJSON *root = cJSON_Parse(json);
    const cJSON *np, *pol, *ep, *bin;

    CHECK(root != NULL);
    np = cJSON_GetObjectItemCaseSensitive(root, "network_policies");
    cJSON_ArrayForEach(pol, np)
    {
        cJSON_ArrayForEach(ep, cJSON_GetObjectItemCaseSensitive(pol, "endpoints"))
        {
            const cJSON *host = cJSON_GetObjectItemCaseSensitive(ep, "host");
            if (cJSON_IsString(host))
                add_host(pr, host->valuestring, first_port(ep), PROBE_HOSTS - 3);
            add_rules(pr, cJSON_GetObjectItemCaseSensitive(ep, "rules"));
            add_rules(pr, cJSON_GetObjectItemCaseSensitive(ep, "deny_rules"));
        }
        cJSON_ArrayForEach(bin, cJSON_GetObjectItemCaseSensitive(pol, "binaries"))
        {
            if (pr->nexes < PROBE_EXES && cJSON_IsString(bin) &&
                unglob(pr->exes[pr->nexes], PROBE_LEN, "", bin->valuestring))
                pr->nexes++;
        }
    }
    cJSON_Delete(root);
}

static void check_l7_text(const struct policy_l7 *o)
{
    size_t n = strnlen(o->rule_missing, sizeof(o->rule_missing));

    CHECK(n < sizeof(o->rule_missing));
    if (o->verdict == POLICY_ALLOW) {
        CHECK(n == 0 && o->reason == NULL && o->policy_name != NULL);
        CHECK(o->deny_rule.path == NULL);
        return;
    }
    CHECK(o->reason != NULL);
    /* a method override's refusal says so, then gives the reason as for a method */
    const char *reason = o->reason;
    if (strncmp(reason, "method override: ", 17) == 0)
        reason += 17;
    if (o->deny_rule.path) {
        /* a deny rule refused: no allow rule can help, so none is suggested */
        CHECK(n == 0 && o->deny_rule.method && o->deny_rule.path[0] == '/');
        CHECK(strcmp(reason, "matched deny rule") == 0);
        return;
    }
    /* a rule is suggested exactly when an endpoint refused by its access or rules */
    bool fixable = strncmp(reason, "method not allowed by access", 28) == 0 ||
                   strcmp(reason, "no rule allows method and path") == 0 ||
                   strcmp(reason, "websocket upgrade not allowed by access read-only") == 0;
    CHECK(fixable == (n > 0));
    if (!fixable)
        return;
    /* the suggested rule is JSON an operator can paste: an object with method and path */
    cJSON *rule = cJSON_Parse(o->rule_missing);
    CHECK(rule != NULL);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(rule, "method");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(rule, "path");
    CHECK(cJSON_IsString(m) && cJSON_IsString(p) && p->valuestring[0] == '/');
    cJSON_Delete(rule);
}

/* The same request on a connection dialled to a private address: only endpoints whose
 * allowed_ips cover it count, so it never gets further than without one (o7), and it goes
 * through only where the SSRF guard would have opened the address for a rest tunnel. */
static void decide_private(const struct policy *pol, const char *host, uint16_t port,
                           const struct policy_peer *peer, const char *method, const char *path,
                           const struct policy_l4 *o4, const struct policy_l7 *o7)
{
    static const char *const v4[] = {"127.0.0.1", "10.1.2.3"};
    for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
        CHECK(inet_pton(AF_INET, v4[i], &sin.sin_addr) == 1);
        const struct sockaddr *sa = (const struct sockaddr *)&sin;
        struct policy_l7 o;
        struct policy_request q;
        policy_request_init(&q, method, path, false);
        policy_check_l7(pol, host, port, peer, sa, &q, &o);
        check_l7_text(&o);
        if (o.verdict == POLICY_ALLOW)
            CHECK(o7->verdict == POLICY_ALLOW);
        if (o.verdict == POLICY_AUDIT)
            CHECK(o7->verdict != POLICY_DENY);
        if (o.verdict != POLICY_DENY && o4->protocol == POLICY_REST)
            CHECK(policy_ip_allowed(pol, host, port, peer, sa));
    }
}

/* DENY over AUDIT over ALLOW. */
static enum policy_verdict strictest(enum policy_verdict a, enum policy_verdict b)
{
    if (a == POLICY_DENY || b == POLICY_DENY)
        return POLICY_DENY;
    return a == POLICY_AUDIT || b == POLICY_AUDIT ? POLICY_AUDIT : POLICY_ALLOW;
}

static enum policy_verdict plain_l7(const struct policy *pol, const char *host, uint16_t port,
                                    const struct policy_peer *peer, const char *method,
                                    const char *path, bool upgrade, struct policy_l7 *o)
{
    struct policy_request q;
    policy_request_init(&q, method, path, upgrade);
    policy_check_l7(pol, host, port, peer, NULL, &q, o);
    check_l7_text(o);
    return o->verdict;
}

/* An upgrade is never let further than the same GET; a request with a method override is
 * decided as the stricter of its method and the override. */
static void decide_upgrade_and_override(const struct policy *pol, const char *host, uint16_t port,
                                        const struct policy_peer *peer, const struct probes *pr,
                                        size_t path, const struct policy_l7 *o7)
{
    struct policy_l7 o;
    enum policy_verdict up =
        plain_l7(pol, host, port, peer, pr->methods[0], pr->paths[path], true, &o);
    CHECK(strictest(up, o7->verdict) == up);

    for (size_t j = 1; j < pr->nmethods; j++) {
        struct policy_l7 alone;
        enum policy_verdict v =
            plain_l7(pol, host, port, peer, pr->methods[j], pr->paths[path], false, &alone);
        struct policy_request q;
        policy_request_init(&q, pr->methods[0], pr->paths[path], false);
        CHECK(policy_request_add_field(&q, "X-HTTP-Method-Override", 22, pr->methods[j],
                                       strlen(pr->methods[j])) == 0);
        policy_check_l7(pol, host, port, peer, NULL, &q, &o);
        check_l7_text(&o);
        CHECK(o.verdict == strictest(o7->verdict, v));
    }
}

/* The method-override parsers on arbitrary text: whatever they keep is a distinct, upper-case
 * token that fits. */
static void check_override_parsers(const char *text)
{
    struct policy_request q;
    policy_request_init(&q, "POST", "/", false);
    (void)policy_request_add_query(&q, text);
    (void)policy_request_add_field(&q, "x-http-method", 13, text, strlen(text));
    CHECK(q.noverrides <= POLICY_OVERRIDE_MAX);
    for (size_t i = 0; i < q.noverrides; i++) {
        size_t n = strnlen(q.overrides[i], POLICY_METHOD_MAX);
        CHECK(n > 0 && n < POLICY_METHOD_MAX);
        for (size_t k = 0; k < n; k++)
            CHECK(!(q.overrides[i][k] >= 'a' && q.overrides[i][k] <= 'z') &&
                  q.overrides[i][k] > ' ' && q.overrides[i][k] != ',');
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(q.overrides[i], q.overrides[k]) != 0);
    }
}

static void decide(const struct policy *pol, const char *host, uint16_t port,
                   const struct policy_peer *peer, const struct probes *pr)
{
    struct policy_l4 o4;
    struct policy_l7 o7;

    policy_check_l4(pol, host, port, peer, &o4);
    CHECK(o4.verdict == POLICY_ALLOW || o4.verdict == POLICY_DENY);
    CHECK(o4.protocol == POLICY_REST || o4.protocol == POLICY_TCP);
    if (o4.verdict == POLICY_ALLOW)
        CHECK(o4.policy_name != NULL && o4.reason == NULL);
    else
        CHECK(o4.reason != NULL);

    for (size_t i = 0; i < pr->npaths; i++) {
        for (size_t j = 0; j < pr->nmethods; j++) {
            plain_l7(pol, host, port, peer, pr->methods[j], pr->paths[i], false, &o7);
            CHECK(o7.verdict == POLICY_ALLOW || o7.verdict == POLICY_DENY ||
                  o7.verdict == POLICY_AUDIT);
            if (j == 0)
                decide_upgrade_and_override(pol, host, port, peer, pr, i, &o7);
            /* a request is never allowed (or audited) inside a tunnel L4 would refuse */
            if (o7.verdict != POLICY_DENY)
                CHECK(o4.verdict == POLICY_ALLOW);
            decide_private(pol, host, port, peer, pr->methods[j], pr->paths[i], &o4, &o7);
        }
    }
}

static void check_ips(const struct policy *pol, const char *host, uint16_t port,
                      const struct policy_peer *peer)
{
    static const char *const v4[] = {"127.0.0.1", "10.1.2.3", "93.184.216.34"};
    static const struct policy_peer anyone = {.binary_identity_off = true};
    struct policy_l4 o4;

    policy_check_l4(pol, host, port, peer, &o4);
    for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
        CHECK(inet_pton(AF_INET, v4[i], &sin.sin_addr) == 1);
        /* an address is opened only for a peer that L4 lets through to host and port */
        if (policy_ip_allowed(pol, host, port, peer, (const struct sockaddr *)&sin))
            CHECK(o4.verdict == POLICY_ALLOW);
    }
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    CHECK(inet_pton(AF_INET6, "::1", &sin6.sin6_addr) == 1);
    if (policy_ip_allowed(pol, host, port, peer, (const struct sockaddr *)&sin6))
        CHECK(o4.verdict == POLICY_ALLOW);
    CHECK(!policy_ip_allowed(pol, host, port, peer, NULL));
}

static void exercise(const struct policy *pol, const char *json)
{
    /* a normalisation case, an address, and the empty host */
    static const char *const fixed_hosts[] = {"API.GitHub.com.", "127.0.0.1", ""};
    struct probes *pr = calloc(1, sizeof(*pr));
    struct policy_peer anyone = {.binary_identity_off = true}, unknown = {0}, named = {0};
    const char *exe_list[PROBE_EXES + 2];

    CHECK(pr != NULL);
    add_path(pr, "/");
    add_path(pr, "/repos/o/r/issues");
    add_method(pr, "GET");
    add_method(pr, "POST");
    collect(pr, json);
    for (size_t i = 0; i < sizeof(fixed_hosts) / sizeof(fixed_hosts[0]); i++)
        add_host(pr, fixed_hosts[i], 443, PROBE_HOSTS);

    /* the policy's binaries (a globstar entry turned into a file below it) and a stranger */
    for (size_t i = 0; i < pr->nexes; i++)
        exe_list[i] = pr->exes[i];
    exe_list[pr->nexes] = "/usr/bin/stranger";
    exe_list[pr->nexes + 1] = NULL;
    named.procs[0] = exe_list;
    named.nprocs = 1;

    for (size_t i = 0; i < pr->nhosts; i++) {
        decide(pol, pr->hosts[i], pr->ports[i], &anyone, pr);
        decide(pol, pr->hosts[i], pr->ports[i], &named, pr);
        struct policy_l4 o4;
        policy_check_l4(pol, pr->hosts[i], pr->ports[i], &unknown, &o4);
        /* an unidentified peer is refused wherever binaries are named, never let through */
        if (!policy_uses_binaries(pol)) {
            struct policy_l4 any4;
            policy_check_l4(pol, pr->hosts[i], pr->ports[i], &anyone, &any4);
            CHECK(o4.verdict == any4.verdict);
        }
        check_ips(pol, pr->hosts[i], pr->ports[i], &anyone);
        check_ips(pol, pr->hosts[i], pr->ports[i], &named);
        check_ips(pol, pr->hosts[i], pr->ports[i], &unknown);
    }
    /* a NULL peer and NULL method or path must not crash */
    policy_check_l4(pol, pr->hosts[0], pr->ports[0], NULL, &(struct policy_l4){0});
    struct policy_l7 o7;
    plain_l7(pol, pr->hosts[0], pr->ports[0], &anyone, NULL, NULL, false, &o7);
    check_override_parsers(json);
    free(pr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy without a terminator: ASan sees any read past size */
    char *json = malloc(size ? size : 1);
    char *errors = (char *)1;

    CHECK(json != NULL);
    memcpy(json, data, size);
    struct policy *pol = policy_parse(json, size, &errors);
    if (!pol) {
        /* one error a line, never an empty text */
        CHECK(errors != NULL && errors[0] != '\0');
        CHECK(errors[strlen(errors) - 1] == '\n');
        CHECK(strstr(errors, "\n\n") == NULL);
        free(errors);
        CHECK(policy_parse(json, size, NULL) == NULL);
        free(json);
        return 0;
    }
    CHECK(errors == NULL);
    /* the snapshot keeps its source exactly */
    const char *src = policy_source(pol);
    CHECK(src != NULL && strlen(src) == size && memcmp(src, data, size) == 0);
    policy_endpoint_count(pol);

    policy_ref(pol);
    exercise(pol, src);
    policy_unref(pol);
    policy_unref(pol);

    /* the same text without an error buffer loads the same way */
    pol = policy_parse(json, size, NULL);
    CHECK(pol != NULL);
    policy_unref(pol);
    free(json);
    return 0;
}
