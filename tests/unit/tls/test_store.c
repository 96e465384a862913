/* test_store.c - certificate loading, the SNI store, and real handshakes through tls_conn.
 *
 * Certificates are made at start with the openssl command line in a mkdtemp directory that
 * is removed at the end. The handshakes run in memory: a BoringSSL client SSL over memory
 * BIOs on one side, a tls_conn on the other, bytes carried between them by do_to_server and
 * do_to_client.
 */
#include <dirent.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "scratch.h"
#include "tls.h"

#define VALID_DAYS 30

static char dir[] = "/tmp/moat-tls-test-XXXXXX";


static bool write_file(const char *name, const char *text)
{
    FILE *f = fopen(at(name), "w");
    if (f == NULL) {
        return false;
    }
    fputs(text, f);
    return fclose(f) == 0;
}

#define EC_NEW "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
#define DAYS "-days 30"

/* A CA, leaves signed by it (ECDSA a.test+b.test, RSA a.test+b.test, ECDSA *.w.test), an
 * ECDSA leaf without SANs, an Ed25519 self-signed one, a chain file and broken files. */
static bool make_certs(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return false;
    }
    scratch_dir = dir;
    bool ok = run("openssl req -x509 " EC_NEW " -keyout ca.key -out ca.pem " DAYS
                  " -subj /CN=moat-test-ca");
    ok = ok && run("openssl req -x509 -CA ca.pem -CAkey ca.key " EC_NEW " -keyout ec.key"
                   " -out ec.pem " DAYS " -subj /CN=a.test"
                   " -addext subjectAltName=DNS:a.test,DNS:b.test");
    ok = ok && run("openssl req -x509 -CA ca.pem -CAkey ca.key -newkey rsa:2048 -nodes"
                   " -keyout rsa.key -out rsa.pem " DAYS " -subj /CN=a.test"
                   " -addext subjectAltName=DNS:a.test,DNS:b.test");
    ok = ok && run("openssl req -x509 -CA ca.pem -CAkey ca.key " EC_NEW " -keyout wild.key"
                   " -out wild.pem " DAYS " -subj /CN=w.test"
                   " -addext 'subjectAltName=DNS:*.w.test'");
    ok = ok && run("openssl req -x509 " EC_NEW " -keyout nosan.key -out nosan.pem " DAYS
                   " -subj /CN=nosan.test");
    ok = ok && run("openssl req -x509 -newkey ed25519 -nodes -keyout ed.key -out ed.pem " DAYS
                   " -subj /CN=ed.test");
    ok = ok && run("cat ec.pem ca.pem > chain.pem");
    ok = ok && write_file("garbage.pem", "this is not PEM at all\n");
    /* A well-formed PEM block whose contents are not a certificate. */
    ok = ok && write_file("notder.pem",
                          "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n");
    return ok;
}

static void remove_certs(void)
{
    scratch_remove();
}

static struct tls_cert *load(const char *cert, const char *key)
{
    char err[512] = "";
    struct tls_cert *c = tls_cert_load_pem(at(cert), at(key), err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "loading %s/%s: %s\n", cert, key, err);
    }
    return c;
}

/* ---- certificates ------------------------------------------------------------------ */

static bool has_name(struct tls_cert *cert, const char *want)
{
    char *names[8];
    size_t n = tls_cert_names(cert, names, 8);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found = found || strcmp(names[i], want) == 0;
        free(names[i]);
    }
    return found;
}

static void check_load_fails(const char *cert, const char *key, const char *want1,
                             const char *want2, int line)
{
    char err[512] = "";
    struct tls_cert *c = tls_cert_load_pem(at(cert), at(key), err, sizeof(err));
    bool ok = c == NULL && strstr(err, want1) != NULL && strstr(err, want2) != NULL;
    if (!ok) {
        fprintf(stderr, "line %d: %s/%s -> %p, \"%s\"; want \"%s\" and \"%s\"\n", line, cert, key,
                (void *)c, err, want1, want2);
    }
    CHECK(ok);
    tls_cert_unref(c);
}
#define CHECK_LOAD_FAILS(cert, key, want1, want2)                                                  \
    check_load_fails(cert, key, want1, want2, __LINE__)

static void test_cert_load(void)
{
    struct tls_cert *ec = load("ec.pem", "ec.key");
    struct tls_cert *rsa = load("rsa.pem", "rsa.key");
    struct tls_cert *chain = load("chain.pem", "ec.key");
    CHECK(ec != NULL);
    CHECK(rsa != NULL);
    CHECK(chain != NULL);
    if (ec == NULL || rsa == NULL || chain == NULL) {
        tls_cert_unref(ec);
        tls_cert_unref(rsa);
        tls_cert_unref(chain);
        return;
    }

    char *names[4] = {NULL, NULL, NULL, NULL};
    CHECK(tls_cert_names(ec, names, 4) == 2);
    CHECK_STR(names[0], "a.test");
    CHECK_STR(names[1], "b.test");
    free(names[0]);
    free(names[1]);
    names[0] = NULL;
    CHECK(tls_cert_names(rsa, names, 1) == 1); /* at most max */
    CHECK_STR(names[0], "a.test");
    free(names[0]);
    CHECK(has_name(chain, "b.test"));

    int64_t now = (int64_t)time(NULL);
    int64_t want = now + (int64_t)VALID_DAYS * 86400;
    CHECK(tls_cert_not_after(ec) > want - 600 && tls_cert_not_after(ec) < want + 600);
    CHECK(tls_cert_not_after(rsa) > want - 600 && tls_cert_not_after(rsa) < want + 600);

    /* References: the extra one keeps it alive past the first unref (ASan checks). */
    tls_cert_ref(ec);
    tls_cert_unref(ec);
    CHECK(has_name(ec, "a.test"));

    struct tls_cert *nosan = load("nosan.pem", "nosan.key");
    CHECK(nosan != NULL);
    if (nosan != NULL) {
        CHECK(tls_cert_names(nosan, names, 4) == 0);
        tls_cert_unref(nosan);
    }

    /* The same from memory. */
    FILE *cf = fopen(at("ec.pem"), "r");
    FILE *kf = fopen(at("ec.key"), "r");
    char cpem[8192];
    char kpem[4096];
    size_t clen = cf != NULL ? fread(cpem, 1, sizeof(cpem), cf) : 0;
    size_t klen = kf != NULL ? fread(kpem, 1, sizeof(kpem), kf) : 0;
    if (cf != NULL) {
        fclose(cf);
    }
    if (kf != NULL) {
        fclose(kf);
    }
    char err[256] = "";
    struct tls_cert *mem = tls_cert_from_pem(cpem, clen, kpem, klen, err, sizeof(err));
    CHECK(mem != NULL);
    CHECK(mem != NULL && has_name(mem, "b.test"));
    tls_cert_unref(mem);
    mem = tls_cert_from_pem(cpem, clen, kpem, klen / 2, err, sizeof(err));
    CHECK(mem == NULL);
    CHECK(strstr(err, "PEM_read_bio_PrivateKey") != NULL);

    tls_cert_unref(ec);
    tls_cert_unref(rsa);
    tls_cert_unref(chain);
}

