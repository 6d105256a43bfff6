/* SPDX-License-Identifier: MIT */
/* Unit tests for relay: whole client connections driven in memory, as the transport and the
 * session controller drive them (hold a side whose bytes were not all taken, release both after
 * REUSABLE, dial after DIAL, open the tunnel after TUNNEL). A mock relay_io keeps each side's
 * written bytes, the log events, the judgements (policy_check_l7 on a real policy), progress and
 * outcomes. Each test checks the exact bytes each side got, the outcome and its fields, and that
 * nothing reaches the upstream after a refusal. The reference parser (test/fuzz/refhttp.c)
 * reads a body whose chunk boundaries are the relay's own business (a redacted echo). */
#include "airlock/relay.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "airlock/answer.h"
#include "airlock/creds.h"
#include "airlock/policy.h"
#include "test.h"

#include "../fuzz/refhttp.h"

#define SECRET     "s3cretTOKENvalue42"
#define SECRET_ENV "AIRLOCK_TEST_RELAY_SECRET"
#define PH         "AIRLOCK_PLACEHOLDER_API_000001"
#define PH_ELSE    "AIRLOCK_PLACEHOLDER_ELSE_00002"
#define PH_INJECT  "AIRLOCK_PLACEHOLDER_INJ_000003"

#define WS_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* RFC 6455 §1.3's example */

/* Test JSON is written with single quotes and turned into double quotes here. */
static char *dq(const char *s)
{
    char *d = strdup(s);

    for (char *c = d; c && *c; c++)
        if (*c == '\'')
            *c = '"';
    return d;
}

/* api.example.com:443 (full access), ro.example.com:443 (read-only with a rule and a deny
 * rule), audit.example.com:443 (read-only in audit mode), the forward proxy's example.com:80
 * and other.example.com:8080, and inject.example.com:443 whose provider injects a header. */
static const char policy_json[] =
    "{'version': 1, 'network_policies': {"
    " 'api': {'endpoints': ["
    "  {'host': 'api.example.com', 'port': 443, 'access': 'full'},"
    "  {'host': 'inject.example.com', 'port': 443, 'access': 'full'},"
    "  {'host': 'else.example.com', 'port': 443, 'access': 'full'}]},"
    " 'ro': {'endpoints': [{'host': 'ro.example.com', 'port': 443, 'access': 'read-only',"
    "  'rules': [{'method': 'POST', 'path': '/repos/*/*/issues'}],"
    "  'deny_rules': [{'method': '*', 'path': '/admin/**'}]}]},"
    " 'aud': {'endpoints': [{'host': 'audit.example.com', 'port': 443, 'access': 'read-only',"
    "  'enforcement': 'audit'}]},"
    " 'fwd': {'endpoints': [{'host': 'example.com', 'port': 80, 'access': 'full'},"
    "  {'host': 'other.example.com', 'port': 8080, 'access': 'full'}]}}}";

/* "api" binds api.example.com:443 and may stand anywhere in a head; "else" binds another host;
 * "inj" injects Authorization for inject.example.com. */
static const char creds_json[] =
    "{'version': 1, 'providers': {"
    " 'api': {'placeholder': '" PH "', 'secret': {'env': '" SECRET_ENV "'},"
    "  'endpoints': [{'host': 'api.example.com', 'port': 443}]},"
    " 'else': {'placeholder': '" PH_ELSE "', 'secret': {'env': '" SECRET_ENV "'},"
    "  'endpoints': [{'host': 'else.example.com', 'port': 443}]},"
    " 'inj': {'placeholder': '" PH_INJECT "', 'secret': {'env': '" SECRET_ENV "'},"
    "  'endpoints': [{'host': 'inject.example.com', 'port': 443}],"
    "  'inject': {'header': 'Authorization', 'format': 'Bearer {secret}'}}}}";

static struct policy *the_policy;
static struct creds *the_creds;

/* ---- the mock controller ----------------------------------------------------------------- */

#define REC_MAX 16
#define STR_MAX 512

/* Strings are copied ("(null)" for NULL): the relay's may not outlive the callback. */
static void copy_str(char *dst, const char *src)
{
    snprintf(dst, STR_MAX, "%s", src ? src : "(null)");
}

struct rec_log {
    enum log_class class_uid;
    enum log_activity activity;
    enum log_action action;
    enum log_decision decision;
    enum log_outcome outcome;
    int status;
    long overflow;
    char method[STR_MAX], path[STR_MAX], reason[STR_MAX];
};

struct rec_outcome {
    enum relay_outcome outcome;
    bool until_close, truncated;
    size_t overflow;
    struct authority target;
    char reason[STR_MAX];
    /* REFUSED */
    int status;
    bool in_request;
    char error[STR_MAX], detail[STR_MAX], method[STR_MAX], path[STR_MAX];
    char rule_missing[STR_MAX], deny_method[STR_MAX], deny_path[STR_MAX];
};

struct rec_judge {
    struct authority target;
    char method[STR_MAX], path[STR_MAX];
    bool upgrade;
    size_t noverrides;
    enum policy_verdict verdict;
};

struct world {
    struct relay *r;
    struct http_buf out[2];  /* what the relay wrote to each side, since the last check */
    struct http_buf wait[2]; /* fed but not taken: held in the transport */
    bool held[2];
    bool with_creds;
    bool draining;
    bool terminal;      /* an outcome after which the relay takes no more input */
    size_t late_writes; /* writes after a terminal outcome (a defect) */
    struct rec_log logs[REC_MAX];
    size_t nlogs;
    struct rec_outcome outs[REC_MAX];
    size_t nouts;
    struct rec_judge judges[REC_MAX];
    size_t njudges;
    unsigned progress[3];
};

static int io_write(void *ctx, enum side_id to, const struct http_span *spans, unsigned nspans)
{
    struct world *w = ctx;

    if (w->terminal)
        w->late_writes++;
    for (unsigned i = 0; i < nspans; i++)
        http_buf_append(&w->out[to], spans[i].p, spans[i].len);
    return 0;
}

static void io_log(void *ctx, struct log_event *ev)
{
    struct world *w = ctx;
    struct rec_log *l;

    if (w->nlogs == REC_MAX)
        return;
    l = &w->logs[w->nlogs++];
    l->class_uid = ev->class_uid;
    l->activity = ev->activity;
    l->action = ev->action;
    l->decision = ev->l7_decision;
    l->outcome = ev->relay_outcome;
    l->status = ev->status;
    l->overflow = ev->overflow;
    copy_str(l->method, ev->method);
    copy_str(l->path, ev->path);
    copy_str(l->reason, ev->reason);
}

static void io_judge(void *ctx, const struct authority *target, const struct policy_request *q,
                     struct policy_l7 *d)
{
    static const struct policy_peer anyone = {.binary_identity_off = true};
    struct world *w = ctx;

    policy_check_l7(the_policy, target->host, target->port, &anyone, NULL, q, d);
    if (w->njudges < REC_MAX) {
        struct rec_judge *j = &w->judges[w->njudges++];

        j->target = *target;
        copy_str(j->method, q->method);
        copy_str(j->path, q->path);
        j->upgrade = q->upgrade;
        j->noverrides = q->noverrides;
        j->verdict = d->verdict;
    }
}

static struct creds *io_creds(void *ctx)
{
    struct world *w = ctx;

    if (!w->with_creds)
        return NULL;
    creds_ref(the_creds);
    return the_creds;
}

static void io_progress(void *ctx, enum relay_progress p)
{
    struct world *w = ctx;

    if ((unsigned)p < 3)
        w->progress[p]++;
}

