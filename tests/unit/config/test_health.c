/* test_health.c - "health_check" and "passive_health" in routes and at site level: defaults,
 * values read back, and every error with its key path.
 *
 * Runs in tests/unit/config, so fixture paths are "fixtures/...".
 */
#include "cfg_test.h"

/* A document with one site whose shorthand route carries the site-level keys given. */
static struct cfg *parse_site(const char *site_keys)
{
    char doc[2048];
    snprintf(doc, sizeof(doc),
             "{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[\"h:1\"]%s}]}",
             site_keys);
    return parse(doc);
}

/* A route with the extra keys given, as the second route of sites[0]. */
#define ROUTE_DOC(extra)                                                                           \
    "{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"routes\":[{\"path\":\"/\","                  \
    "\"upstreams\":[\"h:1\"]},{\"path\":\"/api/\",\"upstreams\":[\"h:2\"]," extra "}]}]}"

static void check_default_health(const struct cfg_health *h)
{
    CHECK(h->path == NULL);
    CHECK(h->host == NULL);
    CHECK(h->interval_ms == 10000);
    CHECK(h->timeout_ms == 5000);
    CHECK(h->expect_status == 0);
    CHECK(h->max_fails == 0);
    CHECK(h->fail_window_ms == 10000);
    CHECK(h->fail_duration_ms == 30000);
}

static void test_defaults(void)
{
    struct cfg *cfg = cfg_load_file("fixtures/minimal.json", err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        check_default_health(&cfg->sites[0].routes[0].health);
    }
    cfg_free(cfg);

    cfg = parse(ROUTE_DOC("\"balancing\":\"least_conn\""));
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        check_default_health(&cfg->sites[0].routes[0].health);
        check_default_health(&cfg->sites[0].routes[1].health);
    }
    cfg_free(cfg);

    /* Only a path: active checks on, the rest default; passive checks stay off. */
    cfg = parse(ROUTE_DOC("\"health_check\":{\"path\":\"/healthz\"}"));
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        const struct cfg_health *h = &cfg->sites[0].routes[1].health;
        CHECK_STR(h->path, "/healthz");
        CHECK(h->host == NULL);
        CHECK(h->interval_ms == 10000 && h->timeout_ms == 5000);
        CHECK(h->expect_status == 0);
        CHECK(h->max_fails == 0);
        check_default_health(&cfg->sites[0].routes[0].health);
    }
    cfg_free(cfg);

    /* An empty passive_health object turns passive checks on with max_fails 3. */
    cfg = parse(ROUTE_DOC("\"passive_health\":{}"));
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        const struct cfg_health *h = &cfg->sites[0].routes[1].health;
        CHECK(h->path == NULL);
        CHECK(h->max_fails == 3);
        CHECK(h->fail_window_ms == 10000);
        CHECK(h->fail_duration_ms == 30000);
    }
    cfg_free(cfg);
}

static void test_values(void)
{
    struct cfg *cfg = parse(ROUTE_DOC(
        "\"health_check\":{\"path\":\"/status?full=1\",\"interval\":\"2s\",\"timeout\":0.5,"
        "\"expect_status\":204,\"host\":\"app.internal:8080\"},"
        "\"passive_health\":{\"max_fails\":5,\"fail_window\":\"1m\",\"fail_duration\":45}"));
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const struct cfg_health *h = &cfg->sites[0].routes[1].health;
    CHECK_STR(h->path, "/status?full=1");
    CHECK_STR(h->host, "app.internal:8080");
    CHECK(h->interval_ms == 2000);
    CHECK(h->timeout_ms == 500);
    CHECK(h->expect_status == 204);
    CHECK(h->max_fails == 5);
    CHECK(h->fail_window_ms == 60000);
    CHECK(h->fail_duration_ms == 45000);
    check_default_health(&cfg->sites[0].routes[0].health);
    cfg_free(cfg);

    /* The limits themselves are accepted. */
    cfg = parse(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"interval\":\"100ms\","
                          "\"timeout\":\"1ms\",\"expect_status\":599,\"host\":\"[::1]\"},"
                          "\"passive_health\":{\"max_fails\":1000}"));
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        h = &cfg->sites[0].routes[1].health;
        CHECK(h->interval_ms == 100 && h->timeout_ms == 1 && h->expect_status == 599);
        CHECK_STR(h->host, "[::1]");
        CHECK(h->max_fails == 1000);
    }
    cfg_free(cfg);

    /* Every form of host the Host header can take. */
    static const char *const hosts[] = {"a.test",     "app_1",     "10.0.0.1",    "10.0.0.1:80",
                                        "[::1]:8443", "[fe80::1]", "A.Test:65535"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char doc[1024];
        snprintf(doc, sizeof(doc), ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"host\":\"%s\"}"),
                 hosts[i]);
        cfg = parse(doc);
        if (cfg == NULL) {
            fprintf(stderr, "host %s refused: %s\n", hosts[i], err);
        }
        CHECK(cfg != NULL);
        if (cfg != NULL) {
            CHECK_STR(cfg->sites[0].routes[1].health.host, hosts[i]);
        }
        cfg_free(cfg);
    }
}

