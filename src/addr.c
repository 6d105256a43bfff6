/* SPDX-License-Identifier: MIT */
/* addr: the SSRF guard's view of an IP address, CIDR blocks for allowed_ips, and the one
 * formatter of socket addresses. Owns no state and does no I/O. Invariant: an address is classified
 * by the IPv4 address it carries whenever an IPv6 form embeds one, so no encoding of a blocked
 * target reads as public, and metadata addresses win over every other class. */
#include "airlock/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "airlock/target.h"

/* An IPv4 address as a host-order integer, so ranges read as base/mask pairs. */
static uint32_t v4_from_bytes(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static bool v4_in(uint32_t a, uint32_t base, unsigned prefix)
{
    uint32_t mask = prefix ? 0xffffffffu << (32 - prefix) : 0;

    return (a & mask) == base;
}

#define V4(a, b, c, d) ((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 | (d))

static enum addr_class classify_v4(uint32_t a)
{
    /* Metadata first: 169.254.169.254 is link-local and 100.100.100.200 is CGNAT, but both
     * must be refused even where allowed_ips opens those classes. 169.254.169.254 serves AWS,
     * GCP, Azure, OCI and OpenStack; 100.100.100.200 is Alibaba Cloud's. 168.63.129.16 is
     * Azure's WireServer (VM agent, health probes, DNS, and a path to IMDS): a public address
     * every Azure VM reaches, so without this it would read as public and pass. */
    if (a == V4(169, 254, 169, 254) || a == V4(100, 100, 100, 200) || a == V4(168, 63, 129, 16))
        return ADDR_METADATA;

    /* "This network" (RFC 1122 §3.2.1.3, RFC 6890): never a valid destination, and Linux
     * treats 0.0.0.0 as a local address. */
    if (v4_in(a, V4(0, 0, 0, 0), 8))
        return ADDR_UNSPECIFIED;
    if (v4_in(a, V4(127, 0, 0, 0), 8)) /* RFC 1122 §3.2.1.3 */
        return ADDR_LOOPBACK;
    if (v4_in(a, V4(10, 0, 0, 0), 8) || v4_in(a, V4(172, 16, 0, 0), 12) ||
        v4_in(a, V4(192, 168, 0, 0), 16)) /* RFC 1918 §3 */
        return ADDR_PRIVATE;
    if (v4_in(a, V4(100, 64, 0, 0), 10)) /* RFC 6598 shared address space */
        return ADDR_CGNAT;
    if (v4_in(a, V4(169, 254, 0, 0), 16)) /* RFC 3927 */
        return ADDR_LINK_LOCAL;
    if (v4_in(a, V4(198, 18, 0, 0), 15)) /* RFC 2544 */
        return ADDR_BENCHMARK;
    /* TEST-NET-1/2/3 (RFC 5737) and the IETF protocol assignments block (RFC 6890 §2.2.2),
     * which holds special-purpose addresses such as DS-Lite's 192.0.0.0/29 and OCI's legacy
     * metadata at 192.0.0.192: none is a place an agent should reach. */
    if (v4_in(a, V4(192, 0, 2, 0), 24) || v4_in(a, V4(198, 51, 100, 0), 24) ||
        v4_in(a, V4(203, 0, 113, 0), 24) || v4_in(a, V4(192, 0, 0, 0), 24))
        return ADDR_DOCUMENTATION;
    if (v4_in(a, V4(224, 0, 0, 0), 4)) /* RFC 5771 */
        return ADDR_MULTICAST;
    /* 240/4 is reserved (RFC 1112 §4) and contains the limited broadcast 255.255.255.255
     * (RFC 919 §7). */
    if (v4_in(a, V4(240, 0, 0, 0), 4))
        return ADDR_BROADCAST;
    return ADDR_PUBLIC;
}

static bool v6_in(const uint8_t *a, const uint8_t *base, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;

    if (memcmp(a, base, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (base[whole] & mask);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* The IPv4 address an IPv4-mapped ::ffff:a.b.c.d (RFC 4291 §2.5.5.2) carries: the one form
 * the kernel itself routes as IPv4, so it is also what allowed_ips matching unwraps. */
static bool v6_mapped_v4(const uint8_t *a, uint32_t *v4)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (memcmp(a, prefix, sizeof(prefix)) != 0)
        return false;
    *v4 = v4_from_bytes(a + 12);
    return true;
}

/* Every IPv6 form that delivers to, or is translated to, an IPv4 address. A gateway or relay
 * on the path turns these into IPv4 traffic, so a private IPv4 hidden in one is still private.
 * :: and ::1 are excluded by the caller before this runs. */
static bool v6_embedded_v4(const uint8_t *a, uint32_t *v4)
{
    static const uint8_t translated[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

    if (v6_mapped_v4(a, v4))
        return true;
    /* IPv4-compatible ::a.b.c.d, deprecated by RFC 4291 §2.5.5.1 but still parsed by stacks,
     * and IPv4-translated ::ffff:0:a.b.c.d (RFC 2765 §2.1, SIIT). */
    if (all_zero(a, 12) || memcmp(a, translated, sizeof(translated)) == 0) {
        *v4 = v4_from_bytes(a + 12);
        return true;
    }
    /* NAT64 well-known prefix 64:ff9b::/96 (RFC 6052 §2.1): the v4 address sits in the last
     * 32 bits for a /96. */
    if (memcmp(a, nat64, sizeof(nat64)) == 0) {
        *v4 = v4_from_bytes(a + 12);
        return true;
    }
    /* 6to4 2002:V4ADDR::/48 (RFC 3056 §2): the v4 address is bits 16-47. */
    if (a[0] == 0x20 && a[1] == 0x02) {
        *v4 = v4_from_bytes(a + 2);
        return true;
    }
    /* Teredo 2001:0::/32 (RFC 4380 §4): bits 96-127 are the client's public v4 address with
     * every bit inverted. The server address in bits 32-63 only relays. */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        *v4 = ~v4_from_bytes(a + 12);
        return true;
    }
    return false;
}

/* An operator carves its own RFC 6052 prefix out of 64:ff9b:1::/48 (RFC 8215 §3), at any of
 * the lengths that fit inside it, and we cannot know which: an IPv4 address may sit at the
 * place each of /48, /56, /64 and /96 puts it (RFC 6052 §2.2; bits 64-71, the "u" octet, are
 * skipped). A metadata address at any of them is refused: a false refusal is harmless, a
 * translator that reaches 169.254.169.254 is not. */
static bool nat64_local_carries_metadata(const uint8_t *a)
{
    static const uint8_t at[][4] = {
        {6, 7, 9, 10}, {7, 9, 10, 11}, {9, 10, 11, 12}, {12, 13, 14, 15}};

    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        const uint8_t b[4] = {a[at[i][0]], a[at[i][1]], a[at[i][2]], a[at[i][3]]};
        if (classify_v4(v4_from_bytes(b)) == ADDR_METADATA)
            return true;
    }
    return false;
}

static enum addr_class classify_v6(const uint8_t *a)
{
    /* AWS IMDS on Nitro instances (fd00:ec2::254) and GCP's metadata server on IPv6
     * (fd20:ce::254): both inside ULA fc00::/7, which allowed_ips may open. */
    static const uint8_t aws_imds[16] = {0xfd, 0, 0x0e, 0xc2, [14] = 0x02, 0x54};
    static const uint8_t gcp_metadata[16] = {0xfd, 0x20, 0, 0xce, [14] = 0x02, 0x54};
    /* Range bases are full 16-byte addresses, so v6_in() may read any prefix length. */
    static const uint8_t nat64_local[16] = {0, 0x64, 0xff, 0x9b, 0, 0x01};
    static const uint8_t bench[16] = {0x20, 0x01, 0, 0x02};
    static const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8};
    static const uint8_t doc2[16] = {0x3f, 0xff};
    uint32_t v4;

    if (memcmp(a, aws_imds, sizeof(aws_imds)) == 0 ||
        memcmp(a, gcp_metadata, sizeof(gcp_metadata)) == 0)
        return ADDR_METADATA;
    /* :: and ::1 first (RFC 4291 §2.5.2, §2.5.3): as IPv4-compatible addresses they would read
     * as 0.0.0.0 and 0.0.0.1, but they are IPv6's own unspecified and loopback addresses. */
    if (all_zero(a, 15) && a[15] <= 1)
        return a[15] ? ADDR_LOOPBACK : ADDR_UNSPECIFIED;
    if (v6_embedded_v4(a, &v4))
        return classify_v4(v4);
    /* 64:ff9b:1::/48 (RFC 8215) is for translators inside one network, so what lies behind it
     * is local whatever the embedded address says, unless that is a metadata service. */
    if (v6_in(a, nat64_local, 48))
        return nat64_local_carries_metadata(a) ? ADDR_METADATA : ADDR_PRIVATE;
    if (v6_in(a, bench, 48)) /* RFC 5180 §8 */
        return ADDR_BENCHMARK;
    if (v6_in(a, doc, 32) || v6_in(a, doc2, 20)) /* RFC 3849, RFC 9637 */
        return ADDR_DOCUMENTATION;
    /* ULA fc00::/7 (RFC 4193), and the deprecated site-local fec0::/10 (RFC 3879), which some
     * networks still route internally. */
    if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0))
        return ADDR_PRIVATE;
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) /* fe80::/10, RFC 4291 §2.5.6 */
        return ADDR_LINK_LOCAL;
    if (a[0] == 0xff) /* RFC 4291 §2.7 */
        return ADDR_MULTICAST;
    return ADDR_PUBLIC;
}

