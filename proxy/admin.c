/* admin.c - the admin endpoint: a small HTTP/1.1 server on the control loop answering
 * GET /healthz, /metrics, /certificates and POST /reload, one request per connection. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "proxy_int.h"

#define ADMIN_HEAD_MAX ((size_t)8 * 1024)  /* request line and headers; over it: 431 */
#define ADMIN_BODY_MAX ((size_t)64 * 1024) /* read and ignored; over it: 413 */
#define ADMIN_TIMEOUT_MS 10000             /* a whole exchange, from accept to the response */
#define ADMIN_MAX_CONNS 64                 /* more at once are closed on accept */
#define ADMIN_TARGET_MAX 1024              /* longer targets are cut; no route is that long */
#define ADMIN_READ_BUF ((size_t)16 * 1024)
#define ADMIN_RELOAD_ERR ((size_t)16 * 1024)

enum admin_state {
    ADMIN_READING = 0, /* reading the request */
    ADMIN_WRITING,     /* the response is being written */
    ADMIN_LINGER,      /* response sent and write side shut: discarding input until EOF */
    ADMIN_CLOSED,
};

static const char *const state_names[] = {"reading", "writing", "linger", "closed"};

/* One admin connection. Owned by its px_admin's list until closed, then by its handles'
 * close callbacks: the last one frees it. */
struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct px_admin *admin;
    struct admin_conn *prev;
    struct admin_conn *next;
    llhttp_t parser;
    enum admin_state state;
    int handles; /* open handles; freed when it reaches zero */
    size_t head_fed;
    uint64_t body_len;
    int refuse; /* a status the parser callbacks decided on (413) */
    bool method_known;
    bool headers_done;
    bool message_done;
    bool has_origin;
    bool field_is_origin;
    bool field_is_host;
    char host[80]; /* the Host header, when short enough to be one we accept */
    size_t host_len;
    char field[8]; /* the header name being read, enough to tell "Origin" */
    size_t field_len;
    char target[ADMIN_TARGET_MAX];
    size_t target_len;
    struct px_buf out; /* the response */
};

/* The listener and its connections. srv->admin owns it until px_admin_stop; the close
 * callbacks free it once the listener and every connection have closed. */
struct px_admin {
    uv_tcp_t tcp;
    struct px_server *srv;
    struct admin_conn *conns; /* open connections, closed ones leave the list */
    size_t n_open;            /* in the list */
    size_t n_alive;           /* not freed yet */
    bool stopped;
    bool listener_closed;
    char readbuf[ADMIN_READ_BUF]; /* every read on the loop; consumed before the next */
};

/* ---- lifecycle --------------------------------------------------------------------------- */

static void do_maybe_free(struct px_admin *a)
{
    if (a->stopped && a->listener_closed && a->n_alive == 0) {
        free(a);
    }
}

static void do_set_state(struct admin_conn *c, enum admin_state s)
{
    if (log_enabled(CFG_LOG_DEBUG)) {
        struct log_line l;
        log_begin(&l, CFG_LOG_DEBUG, "admin_conn_state");
        log_str(&l, "from", state_names[c->state]);
        log_str(&l, "to", state_names[s]);
        log_end(&l);
    }
    c->state = s;
}

static void on_conn_closed(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    if (--c->handles > 0) {
        return;
    }
    struct px_admin *a = c->admin;
    px_buf_free(&c->out);
    free(c);
    a->n_alive--;
    do_maybe_free(a);
}

/* Idempotent. A write or shutdown in flight gets its callback with UV_ECANCELED before the
 * handles' close callbacks run, so the connection is still there when it does. */
