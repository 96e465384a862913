/* tls_conn.c - one connection's TLS as a byte pump over a memory BIO: ciphertext in and
 * out, plaintext in and out, no sockets. */
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "tls_int.h"

static BIO_METHOD *pump_method;
static pthread_once_t pump_once = PTHREAD_ONCE_INIT;

/* Hands the library the fed ciphertext without copying it. */
static int on_bio_read(BIO *bio, char *buf, int len)
{
    struct tls_conn *tc = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    size_t avail = tc->in_len - tc->in_off;
    if (avail == 0) {
        BIO_set_retry_read(bio);
        return -1;
    }
    size_t n = avail < (size_t)len ? avail : (size_t)len;
    memcpy(buf, tc->in + tc->in_off, n);
    tc->in_off += n;
    return (int)n;
}

/* Collects records into one output buffer so a burst of writes leaves in one send. */
static int on_bio_write(BIO *bio, const char *data, int len)
{
    struct tls_conn *tc = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    size_t need = tc->out_len + (size_t)len;
    if (need > tc->out_cap) {
        size_t cap = tc->out_cap == 0 ? 4096 : tc->out_cap;
        while (cap < need) {
            cap *= 2;
        }
        char *bigger = realloc(tc->out, cap);
        if (bigger == NULL) {
            return -1;
        }
        tc->out = bigger;
        tc->out_cap = cap;
    }
    memcpy(tc->out + tc->out_len, data, (size_t)len);
    tc->out_len += (size_t)len;
    return len;
}

static long on_bio_ctrl(BIO *bio, int cmd, long larg, void *parg)
{
    (void)bio;
    (void)larg;
    (void)parg;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int on_bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static void do_make_method(void)
{
    pump_method = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "moat-pump");
    if (pump_method != NULL) {
        BIO_meth_set_read(pump_method, on_bio_read);
        BIO_meth_set_write(pump_method, on_bio_write);
        BIO_meth_set_ctrl(pump_method, on_bio_ctrl);
        BIO_meth_set_create(pump_method, on_bio_create);
    }
}

struct tls_conn *tls_conn_new(struct tls_server *srv)
{
    pthread_once(&pump_once, do_make_method);
    if (pump_method == NULL) {
        return NULL;
    }
    struct tls_conn *tc = calloc(1, sizeof(*tc));
    if (tc == NULL) {
        return NULL;
    }
    tc->ssl = SSL_new(srv->ctx);
    BIO *bio = BIO_new(pump_method);
    if (tc->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        tls_conn_free(tc);
        return NULL;
    }
    BIO_set_data(bio, tc);
    SSL_set_bio(tc->ssl, bio, bio);
    SSL_set_app_data(tc->ssl, tc);
    SSL_set_accept_state(tc->ssl);
    tc->error = "";
    return tc;
}

void tls_conn_free(struct tls_conn *tc)
{
    if (tc == NULL) {
        return;
    }
    SSL_free(tc->ssl);
    free(tc->out);
    free(tc);
}

void tls_conn_feed(struct tls_conn *tc, const char *data, size_t len)
{
    tc->in = data;
    tc->in_len = len;
    tc->in_off = 0;
}

size_t tls_conn_unconsumed(const struct tls_conn *tc, const char **rest)
{
    *rest = tc->in + tc->in_off;
    return tc->in_len - tc->in_off;
}

/* Maps a failed SSL call to our status, keeping the first reason for the logs. */
static int do_status(struct tls_conn *tc, int ret)
{
    int e = SSL_get_error(tc->ssl, ret);
    if (e == SSL_ERROR_WANT_READ) {
        return TLS_WANT_READ;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        return TLS_CLOSED;
    }
    if (e == SSL_ERROR_PENDING_CERTIFICATE) {
        return TLS_PENDING;
    }
    if (tc->error[0] == '\0') {
        unsigned long code = ERR_peek_error();
        const char *reason = code != 0 ? ERR_reason_error_string(code) : NULL;
        tc->error = reason != NULL ? reason : (e == SSL_ERROR_SYSCALL ? "unexpected EOF"
                                                                      : "TLS error");
    }
    ERR_clear_error();
    return TLS_ERROR;
}

int tls_conn_handshake(struct tls_conn *tc)
{
    ERR_clear_error();
    int ret = SSL_do_handshake(tc->ssl);
    if (ret == 1) {
        return TLS_OK;
    }
    return do_status(tc, ret);
}

int tls_conn_read(struct tls_conn *tc, char *buf, size_t cap)
{
    ERR_clear_error();
    int n = SSL_read(tc->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (n > 0) {
        return n;
    }
    return do_status(tc, n);
}

bool tls_conn_has_plaintext(const struct tls_conn *tc)
{
    return SSL_pending(tc->ssl) > 0;
}

int tls_conn_write(struct tls_conn *tc, const char *data, size_t len)
{
    ERR_clear_error();
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int n = SSL_write(tc->ssl, data, chunk);
        if (n <= 0) {
            do_status(tc, n);
            return TLS_ERROR;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

void tls_conn_shutdown(struct tls_conn *tc)
{
    ERR_clear_error();
    SSL_shutdown(tc->ssl);
    ERR_clear_error();
}

const char *tls_conn_output(const struct tls_conn *tc, size_t *len)
{
    *len = tc->out_len - tc->out_off;
    return *len > 0 ? tc->out + tc->out_off : NULL;
}

void tls_conn_output_consume(struct tls_conn *tc, size_t n)
{
    tc->out_off += n;
    if (tc->out_off >= tc->out_len) {
        free(tc->out);
        tc->out = NULL;
        tc->out_len = 0;
        tc->out_off = 0;
        tc->out_cap = 0;
    }
}

const char *tls_conn_sni(const struct tls_conn *tc)
{
    return SSL_get_servername(tc->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *tls_conn_version(const struct tls_conn *tc)
{
    return SSL_get_version(tc->ssl);
}

const char *tls_conn_cipher(const struct tls_conn *tc)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(tc->ssl);
    return c != NULL ? SSL_CIPHER_get_name(c) : "";
}

void tls_conn_set_user(struct tls_conn *tc, void *user)
{
    tc->user = user;
}

void *tls_conn_user(const struct tls_conn *tc)
{
    return tc->user;
}

bool tls_conn_is_challenge(const struct tls_conn *tc)
{
    return tc->challenge;
}

bool tls_conn_resumed(const struct tls_conn *tc)
{
    return SSL_session_reused(tc->ssl) != 0;
}

const char *tls_conn_error(const struct tls_conn *tc)
{
    return tc->error[0] != '\0' ? tc->error : "TLS error";
}
