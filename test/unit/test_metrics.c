/* SPDX-License-Identifier: MIT */
/* Unit tests for metrics: the rendered exposition parses line by line as Prometheus text 0.0.4
 * (HELP and TYPE before each family's samples, every sample `name{labels} value`), every
 * documented family is there, and counters, gauges and histograms move as recorded. */
#include "airlock/metrics.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define MAX_SAMPLES  256
#define MAX_FAMILIES 64

struct sample {
    char name[128];
    char labels[160]; /* the text between the braces, "" when none */
    char key[300];    /* name{labels} as written: unique per scrape */
    double value;
};

struct family {
    char name[128];
    char type[16];
    bool help;
};

struct scrape {
    struct sample samples[MAX_SAMPLES];
    size_t nsamples;
    struct family families[MAX_FAMILIES];
    size_t nfamilies;
    int bad_lines; /* lines that are neither a comment nor a well-formed sample */
    int untyped;   /* samples without a TYPE line before them */
    int bad_values;
    int duplicates; /* samples whose name{labels} appeared before */
};

static bool name_start(int c)
{
    return isalpha(c) || c == '_' || c == ':';
}

static bool name_char(int c)
{
    return isalnum(c) || c == '_' || c == ':';
}

/* A metric name, then `{label="value",...}` (escapes \\ \" \n in values), one space, and a
 * float (or +Inf, -Inf, NaN) to the end of the line. No timestamp: airlock never writes one. */
static bool parse_sample(const char *line, struct sample *s)
{
    const char *p = line;
    size_t n = 0;

    memset(s, 0, sizeof *s);
    if (!name_start((unsigned char)*p))
        return false;
    while (name_char((unsigned char)*p) && n + 1 < sizeof s->name)
        s->name[n++] = *p++;
    if (name_char((unsigned char)*p))
        return false;
    if (*p == '{') {
        const char *open = ++p;
        for (;;) {
            if (!isalpha((unsigned char)*p) && *p != '_')
                return false;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
            if (*p++ != '=' || *p++ != '"')
                return false;
            while (*p && *p != '"') {
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        return false;
                }
                p++;
            }
            if (*p++ != '"')
                return false;
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p != '}')
                return false;
            break;
        }
        size_t llen = (size_t)(p - open);
        if (llen >= sizeof s->labels)
            return false;
        memcpy(s->labels, open, llen);
        p++;
    }
    if (*p++ != ' ')
        return false;
    if (!strcmp(p, "+Inf")) {
        s->value = INFINITY;
    } else if (!strcmp(p, "-Inf")) {
        s->value = -INFINITY;
    } else if (!strcmp(p, "NaN")) {
        s->value = NAN;
    } else {
        char *end;
        if (!*p || isspace((unsigned char)*p))
            return false;
        s->value = strtod(p, &end);
        if (*end)
            return false;
    }
    snprintf(s->key, sizeof s->key, "%s%s%s%s", s->name, s->labels[0] ? "{" : "", s->labels,
             s->labels[0] ? "}" : "");
    return true;
}

static struct family *family_get(struct scrape *sc, const char *name, bool create)
{
    for (size_t i = 0; i < sc->nfamilies; i++)
        if (!strcmp(sc->families[i].name, name))
            return &sc->families[i];
    if (!create || sc->nfamilies == MAX_FAMILIES)
        return NULL;
    struct family *f = &sc->families[sc->nfamilies++];
    snprintf(f->name, sizeof f->name, "%s", name);
    return f;
}

/* The family a sample belongs to: its own name, or for a histogram the name without _bucket,
 * _sum or _count. NULL when no TYPE line declared it before the sample. */
static const struct family *family_of(struct scrape *sc, const char *sample_name)
{
    const struct family *f = family_get(sc, sample_name, false);
    if (f && f->type[0])
        return f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(sample_name), sl = strlen(suffixes[i]);
        if (n > sl && !strcmp(sample_name + n - sl, suffixes[i])) {
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(n - sl), sample_name);
            f = family_get(sc, base, false);
            if (f && !strcmp(f->type, "histogram"))
                return f;
        }
    }
    return NULL;
}

