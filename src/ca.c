/* SPDX-License-Identifier: MIT */
/* ca: the per-sandbox CA on disk and the leaf certificates minted from it. Owns the CA key,
 * one leaf key shared by every leaf, and an LRU cache of leaves keyed by host; it knows
 * nothing of sockets or TLS sessions. Invariant: the cache only ever hands out new
 * references (X509_up_ref), so evicting an entry never frees a certificate still in use. */
#include "airlock/ca.h"
#include "ca_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "airlock/target.h"
#include "airlock/tls.h"

#define CA_HASH_BUCKETS  (2 * CA_CACHE_SIZE) /* power of two: the hash is masked */
#define CA_LEAF_EXTS     5
#define CA_CN_MAX        64 /* ub-common-name, RFC 5280 appendix A */
#define CA_LEAF_DAYS     7
#define CA_LEAF_LIFETIME ((time_t)CA_LEAF_DAYS * 24 * 3600)
#define CA_ROOT_DAYS     3652 /* ten years */
#define CA_BACKDATE_SECS 3600 /* tolerate clients whose clock runs up to an hour behind */
/* A cached leaf this close to its notAfter is minted again, so no client ever sees a leaf that
 * is about to expire mid-connection. */
#define CA_LEAF_REFRESH_SECS (24 * 3600)

struct ca_entry {
    char *host;     /* cache key, as given to ca_leaf() after normalisation */
    X509 *cert;     /* one reference held by the cache */
    time_t refresh; /* mint again at or after this time */
    uint32_t hash;
    int32_t prev, next; /* LRU list: head is the most recently used */
    int32_t hnext;      /* hash chain */
};

struct ca {
    X509 *cert;
    EVP_PKEY *key;
    EVP_PKEY *leaf_key;
    /* Every leaf carries the same basicConstraints, keyUsage, EKU, SKI (one leaf key) and AKI
     * (one issuer): built once at load, copied into each leaf by X509_add_ext(). */
    X509_EXTENSION *leaf_ext[CA_LEAF_EXTS];

    pthread_mutex_t lock;
    int32_t head, tail;
    int32_t used; /* entries[0..used) have been handed out at least once */
    int32_t bucket[CA_HASH_BUCKETS];
    struct ca_entry entries[CA_CACHE_SIZE];
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void fail_msg(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail_msg(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Format "what: first OpenSSL reason" into err and leave the error queue clean. */
void ca_ssl_fail(char *err, size_t errlen, const char *what, const char *path)
{
    char buf[160];
    const char *r = tls_error_text(buf, sizeof(buf));

    fail_msg(err, errlen, "%s%s%s%s%s", path ? path : "", path ? ": " : "", what, r ? ": " : "",
             r ? r : "");
    ERR_clear_error();
}

static void sys_fail(char *err, size_t errlen, const char *what, const char *path, int errnum)
{
    fail_msg(err, errlen, "%s %s: %s", what, path, strerror(errnum));
}

int ca_join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* ECDSA and RSA sign with SHA-256; EdDSA keys take no separate digest. */
static const EVP_MD *sign_md(EVP_PKEY *key)
{
    int id = EVP_PKEY_get_id(key);
    return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ? NULL : EVP_sha256();
}

/* A positive 16-byte serial with 126 random bits: CA/Browser Forum BR §7.1 asks for 64. */
static int set_random_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    int ok = 0;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    b[0] &= 0x7f;
    b[0] |= 0x01; /* never zero, and always 16 bytes of DER */
    bn = BN_bin2bn(b, sizeof(b), NULL);
    if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        ok = 1;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int set_validity(X509 *x, long days)
{
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -CA_BACKDATE_SECS))
        return -1;
    if (!X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL))
        return -1;
    return 0;
}

static int set_cn(X509_NAME *name, const char *cn, size_t len)
{
    /* OpenSSL refuses a CN over 64 characters; the SAN carries the full name anyway. */
    if (len > CA_CN_MAX)
        len = CA_CN_MAX;
    return X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                      (const unsigned char *)cn, (int)len, -1, 0)
               ? 0
               : -1;
}

