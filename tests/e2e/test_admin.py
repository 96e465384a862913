"""The admin endpoint: /healthz, /metrics (Prometheus text, checked against real
traffic), /certificates, POST /reload, the request rules (405, 404, 403 for a
browser Origin, 431), and where it listens (port 0, off, busy addresses, the
one-liner's --admin)."""

import calendar
import errno
import json
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import MOAT_BIN, SLOW, clean_env, free_port, listening_ports, site
from pebble import acme, pebble_factory, pebble_listener_ca  # noqa: F401

LATENCY_BUCKETS = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5",
                   "5.0", "10.0", "+Inf"]


# ---------------------------------------------------------------------------
# helpers

def cert_not_after(path):
    """notAfter of a PEM certificate as unix seconds (openssl x509 -enddate)."""
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", str(path)],
                         capture_output=True, check=True, timeout=30).stdout.decode()
    # notAfter=Dec 22 15:23:00 2025 GMT
    text = out.strip().split("=", 1)[1]
    return calendar.timegm(time.strptime(text, "%b %d %H:%M:%S %Y %Z"))


def wait_metric(moat, pred, timeout=3.0):
    """Poll /metrics until pred(Metrics) is true; returns the last Metrics."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        m = moat.metrics()
        try:
            ok = pred(m)
        except TypeError:  # a metric is missing (None): not there yet
            ok = False
        if ok or time.monotonic() > deadline:
            return m
        time.sleep(0.05)


def raw_admin(port, data, timeout=5.0):
    """Send raw bytes to the admin port and read the answer until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            out += d
        return out


def handshake(moat, name):
    """A TLS handshake with SNI `name` against moat's https port; True if it completed."""
    ctx = ssl.create_default_context(cafile=str(moat.pki.ca))
    with socket.create_connection(("127.0.0.1", moat.https_port), timeout=5 * SLOW) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname=name):
                return True
        except (ssl.SSLError, OSError):
            return False


# ---------------------------------------------------------------------------
# request rules

def test_healthz_and_request_rules(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    status, hdrs, body = moat.admin("GET", "/healthz")
    assert (status, body) == (200, b"ok\n"), (status, hdrs, body)
    assert hdrs.get("content-type", "").startswith("text/plain"), hdrs

    status, hdrs, body = moat.admin("POST", "/healthz", body=b"x")
    assert status == 405, (status, hdrs, body)
    assert "GET" in [m.strip() for m in hdrs.get("allow", "").split(",")], hdrs

    status, hdrs, body = moat.admin("POST", "/metrics")
    assert status == 405 and "GET" in hdrs.get("allow", ""), (status, hdrs, body)
    status, hdrs, body = moat.admin("GET", "/reload")
    assert status == 405 and "POST" in hdrs.get("allow", ""), (status, hdrs, body)

    for path in ("/", "/nope", "/healthz/x", "/metricsx"):
        status, hdrs, body = moat.admin("GET", path)
        assert status == 404, (path, status, hdrs, body)

    # a browser page must not be able to drive the API
    for method, path in (("GET", "/healthz"), ("GET", "/metrics"), ("POST", "/reload"),
                         ("GET", "/certificates")):
        status, hdrs, body = moat.admin(method, path, headers={"Origin": "http://evil.example"})
        assert status == 403, (method, path, status, hdrs, body)
    # the refused reload did not happen
    assert not [e for e in moat.logs() if e.get("event") in ("reloaded", "reload_failed")]

    # a request head over 8 KiB
    big = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    out = raw_admin(moat.admin_port(), big)
    assert out.startswith(b"HTTP/1.1 431"), out[:200]

    # the proxy is unaffected, and admin requests are not proxy requests
    assert moat.curl("a.test", "/").status == 200
    assert backend.stats()["requests"] == 1


def test_admin_port_zero_is_logged(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    hits = [e for e in moat.logs() if e.get("event") == "admin_listening"]
    assert len(hits) == 1, hits
    port = int(hits[0]["port"])
    assert port > 0, hits
    assert listening_ports(moat.pid) == {moat.https_port, moat.http_port, port}
    status, _, body = moat.admin("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")


def test_admin_on_ipv6_loopback(pki, backend, moat_factory):
    try:
        socket.socket(socket.AF_INET6).close()
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    moat = moat_factory([site(["a.test"], pki.a, [backend])], admin={"listen": "[::1]:0"})
    port = moat.admin_port()
    import http.client
    c = http.client.HTTPConnection("::1", port, timeout=5 * SLOW)
    try:
        c.request("GET", "/healthz")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"ok\n")
    finally:
        c.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_admin_off(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])], admin={"listen": "off"})
    assert moat.curl("a.test", "/").status == 200
    assert not [e for e in moat.logs() if e.get("event", "").startswith("admin_")], \
        moat.log_text()
    assert listening_ports(moat.pid) == {moat.https_port, moat.http_port}


