/* metrics.c - counting on the workers and the Prometheus text page of the admin endpoint.
 *
 * Workers only ever write their own counters (no locked instructions on the hot path);
 * the page sums the workers when it is asked for. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "proxy_int.h"

const uint64_t px_hist_bounds_us[PX_HIST_BUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

static const char *const bound_labels[PX_HIST_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
};

void px_hist_observe(struct px_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < PX_HIST_BUCKETS && us > px_hist_bounds_us[i]) {
        i++;
    }
    px_stat_add(&h->bucket[i], 1);
    px_stat_add(&h->sum_us, us);
    px_stat_add(&h->count, 1);
}

void px_codes_count(struct px_codes *c, int status)
{
    for (size_t i = 0; i < PX_CODE_SLOTS; i++) {
        uint32_t code = atomic_load_explicit(&c->code[i], memory_order_relaxed);
        if (code == 0) {
            /* The count goes first: a reader never sees a code whose count is missing. */
            px_stat_add(&c->n[i], 1);
            atomic_store_explicit(&c->code[i], (uint32_t)status, memory_order_release);
            return;
        }
        if (code == (uint32_t)status) {
            px_stat_add(&c->n[i], 1);
            return;
        }
    }
    px_stat_add(&c->n[PX_CODE_SLOTS], 1);
}

/* ---- the page ------------------------------------------------------------------------ */

static void do_head(struct px_buf *b, const char *name, const char *type, const char *help)
{
    px_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped as the text format wants. */
static void do_label(struct px_buf *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"') {
            px_buf_append(b, "\\", 1);
            px_buf_append(b, v, 1);
        } else if (*v == '\n') {
            px_buf_append(b, "\\n", 2);
        } else {
            px_buf_append(b, v, 1);
        }
    }
}

/* Sums per-worker code tables into codes[600] plus other. */
static void do_sum_codes(struct px_codes *const *per, unsigned n, uint64_t *codes,
                         uint64_t *other)
{
    for (unsigned w = 0; w < n; w++) {
        for (size_t i = 0; i < PX_CODE_SLOTS; i++) {
            uint32_t code = atomic_load_explicit(&per[w]->code[i], memory_order_acquire);
            if (code == 0) {
                break;
            }
            if (code < 600) {
                codes[code] += px_stat_get(&per[w]->n[i]);
            }
        }
        *other += px_stat_get(&per[w]->n[PX_CODE_SLOTS]);
    }
}

static void do_site_requests(struct px_buf *b, const char *site, struct px_codes *const *per,
                             unsigned n)
{
    uint64_t codes[600] = {0};
    uint64_t other = 0;
    do_sum_codes(per, n, codes, &other);
    for (int code = 100; code < 600; code++) {
        if (codes[code] == 0) {
            continue;
        }
        px_buf_printf(b, "moat_requests_total{site=\"");
        do_label(b, site);
        px_buf_printf(b, "\",code=\"%d\"} %llu\n", code, (unsigned long long)codes[code]);
    }
    if (other > 0) {
        px_buf_printf(b, "moat_requests_total{site=\"");
        do_label(b, site);
        px_buf_printf(b, "\",code=\"other\"} %llu\n", (unsigned long long)other);
    }
}

static void do_requests(struct px_server *srv, struct px_buf *b)
{
    struct px_codes **per = calloc(srv->n_workers > 0 ? srv->n_workers : 1, sizeof(*per));
    if (per == NULL) {
        b->oom = true;
        return;
    }
    do_head(b, "moat_requests_total", "counter", "Requests answered, by site and status code.");
    for (struct px_site_stats *s = srv->site_stats; s != NULL; s = s->next) {
        for (unsigned w = 0; w < srv->n_workers; w++) {
            per[w] = &s->w[w];
        }
        do_site_requests(b, s->name, per, srv->n_workers);
    }
    for (unsigned w = 0; w < srv->n_workers; w++) {
        per[w] = &srv->workers[w].stats.unmatched;
    }
    do_site_requests(b, "", per, srv->n_workers);
    free(per);
}

