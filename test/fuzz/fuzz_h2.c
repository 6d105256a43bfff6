/* SPDX-License-Identifier: MIT */
/* libFuzzer target for h2: whole HTTP/2 tunnels driven in memory, a hostile client on one side
 * and a hostile upstream on the other, with the real policy and credential providers behind
 * every stream's relay. It looks for crashes, leaks and undefined behaviour, and checks:
 * nothing is written or logged after io.done, a stream is judged only for the tunnel's host,
 * and no log line carries the secret or the placeholder's secret.
 *
 * Input: byte 0 the mode (bit 0 the tunnel goes to ro.example.com, read-only with a deny rule,
 * else api.example.com, full; bit 1 providers on), then records until the input ends: a byte
 * [bit 7 the side: clear client, set upstream; bits 0-1 the event: 0 bytes, 1 the side's EOF,
 * 2 the connection's timeout, 3 a graceful shutdown], then for bytes a length (2 bytes, big
 * endian) and that many bytes. The client's connection preface and an empty SETTINGS come
 * before its first bytes, and an empty SETTINGS before the upstream's, so that inputs need not
 * spell them. Nothing is fed to a side after its EOF. */
#include "airlock/h2.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airlock/creds.h"
#include "airlock/logfmt.h"
#include "airlock/policy.h"

#define SECRET     "s3cretTOKENvalue42"
#define SECRET_ENV "AIRLOCK_FUZZ_H2_SECRET"
#define PH         "AIRLOCK_PLACEHOLDER_API_000001"

static const char policy_json[] =
    "{'version': 1, 'network_policies': {"
    " 'api': {'endpoints': [{'host': 'api.example.com', 'port': 443, 'access': 'full'}]},"
    " 'ro': {'endpoints': [{'host': 'ro.example.com', 'port': 443, 'access': 'read-only',"
    "  'rules': [{'method': 'POST', 'path': '/repos/*/*/issues'}],"
    "  'deny_rules': [{'method': '*', 'path': '/admin/**'}]}]}}}";

static const char creds_json[] =
    "{'version': 1, 'providers': {"
    " 'api': {'placeholder': '" PH "', 'secret': {'env': '" SECRET_ENV "'},"
    "  'endpoints': [{'host': 'api.example.com', 'port': 443}]}}}";

static struct policy *the_policy;
static struct creds *the_creds;

struct run {
    struct authority target;
    bool creds_on;
    bool done;
    size_t written[2];
};

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void violation(const char *fmt, ...)
{
    va_list ap;

    fputs("fuzz_h2: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            violation(__VA_ARGS__);                                                                \
    } while (0)

static char *dq(const char *s)
{
    char *d = strdup(s);

    for (char *c = d; c && *c; c++)
        if (*c == '\'')
            *c = '"';
    return d;
}

static void load_once(void)
{
    char *json, *errors = NULL;

    if (the_policy)
        return;
    setenv(SECRET_ENV, SECRET, 1);
    json = dq(policy_json);
    the_policy = policy_parse(json, strlen(json), &errors);
    REQUIRE(the_policy, "policy: %s", errors ? errors : "?");
    free(json);
    json = dq(creds_json);
    the_creds = creds_parse(json, strlen(json), &errors);
    REQUIRE(the_creds, "providers: %s", errors ? errors : "?");
    free(json);
}

static void check_text(const char *what, const char *s)
{
    REQUIRE(!s || !strstr(s, SECRET), "the secret in a log event's %s", what);
}

static int io_write(void *ctx, enum side_id to, const char *p, size_t len)
{
    struct run *r = ctx;

    REQUIRE(!r->done, "frames written after io.done");
    REQUIRE(p && len > 0, "an empty write");
    r->written[to] += len;
    return 0;
}

static void io_log(void *ctx, struct log_event *ev)
{
    check_text("reason", ev->reason);
    check_text("method", ev->method);
    check_text("path", ev->path);
    check_text("destination", ev->dst_host);
}

static void io_judge(void *ctx, const struct authority *target, const struct policy_request *q,
                     struct policy_l7 *d)
{
    static const struct policy_peer anyone = {.binary_identity_off = true};
    struct run *r = ctx;

    REQUIRE(!r->done, "a stream judged after io.done");
    REQUIRE(!strcmp(target->host, r->target.host) && target->port == r->target.port,
            "a stream judged for %s:%u in a tunnel to %s:%u", target->host, (unsigned)target->port,
            r->target.host, (unsigned)r->target.port);
    policy_check_l7(the_policy, target->host, target->port, &anyone, NULL, q, d);
}

static struct creds *io_creds(void *ctx)
{
    struct run *r = ctx;

    if (!r->creds_on)
        return NULL;
    creds_ref(the_creds);
    return the_creds;
}

static void io_describe(void *ctx, struct answer *a)
{
    struct run *r = ctx;

    a->host = r->target.host;
    a->port = r->target.port;
    a->policy = "fuzz";
}

static void io_done(void *ctx, const char *why, bool error)
{
    struct run *r = ctx;

    REQUIRE(!r->done, "io.done twice");
    REQUIRE(why, "io.done without a reason");
    r->done = true;
}

static const struct h2_io fuzz_io = {io_write, io_log, io_judge, io_creds, io_describe, io_done};

static const char client_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                     "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
static const char empty_settings[] = "\x00\x00\x00\x04\x00\x00\x00\x00\x00";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    load_once();
    struct run r = {.creds_on = data[0] & 2};
    snprintf(r.target.host, sizeof r.target.host, "%s",
             data[0] & 1 ? "ro.example.com" : "api.example.com");
    r.target.port = 443;
    struct h2_setup setup = {.id = 1, .target = r.target};
    struct h2 *h = h2_new(&setup, &fuzz_io, &r);
    if (!h)
        return 0;
    h2_flush(h);
    bool started[2] = {false, false}, eof[2] = {false, false};
    size_t i = 1;
    while (i < size && !r.done) {
        uint8_t op = data[i++];
        enum side_id side = op & 0x80 ? SIDE_UPSTREAM : SIDE_CLIENT;
        switch (op & 3) {
        case 0: {
            if (size - i < 2)
                goto out;
            size_t len = (size_t)data[i] << 8 | data[i + 1];
            i += 2;
            if (len > size - i)
                len = size - i;
            if (!started[side]) {
                started[side] = true;
                if (side == SIDE_CLIENT)
                    h2_feed(h, side, client_preface, sizeof client_preface - 1);
                else
                    h2_feed(h, side, empty_settings, sizeof empty_settings - 1);
            }
            if (!r.done && !eof[side]) /* nothing comes after a side's EOF */
                h2_feed(h, side, (const char *)data + i, len);
            i += len;
            break;
        }
        case 1:
            if (!eof[side])
                h2_eof(h, side);
            eof[side] = true;
            break;
        case 2:
            h2_timeout(h);
            break;
        default:
            h2_shutdown(h, "fuzz: shutdown");
            break;
        }
    }
out:
    h2_free(h);
    return 0;
}
