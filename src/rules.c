/* SPDX-License-Identifier: MIT */
/* rules: the text of `airlock rules`, an nftables ruleset for the agent's namespace, and the
 * strict parsers of its options. It runs nothing and touches no namespace; the operator pipes
 * the text to `nft -f -`. Invariant: the ruleset always carries the exclusion of airlock's own
 * sockets before its redirect, so airlock's upstream connections never loop back to it. */
#include "airlock/rules.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Canonical decimal: digits only, no leading zero, at most max. */
static int parse_decimal(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (!s[0] || (s[0] == '0' && s[1]))
        return -1;
    for (i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_hex(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (!s[0])
        return -1;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0 || i >= 8)
            return -1;
        v = v * 16 + (uint64_t)d;
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int rules_parse_port(const char *s, uint16_t *out, char *err, size_t errlen)
{
    uint64_t v;

    if (parse_decimal(s, 65535, &v) < 0 || v == 0) {
        snprintf(err, errlen, "port %s is not a number from 1 to 65535", s);
        return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

int rules_parse_ports(const char *s, uint16_t *ports, size_t *nports, char *err, size_t errlen)
{
    char item[8];
    const char *p = s, *comma;
    size_t n = 0, len, i;
    uint16_t port;

    for (;;) {
        comma = strchr(p, ',');
        len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, errlen, "ports %s: each item is a port from 1 to 65535", s);
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (rules_parse_port(item, &port, err, errlen) < 0)
            return -1;
        for (i = 0; i < n; i++) {
            if (ports[i] == port) {
                snprintf(err, errlen, "ports %s: %u is listed twice", s, (unsigned)port);
                return -1;
            }
        }
        if (n == RULES_PORTS_MAX) {
            snprintf(err, errlen, "ports %s: more than %d ports", s, RULES_PORTS_MAX);
            return -1;
        }
        ports[n++] = port;
        if (!comma)
            break;
        p = comma + 1;
    }
    *nports = n;
    return 0;
}

int rules_parse_uid(const char *s, uint32_t *out, char *err, size_t errlen)
{
    uint64_t v;

    if (parse_decimal(s, 4294967294u, &v) < 0) {
        snprintf(err, errlen, "uid %s is not a number from 1 to 4294967294", s);
        return -1;
    }
    if (v == 0) {
        snprintf(err, errlen,
                 "uid 0 would let every root process bypass the redirect: run "
                 "airlock as a uid of its own");
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int rules_parse_mark(const char *s, uint32_t *out, char *err, size_t errlen)
{
    uint64_t v;
    int rc = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? parse_hex(s + 2, 0xffffffffu, &v)
                                                           : parse_decimal(s, 0xffffffffu, &v);

    if (rc < 0 || v == 0) {
        snprintf(err, errlen,
                 "mark %s is not a number from 1 to 0xffffffff (0 is the mark of "
                 "every unmarked socket)",
                 s);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

int rules_parse_family(const char *s, enum rules_family *out, char *err, size_t errlen)
{
    if (!strcmp(s, "inet"))
        *out = RULES_INET;
    else if (!strcmp(s, "ip"))
        *out = RULES_IP;
    else if (!strcmp(s, "ip6"))
        *out = RULES_IP6;
    else {
        snprintf(err, errlen, "family %s is not inet, ip or ip6", s);
        return -1;
    }
    return 0;
}

int rules_check(const struct rules_config *cfg, char *err, size_t errlen)
{
    size_t i;

    if (cfg->transparent_port == 0 || cfg->nports == 0 || cfg->nports > RULES_PORTS_MAX) {
        snprintf(err, errlen, "a transparent port and 1 to %d ports are needed", RULES_PORTS_MAX);
        return -1;
    }
    for (i = 0; i < cfg->nports; i++) {
        /* a redirect of the transparent port to itself would hand airlock its own listener */
        if (cfg->ports[i] == cfg->transparent_port) {
            snprintf(err, errlen, "ports include the transparent port %u",
                     (unsigned)cfg->transparent_port);
            return -1;
        }
    }
    if ((cfg->exclude == RULES_BY_UID && (cfg->uid == 0 || cfg->uid == UINT32_MAX)) ||
        (cfg->exclude == RULES_BY_MARK && cfg->mark == 0)) {
        snprintf(err, errlen, "airlock's own sockets need a uid or a mark to be told apart");
        return -1;
    }
    return 0;
}

/* snprintf onto the end of a buffer, counting what would have been written. */
struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->len < o->cap ? o->buf + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0,
                  fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static const char *family_name(enum rules_family f)
{
    return f == RULES_IP ? "ip" : f == RULES_IP6 ? "ip6" : "inet";
}

static void put_ports(struct out *o, const struct rules_config *cfg, const char *sep)
{
    for (size_t i = 0; i < cfg->nports; i++)
        put(o, "%s%u", i ? sep : "", (unsigned)cfg->ports[i]);
}

size_t rules_format(const struct rules_config *cfg, char *buf, size_t cap)
{
    struct out o = {.buf = buf, .cap = cap};
    const char *fam = family_name(cfg->family);
    bool v4 = cfg->family != RULES_IP6, v6 = cfg->family != RULES_IP;

    if (cap > 0)
        buf[0] = '\0';
    put(&o,
        "# airlock transparent mode, written by `airlock rules`: apply it in the agent's\n"
        "# network namespace with `nft -f -`.\n# redirected: outgoing TCP to port%s ",
        cfg->nports > 1 ? "s" : "");
    put_ports(&o, cfg, ", ");
    put(&o, ", to airlock's transparent port %u on loopback\n", (unsigned)cfg->transparent_port);
    if (cfg->exclude == RULES_BY_UID)
        put(&o, "# left alone: airlock's own connections (sockets of uid %u),\n",
            (unsigned)cfg->uid);
    else
        put(&o, "# left alone: airlock's own connections (sockets marked 0x%x),\n",
            (unsigned)cfg->mark);
    put(&o, "#             loopback destinations, and port %u itself\n",
        (unsigned)cfg->transparent_port);
    /* add then delete: the file replaces an earlier copy of the table atomically, and works
     * on a namespace that has none */
    put(&o, "add table %s airlock\ndelete table %s airlock\n\n", fam, fam);
    put(&o, "table %s airlock {\n", fam);
    put(&o, "\tchain output {\n");
    /* dstnat priority (-100) of the output hook: locally made connections, before routing
     * takes the new destination */
    put(&o, "\t\ttype nat hook output priority -100; policy accept;\n");
    if (cfg->exclude == RULES_BY_UID)
        put(&o, "\t\tmeta skuid %u return\n", (unsigned)cfg->uid);
    else
        put(&o, "\t\tmeta mark 0x%x return\n", (unsigned)cfg->mark);
    if (v4)
        put(&o, "\t\tip daddr 127.0.0.0/8 return\n");
    if (v6)
        put(&o, "\t\tip6 daddr ::1 return\n");
    put(&o, "\t\ttcp dport %u return\n", (unsigned)cfg->transparent_port);
    if (cfg->nports == 1) {
        put(&o, "\t\ttcp dport %u redirect to :%u\n", (unsigned)cfg->ports[0],
            (unsigned)cfg->transparent_port);
    } else {
        put(&o, "\t\ttcp dport { ");
        put_ports(&o, cfg, ", ");
        put(&o, " } redirect to :%u\n", (unsigned)cfg->transparent_port);
    }
    put(&o, "\t}\n}\n");
    return o.len;
}
