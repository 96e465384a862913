/* test_http1.c - head capture from llhttp fragments, line-ending checks and the heads moat
 * writes to upstreams and clients. */
#include <llhttp.h>
#include <stdlib.h>

#include "check.h"
#include "http1.h"

/* ---- capture ----------------------------------------------------------------------- */

static int on_target(llhttp_t *p, const char *at, size_t n)
{
    return px_head_on_target(p->data, at, n) == 0 ? 0 : -1;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    return px_head_on_field(p->data, at, n) == 0 ? 0 : -1;
}

static int on_value(llhttp_t *p, const char *at, size_t n)
{
    return px_head_on_value(p->data, at, n) == 0 ? 0 : -1;
}

/* Parses msg with llhttp in up to three pieces cut at cut1 <= cut2, each piece in its own
 * heap block freed right after llhttp saw it (so the head must have copied what it keeps).
 * Returns llhttp's status. */
static llhttp_errno_t parse_cut(struct px_head *h, llhttp_type_t type, const char *msg, size_t len,
                                size_t cut1, size_t cut2)
{
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_url = on_target;
    s.on_status = on_target;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    llhttp_t parser;
    llhttp_init(&parser, type, &s);
    parser.data = h;
    const size_t bounds[4] = {0, cut1, cut2, len};
    for (int i = 0; i < 3; i++) {
        size_t n = bounds[i + 1] - bounds[i];
        char *piece = malloc(n + 1);
        if (piece == NULL) {
            return HPE_INTERNAL;
        }
        memcpy(piece, msg + bounds[i], n);
        llhttp_errno_t err = llhttp_execute(&parser, piece, n);
        free(piece);
        if (err != HPE_OK) {
            return err;
        }
    }
    return HPE_OK;
}

/* Whether two captured heads hold the same target, names and values, byte for byte. */
static bool same_head(const struct px_head *a, const struct px_head *b)
{
    if (a->len != b->len || a->target.len != b->target.len || a->n_hdrs != b->n_hdrs ||
        a->overflow != b->overflow ||
        memcmp(a->raw + a->target.off, b->raw + b->target.off, a->target.len) != 0) {
        return false;
    }
    for (size_t i = 0; i < a->n_hdrs; i++) {
        const struct px_hdr *x = &a->hdrs[i];
        const struct px_hdr *y = &b->hdrs[i];
        if (x->name.len != y->name.len || x->value.len != y->value.len ||
            memcmp(a->raw + x->name.off, b->raw + y->name.off, x->name.len) != 0 ||
            memcmp(a->raw + x->value.off, b->raw + y->value.off, x->value.len) != 0) {
            return false;
        }
    }
    return true;
}

static bool span_is(const struct px_head *h, struct px_span sp, const char *want)
{
    return sp.len == strlen(want) && memcmp(h->raw + sp.off, want, sp.len) == 0;
}

/* Every way of cutting msg in up to three pieces captures the same head as one piece. */
static void check_every_cut(const struct px_head *ref, llhttp_type_t type, const char *msg,
                            int line)
{
    size_t len = strlen(msg);
    char raw[2048];
    struct px_head h;
    size_t tried = 0;
    size_t bad = 0;
    for (size_t cut1 = 0; cut1 <= len; cut1++) {
        for (size_t cut2 = cut1; cut2 <= len; cut2++) {
            px_head_reset(&h, raw, sizeof(raw));
            llhttp_errno_t err = parse_cut(&h, type, msg, len, cut1, cut2);
            tried++;
            if (err != HPE_OK || !same_head(&h, ref)) {
                if (bad++ == 0) {
                    fprintf(stderr, "line %d: cut at %zu and %zu: llhttp %d, other head\n", line,
                            cut1, cut2, (int)err);
                }
            }
        }
    }
    CHECK(tried == (len + 1) * (len + 2) / 2);
    CHECK(bad == 0);
}

static const char REQUEST[] = "POST /upload/file.txt?x=1&y=%20 HTTP/1.1\r\n"
                              "Host: example.test\r\n"
                              "User-Agent: moat-test/1.0\r\n"
                              "X-Dup: one\r\n"
                              "x-dup:   two  \r\n"
                              "X-Empty:\r\n"
                              "Content-Length: 5\r\n"
                              "Connection: keep-alive\r\n"
                              "\r\n"
                              "hello";

