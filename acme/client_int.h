/* client_int.h - the state of the ACME client and of one order, shared by client.c,
 * account.c, authz.c and finalize.c. */
#ifndef MOAT_ACME_CLIENT_INT_H
#define MOAT_ACME_CLIENT_INT_H

#include <openssl/mem.h>
#include <stdarg.h>

#include "client.h"
#include "log.h"

#define ACME_NONCE_POOL 8

struct acme_order;
typedef void (*acme_order_step)(struct acme_order *o);
typedef void (*acme_post_cb)(struct acme_order *o, const struct acme_http_response *res);

/* One CA: its directory, a nonce pool and the account. Owned by the manager. */
struct acme_client {
    uv_loop_t *loop;
    struct acme_http *http;
    struct acme_storage *st;
    const struct cfg_acme *cfg;
    struct acme_challenge_hooks hooks;
    char *directory_url;
    char *ca_key;
    char *new_nonce;
    char *new_account;
    char *new_order;
    char *nonces[ACME_NONCE_POOL];
    size_t n_nonces;
    EVP_PKEY *account_key;
    char *kid; /* the account URL, once known */
    bool account_busy;
    struct acme_order *account_waiters;
    struct acme_order *orders; /* every order in flight */
};

/* One issuance, from new-order to the downloaded chain. */
struct acme_order {
    struct acme_client *client;
    struct acme_order *next;        /* in client->orders */
    struct acme_order *wait_next;   /* in client->account_waiters */
    acme_order_step after_account;
    acme_order_cb cb;
    void *arg;
    char **names;
    size_t n_names;
    uint64_t start_ms;
    uint64_t retry_after_ms;        /* the last error's Retry-After, for the back-off */
    uv_timer_t timer;               /* polling and Retry-After waits */
    acme_order_step after_wait;
    bool done;
    /* the current signed POST */
    char *post_url;
    char *post_payload;
    bool post_jwk;
    int post_tries;
    int account_resets;
    acme_post_cb post_next;
    /* the order */
    char *order_url;
    char *finalize_url;
    char *cert_url;
    char **authz;
    size_t n_authz;
    size_t authz_index;
    int polls;
    /* the challenge being answered */
    size_t chal_index; /* into cfg->challenges */
    enum cfg_challenge chal_type;
    char *chal_url;
    char *chal_token;
    char *chal_name;
    EVP_PKEY *cert_key;
    uv_work_t keygen;   /* the certificate key is made on the thread pool */
    enum acme_key_type key_type;
    bool working;       /* keygen in flight: freeing waits for it */
    bool closed;
};

/* client.c */
void acme_order_fail(struct acme_order *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void acme_order_succeed(struct acme_order *o, const char *pem, size_t len);
void acme_order_post(struct acme_order *o, const char *url, const char *payload, bool jwk,
                     acme_post_cb next);
void acme_order_wait(struct acme_order *o, uint64_t ms, acme_order_step next);
void acme_order_authz_done(struct acme_order *o);
void acme_problem_text(const struct acme_http_response *res, char *out, size_t cap);
uint64_t acme_retry_after_ms(const struct acme_http_response *res, uint64_t default_ms);
/* The same with another ceiling than acme_retry_after_ms's hour. */
uint64_t acme_retry_after_max(const struct acme_http_response *res, uint64_t default_ms,
                              uint64_t max_ms);
/* How long to wait before polling again: Retry-After when given, else 25 ms doubling up
 * to a second with each poll of this order's current step. */
uint64_t acme_poll_delay_ms(const struct acme_order *o, const struct acme_http_response *res);

/* account.c: makes sure c->kid is known, then runs next (or fails the order). */
void acme_account_ensure(struct acme_order *o, acme_order_step next);
/* Drops the account URL (memory and storage) so the next order registers again. */
void acme_account_forget(struct acme_client *c);
char *acme_client_sign_new_account(struct acme_client *c, const char *nonce, const char *url,
                                   const char *payload, size_t *len);

/* authz.c: answers one authorization, then calls acme_order_authz_done. */
void acme_authz_begin(struct acme_order *o);

void acme_order_free(struct acme_order *o);

/* finalize.c: key, CSR, finalize, wait for valid, download, then the order's callback. */
void acme_order_finalize(struct acme_order *o);

#endif
