/* ondemand.c - certificates obtained at the first handshake for a name: the policy checks
 * (allow patterns, the ask URL with its answers remembered, back-off, rate limit), one
 * site per name sharing one order among all waiting handshakes, a cap on parallel orders,
 * and eviction of the least recently used certificates from memory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "manager_int.h"

#define ASK_TIMEOUT_MS 10000

/* One ask answer, remembered for ask_cache, or a question in flight with its waiters. */
struct acme_ask {
    struct acme_ask *next;
    struct acme_mgr *mgr;
    char *name;
    bool pending;
    bool allowed;
    uint64_t expires_ms;
    struct acme_waiter *waiters;
};

static uint64_t do_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    }
    return h;
}

static void do_refuse(struct acme_mgr *m, acme_obtain_cb cb, void *arg, const char *name,
                      const char *reason)
{
    m->stats.on_demand_refused++;
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "on_demand_refused");
    log_str(&l, "name", name);
    log_str(&l, "reason", reason);
    log_end(&l);
    cb(arg, -EPERM, reason);
}

static int do_add_waiter(struct acme_waiter **list, acme_obtain_cb cb, void *arg)
{
    struct acme_waiter *w = malloc(sizeof(*w));
    if (w == NULL) {
        return -1;
    }
    w->cb = cb;
    w->arg = arg;
    w->next = *list;
    *list = w;
    return 0;
}

void acme_site_notify(struct acme_site *s, int status, const char *why)
{
    struct acme_waiter *w = s->waiters;
    s->waiters = NULL;
    while (w != NULL) {
        struct acme_waiter *next = w->next;
        w->cb(w->arg, status, why);
        free(w);
        w = next;
    }
}

/* ---- sites by name ------------------------------------------------------------------------ */

static struct acme_site *do_find(struct acme_mgr *m, const char *name)
{
    struct acme_site *s = m->od_table[do_hash(name) % ACME_OD_BUCKETS];
    while (s != NULL && strcmp(s->names[0], name) != 0) {
        s = s->od_next;
    }
    return s;
}

static struct acme_site *do_create(struct acme_mgr *m, const char *name)
{
    const char *names[1] = {name};
    struct acme_site *s = acme_site_new(m, names, 1);
    if (s == NULL) {
        return NULL;
    }
    s->on_demand = true;
    struct acme_site **bucket = &m->od_table[do_hash(name) % ACME_OD_BUCKETS];
    s->od_next = *bucket;
    *bucket = s;
    m->od_count++;
    return s;
}

/* ---- order slots, rate, eviction ---------------------------------------------------------- */

bool acme_od_may_order(struct acme_site *s)
{
    struct acme_mgr *m = s->mgr;
    if (m->od_ordering >= m->od->concurrency) {
        s->state = ACME_SITE_QUEUED;
        struct acme_site **pp = &m->od_queue;
        while (*pp != NULL) {
            pp = &(*pp)->queue_next;
        }
        s->queue_next = NULL;
        *pp = s;
        return false;
    }
    uint64_t now = uv_now(m->loop);
    uint64_t oldest = m->od_order_times[m->od_order_next];
    if (oldest != 0 && now - oldest < m->od->rate_per_ms) {
        acme_site_failed(s, "on_demand.rate_limit reached: too many new orders", 0);
        return false;
    }
    m->od_order_times[m->od_order_next] = now;
    m->od_order_next = (m->od_order_next + 1) % m->od->rate_orders;
    m->od_ordering++;
    return true;
}

void acme_od_order_done(struct acme_site *s)
{
    struct acme_mgr *m = s->mgr;
    m->od_ordering--;
    struct acme_site *next = m->od_queue;
    if (next != NULL && !m->closing) {
        m->od_queue = next->queue_next;
        next->queue_next = NULL;
        acme_site_order(next);
    }
}

/* Memory holds at most cache_size on-demand certificates: the least recently used leaves
 * the store; storage keeps it, and its next handshake loads it again. */