/* Render and parse; every structural rule is CHECKed here, so each scrape tests them. */
static void scrape(struct scrape *sc)
{
    struct http_buf out = {0};
    memset(sc, 0, sizeof *sc);
    metrics_render(&out);
    CHECK(!out.failed);
    CHECK(out.len > 0 && out.data[out.len - 1] == '\n');
    CHECK(out.data && strlen(out.data) == out.len);
    char *save = NULL;
    for (char *line = strtok_r(out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') {
            char kind[8], name[128], rest[256];
            if (sscanf(line, "# %7s %127s %255[^\n]", kind, name, rest) != 3) {
                sc->bad_lines++;
                continue;
            }
            struct family *f = family_get(sc, name, true);
            if (!f) {
                sc->bad_lines++;
            } else if (!strcmp(kind, "HELP")) {
                /* once per family, and before its TYPE */
                sc->bad_lines += f->help || f->type[0];
                f->help = true;
            } else if (!strcmp(kind, "TYPE")) {
                sc->bad_lines += f->type[0] || (strcmp(rest, "counter") && strcmp(rest, "gauge") &&
                                                strcmp(rest, "histogram"));
                snprintf(f->type, sizeof f->type, "%.15s", rest);
            } else {
                sc->bad_lines++;
            }
            continue;
        }
        struct sample *s = &sc->samples[sc->nsamples];
        if (sc->nsamples == MAX_SAMPLES || !parse_sample(line, s)) {
            fprintf(stderr, "unparsable line: %s\n", line);
            sc->bad_lines++;
            continue;
        }
        if (!family_of(sc, s->name)) {
            fprintf(stderr, "sample before its TYPE line: %s\n", line);
            sc->untyped++;
        }
        if (isnan(s->value) || s->value < 0) /* nothing airlock counts is negative */
            sc->bad_values++;
        for (size_t i = 0; i < sc->nsamples; i++)
            sc->duplicates += strcmp(sc->samples[i].key, s->key) == 0;
        sc->nsamples++;
    }
    CHECK_EQ(sc->bad_lines, 0);
    CHECK_EQ(sc->untyped, 0);
    CHECK_EQ(sc->bad_values, 0);
    CHECK_EQ(sc->duplicates, 0);
    http_buf_free(&out);
}

/* The value of the sample written as key (name{labels}); -1 when absent. */
static double value(const struct scrape *sc, const char *key)
{
    for (size_t i = 0; i < sc->nsamples; i++)
        if (!strcmp(sc->samples[i].key, key))
            return sc->samples[i].value;
    return -1;
}

static const char *type_of(struct scrape *sc, const char *family)
{
    const struct family *f = family_get(sc, family, false);
    return f ? f->type : "(absent)";
}

static void test_every_family_present_with_help_and_type(void)
{
    static const struct {
        const char *name, *type;
    } want[] = {
        {"airlock_connections_accepted_total", "counter"},
        {"airlock_connections_active", "gauge"},
        {"airlock_exchanges_total", "counter"},
        {"airlock_requests_total", "counter"},
        {"airlock_h2_streams_total", "counter"},
        {"airlock_h2_sessions_total", "counter"},
        {"airlock_h2_abuse_total", "counter"},
        {"airlock_connects_total", "counter"},
        {"airlock_upgrades_active", "gauge"},
        {"airlock_bytes_received_total", "counter"},
        {"airlock_bytes_sent_total", "counter"},
        {"airlock_tls_handshakes_total", "counter"},
        {"airlock_tls_handshake_failures_total", "counter"},
        {"airlock_upstream_connect_failures_total", "counter"},
        {"airlock_ssrf_denied_total", "counter"},
        {"airlock_findings_total", "counter"},
        {"airlock_policy_reloads_total", "counter"},
        {"airlock_connections_refused_total", "counter"},
        {"airlock_dns_lookups_total", "counter"},
        {"airlock_dns_refused_total", "counter"},
        {"airlock_log_lines_dropped_total", "counter"},
        {"airlock_upstream_connect_seconds", "histogram"},
        {"airlock_time_to_first_byte_seconds", "histogram"},
    };
    static struct scrape sc;
    scrape(&sc);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct family *f = family_get(&sc, want[i].name, false);
        CHECK(f != NULL);
        if (!f) {
            fprintf(stderr, "  missing %s\n", want[i].name);
            continue;
        }
        CHECK(f->help);
        CHECK_STR(type_of(&sc, want[i].name), want[i].type);
    }
    CHECK_EQ(sc.nfamilies, sizeof want / sizeof want[0]);
}

static void test_labelled_counters_have_every_fixed_label(void)
{
    static const char *const keys[] = {
        "airlock_exchanges_total{outcome=\"reusable\"}",
        "airlock_exchanges_total{outcome=\"consumed\"}",
        "airlock_exchanges_total{outcome=\"upgraded\"}",
        "airlock_requests_total{decision=\"allow\"}",
        "airlock_requests_total{decision=\"audit\"}",
        "airlock_requests_total{decision=\"deny\"}",
        "airlock_connects_total{decision=\"allow\"}",
        "airlock_connects_total{decision=\"deny\"}",
        "airlock_tls_handshakes_total{side=\"client\"}",
        "airlock_tls_handshakes_total{side=\"upstream\"}",
        "airlock_tls_handshake_failures_total{side=\"client\"}",
        "airlock_tls_handshake_failures_total{side=\"upstream\"}",
        "airlock_policy_reloads_total{result=\"ok\"}",
        "airlock_policy_reloads_total{result=\"failed\"}",
        "airlock_connections_refused_total{reason=\"limit\"}",
        "airlock_connections_refused_total{reason=\"fds\"}",
        "airlock_dns_lookups_total{source=\"cache\"}",
        "airlock_dns_lookups_total{source=\"resolver\"}",
        "airlock_dns_refused_total",
        "airlock_log_lines_dropped_total",
    };
    static struct scrape sc;
    scrape(&sc);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (value(&sc, keys[i]) < 0)
            fprintf(stderr, "  missing sample %s\n", keys[i]);
        CHECK(value(&sc, keys[i]) >= 0);
    }
    /* No family invents other label values. */
    size_t exchanges = 0;
    for (size_t i = 0; i < sc.nsamples; i++)
        exchanges += !strcmp(sc.samples[i].name, "airlock_exchanges_total");
    CHECK_EQ(exchanges, 3);
}

