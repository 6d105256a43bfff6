/* SPDX-License-Identifier: MIT */
/* tls: one SSL per side over a pair of memory BIOs, plus the two SSL_CTX flavours (the
 * client-facing MITM server, the verifying upstream client with its session cache). It never
 * touches a socket or the loop. Invariant: every public call starts and ends with a clean
 * OpenSSL error queue, and the first failure reason of a connection sticks in its buffer. */
#include "airlock/tls.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

/* An emptied memory BIO keeps at most this much buffer (see bio_trim()). */
#define TLS_BIO_KEEP 0

#define TLS_SESS_CACHE_SIZE 256
#define TLS_SESS_KEY_MAX    264 /* a 253-byte name, ':' and a port */

#define TLS_F_DONE    0x01u /* handshake complete */
#define TLS_F_FAILED  0x02u /* sticky: a fatal error happened, err holds why */
#define TLS_F_EOF     0x04u /* close_notify received */
#define TLS_F_CLOSED  0x08u /* our close_notify queued */
#define TLS_F_OFFERED 0x10u /* a cached session was offered */
#define TLS_F_H2      0x20u /* h2 may be negotiated (tls_offer_h2) */

struct tls {
    SSL *ssl; /* owns rbio and wbio */
    BIO *rbio, *wbio;
    uint16_t port;
    uint8_t flags;
    char err[120];
    char host[]; /* server: the CONNECT host; client: the upstream host */
};

static const unsigned char alpn_http11[] = "\x08http/1.1";
static const unsigned char alpn_h2_http11[] = "\x02h2\x08http/1.1";

/* ---- client session cache --------------------------------------------------------------- */

/* Sessions live in the client SSL_CTX's ex_data, so two contexts with different trust settings
 * never resume each other's sessions, and the cache dies with its context. They are kept in
 * DER, and every connection decodes its own copy: OpenSSL writes to an SSL_SESSION while a
 * connection uses it, so one object shared by worker threads would be a data race (curl hit
 * exactly this and moved to the same design). */
struct sess_entry {
    uint64_t hash;
    uint64_t used;  /* LRU clock value of the last store or hit */
    time_t expires; /* the session's own timeout */
    unsigned char *der;
    size_t len;
    char key[TLS_SESS_KEY_MAX];
};

struct sess_cache {
    pthread_mutex_t lock;
    uint64_t clock;
    struct sess_entry e[TLS_SESS_CACHE_SIZE];
};

static pthread_once_t sess_once = PTHREAD_ONCE_INIT;
static int sess_idx = -1;

static void sess_cache_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                            void *argp)
{
    struct sess_cache *sc = ptr;

    if (!sc)
        return;
    for (size_t i = 0; i < TLS_SESS_CACHE_SIZE; i++)
        OPENSSL_clear_free(sc->e[i].der, sc->e[i].len); /* it holds a master secret */
    pthread_mutex_destroy(&sc->lock);
    free(sc);
}

static void sess_idx_init(void)
{
    sess_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sess_cache_free);
}

static uint64_t hash_key(const char *s)
{
    uint64_t h = 14695981039346656037ull;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* host:port is unambiguous even for IPv6 literals: the port is after the last ':'. */
static int sess_key(const struct tls *t, char *key)
{
    int n = snprintf(key, TLS_SESS_KEY_MAX, "%s:%u", t->host, (unsigned)t->port);
    return n < 0 || n >= TLS_SESS_KEY_MAX ? -1 : 0;
}

static struct sess_cache *sess_cache_of(SSL *ssl)
{
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), sess_idx);
}

/* The session cache of t's context and t's key in it (host:port) with its hash; NULL when
 * there is no cache or no key to file a session under. */
static struct sess_cache *sess_cache_for(struct tls *t, char key[TLS_SESS_KEY_MAX], uint64_t *hash)
{
    struct sess_cache *sc = sess_cache_of(t->ssl);

    if (!sc || sess_key(t, key) < 0)
        return NULL;
    *hash = hash_key(key);
    return sc;
}

/* Under sc->lock: the entry holding key, or -1. */
static int sess_find(struct sess_cache *sc, const char *key, uint64_t hash)
{
    for (int i = 0; i < TLS_SESS_CACHE_SIZE; i++) {
        if (sc->e[i].der && sc->e[i].hash == hash && strcmp(sc->e[i].key, key) == 0)
            return i;
    }
    return -1;
}

