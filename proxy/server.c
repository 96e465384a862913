/* server.c - the control thread: start-up from a config, workers, signals (reload, log
 * reopening, drain), ticket key rotation, and the graceful drain on SIGTERM/SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "proxy_int.h"

/* Loads every certificate file of a config, all or nothing, so a reload with a broken
 * file changes nothing. certs[i] belongs to cfg->sites[i] (NULL for ACME sites). */
int px_certs_load(const struct cfg *cfg, struct tls_cert ***out, char *err, size_t errlen)
{
    struct tls_cert **certs = calloc(cfg->n_sites > 0 ? cfg->n_sites : 1, sizeof(*certs));
    if (certs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const struct cfg_site *s = &cfg->sites[i];
        if (s->cert.cert_file == NULL) {
            continue;
        }
        char why[400];
        certs[i] = tls_cert_load_pem(s->cert.cert_file, s->cert.key_file, why, sizeof(why));
        if (certs[i] == NULL) {
            snprintf(err, errlen, "sites[%zu].certificate: %s", i, why);
            px_certs_free(cfg->n_sites, certs);
            return -1;
        }
    }
    *out = certs;
    return 0;
}

void px_certs_free(size_t n_sites, struct tls_cert **certs)
{
    for (size_t i = 0; certs != NULL && i < n_sites; i++) {
        tls_cert_unref(certs[i]);
    }
    free(certs);
}

/* Puts loaded certificates in the store under their sites' names. */
void px_certs_install(struct px_server *srv, const struct cfg *cfg, struct tls_cert **certs)
{
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const struct cfg_site *s = &cfg->sites[i];
        if (certs[i] == NULL) {
            continue;
        }
        for (size_t j = 0; j < s->n_hosts; j++) {
            tls_store_put(srv->store, s->hosts[j], certs[i]);
        }
        struct log_line l;
        log_begin(&l, CFG_LOG_INFO, "certificate_loaded");
        log_str(&l, "file", s->cert.cert_file);
        log_int(&l, "names", (int64_t)s->n_hosts);
        log_int(&l, "not_after", tls_cert_not_after(certs[i]));
        log_end(&l);
    }
}

/* The exact names of a site without certificate files, managed by ACME from now on. */
int px_acme_manage_site(struct px_server *srv, const struct cfg_site *s)
{
    const char *exact[64];
    size_t n = 0;
    for (size_t j = 0; j < s->n_hosts && n < 64; j++) {
        if (strchr(s->hosts[j], '*') == NULL) {
            exact[n++] = s->hosts[j];
        }
    }
    return n > 0 ? acme_mgr_manage(srv->acme, exact, n) : 0;
}

/* Sites without certificate files get theirs from the ACME CA: their exact names at
 * start, their other names (wildcards, "*") at the first handshake when on-demand is on. */
