/* SPDX-License-Identifier: MIT */
/* admin: the operators' HTTP/1.1 endpoint on the main thread's loop. It owns its listener and
 * its connections (one calloc each, freed by the last of its two handle close callbacks); it
 * reads shared state only through metrics_render and server_policy. One request per connection,
 * answered with Connection: close; at most ADMIN_MAX_CONNS of them, each cut after 5 s. */
#include "airlock/admin.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airlock/http.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/policy.h"
#include "airlock/server.h"

#define ADMIN_MAX_CONNS  64
#define ADMIN_TIMEOUT_MS 5000
#define ADMIN_READ_BUF   2048        /* requests are one short head; the parser keeps the bytes */
#define ADMIN_BODY_MAX   (64 * 1024) /* no endpoint takes a body; a small one is read and ignored */

struct admin_conn {
    struct admin_conn *next, *prev;
    uv_tcp_t tcp;
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
    char buf[ADMIN_READ_BUF];
};

/* Main thread only, so plain fields suffice. */
static struct admin_state {
    uv_loop_t *loop;
    struct server *server;
    uv_tcp_t listener;
    bool listening; /* admin_start succeeded and admin_stop has not run */
    bool draining;
    struct admin_conn *conns;
    size_t nconns; /* allocated, closing ones included: the cap bounds memory */
} admin;

/* ---- connection lifecycle ---------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    struct admin_conn *ac = h->data;
    if (--ac->refs > 0)
        return;
    if (ac->prev)
        ac->prev->next = ac->next;
    else
        admin.conns = ac->next;
    if (ac->next)
        ac->next->prev = ac->prev;
    admin.nconns--;
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
    uv_close((uv_handle_t *)&ac->tcp, on_handle_closed);
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
    if (status < 0 || uv_shutdown(&ac->shutdown_req, (uv_stream_t *)&ac->tcp, on_shutdown) < 0)
        close_conn(ac);
}

/* ---- responses --------------------------------------------------------------------------- */

/* Send status with ac->body (already filled) and close after it. extra is either "" or whole
 * header lines ending in CRLF. */
static void respond(struct admin_conn *ac, int status, const char *reason, const char *type,
                    const char *extra)
{
    ac->answered = true;
    uv_read_stop((uv_stream_t *)&ac->tcp);
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
    if (uv_write(&ac->write_req, (uv_stream_t *)&ac->tcp, bufs, nbufs, on_written) < 0)
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
    /* The query is ignored: no endpoint takes parameters. */
    size_t plen = strcspn(h->target, "?");
    bool known = path_is(h->target, plen, "/healthz") || path_is(h->target, plen, "/readyz") ||
                 path_is(h->target, plen, "/metrics") || path_is(h->target, plen, "/policy");

    log_msg(LOG_DEBUG, "admin: %.*s %.*s", (int)h->method_len, h->method,
            (int)(plen > 128 ? 128 : plen), h->target);
    if (!known) {
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
    size_t consumed;
    enum http_exec_status st =
        http_parser_execute(&ac->parser, buf->base, (size_t)nread, &consumed);
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

/* ---- listener ---------------------------------------------------------------------------- */

static void on_refused_closed(uv_handle_t *h)
{
    free(h);
}

/* Over the cap: accept and close at once. A connection left in the backlog would keep the
 * listener stopped (libuv pauses it until the next uv_accept). */
static void refuse(uv_stream_t *listener)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t || uv_tcp_init(admin.loop, t) < 0) {
        free(t);
        return;
    }
    if (uv_accept(listener, (uv_stream_t *)t) == 0)
        log_msg(LOG_DEBUG, "admin: connection refused, %d already open", ADMIN_MAX_CONNS);
    uv_close((uv_handle_t *)t, on_refused_closed);
}

