/* config.h - moat's configuration: loading, validation and the zero-config CLI form.
 *
 * The config module depends on nothing else of moat. It turns a JSON file (or the
 * `moat proxy` command line) into a validated, immutable struct cfg. Every error
 * names the key path and what was expected, and all errors are reported at once.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cfg_balance {
    CFG_BALANCE_ROUND_ROBIN = 0,
    CFG_BALANCE_LEAST_CONN,
};

enum cfg_log_level {
    CFG_LOG_DEBUG = 0,
    CFG_LOG_INFO,
    CFG_LOG_WARN,
    CFG_LOG_ERROR,
};

enum cfg_challenge {
    CFG_CHALLENGE_TLS_ALPN_01 = 0,
    CFG_CHALLENGE_HTTP_01,
};

enum cfg_key_type {
    CFG_KEY_EC256 = 0,
    CFG_KEY_RSA2048,
};

/* How certificates are obtained for sites without certificate files. Always filled: the
 * defaults apply when the config has no "acme" block. */
struct cfg_acme {
    char *ca;           /* directory URL */
    char *ca_root;      /* PEM roots for the CA's own HTTPS, or NULL for the system's */
    char *email;        /* contact, or NULL */
    char *eab_kid;      /* External Account Binding, both or neither */
    char *eab_hmac_key; /* base64url, as the CA hands it out */
    enum cfg_challenge challenges[2]; /* in order of preference */
    size_t n_challenges;
    enum cfg_key_type key_type;
    char *storage;         /* absolute directory */
    double renew_window;   /* fraction of the lifetime left when renewal starts; 0: automatic */
    uint64_t retry_initial_ms; /* first retry after a failed order ("retry_initial", 1m) */
    uint64_t retry_max_ms;     /* the back-off doubles up to this ("retry_max", 6h) */
};

/* Certificates obtained during the first handshake for a name (on-demand TLS). */
struct cfg_on_demand {
    bool enabled;
    char **allow;              /* name patterns ("*.example.com" one label, or exact) */
    size_t n_allow;
    char *ask;                 /* URL asked GET ?domain=NAME; 2xx allows; or NULL */
    uint64_t timeout_ms;       /* a handshake waits at most this ("timeout", 60s) */
    uint64_t ask_cache_ms;     /* how long an ask answer is remembered ("ask_cache", 1m) */
    unsigned concurrency;      /* orders in parallel ("concurrency", 8) */
    size_t cache_size;         /* certificates held in memory ("cache_size", 1000) */
    unsigned rate_orders;      /* at most this many new orders ... ("rate_limit.orders", 60) */
    uint64_t rate_per_ms;      /* ... per this period ("rate_limit.per", 1m) */
};

/* A listen or upstream address as written: host may be a name, an IPv4 literal or an
 * IPv6 literal (without brackets); an empty host on a listener means every address. */
struct cfg_hostport {
    char *host;
    uint16_t port;
};

/* A network in trusted_proxies: family is 4 or 6, addr holds 4 or 16 bytes. */
struct cfg_cidr {
    int family;
    uint8_t addr[16];
    unsigned prefix;
};

/* A certificate from files: PEM chain (leaf first) and PEM private key. */
struct cfg_cert_files {
    char *cert_file;
    char *key_file;
};

/* Health checks of a route's upstreams. Active checks send GET path to each upstream
 * every interval; passive checks count failed attempts at real requests. An upstream
 * (host:port) named by several routes has one health state, set up by the first route
 * in config order that configures a check. */
struct cfg_health {
    char *path;                /* NULL: no active checks */
    char *host;                /* Host header, NULL: the upstream as written */
    uint64_t interval_ms;      /* between two checks of one upstream ("interval", 10s) */
    uint64_t timeout_ms;       /* a check not answered by then fails ("timeout", 5s) */
    int expect_status;         /* the status a passing check answers; 0: any 2xx */
    unsigned max_fails;        /* 0: passive checks off ("max_fails", 3 once given) */
    uint64_t fail_window_ms;   /* max_fails failures within this... ("fail_window", 10s) */
    uint64_t fail_duration_ms; /* ...take the upstream out for this ("fail_duration", 30s) */
};

struct cfg_route {
    char *path_prefix; /* "/" matches everything */
    struct cfg_hostport *upstreams;
    size_t n_upstreams;
    enum cfg_balance balance;
    struct cfg_health health;
};

struct cfg_site {
    char **hosts; /* lower-case names; "*.example.com" is a one-label wildcard */
    size_t n_hosts;
    struct cfg_cert_files cert; /* both NULL: the certificate comes from ACME */
    struct cfg_route *routes;   /* longest prefix wins; order kept as written */
    size_t n_routes;
};

