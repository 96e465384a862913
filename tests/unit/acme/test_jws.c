/* test_jws.c - JWK form and thumbprint (RFC 7638), ES256 JWS signed and verified back,
 * POST-as-GET, key authorizations and the HS256 external account binding.
 *
 * Every JWS is taken apart the way a CA would: parse the flattened JSON, base64url-decode
 * the three parts, read the protected header, and check the signature or MAC with BoringSSL
 * independently of the code under test.
 */
#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/hmac.h>
#include <openssl/nid.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"
#include "check.h"

/* RFC 7515 appendix A.3: the ES256 example key. */
#define A3_X "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
#define A3_Y "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
#define A3_D "jpsQnnGQmL-YBIffH1136cLyG5wFpqXIpOtiFGjp-zs"
#define A3_JWK "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"" A3_X "\",\"y\":\"" A3_Y "\"}"
/* base64url(SHA-256(A3_JWK)), computed with Python's hashlib. */
#define A3_THUMBPRINT "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"

/* RFC 7638 section 3.1: the RSA example key and its thumbprint. */
#define RFC7638_N                                                                                  \
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"      \
    "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"     \
    "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"            \
    "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-"                         \
    "kEgU8awapJzKnqDKgw"
#define RFC7638_E "AQAB"
#define RFC7638_THUMBPRINT "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

/* A JWS taken apart. Owns root, protected_json and the decoded buffers. */
struct parsed {
    cJSON *root;
    const char *protected_b64; /* inside root */
    const char *payload_b64;   /* inside root */
    cJSON *protected_json;
    char *payload; /* decoded, NUL-terminated */
    size_t payload_len;
    uint8_t sig[256];
    size_t sig_len;
};

/* Decodes base64url into a malloc'd, NUL-terminated buffer. */
static char *b64_decode(const char *in, size_t *len)
{
    size_t cap = strlen(in) + 1;
    char *out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    size_t n = 0;
    if (acme_b64url_decode(in, strlen(in), (uint8_t *)out, cap, &n) != 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static const char *string_member(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static void parsed_dispose(struct parsed *p)
{
    cJSON_Delete(p->root);
    cJSON_Delete(p->protected_json);
    free(p->payload);
    memset(p, 0, sizeof(*p));
}

/* Parses a flattened JWS; returns false (with p disposed) when any part is malformed. */
static bool parse_jws(const char *text, struct parsed *p)
{
    memset(p, 0, sizeof(*p));
    p->root = cJSON_Parse(text);
    p->protected_b64 = string_member(p->root, "protected");
    p->payload_b64 = string_member(p->root, "payload");
    const char *sig_b64 = string_member(p->root, "signature");
    if (p->protected_b64 == NULL || p->payload_b64 == NULL || sig_b64 == NULL ||
        cJSON_GetArraySize(p->root) != 3) {
        parsed_dispose(p);
        return false;
    }
    size_t n = 0;
    char *prot = b64_decode(p->protected_b64, &n);
    p->protected_json = prot != NULL ? cJSON_Parse(prot) : NULL;
    free(prot);
    p->payload = b64_decode(p->payload_b64, &p->payload_len);
    if (p->protected_json == NULL || p->payload == NULL ||
        acme_b64url_decode(sig_b64, strlen(sig_b64), p->sig, sizeof(p->sig), &p->sig_len) != 0) {
        parsed_dispose(p);
        return false;
    }
    return true;
}

/* parse_jws with the checks every test wants; false when there is nothing to look at. */
static bool take_apart(const char *jws, struct parsed *p)
{
    memset(p, 0, sizeof(*p));
    CHECK(jws != NULL);
    if (jws == NULL) {
        return false;
    }
    bool ok = parse_jws(jws, p);
    CHECK(ok);
    return ok;
}

/* A P-256 key from base64url coordinates and, when d is not NULL, the private scalar. */
static EVP_PKEY *p256_key(const char *x_b64, const char *y_b64, const char *d_b64)
{
    uint8_t x[32], y[32], d[32];
    size_t xn = 0, yn = 0, dn = 0;
    if (acme_b64url_decode(x_b64, strlen(x_b64), x, 32, &xn) != 0 ||
        acme_b64url_decode(y_b64, strlen(y_b64), y, 32, &yn) != 0 || xn != 32 || yn != 32) {
        return NULL;
    }
    EVP_PKEY *pkey = NULL;
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    BIGNUM *bx = BN_bin2bn(x, 32, NULL);
    BIGNUM *by = BN_bin2bn(y, 32, NULL);
    BIGNUM *bd = NULL;
    bool ok = ec != NULL && bx != NULL && by != NULL &&
              EC_KEY_set_public_key_affine_coordinates(ec, bx, by);
    if (ok && d_b64 != NULL) {
        ok = acme_b64url_decode(d_b64, strlen(d_b64), d, 32, &dn) == 0 && dn == 32;
        bd = ok ? BN_bin2bn(d, 32, NULL) : NULL;
        ok = bd != NULL && EC_KEY_set_private_key(ec, bd);
    }
    if (ok) {
        pkey = EVP_PKEY_new();
        if (pkey != NULL && EVP_PKEY_assign_EC_KEY(pkey, ec)) {
            ec = NULL;
        }
    }
    EC_KEY_free(ec);
    BN_free(bx);
    BN_free(by);
    BN_free(bd);
    return pkey;
}

/* ES256 verification the way a CA does it: r||s back into an ECDSA_SIG, then
 * ECDSA_do_verify over SHA-256("protected.payload"). */
static bool verify_es256(EVP_PKEY *key, const char *prot_b64, const char *payload_b64,
                         const uint8_t *sig, size_t sig_len)
{
    if (sig_len != 64) {
        return false;
    }
    size_t a = strlen(prot_b64), b = strlen(payload_b64);
    char *input = malloc(a + 1 + b + 1);
    if (input == NULL) {
        return false;
    }
    memcpy(input, prot_b64, a);
    input[a] = '.';
    memcpy(input + a + 1, payload_b64, b);
    input[a + 1 + b] = '\0';
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)input, a + 1 + b, digest);
    free(input);

    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL);
    BIGNUM *sv = BN_bin2bn(sig + 32, 32, NULL);
    bool ok = false;
    if (s != NULL && r != NULL && sv != NULL && ECDSA_SIG_set0(s, r, sv)) {
        r = sv = NULL; /* s owns them */
        ok = ECDSA_do_verify(digest, sizeof(digest), s, EVP_PKEY_get0_EC_KEY(key)) == 1;
    }
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(s);
    return ok;
}

