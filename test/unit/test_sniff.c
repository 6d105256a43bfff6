/* SPDX-License-Identifier: MIT */
/* Unit tests for sniff: real ClientHellos that OpenSSL writes into a memory BIO (with and
 * without SNI and ALPN, TLS 1.2 and 1.3, re-cut into records of every size), hand-built ones
 * that break one rule each of RFC 8446 §4.1.2 / §5.1, RFC 6066 §3 and RFC 7301 §3.1, and
 * request heads, each fed whole and at every split point. No sockets. */
#include "airlock/sniff.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "test.h"

/* ---- building ClientHellos ------------------------------------------------------------------ */

struct buf {
    uint8_t d[80000];
    size_t n;
};

static void put8(struct buf *b, unsigned v)
{
    b->d[b->n++] = (uint8_t)v;
}

static void put16(struct buf *b, unsigned v)
{
    put8(b, v >> 8);
    put8(b, v & 0xff);
}

static void put24(struct buf *b, unsigned v)
{
    put8(b, v >> 16);
    put16(b, v & 0xffff);
}

static void put_bytes(struct buf *b, const void *p, size_t n)
{
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

/* One extension: type, length, data. */
static void ext(struct buf *b, unsigned type, const void *data, size_t n)
{
    put16(b, type);
    put16(b, (unsigned)n);
    put_bytes(b, data, n);
}

/* A server_name extension naming one host_name. */
static void ext_sni(struct buf *b, const char *name, size_t n)
{
    put16(b, 0);
    put16(b, (unsigned)(n + 5));
    put16(b, (unsigned)(n + 3));
    put8(b, 0);
    put16(b, (unsigned)n);
    put_bytes(b, name, n);
}

/* An ALPN extension from a wire-format protocol_name_list. */
static void ext_alpn(struct buf *b, const void *list, size_t n)
{
    put16(b, 16);
    put16(b, (unsigned)(n + 2));
    put16(b, (unsigned)n);
    put_bytes(b, list, n);
}

/* A ClientHello handshake message (header included) around an extensions block; exts NULL:
 * none at all, as a TLS 1.2 client may send. */
static void hello_msg(struct buf *hs, const struct buf *exts)
{
    struct buf body = {.n = 0};

    put16(&body, 0x0303);
    for (int i = 0; i < 32; i++)
        put8(&body, (unsigned)i);
    put8(&body, 0);  /* session id */
    put16(&body, 4); /* two cipher suites */
    put16(&body, 0x1301);
    put16(&body, 0xc02f);
    put8(&body, 1); /* one compression method */
    put8(&body, 0);
    if (exts) {
        put16(&body, (unsigned)exts->n);
        put_bytes(&body, exts->d, exts->n);
    }
    hs->n = 0;
    put8(hs, 1);
    put24(hs, (unsigned)body.n);
    put_bytes(hs, body.d, body.n);
}

/* Cut a handshake message into records of at most frag bytes. */
static void records(struct buf *out, const uint8_t *hs, size_t n, size_t frag)
{
    out->n = 0;
    for (size_t off = 0; off < n; off += frag) {
        size_t k = n - off < frag ? n - off : frag;
        put8(out, 0x16);
        put16(out, 0x0301);
        put16(out, (unsigned)k);
        put_bytes(out, hs + off, k);
    }
}

/* The records around a ClientHello with the given extensions, in one record. */
static void hello_records(struct buf *out, const struct buf *exts)
{
    struct buf hs;

    hello_msg(&hs, exts);
    records(out, hs.d, hs.n, 16384);
}

/* What OpenSSL sends first as a client: sni and alpn (wire format) may be NULL; max_version 0
 * for the library's highest. Returns a malloc'd copy, length in *n. */
static uint8_t *openssl_hello(const char *sni, const char *alpn, size_t alpn_len, int max_version,
                              size_t *n)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    uint8_t *out = NULL;
    char *data;
    long len;

    *n = 0;
    if (!ssl || !rbio || !wbio)
        goto done;
    if (max_version)
        SSL_set_max_proto_version(ssl, max_version);
    SSL_set_bio(ssl, rbio, wbio); /* the SSL owns both now */
    rbio = wbio = NULL;
    SSL_set_connect_state(ssl);
    if (sni)
        SSL_set_tlsext_host_name(ssl, sni);
    if (alpn)
        SSL_set_alpn_protos(ssl, (const unsigned char *)alpn, (unsigned)alpn_len);
    if (SSL_do_handshake(ssl) != -1)
        goto done;
    len = BIO_get_mem_data(SSL_get_wbio(ssl), &data);
    if (len <= 0 || !(out = malloc((size_t)len)))
        goto done;
    memcpy(out, data, (size_t)len);
    *n = (size_t)len;
done:
    ERR_clear_error();
    BIO_free(rbio);
    BIO_free(wbio);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return out;
}