static void io_outcome(void *ctx, const struct relay_result *res)
{
    struct world *w = ctx;
    struct rec_outcome *o;

    if (w->terminal)
        w->late_writes++; /* an outcome after the last one is as wrong as a write */
    if (w->nouts == REC_MAX)
        return;
    o = &w->outs[w->nouts++];
    memset(o, 0, sizeof *o);
    o->outcome = res->outcome;
    o->until_close = res->until_close;
    o->truncated = res->truncated;
    o->overflow = res->overflow;
    o->target = res->target;
    copy_str(o->reason, res->reason);
    o->status = res->answer.status;
    o->in_request = res->answer.in_request;
    copy_str(o->error, res->answer.error);
    copy_str(o->detail, res->answer.detail);
    copy_str(o->method, res->answer.method);
    copy_str(o->path, res->answer.path);
    copy_str(o->rule_missing, res->answer.rule_missing);
    copy_str(o->deny_method, res->answer.deny_method);
    copy_str(o->deny_path, res->answer.deny_path);
    w->terminal = res->outcome == RELAY_CONSUMED || res->outcome == RELAY_UPGRADED ||
                  res->outcome == RELAY_REFUSED || res->outcome == RELAY_ABORTED;
}

static const struct relay_io mock_io = {io_write, io_log,      io_judge,
                                        io_creds, io_progress, io_outcome};

static struct world *world_open(void)
{
    struct world *w = calloc(1, sizeof *w);
    struct relay_setup setup = {.id = 7, .limits = &http_default_limits};

    setup.draining = &w->draining;
    w->r = relay_new(&setup, &mock_io, w);
    CHECK(w->r != NULL);
    return w;
}

static void world_close(struct world *w)
{
    relay_free(w->r);
    for (int s = 0; s < 2; s++) {
        http_buf_free(&w->out[s]);
        http_buf_free(&w->wait[s]);
    }
    free(w);
}

static void drop_front(struct http_buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* The transport: feed what waits until the relay holds the side (takes fewer bytes than it was
 * given) or nothing is left. */
static void pump(struct world *w, enum side_id side)
{
    while (w->wait[side].len > 0 && !w->held[side]) {
        size_t len = w->wait[side].len;
        size_t n = relay_feed(w->r, side, w->wait[side].data, len);

        CHECK(n <= len);
        drop_front(&w->wait[side], n);
        if (n < len)
            w->held[side] = true;
    }
}

static void feedn(struct world *w, enum side_id side, const char *p, size_t len)
{
    http_buf_append(&w->wait[side], p, len);
    pump(w, side);
}

static void feed(struct world *w, enum side_id side, const char *s)
{
    feedn(w, side, s, strlen(s));
}

/* The controller releases a side: its parser resumes, then what waited is fed. */
static void release(struct world *w, enum side_id side)
{
    w->held[side] = false;
    relay_resume(w->r, side);
    pump(w, side);
}

static const struct rec_outcome *last_outcome(const struct world *w)
{
    static const struct rec_outcome none = {.outcome = (enum relay_outcome) - 1};

    return w->nouts ? &w->outs[w->nouts - 1] : &none;
}

/* On REUSABLE the controller releases both sides, the upstream first (as conn.c's kick does). */
static void resume_if_reusable(struct world *w)
{
    if (last_outcome(w)->outcome != RELAY_REUSABLE)
        return;
    release(w, SIDE_UPSTREAM);
    release(w, SIDE_CLIENT);
}

/* A forward proxy's dial finished: the held request goes out, then the client goes on. A new
 * upstream connection starts with nothing from the old one. */
static void dialed(struct world *w)
{
    http_buf_free(&w->wait[SIDE_UPSTREAM]);
    w->held[SIDE_UPSTREAM] = false;
    relay_dialed(w->r);
    release(w, SIDE_CLIENT);
}

static void print_escaped(const char *what, const char *p, size_t len)
{
    fprintf(stderr, "  %s: \"", what);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
    fputs("\"\n", stderr);
}

/* The bytes a side got since the last check are exactly want; they are then forgotten. */
#define EXPECT_OUT(w, side, want) expect_out(w, side, want, sizeof(want) - 1, __FILE__, __LINE__)
static void expect_out(struct world *w, enum side_id side, const char *want, size_t want_len,
                       const char *file, int line)
{
    struct http_buf *b = &w->out[side];

    if (b->len == want_len && (want_len == 0 || memcmp(b->data, want, want_len) == 0)) {
        test_passed++;
    } else {
        test_failed++;
        fprintf(stderr, "%s:%d: bytes to the %s differ\n", file, line,
                side == SIDE_CLIENT ? "client" : "upstream");
        print_escaped("want", want, want_len);
        print_escaped("got ", b->data ? b->data : "", b->len);
    }
    b->len = 0;
}

/* The bytes that wait (unread) for a side are exactly want. */
#define EXPECT_WAITING(w, side, want)                                                              \
    expect_waiting(w, side, want, sizeof(want) - 1, __FILE__, __LINE__)
static void expect_waiting(struct world *w, enum side_id side, const char *want, size_t want_len,
                           const char *file, int line)
{
    struct http_buf *b = &w->wait[side];

    if (b->len == want_len && (want_len == 0 || memcmp(b->data, want, want_len) == 0)) {
        test_passed++;
    } else {
        test_failed++;
        fprintf(stderr, "%s:%d: bytes waiting from the %s differ\n", file, line,
                side == SIDE_CLIENT ? "client" : "upstream");
        print_escaped("want", want, want_len);
        print_escaped("got ", b->data ? b->data : "", b->len);
    }
}

/* A refusal: the outcome is REFUSED with status and error, the relay wrote nothing to the
 * client (the controller sends the answer) and nothing more upstream, and takes no more. */
static void expect_refused(struct world *w, int status, const char *error)
{
    const struct rec_outcome *o = last_outcome(w);

    CHECK_EQ(o->outcome, RELAY_REFUSED);
    CHECK_EQ(o->status, status);
    CHECK_STR(o->error, error);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    /* whatever comes after is discarded, never forwarded */
    size_t nouts = w->nouts;
    static const char more[] = "GET /more HTTP/1.1\r\nHost: api.example.com\r\n\r\n";
    CHECK_EQ(relay_feed(w->r, SIDE_CLIENT, more, sizeof more - 1), sizeof more - 1);
    CHECK_EQ(w->nouts, nouts);
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    EXPECT_OUT(w, SIDE_CLIENT, "");
    CHECK_EQ(w->late_writes, 0);
}

/* The log line of the last exchange. */
static const struct rec_log *last_log(const struct world *w)
{
    static const struct rec_log none;

    return w->nlogs ? &w->logs[w->nlogs - 1] : &none;
}

/* No log string anywhere carries the secret or a placeholder. */
static void expect_clean_logs(const struct world *w)
{
    for (size_t i = 0; i < w->nlogs; i++) {
        const struct rec_log *l = &w->logs[i];
        const char *strs[] = {l->method, l->path, l->reason};

        for (size_t k = 0; k < 3; k++) {
            CHECK(strstr(strs[k], SECRET) == NULL);
            CHECK(strstr(strs[k], PH) == NULL);
            CHECK(strstr(strs[k], PH_ELSE) == NULL);
        }
    }
    for (size_t i = 0; i < w->nouts; i++) {
        CHECK(strstr(w->outs[i].path, PH) == NULL);
        CHECK(strstr(w->outs[i].path, SECRET) == NULL);
    }
}

/* A connection whose first request was CONNECT host:443, its client TLS up. */
static struct world *open_tunnel(const char *host)
{
    struct world *w = world_open();
    char connect[256];
    int n = snprintf(connect, sizeof connect, "CONNECT %s:443 HTTP/1.1\r\nHost: %s:443\r\n\r\n",
                     host, host);

    feedn(w, SIDE_CLIENT, connect, (size_t)n);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_TUNNEL);
    CHECK_STR(last_outcome(w)->target.host, host);
    CHECK_EQ(last_outcome(w)->target.port, 443);
    /* the bytes after CONNECT are the client's TLS, not the relay's */
    http_buf_free(&w->wait[SIDE_CLIENT]);
    relay_begin_tunnel(w->r, &last_outcome(w)->target);
    release(w, SIDE_CLIENT);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    return w;
}