static void test_cert_errors(void)
{
    /* A key of another type, and a key of the same type that is not the leaf's. */
    CHECK_LOAD_FAILS("ec.pem", "rsa.key", "does not match", "ec.pem");
    CHECK_LOAD_FAILS("ec.pem", "wild.key", "does not match", "wild.key");
    CHECK_LOAD_FAILS("rsa.pem", "ec.key", "does not match", "rsa.pem");
    CHECK_LOAD_FAILS("chain.pem", "ca.key", "does not match", "chain.pem");
    /* Missing files are named. */
    CHECK_LOAD_FAILS("missing.pem", "ec.key", "missing.pem", "No such file");
    CHECK_LOAD_FAILS("ec.pem", "missing.key", "missing.key", "No such file");
    /* Garbage. */
    CHECK_LOAD_FAILS("garbage.pem", "ec.key", "garbage.pem", "no PEM CERTIFICATE");
    CHECK_LOAD_FAILS("ec.key", "ec.key", "ec.key", "no PEM CERTIFICATE");
    CHECK_LOAD_FAILS("ec.pem", "garbage.pem", "garbage.pem", "PEM_read_bio_PrivateKey");
    CHECK_LOAD_FAILS("notder.pem", "ec.key", "notder.pem", "d2i_X509");
    CHECK_LOAD_FAILS("ed.pem", "ed.key", "ed.pem", "unsupported key type");
    /* The error text is cut to the caller's buffer, never overrun. */
    char small[8];
    memset(small, 'x', sizeof(small));
    CHECK(tls_cert_load_pem(at("ec.pem"), at("rsa.key"), small, sizeof(small)) == NULL);
    CHECK(strlen(small) == sizeof(small) - 1);
}

/* ---- the store --------------------------------------------------------------------- */

/* Looks name up and says whether it found want (NULL: found nothing). */
static bool finds(struct tls_store *s, const char *name, const struct tls_cert *want)
{
    struct tls_cert *got = tls_store_lookup(s, name);
    tls_cert_unref(got);
    if (got != want) {
        fprintf(stderr, "lookup \"%s\": got %p, want %p\n", name ? name : "(null)", (void *)got,
                (const void *)want);
    }
    return got == want;
}

static void test_store_lookup(struct tls_cert *ec, struct tls_cert *wild)
{
    struct tls_store *s = tls_store_new();
    CHECK(s != NULL);
    if (s == NULL) {
        return;
    }
    CHECK(tls_store_count(s) == 0);
    CHECK(finds(s, "a.test", NULL));
    CHECK(tls_store_put(s, "a.test", ec) == 0);
    CHECK(tls_store_put(s, "*.w.test", wild) == 0);
    CHECK(tls_store_count(s) == 2);

    CHECK(finds(s, "a.test", ec));
    CHECK(finds(s, "b.test", NULL));
    CHECK(finds(s, "x.w.test", wild));
    CHECK(finds(s, "longer-label.w.test", wild));
    CHECK(finds(s, "w.test", NULL));
    CHECK(finds(s, "a.x.w.test", NULL));
    CHECK(finds(s, ".w.test", NULL));
    CHECK(finds(s, "xw.test", NULL));
    CHECK(finds(s, "x.w.test.evil", NULL));
    CHECK(finds(s, "aa.test", NULL));
    CHECK(finds(s, "test", NULL));

    /* Case and a trailing dot do not matter, on either side. */
    CHECK(finds(s, "A.TEST.", ec));
    CHECK(finds(s, "A.Test", ec));
    CHECK(finds(s, "a.test.", ec));
    CHECK(finds(s, "X.W.TEST.", wild));
    CHECK(finds(s, "a.test..", NULL));
    CHECK(tls_store_put(s, "B.Test.", ec) == 0);
    CHECK(finds(s, "b.test", ec));
    CHECK(tls_store_count(s) == 3);

    /* Names the store cannot hold are refused, and never found. */
    CHECK(finds(s, NULL, NULL));
    CHECK(finds(s, "", NULL));
    CHECK(finds(s, ".", NULL));
    char longname[400];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname + 300, ".test", 6);
    CHECK(finds(s, longname, NULL));
    CHECK(tls_store_put(s, longname, ec) < 0);
    CHECK(tls_store_put(s, "", ec) < 0);
    CHECK(tls_store_remove(s, longname) == -ENOENT);
    CHECK(tls_store_remove(s, "") == -ENOENT);
    /* The longest name that fits: 255 characters (and the same with a trailing dot). */
    memset(longname, 'b', 250);
    memcpy(longname + 250, ".test", 6);
    CHECK(strlen(longname) == 255);
    CHECK(tls_store_put(s, longname, wild) == 0);
    CHECK(finds(s, longname, wild));
    memcpy(longname + 255, ".", 2);
    CHECK(finds(s, longname, wild));
    memcpy(longname + 255, "x", 2);
    CHECK(finds(s, longname, NULL));
    CHECK(tls_store_put(s, longname, wild) < 0);
    longname[255] = '\0';
    CHECK(tls_store_remove(s, longname) == 0);

    /* A wildcard entry is itself an exact name. */
    CHECK(finds(s, "*.w.test", wild));

    CHECK(tls_store_remove(s, "A.TEST.") == 0);
    CHECK(finds(s, "a.test", NULL));
    CHECK(tls_store_remove(s, "a.test") == -ENOENT);
    CHECK(tls_store_count(s) == 2);
    CHECK(tls_store_remove(s, "*.w.test") == 0);
    CHECK(finds(s, "x.w.test", NULL));
    CHECK(tls_store_remove(s, "b.test") == 0);
    CHECK(tls_store_count(s) == 0);
    tls_store_free(s);
    tls_store_free(NULL);
}

