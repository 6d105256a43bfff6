/* SPDX-License-Identifier: MIT */
/* redact: the matcher that runs over response bytes on connections that carried a secret.
 * Owns only the bytes it holds back (wiped before they are dropped); the secrets and
 * placeholders are borrowed from creds. Invariant: at every position the decision (a secret
 * starts here, or it does not) is taken only once the bytes that follow settle it, so a stream
 * cut anywhere gives the output of the whole text. Cost: one table look-up per byte for text
 * that does not look like the start of a secret; at a candidate, a walk of at most one secret
 * per form and pair. */
#include "airlock/redact.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "airlock/path.h"

/* How a secret may be written, each a consistent tokenisation of the text. One form per
 * encoder that a server may have applied (and plain text), because their escapes overlap: a
 * '%' or '\' in the secret itself is plain in one form and an escape in another. */
enum form {
    FORM_RAW,      /* as is */
    FORM_PCT,      /* percent-encoded (RFC 3986 §2.1), '+' also for a space (HTML forms) */
    FORM_JSON,     /* inside a JSON string (RFC 8259 §7) */
    FORM_JSON_PCT, /* a percent-encoded URL inside a JSON string: both escapes */
    FORM_COUNT,
};

enum verdict { V_NO, V_MATCH, V_MORE };

/* Base64 forms are searched for secrets at least this long (shorter ones give fragments
 * short enough to turn up by chance). */
#define B64_MIN_SECRET 6

struct redactor {
    struct redact_pair pairs[REDACT_MAX_PAIRS];
    size_t npairs;
    bool can_start[256];  /* a byte that can begin some form of some secret */
    struct http_buf hold; /* bytes not yet settled (wipe: they may be a secret's prefix) */
};

/* The token at s, which starts with '%': its length and byte; 1 (a plain '%') when no escape
 * follows; 0 when the bytes that would tell have not arrived yet. */
static size_t pct_token(const unsigned char *s, size_t n, bool final, int *value)
{
    *value = '%';
    for (size_t k = 1; k < 3; k++) {
        if (k >= n)
            return final ? 1 : 0;
        if (path_hex_value(s[k]) < 0)
            return 1;
    }
    *value = path_hex_value(s[1]) << 4 | path_hex_value(s[2]);
    return 3;
}

/* The same for a token that starts with '\' in a JSON string. "\uXXXX" above U+007F never
 * equals a secret's byte (value -1): a non-ASCII secret is matched only as its raw bytes. */
static size_t json_token(const unsigned char *s, size_t n, bool final, int *value)
{
    static const struct {
        unsigned char esc, byte;
    } shorts[] = {{'"', '"'},  {'\\', '\\'}, {'/', '/'},  {'b', '\b'},
                  {'f', '\f'}, {'n', '\n'},  {'r', '\r'}, {'t', '\t'}};
    *value = '\\';
    if (n < 2)
        return final ? 1 : 0;
    if (s[1] != 'u') {
        for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++) {
            if (shorts[i].esc == s[1]) {
                *value = shorts[i].byte;
                return 2;
            }
        }
        return 1;
    }
    int cp = 0;
    for (size_t k = 2; k < 6; k++) {
        if (k >= n)
            return final ? 1 : 0;
        int h = path_hex_value(s[k]);
        if (h < 0)
            return 1;
        cp = cp << 4 | h;
    }
    *value = cp < 0x80 ? cp : -1;
    return 6;
}

/* Does the pair's secret, written in form f, start at s? V_MORE when the n bytes available
 * (not the final ones) agree so far but do not settle it; *end is the match's length. */
static enum verdict match_form(const struct redact_pair *pr, enum form f, const unsigned char *s,
                               size_t n, bool final, size_t *end)
{
    const unsigned char *secret = (const unsigned char *)pr->secret;
    bool pct = f == FORM_PCT || f == FORM_JSON_PCT;
    bool json = f == FORM_JSON || f == FORM_JSON_PCT;
    size_t j = 0;

    for (size_t i = 0; i < pr->secret_len; i++) {
        if (j == n)
            return final ? V_NO : V_MORE;
        int value = s[j];
        size_t t = 1;
        if (pct && s[j] == '%')
            t = pct_token(s + j, n - j, final, &value);
        else if (json && s[j] == '\\')
            t = json_token(s + j, n - j, final, &value);
        if (t == 0)
            return V_MORE;
        /* application/x-www-form-urlencoded writes a space as '+' (and a '+' as "%2B"). */
        bool plus_space = pct && s[j] == '+' && secret[i] == ' ';
        if (value != secret[i] && !plus_space)
            return V_NO;
        j += t;
    }
    *end = j;
    return V_MATCH;
}

