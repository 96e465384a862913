/* client.h - the ACME protocol engine (client.c, account.c) as the manager drives it. */
#ifndef MOAT_ACME_CLIENT_H
#define MOAT_ACME_CLIENT_H

#include <cjson/cJSON.h>

#include "acme.h"
#include "acme_int.h"

struct acme_client;
struct acme_order;

/* How the manager answers challenges: present makes the key authorization reachable for
 * the CA (0 or -1), cleanup withdraws it. */
struct acme_challenge_hooks {
    int (*present)(void *arg, enum cfg_challenge type, const char *name, const char *token,
                   const char *key_authorization);
    void (*cleanup)(void *arg, enum cfg_challenge type, const char *name, const char *token);
    void *arg;
};

/* Called once per order. On success status is 0 and the PEM chain and key are valid
 * during the call; else status is negative, error says what failed and what to fix, and
 * retry_after_ms is how long the CA asked to wait (Retry-After), or 0. */
typedef void (*acme_order_cb)(void *arg, int status, const char *error, uint64_t retry_after_ms,
                              const char *cert_pem, size_t cert_len, const char *key_pem,
                              size_t key_len);

/* The client owns neither http nor st; both outlive it. */
struct acme_client *acme_client_new(uv_loop_t *loop, struct acme_http *http,
                                    struct acme_storage *st, const struct cfg_acme *cfg,
                                    const struct acme_challenge_hooks *hooks);
void acme_client_free(struct acme_client *c);

/* Orders one certificate for names. first_challenge is the index in the configured
 * preference list to try first (a retry after a failed challenge moves on). Returns the
 * order, or NULL when it cannot start (cb is not called then). */
struct acme_order *acme_order_start(struct acme_client *c, const char *const *names, size_t n,
                                    size_t first_challenge, acme_order_cb cb, void *arg);

/* Stops an order; its callback does not run. */
void acme_order_cancel(struct acme_order *o);

/* The challenge type an order used last (to fall back to the next one on failure). */
size_t acme_order_challenge_index(const struct acme_order *o);

/* Logs one step of an order: event name, the certificate's main name, elapsed time. */
void acme_log_step(const char *event, const char *name, uint64_t start_ms, uv_loop_t *loop);

#endif
