/* conn_int.h - the split between conn.c (transport) and request.c (HTTP on top of it). */
#ifndef MOAT_PX_CONN_INT_H
#define MOAT_PX_CONN_INT_H

#include "proxy_int.h"

/* conn.c */
void px_conn_set_state(struct px_conn *c, enum px_conn_state s);
void px_conn_arm_timer(struct px_conn *c, uint64_t ms);
void px_conn_on_timer(uv_timer_t *t);
void px_conn_resume_reading(struct px_conn *c);
void px_conn_stop_reading(struct px_conn *c);
void px_conn_write(struct px_conn *c, const char *p, size_t n);
void px_conn_send_tls_output(struct px_conn *c);
/* Sends what is queued, then half-closes and closes. */
void px_conn_finish(struct px_conn *c);

/* request.c */
void px_req_input(struct px_conn *c, const char *p, size_t n);
void px_req_flush(struct px_conn *c);
void px_req_client_eof(struct px_conn *c);
void px_req_client_drained(struct px_conn *c);
void px_req_on_timer(struct px_conn *c);
void px_req_abort_upstream(struct px_conn *c);
void px_req_release(struct px_conn *c);
void px_req_settings(llhttp_settings_t *s);
void px_req_log_access(struct px_conn *c);

/* redirect.c: the control thread looked for a stored HTTP-01 answer. */
void px_req_plain_answered(struct px_conn *c);

/* worker.c */
void px_worker_conn_gone(struct px_worker *w);
struct px_reqbuf *px_worker_reqbuf(struct px_worker *w);
void px_worker_reqbuf_put(struct px_worker *w, struct px_reqbuf *rb);

#endif
