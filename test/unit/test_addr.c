/* SPDX-License-Identifier: MIT */
/* Unit tests for addr: every SSRF range with addresses just inside and just outside it, the
 * IPv6 forms that carry an IPv4 address, metadata and localhost names, and CIDR parsing and
 * matching. */
#include "airlock/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "test.h"

/* Fill ss from a textual address; the test data is ours, so a bad literal is a test bug. */
static const struct sockaddr *sa_of(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
    } else {
        fprintf(stderr, "bad test literal %s\n", text);
        CHECK(0);
    }
    return (const struct sockaddr *)ss;
}

struct class_case {
    const char *addr;
    enum addr_class want;
};

static void check_classes(const struct class_case *cases, size_t n)
{
    struct sockaddr_storage ss;

    for (size_t i = 0; i < n; i++) {
        enum addr_class got = addr_classify(sa_of(cases[i].addr, &ss));
        if (got != cases[i].want)
            fprintf(stderr, "  %s: got %s, want %s\n", cases[i].addr, addr_class_name(got),
                    addr_class_name(cases[i].want));
        CHECK_EQ(got, cases[i].want);
    }
}

#define CHECK_CLASSES(t) check_classes(t, sizeof(t) / sizeof(t[0]))

static void test_v4_ranges(void)
{
    static const struct class_case cases[] = {
        /* 0.0.0.0/8 */
        {"0.0.0.0", ADDR_UNSPECIFIED},
        {"0.255.255.255", ADDR_UNSPECIFIED},
        {"1.0.0.0", ADDR_PUBLIC},
        /* 10/8 */
        {"9.255.255.255", ADDR_PUBLIC},
        {"10.0.0.0", ADDR_PRIVATE},
        {"10.255.255.255", ADDR_PRIVATE},
        {"11.0.0.0", ADDR_PUBLIC},
        /* 100.64/10 */
        {"100.63.255.255", ADDR_PUBLIC},
        {"100.64.0.0", ADDR_CGNAT},
        {"100.127.255.255", ADDR_CGNAT},
        {"100.128.0.0", ADDR_PUBLIC},
        /* 127/8 */
        {"126.255.255.255", ADDR_PUBLIC},
        {"127.0.0.0", ADDR_LOOPBACK},
        {"127.0.0.1", ADDR_LOOPBACK},
        {"127.255.255.255", ADDR_LOOPBACK},
        {"128.0.0.0", ADDR_PUBLIC},
        /* 169.254/16 */
        {"169.253.255.255", ADDR_PUBLIC},
        {"169.254.0.0", ADDR_LINK_LOCAL},
        {"169.254.255.255", ADDR_LINK_LOCAL},
        {"169.255.0.0", ADDR_PUBLIC},
        /* 172.16/12 */
        {"172.15.255.255", ADDR_PUBLIC},
        {"172.16.0.0", ADDR_PRIVATE},
        {"172.31.255.255", ADDR_PRIVATE},
        {"172.32.0.0", ADDR_PUBLIC},
        /* 192.0.0/24, 192.0.2/24 */
        {"191.255.255.255", ADDR_PUBLIC},
        {"192.0.0.0", ADDR_DOCUMENTATION},
        {"192.0.0.255", ADDR_DOCUMENTATION},
        {"192.0.1.0", ADDR_PUBLIC},
        {"192.0.1.255", ADDR_PUBLIC},
        {"192.0.2.0", ADDR_DOCUMENTATION},
        {"192.0.2.255", ADDR_DOCUMENTATION},
        {"192.0.3.0", ADDR_PUBLIC},
        /* 192.168/16 */
        {"192.167.255.255", ADDR_PUBLIC},
        {"192.168.0.0", ADDR_PRIVATE},
        {"192.168.255.255", ADDR_PRIVATE},
        {"192.169.0.0", ADDR_PUBLIC},
        /* 198.18/15 */
        {"198.17.255.255", ADDR_PUBLIC},
        {"198.18.0.0", ADDR_BENCHMARK},
        {"198.19.255.255", ADDR_BENCHMARK},
        {"198.20.0.0", ADDR_PUBLIC},
        /* 198.51.100/24 */
        {"198.51.99.255", ADDR_PUBLIC},
        {"198.51.100.0", ADDR_DOCUMENTATION},
        {"198.51.100.255", ADDR_DOCUMENTATION},
        {"198.51.101.0", ADDR_PUBLIC},
        /* 203.0.113/24 */
        {"203.0.112.255", ADDR_PUBLIC},
        {"203.0.113.0", ADDR_DOCUMENTATION},
        {"203.0.113.255", ADDR_DOCUMENTATION},
        {"203.0.114.0", ADDR_PUBLIC},
        /* 224/4 */
        {"223.255.255.255", ADDR_PUBLIC},
        {"224.0.0.0", ADDR_MULTICAST},
        {"239.255.255.255", ADDR_MULTICAST},
        /* 240/4, broadcast */
        {"240.0.0.0", ADDR_BROADCAST},
        {"254.255.255.255", ADDR_BROADCAST},
        {"255.255.255.255", ADDR_BROADCAST},
        /* metadata, and its neighbours */
        {"169.254.169.254", ADDR_METADATA},
        {"169.254.169.253", ADDR_LINK_LOCAL},
        {"169.254.169.255", ADDR_LINK_LOCAL},
        {"100.100.100.200", ADDR_METADATA},
        {"100.100.100.199", ADDR_CGNAT},
        {"100.100.100.201", ADDR_CGNAT},
        {"168.63.129.16", ADDR_METADATA},
        {"168.63.129.15", ADDR_PUBLIC},
        {"168.63.129.17", ADDR_PUBLIC},
        /* public */
        {"8.8.8.8", ADDR_PUBLIC},
        {"1.1.1.1", ADDR_PUBLIC},
        {"140.82.112.3", ADDR_PUBLIC},
        {"223.5.5.5", ADDR_PUBLIC},
    };

    CHECK_CLASSES(cases);
}

