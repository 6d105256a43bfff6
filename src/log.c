/* SPDX-License-Identifier: MIT */
/* log: hands whole lines, formatted on the calling thread by logfmt, to one writer thread
 * through a bounded byte ring, so an event loop never waits on the disk. Owns the log fd, the
 * ring and the writer thread; never sees a secret (see log.h). Invariant: the ring holds only
 * whole lines, so every write(2) and every reopen falls on a line boundary. */
#include "airlock/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Queued bytes: about 8,000 JSON or 25,000 text lines, enough to ride out a slow disk for a
 * while, in one allocation for the life of the log. */
#define RING_CAP (4u << 20)
#define LINE_CAP LOGFMT_LINE_MAX
#define MSG_MAX  LOGFMT_MSG_MAX

/* The queue. pushed and written count bytes since log_open, so pushed - written is the fill and
 * each one modulo RING_CAP is a ring offset. Producers copy into [pushed, written + RING_CAP)
 * under the lock; the writer reads [written, pushed) without it, because no producer touches
 * that range until the writer advances written (again under the lock). */
struct queue {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* to the writer: lines queued, stop or reopen requested */
    pthread_cond_t room; /* to producers of findings: the writer freed space */
    unsigned waiting;    /* producers waiting on room */
    bool accepting;      /* false before log_open and after log_close: lines go to stderr */
    bool stop;
    bool reopen;        /* reopen the file once written reaches reopen_at */
    uint64_t reopen_at; /* pushed when log_reopen was called: earlier lines go to the old file */
    uint64_t pushed, written;
    char *ring;
    /* Set by log_open before the writer starts, then the writer's alone until log_close joins
     * it: the reopen swaps fd on the writer thread, so no line goes to a closed fd. */
    int fd;
    char *path;        /* NULL when logging to stderr */
    uint64_t reported; /* dropped as last told in the log (the counter outlives a log_open) */
    pthread_t thread;
};

static struct queue q = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .room = PTHREAD_COND_INITIALIZER,
    .fd = -1,
};

/* Read on every call without the lock, written only by log_open: atomics keep that race-free.
 * Before log_open, lines go to stderr as text from INFO up, so startup errors are readable. */
static _Atomic int cur_format = LOG_TEXT;
static _Atomic int cur_min_level = LOG_INFO;
/* Lines lost: queue full, or (counted by the writer) a failed write. */
static _Atomic uint64_t dropped;

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static enum log_level clamp_level(enum log_level level)
{
    return level > LOG_ERROR ? LOG_ERROR : level;
}

/* ---- output --------------------------------------------------------------------------------- */

static size_t count_lines(const struct iovec *iov, int cnt)
{
    size_t n = 0;

    for (int i = 0; i < cnt; i++) {
        const char *p = iov[i].iov_base, *end = p + iov[i].iov_len;

        while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
            n++;
            p++;
        }
    }
    return n;
}

/* Writes every byte of iov, retrying short writes and EINTR, and waiting on EAGAIN (stderr may
 * be a non-blocking pipe shared with a parent). Returns 0 or -errno; on an error, *lost is the
 * number of lines that did not make it. */
static int write_all(int fd, struct iovec *iov, int cnt, size_t *lost)
{
    *lost = 0;
    while (cnt > 0) {
        ssize_t r = writev(fd, iov, cnt);

        if (r < 0) {
            int err = errno;

            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};

                poll(&pfd, 1, 1000);
                continue;
            }
            *lost = count_lines(iov, cnt);
            return -err;
        }
        while (cnt > 0 && (size_t)r >= iov->iov_len) {
            r -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return 0;
}

static int write_buf(int fd, const char *p, size_t len, size_t *lost)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};

    return write_all(fd, &iov, 1, lost);
}

/* Before log_open and after log_close: straight to stderr, so nothing is lost at startup or
 * shutdown. One write per line keeps concurrent lines whole. */
static void write_stderr(const char *p, size_t len)
{
    size_t lost;

    (void)write_buf(STDERR_FILENO, p, len, &lost);
}

/* Hands one whole line to the writer, or to stderr when no writer runs. A full queue drops an
 * ordinary line (counted); a line that must be kept (a finding) waits for the writer to make
 * room instead: the writer always advances, by writing or by counting a failed write as lost,
 * so the wait lasts as long as one batch write. */
