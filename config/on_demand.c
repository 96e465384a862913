/* on_demand.c - the "on_demand" section: certificates ordered during the first handshake
 * for a name. Its defaults, the value checks the JSON loader and the CLI share, and the
 * section's JSON loader.
 *
 * Which site hosts on-demand names may come from (wildcards, "*") is decided with the
 * other ACME host rules, in cfg_check_acme_host.
 */
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

#define MS_PER_S UINT64_C(1000)
#define MS_PER_MIN (UINT64_C(60) * MS_PER_S)
#define CONCURRENCY_MAX 1000
#define CACHE_SIZE_MAX 10000000
#define RATE_ORDERS_MAX 1000000

void cfg_on_demand_set_defaults(struct cfg_on_demand *od)
{
    od->enabled = false;
    od->allow = NULL;
    od->n_allow = 0;
    od->ask = NULL;
    od->timeout_ms = 60 * MS_PER_S;
    od->ask_cache_ms = MS_PER_MIN;
    od->concurrency = 8;
    od->cache_size = 1000;
    od->rate_orders = 60;
    od->rate_per_ms = MS_PER_MIN;
}

void cfg_on_demand_dispose(struct cfg_on_demand *od)
{
    for (size_t i = 0; i < od->n_allow; i++) {
        free(od->allow[i]);
    }
    free(od->allow);
    od->allow = NULL;
    od->n_allow = 0;
    free(od->ask);
    od->ask = NULL;
}

const char *cfg_check_ask_url(const char *s)
{
    const char *why = cfg_check_acme_url(s);

    if (why == NULL && s != NULL && strchr(s, '#') != NULL) {
        why = "expected an http:// or https:// URL without a #fragment";
    }
    return why;
}

const char *cfg_on_demand_add_allow(struct cfg_on_demand *od, const char *pattern)
{
    static const char expected[] = "expected a host name such as \"example.com\" or "
                                   "\"*.example.com\"";
    const char *why = NULL;

    if (pattern == NULL) {
        return expected;
    }
    char *copy = cfg_strdup(pattern);
    if (copy == NULL) {
        return "out of memory";
    }
    cfg_lower(copy);
    const char *name = strncmp(copy, "*.", 2) == 0 ? copy + 2 : copy;
    if (cfg_ip_family(copy) != 0) {
        why = "expected a host name: certificates are not ordered for IP addresses";
    } else if (!cfg_valid_dns_name(name, false)) {
        why = expected;
    }
    for (size_t k = 0; why == NULL && k < od->n_allow; k++) {
        if (od->allow[k] != NULL && strcmp(od->allow[k], copy) == 0) {
            why = "expected each pattern at most once";
        }
    }
    if (why != NULL) {
        free(copy);
        return why;
    }
    od->allow[od->n_allow++] = copy;
    return NULL;
}

/* JSON loading. */

/* Returns false only for an empty list, which leaves the safety rule to "ask"; a list
 * that is no array, or has bad entries, was reported already. */
static bool do_load_allow(struct cfg_loader *ld, const cJSON *v, struct cfg_on_demand *od)
{
    char sub[CFG_PATH_MAX];
    int n = cfg_json_array(ld, v, "on_demand.allow", false);

    if (n <= 0) {
        return n < 0;
    }
    od->allow = calloc((size_t)n, sizeof(*od->allow));
    if (od->allow == NULL) {
        cfg_json_oom(ld, "on_demand.allow");
        return true;
    }
    const cJSON *item = v->child;
    for (int i = 0; i < n; i++, item = item->next) {
        const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
        const char *why = cfg_on_demand_add_allow(od, s);
        if (why != NULL) {
            cfg_json_index_path(sub, sizeof(sub), "on_demand.allow", (size_t)i);
            cfg_json_expected(ld, sub, why, item);
        }
    }
    return true;
}

static void do_load_ask(struct cfg_loader *ld, const cJSON *v, struct cfg_on_demand *od)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    const char *why = cfg_check_ask_url(s);

    if (why != NULL) {
        cfg_json_expected(ld, "on_demand.ask", why, v);
        return;
    }
    od->ask = cfg_strdup(s);
    if (od->ask == NULL) {
        cfg_json_oom(ld, "on_demand.ask");
    }
}

static void do_load_numbers(struct cfg_loader *ld, const cJSON *v, struct cfg_on_demand *od)
{
    const cJSON *item = cfg_json_get(v, "concurrency");
    uint64_t n;

    if (item != NULL && cfg_json_uint(ld, item, "on_demand.concurrency", 1, CONCURRENCY_MAX, &n)) {
        od->concurrency = (unsigned)n;
    }
    item = cfg_json_get(v, "cache_size");
    if (item != NULL && cfg_json_uint(ld, item, "on_demand.cache_size", 1, CACHE_SIZE_MAX, &n)) {
        od->cache_size = (size_t)n;
    }
    item = cfg_json_get(v, "timeout");
    if (item != NULL) {
        cfg_json_duration(ld, item, "on_demand.timeout", &od->timeout_ms);
    }
    /* "0s" turns the ask cache off: every new handshake for an unknown name asks. */
    item = cfg_json_get(v, "ask_cache");
    if (item != NULL) {
        cfg_json_duration_or_zero(ld, item, "on_demand.ask_cache", &od->ask_cache_ms);
    }
}

static void do_load_rate(struct cfg_loader *ld, const cJSON *v, struct cfg_on_demand *od)
{
    static const char *const keys[] = {"orders", "per", NULL};
    uint64_t n;

    if (!cfg_json_object(ld, v, "on_demand.rate_limit", keys)) {
        return;
    }
    const cJSON *item = cfg_json_get(v, "orders");
    if (item != NULL &&
        cfg_json_uint(ld, item, "on_demand.rate_limit.orders", 1, RATE_ORDERS_MAX, &n)) {
        od->rate_orders = (unsigned)n;
    }
    item = cfg_json_get(v, "per");
    if (item != NULL) {
        cfg_json_duration(ld, item, "on_demand.rate_limit.per", &od->rate_per_ms);
    }
}

void cfg_load_on_demand(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {"enabled",    "allow",      "ask",
                                       "timeout",    "ask_cache",  "concurrency",
                                       "cache_size", "rate_limit", NULL};
    struct cfg_on_demand *od = &ld->cfg->on_demand;
    bool listed = false;

    if (v == NULL || !cfg_json_object(ld, v, "on_demand", keys)) {
        return;
    }
    /* Writing the section is asking for it; "enabled": false keeps it for later. */
    od->enabled = true;
    const cJSON *item = cfg_json_get(v, "enabled");
    if (item != NULL) {
        cfg_json_bool(ld, item, "on_demand.enabled", &od->enabled);
    }
    item = cfg_json_get(v, "allow");
    if (item != NULL) {
        listed = do_load_allow(ld, item, od);
    }
    const cJSON *ask = cfg_json_get(v, "ask");
    if (ask != NULL) {
        do_load_ask(ld, ask, od);
    }
    do_load_numbers(ld, v, od);
    item = cfg_json_get(v, "rate_limit");
    if (item != NULL) {
        do_load_rate(ld, item, od);
    }
    /* A bad "allow" or "ask" was reported already; this is for their absence. */
    if (od->enabled && !listed && ask == NULL) {
        cfg_errs_add(ld->e, "on_demand",
                     "needs \"allow\" or \"ask\", so that moat cannot be made to order "
                     "certificates for any name pointed at it");
    }
}
