/* SPDX-License-Identifier: MIT */
/* main: the command line of DESIGN.md ("Command line"), and nothing else: `ca init`, `check`,
 * `run`, `env`, `rules`, `admin get` and `--version`. Options are parsed with getopt_long, whole
 * names only. Exit codes: 0 ok, 1 usage or configuration error, 2 runtime failure. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "airlock/admin.h"
#include "airlock/ca.h"
#include "airlock/creds.h"
#include "airlock/http.h"
#include "airlock/policy.h"
#include "airlock/rules.h"
#include "airlock/server.h"
#include "airlock/target.h"

#ifndef AIRLOCK_VERSION
#define AIRLOCK_VERSION "unknown"
#endif

static const char usage[] =
    "usage:\n"
    "  airlock ca init [--dir DIR] [--force]\n"
    "  airlock check --policy FILE [--providers FILE]\n"
    "  airlock run [--listen HOST:PORT]... [--transparent HOST:PORT]... [--mark MARK]\n"
    "              [--ca-dir DIR] [--policy FILE] [--providers FILE]\n"
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
    "  airlock rules --transparent-port PORT (--uid UID | --mark MARK) [--ports PORT,...]\n"
    "              [--family inet|ip|ip6]\n"
    "  airlock admin get PATH [--admin HOST:PORT|unix:PATH]\n"
    "  airlock --version\n";

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

/* ---- options -------------------------------------------------------------------------------- */

/* What next_opt found besides an option's own code (struct option.val, all >= 256). */
enum {
    OPT_END = -1,      /* no argument left */
    OPT_BARE = 1,      /* an argument that is no option, in o->arg */
    OPT_BAD = '?',     /* an unknown or abbreviated option, or "--" */
    OPT_MISSING = ':', /* an option whose value is missing */
};

/* getopt_long over one subcommand's arguments; argv[0] is the subcommand's own name. */
struct opts {
    int argc;
    char **argv;
    const struct option *longopts;
    const char *tok; /* the argument as typed, for messages */
    const char *arg; /* the option's value, or the bare argument */
};

static void opts_init(struct opts *o, int argc, char **argv, const struct option *longopts)
{
    *o = (struct opts){.argc = argc, .argv = argv, .longopts = longopts};
    optind = 0; /* glibc: start afresh */
    opterr = 0; /* every message is ours */
}

/* The next option's code, or an OPT_* value. "-:" keeps the arguments in order (a bare one is
 * returned where it stands) and reports a missing value as ':'. */
static int next_opt(struct opts *o)
{
    int at = optind ? optind : 1, idx = -1;
    if (at >= o->argc)
        return OPT_END;
    o->tok = o->argv[at];
    int c = getopt_long(o->argc, o->argv, "-:", o->longopts, &idx);
    o->arg = optarg;
    if (c == -1)
        return OPT_BAD; /* stopped at "--" with arguments left */
    if (c == 1 || c == '?' || c == ':')
        return c;
    /* getopt_long also takes a unique abbreviation (--pol for --policy); airlock takes whole
     * names only, so that a flag added later never changes what a command line means. */
    const char *name = o->longopts[idx].name;
    size_t n = strlen(name);
    if (strncmp(o->tok, "--", 2) || strncmp(o->tok + 2, name, n) ||
        (o->tok[2 + n] && o->tok[2 + n] != '='))
        return OPT_BAD;
    return c;
}

enum { CA_DIR = 256, CA_FORCE };
static const struct option ca_opts[] = {
    {"dir", required_argument, NULL, CA_DIR},
    {"force", no_argument, NULL, CA_FORCE},
    {0},
};

