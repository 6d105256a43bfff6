/* SPDX-License-Identifier: MIT */
/* ca: the per-sandbox certificate authority. Creates it on disk (EC P-256, CA:TRUE pathlen:0,
 * keyCertSign critical), loads it, and mints short-lived leaf certificates for CONNECT hosts,
 * all signed for one leaf key made at load time, kept in a bounded LRU cache shared by every
 * worker thread (guarded by a mutex). */
#ifndef AIRLOCK_CA_H
#define AIRLOCK_CA_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define CA_CACHE_SIZE 1024

/* The Java trust store beside the CA: a PKCS#12 file (no key, no MAC, no password) whose one
 * entry is the CA certificate, marked trusted for any purpose as Java's key store expects. */
#define CA_TRUSTSTORE "truststore.p12"

/* Write DIR/ca.pem, DIR/ca.key (0600), DIR/bundle.pem (system roots + the CA), DIR/wgetrc
 * (`ca_certificate = DIR/bundle.pem`, absolute) and DIR/truststore.p12. Creates DIR (0700) if
 * missing; an existing DIR of ours loses its group and other write bits, and anyone else's that
 * others may write is refused. Refuses (-1, err filled) when ca.pem or ca.key exists unless force.
 * 0 on success. */
int ca_create(const char *dir, bool force, char *err, size_t errlen);

/* Make DIR/truststore.p12 (0644, through a temporary file and rename) hold cert as Java's
 * trusted-certificate entry, unless it already holds exactly that: 1 written, 0 already so,
 * -1 with err filled. For a CA made before airlock wrote the file, or since replaced. */
int ca_write_truststore(const char *dir, X509 *cert, char *err, size_t errlen);

/* true when DIR/ca.pem and DIR/ca.key both exist. */
bool ca_exists(const char *dir);

/* Load DIR/ca.pem and DIR/ca.key (checks they match and the cert is a CA), make the leaf key.
 * A ca.key that is not a regular file, not owned by the effective uid, or open to group or
 * others (any of mode 077) is refused, err naming the file and the fix (chmod 600). NULL with
 * err filled on failure. */
struct ca *ca_load(const char *dir, char *err, size_t errlen);
void ca_free(struct ca *ca);

/* A leaf for host, which target_normalise_host normalises first (no brackets): a DNS name gets
 * a DNS SAN, an IP literal (dotted quad, or IPv6) an IP SAN. EKU serverAuth, valid from one
 * hour ago for 7 days, random serial, signed by the CA. Returns a new reference (X509_free)
 * or NULL. Thread-safe; cached (LRU, CA_CACHE_SIZE entries). */
X509 *ca_leaf(struct ca *ca, const char *host);

/* Borrowed: the key of every leaf, and the CA certificate (sent as the chain). */
EVP_PKEY *ca_leaf_key(const struct ca *ca);
X509 *ca_cert(const struct ca *ca);

#endif