static void test_store_replace(void)
{
    struct tls_cert *ec = load("ec.pem", "ec.key");
    struct tls_cert *rsa = load("rsa.pem", "rsa.key");
    struct tls_store *s = tls_store_new();
    CHECK(ec != NULL && rsa != NULL && s != NULL);
    if (ec == NULL || rsa == NULL || s == NULL) {
        tls_cert_unref(ec);
        tls_cert_unref(rsa);
        tls_store_free(s);
        return;
    }
    CHECK(tls_store_put(s, "a.test", ec) == 0);
    tls_cert_unref(ec); /* the store holds the only reference now */
    struct tls_cert *held = tls_store_lookup(s, "a.test");
    CHECK(held == ec);

    CHECK(tls_store_put(s, "a.test", rsa) == 0);
    CHECK(tls_store_count(s) == 1);
    CHECK(finds(s, "a.test", rsa));
    /* The replaced certificate is still usable through the reference we hold. */
    CHECK(has_name(held, "b.test"));
    CHECK(tls_cert_not_after(held) > (int64_t)time(NULL));
    tls_cert_unref(held); /* now it is freed: ASan reports a leak otherwise */
    held = NULL;

    /* Putting the same certificate again is harmless. */
    CHECK(tls_store_put(s, "a.test", rsa) == 0);
    CHECK(finds(s, "a.test", rsa));
    tls_cert_unref(rsa);
    CHECK(tls_store_count(s) == 1);
    tls_store_free(s); /* frees rsa */
}

static void test_store_many(struct tls_cert *ec, struct tls_cert *wild)
{
    enum { N = 5000 };
    struct tls_store *s = tls_store_new();
    CHECK(s != NULL);
    if (s == NULL) {
        return;
    }
    char name[64];
    int put_failed = 0;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "host-%d.many.test", i);
        put_failed += tls_store_put(s, name, i % 2 == 0 ? ec : wild) != 0;
    }
    CHECK(put_failed == 0);
    CHECK(tls_store_count(s) == N);
    int missing = 0;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "HOST-%d.many.test.", i);
        missing += !finds(s, name, i % 2 == 0 ? ec : wild);
    }
    CHECK(missing == 0);
    CHECK(finds(s, "host-5000.many.test", NULL));
    /* Remove every other name; the rest stay found. */
    int rm_failed = 0;
    for (int i = 0; i < N; i += 2) {
        snprintf(name, sizeof(name), "host-%d.many.test", i);
        rm_failed += tls_store_remove(s, name) != 0;
    }
    CHECK(rm_failed == 0);
    CHECK(tls_store_count(s) == N / 2);
    missing = 0;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "host-%d.many.test", i);
        missing += !finds(s, name, i % 2 == 0 ? NULL : wild);
    }
    CHECK(missing == 0);
    tls_store_free(s);
}

/* What one tls_store_foreach saw: every entry, in the order visited. */
struct seen {
    size_t n;
    size_t cap;
    char (*names)[256];
    struct tls_cert **certs;
};

static void on_visit(void *arg, const char *name, struct tls_cert *cert)
{
    struct seen *v = arg;
    if (v->n < v->cap) {
        snprintf(v->names[v->n], sizeof(v->names[0]), "%s", name);
        v->certs[v->n] = cert;
    }
    v->n++;
}

static bool seen_init(struct seen *v, size_t cap)
{
    memset(v, 0, sizeof(*v));
    v->cap = cap;
    v->names = calloc(cap, sizeof(*v->names));
    v->certs = calloc(cap, sizeof(*v->certs));
    return v->names != NULL && v->certs != NULL;
}

static void seen_dispose(struct seen *v)
{
    free(v->names);
    free(v->certs);
}

/* How many times name was visited, and whether always with want. */
static size_t seen_count(const struct seen *v, const char *name, const struct tls_cert *want)
{
    size_t hits = 0;
    for (size_t i = 0; i < v->n && i < v->cap; i++) {
        if (strcmp(v->names[i], name) == 0) {
            hits += v->certs[i] == want ? 1 : 1000; /* a wrong certificate shows as >= 1000 */
        }
    }
    return hits;
}

static void test_store_foreach(struct tls_cert *ec, struct tls_cert *wild)
{
    struct tls_store *s = tls_store_new();
    struct seen v = {0};
    bool ready = s != NULL && seen_init(&v, 16);
    CHECK(ready);
    if (!ready) {
        tls_store_free(s);
        seen_dispose(&v);
        return;
    }
    tls_store_foreach(s, on_visit, &v);
    CHECK(v.n == 0);

    /* Names come back normalized, each once, with the certificate it maps to. */
    CHECK(tls_store_put(s, "a.test", ec) == 0);
    CHECK(tls_store_put(s, "B.Test.", ec) == 0);
    CHECK(tls_store_put(s, "*.w.test", wild) == 0);
    CHECK(tls_store_put(s, "c.test", ec) == 0);
    CHECK(tls_store_put(s, "c.test", wild) == 0); /* replaced: visited with wild only */
    v.n = 0;
    tls_store_foreach(s, on_visit, &v);
    CHECK(v.n == 4);
    CHECK(seen_count(&v, "a.test", ec) == 1);
    CHECK(seen_count(&v, "b.test", ec) == 1);
    CHECK(seen_count(&v, "*.w.test", wild) == 1);
    CHECK(seen_count(&v, "c.test", wild) == 1);

    /* A removed name is not visited. */
    CHECK(tls_store_remove(s, "a.test") == 0);
    v.n = 0;
    tls_store_foreach(s, on_visit, &v);
    CHECK(v.n == 3);
    CHECK(seen_count(&v, "a.test", ec) == 0);
    seen_dispose(&v);
    tls_store_free(s);
}