static void test_v6_ranges(void)
{
    static const struct class_case cases[] = {
        {"::", ADDR_UNSPECIFIED},
        {"::1", ADDR_LOOPBACK},
        /* fc00::/7 */
        {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PUBLIC},
        {"fc00::", ADDR_PRIVATE},
        {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PRIVATE},
        {"fd12:3456:789a::1", ADDR_PRIVATE},
        /* fe80::/10, and deprecated site-local fec0::/10 */
        {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PUBLIC},
        {"fe80::", ADDR_LINK_LOCAL},
        {"fe80::1", ADDR_LINK_LOCAL},
        {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_LINK_LOCAL},
        {"fec0::1", ADDR_PRIVATE},
        {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PRIVATE},
        /* ff00::/8 */
        {"ff00::", ADDR_MULTICAST},
        {"ff02::1", ADDR_MULTICAST},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_MULTICAST},
        /* 2001:2::/48 */
        {"2001:1:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PUBLIC},
        {"2001:2::", ADDR_BENCHMARK},
        {"2001:2:0:ffff:ffff:ffff:ffff:ffff", ADDR_BENCHMARK},
        {"2001:2:1::", ADDR_PUBLIC},
        /* 2001:db8::/32 */
        {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PUBLIC},
        {"2001:db8::", ADDR_DOCUMENTATION},
        {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_DOCUMENTATION},
        {"2001:db9::", ADDR_PUBLIC},
        /* 3fff::/20 */
        {"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_PUBLIC},
        {"3fff::", ADDR_DOCUMENTATION},
        {"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", ADDR_DOCUMENTATION},
        {"3fff:1000::", ADDR_PUBLIC},
        /* 64:ff9b:1::/48 local-use NAT64 */
        {"64:ff9b:1::", ADDR_PRIVATE},
        {"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", ADDR_PRIVATE},
        {"64:ff9b:1:0:0:0:808:808", ADDR_PRIVATE},
        {"64:ff9b:1::7f00:1", ADDR_PRIVATE},
        {"64:ff9b:1::a9fe:a9fd", ADDR_PRIVATE},
        {"64:ff9b:2::", ADDR_PUBLIC},
        /* ... but a metadata address where a /96, /64, /56 or /48 inside it would put an IPv4
         * address (RFC 6052 §2.2) is metadata */
        {"64:ff9b:1::a9fe:a9fe", ADDR_METADATA},
        {"64:ff9b:1::100.100.100.200", ADDR_METADATA},
        {"64:ff9b:1:ab::168.63.129.16", ADDR_METADATA},
        {"64:ff9b:1:0:a9:fea9:fe00:0", ADDR_METADATA},
        {"64:ff9b:1:a9:fe:a9fe::", ADDR_METADATA},
        {"64:ff9b:1:a9fe:a9:fe00::", ADDR_METADATA},
        {"64:ff9b:1:a9fe:a9:fd00::", ADDR_PRIVATE},
        /* metadata, and its neighbours */
        {"fd00:ec2::254", ADDR_METADATA},
        {"fd00:ec2::253", ADDR_PRIVATE},
        {"fd00:ec2::1:254", ADDR_PRIVATE},
        {"fd20:ce::254", ADDR_METADATA},
        {"fd20:ce:0:0:0:0:0:254", ADDR_METADATA},
        {"fd20:ce::253", ADDR_PRIVATE},
        {"fd20:ce::1:254", ADDR_PRIVATE},
        {"fd20:cf::254", ADDR_PRIVATE},
        /* public */
        {"2606:4700::1111", ADDR_PUBLIC},
        {"2001:4860:4860::8888", ADDR_PUBLIC},
        {"2a00:1450:4001::1", ADDR_PUBLIC},
    };

    CHECK_CLASSES(cases);
}

/* IPv6 forms carrying IPv4 are classified as the IPv4 address: each private or metadata address
 * in every wrapping, and public ones stay public. */
static void test_v6_embedded(void)
{
    static const struct class_case cases[] = {
        /* IPv4-mapped ::ffff:0:0/96 */
        {"::ffff:127.0.0.1", ADDR_LOOPBACK},
        {"::ffff:10.1.2.3", ADDR_PRIVATE},
        {"::ffff:192.168.1.1", ADDR_PRIVATE},
        {"::ffff:100.64.0.1", ADDR_CGNAT},
        {"::ffff:169.254.1.1", ADDR_LINK_LOCAL},
        {"::ffff:0.0.0.0", ADDR_UNSPECIFIED},
        {"::ffff:224.0.0.1", ADDR_MULTICAST},
        {"::ffff:255.255.255.255", ADDR_BROADCAST},
        {"::ffff:198.18.0.1", ADDR_BENCHMARK},
        {"::ffff:192.0.2.1", ADDR_DOCUMENTATION},
        {"::ffff:169.254.169.254", ADDR_METADATA},
        {"::ffff:a9fe:a9fe", ADDR_METADATA},
        {"::ffff:100.100.100.200", ADDR_METADATA},
        {"::ffff:168.63.129.16", ADDR_METADATA},
        {"::ffff:8.8.8.8", ADDR_PUBLIC},
        /* IPv4-compatible ::/96 */
        {"::127.0.0.1", ADDR_LOOPBACK},
        {"::10.0.0.1", ADDR_PRIVATE},
        {"::169.254.169.254", ADDR_METADATA},
        {"::0.0.0.2", ADDR_UNSPECIFIED},
        {"::1.1.1.1", ADDR_PUBLIC},
        /* IPv4-translated ::ffff:0:0/96 */
        {"::ffff:0:127.0.0.1", ADDR_LOOPBACK},
        {"::ffff:0:172.16.0.1", ADDR_PRIVATE},
        {"::ffff:0:169.254.169.254", ADDR_METADATA},
        {"::ffff:0:8.8.8.8", ADDR_PUBLIC},
        /* NAT64 64:ff9b::/96 */
        {"64:ff9b::127.0.0.1", ADDR_LOOPBACK},
        {"64:ff9b::10.0.0.1", ADDR_PRIVATE},
        {"64:ff9b::a9fe:a9fe", ADDR_METADATA},
        {"64:ff9b::100.100.100.200", ADDR_METADATA},
        {"64:ff9b::a83f:8110", ADDR_METADATA},
        {"64:ff9b::8.8.8.8", ADDR_PUBLIC},
        /* 6to4 2002::/16: v4 in bits 16-47, anything after it */
        {"2002:7f00:1::", ADDR_LOOPBACK},
        {"2002:c0a8:101::1", ADDR_PRIVATE},
        {"2002:a9fe:a9fe::", ADDR_METADATA},
        {"2002:a9fe:a9fe:1:2:3:4:5", ADDR_METADATA},
        {"2002:6464:64c8::1", ADDR_METADATA},
        {"2002:a83f:8110::", ADDR_METADATA},
        {"2002:0a00:0001::", ADDR_PRIVATE},
        {"2002:808:808::1", ADDR_PUBLIC},
        /* Teredo 2001::/32: client v4 is the inverted last 32 bits */
        {"2001:0:4136:e378:8000:63bf:80ff:fffe", ADDR_LOOPBACK},    /* 127.0.0.1 */
        {"2001:0:4136:e378:8000:63bf:f5ff:fffe", ADDR_PRIVATE},     /* 10.0.0.1 */
        {"2001:0:4136:e378:8000:63bf:5601:5601", ADDR_METADATA},    /* 169.254.169.254 */
        {"2001:0:4136:e378:8000:63bf:57c0:7eef", ADDR_METADATA},    /* 168.63.129.16 */
        {"2001:0:4136:e378:8000:63bf:f7f7:f7f7", ADDR_PUBLIC},      /* 8.8.8.8 */
        {"2001:0:4136:e378:8000:63bf:ffff:ffff", ADDR_UNSPECIFIED}, /* 0.0.0.0 */
    };

    CHECK_CLASSES(cases);
}

static void test_classify_other(void)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    CHECK_EQ(addr_classify((const struct sockaddr *)&ss), ADDR_UNSPECIFIED);
    CHECK_EQ(addr_classify(NULL), ADDR_UNSPECIFIED);

    CHECK_STR(addr_class_name(ADDR_PUBLIC), "public");
    CHECK_STR(addr_class_name(ADDR_METADATA), "metadata");
    CHECK_STR(addr_class_name(ADDR_LINK_LOCAL), "link_local");
    for (int c = ADDR_PUBLIC; c <= ADDR_METADATA; c++)
        CHECK(strcmp(addr_class_name((enum addr_class)c), "unknown") != 0);
}

