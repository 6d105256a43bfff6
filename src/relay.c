/* SPDX-License-Identifier: MIT */
/* relay: the state machine (relay.h). This file feeds the two parsers, reads the connection's
 * first request, and turns what the parsers say into outcomes; relay_request.c judges and
 * writes requests, relay_response.c writes responses. */
#include "airlock/relay.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "airlock/metrics.h"
#include "airlock/redact.h"
#include "relay_internal.h"

static int on_req_head(void *owner, struct http_head *head);
static int on_req_body(void *owner, const char *p, size_t len);
static int on_req_complete(void *owner, const struct http_head *trailers);

static const struct http_parser_cbs request_cbs = {
    .on_head = on_req_head, .on_body = on_req_body, .on_complete = on_req_complete};
static const struct http_parser_cbs response_cbs = {.on_head = relay_on_resp_head,
                                                    .on_body = relay_on_resp_body,
                                                    .on_complete = relay_on_resp_complete};

static void parser_init(struct relay *r, struct http_parser *p, enum http_kind kind)
{
    http_parser_init(p, kind, kind == HTTP_KIND_REQUEST ? &request_cbs : &response_cbs, r);
    http_parser_set_limits(p, r->limits);
}

static void parser_restart(struct relay *r, struct http_parser *p, enum http_kind kind)
{
    http_parser_deinit(p);
    parser_init(r, p, kind);
}

struct relay *relay_new(const struct relay_setup *setup, const struct relay_io *io, void *ctx)
{
    struct relay *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->io = io;
    r->ctx = ctx;
    r->id = setup->id;
    r->draining = setup->draining;
    r->limits = setup->limits ? setup->limits : &http_default_limits;
    r->mode = RELAY_MODE_FIRST;
    parser_init(r, &r->req_parser, HTTP_KIND_REQUEST);
    parser_init(r, &r->resp_parser, HTTP_KIND_RESPONSE);
    return r;
}

static void log_exchange(struct relay *r, enum log_outcome outcome, const char *reason);

static void exchange_reset(struct relay *r)
{
    redact_free(r->ex.redact); /* wipes a held-back prefix of a secret */
    http_head_free(r->ex.req);
    memset(&r->ex, 0, sizeof r->ex);
}

void relay_free(struct relay *r)
{
    if (!r)
        return;
    /* A connection that ends mid-exchange still leaves its request's line. */
    log_exchange(r, LOG_OUTCOME_CONSUMED, "connection closed before the exchange ended");
    exchange_reset(r);
    http_parser_deinit(&r->req_parser);
    http_parser_deinit(&r->resp_parser);
    if (r->creds)
        creds_unref(r->creds);
    if (r->echo_creds)
        creds_unref(r->echo_creds);
    free(r);
}

void relay_begin_tunnel(struct relay *r, const struct authority *target)
{
    r->mode = RELAY_MODE_TUNNEL;
    r->inspected = true;
    r->target = *target; /* a redirected connection's: no CONNECT told the relay */
    parser_restart(r, &r->req_parser, HTTP_KIND_REQUEST);
}

void relay_begin_plain_tunnel(struct relay *r, const struct authority *target)
{
    r->mode = RELAY_MODE_TUNNEL;
    r->inspected = false;
    r->target = *target;
    parser_restart(r, &r->req_parser, HTTP_KIND_REQUEST);
}

void relay_dialed(struct relay *r)
{
    /* A fresh upstream: nothing of the last one's stream may be taken for a response. */
    parser_restart(r, &r->resp_parser, HTTP_KIND_RESPONSE);
    r->upstream_eof = false;
    if (!r->stopped && r->ex.req)
        relay_start_request(r);
}

bool relay_idle(const struct relay *r)
{
    if (r->mode == RELAY_MODE_FIRST)
        return !http_parser_in_message(&r->req_parser);
    return !r->ex.active && !r->ex.req;
}

void relay_describe(const struct relay *r, struct answer *a)
{
    if (r->ex.method[0])
        a->method = r->ex.method;
    a->in_request = r->ex.active && r->mode != RELAY_MODE_FIRST;
    if (a->in_request && r->ex.log_path[0])
        a->path = r->ex.log_path;
}

