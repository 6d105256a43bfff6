/* SPDX-License-Identifier: MIT */
/* sniff_http: the first request head of a plain connection, read just far enough to name its
 * host: the request line (RFC 9112 §3) and the field lines (RFC 9112 §5), strictly. Until a
 * request line has reached "HTTP/" the bytes may be another protocol (an SSH banner is a token,
 * a space and more), so a break there is SNIFF_OTHER; after it, a break is SNIFF_INVALID with
 * the status the client should get. The relay parses the head again with llhttp: this reader
 * only has to agree with it on which host the request names, and refuse where unsure. */
#include <string.h>
#include <strings.h>

#include "airlock/http.h"
#include "sniff_internal.h"

#define METHOD_MAX 32 /* longer than any registered method ("BASELINE-CONTROL", 16) */

/* A request line's parts, pointing into the input. */
struct request_line {
    const uint8_t *method, *target;
    size_t method_len, target_len;
    int minor;  /* HTTP/1.minor */
    size_t end; /* offset just past its CRLF */
};

static bool is_vchar(uint8_t c)
{
    return c > 0x20 && c < 0x7f;
}

/* RFC 9110 §5.5: field-value characters are VCHAR, obs-text, SP and HTAB. */
static bool is_field_char(uint8_t c)
{
    return is_vchar(c) || c >= 0x80 || c == ' ' || c == '\t';
}

static enum sniff_kind too_long(size_t len, struct sniff_result *out)
{
    if (len >= SNIFF_HTTP_MAX)
        return sniff_verdict(out, SNIFF_INVALID, "request head is larger than the bound", 431);
    return sniff_verdict(out, SNIFF_NEED_MORE, "", 0);
}

/* RFC 9112 §3: request-line = method SP request-target SP HTTP-version CRLF. */
static enum sniff_kind parse_request_line(const uint8_t *p, size_t len, struct request_line *rl,
                                          struct sniff_result *out)
{
    size_t i = 0;

    while (i < len && sniff_is_tchar(p[i]) && i <= METHOD_MAX)
        i++;
    if (i == len)
        return too_long(len, out);
    if (p[i] != ' ' || i > METHOD_MAX)
        return sniff_verdict(out, SNIFF_OTHER, "no HTTP method", 0);
    rl->method = p;
    rl->method_len = i++;
    rl->target = p + i;
    while (i < len && is_vchar(p[i]) && (size_t)(p + i - rl->target) <= HTTP_TARGET_MAX)
        i++;
    if (i == len)
        return too_long(len, out);
    rl->target_len = (size_t)(p + i - rl->target);
    if (p[i] != ' ' || rl->target_len == 0 || rl->target_len > HTTP_TARGET_MAX)
        return sniff_verdict(out, SNIFF_OTHER, "no HTTP request target", 0);
    i++;
    static const char proto[] = "HTTP/";
    for (size_t k = 0; k < sizeof(proto) - 1; k++, i++) {
        if (i == len)
            return too_long(len, out);
        if (p[i] != (uint8_t)proto[k])
            return sniff_verdict(out, SNIFF_OTHER, "no HTTP version", 0);
    }
    /* From here on it is HTTP: HTTP-version = "HTTP/" DIGIT "." DIGIT, then CRLF (RFC 9112
     * §2.2: a bare LF or CR is not accepted here, as llhttp's strict mode does not). */
    if (len - i < 5)
        return too_long(len, out);
    if (p[i] < '0' || p[i] > '9' || p[i + 1] != '.' || p[i + 2] < '0' || p[i + 2] > '9')
        return sniff_verdict(out, SNIFF_INVALID, "malformed HTTP version", 400);
    if (p[i + 3] != '\r' || p[i + 4] != '\n')
        return sniff_verdict(out, SNIFF_INVALID, "request line does not end in CRLF", 400);
    /* HTTP/2's preface ("PRI * HTTP/2.0") and anything else but 1.0 and 1.1 */
    if (p[i] != '1' || (p[i + 2] != '0' && p[i + 2] != '1'))
        return sniff_verdict(out, SNIFF_INVALID, "HTTP version not supported", 505);
    rl->minor = p[i + 2] - '0';
    rl->end = i + 5;
    return SNIFF_HTTP;
}

/* Walk the field lines from p[at] to the empty line; sets *host (and *host_len) to the one Host
 * field's value, OWS trimmed. SNIFF_HTTP at the end of the head. */
