/* SPDX-License-Identifier: MIT */
/* http: llhttp for one direction of one connection (what a head answers afterwards, and the
 * output buffer, are in http_head.c). It owns the head under construction and a
 * small arena of its bytes until on_head hands a sealed head (one allocation) to the owner; body
 * bytes are never copied, only passed on. Invariant: llhttp keeps its strict defaults (no
 * lenient flag is ever set), and every HTTP_ERROR leaves an error_status and a static reason. */
#include "airlock/http.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#define ARENA_INITIAL  1024 /* a typical request head fits; larger arenas are freed after use */
#define FIELDS_INITIAL 8

/* field_state: where field collection stands (FS_MASK bits) plus per-message flags. */
enum {
    FS_NONE = 0,  /* between fields */
    FS_NAME = 1,  /* inside a field name */
    FS_VALUE = 2, /* name complete: bytes go to its value */
    FS_MASK = 3,
    FS_IN_MESSAGE = 4, /* between on_message_begin and on_message_complete */
    FS_UPGRADE = 8,    /* the current (or just completed) message's head has upgrade set */
};

static const struct http_parser_cbs no_cbs;

const struct http_limits http_default_limits = {
    .field_size = HTTP_FIELD_SIZE_DEFAULT,
    .fields = HTTP_FIELDS_DEFAULT,
    .chunk_ext = HTTP_CHUNK_EXT_DEFAULT,
};

/* Records the first error only: a later llhttp error is a consequence of it. */
static int fail(struct http_parser *p, int status, const char *reason)
{
    /* After the head the client already has its request under way: a trailer section over a
     * limit is a malformed request (400), not a head to shorten (431). */
    if (p->in_trailers && status == 431)
        status = 400;
    if (!p->error_status) {
        /* A bad upstream message is the upstream's fault, not the client's: the client gets
         * 502 Bad Gateway (RFC 9110 §15.6.3) whatever limit the response broke. */
        p->error_status = p->kind == HTTP_KIND_RESPONSE ? 502 : status;
        p->error_reason = reason;
    } else if (!p->error_reason) {
        p->error_reason = reason;
    }
    return -1;
}

static int fail_oom(struct http_parser *p)
{
    return fail(p, 500, "out of memory");
}

static void free_building(struct http_parser *p)
{
    if (p->building) {
        free(p->building->fields);
        free(p->building);
        p->building = NULL;
    }
}

/* The head (or trailer section) under construction: its lengths count bytes in the arena, which
 * holds the pieces back to back in the order llhttp delivers them (method, target or reason,
 * then name and value of each field). Pointers are set only when the head is sealed, because
 * the arena may move while it grows. */
static struct http_head *building(struct http_parser *p)
{
    if (!p->building) {
        p->building = calloc(1, sizeof(*p->building));
        if (!p->building) {
            fail_oom(p);
            return NULL;
        }
        p->building->is_request = p->kind == HTTP_KIND_REQUEST;
        p->arena_len = 0;
    }
    return p->building;
}

static int arena_append(struct http_parser *p, const char *at, size_t len)
{
    size_t need, cap;
    char *grown;

    if (len == 0)
        return 0; /* an empty reason phrase or field value adds nothing (and the arena may be
                   * NULL: memcpy to NULL is undefined even for zero bytes) */
    /* The arena holds the start line and field bytes without delimiters, so the limit is a
     * little generous against the wire size; field count is bounded separately. */
    if (len > HTTP_HEAD_MAX - p->arena_len)
        return fail(p, 431, "header section too large");
    need = p->arena_len + len;
    if (need > p->arena_cap) {
        cap = p->arena_cap ? p->arena_cap : ARENA_INITIAL;
        while (cap < need)
            cap *= 2;
        if (cap > HTTP_HEAD_MAX)
            cap = HTTP_HEAD_MAX;
        grown = realloc(p->arena, cap);
        if (!grown)
            return fail_oom(p);
        p->arena = grown;
        p->arena_cap = cap;
    }
    memcpy(p->arena + p->arena_len, at, len);
    p->arena_len += len;
    return 0;
}

