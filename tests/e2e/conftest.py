"""Fixtures for moat's end-to-end tests.

Everything runs on loopback with ports picked by the kernel, in per-test temp
dirs, so several test files can run at the same time.

  pki              session: a test CA and leaf certificates made with `openssl`
  backend_factory  start backend.py processes:  b = backend_factory("b1")
  moat_factory     start moat with a JSON config:  m = moat_factory(sites=[...])
  site(...)        build a site dict for a config

Every moat gets an admin endpoint on 127.0.0.1:0: Moat.admin(), .metrics(),
.reload() (SIGHUP) and .write_config() drive the operations features.

The moat binary comes from $MOAT_BIN (default ../../build/moat from here).
"""

import copy
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MOAT_BIN = os.environ.get("MOAT_BIN") or str((HERE / ".." / ".." / "build" / "moat").resolve())
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable



def _slowdown():
    """Factor for timing tolerances: $MOAT_TEST_SLOWDOWN, else 3 for a
    sanitizer build of moat, else 1."""
    if os.environ.get("MOAT_TEST_SLOWDOWN"):
        return float(os.environ["MOAT_TEST_SLOWDOWN"])
    try:
        with open(MOAT_BIN, "rb") as f:
            if b"__asan_init" in f.read():
                return 3.0
    except OSError:
        pass
    return 1.0


SLOW = _slowdown()


def clean_env(extra=None):
    """Environment for child processes: never use an HTTP proxy."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------
# ports

_handed_out = set()
_port_lock = threading.Lock()


def free_port(host="127.0.0.1"):
    """A currently free TCP port on loopback (kernel-chosen, never repeated in
    this process)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        with _port_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port")


def wait_port(port, host="127.0.0.1", timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def listening_ports(pid):
    """TCP ports the process `pid` listens on (its sockets in /proc/PID/fd that
    /proc/PID/net/tcp{,6} shows in LISTEN state)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        try:
            with open(table) as f:
                next(f)
                for ln in f:
                    parts = ln.split()
                    if parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


# ---------------------------------------------------------------------------
# processes

def stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signal proc (by its PID), wait, SIGKILL after timeout. Returns exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def tail(path, max_lines=200):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return "<%s: %s>" % (path, e)
    return tail_text(text, max_lines)


def tail_text(text, max_lines=200):
    lines = text.splitlines()
    if len(lines) > max_lines:
        lines = ["... (%d lines cut)" % (len(lines) - max_lines)] + lines[-max_lines:]
    return "\n".join(lines)


def parse_log_lines(text):
    """moat's JSON log lines as dicts; other lines are skipped."""
    out = []
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln.startswith("{"):
            continue
        try:
            obj = json.loads(ln)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


# ---------------------------------------------------------------------------
# certificates

class Cert:
    def __init__(self, name, cert, key, chain, kind):
        self.name, self.cert, self.key, self.chain, self.kind = name, cert, key, chain, kind

    def config(self):
        return {"cert": str(self.chain), "key": str(self.key)}


def _openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(map(str, args)),
                                                      r.stderr.decode(errors="replace")))
    return r.stdout


