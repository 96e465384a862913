/* server.c - the server SSL_CTX: protocol limits, SNI certificate selection, ALPN. */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tls_int.h"

/* Forward-secret AEAD suites only for TLS 1.2; TLS 1.3 suites are fixed by the library. */
static const char TLS12_CIPHERS[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static bool do_is_ip_literal(const char *name)
{
    uint8_t buf[16];
    return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

/* Whether the ClientHello's ALPN list offers acme-tls/1, the mark of a CA validating. */
static bool do_offers_acme_tls(const SSL_CLIENT_HELLO *hello)
{
    const uint8_t *data = NULL;
    size_t len = 0;
    if (!SSL_early_callback_ctx_extension_get(
            hello, TLSEXT_TYPE_application_layer_protocol_negotiation, &data, &len) ||
        len < 2) {
        return false;
    }
    size_t list = ((size_t)data[0] << 8) | data[1];
    data += 2;
    len -= 2;
    if (list != len) {
        return false;
    }
    while (len > 0) {
        size_t n = data[0];
        if (n + 1 > len) {
            return false;
        }
        if (n == 10 && memcmp(data + 1, "acme-tls/1", 10) == 0) {
            return true;
        }
        data += n + 1;
        len -= n + 1;
    }
    return false;
}

/* A validation handshake for a name with a pending challenge gets the challenge
 * certificate; returns whether it did. Another instance's challenge is taken only once
 * this handshake asked for it: the storage was read again for it then, so an answer left
 * from an earlier order of that instance is never served. */
static bool do_select_challenge(const SSL_CLIENT_HELLO *hello, struct tls_server *srv,
                                struct tls_conn *tc, const char *name)
{
    if (name == NULL || !do_offers_acme_tls(hello)) {
        return false;
    }
    struct tls_cert *cert = tls_store_count(srv->challenges) > 0
                                ? tls_store_lookup(srv->challenges, name)
                                : NULL;
    if (cert == NULL && tc->waited && tls_store_count(srv->shared) > 0) {
        cert = tls_store_lookup(srv->shared, name);
    }
    if (cert == NULL) {
        return false;
    }
    int ok = SSL_set_chain_and_key(hello->ssl, cert->chain, cert->chain_len, cert->key, NULL);
    tls_cert_unref(cert);
    tc->challenge = ok != 0;
    return tc->challenge;
}

/* A name with no certificate: the miss callback may pause the handshake once, for an
 * on-demand certificate or a challenge another instance stored. */
static bool do_ask_miss(const SSL_CLIENT_HELLO *hello, struct tls_server *srv,
                        struct tls_conn *tc, const char *sni)
{
    if (srv->miss_cb == NULL || sni == NULL || tc->waited) {
        return false;
    }
    tc->waited = true;
    return srv->miss_cb(srv->miss_arg, tc, sni, do_offers_acme_tls(hello)) == TLS_MISS_WAIT;
}

/* Runs on the worker for every ClientHello. The certificate comes from the store, parsed
 * once; the handshake only takes references to its buffers. A miss is remembered and
 * turned into an unrecognized_name alert by on_servername, which may send that alert. */
static enum ssl_select_cert_result_t on_select_certificate(const SSL_CLIENT_HELLO *hello)
{
    SSL *ssl = hello->ssl;
    struct tls_conn *tc = SSL_get_app_data(ssl);
    struct tls_server *srv = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (name != NULL && do_is_ip_literal(name)) {
        name = NULL; /* RFC 6066 forbids addresses in SNI; some clients send them anyway */
    }
    if (do_select_challenge(hello, srv, tc, name)) {
        return ssl_select_cert_success;
    }
    /* A validation handshake (RFC 8737) must get the challenge certificate, never the
     * name's own: another instance sharing storage may be renewing it, so ask for the
     * challenge it stored even when this instance serves a certificate for the name. */
    if (name != NULL && do_offers_acme_tls(hello) && do_ask_miss(hello, srv, tc, name)) {
        return ssl_select_cert_retry;
    }
    if (name == NULL) {
        name = srv->default_sni;
    }
    struct tls_cert *cert = name != NULL ? tls_store_lookup(srv->store, name) : NULL;
    if (cert == NULL && do_ask_miss(hello, srv, tc, name)) {
        return ssl_select_cert_retry;
    }
    if (cert == NULL) {
        tc->no_cert = true;
        tc->error = name == NULL ? "client sent no SNI and no default_sni is configured"
                                 : "no certificate for the SNI name";
        return ssl_select_cert_success;
    }
    atomic_store_explicit(&cert->last_used, (long long)time(NULL), memory_order_relaxed);
    int ok = SSL_set_chain_and_key(ssl, cert->chain, cert->chain_len, cert->key, NULL);
    tls_cert_unref(cert); /* the SSL took its own references */
    if (!ok) {
        tc->error = "SSL_set_chain_and_key() failed";
        return ssl_select_cert_error;
    }
    return ssl_select_cert_success;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    struct tls_conn *tc = SSL_get_app_data(ssl);
    if (tc->no_cert) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

static int on_alpn_select(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                          unsigned in_len, void *arg)
{
    (void)arg;
    struct tls_conn *tc = SSL_get_app_data(ssl);
    static const uint8_t acme[] = "\x0a" "acme-tls/1";
    static const uint8_t http[] = "\x08http/1.1";
    const uint8_t *ours = tc->challenge ? acme : http;
    size_t ours_len = tc->challenge ? sizeof(acme) - 1 : sizeof(http) - 1;
    uint8_t *sel = NULL;
    uint8_t sel_len = 0;
    if (SSL_select_next_proto(&sel, &sel_len, ours, (unsigned)ours_len, in, in_len) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK; /* no common protocol: carry on without ALPN */
    }
    *out = sel;
    *out_len = sel_len;
    return SSL_TLSEXT_ERR_OK;
}

static int do_configure(struct tls_server *srv, const struct tls_server_opts *opts, char *err,
                        size_t errlen)
{
    SSL_CTX *ctx = srv->ctx;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
        tls_err_set(err, errlen, "SSL_CTX_set_min_proto_version()");
        return -1;
    }
    if (!SSL_CTX_set_strict_cipher_list(ctx, TLS12_CIPHERS)) {
        tls_err_set(err, errlen, "SSL_CTX_set_strict_cipher_list()");
        return -1;
    }
    SSL_CTX_set_app_data(ctx, srv);
    SSL_CTX_set_select_certificate_cb(ctx, on_select_certificate);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    /* Resumption is by tickets only: a server-side cache would be per process. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!opts->session_tickets) {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
        return 0;
    }
    SSL_CTX_set_num_tickets(ctx, 1);
    if (tls_tickets_init(srv) != 0) {
        tls_err_set(err, errlen, "ticket key setup");
        return -1;
    }
    return 0;
}

struct tls_server *tls_server_new(struct tls_store *store, const struct tls_server_opts *opts,
                                  char *err, size_t errlen)
{
    struct tls_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->store = store;
    srv->challenges = tls_store_new();
    srv->shared = tls_store_new();
    pthread_mutex_init(&srv->tickets_lock, NULL);
    if (srv->challenges == NULL || srv->shared == NULL) {
        snprintf(err, errlen, "out of memory");
        tls_server_free(srv);
        return NULL;
    }
    if (opts->default_sni != NULL) {
        srv->default_sni = strdup(opts->default_sni);
    }
    ERR_clear_error();
    srv->ctx = SSL_CTX_new(TLS_with_buffers_method());
    if (srv->ctx == NULL) {
        tls_err_set(err, errlen, "SSL_CTX_new()");
        tls_server_free(srv);
        return NULL;
    }
    if (do_configure(srv, opts, err, errlen) != 0) {
        tls_server_free(srv);
        return NULL;
    }
    return srv;
}

void tls_server_free(struct tls_server *srv)
{
    if (srv == NULL) {
        return;
    }
    SSL_CTX_free(srv->ctx);
    tls_store_free(srv->challenges);
    tls_store_free(srv->shared);
    OPENSSL_cleanse(&srv->ticket_current, sizeof(srv->ticket_current));
    OPENSSL_cleanse(&srv->ticket_previous, sizeof(srv->ticket_previous));
    pthread_mutex_destroy(&srv->tickets_lock);
    free(srv->default_sni);
    free(srv);
}

int tls_server_set_challenge(struct tls_server *srv, const char *name, struct tls_cert *cert)
{
    return tls_store_put(srv->challenges, name, cert);
}

void tls_server_clear_challenge(struct tls_server *srv, const char *name)
{
    tls_store_remove(srv->challenges, name);
}

int tls_server_set_shared_challenge(struct tls_server *srv, const char *name,
                                    struct tls_cert *cert)
{
    if (cert == NULL) {
        tls_store_remove(srv->shared, name);
        return 0;
    }
    return tls_store_put(srv->shared, name, cert);
}

void tls_server_set_miss_cb(struct tls_server *srv, tls_miss_cb cb, void *arg)
{
    srv->miss_cb = cb;
    srv->miss_arg = arg;
}
