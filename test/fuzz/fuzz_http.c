/* SPDX-License-Identifier: MIT */
/* libFuzzer target for http: the input drives a request parser and, separately, a response
 * parser. Byte 0 picks a split point, byte 1 picks callback behaviour (pauses, HEAD responses,
 * resuming after a refused upgrade, byte-at-a-time feeding), the rest is the wire. Each kind is
 * parsed twice, whole and split, and both runs must produce the same event digest: streaming
 * must never change what a message means. Invariants are checked with __builtin_trap(). */
#include "airlock/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* Mode bits, from input byte 1 ('@'..'_' are printable and set bits 0..4 in any mix). */
enum {
    MODE_PAUSE_HEAD = 1 << 0,     /* on_head answers HTTP_HEAD_PAUSE */
    MODE_PAUSE_BODY = 1 << 1,     /* on_body answers HTTP_PAUSE_BODY */
    MODE_PAUSE_COMPLETE = 1 << 2, /* on_complete answers HTTP_PAUSE_BODY */
    MODE_NO_BODY = 1 << 3,        /* a response parser treats every message as answering HEAD */
    MODE_REFUSE_UPGRADE = 1 << 4, /* after a request's upgrade, go on parsing HTTP (relay.c) */
    MODE_BYTEWISE = 1 << 5,       /* the second piece of the split run goes in one byte a time */
};

/* FNV-1a over everything the owner learns; body bytes are hashed without span boundaries so
 * that any split gives the same digest. */
struct digest {
    uint64_t h;
};

static void dg_bytes(struct digest *d, const void *p, size_t len)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < len; i++) {
        d->h ^= b[i];
        d->h *= 0x100000001b3ULL;
    }
}

static void dg_u64(struct digest *d, uint64_t v)
{
    dg_bytes(d, &v, sizeof(v));
}

static void dg_str(struct digest *d, const char *s, size_t len)
{
    dg_u64(d, len);
    dg_bytes(d, s, len);
}

struct run {
    struct http_parser parser;
    enum http_kind kind;
    unsigned mode;
    struct digest dg;
    /* the bytes of the execute call in progress: every body span must lie inside them */
    const char *cur_lo, *cur_hi;
    /* the message in progress */
    bool have_head, no_body, cl_framed, upgrade, is_connect;
    uint64_t content_length, body_bytes;
    size_t heads, completes;
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_fields(struct run *r, const struct http_head *h)
{
    CHECK(h->nfields <= HTTP_FIELDS_DEFAULT);
    CHECK(h->nfields == 0 || h->fields != NULL);
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];

        CHECK(f->name && f->value);
        CHECK(f->name_len > 0 && strlen(f->name) == f->name_len);
        CHECK(strlen(f->value) == f->value_len);
        /* RFC 9110 §5.5: OWS around a value is not part of it */
        CHECK(f->value_len == 0 || (!is_ows(f->value[0]) && !is_ows(f->value[f->value_len - 1])));
        /* a field is always found under its own name */
        CHECK(http_head_find(h, f->name) != NULL);
        CHECK(http_head_count(h, f->name) >= 1);
        dg_str(&r->dg, f->name, f->name_len);
        dg_str(&r->dg, f->value, f->value_len);
        dg_u64(&r->dg, http_field_is_hop_by_hop(h, f));
    }
    dg_u64(&r->dg, http_head_has_token(h, "connection", "close"));
    dg_u64(&r->dg, http_head_has_token(h, "transfer-encoding", "chunked"));
}

/* A head that reaches its owner never lets Connection drop its framing or authority (a trailer
 * section may say anything: the relay forwards none of these fields from it). */
static void check_nominations(const struct http_head *h)
{
    CHECK(!http_head_has_token(h, "connection", "content-length"));
    CHECK(!http_head_has_token(h, "connection", "transfer-encoding"));
    CHECK(!http_head_has_token(h, "connection", "host"));
}

/* The transfer codings a relay forwards: tokens, lower case, ", " between them, chunked at most
 * once and last, and exactly when the parser frames the body as chunked. */
