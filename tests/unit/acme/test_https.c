/* test_https.c - the HTTP(S) client and the DNS resolver against real servers.
 *
 * At start the openssl command line makes a test CA, a certificate for 127.0.0.1 and
 * localhost, one for wrong.test, and a second CA nobody trusts, in a mkdtemp directory.
 * One Python process (http.server) then serves three listeners on 127.0.0.1: TLS with
 * the good certificate, TLS with the wrong.test one, and plain HTTP. It prints the three
 * ports, exits when its stdin closes (so a crashed test leaves nothing behind) and is
 * killed by PID at the end anyway.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "acme_int.h"
#include "check.h"
#include "scratch.h"
#include "log.h"

static char dir[] = "/tmp/moat-https-test-XXXXXX";
static pid_t server_pid = -1;
static int server_stdin = -1;
static unsigned tls_port;
static unsigned wrong_port;
static unsigned plain_port;

/* ---- fixtures: certificates and the Python server -------------------------------------- */

static const char server_py[] =
    "import http.server, ssl, sys, threading, time\n"
    "class Handler(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "    def reply(self, code, body, headers=()):\n"
    "        self.send_response(code)\n"
    "        for k, v in headers:\n"
    "            self.send_header(k, v)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def raw(self, data):\n"
    "        self.close_connection = True\n"
    "        self.wfile.write(data)\n"
    "    def do_GET(self):\n"
    "        p = self.path\n"
    "        if p == '/hello':\n"
    "            self.reply(200, b'hello', [('Replay-Nonce', 'abc'), ('X-Empty', ''),\n"
    "                ('X-Got-Host', self.headers.get('Host', '')),\n"
    "                ('X-Got-Agent', self.headers.get('User-Agent', '')),\n"
    "                ('X-Got-Length', self.headers.get('Content-Length', 'none'))])\n"
    "        elif p == '/big':\n"
    "            self.reply(200, b'x' * (9 << 20))\n"
    "        elif p == '/big-close':\n"
    "            self.raw(b'HTTP/1.0 200 OK\\r\\n\\r\\n' + b'x' * (9 << 20))\n"
    "        elif p == '/slow':\n"
    "            time.sleep(3)\n"
    "            self.reply(200, b'slow')\n"
    "        elif p == '/close-delimited':\n"
    "            self.raw(b'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n'\n"
    "                     b'no length, ended by close')\n"
    "        elif p == '/chunked':\n"
    "            self.raw(b'HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n'\n"
    "                     b'5\\r\\nhello\\r\\n7\\r\\n, world\\r\\n0\\r\\n\\r\\n')\n"
    "        elif p == '/continue':\n"
    "            self.raw(b'HTTP/1.1 100 Continue\\r\\nX-Interim: 1\\r\\n\\r\\n'\n"
    "                     b'HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nfinal')\n"
    "        elif p == '/garbage':\n"
    "            self.raw(b'this is not HTTP\\r\\n\\r\\n')\n"
    "        elif p == '/redirect':\n"
    "            self.reply(301, b'moved', [('Location', '/hello')])\n"
    "        elif p.startswith('/query'):\n"
    "            self.reply(200, p.encode())\n"
    "        else:\n"
    "            self.reply(404, b'not found')\n"
    "    def do_HEAD(self):\n"
    "        self.send_response(200)\n"
    "        self.send_header('Replay-Nonce', 'head')\n"
    "        self.send_header('Content-Length', '1234')\n"
    "        self.end_headers()\n"
    "    def do_POST(self):\n"
    "        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))\n"
    "        self.reply(201, body, [('Location', '/echo/1'),\n"
    "            ('X-Got-Type', self.headers.get('Content-Type', ''))])\n"
    "class Server(http.server.ThreadingHTTPServer):\n"
    "    daemon_threads = True\n"
    "    def handle_error(self, request, address):\n"
    "        pass  # clients hang up on purpose: timeouts, bodies too large\n"
    "def serve(cert, key):\n"
    "    srv = Server(('127.0.0.1', 0), Handler)\n"
    "    if cert:\n"
    "        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "        ctx.load_cert_chain(cert, key)\n"
    "        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,\n"
    "                                     do_handshake_on_connect=False)\n"
    "    threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
    "    return srv.server_address[1]\n"
    "ports = [serve('server.pem', 'server.key'), serve('wrong.pem', 'wrong.key'),\n"
    "         serve(None, None)]\n"
    "print(*ports, flush=True)\n"
    "sys.stdin.read()\n";


