/* SPDX-License-Identifier: MIT */
/* relay: one HTTP/1.1 exchange at a time on a client connection. The request parser also reads
 * the connection's first request and hands it to proxy.c. Requests are checked (authority,
 * canonical path, L7 policy) and re-serialised upstream from the parsed fields; responses are
 * re-serialised and their bodies streamed as they arrive. Every exchange ends in one outcome:
 * REUSABLE (parse the next request), CONSUMED (finish the connection) or UPGRADED (pipe). */
#include "airlock/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "airlock/creds.h"
#include "airlock/log.h"
#include "airlock/metrics.h"
#include "airlock/netguard.h"
#include "airlock/path.h"
#include "airlock/pipe.h"
#include "airlock/policy.h"
#include "airlock/proxy.h"
#include "airlock/redact.h"
#include "airlock/server.h"

static void log_exchange(struct conn *c, enum log_outcome outcome, const char *reason);
static int on_req_head(void *owner, struct http_head *head);
static int on_req_body(void *owner, const char *p, size_t len);
static int on_req_complete(void *owner, const struct http_head *trailers);
static int on_resp_head(void *owner, struct http_head *head);
static int on_resp_body(void *owner, const char *p, size_t len);
static int on_resp_complete(void *owner, const struct http_head *trailers);

static const struct http_parser_cbs request_cbs = {
    .on_head = on_req_head, .on_body = on_req_body, .on_complete = on_req_complete};
static const struct http_parser_cbs response_cbs = {
    .on_head = on_resp_head, .on_body = on_resp_body, .on_complete = on_resp_complete};

static void parser_init(struct conn *c, struct http_parser *p, enum http_kind kind)
{
    http_parser_init(p, kind, kind == HTTP_KIND_REQUEST ? &request_cbs : &response_cbs, c);
    http_parser_set_limits(p, &c->w->server->cfg->http_limits);
}

void relay_init(struct conn *c)
{
    parser_init(c, &c->req_parser, HTTP_KIND_REQUEST);
    parser_init(c, &c->resp_parser, HTTP_KIND_RESPONSE);
    c->req_parser_init = c->resp_parser_init = true;
}

static void exchange_reset(struct conn *c)
{
    redact_free(c->ex.redact); /* wipes a held-back prefix of a secret */
    http_head_free(c->ex.req);
    memset(&c->ex, 0, sizeof c->ex);
}

void relay_deinit(struct conn *c)
{
    /* A connection that ends mid-exchange still leaves its request's line. */
    log_exchange(c, LOG_OUTCOME_CONSUMED, "connection closed before the exchange ended");
    exchange_reset(c);
    if (c->req_parser_init)
        http_parser_deinit(&c->req_parser);
    if (c->resp_parser_init)
        http_parser_deinit(&c->resp_parser);
    c->req_parser_init = c->resp_parser_init = false;
}

void relay_reset_request_parser(struct conn *c)
{
    http_parser_deinit(&c->req_parser);
    parser_init(c, &c->req_parser, HTTP_KIND_REQUEST);
}

void relay_reset_response_parser(struct conn *c)
{
    http_parser_deinit(&c->resp_parser);
    parser_init(c, &c->resp_parser, HTTP_KIND_RESPONSE);
}

/* ---- logging ----------------------------------------------------------------------------- */

static void log_request_outcome(struct conn *c, enum log_action action, enum log_decision decision,
                                int status, const char *reason, enum log_severity sev,
                                enum log_outcome outcome)
{
    c->ex.logged = true;
    metrics_inc(decision == LOG_DECISION_DENY    ? M_REQ_DENY
                : decision == LOG_DECISION_AUDIT ? M_REQ_AUDIT
                                                 : M_REQ_ALLOW);
    struct log_event ev = {.class_uid = LOG_CLASS_HTTP,
                           .activity = LOG_ACTIVITY_REQUEST,
                           .action = action,
                           .severity = sev,
                           .method = c->ex.method,
                           .path = c->ex.log_path,
                           .status = status,
                           .l7_decision = decision,
                           .reason = reason,
                           .relay_outcome = outcome,
                           .overflow = -1};
    conn_log(c, &ev);
}

static void log_request(struct conn *c, enum log_action action, enum log_decision decision,
                        int status, const char *reason, enum log_severity sev)
{
    log_request_outcome(c, action, decision, status, reason, sev,
                        decision == LOG_DECISION_DENY ? LOG_OUTCOME_CONSUMED : LOG_OUTCOME_NONE);
}

/* An allowed (or audited) request is logged once, when its exchange ends, with its outcome. */
static void log_exchange(struct conn *c, enum log_outcome outcome, const char *reason)
{
    struct exchange *ex = &c->ex;
    if (ex->logged || !ex->active || !ex->status)
        return;
    enum log_decision decision = ex->audit      ? LOG_DECISION_AUDIT
                                 : ex->upgraded ? LOG_DECISION_ALLOW_UPGRADE
                                                : LOG_DECISION_ALLOW;
    log_request_outcome(c, ex->audit ? LOG_ACTION_AUDIT : LOG_ACTION_ALLOW, decision, ex->status,
                        reason ? reason : ex->audit_reason, ex->audit ? LOG_SEV_LOW : LOG_SEV_INFO,
                        outcome);
}

/* A finding about the current request, answered with status (the path once it is known). */
static void log_finding(struct conn *c, int status, enum log_severity sev, const char *reason)
{
    metrics_inc(M_FINDINGS);
    struct log_event ev = {.class_uid = LOG_CLASS_FINDING,
                           .activity = LOG_ACTIVITY_FINDING,
                           .action = LOG_ACTION_DENY,
                           .severity = sev,
                           .method = c->ex.method,
                           .path = c->ex.log_path[0] ? c->ex.log_path : NULL,
                           .status = status,
                           .l7_decision = LOG_DECISION_DENY,
                           .reason = reason,
                           .overflow = -1};
    conn_log(c, &ev);
}