/* A certificate the callback took a reference to outlives its entry and the store. */
static void on_keep(void *arg, const char *name, struct tls_cert *cert)
{
    (void)name;
    struct tls_cert **kept = arg;
    if (*kept == NULL) {
        tls_cert_ref(cert);
        *kept = cert;
    }
}

static void test_store_foreach_keep(void)
{
    struct tls_store *s = tls_store_new();
    struct tls_cert *ec = load("ec.pem", "ec.key");
    CHECK(s != NULL && ec != NULL);
    if (s == NULL || ec == NULL) {
        tls_store_free(s);
        tls_cert_unref(ec);
        return;
    }
    CHECK(tls_store_put(s, "a.test", ec) == 0);
    tls_cert_unref(ec); /* the store holds the only reference */
    struct tls_cert *kept = NULL;
    tls_store_foreach(s, on_keep, &kept);
    CHECK(kept == ec);
    tls_store_free(s);
    if (kept != NULL) {
        CHECK(has_name(kept, "b.test")); /* ASan reports a use after free otherwise */
        tls_cert_unref(kept);
    }
}

/* Every entry is visited exactly once after the table grew and shrank in count. */
static void test_store_foreach_many(struct tls_cert *ec, struct tls_cert *wild)
{
    enum { N = 3000 };
    struct tls_store *s = tls_store_new();
    struct seen v = {0};
    bool ready = s != NULL && seen_init(&v, N + 1);
    CHECK(ready);
    if (!ready) {
        tls_store_free(s);
        seen_dispose(&v);
        return;
    }
    char name[64];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "host-%d.many.test", i);
        tls_store_put(s, name, i % 3 == 0 ? wild : ec);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(name, sizeof(name), "host-%d.many.test", i);
        tls_store_remove(s, name);
    }
    tls_store_foreach(s, on_visit, &v);
    CHECK(v.n == N / 2);
    int wrong = 0;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "host-%d.many.test", i);
        size_t want = i % 2 == 0 ? 0 : 1;
        wrong += seen_count(&v, name, i % 3 == 0 ? wild : ec) != want;
    }
    CHECK(wrong == 0);
    seen_dispose(&v);
    tls_store_free(s);
}

/* Lookups on other threads go on while the store is walked and changed. */
struct lookup_thread {
    struct tls_store *s;
    atomic_bool stop;
    unsigned long found;
};

static void *do_lookups(void *arg)
{
    struct lookup_thread *t = arg;
    while (!atomic_load(&t->stop)) {
        struct tls_cert *c = tls_store_lookup(t->s, "x.w.test");
        t->found += c != NULL;
        tls_cert_unref(c);
    }
    return NULL;
}

static void on_count(void *arg, const char *name, struct tls_cert *cert)
{
    (void)name;
    (void)cert;
    (*(size_t *)arg)++;
}

static void test_store_foreach_concurrent(struct tls_cert *ec, struct tls_cert *wild)
{
    struct lookup_thread t = {.s = tls_store_new()};
    CHECK(t.s != NULL);
    if (t.s == NULL) {
        return;
    }
    atomic_init(&t.stop, false);
    tls_store_put(t.s, "*.w.test", wild);
    pthread_t th[2];
    int started = 0;
    for (int i = 0; i < 2; i++) {
        started += pthread_create(&th[i], NULL, do_lookups, &t) == 0;
    }
    CHECK(started == 2);
    int bad = 0;
    char name[64];
    for (int round = 0; round < 2000; round++) {
        snprintf(name, sizeof(name), "n%d.test", round % 50);
        if (round % 100 < 50) {
            tls_store_put(t.s, name, ec);
        } else {
            tls_store_remove(t.s, name);
        }
        size_t n = 0;
        tls_store_foreach(t.s, on_count, &n);
        bad += n != tls_store_count(t.s);
    }
    CHECK(bad == 0);
    atomic_store(&t.stop, true);
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    tls_store_free(t.s);
}

/* ---- handshakes -------------------------------------------------------------------- */

static SSL_SESSION *ticket; /* the last session the client was handed; owned here */

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    SSL_SESSION_free(ticket);
    ticket = sess;
    return 1; /* we keep the reference */
}

/* Takes the last session out of the callback's hands. */
static SSL_SESSION *take_ticket(void)
{
    SSL_SESSION *t = ticket;
    ticket = NULL;
    return t;
}

static SSL_CTX *client_ctx(uint16_t min_version, uint16_t max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, min_version);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    return ctx;
}

/* One client and one server connection with the ciphertext between them. */
struct pair {
    SSL *cli;
    BIO *cli_in;  /* server -> client; owned by cli */
    BIO *cli_out; /* client -> server; owned by cli */
    bool cli_done;
    bool cli_failed;
    int cli_reason; /* ERR_GET_REASON of the client's failure */
    struct tls_conn *srv;
    int srv_rc;
    char *fed; /* what the server was fed last; kept until consumed */
};

static bool pair_init(struct pair *p, struct tls_server *srv, SSL_CTX *cctx, const char *sni)
{
    memset(p, 0, sizeof(*p));
    p->srv_rc = TLS_WANT_READ;
    p->srv = tls_conn_new(srv);
    p->cli = SSL_new(cctx);
    p->cli_in = BIO_new(BIO_s_mem());
    p->cli_out = BIO_new(BIO_s_mem());
    if (p->srv == NULL || p->cli == NULL || p->cli_in == NULL || p->cli_out == NULL) {
        BIO_free(p->cli_in);
        BIO_free(p->cli_out);
        SSL_free(p->cli);
        tls_conn_free(p->srv);
        return false;
    }
    SSL_set_bio(p->cli, p->cli_in, p->cli_out);
    SSL_set_connect_state(p->cli);
    if (sni != NULL) {
        SSL_set_tlsext_host_name(p->cli, sni);
    }
    return true;
}