static const char ok_response[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* ---- the first request ------------------------------------------------------------------- */

static void test_connect_opens_a_tunnel(void)
{
    struct world *w = world_open();

    CHECK(relay_idle(w->r));
    feed(w, SIDE_CLIENT,
         "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n"
         "\r\n\x16\x03\x01");
    CHECK_EQ(w->nouts, 1);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_TUNNEL);
    CHECK_STR(last_outcome(w)->target.host, "api.example.com");
    CHECK_EQ(last_outcome(w)->target.port, 443);
    CHECK(last_outcome(w)->target.port_present);
    /* the ClientHello behind it waits for the TLS layer */
    EXPECT_WAITING(w, SIDE_CLIENT, "\x16\x03\x01");
    EXPECT_OUT(w, SIDE_CLIENT, "");
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    CHECK_EQ(w->njudges, 0); /* L4 is the controller's */
    http_buf_free(&w->wait[SIDE_CLIENT]);
    relay_begin_tunnel(w->r, &last_outcome(w)->target);
    release(w, SIDE_CLIENT);

    /* a head that comes in pieces starts its deadline at its first byte */
    feed(w, SIDE_CLIENT, "GET /x HTTP/1.1\r\n");
    CHECK_EQ(w->progress[RELAY_HEAD_STARTED], 1);
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    feed(w, SIDE_CLIENT, "Host: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    CHECK_EQ(w->njudges, 1);
    CHECK_STR(w->judges[0].target.host, "api.example.com");
    CHECK_EQ(w->judges[0].target.port, 443);
    CHECK_STR(w->judges[0].method, "GET");
    CHECK_STR(w->judges[0].path, "/x");
    CHECK(!relay_idle(w->r));
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    CHECK_EQ(w->nouts, 2);
    CHECK(relay_idle(w->r));
    CHECK_EQ(last_log(w)->class_uid, LOG_CLASS_HTTP);
    CHECK_EQ(last_log(w)->decision, LOG_DECISION_ALLOW);
    CHECK_EQ(last_log(w)->outcome, LOG_OUTCOME_REUSABLE);
    CHECK_EQ(last_log(w)->status, 200);
    CHECK_STR(last_log(w)->method, "GET");
    CHECK_STR(last_log(w)->path, "/x");
    CHECK_EQ(w->progress[RELAY_HEAD_STARTED], 1);
    CHECK_EQ(w->progress[RELAY_REQUEST_SENT], 1);
    CHECK_EQ(w->progress[RELAY_RESPONSE_STARTED], 1);
    world_close(w);
}

static void test_first_request_must_be_connect_or_absolute(void)
{
    static const char *const bad[] = {
        "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n",                  /* origin form */
        "CONNECT api.example.com HTTP/1.1\r\nHost: api.example.com\r\n\r\n", /* no port */
        "GET ftp://api.example.com/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = world_open();

        feed(w, SIDE_CLIENT, bad[i]);
        expect_refused(w, 400, "bad_request");
        CHECK(!last_outcome(w)->in_request);
        world_close(w);
    }
}

static void test_forward_dials_then_redials_for_another_origin(void)
{
    struct world *w = world_open();

    feed(w, SIDE_CLIENT,
         "GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n"
         "Proxy-Connection: keep-alive\r\nProxy-Authorization: x\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_DIAL);
    CHECK_STR(last_outcome(w)->target.host, "example.com");
    CHECK_EQ(last_outcome(w)->target.port, 80);
    EXPECT_OUT(w, SIDE_UPSTREAM, ""); /* nothing before the dial */
    dialed(w);
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n");
    CHECK_EQ(w->njudges, 1);
    CHECK_STR(w->judges[0].target.host, "example.com");
    CHECK_STR(w->judges[0].path, "/a");
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);

    /* the same origin: the same upstream connection */
    size_t nouts = w->nouts;
    feed(w, SIDE_CLIENT, "GET http://example.com:80/b HTTP/1.1\r\nHost: example.com\r\n\r\n");
    CHECK_EQ(w->nouts, nouts);
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /b HTTP/1.1\r\nHost: example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);

    /* another origin: DIAL again, and its Host carries the port that is not 80 */
    feed(w, SIDE_CLIENT,
         "GET http://other.example.com:8080/c HTTP/1.1\r\n"
         "Host: other.example.com:8080\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_DIAL);
    CHECK_STR(last_outcome(w)->target.host, "other.example.com");
    CHECK_EQ(last_outcome(w)->target.port, 8080);
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    dialed(w);
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /c HTTP/1.1\r\nHost: other.example.com:8080\r\n\r\n");
    CHECK_STR(w->judges[w->njudges - 1].target.host, "other.example.com");
    CHECK_EQ(w->judges[w->njudges - 1].target.port, 8080);
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    CHECK_EQ(w->late_writes, 0);
    world_close(w);
}

static void test_forward_request_body_waits_for_the_dial(void)
{
    struct world *w = world_open();

    feed(w, SIDE_CLIENT,
         "POST http://example.com/p HTTP/1.1\r\nHost: example.com\r\n"
         "Content-Length: 5\r\n\r\nhello");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_DIAL);
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    dialed(w);
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
               "\r\nhello");
    feed(w, SIDE_UPSTREAM, ok_response);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    world_close(w);
}

/* L4 (may this client reach the origin at all) is the controller's, before the dial; the relay
 * only names the origin, and judges nothing yet. */
static void test_forward_origin_is_named_before_any_judgement(void)
{
    struct world *w = world_open();

    feed(w, SIDE_CLIENT, "GET http://example.org/a HTTP/1.1\r\nHost: example.org\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_DIAL);
    CHECK_STR(last_outcome(w)->target.host, "example.org");
    CHECK_EQ(w->njudges, 0);
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    world_close(w);
}

/* A connection redirected to airlock in plain HTTP (transparent mode): its requests are
 * judged for the target the controller names, as in a tunnel, but a placeholder never goes
 * on its clear-text hop, even to the host and port its provider names. */
static void test_plain_tunnel_judges_and_never_substitutes(void)
{
    struct world *w = world_open();
    struct authority target = {.host = "api.example.com", .kind = TARGET_DNS, .port = 443};

    w->with_creds = true;
    relay_begin_plain_tunnel(w->r, &target);
    feed(w, SIDE_CLIENT, "GET /p HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    /* the provider's host: its answer must come unencoded, to be redacted */
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /p HTTP/1.1\r\nHost: api.example.com\r\nAccept-Encoding: identity\r\n\r\n");
    CHECK_EQ(w->njudges, 1);
    CHECK_STR(w->judges[0].target.host, "api.example.com");
    CHECK_EQ(w->judges[0].target.port, 443);
    feed(w, SIDE_UPSTREAM, ok_response);
    /* no secret went out on this hop, but the body is redacted (so re-framed) all the same */
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);
    feed(w, SIDE_CLIENT, "GET /q?k=" PH " HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    expect_refused(w, 403, "credential_endpoint_mismatch");
    expect_clean_logs(w);
    world_close(w);
}

/* A provider's host may hand back a secret it stored from an earlier request over TLS: its
 * answers are redacted on a plain hop too (a plain tunnel, a transparent plain connection),
 * where no secret ever went out. */
static void test_plain_tunnel_redacts_a_stored_secret(void)
{
    struct world *w = world_open();
    struct authority target = {.host = "api.example.com", .kind = TARGET_DNS, .port = 443};

    w->with_creds = true;
    relay_begin_plain_tunnel(w->r, &target);
    feed(w, SIDE_CLIENT, "GET /me HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /me HTTP/1.1\r\nHost: api.example.com\r\nAccept-Encoding: identity\r\n\r\n");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK " SECRET "\r\nX-Key: " SECRET "\r\nContent-Length: 26\r\n\r\n"
         "{\"k\":\"" SECRET "\"}");
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 200 OK " PH "\r\nX-Key: " PH "\r\nTransfer-Encoding: chunked\r\n\r\n"
               "26\r\n{\"k\":\"" PH "\"}\r\n0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    expect_clean_logs(w);
    world_close(w);
}

/* ---- exchanges --------------------------------------------------------------------------- */

static void test_keep_alive_exchanges_are_reusable(void)
{
    struct world *w = open_tunnel("api.example.com");

    for (int i = 0; i < 3; i++) {
        feed(w, SIDE_CLIENT, "GET /k HTTP/1.1\r\nHost: api.example.com:443\r\nX-I: 1\r\n\r\n");
        /* a client that named the port gets it in Host upstream too */
        EXPECT_OUT(w, SIDE_UPSTREAM,
                   "GET /k HTTP/1.1\r\nHost: api.example.com:443\r\nX-I: 1\r\n"
                   "\r\n");
        feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-R: 2\r\n\r\nok");
        EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nX-R: 2\r\nContent-Length: 2\r\n\r\nok");
        CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
        resume_if_reusable(w);
    }
    CHECK_EQ(w->nouts, 4);
    CHECK_EQ(w->njudges, 3);
    world_close(w);
}

static void test_pipelined_request_waits_for_the_exchange(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "GET /1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
         "POST /2 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1\r\n\r\nz");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_WAITING(w, SIDE_CLIENT,
                   "POST /2 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1\r\n\r\nz");
    CHECK_EQ(w->njudges, 1); /* the second is not even judged yet */
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /2 HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1\r\n\r\nz");
    EXPECT_WAITING(w, SIDE_CLIENT, "");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    CHECK_EQ(w->njudges, 2);
    world_close(w);
}

