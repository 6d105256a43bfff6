/* SPDX-License-Identifier: MIT */
/* Unit tests for target: tables of authorities accepted (with their normalised form) and
 * refused, absolute-form targets, and the tunnel/request authority match. */
#include "airlock/target.h"

#include <string.h>

#include "test.h"

struct auth_case {
    const char *in;
    bool port_required;
    uint16_t default_port;
    const char *want; /* target_format of the result, NULL when refused */
    enum target_host_kind kind;
    bool port_present;
};

#define OK_DNS(in, want)                                                                           \
    {                                                                                              \
        in, true, 0, want, TARGET_DNS, true                                                        \
    }
#define OK_V4(in, want)                                                                            \
    {                                                                                              \
        in, true, 0, want, TARGET_IPV4, true                                                       \
    }
#define OK_V6(in, want)                                                                            \
    {                                                                                              \
        in, true, 0, want, TARGET_IPV6, true                                                       \
    }
#define BAD(in)                                                                                    \
    {                                                                                              \
        in, true, 0, NULL, TARGET_DNS, false                                                       \
    }
#define BAD_HOST(in)                                                                               \
    {                                                                                              \
        in, false, 443, NULL, TARGET_DNS, false                                                    \
    }

static const struct auth_case auth_cases[] = {
    /* DNS names: lower-cased, trailing dot dropped */
    OK_DNS("api.github.com:443", "api.github.com:443"),
    OK_DNS("API.GitHub.COM:443", "api.github.com:443"),
    OK_DNS("example.com.:8443", "example.com:8443"),
    OK_DNS("localhost:1", "localhost:1"),
    OK_DNS("a:65535", "a:65535"),
    OK_DNS("_service._tcp.example.com:443", "_service._tcp.example.com:443"),
    OK_DNS("xn--bcher-kva.example:443", "xn--bcher-kva.example:443"),
    OK_DNS("1.2.3.example:80", "1.2.3.example:80"),
    OK_DNS("123abc:80", "123abc:80"),
    OK_DNS("a-b.c-d.e:80", "a-b.c-d.e:80"),
    OK_DNS("0xzz:80", "0xzz:80"),
    /* IPv4: only the dotted quad */
    OK_V4("127.0.0.1:11434", "127.0.0.1:11434"),
    OK_V4("0.0.0.0:80", "0.0.0.0:80"),
    OK_V4("255.255.255.255:80", "255.255.255.255:80"),
    OK_V4("10.0.0.1.:80", "10.0.0.1:80"),
    /* IPv6: brackets, canonical text */
    OK_V6("[::1]:443", "[::1]:443"),
    OK_V6("[0:0:0:0:0:0:0:1]:443", "[::1]:443"),
    OK_V6("[2001:DB8:0:0:0:0:0:1]:8443", "[2001:db8::1]:8443"),
    OK_V6("[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.1]:80"),
    OK_V6("[::FFFF:7F00:1]:80", "[::ffff:127.0.0.1]:80"),
    /* IPv4 in other spellings: refused, never handed to a resolver */
    BAD("2130706433:80"),
    BAD("127.1:80"),
    BAD("0x7f.1:80"),
    BAD("0x7f000001:80"),
    BAD("0X7F000001:80"),
    BAD("0177.0.0.1:80"),
    BAD("127.0.0.01:80"),
    BAD("1.2.3.4.5:80"),
    BAD("1.2.3:80"),
    BAD("256.1.1.1:80"),
    BAD("1.2.3.0x4:80"),
    BAD("example.123:80"),
    BAD("example.0x1f:80"),
    /* IPv6 forms that are refused */
    BAD("::1:443"),
    BAD("[::1]"),
    BAD("[::1]:"),
    BAD("[::1]443"),
    BAD("[fe80::1%25eth0]:443"),
    BAD("[fe80::1%eth0]:443"),
    BAD("[v1.fe]:443"),
    BAD("[127.0.0.1]:443"),
    BAD("[::1:443"),
    BAD("[]:443"),
    BAD("[::g]:443"),
    /* ports */
    BAD("example.com"),
    BAD("example.com:"),
    BAD("example.com:0"),
    BAD("example.com:65536"),
    BAD("example.com:99999"),
    BAD("example.com:+443"),
    BAD("example.com:-1"),
    BAD("example.com:0443"),
    BAD("example.com:443 "),
    BAD("example.com: 443"),
    BAD("example.com:44a"),
    BAD("example.com:443:443"),
    BAD("example.com:4294967739"),
    /* names */
    BAD(":443"),
    BAD(".:443"),
    BAD("..:443"),
    BAD(".example.com:443"),
    BAD("a..b:443"),
    BAD("-a.com:443"),
    BAD("a-.com:443"),
    BAD("a.-b.com:443"),
    BAD("user@example.com:443"),
    BAD("user:pw@example.com:443"),
    BAD("example.com:443@evil.com"),
    BAD("exa mple.com:443"),
    BAD("exa%2fmple.com:443"),
    BAD("example.com/:443"),
    BAD("ex\\ample.com:443"),
    BAD("ex*ample.com:443"),
    BAD("caf\xc3\xa9.com:443"),
    BAD("*.example.com:443"),
    BAD("example.com..:443"),
    /* port optional (a Host field) */
    {"example.com", false, 443, "example.com:443", TARGET_DNS, false},
    {"Example.Com.", false, 80, "example.com:80", TARGET_DNS, false},
    {"[::1]", false, 443, "[::1]:443", TARGET_IPV6, false},
    {"10.1.2.3", false, 0, "10.1.2.3", TARGET_IPV4, false},
    {"example.com:8080", false, 443, "example.com:8080", TARGET_DNS, true},
    BAD_HOST(""),
    BAD_HOST("example.com:"),
    BAD_HOST("127.1"),
};