/* t's cache, locked (the caller unlocks it), with t's key and hash and in *i the entry that
 * holds the key or -1; NULL (nothing locked) when sess_cache_for finds no cache or key. */
static struct sess_cache *sess_lock_entry(struct tls *t, char key[TLS_SESS_KEY_MAX], uint64_t *hash,
                                          int *i)
{
    struct sess_cache *sc = sess_cache_for(t, key, hash);

    if (sc) {
        pthread_mutex_lock(&sc->lock);
        *i = sess_find(sc, key, *hash);
    }
    return sc;
}

/* Under sc->lock. */
static void sess_clear(struct sess_entry *e)
{
    OPENSSL_clear_free(e->der, e->len);
    e->der = NULL;
    e->len = 0;
}

/* Called when a session becomes resumable: after the handshake in TLS 1.2, and for each
 * NewSessionTicket in TLS 1.3 (RFC 8446 §4.6.1), which arrives after the handshake and is
 * processed inside SSL_read. The newest replaces the older one: it has the longest life left.
 * Returns 0: we keep a copy, not OpenSSL's reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct tls *t = SSL_get_app_data(ssl);
    struct sess_cache *sc;
    char key[TLS_SESS_KEY_MAX];
    unsigned char *der, *p;
    uint64_t hash;
    int len, i, victim = 0;

    if (!t || !sess_cache_of(ssl) || !SSL_SESSION_is_resumable(sess))
        return 0;
    len = i2d_SSL_SESSION(sess, NULL);
    if (len <= 0 || !(der = malloc((size_t)len)))
        return 0;
    p = der;
    if (i2d_SSL_SESSION(sess, &p) != len || !(sc = sess_lock_entry(t, key, &hash, &i))) {
        OPENSSL_clear_free(der, (size_t)len);
        return 0;
    }
    if (i < 0) {
        for (i = 0; i < TLS_SESS_CACHE_SIZE; i++) {
            if (!sc->e[i].der)
                break;
            if (sc->e[i].used < sc->e[victim].used)
                victim = i;
        }
        if (i == TLS_SESS_CACHE_SIZE)
            i = victim;
        sess_clear(&sc->e[i]);
        sc->e[i].hash = hash;
        memcpy(sc->e[i].key, key, strlen(key) + 1);
    } else {
        sess_clear(&sc->e[i]);
    }
    sc->e[i].der = der;
    sc->e[i].len = (size_t)len;
    sc->e[i].expires = (time_t)SSL_SESSION_get_time(sess) + (time_t)SSL_SESSION_get_timeout(sess);
    sc->e[i].used = ++sc->clock;
    pthread_mutex_unlock(&sc->lock);
    return 0;
}

/* Offer the cached session for host:port, if any. Failure only costs a full handshake. */
static void sess_offer(struct tls *t)
{
    SSL_SESSION *sess = NULL;
    char key[TLS_SESS_KEY_MAX];
    unsigned char *der = NULL;
    const unsigned char *p;
    size_t len = 0;
    uint64_t hash;
    int i;
    struct sess_cache *sc = sess_lock_entry(t, key, &hash, &i);

    if (!sc)
        return;
    if (i >= 0 && time(NULL) >= sc->e[i].expires) {
        sess_clear(&sc->e[i]);
    } else if (i >= 0 && (der = malloc(sc->e[i].len))) {
        /* Decode outside the lock: it parses the peer's certificate. */
        len = sc->e[i].len;
        memcpy(der, sc->e[i].der, len);
        sc->e[i].used = ++sc->clock;
    }
    pthread_mutex_unlock(&sc->lock);
    if (!der)
        return;
    p = der;
    sess = d2i_SSL_SESSION(NULL, &p, (long)len);
    OPENSSL_clear_free(der, len);
    if (sess && SSL_set_session(t->ssl, sess)) /* takes its own reference */
        t->flags |= TLS_F_OFFERED;
    SSL_SESSION_free(sess);
    ERR_clear_error();
}

/* A connection that failed after offering a session drops it: whatever went wrong, the next
 * attempt starts from a full handshake. */
static void sess_drop(struct tls *t)
{
    char key[TLS_SESS_KEY_MAX];
    uint64_t hash;
    int i;
    struct sess_cache *sc = sess_lock_entry(t, key, &hash, &i);

    if (!sc)
        return;
    if (i >= 0)
        sess_clear(&sc->e[i]);
    pthread_mutex_unlock(&sc->lock);
}

/* ---- errors ----------------------------------------------------------------------------- */

