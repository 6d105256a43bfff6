/* SPDX-License-Identifier: MIT */
/* loadgen: the load client for scripts/bench, one epoll loop on one thread, non-blocking TLS.
 * Talks to the bench upstream directly or through an HTTP proxy (CONNECT, then TLS to the
 * proxy's minted certificate). Modes: http (keep-alive GET /1k), ws (WebSocket echo round trips),
 * tunnels (connect + handshake + one GET + close), bulk (one GET /bulk), idle (open N tunnels and
 * hold them), h2 (GET /1k on M concurrent HTTP/2 streams per connection, kept full), h2bulk
 * (one GET /bulk on one HTTP/2 stream) and soak (N tunnels kept open, a third each doing paced
 * keep-alive GETs, server-sent event streams and WebSocket echoes, every answer checked, each
 * tunnel closed and replaced after a random lifetime). Every run is bounded in time and count;
 * it prints one line of key=value (soak also a progress line every --report seconds). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <nghttp2/nghttp2.h>

#define IN_CAP     (16 * 1024 + 64) /* one TLS record of plaintext, or a response head */
#define WS_MAX     4000             /* largest WebSocket payload we send */
#define OUT_CAP    (WS_MAX + 512)
#define HIST_N     200000 /* latency histogram: 1 us buckets up to 200 ms, then one more */
#define MAX_EVENTS 256
#define WS_GUID    "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define H2_WINDOW  (16 * 1024 * 1024) /* what we let a server send ahead, per stream and in all */
#define H2_OUT_MAX (64 * 1024)        /* frames gathered before they are written */

enum mode { M_HTTP, M_WS, M_TUNNELS, M_BULK, M_IDLE, M_H2, M_H2BULK, M_SOAK };
enum lstate {
    L_CONNECTING,
    L_PROXY_SEND,
    L_PROXY_RECV,
    L_HANDSHAKE,
    L_SEND,
    L_RECV,
    L_IDLE,
    L_H2,
    L_THINK /* soak: between two ops, until t_wake; any byte from the peer is an error */
};
/* What a soak tunnel does: each op is one GET /1k, one event stream or one echo round trip. */
enum kind { K_HTTP, K_SSE, K_WS };
/* Where the chunked body of an event stream is. */
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_END, CH_LAST };
#define SSE_BUF 256 /* one event, at most */

/* One HTTP/2 request slot of a connection: reused by the next request once its stream closed. */
struct h2slot {
    struct lconn *c;
    uint64_t t_sent, body;
    int status;
};

struct lconn {
    struct lconn *prev, *next;
    int fd;
    SSL *ssl;
    enum lstate state;
    uint32_t events; /* current epoll interest */
    bool ws_open;    /* the 101 arrived: ops are echo round trips from now on */
    bool head_done;  /* the response head was parsed; body_left counts down */
    bool idle_counted;
    bool established; /* its first op began (soak counts tunnels still opening) */
    enum kind kind;
    size_t ws_size;            /* payload of the current echo */
    enum chunk_state ch_state; /* event stream: position in the chunked body */
    uint64_t ch_left;          /* bytes left of the current chunk */
    uint64_t sse_expect;       /* the id the next event must carry */
    size_t sse_len;            /* bytes of an event not yet complete in sse_buf */
    uint64_t t_wake, t_end;    /* soak: end of the think time; when the tunnel retires */
    uint64_t t_progress;       /* last time the peer sent something or an op began */
    uint64_t body_left;
    uint64_t t_open, t_op;
    nghttp2_session *h2;  /* L_H2 */
    struct h2slot *slots; /* opt.streams of them */
    bool h2_over;         /* the session ended (bulk done, or a peer's GOAWAY) */
    char *h2_out;         /* frames not yet taken by SSL_write */
    size_t h2_len, h2_off, h2_cap;
    char ws_accept[32]; /* the Sec-WebSocket-Accept we expect */
    char sse_buf[SSE_BUF];
    size_t out_len, out_off;
    size_t in_len;
    char out[OUT_CAP];
    char in[IN_CAP];
};

static struct {
    enum mode mode;
    const char *mode_name;
    const char *target;
    const char *proxy;
    const char *ca;
    struct sockaddr_in target_addr, proxy_addr;
    char target_host[64];
    bool target_is_ip;
    long conns;
    long streams;
    long parallel;
    double duration, hold;
    uint64_t max_ops;
    uint64_t size;
    long max_errors;
    double think_ms, life, report, stall; /* soak */
    uint64_t sse_events, sse_ms;          /* soak: each event stream */
} opt = {
    .conns = 50,
    .streams = 10,
    .parallel = 50,
    .duration = 10,
    .hold = 5,
    .max_ops = UINT64_MAX,
    .size = 0,
    .max_errors = 100,
    .think_ms = 100,
    .life = 30,
    .stall = 10,
    .sse_events = 20,
    .sse_ms = 100,
};

static struct {
    uint64_t ops, bytes, errors, opened, dropped, idle;
    uint64_t opening, retired; /* soak: tunnels not yet established; closed at end of life */
    uint64_t http_ops, ws_ops, sse_streams, sse_events; /* soak: ops by kind */
    uint64_t t_start, t_end;
    uint32_t hist[HIST_N + 1];
} st;