def test_configured_admin_address_in_use_is_fatal(pki, backend, moat_factory):
    hold = socket.socket()
    hold.bind(("127.0.0.1", 0))
    hold.listen(1)
    port = hold.getsockname()[1]
    try:
        moat = moat_factory([site(["a.test"], pki.a, [backend])], start=False,
                            admin={"listen": "127.0.0.1:%d" % port})
        moat.spawn()
        rc = moat.wait_exit(15 * SLOW)
        assert rc is not None, "moat kept running with its admin address taken"
        assert rc != 0, moat.stderr_text()
        assert "admin.listen" in moat.stderr_text(), moat.stderr_text()
        assert not [e for e in moat.logs() if e.get("event") == "ready"]
    finally:
        hold.close()


def test_default_admin_address_busy_is_a_warning(pki, backend, moat_factory):
    hold = socket.socket()
    # SO_REUSEADDR: connections in TIME_WAIT do not keep us out; a listener does
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        hold.bind(("127.0.0.1", 2019))
    except OSError as e:
        hold.close()
        if e.errno == errno.EADDRINUSE:
            pytest.skip("127.0.0.1:2019 is in use by something else")
        raise
    hold.listen(1)
    try:
        moat = moat_factory([site(["a.test"], pki.a, [backend])], admin=None)
        assert "admin" not in json.loads(moat.config_path.read_text())
        warn = [e for e in moat.logs() if e.get("event") == "admin_unavailable"]
        assert len(warn) == 1 and warn[0].get("level") == "warn", moat.log_text()
        assert not [e for e in moat.logs() if e.get("event") == "admin_listening"]
        r = moat.curl("a.test", "/busy")
        assert r.status == 200 and r.json()["path"] == "/busy", r
        assert listening_ports(moat.pid) == {moat.https_port, moat.http_port}
    finally:
        hold.close()


def test_one_liner_admin(pki, backend, moat_factory):
    def one_liner(admin):
        m = moat_factory([], start=False)
        m.start(argv=[MOAT_BIN, "proxy", "--from", "a.test", "--to", backend.addr,
                      "--cert", pki.a.chain, "--key", pki.a.key, "--bind", "127.0.0.1",
                      "--https-port", m.https_port, "--http-port", m.http_port,
                      "--admin", admin])
        return m

    m = one_liner("127.0.0.1:0")
    assert m.curl("a.test", "/one").status == 200
    status, _, body = m.admin("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")
    status, hdrs, body = m.admin("POST", "/reload")
    assert status == 409, (status, hdrs, body)
    assert hdrs.get("content-type", "").startswith("application/json"), hdrs
    j = json.loads(body)
    assert j["status"] == "refused" and j["errors"] and all(isinstance(x, str) for x in
                                                            j["errors"]), j
    assert m.curl("a.test", "/two").status == 200
    assert m.running()
    # SIGHUP has no file to re-read either: moat says so and serves on
    n = len(m.logs())
    m.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3 * SLOW)
    assert m.running(), "SIGHUP stopped the one-liner"
    assert not [e for e in m.logs()[n:] if e.get("event") == "reloaded"], m.log_text()
    assert m.curl("a.test", "/three").status == 200

    off = one_liner("off")
    assert off.curl("a.test", "/three").status == 200
    assert not [e for e in off.logs() if e.get("event") == "admin_listening"], off.log_text()
    assert listening_ports(off.pid) == {off.https_port, off.http_port}


