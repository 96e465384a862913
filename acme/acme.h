/* acme.h - the public interface of the acme module: certificates from an ACME CA
 * (RFC 8555), kept in a storage directory several instances share, plus the c-ares
 * resolver the rest of moat uses. Everything here runs on the control thread unless a
 * function says otherwise. */
#ifndef MOAT_ACME_H
#define MOAT_ACME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <uv.h>

#include "config.h"
#include "tls.h"

/* ---- DNS: c-ares on a libuv loop ----------------------------------------------------- */

/* Owned by the caller of acme_dns_new; one loop only (not thread-safe). */
struct acme_dns;

/* status is 0 with n >= 1 addresses (port set), or -1 with none. ttl is the smallest TTL
 * of the answer in seconds (3600 for literals and answers without one). addrs is valid
 * only during the call. The callback may call acme_dns_resolve and acme_dns_free. */
typedef void (*acme_dns_cb)(void *arg, int status, const struct sockaddr_storage *addrs,
                            size_t n, unsigned ttl);

/* NULL only when out of memory. When c-ares cannot start (see acme_dns_error) the object
 * still works and every resolve answers -1. */
struct acme_dns *acme_dns_new(uv_loop_t *loop);

/* Why c-ares could not start, or NULL when it runs. */
const char *acme_dns_error(const struct acme_dns *dns);

/* Every query in flight gets its callback with -1 before this returns; the memory goes
 * once the loop has run the close callbacks. NULL is a no-op, a second call too. */
void acme_dns_free(struct acme_dns *dns);

/* Resolves host (a name, or an IPv4/IPv6 literal answered without a query) to addresses
 * with port set. cb runs on the loop, exactly once, never before this returns. */
void acme_dns_resolve(struct acme_dns *dns, const char *host, uint16_t port, acme_dns_cb cb,
                      void *arg);

/* ---- end of DNS ----------------------------------------------------------------------- */

/* ---- certificate management ---------------------------------------------------------- */

struct acme_mgr;

/* A manager on the control loop. Obtained certificates go into store for every name they
 * carry; TLS-ALPN-01 challenge certificates are installed into srv. The storage directory
 * is created if missing. NULL with err filled when the storage or the CA roots are unusable. */
struct acme_mgr *acme_mgr_new(uv_loop_t *loop, const struct cfg_acme *cfg,
                              struct tls_store *store, struct tls_server *srv, char *err,
                              size_t errlen);

/* Asks for one certificate covering names (the first is its main name). The manager loads
 * it from storage when there, else orders it; then it renews it before it expires. Names
 * already managed are left out; after acme_mgr_start the new certificate is sought at once. */
int acme_mgr_manage(struct acme_mgr *m, const char *const *names, size_t n);
/* After a reload: certificates managed with acme_mgr_manage none of whose names is in
 * names (the exact names the new config lists) are no longer served or renewed. A later
 * acme_mgr_manage naming them again brings them back. */
void acme_mgr_retain(struct acme_mgr *m, const char *const *names, size_t n);

/* Starts loading and ordering. Never blocks: progress and failures are logged. */
void acme_mgr_start(struct acme_mgr *m);

/* Stops timers and cancels requests in flight; frees the manager once its handles closed
 * (the loop must run afterwards). */
void acme_mgr_free(struct acme_mgr *m);

/* What the manager did since it started, for the metrics page. */
struct acme_stats {
    uint64_t orders;            /* orders started with the CA */
    uint64_t order_failures;    /* orders that ended without a stored certificate */
    uint64_t obtained;          /* certificates ordered and stored (first ones and renewals) */
    uint64_t on_demand_refused; /* on-demand names refused by allow, ask or their form */
};

/* Copies the counters; all zero when m is NULL. Control thread, like every writer. */
void acme_mgr_stats(const struct acme_mgr *m, struct acme_stats *out);

/* ---- on-demand TLS ------------------------------------------------------------------- */

typedef void (*acme_obtain_cb)(void *arg, int status, const char *why);

/* Turns on obtaining certificates at the first handshake for names that pass od's
 * checks (allow patterns, the ask URL, back-off after failures, the rate limit). od must
 * outlive the manager. */
void acme_mgr_enable_on_demand(struct acme_mgr *m, const struct cfg_on_demand *od);

/* Makes a certificate for name present in the store: already there, loaded from storage
 * (another instance may have stored it), or ordered. cb runs once on the control loop,
 * possibly before this returns: status 0 (the store has it now) or negative with why
 * (refused, failed, backing off). Many calls for one name share one order. A name managed
 * with acme_mgr_manage waits for that certificate, with or without on-demand TLS. */
void acme_mgr_obtain(struct acme_mgr *m, const char *name, acme_obtain_cb cb, void *arg);

/* Installs a challenge that another instance sharing storage is answering for name, so
 * this instance can answer the CA too. Blocking (a small file read): control thread. */
void acme_mgr_load_challenge(struct acme_mgr *m, const char *name);

/* The key authorization for an HTTP-01 token, written into out. Returns its length, or 0
 * when no challenge with that token is pending. Thread-safe: workers call it. */
size_t acme_http01_answer(struct acme_mgr *m, const char *token, size_t token_len, char *out,
                          size_t cap);

/* ---- storage inspection -------------------------------------------------------------- */

/* Prints every certificate under the storage directory (names, issuer, expiry, path, and
 * any problem found) to out. Returns 0, or -1 with err filled when the directory cannot be
 * read. Blocking: for the command line. */
int acme_certs_list(const char *storage_dir, FILE *out, char *err, size_t errlen);

#endif
