/* sites.c - loads the "sites" section of the JSON config: each site's hosts and
 * certificate, its routes, and each route's upstreams, balancing, health_check and
 * passive_health. It is apart from config.c because sites are the one nested, repeated
 * part of the config (sites holding routes holding upstreams and health settings, with a
 * site's "upstreams" as shorthand for a route at "/"), while config.c keeps the flat
 * top-level sections, reading the file and freeing the whole cfg; it runs after
 * "on_demand", which decides which hosts an ACME site may have. Like the rest of the
 * loader it reports every problem and leaves failed entries as NULL (or zero) holes.
 */
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

#define HEALTH_MIN_INTERVAL_MS 100
#define HEALTH_DEFAULT_MAX_FAILS 3
#define HEALTH_MAX_FAILS 1000

static void do_get_balance(struct cfg_loader *ld, const cJSON *v, const char *path,
                           enum cfg_balance *out)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : "";

    if (strcmp(s, "round_robin") == 0) {
        *out = CFG_BALANCE_ROUND_ROBIN;
    } else if (strcmp(s, "least_conn") == 0) {
        *out = CFG_BALANCE_LEAST_CONN;
    } else {
        cfg_json_expected(ld, path, "expected \"round_robin\" or \"least_conn\"", v);
    }
}

static void do_load_upstreams(struct cfg_loader *ld, const cJSON *v, const char *path,
                              struct cfg_route *r)
{
    char sub[CFG_PATH_MAX];
    int n = cfg_json_array(ld, v, path, true);

    if (n <= 0) {
        return;
    }
    r->upstreams = calloc((size_t)n, sizeof(*r->upstreams));
    if (r->upstreams == NULL) {
        cfg_json_oom(ld, path);
        return;
    }
    r->n_upstreams = (size_t)n;
    const cJSON *item = v->child;
    for (int i = 0; i < n; i++, item = item->next) {
        const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
        const char *why = cfg_check_upstream(s, &r->upstreams[i]);
        if (why != NULL) {
            cfg_json_index_path(sub, sizeof(sub), path, (size_t)i);
            cfg_json_expected(ld, sub, why, item);
        }
    }
}

/* "health_check": active checks, on as soon as the object names a path. */
static void do_load_health_check(struct cfg_loader *ld, const cJSON *v, const char *path,
                                 struct cfg_health *h)
{
    static const char *const keys[] = {"path",          "interval", "timeout",
                                       "expect_status", "host",     NULL};
    char sub[CFG_PATH_MAX];
    uint64_t n;

    if (!cfg_json_object(ld, v, path, keys)) {
        return;
    }
    const cJSON *item = cfg_json_get(v, "path");
    const char *why = cfg_check_health_path(cJSON_IsString(item) ? item->valuestring : NULL);
    cfg_json_key_path(sub, sizeof(sub), path, "path");
    if (why != NULL) {
        cfg_json_expected(ld, sub, why, item);
    } else {
        h->path = cfg_json_string(ld, item, sub, "expected a path");
    }
    item = cfg_json_get(v, "interval");
    cfg_json_key_path(sub, sizeof(sub), path, "interval");
    /* Faster checks would mostly load the upstreams they are meant to watch. */
    if (item != NULL && cfg_json_duration(ld, item, sub, &n)) {
        if (n < HEALTH_MIN_INTERVAL_MS) {
            cfg_json_expected(ld, sub, "expected a duration of at least 100ms", item);
        } else {
            h->interval_ms = n;
        }
    }
    item = cfg_json_get(v, "timeout");
    cfg_json_key_path(sub, sizeof(sub), path, "timeout");
    if (item != NULL) {
        cfg_json_duration(ld, item, sub, &h->timeout_ms);
    }
    item = cfg_json_get(v, "expect_status");
    cfg_json_key_path(sub, sizeof(sub), path, "expect_status");
    if (item != NULL && cfg_json_uint(ld, item, sub, 100, 599, &n)) {
        h->expect_status = (int)n;
    }
    item = cfg_json_get(v, "host");
    cfg_json_key_path(sub, sizeof(sub), path, "host");
    if (item != NULL) {
        why = cfg_check_health_host(cJSON_IsString(item) ? item->valuestring : NULL);
        if (why != NULL) {
            cfg_json_expected(ld, sub, why, item);
        } else {
            h->host = cfg_json_string(ld, item, sub, "expected a host name");
        }
    }
}

