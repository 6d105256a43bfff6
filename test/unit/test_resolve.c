/* SPDX-License-Identifier: MIT */
/* Unit tests for resolve: the pool, queue, sharing and cache logic with an injected lookup
 * function (names starting "slow" block until released), so no DNS is involved. Slow lookups
 * hold only their own threads; a full queue refuses at once; concurrent askers share one
 * lookup; cached answers need no thread; expiry, LRU eviction, failures and cancellation. */
#include "airlock/resolve.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* ---- the injected lookup ----------------------------------------------------------------- */

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fake_cond = PTHREAD_COND_INITIALIZER;
static bool slow_released;
static int calls[16];
static const char *const names[16] = {"fast.test",  "other.test", "third.test", "fail.test",
                                      "slow0.test", "slow1.test", "slow2.test", "slow3.test"};

static int name_index(const char *host)
{
    for (int i = 0; i < 16 && names[i]; i++)
        if (!strcmp(names[i], host))
            return i;
    return 15;
}

static int fake_lookup(const char *host, struct resolve_answer *ans, void *arg)
{
    int i = name_index(host);
    pthread_mutex_lock(&fake_lock);
    calls[i]++;
    while (!strncmp(host, "slow", 4) && !slow_released)
        pthread_cond_wait(&fake_cond, &fake_lock);
    pthread_mutex_unlock(&fake_lock);
    if (!strcmp(host, "fail.test"))
        return UV_EAI_NONAME;
    ans->n = 1;
    uv_ip4_addr("127.0.0.1", 0, &ans->addrs[0].v4);
    ans->addrs[0].v4.sin_addr.s_addr = htonl(0x7f000000u + (unsigned)i + 1);
    return 0;
}

static int calls_of(const char *host)
{
    pthread_mutex_lock(&fake_lock);
    int n = calls[name_index(host)];
    pthread_mutex_unlock(&fake_lock);
    return n;
}

static void release_slow(bool on)
{
    pthread_mutex_lock(&fake_lock);
    slow_released = on;
    pthread_cond_broadcast(&fake_cond);
    pthread_mutex_unlock(&fake_lock);
}

/* ---- a loop and a resolver per test ------------------------------------------------------ */

struct outcome {
    bool done;
    int status;
    uint32_t addr; /* host order */
};

struct fixture {
    uv_loop_t loop;
    struct resolver *r;
    struct resolver_client *rc;
};

static void setup(struct fixture *f, unsigned threads, size_t queued, size_t entries,
                  uint64_t ttl_ms)
{
    memset(calls, 0, sizeof calls);
    release_slow(false);
    uv_loop_init(&f->loop);
    struct resolver_config cfg = {.threads = threads,
                                  .max_queued = queued,
                                  .cache_entries = entries,
                                  .cache_ttl_ms = ttl_ms,
                                  .lookup = fake_lookup};
    f->r = resolver_new(&cfg);
    f->rc = resolver_client_new(f->r, &f->loop);
}

static void teardown(struct fixture *f)
{
    release_slow(true);
    resolver_client_close(f->rc);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&f->loop), 0);
    resolver_free(f->r, 5000);
}

static void on_done(struct resolve_req *req, int status, const struct resolve_answer *ans,
                    void *data)
{
    struct outcome *o = data;
    o->done = true;
    o->status = status;
    o->addr = status == 0 ? ntohl(ans->addrs[0].v4.sin_addr.s_addr) : 0;
}

static int start(struct fixture *f, const char *host, struct outcome *o, struct resolve_req **req)
{
    struct resolve_answer ans;
    struct resolve_req *dummy;
    memset(o, 0, sizeof *o);
    int r = resolve_start(f->rc, host, &ans, on_done, o, req ? req : &dummy);
    if (r == RESOLVE_ANSWERED) {
        o->done = true;
        o->addr = ntohl(ans.addrs[0].v4.sin_addr.s_addr);
    }
    return r;
}

static uint64_t ms_now(void)
{
    return uv_hrtime() / 1000000;
}

/* Run the loop until o is done or timeout_ms passes; true when done. */
static bool wait_done(struct fixture *f, struct outcome *o, uint64_t timeout_ms)
{
    uint64_t end = ms_now() + timeout_ms;
    while (!o->done && ms_now() < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(1000);
    }
    return o->done;
}

