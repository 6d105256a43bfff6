/* SPDX-License-Identifier: MIT */
/* sniff_tls: the first TLS handshake message a client sent, reassembled from its records
 * (RFC 8446 §5.1) and parsed as a ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) for two
 * extensions: server_name (RFC 6066 §3) and ALPN (RFC 7301 §3.1). Every length is checked
 * against what encloses it; nothing else of the handshake is judged here (OpenSSL does that when
 * airlock terminates it). Invariant: a host name comes out only from a whole ClientHello. */
#include <string.h>

#include "sniff_internal.h"

#define RECORD_HEADER    5
#define RECORD_MAX       16384 /* 2^14: RFC 8446 §5.1, RFC 5246 §6.2.1 */
#define HANDSHAKE_HEADER 4
#define CLIENT_HELLO     1
#define EXT_SERVER_NAME  0
#define EXT_ALPN         16
#define SNI_HOST_NAME    0

/* A cursor over one length-delimited part of the ClientHello. */
struct cur {
    const uint8_t *p;
    size_t len, off;
};

static bool take_u8(struct cur *c, size_t *v)
{
    if (c->len - c->off < 1)
        return false;
    *v = c->p[c->off++];
    return true;
}

static bool take_u16(struct cur *c, size_t *v)
{
    if (c->len - c->off < 2)
        return false;
    *v = (size_t)c->p[c->off] << 8 | c->p[c->off + 1];
    c->off += 2;
    return true;
}

/* The next n bytes as a cursor of their own. */
static bool take_sub(struct cur *c, size_t n, struct cur *sub)
{
    if (c->len - c->off < n)
        return false;
    *sub = (struct cur){.p = c->p + c->off, .len = n};
    c->off += n;
    return true;
}

/* An opaque vector with a one- or two-byte length prefix, whose length lies in [min, max]. */
static bool take_vec(struct cur *c, int prefix, size_t min, size_t max, struct cur *sub)
{
    size_t n;

    if (!(prefix == 1 ? take_u8(c, &n) : take_u16(c, &n)))
        return false;
    return n >= min && n <= max && take_sub(c, n, sub);
}

static bool at_end(const struct cur *c)
{
    return c->off == c->len;
}

/* RFC 6066 §3: ServerNameList server_name_list<1..2^16-1>; each ServerName is a NameType and,
 * for host_name(0), opaque HostName<1..2^16-1>. No other NameType is defined, so one cannot
 * even be skipped; and the list "MUST NOT contain more than one name of the same name_type". */
static enum sniff_kind parse_server_name(struct cur *ext, struct sniff_result *out)
{
    struct cur list, name;
    size_t type;
    enum target_host_kind kind;
    bool seen = false;

    if (!take_vec(ext, 2, 1, 0xffff, &list) || !at_end(ext))
        return sniff_verdict(out, SNIFF_INVALID, "server_name list length is malformed", 0);
    while (!at_end(&list)) {
        if (!take_u8(&list, &type))
            return sniff_verdict(out, SNIFF_INVALID, "server_name entry is cut short", 0);
        if (type != SNI_HOST_NAME)
            return sniff_verdict(out, SNIFF_INVALID, "server_name of a type other than host_name",
                                 0);
        if (seen)
            return sniff_verdict(out, SNIFF_INVALID, "server_name lists two host names", 0);
        if (!take_vec(&list, 2, 1, 0xffff, &name))
            return sniff_verdict(out, SNIFF_INVALID, "server_name host name length is malformed",
                                 0);
        if (target_normalise_host((const char *)name.p, name.len, false, out->authority.host,
                                  &kind) < 0)
            return sniff_verdict(out, SNIFF_INVALID, "server_name is not a valid host name", 0);
        /* RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName", but
         * gRPC's clients send one for an IP target. It names nothing a DNS name would: taken as
         * no name at all, so the connection is judged by its address, which is also what
         * airlock dials and names in its own ClientHello. */
        if (kind != TARGET_DNS)
            out->authority.host[0] = '\0';
        else
            out->authority.kind = TARGET_DNS;
        seen = true;
    }
    return SNIFF_NEED_MORE; /* no verdict: go on with the next extension */
}

