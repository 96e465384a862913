/* config_int.h - what the files of the config module share: the error collector, the
 * value parsers and the checks that both the JSON loader and the CLI run.
 *
 * Checks come in two shapes. Value parsers (cfg_check_*) return NULL when the value is
 * fine, or a static text saying what was expected, so each caller can put its own path
 * (a JSON key path or a CLI option) in front of it. Whole-site checks take a
 * struct cfg_site_where saying how to name the parts of the site in error lines.
 */
#ifndef MOAT_CONFIG_INT_H
#define MOAT_CONFIG_INT_H

#include <stdarg.h>

#include "config.h"

#define CFG_MAX_WORKERS 1024
#define CFG_MAX_PORT 65535

/* Longest path or quoted value put into an error line; longer ones are cut with "...". */
#define CFG_PATH_MAX 160
#define CFG_QUOTE_MAX 80

/* Error lines written into the caller's buffer, one per line, no trailing newline. Once
 * a line does not fit, later lines are only counted, so the buffer never holds half a
 * line except when even the first line is longer than the buffer. */
struct cfg_errs {
    char *buf;      /* the caller's buffer, or NULL */
    size_t cap;     /* its size in bytes */
    size_t used;    /* bytes written, not counting the NUL */
    unsigned count; /* lines reported, written or not */
    unsigned lost;  /* lines that did not fit */
};

void cfg_errs_init(struct cfg_errs *e, char *buf, size_t cap);
/* acme.c: with no plain listener, http-01 leaves the challenge list; when it was the
 * only type that is an error (path names the setting). */
void cfg_check_challenges_reachable(struct cfg *cfg, const char *path, struct cfg_errs *e);

