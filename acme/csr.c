/* csr.c - the certificate requests sent to finalize an order, and TLS-ALPN-01 certificates. */
#include <limits.h>
#include <openssl/bytestring.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"

#define CN_MAX 64 /* ub-common-name (RFC 5280): longer names go in the SAN only */
#define DNS_NAME_MAX 253
#define ALPN_CERT_DAYS 7 /* the CA validates within minutes; a week covers clock skew */
#define ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31" /* id-pe-acmeIdentifier, RFC 8737 */

/* Writes "call failed: reason" into err and empties BoringSSL's error queue, so that a
 * stale entry cannot be blamed on a later, unrelated call. */
static void do_err(char *err, size_t errlen, const char *call)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "unknown error";
    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    }
    ERR_clear_error();
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s failed: %s", call, reason);
    }
}

/* Host names only: the characters a dNSName may hold (plus '*' for wildcards and '_' that
 * some private zones use), so that nothing odd is ever put in an IA5String. */
static bool do_name_ok(const char *name)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_";
    size_t n = name != NULL ? strlen(name) : 0;
    return n > 0 && n <= DNS_NAME_MAX && strspn(name, ok) == n;
}

/* A GENERAL_NAMES of dNSName entries, or NULL when a name is not a host name. */
static GENERAL_NAMES *do_dns_names(const char *const *names, size_t n)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    if (gens == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!do_name_ok(names[i])) {
            goto fail;
        }
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        if (gn == NULL || s == NULL || !ASN1_STRING_set(s, names[i], (int)strlen(names[i]))) {
            GENERAL_NAME_free(gn);
            ASN1_IA5STRING_free(s);
            goto fail;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, s); /* gn owns s */
        if (!sk_GENERAL_NAME_push(gens, gn)) {
            GENERAL_NAME_free(gn);
            goto fail;
        }
    }
    return gens;
fail:
    GENERAL_NAMES_free(gens);
    return NULL;
}

/* Adds CN=cn when it fits ub-common-name; a longer name is left out of the subject, which
 * is allowed because CAs take the names from the subjectAltName. */
static int do_subject_cn(X509_NAME *subject, const char *cn)
{
    size_t n = strlen(cn);
    if (n > CN_MAX) {
        return 0;
    }
    if (!X509_NAME_add_entry_by_NID(subject, NID_commonName, MBSTRING_UTF8, (const uint8_t *)cn,
                                    (int)n, -1, 0)) {
        return -1;
    }
    return 0;
}

/* The DER of req in a malloc'd buffer (i2d would allocate with OPENSSL_malloc, which the
 * caller could not free()). */
static uint8_t *do_req_der(X509_REQ *req, size_t *len)
{
    int n = i2d_X509_REQ(req, NULL);
    if (n <= 0) {
        return NULL;
    }
    uint8_t *der = malloc((size_t)n);
    if (der == NULL) {
        return NULL;
    }
    uint8_t *p = der;
    if (i2d_X509_REQ(req, &p) != n) {
        free(der);
        return NULL;
    }
    if (len != NULL) {
        *len = (size_t)n;
    }
    return der;
}

uint8_t *acme_csr_der(EVP_PKEY *key, const char *const *names, size_t n, size_t *len)
{
    if (key == NULL || names == NULL || n == 0) {
        return NULL;
    }
    uint8_t *der = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *sans = do_dns_names(names, n);
    X509_REQ *req = X509_REQ_new();
    if (sans == NULL || req == NULL) {
        goto out;
    }
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1) ||
        do_subject_cn(X509_REQ_get_subject_name(req), names[0]) != 0 ||
        !X509_REQ_set_pubkey(req, key)) {
        goto out;
    }
    /* The names are requested through the extensionRequest attribute (RFC 2986). */
    if (!X509V3_add1_i2d(&exts, NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT) ||
        !X509_REQ_add_extensions(req, exts)) {
        goto out;
    }
    if (!X509_REQ_sign(req, key, EVP_sha256())) {
        goto out;
    }
    der = do_req_der(req, len);
out:
    ERR_clear_error();
    X509_REQ_free(req);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(sans);
    return der;
}

int acme_alpn_ext_value(const char *key_authorization, uint8_t out[34])
{
    if (key_authorization == NULL) {
        return -1;
    }
    /* The extension holds Authorization ::= OCTET STRING (SIZE (32)), DER: tag, length,
     * then SHA-256 of the key authorization's ASCII bytes (RFC 8737 section 3). */
    out[0] = CBS_ASN1_OCTETSTRING;
    out[1] = SHA256_DIGEST_LENGTH;
    SHA256((const uint8_t *)key_authorization, strlen(key_authorization), out + 2);
    return 0;
}

/* Version, a random positive serial, a validity starting an hour ago (clock skew), and
 * subject = issuer = CN=name. */