/* RFC 7301 §3.1: ProtocolName protocol_name_list<2..2^16-1>, ProtocolName <1..2^8-1>. */
static enum sniff_kind parse_alpn(struct cur *ext, struct sniff_result *out)
{
    struct cur list, name;
    struct sniff_alpn *a = &out->alpn;

    if (!take_vec(ext, 2, 2, 0xffff, &list) || !at_end(ext))
        return sniff_verdict(out, SNIFF_INVALID, "ALPN list length is malformed", 0);
    a->offered = true;
    while (!at_end(&list)) {
        if (!take_vec(&list, 1, 1, 0xff, &name))
            return sniff_verdict(out, SNIFF_INVALID, "ALPN protocol name is malformed", 0);
        a->count++;
        if (name.len == 2 && memcmp(name.p, "h2", 2) == 0)
            a->h2 = true;
        else if (name.len == 8 && memcmp(name.p, "http/1.1", 8) == 0)
            a->http11 = true;
    }
    if (list.len <= sizeof(a->list)) {
        memcpy(a->list, list.p, list.len);
        a->list_len = list.len;
    } else {
        a->list_truncated = true;
    }
    return SNIFF_NEED_MORE;
}

/* RFC 8446 §4.2: "There MUST NOT be more than one extension of the same type in a given
 * extension block"; a second server_name is how a name is smuggled past one reader, so every
 * type counts, not only the two read here. */
static enum sniff_kind parse_extensions(struct cur *exts, struct sniff_result *out)
{
    uint8_t seen[65536 / 8] = {0};
    struct cur ext;
    size_t type;
    enum sniff_kind k = SNIFF_NEED_MORE;

    while (!at_end(exts) && k == SNIFF_NEED_MORE) {
        if (!take_u16(exts, &type) || !take_vec(exts, 2, 0, 0xffff, &ext))
            return sniff_verdict(out, SNIFF_INVALID, "extension length is malformed", 0);
        if (seen[type / 8] & (1u << (type % 8)))
            return sniff_verdict(out, SNIFF_INVALID,
                                 type == EXT_SERVER_NAME ? "ClientHello carries two server_name "
                                                           "extensions"
                                                         : "ClientHello repeats an extension",
                                 0);
        seen[type / 8] |= (uint8_t)(1u << (type % 8));
        if (type == EXT_SERVER_NAME)
            k = parse_server_name(&ext, out);
        else if (type == EXT_ALPN)
            k = parse_alpn(&ext, out);
    }
    return k;
}

/* RFC 8446 §4.1.2 (and RFC 5246 §7.4.1.2, whose ClientHello has the same layout):
 *   ProtocolVersion legacy_version; Random random[32];
 *   opaque legacy_session_id<0..32>; CipherSuite cipher_suites<2..2^16-2>;
 *   opaque legacy_compression_methods<1..2^8-1>; Extension extensions<8..2^16-1>;
 * Before TLS 1.3 the extensions block may be absent altogether. */
static enum sniff_kind parse_client_hello(struct cur *ch, struct sniff_result *out)
{
    struct cur skip, exts;
    size_t version;

    if (!take_u16(ch, &version) || !take_sub(ch, 32, &skip))
        return sniff_verdict(out, SNIFF_INVALID, "ClientHello is cut short", 0);
    if (version >> 8 != 3)
        return sniff_verdict(out, SNIFF_INVALID, "ClientHello version is not TLS", 0);
    if (!take_vec(ch, 1, 0, 32, &skip))
        return sniff_verdict(out, SNIFF_INVALID, "ClientHello session id is malformed", 0);
    if (!take_vec(ch, 2, 2, 0xfffe, &skip) || skip.len % 2 != 0)
        return sniff_verdict(out, SNIFF_INVALID, "ClientHello cipher suites are malformed", 0);
    if (!take_vec(ch, 1, 1, 0xff, &skip))
        return sniff_verdict(out, SNIFF_INVALID, "ClientHello compression methods are malformed",
                             0);
    if (!at_end(ch)) {
        if (!take_vec(ch, 2, 0, 0xffff, &exts) || !at_end(ch))
            return sniff_verdict(out, SNIFF_INVALID, "ClientHello extensions length is malformed",
                                 0);
        if (parse_extensions(&exts, out) != SNIFF_NEED_MORE)
            return out->kind;
    }
    return sniff_verdict(out, SNIFF_TLS, "", 0);
}