static void do_close(struct admin_conn *c, const char *reason)
{
    if (c->state == ADMIN_CLOSED) {
        return;
    }
    if (log_enabled(CFG_LOG_DEBUG)) {
        log_msg(CFG_LOG_DEBUG, "admin_conn_close", "%s", reason);
    }
    do_set_state(c, ADMIN_CLOSED);
    struct px_admin *a = c->admin;
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        a->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    a->n_open--;
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_timeout(uv_timer_t *t)
{
    struct admin_conn *c = t->data;
    do_close(c, c->state == ADMIN_LINGER ? "linger over" : "timed out");
}

/* ---- responses --------------------------------------------------------------------------- */

/* What a route answers: the body is owned here and freed by do_respond. */
struct admin_resp {
    int status;
    const char *type;
    const char *allow; /* the Allow header of a 405, or NULL */
    struct px_buf body;
};

static void do_text(struct admin_resp *r, int status, const char *text)
{
    r->status = status;
    r->type = "text/plain; charset=utf-8";
    px_buf_append(&r->body, text, strlen(text));
}

static void on_written(uv_write_t *req, int status);

/* The request path without query or fragment, for routing and the log. */
static size_t do_path(const struct admin_conn *c, const char **path)
{
    const char *p = c->target;
    size_t n = c->target_len;
    /* absolute-form ("http://host/path", RFC 9112 3.2.2): routing looks at the path only */
    if (n > 7 && (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0)) {
        const char *slash = memchr(p + 8, '/', n - 8);
        const char *end = p + n;
        p = slash != NULL ? slash : end;
        n = (size_t)(end - p);
    }
    size_t len = 0;
    while (len < n && p[len] != '?' && p[len] != '#') {
        len++;
    }
    *path = p;
    return len;
}

static void do_log_request(const struct admin_conn *c, int status)
{
    if (!log_enabled(CFG_LOG_DEBUG)) {
        return;
    }
    const char *path = "";
    size_t path_len = do_path(c, &path);
    struct log_line l;
    log_begin(&l, CFG_LOG_DEBUG, "admin_request");
    log_str(&l, "method", c->method_known ? llhttp_method_name(c->parser.method) : "");
    log_strn(&l, "path", path, path_len);
    log_int(&l, "status", status);
    log_end(&l);
}

/* Writes the response and shuts the connection down after it: one request per connection,
 * so nothing the client sends later is ever read as a request. */
static void do_respond(struct admin_conn *c, struct admin_resp *r)
{
    if (r->body.oom) {
        px_buf_free(&r->body);
        do_text(r, 500, "out of memory\n");
        r->allow = NULL;
    }
    do_log_request(c, r->status);
    bool head = c->method_known && c->parser.method == HTTP_HEAD;
    px_buf_printf(&c->out,
                  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                  "Cache-Control: no-store\r\nConnection: close\r\n",
                  r->status, px_http_reason(r->status), r->type, r->body.len);
    if (r->allow != NULL) {
        px_buf_printf(&c->out, "Allow: %s\r\n", r->allow);
    }
    px_buf_append(&c->out, "\r\n", 2);
    if (!head && r->body.len > 0) {
        px_buf_append(&c->out, r->body.p, r->body.len);
    }
    px_buf_free(&r->body);
    if (c->out.oom) {
        do_close(c, "out of memory");
        return;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    do_set_state(c, ADMIN_WRITING);
    uv_buf_t b = uv_buf_init(c->out.p, (unsigned)c->out.len);
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc != 0) {
        do_close(c, uv_strerror(rc));
    }
}

static void do_respond_text(struct admin_conn *c, int status, const char *text)
{
    struct admin_resp r = {0};
    do_text(&r, status, text);
    do_respond(c, &r);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct admin_conn *c = req->data;
    if (status < 0 && c->state != ADMIN_CLOSED) {
        do_close(c, uv_strerror(status));
    }
}

/* The response is out: shut the write side and read until the client closes, so a client
 * still sending (an over-long head, say) gets the response instead of a reset. */
static void on_written(uv_write_t *req, int status)
{
    struct admin_conn *c = req->data;
    if (c->state == ADMIN_CLOSED) {
        return;
    }
    if (status < 0) {
        do_close(c, uv_strerror(status));
        return;
    }
    do_set_state(c, ADMIN_LINGER);
    uv_timer_start(&c->timer, on_timeout, PX_LINGER_MS, 0);
    int rc = uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown);
    if (rc == 0) {
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (rc != 0) {
        do_close(c, uv_strerror(rc));
    }
}

/* ---- routes ------------------------------------------------------------------------------ */

/* The control loop already runs while start-up waits for the first DNS answers, before any
 * worker serves (srv->workers is set just before they start). */
static bool do_starting(const struct px_server *srv)
{
    return srv->workers == NULL;
}

static void on_healthz(struct px_admin *a, struct admin_resp *r)
{
    if (do_starting(a->srv)) {
        do_text(r, 503, "starting\n");
    } else if (a->srv->stopping) {
        do_text(r, 503, "draining\n");
    } else {
        do_text(r, 200, "ok\n");
    }
}

static void on_metrics(struct px_admin *a, struct admin_resp *r)
{
    r->status = 200;
    r->type = "text/plain; version=0.0.4; charset=utf-8";
    px_metrics_render(a->srv, &r->body);
}

static void on_certificates(struct px_admin *a, struct admin_resp *r)
{
    r->status = 200;
    r->type = "application/json";
    px_admin_certificates(a->srv, &r->body);
}

/* {"status":"refused","errors":[...]}: one error per non-empty line of text. */
static void do_refused(struct admin_resp *r, int status, const char *text)
{
    r->status = status;
    r->type = "application/json";
    px_buf_append(&r->body, "{\"status\":\"refused\",\"errors\":[", 30);
    size_t n = 0;
    while (*text != '\0') {
        const char *eol = strchr(text, '\n');
        size_t len = eol != NULL ? (size_t)(eol - text) : strlen(text);
        if (len > 0) {
            char *line = strndup(text, len);
            if (line == NULL) {
                r->body.oom = true;
                return;
            }
            px_buf_append(&r->body, ",", n > 0 ? 1 : 0);
            px_buf_json_str(&r->body, line);
            free(line);
            n++;
        }
        text += len + (eol != NULL ? 1 : 0);
    }
    if (n == 0) {
        px_buf_json_str(&r->body, "the new configuration was refused");
    }
    px_buf_append(&r->body, "]}\n", 3);
}

static void on_reload(struct px_admin *a, struct admin_resp *r)
{
    static char err[ADMIN_RELOAD_ERR]; /* control thread only; too big for the stack */
    err[0] = '\0';
    if (do_starting(a->srv)) {
        /* a new generation now would race the start-up still building the first one */
        do_refused(r, 503, "still starting: try again once moat logged \"ready\"");
        return;
    }
    int rc = px_server_reload(a->srv, "admin", err, sizeof(err));
    if (rc == 0) {
        r->status = 200;
        r->type = "application/json";
        px_buf_printf(&r->body, "{\"status\":\"reloaded\",\"generation\":%u}\n",
                      px_server_generation(a->srv));
    } else if (rc == -2) {
        do_refused(r, 409, err[0] != '\0' ? err : "no config file: started with moat proxy");
    } else {
        do_refused(r, 400, err);
    }
}

struct admin_route {
    const char *path;
    bool post; /* POST only; otherwise GET and HEAD */
    void (*answer)(struct px_admin *a, struct admin_resp *r);
};

static const struct admin_route routes[] = {
    {"/healthz", false, on_healthz},
    {"/metrics", false, on_metrics},
    {"/certificates", false, on_certificates},
    {"/reload", true, on_reload},
};

/* A page on a name the attacker controls can re-point that name at 127.0.0.1 (DNS
 * rebinding) and read the answers as same-origin, sending no Origin. Its requests carry
 * that name as Host, so only addresses and "localhost" are accepted (or no Host at all). */
static bool do_host_ok(const struct admin_conn *c)
{
    if (c->host_len == 0) {
        return true;
    }
    if (c->host_len >= sizeof(c->host)) {
        return false;
    }
    char h[sizeof(c->host)];
    memcpy(h, c->host, c->host_len);
    h[c->host_len] = '\0';
    char *end = h[0] == '[' ? strchr(h, ']') : strrchr(h, ':');
    if (h[0] == '[') {
        if (end == NULL || (end[1] != '\0' && end[1] != ':')) {
            return false;
        }
        *end = '\0';
        struct sockaddr_in6 a6;
        return uv_ip6_addr(h + 1, 0, &a6) == 0;
    }
    if (end != NULL) {
        *end = '\0';
    }
    struct sockaddr_in a4;
    return strcasecmp(h, "localhost") == 0 || uv_ip4_addr(h, 0, &a4) == 0;
}

static void do_route(struct admin_conn *c)
{
    struct admin_resp r = {0};
    const char *path = NULL;
    size_t len = do_path(c, &path);
    const struct admin_route *route = NULL;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strlen(routes[i].path) == len && memcmp(routes[i].path, path, len) == 0) {
            route = &routes[i];
            break;
        }
    }
    enum llhttp_method m = (enum llhttp_method)c->parser.method;
    if (c->has_origin) {
        /* Browsers add Origin to cross-site requests (and to every POST); the API has no
         * authentication, so a page the operator visits must not drive it. */
        do_text(&r, 403, "requests from browsers (with an Origin header) are refused\n");
    } else if (!do_host_ok(c)) {
        do_text(&r, 403, "Host must be an IP address or localhost\n");
    } else if (route == NULL) {
        do_text(&r, 404, "not found\n");
    } else if (route->post ? m != HTTP_POST : m != HTTP_GET && m != HTTP_HEAD) {
        do_text(&r, 405, "method not allowed\n");
        r.allow = route->post ? "POST" : "GET, HEAD";
    } else {
        route->answer(c->admin, &r);
        if (c->state != ADMIN_READING) {
            px_buf_free(&r.body); /* closed while answering (px_admin_stop in a reload) */
            return;
        }
    }
    do_respond(c, &r);
}

