/* config.c - loads and validates the JSON config into a struct cfg.
 *
 * The loader walks the document once, fills a struct cfg allocated up front and reports
 * every problem it meets instead of stopping at the first, so a user fixes a file in one
 * pass. Entries that failed to parse are left NULL (or zero) in their arrays, which keeps
 * array indexes equal to the JSON indexes for later error lines; a cfg with any error is
 * freed, so callers never see those holes. Only the control thread loads configs; the
 * result is immutable and may then be read from any thread. This file holds the top-level
 * sections, reading the file and cfg_free; the sites and their routes load in sites.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

/* A config file larger than this is a mistake (a log file, a binary), not a config. */
#define MAX_FILE_SIZE (16u * 1024 * 1024)

/* Sections. */

static void do_load_log(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {"level", "access", "file", NULL};
    const cJSON *item;

    if (!cfg_json_object(ld, v, "log", keys)) {
        return;
    }
    item = cfg_json_get(v, "level");
    if (item != NULL) {
        const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
        if (cfg_parse_log_level(s, &ld->cfg->log_level) != 0) {
            cfg_json_expected(ld, "log.level",
                              "expected \"debug\", \"info\", \"warn\" or \"error\"", item);
        }
    }
    item = cfg_json_get(v, "access");
    if (item != NULL) {
        cfg_json_bool(ld, item, "log.access", &ld->cfg->access_log);
    }
    item = cfg_json_get(v, "file");
    if (item != NULL) {
        ld->cfg->log_file = cfg_json_path(ld, item, "log.file", "expected a file path");
        cfg_check_log_file(ld->cfg->log_file, "log.file", ld->e);
    }
}

/* "admin": {"listen": ...}; without it the admin endpoint keeps its default address. */
static void do_load_admin(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {"listen", NULL};

    if (!cfg_json_object(ld, v, "admin", keys)) {
        return;
    }
    const cJSON *item = cfg_json_get(v, "listen");
    if (item == NULL) {
        return;
    }
    const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
    const char *why = cfg_check_admin_listen(s, &ld->cfg->admin);
    if (why != NULL) {
        cfg_json_expected(ld, "admin.listen", why, item);
        return;
    }
    ld->cfg->admin.explicit = true;
}

static void do_load_user(struct cfg_loader *ld, const cJSON *v)
{
    const char *why = cfg_check_user(cJSON_IsString(v) ? v->valuestring : NULL);

    if (why != NULL) {
        cfg_json_expected(ld, "user", why, v);
        return;
    }
    ld->cfg->user = cfg_json_string(ld, v, "user", "expected a user name");
}

static void do_load_timeouts(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {"request_head",     "keepalive_idle", "tls_handshake",
                                       "upstream_connect", "upstream_head",  "upstream_idle",
                                       "body_idle",        "drain",          NULL};
    struct cfg_timeouts *t = &ld->cfg->timeouts;
    uint64_t *fields[] = {&t->request_head,     &t->keepalive_idle, &t->tls_handshake,
                          &t->upstream_connect, &t->upstream_head,  &t->upstream_idle,
                          &t->body_idle,        &t->drain};
    char path[CFG_PATH_MAX];

    if (!cfg_json_object(ld, v, "timeouts", keys)) {
        return;
    }
    for (size_t i = 0; keys[i] != NULL; i++) {
        const cJSON *item = cfg_json_get(v, keys[i]);
        if (item != NULL) {
            cfg_json_key_path(path, sizeof(path), "timeouts", keys[i]);
            cfg_json_duration(ld, item, path, fields[i]);
        }
    }
}

static void do_load_limits(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {"max_request_head", "max_connections_per_worker",
                                       "upstream_idle_per_worker", NULL};
    static const uint64_t min[] = {1024, 1, 0};
    static const uint64_t max[] = {1048576, 1000000, 100000};
    struct cfg_limits *l = &ld->cfg->limits;
    size_t *fields[] = {&l->max_request_head, &l->max_conns_per_worker,
                        &l->upstream_idle_per_worker};
    char path[CFG_PATH_MAX];
    uint64_t n;

    if (!cfg_json_object(ld, v, "limits", keys)) {
        return;
    }
    for (size_t i = 0; keys[i] != NULL; i++) {
        const cJSON *item = cfg_json_get(v, keys[i]);
        cfg_json_key_path(path, sizeof(path), "limits", keys[i]);
        if (item != NULL && cfg_json_uint(ld, item, path, min[i], max[i], &n)) {
            *fields[i] = (size_t)n;
        }
    }
}

