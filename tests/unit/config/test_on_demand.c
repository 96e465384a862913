/* test_on_demand.c - the "on_demand" section: defaults, every key read back, every error
 * with its key path, the rule that keeps it from ordering for any name, and the wildcard
 * and "*" site hosts it lets through. The CLI side is in test_cli.c.
 *
 * Runs in tests/unit/config, so fixture paths are "fixtures/...".
 */
#include <stdlib.h>

#include "cfg_test.h"
#include "config_int.h"

#define ASK "\"ask\":\"http://127.0.0.1:9000/check\""
#define RULE                                                                                       \
    "on_demand: needs \"allow\" or \"ask\", so that moat cannot be made to order certificates "    \
    "for any name pointed at it"
#define STAR_NEEDS_ASK                                                                             \
    "\"*\" needs on_demand.ask: without it any name pointed at this server would get a "           \
    "certificate"

/* The document {"on_demand": OD, "sites": [SITES]}. */
static struct cfg *parse_od(const char *od, const char *sites)
{
    char doc[2048];
    int n = snprintf(doc, sizeof(doc), "{\"on_demand\":%s,\"sites\":[%s]}", od, sites);
    CHECK(n > 0 && (size_t)n < sizeof(doc));
    return parse(doc);
}

/* The on_demand value od, with one ACME site, must be refused with want. */
#define CHECK_OD_ERROR(od, want) CHECK_REFUSED(parse_od(od, SITE_ACME), want)
#define CHECK_SITES_ERROR(od, sites, want) CHECK_REFUSED(parse_od(od, sites), want)

static void check_accepted(struct cfg *cfg, int line)
{
    if (cfg == NULL) {
        fprintf(stderr, "line %d: refused:\n  %s\n", line, err);
    }
    CHECK(cfg != NULL);
    cfg_free(cfg);
}
#define CHECK_OD_OK(od) check_accepted(parse_od(od, SITE_ACME), __LINE__)
#define CHECK_SITES_OK(od, sites) check_accepted(parse_od(od, sites), __LINE__)

/* Every value but enabled, allow and ask at its default. */
static void check_default_numbers(const struct cfg_on_demand *od)
{
    CHECK(od->timeout_ms == 60000);
    CHECK(od->ask_cache_ms == 60000);
    CHECK(od->concurrency == 8);
    CHECK(od->cache_size == 1000);
    CHECK(od->rate_orders == 60);
    CHECK(od->rate_per_ms == 60000);
}

static void test_defaults(void)
{
    /* No section: disabled, every default filled anyway. */
    struct cfg *cfg = parse("{\"sites\":[" SITE_ACME "]}");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(!cfg->on_demand.enabled);
        CHECK(cfg->on_demand.allow == NULL && cfg->on_demand.n_allow == 0);
        CHECK(cfg->on_demand.ask == NULL);
        check_default_numbers(&cfg->on_demand);
    }
    cfg_free(cfg);
    cfg = cfg_load_file("fixtures/minimal.json", err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(!cfg->on_demand.enabled);
        check_default_numbers(&cfg->on_demand);
    }
    cfg_free(cfg);

    /* A section is enabled unless it says otherwise. */
    cfg = parse_od("{\"allow\":[\"a.test\"]}", SITE_ACME);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->on_demand.enabled);
        CHECK(cfg->on_demand.n_allow == 1);
        CHECK_STR(cfg->on_demand.allow[0], "a.test");
        CHECK(cfg->on_demand.ask == NULL);
        check_default_numbers(&cfg->on_demand);
    }
    cfg_free(cfg);
    cfg = parse_od("{" ASK "}", SITE_ACME);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->on_demand.enabled && cfg->on_demand.n_allow == 0);
        CHECK_STR(cfg->on_demand.ask, "http://127.0.0.1:9000/check");
    }
    cfg_free(cfg);

    /* Turned off, the values are still read and checked, and the rule does not apply. */
    cfg = parse_od("{\"enabled\":false,\"concurrency\":2}", SITE_ACME);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(!cfg->on_demand.enabled);
        CHECK(cfg->on_demand.concurrency == 2);
    }
    cfg_free(cfg);
    CHECK_OD_ERROR("{\"enabled\":false,\"concurrency\":0}",
                   "on_demand.concurrency: expected an integer from 1 to 1000, got 0");
}