class PKI:
    """A test CA plus leaf certificates, all made with the openssl CLI."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key = self.dir / "ca.key"
        self.ca = self.dir / "ca.pem"
        cnf = self.dir / "ca.cnf"
        cnf.write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n"
            "[dn]\nCN = moat e2e test CA\nO = moat tests\n"
            "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
            "keyUsage = critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier = hash\n")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", self.ca_key)
        _openssl("req", "-x509", "-new", "-key", self.ca_key, "-config", cnf,
                 "-extensions", "v3_ca", "-days", "30", "-sha256", "-out", self.ca)
        self._serial = int(time.time() * 1000) & 0x7FFFFFFFFFFF
        self.certs = {}

    def leaf(self, name, sans=None, kind="ec"):
        """Issue a leaf for `name` (subject CN) with DNS SANs `sans` (default [name]).
        kind: "ec" (P-256) or "rsa" (2048). Returns a Cert; chain = leaf + CA."""
        sans = sans or [name]
        base = re.sub(r"[^A-Za-z0-9.-]", "_", name) + "-" + kind
        key = self.dir / (base + ".key")
        csr = self.dir / (base + ".csr")
        crt = self.dir / (base + ".crt")
        chain = self.dir / (base + "-chain.pem")
        ext = self.dir / (base + ".ext")
        if kind == "ec":
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                     "-out", key)
            ku = "digitalSignature"
        elif kind == "rsa":
            _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                     "-out", key)
            ku = "digitalSignature,keyEncipherment"
        else:
            raise ValueError(kind)
        ext.write_text(
            "[v3_leaf]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,%s\nextendedKeyUsage = serverAuth\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
            "subjectAltName = %s\n" % (ku, ",".join("DNS:" + s for s in sans)))
        _openssl("req", "-new", "-key", key, "-subj", "/CN=" + name, "-out", csr)
        self._serial += 1
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                 "-set_serial", self._serial, "-days", "30", "-sha256",
                 "-extfile", ext, "-extensions", "v3_leaf", "-out", crt)
        chain.write_bytes(crt.read_bytes() + self.ca.read_bytes())
        os.chmod(key, 0o600)
        c = Cert(name, crt, key, chain, kind)
        self.certs[(name, kind)] = c
        return c


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    p = PKI(tmp_path_factory.mktemp("pki"))
    p.a = p.leaf("a.test")
    p.b = p.leaf("b.test")
    p.w = p.leaf("*.w.test")
    p.rsa = p.leaf("rsa.test", kind="rsa")
    return p


def site(hosts, cert, upstreams, **kw):
    """A site entry for moat's config. upstreams: Backend objects or "host:port"."""
    s = {"hosts": list(hosts), "certificate": cert.config(),
         "upstreams": [u if isinstance(u, str) else u.addr for u in upstreams]}
    for k, v in kw.items():
        if k == "routes":
            v = [dict(r, upstreams=[u if isinstance(u, str) else u.addr
                                    for u in r["upstreams"]]) for r in v]
        s[k] = v
    return s


# ---------------------------------------------------------------------------
# failure reporting: attach moat's / backends' stderr to a failed test's report

@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for label, path in getattr(item, "_e2e_logs", []):
            rep.sections.append((label, tail(path)))


def _register_log(request, label, path):
    node = request.node
    if not hasattr(node, "_e2e_logs"):
        node._e2e_logs = []
    node._e2e_logs.append((label, path))


# ---------------------------------------------------------------------------
# backend

