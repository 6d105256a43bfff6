/* SPDX-License-Identifier: MIT */
/* Unit tests for ca: creation on disk (refusal, force, modes, bundle, wgetrc), loading and its
 * errors, the CA's and the leaves' extensions, verification against the CA, and the LRU leaf
 * cache. Every test works in its own mkdtemp() directory under /tmp and removes it. */
#include "airlock/ca.h"

#include <ftw.h>
#include <pthread.h>
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
#include <openssl/x509v3.h>

#include "test.h"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static char *tmpdir(char *buf, size_t cap)
{
    snprintf(buf, cap, "/tmp/airlock-test-ca-XXXXXX");
    return mkdtemp(buf);
}

/* The whole file as a NUL-terminated string (caller frees), or NULL. */
static char *slurp(const char *dir, const char *name)
{
    char path[512];
    FILE *fp;
    char *buf = NULL;
    long len;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (len = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)len + 1);
        if (buf && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
            free(buf);
            buf = NULL;
        } else if (buf) {
            buf[len] = '\0';
        }
    }
    fclose(fp);
    return buf;
}

static mode_t file_mode(const char *dir, const char *name)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

static bool ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    return i >= 0 && X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

/* The single SAN entry of x: its type, and its value (DNS text or IP bytes) copied to val. */
static int san_single(X509 *x, unsigned char *val, size_t cap, int *len)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int type = -1;

    *len = 0;
    if (gens && sk_GENERAL_NAME_num(gens) == 1) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, 0);
        ASN1_STRING *s = gn->type == GEN_DNS ? gn->d.dNSName : gn->d.iPAddress;
        type = gn->type;
        *len = ASN1_STRING_length(s);
        if ((size_t)*len <= cap)
            memcpy(val, ASN1_STRING_get0_data(s), (size_t)*len);
    }
    GENERAL_NAMES_free(gens);
    return type;
}

static void cn_of(X509 *x, char *buf, int cap)
{
    buf[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, cap);
}

/* Chain-verify leaf against the CA alone, for a TLS server named host (or IP). */
static int verify_leaf(X509 *cacert, X509 *leaf, const char *host, const char *ip)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = -1;

    if (store && ctx && X509_STORE_add_cert(store, cacert) &&
        X509_STORE_CTX_init(ctx, store, leaf, NULL)) {
        X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
        if (host)
            X509_VERIFY_PARAM_set1_host(p, host, 0);
        if (ip)
            X509_VERIFY_PARAM_set1_ip_asc(p, ip);
        ok = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok;
}

static void test_create_refuse_force(void)
{
    char base[64], dir[128], err[256];
    char *pem1, *pem2, *pem3;

    CHECK(tmpdir(base, sizeof(base)) != NULL);
    snprintf(dir, sizeof(dir), "%s/certs", base);
    CHECK(!ca_exists(dir));

    CHECK_EQ(ca_create(dir, false, err, sizeof(err)), 0);
    CHECK(ca_exists(dir));
    CHECK_EQ(file_mode(base, "certs"), 0700);
    CHECK_EQ(file_mode(dir, "ca.key"), 0600);
    CHECK_EQ(file_mode(dir, "ca.pem"), 0644);
    CHECK_EQ(ERR_peek_error(), 0);
    pem1 = slurp(dir, "ca.pem");
    CHECK(pem1 && strstr(pem1, "-----BEGIN CERTIFICATE-----"));

    err[0] = '\0';
    CHECK_EQ(ca_create(dir, false, err, sizeof(err)), -1);
    CHECK(strstr(err, "exists") != NULL);
    pem2 = slurp(dir, "ca.pem");
    CHECK(pem1 && pem2 && strcmp(pem1, pem2) == 0);

    CHECK_EQ(ca_create(dir, true, err, sizeof(err)), 0);
    pem3 = slurp(dir, "ca.pem");
    CHECK(pem1 && pem3 && strcmp(pem1, pem3) != 0);
    CHECK_EQ(file_mode(dir, "ca.key"), 0600);

    /* Only the key on disk is enough to refuse. */
    {
        char path[256];
        snprintf(path, sizeof(path), "%s/ca.pem", dir);
        CHECK_EQ(unlink(path), 0);
        CHECK(!ca_exists(dir));
        CHECK_EQ(ca_create(dir, false, err, sizeof(err)), -1);
        CHECK(strstr(err, "ca.key") != NULL);
    }
    free(pem1);
    free(pem2);
    free(pem3);
    rm_rf(base);
}