def test_healthz_while_draining(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])], timeouts={"drain": "10s"})
    port = moat.admin_port()
    result = {}

    def slow():
        result["r"] = moat.curl("a.test", "/slow?ms=%d" % int(2000 * SLOW))

    t = threading.Thread(target=slow)
    t.start()
    backend.wait_seen(lambda st: st["requests"] >= 1, timeout=5 * SLOW)
    moat.proc.send_signal(signal.SIGTERM)
    assert moat.wait_event("draining", timeout=3), moat.log_text()
    out = raw_admin(port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503"), out
    assert out.endswith(b"\r\n\r\ndraining\n"), out
    t.join(30 * SLOW)
    assert result["r"].status == 200, result["r"]
    assert moat.wait_exit(15 * SLOW) == 0


# ---------------------------------------------------------------------------
# /metrics

def test_metrics_count_requests_and_upstream_latency(pki, backend_factory, moat_factory):
    b = backend_factory("b1")
    dead = "127.0.0.1:%d" % free_port()  # nothing listens there: 502
    moat = moat_factory([site(["a.test"], pki.a, [b]), site(["b.test"], pki.b, [dead])])
    status, hdrs, _ = moat.admin("GET", "/metrics")
    assert status == 200
    assert hdrs.get("content-type") == "text/plain; version=0.0.4; charset=utf-8", hdrs

    n = 7
    for i in range(n):
        r = moat.curl("a.test", "/m%d" % i)
        assert r.status == 200, r
    for i in range(2):
        r = moat.curl("b.test", "/dead%d" % i)
        assert r.status == 502, r
    # a name no site serves, on the plain listener
    nosite = moat.curl("other.test", "/nosite", scheme="http")
    assert nosite.rc == 0 and nosite.status in (308, 404, 421), nosite

    m = moat.metrics()
    assert m.value("moat_requests_total", site="a.test", code="200") == n, m
    assert [s for s in m.find("moat_requests_total", site="a.test")
            if s.labels["code"] != "200"] == [], m
    assert m.value("moat_requests_total", site="b.test", code="502") == 2, m
    assert m.value("moat_requests_total", site="", code=str(nosite.status)) == 1, m
    assert m.value("moat_upstream_failures_total", upstream=dead, default=0) >= 2, m
    assert m.value("moat_upstream_failures_total", upstream=b.addr, default=0) == 0, m

    # every request above came on its own connection (with its own full handshake but
    # the plain one)
    assert m.value("moat_connections_total") >= n + 3, m
    assert m.value("moat_tls_handshakes_total") >= n + 2, m
    assert m.value("moat_tls_handshake_failures_total") == 0, m

    # latency histogram of the live upstream: one observation per request
    assert m.value("moat_upstream_latency_seconds_count", upstream=b.addr) == n, m
    buckets = m.find("moat_upstream_latency_seconds_bucket", upstream=b.addr)
    les = [s.labels["le"] for s in buckets]
    assert sorted(les, key=float) == LATENCY_BUCKETS or \
        sorted((float(x) for x in les)) == [float(x) for x in LATENCY_BUCKETS], les
    counts = [s.value for s in sorted(buckets, key=lambda s: float(s.labels["le"]))]
    assert counts == sorted(counts), "buckets not cumulative: %r" % counts
    assert counts[-1] == n, counts
    total = m.value("moat_upstream_latency_seconds_sum", upstream=b.addr)
    assert 0 < total < n * 5, total
    assert m.families["moat_upstream_latency_seconds"].type == "histogram", m

    # build info: a gauge of 1 with the version `moat version` prints
    out = subprocess.run([MOAT_BIN, "version"], capture_output=True, timeout=10).stdout.decode()
    info = m.find("moat_build_info")
    assert len(info) == 1 and info[0].value == 1, info
    assert info[0].labels.get("version") and info[0].labels["version"] in out, (info, out)

    # the families the spec lists are all there, with their types
    types = {"moat_connections_active": "gauge", "moat_connections": "counter",
             "moat_tls_handshakes": "counter", "moat_tls_handshake_failures": "counter",
             "moat_tls_resumptions": "counter", "moat_upstream_healthy": "gauge",
             "moat_upstream_failures": "counter",
             "moat_certificate_expiry_timestamp_seconds": "gauge",
             "moat_acme_orders": "counter", "moat_acme_order_failures": "counter",
             "moat_acme_certificates_obtained": "counter", "moat_on_demand_waits": "counter",
             "moat_on_demand_wait_seconds": "histogram", "moat_on_demand_refused": "counter",
             "moat_config_reloads": "counter",
             "moat_config_last_reload_success_timestamp_seconds": "gauge",
             "moat_requests": "counter", "moat_build_info": "gauge"}
    wrong = {k: (m.families[k].type if k in m.families else None) for k, v in types.items()
             if k not in m.families or m.families[k].type != v}
    assert not wrong, "missing or mistyped metric families: %r\n%s" % (wrong, m.text)
    assert m.value("moat_upstream_healthy", upstream=b.addr) == 1, m

    # the counters only count: a second scrape after one more request
    assert moat.curl("a.test", "/again").status == 200
    m2 = moat.metrics()
    assert m2.value("moat_requests_total", site="a.test", code="200") == n + 1
    assert m2.value("moat_upstream_latency_seconds_count", upstream=b.addr) == n + 1

    # the latency is the upstream's: two answers that take 300 ms
    def bucket(mm, le):
        return [s.value for s in mm.find("moat_upstream_latency_seconds_bucket",
                                         upstream=b.addr) if float(s.labels["le"]) == le][0]

    for _ in range(2):
        assert moat.curl("a.test", "/slow?ms=300").status == 200
    m3 = moat.metrics()
    assert bucket(m3, 0.25) == bucket(m2, 0.25), m3
    assert bucket(m3, 1.0) == bucket(m2, 1.0) + 2, m3
    grew = m3.value("moat_upstream_latency_seconds_sum", upstream=b.addr) - \
        m2.value("moat_upstream_latency_seconds_sum", upstream=b.addr)
    assert 0.6 <= grew < 2.0 * SLOW, grew


def test_metrics_handshakes_failures_and_resumptions(pki, backend, moat_factory, tmp_path):
    moat = moat_factory([site(["a.test"], pki.a, [backend])], tls={"session_tickets": True})
    m0 = moat.metrics()
    hs0 = m0.value("moat_tls_handshakes_total")
    fail0 = m0.value("moat_tls_handshake_failures_total")
    assert fail0 == 0, m0

    assert not handshake(moat, "unknown.test"), "handshake for an unknown name completed"
    m1 = wait_metric(moat, lambda m: m.value("moat_tls_handshake_failures_total") >= 1)
    assert m1.value("moat_tls_handshake_failures_total") == 1, m1
    assert m1.value("moat_tls_handshakes_total") == hs0, \
        "a failed handshake counted as completed: %r" % m1

    assert handshake(moat, "a.test")
    m2 = wait_metric(moat, lambda m: m.value("moat_tls_handshakes_total") >= hs0 + 1)
    assert m2.value("moat_tls_handshakes_total") == hs0 + 1, m2
    assert m2.value("moat_tls_handshake_failures_total") == 1, m2

    # resumption with a TLS 1.3 ticket, done by openssl s_client
    sess = tmp_path / "sess.pem"
    base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % moat.https_port,
            "-servername", "a.test", "-CAfile", str(pki.ca), "-tls1_3", "-ign_eof"]
    req = b"GET /r HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
    first = subprocess.run(base + ["-sess_out", str(sess)], input=req, capture_output=True,
                           timeout=20 * SLOW, env=clean_env())
    assert first.returncode == 0 and sess.exists(), first
    r0 = moat.metrics().value("moat_tls_resumptions_total")
    reused = 0
    for _ in range(2):
        r = subprocess.run(base + ["-sess_in", str(sess)], input=req, capture_output=True,
                           timeout=20 * SLOW, env=clean_env())
        assert r.returncode == 0, r
        reused += b"\nReused, TLSv1.3" in r.stdout
    assert reused == 2, "s_client did not resume"
    m3 = wait_metric(moat, lambda m: m.value("moat_tls_resumptions_total") >= r0 + 2)
    assert m3.value("moat_tls_resumptions_total") == r0 + 2, m3
    assert m3.value("moat_tls_handshakes_total") >= hs0 + 4, m3