/* ---- requests ---------------------------------------------------------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = p->data;
    c->method_known = true; /* the method comes before the target */
    size_t room = sizeof(c->target) - c->target_len;
    size_t take = n < room ? n : room;
    memcpy(c->target + c->target_len, at, take);
    c->target_len += take;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = p->data;
    if (c->field_len + n <= sizeof(c->field)) {
        memcpy(c->field + c->field_len, at, n);
    }
    c->field_len += n; /* past the buffer: longer than "Origin", so not it */
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    c->field_is_origin = c->field_len == 6 && strncasecmp(c->field, "origin", 6) == 0;
    c->field_is_host = c->field_len == 4 && strncasecmp(c->field, "host", 4) == 0;
    c->field_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = p->data;
    if (c->field_is_host) {
        size_t room = sizeof(c->host) - 1 - (c->host_len < sizeof(c->host) ? c->host_len : 0);
        memcpy(c->host + (c->host_len < sizeof(c->host) ? c->host_len : 0), at,
               n < room ? n : room);
        c->host_len += n; /* past the buffer: too long for an address, refused */
    }
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    c->field_is_host = false;
    c->has_origin = c->has_origin || c->field_is_origin; /* even an empty one */
    c->field_is_origin = false;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    c->headers_done = true;
    c->method_known = true;
    if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > ADMIN_BODY_MAX) {
        c->refuse = 413; /* said up front: no need to read it */
        return -1;
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    struct admin_conn *c = p->data;
    c->body_len += n;
    if (c->body_len > ADMIN_BODY_MAX) {
        c->refuse = 413; /* chunked, so only known now */
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    c->message_done = true;
    return HPE_PAUSED; /* one request per connection: anything after it is not parsed */
}

static const llhttp_settings_t admin_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Parses what arrived. Until the head is complete the parser gets at most what is left of
 * ADMIN_HEAD_MAX, so an endless head stops at the limit instead of growing. */
static void do_feed(struct admin_conn *c, const char *p, size_t n)
{
    while (n > 0 && c->state == ADMIN_READING) {
        size_t chunk = n;
        if (!c->headers_done) {
            size_t room = ADMIN_HEAD_MAX - c->head_fed;
            chunk = n < room ? n : room;
            c->head_fed += chunk;
        }
        llhttp_errno_t err = llhttp_execute(&c->parser, p, chunk);
        if (c->message_done) {
            do_route(c);
            return;
        }
        if (err != HPE_OK) {
            const char *why = llhttp_get_error_reason(&c->parser);
            if (c->refuse == 413) {
                do_respond_text(c, 413, "request body over 64 KiB\n");
            } else {
                struct admin_resp r = {0};
                do_text(&r, 400, "bad request: ");
                px_buf_printf(&r.body, "%s\n", why != NULL ? why : "malformed");
                do_respond(c, &r);
            }
            return;
        }
        if (!c->headers_done && c->head_fed == ADMIN_HEAD_MAX) {
            do_respond_text(c, 431, "request head over 8 KiB\n");
            return;
        }
        p += chunk;
        n -= chunk;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct admin_conn *c = h->data;
    buf->base = c->admin->readbuf;
    buf->len = sizeof(c->admin->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_conn *c = s->data;
    if (nread < 0) {
        do_close(c, nread == UV_EOF ? "closed by the client" : uv_strerror((int)nread));
        return;
    }
    if (c->state == ADMIN_READING) {
        do_feed(c, buf->base, (size_t)nread);
    }
    /* in linger the bytes are dropped */
}

/* ---- the listener ------------------------------------------------------------------------ */

static void on_connection(uv_stream_t *server, int status)
{
    struct px_admin *a = server->data;
    if (status < 0 || a->stopped) {
        return;
    }
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return; /* the connection waits in the backlog for the next accept */
    }
    c->admin = a;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->write_req.data = c;
    c->shutdown_req.data = c;
    c->handles = 2;
    c->next = a->conns;
    if (a->conns != NULL) {
        a->conns->prev = c;
    }
    a->conns = c;
    a->n_open++;
    a->n_alive++;
    llhttp_init(&c->parser, HTTP_REQUEST, &admin_settings);
    c->parser.data = c;
    int rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        do_close(c, uv_strerror(rc));
        return;
    }
    if (a->n_open > ADMIN_MAX_CONNS) {
        do_close(c, "too many admin connections");
        return;
    }
    uv_timer_start(&c->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        do_close(c, uv_strerror(rc));
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    struct px_admin *a = h->data;
    a->listener_closed = true;
    do_maybe_free(a);
}

static bool do_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a6)) {
        return a6->s6_addr[12] == 127;
    }
    return IN6_IS_ADDR_LOOPBACK(a6);
}