static void pair_dispose(struct pair *p)
{
    SSL_free(p->cli);
    p->cli = NULL;
    tls_conn_free(p->srv);
    p->srv = NULL;
    free(p->fed);
    p->fed = NULL;
}

/* Feeds the server everything the client wrote, after what it has not consumed yet.
 * Returns how many new bytes moved. */
static size_t do_to_server(struct pair *p)
{
    const char *rest = NULL;
    size_t keep = p->fed != NULL ? tls_conn_unconsumed(p->srv, &rest) : 0;
    size_t add = BIO_pending(p->cli_out);
    if (add == 0) {
        return 0;
    }
    char *buf = malloc(keep + add);
    if (buf == NULL) {
        return 0;
    }
    if (keep > 0) {
        memcpy(buf, rest, keep);
    }
    BIO_read(p->cli_out, buf + keep, (int)add);
    free(p->fed);
    p->fed = buf;
    tls_conn_feed(p->srv, buf, keep + add);
    return add;
}

/* Hands the client everything the server has to send; returns how many bytes moved. */
static size_t do_to_client(struct pair *p)
{
    size_t len = 0;
    const char *out = tls_conn_output(p->srv, &len);
    if (out == NULL) {
        CHECK(len == 0);
        return 0;
    }
    BIO_write(p->cli_in, out, (int)len);
    tls_conn_output_consume(p->srv, len);
    size_t left = 1;
    CHECK(tls_conn_output(p->srv, &left) == NULL && left == 0);
    return len;
}

static void do_client_step(struct pair *p)
{
    if (p->cli_done || p->cli_failed) {
        return;
    }
    ERR_clear_error();
    int rc = SSL_do_handshake(p->cli);
    if (rc == 1) {
        p->cli_done = true;
    } else if (SSL_get_error(p->cli, rc) != SSL_ERROR_WANT_READ) {
        p->cli_failed = true;
        p->cli_reason = ERR_GET_REASON(ERR_peek_error());
    }
    ERR_clear_error();
}

/* Runs both sides until no bytes move. Returns true when both finished the handshake. */
static bool do_handshake(struct pair *p)
{
    for (int round = 0; round < 20; round++) {
        do_client_step(p);
        size_t moved = do_to_server(p);
        if (p->srv_rc == TLS_WANT_READ) {
            p->srv_rc = tls_conn_handshake(p->srv);
        }
        moved += do_to_client(p);
        if (moved == 0 && round > 0) {
            break;
        }
    }
    return p->cli_done && p->srv_rc == TLS_OK;
}

/* Client -> server: writes data, then reads everything the server can decrypt into buf. */
static size_t do_client_to_server(struct pair *p, const char *data, size_t n, char *buf, size_t cap,
                                  int *last)
{
    ERR_clear_error();
    if (n > 0 && SSL_write(p->cli, data, (int)n) != (int)n) {
        return 0;
    }
    do_to_server(p);
    size_t got = 0;
    for (;;) {
        size_t room = cap - got < 1000 ? cap - got : 1000; /* small reads: many records */
        int rc = room > 0 ? tls_conn_read(p->srv, buf + got, room) : TLS_WANT_READ;
        if (rc <= 0) {
            *last = rc;
            break;
        }
        got += (size_t)rc;
    }
    do_to_client(p); /* anything the server had to say (tickets, alerts) */
    return got;
}

/* Server -> client: the same the other way. */
static size_t do_server_to_client(struct pair *p, const char *data, size_t n, char *buf, size_t cap,
                                  int *last)
{
    if (n > 0 && tls_conn_write(p->srv, data, n) != 0) {
        return 0;
    }
    do_to_client(p);
    size_t got = 0;
    ERR_clear_error();
    for (;;) {
        int rc = got < cap ? SSL_read(p->cli, buf + got, (int)(cap - got)) : -1;
        if (rc <= 0) {
            *last = got < cap ? SSL_get_error(p->cli, rc) : SSL_ERROR_WANT_READ;
            break;
        }
        got += (size_t)rc;
    }
    ERR_clear_error();
    do_to_server(p); /* anything the client had to say */
    return got;
}

/* A request and a response, as moat would carry. BoringSSL sends TLS 1.3 tickets with the
 * server's first write, so this is also what hands the client its ticket. */
static bool do_exchange(struct pair *p)
{
    char buf[16];
    int last = 0;
    bool ok = do_client_to_server(p, "GET", 3, buf, sizeof(buf), &last) == 3 &&
              memcmp(buf, "GET", 3) == 0;
    ok = ok && do_server_to_client(p, "200", 3, buf, sizeof(buf), &last) == 3 &&
         memcmp(buf, "200", 3) == 0;
    return ok;
}

