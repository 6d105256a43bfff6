/* SPDX-License-Identifier: MIT */
/* creds: loads the providers file into an immutable, refcounted snapshot and performs every
 * placeholder rewrite in requests (responses are redacted by redact.c, fed from here). Owns the
 * secrets: each lives in its own anonymous mapping that is excluded from core dumps (and locked
 * when the limit allows) and is wiped before it is unmapped; scratch buffers that held secret bytes
 * are wiped before they are freed. Error text names JSON paths, variables and files, never a secret
 * nor a placeholder value. */
#include "airlock/creds.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "airlock/jsonload.h"
#include "airlock/redact.h"
#include "airlock/target.h"

extern char **environ;

#define PLACEHOLDER_MIN 16
#define PLACEHOLDER_MAX 128
#define SECRET_MAX      (64u << 10)
#define NAME_MAX_LEN    64
#define MAX_FILE_SIZE   (16u << 20)
#define SECRET_TOKEN    "{secret}"
#define NO_MATCH        SIZE_MAX
/* Every object is sorted to find duplicate keys, however small. */
#define DUP_PAIRWISE_MAX 1

struct endpoint {
    char *host; /* normalised: lower case, no trailing dot, IPv6 without brackets */
    struct jsonload_range *ports;
    size_t nports;
};

/* One entry of "substitute_in": where a placeholder of the provider may stand. */
enum place_kind { PLACE_HEADER, PLACE_QUERY, PLACE_PATH };
struct place {
    enum place_kind kind;
    char *name; /* header field or query parameter; NULL for "*" (and for the path) */
};

/* Whole anonymous pages that hold secret bytes and nothing else. */
struct vault {
    char *base;
    size_t size;
};

struct creds_provider {
    char *name;
    char *placeholder;
    size_t placeholder_len;
    uint8_t kmp[PLACEHOLDER_MAX]; /* kmp[i]: longest proper border of placeholder[0..i] */
    char *env_var;
    struct endpoint *endpoints;
    size_t nendpoints;
    char *inject_header; /* NULL without "inject" */
    char *inject_format;
    struct vault vault;
    const char *secret; /* in vault, NUL-terminated */
    size_t secret_len;
    const char *secret_pct; /* in vault: the secret percent-encoded, NUL-terminated */
    size_t secret_pct_len;
    struct place *places; /* substitute_in; none: a placeholder may stand anywhere */
    size_t nplaces;
};

struct creds {
    atomic_uint refs;
    size_t count;
    struct creds_provider *providers;
};

/* Validation state: the JSON path and errors, and the snapshot being built. */
struct loader {
    struct jsonload j;
    struct creds *c;
};

/* ---- secret memory ---- */

static int vault_alloc(struct vault *v, size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t ps = page > 0 ? (size_t)page : 4096;
    size_t size = len ? (len + ps - 1) / ps * ps : ps;

    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    /* A crashing daemon must not write its secrets into a core file that ends up in a bug
     * report, and the heap cannot be marked per allocation: hence pages of their own. */
    if (madvise(p, size, MADV_DONTDUMP) != 0) {
        int err = -errno;
        munmap(p, size);
        return err;
    }
    /* Keep them out of swap as well when RLIMIT_MEMLOCK allows; unprivileged daemons often get
     * only a few pages, and a secret in swap is a lesser risk than refusing to start. */
    (void)mlock(p, size);
    v->base = p;
    v->size = size;
    return 0;
}

static void vault_free(struct vault *v)
{
    if (!v->base)
        return;
    OPENSSL_cleanse(v->base, v->size);
    munmap(v->base, v->size);
    v->base = NULL;
    v->size = 0;
}

/* Wipe and free a scratch block that may have held secret bytes. */
static void scratch_free(void *p, size_t len)
{
    if (!p)
        return;
    OPENSSL_cleanse(p, len);
    free(p);
}

