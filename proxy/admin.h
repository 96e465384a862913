/* admin.h - the admin endpoint (control thread) and what it asks of the rest of proxy/:
 * a growable text buffer, the metrics page, the certificate list and a reload. */
#ifndef MOAT_PX_ADMIN_H
#define MOAT_PX_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct px_server;

/* A growable byte buffer; a failed allocation sticks in oom and later appends do nothing,
 * so a caller checks once at the end. */
struct px_buf {
    char *p;
    size_t len;
    size_t cap;
    bool oom;
};

void px_buf_append(struct px_buf *b, const char *s, size_t n);
void px_buf_printf(struct px_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal, quotes included. */
void px_buf_json_str(struct px_buf *b, const char *s);
void px_buf_free(struct px_buf *b);

/* Binds the admin listener the config asks for (nothing when it is off) on the control
 * loop and logs "admin_listening" with the address and port. An unavailable default
 * address is a warning; a configured one that cannot be bound returns -1 with err. */
int px_admin_start(struct px_server *srv, char *err, size_t errlen);
/* Closes the listener and every admin connection (the control loop then ends). */
void px_admin_stop(struct px_server *srv);

/* The Prometheus text page (metrics.c). */
void px_metrics_render(struct px_server *srv, struct px_buf *out);

/* The certificates in memory as the JSON document of GET /certificates. */
void px_admin_certificates(struct px_server *srv, struct px_buf *out);

/* Re-reads the config file (reload.c). Returns 0 when the new config serves, -1 when it
 * was refused (the reasons in err, one per line; the old config keeps serving) and -2 when
 * there is no file to re-read (started with `moat proxy`). why names the trigger for the
 * log ("SIGHUP", "admin"). */
int px_server_reload(struct px_server *srv, const char *why, char *err, size_t errlen);

/* The generation now serving: 1 at start, one more for every successful reload. */
unsigned px_server_generation(const struct px_server *srv);

#endif
