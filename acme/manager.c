/* manager.c - keeps every managed certificate present and fresh: load from storage, order
 * under the per-name lock, store, install into the live store, renew, back off on failure. */
#include <errno.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "manager_int.h"

#define LOCK_STALE_S 15     /* a lock not refreshed this long belongs to a dead instance */
#define LOCK_REFRESH_MS 3000
#define LOCK_WAIT_MS 2000
#define SHORT_LIFETIME_S (10 * 86400)

static void do_order(struct acme_site *s);

/* ---- certificates in storage ----------------------------------------------------------- */

static int do_cert_path(struct acme_site *s, const char *ext, char *out, size_t cap)
{
    return acme_storage_cert_path(s->mgr->ca_key, s->names[0], ext, out, cap);
}

/* notBefore and notAfter of the first certificate in a PEM chain. */
static int do_validity(const char *pem, size_t len, int64_t *not_before, int64_t *not_after)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (x == NULL) {
        return -1;
    }
    int days = 0;
    int secs = 0;
    int64_t now = (int64_t)time(NULL);
    int rc = -1;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notBefore(x))) {
        *not_before = now + (int64_t)days * 86400 + secs;
        if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x))) {
            *not_after = now + (int64_t)days * 86400 + secs;
            rc = 0;
        }
    }
    X509_free(x);
    return rc;
}

static bool do_covers(struct tls_cert *cert, struct acme_site *s)
{
    char *names[64];
    size_t n = tls_cert_names(cert, names, 64);
    size_t found = 0;
    for (size_t i = 0; i < s->n_names; i++) {
        for (size_t j = 0; j < n; j++) {
            if (strcasecmp(names[j], s->names[i]) == 0) {
                found++;
                break;
            }
        }
    }
    for (size_t j = 0; j < n; j++) {
        free(names[j]);
    }
    return found == s->n_names;
}

static void do_install(struct acme_site *s, struct tls_cert *cert, int64_t nb, int64_t na)
{
    for (size_t i = 0; i < s->n_names; i++) {
        tls_store_put(s->mgr->store, s->names[i], cert);
    }
    bool fresh_entry = s->cert == NULL;
    tls_cert_unref(s->cert);
    s->cert = cert; /* the site keeps the reference it was given */
    s->not_before = nb;
    s->not_after = na;
    if (s->on_demand && fresh_entry) {
        acme_od_installed(s);
    }
    acme_site_notify(s, 0, NULL);
}

/* Reads the stored pair. Returns 0 with *out set, -ENOENT when absent, -EINVAL when the
 * files are corrupt, mismatched or do not cover the names (reported, then replaced). */
static int do_read_stored(struct acme_site *s, struct tls_cert **out, int64_t *nb, int64_t *na)
{
    char crt_path[1024];
    char key_path[1024];
    if (do_cert_path(s, "crt", crt_path, sizeof(crt_path)) != 0 ||
        do_cert_path(s, "key", key_path, sizeof(key_path)) != 0) {
        return -EINVAL;
    }
    char *crt = NULL;
    char *key = NULL;
    size_t crt_len = 0;
    size_t key_len = 0;
    int rc = acme_storage_read(s->mgr->st, crt_path, &crt, &crt_len);
    if (rc == 0) {
        rc = acme_storage_read(s->mgr->st, key_path, &key, &key_len);
    }
    if (rc != 0) {
        free(crt);
        return rc == -ENOENT ? -ENOENT : -EINVAL;
    }
    char err[256] = "";
    *out = tls_cert_from_pem(crt, crt_len, key, key_len, err, sizeof(err));
    if (*out != NULL && (do_validity(crt, crt_len, nb, na) != 0 || !do_covers(*out, s))) {
        snprintf(err, sizeof(err), "unreadable validity or names other than the site's");
        tls_cert_unref(*out);
        *out = NULL;
    }
    OPENSSL_cleanse(key, key_len);
    free(key);
    free(crt);
    if (*out == NULL) {
        log_msg(CFG_LOG_WARN, "acme_certificate_corrupt", "%s/%s: %s; it will be replaced",
                acme_storage_root(s->mgr->st), crt_path, err);
        return -EINVAL;
    }
    return 0;
}

