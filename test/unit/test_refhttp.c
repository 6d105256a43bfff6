/* SPDX-License-Identifier: MIT */
/* Unit test for the fuzzers' reference HTTP/1.1 parser (test/fuzz/refhttp.c): it must read the
 * canonical messages a relay writes, and refuse what a sender must not generate. */
#include "../fuzz/refhttp.h"

#include <string.h>

#include "test.h"

static void parse_req(const char *s, struct ref_stream *out)
{
    ref_parse_requests((const uint8_t *)s, strlen(s), out);
}

static void test_requests(void)
{
    struct ref_stream st;

    parse_req("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
              "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
              "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
              "2\r\nxy\r\n1\r\nz\r\n0\r\nT: 1\r\n\r\n",
              &st);
    CHECK(st.error == NULL && !st.truncated);
    CHECK_EQ(st.nmsgs, 3);
    if (st.nmsgs == 3) {
        CHECK_STR(st.msgs[0].method, "GET");
        CHECK_STR(st.msgs[0].target, "/a");
        CHECK_EQ(st.msgs[0].body_len, 0);
        CHECK_EQ(st.msgs[1].body_len, 3);
        CHECK(memcmp(st.msgs[1].body, "abc", 3) == 0);
        CHECK(st.msgs[2].chunked);
        CHECK_EQ(st.msgs[2].body_len, 3);
        CHECK(memcmp(st.msgs[2].body, "xyz", 3) == 0);
        CHECK_EQ(st.msgs[2].ntrailers, 1);
        CHECK_STR(ref_field(&st.msgs[2], "transfer-encoding"), "gzip, chunked");
    }
    ref_stream_free(&st);

    /* a stream cut inside a body is truncated, not an error */
    parse_req("POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc", &st);
    CHECK(st.error == NULL && st.truncated && st.nmsgs == 0);
    ref_stream_free(&st);

    static const char *const bad[] = {
        "GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /a HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET /a HTTP/1.1\r\nX: 1\r\n\r\n",
        "GET /a HTTP/1.0\r\nHost: h\r\n\r\n",
        "GET /a HTTP/1.1\nHost: h\r\n\r\n",
        "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;e=1\r\nx\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        parse_req(bad[i], &st);
        CHECK(st.error != NULL);
        if (!st.error)
            fprintf(stderr, "  bad request %zu accepted\n", i);
        ref_stream_free(&st);
    }
}

static void test_responses(void)
{
    static const char *const methods[] = {"GET", "HEAD", "GET", "GET"};
    static const char stream[] = "HTTP/1.1 100 Continue\r\n\r\n"
                                 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                                 "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
                                 "HTTP/1.1 204 No Content\r\n\r\n"
                                 "HTTP/1.1 200 OK\r\n\r\nuntil the end";
    struct ref_stream st;

    ref_parse_responses((const uint8_t *)stream, strlen(stream), methods, 4, &st);
    CHECK(st.error == NULL);
    CHECK_EQ(st.nmsgs, 5);
    if (st.nmsgs == 5) {
        CHECK_EQ(st.msgs[0].status, 100);
        CHECK_EQ(st.msgs[1].body_len, 2);
        CHECK_EQ(st.msgs[2].body_len, 0); /* answers HEAD */
        CHECK_EQ(st.msgs[3].status, 204);
        CHECK(st.msgs[4].close_framed);
        CHECK_EQ(st.msgs[4].body_len, strlen("until the end"));
    }
    ref_stream_free(&st);

    /* a 101 ends HTTP: raw bytes follow */
    static const char up[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
    ref_parse_responses((const uint8_t *)up, sizeof up - 1, methods, 1, &st);
    CHECK(st.error == NULL && st.nmsgs == 1 && st.upgraded_at == sizeof up - 3);
    ref_stream_free(&st);

    static const char badstatus[] = "HTTP/1.1 20 OK\r\n\r\n";
    ref_parse_responses((const uint8_t *)badstatus, sizeof badstatus - 1, methods, 1, &st);
    CHECK(st.error != NULL);
    ref_stream_free(&st);
}

int main(void)
{
    RUN(test_requests);
    RUN(test_responses);
    return test_report();
}