/* "passive_health": the object given, even empty, turns passive checks on. */
static void do_load_passive_health(struct cfg_loader *ld, const cJSON *v, const char *path,
                                   struct cfg_health *h)
{
    static const char *const keys[] = {"max_fails", "fail_window", "fail_duration", NULL};
    char sub[CFG_PATH_MAX];
    uint64_t n;

    if (!cfg_json_object(ld, v, path, keys)) {
        return;
    }
    h->max_fails = HEALTH_DEFAULT_MAX_FAILS;
    const cJSON *item = cfg_json_get(v, "max_fails");
    cfg_json_key_path(sub, sizeof(sub), path, "max_fails");
    if (item != NULL && cfg_json_uint(ld, item, sub, 1, HEALTH_MAX_FAILS, &n)) {
        h->max_fails = (unsigned)n;
    }
    item = cfg_json_get(v, "fail_window");
    cfg_json_key_path(sub, sizeof(sub), path, "fail_window");
    if (item != NULL) {
        cfg_json_duration(ld, item, sub, &h->fail_window_ms);
    }
    item = cfg_json_get(v, "fail_duration");
    cfg_json_key_path(sub, sizeof(sub), path, "fail_duration");
    if (item != NULL) {
        cfg_json_duration(ld, item, sub, &h->fail_duration_ms);
    }
}

/* The health keys of obj, a route or (for the shorthand route) a site, at path parent. */
static void do_load_health(struct cfg_loader *ld, const cJSON *obj, const char *parent,
                           struct cfg_health *h)
{
    char sub[CFG_PATH_MAX];
    const cJSON *item = cfg_json_get(obj, "health_check");

    if (item != NULL) {
        cfg_json_key_path(sub, sizeof(sub), parent, "health_check");
        do_load_health_check(ld, item, sub, h);
    }
    item = cfg_json_get(obj, "passive_health");
    if (item != NULL) {
        cfg_json_key_path(sub, sizeof(sub), parent, "passive_health");
        do_load_passive_health(ld, item, sub, h);
    }
}

static void do_load_route(struct cfg_loader *ld, const cJSON *v, const char *path,
                          struct cfg_route *r)
{
    static const char *const keys[] = {"path",         "upstreams",      "balancing",
                                       "health_check", "passive_health", NULL};
    char sub[CFG_PATH_MAX];

    if (!cfg_json_object(ld, v, path, keys)) {
        return;
    }
    const cJSON *item = cfg_json_get(v, "path");
    cfg_json_key_path(sub, sizeof(sub), path, "path");
    if (cJSON_IsString(item) && item->valuestring[0] == '/') {
        r->path_prefix = cfg_strdup(item->valuestring);
        if (r->path_prefix == NULL) {
            cfg_json_oom(ld, sub);
        }
    } else {
        cfg_json_expected(ld, sub, "expected a path starting with \"/\"", item);
    }
    cfg_json_key_path(sub, sizeof(sub), path, "upstreams");
    do_load_upstreams(ld, cfg_json_get(v, "upstreams"), sub, r);
    item = cfg_json_get(v, "balancing");
    if (item != NULL) {
        cfg_json_key_path(sub, sizeof(sub), path, "balancing");
        do_get_balance(ld, item, sub, &r->balance);
    }
    do_load_health(ld, v, path, &r->health);
}

/* The listed routes, in order; n routes were allocated and the first n_listed come from
 * the JSON array. Two routes for one path would make "longest prefix wins" ambiguous. */
static void do_load_listed_routes(struct cfg_loader *ld, const cJSON *v, const char *path,
                                  struct cfg_site *site, size_t n_listed)
{
    char sub[CFG_PATH_MAX], q[CFG_QUOTE_MAX];

    const cJSON *item = n_listed > 0 ? v->child : NULL;
    for (size_t j = 0; j < n_listed; j++, item = item->next) {
        struct cfg_route *r = &site->routes[j];
        cfg_json_index_path(sub, sizeof(sub), path, j);
        do_load_route(ld, item, sub, r);
        for (size_t k = 0; r->path_prefix != NULL && k < j; k++) {
            const char *other = site->routes[k].path_prefix;
            if (other != NULL && strcmp(other, r->path_prefix) == 0) {
                cfg_quote(q, sizeof(q), r->path_prefix);
                cfg_errs_add(ld->e, sub, "%s is already routed by %s[%zu]", q, path, k);
                break;
            }
        }
    }
}

