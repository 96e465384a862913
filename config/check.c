/* check.c - what the JSON loader and the CLI share: the error collector, defaults, the
 * whole-site checks, path helpers, and the host and network matchers the proxy calls.
 *
 * The matchers are called per connection from worker threads; they read only the
 * immutable cfg and keep no state.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_int.h"

/* Room kept at the end of the error buffer for "\n(4294967295 more errors)". */
#define ERRS_RESERVE 26
#define LINE_MAX_LEN 1024
#define FILE_QUOTE_MAX 400
#define MS_PER_S UINT64_C(1000)
#define ADMIN_DEFAULT_HOST "127.0.0.1"
#define ADMIN_DEFAULT_PORT 2019

void cfg_errs_init(struct cfg_errs *e, char *buf, size_t cap)
{
    memset(e, 0, sizeof(*e));
    e->buf = cap > 0 ? buf : NULL;
    e->cap = buf != NULL ? cap : 0;
    if (e->buf != NULL) {
        e->buf[0] = '\0';
    }
}

/* Adds one finished line; control bytes (a key may hold "\n") become '?' so each error
 * stays on its own line. */
static void do_errs_append(struct cfg_errs *e, char *line)
{
    size_t len = strlen(line);
    size_t sep = e->used > 0 ? 1 : 0;

    e->count++;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) {
            line[i] = '?';
        }
    }
    if (e->buf == NULL) {
        e->lost++;
        return;
    }
    if (e->lost == 0 && e->used + sep + len + 1 + ERRS_RESERVE <= e->cap) {
        if (sep) {
            e->buf[e->used++] = '\n';
        }
        memcpy(e->buf + e->used, line, len + 1);
        e->used += len;
        return;
    }
    if (e->used == 0 && e->lost == 0) {
        /* The buffer is too small for even one line and the reserve: show as much of
         * the first line as fits rather than nothing. */
        size_t n = len < e->cap - 1 ? len : e->cap - 1;
        memcpy(e->buf, line, n);
        e->buf[n] = '\0';
        e->used = n;
        return;
    }
    e->lost++;
}

void cfg_errs_add(struct cfg_errs *e, const char *path, const char *fmt, ...)
{
    char line[LINE_MAX_LEN];
    va_list ap;

    int n = snprintf(line, sizeof(line), "%s: ", path[0] != '\0' ? path : "(root)");
    if (n < 0) {
        n = 0;
        line[0] = '\0';
    } else if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
    }
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0 || (size_t)n + (size_t)m >= sizeof(line)) {
        memcpy(line + sizeof(line) - 4, "...", 4);
    }
    do_errs_append(e, line);
}

void cfg_errs_finish(struct cfg_errs *e)
{
    if (e->buf == NULL || e->lost == 0 || e->used == 0) {
        return;
    }
    int n = snprintf(e->buf + e->used, e->cap - e->used, "\n(%u more errors)", e->lost);
    if (n < 0 || (size_t)n >= e->cap - e->used) {
        e->buf[e->used] = '\0';
        return;
    }
    e->used += (size_t)n;
}

void cfg_quote(char *out, size_t outlen, const char *s)
{
    size_t o = 0;

    if (outlen < 8) {
        if (outlen > 0) {
            out[0] = '\0';
        }
        return;
    }
    out[o++] = '"';
    for (; s != NULL && *s != '\0'; s++) {
        /* After this byte there must still be room for "...", '"' and the NUL. */
        if (o + 6 > outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
        } else {
            out[o++] = *s;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

char *cfg_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);

    if (copy != NULL) {
        memcpy(copy, s, n);
    }
    return copy;
}

char *cfg_abs_path(const char *dir, const char *path)
{
    char cwd[PATH_MAX];
    char *dir_abs = NULL;

    if (path == NULL || path[0] == '\0') {
        return NULL;
    }
    if (path[0] == '/') {
        return cfg_strdup(path);
    }
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
        path += strspn(path, "/");
    }
    if (dir == NULL) {
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            return NULL;
        }
        dir = cwd;
    } else if (dir[0] != '/') {
        dir_abs = cfg_abs_path(NULL, dir);
        if (dir_abs == NULL) {
            return NULL;
        }
        dir = dir_abs;
    }
    size_t dlen = strlen(dir);
    bool slash = dlen > 0 && dir[dlen - 1] == '/';
    size_t n = dlen + 1 + strlen(path) + 1;
    char *out = malloc(n);
    if (out != NULL) {
        const char *sep = slash || path[0] == '\0' ? "" : "/";
        snprintf(out, n, "%s%s%s", dir, sep, path);
    }
    free(dir_abs);
    return out;
}

