"""Helpers for the on-demand TLS end-to-end tests (test_on_demand.py).

  AskServer   the on_demand.ask endpoint: an HTTP server in a thread of the test
              process; answers GET /check?domain=NAME with a per-name status and
              delay (default 200, no delay) and records every request.
  Relay       a TCP relay with an adjustable delay and target. Pebble's tlsPort
              points at it, so the test decides how long a tls-alpn-01 validation
              takes and which moat instance it reaches.
  OnDemandEnv Pebble + ask server (+ relay) + moat processes with an on_demand
              block, built on pebble.AcmeEnv (the `acme` fixture).
  fetch / fetch_many / handshake
              fresh, verified TLS connections with timings.

Everything listens on free 127.0.0.1 ports and is stopped at fixture teardown;
every wait is bounded.
"""

import json
import os
import select
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import MOAT_BIN, SLOW, _register_log, free_port, tail
from pebble import ISSUE_TIMEOUT, acme_events

ON_DEMAND_EVENTS = ("on_demand_wait", "on_demand_ready", "on_demand_refused",
                    "on_demand_failed", "on_demand_timeout")


# ---------------------------------------------------------------------------
# the ask endpoint

class AskServer:
    """GET <path>?domain=NAME -> rules.get(NAME, default): (status, delay_s,
    extra headers). Records (monotonic time, path, domain, client) of every
    request in .requests (before the delay) and the answer time in .answered."""

    def __init__(self, path="/check", log_path=None):
        self.path = path
        self.rules = {}
        self.default = (200, 0.0, {})
        self.requests = []
        self.answered = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.log_path = Path(log_path) if log_path else None
        self._log = open(self.log_path, "a") if self.log_path else None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer._handle(self)

            def do_HEAD(self):
                outer._handle(self)

            def do_POST(self):
                outer._handle(self)

            def log_message(self, fmt, *args):
                outer._write_log("%s %s" % (self.client_address[0], fmt % args))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d%s" % (self.port, path)
        self._t = threading.Thread(target=self.httpd.serve_forever,
                                   kwargs={"poll_interval": 0.1}, daemon=True)
        self._t.start()

    def _write_log(self, text):
        if self._log:
            with self._lock:
                self._log.write("%.3f %s\n" % (time.monotonic(), text))
                self._log.flush()

    def set(self, name, status=200, delay=0.0, headers=None):
        self.rules[name] = (status, delay, dict(headers or {}))

    def _handle(self, h):
        t = time.monotonic()
        u = urllib.parse.urlsplit(h.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        domain = q.get("domain", [None])[0]
        rec = {"t": t, "method": h.command, "path": u.path, "query": u.query,
               "raw": h.path, "domain": domain, "client": h.client_address[0]}
        with self._lock:
            self.requests.append(rec)
        status, delay, hdrs = self.rules.get(domain, self.default)
        if u.path != self.path:
            status, delay, hdrs = 404, 0.0, {}
        if delay:
            self._stop.wait(delay)
        body = b"ok\n" if 200 <= status < 300 else b"no\n"
        try:
            h.send_response(status)
            for k, v in hdrs.items():
                h.send_header(k, v)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(body)))
            h.send_header("Connection", "close")
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
            h.close_connection = True
        except OSError as e:
            self._write_log("answer to %s failed: %r" % (h.path, e))
        with self._lock:
            self.answered.append((time.monotonic(), domain, status))

    def asked(self, domain=None, path=None):
        with self._lock:
            return [r for r in self.requests
                    if (domain is None or r["domain"] == domain)
                    and (path is None or r["path"] == path)]

    def wait_asked(self, domain, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            hits = self.asked(domain)
            if hits:
                return hits
            time.sleep(0.02)
        return []

    def stop(self):
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._t.join(5)
        if self._log:
            self._log.close()
            self._log = None


# ---------------------------------------------------------------------------
# TCP relay in front of moat's https port, for Pebble's validations

class Relay:
    """Accepts on 127.0.0.1:port; after `delay` seconds connects to
    127.0.0.1:target and copies bytes both ways. delay and target can change
    at any time (they apply to connections accepted afterwards).
    .conns: [(accept time, target)]."""

    def __init__(self, port, target, delay=0.0, log_path=None):
        self.port, self.target, self.delay = port, target, delay
        self.conns = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = []
        self.log_path = Path(log_path) if log_path else None
        self._log = open(self.log_path, "a") if self.log_path else None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self._t = threading.Thread(target=self._accept_loop, daemon=True)
        self._t.start()

    def _write_log(self, text):
        if self._log:
            with self._lock:
                self._log.write("%.3f %s\n" % (time.monotonic(), text))
                self._log.flush()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                c, addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            target, delay = self.target, self.delay
            with self._lock:
                self.conns.append((time.monotonic(), target))
            self._write_log("accepted %s:%d -> :%d after %.1fs" % (addr[0], addr[1], target,
                                                                   delay))
            t = threading.Thread(target=self._serve, args=(c, target, delay), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c, target, delay):
        up = None
        try:
            if delay and self._stop.wait(delay):
                return
            try:
                up = socket.create_connection(("127.0.0.1", target), timeout=5)
            except OSError as e:
                self._write_log("connect to :%d failed: %r" % (target, e))
                return
            c.setblocking(False)
            up.setblocking(False)
            peer = {c: up, up: c}
            open_ = {c, up}
            deadline = time.monotonic() + 60
            while open_ and not self._stop.is_set() and time.monotonic() < deadline:
                r, _, _ = select.select(list(open_), [], [], 0.2)
                for s in r:
                    try:
                        d = s.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        d = b""
                    if not d:
                        open_.discard(s)
                        try:
                            peer[s].shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        continue
                    try:
                        peer[s].setblocking(True)
                        peer[s].settimeout(5)
                        peer[s].sendall(d)
                        peer[s].setblocking(False)
                    except OSError:
                        open_.clear()
        finally:
            for s in (c, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass

    def to(self, target=None, delay=None):
        if target is not None:
            self.target = target
        if delay is not None:
            self.delay = delay

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._t.join(5)
        for t in self._threads:
            t.join(2)
        if self._log:
            self._log.close()
            self._log = None


# ---------------------------------------------------------------------------
# clients

class Fetch:
    """Result of one fresh TLS connection + GET."""

    def __init__(self, name):
        self.name = name
        self.ok = False
        self.status = None
        self.body = b""
        self.der = None
        self.error = None
        self.t_start = None
        self.handshake_s = None
        self.total_s = None

    @property
    def unrecognized(self):
        return self.error is not None and "UNRECOGNIZED_NAME" in str(self.error).upper()

    def __repr__(self):
        return "<Fetch %s ok=%s status=%s handshake=%s total=%s error=%r body=%r>" % (
            self.name, self.ok, self.status,
            None if self.handshake_s is None else round(self.handshake_s, 3),
            None if self.total_s is None else round(self.total_s, 3),
            self.error, self.body[:120])


def fetch(port, name, cafile, path="/", timeout=60.0):
    """Fresh TCP + TLS (verified against cafile, SNI name, ALPN http/1.1) + one
    GET with Connection: close. Never raises for network/TLS errors: see
    .ok / .error. timeout is scaled by SLOW."""
    f = Fetch(name)
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    f.t_start = time.monotonic()
    tmo = timeout * SLOW
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=tmo) as raw:
            raw.settimeout(tmo)
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                f.handshake_s = time.monotonic() - f.t_start
                f.der = s.getpeercert(binary_form=True)
                s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                           % (path, name)).encode())
                data = b""
                while True:
                    try:
                        d = s.recv(65536)
                    except ssl.SSLError:
                        if data:
                            break
                        raise
                    if not d:
                        break
                    data += d
        head, _, body = data.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        f.status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
        f.body = body
        f.ok = f.status is not None
    except (OSError, ssl.SSLError, ValueError) as e:
        f.error = e
    f.total_s = time.monotonic() - f.t_start
    return f


