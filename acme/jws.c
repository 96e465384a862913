/* jws.c - the account key's JWK and thumbprint, and the JWS objects every ACME POST carries. */
#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"

#define P256_COORD ((size_t)32)
#define THUMBPRINT_LEN ((size_t)43)

/* The three base64url parts of a JWS and the signing input "protected.payload" built from
 * them. Every pointer is owned by the struct; do_parts_dispose frees them. */
struct jws_parts {
    char *protected_b64;
    char *payload_b64;
    char *input; /* protected_b64 "." payload_b64 */
    size_t input_len;
};

/* base64url of len bytes into a malloc'd string; NULL on failure. */
static char *do_b64_alloc(const void *data, size_t len)
{
    if (len > (SIZE_MAX - 8) / 4 * 3) {
        return NULL;
    }
    size_t cap = (len + 2) / 3 * 4 + 1;
    char *out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    /* acme_b64url_encode returns 0 both for an empty input and for "too small"; the
     * capacity above always suffices, so 0 only ever means empty here. */
    size_t n = acme_b64url_encode(data, len, out, cap);
    if (len > 0 && n == 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Copies the uncompressed public point of a P-256 key into xy (x then y, 32 bytes each,
 * zero-padded by the encoding itself). ACME account keys here are ES256 only, so any other
 * key type or curve is refused. */
static int do_p256_point(EVP_PKEY *key, uint8_t xy[2 * P256_COORD])
{
    const EC_KEY *ec = key != NULL ? EVP_PKEY_get0_EC_KEY(key) : NULL;
    if (ec == NULL) {
        ERR_clear_error();
        return -1;
    }
    const EC_GROUP *group = EC_KEY_get0_group(ec);
    const EC_POINT *pub = EC_KEY_get0_public_key(ec);
    if (group == NULL || pub == NULL || EC_GROUP_get_curve_name(group) != NID_X9_62_prime256v1) {
        return -1;
    }
    uint8_t buf[1 + 2 * P256_COORD];
    size_t n =
        EC_POINT_point2oct(group, pub, POINT_CONVERSION_UNCOMPRESSED, buf, sizeof(buf), NULL);
    if (n != sizeof(buf) || buf[0] != 0x04) {
        ERR_clear_error();
        return -1;
    }
    memcpy(xy, buf + 1, 2 * P256_COORD);
    return 0;
}

char *acme_jwk_json(EVP_PKEY *key)
{
    uint8_t xy[2 * P256_COORD];
    if (do_p256_point(key, xy) != 0) {
        return NULL;
    }
    char x[44];
    char y[44];
    if (acme_b64url_encode(xy, P256_COORD, x, sizeof(x)) != THUMBPRINT_LEN ||
        acme_b64url_encode(xy + P256_COORD, P256_COORD, y, sizeof(y)) != THUMBPRINT_LEN) {
        return NULL;
    }
    /* Written by hand rather than through cJSON: RFC 7638 fixes the member order and forbids
     * white space, and the thumbprint depends on every byte. */
    static const char fmt[] = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}";
    size_t cap = sizeof(fmt) + 2 * THUMBPRINT_LEN;
    char *out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    int n = snprintf(out, cap, fmt, x, y);
    if (n < 0 || (size_t)n >= cap) {
        free(out);
        return NULL;
    }
    return out;
}

int acme_thumbprint_of_json(const char *json, char out[44])
{
    if (json == NULL) {
        return -1;
    }
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)json, strlen(json), digest);
    if (acme_b64url_encode(digest, sizeof(digest), out, 44) != THUMBPRINT_LEN) {
        return -1;
    }
    return 0;
}

int acme_jwk_thumbprint(EVP_PKEY *key, char out[44])
{
    char *jwk = acme_jwk_json(key);
    if (jwk == NULL) {
        return -1;
    }
    int rc = acme_thumbprint_of_json(jwk, out);
    free(jwk);
    return rc;
}

