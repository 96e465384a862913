/* duration.c - parsers for single config values: durations, host:port, names, networks.
 *
 * Nothing here allocates except a parsed host, and nothing keeps state, so every
 * function may be called from any thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"

#define NAME_MAX_LEN 253
#define LABEL_MAX_LEN 63
/* Fraction digits that count; later ones only decide whether to round up. */
#define FRACTION_DIGITS 9
#define USER_MAX_LEN 256
#define UID_MAX_VALUE UINT64_C(4294967294) /* (uid_t)-1 means "no change" to setuid */

static bool do_is_digit(char c) { return c >= '0' && c <= '9'; }

static bool do_is_alnum(char c)
{
    return do_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int cfg_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (s == NULL || !do_is_digit(*s)) {
        return -1;
    }
    for (; *s != '\0'; s++) {
        if (!do_is_digit(*s)) {
            return -1;
        }
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (max - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* The unit after the number, in milliseconds; a bare number is seconds. 0 if unknown. */
static uint64_t do_unit_ms(const char *unit)
{
    if (*unit == '\0' || strcmp(unit, "s") == 0) {
        return 1000;
    }
    if (strcmp(unit, "ms") == 0) {
        return 1;
    }
    if (strcmp(unit, "m") == 0) {
        return UINT64_C(60) * 1000;
    }
    if (strcmp(unit, "h") == 0) {
        return UINT64_C(60) * 60 * 1000;
    }
    return 0;
}

/* Integer arithmetic rather than strtod, so "0.1s" is exactly 100 ms. A fraction of a
 * millisecond rounds up: a positive duration must never become 0, which libuv timers
 * would take as "now". */
int cfg_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t whole = 0, frac = 0, den = 1;
    bool frac_rest = false;

    if (s == NULL || ms == NULL || !do_is_digit(*s)) {
        return -1;
    }
    for (; do_is_digit(*s); s++) {
        if (whole > (UINT64_MAX - 9) / 10) {
            return -1;
        }
        whole = whole * 10 + (uint64_t)(*s - '0');
    }
    if (*s == '.') {
        s++;
        if (!do_is_digit(*s)) {
            return -1;
        }
        for (int n = 0; do_is_digit(*s); s++, n++) {
            if (n < FRACTION_DIGITS) {
                frac = frac * 10 + (uint64_t)(*s - '0');
                den *= 10;
            } else if (*s != '0') {
                frac_rest = true;
            }
        }
    }
    uint64_t unit = do_unit_ms(s);
    if (unit == 0 || whole > UINT64_MAX / unit) {
        return -1;
    }
    /* frac < 10^9 and unit <= 3.6e6, so the product fits in 64 bits. */
    uint64_t total = whole * unit;
    uint64_t part = frac * unit / den;
    bool round_up = frac_rest || (frac * unit) % den != 0;
    if (total > UINT64_MAX - part - 1) {
        return -1;
    }
    *ms = total + part + (round_up ? 1 : 0);
    return 0;
}

const char *cfg_check_duration(const char *s, bool zero_ok, uint64_t *out)
{
    uint64_t ms;

    if (cfg_parse_duration(s, &ms) != 0) {
        return "expected a duration such as \"10s\"";
    }
    if (ms == 0 && !zero_ok) {
        return "expected a duration greater than zero";
    }
    *out = ms;
    return NULL;
}

int cfg_parse_log_level(const char *s, enum cfg_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const enum cfg_log_level levels[] = {CFG_LOG_DEBUG, CFG_LOG_INFO, CFG_LOG_WARN,
                                                CFG_LOG_ERROR};

    for (size_t i = 0; s != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = levels[i];
            return 0;
        }
    }
    return -1;
}

/* Checks one label of length len starting at s. */
static bool do_valid_label(const char *s, size_t len, bool allow_underscore)
{
    if (len == 0 || len > LABEL_MAX_LEN || s[0] == '-' || s[len - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        bool ok = do_is_alnum(s[i]) || s[i] == '-' || (allow_underscore && s[i] == '_');
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool cfg_valid_dns_name(const char *s, bool allow_underscore)
{
    size_t len = s != NULL ? strlen(s) : 0;
    bool last_numeric = true;

    if (len == 0 || len > NAME_MAX_LEN) {
        return false;
    }
    for (const char *label = s;;) {
        const char *dot = strchr(label, '.');
        size_t n = dot != NULL ? (size_t)(dot - label) : strlen(label);
        if (!do_valid_label(label, n, allow_underscore)) {
            return false;
        }
        last_numeric = strspn(label, "0123456789") >= n;
        if (dot == NULL) {
            break;
        }
        label = dot + 1;
    }
    return !last_numeric;
}

int cfg_ip_family(const char *s)
{
    unsigned char buf[16];

    if (s == NULL) {
        return 0;
    }
    if (inet_pton(AF_INET, s, buf) == 1) {
        return 4;
    }
    if (inet_pton(AF_INET6, s, buf) == 1) {
        return 6;
    }
    return 0;
}

bool cfg_valid_endpoint_host(const char *s)
{
    return cfg_ip_family(s) != 0 || cfg_valid_dns_name(s, true);
}

const char *cfg_check_site_host(const char *s)
{
    static const char expected[] =
        "expected a host name such as \"example.com\" or \"*.example.com\", or an IP address";

    if (s == NULL) {
        return expected;
    }
    if (strncmp(s, "*.", 2) == 0) {
        return cfg_valid_dns_name(s + 2, false) ? NULL : expected;
    }
    if (cfg_ip_family(s) != 0 || cfg_valid_dns_name(s, false)) {
        return NULL;
    }
    return expected;
}

/* Splits s into a host (copied into host, at most hostlen - 1 bytes) and a port string. */
static int do_split_hostport(const char *s, char *host, size_t hostlen, const char **port)
{
    const char *end;

    if (s[0] == '[') {
        end = strchr(s, ']');
        if (end == NULL || end[1] != ':') {
            return -1;
        }
        s++;
        *port = end + 2;
    } else {
        end = strchr(s, ':');
        /* A second colon means an IPv6 literal without brackets: its port is ambiguous. */
        if (end == NULL || strchr(end + 1, ':') != NULL) {
            return -1;
        }
        *port = end + 1;
    }
    size_t n = (size_t)(end - s);
    if (n >= hostlen) {
        return -1;
    }
    memcpy(host, s, n);
    host[n] = '\0';
    return 0;
}

int cfg_hostport_parse(const char *s, bool allow_empty_host, struct cfg_hostport *out)
{
    char host[NAME_MAX_LEN + 1];
    const char *port_s;
    uint64_t port;

    if (s == NULL || out == NULL || do_split_hostport(s, host, sizeof(host), &port_s) != 0) {
        return -1;
    }
    if (cfg_parse_uint(port_s, CFG_MAX_PORT, &port) != 0) {
        return -1;
    }
    if (s[0] == '[') {
        if (cfg_ip_family(host) != 6) {
            return -1;
        }
    } else if (host[0] == '\0') {
        if (!allow_empty_host) {
            return -1;
        }
    } else if (!cfg_valid_endpoint_host(host)) {
        return -1;
    }
    char *copy = cfg_strdup(host);
    if (copy == NULL) {
        return -ENOMEM;
    }
    out->host = copy;
    out->port = (uint16_t)port;
    return 0;
}

int cfg_parse_hostport(const char *s, bool allow_empty_host, struct cfg_hostport *out)
{
    return cfg_hostport_parse(s, allow_empty_host, out) == 0 ? 0 : -1;
}

const char *cfg_check_upstream(const char *s, struct cfg_hostport *out)
{
    int rc = cfg_hostport_parse(s, false, out);

    if (rc == -ENOMEM) {
        return "out of memory";
    }
    if (rc != 0) {
        return "expected \"host:port\"";
    }
    if (out->port == 0) {
        free(out->host);
        out->host = NULL;
        return "expected a port from 1 to 65535";
    }
    return NULL;
}

/* Whether every bit of addr from bit prefix on is zero. */
static bool do_host_bits_clear(const uint8_t *addr, size_t len, unsigned prefix)
{
    for (size_t i = prefix / 8; i < len; i++) {
        unsigned keep = i == prefix / 8 ? prefix % 8 : 0;
        uint8_t mask = (uint8_t)(0xffu >> keep);
        if ((addr[i] & mask) != 0) {
            return false;
        }
    }
    return true;
}

const char *cfg_check_cidr(const char *s, struct cfg_cidr *out)
{
    static const char expected[] = "expected an IP address or a network such as \"10.0.0.0/8\"";
    char addr[64];
    const char *slash = s != NULL ? strchr(s, '/') : NULL;
    size_t n = s == NULL ? 0 : slash != NULL ? (size_t)(slash - s) : strlen(s);
    uint64_t prefix;

    if (s == NULL || n == 0 || n >= sizeof(addr)) {
        return expected;
    }
    memcpy(addr, s, n);
    addr[n] = '\0';
    memset(out, 0, sizeof(*out));
    out->family = cfg_ip_family(addr);
    if (out->family == 0) {
        return expected;
    }
    unsigned max = out->family == 4 ? 32 : 128;
    (void)inet_pton(out->family == 4 ? AF_INET : AF_INET6, addr, out->addr);
    prefix = max;
    if (slash != NULL && cfg_parse_uint(slash + 1, max, &prefix) != 0) {
        return out->family == 4 ? "expected a prefix length from 0 to 32"
                                : "expected a prefix length from 0 to 128";
    }
    out->prefix = (unsigned)prefix;
    if (!do_host_bits_clear(out->addr, out->family == 4 ? 4 : 16, out->prefix)) {
        return "expected a network address: bits are set after the prefix length";
    }
    return NULL;
}

const char *cfg_check_admin_listen(const char *s, struct cfg_admin *out)
{
    struct cfg_hostport hp = {0};

    if (s != NULL && strcmp(s, "off") == 0) {
        free(out->listen.host);
        out->listen.host = NULL;
        out->listen.port = 0;
        out->enabled = false;
        return NULL;
    }
    int rc = cfg_hostport_parse(s, true, &hp);
    if (rc == -ENOMEM) {
        return "out of memory";
    }
    if (rc != 0) {
        return "expected \"host:port\" or \"off\"";
    }
    /* An empty host would bind every address; the API has no authentication, so moat
     * never picks that for the user. */
    const char *why = NULL;
    if (hp.host[0] == '\0') {
        why = "the admin API has no authentication; name a loopback address such as "
              "\"127.0.0.1:2019\"";
    } else if (strcasecmp(hp.host, "localhost") == 0) {
        /* Resolved now so the listener never depends on /etc/hosts or DNS. */
        free(hp.host);
        hp.host = cfg_strdup("127.0.0.1");
        why = hp.host == NULL ? "out of memory" : NULL;
    } else if (cfg_ip_family(hp.host) == 0) {
        why = "expected an IP address or \"localhost\" as the host";
    }
    if (why != NULL) {
        free(hp.host);
        return why;
    }
    free(out->listen.host);
    out->listen = hp;
    out->enabled = true;
    return NULL;
}

const char *cfg_check_user(const char *s)
{
    static const char expected[] = "expected a user name or a numeric uid";
    size_t len = s != NULL ? strlen(s) : 0;
    uint64_t uid;

    if (len == 0 || len > USER_MAX_LEN || s[0] == '-') {
        return expected;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || c == '/' || c == ':') {
            return expected;
        }
    }
    if (strspn(s, "0123456789") == len && cfg_parse_uint(s, UID_MAX_VALUE, &uid) != 0) {
        return "expected a uid from 0 to 4294967294";
    }
    return NULL;
}

const char *cfg_check_health_host(const char *s)
{
    static const char expected[] =
        "expected a host name or IP address ([v6] in brackets), optionally with \":port\"";
    char host[NAME_MAX_LEN + 1];
    const char *end, *port = NULL;
    uint64_t n;

    if (s == NULL || s[0] == '\0') {
        return expected;
    }
    bool v6 = s[0] == '[';
    if (v6) {
        end = strchr(s, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':')) {
            return expected;
        }
        port = end[1] == ':' ? end + 2 : NULL;
        s++;
    } else {
        end = strchr(s, ':');
        port = end != NULL ? end + 1 : NULL;
        end = end != NULL ? end : s + strlen(s);
    }
    size_t len = (size_t)(end - s);
    if (len == 0 || len >= sizeof(host)) {
        return expected;
    }
    memcpy(host, s, len);
    host[len] = '\0';
    bool host_ok =
        v6 ? cfg_ip_family(host) == 6 : cfg_ip_family(host) == 4 || cfg_valid_dns_name(host, true);
    /* A bare IPv6 literal fails here too: its second colon makes the port unreadable. */
    if (!host_ok) {
        return expected;
    }
    if (port != NULL && (cfg_parse_uint(port, CFG_MAX_PORT, &n) != 0 || n == 0)) {
        return expected;
    }
    return NULL;
}

const char *cfg_check_health_path(const char *s)
{
    if (s == NULL || s[0] != '/') {
        return "expected a path starting with \"/\"";
    }
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= ' ' || c >= 0x7f) {
            return "expected a path without spaces or control characters";
        }
    }
    return NULL;
}
