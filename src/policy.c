/* SPDX-License-Identifier: MIT */
/* policy: loads the network policy JSON, validates every field (collecting every error with its
 * JSON path, never stopping at the first), and builds an immutable snapshot: the endpoints in
 * declaration order, strings in a private arena, and a hash index keyed by exact host or
 * wildcard suffix. No cJSON tree outlives a load; the only field ever written after a load is
 * the atomic reference count. */
#include "airlock/policy.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airlock/addr.h"
#include "airlock/json.h"
#include "airlock/jsonload.h"
#include "airlock/path.h"
#include "airlock/target.h"

#define NAME_MAX_LEN     64
#define MAX_FILE_SIZE    (16u << 20)
#define ARENA_BLOCK_SIZE (64u << 10)
/* Objects with more members than this are sorted to find duplicate keys. */
#define DUP_PAIRWISE_MAX 16

enum host_kind {
    HOST_EXACT,      /* "api.github.com", "127.0.0.1", "::1" */
    HOST_ONE_LABEL,  /* "*.example.com": host is the suffix "example.com" */
    HOST_ANY_LABELS, /* "**.example.com" */
};

enum access {
    ACCESS_NONE = 0, /* only rules allow */
    ACCESS_READ_ONLY,
    ACCESS_READ_WRITE,
    ACCESS_FULL,
};

struct rule {
    const char *method; /* NULL for "*" */
    const char *glob;
};

/* One "binaries" entry: an exact executable, or for a glob entry (a directory followed by a
 * '**' segment) that directory with its trailing '/'. */
struct binary {
    const char *path;
    size_t len;
    bool subtree;
};

struct endpoint {
    const char *policy_name;
    const char *host; /* exact host, or the suffix after a wildcard label */
    enum host_kind kind;
    enum policy_protocol protocol;
    enum access access;
    bool audit;
    /* "binaries_match": "exact": only a process's own executable counts, not its ancestors' */
    bool binaries_exact;
    bool has_binaries; /* the network policy names binaries */
    uint32_t index;    /* declaration order: earlier wins where an answer names one endpoint */
    size_t nports, nrules, ndeny, nips, nbinaries;
    const struct jsonload_range *ports;
    const struct rule *rules;
    const struct rule *deny;
    const struct addr_cidr *ips;
    const struct binary *binaries; /* shared by every endpoint of the network policy */
};

/* Hash slot: every endpoint whose host field equals key, as a run of p->order. */
struct slot {
    const char *key;
    uint32_t first, count;
};

struct block {
    struct block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

struct policy {
    atomic_uint refs;
    char *source;
    struct block *arena;
    struct endpoint *endpoints;
    size_t nendpoints;
    uint32_t *order;    /* endpoint indices sorted by (host, index) */
    struct slot *slots; /* open addressing, nslots a power of two, NULL key = empty */
    size_t nslots;
    bool uses_binaries;
};

/* Validation state: the JSON path and errors, and the snapshot being built. */
struct loader {
    struct jsonload j;
    struct policy *p;
    size_t next_endpoint;
};

/* ---- arena ---- */

static void *arena_alloc(struct loader *ld, size_t size)
{
    struct policy *p = ld->p;
    size_t align = alignof(max_align_t);
    size = (size + align - 1) & ~(align - 1);
    if (size == 0)
        size = align;

    struct block *b = p->arena;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > ARENA_BLOCK_SIZE ? size : ARENA_BLOCK_SIZE;
        b = calloc(1, sizeof(*b) + cap);
        if (!b) {
            ld->j.oom = true;
            return NULL;
        }
        b->cap = cap;
        b->next = p->arena;
        p->arena = b;
    }
    void *r = b->data + b->used;
    b->used += size;
    return r;
}

static char *arena_strndup(struct loader *ld, const char *s, size_t n)
{
    char *d = arena_alloc(ld, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void policy_free(struct policy *p)
{
    if (!p)
        return;
    struct block *b = p->arena;
    while (b) {
        struct block *next = b->next;
        free(b);
        b = next;
    }
    free(p->source);
    free(p);
}

/* ---- JSON helpers ---- */

static const char *json_type_name(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    return "invalid";
}

/* A string member that must be one of choices; returns its index, -1 when absent, -2 on error. */
static int json_choice(struct loader *ld, const cJSON *obj, const char *key,
                       const char *const *choices)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v)
        return -1;
    if (cJSON_IsString(v)) {
        for (int i = 0; choices[i]; i++) {
            if (strcmp(v->valuestring, choices[i]) == 0)
                return i;
        }
    }
    char list[128] = "", buf[JSONLOAD_SHOW_MAX];
    for (int i = 0; choices[i]; i++) {
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"", i ? " or " : "",
                 choices[i]);
    }
    if (cJSON_IsString(v))
        jsonload_fail_at(&ld->j, key, "\"%s\" must be %s", jsonload_show(buf, v->valuestring),
                         list);
    else
        jsonload_fail_at(&ld->j, key, "must be %s, not %s", list, json_type_name(v));
    return -2;
}

/* ---- hosts ---- */

/* The number of labels of a normalised DNS name. */
static size_t count_labels(const char *name)
{
    size_t n = 1;
    for (; *name; name++)
        n += *name == '.';
    return n;
}

static bool is_metadata_ip(const char *text, enum target_host_kind kind)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (kind == TARGET_IPV4) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        if (inet_pton(AF_INET, text, &sin->sin_addr) != 1)
            return false;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &sin6->sin6_addr) != 1)
            return false;
    }
    return addr_classify((const struct sockaddr *)&ss) == ADDR_METADATA;
}