static void test_bundle_and_wgetrc(void)
{
    char dir[64], err[256], expect[PATH_MAX + 64], abs[PATH_MAX];
    char *pem, *bundle, *wgetrc;

    CHECK(tmpdir(dir, sizeof(dir)) != NULL);
    CHECK_EQ(ca_create(dir, false, err, sizeof(err)), 0);
    pem = slurp(dir, "ca.pem");
    bundle = slurp(dir, "bundle.pem");
    wgetrc = slurp(dir, "wgetrc");
    CHECK(pem && bundle && wgetrc);
    if (pem && bundle) {
        size_t lp = strlen(pem), lb = strlen(bundle);
        /* System roots first, the CA last. */
        CHECK(lb >= lp && strcmp(bundle + lb - lp, pem) == 0);
        if (access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0)
            CHECK(lb > lp);
    }
    CHECK(realpath(dir, abs) != NULL);
    snprintf(expect, sizeof(expect), "ca_certificate = %s/bundle.pem\n", abs);
    CHECK_STR(wgetrc, expect);
    CHECK(wgetrc && wgetrc[strlen("ca_certificate = ")] == '/');
    free(pem);
    free(bundle);
    free(wgetrc);
    rm_rf(dir);
}

/* DIR/truststore.p12 parsed: its one bag must be a certificate bag holding cert, named
 * airlock-ca and carrying Java's trusted-key-usage attribute (anyExtendedKeyUsage); no MAC, no
 * encryption, so that Java and keytool read it without a password. */
static void check_truststore(const char *dir, X509 *cert)
{
    char path[512];
    FILE *fp;
    PKCS12 *p12 = NULL;
    STACK_OF(PKCS7) *safes = NULL;
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;

    snprintf(path, sizeof(path), "%s/truststore.p12", dir);
    fp = fopen(path, "rb");
    CHECK(fp != NULL);
    if (!fp)
        return;
    p12 = d2i_PKCS12_fp(fp, NULL);
    fclose(fp);
    CHECK(p12 != NULL);
    if (!p12)
        return;
    CHECK(!PKCS12_mac_present(p12));
    safes = PKCS12_unpack_authsafes(p12);
    CHECK(safes && sk_PKCS7_num(safes) == 1);
    if (safes && sk_PKCS7_num(safes) == 1) {
        PKCS7 *p7 = sk_PKCS7_value(safes, 0);
        CHECK_EQ(OBJ_obj2nid(p7->type), NID_pkcs7_data);
        bags = PKCS12_unpack_p7data(p7);
    }
    CHECK(bags && sk_PKCS12_SAFEBAG_num(bags) == 1);
    if (bags && sk_PKCS12_SAFEBAG_num(bags) == 1) {
        const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, 0);
        const STACK_OF(X509_ATTRIBUTE) *attrs = PKCS12_SAFEBAG_get0_attrs(bag);
        ASN1_OBJECT *trust = OBJ_txt2obj("2.16.840.1.113894.746875.1.1", 1);
        int at = trust ? X509at_get_attr_by_OBJ(attrs, trust, -1) : -1;
        ASN1_TYPE *v = at >= 0 ? X509_ATTRIBUTE_get0_type(X509at_get_attr(attrs, at), 0) : NULL;
        X509 *got = PKCS12_SAFEBAG_get1_cert(bag);
        char *name = PKCS12_get_friendlyname((PKCS12_SAFEBAG *)bag);

        CHECK_EQ(PKCS12_SAFEBAG_get_nid(bag), NID_certBag);
        CHECK(got && X509_cmp(got, cert) == 0);
        CHECK(v && v->type == V_ASN1_OBJECT &&
              OBJ_obj2nid(v->value.object) == NID_anyExtendedKeyUsage);
        CHECK_STR(name, "airlock-ca");
        OPENSSL_free(name);
        X509_free(got);
        ASN1_OBJECT_free(trust);
    }
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    PKCS12_free(p12);
}

