/* https.c - the HTTP/1.1 client the ACME code uses to talk to its CA (and to an "ask"
 * endpoint): a fresh connection per request, TLS over memory BIOs, llhttp for the
 * response, and one deadline covering DNS, connect, handshake and the whole response.
 * Taking the URL apart and building the request bytes is https_url.c's job. */
#include <errno.h>
#include <limits.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "https_int.h"
#include "log.h"

#define HTTP_MAX_BODY (8u << 20)
#define HTTP_MAX_HEAD (64u << 10) /* all header names and values together */
#define HTTP_MAX_HEADERS 128
#define HTTP_READ_BUF (16u << 10)
#define HTTP_SYSTEM_ROOTS "/etc/ssl/certs/ca-certificates.crt"

enum http_state {
    HTTP_RESOLVING = 0,
    HTTP_CONNECTING,
    HTTP_HANDSHAKE, /* TLS only */
    HTTP_EXCHANGE,  /* request written, response being read */
    HTTP_DONE,      /* the callback ran; waiting for handles and DNS to let go */
};

static const char *const state_names[] = {"dns", "connect", "tls handshake", "response", "done"};

struct http_buf {
    char *data; /* NUL-terminated when not NULL */
    size_t len;
    size_t cap;
};

/* One request. On the client's list while in flight; after its callback it lives on until
 * its handles closed and its DNS query (if one runs) answered, then do_release frees it. */
struct http_req {
    struct acme_http *h;
    struct http_req *prev;
    struct http_req *next;
    enum http_state state;
    acme_http_cb cb;
    void *arg;
    bool tls;
    bool ip_host;     /* host is an IP literal: verify an IP SAN, send no SNI */
    bool head;        /* a HEAD request: the response has no body */
    bool dns_pending; /* acme_dns still holds a pointer to this request */
    bool tcp_open;    /* tcp initialised and not yet handed to uv_close */
    unsigned handles; /* initialised handles whose close callback has not run */
    uint16_t port;
    uint64_t timeout_ms;
    char host[256]; /* without brackets */
    char *out;      /* the request bytes */
    size_t out_len;
    struct sockaddr_storage *addrs;
    size_t n_addrs;
    size_t next_addr;
    int last_error; /* of the last failed connect */
    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_connect_t connect;
    SSL *ssl;
    BIO *rbio; /* ciphertext in; both BIOs are owned by ssl */
    BIO *wbio; /* ciphertext out */
    llhttp_t parser;
    bool complete;   /* on_message_complete saw the final response */
    bool field_done; /* a header name is complete, its value not yet stored */
    int error;       /* set by a parser callback that refuses the response */
    int status;
    struct http_buf field;
    struct http_buf value;
    struct http_buf body;
    size_t head_bytes;
    struct acme_http_header *headers;
    size_t n_headers;
    char error_text[512];
    char rbuf[HTTP_READ_BUF]; /* each read is consumed before the next one */
};

/* Owned by the caller of acme_http_new; freed by acme_http_free, or by the last request's
 * release after that. */
struct acme_http {
    uv_loop_t *loop;
    SSL_CTX *ctx;
    struct acme_dns *dns;
    struct http_req *reqs; /* in flight: the callback has not run */
    size_t live;           /* requests not yet freed */
    bool closing;
};

struct http_write {
    uv_write_t req;
    struct http_req *r;
    char data[];
};

