/* mgr.c - the certificate manager object: sites, the challenge answers it publishes (in
 * memory for its workers, in storage for other instances), shutdown, and the storage
 * listing behind `moat certs list`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "manager_int.h"

static const char *const challenge_names[] = {"tls-alpn-01", "http-01"};

/* ---- challenge answers ------------------------------------------------------------------ */

static void do_write_challenge(struct acme_mgr *m, enum cfg_challenge type, const char *name,
                               const char *token, const char *ka)
{
    char path[1024];
    if (acme_storage_challenge_path(name, path, sizeof(path)) != 0) {
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "type", challenge_names[type]);
    cJSON_AddStringToObject(doc, "name", name);
    cJSON_AddStringToObject(doc, "token", token);
    cJSON_AddStringToObject(doc, "key_authorization", ka);
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (text == NULL || acme_storage_write(m->st, path, text, strlen(text), 0644) != 0) {
        log_msg(CFG_LOG_WARN, "acme_challenge_not_shared", "%s: cannot write %s: only this "
                "instance can answer the CA", name, path);
    }
    free(text);
}

static int do_add_http01(struct acme_mgr *m, const char *name, const char *token, const char *ka)
{
    struct acme_http01 e = {strdup(token), strdup(ka), strdup(name)};
    pthread_mutex_lock(&m->http01_lock);
    struct acme_http01 *grown = realloc(m->http01, (m->n_http01 + 1) * sizeof(*grown));
    bool ok = grown != NULL && e.token != NULL && e.key_authorization != NULL && e.name != NULL;
    if (grown != NULL) {
        m->http01 = grown;
    }
    if (ok) {
        m->http01[m->n_http01++] = e;
    }
    pthread_mutex_unlock(&m->http01_lock);
    if (!ok) {
        free(e.token);
        free(e.key_authorization);
        free(e.name);
        return -1;
    }
    return 0;
}

/* Makes the answer reachable here: the HTTP-01 table or a TLS-ALPN-01 certificate. */
static int do_install_answer(struct acme_mgr *m, enum cfg_challenge type, const char *name,
                             const char *token, const char *ka, bool shared)
{
    if (type == CFG_CHALLENGE_HTTP_01) {
        return do_add_http01(m, name, token, ka);
    }
    char err[256];
    struct tls_cert *cert = acme_alpn_cert(name, ka, err, sizeof(err));
    if (cert == NULL) {
        log_msg(CFG_LOG_ERROR, "acme_alpn_cert_failed", "%s: %s", name, err);
        return -1;
    }
    int rc = shared ? tls_server_set_shared_challenge(m->srv, name, cert)
                    : tls_server_set_challenge(m->srv, name, cert);
    tls_cert_unref(cert);
    return rc;
}

static int on_present(void *arg, enum cfg_challenge type, const char *name, const char *token,
                      const char *ka)
{
    struct acme_mgr *m = arg;
    do_write_challenge(m, type, name, token, ka);
    return do_install_answer(m, type, name, token, ka, false);
}

static void on_cleanup(void *arg, enum cfg_challenge type, const char *name, const char *token)
{
    struct acme_mgr *m = arg;
    char path[1024];
    if (acme_storage_challenge_path(name, path, sizeof(path)) == 0) {
        acme_storage_remove(m->st, path);
    }
    if (type == CFG_CHALLENGE_TLS_ALPN_01) {
        tls_server_clear_challenge(m->srv, name);
        return;
    }
    pthread_mutex_lock(&m->http01_lock);
    for (size_t i = 0; i < m->n_http01; i++) {
        if (strcmp(m->http01[i].token, token) == 0) {
            free(m->http01[i].token);
            free(m->http01[i].key_authorization);
            free(m->http01[i].name);
            m->http01[i] = m->http01[--m->n_http01];
            break;
        }
    }
    pthread_mutex_unlock(&m->http01_lock);
}

size_t acme_http01_answer(struct acme_mgr *m, const char *token, size_t token_len, char *out,
                          size_t cap)
{
    size_t n = 0;
    if (m == NULL) {
        return 0;
    }
    pthread_mutex_lock(&m->http01_lock);
    for (size_t i = 0; i < m->n_http01; i++) {
        const struct acme_http01 *e = &m->http01[i];
        if (strlen(e->token) == token_len && memcmp(e->token, token, token_len) == 0) {
            size_t len = strlen(e->key_authorization);
            if (len < cap) {
                memcpy(out, e->key_authorization, len + 1);
                n = len;
            }
            break;
        }
    }
    pthread_mutex_unlock(&m->http01_lock);
    return n;
}