static const char RESPONSE[] = "HTTP/1.1 200 Fine Thanks\r\n"
                               "Content-Type: text/plain\r\n"
                               "Set-Cookie: a=1\r\n"
                               "Set-Cookie: b=2\r\n"
                               "Content-Length: 2\r\n"
                               "\r\n"
                               "ok";

static void test_capture_request(void)
{
    char raw[2048];
    struct px_head ref;
    px_head_reset(&ref, raw, sizeof(raw));
    CHECK(parse_cut(&ref, HTTP_REQUEST, REQUEST, strlen(REQUEST), 0, 0) == HPE_OK);
    CHECK(span_is(&ref, ref.target, "/upload/file.txt?x=1&y=%20"));
    CHECK(ref.n_hdrs == 7);
    CHECK(!ref.overflow);
    static const char *const names[] = {"Host",    "User-Agent",     "X-Dup",     "x-dup",
                                        "X-Empty", "Content-Length", "Connection"};
    for (size_t i = 0; i < 7 && i < ref.n_hdrs; i++) {
        CHECK(span_is(&ref, ref.hdrs[i].name, names[i]));
    }
    CHECK(span_is(&ref, ref.hdrs[0].value, "example.test"));
    CHECK(ref.hdrs[4].value.len == 0);
    check_every_cut(&ref, HTTP_REQUEST, REQUEST, __LINE__);

    /* The head needs exactly ref.len bytes of raw. */
    size_t need = ref.len;
    char *exact = malloc(need);
    struct px_head h;
    px_head_reset(&h, exact, need);
    CHECK(parse_cut(&h, HTTP_REQUEST, REQUEST, strlen(REQUEST), 0, 0) == HPE_OK);
    CHECK(same_head(&h, &ref));
    px_head_reset(&h, exact, need - 1);
    CHECK(parse_cut(&h, HTTP_REQUEST, REQUEST, strlen(REQUEST), 10, 50) == HPE_USER);
    CHECK(h.overflow);
    free(exact);
}

static void test_capture_response(void)
{
    char raw[2048];
    struct px_head ref;
    px_head_reset(&ref, raw, sizeof(raw));
    CHECK(parse_cut(&ref, HTTP_RESPONSE, RESPONSE, strlen(RESPONSE), 0, 0) == HPE_OK);
    CHECK(span_is(&ref, ref.target, "Fine Thanks"));
    CHECK(ref.n_hdrs == 4);
    CHECK(span_is(&ref, ref.hdrs[1].name, "Set-Cookie"));
    CHECK(span_is(&ref, ref.hdrs[2].value, "b=2"));
    check_every_cut(&ref, HTTP_RESPONSE, RESPONSE, __LINE__);
}

/* The px_head_* calls by hand, with the fragments llhttp could produce. */
static void test_capture_by_hand(void)
{
    char raw[256];
    struct px_head h;
    px_head_reset(&h, raw, sizeof(raw));
    CHECK(px_head_on_value(&h, "v", 1) == -1); /* a value before any name */
    CHECK(px_head_on_target(&h, "/a", 2) == 0);
    CHECK(px_head_on_target(&h, "", 0) == 0);
    CHECK(px_head_on_target(&h, "/b", 2) == 0);
    CHECK(px_head_on_field(&h, "Ho", 2) == 0);
    CHECK(px_head_on_field(&h, "st", 2) == 0);
    CHECK(px_head_on_value(&h, "", 0) == 0);
    CHECK(px_head_on_value(&h, "a.", 2) == 0);
    CHECK(px_head_on_value(&h, "test", 4) == 0);
    CHECK(px_head_on_field(&h, "X-Empty", 7) == 0);
    CHECK(px_head_on_value(&h, "", 0) == 0);
    CHECK(px_head_on_field(&h, "X", 1) == 0);
    CHECK(px_head_on_value(&h, "1", 1) == 0);
    CHECK(span_is(&h, h.target, "/a/b"));
    CHECK(h.n_hdrs == 3);
    CHECK(span_is(&h, h.hdrs[0].name, "Host") && span_is(&h, h.hdrs[0].value, "a.test"));
    CHECK(span_is(&h, h.hdrs[1].name, "X-Empty") && h.hdrs[1].value.len == 0);
    CHECK(span_is(&h, h.hdrs[2].name, "X") && span_is(&h, h.hdrs[2].value, "1"));
    CHECK(h.len == 4 + 4 + 6 + 7 + 2);
    CHECK(!h.overflow);

    /* raw full: the fragment is refused whole. */
    char tiny[8];
    px_head_reset(&h, tiny, sizeof(tiny));
    CHECK(px_head_on_target(&h, "/1234567", 8) == 0);
    CHECK(!h.overflow);
    CHECK(px_head_on_field(&h, "H", 1) == -1);
    CHECK(h.overflow);
    CHECK(h.len == 8);

    /* PX_MAX_HEADERS names fit, one more does not. */
    char big[4096];
    px_head_reset(&h, big, sizeof(big));
    int failed = 0;
    for (int i = 0; i < PX_MAX_HEADERS; i++) {
        failed += px_head_on_field(&h, "N", 1) != 0 || px_head_on_value(&h, "v", 1) != 0;
    }
    CHECK(failed == 0);
    CHECK(h.n_hdrs == PX_MAX_HEADERS && !h.overflow);
    CHECK(px_head_on_field(&h, "N", 1) == -1);
    CHECK(h.overflow);
    CHECK(h.n_hdrs == PX_MAX_HEADERS);
}

