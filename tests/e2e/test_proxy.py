"""Proxying: routing, keep-alive pools, forwarded headers, hop-by-hop headers,
load balancing, the plain-HTTP redirect listener, access logs, CLI."""

import json
import socket
import subprocess
import threading
import time

import pytest

from conftest import MOAT_BIN, SLOW, clean_env, site


def header_values(j, name):
    """Values of header `name` in a backend /headers answer (list of pairs)."""
    return [v for k, v in j["headers"] if k.lower() == name.lower()]


def curl_many(moat, host, paths, *args):
    """One curl process, several URLs (so it reuses its connection).
    Returns [(status, num_connects)]."""
    cmd = moat.curl_cmd(*args, "-w", "%{http_code} %{num_connects}\\n", hosts=[host])
    for p in paths:
        cmd += ["-o", "/dev/null", moat.url(host, p)]
    r = subprocess.run(cmd, capture_output=True, timeout=60 * SLOW, env=clean_env())
    assert r.returncode == 0, r.stderr
    out = [tuple(int(x) for x in ln.split()) for ln in r.stdout.decode().split("\n") if ln.strip()]
    assert len(out) == len(paths), r.stdout
    return out


# ---------------------------------------------------------------------------

def test_get_and_post(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    r = moat.curl("a.test", "/hello?x=1&y=%20z", "-H", "X-Test: one")
    assert r.rc == 0 and r.status == 200, r
    j = r.json()
    assert j["method"] == "GET"
    assert j["path"] == "/hello?x=1&y=%20z"
    assert j["headers"]["x-test"] == "one"
    assert j["headers"]["host"] == "a.test:%d" % moat.https_port
    assert r.header("content-type") == "application/json"

    body = b"0123456789" * 1000 + b"end"
    r = moat.curl("a.test", "/submit", "--data-binary", body.decode(), "-H",
                  "Content-Type: text/plain")
    assert r.rc == 0 and r.status == 200, r
    j = r.json()
    assert j["method"] == "POST" and j["path"] == "/submit"
    assert j["body_len"] == len(body)
    assert j["headers"]["content-type"] == "text/plain"

    r = moat.curl("a.test", "/put", "-X", "PUT", "--data-binary", "abc")
    assert r.status == 200 and r.json()["method"] == "PUT" and r.json()["body_len"] == 3, r
    r = moat.curl("a.test", "/gone", "-X", "DELETE")
    assert r.status == 200 and r.json()["method"] == "DELETE", r
    # HEAD: a Content-Length but no body; then more requests on the same
    # connection (keep-alive) must still line up
    with moat.tls_client("a.test") as c:
        resp = c.request("HEAD", "/head", "a.test")
        assert resp.status == 200 and int(resp.header("Content-Length")) > 0, resp
        for i in range(3):
            resp = c.request("GET", "/raw%d" % i, "a.test")
            assert resp.status == 200, resp
            assert resp.json()["path"] == "/raw%d" % i
    assert backend.stats()["seen_paths"][-3:] == ["/raw0", "/raw1", "/raw2"]


def test_pipelined_requests(pki, backend, moat_factory):
    """Several requests in one write are answered in order."""
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    with moat.tls_client("a.test") as c:
        c.send(b"".join(b"GET /pipe%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % i for i in range(3)) +
               b"POST /pipe3 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\nbody" +
               b"GET /pipe4 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        for i in range(5):
            r = c.read_response(10)
            assert r.status == 200, r
            assert r.json()["path"] == "/pipe%d" % i, r
        assert r.json()["body_len"] == 0
        c.read_until_eof(5)
    assert backend.stats()["seen_paths"] == ["/pipe%d" % i for i in range(5)]


def test_routing_by_host(pki, backend_factory, moat_factory):
    b1, b2 = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [b1]),
                         site(["b.test"], pki.b, [b2])])
    for _ in range(2):
        ra = moat.curl("a.test", "/x")
        rb = moat.curl("b.test", "/y")
        assert ra.status == 200 and ra.json()["name"] == "one", ra
        assert rb.status == 200 and rb.json()["name"] == "two", rb
    assert b1.stats()["seen_paths"] == ["/x", "/x"]
    assert b2.stats()["seen_paths"] == ["/y", "/y"]


