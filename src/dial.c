/* SPDX-License-Identifier: MIT */
/* dial: RFC 8305 connection racing over raw non-blocking sockets watched with uv_poll_t (so the
 * winner's descriptor can be handed to a uv_tcp_t without a dup). One heap object per race,
 * holding every attempt and one timer; it reports once all of its handles are closed, so the
 * caller never sees a half-torn-down race. */
#include "airlock/dial.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airlock/addr.h"
#include "airlock/log.h"

struct attempt {
    uv_poll_t poll;
    struct dial *d;
    int fd;      /* -1 once closed or handed to the caller */
    bool polled; /* the poll handle is initialised and not yet closed */
};

struct dial {
    uv_loop_t *loop;
    uv_timer_t timer; /* the Connection Attempt Delay; also defers an immediate outcome */
    struct sockaddr_storage addrs[DIAL_MAX_ADDRS]; /* in attempt order */
    struct attempt attempts[DIAL_MAX_ADDRS];
    size_t n, next;     /* addresses; the next one to try */
    unsigned in_flight; /* attempts still connecting */
    unsigned handles;   /* initialised handles not yet closed */
    int last_error;
    bool finished; /* the outcome (result) is decided; handles are closing */
    int result;    /* a socket, or a negative libuv error */
    uint32_t mark; /* SO_MARK for every attempt, or 0 */
    uint64_t log_id;
    dial_cb cb;
    void *data;
};

void dial_interleave(const struct sockaddr_storage *in, size_t n, struct sockaddr_storage *out)
{
    if (n == 0)
        return;
    int first = in[0].ss_family;
    size_t cursor[2] = {0, 0}, k = 0;
    int turn = 0; /* 0: the first address's family; 1: any other */
    while (k < n) {
        /* The next address of this turn's family; when it has none left, the other's. */
        for (int tries = 0; tries < 2; tries++, turn ^= 1) {
            size_t *i = &cursor[turn];
            while (*i < n && (in[*i].ss_family == first) != (turn == 0))
                (*i)++;
            if (*i < n) {
                out[k++] = in[(*i)++];
                break;
            }
        }
        turn ^= 1;
    }
}

static void log_failure(struct dial *d, const struct sockaddr_storage *ss, int err)
{
    char ip[64];
    addr_format((const struct sockaddr *)ss, ip, sizeof ip);
    log_msg(LOG_INFO, "conn %llu: connect %s port %u: %s", (unsigned long long)d->log_id, ip,
            (unsigned)addr_port((const struct sockaddr *)ss), uv_strerror(err));
}

/* The last handle is closed: report, then free. */
static void on_handle_closed(uv_handle_t *h)
{
    struct dial *d = h->data;
    if (h != (uv_handle_t *)&d->timer) {
        struct attempt *a = (struct attempt *)h;
        if (a->fd >= 0)
            close(a->fd);
        a->fd = -1;
    }
    if (--d->handles > 0)
        return;
    d->cb(d->result, d->data);
    free(d);
}

static void close_attempt(struct attempt *a)
{
    if (!a->polled)
        return;
    a->polled = false;
    /* uv_close deregisters the descriptor at once, after which libuv lets it be closed: at once
     * too, so that a race never holds more than DIAL_MAX_IN_FLIGHT sockets, even for a loop
     * turn. A socket handed over (fd -1) is the caller's. */
    uv_close((uv_handle_t *)&a->poll, on_handle_closed);
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
}

/* Make room for one more attempt: give up the oldest one still connecting. */
static void abandon_oldest(struct dial *d)
{
    for (size_t i = 0; i < d->next; i++) {
        struct attempt *a = &d->attempts[i];
        if (a->polled) {
            log_msg(LOG_DEBUG, "conn %llu: attempt %zu given up for the next address",
                    (unsigned long long)d->log_id, i + 1);
            d->in_flight--;
            close_attempt(a);
            return;
        }
    }
}

