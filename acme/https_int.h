/* https_int.h - the parsed URL and the request bytes, shared by https.c (the connection)
 * and https_url.c (parsing and building); nothing outside those two files includes it. */
#ifndef MOAT_ACME_HTTPS_INT_H
#define MOAT_ACME_HTTPS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acme_int.h"

/* A request's URL taken apart. path points into the URL it was parsed from. */
struct acme_http_url {
    bool tls;
    uint16_t port;
    char host[256];   /* without brackets */
    const char *path; /* into the URL: path and query, without the fragment */
    size_t path_len;
};

/* Parses an http:// or https:// URL: host name or [IPv6] literal, optional port, no user
 * info, no white space or control characters. 0, or -1 when it is none of ours. */
int acme_http_parse_url(const char *url, struct acme_http_url *u);

/* Whether s is a non-empty method name of letters and '-' only. */
bool acme_http_is_token(const char *s);

/* The request head (Host, User-Agent, Accept, Content-Type and Content-Length as needed,
 * Connection: close) and body in one malloc'd buffer set into *out and *out_len (the caller
 * frees it). 0, or -1 when content_type could split the head, the path is too long, or out
 * of memory; *out is left alone then. */
int acme_http_build_request(const char *method, const struct acme_http_url *u,
                            const char *content_type, const char *body, size_t body_len, char **out,
                            size_t *out_len);

#endif