static void test_read_back(void)
{
    struct cfg *cfg = cfg_load_file("fixtures/on_demand.json", err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "on_demand.json: %s\n", err);
        return;
    }
    const struct cfg_on_demand *od = &cfg->on_demand;
    CHECK(od->enabled);
    CHECK(od->n_allow == 2);
    CHECK_STR(od->allow[0], "*.example.com");
    CHECK_STR(od->allow[1], "app.example.org");
    CHECK_STR(od->ask, "http://127.0.0.1:9000/check?token=t1");
    CHECK(od->timeout_ms == 90000);
    CHECK(od->ask_cache_ms == 0);
    CHECK(od->concurrency == 16);
    CHECK(od->cache_size == 5000);
    CHECK(od->rate_orders == 10);
    CHECK(od->rate_per_ms == 3600000);
    CHECK(cfg->n_sites == 3);
    CHECK_STR(cfg->sites[0].hosts[0], "*.example.com");
    CHECK(cfg->sites[0].cert.cert_file == NULL);
    CHECK_STR(cfg->sites[1].hosts[0], "*");
    CHECK_STR(cfg->sites[2].hosts[0], "*.example.net");
    CHECK(cfg->sites[2].cert.cert_file != NULL);
    cfg_free(cfg);

    /* Numbers of seconds, "0" for the ask cache, and each bound itself. */
    cfg = parse_od("{\"allow\":[\"a.test\"],\"timeout\":2.5,\"ask_cache\":0,\"concurrency\":1,"
                   "\"cache_size\":10000000,\"rate_limit\":{\"orders\":1000000,\"per\":30}}",
                   SITE_ACME);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->on_demand.timeout_ms == 2500);
        CHECK(cfg->on_demand.ask_cache_ms == 0);
        CHECK(cfg->on_demand.concurrency == 1);
        CHECK(cfg->on_demand.cache_size == 10000000);
        CHECK(cfg->on_demand.rate_orders == 1000000);
        CHECK(cfg->on_demand.rate_per_ms == 30000);
    }
    cfg_free(cfg);
    cfg = parse_od("{\"allow\":[\"a.test\"],\"concurrency\":1000,\"cache_size\":1,\"ask_cache\":"
                   "\"500ms\",\"rate_limit\":{\"orders\":1}}",
                   SITE_ACME);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->on_demand.concurrency == 1000 && cfg->on_demand.cache_size == 1);
        CHECK(cfg->on_demand.ask_cache_ms == 500);
        CHECK(cfg->on_demand.rate_orders == 1 && cfg->on_demand.rate_per_ms == 60000);
    }
    cfg_free(cfg);

    /* An https URL, one with a port and query, one with an IPv6 host. */
    static const char *const asks[] = {"https://auth.example.com/ok", "http://[::1]:8080/a?b=c",
                                       "HTTP://Auth.Test"};
    for (size_t i = 0; i < sizeof(asks) / sizeof(asks[0]); i++) {
        char od_json[256];
        snprintf(od_json, sizeof(od_json), "{\"ask\":\"%s\"}", asks[i]);
        cfg = parse_od(od_json, SITE_ACME);
        CHECK(cfg != NULL);
        if (cfg != NULL) {
            CHECK_STR(cfg->on_demand.ask, asks[i]);
        }
        cfg_free(cfg);
    }
}