static void load_host(struct loader *ld, const cJSON *obj, struct endpoint *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "host");
    char host[TARGET_HOST_MAX + 1], buf[JSONLOAD_SHOW_MAX];
    enum target_host_kind kind;

    if (!v) {
        jsonload_fail_at(&ld->j, "host", "required");
        return;
    }
    if (!cJSON_IsString(v) || v->valuestring[0] == '\0') {
        jsonload_fail_at(&ld->j, "host", "must be a non-empty string");
        return;
    }
    const char *text = v->valuestring;
    jsonload_show(buf, text);

    if (strchr(text, '*')) {
        if (strcmp(text, "*") == 0 || strcmp(text, "**") == 0 || strcmp(text, "*.") == 0) {
            jsonload_fail_at(&ld->j, "host", "bare wildcard \"%s\" would match every host", buf);
            return;
        }
        size_t stars = text[1] == '*' ? 2 : 1;
        if (text[0] != '*' || text[stars] != '.' || strchr(text + stars, '*')) {
            jsonload_fail_at(&ld->j, "host",
                             "\"%s\": a wildcard is allowed only as the whole first label "
                             "(\"*.example.com\" or \"**.example.com\")",
                             buf);
            return;
        }
        const char *suffix = text + stars + 1;
        if (target_normalise_host(suffix, strlen(suffix), false, host, &kind) < 0 ||
            kind != TARGET_DNS) {
            jsonload_fail_at(&ld->j, "host", "\"%s\": not a valid wildcard host name", buf);
            return;
        }
        if (count_labels(host) < 2) {
            jsonload_fail_at(&ld->j, "host", "wildcard \"%s\" covers a top-level domain", buf);
            return;
        }
        e->kind = stars == 1 ? HOST_ONE_LABEL : HOST_ANY_LABELS;
    } else {
        /* Spelled as target.h spells a request's host, so that a byte compare matches. */
        if (target_normalise_host(text, strlen(text), true, host, &kind) < 0) {
            jsonload_fail_at(&ld->j, "host", "\"%s\" is not a host name or IP address", buf);
            return;
        }
        if (kind == TARGET_DNS ? addr_is_metadata_name(host) : is_metadata_ip(host, kind)) {
            jsonload_fail_at(&ld->j, "host",
                             "\"%s\" is a cloud metadata service, which is refused always; "
                             "remove this endpoint",
                             buf);
            return;
        }
        e->kind = HOST_EXACT;
    }
    e->host = arena_strndup(ld, host, strlen(host));
}

/* ---- ports ---- */

static void load_ports(struct loader *ld, const cJSON *obj, struct endpoint *e)
{
    struct jsonload_range *ranges;
    size_t n = jsonload_ports(&ld->j, obj, &ranges);
    if (n == 0)
        return;
    struct jsonload_range *r = arena_alloc(ld, n * sizeof(*r));
    if (r)
        memcpy(r, ranges, n * sizeof(*r));
    free(ranges);
    e->ports = r;
    e->nports = n;
}

/* ---- rules ---- */

/* RFC 9110 §5.6.2 token characters. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static void check_method(struct loader *ld, const char *m)
{
    char buf[JSONLOAD_SHOW_MAX];
    if (strcmp(m, "*") == 0)
        return;
    bool lower = false;
    for (const char *c = m; *c; c++) {
        if (!is_tchar(*c) || *c == '*') {
            jsonload_fail_at(&ld->j, "method", "\"%s\" is not a method name (or \"*\" for any)",
                             jsonload_show(buf, m));
            return;
        }
        lower = lower || (*c >= 'a' && *c <= 'z');
    }
    if (*m == '\0') {
        jsonload_fail_at(&ld->j, "method", "must not be empty");
    } else if (lower) {
        /* Methods are case-sensitive (RFC 9110 §9.1): "delete" in a deny rule would not stop
         * DELETE, so a lower-case name is almost surely a typo that widens the policy. */
        jsonload_fail_at(&ld->j, "method",
                         "\"%s\": methods are case-sensitive; write them in upper case",
                         jsonload_show(buf, m));
    }
}

/* Explain why path_glob_valid refused a glob. */
static void fail_glob(struct loader *ld, const char *glob)
{
    char buf[JSONLOAD_SHOW_MAX], canon[PATH_MAX_LEN + 1], cbuf[JSONLOAD_SHOW_MAX];
    bool has_query = false;
    const char *dd = strstr(glob, "**");

    if (glob[0] != '/') {
        jsonload_fail_at(&ld->j, "path", "\"%s\" must start with '/'", jsonload_show(buf, glob));
        return;
    }
    for (; dd; dd = strstr(dd + 2, "**")) {
        if (dd[-1] != '/' || (dd[2] != '/' && dd[2] != '\0')) {
            jsonload_fail_at(&ld->j, "path", "\"%s\": '**' is allowed only as a whole segment",
                             jsonload_show(buf, glob));
            return;
        }
    }
    if (path_canonicalize(glob, strlen(glob), canon, sizeof(canon), NULL, 0, &has_query) ==
            PATH_OK &&
        !has_query) {
        jsonload_fail_at(&ld->j, "path",
                         "\"%s\" is not in canonical form, so it could never match; write \"%s\"",
                         jsonload_show(buf, glob), jsonload_show(cbuf, canon));
        return;
    }
    jsonload_fail_at(&ld->j, "path",
                     "\"%s\" is not a valid path glob (a query, '#', a space, a control "
                     "character, a backslash, an invalid or refused escape, or above the root)",
                     jsonload_show(buf, glob));
}

