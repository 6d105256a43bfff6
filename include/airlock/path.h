/* SPDX-License-Identifier: MIT */
/* path: one canonical form for request paths, used both as the policy input and as the target
 * written upstream, so policy and upstream never disagree (DESIGN.md "Policy"); and anchored
 * glob matching over it in linear time. Pure. */
#ifndef AIRLOCK_PATH_H
#define AIRLOCK_PATH_H

#include <stdbool.h>
#include <stddef.h>

#define PATH_MAX_LEN 8192

enum path_result {
    PATH_OK = 0,
    PATH_BAD = -1,      /* 400: malformed or a trick (see path_canonicalize) */
    PATH_TOO_LONG = -2, /* 414 */
};

/* RFC 3986 §2.1 and §2.3, for every reader and writer of percent-encoding: the value of a hex
 * digit (either case) or -1, and whether a byte is unreserved (never needs escaping). */
int path_hex_value(unsigned char c);
bool path_is_unreserved(unsigned char c);

/* Canonicalise an origin-form target (path plus optional "?query"). In this order: percent-
 * decode unreserved characters (other escapes re-emitted as uppercase %XX), strip ;params from
 * every segment, collapse "//", remove dot segments (RFC 3986 §5.2.4). Refused (PATH_BAD): not
 * starting with '/', climbing above the root, %2F, %5C, %00, an invalid escape, CTL, NUL,
 * space, non-ASCII, '#', a raw backslash, a double-encoded dot, slash or backslash (%252e,
 * %252f, %255c). The query is validated (no CTL/space/non-ASCII/'#') and copied as is.
 * Writes the canonical path (without query) to path_out and the query (without '?', may be
 * empty) to query_out; each buffer has cap bytes and is NUL-terminated. *has_query tells
 * whether a '?' was present. */
enum path_result path_canonicalize(const char *target, size_t len, char *path_out, size_t path_cap,
                                   char *query_out, size_t query_cap, bool *has_query);

/* Anchored, case-sensitive glob over a canonical path: '*' matches within one segment (any
 * run of non-'/' characters, also part of a segment), '**' as a whole segment matches zero or
 * more whole segments, and a trailing '**' segment also matches the path without it. Linear in
 * strlen(path) * strlen(glob) at worst; never exponential. */
bool path_glob_match(const char *glob, const char *path);

/* path_glob_match with letters compared ASCII case-insensitively: for deny rules, which must
 * also catch the spellings a case-insensitive upstream serves as the same resource. */
bool path_glob_match_nocase(const char *glob, const char *path);

/* true when glob is well-formed: starts with '/', '**' only as a whole segment. */
bool path_glob_valid(const char *glob);

#endif
