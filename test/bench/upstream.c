/* SPDX-License-Identifier: MIT */
/* upstream: the TLS origin server for scripts/bench and scripts/soak, one epoll loop on one
 * thread. Serves GET /1k (1024 bytes, keep-alive), GET /bulk?n=BYTES (streamed), GET
 * /sse?n=EVENTS&ms=INTERVAL (a text/event-stream of n events, one chunk each, `id:` counting from
 * 0, one every ms milliseconds, then the last chunk; keep-alive) and a WebSocket echo (RFC 6455:
 * client frames unmasked, echoed unmasked). Not part of airlock; binds to loopback by default.
 * Speaks HTTP/2 (nghttp2) on a connection whose client offered h2 in ALPN, with the same two
 * GETs; HTTP/1.1 otherwise.
 * Invariant: a connection reads no new input while its output (or a bulk body) is pending. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <nghttp2/nghttp2.h>

#define IN_CAP      (16 * 1024 + 64) /* one request head or one small WebSocket frame */
#define CHUNK       16384            /* one TLS record of plaintext per SSL_write */
#define MAX_EVENTS  256
#define WS_GUID     "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define H2_OUT_MAX  (128 * 1024) /* frames gathered before they are written */
#define SSE_TICK_MS 10           /* how often due events are looked for while a stream is open */

enum ustate { U_HANDSHAKE, U_HTTP, U_WS, U_H2 };

struct uconn {
    int fd;
    SSL *ssl;
    enum ustate state;
    uint32_t events;     /* current epoll interest */
    bool close_after;    /* close once the output drains */
    uint64_t bulk_left;  /* body bytes of GET /bulk still to send, after out */
    nghttp2_session *h2; /* U_H2 */
    /* An open event stream (GET /sse): events still to send, the next id, when it is due, and
     * the links of the list of open streams. */
    uint64_t sse_left, sse_id, sse_every_ns, sse_due_ns;
    struct uconn *sse_prev, *sse_next;
    char *out; /* pending plaintext: heads, 1k bodies, echoed frames, h2 frames */
    size_t out_len, out_off, out_cap;
    size_t in_len;
    char in[IN_CAP];
};

static int ep = -1;
static SSL_CTX *ctx;
static char pattern[CHUNK];
static volatile sig_atomic_t stopping;
static size_t nconns;
static struct uconn *sse_streams; /* connections with an event stream open */

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void sse_unlink(struct uconn *c)
{
    if (c->sse_prev)
        c->sse_prev->sse_next = c->sse_next;
    else if (sse_streams == c)
        sse_streams = c->sse_next;
    if (c->sse_next)
        c->sse_next->sse_prev = c->sse_prev;
    c->sse_prev = c->sse_next = NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void set_interest(struct uconn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

static void uconn_close(struct uconn *c)
{
    if (c->ssl && c->state != U_HANDSHAKE) {
        /* One close_notify, best effort; the socket is non-blocking and we do not wait. */
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    close(c->fd); /* also removes it from the epoll set */
    sse_unlink(c);
    nghttp2_session_del(c->h2);
    free(c->out);
    free(c);
    nconns--;
}

static int out_append(struct uconn *c, const void *p, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len)
            cap *= 2;
        char *n = realloc(c->out, cap);
        if (!n)
            return -1;
        c->out = n;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, len);
    c->out_len += len;
    return 0;
}

static void consume(struct uconn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* Sets interest from an SSL result that would block; returns 0 then, -1 on a real error. */
static int would_block(struct uconn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        set_interest(c, EPOLLIN);
        return 0;
    case SSL_ERROR_WANT_WRITE:
        set_interest(c, EPOLLOUT);
        return 0;
    default:
        return -1;
    }
}

/* Writes pending output, then the bulk body. Returns 1 when all is out, 0 when blocked, -1. A
 * retried SSL_write always gets the same length: nothing is appended while output is pending. */
static int flush(struct uconn *c)
{
    while (c->out_off < c->out_len || c->bulk_left) {
        const char *p = pattern;
        size_t n;
        if (c->out_off < c->out_len) {
            p = c->out + c->out_off;
            n = c->out_len - c->out_off;
        } else {
            n = c->bulk_left;
        }
        if (n > CHUNK)
            n = CHUNK;
        ERR_clear_error();
        int r = SSL_write(c->ssl, p, (int)n);
        if (r <= 0)
            return would_block(c, r);
        if (c->out_off < c->out_len)
            c->out_off += (size_t)r;
        else
            c->bulk_left -= (uint64_t)r;
    }
    c->out_off = c->out_len = 0;
    /* The buffering BIO gathers records into one send; push out what it still holds. */
    BIO *wbio = SSL_get_wbio(c->ssl);
    if (BIO_wpending(wbio) > 0 && BIO_flush(wbio) <= 0) {
        if (!BIO_should_retry(wbio))
            return -1;
        set_interest(c, EPOLLOUT);
        return 0;
    }
    return 1;
}

static bool header_is(const char *line, size_t len, const char *name, const char **val,
                      size_t *vlen)
{
    size_t nl = strlen(name);
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl))
        return false;
    const char *v = line + nl + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t'))
        v++;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *val = v;
    *vlen = (size_t)(e - v);
    return true;
}