/* Builds a head from "Name: value\r\n" lines the way llhttp hands them out: the value
 * without its leading blanks, trailing ones kept. target may be "". */
static void head_from(struct px_head *h, char *raw, size_t cap, const char *target,
                      const char *lines)
{
    int failed = 0;
    px_head_reset(h, raw, cap);
    if (target[0] != '\0') {
        failed += px_head_on_target(h, target, strlen(target)) != 0;
    }
    const char *p = lines;
    while (*p != '\0') {
        const char *eol = strstr(p, "\r\n");
        const char *colon = eol != NULL ? memchr(p, ':', (size_t)(eol - p)) : NULL;
        if (colon == NULL) {
            failed++;
            break;
        }
        failed += px_head_on_field(h, p, (size_t)(colon - p)) != 0;
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t')) {
            v++;
        }
        failed += px_head_on_value(h, v, (size_t)(eol - v)) != 0;
        p = eol + 2;
    }
    CHECK(failed == 0);
}

static void test_head_get(void)
{
    char raw[1024];
    struct px_head h;
    head_from(&h, raw, sizeof(raw), "/",
              "Host: example.test\r\n"
              "X-Dup: one\r\n"
              "x-dup:   two  \r\n"
              "X-Space:  \t padded value \t \r\n"
              "X-Empty:\r\n"
              "X-Blank:    \r\n"
              "X-DUP: three\r\n");
    size_t len = 99;
    size_t count = 99;
    const char *v = px_head_get(&h, "host", &len, &count);
    CHECK(v != NULL && len == 12 && memcmp(v, "example.test", 12) == 0 && count == 1);
    v = px_head_get(&h, "HOST", &len, NULL);
    CHECK(v != NULL && len == 12);
    v = px_head_get(&h, "x-dup", &len, &count);
    CHECK(v != NULL && len == 3 && memcmp(v, "one", 3) == 0);
    CHECK(count == 3);
    v = px_head_get(&h, "X-Space", &len, &count);
    CHECK(v != NULL && len == 12 && memcmp(v, "padded value", 12) == 0 && count == 1);
    v = px_head_get(&h, "x-empty", &len, &count);
    CHECK(v != NULL && len == 0 && count == 1);
    v = px_head_get(&h, "x-blank", &len, &count);
    CHECK(v != NULL && len == 0 && count == 1);
    count = 99;
    CHECK(px_head_get(&h, "missing", &len, &count) == NULL);
    CHECK(count == 0);
    CHECK(px_head_get(&h, "x-du", &len, &count) == NULL && count == 0);
    CHECK(px_head_get(&h, "x-dupe", &len, &count) == NULL && count == 0);
    CHECK(px_head_get(&h, "", &len, &count) == NULL && count == 0);
}

static void test_token_list(void)
{
    CHECK(px_token_list_has("close", 5, "close"));
    CHECK(px_token_list_has("Close", 5, "close"));
    CHECK(px_token_list_has("keep-alive, Upgrade", 19, "upgrade"));
    CHECK(px_token_list_has(" upgrade ,  close ", 18, "close"));
    CHECK(px_token_list_has("\tclose\t", 7, "close"));
    CHECK(px_token_list_has(",,close,", 8, "close"));
    CHECK(px_token_list_has("a,b,X-Secret", 12, "x-secret"));
    CHECK(!px_token_list_has("upgrade-insecure", 16, "upgrade"));
    CHECK(!px_token_list_has("xclose", 6, "close"));
    CHECK(!px_token_list_has("cl ose", 6, "close"));
    CHECK(!px_token_list_has("", 0, "close"));
    CHECK(!px_token_list_has(" , ", 3, "close"));
    /* Only len bytes are read. */
    CHECK(!px_token_list_has("close", 3, "close"));
    CHECK(!px_token_list_has("keep-alive,close", 10, "close"));
    CHECK(px_token_list_has("keep-alive,close", 16, "close"));
}

