/* gen.c - configuration generations: what a config turns into (router, listen sockets),
 * the upstream targets and per-site counters that outlive any one generation, and the
 * listen sockets bound on the control thread for the workers to take. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy_int.h"

struct px_gen *px_gen_ref(struct px_gen *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

/* The last holder may be any worker: a generation is immutable, so whoever drops it last
 * frees it. */
void px_gen_unref(struct px_gen *g)
{
    if (g == NULL || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    px_router_free(g->router);
    cfg_free(g->cfg);
    free(g->lsocks);
    free(g);
}

/* ---- targets and site counters: found by name, kept until the server ends ---------- */

struct px_target *px_target_get(struct px_server *srv, const struct cfg_hostport *hp)
{
    char label[300];
    bool v6 = strchr(hp->host, ':') != NULL;
    snprintf(label, sizeof(label), v6 ? "[%s]:%u" : "%s:%u", hp->host, hp->port);
    for (size_t i = 0; i < srv->n_targets; i++) {
        if (strcmp(srv->targets[i]->label, label) == 0) {
            return srv->targets[i];
        }
    }
    struct px_target **grown = realloc(srv->targets, (srv->n_targets + 1) * sizeof(*grown));
    if (grown == NULL) {
        return NULL;
    }
    srv->targets = grown;
    struct px_target *t = calloc(1, sizeof(*t));
    unsigned n_workers = srv->boot_cfg->workers;
    if (t != NULL) {
        t->stats = calloc(n_workers, sizeof(*t->stats));
        t->host = strdup(hp->host);
    }
    if (t == NULL || t->stats == NULL || t->host == NULL) {
        if (t != NULL) {
            free(t->stats);
            free(t->host);
        }
        free(t);
        return NULL;
    }
    t->id = (unsigned)srv->n_targets;
    t->port = hp->port;
    t->srv = srv;
    memcpy(t->label, label, sizeof(label));
    pthread_mutex_init(&t->lock, NULL);
    uv_timer_init(srv->loop, &t->resolve_timer);
    t->resolve_timer.data = t;
    uv_timer_init(srv->loop, &t->check_timer);
    t->check_timer.data = t;
    px_target_literal(t);
    srv->targets[srv->n_targets++] = t;
    return t;
}

void px_targets_free(struct px_server *srv)
{
    for (size_t i = 0; i < srv->n_targets; i++) {
        struct px_target *t = srv->targets[i];
        px_addrs_unref(t->addrs);
        pthread_mutex_destroy(&t->lock);
        free(t->host);
        free(t->stats);
        free(t);
    }
    free(srv->targets);
    srv->targets = NULL;
    srv->n_targets = 0;
}

struct px_site_stats *px_site_stats_get(struct px_server *srv, const char *name)
{
    for (struct px_site_stats *s = srv->site_stats; s != NULL; s = s->next) {
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    struct px_site_stats *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->w = calloc(srv->boot_cfg->workers, sizeof(*s->w));
    if (s->w == NULL) {
        free(s);
        return NULL;
    }
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->next = srv->site_stats;
    srv->site_stats = s;
    return s;
}

void px_site_stats_free(struct px_server *srv)
{
    while (srv->site_stats != NULL) {
        struct px_site_stats *s = srv->site_stats;
        srv->site_stats = s->next;
        free(s->w);
        free(s);
    }
}

/* ---- listen sockets ------------------------------------------------------------------ */

static void do_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) != 0) {
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss);
    }
}

static uint16_t do_port(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                     : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* One listening socket; SO_REUSEPORT lets each worker own one on the same address so the
 * kernel spreads connections. Returns the descriptor or a negative errno. */
static int do_socket(const struct sockaddr_storage *ss)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 1024) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static void do_close_fds(struct px_lsock *ls)
{
    for (unsigned i = 0; i < ls->n_fds; i++) {
        int fd = atomic_exchange(&ls->fds[i], -1);
        if (fd >= 0) {
            close(fd);
        }
    }
}

/* Closes whatever no worker took and frees it; the caller unlinked it or never linked it. */
static void do_lsock_free(struct px_lsock *ls)
{
    do_close_fds(ls);
    free(ls->fds);
    free(ls);
}

/* Binds one configured address for every worker. Port 0 means any free port: the first
 * socket gets one and the others share it. An empty host is every address: IPv6 and IPv4
 * when the machine has IPv6, IPv4 alone otherwise. */