static bool has_token(const char *v, size_t len, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i + tl <= len; i++) {
        if (!strncasecmp(v + i, tok, tl))
            return true;
    }
    return false;
}

static int respond_ws(struct uconn *c, const char *key, size_t klen)
{
    char buf[128], hash[EVP_MAX_MD_SIZE], accept[64], head[256];
    unsigned hl = 0;
    if (klen > 64)
        return -1;
    memcpy(buf, key, klen);
    memcpy(buf + klen, WS_GUID, sizeof(WS_GUID) - 1);
    if (!EVP_Digest(buf, klen + sizeof(WS_GUID) - 1, (unsigned char *)hash, &hl, EVP_sha1(), NULL))
        return -1;
    EVP_EncodeBlock((unsigned char *)accept, (unsigned char *)hash, (int)hl);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    c->state = U_WS;
    return out_append(c, head, (size_t)n);
}

/* Opens an event stream from "N&ms=INTERVAL ..." (the request line after "/sse?n="): the head
 * now, the events from sse_tick(). */
static int respond_sse(struct uconn *c, const char *args)
{
    char *end;
    uint64_t n = strtoull(args, &end, 10), ms = 0;
    if (!strncmp(end, "&ms=", 4))
        ms = strtoull(end + 4, NULL, 10);
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (out_append(c, head, sizeof(head) - 1))
        return -1;
    c->sse_id = 0;
    c->sse_every_ns = ms * 1000000u;
    c->sse_due_ns = now_ns() + c->sse_every_ns;
    if (!n) /* an empty stream is only the last chunk */
        return out_append(c, "0\r\n\r\n", 5);
    c->sse_left = n;
    c->sse_next = sse_streams;
    if (sse_streams)
        sse_streams->sse_prev = c;
    sse_streams = c;
    return 0;
}

/* Answers one complete request head of head_len bytes at the start of c->in. */
static int handle_request(struct uconn *c, size_t head_len)
{
    const char *p = c->in, *end = c->in + head_len - 2;
    const char *eol = memmem(p, head_len, "\r\n", 2);
    const char *key = NULL;
    size_t klen = 0;
    bool upgrade = false;
    char head[256];
    int n;

    for (const char *line = eol + 2; line < end;) {
        const char *le = memmem(line, (size_t)(end - line), "\r\n", 2);
        const char *v;
        size_t vl;
        if (!le)
            break;
        if (header_is(line, (size_t)(le - line), "upgrade", &v, &vl))
            upgrade = has_token(v, vl, "websocket");
        else if (header_is(line, (size_t)(le - line), "sec-websocket-key", &v, &vl))
            key = v, klen = vl;
        else if (header_is(line, (size_t)(le - line), "connection", &v, &vl))
            c->close_after = c->close_after || has_token(v, vl, "close");
        line = le + 2;
    }
    size_t rl = (size_t)(eol - p);
    if (rl >= 8 && !memcmp(p, "GET /1k ", 8)) {
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: 1024\r\n\r\n");
        if (out_append(c, head, (size_t)n) || out_append(c, pattern, 1024))
            return -1;
        return 0;
    }
    if (rl > 12 && !memcmp(p, "GET /bulk?n=", 12)) {
        uint64_t len = strtoull(p + 12, NULL, 10);
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %llu\r\n\r\n",
                     (unsigned long long)len);
        c->bulk_left = len;
        return out_append(c, head, (size_t)n);
    }
    if (rl > 11 && !memcmp(p, "GET /sse?n=", 11))
        return respond_sse(c, p + 11);
    if (rl > 4 && !memcmp(p, "GET ", 4) && upgrade && key)
        return respond_ws(c, key, klen);
    n = snprintf(head, sizeof(head), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    return out_append(c, head, (size_t)n);
}

