/* test_config.c - the JSON config: a full file read back, defaults, and every error.
 *
 * Runs in tests/unit/config, so fixture paths are "fixtures/...".
 */
#include "cfg_test.h"

static void test_full(void)
{
    struct cfg *cfg = cfg_load_file("fixtures/full.json", err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "full.json: %s\n", err);
    }
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        return;
    }
    CHECK_STR(err, "");
    CHECK(cfg->workers == 2);
    CHECK(cfg->n_https_listen == 3);
    CHECK_STR(cfg->https_listen[0].host, "127.0.0.1");
    CHECK(cfg->https_listen[0].port == 8443);
    CHECK_STR(cfg->https_listen[1].host, "::1");
    CHECK(cfg->https_listen[1].port == 8443);
    CHECK_STR(cfg->https_listen[2].host, "");
    CHECK(cfg->https_listen[2].port == 9443);
    CHECK(cfg->n_http_listen == 1);
    CHECK_STR(cfg->http_listen[0].host, "127.0.0.1");
    CHECK(cfg->http_listen[0].port == 8080);
    CHECK(cfg->log_level == CFG_LOG_DEBUG);
    CHECK(!cfg->access_log);
    CHECK(cfg->timeouts.request_head == 500);
    CHECK(cfg->timeouts.keepalive_idle == 30000);
    CHECK(cfg->timeouts.tls_handshake == 2500);
    CHECK(cfg->timeouts.upstream_connect == 60000);
    CHECK(cfg->timeouts.upstream_head == 3600000);
    CHECK(cfg->timeouts.upstream_idle == 250);
    CHECK(cfg->timeouts.body_idle == 90000);
    CHECK(cfg->timeouts.drain == 3000);
    CHECK(cfg->limits.max_request_head == 2048);
    CHECK(cfg->limits.max_conns_per_worker == 500);
    CHECK(cfg->limits.upstream_idle_per_worker == 0);
    CHECK_STR(cfg->tls.default_sni, "a.test");
    CHECK(!cfg->tls.session_tickets);
    CHECK(cfg->tls.ticket_rotation_ms == 6ull * 3600 * 1000);

    CHECK(cfg->n_trusted_proxies == 4);
    CHECK(cfg->trusted_proxies[0].family == 4 && cfg->trusted_proxies[0].prefix == 8);
    CHECK(cfg->trusted_proxies[0].addr[0] == 10);
    CHECK(cfg->trusted_proxies[1].family == 6 && cfg->trusted_proxies[1].prefix == 128);
    CHECK(cfg->trusted_proxies[1].addr[15] == 1);
    CHECK(cfg->trusted_proxies[2].family == 4 && cfg->trusted_proxies[2].prefix == 32);
    CHECK(cfg->trusted_proxies[3].family == 6 && cfg->trusted_proxies[3].prefix == 8);
    CHECK(cfg->trusted_proxies[3].addr[0] == 0xfd);

    CHECK(cfg->n_sites == 2);
    const struct cfg_site *s = &cfg->sites[0];
    CHECK(s->n_hosts == 2);
    CHECK_STR(s->hosts[0], "a.test");
    CHECK_STR(s->hosts[1], "*.b.test");
    CHECK_STR(s->cert.cert_file, fixture_abs("a.pem"));
    CHECK_STR(s->cert.key_file, fixture_abs("a.key"));
    CHECK(s->n_routes == 3);
    CHECK_STR(s->routes[0].path_prefix, "/api/");
    CHECK(s->routes[0].n_upstreams == 1);
    CHECK_STR(s->routes[0].upstreams[0].host, "10.0.0.5");
    CHECK(s->routes[0].upstreams[0].port == 8000);
    CHECK(s->routes[0].balance == CFG_BALANCE_LEAST_CONN);
    CHECK_STR(s->routes[1].path_prefix, "/static/");
    CHECK_STR(s->routes[1].upstreams[0].host, "static_svc");
    CHECK(s->routes[1].balance == CFG_BALANCE_ROUND_ROBIN);
    /* The "upstreams" shorthand comes last, as the route for "/". */
    CHECK_STR(s->routes[2].path_prefix, "/");
    CHECK(s->routes[2].balance == CFG_BALANCE_LEAST_CONN);
    CHECK(s->routes[2].n_upstreams == 3);
    CHECK_STR(s->routes[2].upstreams[0].host, "127.0.0.1");
    CHECK(s->routes[2].upstreams[0].port == 9000);
    CHECK_STR(s->routes[2].upstreams[1].host, "backend.local");
    CHECK(s->routes[2].upstreams[1].port == 80);
    CHECK_STR(s->routes[2].upstreams[2].host, "::1");
    CHECK(s->routes[2].upstreams[2].port == 9001);

    s = &cfg->sites[1];
    CHECK(s->n_hosts == 3);
    CHECK_STR(s->hosts[0], "c.test");
    CHECK_STR(s->hosts[1], "10.1.2.3");
    CHECK_STR(s->hosts[2], "::1");
    CHECK_STR(s->cert.cert_file, fixture_abs("certs.d/c.pem"));
    CHECK_STR(s->cert.key_file, fixture_abs("c.key"));
    CHECK(s->n_routes == 1);
    CHECK_STR(s->routes[0].path_prefix, "/");
    CHECK(s->routes[0].balance == CFG_BALANCE_ROUND_ROBIN);
    CHECK_STR(s->routes[0].upstreams[0].host, "::1");
    CHECK(s->routes[0].upstreams[0].port == 7000);
    cfg_free(cfg);
}