/* The longest match of any pair in any form at s. V_MORE as soon as one of them is unsettled:
 * a longer match might still come, and the one-shot result must not depend on the split. */
static enum verdict match_at(const struct redactor *r, const unsigned char *s, size_t n, bool final,
                             size_t *end, const struct redact_pair **which)
{
    enum verdict best = V_NO;
    *end = 0;
    for (size_t i = 0; i < r->npairs; i++) {
        for (int f = 0; f < FORM_COUNT; f++) {
            size_t e;
            enum verdict v = match_form(&r->pairs[i], (enum form)f, s, n, final, &e);
            if (v == V_MORE)
                return V_MORE;
            if (v == V_MATCH && e > *end) {
                best = V_MATCH;
                *end = e;
                *which = &r->pairs[i];
            }
        }
    }
    return best;
}

/* Redact s into out up to the first position that is not settled; returns that position (n
 * when final). */
static size_t scan(const struct redactor *r, const char *text, size_t n, bool final,
                   struct http_buf *out)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0, plain = 0;
    while (pos < n) {
        if (!r->can_start[s[pos]]) {
            pos++;
            continue;
        }
        size_t end;
        const struct redact_pair *pr = NULL;
        enum verdict v = match_at(r, s + pos, n - pos, final, &end, &pr);
        if (v == V_MORE)
            break;
        if (v == V_NO) {
            pos++;
            continue;
        }
        http_buf_append(out, text + plain, pos - plain);
        http_buf_append(out, pr->placeholder, pr->placeholder_len);
        pos += end;
        plain = pos;
    }
    http_buf_append(out, text + plain, pos - plain);
    return pos;
}

static void init(struct redactor *r, const struct redact_pair *pairs, size_t npairs)
{
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < npairs && r->npairs < REDACT_MAX_PAIRS; i++) {
        if (pairs[i].secret_len == 0)
            continue;
        r->pairs[r->npairs++] = pairs[i];
        unsigned char first = (unsigned char)pairs[i].secret[0];
        r->can_start[first] = true;
        if (first == ' ')
            r->can_start['+'] = true;
    }
    r->can_start['%'] = true;
    r->can_start['\\'] = true;
    r->hold.wipe = true;
}

struct redactor *redact_new(const struct redact_pair *pairs, size_t npairs)
{
    struct redactor *r = malloc(sizeof *r);
    if (r)
        init(r, pairs, npairs);
    return r;
}

void redact_free(struct redactor *r)
{
    if (!r)
        return;
    http_buf_free(&r->hold);
    OPENSSL_cleanse(r, sizeof *r);
    free(r);
}

/* Keep hold[used..] as the new hold, wiping the bytes that move out of it. */
static void keep_from(struct redactor *r, size_t used)
{
    struct http_buf *h = &r->hold;
    size_t rest = h->len - used;
    memmove(h->data, h->data + used, rest);
    OPENSSL_cleanse(h->data + rest, h->len - rest);
    h->len = rest;
}

void redact_feed(struct redactor *r, const char *p, size_t len, struct http_buf *out)
{
    if (len == 0)
        return;
    if (r->hold.len == 0) {
        /* The common case: nothing held, scan the caller's bytes in place. */
        size_t used = scan(r, p, len, false, out);
        http_buf_append(&r->hold, p + used, len - used);
    } else {
        http_buf_append(&r->hold, p, len);
        if (!r->hold.failed)
            keep_from(r, scan(r, r->hold.data, r->hold.len, false, out));
    }
    if (r->hold.failed)
        out->failed = true;
}

void redact_finish(struct redactor *r, struct http_buf *out)
{
    if (r->hold.len)
        scan(r, r->hold.data, r->hold.len, true, out);
    http_buf_free(&r->hold);
}

size_t redact_pending(const struct redactor *r)
{
    return r->hold.len;
}

void redact_text(const struct redact_pair *pairs, size_t npairs, const char *p, size_t len,
                 struct http_buf *out)
{
    struct redactor r;
    init(&r, pairs, npairs);
    if (len)
        scan(&r, p, len, true, out);
}

