/* SPDX-License-Identifier: MIT */
/* Unit tests for the relay as a forward proxy, driven in memory: an absolute-form https://
 * request asks for a TLS upstream (RELAY_DIAL with tls) to port 443 by default, the scheme is
 * part of the origin (a switch asks for a new dial), Host upstream omits the scheme's default
 * port, and credentials go out (and responses are redacted) only towards an https:// origin,
 * never towards an http:// one, whatever its host and port. */
#include "airlock/relay.h"

#include <stdlib.h>
#include <string.h>

#include "airlock/creds.h"
#include "test.h"

#define PH         "AIRLOCK_PH_FORWARD_5b1e0c"
#define SECRET     "fwdsecret-3f9a7c1d"
#define SECRET_ENV "AIRLOCK_TEST_FORWARD_SECRET"

/* The controller's side of one connection: what the relay wrote and the last outcome. */
struct world {
    struct relay *r;
    struct http_buf to_client, to_upstream;
    struct relay_result last;
    unsigned outcomes;
    struct creds *creds;
};

static int io_write(void *ctx, enum side_id to, const struct http_span *spans, unsigned n)
{
    struct world *w = ctx;
    for (unsigned i = 0; i < n; i++)
        http_buf_append(to == SIDE_CLIENT ? &w->to_client : &w->to_upstream, spans[i].p,
                        spans[i].len);
    return 0;
}

static void io_log(void *ctx, struct log_event *ev)
{
    (void)ctx;
    (void)ev;
}

static void io_judge(void *ctx, const struct authority *target, const struct policy_request *q,
                     struct policy_l7 *d)
{
    (void)ctx;
    (void)target;
    (void)q;
    memset(d, 0, sizeof(*d));
    d->verdict = POLICY_ALLOW;
}

static struct creds *io_creds(void *ctx)
{
    struct world *w = ctx;
    if (w->creds)
        creds_ref(w->creds);
    return w->creds;
}

static void io_progress(void *ctx, enum relay_progress p)
{
    (void)ctx;
    (void)p;
}

static void io_outcome(void *ctx, const struct relay_result *res)
{
    struct world *w = ctx;
    w->last = *res;
    w->outcomes++;
}

static const struct relay_io io = {
    .write = io_write,
    .log = io_log,
    .judge = io_judge,
    .creds = io_creds,
    .progress = io_progress,
    .outcome = io_outcome,
};

/* One provider bound to h.example:443, its secret from the environment. */
static struct creds *provider(void)
{
    static const char doc[] = "{\"version\": 1, \"providers\": {\"p\": {\"placeholder\": \"" PH
                              "\", \"secret\": {\"env\": \"" SECRET_ENV "\"}, "
                              "\"endpoints\": [{\"host\": \"h.example\", \"port\": 443}]}}}";
    setenv(SECRET_ENV, SECRET, 1);
    char *errors = NULL;
    struct creds *c = creds_parse(doc, strlen(doc), &errors);
    if (!c)
        fprintf(stderr, "providers: %s\n", errors ? errors : "?");
    free(errors);
    return c;
}

static void world_init(struct world *w, bool with_creds)
{
    static const bool draining = false;
    memset(w, 0, sizeof(*w));
    struct relay_setup setup = {.id = 1, .limits = NULL, .draining = &draining};
    w->r = relay_new(&setup, &io, w);
    w->creds = with_creds ? provider() : NULL;
}

static void world_free(struct world *w)
{
    relay_free(w->r);
    if (w->creds)
        creds_unref(w->creds);
    http_buf_free(&w->to_client);
    http_buf_free(&w->to_upstream);
}

static bool has(const struct http_buf *b, const char *s)
{
    return b->len && memmem(b->data, b->len, s, strlen(s)) != NULL;
}

static void clear(struct http_buf *b)
{
    http_buf_free(b);
    memset(b, 0, sizeof(*b));
}

/* A request from the client: fed whole; what the relay reports is in w->last. */
static void client_sends(struct world *w, const char *req)
{
    size_t len = strlen(req);
    size_t took = relay_feed(w->r, SIDE_CLIENT, req, len);
    CHECK_EQ(took, len);
}

/* The controller's answer to DIAL: a fresh upstream is ready (and TLS verified), then the
 * client side resumes. */
static void dialed(struct world *w)
{
    clear(&w->to_upstream);
    relay_dialed(w->r);
    relay_resume(w->r, SIDE_CLIENT);
}

/* The upstream answers 200 with a header; the exchange ends REUSABLE and both sides resume. */
static void upstream_answers(struct world *w, const char *header)
{
    char resp[256];
    snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n%s\r\nContent-Length: 2\r\n\r\nok", header);
    clear(&w->to_client);
    relay_feed(w->r, SIDE_UPSTREAM, resp, strlen(resp));
    CHECK_EQ(w->last.outcome, RELAY_REUSABLE);
    relay_resume(w->r, SIDE_UPSTREAM);
    relay_resume(w->r, SIDE_CLIENT);
}

