/* SPDX-License-Identifier: MIT */
/* addr: classification of IP addresses for the SSRF guard, CIDR sets (allowed_ips), and the
 * text of a socket address for logs and messages.
 * IPv4-mapped (::ffff:0:0/96), IPv4-compatible (::/96), NAT64 (64:ff9b::/96), 6to4 (2002::/16)
 * and Teredo (2001::/32) forms are unwrapped to the IPv4 address they carry and classified as
 * that. The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) is private, or metadata when a
 * metadata address sits where any RFC 6052 prefix length inside it would put one. Pure. */
#ifndef AIRLOCK_ADDR_H
#define AIRLOCK_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum addr_class {
    ADDR_PUBLIC = 0,
    ADDR_LOOPBACK,      /* 127/8, ::1 */
    ADDR_PRIVATE,       /* RFC 1918, ULA fc00::/7 */
    ADDR_CGNAT,         /* 100.64/10 */
    ADDR_LINK_LOCAL,    /* 169.254/16, fe80::/10 */
    ADDR_UNSPECIFIED,   /* 0.0.0.0/8, :: */
    ADDR_MULTICAST,     /* 224/4, ff00::/8 */
    ADDR_BROADCAST,     /* 255.255.255.255, and 240/4 reserved */
    ADDR_BENCHMARK,     /* 198.18/15, 2001:2::/48 */
    ADDR_DOCUMENTATION, /* 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 192.0.0/24 */
    ADDR_METADATA,      /* 169.254.169.254, 100.100.100.200, 168.63.129.16, fd00:ec2::254,
                         * fd20:ce::254: refused always */
};

const char *addr_class_name(enum addr_class c);

/* Classify an AF_INET or AF_INET6 sockaddr (anything else is ADDR_UNSPECIFIED). */
enum addr_class addr_classify(const struct sockaddr *sa);

/* true for names that are cloud metadata services (metadata.google.internal, metadata,
 * metadata.goog, instance-data.ec2.internal ...), compared case-insensitively, trailing dot
 * ignored: refused always. */
bool addr_is_metadata_name(const char *host);

/* true for "localhost" and any "*.localhost" name (RFC 6761): loopback without a lookup. */
bool addr_is_localhost_name(const char *host);

/* A CIDR block: family AF_INET or AF_INET6, address bytes in network order, prefix length. */
struct addr_cidr {
    int family;
    uint8_t bytes[16];
    uint8_t prefix;
};

/* Parse "10.0.0.0/8", "::1/128", or a bare address (full-length prefix). 0 or -1. Host bits
 * set below the prefix are an error (-1), as in "10.0.0.1/8". */
int addr_cidr_parse(const char *s, struct addr_cidr *out);

/* true when sa (IPv4-mapped forms unwrapped) lies inside the block. */
bool addr_cidr_contains(const struct addr_cidr *c, const struct sockaddr *sa);

/* true when every address of the block is a cloud metadata address (ADDR_METADATA): an
 * allowed_ips entry that can never open anything. */
bool addr_cidr_is_metadata(const struct addr_cidr *c);

/* The one sockaddr formatter. Text form of sa's address (no port) into buf, as inet_ntop
 * prints it; "" for another family. */
void addr_format(const struct sockaddr *sa, char *buf, size_t cap);
/* sa's port in host order; 0 for another family. */
uint16_t addr_port(const struct sockaddr *sa);
/* The one HOST:PORT parser for airlock's own sockets (--listen, --admin, --health, `admin
 * get`): "IP:PORT", "[IPv6]:PORT" or "localhost:PORT" (127.0.0.1), the host and port as
 * target_parse_authority reads a CONNECT's, except that port 0 (any free port) is allowed.
 * Fills ss (port included); 0 or -1. */
int addr_parse_hostport(const char *text, struct sockaddr_storage *ss);

/* "IP:PORT", "[IPv6]:PORT" into buf (cut to cap, always a string); "" for another family. */
void addr_format_endpoint(const struct sockaddr *sa, char *buf, size_t cap);

#endif