static enum sniff_kind classify(const uint8_t *p, size_t n, struct sniff_result *r)
{
    return sniff_classify(p, n, r);
}

/* Every proper prefix must ask for more; the whole must give want. */
static void check_prefixes(const uint8_t *p, size_t n, enum sniff_kind want)
{
    struct sniff_result r;
    size_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        if (sniff_classify(p, i, &r) != SNIFF_NEED_MORE)
            bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(sniff_classify(p, n, &r), want);
}

/* ---- real ClientHellos ------------------------------------------------------------------------
 */

static const char alpn_h2_h1[] = "\x02h2\x08http/1.1";

static void test_openssl_hello_sni_and_alpn(void)
{
    size_t n;
    uint8_t *ch = openssl_hello("API.Example.COM", alpn_h2_h1, sizeof(alpn_h2_h1) - 1, 0, &n);
    struct sniff_result r;

    CHECK(ch != NULL && n > 100);
    if (!ch)
        return;
    CHECK_EQ(classify(ch, n, &r), SNIFF_TLS);
    CHECK_STR(r.reason, "");
    CHECK_STR(r.authority.host, "api.example.com");
    CHECK_EQ(r.authority.kind, TARGET_DNS);
    CHECK_EQ(r.authority.port, 0);
    CHECK(r.alpn.offered && r.alpn.h2 && r.alpn.http11);
    CHECK_EQ(r.alpn.count, 2);
    CHECK_EQ(r.alpn.list_len, sizeof(alpn_h2_h1) - 1);
    CHECK(memcmp(r.alpn.list, alpn_h2_h1, sizeof(alpn_h2_h1) - 1) == 0);
    CHECK(!r.alpn.list_truncated);
    check_prefixes(ch, n, SNIFF_TLS);
    free(ch);
}

static void test_openssl_hello_without_sni_or_alpn(void)
{
    size_t n;
    uint8_t *ch = openssl_hello(NULL, NULL, 0, 0, &n);
    struct sniff_result r;

    CHECK(ch != NULL);
    if (!ch)
        return;
    CHECK_EQ(classify(ch, n, &r), SNIFF_TLS);
    CHECK_STR(r.authority.host, "");
    CHECK(!r.alpn.offered && !r.alpn.h2 && !r.alpn.http11);
    CHECK_EQ(r.alpn.count, 0);
    free(ch);
}

static void test_openssl_hello_tls12_http11_only(void)
{
    size_t n;
    uint8_t *ch = openssl_hello("example.org", "\x08http/1.1", 9, TLS1_2_VERSION, &n);
    struct sniff_result r;

    CHECK(ch != NULL);
    if (!ch)
        return;
    CHECK_EQ(classify(ch, n, &r), SNIFF_TLS);
    CHECK_STR(r.authority.host, "example.org");
    CHECK(r.alpn.offered && !r.alpn.h2 && r.alpn.http11);
    free(ch);
}

/* RFC 8446 §5.1: a handshake message may be cut into records of any size. */
static void test_hello_split_over_records(void)
{
    size_t n;
    uint8_t *ch = openssl_hello("split.example", alpn_h2_h1, sizeof(alpn_h2_h1) - 1, 0, &n);
    static struct buf wire;
    struct sniff_result r;
    static const size_t frags[] = {1, 2, 3, 4, 5, 7, 100, 255, 1000};

    CHECK(ch != NULL && n > 5);
    if (!ch)
        return;
    for (size_t i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
        records(&wire, ch + 5, n - 5, frags[i]);
        CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
        CHECK_STR(r.authority.host, "split.example");
        CHECK(r.alpn.h2);
        if (frags[i] == 3 || frags[i] == 100)
            check_prefixes(wire.d, wire.n, SNIFF_TLS);
    }
    /* what follows the ClientHello's last record (a compatibility ChangeCipherSpec, early
     * data) is not looked at */
    records(&wire, ch + 5, n - 5, 16384);
    put_bytes(&wire, "\x14\x03\x03\x00\x01\x01\x17\x03\x03", 9);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    CHECK_STR(r.authority.host, "split.example");
    free(ch);
}

