/* SPDX-License-Identifier: MIT */
/* Unit tests for path: a table of canonicalisation cases (every encoding of "..", params,
 * slashes and refused bytes), a table of glob cases, glob validation, and a pathological glob
 * that must finish quickly. */
#include "airlock/path.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"

struct canon_case {
    const char *in;
    enum path_result result;
    const char *path;  /* expected canonical path when PATH_OK */
    const char *query; /* expected query, NULL when none */
};

static const struct canon_case canon_cases[] = {
    /* plain */
    {"/", PATH_OK, "/", NULL},
    {"/a", PATH_OK, "/a", NULL},
    {"/a/b/c", PATH_OK, "/a/b/c", NULL},
    {"/a/b/", PATH_OK, "/a/b/", NULL},
    {"/v1/messages", PATH_OK, "/v1/messages", NULL},
    {"/repos/o/r/issues?state=open&x=%2F", PATH_OK, "/repos/o/r/issues", "state=open&x=%2F"},
    {"/?", PATH_OK, "/", ""},
    {"/a?b?c", PATH_OK, "/a", "b?c"},
    {"/a?%zz\\", PATH_OK, "/a", "%zz\\"},
    {"/a/*/(x)!$&'+,=:@", PATH_OK, "/a/*/(x)!$&'+,=:@", NULL},
    /* unreserved escapes decoded, others upper-cased */
    {"/%41%62%7e%2d%5f%30", PATH_OK, "/Ab~-_0", NULL},
    {"/a%20b", PATH_OK, "/a%20b", NULL},
    {"/a%3bb", PATH_OK, "/a%3Bb", NULL},
    {"/a%3fb", PATH_OK, "/a%3Fb", NULL},
    {"/%e2%82%ac", PATH_OK, "/%E2%82%AC", NULL},
    {"/a%25b", PATH_OK, "/a%25b", NULL},
    {"/a%2541", PATH_OK, "/a%2541", NULL},
    {"/%7Euser", PATH_OK, "/~user", NULL},
    /* dot segments, every spelling */
    {"/a/./b", PATH_OK, "/a/b", NULL},
    {"/./a", PATH_OK, "/a", NULL},
    {"/a/.", PATH_OK, "/a/", NULL},
    {"/a/b/..", PATH_OK, "/a/", NULL},
    {"/a/..", PATH_OK, "/", NULL},
    {"/a/b/../c", PATH_OK, "/a/c", NULL},
    {"/a/b/../../c", PATH_OK, "/c", NULL},
    {"/a/%2e%2e/b", PATH_OK, "/b", NULL},
    {"/a/%2e%2E/b", PATH_OK, "/b", NULL},
    {"/a/%2E%2E/b", PATH_OK, "/b", NULL},
    {"/a/.%2e/b", PATH_OK, "/b", NULL},
    {"/a/%2e./b", PATH_OK, "/b", NULL},
    {"/a/%2e/b", PATH_OK, "/a/b", NULL},
    {"/a/b/%2e%2e", PATH_OK, "/a/", NULL},
    {"/a/...", PATH_OK, "/a/...", NULL},
    {"/a/..b/.c", PATH_OK, "/a/..b/.c", NULL},
    {"/a/b/c/../../../d", PATH_OK, "/d", NULL},
    {"/a/./../b", PATH_OK, "/b", NULL},
    {"/a/..?x=../..", PATH_OK, "/", "x=../.."},
    /* params */
    {"/a;jsessionid=123/b", PATH_OK, "/a/b", NULL},
    {"/a/b;jsessionid=ABC", PATH_OK, "/a/b", NULL},
    {"/;x", PATH_OK, "/", NULL},
    {"/a/;x/b", PATH_OK, "/a/b", NULL},
    {"/a/;x", PATH_OK, "/a/", NULL},
    {"/a/..;/b", PATH_OK, "/b", NULL},
    {"/.;/admin", PATH_OK, "/admin", NULL},
    {"/a/b/..;x=y/c", PATH_OK, "/a/c", NULL},
    {"/a;p/b;q/c;r", PATH_OK, "/a/b/c", NULL},
    {"/a/%2e%2e;x/b", PATH_OK, "/b", NULL},
    /* slashes */
    {"//a", PATH_OK, "/a", NULL},
    {"/a//b", PATH_OK, "/a/b", NULL},
    {"/a///b//", PATH_OK, "/a/b/", NULL},
    {"//", PATH_OK, "/", NULL},
    {"/a//..//b", PATH_OK, "/b", NULL},
    /* climbing above the root */
    {"/..", PATH_BAD, NULL, NULL},
    {"/../a", PATH_BAD, NULL, NULL},
    {"/a/../..", PATH_BAD, NULL, NULL},
    {"/a/b/../../..", PATH_BAD, NULL, NULL},
    {"/%2e%2e/a", PATH_BAD, NULL, NULL},
    {"/.%2E/etc/passwd", PATH_BAD, NULL, NULL},
    {"/..;/admin", PATH_BAD, NULL, NULL},
    {"//../a", PATH_BAD, NULL, NULL},
    {"/a/./../../b", PATH_BAD, NULL, NULL},
    /* encoded slash, backslash, NUL */
    {"/a%2fb", PATH_BAD, NULL, NULL},
    {"/a%2Fb", PATH_BAD, NULL, NULL},
    {"/a%5cb", PATH_BAD, NULL, NULL},
    {"/a%5Cb", PATH_BAD, NULL, NULL},
    {"/a%00b", PATH_BAD, NULL, NULL},
    {"/..%2f..%2fetc", PATH_BAD, NULL, NULL},
    /* double encoding */
    {"/a/%252e%252e/b", PATH_BAD, NULL, NULL},
    {"/a%252Eb", PATH_BAD, NULL, NULL},
    {"/a%252fb", PATH_BAD, NULL, NULL},
    {"/a%252Fb", PATH_BAD, NULL, NULL},
    {"/a%255cb", PATH_BAD, NULL, NULL},
    {"/a%255Cb", PATH_BAD, NULL, NULL},
    {"/a%25%32%65", PATH_BAD, NULL, NULL},
    {"/a;%252e", PATH_BAD, NULL, NULL},
    /* invalid escapes */
    {"/a%", PATH_BAD, NULL, NULL},
    {"/a%2", PATH_BAD, NULL, NULL},
    {"/a%zz", PATH_BAD, NULL, NULL},
    {"/a%g0", PATH_BAD, NULL, NULL},
    {"/a%%32e", PATH_BAD, NULL, NULL},
    {"/a%u002e", PATH_BAD, NULL, NULL},
    /* refused bytes */
    {"/a b", PATH_BAD, NULL, NULL},
    {"/a\tb", PATH_BAD, NULL, NULL},
    {"/a\rb", PATH_BAD, NULL, NULL},
    {"/a\nb", PATH_BAD, NULL, NULL},
    {"/a\x7f", PATH_BAD, NULL, NULL},
    {"/caf\xc3\xa9", PATH_BAD, NULL, NULL},
    {"/a#frag", PATH_BAD, NULL, NULL},
    {"/a\\..\\b", PATH_BAD, NULL, NULL},
    {"/a\\b", PATH_BAD, NULL, NULL},
    {"/a?b c", PATH_BAD, NULL, NULL},
    {"/a?b#c", PATH_BAD, NULL, NULL},
    {"/a?b\x01", PATH_BAD, NULL, NULL},
    {"/a?\xff", PATH_BAD, NULL, NULL},
    /* not origin form */
    {"", PATH_BAD, NULL, NULL},
    {"a/b", PATH_BAD, NULL, NULL},
    {"*", PATH_BAD, NULL, NULL},
    {"http://x/a", PATH_BAD, NULL, NULL},
    {"?a", PATH_BAD, NULL, NULL},
    {"%2fa", PATH_BAD, NULL, NULL},
};

