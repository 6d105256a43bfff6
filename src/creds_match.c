/* SPDX-License-Identifier: MIT */
/* creds_match: the part of creds that reads bytes a client controls. Finds a provider's
 * placeholder in request text (raw, percent-encoded, or inside a Basic credential), rewrites
 * it with the secret or "[CREDENTIAL]", checks where it stands against substitute_in, and hands
 * the used secrets to redact.c for the responses. Owns nothing; every scratch buffer that held
 * secret bytes is wiped before it is freed. Invariant: one pass over the input per search, and
 * nothing the client sends can make it read outside its spans. */
#include "creds_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "airlock/path.h"
#include "airlock/redact.h"

#define NO_MATCH SIZE_MAX

/* ---- buffers that hold secret bytes ---- */

/* Wipe and free a scratch block that may have held secret bytes. */
static void scratch_free(void *p, size_t len)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

/* Append to a buffer that may hold secret bytes: flagged first, so that it grows by copy and
 * wipe and is wiped when freed (http.h). */
static void sappend(struct http_buf *b, const char *p, size_t n)
{
    b->wipe = true;
    http_buf_append(b, p, n);
}

void creds_buf_wipe(struct http_buf *b)
{
    b->wipe = true;
    http_buf_free(b);
}

/* ---- placeholder matching ---- */

/* One token of percent-encoded text (RFC 3986 §2.1): "%XY" (either case) is one byte, anything
 * else is itself. '%' is never a hex digit, so token boundaries do not depend on where a scan
 * starts, as long as it does not start inside an escape. Returns the token's length. */
static size_t next_token(const char *s, size_t len, size_t i, unsigned char *out)
{
    if (s[i] == '%' && len - i >= 3) {
        int hi = path_hex_value((unsigned char)s[i + 1]);
        int lo = path_hex_value((unsigned char)s[i + 2]);
        if (hi >= 0 && lo >= 0) {
            *out = (unsigned char)(hi << 4 | lo);
            return 3;
        }
    }
    *out = (unsigned char)s[i];
    return 1;
}

struct match {
    size_t start, end; /* byte offsets, end exclusive; start NO_MATCH when there is none */
};

/* The first occurrence at or after from of the placeholder in the decoded token stream (raw
 * bytes, escapes, or any mix). KMP over tokens, with a ring of the last n token offsets to find
 * where the match began: one pass, O(len). */
static void find_decoded(const struct creds_provider *p, const char *s, size_t len, size_t from,
                         struct match *m)
{
    size_t ring[PLACEHOLDER_MAX];
    size_t n = p->placeholder_len, q = 0, r = 0;
    const unsigned char *ph = (const unsigned char *)p->placeholder;

    for (size_t i = from; i < len;) {
        unsigned char ch;
        ring[r] = i;
        r = r + 1 == n ? 0 : r + 1;
        i += next_token(s, len, i, &ch);
        while (q > 0 && ph[q] != ch)
            q = p->kmp[q - 1];
        if (ph[q] == ch)
            q++;
        if (q == n) {
            /* The ring is full and r is its oldest slot: the match's first token. */
            m->start = ring[r];
            m->end = i;
            return;
        }
    }
    m->start = m->end = NO_MATCH;
}

static void find_raw(const char *s, size_t len, size_t from, const char *needle, size_t n,
                     struct match *m)
{
    const char *hit = len > from ? memmem(s + from, len - from, needle, n) : NULL;
    if (hit) {
        m->start = (size_t)(hit - s);
        m->end = m->start + n;
    } else {
        m->start = m->end = NO_MATCH;
    }
}

/* Walks the occurrences of a placeholder: raw ones (memmem, which also finds one that begins
 * inside an escape such as "%4AIRLOCK...": a header value is never percent-decoded) and
 * decoded ones. Each search's next hit is kept while it still lies ahead, so a text is scanned
 * about once by each search however many occurrences it holds. */
