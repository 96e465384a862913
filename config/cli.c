/* cli.c - the zero-config form: `moat proxy --from NAME --to HOST:PORT [options]`.
 *
 * The command line becomes the same struct cfg a JSON file would give (one site, one
 * route "/", the "acme" and "on_demand" values), and goes through the same checks
 * (cfg_check_site and the cfg_check_* value checks), with errors named by option instead
 * of key path.
 * Options take "--opt value" or "--opt=value"; every problem is reported, not just the
 * first.
 *
 * --help (or -h) anywhere: cfg_from_cli returns NULL and puts the usage text, and
 * nothing else, in err. A caller that prints err and exits 2 on NULL therefore still
 * shows the usage; a caller that wants exit status 0 and stdout for --help asks
 * cfg_cli_wants_help first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

enum cli_opt_id {
    OPT_FROM = 0,
    OPT_TO,
    OPT_CERT,
    OPT_KEY,
    OPT_HTTP_PORT,
    OPT_HTTPS_PORT,
    OPT_NO_REDIRECT,
    OPT_BIND,
    OPT_WORKERS,
    OPT_ACCESS_LOG,
    OPT_LOG_LEVEL,
    OPT_LOG_FILE,
    OPT_ADMIN,
    OPT_USER,
    OPT_ACME_CA,
    OPT_ACME_CA_ROOT,
    OPT_STORAGE,
    OPT_EMAIL,
    OPT_CHALLENGES,
    OPT_EAB_KID,
    OPT_EAB_HMAC_KEY,
    OPT_KEY_TYPE,
    OPT_ON_DEMAND,
    OPT_ASK,
    OPT_ON_DEMAND_TIMEOUT,
    OPT_COUNT,
};

struct cli_opt {
    const char *name;
    bool has_value;
};

static const struct cli_opt cli_opts[OPT_COUNT] = {
    [OPT_FROM] = {"--from", true},
    [OPT_TO] = {"--to", true},
    [OPT_CERT] = {"--cert", true},
    [OPT_KEY] = {"--key", true},
    [OPT_HTTP_PORT] = {"--http-port", true},
    [OPT_HTTPS_PORT] = {"--https-port", true},
    [OPT_NO_REDIRECT] = {"--no-redirect", false},
    [OPT_BIND] = {"--bind", true},
    [OPT_WORKERS] = {"--workers", true},
    [OPT_ACCESS_LOG] = {"--access-log", false},
    [OPT_LOG_LEVEL] = {"--log-level", true},
    [OPT_LOG_FILE] = {"--log-file", true},
    [OPT_ADMIN] = {"--admin", true},
    [OPT_USER] = {"--user", true},
    [OPT_ACME_CA] = {"--acme-ca", true},
    [OPT_ACME_CA_ROOT] = {"--acme-ca-root", true},
    [OPT_STORAGE] = {"--storage", true},
    [OPT_EMAIL] = {"--email", true},
    [OPT_CHALLENGES] = {"--challenges", true},
    [OPT_EAB_KID] = {"--eab-kid", true},
    [OPT_EAB_HMAC_KEY] = {"--eab-hmac-key", true},
    [OPT_KEY_TYPE] = {"--key-type", true},
    [OPT_ON_DEMAND] = {"--on-demand", false},
    [OPT_ASK] = {"--ask", true},
    [OPT_ON_DEMAND_TIMEOUT] = {"--on-demand-timeout", true},
};

/* What the command line said. Strings point into argv, which outlives the call. */
struct cli_args {
    const char **from; /* every --from, in order; owned here */
    size_t n_from;
    const char *value[OPT_COUNT]; /* single-valued options, NULL when not given */
    bool flag[OPT_COUNT];         /* options without a value */
};

