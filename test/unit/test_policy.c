/* SPDX-License-Identifier: MIT */
/* Unit tests for policy: tables of host, port, access, rule and audit decisions, binaries with
 * and without peer identity, allowed_ips, tcp endpoints, rule_missing JSON, and one table of
 * load errors whose JSON path prefixes are asserted exactly. Also loads the policies in policy/. */
#include "airlock/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "airlock/path.h"
#include "test.h"

/* Test JSON is written with single quotes and turned into double quotes here. */
static char *dq(const char *s)
{
    char *d = strdup(s);
    for (char *c = d; *c; c++) {
        if (*c == '\'')
            *c = '"';
    }
    return d;
}

static struct policy *load(const char *single_quoted)
{
    char *json = dq(single_quoted);
    char *errors = NULL;
    struct policy *p = policy_parse(json, strlen(json), &errors);
    if (!p)
        fprintf(stderr, "unexpected load failure:\n%s", errors ? errors : "(no text)\n");
    free(errors);
    free(json);
    return p;
}

static const struct policy_peer anyone = {.binary_identity_off = true};

static enum policy_verdict l4(const struct policy *p, const char *host, uint16_t port)
{
    struct policy_l4 out;
    policy_check_l4(p, host, port, &anyone, &out);
    return out.verdict;
}

/* policy_check_l7 for a plain request: a method and a path, no override, no upgrade. */
static void check_l7(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, const struct sockaddr *private_addr,
                     const char *method, const char *path, struct policy_l7 *out)
{
    struct policy_request q;
    policy_request_init(&q, method, path, false);
    policy_check_l7(p, host, port, peer, private_addr, &q, out);
}

static enum policy_verdict l7(const struct policy *p, const char *host, uint16_t port,
                              const char *method, const char *path, struct policy_l7 *out)
{
    struct policy_l7 tmp;
    if (!out)
        out = &tmp;
    check_l7(p, host, port, &anyone, NULL, method, path, out);
    return out->verdict;
}

/* ---- the example policies ---- */

static void test_policy_files(void)
{
    static const char *const files[] = {"../../policy/default.json", "../../policy/example.json"};
    for (size_t i = 0; i < 2; i++) {
        char *errors = NULL;
        struct policy *p = policy_load_file(files[i], &errors);
        if (!p)
            fprintf(stderr, "%s:\n%s", files[i], errors ? errors : "");
        CHECK(p != NULL);
        CHECK(errors == NULL);
        if (p) {
            CHECK(policy_endpoint_count(p) > 0);
            CHECK(strstr(policy_source(p), "\"version\"") != NULL);
            policy_unref(p);
        }
        free(errors);
    }

    char *errors = NULL;
    CHECK(policy_load_file("/nonexistent/airlock.json", &errors) == NULL);
    CHECK(errors && strncmp(errors, "/nonexistent/airlock.json: cannot read: ", 40) == 0);
    free(errors);
    errors = NULL;
    CHECK(policy_load_file("/", &errors) == NULL);
    CHECK(errors && strstr(errors, "not a regular file"));
    free(errors);
    /* A file that grows while it is read (a writer at work): refused, not parsed half-written.
     * A /proc file is a regular file whose size says 0 and whose read returns more. */
    errors = NULL;
    CHECK(policy_load_file("/proc/self/status", &errors) == NULL);
    CHECK(errors && strstr(errors, "/proc/self/status: cannot read: changed while being read"));
    free(errors);
}

/* The DESIGN.md example, decided end to end. */
static void test_design_example(void)
{
    struct policy *p = policy_load_file("../../policy/example.json", NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    struct policy_l4 o4;
    struct policy_l7 o7;

    policy_check_l4(p, "api.github.com", 443, &anyone, &o4);
    CHECK_EQ(o4.verdict, POLICY_ALLOW);
    CHECK_STR(o4.policy_name, "github");
    CHECK_EQ(o4.protocol, POLICY_REST);
    CHECK_EQ(l4(p, "raw.githubusercontent.com", 443), POLICY_ALLOW);
    CHECK_EQ(l4(p, "githubusercontent.com", 443), POLICY_DENY);
    CHECK_EQ(l4(p, "wss-primary.slack.com", 443), POLICY_ALLOW);
    CHECK_EQ(l4(p, "127.0.0.1", 11434), POLICY_ALLOW);
    CHECK_EQ(l4(p, "127.0.0.1", 11435), POLICY_DENY);
    CHECK_EQ(l4(p, "example.com", 443), POLICY_DENY);

    CHECK_EQ(l7(p, "api.github.com", 443, "GET", "/repos/o/r", NULL), POLICY_ALLOW);
    CHECK_EQ(l7(p, "api.github.com", 443, "POST", "/repos/o/r/issues", NULL), POLICY_ALLOW);
    CHECK_EQ(l7(p, "api.github.com", 443, "POST", "/repos/o/r/pulls", &o7), POLICY_DENY);
    CHECK_STR(o7.reason, "method not allowed by access read-only");
    CHECK_STR(o7.policy_name, "github");
    CHECK_STR(o7.rule_missing, "{\"method\":\"POST\",\"path\":\"/repos/o/r/pulls\"}");
    CHECK_EQ(l7(p, "api.github.com", 443, "GET", "/admin", &o7), POLICY_DENY);
    CHECK_STR(o7.reason, "matched deny rule");
    CHECK_STR(o7.rule_missing, "");
    CHECK(o7.deny_rule.path != NULL);
    CHECK_EQ(l7(p, "api.github.com", 443, "GET", "/admin/users", NULL), POLICY_DENY);
    CHECK_EQ(l7(p, "api.github.com", 443, "GET", "/administrator", NULL), POLICY_ALLOW);
    CHECK_EQ(l7(p, "wss-primary.slack.com", 443, "DELETE", "/x", NULL), POLICY_ALLOW);
    policy_unref(p);
}

/* ---- hosts ---- */

struct host_case {
    const char *host;
    uint16_t port;
    enum policy_verdict want;
};

static void test_hosts(void)
{
    struct policy *p = load("{'version':1,'network_policies':{'h':{'endpoints':["
                            "{'host':'api.github.com','port':443,'access':'full'},"
                            "{'host':'*.one.example.com','port':443,'access':'full'},"
                            "{'host':'**.any.example.com','port':443,'access':'full'},"
                            "{'host':'Mixed.Case.COM.','port':443,'access':'full'},"
                            "{'host':'127.0.0.1','port':11434,'access':'full'},"
                            "{'host':'[::0001]','port':8080,'access':'full'},"
                            "{'host':'2001:DB8::1','port':8080,'access':'full'},"
                            "{'host':'under_score.example.org','port':443,'access':'full'},"
                            "{'host':'localhost','port':3000,'access':'full'}"
                            "]}}}");
    static const struct host_case cases[] = {
        {"api.github.com", 443, POLICY_ALLOW},
        {"API.GitHub.com", 443, POLICY_ALLOW},
        {"api.github.com.", 443, POLICY_ALLOW},
        {"api.github.com", 80, POLICY_DENY},
        {"x.api.github.com", 443, POLICY_DENY},
        {"github.com", 443, POLICY_DENY},
        {"api.github.co", 443, POLICY_DENY},
        {"api.github.com.evil.com", 443, POLICY_DENY},
        {"a.one.example.com", 443, POLICY_ALLOW},
        {"A.ONE.EXAMPLE.COM.", 443, POLICY_ALLOW},
        {"one.example.com", 443, POLICY_DENY},
        {"a.b.one.example.com", 443, POLICY_DENY},
        {"xone.example.com", 443, POLICY_DENY},
        {"a.one.example.com", 444, POLICY_DENY},
        {"a.any.example.com", 443, POLICY_ALLOW},
        {"a.b.c.any.example.com", 443, POLICY_ALLOW},
        {"any.example.com", 443, POLICY_DENY},
        {"xany.example.com", 443, POLICY_DENY},
        {".any.example.com", 443, POLICY_DENY},
        {"mixed.case.com", 443, POLICY_ALLOW},
        {"127.0.0.1", 11434, POLICY_ALLOW},
        {"127.0.0.2", 11434, POLICY_DENY},
        {"::1", 8080, POLICY_ALLOW},
        {"2001:db8::1", 8080, POLICY_ALLOW},
        {"2001:db8::2", 8080, POLICY_DENY},
        {"under_score.example.org", 443, POLICY_ALLOW},
        {"localhost", 3000, POLICY_ALLOW},
        {"", 443, POLICY_DENY},
        {".", 443, POLICY_DENY},
        {"com", 443, POLICY_DENY},
        {"example.com", 443, POLICY_DENY},
    };
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_EQ(policy_endpoint_count(p), 9);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum policy_verdict got = l4(p, cases[i].host, cases[i].port);
        if (got != cases[i].want)
            fprintf(stderr, "host case %zu: %s:%u\n", i, cases[i].host, cases[i].port);
        CHECK_EQ(got, cases[i].want);
    }
    struct policy_l4 o;
    policy_check_l4(p, "nope.example", 443, &anyone, &o);
    CHECK_STR(o.reason, "no endpoint matches host and port");
    CHECK(o.policy_name == NULL);
    policy_check_l4(p, NULL, 443, &anyone, &o);
    CHECK_EQ(o.verdict, POLICY_DENY);
    policy_unref(p);
}

/* ---- ports ---- */

static void test_ports(void)
{
    struct policy *p =
        load("{'version':1,'network_policies':{'p':{'endpoints':["
             "{'host':'a.example.com','ports':[443,'8000-8099',9000],'access':'full'},"
             "{'host':'b.example.com','port':65535,'access':'full'},"
             "{'host':'c.example.com','ports':['1-65535'],'access':'full'},"
             "{'host':'d.example.com','ports':['7-7'],'access':'full'}"
             "]}}}");
    static const struct host_case cases[] = {
        {"a.example.com", 443, POLICY_ALLOW},   {"a.example.com", 444, POLICY_DENY},
        {"a.example.com", 7999, POLICY_DENY},   {"a.example.com", 8000, POLICY_ALLOW},
        {"a.example.com", 8050, POLICY_ALLOW},  {"a.example.com", 8099, POLICY_ALLOW},
        {"a.example.com", 8100, POLICY_DENY},   {"a.example.com", 9000, POLICY_ALLOW},
        {"b.example.com", 65535, POLICY_ALLOW}, {"b.example.com", 1, POLICY_DENY},
        {"c.example.com", 1, POLICY_ALLOW},     {"c.example.com", 65535, POLICY_ALLOW},
        {"d.example.com", 7, POLICY_ALLOW},     {"d.example.com", 8, POLICY_DENY},
        {"a.example.com", 0, POLICY_DENY},
    };
    CHECK(p != NULL);
    if (!p)
        return;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum policy_verdict got = l4(p, cases[i].host, cases[i].port);
        if (got != cases[i].want)
            fprintf(stderr, "port case %zu: %s:%u\n", i, cases[i].host, cases[i].port);
        CHECK_EQ(got, cases[i].want);
    }
    policy_unref(p);
}

/* ---- access presets, rules, deny rules ---- */

struct l7_case {
    const char *host;
    const char *method;
    const char *path;
    enum policy_verdict want;
    const char *reason; /* NULL: not checked */
};

static void run_l7_cases(const struct policy *p, const struct l7_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct policy_l7 o;
        enum policy_verdict got = l7(p, cases[i].host, 443, cases[i].method, cases[i].path, &o);
        if (got != cases[i].want)
            fprintf(stderr, "l7 case %zu: %s %s %s: got %d (%s)\n", i, cases[i].host,
                    cases[i].method, cases[i].path, got, o.reason ? o.reason : "");
        CHECK_EQ(got, cases[i].want);
        if (cases[i].reason)
            CHECK_STR(o.reason, cases[i].reason);
        if (got == POLICY_ALLOW) {
            CHECK(o.reason == NULL);
            CHECK_STR(o.rule_missing, "");
        }
    }
}