static void test_counters_move_by_what_was_added(void)
{
    static struct scrape before, after;
    scrape(&before);
    metrics_inc(M_CONN_ACCEPTED);
    metrics_inc(M_CONN_ACCEPTED);
    metrics_inc(M_REQ_ALLOW);
    metrics_inc(M_REQ_DENY);
    metrics_inc(M_TUNNELS_UPGRADED);
    metrics_inc(M_CONNECT_DENY);
    metrics_add(M_BYTES_IN, 1000000000000ULL); /* past 2^32: no truncation on the way out */
    metrics_add(M_BYTES_OUT, 12345);
    metrics_inc(M_TLS_FAILURES_UPSTREAM);
    metrics_inc(M_POLICY_RELOADS_FAILED);
    metrics_inc(M_SSRF_DENIED);
    metrics_inc(M_FINDINGS);
    metrics_inc(M_UPSTREAM_CONNECT_FAILURES);
    scrape(&after);

    static const struct {
        const char *key;
        double delta;
    } moved[] = {
        {"airlock_connections_accepted_total", 2},
        {"airlock_requests_total{decision=\"allow\"}", 1},
        {"airlock_requests_total{decision=\"audit\"}", 0},
        {"airlock_requests_total{decision=\"deny\"}", 1},
        {"airlock_exchanges_total{outcome=\"upgraded\"}", 1},
        {"airlock_exchanges_total{outcome=\"reusable\"}", 0},
        {"airlock_connects_total{decision=\"deny\"}", 1},
        {"airlock_connects_total{decision=\"allow\"}", 0},
        {"airlock_bytes_received_total", 1000000000000.0},
        {"airlock_bytes_sent_total", 12345},
        {"airlock_tls_handshake_failures_total{side=\"upstream\"}", 1},
        {"airlock_tls_handshake_failures_total{side=\"client\"}", 0},
        {"airlock_policy_reloads_total{result=\"failed\"}", 1},
        {"airlock_policy_reloads_total{result=\"ok\"}", 0},
        {"airlock_ssrf_denied_total", 1},
        {"airlock_findings_total", 1},
        {"airlock_upstream_connect_failures_total", 1},
    };
    for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
        double d = value(&after, moved[i].key) - value(&before, moved[i].key);
        if (d != moved[i].delta)
            fprintf(stderr, "  %s moved by %.0f, want %.0f\n", moved[i].key, d, moved[i].delta);
        CHECK(d == moved[i].delta);
    }
}

static void test_gauges_go_up_and_down(void)
{
    static struct scrape sc;
    scrape(&sc);
    double conns = value(&sc, "airlock_connections_active");
    double upgrades = value(&sc, "airlock_upgrades_active");
    metrics_gauge_add(G_CONN_ACTIVE, 3);
    metrics_gauge_add(G_CONN_ACTIVE, -1);
    metrics_gauge_add(G_UPGRADES_ACTIVE, 1);
    scrape(&sc);
    CHECK(value(&sc, "airlock_connections_active") == conns + 2);
    CHECK(value(&sc, "airlock_upgrades_active") == upgrades + 1);
    metrics_gauge_add(G_CONN_ACTIVE, -2);
    metrics_gauge_add(G_UPGRADES_ACTIVE, -1);
    scrape(&sc);
    CHECK(value(&sc, "airlock_connections_active") == conns);
    CHECK(value(&sc, "airlock_upgrades_active") == upgrades);
}

/* Checks the histogram's shape: bucket bounds strictly increase and end in +Inf, counts are
 * cumulative, and +Inf equals _count. Returns the number of buckets. */
