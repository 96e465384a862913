/* bridge.c - questions from workers to the control thread and their answers: a handshake
 * paused for an on-demand certificate, or a CA's validation that another instance's
 * stored challenge can answer. Mailboxes are mutex-guarded lists woken by uv_async. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conn_int.h"

int px_mailbox_init(uv_loop_t *loop, struct px_mailbox *mb, uv_async_cb cb, void *data)
{
    mb->head = NULL;
    mb->tail = NULL;
    mb->closed = false;
    pthread_mutex_init(&mb->lock, NULL);
    int rc = uv_async_init(loop, &mb->async, cb);
    mb->async.data = data;
    return rc;
}

void px_mailbox_close(struct px_mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    mb->closed = true;
    struct px_ask *a = mb->head;
    mb->head = NULL;
    mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    while (a != NULL) {
        struct px_ask *next = a->next;
        free(a);
        a = next;
    }
    uv_close((uv_handle_t *)&mb->async, NULL);
}

/* Hands a to the mailbox's loop; a closed mailbox (its loop is ending) drops it. */
static void do_post(struct px_mailbox *mb, struct px_ask *a)
{
    a->next = NULL;
    pthread_mutex_lock(&mb->lock);
    if (mb->closed) {
        pthread_mutex_unlock(&mb->lock);
        free(a);
        return;
    }
    if (mb->tail != NULL) {
        mb->tail->next = a;
    } else {
        mb->head = a;
    }
    mb->tail = a;
    uv_async_send(&mb->async); /* under the lock: the handle cannot be closing */
    pthread_mutex_unlock(&mb->lock);
}

static struct px_ask *do_take_all(struct px_mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    struct px_ask *a = mb->head;
    mb->head = NULL;
    mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    return a;
}

int px_bridge_ask(struct px_conn *c, enum px_ask_kind kind, const char *name)
{
    struct px_ask *a = calloc(1, sizeof(*a));
    if (a == NULL || strlen(name) >= sizeof(a->name)) {
        free(a);
        return -1;
    }
    a->kind = kind;
    a->w = c->w;
    a->conn = c;
    a->start_ms = uv_now(&c->w->loop);
    memcpy(a->name, name, strlen(name) + 1);
    c->ask = a;
    do_post(&c->w->srv->questions, a);
    return 0;
}

/* ---- the control thread's side -------------------------------------------------------- */

static void do_answer(struct px_ask *a, int status, const char *why)
{
    a->status = status;
    if (why != NULL) {
        size_t n = strlen(why);
        n = n < sizeof(a->why) - 1 ? n : sizeof(a->why) - 1;
        memcpy(a->why, why, n);
        a->why[n] = '\0';
    }
    do_post(&a->w->answers, a);
}

static void on_obtained(void *arg, int status, const char *why)
{
    do_answer(arg, status, why);
}

void px_bridge_on_questions(uv_async_t *h)
{
    struct px_server *srv = h->data;
    struct px_ask *a = do_take_all(&srv->questions);
    while (a != NULL) {
        struct px_ask *next = a->next;
        if (srv->acme == NULL || srv->stopping) {
            do_answer(a, -1, "shutting down");
        } else if (a->kind == PX_ASK_CERT) {
            acme_mgr_obtain(srv->acme, a->name, on_obtained, a);
        } else {
            acme_mgr_load_challenge(srv->acme, a->name);
            do_answer(a, 0, NULL);
        }
        a = next;
    }
}

/* ---- the worker's side --------------------------------------------------------------- */

void px_bridge_on_answers(uv_async_t *h)
{
    struct px_worker *w = h->data;
    struct px_ask *a = do_take_all(&w->answers);
    while (a != NULL) {
        struct px_ask *next = a->next;
        if (a->conn != NULL) {
            a->conn->ask = NULL;
            px_conn_on_answer(a->conn, a);
        }
        free(a);
        a = next;
    }
}

static bool do_lists_exactly(const struct px_site *site, const char *name)
{
    for (size_t i = 0; i < site->n_hosts; i++) {
        if (strcasecmp(site->hosts[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* Inside a handshake on a worker: pause it when the control thread may produce what is
 * missing. Only names of sites without certificate files qualify for on-demand. */
enum tls_miss px_on_tls_miss(void *arg, struct tls_conn *tc, const char *name, bool challenge)
{
    struct px_server *srv = arg;
    struct px_conn *c = tls_conn_user(tc);
    if (c == NULL || srv->acme == NULL || c->ask != NULL) {
        return TLS_MISS_REFUSE;
    }
    if (!challenge) {
        const struct px_site *site = px_router_site(c->gen->router, name, strlen(name));
        if (site == NULL || !site->acme) {
            return TLS_MISS_REFUSE;
        }
        /* Without on-demand TLS only the names a site lists exactly wait (for the order
         * made at start); any other name is refused here, without asking. */
        if (!srv->boot_cfg->on_demand.enabled && !do_lists_exactly(site, name)) {
            return TLS_MISS_REFUSE;
        }
    }
    if (px_bridge_ask(c, challenge ? PX_ASK_ALPN_CHALLENGE : PX_ASK_CERT, name) != 0) {
        return TLS_MISS_REFUSE;
    }
    return TLS_MISS_WAIT;
}
