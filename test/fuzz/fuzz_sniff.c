/* SPDX-License-Identifier: MIT */
/* libFuzzer target for sniff. Each input is classified three ways: as the first bytes of a
 * connection; wrapped as the body of a ClientHello in one record (so that mutations reach the
 * extensions without first having to get the record and handshake lengths right); and wrapped
 * the same way but cut into records of 1 to 64 bytes, which must give the same answer as one
 * record (reassembly changes nothing). For every answer: its fields are consistent, a name is
 * in its one normalised spelling, and a verdict reached on a prefix stays the verdict of the
 * whole (the answer never depends on how the bytes were cut into reads). Invariants are checked
 * with __builtin_trap(). */
#include "airlock/sniff.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static void check_name(const struct authority *a, bool dns_only)
{
    char again[TARGET_HOST_MAX + 1];
    enum target_host_kind kind;
    size_t n = strnlen(a->host, sizeof(a->host));

    CHECK(n < sizeof(a->host));
    if (n == 0)
        return;
    /* normalised: normalising again changes nothing */
    CHECK(target_normalise_host(a->host, n, false, again, &kind) == 0);
    CHECK(strcmp(again, a->host) == 0 && kind == a->kind);
    if (dns_only)
        CHECK(kind == TARGET_DNS);
}

static void check_result(const struct sniff_result *r, size_t len)
{
    CHECK(r->reason != NULL);
    CHECK(r->kind >= SNIFF_NEED_MORE && r->kind <= SNIFF_INVALID);
    CHECK(strcmp(sniff_kind_name(r->kind), "unknown") != 0);
    if (len >= SNIFF_MAX)
        CHECK(r->kind != SNIFF_NEED_MORE);
    switch (r->kind) {
    case SNIFF_TLS:
        CHECK(r->reason[0] == '\0' && r->http_status == 0);
        CHECK(r->authority.port == 0 && !r->authority.port_present);
        check_name(&r->authority, true);
        CHECK(r->alpn.list_len <= SNIFF_ALPN_LIST_MAX);
        if (!r->alpn.offered)
            CHECK(r->alpn.count == 0 && !r->alpn.h2 && !r->alpn.http11 && r->alpn.list_len == 0);
        else
            CHECK(r->alpn.count > 0 && (r->alpn.list_len > 0) != r->alpn.list_truncated);
        CHECK(r->alpn.count >= (size_t)r->alpn.h2 + (size_t)r->alpn.http11);
        break;
    case SNIFF_HTTP:
        CHECK(r->reason[0] == '\0' && r->http_status == 0);
        CHECK(r->authority.port_present == (r->authority.port != 0));
        check_name(&r->authority, false);
        CHECK(!r->alpn.offered && r->alpn.count == 0);
        break;
    case SNIFF_NEED_MORE:
        CHECK(r->reason[0] == '\0' && r->authority.host[0] == '\0');
        break;
    case SNIFF_OTHER:
    case SNIFF_INVALID:
        CHECK(r->reason[0] != '\0' && r->authority.host[0] == '\0' && !r->alpn.offered);
        CHECK(r->http_status == 0 || r->http_status == 400 || r->http_status == 431 ||
              r->http_status == 505);
        if (r->kind == SNIFF_OTHER)
            CHECK(r->http_status == 0);
        break;
    }
}

static bool same(const struct sniff_result *a, const struct sniff_result *b)
{
    return a->kind == b->kind && strcmp(a->reason, b->reason) == 0 &&
           a->http_status == b->http_status && strcmp(a->authority.host, b->authority.host) == 0 &&
           a->authority.kind == b->authority.kind && a->authority.port == b->authority.port &&
           a->authority.port_present == b->authority.port_present &&
           a->alpn.offered == b->alpn.offered && a->alpn.h2 == b->alpn.h2 &&
           a->alpn.http11 == b->alpn.http11 && a->alpn.count == b->alpn.count &&
           a->alpn.list_len == b->alpn.list_len &&
           memcmp(a->alpn.list, b->alpn.list, a->alpn.list_len) == 0;
}

/* Classify p, and a few of its prefixes: a final answer on a prefix must be the whole's. */
static void classify(const uint8_t *p, size_t len, struct sniff_result *whole)
{
    struct sniff_result part;
    size_t cuts[3] = {len / 2, len ? len - 1 : 0, len ? p[0] % (len + 1) : 0};

    sniff_classify(p, len, whole);
    check_result(whole, len);
    for (size_t i = 0; i < 3; i++) {
        /* a private copy of the prefix: ASan sees any read past it */
        uint8_t *copy = malloc(cuts[i] ? cuts[i] : 1);
        CHECK(copy != NULL);
        memcpy(copy, p, cuts[i]);
        sniff_classify(copy, cuts[i], &part);
        check_result(&part, cuts[i]);
        if (part.kind != SNIFF_NEED_MORE)
            CHECK(same(&part, whole));
        free(copy);
    }
}

/* data as a ClientHello body, in records of at most frag bytes; returns the wire length. */
static size_t wrap(const uint8_t *data, size_t n, size_t frag, uint8_t *out)
{
    size_t hs_len = n + 4, o = 0;
    uint8_t *hs = malloc(hs_len);

    CHECK(hs != NULL);
    hs[0] = 1;
    hs[1] = (uint8_t)(n >> 16);
    hs[2] = (uint8_t)(n >> 8);
    hs[3] = (uint8_t)n;
    memcpy(hs + 4, data, n);
    for (size_t off = 0; off < hs_len; off += frag) {
        size_t k = hs_len - off < frag ? hs_len - off : frag;
        out[o++] = 0x16;
        out[o++] = 3;
        out[o++] = 1;
        out[o++] = (uint8_t)(k >> 8);
        out[o++] = (uint8_t)k;
        memcpy(out + o, hs + off, k);
        o += k;
    }
    free(hs);
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sniff_result raw, one, cut;
    uint8_t *in, *wire;
    size_t frag, n1, n2;

    in = malloc(size ? size : 1);
    CHECK(in != NULL);
    memcpy(in, data, size);
    classify(in, size, &raw);
    free(in);

    /* a body no bigger than one record, so that the single-record form is valid framing */
    if (size > 16384 - 4)
        return 0;
    frag = size ? (size_t)data[size - 1] % 64 + 1 : 1;
    wire = malloc((size + 4) * 6 + 5);
    CHECK(wire != NULL);
    n1 = wrap(data, size, 16384, wire);
    classify(wire, n1, &one);
    CHECK(one.kind != SNIFF_NEED_MORE && one.kind != SNIFF_OTHER && one.kind != SNIFF_HTTP);
    n2 = wrap(data, size, frag, wire);
    classify(wire, n2, &cut);
    if (n2 < SNIFF_TLS_MAX)
        CHECK(same(&one, &cut));
    free(wire);
    return 0;
}