/* The first DNS name of the certificate the client received, or "". */
static void peer_name(SSL *cli, char *out, size_t cap)
{
    snprintf(out, cap, "%s", "");
    X509 *x = SSL_get_peer_certificate(cli);
    if (x == NULL) {
        return;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    if (sans != NULL && sk_GENERAL_NAME_num(sans) > 0) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, 0);
        if (gn->type == GEN_DNS) {
            snprintf(out, cap, "%.*s", ASN1_STRING_length(gn->d.dNSName),
                     (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
        }
    }
    GENERAL_NAMES_free(sans);
    X509_free(x);
}

static int peer_key_type(SSL *cli)
{
    X509 *x = SSL_get_peer_certificate(cli);
    EVP_PKEY *k = x != NULL ? X509_get_pubkey(x) : NULL;
    int type = k != NULL ? EVP_PKEY_id(k) : EVP_PKEY_NONE;
    EVP_PKEY_free(k);
    X509_free(x);
    return type;
}

struct hs_case {
    const char *sni;
    bool ok;
    const char *peer;      /* first SAN of the served certificate */
    int key_type;          /* EVP_PKEY_EC / EVP_PKEY_RSA */
    const char *srv_error; /* tls_conn_error on failure */
};

static void check_handshake(struct tls_server *srv, SSL_CTX *cctx, const struct hs_case *hc,
                            int line)
{
    struct pair p;
    if (!pair_init(&p, srv, cctx, hc->sni)) {
        CHECK(!"pair_init");
        return;
    }
    bool ok = do_handshake(&p);
    char peer[256];
    peer_name(p.cli, peer, sizeof(peer));
    bool good;
    if (hc->ok) {
        good = ok && strcmp(peer, hc->peer) == 0 && peer_key_type(p.cli) == hc->key_type;
    } else {
        good = !ok && p.srv_rc == TLS_ERROR && p.cli_failed &&
               p.cli_reason == SSL_R_TLSV1_ALERT_UNRECOGNIZED_NAME &&
               strcmp(tls_conn_error(p.srv), hc->srv_error) == 0;
    }
    if (!good) {
        fprintf(stderr,
                "line %d: SNI %s: ok %d srv_rc %d (%s) cli_failed %d reason %d peer \"%s\"\n", line,
                hc->sni ? hc->sni : "(none)", ok, p.srv_rc, tls_conn_error(p.srv), p.cli_failed,
                p.cli_reason, peer);
    }
    CHECK(good);
    if (ok) {
        const char *sni = tls_conn_sni(p.srv);
        CHECK(hc->sni == NULL ? sni == NULL : sni != NULL && strcmp(sni, hc->sni) == 0);
    }
    pair_dispose(&p);
}
#define CHECK_HANDSHAKE(srv, cctx, ...)                                                            \
    do {                                                                                           \
        const struct hs_case hc_ = {__VA_ARGS__};                                                  \
        check_handshake(srv, cctx, &hc_, __LINE__);                                                \
    } while (0)

static const char NO_CERT[] = "no certificate for the SNI name";
static const char NO_SNI[] = "client sent no SNI and no default_sni is configured";

static void test_handshake_sni(struct tls_store *store)
{
    char err[256] = "";
    struct tls_server_opts opts = {.default_sni = NULL, .session_tickets = false};
    struct tls_server *srv = tls_server_new(store, &opts, err, sizeof(err));
    opts.default_sni = "b.test";
    struct tls_server *dflt = tls_server_new(store, &opts, err, sizeof(err));
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    CHECK(srv != NULL && dflt != NULL && cctx != NULL);
    if (srv == NULL || dflt == NULL || cctx == NULL) {
        fprintf(stderr, "setup: %s\n", err);
        tls_server_free(srv);
        tls_server_free(dflt);
        SSL_CTX_free(cctx);
        return;
    }
    CHECK_HANDSHAKE(srv, cctx, "a.test", true, "a.test", EVP_PKEY_EC, NULL);
    CHECK_HANDSHAKE(srv, cctx, "A.TEST", true, "a.test", EVP_PKEY_EC, NULL);
    CHECK_HANDSHAKE(srv, cctx, "b.test", true, "a.test", EVP_PKEY_RSA, NULL);
    CHECK_HANDSHAKE(srv, cctx, "x.w.test", true, "*.w.test", EVP_PKEY_EC, NULL);
    CHECK_HANDSHAKE(srv, cctx, "unknown.test", false, NULL, 0, NO_CERT);
    CHECK_HANDSHAKE(srv, cctx, "w.test", false, NULL, 0, NO_CERT);
    CHECK_HANDSHAKE(srv, cctx, "a.x.w.test", false, NULL, 0, NO_CERT);
    CHECK_HANDSHAKE(srv, cctx, NULL, false, NULL, 0, NO_SNI);
    /* default_sni serves clients without SNI, never clients with an unknown one. */
    CHECK_HANDSHAKE(dflt, cctx, NULL, true, "a.test", EVP_PKEY_RSA, NULL);
    CHECK_HANDSHAKE(dflt, cctx, "a.test", true, "a.test", EVP_PKEY_EC, NULL);
    CHECK_HANDSHAKE(dflt, cctx, "unknown.test", false, NULL, 0, NO_CERT);
    /* An address in SNI (RFC 6066 forbids it) counts as no SNI. */
    CHECK_HANDSHAKE(dflt, cctx, "127.0.0.1", true, "a.test", EVP_PKEY_RSA, NULL);
    CHECK_HANDSHAKE(dflt, cctx, "2001:db8::1", true, "a.test", EVP_PKEY_RSA, NULL);
    CHECK_HANDSHAKE(srv, cctx, "127.0.0.1", false, NULL, 0, NO_SNI);

    /* TLS 1.2 with both key types. */
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    CHECK_HANDSHAKE(srv, c12, "a.test", true, "a.test", EVP_PKEY_EC, NULL);
    CHECK_HANDSHAKE(srv, c12, "b.test", true, "a.test", EVP_PKEY_RSA, NULL);
    CHECK_HANDSHAKE(srv, c12, "unknown.test", false, NULL, 0, NO_CERT);
    SSL_CTX_free(c12);

    tls_server_free(srv);
    tls_server_free(dflt);
    SSL_CTX_free(cctx);
}

static void test_handshake_details(struct tls_store *store)
{
    char err[256] = "";
    struct tls_server_opts opts = {.default_sni = NULL, .session_tickets = false};
    struct tls_server *srv = tls_server_new(store, &opts, err, sizeof(err));
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    SSL_CTX *c12 = client_ctx(TLS1_2_VERSION, TLS1_2_VERSION);
    SSL_CTX *c11 = client_ctx(TLS1_VERSION, TLS1_1_VERSION);
    CHECK(srv != NULL && cctx != NULL && c12 != NULL && c11 != NULL);
    struct pair p;
    if (srv == NULL || cctx == NULL || c12 == NULL || c11 == NULL ||
        !pair_init(&p, srv, cctx, "a.test")) {
        tls_server_free(srv);
        SSL_CTX_free(cctx);
        SSL_CTX_free(c12);
        SSL_CTX_free(c11);
        return;
    }

    /* ALPN: we speak http/1.1 only. */
    static const uint8_t offer[] = "\x02h2\x08http/1.1";
    SSL_set_alpn_protos(p.cli, offer, sizeof(offer) - 1);
    CHECK(do_handshake(&p));
    const uint8_t *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(p.cli, &sel, &sel_len);
    CHECK(sel_len == 8 && memcmp(sel, "http/1.1", 8) == 0);
    CHECK_STR(tls_conn_version(p.srv), "TLSv1.3");
    CHECK(tls_conn_cipher(p.srv)[0] != '\0');
    CHECK_STR(tls_conn_sni(p.srv), "a.test");
    CHECK(!tls_conn_resumed(p.srv));

    /* Application data both ways, small and then larger than a record. */
    char buf[70000];
    int last = 0;
    CHECK(do_client_to_server(&p, "ping", 4, buf, sizeof(buf), &last) == 4);
    CHECK(last == TLS_WANT_READ && memcmp(buf, "ping", 4) == 0);
    CHECK(do_server_to_client(&p, "pong!", 5, buf, sizeof(buf), &last) == 5);
    CHECK(last == SSL_ERROR_WANT_READ && memcmp(buf, "pong!", 5) == 0);
    static char big[65536];
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (char)(i * 7 + 3);
    }
    CHECK(do_client_to_server(&p, big, sizeof(big), buf, sizeof(buf), &last) == sizeof(big));
    CHECK(memcmp(buf, big, sizeof(big)) == 0);
    CHECK(do_server_to_client(&p, big, sizeof(big), buf, sizeof(buf), &last) == sizeof(big));
    CHECK(memcmp(buf, big, sizeof(big)) == 0);

    /* Plaintext left inside the connection after a short read. */
    ERR_clear_error();
    CHECK(SSL_write(p.cli, "0123456789", 10) == 10);
    do_to_server(&p);
    CHECK(tls_conn_read(p.srv, buf, 4) == 4);
    CHECK(tls_conn_has_plaintext(p.srv));
    CHECK(tls_conn_read(p.srv, buf + 4, sizeof(buf) - 4) == 6);
    CHECK(memcmp(buf, "0123456789", 10) == 0);
    CHECK(!tls_conn_has_plaintext(p.srv));
    CHECK(tls_conn_read(p.srv, buf, sizeof(buf)) == TLS_WANT_READ);

    /* The client closes: the server sees TLS_CLOSED; the server's close_notify reaches
     * the client. */
    SSL_shutdown(p.cli);
    CHECK(do_client_to_server(&p, NULL, 0, buf, sizeof(buf), &last) == 0);
    CHECK(last == TLS_CLOSED);
    tls_conn_shutdown(p.srv);
    CHECK(do_server_to_client(&p, NULL, 0, buf, sizeof(buf), &last) == 0);
    CHECK(last == SSL_ERROR_ZERO_RETURN);
    pair_dispose(&p);

    /* ALPN without a common protocol: no ALPN, the handshake goes on. No ALPN: none. */
    static const uint8_t h2only[] = "\x02h2";
    if (pair_init(&p, srv, cctx, "a.test")) {
        SSL_set_alpn_protos(p.cli, h2only, sizeof(h2only) - 1);
        CHECK(do_handshake(&p));
        SSL_get0_alpn_selected(p.cli, &sel, &sel_len);
        CHECK(sel_len == 0);
        pair_dispose(&p);
    }
    if (pair_init(&p, srv, c12, "a.test")) {
        CHECK(do_handshake(&p));
        SSL_get0_alpn_selected(p.cli, &sel, &sel_len);
        CHECK(sel_len == 0);
        CHECK_STR(tls_conn_version(p.srv), "TLSv1.2");
        CHECK(strstr(tls_conn_cipher(p.srv), "ECDHE") != NULL);
        CHECK(do_client_to_server(&p, "ping", 4, buf, sizeof(buf), &last) == 4);
        pair_dispose(&p);
    }

    /* A client that stops at TLS 1.1 is refused. */
    if (pair_init(&p, srv, c11, "a.test")) {
        CHECK(!do_handshake(&p));
        CHECK(p.srv_rc == TLS_ERROR);
        CHECK(p.cli_failed);
        CHECK(p.cli_reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
        CHECK(tls_conn_error(p.srv)[0] != '\0');
        pair_dispose(&p);
    }

    /* Garbage instead of a ClientHello. */
    struct tls_conn *tc = tls_conn_new(srv);
    CHECK(tc != NULL);
    if (tc != NULL) {
        static const char junk[] = "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
        tls_conn_feed(tc, junk, sizeof(junk) - 1);
        CHECK(tls_conn_handshake(tc) == TLS_ERROR);
        CHECK(tls_conn_error(tc)[0] != '\0');
        tls_conn_free(tc);
    }
    tls_conn_free(NULL);

    tls_server_free(srv);
    SSL_CTX_free(cctx);
    SSL_CTX_free(c12);
    SSL_CTX_free(c11);
}

/* The certificate is replaced and every reference outside the handshake dropped while the
 * handshake is half done: it must finish with the old chain (ASan checks the memory). */
static void test_handshake_replace_midway(void)
{
    char err[256] = "";
    struct tls_store *store = tls_store_new();
    struct tls_cert *ec = load("ec.pem", "ec.key");
    struct tls_cert *chain = load("chain.pem", "ec.key");
    struct tls_server_opts opts = {.default_sni = NULL, .session_tickets = false};
    struct tls_server *srv = store != NULL ? tls_server_new(store, &opts, err, sizeof(err)) : NULL;
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, TLS1_3_VERSION);
    struct pair p;
    bool ready = store != NULL && ec != NULL && chain != NULL && srv != NULL && cctx != NULL;
    CHECK(ready);
    if (ready && pair_init(&p, srv, cctx, "a.test")) {
        tls_store_put(store, "a.test", chain);
        tls_cert_unref(chain);
        chain = NULL;
        do_client_step(&p);
        do_to_server(&p);
        CHECK(tls_conn_handshake(p.srv) == TLS_WANT_READ); /* the server flight is out */
        CHECK(tls_store_put(store, "a.test", ec) == 0);    /* frees the chain's tls_cert */
        CHECK(do_handshake(&p));
        STACK_OF(X509) *sent = SSL_get_peer_cert_chain(p.cli);
        CHECK(sent != NULL && sk_X509_num(sent) == 2); /* leaf and CA */
        int last = 0;
        char buf[8];
        CHECK(do_client_to_server(&p, "hi", 2, buf, sizeof(buf), &last) == 2);
        pair_dispose(&p);

        /* The next handshake gets the replacement, which has no chain. */
        CHECK(pair_init(&p, srv, cctx, "a.test"));
        CHECK(do_handshake(&p));
        sent = SSL_get_peer_cert_chain(p.cli);
        CHECK(sent != NULL && sk_X509_num(sent) == 1);
        pair_dispose(&p);
    }
    tls_server_free(srv);
    tls_store_free(store);
    tls_cert_unref(ec);
    tls_cert_unref(chain);
    SSL_CTX_free(cctx);
}

