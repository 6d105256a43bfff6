/* SPDX-License-Identifier: MIT */
/* sniff_internal: what the three files of the sniff module share, and nobody else. sniff.c
 * dispatches on the first byte; sniff_tls.c reassembles and parses a ClientHello; sniff_http.c
 * parses a request head. Not a module header: only src/sniff*.c include it. */
#ifndef AIRLOCK_SNIFF_INTERNAL_H
#define AIRLOCK_SNIFF_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "airlock/sniff.h"

/* Set out's kind, reason and HTTP status, and return the kind. */
enum sniff_kind sniff_verdict(struct sniff_result *out, enum sniff_kind kind, const char *reason,
                              int http_status);

/* p[0] is 0x16 (a TLS handshake record). */
enum sniff_kind sniff_tls(const uint8_t *p, size_t len, struct sniff_result *out);

/* p[0] is a token character (the first of an HTTP method). */
enum sniff_kind sniff_http(const uint8_t *p, size_t len, struct sniff_result *out);

/* RFC 9110 §5.6.2 tchar. */
static inline bool sniff_is_tchar(uint8_t c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

#endif
