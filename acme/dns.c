/* dns.c - asynchronous name resolution with c-ares on a libuv loop: a uv_poll per socket
 * c-ares opens, a timer for its retransmissions, and a uv_idle that hands every answer
 * back, so no callback ever runs inside acme_dns_resolve or inside c-ares itself. */
#include <ares.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme_int.h"

#define DNS_MAX_SOCKETS 16
#define DNS_MAX_ADDRS 32
#define DNS_TTL_DEFAULT 3600 /* for answers without one: literals, the hosts file */

struct dns_sock {
    uv_poll_t poll;
    ares_socket_t fd;
    bool used;    /* the poll handle is initialised (until its close callback) */
    bool closing; /* uv_close was called: c-ares may already reuse fd for a new socket */
    struct acme_dns *dns;
};

/* Owned by c-ares while the query runs, then by the done list until delivered. */
struct dns_query {
    struct dns_query *next;
    struct acme_dns *dns;
    acme_dns_cb cb;
    void *arg;
    uint16_t port;
    int status; /* 0 or -1 */
    unsigned ttl;
    size_t n;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS];
};

/* Owned by whoever called acme_dns_new; freed in the last close callback after
 * acme_dns_free. */
struct acme_dns {
    uv_loop_t *loop;
    ares_channel channel;
    uv_timer_t timer; /* c-ares's next timeout */
    uv_idle_t idle;   /* active while answers wait on the done list */
    struct dns_sock socks[DNS_MAX_SOCKETS];
    struct dns_query *done_head; /* answered queries, in order, not yet delivered */
    struct dns_query *done_last;
    unsigned handles; /* initialised handles whose close callback has not run */
    bool ok;          /* the c-ares channel exists */
    bool closing;
    char error[128];
};

static void on_handle_closed(uv_handle_t *h)
{
    struct acme_dns *dns = h->data;
    dns->handles--;
    if (dns->closing && dns->handles == 0) {
        free(dns);
    }
}

/* ---- the done list: every answer reaches its caller from the idle handle ------------- */

static struct dns_query *do_pop(struct acme_dns *dns)
{
    struct dns_query *q = dns->done_head;
    if (q != NULL) {
        dns->done_head = q->next;
        if (dns->done_head == NULL) {
            dns->done_last = NULL;
        }
    }
    return q;
}

/* q is off the done list, so the callback may resolve again or free dns. */
static void do_deliver(struct dns_query *q, int status)
{
    q->cb(q->arg, status, q->addrs, status == 0 ? q->n : 0, q->ttl);
    free(q);
}

/* Delivers what was answered before this turn; answers queued by those callbacks wait for
 * the next turn, so a caller that keeps resolving cannot starve the loop. */
static void on_idle(uv_idle_t *idle)
{
    struct acme_dns *dns = idle->data;
    struct dns_query *last = dns->done_last;
    bool more = last != NULL;
    while (more && !dns->closing) {
        struct dns_query *q = do_pop(dns);
        more = q != last;
        do_deliver(q, q->status);
    }
    if (!dns->closing && dns->done_head == NULL) {
        uv_idle_stop(idle);
    }
}

static void do_finish(struct acme_dns *dns, struct dns_query *q)
{
    q->next = NULL;
    if (dns->done_last != NULL) {
        dns->done_last->next = q;
    } else {
        dns->done_head = q;
    }
    dns->done_last = q;
    if (!dns->closing) {
        uv_idle_start(&dns->idle, on_idle);
    }
}

/* ---- c-ares on the loop ----------------------------------------------------------------- */

static void on_dns_timer(uv_timer_t *t)
{
    struct acme_dns *dns = t->data;
    ares_process_fd(dns->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
}

static void do_rearm(struct acme_dns *dns)
{
    struct timeval tv;
    struct timeval *next = ares_timeout(dns->channel, NULL, &tv);
    if (next == NULL) {
        uv_timer_stop(&dns->timer);
        return;
    }
    uint64_t ms = (uint64_t)next->tv_sec * 1000 + (uint64_t)next->tv_usec / 1000;
    uv_timer_start(&dns->timer, on_dns_timer, ms, 0);
}

static void on_dns_poll(uv_poll_t *p, int status, int events)
{
    struct dns_sock *s = p->data;
    ares_socket_t r = ARES_SOCKET_BAD;
    ares_socket_t w = ARES_SOCKET_BAD;
    if (status < 0 || (events & UV_READABLE)) {
        r = s->fd;
    }
    if (status < 0 || (events & UV_WRITABLE)) {
        w = s->fd;
    }
    struct acme_dns *dns = s->dns;
    ares_process_fd(dns->channel, r, w);
    do_rearm(dns);
}

static void on_poll_closed(uv_handle_t *h)
{
    struct dns_sock *s = h->data;
    struct acme_dns *dns = s->dns;
    s->used = false;
    s->closing = false;
    dns->handles--;
    if (dns->closing && dns->handles == 0) {
        free(dns);
    }
}

static void do_close_sock(struct dns_sock *s)
{
    if (s->used && !s->closing) {
        s->closing = true;
        uv_close((uv_handle_t *)&s->poll, on_poll_closed);
    }
}

static struct dns_sock *do_open_sock(struct acme_dns *dns, ares_socket_t fd)
{
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        struct dns_sock *s = &dns->socks[i];
        if (s->used) {
            continue;
        }
        if (uv_poll_init_socket(dns->loop, &s->poll, fd) != 0) {
            return NULL; /* c-ares then times the query out */
        }
        s->used = true;
        s->fd = fd;
        s->dns = dns;
        s->poll.data = s;
        dns->handles++;
        return s;
    }
    return NULL; /* more sockets than slots: c-ares times the query out */
}

