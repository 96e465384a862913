/* client.c - the ACME protocol (RFC 8555) for one order: directory, nonces, signed POSTs
 * with badNonce retries, order, authorizations and challenges, finalize, download. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client_int.h"

#define NONCE_RETRIES 5
#define POLL_MAX 120
#define HTTP_TIMEOUT_MS 30000

static void do_run(struct acme_order *o);
static void do_step_authz(struct acme_order *o);

void acme_log_step(const char *event, const char *name, uint64_t start_ms, uv_loop_t *loop)
{
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, event);
    log_str(&l, "name", name);
    log_int(&l, "elapsed_ms", (int64_t)(uv_now(loop) - start_ms));
    log_end(&l);
}

/* ---- failure and completion ----------------------------------------------------------- */

static void on_order_closed(uv_handle_t *h)
{
    struct acme_order *o = h->data;
    o->closed = true;
    if (!o->working) {
        acme_order_free(o);
    }
}

/* After the timer closed and no key generation runs any more. */
void acme_order_free(struct acme_order *o)
{
    for (size_t i = 0; i < o->n_names; i++) {
        free(o->names[i]);
    }
    for (size_t i = 0; i < o->n_authz; i++) {
        free(o->authz[i]);
    }
    free(o->authz);
    free(o->names);
    free(o->order_url);
    free(o->finalize_url);
    free(o->cert_url);
    free(o->chal_url);
    free(o->chal_token);
    free(o->chal_name);
    free(o->post_url);
    free(o->post_payload);
    EVP_PKEY_free(o->cert_key);
    free(o);
}

static void do_withdraw_challenge(struct acme_order *o)
{
    struct acme_client *c = o->client;
    if (o->chal_token != NULL && c->hooks.cleanup != NULL) {
        c->hooks.cleanup(c->hooks.arg, o->chal_type, o->chal_name, o->chal_token);
    }
    free(o->chal_token);
    o->chal_token = NULL;
}

static void do_unlink(struct acme_order *o)
{
    struct acme_order **pp = &o->client->orders;
    while (*pp != NULL && *pp != o) {
        pp = &(*pp)->next;
    }
    if (*pp == o) {
        *pp = o->next;
    }
    pp = &o->client->account_waiters;
    while (*pp != NULL && *pp != o) {
        pp = &(*pp)->wait_next;
    }
    if (*pp == o) {
        *pp = o->wait_next;
    }
}

static void do_dispose(struct acme_order *o)
{
    o->done = true;
    do_withdraw_challenge(o);
    do_unlink(o);
    uv_close((uv_handle_t *)&o->timer, on_order_closed);
}

void acme_order_fail(struct acme_order *o, const char *fmt, ...)
{
    if (o->done) {
        return;
    }
    char why[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    acme_order_cb cb = o->cb;
    void *arg = o->arg;
    uint64_t retry_after_ms = o->retry_after_ms;
    do_dispose(o);
    cb(arg, -1, why, retry_after_ms, NULL, 0, NULL, 0);
}

void acme_order_succeed(struct acme_order *o, const char *pem, size_t len)
{
    size_t key_len = 0;
    char *key_pem = acme_key_to_pem(o->cert_key, &key_len);
    if (key_pem == NULL) {
        acme_order_fail(o, "cannot encode the certificate key");
        return;
    }
    acme_order_cb cb = o->cb;
    void *arg = o->arg;
    do_dispose(o);
    cb(arg, 0, NULL, 0, pem, len, key_pem, key_len);
    OPENSSL_cleanse(key_pem, key_len);
    free(key_pem);
}

/* ---- problems and waiting -------------------------------------------------------------- */

/* "type: detail" of an RFC 7807 problem document, or the status line. */
void acme_problem_text(const struct acme_http_response *res, char *out, size_t cap)
{
    cJSON *doc = cJSON_ParseWithLength(res->body != NULL ? res->body : "", res->body_len);
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "type"));
    const char *detail = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "detail"));
    int n;
    if (type != NULL) {
        n = snprintf(out, cap, "HTTP %d: %s: %s", res->status, type,
                     detail != NULL ? detail : "(no detail)");
    } else {
        n = snprintf(out, cap, "HTTP %d", res->status);
    }
    if (n < 0 || (size_t)n >= cap) {
        out[cap - 1] = '\0';
    }
    cJSON_Delete(doc);
}

/* Retry-After as seconds or an HTTP-date; default_ms when absent or unreadable. */
uint64_t acme_retry_after_ms(const struct acme_http_response *res, uint64_t default_ms)
{
    return acme_retry_after_max(res, default_ms, 3600000);
}

