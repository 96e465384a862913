/* certs.c - the certificates in memory as the JSON document of the admin GET /certificates:
 * one entry per certificate with the names it carries and the store names it serves. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "proxy_int.h"

#define CERTS_MAX_SANS 256 /* more than any CA puts in one certificate */

/* One store entry, copied during the walk: owns the name and a reference to cert. */
struct cert_pair {
    char *name;
    struct tls_cert *cert;
};

/* What the store walk gathers. The walk runs under the store's read lock, so it only
 * copies; grouping, sorting and the JSON happen afterwards, outside the lock. */
struct cert_walk {
    struct cert_pair *p;
    size_t n;
    size_t cap;
    bool oom;
};

/* One certificate and its store names: n_hosts pairs of the walk's array from hosts on. */
struct cert_entry {
    struct tls_cert *cert;
    int64_t not_after;
    const struct cert_pair *hosts;
    size_t n_hosts;
};

static void on_store_entry(void *arg, const char *name, struct tls_cert *cert)
{
    struct cert_walk *w = arg;
    if (w->oom) {
        return;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap > 0 ? w->cap * 2 : 32;
        struct cert_pair *grown = realloc(w->p, cap * sizeof(*grown));
        if (grown == NULL) {
            w->oom = true;
            return;
        }
        w->p = grown;
        w->cap = cap;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        w->oom = true;
        return;
    }
    tls_cert_ref(cert);
    w->p[w->n].name = copy;
    w->p[w->n].cert = cert;
    w->n++;
}

/* By certificate (any stable order), then by name: each certificate's names end up
 * together and sorted. */
static int on_cmp_pair(const void *a, const void *b)
{
    const struct cert_pair *x = a;
    const struct cert_pair *y = b;
    uintptr_t cx = (uintptr_t)x->cert;
    uintptr_t cy = (uintptr_t)y->cert;
    if (cx != cy) {
        return cx < cy ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* Soonest expiry first; certificates expiring together in the order of their first host,
 * so the page does not shuffle between requests. */
static int on_cmp_entry(const void *a, const void *b)
{
    const struct cert_entry *x = a;
    const struct cert_entry *y = b;
    if (x->not_after != y->not_after) {
        return x->not_after < y->not_after ? -1 : 1;
    }
    return strcmp(x->hosts[0].name, y->hosts[0].name);
}

static void do_json_sans(struct px_buf *out, const struct tls_cert *cert)
{
    char *sans[CERTS_MAX_SANS];
    size_t n = tls_cert_names(cert, sans, CERTS_MAX_SANS);
    px_buf_append(out, "\"names\":[", 9);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            px_buf_append(out, ",", 1);
        }
        px_buf_json_str(out, sans[i]);
        free(sans[i]);
    }
    px_buf_append(out, "]", 1);
}

static void do_json_entry(struct px_buf *out, const struct cert_entry *e, int64_t now)
{
    px_buf_append(out, "{", 1);
    do_json_sans(out, e->cert);
    px_buf_append(out, ",\"hosts\":[", 10);
    for (size_t i = 0; i < e->n_hosts; i++) {
        if (i > 0) {
            px_buf_append(out, ",", 1);
        }
        px_buf_json_str(out, e->hosts[i].name);
    }
    px_buf_append(out, "]", 1);
    char when[32] = "";
    time_t t = (time_t)e->not_after;
    struct tm tm;
    if (e->not_after > 0 && gmtime_r(&t, &tm) != NULL) {
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    if (when[0] == '\0') {
        /* The library could not read notAfter: say so rather than invent a date. */
        px_buf_printf(out, ",\"not_after\":null,\"not_after_unix\":null,"
                           "\"expires_in_seconds\":null}");
        return;
    }
    px_buf_printf(out, ",\"not_after\":\"%s\",\"not_after_unix\":%lld,", when,
                  (long long)e->not_after);
    px_buf_printf(out, "\"expires_in_seconds\":%lld}", (long long)(e->not_after - now));
}

static void do_walk_free(struct cert_walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->p[i].name);
        tls_cert_unref(w->p[i].cert);
    }
    free(w->p);
    w->p = NULL;
    w->n = 0;
}

/* Groups the sorted pairs into one entry per certificate; NULL when out of memory. */
static struct cert_entry *do_group(const struct cert_walk *w, size_t *n_out)
{
    struct cert_entry *e = calloc(w->n > 0 ? w->n : 1, sizeof(*e));
    size_t n = 0;
    for (size_t i = 0; e != NULL && i < w->n; i++) {
        if (n > 0 && e[n - 1].cert == w->p[i].cert) {
            e[n - 1].n_hosts++;
            continue;
        }
        e[n].cert = w->p[i].cert;
        e[n].not_after = tls_cert_not_after(w->p[i].cert);
        e[n].hosts = &w->p[i];
        e[n].n_hosts = 1;
        n++;
    }
    *n_out = n;
    return e;
}

void px_admin_certificates(struct px_server *srv, struct px_buf *out)
{
    struct cert_walk w = {0};
    if (srv->store != NULL) {
        tls_store_foreach(srv->store, on_store_entry, &w);
    }
    if (w.n > 1) {
        qsort(w.p, w.n, sizeof(*w.p), on_cmp_pair);
    }
    size_t n = 0;
    struct cert_entry *e = w.oom ? NULL : do_group(&w, &n);
    if (e == NULL) {
        out->oom = true; /* a partial list would read as certificates missing */
        do_walk_free(&w);
        return;
    }
    if (n > 1) {
        qsort(e, n, sizeof(*e), on_cmp_entry);
    }
    int64_t now = (int64_t)time(NULL);
    px_buf_append(out, "{\"certificates\":[", 17);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            px_buf_append(out, ",", 1);
        }
        do_json_entry(out, &e[i], now);
    }
    px_buf_append(out, "]}\n", 3);
    free(e);
    do_walk_free(&w);
}
