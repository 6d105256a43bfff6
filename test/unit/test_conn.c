/* SPDX-License-Identifier: MIT */
/* Unit tests for conn on a real uv loop, with a test session and test handlers in place of
 * proxy and relay, over loopback TCP: bytes in and out, held bytes and their release,
 * backpressure, the error answer, the idle timer and the deadline, finishing with queued
 * writes, a failed start. Each test ends with every handle closed, uv_loop_close() == 0 and no
 * descriptor left open. */
#include "airlock/conn.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "airlock/answer.h"
#include "airlock/server.h"
#include "test.h"

/* ---- the test session: records what conn calls ------------------------------------------- */

#define GOT_CAP (64 * 1024)

static struct probe {
    struct conn *conn; /* the connection the session started, until it is freed */
    int start_result;
    bool close_on_eof; /* the handler's on_eof closes (as the relay does on an abort) */
    size_t budget[2];  /* bytes on_data may still take per side; SIZE_MAX: any */
    int accepts, starts, cancels, frees; /* accepts: sockets handed to conn_accept */
    char got[2][GOT_CAP]; /* what on_data took, per side */
    size_t got_len[2];
    int data_calls[2], eofs[2], resumes[2];
    size_t resumed_at[2]; /* got_len when on_resume last ran */
} P;

static size_t on_test_data(struct conn *c, enum side_id id, const char *p, size_t len)
{
    (void)c;
    size_t n = len < P.budget[id] ? len : P.budget[id];
    if (n > GOT_CAP - P.got_len[id])
        n = GOT_CAP - P.got_len[id];
    memcpy(P.got[id] + P.got_len[id], p, n);
    P.got_len[id] += n;
    if (P.budget[id] != SIZE_MAX)
        P.budget[id] -= n;
    P.data_calls[id]++;
    return n;
}

static void on_test_eof(struct conn *c, enum side_id id)
{
    P.eofs[id]++;
    if (P.close_on_eof)
        conn_close(c, "test: peer finished");
}

static void on_test_resume(struct conn *c, enum side_id id)
{
    (void)c;
    P.resumes[id]++;
    P.resumed_at[id] = P.got_len[id];
}

static const struct conn_handler recording = {
    .on_data = on_test_data,
    .on_eof = on_test_eof,
    .on_resume = on_test_resume,
};

static int test_start(struct conn *c)
{
    P.starts++;
    if (P.start_result < 0)
        return P.start_result;
    P.conn = c;
    c->session_state = &P;
    conn_set_handler(c, &recording);
    return 0;
}

static void test_cancel(struct conn *c)
{
    (void)c;
    P.cancels++;
}

static void test_free(struct conn *c)
{
    (void)c;
    P.frees++;
    P.conn = NULL;
}

static bool test_idle(struct conn *c)
{
    (void)c;
    return true;
}

static void test_describe(struct conn *c, struct answer *a)
{
    (void)c;
    a->method = "GET";
}

static const struct conn_session test_session = {
    .start = test_start,
    .cancel = test_cancel,
    .free = test_free,
    .idle = test_idle,
    .describe = test_describe,
};

/* ---- sockets and the peer ---------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* The test's end of a connection: non-blocking, and what it read so far. */
struct peer {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
    int err; /* errno of a failed read (a reset), or 0 */
};

/* Read what is there; true once the connection ended (EOF or an error). */
static bool peer_read(struct peer *p)
{
    while (!p->eof && !p->err) {
        if (p->cap - p->len < 65536) {
            p->cap = p->cap ? p->cap * 2 : 131072;
            p->buf = realloc(p->buf, p->cap);
        }
        ssize_t n = recv(p->fd, p->buf + p->len, p->cap - p->len, 0);
        if (n > 0)
            p->len += (size_t)n;
        else if (n == 0)
            p->eof = true;
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        else if (errno != EINTR)
            p->err = errno;
    }
    return p->eof || p->err;
}

static void peer_send(struct peer *p, const char *s)
{
    CHECK_EQ(send(p->fd, s, strlen(s), MSG_NOSIGNAL), (long long)strlen(s));
}

