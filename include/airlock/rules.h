/* SPDX-License-Identifier: MIT */
/* rules: the nftables ruleset that turns an agent's network namespace towards airlock's
 * transparent listener (`airlock rules`, applied with `nft -f -` inside that namespace). It
 * redirects outgoing TCP to a few ports (80 and 443 unless told) to the transparent port on
 * loopback, and leaves alone airlock's own upstream connections (by socket owner uid or by
 * socket mark), loopback destinations and the transparent port itself, so that nothing airlock
 * sends comes back to it. Pure: parsers for the command line's values and a formatter. */
#ifndef AIRLOCK_RULES_H
#define AIRLOCK_RULES_H

#include <stddef.h>
#include <stdint.h>

#define RULES_PORTS_MAX 32

/* How airlock's own upstream sockets are told from the agent's. */
enum rules_exclude {
    RULES_BY_UID,  /* meta skuid: airlock runs as a uid of its own */
    RULES_BY_MARK, /* meta mark: airlock sets SO_MARK on its upstream sockets */
};

/* nftables family of the table: both IP versions, or one of them. */
enum rules_family { RULES_INET, RULES_IP, RULES_IP6 };

struct rules_config {
    uint16_t transparent_port;
    enum rules_exclude exclude;
    uint32_t uid;  /* RULES_BY_UID: 1 .. 4294967294 */
    uint32_t mark; /* RULES_BY_MARK: not 0 */
    uint16_t ports[RULES_PORTS_MAX];
    size_t nports;
    enum rules_family family;
};

/* Parsers for the command line. Each returns 0, or -1 with a message (that names no more of
 * the input than the value itself) in err. */

/* A TCP port: canonical decimal 1..65535 (no sign, no leading zero). */
int rules_parse_port(const char *s, uint16_t *out, char *err, size_t errlen);
/* A comma-separated list of distinct ports ("80,443"), at most RULES_PORTS_MAX. */
int rules_parse_ports(const char *s, uint16_t *ports, size_t *nports, char *err, size_t errlen);
/* A numeric uid, not 0 (every root process would then bypass the redirect) nor (uid_t)-1. */
int rules_parse_uid(const char *s, uint32_t *out, char *err, size_t errlen);
/* A socket mark: decimal or 0x-prefixed hex, 1..0xffffffff (0 is every unmarked socket's). */
int rules_parse_mark(const char *s, uint32_t *out, char *err, size_t errlen);
/* "inet", "ip" or "ip6". */
int rules_parse_family(const char *s, enum rules_family *out, char *err, size_t errlen);

/* Checks across values: a port list without the transparent port. 0 or -1 with err. */
int rules_check(const struct rules_config *cfg, char *err, size_t errlen);

/* Write the ruleset for cfg (which rules_check accepted) to buf, NUL-terminated, as snprintf
 * does: returns the length of the whole text, so a result >= cap means it was cut. */
size_t rules_format(const struct rules_config *cfg, char *buf, size_t cap);

#endif
