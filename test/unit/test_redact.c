/* SPDX-License-Identifier: MIT */
/* Unit tests for redact: every encoding of a secret an upstream may echo (raw, percent-encoded
 * in either hex case, '+' for a space, JSON escapes, both together, Base64 in a field), the
 * streaming redactor cut at every point against the one-shot result, the hold-back bound, and
 * several secrets at once. */
#include "airlock/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "test.h"

#define SECRET "tok/en s3cr3t+key"
#define PH     "AIRLOCK_PLACEHOLDER_0123"

static const struct redact_pair pair = {SECRET, sizeof SECRET - 1, PH, sizeof PH - 1};

/* One-shot redaction of s as a NUL-terminated malloc'd string. */
static char *text(const struct redact_pair *pairs, size_t n, const char *s)
{
    struct http_buf b = {0};
    redact_text(pairs, n, s, strlen(s), &b);
    char *r = strdup(b.data ? b.data : "");
    http_buf_free(&b);
    return r;
}

static char *field(const char *s)
{
    struct http_buf b = {0};
    redact_field(&pair, 1, s, strlen(s), &b);
    char *r = strdup(b.data ? b.data : "");
    http_buf_free(&b);
    return r;
}

#define CHECK_TEXT(in, want)                                                                       \
    do {                                                                                           \
        char *got_ = text(&pair, 1, in);                                                           \
        CHECK_STR(got_, want);                                                                     \
        free(got_);                                                                                \
    } while (0)

static void test_forms(void)
{
    CHECK_TEXT("a " SECRET " b " SECRET, "a " PH " b " PH);
    CHECK_TEXT("tok%2Fen%20s3cr3t%2Bkey", PH);                             /* upper-case hex */
    CHECK_TEXT("tok%2fen+s3cr3t%2bkey", PH);                               /* lower, '+' space */
    CHECK_TEXT("%74%6F%6b%2F%65%6E%20%73%33%63%72%33%74%2B%6B%65%79", PH); /* every byte */
    CHECK_TEXT("\"tok\\/en s3cr3t+key\"", "\"" PH "\"");                   /* JSON "\/" */
    CHECK_TEXT("\"tok\\u002fen\\u0020s3cr3t\\u002Bkey\"", "\"" PH "\"");   /* JSON \u00XX */
    CHECK_TEXT("{\"u\":\"https:\\/\\/x\\/?t=tok%2Fen%20s3cr3t%2Bkey\"}",
               "{\"u\":\"https:\\/\\/x\\/?t=" PH "\"}"); /* a URL inside JSON */
    CHECK_TEXT("tok\\/en%20s3cr3t+key", PH);             /* both escapes in one occurrence */
    /* near misses stay as they are */
    CHECK_TEXT("tok/en s3cr3t+ke", "tok/en s3cr3t+ke");
    CHECK_TEXT("tok%2Gen s3cr3t+key", "tok%2Gen s3cr3t+key");
    CHECK_TEXT("tok\\u00en s3cr3t+key", "tok\\u00en s3cr3t+key");
    CHECK_TEXT("", "");
    /* '+' is a space only where the secret has one */
    CHECK_TEXT("tok/en+s3cr3t+key", PH);
    CHECK_TEXT("tok/en s3cr3t key", "tok/en s3cr3t key");

    /* a secret whose own characters are escape introducers: matched raw too */
    static const struct redact_pair odd = {"a%41\\nb", 7, PH, sizeof PH - 1};
    char *got = text(&odd, 1, "x a%41\\nb y a%2541%5Cnb z \"a%41\\\\nb\"");
    CHECK_STR(got, "x " PH " y " PH " z \"" PH "\"");
    free(got);
}

