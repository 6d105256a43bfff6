/* SPDX-License-Identifier: MIT */
/* answer: airlock's own answers to a client, built as bytes (pure). Every refusal is one
 * HTTP/1.1 response with a JSON body (DESIGN.md "Policy": error, detail, policy, host, port,
 * method, path, rule_missing or deny_rule, next_steps) and Connection: close. Only static text
 * and parsed, normalised values go into it: never raw request bytes, a query string, a
 * placeholder or a secret. conn_respond() is the one function that sends it. */
#ifndef AIRLOCK_ANSWER_H
#define AIRLOCK_ANSWER_H

#include <stdbool.h>
#include <stdint.h>

#include "airlock/http.h"

struct answer {
    int status;         /* 400, 403, 408, 413, 414, 421, 431, 502, 503, 504 */
    const char *error;  /* the JSON "error" value: "policy_denied", "bad_request", ... */
    const char *detail; /* one sentence */
    /* The connection's destination and the policy that decided; host NULL leaves all three
     * out (nothing was named yet). */
    const char *policy; /* NULL: JSON null */
    const char *host;
    uint16_t port;
    const char *method;       /* the request's, or NULL */
    const char *path;         /* its canonical, redacted path, or NULL */
    const char *rule_missing; /* JSON object text of a rule that would allow it, or NULL */
    const char *deny_method, *deny_path; /* the deny rule that refused, or NULL */
    bool in_request; /* a request inside a connection was refused (not a CONNECT or dial) */
};

/* The reason phrase of a status airlock sends ("Forbidden"), or "Error". */
const char *answer_reason_phrase(int status);

/* Append the whole response to out: head and body, or the head alone when the method is HEAD
 * (its Content-Length still says what a GET would have got, RFC 9110 §9.3.2 and §8.6). */
void answer_build(const struct answer *a, struct http_buf *out);

#endif