/* ---- hand-built ClientHellos ------------------------------------------------------------------
 */

static void check_invalid(const struct buf *wire, const char *what)
{
    struct sniff_result r;

    CHECK_EQ(classify(wire->d, wire->n, &r), SNIFF_INVALID);
    CHECK_STR(r.authority.host, "");
    CHECK_EQ(r.http_status, 0);
    if (r.kind != SNIFF_INVALID || !r.reason[0])
        fprintf(stderr, "  case: %s (reason \"%s\")\n", what, r.reason);
}

static void check_sni(const char *name, size_t n, const char *want)
{
    static struct buf exts, wire;
    struct sniff_result r;

    exts.n = 0;
    ext_sni(&exts, name, n);
    hello_records(&wire, &exts);
    if (!want) {
        check_invalid(&wire, name);
        return;
    }
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    CHECK_STR(r.authority.host, want);
}

static void test_sni_names(void)
{
    check_sni("example.com", 11, "example.com");
    check_sni("EXAMPLE.com.", 12, "example.com"); /* one trailing dot names the same host */
    check_sni("_acme.example", 13, "_acme.example");
    check_sni("a", 1, "a");
    /* RFC 6066 §3 allows no IP literal, yet gRPC sends one: read as no name at all */
    check_sni("192.0.2.1", 9, "");
    check_sni("10.0.0.1.", 9, "");
    check_sni("::1", 3, "");
    check_sni("[::1]", 5, NULL); /* brackets belong to URIs, not to server_name */
    check_sni("2001:db8::1", 11, "");
    /* names that fail normalisation */
    check_sni("a\0b.example", 11, NULL);
    check_sni("exa mple.com", 12, NULL);
    check_sni("example.com:443", 15, NULL);
    check_sni("-bad.example", 12, NULL);
    check_sni("a..b", 4, NULL);
    check_sni("caf\xc3\xa9.example", 13, NULL);
    check_sni("127.1", 5, NULL);
    check_sni("0x7f.1", 6, NULL);
}

static void test_sni_length_limits(void)
{
    char name[300];
    struct sniff_result r;
    static struct buf exts, wire;

    /* labels of 63, 63, 63 and 61 octets: 253 in all, the most a name may have */
    memset(name, 'a', sizeof(name));
    name[63] = name[127] = name[191] = '.';
    exts.n = 0;
    ext_sni(&exts, name, 253);
    hello_records(&wire, &exts);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    CHECK_EQ(strlen(r.authority.host), 253);
    exts.n = 0;
    ext_sni(&exts, name, 254);
    hello_records(&wire, &exts);
    check_invalid(&wire, "254 octets");
    /* a 64-octet label */
    memset(name, 'b', 64);
    exts.n = 0;
    ext_sni(&exts, name, 64);
    hello_records(&wire, &exts);
    check_invalid(&wire, "64-octet label");
}