/* At site level the keys apply to the shorthand route "/", which comes after the listed
 * routes. */
static void test_site_level(void)
{
    struct cfg *cfg =
        parse("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[\"h:1\",\"h:2\"],"
              "\"health_check\":{\"path\":\"/up\",\"expect_status\":200},"
              "\"passive_health\":{\"max_fails\":2},"
              "\"routes\":[{\"path\":\"/api/\",\"upstreams\":[\"h:3\"]}]}]}");
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK(cfg->sites[0].n_routes == 2);
    check_default_health(&cfg->sites[0].routes[0].health);
    const struct cfg_health *h = &cfg->sites[0].routes[1].health;
    CHECK_STR(cfg->sites[0].routes[1].path_prefix, "/");
    CHECK_STR(h->path, "/up");
    CHECK(h->expect_status == 200);
    CHECK(h->max_fails == 2);
    cfg_free(cfg);

    cfg = parse_site(",\"passive_health\":{\"fail_duration\":\"5m\"}");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->sites[0].routes[0].health.max_fails == 3);
        CHECK(cfg->sites[0].routes[0].health.fail_duration_ms == 300000);
    }
    cfg_free(cfg);
}

static void test_errors(void)
{
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{}"),
                    "sites[0].routes[1].health_check.path: expected a path starting with \"/\"");
    CHECK_DOC_ERROR(
        ROUTE_DOC("\"health_check\":{\"path\":\"healthz\"}"),
        "sites[0].routes[1].health_check.path: expected a path starting with \"/\", got "
        "\"healthz\"");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/a b\"}"),
                    "sites[0].routes[1].health_check.path: expected a path without spaces or "
                    "control characters, got \"/a b\"");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\\r\\nX: y\"}"),
                    "sites[0].routes[1].health_check.path: expected a path without spaces");
    CHECK_DOC_ERROR(
        ROUTE_DOC("\"health_check\":{\"path\":7}"),
        "sites[0].routes[1].health_check.path: expected a path starting with \"/\", got "
        "7");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":\"/healthz\""),
                    "sites[0].routes[1].health_check: expected an object, got \"/healthz\"");
    CHECK_DOC_ERROR(
        ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"interval\":\"often\"}"),
        "sites[0].routes[1].health_check.interval: expected a duration such as \"10s\", "
        "got \"often\"");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"interval\":\"99ms\"}"),
                    "sites[0].routes[1].health_check.interval: expected a duration of at least "
                    "100ms, got \"99ms\"");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"interval\":0}"),
                    "sites[0].routes[1].health_check.interval: expected a duration greater than "
                    "zero, got 0");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"timeout\":\"0s\"}"),
                    "sites[0].routes[1].health_check.timeout: expected a duration greater than "
                    "zero, got \"0s\"");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"expect_status\":99}"),
                    "sites[0].routes[1].health_check.expect_status: expected an integer from 100 "
                    "to 599, got 99");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"expect_status\":600}"),
                    "sites[0].routes[1].health_check.expect_status: expected an integer from 100 "
                    "to 599, got 600");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"expect_status\":\"200\"}"),
                    "sites[0].routes[1].health_check.expect_status: expected an integer from 100 "
                    "to 599, got \"200\"");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"expect_status\":200.5}"),
                    "health_check.expect_status: expected an integer from 100 to 599, got 200.5");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"method\":\"HEAD\"}"),
                    "sites[0].routes[1].health_check.method: unknown key (known keys: path, "
                    "interval, timeout, expect_status, host)");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"path\":\"/x\"}"),
                    "sites[0].routes[1].health_check.path: duplicate key");

    static const char *const bad_hosts[] = {
        "",     "::1",       "a b",    "a.test:",  "a:0",     "a:70000",
        "[::1", "[1.2.3.4]", "[::1]x", "a.test/x", "-a.test", "a:1:2"};
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        char doc[1024], want[256];
        snprintf(doc, sizeof(doc), ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"host\":\"%s\"}"),
                 bad_hosts[i]);
        snprintf(want, sizeof(want),
                 "sites[0].routes[1].health_check.host: expected a host name or IP address "
                 "([v6] in brackets), optionally with \":port\", got \"%s\"",
                 bad_hosts[i]);
        CHECK_DOC_ERROR(doc, want);
    }
    CHECK_DOC_ERROR(ROUTE_DOC("\"health_check\":{\"path\":\"/\",\"host\":80}"),
                    "sites[0].routes[1].health_check.host: expected a host name or IP address");

    CHECK_DOC_ERROR(ROUTE_DOC("\"passive_health\":{\"max_fails\":0}"),
                    "sites[0].routes[1].passive_health.max_fails: expected an integer from 1 to "
                    "1000, got 0");
    CHECK_DOC_ERROR(ROUTE_DOC("\"passive_health\":{\"max_fails\":1001}"),
                    "sites[0].routes[1].passive_health.max_fails: expected an integer from 1 to "
                    "1000, got 1001");
    CHECK_DOC_ERROR(ROUTE_DOC("\"passive_health\":{\"fail_window\":\"soon\"}"),
                    "sites[0].routes[1].passive_health.fail_window: expected a duration such as "
                    "\"10s\", got \"soon\"");
    CHECK_DOC_ERROR(ROUTE_DOC("\"passive_health\":{\"fail_duration\":\"0ms\"}"),
                    "sites[0].routes[1].passive_health.fail_duration: expected a duration greater "
                    "than zero");
    CHECK_DOC_ERROR(ROUTE_DOC("\"passive_health\":{\"max_fail\":3}"),
                    "sites[0].routes[1].passive_health.max_fail: unknown key (known keys: "
                    "max_fails, fail_window, fail_duration)");
    CHECK_DOC_ERROR(ROUTE_DOC("\"passive_health\":true"),
                    "sites[0].routes[1].passive_health: expected an object, got true");
    CHECK_DOC_ERROR(ROUTE_DOC("\"health\":{}"),
                    "sites[0].routes[1].health: unknown key (known keys: path, upstreams, "
                    "balancing, health_check, passive_health)");
}

