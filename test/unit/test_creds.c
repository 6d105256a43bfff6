/* SPDX-License-Identifier: MIT */
/* Unit tests for creds: every load error with its JSON path, that no error text carries a
 * secret, and placeholder detection and substitution in every encoding the relay meets (raw,
 * percent-encoded in any case and mix, Bearer, Basic), plus injection, endpoint binding and the
 * redaction of echoed secrets. Secrets come from setenv and from temporary files. */
#include "airlock/creds.h"

#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "airlock/redact.h"
#include "test.h"

#define PH      "AIRLOCK_PH_GITHUB_8f3a1c"
#define SECRET  "gh&p s/x+y=z"
#define CANARY  "CANARY7e3b9d1f"
#define ENV_OK  "AIRLOCK_TEST_SECRET"
#define ENV_BAD "AIRLOCK_TEST_SECRET_BAD"
#define ENV_NO  "AIRLOCK_TEST_SECRET_UNSET"

static char tmp_paths[16][64];
static size_t ntmp;

/* A temporary file holding content (len bytes); the path lives until cleanup(). */
static const char *temp_file(const char *content, size_t len)
{
    char *path = tmp_paths[ntmp++];
    snprintf(path, sizeof(tmp_paths[0]), "/tmp/test_creds_XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, content, len) != (ssize_t)len) {
        perror("temp file");
        exit(2);
    }
    close(fd);
    return path;
}

static void cleanup(void)
{
    for (size_t i = 0; i < ntmp; i++)
        unlink(tmp_paths[i]);
}

/* One provider "p" around the given secret object, endpoints and extra members. */
static char *doc(const char *secret, const char *endpoints, const char *extra)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": \"" PH "\", "
             "\"secret\": %s, \"endpoints\": %s%s}}}",
             secret, endpoints, extra);
    return buf;
}

static struct creds *parse(const char *json, char **errors)
{
    return creds_parse(json, strlen(json), errors);
}

/* true when some line of errors starts with prefix. */
static bool has_line(const char *errors, const char *prefix)
{
    for (const char *line = errors; line && *line;) {
        if (strncmp(line, prefix, strlen(prefix)) == 0)
            return true;
        const char *nl = strchr(line, '\n');
        line = nl ? nl + 1 : NULL;
    }
    return false;
}

static size_t count_lines(const char *errors)
{
    size_t n = 0;
    for (const char *c = errors; c && *c; c++)
        n += *c == '\n';
    return n;
}

/* Parse json, expect failure with a line starting with prefix. */
static void expect_error(const char *json, const char *prefix, int line)
{
    char *errors = NULL;
    struct creds *c = parse(json, &errors);
    CHECK(c == NULL);
    if (!has_line(errors, prefix)) {
        fprintf(stderr, "test_creds.c:%d: no error line starting \"%s\" in:\n%s", line, prefix,
                errors ? errors : "(null)\n");
        test_failed++;
    } else {
        test_passed++;
    }
    CHECK(errors == NULL || strstr(errors, SECRET) == NULL);
    creds_unref(c);
    free(errors);
}
#define EXPECT_ERROR(json, prefix) expect_error(json, prefix, __LINE__)

static const char *env_secret(void)
{
    return "{\"env\": \"" ENV_OK "\"}";
}

static const char *ep443(void)
{
    return "[{\"host\": \"api.github.com\", \"port\": 443}]";
}

/* The one provider of a snapshot that must load. */
static struct creds *load_ok(const char *json)
{
    char *errors = NULL;
    struct creds *c = parse(json, &errors);
    if (!c)
        fprintf(stderr, "unexpected errors:\n%s", errors ? errors : "(null)\n");
    CHECK(c != NULL);
    free(errors);
    return c;
}

/* The value inject yields, as a NUL-terminated malloc'd string. */
static char *inject(const struct creds_provider *p)
{
    struct http_buf b = {0};
    creds_inject_value(p, &b);
    char *s = strdup(b.data ? b.data : "");
    creds_buf_wipe(&b);
    return s;
}

static char *subst(const struct creds_provider *p, const char *s, enum creds_mode mode)
{
    struct http_buf b = {0};
    creds_substitute(p, s, strlen(s), mode, &b);
    char *r = strdup(b.data ? b.data : "");
    creds_buf_wipe(&b);
    return r;
}

static char *subst_header(const struct creds_provider *p, const char *s)
{
    struct http_buf b = {0};
    creds_substitute_header(p, s, strlen(s), &b);
    char *r = strdup(b.data ? b.data : "");
    creds_buf_wipe(&b);
    return r;
}

static bool appears(const struct creds_provider *p, const char *s)
{
    return creds_appears(p, s, strlen(s));
}

/* Every byte of s as "%XX", upper or lower case hex. */
static void pct_all(const char *s, bool upper, char *out)
{
    for (; *s; s++, out += 3)
        sprintf(out, upper ? "%%%02X" : "%%%02x", (unsigned char)*s);
    *out = '\0';
}

static void b64(const char *s, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)strlen(s));
}

static void unb64(const char *s, char *out)
{
    size_t n = strlen(s);
    int got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    size_t pad = (n && s[n - 1] == '=') + (n > 1 && s[n - 2] == '=');
    out[got < 0 ? 0 : (size_t)got - pad] = '\0';
}

/* ---- loading ---- */

static void test_load_env(void)
{
    struct creds *c = load_ok(
        doc(env_secret(),
            "[{\"host\": \"API.GitHub.com.\", \"port\": 443}, {\"host\": \"uploads.github.com\", "
            "\"ports\": [443, \"8000-8099\"]}, {\"host\": \"[::0001]\", \"port\": 8443}]",
            ", \"inject\": {\"header\": \"Authorization\", \"format\": \"Bearer {secret}\"}"));
    if (!c)
        return;
    CHECK_EQ(creds_count(c), 1);
    const struct creds_provider *p = creds_at(c, 0);
    CHECK(creds_at(c, 1) == NULL);
    CHECK_STR(creds_provider_name(p), "p");
    CHECK_STR(creds_placeholder(p), PH);
    CHECK_STR(creds_env_var(p), ENV_OK);
    CHECK_STR(creds_inject_header(p), "Authorization");
    char *v = inject(p);
    CHECK_STR(v, "Bearer " SECRET);
    free(v);

    /* binding: exact hosts, case and trailing dot ignored, ports and ranges */
    CHECK(creds_binds(p, "api.github.com", 443));
    CHECK(creds_binds(p, "API.GITHUB.COM", 443));
    CHECK(creds_binds(p, "api.github.com.", 443));
    CHECK(!creds_binds(p, "api.github.com", 80));
    CHECK(!creds_binds(p, "github.com", 443));
    CHECK(!creds_binds(p, "x.api.github.com", 443));
    CHECK(!creds_binds(p, "api.github.com.evil", 443));
    CHECK(creds_binds(p, "uploads.github.com", 443));
    CHECK(creds_binds(p, "uploads.github.com", 8000));
    CHECK(creds_binds(p, "uploads.github.com", 8050));
    CHECK(creds_binds(p, "uploads.github.com", 8099));
    CHECK(!creds_binds(p, "uploads.github.com", 8100));
    CHECK(!creds_binds(p, "uploads.github.com", 7999));
    CHECK(creds_binds(p, "::1", 8443));
    CHECK(creds_binds(p, "[::1]", 8443));
    CHECK(!creds_binds(p, "::1", 443));

    creds_ref(c);
    creds_unref(c);
    creds_unref(c);
}