static const char usage[] =
    "usage: moat proxy --from NAME [--from NAME ...] --to HOST:PORT\n"
    "                  [--cert FILE --key FILE] [options]\n"
    "\n"
    "Serves HTTPS for NAME (\"app.example.com\" or \"*.example.com\") and forwards every\n"
    "request to HOST:PORT; plain HTTP is redirected to HTTPS.\n"
    "\n"
    "Without --cert and --key the certificate comes from an ACME CA (Let's Encrypt unless\n"
    "--acme-ca says otherwise). Each NAME must then be an exact name, not a wildcard or an\n"
    "IP address (but see --on-demand), whose DNS points at this machine, and the CA must\n"
    "reach it on port 443 (tls-alpn-01) or port 80 (http-01).\n"
    "\n"
    "  --from NAME        host name to serve; repeat for more names\n"
    "  --to HOST:PORT     backend address (\"[::1]:8080\" for IPv6)\n"
    "  --cert FILE        PEM certificate chain, leaf first (with --key)\n"
    "  --key FILE         PEM private key of the certificate (with --cert)\n"
    "  --https-port N     HTTPS port (default 443; 0 = any free port)\n"
    "  --http-port N      plain HTTP port for redirects and http-01 (default 80; 0 = any\n"
    "                     free port)\n"
    "  --no-redirect      do not listen for plain HTTP (so no http-01 either)\n"
    "  --bind ADDR        listen on this address only (default: every address)\n"
    "  --workers N        worker threads, 0 to 1024 (default 0 = one per CPU)\n"
    "  --access-log       log every request\n"
    "  --log-level LEVEL  debug, info, warn or error (default info)\n"
    "  --log-file FILE    write the log lines to FILE instead of stderr; SIGUSR1 reopens\n"
    "                     it (for logrotate)\n"
    "  --admin ADDR:PORT  admin endpoint (/healthz, /metrics, /certificates, /reload)\n"
    "                     address, or \"off\" (default 127.0.0.1:2019; no authentication,\n"
    "                     so keep it on loopback; port 0 = any free port)\n"
    "  --user NAME        when started as root, switch to this user (name or uid) once\n"
    "                     the ports are open\n"
    "\n"
    "ACME, for certificates without --cert and --key:\n"
    "  --acme-ca URL      directory URL (default Let's Encrypt; for tests, the staging\n"
    "                     https://acme-staging-v02.api.letsencrypt.org/directory)\n"
    "  --acme-ca-root FILE\n"
    "                     PEM roots to trust for the CA's own HTTPS (default: the system's)\n"
    "  --email ADDR       contact address for the ACME account\n"
    "  --eab-kid KID      External Account Binding key id (with --eab-hmac-key)\n"
    "  --eab-hmac-key KEY External Account Binding HMAC key, base64url (with --eab-kid)\n"
    "  --challenges LIST  tls-alpn-01, http-01 or both, comma-separated, in order of\n"
    "                     preference (default tls-alpn-01,http-01)\n"
    "  --key-type TYPE    certificate key: ec256 or rsa2048 (default ec256)\n"
    "  --storage DIR      where accounts and certificates are kept (default\n"
    "                     $XDG_DATA_HOME/moat or ~/.local/share/moat; /var/lib/moat for\n"
    "                     a service)\n"
    "\n"
    "On-demand TLS, certificates ordered at the first handshake for each name:\n"
    "  --on-demand        a NAME may also be a wildcard (\"*.example.com\") or \"*\" (any\n"
    "                     name; needs --ask); each NAME but \"*\" is also a name pattern\n"
    "                     allowed to get a certificate. Not with --cert and --key.\n"
    "  --ask URL          before ordering, moat asks GET URL?domain=NAME; only a 2xx\n"
    "                     answer lets the name get a certificate\n"
    "  --on-demand-timeout DURATION\n"
    "                     how long a handshake waits for its certificate (default 60s)\n"
    "\n"
    "  --help             show this text\n"
    "\n"
    "Options also take the form --opt=value.\n";

const char *cfg_cli_usage(void) { return usage; }

bool cfg_cli_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (argv[i] != NULL && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
            return true;
        }
    }
    return false;
}

/* The option named by the first len bytes of arg, or OPT_COUNT. */
static enum cli_opt_id do_find_opt(const char *arg, size_t len)
{
    for (int id = 0; id < OPT_COUNT; id++) {
        if (strlen(cli_opts[id].name) == len && strncmp(cli_opts[id].name, arg, len) == 0) {
            return (enum cli_opt_id)id;
        }
    }
    return OPT_COUNT;
}

