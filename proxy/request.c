/* request.c - HTTP/1.1 on a client connection: parsing requests with llhttp, refusing
 * ambiguous framing, routing, and relaying the upstream's response back. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn_int.h"

/* ---- output batching: everything one callback produces leaves in one write ---------- */

static void do_flush_client(struct px_worker *w)
{
    struct px_conn *c = w->out_owner;
    size_t n = w->outlen;
    w->outlen = 0;
    w->out_owner = NULL;
    if (c != NULL && n > 0 && c->state != PX_CONN_CLOSED) {
        px_conn_write(c, w->outbuf, n);
    }
}

static void do_out(struct px_conn *c, const char *p, size_t n)
{
    struct px_worker *w = c->w;
    if (w->out_owner != c || w->outlen + n > PX_OUT_BUF) {
        do_flush_client(w);
    }
    c->req.bytes_out += n;
    if (n > PX_OUT_BUF) {
        px_conn_write(c, p, n);
        return;
    }
    w->out_owner = c;
    memcpy(w->outbuf + w->outlen, p, n);
    w->outlen += n;
}

static void do_flush_upstream(struct px_worker *w)
{
    struct px_upconn *u = w->up_owner;
    size_t n = w->uplen;
    w->uplen = 0;
    w->up_owner = NULL;
    if (u != NULL && n > 0) {
        px_up_send(u, w->upbuf, n);
    }
}

static void do_up(struct px_conn *c, const char *p, size_t n)
{
    struct px_worker *w = c->w;
    struct px_upconn *u = c->req.up;
    if (u == NULL) {
        return;
    }
    if (w->up_owner != u || w->uplen + n > PX_OUT_BUF) {
        do_flush_upstream(w);
    }
    if (n > PX_OUT_BUF) {
        px_up_send(u, p, n);
        return;
    }
    w->up_owner = u;
    memcpy(w->upbuf + w->uplen, p, n);
    w->uplen += n;
}

void px_req_flush(struct px_conn *c)
{
    struct px_worker *w = c->w;
    if (w->up_owner != NULL && w->up_owner == c->req.up) {
        do_flush_upstream(w);
    }
    if (w->out_owner == c) {
        do_flush_client(w);
    }
    if (c->state == PX_CONN_CLOSED) {
        return;
    }
    /* Backpressure: stop reading the client while the upstream cannot keep up. */
    if (c->req.up != NULL && px_up_write_congested(c->req.up)) {
        c->read_paused = true;
        px_conn_stop_reading(c);
    }
}

void px_conn_flush(struct px_conn *c)
{
    px_req_flush(c);
    if (c->state != PX_CONN_CLOSED && c->req.up != NULL) {
        px_up_pause(c->req.up, px_conn_write_congested(c));
    }
}

/* ---- request state ------------------------------------------------------------------ */

void px_req_release(struct px_conn *c)
{
    struct px_req *r = &c->req;
    px_worker_reqbuf_put(c->w, r->rb);
    r->rb = NULL;
    free(r->up_head);
    r->up_head = NULL;
}

static void do_req_begin(struct px_conn *c)
{
    struct px_worker *w = c->w;
    px_req_release(c);
    memset(&c->req, 0, sizeof(c->req));
    if (c->gen != w->gen) {
        /* Between requests nothing of the old generation is in use: move to the newest. */
        px_gen_unref(c->gen);
        c->gen = px_gen_ref(w->gen);
    }
    c->req.start_ms = uv_now(&w->loop);
    c->req.rb = px_worker_reqbuf(w);
    if (c->req.rb == NULL) {
        px_conn_close(c, "out of memory");
        return;
    }
    px_conn_set_state(c, PX_CONN_HEAD);
    px_conn_arm_timer(c, c->gen->cfg->timeouts.request_head);
}