def test_metrics_connections_active(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])

    def active():
        return moat.metrics().value("moat_connections_active")

    m = wait_metric(moat, lambda m: m.value("moat_connections_active") == 0)
    assert m.value("moat_connections_active") == 0, m
    with moat.tls_client("a.test") as c1, moat.tls_client("a.test") as c2:
        assert c1.request("GET", "/ka", "a.test").status == 200
        assert c2.request("GET", "/ka", "a.test").status == 200
        m = wait_metric(moat, lambda m: m.value("moat_connections_active") == 2)
        assert m.value("moat_connections_active") == 2, m
        # a plain-HTTP connection counts too
        with socket.create_connection(("127.0.0.1", moat.http_port), timeout=5) as p:
            m = wait_metric(moat, lambda m: m.value("moat_connections_active") == 3)
            assert m.value("moat_connections_active") == 3, m
            p.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            assert p.recv(100).startswith(b"HTTP/1.1 3")
        m = wait_metric(moat, lambda m: m.value("moat_connections_active") == 2)
        assert m.value("moat_connections_active") == 2, m
        # still open and usable
        assert c1.request("GET", "/ka2", "a.test").status == 200
    m = wait_metric(moat, lambda m: m.value("moat_connections_active") == 0)
    assert m.value("moat_connections_active") == 0, m
    assert active() == 0