/* ---- output ------------------------------------------------------------------------------ */

int relay_writev(struct relay *r, enum side_id to, const struct http_span *spans, unsigned n)
{
    if (r->stopped)
        return -1;
    if (r->io->write(r->ctx, to, spans, n) < 0) {
        r->stopped = true; /* the transport is closing */
        return -1;
    }
    return 0;
}

int relay_write(struct relay *r, enum side_id to, const char *p, size_t len)
{
    struct http_span s = {p, len};
    return relay_writev(r, to, &s, 1);
}

void relay_report(struct relay *r, const struct relay_result *res)
{
    if (r->stopped)
        return;
    if (res->outcome != RELAY_REUSABLE && res->outcome != RELAY_TUNNEL &&
        res->outcome != RELAY_DIAL)
        r->stopped = true;
    r->io->outcome(r->ctx, res);
}

void relay_refuse(struct relay *r, int status, const char *error, const char *detail)
{
    struct relay_result res = {.outcome = RELAY_REFUSED, .reason = detail};
    res.answer.status = status;
    res.answer.error = error;
    res.answer.detail = detail;
    relay_describe(r, &res.answer);
    relay_report(r, &res);
}

void relay_refuse_l7(struct relay *r, const struct policy_l7 *d)
{
    struct relay_result res = {.outcome = RELAY_REFUSED, .reason = d->reason};
    res.answer.status = 403;
    res.answer.error = "policy_denied";
    res.answer.detail = d->reason;
    res.answer.rule_missing = d->rule_missing;
    res.answer.deny_method = d->deny_rule.method;
    res.answer.deny_path = d->deny_rule.path;
    relay_describe(r, &res.answer);
    relay_report(r, &res);
}