/* "upstreams" is shorthand for a route at "/", added after the listed routes. */
static void do_load_shorthand(struct cfg_loader *ld, const cJSON *site_v, const char *path,
                              struct cfg_site *site, size_t n_listed)
{
    char sub[CFG_PATH_MAX];
    struct cfg_route *r = &site->routes[n_listed];

    cfg_json_key_path(sub, sizeof(sub), path, "upstreams");
    for (size_t k = 0; k < n_listed; k++) {
        const char *other = site->routes[k].path_prefix;
        if (other != NULL && strcmp(other, "/") == 0) {
            cfg_errs_add(ld->e, sub, "conflicts with the route for \"/\"");
            break;
        }
    }
    r->path_prefix = cfg_strdup("/");
    if (r->path_prefix == NULL) {
        cfg_json_oom(ld, sub);
    }
    do_load_upstreams(ld, cfg_json_get(site_v, "upstreams"), sub, r);
    const cJSON *bal = cfg_json_get(site_v, "balancing");
    if (bal != NULL) {
        cfg_json_key_path(sub, sizeof(sub), path, "balancing");
        do_get_balance(ld, bal, sub, &r->balance);
    }
    do_load_health(ld, site_v, path, &r->health);
}

static void do_load_site_routes(struct cfg_loader *ld, const cJSON *v, const char *path,
                                struct cfg_site *site)
{
    const cJSON *routes = cfg_json_get(v, "routes");
    const cJSON *ups = cfg_json_get(v, "upstreams");
    char sub[CFG_PATH_MAX];
    int n_listed = 0;

    if (routes == NULL && ups == NULL) {
        cfg_errs_add(ld->e, path, "expected \"upstreams\" or \"routes\"");
        return;
    }
    if (routes != NULL) {
        cfg_json_key_path(sub, sizeof(sub), path, "routes");
        n_listed = cfg_json_array(ld, routes, sub, true);
        n_listed = n_listed < 0 ? 0 : n_listed;
    }
    /* The route settings a site may hold for its shorthand route. */
    static const char *const route_keys[] = {"balancing", "health_check", "passive_health"};
    for (size_t k = 0; ups == NULL && k < sizeof(route_keys) / sizeof(route_keys[0]); k++) {
        if (cfg_json_get(v, route_keys[k]) != NULL) {
            cfg_json_key_path(sub, sizeof(sub), path, route_keys[k]);
            cfg_errs_add(ld->e, sub, "applies only with \"upstreams\"; set it in each route");
        }
    }
    size_t total = (size_t)n_listed + (ups != NULL ? 1 : 0);
    if (total == 0) {
        return;
    }
    site->routes = calloc(total, sizeof(*site->routes));
    if (site->routes == NULL) {
        cfg_json_oom(ld, path);
        return;
    }
    site->n_routes = total;
    for (size_t j = 0; j < total; j++) {
        cfg_health_set_defaults(&site->routes[j].health);
    }
    cfg_json_key_path(sub, sizeof(sub), path, "routes");
    do_load_listed_routes(ld, routes, sub, site, (size_t)n_listed);
    if (ups != NULL) {
        do_load_shorthand(ld, v, path, site, (size_t)n_listed);
    }
}

static void do_load_hosts(struct cfg_loader *ld, const cJSON *v, const char *path,
                          struct cfg_site *site)
{
    char sub[CFG_PATH_MAX];
    int n = cfg_json_array(ld, v, path, true);

    if (n <= 0) {
        return;
    }
    site->hosts = calloc((size_t)n, sizeof(*site->hosts));
    if (site->hosts == NULL) {
        cfg_json_oom(ld, path);
        return;
    }
    site->n_hosts = (size_t)n;
    const cJSON *item = v->child;
    for (int i = 0; i < n; i++, item = item->next) {
        cfg_json_index_path(sub, sizeof(sub), path, (size_t)i);
        if (!cJSON_IsString(item)) {
            cfg_json_expected(ld, sub, cfg_check_site_host(NULL), item);
            continue;
        }
        site->hosts[i] = cfg_strdup(item->valuestring);
        if (site->hosts[i] == NULL) {
            cfg_json_oom(ld, sub);
        }
    }
}

