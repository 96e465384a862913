/* conn.c - a client connection's lifecycle: accept, TLS handshake, reading, writing with
 * backpressure, timeouts, graceful and forced close. HTTP lives in request.c. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void do_resume_handshake(struct px_conn *c);

static const char *const state_names[] = {"handshake", "idle", "head",  "proxy",
                                          "tunnel",    "linger", "closed"};

void px_conn_set_state(struct px_conn *c, enum px_conn_state s)
{
    if (log_enabled(CFG_LOG_DEBUG)) {
        struct log_line l;
        log_begin(&l, CFG_LOG_DEBUG, "conn_state");
        log_str(&l, "client", c->peer);
        log_str(&l, "from", state_names[c->state]);
        log_str(&l, "to", state_names[s]);
        log_end(&l);
    }
    c->state = s;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct px_conn *c = h->data;
    if (--c->handles > 0) {
        return;
    }
    struct px_worker *w = c->w;
    px_req_release(c);
    px_gen_unref(c->gen);
    tls_conn_free(c->tls);
    free(c->stash);
    free(c->held);
    free(c->shutdown_req);
    free(c);
    px_worker_conn_gone(w);
}

/* Idempotent. Detaches the upstream (closing it unless its exchange completed), closes
 * both handles; memory goes in the last close callback. */
void px_conn_close(struct px_conn *c, const char *reason)
{
    if (c->state == PX_CONN_CLOSED) {
        return;
    }
    if (log_enabled(CFG_LOG_DEBUG)) {
        log_msg(CFG_LOG_DEBUG, "conn_close", "%s: %s", c->peer, reason);
    }
    px_conn_set_state(c, PX_CONN_CLOSED);
    if (c->ask != NULL) {
        c->ask->conn = NULL; /* the answer finds nobody and is dropped */
        c->ask = NULL;
    }
    px_req_abort_upstream(c);
    struct px_worker *w = c->w;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    w->n_conns--;
    px_stat_add(&w->stats.conns_active, (uint64_t)-1);
    uv_close((uv_handle_t *)&c->timer.timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

void px_conn_arm_timer(struct px_conn *c, uint64_t ms)
{
    px_deadline_set(&c->timer, ms);
}

static void do_peer_name(struct px_conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    c->peer[0] = '\0';
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            inet_ntop(AF_INET, &a6->sin6_addr.s6_addr[12], c->peer, sizeof(c->peer));
        } else {
            uv_ip6_name(a6, c->peer, sizeof(c->peer));
        }
    }
}

static void on_reject_closed(uv_handle_t *h)
{
    free(h);
}

/* Over the connection cap: take the socket off the backlog and close it at once. */
static void do_reject(struct px_listener *l)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL) {
        return;
    }
    uv_tcp_init(&l->w->loop, t);
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)t) == 0) {
        log_msg(CFG_LOG_WARN, "conn_rejected", "connection cap reached (%zu)", l->w->n_conns);
    }
    uv_close((uv_handle_t *)t, on_reject_closed);
}

void px_conn_accept(struct px_listener *l)
{
    struct px_worker *w = l->w;
    const struct cfg *cfg = w->gen->cfg;
    if (w->n_conns >= cfg->limits.max_conns_per_worker) {
        do_reject(l);
        return;
    }
    struct px_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        do_reject(l);
        return;
    }
    c->w = w;
    c->gen = px_gen_ref(w->gen);
    uv_tcp_init(&w->loop, &c->tcp);
    px_deadline_init(&w->loop, &c->timer, px_conn_on_timer, c);
    c->tcp.data = c;
    c->handles = 2;
    c->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = c;
    }
    w->conns = c;
    w->n_conns++;
    px_stat_add(&w->stats.conns_total, 1);
    px_stat_add(&w->stats.conns_active, 1);
    if (uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&c->tcp) != 0) {
        px_conn_close(c, "accept failed");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    do_peer_name(c);
    llhttp_init(&c->parser, HTTP_REQUEST, &w->req_settings);
    c->parser.data = c;
    c->last_activity = uv_now(&w->loop);
    if (l->tls) {
        c->tls = tls_conn_new(w->srv->tls);
        if (c->tls == NULL) {
            px_conn_close(c, "out of memory");
            return;
        }
        tls_conn_set_user(c->tls, c);
        c->state = PX_CONN_HANDSHAKE;
        px_conn_arm_timer(c, cfg->timeouts.tls_handshake);
    } else {
        c->state = PX_CONN_IDLE;
        px_conn_arm_timer(c, cfg->timeouts.request_head);
    }
    px_conn_resume_reading(c);
}