const char *addr_class_name(enum addr_class c)
{
    switch (c) {
    case ADDR_PUBLIC:
        return "public";
    case ADDR_LOOPBACK:
        return "loopback";
    case ADDR_PRIVATE:
        return "private";
    case ADDR_CGNAT:
        return "cgnat";
    case ADDR_LINK_LOCAL:
        return "link_local";
    case ADDR_UNSPECIFIED:
        return "unspecified";
    case ADDR_MULTICAST:
        return "multicast";
    case ADDR_BROADCAST:
        return "broadcast";
    case ADDR_BENCHMARK:
        return "benchmark";
    case ADDR_DOCUMENTATION:
        return "documentation";
    case ADDR_METADATA:
        return "metadata";
    }
    return "unknown";
}

enum addr_class addr_classify(const struct sockaddr *sa)
{
    if (sa == NULL)
        return ADDR_UNSPECIFIED;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        return classify_v4(ntohl(sin->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        return classify_v6(sin6->sin6_addr.s6_addr);
    }
    return ADDR_UNSPECIFIED;
}

/* The first len bytes of host equal name, ignoring case as DNS does (RFC 4343). */
static bool name_is(const char *host, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(host, name, len) == 0;
}

/* host's length without one trailing dot: "a.b." is the absolute form of "a.b" (RFC 1034
 * §3.1) and resolves the same. */
static size_t name_len(const char *host)
{
    size_t len = strlen(host);

    if (len > 0 && host[len - 1] == '.')
        len--;
    return len;
}

/* instance-data.REGION.compute.internal: one label between fixed ends. */
static bool is_ec2_regional(const char *host, size_t len)
{
    static const char head[] = "instance-data.", tail[] = ".compute.internal";
    const size_t hlen = sizeof(head) - 1, tlen = sizeof(tail) - 1;

    if (len <= hlen + tlen || strncasecmp(host, head, hlen) != 0 ||
        strncasecmp(host + len - tlen, tail, tlen) != 0)
        return false;
    return memchr(host + hlen, '.', len - hlen - tlen) == NULL;
}

bool addr_is_metadata_name(const char *host)
{
    /* GCP documents metadata.google.internal, the alias metadata.goog, and the bare "metadata"
     * that its google.internal search domain completes. EC2's VPC resolver answers
     * instance-data under the DHCP search domain: ec2.internal in us-east-1,
     * REGION.compute.internal elsewhere. Azure, OCI and Alibaba publish no name, only the
     * addresses classify_v4() refuses. Every other name still meets the address check. */
    static const char *const names[] = {
        "metadata.google.internal",   "metadata.goog", "metadata", "instance-data",
        "instance-data.ec2.internal",
    };
    size_t len;

    if (host == NULL)
        return false;
    len = name_len(host);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name_is(host, len, names[i]))
            return true;
    return is_ec2_regional(host, len);
}