static int ep = -1;
static SSL_CTX *ctx;
static struct lconn *conns;
static long active;
static bool stopping;
static char pattern[WS_MAX];
static uint32_t rng = 2463534242u;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint32_t xorshift(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static void record(uint64_t ns)
{
    uint64_t us = ns / 1000;
    st.hist[us < HIST_N ? us : HIST_N]++;
}

static double percentile(double p)
{
    uint64_t total = 0, seen = 0;
    for (size_t i = 0; i <= HIST_N; i++)
        total += st.hist[i];
    if (!total)
        return 0;
    uint64_t want = (uint64_t)ceil(p * (double)total);
    for (size_t i = 0; i <= HIST_N; i++) {
        seen += st.hist[i];
        if (seen >= want)
            return (double)i;
    }
    return HIST_N;
}

static void set_interest(struct lconn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

static bool is_ws(const struct lconn *c)
{
    return opt.mode == M_WS || (opt.mode == M_SOAK && c->kind == K_WS);
}

static bool is_sse(const struct lconn *c)
{
    return opt.mode == M_SOAK && c->kind == K_SSE;
}

static void conn_close(struct lconn *c, bool polite)
{
    if (c->ssl && polite && c->state >= L_SEND) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* one close_notify; we do not wait for the peer's */
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    close(c->fd);
    nghttp2_session_del(c->h2);
    free(c->slots);
    free(c->h2_out);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->idle_counted)
        st.idle--;
    if (!c->established)
        st.opening--;
    active--;
    free(c);
}

static void conn_fail(struct lconn *c, const char *what, const char *detail)
{
    st.errors++;
    if (opt.mode == M_SOAK && st.errors <= 50) /* a soak's errors are its findings: say when */
        fprintf(stderr, "loadgen: t=%.1fs %s tunnel: %s (state %d): %s\n",
                (double)(now_ns() - st.t_start) / 1e9,
                c->kind == K_HTTP  ? "http"
                : c->kind == K_SSE ? "sse"
                                   : "ws",
                what, (int)c->state, detail ? detail : "");
    else if (st.errors <= 5)
        fprintf(stderr, "loadgen: %s (state %d): %s\n", what, (int)c->state, detail ? detail : "");
    conn_close(c, false);
}

static void ssl_fail(struct lconn *c, const char *what, int r)
{
    char buf[256];
    int e = SSL_get_error(c->ssl, r);
    unsigned long q = ERR_peek_error();
    if (q)
        ERR_error_string_n(q, buf, sizeof(buf));
    else if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !errno))
        snprintf(buf, sizeof(buf), "connection closed by peer");
    else
        snprintf(buf, sizeof(buf), "ssl error %d, errno %d (%s)", e, errno, strerror(errno));
    conn_fail(c, what, buf);
}

/* After an SSL call returned r <= 0: sets interest and returns true when it only would block. */
static bool ssl_blocked(struct lconn *c, int r)
{
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        set_interest(c, EPOLLIN);
        return true;
    case SSL_ERROR_WANT_WRITE:
        set_interest(c, EPOLLOUT);
        return true;
    default:
        return false;
    }
}

/* Soak: each new tunnel takes the next kind in turn, and a lifetime of 0.5 to 1.5 x --life. */
static void soak_assign(struct lconn *c)
{
    static unsigned next_kind;
    c->kind = (enum kind)(next_kind++ % 3);
    if (opt.life > 0)
        c->t_end =
            c->t_open + (uint64_t)(opt.life * 1e9 * (0.5 + (double)(xorshift() % 1000) / 1000));
}

static int conn_open(void)
{
    struct lconn *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    const struct sockaddr_in *sa = opt.proxy ? &opt.proxy_addr : &opt.target_addr;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        free(c);
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->t_open = c->t_progress = now_ns();
    c->state = L_CONNECTING;
    c->events = EPOLLOUT;
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof(*sa)) && errno != EINPROGRESS) {
        close(c->fd);
        free(c);
        return -1;
    }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e)) {
        close(c->fd);
        free(c);
        return -1;
    }
    c->next = conns;
    if (conns)
        conns->prev = c;
    conns = c;
    active++;
    st.opened++;
    st.opening++;
    if (opt.mode == M_SOAK)
        soak_assign(c);
    return 0;
}

static int start_tls(struct lconn *c)
{
    c->ssl = SSL_new(ctx);
    if (!c->ssl)
        return -1;
    SSL_set_fd(c->ssl, c->fd);
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (opt.target_is_ip) {
        /* RFC 6066 §3: no SNI for an address literal; the certificate must carry an IP SAN. */
        if (X509_VERIFY_PARAM_set1_ip_asc(vp, opt.target_host) != 1)
            return -1;
    } else if (X509_VERIFY_PARAM_set1_host(vp, opt.target_host, 0) != 1 ||
               SSL_set_tlsext_host_name(c->ssl, opt.target_host) != 1) {
        return -1;
    }
    /* As a browser does: h2 first, HTTP/1.1 as the fallback (which the h2 modes refuse). */
    static const unsigned char alpn[] = "\x02h2\x08http/1.1";
    if ((opt.mode == M_H2 || opt.mode == M_H2BULK) &&
        SSL_set_alpn_protos(c->ssl, alpn, sizeof(alpn) - 1))
        return -1;
    SSL_set_connect_state(c->ssl);
    c->state = L_HANDSHAKE;
    return 0;
}