static void test_sni_structure(void)
{
    static struct buf exts, wire;
    struct sniff_result r;

    /* two server_name extensions (RFC 8446 §4.2) */
    exts.n = 0;
    ext_sni(&exts, "a.example", 9);
    ext_sni(&exts, "b.example", 9);
    hello_records(&wire, &exts);
    check_invalid(&wire, "two server_name extensions");
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_INVALID);
    CHECK(strstr(r.reason, "server_name") != NULL);

    /* two host_name entries in one list (RFC 6066 §3) */
    exts.n = 0;
    put16(&exts, 0);
    put16(&exts, 2 + 2 * 12);
    put16(&exts, 2 * 12);
    put8(&exts, 0);
    put16(&exts, 9);
    put_bytes(&exts, "a.example", 9);
    put8(&exts, 0);
    put16(&exts, 9);
    put_bytes(&exts, "b.example", 9);
    hello_records(&wire, &exts);
    check_invalid(&wire, "two host names in one list");

    /* a name type other than host_name */
    exts.n = 0;
    put16(&exts, 0);
    put16(&exts, 14);
    put16(&exts, 12);
    put8(&exts, 1);
    put16(&exts, 9);
    put_bytes(&exts, "a.example", 9);
    hello_records(&wire, &exts);
    check_invalid(&wire, "name type 1");

    /* an empty extension (only a server's echo may be empty) and an empty list */
    exts.n = 0;
    ext(&exts, 0, "", 0);
    hello_records(&wire, &exts);
    check_invalid(&wire, "empty server_name extension");
    exts.n = 0;
    ext(&exts, 0, "\x00\x00", 2);
    hello_records(&wire, &exts);
    check_invalid(&wire, "empty server_name list");

    /* an empty host name */
    exts.n = 0;
    ext(&exts, 0, "\x00\x03\x00\x00\x00", 5);
    hello_records(&wire, &exts);
    check_invalid(&wire, "empty host name");

    /* list length longer and shorter than the extension */
    exts.n = 0;
    ext(&exts, 0,
        "\x00\x0d\x00\x00\x09"
        "a.example",
        14);
    hello_records(&wire, &exts);
    check_invalid(&wire, "list longer than extension");
    exts.n = 0;
    ext(&exts, 0,
        "\x00\x0b\x00\x00\x09"
        "a.example",
        14);
    hello_records(&wire, &exts);
    check_invalid(&wire, "list shorter than extension");
    /* host name length past the list */
    exts.n = 0;
    ext(&exts, 0,
        "\x00\x0c\x00\x00\x0a"
        "a.example",
        14);
    hello_records(&wire, &exts);
    check_invalid(&wire, "name longer than list");
    /* trailing byte inside the extension after the list */
    exts.n = 0;
    ext(&exts, 0,
        "\x00\x0c\x00\x00\x09"
        "a.examplex",
        15);
    hello_records(&wire, &exts);
    check_invalid(&wire, "byte after the list");
}

static void test_alpn_structure(void)
{
    static struct buf exts, wire;
    struct sniff_result r;
    uint8_t big[600];
    size_t n = 0;

    /* a list that does not fit in SNIFF_ALPN_LIST_MAX: flags still right, list cut */
    for (int i = 0; i < 60; i++) {
        big[n++] = 7;
        memcpy(big + n, "proto-x", 7);
        n += 7;
    }
    memcpy(big + n, "\x02h2", 3);
    n += 3;
    exts.n = 0;
    ext_alpn(&exts, big, n);
    hello_records(&wire, &exts);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    CHECK(r.alpn.offered && r.alpn.h2 && !r.alpn.http11);
    CHECK_EQ(r.alpn.count, 61);
    CHECK(r.alpn.list_truncated);
    CHECK_EQ(r.alpn.list_len, 0);

    /* "h2" as a prefix of a longer name is not h2 */
    exts.n = 0;
    ext_alpn(&exts, "\x03h2c\x07http/1.", 12);
    hello_records(&wire, &exts);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    CHECK(r.alpn.offered && !r.alpn.h2 && !r.alpn.http11);

    /* an empty name, an empty list, a name past the list, a repeated extension */
    exts.n = 0;
    ext_alpn(&exts, "\x00\x02h2", 4);
    hello_records(&wire, &exts);
    check_invalid(&wire, "empty protocol name");
    exts.n = 0;
    ext(&exts, 16, "\x00\x00", 2);
    hello_records(&wire, &exts);
    check_invalid(&wire, "empty protocol list");
    exts.n = 0;
    ext_alpn(&exts, "\x03h2", 3);
    hello_records(&wire, &exts);
    check_invalid(&wire, "name past the list");
    exts.n = 0;
    ext_alpn(&exts, "\x02h2", 3);
    ext_alpn(&exts, "\x08http/1.1", 9);
    hello_records(&wire, &exts);
    check_invalid(&wire, "two ALPN extensions");
}

