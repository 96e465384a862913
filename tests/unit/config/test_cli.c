/* test_cli.c - `moat proxy --from ... --to ...` turned into a struct cfg. */
#include <stdlib.h>

#include "cfg_test.h"

/* Runs cfg_from_cli on the arguments given, e.g. run("--from", "a.test"). */
#define run(...) run_argv((char *[]){__VA_ARGS__, NULL})

static struct cfg *run_argv(char **argv)
{
    int argc = 0;

    while (argv[argc] != NULL) {
        argc++;
    }
    return cfg_from_cli(argc, argv, err, sizeof(err));
}

#define CERT "--cert", "fixtures/a.pem", "--key", "fixtures/a.key"

static void test_good(void)
{
    struct cfg *cfg = run("--from", "a.test", "--from", "*.b.test", "--to", "127.0.0.1:9000", CERT);
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_STR(err, "");
    CHECK(cfg->n_sites == 1);
    const struct cfg_site *s = &cfg->sites[0];
    CHECK(s->n_hosts == 2);
    CHECK_STR(s->hosts[0], "a.test");
    CHECK_STR(s->hosts[1], "*.b.test");
    CHECK_STR(s->cert.cert_file, fixture_abs("a.pem"));
    CHECK_STR(s->cert.key_file, fixture_abs("a.key"));
    CHECK(s->n_routes == 1);
    CHECK_STR(s->routes[0].path_prefix, "/");
    CHECK(s->routes[0].balance == CFG_BALANCE_ROUND_ROBIN);
    CHECK(s->routes[0].n_upstreams == 1);
    CHECK_STR(s->routes[0].upstreams[0].host, "127.0.0.1");
    CHECK(s->routes[0].upstreams[0].port == 9000);
    CHECK_STR(cfg->tls.default_sni, "a.test");
    CHECK(cfg->tls.session_tickets);
    CHECK(cfg->tls.ticket_rotation_ms == 12ull * 3600 * 1000);
    CHECK(cfg->n_https_listen == 1);
    CHECK_STR(cfg->https_listen[0].host, "");
    CHECK(cfg->https_listen[0].port == 443);
    CHECK(cfg->n_http_listen == 1);
    CHECK_STR(cfg->http_listen[0].host, "");
    CHECK(cfg->http_listen[0].port == 80);
    CHECK(cfg->workers == 0);
    CHECK(!cfg->access_log);
    CHECK(cfg->log_level == CFG_LOG_INFO);
    CHECK(cfg->timeouts.request_head == 10000 && cfg->timeouts.drain == 10000);
    CHECK(cfg->limits.max_request_head == 16384);
    CHECK(cfg->n_trusted_proxies == 0);
    cfg_free(cfg);
}

static void test_equals_form(void)
{
    struct cfg *cfg = run("--from=A.Test", "--to=[::1]:9000", "--cert=fixtures/a.pem",
                          "--key=./fixtures/a.key", "--https-port=8443", "--http-port=0",
                          "--bind=::1", "--workers=4", "--log-level=warn", "--access-log");
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_STR(cfg->sites[0].hosts[0], "a.test");
    CHECK_STR(cfg->tls.default_sni, "a.test");
    CHECK_STR(cfg->sites[0].routes[0].upstreams[0].host, "::1");
    CHECK_STR(cfg->sites[0].cert.key_file, fixture_abs("a.key"));
    CHECK_STR(cfg->https_listen[0].host, "::1");
    CHECK(cfg->https_listen[0].port == 8443);
    CHECK_STR(cfg->http_listen[0].host, "::1");
    CHECK(cfg->http_listen[0].port == 0);
    CHECK(cfg->workers == 4);
    CHECK(cfg->log_level == CFG_LOG_WARN);
    CHECK(cfg->access_log);
    cfg_free(cfg);

    cfg = run("--from", "a.test", "--to", "h:1", CERT, "--bind", "[::1]", "--no-redirect",
              "--https-port", "0");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->https_listen[0].host, "::1");
        CHECK(cfg->https_listen[0].port == 0);
        CHECK(cfg->n_http_listen == 0 && cfg->http_listen == NULL);
    }
    cfg_free(cfg);

    cfg = run("--from", "a.test", "--to", "h:1", CERT, "--bind", "127.0.0.1");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->http_listen[0].host, "127.0.0.1");
    }
    cfg_free(cfg);
}