class Backend:
    def __init__(self, workdir, name, port=0):
        self.name = name
        self.stderr_path = Path(workdir) / ("backend-%s.stderr" % name)
        self._err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, str(HERE / "backend.py"), "--name", name, "--port", str(port)],
            stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
            env=clean_env())
        line = b""
        deadline = time.monotonic() + 15
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                b = os.read(self.proc.stdout.fileno(), 256)
                if not b:
                    break
                line += b
        m = re.match(rb"READY (\d+) (\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("backend did not start: %r\n%s" % (line, tail(self.stderr_path)))
        self.port, self.control_port = int(m.group(1)), int(m.group(2))
        self.addr = "127.0.0.1:%d" % self.port
        assert wait_port(self.port), "backend port not accepting"

    def _control(self, path):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=10)
        try:
            c.request("GET", path)
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def stats(self):
        """{connections, requests, seen_paths} — not counting this call."""
        return self._control("/stats")

    def reset(self):
        return self._control("/reset")

    def wait_seen(self, pred, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if pred(st) or time.monotonic() > deadline:
                return st
            time.sleep(0.02)

    def stop(self):
        stop_process(self.proc, signal.SIGTERM, 5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._err.close()


@pytest.fixture
def backend_factory(tmp_path, request):
    started = []

    def start(name="backend", port=0):
        """port: 0 = a free one; a stopped backend's port starts it again there."""
        b = Backend(tmp_path, name, port)
        started.append(b)
        if not any(path == b.stderr_path for _, path in getattr(request.node, "_e2e_logs", [])):
            _register_log(request, "backend %s stderr" % name, b.stderr_path)
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def backend(backend_factory):
    return backend_factory("b1")


# ---------------------------------------------------------------------------
# moat

def deep_merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class CurlResult:
    def __init__(self, rc, status, headers, body, stderr, elapsed):
        self.rc, self.status, self.headers, self.body = rc, status, headers, body
        self.stderr, self.elapsed = stderr, elapsed

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<curl rc=%s status=%s stderr=%r body=%r>" % (
            self.rc, self.status, self.stderr[-500:], self.body[:300])


def parse_header_block(text):
    """Last response head in a curl -D dump -> (status, [(name, value)])."""
    blocks = [b for b in re.split(r"\r?\n\r?\n", text) if b.strip().startswith("HTTP/")]
    if not blocks:
        return 0, []
    lines = blocks[-1].strip().splitlines()
    status = int(lines[0].split()[1])
    hdrs = []
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            hdrs.append((k.strip(), v.strip()))
    return status, hdrs


class Metrics:
    """The admin endpoint's /metrics page, parsed with prometheus_client (which
    rejects text that is not valid exposition format)."""

    def __init__(self, text):
        from prometheus_client.parser import text_string_to_metric_families
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def find(self, metric, **labels):
        """Samples called `metric` whose labels include `labels`."""
        return [s for s in self.samples if s.name == metric
                and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, metric, default=None, **labels):
        """The value of the one sample called `metric` with exactly these labels, or
        default."""
        hits = [s for s in self.samples if s.name == metric and s.labels == labels]
        assert len(hits) <= 1, hits
        return hits[0].value if hits else default

    def __repr__(self):
        return "<Metrics\n%s>" % self.text


class Moat:
    """One moat process run with a generated config file."""

    _seq = 0

    def __init__(self, workdir, config, pki, env=None):
        Moat._seq += 1
        self.dir = Path(workdir) / ("moat%d" % Moat._seq)
        self.dir.mkdir(parents=True)
        self.pki = pki
        self.config_path = self.dir / "moat.json"
        self.stderr_path = self.dir / "moat.stderr"
        self.stdout_path = self.dir / "moat.stdout"
        self.env = clean_env(env)
        self.proc = None
        self.returncode = None
        self._n = 0
        self.write_config(config)

    def write_config(self, config):
        """Replace the config file (a dict, or raw text for a broken one) atomically;
        a dict also becomes self.config and sets https_port / http_port / log_path.
        A running moat only sees it after reload()."""
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        tmp = self.config_path.with_name(self.config_path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)
        if isinstance(config, str):
            return
        self.config = copy.deepcopy(config)
        listen = config.get("listen", {})
        self.https_port = int(listen["https"][0].rsplit(":", 1)[1]) if listen.get("https") else None
        self.http_port = int(listen["http"][0].rsplit(":", 1)[1]) if listen.get("http") else None
        log_file = (config.get("log") or {}).get("file")
        self.log_path = (self.dir / log_file) if log_file else None

    # -- lifecycle ------------------------------------------------------
    def spawn(self, argv=None):
        """Start the process without waiting for it (argv default: run -c CONFIG)."""
        if not os.path.exists(MOAT_BIN):
            pytest.fail("moat binary not found at %s (set MOAT_BIN)" % MOAT_BIN)
        self.argv = argv or [MOAT_BIN, "run", "-c", str(self.config_path)]
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([str(a) for a in self.argv], stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err, env=self.env)
        return self

    def start(self, timeout=10.0, argv=None):
        """spawn() and wait for the "ready" log line."""
        self.spawn(argv)
        self.wait_ready(timeout * SLOW)
        return self

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("event") == "ready" for e in self.logs()):
                return
            if self.proc.poll() is not None:
                pytest.fail("moat exited with %s before ready; config:\n%s\nlog:\n%s" % (
                    self.proc.returncode, self.config_path.read_text(), self._log_tails()))
            time.sleep(0.03)
        pytest.fail("moat not ready after %.0fs; config:\n%s\nlog:\n%s" % (
            timeout, self.config_path.read_text(), self._log_tails()))

    def _log_tails(self):
        out = tail(self.stderr_path)
        if self.log_path is not None:
            out += "\n-- %s:\n%s" % (self.log_path, tail(self.log_path))
        return out

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Send sig, wait up to timeout (then SIGKILL); return the exit code."""
        if self.proc is None:
            return None
        rc = stop_process(self.proc, sig, timeout * SLOW)
        self.returncode = rc
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f and not f.closed:
                f.close()
        return rc

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    # -- logs -----------------------------------------------------------
    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_text(self):
        """The log: the file of log.file when the config sets one, else stderr."""
        if self.log_path is None:
            return self.stderr_text()
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def logs(self):
        """moat's log parsed as JSON lines; non-JSON lines are skipped."""
        return parse_log_lines(self.log_text())

    def wait_log(self, pred, timeout=3.0):
        """Poll logs until some entry satisfies pred; return the matches (maybe [])."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            hits = [e for e in self.logs() if pred(e)]
            if hits or time.monotonic() > deadline:
                return hits
            time.sleep(0.05)

    def wait_event(self, event, after=0, timeout=5.0):
        """The first log entry with this event among entries[after:], waiting up to
        timeout (times SLOW); None when it does not come."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            for e in self.logs()[after:]:
                if e.get("event") == event:
                    return e
            if time.monotonic() > deadline:
                return None
            time.sleep(0.03)

    # -- admin endpoint and reload ----------------------------------------
    def admin_port(self, timeout=5.0):
        """The admin port from the admin_listening log line (key "port")."""
        e = self.wait_event("admin_listening", timeout=timeout)
        if e is None:
            pytest.fail("no admin_listening log line; log:\n%s" % tail_text(self.log_text()))
        return int(e["port"])

    def admin(self, method, path, headers=None, body=None, timeout=10.0):
        """One request to the admin endpoint -> (status, {lowercase name: value}, body)."""
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port(), timeout=timeout * SLOW)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def metrics(self):
        """GET /metrics parsed with prometheus_client -> Metrics."""
        status, hdrs, body = self.admin("GET", "/metrics")
        assert status == 200, (status, hdrs, body[:500])
        return Metrics(body.decode())

    def reload(self, timeout=10.0):
        """SIGHUP, then wait for the reloaded / reload_failed line that follows it;
        returns that log entry."""
        n = len(self.logs())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            for e in self.logs()[n:]:
                if e.get("event") in ("reloaded", "reload_failed"):
                    return e
            if self.proc.poll() is not None:
                pytest.fail("moat exited with %s after SIGHUP; log:\n%s" % (
                    self.proc.returncode, tail_text(self.log_text())))
            time.sleep(0.03)
        pytest.fail("no reloaded/reload_failed line %.0fs after SIGHUP; log:\n%s" % (
            timeout * SLOW, tail_text(self.log_text())))

    # -- memory ---------------------------------------------------------
    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return 0

    # -- clients --------------------------------------------------------
    def url(self, host, path="/", scheme="https"):
        port = self.https_port if scheme == "https" else self.http_port
        return "%s://%s:%d%s" % (scheme, host, port, path)

    def curl_cmd(self, *args, hosts=(), cafile=None):
        cmd = ["curl", "-sS", "--noproxy", "*", "--cacert", str(cafile or self.pki.ca),
               "--max-time", str(int(60 * SLOW))]
        for h in hosts:
            for p in (self.https_port, self.http_port):
                if p:
                    cmd += ["--resolve", "%s:%d:127.0.0.1" % (h, p)]
        return cmd + list(args)

    def curl(self, host, path="/", *args, scheme="https", timeout=90, cafile=None):
        """One request with curl (--cacert CA --resolve host:port:127.0.0.1); cafile
        replaces the test PKI's CA (e.g. Pebble's root)."""
        self._n += 1
        body_f = self.dir / ("curl%d.body" % self._n)
        head_f = self.dir / ("curl%d.head" % self._n)
        cmd = self.curl_cmd("-o", str(body_f), "-D", str(head_f), "-w", "%{http_code}",
                            *args, self.url(host, path, scheme), hosts=[host], cafile=cafile)
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, timeout=timeout * SLOW, env=clean_env())
        elapsed = time.monotonic() - t0
        head = head_f.read_text(errors="replace") if head_f.exists() else ""
        status, hdrs = parse_header_block(head)
        body = body_f.read_bytes() if body_f.exists() else b""
        for f in (body_f, head_f):
            if f.exists():
                f.unlink()
        return CurlResult(r.returncode, status, hdrs, body,
                          r.stderr.decode(errors="replace"), elapsed)

    def tls_client(self, host, timeout=10.0, alpn=("http/1.1",)):
        return TlsClient(self.https_port, host, self.pki.ca, timeout=timeout, alpn=alpn)


