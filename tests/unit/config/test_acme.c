/* test_acme.c - the "acme" section: defaults (from the environment), every key read back,
 * every error with its key path, the value checks the CLI shares, and sites whose
 * certificate comes from ACME.
 *
 * Runs in tests/unit/config, so fixture paths are "fixtures/...".
 */
#include <stdlib.h>

#include "cfg_test.h"
#include "config_int.h"

/* The document {"acme": ACME, "sites": [SITE_ACME]}. */
static struct cfg *parse_acme(const char *acme)
{
    char doc[2048];
    int n = snprintf(doc, sizeof(doc), "{\"acme\":%s,\"sites\":[" SITE_ACME "]}", acme);
    CHECK(n > 0 && (size_t)n < sizeof(doc));
    return parse(doc);
}

/* The acme value given, with one ACME site, must be refused with want. */
#define CHECK_ACME_ERROR(acme, want) CHECK_REFUSED(parse_acme(acme), want)

/* dir + "/" + name into a static buffer. */
static const char *under(const char *dir, const char *name)
{
    static char buf[PATH_MAX + 64];
    int n = snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    CHECK(n > 0 && (size_t)n < sizeof(buf));
    return buf;
}

static void check_default_acme(const struct cfg_acme *a, const char *storage)
{
    CHECK_STR(a->ca, "https://acme-v02.api.letsencrypt.org/directory");
    CHECK(a->ca_root == NULL);
    CHECK(a->email == NULL);
    CHECK(a->eab_kid == NULL && a->eab_hmac_key == NULL);
    CHECK(a->n_challenges == 2);
    CHECK(a->challenges[0] == CFG_CHALLENGE_TLS_ALPN_01);
    CHECK(a->challenges[1] == CFG_CHALLENGE_HTTP_01);
    CHECK(a->key_type == CFG_KEY_EC256);
    CHECK(a->renew_window == 0);
    CHECK(a->retry_initial_ms == 60 * 1000);
    CHECK(a->retry_max_ms == 6 * 3600 * 1000);
    CHECK_STR(a->storage, storage);
}

/* The default storage for one environment, with and without an "acme" block. */
static void check_storage_env(const char *xdg, const char *home, const char *want, int line)
{
    static const char *const docs[] = {"{\"sites\":[" SITE_ACME "]}",
                                       "{\"acme\":{},\"sites\":[" SITE_ACME "]}"};

    if (xdg != NULL) {
        setenv("XDG_DATA_HOME", xdg, 1);
    } else {
        unsetenv("XDG_DATA_HOME");
    }
    if (home != NULL) {
        setenv("HOME", home, 1);
    } else {
        unsetenv("HOME");
    }
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct cfg *cfg = parse(docs[i]);
        CHECK(cfg != NULL);
        if (cfg == NULL) {
            fprintf(stderr, "line %d: %s\n", line, err);
            continue;
        }
        if (cfg->acme.storage == NULL || strcmp(cfg->acme.storage, want) != 0) {
            fprintf(stderr, "line %d: storage %s, want %s\n", line,
                    cfg->acme.storage ? cfg->acme.storage : "(null)", want);
        }
        check_default_acme(&cfg->acme, want);
        cfg_free(cfg);
    }
}
#define CHECK_STORAGE_ENV(xdg, home, want) check_storage_env(xdg, home, want, __LINE__)