static void test_authority_table(void)
{
    struct authority a;
    char buf[300];
    size_t n = sizeof(auth_cases) / sizeof(auth_cases[0]), i;

    CHECK(n >= 40);
    for (i = 0; i < n; i++) {
        const struct auth_case *c = &auth_cases[i];
        int rc =
            target_parse_authority(c->in, strlen(c->in), c->port_required, c->default_port, &a);

        if (!c->want) {
            if (rc != -1)
                fprintf(stderr, "accepted: '%s'\n", c->in);
            CHECK_EQ(rc, -1);
            continue;
        }
        if (rc != 0) {
            fprintf(stderr, "refused: '%s'\n", c->in);
            CHECK_EQ(rc, 0);
            continue;
        }
        target_format(&a, buf, sizeof(buf));
        CHECK_STR(buf, c->want);
        CHECK_EQ(a.kind, c->kind);
        CHECK_EQ(a.port_present, c->port_present);
    }
}

static void test_authority_lengths(void)
{
    struct authority a;
    char name[400];
    size_t n;

    /* a 63-octet label is fine, 64 is not */
    memset(name, 'a', 63);
    memcpy(name + 63, ".com:443", 9);
    CHECK_EQ(target_parse_authority(name, strlen(name), true, 0, &a), 0);
    memset(name, 'a', 64);
    memcpy(name + 64, ".com:443", 9);
    CHECK_EQ(target_parse_authority(name, strlen(name), true, 0, &a), -1);

    /* 253 octets in all, plus a trailing dot, is the longest name */
    n = 0;
    while (n < 253) {
        size_t label = 253 - n >= 62 ? 61 : 253 - n;

        memset(name + n, 'b', label);
        n += label;
        if (n < 253)
            name[n++] = '.';
    }
    CHECK_EQ(n, 253);
    memcpy(name + n, ".:443", 6);
    CHECK_EQ(target_parse_authority(name, strlen(name), true, 0, &a), 0);
    CHECK_EQ(strlen(a.host), 253);
    memcpy(name + n, "b:443", 6);
    CHECK_EQ(target_parse_authority(name, strlen(name), true, 0, &a), -1);

    /* the length is the caller's, not the NUL's */
    CHECK_EQ(target_parse_authority("example.com:443trailing", 15, true, 0, &a), 0);
    CHECK_STR(a.host, "example.com");
    CHECK_EQ(a.port, 443);
    CHECK_EQ(target_parse_authority("a.com:4\0"
                                    "43",
                                    10, true, 0, &a),
             -1);
}

struct abs_case {
    const char *in;
    const char *want; /* formatted authority, NULL when refused */
    const char *path;
    bool port_present;
    bool https; /* the scheme is https (accepted only when the caller asks for it) */
};