void acme_mgr_load_challenge(struct acme_mgr *m, const char *name)
{
    char path[1024];
    char *text = NULL;
    size_t len = 0;
    if (acme_storage_challenge_path(name, path, sizeof(path)) != 0 ||
        acme_storage_read(m->st, path, &text, &len) != 0) {
        tls_server_set_shared_challenge(m->srv, name, NULL); /* that order is over */
        return;
    }
    cJSON *doc = cJSON_ParseWithLength(text, len);
    free(text);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "type"));
    const char *token = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "token"));
    const char *ka = cJSON_GetStringValue(
        cJSON_GetObjectItemCaseSensitive(doc, "key_authorization"));
    char answer[512];
    if (type != NULL && token != NULL && ka != NULL) {
        bool http = strcmp(type, challenge_names[CFG_CHALLENGE_HTTP_01]) == 0;
        if (!http || acme_http01_answer(m, token, strlen(token), answer, sizeof(answer)) == 0) {
            /* Not ours: written by the instance that ordered it, which cleans it up. */
            do_install_answer(m, http ? CFG_CHALLENGE_HTTP_01 : CFG_CHALLENGE_TLS_ALPN_01, name,
                              token, ka, true);
            log_msg(CFG_LOG_INFO, "acme_challenge_shared", "%s: answering the %s challenge "
                    "another instance stored", name, type);
        }
    }
    cJSON_Delete(doc);
}

/* ---- the manager ------------------------------------------------------------------------ */

static void do_owner(struct acme_mgr *m)
{
    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    uint32_t r = 0;
    RAND_bytes((uint8_t *)&r, sizeof(r));
    snprintf(m->owner, sizeof(m->owner), "%s/%d/%08x", host, (int)getpid(), r);
}

struct acme_mgr *acme_mgr_new(uv_loop_t *loop, const struct cfg_acme *cfg,
                              struct tls_store *store, struct tls_server *srv, char *err,
                              size_t errlen)
{
    struct acme_mgr *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->loop = loop;
    m->cfg = cfg;
    m->store = store;
    m->srv = srv;
    pthread_mutex_init(&m->http01_lock, NULL);
    do_owner(m);
    m->st = acme_storage_open(cfg->storage, err, errlen);
    if (m->st == NULL) {
        acme_mgr_free(m);
        return NULL;
    }
    m->http = acme_http_new(loop, cfg->ca_root, err, errlen);
    m->ca_key = acme_storage_ca_key(cfg->ca);
    struct acme_challenge_hooks hooks = {on_present, on_cleanup, m};
    m->client = m->http != NULL && m->ca_key != NULL
                    ? acme_client_new(loop, m->http, m->st, cfg, &hooks)
                    : NULL;
    if (m->client == NULL) {
        if (m->http != NULL) {
            snprintf(err, errlen, "out of memory");
        }
        acme_mgr_free(m);
        return NULL;
    }
    return m;
}

struct acme_site *acme_site_new(struct acme_mgr *m, const char *const *names, size_t n)
{
    struct acme_site **grown = realloc(m->sites, (m->n_sites + 1) * sizeof(*grown));
    if (grown == NULL) {
        return NULL;
    }
    m->sites = grown;
    struct acme_site *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->names = calloc(n, sizeof(*s->names))) == NULL) {
        free(s);
        return NULL;
    }
    s->mgr = m;
    for (size_t i = 0; i < n; i++) {
        s->names[i] = strdup(names[i]);
        s->n_names += s->names[i] != NULL;
    }
    uv_timer_init(m->loop, &s->timer);
    uv_timer_init(m->loop, &s->lock_timer);
    s->timer.data = s;
    s->lock_timer.data = s;
    m->sites[m->n_sites++] = s;
    return s;
}

struct acme_site *acme_site_find(const struct acme_mgr *m, const char *name, bool on_demand)
{
    for (size_t i = 0; i < m->n_sites; i++) {
        struct acme_site *s = m->sites[i];
        for (size_t j = 0; (on_demand || !s->on_demand) && j < s->n_names; j++) {
            if (strcmp(s->names[j], name) == 0) {
                return s;
            }
        }
    }
    return NULL;
}

/* A reload listing a retired site's name again brings the site back: its certificate
 * comes from storage, or a new order. */
static void do_unretire(struct acme_mgr *m, struct acme_site *s)
{
    s->retired = false;
    log_msg(CFG_LOG_INFO, "acme_managed_again", "%s: listed again", s->names[0]);
    if (m->started && s->state == ACME_SITE_IDLE) {
        acme_site_start(s);
    }
}

/* Names already managed are skipped, so a reload naming them again changes nothing. */
int acme_mgr_manage(struct acme_mgr *m, const char *const *names, size_t n)
{
    const char **fresh = calloc(n > 0 ? n : 1, sizeof(*fresh));
    if (fresh == NULL) {
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct acme_site *s = acme_site_find(m, names[i], true);
        if (s == NULL) {
            fresh[k++] = names[i];
        } else if (s->retired) {
            do_unretire(m, s);
        }
    }
    int rc = 0;
    if (k > 0) {
        struct acme_site *s = acme_site_new(m, fresh, k);
        rc = s != NULL && s->n_names == k ? 0 : -ENOMEM;
        if (rc == 0 && m->started) {
            acme_site_start(s);
        }
    }
    free(fresh);
    return rc;
}