/* One histogram series: cumulative buckets, sum and count, under a label. */
static void do_hist(struct px_buf *b, const char *name, const char *label, const char *value,
                    struct px_hist *const *per, unsigned n)
{
    uint64_t cum = 0;
    uint64_t sum_us = 0;
    uint64_t count = 0;
    for (unsigned w = 0; w < n; w++) {
        sum_us += px_stat_get(&per[w]->sum_us);
        count += px_stat_get(&per[w]->count);
    }
    for (size_t i = 0; i <= PX_HIST_BUCKETS; i++) {
        for (unsigned w = 0; w < n; w++) {
            cum += px_stat_get(&per[w]->bucket[i]);
        }
        px_buf_printf(b, "%s_bucket{", name);
        if (label != NULL) {
            px_buf_printf(b, "%s=\"", label);
            do_label(b, value);
            px_buf_printf(b, "\",");
        }
        px_buf_printf(b, "le=\"%s\"} %llu\n", i < PX_HIST_BUCKETS ? bound_labels[i] : "+Inf",
                      (unsigned long long)(i < PX_HIST_BUCKETS ? cum : count));
    }
    const char *open = label != NULL ? "{" : "";
    const char *close = label != NULL ? "\"}" : "";
    for (int k = 0; k < 2; k++) {
        px_buf_printf(b, "%s_%s%s", name, k == 0 ? "sum" : "count", open);
        if (label != NULL) {
            px_buf_printf(b, "%s=\"", label);
            do_label(b, value);
        }
        if (k == 0) {
            px_buf_printf(b, "%s %.6f\n", close, (double)sum_us / 1e6);
        } else {
            px_buf_printf(b, "%s %llu\n", close, (unsigned long long)count);
        }
    }
}

static void do_upstreams(struct px_server *srv, struct px_buf *b)
{
    struct px_hist **per = calloc(srv->n_workers > 0 ? srv->n_workers : 1, sizeof(*per));
    if (per == NULL) {
        b->oom = true;
        return;
    }
    do_head(b, "moat_upstream_latency_seconds", "histogram",
            "Time from sending a request upstream to its response head.");
    for (size_t i = 0; i < srv->n_targets; i++) {
        struct px_target *t = srv->targets[i];
        for (unsigned w = 0; w < srv->n_workers; w++) {
            per[w] = &t->stats[w].latency;
        }
        do_hist(b, "moat_upstream_latency_seconds", "upstream", t->label, per, srv->n_workers);
    }
    free(per);
    do_head(b, "moat_upstream_healthy", "gauge", "1 when the upstream is in rotation.");
    for (size_t i = 0; i < srv->n_targets; i++) {
        px_buf_printf(b, "moat_upstream_healthy{upstream=\"");
        do_label(b, srv->targets[i]->label);
        px_buf_printf(b, "\"} %d\n", px_target_up(srv->targets[i]) ? 1 : 0);
    }
    do_head(b, "moat_upstream_failures_total", "counter",
            "Requests that failed to reach the upstream or to get its response head.");
    for (size_t i = 0; i < srv->n_targets; i++) {
        uint64_t n = 0;
        for (unsigned w = 0; w < srv->n_workers; w++) {
            n += px_stat_get(&srv->targets[i]->stats[w].failures);
        }
        px_buf_printf(b, "moat_upstream_failures_total{upstream=\"");
        do_label(b, srv->targets[i]->label);
        px_buf_printf(b, "\"} %llu\n", (unsigned long long)n);
    }
}

#define WORKER_SUM(srv, field, out)                                                       \
    do {                                                                                  \
        (out) = 0;                                                                        \
        for (unsigned w_ = 0; w_ < (srv)->n_workers; w_++) {                              \
            (out) += px_stat_get(&(srv)->workers[w_].stats.field);                        \
        }                                                                                 \
    } while (0)

