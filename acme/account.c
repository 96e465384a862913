/* account.c - the ACME account: its key and URL kept in storage, created once (with an
 * External Account Binding when configured), found again when only the key survived. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

#define PROBLEM_NO_ACCOUNT "urn:ietf:params:acme:error:accountDoesNotExist"

/* The account's directory is named after its contact, so a new email gets its own
 * account: "ops@example.com" is "ops_at_example.com"; characters a file name should not
 * carry become '_'. */
static void do_account_name(const char *email, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = email; *p != '\0' && o + 5 < cap; p++) {
        char ch = *p;
        if (ch == '@') {
            memcpy(out + o, "_at_", 4);
            o += 4;
            continue;
        }
        bool keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
        out[o++] = keep ? ch : '_';
    }
    out[o] = '\0';
}

static void do_account_path(struct acme_client *c, const char *file, char *out, size_t cap)
{
    char who[256] = "default";
    if (c->cfg->email != NULL) {
        do_account_name(c->cfg->email, who, sizeof(who));
    }
    char account[256];
    if (acme_storage_name_key(who, account, sizeof(account)) != 0) {
        snprintf(account, sizeof(account), "default");
    }
    if (acme_storage_account_path(c->ca_key, account, file, out, cap) != 0) {
        out[0] = '\0';
    }
}

/* Every order waiting for the account goes on, or fails with the same reason. */
static void do_release(struct acme_client *c, const char *error)
{
    c->account_busy = false;
    struct acme_order *o = c->account_waiters;
    c->account_waiters = NULL;
    while (o != NULL) {
        struct acme_order *next = o->wait_next;
        o->wait_next = NULL;
        if (error != NULL) {
            acme_order_fail(o, "%s", error);
        } else {
            o->after_account(o);
        }
        o = next;
    }
}

static void do_store_url(struct acme_client *c)
{
    char path[1024];
    do_account_path(c, "account.json", path, sizeof(path));
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "url", c->kid);
    cJSON_AddStringToObject(doc, "ca", c->directory_url);
    if (c->cfg->email != NULL) {
        cJSON_AddStringToObject(doc, "email", c->cfg->email);
    }
    char *text = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (text == NULL || acme_storage_write(c->st, path, text, strlen(text), 0644) != 0) {
        log_msg(CFG_LOG_WARN, "acme_account_not_saved", "cannot write %s/%s: the account will "
                "be looked up again next start", acme_storage_root(c->st), path);
    }
    free(text);
}

static void do_new_account(struct acme_order *o, bool only_existing);

static void on_new_account(struct acme_order *o, const struct acme_http_response *res)
{
    struct acme_client *c = o->client;
    if (res->status == 400 && o->post_payload != NULL &&
        strstr(o->post_payload, "onlyReturnExisting") != NULL &&
        strstr(res->body != NULL ? res->body : "", PROBLEM_NO_ACCOUNT) != NULL) {
        do_new_account(o, false); /* the key is known but not its account: register it */
        return;
    }
    const char *loc = acme_http_header(res, "location");
    if ((res->status != 200 && res->status != 201) || loc == NULL) {
        char why[700];
        char msg[900];
        acme_problem_text(res, why, sizeof(why));
        snprintf(msg, sizeof(msg), "account registration refused: %s%s", why,
                 c->cfg->eab_kid == NULL ? " (does the CA require acme.eab?)" : "");
        do_release(c, msg);
        return;
    }
    c->kid = strdup(loc);
    if (c->kid == NULL) {
        do_release(c, "out of memory");
        return;
    }
    do_store_url(c);
    acme_log_step(res->status == 201 ? "acme_account_created" : "acme_account_loaded",
                  o->names[0], o->start_ms, c->loop);
    do_release(c, NULL);
}

/* The externalAccountBinding member, when the CA asked for one. */
static int do_add_eab(struct acme_client *c, cJSON *doc)
{
    if (c->cfg->eab_kid == NULL) {
        return 0;
    }
    uint8_t mac[256];
    size_t mac_len = 0;
    const char *k = c->cfg->eab_hmac_key;
    if (acme_b64url_decode(k, strlen(k), mac, sizeof(mac), &mac_len) != 0) {
        return -1;
    }
    char *eab = acme_eab_jws(c->account_key, c->cfg->eab_kid, mac, mac_len, c->new_account);
    OPENSSL_cleanse(mac, sizeof(mac));
    cJSON *obj = eab != NULL ? cJSON_Parse(eab) : NULL;
    free(eab);
    if (obj == NULL) {
        return -1;
    }
    cJSON_AddItemToObject(doc, "externalAccountBinding", obj);
    return 0;
}