static void check_codings(struct run *r, const struct http_head *h)
{
    const char *tc = h->transfer_codings;
    size_t chunked = 0, elements = 0;
    bool last_chunked = false;

    if (!tc) {
        CHECK(!h->chunked);
        dg_u64(&r->dg, 0);
        return;
    }
    for (const char *p = tc; *p;) {
        const char *end = strstr(p, ", ");
        size_t len = end ? (size_t)(end - p) : strlen(p);

        CHECK(len > 0);
        for (size_t i = 0; i < len; i++)
            CHECK(p[i] > ' ' && p[i] < 0x7f && p[i] != ',' && p[i] != ';' &&
                  !(p[i] >= 'A' && p[i] <= 'Z'));
        last_chunked = len == 7 && memcmp(p, "chunked", 7) == 0;
        chunked += last_chunked;
        elements++;
        p += len + (end ? 2 : 0);
    }
    CHECK(h->chunked == last_chunked);
    CHECK(chunked == (last_chunked ? 1u : 0u));
    dg_u64(&r->dg, elements);
    dg_str(&r->dg, tc, strlen(tc));
}

/* Rebuild the head as the relay would, to run the buffer helpers on parsed text. */
static void rebuild(const struct http_head *h)
{
    struct http_buf b = {0};

    if (h->is_request)
        http_buf_printf(&b, "%s %s HTTP/1.1\r\n", h->method, h->target);
    else
        http_buf_printf(&b, "HTTP/1.1 %03d %s\r\n", h->status, h->reason);
    for (size_t i = 0; i < h->nfields; i++) {
        if (http_field_is_hop_by_hop(h, &h->fields[i]))
            continue;
        http_buf_append(&b, h->fields[i].name, h->fields[i].name_len);
        http_buf_puts(&b, ": ");
        http_buf_append(&b, h->fields[i].value, h->fields[i].value_len);
        http_buf_puts(&b, "\r\n");
    }
    http_buf_puts(&b, "\r\n");
    CHECK(!b.failed);
    CHECK(b.len < b.cap && b.data[b.len] == '\0' && strlen(b.data) == b.len);
    http_buf_free(&b);
}

static int on_head(void *owner, struct http_head *h)
{
    struct run *r = owner;
    int action = HTTP_HEAD_CONTINUE;

    CHECK(h != NULL);
    CHECK(h->is_request == (r->kind == HTTP_KIND_REQUEST));
    CHECK(h->version_major == 1 && h->version_minor <= 1);
    if (h->is_request) {
        CHECK(h->method && h->target && !h->reason);
        CHECK(h->method_len > 0 && strlen(h->method) == h->method_len);
        CHECK(h->target_len > 0 && strlen(h->target) == h->target_len);
        CHECK(h->target_len <= HTTP_TARGET_MAX);
        /* RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0 */
        if (h->version_minor == 1)
            CHECK(http_head_count(h, "host") == 1);
        else
            CHECK(http_head_count(h, "host") <= 1);
        dg_str(&r->dg, h->method, h->method_len);
        dg_u64(&r->dg, (uint64_t)h->method_id);
        dg_str(&r->dg, h->target, h->target_len);
    } else {
        CHECK(!h->method && !h->target && h->reason);
        /* Only the contract (NUL-terminated at reason_len): llhttp 9.2 passes CTLs, even NUL,
         * in a reason phrase (RFC 9112 §4 allows HTAB, SP, VCHAR, obs-text) and http.c does not
         * refuse them yet, so a stricter check would stop every run at the same input. */
        CHECK(h->reason[h->reason_len] == '\0' && strlen(h->reason) <= h->reason_len);
        /* three digits; llhttp 9.2 and http.c also let 000..099 through although RFC 9110 §15
         * calls anything outside 100..599 invalid (relay.c takes them for interim answers) */
        CHECK(h->status >= 0 && h->status <= 999);
        dg_u64(&r->dg, (uint64_t)h->status);
        dg_str(&r->dg, h->reason, h->reason_len);
    }
    /* RFC 9112 §6.1: Transfer-Encoding in 1.0 is refused; §6.3: never both framings */
    CHECK(!(h->chunked && h->version_minor == 0));
    CHECK(!(h->chunked && h->has_content_length));
    CHECK(h->has_content_length || h->content_length == 0);
    dg_u64(&r->dg, 'H');
    dg_u64(&r->dg, (uint64_t)h->version_minor);
    dg_u64(&r->dg, (uint64_t)h->keep_alive << 3 | (uint64_t)h->chunked << 2 |
                       (uint64_t)h->has_content_length << 1 | h->upgrade);
    dg_u64(&r->dg, h->content_length);
    check_fields(r, h);
    check_nominations(h);
    check_codings(r, h);
    rebuild(h);

    CHECK(!r->have_head);
    r->have_head = true;
    r->heads++;
    r->upgrade = h->upgrade;
    r->is_connect = h->is_request && h->method_id == HTTP_CONNECT;
    r->body_bytes = 0;
    r->content_length = h->content_length;
    r->cl_framed = h->has_content_length && !h->chunked;
    r->no_body = false;
    /* As relay.c answers: a response to HEAD (here: any response, by mode), 204 and 304 have no
     * body whatever their fields say (RFC 9112 §6.3). */
    if (!h->is_request && ((r->mode & MODE_NO_BODY) || h->status == 204 || h->status == 304)) {
        action = HTTP_HEAD_NO_BODY;
        r->no_body = true;
    } else if (r->mode & MODE_PAUSE_HEAD) {
        action = HTTP_HEAD_PAUSE;
    }
    /* llhttp itself skips the body of 100, 102 and 103 (and switches protocol after 101) */
    if (!h->is_request && (h->status == 100 || h->status == 102 || h->status == 103))
        r->no_body = true;
    http_head_free(h);
    return action;
}