struct name_case {
    const char *name;
    bool want;
};

static void test_metadata_names(void)
{
    static const struct name_case cases[] = {
        {"metadata.google.internal", true},
        {"METADATA.Google.Internal", true},
        {"metadata.google.internal.", true},
        {"metadata.goog", true},
        {"metadata", true},
        {"Metadata.", true},
        {"instance-data", true},
        {"instance-data.ec2.internal", true},
        {"INSTANCE-DATA.EC2.INTERNAL.", true},
        {"instance-data.eu-west-1.compute.internal", true},
        {"Instance-Data.us-west-2.Compute.Internal.", true},
        {"instance-data..compute.internal", false},
        {"instance-data.a.b.compute.internal", false},
        {"instance-data.compute.internal", false},
        {"ip-10-0-0-1.eu-west-1.compute.internal", false},
        {"metadata.google.internal..", false},
        {"metadata.google.internal.com", false},
        {"xmetadata.google.internal", false},
        {"metadata.googl", false},
        {"metadata.example.com", false},
        {"api.github.com", false},
        {"", false},
        {".", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (addr_is_metadata_name(cases[i].name) != cases[i].want)
            fprintf(stderr, "  metadata name \"%s\"\n", cases[i].name);
        CHECK_EQ(addr_is_metadata_name(cases[i].name), cases[i].want);
    }
    CHECK(!addr_is_metadata_name(NULL));
}

static void test_localhost_names(void)
{
    static const struct name_case cases[] = {
        {"localhost", true},
        {"LOCALHOST", true},
        {"localhost.", true},
        {"foo.localhost", true},
        {"a.b.LocalHost.", true},
        {"x.localhost", true},
        {"localhost.com", false},
        {"notlocalhost", false},
        {"foolocalhost", false},
        {".localhost", false},
        {"..localhost", false},
        {"localhost..", false},
        {"localhos", false},
        {"", false},
        {".", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (addr_is_localhost_name(cases[i].name) != cases[i].want)
            fprintf(stderr, "  localhost name \"%s\"\n", cases[i].name);
        CHECK_EQ(addr_is_localhost_name(cases[i].name), cases[i].want);
    }
    CHECK(!addr_is_localhost_name(NULL));
}

static void test_cidr_parse(void)
{
    static const struct {
        const char *text;
        int family;
        unsigned prefix;
    } good[] = {
        {"10.0.0.0/8", AF_INET, 8},
        {"127.0.0.1", AF_INET, 32},
        {"127.0.0.1/32", AF_INET, 32},
        {"0.0.0.0/0", AF_INET, 0},
        {"192.168.4.0/22", AF_INET, 22},
        {"255.255.255.255/32", AF_INET, 32},
        {"::1/128", AF_INET6, 128},
        {"::1", AF_INET6, 128},
        {"::/0", AF_INET6, 0},
        {"fc00::/7", AF_INET6, 7},
        {"2001:db8::/32", AF_INET6, 32},
        {"2001:db8:8000::/33", AF_INET6, 33},
        {"::ffff:10.0.0.0/104", AF_INET6, 104},
    };
    static const char *const bad[] = {
        "",
        "/8",
        "10.0.0.1/8",  /* host bits */
        "10.0.0.0/33", /* prefix too long */
        "::/129",
        "10.0.0.0/", /* empty prefix */
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "10.0.0.0/08", /* leading zero */
        "10.0.0.0/8 ",
        " 10.0.0.0/8",
        "10.0.0.0/8/8",
        "10.0.0.0/0008",
        "10.0.0.0/abc",
        "10.0.0",      /* inet_aton shorthand */
        "010.0.0.0/8", /* octal-looking */
        "0x7f.0.0.1",
        "256.0.0.0/8",
        "example.com",
        "fe80::1%eth0",
        "fd00::/7",       /* host bit in the first byte */
        "2001:db8::1/64", /* host bits at the end */
        "2001:db8:8000::/32",
        "1:2:3:4:5:6:7:8:9",
        "10.0.0.0/4294967304", /* would wrap to 8 */
    };
    struct addr_cidr c;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int rc = addr_cidr_parse(good[i].text, &c);
        if (rc != 0)
            fprintf(stderr, "  rejected \"%s\"\n", good[i].text);
        CHECK_EQ(rc, 0);
        CHECK_EQ(c.family, good[i].family);
        CHECK_EQ(c.prefix, good[i].prefix);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = addr_cidr_parse(bad[i], &c);
        if (rc != -1)
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
        CHECK_EQ(rc, -1);
    }
    CHECK_EQ(addr_cidr_parse(NULL, &c), -1);

    CHECK_EQ(addr_cidr_parse("192.168.4.0/22", &c), 0);
    CHECK_EQ(c.bytes[0], 192);
    CHECK_EQ(c.bytes[1], 168);
    CHECK_EQ(c.bytes[2], 4);
    CHECK_EQ(c.bytes[3], 0);
}

static void test_cidr_contains(void)
{
    static const struct {
        const char *cidr;
        const char *addr;
        bool want;
    } cases[] = {
        {"10.0.0.0/8", "10.0.0.0", true},
        {"10.0.0.0/8", "10.255.255.255", true},
        {"10.0.0.0/8", "11.0.0.0", false},
        {"10.0.0.0/8", "9.255.255.255", false},
        {"192.168.4.0/22", "192.168.7.255", true},
        {"192.168.4.0/22", "192.168.8.0", false},
        {"192.168.4.0/22", "192.168.3.255", false},
        {"127.0.0.1", "127.0.0.1", true},
        {"127.0.0.1", "127.0.0.2", false},
        {"0.0.0.0/0", "8.8.8.8", true},
        {"0.0.0.0/0", "255.255.255.255", true},
        /* an IPv4-mapped address is its IPv4 address, both ways round */
        {"127.0.0.0/8", "::ffff:127.0.0.1", true},
        {"127.0.0.0/8", "::ffff:128.0.0.1", false},
        {"0.0.0.0/0", "::ffff:1.2.3.4", true},
        {"::ffff:127.0.0.1/128", "127.0.0.1", true},
        {"::ffff:10.0.0.0/104", "10.9.9.9", true},
        {"::ffff:10.0.0.0/104", "11.0.0.0", false},
        /* other IPv4-carrying forms are distinct addresses for allowed_ips */
        {"127.0.0.0/8", "::127.0.0.1", false},
        {"127.0.0.0/8", "64:ff9b::127.0.0.1", false},
        {"0.0.0.0/0", "2606:4700::1111", false},
        {"0.0.0.0/0", "::1", false},
        /* IPv6 */
        {"::1/128", "::1", true},
        {"::1/128", "::2", false},
        {"::1/128", "127.0.0.1", false},
        {"fc00::/7", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
        {"fc00::/7", "fe00::", false},
        {"fc00::/7", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false},
        {"2001:db8:8000::/33", "2001:db8:ffff::1", true},
        {"2001:db8:8000::/33", "2001:db8:7fff::1", false},
        {"::/0", "2606:4700::1111", true},
    };
    struct sockaddr_storage ss;
    struct addr_cidr c;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ(addr_cidr_parse(cases[i].cidr, &c), 0);
        bool got = addr_cidr_contains(&c, sa_of(cases[i].addr, &ss));
        if (got != cases[i].want)
            fprintf(stderr, "  %s in %s: got %d\n", cases[i].addr, cases[i].cidr, got);
        CHECK_EQ(got, cases[i].want);
    }

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    CHECK_EQ(addr_cidr_parse("0.0.0.0/0", &c), 0);
    CHECK(!addr_cidr_contains(&c, (const struct sockaddr *)&ss));
    CHECK(!addr_cidr_contains(&c, NULL));
}

/* Only a block that is wholly metadata (a single metadata address) is reported. */
static void test_cidr_is_metadata(void)
{
    static const struct {
        const char *cidr;
        bool want;
    } cases[] = {
        {"169.254.169.254", true},    {"169.254.169.254/32", true},
        {"100.100.100.200", true},    {"168.63.129.16", true},
        {"168.63.129.16/32", true},   {"fd00:ec2::254", true},
        {"fd20:ce::254/128", true},   {"::ffff:168.63.129.16", true},
        {"64:ff9b::a9fe:a9fe", true}, {"64:ff9b:1::a9fe:a9fe", true},
        {"64:ff9b:1::/48", false},    {"168.63.129.16/31", false},
        {"169.254.0.0/16", false},    {"fd20:ce::254/127", false},
        {"168.63.129.17", false},     {"10.0.0.1", false},
        {"0.0.0.0/0", false},         {"::/0", false},
    };
    struct addr_cidr c;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_EQ(addr_cidr_parse(cases[i].cidr, &c), 0);
        if (addr_cidr_is_metadata(&c) != cases[i].want)
            fprintf(stderr, "  metadata block %s\n", cases[i].cidr);
        CHECK_EQ(addr_cidr_is_metadata(&c), cases[i].want);
    }
    CHECK(!addr_cidr_is_metadata(NULL));
}