static void test_canon_table(void)
{
    size_t n = sizeof(canon_cases) / sizeof(canon_cases[0]);
    CHECK(n >= 60);
    for (size_t i = 0; i < n; i++) {
        const struct canon_case *c = &canon_cases[i];
        char path[256], query[256];
        bool has_query = true;
        enum path_result r = path_canonicalize(c->in, strlen(c->in), path, sizeof(path), query,
                                               sizeof(query), &has_query);
        if (r != c->result)
            fprintf(stderr, "case %zu \"%s\": result %d, want %d\n", i, c->in, r, c->result);
        CHECK_EQ(r, c->result);
        if (r != PATH_OK || c->result != PATH_OK)
            continue;
        if (strcmp(path, c->path) != 0)
            fprintf(stderr, "case %zu \"%s\"\n", i, c->in);
        CHECK_STR(path, c->path);
        CHECK_EQ(has_query, c->query != NULL);
        CHECK_STR(query, c->query ? c->query : "");
    }
}

/* A canonical path is a fixed point: canonicalising it again changes nothing. */
static void test_canon_idempotent(void)
{
    size_t n = sizeof(canon_cases) / sizeof(canon_cases[0]);
    for (size_t i = 0; i < n; i++) {
        char once[256], twice[256], q[256];
        bool hq;
        const char *in = canon_cases[i].in;
        if (path_canonicalize(in, strlen(in), once, sizeof(once), q, sizeof(q), &hq) != PATH_OK)
            continue;
        CHECK_EQ(path_canonicalize(once, strlen(once), twice, sizeof(twice), q, sizeof(q), &hq),
                 PATH_OK);
        CHECK_STR(twice, once);
    }
}

