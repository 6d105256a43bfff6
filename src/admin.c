/* SPDX-License-Identifier: MIT */
/* admin: the operators' HTTP/1.1 endpoints on the main thread's loop: the admin listener
 * (--admin, TCP or a Unix socket) and the health-only listener (--health). It owns both
 * listeners and their connections (one calloc each, freed by the last of its two handle close
 * callbacks); it reads shared state only through metrics_render and server_policy. One request
 * per connection, answered with Connection: close. Invariant: a flood of connections can never
 * starve a probe: each listener holds at most ADMIN_MAX_CONNS open connections and each source
 * ADMIN_MAX_PER_SOURCE, and a new connection over a cap evicts one that has not been answered
 * (from the same source, else from the source holding the most, after reading what it already
 * sent) instead of being refused. */
#include "airlock/admin.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "airlock/http.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/policy.h"
#include "airlock/server.h"

#define ADMIN_MAX_CONNS      64 /* open connections per listener */
#define ADMIN_MAX_PER_SOURCE 8  /* per client address (TCP) or uid (Unix socket) */
/* Open plus closing. Evicted connections are freed on the next loop turn, and one turn accepts
 * up to ADMIN_ACCEPT_BATCH of them: the bound is far above that, and only keeps memory finite
 * should closes ever lag behind. */
#define ADMIN_MAX_ALLOCATED 1024
#define ADMIN_TIMEOUT_MS    2000 /* a probe's request is one short packet */
#define ADMIN_READ_BUF      2048 /* requests are one short head; the parser keeps the bytes */
#define ADMIN_BODY_MAX      (64 * 1024) /* no endpoint takes a body; a small one is read and ignored */
#define ADMIN_BACKLOG       1024        /* a burst waits here: a dropped SYN costs a probe 1 s */
/* Connections accepted before the loop gets a turn: a flood arriving faster than it is taken
 * would otherwise keep libuv accepting in one turn, with no read, timer or close running. */
#define ADMIN_ACCEPT_BATCH 64
#define ADMIN_UNIX_PREFIX  "unix:"

/* A TCP socket or a Unix socket: both are streams, and libuv's stream calls take either. */
union admin_stream {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
};

/* Where a connection comes from: the peer's IP address, or the peer's uid on a Unix socket. */
struct admin_source {
    int family;
    unsigned char addr[16];
};

struct admin_listener;

struct admin_conn {
    struct admin_conn *next, *prev; /* the listener's open or closing list, newest first */
    struct admin_listener *l;
    union admin_stream sock;
    struct admin_source src;
    uv_timer_t timer; /* one deadline for the whole connection, never moved */
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct http_parser parser;
    struct http_head *req;      /* the request head, owned, once parsed */
    struct http_buf head, body; /* the response; written in place, freed with the conn */
    size_t body_len;            /* request body bytes seen */
    int error_status;           /* our own refusal (413) when a callback stopped the parser */
    unsigned refs;              /* handles initialised and not yet closed */
    bool closing, complete, answered;
    bool line_seen; /* a whole request line arrived: a request is under way */
    char buf[ADMIN_READ_BUF];
};

struct admin_listener {
    union admin_stream sock;
    const char *flag;           /* "--admin" or "--health", for messages */
    bool initialised;           /* sock needs a uv_close */
    bool listening;             /* started and not yet stopped */
    bool is_unix;               /* sock is a uv_pipe_t */
    bool health_only;           /* /healthz and /readyz only */
    bool sensitive;             /* /metrics and /policy are served */
    char unix_path[108];        /* the socket file, removed at stop ("" for TCP) */
    struct admin_conn *conns;   /* open: what the caps count and make_room looks at */
    struct admin_conn *closing; /* closed, waiting for their handles' close callbacks */
    size_t nopen;               /* in conns */
    size_t nalloc;              /* in either list */
    uv_timer_t resume;          /* takes the connection left queued after a batch, a turn later */
    unsigned batch;             /* accepted since the last resume */
    bool deferred;              /* one connection waits for the resume (libuv holds it) */
};

/* Main thread only, so plain fields suffice. */
static struct admin_state {
    uv_loop_t *loop;
    struct server *server;
    bool draining;
    struct admin_listener admin, health;
} admin;

/* ---- connection lifecycle ---------------------------------------------------------------- */

static void list_push(struct admin_conn **head, struct admin_conn *ac)
{
    ac->prev = NULL;
    ac->next = *head;
    if (*head)
        (*head)->prev = ac;
    *head = ac;
}