/* The RFC 5280 §4.2.1.2 method (1) key identifier: SHA-1 of the subjectPublicKey bits. */
static ASN1_OCTET_STRING *key_id(EVP_PKEY *key)
{
    X509_PUBKEY *xpk = NULL;
    const unsigned char *bits;
    int blen;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASN1_OCTET_STRING *id = NULL;

    if (!X509_PUBKEY_set(&xpk, key) || !X509_PUBKEY_get0_param(NULL, &bits, &blen, NULL, xpk))
        goto out;
    if (!EVP_Digest(bits, (size_t)blen, md, &mdlen, EVP_sha1(), NULL))
        goto out;
    id = ASN1_OCTET_STRING_new();
    if (id && !ASN1_OCTET_STRING_set(id, md, (int)mdlen)) {
        ASN1_OCTET_STRING_free(id);
        id = NULL;
    }
out:
    X509_PUBKEY_free(xpk);
    return id;
}

static X509_EXTENSION *ext_basic_constraints(bool is_ca)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    X509_EXTENSION *ext = NULL;

    if (!bc)
        return NULL;
    if (is_ca) {
        /* pathlen 0: this CA signs leaves only, never another CA (RFC 5280 §4.2.1.9). */
        bc->ca = 0xff;
        bc->pathlen = ASN1_INTEGER_new();
        if (!bc->pathlen || !ASN1_INTEGER_set(bc->pathlen, 0))
            goto out;
    }
    ext = X509V3_EXT_i2d(NID_basic_constraints, 1, bc);
out:
    BASIC_CONSTRAINTS_free(bc);
    return ext;
}

/* bits: KU_* style bit numbers from RFC 5280 §4.2.1.3 (0 digitalSignature, 5 keyCertSign,
 * 6 cRLSign), terminated by -1. Always critical. */
static X509_EXTENSION *ext_key_usage(const int *bits)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    X509_EXTENSION *ext = NULL;

    if (!ku)
        return NULL;
    for (; *bits >= 0; bits++) {
        if (!ASN1_BIT_STRING_set_bit(ku, *bits, 1))
            goto out;
    }
    ext = X509V3_EXT_i2d(NID_key_usage, 1, ku);
out:
    ASN1_BIT_STRING_free(ku);
    return ext;
}

static X509_EXTENSION *ext_server_auth(void)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    X509_EXTENSION *ext = NULL;

    /* OBJ_nid2obj() returns a static object: free only the stack. */
    if (eku && sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) > 0)
        ext = X509V3_EXT_i2d(NID_ext_key_usage, 0, eku);
    sk_ASN1_OBJECT_free(eku);
    return ext;
}

static X509_EXTENSION *ext_subject_key_id(EVP_PKEY *key)
{
    ASN1_OCTET_STRING *id = key_id(key);
    X509_EXTENSION *ext = id ? X509V3_EXT_i2d(NID_subject_key_identifier, 0, id) : NULL;

    ASN1_OCTET_STRING_free(id);
    return ext;
}

/* AKI = the issuer's SKI; a CA brought without one gets the computed key id, which is what
 * its SKI would have been. */
static X509_EXTENSION *ext_authority_key_id(X509 *issuer)
{
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(issuer);
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    X509_EXTENSION *ext = NULL;

    if (!akid)
        return NULL;
    akid->keyid = ski ? ASN1_OCTET_STRING_dup(ski) : key_id(X509_get0_pubkey(issuer));
    if (akid->keyid)
        ext = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
    AUTHORITY_KEYID_free(akid);
    return ext;
}