static void test_defaults(void)
{
    struct cfg *cfg = cfg_load_file("fixtures/minimal.json", err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "minimal.json: %s\n", err);
        return;
    }
    CHECK(cfg->workers == 0);
    CHECK(cfg->n_https_listen == 1);
    CHECK_STR(cfg->https_listen[0].host, "");
    CHECK(cfg->https_listen[0].port == 443);
    CHECK(cfg->n_http_listen == 1);
    CHECK_STR(cfg->http_listen[0].host, "");
    CHECK(cfg->http_listen[0].port == 80);
    CHECK(cfg->log_level == CFG_LOG_INFO);
    CHECK(cfg->access_log);
    CHECK(cfg->timeouts.request_head == 10000);
    CHECK(cfg->timeouts.keepalive_idle == 75000);
    CHECK(cfg->timeouts.tls_handshake == 10000);
    CHECK(cfg->timeouts.upstream_connect == 5000);
    CHECK(cfg->timeouts.upstream_head == 60000);
    CHECK(cfg->timeouts.upstream_idle == 60000);
    CHECK(cfg->timeouts.body_idle == 60000);
    CHECK(cfg->timeouts.drain == 10000);
    CHECK(cfg->limits.max_request_head == 16384);
    CHECK(cfg->limits.max_conns_per_worker == 10000);
    CHECK(cfg->limits.upstream_idle_per_worker == 64);
    CHECK(cfg->tls.default_sni == NULL);
    CHECK(cfg->tls.session_tickets);
    CHECK(cfg->tls.ticket_rotation_ms == 12ull * 3600 * 1000);
    CHECK(cfg->n_trusted_proxies == 0 && cfg->trusted_proxies == NULL);
    CHECK(cfg->n_sites == 1);
    CHECK(cfg->sites[0].n_routes == 1);
    CHECK_STR(cfg->sites[0].routes[0].path_prefix, "/");
    CHECK(cfg->sites[0].routes[0].balance == CFG_BALANCE_ROUND_ROBIN);
    cfg_free(cfg);
}