/* Copy one piece out of the arena into the sealed head, NUL-terminated for convenience. */
static const char *take(char **out, const char **in, size_t len)
{
    char *s = *out;

    /* The arena is NULL when everything taken so far was empty: no offset arithmetic on it. */
    if (len) {
        memcpy(s, *in, len);
        *in += len;
    }
    s[len] = '\0';
    *out += len + 1;
    return s;
}

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 §5.6.2 */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_ows(char c);

/* codings as append_codings writes them: "chunked" alone or after ", " */
static bool ends_with_chunked(const char *codings)
{
    size_t n = strlen(codings);

    return n >= 7 && strcmp(codings + n - 7, "chunked") == 0 && (n == 7 || codings[n - 8] == ' ');
}

/* Append the codings of one Transfer-Encoding value to out (lower case, ", " between them).
 * false when an element is not a bare token (parameters are refused: no registered coding has
 * one) or chunked is not the last coding. */
static bool append_codings(const char *v, size_t len, char *out, size_t *out_len)
{
    size_t pos = 0, start, end;

    while (http_list_next(v, len, &pos, &start, &end)) {
        /* chunked applied already, then another coding (or chunked twice) */
        if (ends_with_chunked(out))
            return false;
        if (*out_len) {
            memcpy(out + *out_len, ", ", 2);
            *out_len += 2;
        }
        for (size_t k = start; k < end; k++) {
            if (!is_tchar((unsigned char)v[k]))
                return false;
            out[(*out_len)++] = (char)tolower((unsigned char)v[k]);
        }
        out[*out_len] = '\0';
    }
    return true;
}

static bool piece_is(const char *piece, size_t len, const char *name)
{
    return len == strlen(name) && strncasecmp(piece, name, len) == 0;
}

/* Bytes the normalised transfer codings of the head under construction may need. */
static size_t codings_room(const struct http_parser *p)
{
    const struct http_head *b = p->building;
    const char *in = p->arena + b->method_len + b->target_len + b->reason_len;
    size_t room = 0;

    if (p->in_trailers)
        return 0;
    for (size_t i = 0; i < b->nfields; i++) {
        if (piece_is(in, b->fields[i].name_len, "transfer-encoding"))
            room += 2 * b->fields[i].value_len + 2; /* "a,b" may become "a, b" */
        in += b->fields[i].name_len + b->fields[i].value_len;
    }
    return room ? room + 1 : 0;
}

/* Turn the head under construction into one allocation: struct, fields array, strings, and the
 * normalised transfer codings. */
static struct http_head *seal(struct http_parser *p)
{
    const struct http_head *b = p->building;
    const char *in = p->arena;
    struct http_head *h;
    size_t size, i, room = p->arena ? codings_room(p) : 0;
    char *out;

    size = sizeof(*h) + b->nfields * sizeof(struct http_field) + p->arena_len + 3 + 2 * b->nfields +
           room;
    h = malloc(size);
    if (!h)
        return NULL;
    *h = *b;
    h->transfer_codings = NULL;
    h->fields = (struct http_field *)(h + 1);
    out = (char *)(h->fields + b->nfields);
    if (p->in_trailers) {
        h->method = h->target = h->reason = NULL;
    } else if (p->kind == HTTP_KIND_REQUEST) {
        h->method = take(&out, &in, b->method_len);
        h->target = take(&out, &in, b->target_len);
        h->reason = NULL;
    } else {
        h->method = h->target = NULL;
        h->reason = take(&out, &in, b->reason_len);
    }
    for (i = 0; i < b->nfields; i++) {
        h->fields[i].name_len = b->fields[i].name_len;
        h->fields[i].value_len = b->fields[i].value_len;
        h->fields[i].name = take(&out, &in, b->fields[i].name_len);
        h->fields[i].value = take(&out, &in, b->fields[i].value_len);
    }
    if (room) {
        size_t len = 0;

        *out = '\0';
        for (i = 0; i < h->nfields; i++) {
            const struct http_field *f = &h->fields[i];

            if (piece_is(f->name, f->name_len, "transfer-encoding") &&
                !append_codings(f->value, f->value_len, out, &len)) {
                p->bad_codings = true;
                break;
            }
        }
        h->transfer_codings = out;
    }
    return h;
}

/* After a head or trailer section is sealed: give the arena back. An idle keep-alive tunnel
 * has two parsers, and one malloc per head costs less than 2 KiB held by every idle tunnel. */
