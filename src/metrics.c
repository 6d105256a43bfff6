/* SPDX-License-Identifier: MIT */
/* metrics: process-wide counters, gauges and latency histograms. Updates are relaxed atomic
 * adds from any worker (no lock on the data path); rendering reads each value once, so a
 * scrape is a consistent-enough snapshot, as Prometheus expects of counters. */
#include "airlock/metrics.h"

#include <stdatomic.h>

#include "airlock/log.h"

static atomic_uint_fast64_t counters[M_COUNTER_COUNT];
static atomic_int_fast64_t gauges[G_GAUGE_COUNT];
static atomic_int_fast64_t peaks[G_GAUGE_COUNT]; /* highest value in the current window */

/* Bucket upper bounds in milliseconds; the last bucket is +Inf. */
static const uint64_t bucket_ms[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
#define NBUCKETS (sizeof bucket_ms / sizeof bucket_ms[0])

struct histogram {
    atomic_uint_fast64_t buckets[NBUCKETS + 1]; /* not cumulative; summed when rendered */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_ms;
};
static struct histogram histograms[H_HISTOGRAM_COUNT];

void metrics_add(enum metric_counter m, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[m], n, memory_order_relaxed);
}

void metrics_gauge_add(enum metric_gauge g, int64_t delta)
{
    int64_t now = atomic_fetch_add_explicit(&gauges[g], delta, memory_order_relaxed) + delta;
    int64_t peak = atomic_load_explicit(&peaks[g], memory_order_relaxed);
    /* Usually one load: the compare-and-swap runs only when a new high is set. */
    while (now > peak && !atomic_compare_exchange_weak_explicit(
                             &peaks[g], &peak, now, memory_order_relaxed, memory_order_relaxed))
        ;
}

int64_t metrics_gauge_peak(enum metric_gauge g)
{
    int64_t now = atomic_load_explicit(&gauges[g], memory_order_relaxed);
    int64_t peak = atomic_exchange_explicit(&peaks[g], now, memory_order_relaxed);
    return peak > now ? peak : now;
}

void metrics_observe_ms(enum metric_histogram h, uint64_t ms)
{
    struct histogram *hist = &histograms[h];
    size_t i = 0;
    while (i < NBUCKETS && ms > bucket_ms[i])
        i++;
    atomic_fetch_add_explicit(&hist->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hist->sum_ms, ms, memory_order_relaxed);
}

static uint64_t get(enum metric_counter m)
{
    return atomic_load_explicit(&counters[m], memory_order_relaxed);
}

static void counter(struct http_buf *out, const char *name, const char *help, uint64_t v)
{
    http_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                    (unsigned long long)v);
}

static void gauge(struct http_buf *out, const char *name, const char *help, enum metric_gauge g)
{
    http_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name,
                    (long long)atomic_load_explicit(&gauges[g], memory_order_relaxed));
}

static void labelled(struct http_buf *out, const char *name, const char *help, const char *label,
                     const char *const *values, const enum metric_counter *ms, size_t n)
{
    http_buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    for (size_t i = 0; i < n; i++)
        http_buf_printf(out, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
                        (unsigned long long)get(ms[i]));
}

static void histogram(struct http_buf *out, const char *name, const char *help,
                      enum metric_histogram h)
{
    struct histogram *hist = &histograms[h];
    http_buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= NBUCKETS; i++) {
        cumulative += atomic_load_explicit(&hist->buckets[i], memory_order_relaxed);
        if (i < NBUCKETS)
            http_buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bucket_ms[i] / 1000.0,
                            (unsigned long long)cumulative);
        else
            http_buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                            (unsigned long long)cumulative);
    }
    /* count is the +Inf bucket by construction, so the two always agree in one scrape. */
    http_buf_printf(out, "%s_sum %.3f\n%s_count %llu\n", name,
                    (double)atomic_load_explicit(&hist->sum_ms, memory_order_relaxed) / 1000.0,
                    name, (unsigned long long)cumulative);
}

