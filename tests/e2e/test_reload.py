"""Config reload, by SIGHUP and by POST /reload: new upstreams take effect for new
requests, broken configs are refused while the old one keeps serving, listeners
open and close, nothing fails under load, requests in flight and WebSocket
tunnels finish on the config they started with, and keys that need a restart
are reported and kept."""

import copy
import json
import os
import signal
import socket
import ssl
import threading
import time
from pathlib import Path

from backend import ws_frame
from conftest import SLOW, TlsClient, free_port, listening_ports, site
from test_bodies import ws_read_frame


def with_upstream(moat, addr, i=0):
    """A copy of moat's config whose site i forwards to addr."""
    cfg = copy.deepcopy(moat.config)
    cfg["sites"][i]["upstreams"] = [addr]
    return cfg


def name_of(moat, host="a.test", path="/"):
    r = moat.curl(host, path)
    assert r.rc == 0 and r.status == 200, r
    return r.json()["name"]


def post_reload(moat):
    status, hdrs, body = moat.admin("POST", "/reload")
    assert hdrs.get("content-type", "").startswith("application/json"), (status, hdrs, body)
    return status, json.loads(body)


def count(v):
    """listeners_added / listeners_removed as a number, whether logged as a count or
    as a list of addresses."""
    return len(v) if isinstance(v, list) else int(v)


def tls_get(moat, port, host, path):
    with TlsClient(port, host, moat.pki.ca, timeout=10 * SLOW) as c:
        return c.request("GET", path, host, headers=[("Connection", "close")])


