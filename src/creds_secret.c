/* SPDX-License-Identifier: MIT */
/* creds_secret: reads each provider's secret, from an environment variable or a file, into a
 * vault: anonymous pages of its own, excluded from core dumps (and locked when the limit
 * allows), wiped before they are unmapped. Owns the copies of environment secrets, which it
 * scrubs from the environment as it reads them. Invariant: a secret is never copied anywhere
 * but a vault, and never into error text. */
#include "creds_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "airlock/path.h"

extern char **environ;

#define SECRET_MAX (64u << 10)
#define SECRET_MIN 8 /* bytes */

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

void creds_vault_free(struct vault *v)
{
    if (!v->base)
        return;
    OPENSSL_cleanse(v->base, v->size);
    munmap(v->base, v->size);
    v->base = NULL;
    v->size = 0;
}

/* ---- secret ---- */

/* RFC 3986 §2.3: everything but unreserved characters is escaped, so the secret reads back
 * as itself from a path segment and from a query value alike ('&', '=', '+', '/' included). */
static size_t pct_encode(const char *s, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (path_is_unreserved(ch)) {
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
static void set_secret(struct jsonload *j, struct creds_provider *p, const char *s, size_t len,
                       const char *origin)
{
    if (len == 0) {
        jsonload_fail(j, "%s is empty", origin);
        return;
    }
    if (len > SECRET_MAX) {
        jsonload_fail(j, "%s is longer than %u bytes", origin, SECRET_MAX);
        return;
    }
    /* The secret goes into header values and request lines: CR or LF would split them (request
     * smuggling), and NUL truncates it for any C consumer. */
    if (memchr(s, '\r', len) || memchr(s, '\n', len) || memchr(s, '\0', len)) {
        jsonload_fail(j, "%s contains CR, LF or NUL, which no header value may carry", origin);
        return;
    }
    /* A secret this short is guessed, and could not be told apart from ordinary text when a
     * response is redacted. */
    if (len < SECRET_MIN) {
        jsonload_fail(j, "%s is shorter than %u bytes", origin, SECRET_MIN);
        return;
    }
    size_t pct_len = pct_encode(s, len, NULL);
    int err = vault_alloc(&p->vault, len + 1 + pct_len + 1);
    if (err) {
        jsonload_fail(j, "cannot allocate memory excluded from core dumps for %s: %s", origin,
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
        creds_vault_free(&e->vault);
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

static void secret_from_env(struct jsonload *j, const cJSON *v, struct creds_provider *p)
{
    char buf[JSONLOAD_SHOW_MAX], origin[JSONLOAD_SHOW_MAX + 32];
    if (!cJSON_IsString(v) || !*v->valuestring || strchr(v->valuestring, '=')) {
        jsonload_fail_at(j, "env", "must be the name of an environment variable");
        return;
    }
    const char *name = v->valuestring;
    p->env_var = strdup(name);
    if (!p->env_var)
        j->oom = true;
    snprintf(origin, sizeof(origin), "environment variable %s", jsonload_show(buf, name));
    struct vault tmp = {NULL, 0};
    size_t len = 0;
    int err = take_env_secret(name, &tmp, &len);
    if (err == -ENOENT)
        jsonload_fail(j, "%s is not set", origin);
    else if (err)
        jsonload_fail(j, "cannot keep %s: %s", origin, strerror(-err));
    else
        set_secret(j, p, tmp.base, len, origin);
    creds_vault_free(&tmp);
}

static void secret_from_file(struct jsonload *j, const cJSON *v, struct creds_provider *p)
{
    char buf[JSONLOAD_SHOW_MAX], origin[JSONLOAD_SHOW_MAX + 32];
    struct vault tmp = {NULL, 0};
    const char *why = NULL;
    ssize_t n = 0;
    struct stat st;

    if (!cJSON_IsString(v) || !*v->valuestring) {
        jsonload_fail_at(j, "file", "must be a non-empty path");
        return;
    }
    const char *path = v->valuestring;
    snprintf(origin, sizeof(origin), "file \"%s\"", jsonload_show(buf, path));

    /* Plain read(2) into pages of our own: stdio would keep a copy in its heap buffer. One byte
     * more than the limit is read to tell a file at the limit from a longer one. */
    int fd = jsonload_open_regular(path, &st, &why), err;
    if (fd >= 0) {
        if ((err = vault_alloc(&tmp, SECRET_MAX + 1)) != 0)
            why = strerror(-err);
        else if ((n = jsonload_read_fd(fd, tmp.base, SECRET_MAX + 1)) < 0)
            why = strerror((int)-n);
        close(fd);
    }
    if (why) {
        jsonload_fail(j, "%s: cannot read: %s", origin, why);
    } else {
        /* Files written by echo or an editor end with a newline that is not part of the
         * secret: drop exactly one; anything else is refused by set_secret. */
        size_t len = (size_t)n;
        if (len && tmp.base[len - 1] == '\n') {
            len--;
            if (len && tmp.base[len - 1] == '\r')
                len--;
        }
        set_secret(j, p, tmp.base, len, origin);
    }
    creds_vault_free(&tmp);
}

void creds_load_secret(struct jsonload *j, const cJSON *obj, struct creds_provider *p)
{
    static const char *const keys[] = {"env", "file", NULL};
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "secret");
    if (!v) {
        jsonload_fail_at(j, "secret", "required: {\"env\": NAME} or {\"file\": PATH}");
        return;
    }
    size_t old = jsonload_key(j, "secret");
    /* Not quoted back: a literal string here is most likely the secret itself. */
    if (!cJSON_IsObject(v)) {
        jsonload_fail(j, "must be {\"env\": NAME} or {\"file\": PATH}, never the secret itself");
        jsonload_pop(j, old);
        return;
    }
    jsonload_check_keys(j, v, keys, DUP_PAIRWISE_MAX);
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(v, "env");
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(v, "file");
    if (env && file)
        jsonload_fail(j, "give \"env\" or \"file\", not both");
    else if (!env && !file)
        jsonload_fail(j, "needs \"env\" or \"file\"");
    else if (env)
        secret_from_env(j, env, p);
    else
        secret_from_file(j, file, p);
    jsonload_pop(j, old);
}