/* Makes a fresh Sec-WebSocket-Key (25 bytes with the NUL) and the Accept the 101 must carry. */
static void ws_key(struct lconn *c, char key[32])
{
    unsigned char raw[16], hash[EVP_MAX_MD_SIZE];
    char buf[96];
    unsigned hl = 0;
    RAND_bytes(raw, sizeof(raw));
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    int n = snprintf(buf, sizeof(buf), "%s%s", key, WS_GUID);
    EVP_Digest(buf, (size_t)n, hash, &hl, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)c->ws_accept, hash, (int)hl);
}

/* Puts the next request (plaintext) into c->out and moves to L_SEND. */
static void begin_op(struct lconn *c)
{
    int n;
    c->out_off = 0;
    c->in_len = 0;
    c->head_done = false;
    c->t_op = c->t_progress = now_ns();
    if (!c->established) {
        c->established = true;
        st.opening--;
    }
    if (is_ws(c) && c->ws_open) {
        unsigned char *o = (unsigned char *)c->out;
        c->ws_size = opt.mode == M_WS ? opt.size : 1 + xorshift() % 1000;
        size_t len = c->ws_size, hl = 2;
        uint32_t m = xorshift();
        o[0] = 0x82; /* FIN + binary */
        if (len < 126) {
            o[1] = (unsigned char)(0x80 | len);
        } else {
            o[1] = 0x80 | 126;
            o[2] = (unsigned char)(len >> 8);
            o[3] = (unsigned char)len;
            hl = 4;
        }
        memcpy(o + hl, &m, 4);
        for (size_t i = 0; i < len; i++)
            o[hl + 4 + i] = (unsigned char)pattern[i] ^ o[hl + (i & 3)];
        c->out_len = hl + 4 + len;
    } else if (is_ws(c)) {
        char key[32];
        ws_key(c, key);
        n = snprintf(c->out, OUT_CAP,
                     "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.target, key);
        c->out_len = (size_t)n;
    } else if (is_sse(c)) {
        n = snprintf(c->out, OUT_CAP,
                     "GET /sse?n=%llu&ms=%llu HTTP/1.1\r\nHost: %s\r\n"
                     "Accept: text/event-stream\r\nUser-Agent: airlock-bench\r\n\r\n",
                     (unsigned long long)opt.sse_events, (unsigned long long)opt.sse_ms,
                     opt.target);
        c->out_len = (size_t)n;
    } else if (opt.mode == M_BULK) {
        n = snprintf(c->out, OUT_CAP,
                     "GET /bulk?n=%llu HTTP/1.1\r\nHost: %s\r\nUser-Agent: airlock-bench\r\n\r\n",
                     (unsigned long long)opt.size, opt.target);
        c->out_len = (size_t)n;
    } else {
        n = snprintf(c->out, OUT_CAP,
                     "GET /1k HTTP/1.1\r\nHost: %s\r\nUser-Agent: airlock-bench\r\n"
                     "Accept: */*\r\n\r\n",
                     opt.target);
        c->out_len = (size_t)n;
    }
    c->state = L_SEND;
}

static bool find_header(const char *head, size_t len, const char *name, const char **v, size_t *vl)
{
    size_t nl = strlen(name);
    const char *p = memmem(head, len, "\r\n", 2), *end = head + len;
    while (p && p + 2 < end) {
        const char *line = p + 2, *le = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (!le)
            break;
        if ((size_t)(le - line) > nl && line[nl] == ':' && !strncasecmp(line, name, nl)) {
            const char *s = line + nl + 1;
            while (s < le && (*s == ' ' || *s == '\t'))
                s++;
            *v = s;
            *vl = (size_t)(le - s);
            return true;
        }
        p = le;
    }
    return false;
}

/* ---- event streams (soak) -------------------------------------------------------------------- */

static int sse_body(struct lconn *c, const char **why);

/* The head of an event stream's answer, hl bytes at the start of c->in: a chunked 200 of type
 * text/event-stream. Returns what parse_answer() returns. */
static int sse_head(struct lconn *c, size_t hl, int status, const char **why)
{
    const char *v;
    size_t vl;
    if (status != 200 || !find_header(c->in, hl, "transfer-encoding", &v, &vl) || vl != 7 ||
        strncasecmp(v, "chunked", 7) || !find_header(c->in, hl, "content-type", &v, &vl) ||
        vl < 17 || strncasecmp(v, "text/event-stream", 17)) {
        *why = "not a chunked 200 text/event-stream";
        c->in[hl - 4] = 0;
        fprintf(stderr, "loadgen: answer head: %.200s\n", c->in);
        return -1;
    }
    c->head_done = true;
    c->ch_state = CH_SIZE;
    c->sse_expect = 0;
    c->sse_len = 0;
    memmove(c->in, c->in + hl, c->in_len - hl);
    c->in_len -= hl;
    return sse_body(c, why);
}

/* Takes len bytes of the event stream (chunk framing removed): each complete event ("id: N"
 * first, a blank line last) must carry the next id. */
static int sse_feed(struct lconn *c, const char *p, size_t len, const char **why)
{
    if (len > SSE_BUF - c->sse_len) {
        *why = "an event larger than expected";
        return -1;
    }
    memcpy(c->sse_buf + c->sse_len, p, len);
    c->sse_len += len;
    char *e;
    while ((e = memmem(c->sse_buf, c->sse_len, "\n\n", 2))) {
        size_t n = (size_t)(e - c->sse_buf) + 2;
        char *end;
        if (n < 5 || memcmp(c->sse_buf, "id: ", 4) ||
            strtoull(c->sse_buf + 4, &end, 10) != c->sse_expect || *end != '\n') {
            *why = "event out of sequence";
            return -1;
        }
        c->sse_expect++;
        st.sse_events++;
        memmove(c->sse_buf, c->sse_buf + n, c->sse_len - n);
        c->sse_len -= n;
    }
    return 0;
}

/* The chunked body in c->in, consumed as far as it goes: 1 once the last chunk came after every
 * event, 0 for more, -1. */
static int sse_body(struct lconn *c, const char **why)
{
    size_t pos = 0;
    for (;;) {
        const char *b = c->in + pos, *e;
        size_t avail = c->in_len - pos, take;
        char *end;
        switch (c->ch_state) {
        case CH_SIZE:
            if (!(e = memmem(b, avail, "\r\n", 2)))
                goto more;
            c->ch_left = strtoull(b, &end, 16);
            if (end == b) {
                *why = "bad chunk size";
                return -1;
            }
            pos += (size_t)(e - b) + 2;
            c->ch_state = c->ch_left ? CH_DATA : CH_LAST;
            break;
        case CH_DATA:
            take = avail < c->ch_left ? avail : (size_t)c->ch_left;
            if (!take)
                goto more;
            if (sse_feed(c, b, take, why))
                return -1;
            pos += take;
            c->ch_left -= take;
            if (!c->ch_left)
                c->ch_state = CH_DATA_END;
            break;
        case CH_DATA_END:
        case CH_LAST:
            if (avail < 2)
                goto more;
            if (memcmp(b, "\r\n", 2)) {
                *why = c->ch_state == CH_LAST ? "trailers after the last chunk" : "bad chunk end";
                return -1;
            }
            pos += 2;
            if (c->ch_state == CH_DATA_END) {
                c->ch_state = CH_SIZE;
                break;
            }
            if (pos != c->in_len || c->sse_len || c->sse_expect != opt.sse_events) {
                *why = pos != c->in_len ? "bytes after the event stream"
                                        : "the event stream ended early";
                return -1;
            }
            c->in_len = 0;
            return 1;
        }
    }
more:
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
    return 0;
}

/* Looks at c->in after a read: 1 when the current op's answer is complete, 0 for more, -1. */
static int parse_answer(struct lconn *c, const char **why)
{
    if (is_ws(c) && c->ws_open) {
        size_t hl = c->ws_size < 126 ? 2 : 4;
        if (c->in_len < hl + c->ws_size)
            return 0;
        if (c->in_len > hl + c->ws_size || (unsigned char)c->in[0] != 0x82 ||
            memcmp(c->in + hl, pattern, c->ws_size)) {
            *why = "echoed frame differs from the one sent";
            return -1;
        }
        return 1;
    }
    if (!c->head_done) {
        char *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!e) {
            *why = "response head too large";
            return c->in_len == IN_CAP ? -1 : 0;
        }
        size_t hl = (size_t)(e - c->in) + 4;
        const char *v;
        size_t vl;
        int status = c->in_len > 12 && !memcmp(c->in, "HTTP/1.1 ", 9) ? atoi(c->in + 9) : 0;
        if (is_sse(c))
            return sse_head(c, hl, status, why);
        if (is_ws(c)) {
            if (status != 101 || !find_header(c->in, hl, "sec-websocket-accept", &v, &vl) ||
                vl != strlen(c->ws_accept) || memcmp(v, c->ws_accept, vl)) {
                *why = "bad WebSocket upgrade answer";
                c->in[hl - 4] = 0;
                fprintf(stderr, "loadgen: answer head: %.200s\n", c->in);
                return -1;
            }
            if (c->in_len != hl) {
                *why = "bytes after the 101 head";
                return -1;
            }
            return 1;
        }
        if (status != 200 || !find_header(c->in, hl, "content-length", &v, &vl)) {
            *why = "not a 200 with Content-Length";
            c->in[hl - 4] = 0;
            fprintf(stderr, "loadgen: answer head: %.200s\n", c->in);
            return -1;
        }
        c->body_left = strtoull(v, NULL, 10);
        c->head_done = true;
        memmove(c->in, c->in + hl, c->in_len - hl);
        c->in_len -= hl;
    }
    if (is_sse(c))
        return sse_body(c, why);
    if (c->in_len > c->body_left) {
        *why = "bytes after the response body";
        return -1;
    }
    c->body_left -= c->in_len;
    st.bytes += c->in_len;
    c->in_len = 0;
    return c->body_left == 0;
}