static void peer_close(struct peer *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    free(p->buf);
    p->buf = NULL;
    p->len = p->cap = 0;
}

/* A loopback TCP connection: our end (for conn) and the peer's. Small buffers, when asked, so
 * that a few hundred kilobytes are enough to fill the kernel and queue the rest in libuv. */
static int tcp_pair(int lfd, bool small, struct peer *peer)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(lfd, (struct sockaddr *)&sin, &len);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int size = 4096;
    if (small)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    *peer = (struct peer){.fd = fd};
    int ours = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (ours >= 0 && small)
        setsockopt(ours, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    return ours;
}

/* ---- the fixture: one worker, as server.c sets it up, as far as conn reads it ------------- */

struct fixture {
    struct server_config cfg;
    struct server srv;
    struct worker *w;
    int lfd;
    struct peer client, upstream; /* the peers of the connection's two sides */
    int fds_before;
};

static void fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    f->fds_before = test_count_fds();
    memset(&P, 0, sizeof P);
    P.budget[SIDE_CLIENT] = P.budget[SIDE_UPSTREAM] = SIZE_MAX;
    P.close_on_eof = true;
    server_config_defaults(&f->cfg);
    f->cfg.idle_timeout_ms = 5000;
    f->srv.cfg = &f->cfg;
    struct worker *w = calloc(1, sizeof *w);
    w->server = &f->srv;
    w->session = &test_session;
    uv_loop_init(&w->loop);
    w->kick.data = w;
    uv_idle_init(&w->loop, &w->kick);
    f->w = w;
    f->client.fd = f->upstream.fd = -1;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bind(f->lfd, (struct sockaddr *)&sin, sizeof sin);
    listen(f->lfd, 8);
}

/* One loop turn, then a moment for the kernel to move bytes between the two ends. */
static void turn(struct fixture *f)
{
    uv_run(&f->w->loop, UV_RUN_NOWAIT);
    usleep(200);
}

#define RUN_UNTIL(f, cond, ms)                                                                     \
    for (uint64_t end_ = now_ms() + (ms); !(cond) && now_ms() < end_;)                             \
    turn(f)

/* Accept a client connection into conn, the way the listener does. */
static void fixture_accept(struct fixture *f, bool small)
{
    int fd = tcp_pair(f->lfd, small, &f->client);
    CHECK(fd >= 0);
    if (fd >= 0) {
        P.accepts++;
        conn_accept(f->w, NULL, fd);
    }
}

/* Give the connection an upstream side, the way proxy.c does with netguard's socket. */
static void fixture_attach_upstream(struct fixture *f)
{
    struct conn *c = P.conn;
    int fd = tcp_pair(f->lfd, false, &f->upstream);
    CHECK(fd >= 0 && c);
    if (fd < 0 || !c)
        return;
    struct side *us = &c->sides[SIDE_UPSTREAM];
    CHECK_EQ(conn_init_upstream(c), 0);
    CHECK_EQ(uv_tcp_open(&us->tcp, fd), 0);
    us->flags |= SIDE_F_CONNECTED;
    conn_update_reading(c, SIDE_UPSTREAM);
}

/* Everything closed: the connection (closed here if a failed check left it open), the worker's
 * handle, the loop, every descriptor. */
static void fixture_end(struct fixture *f)
{
    if (P.conn) {
        conn_close(P.conn, "test end");
        RUN_UNTIL(f, !P.conn, 1000);
    }
    CHECK_EQ(P.frees, P.accepts); /* every connection freed, started or refused */
    CHECK_EQ(f->w->nconns, 0);
    CHECK(f->w->conns == NULL);
    CHECK_EQ(conn_live_count(), 0);
    uv_close((uv_handle_t *)&f->w->kick, NULL);
    uv_run(&f->w->loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&f->w->loop), 0);
    free(f->w);
    peer_close(&f->client);
    peer_close(&f->upstream);
    close(f->lfd);
    CHECK_EQ(test_count_fds(), f->fds_before);
}

static void fill(char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(i % 251);
}

static bool is_filled(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != (char)(i % 251))
            return false;
    return true;
}

