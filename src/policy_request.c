/* SPDX-License-Identifier: MIT */
/* policy_request: what of an HTTP request the L7 decision judges besides its method and path:
 * the method overrides it carries (policy.h). Pure, and allocates nothing: overrides are
 * copied, upper-cased, into the caller's struct policy_request. Any value that is not plainly
 * one method is refused rather than guessed at, since the upstream may read it either way. */
#include "airlock/policy.h"

#include <string.h>
#include <strings.h>

#include "airlock/path.h"

void policy_request_init(struct policy_request *q, const char *method, const char *path,
                         bool upgrade)
{
    /* The override slots are written only as they are filled. */
    q->noverrides = 0;
    q->method = method;
    q->path = path;
    q->upgrade = upgrade;
}

/* RFC 9110 §5.6.2 token characters. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static char ascii_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - ('a' - 'A')) : c;
}

/* Records one override value. Frameworks upper-case what they read (Symfony, Express), and
 * policies name methods in upper case, so the upper-cased value is judged: it is refused at
 * least wherever the value as sent would be. */
static int add_override(struct policy_request *q, const char *v, size_t len)
{
    char m[POLICY_METHOD_MAX];

    if (len == 0 || len >= sizeof(m))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_tchar(v[i]))
            return -1;
        m[i] = ascii_upper(v[i]);
    }
    m[len] = '\0';
    for (size_t i = 0; i < q->noverrides; i++) {
        if (strcmp(q->overrides[i], m) == 0)
            return 0;
    }
    if (q->noverrides == POLICY_OVERRIDE_MAX)
        return -1;
    memcpy(q->overrides[q->noverrides++], m, len + 1);
    return 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int policy_request_add_field(struct policy_request *q, const char *name, size_t name_len,
                             const char *value, size_t value_len)
{
    static const char *const names[] = {"x-http-method-override", "x-http-method",
                                        "x-method-override"};
    bool override = false;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && !override; i++)
        override = strlen(names[i]) == name_len && strncasecmp(name, names[i], name_len) == 0;
    if (!override)
        return 0;
    /* A list (RFC 9110 §5.6.1): a server may take any element, so every one is judged. */
    const char *p = value, *end = value + value_len;
    for (;;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        const char *s = p;
        while (s < e && is_ows(*s))
            s++;
        while (e > s && is_ows(e[-1]))
            e--;
        if (add_override(q, s, (size_t)(e - s)) < 0)
            return -1;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static int hex_value(char c)
{
    return path_hex_value((unsigned char)c);
}

/* The next form-decoded byte of [*p, end), which is not empty: '+' is a space and %XX its
 * byte; an invalid escape stays as written, as PHP and Node leave it. */
static char form_next(const char **p, const char *end)
{
    const char *s = *p;

    if (*s == '%' && end - s >= 3 && hex_value(s[1]) >= 0 && hex_value(s[2]) >= 0) {
        *p = s + 3;
        return (char)(hex_value(s[1]) << 4 | hex_value(s[2]));
    }
    *p = s + 1;
    return *s == '+' ? ' ' : *s;
}

/* true when a parameter name [p, end) is read as "_method" (in any letter case): PHP drops
 * leading spaces, reads ' ' and '.' as '_', and makes "_method[...]" an array of it. */
static bool is_method_param(const char *p, const char *end)
{
    static const char want[] = "_method";
    size_t i = 0;
    bool leading = true;

    while (p < end) {
        char c = form_next(&p, end);
        if (leading && c == ' ')
            continue;
        leading = false;
        if (c == '[' || c == '\0')
            break;
        if (c == ' ' || c == '.')
            c = '_';
        if (i == sizeof(want) - 1 || ascii_upper(c) != ascii_upper(want[i]))
            return false;
        i++;
    }
    return i == sizeof(want) - 1;
}

/* One _method value [p, end), decoded, as an override. */
static int add_query_override(struct policy_request *q, const char *p, const char *end)
{
    char v[POLICY_METHOD_MAX];
    size_t n = 0;

    while (p < end) {
        if (n == sizeof(v))
            return -1; /* longer than any method */
        v[n++] = form_next(&p, end);
    }
    return add_override(q, v, n);
}

int policy_request_add_query(struct policy_request *q, const char *query)
{
    if (query == NULL)
        return 0;
    for (const char *p = query; *p;) {
        const char *end = p + strcspn(p, "&;");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (is_method_param(p, eq ? eq : end) && add_query_override(q, eq ? eq + 1 : end, end) < 0)
            return -1;
        p = *end ? end + 1 : end;
    }
    return 0;
}