static const struct rule *load_rules(struct loader *ld, const cJSON *obj, const char *key,
                                     size_t *count)
{
    static const char *const keys[] = {"method", "path", NULL};
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
    *count = 0;
    if (!arr)
        return NULL;
    if (!cJSON_IsArray(arr)) {
        jsonload_fail_at(&ld->j, key, "must be an array of {\"method\": ..., \"path\": ...}");
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    struct rule *rules = arena_alloc(ld, n * sizeof(*rules));
    size_t old = jsonload_key(&ld->j, key), i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        size_t o = jsonload_index(&ld->j, i);
        struct rule r = {NULL, NULL};
        if (!cJSON_IsObject(c)) {
            jsonload_fail(&ld->j, "must be an object {\"method\": ..., \"path\": ...}");
            jsonload_pop(&ld->j, o);
            continue;
        }
        jsonload_check_keys(&ld->j, c, keys, DUP_PAIRWISE_MAX);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "method");
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "path");
        if (!m)
            jsonload_fail_at(&ld->j, "method", "required");
        else if (!cJSON_IsString(m))
            jsonload_fail_at(&ld->j, "method", "must be a string");
        else
            check_method(ld, m->valuestring);
        if (!p)
            jsonload_fail_at(&ld->j, "path", "required");
        else if (!cJSON_IsString(p))
            jsonload_fail_at(&ld->j, "path", "must be a string");
        else if (!path_glob_valid(p->valuestring))
            fail_glob(ld, p->valuestring);
        if (cJSON_IsString(m) && strcmp(m->valuestring, "*") != 0)
            r.method = arena_strndup(ld, m->valuestring, strlen(m->valuestring));
        if (cJSON_IsString(p))
            r.glob = arena_strndup(ld, p->valuestring, strlen(p->valuestring));
        if (rules)
            rules[i] = r;
        jsonload_pop(&ld->j, o);
    }
    jsonload_pop(&ld->j, old);
    *count = n;
    return rules;
}

static void load_ips(struct loader *ld, const cJSON *obj, struct endpoint *e)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, "allowed_ips");
    char buf[JSONLOAD_SHOW_MAX];
    if (!arr)
        return;
    if (!cJSON_IsArray(arr)) {
        jsonload_fail_at(&ld->j, "allowed_ips",
                         "must be an array of CIDR strings such as \"10.0.0.0/8\"");
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    struct addr_cidr *ips = arena_alloc(ld, n * sizeof(*ips));
    size_t old = jsonload_key(&ld->j, "allowed_ips"), i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        size_t o = jsonload_index(&ld->j, i);
        struct addr_cidr cidr;
        memset(&cidr, 0, sizeof(cidr));
        if (!cJSON_IsString(c))
            jsonload_fail(&ld->j, "must be a CIDR string such as \"10.0.0.0/8\"");
        else if (addr_cidr_parse(c->valuestring, &cidr) != 0)
            jsonload_fail(&ld->j, "\"%s\" is not an address or CIDR block (host bits must be zero)",
                          jsonload_show(buf, c->valuestring));
        else if (addr_cidr_is_metadata(&cidr))
            /* The guard refuses it whatever the policy says: an entry promising otherwise is a
             * mistake worth stopping at load. */
            jsonload_fail(&ld->j,
                          "\"%s\" is a cloud metadata address, which is refused always; "
                          "remove it",
                          jsonload_show(buf, c->valuestring));
        if (ips)
            ips[i] = cidr;
        jsonload_pop(&ld->j, o);
    }
    jsonload_pop(&ld->j, old);
    e->ips = ips;
    e->nips = n;
}

/* ---- endpoints, binaries, policies ---- */

/* "binaries_match": "ancestors" (the default: a process passes when it or an ancestor runs a
 * listed executable) or "exact" (only the process's own executable counts). It qualifies the
 * network policy's `binaries`, so it is an error where there are none. */
static void load_binaries_match(struct loader *ld, const cJSON *obj, struct endpoint *e)
{
    static const char *const modes[] = {"ancestors", "exact", NULL};
    int mode = json_choice(ld, obj, "binaries_match", modes);

    e->binaries_exact = mode == 1;
    if (mode >= 0 && !e->has_binaries)
        jsonload_fail_at(&ld->j, "binaries_match",
                         "applies to the network policy's \"binaries\", and it names none");
}

static void load_endpoint(struct loader *ld, const cJSON *obj, struct endpoint *e)
{
    static const char *const keys[] = {"host",        "port",           "ports", "protocol",
                                       "enforcement", "access",         "rules", "deny_rules",
                                       "allowed_ips", "binaries_match", NULL};
    static const char *const protocols[] = {"rest", "tcp", NULL};
    static const char *const enforcements[] = {"enforce", "audit", NULL};
    static const char *const accesses[] = {"read-only", "read-write", "full", NULL};

    if (!cJSON_IsObject(obj)) {
        jsonload_fail(&ld->j, "must be an object");
        return;
    }
    jsonload_check_keys(&ld->j, obj, keys, DUP_PAIRWISE_MAX);
    load_host(ld, obj, e);
    load_ports(ld, obj, e);

    int proto = json_choice(ld, obj, "protocol", protocols);
    int enf = json_choice(ld, obj, "enforcement", enforcements);
    int acc = json_choice(ld, obj, "access", accesses);
    e->protocol = proto == 1 ? POLICY_TCP : POLICY_REST;
    e->audit = enf == 1;
    e->access = acc == 0   ? ACCESS_READ_ONLY
                : acc == 1 ? ACCESS_READ_WRITE
                : acc == 2 ? ACCESS_FULL
                           : ACCESS_NONE;
    e->rules = load_rules(ld, obj, "rules", &e->nrules);
    e->deny = load_rules(ld, obj, "deny_rules", &e->ndeny);
    load_ips(ld, obj, e);
    load_binaries_match(ld, obj, e);

    if (e->protocol == POLICY_TCP) {
        /* A tcp endpoint is piped without parsing: HTTP rules there would be a promise the
         * proxy cannot keep. */
        static const char *const l7[] = {"access", "rules", "deny_rules"};
        for (size_t i = 0; i < 3; i++) {
            if (cJSON_GetObjectItemCaseSensitive(obj, l7[i]))
                jsonload_fail_at(&ld->j, l7[i],
                                 "a tcp endpoint is not parsed, so it takes no \"%s\"", l7[i]);
        }
        if (e->audit)
            jsonload_fail_at(&ld->j, "enforcement",
                             "audit applies to HTTP rules, which a tcp endpoint does not have");
    } else if (proto != -2 && acc == -1 && e->nrules == 0) {
        const cJSON *rules = cJSON_GetObjectItemCaseSensitive(obj, "rules");
        if (!rules || cJSON_IsArray(rules))
            jsonload_fail(&ld->j, "a rest endpoint needs \"access\" or \"rules\"");
    }
}

