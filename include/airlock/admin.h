/* SPDX-License-Identifier: MIT */
/* admin: a tiny HTTP/1.1 server for operators on its own (loopback) address, run on the main
 * thread's loop: /healthz, /readyz, /metrics (Prometheus text) and /policy (the active policy's
 * JSON, which never holds a secret). One request per connection, answered with Connection:
 * close; every admin connection is bounded in count, size and time. Main thread only. */
#ifndef AIRLOCK_ADMIN_H
#define AIRLOCK_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

struct server;

/* Listen on hostport ("IP:PORT", "[IPv6]:PORT" or "localhost:PORT"; port 0 picks a free one)
 * on loop, serving s (borrowed until admin_stop). A non-loopback address is refused unless
 * allow_public (--admin-public). Returns 0, or -1 with a message in err; on failure nothing is
 * left open but a listener already handed to uv_close, which the next uv_run finishes. */
int admin_start(uv_loop_t *loop, struct server *s, const char *hostport, bool allow_public,
                char *err, size_t errlen);

/* From now on /readyz answers 503 "draining" (SIGTERM): load balancers stop sending. */
void admin_set_draining(void);

/* Close the listener and every admin connection (uv_close; the loop finishes the closes).
 * Idempotent, and a no-op when admin_start did not succeed. */
void admin_stop(void);

#endif