void cfg_set_defaults(struct cfg *cfg)
{
    cfg->workers = 0;
    cfg->log_level = CFG_LOG_INFO;
    cfg->access_log = true;
    cfg->timeouts.request_head = 10 * MS_PER_S;
    cfg->timeouts.keepalive_idle = 75 * MS_PER_S;
    cfg->timeouts.tls_handshake = 10 * MS_PER_S;
    cfg->timeouts.upstream_connect = 5 * MS_PER_S;
    cfg->timeouts.upstream_head = 60 * MS_PER_S;
    cfg->timeouts.upstream_idle = 60 * MS_PER_S;
    cfg->timeouts.body_idle = 60 * MS_PER_S;
    cfg->timeouts.drain = 10 * MS_PER_S;
    cfg->limits.max_request_head = 16384;
    cfg->limits.max_conns_per_worker = 10000;
    cfg->limits.upstream_idle_per_worker = 64;
    cfg->tls.session_tickets = true;
    cfg->tls.ticket_rotation_ms = MS_PER_S * 60 * 60 * 12;
    cfg_acme_set_defaults(&cfg->acme);
    cfg_on_demand_set_defaults(&cfg->on_demand);
    cfg->admin.enabled = true;
    cfg->admin.listen.port = ADMIN_DEFAULT_PORT;
    cfg->admin.explicit = false;
}

int cfg_admin_fill(struct cfg_admin *a)
{
    if (!a->enabled || a->listen.host != NULL) {
        return 0;
    }
    a->listen.host = cfg_strdup(ADMIN_DEFAULT_HOST);
    return a->listen.host != NULL ? 0 : -ENOMEM;
}

void cfg_health_set_defaults(struct cfg_health *h)
{
    memset(h, 0, sizeof(*h));
    h->interval_ms = 10 * MS_PER_S;
    h->timeout_ms = 5 * MS_PER_S;
    h->fail_window_ms = 10 * MS_PER_S;
    h->fail_duration_ms = 30 * MS_PER_S;
}

void cfg_health_dispose(struct cfg_health *h)
{
    free(h->path);
    h->path = NULL;
    free(h->host);
    h->host = NULL;
}

bool cfg_listen_overlap(const struct cfg_hostport *a, const struct cfg_hostport *b)
{
    if (a->host == NULL || b->host == NULL || a->port == 0 || a->port != b->port) {
        return false;
    }
    return a->host[0] == '\0' || b->host[0] == '\0' || strcmp(a->host, b->host) == 0;
}

void cfg_lower(char *s)
{
    for (; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z') {
            *s = (char)(*s - 'A' + 'a');
        }
    }
}

/* Reports a site host already used by an earlier host of site i or of an earlier site. */
static void do_check_host_unique(const struct cfg *cfg, size_t i, size_t h, const char *path,
                                 struct cfg_errs *e)
{
    const char *host = cfg->sites[i].hosts[h];
    char q[CFG_QUOTE_MAX];

    for (size_t s = 0; s <= i; s++) {
        size_t end = s == i ? h : cfg->sites[s].n_hosts;
        for (size_t k = 0; k < end; k++) {
            const char *other = cfg->sites[s].hosts[k];
            if (other == NULL || strcmp(other, host) != 0) {
                continue;
            }
            cfg_quote(q, sizeof(q), host);
            if (s == i) {
                cfg_errs_add(e, path, "%s is listed twice", q);
            } else {
                cfg_errs_add(e, path, "%s is already used by sites[%zu]", q, s);
            }
            return;
        }
    }
}

void cfg_check_readable(const char *file, const char *path, struct cfg_errs *e)
{
    char q[FILE_QUOTE_MAX];
    struct stat st;

    if (file == NULL) {
        return;
    }
    cfg_quote(q, sizeof(q), file);
    if (access(file, R_OK) != 0) {
        cfg_errs_add(e, path, "cannot read %s: %s", q, strerror(errno));
    } else if (stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
        cfg_errs_add(e, path, "cannot read %s: %s", q, strerror(EISDIR));
    }
}

