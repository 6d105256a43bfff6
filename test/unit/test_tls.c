/* SPDX-License-Identifier: MIT */
/* Unit tests for tls: two in-memory endpoints (a server with a leaf from a throwaway ca, a
 * client trusting that CA's ca.pem) handshake and exchange data by passing ciphertext between
 * each other. No sockets. Covers SNI and ALPN policy, name and IP verification, untrusted
 * chains, close_notify, large payloads, byte-at-a-time input and session resumption. */
#include "airlock/tls.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "airlock/ca.h"
#include "test.h"

static char ca_dir[64], other_dir[64], ca_pem[128], other_pem[128];
static struct ca *ca;
static SSL_CTX *server_ctx, *client_ctx;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *dir)
{
    if (dir[0])
        nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Move every pending ciphertext byte from one endpoint to the other, in socket-sized pieces.
 * No CHECK here: worker threads call it, and the counters are not atomic. A lost byte shows up
 * as a failed handshake or read anyway. */
static size_t pump(struct tls *from, struct tls *to)
{
    char buf[16384];
    size_t n, total = 0;

    while ((n = tls_out_take(from, buf, sizeof(buf))) > 0) {
        if (tls_feed(to, buf, n) != 0)
            break;
        total += n;
    }
    return total;
}

/* Drive both handshakes until each side has finished or failed. */
static void handshake(struct tls *c, struct tls *s, int *rc_c, int *rc_s)
{
    *rc_c = *rc_s = TLS_AGAIN;
    for (int i = 0; i < 16 && (*rc_c == TLS_AGAIN || *rc_s == TLS_AGAIN); i++) {
        size_t moved;
        if (*rc_c == TLS_AGAIN)
            *rc_c = tls_handshake(c);
        moved = pump(c, s);
        if (*rc_s == TLS_AGAIN)
            *rc_s = tls_handshake(s);
        moved += pump(s, c);
        /* A side that failed has sent its alert; let the other side read it once more. */
        if (!moved && (*rc_c == TLS_FAIL || *rc_s == TLS_FAIL)) {
            if (*rc_c == TLS_AGAIN)
                *rc_c = tls_handshake(c);
            if (*rc_s == TLS_AGAIN)
                *rc_s = tls_handshake(s);
            break;
        }
    }
}

static struct tls *server_for(const char *leaf_host, const char *connect_host)
{
    X509 *leaf = ca_leaf(ca, leaf_host);
    struct tls *s =
        leaf ? tls_server_new(server_ctx, leaf, ca_leaf_key(ca), ca_cert(ca), connect_host) : NULL;

    X509_free(leaf); /* the SSL holds its own reference */
    return s;
}

/* Read everything decryptable from t into buf (up to cap); returns the last status. */
static int drain(struct tls *t, char *buf, size_t cap, size_t *got)
{
    size_t n;
    int rc;

    *got = 0;
    while ((rc = tls_read(t, buf + *got, cap - *got, &n)) == TLS_DONE) {
        *got += n;
        if (*got == cap)
            break;
    }
    return rc;
}

static bool contains(const char *s, const char *needle)
{
    return s && strstr(s, needle) != NULL;
}

static void test_handshake_and_data(void)
{
    struct tls *s = server_for("example.com", "example.com");
    struct tls *c = tls_client_new(client_ctx, "example.com", 443);
    const char req[] = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    const char resp[] = "HTTP/1.1 204 No Content\r\n\r\n";
    char buf[256];
    size_t got;
    int rc_c, rc_s;

    CHECK(s && c);
    if (!s || !c)
        goto out;
    CHECK(!tls_handshake_done(c) && !tls_handshake_done(s));
    CHECK_STR(tls_alpn(c), "");
    handshake(c, s, &rc_c, &rc_s);
    CHECK_EQ(rc_c, TLS_DONE);
    CHECK_EQ(rc_s, TLS_DONE);
    CHECK(tls_handshake_done(c) && tls_handshake_done(s));
    CHECK_STR(tls_alpn(c), "http/1.1");
    CHECK_STR(tls_alpn(s), "http/1.1");
    CHECK_STR(tls_last_error(c), "");
    CHECK_STR(tls_last_error(s), "");
    CHECK_EQ(tls_handshake(c), TLS_DONE); /* idempotent */

    CHECK_EQ(tls_write(c, req, sizeof(req) - 1), TLS_DONE);
    CHECK(tls_out_pending(c) > sizeof(req) - 1);
    pump(c, s);
    CHECK_EQ(tls_out_pending(c), 0);
    CHECK_EQ(drain(s, buf, sizeof(buf), &got), TLS_AGAIN);
    CHECK(got == sizeof(req) - 1 && memcmp(buf, req, got) == 0);

    CHECK_EQ(tls_write(s, resp, sizeof(resp) - 1), TLS_DONE);
    CHECK_EQ(tls_write(s, "", 0), TLS_DONE);
    pump(s, c);
    CHECK_EQ(drain(c, buf, sizeof(buf), &got), TLS_AGAIN);
    CHECK(got == sizeof(resp) - 1 && memcmp(buf, resp, got) == 0);
    CHECK_EQ(ERR_peek_error(), 0);
out:
    tls_free(c);
    tls_free(s);
}

/* 1 MiB each way, fed to the reader in 16 KiB socket reads, read into a 16 KiB buffer. */
static void transfer(struct tls *from, struct tls *to, size_t size)
{
    char *out = malloc(size), *in = malloc(size);
    char chunk[16384];
    size_t got = 0, n;
    int bad = 0, rc = TLS_AGAIN;

    if (!out || !in) {
        CHECK(0);
        goto out;
    }
    for (size_t i = 0; i < size; i++)
        out[i] = (char)(i * 31 + i / 4096);
    CHECK_EQ(tls_write(from, out, size), TLS_DONE);
    CHECK(tls_out_pending(from) > size);
    while ((n = tls_out_take(from, chunk, sizeof(chunk))) > 0) {
        if (tls_feed(to, chunk, n) != 0)
            bad++;
        while (got < size && (rc = tls_read(to, in + got, size - got < 16384 ? size - got : 16384,
                                            &n)) == TLS_DONE)
            got += n;
        if (got < size && rc != TLS_AGAIN)
            bad++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(got, size);
    CHECK(memcmp(in, out, size) == 0);
    CHECK_EQ(tls_out_pending(from), 0);
out:
    free(out);
    free(in);
}

static void test_large_payload(void)
{
    struct tls *s = server_for("bulk.example", "bulk.example");
    struct tls *c = tls_client_new(client_ctx, "bulk.example", 443);
    int rc_c, rc_s;

    CHECK(s && c);
    if (!s || !c)
        goto out;
    handshake(c, s, &rc_c, &rc_s);
    CHECK(rc_c == TLS_DONE && rc_s == TLS_DONE);
    transfer(c, s, 1 << 20);
    transfer(s, c, 1 << 20);
    /* And again: the trimmed BIOs keep working. */
    transfer(c, s, 100000);
    CHECK_EQ(ERR_peek_error(), 0);
out:
    tls_free(c);
    tls_free(s);
}

static void test_byte_at_a_time(void)
{
    struct tls *s = server_for("slow.example", "slow.example");
    struct tls *c = tls_client_new(client_ctx, "slow.example", 443);
    char wire[4096], buf[64];
    size_t len, n, got = 0;
    int rc_c, rc_s, again = 0;

    CHECK(s && c);
    if (!s || !c)
        goto out;
    handshake(c, s, &rc_c, &rc_s);
    CHECK(rc_c == TLS_DONE && rc_s == TLS_DONE);
    CHECK_EQ(tls_write(c, "hello, slowly", 13), TLS_DONE);
    len = tls_out_take(c, wire, sizeof(wire));
    CHECK(len > 13);
    for (size_t i = 0; i < len; i++) {
        int rc;
        CHECK_EQ(tls_feed(s, wire + i, 1), 0);
        rc = tls_read(s, buf + got, sizeof(buf) - got, &n);
        if (rc == TLS_DONE)
            got += n;
        else
            again += rc == TLS_AGAIN;
    }
    CHECK_EQ(again, (int)len - 1);
    CHECK(got == 13 && memcmp(buf, "hello, slowly", 13) == 0);
out:
    tls_free(c);
    tls_free(s);
}

static void test_close_notify(void)
{
    struct tls *s = server_for("bye.example", "bye.example");
    struct tls *c = tls_client_new(client_ctx, "bye.example", 443);
    char buf[64];
    size_t got;
    int rc_c, rc_s;

    CHECK(s && c);
    if (!s || !c)
        goto out;
    tls_close_notify(c); /* before the handshake: nothing to do */
    CHECK_EQ(tls_out_pending(c), 0);
    handshake(c, s, &rc_c, &rc_s);
    CHECK(rc_c == TLS_DONE && rc_s == TLS_DONE);
    CHECK_EQ(tls_write(c, "last words", 10), TLS_DONE);
    tls_close_notify(c);
    tls_close_notify(c); /* idempotent */
    pump(c, s);
    /* Data before the alert is delivered first, then the EOF, which sticks. */
    CHECK_EQ(tls_read(s, buf, sizeof(buf), &got), TLS_DONE);
    CHECK(got == 10 && memcmp(buf, "last words", 10) == 0);
    CHECK_EQ(tls_read(s, buf, sizeof(buf), &got), TLS_EOF);
    CHECK_EQ(got, 0);
    CHECK_EQ(tls_read(s, buf, sizeof(buf), &got), TLS_EOF);
    /* A half-close: the server may still answer, then closes too. */
    CHECK_EQ(tls_write(s, "reply", 5), TLS_DONE);
    tls_close_notify(s);
    pump(s, c);
    CHECK_EQ(drain(c, buf, sizeof(buf), &got), TLS_EOF);
    CHECK(got == 5 && memcmp(buf, "reply", 5) == 0);
    CHECK_EQ(ERR_peek_error(), 0);
out:
    tls_free(c);
    tls_free(s);
}

static void test_sni_mismatch(void)
{
    struct tls *s = server_for("example.com", "example.com");
    struct tls *c = tls_client_new(client_ctx, "evil.example.net", 443);
    int rc_c, rc_s;

    CHECK(s && c);
    if (!s || !c)
        goto out;
    handshake(c, s, &rc_c, &rc_s);
    CHECK_EQ(rc_s, TLS_FAIL);
    CHECK_EQ(rc_c, TLS_FAIL);
    CHECK_STR(tls_last_error(s), "client SNI differs from CONNECT host");
    CHECK(contains(tls_last_error(c), "unrecognized name"));
    CHECK_EQ(tls_write(s, "x", 1), TLS_FAIL);
    CHECK_EQ(ERR_peek_error(), 0);
out:
    tls_free(c);
    tls_free(s);
}

static void test_sni_case_and_trailing_dot(void)
{
    const char *variants[] = {"EXAMPLE.com", "example.com."};

    for (size_t i = 0; i < 2; i++) {
        struct tls *s = server_for("example.com", "example.com");
        struct tls *c = tls_client_new(client_ctx, variants[i], 443);
        int rc_c, rc_s;

        CHECK(s && c);
        if (s && c) {
            handshake(c, s, &rc_c, &rc_s);
            CHECK(!contains(tls_last_error(s), "SNI"));
            if (i == 0)
                CHECK(rc_c == TLS_DONE && rc_s == TLS_DONE);
        }
        tls_free(c);
        tls_free(s);
    }
    ERR_clear_error();
}

static void test_wrong_hostname(void)
{
    /* The leaf names another host than the one the client asks for. */
    struct tls *s = server_for("other.example", "wrong.example");
    struct tls *c = tls_client_new(client_ctx, "wrong.example", 443);
    int rc_c, rc_s;

    CHECK(s && c);
    if (!s || !c)
        goto out;
    handshake(c, s, &rc_c, &rc_s);
    CHECK_EQ(rc_c, TLS_FAIL);
    CHECK_EQ(rc_s, TLS_FAIL);
    CHECK(contains(tls_last_error(c), "verify"));
    CHECK(contains(tls_last_error(c), "hostname mismatch"));
    CHECK(!contains(tls_last_error(s), "SNI"));
    CHECK_EQ(ERR_peek_error(), 0);
out:
    tls_free(c);
    tls_free(s);
}

static void test_untrusted_ca(void)
{
    char err[256];
    SSL_CTX *ctx = tls_client_ctx_new(other_pem, NULL, err, sizeof(err));
    struct tls *s = server_for("example.com", "example.com");
    struct tls *c = ctx ? tls_client_new(ctx, "example.com", 443) : NULL;
    int rc_c, rc_s;

    CHECK(ctx && s && c);
    if (ctx && s && c) {
        handshake(c, s, &rc_c, &rc_s);
        CHECK_EQ(rc_c, TLS_FAIL);
        CHECK_EQ(rc_s, TLS_FAIL);
        CHECK(contains(tls_last_error(c), "certificate verify failed: "));
        CHECK(contains(tls_last_error(c), "self-signed certificate in certificate chain"));
    }
    tls_free(c);
    tls_free(s);
    SSL_CTX_free(ctx);
    CHECK_EQ(ERR_peek_error(), 0);
}

/* A leaf signed by the test CA whose only name is its subject CN: no SAN at all, as a private
 * CA's hand-made certificate may be. NULL on failure. */
static X509 *cn_only_leaf(const char *cn)
{
    char path[160];
    FILE *fp;
    EVP_PKEY *cakey = NULL;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    bool ok = false;

    snprintf(path, sizeof(path), "%s/ca.key", ca_dir);
    if ((fp = fopen(path, "r"))) {
        cakey = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
        fclose(fp);
    }
    ok = cakey && x && name && X509_set_version(x, X509_VERSION_3) &&
         ASN1_INTEGER_set(X509_get_serialNumber(x), 4242) &&
         X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (const unsigned char *)cn,
                                    -1, -1, 0) &&
         X509_set_subject_name(x, name) &&
         X509_set_issuer_name(x, X509_get_subject_name(ca_cert(ca))) &&
         X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
         X509_gmtime_adj(X509_getm_notAfter(x), 3600) && X509_set_pubkey(x, ca_leaf_key(ca)) &&
         X509_sign(x, cakey, EVP_sha256()) > 0;
    EVP_PKEY_free(cakey);
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    ERR_clear_error();
    return x;
}

/* RFC 9525: the subject CN is never a name to match, even when the certificate has no SAN. */
static void test_cn_only_certificate_matches_no_name(void)
{
    X509 *leaf = cn_only_leaf("cnonly.example");
    struct tls *s =
        leaf ? tls_server_new(server_ctx, leaf, ca_leaf_key(ca), ca_cert(ca), "cnonly.example")
             : NULL;
    struct tls *c = tls_client_new(client_ctx, "cnonly.example", 443);
    int rc_c, rc_s;

    CHECK(leaf && s && c);
    if (s && c) {
        handshake(c, s, &rc_c, &rc_s);
        CHECK_EQ(rc_c, TLS_FAIL);
        CHECK(contains(tls_last_error(c), "hostname mismatch"));
    }
    tls_free(c);
    tls_free(s);
    X509_free(leaf);
    CHECK_EQ(ERR_peek_error(), 0);
}

/* One handshake of a client from ctx with a server whose leaf comes from issuer; true when the
 * client verified it. */
static bool verifies(SSL_CTX *ctx, struct ca *issuer, const char *host)
{
    X509 *leaf = ca_leaf(issuer, host);
    struct tls *s =
        leaf ? tls_server_new(server_ctx, leaf, ca_leaf_key(issuer), ca_cert(issuer), host) : NULL;
    struct tls *c = ctx ? tls_client_new(ctx, host, 443) : NULL;
    int rc_c = TLS_FAIL, rc_s;

    if (s && c)
        handshake(c, s, &rc_c, &rc_s);
    tls_free(c);
    tls_free(s);
    X509_free(leaf);
    return rc_c == TLS_DONE;
}

/* --upstream-ca adds its CAs to the system store (SSL_CERT_FILE plays the system roots here);
 * --upstream-ca-only replaces it. */
static void test_trust_file_adds_to_or_replaces_the_system_store(void)
{
    char err[256];
    struct ca *other = ca_load(other_dir, err, sizeof(err));
    const char *saved = getenv("SSL_CERT_FILE");
    char *saved_copy = saved ? strdup(saved) : NULL;

    CHECK(other != NULL);
    setenv("SSL_CERT_FILE", other_pem, 1);
    SSL_CTX *adds = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    SSL_CTX *only = tls_client_ctx_new(NULL, ca_pem, err, sizeof(err));
    SSL_CTX *system = tls_client_ctx_new(NULL, NULL, err, sizeof(err));
    if (saved_copy)
        setenv("SSL_CERT_FILE", saved_copy, 1);
    else
        unsetenv("SSL_CERT_FILE");
    free(saved_copy);
    CHECK(adds && only && system);
    if (other && adds && only && system) {
        CHECK(verifies(adds, ca, "file.example"));
        CHECK(verifies(adds, other, "system.example"));
        CHECK(verifies(only, ca, "file.example"));
        CHECK(!verifies(only, other, "system.example"));
        CHECK(!verifies(system, ca, "file.example"));
        CHECK(verifies(system, other, "system.example"));
    }
    SSL_CTX_free(adds);
    SSL_CTX_free(only);
    SSL_CTX_free(system);
    ca_free(other);
    CHECK_EQ(ERR_peek_error(), 0);
}

static void test_ip_literals(void)
{
    static const struct {
        const char *leaf, *host;
        bool ok;
    } cases[] = {
        {"127.0.0.1", "127.0.0.1", true},
        {"::1", "::1", true},
        {"127.0.0.2", "127.0.0.1", false},
        {"localhost", "127.0.0.1", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tls *s = server_for(cases[i].leaf, cases[i].host);
        struct tls *c = tls_client_new(client_ctx, cases[i].host, 8443);
        int rc_c, rc_s;

        CHECK(s && c);
        if (s && c) {
            /* No SNI goes out for a literal, so the server's SNI check never fires. */
            handshake(c, s, &rc_c, &rc_s);
            CHECK_EQ(rc_c, cases[i].ok ? TLS_DONE : TLS_FAIL);
            CHECK_EQ(rc_s, cases[i].ok ? TLS_DONE : TLS_FAIL);
            if (!cases[i].ok)
                CHECK(contains(tls_last_error(c), "IP address mismatch"));
            CHECK(!contains(tls_last_error(s), "SNI"));
        }
        tls_free(c);
        tls_free(s);
    }
    CHECK_EQ(ERR_peek_error(), 0);
}

static void test_alpn(void)
{
    char err[256];
    SSL_CTX *h2 = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    SSL_CTX *none = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    SSL_CTX *both = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    static const unsigned char h2_only[] = "\x02h2";
    static const unsigned char h2_and_11[] = "\x02h2\x08http/1.1";
    struct tls *s, *c;
    int rc_c, rc_s;

    CHECK(h2 && none && both);
    if (!h2 || !none || !both)
        goto out;
    CHECK_EQ(SSL_CTX_set_alpn_protos(h2, h2_only, sizeof(h2_only) - 1), 0);
    CHECK_EQ(SSL_CTX_set_alpn_protos(none, NULL, 0), 0);
    CHECK_EQ(SSL_CTX_set_alpn_protos(both, h2_and_11, sizeof(h2_and_11) - 1), 0);

    /* Only h2 offered: refused with no_application_protocol. */
    s = server_for("example.com", "example.com");
    c = tls_client_new(h2, "example.com", 443);
    handshake(c, s, &rc_c, &rc_s);
    CHECK_EQ(rc_s, TLS_FAIL);
    CHECK_EQ(rc_c, TLS_FAIL);
    CHECK(contains(tls_last_error(s), "ALPN"));
    CHECK(contains(tls_last_error(c), "no application protocol"));
    tls_free(c);
    tls_free(s);

    /* No ALPN at all: fine, nothing negotiated. */
    s = server_for("example.com", "example.com");
    c = tls_client_new(none, "example.com", 443);
    handshake(c, s, &rc_c, &rc_s);
    CHECK(rc_c == TLS_DONE && rc_s == TLS_DONE);
    CHECK_STR(tls_alpn(s), "");
    CHECK_STR(tls_alpn(c), "");
    tls_free(c);
    tls_free(s);

    /* h2 first, http/1.1 second: the server picks http/1.1. */
    s = server_for("example.com", "example.com");
    c = tls_client_new(both, "example.com", 443);
    handshake(c, s, &rc_c, &rc_s);
    CHECK(rc_c == TLS_DONE && rc_s == TLS_DONE);
    CHECK_STR(tls_alpn(s), "http/1.1");
    CHECK_STR(tls_alpn(c), "http/1.1");
    tls_free(c);
    tls_free(s);
out:
    SSL_CTX_free(h2);
    SSL_CTX_free(none);
    SSL_CTX_free(both);
    CHECK_EQ(ERR_peek_error(), 0);
}

/* One connection that handshakes and carries a request and a response: the response read is
 * what makes a TLS 1.3 client process the NewSessionTickets that follow the handshake. */
static bool connect_once(SSL_CTX *ctx, const char *host, uint16_t port, bool *reused)
{
    struct tls *s = server_for(host, host);
    struct tls *c = tls_client_new(ctx, host, port);
    char buf[64];
    size_t got = 0;
    int rc_c = TLS_FAIL, rc_s = TLS_FAIL;
    bool ok = false;

    if (s && c) {
        handshake(c, s, &rc_c, &rc_s);
        ok = rc_c == TLS_DONE && rc_s == TLS_DONE && tls_write(c, "ping", 4) == TLS_DONE;
        pump(c, s);
        ok = ok && drain(s, buf, sizeof(buf), &got) == TLS_AGAIN && got == 4;
        ok = ok && tls_write(s, "pong", 4) == TLS_DONE;
        pump(s, c);
        ok = ok && drain(c, buf, sizeof(buf), &got) == TLS_AGAIN && got == 4;
        *reused = tls_session_reused(c);
        if (ok && tls_session_reused(s) != *reused)
            ok = false;
    }
    tls_free(c);
    tls_free(s);
    return ok;
}

static void test_session_resumption(void)
{
    char err[256];
    SSL_CTX *ctx = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    SSL_CTX *ctx12 = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    bool reused = true;

    CHECK(ctx && ctx12);
    if (!ctx || !ctx12)
        goto out;
    CHECK(connect_once(ctx, "resume.example", 443, &reused));
    CHECK(!reused);
    CHECK(connect_once(ctx, "resume.example", 443, &reused));
    CHECK(reused);
    CHECK(connect_once(ctx, "resume.example", 443, &reused));
    CHECK(reused);
    /* Keyed by host and port. */
    CHECK(connect_once(ctx, "resume.example", 8443, &reused));
    CHECK(!reused);
    CHECK(connect_once(ctx, "other.example", 443, &reused));
    CHECK(!reused);
    /* Another context (another trust setting) never sees this one's sessions. */
    CHECK(connect_once(client_ctx, "resume.example", 443, &reused));
    CHECK(!reused);

    /* A failed connection that offered the cached session drops it. Here the server does not
     * know the ticket (another context, another ticket key), falls back to a full handshake
     * and presents a leaf for another name. */
    {
        SSL_CTX *stranger = tls_server_ctx_new(err, sizeof(err));
        X509 *leaf = ca_leaf(ca, "nope.example");
        struct tls *s = stranger && leaf ? tls_server_new(stranger, leaf, ca_leaf_key(ca),
                                                          ca_cert(ca), "resume.example")
                                         : NULL;
        struct tls *c = tls_client_new(ctx, "resume.example", 443);
        int rc_c = TLS_AGAIN, rc_s = TLS_AGAIN;

        CHECK(s && c);
        if (s && c)
            handshake(c, s, &rc_c, &rc_s);
        CHECK_EQ(rc_c, TLS_FAIL);
        CHECK(contains(tls_last_error(c), "hostname mismatch"));
        tls_free(c);
        tls_free(s);
        X509_free(leaf);
        SSL_CTX_free(stranger);
    }
    CHECK(connect_once(ctx, "resume.example", 443, &reused));
    CHECK(!reused);
    CHECK(connect_once(ctx, "resume.example", 443, &reused));
    CHECK(reused);

    /* TLS 1.2: the session is ready at the end of the handshake. */
    CHECK(SSL_CTX_set_max_proto_version(ctx12, TLS1_2_VERSION));
    CHECK(connect_once(ctx12, "resume.example", 443, &reused));
    CHECK(!reused);
    CHECK(connect_once(ctx12, "resume.example", 443, &reused));
    CHECK(reused);
out:
    SSL_CTX_free(ctx);
    SSL_CTX_free(ctx12);
    CHECK_EQ(ERR_peek_error(), 0);
}

struct worker {
    SSL_CTX *ctx;
    int ok, reused;
};

static void *connect_many(void *arg)
{
    struct worker *w = arg;

    for (int i = 0; i < 6; i++) {
        bool reused = false;
        w->ok += connect_once(w->ctx, "shared.example", 443, &reused);
        w->reused += reused;
    }
    return NULL;
}

/* Worker threads share the client context and its session cache, and the server context. */
static void test_threads_share_sessions(void)
{
    char err[256];
    SSL_CTX *ctx = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    struct worker w[4];
    pthread_t th[4];
    int ok = 0, reused = 0;

    CHECK(ctx != NULL);
    if (!ctx)
        return;
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.ctx = ctx};
        CHECK_EQ(pthread_create(&th[i], NULL, connect_many, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
        reused += w[i].reused;
    }
    CHECK_EQ(ok, 24);
    /* Only connections that started before any ticket arrived do a full handshake. */
    CHECK(reused >= 20);
    SSL_CTX_free(ctx);
}

static void test_misuse_and_ctx_errors(void)
{
    char err[256] = "";
    struct tls *s = server_for("example.com", "example.com");
    struct tls *c = tls_client_new(client_ctx, "example.com", 443);
    SSL_CTX *ctx;

    CHECK(s && c);
    if (s && c) {
        CHECK_EQ(tls_write(c, "early", 5), TLS_FAIL);
        CHECK(contains(tls_last_error(c), "handshake"));
        CHECK_EQ(tls_handshake(c), TLS_FAIL); /* sticky */
        /* Plain HTTP inside the tunnel instead of a ClientHello. */
        CHECK_EQ(tls_feed(s, "GET / HTTP/1.1\r\n\r\n", 18), 0);
        CHECK_EQ(tls_handshake(s), TLS_FAIL);
        CHECK_STR(tls_last_error(s), "http request");
    }
    tls_free(c);
    tls_free(s);

    /* A handshake record with a malformed body: refused with an alert to send. */
    s = server_for("example.com", "example.com");
    if (s) {
        CHECK_EQ(tls_feed(s, "\x16\x03\x01\x00\x06\x01\x00\x00\x02zz", 11), 0);
        CHECK_EQ(tls_handshake(s), TLS_FAIL);
        CHECK(tls_last_error(s)[0] != '\0');
        CHECK(tls_out_pending(s) > 0);
    }
    tls_free(s);
    tls_free(NULL);

    ctx = tls_client_ctx_new("/nonexistent/ca.pem", NULL, err, sizeof(err));
    CHECK(ctx == NULL);
    CHECK(contains(err, "/nonexistent/ca.pem"));
    SSL_CTX_free(ctx);
    ctx = tls_client_ctx_new(NULL, NULL, err, sizeof(err)); /* the system store */
    CHECK(ctx != NULL);
    SSL_CTX_free(ctx);
    CHECK_EQ(ERR_peek_error(), 0);
}

static bool setup(void)
{
    char err[256];

    snprintf(ca_dir, sizeof(ca_dir), "/tmp/airlock-test-tls-XXXXXX");
    snprintf(other_dir, sizeof(other_dir), "/tmp/airlock-test-tls-XXXXXX");
    if (!mkdtemp(ca_dir) || !mkdtemp(other_dir))
        return false;
    snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", ca_dir);
    snprintf(other_pem, sizeof(other_pem), "%s/ca.pem", other_dir);
    if (ca_create(ca_dir, false, err, sizeof(err)) < 0 ||
        ca_create(other_dir, false, err, sizeof(err)) < 0) {
        fprintf(stderr, "ca_create: %s\n", err);
        return false;
    }
    ca = ca_load(ca_dir, err, sizeof(err));
    server_ctx = tls_server_ctx_new(err, sizeof(err));
    client_ctx = tls_client_ctx_new(ca_pem, NULL, err, sizeof(err));
    if (!ca || !server_ctx || !client_ctx) {
        fprintf(stderr, "setup: %s\n", err);
        return false;
    }
    return true;
}

int main(void)
{
    bool ok = setup();

    CHECK(ok);
    if (ok) {
        RUN(test_handshake_and_data);
        RUN(test_large_payload);
        RUN(test_byte_at_a_time);
        RUN(test_close_notify);
        RUN(test_sni_mismatch);
        RUN(test_sni_case_and_trailing_dot);
        RUN(test_wrong_hostname);
        RUN(test_untrusted_ca);
        RUN(test_cn_only_certificate_matches_no_name);
        RUN(test_trust_file_adds_to_or_replaces_the_system_store);
        RUN(test_ip_literals);
        RUN(test_alpn);
        RUN(test_session_resumption);
        RUN(test_threads_share_sessions);
        RUN(test_misuse_and_ctx_errors);
    }
    SSL_CTX_free(client_ctx);
    SSL_CTX_free(server_ctx);
    ca_free(ca);
    rm_rf(ca_dir);
    rm_rf(other_dir);
    return test_report();
}