#define EC_NEW "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30"
#define LEAF "-addext basicConstraints=critical,CA:FALSE"

static bool make_certs(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return false;
    }
    scratch_dir = dir;
    bool ok = run("openssl req -x509 " EC_NEW " -keyout ca.key -out ca.pem -subj /CN=moat-ca");
    ok = ok && run("openssl req -x509 " EC_NEW " -keyout other.key -out other-ca.pem"
                   " -subj /CN=other-ca");
    ok = ok && run("openssl req -x509 -CA ca.pem -CAkey ca.key " EC_NEW " -keyout server.key"
                   " -out server.pem -subj /CN=localhost " LEAF
                   " -addext subjectAltName=DNS:localhost,IP:127.0.0.1");
    ok = ok && run("openssl req -x509 -CA ca.pem -CAkey ca.key " EC_NEW " -keyout wrong.key"
                   " -out wrong.pem -subj /CN=wrong.test " LEAF
                   " -addext subjectAltName=DNS:wrong.test");
    FILE *f = fopen(at("server.py"), "w");
    ok = ok && f != NULL && fputs(server_py, f) >= 0;
    if (f != NULL && fclose(f) != 0) {
        ok = false;
    }
    return ok;
}

static void remove_certs(void)
{
    scratch_remove();
}

/* Starts the server in dir with pipes on its stdin and stdout; reads the three ports. */
static bool start_server(void)
{
    int in[2];
    int out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        perror("pipe2");
        return false;
    }
    server_pid = fork();
    if (server_pid < 0) {
        perror("fork");
        return false;
    }
    if (server_pid == 0) {
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || chdir(dir) != 0) {
            _exit(127);
        }
        execl("/usr/bin/python3", "python3", "server.py", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    server_stdin = in[1];
    FILE *f = fdopen(out[0], "r");
    if (f == NULL) {
        close(out[0]);
        return false;
    }
    int n = fscanf(f, "%u %u %u", &tls_port, &wrong_port, &plain_port);
    fclose(f);
    return n == 3;
}

static void stop_server(void)
{
    if (server_stdin >= 0) {
        close(server_stdin);
    }
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
}