def test_connections_active_after_errors(pki, backend, moat_factory):
    """Connections that end badly (failed handshake, reset mid-head, closed before
    a byte, a bad request) all leave the gauge."""
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    assert not handshake(moat, "unknown.test")
    for port in (moat.https_port, moat.http_port):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with moat.tls_client("a.test") as c:
        c.send(b"GET /half HTTP/1.1\r\nHost: a.te")
        # close with a reset (SO_LINGER 0)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with moat.tls_client("a.test") as c:
        r = c.request("GET", "/bad", "a.test", headers=[("Content-Length", "1"),
                                                        ("Transfer-Encoding", "chunked")])
        assert r.status == 400, r
    with moat.tls_client("a.test") as c:
        # the client leaves while its request waits for the upstream
        c.send(b"GET /slow?ms=1000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        backend.wait_seen(lambda st: "/slow?ms=1000" in st["seen_paths"], timeout=5 * SLOW)
    m = wait_metric(moat, lambda m: m.value("moat_connections_active") == 0, timeout=5)
    assert m.value("moat_connections_active") == 0, m
    assert m.value("moat_connections_total") >= 6, m


# ---------------------------------------------------------------------------
# certificates

def test_certificate_expiry_metric_and_list(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend]),
                         site(["x.w.test", "y.w.test"], pki.w, [backend])])
    a_end = cert_not_after(pki.a.cert)
    w_end = cert_not_after(pki.w.cert)
    m = moat.metrics()
    assert m.value("moat_certificate_expiry_timestamp_seconds", name="a.test") == a_end, m
    names = {s.labels["name"] for s in m.find("moat_certificate_expiry_timestamp_seconds")}
    assert "a.test" in names and names & {"*.w.test", "x.w.test"}, names
    for s in m.find("moat_certificate_expiry_timestamp_seconds"):
        if s.labels["name"] != "a.test":
            assert s.value == w_end, s

    status, hdrs, body = moat.admin("GET", "/certificates")
    assert status == 200, (status, body)
    assert hdrs.get("content-type", "").startswith("application/json"), hdrs
    certs = json.loads(body)["certificates"]
    by_name = {}
    for c in certs:
        for n in c["names"]:
            by_name[n] = c
    assert set(by_name) == {"a.test", "*.w.test"}, certs
    now = time.time()
    for name, end in (("a.test", a_end), ("*.w.test", w_end)):
        c = by_name[name]
        assert c["names"] == [name], c
        assert c["not_after_unix"] == end, (c, end)
        assert c["not_after"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end)), c
        assert abs(c["expires_in_seconds"] - (end - now)) < 120 * SLOW, c
        assert c["hosts"], c
    assert "a.test" in by_name["a.test"]["hosts"], certs
    assert "a.test" not in by_name["*.w.test"]["hosts"], certs
    ends = [c["not_after_unix"] for c in certs]
    assert ends == sorted(ends), certs