/* "HOST:PORT" as an operator writes it, brackets around an IPv6 literal. */
static void do_hostport(const struct cfg_hostport *hp, char *out, size_t cap)
{
    const char *host = hp->host != NULL ? hp->host : "";
    bool v6 = strchr(host, ':') != NULL;
    snprintf(out, cap, "%s%s%s:%u", v6 ? "[" : "", host, v6 ? "]" : "", hp->port);
}

static int do_bind(struct px_admin *a, const struct cfg_hostport *hp)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    const char *host = hp->host != NULL && hp->host[0] != '\0' ? hp->host : "127.0.0.1";
    if (uv_ip4_addr(host, hp->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, hp->port, (struct sockaddr_in6 *)&ss) != 0) {
        return UV_EINVAL;
    }
    int rc = uv_tcp_bind(&a->tcp, (const struct sockaddr *)&ss, 0);
    if (rc == 0) {
        /* libuv may report a busy address only here */
        rc = uv_listen((uv_stream_t *)&a->tcp, 128, on_connection);
    }
    return rc;
}

static void do_log_listening(struct px_admin *a)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    uv_tcp_getsockname(&a->tcp, (struct sockaddr *)&ss, &len);
    char name[64] = "";
    uint16_t port = 0;
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, name, sizeof(name));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, name, sizeof(name));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    struct log_line l;
    log_begin(&l, CFG_LOG_INFO, "admin_listening");
    log_str(&l, "address", name);
    log_int(&l, "port", port);
    log_end(&l);
    if (!do_loopback(&ss)) {
        log_msg(CFG_LOG_WARN, "admin_not_loopback", "the admin endpoint listens on %s port %u, "
                "reachable from other hosts; it has no authentication: prefer a loopback "
                "address", name, port);
    }
}