static bool has_dot_or_empty_segment(const char *p)
{
    for (const char *s = p + 1;; s++) {
        const char *end = strchr(s, '/');
        size_t n = end ? (size_t)(end - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return true;
        if (!end)
            return false;
        s = end;
    }
}

/* Exact entries and the directory of a glob entry are resolved with realpath, because
 * /proc/PID/exe names the resolved file ("/usr/bin/python3" is a symlink on most systems).
 * A path that does not exist here is kept as written. */
static void load_binary(struct loader *ld, const char *text, struct binary *b)
{
    char buf[JSONLOAD_SHOW_MAX], dir[PATH_MAX];
    size_t n = strlen(text);
    bool subtree = n >= 3 && strcmp(text + n - 3, "/**") == 0;
    size_t base = subtree ? n - 3 : n;

    if (text[0] != '/') {
        jsonload_fail(&ld->j, "\"%s\" must be an absolute path", jsonload_show(buf, text));
        return;
    }
    if (memchr(text, '*', base)) {
        jsonload_fail(&ld->j, "\"%s\": a wildcard is allowed only as a trailing \"/**\"",
                      jsonload_show(buf, text));
        return;
    }
    if (base >= sizeof(dir)) {
        jsonload_fail(&ld->j, "\"%s\" is too long", jsonload_show(buf, text));
        return;
    }
    memcpy(dir, text, base);
    dir[base] = '\0';
    if (base > 0 && has_dot_or_empty_segment(dir)) {
        jsonload_fail(&ld->j, "\"%s\" must not contain empty, \".\" or \"..\" segments",
                      jsonload_show(buf, text));
        return;
    }

    char *real = base ? realpath(dir, NULL) : NULL;
    const char *use = real ? real : dir;
    size_t ulen = strlen(use);
    if (subtree) {
        /* Stored with its trailing '/', so the glob for /opt/app never covers /opt/application. */
        char *s = arena_alloc(ld, ulen + 2);
        if (s) {
            memcpy(s, use, ulen);
            s[ulen] = '/';
            s[ulen + 1] = '\0';
            if (ulen == 1) /* the root itself: any absolute path */
                s[1] = '\0';
        }
        b->path = s;
        b->len = s ? strlen(s) : 0;
    } else {
        b->path = arena_strndup(ld, use, ulen);
        b->len = ulen;
    }
    b->subtree = subtree;
    free(real);
}

static const struct binary *load_binaries(struct loader *ld, const cJSON *obj, size_t *count)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, "binaries");
    *count = 0;
    if (!arr)
        return NULL;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        jsonload_fail_at(
            &ld->j, "binaries",
            "must be a non-empty array of absolute paths (omit it to allow any process)");
        return NULL;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    struct binary *bins = arena_alloc(ld, n * sizeof(*bins));
    size_t old = jsonload_key(&ld->j, "binaries"), i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        size_t o = jsonload_index(&ld->j, i);
        struct binary b = {NULL, 0, false};
        if (!cJSON_IsString(c))
            jsonload_fail(&ld->j, "must be a string");
        else
            load_binary(ld, c->valuestring, &b);
        if (bins)
            bins[i] = b;
        jsonload_pop(&ld->j, o);
    }
    jsonload_pop(&ld->j, old);
    *count = n;
    ld->p->uses_binaries = true;
    return bins;
}

static void load_network_policy(struct loader *ld, const cJSON *obj)
{
    static const char *const keys[] = {"endpoints", "binaries", NULL};
    const char *name = obj->string;

    size_t old = jsonload_key(&ld->j, name);
    if (!jsonload_is_word(name) || strlen(name) > NAME_MAX_LEN)
        jsonload_fail(&ld->j, "policy names are 1 to %d letters, digits, '_' or '-'", NAME_MAX_LEN);
    if (!cJSON_IsObject(obj)) {
        jsonload_fail(&ld->j, "must be an object with \"endpoints\"");
        jsonload_pop(&ld->j, old);
        return;
    }
    jsonload_check_keys(&ld->j, obj, keys, DUP_PAIRWISE_MAX);

    const char *stored = arena_strndup(ld, name, strlen(name));
    size_t nbins;
    const struct binary *bins = load_binaries(ld, obj, &nbins);
    bool has_binaries = cJSON_GetObjectItemCaseSensitive(obj, "binaries") != NULL;

    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(obj, "endpoints");
    if (!eps) {
        jsonload_fail_at(&ld->j, "endpoints", "required");
    } else if (!cJSON_IsArray(eps) || cJSON_GetArraySize(eps) == 0) {
        jsonload_fail_at(&ld->j, "endpoints", "must be a non-empty array of endpoint objects");
    } else {
        size_t o = jsonload_key(&ld->j, "endpoints"), i = 0;
        for (const cJSON *c = eps->child; c; c = c->next, i++) {
            size_t oi = jsonload_index(&ld->j, i);
            struct endpoint *e = &ld->p->endpoints[ld->next_endpoint];
            e->index = (uint32_t)ld->next_endpoint++;
            e->policy_name = stored;
            e->binaries = bins;
            e->nbinaries = nbins;
            e->has_binaries = has_binaries;
            load_endpoint(ld, c, e);
            jsonload_pop(&ld->j, oi);
        }
        jsonload_pop(&ld->j, o);
    }
    jsonload_pop(&ld->j, old);
}

