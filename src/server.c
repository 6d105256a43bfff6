/* SPDX-License-Identifier: MIT */
/* server: start-up, workers and signals. The main thread loads the CA, TLS contexts and policy,
 * starts one worker thread per core (each with its own loop and SO_REUSEPORT listener) and then
 * only handles signals: SIGHUP reloads the policy (validated first, swapped as a snapshot),
 * SIGUSR1 reopens the log, SIGTERM/SIGINT drain and stop. */
#include "airlock/server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "airlock/admin.h"
#include "airlock/ca.h"
#include "airlock/conn.h"
#include "airlock/creds.h"
#include "airlock/dial.h"
#include "airlock/metrics.h"
#include "airlock/policy.h"
#include "airlock/proxy.h"
#include "airlock/resolve.h"
#include "airlock/tls.h"

#define MAX_WORKERS 64

enum worker_request { WORKER_RUN = 0, WORKER_DRAIN = 1, WORKER_STOP = 2 };

static struct server the_server;
static atomic_uint reload_generation; /* bumped by every successful reload */
static struct worker *workers[MAX_WORKERS];
static atomic_int worker_requests[MAX_WORKERS];
static unsigned nworkers;

void server_config_defaults(struct server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ca_dir = "certs";
    cfg->policy_file = "policy/default.json";
    cfg->log_format = isatty(STDERR_FILENO) ? LOG_TEXT : LOG_JSON;
    cfg->log_level = LOG_INFO;
    cfg->idle_timeout_ms = 120000;
    cfg->drain_timeout_ms = 30000;
    cfg->connect_timeout_ms = 10000;
    cfg->handshake_timeout_ms = 10000;
    cfg->head_timeout_ms = 30000;
    cfg->response_timeout_ms = 300000;
    cfg->tunnel_idle_timeout_ms = 0;
    cfg->http_limits = http_default_limits;
    cfg->resolver_threads = 8;
    cfg->resolver_queue = 128;
    cfg->dns_cache_ttl_ms = 30000;
}

struct policy *server_policy(struct server *s)
{
    uv_mutex_lock(&s->policy_lock);
    struct policy *p = s->policy;
    policy_ref(p);
    uv_mutex_unlock(&s->policy_lock);
    return p;
}

struct creds *server_creds(struct server *s)
{
    uv_mutex_lock(&s->policy_lock);
    struct creds *c = s->creds;
    if (c)
        creds_ref(c);
    uv_mutex_unlock(&s->policy_lock);
    return c;
}

/* ---- listening sockets ------------------------------------------------------------------- */

/* A listening socket with SO_REUSEPORT, so every worker accepts on the same port and the
 * kernel spreads connections. libuv 1.44 cannot set the option itself. */
static int open_listener(struct sockaddr_storage *ss)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (ss->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t len =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, (struct sockaddr *)ss, len) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    /* Port 0: every later worker binds the port the first one got. */
    getsockname(fd, (struct sockaddr *)ss, &len);
    return fd;
}

/* ---- workers ----------------------------------------------------------------------------- */

/* ---- accepting --------------------------------------------------------------------------- */

#define ACCEPT_BATCH    64  /* accepts per wakeup, so one busy listener cannot starve the loop */
#define ACCEPT_PAUSE_MS 100 /* no descriptor even for a refusal: wait before trying again */

#define REFUSAL_BODY                                                                               \
    "{\"error\":\"too_many_connections\",\"detail\":\"airlock is out of file descriptors\"}\n"

static void on_listener_readable(uv_poll_t *p, int status, int events);

/* The answer and the close, without a connection object: best effort, never blocking. The
 * client's bytes that already arrived are read first, so that the close is a FIN, not a reset
 * that could destroy the answer in flight. */
