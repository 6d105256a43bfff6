/* SPDX-License-Identifier: MIT */
/* redact: finds secrets in bytes an upstream sends back and replaces each occurrence with its
 * placeholder, so that an echo never hands a secret to the agent. It recognises a secret raw,
 * percent-encoded (either hex case, '+' for a space), JSON-escaped ("\/", "\\", "\"", the short
 * escapes and "\u00XX" in either case), and JSON-escaped percent-encoding, any mix of escaped
 * and plain characters; header values also in Base64 (standard or URL alphabet, any alignment).
 * A body is redacted as a stream: bytes that may begin an encoded secret are held back until
 * they are settled, and the output of any split of a message into pieces is byte for byte the
 * output of redact_text() on the whole. Pure: no sockets, no allocation per byte. */
#ifndef AIRLOCK_REDACT_H
#define AIRLOCK_REDACT_H

#include <stdbool.h>
#include <stddef.h>

#include "airlock/http.h"

/* Providers a single exchange can carry (conn.h's creds_used). */
#define REDACT_MAX_PAIRS 4
/* The longest encoding of one secret character ("\u00XX"). */
#define REDACT_MAX_ESCAPE 6

/* One secret and what replaces it. Borrowed: the strings must outlive every use. */
struct redact_pair {
    const char *secret;
    size_t secret_len; /* at least 1 */
    const char *placeholder;
    size_t placeholder_len;
};

struct redactor;

/* A streaming redactor for up to REDACT_MAX_PAIRS pairs (more are ignored), borrowing their
 * strings for its life. NULL when out of memory. */
struct redactor *redact_new(const struct redact_pair *pairs, size_t npairs);
/* Wipes the bytes it holds back (they may be most of a secret) and frees it. NULL is fine. */
void redact_free(struct redactor *r);

/* Append to out the redacted form of every byte of p that is settled. Bytes that could still
 * be the start of an encoded secret are held back: never more than REDACT_MAX_ESCAPE times the
 * longest secret, minus one (the raw secret alone: its length minus one). */
void redact_feed(struct redactor *r, const char *p, size_t len, struct http_buf *out);
/* The message ended: append the held-back bytes, redacted. The redactor is then empty and may
 * take another message. */
void redact_finish(struct redactor *r, struct http_buf *out);
/* Bytes held back now. */
size_t redact_pending(const struct redactor *r);

/* One complete text: exactly what redact_feed on any split of it followed by redact_finish
 * appends. */
void redact_text(const struct redact_pair *pairs, size_t npairs, const char *p, size_t len,
                 struct http_buf *out);
/* A header or trailer value: redact_text, then every Base64 form of a secret is decoded,
 * the secret replaced by its placeholder, and the run re-encoded in the same alphabet (when the
 * run does not decode cleanly, the Base64 of the secret itself is replaced by the placeholder).
 * Secrets shorter than 6 bytes have no Base64 form long enough to be told from chance. */
void redact_field(const struct redact_pair *pairs, size_t npairs, const char *p, size_t len,
                  struct http_buf *out);

#endif
