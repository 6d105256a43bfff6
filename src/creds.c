/* SPDX-License-Identifier: MIT */
/* creds: loads the providers file into an immutable, refcounted snapshot (docs/providers.md),
 * validates every field, and answers what the snapshot holds. The secrets themselves are read
 * by creds_secret.c and the placeholders in requests rewritten by creds_match.c (responses are
 * redacted by redact.c, fed from there). Error text names JSON paths, variables and files,
 * never a secret nor a placeholder value. */
#include "airlock/creds.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airlock/jsonload.h"
#include "airlock/target.h"
#include "creds_internal.h"

#define PLACEHOLDER_MIN 16
#define NAME_MAX_LEN    64
#define MAX_FILE_SIZE   (16u << 20)

/* Validation state: the JSON path and errors, and the snapshot being built. */
struct loader {
    struct jsonload j;
    struct creds *c;
};

/* ---- snapshot lifetime ---- */

static void provider_deinit(struct creds_provider *p)
{
    free(p->name);
    free(p->placeholder);
    free(p->env_var);
    for (size_t i = 0; i < p->nendpoints; i++) {
        free(p->endpoints[i].host);
        free(p->endpoints[i].ports);
    }
    free(p->endpoints);
    free(p->inject_header);
    free(p->inject_format);
    for (size_t i = 0; i < p->nplaces; i++)
        free(p->places[i].name);
    free(p->places);
    creds_vault_free(&p->vault);
}

static void creds_free(struct creds *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->count; i++)
        provider_deinit(&c->providers[i]);
    free(c->providers);
    free(c);
}

void creds_ref(struct creds *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void creds_unref(struct creds *c)
{
    if (!c)
        return;
    /* Release so this thread's reads happen before the free; the freeing thread acquires. */
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_release) == 1) {
        atomic_thread_fence(memory_order_acquire);
        creds_free(c);
    }
}

static char *dup_str(struct loader *ld, const char *s)
{
    char *d = strdup(s);
    if (!d)
        ld->j.oom = true;
    return d;
}

