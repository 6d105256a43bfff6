/* SPDX-License-Identifier: MIT */
/* resolve: getaddrinfo blocks, and a slow name holds its thread for as long as the system
 * resolver waits (resolv.conf's timeout times its attempts), whoever gave up on it meanwhile.
 * So lookups get threads of their own, nothing else queues behind them, the queue in front of
 * them is bounded, concurrent askers of one name share one lookup, and recent answers are
 * reused without any thread at all. Everything shared sits under one mutex; callbacks run on
 * the asker's loop, delivered through its client's uv_async_t.
 *
 * Why a fixed cache lifetime and not the records' TTLs: getaddrinfo does not report TTLs, and
 * querying DNS directly (res_nquery) would bypass /etc/hosts, nsswitch and the RFC 6724
 * address ordering that getaddrinfo applies. A short fixed lifetime (30 s by default) bounds
 * staleness instead; the answers are vetted again on every use, so a cached answer never
 * widens what the SSRF guard lets through. */
#include "airlock/resolve.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "airlock/log.h"
#include "airlock/metrics.h"

enum entry_state { E_QUEUED, E_RUNNING, E_READY };

/* One name: a lookup waiting for a thread, running, or a cached answer. */
struct entry {
    struct entry *hnext;               /* hash chain */
    struct entry *lru_prev, *lru_next; /* E_READY only; most recently used first */
    struct entry *qnext;               /* E_QUEUED only */
    struct resolve_req *waiters;       /* E_QUEUED and E_RUNNING */
    enum entry_state state;
    uint64_t expires_ms;
    struct resolve_answer ans;
    char host[];
};

struct resolve_req {
    struct resolve_req *next, *prev; /* among the entry's waiters, then on the done list */
    struct entry *entry;             /* while waiting; NULL once the outcome is known */
    struct resolver_client *client;
    resolve_cb cb;
    void *data;
    int status;
    struct resolve_answer ans;
};

struct resolver_client {
    struct resolver *r;
    uv_async_t async;
    struct resolve_req *done, *done_tail; /* outcomes waiting for the loop */
    size_t outstanding;                   /* requests whose callback has not run */
    bool closed;
};

struct resolver {
    pthread_mutex_t lock;
    pthread_cond_t work;   /* a lookup was queued, or the pool stops */
    pthread_cond_t exited; /* a thread left */
    struct resolver_config cfg;
    struct entry **buckets;
    size_t nbuckets; /* a power of two */
    struct entry *queue_head, *queue_tail;
    struct entry *lru_head, *lru_tail;
    size_t queued, running, cached;
    unsigned alive; /* threads not yet exited */
    bool stopping;
    bool abandoned; /* resolver_free gave up waiting: the last thread out frees */
    uint64_t hits, lookups, joined, refused;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static bool caching(const struct resolver *r)
{
    return r->cfg.cache_entries > 0 && r->cfg.cache_ttl_ms > 0;
}

/* ---- the default lookup ------------------------------------------------------------------ */

static int eai_to_uv(int e)
{
    switch (e) {
    case EAI_AGAIN:
        return UV_EAI_AGAIN;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
        return UV_EAI_NONAME;
    case EAI_MEMORY:
        return UV_ENOMEM;
    case EAI_SYSTEM:
        return errno ? -errno : UV_EAI_FAIL;
    default:
        return UV_EAI_FAIL;
    }
}

int resolve_system_lookup(const char *host, struct resolve_answer *ans, void *arg)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int e = getaddrinfo(host, NULL, &hints, &res);
    if (e != 0)
        return eai_to_uv(e);
    ans->n = 0;
    for (struct addrinfo *ai = res; ai && ans->n < RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
        union resolve_addr *a = &ans->addrs[ans->n];
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof a->v4)
            memcpy(&a->v4, ai->ai_addr, sizeof a->v4);
        else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof a->v6)
            memcpy(&a->v6, ai->ai_addr, sizeof a->v6);
        else
            continue;
        ans->n++;
    }
    freeaddrinfo(res);
    return 0;
}

/* ---- the table (lock held) --------------------------------------------------------------- */

