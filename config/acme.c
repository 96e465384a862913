/* acme.c - the "acme" section: its defaults, the value checks the JSON loader and the CLI
 * share, which site hosts ACME can serve, and the section's JSON loader.
 *
 * The defaults read XDG_DATA_HOME and HOME; like every config load, that happens on the
 * control thread, never while another thread may change the environment.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json_int.h"

#define DEFAULT_CA "https://acme-v02.api.letsencrypt.org/directory"
#define EAB_KEY_MIN_BYTES 16
#define HOST_MAX_LEN 253
#define PORT_MAX_DIGITS 5
#define MS_PER_MIN (UINT64_C(60) * 1000)

static const char *const challenge_names[] = {
    [CFG_CHALLENGE_TLS_ALPN_01] = "tls-alpn-01",
    [CFG_CHALLENGE_HTTP_01] = "http-01",
};

void cfg_acme_set_defaults(struct cfg_acme *a)
{
    a->challenges[0] = CFG_CHALLENGE_TLS_ALPN_01;
    a->challenges[1] = CFG_CHALLENGE_HTTP_01;
    a->n_challenges = 2;
    a->key_type = CFG_KEY_EC256;
    a->renew_window = 0;
    a->retry_initial_ms = MS_PER_MIN;
    a->retry_max_ms = UINT64_C(6) * 60 * MS_PER_MIN;
}

/* dir + "/" + rest, without doubling a slash dir ends with. */
static char *do_join(const char *dir, const char *rest)
{
    size_t dlen = strlen(dir);

    while (dlen > 1 && dir[dlen - 1] == '/') {
        dlen--;
    }
    const char *sep = dir[dlen - 1] == '/' ? "" : "/";
    size_t n = dlen + strlen(sep) + strlen(rest) + 1;
    char *out = malloc(n);
    if (out == NULL) {
        return NULL;
    }
    int w = snprintf(out, n, "%.*s%s%s", (int)dlen, dir, sep, rest);
    if (w < 0 || (size_t)w >= n) {
        free(out);
        return NULL;
    }
    return out;
}

char *cfg_acme_default_storage(void)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");

    /* The XDG base directory spec says to ignore a relative XDG_DATA_HOME; a relative
     * HOME is as useless, since storage must not depend on the working directory. */
    if (xdg != NULL && xdg[0] == '/') {
        return do_join(xdg, "moat");
    }
    if (home != NULL && home[0] == '/') {
        return do_join(home, ".local/share/moat");
    }
    return cfg_strdup("/var/lib/moat");
}

int cfg_acme_fill(struct cfg_acme *a)
{
    if (a->ca == NULL) {
        a->ca = cfg_strdup(DEFAULT_CA);
    }
    if (a->storage == NULL) {
        a->storage = cfg_acme_default_storage();
    }
    return a->ca != NULL && a->storage != NULL ? 0 : -ENOMEM;
}

void cfg_acme_dispose(struct cfg_acme *a)
{
    free(a->ca);
    a->ca = NULL;
    free(a->ca_root);
    a->ca_root = NULL;
    free(a->email);
    a->email = NULL;
    free(a->eab_kid);
    a->eab_kid = NULL;
    free(a->eab_hmac_key);
    a->eab_hmac_key = NULL;
    free(a->storage);
    a->storage = NULL;
}

/* Whether s has a space, a control byte or DEL: none belongs in a URL, an address or a
 * key identifier, and each would garble the JSON or header it ends up in. */
