/* SPDX-License-Identifier: MIT */
/* log: formats events and diagnostics (text or OCSF JSON) on the calling thread and hands whole
 * lines to one writer thread through a bounded byte ring, so an event loop never waits on the
 * disk. Owns the log fd, the ring and the writer thread; never sees a secret (see log.h).
 * Invariants: the ring holds only whole lines, so every write(2) and every reopen falls on a line
 * boundary; every field is escaped, so no value can end a line or break its JSON. */
#include "airlock/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Queued bytes: about 8,000 JSON or 25,000 text lines, enough to ride out a slow disk for a
 * while, in one allocation for the life of the log. */
#define RING_CAP (4u << 20)
/* One formatted line. The caller formats on its own stack; the field budgets below keep every
 * line well under this, whatever the fields hold (escaping can grow a byte to six). */
#define LINE_CAP       16384
#define FIELD_MAX      256  /* escaped bytes kept of a short field: host, method, policy... */
#define LONG_FIELD_MAX 1024 /* reason, process path */
#define PATH_FIELD_MAX 4096
#define MSG_MAX        4096 /* a diagnostic message, before and after escaping */

#define OCSF_VERSION "1.1.0"

/* The queue. pushed and written count bytes since log_open, so pushed - written is the fill and
 * each one modulo RING_CAP is a ring offset. Producers copy into [pushed, written + RING_CAP)
 * under the lock; the writer reads [written, pushed) without it, because no producer touches
 * that range until the writer advances written (again under the lock). */
struct queue {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* to the writer: lines queued, stop or reopen requested */
    pthread_cond_t room; /* to producers of findings: the writer freed space */
    unsigned waiting;    /* producers waiting on room */
    bool accepting;      /* false before log_open and after log_close: lines go to stderr */
    bool stop;
    bool reopen;        /* reopen the file once written reaches reopen_at */
    uint64_t reopen_at; /* pushed when log_reopen was called: earlier lines go to the old file */
    uint64_t pushed, written;
    char *ring;
    /* Set by log_open before the writer starts, then the writer's alone until log_close joins
     * it: the reopen swaps fd on the writer thread, so no line goes to a closed fd. */
    int fd;
    char *path;        /* NULL when logging to stderr */
    uint64_t reported; /* dropped as last told in the log (the counter outlives a log_open) */
    pthread_t thread;
};

static struct queue q = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .room = PTHREAD_COND_INITIALIZER,
    .fd = -1,
};

/* Read on every call without the lock, written only by log_open: atomics keep that race-free.
 * Before log_open, lines go to stderr as text from INFO up, so startup errors are readable. */
