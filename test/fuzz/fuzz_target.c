/* SPDX-License-Identifier: MIT */
/* libFuzzer target for target: the input as an authority (CONNECT's form and the Host form)
 * and as an absolute-form URI (http:// and https://). An accepted host must have its one normalised
 * spelling, and target_format of the result must parse back to the same authority (and the same
 * path). Invariants are checked with __builtin_trap(). */
#include "airlock/target.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* Room for "[" host "]:65535" and a NUL. */
#define FORMAT_MAX (TARGET_HOST_MAX + 16)

static void check_host(const struct authority *a)
{
    size_t n = strnlen(a->host, sizeof(a->host));

    CHECK(n > 0 && n <= TARGET_HOST_MAX);
    switch (a->kind) {
    case TARGET_DNS: {
        struct in_addr v4;

        /* lower case LDH (plus '_'), no empty label, no trailing dot, no hyphen at a label's
         * edge, and nothing inet_aton would read as an address */
        CHECK(a->host[0] != '.' && a->host[n - 1] != '.' && !strstr(a->host, ".."));
        for (size_t i = 0; i < n; i++) {
            char c = a->host[i];
            CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.');
            if (c == '-')
                CHECK(i > 0 && i + 1 < n && a->host[i - 1] != '.' && a->host[i + 1] != '.');
        }
        CHECK(inet_aton(a->host, &v4) == 0);
        break;
    }
    case TARGET_IPV4: {
        struct in_addr v4;
        char back[INET_ADDRSTRLEN];

        /* exactly inet_ntop's dotted quad: no leading zeros, no short forms */
        CHECK(inet_pton(AF_INET, a->host, &v4) == 1);
        CHECK(inet_ntop(AF_INET, &v4, back, sizeof(back)) != NULL);
        CHECK(strcmp(back, a->host) == 0);
        break;
    }
    case TARGET_IPV6: {
        struct in6_addr v6;
        char back[INET6_ADDRSTRLEN];

        CHECK(inet_pton(AF_INET6, a->host, &v6) == 1);
        CHECK(inet_ntop(AF_INET6, &v6, back, sizeof(back)) != NULL);
        CHECK(strcmp(back, a->host) == 0);
        break;
    }
    default:
        __builtin_trap();
    }
}

static bool same(const struct authority *a, const struct authority *b)
{
    return a->kind == b->kind && a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* Format a, parse it back as CONNECT would when it carries a port, else as Host would. */
static void check_round_trip(const struct authority *a)
{
    char buf[FORMAT_MAX];
    struct authority b;

    target_format(a, buf, sizeof(buf));
    CHECK(strlen(buf) < sizeof(buf) - 1); /* never truncated */
    CHECK(target_parse_authority(buf, strlen(buf), a->port != 0, 0, &b) == 0);
    CHECK(same(a, &b));
    CHECK(b.port_present == (a->port != 0));
    CHECK(target_authority_matches(a, &b) && target_authority_matches(&b, a));
    /* a tiny buffer is still NUL-terminated and never overrun */
    char small[4];
    target_format(a, small, sizeof(small));
    CHECK(strlen(small) < sizeof(small));
}

static void fuzz_authority(const char *in, size_t len)
{
    struct authority a, b;

    /* CONNECT: the port is required */
    if (target_parse_authority(in, len, true, 0, &a) == 0) {
        check_host(&a);
        CHECK(a.port_present && a.port != 0);
        check_round_trip(&a);
    }
    /* Host: an absent port takes the default */
    if (target_parse_authority(in, len, false, 443, &b) == 0) {
        check_host(&b);
        CHECK(b.port != 0);
        CHECK(b.port_present || b.port == 443);
        check_round_trip(&b);
        /* the two forms agree wherever both accept */
        if (b.port_present) {
            CHECK(target_parse_authority(in, len, true, 0, &a) == 0);
            CHECK(same(&a, &b));
        }
        CHECK(target_authority_matches(&b, &b));
    }
    /* no default at all: port 0 means absent */
    if (target_parse_authority(in, len, false, 0, &a) == 0) {
        check_host(&a);
        CHECK(a.port_present == (a.port != 0));
        check_round_trip(&a);
    }
}

static void fuzz_absolute(const char *in, size_t len)
{
    struct authority a, b;
    const char *path = NULL, *path2 = NULL;
    size_t path_len = 0, path2_len = 0;
    bool https = false, https2 = false;

    if (target_parse_absolute(in, len, &https, &a, &path, &path_len) != 0) {
        /* what the two-scheme parser refuses, the http-only one refuses too */
        CHECK(target_parse_absolute(in, len, NULL, &b, &path2, &path2_len) != 0);
        return;
    }
    /* the http-only parser agrees on http:// and refuses https:// */
    if (https) {
        CHECK(target_parse_absolute(in, len, NULL, &b, &path2, &path2_len) != 0);
    } else {
        CHECK(target_parse_absolute(in, len, NULL, &b, &path2, &path2_len) == 0);
        CHECK(same(&a, &b) && path2 == path && path2_len == path_len);
    }
    size_t scheme_len = https ? 8 : 7;
    check_host(&a);
    CHECK(a.port != 0 && (a.port_present || a.port == (https ? 443 : 80)));
    CHECK(path != NULL && path_len > 0 && path[0] == '/');
    /* the path points into the input, or is the static "/" for an empty one */
    if (path >= in && path < in + len)
        CHECK(path + path_len == in + len);
    else
        CHECK(path_len == 1 && strcmp(path, "/") == 0);
    for (size_t i = 0; i < path_len; i++)
        CHECK((unsigned char)path[i] > 0x20 && (unsigned char)path[i] < 0x7f && path[i] != '#');

    /* rebuild scheme host:port path and parse it again */
    char auth[FORMAT_MAX];
    target_format(&a, auth, sizeof(auth));
    size_t alen = strlen(auth), n = scheme_len + alen + path_len;
    char *uri = malloc(n);
    CHECK(uri != NULL);
    memcpy(uri, https ? "https://" : "http://", scheme_len);
    memcpy(uri + scheme_len, auth, alen);
    memcpy(uri + scheme_len + alen, path, path_len);
    CHECK(target_parse_absolute(uri, n, &https2, &b, &path2, &path2_len) == 0);
    CHECK(same(&a, &b) && b.port_present && https2 == https);
    CHECK(path2_len == path_len && memcmp(path, path2, path_len) == 0);
    free(uri);

    /* the authority alone parses the same way as a Host field */
    const char *auth_start = in + scheme_len, *auth_end = auth_start;
    while (auth_end < in + len && *auth_end != '/' && *auth_end != '?')
        auth_end++;
    CHECK(target_parse_authority(auth_start, (size_t)(auth_end - auth_start), false,
                                 https ? 443 : 80, &b) == 0);
    CHECK(same(&a, &b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy without a terminator: ASan sees any read past len */
    char *in = malloc(size ? size : 1);

    CHECK(in != NULL);
    memcpy(in, data, size);
    fuzz_authority(in, size);
    fuzz_absolute(in, size);
    free(in);
    return 0;
}
