/* SPDX-License-Identifier: MIT */
/* Unit tests for dial: RFC 8305 ordering (families alternate, each keeps its order), a race
 * whose first address is blackholed (a listener with a full accept queue on ::1) won by the
 * second after about one attempt delay, refusals that move on without waiting, a race of many
 * blackholed addresses that never holds more than DIAL_MAX_IN_FLIGHT sockets, cancellation,
 * and the socket mark (set on the winner, or the dial fails where it cannot be set). Loopback only;
 * every test closes its loop. */
#include "airlock/dial.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static struct sockaddr_storage addr(const char *ip, unsigned port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strchr(ip, ':'))
        uv_ip6_addr(ip, (int)port, (struct sockaddr_in6 *)&ss);
    else
        uv_ip4_addr(ip, (int)port, (struct sockaddr_in *)&ss);
    return ss;
}

static unsigned port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)ss)->sin6_port
                                           : ((const struct sockaddr_in *)ss)->sin_port);
}

static void test_interleave_alternates_families_keeping_each_order(void)
{
    struct sockaddr_storage in[5] = {addr("::1", 1), addr("::1", 2), addr("127.0.0.1", 3),
                                     addr("127.0.0.1", 4), addr("::1", 5)};
    struct sockaddr_storage out[5];
    dial_interleave(in, 5, out);
    unsigned want[5] = {1, 3, 2, 4, 5};
    for (int i = 0; i < 5; i++)
        CHECK_EQ(port_of(&out[i]), want[i]);
    struct sockaddr_storage v4first[3] = {addr("127.0.0.1", 1), addr("::1", 2), addr("::1", 3)};
    dial_interleave(v4first, 3, out);
    CHECK_EQ(out[0].ss_family, AF_INET);
    CHECK_EQ(port_of(&out[1]), 2);
    CHECK_EQ(port_of(&out[2]), 3);
    struct sockaddr_storage one_family[2] = {addr("127.0.0.1", 7), addr("127.0.0.1", 8)};
    dial_interleave(one_family, 2, out);
    CHECK_EQ(port_of(&out[0]), 7);
    CHECK_EQ(port_of(&out[1]), 8);
}

/* ---- sockets ----------------------------------------------------------------------------- */

static int listener(const char *ip, unsigned port, int backlog, unsigned *bound)
{
    struct sockaddr_storage ss = addr(ip, port);
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
        close(fd);
        return -1;
    }
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *bound = port_of(&ss);
    return fd;
}

/* A port on ip (::1 unless said otherwise) that swallows SYNs: listen(0) and a few connections
 * filling its queue. */
struct blackhole {
    int fd, fillers[3];
    unsigned port;
};

static bool blackhole_open_on(struct blackhole *b, const char *ip)
{
    b->fd = listener(ip, 0, 0, &b->port);
    if (b->fd < 0)
        return false;
    struct sockaddr_storage ss = addr(ip, b->port);
    socklen_t len =
        ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    for (int i = 0; i < 3; i++) {
        b->fillers[i] = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(b->fillers[i], (struct sockaddr *)&ss, len);
    }
    usleep(200 * 1000);
    return true;
}

static bool blackhole_open(struct blackhole *b)
{
    return blackhole_open_on(b, "::1");
}

static void blackhole_close(struct blackhole *b)
{
    for (int i = 0; i < 3; i++)
        close(b->fillers[i]);
    close(b->fd);
}

/* A port nothing listens on: bound, then closed. */
static unsigned closed_port(const char *ip)
{
    unsigned port;
    int fd = listener(ip, 0, 1, &port);
    close(fd);
    return port;
}

/* ---- races ------------------------------------------------------------------------------- */

struct result {
    bool done;
    int value;
    uint64_t at_ms;
};

static void on_result(int result, void *data)
{
    struct result *r = data;
    r->done = true;
    r->value = result;
    r->at_ms = uv_hrtime() / 1000000;
}

static uint64_t ms_now(void)
{
    return uv_hrtime() / 1000000;
}

static void test_blackholed_first_address_loses_to_the_second_after_the_delay(void)
{
    struct blackhole bh;
    if (!blackhole_open(&bh)) {
        fprintf(stderr, "  no ::1 here: skipped\n");
        return;
    }
    unsigned good_port;
    int good = listener("127.0.0.1", 0, 8, &good_port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_storage addrs[2] = {addr("::1", bh.port), addr("127.0.0.1", good_port)};
    struct result r = {0};
    uint64_t t0 = ms_now();
    CHECK(dial_start(&loop, addrs, 2, 0, 1, on_result, &r) != NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.done);
    CHECK(r.value >= 0);
    uint64_t took = r.at_ms - t0;
    CHECK(took >= DIAL_ATTEMPT_DELAY_MS - 20 && took < DIAL_ATTEMPT_DELAY_MS + 400);
    if (r.value >= 0) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        getpeername(r.value, (struct sockaddr *)&peer, &len);
        CHECK_EQ(peer.ss_family, AF_INET);
        CHECK_EQ(port_of(&peer), good_port);
        close(r.value);
    }
    CHECK_EQ(uv_loop_close(&loop), 0);
    close(good);
    blackhole_close(&bh);
}

static void test_refused_addresses_move_on_without_waiting(void)
{
    unsigned good_port;
    int good = listener("127.0.0.1", 0, 8, &good_port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_storage addrs[3] = {addr("127.0.0.1", closed_port("127.0.0.1")),
                                        addr("127.0.0.1", closed_port("127.0.0.1")),
                                        addr("127.0.0.1", good_port)};
    struct result r = {0};
    uint64_t t0 = ms_now();
    dial_start(&loop, addrs, 3, 0, 1, on_result, &r);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.done && r.value >= 0);
    CHECK(r.at_ms - t0 < DIAL_ATTEMPT_DELAY_MS);
    if (r.value >= 0)
        close(r.value);
    CHECK_EQ(uv_loop_close(&loop), 0);
    close(good);
}

