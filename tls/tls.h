/* tls.h - TLS termination for moat: certificates, the SNI store and a memory-BIO byte pump.
 *
 * tls/ knows nothing of HTTP nor of sockets. A worker feeds the ciphertext it read into a
 * tls_conn, takes plaintext out, writes plaintext in and takes ciphertext out to send. The
 * certificate store is shared by every thread: workers look names up, the control thread
 * replaces entries; a certificate stays alive while a handshake holds a reference to it.
 */
#ifndef MOAT_TLS_H
#define MOAT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_cert;   /* a parsed chain and its private key; reference counted, immutable */
struct tls_store;  /* name -> certificate, thread-safe */
struct tls_server; /* the server SSL_CTX, ticket keys and the store it selects from */
struct tls_conn;   /* one connection's TLS state */

/* ---- certificates ------------------------------------------------------------------ */

/* Loads a PEM chain (leaf first) and a PEM private key (ECDSA or RSA) and checks that they
 * match. Returns a certificate with one reference owned by the caller, or NULL with the
 * reason written to err. Blocking file I/O: control thread only. */
struct tls_cert *tls_cert_load_pem(const char *cert_file, const char *key_file, char *err,
                                   size_t errlen);

/* Same from PEM text in memory. */
struct tls_cert *tls_cert_from_pem(const char *cert_pem, size_t cert_len, const char *key_pem,
                                   size_t key_len, char *err, size_t errlen);

void tls_cert_ref(struct tls_cert *cert);
void tls_cert_unref(struct tls_cert *cert);

/* The leaf's DNS names (subjectAltName); returns how many were written to names (each
 * a malloc'd string the caller frees), at most max. */
size_t tls_cert_names(const struct tls_cert *cert, char **names, size_t max);

/* When a handshake last used the certificate (seconds since the epoch), for eviction. */
int64_t tls_cert_last_used(const struct tls_cert *cert);

/* The leaf's notAfter as seconds since the epoch, or 0 when unknown. */
int64_t tls_cert_not_after(const struct tls_cert *cert);

/* ---- the store --------------------------------------------------------------------- */

struct tls_store *tls_store_new(void);
void tls_store_free(struct tls_store *store);

/* Maps name (lower-case; "*.example.com" for a wildcard) to cert, replacing any previous
 * entry. The store takes its own reference. Returns 0, -EINVAL for an empty or over-long
 * name, or -ENOMEM. */
int tls_store_put(struct tls_store *store, const char *name, struct tls_cert *cert);

/* Removes a name; returns 0 or -ENOENT. */
int tls_store_remove(struct tls_store *store, const char *name);

/* Looks up name: the exact entry, else the wildcard one level up ("a.example.com" matches
 * "*.example.com" but "a.b.example.com" does not). The lookup is case-insensitive and
 * ignores a trailing dot. Returns a new reference the caller drops, or NULL. */
struct tls_cert *tls_store_lookup(struct tls_store *store, const char *name);

size_t tls_store_count(struct tls_store *store);

/* Calls cb once for every entry: its normalized name and its certificate, in no particular
 * order. It runs on the caller's thread under the store's read lock, so handshakes go on
 * looking names up meanwhile but tls_store_put and tls_store_remove wait: cb must be quick
 * and must not call into the store. name and cert are valid during the call only; cb takes
 * a reference (tls_cert_ref) to keep the certificate. */
typedef void (*tls_store_visit_cb)(void *arg, const char *name, struct tls_cert *cert);
void tls_store_foreach(struct tls_store *store, tls_store_visit_cb cb, void *arg);

/* ---- the server context ------------------------------------------------------------ */

struct tls_server_opts {
    const char *default_sni;     /* name served to clients sending no SNI; NULL: refuse */
    bool session_tickets;        /* resumption with tickets */
    uint64_t ticket_rotation_ms; /* a key encrypts this long, then decrypts this long more */
};

/* Creates the server context, selecting certificates from store (which must outlive it).
 * Returns NULL with the reason in err. The result is shared by every worker thread. */
struct tls_server *tls_server_new(struct tls_store *store, const struct tls_server_opts *opts,
                                  char *err, size_t errlen);
void tls_server_free(struct tls_server *srv);

/* Makes a fresh ticket key current and keeps the previous one for decryption only. The
 * control thread calls it every ticket_rotation_ms; thread-safe. */
void tls_server_rotate_tickets(struct tls_server *srv);

/* TLS-ALPN-01 (RFC 8737): while a challenge certificate is set for name, a handshake for
 * that name whose ALPN offers "acme-tls/1" gets it and the acme-tls/1 protocol. The server
 * takes its own reference. Thread-safe: the control thread sets, workers read. */