static void test_format(void)
{
    static const char *const addrs[] = {
        "127.0.0.1", "255.255.255.255", "::1", "2001:db8::1", "::ffff:10.0.0.1", "fd00:ec2::254",
    };
    struct sockaddr_storage ss;
    char buf[64];

    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        addr_format(sa_of(addrs[i], &ss), buf, sizeof(buf));
        CHECK_STR(buf, addrs[i]);
    }

    /* Too small: an empty string, never a truncated address or unterminated bytes. */
    memset(buf, 'x', sizeof(buf));
    addr_format(sa_of("192.168.100.200", &ss), buf, 8);
    CHECK_STR(buf, "");
    addr_format(sa_of("192.168.100.200", &ss), buf, 16);
    CHECK_STR(buf, "192.168.100.200");

    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    strcpy(buf, "stale");
    addr_format((const struct sockaddr *)&ss, buf, sizeof(buf));
    CHECK_STR(buf, "");
    addr_format(NULL, buf, 0);
}

static void test_format_endpoint(void)
{
    struct sockaddr_storage ss;
    char buf[64];

    sa_of("127.0.0.1", &ss);
    ((struct sockaddr_in *)&ss)->sin_port = htons(3128);
    CHECK_EQ(addr_port((const struct sockaddr *)&ss), 3128);
    addr_format_endpoint((const struct sockaddr *)&ss, buf, sizeof(buf));
    CHECK_STR(buf, "127.0.0.1:3128");
    sa_of("2001:db8::1", &ss);
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons(443);
    CHECK_EQ(addr_port((const struct sockaddr *)&ss), 443);
    addr_format_endpoint((const struct sockaddr *)&ss, buf, sizeof(buf));
    CHECK_STR(buf, "[2001:db8::1]:443");
    addr_format_endpoint((const struct sockaddr *)&ss, buf, 8); /* cut, still a string */
    CHECK_STR(buf, "[2001:d");
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    CHECK_EQ(addr_port((const struct sockaddr *)&ss), 0);
    addr_format_endpoint((const struct sockaddr *)&ss, buf, sizeof(buf));
    CHECK_STR(buf, "");
}