static void reset_arena(struct http_parser *p)
{
    p->arena_len = 0;
    free(p->arena);
    p->arena = NULL;
    p->arena_cap = 0;
}

/* The head or trailer section under construction as one allocation, the building state and
 * arena given back either way. NULL when out of memory. */
static struct http_head *take_building(struct http_parser *p)
{
    struct http_head *h = seal(p);

    free_building(p);
    reset_arena(p);
    return h;
}

static int begin_field(struct http_parser *p)
{
    struct http_head *b = building(p);
    struct http_field *grown;
    size_t n;

    if (!b)
        return -1;
    n = b->nfields;
    if (n >= p->limits.fields)
        return fail(p, 431, "too many header fields");
    /* capacity is FIELDS_INITIAL, then doubles: grow when n reaches a power of two */
    if (n == 0 || (n >= FIELDS_INITIAL && (n & (n - 1)) == 0)) {
        grown = realloc(b->fields, (n ? 2 * n : FIELDS_INITIAL) * sizeof(*grown));
        if (!grown)
            return fail_oom(p);
        b->fields = grown;
    }
    memset(&b->fields[n], 0, sizeof(b->fields[n]));
    b->nfields = n + 1;
    p->field_size = 0;
    p->field_state = (p->field_state & ~FS_MASK) | FS_NAME;
    return 0;
}

