/* upstream.c - connections to upstreams: dialling, per-worker keep-alive pools, reading
 * responses with llhttp, timeouts, and choosing a target (round robin, least connections). */
#include <stdlib.h>
#include <string.h>

#include "conn_int.h"

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void do_send_pending(struct px_upconn *u);
static bool do_failover(struct px_upconn *u);

static void on_up_closed(uv_handle_t *h)
{
    struct px_upconn *u = h->data;
    if (--u->handles > 0) {
        return;
    }
    free(u->head.raw);
    free(u->pend);
    free(u);
}

static void do_pool_unlink(struct px_upconn *u)
{
    struct px_pool *pool = &u->w->pools[u->target->id];
    if (u->prev != NULL) {
        u->prev->next = u->next;
    } else {
        pool->idle = u->next;
    }
    if (u->next != NULL) {
        u->next->prev = u->prev;
    }
    u->next = NULL;
    u->prev = NULL;
    pool->n_idle--;
}

static void do_uncount(struct px_upconn *u)
{
    if (u->counted) {
        u->w->pools[u->target->id].active--;
        u->counted = false;
    }
}

/* Idempotent; memory goes in the last close callback. */
void px_up_close(struct px_upconn *u, const char *reason)
{
    if (u->state == PX_UP_CLOSED) {
        return;
    }
    if (log_enabled(CFG_LOG_DEBUG)) {
        log_msg(CFG_LOG_DEBUG, "upstream_close", "%s: %s", u->target->label, reason);
    }
    if (u->state == PX_UP_IDLE) {
        do_pool_unlink(u);
    }
    do_uncount(u);
    if (u->w->up_owner == u) {
        u->w->up_owner = NULL;
        u->w->uplen = 0;
    }
    u->client = NULL;
    u->state = PX_UP_CLOSED;
    uv_close((uv_handle_t *)&u->timer.timer, on_up_closed);
    uv_close((uv_handle_t *)&u->tcp, on_up_closed);
}

static void do_fail(struct px_upconn *u, int status, const char *why)
{
    struct px_conn *c = u->client;
    if (c == NULL) {
        px_up_close(u, why);
        return;
    }
    /* A pooled connection the upstream closed meanwhile says nothing about its health. */
    if (!u->reused && u->state != PX_UP_TUNNEL && !u->head_done) {
        px_target_failed(u->w, u->target, c->req.route != NULL ? c->req.route->health : NULL);
    }
    px_conn_on_upstream_error(c, status, why);
}

static void on_up_timer(uv_timer_t *t)
{
    struct px_upconn *u = t->data;
    switch (u->state) {
    case PX_UP_CONNECTING:
        u->reused = false; /* a timeout is no reason to retry */
        do_fail(u, 502, "upstream connect timeout");
        break;
    case PX_UP_ACTIVE:
        u->reused = false;
        do_fail(u, 504, "upstream response head timeout");
        break;
    default:
        px_up_close(u, "idle timeout");
        break;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct px_upconn *u = req->data;
    if (u->state == PX_UP_CLOSED) {
        return;
    }
    if (status < 0) {
        log_msg(CFG_LOG_WARN, "upstream_connect_failed", "%s: %s", u->target->label,
               uv_strerror(status));
        if (do_failover(u)) {
            return;
        }
        char why[128];
        snprintf(why, sizeof(why), "upstream connect failed: %s", uv_strerror(status));
        do_fail(u, 502, why);
        return;
    }
    u->state = PX_UP_ACTIVE;
    uv_tcp_nodelay(&u->tcp, 1);
    do_send_pending(u);
    if (u->state == PX_UP_CLOSED) {
        return;
    }
    px_deadline_set(&u->timer, u->w->gen->cfg->timeouts.upstream_head);
    if (!u->read_paused) {
        uv_read_start((uv_stream_t *)&u->tcp, px_on_alloc, on_up_read);
    }
}

/* Dials one address of the target: the next in rotation, offset by how many addresses this
 * request already tried. Returns NULL when no address is known or the dial cannot start. */
static struct px_upconn *do_dial(struct px_worker *w, struct px_target *t, unsigned attempt)
{
    struct px_addrs *addrs = px_target_addrs(t);
    if (addrs == NULL) {
        return NULL;
    }
    struct px_pool *pool = &w->pools[t->id];
    if (attempt == 0) {
        pool->next_addr++;
    }
    size_t idx = (pool->next_addr + attempt) % addrs->n;
    struct px_upconn *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        px_addrs_unref(addrs);
        return NULL;
    }
    u->w = w;
    u->target = t;
    u->attempt = attempt;
    u->n_addrs = (unsigned)addrs->n;
    uv_tcp_init(&w->loop, &u->tcp);
    px_deadline_init(&w->loop, &u->timer, on_up_timer, u);
    u->tcp.data = u;
    u->connect_req.data = u;
    u->handles = 2;
    u->state = PX_UP_CONNECTING;
    int rc = uv_tcp_connect(&u->connect_req, &u->tcp, (const struct sockaddr *)&addrs->addr[idx],
                            on_connect);
    px_addrs_unref(addrs);
    if (rc != 0) {
        log_msg(CFG_LOG_WARN, "upstream_dial_failed", "%s: %s", t->label, uv_strerror(rc));
        px_up_close(u, "connect failed");
        return NULL;
    }
    px_deadline_set(&u->timer, w->gen->cfg->timeouts.upstream_connect);
    return u;
}

