"""On-demand TLS: moat obtains a certificate from the ACME CA (Pebble) during
the first TLS handshake for a name that matches a site without certificate
files and passes the on_demand checks (allow patterns, the ask endpoint).

Each test runs its own Pebble + mock DNS (pebble.py), an ask server and, where
a test must control Pebble's tls-alpn-01 validations (how long they take,
which moat instance they reach), a TCP relay on Pebble's tlsPort
(ondemand_helpers.py). Served certificates are verified against the root
Pebble made at its start, with the intermediate moat sends.

  1  first request to a new name succeeds; later connections do not order again
  2  names refused by ask (403, redirect) or by allow: no order, unrecognized_name
  3  10 clients at once for one new name: one order, one certificate
  4  20 new names at once
  5  while a handshake waits for issuance, the same worker serves other names
  6  two moat processes on one storage dir: one order; takeover after SIGKILL
  7  Pebble down: fast failure, back-off, held names keep working, recovery
  8  access log tls_wait_ms and on_demand_ready waited_ms
  +  on_demand.timeout, the `moat proxy --on-demand` one-liner, config checks
"""

import json
import shutil
import signal
import subprocess
import time

import pytest

from conftest import MOAT_BIN, SLOW, TlsClient, clean_env, free_port, site
from ondemand_helpers import (Background, OnDemandEnv, access_lines, events, fetch,
                              fetch_many, handshake, od_summary, order_count, wait_for)
from pebble import (CertInfo, acme, acme_events, curl_ca, der_to_pem,  # noqa: F401
                    pebble_factory, pebble_listener_ca, storage_files, wait_event)


@pytest.fixture
def od(acme, request, tmp_path):  # noqa: F811
    env = OnDemandEnv(acme, request, tmp_path)
    yield env
    env.stop()


def leaf_of(f):
    return CertInfo(der_to_pem(f.der))


def ok200(f):
    return f.ok and f.status == 200


# ---------------------------------------------------------------------------
# 1: first request

def test_first_request_obtains_certificate(od):
    p = od.start_pebble()
    m = od.moat(on_demand=od.on_demand_block(ask=False))   # allow only
    name = "first.od.test"
    assert not events(m, "on_demand_wait"), m.log_text()

    r = curl_ca(m, name, p.root, "/first")   # the very first handshake for the name
    assert r.rc == 0 and r.status == 200, "%r\n%s" % (r, od_summary(m))
    assert r.json()["path"] == "/first", r
    assert len(events(m, "on_demand_wait", name)) == 1, od_summary(m)
    assert len(wait_for(m, "on_demand_ready", name, timeout=5)) == 1, od_summary(m)
    # logged by the ACME side, possibly just after the handshake resumed
    wait_for(m, "acme_certificate_stored", name, timeout=5)
    assert not events(m, "on_demand_refused") and not events(m, "on_demand_failed"), \
        od_summary(m)

    # new connections (curl, s_client): leaf for the name + Pebble's intermediate,
    # verified against Pebble's root; no new order, no new wait
    leaf = od.acme.check_served(m, name)
    f = fetch(m.https_port, name, p.root, "/second", timeout=10)
    assert ok200(f), f
    assert leaf_of(f).serial == leaf.serial
    assert f.handshake_s < 1.0 * SLOW, f
    time.sleep(0.5 * SLOW)   # room for a wrong implementation to order again
    assert p.orders() == 1, p.log_text()
    assert order_count(m, name) == 1, od_summary(m)
    assert len(events(m, "on_demand_wait", name)) == 1, od_summary(m)
    assert p.issued_serials() == [leaf.serial_int], p.log_text()
    crt = storage_files(od.acme.storage, p.ca_key, name)["crt"]
    assert crt.is_file(), "not stored at %s" % crt
    seen = od.acme.backend.stats()["seen_paths"]
    assert "/first" in seen and "/second" in seen, seen


# ---------------------------------------------------------------------------
# 2: refused names

