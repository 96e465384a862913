/* manager_int.h - the manager's state, shared by mgr.c (the object, challenges) and
 * manager.c (one site's certificate lifecycle). */
#ifndef MOAT_ACME_MANAGER_INT_H
#define MOAT_ACME_MANAGER_INT_H

#include <pthread.h>

#include "client_int.h"

enum acme_site_state {
    ACME_SITE_IDLE = 0, /* serving, or waiting for a retry or renewal timer */
    ACME_SITE_WAITING,  /* another instance holds the lock */
    ACME_SITE_ORDERING,
    ACME_SITE_QUEUED,   /* on-demand, waiting for a free order slot */
};

/* A handshake (through the proxy) waiting for an on-demand certificate. */
struct acme_waiter {
    acme_obtain_cb cb;
    void *arg;
    struct acme_waiter *next;
};

/* One certificate the manager keeps: its names, what is served, its timers. */
struct acme_site {
    struct acme_mgr *mgr;
    char **names;
    size_t n_names;
    struct tls_cert *cert; /* the one installed, or NULL */
    int64_t not_before;
    int64_t not_after;
    uv_timer_t timer;      /* renewal, retry back-off, lock waits */
    uv_timer_t lock_timer; /* refreshes the storage lock while ordering */
    enum acme_site_state state;
    struct acme_order *order;
    unsigned failures;
    size_t chal_index;
    bool locked;
    bool retired; /* a reload dropped its names: not served, not renewed */
    int handles; /* open while closing; freed at zero */
    uint64_t order_start_ms;
    /* on-demand only */
    bool on_demand;
    struct acme_waiter *waiters;
    int64_t retry_at;          /* seconds: before it, a handshake fails at once */
    struct acme_site *od_next; /* in the on-demand table's bucket, or the order queue */
    struct acme_site *queue_next;
};

#define ACME_OD_BUCKETS 4096

struct acme_ask;

struct acme_http01 {
    char *token;
    char *key_authorization;
    char *name;
};

struct acme_mgr {
    uv_loop_t *loop;
    const struct cfg_acme *cfg;
    struct tls_store *store;
    struct tls_server *srv;
    struct acme_storage *st;
    struct acme_http *http;
    struct acme_client *client;
    char *ca_key;
    char owner[128]; /* who holds our storage locks: host, pid, random */
    struct acme_site **sites;
    size_t n_sites;
    pthread_mutex_t http01_lock; /* workers read, the control thread writes */
    struct acme_http01 *http01;
    size_t n_http01;
    int closing_handles;
    bool closing;
    bool started; /* acme_mgr_start ran: sites added later start at once */
    /* on-demand */
    const struct cfg_on_demand *od;
    struct acme_site **od_table; /* name -> site, ACME_OD_BUCKETS buckets */
    size_t od_count;
    size_t od_cached;            /* on-demand certificates in the store */
    unsigned od_ordering;
    struct acme_site *od_queue;  /* waiting for a slot, oldest first */
    struct acme_ask *asks;       /* the ask answers remembered, and those in flight */
    uint64_t *od_order_times;    /* ring of recent order starts, for the rate limit */
    size_t od_order_next;
    struct acme_stats stats; /* written and read on the control thread only */
};

/* ondemand.c */
void acme_site_notify(struct acme_site *s, int status, const char *why);
bool acme_od_may_order(struct acme_site *s);
void acme_od_order_done(struct acme_site *s);
void acme_od_installed(struct acme_site *s);
void acme_od_free(struct acme_mgr *m);
struct acme_site *acme_site_new(struct acme_mgr *m, const char *const *names, size_t n);
void acme_site_order(struct acme_site *s);

void acme_site_start(struct acme_site *s);
/* The site certifying name: among acme_mgr_manage's only, or on-demand ones too. */
struct acme_site *acme_site_find(const struct acme_mgr *m, const char *name, bool on_demand);
/* Backs off after a failure: retry_initial doubling up to retry_max, but at least
 * min_delay_ms (the CA's Retry-After). */
void acme_site_failed(struct acme_site *s, const char *error, uint64_t min_delay_ms);

#endif
