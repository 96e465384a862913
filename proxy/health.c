/* health.c - upstream health: active checks (a GET on the control loop every interval)
 * and passive ones (failures the workers see, counted in a window). Either takes an
 * upstream out of rotation; the balancer skips it until it is healthy again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

#define CHECK_REPLY_MAX 8192 /* only the status line and headers are needed */

struct px_hcheck {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_write_t write_req;
    llhttp_t parser;
    llhttp_settings_t settings;
    struct px_target *t; /* NULL once the check is over */
    int handles;
    size_t got;
    char req[768];
    char buf[1024];
};

/* On every request: the clock is read only while a passive check holds the target out. */
bool px_target_up(struct px_target *t)
{
    if (atomic_load_explicit(&t->down, memory_order_relaxed)) {
        return false;
    }
    uint64_t until = atomic_load_explicit(&t->down_until, memory_order_relaxed);
    if (until == 0) {
        return true;
    }
    if (px_now_ms() < until) {
        return false;
    }
    atomic_compare_exchange_strong(&t->down_until, &until, 0); /* over: stop reading the clock */
    return true;
}

static void do_log_state(struct px_target *t, bool up, const char *why)
{
    struct log_line l;
    log_begin(&l, up ? CFG_LOG_INFO : CFG_LOG_WARN, up ? "upstream_healthy" : "upstream_unhealthy");
    log_str(&l, "upstream", t->label);
    log_str(&l, "reason", why);
    log_end(&l);
}

/* Workers race here; an approximate count is fine, the window bounds any error. */
void px_target_failed(struct px_worker *w, struct px_target *t, const struct cfg_health *h)
{
    px_stat_add(&t->stats[w->id].failures, 1);
    if (h == NULL || h->max_fails == 0) {
        return;
    }
    uint64_t now = px_now_ms();
    uint64_t since = atomic_load(&t->fails_since);
    unsigned fails;
    if (now - since > h->fail_window_ms) {
        atomic_store(&t->fails_since, now);
        atomic_store(&t->fails, 1);
        fails = 1;
    } else {
        fails = atomic_fetch_add(&t->fails, 1) + 1;
    }
    if (fails < h->max_fails) {
        return;
    }
    atomic_store(&t->fails, 0);
    atomic_store(&t->down_until, now + h->fail_duration_ms);
    struct log_line l;
    log_begin(&l, CFG_LOG_WARN, "upstream_unhealthy");
    log_str(&l, "upstream", t->label);
    log_str(&l, "reason", "passive: too many failures");
    log_int(&l, "failures", fails);
    log_int(&l, "down_ms", (int64_t)h->fail_duration_ms);
    log_end(&l);
}

/* ---- active checks ------------------------------------------------------------------- */

static void on_check_closed(uv_handle_t *h)
{
    struct px_hcheck *k = h->data;
    if (--k->handles == 0) {
        free(k);
    }
}

static void do_check_done(struct px_hcheck *k, bool ok, const char *why)
{
    struct px_target *t = k->t;
    if (t == NULL) {
        return;
    }
    k->t = NULL;
    t->checking = NULL;
    uv_close((uv_handle_t *)&k->tcp, on_check_closed);
    uv_close((uv_handle_t *)&k->timer, on_check_closed);
    bool was_down = atomic_load(&t->down);
    if (ok) {
        atomic_store(&t->down_until, 0); /* a passing check also ends a passive timeout */
    }
    atomic_store(&t->down, !ok);
    if (was_down == ok) {
        do_log_state(t, ok, why);
    }
}

static int on_check_head(llhttp_t *p)
{
    struct px_hcheck *k = p->data;
    int status = p->status_code;
    const struct cfg_health *h = k->t != NULL ? k->t->check : NULL;
    if (h == NULL) {
        return -1;
    }
    bool ok = h->expect_status != 0 ? status == h->expect_status : status >= 200 && status < 300;
    char why[64];
    snprintf(why, sizeof(why), "active: status %d", status);
    do_check_done(k, ok, why);
    return -1; /* the status is all a check needs */
}

static void on_check_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct px_hcheck *k = h->data;
    *buf = uv_buf_init(k->buf, sizeof(k->buf));
}

static void on_check_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct px_hcheck *k = s->data;
    if (k->t == NULL || nread == 0) {
        return;
    }
    if (nread < 0) {
        do_check_done(k, false, "active: connection closed before a response");
        return;
    }
    k->got += (size_t)nread;
    llhttp_errno_t err = llhttp_execute(&k->parser, buf->base, (size_t)nread);
    if (k->t != NULL && (err != HPE_OK || k->got > CHECK_REPLY_MAX)) {
        do_check_done(k, false, "active: malformed response");
    }
}

