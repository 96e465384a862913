/* test_ops.c - the operations keys of the JSON config: "admin", "user" and "log.file":
 * defaults, values read back, and every error with its key path.
 *
 * Runs in tests/unit/config, so fixture paths are "fixtures/...".
 */
#include "cfg_test.h"

/* The document with the top-level keys given (each followed by a comma) and SITE_A. The text
 * stays valid until the next call. */
static const char *top_doc(const char *keys)
{
    static char doc[2048];
    snprintf(doc, sizeof(doc), "{%s\"sites\":[" SITE_A "]}", keys);
    return doc;
}

/* Parses top_doc(keys), saying on stderr when it is refused. */
static struct cfg *parse_top(const char *keys)
{
    const char *doc = top_doc(keys);
    struct cfg *cfg = parse(doc);
    if (cfg == NULL) {
        fprintf(stderr, "refused: %s\n  %s\n", doc, err);
    }
    return cfg;
}

/* The top-level keys given (each followed by a comma) must be refused with want. */
#define CHECK_TOP_ERROR(keys, want) CHECK_DOC_ERROR(top_doc(keys), want)

static void test_defaults(void)
{
    struct cfg *cfg = cfg_load_file("fixtures/minimal.json", err, sizeof(err));
    CHECK(cfg != NULL);
    if (cfg == NULL) {
        return;
    }
    CHECK(cfg->admin.enabled);
    CHECK(!cfg->admin.explicit);
    CHECK_STR(cfg->admin.listen.host, "127.0.0.1");
    CHECK(cfg->admin.listen.port == 2019);
    CHECK(cfg->user == NULL);
    CHECK(cfg->log_file == NULL);
    cfg_free(cfg);

    /* An empty admin object keeps the default, which is still not "explicit". */
    cfg = parse_top("\"admin\":{},");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(cfg->admin.enabled && !cfg->admin.explicit);
        CHECK_STR(cfg->admin.listen.host, "127.0.0.1");
        CHECK(cfg->admin.listen.port == 2019);
    }
    cfg_free(cfg);
}

static void check_admin(const char *value, const char *host, unsigned port, int line)
{
    char keys[256];
    snprintf(keys, sizeof(keys), "\"admin\":{\"listen\":\"%s\"},", value);
    struct cfg *cfg = parse_top(keys);
    bool ok = cfg != NULL && cfg->admin.enabled && cfg->admin.explicit &&
              cfg->admin.listen.host != NULL && strcmp(cfg->admin.listen.host, host) == 0 &&
              cfg->admin.listen.port == port;
    if (!ok) {
        fprintf(stderr, "line %d: admin.listen \"%s\" not read as %s port %u\n", line, value, host,
                port);
    }
    CHECK(ok);
    cfg_free(cfg);
}
#define CHECK_ADMIN(value, host, port) check_admin(value, host, port, __LINE__)

static void test_admin(void)
{
    CHECK_ADMIN("127.0.0.1:2019", "127.0.0.1", 2019);
    CHECK_ADMIN("127.0.0.1:0", "127.0.0.1", 0);
    CHECK_ADMIN("[::1]:0", "::1", 0);
    CHECK_ADMIN("[::1]:9180", "::1", 9180);
    CHECK_ADMIN("localhost:2020", "127.0.0.1", 2020);
    CHECK_ADMIN("LocalHost:2020", "127.0.0.1", 2020);
    /* Not loopback: accepted (moat warns at start), since the user named it. */
    CHECK_ADMIN("10.0.0.1:2019", "10.0.0.1", 2019);
    CHECK_ADMIN("0.0.0.0:2019", "0.0.0.0", 2019);

    struct cfg *cfg = parse_top("\"admin\":{\"listen\":\"off\"},");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK(!cfg->admin.enabled);
        CHECK(cfg->admin.listen.host == NULL);
    }
    cfg_free(cfg);

    /* The admin port may not be a listener's; port 0 and other hosts do not clash. */
    cfg = parse_top("\"listen\":{\"https\":[\"127.0.0.1:0\"],\"http\":[\"127.0.0.1:8080\"]},"
                    "\"admin\":{\"listen\":\"127.0.0.1:0\"},");
    CHECK(cfg != NULL);
    cfg_free(cfg);
    cfg = parse_top("\"listen\":{\"https\":[\"127.0.0.2:2019\"]},\"admin\":{\"listen\":"
                    "\"127.0.0.1:2019\"},");
    CHECK(cfg != NULL);
    cfg_free(cfg);
    /* The default address is not checked: a busy one is a warning at start. */
    cfg = parse_top("\"listen\":{\"https\":[\":2019\"]},");
    CHECK(cfg != NULL);
    cfg_free(cfg);
}