static _Atomic int cur_format = LOG_TEXT;
static _Atomic int cur_min_level = LOG_INFO;
/* Lines lost: queue full, or (counted by the writer) a failed write. */
static _Atomic uint64_t dropped;

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

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 §4: no overlong forms, no surrogates,
 * nothing above U+10FFFF), or 0. p is NUL-terminated, and NUL is never a continuation byte, so
 * the checks stop at the terminator. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        if (p[0] == 0xe0)
            lo = 0xa0;
        if (p[0] == 0xed)
            hi = 0x9f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        if (p[0] == 0xf0)
            lo = 0x90;
        if (p[0] == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

static const char hex[] = "0123456789abcdef";

static size_t u_escape(char *rep, unsigned cp)
{
    rep[0] = '\\';
    rep[1] = 'u';
    rep[2] = hex[(cp >> 12) & 0xf];
    rep[3] = hex[(cp >> 8) & 0xf];
    rep[4] = hex[(cp >> 4) & 0xf];
    rep[5] = hex[cp & 0xf];
    return 6;
}

/* The representation of the character at p in mode: writes it to rep (up to 6 bytes), returns
 * its length and sets *adv to the input bytes it stands for. */
static size_t escape_char(const unsigned char *p, enum esc_mode mode, char *rep, size_t *adv)
{
    unsigned char c = p[0];
    size_t n;

    *adv = 1;
    if (c >= 0x20 && c < 0x7f) {
        if ((c == '"' || c == '\\') && mode != ESC_BARE) {
            rep[0] = '\\';
            rep[1] = (char)c;
            return 2;
        }
        rep[0] = (char)c;
        return 1;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        rep[0] = '\\';
        rep[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        return 2;
    }
    if (mode != ESC_JSON) {
        /* Text lines stay plain ASCII: no terminal escape (ESC, or C1 CSI as UTF-8) reaches
         * whoever runs tail -f on them. */
        rep[0] = '\\';
        rep[1] = 'x';
        rep[2] = hex[c >> 4];
        rep[3] = hex[c & 0xf];
        return 4;
    }
    if (c < 0x80)
        return u_escape(rep, c); /* the other C0 controls and DEL */
    n = utf8_len(p);
    if (n == 0)
        return u_escape(rep, 0xfffd); /* a JSON string must be valid UTF-8 (RFC 8259 §8.1) */
    *adv = n;
    /* Valid, but C1 controls are terminal escapes and U+2028/2029 end a line in JavaScript. */
    if (n == 2 && c == 0xc2 && p[1] < 0xa0)
        return u_escape(rep, p[1]);
    if (n == 3 && c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
        return u_escape(rep, 0x2000u | p[2]);
    memcpy(rep, p, n);
    return n;
}

/* Appends s escaped for mode, at most max bytes of it. A longer value is cut at a character
 * boundary and ends in "...", so a hostile field can neither crowd out the others nor hide the
 * cut. */
static void put_escaped(struct line *l, const char *s, enum esc_mode mode, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t start = l->len, keep = l->len; /* keep: the last cut point with room for "..." */
    char rep[8];
    size_t n, adv;

    while (*p && !l->overflow) {
        n = escape_char(p, mode, rep, &adv);
        if (l->len - start + n > max) {
            l->len = keep;
            put(l, "...", 3);
            return;
        }
        put(l, rep, n);
        if (l->len - start + 3 <= max)
            keep = l->len;
        p += adv;
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

/* ---- time ----------------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
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

struct name_id {
    const char *name;
    unsigned id;
};

/* OCSF activity_id: HTTP Activity numbers the request methods, Network Activity the connection
 * steps; a finding is always "Create". Anything else is 99 "Other", with activity_name telling. */
static const struct name_id http_activities[] = {
    {"CONNECT", 1}, {"DELETE", 2}, {"GET", 3},   {"HEAD", 4},  {"OPTIONS", 5},
    {"POST", 6},    {"PUT", 7},    {"TRACE", 8}, {"PATCH", 9},
};
static const struct name_id network_activities[] = {
    {"CONNECT", 1}, {"OPEN", 1},   {"CLOSE", 2},   {"RESET", 3},   {"FAIL", 4},
    {"DENY", 5},    {"REFUSE", 5}, {"UPGRADE", 6}, {"TRAFFIC", 6},
};

static unsigned lookup_id(const struct name_id *t, size_t n, const char *name)
{
    if (name)
        for (size_t i = 0; i < n; i++)
            if (strcasecmp(t[i].name, name) == 0)
                return t[i].id;
    return 99;
}

static unsigned activity_id(const struct log_event *ev)
{
    switch (ev->class_uid) {
    case LOG_CLASS_HTTP:
        return lookup_id(http_activities, sizeof(http_activities) / sizeof(http_activities[0]),
                         ev->method);
    case LOG_CLASS_FINDING:
        return 1;
    default:
        return lookup_id(network_activities,
                         sizeof(network_activities) / sizeof(network_activities[0]), ev->activity);
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

/* OCSF action_id and disposition_id. audit forwards the request, so it is Allowed; the
 * l7_decision says it would have been refused. */
static unsigned action_id(const char *action, unsigned *disposition, const char **disp_name)
{
    if (strcmp(action, "allow") == 0 || strcmp(action, "audit") == 0) {
        *disposition = 1;
        *disp_name = "Allowed";
        return 1;
    }
    if (strcmp(action, "deny") == 0) {
        *disposition = 2;
        *disp_name = "Blocked";
        return 2;
    }
    *disposition = 0;
    *disp_name = NULL;
    return 99;
}

/* overflow is -1 when not applicable, and 0 is also what an unset field holds; but an upgrade
 * with no early bytes is worth saying, so 0 shows only on an upgrade. */
static bool has_overflow(const struct log_event *ev)
{
    if (ev->overflow > 0)
        return true;
    return ev->overflow == 0 &&
           ((ev->relay_outcome && strcmp(ev->relay_outcome, "upgraded") == 0) ||
            (ev->activity && strcasecmp(ev->activity, "UPGRADE") == 0));
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
    const char *verb = ev->method ? ev->method : ev->activity;
    enum log_severity sev = severity_of(ev);

    put_hms(l, ms);
    put_ch(l, ' ');
    if (ev->action) {
        put_upper(l, ev->action);
    } else {
        put_upper(l, ev->activity ? ev->activity : "EVENT");
        verb = ev->method;
    }
    if (verb) {
        put_ch(l, ' ');
        put_upper(l, verb);
    }
    if (ev->dst_host || ev->path)
        put_target(l, ev);

    kv_str(l, "policy", ev->policy, FIELD_MAX);
    if (ev->status)
        kv_num(l, "status", ev->status);
    kv_str(l, "decision", ev->l7_decision, FIELD_MAX);
    kv_str(l, "outcome", ev->relay_outcome, FIELD_MAX);
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
    jstr(l, &f, "activity_name", ev->activity, FIELD_MAX);
    jnum(l, &f, "type_uid", (int64_t)cls->uid * 100 + act);
    jnum(l, &f, "severity_id", sev);
    jstr(l, &f, "severity", severity_json[sev], FIELD_MAX);
    if (ev->action) {
        unsigned disposition;
        const char *disp_name;
        unsigned aid = action_id(ev->action, &disposition, &disp_name);

        jstr(l, &f, "action", ev->action, FIELD_MAX);
        jnum(l, &f, "action_id", aid);
        if (disp_name) {
            jstr(l, &f, "disposition", disp_name, FIELD_MAX);
            jnum(l, &f, "disposition_id", disposition);
        }
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
    if (ev->l7_decision || ev->relay_outcome || ev->conn_id || ev->bytes_in || ev->bytes_out ||
        has_overflow(ev)) {
        jobj(l, &f, "unmapped");
        g = true;
        jstr(l, &g, "l7_decision", ev->l7_decision, FIELD_MAX);
        jstr(l, &g, "relay_outcome", ev->relay_outcome, FIELD_MAX);
        if (ev->conn_id)
            jnum(l, &g, "conn_id", (int64_t)ev->conn_id);
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

static void format_msg(struct line *l, enum log_format format, enum log_level level,
                       const char *msg)
{
    if (format == LOG_JSON)
        format_json_msg(l, level, msg, now_ms());
    else
        format_text_msg(l, level, msg, now_ms());
    put_ch(l, '\n');
}

/* ---- output --------------------------------------------------------------------------------- */

static size_t count_lines(const struct iovec *iov, int cnt)
{
    size_t n = 0;

    for (int i = 0; i < cnt; i++) {
        const char *p = iov[i].iov_base, *end = p + iov[i].iov_len;

        while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            n++;
            p++;
        }
    }
    return n;
}

/* Writes every byte of iov, retrying short writes and EINTR, and waiting on EAGAIN (stderr may
 * be a non-blocking pipe shared with a parent). Returns 0 or -errno; on an error, *lost is the
 * number of lines that did not make it. */
static int write_all(int fd, struct iovec *iov, int cnt, size_t *lost)
{
    *lost = 0;
    while (cnt > 0) {
        ssize_t r = writev(fd, iov, cnt);

        if (r < 0) {
            int err = errno;

            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};

                poll(&pfd, 1, 1000);
                continue;
            }
            *lost = count_lines(iov, cnt);
            return -err;
        }
        while (cnt > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

static int write_buf(int fd, const char *p, size_t len, size_t *lost)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};

    return write_all(fd, &iov, 1, lost);
}

/* Before log_open and after log_close: straight to stderr, so nothing is lost at startup or
 * shutdown. One write per line keeps concurrent lines whole. */
static void write_stderr(const char *p, size_t len)
{
    size_t lost;

    (void)write_buf(STDERR_FILENO, p, len, &lost);
}

/* Hands one whole line to the writer, or to stderr when no writer runs. A full queue drops an
 * ordinary line (counted); a line that must be kept (a finding) waits for the writer to make
 * room instead: the writer always advances, by writing or by counting a failed write as lost,
 * so the wait lasts as long as one batch write. */
static void emit(const struct line *l, bool keep)
{
    bool was_empty;
    size_t off, first;

    if (l->overflow) {
        /* Cannot happen with the field budgets; counted rather than written cut. */
        atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&q.lock);
    if (!q.accepting) {
        pthread_mutex_unlock(&q.lock);
        write_stderr(l->p, l->len);
        return;
    }
    while (RING_CAP - (q.pushed - q.written) < l->len) {
        if (!keep) {
            pthread_mutex_unlock(&q.lock);
            atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
            return;
        }
        q.waiting++;
        pthread_cond_wait(&q.room, &q.lock);
        q.waiting--;
        if (!q.accepting) {
            /* log_close ran meanwhile: the line goes where lines go after it. */
            pthread_mutex_unlock(&q.lock);
            write_stderr(l->p, l->len);
            return;
        }
    }
    was_empty = q.pushed == q.written;
    off = (size_t)(q.pushed % RING_CAP);
    first = l->len < RING_CAP - off ? l->len : RING_CAP - off;
    memcpy(q.ring + off, l->p, first);
    memcpy(q.ring, l->p + first, l->len - first);
    q.pushed += l->len;
    /* The writer sleeps only on an empty queue, so only the first line after it needs a wake. */
    if (was_empty)
        pthread_cond_signal(&q.wake);
    pthread_mutex_unlock(&q.lock);
}

/* ---- writer thread -------------------------------------------------------------------------- */

/* A diagnostic from the writer itself, written directly: it owns the fd and must not wait on the
 * queue it drains. */
static void writer_note(enum log_level level, const char *msg)
{
    char buf[LINE_CAP];
    struct line l = {.p = buf, .cap = sizeof(buf)};
    size_t lost;

    format_msg(&l, (enum log_format)atomic_load(&cur_format), level, msg);
    if (!l.overflow)
        (void)write_buf(q.fd, l.p, l.len, &lost);
}

/* Tells the reader of the log how many lines it is missing, once per batch that lost some. */
static void report_drops(void)
{
    uint64_t d = atomic_load(&dropped);
    char msg[96];

    if (d == q.reported)
        return;
    snprintf(msg, sizeof(msg), "log: %llu lines dropped (queue full or write error)",
             (unsigned long long)(d - q.reported));
    writer_note(LOG_WARN, msg);
    q.reported = d;
}

/* Whether nobody else can change the entries of the directory open at fd, which would let them
 * choose what airlock opens below it: it must be ours or root's, and not writable by group or
 * others unless sticky (as /tmp is, where nobody can rename or remove another's file). last: it
 * holds the file itself (else it is one on the way). 0, or -EPERM with why filled. */
static int check_dir(int fd, const char *name, bool last, char *why, size_t cap)
{
    const char *which = last ? "its directory" : "the directory on its path";
    const char *what = last ? "put any file at that name" : "swap what lies below it";
    struct stat st;

    if (fstat(fd, &st) < 0) {
        int err = -errno;
        snprintf(why, cap, "%.512s: %s", name, strerror(-err));
        return err;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(why, cap,
                 "%s %.512s belongs to uid %u, who could %s: log to a directory of airlock's "
                 "user or root",
                 which, name, (unsigned)st.st_uid, what);
        return -EPERM;
    }
    if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
        snprintf(why, cap,
                 "%s %.512s is writable by group or others without the sticky bit (mode %04o), "
                 "so they could %s: chmod go-w %.512s",
                 which, name, (unsigned)(st.st_mode & 07777), what, name);
        return -EPERM;
    }
    return 0;
}

/* The error for a directory component that could not be opened: a symbolic link is refused as
 * such (with where it leads, for the fix). */
static int dir_open_error(int parent, const char *name, const char *walked, char *why, size_t cap)
{
    int err = -errno;
    struct stat st;
    char *real;

    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        real = realpath(walked, NULL);
        snprintf(why, cap,
                 "%.512s on its path is a symbolic link, which could lead anywhere: give the "
                 "path without links%s%.512s%s",
                 walked, real ? " (" : "", real ? real : "", real ? ")" : "");
        free(real);
        return -ELOOP;
    }
    snprintf(why, cap, "%.512s: %s", walked, strerror(-err));
    return err;
}

/* The directory that holds path, opened one component at a time from / (or the working
 * directory) without following a symbolic link, each directory checked on the way: whoever can
 * change any of them (rename an entry, or put a link in its place) chooses where the file is
 * created, not only whoever can change the last one. Returns an O_PATH fd, with *base the
 * file's name in it, or -errno with why filled. */
static int open_log_dir(const char *path, const char **base, char *why, size_t cap)
{
    const char *slash = strrchr(path, '/'), *p = path;
    char walked[4096], name[256]; /* a file name is at most 255 bytes (NAME_MAX) */
    int fd, next, err;

    *base = slash ? slash + 1 : path;
    snprintf(walked, sizeof(walked), "%s", path[0] == '/' ? "/" : ".");
    fd = open(walked, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        snprintf(why, cap, "%.512s: %s", walked, strerror(-err));
        return err;
    }
    err = check_dir(fd, walked, slash == NULL || slash == path, why, cap);
    while (err == 0 && slash && p < slash) {
        size_t n = strcspn(p, "/");
        if (n == 0) {
            p++;
            continue;
        }
        if (n >= sizeof(name) || (size_t)(p + n - path) >= sizeof(walked)) {
            snprintf(why, cap, "%s", strerror(ENAMETOOLONG));
            err = -ENAMETOOLONG;
            break;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        snprintf(walked, sizeof(walked), "%.*s", (int)(p - path), path);
        next = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            err = dir_open_error(fd, name, walked, why, cap);
            break;
        }
        close(fd);
        fd = next;
        err = check_dir(fd, walked, p == slash, why, cap);
    }
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/* Open the log for appending so that nobody else chooses what airlock writes into: never
 * through a symlink (nor through one on the way to its directory, each directory checked), a
 * regular file or FIFO only if it is ours and (a file) has no second name, a character device
 * (/dev/null, a terminal) as it is, nothing else. O_NONBLOCK only while opening, so a FIFO with
 * no reader fails at once instead of hanging the start. Returns the fd, or -errno with why
 * filled. */
static int open_log_file(const char *path, char *why, size_t cap)
{
    struct stat st;
    const char *base;
    int fd, dir = open_log_dir(path, &base, why, cap), err = 0;

    if (dir < 0)
        return dir;
    fd = openat(dir, base, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                0640);
    if (fd < 0)
        err = -errno;
    close(dir);
    if (fd < 0) {
        snprintf(why, cap, "%s", err == -ELOOP ? "it is a symbolic link" : strerror(-err));
        return err;
    }
    if (fstat(fd, &st) < 0) {
        err = -errno;
        snprintf(why, cap, "%s", strerror(errno));
    } else if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        err = -EINVAL;
        snprintf(why, cap, "not a regular file, FIFO or character device");
    } else if (!S_ISCHR(st.st_mode) && st.st_uid != geteuid()) {
        err = -EPERM;
        snprintf(why, cap, "owned by uid %u, not by airlock's uid %u", (unsigned)st.st_uid,
                 (unsigned)geteuid());
    } else if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        err = -EMLINK;
        snprintf(why, cap, "it has %lu hard links: one of them may be another file of airlock's",
                 (unsigned long)st.st_nlink);
    } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        err = -errno;
        snprintf(why, cap, "%s", strerror(errno));
    }
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/* logrotate has renamed the file: open a fresh one at the same path. On failure keep writing to
 * the old one, which is better than losing lines. */
static void reopen_file(void)
{
    char why[2048], msg[MSG_MAX];
    int fd = open_log_file(q.path, why, sizeof(why));

    if (fd < 0) {
        snprintf(msg, sizeof(msg), "log: reopen %s: %s", q.path, why);
        writer_note(LOG_ERROR, msg);
        return;
    }
    close(q.fd);
    q.fd = fd;
}

/* Writes batches of whole lines, straight out of the ring (at most two iovecs when the batch
 * wraps), until log_close asks it to stop and the queue is empty. */
static void *writer_main(void *arg)
{
    uint64_t end;
    bool failing = false;

    pthread_mutex_lock(&q.lock);
    for (;;) {
        while (q.pushed == q.written && !q.stop && !q.reopen)
            pthread_cond_wait(&q.wake, &q.lock);
        /* Woken by a first line: let a few milliseconds of lines gather, so a busy proxy wakes
         * this thread (and writes) a few hundred times a second, not once per request. The
         * producers do not signal while the queue is non-empty, and a nearly full ring is
         * still written at once. */
        if (!q.stop && !q.reopen && q.pushed - q.written < RING_CAP / 4) {
            pthread_mutex_unlock(&q.lock);
            struct timespec gather = {0, 5 * 1000 * 1000};
            nanosleep(&gather, NULL);
            pthread_mutex_lock(&q.lock);
        }
        if (q.reopen && q.written == q.reopen_at) {
            q.reopen = false;
            pthread_mutex_unlock(&q.lock);
            reopen_file();
            pthread_mutex_lock(&q.lock);
            continue;
        }
        if (q.pushed == q.written)
            break; /* stop requested and nothing left */

        end = q.reopen ? q.reopen_at : q.pushed;
        size_t n = (size_t)(end - q.written), off = (size_t)(q.written % RING_CAP);
        size_t first = n < RING_CAP - off ? n : RING_CAP - off;
        struct iovec iov[2] = {{q.ring + off, first}, {q.ring, n - first}};
        size_t lost;
        int err;

        pthread_mutex_unlock(&q.lock);
        err = write_all(q.fd, iov, n > first ? 2 : 1, &lost);
        if (err) {
            atomic_fetch_add_explicit(&dropped, lost, memory_order_relaxed);
            /* Say so once per failing spell, where someone may see it. */
            if (!failing && q.fd != STDERR_FILENO) {
                char msg[128];
                int len = snprintf(msg, sizeof(msg), "log write failed: %s\n", strerror(-err));

                write_stderr(msg, (size_t)len < sizeof(msg) ? (size_t)len : sizeof(msg) - 1);
            }
            failing = true;
        } else {
            failing = false;
            report_drops();
        }
        pthread_mutex_lock(&q.lock);
        q.written = end;
        if (q.waiting)
            pthread_cond_broadcast(&q.room);
    }
    pthread_mutex_unlock(&q.lock);
    report_drops();
    return arg;
}

/* ---- API ------------------------------------------------------------------------------------ */

int log_open(const char *path, enum log_format format, enum log_level min_level)
{
    sigset_t all, old;
    int fd = STDERR_FILENO, err;

    if (q.ring)
        return -EBUSY;
    q.path = NULL;
    if (path) {
        char why[2048];

        q.path = strdup(path);
        if (!q.path)
            return -ENOMEM;
        fd = open_log_file(path, why, sizeof(why));
        if (fd < 0) {
            /* Before log_open succeeds this goes to stderr. */
            log_msg(LOG_ERROR, "log file %s: %s", path, why);
            err = fd;
            goto fail;
        }
    }
    q.fd = fd;
    q.ring = malloc(RING_CAP);
    if (!q.ring) {
        err = -ENOMEM;
        goto fail;
    }
    q.pushed = q.written = 0;
    q.stop = q.reopen = false;
    q.reported = atomic_load(&dropped);
    /* Load the time zone here, once, rather than on a worker's first line. */
    tzset();

    /* The writer takes no signals: process signals belong to the event loops, and a SIGPIPE from
     * a log pipe whose reader went away stays pending there while write returns EPIPE. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = -pthread_create(&q.thread, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err)
        goto fail;

    atomic_store(&cur_format, format);
    atomic_store(&cur_min_level, min_level);
    pthread_mutex_lock(&q.lock);
    q.accepting = true;
    pthread_mutex_unlock(&q.lock);
    return 0;

fail:
    if (fd != STDERR_FILENO && fd >= 0)
        close(fd);
    q.fd = -1;
    free(q.ring);
    q.ring = NULL;
    free(q.path);
    q.path = NULL;
    return err;
}

void log_reopen(void)
{
    pthread_mutex_lock(&q.lock);
    /* A second request before the writer got to the first merges with it: the open happens
     * after both, so it still finds the newest file. */
    if (q.accepting && q.path && !q.reopen) {
        q.reopen = true;
        q.reopen_at = q.pushed;
        pthread_cond_signal(&q.wake);
    }
    pthread_mutex_unlock(&q.lock);
}

void log_close(void)
{
    pthread_mutex_lock(&q.lock);
    if (!q.accepting) {
        pthread_mutex_unlock(&q.lock);
        return;
    }
    /* From here lines go to stderr; the writer drains what is queued, then exits. */
    q.accepting = false;
    q.stop = true;
    pthread_cond_signal(&q.wake);
    pthread_cond_broadcast(&q.room);
    pthread_mutex_unlock(&q.lock);

    pthread_join(q.thread, NULL);
    if (q.fd != STDERR_FILENO)
        close(q.fd);
    q.fd = -1;
    free(q.ring);
    q.ring = NULL;
    free(q.path);
    q.path = NULL;
}

uint64_t log_dropped(void)
{
    return atomic_load(&dropped);
}

void log_event(const struct log_event *ev)
{
    char buf[LINE_CAP];
    struct line l = {.p = buf, .cap = sizeof(buf)};
    uint64_t ms;

    /* Events are INFO lines, but a finding is written whatever the level. */
    if (ev->class_uid != LOG_CLASS_FINDING && atomic_load(&cur_min_level) > LOG_INFO)
        return;
    ms = now_ms();
    if (atomic_load(&cur_format) == LOG_JSON)
        format_json_event(&l, ev, ms);
    else
        format_text_event(&l, ev, ms);
    put_ch(&l, '\n');
    /* Findings are the lines an operator cannot afford to lose (log.h). */
    emit(&l, ev->class_uid == LOG_CLASS_FINDING || ev->severity >= LOG_SEV_HIGH);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char buf[LINE_CAP], msg[MSG_MAX];
    struct line l = {.p = buf, .cap = sizeof(buf)};
    va_list ap;

    level = clamp_level(level);
    if ((int)level < atomic_load(&cur_min_level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    format_msg(&l, (enum log_format)atomic_load(&cur_format), level, msg);
    emit(&l, false);
}
