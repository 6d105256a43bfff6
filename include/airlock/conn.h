/* SPDX-License-Identifier: MIT */
/* conn: one accepted client connection and everything it leads to: the client and upstream
 * TCP handles, a TLS endpoint per side, one timer; what the bytes mean is its session's.
 * One calloc per connection; `refs` counts initialised handles and in-flight requests, and the
 * last one released frees it. conn_close() is the one close path. Reads go into buffers owned
 * by the worker (not the connection), so an idle tunnel costs its struct and two SSL objects. */
#ifndef AIRLOCK_CONN_H
#define AIRLOCK_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "airlock/policy.h"
#include "airlock/side.h"
#include "airlock/target.h"

struct server;
struct worker;
struct tls;
struct redactor;
struct resolver_client;
struct peer_info;

/* Writes queued to one side above this stop reads on the other side; below the low-water mark
 * they start again (STYLE.md §5). */
#define CONN_HIGH_WATER (256 * 1024)
#define CONN_LOW_WATER  (64 * 1024)
#define CONN_READ_BUF   (64 * 1024) /* per worker: one socket read */
#define CONN_PLAIN_BUF  (16 * 1024) /* one TLS record of plaintext (on the stack) */

/* A listening socket, accepted from by hand (server.c) so that running out of descriptors is
 * seen, logged and answered instead of swallowed by libuv. */
struct listener {
    uv_poll_t poll;
    int fd;
    struct worker *w;
    bool transparent;             /* takes connections the kernel redirected (--transparent) */
    struct sockaddr_storage addr; /* as bound */
};

struct conn;
struct answer;

/* conn is a transport: it owns both sides, their TLS, reads, writes, timers and the one close
 * path, and knows no consumer. What the bytes mean is decided by the handler the session
 * controller (proxy.c) installs as the connection changes phase: the first request, a TLS
 * handshake, the HTTP relay, the raw pipe. */
struct conn_handler {
    /* Plaintext from a side. Returns the bytes taken; fewer than len holds the side (the rest
     * waits in its stash until conn_release). NULL: every byte waits. */
    size_t (*on_data)(struct conn *c, enum side_id id, const char *p, size_t len);
    /* The peer on a side finished sending (TCP FIN or close_notify). NULL: close. */
    void (*on_eof)(struct conn *c, enum side_id id);
    /* A released side is about to be read again (a paused parser resumes first). */
    void (*on_resume)(struct conn *c, enum side_id id);
    /* A side's TLS handshake completed. */
    void (*on_tls_ready)(struct conn *c, enum side_id id);
    /* A side's TLS handshake failed (already logged). why: static text. NULL: an upstream
     * failure is answered 502 upstream_tls_failed, a client one closes. */
    void (*on_tls_failed)(struct conn *c, enum side_id id, const char *why);
    /* The timer fired (already logged). true when the handler dealt with it; else the timer's
     * status is answered (or the connection closed when it is 0). */
    bool (*on_timeout)(struct conn *c);
};

/* The session controller's hooks into a connection's life, one table per server. cancel and
 * free run for every connection start was called for, even when it failed: they find only what
 * start set up. */
struct conn_session {
    /* accepted (both addresses known, timer armed): set up and install the first handler, or
     * close the connection; <0 when out of memory. The other hooks may run without start
     * (a connection refused before it): they find session_state NULL. */
    int (*start)(struct conn *c);
    void (*cancel)(struct conn *c); /* closing or finishing: give up async work in flight */
    void (*free)(struct conn *c);   /* the last reference is gone: free what start set up */
    /* No request is in progress: a drain may finish the connection now. */
    bool (*idle)(struct conn *c);
    /* Fill in what the session knows of the current request (method, path) for an answer. */
    void (*describe)(struct conn *c, struct answer *a);
    /* After a policy reload: the new snapshot p may close what it no longer allows. */
    void (*recheck)(struct conn *c, struct policy *p);
    /* conn_respond is about to answer in plain HTTP: true when the session takes the answer
     * over because the client speaks no plain HTTP yet (a redirected ClientHello waits: the
     * answer goes inside the handshake the session completes first; a client that spoke
     * neither TLS nor HTTP: a close). a (and what it points to) is borrowed for the call.
     * NULL, or false: the answer goes out now. */
    bool (*take_answer)(struct conn *c, const struct answer *a);
    /* The worker drains: true when the session ends the connection itself, telling its
     * client to send nothing new (an HTTP/2 GOAWAY) and finishing once what is open ended.
     * NULL, or false: finished now when idle, else after the exchange in progress. */
    bool (*drain)(struct conn *c);
};

/* Per worker thread: its loop, listener, live connections and the scratch buffers that every
 * connection on this loop shares (a read callback consumes its buffer before returning). */