def test_refused_names_get_no_order(od):
    p = od.start_pebble()
    ask = od.start_ask()
    ask.set("denied.od.test", 403)
    # a redirect is not a yes, and is not followed (it points at a name the
    # ask server would allow)
    ask.set("redirect.od.test", 302,
            headers={"Location": "http://127.0.0.1:%d/check?domain=follow.od.test" % ask.port})
    # site "*" (any name) with ask; allow still limits to one label under od.test
    m = od.moat(sites=[od.od_site(["*"])])

    refused = {"denied.od.test": "ask 403", "redirect.od.test": "ask 302",
               "x.other.test": "not allowed", "a.b.od.test": "not allowed (two labels)"}
    for name, why in refused.items():
        f = handshake(m.https_port, name, p.root, timeout=15)
        assert not f.ok, "%s (%s) was served: %r\n%s" % (name, why, f, od_summary(m))
        assert f.unrecognized, "%s (%s): want alert unrecognized_name, got %r" % (name, why, f)
        assert f.total_s < 2.0 * SLOW, "%s (%s) took %.2fs to refuse" % (name, why, f.total_s)
        hits = wait_for(m, "on_demand_refused", name, timeout=5)
        assert isinstance(hits[0].get("reason"), str) and hits[0]["reason"], hits[0]

    for name in ("denied.od.test", "redirect.od.test"):
        asked = ask.asked(name)
        assert len(asked) == 1, "ask requests for %s: %r" % (name, asked)
        a = asked[0]
        assert a["method"] == "GET" and a["path"] == "/check", a
        assert a["query"] == "domain=" + name, a
    assert not ask.asked("follow.od.test"), "moat followed the redirect: %r" % ask.requests

    # answers are cached (ask_cache 1m): refused again without asking again
    f = handshake(m.https_port, "denied.od.test", p.root, timeout=15)
    assert not f.ok and f.unrecognized, f
    assert len(ask.asked("denied.od.test")) == 1, ask.requests

    time.sleep(0.5 * SLOW)
    assert p.orders() == 0, p.log_text()
    for name in refused:
        assert order_count(m, name) == 0, od_summary(m)
        assert not events(m, "on_demand_ready", name), od_summary(m)

    # control: an allowed name in the same configuration is obtained
    f = fetch(m.https_port, "ok.od.test", p.root, "/ok", timeout=60)
    assert ok200(f), "%r\n%s" % (f, od_summary(m))
    assert leaf_of(f).sans == ["ok.od.test"]
    assert [a["query"] for a in ask.asked("ok.od.test")] == ["domain=ok.od.test"], ask.requests
    assert p.orders() == 1, p.log_text()
    assert m.running()


# ---------------------------------------------------------------------------
# 3: one name, 10 clients at once

def test_concurrent_handshakes_share_one_order(od):
    p = od.start_pebble()
    m = od.moat()
    name = "crowd.od.test"
    res = fetch_many([(m.https_port, name, p.root, "/c%d" % i) for i in range(10)],
                     timeout=60)
    bad = [r for r in res if not ok200(r)]
    assert not bad, "%r\n%s" % (bad, od_summary(m))
    serials = {leaf_of(r).serial for r in res}
    assert len(serials) == 1, serials
    assert leaf_of(res[0]).sans == [name]
    assert p.orders() == 1, p.log_text()
    assert order_count(m, name) == 1, od_summary(m)
    print("ask requests for %s: %d" % (name, len(od.ask.asked(name))))
    seen = od.acme.backend.stats()["seen_paths"]
    assert sorted(x for x in seen if x.startswith("/c")) == sorted("/c%d" % i
                                                                   for i in range(10))


# ---------------------------------------------------------------------------
# 4: 20 names at once

def test_twenty_new_names_at_once(od):
    p = od.start_pebble()
    m = od.moat()
    names = ["n%02d.od.test" % i for i in range(20)]
    t0 = time.monotonic()
    res = fetch_many([(m.https_port, n, p.root, "/many") for n in names], timeout=90)
    took = time.monotonic() - t0
    bad = [r for r in res if not ok200(r)]
    assert not bad, "%d of 20 failed after %.1fs: %r\n%s" % (len(bad), took, bad,
                                                            od_summary(m))
    for n, r in zip(names, res):
        assert leaf_of(r).sans == [n], (n, leaf_of(r))
        assert order_count(m, n) == 1, od_summary(m)
    assert p.orders() == 20, p.log_text()
    assert len(set(r.der for r in res)) == 20
    print("20 names in %.1fs; slowest handshake %.1fs" % (took, max(r.handshake_s
                                                                     for r in res)))