/* The length is taken from len, so an embedded NUL is a byte like any other CTL. */
static void test_canon_embedded_nul(void)
{
    char path[64], query[64];
    bool hq;
    CHECK_EQ(path_canonicalize("/a\0b", 4, path, sizeof(path), query, sizeof(query), &hq),
             PATH_BAD);
    CHECK_EQ(path_canonicalize("/a?\0", 4, path, sizeof(path), query, sizeof(query), &hq),
             PATH_BAD);
    /* len shorter than the string: only len bytes count */
    CHECK_EQ(path_canonicalize("/ab#", 3, path, sizeof(path), query, sizeof(query), &hq), PATH_OK);
    CHECK_STR(path, "/ab");
}

static void test_canon_lengths(void)
{
    static char big[PATH_MAX_LEN + 2];
    static char out[PATH_MAX_LEN + 1];
    char small[8], query[8];
    bool hq;

    memset(big, 'a', sizeof(big));
    big[0] = '/';
    CHECK_EQ(path_canonicalize(big, PATH_MAX_LEN + 1, out, sizeof(out), query, sizeof(query), &hq),
             PATH_TOO_LONG);
    CHECK_EQ(path_canonicalize(big, PATH_MAX_LEN, out, sizeof(out), query, sizeof(query), &hq),
             PATH_OK);
    CHECK_EQ(strlen(out), PATH_MAX_LEN);

    /* the caller's caps: path and query each need room for the NUL */
    CHECK_EQ(path_canonicalize("/1234567", 8, small, sizeof(small), query, sizeof(query), &hq),
             PATH_TOO_LONG);
    CHECK_EQ(path_canonicalize("/123456", 7, small, sizeof(small), query, sizeof(query), &hq),
             PATH_OK);
    CHECK_STR(small, "/123456");
    CHECK_EQ(path_canonicalize("/?12345678", 10, small, sizeof(small), query, sizeof(query), &hq),
             PATH_TOO_LONG);
    /* what counts is the canonical length, not the input's */
    CHECK_EQ(
        path_canonicalize("/aaaaaaaaaa/../b", 16, small, sizeof(small), query, sizeof(query), &hq),
        PATH_OK);
    CHECK_STR(small, "/b");
    CHECK_EQ(path_canonicalize("/%41%41%41", 10, small, sizeof(small), query, sizeof(query), &hq),
             PATH_OK);
    CHECK_STR(small, "/AAA");
}

struct glob_case {
    const char *glob;
    const char *path;
    bool match;
};

static const struct glob_case glob_cases[] = {
    {"/", "/", true},
    {"/", "/a", false},
    {"/a", "/a", true},
    {"/a", "/A", false},
    {"/a", "/a/", false},
    {"/a", "/ab", false},
    {"/a/", "/a/", true},
    {"/*", "/a", true},
    {"/*", "/", true},
    {"/*", "/a/b", false},
    {"/a/*", "/a/b", true},
    {"/a/*", "/a/", true},
    {"/a/*", "/a", false},
    {"/a/*", "/a/b/c", false},
    {"/v1/*.json", "/v1/x.json", true},
    {"/v1/*.json", "/v1/.json", true},
    {"/v1/*.json", "/v1/x.json/y", false},
    {"/v1/*.json", "/v1/x.jsonp", false},
    {"/v1/a*b*c", "/v1/aXbYc", true},
    {"/v1/a*b*c", "/v1/abbbc", true},
    {"/v1/a*b*c", "/v1/acb", false},
    {"/repos/*/*/issues", "/repos/o/r/issues", true},
    {"/repos/*/*/issues", "/repos/o/issues", false},
    {"/repos/*/*/issues", "/repos/o/r/x/issues", false},
    {"/repos/*/*/issues", "/repos/o/r/issues/1", false},
    {"/**", "/", true},
    {"/**", "/a/b/c", true},
    {"/admin/**", "/admin", true},
    {"/admin/**", "/admin/", true},
    {"/admin/**", "/admin/x/y", true},
    {"/admin/**", "/administrator", false},
    {"/admin/**", "/x/admin", false},
    {"/a/**/b", "/a/b", true},
    {"/a/**/b", "/a/x/y/b", true},
    {"/a/**/b", "/a/x/y/b/c", false},
    {"/a/**/b", "/a/b/b", true},
    {"/**/b", "/b", true},
    {"/**/b", "/x/y/b", true},
    {"/**/b", "/x/y/bb", false},
    {"/**/*.git/**", "/org/repo.git/info/refs", true},
    {"/**/*.git/**", "/org/repo.git", true},
    {"/**/*.git/**", "/org/repo/info", false},
    {"/a/**/**/b", "/a/b", true},
    {"/a/**/x/**/b", "/a/1/x/2/3/b", true},
    {"/a/**/x/**/b", "/a/1/2/3/b", false},
    {"/a/**", "/b", false},
    {"/%41", "/A", false},
    {"/a%20b", "/a%20b", true},
};