static void test_defaults(void)
{
    char *saved_xdg = getenv("XDG_DATA_HOME") ? strdup(getenv("XDG_DATA_HOME")) : NULL;
    char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

    CHECK_STORAGE_ENV("/xdg/data", "/home/u", "/xdg/data/moat");
    CHECK_STORAGE_ENV("/xdg/data//", "/home/u", "/xdg/data/moat");
    CHECK_STORAGE_ENV("/", NULL, "/moat");
    /* A relative or empty XDG_DATA_HOME is ignored, as the XDG spec says. */
    CHECK_STORAGE_ENV("rel/data", "/home/u", "/home/u/.local/share/moat");
    CHECK_STORAGE_ENV("", "/home/u/", "/home/u/.local/share/moat");
    CHECK_STORAGE_ENV(NULL, "/home/u", "/home/u/.local/share/moat");
    CHECK_STORAGE_ENV(NULL, NULL, "/var/lib/moat");
    CHECK_STORAGE_ENV(NULL, "", "/var/lib/moat");
    CHECK_STORAGE_ENV("", "relative/home", "/var/lib/moat");

    /* The public helper gives the same answer the loader uses. */
    setenv("XDG_DATA_HOME", "/data", 1);
    char *storage = cfg_acme_default_storage();
    CHECK_STR(storage, "/data/moat");
    free(storage);

    /* A full file without "acme" (and sites with certificates) still gets the defaults. */
    unsetenv("XDG_DATA_HOME");
    unsetenv("HOME");
    struct cfg *cfg = cfg_load_file("fixtures/minimal.json", err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        check_default_acme(&cfg->acme, "/var/lib/moat");
    }
    cfg_free(cfg);

    if (saved_xdg != NULL) {
        setenv("XDG_DATA_HOME", saved_xdg, 1);
    }
    if (saved_home != NULL) {
        setenv("HOME", saved_home, 1);
    }
    free(saved_xdg);
    free(saved_home);
}

static void test_read_back(void)
{
    char fixtures[PATH_MAX + 16];
    snprintf(fixtures, sizeof(fixtures), "%s/fixtures", cwd);

    struct cfg *cfg = cfg_load_file("fixtures/acme.json", err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        fprintf(stderr, "acme.json: %s\n", err);
        return;
    }
    const struct cfg_acme *a = &cfg->acme;
    CHECK_STR(a->ca, "https://acme-staging-v02.api.letsencrypt.org/directory");
    CHECK_STR(a->ca_root, under(fixtures, "certs.d/c.pem"));
    CHECK_STR(a->email, "ops@example.com");
    CHECK_STR(a->eab_kid, "kid-1");
    CHECK_STR(a->eab_hmac_key, HMAC_KEY);
    CHECK(a->n_challenges == 2);
    CHECK(a->challenges[0] == CFG_CHALLENGE_HTTP_01);
    CHECK(a->challenges[1] == CFG_CHALLENGE_TLS_ALPN_01);
    CHECK(a->key_type == CFG_KEY_RSA2048);
    CHECK_STR(a->storage, under(fixtures, "state/acme"));
    CHECK(a->renew_window == 0.25);
    CHECK(a->retry_initial_ms == 30 * 1000);
    CHECK(a->retry_max_ms == 2 * 3600 * 1000);

    /* The first site has no "certificate": ACME. The second keeps its files, so a
     * wildcard and an IP address are fine there. */
    CHECK(cfg->n_sites == 2);
    CHECK_STR(cfg->sites[0].hosts[0], "app.example.com");
    CHECK(cfg->sites[0].cert.cert_file == NULL && cfg->sites[0].cert.key_file == NULL);
    CHECK_STR(cfg->sites[1].hosts[0], "*.example.org");
    CHECK_STR(cfg->sites[1].cert.cert_file, under(fixtures, "a.pem"));
    CHECK_STR(cfg->tls.default_sni, "app.example.com");
    cfg_free(cfg);

    /* One challenge; an absolute storage stays as it is; a relative one without a
     * base directory is taken from the current directory. */
    const char *doc = "{\"acme\":{\"challenges\":[\"tls-alpn-01\"],\"key_type\":\"ec256\","
                      "\"storage\":\"/srv/moat\",\"renew_window\":0.5},\"sites\":[" SITE_ACME "]}";
    cfg = parse(doc);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->acme.n_challenges == 1);
        CHECK(cfg->acme.challenges[0] == CFG_CHALLENGE_TLS_ALPN_01);
        CHECK(cfg->acme.key_type == CFG_KEY_EC256);
        CHECK_STR(cfg->acme.storage, "/srv/moat");
        CHECK(cfg->acme.renew_window == 0.5);
    }
    cfg_free(cfg);
    cfg = parse_acme("{\"retry_initial\":\"10m\",\"retry_max\":600}");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->acme.retry_initial_ms == 600000 && cfg->acme.retry_max_ms == 600000);
    }
    cfg_free(cfg);
    doc = "{\"acme\":{\"storage\":\"./var/moat\"},\"sites\":[" SITE_ACME "]}";
    cfg = parse_in(doc, NULL);
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->acme.storage, under(cwd, "var/moat"));
    }
    cfg_free(cfg);
}

