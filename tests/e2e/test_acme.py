"""ACME (RFC 8555): moat obtains, stores, reuses and renews certificates from a
real ACME CA, Pebble, with tls-alpn-01 and http-01.

Every test runs its own Pebble + pebble-challtestsrv (mock DNS: every name is
127.0.0.1) on free loopback ports; Pebble validates against moat's planned
https/http ports. Served certificates are checked against the root and
intermediate Pebble made at its start. See pebble.py.
"""

import copy
import hashlib
import json
import os
import re
import ssl
import subprocess
import time

import pytest

from conftest import MOAT_BIN, SLOW, clean_env, site
from pebble import (UNRECOGNIZED, CertInfo, acme, acme_events, b64url,  # noqa: F401
                    check_storage, pebble_factory, pebble_listener_ca, s_client,
                    served_cert, storage_files, tls_get, wait_event)

STEPS = ("acme_order_created", "acme_challenge_ready", "acme_authorization_valid",
         "acme_order_finalized", "acme_certificate_stored")


def event_index(moat, pred):
    for i, e in enumerate(moat.logs()):
        if pred(e):
            return i
    return None


def assert_steps_logged(moat, name="app.test"):
    """The issuance steps were logged in order, each with name and elapsed_ms."""
    created = acme_events(moat, "acme_account_created")
    loaded = acme_events(moat, "acme_account_loaded")
    assert created or loaded, "no acme_account_created/_loaded:\n%s" % moat.log_text()
    idx = []
    for ev in STEPS:
        hits = acme_events(moat, ev, name)
        assert hits, "no %s for %s:\n%s" % (ev, name, moat.log_text())
        for h in hits:
            assert isinstance(h.get("elapsed_ms"), (int, float)) and h["elapsed_ms"] >= 0, h
        idx.append(event_index(moat, lambda e, ev=ev: e.get("event") == ev
                               and e.get("name") == name))
    assert idx == sorted(idx), "steps out of order: %s" % list(zip(STEPS, idx))
    # moat is ready (listening) before it has the certificate: it does not wait
    ready = event_index(moat, lambda e: e.get("event") == "ready")
    assert ready is not None and ready < idx[-1], moat.log_text()


def served_serial_soon(acme_env, moat, name="app.test", within=1.0):
    """Serial of the certificate served for name, retrying for `within` s."""
    deadline = time.monotonic() + within * SLOW
    while True:
        try:
            return served_cert(moat.https_port, name, acme_env.pebble.root).serial
        except (OSError, ssl.SSLError) as e:
            if time.monotonic() > deadline:
                pytest.fail("moat does not serve %s: %r\n%s" % (name, e, moat.log_text()))
            time.sleep(0.05)


# ---------------------------------------------------------------------------
# 1, 2: issuance with each challenge type

@pytest.mark.parametrize("challenge", ["tls-alpn-01", "http-01"])
def test_issuance(acme, challenge):
    # Pebble validates the other challenge type against a dead port
    p = acme.make_pebble(only=challenge)
    m = acme.moat(challenges=[challenge], acme={"email": "ops@example.com"})
    acme.wait_issued(m)
    assert not acme_events(m, "acme_failed"), m.log_text()
    assert_steps_logged(m)
    leaf = acme.check_served(m)
    assert p.orders() == 1, p.log_text()
    assert p.issued_serials() == [leaf.serial_int], p.log_text()
    stored = check_storage(acme.storage, p.ca_key, "app.test")
    assert CertInfo(stored[0]).serial == leaf.serial
    assert acme.backend.stats()["seen_paths"].count("/acme-check") == 1


# ---------------------------------------------------------------------------
# 3: badNonce

def test_bad_nonce_retried(acme):
    p = acme.make_pebble(nonce_reject=50)
    assert "reject 50% of good nonces" in p.log_text(), p.log_text()
    m = acme.moat(challenges=["tls-alpn-01", "http-01"])
    acme.wait_issued(m)
    acme.check_served(m)
    check_storage(acme.storage, p.ca_key, "app.test")


# ---------------------------------------------------------------------------
# 4: restart with the same storage