struct scan {
    const struct creds_provider *p;
    const char *s;
    size_t len;
    struct match raw, dec;
    bool raw_known, dec_known;
};

static bool scan_next(struct scan *sc, size_t pos, struct match *m)
{
    if (!sc->raw_known || (sc->raw.start != NO_MATCH && sc->raw.start < pos)) {
        find_raw(sc->s, sc->len, pos, sc->p->placeholder, sc->p->placeholder_len, &sc->raw);
        sc->raw_known = true;
    }
    if (!sc->dec_known || (sc->dec.start != NO_MATCH && sc->dec.start < pos)) {
        find_decoded(sc->p, sc->s, sc->len, pos, &sc->dec);
        sc->dec_known = true;
    }
    /* At an equal start both are the same bytes: a raw occurrence has no '%' to decode. */
    *m = sc->raw.start <= sc->dec.start ? sc->raw : sc->dec;
    return m->start != NO_MATCH;
}

/* Standard base64 (RFC 4648 §4) with optional padding, as clients build Basic credentials.
 * Returns a malloc'd, NUL-terminated buffer (wipe it with scratch_free) or NULL. */
static char *b64_decode(const char *in, size_t n, size_t *out_len)
{
    size_t data = n;
    while (data > 0 && in[data - 1] == '=')
        data--;
    for (size_t i = 0; i < data; i++) {
        char ch = in[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return NULL;
    }
    size_t padded = (data + 3) / 4 * 4;
    if (data == 0 || data % 4 == 1 || (n != data && n != padded) || padded > INT_MAX / 2)
        return NULL;
    size_t pad = padded - data;

    /* EVP_DecodeBlock wants whole quads and counts padding as output bytes. */
    char *quads = malloc(padded);
    char *out = malloc(padded / 4 * 3 + 1);
    int got = -1;
    if (quads && out) {
        memcpy(quads, in, data);
        memset(quads + data, '=', pad);
        got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)quads, (int)padded);
    }
    scratch_free(quads, padded);
    if (got < (int)pad) {
        scratch_free(out, padded / 4 * 3 + 1);
        return NULL;
    }
    *out_len = (size_t)got - pad;
    out[*out_len] = '\0';
    return out;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* "Basic <token68>" (RFC 7617 §2; the scheme is case-insensitive, RFC 9110 §11.1): the offset
 * and length of the base64. */
static bool basic_split(const char *s, size_t len, size_t *b64, size_t *b64_len)
{
    static const char scheme[] = "basic";
    size_t i = 0, end = len;
    while (i < len && is_ows(s[i]))
        i++;
    if (len - i < sizeof(scheme))
        return false;
    for (size_t k = 0; k < sizeof(scheme) - 1; k++) {
        char ch = s[i + k];
        if ((ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch) != scheme[k])
            return false;
    }
    i += sizeof(scheme) - 1;
    if (!is_ows(s[i]))
        return false;
    while (i < len && is_ows(s[i]))
        i++;
    while (end > i && is_ows(s[end - 1]))
        end--;
    if (end == i)
        return false;
    *b64 = i;
    *b64_len = end - i;
    return true;
}

/* The decoded user-pass of a Basic value, or NULL. Wipe it with scratch_free(d, *len + 1). */
static char *basic_decode(const char *s, size_t len, size_t *b64, size_t *b64_len, size_t *dlen)
{
    if (!basic_split(s, len, b64, b64_len))
        return NULL;
    return b64_decode(s + *b64, *b64_len, dlen);
}

bool creds_appears(const struct creds_provider *p, const char *s, size_t len)
{
    struct match m;
    size_t b64, b64_len, dlen;

    if (!s || len == 0)
        return false;
    find_raw(s, len, 0, p->placeholder, p->placeholder_len, &m);
    if (m.start != NO_MATCH)
        return true;
    find_decoded(p, s, len, 0, &m);
    if (m.start != NO_MATCH)
        return true;
    /* A user-pass is compared raw: RFC 7617 has no percent-decoding of it, so a server sees
     * exactly the decoded bytes. */
    char *d = basic_decode(s, len, &b64, &b64_len, &dlen);
    bool found = d && memmem(d, dlen, p->placeholder, p->placeholder_len);
    scratch_free(d, d ? dlen + 1 : 0);
    return found;
}