uint64_t acme_retry_after_max(const struct acme_http_response *res, uint64_t default_ms,
                              uint64_t max_ms)
{
    const char *v = acme_http_header(res, "retry-after");
    if (v == NULL) {
        return default_ms;
    }
    char *end = NULL;
    unsigned long secs = strtoul(v, &end, 10);
    if (end != v && *end == '\0') {
        return (uint64_t)secs * 1000 > max_ms ? max_ms : (uint64_t)secs * 1000;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm) == NULL) {
        return default_ms;
    }
    time_t when = timegm(&tm);
    time_t now = time(NULL);
    if (when <= now) {
        return 0;
    }
    uint64_t ms = (uint64_t)(when - now) * 1000;
    return ms > max_ms ? max_ms : ms;
}

uint64_t acme_poll_delay_ms(const struct acme_order *o, const struct acme_http_response *res)
{
    /* A CA near by settles in milliseconds, a public one within a second or two: ask
     * soon (a handshake may be waiting), then back off to once a second. */
    uint64_t ms = 25;
    for (int i = 0; i < o->polls && ms < 1000; i++) {
        ms *= 2;
    }
    return acme_retry_after_ms(res, ms > 1000 ? 1000 : ms);
}

static void on_wait_done(uv_timer_t *t)
{
    struct acme_order *o = t->data;
    acme_order_step next = o->after_wait;
    o->after_wait = NULL;
    if (next != NULL && !o->done) {
        next(o);
    }
}

void acme_order_wait(struct acme_order *o, uint64_t ms, acme_order_step next)
{
    o->after_wait = next;
    uv_timer_start(&o->timer, on_wait_done, ms, 0);
}

/* ---- nonces and signed POSTs ------------------------------------------------------------ */

static void do_keep_nonce(struct acme_client *c, const struct acme_http_response *res)
{
    const char *nonce = res != NULL ? acme_http_header(res, "replay-nonce") : NULL;
    if (nonce == NULL || c->n_nonces == ACME_NONCE_POOL) {
        return;
    }
    c->nonces[c->n_nonces] = strdup(nonce);
    if (c->nonces[c->n_nonces] != NULL) {
        c->n_nonces++;
    }
}

static void do_send_post(struct acme_order *o);
static void do_restart(struct acme_order *o);

static bool do_account_gone(const struct acme_http_response *res)
{
    return res->status >= 400 && res->body != NULL &&
           strstr(res->body, "urn:ietf:params:acme:error:accountDoesNotExist") != NULL;
}

static void on_nonce(void *arg, const struct acme_http_response *res)
{
    struct acme_order *o = arg;
    if (o->done) {
        return;
    }
    if (res->error != 0) {
        acme_order_fail(o, "cannot reach the CA for a nonce (%s): check acme.ca and the network",
                        res->error_text);
        return;
    }
    do_keep_nonce(o->client, res);
    if (o->client->n_nonces == 0) {
        acme_order_fail(o, "the CA sent no Replay-Nonce from %s", o->client->new_nonce);
        return;
    }
    do_send_post(o);
}

static void on_post_response(void *arg, const struct acme_http_response *res)
{
    struct acme_order *o = arg;
    if (o->done) {
        return;
    }
    if (res->error != 0) {
        acme_order_fail(o, "POST %s: %s", o->post_url, res->error_text);
        return;
    }
    do_keep_nonce(o->client, res);
    if (res->status >= 400) {
        /* rateLimited and a busy CA say when to come back (RFC 8555 6.6); the back-off
         * after this order fails waits at least that long. A day at most. */
        o->retry_after_ms = acme_retry_after_max(res, 0, 24 * 3600 * 1000ull);
    }
    if (res->status == 400 && o->post_tries < NONCE_RETRIES) {
        cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "type"));
        bool bad_nonce = type != NULL && strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0;
        cJSON_Delete(doc);
        if (bad_nonce) {
            o->post_tries++; /* the error carried a fresh nonce, kept above */
            do_send_post(o);
            return;
        }
    }
    if (!o->post_jwk && o->account_resets == 0 && do_account_gone(res)) {
        /* The CA forgot the account (a reset test CA, a deactivated account): register
         * again and start this order over. */
        log_msg(CFG_LOG_WARN, "acme_account_gone", "the CA no longer knows account %s; "
                "registering again", o->client->kid);
        o->account_resets++;
        acme_account_forget(o->client);
        do_restart(o);
        return;
    }
    acme_post_cb next = o->post_next;
    next(o, res);
}