static const struct abs_case abs_cases[] = {
    {"http://example.com/", "example.com:80", "/", false, false},
    {"http://example.com", "example.com:80", "/", false, false},
    {"HTTP://Example.COM:8080/a/b?c=d&e", "example.com:8080", "/a/b?c=d&e", true, false},
    {"http://127.0.0.1:11434/api/generate", "127.0.0.1:11434", "/api/generate", true, false},
    {"http://[::1]:8080/x", "[::1]:8080", "/x", true, false},
    {"http://[::1]/x", "[::1]:80", "/x", false, false},
    {"http://example.com./p", "example.com:80", "/p", false, false},
    {"https://example.com/", "example.com:443", "/", false, true},
    {"https://example.com", "example.com:443", "/", false, true},
    {"HTTPS://API.example.com:8443/v1?k=v", "api.example.com:8443", "/v1?k=v", true, true},
    {"https://[::1]/x", "[::1]:443", "/x", false, true},
    {"https://127.0.0.1:443/", "127.0.0.1:443", "/", true, true},
    {"https://", NULL, NULL, false, false},
    {"https:///p", NULL, NULL, false, false},
    {"https://user@example.com/", NULL, NULL, false, false},
    {"https://example.com:0/", NULL, NULL, false, false},
    {"https://example.com/p#f", NULL, NULL, false, false},
    {"https://example.com?q", NULL, NULL, false, false},
    {"https://127.1/", NULL, NULL, false, false},
    {"httpss://example.com/", NULL, NULL, false, false},
    {"http s://example.com/", NULL, NULL, false, false},
    {"wss://example.com/", NULL, NULL, false, false},
    {"ftp://example.com/", NULL, NULL, false, false},
    {"http:/example.com/", NULL, NULL, false, false},
    {"http://", NULL, NULL, false, false},
    {"http:///path", NULL, NULL, false, false},
    {"http://user@example.com/", NULL, NULL, false, false},
    {"http://user:pw@example.com/", NULL, NULL, false, false},
    {"http://example.com/p#frag", NULL, NULL, false, false},
    {"http://example.com#frag", NULL, NULL, false, false},
    {"http://example.com?q=1", NULL, NULL, false, false},
    {"http://example.com:0/", NULL, NULL, false, false},
    {"http://2130706433/", NULL, NULL, false, false},
    {"http://127.1/", NULL, NULL, false, false},
    {"http://example.com/a b", NULL, NULL, false, false},
    {"http://example.com/a\tb", NULL, NULL, false, false},
    {"http://exa\\mple.com/", NULL, NULL, false, false},
    {"/origin/form", NULL, NULL, false, false},
    {"example.com:443", NULL, NULL, false, false},
};

static void test_absolute(void)
{
    struct authority a;
    const char *path;
    size_t path_len, i;
    char buf[300];
    bool https;

    for (i = 0; i < sizeof(abs_cases) / sizeof(abs_cases[0]); i++) {
        const struct abs_case *c = &abs_cases[i];
        /* a caller that takes http:// only refuses every https:// target */
        int rc = target_parse_absolute(c->in, strlen(c->in), NULL, &a, &path, &path_len);
        CHECK_EQ(rc, c->want && !c->https ? 0 : -1);
        https = !c->https;
        rc = target_parse_absolute(c->in, strlen(c->in), &https, &a, &path, &path_len);

        if (!c->want) {
            if (rc != -1)
                fprintf(stderr, "accepted: '%s'\n", c->in);
            CHECK_EQ(rc, -1);
            continue;
        }
        if (rc != 0) {
            fprintf(stderr, "refused: '%s'\n", c->in);
            CHECK_EQ(rc, 0);
            continue;
        }
        target_format(&a, buf, sizeof(buf));
        CHECK_STR(buf, c->want);
        CHECK_EQ(path_len, strlen(c->path));
        CHECK(memcmp(path, c->path, path_len) == 0);
        CHECK_EQ(a.port_present, c->port_present);
        CHECK_EQ(https, c->https);
    }
    /* the path points into the input */
    static const char in[] = "http://h.example/x?y";
    CHECK_EQ(target_parse_absolute(in, strlen(in), NULL, &a, &path, &path_len), 0);
    CHECK(path == in + strlen("http://h.example"));
    static const char tls_in[] = "https://h.example/x?y";
    CHECK_EQ(target_parse_absolute(tls_in, strlen(tls_in), &https, &a, &path, &path_len), 0);
    CHECK(path == tls_in + strlen("https://h.example"));
}

static bool matches(const char *tunnel, const char *request)
{
    struct authority t, r;

    if (target_parse_authority(tunnel, strlen(tunnel), true, 0, &t) < 0)
        return false;
    if (target_parse_authority(request, strlen(request), false, 0, &r) < 0)
        return false;
    return target_authority_matches(&t, &r);
}

