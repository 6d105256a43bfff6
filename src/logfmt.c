/* SPDX-License-Identifier: MIT */
/* logfmt: formats events and diagnostics as text or OCSF JSON lines, in the caller's buffer.
 * Owns the tables that give each enum of logfmt.h its text and OCSF ids, and nothing else: no
 * thread, no file (log.c writes the lines). Invariant: every field is escaped, so no value can
 * end a line or break its JSON, and a line that would not fit is refused whole, never cut. */
#include "airlock/logfmt.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "airlock/json.h"

#define FIELD_MAX      256  /* escaped bytes kept of a short field: host, method, policy... */
#define LONG_FIELD_MAX 1024 /* reason, process path */
#define PATH_FIELD_MAX 4096
#define MSG_MAX        LOGFMT_MSG_MAX

#define OCSF_VERSION "1.1.0"

/* ---- line buffer ---------------------------------------------------------------------------- */

struct line {
    char *p;
    size_t len, cap;
    bool overflow; /* a field did not fit: the line is dropped rather than written cut */
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->overflow || n > l->cap - l->len) {
        l->overflow = true;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void put_str(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

static void put_ch(struct line *l, char c)
{
    put(l, &c, 1);
}

static void put_u64(struct line *l, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(l, tmp + i, sizeof(tmp) - i);
}

static void put_i64(struct line *l, int64_t v)
{
    if (v < 0) {
        put_ch(l, '-');
        put_u64(l, -(uint64_t)v);
    } else {
        put_u64(l, (uint64_t)v);
    }
}

/* ---- escaping ------------------------------------------------------------------------------- */

enum esc_mode {
    ESC_JSON,   /* inside a JSON string (RFC 8259 §7) */
    ESC_QUOTED, /* inside a "quoted" text value: quote and backslash escaped too */
    ESC_BARE,   /* free text (a diagnostic message): only what could break the line */
};

static const char hex[] = "0123456789abcdef";

/* The representation of the character at p (len bytes left) in mode: writes it to rep (up to
 * JSON_CHAR_MAX bytes), returns its length and sets *adv to the input bytes it stands for. Text
 * takes JSON's escapes of printable ASCII, \n, \r and \t (bare text leaves quote and backslash
 * alone), but stays plain ASCII: every other byte is \xNN, so no terminal escape (ESC, or C1
 * CSI as UTF-8) reaches whoever runs tail -f on the log. */
static size_t escape_char(const char *p, size_t len, enum esc_mode mode, char *rep, size_t *adv)
{
    unsigned char c = (unsigned char)p[0];

    if (mode == ESC_BARE && (c == '"' || c == '\\')) {
        rep[0] = (char)c;
        *adv = 1;
        return 1;
    }
    if (mode == ESC_JSON || (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' || c == '\t')
        return json_escape_char(p, len, rep, adv);
    rep[0] = '\\';
    rep[1] = 'x';
    rep[2] = hex[c >> 4];
    rep[3] = hex[c & 0xf];
    *adv = 1;
    return 4;
}

/* Appends s escaped for mode, at most max bytes of it. A longer value is cut at a character
 * boundary and ends in "...", so a hostile field can neither crowd out the others nor hide the
 * cut. */
static void put_escaped(struct line *l, const char *s, enum esc_mode mode, size_t max)
{
    size_t start = l->len, keep = l->len; /* keep: the last cut point with room for "..." */
    size_t left = strlen(s), n, adv;
    char rep[JSON_CHAR_MAX];

    while (left && !l->overflow) {
        n = escape_char(s, left, mode, rep, &adv);
        if (l->len - start + n > max) {
            l->len = keep;
            put(l, "...", 3);
            return;
        }
        put(l, rep, n);
        if (l->len - start + 3 <= max)
            keep = l->len;
        s += adv;
        left -= adv;
    }
}

static void put_json_string(struct line *l, const char *s, size_t max)
{
    put_ch(l, '"');
    put_escaped(l, s, ESC_JSON, max);
    put_ch(l, '"');
}

/* A text value goes bare when it is one printable ASCII word, else in quotes: a space or quote
 * in a value must not read as the start of the next key=value pair. */
static bool needs_quotes(const char *s)
{
    if (!*s)
        return true;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || *p == '"' || *p == '\\')
            return true;
    return false;
}

static void put_text_value(struct line *l, const char *s, size_t max)
{
    if (needs_quotes(s)) {
        put_ch(l, '"');
        put_escaped(l, s, ESC_QUOTED, max);
        put_ch(l, '"');
    } else {
        put_escaped(l, s, ESC_BARE, max);
    }
}

/* A verb in capitals (ALLOW, CONNECT): short words from our own code, cut at 31 bytes. */
static void put_upper(struct line *l, const char *s)
{
    char tmp[32];
    size_t i;

    for (i = 0; s[i] && i < sizeof(tmp) - 1; i++)
        tmp[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 'a' + 'A') : s[i];
    tmp[i] = '\0';
    put_text_value(l, tmp, FIELD_MAX);
}

static void put_2d(struct line *l, int v)
{
    char d[2] = {(char)('0' + v / 10 % 10), (char)('0' + v % 10)};

    put(l, d, 2);
}

/* Local HH:MM:SS. Cached per thread and second: localtime_r takes glibc's global time zone lock,
 * which every worker would otherwise contend on for every line. */
static void put_hms(struct line *l, uint64_t ms)
{
    static _Thread_local time_t cached_sec = (time_t)-1;
    static _Thread_local struct tm cached_tm;
    time_t sec = (time_t)(ms / 1000);

    if (sec != cached_sec) {
        localtime_r(&sec, &cached_tm);
        cached_sec = sec;
    }
    put_2d(l, cached_tm.tm_hour);
    put_ch(l, ':');
    put_2d(l, cached_tm.tm_min);
    put_ch(l, ':');
    put_2d(l, cached_tm.tm_sec);
}

/* ---- event fields --------------------------------------------------------------------------- */

static const char *const level_text[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const level_json[] = {"debug", "info", "warn", "error"};

static enum log_level clamp_level(enum log_level level)
{
    return level > LOG_ERROR ? LOG_ERROR : level;
}

/* OCSF class and category. An unknown class_uid logs as Network Activity rather than vanish. */
struct ocsf_class {
    unsigned uid;
    const char *name;
    unsigned category_uid;
    const char *category_name;
};

static const struct ocsf_class ocsf_network = {4001, "Network Activity", 4, "Network Activity"};
static const struct ocsf_class ocsf_http = {4002, "HTTP Activity", 4, "Network Activity"};
static const struct ocsf_class ocsf_finding = {2004, "Detection Finding", 2, "Findings"};

static const struct ocsf_class *ocsf_class_of(const struct log_event *ev)
{
    switch (ev->class_uid) {
    case LOG_CLASS_HTTP:
        return &ocsf_http;
    case LOG_CLASS_FINDING:
        return &ocsf_finding;
    default:
        return &ocsf_network;
    }
}

/* ---- the enums' tables ---------------------------------------------------------------------- */

#define COUNT(t) (sizeof(t) / sizeof((t)[0]))

/* OCSF Network Activity activity_id: 1 Open, 2 Close, 3 Reset (cut by a middle box), 4 Fail,
 * 5 Refuse, 6 Traffic, 99 Other. */
static const struct {
    const char *name;
    unsigned network_id;
} activities[] = {
    [LOG_ACTIVITY_NONE] = {NULL, 99},         [LOG_ACTIVITY_CONNECT] = {"CONNECT", 1},
    [LOG_ACTIVITY_FORWARD] = {"FORWARD", 1},  [LOG_ACTIVITY_REQUEST] = {"REQUEST", 6},
    [LOG_ACTIVITY_UPGRADE] = {"UPGRADE", 6},  [LOG_ACTIVITY_PIPE] = {"PIPE", 6},
    [LOG_ACTIVITY_CLOSE] = {"CLOSE", 2},      [LOG_ACTIVITY_TIMEOUT] = {"TIMEOUT", 3},
    [LOG_ACTIVITY_TLS] = {"TLS", 4},          [LOG_ACTIVITY_SSRF] = {"SSRF", 5},
    [LOG_ACTIVITY_FINDING] = {"FINDING", 99},
};

/* OCSF action_id and disposition_id. */
static const struct {
    const char *name;
    unsigned id;
    unsigned disposition_id;
    const char *disposition;
} actions[] = {
    [LOG_ACTION_NONE] = {NULL, 0, 0, NULL},
    [LOG_ACTION_ALLOW] = {"allow", 1, 1, "Allowed"},
    [LOG_ACTION_DENY] = {"deny", 2, 2, "Blocked"},
    [LOG_ACTION_AUDIT] = {"audit", 1, 1, "Allowed"},
};

static const char *const decisions[] = {
    [LOG_DECISION_NONE] = NULL,
    [LOG_DECISION_ALLOW] = "allow",
    [LOG_DECISION_ALLOW_UPGRADE] = "allow_upgrade",
    [LOG_DECISION_AUDIT] = "audit",
    [LOG_DECISION_DENY] = "deny",
};

static const char *const outcomes[] = {
    [LOG_OUTCOME_NONE] = NULL,
    [LOG_OUTCOME_REUSABLE] = "reusable",
    [LOG_OUTCOME_CONSUMED] = "consumed",
    [LOG_OUTCOME_UPGRADED] = "upgraded",
};

/* HTTP Activity numbers the request methods; any other method is 99 "Other". */
static const struct {
    const char *method;
    unsigned id;
} http_activities[] = {
    {"CONNECT", 1}, {"DELETE", 2}, {"GET", 3},   {"HEAD", 4},  {"OPTIONS", 5},
    {"POST", 6},    {"PUT", 7},    {"TRACE", 8}, {"PATCH", 9},
};

const char *logfmt_action_name(enum log_action a)
{
    return (unsigned)a < COUNT(actions) ? actions[a].name : NULL;
}

const char *logfmt_activity_name(enum log_activity a)
{
    return (unsigned)a < COUNT(activities) ? activities[a].name : NULL;
}

const char *logfmt_decision_name(enum log_decision d)
{
    return (unsigned)d < COUNT(decisions) ? decisions[d] : NULL;
}

const char *logfmt_outcome_name(enum log_outcome o)
{
    return (unsigned)o < COUNT(outcomes) ? outcomes[o] : NULL;
}

static unsigned activity_id(const struct log_event *ev)
{
    switch (ev->class_uid) {
    case LOG_CLASS_HTTP:
        if (ev->method)
            for (size_t i = 0; i < COUNT(http_activities); i++)
                if (strcasecmp(http_activities[i].method, ev->method) == 0)
                    return http_activities[i].id;
        return 99;
    case LOG_CLASS_FINDING:
        return 1; /* Create */
    default:
        return (unsigned)ev->activity < COUNT(activities) ? activities[ev->activity].network_id
                                                          : 99;
    }
}

/* Unset severity: a finding is never merely informational. */
static enum log_severity severity_of(const struct log_event *ev)
{
    if (ev->severity >= LOG_SEV_INFO && ev->severity <= LOG_SEV_HIGH)
        return ev->severity;
    return ev->class_uid == LOG_CLASS_FINDING ? LOG_SEV_MEDIUM : LOG_SEV_INFO;
}

static const char *const severity_json[] = {"Unknown", "Informational", "Low", "Medium", "High"};
static const char *const severity_text[] = {"unknown", "info", "low", "medium", "high"};

/* overflow is -1 when not applicable, and 0 is also what an unset field holds; but an upgrade
 * with no early bytes is worth saying, so 0 shows only on an upgrade. */
static bool has_overflow(const struct log_event *ev)
{
    if (ev->overflow > 0)
        return true;
    return ev->overflow == 0 &&
           (ev->relay_outcome == LOG_OUTCOME_UPGRADED || ev->activity == LOG_ACTIVITY_UPGRADE);
}

/* ---- text format ---------------------------------------------------------------------------- */

static void kv_str(struct line *l, const char *key, const char *val, size_t max)
{
    if (!val)
        return;
    put_ch(l, ' ');
    put_str(l, key);
    put_ch(l, '=');
    put_text_value(l, val, max);
}

static void kv_num(struct line *l, const char *key, int64_t v)
{
    put_ch(l, ' ');
    put_str(l, key);
    put_ch(l, '=');
    put_i64(l, v);
}

/* host:port for a connection, method host/path for a request. The port is left out before a
 * path when it is a default one (80, 443): the JSON line always has it. */
static void put_target(struct line *l, const struct log_event *ev)
{
    bool show_port = ev->dst_port && !(ev->path && (ev->dst_port == 80 || ev->dst_port == 443));
    bool v6 = ev->dst_host && strchr(ev->dst_host, ':');
    bool quote =
        (ev->dst_host && needs_quotes(ev->dst_host)) || (ev->path && needs_quotes(ev->path));
    enum esc_mode mode = quote ? ESC_QUOTED : ESC_BARE;

    put_ch(l, ' ');
    if (quote)
        put_ch(l, '"');
    if (ev->dst_host) {
        if (v6)
            put_ch(l, '[');
        put_escaped(l, ev->dst_host, mode, FIELD_MAX);
        if (v6)
            put_ch(l, ']');
    }
    if (show_port) {
        put_ch(l, ':');
        put_u64(l, ev->dst_port);
    }
    if (ev->path)
        put_escaped(l, ev->path, mode, PATH_FIELD_MAX);
    if (quote)
        put_ch(l, '"');
}

/* "12:00:02 DENY GET api.github.com/admin policy=github status=403 reason=..." The first word is
 * the action, or the activity for connection events; then the method (or activity), the target,
 * and key=value pairs for the fields that are set, the free-text reason last. */
static void format_text_event(struct line *l, const struct log_event *ev, uint64_t ms)
{
    const char *activity = logfmt_activity_name(ev->activity);
    const char *action = logfmt_action_name(ev->action);
    const char *verb = ev->method ? ev->method : activity;
    enum log_severity sev = severity_of(ev);

    put_hms(l, ms);
    put_ch(l, ' ');
    if (action) {
        put_upper(l, action);
    } else {
        put_upper(l, activity ? activity : "EVENT");
        verb = ev->method;
    }
    if (verb) {
        put_ch(l, ' ');
        put_upper(l, verb);
    }
    if (ev->dst_host || ev->path)
        put_target(l, ev);

    kv_str(l, "policy", ev->policy, FIELD_MAX);
    if (ev->http_version)
        kv_str(l, "http", ev->http_version, FIELD_MAX);
    if (ev->stream_id)
        kv_num(l, "stream", ev->stream_id);
    if (ev->status)
        kv_num(l, "status", ev->status);
    kv_str(l, "decision", logfmt_decision_name(ev->l7_decision), FIELD_MAX);
    kv_str(l, "outcome", logfmt_outcome_name(ev->relay_outcome), FIELD_MAX);
    if (has_overflow(ev))
        kv_num(l, "overflow", ev->overflow);
    if (ev->bytes_in)
        kv_num(l, "in", (int64_t)ev->bytes_in);
    if (ev->bytes_out)
        kv_num(l, "out", (int64_t)ev->bytes_out);
    if (ev->src_ip) {
        char src[FIELD_MAX + 16];
        bool v6 = strchr(ev->src_ip, ':') != NULL;

        if (ev->src_port)
            snprintf(src, sizeof(src), "%s%.*s%s:%u", v6 ? "[" : "", FIELD_MAX, ev->src_ip,
                     v6 ? "]" : "", (unsigned)ev->src_port);
        else
            snprintf(src, sizeof(src), "%.*s", FIELD_MAX, ev->src_ip);
        kv_str(l, "src", src, FIELD_MAX);
    }
    kv_str(l, "process", ev->process, LONG_FIELD_MAX);
    if (ev->conn_id)
        kv_num(l, "conn", (int64_t)ev->conn_id);
    if (ev->class_uid == LOG_CLASS_FINDING || sev > LOG_SEV_INFO)
        kv_str(l, "severity", severity_text[sev], FIELD_MAX);
    kv_str(l, "reason", ev->reason, LONG_FIELD_MAX);
}

/* "12:00:00 INFO listening on 127.0.0.1:3128" */
static void format_text_msg(struct line *l, enum log_level level, const char *msg, uint64_t ms)
{
    put_hms(l, ms);
    put_ch(l, ' ');
    put_str(l, level_text[level]);
    put_ch(l, ' ');
    put_escaped(l, msg, ESC_BARE, MSG_MAX);
}

/* ---- JSON format ---------------------------------------------------------------------------- */

/* A key in the object whose first-member flag is *first. */
static void jkey(struct line *l, bool *first, const char *key)
{
    if (!*first)
        put_ch(l, ',');
    *first = false;
    put_ch(l, '"');
    put_str(l, key);
    put(l, "\":", 2);
}

static void jstr(struct line *l, bool *first, const char *key, const char *val, size_t max)
{
    if (!val)
        return;
    jkey(l, first, key);
    put_json_string(l, val, max);
}

static void jnum(struct line *l, bool *first, const char *key, int64_t v)
{
    jkey(l, first, key);
    put_i64(l, v);
}

/* Opens a nested object; the caller closes it with put_ch('}'). */
static void jobj(struct line *l, bool *first, const char *key)
{
    jkey(l, first, key);
    put_ch(l, '{');
}

static bool is_ip_literal(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void format_json_event(struct line *l, const struct log_event *ev, uint64_t ms)
{
    const struct ocsf_class *cls = ocsf_class_of(ev);
    unsigned act = activity_id(ev);
    enum log_severity sev = severity_of(ev);
    bool f = true, g, h;

    put_ch(l, '{');
    jnum(l, &f, "time", (int64_t)ms);
    jnum(l, &f, "class_uid", cls->uid);
    jstr(l, &f, "class_name", cls->name, FIELD_MAX);
    jnum(l, &f, "category_uid", cls->category_uid);
    jstr(l, &f, "category_name", cls->category_name, FIELD_MAX);
    jnum(l, &f, "activity_id", act);
    jstr(l, &f, "activity_name", logfmt_activity_name(ev->activity), FIELD_MAX);
    jnum(l, &f, "type_uid", (int64_t)cls->uid * 100 + act);
    jnum(l, &f, "severity_id", sev);
    jstr(l, &f, "severity", severity_json[sev], FIELD_MAX);
    if (logfmt_action_name(ev->action)) {
        jstr(l, &f, "action", actions[ev->action].name, FIELD_MAX);
        jnum(l, &f, "action_id", actions[ev->action].id);
        jstr(l, &f, "disposition", actions[ev->action].disposition, FIELD_MAX);
        jnum(l, &f, "disposition_id", actions[ev->action].disposition_id);
    }
    jstr(l, &f, "status_detail", ev->reason, LONG_FIELD_MAX);

    if (ev->src_ip || ev->src_port) {
        jobj(l, &f, "src_endpoint");
        g = true;
        jstr(l, &g, "ip", ev->src_ip, FIELD_MAX);
        if (ev->src_port)
            jnum(l, &g, "port", ev->src_port);
        put_ch(l, '}');
    }
    if (ev->dst_host || ev->dst_port) {
        jobj(l, &f, "dst_endpoint");
        g = true;
        jstr(l, &g, "hostname", ev->dst_host, FIELD_MAX);
        if (ev->dst_host && is_ip_literal(ev->dst_host))
            jstr(l, &g, "ip", ev->dst_host, FIELD_MAX);
        if (ev->dst_port)
            jnum(l, &g, "port", ev->dst_port);
        put_ch(l, '}');
    }
    if (ev->method || ev->path) {
        jobj(l, &f, "http_request");
        g = true;
        jstr(l, &g, "http_method", ev->method, FIELD_MAX);
        jstr(l, &g, "version", ev->http_version, FIELD_MAX);
        if (ev->path) {
            jobj(l, &g, "url");
            h = true;
            jstr(l, &h, "path", ev->path, PATH_FIELD_MAX);
            put_ch(l, '}');
        }
        put_ch(l, '}');
    }
    if (ev->status) {
        jobj(l, &f, "http_response");
        g = true;
        jnum(l, &g, "code", ev->status);
        put_ch(l, '}');
    }
    if (ev->policy) {
        jobj(l, &f, "firewall_rule");
        g = true;
        jstr(l, &g, "name", ev->policy, FIELD_MAX);
        jstr(l, &g, "type", "network_policy", FIELD_MAX);
        put_ch(l, '}');
    }
    if (ev->process) {
        /* actor.process.file.path */
        jobj(l, &f, "actor");
        put_str(l, "\"process\":{\"file\":{\"path\":");
        put_json_string(l, ev->process, LONG_FIELD_MAX);
        put_str(l, "}}}");
    }
    put_str(l,
            ",\"metadata\":{\"product\":{\"name\":\"airlock\"},\"version\":\"" OCSF_VERSION "\"}");
    const char *decision = logfmt_decision_name(ev->l7_decision);
    const char *outcome = logfmt_outcome_name(ev->relay_outcome);
    if (decision || outcome || ev->conn_id || ev->bytes_in || ev->bytes_out || has_overflow(ev) ||
        ev->stream_id) {
        jobj(l, &f, "unmapped");
        g = true;
        jstr(l, &g, "l7_decision", decision, FIELD_MAX);
        jstr(l, &g, "relay_outcome", outcome, FIELD_MAX);
        if (ev->conn_id)
            jnum(l, &g, "conn_id", (int64_t)ev->conn_id);
        if (ev->stream_id)
            jnum(l, &g, "stream_id", ev->stream_id);
        if (ev->bytes_in)
            jnum(l, &g, "bytes_in", (int64_t)ev->bytes_in);
        if (ev->bytes_out)
            jnum(l, &g, "bytes_out", (int64_t)ev->bytes_out);
        if (has_overflow(ev))
            jnum(l, &g, "overflow", ev->overflow);
        put_ch(l, '}');
    }
    put_ch(l, '}');
}

static void format_json_msg(struct line *l, enum log_level level, const char *msg, uint64_t ms)
{
    bool f = true;

    put_ch(l, '{');
    jnum(l, &f, "time", (int64_t)ms);
    jstr(l, &f, "level", level_json[level], FIELD_MAX);
    jstr(l, &f, "message", msg, MSG_MAX);
    put_ch(l, '}');
}

/* Ends the line and NUL-terminates it; 0 when it did not fit. */
static size_t finish(struct line *l)
{
    put(l, "\n", 2);
    return l->overflow ? 0 : l->len - 1;
}

size_t logfmt_event(char *buf, size_t cap, enum log_format format, const struct log_event *ev,
                    uint64_t ms)
{
    struct line l = {.p = buf, .cap = cap};

    if (format == LOG_JSON)
        format_json_event(&l, ev, ms);
    else
        format_text_event(&l, ev, ms);
    return finish(&l);
}

size_t logfmt_msg(char *buf, size_t cap, enum log_format format, enum log_level level,
                  const char *msg, uint64_t ms)
{
    struct line l = {.p = buf, .cap = cap};

    level = clamp_level(level);
    if (format == LOG_JSON)
        format_json_msg(&l, level, msg, ms);
    else
        format_text_msg(&l, level, msg, ms);
    return finish(&l);
}