static void test_default_sni(void)
{
    struct cfg *cfg = run("--from", "*.b.test", "--to", "h:1", CERT);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->tls.default_sni == NULL);
    }
    cfg_free(cfg);

    cfg = run("--from", "*.b.test", "--from", "c.test", "--from", "a.test", "--to", "h:1", CERT);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->tls.default_sni, "c.test");
        CHECK(cfg->sites[0].n_hosts == 3);
    }
    cfg_free(cfg);
}

static void test_errors(void)
{
    CHECK_REFUSED(run("--from", "a.test", CERT), "--to: required");
    CHECK_REFUSED(run("--to", "h:1", CERT), "--from: required");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--cert", "fixtures/a.pem"),
                  "--key: required with --cert");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--key", "fixtures/a.key"),
                  "--cert: required with --key");
    CHECK_REFUSED(run("--from", "a.test", "--to", "foo", CERT),
                  "--to: expected \"host:port\", got \"foo\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "::1:80", CERT),
                  "--to: expected \"host:port\", got \"::1:80\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:0", CERT),
                  "--to: expected a port from 1 to 65535, got \"h:0\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--to", "h:2", CERT),
                  "--to: given more than once");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--cert", "fixtures/nope.pem", "--key",
                      "fixtures/a.key"),
                  "--cert: cannot read \"");
    CHECK_REFUSED(run("--from", "bad_host", "--to", "h:1", CERT),
                  "--from: expected a host name such as");
    CHECK_REFUSED(run("--from", "a.test", "--from", "A.TEST", "--to", "h:1", CERT),
                  "--from: \"a.test\" is listed twice");
    CHECK_REFUSED(run("--from=", "--to", "h:1", CERT), "--from: expected a host name");
    CHECK_REFUSED(run("--frm", "a.test", "--to", "h:1", CERT), "--frm: unknown option");
    CHECK_REFUSED(run("--from=a.test", "--to", "h:1", CERT, "--bogus=1"),
                  "--bogus: unknown option");
    CHECK_REFUSED(run("--from", "a.test", CERT, "--to"), "--to: missing value");
    CHECK_REFUSED(run("--from", "--to", "h:1", CERT), "--from: missing value");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--no-redirect=yes"),
                  "--no-redirect: takes no value");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "extra"),
                  "\"extra\": unexpected argument");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "-x"),
                  "\"-x\": unexpected argument");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--http-port", "443"),
                  "--http-port: port 443 is already used by --https-port");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--https-port", "70000"),
                  "--https-port: expected a port from 0 to 65535, got \"70000\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--http-port", "x"),
                  "--http-port: expected a port from 0 to 65535");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--bind", "bad host"),
                  "--bind: expected an IP address or a host name, got \"bad host\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--workers", "2000"),
                  "--workers: expected an integer from 0 to 1024, got \"2000\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--log-level", "loud"),
                  "--log-level: expected debug, info, warn or error, got \"loud\"");

    /* No arguments at all: each required option is named. */
    CHECK(cfg_from_cli(0, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "--from: required") != NULL);
    CHECK(strstr(err, "--to: required") != NULL);
    CHECK(strstr(err, "--cert") == NULL);

    /* Every problem at once. */
    CHECK(run("--frm", "x", "--to", "foo", "--workers", "x") == NULL);
    CHECK(strstr(err, "--frm: unknown option") != NULL);
    CHECK(strstr(err, "--from: required") != NULL);
    CHECK(strstr(err, "--workers: expected") != NULL);

    /* A small buffer is never overrun. */
    char small[8];
    char *argv[] = {"--to", "foo"};
    CHECK(cfg_from_cli(2, argv, small, sizeof(small)) == NULL);
    CHECK(strlen(small) == 7);
}

