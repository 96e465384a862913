/* storage_list.c - the listing of the certificates in the shared storage: each one's
 * names, issuer and expiry read from its chain, and whether its key matches.
 *
 * Certificates live in certificates/<ca>/<namekey>/<namekey>.crt next to their .key; a
 * directory without its .crt is an issuance in progress and is left out.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "storage_int.h"

/* The list acme_storage_list builds; the array becomes the caller's. */
struct cert_vec {
    struct acme_stored_cert *items;
    size_t n;
    size_t cap;
};

static int do_err(void) { return errno > 0 ? -errno : -EIO; }

static int do_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void do_free_strs(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i]);
    }
    free(v);
}

static int do_push_str(char ***v, size_t *n, const char *s)
{
    char **grown = realloc(*v, (*n + 1) * sizeof(**v));
    if (grown == NULL) {
        return -ENOMEM;
    }
    *v = grown;
    grown[*n] = strdup(s);
    if (grown[*n] == NULL) {
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

/* The sub-directories of dirfd/sub, sorted; dot names (temp files, ".", "..") are skipped.
 * A missing sub is an empty list. */
static int do_subdirs(int dirfd, const char *sub, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int fd = openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? 0 : do_err();
    }
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int rc = do_err();
        (void)close(fd);
        return rc;
    }
    int rc = 0;
    errno = 0;
    for (struct dirent *e = readdir(d); e != NULL && rc == 0; e = readdir(d)) {
        struct stat sb;
        if (e->d_name[0] != '.' && fstatat(fd, e->d_name, &sb, 0) == 0 && S_ISDIR(sb.st_mode)) {
            rc = do_push_str(out, n, e->d_name);
        }
        errno = 0;
    }
    if (rc == 0 && errno != 0) {
        rc = do_err();
    }
    (void)closedir(d); /* read-only: nothing to lose */
    if (rc < 0) {
        do_free_strs(*out, *n);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1) {
        qsort(*out, *n, sizeof(**out), do_cmp_str);
    }
    return 0;
}

static int do_set_error(struct acme_stored_cert *c, const char *text)
{
    c->error = strdup(text);
    return c->error != NULL ? 0 : -ENOMEM;
}

/* The leaf is the first PEM block; the chain after it must parse too. NULL when corrupt. */
static X509 *do_parse_chain(const char *pem, size_t len)
{
    ERR_clear_error();
    BIO *bio = BIO_new_mem_buf(pem, len > INT_MAX ? INT_MAX : (int)len);
    X509 *leaf = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    X509 *next = leaf != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    while (next != NULL) {
        X509_free(next);
        next = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    }
    uint32_t e = ERR_peek_last_error();
    bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    if (leaf != NULL && !clean_end) {
        X509_free(leaf);
        leaf = NULL;
    }
    ERR_clear_error();
    BIO_free(bio);
    return leaf;
}

static int do_cert_names(struct acme_stored_cert *c, X509 *leaf)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (size_t i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans) && rc == 0; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type != GEN_DNS) {
            continue;
        }
        const ASN1_IA5STRING *s = gn->d.dNSName;
        char *name = strndup((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        rc = name != NULL ? do_push_str(&c->names, &c->n_names, name) : -ENOMEM;
        free(name);
    }
    GENERAL_NAMES_free(sans);
    return rc;
}

/* The issuer's CN, or its whole one-line DN when it has none. */
static int do_cert_issuer(struct acme_stored_cert *c, X509 *leaf)
{
    const X509_NAME *issuer = X509_get_issuer_name(leaf);
    int idx = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
    unsigned char *utf8 = NULL;
    if (idx >= 0) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(issuer, idx);
        if (ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e)) < 0) {
            utf8 = NULL;
        }
    }
    char *text = utf8 != NULL ? (char *)utf8 : X509_NAME_oneline(issuer, NULL, 0);
    c->issuer = text != NULL ? strdup(text) : NULL;
    OPENSSL_free(text);
    return c->issuer != NULL ? 0 : -ENOMEM;
}

static int do_cert_not_after(struct acme_stored_cert *c, X509 *leaf)
{
    int64_t now = time(NULL);
    ASN1_TIME *from = ASN1_TIME_set(NULL, (time_t)now);
    int days = 0;
    int secs = 0;
    int ok = from != NULL && ASN1_TIME_diff(&days, &secs, from, X509_get0_notAfter(leaf));
    ASN1_TIME_free(from);
    if (!ok) {
        return do_set_error(c, "bad notAfter time");
    }
    c->not_after = now + (int64_t)days * 86400 + secs;
    return 0;
}