/* A refused connect tries the target's next address, carrying what was queued for it. */
static bool do_failover(struct px_upconn *u)
{
    struct px_conn *c = u->client;
    if (c == NULL || u->attempt + 1 >= u->n_addrs) {
        return false;
    }
    struct px_upconn *next = do_dial(u->w, u->target, u->attempt + 1);
    if (next == NULL) {
        return false;
    }
    next->head = u->head;
    u->head.raw = NULL;
    next->parser = u->parser;
    next->parser.data = next;
    next->pend = u->pend;
    next->pend_len = u->pend_len;
    u->pend = NULL;
    u->pend_len = 0;
    next->client = c;
    next->counted = u->counted;
    u->counted = false;
    c->req.up = next;
    u->client = NULL;
    px_up_close(u, "failed over to the next address");
    return true;
}

int px_up_dispatch(struct px_conn *c, struct px_target *t, const char *head, size_t len,
                   bool fresh)
{
    struct px_worker *w = c->w;
    struct px_pool *pool = &w->pools[t->id];
    struct px_upconn *u = fresh ? NULL : pool->idle;
    if (u != NULL) {
        do_pool_unlink(u);
        u->reused = true;
        u->state = PX_UP_ACTIVE;
        px_deadline_set(&u->timer, w->gen->cfg->timeouts.upstream_head);
    } else {
        u = do_dial(w, t, 0);
        if (u == NULL) {
            return -1;
        }
    }
    if (u->head.raw == NULL) {
        u->head.raw = malloc(PX_RESP_HEAD_MAX);
        if (u->head.raw == NULL) {
            px_up_close(u, "out of memory");
            return -1;
        }
    }
    px_head_reset(&u->head, u->head.raw, PX_RESP_HEAD_MAX);
    llhttp_init(&u->parser, HTTP_RESPONSE, &w->resp_settings);
    u->parser.data = u;
    u->client = c;
    u->got_bytes = false;
    u->head_done = false;
    u->reusable = false;
    u->counted = true;
    pool->active++;
    c->req.up = u;
    c->req.sent_us = uv_hrtime() / 1000;
    px_up_send(u, head, len);
    return 0;
}

static void on_up_write(uv_write_t *req, int status)
{
    struct px_upconn *u = req->handle->data;
    px_wreq_free(req);
    if (u->state == PX_UP_CLOSED) {
        return;
    }
    if (status < 0) {
        do_fail(u, 502, "upstream write failed");
        return;
    }
    if (u->client != NULL && u->tcp.write_queue_size < PX_WRITE_LOW) {
        px_conn_upstream_drained(u->client);
    }
}