static void test_several_secrets(void)
{
    static const struct redact_pair pairs[] = {
        {"short-secret", 12, "AIRLOCK_PLACEHOLDER_SHORT", 25},
        {"short-secret-longer", 19, "AIRLOCK_PLACEHOLDER_LONG", 24},
    };
    /* the longest match at a position wins */
    char *got = text(pairs, 2, "[short-secret-longer] [short-secret] [short%2Dsecret-longer]");
    CHECK_STR(got, "[AIRLOCK_PLACEHOLDER_LONG] [AIRLOCK_PLACEHOLDER_SHORT] "
                   "[AIRLOCK_PLACEHOLDER_LONG]");
    free(got);
}

/* Feed s in the pieces that cuts[] (ascending offsets) makes, then finish. */
static char *streamed(const struct redact_pair *pairs, size_t n, const char *s, const size_t *cuts,
                      size_t ncuts, size_t *max_pending)
{
    struct redactor *r = redact_new(pairs, n);
    struct http_buf b = {0};
    size_t len = strlen(s), from = 0;
    *max_pending = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        redact_feed(r, s + from, to - from, &b);
        if (redact_pending(r) > *max_pending)
            *max_pending = redact_pending(r);
        from = to;
    }
    redact_finish(r, &b);
    CHECK_EQ(redact_pending(r), 0);
    redact_free(r);
    char *out = strdup(b.data ? b.data : "");
    http_buf_free(&b);
    return out;
}

static const char mixed[] =
    "{\"a\": \"" SECRET "\", \"b\": \"tok\\/en s3cr3t+key\", \"c\": \"tok%2fen+s3cr3t%2Bkey\", "
    "\"d\": \"tok\\u002Fen s3cr3t+ke\", \"e\": \"tok\\u002fen\\u0020s3cr3t\\u002bkey\", "
    "\"f\": \"tok/en s3cr3t+key\", \"g\": \"%\", \"h\": \"\\\\\", \"end\": \"tok/en s3c";

/* Every cut into two pieces, every cut into three around the middle, and byte by byte: the
 * same output as the one-shot redaction. */
static void test_streaming_equals_one_shot(void)
{
    char *want = text(&pair, 1, mixed);
    CHECK(strstr(want, SECRET) == NULL);
    size_t len = strlen(mixed), max_pending, worst = 0, bad = 0;
    for (size_t i = 1; i < len; i++) {
        char *got = streamed(&pair, 1, mixed, &i, 1, &max_pending);
        bad += strcmp(got, want) != 0;
        worst = max_pending > worst ? max_pending : worst;
        free(got);
    }
    for (size_t i = 1; i + 40 < len; i++) {
        size_t cuts[2] = {i, i + 1 + i % 37};
        char *got = streamed(&pair, 1, mixed, cuts, 2, &max_pending);
        bad += strcmp(got, want) != 0;
        free(got);
    }
    size_t *bytes = malloc(len * sizeof *bytes);
    for (size_t i = 0; i + 1 < len; i++)
        bytes[i] = i + 1;
    char *got = streamed(&pair, 1, mixed, bytes, len - 1, &max_pending);
    bad += strcmp(got, want) != 0;
    worst = max_pending > worst ? max_pending : worst;
    free(got);
    free(bytes);
    CHECK_EQ(bad, 0);
    CHECK(worst <= REDACT_MAX_ESCAPE * strlen(SECRET) - 1);
    free(want);
}

/* A raw prefix of the secret is held back by at most the secret's length minus one byte, and
 * goes out unchanged when the message ends without the rest. */
static void test_hold_back(void)
{
    struct redactor *r = redact_new(&pair, 1);
    struct http_buf b = {0};
    redact_feed(r, "abc tok/en s3cr3t+ke", 20, &b);
    CHECK_EQ(redact_pending(r), strlen(SECRET) - 1);
    CHECK_EQ(b.len, 4);
    redact_feed(r, "y!", 2, &b);
    CHECK_EQ(redact_pending(r), 0);
    CHECK_STR(b.data, "abc " PH "!");
    redact_feed(r, "tok/en", 6, &b);
    redact_finish(r, &b);
    CHECK_STR(b.data, "abc " PH "!tok/en");
    /* plain text is never held */
    redact_feed(r, "hello world", 11, &b);
    CHECK_EQ(redact_pending(r), 0);
    redact_free(r);
    http_buf_free(&b);
    redact_free(NULL);
}

