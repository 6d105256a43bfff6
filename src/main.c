/* SPDX-License-Identifier: MIT */
/* main: the command line of DESIGN.md ("Command line"), and nothing else: `ca init`, `check`,
 * `run` and `env`. Exit codes: 0 ok, 1 usage or configuration error, 2 runtime failure. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "airlock/admin.h"
#include "airlock/ca.h"
#include "airlock/creds.h"
#include "airlock/http.h"
#include "airlock/policy.h"
#include "airlock/server.h"

static const char usage[] =
    "usage:\n"
    "  airlock ca init [--dir DIR] [--force]\n"
    "  airlock check --policy FILE [--providers FILE]\n"
    "  airlock run [--listen HOST:PORT]... [--ca-dir DIR] [--policy FILE] [--providers FILE]\n"
    "              [--upstream-ca FILE] [--upstream-ca-only FILE]\n"
    "              [--admin HOST:PORT|unix:PATH] [--admin-public]\n"
    "              [--admin-expose-sensitive] [--health HOST:PORT|unix:PATH] [--log FILE]\n"
    "              [--log-format text|json] [--log-level debug|info|warn|error] [--workers N]\n"
    "              [--idle-timeout S] [--drain-timeout S] [--max-connections N]\n"
    "              [--binary-identity on|off] [--connect-timeout S] [--handshake-timeout S]\n"
    "              [--head-timeout S] [--response-timeout S] [--tunnel-idle-timeout S]\n"
    "              [--max-field-size BYTES] [--max-fields N] [--max-chunk-ext BYTES]\n"
    "              [--resolver-threads N] [--resolver-queue N] [--dns-cache-ttl S]\n"
    "  airlock env [--listen HOST:PORT] [--ca-dir DIR] [--providers FILE]\n"
    "              [--format export|dotenv]\n"
    "  airlock admin get PATH [--admin HOST:PORT|unix:PATH]\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "airlock: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);
    return 1;
}

/* Seconds (fractions allowed) as milliseconds. */
static int parse_seconds(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < 0 || v > 1e7)
        return -1;
    *ms = (uint64_t)(v * 1000.0 + 0.5);
    return 0;
}