/* ---- line endings ------------------------------------------------------------------ */

static long scan_all(const char *p)
{
    struct px_eol_scan s;
    memset(&s, 0, sizeof(s));
    return px_eol_scan(&s, p, strlen(p));
}

/* Scans msg in two calls cut at every byte; the head length must come out head_len
 * (-1: refused) every time. */
static void check_scan_cuts(const char *msg, long head_len, int line)
{
    size_t len = strlen(msg);
    size_t bad = 0;
    for (size_t cut = 0; cut <= len; cut++) {
        struct px_eol_scan s;
        memset(&s, 0, sizeof(s));
        long got = px_eol_scan(&s, msg, cut);
        if (got >= 0 && (size_t)got == cut && !s.done) {
            long more = px_eol_scan(&s, msg + cut, len - cut);
            got = more < 0 ? -1 : got + more;
        }
        if (got != head_len) {
            if (bad++ == 0) {
                fprintf(stderr, "line %d: cut at %zu: %ld, want %ld\n", line, cut, got, head_len);
            }
        }
    }
    CHECK(bad == 0);

    /* And one byte per call. */
    struct px_eol_scan s;
    memset(&s, 0, sizeof(s));
    long got = 0;
    for (size_t i = 0; i < len && !s.done; i++) {
        long r = px_eol_scan(&s, msg + i, 1);
        if (r < 0) {
            got = -1;
            break;
        }
        got += r;
    }
    CHECK(got == head_len);
}
#define CHECK_SCAN_CUTS(msg, head_len) check_scan_cuts(msg, head_len, __LINE__)

static void test_eol_scan(void)
{
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX:  a b\t\r\n\r\n";
    long hl = (long)strlen(head);
    CHECK(scan_all(head) == hl);
    CHECK_SCAN_CUTS(head, hl);

    /* Body bytes after the head are not looked at, bare LF and CR CR included. */
    static const char with_body[] = "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\nab\ncd\r\r\n e\n";
    long wl = (long)(strstr(with_body, "\r\n\r\n") - with_body) + 4;
    CHECK(scan_all(with_body) == wl);
    CHECK_SCAN_CUTS(with_body, wl);
    struct px_eol_scan s;
    memset(&s, 0, sizeof(s));
    CHECK(px_eol_scan(&s, with_body, strlen(with_body)) == wl);
    CHECK(s.done);

    /* A head not finished yet: all bytes belong to it. */
    memset(&s, 0, sizeof(s));
    CHECK(px_eol_scan(&s, "GET / HTTP/1.1\r\nHost: a\r\n", 25) == 25);
    CHECK(!s.done);
    CHECK(px_eol_scan(&s, "\r", 1) == 1);
    CHECK(px_eol_scan(&s, "\nbody", 5) == 1);
    CHECK(s.done);

    /* Bare LF anywhere in the head. */
    CHECK(scan_all("GET / HTTP/1.1\nHost: a\r\n\r\n") == -1);
    CHECK(scan_all("GET / HTTP/1.1\r\nHost: a\n\r\n") == -1);
    CHECK(scan_all("GET / HTTP/1.1\r\nHost: a\r\n\n") == -1);
    CHECK(scan_all("\nGET / HTTP/1.1\r\n\r\n") == -1);
    CHECK(scan_all("GET / HTTP/1.1\r\nX: a\nb\r\n\r\n") == -1);
    CHECK_SCAN_CUTS("GET / HTTP/1.1\r\nHost: a\r\n\n", -1);
    CHECK_SCAN_CUTS("GET / HTTP/1.1\r\nHost: a\n\r\n", -1);

    /* obs-fold: a line starting with a blank continues the previous one. */
    CHECK(scan_all("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n") == -1);
    CHECK(scan_all("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n") == -1);
    CHECK(scan_all("GET / HTTP/1.1\r\n Host: a\r\n\r\n") == -1);
    CHECK_SCAN_CUTS("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", -1);
    /* Blanks inside a line are fine. */
    CHECK(scan_all("GET / HTTP/1.1\r\nX: a \t b \r\n\r\n") > 0);

    /* CR CR. */
    CHECK(scan_all("GET / HTTP/1.1\r\r\n\r\n") == -1);
    CHECK(scan_all("GET / HTTP/1.1\r\nX: a\r\r\n\r\n") == -1);
    CHECK_SCAN_CUTS("GET / HTTP/1.1\r\nX: a\r\r\n\r\n", -1);

    /* Nothing to scan. */
    memset(&s, 0, sizeof(s));
    CHECK(px_eol_scan(&s, "", 0) == 0);
}