/* ---- Base64 in header values ---- */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64_value(const char *alphabet, unsigned char ch)
{
    if (ch == '\0')
        return -1;
    const char *hit = strchr(alphabet, ch);
    return hit ? (int)(hit - alphabet) : -1;
}

/* RFC 4648 §4 (§5 with the URL alphabet); out has room for 4 * ceil(n / 3). */
static size_t b64_encode(const char *alphabet, const unsigned char *in, size_t n, bool pad,
                         char *out)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t got = n - i < 3 ? n - i : 3;
        if (got > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (got > 2)
            v |= in[i + 2];
        for (size_t k = 0; k < 4; k++) {
            if (k <= got)
                out[w++] = alphabet[(v >> (18 - 6 * k)) & 63];
            else if (pad)
                out[w++] = '=';
        }
    }
    return w;
}

/* Decode n characters without padding (n % 4 != 1); out has room for n * 3 / 4. */
static bool b64_decode(const char *alphabet, const char *in, size_t n, unsigned char *out,
                       size_t *out_len)
{
    size_t w = 0;
    if (n % 4 == 1)
        return false;
    for (size_t i = 0; i < n; i += 4) {
        size_t got = n - i < 4 ? n - i : 4;
        uint32_t v = 0;
        for (size_t k = 0; k < 4; k++) {
            int d = k < got ? b64_value(alphabet, (unsigned char)in[i + k]) : 0;
            if (d < 0)
                return false;
            v = v << 6 | (uint32_t)d;
        }
        for (size_t k = 0; k + 1 < got; k++)
            out[w++] = (unsigned char)(v >> (16 - 8 * k));
    }
    *out_len = w;
    return true;
}

/* The characters of the Base64 of a secret that sits k bytes (0..2) into a quantum and that
 * depend on nothing but the secret, appended to core (a wipe buffer); *lead is the index of
 * the first of them within its 4-character group. */
static bool b64_core(const char *alphabet, const struct redact_pair *pr, size_t k,
                     struct http_buf *core, size_t *lead)
{
    size_t n = k + pr->secret_len;
    size_t cap = (n + 2) / 3 * 4;
    unsigned char *plain = calloc(1, n);
    char *enc = malloc(cap);
    bool ok = false;
    if (plain && enc) {
        memcpy(plain + k, pr->secret, pr->secret_len);
        b64_encode(alphabet, plain, n, false, enc);
        /* Character c holds bits [6c, 6c + 6): the first one wholly after the k leading
         * bytes, up to the last one wholly inside the secret. */
        size_t first = (8 * k + 5) / 6, last = 8 * n / 6;
        if (first < last) {
            http_buf_append(core, enc + first, last - first);
            *lead = first;
            ok = !core->failed;
        }
    }
    if (plain)
        OPENSSL_cleanse(plain, n);
    if (enc)
        OPENSSL_cleanse(enc, cap);
    free(plain);
    free(enc);
    return ok;
}

static bool in_alphabet(const char *alphabet, unsigned char ch)
{
    return b64_value(alphabet, ch) >= 0;
}

/* Append d with every occurrence of the pair's secret replaced by its placeholder. */
static void replace_secret(const struct redact_pair *pr, const unsigned char *d, size_t n,
                           struct http_buf *out)
{
    size_t pos = 0;
    const unsigned char *hit;
    while (pos < n && (hit = memmem(d + pos, n - pos, pr->secret, pr->secret_len)) != NULL) {
        http_buf_append(out, (const char *)d + pos, (size_t)(hit - d) - pos);
        http_buf_append(out, pr->placeholder, pr->placeholder_len);
        pos = (size_t)(hit - d) + pr->secret_len;
    }
    http_buf_append(out, (const char *)d + pos, n - pos);
}

/* The Base64 run [qs, re) (then pad '=' up to pe) decodes to text holding the secret: append
 * cur with the run re-encoded around the placeholder. false when it does not decode so. *next
 * is where the search goes on: after the new run. */