void px_req_log_access(struct px_conn *c)
{
    struct px_req *r = &c->req;
    if (r->status == 0 || r->rb == NULL) {
        return;
    }
    px_codes_count(r->site != NULL ? &r->site->stats->w[c->w->id] : &c->w->stats.unmatched,
                   r->status);
    if (!c->gen->cfg->access_log) {
        return;
    }
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "access");
    log_str(&l, "client", c->peer);
    log_str(&l, "host", r->rb->host);
    log_str(&l, "method", r->rb->method);
    log_str(&l, "path", r->rb->path);
    log_int(&l, "status", r->status);
    log_int(&l, "bytes_in", (int64_t)r->bytes_in);
    log_int(&l, "bytes_out", (int64_t)r->bytes_out);
    log_int(&l, "duration_ms", (int64_t)(uv_now(&c->w->loop) - r->start_ms));
    log_str(&l, "upstream", r->target != NULL ? r->target->label : "");
    if (c->tls != NULL) {
        log_str(&l, "tls", tls_conn_version(c->tls));
    }
    if (c->tls_wait_ms > 0) {
        log_int(&l, "tls_wait_ms", (int64_t)c->tls_wait_ms);
    }
    log_end(&l);
}

/* Answers with a status of our own and closes, unless a response already started, in
 * which case closing is all that is left to do. */
static void do_fail(struct px_conn *c, int status, const char *why)
{
    struct px_req *r = &c->req;
    px_req_abort_upstream(c);
    if (c->state == PX_CONN_CLOSED) {
        return;
    }
    if (r->resp_started) {
        px_conn_close(c, why);
        return;
    }
    r->status = status;
    log_msg(CFG_LOG_INFO, "request_failed", "%s %s%s: %d: %s", c->peer,
           r->rb != NULL ? r->rb->host : "", r->rb != NULL ? r->rb->path : "", status, why);
    char buf[512];
    size_t n = px_http_simple_response(status, NULL, false, buf, sizeof(buf));
    r->resp_started = true;
    do_out(c, buf, n);
    px_req_log_access(c);
    do_flush_client(c->w);
    px_conn_finish(c);
}

/* ---- llhttp request callbacks --------------------------------------------------------- */

static int on_target(llhttp_t *p, const char *at, size_t n)
{
    struct px_conn *c = p->data;
    return px_head_on_target(&c->req.rb->head, at, n) == 0 ? 0 : -1;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    struct px_conn *c = p->data;
    return px_head_on_field(&c->req.rb->head, at, n) == 0 ? 0 : -1;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    struct px_conn *c = p->data;
    return px_head_on_value(&c->req.rb->head, at, n) == 0 ? 0 : -1;
}