# ---------------------------------------------------------------------------
# 5: the worker keeps serving while a handshake waits

def test_worker_serves_others_while_waiting(od, pki):
    p = od.start_pebble()
    ask = od.start_ask()
    m = od.moat_behind_relay(delay=0, sites=[od.od_site(),
                                             site(["a.test"], pki.a, [od.acme.backend])])
    assert m.config["workers"] == 1
    warm = "warm.od.test"
    f = fetch(m.https_port, warm, p.root, "/warm", timeout=60)
    assert ok200(f), "%r\n%s" % (f, od_summary(m))

    # slow issuance: ask answers after 2 s, then Pebble's validation connections
    # reach moat 2 s late
    slow = "slow.od.test"
    ask.set(slow, 200, delay=2.0)
    od.relay.to(delay=2.0)
    bg = Background(fetch, m.https_port, slow, p.root, "/slow", timeout=60)
    assert ask.wait_asked(slow, timeout=10), "moat never asked about %s\n%s" % (
        slow, od_summary(m))
    samples = []
    deadline = time.monotonic() + 30 * SLOW
    while not bg.done() and time.monotonic() < deadline:
        for host, ca in ((warm, p.root), ("a.test", pki.ca)):
            samples.append(fetch(m.https_port, host, ca, "/during", timeout=5))
        time.sleep(0.1)
    res = bg.join(60)
    assert ok200(res), "%r\n%s" % (res, od_summary(m))
    assert leaf_of(res).sans == [slow]
    slow_done = res.t_start + res.handshake_s
    assert res.handshake_s >= 3.0, "issuance was not slowed down (test setup): %r" % res

    during = [s for s in samples if s.t_start + s.total_s < slow_done]
    answered = [t for t, d, st in ask.answered if d == slow]
    in_order_phase = [s for s in during if answered and s.t_start > answered[0]]
    assert len(during) >= 6, "only %d requests while waiting: %r" % (len(during), samples)
    assert len(in_order_phase) >= 2, "too few requests during the order: %r" % samples
    bad = [s for s in during if not ok200(s) or s.total_s > 0.5 * SLOW]
    assert not bad, "slow or failed while %s waited (%d requests): %r\n%s" % (
        slow, len(during), bad, od_summary(m))
    print("%d requests while %s waited %.1fs; slowest %.0f ms" % (
        len(during), slow, res.handshake_s, 1000 * max(s.total_s for s in during)))


# ---------------------------------------------------------------------------
# 6: two processes, one storage directory

