/* SPDX-License-Identifier: MIT */
/* sniff: what a connection redirected to airlock by the kernel (transparent mode) is, judged
 * from the first bytes its client sent: a TLS ClientHello (its SNI names the host), a plain
 * HTTP/1.x request head (its Host field or absolute-form target names the host), or something
 * else. It neither reads sockets nor decides policy; the listener buffers the bytes, calls
 * sniff_classify() after every read until the answer is not SNIFF_NEED_MORE, and then hands the
 * same bytes, unconsumed, to the relay. Invariant: a name comes out only from a message that
 * parsed whole and strictly, normalised by target_normalise_host(). Pure. */
#ifndef AIRLOCK_SNIFF_H
#define AIRLOCK_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airlock/target.h"

/* The most bytes looked at. A TLS ClientHello must be complete within SNIFF_TLS_MAX bytes of
 * records (one full record of 2^14; a real one is 0.3 to 2 KiB), a request head within
 * SNIFF_HTTP_MAX (HTTP_HEAD_MAX: the same limit as a head that arrives through the proxy port);
 * past that the answer is SNIFF_INVALID. A caller needs a buffer of SNIFF_MAX bytes. */
#define SNIFF_TLS_MAX  (16 * 1024 + 5)
#define SNIFF_HTTP_MAX (32 * 1024)
#define SNIFF_MAX      SNIFF_HTTP_MAX

/* Room for an offered ALPN protocol_name_list (RFC 7301 §3.1) as it stood on the wire. */
#define SNIFF_ALPN_LIST_MAX 256

enum sniff_kind {
    SNIFF_NEED_MORE = 0, /* a valid prefix of a ClientHello or request head: read more */
    SNIFF_TLS,           /* a whole, well-formed ClientHello */
    SNIFF_HTTP,          /* a whole, well-formed HTTP/1.0 or HTTP/1.1 request head */
    SNIFF_OTHER,         /* neither TLS nor HTTP from its first bytes: match by destination */
    SNIFF_INVALID,       /* starts as TLS or HTTP but breaks the grammar or the bound: close
                          * (an HTTP client gets 400/431/505 as reason says) */
};

const char *sniff_kind_name(enum sniff_kind k);

/* The ALPN extension of a ClientHello (RFC 7301), for choosing h2 or http/1.1 later. */
struct sniff_alpn {
    bool offered; /* the extension is present */
    bool h2;      /* "h2" is in the list */
    bool http11;  /* "http/1.1" is in the list */
    size_t count; /* protocols in the list */
    /* protocol_name_list as sent (length-prefixed names, no outer length), when it fits in
     * SNIFF_ALPN_LIST_MAX bytes; else list_len is 0 and list_truncated true. The form
     * SSL_select_next_proto() takes. */
    uint8_t list[SNIFF_ALPN_LIST_MAX];
    size_t list_len;
    bool list_truncated;
};

struct sniff_result {
    enum sniff_kind kind;
    /* A static phrase for logs: why SNIFF_OTHER or SNIFF_INVALID ("ClientHello carries two
     * server_name extensions"); "" otherwise. Never holds bytes of the input. */
    const char *reason;
    /* SNIFF_INVALID on an HTTP request: the status the client should get (400, 431 or 505).
     * 0 otherwise (TLS has no status to send before a handshake). */
    int http_status;
    /* SNIFF_TLS: the SNI host name (kind TARGET_DNS, port 0), or host "" when the ClientHello
     * has no server_name: the connection is then judged by its original destination alone.
     * SNIFF_HTTP: the authority of an absolute-form target, else of the Host field (port 0 and
     * port_present false when the text has none: the original destination's port applies), or
     * host "" for an HTTP/1.0 request with neither. */
    struct authority authority;
    struct sniff_alpn alpn; /* SNIFF_TLS only; zeroed otherwise */
};

/* Classify the first len bytes a client sent (borrowed for the call; nothing is kept). Fills
 * *out and returns out->kind. Call again with the longer buffer after SNIFF_NEED_MORE; with
 * len >= SNIFF_MAX the answer is never SNIFF_NEED_MORE, and any other answer stays the same
 * (kind, reason and name) however many bytes follow, so it never depends on how the bytes were
 * cut into reads. Bytes past the ClientHello or the head
 * (a request body, early data) are not looked at, except that a ClientHello's last record
 * must end where the ClientHello does. */
enum sniff_kind sniff_classify(const uint8_t *p, size_t len, struct sniff_result *out);

#endif
