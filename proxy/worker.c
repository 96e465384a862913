/* worker.c - a worker thread: its loop, its listening sockets (SO_REUSEPORT), its
 * connections, and the messages the control thread sends it (drain, a new generation). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_int.h"

#define HEAD_FREE_MAX 64

struct px_reqbuf *px_worker_reqbuf(struct px_worker *w)
{
    struct px_reqbuf *rb = NULL;
    size_t cap = w->gen->cfg->limits.max_request_head;
    if (w->n_head_free > 0) {
        rb = w->head_free[--w->n_head_free];
        if (rb->cap != cap) { /* a reload changed the limit */
            free(rb);
            rb = NULL;
        }
    }
    if (rb == NULL) {
        rb = malloc(sizeof(*rb) + cap);
        if (rb == NULL) {
            return NULL;
        }
    }
    rb->cap = cap;
    px_head_reset(&rb->head, rb->raw, cap);
    rb->method[0] = '\0';
    rb->host[0] = '\0';
    rb->path[0] = '\0';
    return rb;
}

void px_worker_reqbuf_put(struct px_worker *w, struct px_reqbuf *rb)
{
    if (rb == NULL) {
        return;
    }
    if (w->n_head_free < HEAD_FREE_MAX) {
        w->head_free[w->n_head_free++] = rb;
        return;
    }
    free(rb);
}

static void on_connection(uv_stream_t *s, int status)
{
    struct px_listener *l = s->data;
    if (status < 0) {
        log_msg(CFG_LOG_WARN, "accept_failed", "%s", uv_strerror(status));
        return;
    }
    px_conn_accept(l);
}

static void on_listener_closed(uv_handle_t *h)
{
    free(h->data);
}

static void do_close_listeners(struct px_worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        uv_close((uv_handle_t *)&w->listeners[i]->tcp, on_listener_closed);
    }
    w->n_listeners = 0;
}

/* Takes this worker's socket of a listen address. Handles must not move once initialised:
 * each listener is its own allocation. */
static void do_open_listener(struct px_worker *w, struct px_lsock *ls)
{
    int fd = atomic_exchange(&ls->fds[w->id], -1);
    if (fd < 0) {
        return; /* dropped again before this worker got to it */
    }
    struct px_listener *l = calloc(1, sizeof(*l));
    if (l == NULL || uv_tcp_init(&w->loop, &l->tcp) != 0) {
        free(l);
        close(fd);
        log_msg(CFG_LOG_ERROR, "listen_failed", "worker %u: %s: out of memory", w->id, ls->key);
        return;
    }
    l->w = w;
    l->ls = ls;
    l->tls = ls->tls;
    l->tcp.data = l;
    int rc = uv_tcp_open(&l->tcp, fd);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    }
    w->listeners[w->n_listeners++] = l;
    if (rc != 0) {
        log_msg(CFG_LOG_ERROR, "listen_failed", "worker %u: %s: %s", w->id, ls->key,
                uv_strerror(rc));
        uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        w->n_listeners--;
    }
}

/* Moves the worker to the newest generation: listeners it no longer names close, new ones
 * open, pools grow to cover new targets. Connections keep the generation they hold. */
void px_worker_adopt(struct px_worker *w)
{
    struct px_gen *g = atomic_exchange(&w->next_gen, NULL);
    if (g == NULL) {
        return;
    }
    if (w->draining) {
        px_gen_unref(g);
        return;
    }
    if (g->n_targets > w->n_pools) {
        struct px_pool *grown = realloc(w->pools, g->n_targets * sizeof(*grown));
        if (grown == NULL) {
            log_msg(CFG_LOG_ERROR, "reload_failed", "worker %u: out of memory", w->id);
            px_gen_unref(g);
            return;
        }
        memset(grown + w->n_pools, 0, (g->n_targets - w->n_pools) * sizeof(*grown));
        w->pools = grown;
        w->n_pools = g->n_targets;
    }
    struct px_listener **grown = realloc(w->listeners,
                                         (w->n_listeners + g->n_lsocks + 1) * sizeof(*grown));
    if (grown == NULL) {
        log_msg(CFG_LOG_ERROR, "reload_failed", "worker %u: out of memory", w->id);
        px_gen_unref(g);
        return;
    }
    w->listeners = grown;
    size_t kept = 0;
    for (size_t i = 0; i < w->n_listeners; i++) {
        struct px_listener *l = w->listeners[i];
        if (px_gen_names(g, l->ls)) {
            w->listeners[kept++] = l;
        } else {
            uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
        }
    }
    w->n_listeners = kept;
    for (size_t i = 0; i < g->n_lsocks; i++) {
        bool have = false;
        for (size_t k = 0; k < w->n_listeners && !have; k++) {
            have = w->listeners[k]->ls == g->lsocks[i];
        }
        if (!have) {
            do_open_listener(w, g->lsocks[i]);
        }
    }
    px_gen_unref(w->gen);
    w->gen = g;
}

