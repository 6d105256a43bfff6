/* SPDX-License-Identifier: MIT */
/* log: one line per decision or connection event, as a short human line (text) or an
 * OCSF-shaped JSON object (json). Lines are formatted on the calling thread into a bounded
 * queue and written by one writer thread, so a slow disk never stalls an event loop (when the
 * queue is full an ordinary line is dropped and counted; a finding, class FINDING or severity
 * high, waits for the writer to make room and is never dropped). Callers never pass a secret,
 * placeholder or query string: the event has no field that could carry one, and paths are the
 * canonical, redacted ones. */
#ifndef AIRLOCK_LOG_H
#define AIRLOCK_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_format { LOG_TEXT, LOG_JSON };
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

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

/* OCSF classes used (class_uid). */
enum log_class {
    LOG_CLASS_NETWORK = 4001, /* connections, tunnels */
    LOG_CLASS_HTTP = 4002,    /* requests */
    LOG_CLASS_FINDING = 2004, /* detection findings: unsolicited 101, credential or authority
                               * mismatch, SSRF attempt */
};

enum log_severity { LOG_SEV_INFO = 1, LOG_SEV_LOW = 2, LOG_SEV_MEDIUM = 3, LOG_SEV_HIGH = 4 };

/* One event. Unset strings are NULL, unset numbers 0. */
struct log_event {
    enum log_class class_uid;
    const char *activity; /* "CONNECT", "REQUEST", "UPGRADE", "CLOSE", "DENY" ... short verb
                           * for the text line; activity_name in JSON */
    const char *action;   /* "allow" | "deny" | "audit" */
    enum log_severity severity;
    const char *src_ip; /* client */
    uint16_t src_port;
    const char *dst_host; /* CONNECT or request authority host */
    uint16_t dst_port;
    const char *method;
    const char *path;          /* canonical path without query, placeholders redacted */
    int status;                /* HTTP status answered or relayed */
    const char *policy;        /* firewall_rule.name */
    const char *l7_decision;   /* "allow" | "allow_upgrade" | "audit" | "deny" */
    const char *relay_outcome; /* "reusable" | "consumed" | "upgraded" */
    const char *reason;        /* status_detail */
    const char *process;       /* actor.process path when known */
    uint64_t bytes_in, bytes_out;
    long overflow; /* upgrade overflow bytes; -1 when not applicable */
    uint64_t conn_id;
};

void log_event(const struct log_event *ev);

/* A diagnostic line (startup, reload, errors without a peer). printf-style. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