static int on_body(void *owner, const char *p, size_t len)
{
    struct run *r = owner;

    CHECK(r->have_head && !r->no_body);
    CHECK(len > 0 && p != NULL);
    CHECK(p >= r->cur_lo && p + len <= r->cur_hi);
    r->body_bytes += len;
    if (r->cl_framed)
        CHECK(r->body_bytes <= r->content_length);
    dg_bytes(&r->dg, p, len);
    return (r->mode & MODE_PAUSE_BODY) ? HTTP_PAUSE_BODY : 0;
}

static int on_complete(void *owner, const struct http_head *trailers)
{
    struct run *r = owner;

    CHECK(r->have_head);
    CHECK(!http_parser_in_message(&r->parser));
    /* a Content-Length body is delivered exactly, unless the message has none at all */
    if (r->cl_framed && !r->no_body && !r->upgrade)
        CHECK(r->body_bytes == r->content_length);
    dg_u64(&r->dg, 'C');
    if (trailers) {
        CHECK(!trailers->method && !trailers->target && !trailers->reason);
        dg_u64(&r->dg, 'T');
        check_fields(r, trailers);
    }
    r->have_head = false;
    r->completes++;
    CHECK(r->completes == r->heads);
    return (r->mode & MODE_PAUSE_COMPLETE) ? HTTP_PAUSE_BODY : 0;
}

static const struct http_parser_cbs cbs = {on_head, on_body, on_complete};

enum feed_state { FEED_OK, FEED_UPGRADED, FEED_FAILED };

/* Execute one piece of the input (at offset base), resuming after every pause. */
static enum feed_state feed(struct run *r, const char *data, size_t base, size_t len)
{
    const char *p = data + base;
    /* each pause is a callback's answer, and each callback either consumes a byte or belongs to
     * a message that consumed several: more pauses than this means execute stopped moving */
    size_t budget = 4 * len + 64;