static size_t check_histogram_shape(const struct scrape *sc, const char *name)
{
    char bucket[128], count[128];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(count, sizeof count, "%s_count", name);
    double last_le = -1, last_n = -1;
    size_t n = 0;
    int problems = 0;
    bool saw_inf = false;
    for (size_t i = 0; i < sc->nsamples; i++) {
        const struct sample *s = &sc->samples[i];
        if (strcmp(s->name, bucket) != 0)
            continue;
        problems += saw_inf; /* +Inf is the last bucket */
        double le;
        char le_text[32];
        if (sscanf(s->labels, "le=\"%31[^\"]\"", le_text) != 1) {
            problems++;
            continue;
        }
        if (!strcmp(le_text, "+Inf")) {
            le = INFINITY;
            saw_inf = true;
            CHECK(s->value == value(sc, count));
        } else {
            char *end;
            le = strtod(le_text, &end);
            problems += *end != '\0';
        }
        problems += !(le > last_le);       /* bounds strictly increase */
        problems += !(s->value >= last_n); /* counts are cumulative */
        last_le = le;
        last_n = s->value;
        n++;
    }
    CHECK(saw_inf);
    CHECK_EQ(problems, 0);
    char sum[128];
    snprintf(sum, sizeof sum, "%s_sum", name);
    CHECK(value(sc, sum) >= 0);
    return n;
}

static double bucket_value(const struct scrape *sc, const char *name, const char *le)
{
    char key[200];
    snprintf(key, sizeof key, "%s_bucket{le=\"%s\"}", name, le);
    return value(sc, key);
}

static void test_histograms_are_cumulative_in_seconds(void)
{
    static const char *const names[] = {"airlock_upstream_connect_seconds",
                                        "airlock_time_to_first_byte_seconds"};
    static struct scrape before, after;
    scrape(&before);
    for (size_t i = 0; i < 2; i++)
        CHECK_EQ(check_histogram_shape(&before, names[i]), 14); /* 13 bounds and +Inf */

    /* Bounds are upper-inclusive (le): 1 ms falls in le="0.001". */
    static const uint64_t obs[] = {0, 1, 2, 3, 10000, 10001, 50000};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++)
        metrics_observe_ms(H_UPSTREAM_CONNECT, obs[i]);
    metrics_observe_ms(H_TIME_TO_FIRST_BYTE, 250);
    scrape(&after);
    for (size_t i = 0; i < 2; i++)
        CHECK_EQ(check_histogram_shape(&after, names[i]), 14);

    const char *h = names[0];
    static const struct {
        const char *le;
        double delta;
    } want[] = {
        {"0.001", 2}, {"0.002", 3}, {"0.005", 4}, {"0.01", 4},
        {"1", 4},     {"5", 4},     {"10", 5},    {"+Inf", 7},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        double d = bucket_value(&after, h, want[i].le) - bucket_value(&before, h, want[i].le);
        if (d != want[i].delta)
            fprintf(stderr, "  le=%s moved by %.0f, want %.0f\n", want[i].le, d, want[i].delta);
        CHECK(d == want[i].delta);
    }
    CHECK(value(&after, "airlock_upstream_connect_seconds_count") -
              value(&before, "airlock_upstream_connect_seconds_count") ==
          7);
    double dsum = value(&after, "airlock_upstream_connect_seconds_sum") -
                  value(&before, "airlock_upstream_connect_seconds_sum");
    CHECK(fabs(dsum - 70.007) < 0.0005);

    const char *t = names[1];
    CHECK(bucket_value(&after, t, "0.1") - bucket_value(&before, t, "0.1") == 0);
    CHECK(bucket_value(&after, t, "0.25") - bucket_value(&before, t, "0.25") == 1);
    CHECK(bucket_value(&after, t, "+Inf") - bucket_value(&before, t, "+Inf") == 1);
}

static void test_sample_parser_rejects_malformed_lines(void)
{
    struct sample s;
    CHECK(parse_sample("a_b:c 12", &s) && s.value == 12);
    CHECK(parse_sample("m{a=\"x\",b=\"y\\\"z\"} 1.5", &s) && s.value == 1.5);
    CHECK_STR(s.key, "m{a=\"x\",b=\"y\\\"z\"}");
    CHECK(parse_sample("m{le=\"+Inf\"} 3", &s));
    CHECK(!parse_sample("1m 1", &s));
    CHECK(!parse_sample("m  1", &s));
    CHECK(!parse_sample("m 1 ", &s));
    CHECK(!parse_sample("m 1x", &s));
    CHECK(!parse_sample("m{a=x} 1", &s));
    CHECK(!parse_sample("m{a=\"x\" 1", &s));
    CHECK(!parse_sample("m{a=\"x\"}1", &s));
    CHECK(!parse_sample("m", &s));
}

int main(void)
{
    RUN(test_sample_parser_rejects_malformed_lines);
    RUN(test_every_family_present_with_help_and_type);
    RUN(test_labelled_counters_have_every_fixed_label);
    RUN(test_counters_move_by_what_was_added);
    RUN(test_gauges_go_up_and_down);
    RUN(test_histograms_are_cumulative_in_seconds);
    return test_report();
}