static void on_check_written(uv_write_t *req, int status)
{
    struct px_hcheck *k = req->data;
    if (status < 0) {
        do_check_done(k, false, "active: write failed");
    }
}

static void on_check_connect(uv_connect_t *req, int status)
{
    struct px_hcheck *k = req->data;
    if (k->t == NULL) {
        return;
    }
    if (status < 0) {
        char why[128];
        snprintf(why, sizeof(why), "active: %s", uv_strerror(status));
        do_check_done(k, false, why);
        return;
    }
    uv_buf_t b = uv_buf_init(k->req, (unsigned)strlen(k->req));
    k->write_req.data = k;
    if (uv_write(&k->write_req, (uv_stream_t *)&k->tcp, &b, 1, on_check_written) != 0 ||
        uv_read_start((uv_stream_t *)&k->tcp, on_check_alloc, on_check_read) != 0) {
        do_check_done(k, false, "active: cannot send");
    }
}

static void on_check_timeout(uv_timer_t *timer)
{
    do_check_done(timer->data, false, "active: timed out");
}

static void do_check(struct px_target *t)
{
    const struct cfg_health *h = t->check;
    struct px_addrs *addrs = px_target_addrs(t);
    if (addrs == NULL) {
        if (!atomic_exchange(&t->down, true)) {
            do_log_state(t, false, "active: no address");
        }
        return;
    }
    struct px_hcheck *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        px_addrs_unref(addrs);
        return;
    }
    k->t = t;
    k->handles = 2;
    snprintf(k->req, sizeof(k->req),
             "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: moat-health-check\r\n"
             "Connection: close\r\n\r\n",
             h->path, h->host != NULL ? h->host : t->label);
    llhttp_settings_init(&k->settings);
    k->settings.on_headers_complete = on_check_head;
    llhttp_init(&k->parser, HTTP_RESPONSE, &k->settings);
    k->parser.data = k;
    uv_tcp_init(t->srv->loop, &k->tcp);
    uv_timer_init(t->srv->loop, &k->timer);
    k->tcp.data = k;
    k->timer.data = k;
    k->connect_req.data = k;
    t->checking = k;
    uv_timer_start(&k->timer, on_check_timeout, h->timeout_ms, 0);
    int rc = uv_tcp_connect(&k->connect_req, &k->tcp, (const struct sockaddr *)&addrs->addr[0],
                            on_check_connect);
    px_addrs_unref(addrs);
    if (rc != 0) {
        char why[128];
        snprintf(why, sizeof(why), "active: %s", uv_strerror(rc));
        do_check_done(k, false, why);
    }
}

static void on_check_timer(uv_timer_t *timer)
{
    struct px_target *t = timer->data;
    if (t->checking == NULL && t->check != NULL && !t->srv->stopping) {
        do_check(t);
    }
}

static void do_abort_check(struct px_target *t)
{
    if (t->checking != NULL) {
        struct px_hcheck *k = t->checking;
        k->t = NULL;
        t->checking = NULL;
        uv_close((uv_handle_t *)&k->tcp, on_check_closed);
        uv_close((uv_handle_t *)&k->timer, on_check_closed);
    }
}

/* The first route of the serving config that configures an active check for a target
 * decides its settings. */
static const struct cfg_health *do_find_check(const struct px_router *r, const struct px_target *t)
{
    for (size_t i = 0; i < r->n_sites; i++) {
        for (size_t j = 0; j < r->sites[i].n_routes; j++) {
            const struct px_route *rt = &r->sites[i].routes[j];
            for (size_t k = 0; rt->health->path != NULL && k < rt->n_targets; k++) {
                if (rt->targets[k] == t) {
                    return rt->health;
                }
            }
        }
    }
    return NULL;
}

void px_health_apply(struct px_server *srv)
{
    for (size_t i = 0; i < srv->n_targets; i++) {
        struct px_target *t = srv->targets[i];
        const struct cfg_health *h = do_find_check(srv->gen->router, t);
        do_abort_check(t); /* its settings may belong to the generation going away */
        t->check = h;
        if (h == NULL) {
            uv_timer_stop(&t->check_timer);
            atomic_store(&t->down, false);
            continue;
        }
        /* The first check runs at once, so an upstream down at start leaves quickly. */
        uv_timer_start(&t->check_timer, on_check_timer, 0, h->interval_ms);
    }
}

void px_health_stop(struct px_server *srv)
{
    for (size_t i = 0; i < srv->n_targets; i++) {
        struct px_target *t = srv->targets[i];
        do_abort_check(t);
        t->check = NULL;
        uv_close((uv_handle_t *)&t->check_timer, NULL);
    }
}
