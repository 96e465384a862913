/* keys.c - generating private keys and moving them in and out of PEM for storage. */
#include <limits.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"

#define RSA_BITS 2048

static EVP_PKEY *do_generate_ec(void)
{
    EVP_PKEY *pkey = NULL;
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    if (ec == NULL || !EC_KEY_generate_key(ec)) {
        goto fail;
    }
    pkey = EVP_PKEY_new();
    if (pkey == NULL || !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
        goto fail;
    }
    return pkey; /* pkey owns ec now */
fail:
    EVP_PKEY_free(pkey);
    EC_KEY_free(ec);
    ERR_clear_error();
    return NULL;
}

static EVP_PKEY *do_generate_rsa(void)
{
    EVP_PKEY *pkey = NULL;
    RSA *rsa = RSA_new();
    BIGNUM *e = BN_new();
    if (rsa == NULL || e == NULL || !BN_set_word(e, RSA_F4)) {
        goto fail;
    }
    if (!RSA_generate_key_ex(rsa, RSA_BITS, e, NULL)) {
        goto fail;
    }
    pkey = EVP_PKEY_new();
    if (pkey == NULL || !EVP_PKEY_assign_RSA(pkey, rsa)) {
        goto fail;
    }
    BN_free(e);
    return pkey; /* pkey owns rsa now */
fail:
    EVP_PKEY_free(pkey);
    RSA_free(rsa);
    BN_free(e);
    ERR_clear_error();
    return NULL;
}

EVP_PKEY *acme_key_generate(enum acme_key_type type)
{
    switch (type) {
    case ACME_KEY_EC256:
        return do_generate_ec();
    case ACME_KEY_RSA2048:
        return do_generate_rsa();
    }
    return NULL;
}

char *acme_bio_string(BIO *bio, size_t *len)
{
    const uint8_t *data = NULL;
    size_t n = 0;
    if (bio == NULL || !BIO_mem_contents(bio, &data, &n)) {
        return NULL;
    }
    /* Copied so that the caller frees with free(), not OPENSSL_free(). */
    char *out = malloc(n + 1);
    if (out == NULL) {
        return NULL;
    }
    memcpy(out, data, n);
    out[n] = '\0';
    if (len != NULL) {
        *len = n;
    }
    return out;
}

char *acme_key_to_pem(EVP_PKEY *key, size_t *len)
{
    char *out = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    /* PKCS#8 without a passphrase: the storage directory's mode 0700 protects it. */
    if (key != NULL && bio != NULL &&
        PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
        out = acme_bio_string(bio, len);
    }
    if (out == NULL) {
        ERR_clear_error();
    }
    BIO_free(bio);
    return out;
}

EVP_PKEY *acme_key_from_pem(const char *pem, size_t len)
{
    if (pem == NULL || len == 0 || len > INT_MAX) {
        return NULL;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return NULL;
    }
    /* PEM_read_bio_PrivateKey takes "PRIVATE KEY" (PKCS#8), "EC PRIVATE KEY" (SEC1) and
     * "RSA PRIVATE KEY" (PKCS#1) blocks alike. */
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (key == NULL) {
        ERR_clear_error();
        return NULL;
    }
    int type = EVP_PKEY_id(key);
    if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA) {
        /* Neither ACME accounts nor the TLS store handle other key types. */
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}