def test_restart_reuses_account_and_certificate(acme):
    p = acme.make_pebble()
    m1 = acme.moat()
    acme.wait_issued(m1)
    first = acme.check_served(m1)
    assert p.orders() == 1 and p.accounts() == 1, p.log_text()
    assert m1.stop() == 0

    m2 = acme.moat()
    # served right away from storage
    assert served_serial_soon(acme, m2) == first.serial
    # give a wrong implementation time to order anyway
    time.sleep(2.0 * SLOW)
    assert not acme_events(m2, "acme_account_created"), m2.log_text()
    assert not acme_events(m2, "acme_order_created"), m2.log_text()
    assert not acme_events(m2, "acme_certificate_stored"), m2.log_text()
    assert not acme_events(m2, "acme_failed"), m2.log_text()
    assert p.orders() == 1, "Pebble saw a new order:\n" + p.log_text()
    assert p.accounts() == 1, "Pebble saw a new account:\n" + p.log_text()
    assert acme.check_served(m2).serial == first.serial


# ---------------------------------------------------------------------------
# 5: renewal under load

def test_renewal_without_failed_requests(acme):
    """40 s certificates: moat renews when half the lifetime remains. A client
    makes a fresh, verified TLS connection + request every 0.1 s across the
    renewal; none may fail, and the served certificate changes."""
    p = acme.make_pebble(validity=40)
    m = acme.moat(challenges=["tls-alpn-01", "http-01"])
    acme.wait_issued(m)
    first = served_cert(m.https_port, "app.test", p.root)
    assert first.not_after_ts - first.not_before_ts <= 60, first  # Pebble's short validity

    t0 = time.monotonic()
    deadline = t0 + 60 * SLOW
    seen = {}           # sha256(leaf DER) -> first time seen
    failures = []
    ok = 0
    renewed_at = None
    while time.monotonic() < deadline:
        t = time.monotonic() - t0
        try:
            status, body, der = tls_get(m.https_port, "app.test", p.root, "/renewal",
                                        timeout=5 * SLOW)
            if status != 200:
                failures.append((round(t, 1), "status %d %r" % (status, body[:100])))
            else:
                ok += 1
                seen.setdefault(hashlib.sha256(der).hexdigest(), (round(t, 1), der))
        except (OSError, ssl.SSLError) as e:
            failures.append((round(t, 1), repr(e)))
        if renewed_at is None and acme_events(m, "acme_certificate_renewed", "app.test"):
            renewed_at = time.monotonic()
        if renewed_at is not None and len(seen) >= 2 \
                and time.monotonic() - renewed_at > 1.0 * SLOW:
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    summary = "after %.1fs: %d ok, %d certificates seen %s, failures %s" % (
        elapsed, ok, len(seen), sorted(v[0] for v in seen.values()), failures[:10])
    assert acme_events(m, "acme_certificate_renewed", "app.test"), \
        summary + "\n" + m.log_text()
    assert not failures, summary
    assert len(seen) >= 2, "served certificate never changed: " + summary
    latest = served_cert(m.https_port, "app.test", p.root)
    assert latest.serial != first.serial, summary
    assert latest.not_after_ts > first.not_after_ts, (first, latest)
    assert p.orders() >= 2, p.log_text()
    stored = check_storage(acme.storage, p.ca_key, "app.test")
    assert CertInfo(stored[0]).serial != first.serial, "renewed certificate not stored"


# ---------------------------------------------------------------------------
# 6: external account binding

def eab_key():
    return b64url(os.urandom(48))  # 64 characters, no padding either way


def test_eab(acme):
    key = eab_key()
    p = acme.make_pebble(eab_keys={"kid-1": key})
    assert p.directory()["meta"]["externalAccountRequired"] is True
    m = acme.moat(acme={"eab": {"kid": "kid-1", "hmac_key": key},
                        "email": "ops@example.com"})
    acme.wait_issued(m)
    acme.check_served(m)
    assert re.search(r'Binding with CA using kid "kid-1"', p.log_text()), p.log_text()
    check_storage(acme.storage, p.ca_key, "app.test")


def test_eab_wrong_key_fails(acme):
    p = acme.make_pebble(eab_keys={"kid-1": eab_key()})
    m = acme.moat(acme={"eab": {"kid": "kid-1", "hmac_key": eab_key()}})
    failed = wait_event(m, "acme_failed", "app.test", timeout=15, pebble=p)
    assert failed.get("error"), failed
    assert isinstance(failed.get("retry_in_ms"), (int, float)) and failed["retry_in_ms"] > 0
    assert not acme_events(m, "acme_certificate_stored"), m.log_text()
    assert p.orders() == 0 and p.accounts() == 0, p.log_text()
    rc, out = s_client(m.https_port, "app.test", p.root)
    assert rc != 0 and UNRECOGNIZED.search(out), out
    assert m.running()


