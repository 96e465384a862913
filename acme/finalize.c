/* finalize.c - the end of an order: a fresh key (made off the loop), the CSR, finalize,
 * waiting while the CA is processing, and the download of the PEM chain. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"


static void do_poll_order(struct acme_order *o);

static void on_certificate(struct acme_order *o, const struct acme_http_response *res)
{
    if (res->status != 200 || res->body_len == 0 ||
        strstr(res->body, "-----BEGIN CERTIFICATE-----") == NULL) {
        char why[512];
        acme_problem_text(res, why, sizeof(why));
        acme_order_fail(o, "certificate download failed: %s", why);
        return;
    }
    acme_order_succeed(o, res->body, res->body_len);
}

/* Reads an order object; valid -> download, processing -> wait, anything else fails. */
static void on_order_state(struct acme_order *o, const struct acme_http_response *res)
{
    if (res->status != 200) {
        char why[512];
        acme_problem_text(res, why, sizeof(why));
        acme_order_fail(o, "finalize refused: %s", why);
        return;
    }
    cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "status"));
    const char *cert = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "certificate"));
    if (status != NULL && strcmp(status, "valid") == 0 && cert != NULL) {
        free(o->cert_url);
        o->cert_url = strdup(cert);
        cJSON_Delete(doc);
        acme_log_step("acme_order_finalized", o->names[0], o->start_ms, o->client->loop);
        acme_order_post(o, o->cert_url, NULL, false, on_certificate);
        return;
    }
    bool waiting = status != NULL &&
                   (strcmp(status, "processing") == 0 || strcmp(status, "ready") == 0);
    cJSON_Delete(doc);
    if (waiting && o->polls++ < 120) {
        acme_order_wait(o, acme_poll_delay_ms(o, res), do_poll_order);
        return;
    }
    acme_order_fail(o, "order for %s ended %s", o->names[0], status != NULL ? status : "unreadable");
}

static void do_poll_order(struct acme_order *o)
{
    acme_order_post(o, o->order_url, NULL, false, on_order_state);
}

static void do_finalize(struct acme_order *o)
{
    size_t der_len = 0;
    uint8_t *der = acme_csr_der(o->cert_key, (const char *const *)o->names, o->n_names,
                                &der_len);
    char *b64 = der != NULL ? malloc(der_len * 2 + 8) : NULL;
    if (b64 == NULL || acme_b64url_encode(der, der_len, b64, der_len * 2 + 8) == 0) {
        free(der);
        free(b64);
        acme_order_fail(o, "cannot build the CSR");
        return;
    }
    free(der);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "csr", b64);
    free(b64);
    char *payload = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (payload == NULL) {
        acme_order_fail(o, "out of memory");
        return;
    }
    o->polls = 0;
    acme_order_post(o, o->finalize_url, payload, false, on_order_state);
    free(payload);
}

static void on_keygen(uv_work_t *req)
{
    struct acme_order *o = req->data; /* only key_type and cert_key: the loop owns the rest */
    o->cert_key = acme_key_generate(o->key_type);
}

static void on_keygen_done(uv_work_t *req, int status)
{
    struct acme_order *o = req->data;
    o->working = false;
    if (o->closed) {
        acme_order_free(o);
        return;
    }
    if (o->done) {
        return;
    }
    if (status != 0 || o->cert_key == NULL) {
        acme_order_fail(o, "cannot generate the certificate key");
        return;
    }
    do_finalize(o);
}

void acme_order_finalize(struct acme_order *o)
{
    o->keygen.data = o;
    o->key_type = o->client->cfg->key_type == CFG_KEY_RSA2048 ? ACME_KEY_RSA2048 : ACME_KEY_EC256;
    o->working = true;
    int rc = uv_queue_work(o->client->loop, &o->keygen, on_keygen, on_keygen_done);
    if (rc != 0) {
        o->working = false;
        acme_order_fail(o, "cannot queue key generation: %s", uv_strerror(rc));
    }
}