def test_metrics_acme(acme):
    """An issuance from Pebble shows in the ACME counters and the certificate list."""
    acme.make_pebble()
    m = acme.moat()
    acme.wait_issued(m)
    leaf = acme.check_served(m)
    got = wait_metric(m, lambda x: x.value("moat_acme_certificates_obtained_total") >= 1)
    assert got.value("moat_acme_orders_total") == 1, got
    assert got.value("moat_acme_certificates_obtained_total") == 1, got
    assert got.value("moat_acme_order_failures_total") == 0, got
    end = got.value("moat_certificate_expiry_timestamp_seconds", name="app.test")
    assert end == leaf.not_after_ts, (end, leaf)
    status, _, body = m.admin("GET", "/certificates")
    certs = json.loads(body)["certificates"]
    assert [c["names"] for c in certs] == [["app.test"]], certs


def test_idle_admin_connections_do_not_block(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    port = moat.admin_port()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    try:
        idle[0].sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        t0 = time.monotonic()
        status, _, body = moat.admin("GET", "/healthz")
        assert (status, body) == (200, b"ok\n")
        assert moat.metrics().value("moat_requests_total", site="a.test", code="200",
                                    default=0) == 0
        assert time.monotonic() - t0 < 2 * SLOW
        assert moat.curl("a.test", "/").status == 200
    finally:
        for s in idle:
            s.close()


@pytest.fixture
def od(acme, request, tmp_path):  # noqa: F811
    from ondemand_helpers import OnDemandEnv
    env = OnDemandEnv(acme, request, tmp_path)
    yield env
    env.stop()


def test_metrics_on_demand(od):
    """A handshake that waits for an on-demand certificate and a refused name show in
    the on-demand metrics."""
    from ondemand_helpers import fetch, handshake
    p = od.start_pebble()
    ask = od.start_ask()
    ask.set("denied.od.test", 403)
    m = od.moat(sites=[od.od_site(["*"])])  # any name, allow *.od.test, ask
    f = fetch(m.https_port, "first.od.test", p.root, "/first", timeout=60)
    assert f.ok and f.status == 200, f
    got = wait_metric(m, lambda x: x.value("moat_acme_certificates_obtained_total") >= 1)
    assert got.value("moat_on_demand_waits_total") == 1, got
    assert got.value("moat_on_demand_wait_seconds_count") == 1, got
    assert 0 < got.value("moat_on_demand_wait_seconds_sum") <= f.total_s + 1, (got, f)
    assert got.value("moat_on_demand_wait_seconds_bucket", le="+Inf") == 1, got
    assert got.value("moat_acme_orders_total") == 1, got
    assert got.value("moat_on_demand_refused_total") == 0, got

    for name in ("denied.od.test", "a.b.od.test"):  # refused by ask, by allow
        refused = handshake(m.https_port, name, p.root, timeout=15)
        assert not refused.ok, refused
    got = wait_metric(m, lambda x: x.value("moat_on_demand_refused_total") >= 2)
    assert got.value("moat_on_demand_refused_total") == 2, got
    # a paused handshake counts as a wait whatever the answer: as many as the
    # on_demand_wait log lines
    waits = len([e for e in m.logs() if e.get("event") == "on_demand_wait"])
    assert got.value("moat_on_demand_waits_total") == waits, got
    assert got.value("moat_on_demand_wait_seconds_count") == waits, got
    assert got.value("moat_acme_orders_total") == 1, got
    # the certificate obtained is listed with its expiry
    assert got.value("moat_certificate_expiry_timestamp_seconds", name="first.od.test"), got


def test_admin_listen_values(pki, backend, moat_factory):
    # localhost is accepted and stays on loopback
    m = moat_factory([site(["a.test"], pki.a, [backend])], admin={"listen": "localhost:0"})
    port = m.admin_port()
    e = m.wait_event("admin_listening")
    assert e.get("address") in ("127.0.0.1", "::1", "localhost"), e
    assert port in listening_ports(m.pid)
    host = "::1" if e.get("address") == "::1" else "127.0.0.1"
    with socket.create_connection((host, port), timeout=5 * SLOW) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200"), "Host: localhost refused"
    # a host name other than localhost is a configuration error, before anything runs
    bad = moat_factory([site(["a.test"], pki.a, [backend])], start=False,
                       admin={"listen": "admin.example:2019"})
    bad.spawn()
    rc = bad.wait_exit(15 * SLOW)
    assert rc not in (None, 0), bad.stderr_text()
    assert "admin.listen" in bad.stderr_text(), bad.stderr_text()