static size_t hash_host(const struct resolver *r, const char *host)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, case-folded: DNS names are */
    for (const unsigned char *p = (const unsigned char *)host; *p; p++) {
        unsigned char ch = *p >= 'A' && *p <= 'Z' ? (unsigned char)(*p + 32) : *p;
        h = (h ^ ch) * 1099511628211ull;
    }
    return (size_t)h & (r->nbuckets - 1);
}

static struct entry *table_find(struct resolver *r, const char *host)
{
    for (struct entry *e = r->buckets[hash_host(r, host)]; e; e = e->hnext)
        if (!strcasecmp(e->host, host))
            return e;
    return NULL;
}

static void table_remove(struct resolver *r, struct entry *e)
{
    struct entry **pp = &r->buckets[hash_host(r, e->host)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

static void lru_unlink(struct resolver *r, struct entry *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        r->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        r->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(struct resolver *r, struct entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = r->lru_head;
    if (r->lru_head)
        r->lru_head->lru_prev = e;
    r->lru_head = e;
    if (!r->lru_tail)
        r->lru_tail = e;
}

/* Forget a cached answer. */
static void drop_ready(struct resolver *r, struct entry *e)
{
    lru_unlink(r, e);
    table_remove(r, e);
    r->cached--;
    free(e);
}

static void queue_remove(struct resolver *r, struct entry *e)
{
    struct entry **pp = &r->queue_head, *prev = NULL;
    while (*pp != e) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    *pp = e->qnext;
    if (r->queue_tail == e)
        r->queue_tail = prev;
    e->qnext = NULL;
    r->queued--;
}

/* ---- completions ------------------------------------------------------------------------- */

static void waiter_unlink(struct resolve_req *req)
{
    struct entry *e = req->entry;
    if (req->prev)
        req->prev->next = req->next;
    else
        e->waiters = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->next = req->prev = NULL;
    req->entry = NULL;
}

/* Hand an outcome to the request's loop (lock held). */
static void post_done(struct resolve_req *req, int status, const struct resolve_answer *ans)
{
    struct resolver_client *rc = req->client;
    req->status = status;
    if (status == 0)
        req->ans = *ans;
    req->next = req->prev = NULL;
    if (rc->done_tail)
        rc->done_tail->next = req;
    else
        rc->done = req;
    rc->done_tail = req;
    if (!rc->closed)
        uv_async_send(&rc->async);
}

/* A lookup ended (lock held): tell every waiter, then cache the answer or forget the name. */
static void finish_lookup(struct resolver *r, struct entry *e, int status,
                          const struct resolve_answer *ans)
{
    while (e->waiters) {
        struct resolve_req *req = e->waiters;
        waiter_unlink(req);
        post_done(req, status, ans);
    }
    if (status != 0 || ans->n == 0 || !caching(r)) {
        table_remove(r, e);
        free(e);
        return;
    }
    e->state = E_READY;
    e->ans = *ans;
    e->expires_ms = now_ms() + r->cfg.cache_ttl_ms;
    lru_push_front(r, e);
    r->cached++;
    while (r->cached > r->cfg.cache_entries)
        drop_ready(r, r->lru_tail);
}

static void resolver_destroy(struct resolver *r);

static void *pool_thread(void *arg)
{
    struct resolver *r = arg;
    pthread_mutex_lock(&r->lock);
    while (!r->stopping) {
        struct entry *e = r->queue_head;
        if (!e) {
            pthread_cond_wait(&r->work, &r->lock);
            continue;
        }
        queue_remove(r, e);
        e->state = E_RUNNING;
        r->running++;
        pthread_mutex_unlock(&r->lock);
        struct resolve_answer ans = {0};
        int status = r->cfg.lookup(e->host, &ans, r->cfg.lookup_arg);
        pthread_mutex_lock(&r->lock);
        r->running--;
        finish_lookup(r, e, status, &ans);
    }
    r->alive--;
    bool last_out = r->alive == 0 && r->abandoned;
    pthread_cond_broadcast(&r->exited);
    pthread_mutex_unlock(&r->lock);
    if (last_out)
        resolver_destroy(r);
    return NULL;
}

/* ---- the resolver ------------------------------------------------------------------------ */

static void resolver_destroy(struct resolver *r)
{
    for (size_t i = 0; r->buckets && i < r->nbuckets; i++) {
        for (struct entry *e = r->buckets[i], *next; e; e = next) {
            next = e->hnext;
            free(e);
        }
    }
    free(r->buckets);
    pthread_cond_destroy(&r->work);
    pthread_cond_destroy(&r->exited);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

struct resolver *resolver_new(const struct resolver_config *cfg)
{
    struct resolver *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cfg = *cfg;
    if (!r->cfg.lookup)
        r->cfg.lookup = resolve_system_lookup;
    if (r->cfg.threads == 0)
        r->cfg.threads = 1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->work, NULL);
    pthread_cond_init(&r->exited, NULL);
    /* Room for every cached name plus every lookup in flight, at about one per chain. */
    size_t want = (caching(r) ? r->cfg.cache_entries : 0) + r->cfg.threads + r->cfg.max_queued;
    r->nbuckets = 64;
    while (r->nbuckets < want && r->nbuckets < ((size_t)1 << 24))
        r->nbuckets <<= 1;
    r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
    if (!r->buckets) {
        resolver_destroy(r);
        return NULL;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (unsigned i = 0; i < r->cfg.threads; i++) {
        pthread_t t;
        pthread_mutex_lock(&r->lock);
        int e = pthread_create(&t, &attr, pool_thread, r);
        if (e == 0)
            r->alive++;
        pthread_mutex_unlock(&r->lock);
        if (e != 0) {
            pthread_attr_destroy(&attr);
            resolver_free(r, UINT64_MAX);
            errno = e;
            return NULL;
        }
    }
    pthread_attr_destroy(&attr);
    return r;
}

void resolver_free(struct resolver *r, uint64_t wait_ms)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->work);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + (wait_ms > 3600000 ? 3600000 : wait_ms) * 1000000;
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec = (long)(ns % 1000000000);
    while (r->alive > 0)
        if (pthread_cond_timedwait(&r->exited, &r->lock, &until) == ETIMEDOUT)
            break;
    unsigned left = r->alive;
    /* A thread still inside getaddrinfo will find `stopping` when it returns; the last one
     * out frees the resolver (or the process exits first). */
    r->abandoned = left > 0;
    pthread_mutex_unlock(&r->lock);
    if (left > 0) {
        log_msg(LOG_WARN, "resolver: %u lookups still running at exit", left);
        return;
    }
    resolver_destroy(r);
}

void resolver_get_stats(struct resolver *r, struct resolver_stats *out)
{
    pthread_mutex_lock(&r->lock);
    out->cache_hits = r->hits;
    out->lookups = r->lookups;
    out->joined = r->joined;
    out->refused = r->refused;
    out->queued = r->queued;
    out->running = r->running;
    out->cached = r->cached;
    pthread_mutex_unlock(&r->lock);
}

/* ---- clients ----------------------------------------------------------------------------- */

/* Run the callbacks of every outcome posted for this client. */
static void deliver(struct resolver_client *rc)
{
    struct resolver *r = rc->r;
    pthread_mutex_lock(&r->lock);
    struct resolve_req *list = rc->done;
    rc->done = rc->done_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    while (list) {
        struct resolve_req *req = list;
        list = req->next;
        rc->outstanding--;
        req->cb(req, req->status, req->status == 0 ? &req->ans : NULL, req->data);
        free(req);
    }
}

static void on_async(uv_async_t *a)
{
    deliver(a->data);
}

struct resolver_client *resolver_client_new(struct resolver *r, uv_loop_t *loop)
{
    struct resolver_client *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->r = r;
    if (uv_async_init(loop, &rc->async, on_async) < 0) {
        free(rc);
        return NULL;
    }
    rc->async.data = rc;
    return rc;
}

static void on_client_closed(uv_handle_t *h)
{
    free(h->data);
}

void resolver_client_close(struct resolver_client *rc)
{
    pthread_mutex_lock(&rc->r->lock);
    rc->closed = true;
    pthread_mutex_unlock(&rc->r->lock);
    deliver(rc);
    /* A request neither finished nor cancelled would never call back: its owner would leak. */
    assert(rc->outstanding == 0);
    uv_close((uv_handle_t *)&rc->async, on_client_closed);
}

/* ---- requests ---------------------------------------------------------------------------- */

/* A fresh cached answer for host, or NULL (an expired one is dropped). Lock held. */
static struct entry *cache_lookup(struct resolver *r, const char *host)
{
    struct entry *e = table_find(r, host);
    if (!e || e->state != E_READY)
        return e;
    if (now_ms() >= e->expires_ms) {
        drop_ready(r, e);
        return NULL;
    }
    lru_unlink(r, e);
    lru_push_front(r, e);
    return e;
}

static void add_waiter(struct entry *e, struct resolve_req *req)
{
    req->entry = e;
    req->prev = NULL;
    req->next = e->waiters;
    if (e->waiters)
        e->waiters->prev = req;
    e->waiters = req;
}

int resolve_start(struct resolver_client *rc, const char *host, struct resolve_answer *ans,
                  resolve_cb cb, void *data, struct resolve_req **out)
{
    struct resolver *r = rc->r;
    size_t hlen = strlen(host);
    /* Allocated before the lock; freed again when the cache answers. */
    struct resolve_req *req = calloc(1, sizeof *req);
    struct entry *fresh = calloc(1, sizeof *fresh + hlen + 1);
    if (!req || !fresh) {
        free(req);
        free(fresh);
        return UV_ENOMEM;
    }
    req->client = rc;
    req->cb = cb;
    req->data = data;
    int rv = RESOLVE_PENDING;
    pthread_mutex_lock(&r->lock);
    struct entry *e = rc->closed ? NULL : cache_lookup(r, host);
    if (rc->closed) {
        rv = UV_ECANCELED;
    } else if (e && e->state == E_READY) {
        *ans = e->ans;
        r->hits++;
        rv = RESOLVE_ANSWERED;
    } else if (e) {
        add_waiter(e, req); /* the name is being looked up already: share it */
        r->joined++;
    } else if (r->running + r->queued >= r->cfg.threads + r->cfg.max_queued) {
        /* Every thread is busy and the queue is full. Waiting longer would only hold the
         * client until its connect timeout; a prompt refusal tells it to retry. */
        r->refused++;
        rv = UV_EAGAIN;
    } else {
        memcpy(fresh->host, host, hlen + 1);
        fresh->state = E_QUEUED;
        size_t b = hash_host(r, host);
        fresh->hnext = r->buckets[b];
        r->buckets[b] = fresh;
        if (r->queue_tail)
            r->queue_tail->qnext = fresh;
        else
            r->queue_head = fresh;
        r->queue_tail = fresh;
        r->queued++;
        r->lookups++;
        add_waiter(fresh, req);
        fresh = NULL;
        pthread_cond_signal(&r->work);
    }
    pthread_mutex_unlock(&r->lock);
    free(fresh);
    if (rv != RESOLVE_PENDING) {
        free(req);
        metrics_inc(rv == RESOLVE_ANSWERED ? M_DNS_CACHE_HITS : M_DNS_REFUSED);
        return rv;
    }
    metrics_inc(M_DNS_LOOKUPS);
    rc->outstanding++;
    *out = req;
    return RESOLVE_PENDING;
}

void resolve_cancel(struct resolve_req *req)
{
    struct resolver *r = req->client->r;
    pthread_mutex_lock(&r->lock);
    struct entry *e = req->entry;
    if (e) {
        waiter_unlink(req);
        post_done(req, UV_ECANCELED, NULL);
        /* Nobody wants this name any more: do not spend a thread on it. */
        if (!e->waiters && e->state == E_QUEUED) {
            queue_remove(r, e);
            table_remove(r, e);
            free(e);
        }
    }
    pthread_mutex_unlock(&r->lock);
}