@pytest.fixture
def moat_factory(tmp_path, pki, request):
    """start(sites=[...], **top_level_overrides) -> running Moat.

    Fills in workers=1, listen on fresh 127.0.0.1 ports (https + http),
    log {level: info, access: true} and admin {listen: 127.0.0.1:0} unless
    overridden; a top-level override of None leaves that key out of the config
    (admin=None: moat's default admin address). Pass start=False to get an
    unstarted Moat (call .start() or .spawn()); workdir puts its directory
    somewhere else than the test's tmp_path."""
    started = []

    def start(sites, start=True, env=None, workdir=None, **over):
        cfg = {
            "workers": 1,
            "listen": {"https": ["127.0.0.1:%d" % free_port()],
                       "http": ["127.0.0.1:%d" % free_port()]},
            "log": {"level": "info", "access": True},
            "admin": {"listen": "127.0.0.1:0"},
            "sites": sites,
        }
        if "admin" in over:
            del cfg["admin"]
        cfg = deep_merge(cfg, over)
        cfg = {k: v for k, v in cfg.items() if v is not None}
        m = Moat(workdir or tmp_path, cfg, pki, env=env)
        started.append(m)
        _register_log(request, "moat stderr (%s)" % m.dir.name, m.stderr_path)
        if m.log_path is not None:
            _register_log(request, "moat log file (%s)" % m.dir.name, m.log_path)
        if start:
            m.start()
        return m

    yield start
    problems = []
    for m in started:
        m.stop(signal.SIGTERM, timeout=5)
        text = m.stderr_text() + m.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append("%s: %s" % (m.dir.name, marker))
    if problems:
        pytest.fail("sanitizer reports in moat's stderr: %s" % ", ".join(problems))


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: UndefinedBehaviorSanitizer")


