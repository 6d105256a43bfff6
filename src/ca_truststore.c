/* SPDX-License-Identifier: MIT */
/* ca_truststore: truststore.p12 beside the CA, the trust store Java reads (its JVM reads no CA
 * variable). Part of the ca module (ca.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "airlock/ca.h"
#include "ca_internal.h"

/* Java's PKCS#12 key store takes a certificate bag with no key as a trusted-certificate entry
 * only when it carries this attribute (Oracle's "trusted key usage"), valued with the extended
 * key usages it is trusted for; without it the certificate is skipped. */
#define CA_JDK_TRUST_OID "2.16.840.1.113894.746875.1.1"
#define CA_JDK_ALIAS     "airlock-ca"

/* The DER of a PKCS#12 file holding cert alone as a trusted-certificate entry for any purpose.
 * No key, no encryption and no MAC: the file is public, and a store without a MAC is one Java
 * (keystore.pkcs12.macAlgorithm=NONE) and keytool open without a password. No salt either,
 * so the same certificate always gives the same bytes. *der is OPENSSL_free()d by the caller;
 * its length, or -1. */
static int truststore_der(X509 *cert, unsigned char **der)
{
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    STACK_OF(PKCS7) *safes = NULL;
    PKCS12_SAFEBAG *bag;
    PKCS12 *p12 = NULL;
    int len = -1;

    *der = NULL;
    bag = PKCS12_add_cert(&bags, cert);
    if (!bag || !PKCS12_add_friendlyname(bag, CA_JDK_ALIAS, -1) ||
        !PKCS12_add1_attr_by_txt(bag, CA_JDK_TRUST_OID, V_ASN1_OBJECT,
                                 (const unsigned char *)OBJ_nid2obj(NID_anyExtendedKeyUsage), -1))
        goto out;
    /* nid_safe -1: the bags go in as plain data, not encrypted with a password */
    if (!PKCS12_add_safe(&safes, bags, -1, 0, NULL) || !(p12 = PKCS12_add_safes(safes, 0)))
        goto out;
    len = i2d_PKCS12(p12, der);
out:
    PKCS12_free(p12);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    return len;
}

/* true when DIR/name is a regular file (not a symlink, not a FIFO that would block) holding
 * exactly data. */
static bool file_holds(const char *dir, const char *name, const unsigned char *data, size_t len)
{
    char path[PATH_MAX];
    unsigned char buf[4096];
    struct stat st;
    size_t off = 0;
    bool same = false;
    int fd;

    if (ca_join_path(path, sizeof(path), dir, name) < 0)
        return false;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return false;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != (off_t)len)
        goto out;
    while (off < len) {
        size_t want = len - off < sizeof(buf) ? len - off : sizeof(buf);
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || memcmp(buf, data + off, (size_t)n) != 0)
            goto out;
        off += (size_t)n;
    }
    same = true;
out:
    close(fd);
    return same;
}

int ca_write_truststore(const char *dir, X509 *cert, char *err, size_t errlen)
{
    unsigned char *der;
    int len, rc;

    if (err && errlen)
        err[0] = '\0';
    ERR_clear_error();
    len = truststore_der(cert, &der);
    if (len <= 0) {
        ca_ssl_fail(err, errlen, "cannot encode " CA_TRUSTSTORE, NULL);
        return -1;
    }
    if (file_holds(dir, CA_TRUSTSTORE, der, (size_t)len))
        rc = 0;
    else
        rc =
            ca_write_file(dir, CA_TRUSTSTORE, (const char *)der, (size_t)len, 0644, err, errlen) < 0
                ? -1
                : 1;
    OPENSSL_free(der);
    return rc;
}