/* One field line (name and value) may not exceed the limit, whatever the head's total. */
static int count_field_bytes(struct http_parser *p, size_t len)
{
    if (len > p->limits.field_size - p->field_size)
        return fail(p, 431, "header field too large");
    p->field_size += len;
    return 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int on_message_begin(llhttp_t *l)
{
    struct http_parser *p = l->data;

    free_building(p);
    p->arena_len = 0;
    p->in_trailers = false;
    p->bad_codings = false;
    p->chunk_ext_size = 0;
    p->field_state = FS_IN_MESSAGE;
    return 0;
}

/* One piece of a start-line part (llhttp may deliver a part in several): appended to the
 * arena, and counted in *part_len, the part's length in the head being built. */
static int add_start_line(struct http_parser *p, const char *at, size_t len, size_t *part_len)
{
    if (arena_append(p, at, len) < 0)
        return -1;
    *part_len += len;
    return 0;
}

static int on_method(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = l->data;
    struct http_head *b = building(p);

    return b ? add_start_line(p, at, len, &b->method_len) : -1;
}

static int on_url(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = l->data;
    struct http_head *b = building(p);

    if (!b)
        return -1;
    /* RFC 9112 §3: a server that receives a request-target longer than it wishes to parse
     * answers 414 (RFC 9110 §15.5.15). */
    if (len > HTTP_TARGET_MAX - b->target_len)
        return fail(p, 414, "request-target too long");
    return add_start_line(p, at, len, &b->target_len);
}

static int on_status(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = l->data;
    struct http_head *b = building(p);

    return b ? add_start_line(p, at, len, &b->reason_len) : -1;
}

/* The field whose name is being read: a new one after a value (or at the first name). NULL
 * when the fields are at their limit or memory ran out (the parser has failed). */
static struct http_field *name_field(struct http_parser *p)
{
    if ((p->field_state & FS_MASK) != FS_NAME && begin_field(p) < 0)
        return NULL;
    return &p->building->fields[p->building->nfields - 1];
}

/* The field whose value is being read; NULL, with the parser failed, for a value that follows
 * no name. */
static struct http_field *value_field(struct http_parser *p)
{
    if ((p->field_state & FS_MASK) != FS_VALUE) {
        fail(p, 400, "field value without a name");
        return NULL;
    }
    return &p->building->fields[p->building->nfields - 1];
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = l->data;
    struct http_field *f = name_field(p);

    if (!f || count_field_bytes(p, len) < 0 || arena_append(p, at, len) < 0)
        return -1;
    f->name_len += len;
    return 0;
}

static int on_header_field_complete(llhttp_t *l)
{
    struct http_parser *p = l->data;

    /* llhttp refuses an empty name; should one slip through it still gets its own field */
    if (!name_field(p))
        return -1;
    p->field_state = (p->field_state & ~FS_MASK) | FS_VALUE;
    return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = l->data;
    struct http_field *f = value_field(p);

    if (!f)
        return -1;
    /* RFC 9110 §5.5: leading and trailing whitespace is not part of the field value */
    if (f->value_len == 0) {
        while (len && is_ows(*at)) {
            at++;
            len--;
        }
    }
    if (count_field_bytes(p, len) < 0 || arena_append(p, at, len) < 0)
        return -1;
    f->value_len += len;
    return 0;
}

static int on_header_value_complete(llhttp_t *l)
{
    struct http_parser *p = l->data;
    struct http_field *f = value_field(p);

    if (!f)
        return -1;
    while (f->value_len && is_ows(p->arena[p->arena_len - 1])) {
        f->value_len--;
        p->arena_len--;
    }
    p->field_state = (p->field_state & ~FS_MASK) | FS_NONE;
    return 0;
}

/* The RFC 9112 checks llhttp leaves to its caller. Returns NULL or a static reason (400). */
static const char *check_head(const struct http_parser *p, const struct http_head *h)
{
    /* llhttp also lets HTTP/0.9 and HTTP/2.0 through; a textual 2.0 head or a 0.9 one has no
     * business on an HTTP/1.1 connection (RFC 9112 §2.3). */
    if (h->version_major != 1 || h->version_minor > 1)
        return "unsupported HTTP version";
    /* RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing, even with a
     * Content-Length; llhttp would parse it as chunked. */
    if ((p->llhttp.flags & F_TRANSFER_ENCODING) && h->version_minor == 0)
        return "Transfer-Encoding in HTTP/1.0";
    if (p->bad_codings)
        return "malformed Transfer-Encoding";
    if (h->transfer_codings && !h->transfer_codings[0])
        return "empty Transfer-Encoding";
    /* What airlock forwards must frame the body exactly as llhttp read it. */
    if (h->transfer_codings &&
        ends_with_chunked(h->transfer_codings) != ((p->llhttp.flags & F_CHUNKED) != 0))
        return "ambiguous Transfer-Encoding";
    /* A peer may not make a relay drop the fields that frame the message or name its target
     * (the Content-Length of a request carrying a second request as its body, say). */
    if (http_head_has_token(h, "connection", "content-length") ||
        http_head_has_token(h, "connection", "transfer-encoding") ||
        http_head_has_token(h, "connection", "host"))
        return "Connection names a framing field";
    if (!h->is_request) {
        /* RFC 9110 §15: a status outside 100..599 is not one a client can act on (llhttp reads
         * any three digits); treat it as the upstream's error. */
        if (h->status < 100 || h->status > 599)
            return "invalid status code";
        /* RFC 9110 §15.2: interim responses end at their head. llhttp ends 100..103 there but
         * would read a body for another 1xx with framing, which a client would take for the
         * next response. */
        if (h->status < 200 && h->status > 103 &&
            (p->llhttp.flags & (F_CONTENT_LENGTH | F_TRANSFER_ENCODING)))
            return "interim response with a body";
        /* RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ): no control bytes. */
        for (size_t i = 0; i < h->reason_len; i++) {
            unsigned char ch = (unsigned char)h->reason[i];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return "control character in reason phrase";
        }
        return NULL;
    }
    /* RFC 9112 §6.3 (4): a request whose final transfer coding is not chunked cannot be framed;
     * llhttp says so too, but only after on_headers_complete, when the owner has the head. */
    if ((p->llhttp.flags & F_TRANSFER_ENCODING) && !(p->llhttp.flags & F_CHUNKED))
        return "Transfer-Encoding does not end in chunked";
    /* RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host and for any request with more
     * than one Host field line. */
    switch (http_head_count(h, "host")) {
    case 0:
        return h->version_minor == 1 ? "missing Host" : NULL;
    case 1:
        return NULL;
    default:
        return "duplicate Host";
    }
}

static int on_headers_complete(llhttp_t *l)
{
    struct http_parser *p = l->data;
    struct http_head *h;
    const char *bad;
    int action;

    if (!building(p))
        return -1;
    if (!(h = take_building(p)))
        return fail_oom(p);
    h->version_major = l->http_major;
    h->version_minor = l->http_minor;
    if (h->is_request)
        h->method_id = (llhttp_method_t)l->method;
    else
        h->status = l->status_code;
    h->keep_alive = llhttp_should_keep_alive(l);
    h->chunked = (l->flags & F_CHUNKED) != 0;
    h->has_content_length = (l->flags & F_CONTENT_LENGTH) != 0;
    h->content_length = h->has_content_length ? l->content_length : 0;
    /* llhttp stops with HPE_PAUSED_UPGRADE after a request with Upgrade and Connection:
     * upgrade, after CONNECT (its upgrade flag), and after every 101 response, whatever its
     * fields: the same set, so head->upgrade predicts HTTP_UPGRADE exactly. */
    h->upgrade = h->is_request ? l->upgrade != 0 : h->status == 101;

    bad = check_head(p, h);
    if (bad) {
        http_head_free(h);
        return fail(p, 400, bad);
    }
    /* Fields after this point are a trailer section (RFC 9112 §7.1.2). */
    p->in_trailers = true;
    p->field_state = (p->field_state & ~FS_MASK) | (h->upgrade ? FS_UPGRADE : 0);

    if (!p->cbs->on_head) {
        http_head_free(h);
        return 0;
    }
    action = p->cbs->on_head(p->owner, h);
    switch (action) {
    case HTTP_HEAD_CONTINUE:
        return 0;
    case HTTP_HEAD_NO_BODY:
        return 1; /* llhttp: assume no body, parse the next message */
    case HTTP_HEAD_PAUSE:
        /* llhttp resumes into its after-headers step, so the body is framed as usual */
        return HPE_PAUSED;
    default:
        return fail(p, 400, "head refused");
    }
}

static int on_body(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = l->data;
    int rc;

    /* llhttp flushes an open span at the end of every execute, possibly empty */
    if (len == 0 || !p->cbs->on_body)
        return 0;
    rc = p->cbs->on_body(p->owner, at, len);
    if (rc == HTTP_PAUSE_BODY)
        return HPE_PAUSED; /* error_pos is just past this span */
    if (rc != 0)
        return fail(p, 400, "body refused");
    return 0;
}

static int on_chunk_extension(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = l->data;

    (void)at;
    /* They are dropped when the body is re-chunked, but llhttp still reads every byte: a
     * bound keeps a peer from streaming megabytes of them (CVE-2024-22019's shape). */
    if (len > p->limits.chunk_ext - p->chunk_ext_size)
        return fail(p, 400, "chunk extensions too large");
    p->chunk_ext_size += len;
    return 0;
}

static int on_message_complete(llhttp_t *l)
{
    struct http_parser *p = l->data;
    struct http_head *trailers = NULL;
    int rc = 0;

    if (p->building) {
        /* only a trailer section can be under construction here */
        if (!(trailers = take_building(p)))
            return fail_oom(p);
    }
    p->field_state &= ~(FS_MASK | FS_IN_MESSAGE);
    p->in_trailers = false;
    /* A trailer section can still say Connection: close (llhttp then refuses what follows) */
    p->keep_alive = llhttp_should_keep_alive(l) != 0;
    if (p->cbs->on_complete)
        rc = p->cbs->on_complete(p->owner, trailers);
    http_head_free(trailers);
    if (rc < 0)
        return fail(p, 400, "message refused");
    /* After an upgrade llhttp stops right after this callback anyway; pausing as well would
     * report HTTP_PAUSED first and HTTP_UPGRADE only on the next execute. */
    if (rc == HTTP_PAUSE_BODY && !(p->field_state & FS_UPGRADE))
        return HPE_PAUSED;
    return 0;
}

/* One table for both kinds: llhttp calls on_method and on_url only for requests, on_status
 * only for responses. */
static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_method = on_method,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_message_complete = on_message_complete,
};