/* Echoes one complete frame at the start of c->in; returns its size, 0 if incomplete, -1. */
static long handle_frame(struct uconn *c)
{
    const unsigned char *b = (const unsigned char *)c->in;
    size_t hl = 2;
    uint64_t len;
    if (c->in_len < 2)
        return 0;
    len = b[1] & 0x7f;
    if (len == 126) {
        if (c->in_len < 4)
            return 0;
        len = (uint64_t)b[2] << 8 | b[3];
        hl = 4;
    } else if (len == 127) {
        if (c->in_len < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | b[2 + i];
        hl = 10;
    }
    if (!(b[1] & 0x80)) /* RFC 6455 §5.1: a client frame must be masked */
        return -1;
    hl += 4;
    if (len > IN_CAP - 14)
        return -1;
    if (c->in_len < hl + len)
        return 0;
    const unsigned char *mask = b + hl - 4;
    char *pl = c->in + hl;
    for (size_t i = 0; i < len; i++)
        pl[i] ^= (char)mask[i & 3];

    unsigned char op = b[0] & 0x0f, out[10];
    size_t ol = 2;
    if (op == 0xA) /* a pong needs no answer */
        return (long)(hl + len);
    if (op == 0x9)
        op = 0xA;
    if (op == 0x8)
        c->close_after = true;
    out[0] = (unsigned char)(0x80 | op);
    if (len < 126) {
        out[1] = (unsigned char)len;
    } else {
        out[1] = 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        ol = 4;
    }
    if (out_append(c, out, ol) || out_append(c, pl, (size_t)len))
        return -1;
    return (long)(hl + len);
}

static int process(struct uconn *c)
{
    while (c->state == U_HTTP && !c->bulk_left && !c->sse_left && !c->close_after) {
        char *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!e) {
            if (c->in_len == IN_CAP)
                return -1; /* head too large */
            return 0;
        }
        size_t head_len = (size_t)(e - c->in) + 4;
        if (handle_request(c, head_len))
            return -1;
        consume(c, head_len);
    }
    while (c->state == U_WS && !c->close_after) {
        long n = handle_frame(c);
        if (n < 0)
            return -1;
        if (n == 0)
            return c->in_len == IN_CAP ? -1 : 0;
        consume(c, (size_t)n);
    }
    return 0;
}

/* ---- HTTP/2 ---------------------------------------------------------------------------------- */

/* One request stream: the body it is owed, sent from `pattern` without a copy. */
struct h2stream {
    uint64_t left;
    int status; /* 0 until the path was recognised */
};

/* Frames go into c->out; the session stops producing once H2_OUT_MAX is pending. */
static ssize_t h2_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    struct uconn *c = ud;
    (void)s, (void)flags;
    if (c->out_len >= H2_OUT_MAX)
        return NGHTTP2_ERR_WOULDBLOCK;
    return out_append(c, data, len) ? NGHTTP2_ERR_CALLBACK_FAILURE : (ssize_t)len;
}

static int h2_send_data(nghttp2_session *s, nghttp2_frame *f, const uint8_t *hd, size_t len,
                        nghttp2_data_source *src, void *ud)
{
    struct uconn *c = ud;
    (void)s, (void)f, (void)src;
    if (c->out_len >= H2_OUT_MAX)
        return NGHTTP2_ERR_WOULDBLOCK;
    if (out_append(c, hd, 9) || out_append(c, pattern, len))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    struct h2stream *st = src->ptr;
    (void)s, (void)id, (void)buf, (void)ud;
    if (len > sizeof(pattern))
        len = sizeof(pattern);
    if (len > st->left)
        len = (size_t)st->left;
    st->left -= len;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (!st->left)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)len;
}