/* Append to a buffer that may hold secret bytes: flagged first, so that it grows by copy and
 * wipe and is wiped when freed (http.h). */
static void sappend(struct http_buf *b, const char *p, size_t n)
{
    b->wipe = true;
    http_buf_append(b, p, n);
}

void creds_buf_wipe(struct http_buf *b)
{
    b->wipe = true;
    http_buf_free(b);
}

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
    vault_free(&p->vault);
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

/* ---- secret ---- */

static bool is_unreserved(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* RFC 3986 §2.3: everything but unreserved characters is escaped, so the secret reads back
 * as itself from a path segment and from a query value alike ('&', '=', '+', '/' included). */
static size_t pct_encode(const char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (is_unreserved(ch)) {
            if (out)
                out[w] = (char)ch;
            w++;
        } else {
            if (out) {
                out[w] = '%';
                out[w + 1] = hex[ch >> 4];
                out[w + 2] = hex[ch & 15];
            }
            w += 3;
        }
    }
    return w;
}

/* Check the secret and move it into the provider's vault with its percent-encoded form. origin
 * names where it came from for the error text ("environment variable X"). */
static void set_secret(struct loader *ld, struct creds_provider *p, const char *s, size_t len,
                       const char *origin)
{
    if (len == 0) {
        jsonload_fail(&ld->j, "%s is empty", origin);
        return;
    }
    if (len > SECRET_MAX) {
        jsonload_fail(&ld->j, "%s is longer than %u bytes", origin, SECRET_MAX);
        return;
    }
    /* The secret goes into header values and request lines: CR or LF would split them (request
     * smuggling), and NUL truncates it for any C consumer. */
    if (memchr(s, '\r', len) || memchr(s, '\n', len) || memchr(s, '\0', len)) {
        jsonload_fail(&ld->j, "%s contains CR, LF or NUL, which no header value may carry", origin);
        return;
    }
    size_t pct_len = pct_encode(s, len, NULL);
    int err = vault_alloc(&p->vault, len + 1 + pct_len + 1);
    if (err) {
        jsonload_fail(&ld->j, "cannot allocate memory excluded from core dumps for %s: %s", origin,
                      strerror(-err));
        return;
    }
    char *base = p->vault.base;
    memcpy(base, s, len);
    base[len] = '\0';
    pct_encode(s, len, base + len + 1);
    base[len + 1 + pct_len] = '\0';
    p->secret = base;
    p->secret_len = len;
    p->secret_pct = base + len + 1;
    p->secret_pct_len = pct_len;
}

/* Secrets read from environment variables, by name, for the life of the process. The variable
 * is scrubbed from the environment as soon as it is read (so /proc/PID/environ, a child process
 * or a crash report never shows it), which leaves this copy as the only one a reload can find.
 * Loads run on the main thread, but the lock keeps that an assumption nobody has to check. */
struct env_secret {
    struct env_secret *next;
    char *name;
    struct vault vault;
    size_t len;
};
static struct env_secret *env_secrets;
static pthread_mutex_t env_lock = PTHREAD_MUTEX_INITIALIZER;

/* Overwrite the value bytes of every environ entry NAME=..., then drop the variable. unsetenv
 * alone only unlinks the pointer: the bytes stay in the block the kernel shows as
 * /proc/PID/environ (or in the heap string setenv made). */
static void scrub_env(const char *name)
{
    size_t n = strlen(name);
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            OPENSSL_cleanse(*e + n + 1, strlen(*e + n + 1));
    }
    unsetenv(name);
}

/* The value of name: the environment's, which is then captured and scrubbed, or the one
 * captured when the variable was first read. Copies it into v (a fresh vault); -ENOENT when
 * the variable was never set, another -errno on failure. */