def test_routing_by_longest_path_prefix(pki, backend_factory, moat_factory):
    main, api, v2 = backend_factory("main"), backend_factory("api"), backend_factory("v2")
    # the shorter prefix is listed first: the longest match must still win
    moat = moat_factory([site(["a.test"], pki.a, [main], routes=[
        {"path": "/api/", "upstreams": [api]},
        {"path": "/api/v2/", "upstreams": [v2]},
    ])])
    cases = {
        "/": "main",
        "/index.html": "main",
        "/apix": "main",
        "/api": "main",
        "/api/": "api",
        "/api/users?id=3": "api",
        "/api/v2": "api",
        "/api/v2/": "v2",
        "/api/v2/items/9": "v2",
    }
    for path, want in cases.items():
        r = moat.curl("a.test", path)
        assert r.status == 200, (path, r)
        j = r.json()
        assert j["name"] == want, (path, j)
        assert j["path"] == path, "moat must forward the path unchanged"


def test_keepalive_reuse_one_client(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    paths = ["/ka%d" % i for i in range(6)]
    res = curl_many(moat, "a.test", paths)
    assert [s for s, _ in res] == [200] * 6
    assert sum(n for _, n in res) == 1, "curl had to reconnect to moat: %r" % res
    st = backend.stats()
    assert st["requests"] == 6
    assert st["connections"] <= 2, "6 sequential requests used %d backend connections" % \
        st["connections"]


def test_keepalive_reuse_across_clients(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    for i in range(6):
        r = moat.curl("a.test", "/sep%d" % i)
        assert r.status == 200, r
    st = backend.stats()
    assert st["requests"] == 6
    assert st["connections"] <= 2, "6 requests from 6 client connections used %d " \
        "backend connections (no upstream pooling?)" % st["connections"]


def test_upstream_connection_close_not_reused(pki, backend, moat_factory):
    """A backend answer with Connection: close ends that upstream connection;
    the next request must get a fresh one, not fail."""
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    res = curl_many(moat, "a.test", ["/c1?close=1", "/c2", "/c3?close=1", "/c4"])
    assert [s for s, _ in res] == [200] * 4, res
    st = backend.stats()
    assert st["seen_paths"] == ["/c1?close=1", "/c2", "/c3?close=1", "/c4"], st


def test_upstream_idle_close_is_survived(pki, backend, moat_factory):
    """The backend drops a pooled keep-alive connection while it sits idle;
    the next request still succeeds."""
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    r = moat.curl("a.test", "/first?linger_ms=150")
    assert r.status == 200, r
    first_conn = r.json()["conn_id"]
    time.sleep(0.6)  # the backend has closed the idle connection by now
    for i in range(3):
        r = moat.curl("a.test", "/next%d" % i)
        assert r.status == 200, r
        assert r.json()["conn_id"] != first_conn
    assert backend.stats()["seen_paths"] == ["/first?linger_ms=150", "/next0", "/next1", "/next2"]


def test_close_delimited_response(pki, backend, moat_factory):
    """A backend response without Content-Length that ends at close is relayed
    complete (moat may chunk it or close after it)."""
    from backend import pattern_sha256
    import hashlib
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    n = 3 * 1024 * 1024 + 17
    r = moat.curl("a.test", "/close-delimited?bytes=%d" % n)
    assert r.rc == 0 and r.status == 200, r
    assert len(r.body) == n
    assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(n)
    # and the next request works
    assert moat.curl("a.test", "/after").status == 200


def test_x_forwarded_set_and_replaced(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    r = moat.curl("a.test", "/headers")
    assert r.status == 200, r
    j = r.json()
    assert header_values(j, "X-Forwarded-For") == ["127.0.0.1"], j
    assert header_values(j, "X-Forwarded-Proto") == ["https"], j
    assert header_values(j, "X-Forwarded-Host") in (["a.test"], ["a.test:%d" % moat.https_port]), j

    # client-supplied values are not trusted: replaced, not appended
    r = moat.curl("a.test", "/headers", "-H", "X-Forwarded-For: 1.2.3.4",
                  "-H", "X-Forwarded-Proto: http", "-H", "X-Forwarded-Host: evil.example")
    j = r.json()
    assert header_values(j, "X-Forwarded-For") == ["127.0.0.1"], j
    assert header_values(j, "X-Forwarded-Proto") == ["https"], j
    assert header_values(j, "X-Forwarded-Host") in (["a.test"], ["a.test:%d" % moat.https_port]), j


def test_x_forwarded_for_appended_for_trusted_proxy(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])], trusted_proxies=["127.0.0.1"])
    r = moat.curl("a.test", "/headers", "-H", "X-Forwarded-For: 1.2.3.4")
    assert r.status == 200, r
    j = r.json()
    xff = header_values(j, "X-Forwarded-For")
    assert len(xff) == 1, j
    assert [p.strip() for p in xff[0].split(",")] == ["1.2.3.4", "127.0.0.1"], j
    # without a client value it is just the peer
    j = moat.curl("a.test", "/headers").json()
    assert header_values(j, "X-Forwarded-For") == ["127.0.0.1"], j