/* Connects offering sess (may be NULL); says whether both sides report a resumption. */
static bool resumes(struct tls_server *srv, SSL_CTX *cctx, SSL_SESSION *sess, int line)
{
    struct pair p;
    if (!pair_init(&p, srv, cctx, "a.test")) {
        return false;
    }
    if (sess != NULL) {
        SSL_set_session(p.cli, sess);
    }
    bool ok = do_handshake(&p) && do_exchange(&p);
    bool srv_says = ok && tls_conn_resumed(p.srv);
    bool cli_says = ok && SSL_session_reused(p.cli);
    if (!ok || srv_says != cli_says) {
        fprintf(stderr, "line %d: handshake %d, server resumed %d, client resumed %d\n", line, ok,
                srv_says, cli_says);
    }
    CHECK(ok);
    CHECK(srv_says == cli_says);
    pair_dispose(&p);
    return srv_says;
}
#define RESUMES(srv, cctx, sess) resumes(srv, cctx, sess, __LINE__)

static void test_resumption(struct tls_store *store, uint16_t version)
{
    char err[256] = "";
    struct tls_server_opts opts = {.default_sni = NULL, .session_tickets = true};
    struct tls_server *srv = tls_server_new(store, &opts, err, sizeof(err));
    opts.session_tickets = false;
    struct tls_server *none = tls_server_new(store, &opts, err, sizeof(err));
    SSL_CTX *cctx = client_ctx(version, version);
    CHECK(srv != NULL && none != NULL && cctx != NULL);
    if (srv == NULL || none == NULL || cctx == NULL) {
        tls_server_free(srv);
        tls_server_free(none);
        SSL_CTX_free(cctx);
        return;
    }
    SSL_SESSION_free(take_ticket());
    CHECK(!RESUMES(srv, cctx, NULL));
    SSL_SESSION *t1 = take_ticket(); /* under key 1 */
    CHECK(t1 != NULL);
    CHECK(RESUMES(srv, cctx, t1));
    CHECK(RESUMES(srv, cctx, t1));

    tls_server_rotate_tickets(srv); /* key 1 decrypts only */
    SSL_SESSION_free(take_ticket());
    CHECK(RESUMES(srv, cctx, t1));
    SSL_SESSION *t2 = take_ticket(); /* renewed under key 2 */
    CHECK(t2 != NULL);

    tls_server_rotate_tickets(srv); /* key 1 is gone, key 2 decrypts only */
    CHECK(!RESUMES(srv, cctx, t1));
    CHECK(RESUMES(srv, cctx, t2));
    SSL_SESSION_free(take_ticket());

    /* A ticket from another server is not accepted; nor is any without tickets. */
    CHECK(!RESUMES(none, cctx, t2));
    SSL_SESSION *t3 = take_ticket();
    if (version == TLS1_3_VERSION) {
        CHECK(t3 == NULL); /* no ticket was sent */
    }
    if (t3 != NULL) {
        CHECK(!RESUMES(none, cctx, t3));
    }
    SSL_SESSION_free(t3);
    SSL_SESSION_free(take_ticket());

    SSL_SESSION_free(t1);
    SSL_SESSION_free(t2);
    tls_server_free(srv);
    tls_server_free(none);
    SSL_CTX_free(cctx);
}

