/* SPDX-License-Identifier: MIT */
/* policy: the network policy (DESIGN.md "Policy"), loaded and validated from JSON into an
 * immutable snapshot, and the two decisions taken from it: L4 (may this client reach host:port
 * at all, and how) and L7 (may this method and canonical path go to it). A snapshot is shared by
 * every worker thread; its reference count is atomic, everything else is read-only after load.
 * No cJSON tree outlives policy_load. */
#ifndef AIRLOCK_POLICY_H
#define AIRLOCK_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct policy;

/* Parse and validate. On success returns a snapshot with one reference. On failure returns NULL
 * and *errors (when errors is not NULL) gets a malloc'd text, one error a line, each starting
 * with its JSON path: "network_policies.github.endpoints[1].host: ...". */
struct policy *policy_parse(const char *json, size_t len, char **errors);
struct policy *policy_load_file(const char *path, char **errors);

void policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* Number of endpoints, for logs. */
size_t policy_endpoint_count(const struct policy *p);

/* The source JSON of the snapshot (for the admin endpoint), NUL-terminated. Borrowed. */
const char *policy_source(const struct policy *p);

enum policy_protocol { POLICY_REST = 0, POLICY_TCP = 1 };

enum policy_verdict {
    POLICY_DENY = 0,
    POLICY_ALLOW = 1,
    POLICY_AUDIT = 2, /* would deny, but the endpoint is in audit mode: forward and log */
};

#define POLICY_PEER_MAX 16

/* Who the client is: for each process that holds the client's socket (any of them may be the
 * one writing on it), the absolute paths of its executable and then of its ancestors',
 * NULL-terminated. nprocs 0 when unknown. An endpoint's `binaries` allow the client only when
 * every process matches: by its own executable or an ancestor's ("binaries_match": "ancestors",
 * the default), or by its own alone ("exact"). binary_identity_off makes `binaries` match
 * anyone. */
struct policy_peer {
    const char *const *procs[POLICY_PEER_MAX];
    size_t nprocs;
    bool binary_identity_off;
};

/* The L4 decision for host:port (host normalised as target.h does). */
struct policy_l4 {
    enum policy_verdict verdict; /* ALLOW or DENY only */
    enum policy_protocol protocol;
    const char *policy_name; /* the network_policies key of the first matching endpoint
                              * (borrowed from the snapshot), or NULL */
    const char *reason;      /* static text on DENY: "no endpoint matches host and port",
                              * "binary not allowed" */
};

/* L4: allowed when some endpoint matches host and port (and binaries, when the policy names
 * them). The protocol is the first matching endpoint's. */
void policy_check_l4(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, struct policy_l4 *out);

/* The L7 decision for one request inside an allowed tunnel. */
struct policy_l7 {
    enum policy_verdict verdict;
    const char *policy_name; /* the policy that allowed (or audited / denied, see below) */
    const char *reason;      /* static text on DENY/AUDIT: "method not allowed by access
                              * read-only", "matched deny rule", "no rule allows method and path",
                              * "connected address not in allowed_ips" */
    char rule_missing[512];  /* on DENY/AUDIT by an endpoint's access or rules: the JSON of a
                              * rule that would allow it there, e.g.
                              * {"method":"POST","path":"/repos/o/r/issues"}; "" when an allow
                              * rule cannot help (a deny rule refused, or no endpoint judged
                              * the request: address, binary, host and port, path too long) */
    struct {
        const char *method; /* "*" for any */
        const char *path;   /* the glob as written; NULL unless a deny rule refused */
    } deny_rule;            /* the deny rule that refused (borrowed from the snapshot) */
};

/* L7: the request is allowed when some endpoint matching host and port (and peer) allows the
 * method and canonical path by its access preset or rules and no deny_rule of that endpoint
 * matches. When every matching endpoint refuses and one of them is in audit mode, AUDIT.
 * Allow rules match exactly. Deny rules fail closed: the path also with one trailing slash
 * added or removed, letters ASCII case-insensitively, and a GET deny also covers HEAD. A path
 * longer than PATH_MAX_LEN is refused.
 *
 * private_addr: the upstream address the connection is dialled to when it is not public (the
 * SSRF guard let it through only by allowed_ips), else NULL. Then only endpoints whose
 * allowed_ips cover it take part: an endpoint that never listed the address allows nothing on
 * that connection, whatever its access.
 *
 * A DENY names the last endpoint (in file order) that refused by its access or rules, so that
 * rule_missing added to it would allow the request; only when every refusal is by a deny rule
 * does it name the last of those, with deny_rule set and no rule_missing. */
void policy_check_l7(const struct policy *p, const char *host, uint16_t port,
                     const struct policy_peer *peer, const struct sockaddr *private_addr,
                     const char *method, const char *path, struct policy_l7 *out);

/* SSRF: true when sa lies in an allowed_ips block of an endpoint that takes part in this
 * peer's L4 decision for host:port: it matches host, port and peer (binaries), and has the
 * protocol policy_check_l4 chose. An endpoint for another binary or protocol never opens an
 * address. (Metadata addresses are refused by netguard before this is asked.) */
bool policy_ip_allowed(const struct policy *p, const char *host, uint16_t port,
                       const struct policy_peer *peer, const struct sockaddr *sa);

/* true when a policy names binaries anywhere (then the peer must be identified). */
bool policy_uses_binaries(const struct policy *p);

#endif