static void test_load_file(void)
{
    /* echo's newline is dropped, and "\r\n" as a whole */
    const char *lf = temp_file("tok-lf-x\n", 9);
    const char *crlf = temp_file("tok-crlf\r\n", 10);
    const char *bare = temp_file("tok-bare", 8);
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"version\": 1, \"providers\": {"
             "\"a\": {\"placeholder\": \"AIRLOCK_PLACEHOLDER_A_000001\", \"secret\": {\"file\": "
             "\"%s\"}, \"endpoints\": [{\"host\": \"a.example\", \"port\": 443}]},"
             "\"b\": {\"placeholder\": \"AIRLOCK_PLACEHOLDER_B_000002\", \"secret\": {\"file\": "
             "\"%s\"}, \"endpoints\": [{\"host\": \"b.example\", \"port\": 443}]},"
             "\"my-api.v2\": {\"placeholder\": \"AIRLOCK_PLACEHOLDER_C_000003\", \"secret\": "
             "{\"file\": \"%s\"}, \"endpoints\": [{\"host\": \"c.example\", \"port\": 443}]}}}",
             lf, crlf, bare);
    char *errors = NULL;
    struct creds *c = parse(json, &errors);
    /* "my-api.v2" is not a plain name */
    CHECK(c == NULL);
    CHECK(has_line(errors, "providers[\"my-api.v2\"]: provider names are"));
    free(errors);

    char *dot = strstr(json, "my-api.v2");
    memcpy(dot, "my-api_v2", 9);
    c = load_ok(json);
    if (!c)
        return;
    CHECK_EQ(creds_count(c), 3);
    char *v = inject(creds_at(c, 0));
    CHECK_STR(v, "tok-lf-x");
    free(v);
    v = inject(creds_at(c, 1));
    CHECK_STR(v, "tok-crlf");
    free(v);
    v = inject(creds_at(c, 2));
    CHECK_STR(v, "tok-bare");
    free(v);
    CHECK(creds_inject_header(creds_at(c, 0)) == NULL);
    CHECK_STR(creds_env_var(creds_at(c, 0)), "A_TOKEN");
    CHECK_STR(creds_env_var(creds_at(c, 2)), "MY_API_V2_TOKEN");
    creds_unref(c);

    /* creds_load_file, and its own read error */
    const char *file = temp_file(json, strlen(json));
    errors = NULL;
    c = creds_load_file(file, &errors);
    CHECK(c != NULL);
    CHECK(errors == NULL);
    creds_unref(c);
    c = creds_load_file("/nonexistent/providers.json", &errors);
    CHECK(c == NULL);
    CHECK(has_line(errors, "/nonexistent/providers.json: cannot read: "));
    free(errors);
}

static void test_secret_errors(void)
{
    char secret[256];

    /* embedded CR: one trailing newline is dropped, not an inner one */
    snprintf(secret, sizeof(secret), "{\"file\": \"%s\"}", temp_file("ab\rcd\n", 6));
    EXPECT_ERROR(doc(secret, ep443(), ""), "providers.p.secret: file \"/tmp/test_creds_");
    snprintf(secret, sizeof(secret), "{\"file\": \"%s\"}", temp_file("abcd\n\n", 6));
    EXPECT_ERROR(doc(secret, ep443(), ""), "providers.p.secret: file ");
    snprintf(secret, sizeof(secret), "{\"file\": \"%s\"}", temp_file("ab\0cd", 5));
    EXPECT_ERROR(doc(secret, ep443(), ""), "providers.p.secret: file ");
    setenv(ENV_BAD, "ab\ncd", 1);
    EXPECT_ERROR(doc("{\"env\": \"" ENV_BAD "\"}", ep443(), ""),
                 "providers.p.secret: environment variable " ENV_BAD " contains CR, LF or NUL");

    /* too short to tell from ordinary text */
    setenv(ENV_BAD, "s3cr3t!", 1);
    EXPECT_ERROR(doc("{\"env\": \"" ENV_BAD "\"}", ep443(), ""),
                 "providers.p.secret: environment variable " ENV_BAD " is shorter than 8 bytes");

    /* empty */
    setenv(ENV_BAD, "", 1);
    EXPECT_ERROR(doc("{\"env\": \"" ENV_BAD "\"}", ep443(), ""),
                 "providers.p.secret: environment variable " ENV_BAD " is empty");
    snprintf(secret, sizeof(secret), "{\"file\": \"%s\"}", temp_file("\n", 1));
    EXPECT_ERROR(doc(secret, ep443(), ""), "providers.p.secret: file ");

    /* missing */
    unsetenv(ENV_NO);
    EXPECT_ERROR(doc("{\"env\": \"" ENV_NO "\"}", ep443(), ""),
                 "providers.p.secret: environment variable " ENV_NO " is not set");
    EXPECT_ERROR(doc("{\"file\": \"/nonexistent/secret\"}", ep443(), ""),
                 "providers.p.secret: file \"/nonexistent/secret\": cannot read: ");
    EXPECT_ERROR(doc("{\"file\": \"/tmp\"}", ep443(), ""),
                 "providers.p.secret: file \"/tmp\": cannot read: not a regular file");
    EXPECT_ERROR(doc("{}", ep443(), ""), "providers.p.secret: needs \"env\" or \"file\"");
    EXPECT_ERROR(doc("{\"env\": \"A\", \"file\": \"/x\"}", ep443(), ""),
                 "providers.p.secret: give \"env\" or \"file\", not both");
    EXPECT_ERROR(doc("{\"env\": 3}", ep443(), ""), "providers.p.secret.env: must be the name");
    EXPECT_ERROR(doc("{\"env\": \"\"}", ep443(), ""), "providers.p.secret.env: must be the name");
    EXPECT_ERROR(doc("{\"file\": \"\"}", ep443(), ""), "providers.p.secret.file: must be a");
    EXPECT_ERROR(doc("{\"env\": \"" ENV_OK "\", \"enc\": 1}", ep443(), ""),
                 "providers.p.secret.enc: unknown key");
    EXPECT_ERROR(doc("\"literal\"", ep443(), ""), "providers.p.secret: must be {\"env\"");
    EXPECT_ERROR("{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": \"" PH "\", "
                 "\"endpoints\": [{\"host\": \"a.example\", \"port\": 1}]}}}",
                 "providers.p.secret: required");
}

