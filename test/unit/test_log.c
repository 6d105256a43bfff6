/* SPDX-License-Identifier: MIT */
/* Unit tests for log and logfmt: the formatter on strings (exact lines, each enum's table),
 * both line formats read back from a real file, hostile bytes that must not
 * split or break a line, level filtering, reopen after a rename, many writer threads, a full
 * queue (a FIFO nobody reads), and the stderr fallback before log_open and after log_close. */
#include "airlock/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test.h"

static char dir[] = "/tmp/airlock-test-log-XXXXXX";

/* A file read back whole and split at '\n'. */
struct lines {
    char *buf;
    char **v;
    size_t n;
    bool ends_nl; /* the file was empty or ended with a newline: no half line */
};

static void lines_free(struct lines *ls)
{
    free(ls->buf);
    free(ls->v);
    memset(ls, 0, sizeof(*ls));
}

static void split_lines(struct lines *ls, char *buf, size_t len)
{
    size_t cap = 1;

    ls->buf = buf;
    for (size_t i = 0; i < len; i++)
        cap += buf[i] == '\n';
    ls->v = calloc(cap, sizeof(char *));
    ls->n = 0;
    ls->ends_nl = len == 0 || buf[len - 1] == '\n';
    for (char *p = buf, *end = buf + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));

        if (!nl)
            nl = end;
        *nl = '\0';
        ls->v[ls->n++] = p;
        p = nl + 1;
    }
}

static void read_fd_all(int fd, char **out, size_t *outlen)
{
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    ssize_t r;

    for (;;) {
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
}

static void read_lines(const char *path, struct lines *ls)
{
    int fd = open(path, O_RDONLY);
    char *buf;
    size_t len;

    memset(ls, 0, sizeof(*ls));
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    read_fd_all(fd, &buf, &len);
    close(fd);
    split_lines(ls, buf, len);
}

static const char *tmp_path(const char *name)
{
    static char buf[4][256];
    static int i;

    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
    return buf[i];
}

/* Valid UTF-8 and no control byte: what every line of either format must be. */
static bool clean_line(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p < 0x80) {
            p++;
            continue;
        }
        size_t n = (*p >= 0xc2 && *p <= 0xdf)   ? 2
                   : (*p >= 0xe0 && *p <= 0xef) ? 3
                   : (*p >= 0xf0 && *p <= 0xf4) ? 4
                                                : 0;
        if (n == 0)
            return false;
        for (size_t i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return false;
        p += n;
    }
    return true;
}

static bool is_hms(const char *s)
{
    return strlen(s) > 9 && s[2] == ':' && s[5] == ':' && s[8] == ' ' && s[0] >= '0' &&
           s[0] <= '2' && s[3] >= '0' && s[3] <= '5' && s[6] >= '0' && s[6] <= '6';
}

static cJSON *parse(const char *line)
{
    return cJSON_ParseWithOpts(line, NULL, 1);
}

/* The value at a dotted path ("dst_endpoint.port"), or NULL. */
static const cJSON *jget(const cJSON *root, const char *path)
{
    char key[64];
    const char *p = path;

    while (root && *p) {
        size_t n = strcspn(p, ".");

        snprintf(key, sizeof(key), "%.*s", (int)n, p);
        root = cJSON_GetObjectItemCaseSensitive(root, key);
        p += n;
        if (*p == '.')
            p++;
    }
    return root;
}

static const char *jstr(const cJSON *root, const char *path)
{
    const cJSON *v = jget(root, path);

    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long long jnum(const cJSON *root, const char *path)
{
    const cJSON *v = jget(root, path);

    return cJSON_IsNumber(v) ? (long long)v->valuedouble : -999999;
}

/* ---- events used by several tests ----------------------------------------------------------- */

static const struct log_event ev_connect = {
    .class_uid = LOG_CLASS_NETWORK,
    .activity = LOG_ACTIVITY_CONNECT,
    .action = LOG_ACTION_ALLOW,
    .src_ip = "127.0.0.1",
    .src_port = 50000,
    .dst_host = "api.github.com",
    .dst_port = 443,
    .policy = "github",
    .overflow = -1,
    .conn_id = 7,
};

static const struct log_event ev_deny = {
    .class_uid = LOG_CLASS_HTTP,
    .activity = LOG_ACTIVITY_REQUEST,
    .action = LOG_ACTION_DENY,
    .dst_host = "api.github.com",
    .dst_port = 443,
    .method = "GET",
    .path = "/admin",
    .status = 403,
    .policy = "github",
    .l7_decision = LOG_DECISION_DENY,
    .relay_outcome = LOG_OUTCOME_CONSUMED,
    .reason = "no rule allows method and path",
    .overflow = -1,
};

static const struct log_event ev_upgrade = {
    .class_uid = LOG_CLASS_NETWORK,
    .activity = LOG_ACTIVITY_UPGRADE,
    .dst_host = "wss-primary.slack.com",
    .dst_port = 443,
    .relay_outcome = LOG_OUTCOME_UPGRADED,
    .overflow = 37,
};

static const struct log_event ev_finding = {
    .class_uid = LOG_CLASS_FINDING,
    .activity = LOG_ACTIVITY_FINDING,
    .action = LOG_ACTION_DENY,
    .severity = LOG_SEV_HIGH,
    .src_ip = "::1",
    .src_port = 41000,
    .dst_host = "10.0.0.5",
    .dst_port = 8443,
    .method = "GET",
    .path = "/chat",
    .status = 502,
    .process = "/usr/bin/curl",
    .reason = "101 without an upgrade request",
    .bytes_in = 120,
    .bytes_out = 80,
    .overflow = -1,
    .conn_id = 99,
};

/* Hostile bytes a client controls: a newline that would forge a second line, quotes, a
 * backslash, a control byte, an invalid UTF-8 byte, an overlong '/', a surrogate, a C1 CSI and a
 * valid 'é'. */
static const char hostile_path[] = "/a\n12:00:00 ALLOW \"x\" \\ \x01\xff/\xc0\xaf/\xed\xa0\x80/"
                                   "\xc2\x9b/\xc3\xa9";

/* ---- tests ---------------------------------------------------------------------------------- */

/* Capture stderr into a file while fn runs. */
static void with_stderr_to(const char *path, void (*fn)(void))
{
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    CHECK(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
}

static void log_before_open(void)
{
    log_msg(LOG_INFO, "early %d", 42);
    log_msg(LOG_DEBUG, "too quiet");
    log_event(&ev_connect);
}

static void test_stderr_before_open(void)
{
    struct lines ls;

    with_stderr_to(tmp_path("early.log"), log_before_open);
    read_lines(tmp_path("early.log"), &ls);
    unlink(tmp_path("early.log"));
    CHECK_EQ(ls.n, 2);
    CHECK(ls.ends_nl);
    if (ls.n == 2) {
        CHECK(is_hms(ls.v[0]));
        CHECK_STR(ls.v[0] + 9, "INFO early 42");
        CHECK(strncmp(ls.v[1] + 9, "ALLOW CONNECT api.github.com:443", 32) == 0);
    }
    lines_free(&ls);
}

static void test_open_errors(void)
{
    CHECK_EQ(log_open("/nonexistent-dir/x/airlock.log", LOG_TEXT, LOG_INFO), -ENOENT);
    CHECK_EQ(log_open(tmp_path("busy.log"), LOG_TEXT, LOG_INFO), 0);
    CHECK_EQ(log_open(tmp_path("busy.log"), LOG_TEXT, LOG_INFO), -EBUSY);
    log_close();
    log_close(); /* idempotent */
    unlink(tmp_path("busy.log"));
}

static void test_text_format(void)
{
    const char *path = tmp_path("text.log");
    struct lines ls;
    struct stat st;

    CHECK_EQ(log_open(path, LOG_TEXT, LOG_DEBUG), 0);
    log_msg(LOG_INFO, "listening on %s:%d", "127.0.0.1", 3128);
    log_event(&ev_connect);
    log_event(&ev_deny);
    log_event(&ev_upgrade);
    log_event(&ev_finding);
    log_msg(LOG_DEBUG, "state %s", "tls");
    log_close();

    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777 & ~0640) == 0);
    read_lines(path, &ls);
    CHECK_EQ(ls.n, 6);
    CHECK(ls.ends_nl);
    for (size_t i = 0; i < ls.n; i++)
        CHECK(is_hms(ls.v[i]) && clean_line(ls.v[i]));
    if (ls.n == 6) {
        CHECK_STR(ls.v[0] + 9, "INFO listening on 127.0.0.1:3128");
        CHECK_STR(ls.v[1] + 9,
                  "ALLOW CONNECT api.github.com:443 policy=github src=127.0.0.1:50000 conn=7");
        CHECK_STR(ls.v[2] + 9, "DENY GET api.github.com/admin policy=github status=403 "
                               "decision=deny outcome=consumed "
                               "reason=\"no rule allows method and path\"");
        CHECK_STR(ls.v[3] + 9, "UPGRADE wss-primary.slack.com:443 outcome=upgraded overflow=37");
        CHECK_STR(ls.v[4] + 9, "DENY GET 10.0.0.5:8443/chat status=502 in=120 out=80 "
                               "src=[::1]:41000 process=/usr/bin/curl conn=99 severity=high "
                               "reason=\"101 without an upgrade request\"");
        CHECK_STR(ls.v[5] + 9, "DEBUG state tls");
    }
    lines_free(&ls);
    unlink(path);
}