/* The outcome is known: close everything; the callback follows the last close. */
static void finish(struct dial *d, int result)
{
    d->finished = true;
    d->result = result;
    for (size_t i = 0; i < d->next; i++)
        close_attempt(&d->attempts[i]);
    uv_close((uv_handle_t *)&d->timer, on_handle_closed);
}

static void win(struct dial *d, struct attempt *a)
{
    int fd = a->fd;
    a->fd = -1; /* the caller's now: closing the poll handle must not close it */
    finish(d, fd);
}

static void on_writable(uv_poll_t *p, int status, int events);

/* 0: connecting; 1: connected at once (won); < 0: this address failed. */
static int attempt_start(struct dial *d, struct attempt *a, const struct sockaddr_storage *ss)
{
    a->d = d;
    a->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (a->fd < 0)
        return -errno;
    int r;
    if (d->mark && setsockopt(a->fd, SOL_SOCKET, SO_MARK, &d->mark, sizeof d->mark) < 0) {
        r = -errno;
        close(a->fd);
        a->fd = -1;
        return r;
    }
    socklen_t len =
        ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    r = connect(a->fd, (const struct sockaddr *)ss, len);
    if (r == 0) {
        win(d, a);
        return 1;
    }
    if (errno != EINPROGRESS) {
        r = -errno;
        close(a->fd);
        a->fd = -1;
        return r;
    }
    r = uv_poll_init_socket(d->loop, &a->poll, a->fd);
    if (r < 0) {
        close(a->fd);
        a->fd = -1;
        return r;
    }
    a->poll.data = d;
    a->polled = true;
    d->handles++;
    d->in_flight++;
    uv_poll_start(&a->poll, UV_WRITABLE, on_writable);
    return 0;
}

static void on_delay(uv_timer_t *t);

/* Start the next address; go on at once past addresses that fail on the spot. */
static void start_next(struct dial *d)
{
    while (!d->finished && d->next < d->n) {
        if (d->in_flight >= DIAL_MAX_IN_FLIGHT)
            abandon_oldest(d);
        size_t i = d->next++;
        int r = attempt_start(d, &d->attempts[i], &d->addrs[i]);
        if (r == 1)
            return;
        if (r == 0) {
            uv_timer_start(&d->timer, on_delay, DIAL_ATTEMPT_DELAY_MS, 0);
            return;
        }
        d->last_error = r;
        log_failure(d, &d->addrs[i], r);
    }
    if (!d->finished && d->in_flight == 0)
        finish(d, d->last_error ? d->last_error : UV_EADDRNOTAVAIL);
}

static void on_delay(uv_timer_t *t)
{
    struct dial *d = t->data;
    if (!d->finished)
        start_next(d);
}

static void on_writable(uv_poll_t *p, int status, int events)
{
    struct dial *d = p->data;
    struct attempt *a = (struct attempt *)p;
    if (d->finished)
        return;
    d->in_flight--;
    /* libuv reports a socket error (POLLERR) as UV_EBADF: the connect's own outcome is in
     * SO_ERROR either way. */
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    int err = soerr ? -soerr : status;
    if (err == 0) {
        win(d, a);
        return;
    }
    d->last_error = err;
    log_failure(d, &d->addrs[a - d->attempts], err);
    close_attempt(a);
    /* RFC 8305 §5: a failed attempt starts the next one without waiting for the delay. */
    start_next(d);
}

struct dial *dial_start(uv_loop_t *loop, const struct sockaddr_storage *addrs, size_t n,
                        uint32_t mark, uint64_t log_id, dial_cb cb, void *data)
{
    struct dial *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->loop = loop;
    d->n = n < DIAL_MAX_ADDRS ? n : DIAL_MAX_ADDRS;
    dial_interleave(addrs, d->n, d->addrs);
    d->mark = mark;
    d->log_id = log_id;
    d->cb = cb;
    d->data = data;
    for (size_t i = 0; i < DIAL_MAX_ADDRS; i++)
        d->attempts[i].fd = -1;
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->handles = 1;
    start_next(d);
    return d;
}

void dial_cancel(struct dial *d)
{
    if (!d->finished)
        finish(d, UV_ECANCELED);
}
