/* SPDX-License-Identifier: MIT */
/* path: canonicalisation of origin-form targets and anchored glob matching over the result.
 * Owns no state and allocates nothing. The invariant: one canonical text feeds both the policy
 * and the upstream, and every input that two servers could read differently is refused instead
 * of being guessed at. */
#include "airlock/path.h"

#include <string.h>

int path_hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 §2.3: escapes of these carry no meaning and are decoded (§6.2.2.2). */
bool path_is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* Bytes refused anywhere in a target: no server agrees with another on what they mean. */
static bool is_refused_byte(unsigned char c)
{
    return c < 0x20 || c == 0x7f || c >= 0x80 || c == ' ' || c == '#';
}

static bool is_hex_char(char c, char lower)
{
    return c == lower || c == lower - ('a' - 'A');
}

/* "%25" followed by "2e", "2f" or "5c" in any case: a server that decodes twice (or a proxy
 * chain that decodes once more) would see a dot, slash or backslash we never checked. */
static bool has_double_encoding(const char *s, size_t n)
{
    for (size_t i = 0; i + 5 <= n; i++) {
        if (s[i] != '%' || s[i + 1] != '2' || s[i + 2] != '5')
            continue;
        char a = s[i + 3], b = s[i + 4];
        if (a == '2' && (is_hex_char(b, 'e') || is_hex_char(b, 'f')))
            return true;
        if (a == '5' && is_hex_char(b, 'c'))
            return true;
    }
    return false;
}

/* Step 1: validate every byte and percent-decode unreserved characters into out; other escapes
 * come out as uppercase %XX (RFC 3986 §6.2.2.1). Output never grows. Returns its length, or -1
 * when the path is refused. */