def test_two_instances_share_storage(od):
    p = od.start_pebble()
    od.start_ask()
    ma = od.moat(https_ports=[free_port()], http_ports=[free_port()])
    mb = od.moat(https_ports=[free_port()], http_ports=[free_port()])
    relay = od.start_relay(mb.https_port)   # Pebble's validations reach B

    # 6a: both asked at once: one order, both serve the same certificate
    name = "both.od.test"
    res = fetch_many([(m.https_port, name, p.root, "/both") for m in (ma, mb) * 4],
                     timeout=60)
    bad = [r for r in res if not ok200(r)]
    assert not bad, "%r\n%s" % (bad, od_summary(ma, mb))
    assert len({r.der for r in res}) == 1, [leaf_of(r) for r in res]
    assert p.orders() == 1, p.log_text()
    assert order_count(ma, name) + order_count(mb, name) == 1, od_summary(ma, mb)

    # 6b: asked only on A (A orders), validated only on B: B answers the
    # challenge from storage; then B loads the certificate from storage
    name = "cross.od.test"
    f = fetch(ma.https_port, name, p.root, "/cross", timeout=60)
    assert ok200(f), "%r\n%s" % (f, od_summary(ma, mb))
    assert order_count(ma, name) == 1 and order_count(mb, name) == 0, od_summary(ma, mb)
    assert relay.conns and all(t == mb.https_port for _, t in relay.conns), relay.conns
    fb = fetch(mb.https_port, name, p.root, "/cross-b", timeout=60)
    assert ok200(fb) and fb.der == f.der, "%r\n%s" % (fb, od_summary(ma, mb))
    assert p.orders() == 2, p.log_text()
    assert order_count(mb, name) == 0, od_summary(ma, mb)

    # 6c: the instance holding the lock dies mid-order (validation held back
    # 4 s by the relay); the other takes over once the lock is stale (15 s)
    name = "takeover.od.test"
    relay.to(delay=4.0)
    t0 = time.monotonic()
    bg = Background(fetch_many, [(m.https_port, name, p.root, "/takeover")
                                 for m in (ma, mb, ma, mb)], timeout=90)
    locker = None
    deadline = t0 + 15 * SLOW
    while locker is None and time.monotonic() < deadline:
        for m in (ma, mb):
            if order_count(m, name):
                locker = m
        time.sleep(0.02)
    assert locker is not None, "nobody ordered %s\n%s" % (name, od_summary(ma, mb))
    survivor = mb if locker is ma else ma
    assert not acme_events(locker, "acme_certificate_stored", name), \
        "order finished before the kill (test setup)\n" + od_summary(ma, mb)
    relay.to(target=survivor.https_port, delay=0)
    locker.stop(signal.SIGKILL)
    t_kill = time.monotonic()
    assert order_count(survivor, name) == 0, od_summary(ma, mb)

    # the survivor's first own ACME step (a new order, or the stored result if
    # it resumed the dead instance's order)
    t_order = None
    deadline = t_kill + 40 * SLOW
    while time.monotonic() < deadline:
        stored = acme_events(survivor, "acme_certificate_stored", name)
        if t_order is None and (order_count(survivor, name) or stored):
            t_order = time.monotonic()
        if stored or not survivor.running():
            break
        time.sleep(0.05)
    assert t_order is not None, "%s never took over %s\n%s" % (
        survivor.dir.name, name, od_summary(ma, mb))
    assert acme_events(survivor, "acme_certificate_stored", name), od_summary(ma, mb)
    assert t_order - t0 >= 14.0, "took the lock %.1fs after it was taken (stale after 15 s)" % (
        t_order - t0)
    res = bg.join(120)
    mine = [r for r, m in zip(res, (ma, mb, ma, mb)) if m is survivor]
    bad = [r for r in mine if not ok200(r)]
    assert not bad, "%r\n%s" % (bad, od_summary(ma, mb))
    assert len({r.der for r in mine}) == 1
    assert leaf_of(mine[0]).sans == [name]
    # both, cross, takeover by the dead instance (+ the survivor's, unless it resumed)
    assert p.orders() in (3, 4), p.log_text()
    print("takeover: order %.1fs after the first, %.1fs after the kill" % (
        t_order - t0, t_order - t_kill))


def test_renewal_validated_by_an_instance_serving_the_name(od):
    """Instance A renews a certificate that instance B already serves, and the CA's
    tls-alpn-01 validation reaches B: B must answer with the challenge A stored, not with
    the certificate it serves for the name."""
    p = od.start_pebble(validity=60)
    od.start_ask()
    # A renews after 10% of the lifetime, B only after 90%: A is the one renewing
    ma = od.moat(https_ports=[free_port()], http_ports=[free_port()],
                 acme_over={"renew_window": 0.9})
    mb = od.moat(https_ports=[free_port()], http_ports=[free_port()],
                 acme_over={"renew_window": 0.1})
    relay = od.start_relay(mb.https_port)   # Pebble's validations reach B
    name = "renew.od.test"
    f = fetch(ma.https_port, name, p.root, "/first", timeout=60)
    assert ok200(f), "%r\n%s" % (f, od_summary(ma, mb))
    fb = fetch(mb.https_port, name, p.root, "/b-serves-it", timeout=60)
    assert ok200(fb) and fb.der == f.der, "%r\n%s" % (fb, od_summary(ma, mb))

    renewed = wait_event(ma, "acme_certificate_renewed", name, timeout=40)
    assert renewed, od_summary(ma, mb)
    assert not acme_events(ma, "acme_failed", name), od_summary(ma, mb)
    assert order_count(mb, name) == 0, od_summary(ma, mb)
    assert relay.conns and all(t == mb.https_port for _, t in relay.conns), relay.conns
    assert p.orders() == 2, p.log_text()