static int parse_count(const char *s, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int cmd_ca(int argc, char **argv)
{
    const char *dir = "certs";
    bool force = false;
    if (argc < 1 || strcmp(argv[0], "init") != 0)
        return usage_error("unknown ca command");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--force"))
            force = true;
        else
            return usage_error("ca init: unexpected argument %s", argv[i]);
    }
    char err[512];
    if (ca_create(dir, force, err, sizeof err) < 0) {
        fprintf(stderr, "airlock: ca init: %s\n", err);
        return 1;
    }
    printf("created %s/ca.pem, %s/ca.key (0600), %s/bundle.pem and %s/wgetrc\n", dir, dir, dir,
           dir);
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    const char *policy = NULL, *providers = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--policy") && i + 1 < argc)
            policy = argv[++i];
        else if (!strcmp(argv[i], "--providers") && i + 1 < argc)
            providers = argv[++i];
        else
            return usage_error("check: unexpected argument %s", argv[i]);
    }
    if (!policy)
        return usage_error("check: --policy FILE is required");
    char *errors = NULL;
    struct policy *p = policy_load_file(policy, &errors);
    if (!p) {
        fprintf(stderr, "%s: invalid\n%s", policy, errors ? errors : "");
        if (errors && errors[0] && errors[strlen(errors) - 1] != '\n')
            fputc('\n', stderr);
        free(errors);
        return 1;
    }
    printf("%s: ok (%zu endpoints)\n", policy, policy_endpoint_count(p));
    policy_unref(p);
    if (providers) {
        struct creds *cr = creds_load_file(providers, &errors);
        if (!cr) {
            fprintf(stderr, "%s: invalid\n%s", providers, errors ? errors : "");
            if (errors && errors[0] && errors[strlen(errors) - 1] != '\n')
                fputc('\n', stderr);
            free(errors);
            return 1;
        }
        /* Names and placeholders only: never a secret. */
        printf("%s: ok (%zu providers)\n", providers, creds_count(cr));
        creds_unref(cr);
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    struct server_config cfg;
    server_config_defaults(&cfg);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long n;
        uint64_t *ms = NULL;
        if (!strcmp(a, "--admin-public")) {
            cfg.admin_public = true;
            continue;
        }
        if (!strcmp(a, "--admin-expose-sensitive")) {
            cfg.admin_expose_sensitive = true;
            continue;
        }
        if (!v)
            return usage_error("run: %s needs a value", a);
        i++;
        if (!strcmp(a, "--listen")) {
            if (cfg.nlisten == SERVER_MAX_LISTEN)
                return usage_error("run: too many --listen addresses");
            cfg.listen[cfg.nlisten++] = v;
        } else if (!strcmp(a, "--ca-dir")) {
            cfg.ca_dir = v;
        } else if (!strcmp(a, "--policy")) {
            cfg.policy_file = v;
        } else if (!strcmp(a, "--providers")) {
            cfg.providers_file = v;
        } else if (!strcmp(a, "--upstream-ca")) {
            cfg.upstream_ca = v;
        } else if (!strcmp(a, "--upstream-ca-only")) {
            cfg.upstream_ca_only = v;
        } else if (!strcmp(a, "--admin")) {
            cfg.admin = v;
        } else if (!strcmp(a, "--health")) {
            cfg.health = v;
        } else if (!strcmp(a, "--log")) {
            cfg.log_file = v;
        } else if (!strcmp(a, "--log-format")) {
            if (!strcmp(v, "text"))
                cfg.log_format = LOG_TEXT;
            else if (!strcmp(v, "json"))
                cfg.log_format = LOG_JSON;
            else
                return usage_error("run: --log-format is text or json, not %s", v);
        } else if (!strcmp(a, "--log-level")) {
            if (!strcmp(v, "debug"))
                cfg.log_level = LOG_DEBUG;
            else if (!strcmp(v, "info"))
                cfg.log_level = LOG_INFO;
            else if (!strcmp(v, "warn"))
                cfg.log_level = LOG_WARN;
            else if (!strcmp(v, "error"))
                cfg.log_level = LOG_ERROR;
            else
                return usage_error("run: unknown --log-level %s", v);
        } else if (!strcmp(a, "--workers")) {
            if (parse_count(v, &n) < 0 || n > 64)
                return usage_error("run: --workers takes 0 (one per core) to 64, not %s", v);
            cfg.workers = (unsigned)n;
        } else if (!strcmp(a, "--max-connections")) {
            if (parse_count(v, &n) < 0)
                return usage_error("run: --max-connections takes a number, not %s", v);
            cfg.max_connections = n;
        } else if (!strcmp(a, "--max-field-size")) {
            if (parse_count(v, &n) < 0 || n < 256 || n > HTTP_HEAD_MAX)
                return usage_error("run: --max-field-size takes 256 to %d bytes, not %s",
                                   HTTP_HEAD_MAX, v);
            cfg.http_limits.field_size = n;
        } else if (!strcmp(a, "--max-fields")) {
            if (parse_count(v, &n) < 0 || n < 8 || n > HTTP_FIELDS_CAP)
                return usage_error("run: --max-fields takes 8 to %d, not %s", HTTP_FIELDS_CAP, v);
            cfg.http_limits.fields = n;
        } else if (!strcmp(a, "--max-chunk-ext")) {
            if (parse_count(v, &n) < 0 || n > 1024 * 1024)
                return usage_error("run: --max-chunk-ext takes 0 to 1048576 bytes, not %s", v);
            cfg.http_limits.chunk_ext = n;
        } else if (!strcmp(a, "--resolver-threads")) {
            if (parse_count(v, &n) < 0 || n < 1 || n > 256)
                return usage_error("run: --resolver-threads takes 1 to 256, not %s", v);
            cfg.resolver_threads = (unsigned)n;
        } else if (!strcmp(a, "--resolver-queue")) {
            if (parse_count(v, &n) < 0 || n > 1000000)
                return usage_error("run: --resolver-queue takes 0 to 1000000, not %s", v);
            cfg.resolver_queue = n;
        } else if (!strcmp(a, "--dns-cache-ttl")) {
            ms = &cfg.dns_cache_ttl_ms;
        } else if (!strcmp(a, "--binary-identity")) {
            if (strcmp(v, "on") && strcmp(v, "off"))
                return usage_error("run: --binary-identity is on or off, not %s", v);
            cfg.binary_identity_off = !strcmp(v, "off");
        } else if (!strcmp(a, "--idle-timeout")) {
            ms = &cfg.idle_timeout_ms;
        } else if (!strcmp(a, "--drain-timeout")) {
            ms = &cfg.drain_timeout_ms;
        } else if (!strcmp(a, "--connect-timeout")) {
            ms = &cfg.connect_timeout_ms;
        } else if (!strcmp(a, "--handshake-timeout")) {
            ms = &cfg.handshake_timeout_ms;
        } else if (!strcmp(a, "--head-timeout")) {
            ms = &cfg.head_timeout_ms;
        } else if (!strcmp(a, "--response-timeout")) {
            ms = &cfg.response_timeout_ms;
        } else if (!strcmp(a, "--tunnel-idle-timeout")) {
            ms = &cfg.tunnel_idle_timeout_ms;
        } else {
            return usage_error("run: unknown option %s", a);
        }
        if (ms && parse_seconds(v, ms) < 0)
            return usage_error("run: %s takes seconds", a);
    }
    if (cfg.admin_expose_sensitive && !cfg.admin_public)
        return usage_error("run: --admin-expose-sensitive goes with --admin-public (a loopback "
                           "or unix: --admin serves /metrics and /policy anyway)");
    return server_run(&cfg);
}

/* One environment line. Export lines are shell-quoted (a CA directory may hold spaces);
 * dotenv lines are KEY=VALUE as dotenv readers expect. */
