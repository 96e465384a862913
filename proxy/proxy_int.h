/* proxy_int.h - the proxy's internal structures, shared by the files of proxy/ only. */
#ifndef MOAT_PX_INT_H
#define MOAT_PX_INT_H

#include <llhttp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

#include "acme.h"
#include "config.h"
#include "http1.h"
#include "log.h"
#include "tls.h"

#define PX_READ_BUF (64 * 1024)
#define PX_OUT_BUF (64 * 1024)
#define PX_WRITE_HIGH (256 * 1024) /* stop reading the other side above this */
#define PX_WRITE_LOW (64 * 1024)   /* and resume below this */
#define PX_RESP_HEAD_MAX (32 * 1024)
#define PX_LINGER_MS 2000

/* A timer whose deadline moves on every request: the libuv timer is touched only when the
 * new deadline comes earlier than the one armed, and a fire before the deadline re-arms
 * for the rest. Most moves are then a store instead of two heap operations. */
struct px_deadline {
    uv_timer_t timer; /* its data is the owner's */
    uint64_t due;     /* loop time in ms; 0 when disarmed */
    uv_timer_cb cb;
};

void px_deadline_init(uv_loop_t *loop, struct px_deadline *d, uv_timer_cb cb, void *owner);
void px_deadline_set(struct px_deadline *d, uint64_t ms);
void px_deadline_clear(struct px_deadline *d);

/* ---- statistics: each counter has one writer (its worker), read by the admin page ---- */

/* A single-writer counter: a plain load and store (no locked add) is enough, and a
 * reader on another thread sees a whole value. */