static int do_alpn_fields(X509 *x, EVP_PKEY *key, const char *name)
{
    uint64_t serial = 0;
    RAND_bytes((uint8_t *)&serial, sizeof(serial));
    serial &= INT64_MAX; /* positive, and never 0 below */
    ASN1_INTEGER *sn = ASN1_INTEGER_new();
    int ok = sn != NULL && ASN1_INTEGER_set_uint64(sn, serial | 1) && X509_set_serialNumber(x, sn);
    ASN1_INTEGER_free(sn);
    if (!ok || !X509_set_version(x, X509_VERSION_3)) {
        return -1;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), (long)ALPN_CERT_DAYS * 86400) == NULL) {
        return -1;
    }
    if (do_subject_cn(X509_get_subject_name(x), name) != 0 ||
        !X509_set_issuer_name(x, X509_get_subject_name(x)) || !X509_set_pubkey(x, key)) {
        return -1;
    }
    return 0;
}

/* The single dNSName and the critical acmeIdentifier extension. */
static int do_alpn_exts(X509 *x, const char *name, const char *key_authorization)
{
    int rc = -1;
    uint8_t value[34];
    ASN1_OBJECT *oid = OBJ_txt2obj(ACME_IDENTIFIER_OID, 1);
    ASN1_OCTET_STRING *data = ASN1_OCTET_STRING_new();
    X509_EXTENSION *ext = NULL;
    GENERAL_NAMES *sans = do_dns_names(&name, 1);
    if (oid == NULL || data == NULL || sans == NULL) {
        goto out;
    }
    if (!X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT)) {
        goto out;
    }
    if (acme_alpn_ext_value(key_authorization, value) != 0 ||
        !ASN1_OCTET_STRING_set(data, value, sizeof(value))) {
        goto out;
    }
    /* Critical, so that a TLS client that does not know it never accepts this certificate
     * for real traffic (RFC 8737 section 3). */
    ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, data);
    if (ext == NULL || !X509_add_ext(x, ext, -1)) {
        goto out;
    }
    rc = 0;
out:
    X509_EXTENSION_free(ext);
    GENERAL_NAMES_free(sans);
    ASN1_OCTET_STRING_free(data);
    ASN1_OBJECT_free(oid);
    return rc;
}

/* PEM of x in a malloc'd, NUL-terminated string. */
static char *do_cert_pem(X509 *x, size_t *len)
{
    char *out = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio != NULL && PEM_write_bio_X509(bio, x)) {
        out = acme_bio_string(bio, len);
    }
    BIO_free(bio);
    return out;
}

int acme_alpn_cert_pem(const char *name, const char *key_authorization, char **cert_pem,
                       size_t *cert_len, char **key_pem, size_t *key_len, char *err, size_t errlen)
{
    *cert_pem = NULL;
    *key_pem = NULL;
    if (!do_name_ok(name) || key_authorization == NULL) {
        snprintf(err, errlen, "tls-alpn-01: bad name or key authorization");
        return -1;
    }
    X509 *x = X509_new();
    EVP_PKEY *key = acme_key_generate(ACME_KEY_EC256);
    if (x == NULL || key == NULL) {
        do_err(err, errlen, "tls-alpn-01 key generation");
        goto fail;
    }
    if (do_alpn_fields(x, key, name) != 0 || do_alpn_exts(x, name, key_authorization) != 0) {
        do_err(err, errlen, "tls-alpn-01 certificate fields");
        goto fail;
    }
    if (!X509_sign(x, key, EVP_sha256())) {
        do_err(err, errlen, "X509_sign()");
        goto fail;
    }
    *cert_pem = do_cert_pem(x, cert_len);
    *key_pem = acme_key_to_pem(key, key_len);
    if (*cert_pem == NULL || *key_pem == NULL) {
        do_err(err, errlen, "PEM encoding of the tls-alpn-01 certificate");
        goto fail;
    }
    X509_free(x);
    EVP_PKEY_free(key);
    return 0;
fail:
    free(*cert_pem);
    *cert_pem = NULL;
    free(*key_pem);
    *key_pem = NULL;
    X509_free(x);
    EVP_PKEY_free(key);
    return -1;
}

struct tls_cert *acme_alpn_cert(const char *name, const char *key_authorization, char *err,
                                size_t errlen)
{
    char *cert_pem = NULL;
    char *key_pem = NULL;
    size_t cert_len = 0;
    size_t key_len = 0;
    if (acme_alpn_cert_pem(name, key_authorization, &cert_pem, &cert_len, &key_pem, &key_len, err,
                           errlen) != 0) {
        return NULL;
    }
    struct tls_cert *cert = tls_cert_from_pem(cert_pem, cert_len, key_pem, key_len, err, errlen);
    /* The key lives on inside cert only; wipe the PEM copy. */
    OPENSSL_cleanse(key_pem, key_len);
    free(key_pem);
    free(cert_pem);
    return cert;
}