def test_hop_by_hop_headers_not_forwarded(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    with moat.tls_client("a.test") as c:
        r = c.request("GET", "/headers", "a.test", headers=[
            ("Connection", "keep-alive, X-Foo"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Proxy-Connection", "keep-alive"),
            ("Upgrade", "h2c"),
            ("X-Foo", "secret"),
            ("X-Keep", "yes"),
        ])
        assert r.status == 200, r
        j = r.json()
        names = {k.lower() for k, _ in j["headers"]}
        for h in ("keep-alive", "te", "trailer", "proxy-connection", "upgrade", "x-foo"):
            assert h not in names, "%s was forwarded: %r" % (h, j["headers"])
        assert header_values(j, "X-Keep") == ["yes"]
        for v in header_values(j, "Connection"):
            toks = {t.strip().lower() for t in v.split(",") if t.strip()}
            assert toks <= {"keep-alive", "close"}, j["headers"]

        # the client connection stays usable; then a Connection: close request
        r = c.request("GET", "/headers", "a.test", headers=[
            ("Connection", "X-Bar, close"), ("X-Bar", "1"), ("X-Keep", "2")])
        assert r.status == 200, r
        j = r.json()
        names = {k.lower() for k, _ in j["headers"]}
        assert "x-bar" not in names, j["headers"]
        assert header_values(j, "X-Keep") == ["2"]
        c.read_until_eof(5)  # moat closes after a Connection: close exchange


def test_round_robin(pki, backend_factory, moat_factory):
    b1, b2 = backend_factory("rr1"), backend_factory("rr2")
    moat = moat_factory([site(["a.test"], pki.a, [b1, b2], balancing="round_robin")])
    res = curl_many(moat, "a.test", ["/rr%d" % i for i in range(10)])
    assert all(s == 200 for s, _ in res)
    n1, n2 = b1.stats()["requests"], b2.stats()["requests"]
    assert n1 + n2 == 10
    assert abs(n1 - n2) <= 2, "round robin spread 10 requests as %d/%d" % (n1, n2)


def test_least_conn(pki, backend_factory, moat_factory):
    b1, b2 = backend_factory("lc1"), backend_factory("lc2")
    moat = moat_factory([site(["a.test"], pki.a, [b1, b2], balancing="least_conn")])
    results = [None] * 8

    def one(i):
        results[i] = moat.curl("a.test", "/slow?ms=600&i=%d" % i)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join(60 * SLOW)
    assert all(r is not None and r.status == 200 for r in results), results
    n1, n2 = b1.stats()["requests"], b2.stats()["requests"]
    assert n1 + n2 == 8
    assert n1 >= 2 and n2 >= 2, "least_conn spread 8 concurrent requests as %d/%d" % (n1, n2)

    # with every request done, sequential requests still succeed
    for i in range(4):
        assert moat.curl("a.test", "/after%d" % i).status == 200


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_http_listener_redirects(pki, backend, moat_factory, method):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    args = ["-X", method] + (["--data-binary", "payload"] if method == "POST" else [])
    r = moat.curl("a.test", "/some/path?x=1&y=two", *args, scheme="http")
    assert r.rc == 0, r
    assert r.status == 308, r
    assert r.header("Location") == "https://a.test:%d/some/path?x=1&y=two" % moat.https_port, r
    assert backend.stats()["requests"] == 0

    # Host without a port, raw plain-text client
    with socket.create_connection(("127.0.0.1", moat.http_port), timeout=10) as s:
        s.sendall(("%s /r?q HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n"
                   "Connection: close\r\n\r\n" % method).encode())
        data = b""
        deadline = time.monotonic() + 10 * SLOW
        while time.monotonic() < deadline:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head = data.split(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 308"), data
    loc = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:]
           if ln.lower().startswith("location:")]
    assert loc == ["https://a.test:%d/r?q" % moat.https_port], head


def test_access_log(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    assert moat.curl("a.test", "/log-get?x=1").status == 200
    assert moat.curl("a.test", "/log-post", "--data-binary", "hello").status == 200
    assert moat.curl("a.test", "/log-three").status == 200

    want = {"/log-get": "GET", "/log-post": "POST", "/log-three": "GET"}
    hits = moat.wait_log(lambda e: e.get("event") == "access" and
                         str(e.get("path", "")).startswith("/log-three"))
    assert hits, "no access line for /log-three:\n" + moat.log_text()
    access = [e for e in moat.logs() if e.get("event") == "access"]
    for path, method in want.items():
        lines = [e for e in access if str(e.get("path", "")).split("?")[0] == path]
        assert len(lines) == 1, "want one access line for %s, got %r" % (path, lines)
        e = lines[0]
        for field in ("ts", "level", "client", "host", "method", "path", "status",
                      "bytes_in", "bytes_out", "duration_ms", "upstream"):
            assert field in e, "access line lacks %s: %r" % (field, e)
        assert str(e["client"]).startswith("127.0.0.1"), e
        assert str(e["host"]).split(":")[0] == "a.test", e
        assert e["method"] == method, e
        assert int(e["status"]) == 200, e
        assert isinstance(e["bytes_in"], int) and isinstance(e["bytes_out"], int), e
        assert e["bytes_out"] > 0, e
        assert isinstance(e["duration_ms"], (int, float)) and e["duration_ms"] >= 0, e
        assert e["upstream"] == backend.addr, e
        if method == "POST":
            assert e["bytes_in"] >= 5, e


def test_access_log_can_be_disabled(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])], log={"access": False})
    assert moat.curl("a.test", "/quiet").status == 200
    time.sleep(0.3)
    assert not [e for e in moat.logs() if e.get("event") == "access"], moat.log_text()


