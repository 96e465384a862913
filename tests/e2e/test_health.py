"""Upstream health: active checks (a down or failing upstream leaves the rotation
and comes back after a passing check), passive checks (max_fails within
fail_window, out for fail_duration), one health state per upstream shared by
routes, and 503 + Retry-After when every upstream of a route is down."""

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import SLOW, site

INTERVAL_MS = 200


def active(path="/hc", **kw):
    hc = {"path": path, "interval": "%dms" % INTERVAL_MS, "timeout": "%dms" % int(1000 * SLOW)}
    hc.update(kw)
    return hc


def names(moat, n, host="a.test", prefix="/r"):
    """n requests with curl; the backend names that answered (all must be 200)."""
    out = []
    for i in range(n):
        r = moat.curl(host, "%s%d" % (prefix, i))
        assert r.rc == 0 and r.status == 200, (i, r)
        out.append(r.json()["name"])
    return out


def healthy(moat, addr):
    return moat.metrics().value("moat_upstream_healthy", upstream=addr)


def wait_healthy(moat, addr, want, timeout=3.0):
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = healthy(moat, addr)
        if v == want or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


class HealthServer:
    """An upstream in this process whose health path answers `health_status`;
    every other path answers 200 with {"name", "path"} like backend.py. Records
    the Host header of health requests."""

    def __init__(self, name, health_path="/health", health_status=500):
        self.name, self.health_path, self.health_status = name, health_path, health_status
        self.lock = threading.Lock()
        self.health_hosts = []
        self.other_paths = []
        owner = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                with owner.lock:
                    if self.path == owner.health_path:
                        owner.health_hosts.append(self.headers.get("Host"))
                        code = owner.health_status
                    else:
                        owner.other_paths.append(self.path)
                        code = 200
                body = json.dumps({"name": owner.name, "path": self.path}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.addr = "127.0.0.1:%d" % self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def set_status(self, code):
        with self.lock:
            self.health_status = code

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def health_server(request, *a, **kw):
    s = HealthServer(*a, **kw)
    request.addfinalizer(s.close)
    return s


# ---------------------------------------------------------------------------

def test_active_check_removes_and_restores_a_stopped_upstream(pki, backend_factory,
                                                              moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one, two], health_check=active())])
    for b in (one, two):
        st = b.wait_seen(lambda s: "/hc" in s["seen_paths"], timeout=3 * SLOW)
        assert "/hc" in st["seen_paths"], (b.name, st)
    assert sorted(set(names(moat, 6))) == ["one", "two"]
    assert healthy(moat, one.addr) == 1 and healthy(moat, two.addr) == 1

    two.stop()
    assert wait_healthy(moat, two.addr, 0) == 0, moat.metrics()
    assert set(names(moat, 10, prefix="/down")) == {"one"}
    assert healthy(moat, one.addr) == 1

    # the same port again: back in the rotation after a passing check
    two = backend_factory("two", port=two.port)
    assert wait_healthy(moat, two.addr, 1) == 1, moat.metrics()
    got = names(moat, 10, prefix="/back")
    assert got.count("two") >= 3, got
    assert len([p for p in two.stats()["seen_paths"] if p.startswith("/back")]) == \
        got.count("two")

    # health checks are not client requests
    m = moat.metrics()
    assert m.value("moat_requests_total", site="a.test", code="200") == 26, m


def test_active_check_failing_status_and_host(request, pki, backend, moat_factory):
    bad = health_server(request, "bad", "/health", 500)
    moat = moat_factory([site(["a.test"], pki.a, [backend, bad.addr],
                              health_check=active("/health", host="app.internal"))])
    assert wait_healthy(moat, bad.addr, 0) == 0, moat.metrics()
    with bad.lock:
        bad.other_paths.clear()
    assert set(names(moat, 8)) == {"b1"}
    assert bad.other_paths == []
    assert healthy(moat, backend.addr) == 1
    with bad.lock:
        hosts = set(bad.health_hosts)
    assert hosts == {"app.internal"}, hosts

    # one passing check brings it back
    bad.set_status(200)
    assert wait_healthy(moat, bad.addr, 1, timeout=2) == 1, moat.metrics()
    got = names(moat, 8, prefix="/ok")
    assert got.count("bad") >= 3, got