static void test_access(void)
{
    struct policy *p =
        load("{'version':1,'network_policies':{'a':{'endpoints':["
             "{'host':'ro.example.com','port':443,'access':'read-only'},"
             "{'host':'rw.example.com','port':443,'access':'read-write'},"
             "{'host':'full.example.com','port':443,'access':'full'},"
             "{'host':'rules.example.com','port':443,'rules':["
             "  {'method':'POST','path':'/v1/messages'},{'method':'*','path':'/public/**'},"
             "  {'method':'GET','path':'/v1/*.json'}]},"
             "{'host':'mix.example.com','port':443,'access':'read-only',"
             "  'rules':[{'method':'POST','path':'/repos/*/*/issues'}],"
             "  'deny_rules':[{'method':'*','path':'/admin/**'},{'method':'GET','path':'/secret'},"
             "                {'method':'POST','path':'/repos/*/private/issues'}]},"
             "{'host':'deny.example.com','port':443,'access':'full',"
             "  'deny_rules':[{'method':'DELETE','path':'/**'}]}"
             "]}}}");
    static const struct l7_case cases[] = {
        {"ro.example.com", "GET", "/x", POLICY_ALLOW, NULL},
        {"ro.example.com", "HEAD", "/x", POLICY_ALLOW, NULL},
        {"ro.example.com", "OPTIONS", "/", POLICY_ALLOW, NULL},
        {"ro.example.com", "POST", "/x", POLICY_DENY, "method not allowed by access read-only"},
        {"ro.example.com", "PUT", "/x", POLICY_DENY, NULL},
        {"ro.example.com", "DELETE", "/x", POLICY_DENY, NULL},
        {"ro.example.com", "get", "/x", POLICY_DENY, NULL},
        {"ro.example.com", "Get", "/x", POLICY_DENY, NULL},
        {"ro.example.com", "CONNECT", "/x", POLICY_DENY, NULL},
        {"rw.example.com", "GET", "/x", POLICY_ALLOW, NULL},
        {"rw.example.com", "POST", "/x", POLICY_ALLOW, NULL},
        {"rw.example.com", "PUT", "/x", POLICY_ALLOW, NULL},
        {"rw.example.com", "PATCH", "/x", POLICY_ALLOW, NULL},
        {"rw.example.com", "DELETE", "/x", POLICY_DENY, "method not allowed by access read-write"},
        {"rw.example.com", "TRACE", "/x", POLICY_DENY, NULL},
        {"full.example.com", "DELETE", "/x", POLICY_ALLOW, NULL},
        {"full.example.com", "PROPFIND", "/x/y", POLICY_ALLOW, NULL},
        {"rules.example.com", "POST", "/v1/messages", POLICY_ALLOW, NULL},
        {"rules.example.com", "POST", "/v1/messages/x", POLICY_DENY,
         "no rule allows method and path"},
        {"rules.example.com", "GET", "/v1/messages", POLICY_DENY, "no rule allows method and path"},
        {"rules.example.com", "DELETE", "/public", POLICY_ALLOW, NULL},
        {"rules.example.com", "PUT", "/public/a/b", POLICY_ALLOW, NULL},
        {"rules.example.com", "GET", "/v1/models.json", POLICY_ALLOW, NULL},
        {"rules.example.com", "GET", "/v1/a/models.json", POLICY_DENY, NULL},
        {"mix.example.com", "GET", "/repos/o/r", POLICY_ALLOW, NULL},
        {"mix.example.com", "POST", "/repos/o/r/issues", POLICY_ALLOW, NULL},
        {"mix.example.com", "POST", "/repos/o/private/issues", POLICY_DENY, "matched deny rule"},
        {"mix.example.com", "POST", "/repos/o/r/pulls", POLICY_DENY,
         "method not allowed by access read-only"},
        {"mix.example.com", "GET", "/admin", POLICY_DENY, "matched deny rule"},
        {"mix.example.com", "HEAD", "/admin/", POLICY_DENY, "matched deny rule"},
        {"mix.example.com", "GET", "/admin/a/b", POLICY_DENY, "matched deny rule"},
        {"mix.example.com", "GET", "/administrators", POLICY_ALLOW, NULL},
        {"mix.example.com", "GET", "/secret", POLICY_DENY, "matched deny rule"},
        {"mix.example.com", "HEAD", "/secret", POLICY_DENY, "matched deny rule"},
        {"mix.example.com", "OPTIONS", "/secret", POLICY_ALLOW, NULL},
        {"mix.example.com", "GET", "/secret/x", POLICY_ALLOW, NULL},
        {"deny.example.com", "DELETE", "/", POLICY_DENY, "matched deny rule"},
        {"deny.example.com", "DELETE", "/a/b", POLICY_DENY, "matched deny rule"},
        {"deny.example.com", "POST", "/a/b", POLICY_ALLOW, NULL},
        {"nowhere.example.com", "GET", "/", POLICY_DENY, "no endpoint matches host and port"},
    };
    CHECK(p != NULL);
    if (!p)
        return;
    run_l7_cases(p, cases, sizeof(cases) / sizeof(cases[0]));
    policy_unref(p);
}

/* Several endpoints for one host: any allowing one wins (deny rules bind only their own
 * endpoint); audit only when every endpoint refuses. */
static void test_audit_and_overlap(void)
{
    struct policy *p =
        load("{'version':1,'network_policies':{"
             "'strict':{'endpoints':[{'host':'api.example.com','port':443,'access':'read-only',"
             "  'deny_rules':[{'method':'*','path':'/internal/**'}]}]},"
             "'writer':{'endpoints':[{'host':'api.example.com','port':443,"
             "  'rules':[{'method':'POST','path':'/v1/**'}]}]},"
             "'watch':{'endpoints':[{'host':'api.example.com','port':443,'enforcement':'audit',"
             "  'rules':[{'method':'PUT','path':'/v2/*'}]}]},"
             "'audited':{'endpoints':[{'host':'audit.example.com','port':443,'access':'read-only',"
             "  'enforcement':'audit','deny_rules':[{'method':'*','path':'/x'}]}]},"
             "'two':{'endpoints':[{'host':'two.example.com','port':443,'access':'read-only'}]},"
             "'three':{'endpoints':[{'host':'two.example.com','port':443,'access':'read-write'}]}"
             "}}");
    CHECK(p != NULL);
    if (!p)
        return;
    struct policy_l7 o;

    CHECK_EQ(l7(p, "api.example.com", 443, "GET", "/a", &o), POLICY_ALLOW);
    CHECK_STR(o.policy_name, "strict");
    CHECK_EQ(l7(p, "api.example.com", 443, "POST", "/v1/x", &o), POLICY_ALLOW);
    CHECK_STR(o.policy_name, "writer");
    /* strict's deny rule does not bind writer's endpoint */
    CHECK_EQ(l7(p, "api.example.com", 443, "GET", "/internal/x", &o), POLICY_AUDIT);
    CHECK_STR(o.policy_name, "watch");
    CHECK_STR(o.reason, "no rule allows method and path");
    CHECK_EQ(l7(p, "api.example.com", 443, "PUT", "/v2/x", &o), POLICY_ALLOW);
    CHECK_STR(o.policy_name, "watch");
    CHECK_EQ(l7(p, "api.example.com", 443, "DELETE", "/v1/x", &o), POLICY_AUDIT);
    CHECK_STR(o.policy_name, "watch");
    CHECK_STR(o.rule_missing, "{\"method\":\"DELETE\",\"path\":\"/v1/x\"}");

    CHECK_EQ(l7(p, "audit.example.com", 443, "GET", "/a", &o), POLICY_ALLOW);
    CHECK_EQ(l7(p, "audit.example.com", 443, "POST", "/a", &o), POLICY_AUDIT);
    CHECK_STR(o.reason, "method not allowed by access read-only");
    CHECK_STR(o.policy_name, "audited");
    CHECK_EQ(l7(p, "audit.example.com", 443, "GET", "/x", &o), POLICY_AUDIT);
    CHECK_STR(o.reason, "matched deny rule");

    /* every endpoint refuses in enforce mode: the last one that denied is named */
    CHECK_EQ(l7(p, "two.example.com", 443, "DELETE", "/a", &o), POLICY_DENY);
    CHECK_STR(o.policy_name, "three");
    CHECK_STR(o.reason, "method not allowed by access read-write");
    CHECK_EQ(l7(p, "two.example.com", 443, "POST", "/a", &o), POLICY_ALLOW);
    CHECK_STR(o.policy_name, "three");

    /* L4 names the first matching endpoint in file order */
    struct policy_l4 o4;
    policy_check_l4(p, "api.example.com", 443, &anyone, &o4);
    CHECK_STR(o4.policy_name, "strict");
    policy_unref(p);
}

/* Deny rules fail closed: one trailing slash either way, ASCII case, and HEAD under a GET
 * deny; allow rules stay exact, so neither direction widens what the policy lets through. */