/* Tokens come from the CA and end up in file names and HTTP paths (http-01), so anything
 * beyond the base64url alphabet RFC 8555 section 8.1 promises is refused. */
static bool do_token_ok(const char *token)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(token);
    return n > 0 && strspn(token, ok) == n;
}

char *acme_key_authorization(const char *token, EVP_PKEY *account_key)
{
    char thumb[44];
    if (token == NULL || !do_token_ok(token) || acme_jwk_thumbprint(account_key, thumb) != 0) {
        return NULL;
    }
    size_t cap = strlen(token) + 1 + THUMBPRINT_LEN + 1;
    char *out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }
    int n = snprintf(out, cap, "%s.%s", token, thumb);
    if (n < 0 || (size_t)n >= cap) {
        free(out);
        return NULL;
    }
    return out;
}

static void do_parts_dispose(struct jws_parts *p)
{
    free(p->protected_b64);
    p->protected_b64 = NULL;
    free(p->payload_b64);
    p->payload_b64 = NULL;
    free(p->input);
    p->input = NULL;
}

/* Encodes the header JSON and the payload and joins them into the signing input. */
static int do_parts_init(struct jws_parts *p, const char *header, const char *payload)
{
    memset(p, 0, sizeof(*p));
    p->protected_b64 = do_b64_alloc(header, strlen(header));
    p->payload_b64 = do_b64_alloc(payload, strlen(payload));
    if (p->protected_b64 == NULL || p->payload_b64 == NULL) {
        goto fail;
    }
    size_t a = strlen(p->protected_b64);
    size_t b = strlen(p->payload_b64);
    p->input = malloc(a + 1 + b + 1);
    if (p->input == NULL) {
        goto fail;
    }
    memcpy(p->input, p->protected_b64, a);
    p->input[a] = '.';
    memcpy(p->input + a + 1, p->payload_b64, b + 1);
    p->input_len = a + 1 + b;
    return 0;
fail:
    do_parts_dispose(p);
    return -1;
}

/* The flattened JSON serialization (RFC 7515 section 7.2.2). The three values are
 * base64url, so they need no JSON escaping. */
static char *do_flatten(const struct jws_parts *p, const uint8_t *sig, size_t sig_len, size_t *len)
{
    static const char fmt[] = "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}";
    char *out = NULL;
    char *sig_b64 = do_b64_alloc(sig, sig_len);
    if (sig_b64 == NULL) {
        return NULL;
    }
    size_t cap = sizeof(fmt) + p->input_len + strlen(sig_b64);
    out = malloc(cap);
    if (out == NULL) {
        goto out;
    }
    int n = snprintf(out, cap, fmt, p->protected_b64, p->payload_b64, sig_b64);
    if (n < 0 || (size_t)n >= cap) {
        free(out);
        out = NULL;
        goto out;
    }
    if (len != NULL) {
        *len = (size_t)n;
    }
out:
    free(sig_b64);
    return out;
}

/* Prints obj without white space into a malloc'd string (cJSON's allocator is malloc). */
static char *do_print(cJSON *obj)
{
    char *text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return text;
}

/* {"alg":"ES256","jwk":{...}|"kid":"...","nonce":"...","url":"..."}; cJSON escapes the
 * strings, which come from the CA. */
static char *do_es256_header(EVP_PKEY *key, const char *kid, const char *nonce, const char *url)
{
    cJSON *hdr = cJSON_CreateObject();
    if (hdr == NULL || cJSON_AddStringToObject(hdr, "alg", "ES256") == NULL) {
        goto fail;
    }
    if (kid != NULL) {
        if (cJSON_AddStringToObject(hdr, "kid", kid) == NULL) {
            goto fail;
        }
    } else {
        char *jwk_text = acme_jwk_json(key);
        cJSON *jwk = jwk_text != NULL ? cJSON_Parse(jwk_text) : NULL;
        free(jwk_text);
        if (jwk == NULL || !cJSON_AddItemToObject(hdr, "jwk", jwk)) {
            cJSON_Delete(jwk);
            goto fail;
        }
    }
    if (cJSON_AddStringToObject(hdr, "nonce", nonce) == NULL ||
        cJSON_AddStringToObject(hdr, "url", url) == NULL) {
        goto fail;
    }
    return do_print(hdr);
fail:
    cJSON_Delete(hdr);
    return NULL;
}

