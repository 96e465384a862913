/* acme_int.h - the pieces of the acme module, shared by its files only: base64url, keys,
 * JWS, CSRs, TLS-ALPN-01 certificates, the on-disk storage, the HTTPS client and DNS. */
#ifndef MOAT_ACME_INT_H
#define MOAT_ACME_INT_H

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "acme.h"
#include "tls.h"

/* ---- base64url (RFC 4648 section 5, no padding) ------------------------------------ */

/* Writes the encoding and a NUL into out. Returns its length, or 0 when cap is too small
 * (cap must hold 4*ceil(len/3)+1 bytes to be safe). */
size_t acme_b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Decodes base64url (padding '=' tolerated). Returns 0 and sets *out_len, or -1 on bad
 * input or when cap is too small. */
int acme_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

/* ---- keys (keys.c) ------------------------------------------------------------------ */

enum acme_key_type {
    ACME_KEY_EC256 = 0,
    ACME_KEY_RSA2048,
};

/* Generates a key. Slow for RSA: run it off the loop (uv_queue_work). NULL on failure. */
EVP_PKEY *acme_key_generate(enum acme_key_type type);

/* PKCS#8 PEM of the private key, malloc'd, NUL-terminated; *len without the NUL. */
char *acme_key_to_pem(EVP_PKEY *key, size_t *len);

/* The contents of a memory BIO as a malloc'd, NUL-terminated string; *len (when not NULL)
 * without the NUL. NULL on failure. */
char *acme_bio_string(BIO *bio, size_t *len);

/* Parses a PEM private key (PKCS#8, SEC1 or PKCS#1). NULL on failure. */
EVP_PKEY *acme_key_from_pem(const char *pem, size_t len);

/* ---- JWK and JWS (jws.c); account keys are ECDSA P-256 -------------------------------- */

/* The canonical JWK of the public key: {"crv":"P-256","kty":"EC","x":"...","y":"..."}
 * with members in lexicographic order and no white space (RFC 7638). malloc'd. */
char *acme_jwk_json(EVP_PKEY *key);

/* base64url(SHA-256(canonical JWK)) into out (43 characters and a NUL). 0 or -1. */
int acme_jwk_thumbprint(EVP_PKEY *key, char out[44]);

/* base64url(SHA-256(json)) into out: the hashing step of acme_jwk_thumbprint on its own, for
 * JSON the caller already made canonical (tests check it against RFC 7638's RSA example).
 * 0 or -1. */
int acme_thumbprint_of_json(const char *json, char out[44]);

/* "token.thumbprint", malloc'd (RFC 8555 section 8.1). */
char *acme_key_authorization(const char *token, EVP_PKEY *account_key);

/* A flattened JWS JSON object {"protected":...,"payload":...,"signature":...} signed with
 * ES256 (the signature is r||s, 32 bytes each). The protected header carries alg, nonce,
 * url and either kid (when kid is not NULL) or jwk. payload NULL means POST-as-GET (empty
 * payload ""). Returns malloc'd text and its length in *len, or NULL. */
char *acme_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                    const char *payload, size_t *len);

/* The externalAccountBinding value for new-account (RFC 8555 section 7.3.4): a JWS with
 * alg HS256, kid eab_kid and url, whose payload is the account's JWK, MACed with hmac_key.
 * malloc'd JSON object text, or NULL. */
char *acme_eab_jws(EVP_PKEY *account_key, const char *eab_kid, const uint8_t *hmac_key,
                   size_t hmac_len, const char *url);

/* ---- certificates (csr.c) ----------------------------------------------------------- */

/* A DER CSR for names (the first is also the subject CN), with a subjectAltName of DNS
 * names, signed by key (SHA-256). malloc'd; *len set. NULL on failure. */
uint8_t *acme_csr_der(EVP_PKEY *key, const char *const *names, size_t n, size_t *len);

/* The TLS-ALPN-01 certificate (RFC 8737): self-signed, a fresh P-256 key, subjectAltName
 * with the single DNS name, and the critical acmeIdentifier extension (1.3.6.1.5.5.7.1.31)
 * holding an OCTET STRING of SHA-256(key_authorization). NULL with err filled on failure. */
struct tls_cert *acme_alpn_cert(const char *name, const char *key_authorization, char *err,
                                size_t errlen);

/* The PEM texts behind acme_alpn_cert: the self-signed certificate and its fresh key
 * (PKCS#8), each malloc'd and NUL-terminated, lengths without the NUL. Returns 0, or -1 with
 * err filled and both pointers NULL. */
int acme_alpn_cert_pem(const char *name, const char *key_authorization, char **cert_pem,
                       size_t *cert_len, char **key_pem, size_t *key_len, char *err,
                       size_t errlen);

/* The DER of the acmeIdentifier extension value for a key authorization: 04 20 followed by
 * the 32-byte digest. Returns 0 and fills out[34], or -1. */
int acme_alpn_ext_value(const char *key_authorization, uint8_t out[34]);

/* ---- storage (storage.c, storage_lock.c, storage_list.c): shared by instances ----- */

struct acme_storage;

/* Opens (creating, mode 0700) the storage root. NULL with err filled on failure. */
struct acme_storage *acme_storage_open(const char *root, char *err, size_t errlen);
void acme_storage_free(struct acme_storage *st);
const char *acme_storage_root(const struct acme_storage *st);

