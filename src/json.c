/* SPDX-License-Identifier: MIT */
/* json: escapes text into JSON strings, one character at a time, for every writer of JSON in
 * airlock. Owns nothing. Invariant: the output is valid UTF-8 and holds no raw control
 * character, whatever the input bytes. */
#include "airlock/json.h"

#include <string.h>

static const char hex[] = "0123456789abcdef";

static size_t u_escape(char *rep, unsigned cp)
{
    rep[0] = '\\';
    rep[1] = 'u';
    rep[2] = hex[(cp >> 12) & 0xf];
    rep[3] = hex[(cp >> 8) & 0xf];
    rep[4] = hex[(cp >> 4) & 0xf];
    rep[5] = hex[cp & 0xf];
    return 6;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629 §4: no overlong forms, no surrogates,
 * nothing above U+10FFFF) within len bytes, or 0. */
static size_t utf8_len(const unsigned char *p, size_t len)
{
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        if (p[0] == 0xe0)
            lo = 0xa0;
        if (p[0] == 0xed)
            hi = 0x9f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        if (p[0] == 0xf0)
            lo = 0x90;
        if (p[0] == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n > len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

size_t json_escape_char(const char *s, size_t len, char *rep, size_t *adv)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char c = p[0];
    size_t n;

    *adv = 1;
    if (c >= 0x20 && c < 0x7f) {
        if (c == '"' || c == '\\') {
            rep[0] = '\\';
            rep[1] = (char)c;
            return 2;
        }
        rep[0] = (char)c;
        return 1;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
        rep[0] = '\\';
        rep[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        return 2;
    }
    if (c < 0x80)
        return u_escape(rep, c); /* the other C0 controls and DEL */
    n = utf8_len(p, len);
    if (n == 0)
        return u_escape(rep, 0xfffd); /* a JSON string must be valid UTF-8 (RFC 8259 §8.1) */
    *adv = n;
    /* Valid, but C1 controls are terminal escapes and U+2028/2029 end a line in JavaScript. */
    if (n == 2 && c == 0xc2 && p[1] < 0xa0)
        return u_escape(rep, p[1]);
    if (n == 3 && c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
        return u_escape(rep, 0x2000u | (p[2] & 0x3f)); /* U+2028 is e2 80 a8 */
    memcpy(rep, p, n);
    return n;
}

void json_escape_append(struct http_buf *b, const char *s, size_t len)
{
    char rep[JSON_CHAR_MAX];
    size_t adv;

    while (len > 0) {
        http_buf_append(b, rep, json_escape_char(s, len, rep, &adv));
        s += adv;
        len -= adv;
    }
}

void json_string_append(struct http_buf *b, const char *s)
{
    http_buf_append(b, "\"", 1);
    json_escape_append(b, s, strlen(s));
    http_buf_append(b, "\"", 1);
}

bool json_escape_buf(char *out, size_t cap, size_t *w, const char *s, size_t len)
{
    char rep[JSON_CHAR_MAX];
    size_t n, adv;

    while (len > 0) {
        n = json_escape_char(s, len, rep, &adv);
        if (*w + n >= cap)
            return false;
        memcpy(out + *w, rep, n);
        *w += n;
        out[*w] = '\0';
        s += adv;
        len -= adv;
    }
    return true;
}