static void test_truststore(void)
{
    char dir[64], err[256], path[128];
    struct ca *ca;
    struct stat st1, st2;
    FILE *fp;

    CHECK(tmpdir(dir, sizeof(dir)) != NULL);
    CHECK_EQ(ca_create(dir, false, err, sizeof(err)), 0);
    CHECK_EQ(file_mode(dir, "truststore.p12"), 0644);
    ca = ca_load(dir, err, sizeof(err));
    CHECK(ca != NULL);
    if (!ca)
        goto out;
    check_truststore(dir, ca_cert(ca));

    /* Up to date: left as it is. */
    snprintf(path, sizeof(path), "%s/truststore.p12", dir);
    CHECK_EQ(stat(path, &st1), 0);
    CHECK_EQ(ca_write_truststore(dir, ca_cert(ca), err, sizeof(err)), 0);
    CHECK_EQ(stat(path, &st2), 0);
    CHECK_EQ(st1.st_ino, st2.st_ino);

    /* Missing, or holding anything else: written again. */
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(ca_write_truststore(dir, ca_cert(ca), err, sizeof(err)), 1);
    check_truststore(dir, ca_cert(ca));
    fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (fp) {
        fputs("stale", fp);
        fclose(fp);
    }
    CHECK_EQ(ca_write_truststore(dir, ca_cert(ca), err, sizeof(err)), 1);
    check_truststore(dir, ca_cert(ca));
    CHECK_EQ(file_mode(dir, "truststore.p12"), 0644);
    ca_free(ca);

    /* A CA replaced with force gets its own trust store. */
    CHECK_EQ(ca_create(dir, true, err, sizeof(err)), 0);
    ca = ca_load(dir, err, sizeof(err));
    CHECK(ca != NULL);
    if (ca)
        check_truststore(dir, ca_cert(ca));
    ca_free(ca);
out:
    CHECK_EQ(ERR_peek_error(), 0);
    rm_rf(dir);
}