static void env_line(bool dotenv, const char *key, const char *value, const char *suffix)
{
    if (dotenv) {
        printf("%s=%s%s\n", key, value, suffix);
        return;
    }
    printf("export %s='", key);
    for (const char *p = value; *p; p++) {
        if (*p == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*p);
    }
    printf("%s'\n", suffix);
}

static int cmd_env(int argc, char **argv)
{
    const char *listen = "127.0.0.1:3128", *ca_dir = "certs", *format = "export";
    const char *providers = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--listen") && i + 1 < argc)
            listen = argv[++i];
        else if (!strcmp(argv[i], "--ca-dir") && i + 1 < argc)
            ca_dir = argv[++i];
        else if (!strcmp(argv[i], "--providers") && i + 1 < argc)
            providers = argv[++i];
        else if (!strcmp(argv[i], "--format") && i + 1 < argc)
            format = argv[++i];
        else
            return usage_error("env: unexpected argument %s", argv[i]);
    }
    bool dotenv = !strcmp(format, "dotenv");
    if (!dotenv && strcmp(format, "export"))
        return usage_error("env: --format is export or dotenv, not %s", format);
    char dir[PATH_MAX];
    if (!realpath(ca_dir, dir)) {
        fprintf(stderr, "airlock: env: %s: %s (run `airlock ca init --dir %s` first)\n", ca_dir,
                strerror(errno), ca_dir);
        return 1;
    }
    char proxy[300];
    snprintf(proxy, sizeof proxy, "http://%s", listen);
    const char *proxy_vars[] = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WSS_PROXY",
                                "http_proxy", "https_proxy", "all_proxy", "wss_proxy"};
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++)
        env_line(dotenv, proxy_vars[i], proxy, "");
    env_line(dotenv, "NO_PROXY", "localhost,127.0.0.1,::1", "");
    env_line(dotenv, "no_proxy", "localhost,127.0.0.1,::1", "");
    env_line(dotenv, "NODE_USE_ENV_PROXY", "1", "");
    const char *bundle_vars[] = {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                 "GIT_SSL_CAINFO", "CARGO_HTTP_CAINFO"};
    for (size_t i = 0; i < sizeof bundle_vars / sizeof bundle_vars[0]; i++)
        env_line(dotenv, bundle_vars[i], dir, "/bundle.pem");
    env_line(dotenv, "NODE_EXTRA_CA_CERTS", dir, "/ca.pem");
    env_line(dotenv, "DENO_CERT", dir, "/ca.pem");
    env_line(dotenv, "WGETRC", dir, "/wgetrc");
    if (providers) {
        /* The sandbox gets each provider's placeholder, never its secret. */
        char *errors = NULL;
        struct creds *cr = creds_load_file(providers, &errors);
        if (!cr) {
            fprintf(stderr, "%s: invalid\n%s", providers, errors ? errors : "");
            free(errors);
            return 1;
        }
        for (size_t i = 0; i < creds_count(cr); i++) {
            const struct creds_provider *p = creds_at(cr, i);
            env_line(dotenv, creds_env_var(p), creds_placeholder(p), "");
        }
        creds_unref(cr);
    }
    return 0;
}

/* `airlock admin get PATH`: the admin endpoint from a shell that has no HTTP client (the
 * image has none, and curl reaches a Unix socket only with --unix-socket). The body goes to
 * stdout; the exit code is 0 for a 2xx answer, 1 otherwise. */
static int cmd_admin(int argc, char **argv)
{
    const char *addr = getenv("AIRLOCK_ADMIN"), *path = NULL;
    if (!addr || !addr[0])
        addr = "127.0.0.1:9090";
    if (argc < 1 || strcmp(argv[0], "get") != 0)
        return usage_error("unknown admin command");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--admin") && i + 1 < argc)
            addr = argv[++i];
        else if (!path && argv[i][0] == '/')
            path = argv[i];
        else
            return usage_error("admin get: unexpected argument %s", argv[i]);
    }
    if (!path)
        return usage_error("admin get: a PATH such as /metrics is required");
    struct http_buf body = {0};
    char err[512];
    int status = 0;
    if (admin_get(addr, path, &status, &body, err, sizeof err) < 0) {
        fprintf(stderr, "airlock: admin get: %s\n", err);
        http_buf_free(&body);
        return 1;
    }
    fwrite(body.data, 1, body.len, stdout);
    http_buf_free(&body);
    if (status < 200 || status > 299) {
        fprintf(stderr, "airlock: admin get %s: status %d\n", path, status);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* Every command may load secrets: no core dump, and no ptrace or /proc/PID/mem (nor
     * environ) for processes of the same user that lack CAP_SYS_PTRACE. */
    (void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (argc < 2) {
        fputs(usage, stderr);
        return 1;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "ca"))
        return cmd_ca(argc - 2, argv + 2);
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 2, argv + 2);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 2, argv + 2);
    if (!strcmp(cmd, "env"))
        return cmd_env(argc - 2, argv + 2);
    if (!strcmp(cmd, "admin"))
        return cmd_admin(argc - 2, argv + 2);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    return usage_error("unknown command %s", cmd);
}