static void test_glob_table(void)
{
    size_t n = sizeof(glob_cases) / sizeof(glob_cases[0]);
    for (size_t i = 0; i < n; i++) {
        const struct glob_case *c = &glob_cases[i];
        bool got = path_glob_match(c->glob, c->path);
        if (got != c->match)
            fprintf(stderr, "glob case %zu: \"%s\" vs \"%s\": got %d\n", i, c->glob, c->path, got);
        CHECK_EQ(got, c->match);
    }
}

/* The case-folding matcher agrees with the exact one on every table case that does not hinge
 * on letter case, and folds ASCII letters (only) in both glob and path. */
static void test_glob_nocase(void)
{
    size_t n = sizeof(glob_cases) / sizeof(glob_cases[0]);
    for (size_t i = 0; i < n; i++) {
        const struct glob_case *c = &glob_cases[i];
        if (strcmp(c->glob, "/a") == 0 && strcmp(c->path, "/A") == 0)
            continue;
        CHECK_EQ(path_glob_match_nocase(c->glob, c->path), c->match);
    }
    static const struct glob_case folded[] = {
        {"/a", "/A", true},
        {"/admin/*", "/ADMIN/Users", true},
        {"/Admin/**", "/aDmIn/x/y", true},
        {"/v1/*.JSON", "/V1/x.json", true},
        {"/a%2Fb", "/A%2fB", true},
        {"/a", "/b", false},
        {"/admin/*", "/ADMIN/a/b", false},
        {"/a@", "/a`", false}, /* '@' and '`' are 0x20 apart but not letters */
        {"/[", "/{", false},
    };
    for (size_t i = 0; i < sizeof(folded) / sizeof(folded[0]); i++) {
        bool got = path_glob_match_nocase(folded[i].glob, folded[i].path);
        if (got != folded[i].match)
            fprintf(stderr, "nocase case %zu: \"%s\" vs \"%s\": got %d\n", i, folded[i].glob,
                    folded[i].path, got);
        CHECK_EQ(got, folded[i].match);
        CHECK(!path_glob_match(folded[i].glob, folded[i].path) || folded[i].match);
    }
    CHECK(!path_glob_match("/a", "/A"));
}

static void test_glob_valid(void)
{
    static const char *const good[] = {
        "/", "/a", "/a/", "/*", "/**", "/a/**", "/**/b", "/a/*/c", "/v1/*.json", "/a%20b", "/~u",
    };
    static const char *const bad[] = {
        "",       "a",       "*",    "**",   "/a**",  "/**a", "/***",    "/a/**b/c", "/a//b",
        "/a/./b", "/a/../b", "/a;x", "/a?b", "/a#b",  "/a b", "/%7eu",   "/a%2fb",   "/a%3bb",
        "/a\\b",  "/a/.",    "//",   "/%41", "/a/..", "/.",   "/a%252e",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!path_glob_valid(good[i]))
            fprintf(stderr, "should be valid: \"%s\"\n", good[i]);
        CHECK(path_glob_valid(good[i]));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (path_glob_valid(bad[i]))
            fprintf(stderr, "should be invalid: \"%s\"\n", bad[i]);
        CHECK(!path_glob_valid(bad[i]));
    }
    CHECK(!path_glob_valid(NULL));
}

/* A plain recursive matcher, exponential but obviously right, to check the linear one. */
static bool ref_seg(const char *g, const char *ge, const char *s, const char *se)
{
    if (g == ge)
        return s == se;
    if (*g == '*')
        return ref_seg(g + 1, ge, s, se) || (s < se && ref_seg(g, ge, s + 1, se));
    return s < se && *g == *s && ref_seg(g + 1, ge, s + 1, se);
}