static void test_interim_responses_pass_then_the_final_one(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "POST /up HTTP/1.1\r\nHost: api.example.com\r\nExpect: 100-continue\r\n"
         "Content-Length: 5\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /up HTTP/1.1\r\nHost: api.example.com\r\n"
               "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 100 Continue\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 100 Continue\r\n\r\n");
    CHECK_EQ(w->nouts, 1); /* still the TUNNEL step only */
    CHECK_EQ(w->progress[RELAY_RESPONSE_STARTED], 0);
    feed(w, SIDE_CLIENT, "hello");
    EXPECT_OUT(w, SIDE_UPSTREAM, "hello");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    CHECK_EQ(last_log(w)->status, 201);
    world_close(w);
}

static void test_head_204_304_have_no_body(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "HEAD /h HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "HEAD /h HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);

    feed(w, SIDE_CLIENT, "DELETE /d HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "DELETE /d HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 204 No Content\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 204 No Content\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);

    feed(w, SIDE_CLIENT,
         "GET /c HTTP/1.1\r\nHost: api.example.com\r\nIf-None-Match: \"e\"\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /c HTTP/1.1\r\nHost: api.example.com\r\nIf-None-Match: \"e\"\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 7\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 7\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);

    /* nothing of a body followed: the next request is parsed as one */
    feed(w, SIDE_CLIENT, "GET /n HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /n HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    world_close(w);
}

static void test_chunked_bodies_are_reframed_with_their_trailers(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: chunked\r\n"
         "\r\n5;ext=1\r\nhello\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /c HTTP/1.1\r\nHost: api.example.com\r\n"
               "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    /* RFC 9110 §6.5.1: routing and hop-by-hop fields have no place in a trailer */
    feed(w, SIDE_CLIENT,
         "0\r\nX-Sum: 1\r\nHost: evil.example\r\nKeep-Alive: 5\r\n"
         "Trailer: X-Sum\r\nTE: trailers\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "0\r\nX-Sum: 1\r\n\r\n");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
         "3\r\nabc\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
    feed(w, SIDE_UPSTREAM, "0\r\nX-T: 2\r\nKeep-Alive: 5\r\nTrailer: X-T\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "0\r\nX-T: 2\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    world_close(w);
}

/* Framing fields in a trailer section are refused (llhttp), never forwarded; a Connection:
 * close there ends the connection after the exchange, as in a head. */
static void test_framing_fields_in_trailers(void)
{
    static const char chunked_post[] = "POST /c HTTP/1.1\r\nHost: api.example.com\r\n"
                                       "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n";
    static const char chunked_post_up[] = "POST /c HTTP/1.1\r\nHost: api.example.com\r\n"
                                          "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n";
    static const char *const bad[] = {"0\r\nContent-Length: 3\r\n\r\n",
                                      "0\r\nTransfer-Encoding: chunked\r\n\r\n"};
    struct world *w;

    for (size_t i = 0; i < 2; i++) {
        w = open_tunnel("api.example.com");
        feed(w, SIDE_CLIENT, chunked_post);
        EXPECT_OUT(w, SIDE_UPSTREAM, chunked_post_up);
        feed(w, SIDE_CLIENT, bad[i]);
        expect_refused(w, 400, "bad_request");
        world_close(w);
    }

    /* in a response's trailer, after its head went out: the connection is cut */
    w = open_tunnel("api.example.com");
    feed(w, SIDE_CLIENT, "GET /t HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /t HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n"
         "0\r\nContent-Length: 5\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_ABORTED);
    CHECK_EQ(w->late_writes, 0);
    world_close(w);

    /* the client's Connection: close in a trailer makes its exchange the last */
    w = open_tunnel("api.example.com");
    feed(w, SIDE_CLIENT, chunked_post);
    feed(w, SIDE_CLIENT, "0\r\nConnection: close\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /c HTTP/1.1\r\nHost: api.example.com\r\n"
               "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n");
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    world_close(w);
}

static void test_other_transfer_codings_are_kept(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "POST /gz HTTP/1.1\r\nHost: api.example.com\r\n"
         "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /gz HTTP/1.1\r\nHost: api.example.com\r\n"
               "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n");
    /* a response whose codings do not end in chunked runs until the upstream closes */
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz");
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 200 OK\r\nConnection: close\r\n"
               "Transfer-Encoding: gzip\r\n\r\nzz");
    relay_eof(w->r, SIDE_UPSTREAM);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    CHECK(last_outcome(w)->until_close);
    CHECK(!last_outcome(w)->truncated);
    world_close(w);
}

static void test_read_until_close_response_is_consumed(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /u HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /u HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nabc");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: close\r\n\r\nabc");
    feed(w, SIDE_UPSTREAM, "def");
    EXPECT_OUT(w, SIDE_CLIENT, "def");
    CHECK_EQ(w->nouts, 1);
    relay_eof(w->r, SIDE_UPSTREAM);
    CHECK_EQ(w->nouts, 2);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    CHECK(last_outcome(w)->until_close);
    CHECK(!last_outcome(w)->truncated);
    CHECK_EQ(last_log(w)->outcome, LOG_OUTCOME_CONSUMED);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    CHECK_EQ(w->late_writes, 0);
    world_close(w);
}

static void test_upstream_cut_mid_body_is_truncated(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /t HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /t HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    relay_eof(w->r, SIDE_UPSTREAM);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    CHECK(last_outcome(w)->truncated);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    world_close(w);
}

static void test_upstream_close_before_any_response_is_refused_502(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /t HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /t HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    relay_eof(w->r, SIDE_UPSTREAM);
    expect_refused(w, 502, "upstream_closed");
    world_close(w);
}

static void test_http10_client_gets_a_close_delimited_body(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /o HTTP/1.0\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /o HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 100 Continue\r\n\r\n"
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n");
    /* no interim answer and no chunks for HTTP/1.0: the close ends the body */
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhi");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    world_close(w);
}

/* FINDING (fuzz_relay, "codings ... from upstream"): an HTTP/1.0 client may not be sent
 * Transfer-Encoding (RFC 9112 §6.1), so a body the upstream transfer-coded (gzip, chunked) went
 * to it de-chunked but still gzip-coded, with nothing saying so: the client reads the coding as
 * the representation. airlock cannot decode it; it must refuse (502) before the head goes out.
 * Fails until relay_response.c does. */
static void test_finding_transfer_coded_body_to_an_http10_client_is_refused(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /o HTTP/1.0\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /o HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         "2\r\n\x1f\x8b\r\n0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REFUSED);
    CHECK_EQ(last_outcome(w)->status, 502);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    world_close(w);
}

static void test_draining_makes_the_exchange_the_last(void)
{
    struct world *w = open_tunnel("api.example.com");

    w->draining = true;
    feed(w, SIDE_CLIENT, "GET /d HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /d HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n");
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    world_close(w);
}

static void test_describe_names_the_request_in_progress(void)
{
    struct world *w = open_tunnel("api.example.com");
    struct answer a = {0};

    feed(w, SIDE_CLIENT,
         "POST /a/./b HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 4\r\n"
         "\r\nab");
    relay_describe(w->r, &a);
    CHECK_STR(a.method, "POST");
    CHECK_STR(a.path, "/a/b");
    CHECK(a.in_request);
    CHECK(!relay_idle(w->r));
    world_close(w);
}

static void test_free_mid_exchange_logs_consumed(void)
{
    struct world *w = open_tunnel("api.example.com");
    size_t nlogs;

    feed(w, SIDE_CLIENT, "GET /f HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab");
    nlogs = w->nlogs;
    relay_free(w->r);
    w->r = NULL;
    CHECK_EQ(w->nlogs, nlogs + 1);
    CHECK_EQ(last_log(w)->outcome, LOG_OUTCOME_CONSUMED);
    CHECK_STR(last_log(w)->path, "/f");
    for (int s = 0; s < 2; s++) {
        http_buf_free(&w->out[s]);
        http_buf_free(&w->wait[s]);
    }
    free(w);
}

/* ---- websocket upgrades ------------------------------------------------------------------ */

static const char ws_request[] =
    "GET /ws HTTP/1.1\r\nHost: api.example.com\r\n"
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";
static const char ws_upstream[] = "GET /ws HTTP/1.1\r\nHost: api.example.com\r\n"
                                  "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n"
                                  "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

static void test_valid_websocket_upgrade(void)
{
    struct world *w = open_tunnel("api.example.com");

    /* the client's first frame right behind its request waits: it is the new protocol */
    feed(w, SIDE_CLIENT,
         "GET /ws HTTP/1.1\r\nHost: api.example.com\r\n"
         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"
         "\x81\x02up");
    EXPECT_OUT(w, SIDE_UPSTREAM, ws_upstream);
    EXPECT_WAITING(w, SIDE_CLIENT, "\x81\x02up");
    CHECK(w->judges[0].upgrade);
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n"
         "\x81\x02hi");
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " WS_ACCEPT
               "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_UPGRADED);
    CHECK_EQ(last_outcome(w)->overflow, 4);
    /* the overflow is not the relay's: it waits for the pipe */
    EXPECT_WAITING(w, SIDE_UPSTREAM, "\x81\x02hi");
    CHECK_EQ(last_log(w)->decision, LOG_DECISION_ALLOW_UPGRADE);
    CHECK_EQ(last_log(w)->outcome, LOG_OUTCOME_UPGRADED);
    CHECK_EQ(last_log(w)->status, 101);
    /* the relay takes no more */
    CHECK_EQ(relay_feed(w->r, SIDE_UPSTREAM, "xyz", 3), 3);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    CHECK_EQ(w->late_writes, 0);
    world_close(w);
}