static void on_admin_connection(uv_stream_t *listener, int status)
{
    if (status < 0) {
        log_msg(LOG_WARN, "admin: accept: %s", uv_strerror(status));
        return;
    }
    struct admin_conn *ac = admin.nconns < ADMIN_MAX_CONNS ? calloc(1, sizeof *ac) : NULL;
    if (!ac || uv_tcp_init(admin.loop, &ac->tcp) < 0) {
        free(ac);
        refuse(listener);
        return;
    }
    ac->next = admin.conns;
    if (admin.conns)
        admin.conns->prev = ac;
    admin.conns = ac;
    admin.nconns++;
    ac->tcp.data = ac;
    ac->refs++;
    uv_timer_init(admin.loop, &ac->timer);
    ac->timer.data = ac;
    ac->refs++;
    http_parser_init(&ac->parser, HTTP_KIND_REQUEST, &admin_cbs, ac);
    int r = uv_accept(listener, (uv_stream_t *)&ac->tcp);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&ac->tcp, on_alloc, on_read);
    if (r < 0) {
        log_msg(LOG_WARN, "admin: %s", uv_strerror(r));
        close_conn(ac);
        return;
    }
    uv_timer_start(&ac->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
}

/* "IP:PORT", "[IPv6]:PORT" or "localhost:PORT"; port 0 included (any free port). */
static int parse_hostport(const char *text, struct sockaddr_storage *ss)
{
    char host[64];
    const char *end, *port_text;
    bool v6 = text[0] == '[';

    if (v6) {
        end = strchr(text, ']');
        if (!end || end[1] != ':')
            return -1;
        text++;
        port_text = end + 2;
    } else {
        end = strrchr(text, ':');
        /* a bare IPv6 address is ambiguous with its port: brackets are required */
        if (!end || memchr(text, ':', (size_t)(end - text)))
            return -1;
        port_text = end + 1;
    }
    size_t hlen = (size_t)(end - text);
    if (hlen == 0 || hlen >= sizeof host)
        return -1;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    size_t plen = strlen(port_text);
    if (plen == 0 || plen > 5 || strspn(port_text, "0123456789") != plen)
        return -1;
    unsigned long port = strtoul(port_text, NULL, 10);
    if (port > 65535)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (v6)
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) < 0 ? -1 : 0;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) < 0 ? -1 : 0;
}

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

int admin_start(uv_loop_t *loop, struct server *s, const char *hostport, bool allow_public,
                char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    if (parse_hostport(hostport, &ss) < 0) {
        snprintf(err, errlen, "--admin %s: expected IP:PORT, [IPv6]:PORT or localhost:PORT",
                 hostport);
        return -1;
    }
    /* Metrics and the policy tell an attacker what the sandbox may reach: off loopback only
     * when the operator says so. */
    if (!allow_public && !is_loopback(&ss)) {
        snprintf(err, errlen,
                 "--admin %s is not a loopback address; add --admin-public to serve the admin "
                 "endpoint there",
                 hostport);
        return -1;
    }
    admin.loop = loop;
    admin.server = s;
    int r = uv_tcp_init(loop, &admin.listener);
    if (r < 0) {
        snprintf(err, errlen, "--admin %s: %s", hostport, uv_strerror(r));
        return -1;
    }
    /* libuv may report a bind error only at listen time, so both are checked. */
    r = uv_tcp_bind(&admin.listener, (const struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&admin.listener, 64, on_admin_connection);
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on --admin %s: %s", hostport, uv_strerror(r));
        uv_close((uv_handle_t *)&admin.listener, NULL);
        return -1;
    }
    admin.listening = true;

    int len = sizeof ss;
    char ip[64] = "?";
    unsigned port = 0;
    if (uv_tcp_getsockname(&admin.listener, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    log_msg(LOG_INFO, "admin endpoint on http://%s%s%s:%u (/healthz /readyz /metrics /policy)",
            ss.ss_family == AF_INET6 ? "[" : "", ip, ss.ss_family == AF_INET6 ? "]" : "", port);
    return 0;
}

void admin_set_draining(void)
{
    admin.draining = true;
}

void admin_stop(void)
{
    if (!admin.listening)
        return;
    admin.listening = false;
    uv_close((uv_handle_t *)&admin.listener, NULL);
    for (struct admin_conn *ac = admin.conns; ac; ac = ac->next)
        close_conn(ac);
}
