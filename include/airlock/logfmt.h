/* SPDX-License-Identifier: MIT */
/* logfmt: the log's vocabulary (typed events) and its pure formatter: one event or diagnostic
 * becomes one line of text or one OCSF-shaped JSON object, in a caller's buffer. No thread, no
 * file, no global state but a per-thread clock cache: log.c owns the queue and the writer.
 * Invariant: every field is escaped, so no value can end a line or break its JSON; each enum has
 * exactly one table (in logfmt.c) giving its text and its OCSF ids. */
#ifndef AIRLOCK_LOGFMT_H
#define AIRLOCK_LOGFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_format { LOG_TEXT, LOG_JSON };
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* OCSF classes used (class_uid). */
enum log_class {
    LOG_CLASS_NETWORK = 4001, /* connections, tunnels */
    LOG_CLASS_HTTP = 4002,    /* requests */
    LOG_CLASS_FINDING = 2004, /* detection findings: unsolicited 101, credential or authority
                               * mismatch, SSRF attempt */
};

enum log_severity { LOG_SEV_INFO = 1, LOG_SEV_LOW = 2, LOG_SEV_MEDIUM = 3, LOG_SEV_HIGH = 4 };

/* What airlock did: OCSF action and disposition. AUDIT forwarded a request the policy would
 * have refused, so it is Allowed; the l7_decision says the rest. */
enum log_action { LOG_ACTION_NONE, LOG_ACTION_ALLOW, LOG_ACTION_DENY, LOG_ACTION_AUDIT };

/* The step logged: the verb of a text line, activity_name in JSON. For Network Activity it also
 * gives the OCSF activity_id; HTTP Activity takes its id from the method, a finding is always
 * "Create". */
enum log_activity {
    LOG_ACTIVITY_NONE,    /* "EVENT" in text, no activity_name */
    LOG_ACTIVITY_CONNECT, /* a CONNECT decided */
    LOG_ACTIVITY_FORWARD, /* a forward-proxy connection's first request decided */
    LOG_ACTIVITY_REQUEST, /* a request inside a connection (HTTP class) */
    LOG_ACTIVITY_UPGRADE, /* a WebSocket upgrade: raw piping starts */
    LOG_ACTIVITY_PIPE,    /* a tcp endpoint's raw piping starts */
    LOG_ACTIVITY_CLOSE,   /* a connection ended for a reason worth a line */
    LOG_ACTIVITY_TIMEOUT, /* a deadline or idle timer ended it */
    LOG_ACTIVITY_TLS,     /* a TLS handshake failed */
    LOG_ACTIVITY_SSRF,    /* a destination resolved to a refused address (finding) */
    LOG_ACTIVITY_FINDING, /* any other finding */
};

/* The L7 decision on a request or pipe (unmapped.l7_decision). */
enum log_decision {
    LOG_DECISION_NONE,
    LOG_DECISION_ALLOW,
    LOG_DECISION_ALLOW_UPGRADE,
    LOG_DECISION_AUDIT,
    LOG_DECISION_DENY,
};

/* How an exchange ended (unmapped.relay_outcome); relay.h's outcomes are these values. */
enum log_outcome {
    LOG_OUTCOME_NONE,
    LOG_OUTCOME_REUSABLE,
    LOG_OUTCOME_CONSUMED,
    LOG_OUTCOME_UPGRADED,
};

/* One event. Unset strings are NULL, unset numbers and enums 0. */
struct log_event {
    enum log_class class_uid;
    enum log_activity activity;
    enum log_action action;
    enum log_severity severity;
    const char *src_ip; /* client */
    uint16_t src_port;
    const char *dst_host; /* CONNECT or request authority host */
    uint16_t dst_port;
    const char *method;
    const char *path;               /* canonical path without query, placeholders redacted */
    int status;                     /* HTTP status answered or relayed */
    const char *policy;             /* firewall_rule.name */
    enum log_decision l7_decision;  /* of a request or pipe */
    enum log_outcome relay_outcome; /* of an exchange */
    const char *reason;             /* status_detail */
    const char *process;            /* actor.process path when known */
    uint64_t bytes_in, bytes_out;
    long overflow; /* upgrade overflow bytes; -1 when not applicable */
    uint64_t conn_id;
    const char *http_version; /* "2" for a stream of an HTTP/2 connection; NULL: HTTP/1.x */
    uint32_t stream_id;       /* its stream, or 0 */
};

/* The text each value is logged as ("allow", "CONNECT", "allow_upgrade", "consumed"), or NULL
 * for NONE and values out of range. */
const char *logfmt_action_name(enum log_action a);
const char *logfmt_activity_name(enum log_activity a);
const char *logfmt_decision_name(enum log_decision d);
const char *logfmt_outcome_name(enum log_outcome o);

/* Room for any line: the field budgets keep every line well under it, whatever the fields
 * hold (escaping can grow a byte to six). */
#define LOGFMT_LINE_MAX 16384
/* A diagnostic message is cut to this many bytes, before and after escaping. */
#define LOGFMT_MSG_MAX 4096

/* Formats ev, at wall-clock time ms (milliseconds since the epoch; the text line shows it as
 * local HH:MM:SS), as one NUL-terminated line ending in '\n' into buf. Returns the line's length
 * without the NUL, or 0 when it did not fit in cap (never with cap >= LOGFMT_LINE_MAX). */
size_t logfmt_event(char *buf, size_t cap, enum log_format format, const struct log_event *ev,
                    uint64_t ms);
/* The same for a diagnostic message at level. */
size_t logfmt_msg(char *buf, size_t cap, enum log_format format, enum log_level level,
                  const char *msg, uint64_t ms);

#endif
