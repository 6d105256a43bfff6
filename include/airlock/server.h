/* SPDX-License-Identifier: MIT */
/* server: the process around the connections: configuration, the shared read-mostly state
 * (CA, TLS contexts, the current policy snapshot), the worker threads (one uv loop and one
 * SO_REUSEPORT listener each), signals (SIGHUP reload, SIGTERM drain, SIGUSR1 log reopen).
 * Only the policy pointer changes after start; it is swapped under a mutex and handed out as a
 * new reference, so a connection keeps the snapshot it took for as long as it needs it. */
#ifndef AIRLOCK_SERVER_H
#define AIRLOCK_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <uv.h>

#include "airlock/http.h"
#include "airlock/log.h"

#define SERVER_MAX_LISTEN 8

struct server_config {
    const char *listen[SERVER_MAX_LISTEN];
    size_t nlisten;
    /* --transparent: listeners for connections the kernel redirects (nftables redirect); the
     * two lists together hold at most SERVER_MAX_LISTEN */
    const char *transparent[SERVER_MAX_LISTEN];
    size_t ntransparent;
    /* --mark: SO_MARK on every upstream socket, so that transparent mode's ruleset
     * (`airlock rules --mark`) leaves airlock's own connections alone; 0: none. Setting it
     * needs CAP_NET_ADMIN, checked at start. */
    uint32_t upstream_mark;
    const char *ca_dir;
    const char *policy_file;
    const char *providers_file;
    const char *upstream_ca;      /* --upstream-ca: trusted besides the system roots */
    const char *upstream_ca_only; /* --upstream-ca-only: trusted instead of the system roots */
    const char *admin;            /* --admin: HOST:PORT or unix:PATH */
    bool admin_public;            /* --admin may be a non-loopback address */
    bool admin_expose_sensitive;  /* ... and serve /metrics and /policy there */
    const char *health;           /* --health: /healthz and /readyz only */
    const char *log_file;
    enum log_format log_format;
    enum log_level log_level;
    unsigned workers;
    uint64_t idle_timeout_ms;        /* keep-alive idle between exchanges */
    uint64_t drain_timeout_ms;       /* SIGTERM: how long open exchanges may finish */
    uint64_t connect_timeout_ms;     /* upstream TCP connect */
    uint64_t handshake_timeout_ms;   /* each TLS handshake */
    uint64_t head_timeout_ms;        /* a request head, from its first byte */
    uint64_t response_timeout_ms;    /* the response head, and inactivity while streaming */
    uint64_t tunnel_idle_timeout_ms; /* upgraded / piped connections; 0 = off */
    size_t max_connections;          /* per process; 0 = derived from the descriptor limit */
    bool binary_identity_off;
    struct http_limits http_limits; /* per message, both directions */
    unsigned resolver_threads;      /* DNS lookup threads */
    size_t resolver_queue;          /* lookups that may wait for a thread (beyond: 503) */
    uint64_t dns_cache_ttl_ms;      /* how long an answer is reused; 0 = no cache */
};

/* Fill cfg with DESIGN.md's defaults. */
void server_config_defaults(struct server_config *cfg);

/* Load everything, start the workers, run until SIGTERM/SIGINT has drained. Returns the exit
 * code: 0 after a clean stop, 1 for a configuration error, 2 for a runtime failure. */
int server_run(const struct server_config *cfg);

struct policy;
struct creds;
struct ca;
struct resolver;

/* Shared state every worker reads. */
struct server {
    const struct server_config *cfg;
    struct ca *ca;
    SSL_CTX *client_ctx; /* towards clients: we are the server */
    SSL_CTX *upstream_ctx;
    uv_mutex_t policy_lock; /* guards both snapshots below */
    struct policy *policy;
    struct creds *creds; /* NULL without --providers */
    struct resolver *resolver;
    size_t max_connections; /* in force: --max-connections, or derived from the fd limit */
};

/* The current policy snapshot, as a new reference (policy_unref when done). */
struct policy *server_policy(struct server *s);
/* The current providers snapshot as a new reference (creds_unref), or NULL when none. */
struct creds *server_creds(struct server *s);

#endif