def wait_refused(port, timeout=3.0):
    """True once connecting to port is refused (and stays refused for 10 tries)."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        refused = 0
        for _ in range(10):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                refused += 1
        if refused == 10:
            return True
        time.sleep(0.05)
    return False


def events(moat, name):
    return [e for e in moat.logs() if e.get("event") == name]


# ---------------------------------------------------------------------------

def test_sighup_switches_upstream(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one]), site(["b.test"], pki.b, [one])])
    assert name_of(moat) == "one"
    with moat.tls_client("a.test") as kept:
        assert kept.request("GET", "/before", "a.test").json()["name"] == "one"

        moat.write_config(with_upstream(moat, two.addr))
        e = moat.reload()
        assert e["event"] == "reloaded", e
        assert e["generation"] == 2 and e["sites"] == 2, e
        assert count(e["listeners_added"]) == 0 and count(e["listeners_removed"]) == 0, e

        # a new request on a connection opened before the reload uses the new config
        r = kept.request("GET", "/after", "a.test")
        assert r.status == 200 and r.json()["name"] == "two", r
    for i in range(3):
        assert name_of(moat, path="/n%d" % i) == "two"
    assert name_of(moat, "b.test") == "one"  # the other site is unchanged
    assert [p for p in one.stats()["seen_paths"] if p.startswith("/n")] == []
    assert moat.metrics().value("moat_config_reloads_total", result="success") == 1


def test_post_reload(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    t0 = time.time()

    moat.write_config(with_upstream(moat, two.addr))
    status, j = post_reload(moat)
    assert (status, j.get("status"), j.get("generation")) == (200, "reloaded", 2), j
    assert events(moat, "reloaded"), moat.log_text()
    assert name_of(moat) == "two"

    moat.write_config(with_upstream(moat, one.addr))
    status, j = post_reload(moat)
    assert (status, j.get("status"), j.get("generation")) == (200, "reloaded", 3), j
    assert name_of(moat) == "one"

    m = moat.metrics()
    assert m.value("moat_config_reloads_total", result="success") == 2, m
    assert m.value("moat_config_reloads_total", result="failure", default=0) == 0, m
    ts = m.value("moat_config_last_reload_success_timestamp_seconds")
    assert t0 - 1 <= ts <= time.time() + 1, (t0, ts)


def test_broken_configs_are_refused(pki, backend_factory, moat_factory, tmp_path):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    good = copy.deepcopy(moat.config)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)

    bad_key = with_upstream(moat, two.addr)
    bad_key["sites"][0]["bogus_key"] = 1
    missing_cert = with_upstream(moat, two.addr)
    missing_cert["sites"][0]["certificate"]["cert"] = str(tmp_path / "no-such-cert.pem")
    busy_port = with_upstream(moat, two.addr)
    busy_port["listen"]["https"].append("127.0.0.1:%d" % busy.getsockname()[1])
    cases = [
        ("bad key", bad_key, "sites[0].bogus_key"),
        ("syntax", json.dumps(with_upstream(moat, two.addr))[:-3], None),
        ("missing certificate file", missing_cert, "no-such-cert.pem"),
        ("listener port taken", busy_port, str(busy.getsockname()[1])),
    ]
    failures = 0
    # the file is gone for a moment (an editor renaming it, say)
    hidden = moat.config_path.with_name("moat.json.away")
    os.rename(moat.config_path, hidden)
    e = moat.reload()
    failures += 1
    assert e["event"] == "reload_failed" and "moat.json" in json.dumps(e), e
    os.rename(hidden, moat.config_path)
    try:
        for what, cfg, needle in cases:
            moat.write_config(cfg)
            e = moat.reload()
            failures += 1
            assert e["event"] == "reload_failed" and e["level"] == "error", (what, e)
            if needle:
                assert needle in json.dumps(e), (what, e)
            status, j = post_reload(moat)
            failures += 1
            assert status == 400 and j.get("status") == "refused", (what, status, j)
            assert isinstance(j.get("errors"), list) and j["errors"], (what, j)
            if needle:
                assert any(needle in x for x in j["errors"]), (what, j)
            # the old config keeps serving, its listeners too
            assert name_of(moat, path="/still-%s" % what.replace(" ", "-")) == "one", what
            assert moat.running()
    finally:
        busy.close()
    assert two.stats()["requests"] == 0

    m = moat.metrics()
    assert m.value("moat_config_reloads_total", result="failure") == failures, m
    assert m.value("moat_config_reloads_total", result="success", default=0) == 0, m

    # the generation did not move: the next good config is generation 2
    good["sites"][0]["upstreams"] = [two.addr]
    moat.write_config(good)
    status, j = post_reload(moat)
    assert (status, j.get("generation")) == (200, 2), j
    assert name_of(moat) == "two"


def test_listeners_added_and_removed(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])], workers=2)
    p1, h1 = moat.https_port, moat.http_port
    p2 = free_port()

    cfg = copy.deepcopy(moat.config)
    cfg["listen"]["https"].append("127.0.0.1:%d" % p2)
    moat.write_config(cfg)
    e = moat.reload()
    assert e["event"] == "reloaded" and count(e["listeners_added"]) == 1, e
    assert count(e["listeners_removed"]) == 0, e
    for _ in range(4):  # both workers take connections on it
        r = tls_get(moat, p2, "a.test", "/on-p2")
        assert r.status == 200 and r.json()["path"] == "/on-p2", r

    cfg = copy.deepcopy(moat.config)
    cfg["listen"]["https"] = ["127.0.0.1:%d" % p1]
    moat.write_config(cfg)
    e = moat.reload()
    assert e["event"] == "reloaded" and count(e["listeners_removed"]) == 1, e
    assert wait_refused(p2), "port %d still accepts after its listener was removed" % p2
    assert tls_get(moat, p1, "a.test", "/on-p1").status == 200

    # the plain-HTTP listener goes away and comes back
    cfg = copy.deepcopy(moat.config)
    del cfg["listen"]["http"]
    moat.write_config(cfg)
    e = moat.reload()
    assert e["event"] == "reloaded" and count(e["listeners_removed"]) == 1, e
    assert wait_refused(h1), "plain port %d still accepts" % h1
    cfg["listen"]["http"] = ["127.0.0.1:%d" % h1]
    moat.write_config(cfg)
    e = moat.reload()
    assert e["event"] == "reloaded" and count(e["listeners_added"]) == 1, e
    r = moat.curl("a.test", "/plain", scheme="http")
    assert r.status == 308, r
    assert r.header("location") == "https://a.test:%d/plain" % p1, r
    assert moat.curl("a.test", "/tls").status == 200
    assert listening_ports(moat.pid) == {p1, h1, moat.admin_port()}


def test_no_failed_requests_under_reloads(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])], workers=2)
    configs = [copy.deepcopy(moat.config), with_upstream(moat, two.addr)]
    stop = threading.Event()
    lock = threading.Lock()
    done, failures, names = [0], [], set()

    def client(tid):
        # odd threads send one request per connection, even ones four (keep-alive)
        per_conn = 1 if tid % 2 else 4
        i = 0
        while not stop.is_set():
            try:
                with moat.tls_client("a.test", timeout=10 * SLOW) as c:
                    for _ in range(per_conn):
                        i += 1
                        path = "/t%d-%d" % (tid, i)
                        r = c.request("GET", path, "a.test", timeout=10)
                        j = r.json() if r.status == 200 else {}
                        with lock:
                            if r.status != 200 or j.get("path") != path or \
                                    j.get("name") not in ("one", "two"):
                                failures.append((path, r))
                            else:
                                done[0] += 1
                                names.add(j["name"])
                        if stop.is_set():
                            break
            except Exception as e:  # every exception is a failed request
                with lock:
                    failures.append(("/t%d-%d" % (tid, i), repr(e)))

    def scraper():
        while not stop.is_set():
            try:
                moat.metrics()
                status, _, body = moat.admin("GET", "/certificates")
                assert status == 200 and json.loads(body)["certificates"], body
            except Exception as e:
                with lock:
                    failures.append(("admin", repr(e)))
            time.sleep(0.02)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(4)]
    threads.append(threading.Thread(target=scraper, daemon=True))
    for t in threads:
        t.start()
    t_end = time.monotonic() + 20
    try:
        time.sleep(0.3 * SLOW)
        for k in range(5):
            moat.write_config(configs[(k + 1) % 2])
            if k % 2 == 0:
                e = moat.reload()
                assert e["event"] == "reloaded", e
            else:
                status, j = post_reload(moat)
                assert status == 200, j
            time.sleep(0.3 * SLOW)
            if time.monotonic() > t_end:
                break
    finally:
        stop.set()
        for t in threads:
            t.join(15 * SLOW)
    assert not failures, "%d failed of %d requests; first: %r" % (
        len(failures), len(failures) + done[0], failures[:5])
    assert done[0] >= 40, "only %d requests went through" % done[0]
    print("%d requests through 5 reloads" % done[0])
    assert names == {"one", "two"}, names
    assert len(events(moat, "reloaded")) == 5
    assert name_of(moat) == "two"


def test_request_in_flight_finishes_on_its_config(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    ms = int(1000 * SLOW)
    result = {}
    c = moat.tls_client("a.test", timeout=20 * SLOW)

    def slow():
        try:
            result["r"] = c.request("GET", "/slow?ms=%d" % ms, "a.test", timeout=20)
        except Exception as e:
            result["error"] = e

    t = threading.Thread(target=slow)
    t.start()
    try:
        st = one.wait_seen(lambda s: s["requests"] >= 1, timeout=5 * SLOW)
        assert st["requests"] == 1, st
        moat.write_config(with_upstream(moat, two.addr))
        t_reload = time.monotonic()
        e = moat.reload()
        assert e["event"] == "reloaded", e
        assert "r" not in result, "the slow request ended before the reload: no test"
        assert time.monotonic() - t_reload < ms / 1000.0, "reload waited for the request"
        t.join(20 * SLOW)
        assert "error" not in result, result
        r = result["r"]
        assert r.status == 200 and r.json()["name"] == "one", r
        assert r.json()["path"] == "/slow?ms=%d" % ms
        # the same client connection, next request: new config
        r = c.request("GET", "/next", "a.test")
        assert r.status == 200 and r.json()["name"] == "two", r
    finally:
        c.close()
        t.join(5)


def ws_open(moat):
    c = moat.tls_client("a.test", timeout=10 * SLOW)
    c.send(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    status, _, _, head = c.read_head(10)
    assert status == 101, head
    assert ws_read_frame(c) == (0x80, 0x1, False, b"welcome")
    return c


def ws_echo(c, msg):
    c.send(ws_frame(0x1, msg, mask=os.urandom(4)))
    assert ws_read_frame(c) == (0x80, 0x1, False, msg)


def test_websocket_survives_reloads(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    c = ws_open(moat)
    try:
        ws_echo(c, b"before")
        moat.write_config(with_upstream(moat, two.addr))
        assert moat.reload()["event"] == "reloaded"
        ws_echo(c, b"after the upstream changed")
        status, j = post_reload(moat)
        assert status == 200, j
        ws_echo(c, b"after a second reload")
        # a new tunnel goes to the new upstream
        c2 = ws_open(moat)
        ws_echo(c2, b"new")
        c2.close()
        assert two.stats()["seen_paths"].count("/ws") == 1
        assert one.stats()["seen_paths"].count("/ws") == 1
        # the old tunnel still works and closes cleanly
        ws_echo(c, b"last")
        c.send(ws_frame(0x8, b"\x03\xe8", mask=os.urandom(4)))
        assert ws_read_frame(c)[1] == 0x8
    finally:
        c.close()


def test_keys_needing_restart_are_kept(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    first = copy.deepcopy(moat.config)
    admin_port = moat.admin_port()
    uid = proc_uid(moat.pid)
    threads = len(os.listdir("/proc/%d/task" % moat.pid))
    cfg = with_upstream(moat, two.addr)
    cfg["workers"] = 3
    cfg["admin"] = {"listen": "off"}
    cfg["tls"] = {"default_sni": "a.test"}
    cfg["user"] = "nobody"
    moat.write_config(cfg)
    n = len(moat.logs())
    e = moat.reload()
    assert e["event"] == "reloaded", e
    warn = [x for x in moat.logs()[n:] if x.get("event") == "reload_restart_required"]
    assert len(warn) == 1 and warn[0]["level"] == "warn", moat.log_text()
    keys = warn[0]["keys"]
    keys = keys if isinstance(keys, list) else [k.strip() for k in str(keys).split(",")]
    assert sorted(keys) == ["admin", "tls", "user", "workers"], warn
    # the rest applied ...
    assert name_of(moat) == "two"
    # ... but not those: the admin endpoint stayed where it was, a client without SNI
    # still fails (no default_sni), no user switch, no new worker threads
    assert moat.admin_port() == admin_port
    status, _, body = moat.admin("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert not no_sni_handshake(moat), "tls.default_sni applied without a restart"
    assert proc_uid(moat.pid) == uid
    assert len(os.listdir("/proc/%d/task" % moat.pid)) == threads

    # a later reload without those changes says nothing about a restart
    moat.write_config(first)
    n = len(moat.logs())
    assert moat.reload()["event"] == "reloaded"
    assert not [x for x in moat.logs()[n:] if x.get("event") == "reload_restart_required"]
    assert name_of(moat) == "one"


def proc_uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("Uid:"):
                return ln.split()[1:]
    return None


def no_sni_handshake(moat):
    ctx = ssl.create_default_context(cafile=str(moat.pki.ca))
    ctx.check_hostname = False
    try:
        with socket.create_connection(("127.0.0.1", moat.https_port), timeout=5 * SLOW) as raw:
            with ctx.wrap_socket(raw, server_hostname=None):
                return True
    except (ssl.SSLError, OSError):
        return False


def served_der(moat, port, name):
    ctx = ssl.create_default_context(cafile=str(moat.pki.ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            return s.getpeercert(binary_form=True)


def file_der(path):
    pem = Path(path).read_text()
    first = pem[:pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


def test_sites_and_certificates_change(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    port = moat.https_port
    assert served_der(moat, port, "a.test") == file_der(pki.a.cert)
    for i in range(3):
        assert name_of(moat, path="/g1-%d" % i) == "one"
    assert not handshake_ok(moat, "b.test")

    # a new site with its own certificate, a new certificate for a.test, no access log
    a2 = pki.leaf("a2.test", sans=["a.test"])
    cfg = copy.deepcopy(moat.config)
    cfg["sites"] = [site(["a.test"], a2, [one]), site(["b.test"], pki.b, [two])]
    cfg["log"]["access"] = False
    moat.write_config(cfg)
    e = moat.reload()
    assert e["event"] == "reloaded" and e["sites"] == 2, e
    assert served_der(moat, port, "a.test") == file_der(a2.cert), "old certificate still served"
    assert served_der(moat, port, "b.test") == file_der(pki.b.cert)
    assert name_of(moat, "b.test", "/b") == "two"
    n_access = len(events(moat, "access"))
    for i in range(2):
        assert name_of(moat, path="/g2-%d" % i) == "one"
    assert len(events(moat, "access")) == n_access, "access log still on after reload"

    # what the admin endpoint reports follows
    from test_admin import cert_not_after
    m = moat.metrics()
    assert m.value("moat_requests_total", site="a.test", code="200") == 5, m
    assert m.value("moat_requests_total", site="b.test", code="200") == 1, m
    assert m.value("moat_certificate_expiry_timestamp_seconds", name="b.test") == \
        cert_not_after(pki.b.cert), m
    assert m.value("moat_certificate_expiry_timestamp_seconds", name="a.test") == \
        cert_not_after(a2.cert), m
    status, _, body = moat.admin("GET", "/certificates")
    certs = json.loads(body)["certificates"]
    assert sorted(n for c in certs for n in c["names"]) == ["a.test", "b.test"], certs

    # the site goes away again: its name no longer has a certificate
    cfg = copy.deepcopy(moat.config)
    cfg["sites"] = [site(["a.test"], a2, [one])]
    moat.write_config(cfg)
    e = moat.reload()
    assert e["event"] == "reloaded" and e["sites"] == 1, e
    assert not handshake_ok(moat, "b.test"), "b.test still served after its site was removed"
    assert name_of(moat) == "one"
    m = moat.metrics()
    assert m.value("moat_certificate_expiry_timestamp_seconds", name="b.test") is None, m


def handshake_ok(moat, name):
    try:
        served_der(moat, moat.https_port, name)
        return True
    except (ssl.SSLError, OSError):
        return False


def test_health_checks_follow_reload(pki, backend_factory, moat_factory):
    one = backend_factory("one")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    time.sleep(0.5 * SLOW)
    assert "/hc" not in one.stats()["seen_paths"]
    cfg = copy.deepcopy(moat.config)
    cfg["sites"][0]["health_check"] = {"path": "/hc", "interval": "100ms"}
    moat.write_config(cfg)
    assert moat.reload()["event"] == "reloaded"
    st = one.wait_seen(lambda s: s["seen_paths"].count("/hc") >= 2, timeout=3 * SLOW)
    assert st["seen_paths"].count("/hc") >= 2, st
    # the route moves to another upstream: that one is checked, the old one no more
    two = backend_factory("two")
    cfg["sites"][0]["upstreams"] = [two.addr]
    moat.write_config(cfg)
    assert moat.reload()["event"] == "reloaded"
    st = two.wait_seen(lambda s: s["seen_paths"].count("/hc") >= 2, timeout=3 * SLOW)
    assert st["seen_paths"].count("/hc") >= 2, st
    time.sleep(0.3 * SLOW)
    n = one.stats()["seen_paths"].count("/hc")
    time.sleep(0.6 * SLOW)
    assert one.stats()["seen_paths"].count("/hc") == n, "an upstream no route names is checked"

    del cfg["sites"][0]["health_check"]
    moat.write_config(cfg)
    assert moat.reload()["event"] == "reloaded"
    time.sleep(0.3 * SLOW)
    n = two.stats()["seen_paths"].count("/hc")
    time.sleep(0.6 * SLOW)
    assert two.stats()["seen_paths"].count("/hc") == n, "checks go on after they were removed"
    assert name_of(moat) == "two"


def test_upload_in_flight_and_drain_after_reloads(pki, backend_factory, moat_factory):
    """A request body still arriving during a reload goes on to the upstream it
    started with; after reloads, SIGTERM still drains and exits 0."""
    import hashlib
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])])
    body = os.urandom(256 * 1024)
    with moat.tls_client("a.test", timeout=20 * SLOW) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body[:1000])
        one.wait_seen(lambda s: "/upload" in s["seen_paths"], timeout=5 * SLOW)
        moat.write_config(with_upstream(moat, two.addr))
        assert moat.reload()["event"] == "reloaded"
        c.send(body[1000:])
        r = c.read_response(20)
        assert r.status == 200, r
        j = r.json()
        assert j["received"] == len(body) and j["sha256"] == hashlib.sha256(body).hexdigest(), j
        r = c.request("GET", "/next", "a.test")
        assert r.status == 200 and r.json()["name"] == "two", r
    assert "/upload" not in two.stats()["seen_paths"]
    status, _ = post_reload(moat)
    assert status == 200
    assert moat.stop() == 0, moat.log_text()


def test_repeated_reloads_leak_no_fds_or_threads(pki, backend_factory, moat_factory):
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one], health_check={
        "path": "/hc", "interval": "100ms"})], workers=2)
    extra = free_port()
    a = copy.deepcopy(moat.config)
    b = with_upstream(moat, two.addr)
    b["listen"]["https"].append("127.0.0.1:%d" % extra)
    b["sites"].append(site(["b.test"], pki.b, [one]))

    def fds():
        """moat's open fds, less its (pooled, health-check) connections to backends."""
        upstream = set()
        with open("/proc/%d/net/tcp" % moat.pid) as f:
            next(f)
            for ln in f:
                parts = ln.split()
                if int(parts[2].rsplit(":", 1)[1], 16) in (one.port, two.port):
                    upstream.add(parts[9])
        n = 0
        for fd in os.listdir("/proc/%d/fd" % moat.pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (moat.pid, fd))
            except OSError:
                continue
            n += not (target.startswith("socket:[") and target[8:-1] in upstream)
        return n

    def threads():
        return len(os.listdir("/proc/%d/task" % moat.pid))

    assert name_of(moat) == "one"
    # warm up once in each direction (pools, lazily started threads)
    for cfg in (b, a):
        moat.write_config(cfg)
        assert moat.reload()["event"] == "reloaded"
        name_of(moat)
    time.sleep(0.3 * SLOW)
    fd0, th0 = fds(), threads()
    for k in range(10):
        for cfg, want in ((b, "two"), (a, "one")):
            moat.write_config(cfg)
            e = moat.reload()
            assert e["event"] == "reloaded", e
            assert name_of(moat, path="/k%d" % k) == want
    assert moat.reload()["generation"] == 24
    deadline = time.monotonic() + 3 * SLOW
    while (fds(), threads()) != (fd0, th0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (fds(), threads()) == (fd0, th0), \
        "20 reloads: fds %d -> %d, threads %d -> %d" % (fd0, fds(), th0, threads())
    assert listening_ports(moat.pid) == {moat.https_port, moat.http_port, moat.admin_port()}


def test_sighup_burst(pki, backend_factory, moat_factory):
    """Signals arriving faster than reloads finish: moat survives, ends on the file's
    config, and every reload it did is logged."""
    one, two = backend_factory("one"), backend_factory("two")
    moat = moat_factory([site(["a.test"], pki.a, [one])], workers=2)
    moat.write_config(with_upstream(moat, two.addr))
    for _ in range(10):
        moat.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline and not events(moat, "reloaded"):
        time.sleep(0.05)
    time.sleep(0.5 * SLOW)
    assert moat.running()
    done = events(moat, "reloaded")
    assert 1 <= len(done) <= 10 and not events(moat, "reload_failed"), moat.log_text()
    assert [e["generation"] for e in done] == list(range(2, 2 + len(done))), done
    assert name_of(moat) == "two"
    status, j = post_reload(moat)
    assert status == 200 and j["generation"] == 2 + len(done), j