int tls_server_set_challenge(struct tls_server *srv, const char *name, struct tls_cert *cert);
void tls_server_clear_challenge(struct tls_server *srv, const char *name);
/* The challenge certificate of another instance's order (read from shared storage), or
 * NULL to drop it. Served only to a validation handshake that asked for it through the
 * miss callback, so one left from an earlier order never answers a later one. */
int tls_server_set_shared_challenge(struct tls_server *srv, const char *name,
                                    struct tls_cert *cert);

/* What to do with a handshake for a name the store has no certificate for. */
enum tls_miss {
    TLS_MISS_REFUSE = 0, /* fail it: unrecognized_name */
    TLS_MISS_WAIT,       /* pause it: tls_conn_handshake returns TLS_PENDING until resumed */
};

/* Called on the worker thread inside the handshake, at most once per connection. name is
 * the SNI name; challenge says the client offered acme-tls/1 (a CA validating). The
 * callback must not block. */
typedef enum tls_miss (*tls_miss_cb)(void *arg, struct tls_conn *tc, const char *name,
                                     bool challenge);
void tls_server_set_miss_cb(struct tls_server *srv, tls_miss_cb cb, void *arg);

/* ---- one connection ---------------------------------------------------------------- */

enum tls_status {
    TLS_OK = 0,            /* done (handshake finished / data returned) */
    TLS_WANT_READ = -1,    /* more ciphertext is needed */
    TLS_CLOSED = -2,       /* the peer sent close_notify */
    TLS_ERROR = -3,        /* fatal; an alert may be waiting in the output */
    TLS_PENDING = -4,      /* paused for a certificate: call tls_conn_handshake again later */
};

struct tls_conn *tls_conn_new(struct tls_server *srv);

/* The caller's pointer for this connection, for the miss callback. */
void tls_conn_set_user(struct tls_conn *tc, void *user);
void *tls_conn_user(const struct tls_conn *tc);

/* Frees the connection; the output not yet taken is dropped. */
void tls_conn_free(struct tls_conn *tc);

/* Gives the connection ciphertext to consume. The bytes are not copied: they must stay
 * valid until the next tls_conn_feed, or until tls_conn_unconsumed says they are used up. */
void tls_conn_feed(struct tls_conn *tc, const char *data, size_t len);

/* How many bytes of the last feed have not been consumed yet; *rest points at them. */
size_t tls_conn_unconsumed(const struct tls_conn *tc, const char **rest);

/* Advances the handshake. Returns TLS_OK when it is complete, TLS_WANT_READ, TLS_PENDING
 * (paused by the miss callback: call again once the certificate may be there; a second
 * miss is refused), or TLS_ERROR (a reason is available from tls_conn_error). */
int tls_conn_handshake(struct tls_conn *tc);

/* Decrypts into buf. Returns the number of bytes (> 0), TLS_WANT_READ, TLS_CLOSED or
 * TLS_ERROR. */
int tls_conn_read(struct tls_conn *tc, char *buf, size_t cap);

/* Whether decrypted bytes are buffered inside the connection (a read would return them
 * without new ciphertext). */
bool tls_conn_has_plaintext(const struct tls_conn *tc);

/* Encrypts len bytes; the records go to the output. Returns 0 or TLS_ERROR. */
int tls_conn_write(struct tls_conn *tc, const char *data, size_t len);

/* Queues a close_notify alert into the output. */
void tls_conn_shutdown(struct tls_conn *tc);

/* Ciphertext waiting to be sent: returns a pointer to len bytes (NULL when none). */
const char *tls_conn_output(const struct tls_conn *tc, size_t *len);

/* Marks n bytes of the output as sent. The buffer is released when it empties, so an idle
 * connection holds no output memory. */
void tls_conn_output_consume(struct tls_conn *tc, size_t n);

/* After the handshake: the SNI name the client sent (NULL if none), the protocol version
 * ("TLSv1.3"), the cipher name and whether the session was resumed. */
const char *tls_conn_sni(const struct tls_conn *tc);
/* Whether the handshake answered an ACME TLS-ALPN-01 validation: nothing else may follow
 * on that connection, so the caller closes it. */
bool tls_conn_is_challenge(const struct tls_conn *tc);
const char *tls_conn_version(const struct tls_conn *tc);
const char *tls_conn_cipher(const struct tls_conn *tc);
bool tls_conn_resumed(const struct tls_conn *tc);

/* A short reason for the last TLS_ERROR ("no certificate for SNI name", or the library's
 * reason string). Never NULL. */
const char *tls_conn_error(const struct tls_conn *tc);

#endif