static void test_extensions_block(void)
{
    static struct buf exts, hs, wire;
    struct sniff_result r;

    /* no extensions at all (TLS 1.2 allows it): TLS, no name */
    hello_msg(&hs, NULL);
    records(&wire, hs.d, hs.n, 16384);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    CHECK_STR(r.authority.host, "");
    /* an empty extensions block */
    exts.n = 0;
    hello_records(&wire, &exts);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    /* unknown extensions are skipped; a repeated unknown one is not */
    exts.n = 0;
    ext(&exts, 0xfe0d, "xyz", 3);
    ext_sni(&exts, "a.example", 9);
    ext(&exts, 0x1234, "", 0);
    hello_records(&wire, &exts);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    CHECK_STR(r.authority.host, "a.example");
    ext(&exts, 0x1234, "", 0);
    hello_records(&wire, &exts);
    check_invalid(&wire, "repeated unknown extension");

    /* an extension's length past the block, the block's length past the message, bytes after
     * the block */
    exts.n = 0;
    put16(&exts, 0x1234);
    put16(&exts, 5);
    put_bytes(&exts, "abcd", 4);
    hello_records(&wire, &exts);
    check_invalid(&wire, "extension past the block");
    exts.n = 0;
    ext_sni(&exts, "a.example", 9);
    hello_msg(&hs, &exts);
    hs.d[hs.n - exts.n - 1] += 1; /* the block's length, low byte */
    records(&wire, hs.d, hs.n, 16384);
    check_invalid(&wire, "block past the message");
    hello_msg(&hs, &exts);
    put8(&hs, 0);
    hs.d[3] += 1; /* the message grows by the stray byte */
    records(&wire, hs.d, hs.n, 16384);
    check_invalid(&wire, "byte after the block");
    /* an extension header cut short */
    exts.n = 0;
    put8(&exts, 0);
    hello_records(&wire, &exts);
    check_invalid(&wire, "one byte of an extension");
}

/* Build a hello from its parts, with one field set to a given value. */
static void hello_fields(struct buf *wire, unsigned version, size_t sid, size_t ciphers,
                         size_t comp)
{
    static struct buf body, hs;

    body.n = 0;
    put16(&body, version);
    for (int i = 0; i < 32; i++)
        put8(&body, 0);
    put8(&body, (unsigned)sid);
    for (size_t i = 0; i < sid; i++)
        put8(&body, 0);
    put16(&body, (unsigned)ciphers);
    for (size_t i = 0; i < ciphers; i++)
        put8(&body, 0x13);
    put8(&body, (unsigned)comp);
    for (size_t i = 0; i < comp; i++)
        put8(&body, 0);
    hs.n = 0;
    put8(&hs, 1);
    put24(&hs, (unsigned)body.n);
    put_bytes(&hs, body.d, body.n);
    records(wire, hs.d, hs.n, 16384);
}

static void test_hello_fields(void)
{
    static struct buf wire;
    struct sniff_result r;

    hello_fields(&wire, 0x0303, 32, 2, 1);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    hello_fields(&wire, 0x0301, 0, 65534, 255);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_INVALID); /* larger than the bound */
    hello_fields(&wire, 0x0301, 0, 4000, 255);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
    hello_fields(&wire, 0x0203, 0, 2, 1);
    check_invalid(&wire, "version 2.3");
    hello_fields(&wire, 0x0303, 33, 2, 1);
    check_invalid(&wire, "33-byte session id");
    hello_fields(&wire, 0x0303, 0, 3, 1);
    check_invalid(&wire, "odd cipher suite bytes");
    hello_fields(&wire, 0x0303, 0, 0, 1);
    check_invalid(&wire, "no cipher suite");
    hello_fields(&wire, 0x0303, 0, 2, 0);
    check_invalid(&wire, "no compression method");

    /* a message cut short inside its fixed part */
    static struct buf hs;
    hs.n = 0;
    put8(&hs, 1);
    put24(&hs, 20);
    for (int i = 0; i < 20; i++)
        put8(&hs, 3);
    records(&wire, hs.d, hs.n, 16384);
    check_invalid(&wire, "message shorter than its random");
    hs.n = 0;
    put8(&hs, 1);
    put24(&hs, 0);
    records(&wire, hs.d, hs.n, 16384);
    check_invalid(&wire, "empty ClientHello");
}