static void do_load_tls(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {"default_sni", "session_tickets", "ticket_rotation", NULL};
    const cJSON *item;

    if (!cfg_json_object(ld, v, "tls", keys)) {
        return;
    }
    item = cfg_json_get(v, "default_sni");
    if (item != NULL) {
        ld->cfg->tls.default_sni =
            cfg_json_string(ld, item, "tls.default_sni", "expected a host name");
        if (ld->cfg->tls.default_sni != NULL) {
            cfg_lower(ld->cfg->tls.default_sni);
        }
    }
    item = cfg_json_get(v, "session_tickets");
    if (item != NULL) {
        cfg_json_bool(ld, item, "tls.session_tickets", &ld->cfg->tls.session_tickets);
    }
    item = cfg_json_get(v, "ticket_rotation");
    if (item != NULL) {
        cfg_json_duration(ld, item, "tls.ticket_rotation", &ld->cfg->tls.ticket_rotation_ms);
    }
}

static void do_load_trusted(struct cfg_loader *ld, const cJSON *v)
{
    char path[CFG_PATH_MAX];
    int n = cfg_json_array(ld, v, "trusted_proxies", false);

    if (n <= 0) {
        return;
    }
    ld->cfg->trusted_proxies = calloc((size_t)n, sizeof(struct cfg_cidr));
    if (ld->cfg->trusted_proxies == NULL) {
        cfg_json_oom(ld, "trusted_proxies");
        return;
    }
    ld->cfg->n_trusted_proxies = (size_t)n;
    const cJSON *item = v->child;
    for (int i = 0; i < n; i++, item = item->next) {
        const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
        const char *why = cfg_check_cidr(s, &ld->cfg->trusted_proxies[i]);
        if (why != NULL) {
            cfg_json_index_path(path, sizeof(path), "trusted_proxies", (size_t)i);
            cfg_json_expected(ld, path, why, item);
        }
    }
}

/* One listener list; a missing list gets its default (def). */
static void do_load_listeners(struct cfg_loader *ld, const cJSON *v, const char *path,
                              const char *def, bool nonempty, struct cfg_hostport **list,
                              size_t *count)
{
    char sub[CFG_PATH_MAX];
    int n = v == NULL ? 1 : cfg_json_array(ld, v, path, nonempty);

    if (n <= 0) {
        return;
    }
    *list = calloc((size_t)n, sizeof(**list));
    if (*list == NULL) {
        cfg_json_oom(ld, path);
        return;
    }
    *count = (size_t)n;
    if (v == NULL) {
        if (cfg_parse_hostport(def, true, &(*list)[0]) != 0) {
            cfg_json_oom(ld, path);
        }
        return;
    }
    const cJSON *item = v->child;
    for (int i = 0; i < n; i++, item = item->next) {
        const char *s = cJSON_IsString(item) ? item->valuestring : NULL;
        int rc = cfg_hostport_parse(s, true, &(*list)[i]);
        cfg_json_index_path(sub, sizeof(sub), path, (size_t)i);
        if (rc == -ENOMEM) {
            cfg_json_oom(ld, sub);
        } else if (rc != 0) {
            cfg_json_expected(ld, sub, "expected \"host:port\" or \":port\"", item);
        }
    }
}

/* Listener k of https followed by http, with the path naming it in errors. */
static const struct cfg_hostport *do_listener_at(const struct cfg *cfg, size_t k,
                                                 const bool given[2], char *path, size_t len)
{
    bool https = k < cfg->n_https_listen;
    size_t i = https ? k : k - cfg->n_https_listen;
    const char *name = https ? "listen.https" : "listen.http";

    if (given[https ? 0 : 1]) {
        snprintf(path, len, "%s[%zu]", name, i);
    } else {
        snprintf(path, len, "%s (default)", name);
    }
    return https ? &cfg->https_listen[i] : &cfg->http_listen[i];
}

/* SO_REUSEPORT would let two listeners on one address both bind and split connections
 * silently, so overlaps are refused here. */
static void do_check_listen_overlap(struct cfg_loader *ld, const bool given[2])
{
    const struct cfg *cfg = ld->cfg;
    size_t total = cfg->n_https_listen + cfg->n_http_listen;
    char path[CFG_PATH_MAX], other[CFG_PATH_MAX];

    for (size_t k = 1; k < total; k++) {
        const struct cfg_hostport *a = do_listener_at(cfg, k, given, path, sizeof(path));
        for (size_t j = 0; j < k; j++) {
            const struct cfg_hostport *b = do_listener_at(cfg, j, given, other, sizeof(other));
            if (cfg_listen_overlap(a, b)) {
                cfg_errs_add(ld->e, path, "port %u is already used by %s", a->port, other);
                break;
            }
        }
    }
}