static int do_write_stored(struct acme_site *s, const char *pem, size_t len, const char *key,
                           size_t key_len, int64_t na)
{
    char path[1024];
    struct acme_storage *st = s->mgr->st;
    /* The key first: a crash between the two leaves a new key beside the old certificate,
     * which reads as mismatched and is replaced, never served. */
    int rc = do_cert_path(s, "key", path, sizeof(path)) == 0
                 ? acme_storage_write(st, path, key, key_len, 0600)
                 : -EINVAL;
    if (rc == 0) {
        rc = do_cert_path(s, "crt", path, sizeof(path)) == 0
                 ? acme_storage_write(st, path, pem, len, 0644)
                 : -EINVAL;
    }
    if (rc != 0) {
        return rc;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *names = cJSON_AddArrayToObject(doc, "names");
    for (size_t i = 0; i < s->n_names; i++) {
        cJSON_AddItemToArray(names, cJSON_CreateString(s->names[i]));
    }
    cJSON_AddStringToObject(doc, "ca", s->mgr->cfg->ca);
    cJSON_AddNumberToObject(doc, "obtained", (double)time(NULL));
    cJSON_AddNumberToObject(doc, "not_after", (double)na);
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (text != NULL && do_cert_path(s, "json", path, sizeof(path)) == 0) {
        rc = acme_storage_write(st, path, text, strlen(text), 0644);
    }
    free(text);
    return rc;
}

/* ---- scheduling ------------------------------------------------------------------------ */

/* When to renew: when the configured fraction of the lifetime remains (1/3, or 1/2 for
 * short-lived certificates), minus a random jitter so instances sharing storage spread. */
static int64_t do_renew_at(struct acme_site *s)
{
    int64_t lifetime = s->not_after - s->not_before;
    double window = s->mgr->cfg->renew_window;
    if (window <= 0) {
        window = lifetime <= SHORT_LIFETIME_S ? 0.5 : 1.0 / 3.0;
    }
    int64_t at = s->not_after - (int64_t)((double)lifetime * window);
    uint32_t r = 0;
    RAND_bytes((uint8_t *)&r, sizeof(r));
    int64_t spread = lifetime / 50 < 600 ? lifetime / 50 : 600;
    return at - (spread > 0 ? (int64_t)(r % (uint32_t)(spread + 1)) : 0);
}

static void on_site_timer(uv_timer_t *t)
{
    struct acme_site *s = t->data;
    do_order(s);
}

static void do_schedule(struct acme_site *s, uint64_t ms)
{
    uv_timer_start(&s->timer, on_site_timer, ms, 0);
}

static void do_schedule_renewal(struct acme_site *s)
{
    int64_t wait_s = do_renew_at(s) - (int64_t)time(NULL);
    uint64_t ms = wait_s > 0 ? (uint64_t)wait_s * 1000 : 0;
    /* libuv timers are 64-bit, but wake at least daily to notice clock jumps. */
    do_schedule(s, ms > 86400000ULL ? 86400000ULL : ms);
    s->state = ACME_SITE_IDLE;
}

/* Whether the site's certificate is fresh enough that no order is needed yet. */
static bool do_fresh(struct acme_site *s)
{
    return s->cert != NULL && do_renew_at(s) > (int64_t)time(NULL);
}

/* ---- ordering under the storage lock ------------------------------------------------------ */

static void on_lock_refresh(uv_timer_t *t)
{
    struct acme_site *s = t->data;
    if (acme_storage_lock_refresh(s->mgr->st, s->names[0], s->mgr->owner) != 0) {
        log_msg(CFG_LOG_WARN, "acme_lock_lost", "%s: the storage lock was taken over; "
                "another instance may be ordering too", s->names[0]);
    }
}

static void do_unlock(struct acme_site *s)
{
    uv_timer_stop(&s->lock_timer);
    if (s->locked) {
        acme_storage_unlock(s->mgr->st, s->names[0], s->mgr->owner);
        s->locked = false;
    }
}

static void do_stored_ok(struct acme_site *s, bool renewed)
{
    acme_log_step(renewed ? "acme_certificate_renewed" : "acme_certificate_stored", s->names[0],
                  s->order_start_ms, s->mgr->loop);
}

static void on_order_done(void *arg, int status, const char *error, uint64_t retry_after_ms,
                          const char *pem, size_t len, const char *key, size_t key_len)
{
    struct acme_site *s = arg;
    s->order = NULL;
    if (s->on_demand) {
        acme_od_order_done(s);
    }
    int64_t nb = 0;
    int64_t na = 0;
    char why[256] = "";
    struct tls_cert *cert = NULL;
    if (status == 0) {
        cert = tls_cert_from_pem(pem, len, key, key_len, why, sizeof(why));
        if (cert != NULL && do_validity(pem, len, &nb, &na) == 0 &&
            do_write_stored(s, pem, len, key, key_len, na) == 0) {
            s->mgr->stats.obtained++;
            if (s->retired) { /* stored for later, but the config no longer has it */
                tls_cert_unref(cert);
                do_unlock(s);
                s->state = ACME_SITE_IDLE;
                return;
            }
            bool renewed = s->cert != NULL;
            do_install(s, cert, nb, na);
            do_unlock(s);
            s->failures = 0;
            do_stored_ok(s, renewed);
            do_schedule_renewal(s);
            return;
        }
        tls_cert_unref(cert);
        error = why[0] != '\0' ? why : "cannot store the certificate (check acme.storage)";
    }
    s->mgr->stats.order_failures++;
    do_unlock(s);
    acme_site_failed(s, error, retry_after_ms);
}

void acme_site_failed(struct acme_site *s, const char *error, uint64_t min_delay_ms)
{
    const struct cfg_acme *cfg = s->mgr->cfg;
    uint64_t delay = cfg->retry_initial_ms;
    for (unsigned i = 0; i < s->failures && delay < cfg->retry_max_ms; i++) {
        delay *= 2;
    }
    if (delay > cfg->retry_max_ms) {
        delay = cfg->retry_max_ms;
    }
    if (delay < min_delay_ms) {
        delay = min_delay_ms; /* the CA's Retry-After wins over retry_max */
    }
    s->failures++;
    s->chal_index++; /* the next configured challenge type goes first next time */
    struct log_line l;
    log_begin(&l, CFG_LOG_WARN, "acme_failed");
    log_str(&l, "name", s->names[0]);
    log_str(&l, "error", error);
    log_int(&l, "attempt", s->failures);
    log_int(&l, "retry_in_ms", (int64_t)delay);
    log_str(&l, "serving", s->cert != NULL ? "the current certificate" : "nothing yet");
    log_end(&l);
    s->state = ACME_SITE_IDLE;
    s->retry_at = (int64_t)time(NULL) + (int64_t)(delay / 1000);
    acme_site_notify(s, -1, error);
    do_schedule(s, delay);
}

/* Another instance may have stored a newer certificate while we waited or slept. */
static bool do_take_stored(struct acme_site *s)
{
    struct tls_cert *cert = NULL;
    int64_t nb = 0;
    int64_t na = 0;
    if (do_read_stored(s, &cert, &nb, &na) != 0) {
        return false;
    }
    if (s->cert != NULL && na <= s->not_after) {
        tls_cert_unref(cert);
        return false;
    }
    do_install(s, cert, nb, na);
    return true;
}

static void do_order(struct acme_site *s)
{
    struct acme_mgr *m = s->mgr;
    if (s->state == ACME_SITE_ORDERING || s->state == ACME_SITE_QUEUED || m->closing) {
        return;
    }
    if (s->retired) {
        s->state = ACME_SITE_IDLE;
        return;
    }
    int rc = acme_storage_lock(m->st, s->names[0], m->owner, LOCK_STALE_S);
    if (rc == -EBUSY) {
        if (s->state != ACME_SITE_WAITING) {
            log_msg(CFG_LOG_INFO, "acme_waiting_for_lock", "%s: another instance is ordering "
                    "it; waiting for its result", s->names[0]);
        }
        s->state = ACME_SITE_WAITING;
        if (do_take_stored(s) && do_fresh(s)) {
            do_schedule_renewal(s);
            return;
        }
        do_schedule(s, LOCK_WAIT_MS);
        return;
    }
    if (rc != 0) {
        acme_site_failed(s, "cannot take the storage lock (check acme.storage permissions)", 0);
        return;
    }
    s->locked = true;
    if (do_take_stored(s) && do_fresh(s)) {
        do_unlock(s);
        do_schedule_renewal(s);
        return;
    }
    if (s->on_demand && !acme_od_may_order(s)) {
        do_unlock(s); /* queued: the lock is taken again when a slot frees */
        return;
    }
    s->state = ACME_SITE_ORDERING;
    s->order_start_ms = uv_now(m->loop);
    m->stats.orders++;
    uv_timer_start(&s->lock_timer, on_lock_refresh, LOCK_REFRESH_MS, LOCK_REFRESH_MS);
    s->order = acme_order_start(m->client, (const char *const *)s->names, s->n_names,
                                s->chal_index, on_order_done, s);
    if (s->order == NULL) {
        m->stats.order_failures++;
        do_unlock(s);
        acme_site_failed(s, "cannot start the order (out of memory)", 0);
    }
}

void acme_site_order(struct acme_site *s)
{
    if (s->state == ACME_SITE_QUEUED) {
        s->state = ACME_SITE_IDLE;
    }
    do_order(s);
}

void acme_site_start(struct acme_site *s)
{
    struct tls_cert *cert = NULL;
    int64_t nb = 0;
    int64_t na = 0;
    if (do_read_stored(s, &cert, &nb, &na) == 0 && na <= (int64_t)time(NULL)) {
        log_msg(CFG_LOG_INFO, "acme_certificate_expired", "%s: the stored certificate expired; "
                "ordering a new one", s->names[0]);
        tls_cert_unref(cert);
        cert = NULL;
    }
    if (cert != NULL) {
        do_install(s, cert, nb, na);
        log_msg(CFG_LOG_INFO, "acme_certificate_loaded", "%s: from storage, valid until %lld",
                s->names[0], (long long)na);
    }
    if (do_fresh(s)) {
        do_schedule_renewal(s);
        return;
    }
    do_order(s);
}