def test_cli_validate_and_version(pki, tmp_path, backend):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({
        "workers": 1, "listen": {"https": ["127.0.0.1:1"]},
        "sites": [site(["a.test"], pki.a, [backend])]}))
    r = subprocess.run([MOAT_BIN, "validate", "-c", str(good)], capture_output=True,
                       timeout=30, env=clean_env())
    assert r.returncode == 0, r
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({
        "listen": {"https": ["127.0.0.1:1"]},
        "sites": [{"hosts": ["a.test"], "certificate": pki.a.config(),
                   "upstreams": ["not an address"]}]}))
    r = subprocess.run([MOAT_BIN, "validate", "-c", str(bad)], capture_output=True,
                       timeout=30, env=clean_env())
    assert r.returncode != 0, r
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert "upstreams" in out, out
    r = subprocess.run([MOAT_BIN, "version"], capture_output=True, timeout=30, env=clean_env())
    assert r.returncode == 0 and (r.stdout + r.stderr).strip(), r


def test_upstream_by_name_resolved_with_dns(pki, backend_factory, moat_factory):
    """An upstream given by name goes through the resolver (c-ares reads /etc/hosts)."""
    b = backend_factory("named")
    moat = moat_factory([site(["a.test"], pki.a, ["localhost:%d" % b.port])])
    for i in range(3):
        r = moat.curl("a.test", "/named%d" % i)
        assert r.status == 200, r
    assert b.stats()["requests"] == 3


def test_upstream_name_that_does_not_resolve(pki, backend_factory, moat_factory):
    """A name with no address answers 502 and says so in the log; moat keeps running."""
    moat = moat_factory([site(["a.test"], pki.a, ["no-such-host.invalid:80"])])
    r = moat.curl("a.test", "/")
    assert r.status == 502, r
    assert any(e.get("event") == "dns_failed" for e in moat.logs())