def test_active_check_expect_status(request, pki, moat_factory):
    ok = health_server(request, "ok", "/ready", 204)
    up = health_server(request, "up", "/ready", 200)
    moat = moat_factory([site(["a.test"], pki.a, [ok.addr, up.addr],
                              health_check=active("/ready", expect_status=204))])
    # 200 is not the 204 asked for
    assert wait_healthy(moat, up.addr, 0) == 0, moat.metrics()
    assert healthy(moat, ok.addr) == 1
    assert set(names(moat, 6)) == {"ok"}
    up.set_status(204)
    assert wait_healthy(moat, up.addr, 1, timeout=2) == 1, moat.metrics()
    assert "up" in names(moat, 6, prefix="/ok")
    # the default Host header is the upstream as written
    with up.lock:
        hosts = set(up.health_hosts)
    assert hosts == {up.addr}, hosts


def test_passive_checks(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    fail_s = 2.0 * SLOW
    moat = moat_factory([site(["a.test"], pki.a, [one, two], passive_health={
        "max_fails": 2, "fail_window": "10s", "fail_duration": "%dms" % int(fail_s * 1000)})])
    assert sorted(set(names(moat, 4))) == ["one", "two"]
    time.sleep(0.5)
    assert not [p for p in one.stats()["seen_paths"] + two.stats()["seen_paths"]
                if not p.startswith("/r")], "passive checks must not send requests"

    two.stop()
    t_first = time.monotonic()
    statuses = []
    for i in range(12):
        r = moat.curl("a.test", "/p%d" % i)
        statuses.append((r.status, r.json()["name"] if r.status == 200 else None))
    t_last = time.monotonic()
    failed = [s for s in statuses if s[0] != 200]
    assert len(failed) <= 2 and all(s[0] == 502 for s in failed), statuses
    # once two attempts failed, only "one" answers
    odd = [i for i, s in enumerate(statuses) if s != (200, "one")]
    k = odd[-1] if odd else -1
    assert len(statuses) - k - 1 >= 8, statuses
    m = moat.metrics()
    assert m.value("moat_upstream_failures_total", upstream=two.addr) == 2, m
    assert m.value("moat_upstream_healthy", upstream=two.addr) == 0, m

    # back on its port at once, but not tried again before fail_duration is over
    two = backend_factory("two", port=two.port)
    i = 0
    while time.monotonic() < t_first + fail_s - 0.3 * SLOW:
        i += 1
        r = moat.curl("a.test", "/wait%d" % i)
        assert r.status == 200 and r.json()["name"] == "one", r
        time.sleep(0.05)
    assert i >= 1, "no time left to check fail_duration"
    assert two.stats()["requests"] == 0, "tried again before fail_duration ended"
    time.sleep(max(0, t_last + fail_s + 0.5 * SLOW - time.monotonic()))
    got = names(moat, 8, prefix="/later")
    assert "two" in got, got
    assert moat.metrics().value("moat_upstream_healthy", upstream=two.addr) == 1


def test_all_upstreams_down_answers_503(pki, backend_factory, moat_factory):
    one = backend_factory("one")
    lone = backend_factory("lone")
    moat = moat_factory([
        site(["a.test"], pki.a, [one], health_check=active()),
        site(["b.test"], pki.b, [lone], passive_health={"max_fails": 1,
                                                          "fail_duration": "30s"}),
    ])
    one.wait_seen(lambda s: "/hc" in s["seen_paths"], timeout=3 * SLOW)
    assert moat.curl("a.test", "/up").status == 200
    one.stop()
    assert wait_healthy(moat, one.addr, 0) == 0, moat.metrics()
    for i in range(3):
        r = moat.curl("a.test", "/down%d" % i)
        assert r.status == 503, r
        assert r.header("retry-after") == "1", r

    # passive: the one failed attempt is a 502, then the route is down: 503
    lone.stop()
    r = moat.curl("b.test", "/first")
    assert r.status == 502, r
    r = moat.curl("b.test", "/second")
    assert r.status == 503 and r.header("retry-after") == "1", r

    m = moat.metrics()
    assert m.value("moat_requests_total", site="a.test", code="503") == 3, m
    assert m.value("moat_requests_total", site="b.test", code="503") == 1, m
    access = [e for e in moat.logs() if e.get("event") == "access" and e.get("status") == 503]
    assert sorted(e["path"] for e in access) == ["/down0", "/down1", "/down2", "/second"], access


def test_routes_share_an_upstreams_health(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    # a.test checks `two` actively; b.test names it without any check
    moat = moat_factory([
        site(["a.test"], pki.a, [two], health_check=active()),
        site(["b.test"], pki.b, [one, two]),
    ])
    two.wait_seen(lambda s: "/hc" in s["seen_paths"], timeout=3 * SLOW)
    assert sorted(set(names(moat, 4, host="b.test"))) == ["one", "two"]
    two.stop()
    assert wait_healthy(moat, two.addr, 0) == 0, moat.metrics()
    assert set(names(moat, 8, host="b.test", prefix="/shared")) == {"one"}
    assert one.stats()["seen_paths"].count("/hc") == 0, "b.test's upstream got checks"


def test_active_check_timeout(request, pki, backend, moat_factory):
    """An upstream that accepts connections but never answers fails its checks by
    timeout."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # never accept()ed: connects succeed, nothing is ever answered
    request.addfinalizer(hole.close)
    addr = "127.0.0.1:%d" % hole.getsockname()[1]
    moat = moat_factory([site(["a.test"], pki.a, [backend, addr],
                              health_check=active(timeout="300ms"))])
    assert wait_healthy(moat, addr, 0, timeout=3) == 0, moat.metrics()
    assert healthy(moat, backend.addr) == 1
    assert set(names(moat, 6)) == {"b1"}


def test_passive_counts_head_timeouts_within_the_window(pki, backend, moat_factory):
    window = 1.0 * SLOW
    moat = moat_factory([site(["a.test"], pki.a, [backend], passive_health={
        "max_fails": 2, "fail_window": "%dms" % int(window * 1000), "fail_duration": "30s"})],
        timeouts={"upstream_head": "%dms" % int(300 * SLOW)})
    slow = "/slow?ms=%d" % int(1000 * SLOW)
    # one failure, then the window passes: the count starts again
    assert moat.curl("a.test", slow).status == 504
    time.sleep(window + 0.3 * SLOW)
    assert moat.curl("a.test", slow).status == 504
    r = moat.curl("a.test", "/still-in")
    assert r.status == 200, "one failure per window took the upstream out: %r" % r
    # a second failure inside the window: out of rotation, the route has nothing left
    assert moat.curl("a.test", slow).status == 504
    r = moat.curl("a.test", "/out")
    assert r.status == 503 and r.header("retry-after") == "1", r
    m = moat.metrics()
    assert m.value("moat_upstream_failures_total", upstream=backend.addr) == 3, m
    assert m.value("moat_upstream_healthy", upstream=backend.addr) == 0, m
    assert "/out" not in backend.stats()["seen_paths"]


def test_first_route_decides_shared_checks(pki, backend, moat_factory):
    """Two routes check the same upstream differently: the first (config order) wins,
    and the upstream is checked once per interval, not once per route."""
    moat_factory([
        site(["a.test"], pki.a, [backend], health_check=active("/first")),
        site(["b.test"], pki.b, [backend], health_check=active("/second", interval="100ms")),
    ])
    t0 = time.monotonic()
    time.sleep(1.0 * SLOW)
    st = backend.stats()
    elapsed = time.monotonic() - t0
    assert "/second" not in st["seen_paths"], st["seen_paths"]
    n = st["seen_paths"].count("/first")
    assert 2 <= n <= elapsed / (INTERVAL_MS / 1000.0) + 2, (n, elapsed)


def test_passive_counts_resets_before_the_head(request, pki, moat_factory):
    """An upstream that takes the request and closes without answering fails it."""
    rude = socket.socket()
    rude.bind(("127.0.0.1", 0))
    rude.listen(64)
    request.addfinalizer(rude.close)
    addr = "127.0.0.1:%d" % rude.getsockname()[1]
    stop = threading.Event()

    def serve():
        rude.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = rude.accept()
            except OSError:
                continue
            try:
                c.settimeout(2)
                c.recv(65536)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" * 2)
            except OSError:
                pass
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    request.addfinalizer(stop.set)
    moat = moat_factory([site(["a.test"], pki.a, [addr], passive_health={
        "max_fails": 2, "fail_duration": "30s"})])
    statuses = [moat.curl("a.test", "/rude%d" % i).status for i in range(4)]
    assert statuses == [502, 502, 503, 503], statuses
    m = moat.metrics()
    assert m.value("moat_upstream_failures_total", upstream=addr) == 2, m
    assert m.value("moat_upstream_healthy", upstream=addr) == 0, m