static void test_small_cases_ok(void)
{
    /* An empty http list turns the plain listener off; port 0 twice is no clash. */
    struct cfg *cfg = parse("{\"listen\":{\"http\":[],\"https\":[\"127.0.0.1:0\",\"127.0.0.1:0\"]},"
                            "\"sites\":[" SITE_A "]}");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->n_http_listen == 0 && cfg->n_https_listen == 2);
        CHECK(cfg->https_listen[0].port == 0);
    }
    cfg_free(cfg);

    /* Wildcard and exact on two sites; trusted_proxies may be empty; numbers for bools
     * are not needed; a BOM-less document with trailing white space parses. */
    cfg = parse("{\"trusted_proxies\":[],\"sites\":[" SITE_A ",{\"hosts\":[\"*.a.test\"]," CERT_A
                ",\"routes\":[{\"path\":\"/\",\"upstreams\":[\"h:1\"]}]}]}\n \t\n");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->n_trusted_proxies == 0);
        CHECK_STR(cfg->sites[1].hosts[0], "*.a.test");
    }
    cfg_free(cfg);

    /* Without base_dir, relative paths are taken from the current directory. */
    const char *doc = "{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{\"cert\":"
                      "\"fixtures/a.pem\",\"key\":\"fixtures/a.key\"},\"upstreams\":[\"h:1\"]}]}";
    cfg = parse_in(doc, NULL);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->sites[0].cert.cert_file, fixture_abs("a.pem"));
    }
    cfg_free(cfg);

    /* The length bounds the document: what follows it is not read. */
    const char *two = "{\"sites\":[" SITE_A "]}garbage";
    cfg = cfg_parse(two, strlen(two) - strlen("garbage"), "fixtures", err, sizeof(err));
    CHECK(cfg != NULL);
    cfg_free(cfg);
}

static void test_brief_errors(void)
{
    CHECK_DOC_ERROR("{\"sites\":[" SITE_A ",{\"hosts\":[\"b.test\"]," CERT_A
                    ",\"upstreams\":[\"foo\"]}]}",
                    "sites[1].upstreams[0]: expected \"host:port\", got \"foo\"");
    CHECK_DOC_ERROR("{\"timeouts\":{\"request_head\":\"ten\"},\"sites\":[" SITE_A "]}",
                    "timeouts.request_head: expected a duration such as \"10s\", got \"ten\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hots\":[\"a.test\"],\"hosts\":[\"a.test\"]," CERT_A
                    ",\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].hots: unknown key");
    CHECK_DOC_ERROR("{\"workers\":2000,\"sites\":[" SITE_A "]}",
                    "workers: expected an integer from 0 to 1024");
    CHECK_DOC_ERROR("{\"workers\":1.5,\"sites\":[" SITE_A "]}",
                    "workers: expected an integer from 0 to 1024, got 1.5");
    CHECK_DOC_ERROR("{\"workers\":-1,\"sites\":[" SITE_A "]}",
                    "workers: expected an integer from 0 to 1024");
    CHECK_DOC_ERROR("{\"workers\":\"2\",\"sites\":[" SITE_A "]}",
                    "workers: expected an integer from 0 to 1024, got \"2\"");
    CHECK_DOC_ERROR("{}", "sites: expected a non-empty array");
    CHECK_DOC_ERROR("{\"sites\":[]}", "sites: expected a non-empty array");
    CHECK_DOC_ERROR("{\"sites\":{}}", "sites: expected a non-empty array, got an object");
    CHECK_DOC_ERROR("[]", "(root): expected an object");
    CHECK_DOC_ERROR("\"x\"", "(root): expected an object");
    CHECK_DOC_ERROR("", "(root): invalid JSON near line 1");
    CHECK_DOC_ERROR("{\"sites\":[]} x", "(root): invalid JSON near line 1");

    struct cfg *cfg = cfg_load_file("fixtures/bad_syntax.json", err, sizeof(err));
    CHECK(cfg == NULL);
    CHECK(strstr(err, "(root): invalid JSON near line 3") != NULL);
    CHECK(count_lines(err) == 1);
}