/* Every duration is in milliseconds. */
struct cfg_timeouts {
    uint64_t request_head;     /* whole request head must arrive within this */
    uint64_t keepalive_idle;   /* idle client connection between requests */
    uint64_t tls_handshake;    /* from accept to handshake done */
    uint64_t upstream_connect; /* TCP connect to an upstream */
    uint64_t upstream_head;    /* from request sent to response head received */
    uint64_t upstream_idle;    /* pooled idle upstream connection lifetime */
    uint64_t body_idle;        /* no byte in either direction while streaming a body */
    uint64_t drain;            /* graceful shutdown: wait this long for in-flight work */
};

struct cfg_limits {
    size_t max_request_head;        /* bytes; over it the client gets 431 */
    size_t max_conns_per_worker;    /* accepted connections; over it new ones are closed */
    size_t upstream_idle_per_worker; /* pooled idle connections per upstream per worker */
};

struct cfg_tls {
    char *default_sni;           /* certificate name used for clients sending no SNI, or NULL */
    bool session_tickets;        /* resumption with tickets */
    uint64_t ticket_rotation_ms; /* ticket key lifetime; the previous key still decrypts */
};

/* The admin endpoint: plain HTTP without authentication, so meant for loopback. */
struct cfg_admin {
    bool enabled;               /* false: "off" */
    struct cfg_hostport listen; /* IP literal host ("localhost" is stored as 127.0.0.1);
                                 * port 0: any free port. Host NULL when disabled. */
    bool explicit;              /* the config named the address: failing to bind it is an
                                 * error, not a warning */
};

struct cfg {
    unsigned workers; /* 0 means one per CPU; the caller resolves it */
    struct cfg_hostport *https_listen;
    size_t n_https_listen;
    struct cfg_hostport *http_listen;
    size_t n_http_listen;
    enum cfg_log_level log_level;
    bool access_log;
    char *log_file; /* absolute path the log lines go to, or NULL for stderr */
    struct cfg_timeouts timeouts;
    struct cfg_limits limits;
    struct cfg_tls tls;
    struct cfg_cidr *trusted_proxies;
    size_t n_trusted_proxies;
    struct cfg_site *sites;
    size_t n_sites;
    struct cfg_acme acme;
    struct cfg_on_demand on_demand;
    struct cfg_admin admin;
    char *user; /* user name or numeric uid to switch to when started as root, or NULL */
};

/* Parses and validates a JSON document. Returns a new cfg owned by the caller, or NULL
 * with every error written to err, one per line ("sites[1].upstreams[0]: expected
 * \"host:port\""), truncated to errlen. Relative file paths (certificates, log.file,
 * acme.storage) are taken relative to base_dir when it is not NULL. */
struct cfg *cfg_parse(const char *json, size_t len, const char *base_dir, char *err,
                      size_t errlen);

/* Reads FILE and calls cfg_parse with the file's directory as base_dir. */
struct cfg *cfg_load_file(const char *path, char *err, size_t errlen);

/* Builds a cfg from the arguments of `moat proxy` (argv[0] is the first option, e.g.
 * "--from"). Same error convention as cfg_parse. */
struct cfg *cfg_from_cli(int argc, char **argv, char *err, size_t errlen);

/* Usage text of `moat proxy`, for --help and errors. */
const char *cfg_cli_usage(void);

/* Whether the arguments of `moat proxy` ask for help ("--help" or "-h"). cfg_from_cli
 * answers those with NULL and the usage text in err; call this first to print the usage
 * to stdout and exit 0 instead. */
bool cfg_cli_wants_help(int argc, char **argv);

void cfg_free(struct cfg *cfg);

/* The storage directory used when the config names none: $XDG_DATA_HOME/moat, else
 * ~/.local/share/moat, else /var/lib/moat. malloc'd. */
char *cfg_acme_default_storage(void);

/* Parses "host:port", "[v6]:port" or ":port" (allow_empty_host). Returns 0 or -1. */
int cfg_parse_hostport(const char *s, bool allow_empty_host, struct cfg_hostport *out);

/* Parses "10s", "500ms", "2m", "1h" or a plain number of seconds (may be fractional).
 * Returns 0 or -1. */
int cfg_parse_duration(const char *s, uint64_t *ms);

/* Whether the address (4 or 16 bytes of family 4 or 6) is inside one of the networks.
 * An IPv4-mapped IPv6 address matches IPv4 networks. */
bool cfg_cidr_match(const struct cfg_cidr *nets, size_t n, int family, const uint8_t *addr);

/* Whether name (lower-case) matches pattern: exact, "*.suffix" for exactly one label, or
 * "*" (the catch-all host of on-demand sites) for any non-empty name. */
bool cfg_host_match(const char *pattern, const char *name);

#endif