def handshake(port, name, cafile, timeout=60.0):
    """Only the TLS handshake (no request): a Fetch with ok/handshake_s/der/error."""
    f = Fetch(name)
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    f.t_start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout * SLOW) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                f.handshake_s = time.monotonic() - f.t_start
                f.der = s.getpeercert(binary_form=True)
                f.ok = True
    except (OSError, ssl.SSLError) as e:
        f.error = e
    f.total_s = time.monotonic() - f.t_start
    return f


def fetch_many(jobs, timeout=60.0):
    """jobs: [(port, name, cafile, path)] started together (a barrier releases
    all threads at once). Returns the Fetch results in job order."""
    results = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i, job):
        try:
            barrier.wait(10)
        except threading.BrokenBarrierError:
            pass
        results[i] = fetch(*job, timeout=timeout)

    threads = [threading.Thread(target=run, args=(i, j), daemon=True)
               for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * SLOW + 30)
    for i, r in enumerate(results):
        if r is None:
            r = Fetch(jobs[i][1])
            r.error = TimeoutError("client thread did not finish")
            results[i] = r
    return results


class Background:
    """Runs fn() in a thread; .result when done (bounded join)."""

    def __init__(self, fn, *args, **kw):
        self.result = None
        self.exc = None
        self.t_start = time.monotonic()

        def run():
            try:
                self.result = fn(*args, **kw)
            except BaseException as e:  # reported by join()
                self.exc = e

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()

    def done(self):
        return not self._t.is_alive()

    def join(self, timeout):
        self._t.join(timeout * SLOW)
        if self._t.is_alive():
            raise TimeoutError("background client still running after %.0fs" % (timeout * SLOW))
        if self.exc:
            raise self.exc
        return self.result


# ---------------------------------------------------------------------------
# moat's logs

def events(moat, event, name=None):
    return [e for e in moat.logs() if e.get("event") == event
            and (name is None or e.get("name") == name)]