/* Providers "a" and "b" with the given placeholders. */
static void two_providers(char *json, size_t cap, const char *a, const char *b)
{
    snprintf(json, cap,
             "{\"version\": 1, \"providers\": {"
             "\"a\": {\"placeholder\": \"%s\", \"secret\": {\"env\": \"" ENV_OK "\"}, "
             "\"endpoints\": [{\"host\": \"a.example\", \"port\": 443}]},"
             "\"b\": {\"placeholder\": \"%s\", \"secret\": {\"env\": \"" ENV_OK "\"}, "
             "\"endpoints\": [{\"host\": \"b.example\", \"port\": 443}]}}}",
             a, b);
}

static void test_placeholder_errors(void)
{
    EXPECT_ERROR("{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": \"SHORT_PH_123456\", "
                 "\"secret\": {\"env\": \"" ENV_OK "\"}, \"endpoints\": [{\"host\": "
                 "\"a.example\", \"port\": 1}]}}}",
                 "providers.p.placeholder: is 15 characters long; at least 16");
    EXPECT_ERROR(
        "{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": \"AIRLOCK PH 1234567\", "
        "\"secret\": {\"env\": \"" ENV_OK "\"}, \"endpoints\": [{\"host\": "
        "\"a.example\", \"port\": 1}]}}}",
        "providers.p.placeholder: may contain only letters, digits");
    EXPECT_ERROR("{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": 12345678901234567, "
                 "\"secret\": {\"env\": \"" ENV_OK "\"}, \"endpoints\": [{\"host\": "
                 "\"a.example\", \"port\": 1}]}}}",
                 "providers.p.placeholder: must be a string");
    EXPECT_ERROR("{\"version\": 1, \"providers\": {\"p\": {"
                 "\"secret\": {\"env\": \"" ENV_OK "\"}, \"endpoints\": [{\"host\": "
                 "\"a.example\", \"port\": 1}]}}}",
                 "providers.p.placeholder: required");

    char json[1024];
    two_providers(json, sizeof(json), PH, PH);
    EXPECT_ERROR(json, "providers.b.placeholder: is shared with provider \"a\"");
    two_providers(json, sizeof(json), PH "_2", PH);
    EXPECT_ERROR(json, "providers.b.placeholder: overlaps");
    two_providers(json, sizeof(json), PH, "AIRLOCK_PH_OTHER_000000");
    struct creds *c = load_ok(json);
    creds_unref(c);
}

static void test_endpoint_errors(void)
{
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"*.github.com\", \"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: wildcard hosts are not allowed for credentials");
    EXPECT_ERROR(doc(env_secret(),
                     "[{\"host\": \"api.github.com\", \"port\": 443}, {\"host\": \"api.*.com\", "
                     "\"port\": 443}]",
                     ""),
                 "providers.p.endpoints[1].host: wildcard hosts are not allowed for credentials");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a b\", \"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: \"a b\" is not a host name or IP address");
    /* target.h's host rules, as for the policy and for requests. */
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"-lead.example\", \"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: \"-lead.example\" is not a host name");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.0x1f\", \"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: \"a.0x1f\" is not a host name");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"0x7f\", \"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: \"0x7f\" is not a host name");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"010.0.0.1\", \"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: \"010.0.0.1\" is not a host name");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"\", \"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: must be a non-empty string");
    EXPECT_ERROR(doc(env_secret(), "[{\"port\": 443}]", ""),
                 "providers.p.endpoints[0].host: required");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\"}]", ""),
                 "providers.p.endpoints[0]: needs \"port\" or \"ports\"");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\", \"port\": 0}]", ""),
                 "providers.p.endpoints[0].port: must be an integer from 1 to 65535");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\", \"port\": 443.5}]", ""),
                 "providers.p.endpoints[0].port: must be an integer from 1 to 65535");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\", \"port\": \"443\"}]", ""),
                 "providers.p.endpoints[0].port: must be an integer from 1 to 65535");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\", \"port\": 1, \"ports\": [2]}]", ""),
                 "providers.p.endpoints[0].ports: give \"port\" or \"ports\", not both");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\", \"ports\": [443, \"9-1\"]}]", ""),
                 "providers.p.endpoints[0].ports[1]: \"9-1\" is not a \"LOW-HIGH\" range");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\", \"ports\": []}]", ""),
                 "providers.p.endpoints[0].ports: must be a non-empty array");
    EXPECT_ERROR(doc(env_secret(), "[{\"host\": \"a.example\", \"port\": 1, \"protocol\": 1}]", ""),
                 "providers.p.endpoints[0].protocol: unknown key");
    EXPECT_ERROR(doc(env_secret(), "[]", ""), "providers.p.endpoints: must be a non-empty array");
    EXPECT_ERROR(doc(env_secret(), "[\"a.example\"]", ""),
                 "providers.p.endpoints[0]: must be an object");
}