static void test_deny_rules_fail_closed(void)
{
    struct policy *p =
        load("{'version':1,'network_policies':{'a':{'endpoints':["
             "{'host':'d.example.com','port':443,'access':'full','deny_rules':["
             "  {'method':'*','path':'/admin/*'},{'method':'GET','path':'/private/**'},"
             "  {'method':'*','path':'/tmp/'},{'method':'*','path':'/Export/*.CSV'},"
             "  {'method':'DELETE','path':'/'},{'method':'HEAD','path':'/probe'}]},"
             "{'host':'exact.example.com','port':443,'rules':["
             "  {'method':'GET','path':'/v1/items'},{'method':'GET','path':'/v1/dir/'}]},"
             "{'host':'watch.example.com','port':443,'access':'full','enforcement':'audit',"
             "  'deny_rules':[{'method':'GET','path':'/admin'}]}"
             "]}}}");
    static const struct l7_case cases[] = {
        /* one trailing slash either way */
        {"d.example.com", "GET", "/admin/users", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin/users/", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin/", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin/users/x", POLICY_ALLOW, NULL},
        {"d.example.com", "GET", "/administrator", POLICY_ALLOW, NULL},
        {"d.example.com", "GET", "/tmp", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "PUT", "/tmp/", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "PUT", "/tmp/x", POLICY_ALLOW, NULL},
        {"d.example.com", "DELETE", "/", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "DELETE", "/x", POLICY_ALLOW, NULL},
        /* ASCII case, in the path and in the glob */
        {"d.example.com", "GET", "/ADMIN/users", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "POST", "/Admin/Users/", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/PRIVATE/X", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/export/q1.csv", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/EXPORT/q1.Csv/", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/export/q1.csvx", POLICY_ALLOW, NULL},
        /* a GET deny covers HEAD, nothing else; a HEAD deny does not cover GET */
        {"d.example.com", "HEAD", "/private/x", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "HEAD", "/Private", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "POST", "/private/x", POLICY_ALLOW, NULL},
        {"d.example.com", "OPTIONS", "/private/x", POLICY_ALLOW, NULL},
        {"d.example.com", "HEAD", "/probe", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/probe", POLICY_ALLOW, NULL},
        /* allow rules stay exact */
        {"exact.example.com", "GET", "/v1/items", POLICY_ALLOW, NULL},
        {"exact.example.com", "GET", "/v1/items/", POLICY_DENY, "no rule allows method and path"},
        {"exact.example.com", "GET", "/V1/items", POLICY_DENY, "no rule allows method and path"},
        {"exact.example.com", "HEAD", "/v1/items", POLICY_DENY, "no rule allows method and path"},
        {"exact.example.com", "GET", "/v1/dir/", POLICY_ALLOW, NULL},
        {"exact.example.com", "GET", "/v1/dir", POLICY_DENY, "no rule allows method and path"},
        /* audit mode sees the same matches */
        {"watch.example.com", "HEAD", "/Admin/", POLICY_AUDIT, "matched deny rule"},
        {"watch.example.com", "GET", "/admins", POLICY_ALLOW, NULL},
        /* trailing dots and encoded spaces of every segment, as IIS and Windows drop them */
        {"d.example.com", "GET", "/admin.", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin%20", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/ADMIN.", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin../", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin.%20./users", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin/users%20.", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/tmp./", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/private%20%20/x", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin/.../users", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin%2520", POLICY_ALLOW, NULL},
        {"d.example.com", "GET", "/admin%09", POLICY_ALLOW, NULL},
        {"d.example.com", "GET", "/x%20/admin/users/x", POLICY_ALLOW, NULL},
        /* the last segment's suffix, cut at its first and at its last dot */
        {"d.example.com", "GET", "/admin.json", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/Admin.JSON/", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin.tar.gz", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/admin/users.xml", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/private/x.json.", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "PUT", "/tmp.json", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/export/q1.csv.bak", POLICY_DENY, "matched deny rule"},
        {"d.example.com", "GET", "/export/q1.csvx.bak", POLICY_ALLOW, NULL},
        {"d.example.com", "GET", "/probe.json", POLICY_ALLOW, NULL},
        {"d.example.com", "HEAD", "/probe.json", POLICY_DENY, "matched deny rule"},
        /* only the last segment loses its suffix, and a leading dot is part of the name */
        {"d.example.com", "GET", "/admin.d/users/x", POLICY_ALLOW, NULL},
        {"d.example.com", "GET", "/admin-x.json", POLICY_ALLOW, NULL},
        {"d.example.com", "DELETE", "/.json", POLICY_ALLOW, NULL},
        {"d.example.com", "DELETE", "/.", POLICY_DENY, "matched deny rule"},
        /* allow rules stay exact on these spellings too */
        {"exact.example.com", "GET", "/v1/items.", POLICY_DENY, "no rule allows method and path"},
        {"exact.example.com", "GET", "/v1/items.json", POLICY_DENY,
         "no rule allows method and path"},
        {"exact.example.com", "GET", "/v1/items%20", POLICY_DENY, "no rule allows method and path"},
    };
    CHECK(p != NULL);
    if (!p)
        return;
    run_l7_cases(p, cases, sizeof(cases) / sizeof(cases[0]));

    /* What the canonicaliser makes of dot and slash tricks meets the same rules. */
    static const char *const tricks[] = {"/admin/users/.", "/admin/users/./", "/admin//users//",
                                         "/admin/users/x/..", "/ADMIN/users;x=1/"};
    for (size_t i = 0; i < sizeof(tricks) / sizeof(tricks[0]); i++) {
        char canon[PATH_MAX_LEN + 1], query[16];
        bool has_query;
        CHECK_EQ(path_canonicalize(tricks[i], strlen(tricks[i]), canon, sizeof(canon), query,
                                   sizeof(query), &has_query),
                 PATH_OK);
        struct policy_l7 o;
        if (l7(p, "d.example.com", 443, "GET", canon, &o) != POLICY_DENY)
            fprintf(stderr, "trick %s (canonical %s) allowed\n", tricks[i], canon);
        CHECK_EQ(o.verdict, POLICY_DENY);
    }

    /* The asterisk-form of OPTIONS asks about the whole server: a deny rule that covers "/"
     * covers it, and only a preset that allows OPTIONS allows it. */
    struct policy *star = load("{'version':1,'network_policies':{'a':{'endpoints':["
                               "{'host':'all.example.com','port':443,'access':'full',"
                               "  'deny_rules':[{'method':'*','path':'/**'}]},"
                               "{'host':'root.example.com','port':443,'access':'full',"
                               "  'deny_rules':[{'method':'OPTIONS','path':'/'}]},"
                               "{'host':'sub.example.com','port':443,'access':'full',"
                               "  'deny_rules':[{'method':'*','path':'/a/**'}]},"
                               "{'host':'ro.example.com','port':443,'access':'read-only'}"
                               "]}}}");
    CHECK(star != NULL);
    if (star) {
        struct policy_l7 o;
        CHECK_EQ(l7(star, "all.example.com", 443, "OPTIONS", "*", &o), POLICY_DENY);
        CHECK_STR(o.reason, "matched deny rule");
        CHECK_STR(o.deny_rule.path, "/**");
        CHECK_EQ(l7(star, "root.example.com", 443, "OPTIONS", "*", &o), POLICY_DENY);
        CHECK_EQ(l7(star, "sub.example.com", 443, "OPTIONS", "*", &o), POLICY_ALLOW);
        CHECK_EQ(l7(star, "ro.example.com", 443, "OPTIONS", "*", &o), POLICY_ALLOW);
        policy_unref(star);
    }

    /* Longer than any canonical path: no deny rule could be checked, so it is refused. The
     * longest canonical path is still decided normally. */
    char *longest = malloc(PATH_MAX_LEN + 2);
    CHECK(longest != NULL);
    if (longest) {
        memset(longest, 'a', PATH_MAX_LEN + 1);
        longest[0] = '/';
        longest[PATH_MAX_LEN] = '\0';
        struct policy_l7 o;
        CHECK_EQ(l7(p, "d.example.com", 443, "GET", longest, &o), POLICY_ALLOW);
        longest[PATH_MAX_LEN] = 'a';
        longest[PATH_MAX_LEN + 1] = '\0';
        CHECK_EQ(l7(p, "d.example.com", 443, "GET", longest, &o), POLICY_DENY);
        CHECK_STR(o.reason, "path too long");
        free(longest);
    }
    policy_unref(p);
}

/* ---- method overrides ---- */

static int add_field(struct policy_request *q, const char *name, const char *value)
{
    return policy_request_add_field(q, name, strlen(name), value, strlen(value));
}

/* Which override values a request is found to carry, joined with ' ' ("" for none), or
 * "400" when it is refused. */
static const char *overrides_of(const char *field, const char *value, const char *query)
{
    static char out[POLICY_OVERRIDE_MAX * POLICY_METHOD_MAX + 8];
    struct policy_request q;

    policy_request_init(&q, "POST", "/", false);
    if ((field && add_field(&q, field, value) < 0) || policy_request_add_query(&q, query) < 0)
        return "400";
    out[0] = '\0';
    for (size_t i = 0; i < q.noverrides; i++) {
        strcat(out, i ? " " : "");
        strcat(out, q.overrides[i]);
    }
    return out;
}

static void test_method_override_parsing(void)
{
    static const struct {
        const char *field, *value, *query, *want;
    } cases[] = {
        /* the three header names, in any case; other fields are not overrides */
        {"X-HTTP-Method-Override", "DELETE", NULL, "DELETE"},
        {"x-http-method", "PUT", NULL, "PUT"},
        {"X-METHOD-OVERRIDE", "PATCH", NULL, "PATCH"},
        {"X-HTTP-Method-Overrides", "DELETE", NULL, ""},
        {"X-Method", "DELETE", NULL, ""},
        {"Content-Type", "what ever", NULL, ""},
        /* upper-cased, a list of them, each judged once */
        {"X-HTTP-Method-Override", "delete", NULL, "DELETE"},
        {"X-HTTP-Method-Override", " GET ,\tdelete , DELETE", NULL, "GET DELETE"},
        /* not a method: refused */
        {"X-HTTP-Method-Override", "", NULL, "400"},
        {"X-HTTP-Method-Override", "DELETE,", NULL, "400"},
        {"X-HTTP-Method-Override", "DEL ETE", NULL, "400"},
        {"X-HTTP-Method-Override", "DELETE;x", NULL, "400"},
        {"X-HTTP-Method-Override", "\"DELETE\"", NULL, "400"},
        {"X-HTTP-Method-Override", "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDE", NULL,
         "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDE"},
        {"X-HTTP-Method-Override", "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEF", NULL, "400"},
        {"X-HTTP-Method-Override", "A,B,C,D,E,F,G,H", NULL, "A B C D E F G H"},
        {"X-HTTP-Method-Override", "A,B,C,D,E,F,G,H,I", NULL, "400"},
        {"X-HTTP-Method-Override", "A,B,C,D,E,F,G,H,a", NULL, "A B C D E F G H"},
        /* the query's _method, as PHP and Node read names and values */
        {NULL, NULL, "_method=DELETE", "DELETE"},
        {NULL, NULL, "a=1&_method=delete&b=2", "DELETE"},
        {NULL, NULL, "a=1;_method=PUT", "PUT"},
        {NULL, NULL, "_METHOD=DELETE", "DELETE"},
        {NULL, NULL, "%5Fmethod=DEL%45TE", "DELETE"},
        {NULL, NULL, ".method=DELETE", "DELETE"},
        {NULL, NULL, "+method=DELETE", ""}, /* a leading space is dropped, not read as _ */
        {NULL, NULL, "%20%20_method=DELETE", "DELETE"},
        {NULL, NULL, "_method[]=DELETE&_method[x]=PUT", "DELETE PUT"},
        {NULL, NULL, "_method=DELETE&_method=PATCH", "DELETE PATCH"},
        {NULL, NULL, "x_method=DELETE&_methods=DELETE&method=DELETE&_method_=DELETE", ""},
        {NULL, NULL, "q=_method=DELETE", ""},
        {NULL, NULL, "", ""},
        {NULL, NULL, "_method", "400"},
        {NULL, NULL, "_method=", "400"},
        {NULL, NULL, "_method=DEL+ETE", "400"},
        {NULL, NULL, "_method=DELETE%00", "400"},
        {NULL, NULL, "_method=ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGH", "400"},
        /* both places at once */
        {"X-HTTP-Method", "PUT", "_method=DELETE", "PUT DELETE"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = overrides_of(cases[i].field, cases[i].value, cases[i].query);
        if (strcmp(got, cases[i].want) != 0)
            fprintf(stderr, "override case %zu: got \"%s\"\n", i, got);
        CHECK_STR(got, cases[i].want);
    }
}

/* policy_check_l7 for a request whose X-HTTP-Method-Override lists overrides. */
static enum policy_verdict l7_override(const struct policy *p, const char *host, const char *method,
                                       const char *overrides, const char *path,
                                       struct policy_l7 *out)
{
    struct policy_request q;
    policy_request_init(&q, method, path, false);
    CHECK_EQ(add_field(&q, "X-HTTP-Method-Override", overrides), 0);
    policy_check_l7(p, host, 443, &anyone, NULL, &q, out);
    return out->verdict;
}

/* A request is judged for its own method and for every override it carries: an upstream
 * that honours the override performs that method. */
static void test_method_override_decisions(void)
{
    struct policy *p =
        load("{'version':1,'network_policies':{"
             "'a':{'endpoints':["
             "{'host':'rw.example.com','port':443,'access':'read-write'},"
             "{'host':'full.example.com','port':443,'access':'full','deny_rules':["
             "  {'method':'DELETE','path':'/repos/**'}]},"
             "{'host':'rules.example.com','port':443,'rules':["
             "  {'method':'POST','path':'/x'},{'method':'PUT','path':'/x'}]},"
             "{'host':'aud.example.com','port':443,'access':'read-write','enforcement':'audit'}"
             "]},"
             "'b':{'endpoints':[{'host':'rules.example.com','port':443,'rules':["
             "  {'method':'PATCH','path':'/x'}]}]}"
             "}}");
    CHECK(p != NULL);
    if (!p)
        return;
    struct policy_l7 o;

    /* read-write refuses DELETE, however it is spelt */
    CHECK_EQ(l7(p, "rw.example.com", 443, "DELETE", "/repos/o/r", &o), POLICY_DENY);
    CHECK_EQ(l7_override(p, "rw.example.com", "POST", "DELETE", "/repos/o/r", &o), POLICY_DENY);
    CHECK_STR(o.reason, "method override: method not allowed by access read-write");
    CHECK_STR(o.policy_name, "a");
    CHECK_STR(o.rule_missing, "{\"method\":\"DELETE\",\"path\":\"/repos/o/r\"}");
    CHECK_EQ(l7_override(p, "rw.example.com", "POST", "PUT, delete", "/repos/o/r", &o),
             POLICY_DENY);
    CHECK_STR(o.rule_missing, "{\"method\":\"DELETE\",\"path\":\"/repos/o/r\"}");
    CHECK_EQ(l7_override(p, "rw.example.com", "POST", "PUT", "/repos/o/r", &o), POLICY_ALLOW);
    CHECK_EQ(l7_override(p, "rw.example.com", "GET", "POST", "/repos/o/r", &o), POLICY_ALLOW);
    /* the method itself is judged as well: the override does not replace it */
    CHECK_EQ(l7_override(p, "rw.example.com", "DELETE", "GET", "/repos/o/r", &o), POLICY_DENY);
    CHECK_STR(o.reason, "method not allowed by access read-write");

    /* a deny rule for the override's method refuses */
    CHECK_EQ(l7_override(p, "full.example.com", "POST", "DELETE", "/repos/o/r", &o), POLICY_DENY);
    CHECK_STR(o.reason, "method override: matched deny rule");
    CHECK_STR(o.deny_rule.method, "DELETE");
    CHECK_STR(o.rule_missing, "");
    CHECK_EQ(l7_override(p, "full.example.com", "POST", "DELETE", "/other", &o), POLICY_ALLOW);

    /* each method may be allowed by a different endpoint; one refused by all refuses */
    CHECK_EQ(l7_override(p, "rules.example.com", "POST", "PUT,PATCH", "/x", &o), POLICY_ALLOW);
    CHECK_STR(o.policy_name, "a");
    CHECK_EQ(l7_override(p, "rules.example.com", "POST", "PUT,DELETE", "/x", &o), POLICY_DENY);
    CHECK_STR(o.reason, "method override: no rule allows method and path");
    CHECK_STR(o.rule_missing, "{\"method\":\"DELETE\",\"path\":\"/x\"}");

    /* an audited override makes the request audited */
    CHECK_EQ(l7_override(p, "aud.example.com", "POST", "DELETE", "/x", &o), POLICY_AUDIT);
    CHECK_STR(o.reason, "method override: method not allowed by access read-write");

    /* the query's _method counts the same */
    struct policy_request q;
    policy_request_init(&q, "POST", "/repos/o/r", false);
    CHECK_EQ(policy_request_add_query(&q, "_method=DELETE"), 0);
    policy_check_l7(p, "rw.example.com", 443, &anyone, NULL, &q, &o);
    CHECK_EQ(o.verdict, POLICY_DENY);
    CHECK_STR(o.reason, "method override: method not allowed by access read-write");
    policy_unref(p);
}

/* ---- websocket upgrades ---- */

static enum policy_verdict l7_upgrade(const struct policy *p, const char *host, const char *path,
                                      struct policy_l7 *out)
{
    struct policy_request q;
    policy_request_init(&q, "GET", path, true);
    policy_check_l7(p, host, 443, &anyone, NULL, &q, out);
    return out->verdict;
}

/* After its 101 an upgrade is a two-way channel no rule sees: read-only's GET alone never
 * allows one; a preset that allows writes or an explicit rule for its path does. */
static void test_upgrade_needs_write_grant(void)
{
    struct policy *p =
        load("{'version':1,'network_policies':{'a':{'endpoints':["
             "{'host':'ro.example.com','port':443,'access':'read-only','rules':["
             "  {'method':'GET','path':'/ws'},{'method':'*','path':'/any/*'},"
             "  {'method':'POST','path':'/post'}]},"
             "{'host':'rw.example.com','port':443,'access':'read-write'},"
             "{'host':'full.example.com','port':443,'access':'full','deny_rules':["
             "  {'method':'GET','path':'/private/**'}]},"
             "{'host':'rules.example.com','port':443,'rules':[{'method':'GET','path':'/ws'}]},"
             "{'host':'aud.example.com','port':443,'access':'read-only','enforcement':'audit'},"
             "{'host':'two.example.com','port':443,'access':'read-only'},"
             "{'host':'two.example.com','port':443,'access':'full'}"
             "]}}}");
    CHECK(p != NULL);
    if (!p)
        return;
    struct policy_l7 o;

    CHECK_EQ(l7(p, "ro.example.com", 443, "GET", "/chat", &o), POLICY_ALLOW);
    CHECK_EQ(l7_upgrade(p, "ro.example.com", "/chat", &o), POLICY_DENY);
    CHECK_STR(o.reason, "websocket upgrade not allowed by access read-only");
    CHECK_STR(o.rule_missing, "{\"method\":\"GET\",\"path\":\"/chat\"}");
    CHECK(o.deny_rule.path == NULL);
    /* explicit rules: GET or any method, for that path */
    CHECK_EQ(l7_upgrade(p, "ro.example.com", "/ws", &o), POLICY_ALLOW);
    CHECK_EQ(l7_upgrade(p, "ro.example.com", "/ws/", &o), POLICY_DENY);
    CHECK_EQ(l7_upgrade(p, "ro.example.com", "/any/x", &o), POLICY_ALLOW);
    CHECK_EQ(l7_upgrade(p, "ro.example.com", "/post", &o), POLICY_DENY);
    /* presets that allow writes */
    CHECK_EQ(l7_upgrade(p, "rw.example.com", "/chat", &o), POLICY_ALLOW);
    CHECK_EQ(l7_upgrade(p, "full.example.com", "/chat", &o), POLICY_ALLOW);
    /* deny rules still refuse */
    CHECK_EQ(l7_upgrade(p, "full.example.com", "/private/ws", &o), POLICY_DENY);
    CHECK_STR(o.reason, "matched deny rule");
    /* rules alone */
    CHECK_EQ(l7_upgrade(p, "rules.example.com", "/ws", &o), POLICY_ALLOW);
    CHECK_EQ(l7_upgrade(p, "rules.example.com", "/chat", &o), POLICY_DENY);
    CHECK_STR(o.reason, "no rule allows method and path");
    /* audit mode audits it; another endpoint for the host may grant it */
    CHECK_EQ(l7_upgrade(p, "aud.example.com", "/chat", &o), POLICY_AUDIT);
    CHECK_STR(o.reason, "websocket upgrade not allowed by access read-only");
    CHECK_EQ(l7_upgrade(p, "two.example.com", "/chat", &o), POLICY_ALLOW);
    policy_unref(p);
}

/* ---- protocol tcp ---- */

static void test_tcp(void)
{
    struct policy *p = load("{'version':1,'network_policies':{"
                            "'db':{'endpoints':[{'host':'db.example.com','port':5432,"
                            "  'protocol':'tcp','allowed_ips':['10.0.0.0/8']},"
                            "  {'host':'db.example.com','port':443,'access':'full'},"
                            "  {'host':'both.example.com','port':443,'protocol':'tcp',"
                            "   'enforcement':'enforce'}]},"
                            "'later':{'endpoints':[{'host':'both.example.com','port':443,"
                            "  'access':'full'}]}}}");
    CHECK(p != NULL);
    if (!p)
        return;
    struct policy_l4 o;
    policy_check_l4(p, "db.example.com", 5432, &anyone, &o);
    CHECK_EQ(o.verdict, POLICY_ALLOW);
    CHECK_EQ(o.protocol, POLICY_TCP);
    CHECK_STR(o.policy_name, "db");
    policy_check_l4(p, "db.example.com", 443, &anyone, &o);
    CHECK_EQ(o.protocol, POLICY_REST);
    /* the first matching endpoint decides the protocol */
    policy_check_l4(p, "both.example.com", 443, &anyone, &o);
    CHECK_EQ(o.protocol, POLICY_TCP);
    CHECK_STR(o.policy_name, "db");
    /* a tcp endpoint takes part in no L7 decision */
    CHECK_EQ(l7(p, "db.example.com", 5432, "GET", "/", NULL), POLICY_DENY);
    struct policy_l7 o7;
    CHECK_EQ(l7(p, "both.example.com", 443, "GET", "/", &o7), POLICY_ALLOW);
    CHECK_STR(o7.policy_name, "later");
    policy_unref(p);
}

/* ---- allowed_ips ---- */

static struct sockaddr_storage sa_of(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &s6->sin6_addr);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &s4->sin_addr);
    }
    return ss;
}

struct ip_case {
    const char *host;
    uint16_t port;
    const char *ip;
    bool want;
};

static void test_allowed_ips(void)
{
    struct policy *p =
        load("{'version':1,'network_policies':{"
             "'local':{'endpoints':[{'host':'127.0.0.1','port':11434,'access':'full',"
             "  'allowed_ips':['127.0.0.0/8','::1']}]},"
             "'corp':{'endpoints':[{'host':'**.corp.example','port':443,"
             "  'access':'full','allowed_ips':['10.1.0.0/16','fd00::/8']},"
             "  {'host':'plain.corp.example','port':8443,'access':'full'}]}}}");
    static const struct ip_case cases[] = {
        {"127.0.0.1", 11434, "127.0.0.1", true},
        {"127.0.0.1", 11434, "127.1.2.3", true},
        {"127.0.0.1", 11434, "::1", true},
        {"127.0.0.1", 11434, "::ffff:127.0.0.1", true},
        {"127.0.0.1", 11434, "10.0.0.1", false},
        {"127.0.0.1", 11435, "127.0.0.1", false},
        {"localhost", 11434, "127.0.0.1", false},
        {"git.corp.example", 443, "10.1.2.3", true},
        {"a.b.corp.example", 443, "10.1.255.255", true},
        {"git.corp.example", 443, "10.2.0.1", false},
        {"git.corp.example", 443, "fd12::1", true},
        {"git.corp.example", 443, "fe80::1", false},
        {"corp.example", 443, "10.1.2.3", false},
        {"plain.corp.example", 8443, "10.1.2.3", false},
        {"plain.corp.example", 443, "10.1.2.3", true},
    };
    CHECK(p != NULL);
    if (!p)
        return;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage ss = sa_of(cases[i].ip);
        bool got = policy_ip_allowed(p, cases[i].host, cases[i].port, &anyone,
                                     (const struct sockaddr *)&ss);
        if (got != cases[i].want)
            fprintf(stderr, "ip case %zu: %s:%u %s\n", i, cases[i].host, cases[i].port,
                    cases[i].ip);
        CHECK_EQ(got, cases[i].want);
    }
    policy_unref(p);

    /* A block that merely contains a metadata address loads: the guard still refuses that one
     * address at run time (test_addr), and the rest of the block opens. */
    p = load("{'version':1,'network_policies':{'ll':{'endpoints':["
             "{'host':'ll.example.com','port':80,'access':'full',"
             "'allowed_ips':['169.254.0.0/16','168.63.129.16/31']}]}}}");
    CHECK(p != NULL);
    policy_unref(p);
}

/* allowed_ips lend an address only to traffic their own endpoint allows: an endpoint for one
 * binary does not open it for another process, and one whose protocol L4 did not choose does
 * not open it at all. */
static void test_allowed_ips_follow_l4(void)
{
    struct policy *p = load(
        "{'version':1,'network_policies':{"
        "'tools':{'binaries':['/opt/not-here/tool'],'endpoints':["
        "  {'host':'svc.example.com','port':443,'access':'full','allowed_ips':['10.0.0.0/8']}]},"
        "'open':{'endpoints':[{'host':'svc.example.com','port':443,'access':'full'},"
        "  {'host':'mixed.example.com','port':443,'access':'full'},"
        "  {'host':'mixed.example.com','port':443,'protocol':'tcp',"
        "   'allowed_ips':['10.0.0.0/8']},"
        "  {'host':'raw.example.com','port':443,'protocol':'tcp',"
        "   'allowed_ips':['10.0.0.0/8']},"
        "  {'host':'raw.example.com','port':443,'access':'full'},"
        "  {'host':'late.example.com','port':443,'protocol':'tcp'},"
        "  {'host':'late.example.com','port':443,'access':'full','allowed_ips':['10.0.0.0/8']}"
        "]}}}");
    CHECK(p != NULL);
    if (!p)
        return;
    const char *tool[] = {"/opt/not-here/tool", NULL};
    const char *child_of_tool[] = {"/usr/bin/python3", "/opt/not-here/tool", NULL};
    const char *stranger[] = {"/usr/bin/python3", NULL};
    const struct policy_peer as_tool = {.procs = {tool}, .nprocs = 1},
                             as_child = {.procs = {child_of_tool}, .nprocs = 1},
                             as_stranger = {.procs = {stranger}, .nprocs = 1},
                             unknown = {.nprocs = 0};
    struct {
        const char *host;
        const struct policy_peer *peer;
        bool want;
    } cases[] = {
        {"svc.example.com", &as_tool, true},
        {"svc.example.com", &as_child, true},
        {"svc.example.com", &as_stranger, false},
        {"svc.example.com", &unknown, false},
        {"svc.example.com", NULL, false},
        {"svc.example.com", &anyone, true},    /* --binary-identity off: tools matches anyone */
        {"mixed.example.com", &anyone, false}, /* L4 chose rest; the tcp endpoint's ips idle */
        {"raw.example.com", &anyone, true},    /* L4 chose tcp, whose endpoint lists them */
        {"late.example.com", &anyone, false},  /* L4 chose tcp; the rest endpoint's ips idle */
        {"other.example.com", &anyone, false},
    };
    struct sockaddr_storage ss = sa_of("10.1.2.3");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool got =
            policy_ip_allowed(p, cases[i].host, 443, cases[i].peer, (const struct sockaddr *)&ss);
        if (got != cases[i].want)
            fprintf(stderr, "ip/l4 case %zu: %s\n", i, cases[i].host);
        CHECK_EQ(got, cases[i].want);
    }
    /* whatever the peer, only L4-allowed traffic ever gets an address opened */
    struct policy_l4 o4;
    policy_check_l4(p, "svc.example.com", 443, &as_stranger, &o4);
    CHECK_EQ(o4.verdict, POLICY_ALLOW);
    CHECK_STR(o4.policy_name, "open");
    policy_unref(p);
}