static void do_load_cert(struct cfg_loader *ld, const cJSON *v, const char *path,
                         struct cfg_site *site)
{
    static const char *const keys[] = {"cert", "key", NULL};
    static const char expected[] = "expected an object with \"cert\" and \"key\" file paths";
    char sub[CFG_PATH_MAX];

    /* No "certificate" at all: the certificate comes from ACME. */
    if (v == NULL) {
        return;
    }
    if (!cJSON_IsObject(v) || cfg_json_get(v, "cert") == NULL || cfg_json_get(v, "key") == NULL) {
        cfg_json_expected(ld, path, expected, v);
    }
    if (!cJSON_IsObject(v)) {
        return;
    }
    cfg_json_check_keys(ld, v, path, keys);
    if (cfg_json_get(v, "cert") != NULL) {
        cfg_json_key_path(sub, sizeof(sub), path, "cert");
        site->cert.cert_file =
            cfg_json_path(ld, cfg_json_get(v, "cert"), sub, "expected a file path");
    }
    if (cfg_json_get(v, "key") != NULL) {
        cfg_json_key_path(sub, sizeof(sub), path, "key");
        site->cert.key_file =
            cfg_json_path(ld, cfg_json_get(v, "key"), sub, "expected a file path");
    }
}

static void do_load_site(struct cfg_loader *ld, const cJSON *v, size_t i)
{
    static const char *const keys[] = {"hosts",  "certificate",  "upstreams",      "balancing",
                                       "routes", "health_check", "passive_health", NULL};
    struct cfg_site *site = &ld->cfg->sites[i];
    char path[CFG_PATH_MAX], hosts[CFG_PATH_MAX], cert_obj[CFG_PATH_MAX];
    char cert[CFG_PATH_MAX], key[CFG_PATH_MAX];

    cfg_json_index_path(path, sizeof(path), "sites", i);
    if (!cfg_json_object(ld, v, path, keys)) {
        return;
    }
    cfg_json_key_path(hosts, sizeof(hosts), path, "hosts");
    do_load_hosts(ld, cfg_json_get(v, "hosts"), hosts, site);
    cfg_json_key_path(cert_obj, sizeof(cert_obj), path, "certificate");
    do_load_cert(ld, cfg_json_get(v, "certificate"), cert_obj, site);
    do_load_site_routes(ld, v, path, site);

    cfg_json_key_path(cert, sizeof(cert), cert_obj, "cert");
    cfg_json_key_path(key, sizeof(key), cert_obj, "key");
    struct cfg_site_where where = {.hosts = hosts,
                                   .index_hosts = true,
                                   .cert = cert,
                                   .key = key,
                                   .acme = cfg_json_get(v, "certificate") == NULL,
                                   .cert_hint = "a \"certificate\"",
                                   .ask_hint = "on_demand.ask"};
    cfg_check_site(ld->cfg, i, &where, ld->e);
}

void cfg_load_sites(struct cfg_loader *ld, const cJSON *v)
{
    int n = cfg_json_array(ld, v, "sites", true);

    if (n <= 0) {
        return;
    }
    ld->cfg->sites = calloc((size_t)n, sizeof(struct cfg_site));
    if (ld->cfg->sites == NULL) {
        cfg_json_oom(ld, "sites");
        return;
    }
    ld->cfg->n_sites = (size_t)n;
    const cJSON *item = v->child;
    for (int i = 0; i < n; i++, item = item->next) {
        do_load_site(ld, item, (size_t)i);
    }
}

static void do_free_route(struct cfg_route *r)
{
    free(r->path_prefix);
    for (size_t i = 0; i < r->n_upstreams; i++) {
        free(r->upstreams[i].host);
    }
    free(r->upstreams);
    cfg_health_dispose(&r->health);
}

void cfg_site_dispose(struct cfg_site *site)
{
    for (size_t i = 0; i < site->n_hosts; i++) {
        free(site->hosts[i]);
    }
    free(site->hosts);
    free(site->cert.cert_file);
    free(site->cert.key_file);
    for (size_t i = 0; i < site->n_routes; i++) {
        do_free_route(&site->routes[i]);
    }
    free(site->routes);
}
