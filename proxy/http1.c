/* http1.c - head capture, line-ending checks and header rewriting for HTTP/1.1. */
#include "http1.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void px_head_reset(struct px_head *h, char *raw, size_t cap)
{
    /* hdrs[] is not cleared: only the first n_hdrs entries are ever read. */
    h->raw = raw;
    h->len = 0;
    h->cap = cap;
    h->target.off = 0;
    h->target.len = 0;
    h->n_hdrs = 0;
    h->last = 0;
    h->overflow = false;
}

static int do_append(struct px_head *h, const char *p, size_t n)
{
    if (h->len + n > h->cap) {
        h->overflow = true;
        return -1;
    }
    memcpy(h->raw + h->len, p, n);
    h->len += n;
    return 0;
}

int px_head_on_target(struct px_head *h, const char *p, size_t n)
{
    if (h->target.len == 0) {
        h->target.off = (uint32_t)h->len;
    }
    if (do_append(h, p, n) != 0) {
        return -1;
    }
    h->target.len += (uint32_t)n;
    return 0;
}

int px_head_on_field(struct px_head *h, const char *p, size_t n)
{
    if (h->last != 1) {
        if (h->n_hdrs == PX_MAX_HEADERS) {
            h->overflow = true;
            return -1;
        }
        struct px_hdr *hd = &h->hdrs[h->n_hdrs++];
        hd->name.off = (uint32_t)h->len;
        hd->name.len = 0;
        hd->value.off = (uint32_t)h->len;
        hd->value.len = 0;
        h->last = 1;
    }
    if (do_append(h, p, n) != 0) {
        return -1;
    }
    h->hdrs[h->n_hdrs - 1].name.len += (uint32_t)n;
    return 0;
}

int px_head_on_value(struct px_head *h, const char *p, size_t n)
{
    if (h->n_hdrs == 0) {
        return -1;
    }
    struct px_hdr *hd = &h->hdrs[h->n_hdrs - 1];
    if (h->last != 2) {
        hd->value.off = (uint32_t)h->len;
        hd->value.len = 0;
        h->last = 2;
    }
    if (do_append(h, p, n) != 0) {
        return -1;
    }
    hd->value.len += (uint32_t)n;
    return 0;
}

static bool do_name_is(const struct px_head *h, const struct px_hdr *hd, const char *name)
{
    size_t n = strlen(name);
    return hd->name.len == n && strncasecmp(h->raw + hd->name.off, name, n) == 0;
}

static const char *do_trim(const char *v, size_t *len)
{
    while (*len > 0 && (v[0] == ' ' || v[0] == '\t')) {
        v++;
        (*len)--;
    }
    while (*len > 0 && (v[*len - 1] == ' ' || v[*len - 1] == '\t')) {
        (*len)--;
    }
    return v;
}

const char *px_head_get(const struct px_head *h, const char *name, size_t *len, size_t *count)
{
    const char *found = NULL;
    size_t n = 0;
    for (size_t i = 0; i < h->n_hdrs; i++) {
        const struct px_hdr *hd = &h->hdrs[i];
        if (!do_name_is(h, hd, name)) {
            continue;
        }
        if (n++ == 0) {
            *len = hd->value.len;
            found = do_trim(h->raw + hd->value.off, len);
        }
    }
    if (count != NULL) {
        *count = n;
    }
    return found;
}

static bool do_token_list_has(const char *v, size_t len, const char *token, size_t tlen)
{
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && v[i] != ',') {
            i++;
        }
        size_t elen = i - start;
        const char *e = do_trim(v + start, &elen);
        if (elen == tlen && strncasecmp(e, token, tlen) == 0) {
            return true;
        }
        i++; /* past the comma */
    }
    return false;
}

bool px_token_list_has(const char *v, size_t len, const char *token)
{
    return do_token_list_has(v, len, token, strlen(token));
}