static int h2_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2stream *st = calloc(1, sizeof(*st));
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static int h2_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags, (void)ud;
    struct h2stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st || namelen != 5 || memcmp(name, ":path", 5))
        return 0;
    if (valuelen == 3 && !memcmp(value, "/1k", 3)) {
        st->left = 1024;
        st->status = 200;
    } else if (valuelen > 8 && valuelen < 40 && !memcmp(value, "/bulk?n=", 8)) {
        char n[40];
        memcpy(n, value + 8, valuelen - 8);
        n[valuelen - 8] = 0;
        st->left = strtoull(n, NULL, 10);
        st->status = 200;
    }
    return 0;
}

static int h2_respond(nghttp2_session *s, int32_t id, struct h2stream *st)
{
    char len[24];
    if (!st->status)
        st->status = 404, st->left = 0;
    snprintf(len, sizeof(len), "%llu", (unsigned long long)st->left);
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)(st->status == 200 ? "200" : "404"), 7, 3, 0},
        {(uint8_t *)"content-type", (uint8_t *)"application/octet-stream", 12, 24, 0},
        {(uint8_t *)"content-length", (uint8_t *)len, 14, strlen(len), 0},
    };
    nghttp2_data_provider body = {.source.ptr = st, .read_callback = h2_read_body};
    return nghttp2_submit_response(s, id, nv, 3, st->left ? &body : NULL);
}

/* A request is complete when its stream is half-closed by the client. */
static int h2_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2stream *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (st && h2_respond(s, f->hd.stream_id, st))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

static int h2_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)code, (void)ud;
    free(nghttp2_session_get_stream_user_data(s, id));
    nghttp2_session_set_stream_user_data(s, id, NULL);
    return 0;
}

static int h2_start(struct uconn *c)
{
    static nghttp2_session_callbacks *cbs;
    if (!cbs) {
        if (nghttp2_session_callbacks_new(&cbs))
            return -1;
        nghttp2_session_callbacks_set_send_callback(cbs, h2_send);
        nghttp2_session_callbacks_set_send_data_callback(cbs, h2_send_data);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, h2_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, h2_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h2_frame_recv);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_stream_close);
    }
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 256}};
    if (nghttp2_session_server_new(&c->h2, cbs, c) ||
        nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1))
        return -1;
    c->state = U_H2;
    return 0;
}

/* Frames out while the socket takes them, then plaintext in; 0 to wait, -1 to close. New frames
 * are made only once the last batch is out, which keeps the invariant of flush(). */
static int h2_drive(struct uconn *c)
{
    for (;;) {
        if (!c->out_len && nghttp2_session_send(c->h2))
            return -1;
        bool wrote = c->out_len > 0;
        int r = flush(c);
        if (r <= 0)
            return r;
        if (wrote)
            continue; /* the session may have more than one batch */
        if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
            return -1;
        ERR_clear_error();
        r = SSL_read(c->ssl, c->in, IN_CAP);
        if (r <= 0)
            return would_block(c, r);
        if (nghttp2_session_mem_recv(c->h2, (const uint8_t *)c->in, (size_t)r) < 0)
            return -1;
    }
}

/* Offers h2 first, as a server that speaks both would. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    unsigned char *sel;
    (void)ssl, (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static bool alpn_is_h2(SSL *ssl)
{
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(ssl, &p, &len);
    return len == 2 && !memcmp(p, "h2", 2);
}

static void drive(struct uconn *c)
{
    for (;;) {
        int r;
        if (c->state == U_HANDSHAKE) {
            ERR_clear_error();
            r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                c->state = U_HTTP;
                if (alpn_is_h2(c->ssl) && h2_start(c))
                    goto fail;
                continue;
            }
            if (would_block(c, r))
                goto fail;
            return;
        }
        if (c->state == U_H2) {
            if (h2_drive(c))
                goto fail;
            return;
        }
        r = flush(c);
        if (r < 0)
            goto fail;
        if (r == 0)
            return;
        if (c->close_after)
            goto fail;
        if (c->in_len == IN_CAP)
            goto fail;
        ERR_clear_error();
        r = SSL_read(c->ssl, c->in + c->in_len, (int)(IN_CAP - c->in_len));
        if (r <= 0) {
            if (would_block(c, r))
                goto fail;
            return;
        }
        c->in_len += (size_t)r;
        if (process(c))
            goto fail;
    }
fail:
    uconn_close(c);
}

/* Appends each due event (one chunk) to its stream's output and writes it; the last event
 * brings the last chunk, and the connection then takes its next request. An event waits while
 * earlier output is still pending, which keeps the invariant of flush(). */