static bool do_has_space(const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

/* Checks the ":port" after a URL host; rest runs up to end. Empty is fine. */
static bool do_valid_url_port(const char *rest, const char *end)
{
    char digits[PORT_MAX_DIGITS + 1];
    size_t n = (size_t)(end - rest);
    uint64_t port;

    if (n == 0) {
        return true;
    }
    if (rest[0] != ':' || n - 1 == 0 || n - 1 > PORT_MAX_DIGITS) {
        return false;
    }
    memcpy(digits, rest + 1, n - 1);
    digits[n - 1] = '\0';
    return cfg_parse_uint(digits, CFG_MAX_PORT, &port) == 0 && port > 0;
}

const char *cfg_check_acme_url(const char *s)
{
    static const char expected[] = "expected an http:// or https:// URL";
    char host[HOST_MAX_LEN + 1];
    const char *auth;

    if (s == NULL || do_has_space(s)) {
        return expected;
    }
    if (strncasecmp(s, "https://", 8) == 0) {
        auth = s + 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        auth = s + 7;
    } else {
        return expected;
    }
    /* The authority: a host, "[v6]", either with ":port". User info is refused since
     * the host check below finds the '@'. */
    const char *end = auth + strcspn(auth, "/?#");
    const char *start = auth, *host_end;
    if (auth[0] == '[') {
        start = auth + 1;
        host_end = memchr(start, ']', (size_t)(end - start));
        if (host_end == NULL) {
            return expected;
        }
    } else {
        host_end = memchr(auth, ':', (size_t)(end - auth));
        host_end = host_end != NULL ? host_end : end;
    }
    size_t n = (size_t)(host_end - start);
    if (n == 0 || n >= sizeof(host)) {
        return expected;
    }
    memcpy(host, start, n);
    host[n] = '\0';
    bool ok = auth[0] == '[' ? cfg_ip_family(host) == 6 : cfg_valid_endpoint_host(host);
    const char *rest = auth[0] == '[' ? host_end + 1 : host_end;
    return ok && do_valid_url_port(rest, end) ? NULL : expected;
}

const char *cfg_check_email(const char *s)
{
    static const char expected[] = "expected an email address such as \"ops@example.com\"";
    const char *at = s != NULL ? strchr(s, '@') : NULL;

    if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@') != NULL || do_has_space(s)) {
        return expected;
    }
    return NULL;
}

const char *cfg_check_eab_kid(const char *s)
{
    if (s == NULL || s[0] == '\0' || do_has_space(s)) {
        return "expected a key identifier without spaces";
    }
    return NULL;
}

static bool do_is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

const char *cfg_check_eab_hmac_key(const char *s)
{
    static const char expected[] = "expected base64url of at least 16 bytes";
    size_t n = 0, pad = 0;

    if (s == NULL) {
        return expected;
    }
    while (do_is_b64url(s[n])) {
        n++;
    }
    while (s[n + pad] == '=') {
        pad++;
    }
    /* One character left over holds only 6 bits, not a byte; padding, when present,
     * must fill the last group of four exactly. */
    if (s[n + pad] != '\0' || n % 4 == 1 || (pad != 0 && pad != (4 - n % 4) % 4)) {
        return expected;
    }
    return n * 6 / 8 >= EAB_KEY_MIN_BYTES ? NULL : expected;
}

const char *cfg_acme_add_challenge(struct cfg_acme *a, const char *s)
{
    size_t max = sizeof(a->challenges) / sizeof(a->challenges[0]);

    for (size_t c = 0; s != NULL && c < sizeof(challenge_names) / sizeof(challenge_names[0]); c++) {
        if (strcmp(s, challenge_names[c]) != 0) {
            continue;
        }
        for (size_t k = 0; k < a->n_challenges; k++) {
            if (a->challenges[k] == (enum cfg_challenge)c) {
                return "expected each challenge at most once";
            }
        }
        if (a->n_challenges >= max) {
            return "expected each challenge at most once";
        }
        a->challenges[a->n_challenges++] = (enum cfg_challenge)c;
        return NULL;
    }
    return "expected \"tls-alpn-01\" or \"http-01\"";
}

const char *cfg_check_key_type(const char *s, enum cfg_key_type *out)
{
    if (s != NULL && strcmp(s, "ec256") == 0) {
        *out = CFG_KEY_EC256;
    } else if (s != NULL && strcmp(s, "rsa2048") == 0) {
        *out = CFG_KEY_RSA2048;
    } else {
        return "expected \"ec256\" or \"rsa2048\"";
    }
    return NULL;
}