static void set_err(struct tls *t, const char *msg)
{
    if (!t->err[0])
        snprintf(t->err, sizeof(t->err), "%s", msg);
}

/* Record why the last SSL_* call failed (the first reason wins), mark the connection failed
 * and leave the error queue empty for the next connection on this thread. */
static void fail(struct tls *t, int sslerr)
{
    unsigned long e = ERR_peek_error();

    t->flags |= TLS_F_FAILED;
    if (!t->err[0]) {
        long vr = SSL_get_verify_result(t->ssl);
        char buf[160];

        if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SSL &&
            ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK) {
            snprintf(t->err, sizeof(t->err), "certificate verify failed: %s",
                     X509_verify_cert_error_string(vr));
        } else if (e != 0) {
            snprintf(t->err, sizeof(t->err), "%s", tls_error_text(buf, sizeof(buf)));
        } else if (sslerr == SSL_ERROR_SYSCALL) {
            set_err(t, "unexpected end of TLS stream");
        } else {
            snprintf(t->err, sizeof(t->err), "TLS error %d", sslerr);
        }
    }
    ERR_clear_error();
}

const char *tls_error_text(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_error();
    const char *r;

    if (!e)
        return NULL;
    if (ERR_SYSTEM_ERROR(e))
        return strerror(ERR_GET_REASON(e));
    if ((r = ERR_reason_error_string(e)) != NULL)
        return r;
    ERR_error_string_n(e, buf, cap);
    return buf;
}

static void ctx_fail(char *err, size_t errlen, const char *what)
{
    char buf[160];
    const char *r = tls_error_text(buf, sizeof(buf));

    if (err && errlen)
        snprintf(err, errlen, "%s%s%s", what, r ? ": " : "", r ? r : "");
    ERR_clear_error();
}

/* ---- server context --------------------------------------------------------------------- */

/* RFC 6066 §3 names carry no trailing dot, but some clients send one; DNS names compare
 * without regard to ASCII case (RFC 4343). */
static bool host_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);

    if (la > 0 && a[la - 1] == '.')
        la--;
    if (lb > 0 && b[lb - 1] == '.')
        lb--;
    if (la != lb)
        return false;
    for (size_t i = 0; i < la; i++) {
        unsigned char ca = (unsigned char)a[i], cb = (unsigned char)b[i];
        if (ca >= 'A' && ca <= 'Z')
            ca = (unsigned char)(ca - 'A' + 'a');
        if (cb >= 'A' && cb <= 'Z')
            cb = (unsigned char)(cb - 'A' + 'a');
        if (ca != cb)
            return false;
    }
    return true;
}

/* The leaf names the CONNECT host; a client asking for another name through this tunnel is
 * either confused or probing, so the handshake stops here with unrecognized_name (RFC 6066
 * §3). No SNI at all is fine: clients send none for IP literals. */
static int on_servername(SSL *ssl, int *al, void *arg)
{
    struct tls *t = SSL_get_app_data(ssl);
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    if (!t || !sni || host_equal(sni, t->host))
        return SSL_TLSEXT_ERR_OK;
    set_err(t, "client SNI differs from CONNECT host");
    *al = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Whether an ALPN list (RFC 7301 §3.1) offers name; *at is where. */
static bool alpn_offers(const unsigned char *in, unsigned int inlen, const char *name,
                        const unsigned char **at)
{
    size_t len = strlen(name);
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (n == 0 || n > inlen - i - 1)
            return false; /* malformed list */
        if (n == len && memcmp(in + i + 1, name, len) == 0) {
            *at = in + i + 1;
            return true;
        }
        i += 1 + n;
    }
    return false;
}

/* ALPN never translates: h2 only when the upstream selected it (tls_offer_h2), else
 * http/1.1; a client that offers neither is refused with no_application_protocol (RFC 7301
 * §3.2) rather than let it send what nobody here would understand. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    struct tls *t = SSL_get_app_data(ssl);
    if (t && (t->flags & TLS_F_H2) && alpn_offers(in, inlen, "h2", out)) {
        *outlen = 2;
        return SSL_TLSEXT_ERR_OK;
    }
    if (alpn_offers(in, inlen, "http/1.1", out)) {
        *outlen = 8;
        return SSL_TLSEXT_ERR_OK;
    }
    if (t)
        set_err(t, t->flags & TLS_F_H2 ? "client ALPN offers neither h2 nor http/1.1"
                                       : "client ALPN does not offer http/1.1 (and the upstream "
                                         "did not select h2)");
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A context with what both directions share: TLS 1.2 at least, idle record buffers released
 * (most tunnels sit idle most of the time), no renegotiation (a CPU-exhaustion lever with no
 * use here). NULL with err filled. */