static enum sniff_kind parse_fields(const uint8_t *p, size_t len, size_t at, const uint8_t **host,
                                    size_t *host_len, struct sniff_result *out)
{
    size_t i = at, name_end, v, e, eol;

    for (;;) {
        if (i == len)
            return too_long(len, out);
        if (p[i] == '\r') {
            if (len - i < 2)
                return too_long(len, out);
            if (p[i + 1] == '\n')
                return SNIFF_HTTP;
            return sniff_verdict(out, SNIFF_INVALID, "bare CR in the head", 400);
        }
        /* RFC 9112 §5.2 obs-fold, and §2.2 whitespace before the first field: 400 */
        if (p[i] == ' ' || p[i] == '\t')
            return sniff_verdict(out, SNIFF_INVALID, "field line starts with whitespace", 400);
        for (name_end = i; name_end < len && sniff_is_tchar(p[name_end]); name_end++)
            ;
        if (name_end == len)
            return too_long(len, out);
        /* RFC 9112 §5.1: no whitespace between the name and the colon */
        if (p[name_end] != ':' || name_end == i)
            return sniff_verdict(out, SNIFF_INVALID, "malformed field name", 400);
        for (e = name_end + 1; e < len && is_field_char(p[e]); e++)
            ;
        if (e < len && p[e] != '\r')
            return sniff_verdict(out, SNIFF_INVALID, "control character in a field line", 400);
        if (len - e < 2)
            return too_long(len, out);
        if (p[e + 1] != '\n')
            return sniff_verdict(out, SNIFF_INVALID, "bare CR in a field line", 400);
        eol = e + 2;
        if (name_end - i == 4 && strncasecmp((const char *)p + i, "host", 4) == 0) {
            /* RFC 9110 §7.2, RFC 9112 §3.2: more than one Host is a 400 */
            if (*host)
                return sniff_verdict(out, SNIFF_INVALID, "two Host fields", 400);
            for (v = name_end + 1; v < e && (p[v] == ' ' || p[v] == '\t'); v++)
                ;
            while (e > v && (p[e - 1] == ' ' || p[e - 1] == '\t'))
                e--;
            *host = p + v;
            *host_len = e - v;
        }
        i = eol;
    }
}

/* The authority the request names: the absolute form's, which must agree with Host when both
 * are sent (RFC 9112 §3.2.2 has the target win; a proxy that judges one and forwards the other
 * is how requests are smuggled, so disagreement is refused); else Host's. */
static enum sniff_kind name_host(const struct request_line *rl, const uint8_t *host,
                                 size_t host_len, struct sniff_result *out)
{
    struct authority *a = &out->authority, from_host;
    const char *path;
    size_t path_len;

    /* RFC 9112 §3.2: "A server MUST respond with a 400 ... to any HTTP/1.1 request message
     * that lacks a Host header field", whatever the target's form */
    if (!host && rl->minor == 1)
        return sniff_verdict(out, SNIFF_INVALID, "HTTP/1.1 request without Host", 400);
    if (rl->target[0] != '/' && !(rl->target_len == 1 && rl->target[0] == '*')) {
        if (target_parse_absolute((const char *)rl->target, rl->target_len, NULL, a, &path,
                                  &path_len) < 0)
            return sniff_verdict(out, SNIFF_INVALID, "request target is not http:// absolute form",
                                 400);
        if (host &&
            (target_parse_authority((const char *)host, host_len, false, 80, &from_host) < 0 ||
             from_host.kind != a->kind || strcmp(from_host.host, a->host) != 0 ||
             from_host.port != a->port))
            return sniff_verdict(out, SNIFF_INVALID, "Host differs from the absolute target", 400);
    } else if (host) {
        if (target_parse_authority((const char *)host, host_len, false, 0, a) < 0)
            return sniff_verdict(out, SNIFF_INVALID, "Host is not a valid authority", 400);
    }
    if (!a->port_present)
        a->port = 0; /* the original destination's port applies */
    return sniff_verdict(out, SNIFF_HTTP, "", 0);
}

enum sniff_kind sniff_http(const uint8_t *p, size_t len, struct sniff_result *out)
{
    struct request_line rl = {0};
    const uint8_t *host = NULL;
    size_t host_len = 0;

    if (len > SNIFF_HTTP_MAX)
        len = SNIFF_HTTP_MAX;
    if (parse_request_line(p, len, &rl, out) != SNIFF_HTTP)
        return out->kind;
    /* the asterisk form is OPTIONS's alone (RFC 9112 §3.2.4); CONNECT's authority form asks
     * for a tunnel, which a connection to an origin never does */
    if (rl.method_len == 7 && memcmp(rl.method, "CONNECT", 7) == 0)
        return sniff_verdict(out, SNIFF_INVALID, "CONNECT on a redirected connection", 400);
    if (rl.target_len == 1 && rl.target[0] == '*' &&
        !(rl.method_len == 7 && memcmp(rl.method, "OPTIONS", 7) == 0))
        return sniff_verdict(out, SNIFF_INVALID, "asterisk form without OPTIONS", 400);
    if (parse_fields(p, len, rl.end, &host, &host_len, out) != SNIFF_HTTP)
        return out->kind;
    return name_host(&rl, host, host_len, out);
}