/* ---- index ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

struct sort_key {
    const char *host;
    uint32_t index;
};

/* Ties broken by declaration order, so each slot's run is in declaration order too. */
static int cmp_sort_key(const void *a, const void *b)
{
    const struct sort_key *x = a, *y = b;
    int c = strcmp(x->host, y->host);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int build_index(struct loader *ld)
{
    struct policy *p = ld->p;
    size_t n = p->nendpoints;

    p->nslots = 8;
    while (p->nslots < 2 * n)
        p->nslots *= 2;
    p->slots = arena_alloc(ld, p->nslots * sizeof(*p->slots));
    p->order = arena_alloc(ld, (n ? n : 1) * sizeof(*p->order));
    if (!p->slots || !p->order)
        return -1;
    memset(p->slots, 0, p->nslots * sizeof(*p->slots));

    /* qsort has no context argument, so sort (host, index) pairs; a temporary array keeps
     * the comparator free of global state (two threads may load policies at once). */
    struct sort_key *keys = malloc((n ? n : 1) * sizeof(*keys));
    if (!keys)
        return -1;
    for (size_t i = 0; i < n; i++) {
        keys[i].host = p->endpoints[i].host;
        keys[i].index = (uint32_t)i;
    }
    qsort(keys, n, sizeof(*keys), cmp_sort_key);
    for (size_t i = 0; i < n; i++)
        p->order[i] = keys[i].index;
    free(keys);

    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        const char *key = p->endpoints[p->order[i]].host;
        while (j < n && strcmp(p->endpoints[p->order[j]].host, key) == 0)
            j++;
        size_t s = (size_t)hash_str(key) & (p->nslots - 1);
        while (p->slots[s].key)
            s = (s + 1) & (p->nslots - 1);
        p->slots[s].key = key;
        p->slots[s].first = (uint32_t)i;
        p->slots[s].count = (uint32_t)(j - i);
        i = j;
    }
    return 0;
}

static const struct slot *find_slot(const struct policy *p, const char *key)
{
    size_t s = (size_t)hash_str(key) & (p->nslots - 1);
    while (p->slots[s].key) {
        if (strcmp(p->slots[s].key, key) == 0)
            return &p->slots[s];
        s = (s + 1) & (p->nslots - 1);
    }
    return NULL;
}

/* ---- load ---- */

static void load_root(struct loader *ld, const cJSON *root)
{
    static const char *const keys[] = {"version", "network_policies", NULL};

    if (!cJSON_IsObject(root)) {
        jsonload_fail(&ld->j, "must be an object with \"version\" and \"network_policies\"");
        return;
    }
    jsonload_check_keys(&ld->j, root, keys, DUP_PAIRWISE_MAX);

    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    long v;
    if (!version)
        jsonload_fail_at(&ld->j, "version", "required (1)");
    else if (!jsonload_int(version, 1, 1, &v))
        jsonload_fail_at(&ld->j, "version", "unsupported; must be 1");

    const cJSON *np = cJSON_GetObjectItemCaseSensitive(root, "network_policies");
    if (!np) {
        jsonload_fail_at(&ld->j, "network_policies", "required");
        return;
    }
    if (!cJSON_IsObject(np)) {
        jsonload_fail_at(&ld->j, "network_policies", "must be an object keyed by policy name");
        return;
    }

    /* One array for every endpoint; counting first keeps the snapshot to a few allocations. */
    size_t total = 0;
    for (const cJSON *pol = np->child; pol; pol = pol->next) {
        const cJSON *eps = cJSON_GetObjectItemCaseSensitive(pol, "endpoints");
        if (cJSON_IsArray(eps))
            total += (size_t)cJSON_GetArraySize(eps);
    }
    if (total > UINT32_MAX / 2) {
        jsonload_fail_at(&ld->j, "network_policies", "too many endpoints");
        return;
    }
    ld->p->endpoints = arena_alloc(ld, (total ? total : 1) * sizeof(struct endpoint));
    if (!ld->p->endpoints)
        return;
    memset(ld->p->endpoints, 0, (total ? total : 1) * sizeof(struct endpoint));

    size_t old = jsonload_key(&ld->j, "network_policies");
    jsonload_check_keys(&ld->j, np, NULL, DUP_PAIRWISE_MAX);
    for (const cJSON *pol = np->child; pol; pol = pol->next)
        load_network_policy(ld, pol);
    jsonload_pop(&ld->j, old);
    ld->p->nendpoints = ld->next_endpoint;
}

static struct policy *finish(struct loader *ld, char **errors)
{
    if (jsonload_finish(&ld->j, errors))
        return ld->p;
    policy_free(ld->p);
    return NULL;
}

struct policy *policy_parse(const char *json, size_t len, char **errors)
{
    struct loader ld;
    memset(&ld, 0, sizeof(ld));
    if (!json) {
        json = "";
        len = 0;
    }
    jsonload_init(&ld.j, errors != NULL);
    if (errors)
        *errors = NULL;

    ld.p = calloc(1, sizeof(*ld.p));
    if (!ld.p) {
        ld.j.oom = true;
        return finish(&ld, errors);
    }
    atomic_init(&ld.p->refs, 1);
    ld.p->source = malloc(len + 1);
    if (!ld.p->source) {
        ld.j.oom = true;
        return finish(&ld, errors);
    }
    memcpy(ld.p->source, json, len);
    ld.p->source[len] = '\0';