/* A handshake that says Content-Length: 0 has no body either: it goes upstream with no framing
 * field at all, as every other upgrade does (found by fuzz_relay, whose reference refuses a
 * forwarded upgrade that carries one). */
static void test_websocket_upgrade_with_content_length_0_goes_without_it(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "GET /ws HTTP/1.1\r\nHost: api.example.com\r\n"
         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n"
         "Content-Length: 0\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, ws_upstream);
    world_close(w);
}

static void test_unsolicited_101_is_refused_502(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Accept: " WS_ACCEPT "\r\n\r\n");
    expect_refused(w, 502, "unsolicited_upgrade");
    CHECK_EQ(w->logs[0].class_uid, LOG_CLASS_FINDING);
    world_close(w);
}

static void test_101_with_a_wrong_accept_is_refused_502(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, ws_request);
    EXPECT_OUT(w, SIDE_UPSTREAM, ws_upstream);
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
         "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
         "\r\n");
    expect_refused(w, 502, "unsolicited_upgrade");
    world_close(w);
}

static void test_refused_upgrade_keeps_http(void)
{
    static const char *const refusals[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno",
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno",
    };

    for (size_t i = 0; i < 2; i++) {
        struct world *w = open_tunnel("api.example.com");

        feed(w, SIDE_CLIENT,
             "GET /ws HTTP/1.1\r\nHost: api.example.com\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"
             "GET /next HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
        EXPECT_OUT(w, SIDE_UPSTREAM, ws_upstream);
        feed(w, SIDE_UPSTREAM, refusals[i]);
        CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
        resume_if_reusable(w);
        /* what the client sent after its upgrade request is HTTP again, judged on its own */
        EXPECT_OUT(w, SIDE_UPSTREAM, "GET /next HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
        CHECK_EQ(w->njudges, 2);
        CHECK_STR(w->judges[1].path, "/next");
        world_close(w);
    }
}

static void test_half_a_websocket_handshake_is_refused_400(void)
{
    static const char *const bad[] = {
        /* a body */
        "POST /ws HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: "
        "Upgrade\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\nContent-Length: 8\r\n\r\n"
        "smuggled",
        /* no version */
        "GET /ws HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\n\r\n",
        /* a short key */
        "GET /ws HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
        /* no Connection: upgrade */
        "GET /ws HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = open_tunnel("api.example.com");

        feed(w, SIDE_CLIENT, bad[i]);
        expect_refused(w, 400, "bad_request");
        world_close(w);
    }
}

static void test_other_upgrades_are_dropped(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "GET /h2 HTTP/1.1\r\nHost: api.example.com\r\nConnection: Upgrade, "
         "HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /h2 HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, ok_response);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    world_close(w);
}

/* ---- hardening --------------------------------------------------------------------------- */

static void test_framing_and_routing_fields_are_airlocks(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "POST /f HTTP/1.1\r\nHost: API.Example.COM.\r\nConnection: keep-alive, "
         "X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nProxy-Authorization: Basic eA==\r\n"
         "TE: trailers\r\nUpgrade: h2c\r\nX-End: 2\r\nContent-Length: 3\r\n\r\nabc");
    /* Host from the judged authority, Content-Length from the parse; hop-by-hop gone but for
     * "TE: trailers" */
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /f HTTP/1.1\r\nHost: api.example.com\r\nTE: trailers\r\n"
               "X-End: 2\r\nContent-Length: 3\r\n\r\nabc");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nConnection: X-Gone\r\nX-Gone: 1\r\n"
         "Proxy-Authenticate: Basic\r\nContent-Length: 2\r\nX-Kept: 3\r\n\r\nok");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nX-Kept: 3\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    world_close(w);
}

static void test_connection_may_not_name_framing_fields(void)
{
    static const char *const bad[] = {
        /* the e2e case: its body is a DELETE that Connection would have set free */
        ("GET /a HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 51\r\n"
         "Connection: content-length\r\n\r\n"
         "DELETE /repos/x HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
        ("POST /a HTTP/1.1\r\nHost: api.example.com\r\nConnection: keep-alive, "
         "Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        "POST /a HTTP/1.1\r\nHost: api.example.com\r\nConnection: Host\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = open_tunnel("api.example.com");

        feed(w, SIDE_CLIENT, bad[i]);
        expect_refused(w, 400, "bad_request");
        CHECK_EQ(w->njudges, 0);
        world_close(w);
    }
}

static void test_response_naming_content_length_is_refused_502(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length\r\n"
         "\r\nHTTP/");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REFUSED);
    CHECK_EQ(last_outcome(w)->status, 502);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    world_close(w);
}