static bool ref_match(const char *g, const char *s)
{
    /* both point just past a '/' (at a segment start) or at NULL when exhausted */
    if (!g)
        return !s;
    const char *gend = g + strcspn(g, "/");
    const char *gnext = *gend ? gend + 1 : NULL;
    if (gend - g == 2 && g[0] == '*' && g[1] == '*') {
        if (ref_match(gnext, s))
            return true;
        if (!s)
            return false;
        const char *send = s + strcspn(s, "/");
        return ref_match(g, *send ? send + 1 : NULL);
    }
    if (!s)
        return false;
    const char *send = s + strcspn(s, "/");
    return ref_seg(g, gend, s, send) && ref_match(gnext, *send ? send + 1 : NULL);
}

static void random_text(unsigned *seed, char *out, size_t max, const char *alphabet)
{
    size_t n = (size_t)(rand_r(seed) % (int)max);
    size_t k = strlen(alphabet);
    out[0] = '/';
    for (size_t i = 1; i <= n; i++)
        out[i] = alphabet[(size_t)rand_r(seed) % k];
    out[n + 1] = '\0';
}

/* Random globs and paths over a tiny alphabet: the linear matcher agrees with the reference,
 * and canonicalisation is idempotent and never leaves "//" or a dot segment behind. */
static void test_random(void)
{
    unsigned seed = 12345;
    char g[16], pth[16], canon[64], q[64];
    bool hq;
    int disagreements = 0, bad_canon = 0;
    for (int i = 0; i < 200000; i++) {
        random_text(&seed, g, 10, "ab*/");
        random_text(&seed, pth, 10, "ab/");
        if (path_glob_match(g, pth) != ref_match(g + 1, pth + 1)) {
            if (disagreements++ < 5)
                fprintf(stderr, "glob \"%s\" path \"%s\"\n", g, pth);
        }
        random_text(&seed, pth, 12, "a./;%2eE5fcF");
        if (path_canonicalize(pth, strlen(pth), canon, sizeof(canon), q, sizeof(q), &hq) != PATH_OK)
            continue;
        char again[64];
        bool ok = path_canonicalize(canon, strlen(canon), again, sizeof(again), q, sizeof(q),
                                    &hq) == PATH_OK &&
                  strcmp(again, canon) == 0 && !strstr(canon, "//") && !strstr(canon, "/./") &&
                  !strstr(canon, "/../") && !strchr(canon, ';');
        size_t n = strlen(canon);
        ok = ok && !(n >= 2 && strcmp(canon + n - 2, "/.") == 0) &&
             !(n >= 3 && strcmp(canon + n - 3, "/..") == 0);
        if (!ok && bad_canon++ < 5)
            fprintf(stderr, "canon \"%s\" -> \"%s\"\n", pth, canon);
    }
    CHECK_EQ(disagreements, 0);
    CHECK_EQ(bad_canon, 0);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Backtracking matchers go exponential on stacked globstars and stars; ours stays polynomial.
 * The timing is printed, not asserted (sanitizers and loaded CI machines vary). */
static void test_glob_pathological(void)
{
    char path[1024], seg[1200];
    size_t w = 0;
    for (int i = 0; i < 200; i++) {
        path[w++] = '/';
        path[w++] = 'a';
    }
    path[w] = '\0';

    double t0 = now_seconds();
    CHECK(!path_glob_match("/**/**/**/**/**/**/x", path));
    CHECK(path_glob_match("/**/**/**/**/**/**/a", path));
    CHECK(!path_glob_match("/**/a/**/a/**/a/**/a/**/a/**/b", path));

    /* and within one segment */
    memset(seg, 'a', 1000);
    seg[0] = '/';
    seg[1000] = '\0';
    CHECK(!path_glob_match("/*a*a*a*a*a*a*a*a*a*a*a*a*b", seg));
    CHECK(path_glob_match("/*a*a*a*a*a*a*a*a*a*a*a*a*a", seg));
    double dt = now_seconds() - t0;
    printf("pathological globs: %.3f ms\n", dt * 1e3);
}

int main(void)
{
    RUN(test_canon_table);
    RUN(test_canon_idempotent);
    RUN(test_canon_embedded_nul);
    RUN(test_canon_lengths);
    RUN(test_glob_table);
    RUN(test_glob_nocase);
    RUN(test_glob_valid);
    RUN(test_glob_pathological);
    RUN(test_random);
    return test_report();
}