void metrics_render(struct http_buf *out)
{
    counter(out, "airlock_connections_accepted_total", "Client connections accepted.",
            get(M_CONN_ACCEPTED));
    gauge(out, "airlock_connections_active", "Client connections open now.", G_CONN_ACTIVE);
    static const char *const outcomes[] = {"reusable", "consumed", "upgraded"};
    static const enum metric_counter outcome_m[] = {M_TUNNELS_REUSABLE, M_TUNNELS_CONSUMED,
                                                    M_TUNNELS_UPGRADED};
    labelled(out, "airlock_exchanges_total", "HTTP exchanges by relay outcome.", "outcome",
             outcomes, outcome_m, 3);
    static const char *const decisions[] = {"allow", "audit", "deny"};
    static const enum metric_counter decision_m[] = {M_REQ_ALLOW, M_REQ_AUDIT, M_REQ_DENY};
    labelled(out, "airlock_requests_total", "Requests by policy decision.", "decision", decisions,
             decision_m, 3);
    static const enum metric_counter h2_m[] = {M_H2_STREAMS_ALLOW, M_H2_STREAMS_AUDIT,
                                               M_H2_STREAMS_DENY};
    labelled(out, "airlock_h2_streams_total", "HTTP/2 streams by policy decision.", "decision",
             decisions, h2_m, 3);
    counter(out, "airlock_h2_sessions_total", "Tunnels that spoke HTTP/2.", get(M_H2_SESSIONS));
    counter(out, "airlock_h2_abuse_total",
            "HTTP/2 peers sent GOAWAY for a flood, rapid reset or HPACK abuse.", get(M_H2_ABUSE));
    static const enum metric_counter connect_m[] = {M_CONNECT_ALLOW, M_CONNECT_DENY};
    static const char *const allow_deny[] = {"allow", "deny"};
    labelled(out, "airlock_connects_total", "CONNECT and forward-proxy decisions.", "decision",
             allow_deny, connect_m, 2);
    gauge(out, "airlock_upgrades_active", "Upgraded or piped connections open now.",
          G_UPGRADES_ACTIVE);
    counter(out, "airlock_bytes_received_total", "Bytes read from clients and upstreams.",
            get(M_BYTES_IN));
    counter(out, "airlock_bytes_sent_total", "Bytes written to clients and upstreams.",
            get(M_BYTES_OUT));
    static const char *const sides[] = {"client", "upstream"};
    static const enum metric_counter hs_m[] = {M_TLS_HANDSHAKES_CLIENT, M_TLS_HANDSHAKES_UPSTREAM};
    static const enum metric_counter hsf_m[] = {M_TLS_FAILURES_CLIENT, M_TLS_FAILURES_UPSTREAM};
    labelled(out, "airlock_tls_handshakes_total", "Completed TLS handshakes.", "side", sides, hs_m,
             2);
    labelled(out, "airlock_tls_handshake_failures_total", "Failed TLS handshakes.", "side", sides,
             hsf_m, 2);
    counter(out, "airlock_upstream_connect_failures_total", "Upstream connects that failed.",
            get(M_UPSTREAM_CONNECT_FAILURES));
    counter(out, "airlock_ssrf_denied_total", "Destinations refused by the SSRF guard.",
            get(M_SSRF_DENIED));
    counter(out, "airlock_findings_total", "Detection findings logged.", get(M_FINDINGS));
    static const char *const results[] = {"ok", "failed"};
    static const enum metric_counter reload_m[] = {M_POLICY_RELOADS_OK, M_POLICY_RELOADS_FAILED};
    labelled(out, "airlock_policy_reloads_total", "Policy reloads.", "result", results, reload_m,
             2);
    static const char *const refusals[] = {"limit", "fds"};
    static const enum metric_counter refused_m[] = {M_CONN_REFUSED_LIMIT, M_CONN_REFUSED_FDS};
    labelled(out, "airlock_connections_refused_total",
             "Clients answered 503: connection limit reached, or out of file descriptors.",
             "reason", refusals, refused_m, 2);
    static const char *const sources[] = {"cache", "resolver"};
    static const enum metric_counter source_m[] = {M_DNS_CACHE_HITS, M_DNS_LOOKUPS};
    labelled(out, "airlock_dns_lookups_total", "Names resolved, by where the answer came from.",
             "source", sources, source_m, 2);
    counter(out, "airlock_dns_refused_total",
            "Names refused with 503 because the resolver queue was full.", get(M_DNS_REFUSED));
    counter(out, "airlock_log_lines_dropped_total", "Log lines dropped on a full queue.",
            log_dropped());
    histogram(out, "airlock_upstream_connect_seconds", "Time to connect to an upstream.",
              H_UPSTREAM_CONNECT);
    histogram(out, "airlock_time_to_first_byte_seconds",
              "Time from a request head sent upstream to its response head.", H_TIME_TO_FIRST_BYTE);
}