void cfg_errs_add(struct cfg_errs *e, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends "(N more errors)" when lines were lost and there is room for it. */
void cfg_errs_finish(struct cfg_errs *e);

/* Writes s into out as a quoted string for an error line: control bytes become '?' and a
 * long value is cut with "...". */
void cfg_quote(char *out, size_t outlen, const char *s);

/* duration.c: value parsers. */

/* A decimal number of digits only (no sign, no space) not above max. Returns 0 or -1. */
int cfg_parse_uint(const char *s, uint64_t max, uint64_t *out);
int cfg_parse_log_level(const char *s, enum cfg_log_level *out);
/* Letters, digits, '-' (and '_' when allowed), labels of 1..63 bytes, 253 bytes in all;
 * a last label of digits only is refused so "1.2.3" is not taken for a name. */
bool cfg_valid_dns_name(const char *s, bool allow_underscore);
/* 4 or 6 when s is an IPv4 or (bare) IPv6 literal, else 0. */
int cfg_ip_family(const char *s);
/* A host to connect to or bind: a DNS name (underscores allowed, as container names
 * have them), or an IPv4 or bare IPv6 literal. */
bool cfg_valid_endpoint_host(const char *s);
/* A site host: a name, "*." followed by a name, or an IP literal. Lower-case expected.
 * The catch-all "*" is not one; cfg_check_site takes it for on-demand sites only. */
const char *cfg_check_site_host(const char *s);
/* A duration as cfg_parse_duration reads it, into out; zero only when zero_ok. */
const char *cfg_check_duration(const char *s, bool zero_ok, uint64_t *out);
/* cfg_parse_hostport, telling a bad value (-1) from a failed allocation (-ENOMEM). */
int cfg_hostport_parse(const char *s, bool allow_empty_host, struct cfg_hostport *out);
/* "host:port" with a port of 1..65535; out->host is allocated on success. */
const char *cfg_check_upstream(const char *s, struct cfg_hostport *out);
/* "10.0.0.0/8", "::1/128" or a single address. */
const char *cfg_check_cidr(const char *s, struct cfg_cidr *out);
/* The admin address: "off" (disables), or "host:port" / "[v6]:port" with an IP literal or
 * "localhost" (stored as 127.0.0.1) and a port of 0..65535. On success out->enabled and
 * out->listen are set (the old host freed); out->explicit is the caller's. */
const char *cfg_check_admin_listen(const char *s, struct cfg_admin *out);
/* A user name or a numeric uid: no '/', ':', white space or control bytes, no leading
 * '-'; digits only must fit a uid (0..4294967294). */
const char *cfg_check_user(const char *s);
/* The Host header of health checks: a host name, an IPv4 literal or a bracketed IPv6
 * literal, optionally followed by ":port" (1..65535). */
const char *cfg_check_health_host(const char *s);
/* The path of health checks: starts with '/', printable ASCII without spaces, as it goes
 * into a request line unchanged. */
const char *cfg_check_health_path(const char *s);

/* acme.c: the "acme" values. The JSON loader (cfg_load_acme) and the CLI run the same
 * checks, so a value means the same thing in both. */

/* The defaults that need no allocation: both challenges, tls-alpn-01 first; ec256;
 * automatic renewal window. */
void cfg_acme_set_defaults(struct cfg_acme *a);
/* Fills ca (Let's Encrypt production) and storage ($XDG_DATA_HOME/moat when
 * XDG_DATA_HOME is absolute, else $HOME/.local/share/moat when HOME is absolute, else
 * /var/lib/moat) when they were not given. Returns 0 or -ENOMEM. */
int cfg_acme_fill(struct cfg_acme *a);
void cfg_acme_dispose(struct cfg_acme *a);
/* An http:// or https:// URL with a host (a name or an IP literal) and maybe a port. */
const char *cfg_check_acme_url(const char *s);
/* One '@' with text on both sides, no white space or control bytes. */
const char *cfg_check_email(const char *s);
const char *cfg_check_eab_kid(const char *s);
/* base64url, '=' padding allowed, of at least 16 bytes once decoded. The value is a
 * secret: callers leave it out of error lines. */
const char *cfg_check_eab_hmac_key(const char *s);
/* Appends challenge s ("tls-alpn-01" or "http-01") to a->challenges; a challenge listed
 * twice is refused. */
const char *cfg_acme_add_challenge(struct cfg_acme *a, const char *s);
const char *cfg_check_key_type(const char *s, enum cfg_key_type *out);
/* Whether a certificate for site host (already valid, lower-case) can come from ACME:
 * NULL when it can, else why not. The one place that decides it. od (may be NULL) says
 * whether names are ordered on demand, which lets wildcards and "*" through. */
const char *cfg_check_acme_host(const char *host, const struct cfg_on_demand *od);

/* on_demand.c: the "on_demand" values, shared by the JSON loader and the CLI. */

/* Every default: disabled, no allow patterns, no ask URL, the numbers in config.h. */
void cfg_on_demand_set_defaults(struct cfg_on_demand *od);
void cfg_on_demand_dispose(struct cfg_on_demand *od);
/* The ask URL: what cfg_check_acme_url accepts, without a fragment, after which the
 * "?domain=NAME" moat appends would never reach the server. */
const char *cfg_check_ask_url(const char *s);
/* Appends a lower-cased copy of pattern ("example.com" or "*.example.com", no IP
 * address) to od->allow, which the caller made large enough; a pattern listed twice is
 * refused. NULL when added, else what was expected. */
const char *cfg_on_demand_add_allow(struct cfg_on_demand *od, const char *pattern);

/* sites.c: frees what a site owns (hosts, certificate paths, routes and their upstreams
 * and health settings) but not the site itself, which lives in cfg->sites. */
void cfg_site_dispose(struct cfg_site *site);

/* check.c: checks shared by config.c and cli.c. */

/* How cfg_check_site names a site's parts in error lines. */
struct cfg_site_where {
    const char *hosts; /* "sites[0].hosts" or "--from" */
    bool index_hosts;  /* append "[i]" to hosts */
    const char *cert;  /* "sites[0].certificate.cert" or "--cert" */
    const char *key;
    /* The site has no certificate files: its certificate comes from ACME, so every host
     * must pass cfg_check_acme_host. cert_hint says what would serve the others
     * ("a \"certificate\"" or "--cert and --key"), ask_hint what "*" needs
     * ("on_demand.ask" or "--ask"). */
    bool acme;
    const char *cert_hint;
    const char *ask_hint;
};

/* Every value that has a default gets it, the ACME challenges included; heap lists and
 * strings are left alone (cfg_acme_fill adds the ACME ones, cfg_admin_fill the admin
 * host). */
void cfg_set_defaults(struct cfg *cfg);
/* Gives an enabled admin endpoint without a host the default one, 127.0.0.1. Returns 0 or
 * -ENOMEM. */
int cfg_admin_fill(struct cfg_admin *a);
/* A route's health settings before its "health_check" and "passive_health" are read:
 * no checks, the default durations. Routes are calloc'ed, so every maker calls this. */
void cfg_health_set_defaults(struct cfg_health *h);
void cfg_health_dispose(struct cfg_health *h);
/* Reports file (when not NULL) under path if it names a directory; a file that does not
 * exist yet is fine, the log file is created at start. */
void cfg_check_log_file(const char *file, const char *path, struct cfg_errs *e);
/* Lower-cases and checks the hosts of cfg->sites[i] (NULL entries, already reported by
 * the caller, are skipped), refuses hosts used earlier in this or an earlier site and,
 * for an ACME site, hosts ACME cannot serve (by cfg->on_demand, so set that first), and
 * checks that the certificate files can be read. Returns the number of errors added. */
unsigned cfg_check_site(struct cfg *cfg, size_t i, const struct cfg_site_where *where,
                        struct cfg_errs *e);
/* Reports file (when not NULL) under path if it cannot be read or is a directory. */
void cfg_check_readable(const char *file, const char *path, struct cfg_errs *e);
/* Whether two listeners would take the same socket: the same port (not 0) on the same
 * host, or on any host when one of them binds every address. */
bool cfg_listen_overlap(const struct cfg_hostport *a, const struct cfg_hostport *b);
/* An absolute path for path: unchanged when absolute, else under dir, or under the
 * current directory when dir is NULL. Returns a new string or NULL. */
char *cfg_abs_path(const char *dir, const char *path);
char *cfg_strdup(const char *s);
/* ASCII lower-casing in place: host names compare case-insensitively. */
void cfg_lower(char *s);

#endif