static void test_errors(void)
{
    CHECK_OD_ERROR("true", "on_demand: expected an object, got true");
    CHECK_OD_ERROR("[]", "on_demand: expected an object, got an array");
    CHECK_OD_ERROR("{\"allowed\":[\"a.test\"]}",
                   "on_demand.allowed: unknown key (known keys: enabled, allow, ask, timeout, "
                   "ask_cache, concurrency, cache_size, rate_limit)");
    CHECK_OD_ERROR("{" ASK "," ASK "}", "on_demand.ask: duplicate key");
    CHECK_OD_ERROR("{\"enabled\":\"yes\"," ASK "}",
                   "on_demand.enabled: expected true or false, got \"yes\"");

    CHECK_OD_ERROR("{\"allow\":\"a.test\"}", "on_demand.allow: expected an array, got \"a.test\"");
    static const char *const bad[] = {"bad_host", "*",     "*.",      "*.*.a.test", "a.*.test",
                                      "",         "a b",   "a.test.", "-a.test",    "*.1.2.3",
                                      "1.2.3",    "[::1]", "a..test"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char od[256], want[256];
        snprintf(od, sizeof(od), "{\"allow\":[\"ok.test\",\"%s\"]}", bad[i]);
        snprintf(want, sizeof(want),
                 "on_demand.allow[1]: expected a host name such as \"example.com\" or "
                 "\"*.example.com\", got \"%s\"",
                 bad[i]);
        CHECK_OD_ERROR(od, want);
    }
    CHECK_OD_ERROR("{\"allow\":[7]}",
                   "on_demand.allow[0]: expected a host name such as \"example.com\" or "
                   "\"*.example.com\", got 7");
    CHECK_OD_ERROR("{\"allow\":[\"192.0.2.1\"]}",
                   "on_demand.allow[0]: expected a host name: certificates are not ordered for "
                   "IP addresses, got \"192.0.2.1\"");
    CHECK_OD_ERROR("{\"allow\":[\"2001:DB8::1\"]}",
                   "on_demand.allow[0]: expected a host name: certificates are not ordered for "
                   "IP addresses, got \"2001:DB8::1\"");
    /* Duplicates count after lower-casing. */
    CHECK_OD_ERROR("{\"allow\":[\"*.a.test\",\"b.test\",\"*.A.Test\"]}",
                   "on_demand.allow[2]: expected each pattern at most once, got \"*.A.Test\"");

    CHECK_OD_ERROR("{\"ask\":\"ftp://auth.test/check\"}",
                   "on_demand.ask: expected an http:// or https:// URL, got "
                   "\"ftp://auth.test/check\"");
    CHECK_OD_ERROR("{\"ask\":\"https://user@auth.test/\"}",
                   "on_demand.ask: expected an http:// or https:// URL");
    CHECK_OD_ERROR("{\"ask\":\"\"}",
                   "on_demand.ask: expected an http:// or https:// URL, got \"\"");
    CHECK_OD_ERROR("{\"ask\":42}", "on_demand.ask: expected an http:// or https:// URL, got 42");
    CHECK_OD_ERROR("{\"ask\":\"http://auth.test/check#x\"}",
                   "on_demand.ask: expected an http:// or https:// URL without a #fragment, got "
                   "\"http://auth.test/check#x\"");

    CHECK_OD_ERROR("{" ASK ",\"timeout\":\"0s\"}",
                   "on_demand.timeout: expected a duration greater than zero, got \"0s\"");
    CHECK_OD_ERROR("{" ASK ",\"timeout\":0}",
                   "on_demand.timeout: expected a duration greater than zero, got 0");
    CHECK_OD_ERROR("{" ASK ",\"timeout\":\"soon\"}",
                   "on_demand.timeout: expected a duration such as \"10s\", got \"soon\"");
    CHECK_OD_ERROR("{" ASK ",\"ask_cache\":\"-1s\"}",
                   "on_demand.ask_cache: expected a duration such as \"10s\", got \"-1s\"");
    CHECK_OD_ERROR("{" ASK ",\"ask_cache\":-1}",
                   "on_demand.ask_cache: expected a duration such as \"10s\", got -1");
    CHECK_OD_ERROR("{" ASK ",\"ask_cache\":null}",
                   "on_demand.ask_cache: expected a duration such as \"10s\", got null");

    CHECK_OD_ERROR("{" ASK ",\"concurrency\":0}",
                   "on_demand.concurrency: expected an integer from 1 to 1000, got 0");
    CHECK_OD_ERROR("{" ASK ",\"concurrency\":1001}",
                   "on_demand.concurrency: expected an integer from 1 to 1000, got 1001");
    CHECK_OD_ERROR("{" ASK ",\"concurrency\":1.5}",
                   "on_demand.concurrency: expected an integer from 1 to 1000, got 1.5");
    CHECK_OD_ERROR("{" ASK ",\"concurrency\":\"8\"}",
                   "on_demand.concurrency: expected an integer from 1 to 1000, got \"8\"");
    CHECK_OD_ERROR("{" ASK ",\"cache_size\":0}",
                   "on_demand.cache_size: expected an integer from 1 to 10000000, got 0");
    CHECK_OD_ERROR("{" ASK ",\"cache_size\":10000001}",
                   "on_demand.cache_size: expected an integer from 1 to 10000000, got 10000001");

    CHECK_OD_ERROR("{" ASK ",\"rate_limit\":60}",
                   "on_demand.rate_limit: expected an object, got 60");
    CHECK_OD_ERROR("{" ASK ",\"rate_limit\":{\"orders\":0}}",
                   "on_demand.rate_limit.orders: expected an integer from 1 to 1000000, got 0");
    CHECK_OD_ERROR("{" ASK ",\"rate_limit\":{\"orders\":1000001}}",
                   "on_demand.rate_limit.orders: expected an integer from 1 to 1000000, got "
                   "1000001");
    CHECK_OD_ERROR("{" ASK ",\"rate_limit\":{\"per\":\"0s\"}}",
                   "on_demand.rate_limit.per: expected a duration greater than zero, got \"0s\"");
    CHECK_OD_ERROR("{" ASK ",\"rate_limit\":{\"per\":\"often\"}}",
                   "on_demand.rate_limit.per: expected a duration such as \"10s\", got \"often\"");
    CHECK_OD_ERROR("{" ASK ",\"rate_limit\":{\"orders\":5,\"burst\":2}}",
                   "on_demand.rate_limit.burst: unknown key (known keys: orders, per)");

    /* Every problem at once, one line each. */
    struct cfg *cfg = parse_od("{\"allow\":[\"x y\"],\"ask\":\"x\",\"timeout\":0,\"concurrency\":0,"
                               "\"rate_limit\":{\"per\":0}}",
                               SITE_ACME);
    CHECK(cfg == NULL);
    CHECK(count_lines(err) == 5);
}