/* Records one option's value. A second value of a single-valued option is an error
 * rather than "last one wins": "--to a:1 --to b:2" reads like two backends, and quietly
 * dropping one would surprise more than a refusal. */
static void do_set_value(struct cli_args *a, enum cli_opt_id id, const char *value,
                         struct cfg_errs *e)
{
    if (id == OPT_FROM) {
        a->from[a->n_from++] = value;
    } else if (a->value[id] != NULL) {
        cfg_errs_add(e, cli_opts[id].name, "given more than once");
    } else {
        a->value[id] = value;
    }
}

/* Reads the option at argv[i], and its value, into a. Returns the index of the next
 * argument to read. */
static int do_scan_one(int argc, char **argv, int i, struct cli_args *a, struct cfg_errs *e)
{
    const char *arg = argv[i];
    char name[CFG_PATH_MAX];

    if (strncmp(arg, "--", 2) != 0) {
        cfg_quote(name, sizeof(name), arg);
        cfg_errs_add(e, name, "unexpected argument; options start with \"--\"");
        return i + 1;
    }
    const char *eq = strchr(arg, '=');
    size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    enum cli_opt_id id = do_find_opt(arg, len);
    snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1), arg);
    if (id == OPT_COUNT) {
        cfg_errs_add(e, name, "unknown option (see --help)");
        /* The word after a mistyped option is most likely its value; calling it an
         * unexpected argument too would only add noise. */
        if (eq == NULL && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            i++;
        }
        return i + 1;
    }
    if (!cli_opts[id].has_value) {
        if (eq != NULL) {
            cfg_errs_add(e, name, "takes no value");
        }
        a->flag[id] = true;
        return i + 1;
    }
    const char *value = eq != NULL ? eq + 1 : NULL;
    /* "--from --to x" is a forgotten value, not a host named "--to". */
    if (value == NULL && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
        value = argv[++i];
    }
    if (value == NULL) {
        cfg_errs_add(e, name, "missing value");
    } else {
        do_set_value(a, id, value, e);
    }
    return i + 1;
}

static void do_check_required(const struct cli_args *a, struct cfg_errs *e)
{
    if (a->n_from == 0) {
        cfg_errs_add(e, "--from", "required");
    }
    if (a->value[OPT_TO] == NULL) {
        cfg_errs_add(e, "--to", "required");
    }
    /* Pairs: both or neither. Neither --cert nor --key means ACME. */
    static const enum cli_opt_id pairs[][2] = {{OPT_CERT, OPT_KEY},
                                               {OPT_EAB_KID, OPT_EAB_HMAC_KEY}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        enum cli_opt_id x = pairs[i][0], y = pairs[i][1];
        if (a->value[x] != NULL && a->value[y] == NULL) {
            cfg_errs_add(e, cli_opts[y].name, "required with %s", cli_opts[x].name);
        } else if (a->value[x] == NULL && a->value[y] != NULL) {
            cfg_errs_add(e, cli_opts[x].name, "required with %s", cli_opts[y].name);
        }
    }
}

/* "PATH: WHAT, got "VALUE"". */
static void do_bad_value(struct cfg_errs *e, enum cli_opt_id id, const char *what,
                         const char *value)
{
    char q[CFG_QUOTE_MAX];

    cfg_quote(q, sizeof(q), value);
    cfg_errs_add(e, cli_opts[id].name, "%s, got %s", what, q);
}

static void do_build_scalars(struct cfg *cfg, const struct cli_args *a, struct cfg_errs *e)
{
    const char *s = a->value[OPT_WORKERS];
    uint64_t n;

    if (s != NULL) {
        if (cfg_parse_uint(s, CFG_MAX_WORKERS, &n) == 0) {
            cfg->workers = (unsigned)n;
        } else {
            do_bad_value(e, OPT_WORKERS, "expected an integer from 0 to 1024", s);
        }
    }
    s = a->value[OPT_LOG_LEVEL];
    if (s != NULL && cfg_parse_log_level(s, &cfg->log_level) != 0) {
        do_bad_value(e, OPT_LOG_LEVEL, "expected debug, info, warn or error", s);
    }
    /* A one-liner is for trying things out; its access log stays off unless asked for. */
    cfg->access_log = a->flag[OPT_ACCESS_LOG];
}