/* RFC 7638 section 3.1's RSA key through the same hashing step the EC thumbprint uses. */
static void rsa_thumbprint(const char *n, const char *e, char out[44])
{
    char json[512];
    int len = snprintf(json, sizeof(json), "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", e, n);
    CHECK(len > 0 && (size_t)len < sizeof(json));
    CHECK(acme_thumbprint_of_json(json, out) == 0);
}

static void test_thumbprint_rfc7638(void)
{
    char thumb[44];
    rsa_thumbprint(RFC7638_N, RFC7638_E, thumb);
    CHECK_STR(thumb, RFC7638_THUMBPRINT);
    CHECK(acme_thumbprint_of_json(NULL, thumb) == -1);
}

static void test_jwk_known_key(void)
{
    EVP_PKEY *key = p256_key(A3_X, A3_Y, A3_D);
    CHECK(key != NULL);
    char *jwk = acme_jwk_json(key);
    CHECK_STR(jwk, A3_JWK);
    free(jwk);
    char thumb[44];
    CHECK(acme_jwk_thumbprint(key, thumb) == 0);
    CHECK_STR(thumb, A3_THUMBPRINT);
    EVP_PKEY_free(key);
}

/* Coordinates with leading zero bytes must still be 32 bytes (43 base64url characters):
 * generate keys until one has such a coordinate and check the JWK. */
static void test_jwk_padding(void)
{
    bool seen = false;
    for (int i = 0; i < 2000 && !seen; i++) {
        EVP_PKEY *key = acme_key_generate(ACME_KEY_EC256);
        uint8_t pt[65];
        const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
        EC_POINT_point2oct(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec),
                           POINT_CONVERSION_UNCOMPRESSED, pt, sizeof(pt), NULL);
        if (pt[1] == 0 || pt[33] == 0) {
            seen = true;
            char *jwk = acme_jwk_json(key);
            cJSON *obj = cJSON_Parse(jwk);
            CHECK(strlen(string_member(obj, "x")) == 43);
            CHECK(strlen(string_member(obj, "y")) == 43);
            cJSON_Delete(obj);
            free(jwk);
        }
        EVP_PKEY_free(key);
    }
    CHECK(seen);
}

