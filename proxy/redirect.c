/* redirect.c - the plain-HTTP listener's answer: a permanent redirect to https. */
#include <stdio.h>
#include <string.h>

#include "conn_int.h"

int px_req_plain(struct px_conn *c)
{
    struct px_req *r = &c->req;
    const struct px_head *h = &r->rb->head;
    uint16_t port = c->w->srv->https_port;
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