static void test_https_asks_for_a_tls_dial_to_443(void)
{
    struct world w;
    world_init(&w, false);
    client_sends(&w, "GET https://H.example/a/./b HTTP/1.1\r\nHost: other.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    CHECK(w.last.tls);
    CHECK_STR(w.last.target.host, "h.example");
    CHECK_EQ(w.last.target.port, 443);
    dialed(&w);
    /* the canonical path, and Host from the target without the scheme's default port */
    CHECK(has(&w.to_upstream, "GET /a/b HTTP/1.1\r\nHost: h.example\r\n"));
    upstream_answers(&w, "X-A: 1");
    CHECK(has(&w.to_client, "HTTP/1.1 200 OK\r\n"));
    world_free(&w);
}

static void test_http_and_explicit_ports(void)
{
    struct world w;
    world_init(&w, false);
    client_sends(&w, "GET http://h.example/x HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    CHECK(!w.last.tls);
    CHECK_EQ(w.last.target.port, 80);
    dialed(&w);
    CHECK(has(&w.to_upstream, "\r\nHost: h.example\r\n"));
    upstream_answers(&w, "X-A: 1");

    client_sends(&w, "GET https://h.example:8443/y HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    CHECK(w.last.tls);
    CHECK_EQ(w.last.target.port, 8443);
    dialed(&w);
    CHECK(has(&w.to_upstream, "\r\nHost: h.example:8443\r\n"));
    upstream_answers(&w, "X-A: 1");

    /* https:// on port 80 keeps its port in Host: 80 is http's default, not https's */
    client_sends(&w, "GET https://h.example:80/z HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    dialed(&w);
    CHECK(has(&w.to_upstream, "\r\nHost: h.example:80\r\n"));
    world_free(&w);
}

static void test_the_scheme_is_part_of_the_origin(void)
{
    struct world w;
    world_init(&w, false);
    client_sends(&w, "GET https://h.example/1 HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    dialed(&w);
    upstream_answers(&w, "X-A: 1");
    unsigned before = w.outcomes;

    /* the same origin again: no dial, the request goes out on the same upstream */
    clear(&w.to_upstream);
    client_sends(&w, "GET https://h.example:443/2 HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.outcomes, before);
    CHECK(has(&w.to_upstream, "GET /2 HTTP/1.1\r\n"));
    upstream_answers(&w, "X-A: 1");

    /* the same host and port in clear text is another origin: a plain dial */
    clear(&w.to_upstream);
    client_sends(&w, "GET http://h.example:443/3 HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    CHECK(!w.last.tls);
    CHECK_EQ(w.last.target.port, 443);
    CHECK_EQ(w.to_upstream.len, 0); /* nothing went to the TLS upstream */
    dialed(&w);
    CHECK(has(&w.to_upstream, "GET /3 HTTP/1.1\r\nHost: h.example:443\r\n"));
    upstream_answers(&w, "X-A: 1");

    /* and back */
    client_sends(&w, "GET https://h.example/4 HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    CHECK(w.last.tls);
    world_free(&w);
}

static void test_secret_goes_only_to_an_https_origin(void)
{
    struct world w;
    world_init(&w, true);
    CHECK(w.creds != NULL);
    client_sends(&w, "GET https://h.example/k HTTP/1.1\r\nHost: h.example\r\n"
                     "X-Api-Key: " PH "\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    dialed(&w);
    CHECK(has(&w.to_upstream, "\r\nX-Api-Key: " SECRET "\r\n"));
    /* the provider's host echoes the secret: the client sees the placeholder */
    upstream_answers(&w, "X-Echo: " SECRET);
    CHECK(has(&w.to_client, "X-Echo: " PH));
    CHECK(!has(&w.to_client, SECRET));

    /* the same host and port over http://: refused before anything is written upstream */
    client_sends(&w, "GET http://h.example:443/k HTTP/1.1\r\nHost: h.example\r\n"
                     "X-Api-Key: " PH "\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    dialed(&w);
    CHECK_EQ(w.last.outcome, RELAY_REFUSED);
    CHECK_EQ(w.last.answer.status, 403);
    CHECK_STR(w.last.answer.error, "credential_endpoint_mismatch");
    CHECK_EQ(w.to_upstream.len, 0);
    world_free(&w);
}

static void test_placeholder_to_another_https_host_is_refused(void)
{
    struct world w;
    world_init(&w, true);
    client_sends(&w, "GET https://elsewhere.example/k HTTP/1.1\r\nHost: elsewhere.example\r\n"
                     "Authorization: Bearer " PH "\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_DIAL);
    dialed(&w);
    CHECK_EQ(w.last.outcome, RELAY_REFUSED);
    CHECK_STR(w.last.answer.error, "credential_endpoint_mismatch");
    CHECK_EQ(w.to_upstream.len, 0);
    world_free(&w);
}

static void test_other_schemes_are_refused_first(void)
{
    struct world w;
    world_init(&w, false);
    client_sends(&w, "GET ftp://h.example/ HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_REFUSED);
    CHECK_EQ(w.last.answer.status, 400);
    world_free(&w);

    world_init(&w, false);
    client_sends(&w, "GET https://user@h.example/ HTTP/1.1\r\nHost: h.example\r\n\r\n");
    CHECK_EQ(w.last.outcome, RELAY_REFUSED);
    CHECK_EQ(w.last.answer.status, 400);
    world_free(&w);
}

int main(void)
{
    RUN(test_https_asks_for_a_tls_dial_to_443);
    RUN(test_http_and_explicit_ports);
    RUN(test_the_scheme_is_part_of_the_origin);
    RUN(test_secret_goes_only_to_an_https_origin);
    RUN(test_placeholder_to_another_https_host_is_refused);
    RUN(test_other_schemes_are_refused_first);
    return test_report();
}