# ---------------------------------------------------------------------------
# 7: the CA is down

def test_ca_down_then_back(od, tmp_path):
    p = od.start_pebble()
    m = od.moat(on_demand=od.on_demand_block(ask=False))
    held = "held.od.test"
    f = fetch(m.https_port, held, p.root, "/held", timeout=60)
    assert ok200(f), "%r\n%s" % (f, od_summary(m))
    old_root = tmp_path / "old-root.pem"
    shutil.copy(p.root, old_root)
    orders_before = p.orders()
    p.stop()

    name = "down.od.test"
    f1 = handshake(m.https_port, name, old_root, timeout=30)
    assert not f1.ok, f1
    assert f1.total_s < 5.0 * SLOW, "failing took %.1fs" % f1.total_s
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline and not (events(m, "on_demand_failed", name)
                                               or acme_events(m, "acme_failed", name)):
        time.sleep(0.05)
    assert events(m, "on_demand_failed", name) or acme_events(m, "acme_failed", name), \
        od_summary(m)
    f2 = handshake(m.https_port, name, old_root, timeout=30)   # within the back-off
    assert not f2.ok and f2.total_s < 1.0 * SLOW, f2
    f = fetch(m.https_port, held, old_root, "/held-down", timeout=10)
    assert ok200(f) and f.handshake_s < 1.0 * SLOW, f

    # a few seconds down, asked now and then: every attempt fails fast
    down_polls = []
    t_end = time.monotonic() + 3.0
    while time.monotonic() < t_end:
        down_polls.append(handshake(m.https_port, name, old_root, timeout=30))
        time.sleep(0.5)
    slow_fail = [x for x in down_polls if x.ok or x.total_s > 5.0 * SLOW]
    assert not slow_fail, slow_fail

    p.start()   # same ports; a new root (p.root re-fetched)
    t_up = time.monotonic()
    got = None
    polls = []
    deadline = t_up + (10 + 25) * SLOW
    while time.monotonic() < deadline:
        x = fetch(m.https_port, name, p.root, "/back", timeout=40)
        polls.append(x)
        if ok200(x):
            got = x
            break
        time.sleep(0.5)
    if got is None:
        gone = [e for e in acme_events(m, "acme_failed", name)
                if "accountDoesNotExist" in str(e.get("error"))]
        hint = ("\nmoat keeps using the account the restarted CA does not know "
                "(accountDoesNotExist, %d times) instead of registering again" % len(gone)
                if gone else "")
        pytest.fail("not obtained %.0fs after Pebble came back; last %r%s\n%s" % (
            time.monotonic() - t_up, polls[-1:], hint, od_summary(m)))
    took = time.monotonic() - t_up
    assert took <= (10 + 15) * SLOW, took   # retry_max 10 s + issuance
    slow_fail = [x for x in polls[:-1] if x.total_s > 5.0 * SLOW]
    assert not slow_fail, slow_fail
    assert leaf_of(got).sans == [name]
    assert p.orders() == orders_before + 1, p.log_text()
    f = fetch(m.https_port, held, old_root, "/held-after", timeout=10)
    assert ok200(f), f
    print("obtained %.1fs after Pebble came back (%d polls)" % (took, len(polls)))


# ---------------------------------------------------------------------------
# 8: which name waited and how long