# ---------------------------------------------------------------------------
# raw TLS HTTP/1.1 client with byte-level control

class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status, self.reason, self.headers = status, reason, headers
        self.body, self.raw_head = body, raw_head

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %r head=%r body=%r>" % (self.status, self.reason,
                                                     self.raw_head[:500], self.body[:300])


class TlsClient:
    """ssl-wrapped socket to moat, verifying against the test CA."""

    def __init__(self, port, host, ca, timeout=10.0, alpn=("http/1.1",)):
        ctx = ssl.create_default_context(cafile=str(ca))
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False
        self.reset = False

    def send(self, data):
        self.sock.sendall(data)

    def send_tolerant(self, data):
        """Send, but ignore the peer closing on us (it may answer early)."""
        try:
            self.sock.sendall(data)
            return True
        except (OSError, ssl.SSLError):
            return False

    def _fill(self, deadline):
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out waiting for data; have %r" % self.buf[:300])
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            self.eof = self.reset = True
            return False
        except ssl.SSLError as e:
            # e.g. unexpected EOF / bad record after the peer closed
            self.eof = True
            self.ssl_error = e
            return False
        except socket.timeout:
            raise TimeoutError("timed out waiting for data; have %r" % self.buf[:300]) from None
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _read_until(self, sep, deadline):
        while sep not in self.buf:
            if not self._fill(deadline):
                raise EOFError("connection closed; have %r" % self.buf[:300])
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_n(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise EOFError("connection closed after %d of %d bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self, timeout=10.0):
        deadline = time.monotonic() + timeout * SLOW
        head = self._read_until(b"\r\n\r\n", deadline)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        hdrs = []
        for ln in lines[1:]:
            if ln and ":" in ln:
                k, v = ln.split(":", 1)
                hdrs.append((k.strip(), v.strip()))
        return status, reason, hdrs, head

    def read_response(self, timeout=10.0, method="GET"):
        """Read one final response (1xx other than 101 skipped)."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            status, reason, hdrs, head = self.read_head(max(0.01, deadline - time.monotonic()))
            if 100 <= status < 200 and status != 101:
                continue
            break
        r = Response(status, reason, hdrs, b"", head)
        if status == 101 or status in (204, 304) or method == "HEAD":
            return r
        te = (r.header("Transfer-Encoding") or "").lower()
        cl = r.header("Content-Length")
        if "chunked" in te:
            body = b""
            while True:
                line = self._read_until(b"\r\n", deadline)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    break
                body += self._read_n(size, deadline)
                self._read_n(2, deadline)
            r.body = body
        elif cl is not None:
            r.body = self._read_n(int(cl), deadline)
        else:
            while self._fill(deadline):
                pass
            r.body, self.buf = self.buf, b""
        return r

    def read_until_eof(self, timeout=5.0):
        """Read until the peer closes. Returns the extra bytes; raises
        TimeoutError if the connection stays open."""
        deadline = time.monotonic() + timeout * SLOW
        while self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def request(self, method, path, host, headers=(), body=b"", timeout=10.0):
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
        lines += ["%s: %s" % kv for kv in headers]
        if body and not any(k.lower() in ("content-length", "transfer-encoding")
                            for k, _ in headers):
            lines.append("Content-Length: %d" % len(body))
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return self.read_response(timeout, method)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# ---------------------------------------------------------------------------
# memory sampling

class RssSampler:
    """Samples moat's VmRSS every `interval` seconds in a thread."""

    def __init__(self, moat, interval=0.2):
        self.moat, self.interval = moat, interval
        self.samples = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.samples.append(self.moat.rss_kib())
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self.baseline = self.moat.rss_kib()
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(5)
        try:
            self.samples.append(self.moat.rss_kib())
        except OSError:
            pass

    @property
    def peak(self):
        return max(self.samples + [self.baseline])

    @property
    def growth_mib(self):
        return (self.peak - self.baseline) / 1024.0