static bool reencode_run(const char *alphabet, const struct redact_pair *pr,
                         const struct http_buf *cur, size_t qs, size_t re, size_t pe,
                         struct http_buf *out, size_t *next)
{
    size_t cap = (re - qs) / 4 * 3 + 3, dlen = 0;
    unsigned char *dec = malloc(cap);
    struct http_buf plain = {.wipe = true};
    char *enc = NULL;
    bool ok = false;
    if (dec && b64_decode(alphabet, cur->data + qs, re - qs, dec, &dlen) &&
        memmem(dec, dlen, pr->secret, pr->secret_len)) {
        replace_secret(pr, dec, dlen, &plain);
        enc = plain.failed ? NULL : malloc((plain.len + 2) / 3 * 4);
    }
    if (enc) {
        /* Padded as the run was. A run of whole groups says nothing: it is padded (RFC 4648
         * §4) unless it plainly is the URL alphabet, which mostly goes unpadded (JWTs). */
        const char *run = cur->data + qs;
        bool url = memchr(run, '-', re - qs) || memchr(run, '_', re - qs);
        bool pad = pe > re || ((re - qs) % 4 == 0 && !url);
        size_t w = b64_encode(alphabet, (unsigned char *)plain.data, plain.len, pad, enc);
        http_buf_append(out, cur->data, qs);
        http_buf_append(out, enc, w);
        http_buf_append(out, cur->data + pe, cur->len - pe);
        *next = qs + w;
        ok = true;
    }
    if (dec)
        OPENSSL_cleanse(dec, cap);
    free(dec);
    free(enc);
    http_buf_free(&plain);
    return ok;
}

/* cur holds a core at [a, a + core_len) whose 4-character group starts lead characters
 * earlier. Re-encode the Base64 run around it with the placeholder for the secret; when the run
 * does not decode to text holding the secret, replace the core itself. Writes the new text to
 * out and returns where the search goes on. */
static size_t rewrite_b64(const char *alphabet, const struct redact_pair *pr,
                          const struct http_buf *cur, size_t a, size_t core_len, size_t lead,
                          struct http_buf *out)
{
    const unsigned char *s = (const unsigned char *)cur->data;
    size_t len = cur->len, rs = a, re = a + core_len, pe, next;
    while (rs > 0 && in_alphabet(alphabet, s[rs - 1]))
        rs--;
    while (re < len && in_alphabet(alphabet, s[re]))
        re++;
    for (pe = re; pe < len && pe - re < 2 && s[pe] == '='; pe++)
        ;
    /* The run may begin with characters that belong to something else ("/cb/" before a
     * token in a Location): decode from the first group boundary the core's alignment gives. */
    if (a >= rs + lead &&
        reencode_run(alphabet, pr, cur, rs + (a - lead - rs) % 4, re, pe, out, &next))
        return next;
    out->len = 0;
    http_buf_append(out, cur->data, a);
    http_buf_append(out, pr->placeholder, pr->placeholder_len);
    http_buf_append(out, cur->data + a + core_len, len - a - core_len);
    return a + pr->placeholder_len;
}

/* Replace every occurrence of one core in *cur (swapping buffers as it rewrites). */
static void redact_core(const char *alphabet, const struct redact_pair *pr,
                        const struct http_buf *core, size_t lead, struct http_buf *cur)
{
    size_t from = 0;
    const char *hit;
    while (from < cur->len &&
           (hit = memmem(cur->data + from, cur->len - from, core->data, core->len)) != NULL) {
        struct http_buf next = {.wipe = true};
        from = rewrite_b64(alphabet, pr, cur, (size_t)(hit - cur->data), core->len, lead, &next);
        if (next.failed) {
            http_buf_free(&next);
            cur->failed = true;
            return;
        }
        http_buf_free(cur);
        *cur = next;
    }
}

void redact_field(const struct redact_pair *pairs, size_t npairs, const char *p, size_t len,
                  struct http_buf *out)
{
    static const char *const alphabets[] = {b64_std, b64_url};
    struct http_buf cur = {.wipe = true};
    redact_text(pairs, npairs, p, len, &cur);
    for (size_t i = 0; i < npairs && i < REDACT_MAX_PAIRS && !cur.failed; i++) {
        const struct redact_pair *pr = &pairs[i];
        if (pr->secret_len < B64_MIN_SECRET)
            continue;
        for (size_t a = 0; a < 2; a++) {
            for (size_t k = 0; k < 3; k++) {
                struct http_buf core = {.wipe = true};
                size_t lead = 0;
                if (!b64_core(alphabets[a], pr, k, &core, &lead))
                    cur.failed = true;
                else if (core.len <= cur.len)
                    redact_core(alphabets[a], pr, &core, lead, &cur);
                http_buf_free(&core);
            }
        }
    }
    if (cur.failed)
        out->failed = true;
    else
        http_buf_append(out, cur.data, cur.len);
    http_buf_free(&cur);
}
