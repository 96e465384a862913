/* dns.c - asynchronous name resolution with c-ares on the control loop, and the resolver
 * that keeps every named upstream's addresses fresh as their TTLs run out. */
#include <ares.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

#define DNS_MAX_SOCKETS 16
#define DNS_MAX_ADDRS 32
#define DNS_TTL_MIN 5
#define DNS_TTL_MAX 3600
#define DNS_RETRY_MS 5000

struct dns_sock {
    uv_poll_t poll;
    ares_socket_t fd;
    bool used;
    struct px_dns *dns;
};

/* Owned by the control thread. */
struct px_dns {
    uv_loop_t *loop;
    ares_channel channel;
    uv_timer_t timer;
    struct dns_sock socks[DNS_MAX_SOCKETS];
    bool ok;
};

struct dns_query {
    px_dns_cb cb;
    void *arg;
    uint16_t port;
};

static void on_dns_timer(uv_timer_t *t)
{
    struct px_dns *dns = t->data;
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

static void do_rearm(struct px_dns *dns)
{
    struct timeval tv;
    struct timeval *next = ares_timeout(dns->channel, NULL, &tv);
    if (next == NULL) {
        uv_timer_stop(&dns->timer);
        return;
    }
    uint64_t ms = (uint64_t)next->tv_sec * 1000 + (uint64_t)next->tv_usec / 1000;
    uv_timer_start(&dns->timer, on_dns_timer, ms, 0);
}

static void on_dns_poll(uv_poll_t *p, int status, int events)
{
    struct dns_sock *s = p->data;
    ares_socket_t r = ARES_SOCKET_BAD;
    ares_socket_t w = ARES_SOCKET_BAD;
    if (status < 0 || (events & UV_READABLE)) {
        r = s->fd;
    }
    if (status < 0 || (events & UV_WRITABLE)) {
        w = s->fd;
    }
    struct px_dns *dns = s->dns;
    ares_process_fd(dns->channel, r, w);
    do_rearm(dns);
}

static void on_poll_closed(uv_handle_t *h)
{
    struct dns_sock *s = h->data;
    s->used = false;
}

/* c-ares tells which sockets to watch; each gets a uv_poll on the control loop. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct px_dns *dns = data;
    struct dns_sock *s = NULL;
    for (size_t i = 0; i < DNS_MAX_SOCKETS && s == NULL; i++) {
        if (dns->socks[i].used && dns->socks[i].fd == fd) {
            s = &dns->socks[i];
        }
    }
    if (!readable && !writable) {
        if (s != NULL && !uv_is_closing((uv_handle_t *)&s->poll)) {
            uv_close((uv_handle_t *)&s->poll, on_poll_closed);
        }
        return;
    }
    for (size_t i = 0; i < DNS_MAX_SOCKETS && s == NULL; i++) {
        if (!dns->socks[i].used) {
            s = &dns->socks[i];
            s->used = true;
            s->fd = fd;
            s->dns = dns;
            uv_poll_init_socket(dns->loop, &s->poll, fd);
            s->poll.data = s;
        }
    }
    if (s == NULL) {
        return; /* more sockets than slots: c-ares times the query out */
    }
    int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, on_dns_poll);
}

struct px_dns *px_dns_new(uv_loop_t *loop)
{
    struct px_dns *dns = calloc(1, sizeof(*dns));
    if (dns == NULL) {
        return NULL;
    }
    dns->loop = loop;
    uv_timer_init(loop, &dns->timer);
    dns->timer.data = dns;
    struct ares_options opts;
    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = on_sock_state;
    opts.sock_state_cb_data = dns;
    opts.timeout = 3000;
    opts.tries = 2;
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc == ARES_SUCCESS) {
        rc = ares_init_options(&dns->channel, &opts,
                               ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    }
    if (rc != ARES_SUCCESS) {
        px_log(CFG_LOG_ERROR, "dns_init_failed", "%s", ares_strerror(rc));
        return dns; /* named upstreams then stay unresolved and answer 502 */
    }
    dns->ok = true;
    return dns;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void px_dns_free(struct px_dns *dns)
{
    if (dns == NULL) {
        return;
    }
    if (dns->ok) {
        ares_destroy(dns->channel); /* pending callbacks run with ARES_EDESTRUCTION */
        ares_library_cleanup();
    }
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        if (dns->socks[i].used && !uv_is_closing((uv_handle_t *)&dns->socks[i].poll)) {
            uv_close((uv_handle_t *)&dns->socks[i].poll, on_poll_closed);
        }
    }
    uv_close((uv_handle_t *)&dns->timer, on_timer_closed);
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct dns_query *q = arg;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
    size_t n = 0;
    unsigned ttl = DNS_TTL_MAX;
    for (struct ares_addrinfo_node *a = res != NULL ? res->nodes : NULL;
         a != NULL && n < DNS_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(addrs[0])) {
            continue;
        }
        memset(&addrs[n], 0, sizeof(addrs[n]));
        memcpy(&addrs[n], a->ai_addr, a->ai_addrlen);
        if (a->ai_family == AF_INET) {
            ((struct sockaddr_in *)&addrs[n])->sin_port = htons(q->port);
        } else {
            ((struct sockaddr_in6 *)&addrs[n])->sin6_port = htons(q->port);
        }
        if (a->ai_ttl >= 0 && (unsigned)a->ai_ttl < ttl) {
            ttl = (unsigned)a->ai_ttl;
        }
        n++;
    }
    if (res != NULL) {
        ares_freeaddrinfo(res);
    }
    q->cb(q->arg, status == ARES_SUCCESS && n > 0 ? 0 : -1, addrs, n, ttl);
    free(q);
}

void px_dns_resolve(struct px_dns *dns, const char *host, uint16_t port, px_dns_cb cb, void *arg)
{
    struct dns_query *q = calloc(1, sizeof(*q));
    if (!dns->ok || q == NULL) {
        free(q);
        cb(arg, -1, NULL, 0, 0);
        return;
    }
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    ares_getaddrinfo(dns->channel, host, NULL, &hints, on_addrinfo, q);
    do_rearm(dns);
}

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
        px_log(CFG_LOG_WARN, "dns_failed", "%s: no address; retrying in %d s (keeping %s)",
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
    struct px_logline l;
    px_log_begin(&l, CFG_LOG_DEBUG, "dns_resolved");
    px_log_str(&l, "upstream", t->label);
    px_log_int(&l, "addresses", (int64_t)n);
    px_log_int(&l, "ttl", ttl);
    px_log_end(&l);
    uv_timer_start(&t->resolve_timer, on_resolve_timer, (uint64_t)ttl * 1000, 0);
}

static void do_resolve_target(struct px_target *t)
{
    px_dns_resolve(t->srv->dns, t->host, t->port, on_target_resolved, t);
}

void px_resolver_start(struct px_server *srv)
{
    for (size_t i = 0; i < srv->router->n_targets; i++) {
        struct px_target *t = srv->router->targets[i];
        uv_timer_init(srv->loop, &t->resolve_timer);
        t->resolve_timer.data = t;
        if (!t->literal) {
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
    px_log(CFG_LOG_INFO, "dns_waiting", "resolving %zu upstream name(s) before serving (up to "
           "%llu ms)", srv->dns_pending, (unsigned long long)max_ms);
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
    for (size_t i = 0; i < srv->router->n_targets; i++) {
        uv_close((uv_handle_t *)&srv->router->targets[i]->resolve_timer, NULL);
    }
}
