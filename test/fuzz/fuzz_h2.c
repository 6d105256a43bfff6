/* SPDX-License-Identifier: MIT */
/* libFuzzer target for h2: whole HTTP/2 connections driven in memory, the fuzzer speaking for
 * both the client and the upstream. Both start past their preface (a client preface, SETTINGS
 * and an ACK of airlock's; the upstream's SETTINGS and ACK), so that the input reaches the
 * frames. The judge allows every request except those under /deny. What h2 writes upstream is
 * read back with an HPACK decoder of its own (nghttp2's inflater, apart from h2's sessions):
 *   (a) every request that goes upstream was judged allowed, with the same method and the
 *       canonical path it was judged by (its query aside), :scheme https and an :authority
 *       that names the tunnel's target; nothing under /deny ever goes;
 *   (b) h2 takes every byte, calls io.done at most once and writes nothing after it;
 *   (c) no log line carries the secret unless the client sent it itself.
 * A violation aborts with a message; ASan and UBSan do the rest. FUZZ_H2_VERBOSE=1 in the
 * environment prints judgements, requests upstream, log lines and the end (to check seeds).
 *
 * Input: [0] mode bits, then chunks fed alternately to the client's side and the upstream's,
 * the client's first: each chunk is one length byte (0..255) and that many bytes (a chunk of
 * 0 lets the other side send twice in a row; frames may straddle chunks).
 *   mode bit 0: the credential providers are on (api.example.com holds a placeholder)
 *            1: h2_shutdown halfway through the chunks
 *            2: h2_timeout halfway through
 *            3: the upstream's writes fail from halfway on (the transport is closing)
 *            4: h2_eof from the upstream at the end
 *            5: h2_eof from the client at the end */
#include "airlock/h2.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "airlock/creds.h"
#include "airlock/log.h"
#include "airlock/target.h"

#define TARGET_HOST "api.example.com"
#define SECRET      "s3cretTOKENvalue42"
#define SECRET_ENV  "AIRLOCK_FUZZ_H2_SECRET"
#define PH          "AIRLOCK_PLACEHOLDER_API_000001"
#define MAGIC       "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MAX_JUDGED  512

enum {
    MODE_CREDS = 1 << 0,
    MODE_SHUTDOWN = 1 << 1,
    MODE_TIMEOUT = 1 << 2,
    MODE_WRITE_FAILS = 1 << 3,
    MODE_UPSTREAM_EOF = 1 << 4,
    MODE_CLIENT_EOF = 1 << 5,
};

static const char creds_json[] =
    "{\"version\": 1, \"providers\": {"
    " \"api\": {\"placeholder\": \"" PH "\", \"secret\": {\"env\": \"" SECRET_ENV "\"},"
    "  \"endpoints\": [{\"host\": \"" TARGET_HOST "\", \"port\": 443}]}}}";

static struct creds *the_creds;
static bool verbose; /* FUZZ_H2_VERBOSE set: say what each input did, to check seeds */

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

static bool contains(const void *p, size_t len, const char *s)
{
    return len && memmem(p, len, s, strlen(s)) != NULL;
}

/* ---- reading frames back ----------------------------------------------------------------- */

/* One direction's frames as a peer would read them: the header blocks decoded with an HPACK
 * table of its own. */
struct reader {
    struct http_buf buf;   /* bytes of a frame not yet whole */
    size_t skip;           /* bytes of the client magic still to pass over */
    struct http_buf block; /* a header block across HEADERS and CONTINUATION */
    int32_t block_id;
    bool in_block;
    nghttp2_hd_inflater *inf;
    bool broken;     /* the bytes could not be followed: stop reading */
    int32_t highest; /* the highest stream a HEADERS frame opened */
    /* each field of a decoded header block (valid for the call), then its end; opened says
     * the block opened a new stream */
    void (*on_field)(void *ctx, int32_t id, bool opened, const nghttp2_nv *nv);
    void (*on_end)(void *ctx, int32_t id, bool opened);
    void *ctx;
};

