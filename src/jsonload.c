/* SPDX-License-Identifier: MIT */
/* jsonload: JSON path tracking, error collection, key checks, the port fields and the file
 * reader shared by the policy and providers loaders. Every message text here is asserted by
 * their unit tests. */
#include "airlock/jsonload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void jsonload_init(struct jsonload *j, bool want_text)
{
    memset(j, 0, sizeof(*j));
    j->want_text = want_text;
}

static void err_append(struct jsonload *j, const char *s, size_t n)
{
    if (j->err_failed)
        return;
    if (j->err_len + n + 1 > j->err_cap) {
        size_t cap = j->err_cap ? j->err_cap * 2 : 1024;
        while (cap < j->err_len + n + 1)
            cap *= 2;
        char *e = realloc(j->err, cap);
        if (!e) {
            j->err_failed = true;
            j->oom = true;
            return;
        }
        j->err = e;
        j->err_cap = cap;
    }
    memcpy(j->err + j->err_len, s, n);
    j->err_len += n;
    j->err[j->err_len] = '\0';
}

bool jsonload_finish(struct jsonload *j, char **errors)
{
    if (j->oom) {
        jsonload_pop(j, 0);
        jsonload_fail(j, "out of memory");
    }
    if (j->nerr == 0) {
        free(j->err);
        j->err = NULL;
        return true;
    }
    if (j->nerr > JSONLOAD_MAX_ERRORS && j->want_text) {
        char line[64];
        int n =
            snprintf(line, sizeof(line), "... and %u more errors\n", j->nerr - JSONLOAD_MAX_ERRORS);
        err_append(j, line, (size_t)n);
    }
    if (errors && !j->err_failed && j->err) {
        *errors = j->err;
    } else {
        free(j->err);
        if (errors)
            *errors = strdup("(root): out of memory\n");
    }
    j->err = NULL;
    return false;
}

const char *jsonload_show(char buf[JSONLOAD_SHOW_MAX], const char *s)
{
    size_t w = 0;
    for (; *s && w + 8 < JSONLOAD_SHOW_MAX; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[w++] = '\\';
            buf[w++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            w += (size_t)snprintf(buf + w, JSONLOAD_SHOW_MAX - w, "\\x%02x", ch);
        } else {
            buf[w++] = (char)ch;
        }
    }
    if (*s) {
        memcpy(buf + w, "...", 3);
        w += 3;
    }
    buf[w] = '\0';
    return buf;
}

bool jsonload_is_word(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    }
    return true;
}

/* ---- JSON path ---- */

static void path_append(struct jsonload *j, const char *s)
{
    size_t n = strlen(s);
    if (j->path_len + n >= sizeof(j->path))
        n = sizeof(j->path) - 1 - j->path_len;
    memcpy(j->path + j->path_len, s, n);
    j->path_len += n;
    j->path[j->path_len] = '\0';
}

size_t jsonload_key(struct jsonload *j, const char *key)
{
    size_t old = j->path_len;
    char buf[JSONLOAD_SHOW_MAX];
    if (jsonload_is_word(key)) {
        if (j->path_len)
            path_append(j, ".");
        path_append(j, key);
    } else {
        path_append(j, "[\"");
        path_append(j, jsonload_show(buf, key));
        path_append(j, "\"]");
    }
    return old;
}

size_t jsonload_index(struct jsonload *j, size_t i)
{
    size_t old = j->path_len;
    char buf[32];
    snprintf(buf, sizeof(buf), "[%zu]", i);
    path_append(j, buf);
    return old;
}

void jsonload_pop(struct jsonload *j, size_t old)
{
    j->path_len = old;
    j->path[old] = '\0';
}

/* ---- errors ---- */

static void vfail(struct jsonload *j, const char *fmt, va_list ap)
{
    char msg[512];

    j->nerr++;
    if (!j->want_text || j->nerr > JSONLOAD_MAX_ERRORS)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    const char *path = j->path_len ? j->path : "(root)";
    err_append(j, path, strlen(path));
    err_append(j, ": ", 2);
    err_append(j, msg, strlen(msg));
    err_append(j, "\n", 1);
}