/* L7 on a connection dialled to a private address: only endpoints whose allowed_ips cover it
 * take part, so a broader endpoint for the same host that never listed the address allows
 * (or audits) nothing there. */
static const char *const python[] = {"/usr/bin/python3", NULL};
static const struct policy_peer stranger = {.procs = {python}, .nprocs = 1};

static enum policy_verdict l7_via(const struct policy *p, const char *host, const char *ip,
                                  const char *method, struct policy_l7 *out)
{
    struct sockaddr_storage ss = sa_of(ip);
    check_l7(p, host, 443, &stranger, (const struct sockaddr *)&ss, method, "/x", out);
    return out->verdict;
}

static void test_l7_private_addr_needs_covering_endpoint(void)
{
    struct policy *p = load(
        "{'version':1,'network_policies':{"
        "'reader':{'endpoints':[{'host':'svc.example.com','port':443,'access':'read-only',"
        "  'allowed_ips':['127.0.0.0/8']}]},"
        "'writer':{'endpoints':[{'host':'svc.example.com','port':443,'access':'full'},"
        "  {'host':'aud.example.com','port':443,'access':'read-only',"
        "   'allowed_ips':['10.0.0.0/8']},"
        "  {'host':'aud.example.com','port':443,'access':'read-only','enforcement':'audit'}]},"
        "'tools':{'binaries':['/opt/not-here/tool'],'endpoints':["
        "  {'host':'svc.example.com','port':443,'access':'full','allowed_ips':['10.0.0.0/8']}]}"
        "}}");
    CHECK(p != NULL);
    if (!p)
        return;
    struct policy_l7 o;

    /* a public address: every endpoint counts, and writer allows the POST */
    CHECK_EQ(l7(p, "svc.example.com", 443, "POST", "/x", &o), POLICY_ALLOW);
    CHECK_STR(o.policy_name, "writer");

    /* 127.0.0.1 was opened by reader alone: its read-only access decides */
    CHECK_EQ(l7_via(p, "svc.example.com", "127.0.0.1", "GET", &o), POLICY_ALLOW);
    CHECK_STR(o.policy_name, "reader");
    CHECK_EQ(l7_via(p, "svc.example.com", "127.0.0.1", "POST", &o), POLICY_DENY);
    CHECK_STR(o.policy_name, "reader");
    CHECK_STR(o.reason, "method not allowed by access read-only");
    CHECK_STR(o.rule_missing, "{\"method\":\"POST\",\"path\":\"/x\"}");
    CHECK_EQ(l7_via(p, "svc.example.com", "::ffff:127.0.0.1", "DELETE", &o), POLICY_DENY);
    CHECK_EQ(l7_via(p, "svc.example.com", "::1", "GET", &o), POLICY_DENY);

    /* no endpoint of this peer covers the address (tools does, for another binary: with
     * identity checking off it matches anyone) */
    CHECK_EQ(l7_via(p, "svc.example.com", "10.1.2.3", "GET", &o), POLICY_DENY);
    CHECK_STR(o.reason, "connected address not in allowed_ips");
    CHECK_STR(o.policy_name, "reader");
    CHECK_STR(o.rule_missing, "");
    CHECK(o.deny_rule.path == NULL);
    struct sockaddr_storage ss = sa_of("10.1.2.3");
    check_l7(p, "svc.example.com", 443, &anyone, (const struct sockaddr *)&ss, "DELETE", "/x", &o);
    CHECK_EQ(o.verdict, POLICY_ALLOW);
    CHECK_STR(o.policy_name, "tools");

    /* an audit endpoint that never listed the address does not audit what it refuses there */
    CHECK_EQ(l7(p, "aud.example.com", 443, "POST", "/x", &o), POLICY_AUDIT);
    CHECK_EQ(l7_via(p, "aud.example.com", "10.9.9.9", "POST", &o), POLICY_DENY);
    CHECK_STR(o.reason, "method not allowed by access read-only");
    CHECK_EQ(l7_via(p, "aud.example.com", "10.9.9.9", "GET", &o), POLICY_ALLOW);
    policy_unref(p);
}