/* ---- the request head sent upstream ------------------------------------------------ */

static const struct px_fwd FWD = {
    .method = "GET",
    .client_ip = "192.0.2.7",
    .trusted_peer = false,
    .proto = "https",
    .upgrade = false,
    .body = PX_BODY_NONE,
    .content_length = 0,
};

typedef size_t (*write_head_fn)(const struct px_head *h, const void *opts, char *out, size_t cap);

static size_t write_request(const struct px_head *h, const void *opts, char *out, size_t cap)
{
    return px_http_request_head(h, opts, out, cap);
}

static size_t write_response(const struct px_head *h, const void *opts, char *out, size_t cap)
{
    return px_http_response_head(h, opts, out, cap);
}

/* Writes the head and compares it with want; then tries every smaller buffer (each its own
 * heap block, so ASan sees a write past it): all must return 0, and the exact size must
 * give the same head. */
static void check_head(write_head_fn fn, const char *target, const char *lines, const void *opts,
                       const char *want, int line)
{
    char raw[4096];
    struct px_head h;
    head_from(&h, raw, sizeof(raw), target, lines);
    char out[4096];
    size_t n = fn(&h, opts, out, sizeof(out) - 1);
    out[n] = '\0';
    if (n == 0 || strcmp(out, want) != 0) {
        fprintf(stderr, "line %d: the head below differs\n", line);
    }
    CHECK_STR(out, want);
    CHECK(n == strlen(want));
    size_t bad = 0;
    for (size_t cap = 0; cap <= n; cap++) {
        char *small = malloc(cap > 0 ? cap : 1);
        size_t got = fn(&h, opts, small, cap);
        bool ok = cap < n ? got == 0 : got == n && memcmp(small, out, n) == 0;
        bad += !ok;
        free(small);
    }
    if (bad > 0) {
        fprintf(stderr, "line %d: %zu buffer sizes gave a wrong answer\n", line, bad);
    }
    CHECK(bad == 0);
}
#define CHECK_REQUEST(target, lines, fwd, want)                                                    \
    check_head(write_request, target, lines, fwd, want, __LINE__)
#define CHECK_RESPONSE(reason, lines, resp, want)                                                  \
    check_head(write_response, reason, lines, resp, want, __LINE__)

static void test_request_hop_by_hop(void)
{
    /* Every hop-by-hop header goes, and the one named in Connection; untrusted
     * X-Forwarded-* are replaced. */
    CHECK_REQUEST("/p?q=1",
                  "Host: example.test\r\n"
                  "User-Agent: t/1\r\n"
                  "Connection: keep-alive, X-Secret\r\n"
                  "Keep-Alive: timeout=5\r\n"
                  "Proxy-Connection: keep-alive\r\n"
                  "TE: trailers\r\n"
                  "Trailer: X-T\r\n"
                  "X-Secret: s\r\n"
                  "Upgrade: h2c\r\n"
                  "HTTP2-Settings: AAAA\r\n"
                  "X-Forwarded-For: 203.0.113.9\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: evil.test\r\n"
                  "Accept: */*\r\n",
                  &FWD,
                  "GET /p?q=1 HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "User-Agent: t/1\r\n"
                  "Accept: */*\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");

    /* "Connection: close, X-Secret" drops X-Secret whatever its case; framing comes from
     * px_fwd, never from the client's Content-Length. */
    struct px_fwd f = FWD;
    f.method = "POST";
    f.body = PX_BODY_LENGTH;
    f.content_length = 5;
    CHECK_REQUEST("/form",
                  "Host: example.test\r\n"
                  "Connection: close, X-Secret\r\n"
                  "x-secret: s\r\n"
                  "X-Secret-2: kept\r\n"
                  "Content-Length: 7\r\n"
                  "Content-Type: text/plain\r\n",
                  &f,
                  "POST /form HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "X-Secret-2: kept\r\n"
                  "Content-Type: text/plain\r\n"
                  "Content-Length: 5\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");

    f.body = PX_BODY_CHUNKED;
    f.content_length = 0;
    CHECK_REQUEST("/up",
                  "Host: example.test\r\n"
                  "Transfer-Encoding: chunked\r\n"
                  "Accept:   text/html  \r\n",
                  &f,
                  "POST /up HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "Accept: text/html\r\n"
                  "Transfer-Encoding: chunked\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");

    /* A zero-length body still says so. */
    f.body = PX_BODY_LENGTH;
    CHECK_REQUEST("/empty", "Host: h\r\n", &f,
                  "POST /empty HTTP/1.1\r\n"
                  "Host: h\r\n"
                  "Content-Length: 0\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: h\r\n"
                  "\r\n");
}

