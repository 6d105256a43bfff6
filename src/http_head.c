/* SPDX-License-Identifier: MIT */
/* http_head: what a parsed head answers (a field by name, a count, a token in a list, which
 * fields are hop-by-hop or framing) and the growable output buffer every re-serialised head and
 * small JSON body is written into. Half of the http module (http.h); http.c is the parser.
 * Invariant: a buffer that ever held a secret is wiped before any block of it is freed. */
#include "airlock/http.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool name_is(const struct http_field *f, const char *name, size_t len)
{
    return f->name_len == len && strncasecmp(f->name, name, len) == 0;
}

const struct http_field *http_head_find(const struct http_head *h, const char *name)
{
    size_t len = strlen(name), i;

    for (i = 0; i < h->nfields; i++) {
        if (name_is(&h->fields[i], name, len))
            return &h->fields[i];
    }
    return NULL;
}

size_t http_head_count(const struct http_head *h, const char *name)
{
    size_t len = strlen(name), i, n = 0;

    for (i = 0; i < h->nfields; i++) {
        if (name_is(&h->fields[i], name, len))
            n++;
    }
    return n;
}

bool http_list_next(const char *v, size_t len, size_t *pos, size_t *start, size_t *end)
{
    size_t i = *pos;

    while (i < len && (is_ows(v[i]) || v[i] == ','))
        i++;
    if (i == len) {
        *pos = i;
        return false;
    }
    *start = i;
    while (i < len && v[i] != ',')
        i++;
    *end = *pos = i;
    while (*end > *start && is_ows(v[*end - 1]))
        (*end)--;
    return true;
}

static bool list_has_token(const char *v, size_t len, const char *token, size_t token_len)
{
    size_t pos = 0, start, end;

    while (http_list_next(v, len, &pos, &start, &end)) {
        if (end - start == token_len && token_len && strncasecmp(v + start, token, token_len) == 0)
            return true;
    }
    return false;
}

bool http_head_has_token(const struct http_head *h, const char *name, const char *token)
{
    size_t len = strlen(name), token_len = strlen(token), i;

    for (i = 0; i < h->nfields; i++) {
        if (name_is(&h->fields[i], name, len) &&
            list_has_token(h->fields[i].value, h->fields[i].value_len, token, token_len))
            return true;
    }
    return false;
}

bool http_field_is_hop_by_hop(const struct http_head *h, const struct http_field *f)
{
    /* RFC 9110 §7.6.1 names Connection and the fields it lists, and calls out Proxy-Connection,
     * Keep-Alive, TE, Transfer-Encoding and Upgrade; Proxy-Authenticate and
     * Proxy-Authorization (RFC 9110 §11.7) and Trailer belong to one hop as well. */
    static const char *const fixed[] = {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    };
    size_t i, conn_len = strlen("connection");

    for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        if (name_is(f, fixed[i], strlen(fixed[i])))
            return true;
    }
    if (!h)
        return false;
    for (i = 0; i < h->nfields; i++) {
        if (name_is(&h->fields[i], "connection", conn_len) &&
            list_has_token(h->fields[i].value, h->fields[i].value_len, f->name, f->name_len))
            return true;
    }
    return false;
}

bool http_field_is_framing(const struct http_field *f)
{
    return name_is(f, "content-length", 14) || name_is(f, "transfer-encoding", 17) ||
           name_is(f, "host", 4) || name_is(f, "connection", 10);
}

/* Make room for len more bytes plus a NUL; false (and failed) when that is impossible. */
static bool buf_reserve(struct http_buf *b, size_t len)
{
    size_t cap;
    char *grown;

    if (b->failed)
        return false;
    if (b->cap - b->len > len)
        return true;
    if (len >= SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    cap = b->cap ? b->cap : 256;
    while (cap - b->len <= len)
        cap *= 2;
    if (b->wipe) {
        /* Never realloc a block that may hold a secret: it could move and leave the old block
         * unwiped in freed memory. */
        grown = malloc(cap);
        if (grown && b->len)
            memcpy(grown, b->data, b->len);
        if (grown && b->data) {
            OPENSSL_cleanse(b->data, b->cap);
            free(b->data);
        }
    } else {
        grown = realloc(b->data, cap);
    }
    if (!grown) {
        b->failed = true;
        return false;
    }
    b->data = grown;
    b->cap = cap;
    return true;
}

void http_buf_append(struct http_buf *b, const char *p, size_t len)
{
    if (!buf_reserve(b, len))
        return;
    if (len) /* p may be NULL then (an empty buffer's data): memcpy must not see it */
        memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void http_buf_puts(struct http_buf *b, const char *s)
{
    http_buf_append(b, s, strlen(s));
}

void http_buf_printf(struct http_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!buf_reserve(b, 0))
        return;
    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        if (!buf_reserve(b, (size_t)n))
            return;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void http_buf_free(struct http_buf *b)
{
    if (b->wipe && b->data)
        OPENSSL_cleanse(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}
