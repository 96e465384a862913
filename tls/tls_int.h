/* tls_int.h - structures shared by the files of the tls module, never outside it. */
#ifndef MOAT_TLS_INT_H
#define MOAT_TLS_INT_H

#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "tls.h"

/* Immutable after load; freed when the last reference goes. */
struct tls_cert {
    atomic_int refs;
    atomic_llong last_used; /* seconds; handshakes touch it, eviction reads it */
    CRYPTO_BUFFER **chain;
    size_t chain_len;
    EVP_PKEY *key;
    int64_t not_after;
    char **names;
    size_t n_names;
};

struct tls_ticket_key {
    uint8_t name[16];
    uint8_t aes_key[16];
    uint8_t hmac_key[32];
};

/* Owned by the control thread; workers only read through SSL callbacks. */
struct tls_server {
    SSL_CTX *ctx;
    struct tls_store *store;
    struct tls_store *challenges; /* TLS-ALPN-01 certificates by name, for our orders */
    struct tls_store *shared;     /* the same for other instances' orders, read from storage */
    tls_miss_cb miss_cb;
    void *miss_arg;
    char *default_sni;
    pthread_mutex_t tickets_lock;
    struct tls_ticket_key ticket_current;
    struct tls_ticket_key ticket_previous;
    bool has_previous;
};

/* One connection: the SSL object, its memory BIO and the ciphertext waiting to go out. */
struct tls_conn {
    SSL *ssl;
    const char *in;   /* fed ciphertext, not owned */
    size_t in_len;
    size_t in_off;
    char *out;        /* ciphertext to send; freed when emptied */
    size_t out_len;
    size_t out_off;
    size_t out_cap;
    const char *error; /* static text */
    bool no_cert;
    bool challenge; /* serving a TLS-ALPN-01 certificate */
    bool waited;    /* the miss callback paused this handshake once already */
    void *user;
};

/* Installs the ticket callback and a first key. Returns 0 or -1. */
int tls_tickets_init(struct tls_server *srv);

/* Writes the library's last error (or fallback) into err, naming the failing call. */
void tls_err_set(char *err, size_t errlen, const char *call);

#endif