static void test_load_ca_extensions(void)
{
    char dir[64], err[256], cn[128];
    struct ca *ca;
    X509 *x;
    BASIC_CONSTRAINTS *bc;
    int crit = -1, days = 0, secs = 0;

    CHECK(tmpdir(dir, sizeof(dir)) != NULL);
    CHECK_EQ(ca_create(dir, false, err, sizeof(err)), 0);
    ca = ca_load(dir, err, sizeof(err));
    CHECK(ca != NULL);
    if (!ca) {
        fprintf(stderr, "ca_load: %s\n", err);
        rm_rf(dir);
        return;
    }
    x = ca_cert(ca);
    CHECK_EQ(X509_check_ca(x), 1);
    bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    CHECK(bc && bc->ca);
    CHECK(bc && bc->pathlen && ASN1_INTEGER_get(bc->pathlen) == 0);
    CHECK_EQ(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    CHECK(ext_critical(x, NID_key_usage));
    CHECK_EQ(X509_get_key_usage(x), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    CHECK(X509_get0_subject_key_id(x) != NULL);
    cn_of(x, cn, sizeof(cn));
    CHECK(strncmp(cn, "airlock sandbox CA ", 19) == 0 && strlen(cn) == 19 + 16);
    CHECK_EQ(X509_verify(x, X509_get0_pubkey(x)), 1);
    CHECK_EQ(EVP_PKEY_get_id(X509_get0_pubkey(x)), EVP_PKEY_EC);
    CHECK_EQ(EVP_PKEY_get_bits(X509_get0_pubkey(x)), 256);
    CHECK(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    CHECK(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)));
    CHECK(days >= 3650 && days <= 3653);
    CHECK_EQ(EVP_PKEY_get_id(ca_leaf_key(ca)), EVP_PKEY_EC);
    CHECK_EQ(EVP_PKEY_get_bits(ca_leaf_key(ca)), 256);
    CHECK_EQ(ERR_peek_error(), 0);
    ca_free(ca);
    rm_rf(dir);
}

static void test_load_errors(void)
{
    char a[64], b[64], err[256], from[128], to[128];
    struct ca *ca;

    CHECK(tmpdir(a, sizeof(a)) != NULL);
    CHECK(tmpdir(b, sizeof(b)) != NULL);
    err[0] = '\0';
    CHECK(ca_load(a, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "ca.pem") != NULL);

    CHECK_EQ(ca_create(a, false, err, sizeof(err)), 0);
    CHECK_EQ(ca_create(b, false, err, sizeof(err)), 0);
    snprintf(from, sizeof(from), "%s/ca.key", b);
    snprintf(to, sizeof(to), "%s/ca.key", a);
    CHECK_EQ(rename(from, to), 0);
    err[0] = '\0';
    ca = ca_load(a, err, sizeof(err));
    CHECK(ca == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    ca_free(ca);

    /* A leaf (with its key) in place of the CA: refused. b lost its key above; start afresh. */
    CHECK_EQ(ca_create(b, true, err, sizeof(err)), 0);
    ca = ca_load(b, err, sizeof(err));
    CHECK(ca != NULL);
    if (ca) {
        X509 *leaf = ca_leaf(ca, "leaf.example");
        FILE *fp;
        snprintf(to, sizeof(to), "%s/ca.pem", a);
        fp = fopen(to, "w");
        CHECK(fp && leaf && PEM_write_X509(fp, leaf));
        if (fp)
            fclose(fp);
        snprintf(to, sizeof(to), "%s/ca.key", a);
        fp = fopen(to, "w");
        CHECK(fp && PEM_write_PrivateKey(fp, ca_leaf_key(ca), NULL, NULL, 0, NULL, NULL));
        if (fp)
            fclose(fp);
        X509_free(leaf);
        ca_free(ca);
        err[0] = '\0';
        ca = ca_load(a, err, sizeof(err));
        CHECK(ca == NULL);
        CHECK(strstr(err, "not a CA") != NULL);
        ca_free(ca);
    }
    CHECK_EQ(ERR_peek_error(), 0);
    rm_rf(a);
    rm_rf(b);
}

/* ca.key must be a regular file of ours that nobody else can open: the error names the file
 * and the fix. */
static void test_load_refuses_open_or_foreign_key(void)
{
    char dir[64], key[128], err[512];
    struct ca *ca;

    CHECK(tmpdir(dir, sizeof(dir)) != NULL);
    CHECK_EQ(ca_create(dir, false, err, sizeof(err)), 0);
    snprintf(key, sizeof(key), "%s/ca.key", dir);
    const mode_t open_modes[] = {0640, 0604, 0620, 0644, 0660};
    for (size_t i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        CHECK_EQ(chmod(key, open_modes[i]), 0);
        err[0] = '\0';
        ca = ca_load(dir, err, sizeof(err));
        CHECK(ca == NULL);
        CHECK(strstr(err, key) != NULL);
        CHECK(strstr(err, "chmod 600") != NULL);
        ca_free(ca);
    }
    CHECK_EQ(chmod(key, 0600), 0);
    ca = ca_load(dir, err, sizeof(err));
    CHECK(ca != NULL);
    ca_free(ca);
    CHECK_EQ(chmod(key, 0400), 0);
    ca = ca_load(dir, err, sizeof(err));
    CHECK(ca != NULL);
    ca_free(ca);

    /* Another user's key, even 0600: only root can make one here. */
    if (geteuid() == 0) {
        CHECK_EQ(chown(key, 65534, 65534), 0);
        err[0] = '\0';
        ca = ca_load(dir, err, sizeof(err));
        CHECK(ca == NULL);
        CHECK(strstr(err, "owned by uid 65534") != NULL);
        CHECK(strstr(err, key) != NULL);
        ca_free(ca);
        CHECK_EQ(chown(key, 0, 0), 0);
    }

    /* A directory where the key should be. */
    CHECK_EQ(unlink(key), 0);
    CHECK_EQ(mkdir(key, 0700), 0);
    err[0] = '\0';
    ca = ca_load(dir, err, sizeof(err));
    CHECK(ca == NULL);
    CHECK(strstr(err, "not a regular file") != NULL);
    ca_free(ca);
    CHECK_EQ(ERR_peek_error(), 0);
    rm_rf(dir);
}

/* ca init into an existing directory that others may write: ours is narrowed (read stays,
 * setgid stays), another user's is refused. */
static void test_create_tightens_existing_dir(void)
{
    char dir[64], err[512];
    struct stat st;

    CHECK(tmpdir(dir, sizeof(dir)) != NULL);
    CHECK_EQ(chmod(dir, 0777), 0);
    CHECK_EQ(ca_create(dir, false, err, sizeof(err)), 0);
    CHECK_EQ(stat(dir, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 0755);
    CHECK_EQ(chmod(dir, 02775), 0);
    CHECK_EQ(ca_create(dir, true, err, sizeof(err)), 0);
    CHECK_EQ(stat(dir, &st), 0);
    CHECK_EQ(st.st_mode & 07777, 02755);
    CHECK_EQ(file_mode(dir, "ca.key"), 0600);

    if (geteuid() == 0) {
        CHECK_EQ(chown(dir, 65534, 65534), 0);
        CHECK_EQ(chmod(dir, 0777), 0);
        err[0] = '\0';
        CHECK_EQ(ca_create(dir, true, err, sizeof(err)), -1);
        CHECK(strstr(err, "writable by group or others") != NULL);
        CHECK(strstr(err, dir) != NULL);
        CHECK_EQ(stat(dir, &st), 0);
        CHECK_EQ(st.st_mode & 07777, 0777);
        CHECK_EQ(chown(dir, 0, 0), 0);
    }
    rm_rf(dir);
}

static struct ca *fixture(char *dir, size_t cap)
{
    char err[256];
    struct ca *ca = NULL;

    if (tmpdir(dir, cap) && ca_create(dir, false, err, sizeof(err)) == 0)
        ca = ca_load(dir, err, sizeof(err));
    if (!ca)
        fprintf(stderr, "fixture: %s\n", err);
    return ca;
}

static void test_leaf_dns(void)
{
    char dir[64], cn[128];
    struct ca *ca = fixture(dir, sizeof(dir));
    X509 *leaf, *other;
    unsigned char val[300];
    int len = 0, crit = -1, days = 0, secs = 0;
    BASIC_CONSTRAINTS *bc;
    BIGNUM *s1, *s2;

    CHECK(ca != NULL);
    if (!ca)
        return;
    leaf = ca_leaf(ca, "Api.Example.COM.");
    CHECK(leaf != NULL);
    if (!leaf)
        goto out;
    CHECK_EQ(san_single(leaf, val, sizeof(val), &len), GEN_DNS);
    CHECK(len == 15 && memcmp(val, "api.example.com", 15) == 0);
    cn_of(leaf, cn, sizeof(cn));
    CHECK_STR(cn, "api.example.com");
    CHECK_EQ(X509_check_host(leaf, "api.example.com", 0, 0, NULL), 1);
    CHECK_EQ(X509_check_ca(leaf), 0);
    bc = X509_get_ext_d2i(leaf, NID_basic_constraints, &crit, NULL);
    CHECK(bc && !bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    CHECK(X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE);
    CHECK_EQ(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER);
    CHECK_EQ(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    CHECK(ext_critical(leaf, NID_key_usage));
    CHECK(X509_get0_subject_key_id(leaf) != NULL);
    CHECK(X509_get0_authority_key_id(leaf) != NULL);
    CHECK_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(leaf),
                                   X509_get0_subject_key_id(ca_cert(ca))),
             0);
    CHECK_EQ(X509_check_issued(ca_cert(ca), leaf), X509_V_OK);
    CHECK(X509_check_private_key(leaf, ca_leaf_key(ca)));
    CHECK(X509_cmp_current_time(X509_get0_notBefore(leaf)) < 0);
    CHECK(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), NULL));
    CHECK(days == 0 && secs >= 3590 && secs <= 3700);
    CHECK(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf)));
    CHECK(days == 6 || days == 7);
    CHECK_EQ(verify_leaf(ca_cert(ca), leaf, "api.example.com", NULL), X509_V_OK);
    CHECK_EQ(verify_leaf(ca_cert(ca), leaf, "www.example.com", NULL), X509_V_ERR_HOSTNAME_MISMATCH);

    other = ca_leaf(ca, "www.example.com");
    CHECK(other != NULL && other != leaf);
    s1 = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    s2 = other ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(other), NULL) : NULL;
    CHECK(s1 && BN_num_bits(s1) >= 64 && !BN_is_negative(s1));
    CHECK(s1 && s2 && BN_cmp(s1, s2) != 0);
    BN_free(s1);
    BN_free(s2);
    X509_free(other);
    X509_free(leaf);
    CHECK_EQ(ERR_peek_error(), 0);