/* tls-alpn-01 and http-01 prove control of one name by answering on it, so a wildcard,
 * which needs dns-01, cannot be served. On demand, a wildcard or "*" site host is no
 * certificate name but a pattern: each name under it gets its own certificate at its
 * first handshake. "*" lets any name pointed at the server through, so it needs the ask
 * URL to say no. The host has passed cfg_check_site_host, or is "*", which cfg_check_site
 * lets through for on-demand sites only. IP identifiers (RFC 8738) are left out until
 * moat supports them. */
const char *cfg_check_acme_host(const char *host, const struct cfg_on_demand *od)
{
    bool on_demand = od != NULL && od->enabled;

    if (strcmp(host, "*") == 0) {
        return on_demand && od->ask != NULL
                   ? NULL
                   : "without it any name pointed at this server would get a certificate";
    }
    if (strncmp(host, "*.", 2) == 0 && !on_demand) {
        return "wildcard names cannot be obtained with tls-alpn-01 or http-01";
    }
    if (cfg_ip_family(host) != 0) {
        return "moat requests ACME certificates for host names only, not IP addresses";
    }
    return NULL;
}

/* JSON loading. */

/* A copy of string v when check accepts it, else NULL after reporting; the value is left
 * out of the error line unless echo is set. */
static char *do_checked_string(struct cfg_loader *ld, const cJSON *v, const char *path,
                               const char *(*check)(const char *), bool echo)
{
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
    const char *why = check(s);

    if (why != NULL) {
        cfg_json_expected(ld, path, why, echo ? v : NULL);
        return NULL;
    }
    char *copy = cfg_strdup(s);
    if (copy == NULL) {
        cfg_json_oom(ld, path);
    }
    return copy;
}

static void do_load_eab(struct cfg_loader *ld, const cJSON *v, struct cfg_acme *a)
{
    static const char *const keys[] = {"kid", "hmac_key", NULL};
    const cJSON *kid = cJSON_IsObject(v) ? cfg_json_get(v, "kid") : NULL;
    const cJSON *hmac = cJSON_IsObject(v) ? cfg_json_get(v, "hmac_key") : NULL;

    if (kid == NULL || hmac == NULL) {
        cfg_json_expected(ld, "acme.eab", "expected an object with \"kid\" and \"hmac_key\"", v);
    }
    if (!cJSON_IsObject(v)) {
        return;
    }
    cfg_json_check_keys(ld, v, "acme.eab", keys);
    if (kid != NULL) {
        a->eab_kid = do_checked_string(ld, kid, "acme.eab.kid", cfg_check_eab_kid, true);
    }
    if (hmac != NULL) {
        /* A secret, even a mistyped one, stays out of logs. */
        a->eab_hmac_key =
            do_checked_string(ld, hmac, "acme.eab.hmac_key", cfg_check_eab_hmac_key, false);
    }
}

static void do_load_challenges(struct cfg_loader *ld, const cJSON *v, struct cfg_acme *a)
{
    char sub[CFG_PATH_MAX];
    int n = cfg_json_array(ld, v, "acme.challenges", true);

    if (n <= 0) {
        return;
    }
    a->n_challenges = 0;
    const cJSON *item = v->child;
    for (int i = 0; i < n; i++, item = item->next) {
        const char *why =
            cfg_acme_add_challenge(a, cJSON_IsString(item) ? item->valuestring : NULL);
        if (why != NULL) {
            cfg_json_index_path(sub, sizeof(sub), "acme.challenges", (size_t)i);
            cfg_json_expected(ld, sub, why, item);
        }
    }
}

/* The keys holding a path: a readable CA root file and a storage directory. */
static void do_load_paths(struct cfg_loader *ld, const cJSON *v, struct cfg_acme *a)
{
    const cJSON *item = cfg_json_get(v, "ca_root");

    if (item != NULL) {
        a->ca_root = cfg_json_path(ld, item, "acme.ca_root", "expected a file path");
        cfg_check_readable(a->ca_root, "acme.ca_root", ld->e);
    }
    item = cfg_json_get(v, "storage");
    if (item != NULL) {
        /* The directory is created when the first certificate is stored. */
        a->storage = cfg_json_path(ld, item, "acme.storage", "expected a directory path");
    }
}