static void test_section_errors(void)
{
    CHECK_DOC_ERROR("{\"listen\":{\"https\":[\"foo\"]},\"sites\":[" SITE_A "]}",
                    "listen.https[0]: expected \"host:port\" or \":port\", got \"foo\"");
    CHECK_DOC_ERROR("{\"listen\":{\"https\":[]},\"sites\":[" SITE_A "]}",
                    "listen.https: expected a non-empty array");
    CHECK_DOC_ERROR("{\"listen\":{\"https\":[\"127.0.0.1:8443\"],\"http\":[\"127.0.0.1:8443\"]},"
                    "\"sites\":[" SITE_A "]}",
                    "listen.http[0]: port 8443 is already used by listen.https[0]");
    CHECK_DOC_ERROR("{\"listen\":{\"https\":[\":8443\",\"[::1]:8443\"]},\"sites\":[" SITE_A "]}",
                    "listen.https[1]: port 8443 is already used by listen.https[0]");
    CHECK_DOC_ERROR("{\"listen\":{\"https\":[\":80\"]},\"sites\":[" SITE_A "]}",
                    "listen.http (default): port 80 is already used by listen.https[0]");
    CHECK_DOC_ERROR("{\"listen\":{\"udp\":[]},\"sites\":[" SITE_A "]}", "listen.udp: unknown key");
    CHECK_DOC_ERROR("{\"listen\":[],\"sites\":[" SITE_A "]}",
                    "listen: expected an object, got an array");
    CHECK_DOC_ERROR("{\"log\":{\"level\":\"loud\"},\"sites\":[" SITE_A "]}",
                    "log.level: expected \"debug\", \"info\", \"warn\" or \"error\", got \"loud\"");
    CHECK_DOC_ERROR("{\"log\":{\"access\":\"yes\"},\"sites\":[" SITE_A "]}",
                    "log.access: expected true or false, got \"yes\"");
    CHECK_DOC_ERROR("{\"timeouts\":{\"drain\":\"0s\"},\"sites\":[" SITE_A "]}",
                    "timeouts.drain: expected a duration greater than zero");
    CHECK_DOC_ERROR("{\"timeouts\":{\"drain\":0},\"sites\":[" SITE_A "]}",
                    "timeouts.drain: expected a duration greater than zero, got 0");
    CHECK_DOC_ERROR("{\"timeouts\":{\"drain\":-2},\"sites\":[" SITE_A "]}",
                    "timeouts.drain: expected a duration such as \"10s\", got -2");
    CHECK_DOC_ERROR("{\"timeouts\":{\"drian\":\"1s\"},\"sites\":[" SITE_A "]}",
                    "timeouts.drian: unknown key");
    CHECK_DOC_ERROR("{\"limits\":{\"max_request_head\":100},\"sites\":[" SITE_A "]}",
                    "limits.max_request_head: expected an integer from 1024 to 1048576, got 100");
    CHECK_DOC_ERROR("{\"limits\":{\"max_connections_per_worker\":0},\"sites\":[" SITE_A "]}",
                    "limits.max_connections_per_worker: expected an integer from 1 to 1000000");
    CHECK_DOC_ERROR("{\"limits\":{\"upstream_idle_per_worker\":100001},\"sites\":[" SITE_A "]}",
                    "limits.upstream_idle_per_worker: expected an integer from 0 to 100000");
    CHECK_DOC_ERROR("{\"tls\":{\"default_sni\":\"x.test\"},\"sites\":[" SITE_A "]}",
                    "tls.default_sni: expected one of the sites' hosts (not a wildcard), got "
                    "\"x.test\"");
    CHECK_DOC_ERROR(
        "{\"tls\":{\"default_sni\":\"*.a.test\"},\"sites\":[{\"hosts\":[\"*.a.test\"]," CERT_A
        ",\"upstreams\":[\"h:1\"]}]}",
        "tls.default_sni: expected one of the sites' hosts");
    CHECK_DOC_ERROR("{\"tls\":{\"session_tickets\":1},\"sites\":[" SITE_A "]}",
                    "tls.session_tickets: expected true or false, got 1");
    CHECK_DOC_ERROR("{\"tls\":{\"ticket_rotation\":\"soon\"},\"sites\":[" SITE_A "]}",
                    "tls.ticket_rotation: expected a duration such as \"10s\", got \"soon\"");
    CHECK_DOC_ERROR("{\"trusted_proxies\":[\"10.0.0.1/8\"],\"sites\":[" SITE_A "]}",
                    "trusted_proxies[0]: expected a network address: bits are set after the "
                    "prefix length, got \"10.0.0.1/8\"");
    CHECK_DOC_ERROR("{\"trusted_proxies\":[\"::1\",\"10.0.0.0/33\"],\"sites\":[" SITE_A "]}",
                    "trusted_proxies[1]: expected a prefix length from 0 to 32");
    CHECK_DOC_ERROR("{\"trusted_proxies\":[\"proxy\"],\"sites\":[" SITE_A "]}",
                    "trusted_proxies[0]: expected an IP address or a network such as "
                    "\"10.0.0.0/8\", got \"proxy\"");
    CHECK_DOC_ERROR("{\"trusted_proxies\":\"10.0.0.0/8\",\"sites\":[" SITE_A "]}",
                    "trusted_proxies: expected an array");
    CHECK_DOC_ERROR("{\"workers\":1,\"workers\":2,\"sites\":[" SITE_A "]}",
                    "workers: duplicate key");
    CHECK_DOC_ERROR("{\"Workers\":1,\"sites\":[" SITE_A "]}", "Workers: unknown key");
}