/* Soak: after an op, the tunnel retires (closed politely; refill() replaces it) or thinks. */
static bool soak_next(struct lconn *c, uint64_t t)
{
    if (c->kind == K_HTTP)
        st.http_ops++;
    else if (c->kind == K_WS)
        st.ws_ops++;
    else
        st.sse_streams++;
    if (c->kind != K_SSE)
        record(t - c->t_op);
    if (stopping || (c->t_end && t >= c->t_end)) {
        st.retired += !stopping;
        conn_close(c, true);
        return false;
    }
    c->state = L_THINK;
    c->t_wake = t + (uint64_t)(opt.think_ms * 2e6 * (double)(xorshift() % 1000) / 1000);
    return true;
}

/* One op finished on c. Returns false when c was closed. */
static bool op_done(struct lconn *c)
{
    uint64_t t = now_ns();
    if (is_ws(c) && !c->ws_open) {
        c->ws_open = true;
        begin_op(c);
        return true;
    }
    st.ops++;
    switch (opt.mode) {
    case M_SOAK:
        return soak_next(c, t);
    case M_HTTP:
    case M_WS:
        record(t - c->t_op);
        if (stopping || st.ops >= opt.max_ops) {
            conn_close(c, true);
            return false;
        }
        begin_op(c);
        return true;
    case M_TUNNELS:
    case M_BULK:
        record(t - c->t_open);
        conn_close(c, true);
        return false;
    case M_IDLE:
        c->state = L_IDLE;
        c->idle_counted = true;
        st.idle++;
        return true;
    case M_H2:
    case M_H2BULK: /* ops are streams: see h2_on_close */
        break;
    }
    return true;
}