static inline void px_stat_add(_Atomic uint64_t *x, uint64_t n)
{
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint64_t px_stat_get(_Atomic uint64_t *x)
{
    return atomic_load_explicit(x, memory_order_relaxed);
}

#define PX_HIST_BUCKETS 11 /* upper bounds in px_hist_bounds_us, then +Inf */

extern const uint64_t px_hist_bounds_us[PX_HIST_BUCKETS];

struct px_hist {
    _Atomic uint64_t bucket[PX_HIST_BUCKETS + 1]; /* not cumulative; the page sums them */
    _Atomic uint64_t sum_us;
    _Atomic uint64_t count;
};

void px_hist_observe(struct px_hist *h, uint64_t us);

/* Responses by status code: a few slots per worker, claimed by the first code seen; codes
 * past the last slot are counted under "other". */
#define PX_CODE_SLOTS 24

struct px_codes {
    _Atomic uint32_t code[PX_CODE_SLOTS];
    _Atomic uint64_t n[PX_CODE_SLOTS + 1];
};

void px_codes_count(struct px_codes *c, int status);

/* One per site name, kept across reloads so the counters continue. */
struct px_site_stats {
    struct px_site_stats *next;
    struct px_codes *w; /* [n_workers] */
    char name[256];
};

struct px_target_stats {
    struct px_hist latency; /* request sent -> response head */
    _Atomic uint64_t failures;
};

struct px_worker_stats {
    _Atomic uint64_t conns_total;
    _Atomic uint64_t conns_active;
    _Atomic uint64_t handshakes;
    _Atomic uint64_t handshake_failures;
    _Atomic uint64_t resumptions;
    _Atomic uint64_t od_waits;
    struct px_hist od_wait;
    struct px_codes unmatched; /* requests that matched no site */
};

/* ---- upstream addresses (resolved on the control thread, read by workers) ---------- */

struct px_addrs {
    atomic_int refs;
    size_t n;
    struct sockaddr_storage addr[];
};

void px_addrs_unref(struct px_addrs *a);

struct px_hcheck; /* health.c */
struct px_worker;

/* One upstream host:port. The control thread owns it for the server's whole life (a
 * reload reuses it by its label, keeping its addresses, pools and health); its address set
 * is swapped under lock and workers take a reference while dialling. */
struct px_target {
    unsigned id; /* index of its per-worker pool */
    char *host;
    uint16_t port;
    char label[300]; /* "host:port" for logs */
    bool literal;    /* an IP address: never resolved */
    bool answered;   /* the first resolution finished (either way) */
    pthread_mutex_t lock;
    struct px_addrs *addrs;
    bool resolving;  /* its resolve timer runs */
    uv_timer_t resolve_timer; /* control loop */
    struct px_server *srv;
    /* Health: active checks run on the control loop and set down; passive ones count
     * failures from the workers and set down_until (px_now_ms time). */
    atomic_bool down;
    _Atomic uint64_t down_until;
    atomic_uint fails;
    _Atomic uint64_t fails_since;
    const struct cfg_health *check; /* active check settings, from the serving config */
    uv_timer_t check_timer;
    struct px_hcheck *checking; /* a check in flight */
    struct px_target_stats *stats; /* [n_workers] */
};

/* Whether the target is in rotation now. */
bool px_target_up(struct px_target *t);
/* A worker saw a request to the target fail at the connection level. */
void px_target_failed(struct px_worker *w, struct px_target *t, const struct cfg_health *h);

struct px_addrs *px_target_addrs(struct px_target *t);
/* An IP literal's one address, known without resolving. */
void px_target_literal(struct px_target *t);

struct px_route {
    char *prefix;
    size_t prefix_len;
    unsigned *rr; /* [n_workers] round robin cursors */
    struct px_target **targets;
    size_t n_targets;
    enum cfg_balance balance;
    const struct cfg_health *health;
};

struct px_site {
    char **hosts;
    size_t n_hosts;
    bool acme; /* no certificate files: its names may be obtained on demand */
    struct px_route *routes; /* sorted by prefix length, longest first */
    size_t n_routes;
    struct px_site_stats *stats;
};

/* Immutable once built from a config; targets belong to the server. */
struct px_router {
    struct px_site *sites;
    size_t n_sites;
};

/* Builds the router of a config on the control thread, adding the targets it names to the
 * server's table. */
struct px_router *px_router_new(const struct cfg *cfg, struct px_server *srv);
void px_router_free(struct px_router *r);
const struct px_site *px_router_site(const struct px_router *r, const char *host, size_t len);
const struct px_route *px_site_route(const struct px_site *s, const char *path, size_t len);

/* ---- workers ------------------------------------------------------------------------ */

struct px_conn;
struct px_upconn;

struct px_pool {
    struct px_upconn *idle; /* most recently used first */
    size_t n_idle;
    unsigned next_addr;
    unsigned active; /* requests in flight, for least_conn */
};

/* A configured listen address: one SO_REUSEPORT socket per worker, bound and listening
 * on the control thread (where a failure can still refuse a config); each worker takes its
 * descriptor when it adopts a generation naming it. */
struct px_lsock {
    struct px_lsock *next; /* the server's list */
    char key[300];         /* "https host:port" as configured */
    char addr[64];         /* the address bound */
    uint16_t port;
    bool tls;
    unsigned n_fds;
    atomic_int *fds; /* [n_workers]; -1 once a worker took it or it was closed */
};

/* Everything a connection reads of the configuration, swapped whole by a reload. Each
 * connection holds the generation it started with; a new request moves it to the newest. */
struct px_gen {
    atomic_int refs;
    unsigned id;
    struct cfg *cfg;
    struct px_router *router;
    struct px_lsock **lsocks;
    size_t n_lsocks;
    size_t n_targets; /* the server's target table size when it was built */
    uint16_t https_port; /* for redirects */
};

struct px_gen *px_gen_ref(struct px_gen *g);
void px_gen_unref(struct px_gen *g);
/* Whether the generation's config names this listen socket set. */
bool px_gen_names(const struct px_gen *g, const struct px_lsock *ls);

struct px_listener {
    uv_tcp_t tcp;
    struct px_worker *w;
    struct px_lsock *ls;
    bool tls;
};

enum px_worker_msg {
    PX_MSG_NONE = 0,
    PX_MSG_DRAIN = 1, /* stop accepting, finish in-flight work */
    PX_MSG_FORCE = 2, /* close everything now */
    PX_MSG_GEN = 4,   /* adopt next_gen */
};

/* A question a worker puts to the control thread (a certificate on demand, a challenge
 * another instance stored) and the answer that comes back. The worker owns conn: it sets
 * it to NULL when the connection closes first; the control thread never reads it. */
enum px_ask_kind {
    PX_ASK_CERT = 0,
    PX_ASK_ALPN_CHALLENGE,
    PX_ASK_HTTP_CHALLENGE,
};

struct px_ask {
    struct px_ask *next;
    enum px_ask_kind kind;
    struct px_worker *w;
    struct px_conn *conn;
    uint64_t start_ms;
    int status;
    char why[200];
    char name[256];
};

/* A mutex-guarded list plus the async handle that wakes its consumer's loop. */
struct px_mailbox {
    uv_async_t async;
    pthread_mutex_t lock;
    struct px_ask *head;
    struct px_ask *tail;
    bool closed;
};

struct px_worker {
    unsigned id;
    struct px_mailbox answers; /* from the control thread */
    struct px_server *srv;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t async;
    atomic_int msg;
    struct px_gen *gen;                  /* what new connections use */
    _Atomic(struct px_gen *) next_gen;   /* posted by the control thread */
    struct px_worker_stats stats;
    struct px_listener **listeners;
    size_t n_listeners;
    struct px_conn *conns; /* every open client connection */
    size_t n_conns;
    bool draining;
    bool stopped;
    char *readbuf;    /* handed to every read on this loop; consumed before the next */
    bool readbuf_busy;
    char *plainbuf;   /* decrypted bytes of one TLS read */
    char *outbuf;     /* response bytes gathered before one TLS write */
    size_t outlen;
    char *upbuf;      /* request bytes gathered before one upstream write */
    size_t uplen;
    struct px_conn *out_owner;   /* whose bytes outbuf holds */
    struct px_upconn *up_owner;  /* whose bytes upbuf holds */
    struct px_pool *pools;  /* [n_pools], indexed by target id */
    size_t n_pools;
    llhttp_settings_t req_settings;
    llhttp_settings_t resp_settings;
    struct px_reqbuf **head_free; /* recycled request buffers */
    size_t n_head_free;
};

int px_worker_init(struct px_worker *w, struct px_server *srv, unsigned id);
/* Hands the worker a new generation (takes the reference); it adopts it on its loop. */
void px_worker_give_gen(struct px_worker *w, struct px_gen *g);
/* Before the thread runs: adopt what was given now. */
void px_worker_adopt(struct px_worker *w);
int px_worker_start(struct px_worker *w);
void px_worker_dispose(struct px_worker *w);
void px_worker_post(struct px_worker *w, enum px_worker_msg msg);

/* ---- the control thread ------------------------------------------------------------- */

struct px_admin; /* admin.c */

struct px_server {
    struct px_gen *gen;         /* the newest generation (control thread) */
    struct px_gen *boot_gen;    /* kept: its config serves acme, admin, tls, workers */
    const struct cfg *boot_cfg; /* boot_gen->cfg */
    const char *config_path;    /* NULL for the one-liner: nothing to reload */
    struct px_admin *admin;     /* NULL when the admin endpoint is off */
    uv_loop_t *loop;
    struct tls_store *store;
    struct tls_server *tls;
    struct px_target **targets; /* every upstream any generation named */
    size_t n_targets;
    struct px_lsock *lsocks;    /* every listen socket set bound */
    struct px_site_stats *site_stats;
    _Atomic uint64_t reloads_ok;
    _Atomic uint64_t reloads_failed;
    _Atomic uint64_t last_reload_ok; /* unix seconds */
    struct acme_mgr *acme; /* NULL when every site has certificate files */
    struct px_worker *workers;
    unsigned n_workers;
    uv_signal_t sig_term;
    uv_signal_t sig_int;
    uv_signal_t sig_hup;
    uv_signal_t sig_usr1;
    uv_timer_t ticket_timer;
    uv_timer_t drain_timer;
    uv_async_t worker_done;
    atomic_int workers_running;
    struct acme_dns *dns;
    size_t dns_pending; /* names without a first answer yet */
    struct px_mailbox questions; /* from the workers */
    bool questions_open;
    bool stopping;
};

/* Runs until stopped. config_path is the file cfg came from (re-read on reload), or NULL. */
int px_server_run(struct cfg *cfg, const char *config_path);

/* Certificate files of a config (server.c): loaded all or nothing, then installed. */
int px_certs_load(const struct cfg *cfg, struct tls_cert ***out, char *err, size_t errlen);
void px_certs_install(struct px_server *srv, const struct cfg *cfg, struct tls_cert **certs);
void px_certs_free(size_t n_sites, struct tls_cert **certs);
int px_acme_manage_site(struct px_server *srv, const struct cfg_site *s);

/* ---- generations and listen sockets (gen.c) ----------------------------------------- */

/* The generation of a config: router built, listen sockets bound (reusing those of cur
 * with the same address). Takes cfg. Returns NULL with err on failure. */
struct px_gen *px_gen_new(struct px_server *srv, struct cfg *cfg, const struct px_gen *cur,
                          char *err, size_t errlen);
/* Closes the sockets of lsocks in old that gen no longer names and no worker took. */
void px_gen_close_dropped(struct px_server *srv, const struct px_gen *old,
                          const struct px_gen *gen);
void px_lsocks_free(struct px_server *srv);
struct px_site_stats *px_site_stats_get(struct px_server *srv, const char *name);
void px_site_stats_free(struct px_server *srv);
struct px_target *px_target_get(struct px_server *srv, const struct cfg_hostport *hp);
void px_targets_free(struct px_server *srv);

/* ---- upstream health (health.c, control thread) ------------------------------------- */

/* Points each target at the active check of the newest generation, starting and stopping
 * its timer. */
void px_health_apply(struct px_server *srv);
void px_health_stop(struct px_server *srv);

/* ---- privileges (privs.c) ----------------------------------------------------------- */

/* Started as root with a user configured: switch to it, keeping only the right to bind
 * ports below 1024. Returns 0 or -1 with err. */
int px_drop_privileges(const char *user, char *err, size_t errlen);

/* ---- DNS (control thread; the lookups themselves are acme_dns_*) -------------------- */

/* Starts resolving every named target not resolving yet (new ones after a reload too). */
void px_resolver_start(struct px_server *srv);
void px_resolver_stop(struct px_server *srv);
/* Runs the control loop until every upstream name had a first answer, at most max_ms. */
void px_resolver_wait(struct px_server *srv, uint64_t max_ms);

/* ---- the bridge between workers and the control thread (bridge.c) ------------------ */

int px_mailbox_init(uv_loop_t *loop, struct px_mailbox *mb, uv_async_cb cb, void *data);
/* Closes the mailbox: later posts free their question instead. */
void px_mailbox_close(struct px_mailbox *mb);
/* Worker side: asks the control thread; the answer comes back on the worker's loop. */
int px_bridge_ask(struct px_conn *c, enum px_ask_kind kind, const char *name);
void px_bridge_on_questions(uv_async_t *a);
void px_bridge_on_answers(uv_async_t *a);
enum tls_miss px_on_tls_miss(void *arg, struct tls_conn *tc, const char *name, bool challenge);

/* ---- client connections ------------------------------------------------------------- */

enum px_conn_state {
    PX_CONN_HANDSHAKE = 0,
    PX_CONN_IDLE,      /* keep-alive, waiting for a request */
    PX_CONN_HEAD,      /* reading a request head */
    PX_CONN_PROXY,     /* a request is being proxied */
    PX_CONN_TUNNEL,    /* upgraded: bytes both ways */
    PX_CONN_LINGER,    /* response sent, discarding input before closing */
    PX_CONN_CLOSED,
};

/* What a request needs only while it is in flight: its captured head and the names the
 * access log prints. Recycled through a per-worker free list, so an idle connection holds
 * none and the hot path does not allocate. */
struct px_reqbuf {
    size_t cap; /* of raw */
    struct px_head head;
    char method[16];
    char host[256];
    char path[256];
    char raw[]; /* limits.max_request_head bytes */
};

/* Per-request state; lives inside the connection, reset for each request. */
struct px_req {
    struct px_reqbuf *rb; /* NULL between requests */
    struct px_eol_scan scan;
    const struct px_site *site;
    const struct px_route *route;
    struct px_target *target;
    uint64_t sent_us; /* when the request went upstream, for the latency histogram */
    const char *why;  /* why the request was refused, for the log */
    struct px_upconn *up;
    char *up_head;       /* the head sent upstream, kept for one retry */
    size_t up_head_len;
    uint64_t start_ms;
    uint64_t bytes_in;
    uint64_t bytes_out;
    int status;
    bool body_chunked;
    bool has_body;
    bool req_done;       /* the request message was fully read */
    bool resp_started;   /* a response byte went to the client */
    bool resp_done;
    bool keep_alive;     /* the client allows reuse */
    bool retried;
    bool upgrade;
    bool is_head;
    enum px_body resp_body; /* framing towards the client */
};

struct px_conn {
    uv_tcp_t tcp;
    struct px_deadline timer;
    struct px_worker *w;
    struct px_conn *prev;
    struct px_conn *next;
    struct tls_conn *tls; /* NULL on the plain listener */
    llhttp_t parser;
    enum px_conn_state state;
    int handles; /* open handles; freed when it reaches zero */
    bool reading;
    bool read_paused;  /* backpressure from the upstream */
    bool close_after_flush;
    bool shut;
    uv_shutdown_t *shutdown_req;
    struct px_gen *gen;   /* the configuration this connection uses */
    struct px_ask *ask;   /* a question to the control thread in flight */
    char *held;           /* ciphertext a paused handshake has not consumed yet */
    uint64_t tls_wait_ms; /* how long the handshake waited for a certificate */
    char *stash;       /* plaintext read but not parsed yet (pipelining) */
    size_t stash_len;
    uint64_t last_activity;
    struct px_req req;
    char peer[48];
};

void px_conn_accept(struct px_listener *l);
bool px_peer_trusted(const struct px_conn *c, const struct cfg *cfg);
/* The plain-HTTP listener's answer (redirect to https); returns llhttp's "stop" (-1). */
int px_req_plain(struct px_conn *c);
void px_conn_close(struct px_conn *c, const char *reason);
/* The control thread answered the connection's question. */
void px_conn_on_answer(struct px_conn *c, const struct px_ask *a);

/* Called by the upstream side. */
void px_conn_on_response_head(struct px_conn *c, const struct px_head *h, const llhttp_t *up);
void px_conn_on_response_body(struct px_conn *c, const char *p, size_t n);
void px_conn_on_response_done(struct px_conn *c, bool upstream_reusable);
void px_conn_on_upstream_error(struct px_conn *c, int status, const char *why);
void px_conn_on_upstream_tunnel(struct px_conn *c, const char *p, size_t n);
void px_conn_flush(struct px_conn *c);
void px_conn_upstream_drained(struct px_conn *c);
bool px_conn_write_congested(const struct px_conn *c);

/* ---- upstream connections ------------------------------------------------------------ */

enum px_up_state {
    PX_UP_CONNECTING = 0,
    PX_UP_IDLE,      /* pooled */
    PX_UP_ACTIVE,    /* request sent or being sent, response being read */
    PX_UP_TUNNEL,
    PX_UP_CLOSED,
};

struct px_upconn {
    uv_tcp_t tcp;
    struct px_deadline timer;
    uv_connect_t connect_req;
    struct px_worker *w;
    struct px_target *target;
    struct px_conn *client; /* NULL while pooled */
    struct px_upconn *next; /* pool list */
    struct px_upconn *prev;
    llhttp_t parser;
    enum px_up_state state;
    int handles;
    bool reused;        /* came from the pool */
    bool got_bytes;     /* a response byte arrived */
    bool head_done;
    bool reusable;      /* the response allows keep-alive */
    bool read_paused;
    bool counted;       /* counted in pool.active */
    struct px_head head;
    int status;
    unsigned attempt; /* which of the target's addresses this is, for failover */
    unsigned n_addrs;
    char *pend;       /* bytes queued while connecting */
    size_t pend_len;
};

/* Starts the request on a pooled or fresh connection to the target. Returns 0 or a
 * negative error (no address known). */
int px_up_dispatch(struct px_conn *c, struct px_target *t, const char *head, size_t len,
                   bool fresh);
void px_up_send(struct px_upconn *u, const char *p, size_t n);
void px_up_release(struct px_upconn *u, bool reusable);
void px_up_close(struct px_upconn *u, const char *reason);
void px_up_pause(struct px_upconn *u, bool paused);
void px_up_pool_close_all(struct px_worker *w);
bool px_up_write_congested(const struct px_upconn *u);
struct px_target *px_balance_pick(struct px_worker *w, const struct px_route *r);
void px_up_settings(llhttp_settings_t *s);

/* ---- shared helpers ----------------------------------------------------------------- */

/* Sends bytes on a stream: try_write first, queue a copy of the rest. cb runs when a queued
 * copy is written (or fails). Returns 0 or a libuv error. */
int px_stream_send(uv_stream_t *s, const char *p, size_t n, uv_write_cb cb);
void px_wreq_free(uv_write_t *req);

uint64_t px_now_ms(void);
void px_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

#endif