void px_up_send(struct px_upconn *u, const char *p, size_t n)
{
    if (u->state == PX_UP_CLOSED) {
        return;
    }
    if (u->state == PX_UP_CONNECTING) {
        /* Held until connected, so a refused address can hand it to the next one. */
        char *bigger = realloc(u->pend, u->pend_len + n);
        if (bigger == NULL) {
            do_fail(u, 502, "out of memory");
            return;
        }
        memcpy(bigger + u->pend_len, p, n);
        u->pend = bigger;
        u->pend_len += n;
        return;
    }
    int rc = px_stream_send((uv_stream_t *)&u->tcp, p, n, on_up_write);
    if (rc != 0) {
        do_fail(u, 502, uv_strerror(rc));
    }
}

bool px_up_write_congested(const struct px_upconn *u)
{
    return u->tcp.write_queue_size + u->pend_len > PX_WRITE_HIGH;
}

static void do_send_pending(struct px_upconn *u)
{
    char *pend = u->pend;
    size_t n = u->pend_len;
    u->pend = NULL;
    u->pend_len = 0;
    if (pend != NULL) {
        px_up_send(u, pend, n);
        free(pend);
    }
    /* The client may have been paused on the held bytes; no write callback may come. */
    if (u->state != PX_UP_CLOSED && u->client != NULL && u->tcp.write_queue_size < PX_WRITE_LOW) {
        px_conn_upstream_drained(u->client);
    }
}

void px_up_pause(struct px_upconn *u, bool paused)
{
    if (u->state == PX_UP_CLOSED || u->read_paused == paused) {
        return;
    }
    u->read_paused = paused;
    if (u->state == PX_UP_CONNECTING) {
        return;
    }
    if (paused) {
        uv_read_stop((uv_stream_t *)&u->tcp);
    } else {
        uv_read_start((uv_stream_t *)&u->tcp, px_on_alloc, on_up_read);
    }
}

void px_up_release(struct px_upconn *u, bool reusable)
{
    if (u == NULL || u->state == PX_UP_CLOSED) {
        return;
    }
    struct px_worker *w = u->w;
    struct px_pool *pool = &w->pools[u->target->id];
    do_uncount(u);
    u->client = NULL;
    if (!reusable || w->draining || u->state != PX_UP_ACTIVE ||
        pool->n_idle >= w->gen->cfg->limits.upstream_idle_per_worker) {
        px_up_close(u, "not reusable");
        return;
    }
    u->state = PX_UP_IDLE;
    u->prev = NULL;
    u->next = pool->idle;
    if (pool->idle != NULL) {
        pool->idle->prev = u;
    }
    pool->idle = u;
    pool->n_idle++;
    px_deadline_set(&u->timer, w->gen->cfg->timeouts.upstream_idle);
    px_up_pause(u, false); /* an idle connection reads, to notice the upstream closing it */
}

void px_up_pool_close_all(struct px_worker *w)
{
    for (size_t i = 0; i < w->n_pools; i++) {
        while (w->pools[i].idle != NULL) {
            px_up_close(w->pools[i].idle, "shutdown");
        }
    }
}

/* ---- response parsing ----------------------------------------------------------------- */

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    struct px_upconn *u = p->data;
    return px_head_on_target(&u->head, at, n) == 0 ? 0 : -1;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    struct px_upconn *u = p->data;
    return px_head_on_field(&u->head, at, n) == 0 ? 0 : -1;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    struct px_upconn *u = p->data;
    return px_head_on_value(&u->head, at, n) == 0 ? 0 : -1;
}

static int on_headers_complete(llhttp_t *p)
{
    struct px_upconn *u = p->data;
    struct px_conn *c = u->client;
    if (c == NULL) {
        return -1;
    }
    int status = p->status_code;
    bool interim = status >= 100 && status < 200 && status != 101;
    if (!interim) {
        u->head_done = true;
        px_deadline_clear(&u->timer);
        px_hist_observe(&u->target->stats[u->w->id].latency,
                        uv_hrtime() / 1000 - c->req.sent_us);
    }
    bool is_head = c->req.is_head;
    bool upgrade = status == 101 && c->req.upgrade;
    px_conn_on_response_head(c, &u->head, p);
    px_head_reset(&u->head, u->head.raw, PX_RESP_HEAD_MAX);
    if (u->client == NULL) {
        return -1;
    }
    if (upgrade) {
        return 2;
    }
    return is_head ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct px_upconn *u = p->data;
    if (u->client == NULL) {
        return -1;
    }
    px_conn_on_response_body(u->client, at, n);
    return u->client == NULL ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct px_upconn *u = p->data;
    int status = p->status_code;
    if (status >= 100 && status < 200 && status != 101) {
        return 0; /* an interim response: the final one follows */
    }
    if (p->upgrade) {
        return 0; /* llhttp then stops with HPE_PAUSED_UPGRADE: the tunnel begins */
    }
    u->reusable = llhttp_should_keep_alive(p) != 0;
    return HPE_PAUSED;
}