static int add_ext(X509 *x, X509_EXTENSION *ext)
{
    int ok = ext && X509_add_ext(x, ext, -1);

    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* ---- creating the CA on disk ------------------------------------------------------------ */

/* A v3 certificate for key, named cn, issued by issuer (NULL: by itself), with a random serial,
 * valid from an hour ago for days; no extension yet, unsigned. NULL on failure. */
static X509 *cert_new(const char *cn, size_t cn_len, const X509_NAME *issuer, long days,
                      EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    bool ok = x && name && set_cn(name, cn, cn_len) == 0 && X509_set_version(x, X509_VERSION_3) &&
              set_random_serial(x) == 0 && X509_set_subject_name(x, name) &&
              X509_set_issuer_name(x, issuer ? issuer : name) && set_validity(x, days) == 0 &&
              X509_set_pubkey(x, key);

    X509_NAME_free(name); /* the certificate holds copies */
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static X509 *make_ca_cert(EVP_PKEY *key)
{
    static const int ca_bits[] = {5, 6, -1}; /* keyCertSign, cRLSign */
    unsigned char rnd[8];
    char cn[64];
    X509 *x;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return NULL;
    /* A random suffix makes every sandbox's CA name distinct, so trust stores that hold two of
     * them never confuse their issuers. */
    snprintf(cn, sizeof(cn), "airlock sandbox CA %02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    x = cert_new(cn, strlen(cn), NULL, CA_ROOT_DAYS, key);
    if (!x || add_ext(x, ext_basic_constraints(true)) < 0 ||
        add_ext(x, ext_key_usage(ca_bits)) < 0 || add_ext(x, ext_subject_key_id(key)) < 0 ||
        X509_sign(x, key, sign_md(key)) <= 0) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Write data to DIR/name through a temporary file and rename(): the file appears whole and with
 * its final mode, and an existing name (or a symlink planted there) is replaced, never written
 * through. mkstemp() creates the file 0600, so the key is never readable by others. */
int ca_write_file(const char *dir, const char *name, const char *data, size_t len, mode_t mode,
                  char *err, size_t errlen)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    int fd, e;
    size_t off = 0;

    if (ca_join_path(path, sizeof(path), dir, name) < 0 ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >= (int)sizeof(tmp)) {
        sys_fail(err, errlen, "cannot write", dir, ENAMETOOLONG);
        return -1;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        sys_fail(err, errlen, "cannot create a file in", dir, errno);
        return -1;
    }
    if (fchmod(fd, mode) < 0)
        goto fail;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        off += (size_t)n;
    }
    if (fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    return 0;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    sys_fail(err, errlen, "cannot write", path, e);
    return -1;
}

/* Append the system roots to b. A missing file is fine (the bundle then holds only the CA);
 * any other read error fails, since a silently empty bundle would break non-proxied hosts. */
static int append_system_roots(BIO *b, char *err, size_t errlen)
{
    const char *candidates[] = {X509_get_default_cert_file(), "/etc/ssl/certs/ca-certificates.crt"};
    char buf[16384];
    FILE *fp = NULL;
    const char *path = NULL;
    size_t n;
    int last = '\n', rc = 0;

    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]) && !fp; i++) {
        path = candidates[i];
        fp = fopen(path, "re");
        if (!fp && errno != ENOENT && errno != ENOTDIR) {
            sys_fail(err, errlen, "cannot read", path, errno);
            return -1;
        }
    }
    if (!fp)
        return 0;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), fp)) > 0) {
        if (BIO_write(b, buf, (int)n) != (int)n) {
            ca_ssl_fail(err, errlen, "cannot build bundle.pem", NULL);
            rc = -1;
        }
        last = (unsigned char)buf[n - 1];
    }
    if (rc == 0 && ferror(fp)) {
        sys_fail(err, errlen, "cannot read", path, errno);
        rc = -1;
    }
    fclose(fp);
    /* The CA's PEM block must start on its own line. */
    if (rc == 0 && last != '\n' && BIO_write(b, "\n", 1) != 1) {
        ca_ssl_fail(err, errlen, "cannot build bundle.pem", NULL);
        rc = -1;
    }
    return rc;
}

static int bio_write_file(BIO *b, const char *dir, const char *name, mode_t mode, char *err,
                          size_t errlen)
{
    char *data;
    long len = BIO_get_mem_data(b, &data);

    return ca_write_file(dir, name, data, len > 0 ? (size_t)len : 0, mode, err, errlen);
}

static bool file_exists(const char *dir, const char *name)
{
    char path[PATH_MAX];
    struct stat st;

    /* lstat: a dangling symlink still occupies the name. */
    return ca_join_path(path, sizeof(path), dir, name) == 0 && lstat(path, &st) == 0;
}

