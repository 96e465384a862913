/* router.c - sites and routes built from a config, and finding the site and route of a
 * request. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy_int.h"

void px_addrs_unref(struct px_addrs *a)
{
    if (a != NULL && atomic_fetch_sub(&a->refs, 1) == 1) {
        free(a);
    }
}

struct px_addrs *px_target_addrs(struct px_target *t)
{
    pthread_mutex_lock(&t->lock);
    struct px_addrs *a = t->addrs;
    if (a != NULL && a->n > 0) {
        atomic_fetch_add(&a->refs, 1);
    } else {
        a = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    return a;
}

/* An IP literal needs no resolver: its one address is known now. */
void px_target_literal(struct px_target *t)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (uv_ip4_addr(t->host, t->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(t->host, t->port, (struct sockaddr_in6 *)&ss) != 0) {
        return;
    }
    struct px_addrs *a = malloc(sizeof(*a) + sizeof(a->addr[0]));
    if (a == NULL) {
        return;
    }
    atomic_init(&a->refs, 1);
    a->n = 1;
    a->addr[0] = ss;
    t->addrs = a;
    t->literal = true;
}

static int do_cmp_routes(const void *a, const void *b)
{
    const struct px_route *ra = a;
    const struct px_route *rb = b;
    return ra->prefix_len < rb->prefix_len ? 1 : (ra->prefix_len > rb->prefix_len ? -1 : 0);
}

static int do_site(struct px_site *s, const struct cfg_site *cs, struct px_server *srv)
{
    s->hosts = cs->hosts; /* borrowed: the config outlives the router */
    s->n_hosts = cs->n_hosts;
    s->acme = cs->cert.cert_file == NULL;
    s->routes = calloc(cs->n_routes, sizeof(*s->routes));
    if (s->routes == NULL) {
        return -1;
    }
    s->n_routes = cs->n_routes;
    s->stats = px_site_stats_get(srv, cs->hosts[0]);
    if (s->stats == NULL) {
        return -1;
    }
    for (size_t i = 0; i < cs->n_routes; i++) {
        const struct cfg_route *cr = &cs->routes[i];
        struct px_route *rt = &s->routes[i];
        rt->prefix = cr->path_prefix;
        rt->prefix_len = strlen(cr->path_prefix);
        rt->balance = cr->balance;
        rt->health = &cr->health;
        rt->rr = calloc(srv->boot_cfg->workers, sizeof(*rt->rr));
        rt->targets = calloc(cr->n_upstreams, sizeof(*rt->targets));
        if (rt->targets == NULL || rt->rr == NULL) {
            return -1;
        }
        for (size_t j = 0; j < cr->n_upstreams; j++) {
            rt->targets[j] = px_target_get(srv, &cr->upstreams[j]);
            if (rt->targets[j] == NULL) {
                return -1;
            }
            rt->n_targets++;
        }
    }
    qsort(s->routes, s->n_routes, sizeof(*s->routes), do_cmp_routes);
    return 0;
}

struct px_router *px_router_new(const struct cfg *cfg, struct px_server *srv)
{
    struct px_router *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->sites = calloc(cfg->n_sites, sizeof(*r->sites));
    if (r->sites == NULL) {
        free(r);
        return NULL;
    }
    r->n_sites = cfg->n_sites;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        if (do_site(&r->sites[i], &cfg->sites[i], srv) != 0) {
            px_router_free(r);
            return NULL;
        }
    }
    return r;
}

void px_router_free(struct px_router *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < r->n_sites; i++) {
        for (size_t j = 0; j < r->sites[i].n_routes; j++) {
            free(r->sites[i].routes[j].targets);
            free(r->sites[i].routes[j].rr);
        }
        free(r->sites[i].routes);
    }
    free(r->sites);
    free(r);
}

const struct px_site *px_router_site(const struct px_router *r, const char *host, size_t len)
{
    char name[256];
    if (len == 0 || len >= sizeof(name)) {
        return NULL;
    }
    memcpy(name, host, len);
    name[len] = '\0';
    if (name[len - 1] == '.') {
        name[len - 1] = '\0';
    }
    /* Exact names win over "*.x" wildcards, which win over "*", whatever the order. */
    for (int pass = 0; pass < 3; pass++) {
        for (size_t i = 0; i < r->n_sites; i++) {
            const struct px_site *s = &r->sites[i];
            for (size_t j = 0; j < s->n_hosts; j++) {
                const char *h = s->hosts[j];
                int kind = h[0] != '*' ? 0 : (h[1] == '\0' ? 2 : 1);
                if (kind == pass && (kind == 0 ? strcasecmp(h, name) == 0
                                               : cfg_host_match(h, name))) {
                    return s;
                }
            }
        }
    }
    return NULL;
}

const struct px_route *px_site_route(const struct px_site *s, const char *path, size_t len)
{
    for (size_t i = 0; i < s->n_routes; i++) {
        const struct px_route *rt = &s->routes[i];
        if (rt->prefix_len <= len && memcmp(rt->prefix, path, rt->prefix_len) == 0) {
            return rt;
        }
    }
    return NULL;
}