static void test_acme_good(void)
{
    /* Without --cert and --key the site's certificate comes from ACME, with defaults. */
    setenv("XDG_DATA_HOME", "/xdg", 1);
    struct cfg *cfg = run("--from", "a.test", "--from", "b.test", "--to", "h:1");
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const struct cfg_site *s = &cfg->sites[0];
    CHECK(s->cert.cert_file == NULL && s->cert.key_file == NULL);
    CHECK_STR(cfg->tls.default_sni, "a.test");
    CHECK_STR(cfg->acme.ca, "https://acme-v02.api.letsencrypt.org/directory");
    CHECK(cfg->acme.ca_root == NULL && cfg->acme.email == NULL && cfg->acme.eab_kid == NULL);
    CHECK(cfg->acme.n_challenges == 2);
    CHECK(cfg->acme.challenges[0] == CFG_CHALLENGE_TLS_ALPN_01);
    CHECK(cfg->acme.challenges[1] == CFG_CHALLENGE_HTTP_01);
    CHECK(cfg->acme.key_type == CFG_KEY_EC256);
    CHECK_STR(cfg->acme.storage, "/xdg/moat");
    CHECK(cfg->acme.renew_window == 0);
    cfg_free(cfg);

    /* Every ACME option; relative paths are taken from the current directory. */
    cfg = run("--from", "a.test", "--to", "h:1", "--acme-ca", "https://localhost:14000/dir",
              "--acme-ca-root", "fixtures/certs.d/c.pem", "--storage", "state", "--email",
              "ops@example.com", "--challenges", "http-01", "--eab-kid", "kid-1", "--eab-hmac-key",
              HMAC_KEY, "--key-type", "rsa2048");
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_STR(cfg->acme.ca, "https://localhost:14000/dir");
    CHECK_STR(cfg->acme.ca_root, fixture_abs("certs.d/c.pem"));
    char want[PATH_MAX + 16];
    snprintf(want, sizeof(want), "%s/state", cwd);
    CHECK_STR(cfg->acme.storage, want);
    CHECK_STR(cfg->acme.email, "ops@example.com");
    CHECK(cfg->acme.n_challenges == 1);
    CHECK(cfg->acme.challenges[0] == CFG_CHALLENGE_HTTP_01);
    CHECK_STR(cfg->acme.eab_kid, "kid-1");
    CHECK_STR(cfg->acme.eab_hmac_key, HMAC_KEY);
    CHECK(cfg->acme.key_type == CFG_KEY_RSA2048);
    cfg_free(cfg);

    cfg = run("--from=a.test", "--to=h:1", "--challenges=http-01,tls-alpn-01", "--storage=/srv/m",
              "--key-type=ec256");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->acme.n_challenges == 2);
        CHECK(cfg->acme.challenges[0] == CFG_CHALLENGE_HTTP_01);
        CHECK(cfg->acme.challenges[1] == CFG_CHALLENGE_TLS_ALPN_01);
        CHECK_STR(cfg->acme.storage, "/srv/m");
        CHECK(cfg->acme.key_type == CFG_KEY_EC256);
    }
    cfg_free(cfg);

    /* With --cert and --key the ACME values are still filled (and checked). */
    cfg = run("--from", "*.b.test", "--to", "h:1", CERT, "--email", "ops@example.com");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->acme.email, "ops@example.com");
        CHECK(cfg->acme.storage != NULL && cfg->acme.ca != NULL);
    }
    cfg_free(cfg);
}