void http_parser_init(struct http_parser *p, enum http_kind kind, const struct http_parser_cbs *cbs,
                      void *owner)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->cbs = cbs ? cbs : &no_cbs;
    p->owner = owner;
    p->limits = http_default_limits;
    llhttp_init(&p->llhttp, kind == HTTP_KIND_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    p->llhttp.data = p;
}

void http_parser_set_limits(struct http_parser *p, const struct http_limits *limits)
{
    p->limits = *limits;
}

void http_parser_deinit(struct http_parser *p)
{
    free_building(p);
    reset_arena(p);
    p->field_state = FS_NONE;
}

static void set_llhttp_error(struct http_parser *p, llhttp_errno_t err)
{
    const char *reason;

    if (err == HPE_PAUSED_H2_UPGRADE) {
        reason = "HTTP/2 connection preface";
    } else {
        /* llhttp's reasons are string literals, never input bytes */
        reason = llhttp_get_error_reason(&p->llhttp);
        if (!reason)
            reason = llhttp_errno_name(err);
    }
    fail(p, 400, reason);
}

enum http_exec_status http_parser_execute(struct http_parser *p, const char *data, size_t len,
                                          size_t *consumed)
{
    static const char empty[1];
    size_t done = 0;
    llhttp_errno_t err;
    const char *pos;

    *consumed = 0;
    /* llhttp restarts an open span (a body) at data: it must never be NULL */
    if (!data) {
        data = empty;
        len = 0;
    }
    /* llhttp returns a sticky error again without moving error_pos: answer for it here */
    switch (llhttp_get_errno(&p->llhttp)) {
    case HPE_OK:
        break;
    case HPE_PAUSED:
        return HTTP_PAUSED;
    case HPE_PAUSED_UPGRADE:
        return HTTP_UPGRADE;
    default:
        return HTTP_ERROR;
    }
    for (;;) {
        err = llhttp_execute(&p->llhttp, data + done, len - done);
        if (err == HPE_OK) {
            *consumed = len;
            return HTTP_OK;
        }
        pos = llhttp_get_error_pos(&p->llhttp);
        done = pos >= data && pos <= data + len ? (size_t)(pos - data) : 0;
        *consumed = done;
        switch (err) {
        case HPE_PAUSED:
            return HTTP_PAUSED;
        case HPE_PAUSED_UPGRADE:
            if (p->field_state & FS_UPGRADE)
                return HTTP_UPGRADE;
            /* llhttp stopped after a message whose head did not ask to switch protocols: the
             * bytes that follow are still HTTP. */
            llhttp_resume_after_upgrade(&p->llhttp);
            continue;
        default:
            set_llhttp_error(p, err);
            return HTTP_ERROR;
        }
    }
}