/* A refusal by a deny rule names that rule and suggests no allow rule (deny wins over them);
 * when another endpoint refuses by its access or rules, that one is named, with rule_missing,
 * because an allow rule added to it would let the request through. */
static void test_deny_rule_refusal_names_the_rule(void)
{
    struct policy *p = load(
        "{'version':1,'network_policies':{"
        "'guard':{'endpoints':[{'host':'g.example.com','port':443,'access':'full',"
        "  'deny_rules':[{'method':'*','path':'/admin/**'},{'method':'GET','path':'/secret'}]},"
        "  {'host':'mixed.example.com','port':443,'access':'full',"
        "   'deny_rules':[{'method':'DELETE','path':'/admin/**'}]},"
        "  {'host':'both.example.com','port':443,'access':'full',"
        "   'deny_rules':[{'method':'*','path':'/a/**'}]},"
        "  {'host':'watch.example.com','port':443,'access':'full','enforcement':'audit',"
        "   'deny_rules':[{'method':'*','path':'/x'}]}]},"
        "'reader':{'endpoints':[{'host':'mixed.example.com','port':443,'access':'read-only'},"
        "  {'host':'flip.example.com','port':443,'access':'read-only'}]},"
        "'last':{'endpoints':[{'host':'both.example.com','port':443,'access':'full',"
        "   'deny_rules':[{'method':'DELETE','path':'/a/b'}]},"
        "  {'host':'flip.example.com','port':443,'access':'full',"
        "   'deny_rules':[{'method':'DELETE','path':'/admin/**'}]}]}"
        "}}");
    CHECK(p != NULL);
    if (!p)
        return;
    struct policy_l7 o;

    CHECK_EQ(l7(p, "g.example.com", 443, "DELETE", "/admin/users", &o), POLICY_DENY);
    CHECK_STR(o.reason, "matched deny rule");
    CHECK_STR(o.policy_name, "guard");
    CHECK_STR(o.rule_missing, "");
    CHECK_STR(o.deny_rule.method, "*");
    CHECK_STR(o.deny_rule.path, "/admin/**");
    CHECK_EQ(l7(p, "g.example.com", 443, "HEAD", "/Secret/", &o), POLICY_DENY);
    CHECK_STR(o.deny_rule.method, "GET");
    CHECK_STR(o.deny_rule.path, "/secret");
    CHECK_STR(o.rule_missing, "");

    /* guard refuses by a deny rule, reader (later in the file) by its access: reader can be
     * fixed with an allow rule, guard never */
    CHECK_EQ(l7(p, "mixed.example.com", 443, "DELETE", "/admin/x", &o), POLICY_DENY);
    CHECK_STR(o.policy_name, "reader");
    CHECK_STR(o.reason, "method not allowed by access read-only");
    CHECK_STR(o.rule_missing, "{\"method\":\"DELETE\",\"path\":\"/admin/x\"}");
    CHECK(o.deny_rule.path == NULL);
    /* the same when the deny rule's endpoint comes last in the file */
    CHECK_EQ(l7(p, "flip.example.com", 443, "DELETE", "/admin/x", &o), POLICY_DENY);
    CHECK_STR(o.policy_name, "reader");
    CHECK_STR(o.rule_missing, "{\"method\":\"DELETE\",\"path\":\"/admin/x\"}");

    /* every refusal is a deny rule: the last one is named */
    CHECK_EQ(l7(p, "both.example.com", 443, "DELETE", "/a/b", &o), POLICY_DENY);
    CHECK_STR(o.policy_name, "last");
    CHECK_STR(o.deny_rule.method, "DELETE");
    CHECK_STR(o.deny_rule.path, "/a/b");
    CHECK_STR(o.rule_missing, "");
    CHECK_EQ(l7(p, "both.example.com", 443, "GET", "/a/b", &o), POLICY_ALLOW);

    /* audit reports its deny rule the same way */
    CHECK_EQ(l7(p, "watch.example.com", 443, "GET", "/x", &o), POLICY_AUDIT);
    CHECK_STR(o.deny_rule.path, "/x");
    CHECK_STR(o.rule_missing, "");

    /* no endpoint judged the request (after a reload, say): no rule to suggest either */
    CHECK_EQ(l7(p, "nowhere.example.com", 443, "GET", "/x", &o), POLICY_DENY);
    CHECK_STR(o.reason, "no endpoint matches host and port");
    CHECK_STR(o.rule_missing, "");
    CHECK(o.deny_rule.path == NULL);
    policy_unref(p);
}

/* ---- binaries ---- */