/* A configured admin address on a listener's port would fail to bind at start; say so
 * now. The default address only warns at start when busy, so it is not checked. */
static void do_check_admin_overlap(struct cfg_loader *ld, const bool given[2])
{
    const struct cfg *cfg = ld->cfg;
    size_t total = cfg->n_https_listen + cfg->n_http_listen;
    char other[CFG_PATH_MAX];

    if (!cfg->admin.enabled || !cfg->admin.explicit) {
        return;
    }
    for (size_t k = 0; k < total; k++) {
        const struct cfg_hostport *l = do_listener_at(cfg, k, given, other, sizeof(other));
        if (cfg_listen_overlap(&cfg->admin.listen, l)) {
            cfg_errs_add(ld->e, "admin.listen", "port %u is already used by %s",
                         cfg->admin.listen.port, other);
            return;
        }
    }
}

static void do_load_listen(struct cfg_loader *ld, const cJSON *v)
{
    static const char *const keys[] = {"https", "http", NULL};
    struct cfg *cfg = ld->cfg;
    const cJSON *https = NULL, *http = NULL;

    if (v != NULL && cfg_json_object(ld, v, "listen", keys)) {
        https = cfg_json_get(v, "https");
        http = cfg_json_get(v, "http");
    }
    /* An empty http list turns the plain listener off; https cannot be turned off. */
    do_load_listeners(ld, https, "listen.https", ":443", true, &cfg->https_listen,
                      &cfg->n_https_listen);
    do_load_listeners(ld, http, "listen.http", ":80", false, &cfg->http_listen,
                      &cfg->n_http_listen);
    bool given[2] = {https != NULL, http != NULL};
    do_check_listen_overlap(ld, given);
    do_check_admin_overlap(ld, given);
}

/* The default certificate must be one a site really has, so it names an exact host. */
static void do_check_default_sni(struct cfg_loader *ld)
{
    const struct cfg *cfg = ld->cfg;
    const char *sni = cfg->tls.default_sni;
    char q[CFG_QUOTE_MAX];

    if (sni == NULL) {
        return;
    }
    for (size_t s = 0; sni[0] != '*' && s < cfg->n_sites; s++) {
        for (size_t h = 0; h < cfg->sites[s].n_hosts; h++) {
            const char *host = cfg->sites[s].hosts[h];
            if (host != NULL && strcmp(host, sni) == 0) {
                return;
            }
        }
    }
    cfg_quote(q, sizeof(q), sni);
    cfg_errs_add(ld->e, "tls.default_sni",
                 "expected one of the sites' hosts (not a wildcard), got %s", q);
}

static void do_load_root(struct cfg_loader *ld, const cJSON *root)
{
    static const char *const keys[] = {"workers", "listen",          "log",  "timeouts",  "limits",
                                       "tls",     "trusted_proxies", "acme", "on_demand", "admin",
                                       "user",    "sites",           NULL};
    /* Optional sections without a default that depends on other sections. */
    static const char *const sections[] = {"log", "timeouts", "limits", "tls", "trusted_proxies"};
    static void (*const loaders[])(struct cfg_loader *, const cJSON *) = {
        do_load_log, do_load_timeouts, do_load_limits, do_load_tls, do_load_trusted};
    const cJSON *item;
    uint64_t n;

    if (!cfg_json_object(ld, root, "", keys)) {
        return;
    }
    item = cfg_json_get(root, "workers");
    if (item != NULL && cfg_json_uint(ld, item, "workers", 0, CFG_MAX_WORKERS, &n)) {
        ld->cfg->workers = (unsigned)n;
    }
    /* Before the listeners, which are checked against the admin address. */
    item = cfg_json_get(root, "admin");
    if (item != NULL) {
        do_load_admin(ld, item);
    }
    if (cfg_admin_fill(&ld->cfg->admin) != 0) {
        cfg_json_oom(ld, "admin.listen");
    }
    item = cfg_json_get(root, "user");
    if (item != NULL) {
        do_load_user(ld, item);
    }
    do_load_listen(ld, cfg_json_get(root, "listen"));
    for (size_t i = 0; i < sizeof(loaders) / sizeof(loaders[0]); i++) {
        item = cfg_json_get(root, sections[i]);
        if (item != NULL) {
            loaders[i](ld, item);
        }
    }
    cfg_load_acme(ld, cfg_json_get(root, "acme"));
    cfg_load_on_demand(ld, cfg_json_get(root, "on_demand"));
    cfg_load_sites(ld, cfg_json_get(root, "sites"));
    do_check_default_sni(ld);
    cfg_check_challenges_reachable(ld->cfg, "acme.challenges", ld->e);
}