/* A directory that others may write lets them rename their own key and certificate over ours.
 * One of ours loses its group and other write bits (read stays: layouts that share ca.pem
 * from this directory need it); anyone else's is refused. */
static int tighten_dir(const char *dir, const struct stat *st, char *err, size_t errlen)
{
    if (!(st->st_mode & 022))
        return 0;
    if (st->st_uid != geteuid()) {
        fail_msg(err, errlen,
                 "%s is writable by group or others and owned by uid %u, not by this uid %u: "
                 "use a directory of your own",
                 dir, (unsigned)st->st_uid, (unsigned)geteuid());
        return -1;
    }
    if (chmod(dir, st->st_mode & 07755) < 0) {
        sys_fail(err, errlen, "cannot chmod", dir, errno);
        return -1;
    }
    return 0;
}

bool ca_exists(const char *dir)
{
    return file_exists(dir, "ca.pem") && file_exists(dir, "ca.key");
}

int ca_create(const char *dir, bool force, char *err, size_t errlen)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    BIO *kb = NULL, *cb = NULL, *bb = NULL, *wb = NULL;
    char abs[PATH_MAX];
    struct stat st;
    int rc = -1;

    if (err && errlen)
        err[0] = '\0';
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        sys_fail(err, errlen, "cannot create", dir, errno);
        return -1;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        fail_msg(err, errlen, "%s is not a directory", dir);
        return -1;
    }
    if (tighten_dir(dir, &st, err, errlen) < 0)
        return -1;
    if (!force) {
        const char *names[] = {"ca.pem", "ca.key"};
        for (size_t i = 0; i < 2; i++) {
            if (file_exists(dir, names[i])) {
                fail_msg(err, errlen, "%s/%s exists; refusing to replace it without force", dir,
                         names[i]);
                return -1;
            }
        }
    }
    /* wget resolves a relative ca_certificate against its own cwd, so the path is absolute; a
     * newline in it would end the wgetrc line early. */
    if (!realpath(dir, abs)) {
        sys_fail(err, errlen, "cannot resolve", dir, errno);
        return -1;
    }
    if (strchr(abs, '\n')) {
        fail_msg(err, errlen, "%s: a newline in the path cannot go into wgetrc", dir);
        return -1;
    }

    ERR_clear_error();
    key = EVP_EC_gen("P-256");
    if (!key) {
        ca_ssl_fail(err, errlen, "cannot generate the CA key", NULL);
        goto out;
    }
    cert = make_ca_cert(key);
    if (!cert) {
        ca_ssl_fail(err, errlen, "cannot build the CA certificate", NULL);
        goto out;
    }
    kb = BIO_new(BIO_s_mem());
    cb = BIO_new(BIO_s_mem());
    bb = BIO_new(BIO_s_mem());
    wb = BIO_new(BIO_s_mem());
    if (!kb || !cb || !bb || !wb || !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) ||
        !PEM_write_bio_X509(cb, cert) ||
        BIO_printf(wb, "ca_certificate = %s/bundle.pem\n", abs) <= 0) {
        ca_ssl_fail(err, errlen, "cannot encode the CA", NULL);
        goto out;
    }
    if (append_system_roots(bb, err, errlen) < 0)
        goto out;
    if (!PEM_write_bio_X509(bb, cert)) {
        ca_ssl_fail(err, errlen, "cannot encode the CA", NULL);
        goto out;
    }
    /* The key first: a crash between the two renames leaves a key without a certificate, which
     * ca_load() reports, rather than a certificate whose key is gone. */
    if (bio_write_file(kb, dir, "ca.key", 0600, err, errlen) < 0 ||
        bio_write_file(cb, dir, "ca.pem", 0644, err, errlen) < 0 ||
        bio_write_file(bb, dir, "bundle.pem", 0644, err, errlen) < 0 ||
        bio_write_file(wb, dir, "wgetrc", 0644, err, errlen) < 0 ||
        ca_write_truststore(dir, cert, err, errlen) < 0)
        goto out;
    rc = 0;
