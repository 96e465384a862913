/* cert.c - loading certificate chains and keys once, into CRYPTO_BUFFERs shared by handshakes. */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tls_int.h"

#define CERT_MAX_CHAIN 16
#define CERT_MAX_NAMES 256

void tls_err_set(char *err, size_t errlen, const char *call)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "unknown error";
    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    }
    ERR_clear_error();
    snprintf(err, errlen, "%s failed: %s", call, reason);
}

void tls_cert_ref(struct tls_cert *cert)
{
    atomic_fetch_add_explicit(&cert->refs, 1, memory_order_relaxed);
}

void tls_cert_unref(struct tls_cert *cert)
{
    if (cert == NULL || atomic_fetch_sub_explicit(&cert->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (size_t i = 0; i < cert->chain_len; i++) {
        CRYPTO_BUFFER_free(cert->chain[i]);
    }
    for (size_t i = 0; i < cert->n_names; i++) {
        free(cert->names[i]);
    }
    free(cert->names);
    free(cert->chain);
    EVP_PKEY_free(cert->key);
    free(cert);
}

/* Reads every CERTIFICATE block of the PEM text into cert->chain. */
static int do_read_chain(struct tls_cert *cert, BIO *bio, char *err, size_t errlen)
{
    cert->chain = calloc(CERT_MAX_CHAIN, sizeof(*cert->chain));
    if (cert->chain == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (;;) {
        char *name = NULL;
        char *header = NULL;
        uint8_t *data = NULL;
        long len = 0;
        if (!PEM_read_bio(bio, &name, &header, &data, &len)) {
            ERR_clear_error(); /* end of input */
            break;
        }
        int is_cert = strcmp(name, "CERTIFICATE") == 0;
        if (is_cert && cert->chain_len < CERT_MAX_CHAIN) {
            cert->chain[cert->chain_len] = CRYPTO_BUFFER_new(data, (size_t)len, NULL);
            if (cert->chain[cert->chain_len] != NULL) {
                cert->chain_len++;
            }
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(data);
    }
    if (cert->chain_len == 0) {
        snprintf(err, errlen, "no PEM CERTIFICATE block found");
        return -1;
    }
    return 0;
}

/* Records the leaf's DNS names and expiry, and checks that the key matches the leaf. */
static int do_inspect_leaf(struct tls_cert *cert, char *err, size_t errlen)
{
    const uint8_t *der = CRYPTO_BUFFER_data(cert->chain[0]);
    X509 *leaf = d2i_X509(NULL, &der, (long)CRYPTO_BUFFER_len(cert->chain[0]));
    if (leaf == NULL) {
        tls_err_set(err, errlen, "d2i_X509() of the leaf certificate");
        return -1;
    }
    int rc = -1;
    EVP_PKEY *pub = X509_get_pubkey(leaf);
    if (pub == NULL || EVP_PKEY_cmp(pub, cert->key) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "the private key does not match the certificate");
        goto out;
    }
    int days = 0;
    int secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(leaf))) {
        cert->not_after = (int64_t)time(NULL) + (int64_t)days * 86400 + secs;
    }
    cert->names = calloc(CERT_MAX_NAMES, sizeof(*cert->names));
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    for (size_t i = 0; cert->names != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_DNS && cert->n_names < CERT_MAX_NAMES) {
            const ASN1_STRING *s = gn->d.dNSName;
            cert->names[cert->n_names] = strndup((const char *)ASN1_STRING_get0_data(s),
                                                 (size_t)ASN1_STRING_length(s));
            if (cert->names[cert->n_names] != NULL) {
                cert->n_names++;
            }
        }
    }
    GENERAL_NAMES_free(sans);
    ERR_clear_error();
    rc = 0;
out:
    EVP_PKEY_free(pub);
    X509_free(leaf);
    return rc;
}

struct tls_cert *tls_cert_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem,
                                   size_t key_len, char *err, size_t errlen)
{
    struct tls_cert *cert = calloc(1, sizeof(*cert));
    if (cert == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&cert->refs, 1);
    atomic_init(&cert->last_used, (long long)time(NULL));
    BIO *cbio = BIO_new_mem_buf(cert_pem, (int)cert_len);
    BIO *kbio = BIO_new_mem_buf(key_pem, (int)key_len);
    if (cbio == NULL || kbio == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (do_read_chain(cert, cbio, err, errlen) != 0) {
        goto fail;
    }
    cert->key = PEM_read_bio_PrivateKey(kbio, NULL, NULL, NULL);
    if (cert->key == NULL) {
        tls_err_set(err, errlen, "PEM_read_bio_PrivateKey()");
        goto fail;
    }
    int type = EVP_PKEY_id(cert->key);
    if (type != EVP_PKEY_EC && type != EVP_PKEY_RSA) {
        snprintf(err, errlen, "unsupported key type (expected ECDSA or RSA)");
        goto fail;
    }
    if (do_inspect_leaf(cert, err, errlen) != 0) {
        goto fail;
    }
    BIO_free(cbio);
    BIO_free(kbio);
    return cert;
fail:
    BIO_free(cbio);
    BIO_free(kbio);
    tls_cert_unref(cert);
    return NULL;
}

static char *do_read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %m", path);
        return NULL;
    }
    size_t cap = 16384;
    size_t n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap || cap >= (1u << 24)) {
            break;
        }
        char *bigger = realloc(buf, cap * 2);
        if (bigger == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    int failed = ferror(f);
    fclose(f);
    if (buf == NULL || failed) {
        free(buf);
        snprintf(err, errlen, "%s: cannot read", path);
        return NULL;
    }
    *len = n;
    return buf;
}

struct tls_cert *tls_cert_load_pem(const char *cert_file, const char *key_file, char *err,
                                   size_t errlen)
{
    size_t clen = 0;
    size_t klen = 0;
    char *cpem = do_read_file(cert_file, &clen, err, errlen);
    if (cpem == NULL) {
        return NULL;
    }
    char *kpem = do_read_file(key_file, &klen, err, errlen);
    if (kpem == NULL) {
        free(cpem);
        return NULL;
    }
    char why[256];
    struct tls_cert *cert = tls_cert_from_pem(cpem, clen, kpem, klen, why, sizeof(why));
    if (cert == NULL) {
        snprintf(err, errlen, "%s / %s: %s", cert_file, key_file, why);
    }
    OPENSSL_cleanse(kpem, klen);
    free(cpem);
    free(kpem);
    return cert;
}

size_t tls_cert_names(const struct tls_cert *cert, char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cert->n_names && n < max; i++) {
        names[n] = strdup(cert->names[i]);
        if (names[n] != NULL) {
            n++;
        }
    }
    return n;
}

int64_t tls_cert_last_used(const struct tls_cert *cert)
{
    return atomic_load_explicit(&((struct tls_cert *)cert)->last_used, memory_order_relaxed);
}

int64_t tls_cert_not_after(const struct tls_cert *cert)
{
    return cert->not_after;
}
