/* SPDX-License-Identifier: MIT */
/* metrics: process-wide counters, gauges and two latency histograms, updated lock-free (relaxed
 * atomics) from every worker and rendered as Prometheus text by the admin endpoint. No label
 * ever carries a host, path or anything a request controls: label values are fixed enums. */
#ifndef AIRLOCK_METRICS_H
#define AIRLOCK_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "airlock/http.h"

enum metric_counter {
    M_CONN_ACCEPTED,
    M_TUNNELS_REUSABLE, /* exchanges ended by outcome */
    M_TUNNELS_CONSUMED,
    M_TUNNELS_UPGRADED,
    M_REQ_ALLOW, /* requests by decision */
    M_REQ_AUDIT,
    M_REQ_DENY,
    M_CONNECT_ALLOW, /* CONNECT / forward L4 decisions */
    M_CONNECT_DENY,
    M_BYTES_IN,  /* bytes read from clients and upstreams */
    M_BYTES_OUT, /* bytes written to clients and upstreams */
    M_TLS_HANDSHAKES_CLIENT,
    M_TLS_HANDSHAKES_UPSTREAM,
    M_TLS_FAILURES_CLIENT,
    M_TLS_FAILURES_UPSTREAM,
    M_UPSTREAM_CONNECT_FAILURES,
    M_SSRF_DENIED,
    M_FINDINGS,
    M_POLICY_RELOADS_OK,
    M_POLICY_RELOADS_FAILED,
    M_CONN_REFUSED_LIMIT, /* clients answered 503: --max-connections reached */
    M_CONN_REFUSED_FDS,   /* clients answered 503: out of file descriptors at accept */
    M_DNS_CACHE_HITS,     /* names answered from the resolver cache */
    M_DNS_LOOKUPS,        /* names that waited for a lookup (their own or a shared one) */
    M_DNS_REFUSED,        /* names refused (503): the resolver queue was full */
    M_H2_SESSIONS,        /* tunnels that speak HTTP/2 */
    M_H2_STREAMS_ALLOW,   /* HTTP/2 streams by decision */
    M_H2_STREAMS_AUDIT,
    M_H2_STREAMS_DENY,
    M_H2_ABUSE, /* HTTP/2 peers sent GOAWAY for a flood, rapid reset or HPACK abuse */
    M_COUNTER_COUNT
};

enum metric_gauge { G_CONN_ACTIVE, G_UPGRADES_ACTIVE, G_GAUGE_COUNT };

enum metric_histogram { H_UPSTREAM_CONNECT, H_TIME_TO_FIRST_BYTE, H_HISTOGRAM_COUNT };

void metrics_add(enum metric_counter m, uint64_t n);
static inline void metrics_inc(enum metric_counter m)
{
    metrics_add(m, 1);
}
void metrics_gauge_add(enum metric_gauge g, int64_t delta);
/* The highest value g reached since the previous call (or since start), and a new window
 * starts at its current value: the memory trimmer's view of a burst. */
int64_t metrics_gauge_peak(enum metric_gauge g);
/* Record one observation in milliseconds. */
void metrics_observe_ms(enum metric_histogram h, uint64_t ms);

/* Append the Prometheus text exposition (format 0.0.4) of every metric to out. */
void metrics_render(struct http_buf *out);

#endif