static void test_record_layer(void)
{
    static struct buf exts, hs, wire;
    struct sniff_result r;

    exts.n = 0;
    ext_sni(&exts, "a.example", 9);
    hello_msg(&hs, &exts);

    /* a first message that is not a ClientHello (a ServerHello) */
    hs.d[0] = 2;
    records(&wire, hs.d, hs.n, 16384);
    check_invalid(&wire, "ServerHello");
    hs.d[0] = 1;

    /* another record type between the fragments (RFC 8446 §5.1) */
    records(&wire, hs.d, hs.n, 20);
    wire.d[25] = 0x17;
    check_invalid(&wire, "application data record inside the ClientHello");
    /* a record of another version major between fragments */
    records(&wire, hs.d, hs.n, 20);
    wire.d[26] = 0x02;
    check_invalid(&wire, "record version 2.x");
    /* a zero-length and an over-long record */
    wire.n = 0;
    put_bytes(&wire, "\x16\x03\x01\x00\x00", 5);
    check_invalid(&wire, "zero-length record");
    wire.n = 0;
    put_bytes(&wire, "\x16\x03\x01\x40\x01", 5);
    check_invalid(&wire, "record of 2^14 + 1");
    /* the ClientHello ends inside a record that carries more */
    records(&wire, hs.d, hs.n, 16384);
    wire.d[4] += 1;
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_INVALID); /* known before the byte arrives */
    put8(&wire, 0);
    check_invalid(&wire, "byte after the ClientHello in its record");
    /* a handshake length beyond the bound is refused from its header alone */
    wire.n = 0;
    put_bytes(&wire, "\x16\x03\x01\x00\x04\x01\x00\x40\x00", 9);
    check_invalid(&wire, "ClientHello of 16 KiB + 4");
    wire.n = 0;
    put_bytes(&wire, "\x16\x03\x01\x00\x04\x01\x00\x3f\xfc", 9);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_NEED_MORE); /* 16 KiB in all: may come */

    /* 0x16 that does not go on as TLS is something else */
    CHECK_EQ(classify((const uint8_t *)"\x16", 1, &r), SNIFF_NEED_MORE);
    CHECK_EQ(classify((const uint8_t *)"\x16\x00\x01\x00\x05", 5, &r), SNIFF_OTHER);
    CHECK(r.reason[0] != '\0');
    /* SSLv2-compatible hello */
    CHECK_EQ(classify((const uint8_t *)"\x80\x2e\x01\x03\x01", 5, &r), SNIFF_OTHER);
}

/* One-byte records cost five bytes of header each: a ClientHello so cut that does not end
 * within SNIFF_TLS_MAX bytes is refused at the bound, not waited for. */
static void test_tls_bound(void)
{
    static struct buf exts, hs, wire;
    struct sniff_result r;
    char name[200];

    memset(name, 'n', sizeof(name));
    exts.n = 0;
    for (unsigned t = 100; t < 120; t++)
        ext(&exts, t, name, sizeof(name));
    hello_msg(&hs, &exts);
    CHECK(hs.n * 6 > SNIFF_TLS_MAX);
    records(&wire, hs.d, hs.n, 1);
    CHECK_EQ(classify(wire.d, SNIFF_TLS_MAX - 1, &r), SNIFF_NEED_MORE);
    CHECK_EQ(classify(wire.d, SNIFF_TLS_MAX, &r), SNIFF_INVALID);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_INVALID);
    /* the same message in one record is fine */
    records(&wire, hs.d, hs.n, 16384);
    CHECK_EQ(classify(wire.d, wire.n, &r), SNIFF_TLS);
}

/* ---- HTTP -------------------------------------------------------------------------------------
 */

struct http_case {
    const char *in;
    enum sniff_kind kind;
    const char *host; /* SNIFF_HTTP: the authority's host */
    unsigned port;    /* SNIFF_HTTP: the port, 0 when absent; SNIFF_INVALID: the status */
};