/* Wait until the pool runs n lookups (all blocked in the slow lookup). */
static bool wait_running(struct fixture *f, size_t n)
{
    uint64_t end = ms_now() + 2000;
    struct resolver_stats st;
    do {
        resolver_get_stats(f->r, &st);
        if (st.running == n)
            return true;
        usleep(1000);
    } while (ms_now() < end);
    return false;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_slow_lookups_hold_only_their_own_threads(void)
{
    struct fixture f;
    setup(&f, 4, 0, 16, 60000);
    struct outcome slow[3], fast;
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "slow%d.test", i);
        CHECK_EQ(start(&f, name, &slow[i], NULL), RESOLVE_PENDING);
    }
    CHECK(wait_running(&f, 3));
    uint64_t t0 = ms_now();
    CHECK_EQ(start(&f, "fast.test", &fast, NULL), RESOLVE_PENDING);
    CHECK(wait_done(&f, &fast, 1000));
    CHECK(ms_now() - t0 < 500);
    CHECK_EQ(fast.status, 0);
    CHECK_EQ(fast.addr, 0x7f000001u);
    for (int i = 0; i < 3; i++)
        CHECK(!slow[i].done);
    release_slow(true);
    for (int i = 0; i < 3; i++) {
        CHECK(wait_done(&f, &slow[i], 2000));
        CHECK_EQ(slow[i].status, 0);
    }
    teardown(&f);
}

static void test_full_queue_refuses_at_once_and_askers_share_a_lookup(void)
{
    struct fixture f;
    setup(&f, 1, 1, 16, 60000);
    struct outcome a, a2, b, c;
    CHECK_EQ(start(&f, "slow0.test", &a, NULL), RESOLVE_PENDING);
    CHECK(wait_running(&f, 1));
    CHECK_EQ(start(&f, "slow1.test", &b, NULL), RESOLVE_PENDING);  /* queued */
    CHECK_EQ(start(&f, "slow2.test", &c, NULL), UV_EAGAIN);        /* queue full */
    CHECK_EQ(start(&f, "slow0.test", &a2, NULL), RESOLVE_PENDING); /* shares the running one */
    struct resolver_stats st;
    resolver_get_stats(f.r, &st);
    CHECK_EQ(st.refused, 1);
    CHECK_EQ(st.joined, 1);
    CHECK_EQ(st.queued, 1);
    release_slow(true);
    CHECK(wait_done(&f, &a, 2000) && wait_done(&f, &a2, 2000) && wait_done(&f, &b, 2000));
    CHECK_EQ(a.status, 0);
    CHECK_EQ(a2.status, 0);
    CHECK_EQ(b.status, 0);
    CHECK_EQ(calls_of("slow0.test"), 1);
    CHECK_EQ(calls_of("slow2.test"), 0);
    teardown(&f);
}

static void test_cached_answer_needs_no_thread(void)
{
    struct fixture f;
    setup(&f, 1, 0, 16, 60000);
    struct outcome o, busy;
    CHECK_EQ(start(&f, "fast.test", &o, NULL), RESOLVE_PENDING);
    CHECK(wait_done(&f, &o, 1000));
    CHECK_EQ(start(&f, "slow0.test", &busy, NULL), RESOLVE_PENDING);
    CHECK(wait_running(&f, 1));
    /* The only thread is busy and nothing may queue, yet the cached name answers. */
    CHECK_EQ(start(&f, "other.test", &o, NULL), UV_EAGAIN);
    CHECK_EQ(start(&f, "FAST.test", &o, NULL), RESOLVE_ANSWERED);
    CHECK_EQ(o.addr, 0x7f000001u);
    CHECK_EQ(calls_of("fast.test"), 1);
    release_slow(true);
    CHECK(wait_done(&f, &busy, 2000));
    teardown(&f);
}

static void test_cached_answer_expires(void)
{
    struct fixture f;
    setup(&f, 1, 4, 16, 50);
    struct outcome o;
    CHECK_EQ(start(&f, "fast.test", &o, NULL), RESOLVE_PENDING);
    CHECK(wait_done(&f, &o, 1000));
    CHECK_EQ(start(&f, "fast.test", &o, NULL), RESOLVE_ANSWERED);
    usleep(80 * 1000);
    CHECK_EQ(start(&f, "fast.test", &o, NULL), RESOLVE_PENDING);
    CHECK(wait_done(&f, &o, 1000));
    CHECK_EQ(calls_of("fast.test"), 2);
    teardown(&f);
}

static void test_no_cache_when_ttl_is_zero(void)
{
    struct fixture f;
    setup(&f, 1, 4, 16, 0);
    struct outcome o;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(start(&f, "fast.test", &o, NULL), RESOLVE_PENDING);
        CHECK(wait_done(&f, &o, 1000));
    }
    CHECK_EQ(calls_of("fast.test"), 2);
    teardown(&f);
}

static void resolve_now(struct fixture *f, const char *host, int want)
{
    struct outcome o;
    int r = start(f, host, &o, NULL);
    CHECK_EQ(r, want);
    if (r == RESOLVE_PENDING)
        CHECK(wait_done(f, &o, 1000));
}

