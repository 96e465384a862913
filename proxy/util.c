/* util.c - small pieces every part of the proxy uses: sends with try_write first, the
 * per-loop read buffer, the clock. */
#include <stdlib.h>
#include <string.h>

#include "proxy_int.h"

struct px_wreq {
    uv_write_t req;
    char data[];
};

void px_wreq_free(uv_write_t *req)
{
    free((struct px_wreq *)req); /* req is the first member */
}

int px_stream_send(uv_stream_t *s, const char *p, size_t n, uv_write_cb cb)
{
    if (n == 0) {
        return 0;
    }
    if (uv_stream_get_write_queue_size(s) == 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        int rc = uv_try_write(s, &b, 1);
        if (rc > 0) {
            p += rc;
            n -= (size_t)rc;
        } else if (rc != UV_EAGAIN) {
            return rc;
        }
        if (n == 0) {
            return 0;
        }
    }
    /* The kernel took part of it (or none): the rest waits in a copy we own. */
    struct px_wreq *w = malloc(sizeof(*w) + n);
    if (w == NULL) {
        return UV_ENOMEM;
    }
    memcpy(w->data, p, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, s, &b, 1, cb);
    if (rc != 0) {
        free(w);
    }
    return rc;
}

/* Every read on a worker loop lands in that loop's one buffer: the read callback consumes
 * it before returning, so an idle connection owns no read memory. */
void px_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct px_worker *w = h->loop->data;
    buf->base = w->readbuf;
    buf->len = PX_READ_BUF;
}

uint64_t px_now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void on_deadline(uv_timer_t *t)
{
    struct px_deadline *d = (struct px_deadline *)t; /* the timer is the first member */
    if (d->due == 0) {
        return;
    }
    uint64_t now = uv_now(t->loop);
    if (now < d->due) {
        uv_timer_start(t, on_deadline, d->due - now, 0);
        return;
    }
    d->due = 0;
    d->cb(t);
}

void px_deadline_init(uv_loop_t *loop, struct px_deadline *d, uv_timer_cb cb, void *owner)
{
    uv_timer_init(loop, &d->timer);
    d->timer.data = owner;
    d->due = 0;
    d->cb = cb;
}

void px_deadline_set(struct px_deadline *d, uint64_t ms)
{
    d->due = uv_now(d->timer.loop) + ms;
    if (d->due == 0) {
        d->due = 1;
    }
    if (uv_is_active((uv_handle_t *)&d->timer) && uv_timer_get_due_in(&d->timer) <= ms) {
        return; /* fires earlier and re-arms for the rest */
    }
    uv_timer_start(&d->timer, on_deadline, ms, 0);
}

void px_deadline_clear(struct px_deadline *d)
{
    d->due = 0; /* a pending fire finds nothing to do */
}