def test_wait_is_logged(od, pki):
    p = od.start_pebble()
    ask = od.start_ask()
    name = "logged.od.test"
    ask.set(name, 200, delay=1.5)
    m = od.moat(sites=[od.od_site(), site(["a.test"], pki.a, [od.acme.backend])])

    t0 = time.monotonic()
    c = TlsClient(m.https_port, name, p.root, timeout=60 * SLOW)
    hs_ms = (time.monotonic() - t0) * 1000
    try:
        r1 = c.request("GET", "/waited-1", name, timeout=10)
        r2 = c.request("GET", "/waited-2", name, timeout=10)
    finally:
        c.close()
    assert r1.status == 200 and r2.status == 200, (r1, r2)
    assert ok200(fetch(m.https_port, name, p.root, "/not-waited", timeout=10))
    assert ok200(fetch(m.https_port, "a.test", pki.ca, "/static", timeout=10))
    m.wait_log(lambda e: e.get("event") == "access" and e.get("path") == "/static", 5)

    waits = events(m, "on_demand_wait", name)
    readies = events(m, "on_demand_ready", name)
    assert len(waits) == 1 and len(readies) == 1, od_summary(m)
    assert str(waits[0].get("client", "")).startswith("127.0.0.1"), waits[0]
    logs = m.logs()
    assert logs.index(waits[0]) < logs.index(readies[0])
    waited = readies[0].get("waited_ms")
    assert isinstance(waited, (int, float)), readies[0]
    assert 1400 <= waited <= hs_ms + 200, (waited, hs_ms)

    for path in ("/waited-1", "/waited-2"):
        lines = access_lines(m, path)
        assert len(lines) == 1, (path, lines)
        w = lines[0].get("tls_wait_ms")
        assert isinstance(w, (int, float)) and w > 0, lines[0]
        assert abs(w - waited) <= 500, (w, waited)
        assert str(lines[0].get("host", "")).split(":")[0] == name, lines[0]
    for path in ("/not-waited", "/static"):
        lines = access_lines(m, path)
        assert len(lines) == 1, (path, lines)
        assert not lines[0].get("tls_wait_ms"), lines[0]


# ---------------------------------------------------------------------------
# on_demand.timeout

def test_handshake_wait_is_bounded(od):
    p = od.start_pebble()
    ask = od.start_ask()
    name = "late.od.test"
    ask.set(name, 200, delay=5.0)
    m = od.moat(on_demand=od.on_demand_block(timeout="2s"))
    f = handshake(m.https_port, name, p.root, timeout=30)
    assert not f.ok, f
    assert 1.8 <= f.total_s <= 2.0 + 2.0 * SLOW, f
    # the client is told (an alert), not left with a closed socket
    assert "UNRECOGNIZED_NAME" in repr(f.error).upper(), f
    hit = wait_for(m, "on_demand_timeout", name, timeout=5)[0]
    assert isinstance(hit.get("waited_ms"), (int, float)), hit
    assert 1800 <= hit["waited_ms"] <= 2000 + 1500 * SLOW, hit
    assert not events(m, "on_demand_ready", name), od_summary(m)
    assert m.running()


# ---------------------------------------------------------------------------
# the one-liner

def test_proxy_one_liner_on_demand(od):
    p = od.start_pebble()
    ask = od.start_ask()
    ask.set("no.od.test", 403)
    a = od.acme
    m = a.moat_proxy([
        "--from", "*.od.test", "--to", a.backend.addr, "--on-demand", "--ask", ask.url,
        "--https-port", a.https_port, "--http-port", a.http_port, "--bind", "127.0.0.1",
        "--workers", "1", "--acme-ca", p.dir_url, "--acme-ca-root", p.listener_ca.ca,
        "--storage", a.storage, "--challenges", "tls-alpn-01", "--access-log"])
    f = fetch(m.https_port, "one.od.test", p.root, "/one", timeout=60)
    assert ok200(f), "%r\n%s" % (f, od_summary(m))
    assert leaf_of(f).sans == ["one.od.test"]
    wait_for(m, "on_demand_ready", "one.od.test", timeout=5)
    f = handshake(m.https_port, "no.od.test", p.root, timeout=15)
    assert not f.ok and f.unrecognized, f
    wait_for(m, "on_demand_refused", "no.od.test", timeout=5)
    assert ask.asked("one.od.test") and ask.asked("no.od.test"), ask.requests
    assert p.orders() == 1, p.log_text()


# ---------------------------------------------------------------------------
# configuration checks