static void test_acme_errors(void)
{
    CHECK_REFUSED(run("--from", "a.test", "--from", "*.example.com", "--to", "h:1"),
                  "--from: \"*.example.com\" needs --cert and --key: wildcard names cannot be "
                  "obtained with tls-alpn-01 or http-01");
    CHECK_REFUSED(run("--from", "192.0.2.1", "--to", "h:1"),
                  "--from: \"192.0.2.1\" needs --cert and --key: moat requests ACME "
                  "certificates for host names only, not IP addresses");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--challenges", "dns-01"),
                  "--challenges: expected \"tls-alpn-01\" or \"http-01\", got \"dns-01\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--challenges", "http-01,dns-01"),
                  "--challenges: expected \"tls-alpn-01\" or \"http-01\", got \"dns-01\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--challenges", "http-01,http-01"),
                  "--challenges: expected each challenge at most once, got \"http-01\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--challenges=http-01,"),
                  "--challenges: expected \"tls-alpn-01\" or \"http-01\", got \"\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--challenges="),
                  "--challenges: expected \"tls-alpn-01\" or \"http-01\", got \"\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--eab-kid", "kid-1"),
                  "--eab-hmac-key: required with --eab-kid");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--eab-hmac-key", HMAC_KEY),
                  "--eab-kid: required with --eab-hmac-key");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--key-type", "rsa4096"),
                  "--key-type: expected \"ec256\" or \"rsa2048\", got \"rsa4096\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--acme-ca", "ca.test/dir"),
                  "--acme-ca: expected an http:// or https:// URL, got \"ca.test/dir\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--email", "ops"),
                  "--email: expected an email address such as \"ops@example.com\", got \"ops\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--acme-ca-root", "fixtures/nope.pem"),
                  "--acme-ca-root: cannot read \"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--storage="),
                  "--storage: expected a directory path, got \"\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--email", "a@b", "--email", "c@d"),
                  "--email: given more than once");

    /* The key is a secret: never echoed. */
    CHECK(run("--from", "a.test", "--to", "h:1", "--eab-kid", "k", "--eab-hmac-key",
              "SECRETSECRET") == NULL);
    CHECK_STR(err, "--eab-hmac-key: expected base64url of at least 16 bytes");
}

#define ASK_URL "http://127.0.0.1:9000/check"

static void test_on_demand_good(void)
{
    /* Without --on-demand it stays off, with its defaults. */
    struct cfg *cfg = run("--from", "a.test", "--to", "h:1");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(!cfg->on_demand.enabled);
        CHECK(cfg->on_demand.n_allow == 0 && cfg->on_demand.allow == NULL);
        CHECK(cfg->on_demand.ask == NULL);
        CHECK(cfg->on_demand.timeout_ms == 60000);
    }
    cfg_free(cfg);

    /* Every NAME is a site host and an allow pattern; no --ask is needed without "*". */
    cfg = run("--from", "A.test", "--from", "*.B.test", "--to", "h:1", "--on-demand");
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    const struct cfg_on_demand *od = &cfg->on_demand;
    CHECK(od->enabled);
    CHECK(od->n_allow == 2);
    CHECK_STR(od->allow[0], "a.test");
    CHECK_STR(od->allow[1], "*.b.test");
    CHECK(od->ask == NULL);
    CHECK(od->timeout_ms == 60000);
    CHECK(od->ask_cache_ms == 60000 && od->concurrency == 8 && od->cache_size == 1000);
    CHECK(od->rate_orders == 60 && od->rate_per_ms == 60000);
    CHECK(cfg->sites[0].n_hosts == 2);
    CHECK_STR(cfg->sites[0].hosts[1], "*.b.test");
    CHECK(cfg->sites[0].cert.cert_file == NULL);
    CHECK_STR(cfg->tls.default_sni, "a.test");
    cfg_free(cfg);

    /* "*" is a site host with --ask; it leaves allow empty so that --ask alone decides. */
    cfg = run("--from", "*", "--from", "a.test", "--to", "h:1", "--on-demand", "--ask", ASK_URL,
              "--on-demand-timeout", "90s");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->on_demand.enabled);
        CHECK(cfg->on_demand.n_allow == 0);
        CHECK_STR(cfg->on_demand.ask, ASK_URL);
        CHECK(cfg->on_demand.timeout_ms == 90000);
        CHECK(cfg->sites[0].n_hosts == 2);
        CHECK_STR(cfg->sites[0].hosts[0], "*");
        CHECK_STR(cfg->tls.default_sni, "a.test");
    }
    cfg_free(cfg);

    cfg = run("--from=*", "--to=h:1", "--on-demand", "--ask=https://auth.test/ok?x=1",
              "--on-demand-timeout=2.5");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->on_demand.n_allow == 0);
        CHECK_STR(cfg->on_demand.ask, "https://auth.test/ok?x=1");
        CHECK(cfg->on_demand.timeout_ms == 2500);
        CHECK(cfg->tls.default_sni == NULL);
    }
    cfg_free(cfg);
}