void relay_copy_truncated(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- logging ----------------------------------------------------------------------------- */

static void log_request_outcome(struct relay *r, enum log_action action, enum log_decision decision,
                                int status, const char *reason, enum log_severity sev,
                                enum log_outcome outcome)
{
    r->ex.logged = true;
    metrics_inc(decision == LOG_DECISION_DENY    ? M_REQ_DENY
                : decision == LOG_DECISION_AUDIT ? M_REQ_AUDIT
                                                 : M_REQ_ALLOW);
    struct log_event ev = {.class_uid = LOG_CLASS_HTTP,
                           .activity = LOG_ACTIVITY_REQUEST,
                           .action = action,
                           .severity = sev,
                           .method = r->ex.method,
                           .path = r->ex.log_path,
                           .status = status,
                           .l7_decision = decision,
                           .reason = reason,
                           .relay_outcome = outcome,
                           .overflow = -1};
    r->io->log(r->ctx, &ev);
}

void relay_log_denied(struct relay *r, int status, const char *reason, enum log_severity sev)
{
    log_request_outcome(r, LOG_ACTION_DENY, LOG_DECISION_DENY, status, reason, sev,
                        LOG_OUTCOME_CONSUMED);
}

/* An allowed (or audited) request is logged once, when its exchange ends, with its outcome. */
static void log_exchange(struct relay *r, enum log_outcome outcome, const char *reason)
{
    struct exchange *ex = &r->ex;
    /* Also without a status: a request that went upstream and never saw its answer (the
     * connection or stream ended first) is still a request that left. */
    if (ex->logged || !ex->active)
        return;
    enum log_decision decision = ex->audit      ? LOG_DECISION_AUDIT
                                 : ex->upgraded ? LOG_DECISION_ALLOW_UPGRADE
                                                : LOG_DECISION_ALLOW;
    log_request_outcome(r, ex->audit ? LOG_ACTION_AUDIT : LOG_ACTION_ALLOW, decision, ex->status,
                        reason ? reason : ex->audit_reason, ex->audit ? LOG_SEV_LOW : LOG_SEV_INFO,
                        outcome);
}

void relay_log_upgraded(struct relay *r)
{
    log_exchange(r, LOG_OUTCOME_UPGRADED, NULL);
}

void relay_log_finding(struct relay *r, int status, enum log_severity sev, const char *reason)
{
    metrics_inc(M_FINDINGS);
    struct log_event ev = {.class_uid = LOG_CLASS_FINDING,
                           .activity = LOG_ACTIVITY_FINDING,
                           .action = LOG_ACTION_DENY,
                           .severity = sev,
                           .method = r->ex.method,
                           .path = r->ex.log_path[0] ? r->ex.log_path : NULL,
                           .status = status,
                           .l7_decision = LOG_DECISION_DENY,
                           .reason = reason,
                           .overflow = -1};
    r->io->log(r->ctx, &ev);
}

/* The first request refused before any destination was decided (a CONNECT line, say): logged
 * as a refused CONNECT, answered 400. */
static int refuse_first(struct relay *r, const char *reason, const char *detail)
{
    metrics_inc(M_CONNECT_DENY);
    struct log_event ev = {.class_uid = LOG_CLASS_NETWORK,
                           .activity = LOG_ACTIVITY_CONNECT,
                           .action = LOG_ACTION_DENY,
                           .severity = LOG_SEV_MEDIUM,
                           .status = 400,
                           .reason = reason,
                           .overflow = -1};
    r->io->log(r->ctx, &ev);
    relay_refuse(r, 400, "bad_request", detail);
    return HTTP_HEAD_ERROR;
}

/* ---- the first request ------------------------------------------------------------------- */

/* CONNECT host:port opens a tunnel (TUNNEL once the message has ended); an absolute-form
 * http:// or https:// request makes the connection a forward proxy (DIAL, its head held). */
static int on_first_head(struct relay *r, struct http_head *head)
{
    struct exchange *ex = &r->ex;
    struct authority a;
    snprintf(ex->method, sizeof ex->method, "%.*s", (int)head->method_len, head->method);
    if (head->method_id == HTTP_CONNECT) {
        /* RFC 9112 §3.2.3: authority form, port required; strict host forms only. */
        bool ok = target_parse_authority(head->target, head->target_len, true, 0, &a) == 0;
        http_head_free(head);
        if (!ok)
            return refuse_first(r, "malformed CONNECT authority",
                                "CONNECT needs host:port with a DNS name, a dotted-quad IPv4 "
                                "address or a bracketed IPv6 address");
        r->target = a;
        return HTTP_HEAD_CONTINUE;
    }
    const char *path;
    size_t path_len;
    bool tls;
    if (head->target_len == 0 || head->target[0] == '/' ||
        target_parse_absolute(head->target, head->target_len, &tls, &a, &path, &path_len) < 0) {
        http_head_free(head);
        return refuse_first(r, "first request is neither CONNECT nor absolute-form",
                            "airlock is a proxy: send CONNECT host:port, or an absolute-form "
                            "http:// or https:// request");
    }
    r->mode = RELAY_MODE_FORWARD;
    r->target = a;
    r->target_tls = tls;
    ex->req = head;
    r->dial_pending = true; /* reported when the parser has paused */
    return HTTP_HEAD_PAUSE;
}

/* ---- requests ---------------------------------------------------------------------------- */

static int on_req_head(void *owner, struct http_head *head)
{
    struct relay *r = owner;
    if (r->mode == RELAY_MODE_FIRST)
        return on_first_head(r, head);
    if (r->ex.active || r->ex.req) {
        /* The parser pauses after each request, so this cannot happen; refuse if it does. */
        http_head_free(head);
        relay_refuse(r, 400, "bad_request", "request received before the previous ended");
        return HTTP_HEAD_ERROR;
    }
    r->ex.req = head;
    return relay_start_request(r);
}

static int on_req_body(void *owner, const char *p, size_t len)
{
    struct relay *r = owner;
    if (r->mode == RELAY_MODE_FIRST || !r->ex.active)
        return -1; /* a CONNECT's body, say: there is nobody to give it to */
    int rc = r->ex.req_chunked_out ? relay_write_chunk(r, SIDE_UPSTREAM, p, len)
                                   : relay_write(r, SIDE_UPSTREAM, p, len);
    return rc < 0 ? -1 : 0;
}

static int on_req_complete(void *owner, const struct http_head *trailers)
{
    struct relay *r = owner;
    if (r->stopped)
        return -1;
    if (r->mode == RELAY_MODE_FIRST) /* CONNECT: the tunnel takes over (HTTP_UPGRADE follows) */
        return 0;
    if (r->ex.req_chunked_out && relay_write_last_chunk(r, SIDE_UPSTREAM, trailers) < 0)
        return -1;
    if (!http_parser_keep_alive(&r->req_parser))
        r->ex.close_after = true; /* the parser reads nothing after this message */
    r->ex.req_done = true;
    /* One exchange at a time: a pipelined next request waits until this one ends. */
    return HTTP_PAUSE_BODY;
}

/* ---- outcomes ---------------------------------------------------------------------------- */

void relay_exchange_end(struct relay *r, enum relay_outcome outcome)
{
    struct exchange *ex = &r->ex;
    if (outcome == RELAY_REUSABLE && r->draining && *r->draining)
        outcome = RELAY_CONSUMED;
    enum log_outcome logged = (enum log_outcome)outcome; /* the same values (relay.h) */
    log_msg(LOG_DEBUG, "conn %llu: exchange %s %d: %s", (unsigned long long)r->id, ex->method,
            ex->status, logfmt_outcome_name(logged));
    bool upgrade_refused = ex->upgrade_asked || (ex->req && ex->req->upgrade);
    log_exchange(r, logged, NULL);
    metrics_inc(outcome == RELAY_CONSUMED ? M_TUNNELS_CONSUMED : M_TUNNELS_REUSABLE);
    exchange_reset(r);
    struct relay_result res = {.outcome = outcome, .until_close = r->upstream_eof};
    if (outcome == RELAY_CONSUMED) {
        res.reason = "exchange consumed the connection";
    } else {
        res.reason = "exchange ended: connection reusable";
        r->resume_after_upgrade = upgrade_refused;
    }
    relay_report(r, &res);
}

static void on_parse_error(struct relay *r, enum side_id from, const struct http_parser *hp)
{
    struct exchange *ex = &r->ex;
    if (from == SIDE_CLIENT) {
        int status = hp->error_status ? hp->error_status : 400;
        struct log_event ev = {.class_uid = LOG_CLASS_HTTP,
                               .activity = LOG_ACTIVITY_REQUEST,
                               .action = LOG_ACTION_DENY,
                               .severity = LOG_SEV_LOW,
                               .status = status,
                               .l7_decision = LOG_DECISION_DENY,
                               .reason = hp->error_reason,
                               .overflow = -1};
        r->io->log(r->ctx, &ev);
        if (ex->resp_head_sent) {
            relay_report(
                r, &(struct relay_result){.outcome = RELAY_ABORTED, .reason = "malformed request"});
            return;
        }
        relay_refuse(r, status,
                     status == 431   ? "header_too_large"
                     : status == 414 ? "uri_too_long"
                                     : "bad_request",
                     hp->error_reason ? hp->error_reason : "malformed request");
        return;
    }
    log_msg(LOG_INFO, "conn %llu: upstream sent a malformed response: %s",
            (unsigned long long)r->id, hp->error_reason ? hp->error_reason : "?");
    if (!ex->active) /* nobody asked */
        relay_report(r, &(struct relay_result){.outcome = RELAY_CONSUMED,
                                               .reason = "upstream sent bytes between exchanges"});
    else if (ex->resp_head_sent)
        relay_report(
            r, &(struct relay_result){.outcome = RELAY_ABORTED, .reason = "malformed response"});
    else
        relay_refuse(r, 502, "bad_upstream_response", "the upstream's response was malformed");
}

/* ---- feeding ----------------------------------------------------------------------------- */

size_t relay_feed(struct relay *r, enum side_id from, const char *p, size_t len)
{
    if (r->stopped)
        return len;
    struct http_parser *hp = from == SIDE_CLIENT ? &r->req_parser : &r->resp_parser;
    bool idle_before = from == SIDE_CLIENT && !http_parser_in_message(hp);
    size_t consumed = 0;
    enum http_exec_status st = http_parser_execute(hp, p, len, &consumed);
    if (r->stopped)
        return len;
    if (idle_before && http_parser_in_message(hp) && !r->ex.active)
        r->io->progress(r->ctx, RELAY_HEAD_STARTED);
    switch (st) {
    case HTTP_OK:
        return len;
    case HTTP_PAUSED:
        /* A message ended (one exchange at a time), or a head waits for its dial: the side is
         * held until relay_resume. */
        if (r->dial_pending) {
            r->dial_pending = false;
            relay_report(r, &(struct relay_result){.outcome = RELAY_DIAL,
                                                   .reason = "forward-proxy request",
                                                   .target = r->target,
                                                   .tls = r->target_tls});
        }
        return consumed;
    case HTTP_UPGRADE:
        if (from == SIDE_CLIENT) {
            if (r->mode == RELAY_MODE_FIRST)
                /* The rest of the client's bytes are the tunnel's (TLS, or raw for tcp). */
                relay_report(r, &(struct relay_result){.outcome = RELAY_TUNNEL,
                                                       .reason = "CONNECT",
                                                       .target = r->target});
            /* Else a websocket request: what follows is the client's side of the new protocol,
             * held until the upstream's 101 (or parsed as HTTP after a refusal). */
            return consumed;
        }
        /* The upstream's 101: everything after its head is the new protocol. */
        relay_report(r, &(struct relay_result){.outcome = RELAY_UPGRADED,
                                               .reason = "websocket upgrade",
                                               .overflow = len - consumed});
        return consumed;
    case HTTP_ERROR:
    default:
        on_parse_error(r, from, hp);
        return len;
    }
}

void relay_resume(struct relay *r, enum side_id side)
{
    if (r->stopped)
        return;
    if (side == SIDE_UPSTREAM) {
        http_parser_resume(&r->resp_parser);
    } else if (r->resume_after_upgrade) {
        r->resume_after_upgrade = false;
        http_parser_resume_after_upgrade(&r->req_parser);
    } else {
        http_parser_resume(&r->req_parser);
    }
    /* llhttp runs the steps it owes after a pause (a bodiless request paused at its head
     * completes only now) on the next execute, even an empty one. */
    relay_feed(r, side, "", 0);
}

void relay_eof(struct relay *r, enum side_id from)
{
    struct exchange *ex = &r->ex;
    if (r->stopped)
        return;
    if (from == SIDE_CLIENT) {
        if (r->mode == RELAY_MODE_FIRST || !ex->active || !ex->req_done) {
            const char *why = r->mode == RELAY_MODE_FIRST
                                  ? (http_parser_in_message(&r->req_parser)
                                         ? "client closed inside its first request"
                                         : "client closed")
                              : ex->active ? "client closed mid-request"
                                           : "client closed";
            relay_report(r, &(struct relay_result){.outcome = RELAY_ABORTED, .reason = why});
            return;
        }
        /* The client half-closed after its request: answer it, then close. */
        ex->close_after = true;
        return;
    }
    if (!ex->active) {
        relay_report(
            r, &(struct relay_result){.outcome = RELAY_CONSUMED, .reason = "upstream closed"});
        return;
    }
    r->upstream_eof = true; /* the exchange now ends with this close */
    /* A response read until close ends here (and the exchange with it). */
    if (http_parser_finish(&r->resp_parser) == 0 && r->stopped)
        return;
    if (!ex->resp_head_sent) {
        relay_refuse(r, 502, "upstream_closed", "the upstream closed before it answered");
        return;
    }
    /* Cut mid-body: what was relayed still goes out, then an end the client can tell from a
     * complete one. */
    relay_report(r, &(struct relay_result){.outcome = RELAY_CONSUMED,
                                           .reason = "upstream closed mid-response",
                                           .truncated = true});
}