void px_up_settings(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_status = on_status;
    s->on_header_field = on_field;
    s->on_header_value = on_value;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

static void do_up_eof(struct px_upconn *u)
{
    struct px_conn *c = u->client;
    if (u->state == PX_UP_TUNNEL) {
        px_up_close(u, "tunnel closed");
        if (c != NULL) {
            c->req.up = NULL;
            px_conn_finish(c);
        }
        return;
    }
    if (c != NULL && u->head_done && llhttp_message_needs_eof(&u->parser)) {
        if (llhttp_finish(&u->parser) == HPE_PAUSED || u->parser.error == HPE_PAUSED) {
            px_conn_on_response_done(c, false);
            return;
        }
    }
    do_fail(u, 502, u->got_bytes ? "upstream closed mid-response" : "upstream closed");
}

static void do_response_bytes(struct px_upconn *u, const char *p, size_t n)
{
    struct px_conn *c = u->client;
    llhttp_errno_t err = llhttp_execute(&u->parser, p, n);
    if (u->client == NULL) {
        px_up_close(u, "client gone");
        return;
    }
    if (err == HPE_OK) {
        px_conn_flush(c);
        return;
    }
    size_t used = (size_t)(llhttp_get_error_pos(&u->parser) - p);
    if (err == HPE_PAUSED) {
        px_conn_on_response_done(c, u->reusable && used == n);
        return;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        u->state = PX_UP_TUNNEL;
        px_deadline_clear(&u->timer);
        px_conn_on_upstream_tunnel(c, p + used, n - used);
        px_conn_flush(c);
        return;
    }
    const char *why = llhttp_get_error_reason(&u->parser);
    u->reused = false;
    do_fail(u, 502, why != NULL ? why : "malformed response");
}

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct px_upconn *u = s->data;
    if (nread == 0 || u->state == PX_UP_CLOSED) {
        return;
    }
    if (u->state == PX_UP_IDLE) {
        px_up_close(u, nread < 0 ? "upstream closed idle connection" : "unexpected bytes");
        return;
    }
    if (nread < 0) {
        do_up_eof(u);
        return;
    }
    u->got_bytes = true;
    struct px_conn *c = u->client;
    if (c == NULL) {
        px_up_close(u, "client gone");
        return;
    }
    c->last_activity = uv_now(&u->w->loop);
    if (u->state == PX_UP_TUNNEL) {
        px_conn_on_upstream_tunnel(c, buf->base, (size_t)nread);
        px_conn_flush(c);
        return;
    }
    do_response_bytes(u, buf->base, (size_t)nread);
}

/* ---- balancing ---------------------------------------------------------------------- */

/* Skips upstreams that health checks took out; NULL when none is left. */
struct px_target *px_balance_pick(struct px_worker *w, const struct px_route *r)
{
    unsigned start = r->rr[w->id]++;
    if (r->balance == CFG_BALANCE_ROUND_ROBIN) {
        for (size_t i = 0; i < r->n_targets; i++) {
            struct px_target *t = r->targets[(start + i) % r->n_targets];
            if (px_target_up(t)) {
                return t;
            }
        }
        return NULL;
    }
    /* least_conn: fewest requests in flight from this worker; ties rotate. */
    struct px_target *best = NULL;
    unsigned best_active = 0;
    for (size_t i = 0; i < r->n_targets; i++) {
        struct px_target *t = r->targets[(start + i) % r->n_targets];
        if (!px_target_up(t)) {
            continue;
        }
        unsigned active = w->pools[t->id].active;
        if (best == NULL || active < best_active) {
            best = t;
            best_active = active;
        }
    }
    return best;
}