static void test_jwk_refuses_other_keys(void)
{
    EVP_PKEY *p384 = EVP_PKEY_new();
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_secp384r1);
    CHECK(ec != NULL && EC_KEY_generate_key(ec) && EVP_PKEY_assign_EC_KEY(p384, ec));
    CHECK(acme_jwk_json(p384) == NULL);
    size_t len = 0;
    CHECK(acme_jws_sign(p384, NULL, "n", "https://ca.test/x", "{}", &len) == NULL);
    EVP_PKEY_free(p384);

    EVP_PKEY *rsa = acme_key_generate(ACME_KEY_RSA2048);
    CHECK(rsa != NULL);
    CHECK(acme_jwk_json(rsa) == NULL);
    char thumb[44];
    CHECK(acme_jwk_thumbprint(rsa, thumb) == -1);
    CHECK(acme_jws_sign(rsa, NULL, "n", "https://ca.test/x", "{}", &len) == NULL);
    EVP_PKEY_free(rsa);
    CHECK(acme_jwk_json(NULL) == NULL);
}

/* Checks header fields common to every ES256 request. */
static void check_es256_header(const cJSON *hdr, const char *nonce, const char *url)
{
    CHECK_STR(string_member(hdr, "alg"), "ES256");
    CHECK_STR(string_member(hdr, "nonce"), nonce);
    CHECK_STR(string_member(hdr, "url"), url);
}

static void test_jws_with_jwk(void)
{
    EVP_PKEY *key = acme_key_generate(ACME_KEY_EC256);
    const char *url = "https://ca.test/acme/new-acct";
    const char *payload = "{\"termsOfServiceAgreed\":true}";
    size_t len = 0;
    char *jws = acme_jws_sign(key, NULL, "nonce-1", url, payload, &len);
    struct parsed p;
    if (!take_apart(jws, &p)) {
        EVP_PKEY_free(key);
        return;
    }
    CHECK(len == strlen(jws));
    check_es256_header(p.protected_json, "nonce-1", url);
    CHECK(cJSON_GetObjectItemCaseSensitive(p.protected_json, "kid") == NULL);
    cJSON *jwk = cJSON_GetObjectItemCaseSensitive(p.protected_json, "jwk");
    char *jwk_text = cJSON_PrintUnformatted(jwk);
    char *want = acme_jwk_json(key);
    CHECK_STR(jwk_text, want);
    CHECK_STR(p.payload, payload);
    CHECK(p.sig_len == 64);
    CHECK(verify_es256(key, p.protected_b64, p.payload_b64, p.sig, p.sig_len));

    /* The key in the header is the one that signed: a CA verifies with it. */
    EVP_PKEY *from_hdr = p256_key(string_member(jwk, "x"), string_member(jwk, "y"), NULL);
    CHECK(verify_es256(from_hdr, p.protected_b64, p.payload_b64, p.sig, p.sig_len));

    /* Tampering with the payload or the signature breaks verification. */
    char other[64];
    acme_b64url_encode((const uint8_t *)"{\"termsOfServiceAgreed\":false}", 30, other,
                       sizeof(other));
    CHECK(!verify_es256(key, p.protected_b64, other, p.sig, p.sig_len));
    p.sig[10] ^= 0x01;
    CHECK(!verify_es256(key, p.protected_b64, p.payload_b64, p.sig, p.sig_len));

    EVP_PKEY_free(from_hdr);
    cJSON_free(jwk_text);
    free(want);
    parsed_dispose(&p);
    free(jws);
    EVP_PKEY_free(key);
}

static void test_jws_with_kid(void)
{
    EVP_PKEY *key = acme_key_generate(ACME_KEY_EC256);
    const char *kid = "https://ca.test/acme/acct/42";
    /* A URL with characters JSON must escape still comes out intact. */
    const char *url = "https://ca.test/acme/order/\"1\"\\x";
    char *jws = acme_jws_sign(key, kid, "abc_-123", url, "{\"csr\":\"MIIB\"}", NULL);
    struct parsed p;
    if (!take_apart(jws, &p)) {
        free(jws);
        EVP_PKEY_free(key);
        return;
    }
    check_es256_header(p.protected_json, "abc_-123", url);
    CHECK_STR(string_member(p.protected_json, "kid"), kid);
    CHECK(cJSON_GetObjectItemCaseSensitive(p.protected_json, "jwk") == NULL);
    CHECK(cJSON_GetArraySize(p.protected_json) == 4);
    CHECK_STR(p.payload, "{\"csr\":\"MIIB\"}");
    CHECK(verify_es256(key, p.protected_b64, p.payload_b64, p.sig, p.sig_len));
    parsed_dispose(&p);
    free(jws);

    /* No nonce or no URL: not a valid ACME request. */
    CHECK(acme_jws_sign(key, kid, NULL, url, "{}", NULL) == NULL);
    CHECK(acme_jws_sign(key, kid, "n", NULL, "{}", NULL) == NULL);
    EVP_PKEY_free(key);
}