static void test_request_forwarded(void)
{
    static const char incoming[] = "Host: example.test\r\n"
                                   "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n"
                                   "X-Forwarded-Proto: http\r\n"
                                   "X-Forwarded-Host: orig.test\r\n";
    struct px_fwd f = FWD;
    CHECK_REQUEST("/", incoming, &f,
                  "GET / HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");
    f.trusted_peer = true;
    CHECK_REQUEST("/", incoming, &f,
                  "GET / HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "X-Forwarded-Host: orig.test\r\n"
                  "\r\n");
    /* Trusted, but nothing (or nothing useful) came in. */
    CHECK_REQUEST("/", "Host: example.test\r\nX-Forwarded-For:  \r\n", &f,
                  "GET / HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");
    /* No Host (HTTP/1.0): no X-Forwarded-Host. IPv6 client, another method and proto. */
    f.trusted_peer = false;
    f.client_ip = "2001:db8::1";
    f.method = "DELETE";
    f.proto = "http";
    CHECK_REQUEST("/x", "Accept: */*\r\n", &f,
                  "DELETE /x HTTP/1.1\r\n"
                  "Accept: */*\r\n"
                  "X-Forwarded-For: 2001:db8::1\r\n"
                  "X-Forwarded-Proto: http\r\n"
                  "\r\n");
}

static void test_request_upgrade(void)
{
    static const char ws[] = "Host: example.test\r\n"
                             "Connection: Upgrade\r\n"
                             "Upgrade: websocket\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n";
    struct px_fwd f = FWD;
    f.upgrade = true;
    CHECK_REQUEST("/ws", ws, &f,
                  "GET /ws HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "Connection: upgrade\r\n"
                  "Upgrade: websocket\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");
    /* Without the upgrade flag the request goes as a plain one. */
    f.upgrade = false;
    CHECK_REQUEST("/ws", ws, &f,
                  "GET /ws HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");
}

/* RFC 9110 7.6.1: a proxy removes every field named by any connection option; several
 * Connection lines form one list. */
static void test_request_connection_lines(void)
{
    CHECK_REQUEST("/",
                  "Host: example.test\r\n"
                  "Connection: keep-alive\r\n"
                  "Connection: X-Secret\r\n"
                  "X-Secret: s\r\n",
                  &FWD,
                  "GET / HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");
}