def test_config_checks(tmp_path, backend):
    def validate(on_demand, hosts=("*.od.test",), label="x"):
        cfg = {"workers": 1, "listen": {"https": ["127.0.0.1:1"], "http": ["127.0.0.1:2"]},
               "acme": {"ca": "https://127.0.0.1:3/dir", "storage": str(tmp_path / "st"),
                        "challenges": ["tls-alpn-01"]},
               "sites": [{"hosts": list(hosts), "upstreams": [backend.addr]}]}
        if on_demand is not None:
            cfg["on_demand"] = on_demand
        path = tmp_path / ("%s.json" % label)
        path.write_text(json.dumps(cfg))
        r = subprocess.run([MOAT_BIN, "validate", "-c", str(path)], capture_output=True,
                           timeout=30 * SLOW, env=clean_env())
        return r.returncode, (r.stdout + r.stderr).decode(errors="replace")

    ask = "http://127.0.0.1:4/check"
    rc, out = validate({"allow": ["*.od.test"], "ask": ask}, label="good")
    assert rc == 0, out
    rc, out = validate({"allow": ["*.od.test"]}, label="allow-only")
    assert rc == 0, out
    rc, out = validate({"ask": ask}, hosts=("*",), label="any-with-ask")
    assert rc == 0, out
    rc, out = validate({}, label="neither")
    assert rc != 0 and "on_demand" in out, out
    rc, out = validate({"allow": ["*.od.test"]}, hosts=("*",), label="any-without-ask")
    assert rc != 0, out


# ---------------------------------------------------------------------------
# start-up with a large storage, and the in-memory cache

def test_start_with_ten_thousand_stored_certificates(od):
    """On-demand certificates are read from storage at their first handshake, not at start:
    10,000 of them in storage keep start-up under a second, and one of them is then served
    from storage without a new order."""
    p = od.start_pebble()
    m = od.moat(on_demand=od.on_demand_block(ask=False))
    name = "stored.od.test"
    assert ok200(fetch(m.https_port, name, p.root, "/obtain")), od_summary(m)
    wait_for(m, "acme_certificate_stored", name, timeout=5)
    m.stop(signal.SIGTERM)
    files = storage_files(od.acme.storage, p.ca_key, name)
    crt, key = files["crt"].read_bytes(), files["key"].read_bytes()
    base = files["crt"].parent.parent
    for i in range(10000):   # copies under other names: enough to be read if moat did
        d = base / ("n%05d.od.test" % i)
        d.mkdir(mode=0o700)
        (d / (d.name + ".crt")).write_bytes(crt)
        (d / (d.name + ".key")).write_bytes(key)
    orders = p.orders()

    m2 = od.moat(on_demand=od.on_demand_block(ask=False), start=False)
    t0 = time.monotonic()
    m2.start()
    startup = time.monotonic() - t0
    assert startup < 1.0 * SLOW, "start-up took %.2f s with 10,000 stored certificates" % startup
    f = fetch(m2.https_port, name, p.root, "/again", timeout=10)
    assert ok200(f), od_summary(m2)
    assert p.orders() == orders, p.log_text()
    assert not events(m2, "acme_order_created"), od_summary(m2)
    assert events(m2, "acme_certificate_loaded"), od_summary(m2)


def test_memory_holds_at_most_cache_size(od):
    """With cache_size 2, a third name pushes the least recently used out of memory; its
    next handshake loads it back from storage, without a new order."""
    p = od.start_pebble()
    m = od.moat(on_demand=od.on_demand_block(ask=False, cache_size=2))
    for name in ("c1.od.test", "c2.od.test"):
        assert ok200(fetch(m.https_port, name, p.root, "/")), od_summary(m)
    time.sleep(1.1)   # last-use times have a one-second resolution
    assert ok200(fetch(m.https_port, "c2.od.test", p.root, "/")), od_summary(m)
    assert ok200(fetch(m.https_port, "c3.od.test", p.root, "/")), od_summary(m)
    evicted = wait_for(m, "on_demand_evicted", timeout=5)
    assert "c1.od.test" in evicted[0].get("msg", ""), evicted
    orders = p.orders()
    assert orders == 3, p.log_text()
    f = fetch(m.https_port, "c1.od.test", p.root, "/back", timeout=10)
    assert ok200(f), od_summary(m)
    assert p.orders() == orders, p.log_text()
    assert len(events(m, "on_demand_wait", "c1.od.test")) == 2, od_summary(m)
    assert any("c1.od.test" in e.get("msg", "") for e in events(m, "acme_certificate_loaded")), \
        od_summary(m)