out:
    /* BIO_free() of a memory BIO clears its buffer, so the PEM key does not linger. */
    BIO_free(kb);
    BIO_free(cb);
    BIO_free(bb);
    BIO_free(wb);
    X509_free(cert);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

/* ---- loading ---------------------------------------------------------------------------- */

/* Never prompt on a terminal for a passphrase: an encrypted ca.key is a load error. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static FILE *open_in(const char *dir, const char *name, char *path, size_t cap, char *err,
                     size_t errlen)
{
    FILE *fp;

    if (ca_join_path(path, cap, dir, name) < 0) {
        sys_fail(err, errlen, "cannot open", dir, ENAMETOOLONG);
        return NULL;
    }
    fp = fopen(path, "re");
    if (!fp)
        sys_fail(err, errlen, "cannot open", path, errno);
    return fp;
}

/* Whoever can read the CA key can mint certificates that the sandbox trusts, and whoever owns
 * the file can swap it. Checked on the open file (fstat), so the answer is about the very key
 * that is read. true, with err naming the file and the fix, when it must not be used. */
static bool key_file_unsafe(FILE *fp, const char *path, char *err, size_t errlen)
{
    struct stat st;

    if (fstat(fileno(fp), &st) < 0) {
        sys_fail(err, errlen, "cannot stat", path, errno);
        return true;
    }
    if (!S_ISREG(st.st_mode)) {
        fail_msg(err, errlen, "%s is not a regular file", path);
        return true;
    }
    if (st.st_uid != geteuid()) {
        fail_msg(err, errlen,
                 "%s is owned by uid %u, not by uid %u that airlock runs as: whoever owns it "
                 "can replace it (fix: chown %u %s, or run airlock as uid %u)",
                 path, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path,
                 (unsigned)st.st_uid);
        return true;
    }
    if (st.st_mode & 077) {
        fail_msg(err, errlen,
                 "%s is open to group or others (mode %04o): anyone who can read it can mint "
                 "certificates the sandbox trusts (fix: chmod 600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
        return true;
    }
    return false;
}

static int build_leaf_exts(struct ca *ca)
{
    static const int leaf_bits[] = {0, -1}; /* digitalSignature: ECDHE with an ECDSA key */

    ca->leaf_ext[0] = ext_basic_constraints(false);
    ca->leaf_ext[1] = ext_key_usage(leaf_bits);
    ca->leaf_ext[2] = ext_server_auth();
    ca->leaf_ext[3] = ext_subject_key_id(ca->leaf_key);
    ca->leaf_ext[4] = ext_authority_key_id(ca->cert);
    for (size_t i = 0; i < CA_LEAF_EXTS; i++) {
        if (!ca->leaf_ext[i])
            return -1;
    }
    return 0;
}

struct ca *ca_load(const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct ca *ca;
    FILE *fp;

    if (err && errlen)
        err[0] = '\0';
    ca = calloc(1, sizeof(*ca));
    if (!ca) {
        sys_fail(err, errlen, "cannot load", dir, ENOMEM);
        return NULL;
    }
    ca->head = ca->tail = -1;
    for (size_t i = 0; i < CA_HASH_BUCKETS; i++)
        ca->bucket[i] = -1;
    if (pthread_mutex_init(&ca->lock, NULL) != 0) {
        free(ca);
        sys_fail(err, errlen, "cannot load", dir, ENOMEM);
        return NULL;
    }

    ERR_clear_error();
    fp = open_in(dir, "ca.pem", path, sizeof(path), err, errlen);
    if (!fp)
        goto fail;
    ca->cert = PEM_read_X509(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    if (!ca->cert) {
        ca_ssl_fail(err, errlen, "not a PEM certificate", path);
        goto fail;
    }
    fp = open_in(dir, "ca.key", path, sizeof(path), err, errlen);
    if (!fp)
        goto fail;
    if (key_file_unsafe(fp, path, err, errlen)) {
        fclose(fp);
        goto fail;
    }
    ca->key = PEM_read_PrivateKey(fp, NULL, no_passphrase, NULL);
    fclose(fp);
    if (!ca->key) {
        ca_ssl_fail(err, errlen, "not an unencrypted PEM private key", path);
        goto fail;
    }
    if (!X509_check_private_key(ca->cert, ca->key)) {
        ERR_clear_error();
        fail_msg(err, errlen, "%s/ca.key does not match %s/ca.pem", dir, dir);
        goto fail;
    }
    /* 1 is a v3 CA (basicConstraints CA:TRUE, keyCertSign if keyUsage is present); the
     * legacy answers (v1 roots, Netscape types) are not good enough to mint from. */
    if (X509_check_ca(ca->cert) != 1) {
        ERR_clear_error();
        fail_msg(err, errlen, "%s/ca.pem is not a CA certificate", dir);
        goto fail;
    }
    ca->leaf_key = EVP_EC_gen("P-256");
    if (!ca->leaf_key) {
        ca_ssl_fail(err, errlen, "cannot generate the leaf key", NULL);
        goto fail;
    }
    if (build_leaf_exts(ca) < 0) {
        ca_ssl_fail(err, errlen, "cannot build leaf extensions", NULL);
        goto fail;
    }
    return ca;
fail:
    ca_free(ca);
    ERR_clear_error();
    return NULL;
}

void ca_free(struct ca *ca)
{
    if (!ca)
        return;
    for (int32_t i = 0; i < ca->used; i++) {
        free(ca->entries[i].host);
        X509_free(ca->entries[i].cert);
    }
    for (size_t i = 0; i < CA_LEAF_EXTS; i++)
        X509_EXTENSION_free(ca->leaf_ext[i]);
    EVP_PKEY_free(ca->leaf_key);
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    pthread_mutex_destroy(&ca->lock);
    free(ca);
}

EVP_PKEY *ca_leaf_key(const struct ca *ca)
{
    return ca->leaf_key;
}

X509 *ca_cert(const struct ca *ca)
{
    return ca->cert;
}

/* ---- minting ---------------------------------------------------------------------------- */

static int add_san(X509 *x, const char *host, size_t len, const unsigned char *ip, size_t iplen)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *value = ip ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    int ok = 0;

    if (!gens || !gn || !value)
        goto out;
    if (ip ? !ASN1_OCTET_STRING_set(value, ip, (int)iplen)
           : !ASN1_STRING_set(value, host, (int)len))
        goto out;
    /* Built as a value, never parsed from "DNS:..." text: a host can never smuggle in a
     * second name. */
    GENERAL_NAME_set0_value(gn, ip ? GEN_IPADD : GEN_DNS, value);
    value = NULL;
    if (!sk_GENERAL_NAME_push(gens, gn))
        goto out;
    gn = NULL;
    ok = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1;
out:
    ASN1_STRING_free(value);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    return ok ? 0 : -1;
}

static X509 *mint(struct ca *ca, const char *host, size_t len, const unsigned char *ip,
                  size_t iplen)
{
    X509 *x = cert_new(host, len, X509_get_subject_name(ca->cert), CA_LEAF_DAYS, ca->leaf_key);

    if (!x)
        return NULL;
    for (size_t i = 0; i < CA_LEAF_EXTS; i++) {
        if (!X509_add_ext(x, ca->leaf_ext[i], -1))
            goto fail;
    }
    if (add_san(x, host, len, ip, iplen) < 0 || X509_sign(x, ca->key, sign_md(ca->key)) <= 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

/* FNV-1a: short keys, no adversary benefit (the cache is bounded and evicts LRU anyway). */
static uint32_t hash_host(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int32_t cache_find(struct ca *ca, const char *host, uint32_t hash)
{
    for (int32_t i = ca->bucket[hash & (CA_HASH_BUCKETS - 1)]; i >= 0; i = ca->entries[i].hnext) {
        if (ca->entries[i].hash == hash && strcmp(ca->entries[i].host, host) == 0)
            return i;
    }
    return -1;
}

static void lru_unlink(struct ca *ca, int32_t i)
{
    struct ca_entry *e = &ca->entries[i];

    if (e->prev >= 0)
        ca->entries[e->prev].next = e->next;
    else
        ca->head = e->next;
    if (e->next >= 0)
        ca->entries[e->next].prev = e->prev;
    else
        ca->tail = e->prev;
    e->prev = e->next = -1;
}

static void lru_push_front(struct ca *ca, int32_t i)
{
    struct ca_entry *e = &ca->entries[i];

    e->prev = -1;
    e->next = ca->head;
    if (ca->head >= 0)
        ca->entries[ca->head].prev = i;
    ca->head = i;
    if (ca->tail < 0)
        ca->tail = i;
}

static void hash_unlink(struct ca *ca, int32_t i)
{
    int32_t *pp = &ca->bucket[ca->entries[i].hash & (CA_HASH_BUCKETS - 1)];

    while (*pp != i)
        pp = &ca->entries[*pp].hnext;
    *pp = ca->entries[i].hnext;
}

/* Under the lock: a slot for a new entry, evicting the least recently used when full. */
static int32_t cache_slot(struct ca *ca)
{
    int32_t i;

    if (ca->used < CA_CACHE_SIZE)
        return ca->used++;
    i = ca->tail;
    lru_unlink(ca, i);
    hash_unlink(ca, i);
    free(ca->entries[i].host);
    X509_free(ca->entries[i].cert);
    ca->entries[i].host = NULL;
    ca->entries[i].cert = NULL;
    return i;
}

X509 *ca_leaf(struct ca *ca, const char *host)
{
    char name[TARGET_HOST_MAX + 1];
    enum target_host_kind kind;
    unsigned char ip[16];
    size_t len, iplen = 0;
    uint32_t hash;
    int32_t i;
    X509 *x, *ret = NULL;
    time_t now = time(NULL);

    /* The name goes into the certificate verbatim: only what target.h accepts. */
    if (target_normalise_host(host, strlen(host), false, name, &kind) < 0)
        return NULL;
    len = strlen(name);
    if (kind == TARGET_IPV4 && inet_pton(AF_INET, name, ip) == 1)
        iplen = 4;
    else if (kind == TARGET_IPV6 && inet_pton(AF_INET6, name, ip) == 1)
        iplen = 16;
    hash = hash_host(name);

    pthread_mutex_lock(&ca->lock);
    i = cache_find(ca, name, hash);
    if (i >= 0 && now < ca->entries[i].refresh) {
        lru_unlink(ca, i);
        lru_push_front(ca, i);
        ret = ca->entries[i].cert;
        X509_up_ref(ret);
    }
    pthread_mutex_unlock(&ca->lock);
    if (ret)
        return ret;

    /* Sign outside the lock: other workers keep hitting the cache meanwhile. Two threads that
     * miss on the same host both mint; the second to insert keeps the first one's leaf. */
    ERR_clear_error();
    x = mint(ca, name, len, iplen ? ip : NULL, iplen);
    ERR_clear_error();
    if (!x)
        return NULL;

    pthread_mutex_lock(&ca->lock);
    i = cache_find(ca, name, hash);
    if (i >= 0) {
        if (now < ca->entries[i].refresh) {
            X509_free(x);
        } else {
            X509_free(ca->entries[i].cert);
            ca->entries[i].cert = x;
            ca->entries[i].refresh = now + CA_LEAF_LIFETIME - CA_LEAF_REFRESH_SECS;
        }
        lru_unlink(ca, i);
        lru_push_front(ca, i);
    } else {
        char *key = strdup(name);
        if (!key) {
            pthread_mutex_unlock(&ca->lock);
            return x; /* still a valid leaf, only not cached */
        }
        i = cache_slot(ca);
        ca->entries[i] = (struct ca_entry){
            .host = key,
            .cert = x,
            .refresh = now + CA_LEAF_LIFETIME - CA_LEAF_REFRESH_SECS,
            .hash = hash,
            .hnext = ca->bucket[hash & (CA_HASH_BUCKETS - 1)],
        };
        ca->bucket[hash & (CA_HASH_BUCKETS - 1)] = i;
        lru_push_front(ca, i);
    }
    ret = ca->entries[i].cert;
    X509_up_ref(ret);
    pthread_mutex_unlock(&ca->lock);
    return ret;
}