static void do_copy(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Host without its port, lower-cased, for routing and logs. */
static void do_host(struct px_conn *c, const char *v, size_t n)
{
    size_t end = n;
    if (n > 0 && v[0] == '[') {
        const char *close = memchr(v, ']', n);
        end = close != NULL ? (size_t)(close - v) + 1 : n;
    } else {
        const char *colon = memchr(v, ':', n);
        end = colon != NULL ? (size_t)(colon - v) : n;
    }
    do_copy(c->req.rb->host, sizeof(c->req.rb->host), v, end);
    for (char *s = c->req.rb->host; *s != '\0'; s++) {
        if (*s >= 'A' && *s <= 'Z') {
            *s = (char)(*s - 'A' + 'a');
        }
    }
}

/* The request framing rules: exactly one Host; Transfer-Encoding only as a lone "chunked"
 * and never beside Content-Length; at most one Content-Length. Anything else could be read
 * differently by the upstream, so it is refused. */
static const char *do_check_framing(struct px_conn *c)
{
    const struct px_head *h = &c->req.rb->head;
    size_t len = 0;
    size_t n_host = 0;
    size_t n_te = 0;
    size_t n_cl = 0;
    const char *host = px_head_get(h, "host", &len, &n_host);
    if (n_host != 1 || len == 0) {
        return "missing or repeated Host";
    }
    do_host(c, host, len);
    const char *te = px_head_get(h, "transfer-encoding", &len, &n_te);
    size_t cl_len = 0;
    px_head_get(h, "content-length", &cl_len, &n_cl);
    if (n_te > 0 && (n_te > 1 || len != 7 || strncasecmp(te, "chunked", 7) != 0)) {
        return "unsupported Transfer-Encoding";
    }
    if (n_te > 0 && n_cl > 0) {
        return "both Content-Length and Transfer-Encoding";
    }
    if (n_cl > 1) {
        return "repeated Content-Length";
    }
    return NULL;
}

static bool do_client_keep_alive(const struct px_conn *c)
{
    size_t len = 0;
    const char *conn = px_head_get(&c->req.rb->head, "connection", &len, NULL);
    if (c->parser.http_minor == 0) {
        return conn != NULL && px_token_list_has(conn, len, "keep-alive");
    }
    return conn == NULL || !px_token_list_has(conn, len, "close");
}

static bool do_retryable(const struct px_req *r, uint8_t method)
{
    return !r->has_body && (method == HTTP_GET || method == HTTP_HEAD ||
                            method == HTTP_OPTIONS || method == HTTP_PUT ||
                            method == HTTP_DELETE || method == HTTP_TRACE);
}

static const struct px_route *do_route(struct px_conn *c)
{
    const struct px_router *rt = c->gen->router;
    const struct px_site *site = px_router_site(rt, c->req.rb->host, strlen(c->req.rb->host));
    if (site == NULL && c->tls != NULL && tls_conn_sni(c->tls) != NULL) {
        const char *sni = tls_conn_sni(c->tls);
        site = px_router_site(rt, sni, strlen(sni));
    }
    /* A Host naming no site (an IP address, say) goes where clients without SNI go. */
    const char *fallback = c->w->srv->boot_cfg->tls.default_sni;
    if (site == NULL && fallback != NULL) {
        site = px_router_site(rt, fallback, strlen(fallback));
    }
    if (site == NULL && rt->n_sites == 1) {
        site = &rt->sites[0];
    }
    if (site == NULL) {
        return NULL;
    }
    c->req.site = site;
    const struct px_head *h = &c->req.rb->head;
    return px_site_route(site, h->raw + h->target.off, h->target.len);
}

/* Builds the upstream head and starts the exchange. Returns 0, or the status to answer. */
static int do_forward(struct px_conn *c)
{
    struct px_req *r = &c->req;
    const struct cfg *cfg = c->gen->cfg;
    r->route = do_route(c);
    if (r->route == NULL) {
        return r->site != NULL ? 404 : 421;
    }
    r->target = px_balance_pick(c->w, r->route);
    if (r->target == NULL) {
        return 503;
    }
    struct px_fwd f = {
        .method = r->rb->method,
        .client_ip = c->peer,
        .trusted_peer = px_peer_trusted(c, cfg),
        .proto = c->tls != NULL ? "https" : "http",
        .upgrade = r->upgrade,
        .body = r->body_chunked ? PX_BODY_CHUNKED
                                : (r->has_body ? PX_BODY_LENGTH : PX_BODY_NONE),
        .content_length = c->parser.content_length,
    };
    size_t cap = r->rb->head.len + 1024 + strlen(r->rb->host);
    r->up_head = malloc(cap);
    if (r->up_head == NULL) {
        return 500;
    }
    r->up_head_len = px_http_request_head(&r->rb->head, &f, r->up_head, cap);
    if (r->up_head_len == 0) {
        return 431;
    }
    if (px_up_dispatch(c, r->target, r->up_head, r->up_head_len, false) != 0) {
        return 502;
    }
    if (!do_retryable(r, c->parser.method)) {
        free(r->up_head);
        r->up_head = NULL;
    }
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct px_conn *c = p->data;
    struct px_req *r = &c->req;
    do_copy(r->rb->method, sizeof(r->rb->method), llhttp_method_name(p->method),
            strlen(llhttp_method_name(p->method)));
    const struct px_head *h = &r->rb->head;
    do_copy(r->rb->path, sizeof(r->rb->path), h->raw + h->target.off, h->target.len);
    r->is_head = p->method == HTTP_HEAD;
    const char *bad = p->http_major != 1 ? "unsupported HTTP version" : do_check_framing(c);
    if (bad != NULL) {
        r->why = bad;
        r->status = 400;
        return -1;
    }
    r->body_chunked = (p->flags & F_CHUNKED) != 0;
    r->has_body = r->body_chunked || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    r->keep_alive = do_client_keep_alive(c);
    r->upgrade = p->upgrade && p->method != HTTP_CONNECT;
    if (p->method == HTTP_CONNECT) {
        r->status = 405;
        r->why = "CONNECT is not supported";
        return -1;
    }
    if (c->tls == NULL) {
        return px_req_plain(c);
    }
    int status = do_forward(c);
    if (status != 0) {
        r->status = status;
        r->why = status == 421   ? "no site for this host"
                 : status == 404 ? "no route for this path"
                 : status == 503 ? "every upstream is down"
                                 : "cannot forward";
        return -1;
    }
    px_conn_set_state(c, PX_CONN_PROXY);
    px_deadline_clear(&c->timer);
    if (r->has_body) {
        px_conn_arm_timer(c, c->gen->cfg->timeouts.body_idle);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct px_conn *c = p->data;
    if (c->req.body_chunked) {
        char size[24];
        int k = snprintf(size, sizeof(size), "%zx\r\n", n);
        do_up(c, size, (size_t)k);
        do_up(c, at, n);
        do_up(c, "\r\n", 2);
    } else {
        do_up(c, at, n);
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct px_conn *c = p->data;
    c->req.req_done = true;
    if (c->req.body_chunked) {
        do_up(c, "0\r\n\r\n", 5);
    }
    /* Stop here: a pipelined request waits until this response is done. */
    return HPE_PAUSED;
}

void px_req_settings(llhttp_settings_t *s)
{
    llhttp_settings_init(s);
    s->on_url = on_target;
    s->on_header_field = on_field;
    s->on_header_value = on_value;
    s->on_headers_complete = on_headers_complete;
    s->on_body = on_body;
    s->on_message_complete = on_message_complete;
}

/* ---- input -------------------------------------------------------------------------- */

static void do_stash(struct px_conn *c, const char *p, size_t n)
{
    if (n == 0) {
        return;
    }
    char *bigger = realloc(c->stash, c->stash_len + n);
    if (bigger == NULL) {
        px_conn_close(c, "out of memory");
        return;
    }
    memcpy(bigger + c->stash_len, p, n);
    c->stash = bigger;
    c->stash_len += n;
    px_conn_stop_reading(c);
}

static int do_parse_error_status(struct px_conn *c, llhttp_errno_t err)
{
    if (c->req.rb->head.overflow) {
        return 431;
    }
    if (c->req.status != 0) {
        return c->req.status;
    }
    (void)err;
    return 400;
}

/* Runs llhttp over bytes that belong to the current request. Returns how many were used;
 * the rest belongs to a later request (or to the tunnel after an upgrade). */
static size_t do_execute(struct px_conn *c, const char *p, size_t n)
{
    if (c->state == PX_CONN_HEAD) {
        long head = px_eol_scan(&c->req.scan, p, n);
        if (head < 0) {
            do_fail(c, 400, "bare LF or folded header line");
            return n;
        }
    }
    c->req.bytes_in += n;
    llhttp_errno_t err = llhttp_execute(&c->parser, p, n);
    if (err == HPE_OK) {
        return n;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
        c->req.bytes_in -= n - used;
        return used;
    }
    /* llhttp replaces a reason set in a callback with its own "User callback error". */
    const char *why = llhttp_get_error_reason(&c->parser);
    if (c->req.rb != NULL && c->req.rb->head.overflow) {
        why = "request head too large";
    } else if (c->req.why != NULL) {
        why = c->req.why;
    }
    if (c->state == PX_CONN_PROXY) {
        do_fail(c, 400, why != NULL ? why : "malformed body");
    } else if (c->state != PX_CONN_CLOSED && !c->close_after_flush && c->ask == NULL) {
        do_fail(c, do_parse_error_status(c, err), why != NULL ? why : "malformed request");
    }
    return n;
}

void px_req_input(struct px_conn *c, const char *p, size_t n)
{
    while (n > 0 && c->state != PX_CONN_CLOSED && !c->close_after_flush && c->ask == NULL) {
        if (c->stash_len > 0 || (c->state == PX_CONN_PROXY && c->req.req_done)) {
            do_stash(c, p, n); /* the next request waits for this response */
            return;
        }
        if (c->state == PX_CONN_TUNNEL) {
            do_up(c, p, n);
            return;
        }
        if (c->state == PX_CONN_IDLE) {
            do_req_begin(c);
            if (c->state == PX_CONN_CLOSED) {
                return;
            }
        }
        size_t used = do_execute(c, p, n);
        p += used;
        n -= used;
    }
}

/* The response is complete: go back to idle and parse whatever the client pipelined. */
static void do_next_request(struct px_conn *c)
{
    px_req_release(c);
    px_conn_set_state(c, PX_CONN_IDLE);
    llhttp_resume(&c->parser);
    px_conn_arm_timer(c, c->gen->cfg->timeouts.keepalive_idle);
    if (c->stash_len > 0) {
        char *stash = c->stash;
        size_t n = c->stash_len;
        c->stash = NULL;
        c->stash_len = 0;
        px_req_input(c, stash, n);
        free(stash);
        if (c->state != PX_CONN_CLOSED) {
            px_req_flush(c);
        }
    }
    if (c->stash_len == 0 && !c->read_paused) {
        px_conn_resume_reading(c);
    }
}

void px_req_client_eof(struct px_conn *c)
{
    if (c->state == PX_CONN_PROXY && c->req.req_done && !c->req.resp_done) {
        c->req.keep_alive = false; /* answer, then close */
        px_conn_stop_reading(c);
        return;
    }
    px_conn_close(c, "client closed");
}

void px_req_client_drained(struct px_conn *c)
{
    if (c->req.up != NULL) {
        px_up_pause(c->req.up, false);
    }
}

void px_req_on_timer(struct px_conn *c)
{
    const struct cfg *cfg = c->gen->cfg;
    if (c->state == PX_CONN_HEAD) {
        do_fail(c, 408, "request head timeout");
        return;
    }
    uint64_t idle = uv_now(&c->w->loop) - c->last_activity;
    if (idle < cfg->timeouts.body_idle) {
        px_conn_arm_timer(c, cfg->timeouts.body_idle - idle);
        return;
    }
    do_fail(c, 504, "body idle timeout");
}

void px_req_abort_upstream(struct px_conn *c)
{
    struct px_upconn *u = c->req.up;
    if (u == NULL) {
        return;
    }
    c->req.up = NULL;
    if (c->w->up_owner == u) {
        c->w->up_owner = NULL;
        c->w->uplen = 0;
    }
    px_up_close(u, "client gone");
}

/* ---- the response, driven by the upstream --------------------------------------------- */

/* After a 101: bytes flow both ways untouched; what the client sent early goes first. */
static void do_enter_tunnel(struct px_conn *c)
{
    px_conn_set_state(c, PX_CONN_TUNNEL);
    if (c->stash_len > 0) {
        char *stash = c->stash;
        size_t len = c->stash_len;
        c->stash = NULL;
        c->stash_len = 0;
        do_up(c, stash, len);
        free(stash);
    }
    px_conn_resume_reading(c);
}

void px_conn_on_response_head(struct px_conn *c, const struct px_head *h, const llhttp_t *up)
{
    struct px_req *r = &c->req;
    int status = up->status_code;
    struct px_resp resp = {.status = status};
    free(r->up_head); /* a response began: no retry any more */
    r->up_head = NULL;
    if (status >= 100 && status < 200 && status != 101) {
        resp.body = PX_BODY_NONE;
        char buf[PX_RESP_HEAD_MAX];
        size_t n = px_http_response_head(h, &resp, buf, sizeof(buf));
        do_out(c, buf, n);
        return; /* interim; the final response follows */
    }
    r->status = status;
    r->resp_started = true;
    if (status == 101 && r->upgrade) {
        resp.upgrade = true;
        resp.body = PX_BODY_NONE;
    } else if (r->is_head || status == 204 || status == 304) {
        resp.body = (up->flags & F_CONTENT_LENGTH) ? PX_BODY_LENGTH : PX_BODY_NONE;
        resp.content_length = up->content_length;
    } else if (up->flags & F_CHUNKED) {
        resp.body = PX_BODY_CHUNKED;
    } else if (up->flags & F_CONTENT_LENGTH) {
        resp.body = PX_BODY_LENGTH;
        resp.content_length = up->content_length;
    } else if (c->parser.http_minor >= 1) {
        resp.body = PX_BODY_CHUNKED; /* re-frame an until-close body: keep-alive survives */
    } else {
        resp.body = PX_BODY_EOF;
    }
    r->resp_body = resp.body;
    /* A refused upgrade leaves the parser expecting tunnel bytes: start afresh. */
    resp.close = !r->keep_alive || c->w->draining || resp.body == PX_BODY_EOF ||
                 (!r->req_done && !r->upgrade) || (r->upgrade && !resp.upgrade);
    r->keep_alive = !resp.close;
    char buf[PX_RESP_HEAD_MAX];
    size_t n = px_http_response_head(h, &resp, buf, sizeof(buf));
    if (n == 0) {
        do_fail(c, 502, "response head too large");
        return;
    }
    do_out(c, buf, n);
    px_conn_arm_timer(c, c->gen->cfg->timeouts.body_idle);
    if (resp.upgrade) {
        do_enter_tunnel(c);
    }
}

void px_conn_on_response_body(struct px_conn *c, const char *p, size_t n)
{
    c->last_activity = uv_now(&c->w->loop);
    if (c->req.resp_body == PX_BODY_CHUNKED) {
        char size[24];
        int k = snprintf(size, sizeof(size), "%zx\r\n", n);
        do_out(c, size, (size_t)k);
        do_out(c, p, n);
        do_out(c, "\r\n", 2);
    } else {
        do_out(c, p, n);
    }
}

void px_conn_on_response_done(struct px_conn *c, bool upstream_reusable)
{
    struct px_req *r = &c->req;
    if (r->resp_body == PX_BODY_CHUNKED) {
        do_out(c, "0\r\n\r\n", 5);
    }
    r->resp_done = true;
    px_req_log_access(c);
    struct px_upconn *u = r->up;
    r->up = NULL;
    if (c->w->up_owner == u) {
        do_flush_upstream(c->w);
    }
    px_up_release(u, upstream_reusable && r->req_done);
    do_flush_client(c->w);
    if (c->state == PX_CONN_CLOSED) {
        return;
    }
    if (!r->keep_alive || !r->req_done || c->w->draining) {
        px_conn_finish(c);
        return;
    }
    do_next_request(c);
}

void px_conn_on_upstream_error(struct px_conn *c, int status, const char *why)
{
    struct px_req *r = &c->req;
    struct px_upconn *u = r->up;
    bool retry = u != NULL && u->reused && !u->got_bytes && r->up_head != NULL && !r->retried;
    r->up = NULL;
    if (u != NULL) {
        if (c->w->up_owner == u) {
            c->w->up_owner = NULL;
            c->w->uplen = 0;
        }
        px_up_close(u, why);
    }
    if (retry) {
        /* The pooled connection was closing under us; the request never reached the
         * application, so a fresh connection may carry it once. */
        r->retried = true;
        if (px_up_dispatch(c, r->target, r->up_head, r->up_head_len, true) == 0) {
            return;
        }
    }
    do_fail(c, status, why);
}

void px_conn_on_upstream_tunnel(struct px_conn *c, const char *p, size_t n)
{
    c->last_activity = uv_now(&c->w->loop);
    do_out(c, p, n);
}

void px_conn_upstream_drained(struct px_conn *c)
{
    if (c->read_paused) {
        c->read_paused = false;
        if (c->stash_len == 0) {
            px_conn_resume_reading(c);
        }
    }
}

bool px_peer_trusted(const struct px_conn *c, const struct cfg *cfg)
{
    if (cfg->n_trusted_proxies == 0) {
        return false;
    }
    uint8_t addr[16];
    if (inet_pton(AF_INET, c->peer, addr) == 1) {
        return cfg_cidr_match(cfg->trusted_proxies, cfg->n_trusted_proxies, 4, addr);
    }
    if (inet_pton(AF_INET6, c->peer, addr) == 1) {
        return cfg_cidr_match(cfg->trusted_proxies, cfg->n_trusted_proxies, 6, addr);
    }
    return false;
}