static void do_fail(struct http_req *r, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *acme_http_header(const struct acme_http_response *res, const char *name)
{
    for (size_t i = 0; i < res->n_headers; i++) {
        if (strcasecmp(res->headers[i].name, name) == 0) {
            return res->headers[i].value;
        }
    }
    return NULL;
}

/* ---- growing buffers ----------------------------------------------------------------- */

static int do_buf_append(struct http_buf *b, const char *data, size_t len)
{
    if (b->cap - b->len <= len) {
        size_t cap = b->cap != 0 ? b->cap : 256;
        while (cap - b->len <= len) {
            cap *= 2;
        }
        char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            return -1;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static void do_buf_free(struct http_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

static void do_free_headers(struct http_req *r)
{
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    r->headers = NULL;
    r->n_headers = 0;
}

/* ---- a request's life ----------------------------------------------------------------- */

static void do_set_state(struct http_req *r, enum http_state state)
{
    struct log_line l;
    log_begin(&l, CFG_LOG_DEBUG, "acme_http_state");
    log_str(&l, "host", r->host);
    log_str(&l, "from", state_names[r->state]);
    log_str(&l, "to", state_names[state]);
    log_end(&l);
    r->state = state;
}

/* Frees the request once nothing can call back into it: all handles closed and no DNS
 * answer outstanding. The last one after acme_http_free also frees the client. */
static void do_release(struct http_req *r)
{
    if (r->handles > 0 || r->dns_pending || r->state != HTTP_DONE) {
        return;
    }
    struct acme_http *h = r->h;
    SSL_free(r->ssl);
    free(r->addrs);
    free(r->out);
    free(r);
    h->live--;
    if (h->closing && h->live == 0) {
        free(h);
    }
}

static void on_timer_closed(uv_handle_t *handle)
{
    struct http_req *r = handle->data;
    r->handles--;
    do_release(r);
}

static void do_connect_next(struct http_req *r);

/* While connecting, a closed socket means that address failed: try the next one. */
static void on_tcp_closed(uv_handle_t *handle)
{
    struct http_req *r = handle->data;
    r->handles--;
    if (r->state == HTTP_CONNECTING) {
        do_connect_next(r);
        return;
    }
    do_release(r);
}

static void do_close_tcp(struct http_req *r)
{
    if (r->tcp_open) {
        r->tcp_open = false;
        uv_close((uv_handle_t *)&r->tcp, on_tcp_closed);
    }
}

/* Runs the callback once; everything after it only lets go of resources. */
static void do_finish(struct http_req *r, int error)
{
    if (r->state == HTTP_DONE) {
        return;
    }
    do_set_state(r, HTTP_DONE);
    struct acme_http *h = r->h;
    if (r->prev != NULL) {
        r->prev->next = r->next;
    } else {
        h->reqs = r->next;
    }
    if (r->next != NULL) {
        r->next->prev = r->prev;
    }
    if (!uv_is_closing((uv_handle_t *)&r->timer)) {
        uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    }
    do_close_tcp(r);
    char empty[1] = "";
    struct acme_http_response res = {
        .error = error,
        .error_text = error != 0 ? r->error_text : NULL,
        .status = error == 0 ? r->status : 0,
        .headers = error == 0 ? r->headers : NULL,
        .n_headers = error == 0 ? r->n_headers : 0,
        .body = error == 0 && r->body.data != NULL ? r->body.data : empty,
        .body_len = error == 0 ? r->body.len : 0,
    };
    r->cb(r->arg, &res);
    do_free_headers(r);
    do_buf_free(&r->body);
    do_buf_free(&r->field);
    do_buf_free(&r->value);
    do_release(r);
}

static void do_fail(struct http_req *r, int error, const char *fmt, ...)
{
    if (r->state == HTTP_DONE) {
        return; /* the callback ran: its error text stays as it was */
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error_text, sizeof(r->error_text), fmt, ap);
    va_end(ap);
    do_finish(r, error);
}

static void on_timeout(uv_timer_t *t)
{
    struct http_req *r = t->data;
    do_fail(r, UV_ETIMEDOUT, "timeout after %llu ms (during %s)",
            (unsigned long long)r->timeout_ms, state_names[r->state]);
}

/* ---- the response, through llhttp ------------------------------------------------------ */

static int do_refuse(struct http_req *r, int error, const char *text)
{
    r->error = error;
    snprintf(r->error_text, sizeof(r->error_text), "%s", text);
    return -1;
}

static int do_head_append(struct http_req *r, struct http_buf *b, const char *at, size_t len)
{
    r->head_bytes += len;
    if (r->head_bytes > HTTP_MAX_HEAD) {
        return do_refuse(r, -EFBIG, "response too large: headers over 64 KiB");
    }
    if (do_buf_append(b, at, len) != 0) {
        return do_refuse(r, -ENOMEM, "out of memory");
    }
    return 0;
}

/* Stores the header just parsed: a lower-case name, the value without trailing blanks. */
static int do_store_header(struct http_req *r)
{
    r->field_done = false;
    if (r->n_headers == HTTP_MAX_HEADERS) {
        return do_refuse(r, -EFBIG, "response too large: over 128 headers");
    }
    struct acme_http_header *grown =
        realloc(r->headers, (r->n_headers + 1) * sizeof(*r->headers));
    if (grown == NULL) {
        return do_refuse(r, -ENOMEM, "out of memory");
    }
    r->headers = grown;
    size_t vlen = r->value.len;
    while (vlen > 0 && (r->value.data[vlen - 1] == ' ' || r->value.data[vlen - 1] == '\t')) {
        vlen--;
    }
    char *name = strndup(r->field.data != NULL ? r->field.data : "", r->field.len);
    char *value = strndup(r->value.data != NULL ? r->value.data : "", vlen);
    if (name == NULL || value == NULL) {
        free(name);
        free(value);
        return do_refuse(r, -ENOMEM, "out of memory");
    }
    for (char *c = name; *c != '\0'; c++) {
        if (*c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    r->headers[r->n_headers].name = name;
    r->headers[r->n_headers].value = value;
    r->n_headers++;
    r->field.len = 0;
    r->value.len = 0;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_req *r = p->data;
    /* A header with an empty value may end without a value callback. */
    if (r->field_done && do_store_header(r) != 0) {
        return -1;
    }
    return do_head_append(r, &r->field, at, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    struct http_req *r = p->data;
    r->field_done = true;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_req *r = p->data;
    return do_head_append(r, &r->value, at, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    struct http_req *r = p->data;
    return r->field_done ? do_store_header(r) : 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_req *r = p->data;
    if (r->field_done && do_store_header(r) != 0) {
        return -1;
    }
    r->status = p->status_code;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > HTTP_MAX_BODY) {
        return do_refuse(r, -EFBIG, "response too large: body over 8 MiB");
    }
    return r->head ? 1 : 0; /* 1: a response to HEAD has no body whatever it says */
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_req *r = p->data;
    if (len > HTTP_MAX_BODY - r->body.len) {
        return do_refuse(r, -EFBIG, "response too large: body over 8 MiB");
    }
    if (do_buf_append(&r->body, at, len) != 0) {
        return do_refuse(r, -ENOMEM, "out of memory");
    }
    return 0;
}

/* An interim 1xx response is dropped: the final one follows on the same connection. */
static int on_message_complete(llhttp_t *p)
{
    struct http_req *r = p->data;
    if (r->status >= 100 && r->status < 200 && r->status != 101) {
        do_free_headers(r);
        r->head_bytes = 0;
        return 0;
    }
    r->complete = true;
    return HPE_PAUSED; /* nothing after the response matters */
}

static const llhttp_settings_t parser_settings = {
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Plaintext from the server. May finish the request. */
static void do_feed(struct http_req *r, const char *data, size_t len)
{
    llhttp_errno_t e = llhttp_execute(&r->parser, data, len);
    if (r->complete) {
        do_finish(r, 0);
    } else if (r->error != 0) {
        do_finish(r, r->error);
    } else if (e != HPE_OK) {
        do_fail(r, -EBADMSG, "malformed response: %s", llhttp_get_error_reason(&r->parser));
    }
}

/* The server closed: that ends a body without a length, and anything else too early. */
static void do_eof(struct http_req *r)
{
    if (r->state == HTTP_HANDSHAKE) {
        do_fail(r, UV_EPROTO, "tls: connection closed during the handshake");
        return;
    }
    llhttp_errno_t e = llhttp_finish(&r->parser);
    if (r->complete) {
        do_finish(r, 0);
    } else if (r->error != 0) {
        do_finish(r, r->error);
    } else if (e != HPE_OK) {
        do_fail(r, -EBADMSG, "malformed response: %s", llhttp_get_error_reason(&r->parser));
    } else {
        do_fail(r, -EBADMSG, "malformed response: connection closed before it ended");
    }
}

/* ---- bytes on the wire ------------------------------------------------------------------ */

static void on_write(uv_write_t *w, int status)
{
    struct http_write *hw = (struct http_write *)w;
    struct http_req *r = hw->r;
    free(hw);
    /* A closed socket cancels its writes before its close callback: r is still here. */
    if (status < 0 && r->state != HTTP_DONE) {
        do_fail(r, status, "write: %s (during %s)", uv_strerror(status), state_names[r->state]);
    }
}

static struct http_write *do_write_new(struct http_req *r, size_t len)
{
    struct http_write *hw = malloc(sizeof(*hw) + len);
    if (hw == NULL) {
        do_fail(r, -ENOMEM, "out of memory");
        return NULL;
    }
    hw->r = r;
    return hw;
}

/* Takes hw, whether the write starts or not. */
static int do_write_start(struct http_req *r, struct http_write *hw, size_t len)
{
    uv_buf_t buf = uv_buf_init(hw->data, (unsigned)len);
    int rc = uv_write(&hw->req, (uv_stream_t *)&r->tcp, &buf, 1, on_write);
    if (rc != 0) {
        free(hw);
        do_fail(r, rc, "write: %s", uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* Sends whatever TLS produced (handshake flights, records, alerts) in one write. */
static int do_flush_tls(struct http_req *r)
{
    size_t pending = BIO_pending(r->wbio);
    if (pending == 0) {
        return 0;
    }
    struct http_write *hw = do_write_new(r, pending);
    if (hw == NULL) {
        return -1;
    }
    if (BIO_read(r->wbio, hw->data, (int)pending) != (int)pending) {
        free(hw);
        do_fail(r, UV_EPROTO, "tls: cannot take %zu bytes from the memory BIO", pending);
        return -1;
    }
    return do_write_start(r, hw, pending);
}

/* Names what TLS refused; a failed certificate check says why the chain or name failed. */
static void do_fail_tls(struct http_req *r, const char *during)
{
    uint32_t e = ERR_peek_last_error();
    long v = SSL_get_verify_result(r->ssl);
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        do_fail(r, UV_EPROTO, "tls: certificate verify failed: %s (for %s)",
                X509_verify_cert_error_string(v), r->host);
        return;
    }
    const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
    do_fail(r, UV_EPROTO, "tls: %s failed: %s", during, why != NULL ? why : "unknown error");
}

static void do_tls_read(struct http_req *r)
{
    char plain[HTTP_READ_BUF];
    while (r->state == HTTP_EXCHANGE) {
        ERR_clear_error();
        int n = SSL_read(r->ssl, plain, sizeof(plain));
        if (n > 0) {
            do_feed(r, plain, (size_t)n);
            continue;
        }
        int e = SSL_get_error(r->ssl, n);
        if (e == SSL_ERROR_ZERO_RETURN) {
            do_eof(r); /* close_notify */
        } else if (e != SSL_ERROR_WANT_READ) {
            do_fail_tls(r, "read");
        }
        return;
    }
}

/* Moves the handshake on, then sends the request and reads what the server sent. */
static void do_tls_pump(struct http_req *r)
{
    if (r->state == HTTP_HANDSHAKE) {
        ERR_clear_error();
        int rc = SSL_do_handshake(r->ssl);
        if (rc != 1) {
            int e = SSL_get_error(r->ssl, rc);
            if (e == SSL_ERROR_WANT_READ) {
                do_flush_tls(r);
            } else {
                do_fail_tls(r, "handshake");
            }
            return;
        }
        do_set_state(r, HTTP_EXCHANGE);
        ERR_clear_error();
        if (SSL_write(r->ssl, r->out, (int)r->out_len) != (int)r->out_len) {
            do_fail_tls(r, "write");
            return;
        }
    }
    do_tls_read(r);
    if (r->state == HTTP_EXCHANGE) {
        do_flush_tls(r);
    }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct http_req *r = handle->data;
    *buf = uv_buf_init(r->rbuf, sizeof(r->rbuf));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct http_req *r = stream->data;
    if (r->state == HTTP_DONE || nread == 0) {
        return;
    }
    if (nread == UV_EOF) {
        do_eof(r);
        return;
    }
    if (nread < 0) {
        do_fail(r, (int)nread, "read: %s (during %s)", uv_strerror((int)nread),
                state_names[r->state]);
        return;
    }
    if (!r->tls) {
        do_feed(r, buf->base, (size_t)nread);
        return;
    }
    /* A memory BIO takes everything; the pump then drains it. */
    if (BIO_write(r->rbio, buf->base, (int)nread) != (int)nread) {
        do_fail(r, -ENOMEM, "tls: cannot queue %zd bytes in the memory BIO", nread);
        return;
    }
    do_tls_pump(r);
}

/* ---- connecting ------------------------------------------------------------------------- */

static int do_tls_start(struct http_req *r)
{
    r->ssl = SSL_new(r->h->ctx);
    r->rbio = BIO_new(BIO_s_mem());
    r->wbio = BIO_new(BIO_s_mem());
    if (r->ssl == NULL || r->rbio == NULL || r->wbio == NULL) {
        BIO_free(r->rbio);
        BIO_free(r->wbio);
        r->rbio = NULL;
        r->wbio = NULL;
        return -1;
    }
    SSL_set_bio(r->ssl, r->rbio, r->wbio); /* ssl owns both now */
    SSL_set_connect_state(r->ssl);
    SSL_set_hostflags(r->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (r->ip_host) {
        /* An IP address is checked against the IP SANs; SNI carries names only. */
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(r->ssl), r->host) != 1) {
            return -1;
        }
    } else if (SSL_set1_host(r->ssl, r->host) != 1 ||
               SSL_set_tlsext_host_name(r->ssl, r->host) != 1) {
        return -1;
    }
    return 0;
}

static void on_connect(uv_connect_t *creq, int status)
{
    struct http_req *r = creq->handle->data;
    if (status == UV_ECANCELED || r->state != HTTP_CONNECTING) {
        return; /* the socket is closing: on_tcp_closed decides what comes next */
    }
    if (status < 0) {
        r->last_error = status;
        do_close_tcp(r);
        return;
    }
    int rc = uv_read_start((uv_stream_t *)&r->tcp, on_alloc, on_read);
    if (rc != 0) {
        do_fail(r, rc, "connect: cannot read: %s", uv_strerror(rc));
        return;
    }
    if (!r->tls) {
        do_set_state(r, HTTP_EXCHANGE);
        struct http_write *hw = do_write_new(r, r->out_len);
        if (hw != NULL) {
            memcpy(hw->data, r->out, r->out_len);
            do_write_start(r, hw, r->out_len);
        }
        return;
    }
    do_set_state(r, HTTP_HANDSHAKE);
    if (do_tls_start(r) != 0) {
        do_fail(r, UV_EPROTO, "tls: cannot set up the connection to %s", r->host);
        return;
    }
    do_tls_pump(r);
}

/* Tries the addresses in the order DNS gave them; each failure closes the socket and its
 * close callback comes back here. */
static void do_connect_next(struct http_req *r)
{
    if (r->next_addr == r->n_addrs) {
        do_fail(r, r->last_error, "connect: %s port %u: %s", r->host, (unsigned)r->port,
                uv_strerror(r->last_error));
        return;
    }
    const struct sockaddr *sa = (const struct sockaddr *)&r->addrs[r->next_addr++];
    int rc = uv_tcp_init(r->h->loop, &r->tcp);
    if (rc != 0) {
        do_fail(r, rc, "connect: %s", uv_strerror(rc));
        return;
    }
    r->tcp.data = r;
    r->tcp_open = true;
    r->handles++;
    rc = uv_tcp_connect(&r->connect, &r->tcp, sa, on_connect);
    if (rc != 0) {
        r->last_error = rc;
        do_close_tcp(r);
    }
}

static void on_resolved(void *arg, int status, const struct sockaddr_storage *addrs, size_t n,
                        unsigned ttl)
{
    (void)ttl;
    struct http_req *r = arg;
    r->dns_pending = false;
    if (r->state != HTTP_RESOLVING) {
        do_release(r); /* finished meanwhile (timeout, cancel): this was the last hold */
        return;
    }
    if (status != 0 || n == 0) {
        do_fail(r, UV_EAI_NONAME, "dns: cannot resolve %s", r->host);
        return;
    }
    r->addrs = malloc(n * sizeof(*addrs));
    if (r->addrs == NULL) {
        do_fail(r, -ENOMEM, "out of memory");
        return;
    }
    memcpy(r->addrs, addrs, n * sizeof(*addrs));
    r->n_addrs = n;
    r->last_error = UV_ECONNREFUSED;
    do_set_state(r, HTTP_CONNECTING);
    do_connect_next(r);
}

/* ---- the client ------------------------------------------------------------------------- */

static SSL_CTX *do_client_ctx(const char *ca_root_file, char *err, size_t errlen)
{
    const char *roots = ca_root_file != NULL ? ca_root_file : HTTP_SYSTEM_ROOTS;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "SSL_CTX_new() failed");
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        snprintf(err, errlen, "SSL_CTX_set_min_proto_version() failed");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, roots, NULL) != 1) {
        const char *why = ERR_reason_error_string(ERR_peek_last_error());
        snprintf(err, errlen, "cannot load CA roots from %s: %s", roots,
                 why != NULL ? why : "unreadable");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct acme_http *acme_http_new(uv_loop_t *loop, const char *ca_root_file, char *err,
                                size_t errlen)
{
    struct acme_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->loop = loop;
    h->ctx = do_client_ctx(ca_root_file, err, errlen);
    if (h->ctx == NULL) {
        free(h);
        return NULL;
    }
    h->dns = acme_dns_new(loop);
    if (h->dns == NULL) {
        snprintf(err, errlen, "out of memory");
        SSL_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

/* Requests finished here still close their handles; the last release frees h. Nothing is
 * released inside this function: every request still holds at least its timer. */
void acme_http_free(struct acme_http *h)
{
    if (h == NULL || h->closing) {
        return;
    }
    h->closing = true;
    while (h->reqs != NULL) {
        do_fail(h->reqs, UV_ECANCELED, "cancelled");
    }
    acme_dns_free(h->dns); /* the DNS answers still pending arrive now, with -1 */
    h->dns = NULL;
    SSL_CTX_free(h->ctx); /* SSLs not yet freed keep their own reference */
    h->ctx = NULL;
    if (h->live == 0) {
        free(h);
    }
}

static struct http_req *do_req_new(struct acme_http *h, const char *method,
                                   const struct acme_http_url *u)
{
    struct http_req *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->h = h;
    r->tls = u->tls;
    r->port = u->port;
    memcpy(r->host, u->host, sizeof(r->host));
    struct in6_addr a6;
    r->ip_host = uv_inet_pton(AF_INET, u->host, &a6) == 0 ||
                 uv_inet_pton(AF_INET6, u->host, &a6) == 0;
    r->head = strcasecmp(method, "HEAD") == 0;
    llhttp_init(&r->parser, HTTP_RESPONSE, &parser_settings);
    r->parser.data = r;
    return r;
}

/* Returns -1 without a callback for a bad URL, method or content type, when out of memory,
 * and once acme_http_free ran (a callback cancelled by it may try). timeout_ms 0: none. */
int acme_http_request(struct acme_http *h, const char *method, const char *url,
                      const char *content_type, const char *body, size_t body_len,
                      uint64_t timeout_ms, acme_http_cb cb, void *arg)
{
    struct acme_http_url u;
    if (h->closing || !acme_http_is_token(method) || acme_http_parse_url(url, &u) != 0 ||
        (body == NULL && body_len > 0) || body_len > INT_MAX / 2) {
        return -1;
    }
    struct http_req *r = do_req_new(h, method, &u);
    if (r == NULL) {
        return -1;
    }
    if (acme_http_build_request(method, &u, content_type, body, body_len, &r->out,
                                &r->out_len) != 0 ||
        uv_timer_init(h->loop, &r->timer) != 0) {
        free(r->out);
        free(r);
        return -1;
    }
    r->cb = cb;
    r->arg = arg;
    r->timeout_ms = timeout_ms;
    r->timer.data = r;
    r->handles = 1;
    if (timeout_ms > 0) {
        uv_timer_start(&r->timer, on_timeout, timeout_ms, 0);
    }
    r->next = h->reqs;
    if (h->reqs != NULL) {
        h->reqs->prev = r;
    }
    h->reqs = r;
    h->live++;
    r->dns_pending = true;
    acme_dns_resolve(h->dns, r->host, r->port, on_resolved, r); /* answers on a later turn */
    return 0;
}