out:
    ca_free(ca);
    rm_rf(dir);
}

static void test_leaf_ip(void)
{
    static const unsigned char v4[4] = {127, 0, 0, 1};
    static const unsigned char v6[16] = {[15] = 1};
    char dir[64], cn[64];
    struct ca *ca = fixture(dir, sizeof(dir));
    X509 *leaf;
    unsigned char val[300];
    int len = 0;

    CHECK(ca != NULL);
    if (!ca)
        return;
    leaf = ca_leaf(ca, "127.0.0.1");
    CHECK(leaf != NULL);
    CHECK_EQ(san_single(leaf, val, sizeof(val), &len), GEN_IPADD);
    CHECK(len == 4 && memcmp(val, v4, 4) == 0);
    CHECK_EQ(X509_check_ip_asc(leaf, "127.0.0.1", 0), 1);
    cn_of(leaf, cn, sizeof(cn));
    CHECK_STR(cn, "127.0.0.1");
    CHECK_EQ(verify_leaf(ca_cert(ca), leaf, NULL, "127.0.0.1"), X509_V_OK);
    CHECK_EQ(verify_leaf(ca_cert(ca), leaf, NULL, "127.0.0.2"), X509_V_ERR_IP_ADDRESS_MISMATCH);
    X509_free(leaf);

    leaf = ca_leaf(ca, "::1");
    CHECK(leaf != NULL);
    CHECK_EQ(san_single(leaf, val, sizeof(val), &len), GEN_IPADD);
    CHECK(len == 16 && memcmp(val, v6, 16) == 0);
    CHECK_EQ(X509_check_ip_asc(leaf, "::1", 0), 1);
    CHECK_EQ(verify_leaf(ca_cert(ca), leaf, NULL, "::1"), X509_V_OK);
    X509_free(leaf);
    ca_free(ca);
    rm_rf(dir);
}