static void test_binaries(void)
{
    char dir[] = "/tmp/airlock-test-policy-XXXXXX";
    char real_dir[4096], file[4200], link[4200], sub[4200], sublink[4200], json[16384];
    CHECK(mkdtemp(dir) != NULL);
    CHECK(realpath(dir, real_dir) != NULL);

    /* dir/real-tool, dir/tool -> real-tool, dir/realsub/, dir/linksub -> realsub */
    snprintf(file, sizeof(file), "%s/real-tool", real_dir);
    snprintf(link, sizeof(link), "%s/tool", dir);
    snprintf(sub, sizeof(sub), "%s/realsub", real_dir);
    snprintf(sublink, sizeof(sublink), "%s/linksub", dir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    CHECK(symlink("real-tool", link) == 0);
    CHECK(mkdir(sub, 0700) == 0);
    CHECK(symlink("realsub", sublink) == 0);

    snprintf(json, sizeof(json),
             "{\"version\":1,\"network_policies\":{"
             "\"tools\":{\"endpoints\":[{\"host\":\"tools.example.com\",\"port\":443,"
             "  \"access\":\"full\"}],"
             "  \"binaries\":[\"%s\",\"%s/**\",\"/opt/not-here/agent\",\"/opt/apps/**\"]},"
             "\"open\":{\"endpoints\":[{\"host\":\"open.example.com\",\"port\":443,"
             "  \"access\":\"full\"}]},"
             "\"all\":{\"endpoints\":[{\"host\":\"all.example.com\",\"port\":443,"
             "  \"access\":\"full\"}],\"binaries\":[\"/**\"]}}}",
             link, sublink);
    char *errors = NULL;
    struct policy *p = policy_parse(json, strlen(json), &errors);
    if (!p)
        fprintf(stderr, "%s", errors);
    free(errors);
    CHECK(p != NULL);
    if (p) {
        char under[4300];
        snprintf(under, sizeof(under), "%s/bin/x", sub);
        const char *real_tool[] = {file, NULL};
        const char *via_link[] = {link, NULL};
        const char *child_of_tool[] = {"/usr/bin/python3", "/bin/sh", file, NULL};
        const char *under_sub[] = {under, NULL};
        const char *missing[] = {"/opt/not-here/agent", NULL};
        const char *apps[] = {"/opt/apps/x/y", NULL};
        const char *apps_prefix[] = {"/opt/appsx/y", NULL};
        const char *other[] = {"/usr/bin/python3", NULL};
        const char *none[] = {NULL};
        struct {
            const char *const *exes;
            bool off;
            const char *host;
            enum policy_verdict want;
        } cases[] = {
            {real_tool, false, "tools.example.com", POLICY_ALLOW},
            {via_link, false, "tools.example.com", POLICY_DENY},
            {child_of_tool, false, "tools.example.com", POLICY_ALLOW},
            {under_sub, false, "tools.example.com", POLICY_ALLOW},
            {missing, false, "tools.example.com", POLICY_ALLOW},
            {apps, false, "tools.example.com", POLICY_ALLOW},
            {apps_prefix, false, "tools.example.com", POLICY_DENY},
            {other, false, "tools.example.com", POLICY_DENY},
            {none, false, "tools.example.com", POLICY_DENY},
            {NULL, false, "tools.example.com", POLICY_DENY},
            {NULL, true, "tools.example.com", POLICY_ALLOW},
            {other, true, "tools.example.com", POLICY_ALLOW},
            {NULL, false, "open.example.com", POLICY_ALLOW},
            {other, false, "open.example.com", POLICY_ALLOW},
            {other, false, "all.example.com", POLICY_ALLOW},
            {NULL, false, "all.example.com", POLICY_DENY},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            struct policy_peer peer = {.procs = {cases[i].exes},
                                       .nprocs = cases[i].exes ? 1 : 0,
                                       .binary_identity_off = cases[i].off};
            struct policy_l4 o4;
            struct policy_l7 o7;
            policy_check_l4(p, cases[i].host, 443, &peer, &o4);
            check_l7(p, cases[i].host, 443, &peer, NULL, "GET", "/", &o7);
            if (o4.verdict != cases[i].want)
                fprintf(stderr, "binary case %zu\n", i);
            CHECK_EQ(o4.verdict, cases[i].want);
            CHECK_EQ(o7.verdict, cases[i].want);
            if (cases[i].want == POLICY_DENY) {
                CHECK_STR(o4.reason, "binary not allowed");
                CHECK_STR(o7.reason, "binary not allowed");
                CHECK(o4.policy_name != NULL);
            }
        }
        /* a NULL peer is an unknown peer */
        struct policy_l4 o4;
        policy_check_l4(p, "tools.example.com", 443, NULL, &o4);
        CHECK_EQ(o4.verdict, POLICY_DENY);
        policy_check_l4(p, "open.example.com", 443, NULL, &o4);
        CHECK_EQ(o4.verdict, POLICY_ALLOW);
        CHECK(policy_uses_binaries(p));
        policy_unref(p);
    }
    unlink(link);
    unlink(file);
    unlink(sublink);
    rmdir(sub);
    rmdir(dir);

    p = load("{'version':1,'network_policies':{'x':{'endpoints':[{'host':'x.example.com',"
             "'port':443,'access':'full'}]}}}");
    CHECK(p && !policy_uses_binaries(p));
    policy_unref(p);
}

/* Every process holding the client's socket must match; "exact" counts only each process's own
 * executable, "ancestors" (the default) its ancestors' too. */
static void test_binaries_match(void)
{
    struct policy *p = load("{'version':1,'network_policies':{'t':{'endpoints':["
                            "{'host':'a.example.com','port':443,'access':'full'},"
                            "{'host':'e.example.com','port':443,'access':'full',"
                            "'binaries_match':'exact'},"
                            "{'host':'x.example.com','port':443,'access':'full',"
                            "'binaries_match':'ancestors'}],"
                            "'binaries':['/opt/t/tool','/opt/kit/**']}}}");
    CHECK(p != NULL);
    if (!p)
        return;
    static const char *const tool[] = {"/opt/t/tool", "/bin/sh", NULL};
    static const char *const kit[] = {"/opt/kit/bin/run", NULL};
    static const char *const child_of_tool[] = {"/usr/bin/python3", "/opt/t/tool", NULL};
    static const char *const outsider[] = {"/usr/bin/python3", "/bin/sh", NULL};
    static const char *const empty[] = {NULL};
    struct {
        const char *const *procs[3];
        size_t n;
        enum policy_verdict ancestors, exact;
    } cases[] = {
        {{tool}, 1, POLICY_ALLOW, POLICY_ALLOW},
        {{kit}, 1, POLICY_ALLOW, POLICY_ALLOW},
        {{child_of_tool}, 1, POLICY_ALLOW, POLICY_DENY},
        {{outsider}, 1, POLICY_DENY, POLICY_DENY},
        {{tool, tool}, 2, POLICY_ALLOW, POLICY_ALLOW},
        {{tool, kit}, 2, POLICY_ALLOW, POLICY_ALLOW},
        /* a listed process shares its socket with an unlisted one: the socket is not its own */
        {{tool, outsider}, 2, POLICY_DENY, POLICY_DENY},
        {{outsider, tool}, 2, POLICY_DENY, POLICY_DENY},
        {{tool, kit, outsider}, 3, POLICY_DENY, POLICY_DENY},
        /* a child of a listed binary passes by ancestry, never in exact mode */
        {{tool, child_of_tool}, 2, POLICY_ALLOW, POLICY_DENY},
        {{tool, empty}, 2, POLICY_DENY, POLICY_DENY},
        {{NULL}, 0, POLICY_DENY, POLICY_DENY},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct policy_peer peer = {.nprocs = cases[i].n};
        for (size_t j = 0; j < cases[i].n; j++)
            peer.procs[j] = cases[i].procs[j];
        struct policy_l4 a, e, x;
        struct policy_l7 a7, e7;
        policy_check_l4(p, "a.example.com", 443, &peer, &a);
        policy_check_l4(p, "e.example.com", 443, &peer, &e);
        policy_check_l4(p, "x.example.com", 443, &peer, &x);
        check_l7(p, "a.example.com", 443, &peer, NULL, "GET", "/", &a7);
        check_l7(p, "e.example.com", 443, &peer, NULL, "GET", "/", &e7);
        if (a.verdict != cases[i].ancestors || e.verdict != cases[i].exact)
            fprintf(stderr, "binaries_match case %zu\n", i);
        CHECK_EQ(a.verdict, cases[i].ancestors);
        CHECK_EQ(x.verdict, cases[i].ancestors);
        CHECK_EQ(e.verdict, cases[i].exact);
        CHECK_EQ(a7.verdict, cases[i].ancestors);
        CHECK_EQ(e7.verdict, cases[i].exact);
        if (e.verdict == POLICY_DENY)
            CHECK_STR(e.reason, "binary not allowed");
        /* identity off lets every one of them through */
        peer.binary_identity_off = true;
        policy_check_l4(p, "e.example.com", 443, &peer, &e);
        CHECK_EQ(e.verdict, POLICY_ALLOW);
    }
    policy_unref(p);
}

/* ---- rule_missing ---- */

static void check_rule_json(const char *text, const char *method, const char *path)
{
    cJSON *j = cJSON_Parse(text);
    CHECK(j != NULL);
    if (!j) {
        fprintf(stderr, "not JSON: %s\n", text);
        return;
    }
    CHECK_EQ(cJSON_GetArraySize(j), 2);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "method");
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(j, "path");
    CHECK(cJSON_IsString(m) && cJSON_IsString(pa));
    if (cJSON_IsString(m) && cJSON_IsString(pa)) {
        CHECK_STR(m->valuestring, method);
        if (strlen(path) < 400) {
            CHECK_STR(pa->valuestring, path);
        } else {
            /* shortened to a prefix glob that still allows the request */
            CHECK(strlen(pa->valuestring) < 512);
            CHECK(strcmp(pa->valuestring + strlen(pa->valuestring) - 3, "/**") == 0);
            CHECK(path_glob_match(pa->valuestring, path));
        }
    }
    cJSON_Delete(j);
}

static void test_rule_missing(void)
{
    struct policy *p = load("{'version':1,'network_policies':{'r':{'endpoints':["
                            "{'host':'r.example.com','port':443,'access':'read-only'}]}}}");
    CHECK(p != NULL);
    if (!p)
        return;
    static char longpath[2000];
    size_t w = 0;
    for (int i = 0; i < 150; i++) {
        memcpy(longpath + w, "/seg\"x", 6);
        w += 6;
    }
    longpath[w] = '\0';
    const char *paths[] = {"/a", "/with\"quote", "/a'b(c)!$&+,=:@*", "/%E2%82%AC", longpath};
    const char *methods[] = {"POST", "DELETE", "X-CUSTOM"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        for (size_t j = 0; j < sizeof(methods) / sizeof(methods[0]); j++) {
            struct policy_l7 o;
            CHECK_EQ(l7(p, "r.example.com", 443, methods[j], paths[i], &o), POLICY_DENY);
            check_rule_json(o.rule_missing, methods[j], paths[i]);
        }
    }
    policy_unref(p);
}

/* ---- load errors ---- */

struct err_case {
    const char *json; /* single-quoted; an endpoint object, or a whole document when it starts
                       * with "{'version'" or is not an object */
    const char *want; /* the exact start of one error line */
};