static void test_malformed_framing_is_refused_400(void)
{
    static const char *const bad[] = {
        /* both framings */
        "POST /a HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        /* two lengths */
        "POST /a HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 3\r\nContent-Length: 4\r\n"
        "\r\nabcd",
        /* codings not ending in chunked */
        "POST /a HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        /* an empty coding list */
        "POST /a HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: ,\r\n\r\n",
        /* obs-fold */
        "GET /a HTTP/1.1\r\nHost: api.example.com\r\nX-A: 1\r\n folded\r\n\r\n",
        /* a space before the colon */
        "GET /a HTTP/1.1\r\nHost : api.example.com\r\n\r\n",
        /* no Host */
        "GET /a HTTP/1.1\r\n\r\n",
        /* two Hosts */
        "GET /a HTTP/1.1\r\nHost: api.example.com\r\nHost: api.example.com\r\n\r\n",
        /* a bare LF */
        "GET /a HTTP/1.1\nHost: api.example.com\n\n",
        /* CONNECT inside the tunnel */
        "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = open_tunnel("api.example.com");

        feed(w, SIDE_CLIENT, bad[i]);
        if (last_outcome(w)->outcome != RELAY_REFUSED)
            fprintf(stderr, "  case %zu not refused\n", i);
        expect_refused(w, 400, "bad_request");
        world_close(w);
    }
}

static void test_bad_chunk_size_stops_the_body(void)
{
    static const char *const bad[] = {"zz\r\nab\r\n", "-1\r\n", "1 2\r\n", "fffffffffffffffff\r\n"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = open_tunnel("api.example.com");

        feed(w, SIDE_CLIENT,
             "POST /c HTTP/1.1\r\nHost: api.example.com\r\n"
             "Transfer-Encoding: chunked\r\n\r\n");
        EXPECT_OUT(w, SIDE_UPSTREAM,
                   "POST /c HTTP/1.1\r\nHost: api.example.com\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n");
        feed(w, SIDE_CLIENT, bad[i]);
        /* the head went up; nothing after it does, and the client hears 400 */
        expect_refused(w, 400, "bad_request");
        world_close(w);
    }
}

static void test_authority_mismatch_is_refused_421(void)
{
    static const char *const bad[] = {
        "GET /a HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost: api.example.com:8443\r\n\r\n",
        "GET http://evil.example/a HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        "GET https://evil.example/a HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = open_tunnel("api.example.com");

        feed(w, SIDE_CLIENT, bad[i]);
        expect_refused(w, 421, "request_authority_mismatch");
        CHECK_EQ(w->njudges, 0);
        world_close(w);
    }
}

static void test_absolute_form_naming_the_tunnel_is_relayed(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "GET http://api.example.com/abs?q=1 HTTP/1.1\r\nHost: api.example.com\r\n"
         "\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /abs?q=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    CHECK_STR(w->judges[0].path, "/abs");
    world_close(w);
}

static void test_upstream_gets_the_canonical_path_that_was_judged(void)
{
    static const struct {
        const char *sent, *judged, *upstream;
    } cases[] = {
        {"/a/../b", "/b", "GET /b HTTP/1.1\r\n"},
        {"/a/%2e%2e/b", "/b", "GET /b HTTP/1.1\r\n"},
        {"//x//y", "/x/y", "GET /x/y HTTP/1.1\r\n"},
        {"/a;p=1/%7euser?x=%2e", "/a/~user", "GET /a/~user?x=%2e HTTP/1.1\r\n"},
        {"/%41b/./c/", "/Ab/c/", "GET /Ab/c/ HTTP/1.1\r\n"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct world *w = open_tunnel("api.example.com");
        char req[256], want[256];
        int n;

        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
                 cases[i].sent);
        feed(w, SIDE_CLIENT, req);
        CHECK_EQ(w->njudges, 1);
        CHECK_STR(w->judges[0].path, cases[i].judged);
        n = snprintf(want, sizeof want, "%sHost: api.example.com\r\n\r\n", cases[i].upstream);
        expect_out(w, SIDE_UPSTREAM, want, (size_t)n, __FILE__, __LINE__);
        world_close(w);
    }
}

static void test_paths_that_climb_or_hide_are_refused_400(void)
{
    static const char *const bad[] = {"/%2e%2e/x", "/../x", "/a%2fb", "/a%00", "/a%252e%252e/x"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct world *w = open_tunnel("api.example.com");
        char req[256];

        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: api.example.com\r\n\r\n", bad[i]);
        feed(w, SIDE_CLIENT, req);
        expect_refused(w, 400, "bad_request");
        CHECK_EQ(w->njudges, 0);
        world_close(w);
    }
}

static void test_l7_deny_is_refused_403_with_rule_missing(void)
{
    struct world *w = open_tunnel("ro.example.com");

    feed(w, SIDE_CLIENT, "DELETE /repos/o/r HTTP/1.1\r\nHost: ro.example.com\r\n\r\n");
    CHECK_EQ(w->njudges, 1);
    CHECK_EQ(w->judges[0].verdict, POLICY_DENY);
    expect_refused(w, 403, "policy_denied");
    CHECK_STR(last_outcome(w)->rule_missing, "{\"method\":\"DELETE\",\"path\":\"/repos/o/r\"}");
    CHECK_STR(last_outcome(w)->method, "DELETE");
    CHECK_STR(last_outcome(w)->path, "/repos/o/r");
    CHECK(last_outcome(w)->in_request);
    CHECK_EQ(last_log(w)->decision, LOG_DECISION_DENY);
    CHECK_EQ(last_log(w)->status, 403);
    world_close(w);

    /* a deny rule names itself instead */
    w = open_tunnel("ro.example.com");
    feed(w, SIDE_CLIENT, "GET /admin/x HTTP/1.1\r\nHost: ro.example.com\r\n\r\n");
    expect_refused(w, 403, "policy_denied");
    CHECK_STR(last_outcome(w)->deny_method, "*");
    CHECK_STR(last_outcome(w)->deny_path, "/admin/**");
    CHECK(!strcmp(last_outcome(w)->rule_missing, "(null)") ||
          !strcmp(last_outcome(w)->rule_missing, ""));
    world_close(w);

    /* the rule allows its POST, body and all */
    w = open_tunnel("ro.example.com");
    feed(w, SIDE_CLIENT,
         "POST /repos/o/r/issues HTTP/1.1\r\nHost: ro.example.com\r\n"
         "Content-Length: 2\r\n\r\n{}");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /repos/o/r/issues HTTP/1.1\r\nHost: ro.example.com\r\n"
               "Content-Length: 2\r\n\r\n{}");
    world_close(w);
}