/* The port of option id, or def when not given. Returns -1 after reporting. */
static int do_port(const struct cli_args *a, enum cli_opt_id id, uint16_t def, uint16_t *out,
                   struct cfg_errs *e)
{
    uint64_t n = def;

    if (a->value[id] != NULL && cfg_parse_uint(a->value[id], CFG_MAX_PORT, &n) != 0) {
        do_bad_value(e, id, "expected a port from 0 to 65535", a->value[id]);
        return -1;
    }
    *out = (uint16_t)n;
    return 0;
}

/* The --bind address without brackets, into out; "" (every address) when not given. */
static int do_bind_host(const struct cli_args *a, char *out, size_t outlen, struct cfg_errs *e)
{
    const char *s = a->value[OPT_BIND];
    size_t len = s != NULL ? strlen(s) : 0;

    out[0] = '\0';
    if (s == NULL) {
        return 0;
    }
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
    }
    if (len < outlen) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    if (len >= outlen || !cfg_valid_endpoint_host(out)) {
        do_bad_value(e, OPT_BIND, "expected an IP address or a host name", a->value[OPT_BIND]);
        return -1;
    }
    return 0;
}

/* One listener on host:port, as the only entry of a new list. */
static int do_listener(const char *host, uint16_t port, struct cfg_hostport **list, size_t *n)
{
    *list = calloc(1, sizeof(**list));
    if (*list == NULL) {
        return -1;
    }
    *n = 1;
    (*list)[0].port = port;
    (*list)[0].host = cfg_strdup(host);
    return (*list)[0].host != NULL ? 0 : -1;
}

static void do_build_listen(struct cfg *cfg, const struct cli_args *a, struct cfg_errs *e)
{
    char host[256];
    uint16_t https_port = 0, http_port = 0;

    int bad = do_bind_host(a, host, sizeof(host), e);
    bad |= do_port(a, OPT_HTTPS_PORT, 443, &https_port, e);
    bad |= do_port(a, OPT_HTTP_PORT, 80, &http_port, e);
    if (bad != 0) {
        return;
    }
    if (do_listener(host, https_port, &cfg->https_listen, &cfg->n_https_listen) != 0) {
        cfg_errs_add(e, "--https-port", "out of memory");
        return;
    }
    if (a->flag[OPT_NO_REDIRECT]) {
        return;
    }
    if (do_listener(host, http_port, &cfg->http_listen, &cfg->n_http_listen) != 0) {
        cfg_errs_add(e, "--http-port", "out of memory");
        return;
    }
    if (cfg_listen_overlap(&cfg->https_listen[0], &cfg->http_listen[0])) {
        cfg_errs_add(e, "--http-port", "port %u is already used by --https-port", http_port);
    }
}

/* The single route "/" to --to, round robin (the only choice with one upstream). */
static void do_build_route(struct cfg_site *site, const struct cli_args *a, struct cfg_errs *e)
{
    struct cfg_route *r = calloc(1, sizeof(*r));

    if (r == NULL) {
        cfg_errs_add(e, "--to", "out of memory");
        return;
    }
    site->routes = r;
    site->n_routes = 1;
    r->balance = CFG_BALANCE_ROUND_ROBIN;
    cfg_health_set_defaults(&r->health);
    r->path_prefix = cfg_strdup("/");
    r->upstreams = calloc(1, sizeof(*r->upstreams));
    if (r->path_prefix == NULL || r->upstreams == NULL) {
        cfg_errs_add(e, "--to", "out of memory");
        return;
    }
    r->n_upstreams = 1;
    const char *why = cfg_check_upstream(a->value[OPT_TO], &r->upstreams[0]);
    if (why != NULL) {
        do_bad_value(e, OPT_TO, why, a->value[OPT_TO]);
    }
}