static struct px_lsock *do_lsock_bind(struct px_server *srv, const struct cfg_hostport *hp,
                                      bool tls, const char *key, char *err, size_t errlen)
{
    unsigned n = srv->boot_cfg->workers;
    struct px_lsock *ls = calloc(1, sizeof(*ls));
    atomic_int *fds = calloc(n, sizeof(*fds));
    if (ls == NULL || fds == NULL) {
        free(ls);
        free(fds);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ls->fds = fds;
    ls->n_fds = n;
    ls->tls = tls;
    snprintf(ls->key, sizeof(ls->key), "%s", key);
    for (unsigned i = 0; i < n; i++) {
        atomic_init(&ls->fds[i], -1);
    }
    struct sockaddr_storage ss;
    do_sockaddr(hp->host[0] != '\0' ? hp->host : "::", hp->port, &ss);
    for (unsigned i = 0; i < n; i++) {
        int fd = do_socket(&ss);
        if (fd < 0 && i == 0 && hp->host[0] == '\0') {
            do_sockaddr("0.0.0.0", hp->port, &ss); /* no IPv6 here */
            fd = do_socket(&ss);
        }
        if (fd < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", key, strerror(-fd));
            do_lsock_free(ls);
            return NULL;
        }
        atomic_store(&ls->fds[i], fd);
        if (i == 0) {
            socklen_t len = sizeof(ss);
            getsockname(fd, (struct sockaddr *)&ss, &len);
        }
    }
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ls->addr, sizeof(ls->addr));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ls->addr, sizeof(ls->addr));
    }
    ls->port = do_port(&ss);
    ls->next = srv->lsocks;
    srv->lsocks = ls;
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "listening");
    log_str(&l, "address", ls->addr);
    log_int(&l, "port", ls->port);
    log_str(&l, "protocol", tls ? "https" : "http");
    log_int(&l, "workers", n);
    log_end(&l);
    return ls;
}

static struct px_lsock *do_find(const struct px_gen *g, const char *key)
{
    for (size_t i = 0; g != NULL && i < g->n_lsocks; i++) {
        if (strcmp(g->lsocks[i]->key, key) == 0) {
            return g->lsocks[i];
        }
    }
    return NULL;
}

bool px_gen_names(const struct px_gen *g, const struct px_lsock *ls)
{
    for (size_t i = 0; i < g->n_lsocks; i++) {
        if (g->lsocks[i] == ls) {
            return true;
        }
    }
    return false;
}

static void do_unlink_lsock(struct px_server *srv, struct px_lsock *ls)
{
    for (struct px_lsock **p = &srv->lsocks; *p != NULL; p = &(*p)->next) {
        if (*p == ls) {
            *p = ls->next;
            return;
        }
    }
}

/* Listeners the new config names: kept when the current generation has the same address,
 * bound otherwise. On failure the ones bound here are closed again. */
static int do_lsocks(struct px_server *srv, struct px_gen *g, const struct px_gen *cur,
                     char *err, size_t errlen)
{
    const struct cfg *cfg = g->cfg;
    size_t total = cfg->n_https_listen + cfg->n_http_listen;
    g->lsocks = calloc(total > 0 ? total : 1, sizeof(*g->lsocks));
    if (g->lsocks == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < total; i++) {
        bool tls = i < cfg->n_https_listen;
        const struct cfg_hostport *hp =
            tls ? &cfg->https_listen[i] : &cfg->http_listen[i - cfg->n_https_listen];
        char key[300];
        bool v6 = strchr(hp->host, ':') != NULL;
        snprintf(key, sizeof(key), v6 ? "%s [%s]:%u" : "%s %s:%u", tls ? "https" : "http",
                 hp->host, hp->port);
        struct px_lsock *ls = do_find(cur, key);
        if (ls == NULL) {
            ls = do_lsock_bind(srv, hp, tls, key, err, errlen);
        }
        if (ls == NULL) {
            for (size_t k = 0; k < g->n_lsocks; k++) {
                if (cur == NULL || !px_gen_names(cur, g->lsocks[k])) {
                    do_unlink_lsock(srv, g->lsocks[k]);
                    do_lsock_free(g->lsocks[k]);
                }
            }
            g->n_lsocks = 0;
            return -1;
        }
        g->lsocks[g->n_lsocks++] = ls;
        if (tls && g->https_port == 0) {
            g->https_port = ls->port;
        }
    }
    return 0;
}

struct px_gen *px_gen_new(struct px_server *srv, struct cfg *cfg, const struct px_gen *cur,
                          char *err, size_t errlen)
{
    struct px_gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        cfg_free(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&g->refs, 1);
    g->cfg = cfg;
    g->id = cur != NULL ? cur->id + 1 : 1;
    g->router = px_router_new(cfg, srv);
    if (g->router == NULL) {
        snprintf(err, errlen, "out of memory");
        px_gen_unref(g);
        return NULL;
    }
    g->n_targets = srv->n_targets;
    if (do_lsocks(srv, g, cur, err, errlen) != 0) {
        px_gen_unref(g);
        return NULL;
    }
    return g;
}

void px_gen_close_dropped(struct px_server *srv, const struct px_gen *old,
                          const struct px_gen *gen)
{
    (void)srv;
    for (size_t i = 0; old != NULL && i < old->n_lsocks; i++) {
        if (!px_gen_names(gen, old->lsocks[i])) {
            do_close_fds(old->lsocks[i]);
        }
    }
}

void px_lsocks_free(struct px_server *srv)
{
    while (srv->lsocks != NULL) {
        struct px_lsock *ls = srv->lsocks;
        srv->lsocks = ls->next;
        do_lsock_free(ls);
    }
}