static void test_admin_errors(void)
{
    static const char *const bad[] = {
        "2019", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "::1:2019", "[::1]", "", "on"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char keys[256], want[256];
        snprintf(keys, sizeof(keys), "\"admin\":{\"listen\":\"%s\"},", bad[i]);
        snprintf(want, sizeof(want), "admin.listen: expected \"host:port\" or \"off\", got \"%s\"",
                 bad[i]);
        CHECK_TOP_ERROR(keys, want);
    }
    CHECK_TOP_ERROR("\"admin\":{\"listen\":2019},",
                    "admin.listen: expected \"host:port\" or \"off\", got 2019");
    CHECK_TOP_ERROR("\"admin\":{\"listen\":\":2019\"},",
                    "admin.listen: the admin API has no authentication; name a loopback address "
                    "such as \"127.0.0.1:2019\", got \":2019\"");
    CHECK_TOP_ERROR("\"admin\":{\"listen\":\"admin.example.com:2019\"},",
                    "admin.listen: expected an IP address or \"localhost\" as the host, got "
                    "\"admin.example.com:2019\"");
    CHECK_TOP_ERROR("\"admin\":{\"port\":2019},", "admin.port: unknown key (known keys: listen)");
    CHECK_TOP_ERROR("\"admin\":\"127.0.0.1:2019\",",
                    "admin: expected an object, got \"127.0.0.1:2019\"");
    CHECK_TOP_ERROR("\"admin\":{\"listen\":\"off\",\"listen\":\"127.0.0.1:1\"},",
                    "admin.listen: duplicate key");
    CHECK_TOP_ERROR("\"listen\":{\"https\":[\":8443\"]},\"admin\":{\"listen\":\"127.0.0.1:8443\"},",
                    "admin.listen: port 8443 is already used by listen.https[0]");
    CHECK_TOP_ERROR("\"admin\":{\"listen\":\"[::1]:80\"},",
                    "admin.listen: port 80 is already used by listen.http (default)");
    CHECK_TOP_ERROR("\"listen\":{\"http\":[\"127.0.0.1:8080\"]},"
                    "\"admin\":{\"listen\":\"127.0.0.1:8080\"},",
                    "admin.listen: port 8080 is already used by listen.http[0]");
}

static void test_user(void)
{
    static const char *const good[] = {"moat", "www-data",   "_moat",     "nobody", "1000",
                                       "0",    "4294967294", "user.name", "MOAT"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char keys[256];
        snprintf(keys, sizeof(keys), "\"user\":\"%s\",", good[i]);
        struct cfg *cfg = parse_top(keys);
        CHECK(cfg != NULL);
        if (cfg != NULL) {
            CHECK_STR(cfg->user, good[i]);
        }
        cfg_free(cfg);
    }
    static const char *const bad[] = {"", "a/b", "a:b", "a b", "-moat", "\\tmoat", "/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char keys[256];
        snprintf(keys, sizeof(keys), "\"user\":\"%s\",", bad[i]);
        CHECK_TOP_ERROR(keys, "user: expected a user name or a numeric uid, got \"");
    }
    CHECK_TOP_ERROR("\"user\":1000,", "user: expected a user name or a numeric uid, got 1000");
    CHECK_TOP_ERROR("\"user\":null,", "user: expected a user name or a numeric uid, got null");
    CHECK_TOP_ERROR("\"user\":\"4294967295\",",
                    "user: expected a uid from 0 to 4294967294, got \"4294967295\"");
    CHECK_TOP_ERROR("\"user\":\"99999999999999999999\",", "user: expected a uid from 0 to");
}

static void test_log_file(void)
{
    char want[PATH_MAX + 64];

    struct cfg *cfg = parse_top("\"log\":{\"file\":\"/var/log/moat/moat.log\"},");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->log_file, "/var/log/moat/moat.log");
        CHECK(cfg->log_level == CFG_LOG_INFO && cfg->access_log);
    }
    cfg_free(cfg);

    /* Relative to the config file's directory, like certificate paths. */
    cfg = parse_top("\"log\":{\"level\":\"warn\",\"access\":false,\"file\":\"logs/moat.log\"},");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->log_file, fixture_abs("logs/moat.log"));
        CHECK(cfg->log_level == CFG_LOG_WARN && !cfg->access_log);
    }
    cfg_free(cfg);

    cfg = cfg_load_file("fixtures/minimal.json", err, sizeof(err));
    CHECK(cfg != NULL && cfg->log_file == NULL);
    cfg_free(cfg);

    CHECK_TOP_ERROR("\"log\":{\"file\":\"\"},", "log.file: expected a file path, got \"\"");
    CHECK_TOP_ERROR("\"log\":{\"file\":true},", "log.file: expected a file path, got true");
    snprintf(want, sizeof(want), "log.file: cannot write \"%s/fixtures/certs.d\": Is a directory",
             cwd);
    CHECK_TOP_ERROR("\"log\":{\"file\":\"certs.d\"},", want);
    CHECK_TOP_ERROR("\"log\":{\"path\":\"x.log\"},",
                    "log.path: unknown key (known keys: level, access, file)");
}

/* Every operations key in one document. */
static void test_together(void)
{
    struct cfg *cfg = parse_top("\"admin\":{\"listen\":\"[::1]:0\"},\"user\":\"moat\","
                                "\"log\":{\"file\":\"/tmp/moat-test.log\"},");
    CHECK(cfg != NULL);
    if (cfg != NULL) {
        CHECK_STR(cfg->admin.listen.host, "::1");
        CHECK(cfg->admin.listen.port == 0 && cfg->admin.explicit);
        CHECK_STR(cfg->user, "moat");
        CHECK_STR(cfg->log_file, "/tmp/moat-test.log");
    }
    cfg_free(cfg);

    /* All errors at once. */
    const char *doc = "{\"admin\":{\"listen\":\"x\"},\"user\":\"\",\"log\":{\"file\":\"\"},"
                      "\"sites\":[" SITE_A "]}";
    cfg = parse(doc);
    CHECK(cfg == NULL);
    CHECK(strstr(err, "admin.listen: expected") != NULL);
    CHECK(strstr(err, "user: expected") != NULL);
    CHECK(strstr(err, "log.file: expected") != NULL);
}

int main(void)
{
    if (cwd_init() != 0) {
        return 1;
    }
    test_defaults();
    test_admin();
    test_admin_errors();
    test_user();
    test_log_file();
    test_together();
    return check_report();
}