void http_parser_resume(struct http_parser *p)
{
    llhttp_resume(&p->llhttp);
}

void http_parser_resume_after_upgrade(struct http_parser *p)
{
    p->field_state &= ~FS_UPGRADE;
    llhttp_resume_after_upgrade(&p->llhttp);
}

int http_parser_finish(struct http_parser *p)
{
    enum http_exec_status st = HTTP_OK;
    size_t consumed;
    llhttp_errno_t err;

    switch (llhttp_get_errno(&p->llhttp)) {
    case HPE_OK:
        break;
    case HPE_PAUSED:
        /* No more bytes will come, so a pause has nothing left to hold back. llhttp_finish does
         * nothing while paused, and steps that need no input (the rest of a paused head, say)
         * only run inside execute: resume and run them on zero bytes. */
        do {
            llhttp_resume(&p->llhttp);
            st = http_parser_execute(p, NULL, 0, &consumed);
        } while (st == HTTP_PAUSED);
        if (st == HTTP_ERROR)
            return -1;
        if (st == HTTP_UPGRADE)
            return 0;
        break;
    case HPE_PAUSED_UPGRADE:
        return 0; /* the message completed; what followed was not HTTP */
    default:
        return -1;
    }
    err = llhttp_finish(&p->llhttp);
    /* on_complete may ask to pause even here: the message is complete all the same */
    if (err == HPE_OK || err == HPE_PAUSED)
        return 0;
    if (p->error_status) /* a callback refused the message (llhttp has no name for that) */
        return -1;
    if (err == HPE_INVALID_EOF_STATE)
        fail(p, 400, "connection closed inside a message");
    else
        set_llhttp_error(p, err);
    return -1;
}

bool http_parser_keep_alive(const struct http_parser *p)
{
    return p->keep_alive;
}

bool http_parser_in_message(const struct http_parser *p)
{
    return (p->field_state & FS_IN_MESSAGE) != 0;
}

void http_head_free(struct http_head *h)
{
    free(h); /* the fields and strings live in the same allocation (see seal) */
}