int px_admin_start(struct px_server *srv, char *err, size_t errlen)
{
    const struct cfg_admin *conf = &srv->boot_cfg->admin;
    if (!conf->enabled) {
        return 0;
    }
    struct px_admin *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        snprintf(err, errlen, "admin: out of memory");
        return -1;
    }
    a->srv = srv;
    uv_tcp_init(srv->loop, &a->tcp);
    a->tcp.data = a;
    int rc = do_bind(a, &conf->listen);
    if (rc != 0) {
        char where[300];
        do_hostport(&conf->listen, where, sizeof(where));
        a->stopped = true;
        uv_close((uv_handle_t *)&a->tcp, on_listener_closed); /* frees a */
        if (conf->explicit) {
            snprintf(err, errlen, "admin.listen %s: %s", where, uv_strerror(rc));
            return -1;
        }
        log_msg(CFG_LOG_WARN, "admin_unavailable", "%s: %s; running without the admin "
                "endpoint (set admin.listen to another address, or \"off\")", where,
                uv_strerror(rc));
        return 0;
    }
    do_log_listening(a);
    srv->admin = a;
    return 0;
}

void px_admin_stop(struct px_server *srv)
{
    struct px_admin *a = srv->admin;
    if (a == NULL) {
        return;
    }
    srv->admin = NULL;
    a->stopped = true;
    while (a->conns != NULL) {
        do_close(a->conns, "admin endpoint stopping");
    }
    uv_close((uv_handle_t *)&a->tcp, on_listener_closed);
}