/* c-ares tells which sockets to watch; each gets a uv_poll on the loop. A slot still
 * closing may carry the same fd number as a new socket, so it never matches. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct acme_dns *dns = data;
    struct dns_sock *s = NULL;
    for (size_t i = 0; i < DNS_MAX_SOCKETS && s == NULL; i++) {
        struct dns_sock *c = &dns->socks[i];
        if (c->used && !c->closing && c->fd == fd) {
            s = c;
        }
    }
    if (!readable && !writable) {
        if (s != NULL) {
            do_close_sock(s);
        }
        return;
    }
    if (s == NULL && !dns->closing) {
        s = do_open_sock(dns, fd);
    }
    if (s == NULL) {
        return;
    }
    int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
    if (uv_poll_start(&s->poll, events, on_dns_poll) != 0) {
        do_close_sock(s);
    }
}

static void do_init_channel(struct acme_dns *dns)
{
    struct ares_options opts;
    memset(&opts, 0, sizeof(opts));
    opts.sock_state_cb = on_sock_state;
    opts.sock_state_cb_data = dns;
    opts.timeout = 3000;
    opts.tries = 2;
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS) {
        snprintf(dns->error, sizeof(dns->error), "ares_library_init: %s", ares_strerror(rc));
        return;
    }
    rc = ares_init_options(&dns->channel, &opts,
                           ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(dns->error, sizeof(dns->error), "ares_init_options: %s", ares_strerror(rc));
        ares_library_cleanup();
        return;
    }
    dns->ok = true;
}

struct acme_dns *acme_dns_new(uv_loop_t *loop)
{
    struct acme_dns *dns = calloc(1, sizeof(*dns));
    if (dns == NULL) {
        return NULL;
    }
    dns->loop = loop;
    if (uv_timer_init(loop, &dns->timer) != 0) {
        free(dns);
        return NULL;
    }
    dns->timer.data = dns;
    dns->handles = 1;
    if (uv_idle_init(loop, &dns->idle) != 0) {
        dns->closing = true;
        uv_close((uv_handle_t *)&dns->timer, on_handle_closed);
        return NULL;
    }
    dns->idle.data = dns;
    dns->handles = 2;
    /* Without a channel the object still works: every resolve then answers -1. */
    do_init_channel(dns);
    return dns;
}

const char *acme_dns_error(const struct acme_dns *dns)
{
    return dns->ok ? NULL : dns->error;
}

/* Every query still running or waiting gets its callback with -1 here, before this
 * returns; callbacks that resolve again are answered -1 in the same way. */
void acme_dns_free(struct acme_dns *dns)
{
    if (dns == NULL || dns->closing) {
        return;
    }
    dns->closing = true;
    if (dns->ok) {
        ares_destroy(dns->channel); /* running queries land on the done list */
        ares_library_cleanup();
        dns->ok = false;
    }
    for (size_t i = 0; i < DNS_MAX_SOCKETS; i++) {
        do_close_sock(&dns->socks[i]);
    }
    struct dns_query *q = do_pop(dns);
    while (q != NULL) {
        do_deliver(q, -1);
        q = do_pop(dns);
    }
    uv_close((uv_handle_t *)&dns->timer, on_handle_closed);
    uv_close((uv_handle_t *)&dns->idle, on_handle_closed);
}

/* ---- queries ---------------------------------------------------------------------------- */

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct dns_query *q = arg;
    for (struct ares_addrinfo_node *a = res != NULL ? res->nodes : NULL;
         a != NULL && q->n < DNS_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof(q->addrs[0]) ||
            (a->ai_family != AF_INET && a->ai_family != AF_INET6)) {
            continue;
        }
        struct sockaddr_storage *ss = &q->addrs[q->n];
        memset(ss, 0, sizeof(*ss));
        memcpy(ss, a->ai_addr, a->ai_addrlen);
        if (a->ai_family == AF_INET) {
            ((struct sockaddr_in *)ss)->sin_port = htons(q->port);
        } else {
            ((struct sockaddr_in6 *)ss)->sin6_port = htons(q->port);
        }
        if (a->ai_ttl >= 0 && (unsigned)a->ai_ttl < q->ttl) {
            q->ttl = (unsigned)a->ai_ttl;
        }
        q->n++;
    }
    if (res != NULL) {
        ares_freeaddrinfo(res);
    }
    q->status = status == ARES_SUCCESS && q->n > 0 ? 0 : -1;
    do_finish(q->dns, q);
}

/* An IP literal needs no query; the answer still goes through the done list. */
static bool do_literal(struct dns_query *q, const char *host)
{
    struct sockaddr_storage *ss = &q->addrs[0];
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, q->port, (struct sockaddr_in *)ss) != 0 &&
        uv_ip6_addr(host, q->port, (struct sockaddr_in6 *)ss) != 0) {
        return false;
    }
    q->n = 1;
    q->status = 0;
    return true;
}

void acme_dns_resolve(struct acme_dns *dns, const char *host, uint16_t port, acme_dns_cb cb,
                      void *arg)
{
    struct dns_query *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        /* The caller can only be told from the loop, and that needs this memory. */
        fprintf(stderr, "acme_dns_resolve: out of memory\n");
        abort();
    }
    q->dns = dns;
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    q->status = -1;
    q->ttl = DNS_TTL_DEFAULT;
    if (host == NULL || host[0] == '\0' || do_literal(q, host) || !dns->ok) {
        do_finish(dns, q);
        return;
    }
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    /* c-ares may answer at once (the hosts file): on_addrinfo only queues the answer. */
    ares_getaddrinfo(dns->channel, host, NULL, &hints, on_addrinfo, q);
    do_rearm(dns);
}
