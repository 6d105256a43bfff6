/* SPDX-License-Identifier: MIT */
/* jsonload: the validation toolkit shared by the policy and providers loaders. It tracks the
 * JSON path being checked and collects every error as one line "<json path>: <message>" (at
 * most JSONLOAD_MAX_ERRORS lines, then "... and N more errors"), never stopping at the first.
 * User text is quoted with jsonload_show so a hostile key cannot forge a line. It also reads the
 * files, the one way both loaders do. */
#ifndef AIRLOCK_JSONLOAD_H
#define AIRLOCK_JSONLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#define JSONLOAD_PATH_MAX   512
#define JSONLOAD_SHOW_MAX   96
#define JSONLOAD_MAX_ERRORS 100

/* Validation state. Embed it in a loader and start it with jsonload_init; the loader may set
 * oom itself when one of its own allocations fails. */
struct jsonload {
    char path[JSONLOAD_PATH_MAX]; /* "" at the root */
    size_t path_len;
    char *err; /* the error lines; owned until jsonload_finish */
    size_t err_len, err_cap;
    unsigned nerr;
    bool err_failed; /* the error text could not grow: it is reported as out of memory */
    bool oom;
    bool want_text; /* false: count errors without formatting them */
};

/* A port or an inclusive "LOW-HIGH" range of ports, 1..65535. */
struct jsonload_range {
    uint16_t lo, hi;
};

/* Start j at the root with no errors; want_text false only counts them. */
void jsonload_init(struct jsonload *j, bool want_text);

/* End a load: record "(root): out of memory" if oom is set, then free what j holds. true when
 * no error was recorded; otherwise *errors (when not NULL) takes the malloc'd error text. */
bool jsonload_finish(struct jsonload *j, char **errors);

/* Quote s for an error line into buf: printable ASCII as is, '"' and '\' escaped, the rest as
 * \xNN, cut with "..." when long. Returns buf. */
const char *jsonload_show(char buf[JSONLOAD_SHOW_MAX], const char *s);

/* true when s is non-empty and made only of [A-Za-z0-9_-]. */
bool jsonload_is_word(const char *s);

/* Enter key: ".key" (no dot at the root), or ["key"] quoted with jsonload_show when the key is
 * not a word. Returns the path length that jsonload_pop restores. */
size_t jsonload_key(struct jsonload *j, const char *key);

/* Enter array element i: "[i]". Returns the path length that jsonload_pop restores. */
size_t jsonload_index(struct jsonload *j, size_t i);

/* Leave to a path length that jsonload_key or jsonload_index returned (0: the root). */
void jsonload_pop(struct jsonload *j, size_t old);

/* Record one error at the current path; the message is cut at 511 bytes. */
__attribute__((format(printf, 2, 3))) void jsonload_fail(struct jsonload *j, const char *fmt, ...);

/* jsonload_fail at the current path with key entered. */
__attribute__((format(printf, 3, 4))) void jsonload_fail_at(struct jsonload *j, const char *key,
                                                            const char *fmt, ...);

/* Check obj's member names: each repeated key is an error ("duplicate key"; objects of at most
 * pairwise_max members report every repeat in document order, larger ones each repeated name
 * once in name order), and with allowed (NULL-terminated) so is every other key. */
void jsonload_check_keys(struct jsonload *j, const cJSON *obj, const char *const *allowed,
                         size_t pairwise_max);

/* true when v is a JSON number that is an integer within [lo, hi]; stores it in *out. */
bool jsonload_int(const cJSON *v, long lo, long hi, long *out);

/* Load obj's "port" (an integer) or "ports" (a non-empty array of integers and "LOW-HIGH"
 * strings), exactly one of them. Returns the number of ranges, with them in *out (malloc'd, the
 * caller frees; elements in error are {0, 0}); 0 and *out NULL when nothing was loaded. */
size_t jsonload_ports(struct jsonload *j, const cJSON *obj, struct jsonload_range **out);

/* Read a policy or providers file whole: a regular file of at most max bytes, from one open
 * descriptor. A file whose size changes while it is read is refused ("changed while being
 * read"): a writer is still at work, and the next reload reads the finished file. Returns the
 * malloc'd text, NUL-terminated at text[*len]; NULL with *errors (when errors is not NULL) set
 * to one malloc'd line "PATH: cannot read: WHY\n". */
char *jsonload_read_file(const char *path, size_t max, size_t *len, char **errors);

/* Open path for reading only if it is a regular file (not a FIFO that would block, nor a
 * directory): the fd with *st filled, or -1 with *why a static or strerror text. */
int jsonload_open_regular(const char *path, struct stat *st, const char **why);

/* read(2) until EOF or cap bytes, retrying EINTR: the count, or -errno. */
ssize_t jsonload_read_fd(int fd, char *buf, size_t cap);

/* Parse text (NUL-terminated at text[len]) as one JSON value with nothing after it. NULL after
 * recording "contains a NUL byte" or "invalid JSON near line L, column C". */
cJSON *jsonload_parse(struct jsonload *j, const char *text, size_t len);

#endif
