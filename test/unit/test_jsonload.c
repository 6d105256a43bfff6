/* SPDX-License-Identifier: MIT */
/* Unit tests for jsonload: JSON paths, error collection and its cap, quoting of hostile text,
 * key checks, integers, ports and ranges, and parse errors. */
#include "airlock/jsonload.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static char *finish(struct jsonload *j)
{
    char *errors = NULL;
    jsonload_finish(j, &errors);
    return errors;
}

static void test_paths(void)
{
    struct jsonload j;
    jsonload_init(&j, true);
    size_t root = jsonload_key(&j, "network_policies");
    size_t a = jsonload_key(&j, "github");
    size_t b = jsonload_key(&j, "endpoints");
    jsonload_index(&j, 1);
    jsonload_fail_at(&j, "host", "wildcard %s", "\"*.com\"");
    jsonload_pop(&j, b);
    CHECK_STR(j.path, "network_policies.github");
    jsonload_pop(&j, a);
    jsonload_key(&j, "odd key\n");
    jsonload_fail(&j, "bad");
    jsonload_pop(&j, root);
    CHECK_EQ(j.path_len, 0);
    char *errors = finish(&j);
    CHECK_STR(errors, "network_policies.github.endpoints[1].host: wildcard \"*.com\"\n"
                      "network_policies[\"odd key\\x0a\"]: bad\n");
    free(errors);
}

static void test_cap_and_ok(void)
{
    struct jsonload j;
    jsonload_init(&j, true);
    for (int i = 0; i < 150; i++)
        jsonload_fail(&j, "e%d", i);
    char *errors = finish(&j);
    size_t lines = 0;
    for (const char *c = errors; c && *c; c++)
        lines += *c == '\n';
    CHECK_EQ(lines, JSONLOAD_MAX_ERRORS + 1);
    CHECK(errors && strstr(errors, "... and 50 more errors\n") != NULL);
    free(errors);

    jsonload_init(&j, true);
    errors = (char *)"untouched";
    CHECK(jsonload_finish(&j, &errors));
}

static void test_show_and_words(void)
{
    char buf[JSONLOAD_SHOW_MAX];
    CHECK_STR(jsonload_show(buf, "a\"b\\c\x01"), "a\\\"b\\\\c\\x01");
    char longs[300];
    memset(longs, 'x', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    jsonload_show(buf, longs);
    CHECK(strlen(buf) < JSONLOAD_SHOW_MAX);
    CHECK(strstr(buf, "...") != NULL);
    CHECK(jsonload_is_word("github_api-2"));
    CHECK(!jsonload_is_word(""));
    CHECK(!jsonload_is_word("a.b"));
}

static void test_keys_ints_ports(void)
{
    struct jsonload j;
    jsonload_init(&j, true);
    cJSON *o = jsonload_parse(&j, "{\"port\":443,\"port\":80,\"typo\":1}", 31);
    CHECK(o != NULL);
    static const char *const allowed[] = {"port", "ports", NULL};
    jsonload_check_keys(&j, o, allowed, 16);
    cJSON_Delete(o);
    char *errors = finish(&j);
    CHECK(errors && strstr(errors, "duplicate key") != NULL);
    CHECK(errors && strstr(errors, "typo") != NULL);
    free(errors);

    long v;
    cJSON *n = cJSON_CreateNumber(443);
    CHECK(jsonload_int(n, 1, 65535, &v) && v == 443);
    cJSON_SetNumberValue(n, 1.5);
    CHECK(!jsonload_int(n, 1, 65535, &v));
    cJSON_SetNumberValue(n, 70000);
    CHECK(!jsonload_int(n, 1, 65535, &v));
    cJSON_Delete(n);

    jsonload_init(&j, true);
    const char *doc = "{\"ports\":[443,\"8000-8099\"]}";
    o = jsonload_parse(&j, doc, strlen(doc));
    struct jsonload_range *r = NULL;
    size_t nr = jsonload_ports(&j, o, &r);
    CHECK_EQ(nr, 2);
    if (nr == 2) {
        CHECK(r[0].lo == 443 && r[0].hi == 443);
        CHECK(r[1].lo == 8000 && r[1].hi == 8099);
    }
    free(r);
    cJSON_Delete(o);
    CHECK(jsonload_finish(&j, NULL));

    jsonload_init(&j, true);
    doc = "{\"ports\":[\"99-1\", 0]}";
    o = jsonload_parse(&j, doc, strlen(doc));
    r = NULL;
    jsonload_ports(&j, o, &r);
    free(r);
    cJSON_Delete(o);
    errors = finish(&j);
    CHECK(errors && strstr(errors, "ports[0]") != NULL);
    CHECK(errors && strstr(errors, "ports[1]") != NULL);
    free(errors);
}

static void test_parse_errors(void)
{
    struct jsonload j;
    jsonload_init(&j, true);
    CHECK(jsonload_parse(&j, "{\n  \"a\": ,\n}", 12) == NULL);
    char *errors = finish(&j);
    CHECK(errors && strstr(errors, "invalid JSON near line 2") != NULL);
    free(errors);

    static const char nul[] = "{}\0{}";
    jsonload_init(&j, true);
    CHECK(jsonload_parse(&j, nul, sizeof nul - 1) == NULL);
    errors = finish(&j);
    CHECK(errors && strstr(errors, "NUL") != NULL);
    free(errors);
}

/* The one file reader of the policy and providers loaders. */
static void test_read_file(void)
{
    char path[] = "/tmp/airlock-test-jsonload-XXXXXX";
    char *errors = NULL, *text;
    size_t len = 99;
    int fd = mkstemp(path);

    CHECK(fd >= 0);
    CHECK_EQ(write(fd, "{\"a\":1}", 7), 7);
    close(fd);
    text = jsonload_read_file(path, 1u << 20, &len, &errors);
    CHECK(text != NULL && errors == NULL);
    CHECK_EQ(len, 7);
    if (text)
        CHECK_STR(text, "{\"a\":1}");
    free(text);

    text = jsonload_read_file(path, 6, &len, &errors);
    CHECK(text == NULL);
    CHECK(errors && strstr(errors, ": cannot read: larger than 6 bytes\n"));
    free(errors);
    text = jsonload_read_file(path, 0, &len, NULL); /* errors may be NULL */
    CHECK(text == NULL);
    unlink(path);

    errors = NULL;
    CHECK(jsonload_read_file(path, 1u << 20, &len, &errors) == NULL);
    CHECK(errors && strstr(errors, ": cannot read: No such file or directory\n"));
    free(errors);
    errors = NULL;
    CHECK(jsonload_read_file("/tmp", 1u << 20, &len, &errors) == NULL);
    CHECK(errors && strstr(errors, "/tmp: cannot read: not a regular file\n"));
    free(errors);
    /* fstat says 0 bytes, the read returns more: a file that grew while it was read. */
    errors = NULL;
    CHECK(jsonload_read_file("/proc/self/status", 1u << 20, &len, &errors) == NULL);
    CHECK(errors && strstr(errors, "cannot read: changed while being read\n"));
    free(errors);
    errors = NULL;
    CHECK(jsonload_read_file("/proc/self/status", 16u << 20, &len, &errors) == NULL);
    free(errors);
}

int main(void)
{
    RUN(test_paths);
    RUN(test_cap_and_ok);
    RUN(test_show_and_words);
    RUN(test_keys_ints_ports);
    RUN(test_parse_errors);
    RUN(test_read_file);
    return test_report();
}