static void list_unlink(struct admin_conn **head, struct admin_conn *ac)
{
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        *head = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct admin_conn *ac = h->data;
    if (--ac->refs > 0)
        return;
    struct admin_listener *l = ac->l;
    list_unlink(&l->closing, ac);
    l->nalloc--;
    http_parser_deinit(&ac->parser);
    http_head_free(ac->req);
    http_buf_free(&ac->head);
    http_buf_free(&ac->body);
    free(ac);
}

/* Idempotent. libuv calls a pending write's or shutdown's callback (UV_ECANCELED) before the
 * handle's close callback, so the response buffers outlive every request that points at them. */
static void close_conn(struct admin_conn *ac)
{
    if (ac->closing)
        return;
    ac->closing = true;
    /* Off the open list at once: a flood closes many per loop turn, and the caps and
     * make_room's scans must not wade through them until their close callbacks run. */
    list_unlink(&ac->l->conns, ac);
    list_push(&ac->l->closing, ac);
    ac->l->nopen--;
    uv_close(&ac->sock.handle, on_handle_closed);
    uv_close((uv_handle_t *)&ac->timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    struct admin_conn *ac = t->data;
    log_msg(LOG_DEBUG, "admin: connection timed out");
    close_conn(ac);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    close_conn(req->data);
}

static void on_written(uv_write_t *req, int status)
{
    struct admin_conn *ac = req->data;
    if (ac->closing)
        return;
    /* FIN after the response, then close: closing with the client's bytes still unread (a
     * pipelined second request) would send a reset that can destroy the response in flight. */
    if (status < 0 || uv_shutdown(&ac->shutdown_req, &ac->sock.stream, on_shutdown) < 0)
        close_conn(ac);
}

/* ---- responses --------------------------------------------------------------------------- */

/* Send status with ac->body (already filled) and close after it. extra is either "" or whole
 * header lines ending in CRLF. */
static void respond(struct admin_conn *ac, int status, const char *reason, const char *type,
                    const char *extra)
{
    ac->answered = true;
    uv_read_stop(&ac->sock.stream);
    /* One request per connection (RFC 9112 §9.6): no keep-alive state to get wrong. no-store
     * because every answer describes this instant. */
    http_buf_printf(&ac->head,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                    status, reason, type, ac->body.len, extra);
    if (ac->head.failed || ac->body.failed) {
        log_msg(LOG_WARN, "admin: out of memory building a response");
        close_conn(ac);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(ac->head.data, ac->head.len),
                        uv_buf_init(ac->body.data, ac->body.len)};
    /* A response to HEAD has the same fields and no content (RFC 9110 §9.3.2). */
    unsigned nbufs = ac->body.len && !(ac->req && ac->req->method_id == HTTP_HEAD) ? 2 : 1;
    ac->write_req.data = ac;
    ac->shutdown_req.data = ac;
    if (uv_write(&ac->write_req, &ac->sock.stream, bufs, nbufs, on_written) < 0)
        close_conn(ac);
}

static void respond_text(struct admin_conn *ac, int status, const char *reason, const char *text,
                         const char *extra)
{
    http_buf_puts(&ac->body, text);
    respond(ac, status, reason, "text/plain; charset=utf-8", extra);
}

static bool path_is(const char *path, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

static void answer_request(struct admin_conn *ac)
{
    const struct http_head *h = ac->req;
    const struct admin_listener *l = ac->l;
    /* The query is ignored: no endpoint takes parameters. */
    size_t plen = strcspn(h->target, "?");
    bool health = path_is(h->target, plen, "/healthz") || path_is(h->target, plen, "/readyz");
    bool sensitive = path_is(h->target, plen, "/metrics") || path_is(h->target, plen, "/policy");

    log_msg(LOG_DEBUG, "admin: %.*s %.*s on %s", (int)h->method_len, h->method,
            (int)(plen > 128 ? 128 : plen), h->target, l->flag);
    if (!health && !(sensitive && !l->health_only)) {
        respond_text(ac, 404, "Not Found", "not found\n", "");
    } else if (h->method_id != HTTP_GET) {
        /* RFC 9110 §15.5.6: a 405 names the methods the resource does support. */
        respond_text(ac, 405, "Method Not Allowed", "method not allowed\n", "Allow: GET\r\n");
    } else if (path_is(h->target, plen, "/healthz")) {
        /* Answering at all proves the main loop runs (signals, reloads, drain). Worker loops
         * are not probed: that would need a heartbeat in the worker's wakeup handler. */
        respond_text(ac, 200, "OK", "ok\n", "");
    } else if (path_is(h->target, plen, "/readyz")) {
        if (admin.draining)
            respond_text(ac, 503, "Service Unavailable", "draining\n", "");
        else
            respond_text(ac, 200, "OK", "ready\n", "");
    } else if (!l->sensitive) {
        /* Metrics and the policy map what the sandbox may reach: a non-loopback TCP address
         * serves them only when the operator asked for it. */
        respond_text(ac, 403, "Forbidden",
                     "not served on a non-loopback address without --admin-expose-sensitive\n", "");
    } else if (path_is(h->target, plen, "/metrics")) {
        metrics_render(&ac->body);
        respond(ac, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", "");
    } else {
        /* A policy holds hosts, ports and rules but never a secret (those live in the
         * providers file, which is not served), so its source is safe to show. */
        struct policy *p = server_policy(admin.server);
        http_buf_puts(&ac->body, policy_source(p));
        policy_unref(p);
        respond(ac, 200, "OK", "application/json", "");
    }
}

/* ---- request parsing --------------------------------------------------------------------- */

static int on_req_head(void *owner, struct http_head *head)
{
    struct admin_conn *ac = owner;
    ac->req = head;
    return HTTP_HEAD_CONTINUE;
}

static int on_req_body(void *owner, const char *p, size_t len)
{
    struct admin_conn *ac = owner;
    ac->body_len += len;
    if (ac->body_len > ADMIN_BODY_MAX) {
        ac->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_req_complete(void *owner, const struct http_head *trailers)
{
    struct admin_conn *ac = owner;
    ac->complete = true;
    /* One request per connection: whatever follows is never parsed. */
    return HTTP_PAUSE_BODY;
}

static const struct http_parser_cbs admin_cbs = {
    .on_head = on_req_head,
    .on_body = on_req_body,
    .on_complete = on_req_complete,
};

/* The parser's error statuses (http.h) with their reason phrases; anything else is 400. */
static const char *error_reason(int *status)
{
    switch (*status) {
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    default:
        *status = 400;
        return "Bad Request";
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct admin_conn *ac = h->data;
    buf->base = ac->buf;
    buf->len = sizeof ac->buf;
}

/* Parse n bytes of the request, and answer it once it is whole (or broken). */
static void consume(struct admin_conn *ac, const char *p, size_t n)
{
    if (memchr(p, '\n', n))
        ac->line_seen = true;
    size_t consumed;
    enum http_exec_status st = http_parser_execute(&ac->parser, p, n, &consumed);
    /* A CONNECT or an Upgrade request also completes (HTTP_UPGRADE): it is answered like any
     * other request, and nothing after it is read. */
    if (ac->complete && ac->req) {
        answer_request(ac);
    } else if (st == HTTP_ERROR) {
        int status = ac->error_status ? ac->error_status : ac->parser.error_status;
        const char *reason = error_reason(&status);
        char text[64];
        snprintf(text, sizeof text, "%s\n", reason);
        respond_text(ac, status, reason, text, "");
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_conn *ac = stream->data;
    if (ac->closing || ac->answered || nread == 0)
        return;
    if (nread < 0) {
        /* EOF or an error before a whole request: there is nobody to answer. */
        close_conn(ac);
        return;
    }
    consume(ac, buf->base, (size_t)nread);
}

/* Read, without waiting, what the client has already sent, which libuv would read only later
 * in the loop turn or on the next. A probe accepted amid a burst has its request waiting in
 * the socket, and is answered here instead of evicted by the connections accepted after it.
 * true when something happened (bytes parsed, the request answered, or the connection closed
 * at EOF), false when nothing was waiting. */
static bool read_pending(struct admin_conn *ac)
{
    uv_os_fd_t fd;
    if (uv_fileno(&ac->sock.handle, &fd) != 0)
        return false;
    ssize_t n = recv(fd, ac->buf, sizeof ac->buf, MSG_DONTWAIT);
    if (n > 0) {
        consume(ac, ac->buf, (size_t)n);
        return true;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return false;
    close_conn(ac); /* EOF or a reset before a whole request: nobody to answer */
    return true;
}

/* ---- accepting under a flood ------------------------------------------------------------- */

static void source_of(struct admin_conn *ac)
{
    struct admin_source *src = &ac->src;
    memset(src, 0, sizeof *src);
    if (ac->l->is_unix) {
        /* Only users the socket file's mode lets in can connect; the cap is per uid. */
        struct ucred cred;
        socklen_t len = sizeof cred;
        uv_os_fd_t fd;
        src->family = AF_UNIX;
        if (uv_fileno(&ac->sock.handle, &fd) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            memcpy(src->addr, &cred.uid, sizeof cred.uid);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&ac->sock.tcp, (struct sockaddr *)&ss, &len) < 0)
        return;
    src->family = ss.ss_family;
    if (ss.ss_family == AF_INET)
        memcpy(src->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    else if (ss.ss_family == AF_INET6)
        memcpy(src->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
}

static bool same_source(const struct admin_source *a, const struct admin_source *b)
{
    return a->family == b->family && memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* How many of the open connections in open[0..n) come from src. */
static size_t count_from(struct admin_conn *const *open, size_t n, const struct admin_source *src)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += same_source(&open[i]->src, src);
    return count;
}

/* The connection to close to make room: an open one still waiting for its request, other than
 * keep, from src when src is not NULL; NULL when there is none. One that has not sent a whole
 * request line goes before one that has (a request is under way there, a probe's most likely),
 * then one from the source holding the most open connections (a flood from many sources evicts
 * its own before a lone probe's), then the oldest. */
static struct admin_conn *pick_victim(struct admin_listener *l, struct admin_conn *keep,
                                      const struct admin_source *src)
{
    /* make_room keeps nopen at most ADMIN_MAX_CONNS + 1: the newcomer over the cap. */
    struct admin_conn *open[ADMIN_MAX_CONNS + 2], *found = NULL;
    size_t n = 0, found_count = 0;

    for (struct admin_conn *ac = l->conns; ac && n < sizeof open / sizeof open[0]; ac = ac->next)
        open[n++] = ac;
    /* The list is newest first: on a tie, the later one is older and wins. */
    for (size_t i = 0; i < n; i++) {
        struct admin_conn *ac = open[i];
        if (ac == keep || ac->answered || (src && !same_source(&ac->src, src)))
            continue;
        size_t count = count_from(open, n, &ac->src);
        if (found && ac->line_seen != found->line_seen) {
            if (ac->line_seen)
                continue;
        } else if (found && count < found_count) {
            continue;
        }
        found = ac;
        found_count = count;
    }
    return found;
}

static size_t open_from(struct admin_listener *l, const struct admin_source *src)
{
    size_t n = 0;
    for (struct admin_conn *ac = l->conns; ac; ac = ac->next)
        n += same_source(&ac->src, src);
    return n;
}

/* ac was just accepted. Over a cap, make room by closing a connection that has not sent a whole
 * request (pick_victim): a held-open or trickling socket loses its place to a new one, so a
 * probe (whose request arrives with its connection) is always read. Refusing the newcomer
 * instead would let whoever connected first keep the listener shut, so even a request line
 * under way is no shield once nothing else can go. The per-source cap comes first so that one
 * noisy source evicts its own connections, never another source's. A candidate's waiting bytes
 * are read before it is closed: if it was a probe, it is answered and another candidate is
 * chosen. Returns false when ac itself had to go (everything else is answered, closing soon). */
static bool make_room(struct admin_listener *l, struct admin_conn *ac)
{
    for (;;) {
        const struct admin_source *only;
        if (open_from(l, &ac->src) > ADMIN_MAX_PER_SOURCE)
            only = &ac->src;
        else if (l->nopen > ADMIN_MAX_CONNS)
            only = NULL;
        else
            return true;
        struct admin_conn *victim = pick_victim(l, ac, only);
        if (!victim) {
            close_conn(ac);
            return false;
        }
        /* Each pass either closes a connection or drains bytes from one (answering it, or
         * moving it towards a parse error), so the loop ends. */
        if (read_pending(victim))
            continue;
        log_msg(LOG_DEBUG,
                "%s: connection limit reached, closing a connection still waiting "
                "for its request",
                l->flag);
        close_conn(victim);
        return true;
    }
}

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

/* Too many connections still closing (ADMIN_MAX_ALLOCATED): accept and close at once. A connection
 * left in the backlog would keep the listener stopped (libuv pauses it until the next uv_accept).
 */
static void refuse(struct admin_listener *l)
{
    union admin_stream *t = malloc(sizeof *t);
    int r = !t           ? UV_ENOMEM
            : l->is_unix ? uv_pipe_init(admin.loop, &t->pipe, 0)
                         : uv_tcp_init(admin.loop, &t->tcp);
    if (r < 0) {
        free(t);
        return;
    }
    if (uv_accept(&l->sock.stream, &t->stream) == 0)
        log_msg(LOG_DEBUG, "%s: connection refused, %zu still closing", l->flag, l->nalloc);
    uv_close(&t->handle, on_refused_closed);
}

static void on_resume(uv_timer_t *t);

static void on_admin_connection(uv_stream_t *server, int status)
{
    struct admin_listener *l = server->data;
    if (status < 0) {
        log_msg(LOG_WARN, "%s: accept: %s", l->flag, uv_strerror(status));
        return;
    }
    if (l->batch++ >= ADMIN_ACCEPT_BATCH) {
        /* Not taken now, libuv keeps it and stops watching the listener until it is: the loop
         * reads and answers what it accepted (a probe among them), and frees what it closed,
         * before the next batch. */
        l->deferred = true;
        uv_timer_start(&l->resume, on_resume, 0, 0);
        return;
    }
    struct admin_conn *ac = l->nalloc < ADMIN_MAX_ALLOCATED ? calloc(1, sizeof *ac) : NULL;
    int r = !ac          ? UV_ENOMEM
            : l->is_unix ? uv_pipe_init(admin.loop, &ac->sock.pipe, 0)
                         : uv_tcp_init(admin.loop, &ac->sock.tcp);
    if (r < 0) {
        free(ac);
        refuse(l);
        return;
    }
    ac->l = l;
    list_push(&l->conns, ac);
    l->nalloc++;
    l->nopen++;
    ac->sock.handle.data = ac;
    ac->refs++;
    uv_timer_init(admin.loop, &ac->timer);
    ac->timer.data = ac;
    ac->refs++;
    http_parser_init(&ac->parser, HTTP_KIND_REQUEST, &admin_cbs, ac);
    r = uv_accept(server, &ac->sock.stream);
    if (r < 0) {
        log_msg(LOG_WARN, "%s: %s", l->flag, uv_strerror(r));
        close_conn(ac);
        return;
    }
    source_of(ac);
    if (!make_room(l, ac))
        return;
    r = uv_read_start(&ac->sock.stream, on_alloc, on_read);
    if (r < 0) {
        log_msg(LOG_WARN, "%s: %s", l->flag, uv_strerror(r));
        close_conn(ac);
        return;
    }
    uv_timer_start(&ac->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
}

static void on_resume(uv_timer_t *t)
{
    struct admin_listener *l = t->data;
    l->batch = 0;
    if (l->deferred && l->listening) {
        l->deferred = false;
        on_admin_connection(&l->sock.stream, 0);
    }
}

/* ---- listeners --------------------------------------------------------------------------- */

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)ss;
    if (IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) && a6->sin6_addr.s6_addr[12] == 127;
}

static bool is_unix_addr(const char *addr)
{
    return strncmp(addr, ADMIN_UNIX_PREFIX, strlen(ADMIN_UNIX_PREFIX)) == 0;
}

/* A socket file left by a process that died without removing it is removed; a live one (a
 * second airlock) or anything that is not a socket is an error. */
static int clear_stale_socket(const char *path, const char *flag, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s unix:%s: the path exists and is not a socket", flag, path);
        return -1;
    }
    /* Non-blocking: a live listener with a full backlog answers EAGAIN instead of blocking. */
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    int r = connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0 ? 0 : errno;
    close(fd);
    if (r == 0 || r == EAGAIN) {
        snprintf(err, errlen, "%s unix:%s: another process is listening there", flag, path);
        return -1;
    }
    if (r != ECONNREFUSED) {
        snprintf(err, errlen, "%s unix:%s: %s", flag, path, strerror(r));
        return -1;
    }
    if (unlink(path) < 0) {
        snprintf(err, errlen, "%s unix:%s: cannot remove the stale socket: %s", flag, path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* The socket is created 0600: only airlock's own uid (and root) may connect, whatever the
 * directory allows. umask is process-wide; this runs on the main thread before any worker
 * starts, and the log writer creates files only on SIGUSR1, which the loop has not yet run. */
static int listen_unix(struct admin_listener *l, const char *path, char *err, size_t errlen)
{
    if (path[0] == '\0' || strlen(path) >= sizeof l->unix_path) {
        snprintf(err, errlen, "%s unix:%s: the socket path is empty or longer than %zu bytes",
                 l->flag, path, sizeof l->unix_path - 1);
        return -1;
    }
    if (clear_stale_socket(path, l->flag, err, errlen) < 0) {
        if (!err[0])
            snprintf(err, errlen, "%s unix:%s: %s", l->flag, path, strerror(errno));
        return -1;
    }
    int r = uv_pipe_init(admin.loop, &l->sock.pipe, 0);
    if (r < 0) {
        snprintf(err, errlen, "%s unix:%s: %s", l->flag, path, uv_strerror(r));
        return -1;
    }
    l->is_unix = true;
    l->initialised = true;
    l->sock.handle.data = l;
    mode_t old = umask(0177);
    r = uv_pipe_bind(&l->sock.pipe, path);
    umask(old);
    if (r == 0) {
        snprintf(l->unix_path, sizeof l->unix_path, "%s", path);
        r = uv_listen(&l->sock.stream, ADMIN_BACKLOG, on_admin_connection);
    }
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on %s unix:%s: %s", l->flag, path, uv_strerror(r));
        return -1;
    }
    return 0;
}

static int listen_tcp(struct admin_listener *l, const struct sockaddr_storage *ss, const char *addr,
                      char *err, size_t errlen)
{
    int r = uv_tcp_init(admin.loop, &l->sock.tcp);
    if (r < 0) {
        snprintf(err, errlen, "%s %s: %s", l->flag, addr, uv_strerror(r));
        return -1;
    }
    l->initialised = true;
    l->sock.handle.data = l;
    /* libuv may report a bind error only at listen time, so both are checked. */
    r = uv_tcp_bind(&l->sock.tcp, (const struct sockaddr *)ss, 0);
    if (r == 0)
        r = uv_listen(&l->sock.stream, ADMIN_BACKLOG, on_admin_connection);
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on %s %s: %s", l->flag, addr, uv_strerror(r));
        return -1;
    }
    return 0;
}

/* "unix:/path" or "http://IP:PORT", for the start-up line. */
static void describe(const struct admin_listener *l, char *out, size_t cap)
{
    if (l->is_unix) {
        snprintf(out, cap, "unix:%s", l->unix_path);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char endpoint[64] = "?:0";
    if (uv_tcp_getsockname(&l->sock.tcp, (struct sockaddr *)&ss, &len) == 0)
        addr_format_endpoint((struct sockaddr *)&ss, endpoint, sizeof endpoint);
    snprintf(out, cap, "http://%s", endpoint);
}

static int listener_start(struct admin_listener *l, const char *flag, const char *addr,
                          bool health_only, const struct server_config *cfg, char *err,
                          size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->flag = flag;
    l->health_only = health_only;
    int r;
    if (is_unix_addr(addr)) {
        /* Reaching the socket takes the filesystem access its mode grants: like loopback
         * in a machine of one's own, and unlike loopback in a pod, whose network namespace
         * the agent shares. */
        l->sensitive = !health_only;
        r = listen_unix(l, addr + strlen(ADMIN_UNIX_PREFIX), err, errlen);
    } else {
        struct sockaddr_storage ss;
        if (addr_parse_hostport(addr, &ss) < 0) {
            snprintf(err, errlen,
                     "%s %s: expected IP:PORT, [IPv6]:PORT, localhost:PORT or unix:PATH", flag,
                     addr);
            return -1;
        }
        bool loopback = is_loopback(&ss);
        /* The health listener serves nothing an attacker could use, so it may listen
         * anywhere; the admin listener leaves loopback only when the operator says so. */
        if (!health_only && !loopback && !cfg->admin_public) {
            snprintf(err, errlen,
                     "--admin %s is not a loopback address; add --admin-public to serve the "
                     "admin endpoint there (or use --health for probes, --admin unix:PATH for "
                     "the rest)",
                     addr);
            return -1;
        }
        l->sensitive = !health_only && (loopback || cfg->admin_expose_sensitive);
        r = listen_tcp(l, &ss, addr, err, errlen);
    }
    if (r < 0) {
        /* The next uv_run finishes the close. */
        if (l->initialised)
            uv_close(&l->sock.handle, NULL);
        if (l->unix_path[0])
            unlink(l->unix_path);
        l->unix_path[0] = '\0';
        return -1;
    }
    l->listening = true;
    uv_timer_init(admin.loop, &l->resume);
    l->resume.data = l;

    char where[160];
    describe(l, where, sizeof where);
    log_msg(LOG_INFO, "%s endpoint on %s (%s)", health_only ? "health" : "admin", where,
            health_only    ? "/healthz /readyz"
            : l->sensitive ? "/healthz /readyz /metrics /policy"
                           : "/healthz /readyz; /metrics and /policy need "
                             "--admin-expose-sensitive here");
    return 0;
}

int admin_start(uv_loop_t *loop, struct server *s, char *err, size_t errlen)
{
    const struct server_config *cfg = s->cfg;
    admin.loop = loop;
    admin.server = s;
    err[0] = '\0';
    if (cfg->admin &&
        listener_start(&admin.admin, "--admin", cfg->admin, false, cfg, err, errlen) < 0)
        return -1;
    if (cfg->health &&
        listener_start(&admin.health, "--health", cfg->health, true, cfg, err, errlen) < 0) {
        admin_stop();
        return -1;
    }
    return 0;
}

void admin_set_draining(void)
{
    admin.draining = true;
}

static void listener_stop(struct admin_listener *l)
{
    if (!l->listening)
        return;
    l->listening = false;
    uv_close(&l->sock.handle, NULL); /* which closes a connection left queued too */
    uv_close((uv_handle_t *)&l->resume, NULL);
    if (l->unix_path[0])
        unlink(l->unix_path);
    while (l->conns)
        close_conn(l->conns); /* which moves it to the closing list */
}

void admin_stop(void)
{
    listener_stop(&admin.admin);
    listener_stop(&admin.health);
}

/* ---- the command-line client ------------------------------------------------------------- */

#define ADMIN_CLIENT_TIMEOUT_S 5
#define ADMIN_CLIENT_MAX       (4 * 1024 * 1024) /* far above any /metrics or /policy */

/* A blocking connection to addr with send and receive timeouts, or -1 with err filled. */
static int client_connect(const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (is_unix_addr(addr)) {
        const char *path = addr + strlen(ADMIN_UNIX_PREFIX);
        struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
        if (path[0] == '\0' || strlen(path) >= sizeof sun->sun_path) {
            snprintf(err, errlen, "%s: the socket path is empty or too long", addr);
            return -1;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, strlen(path) + 1);
        len = sizeof *sun;
    } else if (addr_parse_hostport(addr, &ss) == 0) {
        len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    } else {
        snprintf(err, errlen, "%s: expected IP:PORT, [IPv6]:PORT, localhost:PORT or unix:PATH",
                 addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", addr, strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = ADMIN_CLIENT_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int admin_get(const char *addr, const char *path, int *status, struct http_buf *body, char *err,
              size_t errlen)
{
    struct http_buf raw = {0};
    int rc = -1;
    if (path[0] != '/' || strcspn(path, " \r\n") != strlen(path)) {
        snprintf(err, errlen, "%s: not a path", path);
        return -1;
    }
    int fd = client_connect(addr, err, errlen);
    if (fd < 0)
        return -1;
    http_buf_printf(&raw, "GET %s HTTP/1.1\r\nHost: airlock\r\nConnection: close\r\n\r\n", path);
    if (raw.failed || send(fd, raw.data, raw.len, MSG_NOSIGNAL) != (ssize_t)raw.len) {
        snprintf(err, errlen, "%s: cannot send the request: %s", addr, strerror(errno));
        goto out;
    }
    /* One request per connection: the server closes after the response. */
    raw.len = 0;
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0 && raw.len < ADMIN_CLIENT_MAX)
        http_buf_append(&raw, buf, (size_t)n);
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", addr,
                 errno == EAGAIN ? "no answer in time" : strerror(errno));
        goto out;
    }
    const char *end = raw.failed ? NULL : memmem(raw.data, raw.len, "\r\n\r\n", 4);
    unsigned code;
    if (!end || sscanf(raw.data, "HTTP/1.%*1[01] %3u ", &code) != 1) {
        snprintf(err, errlen, "%s: not an HTTP response", addr);
        goto out;
    }
    *status = (int)code;
    end += 4;
    http_buf_append(body, end, raw.len - (size_t)(end - raw.data));
    rc = body->failed ? -1 : 0;
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
out:
    close(fd);
    http_buf_free(&raw);
    return rc;
}