static void test_rule(void)
{
    /* Enabled with nothing to say no: refused, in one line. */
    static const char *const unsafe[] = {"{}", "{\"allow\":[]}", "{\"enabled\":true}",
                                         "{\"enabled\":true,\"allow\":[],\"timeout\":\"5s\"}"};
    for (size_t i = 0; i < sizeof(unsafe) / sizeof(unsafe[0]); i++) {
        CHECK_OD_ERROR(unsafe[i], RULE);
        CHECK(count_lines(err) == 1);
    }
    CHECK_OD_OK("{\"enabled\":false}");
    CHECK_OD_OK("{\"enabled\":false,\"allow\":[]}");
    CHECK_OD_OK("{\"allow\":[],\"ask\":\"https://auth.test/\"}");
    CHECK_OD_OK("{\"allow\":[\"*.a.test\"]}");

    /* A bad "allow" or "ask" is the error, not the rule on top of it. */
    CHECK_OD_ERROR("{\"allow\":[\"bad_host\"]}", "on_demand.allow[0]: expected a host name");
    CHECK(strstr(err, "needs \"allow\"") == NULL);
    CHECK_OD_ERROR("{\"allow\":7}", "on_demand.allow: expected an array, got 7");
    CHECK(strstr(err, "needs \"allow\"") == NULL);
    CHECK_OD_ERROR("{\"ask\":\"nope\"}", "on_demand.ask: expected an http:// or https:// URL");
    CHECK(strstr(err, "needs \"allow\"") == NULL);
}