/* ES256: ECDSA over SHA-256 of the input, written as r||s with each half left-padded to
 * 32 bytes (RFC 7518 section 3.4), not as the DER ECDSA-Sig-Value. */
static int do_es256_sign(EVP_PKEY *key, const char *input, size_t len, uint8_t sig[2 * P256_COORD])
{
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256((const uint8_t *)input, len, digest);
    ECDSA_SIG *s = ec != NULL ? ECDSA_do_sign(digest, sizeof(digest), ec) : NULL;
    if (s == NULL) {
        ERR_clear_error();
        return -1;
    }
    const BIGNUM *r = NULL;
    const BIGNUM *sv = NULL;
    ECDSA_SIG_get0(s, &r, &sv);
    int ok =
        BN_bn2bin_padded(sig, P256_COORD, r) && BN_bn2bin_padded(sig + P256_COORD, P256_COORD, sv);
    ECDSA_SIG_free(s);
    return ok ? 0 : -1;
}

char *acme_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                    const char *payload, size_t *len)
{
    uint8_t xy[2 * P256_COORD];
    /* Every ACME request needs a fresh nonce and the URL it goes to (RFC 8555 6.4, 6.5). */
    if (nonce == NULL || url == NULL || do_p256_point(key, xy) != 0) {
        return NULL;
    }
    char *out = NULL;
    struct jws_parts parts = {0};
    char *header = do_es256_header(key, kid, nonce, url);
    if (header == NULL) {
        return NULL;
    }
    /* POST-as-GET (RFC 8555 6.3) signs an empty payload, encoded as "". */
    if (do_parts_init(&parts, header, payload != NULL ? payload : "") != 0) {
        goto out;
    }
    uint8_t sig[2 * P256_COORD];
    if (do_es256_sign(key, parts.input, parts.input_len, sig) != 0) {
        goto out;
    }
    out = do_flatten(&parts, sig, sizeof(sig), len);
out:
    do_parts_dispose(&parts);
    cJSON_free(header);
    return out;
}

/* {"alg":"HS256","kid":"...","url":"..."}: no nonce, as RFC 8555 section 7.3.4 demands. */
static char *do_hs256_header(const char *kid, const char *url)
{
    cJSON *hdr = cJSON_CreateObject();
    if (hdr == NULL || cJSON_AddStringToObject(hdr, "alg", "HS256") == NULL ||
        cJSON_AddStringToObject(hdr, "kid", kid) == NULL ||
        cJSON_AddStringToObject(hdr, "url", url) == NULL) {
        cJSON_Delete(hdr);
        return NULL;
    }
    return do_print(hdr);
}

char *acme_eab_jws(EVP_PKEY *account_key, const char *eab_kid, const uint8_t *hmac_key,
                   size_t hmac_len, const char *url)
{
    if (eab_kid == NULL || url == NULL || hmac_key == NULL || hmac_len == 0) {
        return NULL;
    }
    char *out = NULL;
    struct jws_parts parts = {0};
    char *jwk = acme_jwk_json(account_key);
    char *header = do_hs256_header(eab_kid, url);
    if (jwk == NULL || header == NULL) {
        goto out;
    }
    if (do_parts_init(&parts, header, jwk) != 0) {
        goto out;
    }
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (HMAC(EVP_sha256(), hmac_key, hmac_len, (const uint8_t *)parts.input, parts.input_len, mac,
             &mac_len) == NULL) {
        ERR_clear_error();
        goto out;
    }
    out = do_flatten(&parts, mac, mac_len, NULL);
out:
    do_parts_dispose(&parts);
    cJSON_free(header);
    free(jwk);
    return out;
}