/* ---- requests ---------------------------------------------------------------------------- */

static int on_req_head(void *owner, struct http_head *head)
{
    struct conn *c = owner;
    if (c->state == CONN_S_FIRST)
        return proxy_on_first_head(c, head);
    if (c->ex.active) {
        /* The parser pauses after each request, so this cannot happen; refuse if it does. */
        http_head_free(head);
        conn_respond_error(c, 400, "bad_request", "request received before the previous ended");
        return HTTP_HEAD_ERROR;
    }
    c->ex.req = head;
    return relay_start_request(c);
}

/* Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2): base64(SHA-1(key + GUID)). */
static void websocket_accept(const char *key, size_t key_len, char out[32])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[SHA_DIGEST_LENGTH];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    out[0] = '\0';
    if (!ctx)
        return;
    if (EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) && EVP_DigestUpdate(ctx, key, key_len) &&
        EVP_DigestUpdate(ctx, guid, sizeof guid - 1) && EVP_DigestFinal_ex(ctx, md, NULL))
        EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
    EVP_MD_CTX_free(ctx);
}

/* RFC 6455 §4.1: what makes a request a websocket opening handshake. NULL when it is one, else
 * why not. A half-valid one is refused, not forwarded: its body or method would reach an
 * upstream that may still switch protocols. */
static const char *websocket_request_problem(const struct http_head *h)
{
    if (h->method_id != HTTP_GET || h->version_minor != 1)
        return "a websocket upgrade must be an HTTP/1.1 GET";
    if (!h->upgrade)
        return "a websocket upgrade needs Connection: upgrade";
    if (h->chunked || h->transfer_codings || (h->has_content_length && h->content_length > 0))
        return "a websocket upgrade request has no body";
    const struct http_field *key = http_head_find(h, "sec-websocket-key");
    unsigned char raw[32];
    if (http_head_count(h, "sec-websocket-key") != 1 || key->value_len != 24 ||
        EVP_DecodeBlock(raw, (const unsigned char *)key->value, 24) != 18 ||
        memcmp(key->value + 22, "==", 2) != 0)
        return "a websocket upgrade needs one Sec-WebSocket-Key of 16 bytes in base64";
    const struct http_field *version = http_head_find(h, "sec-websocket-version");
    if (!version || version->value_len != 2 || memcmp(version->value, "13", 2) != 0 ||
        http_head_count(h, "sec-websocket-version") != 1)
        return "a websocket upgrade needs Sec-WebSocket-Version: 13";
    return NULL;
}

