/* SPDX-License-Identifier: MIT */
/* target: request-target forms of RFC 9112 §3.2 that a proxy receives first: the authority form
 * of CONNECT (host:port) and the absolute form of a forward-proxy request
 * (http[s]://host[:port]/p), and the Host field inside a tunnel. Hosts come out normalised: DNS
 * names lower-cased with no trailing dot, IPv4 as inet_pton accepts a dotted quad (no 127.1,
 * 0x7f.1, 0177.0.0.1, or 2130706433), IPv6 without brackets in inet_ntop's canonical text. Pure. */
#ifndef AIRLOCK_TARGET_H
#define AIRLOCK_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TARGET_HOST_MAX 253

enum target_host_kind { TARGET_DNS, TARGET_IPV4, TARGET_IPV6 };

struct authority {
    char host[TARGET_HOST_MAX + 1]; /* normalised, NUL-terminated */
    enum target_host_kind kind;
    uint16_t port;     /* 0 when absent and no default applied */
    bool port_present; /* the text carried an explicit port */
};

/* The one host normaliser (policy, providers and the CA use it too, so that a host from a file
 * is spelled as a request's): a DNS name by the rules of target_parse_authority, a dotted quad,
 * or IPv6 text, which comes out as inet_ntop prints it. brackets: an IPv6 address may also stand
 * in brackets ("[::1]"), as a policy or providers file may write it. Writes the host,
 * NUL-terminated, to out (TARGET_HOST_MAX + 1 bytes) and its kind to *kind; -1 for anything
 * else. */
int target_normalise_host(const char *p, size_t len, bool brackets, char *out,
                          enum target_host_kind *kind);

/* Parse host[:port] ("[v6]:port" for IPv6). DNS names: LDH labels of 1..63 octets (underscore
 * allowed, as real services use it), 253 octets at most, not all-numeric in the last label.
 * port_required: CONNECT's form; else default_port fills an absent port. A port of 0 or above
 * 65535, an empty host, userinfo, or anything else: -1. */
int target_parse_authority(const char *p, size_t len, bool port_required, uint16_t default_port,
                           struct authority *out);

/* Parse an absolute-form target: "http://" (default port 80) or, when https is not NULL,
 * "https://" (default port 443); the scheme is case-insensitive, and *https says which it was.
 * path and path_len point into p at the path and query ("/" when the URI has none: *path is
 * then a static "/"). -1 for anything else (another scheme, https:// when https is NULL,
 * userinfo, fragments, a bad authority). */
int target_parse_absolute(const char *p, size_t len, bool *https, struct authority *out,
                          const char **path, size_t *path_len);

/* true when the request's authority (from Host or the absolute form) names the tunnel's:
 * same host, and the same port when one is present (RFC 9110 §7.2; real clients such as
 * cargo's git transport omit the default port). */
bool target_authority_matches(const struct authority *tunnel, const struct authority *request);

/* Format "host:port", with brackets for IPv6, into buf (always NUL-terminated). */
void target_format(const struct authority *a, char *buf, size_t cap);

#endif