    cJSON *root = jsonload_parse(&ld.j, ld.p->source, len);
    if (!root)
        return finish(&ld, errors);
    load_root(&ld, root);
    cJSON_Delete(root);
    if (ld.j.nerr == 0 && !ld.j.oom && build_index(&ld) != 0)
        ld.j.oom = true;
    return finish(&ld, errors);
}

struct policy *policy_load_file(const char *path, char **errors)
{
    size_t len;
    char *text = jsonload_read_file(path, MAX_FILE_SIZE, &len, errors);
    if (!text)
        return NULL;
    struct policy *p = policy_parse(text, len, errors);
    free(text);
    return p;
}

void policy_ref(struct policy *p)
{
    atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void policy_unref(struct policy *p)
{
    if (!p)
        return;
    /* Release so our reads of the snapshot happen before whoever frees it; the freeing thread
     * acquires to see everyone else's. */
    if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_release) == 1) {
        atomic_thread_fence(memory_order_acquire);
        policy_free(p);
    }
}

size_t policy_endpoint_count(const struct policy *p)
{
    return p->nendpoints;
}

const char *policy_source(const struct policy *p)
{
    return p->source;
}

bool policy_uses_binaries(const struct policy *p)
{
    return p->uses_binaries;
}

/* ---- decisions ---- */

static bool port_matches(const struct endpoint *e, uint16_t port)
{
    for (size_t i = 0; i < e->nports; i++) {
        if (port >= e->ports[i].lo && port <= e->ports[i].hi)
            return true;
    }
    return false;
}

static bool binary_listed(const struct endpoint *e, const char *exe)
{
    for (size_t i = 0; i < e->nbinaries; i++) {
        const struct binary *b = &e->binaries[i];
        if (b->subtree ? strncmp(exe, b->path, b->len) == 0 : strcmp(exe, b->path) == 0)
            return true;
    }
    return false;
}

/* One process runs one of the policy's executables (or, unless the endpoint is exact, descends
 * from one). */
static bool process_matches(const struct endpoint *e, const char *const *exes)
{
    for (const char *const *x = exes; *x; x++) {
        if (binary_listed(e, *x))
            return true;
        if (e->binaries_exact)
            break;
    }
    return false;
}

/* Every process holding the client's socket must match: any of them can write the bytes, so one
 * listed process must not lend its identity to another sharing its socket. An unknown peer
 * matches only when identity checking is off: failing closed is the point of naming binaries. */
static bool peer_matches(const struct endpoint *e, const struct policy_peer *peer)
{
    if (!e->has_binaries || (peer && peer->binary_identity_off))
        return true;
    if (!peer || peer->nprocs == 0)
        return false;
    for (size_t i = 0; i < peer->nprocs && i < POLICY_PEER_MAX; i++) {
        if (!peer->procs[i] || !process_matches(e, peer->procs[i]))
            return false;
    }
    return true;
}

typedef void (*visit_fn)(const struct endpoint *e, void *ctx);

/* Call fn for every endpoint whose host pattern matches host (already normalised), in no
 * particular order: the exact slot, then one slot per parent domain for wildcards. A name has
 * at most 127 labels, so this is a bounded number of hash probes whatever the policy size. */
static void for_each_host_match(const struct policy *p, const char *host, visit_fn fn, void *ctx)
{
    const struct slot *s = find_slot(p, host);
    for (uint32_t i = 0; s && i < s->count; i++) {
        const struct endpoint *e = &p->endpoints[p->order[s->first + i]];
        if (e->kind == HOST_EXACT)
            fn(e, ctx);
    }
    if (host[0] == '.')
        return;
    const char *first_dot = strchr(host, '.');
    for (const char *d = first_dot; d; d = strchr(d + 1, '.')) {
        if (d[1] == '\0' || d[-1] == '.')
            return;
        s = find_slot(p, d + 1);
        for (uint32_t i = 0; s && i < s->count; i++) {
            const struct endpoint *e = &p->endpoints[p->order[s->first + i]];
            if (e->kind == HOST_ANY_LABELS || (e->kind == HOST_ONE_LABEL && d == first_dot))
                fn(e, ctx);
        }
    }
}

/* Hosts should arrive normalised (target.h); normalise anyway, so a caller that forgot can
 * only be refused, never let through by a case mismatch. */
static bool normalise_query_host(const char *host, char out[TARGET_HOST_MAX + 1])
{
    enum target_host_kind kind;
    return host && target_normalise_host(host, strlen(host), false, out, &kind) == 0;
}

struct l4_ctx {
    uint16_t port;
    const struct policy_peer *peer;
    const struct endpoint *best;        /* lowest index matching host, port and peer */
    const struct endpoint *bin_refused; /* lowest index matching host and port only */
};

static void visit_l4(const struct endpoint *e, void *arg)
{
    struct l4_ctx *c = arg;
    if (!port_matches(e, c->port))
        return;
    if (!peer_matches(e, c->peer)) {
        if (!c->bin_refused || e->index < c->bin_refused->index)
            c->bin_refused = e;
        return;
    }
    if (!c->best || e->index < c->best->index)
        c->best = e;
}

void policy_check_l4(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, struct policy_l4 *out)
{
    char h[TARGET_HOST_MAX + 1];
    struct l4_ctx c = {port, peer, NULL, NULL};

    if (normalise_query_host(host, h))
        for_each_host_match(p, h, visit_l4, &c);
    memset(out, 0, sizeof(*out));
    if (c.best) {
        out->verdict = POLICY_ALLOW;
        out->protocol = c.best->protocol;
        out->policy_name = c.best->policy_name;
    } else if (c.bin_refused) {
        out->verdict = POLICY_DENY;
        out->policy_name = c.bin_refused->policy_name;
        out->reason = "binary not allowed";
    } else {
        out->verdict = POLICY_DENY;
        out->reason = "no endpoint matches host and port";
    }
}

