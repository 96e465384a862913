/* authz.c - one authorization: pick a challenge by preference, make its answer reachable,
 * tell the CA, and poll until the CA says valid or invalid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"

#define POLL_FIRST_MS 25

static const char *const challenge_names[] = {"tls-alpn-01", "http-01"};

static void do_poll(struct acme_order *o);

static cJSON *do_find_challenge(cJSON *doc, const char *type)
{
    cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "challenges");
    cJSON *ch = NULL;
    cJSON_ArrayForEach(ch, list)
    {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "type"));
        if (t != NULL && strcmp(t, type) == 0) {
            return ch;
        }
    }
    return NULL;
}

/* The first configured type the CA offers, starting at the order's current preference. */
static cJSON *do_choose(struct acme_order *o, cJSON *doc)
{
    const struct cfg_acme *cfg = o->client->cfg;
    for (size_t k = 0; k < cfg->n_challenges; k++) {
        size_t idx = (o->chal_index + k) % cfg->n_challenges;
        cJSON *ch = do_find_challenge(doc, challenge_names[cfg->challenges[idx]]);
        if (ch != NULL) {
            o->chal_index = idx;
            o->chal_type = cfg->challenges[idx];
            return ch;
        }
    }
    return NULL;
}

static void on_challenge_posted(struct acme_order *o, const struct acme_http_response *res)
{
    if (res->status != 200) {
        char why[512];
        acme_problem_text(res, why, sizeof(why));
        acme_order_fail(o, "%s challenge for %s refused: %s", challenge_names[o->chal_type],
                        o->chal_name, why);
        return;
    }
    acme_order_wait(o, POLL_FIRST_MS, do_poll);
}

static int do_answer(struct acme_order *o, cJSON *doc)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "identifier"), "value"));
    cJSON *ch = do_choose(o, doc);
    if (ch == NULL || name == NULL) {
        acme_order_fail(o, "the CA offers none of the configured challenge types for %s "
                        "(acme.challenges)", name != NULL ? name : "a name");
        return -1;
    }
    const char *token = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "token"));
    const char *url = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ch, "url"));
    if (token == NULL || url == NULL) {
        acme_order_fail(o, "malformed challenge from the CA for %s", name);
        return -1;
    }
    char *ka = acme_key_authorization(token, o->client->account_key);
    free(o->chal_name);
    free(o->chal_url);
    o->chal_name = strdup(name);
    o->chal_url = strdup(url);
    o->chal_token = strdup(token);
    struct acme_challenge_hooks *hooks = &o->client->hooks;
    int rc = ka != NULL && o->chal_name != NULL && o->chal_url != NULL && o->chal_token != NULL
                 ? hooks->present(hooks->arg, o->chal_type, name, token, ka)
                 : -1;
    free(ka);
    if (rc != 0) {
        acme_order_fail(o, "cannot set up the %s answer for %s", challenge_names[o->chal_type],
                        name);
        return -1;
    }
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "acme_challenge_ready");
    log_str(&l, "name", o->names[0]);
    log_str(&l, "identifier", name);
    log_str(&l, "challenge", challenge_names[o->chal_type]);
    log_int(&l, "elapsed_ms", (int64_t)(uv_now(o->client->loop) - o->start_ms));
    log_end(&l);
    acme_order_post(o, o->chal_url, "{}", false, on_challenge_posted);
    return 0;
}

/* The CA's own words on a failed challenge: they say what to fix (DNS, firewall...). */
static void do_invalid(struct acme_order *o, cJSON *doc)
{
    const char *detail = NULL;
    cJSON *ch = o->chal_type <= CFG_CHALLENGE_HTTP_01
                    ? do_find_challenge(doc, challenge_names[o->chal_type])
                    : NULL;
    cJSON *err = cJSON_GetObjectItemCaseSensitive(ch, "error");
    detail = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "detail"));
    acme_order_fail(o, "%s validation of %s failed: %s (the CA must reach this server on port "
                    "%s for that name)", challenge_names[o->chal_type],
                    o->chal_name != NULL ? o->chal_name : o->names[0],
                    detail != NULL ? detail : "no detail",
                    o->chal_type == CFG_CHALLENGE_HTTP_01 ? "80" : "443");
}

static void on_authz(struct acme_order *o, const struct acme_http_response *res)
{
    if (res->status != 200) {
        char why[512];
        acme_problem_text(res, why, sizeof(why));
        acme_order_fail(o, "cannot read authorization: %s", why);
        return;
    }
    cJSON *doc = cJSON_ParseWithLength(res->body, res->body_len);
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "status"));
    if (status != NULL && strcmp(status, "valid") == 0) {
        cJSON_Delete(doc);
        if (o->chal_token != NULL) {
            struct acme_challenge_hooks *hooks = &o->client->hooks;
            hooks->cleanup(hooks->arg, o->chal_type, o->chal_name, o->chal_token);
            free(o->chal_token);
            o->chal_token = NULL;
            acme_log_step("acme_authorization_valid", o->names[0], o->start_ms, o->client->loop);
        }
        acme_order_authz_done(o);
        return;
    }
    if (status != NULL && strcmp(status, "pending") == 0 && o->chal_token == NULL) {
        do_answer(o, doc);
        cJSON_Delete(doc);
        return;
    }
    if (status != NULL && strcmp(status, "pending") == 0 && o->polls++ < 120) {
        cJSON_Delete(doc);
        acme_order_wait(o, acme_poll_delay_ms(o, res), do_poll);
        return;
    }
    if (status != NULL && strcmp(status, "invalid") == 0) {
        do_invalid(o, doc);
    } else {
        acme_order_fail(o, "authorization for %s is %s", o->names[0],
                        status != NULL ? status : "unreadable");
    }
    cJSON_Delete(doc);
}

static void do_poll(struct acme_order *o)
{
    acme_order_post(o, o->authz[o->authz_index], NULL, false, on_authz);
}

void acme_authz_begin(struct acme_order *o)
{
    o->polls = 0;
    do_poll(o);
}