static const struct http_case http_cases[] = {
    {"GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n", SNIFF_HTTP, "example.com", 0},
    {"GET /x?y=1 HTTP/1.1\r\nUser-Agent: t\r\nhost:  example.com:8080 \r\nAccept: */*\r\n\r\n",
     SNIFF_HTTP, "example.com", 8080},
    {"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", SNIFF_HTTP, "::1", 80},
    {"GET / HTTP/1.1\r\nHost: 192.0.2.7\r\n\r\n", SNIFF_HTTP, "192.0.2.7", 0},
    {"POST /p HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\n\r\nabc", SNIFF_HTTP, "a.example",
     0},
    {"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", SNIFF_OTHER, NULL, 0},
    {"OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_HTTP, "a.example", 0},
    {"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_HTTP, "a.example", 0},
    {"GET http://a.example:80/x HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_HTTP, "a.example", 80},
    {"GET HTTP://A.example HTTP/1.1\r\nHost: a.example:80\r\n\r\n", SNIFF_HTTP, "a.example", 0},
    {"GET / HTTP/1.0\r\n\r\n", SNIFF_HTTP, "", 0},
    {"GET http://b.example/ HTTP/1.0\r\n\r\n", SNIFF_HTTP, "b.example", 0},
    {"GET / HTTP/1.0\r\nHost: c.example\r\n\r\n", SNIFF_HTTP, "c.example", 0},
    /* Host and the absolute form disagree, or the target is no http:// URI */
    {"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET http://a.example:8080/ HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET http://a.example/ HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET http://a.example/ HTTP/1.1\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET https://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET a.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET http://u@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET * HTTP/1.1\r\nHost: a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    /* Host: missing, twice, malformed */
    {"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a.example\r\nHOST: a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a.example\r\nhost: b.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost:\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: u@a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: 127.1\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a.example:0\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a.example b.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n", SNIFF_INVALID, NULL, 400},
    /* field syntax (RFC 9112 §5) */
    {"GET / HTTP/1.1\r\nHost : a.example\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nX: 1\r\n continued\r\nHost: a\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\n: a\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHo(st: a\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nHost: a\r\n\rX", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\nHost: a\r\n\r\n", SNIFF_HTTP, "a", 0},
    /* the request line once it reads as HTTP */
    {"GET / HTTP/1.1\n\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/1.1 \r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/x.1\r\n\r\n", SNIFF_INVALID, NULL, 400},
    {"GET / HTTP/2.0\r\n\r\n", SNIFF_INVALID, NULL, 505},
    {"GET / HTTP/1.2\r\n\r\n", SNIFF_INVALID, NULL, 505},
    {"GET / HTTP/0.9\r\n\r\n", SNIFF_INVALID, NULL, 505},
    {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", SNIFF_INVALID, NULL, 505},
    /* before that, it may be any protocol */
    {"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", SNIFF_OTHER, NULL, 0},
    {"GET  / HTTP/1.1\r\n\r\n", SNIFF_OTHER, NULL, 0},
    {"GET / http/1.1\r\n\r\n", SNIFF_OTHER, NULL, 0},
    {"GET\t/ HTTP/1.1\r\n\r\n", SNIFF_OTHER, NULL, 0},
    {"get / HTTP/1.1\r\nHost: a\r\n\r\n", SNIFF_HTTP, "a", 0},
    {"{\"jsonrpc\":\"2.0\"}", SNIFF_OTHER, NULL, 0},
    {"\x00\x00\x00\x08\x04\xd2\x16\x2f", SNIFF_OTHER, NULL, 0},
    {" GET / HTTP/1.1\r\n\r\n", SNIFF_OTHER, NULL, 0},
    {"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", SNIFF_OTHER, NULL, 0},
};

static void test_http_cases(void)
{
    for (size_t i = 0; i < sizeof(http_cases) / sizeof(http_cases[0]); i++) {
        const struct http_case *c = &http_cases[i];
        size_t n = strlen(c->in);
        struct sniff_result r;
        int before = test_failed;

        /* the NUL-led case is written with its length in its bytes */
        if (c->in[0] == '\0')
            n = 8;
        CHECK_EQ(classify((const uint8_t *)c->in, n, &r), c->kind);
        if (c->kind == SNIFF_HTTP) {
            CHECK_STR(r.authority.host, c->host);
            CHECK_EQ(r.authority.port, c->port);
            CHECK_EQ(r.authority.port_present, c->port != 0);
            CHECK_STR(r.reason, "");
            CHECK(!r.alpn.offered);
        } else {
            CHECK_STR(r.authority.host, "");
            CHECK(r.reason[0] != '\0');
            CHECK_EQ(r.http_status, c->kind == SNIFF_INVALID ? (int)c->port : 0);
        }
        if (test_failed != before)
            fprintf(stderr, "  case %zu: %s\n", i, c->in);
    }
}

/* Every prefix of a good head waits; so does every prefix that is still a possible request
 * line, whatever protocol it turns out to be. */
static void test_http_prefixes(void)
{
    static const char head[] = "PUT /upload HTTP/1.1\r\nHost: up.example:8443\r\nX-A: b\r\n\r\n";
    struct sniff_result r;

    check_prefixes((const uint8_t *)head, sizeof(head) - 1, SNIFF_HTTP);
    CHECK_EQ(classify((const uint8_t *)head, sizeof(head) - 1, &r), SNIFF_HTTP);
    CHECK_STR(r.authority.host, "up.example");
    CHECK_EQ(r.authority.port, 8443);
    static const char ssh[] = "SSH-2.0-OpenSSH_9.2p1 Debian";
    check_prefixes((const uint8_t *)ssh, sizeof(ssh) - 1, SNIFF_NEED_MORE);
}

static void test_http_bounds(void)
{
    static uint8_t big[SNIFF_HTTP_MAX + 100];
    struct sniff_result r;
    size_t n;

    /* a method longer than any method is no method */
    memset(big, 'A', 40);
    big[40] = ' ';
    CHECK_EQ(classify(big, 41, &r), SNIFF_OTHER);
    CHECK_EQ(classify(big, 30, &r), SNIFF_NEED_MORE);
    /* a target longer than HTTP_TARGET_MAX */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 9000);
    CHECK_EQ(classify(big, 9005, &r), SNIFF_OTHER);
    CHECK_EQ(classify(big, 8000, &r), SNIFF_NEED_MORE);
    /* a head that does not end within SNIFF_HTTP_MAX */
    n = (size_t)snprintf((char *)big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\n");
    while (n + 20 < sizeof(big)) {
        memcpy(big + n, "X-Pad: 0123456789\r\n", 19);
        n += 19;
    }
    CHECK_EQ(classify(big, SNIFF_HTTP_MAX - 1, &r), SNIFF_NEED_MORE);
    CHECK_EQ(classify(big, SNIFF_HTTP_MAX, &r), SNIFF_INVALID);
    CHECK_EQ(r.http_status, 431);
    CHECK_EQ(classify(big, n, &r), SNIFF_INVALID);
    /* one that ends just within it */
    n = SNIFF_HTTP_MAX - 4;
    memset(big, 'x', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ", 32);
    memcpy(big + n - 2, "\r\n\r\n", 4);
    CHECK_EQ(classify(big, SNIFF_HTTP_MAX, &r), SNIFF_HTTP);
    CHECK_STR(r.authority.host, "a");
}

static void test_other_and_names(void)
{
    struct sniff_result r;

    CHECK_EQ(classify(NULL, 0, &r), SNIFF_NEED_MORE);
    CHECK_EQ(classify((const uint8_t *)"\x05\x01\x00", 3, &r), SNIFF_OTHER); /* SOCKS5 */
    CHECK_STR(sniff_kind_name(SNIFF_NEED_MORE), "need_more");
    CHECK_STR(sniff_kind_name(SNIFF_TLS), "tls");
    CHECK_STR(sniff_kind_name(SNIFF_HTTP), "http");
    CHECK_STR(sniff_kind_name(SNIFF_OTHER), "other");
    CHECK_STR(sniff_kind_name(SNIFF_INVALID), "invalid");
}

int main(void)
{
    RUN(test_openssl_hello_sni_and_alpn);
    RUN(test_openssl_hello_without_sni_or_alpn);
    RUN(test_openssl_hello_tls12_http11_only);
    RUN(test_hello_split_over_records);
    RUN(test_sni_names);
    RUN(test_sni_length_limits);
    RUN(test_sni_structure);
    RUN(test_alpn_structure);
    RUN(test_extensions_block);
    RUN(test_hello_fields);
    RUN(test_record_layer);
    RUN(test_tls_bound);
    RUN(test_http_cases);
    RUN(test_http_prefixes);
    RUN(test_http_bounds);
    RUN(test_other_and_names);
    return test_report();
}