/* A port nothing listens on: bound once, then released. */
static unsigned closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof(sa);
    unsigned port = 1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        port = ntohs(sa.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

/* ---- running requests ------------------------------------------------------------------- */

struct result {
    uint64_t start;
    uint64_t ms; /* from the request to its callback */
    size_t body_len;
    size_t n_headers;
    int calls;
    int error;
    int status;
    bool sync;        /* the callback ran inside acme_http_request */
    bool has_empty;   /* the empty X-Empty header came through */
    bool lower_names; /* every stored name is lower-case */
    char error_text[512];
    char body[256];
    char nonce[64];     /* looked up as "REPLAY-nonce" */
    char location[128]; /* looked up as "location" */
    char got_host[128];
    char got_agent[128];
    char got_type[128];
    char got_length[32];
};

static bool in_request;

static void copy_header(const struct acme_http_response *res, const char *name, char *out,
                        size_t cap)
{
    const char *v = acme_http_header(res, name);
    snprintf(out, cap, "%s", v != NULL ? v : "");
}

static void on_response(void *arg, const struct acme_http_response *res)
{
    struct result *out = arg;
    out->calls++;
    out->sync = out->sync || in_request;
    out->ms = (uv_hrtime() - out->start) / 1000000;
    out->error = res->error;
    snprintf(out->error_text, sizeof(out->error_text), "%s",
             res->error_text != NULL ? res->error_text : "");
    out->status = res->status;
    out->body_len = res->body_len;
    snprintf(out->body, sizeof(out->body), "%s", res->body != NULL ? res->body : "(null)");
    out->n_headers = res->n_headers;
    copy_header(res, "REPLAY-nonce", out->nonce, sizeof(out->nonce));
    copy_header(res, "location", out->location, sizeof(out->location));
    copy_header(res, "X-Got-Host", out->got_host, sizeof(out->got_host));
    copy_header(res, "x-got-agent", out->got_agent, sizeof(out->got_agent));
    copy_header(res, "x-got-type", out->got_type, sizeof(out->got_type));
    copy_header(res, "x-got-length", out->got_length, sizeof(out->got_length));
    out->has_empty = acme_http_header(res, "x-empty") != NULL;
    if (getenv("MOAT_TEST_VERBOSE") != NULL) {
        fprintf(stderr, "  -> %d %s, status %d, %zu body bytes, %llu ms\n", res->error,
                out->error_text, res->status, res->body_len, (unsigned long long)out->ms);
    }
    out->lower_names = true;
    for (size_t i = 0; i < res->n_headers; i++) {
        for (const char *c = res->headers[i].name; *c != '\0'; c++) {
            out->lower_names = out->lower_names && !(*c >= 'A' && *c <= 'Z');
        }
    }
}

static int start(struct acme_http *h, const char *method, const char *url, const char *body,
                 uint64_t timeout_ms, struct result *out)
{
    memset(out, 0, sizeof(*out));
    out->start = uv_hrtime();
    in_request = true;
    int rc = acme_http_request(h, method, url, body != NULL ? "application/jose+json" : NULL,
                               body, body != NULL ? strlen(body) : 0, timeout_ms, on_response,
                               out);
    in_request = false;
    return rc;
}

/* One request, run to its end; false when it could not start or did not call back once. */
static bool fetch(uv_loop_t *loop, struct acme_http *h, const char *method, const char *url,
                  const char *body, uint64_t timeout_ms, struct result *out)
{
    if (start(h, method, url, body, timeout_ms, out) != 0) {
        fprintf(stderr, "request refused: %s %s\n", method, url);
        return false;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (out->calls != 1 || out->sync) {
        fprintf(stderr, "%s %s: %d callbacks%s\n", method, url, out->calls,
                out->sync ? ", one inside acme_http_request" : "");
        return false;
    }
    return true;
}

static const char *url(const char *scheme, const char *host, unsigned port, const char *path)
{
    static char ring[4][256];
    static unsigned next;
    char *p = ring[next++ % 4];
    snprintf(p, sizeof(ring[0]), "%s://%s:%u%s", scheme, host, port, path);
    return p;
}

/* ---- the tests ---------------------------------------------------------------------------- */

static void test_get(uv_loop_t *loop, struct acme_http *h)
{
    struct result r;
    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", tls_port, "/hello"), NULL, 5000, &r));
    CHECK(r.error == 0);
    CHECK(r.status == 200);
    CHECK_STR(r.body, "hello");
    CHECK(r.body_len == 5);
    CHECK_STR(r.nonce, "abc");
    CHECK(r.has_empty);
    CHECK(r.lower_names);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", tls_port);
    CHECK_STR(r.got_host, want);
    CHECK_STR(r.got_agent, "moat/" MOAT_VERSION);
    CHECK_STR(r.got_length, "none"); /* a GET without a body sends no Content-Length */

    /* "localhost" comes from /etc/hosts and is checked as a DNS name, with SNI. */
    CHECK(fetch(loop, h, "GET", url("https", "localhost", tls_port, "/hello"), NULL, 5000, &r));
    CHECK(r.error == 0 && r.status == 200);
    snprintf(want, sizeof(want), "localhost:%u", tls_port);
    CHECK_STR(r.got_host, want);

    CHECK(fetch(loop, h, "GET", url("https", "localhost", tls_port, "/query?a=1&b=2#frag"),
                NULL, 5000, &r));
    CHECK_STR(r.body, "/query?a=1&b=2");
    CHECK(fetch(loop, h, "GET", url("https", "localhost", tls_port, "/nowhere"), NULL, 5000, &r));
    CHECK(r.error == 0 && r.status == 404);
}

static void test_post_head(uv_loop_t *loop, struct acme_http *h)
{
    struct result r;
    const char *jws = "{\"protected\":\"e30\",\"payload\":\"\",\"signature\":\"c2ln\"}";
    CHECK(fetch(loop, h, "POST", url("https", "127.0.0.1", tls_port, "/echo"), jws, 5000, &r));
    CHECK(r.error == 0 && r.status == 201);
    CHECK_STR(r.body, jws);
    CHECK_STR(r.location, "/echo/1");
    CHECK_STR(r.got_type, "application/jose+json");

    /* HEAD (newNonce): the Content-Length describes a body that never comes. */
    CHECK(fetch(loop, h, "HEAD", url("https", "127.0.0.1", tls_port, "/nonce"), NULL, 5000, &r));
    CHECK(r.error == 0 && r.status == 200);
    CHECK_STR(r.nonce, "head");
    CHECK(r.body_len == 0);
    CHECK_STR(r.body, "");
}

static void test_framing(uv_loop_t *loop, struct acme_http *h)
{
    struct result r;
    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", tls_port, "/redirect"), NULL, 5000,
                &r));
    CHECK(r.error == 0 && r.status == 301); /* returned as it is, not followed */
    CHECK_STR(r.location, "/hello");
    CHECK_STR(r.body, "moved");

    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", tls_port, "/close-delimited"), NULL,
                5000, &r));
    CHECK(r.error == 0 && r.status == 200);
    CHECK_STR(r.body, "no length, ended by close");

    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", tls_port, "/chunked"), NULL, 5000, &r));
    CHECK(r.error == 0 && r.status == 200);
    CHECK_STR(r.body, "hello, world");

    CHECK(fetch(loop, h, "GET", url("http", "127.0.0.1", plain_port, "/continue"), NULL, 5000,
                &r));
    CHECK(r.error == 0 && r.status == 200);
    CHECK_STR(r.body, "final");
    CHECK(r.n_headers == 1); /* the interim response's headers are gone */

    CHECK(fetch(loop, h, "GET", url("http", "127.0.0.1", plain_port, "/garbage"), NULL, 5000,
                &r));
    CHECK(r.error != 0 && strncmp(r.error_text, "malformed response", 18) == 0);
}