static int take_env_secret(const char *name, struct vault *v, size_t *len)
{
    int err = 0;
    pthread_mutex_lock(&env_lock);
    struct env_secret *e = env_secrets;
    while (e && strcmp(e->name, name) != 0)
        e = e->next;
    const char *value = getenv(name);
    if (value) {
        if (!e) {
            e = calloc(1, sizeof *e);
            if (e && !(e->name = strdup(name))) {
                free(e);
                e = NULL;
            }
            if (!e) {
                err = -ENOMEM;
                goto out;
            }
            e->next = env_secrets;
            env_secrets = e;
        }
        vault_free(&e->vault);
        e->len = strlen(value);
        if ((err = vault_alloc(&e->vault, e->len)) != 0) {
            e->len = 0;
            goto out;
        }
        memcpy(e->vault.base, value, e->len);
        scrub_env(name);
    }
    if (!e || !e->vault.base) {
        err = -ENOENT;
        goto out;
    }
    if ((err = vault_alloc(v, e->len)) == 0) {
        memcpy(v->base, e->vault.base, e->len);
        *len = e->len;
    }
out:
    pthread_mutex_unlock(&env_lock);
    return err;
}

static void secret_from_env(struct loader *ld, const cJSON *v, struct creds_provider *p)
{
    char buf[JSONLOAD_SHOW_MAX], origin[JSONLOAD_SHOW_MAX + 32];
    if (!cJSON_IsString(v) || !*v->valuestring || strchr(v->valuestring, '=')) {
        jsonload_fail_at(&ld->j, "env", "must be the name of an environment variable");
        return;
    }
    const char *name = v->valuestring;
    p->env_var = dup_str(ld, name);
    snprintf(origin, sizeof(origin), "environment variable %s", jsonload_show(buf, name));
    struct vault tmp = {NULL, 0};
    size_t len = 0;
    int err = take_env_secret(name, &tmp, &len);
    if (err == -ENOENT)
        jsonload_fail(&ld->j, "%s is not set", origin);
    else if (err)
        jsonload_fail(&ld->j, "cannot keep %s: %s", origin, strerror(-err));
    else
        set_secret(ld, p, tmp.base, len, origin);
    vault_free(&tmp);
}

static void secret_from_file(struct loader *ld, const cJSON *v, struct creds_provider *p)
{
    char buf[JSONLOAD_SHOW_MAX], origin[JSONLOAD_SHOW_MAX + 32];
    struct vault tmp = {NULL, 0};
    const char *why = NULL;
    ssize_t n = 0;
    struct stat st;

    if (!cJSON_IsString(v) || !*v->valuestring) {
        jsonload_fail_at(&ld->j, "file", "must be a non-empty path");
        return;
    }
    const char *path = v->valuestring;
    snprintf(origin, sizeof(origin), "file \"%s\"", jsonload_show(buf, path));

    /* Plain read(2) into pages of our own: stdio would keep a copy in its heap buffer. One byte
     * more than the limit is read to tell a file at the limit from a longer one. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    int err;
    if (fd < 0) {
        why = strerror(errno);
    } else if (fstat(fd, &st) != 0) {
        why = strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        why = "not a regular file";
    } else if ((err = vault_alloc(&tmp, SECRET_MAX + 1)) != 0) {
        why = strerror(-err);
    } else if ((n = jsonload_read_fd(fd, tmp.base, SECRET_MAX + 1)) < 0) {
        why = strerror((int)-n);
    }
    if (fd >= 0)
        close(fd);
    if (why) {
        jsonload_fail(&ld->j, "%s: cannot read: %s", origin, why);
    } else {
        /* Files written by echo or an editor end with a newline that is not part of the
         * secret: drop exactly one; anything else is refused by set_secret. */
        size_t len = (size_t)n;
        if (len && tmp.base[len - 1] == '\n') {
            len--;
            if (len && tmp.base[len - 1] == '\r')
                len--;
        }
        set_secret(ld, p, tmp.base, len, origin);
    }
    vault_free(&tmp);
}

