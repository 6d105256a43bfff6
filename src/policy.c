/* SPDX-License-Identifier: MIT */
/* policy: loads the network policy JSON, validates every field (collecting every error with its
 * JSON path, never stopping at the first), and builds an immutable snapshot: the endpoints in
 * declaration order, strings in a private arena, and a hash index keyed by exact host or
 * wildcard suffix. The decisions taken from it are in policy_decide.c. No cJSON tree outlives a
 * load; the only field ever written after a load is the atomic reference count. */
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
#include "airlock/jsonload.h"
#include "airlock/path.h"
#include "airlock/target.h"
#include "policy_internal.h"

#define NAME_MAX_LEN     64
#define MAX_FILE_SIZE    (16u << 20)
#define ARENA_BLOCK_SIZE (64u << 10)
/* Objects with more members than this are sorted to find duplicate keys. */
#define DUP_PAIRWISE_MAX 16

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

const struct slot *policy_find_slot(const struct policy *p, const char *key)
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