static void test_plain(uv_loop_t *loop, struct acme_http *h)
{
    struct result r;
    CHECK(fetch(loop, h, "GET", url("http", "127.0.0.1", plain_port, "/hello"), NULL, 5000, &r));
    CHECK(r.error == 0 && r.status == 200);
    CHECK_STR(r.body, "hello");
    CHECK_STR(r.nonce, "abc");
    CHECK(fetch(loop, h, "POST", url("http", "localhost", plain_port, "/echo"), "{}", 5000, &r));
    CHECK(r.error == 0 && r.status == 201);
    CHECK_STR(r.body, "{}");
    CHECK(fetch(loop, h, "GET", url("http", "127.0.0.1", plain_port, "/close-delimited"), NULL,
                5000, &r));
    CHECK(r.error == 0);
    CHECK_STR(r.body, "no length, ended by close");
    /* An empty POST (POST-as-GET has a body, but the empty case must frame too). */
    CHECK(fetch(loop, h, "POST", url("http", "127.0.0.1", plain_port, "/echo"), "", 5000, &r));
    CHECK(r.error == 0 && r.status == 201 && r.body_len == 0);
}

static void test_limits(uv_loop_t *loop, struct acme_http *h)
{
    struct result r;
    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", tls_port, "/big"), NULL, 10000, &r));
    CHECK(r.error == -EFBIG);
    CHECK(strncmp(r.error_text, "response too large", 18) == 0);
    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", tls_port, "/big-close"), NULL, 10000,
                &r));
    CHECK(r.error == -EFBIG);
    CHECK(strncmp(r.error_text, "response too large", 18) == 0);

    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", tls_port, "/slow"), NULL, 500, &r));
    CHECK(r.error == UV_ETIMEDOUT);
    CHECK(strncmp(r.error_text, "timeout", 7) == 0);
    CHECK(r.ms >= 450 && r.ms < 1000);
    if (r.ms < 450 || r.ms >= 1000) {
        fprintf(stderr, "timeout after %llu ms\n", (unsigned long long)r.ms);
    }
}

