/* store.c - the SNI certificate store: a name -> certificate map shared by all threads. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tls_int.h"

#define STORE_NAME_MAX 256

struct store_entry {
    struct store_entry *next;
    struct tls_cert *cert;
    char name[];
};

/* Readers (handshakes on workers) take the read lock; the control thread writes. */
struct tls_store {
    pthread_rwlock_t lock;
    struct store_entry **buckets;
    size_t n_buckets;
    size_t count;
};

static uint64_t do_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Lower-cases and strips a trailing dot; returns -1 when the name does not fit. */
static int do_normalize(const char *in, char *out)
{
    size_t n = strlen(in);
    if (n > 0 && in[n - 1] == '.') {
        n--;
    }
    if (n == 0 || n >= STORE_NAME_MAX) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[n] = '\0';
    return 0;
}

struct tls_store *tls_store_new(void)
{
    struct tls_store *store = calloc(1, sizeof(*store));
    if (store == NULL) {
        return NULL;
    }
    store->n_buckets = 64;
    store->buckets = calloc(store->n_buckets, sizeof(*store->buckets));
    if (store->buckets == NULL || pthread_rwlock_init(&store->lock, NULL) != 0) {
        free(store->buckets);
        free(store);
        return NULL;
    }
    return store;
}

void tls_store_free(struct tls_store *store)
{
    if (store == NULL) {
        return;
    }
    for (size_t i = 0; i < store->n_buckets; i++) {
        struct store_entry *e = store->buckets[i];
        while (e != NULL) {
            struct store_entry *next = e->next;
            tls_cert_unref(e->cert);
            free(e);
            e = next;
        }
    }
    free(store->buckets);
    pthread_rwlock_destroy(&store->lock);
    free(store);
}

static struct store_entry **do_find(struct tls_store *store, const char *name)
{
    struct store_entry **pp = &store->buckets[do_hash(name) % store->n_buckets];
    while (*pp != NULL && strcmp((*pp)->name, name) != 0) {
        pp = &(*pp)->next;
    }
    return pp;
}

/* Doubles the table so chains stay short as on-demand names accumulate. */
static void do_grow(struct tls_store *store)
{
    size_t n = store->n_buckets * 2;
    struct store_entry **b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return; /* longer chains, still correct */
    }
    for (size_t i = 0; i < store->n_buckets; i++) {
        struct store_entry *e = store->buckets[i];
        while (e != NULL) {
            struct store_entry *next = e->next;
            size_t j = do_hash(e->name) % n;
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(store->buckets);
    store->buckets = b;
    store->n_buckets = n;
}

int tls_store_put(struct tls_store *store, const char *name, struct tls_cert *cert)
{
    char key[STORE_NAME_MAX];
    if (do_normalize(name, key) != 0) {
        return -EINVAL;
    }
    size_t klen = strlen(key);
    struct store_entry *fresh = malloc(sizeof(*fresh) + klen + 1);
    if (fresh == NULL) {
        return -ENOMEM;
    }
    memcpy(fresh->name, key, klen + 1);
    fresh->cert = cert;
    tls_cert_ref(cert);

    struct tls_cert *old = NULL;
    pthread_rwlock_wrlock(&store->lock);
    struct store_entry **pp = do_find(store, key);
    if (*pp != NULL) {
        struct store_entry *e = *pp;
        old = e->cert;
        fresh->next = e->next;
        *pp = fresh;
        free(e);
    } else {
        fresh->next = NULL;
        *pp = fresh;
        store->count++;
        if (store->count > store->n_buckets * 2) {
            do_grow(store);
        }
    }
    pthread_rwlock_unlock(&store->lock);
    if (old != NULL) {
        tls_cert_unref(old); /* handshakes holding it keep it alive */
    }
    return 0;
}

int tls_store_remove(struct tls_store *store, const char *name)
{
    char key[STORE_NAME_MAX];
    if (do_normalize(name, key) != 0) {
        return -ENOENT;
    }
    struct store_entry *gone = NULL;
    pthread_rwlock_wrlock(&store->lock);
    struct store_entry **pp = do_find(store, key);
    if (*pp != NULL) {
        gone = *pp;
        *pp = gone->next;
        store->count--;
    }
    pthread_rwlock_unlock(&store->lock);
    if (gone == NULL) {
        return -ENOENT;
    }
    tls_cert_unref(gone->cert);
    free(gone);
    return 0;
}

static struct tls_cert *do_get(struct tls_store *store, const char *key)
{
    struct store_entry *e = *do_find(store, key);
    if (e == NULL) {
        return NULL;
    }
    tls_cert_ref(e->cert);
    return e->cert;
}

struct tls_cert *tls_store_lookup(struct tls_store *store, const char *name)
{
    char key[STORE_NAME_MAX + 2];
    if (name == NULL || do_normalize(name, key + 1) != 0) {
        return NULL;
    }
    pthread_rwlock_rdlock(&store->lock);
    struct tls_cert *cert = do_get(store, key + 1);
    if (cert == NULL) {
        /* One label up: "a.example.com" -> "*.example.com", written in place before it. */
        char *dot = strchr(key + 1, '.');
        if (dot != NULL && dot != key + 1 && dot[1] != '\0') {
            char *star = dot - 1;
            star[0] = '*';
            cert = do_get(store, star);
        }
    }
    pthread_rwlock_unlock(&store->lock);
    return cert;
}

size_t tls_store_count(struct tls_store *store)
{
    pthread_rwlock_rdlock(&store->lock);
    size_t n = store->count;
    pthread_rwlock_unlock(&store->lock);
    return n;
}

void tls_store_foreach(struct tls_store *store, tls_store_visit_cb cb, void *arg)
{
    pthread_rwlock_rdlock(&store->lock);
    for (size_t i = 0; i < store->n_buckets; i++) {
        for (struct store_entry *e = store->buckets[i]; e != NULL; e = e->next) {
            cb(arg, e->name, e->cert);
        }
    }
    pthread_rwlock_unlock(&store->lock);
}