static SSL_CTX *ctx_new(const SSL_METHOD *method, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(method);

    if (!ctx) {
        ctx_fail(err, errlen, "SSL_CTX_new");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        ctx_fail(err, errlen, "TLS minimum version");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    return ctx;
}

SSL_CTX *tls_server_ctx_new(char *err, size_t errlen)
{
    SSL_CTX *ctx;

    ERR_clear_error();
    if (!(ctx = ctx_new(TLS_server_method(), err, errlen)))
        return NULL;
    /* Resumption works through stateless tickets, whose key the context holds for every
     * worker; a server-side session store would only grow. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    ERR_clear_error();
    return ctx;
}

/* ---- client context --------------------------------------------------------------------- */

/* Add the certificates of file (PEM, one or more) to ctx's store; NULL adds nothing. */
static int load_ca_file(SSL_CTX *ctx, const char *file, char *err, size_t errlen)
{
    char what[300];

    if (!file || SSL_CTX_load_verify_locations(ctx, file, NULL))
        return 0;
    snprintf(what, sizeof(what), "cannot load CA file %s", file);
    ctx_fail(err, errlen, what);
    return -1;
}

SSL_CTX *tls_client_ctx_new(const char *ca_file, const char *ca_file_only, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    struct sess_cache *sc = NULL;

    ERR_clear_error();
    pthread_once(&sess_once, sess_idx_init);
    if (sess_idx < 0) {
        ctx_fail(err, errlen, "session cache index");
        return NULL;
    }
    if (!(ctx = ctx_new(TLS_client_method(), err, errlen)))
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* The system store is whatever SSL_CERT_FILE and SSL_CERT_DIR in airlock's own environment
     * name, else OpenSSL's default paths. */
    if (!ca_file_only && !SSL_CTX_set_default_verify_paths(ctx)) {
        ctx_fail(err, errlen, "cannot load the system trust store");
        goto fail;
    }
    if (load_ca_file(ctx, ca_file, err, errlen) < 0 ||
        load_ca_file(ctx, ca_file_only, err, errlen) < 0)
        goto fail;
    /* SSL_CTX_set_alpn_protos() returns 0 on success, unlike nearly everything else. */
    if (SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof(alpn_http11) - 1) != 0) {
        ctx_fail(err, errlen, "ALPN");
        goto fail;
    }
    sc = calloc(1, sizeof(*sc));
    if (!sc || pthread_mutex_init(&sc->lock, NULL) != 0) {
        free(sc);
        ctx_fail(err, errlen, "session cache: out of memory");
        goto fail;
    }
    if (!SSL_CTX_set_ex_data(ctx, sess_idx, sc)) {
        pthread_mutex_destroy(&sc->lock);
        free(sc);
        ctx_fail(err, errlen, "session cache");
        goto fail;
    }
    /* OpenSSL's own client cache is write-only (it never offers a session by itself): keep
     * sessions in ours, keyed by host:port, and skip the internal store. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    ERR_clear_error();
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

/* ---- endpoints -------------------------------------------------------------------------- */

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* One calloc for the struct and its host, then the SSL with its two memory BIOs. */
static struct tls *tls_alloc(SSL_CTX *ctx, const char *host)
{
    size_t len = strlen(host);
    struct tls *t = calloc(1, sizeof(*t) + len + 1);

    if (!t)
        return NULL;
    memcpy(t->host, host, len + 1);
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    /* An empty read BIO means "more to come", never end of stream: the peer's close is a
     * close_notify or the socket's EOF, which the loop modules see. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_app_data(t->ssl, t);
    return t;
}

/* The end of both constructors: t when ok, else nothing (t freed); the error queue clean. */
static struct tls *constructed(struct tls *t, bool ok)
{
    if (!ok) {
        tls_free(t);
        t = NULL;
    }
    ERR_clear_error();
    return t;
}

struct tls *tls_server_new(SSL_CTX *ctx, X509 *leaf, EVP_PKEY *key, X509 *chain,
                           const char *connect_host)
{
    struct tls *t;
    bool ok;

    ERR_clear_error();
    t = tls_alloc(ctx, connect_host);
    ok = t && SSL_use_certificate(t->ssl, leaf) == 1 && SSL_use_PrivateKey(t->ssl, key) == 1 &&
         (!chain || SSL_add1_chain_cert(t->ssl, chain) == 1);
    if (ok)
        SSL_set_accept_state(t->ssl);
    return constructed(t, ok);
}

/* What the upstream's certificate must name: host, an IP literal or a DNS name. */
static bool expect_peer(struct tls *t, const char *host)
{
    if (is_ip_literal(host)) {
        /* RFC 6066 §3: no SNI for a literal address; the certificate must carry the IP in a
         * SAN (RFC 6125 §6.2 leaves IP identities to iPAddress entries). */
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) == 1;
    }
    if (!SSL_set_tlsext_host_name(t->ssl, host) || !SSL_set1_host(t->ssl, host))
        return false;
    /* "f*.example.com" wildcards are a CA/B-forbidden oddity; match whole labels only. A
     * certificate without a DNS SAN is not matched on its subject CN (RFC 6125 §6.4.4 allows
     * that fallback, RFC 9525 removed it): a private CA's CN-only leaf names no host. */
    SSL_set_hostflags(t->ssl,
                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    return true;
}

struct tls *tls_client_new(SSL_CTX *ctx, const char *host, uint16_t port)
{
    struct tls *t;
    bool ok;

    ERR_clear_error();
    t = tls_alloc(ctx, host);
    ok = t && expect_peer(t, host);
    if (ok) {
        t->port = port; /* before sess_offer: the session cache is keyed by host:port */
        SSL_set_connect_state(t->ssl);
        sess_offer(t);
    }
    return constructed(t, ok);
}

void tls_free(struct tls *t)
{
    if (!t)
        return;
    /* A connection freed without close_notify leaves its cached copy usable: RFC 8446 §6.1
     * dropped the old rule against resuming such sessions, and peers often just close. */
    if ((t->flags & (TLS_F_FAILED | TLS_F_OFFERED)) == (TLS_F_FAILED | TLS_F_OFFERED))
        sess_drop(t);
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

/* Give back a drained memory BIO's buffer. Memory BIOs never shrink on their own, and an idle
 * tunnel should cost a few KiB, not its largest burst; one small allocation per flush is
 * cheap next to the cipher work on the same bytes. */
static void bio_trim(BIO *b)
{
    BUF_MEM *bm = NULL, *fresh;

    if (BIO_ctrl_pending(b) != 0)
        return;
    BIO_get_mem_ptr(b, &bm);
    if (!bm || bm->max <= TLS_BIO_KEEP)
        return;
    fresh = BUF_MEM_new();
    if (fresh)
        BIO_set_mem_buf(b, fresh, BIO_CLOSE); /* frees the old BUF_MEM */
}

/* At an idle point (all input consumed): release OpenSSL's record buffers too.
 * SSL_MODE_RELEASE_BUFFERS frees them after application reads and writes, but post-handshake
 * messages (TLS 1.3 NewSessionTicket, KeyUpdate) set up both and leave the 16 KiB write buffer
 * behind. A record whose header is in and whose body is not ("RB") must keep its buffer:
 * OpenSSL before 3.0.14 would free it anyway (CVE-2024-4741), so that case is never asked. */
static void release_idle(struct tls *t)
{
    if (BIO_ctrl_pending(t->rbio) == 0 && !SSL_has_pending(t->ssl) &&
        strcmp(SSL_rstate_string(t->ssl), "RB") != 0) {
        if (!SSL_free_buffers(t->ssl)) {
            /* buffered data after all: keep them */
        }
    }
    bio_trim(t->rbio);
}

int tls_feed(struct tls *t, const char *p, size_t len)
{
    size_t written = 0;

    if (len == 0)
        return 0;
    if (!BIO_write_ex(t->rbio, p, len, &written) || written != len) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

int tls_handshake(struct tls *t)
{
    int r, e;

    if (t->flags & TLS_F_FAILED)
        return TLS_FAIL;
    if (t->flags & TLS_F_DONE)
        return TLS_DONE;
    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->flags |= TLS_F_DONE;
        release_idle(t);
        ERR_clear_error();
        return TLS_DONE;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        bio_trim(t->rbio);
        ERR_clear_error();
        return TLS_AGAIN;
    }
    fail(t, e);
    return TLS_FAIL;
}

bool tls_handshake_done(const struct tls *t)
{
    return (t->flags & TLS_F_DONE) != 0;
}

int tls_read(struct tls *t, char *buf, size_t cap, size_t *nread)
{
    size_t total = 0;
    int rc = TLS_DONE;

    *nread = 0;
    if (t->flags & TLS_F_FAILED)
        return TLS_FAIL;
    if (t->flags & TLS_F_EOF)
        return TLS_EOF;
    if (cap == 0)
        return TLS_AGAIN; /* no room: TLS_DONE must mean bytes */
    /* SSL_read_ex returns one record at a time; fill the caller's buffer from every record
     * already buffered so the parser runs once per batch, not once per record. */
    while (total < cap) {
        size_t n = 0;
        int e;

        /* Nothing new and nothing buffered: SSL_read would only set up a read buffer to
         * find that out. */
        if (SSL_is_init_finished(t->ssl) && BIO_ctrl_pending(t->rbio) == 0 &&
            !SSL_has_pending(t->ssl)) {
            rc = TLS_AGAIN;
            break;
        }
        ERR_clear_error();
        if (SSL_read_ex(t->ssl, buf + total, cap - total, &n)) {
            total += n;
            continue;
        }
        e = SSL_get_error(t->ssl, 0);
        if (e == SSL_ERROR_WANT_READ) {
            rc = TLS_AGAIN;
        } else if (e == SSL_ERROR_ZERO_RETURN) {
            t->flags |= TLS_F_EOF;
            rc = TLS_EOF;
        } else {
            fail(t, e);
            rc = TLS_FAIL;
        }
        break;
    }
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl))
        t->flags |= TLS_F_DONE;
    if (rc == TLS_AGAIN && (t->flags & TLS_F_DONE))
        release_idle(t);
    else
        bio_trim(t->rbio);
    /* Bytes first; a sticky EOF or failure surfaces on the next call. */
    if (total > 0) {
        *nread = total;
        return TLS_DONE;
    }
    return rc;
}

int tls_write(struct tls *t, const char *p, size_t len)
{
    if (t->flags & TLS_F_FAILED)
        return TLS_FAIL;
    if (!(t->flags & TLS_F_DONE)) {
        set_err(t, "write before the TLS handshake completed");
        t->flags |= TLS_F_FAILED;
        return TLS_FAIL;
    }
    while (len > 0) {
        size_t n = 0;

        ERR_clear_error();
        /* A memory BIO accepts everything, so each call writes all of len, split into
         * records; the loop only guards against a short count. */
        if (!SSL_write_ex(t->ssl, p, len, &n)) {
            fail(t, SSL_get_error(t->ssl, 0));
            return TLS_FAIL;
        }
        p += n;
        len -= n;
    }
    ERR_clear_error();
    return TLS_DONE;
}

void tls_close_notify(struct tls *t)
{
    /* SSL_shutdown() during a handshake or after a fatal alert is an error, and a failed
     * connection has already queued its alert. */
    if (t->flags & (TLS_F_CLOSED | TLS_F_FAILED) || !(t->flags & TLS_F_DONE))
        return;
    t->flags |= TLS_F_CLOSED;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* 0 means "sent, peer's not yet seen": all we need */
    ERR_clear_error();
}

size_t tls_out_pending(const struct tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t tls_out_take(struct tls *t, char *buf, size_t cap)
{
    size_t n = 0;

    if (cap == 0 || !BIO_read_ex(t->wbio, buf, cap, &n))
        n = 0;
    bio_trim(t->wbio);
    return n;
}

const char *tls_alpn(const struct tls *t)
{
    const unsigned char *p = NULL;
    unsigned int len = 0;

    /* Only h2 and http/1.1 are ever offered or selected, so static strings serve. */
    SSL_get0_alpn_selected(t->ssl, &p, &len);
    if (len == 2 && memcmp(p, "h2", 2) == 0)
        return "h2";
    return len == 8 && memcmp(p, "http/1.1", 8) == 0 ? "http/1.1" : "";
}

int tls_offer_h2(struct tls *t)
{
    t->flags |= TLS_F_H2;
    if (SSL_is_server(t->ssl))
        return 0;
    /* SSL_set_alpn_protos() returns 0 on success, unlike nearly everything else. */
    return SSL_set_alpn_protos(t->ssl, alpn_h2_http11, sizeof alpn_h2_http11 - 1) == 0 ? 0 : -1;
}

const char *tls_last_error(const struct tls *t)
{
    return t->err;
}

bool tls_session_reused(const struct tls *t)
{
    return SSL_session_reused(t->ssl) == 1;
}