static void test_other_errors(void)
{
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"inject\": {\"format\": \"Bearer {secret}\"}"),
                 "providers.p.inject.header: required");
    EXPECT_ERROR(doc(env_secret(), ep443(),
                     ", \"inject\": {\"header\": \"Authorization\", "
                     "\"format\": \"Bearer {token}\"}"),
                 "providers.p.inject.format: must contain \"{secret}\"");
    EXPECT_ERROR(doc(env_secret(), ep443(),
                     ", \"inject\": {\"header\": \"X-Key\", "
                     "\"format\": \"{secret}\\r\\nX-Evil: 1\"}"),
                 "providers.p.inject.format: must not contain control characters");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"inject\": {\"header\": \"Bad Name\"}"),
                 "providers.p.inject.header: \"Bad Name\" is not a header field name");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"inject\": {\"header\": \"Content-Length\"}"),
                 "providers.p.inject.header: \"Content-Length\" frames the message");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"inject\": {\"header\": \"X\", \"fmt\": \"\"}"),
                 "providers.p.inject.fmt: unknown key");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"injection\": {}"),
                 "providers.p.injection: unknown key (allowed: placeholder, secret, endpoints, "
                 "inject, substitute_in)");

    EXPECT_ERROR("{\"version\": 2, \"providers\": {}}", "version: unsupported; must be 1");
    EXPECT_ERROR("{\"providers\": {}}", "version: required");
    EXPECT_ERROR("{\"version\": 1}", "providers: required");
    EXPECT_ERROR("{\"version\": 1, \"providers\": [], \"extra\": 1}", "extra: unknown key");
    EXPECT_ERROR("{\"version\": 1, \"providers\": []}", "providers: must be an object");
    EXPECT_ERROR("{\"version\": 1, \"providers\": {\"p\": 1}}", "providers.p: must be an object");
    EXPECT_ERROR("{\"version\": 1, \"providers\": {", "(root): invalid JSON near line 1");
    EXPECT_ERROR("[1]", "(root): must be an object");

    /* a duplicate provider name is an error, not a silent merge */
    EXPECT_ERROR("{\"version\": 1, \"providers\": {\"p\": {}, \"p\": {}}}",
                 "providers.p: duplicate key");

    /* every error is collected, not only the first */
    char *errors = NULL;
    unsetenv(ENV_NO);
    struct creds *c =
        parse("{\"version\": 3, \"providers\": {\"p\": {\"placeholder\": \"short\", "
              "\"secret\": {\"env\": \"" ENV_NO "\"}, \"endpoints\": [{\"host\": \"*.x.com\", "
              "\"port\": 70000}], \"bogus\": 1}}}",
              &errors);
    CHECK(c == NULL);
    CHECK(has_line(errors, "version: "));
    CHECK(has_line(errors, "providers.p.placeholder: "));
    CHECK(has_line(errors, "providers.p.secret: "));
    CHECK(has_line(errors, "providers.p.endpoints[0].host: "));
    CHECK(has_line(errors, "providers.p.endpoints[0].port: "));
    CHECK(has_line(errors, "providers.p.bogus: "));
    CHECK_EQ(count_lines(errors), 6);
    free(errors);

    /* errors == NULL is allowed */
    CHECK(creds_parse("{", 1, NULL) == NULL);
}

/* No error text carries a secret or any prefix of it, whatever else is wrong. */
static void test_no_secret_in_errors(void)
{
    char secret[256], *errors = NULL;
    struct creds *c;

    setenv(ENV_BAD, CANARY, 1);
    c = parse(doc("{\"env\": \"" ENV_BAD "\"}", "[{\"host\": \"*.x\", \"port\": 1}]", ""), &errors);
    CHECK(c == NULL && errors && strstr(errors, "CANARY") == NULL);
    free(errors);

    setenv(ENV_BAD, CANARY "\r\n", 1);
    c = parse(doc("{\"env\": \"" ENV_BAD "\"}", ep443(), ""), &errors);
    CHECK(c == NULL && errors && strstr(errors, "CANARY") == NULL);
    CHECK(errors && strstr(errors, ENV_BAD) != NULL);
    free(errors);

    snprintf(secret, sizeof(secret), "{\"file\": \"%s\"}",
             temp_file(CANARY "\r" CANARY, 2 * strlen(CANARY) + 1));
    c = parse(doc(secret, ep443(), ""), &errors);
    CHECK(c == NULL && errors && strstr(errors, "CANARY") == NULL);
    free(errors);

    /* the secret pasted where a reference or a placeholder belongs is not echoed either */
    c = parse(doc("\"" CANARY "\"", ep443(), ""), &errors);
    CHECK(c == NULL && errors && strstr(errors, "CANARY") == NULL);
    free(errors);
    c = parse("{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": \"" CANARY "!\", "
              "\"secret\": {\"env\": \"" ENV_OK "\"}, \"endpoints\": [{\"host\": "
              "\"a.example\", \"port\": 1}]}}}",
              &errors);
    CHECK(c == NULL && errors && strstr(errors, "CANARY") == NULL);
    free(errors);
}

/* ---- matching and substitution ---- */

static struct creds *github(void)
{
    return load_ok(
        doc(env_secret(), ep443(),
            ", \"inject\": {\"header\": \"Authorization\", \"format\": \"Bearer {secret}\"}"));
}

static void test_appears(void)
{
    struct creds *c = github();
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    char enc[256], text[512];

    CHECK(appears(p, PH));
    CHECK(appears(p, "token " PH " trailing"));
    CHECK(!appears(p, "AIRLOCK_PH_GITHUB_8f3a1"));
    CHECK(!appears(p, "AIRLOCK_PH_GITHUB_8F3A1C")); /* the placeholder itself is case-sensitive */
    CHECK(!appears(p, ""));
    CHECK(!creds_appears(p, NULL, 0));

    pct_all(PH, true, enc);
    CHECK(appears(p, enc));
    pct_all(PH, false, enc);
    CHECK(appears(p, enc));
    snprintf(text, sizeof(text), "/x?q=%s&y=1", enc);
    CHECK(appears(p, text));
    CHECK(appears(p, "AIRLOCK%5FPH_GITHUB%5f8f3a1c"));
    CHECK(appears(p, "%41IRLOCK_PH_GITHUB_8f3a1%63"));
    CHECK(appears(p, "%41%49RLOCK_PH_GITHUB_8f3a1%63"));
    CHECK(!appears(p, "%41IRLOCK_PH_GITHUB_8f3a1"));
    CHECK(!appears(p, "AIRLOCK%255FPH_GITHUB_8f3a1c")); /* decodes once to "%5F", not '_' */
    CHECK(!appears(p, "AIRLOCK%5GPH_GITHUB_8f3a1c"));
    CHECK(appears(p, "%%41IRLOCK_PH_GITHUB_8f3a1c")); /* a stray '%' then an escape */
    /* a raw occurrence that starts inside an escape: a header value is not decoded */
    CHECK(appears(p, "%4" PH));

    /* Basic: user:placeholder in base64, scheme in any case, padding optional */
    char b[256], v[300];
    b64("x-access-token:" PH, b);
    snprintf(v, sizeof(v), "Basic %s", b);
    CHECK(appears(p, v));
    snprintf(v, sizeof(v), "bASIC   %s  ", b);
    CHECK(appears(p, v));
    b64(PH ":x-oauth-basic", b);
    snprintf(v, sizeof(v), "Basic %s", b);
    CHECK(appears(p, v));
    b64("x-access-token:" PH "1", b); /* 40 bytes: base64 ends in "=" */
    CHECK(strchr(b, '=') != NULL);
    *strchr(b, '=') = '\0';
    snprintf(v, sizeof(v), "Basic %s", b);
    CHECK(appears(p, v));
    b64("user:password", b);
    snprintf(v, sizeof(v), "Basic %s", b);
    CHECK(!appears(p, v));
    snprintf(v, sizeof(v), "Bearer %s", b);
    CHECK(!appears(p, v));
    CHECK(!appears(p, "Basic !!!!"));
    CHECK(!appears(p, "Basic"));
    CHECK(!appears(p, "Basic "));
    CHECK(!appears(p, "Basic ="));
    creds_unref(c);
}