/* Queue len pattern bytes to the client in 64 KiB writes. */
static void write_pattern(struct conn *c, size_t len)
{
    char *big = malloc(len);
    fill(big, len);
    for (size_t off = 0; off < len; off += 65536)
        CHECK_EQ(conn_write(c, SIDE_CLIENT, big + off, len - off < 65536 ? len - off : 65536), 0);
    free(big);
}

/* The response in buf: its status, that it says Connection: close and is JSON with a
 * Content-Length that matches the body, and the body parsed (cJSON_Delete it). */
static cJSON *parse_answer(const char *buf, size_t len, const char *status_line)
{
    char *text = strndup(buf, len);
    cJSON *json = NULL;
    char *end = strstr(text, "\r\n\r\n");
    CHECK(strncmp(text, status_line, strlen(status_line)) == 0);
    CHECK(end != NULL);
    if (end) {
        *end = '\0';
        const char *body = end + 4;
        CHECK(strstr(text, "\r\nContent-Type: application/json\r\n") != NULL);
        CHECK(strstr(text, "\r\nConnection: close") != NULL);
        const char *cl = strstr(text, "\r\nContent-Length: ");
        CHECK(cl != NULL);
        if (cl)
            CHECK_EQ(strtoul(cl + 18, NULL, 10), strlen(body));
        json = cJSON_Parse(body);
        CHECK(json != NULL);
    }
    free(text);
    return json;
}

