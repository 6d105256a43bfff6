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

#define POLICY_OVERRIDE_MAX 8  /* method-override values one request may carry */
#define POLICY_METHOD_MAX   32 /* bytes of one override value, with its NUL */

/* One request as the L7 decision sees it. The caller owns it; policy_request_init fills the
 * method and path (both borrowed until the decision returns), policy_request_add_field and
 * policy_request_add_query collect the method overrides it carries. */
struct policy_request {
    const char *method; /* as received: methods are case-sensitive (RFC 9110 §9.1) */
    const char *path;   /* canonical (path.h), or "*" for the asterisk-form of OPTIONS */
    bool upgrade;       /* a websocket opening handshake (see policy_check_l7) */
    size_t noverrides;
    char overrides[POLICY_OVERRIDE_MAX][POLICY_METHOD_MAX]; /* upper-cased, distinct */
};

void policy_request_init(struct policy_request *q, const char *method, const char *path,
                         bool upgrade);

/* Method overrides: many frameworks (Symfony and Laravel, Express's method-override, Google
 * APIs, ...) serve a request as the method named in one of these, so the policy judges that
 * method too. A header field X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override (any
 * case) is a comma-separated list: every element is an override. add_field takes any field and
 * keeps only those. Returns 0, or -1 when an element is not a method (an empty or non-token
 * value, longer than POLICY_METHOD_MAX - 1), or the request carries more than
 * POLICY_OVERRIDE_MAX distinct overrides: answer 400. */
int policy_request_add_field(struct policy_request *q, const char *name, size_t name_len,
                             const char *value, size_t value_len);

/* The query's _method parameters (query without its '?', as received): every pair separated by
 * '&' or ';' whose name, percent-decoded ('+' as a space), with leading spaces dropped, spaces
 * and dots read as '_' (PHP's reading) and anything from a '[' on ignored, is "_method" in any
 * letter case. The value, percent-decoded, is an override. Returns 0 or -1 as add_field. A
 * form body's _method is never seen. */
int policy_request_add_query(struct policy_request *q, const char *query);

/* The L7 decision for one request inside an allowed tunnel. */
struct policy_l7 {
    enum policy_verdict verdict;
    const char *policy_name; /* the policy that allowed (or audited / denied, see below) */
    const char *reason;      /* static text on DENY/AUDIT: "method not allowed by access
                              * read-only", "matched deny rule", "no rule allows method and path",
                              * "websocket upgrade not allowed by access read-only",
                              * "connected address not in allowed_ips"; "method override: "
                              * and one of the first four when an override was refused */
    char rule_missing[512];  /* on DENY/AUDIT by an endpoint's access or rules: the JSON of a
                              * rule that would allow it there, e.g.
                              * {"method":"POST","path":"/repos/o/r/issues"} (the method is the
                              * override's when an override was refused); "" when an allow
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
 * Allow rules match exactly. Deny rules fail closed: they compare letters ASCII
 * case-insensitively, a GET deny also covers HEAD, and they match any of these spellings of
 * the path, each also with one trailing slash added or removed:
 *   - the path itself ("*" reads as "/");
 *   - the path with every segment's trailing run of '.' and "%20" removed (IIS and Windows
 *     drop them), a segment left empty dropped: "/admin./x%20" is "/admin/x";
 *   - that path with its last segment cut at its first and at its last '.' not at the
 *     segment's start (Rails' format suffix, Spring's suffix match): "/admin.tar.gz" is also
 *     "/admin" and "/admin.tar".
 * A path longer than PATH_MAX_LEN is refused.
 *
 * Every method override the request carries is judged as a method of its own, on the same
 * path: the request is refused when its method or any override is refused (then reason starts
 * "method override: "), audited when any is audited, else allowed (policy_name is the one that
 * allowed the method itself).
 *
 * A websocket upgrade turns the connection into a two-way channel that no rule sees, so it
 * needs a grant that already allows writing there: an access preset that allows writes
 * (read-write or full) or an allow rule matching its method (GET, or "*") and path. A
 * read-only preset alone never allows one; rule_missing then names the explicit GET rule.
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
                     const struct policy_request *q, struct policy_l7 *out);

/* SSRF: true when sa lies in an allowed_ips block of an endpoint that takes part in this
 * peer's L4 decision for host:port: it matches host, port and peer (binaries), and has the
 * protocol policy_check_l4 chose. An endpoint for another binary or protocol never opens an
 * address. (Metadata addresses are refused by netguard before this is asked.) */
bool policy_ip_allowed(const struct policy *p, const char *host, uint16_t port,
                       const struct policy_peer *peer, const struct sockaddr *sa);

/* true when a policy names binaries anywhere (then the peer must be identified). */
bool policy_uses_binaries(const struct policy *p);

#endif