void acme_od_installed(struct acme_site *s)
{
    struct acme_mgr *m = s->mgr;
    if (++m->od_cached <= m->od->cache_size) {
        return;
    }
    struct acme_site *victim = NULL;
    int64_t oldest = 0;
    for (size_t b = 0; b < ACME_OD_BUCKETS; b++) {
        for (struct acme_site *c = m->od_table[b]; c != NULL; c = c->od_next) {
            if (c == s || c->cert == NULL || c->state != ACME_SITE_IDLE) {
                continue;
            }
            int64_t used = tls_cert_last_used(c->cert);
            if (victim == NULL || used < oldest) {
                victim = c;
                oldest = used;
            }
        }
    }
    if (victim == NULL) {
        return;
    }
    log_msg(CFG_LOG_INFO, "on_demand_evicted", "%s: least recently used of %zu certificates "
            "in memory (on_demand.cache_size); storage keeps it", victim->names[0],
            m->od_cached);
    tls_store_remove(m->store, victim->names[0]);
    tls_cert_unref(victim->cert);
    victim->cert = NULL;
    uv_timer_stop(&victim->timer); /* renewed when it is next loaded */
    m->od_cached--;
}

/* ---- the checks ----------------------------------------------------------------------------- */

static bool do_allowed(struct acme_mgr *m, const char *name)
{
    if (m->od->n_allow == 0) {
        return true; /* ask decides */
    }
    for (size_t i = 0; i < m->od->n_allow; i++) {
        if (cfg_host_match(m->od->allow[i], name)) {
            return true;
        }
    }
    return false;
}

static void do_proceed(struct acme_mgr *m, const char *name, acme_obtain_cb cb, void *arg);

static void do_ask_finish(struct acme_ask *a, bool allowed, const char *why)
{
    struct acme_mgr *m = a->mgr;
    a->pending = false;
    a->allowed = allowed;
    a->expires_ms = uv_now(m->loop) + m->od->ask_cache_ms;
    struct acme_waiter *w = a->waiters;
    a->waiters = NULL;
    while (w != NULL) {
        struct acme_waiter *next = w->next;
        if (allowed) {
            do_proceed(m, a->name, w->cb, w->arg);
        } else {
            do_refuse(m, w->cb, w->arg, a->name, why);
        }
        free(w);
        w = next;
    }
}

static void on_ask(void *arg, const struct acme_http_response *res)
{
    struct acme_ask *a = arg;
    char why[300];
    if (res->error == -ECANCELED) {
        do_ask_finish(a, false, "shutting down");
        return;
    }
    if (res->error != 0) {
        snprintf(why, sizeof(why), "on_demand.ask failed: %s", res->error_text);
        do_ask_finish(a, false, why);
        return;
    }
    bool ok = res->status >= 200 && res->status < 300;
    snprintf(why, sizeof(why), "on_demand.ask answered %d", res->status);
    do_ask_finish(a, ok, why);
}

static struct acme_ask *do_ask_entry(struct acme_mgr *m, const char *name)
{
    uint64_t now = uv_now(m->loop);
    struct acme_ask **pp = &m->asks;
    while (*pp != NULL) {
        struct acme_ask *a = *pp;
        if (strcmp(a->name, name) == 0) {
            return a;
        }
        if (!a->pending && a->expires_ms <= now) {
            *pp = a->next; /* forgotten: asked again next time */
            free(a->name);
            free(a);
            continue;
        }
        pp = &a->next;
    }
    struct acme_ask *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->name = strdup(name)) == NULL) {
        free(a);
        return NULL;
    }
    a->mgr = m;
    a->next = m->asks;
    m->asks = a;
    return a;
}

/* GET ask?domain=NAME: one question per name at a time, its answer remembered. */
static void do_ask(struct acme_mgr *m, const char *name, acme_obtain_cb cb, void *arg)
{
    struct acme_ask *a = do_ask_entry(m, name);
    if (a == NULL) {
        cb(arg, -ENOMEM, "out of memory");
        return;
    }
    if (!a->pending && a->expires_ms > uv_now(m->loop)) {
        if (a->allowed) {
            do_proceed(m, name, cb, arg);
        } else {
            do_refuse(m, cb, arg, name, "on_demand.ask refused it (remembered)");
        }
        return;
    }
    if (do_add_waiter(&a->waiters, cb, arg) != 0) {
        cb(arg, -ENOMEM, "out of memory");
        return;
    }
    if (a->pending) {
        return;
    }
    char url[2048];
    const char *ask = m->od->ask;
    int n = snprintf(url, sizeof(url), "%s%cdomain=%s", ask, strchr(ask, '?') ? '&' : '?', name);
    a->pending = true;
    if (n < 0 || (size_t)n >= sizeof(url) ||
        acme_http_request(m->http, "GET", url, NULL, NULL, 0, ASK_TIMEOUT_MS, on_ask, a) != 0) {
        do_ask_finish(a, false, "on_demand.ask is not a usable URL");
    }
}

