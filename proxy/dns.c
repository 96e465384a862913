/* dns.c - the resolver that keeps every named upstream's addresses fresh as their TTLs
 * run out, asking acme's c-ares resolver on the control loop. */
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

#define DNS_TTL_MIN 5
#define DNS_TTL_MAX 3600
#define DNS_RETRY_MS 5000

/* ---- the resolver: one timer per named target ---------------------------------------- */

static void do_resolve_target(struct px_target *t);

static void on_resolve_timer(uv_timer_t *timer)
{
    do_resolve_target(timer->data);
}

static void on_target_resolved(void *arg, int status, const struct sockaddr_storage *addrs,
                               size_t n, unsigned ttl)
{
    struct px_target *t = arg;
    struct px_server *srv = t->srv;
    if (!t->answered) {
        t->answered = true;
        srv->dns_pending--;
    }
    if (srv->stopping) {
        return;
    }
    if (status != 0) {
        log_msg(CFG_LOG_WARN, "dns_failed", "%s: no address; retrying in %d s (keeping %s)",
                t->label, DNS_RETRY_MS / 1000, t->addrs != NULL ? "the last answer" : "none");
        uv_timer_start(&t->resolve_timer, on_resolve_timer, DNS_RETRY_MS, 0);
        return;
    }
    struct px_addrs *a = malloc(sizeof(*a) + n * sizeof(a->addr[0]));
    if (a != NULL) {
        atomic_init(&a->refs, 1);
        a->n = n;
        memcpy(a->addr, addrs, n * sizeof(a->addr[0]));
        pthread_mutex_lock(&t->lock);
        struct px_addrs *old = t->addrs;
        t->addrs = a;
        pthread_mutex_unlock(&t->lock);
        px_addrs_unref(old); /* workers dialling with it hold their own reference */
    }
    ttl = ttl < DNS_TTL_MIN ? DNS_TTL_MIN : (ttl > DNS_TTL_MAX ? DNS_TTL_MAX : ttl);
    struct log_line l;
    log_begin(&l, CFG_LOG_DEBUG, "dns_resolved");
    log_str(&l, "upstream", t->label);
    log_int(&l, "addresses", (int64_t)n);
    log_int(&l, "ttl", ttl);
    log_end(&l);
    uv_timer_start(&t->resolve_timer, on_resolve_timer, (uint64_t)ttl * 1000, 0);
}

static void do_resolve_target(struct px_target *t)
{
    acme_dns_resolve(t->srv->dns, t->host, t->port, on_target_resolved, t);
}

void px_resolver_start(struct px_server *srv)
{
    for (size_t i = 0; i < srv->n_targets; i++) {
        struct px_target *t = srv->targets[i];
        if (!t->literal && !t->resolving) {
            t->resolving = true;
            srv->dns_pending++;
            do_resolve_target(t);
        }
    }
}

static void on_wait_timeout(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

void px_resolver_wait(struct px_server *srv, uint64_t max_ms)
{
    if (srv->dns_pending == 0) {
        return;
    }
    log_msg(CFG_LOG_INFO, "dns_waiting",
            "resolving %zu upstream name(s) before serving (up to %llu ms)", srv->dns_pending,
            (unsigned long long)max_ms);
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(srv->loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_wait_timeout, max_ms, 0);
    while (srv->dns_pending > 0 && !expired) {
        uv_run(srv->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(srv->loop, UV_RUN_NOWAIT);
}

void px_resolver_stop(struct px_server *srv)
{
    for (size_t i = 0; i < srv->n_targets; i++) {
        uv_close((uv_handle_t *)&srv->targets[i]->resolve_timer, NULL);
    }
}
