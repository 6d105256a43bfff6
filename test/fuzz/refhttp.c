/* SPDX-License-Identifier: MIT */
/* refhttp: see refhttp.h. Written from RFC 9112's grammar, not from llhttp: a cursor over the
 * whole stream, one function per production, every failure a static reason. */
#include "refhttp.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct cur {
    const uint8_t *p;
    size_t len, pos;
    const char *error;
};

static bool fail(struct cur *c, const char *why)
{
    if (!c->error)
        c->error = why;
    return false;
}

static bool at_end(const struct cur *c)
{
    return c->pos >= c->len;
}

static bool is_tchar(uint8_t ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_vchar_or_obs(uint8_t ch)
{
    return (ch >= 0x21 && ch <= 0x7e) || ch >= 0x80;
}

static char *dup_span(const uint8_t *p, size_t n)
{
    char *s = malloc(n + 1);

    if (!s)
        abort();
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static bool expect(struct cur *c, const char *lit)
{
    size_t n = strlen(lit);

    if (c->len - c->pos < n || memcmp(c->p + c->pos, lit, n) != 0)
        return fail(c, at_end(c) ? "truncated" : "unexpected bytes");
    c->pos += n;
    return true;
}

static bool crlf(struct cur *c)
{
    return expect(c, "\r\n");
}

/* 1*tchar, up to a delimiter the caller checks */
static char *token(struct cur *c)
{
    size_t start = c->pos;

    while (!at_end(c) && is_tchar(c->p[c->pos]))
        c->pos++;
    if (c->pos == start) {
        fail(c, at_end(c) ? "truncated" : "empty token");
        return NULL;
    }
    return dup_span(c->p + start, c->pos - start);
}

/* field-line = field-name ":" OWS field-value OWS CRLF; the value without its OWS */
static bool field_line(struct cur *c, struct ref_field *f)
{
    size_t start, end;

    f->name = token(c);
    if (!f->name)
        return false;
    if (!expect(c, ":"))
        return fail(c, "no colon right after a field name");
    while (!at_end(c) && (c->p[c->pos] == ' ' || c->p[c->pos] == '\t'))
        c->pos++;
    start = c->pos;
    while (!at_end(c) && c->p[c->pos] != '\r') {
        uint8_t ch = c->p[c->pos];

        if (!is_vchar_or_obs(ch) && ch != ' ' && ch != '\t')
            return fail(c, "control byte in a field value");
        c->pos++;
    }
    end = c->pos;
    while (end > start && (c->p[end - 1] == ' ' || c->p[end - 1] == '\t'))
        end--;
    f->value = dup_span(c->p + start, end - start);
    return crlf(c);
}

/* *( field-line ) CRLF */
static bool field_section(struct cur *c, struct ref_field **out, size_t *n)
{
    for (;;) {
        if (c->len - c->pos >= 2 && c->p[c->pos] == '\r' && c->p[c->pos + 1] == '\n') {
            c->pos += 2;
            return true;
        }
        if (at_end(c))
            return fail(c, "truncated");
        struct ref_field *grown = realloc(*out, (*n + 1) * sizeof **out);
        if (!grown)
            abort();
        *out = grown;
        memset(&grown[*n], 0, sizeof grown[*n]);
        (*n)++;
        if (!field_line(c, &grown[*n - 1]))
            return false;
    }
}

static size_t count_fields(const struct ref_msg *m, const char *name)
{
    size_t k = 0;

    for (size_t i = 0; i < m->nfields; i++)
        k += strcasecmp(m->fields[i].name, name) == 0;
    return k;
}

const char *ref_field(const struct ref_msg *m, const char *name)
{
    for (size_t i = 0; i < m->nfields; i++)
        if (strcasecmp(m->fields[i].name, name) == 0)
            return m->fields[i].value;
    return NULL;
}

static void body_append(struct ref_msg *m, const uint8_t *p, size_t n)
{
    uint8_t *grown = realloc(m->body, m->body_len + n + 1);

    if (!grown)
        abort();
    memcpy(grown + m->body_len, p, n);
    m->body = grown;
    m->body_len += n;
}

/* chunked-body with no chunk extensions (airlock writes none) and a trailer section */
static bool chunked_body(struct cur *c, struct ref_msg *m)
{
    for (;;) {
        uint64_t size = 0;
        size_t digits = 0;

        while (!at_end(c)) {
            uint8_t ch = c->p[c->pos];
            int v = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (v < 0)
                break;
            if (size > (UINT64_MAX >> 4))
                return fail(c, "chunk size overflows");
            size = size * 16 + (uint64_t)v;
            digits++;
            c->pos++;
        }
        if (!digits)
            return fail(c, at_end(c) ? "truncated" : "chunk without a size");
        if (!crlf(c))
            return false;
        if (size == 0)
            return field_section(c, &m->trailers, &m->ntrailers);
        if (c->len - c->pos < size)
            return fail(c, "truncated");
        body_append(m, c->p + c->pos, (size_t)size);
        c->pos += (size_t)size;
        if (!crlf(c))
            return false;
    }
}

/* The framing of a message's body, from its fields (RFC 9112 §6.3). -1 on an error, 0 for no
 * framing field, 1 for Content-Length (in *length), 2 for chunked. */
static int framing(struct cur *c, struct ref_msg *m, uint64_t *length)
{
    size_t ncl = count_fields(m, "content-length"), nte = count_fields(m, "transfer-encoding");

    if (ncl && nte)
        return fail(c, "both Content-Length and Transfer-Encoding"), -1;
    if (ncl > 1 || nte > 1)
        return fail(c, "a framing field twice"), -1;
    if (nte) {
        const char *te = ref_field(m, "transfer-encoding");
        size_t n = strlen(te);

        if (n < 7 || strcasecmp(te + n - 7, "chunked") != 0 ||
            (n > 7 && te[n - 8] != ' ' && te[n - 8] != ','))
            return 3; /* codings without chunked: a response runs until close */
        m->chunked = true;
        return 2;
    }
    if (ncl) {
        const char *v = ref_field(m, "content-length");
        uint64_t x = 0;

        if (!*v)
            return fail(c, "empty Content-Length"), -1;
        for (; *v; v++) {
            if (*v < '0' || *v > '9' || x > UINT64_MAX / 10 - 1)
                return fail(c, "bad Content-Length"), -1;
            x = x * 10 + (uint64_t)(*v - '0');
        }
        *length = x;
        return 1;
    }
    return 0;
}

static bool sized_body(struct cur *c, struct ref_msg *m, uint64_t length)
{
    if (c->len - c->pos < length)
        return fail(c, "truncated");
    body_append(m, c->p + c->pos, (size_t)length);
    c->pos += (size_t)length;
    return true;
}

static bool request(struct cur *c, struct ref_msg *m)
{
    size_t start;
    uint64_t length = 0;

    m->method = token(c);
    if (!m->method || !expect(c, " "))
        return false;
    start = c->pos;
    while (!at_end(c) && c->p[c->pos] >= 0x21 && c->p[c->pos] <= 0x7e)
        c->pos++;
    if (c->pos == start)
        return fail(c, at_end(c) ? "truncated" : "empty request-target");
    m->target = dup_span(c->p + start, c->pos - start);
    if (!expect(c, " HTTP/1.1") || !crlf(c) || !field_section(c, &m->fields, &m->nfields))
        return false;
    if (count_fields(m, "host") != 1)
        return fail(c, "not exactly one Host");
    switch (framing(c, m, &length)) {
    case 0:
        return true;
    case 1:
        return sized_body(c, m, length);
    case 2:
        return chunked_body(c, m);
    case 3:
        return fail(c, "request codings do not end in chunked");
    default:
        return false;
    }
}

/* A response; method is what it answers. *upgraded when it is a 101. */
static bool response(struct cur *c, struct ref_msg *m, const char *method, bool *upgraded)
{
    size_t start;
    uint64_t length = 0;
    int status = 0;

    if (!expect(c, "HTTP/1.1 "))
        return false;
    for (int i = 0; i < 3; i++) {
        if (at_end(c))
            return fail(c, "truncated");
        if (c->p[c->pos] < '0' || c->p[c->pos] > '9')
            return fail(c, "status is not three digits");
        status = status * 10 + (c->p[c->pos++] - '0');
    }
    if (status < 100 || status > 599)
        return fail(c, "status outside 100..599");
    m->status = status;
    if (!expect(c, " "))
        return false;
    start = c->pos;
    while (!at_end(c) && c->p[c->pos] != '\r') {
        uint8_t ch = c->p[c->pos];

        if (!is_vchar_or_obs(ch) && ch != ' ' && ch != '\t')
            return fail(c, "control byte in a reason phrase");
        c->pos++;
    }
    m->reason = dup_span(c->p + start, c->pos - start);
    if (!crlf(c) || !field_section(c, &m->fields, &m->nfields))
        return false;
    if (status == 101) {
        *upgraded = true;
        return true;
    }
    int fr = framing(c, m, &length);
    if (fr < 0)
        return false;
    if (status < 200 || status == 204 || status == 304 || (method && !strcmp(method, "HEAD")))
        return true;
    switch (fr) {
    case 1:
        return sized_body(c, m, length);
    case 2:
        return chunked_body(c, m);
    default:
        m->close_framed = true;
        body_append(m, c->p + c->pos, c->len - c->pos);
        c->pos = c->len;
        return true;
    }
}

static void msg_free(struct ref_msg *m)
{
    free(m->method);
    free(m->target);
    free(m->reason);
    for (size_t i = 0; i < m->nfields; i++) {
        free(m->fields[i].name);
        free(m->fields[i].value);
    }
    free(m->fields);
    for (size_t i = 0; i < m->ntrailers; i++) {
        free(m->trailers[i].name);
        free(m->trailers[i].value);
    }
    free(m->trailers);
    free(m->body);
    memset(m, 0, sizeof *m);
}

static struct ref_msg *next_msg(struct ref_stream *s)
{
    struct ref_msg *grown = realloc(s->msgs, (s->nmsgs + 1) * sizeof *grown);

    if (!grown)
        abort();
    s->msgs = grown;
    memset(&grown[s->nmsgs], 0, sizeof grown[s->nmsgs]);
    return &grown[s->nmsgs];
}

/* A message that failed only because the stream ended is "truncated", not an error. */
static bool settle(struct cur *c, struct ref_stream *s, struct ref_msg *m, bool ok)
{
    if (ok) {
        s->nmsgs++;
        return true;
    }
    msg_free(m);
    if (c->error && !strcmp(c->error, "truncated")) {
        s->truncated = true;
    } else {
        s->error = c->error ? c->error : "error";
        s->error_at = c->pos;
    }
    return false;
}

void ref_parse_requests(const uint8_t *p, size_t len, struct ref_stream *out)
{
    struct cur c = {p, len, 0, NULL};

    memset(out, 0, sizeof *out);
    while (!at_end(&c)) {
        struct ref_msg *m = next_msg(out);

        if (!settle(&c, out, m, request(&c, m)))
            return;
    }
}

void ref_parse_responses(const uint8_t *p, size_t len, const char *const *methods, size_t nmethods,
                         struct ref_stream *out)
{
    struct cur c = {p, len, 0, NULL};
    size_t finals = 0;

    memset(out, 0, sizeof *out);
    while (!at_end(&c)) {
        struct ref_msg *m = next_msg(out);
        bool upgraded = false;
        const char *method = finals < nmethods ? methods[finals] : NULL;

        if (!settle(&c, out, m, response(&c, m, method, &upgraded)))
            return;
        if (upgraded) {
            out->upgraded_at = c.pos;
            return;
        }
        if (m->status >= 200)
            finals++;
    }
}

void ref_stream_free(struct ref_stream *s)
{
    for (size_t i = 0; i < s->nmsgs; i++)
        msg_free(&s->msgs[i]);
    free(s->msgs);
    memset(s, 0, sizeof *s);
}