/* Certificate paths are made absolute now, since the process may change directory. */
static void do_build_cert(struct cfg_site *site, const struct cli_args *a, struct cfg_errs *e)
{
    site->cert.cert_file = cfg_abs_path(NULL, a->value[OPT_CERT]);
    site->cert.key_file = cfg_abs_path(NULL, a->value[OPT_KEY]);
    if (site->cert.cert_file == NULL) {
        do_bad_value(e, OPT_CERT, "cannot make the path absolute", a->value[OPT_CERT]);
    }
    if (site->cert.key_file == NULL) {
        do_bad_value(e, OPT_KEY, "cannot make the path absolute", a->value[OPT_KEY]);
    }
}

/* With --on-demand every NAME is also an allow pattern, so names under a wildcard NAME
 * need no --ask. A "*" among them leaves allow empty: every check must pass, so any allow
 * list would shut out the names "*" is there for, and --ask (required with "*") decides.
 * The hosts have passed cfg_check_site. */
static void do_build_allow(struct cfg *cfg, const struct cfg_site *site, struct cfg_errs *e)
{
    struct cfg_on_demand *od = &cfg->on_demand;
    for (size_t i = 0; i < site->n_hosts; i++) {
        if (strcmp(site->hosts[i], "*") == 0) {
            return;
        }
    }

    od->allow = calloc(site->n_hosts, sizeof(*od->allow));
    if (od->allow == NULL) {
        cfg_errs_add(e, "--from", "out of memory");
        return;
    }
    for (size_t i = 0; i < site->n_hosts; i++) {
        const char *why = cfg_on_demand_add_allow(od, site->hosts[i]);
        if (why != NULL) {
            do_bad_value(e, OPT_FROM, why, site->hosts[i]);
        }
    }
}

static void do_build_site(struct cfg *cfg, const struct cli_args *a, struct cfg_errs *e)
{
    /* With --on-demand the site is an ACME site even when --cert was given (and refused),
     * so its hosts are checked as they will be once --cert goes. */
    bool acme = a->value[OPT_CERT] == NULL || cfg->on_demand.enabled;
    const struct cfg_site_where where = {.hosts = "--from",
                                         .index_hosts = false,
                                         .cert = "--cert",
                                         .key = "--key",
                                         .acme = acme,
                                         .cert_hint = "--cert and --key",
                                         .ask_hint = "--ask"};

    cfg->sites = calloc(1, sizeof(*cfg->sites));
    if (cfg->sites == NULL) {
        cfg_errs_add(e, "--from", "out of memory");
        return;
    }
    cfg->n_sites = 1;
    struct cfg_site *site = &cfg->sites[0];
    site->hosts = calloc(a->n_from, sizeof(*site->hosts));
    if (site->hosts == NULL) {
        cfg_errs_add(e, "--from", "out of memory");
        return;
    }
    site->n_hosts = a->n_from;
    for (size_t i = 0; i < a->n_from; i++) {
        site->hosts[i] = cfg_strdup(a->from[i]);
        if (site->hosts[i] == NULL) {
            cfg_errs_add(e, "--from", "out of memory");
            return;
        }
    }
    do_build_route(site, a, e);
    if (!acme) {
        do_build_cert(site, a, e);
    }
    if (cfg_check_site(cfg, 0, &where, e) != 0) {
        return;
    }
    if (cfg->on_demand.enabled) {
        do_build_allow(cfg, site, e);
    }
    /* Clients without SNI get the first exact name; a wildcard names no one host. */
    for (size_t i = 0; i < site->n_hosts && cfg->tls.default_sni == NULL; i++) {
        if (site->hosts[i][0] != '*') {
            cfg->tls.default_sni = cfg_strdup(site->hosts[i]);
            if (cfg->tls.default_sni == NULL) {
                cfg_errs_add(e, "--from", "out of memory");
            }
        }
    }
}

/* A copy of option id's value when check accepts it; NULL when not given or after
 * reporting. The value is left out of the error line unless echo is set. */
