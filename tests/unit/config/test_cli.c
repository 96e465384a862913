/* test_cli.c - `moat proxy --from ... --to ...` turned into a struct cfg. */
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "config.h"

static char err[4096];
static char cwd[PATH_MAX];

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

static void check_refused(struct cfg *cfg, const char *want, int line)
{
    if (cfg != NULL || strstr(err, want) == NULL) {
        fprintf(stderr, "line %d: want error containing\n  %s\ngot\n  %s\n", line, want, err);
    }
    CHECK(cfg == NULL);
    CHECK(strstr(err, want) != NULL);
    cfg_free(cfg);
}
#define CHECK_REFUSED(cfg, want) check_refused(cfg, want, __LINE__)

#define CERT "--cert", "fixtures/a.pem", "--key", "fixtures/a.key"

static const char *abs_fixture(const char *name)
{
    static char buf[PATH_MAX + 64];
    snprintf(buf, sizeof(buf), "%s/fixtures/%s", cwd, name);
    return buf;
}

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
    CHECK_STR(s->cert.cert_file, abs_fixture("a.pem"));
    CHECK_STR(s->cert.key_file, abs_fixture("a.key"));
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
    CHECK_STR(cfg->sites[0].cert.key_file, abs_fixture("a.key"));
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
    CHECK_REFUSED(run("--from", "a.test", "--to", "h:1"),
                  "--cert: required (with --key) until ACME is configured");
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
    CHECK(strstr(err, "--cert: required") != NULL);

    /* Every problem at once. */
    CHECK(run("--frm", "x", "--to", "foo", "--workers", "x") == NULL);
    CHECK(strstr(err, "--frm: unknown option") != NULL);
    CHECK(strstr(err, "--from: required") != NULL);
    CHECK(strstr(err, "--cert: required") != NULL);
    CHECK(strstr(err, "--workers: expected") != NULL);

    /* A small buffer is never overrun. */
    char small[8];
    char *argv[] = {"--to", "foo"};
    CHECK(cfg_from_cli(2, argv, small, sizeof(small)) == NULL);
    CHECK(strlen(small) == 7);
}

static void test_help(void)
{
    char *argv[] = {"--from", "a.test", "--help"};

    CHECK(cfg_cli_wants_help(3, argv));
    CHECK(!cfg_cli_wants_help(2, argv));
    CHECK(cfg_from_cli(3, argv, err, sizeof(err)) == NULL);
    CHECK_STR(err, cfg_cli_usage());
    CHECK(strncmp(cfg_cli_usage(), "usage: moat proxy", 17) == 0);
    static const char *const documented[] = {
        "--from",        "--to",   "--cert",    "--key",        "--http-port", "--https-port",
        "--no-redirect", "--bind", "--workers", "--access-log", "--log-level", "--help"};
    for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++) {
        CHECK(strstr(cfg_cli_usage(), documented[i]) != NULL);
    }
    char *h[] = {"-h"};
    CHECK(cfg_cli_wants_help(1, h));
}

int main(void)
{
    if (getcwd(cwd, sizeof(cwd)) == NULL) {
        perror("getcwd");
        return 1;
    }
    test_good();
    test_equals_form();
    test_default_sni();
    test_errors();
    test_help();
    return check_report();
}