static void sse_tick(void)
{
    static uint64_t last;
    uint64_t t = now_ns();
    if (t - last < 1000000) /* at most once a millisecond, however busy the loop is */
        return;
    last = t;
    struct uconn *c = sse_streams, *next;
    for (; c; c = next) {
        next = c->sse_next;
        if (t < c->sse_due_ns || c->out_off < c->out_len)
            continue;
        char ev[96];
        int n = snprintf(ev, sizeof(ev), "id: %llu\ndata: event %llu\n\n",
                         (unsigned long long)c->sse_id, (unsigned long long)c->sse_id);
        char size[16];
        int sn = snprintf(size, sizeof(size), "%x\r\n", n);
        bool last = --c->sse_left == 0;
        if (out_append(c, size, (size_t)sn) || out_append(c, ev, (size_t)n) ||
            out_append(c, last ? "\r\n0\r\n\r\n" : "\r\n", last ? 7 : 2)) {
            uconn_close(c);
            continue;
        }
        c->sse_id++;
        c->sse_due_ns = t + c->sse_every_ns;
        if (last) {
            sse_unlink(c);
            if (process(c)) {
                uconn_close(c);
                continue;
            }
        }
        drive(c);
    }
}

static void on_accept(int lfd)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct uconn *c = calloc(1, sizeof(*c));
        if (!c || !(c->ssl = SSL_new(ctx))) {
            free(c);
            close(fd);
            continue;
        }
        c->fd = fd;
        /* Writes go through a 256 KiB buffering BIO so that a bulk body leaves in a few large
         * sends instead of one per 16 KiB record; reads come straight from the socket. */
        BIO *sock = BIO_new_socket(fd, BIO_NOCLOSE), *buf = BIO_new(BIO_f_buffer());
        if (!sock || !buf || BIO_set_write_buffer_size(buf, 256 * 1024) != 1 || !BIO_up_ref(sock)) {
            BIO_free(sock);
            BIO_free(buf);
            SSL_free(c->ssl);
            free(c);
            close(fd);
            continue;
        }
        BIO_push(buf, sock);
        SSL_set_bio(c->ssl, sock, buf);
        SSL_set_accept_state(c->ssl);
        c->events = EPOLLIN;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e)) {
            SSL_free(c->ssl);
            close(fd);
            free(c);
            continue;
        }
        nconns++;
        drive(c);
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: upstream --cert PEM --key PEM [--listen 127.0.0.1:PORT] "
                    "[--max-seconds S]\n"
                    "prints port=N on stdout once listening; SIGTERM stops it\n");
    return 1;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *listen_at = "127.0.0.1:0";
    double max_seconds = 900;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (!strcmp(argv[i], "--cert"))
            cert = argv[++i];
        else if (!strcmp(argv[i], "--key"))
            key = argv[++i];
        else if (!strcmp(argv[i], "--listen"))
            listen_at = argv[++i];
        else if (!strcmp(argv[i], "--max-seconds"))
            max_seconds = atof(argv[++i]);
        else
            return usage();
    }
    if (!cert || !key)
        return usage();

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)('a' + i % 26);

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);

    char host[64];
    const char *colon = strrchr(listen_at, ':');
    struct sockaddr_in sin = {.sin_family = AF_INET};
    if (!colon || (size_t)(colon - listen_at) >= sizeof(host))
        return usage();
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = 0;
    sin.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
        return usage();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 4096)) {
        perror("upstream: listen");
        return 1;
    }
    socklen_t sl = sizeof(sin);
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    printf("port=%d\n", ntohs(sin.sin_port));
    fflush(stdout);

    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &le);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!stopping) {
        struct epoll_event evs[MAX_EVENTS];
        int n = epoll_wait(ep, evs, MAX_EVENTS, sse_streams ? SSE_TICK_MS : 1000);
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr)
                on_accept(lfd);
            else
                drive(evs[i].data.ptr);
        }
        if (sse_streams)
            sse_tick();
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) > max_seconds)
            break;
    }
    return 0;
}