static void test_substitute(void)
{
    struct creds *c = github();
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    char enc[256], text[512], *r;

    r = subst(p, "/bot" PH "/sendMessage", CREDS_SECRET_PCT);
    CHECK_STR(r, "/botgh%26p%20s%2Fx%2By%3Dz/sendMessage");
    free(r);
    r = subst(p, "/bot" PH "/sendMessage", CREDS_REDACT);
    CHECK_STR(r, "/bot" CREDS_REDACTED "/sendMessage");
    free(r);
    r = subst(p, "/v1/x?token=" PH "&a=1", CREDS_SECRET_PCT);
    CHECK_STR(r, "/v1/x?token=gh%26p%20s%2Fx%2By%3Dz&a=1");
    free(r);
    r = subst(p, PH, CREDS_SECRET);
    CHECK_STR(r, SECRET);
    free(r);

    /* encoded forms: every one is replaced, with everything around it kept */
    pct_all(PH, false, enc);
    snprintf(text, sizeof(text), "/q?a=%s&b=" PH "&c=AIRLOCK%%5fPH%%5FGITHUB_8f3a1c#", enc);
    r = subst(p, text, CREDS_SECRET_PCT);
    CHECK_STR(r, "/q?a=gh%26p%20s%2Fx%2By%3Dz&b=gh%26p%20s%2Fx%2By%3Dz&c=gh%26p%20s%2Fx%2By%3Dz#");
    free(r);
    r = subst(p, text, CREDS_REDACT);
    CHECK_STR(r, "/q?a=[CREDENTIAL]&b=[CREDENTIAL]&c=[CREDENTIAL]#");
    free(r);
    pct_all(PH, true, enc);
    snprintf(text, sizeof(text), "%s%s", enc, PH);
    r = subst(p, text, CREDS_SECRET);
    CHECK_STR(r, SECRET SECRET);
    free(r);

    /* nothing to replace: unchanged, including near misses */
    r = subst(p, "/a%5F" PH "x", CREDS_REDACT);
    CHECK_STR(r, "/a%5F[CREDENTIAL]x");
    free(r);
    r = subst(p, "/AIRLOCK_PH_GITHUB_8f3a1/%zz%", CREDS_SECRET_PCT);
    CHECK_STR(r, "/AIRLOCK_PH_GITHUB_8f3a1/%zz%");
    free(r);
    r = subst(p, "%4" PH, CREDS_REDACT);
    CHECK_STR(r, "%4[CREDENTIAL]");
    free(r);

    /* headers: any scheme is text; Basic is decoded, substituted and re-encoded */
    r = subst_header(p, "Bearer " PH);
    CHECK_STR(r, "Bearer " SECRET);
    free(r);
    r = subst_header(p, "token " PH);
    CHECK_STR(r, "token " SECRET);
    free(r);
    r = subst_header(p, "Basic " PH); /* not base64 ('_'): the placeholder is the credential */
    CHECK_STR(r, "Basic " SECRET);
    free(r);

    char b[256], v[300], out[300];
    b64("x-access-token:" PH, b);
    snprintf(v, sizeof(v), "Basic %s", b);
    r = subst_header(p, v);
    CHECK(strncmp(r, "Basic ", 6) == 0);
    unb64(r + 6, out);
    CHECK_STR(out, "x-access-token:" SECRET);
    free(r);
    snprintf(v, sizeof(v), "basic %s", b);
    r = subst_header(p, v);
    CHECK(strncmp(r, "basic ", 6) == 0);
    unb64(r + 6, out);
    CHECK_STR(out, "x-access-token:" SECRET);
    free(r);
    b64(PH ":" PH, b);
    *strchr(b, '=') = '\0'; /* unpadded in, padded out */
    snprintf(v, sizeof(v), "Basic %s", b);
    r = subst_header(p, v);
    CHECK(r[strlen(r) - 1] == '=');
    unb64(r + 6, out);
    CHECK_STR(out, SECRET ":" SECRET);
    free(r);
    b64("user:password", b);
    snprintf(v, sizeof(v), "Basic %s", b);
    r = subst_header(p, v);
    CHECK_STR(r, v);
    free(r);

    /* appends go after what the buffer already holds */
    struct http_buf buf = {0};
    http_buf_puts(&buf, "Authorization: ");
    creds_substitute_header(p, "Bearer " PH, strlen("Bearer " PH), &buf);
    for (int i = 0; i < 100; i++)
        creds_substitute(p, "/" PH, strlen("/" PH), CREDS_SECRET, &buf);
    CHECK(!buf.failed);
    CHECK(strncmp(buf.data, "Authorization: Bearer " SECRET "/" SECRET "/", 39) == 0);
    CHECK_EQ(buf.len, strlen("Authorization: Bearer " SECRET) + 100 * (1 + strlen(SECRET)));
    creds_buf_wipe(&buf);
    CHECK(buf.data == NULL && buf.len == 0);
    creds_unref(c);
}

