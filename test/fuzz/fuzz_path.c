/* SPDX-License-Identifier: MIT */
/* libFuzzer target for path: path_canonicalize on the whole input, with the properties of a
 * canonical path checked on every PATH_OK (rooted, no empty or dot segment, no encoded slash,
 * idempotent, exact output bounds), and path_glob_match on the input cut at its first '\n'
 * into a glob and a path, compared with a plain recursive matcher on short inputs;
 * path_glob_match_nocase is compared with path_glob_match on lower-cased text. Invariants are
 * checked with __builtin_trap(). */
#include "airlock/path.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

/* The reference matcher is exponential in the number of stars: only short inputs go to it. */
#define REF_MAX 16

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1; /* lower case is not canonical */
}

/* Everything a canonical path promises, byte by byte. */
static void check_canonical(const char *path, size_t n)
{
    CHECK(n > 0 && path[0] == '/');
    CHECK(strlen(path) == n);
    CHECK(strstr(path, "//") == NULL);
    CHECK(strstr(path, "/./") == NULL);
    CHECK(strstr(path, "/../") == NULL);
    CHECK(strstr(path, "%2F") == NULL && strstr(path, "%2f") == NULL);
    /* a dot segment at the end is a dot segment too */
    CHECK(!(n >= 2 && strcmp(path + n - 2, "/.") == 0));
    CHECK(!(n >= 3 && strcmp(path + n - 3, "/..") == 0));
    /* ;params are stripped from every segment */
    CHECK(strchr(path, ';') == NULL);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];

        CHECK(c > 0x20 && c < 0x7f && c != '#' && c != '\\' && c != '?');
        if (c != '%')
            continue;
        /* escapes are upper-case, never of an unreserved byte, a slash, backslash or NUL, and
         * never a double-encoded dot, slash or backslash */
        CHECK(i + 2 < n);
        int hi = hex_value((unsigned char)path[i + 1]);
        int lo = hex_value((unsigned char)path[i + 2]);
        CHECK(hi >= 0 && lo >= 0);
        unsigned char v = (unsigned char)(hi << 4 | lo);
        CHECK(v != 0 && v != '/' && v != '\\' && !is_unreserved(v));
        if (v == '%' && i + 4 < n) {
            char a = path[i + 3], b = path[i + 4];
            CHECK(!(a == '2' && (b == 'e' || b == 'E' || b == 'f' || b == 'F')));
            CHECK(!(a == '5' && (b == 'c' || b == 'C')));
        }
        i += 2;
    }
}