static void test_site_errors(void)
{
    CHECK_DOC_ERROR("{\"sites\":[{" CERT_A ",\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].hosts: expected a non-empty array");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[]," CERT_A ",\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].hosts: expected a non-empty array");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\", 7]," CERT_A ",\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].hosts[1]: expected a host name");
    static const char *const bad_hosts[] = {
        "bad_host", "a..test", "-a.test", "a-.test",    "a.*.test", "*",  "*.",
        "1.2.3",    "a.test.", "",        "*.*.a.test", "[::1]",    "a b"};
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        char doc[512], want[128];
        snprintf(doc, sizeof(doc),
                 "{\"sites\":[{\"hosts\":[\"ok.test\",\"%s\"]," CERT_A
                 ",\"upstreams\":[\"h:1\"]}]}",
                 bad_hosts[i]);
        snprintf(want, sizeof(want), "sites[0].hosts[1]: expected a host name such as");
        CHECK_DOC_ERROR(doc, want);
    }
    /* 64-byte label, 254-byte name. */
    char doc[1024], label[65], name[300];
    memset(label, 'x', 64);
    label[64] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"sites\":[{\"hosts\":[\"%s.test\"]," CERT_A ",\"upstreams\":[\"h:1\"]}]}", label);
    CHECK_DOC_ERROR(doc, "sites[0].hosts[0]: expected a host name");
    memset(name, 'a', 254);
    for (int i = 1; i < 254; i += 2) {
        name[i] = '.';
    }
    name[254] = '\0';
    snprintf(doc, sizeof(doc),
             "{\"sites\":[{\"hosts\":[\"%s\"]," CERT_A ",\"upstreams\":[\"h:1\"]}]}", name);
    CHECK_DOC_ERROR(doc, "sites[0].hosts[0]: expected a host name");
    name[253] = '\0';
    name[252] = 'a';
    snprintf(doc, sizeof(doc),
             "{\"sites\":[{\"hosts\":[\"%s\"]," CERT_A ",\"upstreams\":[\"h:1\"]}]}", name);
    struct cfg *cfg = parse(doc);
    CHECK(cfg != NULL); /* 253 bytes is the limit, not over it */
    cfg_free(cfg);

    CHECK_DOC_ERROR("{\"sites\":[" SITE_A ",{\"hosts\":[\"A.TEST\"]," CERT_A
                    ",\"upstreams\":[\"h:1\"]}]}",
                    "sites[1].hosts[0]: \"a.test\" is already used by sites[0]");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\",\"b.test\",\"a.test\"]," CERT_A
                    ",\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].hosts[2]: \"a.test\" is listed twice");
}

