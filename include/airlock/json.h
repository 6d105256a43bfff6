/* SPDX-License-Identifier: MIT */
/* json: the one JSON string escaper (RFC 8259 §7) of airlock's own output: refusal bodies, the
 * rule_missing suggestion and the JSON log lines. Whatever the bytes, the result is valid
 * UTF-8 JSON that no reader takes for the end of a line: quote and backslash escaped, control
 * characters (C0, DEL, C1) and U+2028/U+2029 as \u escapes, valid UTF-8 kept as it is, every
 * byte of an invalid sequence as U+FFFD. Pure. */
#ifndef AIRLOCK_JSON_H
#define AIRLOCK_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "airlock/http.h"

/* The longest text json_escape_char writes for one character. */
#define JSON_CHAR_MAX 6

/* The JSON text of the character at p, of the len > 0 bytes available: written to rep (at most
 * JSON_CHAR_MAX bytes), its length returned, *adv set to the input bytes it stands for. */
size_t json_escape_char(const char *p, size_t len, char *rep, size_t *adv);

/* Append s[0..len) escaped as JSON string content (no quotes) to b. */
void json_escape_append(struct http_buf *b, const char *s, size_t len);

/* Append the NUL-terminated s as a quoted JSON string to b. */
void json_string_append(struct http_buf *b, const char *s);

/* Append s[0..len) escaped as JSON string content to out at *w, which stays NUL-terminated
 * within cap. false (and *w unmoved past the last whole character) when it does not fit. */
bool json_escape_buf(char *out, size_t cap, size_t *w, const char *s, size_t len);

#endif