/* Checks <dir>.key next to the certificate against the leaf's public key. */
static int do_cert_key(struct acme_storage *st, struct acme_stored_cert *c, const char *ca,
                       const char *dir, X509 *leaf)
{
    char rel[PATH_MAX];
    int n = snprintf(rel, sizeof(rel), "certificates/%s/%s/%s.key", ca, dir, dir);
    if (n < 0 || (size_t)n >= sizeof(rel)) {
        return do_set_error(c, "key path too long");
    }
    char *pem = NULL;
    size_t len = 0;
    int rc = acme_storage_read(st, rel, &pem, &len);
    if (rc < 0) {
        return do_set_error(c, rc == -ENOENT ? "missing key" : "unreadable key file");
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    EVP_PKEY *pub = X509_get_pubkey(leaf);
    if (key == NULL) {
        rc = do_set_error(c, "corrupt key file");
    } else if (pub == NULL || EVP_PKEY_cmp(pub, key) != 1) {
        rc = do_set_error(c, "key does not match");
    }
    ERR_clear_error();
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    free(pem);
    return rc;
}

/* The name a directory stands for: the inverse of acme_storage_name_key. */
static char *do_dir_name(const char *dir)
{
    if (strncmp(dir, "wildcard_.", 10) != 0) {
        return strdup(dir);
    }
    size_t cap = strlen(dir + 10) + 3;
    char *name = malloc(cap);
    if (name != NULL && snprintf(name, cap, "*.%s", dir + 10) < 0) {
        free(name);
        name = NULL;
    }
    return name;
}

/* Fills c from certificates/<ca>/<dir>/<dir>.crt (already read into pem). */
static int do_cert_fill(struct acme_storage *st, struct acme_stored_cert *c, const char *ca,
                        const char *dir, const char *pem, size_t len)
{
    X509 *leaf = do_parse_chain(pem, len);
    if (leaf == NULL) {
        return do_set_error(c, "corrupt certificate file");
    }
    int rc = do_cert_names(c, leaf);
    if (rc == 0) {
        rc = do_cert_issuer(c, leaf);
    }
    if (rc == 0) {
        rc = do_cert_not_after(c, leaf);
    }
    if (rc == 0 && c->error == NULL) {
        rc = do_cert_key(st, c, ca, dir, leaf);
    }
    X509_free(leaf);
    return rc;
}

static struct acme_stored_cert *do_vec_push(struct cert_vec *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap == 0 ? 8 : v->cap * 2;
        struct acme_stored_cert *grown = realloc(v->items, cap * sizeof(*grown));
        if (grown == NULL) {
            return NULL;
        }
        v->items = grown;
        v->cap = cap;
    }
    struct acme_stored_cert *c = &v->items[v->n++];
    memset(c, 0, sizeof(*c));
    return c;
}

/* Adds certificates/<ca>/<dir> to v when it holds <dir>.crt; a directory without one is
 * an issuance in progress and is skipped. */
static int do_list_one(struct acme_storage *st, struct cert_vec *v, const char *ca, const char *dir)
{
    char rel[PATH_MAX];
    int n = snprintf(rel, sizeof(rel), "certificates/%s/%s/%s.crt", ca, dir, dir);
    if (n < 0 || (size_t)n >= sizeof(rel)) {
        return 0;
    }
    char *pem = NULL;
    size_t len = 0;
    int rc = acme_storage_read(st, rel, &pem, &len);
    if (rc == -ENOENT) {
        return 0;
    }
    struct acme_stored_cert *c = do_vec_push(v);
    if (c == NULL) {
        free(pem);
        return -ENOMEM;
    }
    size_t plen = strlen(st->root) + 1 + strlen(rel) + 1;
    c->ca = strdup(ca);
    c->name = do_dir_name(dir);
    c->path = malloc(plen);
    if (c->ca == NULL || c->name == NULL || c->path == NULL) {
        free(pem);
        return -ENOMEM;
    }
    n = snprintf(c->path, plen, "%s/%s", st->root, rel);
    if (rc < 0) {
        rc = do_set_error(c, "unreadable certificate file");
    } else {
        rc = do_cert_fill(st, c, ca, dir, pem, len);
    }
    free(pem);
    return n < 0 ? -EIO : rc;
}

static int do_list_ca(struct acme_storage *st, int certs_fd, const char *ca, struct cert_vec *v)
{
    char **dirs = NULL;
    size_t n = 0;
    int rc = do_subdirs(certs_fd, ca, &dirs, &n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = do_list_one(st, v, ca, dirs[i]);
    }
    do_free_strs(dirs, n);
    return rc;
}

int acme_storage_list(struct acme_storage *st, struct acme_stored_cert **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int certs_fd = openat(st->root_fd, "certificates", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (certs_fd < 0) {
        return errno == ENOENT ? 0 : do_err();
    }
    char **cas = NULL;
    size_t n_cas = 0;
    struct cert_vec v = {0};
    int rc = do_subdirs(certs_fd, ".", &cas, &n_cas);
    for (size_t i = 0; i < n_cas && rc == 0; i++) {
        rc = do_list_ca(st, certs_fd, cas[i], &v); /* sorted CAs, sorted names: sorted */
    }
    do_free_strs(cas, n_cas);
    (void)close(certs_fd); /* read-only: nothing to lose */
    if (rc < 0) {
        acme_stored_certs_free(v.items, v.n);
        return rc;
    }
    *out = v.items;
    *n = v.n;
    return 0;
}

void acme_stored_certs_free(struct acme_stored_cert *certs, size_t n)
{
    for (size_t i = 0; certs != NULL && i < n; i++) {
        struct acme_stored_cert *c = &certs[i];
        free(c->ca);
        free(c->name);
        free(c->path);
        do_free_strs(c->names, c->n_names);
        free(c->issuer);
        free(c->error);
    }
    free(certs);
}