static void test_cert_errors(void)
{
    const char *want = "sites[0].certificate: expected an object with \"cert\" and \"key\" "
                       "file paths";
    /* No "certificate" at all is an ACME site (test_acme.c); a wrong one is an error. */
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{},"
                    "\"upstreams\":[\"h:1\"]}]}",
                    want);
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":\"a.pem\","
                    "\"upstreams\":[\"h:1\"]}]}",
                    want);
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{\"cert\":\"a.pem\"},"
                    "\"upstreams\":[\"h:1\"]}]}",
                    want);
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{\"cert\":\"a.pem\","
                    "\"key\":\"\"},\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].certificate.key: expected a file path, got \"\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{\"cert\":\"a.pem\","
                    "\"key\":\"a.key\",\"chain\":\"x\"},\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].certificate.chain: unknown key");

    char want_file[PATH_MAX + 128];
    int wn = snprintf(want_file, sizeof(want_file),
                      "sites[0].certificate.key: cannot read \"%s\": No such file or directory",
                      fixture_abs("nope.key"));
    CHECK(wn > 0 && (size_t)wn < sizeof(want_file));
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{\"cert\":\"a.pem\","
                    "\"key\":\"nope.key\"},\"upstreams\":[\"h:1\"]}]}",
                    want_file);
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{\"cert\":\"certs.d\","
                    "\"key\":\"a.key\"},\"upstreams\":[\"h:1\"]}]}",
                    "Is a directory");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{\"cert\":"
                    "\"/nonexistent/x.pem\",\"key\":\"a.key\"},\"upstreams\":[\"h:1\"]}]}",
                    "sites[0].certificate.cert: cannot read \"/nonexistent/x.pem\": No such file");
}

static void test_route_errors(void)
{
    static const char *const bad[] = {"h",   "h:",    "h:99999", "h:12ab", "[::1",        "::1:80",
                                      ":80", "[::1]", "h:-1",    "a b:80", "[1.2.3.4]:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char doc[512], want[128];
        snprintf(doc, sizeof(doc),
                 "{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[\"%s\"]}]}",
                 bad[i]);
        snprintf(want, sizeof(want), "sites[0].upstreams[0]: expected \"host:port\", got \"%s\"",
                 bad[i]);
        CHECK_DOC_ERROR(doc, want);
    }
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[\"h:0\"]}]}",
                    "sites[0].upstreams[0]: expected a port from 1 to 65535, got \"h:0\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[9000]}]}",
                    "sites[0].upstreams[0]: expected \"host:port\", got 9000");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[]}]}",
                    "sites[0].upstreams: expected a non-empty array");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A "}]}",
                    "sites[0]: expected \"upstreams\" or \"routes\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"routes\":[]}]}",
                    "sites[0].routes: expected a non-empty array");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"routes\":[{\"path\":\"api\",\"upstreams\":[\"h:1\"]}]}]}",
                    "sites[0].routes[0].path: expected a path starting with \"/\", got \"api\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"routes\":[{\"upstreams\":[\"h:1\"]}]}]}",
                    "sites[0].routes[0].path: expected a path starting with \"/\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"routes\":[{\"path\":\"/\"}]}]}",
                    "sites[0].routes[0].upstreams: expected a non-empty array");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"routes\":[{\"path\":\"/\",\"upstreams\":[\"h:1\"],\"pth\":1}]}]}",
                    "sites[0].routes[0].pth: unknown key");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"routes\":[{\"path\":\"/a\",\"upstreams\":[\"h:1\"]},"
                    "{\"path\":\"/a\",\"upstreams\":[\"h:2\"]}]}]}",
                    "sites[0].routes[1]: \"/a\" is already routed by sites[0].routes[0]");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"upstreams\":[\"h:1\"],"
                    "\"routes\":[{\"path\":\"/\",\"upstreams\":[\"h:2\"]}]}]}",
                    "sites[0].upstreams: conflicts with the route for \"/\"");
    CHECK_DOC_ERROR(
        "{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
        ",\"upstreams\":[\"h:1\"],\"balancing\":\"random\"}]}",
        "sites[0].balancing: expected \"round_robin\" or \"least_conn\", got \"random\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A
                    ",\"routes\":[{\"path\":\"/\",\"upstreams\":[\"h:1\"],\"balancing\":1}]}]}",
                    "sites[0].routes[0].balancing: expected \"round_robin\" or \"least_conn\"");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"]," CERT_A ",\"balancing\":\"least_conn\","
                    "\"routes\":[{\"path\":\"/\",\"upstreams\":[\"h:1\"]}]}]}",
                    "sites[0].balancing: applies only with \"upstreams\"");
    CHECK_DOC_ERROR("{\"sites\":[7]}", "sites[0]: expected an object, got 7");
}