static const cJSON *member(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* ---- placeholder ---- */

/* The KMP failure function lets the percent-decoding matcher run in one pass: it cannot back up
 * in its input, because a decoded byte may have come from three input bytes. */
static void kmp_init(struct creds_provider *p)
{
    const char *ph = p->placeholder;
    size_t k = 0;
    p->kmp[0] = 0;
    for (size_t i = 1; i < p->placeholder_len; i++) {
        while (k > 0 && ph[i] != ph[k])
            k = p->kmp[k - 1];
        if (ph[i] == ph[k])
            k++;
        p->kmp[i] = (uint8_t)k;
    }
}

/* Placeholder text is never quoted back: an operator who pasted the real token into this field
 * must not find it in a log or in `airlock check` output. */
static void load_placeholder(struct loader *ld, const cJSON *obj, struct creds_provider *p)
{
    const cJSON *v = member(obj, "placeholder");
    if (!v) {
        jsonload_fail_at(&ld->j, "placeholder", "required");
        return;
    }
    if (!cJSON_IsString(v)) {
        jsonload_fail_at(&ld->j, "placeholder", "must be a string");
        return;
    }
    size_t n = strlen(v->valuestring);
    if (n < PLACEHOLDER_MIN) {
        jsonload_fail_at(
            &ld->j, "placeholder",
            "is %zu characters long; at least %d are needed so that it cannot occur by "
            "chance",
            n, PLACEHOLDER_MIN);
        return;
    }
    if (n > PLACEHOLDER_MAX) {
        jsonload_fail_at(&ld->j, "placeholder", "is %zu characters long; at most %d are allowed", n,
                         PLACEHOLDER_MAX);
        return;
    }
    /* Only characters that survive every encoding a client may apply (URL, header, base64
     * payload) unchanged, so that a decoded comparison is always byte for byte. */
    if (!jsonload_is_word(v->valuestring)) {
        jsonload_fail_at(&ld->j, "placeholder", "may contain only letters, digits, '_' and '-'");
        return;
    }
    p->placeholder = dup_str(ld, v->valuestring);
    if (p->placeholder) {
        p->placeholder_len = n;
        kmp_init(p);
    }
}

/* Two providers must not share a placeholder, nor may one contain the other: the request would
 * name both, and substituting the shorter one would corrupt the longer. */
static void check_placeholders(struct loader *ld)
{
    const struct creds *c = ld->c;
    for (size_t j = 1; j < c->count; j++) {
        const struct creds_provider *b = &c->providers[j];
        if (!b->placeholder)
            continue;
        for (size_t i = 0; i < j; i++) {
            const struct creds_provider *a = &c->providers[i];
            char buf[JSONLOAD_SHOW_MAX];
            if (!a->placeholder || !a->name)
                continue;
            const char *why = NULL;
            if (strcmp(a->placeholder, b->placeholder) == 0)
                why = "is shared with provider";
            else if (strstr(a->placeholder, b->placeholder) ||
                     strstr(b->placeholder, a->placeholder))
                why = "overlaps (one contains the other) the placeholder of provider";
            if (why) {
                size_t old = jsonload_key(&ld->j, "providers");
                jsonload_key(&ld->j, b->name ? b->name : "");
                jsonload_fail_at(&ld->j, "placeholder", "%s \"%s\"", why,
                                 jsonload_show(buf, a->name));
                jsonload_pop(&ld->j, old);
                break;
            }
        }
    }
}

/* ---- endpoints ---- */

static void load_host(struct loader *ld, const cJSON *obj, struct endpoint *e)
{
    const cJSON *v = member(obj, "host");
    char host[TARGET_HOST_MAX + 1], buf[JSONLOAD_SHOW_MAX];
    enum target_host_kind kind;

    if (!v) {
        jsonload_fail_at(&ld->j, "host", "required");
        return;
    }
    if (!cJSON_IsString(v) || !*v->valuestring) {
        jsonload_fail_at(&ld->j, "host", "must be a non-empty string");
        return;
    }
    /* A secret goes to hosts its owner named one by one: a wildcard would hand it to any name
     * under a domain, including ones a third party can register or take over. */
    if (strchr(v->valuestring, '*')) {
        jsonload_fail_at(&ld->j, "host", "wildcard hosts are not allowed for credentials");
        return;
    }
    /* Spelled as target.h spells a request's host, so that creds_binds compares bytes. */
    if (target_normalise_host(v->valuestring, strlen(v->valuestring), true, host, &kind) < 0) {
        jsonload_fail_at(&ld->j, "host", "\"%s\" is not a host name or IP address",
                         jsonload_show(buf, v->valuestring));
        return;
    }
    e->host = dup_str(ld, host);
}

static void load_endpoints(struct loader *ld, const cJSON *obj, struct creds_provider *p)
{
    static const char *const keys[] = {"host", "port", "ports", NULL};
    const cJSON *v = member(obj, "endpoints");
    if (!v) {
        jsonload_fail_at(&ld->j, "endpoints", "required");
        return;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
        jsonload_fail_at(&ld->j, "endpoints",
                         "must be a non-empty array of {\"host\", \"port\" or \"ports\"}");
        return;
    }
    size_t count = (size_t)cJSON_GetArraySize(v);
    p->endpoints = calloc(count, sizeof(*p->endpoints));
    if (!p->endpoints) {
        ld->j.oom = true;
        return;
    }
    p->nendpoints = count;
    size_t old = jsonload_key(&ld->j, "endpoints");
    size_t i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        size_t o = jsonload_index(&ld->j, i);
        if (!cJSON_IsObject(c)) {
            jsonload_fail(&ld->j, "must be an object with \"host\" and \"port\" or \"ports\"");
        } else {
            jsonload_check_keys(&ld->j, c, keys, DUP_PAIRWISE_MAX);
            load_host(ld, c, &p->endpoints[i]);
            struct endpoint *e = &p->endpoints[i];
            e->nports = jsonload_ports(&ld->j, c, &e->ports);
        }
        jsonload_pop(&ld->j, o);
    }
    jsonload_pop(&ld->j, old);
}

/* ---- inject ---- */

/* RFC 9110 §5.6.2 token characters. */
static bool is_tchar(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool ascii_caseeq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
        char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b + 32) : *b;
        if (x != y)
            return false;
    }
    return *a == *b;
}