static long decode_path(const char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (is_refused_byte(c) || c == '\\')
            return -1;
        if (c != '%') {
            out[w++] = (char)c;
            continue;
        }
        if (i + 2 >= n)
            return -1;
        int hi = path_hex_value((unsigned char)p[i + 1]);
        int lo = path_hex_value((unsigned char)p[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        unsigned char v = (unsigned char)(hi << 4 | lo);
        /* An encoded slash or backslash hides a segment boundary from us that the upstream
         * may honour (CVE-2007-0450 and its many descendants); an encoded NUL truncates. */
        if (v == 0 || v == '/' || v == '\\')
            return -1;
        if (path_is_unreserved(v)) {
            out[w++] = (char)v;
        } else {
            out[w++] = '%';
            out[w++] = hex[hi];
            out[w++] = hex[lo];
        }
        i += 2;
    }
    return (long)w;
}

/* Steps 2 to 4 in one pass, in place over buf (which starts with '/'): strip ;params from each
 * segment, collapse empty segments, and remove dot segments as RFC 3986 §5.2.4 does, except
 * that climbing above the root is refused rather than clamped (a client that sends "/../x"
 * is probing, and clamping would hide a traversal from the log). The write position never
 * passes the read position, so memmove in place is safe. Returns the new length or -1. */
static long normalise_segments(char *buf, size_t n)
{
    size_t w = 0; /* output length; output is "" or "/seg/seg..." */
    bool trailing = false;
    size_t r = 0;

    while (r < n) {
        while (r < n && buf[r] == '/')
            r++;
        size_t start = r;
        while (r < n && buf[r] != '/')
            r++;
        size_t end = r;
        char *semi = memchr(buf + start, ';', end - start);
        size_t seg_len = semi ? (size_t)(semi - (buf + start)) : end - start;

        /* Matrix parameters are meaningful to some servers (Tomcat's ";jsessionid=") and
         * invisible to others, so "..;" must count as "..": strip before dot removal. */
        if (seg_len == 0 || (seg_len == 1 && buf[start] == '.')) {
            trailing = true;
        } else if (seg_len == 2 && buf[start] == '.' && buf[start + 1] == '.') {
            if (w == 0)
                return -1;
            while (w > 0 && buf[w - 1] != '/')
                w--;
            w--; /* the '/' that introduced the removed segment */
            trailing = true;
        } else {
            buf[w++] = '/';
            memmove(buf + w, buf + start, seg_len);
            w += seg_len;
            trailing = false;
        }
    }
    if (w == 0 || trailing)
        buf[w++] = '/';
    return (long)w;
}

enum path_result path_canonicalize(const char *target, size_t len, char *path_out, size_t path_cap,
                                   char *query_out, size_t query_cap, bool *has_query)
{
    char buf[PATH_MAX_LEN + 1];

    if (len > PATH_MAX_LEN)
        return PATH_TOO_LONG;
    if (len == 0 || target[0] != '/')
        return PATH_BAD;

    const char *q = memchr(target, '?', len);
    size_t plen = q ? (size_t)(q - target) : len;
    size_t qlen = q ? len - plen - 1 : 0;

    /* The query is forwarded untouched and not matched, but it still must not carry bytes that
     * could split the request line or be read differently downstream. */
    for (size_t i = 0; i < qlen; i++) {
        if (is_refused_byte((unsigned char)q[1 + i]))
            return PATH_BAD;
    }

    long n = decode_path(target, plen, buf);
    if (n < 0 || has_double_encoding(buf, (size_t)n))
        return PATH_BAD;
    n = normalise_segments(buf, (size_t)n);
    if (n < 0)
        return PATH_BAD;

    if (path_cap == 0 || (size_t)n >= path_cap)
        return PATH_TOO_LONG;
    if (query_out && (query_cap == 0 || qlen >= query_cap))
        return PATH_TOO_LONG;
    memcpy(path_out, buf, (size_t)n);
    path_out[n] = '\0';
    if (query_out) {
        if (qlen)
            memcpy(query_out, q + 1, qlen);
        query_out[qlen] = '\0';
    }
    if (has_query)
        *has_query = q != NULL;
    return PATH_OK;
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static bool char_eq(char a, char b, bool fold)
{
    return a == b || (fold && ascii_lower(a) == ascii_lower(b));
}

/* Classic two-pointer wildcard match of one segment against one glob segment, '*' matching any
 * run of characters. Only the most recent '*' is ever resumed, which is enough because every
 * other glob character consumes exactly one input character: O(plen * slen) at worst. */
static bool segment_match(const char *g, size_t glen, const char *s, size_t slen, bool fold)
{
    size_t gi = 0, si = 0;
    size_t star_g = (size_t)-1, star_s = 0;

    while (si < slen) {
        if (gi < glen && g[gi] == '*') {
            star_g = gi++;
            star_s = si;
        } else if (gi < glen && char_eq(g[gi], s[si], fold)) {
            gi++;
            si++;
        } else if (star_g != (size_t)-1) {
            gi = star_g + 1;
            si = ++star_s;
        } else {
            return false;
        }
    }
    while (gi < glen && g[gi] == '*')
        gi++;
    return gi == glen;
}

/* Segments of a string that starts with '/': a cursor points at the first byte of a segment
 * (just after its '/'), NULL once past the last one. "/" has one empty segment. */
static const char *seg_next(const char *cur)
{
    const char *slash = strchr(cur, '/');
    return slash ? slash + 1 : NULL;
}

static size_t seg_len(const char *cur)
{
    return strcspn(cur, "/");
}

static bool seg_is_globstar(const char *cur)
{
    return cur[0] == '*' && cur[1] == '*' && (cur[2] == '/' || cur[2] == '\0');
}

/* The same two-pointer algorithm one level up: '**' plays '*', and every other glob segment
 * consumes exactly one path segment, so resuming only the latest '**' is complete. A trailing
 * '**' matching zero segments is what makes a glob "/admin/" "**" cover "/admin". For a given
 * '**' the pair (glob segment, path segment) fixes where that '**' resumed, so each pair is
 * compared at most once, which bounds the work by strlen(glob) * strlen(path). */
static bool glob_match(const char *glob, const char *path, bool fold)
{
    if (!glob || !path || glob[0] != '/' || path[0] != '/')
        return false;

    const char *g = glob + 1, *s = path + 1;
    const char *star_g = NULL, *star_s = NULL;

    while (s) {
        if (g && seg_is_globstar(g)) {
            star_g = g;
            star_s = s;
            g = seg_next(g);
        } else if (g && segment_match(g, seg_len(g), s, seg_len(s), fold)) {
            g = seg_next(g);
            s = seg_next(s);
        } else if (star_g) {
            g = seg_next(star_g);
            star_s = seg_next(star_s);
            s = star_s;
        } else {
            return false;
        }
    }
    while (g && seg_is_globstar(g))
        g = seg_next(g);
    return g == NULL;
}

bool path_glob_match(const char *glob, const char *path)
{
    return glob_match(glob, path, false);
}

bool path_glob_match_nocase(const char *glob, const char *path)
{
    return glob_match(glob, path, true);
}

/* A glob must be written in canonical form: the matcher only ever sees canonical paths, so a
 * glob with "//", a dot segment, ";params", a lower-case or needless escape could never match,
 * and a deny rule that can never match silently widens the policy. */
bool path_glob_valid(const char *glob)
{
    char canon[PATH_MAX_LEN + 1];
    bool has_query = false;

    if (!glob || glob[0] != '/')
        return false;
    size_t len = strlen(glob);
    for (const char *c = glob; *c; c++) {
        if (*c == '*' && c[1] == '*' && !seg_is_globstar(c))
            return false;
        if (*c == '*' && c[1] == '*' && c[-1] != '/')
            return false;
        if (*c == '*' && c[1] == '*')
            c++;
    }
    if (path_canonicalize(glob, len, canon, sizeof(canon), NULL, 0, &has_query) != PATH_OK)
        return false;
    return !has_query && strcmp(canon, glob) == 0;
}