static void test_server_new(struct tls_store *store)
{
    char err[64] = "";
    struct tls_server_opts opts = {
        .default_sni = "a.test", .session_tickets = true, .ticket_rotation_ms = 1000};
    struct tls_server *srv = tls_server_new(store, &opts, err, sizeof(err));
    CHECK(srv != NULL);
    tls_server_rotate_tickets(srv);
    tls_server_free(srv);
    tls_server_free(NULL);
}

int main(void)
{
    if (!make_certs()) {
        CHECK(!"could not make test certificates with openssl");
        remove_certs();
        return check_report();
    }
    test_cert_load();
    test_cert_errors();

    struct tls_cert *ec = load("ec.pem", "ec.key");
    struct tls_cert *rsa = load("rsa.pem", "rsa.key");
    struct tls_cert *wild = load("wild.pem", "wild.key");
    struct tls_store *store = tls_store_new();
    if (ec != NULL && rsa != NULL && wild != NULL && store != NULL) {
        test_store_lookup(ec, wild);
        test_store_replace();
        test_store_many(ec, wild);
        test_store_foreach(ec, wild);
        test_store_foreach_keep();
        test_store_foreach_many(ec, wild);
        test_store_foreach_concurrent(ec, wild);
        tls_store_put(store, "a.test", ec);
        tls_store_put(store, "b.test", rsa);
        tls_store_put(store, "*.w.test", wild);
        test_server_new(store);
        test_handshake_sni(store);
        test_handshake_details(store);
        test_handshake_replace_midway();
        test_resumption(store, TLS1_3_VERSION);
        test_resumption(store, TLS1_2_VERSION);
    } else {
        CHECK(!"could not load the test certificates");
    }
    tls_store_free(store);
    tls_cert_unref(ec);
    tls_cert_unref(rsa);
    tls_cert_unref(wild);
    SSL_SESSION_free(take_ticket());
    remove_certs();
    return check_report();
}
