/* SPDX-License-Identifier: MIT */
/* policy_internal: the snapshot's layout, shared by the two files of the policy module and
 * nobody else (struct policy is opaque outside it, see policy.h): policy.c loads, validates and
 * indexes; policy_decide.c takes the L4 and L7 decisions. Not a module header: only
 * src/policy*.c include it. */
#ifndef AIRLOCK_POLICY_INTERNAL_H
#define AIRLOCK_POLICY_INTERNAL_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airlock/addr.h"
#include "airlock/jsonload.h"
#include "airlock/policy.h"

enum host_kind {
    HOST_EXACT,      /* "api.github.com", "127.0.0.1", "::1" */
    HOST_ONE_LABEL,  /* "*.example.com": host is the suffix "example.com" */
    HOST_ANY_LABELS, /* "**.example.com" */
};

enum access {
    ACCESS_NONE = 0, /* only rules allow */
    ACCESS_READ_ONLY,
    ACCESS_READ_WRITE,
    ACCESS_FULL,
};

struct rule {
    const char *method; /* NULL for "*" */
    const char *glob;
};

/* One "binaries" entry: an exact executable, or for a glob entry (a directory followed by a
 * '**' segment) that directory with its trailing '/'. */
struct binary {
    const char *path;
    size_t len;
    bool subtree;
};

struct endpoint {
    const char *policy_name;
    const char *host; /* exact host, or the suffix after a wildcard label */
    enum host_kind kind;
    enum policy_protocol protocol;
    enum access access;
    bool audit;
    /* "binaries_match": "exact": only a process's own executable counts, not its ancestors' */
    bool binaries_exact;
    bool has_binaries; /* the network policy names binaries */
    uint32_t index;    /* declaration order: earlier wins where an answer names one endpoint */
    size_t nports, nrules, ndeny, nips, nbinaries;
    const struct jsonload_range *ports;
    const struct rule *rules;
    const struct rule *deny;
    const struct addr_cidr *ips;
    const struct binary *binaries; /* shared by every endpoint of the network policy */
};

/* Hash slot: every endpoint whose host field equals key, as a run of p->order. */
struct slot {
    const char *key;
    uint32_t first, count;
};

struct block {
    struct block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

struct policy {
    atomic_uint refs;
    char *source;
    struct block *arena;
    struct endpoint *endpoints;
    size_t nendpoints;
    uint32_t *order;    /* endpoint indices sorted by (host, index) */
    struct slot *slots; /* open addressing, nslots a power of two, NULL key = empty */
    size_t nslots;
    bool uses_binaries;
};

/* The index slot whose key is exactly key (an exact host or a wildcard suffix), or NULL. */
const struct slot *policy_find_slot(const struct policy *p, const char *key);

#endif