# ---------------------------------------------------------------------------
# 7: CA down at start

def test_ca_down_at_start(acme, pki):
    p = acme.make_pebble(start=False)   # ports and directory URL fixed, not running
    m = acme.moat(sites=[site(["a.test"], pki.a, [acme.backend]), acme.acme_site()],
                  challenges=["tls-alpn-01", "http-01"])
    # up and serving the site that has certificate files
    r = m.curl("a.test", "/static-site")
    assert r.rc == 0 and r.status == 200, r
    first = wait_event(m, "acme_failed", "app.test", timeout=15)
    assert first.get("error"), first
    assert isinstance(first.get("retry_in_ms"), (int, float)), first
    assert 0 < first["retry_in_ms"] <= 15000, first   # retry_initial 2s, retry_max 10s
    # it retries (after ~2 s)
    wait_event(m, "acme_failed", "app.test", timeout=first["retry_in_ms"] / 1000.0 + 8,
               after=1)
    rc, out = s_client(m.https_port, "app.test", p.listener_ca.ca)
    assert rc != 0 and UNRECOGNIZED.search(out), out
    assert m.curl("a.test", "/still-up").status == 200

    p.start()
    t0 = time.monotonic()
    acme.wait_issued(m, timeout=30)
    took = time.monotonic() - t0
    acme.check_served(m)
    assert m.curl("a.test", "/after").status == 200
    assert took < 30 * SLOW, took


@pytest.mark.parametrize("on_demand", [False, True])
def test_first_handshake_waits_for_the_startup_order(acme, on_demand):
    """A client arriving while the certificate of a listed name is still being ordered
    waits for that order instead of being refused, and never causes a second order
    (with on-demand TLS on too)."""
    p = acme.make_pebble()
    over = {"on_demand": {"enabled": True, "allow": ["app.test"]}} if on_demand else {}
    m = acme.moat(**over)
    # no wait for acme_certificate_stored: the first client races the start-up order
    status, body, _ = tls_get(m.https_port, "app.test", p.root, "/early", timeout=30 * SLOW)
    assert status == 200, body
    acme.wait_issued(m)
    # the client did arrive before the certificate (an order takes 100 ms or more)
    waits = [e for e in m.logs() if e.get("event") == "on_demand_wait"
             and e.get("name") == "app.test"]
    assert waits, m.log_text()
    assert p.orders() == 1, p.log_text()
    assert len(acme_events(m, "acme_order_created", "app.test")) == 1, m.log_text()
    assert acme.check_served(m)


def test_reload_drops_and_restores_an_acme_site(acme):
    """A reload that drops a site with an ACME certificate stops serving and renewing
    it (storage keeps it); listing it again serves it from storage without a new order."""
    p = acme.make_pebble()
    m = acme.moat(sites=[acme.acme_site(["app.test"]), acme.acme_site(["two.test"])])
    acme.wait_issued(m, "app.test")
    acme.wait_issued(m, "two.test")
    assert served_serial_soon(acme, m, "two.test")
    both = copy.deepcopy(m.config)

    only_app = copy.deepcopy(both)
    only_app["sites"] = [s for s in both["sites"] if s["hosts"] == ["app.test"]]
    m.write_config(only_app)
    assert m.reload().get("event") == "reloaded", m.log_text()
    assert any(e.get("event") == "acme_unmanaged" and "two.test" in e.get("msg", "")
               for e in m.logs()), m.log_text()
    rc, out = s_client(m.https_port, "two.test", p.root)
    assert rc != 0 and UNRECOGNIZED.search(out), out
    assert served_serial_soon(acme, m, "app.test")

    m.write_config(both)
    assert m.reload().get("event") == "reloaded", m.log_text()
    assert served_serial_soon(acme, m, "two.test", within=5.0)
    assert p.orders() == 2, p.log_text()   # from storage, not ordered again


# ---------------------------------------------------------------------------
# 8: the one-liner

