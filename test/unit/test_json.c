/* SPDX-License-Identifier: MIT */
/* Unit tests for json: the one JSON string escaper, on every kind of byte it can meet. */
#include "airlock/json.h"

#include <stdlib.h>
#include <string.h>

#include "test.h"

static void test_escape_cases(void)
{
    static const struct {
        const char *in;
        size_t len;
        const char *want;
    } cases[] = {
        {"plain /path?q=1", 15, "plain /path?q=1"},
        {"a\"b\\c", 5, "a\\\"b\\\\c"},
        {"\n\r\t", 3, "\\n\\r\\t"},
        {"\x01\x1f\x7f", 3, "\\u0001\\u001f\\u007f"},
        {"\0x", 2, "\\u0000x"},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9"},                 /* valid UTF-8 kept */
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},       /* four bytes */
        {"\xff", 1, "\\ufffd"},                            /* invalid byte */
        {"\xc0\xaf", 2, "\\ufffd\\ufffd"},                 /* overlong '/' */
        {"\xed\xa0\x80", 3, "\\ufffd\\ufffd\\ufffd"},      /* surrogate */
        {"\xc3", 1, "\\ufffd"},                            /* cut by len */
        {"\xe2\x82\xacz", 2, "\\ufffd\\ufffd"},            /* cut by len mid-sequence */
        {"\xc2\x9b", 2, "\\u009b"},                        /* C1 CSI */
        {"\xe2\x80\xa8\xe2\x80\xa9", 6, "\\u2028\\u2029"}, /* JavaScript line ends */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct http_buf b = {0};
        json_escape_append(&b, cases[i].in, cases[i].len);
        http_buf_append(&b, "", 1);
        CHECK(!b.failed);
        if (b.data)
            CHECK_STR(b.data, cases[i].want);
        http_buf_free(&b);
    }
}

static void test_string_and_buf(void)
{
    struct http_buf b = {0};
    char out[16];
    size_t w = 0;

    json_string_append(&b, "say \"hi\"\n");
    http_buf_append(&b, "", 1);
    CHECK_STR(b.data, "\"say \\\"hi\\\"\\n\"");
    http_buf_free(&b);

    CHECK(json_escape_buf(out, sizeof(out), &w, "a\"b", 3));
    CHECK_EQ(w, 4);
    CHECK_STR(out, "a\\\"b");
    /* Does not fit: false, and what is there stays a string of whole characters. */
    CHECK(!json_escape_buf(out, sizeof(out), &w, "\x01\x02", 2));
    CHECK_EQ(w, 10);
    CHECK_STR(out, "a\\\"b\\u0001");
}

int main(void)
{
    RUN(test_escape_cases);
    RUN(test_string_and_buf);
    return test_report();
}