long px_eol_scan(struct px_eol_scan *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)p[i];
        if (c == '\n') {
            if (s->prev != '\r') {
                return -1;
            }
            if (s->blank) {
                s->done = 1;
                s->prev = c;
                return (long)(i + 1);
            }
            s->at_bol = 1;
            s->blank = 1;
        } else if (c != '\r') {
            if (s->at_bol && s->blank && (c == ' ' || c == '\t')) {
                return -1; /* obs-fold: a continuation line */
            }
            s->blank = 0;
        } else if (s->prev == '\r') {
            return -1; /* CR CR */
        }
        s->prev = c;
    }
    return (long)n;
}

/* Headers that describe one hop and must not travel further. */
static const char *const hop_by_hop[] = {
    "connection",        "keep-alive",     "proxy-connection", "te",
    "trailer",           "transfer-encoding", "upgrade",       "content-length",
    "http2-settings",
};

/* Every Connection line counts: together they form one list (RFC 9110, 7.6.1). */
static bool do_named_in_connection(const struct px_head *h, const struct px_hdr *hd)
{
    for (size_t i = 0; i < h->n_hdrs; i++) {
        const struct px_hdr *c = &h->hdrs[i];
        if (do_name_is(h, c, "connection") &&
            do_token_list_has(h->raw + c->value.off, c->value.len, h->raw + hd->name.off,
                              hd->name.len)) {
            return true;
        }
    }
    return false;
}

static bool do_is_hop(const struct px_head *h, const struct px_hdr *hd)
{
    for (size_t i = 0; i < sizeof(hop_by_hop) / sizeof(hop_by_hop[0]); i++) {
        if (do_name_is(h, hd, hop_by_hop[i])) {
            return true;
        }
    }
    return do_named_in_connection(h, hd);
}

/* An output cursor that remembers running out of room instead of checking every call. */
struct out {
    char *p;
    size_t len;
    size_t cap;
    bool full;
};