static char *do_checked_value(const struct cli_args *a, enum cli_opt_id id,
                              const char *(*check)(const char *), bool echo, struct cfg_errs *e)
{
    const char *s = a->value[id];

    if (s == NULL) {
        return NULL;
    }
    const char *why = check(s);
    if (why != NULL && echo) {
        do_bad_value(e, id, why, s);
    } else if (why != NULL) {
        cfg_errs_add(e, cli_opts[id].name, "%s", why);
    }
    if (why != NULL) {
        return NULL;
    }
    char *copy = cfg_strdup(s);
    if (copy == NULL) {
        cfg_errs_add(e, cli_opts[id].name, "out of memory");
    }
    return copy;
}

/* The value of option id as an absolute path (against the current directory). */
static char *do_path_value(const struct cli_args *a, enum cli_opt_id id, const char *what,
                           struct cfg_errs *e)
{
    const char *s = a->value[id];

    if (s == NULL) {
        return NULL;
    }
    if (s[0] == '\0') {
        do_bad_value(e, id, what, s);
        return NULL;
    }
    char *path = cfg_abs_path(NULL, s);
    if (path == NULL) {
        do_bad_value(e, id, "cannot make the path absolute", s);
    }
    return path;
}

/* "tls-alpn-01,http-01": each item goes through the check the JSON list uses. */
static void do_build_challenges(struct cfg_acme *acme, const char *value, struct cfg_errs *e)
{
    char *list = cfg_strdup(value);

    if (list == NULL) {
        cfg_errs_add(e, "--challenges", "out of memory");
        return;
    }
    acme->n_challenges = 0;
    for (char *item = list; item != NULL;) {
        char *comma = strchr(item, ',');
        if (comma != NULL) {
            *comma = '\0';
        }
        const char *why = cfg_acme_add_challenge(acme, item);
        if (why != NULL) {
            do_bad_value(e, OPT_CHALLENGES, why, item);
        }
        item = comma != NULL ? comma + 1 : NULL;
    }
    free(list);
}

static void do_build_acme(struct cfg_acme *acme, const struct cli_args *a, struct cfg_errs *e)
{
    acme->ca = do_checked_value(a, OPT_ACME_CA, cfg_check_acme_url, true, e);
    acme->email = do_checked_value(a, OPT_EMAIL, cfg_check_email, true, e);
    acme->eab_kid = do_checked_value(a, OPT_EAB_KID, cfg_check_eab_kid, true, e);
    /* A secret, even a mistyped one, stays out of logs. */
    acme->eab_hmac_key = do_checked_value(a, OPT_EAB_HMAC_KEY, cfg_check_eab_hmac_key, false, e);
    acme->ca_root = do_path_value(a, OPT_ACME_CA_ROOT, "expected a file path", e);
    cfg_check_readable(acme->ca_root, "--acme-ca-root", e);
    acme->storage = do_path_value(a, OPT_STORAGE, "expected a directory path", e);
    const char *s = a->value[OPT_KEY_TYPE];
    const char *why = s != NULL ? cfg_check_key_type(s, &acme->key_type) : NULL;
    if (why != NULL) {
        do_bad_value(e, OPT_KEY_TYPE, why, s);
    }
    if (a->value[OPT_CHALLENGES] != NULL) {
        do_build_challenges(acme, a->value[OPT_CHALLENGES], e);
    }
    if (cfg_acme_fill(acme) != 0) {
        cfg_errs_add(e, "--storage", "out of memory");
    }
}

/* --on-demand and the options that only mean something with it. */
static void do_build_on_demand(struct cfg_on_demand *od, const struct cli_args *a,
                               struct cfg_errs *e)
{
    static const enum cli_opt_id only_with[] = {OPT_ASK, OPT_ON_DEMAND_TIMEOUT};
    static const enum cli_opt_id not_with[] = {OPT_CERT, OPT_KEY};

