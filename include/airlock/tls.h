/* SPDX-License-Identifier: MIT */
/* tls: OpenSSL driven through memory BIOs, never a socket. Ciphertext goes in with tls_feed(),
 * plaintext comes out of tls_read(); tls_write() encrypts into the out BIO, which the caller
 * drains with tls_out_take() into one write. No libuv here: the loop modules move the bytes. */
#ifndef AIRLOCK_TLS_H
#define AIRLOCK_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

enum tls_status {
    TLS_FAIL = -1, /* fatal: see tls_last_error(); the connection must close */
    TLS_DONE = 0,  /* the step finished (handshake complete, bytes read or written) */
    TLS_AGAIN = 1, /* needs more ciphertext from the peer (flush tls_out first) */
    TLS_EOF = 2,   /* the peer sent close_notify */
};

/* Client-facing context: TLS >= 1.2, ALPN selects http/1.1, or h2 when tls_offer_h2 allowed it
 * (refuses a client that offers neither by not selecting any), SSL_MODE_RELEASE_BUFFERS, an SNI
 * callback that aborts the handshake with alert unrecognized_name when the client's SNI differs
 * (case-insensitively, trailing dot ignored) from the CONNECT host given to tls_server_new(). NULL
 * on error. */
SSL_CTX *tls_server_ctx_new(char *err, size_t errlen);

/* Upstream-facing context: TLS >= 1.2, ALPN http/1.1 (h2 too after tls_offer_h2), peer verification
 * against the system store (what SSL_CERT_FILE / SSL_CERT_DIR in this process's environment name,
 * else OpenSSL's default paths) plus ca_file when it is not NULL (--upstream-ca); when ca_file_only
 * is not NULL (--upstream-ca-only), against ca_file_only and ca_file alone, without the system
 * store. A name is matched against the certificate's SANs only, never its subject CN. Client
 * session cache for resumption. NULL on error (err names the cause). */
SSL_CTX *tls_client_ctx_new(const char *ca_file, const char *ca_file_only, char *err,
                            size_t errlen);

/* A server-side endpoint for one client tunnel. Borrows ctx, leaf, key and chain (the CA
 * certificate sent after the leaf) for the call; takes its own references. connect_host is the
 * normalised CONNECT host the leaf names (copied). NULL on allocation failure. */
struct tls *tls_server_new(SSL_CTX *ctx, X509 *leaf, EVP_PKEY *key, X509 *chain,
                           const char *connect_host);

/* A client-side endpoint towards host:port: SNI = host unless host is an IP literal; the
 * certificate must name host in a DNS SAN (never the subject CN) or the IP in an IP SAN. A cached
 * session for (host, port) is offered for resumption; new sessions are stored. NULL on allocation
 * failure. */
struct tls *tls_client_new(SSL_CTX *ctx, const char *host, uint16_t port);

void tls_free(struct tls *t);

/* Hand ciphertext received from the peer to OpenSSL (copied into the in BIO). 0, or -1. */
int tls_feed(struct tls *t, const char *p, size_t len);

/* Advance the handshake: TLS_DONE once complete, TLS_AGAIN while it needs input, TLS_FAIL. */
int tls_handshake(struct tls *t);
bool tls_handshake_done(const struct tls *t);

/* Decrypt into buf: TLS_DONE with *nread > 0, TLS_AGAIN (no whole record buffered), TLS_EOF or
 * TLS_FAIL. Call until it stops returning TLS_DONE. */
int tls_read(struct tls *t, char *buf, size_t cap, size_t *nread);

/* Encrypt all len bytes into the out BIO (memory BIOs never block). TLS_DONE or TLS_FAIL. */
int tls_write(struct tls *t, const char *p, size_t len);

/* Queue a close_notify alert in the out BIO (idempotent). */
void tls_close_notify(struct tls *t);

/* Ciphertext waiting to be sent, and take up to cap bytes of it. */
size_t tls_out_pending(const struct tls *t);
size_t tls_out_take(struct tls *t, char *buf, size_t cap);

/* Before the handshake: a client endpoint offers "h2, http/1.1" instead of http/1.1 alone; a
 * server endpoint selects h2 when its client offers it (else http/1.1 as always). airlock
 * offers h2 upstream only for a client that offered it, and to the client only when the
 * upstream selected it: ALPN never translates (docs/http2.md). 0, or -1 when out of memory. */
int tls_offer_h2(struct tls *t);

/* The negotiated ALPN protocol ("h2", "http/1.1") or "" ; the reason of the last TLS_FAIL
 * ("certificate verify failed: self-signed certificate", "client SNI differs from CONNECT host",
 * ...), or "". */
const char *tls_alpn(const struct tls *t);
const char *tls_last_error(const struct tls *t);
bool tls_session_reused(const struct tls *t);

/* The text of OpenSSL's first queued error on this thread: its reason, strerror for a system
 * error ("No such file or directory", not "error:8000..."), else its code written to buf (cap
 * at least 120 bytes); NULL when the queue is empty. The queue is left as it is: the caller
 * clears it. The one formatter of OpenSSL errors, for tls and ca alike. */
const char *tls_error_text(char *buf, size_t cap);

#endif