void px_worker_give_gen(struct px_worker *w, struct px_gen *g)
{
    px_gen_unref(atomic_exchange(&w->next_gen, g)); /* one never adopted is skipped */
}

static void do_check_done(struct px_worker *w)
{
    if (!w->draining || w->n_conns > 0 || w->stopped) {
        return;
    }
    w->stopped = true;
    px_up_pool_close_all(w);
    uv_close((uv_handle_t *)&w->async, NULL);
    px_mailbox_close(&w->answers);
}

void px_worker_conn_gone(struct px_worker *w)
{
    do_check_done(w);
}

/* Drain: no new connections; idle ones close now, busy ones after their response. */
static void do_drain(struct px_worker *w, bool force)
{
    w->draining = true;
    do_close_listeners(w);
    px_up_pool_close_all(w);
    struct px_conn *c = w->conns;
    while (c != NULL) {
        struct px_conn *next = c->next;
        if (force || c->state == PX_CONN_IDLE || c->state == PX_CONN_HANDSHAKE) {
            px_conn_close(c, force ? "drain timeout" : "shutting down");
        }
        c = next;
    }
    do_check_done(w);
}

static void on_async(uv_async_t *a)
{
    struct px_worker *w = a->data;
    int msg = atomic_exchange(&w->msg, PX_MSG_NONE);
    if (msg & PX_MSG_GEN) {
        px_worker_adopt(w);
    }
    if (msg & PX_MSG_FORCE) {
        do_drain(w, true);
    } else if (msg & PX_MSG_DRAIN) {
        do_drain(w, false);
    }
}

void px_worker_post(struct px_worker *w, enum px_worker_msg msg)
{
    atomic_fetch_or(&w->msg, (int)msg);
    uv_async_send(&w->async);
}

static void do_thread(void *arg)
{
    struct px_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&w->loop);
    if (rc != 0) {
        log_msg(CFG_LOG_ERROR, "worker_loop_busy", "worker %u: %s", w->id, uv_strerror(rc));
    }
    atomic_fetch_sub(&w->srv->workers_running, 1);
    uv_async_send(&w->srv->worker_done);
}

int px_worker_init(struct px_worker *w, struct px_server *srv, unsigned id)
{
    w->id = id;
    w->srv = srv;
    int rc = uv_loop_init(&w->loop);
    if (rc != 0) {
        return rc;
    }
    w->loop.data = w;
    uv_async_init(&w->loop, &w->async, on_async);
    w->async.data = w;
    px_mailbox_init(&w->loop, &w->answers, px_bridge_on_answers, w);
    atomic_init(&w->msg, PX_MSG_NONE);
    w->readbuf = malloc(PX_READ_BUF);
    w->plainbuf = malloc(PX_READ_BUF);
    w->outbuf = malloc(PX_OUT_BUF);
    w->upbuf = malloc(PX_OUT_BUF);
    w->head_free = calloc(HEAD_FREE_MAX, sizeof(*w->head_free));
    if (w->readbuf == NULL || w->plainbuf == NULL || w->outbuf == NULL || w->upbuf == NULL ||
        w->head_free == NULL) {
        return UV_ENOMEM;
    }
    px_req_settings(&w->req_settings);
    px_up_settings(&w->resp_settings);
    return 0;
}

int px_worker_start(struct px_worker *w)
{
    return uv_thread_create(&w->thread, do_thread, w);
}

/* After the thread ended: whatever the loop did not free. */
void px_worker_dispose(struct px_worker *w)
{
    for (size_t i = 0; i < w->n_head_free; i++) {
        free(w->head_free[i]);
    }
    free(w->head_free);
    free(w->listeners); /* each one was freed when its handle closed */
    px_gen_unref(atomic_exchange(&w->next_gen, NULL));
    px_gen_unref(w->gen);
    w->gen = NULL;
    free(w->readbuf);
    free(w->plainbuf);
    free(w->outbuf);
    free(w->upbuf);
    free(w->pools);
}