bool addr_is_localhost_name(const char *host)
{
    static const char suffix[] = ".localhost";
    const size_t slen = sizeof(suffix) - 1;
    size_t len;

    if (host == NULL)
        return false;
    len = name_len(host);
    /* RFC 6761 §6.3: "localhost." and every name under it resolve to loopback, and name
     * resolution APIs should answer them without asking DNS. A label is needed before the
     * suffix: ".localhost" alone is not a name. */
    if (name_is(host, len, "localhost"))
        return true;
    return len > slen && host[len - slen - 1] != '.' &&
           strncasecmp(host + len - slen, suffix, slen) == 0;
}

/* The prefix after '/': decimal, no sign, no leading zero, at most max. */
static int parse_prefix(const char *s, unsigned max, unsigned *out)
{
    unsigned v = 0;
    size_t n = 0;

    if (s[0] == '0' && s[1] != '\0')
        return -1;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9' || n >= 3)
            return -1;
        v = v * 10 + (unsigned)(s[n] - '0');
    }
    if (n == 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

int addr_cidr_parse(const char *s, struct addr_cidr *out)
{
    char buf[INET6_ADDRSTRLEN];
    const char *slash;
    size_t alen, nbytes;
    unsigned prefix, max;

    if (s == NULL || out == NULL)
        return -1;
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';

    memset(out, 0, sizeof(*out));
    /* inet_pton is strict where inet_aton is not: no "10.1", no hex or octal octets, no zone
     * index, so what the operator wrote is exactly what is matched. */
    if (inet_pton(AF_INET, buf, out->bytes) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, out->bytes) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    prefix = max;
    if (slash && parse_prefix(slash + 1, max, &prefix) != 0)
        return -1;

    /* Host bits below the prefix are refused rather than cleared: "10.0.0.1/8" is more likely
     * a typo for a /32 than a request for all of 10/8. */
    nbytes = max / 8;
    for (size_t i = 0; i < nbytes; i++) {
        unsigned lo = (unsigned)i * 8, keep;
        if (prefix >= lo + 8)
            continue;
        keep = prefix > lo ? prefix - lo : 0;
        if (out->bytes[i] & (uint8_t)(0xff >> keep))
            return -1;
    }
    out->prefix = (uint8_t)prefix;
    return 0;
}

bool addr_cidr_contains(const struct addr_cidr *c, const struct sockaddr *sa)
{
    uint8_t a[16];
    uint32_t v4;

    if (c == NULL || sa == NULL)
        return false;
    /* Compare in one encoding so that the answer does not depend on which socket family
     * carried the address: an IPv4-mapped ::ffff:a.b.c.d is a.b.c.d (RFC 4291 §2.5.5.2). */
    if (c->family == AF_INET) {
        if (sa->sa_family == AF_INET) {
            v4 = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        } else if (sa->sa_family != AF_INET6 ||
                   !v6_mapped_v4(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, &v4)) {
            return false;
        }
        return v4_in(v4, v4_from_bytes(c->bytes), c->prefix);
    }
    if (c->family != AF_INET6)
        return false;
    if (sa->sa_family == AF_INET6) {
        memcpy(a, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 16);
    } else if (sa->sa_family == AF_INET) {
        memset(a, 0, 10);
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr.s_addr, 4);
    } else {
        return false;
    }
    return v6_in(a, c->bytes, c->prefix);
}