/* A long field name listed in Connection is removed like a short one. */
static void test_request_connection_long_name(void)
{
    char name[160];
    memset(name, 'n', 150);
    memcpy(name, "X-", 2);
    name[150] = '\0';
    char lines[600];
    snprintf(lines, sizeof(lines), "Host: example.test\r\nConnection: %s\r\n%s: secret\r\n", name,
             name);
    CHECK_REQUEST("/", lines, &FWD,
                  "GET / HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "X-Forwarded-For: 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");
}

/* A trusted peer's X-Forwarded-For may come as several lines, one list (RFC 9110 5.3):
 * extending it must keep every hop, not only the first line's. */
static void test_request_forwarded_lines(void)
{
    struct px_fwd f = FWD;
    f.trusted_peer = true;
    CHECK_REQUEST("/",
                  "Host: example.test\r\n"
                  "X-Forwarded-For: 10.0.0.1\r\n"
                  "X-Forwarded-For: 10.0.0.2\r\n",
                  &f,
                  "GET / HTTP/1.1\r\n"
                  "Host: example.test\r\n"
                  "X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"
                  "X-Forwarded-Proto: https\r\n"
                  "X-Forwarded-Host: example.test\r\n"
                  "\r\n");
}

/* The whole path: llhttp capture, then the head upstream gets. */
static void test_request_from_llhttp(void)
{
    char raw[2048];
    struct px_head h;
    px_head_reset(&h, raw, sizeof(raw));
    CHECK(parse_cut(&h, HTTP_REQUEST, REQUEST, strlen(REQUEST), 7, 90) == HPE_OK);
    struct px_fwd f = FWD;
    f.method = "POST";
    f.body = PX_BODY_LENGTH;
    f.content_length = 5;
    char out[1024];
    size_t n = px_http_request_head(&h, &f, out, sizeof(out) - 1);
    out[n] = '\0';
    CHECK_STR(out, "POST /upload/file.txt?x=1&y=%20 HTTP/1.1\r\n"
                   "Host: example.test\r\n"
                   "User-Agent: moat-test/1.0\r\n"
                   "X-Dup: one\r\n"
                   "x-dup: two\r\n"
                   "X-Empty: \r\n"
                   "Content-Length: 5\r\n"
                   "X-Forwarded-For: 192.0.2.7\r\n"
                   "X-Forwarded-Proto: https\r\n"
                   "X-Forwarded-Host: example.test\r\n"
                   "\r\n");
}

/* ---- the response head sent to the client ------------------------------------------ */

static void test_response_head(void)
{
    static const char upstream[] = "Content-Type: text/html\r\n"
                                   "Connection: keep-alive, X-Internal\r\n"
                                   "Keep-Alive: timeout=5\r\n"
                                   "X-Internal: 1\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "Set-Cookie: a=1\r\n"
                                   "Set-Cookie: b=2\r\n"
                                   "X-Forwarded-For: 10.1.1.1\r\n"
                                   "Server:  up  \r\n";
    struct px_resp r = {.status = 200, .body = PX_BODY_CHUNKED};
    CHECK_RESPONSE("OK", upstream, &r,
                   "HTTP/1.1 200 OK\r\n"
                   "Content-Type: text/html\r\n"
                   "Set-Cookie: a=1\r\n"
                   "Set-Cookie: b=2\r\n"
                   "X-Forwarded-For: 10.1.1.1\r\n"
                   "Server: up\r\n"
                   "Transfer-Encoding: chunked\r\n"
                   "\r\n");
    r.close = true;
    r.body = PX_BODY_LENGTH;
    r.content_length = 42;
    CHECK_RESPONSE("Fine Thanks", upstream, &r,
                   "HTTP/1.1 200 Fine Thanks\r\n"
                   "Content-Type: text/html\r\n"
                   "Set-Cookie: a=1\r\n"
                   "Set-Cookie: b=2\r\n"
                   "X-Forwarded-For: 10.1.1.1\r\n"
                   "Server: up\r\n"
                   "Connection: close\r\n"
                   "Content-Length: 42\r\n"
                   "\r\n");

    /* No reason phrase from upstream: ours. Delimited by close: no framing line. */
    struct px_resp nf = {.status = 404, .body = PX_BODY_EOF, .close = true};
    CHECK_RESPONSE("", "Content-Length: 9\r\n", &nf,
                   "HTTP/1.1 404 Not Found\r\n"
                   "Connection: close\r\n"
                   "\r\n");
    struct px_resp odd = {.status = 299, .body = PX_BODY_NONE};
    CHECK_RESPONSE("", "", &odd, "HTTP/1.1 299 Unknown\r\n\r\n");
    struct px_resp nc = {.status = 204, .body = PX_BODY_NONE};
    CHECK_RESPONSE("", "Date: x\r\n", &nc, "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n");
}

static void test_response_upgrade(void)
{
    static const char upstream[] = "Connection: Upgrade\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
    struct px_resp r = {.status = 101, .body = PX_BODY_NONE, .upgrade = true};
    static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Connection: upgrade\r\n"
                               "Upgrade: websocket\r\n"
                               "\r\n";
    CHECK_RESPONSE("Switching Protocols", upstream, &r, want);
    CHECK_RESPONSE("", upstream, &r, want);
    /* An upgrade is never also marked close. */
    r.close = true;
    CHECK_RESPONSE("", upstream, &r, want);
}

/* The same rule for an upstream's response: X-Internal is named by the second Connection
 * line and must not reach the client. */
static void test_response_connection_lines(void)
{
    struct px_resp r = {.status = 200, .body = PX_BODY_LENGTH, .content_length = 2};
    CHECK_RESPONSE("OK",
                   "Connection: keep-alive\r\n"
                   "Connection: X-Internal\r\n"
                   "X-Internal: 1\r\n",
                   &r,
                   "HTTP/1.1 200 OK\r\n"
                   "Content-Length: 2\r\n"
                   "\r\n");
}

/* ---- responses moat writes itself -------------------------------------------------- */

/* The output must be want; smaller buffers give 0 (the text needs one byte more for the
 * terminating NUL, as with snprintf). */
static void check_simple(int status, const char *location, bool keep_alive, const char *want,
                         int line)
{
    char out[1024];
    size_t n = px_http_simple_response(status, location, keep_alive, out, sizeof(out));
    if (n != strlen(want) || strcmp(out, want) != 0) {
        fprintf(stderr, "line %d: got\n%s\n", line, n > 0 ? out : "(0)");
    }
    CHECK_STR(n > 0 ? out : "", want);
    CHECK(n == strlen(want));
    size_t bad = 0;
    for (size_t cap = 0; cap < n; cap++) {
        char *small = malloc(cap > 0 ? cap : 1);
        bad += px_http_simple_response(status, location, keep_alive, small, cap) != 0;
        free(small);
    }
    char *fits = malloc(n + 1);
    bad += px_http_simple_response(status, location, keep_alive, fits, n + 1) != n;
    free(fits);
    CHECK(bad == 0);

    /* Content-Length says how long the body after the blank line is. */
    const char *cl = strstr(want, "Content-Length: ");
    const char *body = strstr(want, "\r\n\r\n");
    CHECK(cl != NULL && body != NULL && strtoul(cl + 16, NULL, 10) == strlen(body + 4));
}
#define CHECK_SIMPLE(status, location, keep_alive, want)                                           \
    check_simple(status, location, keep_alive, want, __LINE__)

static void test_simple_response(void)
{
    CHECK_SIMPLE(308, "https://a.test/x?y=1", false,
                 "HTTP/1.1 308 Permanent Redirect\r\n"
                 "Location: https://a.test/x?y=1\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 23\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "308 Permanent Redirect\n");
    CHECK_SIMPLE(308, "https://a.test/", true,
                 "HTTP/1.1 308 Permanent Redirect\r\n"
                 "Location: https://a.test/\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 23\r\n"
                 "\r\n"
                 "308 Permanent Redirect\n");
    CHECK_SIMPLE(400, NULL, false,
                 "HTTP/1.1 400 Bad Request\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 16\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "400 Bad Request\n");
    CHECK_SIMPLE(431, NULL, false,
                 "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 36\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "431 Request Header Fields Too Large\n");
    CHECK_SIMPLE(502, NULL, false,
                 "HTTP/1.1 502 Bad Gateway\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 16\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "502 Bad Gateway\n");
    CHECK_SIMPLE(504, NULL, false,
                 "HTTP/1.1 504 Gateway Timeout\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n"
                 "Content-Length: 20\r\n"
                 "Connection: close\r\n"
                 "\r\n"
                 "504 Gateway Timeout\n");
}

static void test_reason(void)
{
    CHECK_STR(px_http_reason(101), "Switching Protocols");
    CHECK_STR(px_http_reason(200), "OK");
    CHECK_STR(px_http_reason(308), "Permanent Redirect");
    CHECK_STR(px_http_reason(400), "Bad Request");
    CHECK_STR(px_http_reason(421), "Misdirected Request");
    CHECK_STR(px_http_reason(431), "Request Header Fields Too Large");
    CHECK_STR(px_http_reason(502), "Bad Gateway");
    CHECK_STR(px_http_reason(503), "Service Unavailable");
    CHECK_STR(px_http_reason(504), "Gateway Timeout");
    CHECK_STR(px_http_reason(0), "Unknown");
    CHECK_STR(px_http_reason(999), "Unknown");
    CHECK_STR(px_http_reason(-1), "Unknown");
}

int main(void)
{
    test_capture_request();
    test_capture_response();
    test_capture_by_hand();
    test_head_get();
    test_token_list();
    test_eol_scan();
    test_request_hop_by_hop();
    test_request_forwarded();
    test_request_upgrade();
    test_request_connection_lines();
    test_request_connection_long_name();
    test_request_forwarded_lines();
    test_request_from_llhttp();
    test_response_head();
    test_response_upgrade();
    test_response_connection_lines();
    test_simple_response();
    test_reason();
    return check_report();
}