/* argv[0] is "init". */
static int cmd_ca(int argc, char **argv)
{
    const char *dir = "certs";
    bool force = false;
    struct opts o;
    int c;
    if (argc < 1 || strcmp(argv[0], "init") != 0)
        return usage_error("unknown ca command");
    opts_init(&o, argc, argv, ca_opts);
    while ((c = next_opt(&o)) != OPT_END) {
        if (c == CA_DIR)
            dir = o.arg;
        else if (c == CA_FORCE)
            force = true;
        else
            return usage_error("ca init: unexpected argument %s", o.tok);
    }
    char err[512];
    if (ca_create(dir, force, err, sizeof err) < 0) {
        fprintf(stderr, "airlock: ca init: %s\n", err);
        return 1;
    }
    printf("created %s/ca.pem, %s/ca.key (0600), %s/bundle.pem, %s/wgetrc and %s/%s\n", dir, dir,
           dir, dir, dir, CA_TRUSTSTORE);
    return 0;
}

enum { CHECK_POLICY = 256, CHECK_PROVIDERS };
static const struct option check_opts[] = {
    {"policy", required_argument, NULL, CHECK_POLICY},
    {"providers", required_argument, NULL, CHECK_PROVIDERS},
    {0},
};

static int cmd_check(int argc, char **argv)
{
    const char *policy = NULL, *providers = NULL;
    struct opts o;
    int c;
    opts_init(&o, argc, argv, check_opts);
    while ((c = next_opt(&o)) != OPT_END) {
        if (c == CHECK_POLICY)
            policy = o.arg;
        else if (c == CHECK_PROVIDERS)
            providers = o.arg;
        else
            return usage_error("check: unexpected argument %s", o.tok);
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

enum run_opt {
    RUN_LISTEN = 256,
    RUN_TRANSPARENT,
    RUN_MARK,
    RUN_CA_DIR,
    RUN_POLICY,
    RUN_PROVIDERS,
    RUN_UPSTREAM_CA,
    RUN_UPSTREAM_CA_ONLY,
    RUN_ADMIN,
    RUN_ADMIN_PUBLIC,
    RUN_ADMIN_EXPOSE_SENSITIVE,
    RUN_HEALTH,
    RUN_LOG,
    RUN_LOG_FORMAT,
    RUN_LOG_LEVEL,
    RUN_WORKERS,
    RUN_MAX_CONNECTIONS,
    RUN_MAX_FIELD_SIZE,
    RUN_MAX_FIELDS,
    RUN_MAX_CHUNK_EXT,
    RUN_RESOLVER_THREADS,
    RUN_RESOLVER_QUEUE,
    RUN_DNS_CACHE_TTL,
    RUN_BINARY_IDENTITY,
    RUN_IDLE_TIMEOUT,
    RUN_DRAIN_TIMEOUT,
    RUN_CONNECT_TIMEOUT,
    RUN_HANDSHAKE_TIMEOUT,
    RUN_HEAD_TIMEOUT,
    RUN_RESPONSE_TIMEOUT,
    RUN_TUNNEL_IDLE_TIMEOUT,
};

static const struct option run_opts[] = {
    {"listen", required_argument, NULL, RUN_LISTEN},
    {"transparent", required_argument, NULL, RUN_TRANSPARENT},
    {"mark", required_argument, NULL, RUN_MARK},
    {"ca-dir", required_argument, NULL, RUN_CA_DIR},
    {"policy", required_argument, NULL, RUN_POLICY},
    {"providers", required_argument, NULL, RUN_PROVIDERS},
    {"upstream-ca", required_argument, NULL, RUN_UPSTREAM_CA},
    {"upstream-ca-only", required_argument, NULL, RUN_UPSTREAM_CA_ONLY},
    {"admin", required_argument, NULL, RUN_ADMIN},
    {"admin-public", no_argument, NULL, RUN_ADMIN_PUBLIC},
    {"admin-expose-sensitive", no_argument, NULL, RUN_ADMIN_EXPOSE_SENSITIVE},
    {"health", required_argument, NULL, RUN_HEALTH},
    {"log", required_argument, NULL, RUN_LOG},
    {"log-format", required_argument, NULL, RUN_LOG_FORMAT},
    {"log-level", required_argument, NULL, RUN_LOG_LEVEL},
    {"workers", required_argument, NULL, RUN_WORKERS},
    {"max-connections", required_argument, NULL, RUN_MAX_CONNECTIONS},
    {"max-field-size", required_argument, NULL, RUN_MAX_FIELD_SIZE},
    {"max-fields", required_argument, NULL, RUN_MAX_FIELDS},
    {"max-chunk-ext", required_argument, NULL, RUN_MAX_CHUNK_EXT},
    {"resolver-threads", required_argument, NULL, RUN_RESOLVER_THREADS},
    {"resolver-queue", required_argument, NULL, RUN_RESOLVER_QUEUE},
    {"dns-cache-ttl", required_argument, NULL, RUN_DNS_CACHE_TTL},
    {"binary-identity", required_argument, NULL, RUN_BINARY_IDENTITY},
    {"idle-timeout", required_argument, NULL, RUN_IDLE_TIMEOUT},
    {"drain-timeout", required_argument, NULL, RUN_DRAIN_TIMEOUT},
    {"connect-timeout", required_argument, NULL, RUN_CONNECT_TIMEOUT},
    {"handshake-timeout", required_argument, NULL, RUN_HANDSHAKE_TIMEOUT},
    {"head-timeout", required_argument, NULL, RUN_HEAD_TIMEOUT},
    {"response-timeout", required_argument, NULL, RUN_RESPONSE_TIMEOUT},
    {"tunnel-idle-timeout", required_argument, NULL, RUN_TUNNEL_IDLE_TIMEOUT},
    {0},
};

/* The field a seconds option sets, or NULL for the other options. */
static uint64_t *run_seconds_field(struct server_config *cfg, int opt)
{
    switch (opt) {
    case RUN_DNS_CACHE_TTL:
        return &cfg->dns_cache_ttl_ms;
    case RUN_IDLE_TIMEOUT:
        return &cfg->idle_timeout_ms;
    case RUN_DRAIN_TIMEOUT:
        return &cfg->drain_timeout_ms;
    case RUN_CONNECT_TIMEOUT:
        return &cfg->connect_timeout_ms;
    case RUN_HANDSHAKE_TIMEOUT:
        return &cfg->handshake_timeout_ms;
    case RUN_HEAD_TIMEOUT:
        return &cfg->head_timeout_ms;
    case RUN_RESPONSE_TIMEOUT:
        return &cfg->response_timeout_ms;
    case RUN_TUNNEL_IDLE_TIMEOUT:
        return &cfg->tunnel_idle_timeout_ms;
    default:
        return NULL;
    }
}

/* One `run` option with its value v (the option as typed is a, for messages): 0, or the exit
 * code of a usage error. */
static int run_option(struct server_config *cfg, int opt, const char *a, const char *v)
{
    unsigned long n;
    uint64_t *ms = run_seconds_field(cfg, opt);
    if (ms) {
        if (parse_seconds(v, ms) < 0)
            return usage_error("run: %s takes seconds", a);
        return 0;
    }
    switch (opt) {
    case RUN_LISTEN:
    case RUN_TRANSPARENT:
        if (cfg->nlisten + cfg->ntransparent == SERVER_MAX_LISTEN)
            return usage_error("run: more than %d --listen and --transparent addresses",
                               SERVER_MAX_LISTEN);
        if (opt == RUN_LISTEN)
            cfg->listen[cfg->nlisten++] = v;
        else
            cfg->transparent[cfg->ntransparent++] = v;
        break;
    case RUN_MARK: {
        char err[128];
        if (rules_parse_mark(v, &cfg->upstream_mark, err, sizeof err) < 0)
            return usage_error("run: %s", err);
        break;
    }
    case RUN_CA_DIR:
        cfg->ca_dir = v;
        break;
    case RUN_POLICY:
        cfg->policy_file = v;
        break;
    case RUN_PROVIDERS:
        cfg->providers_file = v;
        break;
    case RUN_UPSTREAM_CA:
        cfg->upstream_ca = v;
        break;
    case RUN_UPSTREAM_CA_ONLY:
        cfg->upstream_ca_only = v;
        break;
    case RUN_ADMIN:
        cfg->admin = v;
        break;
    case RUN_ADMIN_PUBLIC:
        cfg->admin_public = true;
        break;
    case RUN_ADMIN_EXPOSE_SENSITIVE:
        cfg->admin_expose_sensitive = true;
        break;
    case RUN_HEALTH:
        cfg->health = v;
        break;
    case RUN_LOG:
        cfg->log_file = v;
        break;
    case RUN_LOG_FORMAT:
        if (!strcmp(v, "text"))
            cfg->log_format = LOG_TEXT;
        else if (!strcmp(v, "json"))
            cfg->log_format = LOG_JSON;
        else
            return usage_error("run: --log-format is text or json, not %s", v);
        break;
    case RUN_LOG_LEVEL:
        if (!strcmp(v, "debug"))
            cfg->log_level = LOG_DEBUG;
        else if (!strcmp(v, "info"))
            cfg->log_level = LOG_INFO;
        else if (!strcmp(v, "warn"))
            cfg->log_level = LOG_WARN;
        else if (!strcmp(v, "error"))
            cfg->log_level = LOG_ERROR;
        else
            return usage_error("run: unknown --log-level %s", v);
        break;
    case RUN_WORKERS:
        if (parse_count(v, &n) < 0 || n > 64)
            return usage_error("run: --workers takes 0 (one per core) to 64, not %s", v);
        cfg->workers = (unsigned)n;
        break;
    case RUN_MAX_CONNECTIONS:
        if (parse_count(v, &n) < 0)
            return usage_error("run: --max-connections takes a number, not %s", v);
        cfg->max_connections = n;
        break;
    case RUN_MAX_FIELD_SIZE:
        if (parse_count(v, &n) < 0 || n < 256 || n > HTTP_HEAD_MAX)
            return usage_error("run: --max-field-size takes 256 to %d bytes, not %s", HTTP_HEAD_MAX,
                               v);
        cfg->http_limits.field_size = n;
        break;
    case RUN_MAX_FIELDS:
        if (parse_count(v, &n) < 0 || n < 8 || n > HTTP_FIELDS_CAP)
            return usage_error("run: --max-fields takes 8 to %d, not %s", HTTP_FIELDS_CAP, v);
        cfg->http_limits.fields = n;
        break;
    case RUN_MAX_CHUNK_EXT:
        if (parse_count(v, &n) < 0 || n > 1024 * 1024)
            return usage_error("run: --max-chunk-ext takes 0 to 1048576 bytes, not %s", v);
        cfg->http_limits.chunk_ext = n;
        break;
    case RUN_RESOLVER_THREADS:
        if (parse_count(v, &n) < 0 || n < 1 || n > 256)
            return usage_error("run: --resolver-threads takes 1 to 256, not %s", v);
        cfg->resolver_threads = (unsigned)n;
        break;
    case RUN_RESOLVER_QUEUE:
        if (parse_count(v, &n) < 0 || n > 1000000)
            return usage_error("run: --resolver-queue takes 0 to 1000000, not %s", v);
        cfg->resolver_queue = n;
        break;
    case RUN_BINARY_IDENTITY:
        if (strcmp(v, "on") && strcmp(v, "off"))
            return usage_error("run: --binary-identity is on or off, not %s", v);
        cfg->binary_identity_off = !strcmp(v, "off");
        break;
    }
    return 0;
}

/* The option as typed, without an attached "=value", for messages. */
static const char *option_name(const char *tok, char *buf, size_t cap)
{
    const char *eq = strchr(tok, '=');
    if (!eq || strncmp(tok, "--", 2))
        return tok;
    snprintf(buf, cap, "%.*s", (int)(eq - tok), tok);
    return buf;
}

static int cmd_run(int argc, char **argv)
{
    struct server_config cfg;
    struct opts o;
    char name[64];
    int c, err;
    server_config_defaults(&cfg);
    opts_init(&o, argc, argv, run_opts);
    while ((c = next_opt(&o)) != OPT_END) {
        if (c == OPT_MISSING)
            return usage_error("run: %s needs a value", o.tok);
        if (c == OPT_BARE || c == OPT_BAD)
            return usage_error("run: unknown option %s", o.tok);
        err = run_option(&cfg, c, option_name(o.tok, name, sizeof name), o.arg);
        if (err)
            return err;
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

/* The hosts a sandbox reaches directly, never through airlock: NO_PROXY, and Java's
 * http.nonProxyHosts spelled from the same list so that the two never disagree. */
static const char *const direct_hosts[] = {"localhost", "127.0.0.1", "::1"};
#define N_DIRECT_HOSTS (sizeof direct_hosts / sizeof direct_hosts[0])

/* Append text to buf (cap bytes, NUL-terminated); false when it does not fit. */
static bool append(char *buf, size_t cap, const char *text)
{
    size_t used = strlen(buf), n = strlen(text);
    if (used + n >= cap)
        return false;
    memcpy(buf + used, text, n + 1);
    return true;
}

/* direct_hosts joined by sep into buf (300 bytes hold them), an IPv6 address in brackets when
 * brackets (as java.net.URI spells the host that Java matches against the list). */
static void join_direct_hosts(char *buf, size_t cap, const char *sep, bool brackets)
{
    buf[0] = '\0';
    for (size_t i = 0; i < N_DIRECT_HOSTS; i++) {
        bool v6 = brackets && strchr(direct_hosts[i], ':');
        append(buf, cap, i ? sep : "");
        append(buf, cap, v6 ? "[" : "");
        append(buf, cap, direct_hosts[i]);
        append(buf, cap, v6 ? "]" : "");
    }
}

/* " -Dname=value" appended to buf. The JVM splits JAVA_TOOL_OPTIONS at white space and takes
 * a quoted stretch whole, so a value with a space or a quote goes in the other kind of quotes;
 * false for one holding both kinds, or when buf is full. */
static bool append_java_prop(char *buf, size_t cap, const char *name, const char *value)
{
    const char *quote = "";
    if (strchr(value, '"') && strchr(value, '\''))
        return false;
    if (strpbrk(value, " \t\n\v\f\r\"'"))
        quote = strchr(value, '"') ? "'" : "\"";
    return append(buf, cap, buf[0] ? " -D" : "-D") && append(buf, cap, name) &&
           append(buf, cap, "=") && append(buf, cap, quote) && append(buf, cap, value) &&
           append(buf, cap, quote);
}

/* JAVA_TOOL_OPTIONS for a JVM, which reads no proxy or CA variable: the proxy for http and
 * https URLs (WebSockets included), the direct hosts, and the trust store beside the CA (which
 * replaces Java's own cacerts: every host reached through airlock shows airlock's CA). false
 * when a value cannot be written into the variable. */
static bool java_tool_options(char *buf, size_t cap, const struct authority *proxy,
                              const char *ca_dir)
{
    char port[8], direct[300], store[PATH_MAX + 32];
    snprintf(port, sizeof port, "%u", proxy->port);
    join_direct_hosts(direct, sizeof direct, "|", true);
    snprintf(store, sizeof store, "%s/%s", ca_dir, CA_TRUSTSTORE);
    buf[0] = '\0';
    return append_java_prop(buf, cap, "https.proxyHost", proxy->host) &&
           append_java_prop(buf, cap, "https.proxyPort", port) &&
           append_java_prop(buf, cap, "http.proxyHost", proxy->host) &&
           append_java_prop(buf, cap, "http.proxyPort", port) &&
           append_java_prop(buf, cap, "http.nonProxyHosts", direct) &&
           append_java_prop(buf, cap, "javax.net.ssl.trustStore", store) &&
           append_java_prop(buf, cap, "javax.net.ssl.trustStoreType", "PKCS12");
}

enum { ENV_LISTEN = 256, ENV_CA_DIR, ENV_PROVIDERS, ENV_FORMAT };
static const struct option env_opts[] = {
    {"listen", required_argument, NULL, ENV_LISTEN},
    {"ca-dir", required_argument, NULL, ENV_CA_DIR},
    {"providers", required_argument, NULL, ENV_PROVIDERS},
    {"format", required_argument, NULL, ENV_FORMAT},
    {0},
};

static int cmd_env(int argc, char **argv)
{
    const char *listen = "127.0.0.1:3128", *ca_dir = "certs", *format = "export";
    const char *providers = NULL;
    struct opts o;
    int c;
    opts_init(&o, argc, argv, env_opts);
    while ((c = next_opt(&o)) != OPT_END) {
        if (c == ENV_LISTEN)
            listen = o.arg;
        else if (c == ENV_CA_DIR)
            ca_dir = o.arg;
        else if (c == ENV_PROVIDERS)
            providers = o.arg;
        else if (c == ENV_FORMAT)
            format = o.arg;
        else
            return usage_error("env: unexpected argument %s", o.tok);
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
    struct authority at;
    if (target_parse_authority(listen, strlen(listen), true, 0, &at) < 0)
        return usage_error("env: --listen is HOST:PORT, not %s", listen);
    char proxy[300], direct[300], java[2 * PATH_MAX], store[PATH_MAX + 32];
    snprintf(proxy, sizeof proxy, "http://%s", listen);
    join_direct_hosts(direct, sizeof direct, ",", false);
    const char *proxy_vars[] = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WSS_PROXY",
                                "http_proxy", "https_proxy", "all_proxy", "wss_proxy"};
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++)
        env_line(dotenv, proxy_vars[i], proxy, "");
    env_line(dotenv, "NO_PROXY", direct, "");
    env_line(dotenv, "no_proxy", direct, "");
    env_line(dotenv, "NODE_USE_ENV_PROXY", "1", "");
    const char *bundle_vars[] = {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
                                 "GIT_SSL_CAINFO", "CARGO_HTTP_CAINFO"};
    for (size_t i = 0; i < sizeof bundle_vars / sizeof bundle_vars[0]; i++)
        env_line(dotenv, bundle_vars[i], dir, "/bundle.pem");
    env_line(dotenv, "NODE_EXTRA_CA_CERTS", dir, "/ca.pem");
    env_line(dotenv, "DENO_CERT", dir, "/ca.pem");
    env_line(dotenv, "WGETRC", dir, "/wgetrc");
    if (java_tool_options(java, sizeof java, &at, dir))
        env_line(dotenv, "JAVA_TOOL_OPTIONS", java, "");
    else
        fprintf(stderr,
                "airlock: env: %s cannot be written into JAVA_TOOL_OPTIONS (it holds "
                "both kinds of quotes)\n",
                dir);
    snprintf(store, sizeof store, "%s/%s", dir, CA_TRUSTSTORE);
    if (access(store, R_OK) < 0)
        fprintf(stderr,
                "airlock: env: %s: %s (`airlock run --ca-dir %s` writes it; until then Java "
                "clients do not trust airlock)\n",
                store, strerror(errno), ca_dir);
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

/* `airlock rules`: the nftables ruleset for transparent mode, to stdout (see rules.h). Every
 * value is checked before anything is printed, so a bad one never yields half a ruleset. */
enum { RULES_TPORT = 256, RULES_UID, RULES_MARK, RULES_PORTS, RULES_FAMILY };
static const struct option rules_opts[] = {
    {"transparent-port", required_argument, NULL, RULES_TPORT},
    {"uid", required_argument, NULL, RULES_UID},
    {"mark", required_argument, NULL, RULES_MARK},
    {"ports", required_argument, NULL, RULES_PORTS},
    {"family", required_argument, NULL, RULES_FAMILY},
    {0},
};

/* One option's value into cfg; 0, or -1 with err set. */
static int rules_option(int c, const char *v, struct rules_config *cfg, bool *seen_uid,
                        bool *seen_mark, char *err, size_t errlen)
{
    switch (c) {
    case RULES_TPORT:
        return rules_parse_port(v, &cfg->transparent_port, err, errlen);
    case RULES_UID:
        *seen_uid = true;
        cfg->exclude = RULES_BY_UID;
        return rules_parse_uid(v, &cfg->uid, err, errlen);
    case RULES_MARK:
        *seen_mark = true;
        cfg->exclude = RULES_BY_MARK;
        return rules_parse_mark(v, &cfg->mark, err, errlen);
    case RULES_PORTS:
        return rules_parse_ports(v, cfg->ports, &cfg->nports, err, errlen);
    case RULES_FAMILY:
        return rules_parse_family(v, &cfg->family, err, errlen);
    }
    snprintf(err, errlen, "unexpected option");
    return -1;
}

static int cmd_rules(int argc, char **argv)
{
    struct rules_config cfg = {.ports = {80, 443}, .nports = 2, .family = RULES_INET};
    bool seen_uid = false, seen_mark = false;
    char err[256], text[4096];
    struct opts o;
    int c;
    opts_init(&o, argc, argv, rules_opts);
    while ((c = next_opt(&o)) != OPT_END) {
        if (c == OPT_MISSING)
            return usage_error("rules: %s needs a value", o.tok);
        if (c < 256)
            return usage_error("rules: unexpected argument %s", o.tok);
        if (rules_option(c, o.arg, &cfg, &seen_uid, &seen_mark, err, sizeof err) < 0)
            return usage_error("rules: %s", err);
    }
    if (!cfg.transparent_port)
        return usage_error("rules: --transparent-port PORT is required");
    /* without an exclusion airlock's own upstream connections would be redirected back to it */
    if (seen_uid == seen_mark)
        return usage_error("rules: exactly one of --uid UID or --mark MARK is required (how "
                           "airlock's own connections are left alone)");
    if (rules_check(&cfg, err, sizeof err) < 0)
        return usage_error("rules: %s", err);
    size_t n = rules_format(&cfg, text, sizeof text);
    if (n >= sizeof text) {
        fprintf(stderr, "airlock: rules: the ruleset does not fit in %zu bytes\n", sizeof text);
        return 2;
    }
    fwrite(text, 1, n, stdout);
    return fflush(stdout) == 0 ? 0 : 2;
}

/* `airlock admin get PATH`: the admin endpoint from a shell that has no HTTP client (the
 * image has none, and curl reaches a Unix socket only with --unix-socket). The body goes to
 * stdout; the exit code is 0 for a 2xx answer, 1 otherwise. */
enum { ADMIN_ADDR = 256 };
static const struct option admin_opts[] = {
    {"admin", required_argument, NULL, ADMIN_ADDR},
    {0},
};

/* argv[0] is "get". */
static int cmd_admin(int argc, char **argv)
{
    const char *addr = getenv("AIRLOCK_ADMIN"), *path = NULL;
    struct opts o;
    int c;
    if (!addr || !addr[0])
        addr = "127.0.0.1:9090";
    if (argc < 1 || strcmp(argv[0], "get") != 0)
        return usage_error("unknown admin command");
    opts_init(&o, argc, argv, admin_opts);
    while ((c = next_opt(&o)) != OPT_END) {
        if (c == ADMIN_ADDR)
            addr = o.arg;
        else if (c == OPT_BARE && !path && o.arg[0] == '/')
            path = o.arg;
        else
            return usage_error("admin get: unexpected argument %s", o.tok);
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

/* `airlock --version`: airlock's version and those of the libraries it runs with. libuv,
 * OpenSSL, cJSON and nghttp2 report the library loaded at run time; llhttp has no such call, so its line
 * is the version airlock was built with. */
static int cmd_version(void)
{
    printf("airlock %s\n", AIRLOCK_VERSION);
    printf("libuv %s\n", uv_version_string());
    printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
    printf("llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("cJSON %s\n", cJSON_Version());
    printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
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
    /* Each command parses the arguments after its name; argv[0] of that slice is the name
     * itself (for ca and admin, the name of their one subcommand), as getopt expects. */
    const char *cmd = argv[1];
    if (!strcmp(cmd, "ca"))
        return cmd_ca(argc - 2, argv + 2);
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "env"))
        return cmd_env(argc - 1, argv + 1);
    if (!strcmp(cmd, "rules"))
        return cmd_rules(argc - 1, argv + 1);
    if (!strcmp(cmd, "admin"))
        return cmd_admin(argc - 2, argv + 2);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") && argc == 2)
        return cmd_version();
    return usage_error("unknown command %s", cmd);
}
