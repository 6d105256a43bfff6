/* SPDX-License-Identifier: MIT */
/* pipe: raw bytes both ways, after an upgrade (through both TLS layers) or for a `protocol: tcp`
 * endpoint (no TLS). No parsing, no age limit: only the peers' closes, errors, and the optional
 * tunnel idle timeout end it. EOF from one side is passed on as a half-close. */
#ifndef AIRLOCK_PIPE_H
#define AIRLOCK_PIPE_H

#include <stddef.h>

#include "airlock/conn.h"

/* Switch the connection to piping. Bytes already read past either head wait in the sides'
 * stashes (or, for the upstream, are returned by the caller's consumer) and go first. */
void pipe_start(struct conn *c, size_t upstream_overflow);
size_t pipe_on_data(struct conn *c, enum side_id id, const char *p, size_t len);
void pipe_on_eof(struct conn *c, enum side_id id);

#endif