/* Fields that frame the message or belong to one hop (RFC 9110 §7.6.1): the relay rewrites or
 * drops them, so injecting a secret there would either break framing or never arrive. */
static bool is_reserved_field(const char *name)
{
    static const char *const reserved[] = {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "upgrade",
        NULL,
    };
    for (const char *const *r = reserved; *r; r++) {
        if (ascii_caseeq(name, *r))
            return true;
    }
    return false;
}

static void load_inject(struct loader *ld, const cJSON *obj, struct creds_provider *p)
{
    static const char *const keys[] = {"header", "format", NULL};
    const cJSON *v = member(obj, "inject");
    char buf[JSONLOAD_SHOW_MAX];
    if (!v)
        return;
    size_t old = jsonload_key(&ld->j, "inject");
    if (!cJSON_IsObject(v)) {
        jsonload_fail(&ld->j, "must be an object with \"header\" and optionally \"format\"");
        goto out;
    }
    jsonload_check_keys(&ld->j, v, keys, DUP_PAIRWISE_MAX);

    const cJSON *h = member(v, "header");
    if (!h) {
        jsonload_fail_at(&ld->j, "header", "required");
    } else if (!cJSON_IsString(h) || !*h->valuestring) {
        jsonload_fail_at(&ld->j, "header", "must be a header field name");
    } else {
        bool token = true;
        for (const char *ch = h->valuestring; *ch; ch++)
            token = token && is_tchar(*ch);
        if (!token)
            jsonload_fail_at(&ld->j, "header", "\"%s\" is not a header field name",
                             jsonload_show(buf, h->valuestring));
        else if (is_reserved_field(h->valuestring))
            jsonload_fail_at(&ld->j, "header",
                             "\"%s\" frames the message or is hop-by-hop; it cannot be set",
                             jsonload_show(buf, h->valuestring));
        else
            p->inject_header = dup_str(ld, h->valuestring);
    }

    const cJSON *f = member(v, "format");
    if (!f) {
        p->inject_format = dup_str(ld, SECRET_TOKEN);
    } else if (!cJSON_IsString(f)) {
        jsonload_fail_at(&ld->j, "format", "must be a string containing \"" SECRET_TOKEN "\"");
    } else if (!strstr(f->valuestring, SECRET_TOKEN)) {
        jsonload_fail_at(&ld->j, "format", "must contain \"" SECRET_TOKEN "\"");
    } else {
        bool ctl = false;
        for (const char *ch = f->valuestring; *ch; ch++)
            ctl = ctl || ((unsigned char)*ch < 0x20 && *ch != '\t') || *ch == 0x7f;
        /* The format becomes a header value: CR or LF in it would inject whole fields. */
        if (ctl)
            jsonload_fail_at(&ld->j, "format", "must not contain control characters");
        else
            p->inject_format = dup_str(ld, f->valuestring);
    }
out:
    jsonload_pop(&ld->j, old);
}

/* ---- substitute_in ---- */

#define PLACES_EXPECTED "\"header:NAME\", \"header:*\", \"query:NAME\", \"query:*\" or \"path\""

/* A query parameter name as the operator writes it: compared with the client's name after
 * percent-decoding, so it holds no character that delimits or encodes a query. */
static bool is_query_name(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch >= 0x7f || strchr("&=#%+?", ch))
            return false;
    }
    return true;
}

