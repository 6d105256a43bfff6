/* SPDX-License-Identifier: MIT */
/* relay_request: one request head, from the parser to the upstream. Checked in order: the
 * authority (the tunnel's, or the forward proxy's upstream), one canonical path, the credential
 * placeholders it carries, the L7 policy, a websocket handshake; then re-serialised upstream
 * from the parsed fields, with the placeholders of the providers bound to this endpoint
 * replaced by their secrets. What the policy judged is what goes upstream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "airlock/metrics.h"
#include "airlock/path.h"
#include "relay_internal.h"

/* ---- websocket ---------------------------------------------------------------------------- */

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

/* ---- credentials -------------------------------------------------------------------------- */

static bool field_is(const struct http_field *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

/* Append text with every used provider's placeholder replaced by its secret. */
static void append_with_secrets(const struct exchange *ex, struct http_buf *b, const char *p,
                                size_t len, enum creds_mode mode)
{
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

static bool injected_header(const struct exchange *ex, const struct http_field *f)
{
    for (unsigned i = 0; i < ex->ncreds_used; i++) {
        const char *h = creds_inject_header(ex->creds_used[i]);
        if (h && f->name_len == strlen(h) && strncasecmp(f->name, h, f->name_len) == 0)
            return true;
    }
    return false;
}

/* A client's Connection field may not name what airlock sets for it (the header a provider
 * injects): hop-by-hop nominations are the client's to make only for its own fields. */
static bool nominates_injected_header(const struct exchange *ex)
{
    for (unsigned i = 0; i < ex->ncreds_used; i++) {
        const char *h = creds_inject_header(ex->creds_used[i]);
        if (h && http_head_has_token(ex->req, "connection", h))
            return true;
    }
    return false;
}

/* Add the providers of snapshot that bind the tunnel's host and port to this exchange's
 * redaction. */
static void redact_for(struct relay *r, const struct creds *snapshot)
{
    struct exchange *ex = &r->ex;
    for (size_t i = 0; snapshot && i < creds_count(snapshot); i++) {
        const struct creds_provider *p = creds_at(snapshot, i);
        if (!creds_binds(p, r->target.host, r->target.port))
            continue;
        if (ex->nredact == sizeof ex->redact_with / sizeof ex->redact_with[0]) {
            log_msg(LOG_WARN,
                    "conn %llu: more providers bind %s:%u than one response is redacted for",
                    (unsigned long long)r->id, r->target.host, (unsigned)r->target.port);
            return;
        }
        ex->redact_with[ex->nredact++] = p;
    }
}

static void choose_redaction(struct relay *r)
{
    struct exchange *ex = &r->ex;
    if (ex->ncreds_used > 0 && r->echo_creds != r->creds) {
        if (r->echo_creds)
            creds_unref(r->echo_creds);
        creds_ref(r->creds);
        r->echo_creds = r->creds;
    }
    ex->nredact = 0;
    /* A provider's host may hand back what it stored from any earlier request, on any
     * connection: every response from it is redacted, for its current secret and for the one
     * that last went out on this connection (a reload may have rotated it). Over a plain hop
     * too (a plain tunnel, an http:// origin): no secret goes out on one, but the host that
     * stored it may still answer there. */
    redact_for(r, r->creds);
    if (r->echo_creds != r->creds)
        redact_for(r, r->echo_creds);
}

/* Whether the upstream of this request is a verified TLS connection to r->target: inside a
 * tunnel, or a forward proxy's https:// origin. Only there do secrets go out, and only from
 * there are responses redacted; the client's own hop may be clear text, since it carries
 * placeholders, never secrets. */
static bool upstream_inspected(const struct relay *r)
{
    return (r->mode == RELAY_MODE_TUNNEL && r->inspected) ||
           (r->mode == RELAY_MODE_FORWARD && r->target_tls);
}

/* A placeholder refused before anything is forwarded: the log names the provider (and the
 * host, from the connection), never the secret. */
static bool refuse_credential(struct relay *r, const struct creds_provider *p, const char *error,
                              const char *detail)
{
    log_msg(LOG_WARN, "conn %llu: placeholder of provider %s to %s:%u: %s",
            (unsigned long long)r->id, creds_provider_name(p), r->target.host,
            (unsigned)r->target.port, error);
    relay_log_finding(r, 403, LOG_SEV_HIGH, creds_provider_name(p));
    metrics_inc(M_REQ_DENY);
    relay_refuse(r, 403, error, detail);
    return false;
}

/* Which providers this request involves. A placeholder for a host or port its provider does not
 * name (or for an upstream reached in clear text: a forward-proxy http:// request), or outside
 * the places its substitute_in lists, is refused before anything is forwarded. path: in, the
 * canonical path; out, the same with placeholders as [CREDENTIAL], which is what the policy
 * and the log see. false when the request was refused. */
static bool resolve_credentials(struct relay *r, char *path, size_t path_cap)
{
    struct exchange *ex = &r->ex;
    struct http_head *h = ex->req;
    if (r->creds)
        creds_unref(r->creds);
    r->creds = r->io->creds(r->ctx);
    ex->ncreds_used = 0;
    bool inspected = upstream_inspected(r);
    if (!r->creds) {
        choose_redaction(r);
        return true;
    }
    const struct creds_provider *mismatch = NULL, *misplaced = NULL;
    for (size_t i = 0; i < creds_count(r->creds); i++) {
        const struct creds_provider *p = creds_at(r->creds, i);
        bool appears = creds_appears(p, h->target, h->target_len);
        for (size_t f = 0; f < h->nfields && !appears; f++)
            appears = creds_appears(p, h->fields[f].value, h->fields[f].value_len);
        bool binds = inspected && creds_binds(p, r->target.host, r->target.port);
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
            if (binds && !misplaced && creds_misplaced(p, h) != NULL)
                misplaced = p;
        }
        if (binds && (appears || creds_inject_header(p)) &&
            ex->ncreds_used < sizeof ex->creds_used / sizeof ex->creds_used[0])
            ex->creds_used[ex->ncreds_used++] = p;
    }
    relay_copy_truncated(ex->log_path, sizeof ex->log_path, path);
    choose_redaction(r);
    if (mismatch)
        return refuse_credential(r, mismatch, "credential_endpoint_mismatch",
                                 inspected ? "a credential placeholder was sent to a host or port "
                                             "its provider does not name"
                                           : "credential placeholders are only substituted "
                                             "over verified TLS (a tunnel, or an https:// "
                                             "target), never over plain HTTP");
    if (misplaced)
        return refuse_credential(r, misplaced, "credential_location_refused",
                                 "a credential placeholder was sent in a place its provider's "
                                 "substitute_in does not list");
    return true;
}

/* ---- the head upstream -------------------------------------------------------------------- */

/* Host first (RFC 9112 §3.2), written from the authority that was judged, normalised: never
 * the client's spelling of it (a trailing dot or another case can pick another virtual host).
 * A tunnel's Host carries the port when the client's did; a forward request's unless it is the
 * scheme's default (RFC 9110 §7.2). */
static void append_host(const struct relay *r, struct http_buf *b)
{
    uint16_t default_port = r->target_tls ? 443 : 80;
    bool show_port =
        r->mode == RELAY_MODE_FORWARD ? r->target.port != default_port : r->ex.host_has_port;
    char host[TARGET_HOST_MAX + 16];
    target_format(&r->target, host, sizeof host);
    if (!show_port) /* strip ":port" but keep an IPv6 literal's brackets */
        *strrchr(host, ':') = '\0';
    http_buf_printf(b, "Host: %s\r\n", host);
}

/* Whether a client's field goes upstream as it is (its value with placeholders substituted). */
static bool forwards_field(const struct exchange *ex, const struct http_head *h,
                           const struct http_field *f)
{
    /* Framing and Host are written from what was parsed, never copied: the upstream must read
     * exactly the message that was judged. */
    if (http_field_is_framing(f) || injected_header(ex, f))
        return false;
    /* Proxy-* fields are for us, never for the origin (DESIGN.md "Data path rules"). */
    if (f->name_len >= 6 && strncasecmp(f->name, "proxy-", 6) == 0)
        return false;
    /* "TE: trailers" is the one hop-by-hop value worth passing on (gRPC needs it). */
    if (http_field_is_hop_by_hop(h, f) &&
        !(field_is(f, "te") && f->value_len == 8 && !strncasecmp(f->value, "trailers", 8)))
        return false;
    /* A secret goes out: the answer must come unencoded and whole for an echo in it to be
     * redacted (see relay_response.c). */
    if (ex->nredact &&
        (field_is(f, "accept-encoding") || field_is(f, "range") || field_is(f, "if-range")))
        return false;
    return true;
}

/* Rebuild the request head from parsed fields (RFC 9112 §3, RFC 9110 §7.6.1): the canonical
 * target, hop-by-hop fields dropped, our own framing and connection fields added, secrets
 * substituted. The buffer that held secrets is wiped. */
static int write_request_head(struct relay *r, const char *path, const char *query, bool has_query)
{
    struct exchange *ex = &r->ex;
    struct http_head *h = ex->req;
    struct http_buf b = {.wipe = true}; /* it will hold secrets: never realloc'd */
    http_buf_append(&b, h->method, h->method_len);
    http_buf_puts(&b, " ");
    append_with_secrets(ex, &b, path, strlen(path), CREDS_SECRET_PCT);
    if (has_query) {
        http_buf_puts(&b, "?");
        append_with_secrets(ex, &b, query, strlen(query), CREDS_SECRET_PCT);
    }
    http_buf_puts(&b, " HTTP/1.1\r\n");
    append_host(r, &b);
    for (size_t i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (!forwards_field(ex, h, f))
            continue;
        http_buf_append(&b, f->name, f->name_len);
        http_buf_puts(&b, ": ");
        append_with_secrets(ex, &b, f->value, f->value_len, CREDS_SECRET);
        http_buf_puts(&b, "\r\n");
    }
    for (unsigned i = 0; i < ex->ncreds_used; i++) {
        const char *name = creds_inject_header(ex->creds_used[i]);
        if (!name)
            continue;
        http_buf_printf(&b, "%s: ", name);
        creds_inject_value(ex->creds_used[i], &b);
        http_buf_puts(&b, "\r\n");
    }
    /* Without the field any content coding would be acceptable (RFC 9110 §12.5.3). */
    if (ex->nredact)
        http_buf_puts(&b, "Accept-Encoding: identity\r\n");
    if (ex->upgrade_asked)
        http_buf_puts(&b, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else if (ex->close_after)
        http_buf_puts(&b, "Connection: close\r\n");
    if (h->chunked) {
        /* The chunks are re-framed by us; every other coding goes on as the client applied it. */
        http_buf_printf(&b, "Transfer-Encoding: %s\r\n", h->transfer_codings);
        ex->req_chunked_out = true;
    } else if (h->has_content_length && !ex->upgrade_asked) {
        /* (an upgrade's Content-Length can only be 0: check_websocket refused the rest, and a
         * handshake goes without framing, like every other one) */
        http_buf_printf(&b, "Content-Length: %llu\r\n", (unsigned long long)h->content_length);
    }
    http_buf_puts(&b, "\r\n");
    int rc = -1;
    if (!b.failed)
        rc = relay_write(r, SIDE_UPSTREAM, b.data, b.len);
    else
        relay_refuse(r, 502, "internal_error", "out of memory");
    creds_buf_wipe(&b);
    return rc;
}

/* ---- checks ------------------------------------------------------------------------------- */

/* The request's authority against the connection's. A forward proxy's request for another
 * origin (scheme, host or port: RFC 6454 §4) asks for a dial (and pauses); a tunnel's must name
 * the tunnel (DESIGN.md "Policy"; RFC 9110 §7.4). *target and *target_len: the origin-form part
 * to canonicalise. 1: go on, 0: paused for a dial, -1: refused. */
static int check_authority(struct relay *r, const char **target, size_t *target_len)
{
    struct exchange *ex = &r->ex;
    const struct http_head *h = ex->req;
    struct authority req_auth;
    if (r->mode == RELAY_MODE_FORWARD) {
        bool tls;
        if (target_parse_absolute(h->target, h->target_len, &tls, &req_auth, target, target_len) <
            0) {
            relay_refuse(r, 400, "bad_request",
                         "a forward-proxy request needs an absolute http:// or https:// target");
            return -1;
        }
        if (strcmp(req_auth.host, r->target.host) != 0 || req_auth.port != r->target.port ||
            tls != r->target_tls) {
            /* Another origin on the same proxy connection: dial it, then resume here. */
            r->target = req_auth;
            r->target_tls = tls;
            ex->active = false;
            r->dial_pending = true;
            return 0;
        }
        return 1;
    }
    /* An absolute-form target names an authority of its own (RFC 9112 §3.2.2), which must be
     * the tunnel's as well as the Host field's. Either scheme: the tunnel, not the URI, decides
     * how the bytes travel. */
    bool uri_matches = true, uri_tls;
    if (*target_len == 0 || (*target)[0] != '/') {
        if (target_parse_absolute(*target, *target_len, &uri_tls, &req_auth, target, target_len) ==
            0) {
            uri_matches = target_authority_matches(&r->target, &req_auth);
        } else if (!(*target_len == 1 && (*target)[0] == '*')) {
            relay_refuse(r, 400, "bad_request", "unsupported request-target form");
            return -1;
        }
    }
    const struct http_field *hf = http_head_find(h, "host");
    if (!uri_matches || !hf ||
        target_parse_authority(hf->value, hf->value_len, false, 0, &req_auth) < 0 ||
        !target_authority_matches(&r->target, &req_auth)) {
        relay_log_finding(r, 421, LOG_SEV_MEDIUM, "request authority differs from the tunnel's");
        metrics_inc(M_REQ_DENY);
        relay_refuse(r, 421, "request_authority_mismatch",
                     "the request's Host and target must name the tunnel's host and port");
        return -1;
    }
    ex->host_has_port = req_auth.port_present;
    return 1;
}

/* One canonical path: what the policy sees is what goes upstream. false: refused. */
static bool canonical_target(struct relay *r, const char *target, size_t target_len, char *path,
                             char *query, bool *has_query)
{
    struct exchange *ex = &r->ex;
    enum path_result pr;
    *has_query = false;
    if (target_len == 1 && target[0] == '*' && ex->req->method_id == HTTP_OPTIONS) {
        strcpy(path, "*");
        pr = PATH_OK;
    } else {
        pr = path_canonicalize(target, target_len, path, PATH_MAX_LEN + 1, query, PATH_MAX_LEN + 1,
                               has_query);
    }
    relay_copy_truncated(ex->log_path, sizeof ex->log_path, pr == PATH_OK ? path : "");
    if (pr == PATH_OK)
        return true;
    int status = pr == PATH_TOO_LONG ? 414 : 400;
    relay_log_denied(r, status, "malformed path", LOG_SEV_LOW);
    relay_refuse(r, status, pr == PATH_TOO_LONG ? "uri_too_long" : "bad_request",
                 pr == PATH_TOO_LONG ? "the request path is too long"
                                     : "the request path is malformed or ambiguous");
    return false;
}

/* The L7 policy, on the snapshot current now (a reload applies to the next request). The
 * method overrides the request carries are judged too: an upstream may act on them. false:
 * refused. */
static bool judge(struct relay *r, const char *policy_path, const char *query, bool websocket)
{
    struct exchange *ex = &r->ex;
    const struct http_head *h = ex->req;
    struct policy_request q;
    policy_request_init(&q, ex->method, policy_path, websocket);
    int bad_override = policy_request_add_query(&q, query);
    for (size_t i = 0; i < h->nfields && bad_override == 0; i++)
        bad_override = policy_request_add_field(&q, h->fields[i].name, h->fields[i].name_len,
                                                h->fields[i].value, h->fields[i].value_len);
    if (bad_override < 0) {
        relay_log_denied(r, 400, "invalid method override", LOG_SEV_LOW);
        relay_refuse(r, 400, "bad_request",
                     "each method override must be one method (a token), at most 8");
        return false;
    }
    struct policy_l7 d;
    r->io->judge(r->ctx, &r->target, &q, &d);
    if (d.verdict == POLICY_DENY) {
        relay_log_denied(r, 403, d.reason, LOG_SEV_MEDIUM);
        relay_refuse_l7(r, &d);
        return false;
    }
    ex->audit = d.verdict == POLICY_AUDIT;
    if (ex->audit)
        ex->audit_reason = d.reason;
    return true;
}

/* A websocket upgrade is forwarded only as a whole, valid handshake; any other Upgrade is
 * hop-by-hop and dropped, so the upstream has no reason to switch (RFC 9110 §7.8). */
static bool check_websocket(struct relay *r)
{
    struct exchange *ex = &r->ex;
    const char *bad = websocket_request_problem(ex->req);
    if (bad) {
        relay_log_denied(r, 400, bad, LOG_SEV_LOW);
        relay_refuse(r, 400, "bad_request", bad);
        return false;
    }
    const struct http_field *key = http_head_find(ex->req, "sec-websocket-key");
    ex->upgrade_asked = true;
    websocket_accept(key->value, key->value_len, ex->ws_accept);
    return true;
}

int relay_start_request(struct relay *r)
{
    struct exchange *ex = &r->ex;
    const struct http_head *h = ex->req;
    ex->active = true;
    snprintf(ex->method, sizeof ex->method, "%.*s", (int)h->method_len, h->method);
    ex->head_request = h->method_id == HTTP_HEAD;
    ex->close_after = !h->keep_alive || (r->draining && *r->draining);
    if (h->method_id == HTTP_CONNECT) {
        relay_refuse(r, 400, "bad_request", "CONNECT inside a tunnel is not supported");
        return HTTP_HEAD_ERROR;
    }
    const char *target = h->target;
    size_t target_len = h->target_len;
    int auth = check_authority(r, &target, &target_len);
    if (auth <= 0)
        return auth == 0 ? HTTP_HEAD_PAUSE : HTTP_HEAD_ERROR;

    char path[PATH_MAX_LEN + 1], query[PATH_MAX_LEN + 1];
    bool has_query;
    if (!canonical_target(r, target, target_len, path, query, &has_query))
        return HTTP_HEAD_ERROR;
    char policy_path[PATH_MAX_LEN + 1];
    memcpy(policy_path, path, strlen(path) + 1);
    if (!resolve_credentials(r, policy_path, sizeof policy_path))
        return HTTP_HEAD_ERROR;
    if (nominates_injected_header(ex)) {
        relay_log_denied(r, 400, "Connection names an injected field", LOG_SEV_MEDIUM);
        relay_refuse(r, 400, "bad_request", "Connection may not name a field that airlock writes");
        return HTTP_HEAD_ERROR;
    }
    bool websocket = http_head_has_token(h, "upgrade", "websocket");
    if (!judge(r, policy_path, has_query ? query : NULL, websocket))
        return HTTP_HEAD_ERROR;
    if (websocket && !check_websocket(r))
        return HTTP_HEAD_ERROR;
    if (write_request_head(r, path, query, has_query) < 0)
        return HTTP_HEAD_ERROR;
    r->io->progress(r->ctx, RELAY_REQUEST_SENT);
    return HTTP_HEAD_CONTINUE;
}

/* ---- bodies ------------------------------------------------------------------------------- */

int relay_write_chunk(struct relay *r, enum side_id to, const char *p, size_t len)
{
    char hdr[24];
    int n = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
    struct http_span spans[3] = {{hdr, (size_t)n}, {p, len}, {"\r\n", 2}};
    return relay_writev(r, to, spans, 3);
}

int relay_write_last_chunk(struct relay *r, enum side_id to, const struct http_head *trailers)
{
    struct http_buf b = {0};
    http_buf_puts(&b, "0\r\n");
    for (size_t i = 0; trailers && i < trailers->nfields; i++) {
        const struct http_field *f = &trailers->fields[i];
        /* RFC 9110 §6.5.1: framing, routing and connection fields have no place in trailers;
         * a recipient that merges trailers into the head must not find any there. */
        if (http_field_is_framing(f) || http_field_is_hop_by_hop(NULL, f))
            continue;
        if (to == SIDE_CLIENT) {
            relay_append_field(r, &b, f);
            continue;
        }
        http_buf_append(&b, f->name, f->name_len);
        http_buf_puts(&b, ": ");
        http_buf_append(&b, f->value, f->value_len);
        http_buf_puts(&b, "\r\n");
    }
    http_buf_puts(&b, "\r\n");
    int rc = b.failed ? -1 : relay_write(r, to, b.data, b.len);
    http_buf_free(&b);
    return rc;
}
