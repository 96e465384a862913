/* tickets.c - session ticket keys: one current key encrypts, the previous one still decrypts. */
#include <openssl/aes.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

#include "tls_int.h"

static void do_fresh_key(struct tls_ticket_key *k)
{
    RAND_bytes(k->name, sizeof(k->name));
    RAND_bytes(k->aes_key, sizeof(k->aes_key));
    RAND_bytes(k->hmac_key, sizeof(k->hmac_key));
}

static int do_init_ctx(const struct tls_ticket_key *k, const uint8_t *iv, EVP_CIPHER_CTX *cctx,
                       HMAC_CTX *hctx, int encrypt)
{
    if (!HMAC_Init_ex(hctx, k->hmac_key, sizeof(k->hmac_key), EVP_sha256(), NULL)) {
        return -1;
    }
    int ok = encrypt ? EVP_EncryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, k->aes_key, iv)
                     : EVP_DecryptInit_ex(cctx, EVP_aes_128_cbc(), NULL, k->aes_key, iv);
    return ok ? 0 : -1;
}

/* Called by the library on workers. Returns 1 (key found), 2 (found, but ask for a
 * ticket under the current key), 0 (unknown key: full handshake) or -1. */
static int on_ticket_key(SSL *ssl, uint8_t *key_name, uint8_t *iv, EVP_CIPHER_CTX *cctx,
                         HMAC_CTX *hctx, int encrypt)
{
    struct tls_server *srv = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    struct tls_ticket_key k;
    int rc = 0;
    pthread_mutex_lock(&srv->tickets_lock);
    if (encrypt) {
        k = srv->ticket_current;
        rc = 1;
    } else if (memcmp(key_name, srv->ticket_current.name, 16) == 0) {
        k = srv->ticket_current;
        rc = 1;
    } else if (srv->has_previous && memcmp(key_name, srv->ticket_previous.name, 16) == 0) {
        k = srv->ticket_previous;
        rc = 2;
    }
    pthread_mutex_unlock(&srv->tickets_lock);
    if (rc == 0) {
        return 0;
    }
    if (encrypt) {
        memcpy(key_name, k.name, 16);
        if (!RAND_bytes(iv, EVP_MAX_IV_LENGTH)) {
            return -1;
        }
    }
    int ok = do_init_ctx(&k, iv, cctx, hctx, encrypt);
    OPENSSL_cleanse(&k, sizeof(k));
    return ok == 0 ? rc : -1;
}

int tls_tickets_init(struct tls_server *srv)
{
    pthread_mutex_lock(&srv->tickets_lock);
    do_fresh_key(&srv->ticket_current);
    srv->has_previous = false;
    pthread_mutex_unlock(&srv->tickets_lock);
    return SSL_CTX_set_tlsext_ticket_key_cb(srv->ctx, on_ticket_key) ? 0 : -1;
}

void tls_server_rotate_tickets(struct tls_server *srv)
{
    struct tls_ticket_key fresh;
    do_fresh_key(&fresh);
    pthread_mutex_lock(&srv->tickets_lock);
    srv->ticket_previous = srv->ticket_current;
    srv->ticket_current = fresh;
    srv->has_previous = true;
    pthread_mutex_unlock(&srv->tickets_lock);
    OPENSSL_cleanse(&fresh, sizeof(fresh));
}