static void b64_of(const char *s, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)strlen(s));
}

static void to_url_alphabet(char *s, bool strip_pad)
{
    for (; *s; s++) {
        if (*s == '+')
            *s = '-';
        else if (*s == '/')
            *s = '_';
        else if (*s == '=' && strip_pad)
            *s = '\0';
    }
}

/* The Base64 text between "state=" and "&" in s, decoded in either alphabet, padded or not. */
static void decode_state(const char *s, char *out)
{
    char b[512];
    const char *from = strstr(s, "state="), *to = from ? strchr(from, '&') : NULL;
    out[0] = '\0';
    if (!to)
        return;
    from += 6;
    size_t n = 0;
    for (const char *c = from; c < to && *c != '='; c++)
        b[n++] = *c == '-' ? '+' : *c == '_' ? '/' : *c;
    size_t pad = (4 - n % 4) % 4;
    for (size_t i = 0; i < pad; i++)
        b[n++] = '=';
    b[n] = '\0';
    int got = EVP_DecodeBlock((unsigned char *)out, (unsigned char *)b, (int)n);
    out[got < 0 ? 0 : (size_t)got - pad] = '\0';
}

static void test_base64_fields(void)
{
    char dec[512];
    static const char *const prefixes[] = {"", "a", "ab", "user:", "abc:"};
    char plain[128], enc[256], in[512], want_plain[128], want_enc[256], want[512];
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        for (int url = 0; url < 2; url++) {
            /* every alignment of the secret in the encoded text, both alphabets */
            snprintf(plain, sizeof plain, "%s%s;tail", prefixes[i], SECRET);
            b64_of(plain, enc);
            snprintf(want_plain, sizeof want_plain, "%s%s;tail", prefixes[i], PH);
            b64_of(want_plain, want_enc);
            if (url) {
                to_url_alphabet(enc, true);
                to_url_alphabet(want_enc, true);
            }
            snprintf(in, sizeof in, "https://h.example/cb?state=%s&x=1", enc);
            char *got = field(in);
            CHECK(strncmp(got, "https://h.example/cb?state=", 27) == 0);
            CHECK(strstr(got, "&x=1") != NULL);
            decode_state(got, dec);
            CHECK_STR(dec, want_plain);
            free(got);
        }
    }
    /* a WWW-Authenticate challenge that quotes Basic credentials */
    b64_of("user:" SECRET, enc);
    b64_of("user:" PH, want_enc);
    snprintf(in, sizeof in, "Basic realm=\"x\", error=\"bad %s\"", enc);
    snprintf(want, sizeof want, "Basic realm=\"x\", error=\"bad %s\"", want_enc);
    char *got = field(in);
    CHECK_STR(got, want);
    free(got);
    /* raw and encoded forms in the same value */
    got = field("Bearer tok%2Fen%20s3cr3t%2Bkey");
    CHECK_STR(got, "Bearer " PH);
    free(got);
    /* a run that does not decode cleanly (one character too many): the core goes */
    b64_of("xx" SECRET "yy", enc);
    snprintf(in, sizeof in, "v=%sA", enc);
    got = field(in);
    CHECK(strstr(got, PH) != NULL);
    CHECK(strncmp(got, in, 5) == 0); /* up to the core */
    free(got);
    /* nothing to do */
    got = field("no secret here");
    CHECK_STR(got, "no secret here");
    free(got);
}

int main(void)
{
    RUN(test_forms);
    RUN(test_several_secrets);
    RUN(test_streaming_equals_one_shot);
    RUN(test_hold_back);
    RUN(test_base64_fields);
    return test_report();
}