static void load_secret(struct loader *ld, const cJSON *obj, struct creds_provider *p)
{
    static const char *const keys[] = {"env", "file", NULL};
    const cJSON *v = member(obj, "secret");
    if (!v) {
        jsonload_fail_at(&ld->j, "secret", "required: {\"env\": NAME} or {\"file\": PATH}");
        return;
    }
    size_t old = jsonload_key(&ld->j, "secret");
    /* Not quoted back: a literal string here is most likely the secret itself. */
    if (!cJSON_IsObject(v)) {
        jsonload_fail(&ld->j,
                      "must be {\"env\": NAME} or {\"file\": PATH}, never the secret itself");
        jsonload_pop(&ld->j, old);
        return;
    }
    jsonload_check_keys(&ld->j, v, keys, DUP_PAIRWISE_MAX);
    const cJSON *env = member(v, "env");
    const cJSON *file = member(v, "file");
    if (env && file)
        jsonload_fail(&ld->j, "give \"env\" or \"file\", not both");
    else if (!env && !file)
        jsonload_fail(&ld->j, "needs \"env\" or \"file\"");
    else if (env)
        secret_from_env(ld, env, p);
    else
        secret_from_file(ld, file, p);
    jsonload_pop(&ld->j, old);
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
    load_secret(ld, obj, p);
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

/* ---- placeholder matching ---- */

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* One token of percent-encoded text (RFC 3986 §2.1): "%XY" (either case) is one byte, anything
 * else is itself. '%' is never a hex digit, so token boundaries do not depend on where a scan
 * starts, as long as it does not start inside an escape. Returns the token's length. */
static size_t next_token(const char *s, size_t len, size_t i, unsigned char *out)
{
    if (s[i] == '%' && len - i >= 3) {
        int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
        if (hi >= 0 && lo >= 0) {
            *out = (unsigned char)(hi << 4 | lo);
            return 3;
        }
    }
    *out = (unsigned char)s[i];
    return 1;
}

struct match {
    size_t start, end; /* byte offsets, end exclusive; start NO_MATCH when there is none */
};

/* The first occurrence at or after from of the placeholder in the decoded token stream (raw
 * bytes, escapes, or any mix). KMP over tokens, with a ring of the last n token offsets to find
 * where the match began: one pass, O(len). */
static void find_decoded(const struct creds_provider *p, const char *s, size_t len, size_t from,
                         struct match *m)
{
    size_t ring[PLACEHOLDER_MAX];
    size_t n = p->placeholder_len, q = 0, r = 0;
    const unsigned char *ph = (const unsigned char *)p->placeholder;

    for (size_t i = from; i < len;) {
        unsigned char ch;
        ring[r] = i;
        r = r + 1 == n ? 0 : r + 1;
        i += next_token(s, len, i, &ch);
        while (q > 0 && ph[q] != ch)
            q = p->kmp[q - 1];
        if (ph[q] == ch)
            q++;
        if (q == n) {
            /* The ring is full and r is its oldest slot: the match's first token. */
            m->start = ring[r];
            m->end = i;
            return;
        }
    }
    m->start = m->end = NO_MATCH;
}

static void find_raw(const char *s, size_t len, size_t from, const char *needle, size_t n,
                     struct match *m)
{
    const char *hit = len > from ? memmem(s + from, len - from, needle, n) : NULL;
    if (hit) {
        m->start = (size_t)(hit - s);
        m->end = m->start + n;
    } else {
        m->start = m->end = NO_MATCH;
    }
}

/* Walks the occurrences of a placeholder: raw ones (memmem, which also finds one that begins
 * inside an escape such as "%4AIRLOCK...": a header value is never percent-decoded) and
 * decoded ones. Each search's next hit is kept while it still lies ahead, so a text is scanned
 * about once by each search however many occurrences it holds. */
struct scan {
    const struct creds_provider *p;
    const char *s;
    size_t len;
    struct match raw, dec;
    bool raw_known, dec_known;
};

static bool scan_next(struct scan *sc, size_t pos, struct match *m)
{
    if (!sc->raw_known || (sc->raw.start != NO_MATCH && sc->raw.start < pos)) {
        find_raw(sc->s, sc->len, pos, sc->p->placeholder, sc->p->placeholder_len, &sc->raw);
        sc->raw_known = true;
    }
    if (!sc->dec_known || (sc->dec.start != NO_MATCH && sc->dec.start < pos)) {
        find_decoded(sc->p, sc->s, sc->len, pos, &sc->dec);
        sc->dec_known = true;
    }
    /* At an equal start both are the same bytes: a raw occurrence has no '%' to decode. */
    *m = sc->raw.start <= sc->dec.start ? sc->raw : sc->dec;
    return m->start != NO_MATCH;
}

/* Standard base64 (RFC 4648 §4) with optional padding, as clients build Basic credentials.
 * Returns a malloc'd, NUL-terminated buffer (wipe it with scratch_free) or NULL. */
static char *b64_decode(const char *in, size_t n, size_t *out_len)
{
    size_t data = n;
    while (data > 0 && in[data - 1] == '=')
        data--;
    for (size_t i = 0; i < data; i++) {
        char ch = in[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '/'))
            return NULL;
    }
    size_t padded = (data + 3) / 4 * 4;
    if (data == 0 || data % 4 == 1 || (n != data && n != padded) || padded > INT_MAX / 2)
        return NULL;
    size_t pad = padded - data;

    /* EVP_DecodeBlock wants whole quads and counts padding as output bytes. */
    char *quads = malloc(padded);
    char *out = malloc(padded / 4 * 3 + 1);
    int got = -1;
    if (quads && out) {
        memcpy(quads, in, data);
        memset(quads + data, '=', pad);
        got = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)quads, (int)padded);
    }
    scratch_free(quads, padded);
    if (got < (int)pad) {
        scratch_free(out, padded / 4 * 3 + 1);
        return NULL;
    }
    *out_len = (size_t)got - pad;
    out[*out_len] = '\0';
    return out;
}

