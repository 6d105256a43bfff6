/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the credential matchers, the code that reads attacker bytes:
 * - redact: one or two secrets taken from the input (printable ASCII, as the loader allows),
 *   the rest of the input as a response body. The streaming redactor fed in pieces cut by the
 *   input must give exactly what the one-shot redact_text gives and what a naive reference
 *   written here gives; it never holds back more than 6 x the secret length - 1 bytes; and
 *   when no placeholder can combine with its surroundings into a secret (its first and last
 *   characters occur in no secret, no secret lies inside it) no secret appears in the output of
 *   redact_text or redact_field.
 * - creds: placeholder search (raw, percent-decoded, Basic), substitution in every mode, the
 *   Basic decode and re-encode, and substitute_in on the input as a request target and header.
 * Invariants are checked with __builtin_trap(). */
#include "airlock/creds.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airlock/redact.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_SECRET 48
#define PH_CREDS   "AIRLOCK_PLACEHOLDER_FUZZ_0001"

/* ---- the naive reference: every position, every secret, every form, all bytes known ---- */

static int ref_hex(unsigned char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Form 0 raw, 1 percent, 2 JSON, 3 both. The byte (or code point) of the token at s[j]. */
static int ref_token(int form, const unsigned char *s, size_t n, size_t j, size_t *len)
{
    *len = 1;
    if ((form == 1 || form == 3) && s[j] == '%' && j + 2 < n && ref_hex(s[j + 1]) >= 0 &&
        ref_hex(s[j + 2]) >= 0) {
        *len = 3;
        return ref_hex(s[j + 1]) * 16 + ref_hex(s[j + 2]);
    }
    if ((form == 2 || form == 3) && s[j] == '\\' && j + 1 < n) {
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = s[j + 1] ? strchr(from, s[j + 1]) : NULL;
        if (hit) {
            *len = 2;
            return (unsigned char)to[hit - from];
        }
        if (s[j + 1] == 'u' && j + 5 < n) {
            int cp = 0;
            for (size_t k = 2; k < 6; k++) {
                if (ref_hex(s[j + k]) < 0)
                    return '\\';
                cp = cp * 16 + ref_hex(s[j + k]);
            }
            *len = 6;
            return cp < 0x80 ? cp : -1;
        }
    }
    return s[j];
}

/* Length of the match of secret in form at s[pos], or 0. */
static size_t ref_match(const struct redact_pair *pr, int form, const unsigned char *s, size_t n,
                        size_t pos)
{
    size_t j = pos;
    for (size_t i = 0; i < pr->secret_len; i++) {
        if (j >= n)
            return 0;
        size_t len;
        int v = ref_token(form, s, n, j, &len);
        bool plus = (form == 1 || form == 3) && s[j] == '+' && pr->secret[i] == ' ';
        if (v != (unsigned char)pr->secret[i] && !plus)
            return 0;
        j += len;
    }
    return j - pos;
}

static void ref_redact(const struct redact_pair *pairs, size_t npairs, const unsigned char *s,
                       size_t n, struct http_buf *out)
{
    for (size_t pos = 0; pos < n;) {
        size_t best = 0, which = 0;
        for (size_t p = 0; p < npairs; p++) {
            for (int f = 0; f < 4; f++) {
                size_t m = ref_match(&pairs[p], f, s, n, pos);
                if (m > best) {
                    best = m;
                    which = p;
                }
            }
        }
        if (best) {
            http_buf_append(out, pairs[which].placeholder, pairs[which].placeholder_len);
            pos += best;
        } else {
            http_buf_append(out, (const char *)s + pos, 1);
            pos++;
        }
    }
}

/* ---- redact ---- */

static bool same(const struct http_buf *a, const struct http_buf *b)
{
    return a->failed == b->failed && a->len == b->len &&
           (a->len == 0 || !memcmp(a->data, b->data, a->len));
}

static bool contains(const struct http_buf *b, const char *s, size_t n)
{
    return b->len && memmem(b->data, b->len, s, n) != NULL;
}

static void fuzz_redact(const uint8_t *data, size_t size)
{
    char secrets[2][MAX_SECRET + 1];
    char phs[2][40];
    struct redact_pair pairs[2];
    if (size < 3)
        return;
    size_t npairs = 1 + (data[0] & 1);
    uint32_t seed = data[0] >> 1;
    size_t at = 3;
    for (size_t p = 0; p < npairs; p++) {
        size_t len = 1 + data[1 + p] % MAX_SECRET;
        if (size - at < len)
            return;
        for (size_t i = 0; i < len; i++)
            secrets[p][i] = (char)(0x20 + data[at + i] % 95);
        secrets[p][len] = '\0';
        at += len;
        pairs[p].secret = secrets[p];
        pairs[p].secret_len = len;
    }
    /* Placeholders whose outer character is in no secret, when there is such a character. */
    static const char word[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    char edge = 0;
    for (const char *w = word; *w && !edge; w++) {
        if (!strchr(secrets[0], *w) && (npairs == 1 || !strchr(secrets[1], *w)))
            edge = *w;
    }
    bool clean = edge != 0;
    for (size_t p = 0; p < npairs; p++) {
        snprintf(phs[p], sizeof phs[p], "%cIRLOCK_FUZZ_%zu%c", edge ? edge : 'Q', p,
                 edge ? edge : 'Q');
        pairs[p].placeholder = phs[p];
        pairs[p].placeholder_len = strlen(phs[p]);
    }
    for (size_t p = 0; p < npairs; p++) {
        for (size_t q = 0; q < npairs; q++)
            clean = clean && !strstr(phs[q], secrets[p]);
    }
    /* The providers loader refuses secrets under 8 bytes: a shorter one can turn up by chance
     * in a Base64 run re-encoded around another secret's placeholder. */
    for (size_t p = 0; p < npairs; p++)
        clean = clean && pairs[p].secret_len >= 8;
    const char *text = (const char *)data + at;
    size_t n = size - at;

    struct http_buf one = {0}, ref = {0}, streamed = {0}, field = {0};
    redact_text(pairs, npairs, text, n, &one);
    ref_redact(pairs, npairs, (const unsigned char *)text, n, &ref);
    CHECK(same(&one, &ref));

    /* Pieces of 1 to 64 bytes (sometimes empty), from a small LCG seeded by the input. */
    struct redactor *r = redact_new(pairs, npairs);
    size_t max_hold = 0;
    for (size_t p = 0; p < npairs; p++) {
        size_t h = REDACT_MAX_ESCAPE * pairs[p].secret_len - 1;
        max_hold = h > max_hold ? h : max_hold;
    }
    for (size_t pos = 0; pos < n;) {
        seed = seed * 1103515245u + 12345u;
        size_t piece = (seed >> 16) % 65;
        if (piece > n - pos)
            piece = n - pos;
        redact_feed(r, text + pos, piece, &streamed);
        CHECK(redact_pending(r) <= max_hold);
        pos += piece;
    }
    redact_finish(r, &streamed);
    CHECK(redact_pending(r) == 0);
    redact_free(r);
    CHECK(same(&streamed, &one));

    redact_field(pairs, npairs, text, n, &field);
    if (clean) {
        for (size_t p = 0; p < npairs; p++) {
            CHECK(!contains(&one, secrets[p], pairs[p].secret_len));
            CHECK(!contains(&field, secrets[p], pairs[p].secret_len));
        }
    }
    http_buf_free(&one);
    http_buf_free(&ref);
    http_buf_free(&streamed);
    http_buf_free(&field);
}

/* ---- creds ---- */

static struct creds *load_provider(void)
{
    static const char doc[] =
        "{\"version\": 1, \"providers\": {\"f\": {\"placeholder\": \"" PH_CREDS "\", "
        "\"secret\": {\"env\": \"AIRLOCK_FUZZ_SECRET\"}, "
        "\"endpoints\": [{\"host\": \"api.example.com\", \"port\": 443}], "
        "\"substitute_in\": [\"header:Authorization\", \"query:key\"]}}}";
    setenv("AIRLOCK_FUZZ_SECRET", "s3cr/et+key %zz", 1);
    struct creds *c = creds_parse(doc, sizeof doc - 1, NULL);
    CHECK(c != NULL);
    return c;
}

static void fuzz_creds(const uint8_t *data, size_t size)
{
    static struct creds *c;
    if (!c)
        c = load_provider();
    const struct creds_provider *p = creds_at(c, 0);
    const char *s = (const char *)data;

    bool appears = creds_appears(p, s, size);
    for (int mode = CREDS_SECRET; mode <= CREDS_REDACT; mode++) {
        struct http_buf out = {0};
        creds_substitute(p, s, size, (enum creds_mode)mode, &out);
        CHECK(!out.failed);
        /* Every occurrence is replaced: none is left raw. */
        CHECK(!contains(&out, PH_CREDS, strlen(PH_CREDS)));
        if (!appears && size)
            CHECK(out.len == size && !memcmp(out.data, s, size));
        creds_buf_wipe(&out);
    }
    struct http_buf h = {0};
    creds_substitute_header(p, s, size, &h);
    CHECK(!h.failed);
    creds_buf_wipe(&h);

    /* The input as a request target, and as an X-Other header value. */
    struct http_field f = {"X-Other", 7, s, size};
    struct http_head head = {.is_request = true, .target = s, .target_len = size};
    const char *in_target = creds_misplaced(p, &head);
    CHECK(!in_target || appears);
    head.fields = &f;
    head.nfields = 1;
    /* A placeholder in X-Other is never allowed; none anywhere is never refused. */
    CHECK(!creds_misplaced(p, &head) == !appears);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_redact(data, size);
    fuzz_creds(data, size);
    return 0;
}
