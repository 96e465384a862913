/* test_csr.c - key generation and PEM round trips, CSRs parsed back and verified, and the
 * TLS-ALPN-01 certificate (RFC 8737) taken apart: one SAN, the critical acmeIdentifier. */
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"
#include "check.h"
#include "tls.h"

/* A fixed key authorization and SHA-256 of it, computed with Python's hashlib. */
#define KA "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U"
static const uint8_t ka_sha256[32] = {
    0x65, 0xa2, 0x60, 0x16, 0xd2, 0x15, 0xe1, 0x60, 0x34, 0xb7, 0x63, 0x33, 0x37, 0xb9, 0x1b, 0x4a,
    0x4d, 0x2c, 0x7d, 0x17, 0x76, 0x19, 0x98, 0xda, 0xc5, 0x1a, 0x9a, 0x49, 0x30, 0x0a, 0xea, 0x52,
};

/* The dNSName entries of a GENERAL_NAMES, copied into names (at most max); the count of
 * every entry, DNS or not, is returned so that stray entries show up. */
static size_t dns_names(const GENERAL_NAMES *gens, char names[][64], size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        names[n][0] = '\0';
        if (gn->type == GEN_DNS && n < max) {
            const ASN1_STRING *s = gn->d.dNSName;
            int len = ASN1_STRING_length(s);
            if (len > 0 && len < 64) {
                memcpy(names[n], ASN1_STRING_get0_data(s), (size_t)len);
                names[n][len] = '\0';
            }
        }
        n++;
    }
    return n;
}

static void check_cn(const X509_NAME *subject, const char *want)
{
    char cn[128] = "";
    X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof(cn));
    CHECK_STR(cn, want);
}

static void check_csr(EVP_PKEY *key)
{
    static const char *const names[] = {"a.test", "b.test"};
    size_t len = 0;
    uint8_t *der = acme_csr_der(key, names, 2, &len);
    CHECK(der != NULL && len > 0);
    const uint8_t *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    CHECK(req != NULL && p == der + len);

    EVP_PKEY *pub = X509_REQ_get_pubkey(req);
    CHECK(pub != NULL && EVP_PKEY_cmp(pub, key) == 1);
    CHECK(X509_REQ_verify(req, pub) == 1);
    CHECK(X509_REQ_get_version(req) == X509_REQ_VERSION_1);
    CHECK(X509_REQ_get_signature_nid(req) ==
          (EVP_PKEY_id(key) == EVP_PKEY_EC ? NID_ecdsa_with_SHA256 : NID_sha256WithRSAEncryption));
    check_cn(X509_REQ_get_subject_name(req), "a.test");

    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    CHECK(sk_X509_EXTENSION_num(exts) == 1);
    GENERAL_NAMES *sans = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    char got[4][64];
    CHECK(dns_names(sans, got, 4) == 2);
    CHECK_STR(got[0], "a.test");
    CHECK_STR(got[1], "b.test");

    /* A signature over other bytes must not verify: flip one byte of the names. */
    uint8_t *hit = memmem(der, len, "b.test", 6);
    CHECK(hit != NULL);
    if (hit != NULL) {
        hit[0] = 'c';
        p = der;
        X509_REQ *bad = d2i_X509_REQ(NULL, &p, (long)len);
        CHECK(bad != NULL && X509_REQ_verify(bad, pub) != 1);
        X509_REQ_free(bad);
    }

    GENERAL_NAMES_free(sans);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    EVP_PKEY_free(pub);
    X509_REQ_free(req);
    free(der);
}