static void do_load_scalars(struct cfg_loader *ld, const cJSON *v, struct cfg_acme *a)
{
    const cJSON *item = cfg_json_get(v, "key_type");

    if (item != NULL) {
        const char *why =
            cfg_check_key_type(cJSON_IsString(item) ? item->valuestring : NULL, &a->key_type);
        if (why != NULL) {
            cfg_json_expected(ld, "acme.key_type", why, item);
        }
    }
    item = cfg_json_get(v, "renew_window");
    if (item != NULL) {
        double d = cJSON_IsNumber(item) ? item->valuedouble : 0;
        if (d > 0 && d < 1) {
            a->renew_window = d;
        } else {
            cfg_json_expected(ld, "acme.renew_window",
                              "expected a number greater than 0 and less than 1", item);
        }
    }
}

/* The back-off after a failed order: it starts at retry_initial and doubles up to
 * retry_max, so the first must not be above the second. */
static void do_load_retry(struct cfg_loader *ld, const cJSON *v, struct cfg_acme *a)
{
    const cJSON *initial = cfg_json_get(v, "retry_initial");
    const cJSON *max = cfg_json_get(v, "retry_max");
    bool ok = true;

    if (initial != NULL) {
        ok = cfg_json_duration(ld, initial, "acme.retry_initial", &a->retry_initial_ms);
    }
    if (max != NULL) {
        ok = cfg_json_duration(ld, max, "acme.retry_max", &a->retry_max_ms) && ok;
    }
    if (!ok || a->retry_initial_ms <= a->retry_max_ms) {
        return;
    }
    /* The other value may be a default the user never wrote, so the line shows it. */
    if (max != NULL) {
        cfg_errs_add(ld->e, "acme.retry_max", "expected a duration not below retry_initial (%gs)",
                     (double)a->retry_initial_ms / 1000);
    } else {
        cfg_errs_add(ld->e, "acme.retry_initial", "expected a duration not above retry_max (%gs)",
                     (double)a->retry_max_ms / 1000);
    }
}

void cfg_load_acme(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {
        "ca",      "ca_root",      "email",         "eab",       "challenges", "key_type",
        "storage", "renew_window", "retry_initial", "retry_max", NULL};
    struct cfg_acme *a = &ld->cfg->acme;

    if (v != NULL && cfg_json_object(ld, v, "acme", keys)) {
        const cJSON *item = cfg_json_get(v, "ca");
        if (item != NULL) {
            a->ca = do_checked_string(ld, item, "acme.ca", cfg_check_acme_url, true);
        }
        item = cfg_json_get(v, "email");
        if (item != NULL) {
            a->email = do_checked_string(ld, item, "acme.email", cfg_check_email, true);
        }
        item = cfg_json_get(v, "eab");
        if (item != NULL) {
            do_load_eab(ld, item, a);
        }
        item = cfg_json_get(v, "challenges");
        if (item != NULL) {
            do_load_challenges(ld, item, a);
        }
        do_load_paths(ld, v, a);
        do_load_scalars(ld, v, a);
        do_load_retry(ld, v, a);
    }
    if (cfg_acme_fill(a) != 0) {
        cfg_json_oom(ld, "acme");
    }
}

/* Only http-01 with no plain listener: the CA could never validate, so say it at load time
 * rather than as an endless series of failed orders. */
void cfg_check_challenges_reachable(struct cfg *cfg, const char *path, struct cfg_errs *e)
{
    bool acme = cfg->on_demand.enabled;
    for (size_t i = 0; i < cfg->n_sites && !acme; i++) {
        acme = cfg->sites[i].cert.cert_file == NULL;
    }
    if (!acme || cfg->n_http_listen > 0) {
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < cfg->acme.n_challenges; i++) {
        if (cfg->acme.challenges[i] != CFG_CHALLENGE_HTTP_01) {
            cfg->acme.challenges[kept++] = cfg->acme.challenges[i];
        }
    }
    if (kept == 0) {
        cfg_errs_add(e, path, "only \"http-01\" is enabled but nothing listens for plain HTTP, "
                     "so the CA could never validate: add a plain listener or \"tls-alpn-01\"");
        return;
    }
    /* Every other attempt would be an http-01 validation doomed to fail. */
    cfg->acme.n_challenges = kept;
}