static void test_second_request_is_judged_on_its_own(void)
{
    struct world *w = open_tunnel("ro.example.com");

    feed(w, SIDE_CLIENT,
         "GET /first HTTP/1.1\r\nHost: ro.example.com\r\n\r\n"
         "DELETE /second HTTP/1.1\r\nHost: ro.example.com\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "GET /first HTTP/1.1\r\nHost: ro.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    resume_if_reusable(w);
    expect_refused(w, 403, "policy_denied");
    CHECK_STR(last_outcome(w)->method, "DELETE");
    world_close(w);
}

static void test_audit_mode_forwards_and_logs_audit(void)
{
    struct world *w = open_tunnel("audit.example.com");

    feed(w, SIDE_CLIENT, "DELETE /x HTTP/1.1\r\nHost: audit.example.com\r\n\r\n");
    CHECK_EQ(w->judges[0].verdict, POLICY_AUDIT);
    EXPECT_OUT(w, SIDE_UPSTREAM, "DELETE /x HTTP/1.1\r\nHost: audit.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 204 No Content\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 204 No Content\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    CHECK_EQ(last_log(w)->decision, LOG_DECISION_AUDIT);
    CHECK_EQ(last_log(w)->action, LOG_ACTION_AUDIT);
    world_close(w);
}

static void test_method_overrides_are_judged(void)
{
    static const char *const overridden[] = {
        "GET /x HTTP/1.1\r\nHost: ro.example.com\r\nX-HTTP-Method-Override: DELETE\r\n\r\n",
        "GET /x?_method=delete HTTP/1.1\r\nHost: ro.example.com\r\n\r\n",
        "GET /x HTTP/1.1\r\nHost: ro.example.com\r\nx-method-override: GET, PUT\r\n\r\n",
    };

    for (size_t i = 0; i < sizeof overridden / sizeof overridden[0]; i++) {
        struct world *w = open_tunnel("ro.example.com");

        feed(w, SIDE_CLIENT, overridden[i]);
        CHECK_EQ(w->njudges, 1);
        CHECK(w->judges[0].noverrides >= 1);
        expect_refused(w, 403, "policy_denied");
        world_close(w);
    }
    /* an override that is not a method is a bad request */
    struct world *w = open_tunnel("ro.example.com");
    feed(w, SIDE_CLIENT, "GET /x HTTP/1.1\r\nHost: ro.example.com\r\nX-HTTP-Method: a b\r\n\r\n");
    expect_refused(w, 400, "bad_request");
    world_close(w);
}

/* ---- credentials ------------------------------------------------------------------------- */

static void test_placeholder_is_substituted_upstream_and_never_logged(void)
{
    struct world *w = open_tunnel("api.example.com");

    w->with_creds = true;
    feed(w, SIDE_CLIENT,
         "GET /bot" PH "/send?key=" PH " HTTP/1.1\r\nHost: api.example.com\r\n"
         "X-Api-Key: " PH "\r\nAuthorization: Bearer " PH "\r\n\r\n");
    CHECK_EQ(w->njudges, 1);
    CHECK_STR(w->judges[0].path, "/bot[CREDENTIAL]/send");
    /* the secret goes up; the answer must come unencoded so that an echo can be redacted */
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /bot" SECRET "/send?key=" SECRET " HTTP/1.1\r\n"
               "Host: api.example.com\r\nX-Api-Key: " SECRET "\r\n"
               "Authorization: Bearer " SECRET "\r\n"
               "Accept-Encoding: identity\r\n\r\n");
    /* a redacted body may change length: it goes on chunked */
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    CHECK_STR(last_log(w)->path, "/bot[CREDENTIAL]/send");
    expect_clean_logs(w);
    world_close(w);
}

static void test_injected_header_replaces_the_clients(void)
{
    struct world *w = open_tunnel("inject.example.com");

    w->with_creds = true;
    feed(w, SIDE_CLIENT,
         "GET /i HTTP/1.1\r\nHost: inject.example.com\r\n"
         "Authorization: Bearer mine\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /i HTTP/1.1\r\nHost: inject.example.com\r\n"
               "Authorization: Bearer " SECRET "\r\n"
               "Accept-Encoding: identity\r\n\r\n");
    world_close(w);

    /* and a client may not drop it by naming it in Connection */
    w = open_tunnel("inject.example.com");
    w->with_creds = true;
    feed(w, SIDE_CLIENT,
         "GET /i HTTP/1.1\r\nHost: inject.example.com\r\n"
         "Connection: Authorization\r\n\r\n");
    expect_refused(w, 400, "bad_request");
    world_close(w);
}

static void test_placeholder_to_another_host_is_refused_403(void)
{
    struct world *w = open_tunnel("api.example.com");

    w->with_creds = true;
    feed(w, SIDE_CLIENT, "GET /x HTTP/1.1\r\nHost: api.example.com\r\nX-Key: " PH_ELSE "\r\n\r\n");
    expect_refused(w, 403, "credential_endpoint_mismatch");
    CHECK_EQ(w->logs[0].class_uid, LOG_CLASS_FINDING);
    expect_clean_logs(w);
    world_close(w);

    /* plain HTTP never carries a secret, even to the provider's own host */
    w = world_open();
    w->with_creds = true;
    feed(w, SIDE_CLIENT, "GET http://example.com/x?k=" PH " HTTP/1.1\r\nHost: example.com\r\n\r\n");
    if (last_outcome(w)->outcome == RELAY_DIAL)
        dialed(w);
    expect_refused(w, 403, "credential_endpoint_mismatch");
    expect_clean_logs(w);
    world_close(w);
}

static void test_echoed_secret_is_redacted(void)
{
    struct world *w = open_tunnel("api.example.com");
    struct ref_stream s;
    static const char body[] = "{\"echo\":\"" SECRET "\",\"hdr\":\"x\"}";
    char resp[256];
    int n;

    w->with_creds = true;
    feed(w, SIDE_CLIENT, "GET /e HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: " PH "\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "GET /e HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: " SECRET
               "\r\nAccept-Encoding: identity\r\n\r\n");
    n = snprintf(resp, sizeof resp,
                 "HTTP/1.1 200 OK " SECRET "\r\nX-Echo: " SECRET
                 "\r\nContent-Length: %zu\r\n\r\n%s",
                 sizeof body - 1, body);
    /* in two pieces, the secret cut in the middle */
    feedn(w, SIDE_UPSTREAM, resp, (size_t)n - 20);
    feedn(w, SIDE_UPSTREAM, resp + n - 20, 20);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    CHECK(memmem(w->out[SIDE_CLIENT].data, w->out[SIDE_CLIENT].len, SECRET, strlen(SECRET)) ==
          NULL);
    ref_parse_responses((const uint8_t *)w->out[SIDE_CLIENT].data, w->out[SIDE_CLIENT].len, NULL, 0,
                        &s);
    CHECK(s.error == NULL);
    CHECK_EQ(s.nmsgs, 1);
    if (s.nmsgs == 1) {
        static const char want[] = "{\"echo\":\"" PH "\",\"hdr\":\"x\"}";

        CHECK_EQ(s.msgs[0].status, 200);
        CHECK_STR(s.msgs[0].reason, "OK " PH);
        CHECK_STR(ref_field(&s.msgs[0], "x-echo"), PH);
        CHECK_EQ(s.msgs[0].body_len, sizeof want - 1);
        CHECK(s.msgs[0].body_len == sizeof want - 1 &&
              memcmp(s.msgs[0].body, want, sizeof want - 1) == 0);
    }
    ref_stream_free(&s);
    world_close(w);
}

/* FINDING (fuzz_relay, "the secret reached the client"): field names were written as received,
 * so an upstream that echoes the secret as a field name (in the head or a trailer) handed it to
 * the agent. Fails until relay redacts names too (or refuses such a response). */
static void test_finding_secret_echoed_in_a_field_name_is_redacted(void)
{
    struct world *w = open_tunnel("api.example.com");

    w->with_creds = true;
    feed(w, SIDE_CLIENT, "GET /n HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: " PH "\r\n\r\n");
    w->out[SIDE_UPSTREAM].len = 0;
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nX-" SECRET ": 1\r\nTransfer-Encoding: chunked\r\n"
         "\r\n2\r\nok\r\n0\r\nT-" SECRET ": 2\r\n\r\n");
    CHECK(w->out[SIDE_CLIENT].len > 0);
    CHECK(memmem(w->out[SIDE_CLIENT].data, w->out[SIDE_CLIENT].len, SECRET, strlen(SECRET)) ==
          NULL);
    world_close(w);
}

static void test_compressed_answer_to_a_secret_is_refused_502(void)
{
    struct world *w = open_tunnel("api.example.com");

    w->with_creds = true;
    feed(w, SIDE_CLIENT, "GET /z HTTP/1.1\r\nHost: api.example.com\r\nX-Api-Key: " PH "\r\n\r\n");
    w->out[SIDE_UPSTREAM].len = 0;
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nzz");
    expect_refused(w, 502, "unredactable_response");
    world_close(w);
}

/* ---- ends that are not the client's ------------------------------------------------------ */