static void test_url_check(void)
{
    static const char *const good[] = {
        "https://acme-v02.api.letsencrypt.org/directory",
        "http://localhost:14000/dir",
        "https://pebble:14000/dir?x=1#y",
        "HTTPS://CA.Example.com",
        "https://[::1]:14000/dir",
        "https://10.0.0.1/dir",
        "http://ca.test:65535",
    };
    static const char *const bad[] = {
        "",
        "ftp://ca.test/dir",
        "ca.test/dir",
        "https://",
        "https:///x",
        "https://ca test/",
        "https://ca.test/a b",
        "https://user@ca.test/",
        "https://:1",
        "https://ca.test:0/",
        "https://ca.test:99999",
        "https://ca.test:/",
        "https://[::1/x]",
        "https://[ca.test]/",
        "https://::1/",
        "http//ca.test",
        "https://ca.test:1a",
        "https://bad_host!/",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (cfg_check_acme_url(good[i]) != NULL) {
            fprintf(stderr, "URL refused: %s\n", good[i]);
        }
        CHECK(cfg_check_acme_url(good[i]) == NULL);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (cfg_check_acme_url(bad[i]) == NULL) {
            fprintf(stderr, "URL accepted: %s\n", bad[i]);
        }
        CHECK(cfg_check_acme_url(bad[i]) != NULL);
    }
    CHECK(cfg_check_acme_url(NULL) != NULL);
}

static void test_value_checks(void)
{
    static const char *const good_mail[] = {"ops@example.com", "a@b", "first.last+tag@x.test"};
    static const char *const bad_mail[] = {"",      "ops",   "@example.com", "ops@",
                                           "a@b@c", "a b@c", "a@b\tc",       "a@b\x7f"};
    for (size_t i = 0; i < sizeof(good_mail) / sizeof(good_mail[0]); i++) {
        CHECK(cfg_check_email(good_mail[i]) == NULL);
    }
    for (size_t i = 0; i < sizeof(bad_mail) / sizeof(bad_mail[0]); i++) {
        CHECK(cfg_check_email(bad_mail[i]) != NULL);
    }

    /* 22 characters carry 16 bytes; 21 only 15. Padding must complete a group of 4. */
    static const char *const good_key[] = {HMAC_KEY, "AAAAAAAAAAAAAAAAAAAAAA",
                                           "AAAAAAAAAAAAAAAAAAAAAA==", "-_-_-_-_-_-_-_-_-_-_-_-_"};
    static const char *const bad_key[] = {
        "",
        "AAAAAAAAAAAAAAAAAAAAA",     /* 15 bytes */
        "AAAAAAAAAAAAAAAAAAAAAA=",   /* short padding */
        "AAAAAAAAAAAAAAAAAAAAAAAA=", /* padding after a full group */
        "AAAAAAAAAAAAAAAAAAAAAAAAA", /* 25 characters: one left over */
        "AAAAAAAAAAAAAAAAAAAAA+/A",  /* standard base64 */
        "AAAAAAAAAAAAAAAAAAAA==AA",  /* padding inside */
        "AAAAAAAAAAAAAAAAAAAAAA ",
    };
    for (size_t i = 0; i < sizeof(good_key) / sizeof(good_key[0]); i++) {
        CHECK(cfg_check_eab_hmac_key(good_key[i]) == NULL);
    }
    for (size_t i = 0; i < sizeof(bad_key) / sizeof(bad_key[0]); i++) {
        if (cfg_check_eab_hmac_key(bad_key[i]) == NULL) {
            fprintf(stderr, "key accepted: %s\n", bad_key[i]);
        }
        CHECK(cfg_check_eab_hmac_key(bad_key[i]) != NULL);
    }
    CHECK(cfg_check_eab_kid("kid-1") == NULL);
    CHECK(cfg_check_eab_kid("") != NULL);
    CHECK(cfg_check_eab_kid("a b") != NULL);

    CHECK(cfg_check_acme_host("app.example.com", NULL) == NULL);
    CHECK(cfg_check_acme_host("*.example.com", NULL) != NULL);
    CHECK(cfg_check_acme_host("192.0.2.1", NULL) != NULL);
    CHECK(cfg_check_acme_host("2001:db8::1", NULL) != NULL);
    CHECK(cfg_check_acme_host("*", NULL) != NULL);
    /* On demand, wildcards pass, "*" only with an ask URL, IP addresses never. */
    struct cfg_on_demand od;
    cfg_on_demand_set_defaults(&od);
    CHECK(cfg_check_acme_host("*.example.com", &od) != NULL);
    od.enabled = true;
    CHECK(cfg_check_acme_host("app.example.com", &od) == NULL);
    CHECK(cfg_check_acme_host("*.example.com", &od) == NULL);
    CHECK(cfg_check_acme_host("*", &od) != NULL);
    CHECK(cfg_check_acme_host("192.0.2.1", &od) != NULL);
    char ask[] = "http://127.0.0.1:9000/check";
    od.ask = ask;
    CHECK(cfg_check_acme_host("*", &od) == NULL);
    CHECK(cfg_check_acme_host("2001:db8::1", &od) != NULL);

    enum cfg_key_type kt = CFG_KEY_EC256;
    CHECK(cfg_check_key_type("rsa2048", &kt) == NULL && kt == CFG_KEY_RSA2048);
    CHECK(cfg_check_key_type("RSA2048", &kt) != NULL && kt == CFG_KEY_RSA2048);
}