bool addr_cidr_is_metadata(const struct addr_cidr *c)
{
    struct sockaddr_storage ss;

    /* Every metadata address is a single address, so only a full-length block is all
     * metadata; a wider block (169.254.0.0/16) also holds addresses allowed_ips can open. */
    if (c == NULL || c->prefix != (c->family == AF_INET ? 32 : 128))
        return false;
    memset(&ss, 0, sizeof(ss));
    if (c->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, c->bytes, 4);
    } else if (c->family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, c->bytes, 16);
    } else {
        return false;
    }
    return addr_classify((const struct sockaddr *)&ss) == ADDR_METADATA;
}

void addr_format(const struct sockaddr *sa, char *buf, size_t cap)
{
    const void *src = NULL;

    if (buf == NULL || cap == 0)
        return;
    buf[0] = '\0';
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET)
        src = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (src == NULL)
        return;
    /* No text form is longer than INET6_ADDRSTRLEN, which also keeps the cast to socklen_t
     * exact. inet_ntop may leave buf partly written when cap is too small: keep it a string. */
    if (inet_ntop(sa->sa_family, src, buf,
                  (socklen_t)(cap < INET6_ADDRSTRLEN ? cap : INET6_ADDRSTRLEN)) == NULL)
        buf[0] = '\0';
}

uint16_t addr_port(const struct sockaddr *sa)
{
    if (sa && sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa && sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

void addr_format_endpoint(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (buf == NULL || cap == 0)
        return;
    addr_format(sa, ip, sizeof(ip));
    if (!ip[0]) {
        buf[0] = '\0';
        return;
    }
    bool v6 = sa->sa_family == AF_INET6;
    snprintf(buf, cap, "%s%s%s:%u", v6 ? "[" : "", ip, v6 ? "]" : "", (unsigned)addr_port(sa));
}

int addr_parse_hostport(const char *text, struct sockaddr_storage *ss)
{
    char buf[TARGET_HOST_MAX + 16];
    size_t len = strlen(text);
    bool any_port = len >= 2 && strcmp(text + len - 2, ":0") == 0;
    struct authority a;

    /* A request never names port 0, so the authority parser refuses it: read port 1 in its
     * place, and ask for 0. */
    if (any_port) {
        if (len >= sizeof(buf))
            return -1;
        memcpy(buf, text, len - 1);
        buf[len - 1] = '1';
        buf[len] = '\0';
        text = buf;
    }
    if (target_parse_authority(text, len, true, 0, &a) < 0)
        return -1;
    memset(ss, 0, sizeof(*ss));
    if (a.kind == TARGET_IPV6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(any_port ? 0 : a.port);
        return inet_pton(AF_INET6, a.host, &sin6->sin6_addr) == 1 ? 0 : -1;
    }
    /* The one name: anything else would need a lookup before airlock has a resolver. */
    if (a.kind == TARGET_DNS && strcmp(a.host, "localhost") != 0)
        return -1;
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(any_port ? 0 : a.port);
    return inet_pton(AF_INET, a.kind == TARGET_DNS ? "127.0.0.1" : a.host, &sin->sin_addr) == 1
               ? 0
               : -1;
}