static void test_early_response_consumes_the_connection(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "POST /big HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 10\r\n"
         "\r\nabc");
    EXPECT_OUT(w, SIDE_UPSTREAM,
               "POST /big HTTP/1.1\r\nHost: api.example.com\r\n"
               "Content-Length: 10\r\n\r\nabc");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    /* the rest of the body is never mistaken for a request, nor forwarded */
    CHECK_EQ(relay_feed(w->r, SIDE_CLIENT, "defghijGET / HTTP/1.1\r\n\r\n", 25), 25);
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    CHECK_EQ(w->late_writes, 0);
    world_close(w);
}

static void test_upstream_bytes_between_exchanges_consume(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT, "GET /g HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    w->out[SIDE_UPSTREAM].len = 0;
    feed(w, SIDE_UPSTREAM, ok_response);
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REUSABLE);
    resume_if_reusable(w);
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    world_close(w);

    /* the same bytes in the same read as the response */
    w = open_tunnel("api.example.com");
    feed(w, SIDE_CLIENT, "GET /g HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokNOT HTTP\r\n\r\n");
    EXPECT_OUT(w, SIDE_CLIENT, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    resume_if_reusable(w);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    world_close(w);

    /* and before any request at all */
    w = open_tunnel("api.example.com");
    feed(w, SIDE_UPSTREAM, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    world_close(w);
}

static void test_trailer_connection_close_ends_the_connection(void)
{
    struct world *w = open_tunnel("api.example.com");

    feed(w, SIDE_CLIENT,
         "GET /first HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
         "POST /second HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 0\r\n"
         "\r\n");
    w->out[SIDE_UPSTREAM].len = 0;
    feed(w, SIDE_UPSTREAM,
         "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         "2\r\nok\r\n0\r\nConnection: close\r\n\r\n");
    CHECK_EQ(last_outcome(w)->outcome, RELAY_CONSUMED);
    EXPECT_OUT(w, SIDE_CLIENT,
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"
               "0\r\n\r\n");
    EXPECT_OUT(w, SIDE_UPSTREAM, "");
    world_close(w);
}

static void test_response_with_too_many_fields_is_refused_502(void)
{
    struct world *w = open_tunnel("api.example.com");
    struct http_buf resp = {0};

    feed(w, SIDE_CLIENT, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    http_buf_puts(&resp, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 101; i++)
        http_buf_printf(&resp, "X-%d: v\r\n", i);
    http_buf_puts(&resp, "Content-Length: 0\r\n\r\n");
    feedn(w, SIDE_UPSTREAM, resp.data, resp.len);
    http_buf_free(&resp);
    CHECK_EQ(last_outcome(w)->outcome, RELAY_REFUSED);
    CHECK_EQ(last_outcome(w)->status, 502);
    EXPECT_OUT(w, SIDE_CLIENT, "");
    world_close(w);
}

static void test_request_limits(void)
{
    struct world *w = open_tunnel("api.example.com");
    struct http_buf req = {0};

    http_buf_puts(&req, "GET /x HTTP/1.1\r\nHost: api.example.com\r\n");
    for (int i = 0; i < 100; i++)
        http_buf_printf(&req, "X-%d: v\r\n", i);
    http_buf_puts(&req, "\r\n");
    feedn(w, SIDE_CLIENT, req.data, req.len);
    http_buf_free(&req);
    expect_refused(w, 431, "header_too_large");
    world_close(w);

    w = open_tunnel("api.example.com");
    http_buf_puts(&req, "GET /");
    for (int i = 0; i < HTTP_TARGET_MAX; i++)
        http_buf_puts(&req, "a");
    http_buf_puts(&req, " HTTP/1.1\r\nHost: api.example.com\r\n\r\n");
    feedn(w, SIDE_CLIENT, req.data, req.len);
    http_buf_free(&req);
    expect_refused(w, 414, "uri_too_long");
    world_close(w);
}

int main(void)
{
    char *json;
    char *errors = NULL;

    json = dq(policy_json);
    the_policy = policy_parse(json, strlen(json), &errors);
    if (!the_policy)
        fprintf(stderr, "policy: %s", errors ? errors : "?\n");
    free(errors);
    free(json);
    errors = NULL;
    setenv(SECRET_ENV, SECRET, 1);
    json = dq(creds_json);
    the_creds = creds_parse(json, strlen(json), &errors);
    if (!the_creds)
        fprintf(stderr, "providers: %s", errors ? errors : "?\n");
    free(errors);
    free(json);
    if (!the_policy || !the_creds)
        return 1;

    RUN(test_connect_opens_a_tunnel);
    RUN(test_first_request_must_be_connect_or_absolute);
    RUN(test_forward_dials_then_redials_for_another_origin);
    RUN(test_forward_request_body_waits_for_the_dial);
    RUN(test_forward_origin_is_named_before_any_judgement);
    RUN(test_plain_tunnel_judges_and_never_substitutes);
    RUN(test_plain_tunnel_redacts_a_stored_secret);
    RUN(test_keep_alive_exchanges_are_reusable);
    RUN(test_pipelined_request_waits_for_the_exchange);
    RUN(test_interim_responses_pass_then_the_final_one);
    RUN(test_head_204_304_have_no_body);
    RUN(test_chunked_bodies_are_reframed_with_their_trailers);
    RUN(test_framing_fields_in_trailers);
    RUN(test_other_transfer_codings_are_kept);
    RUN(test_read_until_close_response_is_consumed);
    RUN(test_upstream_cut_mid_body_is_truncated);
    RUN(test_upstream_close_before_any_response_is_refused_502);
    RUN(test_http10_client_gets_a_close_delimited_body);
    RUN(test_finding_transfer_coded_body_to_an_http10_client_is_refused);
    RUN(test_draining_makes_the_exchange_the_last);
    RUN(test_describe_names_the_request_in_progress);
    RUN(test_free_mid_exchange_logs_consumed);
    RUN(test_valid_websocket_upgrade);
    RUN(test_websocket_upgrade_with_content_length_0_goes_without_it);
    RUN(test_unsolicited_101_is_refused_502);
    RUN(test_101_with_a_wrong_accept_is_refused_502);
    RUN(test_refused_upgrade_keeps_http);
    RUN(test_half_a_websocket_handshake_is_refused_400);
    RUN(test_other_upgrades_are_dropped);
    RUN(test_framing_and_routing_fields_are_airlocks);
    RUN(test_connection_may_not_name_framing_fields);
    RUN(test_response_naming_content_length_is_refused_502);
    RUN(test_malformed_framing_is_refused_400);
    RUN(test_bad_chunk_size_stops_the_body);
    RUN(test_authority_mismatch_is_refused_421);
    RUN(test_absolute_form_naming_the_tunnel_is_relayed);
    RUN(test_upstream_gets_the_canonical_path_that_was_judged);
    RUN(test_paths_that_climb_or_hide_are_refused_400);
    RUN(test_l7_deny_is_refused_403_with_rule_missing);
    RUN(test_second_request_is_judged_on_its_own);
    RUN(test_audit_mode_forwards_and_logs_audit);
    RUN(test_method_overrides_are_judged);
    RUN(test_placeholder_is_substituted_upstream_and_never_logged);
    RUN(test_injected_header_replaces_the_clients);
    RUN(test_placeholder_to_another_host_is_refused_403);
    RUN(test_echoed_secret_is_redacted);
    RUN(test_compressed_answer_to_a_secret_is_refused_502);
    RUN(test_finding_secret_echoed_in_a_field_name_is_redacted);
    RUN(test_early_response_consumes_the_connection);
    RUN(test_upstream_bytes_between_exchanges_consume);
    RUN(test_trailer_connection_close_ends_the_connection);
    RUN(test_response_with_too_many_fields_is_refused_502);
    RUN(test_request_limits);

    creds_unref(the_creds);
    policy_unref(the_policy);
    return test_report();
}