void jsonload_fail(struct jsonload *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(j, fmt, ap);
    va_end(ap);
}

void jsonload_fail_at(struct jsonload *j, const char *key, const char *fmt, ...)
{
    va_list ap;
    size_t old = jsonload_key(j, key);
    va_start(ap, fmt);
    vfail(j, fmt, ap);
    va_end(ap);
    jsonload_pop(j, old);
}

/* ---- keys ---- */

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys are errors: cJSON keeps both and a lookup sees only the first, so the loaded
 * snapshot would silently differ from what a reader of the file believes. Large objects
 * (thousands of policies) are sorted rather than compared pairwise. */
static void check_duplicates(struct jsonload *j, const cJSON *obj, size_t pairwise_max)
{
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        n++;
    if (n <= pairwise_max) {
        for (const cJSON *c = obj->child; c; c = c->next) {
            for (const cJSON *d = obj->child; d != c; d = d->next) {
                if (strcmp(d->string, c->string) == 0) {
                    jsonload_fail_at(j, c->string, "duplicate key");
                    break;
                }
            }
        }
        return;
    }
    const char **keys = malloc(n * sizeof(*keys));
    if (!keys) {
        j->oom = true;
        return;
    }
    n = 0;
    for (const cJSON *c = obj->child; c; c = c->next)
        keys[n++] = c->string;
    qsort(keys, n, sizeof(*keys), cmp_key);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0 && (i < 2 || strcmp(keys[i - 2], keys[i]) != 0))
            jsonload_fail_at(j, keys[i], "duplicate key");
    }
    free(keys);
}

/* Unknown keys are errors: a typo such as "deny_rule" must not silently widen what a file
 * grants, nor "endpoint" silently narrow it. */
void jsonload_check_keys(struct jsonload *j, const cJSON *obj, const char *const *allowed,
                         size_t pairwise_max)
{
    check_duplicates(j, obj, pairwise_max);
    if (!allowed)
        return;
    for (const cJSON *c = obj->child; c; c = c->next) {
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            known = known || strcmp(*a, c->string) == 0;
        if (!known) {
            char list[256] = "";
            for (const char *const *a = allowed; *a; a++) {
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         a == allowed ? "" : ", ", *a);
            }
            jsonload_fail_at(j, c->string, "unknown key (allowed: %s)", list);
        }
    }
}

/* ---- values ---- */

bool jsonload_int(const cJSON *v, long lo, long hi, long *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    /* Range first: the cast back is defined only for values a long can hold (NaN fails both
     * comparisons). No floor(), so that no user needs libm. */
    if (!(d >= (double)lo && d <= (double)hi) || (double)(long)d != d)
        return false;
    *out = (long)d;
    return true;
}

/* "LOW-HIGH": decimal digits only, 1..65535, LOW <= HIGH. */
static bool parse_range(const char *s, struct jsonload_range *r)
{
    unsigned long v[2];
    for (int i = 0; i < 2; i++) {
        size_t digits = 0;
        v[i] = 0;
        while (s[digits] >= '0' && s[digits] <= '9' && digits < 6) {
            v[i] = v[i] * 10 + (unsigned long)(s[digits] - '0');
            digits++;
        }
        if (digits == 0 || v[i] < 1 || v[i] > 65535)
            return false;
        s += digits;
        if (i == 0 && *s++ != '-')
            return false;
    }
    if (*s != '\0' || v[0] > v[1])
        return false;
    r->lo = (uint16_t)v[0];
    r->hi = (uint16_t)v[1];
    return true;
}