void px_conn_resume_reading(struct px_conn *c)
{
    if (!c->reading && c->state != PX_CONN_CLOSED) {
        if (uv_read_start((uv_stream_t *)&c->tcp, px_on_alloc, on_client_read) == 0) {
            c->reading = true;
        }
    }
}

void px_conn_stop_reading(struct px_conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_linger_shutdown(uv_shutdown_t *req, int status)
{
    struct px_conn *c = req->data;
    if (status < 0 || c->state == PX_CONN_CLOSED) {
        if (status != UV_ECANCELED) {
            px_conn_close(c, "shutdown failed");
        }
        return;
    }
    px_conn_arm_timer(c, PX_LINGER_MS);
    px_conn_resume_reading(c);
}

/* Everything queued has been written: half-close and read what the client still sends for
 * a moment, so the kernel does not answer it with a reset that could destroy the response
 * before the client read it. */
static void do_linger(struct px_conn *c)
{
    if (c->shut || c->state == PX_CONN_CLOSED) {
        return;
    }
    c->shut = true;
    px_conn_set_state(c, PX_CONN_LINGER);
    c->shutdown_req = malloc(sizeof(*c->shutdown_req));
    if (c->shutdown_req == NULL) {
        px_conn_close(c, "out of memory");
        return;
    }
    c->shutdown_req->data = c;
    if (uv_shutdown(c->shutdown_req, (uv_stream_t *)&c->tcp, on_linger_shutdown) != 0) {
        px_conn_close(c, "shutdown failed");
    }
}

void px_conn_finish(struct px_conn *c)
{
    if (c->state == PX_CONN_CLOSED || c->close_after_flush) {
        return;
    }
    px_req_abort_upstream(c);
    c->close_after_flush = true;
    if (c->tls != NULL && c->state != PX_CONN_HANDSHAKE) {
        tls_conn_shutdown(c->tls);
    }
    px_conn_send_tls_output(c);
    px_conn_stop_reading(c);
    if (c->state != PX_CONN_CLOSED && c->tcp.write_queue_size == 0) {
        do_linger(c);
    }
}

static void on_client_write(uv_write_t *req, int status)
{
    struct px_conn *c = req->handle->data;
    px_wreq_free(req);
    if (c->state == PX_CONN_CLOSED) {
        return;
    }
    if (status < 0) {
        px_conn_close(c, "write failed");
        return;
    }
    if (c->close_after_flush) {
        if (c->tcp.write_queue_size == 0) {
            do_linger(c);
        }
        return;
    }
    if (c->tcp.write_queue_size < PX_WRITE_LOW) {
        px_req_client_drained(c);
    }
}

bool px_conn_write_congested(const struct px_conn *c)
{
    return c->tcp.write_queue_size > PX_WRITE_HIGH;
}

/* Sends the ciphertext the TLS layer produced. */
void px_conn_send_tls_output(struct px_conn *c)
{
    if (c->tls == NULL) {
        return;
    }
    size_t len = 0;
    const char *out = tls_conn_output(c->tls, &len);
    if (out == NULL || c->state == PX_CONN_CLOSED) {
        return;
    }
    int rc = px_stream_send((uv_stream_t *)&c->tcp, out, len, on_client_write);
    tls_conn_output_consume(c->tls, len);
    if (rc != 0) {
        px_conn_close(c, "write failed");
    }
}

/* Sends plaintext to the client: encrypted in one go (one TLS record per 16 KiB) or, on
 * the plain listener, as is. */
void px_conn_write(struct px_conn *c, const char *p, size_t n)
{
    if (c->state == PX_CONN_CLOSED || n == 0) {
        return;
    }
    if (c->tls == NULL) {
        if (px_stream_send((uv_stream_t *)&c->tcp, p, n, on_client_write) != 0) {
            px_conn_close(c, "write failed");
        }
        return;
    }
    if (tls_conn_write(c->tls, p, n) != 0) {
        px_conn_close(c, "TLS write failed");
        return;
    }
    px_conn_send_tls_output(c);
}

/* The handshake waits for the control thread: nothing is read meanwhile (a read would
 * re-enter the paused handshake), and the wait has its own deadline. */
static void do_pause_handshake(struct px_conn *c)
{
    px_conn_stop_reading(c);
    const struct px_ask *a = c->ask;
    if (a == NULL) {
        px_conn_close(c, "handshake paused without a question");
        return;
    }
    if (a->kind == PX_ASK_CERT) {
        struct log_line l;
        log_begin(&l, CFG_LOG_INFO, "on_demand_wait");
        log_str(&l, "name", a->name);
        log_str(&l, "client", c->peer);
        log_end(&l);
        px_stat_add(&c->w->stats.od_waits, 1);
        px_conn_arm_timer(c, c->w->srv->boot_cfg->on_demand.timeout_ms);
    }
}

static void do_handshake(struct px_conn *c)
{
    int rc = tls_conn_handshake(c->tls);
    px_conn_send_tls_output(c);
    if (rc == TLS_WANT_READ || c->state == PX_CONN_CLOSED) {
        return;
    }
    if (rc == TLS_PENDING) {
        do_pause_handshake(c);
        return;
    }
    if (rc != TLS_OK) {
        px_stat_add(&c->w->stats.handshake_failures, 1);
        struct log_line l;
        log_begin(&l, CFG_LOG_INFO, "tls_handshake_failed");
        log_str(&l, "client", c->peer);
        log_str(&l, "sni", tls_conn_sni(c->tls));
        log_str(&l, "reason", tls_conn_error(c->tls));
        log_end(&l);
        c->close_after_flush = true;
        px_conn_stop_reading(c);
        if (c->tcp.write_queue_size == 0) {
            px_conn_close(c, "handshake failed");
        }
        return;
    }
    px_stat_add(&c->w->stats.handshakes, 1);
    if (tls_conn_resumed(c->tls)) {
        px_stat_add(&c->w->stats.resumptions, 1);
    }
    if (tls_conn_is_challenge(c->tls)) {
        log_msg(CFG_LOG_DEBUG, "acme_tls_alpn_answered", "%s: %s", c->peer, tls_conn_sni(c->tls));
        px_conn_finish(c); /* RFC 8737: nothing follows the validation handshake */
        return;
    }
    px_conn_set_state(c, PX_CONN_IDLE);
    px_conn_arm_timer(c, c->gen->cfg->timeouts.keepalive_idle);
}

/* Decrypts everything fed so far and hands it to HTTP. */
static void do_tls_pump(struct px_conn *c)
{
    if (c->state == PX_CONN_HANDSHAKE) {
        do_handshake(c);
        if (c->state == PX_CONN_HANDSHAKE || c->state == PX_CONN_CLOSED ||
            c->close_after_flush) {
            return;
        }
    }
    while (c->state != PX_CONN_CLOSED && c->state != PX_CONN_LINGER) {
        int got = tls_conn_read(c->tls, c->w->plainbuf, PX_READ_BUF);
        if (got > 0) {
            px_req_input(c, c->w->plainbuf, (size_t)got);
            continue;
        }
        px_conn_send_tls_output(c); /* post-handshake messages, alerts */
        if (got == TLS_CLOSED) {
            px_req_client_eof(c);
        } else if (got == TLS_ERROR) {
            px_conn_close(c, tls_conn_error(c->tls));
        }
        break;
    }
}

/* The fed bytes live in the worker's read buffer, which the next read overwrites: a
 * paused handshake keeps a copy of what it has not consumed; anything else lets go. */
static void do_tls_unfeed(struct px_conn *c)
{
    if (c->state == PX_CONN_CLOSED) {
        return;
    }
    const char *rest = NULL;
    size_t left = tls_conn_unconsumed(c->tls, &rest);
    if (c->state == PX_CONN_HANDSHAKE && c->ask != NULL && left > 0 && c->held == NULL) {
        c->held = malloc(left);
        if (c->held == NULL) {
            px_conn_close(c, "out of memory");
            return;
        }
        memcpy(c->held, rest, left);
        tls_conn_feed(c->tls, c->held, left);
        return;
    }
    if (c->held == NULL) {
        tls_conn_feed(c->tls, NULL, 0);
    }
}

static void do_tls_input(struct px_conn *c, const char *p, size_t n)
{
    tls_conn_feed(c->tls, p, n);
    do_tls_pump(c);
    do_tls_unfeed(c);
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct px_conn *c = s->data;
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        if (c->state == PX_CONN_LINGER || nread != UV_EOF) {
            px_conn_close(c, nread == UV_EOF ? "client closed" : uv_strerror((int)nread));
        } else {
            px_req_client_eof(c);
        }
        return;
    }
    if (c->state == PX_CONN_LINGER || c->close_after_flush) {
        return; /* discarded */
    }
    c->last_activity = uv_now(&c->w->loop);
    if (c->tls != NULL) {
        do_tls_input(c, buf->base, (size_t)nread);
    } else {
        px_req_input(c, buf->base, (size_t)nread);
    }
    if (c->state != PX_CONN_CLOSED) {
        px_req_flush(c);
    }
}