static void load_place(struct loader *ld, const cJSON *v, struct place *pl)
{
    char buf[JSONLOAD_SHOW_MAX];
    if (!cJSON_IsString(v)) {
        jsonload_fail(&ld->j, "must be a string: " PLACES_EXPECTED);
        return;
    }
    const char *s = v->valuestring, *name = NULL;
    if (strcmp(s, "path") == 0) {
        pl->kind = PLACE_PATH;
        return;
    }
    if (strcmp(s, "body") == 0) {
        jsonload_fail(&ld->j, "placeholders are never substituted in a request body (it is "
                              "streamed as sent): list " PLACES_EXPECTED);
        return;
    }
    if (strncmp(s, "header:", 7) == 0) {
        pl->kind = PLACE_HEADER;
        name = s + 7;
    } else if (strncmp(s, "query:", 6) == 0) {
        pl->kind = PLACE_QUERY;
        name = s + 6;
    } else {
        jsonload_fail(&ld->j, "\"%s\" is not one of " PLACES_EXPECTED, jsonload_show(buf, s));
        return;
    }
    if (strcmp(name, "*") == 0)
        return;
    bool ok = *name != '\0';
    if (pl->kind == PLACE_HEADER) {
        for (const char *ch = name; *ch; ch++)
            ok = ok && is_tchar(*ch);
        if (!ok)
            jsonload_fail(&ld->j, "\"%s\" is not a header field name", jsonload_show(buf, name));
        else if (is_reserved_field(name))
            jsonload_fail(&ld->j,
                          "\"%s\" frames the message or is hop-by-hop; no placeholder is "
                          "substituted there",
                          jsonload_show(buf, name));
    } else if (!ok || !is_query_name(name)) {
        jsonload_fail(&ld->j,
                      "\"%s\" is not a query parameter name (printable, without "
                      "spaces or &=#%%+?)",
                      jsonload_show(buf, name));
        ok = false;
    }
    if (ok)
        pl->name = dup_str(ld, name);
}

static void load_substitute_in(struct loader *ld, const cJSON *obj, struct creds_provider *p)
{
    const cJSON *v = member(obj, "substitute_in");
    if (!v)
        return;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0) {
        jsonload_fail_at(&ld->j, "substitute_in", "must be a non-empty array of " PLACES_EXPECTED);
        return;
    }
    size_t count = (size_t)cJSON_GetArraySize(v);
    p->places = calloc(count, sizeof *p->places);
    if (!p->places) {
        ld->j.oom = true;
        return;
    }
    p->nplaces = count;
    size_t old = jsonload_key(&ld->j, "substitute_in"), i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        size_t o = jsonload_index(&ld->j, i);
        load_place(ld, c, &p->places[i]);
        jsonload_pop(&ld->j, o);
    }
    jsonload_pop(&ld->j, old);
}

/* ---- load ---- */

/* "anthropic" -> "ANTHROPIC_TOKEN", "my-api" -> "MY_API_TOKEN". */
static char *derive_env_var(struct loader *ld, const char *name)
{
    size_t n = strlen(name);
    char *v = malloc(n + sizeof("_TOKEN"));
    if (!v) {
        ld->j.oom = true;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 32);
        else if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
            ch = '_';
        v[i] = ch;
    }
    memcpy(v + n, "_TOKEN", sizeof("_TOKEN"));
    return v;
}

static void load_provider(struct loader *ld, const cJSON *obj, struct creds_provider *p)
{
    static const char *const keys[] = {"placeholder", "secret",        "endpoints",
                                       "inject",      "substitute_in", NULL};
    size_t old = jsonload_key(&ld->j, obj->string);

    /* Names reach logs and environment variable names: keep them plain. */
    if (!jsonload_is_word(obj->string) || strlen(obj->string) > NAME_MAX_LEN)
        jsonload_fail(&ld->j, "provider names are 1 to %d letters, digits, '_' or '-'",
                      NAME_MAX_LEN);
    p->name = dup_str(ld, obj->string);
    if (!cJSON_IsObject(obj)) {
        jsonload_fail(&ld->j,
                      "must be an object with \"placeholder\", \"secret\" and \"endpoints\"");
        goto out;
    }
    jsonload_check_keys(&ld->j, obj, keys, DUP_PAIRWISE_MAX);
    load_placeholder(ld, obj, p);
    load_endpoints(ld, obj, p);
    load_inject(ld, obj, p);
    load_substitute_in(ld, obj, p);
    /* Loaded even when the rest has errors, so that one `airlock check` reports a missing
     * variable or an unreadable file together with everything else. */
    creds_load_secret(&ld->j, obj, p);
    if (!p->env_var && p->name)
        p->env_var = derive_env_var(ld, p->name);
out:
    jsonload_pop(&ld->j, old);
}