struct worker {
    struct server *server;
    const struct conn_session *session;
    uv_loop_t loop;
    struct listener listeners[8];
    size_t nlisteners;
    int reserve_fd;                /* released to accept-and-refuse when descriptors run out */
    uv_timer_t accept_pause;       /* accepting paused while even the reserve cannot help */
    uint64_t fd_refusals_unlogged; /* refusals since the last (rate-limited) log line */
    uint64_t fd_refusal_logged_at; /* loop time of that line */
    uv_async_t wakeup;             /* drain / stop / reload requests from the main thread */
    uv_thread_t thread;
    unsigned index;
    struct conn *conns; /* intrusive list of live connections */
    size_t nconns;
    bool draining, stopping;
    unsigned seen_reload; /* the reload generation this worker has applied */
    char read_buf[CONN_READ_BUF];
    char out_buf[CONN_READ_BUF];
    uv_idle_t kick;                   /* runs deferred side releases (see conn_release) */
    struct conn *kicks;               /* connections with a side to resume */
    struct resolver_client *resolver; /* DNS completions for this loop */
};

enum conn_state {
    CONN_S_FIRST = 0,    /* reading the first request on the plain client connection */
    CONN_S_SNIFF,        /* reading the client's first bytes: TLS or plain HTTP (or neither) */
    CONN_S_DIALING,      /* policy decided: resolving, identifying, connecting upstream */
    CONN_S_UPSTREAM_TLS, /* upstream TLS handshake */
    CONN_S_CLIENT_TLS,   /* CONNECT answered 200: client TLS handshake */
    CONN_S_HTTP,         /* relaying HTTP exchanges (tunnel or forward proxy) */
    CONN_S_PIPE,         /* raw bytes both ways (upgraded, or a tcp endpoint) */
    CONN_S_LINGER,       /* final bytes written; waiting for them to drain, then close */
    CONN_S_CLOSING,
};
const char *conn_state_name(enum conn_state s);

#define SIDE_F_OPEN      0x01  /* the tcp handle is initialised */
#define SIDE_F_CONNECTED 0x02  /* reads and writes may be issued */
#define SIDE_F_READING   0x04  /* uv_read_start is in effect */
#define SIDE_F_PAUSED    0x08  /* backpressure: the other side's writes are above high water */
#define SIDE_F_HELD      0x10  /* the parser holds: bytes wait in the stash */
#define SIDE_F_EOF       0x20  /* the peer finished sending (TCP FIN or close_notify) */
#define SIDE_F_SHUT      0x40  /* we sent our close_notify and FIN */
#define SIDE_F_KICK      0x80  /* queued to resume on the next loop turn */
#define SIDE_F_DIRTY     0x100 /* TLS output waits for the end of the read (corked) */
/* The peer ended its TLS with a TCP FIN and no close_notify: an end that anyone on the path can
 * forge, so what it ends may be truncated. */
#define SIDE_F_BARE_EOF 0x200
/* What we relay to this side ended that way: our TLS towards it ends with a FIN alone too, so
 * that the truncation shows (RFC 8446 §6.1). */
#define SIDE_F_BARE_END 0x400

struct side {
    uv_tcp_t tcp;
    struct tls *tls; /* NULL while the side is plain */
    unsigned flags;
    char *stash; /* plaintext received but not yet parsed (parser paused) */
    size_t stash_len, stash_off;
    uint64_t bytes_in, bytes_out;
    uv_shutdown_t shutdown_req;
};

#define CONN_F_CLOSING 0x01
#define CONN_F_TUNNEL  0x02 /* came in by CONNECT */
#define CONN_F_FORWARD 0x04 /* absolute-form forward proxy */
#define CONN_F_COUNTED 0x08 /* counted against max_connections */
#define CONN_F_KICKED  0x10 /* on the worker's kick list */
#define CONN_F_RESPONSE_STARTED                                                                    \
    0x20                           /* a response head went to the client: an error now             \
                                    * can only close (conn_respond) */
#define CONN_F_UPGRADE_GAUGE 0x40  /* counted in the upgrades-active gauge */
#define CONN_F_CORKED        0x80  /* inside a read callback: TLS output is flushed at its end */
#define CONN_F_TRANSPARENT   0x100 /* redirected to airlock: orig_dst is where it was going */

struct conn {
    struct worker *w;
    struct conn *next, *prev;
    struct conn *kick_next;
    uint64_t id;
    unsigned flags;
    unsigned refs;
    enum conn_state state;
    const struct conn_handler *handler; /* the consumer of the current phase, or NULL */
    struct side sides[2];
    uv_timer_t timer;
    uint64_t timeout_ms; /* the idle timeout the timer enforces now */
    const char *timeout_reason;
    int timeout_status; /* answered when the timer fires (408, 504, 502) or 0 */
    uint64_t last_activity;
    struct sockaddr_storage peer_addr, local_addr;
    struct sockaddr_storage orig_dst; /* CONN_F_TRANSPARENT: the destination the client dialled */
    char peer_ip[48];
    uint16_t peer_port;
    struct authority target; /* CONNECT authority, or the forward proxy's current upstream */
    enum policy_protocol protocol;
    /* The snapshot of the current decision (a reference) and the name of the policy that
     * decided, which points into that same snapshot: both change only together, through
     * conn_adopt_policy, so the name never outlives its snapshot across a reload. */
    struct policy *policy;
    const char *policy_name;
    struct peer_info *peer; /* the processes holding the client's socket, or NULL */
    bool peer_known;
    void *session_state; /* the session controller's, set up by its start hook */
    unsigned pending_shutdowns;
    bool timer_absolute; /* the deadline does not move with activity (conn_set_deadline) */
};