static void reader_init(struct reader *rd, bool magic,
                        void (*on_field)(void *, int32_t, bool, const nghttp2_nv *),
                        void (*on_end)(void *, int32_t, bool), void *ctx)
{
    memset(rd, 0, sizeof *rd);
    rd->skip = magic ? sizeof MAGIC - 1 : 0;
    rd->on_field = on_field;
    rd->on_end = on_end;
    rd->ctx = ctx;
    if (nghttp2_hd_inflate_new(&rd->inf) != 0)
        rd->broken = true;
}

static void reader_deinit(struct reader *rd)
{
    nghttp2_hd_inflate_del(rd->inf);
    http_buf_free(&rd->buf);
    http_buf_free(&rd->block);
}

/* Decode a whole header block (RFC 7541): false when it does not decode. */
static bool decode_block(struct reader *rd, int32_t id, bool opened)
{
    const uint8_t *in = (const uint8_t *)rd->block.data;
    size_t left = rd->block.len;

    for (;;) {
        nghttp2_nv one;
        int flags = 0;
        ssize_t used = nghttp2_hd_inflate_hd2(rd->inf, &one, &flags, in, left, 1);

        if (used < 0)
            return false;
        in += used;
        left -= (size_t)used;
        /* a field is valid until the next call: handed over at once */
        if ((flags & NGHTTP2_HD_INFLATE_EMIT) && rd->on_field)
            rd->on_field(rd->ctx, id, opened, &one);
        if (flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(rd->inf);
            if (rd->on_end)
                rd->on_end(rd->ctx, id, opened);
            return true;
        }
        if (used == 0 && left == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT))
            return false;
    }
}

static void reader_frame(struct reader *rd, const uint8_t *f, size_t len)
{
    uint8_t type = f[3], flags = f[4];
    int32_t id = (int32_t)(((uint32_t)f[5] & 0x7f) << 24 | (uint32_t)f[6] << 16 |
                           (uint32_t)f[7] << 8 | f[8]);
    const uint8_t *p = f + 9;
    size_t plen = len;

    if (rd->in_block && (type != NGHTTP2_CONTINUATION || id != rd->block_id)) {
        rd->broken = true; /* RFC 9113 §6.10: nothing may come between */
        return;
    }
    if (type == NGHTTP2_HEADERS) {
        if (flags & NGHTTP2_FLAG_PADDED) {
            if (plen < 1 || p[0] >= plen) {
                rd->broken = true;
                return;
            }
            plen -= 1 + p[0];
            p++;
        }
        if (flags & NGHTTP2_FLAG_PRIORITY) {
            if (plen < 5) {
                rd->broken = true;
                return;
            }
            p += 5;
            plen -= 5;
        }
        rd->block.len = 0;
        rd->block_id = id;
        rd->in_block = true;
    } else if (type == NGHTTP2_PUSH_PROMISE) {
        rd->broken = true; /* never sent by h2, and a session error when received */
        return;
    } else if (type != NGHTTP2_CONTINUATION) {
        return;
    } else if (!rd->in_block) {
        rd->broken = true;
        return;
    }
    http_buf_append(&rd->block, (const char *)p, plen);
    if (!(flags & NGHTTP2_FLAG_END_HEADERS))
        return;
    rd->in_block = false;
    bool opened = rd->block_id > rd->highest;
    if (opened)
        rd->highest = rd->block_id;
    if (!decode_block(rd, rd->block_id, opened))
        rd->broken = true;
}

static void reader_feed(struct reader *rd, const void *data, size_t len)
{
    const uint8_t *p = data;

    if (rd->broken)
        return;
    if (rd->skip) {
        size_t n = len < rd->skip ? len : rd->skip;

        rd->skip -= n;
        p += n;
        len -= n;
    }
    http_buf_append(&rd->buf, (const char *)p, len);
    size_t off = 0;
    while (!rd->broken && rd->buf.len - off >= 9) {
        const uint8_t *f = (const uint8_t *)rd->buf.data + off;
        size_t flen = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];

        if (rd->buf.len - off < 9 + flen)
            break;
        reader_frame(rd, f, flen);
        off += 9 + flen;
    }
    memmove(rd->buf.data, rd->buf.data + off, rd->buf.len - off);
    rd->buf.len -= off;
}