static void load_root(struct loader *ld, const cJSON *root)
{
    static const char *const keys[] = {"version", "providers", NULL};
    long version;

    if (!cJSON_IsObject(root)) {
        jsonload_fail(&ld->j, "must be an object with \"version\" and \"providers\"");
        return;
    }
    jsonload_check_keys(&ld->j, root, keys, DUP_PAIRWISE_MAX);
    const cJSON *v = member(root, "version");
    if (!v)
        jsonload_fail_at(&ld->j, "version", "required (1)");
    else if (!jsonload_int(v, 1, 1, &version))
        jsonload_fail_at(&ld->j, "version", "unsupported; must be 1");

    const cJSON *providers = member(root, "providers");
    if (!providers) {
        jsonload_fail_at(&ld->j, "providers", "required");
        return;
    }
    if (!cJSON_IsObject(providers)) {
        jsonload_fail_at(&ld->j, "providers", "must be an object keyed by provider name");
        return;
    }
    size_t count = (size_t)cJSON_GetArraySize(providers);
    ld->c->providers = calloc(count ? count : 1, sizeof(*ld->c->providers));
    if (!ld->c->providers) {
        ld->j.oom = true;
        return;
    }
    size_t old = jsonload_key(&ld->j, "providers");
    jsonload_check_keys(&ld->j, providers, NULL, DUP_PAIRWISE_MAX);
    for (const cJSON *c = providers->child; c; c = c->next)
        load_provider(ld, c, &ld->c->providers[ld->c->count++]);
    jsonload_pop(&ld->j, old);
    check_placeholders(ld);
}

static struct creds *finish(struct loader *ld, char **errors)
{
    if (jsonload_finish(&ld->j, errors))
        return ld->c;
    creds_free(ld->c);
    return NULL;
}

struct creds *creds_parse(const char *json, size_t len, char **errors)
{
    struct loader ld;
    memset(&ld, 0, sizeof(ld));
    jsonload_init(&ld.j, errors != NULL);
    if (errors)
        *errors = NULL;
    if (!json) {
        json = "";
        len = 0;
    }
    ld.c = calloc(1, sizeof(*ld.c));
    if (!ld.c) {
        ld.j.oom = true;
        return finish(&ld, errors);
    }
    atomic_init(&ld.c->refs, 1);

    /* cJSON wants the text NUL-terminated to refuse trailing garbage, and ours may not be. */
    char *text = malloc(len + 1);
    if (!text) {
        ld.j.oom = true;
        return finish(&ld, errors);
    }
    memcpy(text, json, len);
    text[len] = '\0';
    cJSON *root = jsonload_parse(&ld.j, text, len);
    free(text);
    if (!root)
        return finish(&ld, errors);
    load_root(&ld, root);
    cJSON_Delete(root);
    return finish(&ld, errors);
}

struct creds *creds_load_file(const char *path, char **errors)
{
    size_t len;
    char *text = jsonload_read_file(path, MAX_FILE_SIZE, &len, errors);
    if (!text)
        return NULL;
    struct creds *c = creds_parse(text, len, errors);
    free(text);
    return c;
}

/* ---- accessors ---- */

size_t creds_count(const struct creds *c)
{
    return c->count;
}

const struct creds_provider *creds_at(const struct creds *c, size_t i)
{
    return i < c->count ? &c->providers[i] : NULL;
}

const char *creds_provider_name(const struct creds_provider *p)
{
    return p->name;
}

const char *creds_placeholder(const struct creds_provider *p)
{
    return p->placeholder;
}

const char *creds_env_var(const struct creds_provider *p)
{
    return p->env_var;
}

const char *creds_inject_header(const struct creds_provider *p)
{
    return p->inject_header;
}

bool creds_binds(const struct creds_provider *p, const char *host, uint16_t port)
{
    char norm[TARGET_HOST_MAX + 1];
    enum target_host_kind kind;
    /* brackets: "[::1]" names ::1 here, as it does in the providers file */
    if (!host || target_normalise_host(host, strlen(host), true, norm, &kind) < 0)
        return false;
    for (size_t i = 0; i < p->nendpoints; i++) {
        const struct endpoint *e = &p->endpoints[i];
        if (strcmp(e->host, norm) != 0)
            continue;
        for (size_t j = 0; j < e->nports; j++) {
            if (port >= e->ports[j].lo && port <= e->ports[j].hi)
                return true;
        }
    }
    return false;
}