static void test_inject_and_echo(void)
{
    struct creds *c = load_ok(doc(env_secret(), ep443(),
                                  ", \"inject\": {\"header\": \"X-Api-Key\", \"format\": "
                                  "\"k={secret};again={secret}\"}"));
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    char *v = inject(p);
    CHECK_STR(v, "k=" SECRET ";again=" SECRET);
    free(v);
    CHECK_STR(creds_inject_header(p), "X-Api-Key");
    creds_unref(c);

    c = load_ok(doc(env_secret(), ep443(), ", \"inject\": {\"header\": \"X-Api-Key\"}"));
    if (!c)
        return;
    p = creds_at(c, 0);
    v = inject(p);
    CHECK_STR(v, SECRET);
    free(v);

    /* an upstream echoing the secret back: raw, JSON-escaped ('/' as "\/"), percent-encoded
     * with lower-case hex and '+' for the space, and in a header as Basic credentials */
    const struct creds_provider *used[] = {p};
    const char *body = "{\"token\": \"" SECRET "\", \"json\": \"gh&p s\\/x+y=z\", "
                       "\"url\": \"gh%26p+s%2fx%2By%3dz\"}";
    struct http_buf b = {0};
    creds_redact_text(used, 1, body, strlen(body), &b);
    CHECK_STR(b.data, "{\"token\": \"" PH "\", \"json\": \"" PH "\", \"url\": \"" PH "\"}");
    http_buf_free(&b);
    creds_redact_text(used, 1, "no secret", 9, &b);
    CHECK_STR(b.data, "no secret");
    http_buf_free(&b);
    char basic[128], want[128], got[128];
    strcpy(basic, "Basic ");
    b64("user:" SECRET, basic + 6);
    creds_redact_field(used, 1, basic, strlen(basic), &b);
    CHECK(b.data && strncmp(b.data, "Basic ", 6) == 0);
    if (b.data && strncmp(b.data, "Basic ", 6) == 0) {
        unb64(b.data + 6, got);
        strcpy(want, "user:" PH);
        CHECK_STR(got, want);
    }
    http_buf_free(&b);
    creds_unref(c);
}

static bool is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static bool is_escape(const char *s, size_t len, size_t i)
{
    return s[i] == '%' && i + 2 < len && is_hex(s[i + 1]) && is_hex(s[i + 2]);
}

/* Reference matcher: a raw occurrence anywhere, or, from each position that is not inside an
 * escape, the decoded tokens compared one by one (quadratic, obviously right). */
static bool naive_appears(const char *ph, const char *s, size_t len)
{
    size_t n = strlen(ph);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(s + i, ph, n) == 0)
            return true;
    }
    for (size_t i = 0; i < len; i++) {
        if ((i >= 1 && is_escape(s, len, i - 1)) || (i >= 2 && is_escape(s, len, i - 2)))
            continue;
        size_t j = i, k = 0;
        while (k < n && j < len) {
            unsigned long ch = (unsigned char)s[j];
            if (is_escape(s, len, j)) {
                char hex[3] = {s[j + 1], s[j + 2], 0};
                ch = strtoul(hex, NULL, 16);
                j += 3;
            } else {
                j++;
            }
            if (ch != (unsigned char)ph[k])
                break;
            k++;
        }
        if (k == n)
            return true;
    }
    return false;
}

/* A self-overlapping placeholder against random mixes of raw and encoded bytes exercises the
 * KMP fallbacks; the reference matcher decides. */
static void test_matcher_random(void)
{
    struct creds *c = load_ok("{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": "
                              "\"abababababababac\", \"secret\": {\"env\": \"" ENV_OK "\"}, "
                              "\"endpoints\": [{\"host\": \"a.example\", \"port\": 443}]}}}");
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    /* mostly 'a' and 'b', so that near-matches are common */
    static const char *const pieces[] = {"abab",   "abab", "ababab", "%61b", "a%62",
                                         "ab%61b", "ac",   "a%63",   "%61",  "b",
                                         "c",      "%6",   "%",      "6",    "1"};
    unsigned seed = 12345;
    int found = 0, mismatches = 0;
    for (int t = 0; t < 20000; t++) {
        char s[256];
        size_t len = 0;
        int npieces = 10 + (int)(seed % 30);
        for (int i = 0; i < npieces; i++) {
            seed = seed * 1103515245u + 12345u;
            const char *piece = pieces[(seed >> 16) % (sizeof(pieces) / sizeof(pieces[0]))];
            size_t pl = strlen(piece);
            memcpy(s + len, piece, pl);
            len += pl;
        }
        s[len] = '\0';
        bool want = naive_appears("abababababababac", s, len);
        bool got = creds_appears(p, s, len);
        found += want;
        if (want != got && mismatches++ < 5)
            fprintf(stderr, "matcher mismatch on \"%s\": want %d\n", s, want);
        /* REDACT must leave no occurrence behind that the reference still finds */
        struct http_buf b = {0};
        creds_substitute(p, s, len, CREDS_REDACT, &b);
        if (want != (b.data && strstr(b.data, CREDS_REDACTED) != NULL) && mismatches++ < 5)
            fprintf(stderr, "substitute mismatch on \"%s\"\n", s);
        http_buf_free(&b);
    }
    CHECK_EQ(mismatches, 0);
    CHECK(found > 1000);
    CHECK(found < 19000);
    creds_unref(c);
}

/* Long inputs stay linear: a megabyte of near-misses completes at once. */
static void test_matcher_long(void)
{
    struct creds *c = github();
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    size_t len = 1 << 20;
    char *s = malloc(len + 1);
    for (size_t i = 0; i < len; i += 3)
        memcpy(s + i, "%41", len - i < 3 ? len - i : 3);
    s[len] = '\0';
    CHECK(!creds_appears(p, s, len));
    struct http_buf b = {0};
    creds_substitute(p, s, len, CREDS_SECRET_PCT, &b);
    CHECK_EQ(b.len, len);
    http_buf_free(&b);
    memcpy(s + len - 100, PH, strlen(PH));
    CHECK(creds_appears(p, s, len));
    free(s);
    creds_unref(c);
}

/* A placeholder that arrives split across two reads (two TCP segments, two TLS records) is
 * still found and substituted: heads are assembled whole by the http module before any
 * credential is looked for. Every split point inside the head is tried. */
static int split_on_head(void *owner, struct http_head *head)
{
    struct http_head **out = owner;
    http_head_free(*out);
    *out = head;
    return HTTP_HEAD_CONTINUE;
}

static int split_on_body(void *owner, const char *p, size_t len)
{
    return 0;
}

static int split_on_complete(void *owner, const struct http_head *trailers)
{
    return 0;
}