static void test_leaf_long_and_invalid(void)
{
    char dir[64], host[256], cn[128];
    struct ca *ca = fixture(dir, sizeof(dir));
    X509 *leaf;
    unsigned char val[300];
    int len = 0;
    static const char *bad[] = {"",
                                ".",
                                "a..b",
                                "exa mple.com",
                                "a/b.example",
                                "x\n.example",
                                "under%20.example",
                                "[::1]",
                                "fe80::1%eth0",
                                "a.example.com..",
                                "-lead.example",
                                "trail-.example",
                                "0x7f",
                                "a.0x1f"};

    CHECK(ca != NULL);
    if (!ca)
        return;
    /* 4 labels of 60 characters: 243 in all, far over the CN limit of 64. */
    host[0] = '\0';
    for (int l = 0; l < 4; l++) {
        size_t n = strlen(host);
        memset(host + n, 'a' + l, 60);
        host[n + 60] = l < 3 ? '.' : '\0';
        host[n + 61] = '\0';
    }
    leaf = ca_leaf(ca, host);
    CHECK(leaf != NULL);
    if (leaf) {
        cn_of(leaf, cn, sizeof(cn));
        CHECK_EQ(strlen(cn), 64);
        CHECK(strncmp(cn, host, 64) == 0);
        CHECK_EQ(san_single(leaf, val, sizeof(val), &len), GEN_DNS);
        CHECK(len == (int)strlen(host) && memcmp(val, host, (size_t)len) == 0);
        CHECK_EQ(verify_leaf(ca_cert(ca), leaf, host, NULL), X509_V_OK);
        X509_free(leaf);
    }
    /* A label over 63 characters is not a DNS name. */
    memset(host, 'a', 64);
    memcpy(host + 64, ".example", 9);
    CHECK(ca_leaf(ca, host) == NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        leaf = ca_leaf(ca, bad[i]);
        CHECK(leaf == NULL);
        if (leaf)
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
        X509_free(leaf);
    }
    CHECK_EQ(ERR_peek_error(), 0);
    ca_free(ca);
    rm_rf(dir);
}

