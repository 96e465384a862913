/* server.c - the control thread: start-up from a config, workers, signals, ticket key
 * rotation, and the graceful drain on SIGTERM/SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

static int do_load_certificates(struct px_server *srv)
{
    const struct cfg *cfg = srv->cfg;
    for (size_t i = 0; i < cfg->n_sites; i++) {
        const struct cfg_site *s = &cfg->sites[i];
        if (s->cert.cert_file == NULL) {
            continue;
        }
        char err[512];
        struct tls_cert *cert = tls_cert_load_pem(s->cert.cert_file, s->cert.key_file, err,
                                                  sizeof(err));
        if (cert == NULL) {
            log_msg(CFG_LOG_ERROR, "certificate_load_failed", "sites[%zu].certificate: %s", i,
                   err);
            return -1;
        }
        for (size_t j = 0; j < s->n_hosts; j++) {
            tls_store_put(srv->store, s->hosts[j], cert);
        }
        struct log_line l;
        log_begin(&l, CFG_LOG_INFO, "certificate_loaded");
        log_str(&l, "file", s->cert.cert_file);
        log_int(&l, "names", (int64_t)s->n_hosts);
        log_int(&l, "not_after", tls_cert_not_after(cert));
        log_end(&l);
        tls_cert_unref(cert);
    }
    return 0;
}

/* Sites without certificate files get theirs from the ACME CA: their exact names at
 * start, their other names (wildcards, "*") at the first handshake when on-demand is on. */
static int do_setup_acme(struct px_server *srv, char *err, size_t errlen)
{
    const struct cfg *cfg = srv->cfg;
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
        const char *exact[64];
        size_t n = 0;
        for (size_t j = 0; j < s->n_hosts && n < 64; j++) {
            if (strchr(s->hosts[j], '*') == NULL) {
                exact[n++] = s->hosts[j];
            }
        }
        if (n > 0 && acme_mgr_manage(srv->acme, exact, n) != 0) {
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

static void do_addr(const struct cfg_hostport *hp, bool v6_any, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    const char *host = hp->host[0] != '\0' ? hp->host : (v6_any ? "::" : "0.0.0.0");
    if (uv_ip4_addr(host, hp->port, (struct sockaddr_in *)ss) != 0) {
        uv_ip6_addr(host, hp->port, (struct sockaddr_in6 *)ss);
    }
}

static uint16_t do_port(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
                                     : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

/* Binds one configured address on every worker. Port 0 means any free port: the first
 * worker gets one and the others share it. */
static int do_bind_all(struct px_server *srv, const struct cfg_hostport *hp, bool tls)
{
    struct sockaddr_storage ss;
    do_addr(hp, true, &ss);
    for (unsigned i = 0; i < srv->n_workers; i++) {
        struct px_worker *w = &srv->workers[i];
        int rc = px_worker_listen(w, (struct sockaddr *)&ss, tls);
        if (rc != 0 && i == 0 && hp->host[0] == '\0' && ss.ss_family == AF_INET6) {
            do_addr(hp, false, &ss); /* no IPv6 here: all IPv4 addresses then */
            rc = px_worker_listen(w, (struct sockaddr *)&ss, tls);
        }
        if (rc != 0) {
            log_msg(CFG_LOG_ERROR, "listen_failed", "%s:%u: %s", hp->host, hp->port,
                   uv_strerror(rc));
            return -1;
        }
        if (i == 0) {
            px_worker_listener_addr(w, w->n_listeners - 1, &ss);
        }
    }
    char name[64] = "";
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, name, sizeof(name));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, name, sizeof(name));
    }
    if (tls && srv->https_port == 0) {
        srv->https_port = do_port(&ss);
    }
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "listening");
    log_str(&l, "address", name);
    log_int(&l, "port", do_port(&ss));
    log_str(&l, "protocol", tls ? "https" : "http");
    log_int(&l, "workers", srv->n_workers);
    log_end(&l);
    return 0;
}

static int do_listen(struct px_server *srv)
{
    for (size_t i = 0; i < srv->cfg->n_https_listen; i++) {
        if (do_bind_all(srv, &srv->cfg->https_listen[i], true) != 0) {
            return -1;
        }
    }
    for (size_t i = 0; i < srv->cfg->n_http_listen; i++) {
        if (do_bind_all(srv, &srv->cfg->http_listen[i], false) != 0) {
            return -1;
        }
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
           "(up to %llu ms)", why, (unsigned long long)srv->cfg->timeouts.drain);
    uv_timer_stop(&srv->ticket_timer);
    for (unsigned i = 0; i < srv->n_workers; i++) {
        px_worker_post(&srv->workers[i], PX_MSG_DRAIN);
    }
    uv_timer_start(&srv->drain_timer, on_drain_timeout, srv->cfg->timeouts.drain, 0);
    uv_unref((uv_handle_t *)&srv->drain_timer);
}

