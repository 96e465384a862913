/* https_url.c - the URL of an ACME HTTP request taken apart, and the request bytes built
 * from it: scheme, host or IP literal and port checked, the head and body in one buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "https_int.h"

#define HTTP_USER_AGENT "moat/" MOAT_VERSION
/* method, "/" when the target starts with '?', the target, host[:port], Content-Type and
 * Content-Length lines (each possibly empty) */
#define HTTP_REQUEST_HEAD                                                                  \
    "%s %s%.*s HTTP/1.1\r\nHost: %s\r\nUser-Agent: " HTTP_USER_AGENT                         \
    "\r\nAccept: */*\r\n%s%sConnection: close\r\n\r\n"

static int do_parse_port(const char *p, const char *end, uint16_t *port)
{
    unsigned long v = 0;
    if (p == end || end - p > 5) {
        return -1;
    }
    for (; p < end; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v == 0 || v > 65535) {
        return -1;
    }
    *port = (uint16_t)v;
    return 0;
}

static bool do_host_chars_ok(const char *host, bool bracketed)
{
    if (bracketed) {
        struct in6_addr a6;
        return uv_inet_pton(AF_INET6, host, &a6) == 0;
    }
    for (const char *c = host; *c != '\0'; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_';
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* The authority: host or [v6] and an optional :port. No user info: a CA URL never has it. */
static int do_parse_authority(const char *p, const char *end, struct acme_http_url *u)
{
    bool bracketed = *p == '[';
    const char *host = bracketed ? p + 1 : p;
    const char *host_end = memchr(host, bracketed ? ']' : ':', (size_t)(end - host));
    if (host_end == NULL) {
        if (bracketed) {
            return -1;
        }
        host_end = end;
    }
    p = bracketed ? host_end + 1 : host_end;
    size_t len = (size_t)(host_end - host);
    if (len == 0 || len >= sizeof(u->host)) {
        return -1;
    }
    memcpy(u->host, host, len);
    u->host[len] = '\0';
    if (!do_host_chars_ok(u->host, bracketed)) {
        return -1;
    }
    if (p < end) {
        if (*p != ':' || do_parse_port(p + 1, end, &u->port) != 0) {
            return -1;
        }
    }
    return 0;
}

int acme_http_parse_url(const char *url, struct acme_http_url *u)
{
    memset(u, 0, sizeof(*u));
    for (const char *c = url; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            return -1; /* white space or controls would split the request line */
        }
    }
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        u->tls = true;
        u->port = 443;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        u->port = 80;
        p = url + 7;
    } else {
        return -1;
    }
    const char *end = p + strcspn(p, "/?#");
    if (do_parse_authority(p, end, u) != 0) {
        return -1;
    }
    u->path = end;
    u->path_len = strcspn(end, "#");
    return 0;
}

bool acme_http_is_token(const char *s)
{
    if (s[0] == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '-')) {
            return false;
        }
    }
    return true;
}

/* The request head and body in one buffer: it goes out in one write (or one SSL_write). */
int acme_http_build_request(const char *method, const struct acme_http_url *u,
                            const char *content_type, const char *body, size_t body_len,
                            char **out, size_t *out_len)
{
    char hostport[300];
    bool v6 = strchr(u->host, ':') != NULL;
    bool default_port = u->port == (u->tls ? 443 : 80);
    snprintf(hostport, sizeof(hostport), "%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "");
    if (!default_port) {
        size_t n = strlen(hostport);
        snprintf(hostport + n, sizeof(hostport) - n, ":%u", (unsigned)u->port);
    }
    char ctype[300] = "";
    if (content_type != NULL) {
        if (strpbrk(content_type, "\r\n") != NULL || strlen(content_type) > 256) {
            return -1;
        }
        snprintf(ctype, sizeof(ctype), "Content-Type: %s\r\n", content_type);
    }
    char clen[64] = "";
    if (body_len > 0 || (strcasecmp(method, "GET") != 0 && strcasecmp(method, "HEAD") != 0)) {
        snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", body_len);
    }
    const char *path = u->path_len > 0 ? u->path : "/";
    int path_len = u->path_len > 0 ? (int)u->path_len : 1;
    const char *slash = path[0] == '?' ? "/" : "";
    int head = snprintf(NULL, 0, HTTP_REQUEST_HEAD, method, slash, path_len, path, hostport,
                        ctype, clen);
    if (head < 0 || u->path_len > 65536) {
        return -1;
    }
    *out = malloc((size_t)head + 1 + body_len);
    if (*out == NULL) {
        return -1;
    }
    snprintf(*out, (size_t)head + 1, HTTP_REQUEST_HEAD, method, slash, path_len, path, hostport,
             ctype, clen);
    if (body_len > 0) {
        memcpy(*out + head, body, body_len);
    }
    *out_len = (size_t)head + body_len;
    return 0;
}
