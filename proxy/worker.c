/* worker.c - a worker thread: its loop, its listening sockets (SO_REUSEPORT), its
 * connections, and the messages the control thread sends it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn_int.h"

#define HEAD_FREE_MAX 64

struct px_reqbuf *px_worker_reqbuf(struct px_worker *w)
{
    struct px_reqbuf *rb;
    size_t cap = w->srv->cfg->limits.max_request_head;
    if (w->n_head_free > 0) {
        rb = w->head_free[--w->n_head_free];
    } else {
        rb = malloc(sizeof(*rb) + cap);
        if (rb == NULL) {
            return NULL;
        }
    }
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

static void do_close_listeners(struct px_worker *w)
{
    for (size_t i = 0; i < w->n_listeners; i++) {
        uv_handle_t *h = (uv_handle_t *)&w->listeners[i]->tcp;
        if (!uv_is_closing(h)) {
            uv_close(h, NULL);
        }
    }
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
    size_t nt = srv->router->n_targets > 0 ? srv->router->n_targets : 1;
    size_t ng = srv->router->n_groups > 0 ? srv->router->n_groups : 1;
    w->pools = calloc(nt, sizeof(*w->pools));
    w->rr = calloc(ng, sizeof(*w->rr));
    if (w->readbuf == NULL || w->plainbuf == NULL || w->outbuf == NULL || w->upbuf == NULL ||
        w->head_free == NULL || w->pools == NULL || w->rr == NULL) {
        return UV_ENOMEM;
    }
    px_req_settings(&w->req_settings);
    px_up_settings(&w->resp_settings);
    return 0;
}

/* Binds one listening socket of this worker; SO_REUSEPORT lets every worker own a socket
 * on the same address so the kernel spreads connections. Returns 0 or a libuv error. */
int px_worker_listen(struct px_worker *w, const struct sockaddr *sa, bool tls)
{
    /* Handles must not move once initialised: each listener is its own allocation. */
    struct px_listener **grown = realloc(w->listeners, (w->n_listeners + 1) * sizeof(*grown));
    if (grown == NULL) {
        return UV_ENOMEM;
    }
    w->listeners = grown;
    struct px_listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return UV_ENOMEM;
    }
    l->w = w;
    l->tls = tls;
    int rc = uv_tcp_init_ex(&w->loop, &l->tcp, sa->sa_family);
    if (rc != 0) {
        free(l);
        return rc;
    }
    w->listeners[w->n_listeners++] = l;
    l->tcp.data = l;
    uv_os_fd_t fd;
    int one = 1;
    uv_fileno((uv_handle_t *)&l->tcp, &fd);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        return -errno;
    }
    rc = uv_tcp_bind(&l->tcp, sa, 0);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&l->tcp, 1024, on_connection);
    }
    return rc;
}

/* The address a listener ended up on (the port when 0 was asked for). */
int px_worker_listener_addr(struct px_worker *w, size_t i, struct sockaddr_storage *ss)
{
    int len = sizeof(*ss);
    return uv_tcp_getsockname(&w->listeners[i]->tcp, (struct sockaddr *)ss, &len);
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
    for (size_t i = 0; i < w->n_listeners; i++) {
        free(w->listeners[i]);
    }
    free(w->listeners);
    free(w->readbuf);
    free(w->plainbuf);
    free(w->outbuf);
    free(w->upbuf);
    free(w->pools);
    free(w->rr);
}
