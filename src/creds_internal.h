/* SPDX-License-Identifier: MIT */
/* creds_internal: what the three files of the creds module share, and nobody else: the
 * snapshot's layout (opaque outside the module, see creds.h), and the calls between its parts.
 * creds.c loads the providers file and owns the snapshot's lifetime; creds_secret.c reads each
 * secret into memory of its own; creds_match.c finds and rewrites placeholders in the bytes a
 * client sends. Not a module header: only src/creds*.c include it. */
#ifndef AIRLOCK_CREDS_INTERNAL_H
#define AIRLOCK_CREDS_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "airlock/creds.h"
#include "airlock/jsonload.h"

#define PLACEHOLDER_MAX 128
#define SECRET_TOKEN    "{secret}"
/* Every object is sorted to find duplicate keys, however small. */
#define DUP_PAIRWISE_MAX 1

struct endpoint {
    char *host; /* normalised: lower case, no trailing dot, IPv6 without brackets */
    struct jsonload_range *ports;
    size_t nports;
};

/* One entry of "substitute_in": where a placeholder of the provider may stand. */
enum place_kind { PLACE_HEADER, PLACE_QUERY, PLACE_PATH };
struct place {
    enum place_kind kind;
    char *name; /* header field or query parameter; NULL for "*" (and for the path) */
};

/* Whole anonymous pages that hold secret bytes and nothing else. */
struct vault {
    char *base;
    size_t size;
};

struct creds_provider {
    char *name;
    char *placeholder;
    size_t placeholder_len;
    uint8_t kmp[PLACEHOLDER_MAX]; /* kmp[i]: longest proper border of placeholder[0..i] */
    char *env_var;
    struct endpoint *endpoints;
    size_t nendpoints;
    char *inject_header; /* NULL without "inject" */
    char *inject_format;
    struct vault vault;
    const char *secret; /* in vault, NUL-terminated */
    size_t secret_len;
    const char *secret_pct; /* in vault: the secret percent-encoded, NUL-terminated */
    size_t secret_pct_len;
    struct place *places; /* substitute_in; none: a placeholder may stand anywhere */
    size_t nplaces;
};

struct creds {
    atomic_uint refs;
    size_t count;
    struct creds_provider *providers;
};

/* Load obj's "secret" ({"env": NAME} or {"file": PATH}) into p's vault, with its
 * percent-encoded form; errors (never the secret) go to j. */
void creds_load_secret(struct jsonload *j, const cJSON *obj, struct creds_provider *p);

/* Wipe and unmap a vault; a no-op on an empty one. */
void creds_vault_free(struct vault *v);

#endif