static void test_tls_failures(uv_loop_t *loop, struct acme_http *h)
{
    struct result r;
    /* A certificate for wrong.test, asked for as 127.0.0.1 and as localhost. */
    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", wrong_port, "/hello"), NULL, 5000, &r));
    CHECK(r.error != 0 && strstr(r.error_text, "verify") != NULL);
    CHECK(strstr(r.error_text, "mismatch") != NULL);
    CHECK(fetch(loop, h, "GET", url("https", "localhost", wrong_port, "/hello"), NULL, 5000, &r));
    CHECK(r.error != 0 && strstr(r.error_text, "verify") != NULL);
    CHECK(strstr(r.error_text, "mismatch") != NULL);
    /* TLS spoken to a plain listener. */
    CHECK(fetch(loop, h, "GET", url("https", "127.0.0.1", plain_port, "/hello"), NULL, 5000, &r));
    CHECK(r.error != 0 && strncmp(r.error_text, "tls: ", 5) == 0);

    char err[256] = "";
    struct acme_http *other = acme_http_new(loop, at("other-ca.pem"), err, sizeof(err));
    struct acme_http *system_roots = acme_http_new(loop, NULL, err, sizeof(err));
    CHECK(other != NULL && system_roots != NULL);
    if (other != NULL && system_roots != NULL) {
        CHECK(fetch(loop, other, "GET", url("https", "127.0.0.1", tls_port, "/hello"), NULL, 5000,
                    &r));
        CHECK(r.error != 0 && strstr(r.error_text, "certificate verify failed") != NULL);
        CHECK(fetch(loop, system_roots, "GET", url("https", "localhost", tls_port, "/hello"),
                    NULL, 5000, &r));
        CHECK(r.error != 0 && strstr(r.error_text, "certificate verify failed") != NULL);
    }
    acme_http_free(other);
    acme_http_free(system_roots);
    CHECK(acme_http_new(loop, at("missing.pem"), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "missing.pem") != NULL);
    uv_run(loop, UV_RUN_DEFAULT);
}

static void test_connect_failures(uv_loop_t *loop, struct acme_http *h)
{
    struct result r;
    unsigned port = closed_port();
    CHECK(fetch(loop, h, "GET", url("http", "127.0.0.1", port, "/"), NULL, 5000, &r));
    CHECK(r.error == UV_ECONNREFUSED);
    CHECK(strncmp(r.error_text, "connect: ", 9) == 0);
    CHECK(fetch(loop, h, "GET", url("https", "[::1]", port, "/"), NULL, 5000, &r));
    CHECK(r.error != 0 && strncmp(r.error_text, "connect: ", 9) == 0);
    /* ".invalid" never resolves (RFC 6761); a resolver that does not answer at all makes
     * this a timeout instead, which is no fault of the client. */
    CHECK(fetch(loop, h, "GET", "http://moat-test.invalid/", NULL, 4000, &r));
    CHECK(r.error != 0);
    CHECK(strncmp(r.error_text, "dns: ", 5) == 0 || strncmp(r.error_text, "timeout", 7) == 0);
}

static void on_never(void *arg, const struct acme_http_response *res)
{
    (void)res;
    (*(int *)arg)++;
}

static void test_bad_requests(struct acme_http *h)
{
    static const char *const bad[] = {
        "ftp://127.0.0.1/",       "https://",           "https:///path",
        "https://[::1/",          "https://[127.0.0.1]/", "https://a:0/",
        "https://a:65536/",       "https://a:/",        "https://user@host/",
        "https://a b/",           "http://host/\r\nX: y", "127.0.0.1:80",
        "https://a:12x/",         "https://ex%41mple.com/",
    };
    int calls = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = acme_http_request(h, "GET", bad[i], NULL, NULL, 0, 1000, on_never, &calls);
        CHECK(rc == -1);
        if (rc != -1) {
            fprintf(stderr, "accepted %s\n", bad[i]);
        }
    }
    CHECK(acme_http_request(h, "GE T", "http://a/", NULL, NULL, 0, 1000, on_never, &calls) == -1);
    CHECK(acme_http_request(h, "", "http://a/", NULL, NULL, 0, 1000, on_never, &calls) == -1);
    CHECK(acme_http_request(h, "POST", "http://a/", "text/plain\r\nX: y", "x", 1, 1000, on_never,
                            &calls) == -1);
    CHECK(acme_http_request(h, "POST", "http://a/", NULL, NULL, 5, 1000, on_never, &calls) == -1);
    CHECK(calls == 0);
}