/* The directory name for a CA: its host and path made file-name safe, e.g.
 * "https://acme-v02.api.letsencrypt.org/directory" -> "acme-v02.api.letsencrypt.org-directory",
 * "https://127.0.0.1:14000/dir" -> "127.0.0.1_14000-dir". malloc'd. */
char *acme_storage_ca_key(const char *directory_url);

/* A name as a file-name component: lower-case, "*." becomes "wildcard_." . Writes into out;
 * returns 0 or -1 when it does not fit or the name has characters no host name has. */
int acme_storage_name_key(const char *name, char *out, size_t cap);

/* Atomic write of relpath (relative to the root): a temporary file in the same directory,
 * write, fsync, rename over the target, fsync of the directory. Parent directories are
 * created with mode 0700; the file gets mode (0600 for keys, 0644 otherwise). Returns 0 or
 * -errno. A crash at any point leaves either the old file or the new one, never a mix;
 * temporary files left behind are ignored by readers and removed by later writes. */
int acme_storage_write(struct acme_storage *st, const char *relpath, const void *data,
                       size_t len, int mode);

/* Reads relpath into a malloc'd, NUL-terminated buffer. Returns 0, -ENOENT or -errno. */
int acme_storage_read(struct acme_storage *st, const char *relpath, char **data, size_t *len);

int acme_storage_remove(struct acme_storage *st, const char *relpath);

/* Paths, all relative to the root, written into out (0 or -1 when too long):
 *   accounts/<ca>/<account>/account.json and account.key
 *   certificates/<ca>/<name>/<name>.crt, .key, .json
 *   challenges/<name>.json
 *   locks/<name>.lock
 * <ca> comes from acme_storage_ca_key; <name> from acme_storage_name_key. */
int acme_storage_account_path(const char *ca_key, const char *account, const char *file,
                              char *out, size_t cap);
int acme_storage_cert_path(const char *ca_key, const char *name, const char *ext, char *out,
                           size_t cap);
int acme_storage_challenge_path(const char *name, char *out, size_t cap);

/* The per-name issuance lock: a file created with O_EXCL holding {"owner":..,"updated":..}.
 * acme_storage_lock returns 0 when this owner now holds it (also when it already did),
 * -EBUSY when another owner refreshed it less than stale_s seconds ago, or -errno. A lock
 * older than stale_s is taken over (removed and created again atomically enough that two
 * contenders cannot both win: the take-over renames the stale file away first). */
int acme_storage_lock(struct acme_storage *st, const char *name, const char *owner,
                      unsigned stale_s);
int acme_storage_lock_refresh(struct acme_storage *st, const char *name, const char *owner);
int acme_storage_unlock(struct acme_storage *st, const char *name, const char *owner);

struct acme_stored_cert {
    char *ca;        /* the CA directory component */
    char *name;      /* the certificate's main name */
    char *path;      /* the .crt path, absolute */
    char **names;    /* the leaf's DNS names */
    size_t n_names;
    char *issuer;    /* the leaf issuer's CN or the whole DN */
    int64_t not_after;
    char *error;     /* not NULL when the files are unreadable, corrupt or mismatched */
};

/* Every certificate under certificates/, sorted by CA then name. */
int acme_storage_list(struct acme_storage *st, struct acme_stored_cert **out, size_t *n);
void acme_stored_certs_free(struct acme_stored_cert *certs, size_t n);

/* For tests and the temp-file cleaning: a write in a directory removes temp files older than
 * seconds (default 3600), and those of dead processes of this host at any age. */
void acme_storage_set_temp_max_age(struct acme_storage *st, unsigned seconds);

/* The temp name a write of base would use now: ".<base>.tmp.<pid>.<host tag><random>",
 * where the 16 hex digits of the tag identify this boot and pid namespace. 0 or -errno. */
int acme_storage_temp_name(const struct acme_storage *st, const char *base, char *out,
                           size_t cap);

/* ---- DNS (dns.c): declared in acme.h, which the proxy uses too ------------------------ */

/* ---- HTTPS client (https.c, https_url.c) ---------------------------------------------- */

struct acme_http;

struct acme_http_header {
    char *name;  /* lower-case */
    char *value;
};

struct acme_http_response {
    int error;              /* 0, or a negative error: no answer (see error_text) */
    const char *error_text; /* static or owned by the response */
    int status;
    struct acme_http_header *headers;
    size_t n_headers;
    char *body;             /* NUL-terminated */
    size_t body_len;
};

/* The first header value with that name (case-insensitive), or NULL. */
const char *acme_http_header(const struct acme_http_response *res, const char *name);

typedef void (*acme_http_cb)(void *arg, const struct acme_http_response *res);

/* A client on loop. ca_root_file: PEM roots to trust (NULL: the system's store,
 * /etc/ssl/certs/ca-certificates.crt). It verifies the chain and the host name. */
struct acme_http *acme_http_new(uv_loop_t *loop, const char *ca_root_file, char *err,
                                size_t errlen);

/* Cancels what is in flight (their callbacks run with error -ECANCELED before this
 * returns) and frees the client once its handles closed. */
void acme_http_free(struct acme_http *h);

/* One request, http:// or https:// (a fresh connection each time; bodies up to 8 MiB;
 * redirects are not followed). cb runs exactly once, on the loop, never before this
 * returns; the response is valid only during cb. Returns 0, or -1 when the URL is bad
 * (then cb does not run). */
int acme_http_request(struct acme_http *h, const char *method, const char *url,
                      const char *content_type, const char *body, size_t body_len,
                      uint64_t timeout_ms, acme_http_cb cb, void *arg);

#endif
