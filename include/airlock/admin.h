/* SPDX-License-Identifier: MIT */
/* admin: tiny HTTP/1.1 servers for operators, run on the main thread's loop. The admin
 * listener (--admin: TCP or a Unix socket) serves /healthz, /readyz, /metrics (Prometheus text)
 * and /policy (the active policy's JSON, which never holds a secret); on a non-loopback TCP
 * address the last two only with --admin-expose-sensitive. The health listener (--health)
 * serves /healthz and /readyz only, for probes that come over the network. One request per
 * connection, answered with Connection: close; connections are bounded in count (per listener
 * and per source, an unanswered one of the busiest source making room for a new one), size and
 * time, so a flood of idle sockets never keeps a probe out. Main thread only. */
#ifndef AIRLOCK_ADMIN_H
#define AIRLOCK_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

struct server;
struct http_buf;

/* Listen on s->cfg->admin and s->cfg->health, whichever are set: "IP:PORT", "[IPv6]:PORT",
 * "localhost:PORT" (port 0 picks a free one) or "unix:PATH" (a socket file made 0600; a stale
 * one left by a dead process is replaced). A non-loopback --admin is refused unless
 * admin_public. Serves s (borrowed until admin_stop). Returns 0, or -1 with a message in err;
 * on failure nothing is left open but listeners already handed to uv_close, which the next
 * uv_run finishes. */
int admin_start(uv_loop_t *loop, struct server *s, char *err, size_t errlen);

/* From now on /readyz answers 503 "draining" (SIGTERM): load balancers stop sending. */
void admin_set_draining(void);

/* Close the listeners (removing a Unix socket file) and every admin connection (uv_close; the
 * loop finishes the closes). Idempotent, and a no-op for a listener that did not start. */
void admin_stop(void);

/* The command line's client (`airlock admin get`): GET path from addr (as for --admin), one
 * blocking request with a 5 s timeout. Fills *status and appends the response body to body
 * (the caller frees it). 0, or -1 with err filled (nothing to connect to, no answer). */
int admin_get(const char *addr, const char *path, int *status, struct http_buf *body, char *err,
              size_t errlen);

#endif