/* ---- one run ----------------------------------------------------------------------------- */

struct judged {
    char method[32];
    char *path;
    bool used;
};

struct run {
    struct h2 *h;
    uint8_t mode;
    struct authority target;
    unsigned done_calls;
    bool write_fails;
    bool secret_in_client; /* the client sent the secret itself (raw or in a header) */
    struct reader client_in, upstream_out;
    struct judged judged[MAX_JUDGED];
    size_t njudged;
    /* the pseudo-headers of the request being read back */
    char *method, *path, *authority, *scheme;
    bool twice;
};

/* The path that went upstream is the one judged: a placeholder was judged as CREDS_REDACTED
 * and goes as the secret; anything else, the client's own "[CREDENTIAL]" or secret included,
 * goes as it was judged. */
static bool path_sent_as_judged(const char *judged, const char *sent, size_t len)
{
    size_t rlen = strlen(CREDS_REDACTED), slen = strlen(SECRET);

    while (*judged || len) {
        if (!strncmp(judged, CREDS_REDACTED, rlen) && len >= slen && !memcmp(sent, SECRET, slen)) {
            judged += rlen;
            sent += slen;
            len -= slen;
            continue;
        }
        if (!*judged || !len || *judged != *sent)
            return false;
        judged++;
        sent++;
        len--;
    }
    return true;
}

static bool nv_is(const nghttp2_nv *nv, const char *name)
{
    return nv->namelen == strlen(name) && !memcmp(nv->name, name, nv->namelen);
}

static char *nv_value(const nghttp2_nv *nv)
{
    char *s = malloc(nv->valuelen + 1);

    REQUIRE(s, "out of memory");
    memcpy(s, nv->value, nv->valuelen);
    s[nv->valuelen] = '\0';
    return s;
}

/* The client's header fields: only whether they carry the secret. */
static void on_client_field(void *ctx, int32_t id, bool opened, const nghttp2_nv *nv)
{
    struct run *r = ctx;

    if (contains(nv->name, nv->namelen, SECRET) || contains(nv->value, nv->valuelen, SECRET))
        r->secret_in_client = true;
}

static void on_upstream_field(void *ctx, int32_t id, bool opened, const nghttp2_nv *nv)
{
    struct run *r = ctx;
    char **slot = nv_is(nv, ":method")      ? &r->method
                  : nv_is(nv, ":path")      ? &r->path
                  : nv_is(nv, ":authority") ? &r->authority
                  : nv_is(nv, ":scheme")    ? &r->scheme
                                            : NULL;

    if (!opened || !slot)
        return;
    r->twice |= *slot != NULL;
    free(*slot);
    *slot = nv_value(nv);
}

static void request_forget(struct run *r)
{
    free(r->method);
    free(r->path);
    free(r->authority);
    free(r->scheme);
    r->method = r->path = r->authority = r->scheme = NULL;
    r->twice = false;
}

