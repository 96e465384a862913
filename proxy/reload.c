/* reload.c - re-reading the config file while serving (SIGHUP, POST /reload).
 *
 * Everything that can fail happens before anything changes: the file is parsed and
 * validated, certificate files are loaded, the router is built and new listen sockets are
 * bound. Only then is the new generation handed to the workers. A connection keeps the
 * generation it holds until its next request, so requests in flight and tunnels finish on
 * the config they started with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "proxy_int.h"

static bool do_str_differs(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a != b;
    }
    return strcmp(a, b) != 0;
}

static bool do_list_differs(char **a, size_t na, char **b, size_t nb)
{
    if (na != nb) {
        return true;
    }
    for (size_t i = 0; i < na; i++) {
        if (do_str_differs(a[i], b[i])) {
            return true;
        }
    }
    return false;
}

static bool do_acme_differs(const struct cfg_acme *a, const struct cfg_acme *b)
{
    return do_str_differs(a->ca, b->ca) || do_str_differs(a->ca_root, b->ca_root) ||
           do_str_differs(a->email, b->email) || do_str_differs(a->eab_kid, b->eab_kid) ||
           do_str_differs(a->eab_hmac_key, b->eab_hmac_key) ||
           a->n_challenges != b->n_challenges ||
           memcmp(a->challenges, b->challenges, a->n_challenges * sizeof(a->challenges[0])) != 0 ||
           a->key_type != b->key_type || do_str_differs(a->storage, b->storage) ||
           a->renew_window != b->renew_window || a->retry_initial_ms != b->retry_initial_ms ||
           a->retry_max_ms != b->retry_max_ms;
}

static bool do_on_demand_differs(const struct cfg_on_demand *a, const struct cfg_on_demand *b)
{
    return a->enabled != b->enabled ||
           do_list_differs(a->allow, a->n_allow, b->allow, b->n_allow) ||
           do_str_differs(a->ask, b->ask) || a->timeout_ms != b->timeout_ms ||
           a->ask_cache_ms != b->ask_cache_ms || a->concurrency != b->concurrency ||
           a->cache_size != b->cache_size || a->rate_orders != b->rate_orders ||
           a->rate_per_ms != b->rate_per_ms;
}

/* The keys a running server cannot change: the values it started with stay in force. */
static void do_restart_keys(const struct cfg *boot, const struct cfg *cfg, char *out, size_t cap)
{
    const struct {
        const char *key;
        bool differs;
    } checks[] = {
        {"workers", boot->workers != cfg->workers},
        {"acme", do_acme_differs(&boot->acme, &cfg->acme)},
        {"on_demand", do_on_demand_differs(&boot->on_demand, &cfg->on_demand)},
        {"user", do_str_differs(boot->user, cfg->user)},
        {"log.file", do_str_differs(boot->log_file, cfg->log_file)},
        {"admin", boot->admin.enabled != cfg->admin.enabled ||
                      boot->admin.listen.port != cfg->admin.listen.port ||
                      do_str_differs(boot->admin.listen.host, cfg->admin.listen.host)},
        {"tls", do_str_differs(boot->tls.default_sni, cfg->tls.default_sni) ||
                    boot->tls.session_tickets != cfg->tls.session_tickets ||
                    boot->tls.ticket_rotation_ms != cfg->tls.ticket_rotation_ms},
    };
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        if (checks[i].differs && len + strlen(checks[i].key) + 2 < cap) {
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len > 0 ? "," : "",
                                    checks[i].key);
        }
    }
}

static bool do_has_acme_sites(const struct cfg *cfg)
{
    for (size_t i = 0; i < cfg->n_sites; i++) {
        if (cfg->sites[i].cert.cert_file == NULL) {
            return true;
        }
    }
    return false;
}

static bool do_serves_host(const struct cfg *cfg, const char *host)
{
    for (size_t i = 0; i < cfg->n_sites; i++) {
        for (size_t j = 0; j < cfg->sites[i].n_hosts; j++) {
            if (strcmp(cfg->sites[i].hosts[j], host) == 0) {
                return true;
            }
        }
    }
    return false;
}

/* Names whose certificate came from a file the new config no longer serves leave the
 * store; names of ACME sites stay (the ACME manager owns them). */
static void do_forget_names(struct px_server *srv, const struct cfg *old, const struct cfg *cfg)
{
    for (size_t i = 0; i < old->n_sites; i++) {
        const struct cfg_site *s = &old->sites[i];
        for (size_t j = 0; s->cert.cert_file != NULL && j < s->n_hosts; j++) {
            if (!do_serves_host(cfg, s->hosts[j])) {
                tls_store_remove(srv->store, s->hosts[j]);
            }
        }
    }
}

/* How many of a's listen socket sets b does not name. */
static size_t do_count_new(const struct px_gen *a, const struct px_gen *b)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n_lsocks; i++) {
        n += px_gen_names(b, a->lsocks[i]) ? 0 : 1;
    }
    return n;
}