static void test_csr(void)
{
    EVP_PKEY *ec = acme_key_generate(ACME_KEY_EC256);
    EVP_PKEY *rsa = acme_key_generate(ACME_KEY_RSA2048);
    CHECK(ec != NULL && EVP_PKEY_id(ec) == EVP_PKEY_EC && EVP_PKEY_bits(ec) == 256);
    CHECK(rsa != NULL && EVP_PKEY_id(rsa) == EVP_PKEY_RSA && EVP_PKEY_bits(rsa) == 2048);
    check_csr(ec);
    check_csr(rsa);

    /* No names, or a name no host has, gives no CSR. */
    static const char *const bad[] = {"a.test", "b test"};
    static const char *const empty[] = {""};
    size_t len = 0;
    CHECK(acme_csr_der(ec, bad, 0, &len) == NULL);
    CHECK(acme_csr_der(ec, bad, 2, &len) == NULL);
    CHECK(acme_csr_der(ec, empty, 1, &len) == NULL);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

/* A name longer than ub-common-name (64) still gets a CSR, with the name in the SAN only. */
static void test_csr_long_name(void)
{
    const char *names[] = {
        "a-very-long-label-that-goes-on-and-on-and-on.another-long-label.example.test",
        "short.test",
    };
    EVP_PKEY *ec = acme_key_generate(ACME_KEY_EC256);
    size_t len = 0;
    uint8_t *der = acme_csr_der(ec, names, 2, &len);
    CHECK(der != NULL);
    const uint8_t *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    CHECK(req != NULL && X509_REQ_verify(req, ec) == 1);
    CHECK(X509_NAME_entry_count(X509_REQ_get_subject_name(req)) == 0);
    X509_REQ_free(req);
    free(der);
    EVP_PKEY_free(ec);
}

static void check_pem_round_trip(enum acme_key_type type)
{
    EVP_PKEY *key = acme_key_generate(type);
    size_t len = 0;
    char *pem = acme_key_to_pem(key, &len);
    CHECK(pem != NULL && len == strlen(pem));
    CHECK(pem != NULL && strncmp(pem, "-----BEGIN PRIVATE KEY-----\n", 28) == 0);
    EVP_PKEY *back = acme_key_from_pem(pem, len);
    CHECK(back != NULL && EVP_PKEY_cmp(back, key) == 1);
    CHECK(back != NULL && EVP_PKEY_id(back) == EVP_PKEY_id(key));

    /* The same key in its traditional form: SEC1 or PKCS#1. */
    BIO *bio = BIO_new(BIO_s_mem());
    int ok =
        type == ACME_KEY_EC256
            ? PEM_write_bio_ECPrivateKey(bio, EVP_PKEY_get0_EC_KEY(key), NULL, NULL, 0, NULL, NULL)
            : PEM_write_bio_RSAPrivateKey(bio, EVP_PKEY_get0_RSA(key), NULL, NULL, 0, NULL, NULL);
    const uint8_t *data = NULL;
    size_t n = 0;
    CHECK(ok && BIO_mem_contents(bio, &data, &n));
    const char *label = type == ACME_KEY_EC256 ? "BEGIN EC PRIVATE KEY" : "BEGIN RSA PRIVATE KEY";
    CHECK(data != NULL && memmem(data, n, label, strlen(label)) != NULL);
    EVP_PKEY *trad = acme_key_from_pem((const char *)data, n);
    CHECK(trad != NULL && EVP_PKEY_cmp(trad, key) == 1);

    EVP_PKEY_free(trad);
    BIO_free(bio);
    EVP_PKEY_free(back);
    free(pem);
    EVP_PKEY_free(key);
}

static void test_key_pem(void)
{
    check_pem_round_trip(ACME_KEY_EC256);
    check_pem_round_trip(ACME_KEY_RSA2048);
    CHECK(acme_key_from_pem("not a key", 9) == NULL);
    CHECK(acme_key_from_pem("", 0) == NULL);
    const char *junk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    CHECK(acme_key_from_pem(junk, strlen(junk)) == NULL);
    CHECK(acme_key_generate((enum acme_key_type)7) == NULL);
}

static void test_alpn_ext_value(void)
{
    uint8_t got[34];
    CHECK(acme_alpn_ext_value(KA, got) == 0);
    CHECK(got[0] == 0x04 && got[1] == 0x20);
    CHECK(memcmp(got + 2, ka_sha256, 32) == 0);
    /* And against BoringSSL's SHA-256 of the same bytes. */
    uint8_t digest[32];
    SHA256((const uint8_t *)KA, strlen(KA), digest);
    CHECK(memcmp(got + 2, digest, 32) == 0);
    CHECK(acme_alpn_ext_value(NULL, got) == -1);
}

/* The leaf: self-signed with the key beside it, one dNSName, the critical acmeIdentifier
 * whose value is exactly acme_alpn_ext_value's output. */
static void check_alpn_leaf(X509 *x, EVP_PKEY *key, const char *name)
{
    EVP_PKEY *pub = X509_get_pubkey(x);
    CHECK(pub != NULL && EVP_PKEY_cmp(pub, key) == 1);
    CHECK(X509_verify(x, pub) == 1);
    CHECK(X509_get_version(x) == X509_VERSION_3);
    CHECK(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
    CHECK(X509_cmp_current_time(X509_get0_notAfter(x)) > 0);

    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char got[4][64];
    CHECK(dns_names(sans, got, 4) == 1);
    CHECK_STR(got[0], name);
    GENERAL_NAMES_free(sans);

    ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
    int at = X509_get_ext_by_OBJ(x, oid, -1);
    CHECK(at >= 0);
    CHECK(X509_get_ext_by_OBJ(x, oid, at) < 0); /* only once */
    X509_EXTENSION *ext = at >= 0 ? X509_get_ext(x, at) : NULL;
    CHECK(ext != NULL && X509_EXTENSION_get_critical(ext) == 1);
    uint8_t want[34];
    CHECK(acme_alpn_ext_value(KA, want) == 0);
    const ASN1_OCTET_STRING *data = ext != NULL ? X509_EXTENSION_get_data(ext) : NULL;
    CHECK(data != NULL && ASN1_STRING_length(data) == 34);
    CHECK(data != NULL && memcmp(ASN1_STRING_get0_data(data), want, 34) == 0);
    CHECK(X509_get_ext_count(x) == 2);

    ASN1_OBJECT_free(oid);
    EVP_PKEY_free(pub);
}

static void test_alpn_cert(void)
{
    const char *name = "alpn.example.test";
    char *cert_pem = NULL;
    char *key_pem = NULL;
    size_t cert_len = 0;
    size_t key_len = 0;
    char err[256] = "";
    CHECK(acme_alpn_cert_pem(name, KA, &cert_pem, &cert_len, &key_pem, &key_len, err,
                             sizeof(err)) == 0);
    CHECK(cert_pem != NULL && cert_len == strlen(cert_pem));
    CHECK(key_pem != NULL && key_len == strlen(key_pem));

    BIO *bio = BIO_new_mem_buf(cert_pem, (int)cert_len);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    EVP_PKEY *key = acme_key_from_pem(key_pem, key_len);
    CHECK(x != NULL && key != NULL && EVP_PKEY_id(key) == EVP_PKEY_EC);
    if (x != NULL && key != NULL) {
        check_alpn_leaf(x, key, name);
    }
    X509_free(x);
    BIO_free(bio);
    EVP_PKEY_free(key);
    free(cert_pem);
    free(key_pem);

    /* The tls_cert the store would serve for the challenge. */
    struct tls_cert *cert = acme_alpn_cert(name, KA, err, sizeof(err));
    CHECK(cert != NULL);
    char *names[4] = {NULL};
    CHECK(cert != NULL && tls_cert_names(cert, names, 4) == 1);
    CHECK_STR(names[0], name);
    free(names[0]);
    tls_cert_unref(cert);

    err[0] = '\0';
    CHECK(acme_alpn_cert("bad name", KA, err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');
    CHECK(acme_alpn_cert_pem(name, NULL, &cert_pem, &cert_len, &key_pem, &key_len, err,
                             sizeof(err)) == -1);
    CHECK(cert_pem == NULL && key_pem == NULL);
}

int main(void)
{
    test_csr();
    test_csr_long_name();
    test_key_pem();
    test_alpn_ext_value();
    test_alpn_cert();
    return check_report();
}