static const struct err_case ep_errors[] = {
    {"{'host':'*.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: wildcard \"*.com\" covers a top-level domain"},
    {"{'host':'**.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: wildcard \"**.com\" covers a top-level domain"},
    {"{'host':'*','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: bare wildcard \"*\""},
    {"{'host':'**','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: bare wildcard \"**\""},
    {"{'host':'a*.example.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"a*.example.com\": a wildcard is allowed only as "
     "the whole first label"},
    {"{'host':'foo.*.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"foo.*.com\": a wildcard is allowed only"},
    {"{'host':'*.*.example.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"*.*.example.com\": a wildcard is allowed only"},
    {"{'host':'***.example.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"***.example.com\": a wildcard is allowed only"},
    {"{'host':'example.*','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"example.*\": a wildcard is allowed only"},
    {"{'host':'*.1.2.3','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"*.1.2.3\": not a valid wildcard host name"},
    {"{'host':'169.254.169.254','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"169.254.169.254\" is a cloud metadata service"},
    {"{'host':'fd00:ec2::254','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"fd00:ec2::254\" is a cloud metadata service"},
    {"{'host':'[FD00:EC2:0::254]','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"[FD00:EC2:0::254]\" is a cloud metadata service"},
    {"{'host':'100.100.100.200','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"100.100.100.200\" is a cloud metadata service"},
    {"{'host':'::ffff:169.254.169.254','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"::ffff:169.254.169.254\" is a cloud metadata"},
    {"{'host':'168.63.129.16','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"168.63.129.16\" is a cloud metadata service"},
    {"{'host':'::ffff:168.63.129.16','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"::ffff:168.63.129.16\" is a cloud metadata"},
    {"{'host':'fd20:ce::254','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"fd20:ce::254\" is a cloud metadata service"},
    {"{'host':'[FD20:00CE::0254]','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"[FD20:00CE::0254]\" is a cloud metadata"},
    {"{'host':'wire.example.com','port':80,'access':'full','allowed_ips':['168.63.129.16']}",
     "network_policies.p.endpoints[0].allowed_ips[0]: \"168.63.129.16\" is a cloud metadata "
     "address, which is refused always"},
    {"{'host':'wire.example.com','port':80,'access':'full',"
     "'allowed_ips':['10.0.0.0/8','168.63.129.16/32']}",
     "network_policies.p.endpoints[0].allowed_ips[1]: \"168.63.129.16/32\" is a cloud metadata"},
    {"{'host':'md.example.com','port':80,'access':'full','allowed_ips':['fd20:ce::254/128']}",
     "network_policies.p.endpoints[0].allowed_ips[0]: \"fd20:ce::254/128\" is a cloud metadata"},
    {"{'host':'md.example.com','port':80,'access':'full','allowed_ips':['169.254.169.254']}",
     "network_policies.p.endpoints[0].allowed_ips[0]: \"169.254.169.254\" is a cloud metadata"},
    {"{'host':'md.example.com','port':80,'access':'full',"
     "'allowed_ips':['::ffff:100.100.100.200']}",
     "network_policies.p.endpoints[0].allowed_ips[0]: \"::ffff:100.100.100.200\" is a cloud "
     "metadata"},
    {"{'host':'metadata.google.internal','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"metadata.google.internal\" is a cloud metadata"},
    {"{'host':'Metadata.Google.Internal.','port':80,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"Metadata.Google.Internal.\" is a cloud metadata"},
    {"{'port':443,'access':'full'}", "network_policies.p.endpoints[0].host: required"},
    {"{'host':5,'port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: must be a non-empty string"},
    {"{'host':'','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: must be a non-empty string"},
    {"{'host':'exa mple.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"exa mple.com\" is not a host name or IP address"},
    {"{'host':'127.1','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"127.1\" is not a host name or IP address"},
    {"{'host':'a..b.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"a..b.com\" is not a host name"},
    {"{'host':'[1.2.3.4]','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"[1.2.3.4]\" is not a host name"},
    {"{'host':'fe80::1%eth0','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"fe80::1%eth0\" is not a host name"},
    {"{'host':'https://a.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"https://a.com\" is not a host name"},
    /* Hosts are normalised by target.h's rules, the strictest of the copies there were: names
     * no request could carry are refused rather than loaded as endpoints that never match. */
    {"{'host':'-lead.example.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"-lead.example.com\" is not a host name"},
    {"{'host':'trail-.example.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"trail-.example.com\" is not a host name"},
    {"{'host':'0x7f','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"0x7f\" is not a host name"},
    {"{'host':'a.0x1f','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"a.0x1f\" is not a host name"},
    {"{'host':'010.0.0.1','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"010.0.0.1\" is not a host name"},
    {"{'host':'::1.','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"::1.\" is not a host name"},
    {"{'host':'[::1].','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"[::1].\" is not a host name"},
    {"{'host':'*.-x.example.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"*.-x.example.com\": not a valid wildcard"},
    {"{'host':'*.a.0x1f','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: \"*.a.0x1f\": not a valid wildcard"},
    {"{'host':'a.com','port':0,'access':'full'}",
     "network_policies.p.endpoints[0].port: must be an integer from 1 to 65535"},
    {"{'host':'a.com','port':65536,'access':'full'}",
     "network_policies.p.endpoints[0].port: must be an integer from 1 to 65535"},
    {"{'host':'a.com','port':443.5,'access':'full'}",
     "network_policies.p.endpoints[0].port: must be an integer"},
    {"{'host':'a.com','port':'443','access':'full'}",
     "network_policies.p.endpoints[0].port: must be an integer"},
    {"{'host':'a.com','port':true,'access':'full'}",
     "network_policies.p.endpoints[0].port: must be an integer"},
    {"{'host':'a.com','port':443,'ports':[443],'access':'full'}",
     "network_policies.p.endpoints[0].ports: give \"port\" or \"ports\", not both"},
    {"{'host':'a.com','access':'full'}",
     "network_policies.p.endpoints[0]: needs \"port\" or \"ports\""},
    {"{'host':'a.com','ports':[],'access':'full'}",
     "network_policies.p.endpoints[0].ports: must be a non-empty array"},
    {"{'host':'a.com','ports':443,'access':'full'}",
     "network_policies.p.endpoints[0].ports: must be a non-empty array"},
    {"{'host':'a.com','ports':['8000-7000'],'access':'full'}",
     "network_policies.p.endpoints[0].ports[0]: \"8000-7000\" is not a \"LOW-HIGH\" range"},
    {"{'host':'a.com','ports':[443,'x'],'access':'full'}",
     "network_policies.p.endpoints[0].ports[1]: \"x\" is not a \"LOW-HIGH\" range"},
    {"{'host':'a.com','ports':[443,'443'],'access':'full'}",
     "network_policies.p.endpoints[0].ports[1]: \"443\" is not a \"LOW-HIGH\" range"},
    {"{'host':'a.com','ports':['0-10'],'access':'full'}",
     "network_policies.p.endpoints[0].ports[0]: \"0-10\" is not"},
    {"{'host':'a.com','ports':['1-70000'],'access':'full'}",
     "network_policies.p.endpoints[0].ports[0]: \"1-70000\" is not"},
    {"{'host':'a.com','ports':[' 1-2'],'access':'full'}",
     "network_policies.p.endpoints[0].ports[0]: \" 1-2\" is not"},
    {"{'host':'a.com','ports':['1-2-3'],'access':'full'}",
     "network_policies.p.endpoints[0].ports[0]: \"1-2-3\" is not"},
    {"{'host':'a.com','ports':[1,2,70000],'access':'full'}",
     "network_policies.p.endpoints[0].ports[2]: must be an integer from 1 to 65535 or"},
    {"{'host':'a.com','port':443,'protocol':'http','access':'full'}",
     "network_policies.p.endpoints[0].protocol: \"http\" must be \"rest\" or \"tcp\""},
    {"{'host':'a.com','port':443,'protocol':1,'access':'full'}",
     "network_policies.p.endpoints[0].protocol: must be \"rest\" or \"tcp\", not a number"},
    {"{'host':'a.com','port':443,'enforcement':'warn','access':'full'}",
     "network_policies.p.endpoints[0].enforcement: \"warn\" must be \"enforce\" or \"audit\""},
    {"{'host':'a.com','port':443,'access':'read_only'}",
     "network_policies.p.endpoints[0].access: \"read_only\" must be \"read-only\" or "
     "\"read-write\" or \"full\""},
    {"{'host':'a.com','port':443}",
     "network_policies.p.endpoints[0]: a rest endpoint needs \"access\" or \"rules\""},
    {"{'host':'a.com','port':443,'protocol':'rest','rules':[]}",
     "network_policies.p.endpoints[0]: a rest endpoint needs \"access\" or \"rules\""},
    {"{'host':'a.com','port':443,'deny_rules':[{'method':'*','path':'/**'}]}",
     "network_policies.p.endpoints[0]: a rest endpoint needs \"access\" or \"rules\""},
    {"{'host':'a.com','port':5432,'protocol':'tcp','access':'full'}",
     "network_policies.p.endpoints[0].access: a tcp endpoint is not parsed, so it takes no "
     "\"access\""},
    {"{'host':'a.com','port':5432,'protocol':'tcp','rules':[{'method':'GET','path':'/'}]}",
     "network_policies.p.endpoints[0].rules: a tcp endpoint is not parsed"},
    {"{'host':'a.com','port':5432,'protocol':'tcp','deny_rules':[]}",
     "network_policies.p.endpoints[0].deny_rules: a tcp endpoint is not parsed"},
    {"{'host':'a.com','port':5432,'protocol':'tcp','enforcement':'audit'}",
     "network_policies.p.endpoints[0].enforcement: audit applies to HTTP rules"},
    {"{'host':'a.com','port':443,'rules':{'method':'GET','path':'/'}}",
     "network_policies.p.endpoints[0].rules: must be an array"},
    {"{'host':'a.com','port':443,'rules':[5]}",
     "network_policies.p.endpoints[0].rules[0]: must be an object"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/'},"
     "{'method':'get','path':'/'}]}",
     "network_policies.p.endpoints[0].rules[1].method: \"get\": methods are case-sensitive"},
    {"{'host':'a.com','port':443,'rules':[{'method':'G T','path':'/'}]}",
     "network_policies.p.endpoints[0].rules[0].method: \"G T\" is not a method name"},
    {"{'host':'a.com','port':443,'rules':[{'method':'G*','path':'/'}]}",
     "network_policies.p.endpoints[0].rules[0].method: \"G*\" is not a method name"},
    {"{'host':'a.com','port':443,'rules':[{'method':'','path':'/'}]}",
     "network_policies.p.endpoints[0].rules[0].method: must not be empty"},
    {"{'host':'a.com','port':443,'rules':[{'method':['GET'],'path':'/'}]}",
     "network_policies.p.endpoints[0].rules[0].method: must be a string"},
    {"{'host':'a.com','port':443,'rules':[{'method':'POST'}]}",
     "network_policies.p.endpoints[0].rules[0].path: required"},
    {"{'host':'a.com','port':443,'rules':[{'path':'/'}]}",
     "network_policies.p.endpoints[0].rules[0].method: required"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/','methods':'x'}]}",
     "network_policies.p.endpoints[0].rules[0].methods: unknown key (allowed: method, path)"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'a/b'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"a/b\" must start with '/'"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/a**'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"/a**\": '**' is allowed only as a whole "
     "segment"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/a//b'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"/a//b\" is not in canonical form, so it "
     "could never match; write \"/a/b\""},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/%7euser'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"/%7euser\" is not in canonical form, so "
     "it could never match; write \"/~user\""},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/a;v=1'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"/a;v=1\" is not in canonical form"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/a%2fb'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"/a%2fb\" is not a valid path glob"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/a?x=1'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"/a?x=1\" is not a valid path glob"},
    {"{'host':'a.com','port':443,'rules':[{'method':'GET','path':'/../a'}]}",
     "network_policies.p.endpoints[0].rules[0].path: \"/../a\" is not a valid path glob"},
    {"{'host':'a.com','port':443,'access':'full','deny_rules':[{'method':'*','path':'/'},"
     "{'method':'DELETE','path':'/A/*/../b'}]}",
     "network_policies.p.endpoints[0].deny_rules[1].path: \"/A/*/../b\" is not in canonical "
     "form"},
    {"{'host':'a.com','port':443,'access':'full','allowed_ips':['10.0.0.1/8']}",
     "network_policies.p.endpoints[0].allowed_ips[0]: \"10.0.0.1/8\" is not an address or CIDR "
     "block"},
    {"{'host':'a.com','port':443,'access':'full','allowed_ips':['10.0.0.0/8','nope']}",
     "network_policies.p.endpoints[0].allowed_ips[1]: \"nope\" is not an address or CIDR block"},
    {"{'host':'a.com','port':443,'access':'full','allowed_ips':[8]}",
     "network_policies.p.endpoints[0].allowed_ips[0]: must be a CIDR string"},
    {"{'host':'a.com','port':443,'access':'full','allowed_ips':'10.0.0.0/8'}",
     "network_policies.p.endpoints[0].allowed_ips: must be an array of CIDR strings"},
    {"{'host':'a.com','port':443,'access':'full','prot':'tcp'}",
     "network_policies.p.endpoints[0].prot: unknown key (allowed: host, port, ports, protocol, "
     "enforcement, access, rules, deny_rules, allowed_ips, binaries_match)"},
    {"{'Host':'a.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].Host: unknown key"},
    {"{'host':'a.com','port':443,'access':'full','deny_rule':[]}",
     "network_policies.p.endpoints[0].deny_rule: unknown key"},
    {"{'host':'a.com','port':443,'access':'full','bad key':1}",
     "network_policies.p.endpoints[0][\"bad key\"]: unknown key"},
    {"{'host':'a.com','host':'b.com','port':443,'access':'full'}",
     "network_policies.p.endpoints[0].host: duplicate key"},
    {"{'host':'a.com','port':443,'access':'full'},{'host':'*.com','port':1,'access':'full'}",
     "network_policies.p.endpoints[1].host: wildcard \"*.com\" covers a top-level domain"},
    {"'a.com'", "network_policies.p.endpoints[0]: must be an object"},
};