/* ACME certificates follow the new config: new exact names are ordered, dropped ones are
 * no longer served or renewed. */
static void do_acme_names(struct px_server *srv, const struct cfg *cfg)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const struct cfg_site *s = &cfg->sites[i];
        if (s->cert.cert_file != NULL) {
            continue;
        }
        if (px_acme_manage_site(srv, s) != 0) {
            log_msg(CFG_LOG_ERROR, "acme_manage_failed", "sites[%zu]: out of memory", i);
        }
        n += s->n_hosts;
    }
    const char **names = calloc(n > 0 ? n : 1, sizeof(*names));
    if (names == NULL) {
        return; /* keeping them all is the safe side */
    }
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        for (size_t j = 0; cfg->sites[i].cert.cert_file == NULL && j < cfg->sites[i].n_hosts; j++) {
            names[k++] = cfg->sites[i].hosts[j];
        }
    }
    acme_mgr_retain(srv->acme, names, k);
    free(names);
}

static int do_refuse(struct px_server *srv, const char *why, const char *err)
{
    px_stat_add(&srv->reloads_failed, 1);
    struct log_line l;
    log_begin(&l, CFG_LOG_ERROR, "reload_failed");
    log_str(&l, "trigger", why);
    log_str(&l, "errors", err);
    log_str(&l, "msg", "the configuration in use keeps serving");
    log_end(&l);
    return -1;
}

static void do_commit(struct px_server *srv, struct px_gen *g, struct tls_cert **certs)
{
    struct px_gen *old = srv->gen;
    const struct cfg *cfg = g->cfg;
    px_certs_install(srv, cfg, certs);
    do_forget_names(srv, old->cfg, cfg);
    if (srv->acme != NULL) {
        do_acme_names(srv, cfg);
    }
    log_set_level(cfg->log_level);
    srv->gen = g;
    px_resolver_start(srv);
    px_health_apply(srv);
    for (unsigned i = 0; i < srv->n_workers; i++) {
        px_worker_give_gen(&srv->workers[i], px_gen_ref(g));
        px_worker_post(&srv->workers[i], PX_MSG_GEN);
    }
    px_gen_close_dropped(srv, old, g);
    px_stat_add(&srv->reloads_ok, 1);
    atomic_store(&srv->last_reload_ok, (uint64_t)time(NULL));
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "reloaded");
    log_int(&l, "generation", g->id);
    log_int(&l, "sites", (int64_t)cfg->n_sites);
    log_int(&l, "listeners_added", (int64_t)do_count_new(g, old));
    log_int(&l, "listeners_removed", (int64_t)do_count_new(old, g));
    log_end(&l);
    px_gen_unref(old);
}

int px_server_reload(struct px_server *srv, const char *why, char *err, size_t errlen)
{
    if (srv->config_path == NULL) {
        snprintf(err, errlen, "no config file: started with moat proxy");
        return -2;
    }
    if (srv->stopping) {
        snprintf(err, errlen, "shutting down");
        return do_refuse(srv, why, err);
    }
    log_msg(CFG_LOG_INFO, "reloading", "%s: reading %s", why, srv->config_path);
    struct cfg *cfg = cfg_load_file(srv->config_path, err, errlen);
    if (cfg == NULL) {
        return do_refuse(srv, why, err);
    }
    if (cfg->workers == 0) {
        cfg->workers = uv_available_parallelism();
    }
    if (srv->acme == NULL && do_has_acme_sites(cfg)) {
        snprintf(err, errlen, "sites: a site without \"certificate\" needs a restart, because "
                 "moat started without any and obtaining certificates is set up at start");
        cfg_free(cfg);
        return do_refuse(srv, why, err);
    }
    char keys[128];
    do_restart_keys(srv->boot_cfg, cfg, keys, sizeof(keys));
    struct tls_cert **certs;
    size_t n_sites = cfg->n_sites; /* px_gen_new frees cfg when it fails */
    if (px_certs_load(cfg, &certs, err, errlen) != 0) {
        cfg_free(cfg);
        return do_refuse(srv, why, err);
    }
    struct px_gen *g = px_gen_new(srv, cfg, srv->gen, err, errlen);
    if (g == NULL) {
        px_certs_free(n_sites, certs);
        return do_refuse(srv, why, err);
    }
    if (keys[0] != '\0') {
        struct log_line l;
        log_begin(&l, CFG_LOG_WARN, "reload_restart_required");
        log_str(&l, "keys", keys);
        log_str(&l, "msg", "these keys keep the values moat started with until a restart");
        log_end(&l);
    }
    do_commit(srv, g, certs);
    px_certs_free(n_sites, certs);
    return 0;
}

unsigned px_server_generation(const struct px_server *srv)
{
    return srv->gen != NULL ? srv->gen->id : 0;
}