/* A request h2 sent upstream: (a). */
static void on_upstream_end(void *ctx, int32_t id, bool opened)
{
    struct run *r = ctx;
    const char *method = r->method, *path = r->path, *authority = r->authority;

    if (!opened)
        return; /* trailers */
    REQUIRE(!r->twice, "stream %d went upstream with a pseudo-header twice", id);
    REQUIRE(method && path && r->scheme,
            "stream %d went upstream without :method, :path or :scheme", id);
    REQUIRE(!strcmp(r->scheme, "https"), "stream %d went upstream with :scheme %s", id, r->scheme);
    struct authority a;
    REQUIRE(authority &&
                target_parse_authority(authority, strlen(authority), false, 443, &a) == 0 &&
                !strcmp(a.host, r->target.host) && a.port == r->target.port,
            "stream %d went upstream for :authority %s", id, authority ? authority : "(none)");
    size_t plen = strcspn(path, "?");
    size_t k;
    for (k = 0; k < r->njudged; k++) {
        struct judged *j = &r->judged[k];

        if (!j->used && !strcmp(j->method, method) && path_sent_as_judged(j->path, path, plen)) {
            j->used = true;
            break;
        }
    }
    REQUIRE(k < r->njudged || r->njudged == MAX_JUDGED,
            "stream %d went upstream as %s %s, which no judgement allowed", id, method, path);
    REQUIRE(strncmp(path, "/deny", 5), "stream %d went upstream to %s", id, path);
    if (verbose)
        fprintf(stderr, "fuzz_h2: upstream stream %d: %s %s\n", id, method, path);
    request_forget(r);
}

static int io_write(void *ctx, enum side_id to, const char *p, size_t len)
{
    struct run *r = ctx;

    REQUIRE(!r->done_calls, "h2 wrote %zu bytes to the %s after io.done", len,
            to == SIDE_CLIENT ? "client" : "upstream");
    if (to == SIDE_UPSTREAM) {
        if (r->write_fails) {
            r->upstream_out.broken = true; /* those bytes never arrive: stop reading */
            return -1;
        }
        reader_feed(&r->upstream_out, p, len);
        REQUIRE(!r->upstream_out.broken, "h2 wrote frames upstream that do not parse");
    }
    return 0;
}

static void io_log(void *ctx, struct log_event *ev)
{
    struct run *r = ctx;
    const char *strs[] = {ev->method, ev->path, ev->reason};

    if (verbose)
        fprintf(stderr, "fuzz_h2: log: stream %u status %d %s %s: %s\n", ev->stream_id, ev->status,
                ev->method ? ev->method : "-", ev->path ? ev->path : "-",
                ev->reason ? ev->reason : "-");
    for (size_t i = 0; i < 3; i++)
        REQUIRE(r->secret_in_client || !strs[i] || !strstr(strs[i], SECRET),
                "the secret in a log line: %s", strs[i]);
}

/* The judgement's strings are static: no policy snapshot to hold. */
static struct policy *io_judge(void *ctx, const struct authority *target,
                               const struct policy_request *q, struct policy_l7 *d)
{
    struct run *r = ctx;

    REQUIRE(!strcmp(target->host, r->target.host) && target->port == r->target.port,
            "judged for %s:%u", target->host, target->port);
    memset(d, 0, sizeof *d);
    d->policy_name = "fuzz";
    if (verbose)
        fprintf(stderr, "fuzz_h2: judged %s %s\n", q->method, q->path);
    if (!strncmp(q->path, "/deny", 5)) {
        d->verdict = POLICY_DENY;
        d->reason = "no rule allows method and path";
        return NULL;
    }
    d->verdict = POLICY_ALLOW;
    if (r->njudged < MAX_JUDGED) {
        struct judged *j = &r->judged[r->njudged++];

        snprintf(j->method, sizeof j->method, "%s", q->method);
        j->path = strdup(q->path);
        REQUIRE(j->path, "out of memory");
    }
    return NULL;
}

static struct creds *io_creds(void *ctx)
{
    struct run *r = ctx;

    if (!(r->mode & MODE_CREDS))
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

    REQUIRE(why, "io.done without a reason");
    REQUIRE(!r->done_calls, "io.done twice (%s)", why);
    r->done_calls++;
    if (verbose)
        fprintf(stderr, "fuzz_h2: done (%s)%s\n", why, error ? ", an error" : "");
}

static const struct h2_io fuzz_io = {.write = io_write,
                                     .log = io_log,
                                     .judge = io_judge,
                                     .creds = io_creds,
                                     .describe = io_describe,
                                     .done = io_done};