static const char *json_str(const cJSON *json, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Start the fixture and accept one client; the connection, or NULL (a failed check). */
static struct conn *fixture_start(struct fixture *f, bool small)
{
    fixture_init(f);
    fixture_accept(f, small);
    CHECK(P.conn != NULL);
    return P.conn;
}

/* The peer closes its end (conn reads EOF). */
static void peer_hangup(struct peer *p)
{
    close(p->fd);
    p->fd = -1;
}

/* Run until n connections have been freed. */
static void expect_freed(struct fixture *f, int n, uint64_t ms)
{
    RUN_UNTIL(f, P.frees == n, ms);
    CHECK_EQ(P.frees, n);
}

/* The client reads to conn's FIN and finds one answer with this status line, error and
 * detail. */
static void expect_answer(struct fixture *f, const char *status_line, const char *error,
                          const char *detail)
{
    RUN_UNTIL(f, peer_read(&f->client), 1000);
    CHECK(f->client.eof);
    cJSON *json = parse_answer(f->client.buf, f->client.len, status_line);
    CHECK_STR(json_str(json, "error"), error);
    CHECK_STR(json_str(json, "detail"), detail);
    cJSON_Delete(json);
}

/* The client reads conn's FIN with nothing before it. */
static void expect_silent_close(struct fixture *f)
{
    RUN_UNTIL(f, peer_read(&f->client), 1000);
    CHECK(f->client.eof);
    CHECK_EQ(f->client.len, 0);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_bytes_both_ways_and_one_close_at_eof(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    CHECK_EQ(P.starts, 1);
    CHECK_EQ(conn_live_count(), 1);
    CHECK_EQ(c->refs, 2); /* the timer and the client handle */
    const char *parts[] = {"GET / HT", "TP/1.1\r\n", "Host: x\r\n\r\n"};
    size_t want = 0;
    for (int i = 0; i < 3; i++) {
        peer_send(&f.client, parts[i]);
        want += strlen(parts[i]);
        RUN_UNTIL(&f, P.got_len[SIDE_CLIENT] == want, 1000);
    }
    CHECK_EQ(P.got_len[SIDE_CLIENT], want);
    CHECK(memcmp(P.got[SIDE_CLIENT], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", want) == 0);
    CHECK_EQ(P.data_calls[SIDE_CLIENT], 3);
    CHECK_EQ(conn_write(c, SIDE_CLIENT, "pong", 4), 0);
    RUN_UNTIL(&f, peer_read(&f.client) || f.client.len == 4, 1000);
    CHECK(f.client.len == 4 && memcmp(f.client.buf, "pong", 4) == 0);
    CHECK_EQ(P.cancels, 0);
    shutdown(f.client.fd, SHUT_WR);
    expect_freed(&f, 1, 1000);
    CHECK_EQ(P.eofs[SIDE_CLIENT], 1);
    CHECK_EQ(P.cancels, 1);
    CHECK_EQ(conn_live_count(), 0);
    RUN_UNTIL(&f, peer_read(&f.client), 1000);
    CHECK(f.client.eof);
    CHECK_EQ(f.client.len, 4); /* nothing after the "pong" */
out:
    fixture_end(&f);
}

static void test_held_bytes_wait_in_order_until_released(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    struct side *cs = &c->sides[SIDE_CLIENT];
    P.budget[SIDE_CLIENT] = 4;
    peer_send(&f.client, "abcdefghij");
    RUN_UNTIL(&f, cs->flags & SIDE_F_HELD, 1000);
    CHECK(cs->flags & SIDE_F_HELD);
    CHECK(!(cs->flags & SIDE_F_READING)); /* a held side is not read */
    CHECK_EQ(P.got_len[SIDE_CLIENT], 4);
    CHECK_EQ(cs->stash_len - cs->stash_off, 6);
    /* More bytes while held stay in the kernel. */
    peer_send(&f.client, "klmn");
    for (int i = 0; i < 20; i++)
        turn(&f);
    CHECK_EQ(P.got_len[SIDE_CLIENT], 4);
    /* A release takes effect on the next loop turn, resume first, then the stash. */
    P.budget[SIDE_CLIENT] = 3;
    conn_release(c, SIDE_CLIENT);
    CHECK_EQ(P.resumes[SIDE_CLIENT], 0);
    uv_run(&f.w->loop, UV_RUN_NOWAIT);
    CHECK_EQ(P.resumes[SIDE_CLIENT], 1);
    CHECK_EQ(P.resumed_at[SIDE_CLIENT], 4);
    CHECK_EQ(P.got_len[SIDE_CLIENT], 7);
    CHECK(cs->flags & SIDE_F_HELD); /* held again after three */
    CHECK_EQ(cs->stash_len - cs->stash_off, 3);
    P.budget[SIDE_CLIENT] = SIZE_MAX;
    conn_release(c, SIDE_CLIENT);
    RUN_UNTIL(&f, P.got_len[SIDE_CLIENT] == 14, 1000);
    CHECK_EQ(P.resumes[SIDE_CLIENT], 2);
    CHECK(P.got_len[SIDE_CLIENT] == 14 && memcmp(P.got[SIDE_CLIENT], "abcdefghijklmn", 14) == 0);
    CHECK(cs->stash == NULL);
    CHECK(cs->flags & SIDE_F_READING);
    shutdown(f.client.fd, SHUT_WR);
    expect_freed(&f, 1, 1000);
    CHECK_EQ(P.got_len[SIDE_CLIENT], 14); /* nothing twice */
out:
    fixture_end(&f);
}

static void test_a_full_client_pauses_the_upstream_until_low_water(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, true);
    if (!c)
        goto out;
    fixture_attach_upstream(&f);
    struct side *cs = &c->sides[SIDE_CLIENT], *us = &c->sides[SIDE_UPSTREAM];
    CHECK(us->flags & SIDE_F_READING);
    const size_t total = 1024 * 1024;
    write_pattern(c, total);
    CHECK(cs->tcp.write_queue_size > CONN_HIGH_WATER);
    CHECK(us->flags & SIDE_F_PAUSED);
    CHECK(!(us->flags & SIDE_F_READING));
    /* The upstream's bytes wait in the kernel while the client does not read. */
    peer_send(&f.upstream, "ping");
    for (int i = 0; i < 20; i++)
        turn(&f);
    CHECK_EQ(P.got_len[SIDE_UPSTREAM], 0);
    /* The client drains: reading starts again once the queue is at the low-water mark. */
    bool paused_below_low = false, resumed_above_low = false;
    for (uint64_t end = now_ms() + 2000; f.client.len < total && now_ms() < end;) {
        peer_read(&f.client);
        turn(&f);
        size_t queued = cs->tcp.write_queue_size;
        if (us->flags & SIDE_F_PAUSED)
            paused_below_low |= queued == 0; /* drained yet still paused */
        else
            resumed_above_low |= queued > CONN_LOW_WATER;
    }
    CHECK(!paused_below_low);
    CHECK(!resumed_above_low);
    CHECK_EQ(f.client.len, total);
    CHECK(is_filled(f.client.buf, f.client.len));
    CHECK(!(us->flags & SIDE_F_PAUSED));
    RUN_UNTIL(&f, P.got_len[SIDE_UPSTREAM] == 4, 1000);
    CHECK(P.got_len[SIDE_UPSTREAM] == 4 && memcmp(P.got[SIDE_UPSTREAM], "ping", 4) == 0);
    shutdown(f.client.fd, SHUT_WR);
    expect_freed(&f, 1, 1000);
    RUN_UNTIL(&f, peer_read(&f.upstream), 1000);
    CHECK(f.upstream.eof); /* closing the connection closed its upstream too */
out:
    fixture_end(&f);
}

static void test_an_error_answer_is_one_json_response_then_eof(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    conn_respond_error(c, 403, "policy_denied", "not on this connection");
    conn_respond_error(c, 502, "upstream_failed", "a second answer"); /* ignored */
    CHECK_EQ(c->state, CONN_S_LINGER);
    expect_answer(&f, "HTTP/1.1 403 Forbidden\r\n", "policy_denied", "not on this connection");
    CHECK(f.client.buf && memmem(f.client.buf, f.client.len, "\"method\":\"GET\"", 14));
    peer_hangup(&f.client);
    expect_freed(&f, 1, 1000);
out:
    fixture_end(&f);
}

static void test_an_error_after_the_response_started_only_closes(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    c->flags |= CONN_F_RESPONSE_STARTED;
    conn_respond_error(c, 502, "upstream_failed", "too late to answer");
    CHECK(c->flags & CONN_F_CLOSING);
    expect_silent_close(&f);
    expect_freed(&f, 1, 1000);
out:
    fixture_end(&f);
}

/* A client that reads the answer and closes ends the connection then, not when the linger
 * deadline (2 s) runs out; the handler of a phase that is over is not called. */
static void test_a_client_closing_after_the_answer_ends_the_connection_at_once(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    P.close_on_eof = false; /* like a relay that has reported its outcome */
    conn_respond_error(c, 400, "bad_request", "test");
    expect_answer(&f, "HTTP/1.1 400 Bad Request\r\n", "bad_request", "test");
    peer_hangup(&f.client);
    expect_freed(&f, 1, 500);
    CHECK_EQ(P.eofs[SIDE_CLIENT], 0);
out:
    fixture_end(&f);
}

/* Idleness ends a connection, not age: a byte in the middle moves the end. */
static void test_the_idle_timeout_closes_silently(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    uint64_t t0 = now_ms();
    conn_set_timeout(c, 100, 0, "test idle");
    RUN_UNTIL(&f, false, 50);
    peer_send(&f.client, "x");
    expect_freed(&f, 1, 1000);
    CHECK(now_ms() - t0 >= 140);
    CHECK_EQ(P.got_len[SIDE_CLIENT], 1);
    expect_silent_close(&f);
out:
    fixture_end(&f);
}

/* A deadline does not move with activity, and answers its status. */
static void test_the_deadline_answers_408(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    uint64_t t0 = now_ms();
    conn_set_deadline(c, 100, 408, "request head not complete in time");
    RUN_UNTIL(&f, false, 50);
    peer_send(&f.client, "x");
    expect_answer(&f, "HTTP/1.1 408 Request Timeout\r\n", "request_timeout",
                  "request head not complete in time");
    uint64_t took = now_ms() - t0;
    CHECK(took >= 95 && took < 150);
    peer_hangup(&f.client);
    expect_freed(&f, 1, 1000);
out:
    fixture_end(&f);
}

/* Every queued byte reaches the client before our FIN, even when the client has already
 * finished sending (its EOF must not cut the answer short). */
static void test_finish_delivers_every_queued_byte_before_eof(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, true);
    if (!c)
        goto out;
    const size_t total = 512 * 1024;
    write_pattern(c, total);
    CHECK(c->sides[SIDE_CLIENT].tcp.write_queue_size > 0);
    conn_finish(c, "test finish");
    CHECK_EQ(c->state, CONN_S_LINGER);
    shutdown(f.client.fd, SHUT_WR);
    for (int i = 0; i < 20; i++)
        turn(&f); /* conn sees the client's EOF while the answer is still queued */
    RUN_UNTIL(&f, peer_read(&f.client), 2000);
    CHECK(f.client.eof);
    CHECK_EQ(f.client.err, 0);
    CHECK_EQ(f.client.len, total);
    CHECK(is_filled(f.client.buf, f.client.len));
    peer_hangup(&f.client);
    expect_freed(&f, 1, 1000);
out:
    fixture_end(&f);
}

/* A release still waiting for its loop turn when the connection closes resumes nothing; the
 * reference it held is dropped and the connection freed. */
static void test_a_release_pending_at_close_resumes_nothing(void)
{
    struct fixture f;
    struct conn *c = fixture_start(&f, false);
    if (!c)
        goto out;
    conn_release(c, SIDE_CLIENT);
    CHECK(c->flags & CONN_F_KICKED);
    conn_close(c, "test close");
    expect_freed(&f, 1, 1000);
    CHECK_EQ(P.resumes[SIDE_CLIENT], 0);
    CHECK(f.w->kicks == NULL);
out:
    fixture_end(&f);
}

/* Above --max-connections a client is answered 503 and the connection is not kept. */
static void test_over_the_connection_limit_a_client_gets_503(void)
{
    struct fixture f;
    fixture_init(&f);
    f.srv.max_connections = 1;
    fixture_accept(&f, false);
    struct conn *first = P.conn;
    struct peer first_peer = f.client;
    fixture_accept(&f, false);
    CHECK_EQ(P.starts, 1); /* a refused connection never reaches the session */
    expect_answer(&f, "HTTP/1.1 503 Service Unavailable\r\n", "too_many_connections",
                  "airlock is at its connection limit; retry later");
    peer_close(&f.client);
    expect_freed(&f, 1, 1000);
    CHECK_EQ(conn_live_count(), 1);
    CHECK_EQ(f.w->nconns, 1);
    f.client = first_peer;
    P.conn = first; /* the second one's free cleared it; fixture_end closes the first */
    fixture_end(&f);
}

static void test_a_failed_start_closes_the_socket_and_leaks_nothing(void)
{
    struct fixture f;
    fixture_init(&f);
    P.start_result = -1;
    fixture_accept(&f, false);
    CHECK_EQ(P.starts, 1);
    expect_silent_close(&f);
    expect_freed(&f, 1, 1000); /* cancel and free run on a failed start too */
    CHECK_EQ(P.cancels, 1);
    CHECK_EQ(conn_live_count(), 0);
    fixture_end(&f);
}

int main(void)
{
    /* libuv opens its signal-lock pipe once per process, with the first loop: open it before
     * any test counts descriptors. */
    uv_loop_t first;
    uv_loop_init(&first);
    uv_loop_close(&first);
    RUN(test_bytes_both_ways_and_one_close_at_eof);
    RUN(test_held_bytes_wait_in_order_until_released);
    RUN(test_a_full_client_pauses_the_upstream_until_low_water);
    RUN(test_an_error_answer_is_one_json_response_then_eof);
    RUN(test_an_error_after_the_response_started_only_closes);
    RUN(test_a_client_closing_after_the_answer_ends_the_connection_at_once);
    RUN(test_the_idle_timeout_closes_silently);
    RUN(test_the_deadline_answers_408);
    RUN(test_finish_delivers_every_queued_byte_before_eof);
    RUN(test_a_release_pending_at_close_resumes_nothing);
    RUN(test_over_the_connection_limit_a_client_gets_503);
    RUN(test_a_failed_start_closes_the_socket_and_leaks_nothing);
    return test_report();
}
