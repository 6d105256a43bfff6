/* SPDX-License-Identifier: MIT */
/* log: one line per decision or connection event, as a short human line (text) or an
 * OCSF-shaped JSON object (json): logfmt.h has the events' types and formats them. Lines are
 * formatted on the calling thread into a bounded queue and written by one writer thread, so a
 * slow disk never stalls an event loop (when the queue is full an ordinary line is dropped and
 * counted; a finding, class FINDING or severity high, waits for the writer to make room and is
 * never dropped). Callers never pass a secret, placeholder or query string: the event has no field
 * that could carry one, and paths are the canonical, redacted ones. */
#ifndef AIRLOCK_LOG_H
#define AIRLOCK_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airlock/logfmt.h"

/* Start logging to path (append, created 0640) or to stderr when path is NULL. 0 or -errno.
 * So that nobody else picks the file airlock appends to, path is never followed through a
 * symlink (-ELOOP); its directory must belong to airlock's uid or root and not be writable by
 * group or others unless sticky (-EPERM); an existing regular file or FIFO must be airlock's
 * own (-EPERM), a regular file with no second hard link (-EMLINK); a character device such as
 * /dev/null is taken as it is, anything else refused (-EINVAL). A refusal is also logged
 * (to stderr) with its reason. log_reopen applies the same rules. */
int log_open(const char *path, enum log_format format, enum log_level min_level);
/* Reopen the file (SIGUSR1, for logrotate). No-op on stderr. */
void log_reopen(void);
/* Flush every queued line and stop the writer thread. */
void log_close(void);
/* Lines dropped because the queue was full (never a finding) or a write failed. */
uint64_t log_dropped(void);

/* Format ev (logfmt.h) and queue its line. */
void log_event(const struct log_event *ev);

/* A diagnostic line (startup, reload, errors without a peer). printf-style. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