static bool is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* "Basic <token68>" (RFC 7617 §2; the scheme is case-insensitive, RFC 9110 §11.1): the offset
 * and length of the base64. */
static bool basic_split(const char *s, size_t len, size_t *b64, size_t *b64_len)
{
    static const char scheme[] = "basic";
    size_t i = 0, end = len;
    while (i < len && is_ows(s[i]))
        i++;
    if (len - i < sizeof(scheme))
        return false;
    for (size_t k = 0; k < sizeof(scheme) - 1; k++) {
        char ch = s[i + k];
        if ((ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch) != scheme[k])
            return false;
    }
    i += sizeof(scheme) - 1;
    if (!is_ows(s[i]))
        return false;
    while (i < len && is_ows(s[i]))
        i++;
    while (end > i && is_ows(s[end - 1]))
        end--;
    if (end == i)
        return false;
    *b64 = i;
    *b64_len = end - i;
    return true;
}

/* The decoded user-pass of a Basic value, or NULL. Wipe it with scratch_free(d, *len + 1). */
static char *basic_decode(const char *s, size_t len, size_t *b64, size_t *b64_len, size_t *dlen)
{
    if (!basic_split(s, len, b64, b64_len))
        return NULL;
    return b64_decode(s + *b64, *b64_len, dlen);
}

bool creds_appears(const struct creds_provider *p, const char *s, size_t len)
{
    struct match m;
    size_t b64, b64_len, dlen;

    if (!s || len == 0)
        return false;
    find_raw(s, len, 0, p->placeholder, p->placeholder_len, &m);
    if (m.start != NO_MATCH)
        return true;
    find_decoded(p, s, len, 0, &m);
    if (m.start != NO_MATCH)
        return true;
    /* A user-pass is compared raw: RFC 7617 has no percent-decoding of it, so a server sees
     * exactly the decoded bytes. */
    char *d = basic_decode(s, len, &b64, &b64_len, &dlen);
    bool found = d && memmem(d, dlen, p->placeholder, p->placeholder_len);
    scratch_free(d, d ? dlen + 1 : 0);
    return found;
}