static void test_on_demand_errors(void)
{
    CHECK_REFUSED(run("--from", "*", "--to", "h:1", "--on-demand"),
                  "--from: \"*\" needs --ask: without it any name pointed at this server would "
                  "get a certificate");
    CHECK(strstr(err, "needs \"allow\"") == NULL);
    CHECK_REFUSED(run("--from", "*", "--to", "h:1"), "--from: expected a host name such as");
    CHECK_REFUSED(run("--from", "*", "--to", "h:1", CERT, "--ask", ASK_URL),
                  "--from: expected a host name such as");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--ask", ASK_URL),
                  "--ask: only with --on-demand");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--on-demand-timeout", "5s"),
                  "--on-demand-timeout: only with --on-demand");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--on-demand", CERT),
                  "--cert: not with --on-demand, whose certificates come from ACME");
    CHECK(strstr(err, "--key: not with --on-demand") != NULL);
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--on-demand", "--ask", "ftp://x/"),
                  "--ask: expected an http:// or https:// URL, got \"ftp://x/\"");
    CHECK_REFUSED(
        run("--from", "a.test", "--to", "h:1", "--on-demand", "--ask", "http://auth.test/#x"),
        "--ask: expected an http:// or https:// URL without a #fragment");
    CHECK_REFUSED(
        run("--from", "a.test", "--to", "h:1", "--on-demand", "--ask", ASK_URL, "--ask", ASK_URL),
        "--ask: given more than once");
    CHECK_REFUSED(
        run("--from", "a.test", "--to", "h:1", "--on-demand", "--on-demand-timeout", "0s"),
        "--on-demand-timeout: expected a duration greater than zero, got \"0s\"");
    CHECK_REFUSED(
        run("--from", "a.test", "--to", "h:1", "--on-demand", "--on-demand-timeout", "soon"),
        "--on-demand-timeout: expected a duration such as \"10s\", got \"soon\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--on-demand=yes"),
                  "--on-demand: takes no value");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", "--on-demand", "--ask"),
                  "--ask: missing value");
    /* IP addresses stay refused; wildcards without --on-demand keep their error. */
    CHECK_REFUSED(run("--from", "192.0.2.1", "--to", "h:1", "--on-demand", "--ask", ASK_URL),
                  "--from: \"192.0.2.1\" needs --cert and --key: moat requests ACME "
                  "certificates for host names only, not IP addresses");
    CHECK_REFUSED(run("--from", "*.a.test", "--to", "h:1"),
                  "--from: \"*.a.test\" needs --cert and --key: wildcard names cannot be "
                  "obtained with tls-alpn-01 or http-01");
    CHECK_REFUSED(run("--from", "*", "--from", "*", "--to", "h:1", "--on-demand", "--ask", ASK_URL),
                  "--from: \"*\" is listed twice");
}

static void test_help(void)
{
    char *argv[] = {"--from", "a.test", "--help"};

    CHECK(cfg_cli_wants_help(3, argv));
    CHECK(!cfg_cli_wants_help(2, argv));
    CHECK(cfg_from_cli(3, argv, err, sizeof(err)) == NULL);
    CHECK_STR(err, cfg_cli_usage());
    CHECK(strncmp(cfg_cli_usage(), "usage: moat proxy", 17) == 0);
    static const char *const documented[] = {"--from",
                                             "--to",
                                             "--cert",
                                             "--key",
                                             "--http-port",
                                             "--https-port",
                                             "--no-redirect",
                                             "--bind",
                                             "--workers",
                                             "--access-log",
                                             "--log-level",
                                             "--log-file",
                                             "--admin ADDR:PORT",
                                             "127.0.0.1:2019",
                                             "--user NAME",
                                             "--help",
                                             "--acme-ca",
                                             "--acme-ca-root",
                                             "--storage",
                                             "--email",
                                             "--challenges",
                                             "--eab-kid",
                                             "--eab-hmac-key",
                                             "--key-type",
                                             "acme-staging-v02.api.letsencrypt.org",
                                             "/var/lib/moat",
                                             "--on-demand",
                                             "--ask URL",
                                             "--on-demand-timeout DURATION",
                                             "?domain=NAME"};
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++) {
        CHECK(strstr(cfg_cli_usage(), documented[i]) != NULL);
    }
    char *h[] = {"-h"};
    CHECK(cfg_cli_wants_help(1, h));
}