static void emit(const char *line, size_t len, bool keep)
{
    bool was_empty;
    size_t off, first;

    if (len == 0) {
        /* Cannot happen with the field budgets; counted rather than written cut. */
        atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
        return;
    }
    pthread_mutex_lock(&q.lock);
    if (!q.accepting) {
        pthread_mutex_unlock(&q.lock);
        write_stderr(line, len);
        return;
    }
    while (RING_CAP - (q.pushed - q.written) < len) {
        if (!keep) {
            pthread_mutex_unlock(&q.lock);
            atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
            return;
        }
        q.waiting++;
        pthread_cond_wait(&q.room, &q.lock);
        q.waiting--;
        if (!q.accepting) {
            /* log_close ran meanwhile: the line goes where lines go after it. */
            pthread_mutex_unlock(&q.lock);
            write_stderr(line, len);
            return;
        }
    }
    was_empty = q.pushed == q.written;
    off = (size_t)(q.pushed % RING_CAP);
    first = len < RING_CAP - off ? len : RING_CAP - off;
    memcpy(q.ring + off, line, first);
    memcpy(q.ring, line + first, len - first);
    q.pushed += len;
    /* The writer sleeps only on an empty queue, so only the first line after it needs a wake. */
    if (was_empty)
        pthread_cond_signal(&q.wake);
    pthread_mutex_unlock(&q.lock);
}

/* ---- writer thread -------------------------------------------------------------------------- */

/* A diagnostic from the writer itself, written directly: it owns the fd and must not wait on the
 * queue it drains. */
static void writer_note(enum log_level level, const char *msg)
{
    char buf[LINE_CAP];
    size_t len, lost;

    len = logfmt_msg(buf, sizeof(buf), (enum log_format)atomic_load(&cur_format), level, msg,
                     now_ms());
    if (len)
        (void)write_buf(q.fd, buf, len, &lost);
}

/* Tells the reader of the log how many lines it is missing, once per batch that lost some. */
static void report_drops(void)
{
    uint64_t d = atomic_load(&dropped);
    char msg[96];

    if (d == q.reported)
        return;
    snprintf(msg, sizeof(msg), "log: %llu lines dropped (queue full or write error)",
             (unsigned long long)(d - q.reported));
    writer_note(LOG_WARN, msg);
    q.reported = d;
}

/* Whether nobody else can change the entries of the directory open at fd, which would let them
 * choose what airlock opens below it: it must be ours or root's, and not writable by group or
 * others unless sticky (as /tmp is, where nobody can rename or remove another's file). last: it
 * holds the file itself (else it is one on the way). 0, or -EPERM with why filled. */
static int check_dir(int fd, const char *name, bool last, char *why, size_t cap)
{
    const char *which = last ? "its directory" : "the directory on its path";
    const char *what = last ? "put any file at that name" : "swap what lies below it";
    struct stat st;

    if (fstat(fd, &st) < 0) {
        int err = -errno;
        snprintf(why, cap, "%.512s: %s", name, strerror(-err));
        return err;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(why, cap,
                 "%s %.512s belongs to uid %u, who could %s: log to a directory of airlock's "
                 "user or root",
                 which, name, (unsigned)st.st_uid, what);
        return -EPERM;
    }
    if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
        snprintf(why, cap,
                 "%s %.512s is writable by group or others without the sticky bit (mode %04o), "
                 "so they could %s: chmod go-w %.512s",
                 which, name, (unsigned)(st.st_mode & 07777), what, name);
        return -EPERM;
    }
    return 0;
}

/* The error for a directory component that could not be opened: a symbolic link is refused as
 * such (with where it leads, for the fix). */
static int dir_open_error(int parent, const char *name, const char *walked, char *why, size_t cap)
{
    int err = -errno;
    struct stat st;
    char *real;

    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        real = realpath(walked, NULL);
        snprintf(why, cap,
                 "%.512s on its path is a symbolic link, which could lead anywhere: give the "
                 "path without links%s%.512s%s",
                 walked, real ? " (" : "", real ? real : "", real ? ")" : "");
        free(real);
        return -ELOOP;
    }
    snprintf(why, cap, "%.512s: %s", walked, strerror(-err));
    return err;
}

/* The directory that holds path, opened one component at a time from / (or the working
 * directory) without following a symbolic link, each directory checked on the way: whoever can
 * change any of them (rename an entry, or put a link in its place) chooses where the file is
 * created, not only whoever can change the last one. Returns an O_PATH fd, with *base the
 * file's name in it, or -errno with why filled. */