static void test_errors(void)
{
    CHECK_ACME_ERROR("{\"ca\":\"ftp://ca.test/dir\"}",
                     "acme.ca: expected an http:// or https:// URL, got \"ftp://ca.test/dir\"");
    CHECK_ACME_ERROR("{\"ca\":\"https://\"}", "acme.ca: expected an http:// or https:// URL");
    CHECK_ACME_ERROR("{\"ca\":42}", "acme.ca: expected an http:// or https:// URL, got 42");
    CHECK_ACME_ERROR("{\"email\":\"ops\"}",
                     "acme.email: expected an email address such as \"ops@example.com\", got "
                     "\"ops\"");
    CHECK_ACME_ERROR("{\"email\":\"a b@example.com\"}", "acme.email: expected an email address");
    CHECK_ACME_ERROR("{\"challenges\":[\"tls-alpn-01\",\"dns-01\"]}",
                     "acme.challenges[1]: expected \"tls-alpn-01\" or \"http-01\", got \"dns-01\"");
    CHECK_ACME_ERROR("{\"challenges\":[\"http-01\",\"http-01\"]}",
                     "acme.challenges[1]: expected each challenge at most once, got \"http-01\"");
    CHECK_ACME_ERROR("{\"challenges\":[]}", "acme.challenges: expected a non-empty array");
    CHECK_ACME_ERROR("{\"challenges\":\"http-01\"}",
                     "acme.challenges: expected a non-empty array, got \"http-01\"");
    CHECK_ACME_ERROR("{\"challenges\":[1]}",
                     "acme.challenges[0]: expected \"tls-alpn-01\" or \"http-01\", got 1");
    CHECK_ACME_ERROR("{\"key_type\":\"rsa4096\"}",
                     "acme.key_type: expected \"ec256\" or \"rsa2048\", got \"rsa4096\"");
    CHECK_ACME_ERROR("{\"storage\":\"\"}", "acme.storage: expected a directory path, got \"\"");
    CHECK_ACME_ERROR("{\"storage\":5}", "acme.storage: expected a directory path, got 5");
    static const char *const windows[] = {"0", "1", "1.5", "-0.1", "\"0.3\"", "null"};
    for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
        char acme[64];
        snprintf(acme, sizeof(acme), "{\"renew_window\":%s}", windows[i]);
        CHECK_ACME_ERROR(acme, "acme.renew_window: expected a number greater than 0 and less "
                               "than 1, got ");
    }
    CHECK_ACME_ERROR("{\"retry_initial\":\"soon\"}",
                     "acme.retry_initial: expected a duration such as \"10s\", got \"soon\"");
    CHECK_ACME_ERROR("{\"retry_max\":0}",
                     "acme.retry_max: expected a duration greater than zero, got 0");
    CHECK_ACME_ERROR("{\"retry_max\":\"30s\"}",
                     "acme.retry_max: expected a duration not below retry_initial (60s)");
    CHECK_ACME_ERROR("{\"retry_initial\":\"7h\"}",
                     "acme.retry_initial: expected a duration not above retry_max (21600s)");
    CHECK_ACME_ERROR("{\"retry_initial\":\"2m\",\"retry_max\":\"1m\"}",
                     "acme.retry_max: expected a duration not below retry_initial (120s)");
    CHECK_ACME_ERROR("{\"directory\":\"x\"}", "acme.directory: unknown key (known keys: ca, ");
    CHECK_ACME_ERROR("{\"email\":\"a@b\",\"email\":\"c@d\"}", "acme.email: duplicate key");
    CHECK_ACME_ERROR("[]", "acme: expected an object, got an array");
    CHECK_ACME_ERROR("null", "acme: expected an object, got null");
}

