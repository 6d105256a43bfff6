/* SPDX-License-Identifier: MIT */
/* creds: credential providers (docs/providers.md). The sandbox holds only placeholders;
 * this module loads the secrets (env or file) into memory that is excluded from core dumps and
 * wiped when freed, finds placeholders in request text (raw, percent-encoded, or inside a Basic
 * credential), and rewrites text with the secret for the provider's own endpoints, or with
 * "[CREDENTIAL]" for the policy and the log. A snapshot is immutable and refcounted (atomic),
 * shared by every worker. No secret ever reaches an error message. Pure: no sockets. */
#ifndef AIRLOCK_CREDS_H
#define AIRLOCK_CREDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airlock/http.h"

#define CREDS_REDACTED "[CREDENTIAL]"

struct creds;
struct creds_provider;

/* Parse and validate a providers file. NULL on failure with *errors (malloc'd, one error a
 * line, each starting with its JSON path: "providers.github.secret: environment variable
 * GITHUB_TOKEN is not set"). Errors: version != 1, unknown keys, placeholder shorter than 16
 * characters or shared by two providers or not made of [A-Za-z0-9_-], secret missing or empty
 * or containing CR/LF/NUL, secret file unreadable, an endpoint host with a wildcard, bad
 * ports, inject without header, format without "{secret}", a substitute_in entry that is not
 * "header:NAME", "header:*", "query:NAME", "query:*" or "path". Never prints a secret.
 * A secret named by {"env": NAME} is copied out of the environment and the variable is
 * scrubbed (its bytes overwritten, then unset); a later load (a reload) that finds the
 * variable gone uses the value captured when it was first read. */
struct creds *creds_parse(const char *json, size_t len, char **errors);
struct creds *creds_load_file(const char *path, char **errors);
void creds_ref(struct creds *c);
void creds_unref(struct creds *c);

size_t creds_count(const struct creds *c);
const struct creds_provider *creds_at(const struct creds *c, size_t i);
const char *creds_provider_name(const struct creds_provider *p);
const char *creds_placeholder(const struct creds_provider *p);
/* The variable the sandbox should hold the placeholder in: secret.env when the secret comes
 * from the environment, else the provider name upper-cased with non-alnum as '_' + "_TOKEN". */
const char *creds_env_var(const struct creds_provider *p);

/* true when the provider names host (exact, case-insensitive, normalised) and port. */
bool creds_binds(const struct creds_provider *p, const char *host, uint16_t port);

/* true when p..len contains the provider's placeholder raw, percent-encoded (any escape case,
 * any subset of characters encoded), or inside a "Basic <base64>" credential. */
bool creds_appears(const struct creds_provider *p, const char *s, size_t len);

enum creds_mode {
    CREDS_SECRET,     /* replace by the secret as is (header values) */
    CREDS_SECRET_PCT, /* replace by the percent-encoded secret (path segments, query values) */
    CREDS_REDACT,     /* replace by CREDS_REDACTED (policy input, logs) */
};

/* Append s with every occurrence of the provider's placeholder (raw or percent-encoded)
 * replaced as mode says. */
void creds_substitute(const struct creds_provider *p, const char *s, size_t len,
                      enum creds_mode mode, struct http_buf *out);

/* Append a header value with the placeholder replaced by the secret: "Basic <b64>" values are
 * decoded, substituted and re-encoded; any other value is substituted as text. */
void creds_substitute_header(const struct creds_provider *p, const char *value, size_t len,
                             struct http_buf *out);

/* The header inject sets (NULL when the provider has no inject), and its value: format with
 * {secret} replaced. */
const char *creds_inject_header(const struct creds_provider *p);
void creds_inject_value(const struct creds_provider *p, struct http_buf *out);

/* substitute_in: NULL when every placeholder of p in the request head stands where the
 * provider's "substitute_in" allows (or it has none); else a short static description of the
 * first place that it does not allow ("the path", "a query parameter name", ...). The header
 * that "inject" replaces is always allowed: what the client put there is dropped. */
const char *creds_misplaced(const struct creds_provider *p, const struct http_head *h);

/* Responses (redact.h): the secrets of the providers an exchange used (n of them, borrowed)
 * become their placeholders again. creds_redactor returns a streaming redactor for a body
 * (redact_free it before the snapshot goes); creds_redact_text does a complete text (a reason
 * phrase); creds_redact_field a header or trailer value, Base64 forms included. */
struct redactor;
struct redactor *creds_redactor(const struct creds_provider *const *used, size_t n);
void creds_redact_text(const struct creds_provider *const *used, size_t n, const char *s,
                       size_t len, struct http_buf *out);
void creds_redact_field(const struct creds_provider *const *used, size_t n, const char *s,
                        size_t len, struct http_buf *out);

/* Wipe (OPENSSL_cleanse, the whole capacity) and free a buffer that received a secret. Every
 * append of a secret by creds sets the buffer's wipe flag (http.h), so that it then grows by
 * copy-and-wipe and http_buf_free wipes it too; a caller that puts a secret into a buffer
 * before creds does must set the flag itself. */
void creds_buf_wipe(struct http_buf *b);

#endif