/* The one HOST:PORT parser of airlock's own sockets. */
static void test_parse_hostport(void)
{
    static const struct {
        const char *in;
        const char *want; /* addr_format_endpoint of the result; NULL: refused */
    } cases[] = {
        {"127.0.0.1:3128", "127.0.0.1:3128"},
        {"0.0.0.0:0", "0.0.0.0:0"},
        {"localhost:9090", "127.0.0.1:9090"},
        {"LocalHost.:9090", "127.0.0.1:9090"},
        {"[::1]:8080", "[::1]:8080"},
        {"[::0001]:0", "[::1]:0"},
        {"127.0.0.1:65535", "127.0.0.1:65535"},
        {"127.0.0.1:65536", NULL},
        {"127.0.0.1:08080", NULL},
        {"127.0.0.1:00", NULL},
        {"127.0.0.1:", NULL},
        {"127.0.0.1", NULL},
        {":3128", NULL},
        {"::1:3128", NULL},
        {"[fe80::1%eth0]:9090", NULL},
        {"127.1:3128", NULL},
        {"example.com:3128", NULL},
        {"unix:/tmp/x", NULL},
        {"", NULL},
    };
    struct sockaddr_storage ss;
    char buf[64];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = addr_parse_hostport(cases[i].in, &ss);
        if ((rc == 0) != (cases[i].want != NULL))
            fprintf(stderr, "  hostport case %zu: \"%s\"\n", i, cases[i].in);
        CHECK_EQ(rc, cases[i].want ? 0 : -1);
        if (rc == 0 && cases[i].want) {
            addr_format_endpoint((const struct sockaddr *)&ss, buf, sizeof(buf));
            CHECK_STR(buf, cases[i].want);
        }
    }
}

int main(void)
{
    RUN(test_v4_ranges);
    RUN(test_v6_ranges);
    RUN(test_v6_embedded);
    RUN(test_classify_other);
    RUN(test_metadata_names);
    RUN(test_localhost_names);
    RUN(test_cidr_parse);
    RUN(test_cidr_contains);
    RUN(test_cidr_is_metadata);
    RUN(test_format);
    RUN(test_format_endpoint);
    RUN(test_parse_hostport);
    return test_report();
}