static void test_file_errors(void)
{
    char want[PATH_MAX + 128];
    int n = snprintf(want, sizeof(want),
                     "acme.ca_root: cannot read \"%s/fixtures/nope.pem\": No such file or "
                     "directory",
                     cwd);
    CHECK(n > 0 && (size_t)n < sizeof(want));
    CHECK_ACME_ERROR("{\"ca_root\":\"nope.pem\"}", want);
    CHECK_ACME_ERROR("{\"ca_root\":\"certs.d\"}", "acme.ca_root: cannot read \"");
    CHECK(strstr(err, "Is a directory") != NULL);
    CHECK_ACME_ERROR("{\"ca_root\":\"\"}", "acme.ca_root: expected a file path, got \"\"");
}

static void test_eab_errors(void)
{
    const char *want = "acme.eab: expected an object with \"kid\" and \"hmac_key\"";
    CHECK_ACME_ERROR("{\"eab\":{\"kid\":\"k\"}}", want);
    CHECK_ACME_ERROR("{\"eab\":{\"hmac_key\":\"" HMAC_KEY "\"}}", want);
    CHECK_ACME_ERROR("{\"eab\":\"k\"}", want);
    CHECK_ACME_ERROR("{\"eab\":{\"kid\":\"k\",\"hmac_key\":\"" HMAC_KEY "\",\"alg\":\"HS256\"}}",
                     "acme.eab.alg: unknown key (known keys: kid, hmac_key)");
    CHECK_ACME_ERROR("{\"eab\":{\"kid\":\"\",\"hmac_key\":\"" HMAC_KEY "\"}}",
                     "acme.eab.kid: expected a key identifier without spaces, got \"\"");

    /* The key is a secret: the error line says what is wrong, never what it was. */
    static const char *const bad[] = {"c2hvcnQ", "AAAAAAAAAAAAAAAAAAAAA+/A", "SECRET SECRET"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char acme[256];
        snprintf(acme, sizeof(acme), "{\"eab\":{\"kid\":\"k\",\"hmac_key\":\"%s\"}}", bad[i]);
        CHECK(parse_acme(acme) == NULL);
        CHECK_STR(err, "acme.eab.hmac_key: expected base64url of at least 16 bytes");
        CHECK(strstr(err, bad[i]) == NULL);
    }
    CHECK(parse_acme("{\"eab\":{\"kid\":\"k\",\"hmac_key\":7}}") == NULL);
    CHECK_STR(err, "acme.eab.hmac_key: expected base64url of at least 16 bytes");
}

