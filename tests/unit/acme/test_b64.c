/* test_b64.c - base64url: RFC 4648 vectors, round trips, bad input and short buffers. */
#include <stdint.h>
#include <string.h>

#include "acme_int.h"
#include "check.h"

/* RFC 4648 section 10, with the padding dropped as base64url in JOSE does. */
static void test_rfc4648_vectors(void)
{
    static const struct {
        const char *in;
        const char *out;
    } v[] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char out[16];
        size_t n = acme_b64url_encode((const uint8_t *)v[i].in, strlen(v[i].in), out, sizeof(out));
        CHECK(n == strlen(v[i].out));
        CHECK_STR(out, v[i].out);

        uint8_t back[16];
        size_t back_len = 99;
        CHECK(acme_b64url_decode(v[i].out, strlen(v[i].out), back, sizeof(back), &back_len) == 0);
        CHECK(back_len == strlen(v[i].in));
        CHECK(memcmp(back, v[i].in, back_len) == 0);
    }
}

/* The two characters where the url alphabet differs from the standard one: 62 is '-' (not
 * '+') and 63 is '_' (not '/'). */
static void test_url_alphabet(void)
{
    static const uint8_t in[] = {0xfb, 0xff, 0xbf};
    char out[8];
    CHECK(acme_b64url_encode(in, sizeof(in), out, sizeof(out)) == 4);
    CHECK_STR(out, "-_-_");

    static const uint8_t in2[] = {0xfb, 0xff};
    CHECK(acme_b64url_encode(in2, sizeof(in2), out, sizeof(out)) == 3);
    CHECK_STR(out, "-_8");

    uint8_t back[8];
    size_t n = 0;
    CHECK(acme_b64url_decode("-_-_", 4, back, sizeof(back), &n) == 0);
    CHECK(n == 3 && memcmp(back, in, 3) == 0);
    /* The standard alphabet's '+' and '/' are not base64url. */
    CHECK(acme_b64url_decode("+/+/", 4, back, sizeof(back), &n) == -1);
}

static void test_padding_tolerated(void)
{
    uint8_t back[8];
    size_t n = 0;
    CHECK(acme_b64url_decode("Zg==", 4, back, sizeof(back), &n) == 0);
    CHECK(n == 1 && back[0] == 'f');
    CHECK(acme_b64url_decode("Zm8=", 4, back, sizeof(back), &n) == 0);
    CHECK(n == 2 && memcmp(back, "fo", 2) == 0);
}

static void test_round_trips(void)
{
    uint8_t in[64];
    for (size_t i = 0; i < sizeof(in); i++) {
        in[i] = (uint8_t)(i * 37 + 11); /* every byte value class, not just ASCII */
    }
    for (size_t len = 0; len <= 64; len++) {
        char enc[100];
        size_t want = len / 3 * 4 + (len % 3 == 0 ? 0 : len % 3 + 1);
        size_t n = acme_b64url_encode(in, len, enc, sizeof(enc));
        CHECK(n == want);
        CHECK(strlen(enc) == n);
        CHECK(strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n);

        uint8_t back[64];
        size_t back_len = 999;
        CHECK(acme_b64url_decode(enc, n, back, sizeof(back), &back_len) == 0);
        CHECK(back_len == len);
        CHECK(memcmp(back, in, len) == 0);
    }
}

static void test_bad_input(void)
{
    uint8_t out[16];
    size_t n = 0;
    CHECK(acme_b64url_decode("Z", 1, out, sizeof(out), &n) == -1);      /* 6 bits: no byte */
    CHECK(acme_b64url_decode("Zm9vY", 5, out, sizeof(out), &n) == -1);  /* len % 4 == 1 */
    CHECK(acme_b64url_decode("Zm9v!A", 6, out, sizeof(out), &n) == -1); /* not in alphabet */
    CHECK(acme_b64url_decode("Zm 9v", 5, out, sizeof(out), &n) == -1);  /* white space */
    CHECK(acme_b64url_decode("Zg=a", 4, out, sizeof(out), &n) == -1);   /* '=' inside */
    CHECK(acme_b64url_decode("Zm\0v", 4, out, sizeof(out), &n) == -1);  /* embedded NUL */
    CHECK(acme_b64url_decode("Zm9v\n", 5, out, sizeof(out), &n) == -1); /* line break */
    CHECK(acme_b64url_decode("", 0, out, sizeof(out), &n) == 0 && n == 0);
}

static void test_small_buffers(void)
{
    const uint8_t *in = (const uint8_t *)"foobar";
    char enc[9];
    /* "Zm9vYmFy" needs 8 characters and the NUL. */
    CHECK(acme_b64url_encode(in, 6, enc, 9) == 8);
    CHECK(acme_b64url_encode(in, 6, enc, 8) == 0);
    CHECK(acme_b64url_encode(in, 6, enc, 0) == 0);
    CHECK(acme_b64url_encode(in, 1, enc, 3) == 2); /* "Zg" */
    CHECK(acme_b64url_encode(in, 1, enc, 2) == 0);

    uint8_t out[6];
    size_t n = 0;
    CHECK(acme_b64url_decode("Zm9vYmFy", 8, out, 6, &n) == 0 && n == 6);
    CHECK(acme_b64url_decode("Zm9vYmFy", 8, out, 5, &n) == -1);
    CHECK(acme_b64url_decode("Zg", 2, out, 0, &n) == -1);
    CHECK(acme_b64url_decode("Zg", 2, out, 1, &n) == 0 && n == 1);
}

int main(void)
{
    test_rfc4648_vectors();
    test_url_alphabet();
    test_padding_tolerated();
    test_round_trips();
    test_bad_input();
    test_small_buffers();
    return check_report();
}