static const struct err_case doc_errors[] = {
    {"{'version':1,'network_policies':{'github':{'endpoints':["
     "{'host':'api.github.com','port':443,'access':'read-only'},"
     "{'host':'*.com','port':443,'access':'read-only'}]}}}",
     "network_policies.github.endpoints[1].host: wildcard \"*.com\" covers a top-level domain"},
    {"", "(root): invalid JSON near line 1, column 1"},
    {"{'version':1,\n 'network_policies':{,}}", "(root): invalid JSON near line 2, column "},
    {"{'version':1,'network_policies':{}} x", "(root): invalid JSON near line 1, column"},
    {"[]", "(root): must be an object with \"version\" and \"network_policies\""},
    {"{'network_policies':{}}", "version: required"},
    {"{'version':2,'network_policies':{}}", "version: unsupported; must be 1"},
    {"{'version':'1','network_policies':{}}", "version: unsupported; must be 1"},
    {"{'version':1.5,'network_policies':{}}", "version: unsupported; must be 1"},
    {"{'version':1,'version':1,'network_policies':{}}", "version: duplicate key"},
    {"{'version':1}", "network_policies: required"},
    {"{'version':1,'network_policies':[]}", "network_policies: must be an object"},
    {"{'version':1,'network_policies':{},'policies':{}}",
     "policies: unknown key (allowed: version, network_policies)"},
    {"{'version':1,'network_policies':{'bad name':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}]}}}",
     "network_policies[\"bad name\"]: policy names are 1 to 64 letters, digits, '_' or '-'"},
    {"{'version':1,'network_policies':{'a.b':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}]}}}",
     "network_policies[\"a.b\"]: policy names are"},
    {"{'version':1,'network_policies':{'':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}]}}}",
     "network_policies[\"\"]: policy names are"},
    {"{'version':1,'network_policies':{'p':[]}}",
     "network_policies.p: must be an object with \"endpoints\""},
    {"{'version':1,'network_policies':{'p':{}}}", "network_policies.p.endpoints: required"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[]}}}",
     "network_policies.p.endpoints: must be a non-empty array"},
    {"{'version':1,'network_policies':{'p':{'endpoints':{}}}}",
     "network_policies.p.endpoints: must be a non-empty array"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binary':['/usr/bin/curl']}}}",
     "network_policies.p.binary: unknown key (allowed: endpoints, binaries)"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':[]}}}",
     "network_policies.p.binaries: must be a non-empty array of absolute paths"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':'/usr/bin/curl'}}}",
     "network_policies.p.binaries: must be a non-empty array"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':['/usr/bin/git','usr/bin/curl']}}}",
     "network_policies.p.binaries[1]: \"usr/bin/curl\" must be an absolute path"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':['/usr/*/curl']}}}",
     "network_policies.p.binaries[0]: \"/usr/*/curl\": a wildcard is allowed only as a "
     "trailing \"/**\""},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':['/usr/bin/*']}}}",
     "network_policies.p.binaries[0]: \"/usr/bin/*\": a wildcard is allowed only"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':['/no-such-dir/../bin/x']}}}",
     "network_policies.p.binaries[0]: \"/no-such-dir/../bin/x\" must not contain empty, \".\" "
     "or \"..\" segments"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':['/usr/bin/']}}}",
     "network_policies.p.binaries[0]: \"/usr/bin/\" must not contain empty"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}],'binaries':[7]}}}",
     "network_policies.p.binaries[0]: must be a string"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full'}]},'p':{'endpoints':[{'host':'b.com','port':1,'access':'full'}]}}}",
     "network_policies.p: duplicate key"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full','binaries_match':'parent'}],'binaries':['/usr/bin/git']}}}",
     "network_policies.p.endpoints[0].binaries_match: \"parent\" must be \"ancestors\" or "
     "\"exact\""},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full','binaries_match':true}],'binaries':['/usr/bin/git']}}}",
     "network_policies.p.endpoints[0].binaries_match: must be \"ancestors\" or \"exact\", "
     "not a boolean"},
    {"{'version':1,'network_policies':{'p':{'endpoints':[{'host':'a.com','port':1,"
     "'access':'full','binaries_match':'exact'}]}}}",
     "network_policies.p.endpoints[0].binaries_match: applies to the network policy's "
     "\"binaries\", and it names none"},
};

/* true when some line of errors starts with want. */
static bool has_line(const char *errors, const char *want)
{
    for (const char *line = errors; line && *line;) {
        if (strncmp(line, want, strlen(want)) == 0)
            return true;
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    return false;
}

static void check_error_case(const char *json_sq, const char *want, size_t i)
{
    char *json = dq(json_sq);
    char *errors = NULL;
    struct policy *p = policy_parse(json, strlen(json), &errors);
    CHECK(p == NULL);
    CHECK(errors != NULL);
    bool ok = errors && has_line(errors, want);
    if (!ok)
        fprintf(stderr, "error case %zu: want a line starting\n  %s\ngot:\n%s", i, want,
                errors ? errors : "(none)\n");
    CHECK(ok);
    /* every line names a path, ends in a newline, and carries no raw control byte */
    bool clean = true;
    for (const char *c = errors ? errors : ""; *c; c++)
        clean = clean && ((unsigned char)*c >= 0x20 || *c == '\n');
    CHECK(clean);
    CHECK(!errors || errors[strlen(errors) - 1] == '\n');
    /* without an errors pointer, the verdict is the same */
    CHECK(policy_parse(json, strlen(json), NULL) == NULL);
    policy_unref(p);
    free(errors);
    free(json);
}

static void test_load_errors(void)
{
    char doc[4096];
    for (size_t i = 0; i < sizeof(ep_errors) / sizeof(ep_errors[0]); i++) {
        snprintf(doc, sizeof(doc), "{'version':1,'network_policies':{'p':{'endpoints':[%s]}}}",
                 ep_errors[i].json);
        check_error_case(doc, ep_errors[i].want, i);
    }
    for (size_t i = 0; i < sizeof(doc_errors) / sizeof(doc_errors[0]); i++)
        check_error_case(doc_errors[i].json, doc_errors[i].want, 1000 + i);
}

/* All errors are reported, not just the first, and the list is bounded. */
static void test_error_collection(void)
{
    char *errors = NULL;
    char *json = dq("{'version':3,'network_policies':{'p':{'endpoints':["
                    "{'host':'*.com','port':0,'access':'all'},"
                    "{'host':'ok.example.com','port':443,'access':'full','x':1}]},"
                    "'q':{'endpoints':[{'host':'b.com','ports':['9-1'],'protocol':'udp',"
                    "'access':'full'}],'binaries':['rel']}},'extra':true}");
    CHECK(policy_parse(json, strlen(json), &errors) == NULL);
    static const char *const want[] = {
        "extra: unknown key",
        "version: unsupported",
        "network_policies.p.endpoints[0].host: wildcard \"*.com\"",
        "network_policies.p.endpoints[0].port: must be",
        "network_policies.p.endpoints[0].access: \"all\" must be",
        "network_policies.p.endpoints[1].x: unknown key",
        "network_policies.q.binaries[0]: \"rel\" must be an absolute path",
        "network_policies.q.endpoints[0].ports[0]: \"9-1\" is not",
        "network_policies.q.endpoints[0].protocol: \"udp\" must be",
    };
    size_t lines = 0;
    for (const char *c = errors; c && *c; c++)
        lines += *c == '\n';
    CHECK_EQ(lines, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (!has_line(errors, want[i]))
            fprintf(stderr, "missing: %s\ngot:\n%s", want[i], errors);
        CHECK(has_line(errors, want[i]));
    }
    free(errors);
    free(json);

    /* 150 bad endpoints: 100 lines and a count of the rest */
    size_t cap = 64 * 1024, w = 0;
    json = malloc(cap);
    w += (size_t)snprintf(json + w, cap - w,
                          "{\"version\":1,\"network_policies\":{\"p\":"
                          "{\"endpoints\":[");
    for (int i = 0; i < 150; i++)
        w += (size_t)snprintf(json + w, cap - w,
                              "%s{\"host\":\"*.com\",\"port\":1,"
                              "\"access\":\"full\"}",
                              i ? "," : "");
    w += (size_t)snprintf(json + w, cap - w, "]}}}");
    errors = NULL;
    CHECK(policy_parse(json, w, &errors) == NULL);
    lines = 0;
    for (const char *c = errors; c && *c; c++)
        lines += *c == '\n';
    CHECK_EQ(lines, 101);
    CHECK(errors && strstr(errors, "... and 50 more errors\n") != NULL);
    CHECK(has_line(errors, "network_policies.p.endpoints[99].host: wildcard"));
    free(errors);
    free(json);

    /* a NUL inside the given length is refused, not silently cut */
    static const char nul[] = "{\"version\":1,\"network_policies\":{}}\0{\"x\":1}";
    errors = NULL;
    CHECK(policy_parse(nul, sizeof(nul) - 1, &errors) == NULL);
    CHECK(errors && strncmp(errors, "(root): contains a NUL byte", 27) == 0);
    free(errors);

    /* hostile key text cannot forge a line */
    json = dq("{'version':1,'network_policies':{'p\\nversion: fine':{}}}");
    errors = NULL;
    CHECK(policy_parse(json, strlen(json), &errors) == NULL);
    CHECK(errors && !has_line(errors, "version: fine"));
    CHECK(errors && has_line(errors, "network_policies[\"p\\x0aversion: fine\"]: policy names"));
    free(errors);
    free(json);
}

/* ---- snapshot lifetime ---- */

static void test_snapshot(void)
{
    const char *src = "{\"version\":1,\"network_policies\":{}}";
    struct policy *p = policy_parse(src, strlen(src), NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_STR(policy_source(p), src);
    CHECK_EQ(policy_endpoint_count(p), 0);
    CHECK_EQ(l4(p, "example.com", 443), POLICY_DENY);
    CHECK_EQ(l7(p, "example.com", 443, "GET", "/", NULL), POLICY_DENY);
    policy_ref(p);
    policy_ref(p);
    policy_unref(p);
    policy_unref(p);
    CHECK_STR(policy_source(p), src);
    policy_unref(p);
    policy_unref(NULL);

    /* not NUL-terminated input: only len bytes are read */
    char buf[64];
    memcpy(buf, src, strlen(src));
    memset(buf + strlen(src), 'x', sizeof(buf) - strlen(src));
    p = policy_parse(buf, strlen(src), NULL);
    CHECK(p != NULL);
    if (p)
        CHECK_STR(policy_source(p), src);
    policy_unref(p);
}

/* ---- scale ---- */

/* 1,000 endpoints (exact, one-label and any-label wildcards) load and decide correctly; how
 * fast is measured by test/bench/bench_policy.c (scripts/bench), never here. */
static void test_scale(void)
{
    size_t cap = 256 * 1024, w = 0;
    char *json = malloc(cap);
    w += (size_t)snprintf(json + w, cap - w, "{\"version\":1,\"network_policies\":{");
    for (int i = 0; i < 1000; i++) {
        w += (size_t)snprintf(json + w, cap - w, "%s\"p%d\":{\"endpoints\":[", i ? "," : "", i);
        if (i % 4 == 0)
            w += (size_t)snprintf(json + w, cap - w,
                                  "{\"host\":\"*.w%d.example.org\",\"port\":443,"
                                  "\"access\":\"read-only\"}]}",
                                  i);
        else if (i % 4 == 1)
            w += (size_t)snprintf(json + w, cap - w,
                                  "{\"host\":\"**.g%d.example.net\",\"port\":443,"
                                  "\"access\":\"read-only\"}]}",
                                  i);
        else
            w += (size_t)snprintf(json + w, cap - w,
                                  "{\"host\":\"h%d.example.com\",\"ports\":[443,\"8000-8099\"],"
                                  "\"access\":\"read-only\",\"rules\":[{\"method\":\"POST\","
                                  "\"path\":\"/v1/*/x\"}],\"deny_rules\":[{\"method\":\"*\","
                                  "\"path\":\"/a/**\"}]}]}",
                                  i);
    }
    w += (size_t)snprintf(json + w, cap - w, "}}");
    char *errors = NULL;
    struct policy *p = policy_parse(json, w, &errors);
    if (!p)
        fprintf(stderr, "%s", errors);
    CHECK(p != NULL);
    free(errors);
    free(json);
    if (!p)
        return;
    CHECK_EQ(policy_endpoint_count(p), 1000);
    CHECK_EQ(l4(p, "h998.example.com", 8050), POLICY_ALLOW);
    CHECK_EQ(l4(p, "x.w996.example.org", 443), POLICY_ALLOW);
    CHECK_EQ(l4(p, "x.y.g997.example.net", 443), POLICY_ALLOW);
    CHECK_EQ(l4(p, "x.y.w996.example.org", 443), POLICY_DENY);
    CHECK_EQ(l4(p, "h996.example.com", 8050), POLICY_DENY);

    enum { N = 20000 };
    char host[64];
    unsigned allowed = 0;
    for (int i = 0; i < N; i++) {
        struct policy_l7 o;
        snprintf(host, sizeof(host), "a.b.c.d.h%d.example.com", i % 1000);
        allowed += l4(p, host + (i % 2 ? 8 : 0), 443) == POLICY_ALLOW;
        allowed += l7(p, host + 8, 443, "POST", "/v1/abc/x", &o) == POLICY_ALLOW;
    }
    CHECK(allowed > 0);
    policy_unref(p);
}

int main(void)
{
    RUN(test_policy_files);
    RUN(test_design_example);
    RUN(test_hosts);
    RUN(test_ports);
    RUN(test_access);
    RUN(test_audit_and_overlap);
    RUN(test_deny_rules_fail_closed);
    RUN(test_method_override_parsing);
    RUN(test_method_override_decisions);
    RUN(test_upgrade_needs_write_grant);
    RUN(test_tcp);
    RUN(test_allowed_ips);
    RUN(test_allowed_ips_follow_l4);
    RUN(test_l7_private_addr_needs_covering_endpoint);
    RUN(test_deny_rule_refusal_names_the_rule);
    RUN(test_binaries);
    RUN(test_binaries_match);
    RUN(test_rule_missing);
    RUN(test_load_errors);
    RUN(test_error_collection);
    RUN(test_snapshot);
    RUN(test_scale);
    return test_report();
}