/* ---- substitution ---- */

void creds_substitute(const struct creds_provider *p, const char *s, size_t len,
                      enum creds_mode mode, struct http_buf *out)
{
    struct scan sc = {p, s, len, {0, 0}, {0, 0}, false, false};
    struct match m;
    size_t pos = 0;

    if (!s || len == 0)
        return;
    while (scan_next(&sc, pos, &m)) {
        sappend(out, s + pos, m.start - pos);
        if (mode == CREDS_SECRET)
            sappend(out, p->secret, p->secret_len);
        else if (mode == CREDS_SECRET_PCT)
            sappend(out, p->secret_pct, p->secret_pct_len);
        else
            sappend(out, CREDS_REDACTED, sizeof(CREDS_REDACTED) - 1);
        pos = m.end;
    }
    sappend(out, s + pos, len - pos);
}

/* Append s with every raw occurrence of needle replaced by with. */
static void replace_raw(const char *s, size_t len, const char *needle, size_t n, const char *with,
                        size_t with_len, struct http_buf *out)
{
    struct match m;
    size_t pos = 0;
    for (find_raw(s, len, 0, needle, n, &m); m.start != NO_MATCH;
         find_raw(s, len, pos, needle, n, &m)) {
        sappend(out, s + pos, m.start - pos);
        sappend(out, with, with_len);
        pos = m.end;
    }
    sappend(out, s + pos, len - pos);
}

void creds_substitute_header(const struct creds_provider *p, const char *value, size_t len,
                             struct http_buf *out)
{
    size_t b64, b64_len, dlen;
    char *d = value && len ? basic_decode(value, len, &b64, &b64_len, &dlen) : NULL;

    /* When the decoded user-pass names no placeholder (say the token itself happens to be
     * valid base64), the value is plain text like any other scheme's. */
    if (!d || !memmem(d, dlen, p->placeholder, p->placeholder_len)) {
        scratch_free(d, d ? dlen + 1 : 0);
        creds_substitute(p, value, len, CREDS_SECRET, out);
        return;
    }
    struct http_buf plain = {0};
    replace_raw(d, dlen, p->placeholder, p->placeholder_len, p->secret, p->secret_len, &plain);
    scratch_free(d, dlen + 1);

    size_t enc_cap = plain.len / 3 * 4 + 5;
    char *enc = plain.failed || plain.len > INT_MAX / 2 ? NULL : malloc(enc_cap);
    if (!enc) {
        out->failed = true;
    } else {
        int n = EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)plain.data,
                                (int)plain.len);
        sappend(out, value, b64);
        sappend(out, enc, (size_t)n);
        sappend(out, value + b64 + b64_len, len - b64 - b64_len);
    }
    scratch_free(enc, enc_cap);
    creds_buf_wipe(&plain);
}

void creds_inject_value(const struct creds_provider *p, struct http_buf *out)
{
    const char *f = p->inject_format ? p->inject_format : SECRET_TOKEN;
    const char *hit;
    while ((hit = strstr(f, SECRET_TOKEN)) != NULL) {
        sappend(out, f, (size_t)(hit - f));
        sappend(out, p->secret, p->secret_len);
        f = hit + sizeof(SECRET_TOKEN) - 1;
    }
    sappend(out, f, strlen(f));
}

/* ---- substitute_in ---- */

/* true when the client's text (percent-encoded, as sent) decodes to name. */
static bool pct_equals(const char *s, size_t len, const char *name)
{
    size_t i = 0;
    for (; i < len && *name; name++) {
        unsigned char ch;
        i += next_token(s, len, i, &ch);
        if (ch != (unsigned char)*name)
            return false;
    }
    return i == len && *name == '\0';
}