size_t jsonload_ports(struct jsonload *j, const cJSON *obj, struct jsonload_range **out)
{
    const cJSON *port = cJSON_GetObjectItemCaseSensitive(obj, "port");
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(obj, "ports");
    char buf[JSONLOAD_SHOW_MAX];
    long n;

    *out = NULL;
    if (port && ports) {
        jsonload_fail_at(j, "ports", "give \"port\" or \"ports\", not both");
        return 0;
    }
    if (!port && !ports) {
        jsonload_fail(j, "needs \"port\" or \"ports\"");
        return 0;
    }
    if (port) {
        if (!jsonload_int(port, 1, 65535, &n)) {
            jsonload_fail_at(j, "port", "must be an integer from 1 to 65535");
            return 0;
        }
        struct jsonload_range *r = malloc(sizeof(*r));
        if (!r) {
            j->oom = true;
            return 0;
        }
        r->lo = r->hi = (uint16_t)n;
        *out = r;
        return 1;
    }
    if (!cJSON_IsArray(ports) || cJSON_GetArraySize(ports) == 0) {
        jsonload_fail_at(j, "ports", "must be a non-empty array of ports and \"LOW-HIGH\" ranges");
        return 0;
    }
    size_t count = (size_t)cJSON_GetArraySize(ports);
    struct jsonload_range *r = calloc(count, sizeof(*r));
    if (!r) {
        j->oom = true;
        return 0;
    }
    size_t i = 0;
    size_t old = jsonload_key(j, "ports");
    for (const cJSON *c = ports->child; c; c = c->next, i++) {
        size_t o = jsonload_index(j, i);
        if (jsonload_int(c, 1, 65535, &n)) {
            r[i].lo = r[i].hi = (uint16_t)n;
        } else if (!cJSON_IsString(c)) {
            jsonload_fail(j, "must be an integer from 1 to 65535 or a \"LOW-HIGH\" string");
        } else if (!parse_range(c->valuestring, &r[i])) {
            jsonload_fail(j, "\"%s\" is not a \"LOW-HIGH\" range of ports 1 to 65535",
                          jsonload_show(buf, c->valuestring));
        }
        jsonload_pop(j, o);
    }
    jsonload_pop(j, old);
    *out = r;
    return count;
}

/* ---- parse ---- */

static void line_col(const char *start, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *ch = start; ch < at && *ch; ch++) {
        if (*ch == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

cJSON *jsonload_parse(struct jsonload *j, const char *text, size_t len)
{
    /* cJSON stops at a NUL; whatever followed it would be silently ignored. */
    if (memchr(text, '\0', len)) {
        jsonload_fail(j, "contains a NUL byte");
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        int line, col;
        line_col(text, end ? end : text, &line, &col);
        jsonload_fail(j, "invalid JSON near line %d, column %d", line, col);
    }
    return root;
}

ssize_t jsonload_read_fd(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int jsonload_open_regular(const char *path, struct stat *st, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        *why = strerror(errno);
    } else if (fstat(fd, st) != 0) {
        *why = strerror(errno);
    } else if (!S_ISREG(st->st_mode)) {
        *why = "not a regular file";
    } else {
        return fd;
    }
    if (fd >= 0)
        close(fd);
    return -1;
}

char *jsonload_read_file(const char *path, size_t max, size_t *len, char **errors)
{
    char shown[JSONLOAD_SHOW_MAX], line[JSONLOAD_SHOW_MAX + 128], size_text[48];
    struct stat st;
    const char *why = NULL;
    char *text = NULL;
    ssize_t n = 0;

    if (errors)
        *errors = NULL;
    int fd = jsonload_open_regular(path, &st, &why);
    if (fd < 0)
        goto out; /* why says it */
    if ((uintmax_t)st.st_size > max) {
        if (max % (1u << 20) == 0)
            snprintf(size_text, sizeof(size_text), "larger than %zu MiB", max >> 20);
        else
            snprintf(size_text, sizeof(size_text), "larger than %zu bytes", max);
        why = size_text;
    } else if (!(text = malloc((size_t)st.st_size + 1))) {
        why = "out of memory";
    } else if ((n = jsonload_read_fd(fd, text, (size_t)st.st_size + 1)) < 0) {
        why = strerror((int)-n);
    } else if ((size_t)n != (size_t)st.st_size) {
        /* One byte more than fstat said is asked for, to see a file that grows. */
        why = "changed while being read";
    }
    close(fd);
out:
    if (why) {
        free(text);
        if (errors) {
            snprintf(line, sizeof(line), "%s: cannot read: %s\n", jsonload_show(shown, path), why);
            *errors = strdup(line);
        }
        return NULL;
    }
    text[n] = '\0';
    *len = (size_t)n;
    return text;
}
