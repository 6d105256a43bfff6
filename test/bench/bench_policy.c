/* SPDX-License-Identifier: MIT */
/* bench_policy: how long one policy decision takes against a policy of 1,000 endpoints (a
 * third exact hosts with port ranges, rules and deny rules, the rest one-label and any-label
 * wildcards). Prints figures; asserts nothing (the unit test checks the answers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "airlock/policy.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_policy(size_t *len)
{
    size_t cap = 512 * 1024, w = 0;
    char *json = malloc(cap);
    if (!json)
        exit(2);
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
    *len = w;
    return json;
}

int main(void)
{
    size_t len;
    char *json = make_policy(&len);
    char *errors = NULL;
    double t0 = now();
    struct policy *p = policy_parse(json, len, &errors);
    double load = now() - t0;
    free(json);
    if (!p) {
        fprintf(stderr, "%s", errors ? errors : "load failed\n");
        return 1;
    }
    enum { N = 1000000 };
    static char hosts[1000][64];
    for (int i = 0; i < 1000; i++)
        snprintf(hosts[i], sizeof hosts[i], "h%d.example.com", i);
    struct policy_peer peer = {.binary_identity_off = true};
    unsigned allowed = 0;
    t0 = now();
    for (int i = 0; i < N; i++) {
        struct policy_l4 d;
        policy_check_l4(p, hosts[i % 1000], 443, &peer, &d);
        allowed += d.verdict == POLICY_ALLOW;
    }
    double l4 = (now() - t0) / N;
    t0 = now();
    for (int i = 0; i < N; i++) {
        struct policy_l7 d;
        struct policy_request q;
        policy_request_init(&q, "POST", "/v1/abc/x", false);
        policy_check_l7(p, hosts[i % 1000], 443, &peer, NULL, &q, &d);
        allowed += d.verdict == POLICY_ALLOW;
    }
    double l7 = (now() - t0) / N;
    printf("policy of %zu endpoints: load %.2f ms; L4 decision %.0f ns; L7 decision %.0f ns "
           "(%u allowed of %d)\n",
           policy_endpoint_count(p), load * 1e3, l4 * 1e9, l7 * 1e9, allowed, 2 * N);
    policy_unref(p);
    return 0;
}