static void test_many_errors(void)
{
    struct cfg *cfg = cfg_load_file("fixtures/bad_many.json", err, sizeof(err));
    CHECK(cfg == NULL);
    static const char *const want[] = {
        "workers: expected an integer from 0 to 1024, got 2000",
        "timeouts.request_head: expected a duration such as \"10s\", got \"ten\"",
        "log.level: expected \"debug\", \"info\", \"warn\" or \"error\", got \"loud\"",
        "log.colour: unknown key",
        "sites[0].hots: unknown key",
        "sites[0].certificate.key: cannot read",
        "sites[1].hosts[0]: \"a.test\" is already used by sites[0]",
        "sites[1].hosts[1]: expected a host name",
        "sites[1].upstreams[0]: expected \"host:port\", got \"foo\"",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(err, want[i]) == NULL) {
            fprintf(stderr, "missing \"%s\" in:\n%s\n", want[i], err);
        }
        CHECK(strstr(err, want[i]) != NULL);
    }
    CHECK(count_lines(err) == (int)(sizeof(want) / sizeof(want[0])));
    CHECK(err[strlen(err) - 1] != '\n');
}

static void test_err_buffer(void)
{
    const char *doc = "{\"workers\":2000,\"log\":{\"level\":\"loud\"},\"sites\":[]}";
    char small[24];

    /* Bytes past the NUL must stay untouched: fill and check a canary. */
    memset(small, '#', sizeof(small));
    CHECK(cfg_parse(doc, strlen(doc), NULL, small, 16) == NULL);
    CHECK(strlen(small) == 15);
    CHECK(strncmp(small, "workers: expect", 15) == 0);
    CHECK(small[16] == '#');

    CHECK(cfg_parse(doc, strlen(doc), NULL, NULL, 0) == NULL);
    CHECK(cfg_parse(doc, strlen(doc), NULL, small, 0) == NULL);
    CHECK(small[0] == 'w'); /* errlen 0: nothing written */
    CHECK(cfg_parse(doc, strlen(doc), NULL, small, 1) == NULL);
    CHECK_STR(small, "");

    /* Room for one whole line: the other two are summed up, not cut. */
    char mid[100];
    CHECK(cfg_parse(doc, strlen(doc), NULL, mid, sizeof(mid)) == NULL);
    CHECK_STR(mid, "workers: expected an integer from 0 to 1024, got 2000\n(2 more errors)");

    CHECK(cfg_parse(NULL, 0, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "(root): invalid JSON") != NULL);

    /* A key holding a newline still gives one error line. */
    const char *nl = "{\"a\\nb\":1,\"sites\":[" SITE_A "]}";
    CHECK(parse(nl) == NULL);
    CHECK(count_lines(err) == 1);
    CHECK(strstr(err, "a?b: unknown key") != NULL);
}

static void test_load_file_errors(void)
{
    CHECK(cfg_load_file("fixtures/nope.json", err, sizeof(err)) == NULL);
    CHECK_STR(err, "fixtures/nope.json: cannot read: No such file or directory");
    CHECK(cfg_load_file("fixtures", err, sizeof(err)) == NULL);
    CHECK_STR(err, "fixtures: cannot read: Is a directory");
    CHECK(cfg_load_file(NULL, err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');
}

int main(void)
{
    if (cwd_init() != 0) {
        return 1;
    }
    test_full();
    test_defaults();
    test_small_cases_ok();
    test_brief_errors();
    test_section_errors();
    test_site_errors();
    test_cert_errors();
    test_route_errors();
    test_many_errors();
    test_err_buffer();
    test_load_file_errors();
    return check_report();
}
