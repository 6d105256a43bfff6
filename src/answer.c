/* SPDX-License-Identifier: MIT */
/* answer: the bytes of airlock's own answers (answer.h). Pure. */
#include "airlock/answer.h"

#include <string.h>

#include "airlock/json.h"

const char *answer_reason_phrase(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 421:
        return "Misdirected Request";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

/* One sentence an agent can act on, per refusal. */
static const char *next_steps(const struct answer *a)
{
    if (a->deny_path)
        return "A deny rule of the policy matched (deny_rule); deny rules win over every allow "
               "rule, so use another method or path.";
    if (!strcmp(a->error, "policy_denied")) {
        if (!a->in_request)
            return "Use a destination the policy allows, or ask the operator to add an endpoint "
                   "for this host and port.";
        if (a->rule_missing && a->rule_missing[0])
            return "Use an allowed method and path, or ask the operator to add rule_missing to "
                   "the policy.";
        return "No rule can allow this request on this connection; see detail, and ask the "
               "operator if it should be allowed.";
    }
    if (!strcmp(a->error, "ssrf_denied"))
        return "The name resolves to a private, loopback, link-local or metadata address; if "
               "that is intended, the operator must list it in the endpoint's allowed_ips.";
    if (!strcmp(a->error, "request_authority_mismatch"))
        return "Send requests only for the host and port of the CONNECT tunnel; open a new "
               "tunnel for another host.";
    if (!strcmp(a->error, "credential_endpoint_mismatch"))
        return "Use this placeholder only with the hosts its provider names.";
    return NULL;
}

static void append_member(struct http_buf *b, const char *name, const char *value)
{
    http_buf_printf(b, ",\"%s\":", name);
    json_string_append(b, value);
}

static void build_body(const struct answer *a, struct http_buf *body)
{
    http_buf_puts(body, "{\"error\":");
    json_string_append(body, a->error);
    append_member(body, "detail", a->detail ? a->detail : "");
    if (a->host) {
        if (a->policy)
            append_member(body, "policy", a->policy);
        else
            http_buf_puts(body, ",\"policy\":null");
        append_member(body, "host", a->host);
        http_buf_printf(body, ",\"port\":%u", (unsigned)a->port);
    }
    if (a->method)
        append_member(body, "method", a->method);
    if (a->in_request && a->path && a->path[0])
        append_member(body, "path", a->path);
    if (a->rule_missing && a->rule_missing[0]) /* JSON that airlock wrote itself */
        http_buf_printf(body, ",\"rule_missing\":%s", a->rule_missing);
    if (a->deny_path) {
        http_buf_puts(body, ",\"deny_rule\":{\"method\":");
        json_string_append(body, a->deny_method ? a->deny_method : "*");
        append_member(body, "path", a->deny_path);
        http_buf_puts(body, "}");
    }
    const char *next = next_steps(a);
    if (next)
        append_member(body, "next_steps", next);
    http_buf_puts(body, "}\n");
}

void answer_build(const struct answer *a, struct http_buf *out)
{
    struct http_buf body = {0};
    build_body(a, &body);
    if (body.failed) {
        out->failed = true;
        http_buf_free(&body);
        return;
    }
    http_buf_printf(out,
                    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                    "Connection: close\r\n%s\r\n",
                    a->status, answer_reason_phrase(a->status), body.len,
                    a->status == 403 || a->status == 421 ? "X-Airlock-Decision: deny\r\n" : "");
    if (!(a->method && strcmp(a->method, "HEAD") == 0))
        http_buf_append(out, body.data, body.len);
    http_buf_free(&body);
}