/* Several at once on one client, each finishing on its own. */
static void test_concurrent(uv_loop_t *loop, struct acme_http *h)
{
    struct result r[4];
    CHECK(start(h, "GET", url("https", "127.0.0.1", tls_port, "/slow"), NULL, 300, &r[0]) == 0);
    CHECK(start(h, "GET", url("https", "localhost", tls_port, "/hello"), NULL, 5000, &r[1]) == 0);
    CHECK(start(h, "POST", url("http", "127.0.0.1", plain_port, "/echo"), "x", 5000, &r[2]) == 0);
    CHECK(start(h, "GET", url("https", "127.0.0.1", tls_port, "/big"), NULL, 5000, &r[3]) == 0);
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 4; i++) {
        CHECK(r[i].calls == 1 && !r[i].sync);
    }
    CHECK(r[0].error == UV_ETIMEDOUT);
    CHECK(r[1].error == 0 && r[1].status == 200);
    CHECK(r[2].error == 0 && r[2].status == 201);
    CHECK(r[3].error == -EFBIG);
}

/* ---- freeing with requests in flight ------------------------------------------------------ */

struct cancel_ctx {
    struct acme_http *h;
    struct result slow;
    struct result resolving;
    int refused_after; /* acme_http_request from a cancelled callback: -1 wanted */
};

static void on_cancelled(void *arg, const struct acme_http_response *res)
{
    struct cancel_ctx *c = arg;
    on_response(&c->slow, res);
    c->refused_after = acme_http_request(c->h, "GET", "http://127.0.0.1/", NULL, NULL, 0, 100,
                                         on_never, &c->refused_after);
}