static int do_setup_acme(struct px_server *srv, char *err, size_t errlen)
{
    const struct cfg *cfg = srv->boot_cfg;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const struct cfg_site *s = &cfg->sites[i];
        if (s->cert.cert_file != NULL) {
            continue;
        }
        if (srv->acme == NULL) {
            srv->acme = acme_mgr_new(srv->loop, &cfg->acme, srv->store, srv->tls, err, errlen);
            if (srv->acme == NULL) {
                return -1;
            }
        }
        if (px_acme_manage_site(srv, s) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (srv->acme != NULL) {
        if (cfg->on_demand.enabled) {
            acme_mgr_enable_on_demand(srv->acme, &cfg->on_demand);
        }
        tls_server_set_miss_cb(srv->tls, px_on_tls_miss, srv);
        if (px_mailbox_init(srv->loop, &srv->questions, px_bridge_on_questions, srv) != 0) {
            snprintf(err, errlen, "cannot set up the worker mailbox");
            return -1;
        }
        srv->questions_open = true;
    }
    return 0;
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct px_server *srv = t->data;
    log_msg(CFG_LOG_WARN, "drain_timeout", "closing the connections still open");
    for (unsigned i = 0; i < srv->n_workers; i++) {
        px_worker_post(&srv->workers[i], PX_MSG_FORCE);
    }
}

static void do_stop(struct px_server *srv, const char *why)
{
    if (srv->stopping) {
        on_drain_timeout(&srv->drain_timer); /* a second signal: do not wait */
        return;
    }
    srv->stopping = true;
    log_msg(CFG_LOG_INFO, "draining", "%s: no new connections, finishing requests in flight "
           "(up to %llu ms)", why, (unsigned long long)srv->gen->cfg->timeouts.drain);
    uv_timer_stop(&srv->ticket_timer);
    for (unsigned i = 0; i < srv->n_workers; i++) {
        px_worker_post(&srv->workers[i], PX_MSG_DRAIN);
    }
    uv_timer_start(&srv->drain_timer, on_drain_timeout, srv->gen->cfg->timeouts.drain, 0);
    uv_unref((uv_handle_t *)&srv->drain_timer);
}

static void on_signal(uv_signal_t *s, int signum)
{
    do_stop(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_sighup(uv_signal_t *s, int signum)
{
    (void)signum;
    char err[4096];
    if (px_server_reload(s->data, "SIGHUP", err, sizeof(err)) == -2) {
        log_msg(CFG_LOG_WARN, "reload_unsupported", "SIGHUP: %s (still serving)", err);
    }
}

/* logrotate moved the file away: later lines go to a new one at the configured path. */
static void on_sigusr1(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    int rc = log_reopen();
    if (rc != 0) {
        log_msg(CFG_LOG_ERROR, "log_reopen_failed", "%s", strerror(-rc));
        return;
    }
    log_msg(CFG_LOG_INFO, "log_reopened", "SIGUSR1");
}

static void on_rotate_tickets(uv_timer_t *t)
{
    struct px_server *srv = t->data;
    tls_server_rotate_tickets(srv->tls);
    log_msg(CFG_LOG_DEBUG, "tickets_rotated", "new session ticket key");
}

static void on_worker_done(uv_async_t *a)
{
    struct px_server *srv = a->data;
    if (atomic_load(&srv->workers_running) > 0) {
        return;
    }
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
    uv_close((uv_handle_t *)&srv->sig_usr1, NULL);
    uv_close((uv_handle_t *)&srv->ticket_timer, NULL);
    uv_close((uv_handle_t *)&srv->drain_timer, NULL);
    uv_close((uv_handle_t *)&srv->worker_done, NULL);
    px_admin_stop(srv);
    px_health_stop(srv);
    px_resolver_stop(srv);
    acme_dns_free(srv->dns);
    srv->dns = NULL;
    if (srv->questions_open) {
        px_mailbox_close(&srv->questions);
        srv->questions_open = false;
    }
    acme_mgr_free(srv->acme); /* answers to the ended workers are dropped */
    srv->acme = NULL;
}

static void do_init_control(struct px_server *srv)
{
    uv_signal_init(srv->loop, &srv->sig_term);
    uv_signal_init(srv->loop, &srv->sig_int);
    srv->sig_term.data = srv;
    srv->sig_int.data = srv;
    uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv->sig_int, on_signal, SIGINT);
    uv_signal_init(srv->loop, &srv->sig_hup);
    srv->sig_hup.data = srv;
    uv_signal_start(&srv->sig_hup, on_sighup, SIGHUP);
    uv_signal_init(srv->loop, &srv->sig_usr1);
    uv_signal_start(&srv->sig_usr1, on_sigusr1, SIGUSR1);
    uv_timer_init(srv->loop, &srv->ticket_timer);
    uv_timer_init(srv->loop, &srv->drain_timer);
    srv->ticket_timer.data = srv;
    srv->drain_timer.data = srv;
    uv_async_init(srv->loop, &srv->worker_done, on_worker_done);
    srv->worker_done.data = srv;
    if (srv->boot_cfg->tls.session_tickets) {
        uint64_t every = srv->boot_cfg->tls.ticket_rotation_ms;
        uv_timer_start(&srv->ticket_timer, on_rotate_tickets, every, every);
    }
}

static int do_start_workers(struct px_server *srv)
{
    unsigned n = srv->boot_cfg->workers;
    srv->workers = calloc(n, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        return -1;
    }
    srv->n_workers = n;
    for (unsigned i = 0; i < n; i++) {
        struct px_worker *w = &srv->workers[i];
        if (px_worker_init(w, srv, i) != 0) {
            log_msg(CFG_LOG_ERROR, "startup_failed", "worker %u: out of memory", i);
            abort(); /* loops with handles: nothing sane to unwind this early */
        }
        px_worker_give_gen(w, px_gen_ref(srv->gen));
        px_worker_adopt(w);
    }
    atomic_init(&srv->workers_running, (int)n);
    for (unsigned i = 0; i < n; i++) {
        if (px_worker_start(&srv->workers[i]) != 0) {
            log_msg(CFG_LOG_ERROR, "thread_failed", "cannot start worker %u", i);
            abort(); /* earlier workers already run: nothing sane to unwind */
        }
    }
    return 0;
}

/* Everything that needs the privileges moat started with: certificate files (keys may be
 * readable by root alone), the listen sockets and the admin endpoint. */
static int do_setup_privileged(struct px_server *srv, struct cfg *cfg, char *err, size_t errlen)
{
    srv->store = tls_store_new();
    if (srv->store == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct tls_cert **certs;
    if (px_certs_load(cfg, &certs, err, errlen) != 0) {
        cfg_free(cfg);
        return -1;
    }
    px_certs_install(srv, cfg, certs);
    px_certs_free(cfg->n_sites, certs);
    struct tls_server_opts topts = {
        .default_sni = cfg->tls.default_sni,
        .session_tickets = cfg->tls.session_tickets,
        .ticket_rotation_ms = cfg->tls.ticket_rotation_ms,
    };
    srv->tls = tls_server_new(srv->store, &topts, err, errlen);
    if (srv->tls == NULL) {
        cfg_free(cfg);
        return -1;
    }
    srv->gen = px_gen_new(srv, cfg, NULL, err, errlen);
    if (srv->gen == NULL) {
        return -1;
    }
    srv->boot_gen = px_gen_ref(srv->gen);
    return px_admin_start(srv, err, errlen);
}

static int do_setup(struct px_server *srv, char *err, size_t errlen)
{
    if (do_setup_acme(srv, err, errlen) != 0) {
        return -1;
    }
    srv->dns = acme_dns_new(srv->loop);
    if (srv->dns == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *why = acme_dns_error(srv->dns);
    if (why != NULL) {
        log_msg(CFG_LOG_ERROR, "dns_init_failed", "%s", why); /* named upstreams answer 502 */
    }
    px_resolver_start(srv);
    px_resolver_wait(srv, 5000);
    px_health_apply(srv);
    return 0;
}

static void do_teardown(struct px_server *srv)
{
    for (unsigned i = 0; i < srv->n_workers && srv->workers != NULL; i++) {
        px_worker_dispose(&srv->workers[i]);
    }
    free(srv->workers);
    px_gen_unref(srv->gen);
    px_gen_unref(srv->boot_gen);
    px_lsocks_free(srv);
    px_targets_free(srv);
    px_site_stats_free(srv);
    tls_server_free(srv->tls);
    tls_store_free(srv->store);
    log_close_file();
}

int px_server_run(struct cfg *cfg, const char *config_path)
{
    struct px_server srv;
    memset(&srv, 0, sizeof(srv));
    if (cfg->workers == 0) {
        cfg->workers = uv_available_parallelism();
    }
    srv.boot_cfg = cfg;
    srv.config_path = config_path;
    srv.loop = uv_default_loop();
    log_set_level(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    char err[512] = "";
    if (cfg->log_file != NULL && log_open_file(cfg->log_file, err, sizeof(err)) != 0) {
        log_msg(CFG_LOG_ERROR, "startup_failed", "log.file: %s", err);
        cfg_free(cfg);
        uv_loop_close(srv.loop);
        return 1;
    }
    if (do_setup_privileged(&srv, cfg, err, sizeof(err)) != 0 ||
        px_drop_privileges(cfg->user, err, sizeof(err)) != 0 ||
        do_setup(&srv, err, sizeof(err)) != 0) {
        log_msg(CFG_LOG_ERROR, "startup_failed", "%s", err[0] != '\0' ? err : "unknown error");
        srv.stopping = true;
        px_admin_stop(&srv);
        px_health_stop(&srv);
        px_resolver_stop(&srv);
        acme_dns_free(srv.dns);
        if (srv.questions_open) {
            px_mailbox_close(&srv.questions);
        }
        acme_mgr_free(srv.acme);
        uv_run(srv.loop, UV_RUN_DEFAULT);
        do_teardown(&srv);
        uv_loop_close(srv.loop);
        return 1;
    }
    atomic_store(&srv.last_reload_ok, (uint64_t)time(NULL));
    do_start_workers(&srv);
    do_init_control(&srv);
    if (srv.acme != NULL) {
        acme_mgr_start(srv.acme);
    }
    log_msg(CFG_LOG_INFO, "ready", "moat %s serving %zu site(s) with %u worker(s)", MOAT_VERSION,
           cfg->n_sites, srv.n_workers);
    uv_run(srv.loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < srv.n_workers; i++) {
        uv_thread_join(&srv.workers[i].thread);
    }
    do_teardown(&srv);
    int rc = uv_loop_close(srv.loop);
    log_msg(CFG_LOG_INFO, "stopped", "%s", rc == 0 ? "clean exit" : "control loop not empty");
    return 0;
}