    if (!a->flag[OPT_ON_DEMAND]) {
        for (size_t i = 0; i < sizeof(only_with) / sizeof(only_with[0]); i++) {
            if (a->value[only_with[i]] != NULL) {
                cfg_errs_add(e, cli_opts[only_with[i]].name, "only with --on-demand");
            }
        }
        return;
    }
    od->enabled = true;
    for (size_t i = 0; i < sizeof(not_with) / sizeof(not_with[0]); i++) {
        if (a->value[not_with[i]] != NULL) {
            cfg_errs_add(e, cli_opts[not_with[i]].name,
                         "not with --on-demand, whose certificates come from ACME");
        }
    }
    od->ask = do_checked_value(a, OPT_ASK, cfg_check_ask_url, true, e);
    const char *s = a->value[OPT_ON_DEMAND_TIMEOUT];
    const char *why = s != NULL ? cfg_check_duration(s, false, &od->timeout_ms) : NULL;
    if (why != NULL) {
        do_bad_value(e, OPT_ON_DEMAND_TIMEOUT, why, s);
    }
}

/* --admin, --user and --log-file. The log file is made absolute now, since the process
 * may change directory. */
static void do_build_ops(struct cfg *cfg, const struct cli_args *a, struct cfg_errs *e)
{
    const char *s = a->value[OPT_ADMIN];

    if (s != NULL) {
        const char *why = cfg_check_admin_listen(s, &cfg->admin);
        if (why != NULL) {
            do_bad_value(e, OPT_ADMIN, why, s);
        } else {
            cfg->admin.explicit = true;
        }
    }
    if (cfg_admin_fill(&cfg->admin) != 0) {
        cfg_errs_add(e, "--admin", "out of memory");
    }
    /* The listeners are built: a configured admin address must not take their port. */
    static const enum cli_opt_id listen_opts[] = {OPT_HTTPS_PORT, OPT_HTTP_PORT};
    const struct cfg_hostport *listeners[] = {cfg->https_listen, cfg->http_listen};
    for (size_t i = 0; cfg->admin.explicit && cfg->admin.enabled && i < 2; i++) {
        if (listeners[i] != NULL && cfg_listen_overlap(&cfg->admin.listen, listeners[i])) {
            cfg_errs_add(e, "--admin", "port %u is already used by %s", cfg->admin.listen.port,
                         cli_opts[listen_opts[i]].name);
            break;
        }
    }
    cfg->user = do_checked_value(a, OPT_USER, cfg_check_user, true, e);
    cfg->log_file = do_path_value(a, OPT_LOG_FILE, "expected a file path", e);
    cfg_check_log_file(cfg->log_file, "--log-file", e);
}

/* Fills cfg from a; the site only when the options it needs are there. */
static void do_build(struct cfg *cfg, const struct cli_args *a, struct cfg_errs *e)
{
    cfg_set_defaults(cfg);
    do_build_scalars(cfg, a, e);
    do_build_listen(cfg, a, e);
    do_build_ops(cfg, a, e);
    do_build_acme(&cfg->acme, a, e);
    do_build_on_demand(&cfg->on_demand, a, e);
    bool cert_pair = (a->value[OPT_CERT] == NULL) == (a->value[OPT_KEY] == NULL);
    if (a->n_from > 0 && a->value[OPT_TO] != NULL && cert_pair) {
        do_build_site(cfg, a, e);
    }
}

struct cfg *cfg_from_cli(int argc, char **argv, char *err, size_t errlen)
{
    struct cfg_errs e;
    struct cli_args a;
    struct cfg *cfg = NULL;

    cfg_errs_init(&e, err, errlen);
    if (cfg_cli_wants_help(argc, argv)) {
        if (errlen > 0 && err != NULL) {
            snprintf(err, errlen, "%s", usage);
        }
        return NULL;
    }
    memset(&a, 0, sizeof(a));
    a.from = calloc(argc > 0 ? (size_t)argc : 1, sizeof(*a.from));
    if (a.from == NULL) {
        cfg_errs_add(&e, "(arguments)", "out of memory");
        cfg_errs_finish(&e);
        return NULL;
    }
    for (int i = 0; i < argc;) {
        i = do_scan_one(argc, argv, i, &a, &e);
    }
    do_check_required(&a, &e);
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        cfg_errs_add(&e, "(arguments)", "out of memory");
    } else {
        do_build(cfg, &a, &e);
        cfg_check_challenges_reachable(cfg, "--challenges", &e);
    }
    free(a.from);
    if (e.count > 0) {
        cfg_free(cfg);
        cfg = NULL;
    }
    cfg_errs_finish(&e);
    return cfg;
}