static void on_free_timer(uv_timer_t *t)
{
    struct cancel_ctx *c = t->data;
    acme_http_free(c->h);
    c->h = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

/* One request waits for /slow when the client goes, another was still in DNS. */
static void test_free_in_flight(void)
{
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    char err[256] = "";
    struct cancel_ctx c;
    memset(&c, 0, sizeof(c));
    c.h = acme_http_new(&loop, at("ca.pem"), err, sizeof(err));
    CHECK(c.h != NULL);
    if (c.h == NULL) {
        return;
    }
    c.slow.start = uv_hrtime();
    CHECK(acme_http_request(c.h, "GET", url("https", "127.0.0.1", tls_port, "/slow"), NULL,
                            NULL, 0, 10000, on_cancelled, &c) == 0);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &c;
    uv_timer_start(&t, on_free_timer, 300, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(c.slow.calls == 1);
    CHECK(c.slow.error == -ECANCELED);
    CHECK(c.slow.ms < 1000);
    CHECK(c.refused_after == -1);

    /* Freed before the loop ever ran: the callback comes from acme_http_free. */
    struct acme_http *h = acme_http_new(&loop, at("ca.pem"), err, sizeof(err));
    CHECK(h != NULL);
    if (h != NULL) {
        struct result r;
        CHECK(start(h, "GET", url("https", "localhost", tls_port, "/hello"), NULL, 5000, &r) == 0);
        CHECK(start(h, "GET", "https://moat-test.invalid/", NULL, 5000, &c.resolving) == 0);
        acme_http_free(h);
        CHECK(r.calls == 1 && r.error == -ECANCELED);
        CHECK(c.resolving.calls == 1 && c.resolving.error == -ECANCELED);
        CHECK_STR(r.error_text, "cancelled");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
}

static void on_free_client(void *arg, const struct acme_http_response *res)
{
    struct cancel_ctx *c = arg;
    on_response(&c->slow, res);
    acme_http_free(c->h); /* from inside the client's own callback */
}

static void test_free_from_callback(void)
{
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    char err[256] = "";
    struct cancel_ctx c;
    memset(&c, 0, sizeof(c));
    c.h = acme_http_new(&loop, at("ca.pem"), err, sizeof(err));
    CHECK(c.h != NULL);
    if (c.h != NULL) {
        struct result other;
        c.slow.start = uv_hrtime();
        CHECK(acme_http_request(c.h, "GET", url("https", "127.0.0.1", tls_port, "/hello"), NULL,
                                NULL, 0, 5000, on_free_client, &c) == 0);
        CHECK(start(c.h, "GET", url("https", "127.0.0.1", tls_port, "/slow"), NULL, 5000,
                    &other) == 0);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(c.slow.calls == 1 && c.slow.error == 0 && c.slow.status == 200);
        CHECK(other.calls == 1 && other.error == -ECANCELED);
    }
    CHECK(uv_loop_close(&loop) == 0);
}

/* ---- the resolver on its own ---------------------------------------------------------------- */

struct dns_result {
    int calls;
    bool sync;
    int status;
    size_t n;
    int family;
    uint16_t port;
};

static bool in_resolve;

static void on_dns(void *arg, int status, const struct sockaddr_storage *addrs, size_t n,
                   unsigned ttl)
{
    (void)ttl;
    struct dns_result *d = arg;
    d->calls++;
    d->sync = d->sync || in_resolve;
    d->status = status;
    d->n = n;
    if (n > 0) {
        d->family = addrs[0].ss_family;
        d->port = ntohs(addrs[0].ss_family == AF_INET
                            ? ((const struct sockaddr_in *)&addrs[0])->sin_port
                            : ((const struct sockaddr_in6 *)&addrs[0])->sin6_port);
    }
}

static void resolve(struct acme_dns *dns, const char *host, struct dns_result *d)
{
    memset(d, 0, sizeof(*d));
    in_resolve = true;
    acme_dns_resolve(dns, host, 8443, on_dns, d);
    in_resolve = false;
}

static void test_dns(void)
{
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    struct acme_dns *dns = acme_dns_new(&loop);
    CHECK(dns != NULL && acme_dns_error(dns) == NULL);
    if (dns == NULL) {
        return;
    }
    struct dns_result v4, v6, name, empty;
    resolve(dns, "127.0.0.1", &v4);
    resolve(dns, "::1", &v6);
    resolve(dns, "localhost", &name);
    resolve(dns, "", &empty);
    CHECK(v4.calls == 0 && v6.calls == 0 && name.calls == 0 && empty.calls == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(v4.calls == 1 && !v4.sync && v4.status == 0 && v4.n == 1 && v4.family == AF_INET);
    CHECK(v4.port == 8443);
    CHECK(v6.calls == 1 && !v6.sync && v6.status == 0 && v6.family == AF_INET6);
    CHECK(name.calls == 1 && !name.sync && name.status == 0 && name.n >= 1);
    CHECK(name.port == 8443);
    CHECK(empty.calls == 1 && empty.status == -1);

    /* Freed with answers waiting: they come back with -1 before acme_dns_free returns. */
    resolve(dns, "127.0.0.1", &v4);
    resolve(dns, "moat-test.invalid", &name);
    acme_dns_free(dns);
    CHECK(v4.calls == 1 && v4.status == -1);
    CHECK(name.calls == 1 && name.status == -1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("MOAT_TEST_VERBOSE") != NULL) {
        log_set_level(CFG_LOG_DEBUG);
    }
    if (!make_certs() || !start_server()) {
        CHECK(!"could not make the certificates or start the Python server");
        stop_server();
        remove_certs();
        return check_report();
    }
    test_dns();
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    char err[256] = "";
    struct acme_http *h = acme_http_new(&loop, at("ca.pem"), err, sizeof(err));
    CHECK(h != NULL);
    if (h != NULL) {
        test_bad_requests(h);
        test_get(&loop, h);
        test_post_head(&loop, h);
        test_framing(&loop, h);
        test_plain(&loop, h);
        test_limits(&loop, h);
        test_tls_failures(&loop, h);
        test_connect_failures(&loop, h);
        test_concurrent(&loop, h);
        acme_http_free(h);
    } else {
        fprintf(stderr, "acme_http_new: %s\n", err);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    test_free_in_flight();
    test_free_from_callback();
    stop_server();
    remove_certs();
    return check_report();
}