/* ---- substitution ---- */

void creds_substitute(const struct creds_provider *p, const char *s, size_t len,
                      enum creds_mode mode, struct http_buf *out)
{
    struct scan sc = {p, s, len, {0, 0}, {0, 0}, false, false};
    struct match m;
    size_t pos = 0;

    if (!s || len == 0)
        return;
    while (scan_next(&sc, pos, &m)) {
        sappend(out, s + pos, m.start - pos);
        if (mode == CREDS_SECRET)
            sappend(out, p->secret, p->secret_len);
        else if (mode == CREDS_SECRET_PCT)
            sappend(out, p->secret_pct, p->secret_pct_len);
        else
            sappend(out, CREDS_REDACTED, sizeof(CREDS_REDACTED) - 1);
        pos = m.end;
    }
    sappend(out, s + pos, len - pos);
}

/* Append s with every raw occurrence of needle replaced by with. */
static void replace_raw(const char *s, size_t len, const char *needle, size_t n, const char *with,
                        size_t with_len, struct http_buf *out)
{
    struct match m;
    size_t pos = 0;
    for (find_raw(s, len, 0, needle, n, &m); m.start != NO_MATCH;
         find_raw(s, len, pos, needle, n, &m)) {
        sappend(out, s + pos, m.start - pos);
        sappend(out, with, with_len);
        pos = m.end;
    }
    sappend(out, s + pos, len - pos);
}

void creds_substitute_header(const struct creds_provider *p, const char *value, size_t len,
                             struct http_buf *out)
{
    size_t b64, b64_len, dlen;
    char *d = value && len ? basic_decode(value, len, &b64, &b64_len, &dlen) : NULL;

    /* When the decoded user-pass names no placeholder (say the token itself happens to be
     * valid base64), the value is plain text like any other scheme's. */
    if (!d || !memmem(d, dlen, p->placeholder, p->placeholder_len)) {
        scratch_free(d, d ? dlen + 1 : 0);
        creds_substitute(p, value, len, CREDS_SECRET, out);
        return;
    }
    struct http_buf plain = {0};
    replace_raw(d, dlen, p->placeholder, p->placeholder_len, p->secret, p->secret_len, &plain);
    scratch_free(d, dlen + 1);

    size_t enc_cap = plain.len / 3 * 4 + 5;
    char *enc = plain.failed || plain.len > INT_MAX / 2 ? NULL : malloc(enc_cap);
    if (!enc) {
        out->failed = true;
    } else {
        int n = EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)plain.data,
                                (int)plain.len);
        sappend(out, value, b64);
        sappend(out, enc, (size_t)n);
        sappend(out, value + b64 + b64_len, len - b64 - b64_len);
    }
    scratch_free(enc, enc_cap);
    creds_buf_wipe(&plain);
}

void creds_inject_value(const struct creds_provider *p, struct http_buf *out)
{
    const char *f = p->inject_format ? p->inject_format : SECRET_TOKEN;
    const char *hit;
    while ((hit = strstr(f, SECRET_TOKEN)) != NULL) {
        sappend(out, f, (size_t)(hit - f));
        sappend(out, p->secret, p->secret_len);
        f = hit + sizeof(SECRET_TOKEN) - 1;
    }
    sappend(out, f, strlen(f));
}

/* ---- substitute_in ---- */

/* true when the client's text (percent-encoded, as sent) decodes to name. */
static bool pct_equals(const char *s, size_t len, const char *name)
{
    size_t i = 0;
    for (; i < len && *name; name++) {
        unsigned char ch;
        i += next_token(s, len, i, &ch);
        if (ch != (unsigned char)*name)
            return false;
    }
    return i == len && *name == '\0';
}