static void test_json_format(void)
{
    const char *path = tmp_path("json.log");
    struct lines ls;
    cJSON *j;

    CHECK_EQ(log_open(path, LOG_JSON, LOG_INFO), 0);
    log_msg(LOG_WARN, "policy %s reloaded", "default.json");
    log_event(&ev_connect);
    log_event(&ev_deny);
    log_event(&ev_upgrade);
    log_event(&ev_finding);
    log_close();

    read_lines(path, &ls);
    CHECK_EQ(ls.n, 5);
    CHECK(ls.ends_nl);
    for (size_t i = 0; i < ls.n; i++)
        CHECK(clean_line(ls.v[i]));
    if (ls.n != 5) {
        lines_free(&ls);
        return;
    }

    j = parse(ls.v[0]);
    CHECK(j != NULL);
    CHECK(jnum(j, "time") > 1600000000000LL);
    CHECK_STR(jstr(j, "level"), "warn");
    CHECK_STR(jstr(j, "message"), "policy default.json reloaded");
    cJSON_Delete(j);

    j = parse(ls.v[1]);
    CHECK(j != NULL);
    CHECK_EQ(jnum(j, "class_uid"), 4001);
    CHECK_EQ(jnum(j, "category_uid"), 4);
    CHECK_STR(jstr(j, "activity_name"), "CONNECT");
    CHECK_EQ(jnum(j, "activity_id"), 1);
    CHECK_EQ(jnum(j, "type_uid"), 400101);
    CHECK(jnum(j, "time") > 1600000000000LL);
    CHECK_STR(jstr(j, "action"), "allow");
    CHECK_STR(jstr(j, "disposition"), "Allowed");
    CHECK_STR(jstr(j, "severity"), "Informational");
    CHECK_EQ(jnum(j, "severity_id"), 1);
    CHECK_STR(jstr(j, "src_endpoint.ip"), "127.0.0.1");
    CHECK_EQ(jnum(j, "src_endpoint.port"), 50000);
    CHECK_STR(jstr(j, "dst_endpoint.hostname"), "api.github.com");
    CHECK_EQ(jnum(j, "dst_endpoint.port"), 443);
    CHECK(jget(j, "dst_endpoint.ip") == NULL);
    CHECK_STR(jstr(j, "firewall_rule.name"), "github");
    CHECK_STR(jstr(j, "firewall_rule.type"), "network_policy");
    CHECK_STR(jstr(j, "metadata.product.name"), "airlock");
    CHECK_STR(jstr(j, "metadata.version"), "1.1.0");
    CHECK_EQ(jnum(j, "unmapped.conn_id"), 7);
    CHECK(jget(j, "unmapped.overflow") == NULL);
    CHECK(jget(j, "http_request") == NULL);
    CHECK(jget(j, "actor") == NULL);
    cJSON_Delete(j);

    j = parse(ls.v[2]);
    CHECK(j != NULL);
    CHECK_EQ(jnum(j, "class_uid"), 4002);
    CHECK_EQ(jnum(j, "activity_id"), 3);
    CHECK_STR(jstr(j, "action"), "deny");
    CHECK_STR(jstr(j, "disposition"), "Blocked");
    CHECK_STR(jstr(j, "status_detail"), "no rule allows method and path");
    CHECK_STR(jstr(j, "http_request.http_method"), "GET");
    CHECK_STR(jstr(j, "http_request.url.path"), "/admin");
    CHECK_EQ(jnum(j, "http_response.code"), 403);
    CHECK_STR(jstr(j, "unmapped.l7_decision"), "deny");
    CHECK_STR(jstr(j, "unmapped.relay_outcome"), "consumed");
    CHECK(jget(j, "src_endpoint") == NULL);
    cJSON_Delete(j);

    j = parse(ls.v[3]);
    CHECK(j != NULL);
    CHECK_STR(jstr(j, "activity_name"), "UPGRADE");
    CHECK(jget(j, "action") == NULL && jget(j, "disposition") == NULL);
    CHECK_EQ(jnum(j, "unmapped.overflow"), 37);
    CHECK_STR(jstr(j, "unmapped.relay_outcome"), "upgraded");
    cJSON_Delete(j);

    j = parse(ls.v[4]);
    CHECK(j != NULL);
    CHECK_EQ(jnum(j, "class_uid"), 2004);
    CHECK_EQ(jnum(j, "category_uid"), 2);
    CHECK_EQ(jnum(j, "type_uid"), 200401);
    CHECK_STR(jstr(j, "severity"), "High");
    CHECK_EQ(jnum(j, "severity_id"), 4);
    CHECK_STR(jstr(j, "src_endpoint.ip"), "::1");
    CHECK_STR(jstr(j, "dst_endpoint.hostname"), "10.0.0.5");
    CHECK_STR(jstr(j, "dst_endpoint.ip"), "10.0.0.5");
    CHECK_EQ(jnum(j, "dst_endpoint.port"), 8443);
    CHECK_STR(jstr(j, "actor.process.file.path"), "/usr/bin/curl");
    CHECK_EQ(jnum(j, "unmapped.bytes_in"), 120);
    CHECK_EQ(jnum(j, "unmapped.bytes_out"), 80);
    CHECK_EQ(jnum(j, "unmapped.conn_id"), 99);
    CHECK(jget(j, "firewall_rule") == NULL);
    cJSON_Delete(j);

    lines_free(&ls);
    unlink(path);
}