static void do_counter(struct px_buf *b, const char *name, const char *type, const char *help,
                       uint64_t v)
{
    do_head(b, name, type, help);
    px_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void do_connections(struct px_server *srv, struct px_buf *b)
{
    uint64_t v;
    WORKER_SUM(srv, conns_active, v);
    do_counter(b, "moat_connections_active", "gauge", "Client connections open now.", v);
    WORKER_SUM(srv, conns_total, v);
    do_counter(b, "moat_connections_total", "counter", "Client connections accepted.", v);
    WORKER_SUM(srv, handshakes, v);
    do_counter(b, "moat_tls_handshakes_total", "counter", "TLS handshakes completed.", v);
    WORKER_SUM(srv, handshake_failures, v);
    do_counter(b, "moat_tls_handshake_failures_total", "counter", "TLS handshakes that failed.",
               v);
    WORKER_SUM(srv, resumptions, v);
    do_counter(b, "moat_tls_resumptions_total", "counter",
               "TLS handshakes that resumed a session.", v);
}

struct expiry_walk {
    struct px_buf *b;
};

static void on_expiry(void *arg, const char *name, struct tls_cert *cert)
{
    struct expiry_walk *e = arg;
    px_buf_printf(e->b, "moat_certificate_expiry_timestamp_seconds{name=\"");
    do_label(e->b, name);
    px_buf_printf(e->b, "\"} %lld\n", (long long)tls_cert_not_after(cert));
}

static void do_acme(struct px_server *srv, struct px_buf *b)
{
    do_head(b, "moat_certificate_expiry_timestamp_seconds", "gauge",
            "When the certificate served for a name expires (unix seconds).");
    struct expiry_walk e = {.b = b};
    tls_store_foreach(srv->store, on_expiry, &e);
    struct acme_stats st;
    acme_mgr_stats(srv->acme, &st);
    do_counter(b, "moat_acme_orders_total", "counter", "ACME orders started.", st.orders);
    do_counter(b, "moat_acme_order_failures_total", "counter",
               "ACME orders that ended without a certificate.", st.order_failures);
    do_counter(b, "moat_acme_certificates_obtained_total", "counter",
               "Certificates obtained from the ACME CA (first ones and renewals).", st.obtained);
    uint64_t v;
    WORKER_SUM(srv, od_waits, v);
    do_counter(b, "moat_on_demand_waits_total", "counter",
               "Handshakes paused for an on-demand certificate (obtained, loaded or refused).",
               v);
    do_counter(b, "moat_on_demand_refused_total", "counter",
               "Handshakes refused a certificate on demand by allow or ask.",
               st.on_demand_refused);
    struct px_hist **per = calloc(srv->n_workers > 0 ? srv->n_workers : 1, sizeof(*per));
    if (per == NULL) {
        b->oom = true;
        return;
    }
    for (unsigned w = 0; w < srv->n_workers; w++) {
        per[w] = &srv->workers[w].stats.od_wait;
    }
    do_head(b, "moat_on_demand_wait_seconds", "histogram",
            "How long a handshake waited for a certificate obtained on demand.");
    do_hist(b, "moat_on_demand_wait_seconds", NULL, NULL, per, srv->n_workers);
    free(per);
}

void px_metrics_render(struct px_server *srv, struct px_buf *b)
{
    do_head(b, "moat_build_info", "gauge", "The running moat's version.");
    px_buf_printf(b, "moat_build_info{version=\"%s\"} 1\n", MOAT_VERSION);
    do_requests(srv, b);
    do_connections(srv, b);
    do_upstreams(srv, b);
    do_acme(srv, b);
    do_head(b, "moat_config_reloads_total", "counter", "Configuration reloads, by result.");
    px_buf_printf(b, "moat_config_reloads_total{result=\"success\"} %llu\n",
                  (unsigned long long)px_stat_get(&srv->reloads_ok));
    px_buf_printf(b, "moat_config_reloads_total{result=\"failure\"} %llu\n",
                  (unsigned long long)px_stat_get(&srv->reloads_failed));
    do_counter(b, "moat_config_last_reload_success_timestamp_seconds", "gauge",
               "When the configuration was last loaded (start or reload), unix seconds.",
               px_stat_get(&srv->last_reload_ok));
}