/* Bytes from a side, as the transport hands them over: nothing once h2 said done. */
static void feed(struct run *r, enum side_id from, const uint8_t *p, size_t len)
{
    if (r->done_calls)
        return;
    if (from == SIDE_CLIENT) {
        r->secret_in_client |= contains(p, len, SECRET);
        reader_feed(&r->client_in, p, len);
        if (r->client_in.broken)
            r->secret_in_client = true; /* it may hide there: no more claims about logs */
    }
    /* a private copy, so that ASan sees a read past what h2 was given */
    uint8_t *copy = malloc(len ? len : 1);
    REQUIRE(copy, "out of memory");
    memcpy(copy, p, len);
    size_t took = h2_feed(r->h, from, (const char *)copy, len);
    free(copy);
    REQUIRE(took == len, "h2_feed took %zu of %zu bytes", took, len);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *errors = NULL;

    /* diagnostics would cost a write per execution */
    verbose = getenv("FUZZ_H2_VERBOSE") != NULL;
    if (!verbose)
        log_open("/dev/null", LOG_TEXT, LOG_ERROR);
    setenv(SECRET_ENV, SECRET, 1);
    the_creds = creds_parse(creds_json, strlen(creds_json), &errors);
    REQUIRE(the_creds, "providers: %s", errors ? errors : "?");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    static const uint8_t settings[] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
    static const uint8_t settings_ack[] = {0, 0, 0, NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, 0, 0, 0};
    struct run *r;
    size_t nchunks = 0;

    if (size < 1)
        return 0;
    r = calloc(1, sizeof *r);
    REQUIRE(r, "out of memory");
    r->mode = in[0];
    REQUIRE(target_parse_authority(TARGET_HOST ":443", sizeof TARGET_HOST + 3, true, 0,
                                   &r->target) == 0,
            "target");
    reader_init(&r->client_in, true, on_client_field, NULL, r);
    reader_init(&r->upstream_out, true, on_upstream_field, on_upstream_end, r);
    struct h2_setup setup = {.id = 1, .limits = &http_default_limits, .target = r->target};
    r->h = h2_new(&setup, &fuzz_io, r);
    REQUIRE(r->h, "h2_new");
    h2_flush(r->h);

    /* both past their preface, airlock's SETTINGS acknowledged */
    feed(r, SIDE_CLIENT, (const uint8_t *)MAGIC, sizeof MAGIC - 1);
    feed(r, SIDE_CLIENT, settings, sizeof settings);
    feed(r, SIDE_CLIENT, settings_ack, sizeof settings_ack);
    feed(r, SIDE_UPSTREAM, settings, sizeof settings);
    feed(r, SIDE_UPSTREAM, settings_ack, sizeof settings_ack);

    for (size_t off = 1; off < size; off += 1 + in[off])
        nchunks++;
    size_t i = 0;
    enum side_id side = SIDE_CLIENT;
    for (size_t off = 1; off < size && !r->done_calls; off += 1 + in[off], i++) {
        size_t len = in[off];

        if (len > size - off - 1)
            len = size - off - 1;
        if (i == nchunks / 2) {
            if (r->mode & MODE_SHUTDOWN)
                h2_shutdown(r->h, "fuzz: draining");
            if (r->mode & MODE_TIMEOUT)
                h2_timeout(r->h);
            if (r->mode & MODE_WRITE_FAILS)
                r->write_fails = true;
        }
        if (len)
            feed(r, side, in + off + 1, len);
        side = side == SIDE_CLIENT ? SIDE_UPSTREAM : SIDE_CLIENT;
    }
    if ((r->mode & MODE_UPSTREAM_EOF) && !r->done_calls)
        h2_eof(r->h, SIDE_UPSTREAM);
    if ((r->mode & MODE_CLIENT_EOF) && !r->done_calls)
        h2_eof(r->h, SIDE_CLIENT);
    (void)h2_open_streams(r->h);
    h2_free(r->h);

    reader_deinit(&r->client_in);
    reader_deinit(&r->upstream_out);
    for (size_t k = 0; k < r->njudged; k++)
        free(r->judged[k].path);
    request_forget(r);
    free(r);
    return 0;
}