def od_summary(*moats, max_lines=60):
    """The on_demand_* and acme_* lines of moats, for failure messages."""
    out = []
    for m in moats:
        out.append("--- %s (pid %s)" % (m.dir.name, m.proc.pid if m.proc else None))
        lines = [json.dumps(e) for e in m.logs()
                 if str(e.get("event", "")).startswith(("on_demand", "acme_"))]
        if len(lines) > max_lines:
            cut = len(lines) - max_lines
            lines = lines[:max_lines // 3] + ["... (%d lines cut)" % cut] + \
                lines[-(max_lines - max_lines // 3):]
        out += lines
    return "\n".join(out)


def wait_for(moat, event, name=None, timeout=ISSUE_TIMEOUT, count=1, others=()):
    """Wait until moat logged `count` entries of event (for name); return them.
    Fails with the on-demand/acme log lines on timeout or if moat exits."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        hits = events(moat, event, name)
        if len(hits) >= count:
            return hits
        if not moat.running() or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail("%s logged %d x %s%s (want %d) within %.0fs (moat %s)\n%s\nmoat stderr:\n%s" % (
        moat.dir.name, len(events(moat, event, name)), event,
        " for %s" % name if name else "", count, timeout * SLOW,
        "running" if moat.running() else "exited with %s" % moat.proc.returncode,
        od_summary(moat, *others), tail(moat.stderr_path, 40)))


def access_lines(moat, path_prefix=None, host=None):
    out = []
    for e in moat.logs():
        if e.get("event") != "access":
            continue
        if path_prefix is not None and not str(e.get("path", "")).startswith(path_prefix):
            continue
        if host is not None and str(e.get("host", "")).split(":")[0] != host:
            continue
        out.append(e)
    return out


def order_count(moat, name):
    return len(acme_events(moat, "acme_order_created", name))


# ---------------------------------------------------------------------------
# environment: Pebble + ask server + relay + moat(s) with on_demand

DEFAULT_ON_DEMAND = {"allow": ["*.od.test"], "timeout": "60s", "ask_cache": "1m",
                     "concurrency": 8, "cache_size": 1000,
                     "rate_limit": {"orders": 60, "per": "1m"}}


class OnDemandEnv:
    """Built on pebble.AcmeEnv. Pebble validates tls-alpn-01 on acme.https_port:
    either moat listens there itself (relay=False) or a Relay does and forwards
    to moat's own port (relay=True: `relay.to(port, delay)`)."""

    def __init__(self, acme, request, tmp_path):
        self.acme = acme
        self.request = request
        self.tmp = Path(tmp_path)
        self.ask = None
        self.relay = None
        self.pebble = None

    # -- parts ---------------------------------------------------------------
    def start_ask(self):
        path = self.tmp / "ask-server.log"
        self.ask = AskServer(log_path=path)
        _register_log(self.request, "ask server log", path)
        return self.ask

    def start_relay(self, target, delay=0.0):
        path = self.tmp / "relay.log"
        self.relay = Relay(self.acme.https_port, target, delay, log_path=path)
        _register_log(self.request, "relay log", path)
        return self.relay

    def start_pebble(self, **opts):
        self.pebble = self.acme.make_pebble(**opts)
        return self.pebble

    def on_demand_block(self, ask=True, **over):
        d = dict(DEFAULT_ON_DEMAND)
        if ask:
            if self.ask is None:
                self.start_ask()
            d["ask"] = self.ask.url
        d.update(over)
        return {k: v for k, v in d.items() if v is not None}

    def od_site(self, hosts=("*.od.test",)):
        return {"hosts": list(hosts), "upstreams": [self.acme.backend.addr]}

    def moat(self, on_demand=None, sites=None, https_ports=None, http_ports=None,
             acme_over=None, start=True, **over):
        """moat `run -c` with on_demand. https_ports/http_ports: listen lists
        (default: acme's planned ports, i.e. Pebble validates moat directly);
        the first https port is the one Moat.https_port / clients use."""
        if on_demand is None:
            on_demand = self.on_demand_block()
        sites = sites if sites is not None else [self.od_site()]
        https_ports = https_ports or [self.acme.https_port]
        http_ports = http_ports or [self.acme.http_port]
        block = self.acme.acme_block(("tls-alpn-01",), **(acme_over or {}))
        return self.acme._moat_factory(
            sites, start=start, acme=block, on_demand=on_demand,
            listen={"https": ["127.0.0.1:%d" % p for p in https_ports],
                    "http": ["127.0.0.1:%d" % p for p in http_ports]}, **over)

    def moat_behind_relay(self, delay=0.0, **kw):
        """moat on its own fresh ports; the relay (Pebble's tlsPort) forwards
        validations to it after `delay` s."""
        hp, pp = free_port(), free_port()
        m = self.moat(https_ports=[hp], http_ports=[pp], **kw)
        if self.relay is None:
            self.start_relay(m.https_port, delay)
        else:
            self.relay.to(m.https_port, delay)
        return m

    def stop(self):
        if self.ask:
            self.ask.stop()
        if self.relay:
            self.relay.stop()


def have_moat():
    return os.path.exists(MOAT_BIN)