static int open_log_dir(const char *path, const char **base, char *why, size_t cap)
{
    const char *slash = strrchr(path, '/'), *p = path;
    char walked[4096], name[256]; /* a file name is at most 255 bytes (NAME_MAX) */
    int fd, next, err;

    *base = slash ? slash + 1 : path;
    snprintf(walked, sizeof(walked), "%s", path[0] == '/' ? "/" : ".");
    fd = open(walked, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        err = -errno;
        snprintf(why, cap, "%.512s: %s", walked, strerror(-err));
        return err;
    }
    err = check_dir(fd, walked, slash == NULL || slash == path, why, cap);
    while (err == 0 && slash && p < slash) {
        size_t n = strcspn(p, "/");
        if (n == 0) {
            p++;
            continue;
        }
        if (n >= sizeof(name) || (size_t)(p + n - path) >= sizeof(walked)) {
            snprintf(why, cap, "%s", strerror(ENAMETOOLONG));
            err = -ENAMETOOLONG;
            break;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        snprintf(walked, sizeof(walked), "%.*s", (int)(p - path), path);
        next = openat(fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            err = dir_open_error(fd, name, walked, why, cap);
            break;
        }
        close(fd);
        fd = next;
        err = check_dir(fd, walked, p == slash, why, cap);
    }
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/* Open the log for appending so that nobody else chooses what airlock writes into: never
 * through a symlink (nor through one on the way to its directory, each directory checked), a
 * regular file or FIFO only if it is ours and (a file) has no second name, a character device
 * (/dev/null, a terminal) as it is, nothing else. O_NONBLOCK only while opening, so a FIFO with
 * no reader fails at once instead of hanging the start. Returns the fd, or -errno with why
 * filled. */
static int open_log_file(const char *path, char *why, size_t cap)
{
    struct stat st;
    const char *base;
    int fd, dir = open_log_dir(path, &base, why, cap), err = 0;

    if (dir < 0)
        return dir;
    fd = openat(dir, base, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                0640);
    if (fd < 0)
        err = -errno;
    close(dir);
    if (fd < 0) {
        snprintf(why, cap, "%s", err == -ELOOP ? "it is a symbolic link" : strerror(-err));
        return err;
    }
    if (fstat(fd, &st) < 0) {
        err = -errno;
        snprintf(why, cap, "%s", strerror(errno));
    } else if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        err = -EINVAL;
        snprintf(why, cap, "not a regular file, FIFO or character device");
    } else if (!S_ISCHR(st.st_mode) && st.st_uid != geteuid()) {
        err = -EPERM;
        snprintf(why, cap, "owned by uid %u, not by airlock's uid %u", (unsigned)st.st_uid,
                 (unsigned)geteuid());
    } else if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        err = -EMLINK;
        snprintf(why, cap, "it has %lu hard links: one of them may be another file of airlock's",
                 (unsigned long)st.st_nlink);
    } else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
        err = -errno;
        snprintf(why, cap, "%s", strerror(errno));
    }
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

/* logrotate has renamed the file: open a fresh one at the same path. On failure keep writing to
 * the old one, which is better than losing lines. */
static void reopen_file(void)
{
    char why[2048], msg[MSG_MAX];
    int fd = open_log_file(q.path, why, sizeof(why));

    if (fd < 0) {
        snprintf(msg, sizeof(msg), "log: reopen %s: %s", q.path, why);
        writer_note(LOG_ERROR, msg);
        return;
    }
    close(q.fd);
    q.fd = fd;
}

/* Writes batches of whole lines, straight out of the ring (at most two iovecs when the batch
 * wraps), until log_close asks it to stop and the queue is empty. */
static void *writer_main(void *arg)
{
    uint64_t end;
    bool failing = false;

    pthread_mutex_lock(&q.lock);
    for (;;) {
        while (q.pushed == q.written && !q.stop && !q.reopen)
            pthread_cond_wait(&q.wake, &q.lock);
        /* Woken by a first line: let a few milliseconds of lines gather, so a busy proxy wakes
         * this thread (and writes) a few hundred times a second, not once per request. The
         * producers do not signal while the queue is non-empty, and a nearly full ring is
         * still written at once. */
        if (!q.stop && !q.reopen && q.pushed - q.written < RING_CAP / 4) {
            pthread_mutex_unlock(&q.lock);
            struct timespec gather = {0, 5 * 1000 * 1000};
            nanosleep(&gather, NULL);
            pthread_mutex_lock(&q.lock);
        }
        if (q.reopen && q.written == q.reopen_at) {
            q.reopen = false;
            pthread_mutex_unlock(&q.lock);
            reopen_file();
            pthread_mutex_lock(&q.lock);
            continue;
        }
        if (q.pushed == q.written)
            break; /* stop requested and nothing left */

        end = q.reopen ? q.reopen_at : q.pushed;
        size_t n = (size_t)(end - q.written), off = (size_t)(q.written % RING_CAP);
        size_t first = n < RING_CAP - off ? n : RING_CAP - off;
        struct iovec iov[2] = {{q.ring + off, first}, {q.ring, n - first}};
        size_t lost;
        int err;

        pthread_mutex_unlock(&q.lock);
        err = write_all(q.fd, iov, n > first ? 2 : 1, &lost);
        if (err) {
            atomic_fetch_add_explicit(&dropped, lost, memory_order_relaxed);
            /* Say so once per failing spell, where someone may see it. */
            if (!failing && q.fd != STDERR_FILENO) {
                char msg[128];
                int len = snprintf(msg, sizeof(msg), "log write failed: %s\n", strerror(-err));

                write_stderr(msg, (size_t)len < sizeof(msg) ? (size_t)len : sizeof(msg) - 1);
            }
            failing = true;
        } else {
            failing = false;
            report_drops();
        }
        pthread_mutex_lock(&q.lock);
        q.written = end;
        if (q.waiting)
            pthread_cond_broadcast(&q.room);
    }
    pthread_mutex_unlock(&q.lock);
    report_drops();
    return arg;
}