static char *dup_n(const char *p, size_t n)
{
    char *d = malloc(n + 1);

    CHECK(d != NULL);
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static void fuzz_canonicalize(const char *in, size_t len)
{
    size_t cap = PATH_MAX_LEN + 1;
    char *path = malloc(cap), *query = malloc(cap);
    bool has_query = false;

    CHECK(path && query);
    enum path_result rc = path_canonicalize(in, len, path, cap, query, cap, &has_query);
    CHECK(rc == PATH_OK || rc == PATH_BAD || rc == PATH_TOO_LONG);
    if (len > PATH_MAX_LEN)
        CHECK(rc == PATH_TOO_LONG);
    if (rc != PATH_OK) {
        free(path);
        free(query);
        return;
    }
    size_t n = strlen(path), qn = strlen(query);
    check_canonical(path, n);
    CHECK(has_query == (memchr(in, '?', len) != NULL));
    CHECK(has_query || qn == 0);
    /* the query is copied as is */
    if (has_query) {
        const char *q = memchr(in, '?', len);
        CHECK(qn == len - (size_t)(q + 1 - in) && memcmp(q + 1, query, qn) == 0);
    }
    /* the canonical text never grows */
    CHECK(n <= len);

    /* Exact-size heap buffers: ASan sees a write one byte past cap, and one byte less than
     * needed must be refused rather than truncated. */
    char *p2 = malloc(n + 1), *q2 = malloc(qn + 1);
    bool hq2 = false;
    CHECK(p2 && q2);
    CHECK(path_canonicalize(in, len, p2, n + 1, q2, qn + 1, &hq2) == PATH_OK);
    CHECK(strcmp(p2, path) == 0 && strcmp(q2, query) == 0 && hq2 == has_query);
    CHECK(path_canonicalize(in, len, p2, n, q2, qn + 1, &hq2) == PATH_TOO_LONG);
    CHECK(path_canonicalize(in, len, p2, n + 1, q2, qn, &hq2) == PATH_TOO_LONG);
    /* without a query buffer the path alone comes out */
    CHECK(path_canonicalize(in, len, p2, n + 1, NULL, 0, NULL) == PATH_OK);
    CHECK(strcmp(p2, path) == 0);
    free(p2);
    free(q2);

    /* Idempotent: the canonical form (with its query) is its own canonical form. */
    size_t again_len = n + (has_query ? 1 + qn : 0);
    char *again = malloc(again_len + 1);
    CHECK(again != NULL);
    memcpy(again, path, n);
    if (has_query) {
        again[n] = '?';
        memcpy(again + n + 1, query, qn);
    }
    char *p3 = malloc(cap), *q3 = malloc(cap);
    bool hq3 = false;
    CHECK(p3 && q3);
    CHECK(path_canonicalize(again, again_len, p3, cap, q3, cap, &hq3) == PATH_OK);
    CHECK(strcmp(p3, path) == 0 && strcmp(q3, query) == 0 && hq3 == has_query);

    /* a canonical path is a glob that matches itself ('*' matches '*', '**' any segments) */
    CHECK(path_glob_match(path, path));
    /* a canonical path without stars is a valid glob, one with stars maybe not ('a**') */
    if (!strchr(path, '*'))
        CHECK(path_glob_valid(path));
    free(p3);
    free(q3);
    free(again);
    free(path);
    free(query);
}

/* ---- reference glob matcher: the definition, written as plainly as possible ---- */

/* '*' matches any run of characters inside one segment (segments carry no '/'). */
static bool ref_segment(const char *g, size_t gl, const char *s, size_t sl)
{
    if (gl == 0)
        return sl == 0;
    if (g[0] == '*') {
        for (size_t k = 0; k <= sl; k++) {
            if (ref_segment(g + 1, gl - 1, s + k, sl - k))
                return true;
        }
        return false;
    }
    return sl > 0 && g[0] == s[0] && ref_segment(g + 1, gl - 1, s + 1, sl - 1);
}

struct segs {
    const char *p[REF_MAX + 1];
    size_t len[REF_MAX + 1];
    size_t n;
};

/* "/a/b" -> "a", "b"; "/" -> ""; "/a/" -> "a", "". */
static void split_segs(const char *s, struct segs *out)
{
    out->n = 0;
    s++;
    for (;;) {
        size_t l = strcspn(s, "/");
        out->p[out->n] = s;
        out->len[out->n] = l;
        out->n++;
        if (s[l] == '\0')
            return;
        s += l + 1;
    }
}

/* A whole '**' segment matches zero or more whole segments; any other glob segment matches
 * exactly one path segment. */
static bool ref_segs(const struct segs *g, size_t gi, const struct segs *s, size_t si)
{
    if (gi == g->n)
        return si == s->n;
    if (g->len[gi] == 2 && g->p[gi][0] == '*' && g->p[gi][1] == '*') {
        for (size_t k = si; k <= s->n; k++) {
            if (ref_segs(g, gi + 1, s, k))
                return true;
        }
        return false;
    }
    return si < s->n && ref_segment(g->p[gi], g->len[gi], s->p[si], s->len[si]) &&
           ref_segs(g, gi + 1, s, si + 1);
}

static bool ref_match(const char *glob, const char *path)
{
    struct segs g, s;

    if (glob[0] != '/' || path[0] != '/')
        return false;
    split_segs(glob, &g);
    split_segs(path, &s);
    return ref_segs(&g, 0, &s, 0);
}

static void fuzz_glob(const char *in, size_t len)
{
    const char *nl = memchr(in, '\n', len);
    if (!nl)
        return;
    /* C strings: each side ends at its first NUL */
    char *glob = dup_n(in, (size_t)(nl - in));
    char *path = dup_n(nl + 1, len - (size_t)(nl + 1 - in));

    bool got = path_glob_match(glob, path);
    size_t gl = strlen(glob), pl = strlen(path);
    if (gl <= REF_MAX && pl <= REF_MAX)
        CHECK(got == ref_match(glob, path));
    /* the case-folding matcher is the exact one over lower-cased text, and never narrower */
    char *lglob = dup_n(glob, gl), *lpath = dup_n(path, pl);
    for (char *c = lglob; *c; c++)
        *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : *c;
    for (char *c = lpath; *c; c++)
        *c = (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : *c;
    bool folded = path_glob_match_nocase(glob, path);
    CHECK(folded == path_glob_match(lglob, lpath));
    CHECK(!got || folded);
    free(lglob);
    free(lpath);
    /* the matcher only ever sees canonical paths: match the canonical form of the path too */
    char *canon = malloc(PATH_MAX_LEN + 1);
    CHECK(canon != NULL);
    if (path_canonicalize(path, pl, canon, PATH_MAX_LEN + 1, NULL, 0, NULL) == PATH_OK) {
        got = path_glob_match(glob, canon);
        if (gl <= REF_MAX && strlen(canon) <= REF_MAX)
            CHECK(got == ref_match(glob, canon));
    }
    /* a valid glob is rooted and free of empty and dot segments */
    if (path_glob_valid(glob)) {
        CHECK(glob[0] == '/');
        CHECK(strstr(glob, "//") == NULL && strstr(glob, "/./") == NULL);
    }
    free(canon);
    free(glob);
    free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy without a terminator: ASan sees any read past len */
    char *in = malloc(size ? size : 1);

    CHECK(in != NULL);
    memcpy(in, data, size);
    fuzz_canonicalize(in, size);
    fuzz_glob(in, size);
    free(in);
    return 0;
}