static void test_sites(void)
{
    /* A site without "certificate" is an ACME site. */
    struct cfg *cfg = parse("{\"sites\":[" SITE_ACME ",{\"hosts\":[\"b.test\",\"*.c.test\"],"
                            "\"certificate\":{\"cert\":\"a.pem\",\"key\":\"a.key\"}," UPS "}]}");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->sites[0].cert.cert_file == NULL && cfg->sites[0].cert.key_file == NULL);
        CHECK(cfg->sites[1].cert.cert_file != NULL);
    }
    cfg_free(cfg);

    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"example.com\",\"*.example.com\"]," UPS "}]}",
                    "sites[0].hosts[1]: \"*.example.com\" needs a \"certificate\": wildcard names "
                    "cannot be obtained with tls-alpn-01 or http-01");
    CHECK_DOC_ERROR("{\"sites\":[" SITE_ACME ",{\"hosts\":[\"192.0.2.1\"]," UPS "}]}",
                    "sites[1].hosts[0]: \"192.0.2.1\" needs a \"certificate\": moat requests ACME "
                    "certificates for host names only, not IP addresses");
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"2001:DB8::1\"]," UPS "}]}",
                    "sites[0].hosts[0]: \"2001:db8::1\" needs a \"certificate\"");
    /* Each bad host is one error line; a host that is no host at all says only that. */
    cfg = parse("{\"sites\":[{\"hosts\":[\"*.a.test\",\"bad_host\",\"10.0.0.1\"]," UPS "}]}");
    CHECK(cfg == NULL);
    CHECK(strstr(err, "sites[0].hosts[1]: expected a host name") != NULL);
    CHECK(strstr(err, "sites[0].hosts[1]: \"bad_host\" needs") == NULL);
    CHECK(strstr(err, "sites[0].hosts[0]: \"*.a.test\" needs") != NULL);
    CHECK(strstr(err, "sites[0].hosts[2]: \"10.0.0.1\" needs") != NULL);

    /* A "certificate" that is there but wrong keeps the old error, not the ACME one. */
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"*.a.test\"],\"certificate\":null," UPS "}]}",
                    "sites[0].certificate: expected an object with \"cert\" and \"key\" file "
                    "paths, got null");
    CHECK(strstr(err, "needs") == NULL);
    CHECK_DOC_ERROR("{\"sites\":[{\"hosts\":[\"a.test\"],\"certificate\":{}," UPS "}]}",
                    "sites[0].certificate: expected an object with \"cert\" and \"key\"");

    /* default_sni works the same for ACME sites. */
    cfg = parse("{\"tls\":{\"default_sni\":\"a.test\"},\"sites\":[" SITE_ACME "]}");
    CHECK(cfg != NULL);
    cfg_free(cfg);
    CHECK_DOC_ERROR("{\"tls\":{\"default_sni\":\"x.test\"},\"sites\":[" SITE_ACME "]}",
                    "tls.default_sni: expected one of the sites' hosts");
}

/* Only http-01 and no plain listener: no CA could ever validate. With another type,
 * http-01 leaves the list, so no attempt is spent on it. */
static void test_unreachable_challenge(void)
{
    CHECK_DOC_ERROR("{\"listen\":{\"http\":[]},\"acme\":{\"challenges\":[\"http-01\"]},"
                    "\"sites\":[" SITE_ACME "]}",
                    "acme.challenges: only \"http-01\" is enabled but nothing listens for plain");
    struct cfg *cfg = parse("{\"listen\":{\"http\":[]},\"acme\":{\"challenges\":"
                            "[\"http-01\",\"tls-alpn-01\"]},\"sites\":[" SITE_ACME "]}");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->acme.n_challenges == 1);
        CHECK(cfg->acme.challenges[0] == CFG_CHALLENGE_TLS_ALPN_01);
    }
    cfg_free(cfg);
    cfg = parse("{\"acme\":{\"challenges\":[\"http-01\",\"tls-alpn-01\"]},"
                "\"sites\":[" SITE_ACME "]}");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->acme.n_challenges == 2);
        CHECK(cfg->acme.challenges[0] == CFG_CHALLENGE_HTTP_01);
    }
    cfg_free(cfg);
}

int main(void)
{
    if (cwd_init() != 0) {
        return 1;
    }
    test_defaults();
    test_read_back();
    test_url_check();
    test_value_checks();
    test_errors();
    test_unreachable_challenge();
    test_file_errors();
    test_eab_errors();
    test_sites();
    return check_report();
}