static void refuse_accepted(int fd)
{
    char answer[256];
    int n = snprintf(answer, sizeof answer,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof REFUSAL_BODY - 1, REFUSAL_BODY);
    (void)!send(fd, answer, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    char sink[4096];
    for (int i = 0; i < 16 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; i++)
        ;
    close(fd);
}

/* One log line per second at most: a flood must not become a flood of lines. */
static void log_fd_refusals(struct worker *w, uint64_t n, int err)
{
    w->fd_refusals_unlogged += n;
    uint64_t now = uv_now(&w->loop);
    if (w->fd_refusal_logged_at && now - w->fd_refusal_logged_at < 1000)
        return;
    w->fd_refusal_logged_at = now;
    log_msg(LOG_ERROR,
            "out of file descriptors (%s): %llu clients answered 503%s; lower --max-connections "
            "or raise the descriptor limit",
            strerror(err), (unsigned long long)w->fd_refusals_unlogged,
            n ? "" : ", accepting paused");
    w->fd_refusals_unlogged = 0;
}

static void set_accepting(struct worker *w, bool on)
{
    for (size_t i = 0; i < w->nlisteners; i++) {
        uv_poll_t *p = &w->listeners[i].poll;
        if (uv_is_closing((uv_handle_t *)p))
            continue;
        if (on)
            uv_poll_start(p, UV_READABLE, on_listener_readable);
        else
            uv_poll_stop(p);
    }
}

static void on_accept_pause_over(uv_timer_t *t)
{
    struct worker *w = t->data;
    if (w->draining)
        return;
    if (w->reserve_fd < 0)
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    set_accepting(w, true);
}

/* accept failed for want of a descriptor. The kernel keeps the pending connections queued, so
 * the listener stays readable: unless they are taken off the queue, the loop spins. The
 * reserve descriptor makes room to accept each one, answer 503 and close it. */
static void refuse_without_fds(struct worker *w, struct listener *l, int err)
{
    uint64_t n = 0;
    if (w->reserve_fd >= 0) {
        close(w->reserve_fd);
        w->reserve_fd = -1;
        int fd;
        while ((fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            refuse_accepted(fd);
            n++;
        }
        err = n ? err : errno;
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    metrics_add(M_CONN_REFUSED_FDS, n);
    log_fd_refusals(w, n, err);
    /* Another thread took the freed slot, or the system is out (ENFILE): stop polling for a
     * moment instead of spinning on a readable listener. */
    if (n == 0 || w->reserve_fd < 0) {
        set_accepting(w, false);
        uv_timer_start(&w->accept_pause, on_accept_pause_over, ACCEPT_PAUSE_MS, 0);
    }
}

static void on_listener_readable(uv_poll_t *p, int status, int events)
{
    struct listener *l = p->data;
    struct worker *w = l->w;
    if (status < 0) {
        log_msg(LOG_WARN, "listener: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            conn_accept(w, l, fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            refuse_without_fds(w, l, errno);
            return;
        }
        /* ECONNABORTED, EINTR, and network errors Linux passes on (accept(2)): the next
         * pending connection may be fine. */
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    close(l->fd);
    l->fd = -1;
}

static void close_listeners(struct worker *w)
{
    uv_timer_stop(&w->accept_pause);
    for (size_t i = 0; i < w->nlisteners; i++)
        if (!uv_is_closing((uv_handle_t *)&w->listeners[i].poll))
            uv_close((uv_handle_t *)&w->listeners[i].poll, on_listener_closed);
}

static void on_wakeup(uv_async_t *a)
{
    struct worker *w = a->data;
    int req = atomic_load(&worker_requests[w->index]);
    if (req >= WORKER_DRAIN && !w->draining) {
        w->draining = true;
        close_listeners(w);
        /* Idle connections go now; busy ones end after their exchange (relay). */
        for (struct conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            if (w->session->drain && w->session->drain(c))
                continue;
            if (w->session->idle(c))
                conn_finish(c, "draining");
        }
    }
    unsigned gen = atomic_load(&reload_generation);
    if (gen != w->seen_reload && !w->stopping) {
        /* A reload: live piped connections stay only if the new policy still allows them
         * (requests inside tunnels pick the new snapshot up on their own). */
        w->seen_reload = gen;
        struct policy *p = server_policy(w->server);
        for (struct conn *c = w->conns, *next; c; c = next) {
            next = c->next;
            w->session->recheck(c, p);
        }
        policy_unref(p);
    }
    if (req == WORKER_STOP && !w->stopping) {
        w->stopping = true;
        for (struct conn *c = w->conns; c; c = c->next)
            conn_close(c, "stopping");
        /* After the closes: they cancelled every lookup, whose callbacks run now. */
        resolver_client_close(w->resolver);
        w->resolver = NULL;
        uv_close((uv_handle_t *)&w->accept_pause, NULL);
        if (w->reserve_fd >= 0)
            close(w->reserve_fd);
        w->reserve_fd = -1;
        uv_close((uv_handle_t *)&w->wakeup, NULL);
        uv_close((uv_handle_t *)&w->kick, NULL);
    }
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static void close_unless_closing(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Undo a worker_start that failed before its thread ran: close every handle it opened (the
 * resolver client's close frees the client), run the loop until the closes are done, so that
 * uv_loop_close can free the loop before the worker is. The listening descriptors stay with
 * the caller: a poll handle's close leaves its fd open. */
static void worker_unwind(struct worker *w)
{
    if (w->resolver)
        resolver_client_close(w->resolver);
    w->resolver = NULL;
    uv_walk(&w->loop, close_unless_closing, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0)
        log_msg(LOG_ERROR, "worker %u: handles left open after a failed start", w->index);
    if (w->reserve_fd >= 0)
        close(w->reserve_fd);
    w->reserve_fd = -1;
}

/* Its loop, its wakeup and idle handles, its resolver client and its listeners, then its
 * thread. On failure nothing of it is left open (worker_unwind) and w may be freed. */
static int worker_start(struct worker *w, const int *fds, size_t nfds, const bool *transparent,
                        const struct sockaddr_storage *addrs)
{
    w->reserve_fd = -1;
    int r = uv_loop_init(&w->loop);
    if (r < 0)
        return r;
    w->wakeup.data = w;
    w->kick.data = w;
    w->accept_pause.data = w;
    if ((r = uv_async_init(&w->loop, &w->wakeup, on_wakeup)) < 0 ||
        (r = uv_idle_init(&w->loop, &w->kick)) < 0 ||
        (r = uv_timer_init(&w->loop, &w->accept_pause)) < 0)
        goto fail;
    w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!(w->resolver = resolver_client_new(w->server->resolver, &w->loop))) {
        r = UV_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < nfds; i++) {
        struct listener *l = &w->listeners[i];
        if (listen(fds[i], 1024) < 0) {
            r = -errno;
            goto fail;
        }
        if ((r = uv_poll_init_socket(&w->loop, &l->poll, fds[i])) < 0)
            goto fail;
        l->fd = fds[i];
        l->w = w;
        l->transparent = transparent[i];
        socklen_t alen = sizeof l->addr;
        if (getsockname(fds[i], (struct sockaddr *)&l->addr, &alen) < 0)
            l->addr = addrs[i]; /* as asked (port 0 stays unknown) */
        l->poll.data = l;
        w->nlisteners++;
        uv_poll_start(&l->poll, UV_READABLE, on_listener_readable);
    }
    if ((r = uv_thread_create(&w->thread, worker_main, w)) < 0)
        goto fail;
    return 0;
fail:
    worker_unwind(w);
    return r;
}

static void tell_workers(enum worker_request req)
{
    for (unsigned i = 0; i < nworkers; i++) {
        atomic_store(&worker_requests[i], req);
        uv_async_send(&workers[i]->wakeup);
    }
}

static void tell_workers_reloaded(void)
{
    atomic_fetch_add(&reload_generation, 1);
    for (unsigned i = 0; i < nworkers; i++)
        uv_async_send(&workers[i]->wakeup);
}

/* ---- memory after bursts ----------------------------------------------------------------- */

/* glibc keeps freed heap memory for reuse. After a burst of connections ends, its free chunks
 * lie between a few that stay in use (a cached leaf, a session, the next connection), so no
 * heap top shrinks and RSS stayed ~35 MiB above its baseline after 500 abandoned handshakes;
 * a lower M_TRIM_THRESHOLD or M_ARENA_MAX did not change that (docs/operations.md "Memory").
 * malloc_trim(0) releases the free pages inside every arena. The main thread looks once a
 * second at the peak of open connections since its last look and trims when the count has
 * fallen by TRIM_DROP from it: a burst ended. A steady load, however much churn it has, keeps
 * its peak near its current count and is never trimmed (it would only fault the pages back). */
#define TRIM_CHECK_MS 1000
#define TRIM_DROP     64

static uv_timer_t trim_timer;
static int64_t trim_peak; /* the highest open-connection count since the last trim */

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void on_trim_tick(uv_timer_t *t)
{
    int64_t peak = metrics_gauge_peak(G_CONN_ACTIVE);
    int64_t now_open = (int64_t)conn_live_count();
    if (peak > trim_peak)
        trim_peak = peak;
    if (trim_peak - now_open < TRIM_DROP)
        return;
    long before = rss_kib();
    uint64_t t0 = uv_hrtime();
    malloc_trim(0);
    log_msg(
        LOG_DEBUG,
        "memory: %lld connections closed since the peak, trimmed in %.1f ms, RSS %ld -> %ld KiB",
        (long long)(trim_peak - now_open), (double)(uv_hrtime() - t0) / 1e6, before, rss_kib());
    trim_peak = now_open;
}

/* ---- signals and drain ------------------------------------------------------------------- */

static uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
/* File watches: the directories of the policy and providers files (editors replace a file by
 * renaming a new one over it, which an inode watch on the file itself would miss). */
static uv_fs_event_t watch_policy, watch_providers;
static bool watch_policy_on, watch_providers_on;
static uv_timer_t reload_debounce;
static uv_timer_t drain_timer;
static uint64_t drain_started;
static bool stopping;

static void reload_policy(void)
{
    struct server *s = &the_server;
    char *errors = NULL;
    /* Both files are validated before either is swapped: a half-applied reload could pair a
     * new policy with stale credentials. */
    struct policy *p = policy_load_file(s->cfg->policy_file, &errors);
    if (!p) {
        log_msg(LOG_ERROR, "policy reload failed, keeping the current policy:\n%s",
                errors ? errors : "unknown error");
        free(errors);
        metrics_inc(M_POLICY_RELOADS_FAILED);
        return;
    }
    struct creds *cr = NULL;
    if (s->cfg->providers_file && !(cr = creds_load_file(s->cfg->providers_file, &errors))) {
        log_msg(LOG_ERROR, "providers reload failed, keeping the current policy and providers:\n%s",
                errors ? errors : "unknown error");
        free(errors);
        policy_unref(p);
        metrics_inc(M_POLICY_RELOADS_FAILED);
        return;
    }
    uv_mutex_lock(&s->policy_lock);
    struct policy *old = s->policy;
    struct creds *old_creds = s->creds;
    s->policy = p;
    s->creds = cr;
    uv_mutex_unlock(&s->policy_lock);
    policy_unref(old);
    if (old_creds)
        creds_unref(old_creds);
    metrics_inc(M_POLICY_RELOADS_OK);
    log_msg(LOG_INFO, "policy reloaded from %s (%zu endpoints%s)", s->cfg->policy_file,
            policy_endpoint_count(p), cr ? ", providers reloaded" : "");
    tell_workers_reloaded();
}

static void on_reload_debounced(uv_timer_t *t)
{
    log_msg(LOG_INFO, "policy or providers file changed: reloading");
    reload_policy();
}

static void on_watched_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    const char *want = h->data;
    if (status < 0 || (filename && strcmp(filename, want) != 0))
        return;
    /* Writers often produce several events per save: reload once they settle. */
    uv_timer_start(&reload_debounce, on_reload_debounced, 200, 0);
}

static bool watch_file(uv_loop_t *loop, uv_fs_event_t *h, const char *path)
{
    static char dirs[2][4096];
    static int used;
    if (!path || used == 2)
        return false;
    char *dir = dirs[used++];
    snprintf(dir, sizeof dirs[0], "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = path;
    if (slash) {
        *slash = '\0';
        base = path + (slash - dir) + 1;
        if (dir[0] == '\0')
            strcpy(dir, "/");
    } else {
        strcpy(dir, ".");
    }
    uv_fs_event_init(loop, h);
    h->data = (void *)base;
    if (uv_fs_event_start(h, on_watched_change, dir, 0) < 0) {
        log_msg(LOG_WARN, "cannot watch %s for changes; reload with SIGHUP", path);
        uv_close((uv_handle_t *)h, NULL);
        return false;
    }
    return true;
}

static void stop_main_handles(void)
{
    static bool stopped;
    if (stopped)
        return;
    stopped = true;
    if (watch_policy_on)
        uv_close((uv_handle_t *)&watch_policy, NULL);
    if (watch_providers_on)
        uv_close((uv_handle_t *)&watch_providers, NULL);
    watch_policy_on = watch_providers_on = false;
    uv_close((uv_handle_t *)&reload_debounce, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_hup, NULL);
    uv_close((uv_handle_t *)&sig_usr1, NULL);
    uv_close((uv_handle_t *)&drain_timer, NULL);
    uv_close((uv_handle_t *)&trim_timer, NULL);
    admin_stop();
}

static void on_drain_tick(uv_timer_t *t)
{
    uint64_t waited = uv_now(t->loop) - drain_started;
    if (conn_live_count() == 0 || waited >= the_server.cfg->drain_timeout_ms) {
        if (conn_live_count())
            log_msg(LOG_WARN, "drain timeout: closing %zu connections", conn_live_count());
        tell_workers(WORKER_STOP);
        stop_main_handles();
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    if (signum == SIGHUP) {
        reload_policy();
        return;
    }
    if (signum == SIGUSR1) {
        log_reopen();
        return;
    }
    if (stopping) {
        /* A second SIGTERM/SIGINT: stop now. */
        uv_timer_stop(&drain_timer);
        drain_started = 0;
        the_server.cfg = the_server.cfg;
        tell_workers(WORKER_STOP);
        stop_main_handles();
        return;
    }
    stopping = true;
    admin_set_draining();
    log_msg(LOG_INFO, "%s: draining (up to %llu ms)", signum == SIGTERM ? "SIGTERM" : "SIGINT",
            (unsigned long long)the_server.cfg->drain_timeout_ms);
    tell_workers(WORKER_DRAIN);
    drain_started = uv_now(h->loop);
    uv_timer_start(&drain_timer, on_drain_tick, 50, 50);
}

/* ---- file descriptors -------------------------------------------------------------------- */

/* What one client connection may hold: its socket, and the upstream's or, while it dials, the
 * attempts of its address race (dial.h bounds them). */
#define FDS_PER_CONNECTION (1 + DIAL_MAX_IN_FLIGHT)

/* Raise the soft RLIMIT_NOFILE to the hard limit: a proxy's connections are descriptors, and
 * the usual soft default (1024) is a limit nobody chose for it. Returns the limit in force. */
static uint64_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    rlim_t want = rl.rlim_max;
    if (want == RLIM_INFINITY)
        want = 1 << 20; /* the kernel's default nr_open: setrlimit refuses more */
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
        return rl.rlim_cur == RLIM_INFINITY ? (uint64_t)want : (uint64_t)rl.rlim_cur;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        log_msg(LOG_WARN, "cannot raise the file descriptor limit from %llu to %llu: %s",
                (unsigned long long)old, (unsigned long long)want, strerror(errno));
        return old;
    }
    log_msg(LOG_INFO, "file descriptor limit raised from %llu to %llu", (unsigned long long)old,
            (unsigned long long)want);
    return want;
}

/* Descriptors that are not client connections: stdio, the log, per worker its loop, wakeups,
 * listeners and reserve, DNS sockets of the resolver threads, /proc reads of binary identity,
 * policy and CA files on reload, the admin endpoint. Generous on purpose. */
static uint64_t fds_reserved(unsigned nworker, size_t nlisten, unsigned resolver_threads)
{
    return 64 + (uint64_t)nworker * (8 + nlisten) + 2 * (uint64_t)resolver_threads;
}

/* The connection limit in force: the operator's, or what the descriptor limit leaves room
 * for. Either way, past it clients get 503 instead of a reset when descriptors run out. */
static size_t connection_limit(const struct server_config *cfg, uint64_t fd_limit, unsigned nworker,
                               size_t nlisten)
{
    uint64_t reserved = fds_reserved(nworker, nlisten, cfg->resolver_threads);
    uint64_t fit =
        fd_limit > reserved + FDS_PER_CONNECTION ? (fd_limit - reserved) / FDS_PER_CONNECTION : 1;
    if (cfg->max_connections == 0) {
        log_msg(LOG_INFO,
                "--max-connections %llu (derived from the file descriptor limit %llu; beyond "
                "it clients get 503)",
                (unsigned long long)fit, (unsigned long long)fd_limit);
        return (size_t)fit;
    }
    if (cfg->max_connections > fit)
        log_msg(LOG_WARN,
                "--max-connections %zu is more than the file descriptor limit %llu leaves room "
                "for (about %llu): past that, clients are refused only as descriptors run out",
                cfg->max_connections, (unsigned long long)fd_limit, (unsigned long long)fit);
    return cfg->max_connections;
}

/* ---- run --------------------------------------------------------------------------------- */

/* What server_run sets up beyond the_server and the main-loop handles, for teardown to undo. */
struct run {
    const char *listen[SERVER_MAX_LISTEN]; /* --listen (or the default), then --transparent */
    bool transparent[SERVER_MAX_LISTEN];
    size_t nlisten;
    struct sockaddr_storage addrs[SERVER_MAX_LISTEN];
    int fds[SERVER_MAX_LISTEN * MAX_WORKERS]; /* per worker, its nlisten bound sockets; -1 once a
                                               * worker's listener owns one */
    size_t nfds;
    uv_loop_t *main_loop;
};

/* --mark: that this process may mark its sockets, before anything is dialled (a mark that
 * cannot be set would fail every upstream connection). 0, or 1 with the reason logged. */
static int check_upstream_mark(const struct server_config *cfg)
{
    if (!cfg->upstream_mark)
        return 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_MARK, &cfg->upstream_mark, sizeof cfg->upstream_mark) < 0) {
        log_msg(LOG_ERROR,
                "--mark %" PRIu32 ": cannot mark sockets (%s): setting SO_MARK needs "
                "CAP_NET_ADMIN in airlock's network namespace",
                cfg->upstream_mark, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    close(fd);
    return 0;
}

/* The TLS contexts, the policy, the providers and the CA: 0, or 1 (a configuration error). The
 * CA comes after the files are known to be valid, so a typo in a policy does not leave a fresh
 * CA behind. */
static int load_configuration(struct server *s)
{
    const struct server_config *cfg = s->cfg;
    char err[512], *errors = NULL;
    if (check_upstream_mark(cfg))
        return 1;
    if (!(s->client_ctx = tls_server_ctx_new(err, sizeof err)) ||
        !(s->upstream_ctx =
              tls_client_ctx_new(cfg->upstream_ca, cfg->upstream_ca_only, err, sizeof err))) {
        log_msg(LOG_ERROR, "TLS setup: %s", err);
        return 1;
    }
    if (!(s->policy = policy_load_file(cfg->policy_file, &errors))) {
        log_msg(LOG_ERROR, "invalid policy %s:\n%s", cfg->policy_file, errors ? errors : "");
        free(errors);
        return 1;
    }
    if (cfg->providers_file && !(s->creds = creds_load_file(cfg->providers_file, &errors))) {
        log_msg(LOG_ERROR, "invalid providers %s:\n%s", cfg->providers_file, errors ? errors : "");
        free(errors);
        return 1;
    }
    if (!ca_exists(cfg->ca_dir)) {
        if (ca_create(cfg->ca_dir, false, err, sizeof err) < 0) {
            log_msg(LOG_ERROR, "cannot create the CA in %s: %s", cfg->ca_dir, err);
            return 1;
        }
        log_msg(LOG_INFO, "created a new CA in %s (trust %s/ca.pem in the sandbox)", cfg->ca_dir,
                cfg->ca_dir);
    }
    if (!(s->ca = ca_load(cfg->ca_dir, err, sizeof err))) {
        log_msg(LOG_ERROR, "cannot load the CA from %s: %s", cfg->ca_dir, err);
        return 1;
    }
    /* A CA made by an older airlock has no Java trust store yet. Not fatal: a read-only CA
     * directory serves every client but Java's. */
    int w = ca_write_truststore(cfg->ca_dir, ca_cert(s->ca), err, sizeof err);
    if (w < 0)
        log_msg(LOG_WARN, "Java clients will not trust this CA: %s", err);
    else if (w > 0)
        log_msg(LOG_INFO, "wrote %s/%s (the CA for Java clients)", cfg->ca_dir, CA_TRUSTSTORE);
    return 0;
}

/* The worker count and connection limit, then one bound socket per --listen address per
 * worker (SO_REUSEPORT). 0, 1 for an address that does not parse, 2 for one that cannot be
 * bound. */
static int open_listeners(struct server *s, struct run *r)
{
    static const char *const listen_default[] = {"127.0.0.1:3128"};
    const struct server_config *cfg = s->cfg;
    nworkers = cfg->workers ? cfg->workers : uv_available_parallelism();
    if (nworkers > MAX_WORKERS)
        nworkers = MAX_WORKERS;
    r->nlisten = 0;
    for (size_t i = 0; i < cfg->nlisten; i++)
        r->listen[r->nlisten++] = cfg->listen[i];
    if (r->nlisten == 0 && cfg->ntransparent == 0)
        r->listen[r->nlisten++] = listen_default[0];
    for (size_t i = 0; i < cfg->ntransparent && r->nlisten < SERVER_MAX_LISTEN; i++) {
        r->transparent[r->nlisten] = true;
        r->listen[r->nlisten++] = cfg->transparent[i];
    }
    s->max_connections = connection_limit(cfg, raise_fd_limit(), nworkers, r->nlisten);
    for (size_t i = 0; i < r->nlisten; i++) {
        if (addr_parse_hostport(r->listen[i], &r->addrs[i]) < 0) {
            log_msg(LOG_ERROR, "--%s %s: expected IP:PORT or [IPv6]:PORT",
                    r->transparent[i] ? "transparent" : "listen", r->listen[i]);
            return 1;
        }
    }
    for (unsigned wi = 0; wi < nworkers; wi++) {
        for (size_t i = 0; i < r->nlisten; i++) {
            int fd = open_listener(&r->addrs[i]);
            if (fd < 0) {
                log_msg(LOG_ERROR, "cannot listen on %s: %s", r->listen[i], strerror(-fd));
                return 2;
            }
            r->fds[r->nfds++] = fd;
        }
    }
    for (size_t i = 0; i < r->nlisten; i++) {
        char endpoint[64];
        addr_format_endpoint((struct sockaddr *)&r->addrs[i], endpoint, sizeof endpoint);
        log_msg(LOG_INFO, "listening on %s%s (%u workers, policy %s: %zu endpoints)", endpoint,
                r->transparent[i] ? " for redirected connections" : "", nworkers,
                s->cfg->policy_file, policy_endpoint_count(s->policy));
    }
    return 0;
}

/* Close the main loop's handles and run it until their closes are done. */
static void stop_main_loop(struct run *r)
{
    stop_main_handles();
    uv_run(r->main_loop, UV_RUN_DEFAULT);
}

/* The main loop's signals, timers and file watches, then the admin endpoint: 0, or 1 for a bad
 * --admin or --health (before any worker starts, so that it is a configuration error with
 * nothing to stop yet). */
static int start_main_loop(struct server *s, struct run *r)
{
    const struct server_config *cfg = s->cfg;
    uv_loop_t *loop = r->main_loop = uv_default_loop();
    char err[512];
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_hup);
    uv_signal_init(loop, &sig_usr1);
    uv_timer_init(loop, &drain_timer);
    uv_timer_init(loop, &reload_debounce);
    uv_timer_init(loop, &trim_timer);
    uv_timer_start(&trim_timer, on_trim_tick, TRIM_CHECK_MS, TRIM_CHECK_MS);
    watch_policy_on = watch_file(loop, &watch_policy, cfg->policy_file);
    watch_providers_on = watch_file(loop, &watch_providers, cfg->providers_file);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_hup, on_signal, SIGHUP);
    uv_signal_start(&sig_usr1, on_signal, SIGUSR1);
    if ((cfg->admin || cfg->health) && admin_start(loop, s, err, sizeof err) < 0) {
        log_msg(LOG_ERROR, "%s", err);
        stop_main_loop(r);
        return 1;
    }
    return 0;
}

/* The resolver threads, then the workers, each handed its listening sockets. 0 when at least
 * one worker runs (fewer than asked for are logged), else 2 with the main loop stopped. */
static int start_workers(struct server *s, struct run *r)
{
    const struct server_config *cfg = s->cfg;
    struct resolver_config rcfg = {.threads = cfg->resolver_threads,
                                   .max_queued = cfg->resolver_queue,
                                   .cache_entries = RESOLVE_CACHE_ENTRIES,
                                   .cache_ttl_ms = cfg->dns_cache_ttl_ms};
    if (!(s->resolver = resolver_new(&rcfg))) {
        log_msg(LOG_ERROR, "cannot start %u resolver threads: %s", cfg->resolver_threads,
                strerror(errno));
        stop_main_loop(r);
        return 2;
    }
    unsigned started = 0;
    for (unsigned wi = 0; wi < nworkers; wi++) {
        struct worker *w = calloc(1, sizeof *w);
        if (!w) {
            log_msg(LOG_ERROR, "out of memory");
            break;
        }
        w->server = s;
        w->session = &proxy_session; /* what every accepted connection becomes */
        w->index = wi;
        int rc = worker_start(w, r->fds + wi * r->nlisten, r->nlisten, r->transparent, r->addrs);
        if (rc < 0) {
            log_msg(LOG_ERROR, "worker %u: %s", wi, uv_strerror(rc));
            free(w); /* worker_start closed its loop */
            break;
        }
        workers[wi] = w;
        for (size_t i = 0; i < r->nlisten; i++)
            r->fds[wi * r->nlisten + i] = -1; /* the worker's listener owns it now */
        started++;
    }
    /* The sockets of workers that did not start: nobody would ever accept on them. */
    for (size_t i = (size_t)started * r->nlisten; i < r->nfds; i++) {
        close(r->fds[i]);
        r->fds[i] = -1;
    }
    nworkers = started;
    if (started == 0) {
        stop_main_loop(r);
        return 2;
    }
    return 0;
}

/* After the main loop returned (the workers were told to stop): wait for each worker's loop
 * to end and free it. */
static void join_workers(void)
{
    for (unsigned wi = 0; wi < nworkers; wi++) {
        uv_thread_join(&workers[wi]->thread);
        if (uv_loop_close(&workers[wi]->loop) != 0)
            log_msg(LOG_WARN, "worker %u: handles left open at exit", wi);
        free(workers[wi]);
        workers[wi] = NULL;
    }
}

/* Undo what the steps set up, whichever step stopped. */
static void teardown(struct server *s, struct run *r)
{
    for (size_t i = 0; i < r->nfds; i++)
        if (r->fds[i] >= 0)
            close(r->fds[i]);
    if (r->main_loop)
        uv_loop_close(r->main_loop);
    if (s->policy)
        policy_unref(s->policy);
    if (s->creds)
        creds_unref(s->creds);
    /* After the workers: their clients are closed. A lookup still blocked in the system
     * resolver is given a moment, not the whole resolver timeout. */
    resolver_free(s->resolver, 1000);
    SSL_CTX_free(s->client_ctx);
    SSL_CTX_free(s->upstream_ctx);
    ca_free(s->ca);
    uv_mutex_destroy(&s->policy_lock);
    log_close();
}

int server_run(const struct server_config *cfg)
{
    struct server *s = &the_server;
    struct run r = {0};
    int rc;
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    uv_mutex_init(&s->policy_lock);
    signal(SIGPIPE, SIG_IGN);

    int log_rc = log_open(cfg->log_file, cfg->log_format, cfg->log_level);
    if (log_rc < 0) {
        fprintf(stderr, "airlock: cannot open log file %s: %s\n", cfg->log_file, strerror(-log_rc));
        rc = 1;
    } else if ((rc = load_configuration(s)) == 0 && (rc = open_listeners(s, &r)) == 0 &&
               (rc = start_main_loop(s, &r)) == 0 && (rc = start_workers(s, &r)) == 0) {
        /* Until SIGTERM or SIGINT has drained the workers and closed the main handles. */
        uv_run(r.main_loop, UV_RUN_DEFAULT);
        join_workers();
        log_msg(LOG_INFO, "stopped");
    }
    teardown(s, &r);
    return rc;
}