static bool allows(const struct creds_provider *p, enum place_kind kind, const char *name,
                   size_t name_len)
{
    for (size_t i = 0; i < p->nplaces; i++) {
        const struct place *pl = &p->places[i];
        if (pl->kind != kind)
            continue;
        if (kind == PLACE_PATH || !pl->name)
            return true;
        if (kind == PLACE_HEADER && strlen(pl->name) == name_len &&
            strncasecmp(pl->name, name, name_len) == 0)
            return true;
        if (kind == PLACE_QUERY && pct_equals(name, name_len, pl->name))
            return true;
    }
    return false;
}

/* The query (after '?'), parameter by parameter. A placeholder never spans a '&' or '=': its
 * characters are letters, digits, '_' and '-', and a decoded "%26" is none of them. */
static const char *misplaced_in_query(const struct creds_provider *p, const char *q, size_t len)
{
    for (size_t pos = 0; pos <= len;) {
        const char *amp = memchr(q + pos, '&', len - pos);
        size_t end = amp ? (size_t)(amp - q) : len;
        const char *param = q + pos;
        size_t plen = end - pos;
        const char *eq = memchr(param, '=', plen);
        size_t nlen = eq ? (size_t)(eq - param) : plen;
        if (creds_appears(p, param, nlen))
            return "a query parameter name";
        if (eq && creds_appears(p, eq + 1, plen - nlen - 1) && !allows(p, PLACE_QUERY, param, nlen))
            return "a query parameter that substitute_in does not list";
        pos = end + 1;
    }
    return NULL;
}

const char *creds_misplaced(const struct creds_provider *p, const struct http_head *h)
{
    if (p->nplaces == 0)
        return NULL;
    const char *q = memchr(h->target, '?', h->target_len);
    size_t path_len = q ? (size_t)(q - h->target) : h->target_len;
    if (creds_appears(p, h->target, path_len) && !allows(p, PLACE_PATH, NULL, 0))
        return "the path";
    const char *why = q ? misplaced_in_query(p, q + 1, h->target_len - path_len - 1) : NULL;
    if (why)
        return why;
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        /* The inject header is replaced whole: a placeholder the client put there goes
         * nowhere. */
        if (p->inject_header && strlen(p->inject_header) == f->name_len &&
            strncasecmp(p->inject_header, f->name, f->name_len) == 0)
            continue;
        if (creds_appears(p, f->value, f->value_len) &&
            !allows(p, PLACE_HEADER, f->name, f->name_len))
            return "a header field that substitute_in does not list";
    }
    return NULL;
}

/* ---- responses ---- */

/* The (secret, placeholder) pairs of the providers an exchange used. */
static size_t pairs_of(const struct creds_provider *const *used, size_t n,
                       struct redact_pair *pairs)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < REDACT_MAX_PAIRS; i++) {
        if (!used[i]->secret)
            continue;
        pairs[k++] = (struct redact_pair){used[i]->secret, used[i]->secret_len,
                                          used[i]->placeholder, used[i]->placeholder_len};
    }
    return k;
}

struct redactor *creds_redactor(const struct creds_provider *const *used, size_t n)
{
    struct redact_pair pairs[REDACT_MAX_PAIRS];
    return redact_new(pairs, pairs_of(used, n, pairs));
}

void creds_redact_text(const struct creds_provider *const *used, size_t n, const char *s,
                       size_t len, struct http_buf *out)
{
    struct redact_pair pairs[REDACT_MAX_PAIRS];
    redact_text(pairs, pairs_of(used, n, pairs), s, len, out);
}

void creds_redact_field(const struct creds_provider *const *used, size_t n, const char *s,
                        size_t len, struct http_buf *out)
{
    struct redact_pair pairs[REDACT_MAX_PAIRS];
    redact_field(pairs, pairs_of(used, n, pairs), s, len, out);
}