void cfg_check_log_file(const char *file, const char *path, struct cfg_errs *e)
{
    char q[FILE_QUOTE_MAX];
    struct stat st;

    if (file != NULL && stat(file, &st) == 0 && S_ISDIR(st.st_mode)) {
        cfg_quote(q, sizeof(q), file);
        cfg_errs_add(e, path, "cannot write %s: %s", q, strerror(EISDIR));
    }
}

unsigned cfg_check_site(struct cfg *cfg, size_t i, const struct cfg_site_where *where,
                        struct cfg_errs *e)
{
    struct cfg_site *site = &cfg->sites[i];
    unsigned before = e->count;
    char path[CFG_PATH_MAX];
    char q[CFG_QUOTE_MAX];

    for (size_t h = 0; h < site->n_hosts; h++) {
        if (site->hosts[h] == NULL) {
            continue;
        }
        if (where->index_hosts) {
            snprintf(path, sizeof(path), "%s[%zu]", where->hosts, h);
        } else {
            snprintf(path, sizeof(path), "%s", where->hosts);
        }
        cfg_lower(site->hosts[h]);
        cfg_quote(q, sizeof(q), site->hosts[h]);
        /* The catch-all names no certificate, so it is a host only where certificates
         * are ordered on demand; cfg_check_acme_host decides the rest. */
        bool any = strcmp(site->hosts[h], "*") == 0;
        const char *why = any && where->acme && cfg->on_demand.enabled
                              ? NULL
                              : cfg_check_site_host(site->hosts[h]);
        if (why != NULL) {
            cfg_errs_add(e, path, "%s, got %s", why, q);
            continue;
        }
        why = where->acme ? cfg_check_acme_host(site->hosts[h], &cfg->on_demand) : NULL;
        if (why != NULL) {
            /* No certificate file can serve "*"; only the ask URL makes it safe. */
            cfg_errs_add(e, path, "%s needs %s: %s", q, any ? where->ask_hint : where->cert_hint,
                         why);
        }
        do_check_host_unique(cfg, i, h, path, e);
    }
    cfg_check_readable(site->cert.cert_file, where->cert, e);
    cfg_check_readable(site->cert.key_file, where->key, e);
    return e->count - before;
}

bool cfg_host_match(const char *pattern, const char *name)
{
    if (pattern == NULL || name == NULL) {
        return false;
    }
    /* The catch-all of on-demand sites. */
    if (strcmp(pattern, "*") == 0) {
        return name[0] != '\0';
    }
    /* Patterns are lower-case after loading, but a name from a Host header may not be;
     * DNS names compare without case, so accept either rather than rely on callers. */
    if (strcasecmp(pattern, name) == 0) {
        return true;
    }
    if (pattern[0] != '*' || pattern[1] != '.') {
        return false;
    }
    /* The wildcard stands for exactly one non-empty label. */
    const char *dot = strchr(name, '.');
    return dot != NULL && dot != name && strcasecmp(dot, pattern + 1) == 0;
}

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Turns an IPv4-mapped IPv6 address (or network of prefix >= 96) into its IPv4 form. */
static void do_unmap(int *family, const uint8_t **addr, unsigned *prefix)
{
    if (*family == 6 && memcmp(*addr, v4_mapped_prefix, 12) == 0 && *prefix >= 96) {
        *family = 4;
        *addr += 12;
        *prefix -= 96;
    }
}

static bool do_prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned bytes = prefix / 8, bits = prefix % 8;

    if (memcmp(a, b, bytes) != 0) {
        return false;
    }
    if (bits == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - bits));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

bool cfg_cidr_match(const struct cfg_cidr *nets, size_t n, int family, const uint8_t *addr)
{
    unsigned full = 128;

    if (addr == NULL || (family != 4 && family != 6)) {
        return false;
    }
    do_unmap(&family, &addr, &full);
    for (size_t i = 0; i < n; i++) {
        int nf = nets[i].family;
        const uint8_t *na = nets[i].addr;
        unsigned np = nets[i].prefix;
        do_unmap(&nf, &na, &np);
        if (nf == family && np <= (nf == 4 ? 32u : 128u) && do_prefix_equal(na, addr, np)) {
            return true;
        }
    }
    return false;
}