static void test_placeholder_split_across_reads(void)
{
    struct creds *c = load_ok(doc(env_secret(), ep443(), ""));
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    static const struct http_parser_cbs cbs = {split_on_head, split_on_body, split_on_complete};
    static const char req[] = "GET /bot" PH "/send HTTP/1.1\r\nHost: api.github.com\r\n"
                              "Authorization: Bearer " PH "\r\n\r\n";
    size_t len = sizeof req - 1;
    size_t ok = 0;
    for (size_t split = 1; split < len; split++) {
        struct http_head *head = NULL;
        struct http_parser hp;
        http_parser_init(&hp, HTTP_KIND_REQUEST, &cbs, &head);
        size_t used = 0;
        http_parser_execute(&hp, req, split, &used);
        http_parser_execute(&hp, req + split, len - split, &used);
        const struct http_field *auth = head ? http_head_find(head, "authorization") : NULL;
        if (auth && creds_appears(p, auth->value, auth->value_len) &&
            creds_appears(p, head->target, head->target_len)) {
            struct http_buf b = {0};
            creds_substitute_header(p, auth->value, auth->value_len, &b);
            if (b.data && b.len == strlen("Bearer " SECRET) &&
                memcmp(b.data, "Bearer " SECRET, b.len) == 0)
                ok++;
            creds_buf_wipe(&b);
        }
        http_head_free(head);
        http_parser_deinit(&hp);
    }
    CHECK_EQ(ok, len - 1);
    creds_unref(c);
}

/* ---- substitute_in ---- */

static void test_substitute_in_errors(void)
{
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": []"),
                 "providers.p.substitute_in: must be a non-empty array of \"header:NAME\"");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": \"path\""),
                 "providers.p.substitute_in: must be a non-empty array");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"path\", 3]"),
                 "providers.p.substitute_in[1]: must be a string");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"cookie\"]"),
                 "providers.p.substitute_in[0]: \"cookie\" is not one of \"header:NAME\"");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"body\"]"),
                 "providers.p.substitute_in[0]: placeholders are never substituted in a request "
                 "body");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"header:\"]"),
                 "providers.p.substitute_in[0]: \"\" is not a header field name");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"header:X Key\"]"),
                 "providers.p.substitute_in[0]: \"X Key\" is not a header field name");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"header:Host\"]"),
                 "providers.p.substitute_in[0]: \"Host\" frames the message or is hop-by-hop");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"path\", \"query:a&b\"]"),
                 "providers.p.substitute_in[1]: \"a&b\" is not a query parameter name");
    EXPECT_ERROR(doc(env_secret(), ep443(), ", \"substitute_in\": [\"query:\"]"),
                 "providers.p.substitute_in[0]: \"\" is not a query parameter name");
}

/* A request head as the parser would hand it over. */
static struct http_head *head_of(const char *target, const char *const *fields, size_t n,
                                 struct http_field *store)
{
    static struct http_head h;
    memset(&h, 0, sizeof h);
    h.is_request = true;
    h.target = target;
    h.target_len = strlen(target);
    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(fields[i], ':');
        store[i] = (struct http_field){fields[i], (size_t)(colon - fields[i]), colon + 2,
                                       strlen(colon + 2)};
    }
    h.fields = store;
    h.nfields = n;
    return &h;
}

static const char *misplaced(const struct creds_provider *p, const char *target, const char *field)
{
    struct http_field store[2];
    const char *fields[] = {"Accept: */*", field};
    return creds_misplaced(p, head_of(target, fields, field ? 2 : 1, store));
}

static void test_substitute_in(void)
{
    struct creds *c = load_ok(doc(env_secret(), ep443(),
                                  ", \"substitute_in\": [\"header:Authorization\", "
                                  "\"query:api_key\"], \"inject\": {\"header\": \"X-Injected\"}"));
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    char basic[128];
    strcpy(basic, "Authorization: Basic ");
    b64("u:" PH, basic + strlen(basic));

    /* listed places, in any encoding */
    CHECK(misplaced(p, "/x", "Authorization: Bearer " PH) == NULL);
    CHECK(misplaced(p, "/x", "authorization: token " PH) == NULL);
    CHECK(misplaced(p, "/x", basic) == NULL);
    CHECK(misplaced(p, "/x?api_key=" PH "&q=1", NULL) == NULL);
    CHECK(misplaced(p, "/x?q=1&api%5Fkey=%41IRLOCK_PH_GITHUB_8f3a1c", NULL) == NULL);
    CHECK(misplaced(p, "/x", "X-Injected: " PH) == NULL); /* replaced whole by inject */
    CHECK(misplaced(p, "/x?q=1", NULL) == NULL);          /* no placeholder at all */

    /* anywhere else */
    CHECK_STR(misplaced(p, "/x", "X-Api-Key: " PH), "a header field that substitute_in does "
                                                    "not list");
    CHECK_STR(misplaced(p, "/bot" PH "/send", NULL), "the path");
    CHECK_STR(misplaced(p, "/bot%41IRLOCK_PH_GITHUB_8f3a1c/send", NULL), "the path");
    CHECK_STR(misplaced(p, "/x?other=" PH, NULL),
              "a query parameter that substitute_in does not list");
    CHECK_STR(misplaced(p, "/x?api_key=1&" PH "=1", NULL), "a query parameter name");
    CHECK_STR(misplaced(p, "/x?api_keys=" PH, NULL),
              "a query parameter that substitute_in does not list");
    /* ';' separates parameters for many servers: note=<ph> is not api_key's value */
    CHECK_STR(misplaced(p, "/x?api_key=1;note=" PH, NULL),
              "a query parameter that substitute_in does not list");
    creds_unref(c);

    /* wildcards and the path */
    c = load_ok(doc(env_secret(), ep443(), ", \"substitute_in\": [\"header:*\", \"path\"]"));
    if (!c)
        return;
    p = creds_at(c, 0);
    CHECK(misplaced(p, "/bot" PH "/send", "X-Anything: " PH) == NULL);
    CHECK_STR(misplaced(p, "/x?k=" PH, NULL), "a query parameter that substitute_in does not list");
    creds_unref(c);
    c = load_ok(doc(env_secret(), ep443(), ", \"substitute_in\": [\"query:*\"]"));
    if (!c)
        return;
    p = creds_at(c, 0);
    CHECK(misplaced(p, "/x?a=" PH "&b=" PH, NULL) == NULL);
    CHECK_STR(misplaced(p, "/x?a=" PH, "X-Key: " PH), "a header field that substitute_in does "
                                                      "not list");
    creds_unref(c);

    /* without substitute_in, anywhere goes (today's behaviour) */
    c = load_ok(doc(env_secret(), ep443(), ""));
    if (!c)
        return;
    CHECK(misplaced(creds_at(c, 0), "/bot" PH "?k=" PH, "X-Key: " PH) == NULL);
    creds_unref(c);
}