static bool do_listed(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Its certificate leaves the store (unless the name is served from a file now) and its
 * timers stop; storage keeps the certificate, and an order in flight still stores its
 * result there. */
static void do_retire(struct acme_mgr *m, struct acme_site *s)
{
    s->retired = true;
    uv_timer_stop(&s->timer);
    acme_site_notify(s, -ECANCELED, "no longer in the configuration");
    for (size_t i = 0; i < s->n_names; i++) {
        struct tls_cert *now = tls_store_lookup(m->store, s->names[i]);
        if (now != NULL && now == s->cert) {
            tls_store_remove(m->store, s->names[i]);
        }
        tls_cert_unref(now);
    }
    tls_cert_unref(s->cert);
    s->cert = NULL;
    log_msg(CFG_LOG_INFO, "acme_unmanaged", "%s: no longer in the configuration; not served "
            "or renewed (storage keeps the certificate)", s->names[0]);
}

void acme_mgr_retain(struct acme_mgr *m, const char *const *names, size_t n)
{
    for (size_t i = 0; i < m->n_sites; i++) {
        struct acme_site *s = m->sites[i];
        bool kept = s->on_demand || s->retired;
        for (size_t j = 0; j < s->n_names && !kept; j++) {
            kept = do_listed(s->names[j], names, n);
        }
        if (!kept) {
            do_retire(m, s);
        }
    }
}

void acme_mgr_stats(const struct acme_mgr *m, struct acme_stats *out)
{
    if (m == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = m->stats;
}

void acme_mgr_start(struct acme_mgr *m)
{
    m->started = true;
    for (size_t i = 0; i < m->n_sites; i++) {
        acme_site_start(m->sites[i]);
    }
}

static void do_free_site(struct acme_site *s)
{
    for (size_t i = 0; i < s->n_names; i++) {
        free(s->names[i]);
    }
    free(s->names);
    tls_cert_unref(s->cert);
    free(s);
}

static void do_free_mgr(struct acme_mgr *m)
{
    for (size_t i = 0; i < m->n_http01; i++) {
        free(m->http01[i].token);
        free(m->http01[i].key_authorization);
        free(m->http01[i].name);
    }
    free(m->http01);
    free(m->sites);
    free(m->ca_key);
    acme_storage_free(m->st);
    pthread_mutex_destroy(&m->http01_lock);
    free(m);
}

static void on_site_closed(uv_handle_t *h)
{
    struct acme_site *s = h->data;
    struct acme_mgr *m = s->mgr;
    if (--s->handles == 0) {
        do_free_site(s);
    }
    if (--m->closing_handles == 0) {
        do_free_mgr(m);
    }
}

void acme_mgr_free(struct acme_mgr *m)
{
    if (m == NULL) {
        return;
    }
    m->closing = true;
    for (size_t i = 0; i < m->n_sites; i++) {
        acme_site_notify(m->sites[i], -ECANCELED, "shutting down");
    }
    acme_client_free(m->client); /* cancels orders: their challenges are withdrawn */
    m->client = NULL;
    if (m->http != NULL) {
        acme_http_free(m->http); /* an ask in flight answers its waiters: refused */
        m->http = NULL;
    }
    acme_od_free(m);
    for (size_t i = 0; i < m->n_sites; i++) {
        struct acme_site *s = m->sites[i];
        if (s->locked) {
            acme_storage_unlock(m->st, s->names[0], m->owner);
            s->locked = false;
        }
        m->closing_handles += 2;
        s->handles = 2;
        uv_close((uv_handle_t *)&s->timer, on_site_closed);
        uv_close((uv_handle_t *)&s->lock_timer, on_site_closed);
    }
    if (m->closing_handles == 0) {
        do_free_mgr(m);
    }
}

/* ---- `moat certs list` ------------------------------------------------------------------- */

int acme_certs_list(const char *storage_dir, FILE *out, char *err, size_t errlen)
{
    struct acme_storage *st = acme_storage_open(storage_dir, err, errlen);
    if (st == NULL) {
        return -1;
    }
    struct acme_stored_cert *certs = NULL;
    size_t n = 0;
    if (acme_storage_list(st, &certs, &n) != 0) {
        snprintf(err, errlen, "%s: cannot list certificates", storage_dir);
        acme_storage_free(st);
        return -1;
    }
    fprintf(out, "%zu certificate(s) in %s\n", n, acme_storage_root(st));
    for (size_t i = 0; i < n; i++) {
        const struct acme_stored_cert *c = &certs[i];
        char expiry[64] = "unknown";
        time_t t = (time_t)c->not_after;
        struct tm tm;
        if (c->not_after > 0 && gmtime_r(&t, &tm) != NULL) {
            strftime(expiry, sizeof(expiry), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        fprintf(out, "\n%s\n  names:   ", c->name);
        for (size_t j = 0; j < c->n_names; j++) {
            fprintf(out, "%s%s", j > 0 ? ", " : "", c->names[j]);
        }
        fprintf(out, "\n  issuer:  %s\n  expires: %s\n  ca:      %s\n  path:    %s\n",
                c->issuer != NULL ? c->issuer : "unknown", expiry, c->ca, c->path);
        if (c->error != NULL) {
            fprintf(out, "  PROBLEM: %s\n", c->error);
        }
    }
    acme_stored_certs_free(certs, n);
    acme_storage_free(st);
    return 0;
}