static void do_send_post(struct acme_order *o)
{
    struct acme_client *c = o->client;
    if (c->n_nonces == 0) {
        if (acme_http_request(c->http, "HEAD", c->new_nonce, NULL, NULL, 0, HTTP_TIMEOUT_MS,
                              on_nonce, o) != 0) {
            acme_order_fail(o, "bad newNonce URL %s", c->new_nonce);
        }
        return;
    }
    char *nonce = c->nonces[--c->n_nonces];
    size_t len = 0;
    char *jws = o->post_jwk ? acme_client_sign_new_account(c, nonce, o->post_url,
                                                           o->post_payload, &len)
                            : acme_jws_sign(c->account_key, c->kid, nonce, o->post_url,
                                            o->post_payload, &len);
    free(nonce);
    if (jws == NULL) {
        acme_order_fail(o, "cannot sign the request to %s", o->post_url);
        return;
    }
    int rc = acme_http_request(c->http, "POST", o->post_url, "application/jose+json", jws, len,
                               HTTP_TIMEOUT_MS, on_post_response, o);
    free(jws);
    if (rc != 0) {
        acme_order_fail(o, "bad URL from the CA: %s", o->post_url);
    }
}

void acme_order_post(struct acme_order *o, const char *url, const char *payload, bool jwk,
                     acme_post_cb next)
{
    char *u = strdup(url);
    char *p = payload != NULL ? strdup(payload) : NULL;
    if (u == NULL || (payload != NULL && p == NULL)) {
        free(u);
        free(p);
        acme_order_fail(o, "out of memory");
        return;
    }
    free(o->post_url);
    free(o->post_payload);
    o->post_url = u;
    o->post_payload = p;
    o->post_jwk = jwk;
    o->post_tries = 0;
    o->post_next = next;
    do_send_post(o);
}

/* ---- the directory ------------------------------------------------------------------------ */

static char *do_dup_url(cJSON *doc, const char *key)
{
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, key));
    return v != NULL ? strdup(v) : NULL;
}

static void on_directory(void *arg, const struct acme_http_response *res)
{
    struct acme_order *o = arg;
    if (o->done) {
        return;
    }
    struct acme_client *c = o->client;
    if (res->error != 0 || res->status != 200) {
        char why[512];
        if (res->error != 0) {
            snprintf(why, sizeof(why), "%s", res->error_text);
        } else {
            acme_problem_text(res, why, sizeof(why));
        }
        acme_order_fail(o, "cannot read the ACME directory %s: %s (check acme.ca and "
                        "acme.ca_root)", c->directory_url, why);
        return;
    }
    if (c->new_order != NULL) {
        do_run(o); /* another order fetched it meanwhile */
        return;
    }
    cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
    c->new_nonce = do_dup_url(doc, "newNonce");
    c->new_account = do_dup_url(doc, "newAccount");
    c->new_order = do_dup_url(doc, "newOrder");
    cJSON_Delete(doc);
    if (c->new_nonce == NULL || c->new_account == NULL || c->new_order == NULL) {
        acme_order_fail(o, "%s is not an ACME directory (newNonce, newAccount or newOrder "
                        "missing)", c->directory_url);
        return;
    }
    do_run(o);
}

/* ---- the order ---------------------------------------------------------------------------- */

static int do_copy_authz(struct acme_order *o, cJSON *doc)
{
    cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "authorizations");
    int n = cJSON_GetArraySize(list);
    if (n <= 0) {
        return -1;
    }
    o->authz = calloc((size_t)n, sizeof(*o->authz));
    if (o->authz == NULL) {
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const char *u = cJSON_GetStringValue(cJSON_GetArrayItem(list, i));
        if (u == NULL || (o->authz[i] = strdup(u)) == NULL) {
            return -1;
        }
        o->n_authz++;
    }
    return 0;
}

static void on_new_order(struct acme_order *o, const struct acme_http_response *res)
{
    if (res->status != 201) {
        char why[512];
        acme_problem_text(res, why, sizeof(why));
        acme_order_fail(o, "new order refused: %s", why);
        return;
    }
    const char *loc = acme_http_header(res, "location");
    cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
    o->finalize_url = do_dup_url(doc, "finalize");
    o->order_url = loc != NULL ? strdup(loc) : NULL;
    int rc = do_copy_authz(o, doc);
    cJSON_Delete(doc);
    if (rc != 0 || o->finalize_url == NULL || o->order_url == NULL) {
        acme_order_fail(o, "the CA's order has no authorizations, finalize URL or Location");
        return;
    }
    acme_log_step("acme_order_created", o->names[0], o->start_ms, o->client->loop);
    o->authz_index = 0;
    do_step_authz(o);
}