static bool method_in(const char *m, const char *const *set)
{
    for (; *set; set++) {
        if (strcmp(m, *set) == 0)
            return true;
    }
    return false;
}

static bool access_allows(enum access a, const char *method)
{
    static const char *const ro[] = {"GET", "HEAD", "OPTIONS", NULL};
    static const char *const rw[] = {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", NULL};
    switch (a) {
    case ACCESS_FULL:
        return true;
    case ACCESS_READ_WRITE:
        return method_in(method, rw);
    case ACCESS_READ_ONLY:
        return method_in(method, ro);
    case ACCESS_NONE:
        break;
    }
    return false;
}

/* One request as the L7 decision sees it. */
struct l7_request {
    const char *method;
    const char *path;     /* canonical */
    const char *path_alt; /* path with one trailing slash added or removed; NULL for "/" */
};

/* Allow rules are exact: method, case and trailing slash as written. */
static bool allow_rule_matches(const struct rule *r, const struct l7_request *q)
{
    return (!r->method || strcmp(r->method, q->method) == 0) && path_glob_match(r->glob, q->path);
}

/* Deny rules fail closed where upstreams are lenient. Most frameworks route "/a" and "/a/" to
 * one handler, many servers (IIS, Windows and macOS file systems, case-folding routers) treat
 * "/ADMIN" as "/admin", and HEAD is answered by the GET handler (RFC 9110 §9.3.2): a deny
 * rule that missed any of these would be a bypass. */
static bool deny_rule_matches(const struct rule *r, const struct l7_request *q)
{
    if (r->method && strcmp(r->method, q->method) != 0 &&
        !(strcmp(r->method, "GET") == 0 && strcmp(q->method, "HEAD") == 0))
        return false;
    return path_glob_match_nocase(r->glob, q->path) ||
           (q->path_alt && path_glob_match_nocase(r->glob, q->path_alt));
}

/* NULL when e allows the request, else the static reason it refuses, and *deny the deny rule
 * that refused (NULL when the preset and rules did). Deny rules first: they win over the
 * preset and every allow rule. */
static const char *endpoint_refusal(const struct endpoint *e, const struct l7_request *q,
                                    const struct rule **deny)
{
    *deny = NULL;
    for (size_t i = 0; i < e->ndeny; i++) {
        if (deny_rule_matches(&e->deny[i], q)) {
            *deny = &e->deny[i];
            return "matched deny rule";
        }
    }
    if (access_allows(e->access, q->method))
        return NULL;
    for (size_t i = 0; i < e->nrules; i++) {
        if (allow_rule_matches(&e->rules[i], q))
            return NULL;
    }
    switch (e->access) {
    case ACCESS_READ_ONLY:
        return "method not allowed by access read-only";
    case ACCESS_READ_WRITE:
        return "method not allowed by access read-write";
    default:
        return "no rule allows method and path";
    }
}

/* One endpoint's refusal: the endpoint, its static reason, and the deny rule that refused
 * (NULL when its preset and rules did). */
struct refusal {
    const struct endpoint *e;
    const char *reason;
    const struct rule *deny;
};

struct l7_ctx {
    uint16_t port;
    const struct policy_peer *peer;
    const struct sockaddr *private_addr;
    struct l7_request q;
    const struct endpoint *allow; /* lowest index that allows */
    struct refusal audit;         /* lowest index in audit mode that refuses */
    struct refusal deny;          /* highest index refusing by preset or rules ("last denied") */
    struct refusal deny_by_rule;  /* highest index refusing by a deny rule */
    const struct endpoint *bin_refused;
    const struct endpoint *ip_refused; /* lowest index whose allowed_ips miss private_addr */
};

static bool ips_cover(const struct endpoint *e, const struct sockaddr *sa)
{
    for (size_t i = 0; i < e->nips; i++) {
        if (addr_cidr_contains(&e->ips[i], sa))
            return true;
    }
    return false;
}

static void visit_l7(const struct endpoint *e, void *arg)
{
    struct l7_ctx *c = arg;
    if (e->protocol != POLICY_REST || !port_matches(e, c->port))
        return;
    if (!peer_matches(e, c->peer)) {
        if (!c->bin_refused || e->index < c->bin_refused->index)
            c->bin_refused = e;
        return;
    }
    /* allowed_ips opened this connection's address for the endpoints that list it: any other
     * endpoint never agreed to that traffic, so it neither allows nor audits it. */
    if (c->private_addr && !ips_cover(e, c->private_addr)) {
        if (!c->ip_refused || e->index < c->ip_refused->index)
            c->ip_refused = e;
        return;
    }
    /* Once something allows, only an earlier allowing endpoint can change the answer. */
    if (c->allow && e->index > c->allow->index)
        return;
    struct refusal r = {e, NULL, NULL};
    r.reason = endpoint_refusal(e, &c->q, &r.deny);
    if (!r.reason) {
        c->allow = e;
    } else if (e->audit) {
        if (!c->audit.e || e->index < c->audit.e->index)
            c->audit = r;
    } else {
        /* Kept apart: an allow rule can fix a refusal by preset or rules, never one by a deny
         * rule, and the answer should name one that can be fixed when there is one. */
        struct refusal *slot = r.deny ? &c->deny_by_rule : &c->deny;
        if (!slot->e || e->index > slot->e->index)
            *slot = r;
    }
}

static bool append_raw(char *out, size_t cap, size_t *w, const char *s)
{
    size_t n = strlen(s);
    if (*w + n >= cap)
        return false;
    memcpy(out + *w, s, n + 1);
    *w += n;
    return true;
}

static bool format_rule(char *out, size_t cap, const char *method, const char *path, size_t plen,
                        bool globstar)
{
    size_t w = 0;
    return append_raw(out, cap, &w, "{\"method\":\"") &&
           json_escape_buf(out, cap, &w, method, strlen(method)) &&
           append_raw(out, cap, &w, "\",\"path\":\"") &&
           json_escape_buf(out, cap, &w, path, plen) &&
           (!globstar || append_raw(out, cap, &w, "/**")) && append_raw(out, cap, &w, "\"}");
}

/* The rule an operator could add to allow this request. When the path is too long for the
 * buffer, a shorter prefix with a trailing globstar still allows it, so suggest that. */
static void rule_missing(char *out, size_t cap, const char *method, const char *path)
{
    size_t plen = strlen(path);
    if (format_rule(out, cap, method, path, plen, false))
        return;
    while (plen > 0) {
        while (plen > 0 && path[plen - 1] != '/')
            plen--;
        if (plen > 0)
            plen--; /* the '/' too: the globstar suffix brings its own */
        if (format_rule(out, cap, method, path, plen, true))
            return;
    }
    if (!format_rule(out, cap, "*", "", 0, true))
        out[0] = '\0';
}

/* The path with one trailing slash removed or added, written to buf, for deny rules. *alt is
 * NULL for "/" and for a path that does not start with '/' (no glob matches those). Returns
 * false when the path is too long to fit buf: the caller must refuse, not skip the check. */
static bool toggle_trailing_slash(const char *path, char *buf, size_t cap, const char **alt)
{
    size_t n = strlen(path);
    *alt = NULL;
    if (path[0] != '/' || n == 1)
        return true;
    if (n + 2 > cap)
        return false;
    memcpy(buf, path, n);
    if (path[n - 1] == '/')
        n--;
    else
        buf[n++] = '/';
    buf[n] = '\0';
    *alt = buf;
    return true;
}

/* The answer from one refusal; rule_missing only when an allow rule could fix it. */
static void report_refusal(const struct refusal *r, const struct l7_request *q,
                           struct policy_l7 *out)
{
    out->policy_name = r->e->policy_name;
    out->reason = r->reason;
    if (r->deny) {
        out->deny_rule.method = r->deny->method ? r->deny->method : "*";
        out->deny_rule.path = r->deny->glob;
    } else {
        rule_missing(out->rule_missing, sizeof(out->rule_missing), q->method,
                     q->path[0] == '/' ? q->path : "/");
    }
}

void policy_check_l7(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, const struct sockaddr *private_addr,
                     const char *method, const char *path, struct policy_l7 *out)
{
    char h[TARGET_HOST_MAX + 1], alt[PATH_MAX_LEN + 2];
    struct l7_ctx c;
    memset(&c, 0, sizeof(c));
    c.port = port;
    c.peer = peer;
    c.private_addr = private_addr;
    c.q.method = method ? method : "";
    c.q.path = path ? path : "";

    bool checkable = toggle_trailing_slash(c.q.path, alt, sizeof(alt), &c.q.path_alt);
    if (checkable && normalise_query_host(host, h))
        for_each_host_match(p, h, visit_l7, &c);
    memset(out, 0, sizeof(*out));
    if (c.allow) {
        out->verdict = POLICY_ALLOW;
        out->policy_name = c.allow->policy_name;
        return;
    }
    if (c.audit.e) {
        out->verdict = POLICY_AUDIT;
        report_refusal(&c.audit, &c.q, out);
        return;
    }
    out->verdict = POLICY_DENY;
    if (c.deny.e || c.deny_by_rule.e) {
        report_refusal(c.deny.e ? &c.deny : &c.deny_by_rule, &c.q, out);
        return;
    }
    /* From here on no endpoint judged the method and path, so no allow rule can help: no
     * rule_missing. */
    if (c.ip_refused) {
        out->policy_name = c.ip_refused->policy_name;
        out->reason = "connected address not in allowed_ips";
    } else if (c.bin_refused) {
        out->policy_name = c.bin_refused->policy_name;
        out->reason = "binary not allowed";
    } else if (!checkable) {
        /* Longer than any canonical path (relay answers 414 first): no deny rule can be
         * checked against it, so nothing may allow it. */
        out->reason = "path too long";
    } else {
        out->reason = "no endpoint matches host and port";
    }
}

struct ip_ctx {
    uint16_t port;
    const struct policy_peer *peer;
    enum policy_protocol protocol;
    const struct sockaddr *sa;
    bool allowed;
};

/* Only endpoints that take part in this peer's L4 decision lend their allowed_ips: one for
 * another binary, or for the protocol L4 did not choose, allows none of this traffic, so it
 * must not open an address for it either. */
static void visit_ip(const struct endpoint *e, void *arg)
{
    struct ip_ctx *c = arg;
    if (c->allowed || e->protocol != c->protocol || !port_matches(e, c->port) ||
        !peer_matches(e, c->peer))
        return;
    c->allowed = ips_cover(e, c->sa);
}

bool policy_ip_allowed(const struct policy *p, const char *host, uint16_t port,
                       const struct policy_peer *peer, const struct sockaddr *sa)
{
    char h[TARGET_HOST_MAX + 1];
    if (!sa || !normalise_query_host(host, h))
        return false;
    struct l4_ctx l4 = {port, peer, NULL, NULL};
    for_each_host_match(p, h, visit_l4, &l4);
    if (!l4.best)
        return false;
    struct ip_ctx c = {port, peer, l4.best->protocol, sa, false};
    for_each_host_match(p, h, visit_ip, &c);
    return c.allowed;
}