static void test_sites(void)
{
    /* Wildcards in ACME sites need on_demand, enabled; a certificate site keeps them. */
    const char *wild = "{\"hosts\":[\"a.test\",\"*.B.Test\"]," UPS "}";
    CHECK_SITES_OK("{\"allow\":[\"*.b.test\"]}", wild);
    CHECK_SITES_ERROR("{\"enabled\":false}", wild,
                      "sites[0].hosts[1]: \"*.b.test\" needs a \"certificate\": wildcard names "
                      "cannot be obtained with tls-alpn-01 or http-01");
    CHECK_DOC_ERROR("{\"sites\":[" SITE_ACME ",{\"hosts\":[\"*.b.test\"]," UPS "}]}",
                    "sites[1].hosts[0]: \"*.b.test\" needs a \"certificate\"");
    struct cfg *cfg = parse_od("{\"allow\":[\"*.b.test\"]}", wild);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->sites[0].hosts[1], "*.b.test");
    }
    cfg_free(cfg);

    /* "*" needs on_demand with an ask URL, and a site without "certificate". */
    const char *any = "{\"hosts\":[\"*\"]," UPS "}";
    CHECK_SITES_OK("{" ASK "}", any);
    CHECK_SITES_OK("{" ASK ",\"allow\":[\"a.test\"]}",
                   SITE_ACME ","
                             "{\"hosts\":[\"*\",\"*.c.test\"]," UPS "}");
    CHECK_SITES_ERROR("{\"allow\":[\"a.test\"]}", any, "sites[0].hosts[0]: " STAR_NEEDS_ASK);
    CHECK(count_lines(err) == 1);
    CHECK_SITES_ERROR("{\"enabled\":false," ASK "}", any,
                      "sites[0].hosts[0]: expected a host name such as \"example.com\" or "
                      "\"*.example.com\", or an IP address, got \"*\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"*\"]," UPS "}]}",
                    "sites[0].hosts[0]: expected a host name such as");
    CHECK_SITES_ERROR("{" ASK "}", "{\"hosts\":[\"*\"]," CERT_A "," UPS "}",
                      "sites[0].hosts[0]: expected a host name such as");

    /* "*" at most once overall; a wildcard in one site only. */
    CHECK_SITES_ERROR("{" ASK "}", "{\"hosts\":[\"*\"]," UPS "},{\"hosts\":[\"*\"]," UPS "}",
                      "sites[1].hosts[0]: \"*\" is already used by sites[0]");
    CHECK_SITES_ERROR("{" ASK "}", "{\"hosts\":[\"*\",\"a.test\",\"*\"]," UPS "}",
                      "sites[0].hosts[2]: \"*\" is listed twice");
    CHECK_SITES_ERROR("{" ASK "}",
                      "{\"hosts\":[\"*.a.test\"]," UPS "},{\"hosts\":[\"*.A.test\"]," UPS "}",
                      "sites[1].hosts[0]: \"*.a.test\" is already used by sites[0]");

    /* IP addresses stay refused for ACME sites, on demand or not. */
    CHECK_SITES_ERROR("{" ASK "}", "{\"hosts\":[\"192.0.2.1\"]," UPS "}",
                      "sites[0].hosts[0]: \"192.0.2.1\" needs a \"certificate\": moat requests "
                      "ACME certificates for host names only, not IP addresses");
    CHECK_SITES_ERROR("{" ASK "}", "{\"hosts\":[\"::1\"]," UPS "}",
                      "sites[0].hosts[0]: \"::1\" needs a \"certificate\"");

    /* default_sni still names an exact host. */
    CHECK_DOC_ERROR(
        "{\"on_demand\":{" ASK "},\"tls\":{\"default_sni\":\"*\"},"
        "\"sites\":[{\"hosts\":[\"*\"]," UPS "}]}",
        "tls.default_sni: expected one of the sites' hosts (not a wildcard), got \"*\"");

    /* A bad ask URL with "*": both lines, each naming what to fix. */
    CHECK_SITES_ERROR("{\"ask\":\"x\"}", any, "on_demand.ask: expected an http:// or https:// URL");
    CHECK(strstr(err, "sites[0].hosts[0]: " STAR_NEEDS_ASK) != NULL);
}

static void test_value_checks(void)
{
    uint64_t ms = 7;

    CHECK(cfg_check_duration("0s", true, &ms) == NULL && ms == 0);
    CHECK(cfg_check_duration("2m", false, &ms) == NULL && ms == 120000);
    ms = 7;
    CHECK_STR(cfg_check_duration("0", false, &ms), "expected a duration greater than zero");
    CHECK_STR(cfg_check_duration("later", true, &ms), "expected a duration such as \"10s\"");
    CHECK(cfg_check_duration(NULL, true, &ms) != NULL && ms == 7);

    CHECK(cfg_check_ask_url("http://127.0.0.1:9000/check") == NULL);
    CHECK(cfg_check_ask_url("https://auth.test/check?site=1") == NULL);
    CHECK(cfg_check_ask_url("https://auth.test/check#frag") != NULL);
    CHECK(cfg_check_ask_url("auth.test/check") != NULL);
    CHECK(cfg_check_ask_url(NULL) != NULL);

    /* allow patterns are copied lower-case, in order. */
    struct cfg_on_demand od;
    char *slots[3];
    cfg_on_demand_set_defaults(&od);
    od.allow = slots;
    CHECK(cfg_on_demand_add_allow(&od, "A.Test") == NULL);
    CHECK(cfg_on_demand_add_allow(&od, "*.B.test") == NULL);
    CHECK(cfg_on_demand_add_allow(&od, "a.TEST") != NULL);
    CHECK(cfg_on_demand_add_allow(&od, "*") != NULL);
    CHECK(cfg_on_demand_add_allow(&od, NULL) != NULL);
    CHECK(od.n_allow == 2);
    CHECK_STR(od.allow[0], "a.test");
    CHECK_STR(od.allow[1], "*.b.test");
    free(od.allow[0]);
    free(od.allow[1]);
}

int main(void)
{
    test_defaults();
    test_read_back();
    test_errors();
    test_rule();
    test_sites();
    test_value_checks();
    return check_report();
}