def test_proxy_one_liner(acme):
    p = acme.make_pebble()
    m = acme.moat_proxy([
        "--from", "app.test", "--to", acme.backend.addr,
        "--https-port", acme.https_port, "--http-port", acme.http_port,
        "--bind", "127.0.0.1", "--workers", "1",
        "--acme-ca", p.dir_url, "--acme-ca-root", p.listener_ca.ca,
        "--storage", acme.storage, "--email", "ops@example.com",
        "--challenges", "tls-alpn-01,http-01"])
    acme.wait_issued(m)
    acme.check_served(m)
    check_storage(acme.storage, p.ca_key, "app.test")
    assert p.orders() == 1, p.log_text()


# ---------------------------------------------------------------------------
# 9: moat certs list

def test_certs_list(acme):
    p = acme.make_pebble()
    m = acme.moat(challenges=["http-01"])
    acme.wait_issued(m)
    leaf = acme.check_served(m)
    r = subprocess.run([MOAT_BIN, "certs", "list", "--storage", str(acme.storage)],
                       capture_output=True, timeout=20 * SLOW, env=clean_env())
    out = r.stdout.decode(errors="replace")
    info = "rc=%s\nstdout:\n%s\nstderr:\n%s" % (r.returncode, out,
                                                r.stderr.decode(errors="replace"))
    assert r.returncode == 0, info
    assert "app.test" in out, info
    assert leaf.issuer_cn in out, "issuer %r not listed:\n%s" % (leaf.issuer_cn, info)
    t = time.gmtime(leaf.not_after_ts)
    expiry_forms = [time.strftime("%Y-%m-%d", t), leaf.not_after,
                    time.strftime("%b %d %Y", t), time.strftime("%d %b %Y", t)]
    assert any(f in out for f in expiry_forms), "expiry (%s) not listed:\n%s" % (
        leaf.not_after, info)
    crt = storage_files(acme.storage, p.ca_key, "app.test")["crt"]
    assert str(crt) in out or str(crt.parent) in out, "path not listed:\n" + info


# ---------------------------------------------------------------------------
# A CA that refuses with rateLimited and Retry-After. Pebble never rate-limits, so a
# scripted CA stands in for that answer: directory, nonces and account as RFC 8555
# describes them, then 429 for every new order.

class RateLimitedCA:
    def __init__(self, listener_ca, retry_after):
        import http.server
        import threading

        ca = self
        self.orders = 0
        self.retry_after = retry_after

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, body=b"", headers=()):
                self.send_response(status)
                self.send_header("Replay-Nonce", b64url(os.urandom(16)))
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self._send(200)

            def do_GET(self):
                base = "https://127.0.0.1:%d" % ca.port
                if self.path == "/dir":
                    body = json.dumps({"newNonce": base + "/nonce", "newAccount": base + "/acct",
                                       "newOrder": base + "/order"}).encode()
                    self._send(200, body, [("Content-Type", "application/json")])
                else:
                    self._send(200)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                base = "https://127.0.0.1:%d" % ca.port
                if self.path == "/acct":
                    self._send(201, b'{"status":"valid"}',
                               [("Location", base + "/acct/1"),
                                ("Content-Type", "application/json")])
                elif self.path == "/order":
                    ca.orders += 1
                    body = json.dumps({"type": "urn:ietf:params:acme:error:rateLimited",
                                       "detail": "too many new orders recently"}).encode()
                    self._send(429, body, [("Retry-After", str(ca.retry_after)),
                                           ("Content-Type", "application/problem+json")])
                else:
                    self._send(404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(listener_ca.cert), str(listener_ca.key))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_rate_limited_order_waits_for_retry_after(pebble_listener_ca, backend, moat_factory,
                                                   tmp_path):
    """A CA answering rateLimited with Retry-After is not asked again before then, even
    when retry_initial and retry_max are shorter."""
    ca = RateLimitedCA(pebble_listener_ca, retry_after=120)
    try:
        m = moat_factory([{"hosts": ["app.test"], "upstreams": [backend.addr]}],
                         acme={"ca": "https://127.0.0.1:%d/dir" % ca.port,
                               "ca_root": str(pebble_listener_ca.ca),
                               "storage": str(tmp_path / "storage"),
                               "retry_initial": "1s", "retry_max": "2s"})
        failed = wait_event(m, "acme_failed", "app.test", timeout=15)
        assert "rateLimited" in failed.get("error", ""), failed
        assert failed["retry_in_ms"] >= 120000, failed
        time.sleep(3 * SLOW)  # past retry_max: a back-off ignoring Retry-After asks again
        assert ca.orders == 1, m.log_text()
    finally:
        ca.stop()