static void on_signal(uv_signal_t *s, int signum)
{
    do_stop(s->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Reloading is not there yet: SIGHUP's default action would kill the server, so say so
 * in the log and keep serving. */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    log_msg(CFG_LOG_WARN, "reload_unsupported", "SIGHUP received: this version cannot reload "
            "its configuration; restart it to apply changes (still serving)");
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
    uv_close((uv_handle_t *)&srv->ticket_timer, NULL);
    uv_close((uv_handle_t *)&srv->drain_timer, NULL);
    uv_close((uv_handle_t *)&srv->worker_done, NULL);
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
    uv_signal_start(&srv->sig_hup, on_sighup, SIGHUP);
    uv_timer_init(srv->loop, &srv->ticket_timer);
    uv_timer_init(srv->loop, &srv->drain_timer);
    srv->ticket_timer.data = srv;
    srv->drain_timer.data = srv;
    uv_async_init(srv->loop, &srv->worker_done, on_worker_done);
    srv->worker_done.data = srv;
    if (srv->cfg->tls.session_tickets) {
        uint64_t every = srv->cfg->tls.ticket_rotation_ms;
        uv_timer_start(&srv->ticket_timer, on_rotate_tickets, every, every);
    }
}

static void on_close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

/* Start-up failed before the threads ran: close what the worker loops hold. */
static void do_abandon_workers(struct px_server *srv, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct px_worker *w = &srv->workers[i];
        uv_walk(&w->loop, on_close_any, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        px_worker_dispose(w);
    }
}

static int do_start_workers(struct px_server *srv)
{
    unsigned n = srv->cfg->workers != 0 ? srv->cfg->workers : uv_available_parallelism();
    srv->n_workers = n;
    srv->workers = calloc(n, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        if (px_worker_init(&srv->workers[i], srv, i) != 0) {
            do_abandon_workers(srv, i + 1);
            return -1;
        }
    }
    if (do_listen(srv) != 0) {
        do_abandon_workers(srv, n);
        return -1;
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

static int do_setup(struct px_server *srv, char *err, size_t errlen)
{
    const struct cfg *cfg = srv->cfg;
    srv->store = tls_store_new();
    if (srv->store == NULL || do_load_certificates(srv) != 0) {
        snprintf(err, errlen, "cannot load certificates");
        return -1;
    }
    struct tls_server_opts topts = {
        .default_sni = cfg->tls.default_sni,
        .session_tickets = cfg->tls.session_tickets,
        .ticket_rotation_ms = cfg->tls.ticket_rotation_ms,
    };
    srv->tls = tls_server_new(srv->store, &topts, err, errlen);
    if (srv->tls == NULL) {
        return -1;
    }
    if (do_setup_acme(srv, err, errlen) != 0) {
        return -1;
    }
    srv->router = px_router_new(cfg, srv);
    if (srv->router == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    srv->dns = acme_dns_new(srv->loop);
    if (srv->dns == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    px_resolver_start(srv);
    px_resolver_wait(srv, 5000);
    return 0;
}

static void do_teardown(struct px_server *srv)
{
    for (unsigned i = 0; i < srv->n_workers && srv->workers != NULL; i++) {
        px_worker_dispose(&srv->workers[i]);
    }
    free(srv->workers);
    px_router_free(srv->router);
    tls_server_free(srv->tls);
    tls_store_free(srv->store);
}

int px_server_run(struct cfg *cfg)
{
    struct px_server srv;
    memset(&srv, 0, sizeof(srv));
    srv.cfg = cfg;
    srv.loop = uv_default_loop();
    log_set_level(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    char err[512] = "";
    if (do_setup(&srv, err, sizeof(err)) != 0 || do_start_workers(&srv) != 0) {
        if (err[0] != '\0') {
            log_msg(CFG_LOG_ERROR, "startup_failed", "%s", err);
        }
        srv.n_workers = 0; /* abandoned workers are already disposed */
        if (srv.router != NULL) {
            srv.stopping = true;
            px_resolver_stop(&srv);
        }
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