/* ---- HTTP/2 ---------------------------------------------------------------------------------- */

static char bulk_path[40]; /* "/bulk?n=SIZE" */

static bool h2_mode(void)
{
    return opt.mode == M_H2 || opt.mode == M_H2BULK;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v),                                      \
            NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE                           \
    }

static int h2_request(struct lconn *c, struct h2slot *s)
{
    const char *path = opt.mode == M_H2BULK ? bulk_path : "/1k";
    nghttp2_nv nv[] = {NV(":method", "GET"),
                       NV(":scheme", "https"),
                       NV(":authority", opt.target),
                       NV(":path", path),
                       NV("user-agent", "airlock-bench"),
                       NV("accept", "*/*")};
    s->t_sent = now_ns();
    s->body = 0;
    s->status = 0;
    return nghttp2_submit_request(c->h2, NULL, nv, sizeof(nv) / sizeof(nv[0]), NULL, s) < 0 ? -1
                                                                                            : 0;
}

static int h2_on_header(nghttp2_session *h, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
    (void)flags, (void)ud;
    struct h2slot *s = nghttp2_session_get_stream_user_data(h, f->hd.stream_id);
    if (s && namelen == 7 && !memcmp(name, ":status", 7) && valuelen == 3)
        s->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    return 0;
}

static int h2_on_data(nghttp2_session *h, uint8_t flags, int32_t id, const uint8_t *data,
                      size_t len, void *ud)
{
    (void)flags, (void)data, (void)ud;
    struct h2slot *s = nghttp2_session_get_stream_user_data(h, id);
    if (s)
        s->body += len;
    st.bytes += len;
    return 0;
}

/* A stream is one op when it brought a 200 with the whole body; then its slot asks again (h2) or
 * the session is over (h2bulk). */
static int h2_on_close(nghttp2_session *h, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    struct h2slot *s = nghttp2_session_get_stream_user_data(h, id);
    if (!s)
        return 0;
    struct lconn *c = s->c;
    uint64_t t = now_ns();
    if (code || s->status != 200 || s->body != (opt.mode == M_H2BULK ? opt.size : 1024)) {
        st.errors++;
        if (st.errors <= 5)
            fprintf(stderr, "loadgen: h2 stream %d: status %d, %llu body bytes, error code %u\n",
                    (int)id, s->status, (unsigned long long)s->body, code);
    } else {
        st.ops++;
        record(t - (opt.mode == M_H2BULK ? c->t_open : s->t_sent));
    }
    if (opt.mode == M_H2BULK) {
        c->h2_over = true;
        return 0;
    }
    if (!stopping && st.ops < opt.max_ops && h2_request(c, s))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

/* After the handshake: the session, our SETTINGS and the first requests. */
static int h2_begin(struct lconn *c, const char **why)
{
    static nghttp2_session_callbacks *cbs;
    const unsigned char *p;
    unsigned len;
    SSL_get0_alpn_selected(c->ssl, &p, &len);
    if (len != 2 || memcmp(p, "h2", 2)) {
        *why = "the server did not select h2 in ALPN";
        return -1;
    }
    *why = "out of memory";
    if (!cbs) {
        if (nghttp2_session_callbacks_new(&cbs))
            return -1;
        nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_close);
    }
    long n = opt.mode == M_H2BULK ? 1 : opt.streams;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW}};
    c->slots = calloc((size_t)n, sizeof(*c->slots));
    if (!c->slots || nghttp2_session_client_new(&c->h2, cbs, c) ||
        nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 2) ||
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, H2_WINDOW))
        return -1;
    for (long i = 0; i < n; i++) {
        c->slots[i].c = c;
        if (h2_request(c, &c->slots[i]))
            return -1;
    }
    c->state = L_H2;
    return 0;
}

/* Takes the frames the session has to send into c->h2_out, up to about H2_OUT_MAX. */
static int h2_gather(struct lconn *c)
{
    while (c->h2_len < H2_OUT_MAX) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->h2, &d);
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        if (c->h2_len + (size_t)n > c->h2_cap) {
            size_t cap = c->h2_cap ? c->h2_cap * 2 : 4096;
            while (cap < c->h2_len + (size_t)n)
                cap *= 2;
            char *b = realloc(c->h2_out, cap);
            if (!b)
                return -1;
            c->h2_out = b;
            c->h2_cap = cap;
        }
        memcpy(c->h2_out + c->h2_len, d, (size_t)n);
        c->h2_len += (size_t)n;
    }
    return 0;
}

/* Frames out while the socket takes them, then frames in, until both would block. A blocked
 * SSL_write is retried with the same bytes: nothing is gathered while some are pending. */