static void test_cache_lru(void)
{
    char dir[64], host[64];
    struct ca *ca = fixture(dir, sizeof(dir));
    X509 *h0, *h1, *again;
    int misses = 0;

    CHECK(ca != NULL);
    if (!ca)
        return;
    /* Keep our references to h0 and h1: their addresses cannot be recycled, so comparing
     * pointers after an eviction is meaningful. */
    h0 = ca_leaf(ca, "h0.example");
    h1 = ca_leaf(ca, "h1.example");
    again = ca_leaf(ca, "H0.example.");
    CHECK(h0 != NULL && again == h0);
    X509_free(again);
    for (int i = 2; i < CA_CACHE_SIZE; i++) {
        X509 *x;
        snprintf(host, sizeof(host), "h%d.example", i);
        x = ca_leaf(ca, host);
        misses += x == NULL;
        X509_free(x);
    }
    CHECK_EQ(misses, 0);
    /* Full now. Touch h0 so h1 is the least recently used, then add one more host. */
    again = ca_leaf(ca, "h0.example");
    CHECK(again == h0);
    X509_free(again);
    again = ca_leaf(ca, "one-more.example");
    CHECK(again != NULL);
    X509_free(again);
    again = ca_leaf(ca, "h0.example");
    CHECK(again == h0);
    X509_free(again);
    again = ca_leaf(ca, "h1.example");
    CHECK(again != NULL && again != h1);
    X509_free(again);
    /* h2 was next in line and went out to make room for h1 again. */
    X509_free(h0);
    X509_free(h1);
    CHECK_EQ(ERR_peek_error(), 0);
    ca_free(ca);
    rm_rf(dir);
}

struct worker {
    struct ca *ca;
    int seed, bad;
};

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char host[64];

    for (int i = 0; i < 400; i++) {
        X509 *x;
        snprintf(host, sizeof(host), "w%d.example", (i * 7 + w->seed) % 40);
        x = ca_leaf(w->ca, host);
        if (!x || X509_check_host(x, host, 0, 0, NULL) != 1)
            w->bad++;
        X509_free(x);
    }
    return NULL;
}

/* Workers share one CA: the cache lock, the mint outside it and the re-check after it. */
static void test_threads(void)
{
    char dir[64];
    struct ca *ca = fixture(dir, sizeof(dir));
    struct worker w[4];
    pthread_t th[4];
    int bad = 0;

    CHECK(ca != NULL);
    if (!ca)
        return;
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){.ca = ca, .seed = i * 13};
        CHECK_EQ(pthread_create(&th[i], NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += w[i].bad;
    }
    CHECK_EQ(bad, 0);
    ca_free(ca);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_create_refuse_force);
    RUN(test_bundle_and_wgetrc);
    RUN(test_truststore);
    RUN(test_load_ca_extensions);
    RUN(test_load_errors);
    RUN(test_load_refuses_open_or_foreign_key);
    RUN(test_create_tightens_existing_dir);
    RUN(test_leaf_dns);
    RUN(test_leaf_ip);
    RUN(test_leaf_long_and_invalid);
    RUN(test_cache_lru);
    RUN(test_threads);
    return test_report();
}
