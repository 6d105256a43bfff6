/* SPDX-License-Identifier: MIT */
/* sniff: the entry point of transparent mode's first look at a connection. It only dispatches
 * on the first byte (0x16 is a TLS handshake record, a token character may begin an HTTP
 * method) and owns the result's shape; the grammars live in sniff_tls.c and sniff_http.c.
 * Invariant: every path leaves *out fully set, and a name only with SNIFF_TLS or SNIFF_HTTP. */
#include "airlock/sniff.h"

#include <string.h>

#include "airlock/http.h"
#include "sniff_internal.h"

/* a head that fits through the proxy port fits here too, and no more */
_Static_assert(SNIFF_HTTP_MAX == HTTP_HEAD_MAX, "sniff bound differs from the head limit");
_Static_assert(SNIFF_MAX >= SNIFF_TLS_MAX, "SNIFF_MAX must cover both bounds");

const char *sniff_kind_name(enum sniff_kind k)
{
    switch (k) {
    case SNIFF_NEED_MORE:
        return "need_more";
    case SNIFF_TLS:
        return "tls";
    case SNIFF_HTTP:
        return "http";
    case SNIFF_OTHER:
        return "other";
    case SNIFF_INVALID:
        return "invalid";
    }
    return "unknown";
}

enum sniff_kind sniff_verdict(struct sniff_result *out, enum sniff_kind kind, const char *reason,
                              int http_status)
{
    out->kind = kind;
    out->reason = reason;
    out->http_status = http_status;
    if (kind != SNIFF_TLS && kind != SNIFF_HTTP) {
        /* a half-parsed name must not leak out of a refusal */
        memset(&out->authority, 0, sizeof(out->authority));
        memset(&out->alpn, 0, sizeof(out->alpn));
    }
    return kind;
}

enum sniff_kind sniff_classify(const uint8_t *p, size_t len, struct sniff_result *out)
{
    memset(out, 0, sizeof(*out));
    out->reason = "";
    if (len == 0)
        return sniff_verdict(out, SNIFF_NEED_MORE, "", 0);
    /* RFC 8446 §5.1: ContentType handshake(22) opens every ClientHello */
    if (p[0] == 0x16)
        return sniff_tls(p, len, out);
    /* RFC 9112 §3: a request line opens with a method, which is a token */
    if (sniff_is_tchar(p[0]))
        return sniff_http(p, len, out);
    return sniff_verdict(out, SNIFF_OTHER, "first byte opens neither a TLS record nor a method", 0);
}