static void do_new_account(struct acme_order *o, bool only_existing)
{
    struct acme_client *c = o->client;
    cJSON *doc = cJSON_CreateObject();
    if (only_existing) {
        cJSON_AddTrueToObject(doc, "onlyReturnExisting");
    } else {
        cJSON_AddTrueToObject(doc, "termsOfServiceAgreed");
        if (c->cfg->email != NULL) {
            char mailto[320];
            snprintf(mailto, sizeof(mailto), "mailto:%s", c->cfg->email);
            cJSON *contact = cJSON_AddArrayToObject(doc, "contact");
            cJSON_AddItemToArray(contact, cJSON_CreateString(mailto));
        }
        if (do_add_eab(c, doc) != 0) {
            cJSON_Delete(doc);
            do_release(c, "acme.eab.hmac_key is not usable base64url");
            return;
        }
    }
    char *payload = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (payload == NULL) {
        do_release(c, "out of memory");
        return;
    }
    acme_order_post(o, c->new_account, payload, true, on_new_account);
    free(payload);
}

/* Loads the stored key and URL; returns whether the URL was there too. */
static bool do_load(struct acme_client *c)
{
    char path[1024];
    char *text = NULL;
    size_t len = 0;
    do_account_path(c, "account.key", path, sizeof(path));
    if (c->account_key == NULL && acme_storage_read(c->st, path, &text, &len) == 0) {
        c->account_key = acme_key_from_pem(text, len);
        OPENSSL_cleanse(text, len);
        free(text);
        if (c->account_key == NULL) {
            log_msg(CFG_LOG_WARN, "acme_account_key_corrupt", "%s/%s is not a usable key: "
                    "registering a new account", acme_storage_root(c->st), path);
        }
    }
    if (c->account_key == NULL) {
        return false;
    }
    do_account_path(c, "account.json", path, sizeof(path));
    if (acme_storage_read(c->st, path, &text, &len) != 0) {
        return false;
    }
    cJSON *doc = cJSON_ParseWithLength(text, len);
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "url"));
    c->kid = url != NULL ? strdup(url) : NULL;
    cJSON_Delete(doc);
    free(text);
    return c->kid != NULL;
}

static int do_create_key(struct acme_client *c)
{
    EVP_PKEY_free(c->account_key);
    c->account_key = acme_key_generate(ACME_KEY_EC256);
    size_t len = 0;
    char *pem = c->account_key != NULL ? acme_key_to_pem(c->account_key, &len) : NULL;
    if (pem == NULL) {
        return -1;
    }
    char path[1024];
    do_account_path(c, "account.key", path, sizeof(path));
    int rc = acme_storage_write(c->st, path, pem, len, 0600);
    OPENSSL_cleanse(pem, len);
    free(pem);
    return rc;
}

void acme_account_ensure(struct acme_order *o, acme_order_step next)
{
    struct acme_client *c = o->client;
    if (c->kid != NULL) {
        next(o);
        return;
    }
    o->after_account = next;
    o->wait_next = c->account_waiters;
    c->account_waiters = o;
    if (c->account_busy) {
        return;
    }
    c->account_busy = true;
    if (do_load(c)) {
        acme_log_step("acme_account_loaded", o->names[0], o->start_ms, c->loop);
        do_release(c, NULL);
        return;
    }
    if (c->account_key != NULL) {
        do_new_account(o, true);
        return;
    }
    if (do_create_key(c) != 0) {
        do_release(c, "cannot create or store the account key (check acme.storage)");
        return;
    }
    do_new_account(o, false);
}

char *acme_client_sign_new_account(struct acme_client *c, const char *nonce, const char *url,
                                   const char *payload, size_t *len)
{
    return acme_jws_sign(c->account_key, NULL, nonce, url, payload, len);
}

void acme_account_forget(struct acme_client *c)
{
    char path[1024];
    free(c->kid);
    c->kid = NULL;
    do_account_path(c, "account.json", path, sizeof(path));
    acme_storage_remove(c->st, path);
}