static void test_post_as_get(void)
{
    EVP_PKEY *key = acme_key_generate(ACME_KEY_EC256);
    const char *kid = "https://ca.test/acme/acct/42";
    size_t len = 0;
    char *jws = acme_jws_sign(key, kid, "n-2", "https://ca.test/acme/authz/7", NULL, &len);
    struct parsed p;
    if (!take_apart(jws, &p)) {
        EVP_PKEY_free(key);
        return;
    }
    CHECK(len == strlen(jws));
    CHECK(strstr(jws, "\"payload\":\"\"") != NULL);
    CHECK_STR(p.payload_b64, "");
    CHECK(p.payload_len == 0);
    CHECK(verify_es256(key, p.protected_b64, "", p.sig, p.sig_len));
    /* "{}" is a different request (RFC 8555 6.3): its signature must not verify as "". */
    CHECK(!verify_es256(key, p.protected_b64, "e30", p.sig, p.sig_len));
    parsed_dispose(&p);
    free(jws);
    EVP_PKEY_free(key);
}

static void test_key_authorization(void)
{
    EVP_PKEY *key = p256_key(A3_X, A3_Y, NULL);
    const char *token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";
    char *ka = acme_key_authorization(token, key);
    CHECK_STR(ka, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA." A3_THUMBPRINT);
    free(ka);
    EVP_PKEY_free(key);

    EVP_PKEY *fresh = acme_key_generate(ACME_KEY_EC256);
    char thumb[44];
    char want[128];
    CHECK(acme_jwk_thumbprint(fresh, thumb) == 0);
    snprintf(want, sizeof(want), "tok_en-1.%s", thumb);
    ka = acme_key_authorization("tok_en-1", fresh);
    CHECK_STR(ka, want);
    free(ka);
    /* A token that could walk a path or break a header is refused. */
    CHECK(acme_key_authorization("../etc/passwd", fresh) == NULL);
    CHECK(acme_key_authorization("a b", fresh) == NULL);
    CHECK(acme_key_authorization("", fresh) == NULL);
    CHECK(acme_key_authorization(NULL, fresh) == NULL);
    EVP_PKEY_free(fresh);
}

static void test_eab(void)
{
    EVP_PKEY *key = acme_key_generate(ACME_KEY_EC256);
    static const uint8_t mac_key[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                      0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87,
                                      0x00, 0xff, 0x10, 0xef, 0x20, 0xdf, 0x30, 0xcf};
    const char *url = "https://ca.test/acme/new-acct";
    char *eab = acme_eab_jws(key, "kid-7", mac_key, sizeof(mac_key), url);
    struct parsed p;
    if (!take_apart(eab, &p)) {
        EVP_PKEY_free(key);
        return;
    }
    CHECK_STR(string_member(p.protected_json, "alg"), "HS256");
    CHECK_STR(string_member(p.protected_json, "kid"), "kid-7");
    CHECK_STR(string_member(p.protected_json, "url"), url);
    CHECK(cJSON_GetArraySize(p.protected_json) == 3); /* no nonce, no jwk */

    /* The payload is the account key's JWK, byte for byte. */
    char *jwk = acme_jwk_json(key);
    CHECK_STR(p.payload, jwk);
    char jwk_b64[256];
    acme_b64url_encode((const uint8_t *)jwk, strlen(jwk), jwk_b64, sizeof(jwk_b64));
    CHECK_STR(p.payload_b64, jwk_b64);

    char input[1024];
    int n = snprintf(input, sizeof(input), "%s.%s", p.protected_b64, p.payload_b64);
    CHECK(n > 0 && (size_t)n < sizeof(input));
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    HMAC(EVP_sha256(), mac_key, sizeof(mac_key), (const uint8_t *)input, (size_t)n, mac, &mac_len);
    CHECK(mac_len == 32 && p.sig_len == 32);
    CHECK(memcmp(mac, p.sig, 32) == 0);

    CHECK(acme_eab_jws(key, "kid-7", mac_key, 0, url) == NULL);
    CHECK(acme_eab_jws(key, NULL, mac_key, sizeof(mac_key), url) == NULL);
    free(jwk);
    parsed_dispose(&p);
    free(eab);
    EVP_PKEY_free(key);
}

int main(void)
{
    test_thumbprint_rfc7638();
    test_jwk_known_key();
    test_jwk_padding();
    test_jwk_refuses_other_keys();
    test_jws_with_jwk();
    test_jws_with_kid();
    test_post_as_get();
    test_key_authorization();
    test_eab();
    return check_report();
}