static void test_site_level_errors(void)
{
    /* Without "upstreams" there is no shorthand route for them to apply to. */
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"health_check\":{\"path\":\"/\"},"
                    "\"routes\":[{\"path\":\"/\",\"upstreams\":[\"h:1\"]}]}]}",
                    "sites[0].health_check: applies only with \"upstreams\"; set it in each route");
    CHECK_DOC_ERROR(
        "{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"passive_health\":{},"
        "\"routes\":[{\"path\":\"/\",\"upstreams\":[\"h:1\"]}]}]}",
        "sites[0].passive_health: applies only with \"upstreams\"; set it in each route");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"upstreams\":[\"h:1\"],\"health_check\":{\"path\":\"x\"}}]}",
                    "sites[0].health_check.path: expected a path starting with \"/\", got \"x\"");
    CHECK_DOC_ERROR(
        "{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
        ",\"upstreams\":[\"h:1\"],\"passive_health\":{\"max_fails\":-1}}]}",
        "sites[0].passive_health.max_fails: expected an integer from 1 to 1000, got -1");
    CHECK_DOC_ERROR(
        "{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[\"h:1\"],"
        "\"health_checks\":{}}]}",
        "sites[0].health_checks: unknown key (known keys: hosts, certificate, upstreams, "
        "balancing, routes, health_check, passive_health)");

    /* Several errors at once, each with its own path. */
    struct cfg *cfg = parse(ROUTE_DOC("\"health_check\":{\"interval\":\"1ms\",\"expect_status\":1},"
                                      "\"passive_health\":{\"max_fails\":0}"));
    CHECK(cfg == NULL);
    CHECK(strstr(err, "sites[0].routes[1].health_check.path: expected a path") != NULL);
    CHECK(strstr(err, "sites[0].routes[1].health_check.interval: expected a duration of at "
                      "least 100ms") != NULL);
    CHECK(strstr(err, "sites[0].routes[1].health_check.expect_status: expected an integer") !=
          NULL);
    CHECK(strstr(err, "sites[0].routes[1].passive_health.max_fails: expected an integer") != NULL);
}

int main(void)
{
    test_defaults();
    test_values();
    test_site_level();
    test_errors();
    test_site_level_errors();
    return check_report();
}