/* ---- environment ---- */

#define ENV_SCRUB    "AIRLOCK_TEST_SECRET_SCRUB"
#define SCRUB_SECRET "scrub-me-7f2e9a41c0"

/* An env secret is copied out and scrubbed from the environment (its bytes too, which is what
 * /proc/PID/environ shows); a reload with the variable gone keeps the captured value. */
static void test_env_secret_scrubbed(void)
{
    setenv(ENV_SCRUB, SCRUB_SECRET, 1);
    char *bytes = getenv(ENV_SCRUB); /* setenv's string: glibc never frees it */
    CHECK(bytes != NULL);
    struct creds *c = load_ok(
        doc("{\"env\": \"" ENV_SCRUB "\"}", ep443(), ", \"inject\": {\"header\": \"X-Key\"}"));
    if (!c)
        return;
    CHECK(getenv(ENV_SCRUB) == NULL);
    CHECK(bytes && memcmp(bytes, SCRUB_SECRET, strlen(SCRUB_SECRET)) != 0);
    extern char **environ;
    for (char **e = environ; *e; e++)
        CHECK(strstr(*e, SCRUB_SECRET) == NULL);
    char *v = inject(creds_at(c, 0));
    CHECK_STR(v, SCRUB_SECRET);
    free(v);
    creds_unref(c);

    /* the reload: the variable is gone, the captured value stays */
    c = load_ok(
        doc("{\"env\": \"" ENV_SCRUB "\"}", ep443(), ", \"inject\": {\"header\": \"X-Key\"}"));
    if (!c)
        return;
    v = inject(creds_at(c, 0));
    CHECK_STR(v, SCRUB_SECRET);
    free(v);
    creds_unref(c);

    /* set again in the process (a test can; nothing outside can), the new value wins */
    setenv(ENV_SCRUB, "rotated-value-0123", 1);
    c = load_ok(
        doc("{\"env\": \"" ENV_SCRUB "\"}", ep443(), ", \"inject\": {\"header\": \"X-Key\"}"));
    if (!c)
        return;
    v = inject(creds_at(c, 0));
    CHECK_STR(v, "rotated-value-0123");
    free(v);
    CHECK(getenv(ENV_SCRUB) == NULL);
    creds_unref(c);
}

/* ---- wiping ---- */

/* Every realloc and free in this program passes through here: while `watching`, a block that
 * still holds the secret when it is reallocated (its old copy is left behind) or freed counts
 * as a leak. */
static bool watching;
static int leaked_blocks;

/* Not instrumented: ASan itself frees before its shadow memory exists. */
#define NO_SANITIZE __attribute__((no_sanitize("address", "undefined")))

NO_SANITIZE static bool holds_secret(void *p)
{
    return watching && p && memmem(p, malloc_usable_size(p), SECRET, strlen(SECRET)) != NULL;
}

/* The next free and realloc: ASan's interceptors in a sanitizer build (dlsym would recurse into
 * free there, clearing an error string ASan left), libc's otherwise. */
extern void __interceptor_free(void *p) __attribute__((weak));
extern void *__interceptor_realloc(void *p, size_t n) __attribute__((weak));

NO_SANITIZE void free(void *p)
{
    static void (*real_free)(void *);
    if (!real_free)
        real_free =
            __interceptor_free ? __interceptor_free : (void (*)(void *))dlsym(RTLD_NEXT, "free");
    if (holds_secret(p))
        leaked_blocks++;
    real_free(p);
}

NO_SANITIZE void *realloc(void *p, size_t n)
{
    static void *(*real_realloc)(void *, size_t);
    if (!real_realloc)
        real_realloc = __interceptor_realloc
                           ? __interceptor_realloc
                           : (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    if (holds_secret(p))
        leaked_blocks++;
    return real_realloc(p, n);
}

/* Buffers that held the secret are wiped before they are grown or freed: a request head
 * rebuilt around an injected secret (flagged up front, as relay.c does), every substitution,
 * and the redactor's held-back bytes. */
static void test_secret_blocks_wiped(void)
{
    struct creds *c = load_ok(doc(env_secret(), ep443(), ", \"inject\": {\"header\": \"X-K\"}"));
    if (!c)
        return;
    const struct creds_provider *p = creds_at(c, 0);
    const struct creds_provider *used[] = {p};
    char basic[128];
    strcpy(basic, "Basic ");
    b64("user:" PH, basic + 6);

    leaked_blocks = 0;
    watching = true;
    struct http_buf head = {.wipe = true};
    http_buf_puts(&head, "GET /x HTTP/1.1\r\nX-K: ");
    creds_inject_value(p, &head);
    for (int i = 0; i < 200; i++) /* grows the block many times with the secret inside */
        http_buf_puts(&head, "\r\nX-Filler: 0123456789abcdef0123456789abcdef");
    creds_substitute_header(p, basic, strlen(basic), &head);
    creds_substitute(p, "/a/" PH "/b", 3 + strlen(PH) + 2, CREDS_SECRET_PCT, &head);
    creds_buf_wipe(&head);

    struct http_buf out = {0};
    struct redactor *r = creds_redactor(used, 1);
    redact_feed(r, "x gh&p s/x", 10, &out); /* most of the secret, held back */
    redact_free(r);
    http_buf_free(&out);
    watching = false;
    CHECK_EQ(leaked_blocks, 0);
    creds_unref(c);
}

int main(void)
{
    setenv(ENV_OK, SECRET, 1);
    RUN(test_load_env);
    RUN(test_load_file);
    RUN(test_secret_errors);
    RUN(test_placeholder_errors);
    RUN(test_endpoint_errors);
    RUN(test_other_errors);
    RUN(test_no_secret_in_errors);
    RUN(test_appears);
    RUN(test_substitute);
    RUN(test_inject_and_echo);
    RUN(test_matcher_random);
    RUN(test_matcher_long);
    RUN(test_placeholder_split_across_reads);
    RUN(test_substitute_in_errors);
    RUN(test_substitute_in);
    RUN(test_env_secret_scrubbed);
    RUN(test_secret_blocks_wiped);
    cleanup();
    return test_report();
}