/* --admin, --user and --log-file; the defaults are those of a config file. */
static void test_ops_options(void)
{
    char want[PATH_MAX + 64];

    struct cfg *cfg = run("--from", "a.test", "--to", "h:1", CERT);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->admin.enabled && !cfg->admin.explicit);
        CHECK_STR(cfg->admin.listen.host, "127.0.0.1");
        CHECK(cfg->admin.listen.port == 2019);
        CHECK(cfg->user == NULL);
        CHECK(cfg->log_file == NULL);
        const struct cfg_health *h = &cfg->sites[0].routes[0].health;
        CHECK(h->path == NULL && h->host == NULL && h->max_fails == 0);
        CHECK(h->interval_ms == 10000 && h->timeout_ms == 5000);
        CHECK(h->fail_window_ms == 10000 && h->fail_duration_ms == 30000);
    }
    cfg_free(cfg);

    cfg = run("--from", "a.test", "--to", "h:1", CERT, "--admin", "[::1]:0", "--user", "moat",
              "--log-file", "logs/moat.log");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->admin.enabled && cfg->admin.explicit);
        CHECK_STR(cfg->admin.listen.host, "::1");
        CHECK(cfg->admin.listen.port == 0);
        CHECK_STR(cfg->user, "moat");
        snprintf(want, sizeof(want), "%s/logs/moat.log", cwd);
        CHECK_STR(cfg->log_file, want);
    }
    cfg_free(cfg);

    cfg = run("--from", "a.test", "--to", "h:1", CERT, "--admin=off", "--user=1000",
              "--log-file=/var/log/moat.log");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(!cfg->admin.enabled);
        CHECK(cfg->admin.listen.host == NULL);
        CHECK_STR(cfg->user, "1000");
        CHECK_STR(cfg->log_file, "/var/log/moat.log");
    }
    cfg_free(cfg);

    cfg = run("--from", "a.test", "--to", "h:1", CERT, "--admin", "localhost:9180");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->admin.listen.host, "127.0.0.1");
        CHECK(cfg->admin.listen.port == 9180);
    }
    cfg_free(cfg);

    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--admin", "2019"),
                  "--admin: expected \"host:port\" or \"off\", got \"2019\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--admin", ":2019"),
                  "--admin: the admin API has no authentication; name a loopback address");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--admin", "admin.test:1"),
                  "--admin: expected an IP address or \"localhost\" as the host");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--admin", "127.0.0.1:443"),
                  "--admin: port 443 is already used by --https-port");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--https-port", "8443", "--admin",
                      "127.0.0.1:80"),
                  "--admin: port 80 is already used by --http-port");
    cfg = run("--from", "a.test", "--to", "h:1", CERT, "--no-redirect", "--admin", "127.0.0.1:80");
    CHECK(cfg != NULL); /* no plain listener, so port 80 is free */
    cfg_free(cfg);
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--admin"),
                  "--admin: missing value");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--admin", "off", "--admin", "off"),
                  "--admin: given more than once");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--user", "a:b"),
                  "--user: expected a user name or a numeric uid, got \"a:b\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--user="),
                  "--user: expected a user name or a numeric uid, got \"\"");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--user", "4294967295"),
                  "--user: expected a uid from 0 to 4294967294");
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--log-file="),
                  "--log-file: expected a file path, got \"\"");
    snprintf(want, sizeof(want), "--log-file: cannot write \"%s/fixtures\": Is a directory", cwd);
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1", CERT, "--log-file", "fixtures"), want);
}

static void test_unreachable_challenge(void)
{
    CHECK_REFUSED(
        run("--from", "a.test", "--to", "h:1", "--challenges", "http-01", "--no-redirect"),
        "--challenges: only \"http-01\" is enabled but nothing listens");
}

int main(void)
{
    if (cwd_init() != 0) {
        return 1;
    }
    test_good();
    test_equals_form();
    test_default_sni();
    test_errors();
    test_acme_good();
    test_acme_errors();
    test_on_demand_good();
    test_on_demand_errors();
    test_help();
    test_ops_options();
    test_unreachable_challenge();
    return check_report();
}