/* cJSON stops after the first value; anything but white space after it is an error. */
static bool do_only_space(const char *p, const char *end)
{
    for (; p < end && *p != '\0'; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            return false;
        }
    }
    return true;
}

static void do_report_syntax(struct cfg_errs *e, const char *json, size_t len, const char *at)
{
    size_t off = at != NULL && at >= json && at <= json + len ? (size_t)(at - json) : 0;
    unsigned line = 1, col = 1;

    for (size_t i = 0; i < off; i++) {
        if (json[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    cfg_errs_add(e, "(root)", "invalid JSON near line %u, column %u", line, col);
}

struct cfg *cfg_parse(const char *json, size_t len, const char *base_dir, char *err, size_t errlen)
{
    struct cfg_errs e;
    const char *end = NULL;
    struct cfg *cfg = NULL;

    cfg_errs_init(&e, err, errlen);
    /* The parse end is returned per call; cJSON_GetErrorPtr is a global, and a reload
     * may run while another thread parses ACME JSON. */
    cJSON *root = json != NULL ? cJSON_ParseWithLengthOpts(json, len, &end, false) : NULL;
    if (root == NULL || !do_only_space(end, json + len)) {
        do_report_syntax(&e, json, json != NULL ? len : 0, end);
    } else {
        cfg = calloc(1, sizeof(*cfg));
        if (cfg == NULL) {
            cfg_errs_add(&e, "(root)", "out of memory");
        } else {
            struct cfg_loader ld = {.cfg = cfg, .e = &e, .base_dir = base_dir};
            cfg_set_defaults(cfg);
            do_load_root(&ld, root);
        }
    }
    cJSON_Delete(root);
    if (e.count > 0) {
        cfg_free(cfg);
        cfg = NULL;
    }
    cfg_errs_finish(&e);
    return cfg;
}

/* Reads all of f into a new NUL-terminated buffer. Returns 0, or an errno value. */
static int do_read_all(FILE *f, char **out, size_t *len)
{
    size_t cap = 0, n = 0;
    char *buf = NULL;

    for (;;) {
        if (n + 1 >= cap) {
            size_t ncap = cap == 0 ? 4096 : cap * 2;
            if (ncap > MAX_FILE_SIZE + 1) {
                free(buf);
                return EFBIG;
            }
            char *nbuf = realloc(buf, ncap);
            if (nbuf == NULL) {
                free(buf);
                return ENOMEM;
            }
            buf = nbuf;
            cap = ncap;
        }
        errno = 0;
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    if (ferror(f)) {
        int rc = errno != 0 ? errno : EIO;
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

struct cfg *cfg_load_file(const char *path, char *err, size_t errlen)
{
    struct cfg_errs e;
    char *text = NULL;
    size_t len = 0;
    int rc;

    cfg_errs_init(&e, err, errlen);
    if (path == NULL || path[0] == '\0') {
        cfg_errs_add(&e, "(file)", "expected a config file path");
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        rc = errno;
    } else {
        rc = do_read_all(f, &text, &len);
        fclose(f);
    }
    if (rc != 0) {
        cfg_errs_add(&e, path, "cannot read: %s", strerror(rc));
        cfg_errs_finish(&e);
        return NULL;
    }
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash != NULL) {
        size_t n = slash == path ? 1 : (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir == NULL) {
            free(text);
            cfg_errs_add(&e, path, "out of memory");
            cfg_errs_finish(&e);
            return NULL;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    struct cfg *cfg = cfg_parse(text, len, dir, err, errlen);
    free(dir);
    free(text);
    return cfg;
}

void cfg_free(struct cfg *cfg)
{
    if (cfg == NULL) {
        return;
    }
    for (size_t i = 0; i < cfg->n_https_listen; i++) {
        free(cfg->https_listen[i].host);
    }
    free(cfg->https_listen);
    for (size_t i = 0; i < cfg->n_http_listen; i++) {
        free(cfg->http_listen[i].host);
    }
    free(cfg->http_listen);
    free(cfg->tls.default_sni);
    free(cfg->trusted_proxies);
    for (size_t i = 0; i < cfg->n_sites; i++) {
        cfg_site_dispose(&cfg->sites[i]);
    }
    free(cfg->sites);
    cfg_acme_dispose(&cfg->acme);
    cfg_on_demand_dispose(&cfg->on_demand);
    free(cfg->admin.listen.host);
    free(cfg->user);
    free(cfg->log_file);
    free(cfg);
}