static void test_cache_keeps_the_most_recently_used(void)
{
    struct fixture f;
    setup(&f, 1, 4, 2, 60000);
    resolve_now(&f, "fast.test", RESOLVE_PENDING);
    resolve_now(&f, "other.test", RESOLVE_PENDING);
    resolve_now(&f, "fast.test", RESOLVE_ANSWERED); /* fast is now the most recent */
    resolve_now(&f, "third.test", RESOLVE_PENDING); /* evicts other */
    resolve_now(&f, "fast.test", RESOLVE_ANSWERED);
    resolve_now(&f, "third.test", RESOLVE_ANSWERED);
    resolve_now(&f, "other.test", RESOLVE_PENDING);
    struct resolver_stats st;
    resolver_get_stats(f.r, &st);
    CHECK_EQ(st.cached, 2);
    teardown(&f);
}

static void test_failures_are_not_cached(void)
{
    struct fixture f;
    setup(&f, 1, 4, 16, 60000);
    struct outcome o;
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(start(&f, "fail.test", &o, NULL), RESOLVE_PENDING);
        CHECK(wait_done(&f, &o, 1000));
        CHECK_EQ(o.status, UV_EAI_NONAME);
    }
    CHECK_EQ(calls_of("fail.test"), 2);
    teardown(&f);
}

static void test_cancelled_queued_lookup_never_takes_a_thread(void)
{
    struct fixture f;
    setup(&f, 1, 1, 16, 60000);
    struct outcome a, b, c;
    struct resolve_req *breq;
    CHECK_EQ(start(&f, "slow0.test", &a, NULL), RESOLVE_PENDING);
    CHECK(wait_running(&f, 1));
    CHECK_EQ(start(&f, "slow1.test", &b, &breq), RESOLVE_PENDING);
    resolve_cancel(breq);
    CHECK(wait_done(&f, &b, 1000));
    CHECK_EQ(b.status, UV_ECANCELED);
    /* Its queue slot is free again. */
    CHECK_EQ(start(&f, "slow2.test", &c, NULL), RESOLVE_PENDING);
    release_slow(true);
    CHECK(wait_done(&f, &a, 2000) && wait_done(&f, &c, 2000));
    CHECK_EQ(calls_of("slow1.test"), 0);
    teardown(&f);
}

static void test_cancelled_running_lookup_still_fills_the_cache(void)
{
    struct fixture f;
    setup(&f, 1, 1, 16, 60000);
    struct outcome a, again;
    struct resolve_req *req;
    CHECK_EQ(start(&f, "slow0.test", &a, &req), RESOLVE_PENDING);
    CHECK(wait_running(&f, 1));
    resolve_cancel(req);
    CHECK(wait_done(&f, &a, 1000));
    CHECK_EQ(a.status, UV_ECANCELED);
    release_slow(true);
    CHECK(wait_running(&f, 0));
    usleep(10 * 1000);
    CHECK_EQ(start(&f, "slow0.test", &again, NULL), RESOLVE_ANSWERED);
    CHECK_EQ(calls_of("slow0.test"), 1);
    teardown(&f);
}

static void test_free_waits_for_a_lookup_in_flight_only_so_long(void)
{
    struct fixture f;
    setup(&f, 2, 1, 16, 60000);
    struct outcome a;
    struct resolve_req *req;
    CHECK_EQ(start(&f, "slow0.test", &a, &req), RESOLVE_PENDING);
    CHECK(wait_running(&f, 1));
    resolve_cancel(req);
    resolver_client_close(f.rc);
    CHECK(a.done);
    uv_run(&f.loop, UV_RUN_DEFAULT);
    CHECK_EQ(uv_loop_close(&f.loop), 0);
    uint64_t t0 = ms_now();
    resolver_free(f.r, 100); /* the slow thread is left behind, with the resolver */
    CHECK(ms_now() - t0 < 1000);
    release_slow(true);
    usleep(50 * 1000); /* let it leave */
}

int main(void)
{
    RUN(test_slow_lookups_hold_only_their_own_threads);
    RUN(test_full_queue_refuses_at_once_and_askers_share_a_lookup);
    RUN(test_cached_answer_needs_no_thread);
    RUN(test_cached_answer_expires);
    RUN(test_no_cache_when_ttl_is_zero);
    RUN(test_cache_keeps_the_most_recently_used);
    RUN(test_failures_are_not_cached);
    RUN(test_cancelled_queued_lookup_never_takes_a_thread);
    RUN(test_cancelled_running_lookup_still_fills_the_cache);
    RUN(test_free_waits_for_a_lookup_in_flight_only_so_long);
    return test_report();
}
