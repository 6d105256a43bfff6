/* SPDX-License-Identifier: MIT */
/* target: turns the authority a client names (CONNECT's authority form, the absolute form, a
 * Host field) into one normalised struct authority, and compares two of them. It neither
 * resolves names nor judges addresses (netguard does). Invariant: an accepted host has exactly
 * one spelling, so that a byte compare downstream is a real compare. */
#include "airlock/target.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 §3.2.3 allows any run of digits; we take only the canonical decimal 1..65535, so
 * that "0443" or "+443" cannot dress up as 443 for one reader and not another. */
static int parse_port(const char *p, size_t len, uint16_t *port)
{
    unsigned long v = 0;
    size_t i;

    if (len == 0 || len > 5 || p[0] == '0')
        return -1;
    for (i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return -1;
        v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* A dotted quad of four decimal octets without leading zeros: the only IPv4 text accepted.
 * inet_aton (and so getaddrinfo) would also read 127.1, 0x7f.1, 0177.0.0.1 and 2130706433 as
 * 127.0.0.1; a proxy that lets those through as "names" has an SSRF hole. */
static int parse_ipv4(const char *p, size_t len, char *out, enum target_host_kind *kind)
{
    struct in_addr addr;
    size_t i = 0, digits;
    unsigned octet;
    int parts;

    for (parts = 0; parts < 4; parts++) {
        if (parts > 0) {
            if (i >= len || p[i] != '.')
                return -1;
            i++;
        }
        octet = 0;
        digits = 0;
        while (i < len && is_digit(p[i]) && digits < 4) {
            octet = octet * 10 + (unsigned)(p[i] - '0');
            digits++;
            i++;
        }
        if (digits == 0 || digits > 3 || octet > 255 || (digits > 1 && p[i - digits] == '0'))
            return -1;
    }
    if (i != len || len > TARGET_HOST_MAX)
        return -1;
    memcpy(out, p, len);
    out[len] = '\0';
    if (inet_pton(AF_INET, out, &addr) != 1)
        return -1;
    *kind = TARGET_IPV4;
    return 0;
}

/* The text between brackets (RFC 3986 §3.2.2 IP-literal). IPvFuture and RFC 6874 zone ids
 * ("%25eth0") are refused: a zone names an interface of this host, never an upstream. */
static int parse_ipv6(const char *p, size_t len, char *out, enum target_host_kind *kind)
{
    char text[INET6_ADDRSTRLEN];
    struct in6_addr addr;
    size_t i;

    if (len == 0 || len >= sizeof(text))
        return -1;
    for (i = 0; i < len; i++) {
        if (!is_hex(p[i]) && p[i] != ':' && p[i] != '.')
            return -1;
    }
    memcpy(text, p, len);
    text[len] = '\0';
    if (inet_pton(AF_INET6, text, &addr) != 1)
        return -1;
    if (!inet_ntop(AF_INET6, &addr, out, TARGET_HOST_MAX + 1))
        return -1;
    *kind = TARGET_IPV6;
    return 0;
}

/* WHATWG URL "ends in a number": decimal digits, or 0x followed by hex digits. A name like this
 * is an IPv4 address to browsers and to inet_aton, so it is never a DNS name here. */
static bool label_is_numeric(const char *p, size_t len)
{
    size_t i = 0;

    if (len >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        for (i = 2; i < len; i++) {
            if (!is_hex(p[i]))
                return false;
        }
        return true;
    }
    for (i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return false;
    }
    return len > 0;
}

/* RFC 1035 §2.3.1 preferred name syntax (letters, digits, hyphens; no hyphen at either end of
 * a label), plus '_' that real service names carry; lower-cased (RFC 4343). */
static int parse_name(const char *p, size_t len, char *out, enum target_host_kind *kind)
{
    struct in_addr addr;
    size_t i, label = 0, last_start = 0;
    char c;

    /* one trailing dot makes the name absolute (RFC 1034 §3.1); it names the same host */
    if (len > 0 && p[len - 1] == '.')
        len--;
    if (len == 0 || len > TARGET_HOST_MAX)
        return -1;
    for (i = 0; i <= len; i++) {
        c = i < len ? p[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || p[i - 1] == '-' || p[i - label] == '-')
                return -1;
            if (i < len) {
                out[i] = '.';
                last_start = i + 1;
            }
            label = 0;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_'))
            return -1;
        out[i] = c;
        label++;
    }
    out[len] = '\0';
    if (label_is_numeric(p + last_start, len - last_start))
        return parse_ipv4(p, len, out, kind);
    /* belt and braces: nothing inet_aton accepts may leave here as a name */
    if (inet_aton(out, &addr))
        return -1;
    *kind = TARGET_DNS;
    return 0;
}

int target_normalise_host(const char *p, size_t len, bool brackets, char *out,
                          enum target_host_kind *kind)
{
    if (brackets && len >= 2 && p[0] == '[' && p[len - 1] == ']')
        return parse_ipv6(p + 1, len - 2, out, kind);
    /* a name or dotted quad never holds a colon, so this is the only IPv6 reading */
    if (memchr(p, ':', len))
        return parse_ipv6(p, len, out, kind);
    return parse_name(p, len, out, kind);
}

int target_parse_authority(const char *p, size_t len, bool port_required, uint16_t default_port,
                           struct authority *out)
{
    const char *host = p, *colon = NULL, *close;
    size_t host_len;
    int rc;

    memset(out, 0, sizeof(*out));
    if (len == 0)
        return -1;
    if (p[0] == '[') {
        close = memchr(p, ']', len);
        if (!close)
            return -1;
        host = p + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < p + len) {
            if (close[1] != ':')
                return -1;
            colon = close + 1;
        }
        rc = parse_ipv6(host, host_len, out->host, &out->kind);
    } else {
        /* an IPv6 address outside brackets is ambiguous with a port: refused by parse_port */
        colon = memchr(p, ':', len);
        host_len = colon ? (size_t)(colon - p) : len;
        rc = parse_name(host, host_len, out->host, &out->kind);
    }
    if (rc < 0)
        return -1;
    if (colon) {
        if (parse_port(colon + 1, (size_t)(p + len - colon - 1), &out->port) < 0)
            return -1;
        out->port_present = true;
    } else if (port_required) {
        /* RFC 9110 §9.3.6: CONNECT has no default port */
        return -1;
    } else {
        out->port = default_port;
    }
    return 0;
}

/* The scheme of an absolute-form target, case-insensitive (RFC 3986 §3.1): its length with
 * "://", and whether it is https; 0 for any other. */
static size_t absolute_scheme(const char *p, size_t len, bool *https)
{
    static const char http[] = "http://", tls[] = "https://";

    if (len > sizeof(tls) - 1 && strncasecmp(p, tls, sizeof(tls) - 1) == 0) {
        *https = true;
        return sizeof(tls) - 1;
    }
    if (len > sizeof(http) - 1 && strncasecmp(p, http, sizeof(http) - 1) == 0) {
        *https = false;
        return sizeof(http) - 1;
    }
    return 0;
}

int target_parse_absolute(const char *p, size_t len, bool *https, struct authority *out,
                          const char **path, size_t *path_len)
{
    size_t n, i, auth_end;
    bool tls = false;

    memset(out, 0, sizeof(*out));
    /* RFC 9112 §3.2.2: absolute form goes to a proxy. https:// too when the caller can
     * originate TLS for it (a client such as axios sends it in clear text to its proxy). */
    n = absolute_scheme(p, len, &tls);
    if (n == 0 || (tls && !https))
        return -1;
    for (i = n; i < len; i++) {
        unsigned char c = (unsigned char)p[i];

        /* no fragment in a request-target (RFC 9112 §3.2), no whitespace or controls */
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return -1;
    }
    for (auth_end = n; auth_end < len; auth_end++) {
        if (p[auth_end] == '/' || p[auth_end] == '?')
            break;
    }
    /* userinfo ('@') is refused by the authority parser; RFC 9110 §4.2.4 deprecates it */
    if (target_parse_authority(p + n, auth_end - n, false, tls ? 443 : 80, out) < 0)
        return -1;
    if (https)
        *https = tls;
    if (auth_end == len) {
        /* RFC 9112 §3.2.1: an empty path is sent as "/" */
        *path = "/";
        *path_len = 1;
        return 0;
    }
    if (p[auth_end] != '/')
        return -1; /* "http://h?q": an empty path with a query, which clients do not send */
    *path = p + auth_end;
    *path_len = len - auth_end;
    return 0;
}

bool target_authority_matches(const struct authority *tunnel, const struct authority *request)
{
    /* both sides are normalised, so the compare is exact; the case-insensitive compare only
     * guards a caller that filled a struct by hand */
    if (tunnel->kind != request->kind || strcasecmp(tunnel->host, request->host) != 0)
        return false;
    /* RFC 9110 §7.2: Host carries the port only when it is not the scheme's default; clients
     * differ in whether they send it inside a tunnel, so an absent port matches. */
    return !request->port_present || request->port == tunnel->port;
}

void target_format(const struct authority *a, char *buf, size_t cap)
{
    if (cap == 0)
        return;
    if (a->port == 0)
        snprintf(buf, cap, a->kind == TARGET_IPV6 ? "[%s]" : "%s", a->host);
    else
        snprintf(buf, cap, a->kind == TARGET_IPV6 ? "[%s]:%u" : "%s:%u", a->host,
                 (unsigned)a->port);
}