static void test_every_address_refused_reports_the_error(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_storage addrs[2] = {addr("127.0.0.1", closed_port("127.0.0.1")),
                                        addr("127.0.0.1", closed_port("127.0.0.1"))};
    struct result r = {0};
    dial_start(&loop, addrs, 2, 0, 1, on_result, &r);
    CHECK(!r.done); /* never from inside dial_start */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.done);
    CHECK_EQ(r.value, UV_ECONNREFUSED);
    CHECK_EQ(uv_loop_close(&loop), 0);
}

struct fd_watch {
    uv_timer_t timer;
    struct result r;
    int baseline, most;
};

static void on_watch_tick(uv_timer_t *t)
{
    struct fd_watch *w = t->data;
    int n = test_count_fds();
    if (n > w->most)
        w->most = n;
    if (w->r.done)
        uv_close((uv_handle_t *)t, NULL);
}

/* Seven blackholed addresses, then one that answers: every 250 ms a new attempt starts, and
 * each one past DIAL_MAX_IN_FLIGHT closes the oldest, so the race never holds more sockets
 * than that (it used to keep all eight open), yet still reaches the last address. */
static void test_many_blackholed_addresses_hold_at_most_the_in_flight_cap(void)
{
    struct blackhole bh;
    if (!blackhole_open_on(&bh, "127.0.0.1")) {
        fprintf(stderr, "  no blackhole here: skipped\n");
        return;
    }
    unsigned good_port;
    int good = listener("127.0.0.1", 0, 8, &good_port);
    struct sockaddr_storage addrs[DIAL_MAX_ADDRS];
    for (size_t i = 0; i + 1 < DIAL_MAX_ADDRS; i++)
        addrs[i] = addr("127.0.0.1", bh.port);
    addrs[DIAL_MAX_ADDRS - 1] = addr("127.0.0.1", good_port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct fd_watch w = {0};
    uv_timer_init(&loop, &w.timer);
    w.timer.data = &w;
    w.baseline = w.most = test_count_fds();
    uv_timer_start(&w.timer, on_watch_tick, 20, 20);
    uint64_t t0 = ms_now();
    CHECK(dial_start(&loop, addrs, DIAL_MAX_ADDRS, 0, 1, on_result, &w.r) != NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(w.r.done && w.r.value >= 0);
    uint64_t took = w.r.at_ms - t0, want = (DIAL_MAX_ADDRS - 1) * DIAL_ATTEMPT_DELAY_MS;
    CHECK(took >= want - 20 && took < want + 400);
    CHECK(w.most - w.baseline <= DIAL_MAX_IN_FLIGHT);
    if (w.r.value >= 0) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof peer;
        getpeername(w.r.value, (struct sockaddr *)&peer, &len);
        CHECK_EQ(port_of(&peer), good_port);
        close(w.r.value);
    }
    CHECK_EQ(uv_loop_close(&loop), 0);
    close(good);
    blackhole_close(&bh);
}

static void on_cancel_timer(uv_timer_t *t)
{
    dial_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel_closes_every_attempt_and_reports_once(void)
{
    struct blackhole bh;
    if (!blackhole_open(&bh)) {
        fprintf(stderr, "  no ::1 here: skipped\n");
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_storage addrs[1] = {addr("::1", bh.port)};
    struct result r = {0};
    struct dial *d = dial_start(&loop, addrs, 1, 0, 1, on_result, &r);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = d;
    uv_timer_start(&t, on_cancel_timer, 50, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.done);
    CHECK_EQ(r.value, UV_ECANCELED);
    CHECK_EQ(uv_loop_close(&loop), 0);
    blackhole_close(&bh);
}

/* Whether this process may set SO_MARK (CAP_NET_ADMIN). */
static bool can_mark(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    uint32_t mark = 42;
    bool ok = setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) == 0;
    close(fd);
    return ok;
}

static void test_mark_is_set_on_the_socket_or_the_dial_fails(void)
{
    unsigned port;
    int ls = listener("127.0.0.1", 0, 8, &port);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct sockaddr_storage addrs[1] = {addr("127.0.0.1", port)};
    struct result r = {0};
    CHECK(dial_start(&loop, addrs, 1, 0x2a, 1, on_result, &r) != NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(r.done);
    if (can_mark()) {
        CHECK(r.value >= 0);
        uint32_t mark = 0;
        socklen_t len = sizeof mark;
        CHECK_EQ(getsockopt(r.value, SOL_SOCKET, SO_MARK, &mark, &len), 0);
        CHECK_EQ(mark, 0x2a);
        close(r.value);
    } else {
        /* never an unmarked connection instead */
        fprintf(stderr, "  no CAP_NET_ADMIN: checked that the dial fails\n");
        CHECK_EQ(r.value, UV_EPERM);
    }
    CHECK_EQ(uv_loop_close(&loop), 0);
    close(ls);
}

int main(void)
{
    RUN(test_interleave_alternates_families_keeping_each_order);
    RUN(test_blackholed_first_address_loses_to_the_second_after_the_delay);
    RUN(test_refused_addresses_move_on_without_waiting);
    RUN(test_every_address_refused_reports_the_error);
    RUN(test_many_blackholed_addresses_hold_at_most_the_in_flight_cap);
    RUN(test_cancel_closes_every_attempt_and_reports_once);
    RUN(test_mark_is_set_on_the_socket_or_the_dial_fails);
    return test_report();
}