/* Start serving one accepted client socket (takes ownership of fd; closed on failure), taken
 * from listener l. */
void conn_accept(struct worker *w, const struct listener *l, int fd);

/* The one close path: idempotent; stops reads, closes every handle, frees on the last
 * close callback. reason is static text for the log. */
void conn_close(struct conn *c, const char *reason);
/* Flush what is queued to the client, send close_notify (unless SIDE_F_BARE_END) and FIN, then
 * close: once the client has finished too, or after a short linger. The handler gets no more
 * bytes nor EOF from here; the client's EOF never cuts short what is still queued. */
void conn_finish(struct conn *c, const char *reason);

/* Hold a reference while an async request (DNS, connect, work) is in flight. */
void conn_ref(struct conn *c);
void conn_unref(struct conn *c);

void conn_set_state(struct conn *c, enum conn_state s);
/* Install the consumer of the connection's bytes (NULL: bytes wait in the stashes). */
void conn_set_handler(struct conn *c, const struct conn_handler *h);

/* Take pol (a reference the caller hands over) as the connection's snapshot, with name (a
 * policy name inside pol, or NULL), releasing the previous snapshot. */
void conn_adopt_policy(struct conn *c, struct policy *pol, const char *name);

/* Write plaintext to a side: through its TLS layer when it has one. 0 or -1 (the connection
 * is then closing). Applies backpressure to the other side. */
int conn_write(struct conn *c, enum side_id id, const char *p, size_t len);
/* Move TLS output (handshake records, alerts) to the socket. */
int conn_flush_tls(struct conn *c, enum side_id id);
/* Start (or keep) reading a side as its flags allow. */
void conn_update_reading(struct conn *c, enum side_id id);
/* Release a side's hold: on the next loop turn its parser is resumed and the stash and any
 * buffered TLS data are consumed again. Deferred, so that one side's parser callback never
 * re-enters the other's (or its own) parser. */
void conn_release(struct conn *c, enum side_id id);
/* The worker's idle callback for deferred releases. */
void conn_on_kick(uv_idle_t *idle);
/* Half-close towards a side: close_notify (TLS) and FIN after queued writes, or the FIN alone
 * when what it was sent ended without close_notify (SIDE_F_BARE_END). */
void conn_shutdown_side(struct conn *c, enum side_id id);

/* Arm the connection's single timer: fire after timeout_ms without activity. status is what
 * the client is answered (0: close silently). */
void conn_set_timeout(struct conn *c, uint64_t timeout_ms, int status, const char *reason);
/* The same timer as a deadline: it fires timeout_ms from now whatever moves meanwhile, for
 * phases a peer could otherwise stretch by dribbling bytes (a request head, a TLS handshake). */
void conn_set_deadline(struct conn *c, uint64_t timeout_ms, int status, const char *reason);
void conn_touch(struct conn *c);

/* The one error-answer path: answer the client with a (answer.h; host, port and policy filled
 * from the connection when a->host is NULL, method and path from the session when a->method
 * is NULL) and finish. When a response head already went to the client, or its TLS is not up
 * yet, there is no way to answer in HTTP: the connection just closes. */
void conn_respond(struct conn *c, const struct answer *a);
/* conn_respond with status, the JSON "error" value and a sentence (static). */
void conn_respond_error(struct conn *c, int status, const char *error, const char *detail);

/* Like conn_write with several spans: one TLS flush (one socket write) for all of them. */
int conn_writev(struct conn *c, enum side_id id, const uv_buf_t *bufs, unsigned nbufs);
/* Give bytes back to a side (a consumer that peeked at them): they go in front of what waits in
 * its stash, and the side is held until conn_release (or its TLS layer takes them: see
 * conn_stash_to_tls). 0, or -1 when out of memory (the connection is then closing). */
int conn_unread(struct conn *c, enum side_id id, const char *p, size_t len);
/* Bytes stashed before a side's TLS layer existed are ciphertext: feed them to it. */
int conn_stash_to_tls(struct conn *c, enum side_id id);
/* Initialise the upstream handle (takes a reference), or close the upstream alone with cb (its
 * TLS layer and stash go too). */
int conn_init_upstream(struct conn *c);
void conn_close_upstream(struct conn *c, uv_close_cb cb);
/* The first byte of a request head arrived: the head deadline starts. */
void conn_head_started(struct conn *c);
/* Connections alive in the process (all workers). */
size_t conn_live_count(void);

/* Who the client is, as the policy asks (borrows from c until the peer changes). */
void conn_policy_peer(const struct conn *c, struct policy_peer *out);

/* Log one event about this connection (fills the source and destination). */
struct log_event;
void conn_log(struct conn *c, struct log_event *ev);

#endif