/* The name passed every check: load it from storage, or order it. */
static void do_proceed(struct acme_mgr *m, const char *name, acme_obtain_cb cb, void *arg)
{
    struct acme_site *s = do_find(m, name);
    if (s == NULL) {
        s = do_create(m, name);
        if (s == NULL) {
            cb(arg, -ENOMEM, "out of memory");
            return;
        }
    }
    if (do_add_waiter(&s->waiters, cb, arg) != 0) {
        cb(arg, -ENOMEM, "out of memory");
        return;
    }
    if (s->state == ACME_SITE_IDLE) {
        acme_site_start(s); /* installs from storage or orders; notifies the waiters */
    }
}

/* The handshake waits for the managed site's load or order, or fails at once while that
 * site is backing off after a failure. */
static void do_wait_managed(struct acme_site *s, acme_obtain_cb cb, void *arg)
{
    int64_t now = (int64_t)time(NULL);
    if (s->cert != NULL && s->not_after > now) {
        cb(arg, 0, NULL);
        return;
    }
    if (s->state == ACME_SITE_IDLE && s->retry_at > now) {
        char why[160];
        snprintf(why, sizeof(why), "failed recently; next attempt in %lld s",
                 (long long)(s->retry_at - now));
        cb(arg, -EAGAIN, why);
        return;
    }
    if (do_add_waiter(&s->waiters, cb, arg) != 0) {
        cb(arg, -ENOMEM, "out of memory");
    }
}

void acme_mgr_obtain(struct acme_mgr *m, const char *name, acme_obtain_cb cb, void *arg)
{
    char key[256];
    /* A name the config lists exactly: its certificate comes from the site made at start,
     * never from a second, on-demand order. */
    struct acme_site *managed = m->closing ? NULL : acme_site_find(m, name, false);
    if (managed != NULL) {
        do_wait_managed(managed, cb, arg);
        return;
    }
    if (m->od == NULL || m->closing) {
        cb(arg, -EPERM, "on-demand TLS is off");
        return;
    }
    if (acme_storage_name_key(name, key, sizeof(key)) != 0 || strchr(name, '*') != NULL) {
        do_refuse(m, cb, arg, name, "not a name a certificate can be obtained for");
        return;
    }
    struct acme_site *s = do_find(m, name);
    if (s != NULL && s->cert != NULL && s->not_after > (int64_t)time(NULL)) {
        cb(arg, 0, NULL); /* a handshake raced the installation */
        return;
    }
    if (s != NULL && s->state == ACME_SITE_IDLE && s->retry_at > (int64_t)time(NULL)) {
        char why[160];
        snprintf(why, sizeof(why), "failed recently; next attempt in %lld s",
                 (long long)(s->retry_at - (int64_t)time(NULL)));
        cb(arg, -EAGAIN, why);
        return;
    }
    if (s != NULL && s->state != ACME_SITE_IDLE) {
        if (do_add_waiter(&s->waiters, cb, arg) != 0) {
            cb(arg, -ENOMEM, "out of memory");
        }
        return;
    }
    if (!do_allowed(m, name)) {
        do_refuse(m, cb, arg, name, "not in on_demand.allow");
        return;
    }
    if (m->od->ask != NULL) {
        do_ask(m, name, cb, arg);
        return;
    }
    do_proceed(m, name, cb, arg);
}

void acme_mgr_enable_on_demand(struct acme_mgr *m, const struct cfg_on_demand *od)
{
    m->od_table = calloc(ACME_OD_BUCKETS, sizeof(*m->od_table));
    m->od_order_times = calloc(od->rate_orders > 0 ? od->rate_orders : 1, sizeof(uint64_t));
    if (m->od_table == NULL || m->od_order_times == NULL) {
        free(m->od_table);
        free(m->od_order_times);
        m->od_table = NULL;
        m->od_order_times = NULL;
        log_msg(CFG_LOG_ERROR, "on_demand_off", "out of memory: on-demand TLS disabled");
        return;
    }
    m->od = od;
}

/* Waiters and remembered answers; the sites themselves are closed with the others. */
void acme_od_free(struct acme_mgr *m)
{
    while (m->asks != NULL) {
        struct acme_ask *a = m->asks;
        m->asks = a->next;
        struct acme_waiter *w = a->waiters;
        while (w != NULL) {
            struct acme_waiter *next = w->next;
            w->cb(w->arg, -ECANCELED, "shutting down");
            free(w);
            w = next;
        }
        free(a->name);
        free(a);
    }
    free(m->od_table);
    free(m->od_order_times);
    m->od_table = NULL;
    m->od_order_times = NULL;
}