static void h2_drive(struct lconn *c)
{
    for (;;) {
        int r;
        if (c->h2_off < c->h2_len) {
            ERR_clear_error();
            r = SSL_write(c->ssl, c->h2_out + c->h2_off, (int)(c->h2_len - c->h2_off));
            if (r <= 0) {
                if (!ssl_blocked(c, r))
                    ssl_fail(c, "write", r);
                return;
            }
            c->h2_off += (size_t)r;
            continue;
        }
        c->h2_off = c->h2_len = 0;
        if (h2_gather(c)) {
            conn_fail(c, "h2 session", "cannot make frames");
            return;
        }
        if (c->h2_len)
            continue;
        if (c->h2_over && opt.mode == M_H2BULK) {
            conn_close(c, true);
            return;
        }
        if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) {
            conn_fail(c, "h2 session", "ended by the server");
            return;
        }
        ERR_clear_error();
        r = SSL_read(c->ssl, c->in, IN_CAP);
        if (r <= 0) {
            if (!ssl_blocked(c, r))
                ssl_fail(c, "read", r);
            return;
        }
        ssize_t n = nghttp2_session_mem_recv(c->h2, (const uint8_t *)c->in, (size_t)r);
        if (n < 0) {
            conn_fail(c, "h2 session", nghttp2_strerror((int)n));
            return;
        }
    }
}

static void drive(struct lconn *c)
{
    for (;;) {
        int r;
        ssize_t n;
        const char *why = NULL;
        switch (c->state) {
        case L_CONNECTING: {
            int err = 0;
            socklen_t l = sizeof(err);
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) {
                conn_fail(c, "connect", strerror(err));
                return;
            }
            if (opt.proxy) {
                n = snprintf(c->out, OUT_CAP,
                             "CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: airlock-bench\r\n\r\n",
                             opt.target, opt.target);
                c->out_len = (size_t)n;
                c->out_off = 0;
                c->state = L_PROXY_SEND;
            } else if (start_tls(c)) {
                conn_fail(c, "tls setup", NULL);
                return;
            }
            break;
        }
        case L_PROXY_SEND:
            n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    set_interest(c, EPOLLOUT);
                    return;
                }
                conn_fail(c, "send CONNECT", strerror(errno));
                return;
            }
            c->out_off += (size_t)n;
            if (c->out_off == c->out_len)
                c->state = L_PROXY_RECV;
            break;
        case L_PROXY_RECV: {
            n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                set_interest(c, EPOLLIN);
                return;
            }
            if (n <= 0) {
                conn_fail(c, "CONNECT answer", n ? strerror(errno) : "proxy closed");
                return;
            }
            c->in_len += (size_t)n;
            char *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
            if (!e) {
                if (c->in_len == IN_CAP) {
                    conn_fail(c, "CONNECT answer", "head too large");
                    return;
                }
                break;
            }
            if (c->in_len < 12 || memcmp(c->in, "HTTP/1.1 200", 12) ||
                c->in_len != (size_t)(e - c->in) + 4) {
                *e = 0;
                conn_fail(c, "CONNECT refused", c->in);
                return;
            }
            c->in_len = 0;
            if (start_tls(c)) {
                conn_fail(c, "tls setup", NULL);
                return;
            }
            break;
        }
        case L_HANDSHAKE:
            ERR_clear_error();
            r = SSL_do_handshake(c->ssl);
            if (r == 1 && h2_mode()) {
                if (h2_begin(c, &why)) {
                    conn_fail(c, "h2", why);
                    return;
                }
                break;
            }
            if (r == 1) {
                begin_op(c);
                break;
            }
            if (!ssl_blocked(c, r)) {
                ssl_fail(c, "tls handshake", r);
                return;
            }
            return;
        case L_SEND:
            ERR_clear_error();
            r = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
            if (r <= 0) {
                if (!ssl_blocked(c, r))
                    ssl_fail(c, "write", r);
                return;
            }
            c->out_off += (size_t)r;
            if (c->out_off == c->out_len)
                c->state = L_RECV;
            break;
        case L_RECV:
            ERR_clear_error();
            r = SSL_read(c->ssl, c->in + c->in_len, (int)(IN_CAP - c->in_len));
            if (r <= 0) {
                if (!ssl_blocked(c, r))
                    ssl_fail(c, "read", r);
                return;
            }
            c->in_len += (size_t)r;
            c->t_progress = now_ns();
            r = parse_answer(c, &why);
            if (r < 0) {
                conn_fail(c, "answer", why);
                return;
            }
            if (r == 1 && !op_done(c))
                return;
            break;
        case L_IDLE:
            ERR_clear_error();
            r = SSL_read(c->ssl, c->in, IN_CAP);
            if (r <= 0 && ssl_blocked(c, r))
                return;
            st.dropped++;
            conn_close(c, false);
            return;
        case L_H2:
            h2_drive(c);
            return;
        case L_THINK:
            ERR_clear_error();
            r = SSL_read(c->ssl, c->in, IN_CAP);
            if (r <= 0 && ssl_blocked(c, r))
                return;
            if (r > 0)
                conn_fail(c, "idle tunnel", "bytes nobody asked for");
            else
                ssl_fail(c, "idle tunnel", r);
            return;
        }
    }
}