    for (;;) {
        size_t consumed = (size_t)-1;
        enum http_exec_status st;

        r->cur_lo = p;
        r->cur_hi = p + len;
        st = http_parser_execute(&r->parser, len ? p : NULL, len, &consumed);
        CHECK(consumed <= len);
        switch (st) {
        case HTTP_OK:
            CHECK(consumed == len);
            return FEED_OK;
        case HTTP_PAUSED:
            CHECK(budget-- > 0);
            http_parser_resume(&r->parser);
            p += consumed;
            len -= consumed;
            /* also with nothing left: a bodiless message paused at its head completes now */
            continue;
        case HTTP_UPGRADE: {
            size_t again;

            /* the upgrade position is part of the meaning: split runs must agree on it */
            dg_u64(&r->dg, 'U');
            dg_u64(&r->dg, (uint64_t)(p + consumed - data));
            /* HTTP_UPGRADE sticks */
            CHECK(http_parser_execute(&r->parser, p + consumed, len - consumed, &again) ==
                  HTTP_UPGRADE);
            CHECK(again == 0);
            if (r->kind == HTTP_KIND_REQUEST && !r->is_connect && (r->mode & MODE_REFUSE_UPGRADE)) {
                /* the upstream refused the upgrade: the rest is HTTP again */
                http_parser_resume_after_upgrade(&r->parser);
                p += consumed;
                len -= consumed;
                continue;
            }
            return FEED_UPGRADED;
        }
        case HTTP_ERROR: {
            size_t again;

            CHECK(r->parser.error_reason != NULL);
            if (r->kind == HTTP_KIND_RESPONSE)
                CHECK(r->parser.error_status == 502);
            else
                CHECK(r->parser.error_status == 400 || r->parser.error_status == 413 ||
                      r->parser.error_status == 414 || r->parser.error_status == 431 ||
                      r->parser.error_status == 500);
            /* Only the fact of the error enters the digest, not its status: where a piece ends
             * decides whether the 129th field name is counted (431) before llhttp sees a bad
             * byte in it (400). Both refuse the message. */
            dg_u64(&r->dg, 'E');
            /* HTTP_ERROR sticks */
            CHECK(http_parser_execute(&r->parser, p, len, &again) == HTTP_ERROR);
            CHECK(again == 0);
            return FEED_FAILED;
        }
        default:
            __builtin_trap();
        }
    }
}

/* Parse data[0..len) cut at split; bytewise feeds the second piece one byte at a time. */
static uint64_t run(enum http_kind kind, unsigned mode, const char *data, size_t len, size_t split,
                    bool bytewise)
{
    struct run *r = calloc(1, sizeof(*r));
    enum feed_state st;
    uint64_t digest;
    int fin;

    CHECK(r != NULL);
    r->kind = kind;
    r->mode = mode;
    r->dg.h = 0xcbf29ce484222325ULL;
    http_parser_init(&r->parser, kind, &cbs, r);

    st = feed(r, data, 0, split);
    if (st == FEED_OK && bytewise) {
        for (size_t i = split; i < len && st == FEED_OK; i++)
            st = feed(r, data, i, 1);
    } else if (st == FEED_OK) {
        st = feed(r, data, split, len - split);
    }
    if (st != FEED_FAILED) {
        fin = http_parser_finish(&r->parser);
        if (st == FEED_UPGRADED)
            CHECK(fin == 0);
        if (fin < 0)
            CHECK(r->parser.error_reason != NULL && r->parser.error_status != 0);
        dg_u64(&r->dg, 'F');
        dg_u64(&r->dg, (uint64_t)(fin + 1));
        CHECK(!http_parser_in_message(&r->parser) || fin < 0);
    }
    if (r->completes != r->heads)
        CHECK(r->completes + 1 == r->heads && r->have_head);
    dg_u64(&r->dg, r->heads);
    dg_u64(&r->dg, r->completes);
    digest = r->dg.h;
    http_parser_deinit(&r->parser);
    /* deinit leaves a parser that may be initialised (and deinitialised) again */
    http_parser_deinit(&r->parser);
    free(r);
    return digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    if (size < 2)
        return 0;
    const char *data = (const char *)in + 2;
    size_t len = size - 2;
    size_t split = len * in[0] / 255;
    unsigned mode = in[1];

    /* a private copy, so that ASan sees any read past the end of what the parser was given */
    char *copy = malloc(len ? len : 1);
    CHECK(copy != NULL);
    memcpy(copy, data, len);

    for (int k = 0; k < 2; k++) {
        enum http_kind kind = k ? HTTP_KIND_RESPONSE : HTTP_KIND_REQUEST;
        uint64_t whole = run(kind, mode, copy, len, len, false);
        uint64_t cut = run(kind, mode, copy, len, split, (mode & MODE_BYTEWISE) != 0);

        CHECK(whole == cut);
    }
    free(copy);
    return 0;
}