void px_conn_on_timer(uv_timer_t *t)
{
    struct px_conn *c = t->data;
    switch (c->state) {
    case PX_CONN_HANDSHAKE:
        if (c->ask != NULL && c->ask->kind == PX_ASK_CERT) {
            uint64_t waited = uv_now(&c->w->loop) - c->ask->start_ms;
            struct log_line l;
            log_begin(&l, CFG_LOG_WARN, "on_demand_timeout");
            log_str(&l, "name", c->ask->name);
            log_str(&l, "client", c->peer);
            log_int(&l, "waited_ms", (int64_t)waited);
            log_end(&l);
            px_hist_observe(&c->w->stats.od_wait, waited * 1000);
            c->ask->conn = NULL; /* a late answer is dropped */
            c->ask = NULL;
            do_resume_handshake(c); /* the client gets an alert, not just a closed socket */
            break;
        }
        px_conn_close(c, "TLS handshake timeout");
        break;
    case PX_CONN_IDLE:
        px_conn_close(c, "keep-alive idle timeout");
        break;
    case PX_CONN_LINGER:
        px_conn_close(c, "linger done");
        break;
    default:
        px_req_on_timer(c);
        break;
    }
}

static void do_log_answer(struct px_conn *c, const struct px_ask *a)
{
    struct log_line l;
    if (a->status == 0) {
        log_begin(&l, CFG_LOG_INFO, "on_demand_ready");
    } else {
        log_begin(&l, CFG_LOG_INFO, "on_demand_failed");
    }
    log_str(&l, "name", a->name);
    log_str(&l, "client", c->peer);
    log_int(&l, "waited_ms", (int64_t)c->tls_wait_ms);
    if (a->status != 0) {
        log_str(&l, "error", a->why);
    }
    log_end(&l);
}

/* The paused handshake goes on: with the certificate now in the store, or without one,
 * which ends it with an unrecognized_name alert. */
static void do_resume_handshake(struct px_conn *c)
{
    px_conn_arm_timer(c, c->gen->cfg->timeouts.tls_handshake);
    px_conn_resume_reading(c);
    char *held = c->held; /* still fed: what arrived behind the ClientHello */
    c->held = NULL;
    do_tls_pump(c); /* the certificate is in the store now, or the name is refused */
    if (held != NULL && c->state != PX_CONN_CLOSED) {
        tls_conn_feed(c->tls, NULL, 0);
    }
    free(held);
}

void px_conn_on_answer(struct px_conn *c, const struct px_ask *a)
{
    if (c->state == PX_CONN_CLOSED) {
        return;
    }
    if (a->kind == PX_ASK_HTTP_CHALLENGE) {
        px_req_plain_answered(c);
        return;
    }
    c->tls_wait_ms = uv_now(&c->w->loop) - a->start_ms;
    if (a->kind == PX_ASK_CERT) {
        px_hist_observe(&c->w->stats.od_wait, c->tls_wait_ms * 1000);
        do_log_answer(c, a);
    }
    do_resume_handshake(c);
}