/* Soak, at most once a millisecond: tunnels whose think time is over begin their next op, and a
 * tunnel that has heard nothing for --stall seconds in the middle of an op fails. */
static void soak_tick(uint64_t t)
{
    static uint64_t last;
    if (t - last < 1000000)
        return;
    last = t;
    uint64_t stall = (uint64_t)(opt.stall * 1e9);
    struct lconn *c = conns, *next;
    for (; c; c = next) {
        next = c->next; /* drive() may close c, never another */
        if (c->state == L_THINK && t >= c->t_wake) {
            begin_op(c);
            drive(c);
        } else if (c->state != L_THINK && t - c->t_progress > stall) {
            conn_fail(c, "stalled", "nothing from the peer for --stall seconds");
        }
    }
}

static void soak_report(uint64_t t)
{
    printf("progress t=%.0f open=%ld opening=%llu ops=%llu http=%llu ws=%llu sse_streams=%llu "
           "sse_events=%llu tunnels=%llu retired=%llu errors=%llu\n",
           (double)(t - st.t_start) / 1e9, active, (unsigned long long)st.opening,
           (unsigned long long)st.ops, (unsigned long long)st.http_ops,
           (unsigned long long)st.ws_ops, (unsigned long long)st.sse_streams,
           (unsigned long long)st.sse_events, (unsigned long long)st.opened,
           (unsigned long long)st.retired, (unsigned long long)st.errors);
    fflush(stdout);
}

/* Opens connections until the mode's target is met. */
static void refill(void)
{
    if (stopping)
        return;
    for (int guard = 0; guard < 4096; guard++) {
        bool want;
        switch (opt.mode) {
        case M_BULK:
        case M_H2BULK:
            want = st.opened < 1;
            break;
        case M_IDLE:
            want = st.opened < (uint64_t)opt.conns && active - (long)st.idle < opt.parallel;
            break;
        case M_SOAK:
            want = active < opt.conns && st.opening < (uint64_t)opt.parallel;
            break;
        default:
            want = active < opt.conns && st.ops + (uint64_t)active < opt.max_ops;
            break;
        }
        if (!want)
            return;
        if (conn_open()) {
            st.errors++;
            fprintf(stderr, "loadgen: cannot open a connection: %s\n", strerror(errno));
            return;
        }
    }
}