/* Gather the handshake layer's bytes from the records in p[0..len) into hs (RFC 8446 §5.1: a
 * handshake message may be split over several records, and records of another type must not
 * come between). Returns SNIFF_TLS with *hs_len set once the first message is complete,
 * SNIFF_NEED_MORE, or a verdict. */
static enum sniff_kind reassemble(const uint8_t *p, size_t len, uint8_t *hs, size_t *hs_len,
                                  struct sniff_result *out)
{
    size_t off = 0, have = 0, msg_len = 0, frag, rec_len;
    bool known = false;

    while (len - off >= RECORD_HEADER) {
        const uint8_t *rec = p + off;

        if (rec[0] != 0x16)
            return sniff_verdict(out, SNIFF_INVALID, "another record type inside the ClientHello",
                                 0);
        /* legacy_record_version "MUST be ignored for all purposes", but its major byte is
         * what tells TLS from any protocol whose first byte happens to be 0x16 */
        if (rec[1] != 3)
            return off == 0
                       ? sniff_verdict(out, SNIFF_OTHER, "0x16 not followed by a TLS version", 0)
                       : sniff_verdict(out, SNIFF_INVALID, "record version is not TLS", 0);
        rec_len = (size_t)rec[3] << 8 | rec[4];
        /* "Implementations MUST NOT send zero-length fragments of Handshake types" */
        if (rec_len == 0 || rec_len > RECORD_MAX)
            return sniff_verdict(out, SNIFF_INVALID, "record length out of range", 0);
        frag = len - off - RECORD_HEADER < rec_len ? len - off - RECORD_HEADER : rec_len;
        memcpy(hs + have, rec + RECORD_HEADER, frag);
        have += frag;
        if (!known && have >= HANDSHAKE_HEADER) {
            if (hs[0] != CLIENT_HELLO)
                return sniff_verdict(out, SNIFF_INVALID,
                                     "first handshake message is not a "
                                     "ClientHello",
                                     0);
            msg_len = HANDSHAKE_HEADER + ((size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3]);
            if (msg_len > SNIFF_TLS_MAX - RECORD_HEADER)
                return sniff_verdict(out, SNIFF_INVALID, "ClientHello is larger than the bound", 0);
            known = true;
        }
        if (known && have - frag + rec_len >= msg_len) {
            /* this record holds the message's end: nothing may follow it in the record, since
             * a client sends no other handshake message before the server's answer */
            if (have - frag + rec_len > msg_len)
                return sniff_verdict(out, SNIFF_INVALID,
                                     "bytes after the ClientHello in its "
                                     "record",
                                     0);
            if (frag < rec_len)
                return SNIFF_NEED_MORE;
            *hs_len = msg_len;
            return SNIFF_TLS;
        }
        if (frag < rec_len)
            return SNIFF_NEED_MORE;
        off += RECORD_HEADER + rec_len;
    }
    return SNIFF_NEED_MORE;
}

enum sniff_kind sniff_tls(const uint8_t *p, size_t len, struct sniff_result *out)
{
    /* the handshake bytes are never more than the record bytes they came in */
    uint8_t hs[SNIFF_TLS_MAX];
    size_t hs_len = 0, seen = len < SNIFF_TLS_MAX ? len : SNIFF_TLS_MAX;
    struct cur ch;
    enum sniff_kind k = reassemble(p, seen, hs, &hs_len, out);

    if (k == SNIFF_NEED_MORE) {
        /* one byte fragments cost five bytes of header each: the bound is on the wire */
        if (len >= SNIFF_TLS_MAX)
            return sniff_verdict(out, SNIFF_INVALID, "no whole ClientHello within the bound", 0);
        return sniff_verdict(out, SNIFF_NEED_MORE, "", 0);
    }
    if (k != SNIFF_TLS)
        return k;
    ch = (struct cur){.p = hs + HANDSHAKE_HEADER, .len = hs_len - HANDSHAKE_HEADER};
    return parse_client_hello(&ch, out);
}