/* ---- API ------------------------------------------------------------------------------------ */

int log_open(const char *path, enum log_format format, enum log_level min_level)
{
    sigset_t all, old;
    int fd = STDERR_FILENO, err;

    if (q.ring)
        return -EBUSY;
    q.path = NULL;
    if (path) {
        char why[2048];

        q.path = strdup(path);
        if (!q.path)
            return -ENOMEM;
        fd = open_log_file(path, why, sizeof(why));
        if (fd < 0) {
            /* Before log_open succeeds this goes to stderr. */
            log_msg(LOG_ERROR, "log file %s: %s", path, why);
            err = fd;
            goto fail;
        }
    }
    q.fd = fd;
    q.ring = malloc(RING_CAP);
    if (!q.ring) {
        err = -ENOMEM;
        goto fail;
    }
    q.pushed = q.written = 0;
    q.stop = q.reopen = false;
    q.reported = atomic_load(&dropped);
    /* Load the time zone here, once, rather than on a worker's first line. */
    tzset();

    /* The writer takes no signals: process signals belong to the event loops, and a SIGPIPE from
     * a log pipe whose reader went away stays pending there while write returns EPIPE. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = -pthread_create(&q.thread, NULL, writer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err)
        goto fail;

    atomic_store(&cur_format, format);
    atomic_store(&cur_min_level, min_level);
    pthread_mutex_lock(&q.lock);
    q.accepting = true;
    pthread_mutex_unlock(&q.lock);
    return 0;

fail:
    if (fd != STDERR_FILENO && fd >= 0)
        close(fd);
    q.fd = -1;
    free(q.ring);
    q.ring = NULL;
    free(q.path);
    q.path = NULL;
    return err;
}

void log_reopen(void)
{
    pthread_mutex_lock(&q.lock);
    /* A second request before the writer got to the first merges with it: the open happens
     * after both, so it still finds the newest file. */
    if (q.accepting && q.path && !q.reopen) {
        q.reopen = true;
        q.reopen_at = q.pushed;
        pthread_cond_signal(&q.wake);
    }
    pthread_mutex_unlock(&q.lock);
}

void log_close(void)
{
    pthread_mutex_lock(&q.lock);
    if (!q.accepting) {
        pthread_mutex_unlock(&q.lock);
        return;
    }
    /* From here lines go to stderr; the writer drains what is queued, then exits. */
    q.accepting = false;
    q.stop = true;
    pthread_cond_signal(&q.wake);
    pthread_cond_broadcast(&q.room);
    pthread_mutex_unlock(&q.lock);

    pthread_join(q.thread, NULL);
    if (q.fd != STDERR_FILENO)
        close(q.fd);
    q.fd = -1;
    free(q.ring);
    q.ring = NULL;
    free(q.path);
    q.path = NULL;
}

uint64_t log_dropped(void)
{
    return atomic_load(&dropped);
}

void log_event(const struct log_event *ev)
{
    char buf[LINE_CAP];
    size_t len;

    /* Events are INFO lines, but a finding is written whatever the level. */
    if (ev->class_uid != LOG_CLASS_FINDING && atomic_load(&cur_min_level) > LOG_INFO)
        return;
    len = logfmt_event(buf, sizeof(buf), (enum log_format)atomic_load(&cur_format), ev, now_ms());
    /* Findings are the lines an operator cannot afford to lose (log.h). */
    emit(buf, len, ev->class_uid == LOG_CLASS_FINDING || ev->severity >= LOG_SEV_HIGH);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char buf[LINE_CAP], msg[MSG_MAX];
    va_list ap;

    level = clamp_level(level);
    if ((int)level < atomic_load(&cur_min_level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(buf,
         logfmt_msg(buf, sizeof(buf), (enum log_format)atomic_load(&cur_format), level, msg,
                    now_ms()),
         false);
}