static int parse_addr(const char *s, struct sockaddr_in *sin, char *host, size_t hostsz)
{
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= hostsz)
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    memset(sin, 0, sizeof(*sin));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sin);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) ||
        getsockname(fd, (struct sockaddr *)&sin, &sl))
        return 1;
    printf("%d\n", ntohs(sin.sin_port));
    close(fd);
    return 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: loadgen --mode http|ws|tunnels|bulk|idle|h2|h2bulk|soak --target IP:PORT\n"
            "               --ca PEM [--proxy IP:PORT] [--conns N] [--streams M] [--duration S]\n"
            "               [--max-ops N] [--size BYTES] [--parallel N] [--hold S]\n"
            "               [--max-errors N] [--think-ms MS] [--life S] [--sse-events N]\n"
            "               [--sse-ms MS] [--stall S] [--report S]\n"
            "       loadgen --free-port\n"
            "conns: connections (http, ws, h2), concurrent tunnels (tunnels), tunnels to hold "
            "(idle),\n"
            "       tunnels kept open (soak)\n"
            "parallel: tunnels being opened at once (idle, soak; default 50)\n"
            "streams: concurrent HTTP/2 streams per connection (h2; default 10)\n"
            "size: WebSocket payload (default 64) or bulk body (bulk, h2bulk; default 1 GiB)\n"
            "soak: think-ms, mean pause between two ops of a tunnel (default 100); life, mean\n"
            "      seconds a tunnel lives (default 30, 0 for ever); sse-events and sse-ms, each\n"
            "      event stream (default 20 events, one per 100 ms); stall, seconds without a\n"
            "      byte in the middle of an op that count as an error (default 10); report,\n"
            "      seconds between progress lines (default 0: none)\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--free-port"))
        return free_port();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--mode"))
            opt.mode_name = v;
        else if (!strcmp(a, "--target"))
            opt.target = v;
        else if (!strcmp(a, "--proxy"))
            opt.proxy = v;
        else if (!strcmp(a, "--ca"))
            opt.ca = v;
        else if (!strcmp(a, "--conns"))
            opt.conns = atol(v);
        else if (!strcmp(a, "--streams"))
            opt.streams = atol(v);
        else if (!strcmp(a, "--parallel"))
            opt.parallel = atol(v);
        else if (!strcmp(a, "--duration"))
            opt.duration = atof(v);
        else if (!strcmp(a, "--hold"))
            opt.hold = atof(v);
        else if (!strcmp(a, "--max-ops"))
            opt.max_ops = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--size"))
            opt.size = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--max-errors"))
            opt.max_errors = atol(v);
        else if (!strcmp(a, "--think-ms"))
            opt.think_ms = atof(v);
        else if (!strcmp(a, "--life"))
            opt.life = atof(v);
        else if (!strcmp(a, "--sse-events"))
            opt.sse_events = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--sse-ms"))
            opt.sse_ms = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--stall"))
            opt.stall = atof(v);
        else if (!strcmp(a, "--report"))
            opt.report = atof(v);
        else
            return usage();
    }
    if (!opt.mode_name || !opt.target || !opt.ca || opt.conns < 1 || opt.parallel < 1 ||
        opt.streams < 1 || opt.duration <= 0)
        return usage();
    static const char *names[] = {"http", "ws", "tunnels", "bulk", "idle", "h2", "h2bulk", "soak"};
    int m = -1;
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
        if (!strcmp(opt.mode_name, names[i]))
            m = i;
    }
    if (m < 0)
        return usage();
    opt.mode = (enum mode)m;
    if (opt.mode == M_WS && !opt.size)
        opt.size = 64;
    if ((opt.mode == M_BULK || opt.mode == M_H2BULK) && !opt.size)
        opt.size = 1ull << 30;
    if (opt.mode == M_BULK || opt.mode == M_H2BULK)
        opt.conns = 1;
    snprintf(bulk_path, sizeof(bulk_path), "/bulk?n=%llu", (unsigned long long)opt.size);
    if (opt.mode == M_WS && opt.size > WS_MAX)
        return usage();
    struct in_addr ia;
    char phost[64];
    if (parse_addr(opt.target, &opt.target_addr, opt.target_host, sizeof(opt.target_host)))
        return usage();
    opt.target_is_ip = inet_pton(AF_INET, opt.target_host, &ia) == 1;
    if (opt.proxy && parse_addr(opt.proxy, &opt.proxy_addr, phost, sizeof(phost)))
        return usage();

    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)('A' + i % 26);
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Read whole socket buffers, not a 5-byte record header and then its body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    /* Every tunnel does a full handshake, as a fresh client process would. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Many tunnels that are mostly quiet: buffers only while bytes are in flight. */
    if (opt.mode == M_IDLE || opt.mode == M_SOAK)
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    ep = epoll_create1(EPOLL_CLOEXEC);

    st.t_start = now_ns();
    uint64_t deadline = st.t_start + (uint64_t)(opt.duration * 1e9);
    uint64_t hard_end = deadline + (uint64_t)(opt.hold * 1e9) + 5000000000ull;
    uint64_t hold_end = 0, next_report = st.t_start + (uint64_t)(opt.report * 1e9);
    bool ready = false, timed_out = false;
    refill();
    for (;;) {
        struct epoll_event evs[MAX_EVENTS];
        int n = epoll_wait(ep, evs, MAX_EVENTS, opt.mode == M_SOAK ? 5 : 50);
        for (int i = 0; i < n; i++)
            drive(evs[i].data.ptr);
        uint64_t t = now_ns();
        if (opt.mode == M_SOAK) {
            soak_tick(t);
            if (opt.report > 0 && t >= next_report) {
                soak_report(t);
                next_report += (uint64_t)(opt.report * 1e9);
            }
        }
        if (st.errors >= (uint64_t)opt.max_errors) {
            fprintf(stderr, "loadgen: stopping after %llu errors\n", (unsigned long long)st.errors);
            break;
        }
        if (t >= hard_end)
            break;
        if (opt.mode == M_IDLE) {
            if (!ready &&
                (st.idle + st.dropped + st.errors >= (uint64_t)opt.conns || t >= deadline)) {
                ready = true;
                timed_out = t >= deadline;
                stopping = true;
                hold_end = t + (uint64_t)(opt.hold * 1e9);
                printf("ready idle=%llu\n", (unsigned long long)st.idle);
                fflush(stdout);
            }
            if (ready && t >= hold_end)
                break;
            if (!ready)
                refill();
            continue;
        }
        bool bulk = opt.mode == M_BULK || opt.mode == M_H2BULK;
        if (t >= deadline) {
            timed_out = bulk;
            break;
        }
        if (st.ops >= opt.max_ops || (bulk && !active))
            break;
        refill();
    }
    st.t_end = now_ns();
    stopping = true;
    uint64_t alive = st.idle;
    while (conns)
        conn_close(conns, opt.mode != M_IDLE);

    double secs = (double)(st.t_end - st.t_start) / 1e9;
    if (opt.mode == M_IDLE)
        secs = (double)(st.t_end - st.t_start) / 1e9 - opt.hold;
    printf("mode=%s via=%s conns=%ld secs=%.3f ops=%llu rate=%.1f errors=%llu p50_us=%.0f "
           "p99_us=%.0f mib_s=%.1f",
           opt.mode_name, opt.proxy ? "proxy" : "direct", opt.conns, secs,
           (unsigned long long)st.ops, (double)st.ops / secs, (unsigned long long)st.errors,
           percentile(0.50), percentile(0.99), (double)st.bytes / secs / 1048576.0);
    if (opt.mode == M_IDLE)
        printf(" opened=%llu alive=%llu dropped=%llu", (unsigned long long)st.opened,
               (unsigned long long)alive, (unsigned long long)st.dropped);
    if (h2_mode())
        printf(" streams=%ld", opt.mode == M_H2 ? opt.streams : 1);
    if (opt.mode == M_SOAK)
        printf(" http=%llu ws=%llu sse_streams=%llu sse_events=%llu tunnels=%llu retired=%llu",
               (unsigned long long)st.http_ops, (unsigned long long)st.ws_ops,
               (unsigned long long)st.sse_streams, (unsigned long long)st.sse_events,
               (unsigned long long)st.opened, (unsigned long long)st.retired);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf(" cpu_s=%.3f", (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                              (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
    if (timed_out)
        printf(" timed_out=1");
    printf("\n");
    return st.errors >= (uint64_t)opt.max_errors ? 1 : 0;
}