static void do_new_order(struct acme_order *o)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON *ids = cJSON_AddArrayToObject(doc, "identifiers");
    for (size_t i = 0; i < o->n_names; i++) {
        cJSON *id = cJSON_CreateObject();
        cJSON_AddStringToObject(id, "type", "dns");
        cJSON_AddStringToObject(id, "value", o->names[i]);
        cJSON_AddItemToArray(ids, id);
    }
    char *payload = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (payload == NULL) {
        acme_order_fail(o, "out of memory");
        return;
    }
    acme_order_post(o, o->client->new_order, payload, false, on_new_order);
    free(payload);
}

static void do_step_authz(struct acme_order *o)
{
    if (o->authz_index >= o->n_authz) {
        acme_order_finalize(o);
        return;
    }
    acme_authz_begin(o);
}

void acme_order_authz_done(struct acme_order *o)
{
    o->authz_index++;
    do_step_authz(o);
}

/* Each step makes sure what it needs exists: directory, then account, then the order. */
static void do_run(struct acme_order *o)
{
    struct acme_client *c = o->client;
    if (c->new_order == NULL) {
        if (acme_http_request(c->http, "GET", c->directory_url, NULL, NULL, 0, HTTP_TIMEOUT_MS,
                              on_directory, o) != 0) {
            acme_order_fail(o, "acme.ca is not a usable URL: %s", c->directory_url);
        }
        return;
    }
    if (c->kid == NULL) {
        acme_account_ensure(o, do_run);
        return;
    }
    do_new_order(o);
}

/* Back to the start: account, then a new order; what the old one learned is dropped. */
static void do_restart(struct acme_order *o)
{
    for (size_t i = 0; i < o->n_authz; i++) {
        free(o->authz[i]);
    }
    free(o->authz);
    o->authz = NULL;
    o->n_authz = 0;
    free(o->order_url);
    free(o->finalize_url);
    o->order_url = NULL;
    o->finalize_url = NULL;
    do_run(o);
}

struct acme_order *acme_order_start(struct acme_client *c, const char *const *names, size_t n,
                                    size_t first_challenge, acme_order_cb cb, void *arg)
{
    struct acme_order *o = calloc(1, sizeof(*o));
    if (o == NULL || n == 0) {
        free(o);
        return NULL;
    }
    o->client = c;
    o->cb = cb;
    o->arg = arg;
    o->chal_index = first_challenge % c->cfg->n_challenges;
    o->names = calloc(n, sizeof(*o->names));
    uv_timer_init(c->loop, &o->timer);
    o->timer.data = o;
    o->start_ms = uv_now(c->loop);
    for (size_t i = 0; o->names != NULL && i < n; i++) {
        o->names[i] = strdup(names[i]);
        o->n_names += o->names[i] != NULL;
    }
    o->next = c->orders;
    c->orders = o;
    if (o->n_names != n) {
        do_dispose(o);
        return NULL;
    }
    do_run(o);
    return o;
}

void acme_order_cancel(struct acme_order *o)
{
    if (o != NULL && !o->done) {
        do_dispose(o);
    }
}

size_t acme_order_challenge_index(const struct acme_order *o)
{
    return o->chal_index;
}

/* ---- the client --------------------------------------------------------------------------- */

struct acme_client *acme_client_new(uv_loop_t *loop, struct acme_http *http,
                                    struct acme_storage *st, const struct cfg_acme *cfg,
                                    const struct acme_challenge_hooks *hooks)
{
    struct acme_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->loop = loop;
    c->http = http;
    c->st = st;
    c->cfg = cfg;
    c->hooks = *hooks;
    c->directory_url = strdup(cfg->ca);
    c->ca_key = acme_storage_ca_key(cfg->ca);
    if (c->directory_url == NULL || c->ca_key == NULL) {
        acme_client_free(c);
        return NULL;
    }
    return c;
}

void acme_client_free(struct acme_client *c)
{
    if (c == NULL) {
        return;
    }
    while (c->orders != NULL) {
        acme_order_cancel(c->orders);
    }
    for (size_t i = 0; i < c->n_nonces; i++) {
        free(c->nonces[i]);
    }
    free(c->directory_url);
    free(c->ca_key);
    free(c->new_nonce);
    free(c->new_account);
    free(c->new_order);
    free(c->kid);
    EVP_PKEY_free(c->account_key);
    free(c);
}