static bool allows(const struct creds_provider *p, enum place_kind kind, const char *name,
                   size_t name_len)
{
    for (size_t i = 0; i < p->nplaces; i++) {
        const struct place *pl = &p->places[i];
        if (pl->kind != kind)
            continue;
        if (kind == PLACE_PATH || !pl->name)
            return true;
        if (kind == PLACE_HEADER && strlen(pl->name) == name_len &&
            strncasecmp(pl->name, name, name_len) == 0)
            return true;
        if (kind == PLACE_QUERY && pct_equals(name, name_len, pl->name))
            return true;
    }
    return false;
}

/* The query (after '?'), parameter by parameter. A placeholder never spans a '&', ';' or '=': its
 * characters are letters, digits, '_' and '-', and a decoded "%26" is none of them. */
static const char *misplaced_in_query(const struct creds_provider *p, const char *q, size_t len)
{
    for (size_t pos = 0; pos <= len;) {
        /* ';' separates parameters too for many servers (the W3C's old recommendation) */
        size_t end = pos;
        while (end < len && q[end] != '&' && q[end] != ';')
            end++;
        const char *param = q + pos;
        size_t plen = end - pos;
        const char *eq = memchr(param, '=', plen);
        size_t nlen = eq ? (size_t)(eq - param) : plen;
        if (creds_appears(p, param, nlen))
            return "a query parameter name";
        if (eq && creds_appears(p, eq + 1, plen - nlen - 1) && !allows(p, PLACE_QUERY, param, nlen))
            return "a query parameter that substitute_in does not list";
        pos = end + 1;
    }
    return NULL;
}

const char *creds_misplaced(const struct creds_provider *p, const struct http_head *h)
{
    if (p->nplaces == 0)
        return NULL;
    const char *q = memchr(h->target, '?', h->target_len);
    size_t path_len = q ? (size_t)(q - h->target) : h->target_len;
    if (creds_appears(p, h->target, path_len) && !allows(p, PLACE_PATH, NULL, 0))
        return "the path";
    const char *why = q ? misplaced_in_query(p, q + 1, h->target_len - path_len - 1) : NULL;
    if (why)
        return why;
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        /* The inject header is replaced whole: a placeholder the client put there goes
         * nowhere. */
        if (p->inject_header && strlen(p->inject_header) == f->name_len &&
            strncasecmp(p->inject_header, f->name, f->name_len) == 0)
            continue;
        if (creds_appears(p, f->value, f->value_len) &&
            !allows(p, PLACE_HEADER, f->name, f->name_len))
            return "a header field that substitute_in does not list";
    }
    return NULL;
}

/* ---- responses ---- */

/* The (secret, placeholder) pairs of the providers an exchange used. */
static size_t pairs_of(const struct creds_provider *const *used, size_t n,
                       struct redact_pair *pairs)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < REDACT_MAX_PAIRS; i++) {
        if (!used[i]->secret)
            continue;
        pairs[k++] = (struct redact_pair){used[i]->secret, used[i]->secret_len,
                                          used[i]->placeholder, used[i]->placeholder_len};
    }
    return k;
}

struct redactor *creds_redactor(const struct creds_provider *const *used, size_t n)
{
    struct redact_pair pairs[REDACT_MAX_PAIRS];
    return redact_new(pairs, pairs_of(used, n, pairs));
}

void creds_redact_text(const struct creds_provider *const *used, size_t n, const char *s,
                       size_t len, struct http_buf *out)
{
    struct redact_pair pairs[REDACT_MAX_PAIRS];
    redact_text(pairs, pairs_of(used, n, pairs), s, len, out);
}

void creds_redact_field(const struct creds_provider *const *used, size_t n, const char *s,
                        size_t len, struct http_buf *out)
{
    struct redact_pair pairs[REDACT_MAX_PAIRS];
    redact_field(pairs, pairs_of(used, n, pairs), s, len, out);
}