static void test_matches(void)
{
    CHECK(matches("api.github.com:443", "api.github.com:443"));
    CHECK(matches("api.github.com:443", "api.github.com")); /* cargo's git transport */
    CHECK(matches("api.github.com:443", "API.GitHub.com"));
    CHECK(matches("api.github.com:443", "api.github.com."));
    CHECK(matches("api.github.com.:443", "Api.Github.Com:443"));
    CHECK(!matches("api.github.com:443", "api.github.com:8443"));
    CHECK(!matches("api.github.com:443", "api.github.com:80"));
    CHECK(!matches("api.github.com:443", "github.com:443"));
    CHECK(!matches("api.github.com:443", "evil.api.github.com"));
    CHECK(!matches("api.github.com:443", "api.github.co"));
    CHECK(matches("[::1]:8443", "[0::1]:8443"));
    CHECK(matches("[::1]:8443", "[::1]"));
    CHECK(!matches("[::1]:8443", "127.0.0.1:8443"));
    CHECK(matches("127.0.0.1:11434", "127.0.0.1"));
    CHECK(!matches("127.0.0.1:11434", "127.0.0.2:11434"));
    CHECK(!matches("127.0.0.1:11434", "localhost:11434"));

    /* an absolute-form authority without a port matches whatever the tunnel's port */
    struct authority t, r;
    const char *path;
    size_t path_len;
    CHECK_EQ(target_parse_authority("h.example:443", 13, true, 0, &t), 0);
    CHECK_EQ(target_parse_absolute("http://h.example/", 17, NULL, &r, &path, &path_len), 0);
    CHECK(target_authority_matches(&t, &r));
    CHECK_EQ(target_parse_absolute("http://h.example:80/", 20, NULL, &r, &path, &path_len), 0);
    CHECK(!target_authority_matches(&t, &r));
}

static void test_format(void)
{
    struct authority a;
    char small[8];

    CHECK_EQ(target_parse_authority("[2001:db8::1]:443", 17, true, 0, &a), 0);
    CHECK_STR(a.host, "2001:db8::1");
    target_format(&a, small, sizeof(small));
    CHECK_STR(small, "[2001:d"); /* truncated, still terminated */
    target_format(&a, small, 0);
    memset(&a, 0, sizeof(a));
    strcpy(a.host, "example.com");
    target_format(&a, small, sizeof(small));
    CHECK_EQ(strlen(small), 7);
}

/* The one host normaliser that policy, providers and the CA share. */
static void test_normalise_host(void)
{
    static const struct {
        const char *in;
        bool brackets;
        const char *want; /* NULL: refused */
        enum target_host_kind kind;
    } cases[] = {
        {"Api.GitHub.COM.", false, "api.github.com", TARGET_DNS},
        {"under_score.example", false, "under_score.example", TARGET_DNS},
        {"localhost", false, "localhost", TARGET_DNS},
        {"1.2.3.4", false, "1.2.3.4", TARGET_IPV4},
        {"1.2.3.4.", false, "1.2.3.4", TARGET_IPV4},
        {"::0001", false, "::1", TARGET_IPV6},
        {"2001:DB8:0::1", false, "2001:db8::1", TARGET_IPV6},
        {"::ffff:1.2.3.4", false, "::ffff:1.2.3.4", TARGET_IPV6},
        {"[::0001]", true, "::1", TARGET_IPV6},
        {"[::1]", false, NULL, 0},
        {"[1.2.3.4]", true, NULL, 0},
        {"[::1].", true, NULL, 0},
        {"::1.", false, NULL, 0},
        {"fe80::1%eth0", false, NULL, 0},
        {"-lead.example", false, NULL, 0},
        {"trail-.example", false, NULL, 0},
        {"a.0x1f", false, NULL, 0},
        {"0x7f", false, NULL, 0},
        {"127.1", false, NULL, 0},
        {"010.0.0.1", false, NULL, 0},
        {"2130706433", false, NULL, 0},
        {"a..b", false, NULL, 0},
        {"", false, NULL, 0},
        {".", false, NULL, 0},
        {"exa mple.com", false, NULL, 0},
        {"a.com:443", false, NULL, 0},
    };
    char out[TARGET_HOST_MAX + 1];
    enum target_host_kind kind;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc =
            target_normalise_host(cases[i].in, strlen(cases[i].in), cases[i].brackets, out, &kind);
        if ((rc == 0) != (cases[i].want != NULL))
            fprintf(stderr, "  normalise case %zu: \"%s\"\n", i, cases[i].in);
        CHECK_EQ(rc, cases[i].want ? 0 : -1);
        if (rc == 0 && cases[i].want) {
            CHECK_STR(out, cases[i].want);
            CHECK_EQ(kind, cases[i].kind);
        }
    }
}

int main(void)
{
    RUN(test_authority_table);
    RUN(test_authority_lengths);
    RUN(test_absolute);
    RUN(test_matches);
    RUN(test_format);
    RUN(test_normalise_host);
    return test_report();
}