/* An upgrade with no early bytes says overflow=0; other events with overflow 0 say nothing. */
static void test_overflow_zero(void)
{
    const char *path = tmp_path("ovf.log");
    struct log_event up = ev_upgrade, plain = ev_deny;
    struct lines ls;

    up.overflow = 0;
    plain.overflow = 0;
    CHECK_EQ(log_open(path, LOG_TEXT, LOG_INFO), 0);
    log_event(&up);
    log_event(&plain);
    log_close();
    read_lines(path, &ls);
    CHECK_EQ(ls.n, 2);
    if (ls.n == 2) {
        CHECK(strstr(ls.v[0], " overflow=0") != NULL);
        CHECK(strstr(ls.v[1], "overflow") == NULL);
    }
    lines_free(&ls);
    unlink(path);
}

static void test_hostile_bytes(void)
{
    const char *tpath = tmp_path("hostile.txt"), *jpath = tmp_path("hostile.json");
    struct log_event ev = ev_deny;
    struct lines ls;
    cJSON *j;

    ev.path = hostile_path;
    ev.reason = "bad\r\nreason \"quoted\"";
    ev.policy = "a b";

    CHECK_EQ(log_open(tpath, LOG_TEXT, LOG_INFO), 0);
    log_event(&ev);
    log_msg(LOG_ERROR, "msg with\nnewline and \x1b[31m escape");
    log_close();
    read_lines(tpath, &ls);
    CHECK_EQ(ls.n, 2);
    CHECK(ls.ends_nl);
    for (size_t i = 0; i < ls.n; i++)
        CHECK(clean_line(ls.v[i]));
    if (ls.n == 2) {
        CHECK_STR(ls.v[0] + 9,
                  "DENY GET \"api.github.com/a\\n12:00:00 ALLOW \\\"x\\\" \\\\ "
                  "\\x01\\xff/\\xc0\\xaf/\\xed\\xa0\\x80/\\xc2\\x9b/\\xc3\\xa9\" policy=\"a b\" "
                  "status=403 decision=deny outcome=consumed "
                  "reason=\"bad\\r\\nreason \\\"quoted\\\"\"");
        CHECK_STR(ls.v[1] + 9, "ERROR msg with\\nnewline and \\x1b[31m escape");
    }
    lines_free(&ls);

    CHECK_EQ(log_open(jpath, LOG_JSON, LOG_INFO), 0);
    log_event(&ev);
    log_msg(LOG_ERROR, "msg with\nnewline and \x1b[31m escape \xfe");
    log_close();
    read_lines(jpath, &ls);
    CHECK_EQ(ls.n, 2);
    CHECK(ls.ends_nl);
    for (size_t i = 0; i < ls.n; i++)
        CHECK(clean_line(ls.v[i]));
    if (ls.n == 2) {
        j = parse(ls.v[0]);
        CHECK(j != NULL);
        /* Invalid bytes become U+FFFD, controls round-trip through \u escapes, valid UTF-8
         * stays. */
        CHECK_STR(jstr(j, "http_request.url.path"),
                  "/a\n12:00:00 ALLOW \"x\" \\ \x01\xef\xbf\xbd/\xef\xbf\xbd\xef\xbf\xbd/"
                  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd/\xc2\x9b/\xc3\xa9");
        CHECK_STR(jstr(j, "status_detail"), "bad\r\nreason \"quoted\"");
        CHECK_STR(jstr(j, "firewall_rule.name"), "a b");
        /* The C1 CSI is escaped in the line itself, not only valid JSON. */
        CHECK(strstr(ls.v[0], "\\u009b") != NULL);
        cJSON_Delete(j);
        j = parse(ls.v[1]);
        CHECK(j != NULL);
        CHECK_STR(jstr(j, "level"), "error");
        CHECK_STR(jstr(j, "message"), "msg with\nnewline and \x1b[31m escape \xef\xbf\xbd");
        cJSON_Delete(j);
    }
    lines_free(&ls);
    unlink(tpath);
    unlink(jpath);
}

/* A huge field is cut with "..." and the line stays whole and valid. */
static void test_long_fields(void)
{
    const char *path = tmp_path("long.json");
    static char longpath[20001];
    struct log_event ev = ev_deny;
    struct lines ls;

    memset(longpath, '\x01', sizeof(longpath) - 1);
    longpath[0] = '/';
    ev.path = longpath;
    ev.reason = longpath;
    ev.process = longpath;
    ev.policy = longpath;
    ev.dst_host = longpath;
    CHECK_EQ(log_open(path, LOG_JSON, LOG_INFO), 0);
    log_event(&ev);
    log_close();
    read_lines(path, &ls);
    CHECK_EQ(ls.n, 1);
    if (ls.n == 1) {
        cJSON *j = parse(ls.v[0]);
        const char *p;

        CHECK(j != NULL);
        CHECK(strlen(ls.v[0]) < 16384);
        p = jstr(j, "http_request.url.path");
        CHECK(p && strlen(p) > 100 && strcmp(p + strlen(p) - 3, "...") == 0);
        cJSON_Delete(j);
    }
    lines_free(&ls);
    unlink(path);
}

static void test_min_level(void)
{
    const char *path = tmp_path("level.log");
    struct lines ls;

    CHECK_EQ(log_open(path, LOG_TEXT, LOG_WARN), 0);
    log_msg(LOG_DEBUG, "d");
    log_msg(LOG_INFO, "i");
    log_msg(LOG_WARN, "w");
    log_msg(LOG_ERROR, "e");
    log_event(&ev_connect); /* INFO: dropped */
    log_event(&ev_finding); /* always written */
    log_close();
    read_lines(path, &ls);
    CHECK_EQ(ls.n, 3);
    if (ls.n == 3) {
        CHECK_STR(ls.v[0] + 9, "WARN w");
        CHECK_STR(ls.v[1] + 9, "ERROR e");
        CHECK(strncmp(ls.v[2] + 9, "DENY GET 10.0.0.5:8443/chat", 27) == 0);
    }
    lines_free(&ls);
    unlink(path);

    CHECK_EQ(log_open(path, LOG_TEXT, LOG_ERROR), 0);
    log_msg(LOG_WARN, "w");
    log_event(&ev_deny);
    log_msg(LOG_ERROR, "e");
    log_close();
    read_lines(path, &ls);
    CHECK_EQ(ls.n, 1);
    if (ls.n == 1)
        CHECK_STR(ls.v[0] + 9, "ERROR e");
    lines_free(&ls);
    unlink(path);
}

/* logrotate: rename, then SIGUSR1 -> log_reopen. Lines logged before the call stay in the
 * renamed file, later ones go to a fresh file at the old path. */
static void test_reopen(void)
{
    const char *path = tmp_path("rot.log"), *old = tmp_path("rot.log.1");
    struct lines a, b;

    CHECK_EQ(log_open(path, LOG_TEXT, LOG_INFO), 0);
    for (int i = 0; i < 100; i++)
        log_msg(LOG_INFO, "before %d", i);
    CHECK(rename(path, old) == 0);
    log_reopen();
    log_reopen(); /* a second signal before the writer got to the first */
    for (int i = 0; i < 50; i++)
        log_msg(LOG_INFO, "after %d", i);
    log_close();

    read_lines(old, &a);
    read_lines(path, &b);
    CHECK_EQ(a.n, 100);
    CHECK_EQ(b.n, 50);
    if (a.n == 100 && b.n == 50) {
        CHECK_STR(a.v[0] + 9, "INFO before 0");
        CHECK_STR(a.v[99] + 9, "INFO before 99");
        CHECK_STR(b.v[0] + 9, "INFO after 0");
        CHECK_STR(b.v[49] + 9, "INFO after 49");
    }
    lines_free(&a);
    lines_free(&b);
    unlink(path);
    unlink(old);

    /* On stderr, reopen is a no-op. */
    CHECK_EQ(log_open(NULL, LOG_TEXT, LOG_ERROR), 0);
    log_reopen();
    log_close();
    CHECK(fcntl(STDERR_FILENO, F_GETFD) != -1); /* log_close leaves stderr open */
}

static off_t file_size(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 ? st.st_size : -1;
}

/* Each refused open leaves the file it would have written to alone. */
static void open_refusals(void)
{
    const char *target = tmp_path("target"), *sym = tmp_path("link.log");
    char open_dir[300], open_log[320], sticky_dir[300], sticky_log[320];

    /* A symlink at the path, dangling or not: refused, the target neither written nor made. */
    close(open(target, O_WRONLY | O_CREAT, 0600));
    CHECK_EQ(symlink(target, sym), 0);
    CHECK_EQ(log_open(sym, LOG_TEXT, LOG_INFO), -ELOOP);
    CHECK_EQ(file_size(target), 0);
    CHECK_EQ(unlink(target), 0);
    CHECK_EQ(log_open(sym, LOG_TEXT, LOG_INFO), -ELOOP);
    CHECK_EQ(file_size(target), -1);
    unlink(sym);

    /* A second name for a file of ours (a hard link to, say, the policy): refused. */
    close(open(target, O_WRONLY | O_CREAT, 0600));
    CHECK_EQ(link(target, tmp_path("hard.log")), 0);
    CHECK_EQ(log_open(tmp_path("hard.log"), LOG_TEXT, LOG_INFO), -EMLINK);
    CHECK_EQ(file_size(target), 0);
    unlink(tmp_path("hard.log"));

    /* A directory others may write, without the sticky bit: refused before anything is made. */
    snprintf(open_dir, sizeof(open_dir), "%s/open", dir);
    snprintf(open_log, sizeof(open_log), "%s/airlock.log", open_dir);
    CHECK_EQ(mkdir(open_dir, 0700), 0);
    CHECK_EQ(chmod(open_dir, 0777), 0);
    CHECK_EQ(log_open(open_log, LOG_TEXT, LOG_INFO), -EPERM);
    CHECK_EQ(file_size(open_log), -1);
    CHECK_EQ(chmod(open_dir, 0775), 0);
    CHECK_EQ(log_open(open_log, LOG_TEXT, LOG_INFO), -EPERM);

    /* A FIFO nobody reads fails at once instead of hanging the start. */
    CHECK_EQ(mkfifo(tmp_path("noreader"), 0600), 0);
    CHECK_EQ(log_open(tmp_path("noreader"), LOG_TEXT, LOG_INFO), -ENXIO);
    unlink(tmp_path("noreader"));

    /* Only root can make another user's file or directory here. */
    if (geteuid() == 0) {
        const char *theirs = tmp_path("theirs.log");
        close(open(theirs, O_WRONLY | O_CREAT, 0600));
        CHECK_EQ(chown(theirs, 65534, 65534), 0);
        CHECK_EQ(log_open(theirs, LOG_TEXT, LOG_INFO), -EPERM);
        CHECK_EQ(file_size(theirs), 0);
        unlink(theirs);
        CHECK_EQ(chmod(open_dir, 0755), 0);
        CHECK_EQ(chown(open_dir, 65534, 65534), 0);
        CHECK_EQ(log_open(open_log, LOG_TEXT, LOG_INFO), -EPERM);
        CHECK_EQ(chown(open_dir, 0, 0), 0);
    }
    rmdir(open_dir);

    /* Allowed: a sticky directory others may write (as /tmp), and /dev/null. */
    snprintf(sticky_dir, sizeof(sticky_dir), "%s/sticky", dir);
    snprintf(sticky_log, sizeof(sticky_log), "%s/airlock.log", sticky_dir);
    CHECK_EQ(mkdir(sticky_dir, 0700), 0);
    CHECK_EQ(chmod(sticky_dir, 01777), 0);
    CHECK_EQ(log_open(sticky_log, LOG_TEXT, LOG_INFO), 0);
    log_msg(LOG_INFO, "in a sticky directory");
    log_close();
    CHECK(file_size(sticky_log) > 0);
    unlink(sticky_log);
    rmdir(sticky_dir);
    CHECK_EQ(log_open("/dev/null", LOG_TEXT, LOG_INFO), 0);
    log_msg(LOG_INFO, "into /dev/null");
    log_close();
    unlink(target);
}

/* The log file is opened so that nobody else chooses what airlock appends to, and each refusal
 * says why on stderr. */
static void test_open_refuses_a_file_others_could_choose(void)
{
    char err[300]; /* tmp_path's buffers are reused by open_refusals */
    struct lines ls;
    bool symlink_said = false, dir_said = false;

    snprintf(err, sizeof(err), "%s", tmp_path("refusals.txt"));

    with_stderr_to(err, open_refusals);
    read_lines(err, &ls);
    for (size_t i = 0; i < ls.n; i++) {
        symlink_said |= strstr(ls.v[i], "link.log: it is a symbolic link") != NULL;
        dir_said |= strstr(ls.v[i], "without the sticky bit") != NULL &&
                    strstr(ls.v[i], "chmod go-w") != NULL;
    }
    CHECK(symlink_said);
    CHECK(dir_said);
    lines_free(&ls);
    unlink(err);
}

/* logrotate renamed the file and someone planted a symlink at its name before SIGUSR1: the
 * reopen refuses it and lines keep going to the old file, which says why. */
static void test_reopen_refuses_a_planted_symlink(void)
{
    const char *path = tmp_path("planted.log"), *old = tmp_path("planted.log.1");
    const char *target = tmp_path("planted-target");
    struct lines a;
    bool said = false;

    close(open(target, O_WRONLY | O_CREAT, 0600));
    CHECK_EQ(log_open(path, LOG_TEXT, LOG_INFO), 0);
    log_msg(LOG_INFO, "before");
    CHECK(rename(path, old) == 0);
    CHECK_EQ(symlink(target, path), 0);
    log_reopen();
    log_msg(LOG_INFO, "after");
    log_close();
    CHECK_EQ(file_size(target), 0);
    read_lines(old, &a);
    for (size_t i = 0; i < a.n; i++)
        said |= strstr(a.v[i], "reopen") && strstr(a.v[i], "symbolic link");
    CHECK(said);
    CHECK(a.n >= 3);
    lines_free(&a);
    unlink(path);
    unlink(old);
    unlink(target);
}

/* Directories on the way to the file, not only its own, must be safe: a symbolic link anywhere
 * (whoever may replace it chooses where the file lands), one that others may write, or (root
 * only) one of another user. Each is refused and nothing is made behind it. */
static void path_refusals(void)
{
    char real[300], linked[300], via_link[340], via_link_deeper[340], in_real[340],
        in_real_deeper[340], open_anc[300], open_sub[320], open_log[340];

    snprintf(real, sizeof(real), "%s/real", dir);
    snprintf(linked, sizeof(linked), "%s/linked", dir);
    snprintf(via_link, sizeof(via_link), "%s/airlock.log", linked);
    snprintf(via_link_deeper, sizeof(via_link_deeper), "%s/sub/airlock.log", linked);
    snprintf(in_real, sizeof(in_real), "%s/airlock.log", real);
    snprintf(in_real_deeper, sizeof(in_real_deeper), "%s/sub/airlock.log", real);
    snprintf(open_sub, sizeof(open_sub), "%s/sub", real);
    CHECK_EQ(mkdir(real, 0700), 0);
    CHECK_EQ(mkdir(open_sub, 0700), 0);
    CHECK_EQ(symlink(real, linked), 0);
    CHECK_EQ(log_open(via_link, LOG_TEXT, LOG_INFO), -ELOOP);
    CHECK_EQ(file_size(in_real), -1);
    CHECK_EQ(log_open(via_link_deeper, LOG_TEXT, LOG_INFO), -ELOOP);
    CHECK_EQ(file_size(in_real_deeper), -1);
    unlink(linked);
    rmdir(open_sub);
    rmdir(real);

    snprintf(open_anc, sizeof(open_anc), "%s/open-ancestor", dir);
    snprintf(open_sub, sizeof(open_sub), "%s/sub", open_anc);
    snprintf(open_log, sizeof(open_log), "%s/airlock.log", open_sub);
    CHECK_EQ(mkdir(open_anc, 0700), 0);
    CHECK_EQ(mkdir(open_sub, 0700), 0);
    CHECK_EQ(chmod(open_anc, 0777), 0);
    CHECK_EQ(log_open(open_log, LOG_TEXT, LOG_INFO), -EPERM);
    CHECK_EQ(file_size(open_log), -1);
    if (geteuid() == 0) {
        CHECK_EQ(chmod(open_anc, 0755), 0);
        CHECK_EQ(chown(open_anc, 65534, 65534), 0);
        CHECK_EQ(log_open(open_log, LOG_TEXT, LOG_INFO), -EPERM);
        CHECK_EQ(file_size(open_log), -1);
        CHECK_EQ(chown(open_anc, 0, 0), 0);
    }
    /* The same place is fine once every directory on the way is. */
    CHECK_EQ(chmod(open_anc, 0755), 0);
    CHECK_EQ(log_open(open_log, LOG_TEXT, LOG_INFO), 0);
    log_close();
    unlink(open_log);
    rmdir(open_sub);
    rmdir(open_anc);
}

static void test_open_refuses_an_unsafe_directory_on_the_way(void)
{
    char err[300];
    struct lines ls;
    bool link_said = false, ancestor_said = false;

    snprintf(err, sizeof(err), "%s", tmp_path("path-refusals.txt"));
    with_stderr_to(err, path_refusals);
    read_lines(err, &ls);
    for (size_t i = 0; i < ls.n; i++) {
        link_said |= strstr(ls.v[i], "/linked on its path is a symbolic link") != NULL &&
                     strstr(ls.v[i], "/real)") != NULL;
        ancestor_said |= strstr(ls.v[i], "the directory on its path") != NULL &&
                         strstr(ls.v[i], "/open-ancestor") != NULL;
    }
    CHECK(link_said);
    CHECK(ancestor_said);
    lines_free(&ls);
    unlink(err);
}

/* The attack the walk stops: someone who may rename entries of an ancestor swaps the log's
 * directory for a symbolic link to a directory of their choosing before SIGUSR1. The reopen
 * refuses it, the chosen directory gets nothing, and the old file says why. */
static void test_reopen_refuses_a_directory_swapped_for_a_symlink(void)
{
    char logs[300], moved[300], path[340], old[340], target[300], planted[340];
    struct lines a;
    bool said = false;

    snprintf(logs, sizeof(logs), "%s/logs", dir);
    snprintf(moved, sizeof(moved), "%s/logs.old", dir);
    snprintf(path, sizeof(path), "%s/airlock.log", logs);
    snprintf(old, sizeof(old), "%s/airlock.log", moved);
    snprintf(target, sizeof(target), "%s/chosen", dir);
    snprintf(planted, sizeof(planted), "%s/airlock.log", target);
    CHECK_EQ(mkdir(logs, 0700), 0);
    CHECK_EQ(mkdir(target, 0700), 0);
    CHECK_EQ(log_open(path, LOG_TEXT, LOG_INFO), 0);
    log_msg(LOG_INFO, "before");
    CHECK_EQ(rename(logs, moved), 0);
    CHECK_EQ(symlink(target, logs), 0);
    log_reopen();
    log_msg(LOG_INFO, "after");
    log_close();
    CHECK_EQ(file_size(planted), -1);
    read_lines(old, &a);
    for (size_t i = 0; i < a.n; i++)
        said |= strstr(a.v[i], "reopen") && strstr(a.v[i], "symbolic link");
    CHECK(said);
    lines_free(&a);
    unlink(planted);
    unlink(old);
    unlink(logs);
    rmdir(moved);
    rmdir(target);
}

#define THREADS    4
#define PER_THREAD 1000

static void *writer_thread(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg * PER_THREAD;
    char path[64];

    for (int i = 0; i < PER_THREAD; i++) {
        struct log_event ev = ev_deny;

        snprintf(path, sizeof(path), "/t/%d", i);
        ev.path = path;
        ev.conn_id = base + (uint64_t)i + 1;
        log_event(&ev);
    }
    return NULL;
}

static void test_concurrent(void)
{
    const char *path = tmp_path("conc.json");
    pthread_t t[THREADS];
    static bool seen[THREADS * PER_THREAD + 1];
    long long last[THREADS] = {0};
    uint64_t dropped0 = log_dropped();
    struct lines ls;
    size_t good = 0;

    CHECK_EQ(log_open(path, LOG_JSON, LOG_INFO), 0);
    for (uintptr_t i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, writer_thread, (void *)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    log_close();
    CHECK_EQ(log_dropped() - dropped0, 0);

    read_lines(path, &ls);
    CHECK_EQ(ls.n, THREADS * PER_THREAD);
    CHECK(ls.ends_nl);
    for (size_t i = 0; i < ls.n; i++) {
        cJSON *j = parse(ls.v[i]);
        long long id = jnum(j, "unmapped.conn_id");

        if (j && id >= 1 && id <= THREADS * PER_THREAD && !seen[id]) {
            int th = (int)((id - 1) / PER_THREAD);
            char want[32];

            snprintf(want, sizeof(want), "/t/%lld", (id - 1) % PER_THREAD);
            /* Each thread's lines come out in the order it logged them. */
            if (id > last[th] && jstr(j, "http_request.url.path") &&
                strcmp(jstr(j, "http_request.url.path"), want) == 0)
                good++;
            last[th] = id;
            seen[id] = true;
        }
        cJSON_Delete(j);
    }
    CHECK_EQ(good, THREADS * PER_THREAD);
    lines_free(&ls);
    unlink(path);
}

struct fifo_reader {
    int fd;
    char *buf;
    size_t len;
};

static void *fifo_read(void *arg)
{
    struct fifo_reader *r = arg;

    read_fd_all(r->fd, &r->buf, &r->len);
    return NULL;
}

/* A log reader that stalls (a FIFO nobody reads): the queue fills, lines are dropped and
 * counted instead of blocking the caller, and the log says how many went missing. */
static void test_queue_full(void)
{
    const char *path = tmp_path("fifo");
    static char big[1001];
    const int total = 8000; /* 8 MB: twice the queue */
    struct fifo_reader r = {0};
    uint64_t dropped0 = log_dropped(), dropped, noted = 0;
    size_t xlines = 0, notes = 0;
    struct lines ls;
    pthread_t t;

    memset(big, 'x', sizeof(big) - 1);
    CHECK(mkfifo(path, 0600) == 0);
    r.fd = open(path, O_RDONLY | O_NONBLOCK); /* so that the writer's open does not block */
    CHECK(r.fd >= 0);
    CHECK_EQ(log_open(path, LOG_TEXT, LOG_INFO), 0);
    for (int i = 0; i < total; i++)
        log_msg(LOG_INFO, "%s", big);
    dropped = log_dropped() - dropped0;
    CHECK(dropped > 0 && dropped < (uint64_t)total);

    fcntl(r.fd, F_SETFL, fcntl(r.fd, F_GETFL) & ~O_NONBLOCK);
    pthread_create(&t, NULL, fifo_read, &r);
    log_close(); /* drains into the reader, then closes the write end: the reader sees EOF */
    pthread_join(t, NULL);
    close(r.fd);

    split_lines(&ls, r.buf, r.len);
    CHECK(ls.ends_nl);
    for (size_t i = 0; i < ls.n; i++) {
        const char *note = strstr(ls.v[i], "WARN log: ");
        unsigned long long n;

        if (strlen(ls.v[i]) == 9 + 5 + 1000 && strncmp(ls.v[i] + 9, "INFO x", 6) == 0)
            xlines++;
        else if (note && sscanf(note, "WARN log: %llu lines dropped", &n) == 1)
            notes++, noted += n;
    }
    CHECK_EQ(xlines, (uint64_t)total - dropped);
    CHECK(notes >= 1);
    CHECK_EQ(noted, dropped);
    CHECK_EQ(xlines + notes, ls.n);
    lines_free(&ls);
    unlink(path);
}

struct finding_burst {
    int n;
    bool done;
};

static void *emit_findings(void *arg)
{
    struct finding_burst *b = arg;
    for (int i = 0; i < b->n; i++)
        log_event(&ev_finding);
    __atomic_store_n(&b->done, true, __ATOMIC_SEQ_CST);
    return NULL;
}

/* The same stalled reader, with findings logged into the full queue: they wait for room (the
 * producer blocks until the reader drains) instead of being dropped; ordinary lines are still
 * dropped and counted. */
static void test_findings_never_dropped(void)
{
    const char *path = tmp_path("fifo3");
    static char big[1001];
    const int total = 8000;
    struct fifo_reader r = {0};
    struct finding_burst burst = {.n = 200};
    uint64_t dropped0 = log_dropped(), dropped;
    size_t xlines = 0, findings = 0;
    struct lines ls;
    pthread_t reader, producer;

    memset(big, 'x', sizeof(big) - 1);
    CHECK(mkfifo(path, 0600) == 0);
    r.fd = open(path, O_RDONLY | O_NONBLOCK);
    CHECK(r.fd >= 0);
    CHECK_EQ(log_open(path, LOG_TEXT, LOG_INFO), 0);
    for (int i = 0; i < total; i++)
        log_msg(LOG_INFO, "%s", big);
    pthread_create(&producer, NULL, emit_findings, &burst);
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    CHECK(!__atomic_load_n(&burst.done, __ATOMIC_SEQ_CST)); /* waiting for room */

    fcntl(r.fd, F_SETFL, fcntl(r.fd, F_GETFL) & ~O_NONBLOCK);
    pthread_create(&reader, NULL, fifo_read, &r);
    pthread_join(producer, NULL);
    dropped = log_dropped() - dropped0;
    log_close();
    pthread_join(reader, NULL);
    close(r.fd);

    split_lines(&ls, r.buf, r.len);
    for (size_t i = 0; i < ls.n; i++) {
        if (strlen(ls.v[i]) == 9 + 5 + 1000 && strncmp(ls.v[i] + 9, "INFO x", 6) == 0)
            xlines++;
        else if (strstr(ls.v[i], "DENY GET 10.0.0.5:8443/chat status=502"))
            findings++;
    }
    CHECK_EQ(findings, (size_t)burst.n);
    CHECK(dropped > 0);
    CHECK_EQ(xlines, (uint64_t)total - dropped);
    lines_free(&ls);
    unlink(path);
}

static void log_to_gone_reader(void)
{
    const char *path = tmp_path("fifo2");
    uint64_t dropped0 = log_dropped();
    int rfd;

    CHECK(mkfifo(path, 0600) == 0);
    rfd = open(path, O_RDONLY | O_NONBLOCK);
    CHECK_EQ(log_open(path, LOG_TEXT, LOG_INFO), 0);
    close(rfd); /* the reader goes away: writes fail with EPIPE */
    for (int i = 0; i < 10; i++)
        log_msg(LOG_INFO, "into the void %d", i);
    log_close();
    CHECK_EQ(log_dropped() - dropped0, 10);
    unlink(path);
}

/* A failed write loses lines but not the process: the writer blocks SIGPIPE, counts the lines
 * and says so once on stderr. */
static void test_write_error(void)
{
    const char *err = tmp_path("err.log");
    struct lines ls;

    with_stderr_to(err, log_to_gone_reader);
    read_lines(err, &ls);
    CHECK(ls.n >= 1);
    if (ls.n >= 1)
        CHECK(strstr(ls.v[0], "log write failed: Broken pipe") != NULL);
    lines_free(&ls);
    unlink(err);
}

static void log_via_stderr(void)
{
    CHECK_EQ(log_open(NULL, LOG_JSON, LOG_INFO), 0);
    log_event(&ev_upgrade);
    log_close();
    log_msg(LOG_INFO, "after close"); /* synchronous, still JSON */
}

static void test_stderr_target(void)
{
    const char *path = tmp_path("stderr.log");
    struct lines ls;

    with_stderr_to(path, log_via_stderr);
    read_lines(path, &ls);
    CHECK_EQ(ls.n, 2);
    if (ls.n == 2) {
        cJSON *j = parse(ls.v[0]);

        CHECK_STR(jstr(j, "activity_name"), "UPGRADE");
        cJSON_Delete(j);
        j = parse(ls.v[1]);
        CHECK_STR(jstr(j, "message"), "after close");
        cJSON_Delete(j);
    }
    lines_free(&ls);
    unlink(path);
}

/* ---- the formatter, on strings -------------------------------------------------------------- */

/* 1,000 ms after the epoch, in UTC (main sets TZ=UTC): "00:00:01". */
#define T1 1000

static void test_fmt_text_lines(void)
{
    char buf[LOGFMT_LINE_MAX];
    size_t n;

    n = logfmt_event(buf, sizeof(buf), LOG_TEXT, &ev_deny, T1);
    CHECK_EQ(n, strlen(buf));
    CHECK_STR(buf, "00:00:01 DENY GET api.github.com/admin policy=github status=403 "
                   "decision=deny outcome=consumed reason=\"no rule allows method and path\"\n");
    logfmt_event(buf, sizeof(buf), LOG_TEXT, &ev_connect, T1);
    CHECK_STR(buf, "00:00:01 ALLOW CONNECT api.github.com:443 policy=github "
                   "src=127.0.0.1:50000 conn=7\n");
    logfmt_msg(buf, sizeof(buf), LOG_TEXT, LOG_WARN, "reloaded", T1);
    CHECK_STR(buf, "00:00:01 WARN reloaded\n");
    logfmt_msg(buf, sizeof(buf), LOG_JSON, LOG_ERROR, "a \"b\"", T1);
    CHECK_STR(buf, "{\"time\":1000,\"level\":\"error\",\"message\":\"a \\\"b\\\"\"}\n");

    /* No action: the activity leads; nothing at all: EVENT. */
    struct log_event ev = {.class_uid = LOG_CLASS_NETWORK, .overflow = -1};
    logfmt_event(buf, sizeof(buf), LOG_TEXT, &ev, T1);
    CHECK_STR(buf, "00:00:01 EVENT\n");
    ev.activity = LOG_ACTIVITY_PIPE;
    ev.l7_decision = LOG_DECISION_ALLOW;
    ev.relay_outcome = LOG_OUTCOME_UPGRADED;
    ev.overflow = 0;
    logfmt_event(buf, sizeof(buf), LOG_TEXT, &ev, T1);
    CHECK_STR(buf, "00:00:01 PIPE decision=allow outcome=upgraded overflow=0\n");
}

/* A line that does not fit is refused whole (0), never cut. */
static void test_fmt_too_small(void)
{
    char buf[40];

    CHECK_EQ(logfmt_event(buf, sizeof(buf), LOG_TEXT, &ev_deny, T1), 0);
    CHECK_EQ(logfmt_event(buf, sizeof(buf), LOG_JSON, &ev_connect, T1), 0);
    CHECK_EQ(logfmt_msg(buf, 23, LOG_TEXT, LOG_WARN, "reloaded", T1), 0);
    CHECK_EQ(logfmt_msg(buf, 24, LOG_TEXT, LOG_WARN, "reloaded", T1), 23);
}

/* Each enum has one table: its text and OCSF ids. Every activity airlock logs as Network
 * Activity has its own id (none falls through to 99 "Other"). */
static void test_fmt_tables(void)
{
    static const struct {
        enum log_activity a;
        const char *name;
        long long network_id;
    } acts[] = {
        {LOG_ACTIVITY_CONNECT, "CONNECT", 1}, {LOG_ACTIVITY_FORWARD, "FORWARD", 1},
        {LOG_ACTIVITY_REQUEST, "REQUEST", 6}, {LOG_ACTIVITY_UPGRADE, "UPGRADE", 6},
        {LOG_ACTIVITY_PIPE, "PIPE", 6},       {LOG_ACTIVITY_CLOSE, "CLOSE", 2},
        {LOG_ACTIVITY_TIMEOUT, "TIMEOUT", 3}, {LOG_ACTIVITY_TLS, "TLS", 4},
        {LOG_ACTIVITY_SSRF, "SSRF", 5},       {LOG_ACTIVITY_FINDING, "FINDING", 99},
    };
    char buf[LOGFMT_LINE_MAX];

    for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
        struct log_event ev = {.class_uid = LOG_CLASS_NETWORK, .activity = acts[i].a};
        cJSON *j;

        CHECK_STR(logfmt_activity_name(acts[i].a), acts[i].name);
        CHECK(logfmt_event(buf, sizeof(buf), LOG_JSON, &ev, T1) > 0);
        j = parse(buf);
        CHECK_STR(jstr(j, "activity_name"), acts[i].name);
        CHECK_EQ(jnum(j, "activity_id"), acts[i].network_id);
        CHECK_EQ(jnum(j, "type_uid"), 400100 + acts[i].network_id);
        cJSON_Delete(j);
        /* A finding is "Create" whatever its activity. */
        ev.class_uid = LOG_CLASS_FINDING;
        logfmt_event(buf, sizeof(buf), LOG_JSON, &ev, T1);
        j = parse(buf);
        CHECK_EQ(jnum(j, "activity_id"), 1);
        CHECK_EQ(jnum(j, "type_uid"), 200401);
        cJSON_Delete(j);
    }
    CHECK(logfmt_activity_name(LOG_ACTIVITY_NONE) == NULL);
    CHECK(logfmt_activity_name((enum log_activity)99) == NULL);

    /* HTTP Activity takes its id from the method. */
    struct log_event req = ev_deny;
    cJSON *j;
    req.method = "PATCH";
    logfmt_event(buf, sizeof(buf), LOG_JSON, &req, T1);
    j = parse(buf);
    CHECK_EQ(jnum(j, "activity_id"), 9);
    CHECK_STR(jstr(j, "activity_name"), "REQUEST");
    cJSON_Delete(j);
    req.method = "PROPFIND";
    logfmt_event(buf, sizeof(buf), LOG_JSON, &req, T1);
    j = parse(buf);
    CHECK_EQ(jnum(j, "activity_id"), 99);
    cJSON_Delete(j);

    static const struct {
        enum log_action a;
        const char *name, *disposition;
        long long id, disposition_id;
    } actions[] = {
        {LOG_ACTION_ALLOW, "allow", "Allowed", 1, 1},
        {LOG_ACTION_DENY, "deny", "Blocked", 2, 2},
        {LOG_ACTION_AUDIT, "audit", "Allowed", 1, 1},
    };
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
        struct log_event ev = {.class_uid = LOG_CLASS_HTTP, .action = actions[i].a};

        CHECK_STR(logfmt_action_name(actions[i].a), actions[i].name);
        logfmt_event(buf, sizeof(buf), LOG_JSON, &ev, T1);
        j = parse(buf);
        CHECK_STR(jstr(j, "action"), actions[i].name);
        CHECK_EQ(jnum(j, "action_id"), actions[i].id);
        CHECK_STR(jstr(j, "disposition"), actions[i].disposition);
        CHECK_EQ(jnum(j, "disposition_id"), actions[i].disposition_id);
        cJSON_Delete(j);
    }
    CHECK(logfmt_action_name(LOG_ACTION_NONE) == NULL);

    static const char *const decisions[] = {NULL, "allow", "allow_upgrade", "audit", "deny"};
    for (int d = LOG_DECISION_NONE; d <= LOG_DECISION_DENY; d++) {
        struct log_event ev = {.class_uid = LOG_CLASS_HTTP, .l7_decision = d, .conn_id = 1};

        CHECK(decisions[d]
                  ? logfmt_decision_name(d) && !strcmp(logfmt_decision_name(d), decisions[d])
                  : logfmt_decision_name(d) == NULL);
        logfmt_event(buf, sizeof(buf), LOG_JSON, &ev, T1);
        j = parse(buf);
        CHECK(decisions[d] ? jstr(j, "unmapped.l7_decision") &&
                                 !strcmp(jstr(j, "unmapped.l7_decision"), decisions[d])
                           : jget(j, "unmapped.l7_decision") == NULL);
        cJSON_Delete(j);
    }
    static const char *const outcomes[] = {NULL, "reusable", "consumed", "upgraded"};
    for (int o = LOG_OUTCOME_NONE; o <= LOG_OUTCOME_UPGRADED; o++) {
        struct log_event ev = {.class_uid = LOG_CLASS_HTTP, .relay_outcome = o, .conn_id = 1};
        char want[64];

        CHECK(outcomes[o] ? logfmt_outcome_name(o) && !strcmp(logfmt_outcome_name(o), outcomes[o])
                          : logfmt_outcome_name(o) == NULL);
        logfmt_event(buf, sizeof(buf), LOG_TEXT, &ev, T1);
        snprintf(want, sizeof(want), " outcome=%s ", outcomes[o] ? outcomes[o] : "");
        CHECK(outcomes[o] ? strstr(buf, want) != NULL : strstr(buf, "outcome") == NULL);
    }
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_stderr_before_open);
    RUN(test_open_errors);
    RUN(test_text_format);
    RUN(test_json_format);
    RUN(test_overflow_zero);
    RUN(test_hostile_bytes);
    RUN(test_long_fields);
    RUN(test_min_level);
    RUN(test_reopen);
    RUN(test_open_refuses_a_file_others_could_choose);
    RUN(test_reopen_refuses_a_planted_symlink);
    RUN(test_open_refuses_an_unsafe_directory_on_the_way);
    RUN(test_reopen_refuses_a_directory_swapped_for_a_symlink);
    RUN(test_concurrent);
    RUN(test_queue_full);
    RUN(test_findings_never_dropped);
    RUN(test_write_error);
    RUN(test_stderr_target);
    RUN(test_fmt_text_lines);
    RUN(test_fmt_too_small);
    RUN(test_fmt_tables);
    unlink(tmp_path("target")); /* left by the hard-link case */
    rmdir(dir);
    return test_report();
}