static void do_put(struct out *o, const char *s, size_t n)
{
    if (o->full || o->len + n > o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void do_puts(struct out *o, const char *s)
{
    do_put(o, s, strlen(s));
}

static void do_put_header(struct out *o, const struct px_head *h, const struct px_hdr *hd)
{
    size_t vlen = hd->value.len;
    const char *v = do_trim(h->raw + hd->value.off, &vlen);
    do_put(o, h->raw + hd->name.off, hd->name.len);
    do_put(o, ": ", 2);
    do_put(o, v, vlen);
    do_put(o, "\r\n", 2);
}

static void do_put_framing(struct out *o, enum px_body body, uint64_t length)
{
    if (body == PX_BODY_LENGTH) {
        char num[24];
        size_t i = sizeof(num);
        do {
            num[--i] = (char)('0' + length % 10);
            length /= 10;
        } while (length > 0);
        do_puts(o, "Content-Length: ");
        do_put(o, num + i, sizeof(num) - i);
        do_puts(o, "\r\n");
    } else if (body == PX_BODY_CHUNKED) {
        do_puts(o, "Transfer-Encoding: chunked\r\n");
    }
}

/* X-Forwarded-*: a trusted peer's values are kept (and For extended); anyone else's are
 * replaced, so a client cannot claim another address. */
static void do_put_forwarded(struct out *o, const struct px_head *h, const struct px_fwd *f)
{
    size_t len = 0;
    const char *v;
    do_puts(o, "X-Forwarded-For: ");
    for (size_t i = 0; f->trusted_peer && i < h->n_hdrs; i++) {
        const struct px_hdr *hd = &h->hdrs[i];
        len = hd->value.len;
        v = do_trim(h->raw + hd->value.off, &len);
        if (do_name_is(h, hd, "x-forwarded-for") && len > 0) {
            do_put(o, v, len); /* several lines form one list, in order */
            do_puts(o, ", ");
        }
    }
    do_puts(o, f->client_ip);
    do_puts(o, "\r\nX-Forwarded-Proto: ");
    v = f->trusted_peer ? px_head_get(h, "x-forwarded-proto", &len, NULL) : NULL;
    if (v != NULL && len > 0) {
        do_put(o, v, len);
    } else {
        do_puts(o, f->proto);
    }
    do_puts(o, "\r\n");
    v = f->trusted_peer ? px_head_get(h, "x-forwarded-host", &len, NULL) : NULL;
    if (v == NULL || len == 0) {
        v = px_head_get(h, "host", &len, NULL);
    }
    if (v != NULL) {
        do_puts(o, "X-Forwarded-Host: ");
        do_put(o, v, len);
        do_puts(o, "\r\n");
    }
}

static bool do_is_forwarded(const struct px_head *h, const struct px_hdr *hd)
{
    return do_name_is(h, hd, "x-forwarded-for") || do_name_is(h, hd, "x-forwarded-proto") ||
           do_name_is(h, hd, "x-forwarded-host");
}

size_t px_http_request_head(const struct px_head *h, const struct px_fwd *f, char *out,
                            size_t cap)
{
    struct out o = {out, 0, cap, false};
    do_puts(&o, f->method);
    do_put(&o, " ", 1);
    do_put(&o, h->raw + h->target.off, h->target.len);
    do_puts(&o, " HTTP/1.1\r\n");
    for (size_t i = 0; i < h->n_hdrs; i++) {
        const struct px_hdr *hd = &h->hdrs[i];
        if (do_is_hop(h, hd) || do_is_forwarded(h, hd)) {
            continue;
        }
        do_put_header(&o, h, hd);
    }
    if (f->upgrade) {
        size_t ulen = 0;
        const char *up = px_head_get(h, "upgrade", &ulen, NULL);
        do_puts(&o, "Connection: upgrade\r\nUpgrade: ");
        do_put(&o, up != NULL ? up : "", up != NULL ? ulen : 0);
        do_puts(&o, "\r\n");
    }
    do_put_framing(&o, f->body, f->content_length);
    do_put_forwarded(&o, h, f);
    do_puts(&o, "\r\n");
    return o.full ? 0 : o.len;
}

size_t px_http_response_head(const struct px_head *h, const struct px_resp *r, char *out,
                             size_t cap)
{
    struct out o = {out, 0, cap, false};
    char line[64];
    snprintf(line, sizeof(line), "HTTP/1.1 %d ", r->status);
    do_puts(&o, line);
    if (h->target.len > 0) {
        do_put(&o, h->raw + h->target.off, h->target.len);
    } else {
        do_puts(&o, px_http_reason(r->status));
    }
    do_puts(&o, "\r\n");
    for (size_t i = 0; i < h->n_hdrs; i++) {
        const struct px_hdr *hd = &h->hdrs[i];
        if (!do_is_hop(h, hd)) {
            do_put_header(&o, h, hd);
        }
    }
    if (r->upgrade) {
        size_t ulen = 0;
        const char *up = px_head_get(h, "upgrade", &ulen, NULL);
        do_puts(&o, "Connection: upgrade\r\nUpgrade: ");
        do_put(&o, up != NULL ? up : "", up != NULL ? ulen : 0);
        do_puts(&o, "\r\n");
    } else if (r->close) {
        do_puts(&o, "Connection: close\r\n");
    }
    do_put_framing(&o, r->body, r->content_length);
    do_puts(&o, "\r\n");
    return o.full ? 0 : o.len;
}

const char *px_http_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 304: return "Not Modified";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 421: return "Misdirected Request";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

size_t px_http_simple_response(int status, const char *location, bool keep_alive, char *out,
                               size_t cap)
{
    char body[128];
    int blen = snprintf(body, sizeof(body), "%d %s\n", status, px_http_reason(status));
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n%s%s%s%sContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %d\r\n%s\r\n%s",
                     status, px_http_reason(status), location != NULL ? "Location: " : "",
                     location != NULL ? location : "", location != NULL ? "\r\n" : "",
                     /* every upstream is down: health checks decide within seconds */
                     status == 503 ? "Retry-After: 1\r\n" : "", blen,
                     keep_alive ? "" : "Connection: close\r\n", body);
    if (n < 0 || (size_t)n >= cap) {
        return 0;
    }
    return (size_t)n;
}