/* Log fields are bounded; a longer path is cut (the log says what, not all of it). */
static void copy_truncated(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool field_is(const struct http_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

/* Append text with every used provider's placeholder replaced by its secret. */
static void append_with_secrets(struct conn *c, struct http_buf *b, const char *p, size_t len,
                                enum creds_mode mode)
{
    struct exchange *ex = &c->ex;
    const struct creds_provider *hit = NULL;
    for (unsigned i = 0; i < ex->ncreds_used && !hit; i++)
        if (creds_appears(ex->creds_used[i], p, len))
            hit = ex->creds_used[i];
    if (!hit) {
        http_buf_append(b, p, len);
        return;
    }
    if (mode == CREDS_SECRET) {
        creds_substitute_header(hit, p, len, b);
        return;
    }
    /* A path or query may carry placeholders of two providers: substitute one at a time. */
    struct http_buf cur = {0};
    http_buf_append(&cur, p, len);
    for (unsigned i = 0; i < ex->ncreds_used; i++) {
        if (!creds_appears(ex->creds_used[i], cur.data, cur.len))
            continue;
        struct http_buf next = {0};
        creds_substitute(ex->creds_used[i], cur.data, cur.len, mode, &next);
        creds_buf_wipe(&cur);
        cur = next;
    }
    http_buf_append(b, cur.data, cur.len);
    creds_buf_wipe(&cur);
}

static bool injected_header(const struct conn *c, const struct http_field *f)
{
    for (unsigned i = 0; i < c->ex.ncreds_used; i++) {
        const char *h = creds_inject_header(c->ex.creds_used[i]);
        if (h && f->name_len == strlen(h) && strncasecmp(f->name, h, f->name_len) == 0)
            return true;
    }
    return false;
}

/* A client's Connection field may not name what airlock sets for it (the header a provider
 * injects): hop-by-hop nominations are the client's to make only for its own fields. */
static bool nominates_injected_header(const struct conn *c)
{
    for (unsigned i = 0; i < c->ex.ncreds_used; i++) {
        const char *h = creds_inject_header(c->ex.creds_used[i]);
        if (h && http_head_has_token(c->ex.req, "connection", h))
            return true;
    }
    return false;
}

/* Rebuild the request head from parsed fields (RFC 9112 §3, RFC 9110 §7.6.1): the canonical
 * target, hop-by-hop fields dropped, our own framing and connection fields added, and the
 * placeholders of the providers bound to this endpoint replaced by their secrets. The buffer
 * that held secrets is wiped. */
static int write_request_head(struct conn *c, const char *path, const char *query, bool has_query)
{
    struct http_head *h = c->ex.req;
    struct http_buf b = {.wipe = true}; /* it will hold secrets: never realloc'd */
    http_buf_append(&b, h->method, h->method_len);
    http_buf_puts(&b, " ");
    append_with_secrets(c, &b, path, strlen(path), CREDS_SECRET_PCT);
    if (has_query) {
        http_buf_puts(&b, "?");
        append_with_secrets(c, &b, query, strlen(query), CREDS_SECRET_PCT);
    }
    http_buf_puts(&b, " HTTP/1.1\r\n");
    /* Host first (RFC 9112 §3.2), written from the authority that was judged, normalised:
     * never the client's spelling of it (a trailing dot or another case can pick another
     * virtual host). A tunnel's Host carries the port when the client's did; a forward
     * request's unless it is 80. */
    bool show_port = c->flags & CONN_F_FORWARD ? c->target.port != 80 : c->ex.host_has_port;
    char host[TARGET_HOST_MAX + 16];
    struct authority a = c->target;
    target_format(&a, host, sizeof host);
    if (!show_port) /* strip ":port" but keep an IPv6 literal's brackets */
        *strrchr(host, ':') = '\0';
    http_buf_printf(&b, "Host: %s\r\n", host);
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        /* Framing and Host are written below from what was parsed, never copied: the upstream
         * must read exactly the message that was judged. */
        if (http_field_is_framing(f) || injected_header(c, f))
            continue;
        /* Proxy-* fields are for us, never for the origin (DESIGN.md "Data path rules"). */
        if (f->name_len >= 6 && strncasecmp(f->name, "proxy-", 6) == 0)
            continue;
        if (http_field_is_hop_by_hop(h, f)) {
            /* "TE: trailers" is the one hop-by-hop value worth passing on (gRPC needs it). */
            if (!(field_is(f, "te") && f->value_len == 8 && !strncasecmp(f->value, "trailers", 8)))
                continue;
        }
        /* A secret goes out: the answer must come unencoded for an echo in it to be redacted
         * (see start_redaction). */
        if (c->ex.nredact &&
            (field_is(f, "accept-encoding") || field_is(f, "range") || field_is(f, "if-range")))
            continue; /* a coded or partial answer would hide a secret from the redactor */
        http_buf_append(&b, f->name, f->name_len);
        http_buf_puts(&b, ": ");
        append_with_secrets(c, &b, f->value, f->value_len, CREDS_SECRET);
        http_buf_puts(&b, "\r\n");
    }
    for (unsigned i = 0; i < c->ex.ncreds_used; i++) {
        const char *name = creds_inject_header(c->ex.creds_used[i]);
        if (!name)
            continue;
        http_buf_printf(&b, "%s: ", name);
        creds_inject_value(c->ex.creds_used[i], &b);
        http_buf_puts(&b, "\r\n");
    }
    /* Without the field any content coding would be acceptable (RFC 9110 §12.5.3). */
    if (c->ex.nredact)
        http_buf_puts(&b, "Accept-Encoding: identity\r\n");
    if (c->ex.upgrade_asked)
        http_buf_puts(&b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else if (c->ex.close_after)
        http_buf_puts(&b, "Connection: close\r\n");
    if (h->chunked) {
        /* The chunks are re-framed by us; every other coding goes on as the client applied it. */
        http_buf_printf(&b, "Transfer-Encoding: %s\r\n", h->transfer_codings);
        c->ex.req_chunked_out = true;
    } else if (h->has_content_length) {
        http_buf_printf(&b, "Content-Length: %llu\r\n", (unsigned long long)h->content_length);
    }
    http_buf_puts(&b, "\r\n");
    int r = -1;
    if (!b.failed)
        r = conn_write(c, SIDE_UPSTREAM, b.data, b.len);
    else
        conn_respond_error(c, 502, "internal_error", "out of memory");
    creds_buf_wipe(&b);
    return r;
}

/* A placeholder outside the places its provider's substitute_in lists: refused like a
 * mismatch, with nothing forwarded. where is static text. */
static bool refuse_misplaced(struct conn *c, const struct creds_provider *p, const char *where)
{
    log_msg(LOG_WARN, "conn %llu: placeholder of provider %s in %s: refused",
            (unsigned long long)c->id, creds_provider_name(p), where);
    log_finding(c, 403, LOG_SEV_HIGH, creds_provider_name(p));
    metrics_inc(M_REQ_DENY);
    conn_respond_error(c, 403, "credential_location_refused",
                       "a credential placeholder was sent in a place its provider's "
                       "substitute_in does not list");
    return false;
}

/* Add the providers of snapshot that bind the tunnel's host and port to this exchange's
 * redaction. */
static void redact_for(struct conn *c, const struct creds *snapshot)
{
    struct exchange *ex = &c->ex;
    for (size_t i = 0; snapshot && i < creds_count(snapshot); i++) {
        const struct creds_provider *p = creds_at(snapshot, i);
        if (!creds_binds(p, c->target.host, c->target.port))
            continue;
        if (ex->nredact == sizeof ex->redact_with / sizeof ex->redact_with[0]) {
            log_msg(LOG_WARN,
                    "conn %llu: more providers bind %s:%u than one response is "
                    "redacted for",
                    (unsigned long long)c->id, c->target.host, (unsigned)c->target.port);
            return;
        }
        ex->redact_with[ex->nredact++] = p;
    }
}

static void choose_redaction(struct conn *c, bool inspected)
{
    struct exchange *ex = &c->ex;
    if (ex->ncreds_used > 0 && c->echo_creds != c->creds) {
        if (c->echo_creds)
            creds_unref(c->echo_creds);
        creds_ref(c->creds);
        c->echo_creds = c->creds;
    }
    ex->nredact = 0;
    if (!inspected)
        return;
    /* A provider's host may hand back what it stored from any earlier request, on any
     * connection: every response from it is redacted, for its current secret and for the one
     * that last went out on this connection (a reload may have rotated it). */
    redact_for(c, c->creds);
    if (c->echo_creds != c->creds)
        redact_for(c, c->echo_creds);
}

/* Which providers this request involves. A placeholder for a host or port its provider does not
 * name (or outside a verified TLS tunnel: a forward-proxy request is plain HTTP) is refused
 * before anything is forwarded. Returns false when the request was refused. The redacted path
 * (placeholders as [CREDENTIAL]) is what the policy and the log see. */
static bool resolve_credentials(struct conn *c, char *path, size_t path_cap)
{
    /* path: in, the canonical path; out, the same with placeholders as [CREDENTIAL]. */
    struct exchange *ex = &c->ex;
    struct http_head *h = ex->req;
    if (c->creds)
        creds_unref(c->creds);
    c->creds = server_creds(c->w->server);
    ex->ncreds_used = 0;
    bool inspected = (c->flags & CONN_F_TUNNEL) && c->protocol == POLICY_REST;
    if (!c->creds) {
        choose_redaction(c, inspected);
        return true;
    }
    const struct creds_provider *mismatch = NULL, *misplaced = NULL;
    const char *where = NULL;
    for (size_t i = 0; i < creds_count(c->creds); i++) {
        const struct creds_provider *p = creds_at(c->creds, i);
        bool appears = creds_appears(p, h->target, h->target_len);
        for (size_t f = 0; f < h->nfields && !appears; f++)
            appears = creds_appears(p, h->fields[f].value, h->fields[f].value_len);
        bool binds = inspected && creds_binds(p, c->target.host, c->target.port);
        if (appears) {
            struct http_buf red = {0};
            creds_substitute(p, path, strlen(path), CREDS_REDACT, &red);
            if (!red.failed && red.len < path_cap) {
                memcpy(path, red.data, red.len);
                path[red.len] = '\0';
            }
            http_buf_free(&red);
            if (!binds && !mismatch)
                mismatch = p;
            if (binds && !misplaced && (where = creds_misplaced(p, h)) != NULL)
                misplaced = p;
        }
        if (binds && (appears || creds_inject_header(p)) &&
            ex->ncreds_used < sizeof ex->creds_used / sizeof ex->creds_used[0])
            ex->creds_used[ex->ncreds_used++] = p;
    }
    copy_truncated(ex->log_path, sizeof ex->log_path, path);
    choose_redaction(c, inspected);
    if (!mismatch && misplaced)
        return refuse_misplaced(c, misplaced, where);
    if (!mismatch)
        return true;
    /* The log names the provider (and the host, from the connection), never the secret. */
    log_msg(LOG_WARN,
            "conn %llu: placeholder of provider %s sent to %s:%u, which it does not "
            "name: refused",
            (unsigned long long)c->id, creds_provider_name(mismatch), c->target.host,
            (unsigned)c->target.port);
    log_finding(c, 403, LOG_SEV_HIGH, creds_provider_name(mismatch));
    metrics_inc(M_REQ_DENY);
    conn_respond_error(c, 403, "credential_endpoint_mismatch",
                       inspected ? "a credential placeholder was sent to a host or port its "
                                   "provider does not name"
                                 : "credential placeholders are only substituted inside "
                                   "HTTPS tunnels, never over plain HTTP");
    return false;
}

int relay_start_request(struct conn *c)
{
    struct http_head *h = c->ex.req;
    const struct server_config *cfg = c->w->server->cfg;
    struct exchange *ex = &c->ex;
    ex->active = true;
    snprintf(ex->method, sizeof ex->method, "%.*s", (int)h->method_len, h->method);
    ex->head_request = h->method_id == HTTP_HEAD;
    ex->close_after = !h->keep_alive || c->w->draining;

    if (h->method_id == HTTP_CONNECT) {
        conn_respond_error(c, 400, "bad_request", "CONNECT inside a tunnel is not supported");
        return HTTP_HEAD_ERROR;
    }
    /* The request's authority must be the tunnel's (DESIGN.md "Policy"; RFC 9110 §7.4). */
    const char *target = h->target;
    size_t target_len = h->target_len;
    struct authority req_auth;
    if (c->flags & CONN_F_FORWARD) {
        if (target_parse_absolute(h->target, h->target_len, &req_auth, &target, &target_len) < 0) {
            conn_respond_error(c, 400, "bad_request",
                               "a forward-proxy request needs an absolute http:// target");
            return HTTP_HEAD_ERROR;
        }
        if (strcmp(req_auth.host, c->target.host) != 0 || req_auth.port != c->target.port) {
            /* Another origin on the same proxy connection: dial it, then resume here. */
            c->target = req_auth;
            ex->active = false;
            proxy_redial(c);
            return HTTP_HEAD_PAUSE;
        }
    } else {
        /* An absolute-form target names an authority of its own (RFC 9112 §3.2.2), which must
         * be the tunnel's as well as the Host field's. */
        bool uri_matches = true;
        if (target_len == 0 || target[0] != '/') {
            if (target_parse_absolute(target, target_len, &req_auth, &target, &target_len) == 0) {
                uri_matches = target_authority_matches(&c->target, &req_auth);
            } else if (!(target_len == 1 && target[0] == '*')) {
                conn_respond_error(c, 400, "bad_request", "unsupported request-target form");
                return HTTP_HEAD_ERROR;
            }
        }
        const struct http_field *hf = http_head_find(h, "host");
        if (!uri_matches || !hf ||
            target_parse_authority(hf->value, hf->value_len, false, 0, &req_auth) < 0 ||
            !target_authority_matches(&c->target, &req_auth)) {
            log_finding(c, 421, LOG_SEV_MEDIUM, "request authority differs from the tunnel's");
            metrics_inc(M_REQ_DENY);
            conn_respond_error(c, 421, "request_authority_mismatch",
                               "the request's Host and target must name the tunnel's host and "
                               "port");
            return HTTP_HEAD_ERROR;
        }
        ex->host_has_port = req_auth.port_present;
    }

    /* One canonical path: what the policy sees is what goes upstream. */
    char path[PATH_MAX_LEN + 1], query[PATH_MAX_LEN + 1];
    bool has_query = false;
    enum path_result pr = PATH_BAD;
    if (target_len == 1 && target[0] == '*' && h->method_id == HTTP_OPTIONS) {
        strcpy(path, "*");
        pr = PATH_OK;
    } else {
        pr = path_canonicalize(target, target_len, path, sizeof path, query, sizeof query,
                               &has_query);
    }
    copy_truncated(ex->log_path, sizeof ex->log_path, pr == PATH_OK ? path : "");
    char policy_path[PATH_MAX_LEN + 1] = "";
    if (pr == PATH_OK) {
        memcpy(policy_path, path, strlen(path) + 1);
        if (!resolve_credentials(c, policy_path, sizeof policy_path))
            return HTTP_HEAD_ERROR;
        if (nominates_injected_header(c)) {
            log_request(c, LOG_ACTION_DENY, LOG_DECISION_DENY, 400,
                        "Connection names an injected field", LOG_SEV_MEDIUM);
            conn_respond_error(c, 400, "bad_request",
                               "Connection may not name a field that airlock writes");
            return HTTP_HEAD_ERROR;
        }
    }
    if (pr != PATH_OK) {
        log_request(c, LOG_ACTION_DENY, LOG_DECISION_DENY, pr == PATH_TOO_LONG ? 414 : 400,
                    "malformed path", LOG_SEV_LOW);
        conn_respond_error(c, pr == PATH_TOO_LONG ? 414 : 400,
                           pr == PATH_TOO_LONG ? "uri_too_long" : "bad_request",
                           pr == PATH_TOO_LONG ? "the request path is too long"
                                               : "the request path is malformed or ambiguous");
        return HTTP_HEAD_ERROR;
    }

    /* L7 policy, on the snapshot current now (a reload applies to the next request). The
     * method overrides the request carries are judged too: an upstream may act on them. */
    bool websocket = http_head_has_token(h, "upgrade", "websocket");
    struct policy_request q;
    policy_request_init(&q, ex->method, policy_path, websocket);
    int bad_override = policy_request_add_query(&q, has_query ? query : NULL);
    for (size_t i = 0; i < h->nfields && bad_override == 0; i++)
        bad_override = policy_request_add_field(&q, h->fields[i].name, h->fields[i].name_len,
                                                h->fields[i].value, h->fields[i].value_len);
    if (bad_override < 0) {
        log_request(c, LOG_ACTION_DENY, LOG_DECISION_DENY, 400, "invalid method override",
                    LOG_SEV_LOW);
        conn_respond_error(c, 400, "bad_request",
                           "each method override must be one method (a token), at most 8");
        return HTTP_HEAD_ERROR;
    }
    struct policy *pol = server_policy(c->w->server);
    struct policy_peer peer;
    conn_policy_peer(c, &peer);
    struct policy_l7 d;
    policy_check_l7(pol, c->target.host, c->target.port, &peer, netguard_private_addr(c), &q, &d);
    conn_adopt_policy(c, pol, d.policy_name); /* keeps d's borrowed strings alive */
    if (d.verdict == POLICY_DENY) {
        log_request(c, LOG_ACTION_DENY, LOG_DECISION_DENY, 403, d.reason, LOG_SEV_MEDIUM);
        conn_respond_l7_denied(c, &d);
        return HTTP_HEAD_ERROR;
    }
    ex->audit = d.verdict == POLICY_AUDIT;

    /* A websocket upgrade is forwarded only as a whole, valid handshake; any other Upgrade is
     * hop-by-hop and dropped, so the upstream has no reason to switch (RFC 9110 §7.8). */
    if (websocket) {
        const char *bad = websocket_request_problem(h);
        if (bad) {
            log_request(c, LOG_ACTION_DENY, LOG_DECISION_DENY, 400, bad, LOG_SEV_LOW);
            conn_respond_error(c, 400, "bad_request", bad);
            return HTTP_HEAD_ERROR;
        }
        const struct http_field *key = http_head_find(h, "sec-websocket-key");
        ex->upgrade_asked = true;
        websocket_accept(key->value, key->value_len, ex->ws_accept);
    }

    if (write_request_head(c, path, query, has_query) < 0)
        return HTTP_HEAD_ERROR;
    conn_set_timeout(c, cfg->response_timeout_ms, 504, "no response from upstream in time");
    ex->sent_at = uv_now(&c->w->loop);
    if (ex->audit)
        ex->audit_reason = d.reason;
    return HTTP_HEAD_CONTINUE;
}

static int write_chunked(struct conn *c, enum side_id id, const char *p, size_t len)
{
    char hdr[24];
    int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
    uv_buf_t bufs[3] = {uv_buf_init(hdr, (unsigned)n), uv_buf_init((char *)p, (unsigned)len),
                        uv_buf_init("\r\n", 2)};
    return conn_writev(c, id, bufs, 3);
}

static void append_redacting_secrets(struct conn *c, struct http_buf *b, const char *p, size_t len);

static int write_last_chunk(struct conn *c, enum side_id id, const struct http_head *trailers)
{
    struct http_buf b = {0};
    http_buf_puts(&b, "0\r\n");
    for (size_t i = 0; trailers && i < trailers->nfields; i++) {
        const struct http_field *f = &trailers->fields[i];
        /* RFC 9110 §6.5.1: framing, routing and connection fields have no place in trailers;
         * a recipient that merges trailers into the head must not find any there. */
        if (http_field_is_framing(f) || http_field_is_hop_by_hop(NULL, f))
            continue;
        http_buf_append(&b, f->name, f->name_len);
        http_buf_puts(&b, ": ");
        if (id == SIDE_CLIENT)
            append_redacting_secrets(c, &b, f->value, f->value_len);
        else
            http_buf_append(&b, f->value, f->value_len);
        http_buf_puts(&b, "\r\n");
    }
    http_buf_puts(&b, "\r\n");
    int r = b.failed ? -1 : conn_write(c, id, b.data, b.len);
    http_buf_free(&b);
    return r;
}

static int on_req_body(void *owner, const char *p, size_t len)
{
    struct conn *c = owner;
    if (c->flags & CONN_F_CLOSING || c->state != CONN_S_HTTP)
        return -1;
    int r = c->ex.req_chunked_out ? write_chunked(c, SIDE_UPSTREAM, p, len)
                                  : conn_write(c, SIDE_UPSTREAM, p, len);
    return r < 0 ? -1 : 0;
}

static void exchange_end(struct conn *c, enum relay_outcome outcome);

static int on_req_complete(void *owner, const struct http_head *trailers)
{
    struct conn *c = owner;
    if (c->flags & CONN_F_CLOSING)
        return -1;
    if (c->state == CONN_S_FIRST) /* CONNECT: the tunnel takes over (HTTP_UPGRADE follows) */
        return 0;
    if (c->ex.req_chunked_out && write_last_chunk(c, SIDE_UPSTREAM, trailers) < 0)
        return -1;
    if (!http_parser_keep_alive(&c->req_parser))
        c->ex.close_after = true; /* the parser reads nothing after this message */
    c->ex.req_done = true;
    /* One exchange at a time: a pipelined next request waits until this one ends. */
    return HTTP_PAUSE_BODY;
}

/* ---- responses --------------------------------------------------------------------------- */

static bool valid_websocket_101(const struct conn *c, const struct http_head *h)
{
    const struct http_field *accept = http_head_find(h, "sec-websocket-accept");
    return c->ex.upgrade_asked && http_head_has_token(h, "connection", "upgrade") &&
           http_head_has_token(h, "upgrade", "websocket") && accept &&
           accept->value_len == strlen(c->ex.ws_accept) &&
           memcmp(accept->value, c->ex.ws_accept, accept->value_len) == 0;
}

/* An upstream that echoes a secret back (in a redirect, an error field, a trailer) must not
 * hand it to the agent: on an exchange that carried one, every field value has each secret,
 * raw or encoded (Base64 too), replaced by its placeholder. */
static void append_redacting_secrets(struct conn *c, struct http_buf *b, const char *p, size_t len)
{
    if (c->ex.nredact == 0)
        http_buf_append(b, p, len);
    else
        creds_redact_field(c->ex.redact_with, c->ex.nredact, p, len, b);
}

/* The response's framing as parsed, written by us (RFC 9112 §6). Interim responses have none;
 * a HEAD, 204 or 304 response keeps its Content-Length as metadata. */
static void write_response_framing(struct conn *c, const struct http_head *h, struct http_buf *b)
{
    bool client_http10 = c->ex.req && c->ex.req->version_minor == 0;
    if (h->status < 200)
        return;
    if (c->ex.resp_chunked_out) {
        /* chunked as the upstream sent it, or re-framed because redaction changes the length */
        http_buf_printf(b, "Transfer-Encoding: %s\r\n",
                        h->transfer_codings ? h->transfer_codings : "chunked");
    } else if (h->has_content_length && !c->ex.redact) {
        http_buf_printf(b, "Content-Length: %llu\r\n", (unsigned long long)h->content_length);
    } else if (h->transfer_codings && !h->chunked && !client_http10) {
        /* codings without chunked: the body runs until close, still coded */
        http_buf_printf(b, "Transfer-Encoding: %s\r\n", h->transfer_codings);
    }
}

static int write_response_head(struct conn *c, const struct http_head *h, bool upgrade)
{
    struct http_buf b = {0};
    http_buf_printf(&b, "HTTP/1.1 %d ", h->status);
    if (c->ex.nredact == 0)
        http_buf_append(&b, h->reason, h->reason_len);
    else
        creds_redact_text(c->ex.redact_with, c->ex.nredact, h->reason, h->reason_len, &b);
    http_buf_puts(&b, "\r\n");
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (http_field_is_framing(f) || http_field_is_hop_by_hop(h, f))
            continue;
        http_buf_append(&b, f->name, f->name_len);
        http_buf_puts(&b, ": ");
        append_redacting_secrets(c, &b, f->value, f->value_len);
        http_buf_puts(&b, "\r\n");
    }
    if (upgrade)
        http_buf_puts(&b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else if (h->status >= 200 && c->ex.close_after)
        http_buf_puts(&b, "Connection: close\r\n");
    write_response_framing(c, h, &b);
    http_buf_puts(&b, "\r\n");
    int r = b.failed ? -1 : conn_write(c, SIDE_CLIENT, b.data, b.len);
    http_buf_free(&b);
    return r;
}

/* A secret went upstream on this exchange: the body goes through a redactor. The placeholder
 * and the secret differ in length, so a Content-Length no longer holds: the body is re-framed
 * chunked to an HTTP/1.1 client, and close-delimited to an HTTP/1.0 one (RFC 9112 §6.3).
 * 0, -1 when out of memory, 1 when the body has a content coding (it cannot be redacted). */
static int start_redaction(struct conn *c, const struct http_head *head, bool client_http10)
{
    struct exchange *ex = &c->ex;
    /* A compressed body hides an echoed secret from the redactor: the request asked for
     * identity, so an upstream that encodes anyway is refused rather than relayed blind. */
    for (size_t i = 0; i < head->nfields; i++) {
        const struct http_field *f = &head->fields[i];
        if (field_is(f, "content-encoding") &&
            !(f->value_len == 8 && strncasecmp(f->value, "identity", 8) == 0))
            return 1;
    }
    /* so does a transfer coding other than the chunks we decode */
    if (head->transfer_codings && strcmp(head->transfer_codings, "chunked") != 0)
        return 1;
    /* and so does a part of a representation: parts asked for one by one would hand the
     * secret over in pieces */
    if (head->status == 206 || http_head_find(head, "content-range"))
        return 1;
    ex->redact = creds_redactor(ex->redact_with, ex->nredact);
    if (!ex->redact)
        return -1;
    if (head->has_content_length) {
        if (client_http10)
            ex->close_after = true;
        else
            ex->resp_chunked_out = true;
    }
    return 0;
}

static int on_resp_head(void *owner, struct http_head *head)
{
    struct conn *c = owner;
    struct exchange *ex = &c->ex;
    int status = head->status;
    if (!ex->active) {
        /* An answer nobody asked for (a 408 before closing an idle connection, say). */
        http_head_free(head);
        conn_finish(c, "upstream sent a response without a request");
        return HTTP_HEAD_ERROR;
    }
    if (status == 101) {
        if (!valid_websocket_101(c, head)) {
            http_head_free(head);
            log_finding(c, 502, LOG_SEV_HIGH,
                        ex->upgrade_asked ? "invalid 101 Switching Protocols"
                                          : "unsolicited 101 Switching Protocols");
            conn_respond_error(c, 502, "unsolicited_upgrade",
                               "the upstream switched protocols without a valid websocket "
                               "upgrade that the client asked for");
            return HTTP_HEAD_ERROR;
        }
        ex->status = 101;
        ex->upgraded = true;
        log_exchange(c, LOG_OUTCOME_UPGRADED, NULL);
        int r = write_response_head(c, head, true);
        http_head_free(head);
        return r < 0 ? HTTP_HEAD_ERROR : HTTP_HEAD_CONTINUE;
    }
    if (status < 200) {
        /* Interim responses go on to an HTTP/1.1 client (RFC 9110 §15.2) and the final one is
         * still to come. */
        ex->interim = true;
        int r = 0;
        if (!(ex->req && ex->req->version_minor == 0))
            r = write_response_head(c, head, false);
        http_head_free(head);
        return r < 0 ? HTTP_HEAD_ERROR : HTTP_HEAD_CONTINUE;
    }
    ex->status = status;
    metrics_observe_ms(H_TIME_TO_FIRST_BYTE, uv_now(&c->w->loop) - ex->sent_at);
    bool no_body = ex->head_request || status == 204 || status == 304;
    bool client_http10 = ex->req && ex->req->version_minor == 0;
    if (!head->keep_alive)
        ex->close_after = true;
    if (!no_body && !head->has_content_length) {
        if (head->chunked && !client_http10) {
            ex->resp_chunked_out = true;
        } else {
            /* Read until close (RFC 9112 §6.3), or chunked to an HTTP/1.0 client, which gets
             * the decoded body ended by our close: either way the connection ends with it. */
            ex->close_after = true;
        }
    }
    int red = !no_body && ex->nredact > 0 ? start_redaction(c, head, client_http10) : 0;
    if (red != 0) {
        http_head_free(head);
        if (red > 0)
            log_finding(c, 502, LOG_SEV_HIGH,
                        "encoded response to a request that carried a secret");
        conn_respond_error(c, 502, red > 0 ? "unredactable_response" : "internal_error",
                           red > 0 ? "the upstream encoded (compressed) its answer to a request "
                                     "that carried a credential, so it cannot be checked for "
                                     "an echoed secret"
                                   : "out of memory");
        return HTTP_HEAD_ERROR;
    }
    int r = write_response_head(c, head, false);
    ex->resp_head_sent = true;
    http_head_free(head);
    if (r < 0)
        return HTTP_HEAD_ERROR;
    if (no_body)
        return HTTP_HEAD_NO_BODY;
    return HTTP_HEAD_CONTINUE;
}

static int write_resp_body(struct conn *c, const char *p, size_t len)
{
    return c->ex.resp_chunked_out ? write_chunked(c, SIDE_CLIENT, p, len)
                                  : conn_write(c, SIDE_CLIENT, p, len);
}

/* Pass the settled part of a body span through the redactor (held-back bytes go out with the
 * next span or at the end); an empty result writes nothing, so no empty chunk ends the body. */
static int write_redacted(struct conn *c, const char *p, size_t len, bool last)
{
    struct http_buf out = {0};
    if (last)
        redact_finish(c->ex.redact, &out);
    else
        redact_feed(c->ex.redact, p, len, &out);
    int r = out.failed ? -1 : out.len ? write_resp_body(c, out.data, out.len) : 0;
    http_buf_free(&out);
    return r;
}

static int on_resp_body(void *owner, const char *p, size_t len)
{
    struct conn *c = owner;
    if (c->flags & CONN_F_CLOSING || c->state != CONN_S_HTTP)
        return -1;
    int r = c->ex.redact ? write_redacted(c, p, len, false) : write_resp_body(c, p, len);
    return r < 0 ? -1 : 0;
}

static int on_resp_complete(void *owner, const struct http_head *trailers)
{
    struct conn *c = owner;
    struct exchange *ex = &c->ex;
    if (c->flags & CONN_F_CLOSING)
        return -1;
    if (ex->interim) {
        ex->interim = false;
        return 0;
    }
    if (ex->upgraded)
        return 0; /* HTTP_UPGRADE follows: relay_on_data switches to the pipe */
    if (ex->redact && write_redacted(c, NULL, 0, true) < 0)
        return -1;
    if (ex->resp_chunked_out && write_last_chunk(c, SIDE_CLIENT, trailers) < 0)
        return -1;
    if (!http_parser_keep_alive(&c->resp_parser))
        ex->close_after = true; /* the parser reads nothing after this message */
    ex->resp_done = true;
    if (!ex->req_done) {
        /* Answered before the request ended (an early 4xx, say): the rest of the request body
         * cannot be told apart from a next request without reading it all; close instead. */
        exchange_end(c, RELAY_CONSUMED);
        return -1;
    }
    exchange_end(c, ex->close_after ? RELAY_CONSUMED : RELAY_REUSABLE);
    return c->flags & CONN_F_CLOSING ? -1 : HTTP_PAUSE_BODY;
}

/* The exchange is over: act on its outcome. */
static void exchange_end(struct conn *c, enum relay_outcome outcome)
{
    const struct server_config *cfg = c->w->server->cfg;
    if (outcome == RELAY_REUSABLE && c->w->draining)
        outcome = RELAY_CONSUMED;
    enum log_outcome logged = (enum log_outcome)outcome; /* the same values (relay.h) */
    log_msg(LOG_DEBUG, "conn %llu: exchange %s %d: %s", (unsigned long long)c->id, c->ex.method,
            c->ex.status, logfmt_outcome_name(logged));
    bool upgrade_refused = c->ex.upgrade_asked || (c->ex.req && c->ex.req->upgrade);
    log_exchange(c, logged, NULL);
    metrics_inc(outcome == RELAY_CONSUMED ? M_TUNNELS_CONSUMED : M_TUNNELS_REUSABLE);
    exchange_reset(c);
    if (outcome == RELAY_CONSUMED) {
        conn_finish(c, "exchange consumed the connection");
        return;
    }
    conn_set_timeout(c, cfg->idle_timeout_ms, 0, "keep-alive idle");
    if (upgrade_refused)
        c->flags |= CONN_F_RESUME_AFTER_UPGRADE;
    /* The parsers resume on the next loop turn (we are inside one of them now). The upstream
     * stays readable between exchanges so that its close is seen at once. */
    conn_release(c, SIDE_UPSTREAM);
    conn_release(c, SIDE_CLIENT);
}

void relay_resume(struct conn *c, enum side_id id)
{
    if (id == SIDE_UPSTREAM) {
        http_parser_resume(&c->resp_parser);
    } else if (c->flags & CONN_F_RESUME_AFTER_UPGRADE) {
        c->flags &= ~CONN_F_RESUME_AFTER_UPGRADE;
        http_parser_resume_after_upgrade(&c->req_parser);
    } else {
        http_parser_resume(&c->req_parser);
    }
    /* llhttp runs the steps it owes after a pause (a bodiless request paused at its head
     * completes only now) on the next execute, even an empty one. */
    relay_on_data(c, id, "", 0);
}

/* ---- data ------------------------------------------------------------------------------- */

size_t relay_on_data(struct conn *c, enum side_id id, const char *p, size_t len)
{
    struct http_parser *hp = id == SIDE_CLIENT ? &c->req_parser : &c->resp_parser;
    struct side *s = &c->sides[id];
    bool idle_before = id == SIDE_CLIENT && !http_parser_in_message(hp);
    size_t consumed = 0;
    enum http_exec_status st = http_parser_execute(hp, p, len, &consumed);
    if (c->flags & CONN_F_CLOSING || c->state == CONN_S_LINGER)
        return len;
    if (idle_before && http_parser_in_message(hp) && !c->ex.active)
        conn_head_started(c);
    switch (st) {
    case HTTP_OK:
        return len;
    case HTTP_PAUSED:
        /* A message ended (one exchange at a time), or a head waits for a dial: the side reads
         * again when the exchange ends or the dial is done (conn_release). */
        s->flags |= SIDE_F_HELD;
        return consumed;
    case HTTP_UPGRADE:
        if (id == SIDE_CLIENT) {
            if (c->state == CONN_S_FIRST) {
                /* The dial holds the client (its next bytes are TLS); a refusal decided on the
                 * spot has already moved the connection to its lingering close. */
                proxy_on_connect_complete(c);
                return consumed;
            }
            /* A websocket request: what follows is the client's side of the new protocol,
             * which waits until the upstream's 101 (or is parsed as HTTP after a refusal). */
            s->flags |= SIDE_F_HELD;
            return consumed;
        }
        /* The upstream's 101: everything after its head is the new protocol. */
        pipe_start(c, len - consumed);
        return consumed;
    case HTTP_ERROR:
    default:
        if (id == SIDE_CLIENT) {
            struct log_event ev = {.class_uid = LOG_CLASS_HTTP,
                                   .activity = LOG_ACTIVITY_REQUEST,
                                   .action = LOG_ACTION_DENY,
                                   .severity = LOG_SEV_LOW,
                                   .status = hp->error_status ? hp->error_status : 400,
                                   .l7_decision = LOG_DECISION_DENY,
                                   .reason = hp->error_reason,
                                   .overflow = -1};
            conn_log(c, &ev);
            if (c->ex.resp_head_sent)
                conn_close(c, "malformed request");
            else
                conn_respond_error(c, hp->error_status ? hp->error_status : 400,
                                   hp->error_status == 431   ? "header_too_large"
                                   : hp->error_status == 414 ? "uri_too_long"
                                                             : "bad_request",
                                   hp->error_reason ? hp->error_reason : "malformed request");
        } else {
            log_msg(LOG_INFO, "conn %llu: upstream sent a malformed response: %s",
                    (unsigned long long)c->id, hp->error_reason ? hp->error_reason : "?");
            if (!c->ex.active)
                conn_finish(c, "upstream sent bytes between exchanges"); /* nobody asked */
            else if (c->ex.resp_head_sent)
                conn_close(c, "malformed response");
            else
                conn_respond_error(c, 502, "bad_upstream_response",
                                   "the upstream's response was malformed");
        }
        return len;
    }
}

void relay_on_eof(struct conn *c, enum side_id id)
{
    struct exchange *ex = &c->ex;
    if (id == SIDE_CLIENT) {
        if (!ex->active || !ex->req_done) {
            conn_close(c, ex->active ? "client closed mid-request" : "client closed");
            return;
        }
        /* The client half-closed after its request: answer it, then close. */
        ex->close_after = true;
        return;
    }
    if (!ex->active) {
        conn_finish(c, "upstream closed");
        return;
    }
    if (http_parser_finish(&c->resp_parser) == 0 &&
        (ex->resp_done || c->flags & CONN_F_CLOSING || c->state == CONN_S_LINGER))
        return;
    if (!ex->resp_head_sent) {
        conn_respond_error(c, 502, "upstream_closed", "the upstream closed before it answered");
        return;
    }
    /* Cut mid-body: what was relayed still goes out (it may sit corked in this very read),
     * then a FIN without close_notify, so that the client sees the truncation. */
    c->sides[SIDE_CLIENT].flags |= SIDE_F_BARE_END;
    conn_finish(c, "upstream closed mid-response");
}
