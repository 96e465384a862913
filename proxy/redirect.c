/* redirect.c - the plain-HTTP listener's answer: a permanent redirect to https. */
#include <stdio.h>
#include <string.h>

#include "conn_int.h"

#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"

/* HTTP-01: the key authorization for a pending token, else 404 (a redirect would only
 * send the CA to a certificate that does not exist yet). */
static int do_challenge(struct px_conn *c, const char *token, size_t len, bool asked)
{
    struct px_req *r = &c->req;
    char ka[512];
    size_t n = acme_http01_answer(c->w->srv->acme, token, len, ka, sizeof(ka));
    if (n == 0 && !asked && px_bridge_ask(c, PX_ASK_HTTP_CHALLENGE, r->rb->host) == 0) {
        /* Maybe another instance sharing storage ordered it: the control thread looks. */
        px_conn_stop_reading(c);
        llhttp_set_error_reason(&c->parser, "waiting for a stored challenge");
        return -1;
    }
    char buf[1024];
    size_t out;
    if (n == 0) {
        r->status = 404;
        out = px_http_simple_response(404, NULL, false, buf, sizeof(buf));
    } else {
        r->status = 200;
        int k = snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n%s", n, ka);
        out = k > 0 && (size_t)k < sizeof(buf) ? (size_t)k : 0;
    }
    r->resp_started = true;
    r->bytes_out = out;
    px_conn_write(c, buf, out);
    px_req_log_access(c);
    px_conn_finish(c);
    llhttp_set_error_reason(&c->parser, "challenge answered");
    return -1;
}

int px_req_plain(struct px_conn *c)
{
    struct px_req *r = &c->req;
    const struct px_head *h = &r->rb->head;
    size_t plen = strlen(CHALLENGE_PREFIX);
    r->site = px_router_site(c->gen->router, r->rb->host, strlen(r->rb->host)); /* metrics */
    if (c->w->srv->acme != NULL && h->target.len > plen &&
        memcmp(h->raw + h->target.off, CHALLENGE_PREFIX, plen) == 0) {
        return do_challenge(c, h->raw + h->target.off + plen, h->target.len - plen, false);
    }
    uint16_t port = c->gen->https_port;
    char location[2048];
    char portpart[8] = "";
    if (port != 443 && port != 0) {
        snprintf(portpart, sizeof(portpart), ":%u", port);
    }
    int n = snprintf(location, sizeof(location), "https://%s%s%.*s", r->rb->host, portpart,
                     (int)h->target.len, h->raw + h->target.off);
    if (n < 0 || (size_t)n >= sizeof(location) || h->target.len == 0 ||
        h->raw[h->target.off] != '/') {
        r->status = 400;
        llhttp_set_error_reason(&c->parser, "cannot redirect this target");
        return -1;
    }
    char buf[2300];
    size_t len = px_http_simple_response(308, location, false, buf, sizeof(buf));
    r->status = 308;
    r->resp_started = true;
    r->bytes_out = len;
    px_conn_write(c, buf, len);
    px_req_log_access(c);
    px_conn_finish(c);
    llhttp_set_error_reason(&c->parser, "redirected");
    return -1;
}

void px_req_plain_answered(struct px_conn *c)
{
    const struct px_head *h = &c->req.rb->head;
    size_t plen = strlen(CHALLENGE_PREFIX);
    do_challenge(c, h->raw + h->target.off + plen, h->target.len - plen, true);
    if (c->state != PX_CONN_CLOSED) {
        px_req_flush(c);
    }
}
