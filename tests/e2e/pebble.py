"""Pebble (Let's Encrypt's ACME test CA, Debian package `pebble`) for moat's
ACME end-to-end tests.

Per test, everything on 127.0.0.1 with kernel-chosen ports:

  pebble-challtestsrv  mock DNS only: every name resolves to 127.0.0.1
  pebble               the ACME server; it validates challenges by connecting to
                       moat's ports (httpPort = moat's http, tlsPort = moat's https),
                       so moat's ports are picked before Pebble starts.

Fixtures (import them into the test module):

  pebble_listener_ca  session: a small CA + a cert for 127.0.0.1/localhost that
                      Pebble's own HTTPS listeners use; its CA file is moat's
                      `acme.ca_root`.
  pebble_factory      make(https_port, http_port, start=True, **opts) -> Pebble
  acme                an AcmeEnv: moat's planned ports, a storage dir, helpers to
                      start Pebble and moat (config or one-liner) on those ports.

Pebble makes a new root (and intermediate) at every start; Pebble.start() fetches
both from the management port into root.pem / intermediate.pem. Pebble prints
"There are now N orders in the db" for every new order: Pebble.orders() counts.

Only Debian packages: the openssl CLI for certificates, curl, urllib + ssl.
"""

import base64
import json
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import (MOAT_BIN, SLOW, _openssl, _register_log, clean_env, free_port,
                      stop_process, tail, wait_port)

PEBBLE_BIN = "/usr/bin/pebble"
CHALLTESTSRV_BIN = "/usr/bin/pebble-challtestsrv"

# Time moat gets for one whole issuance (account, order, challenge, finalize).
ISSUE_TIMEOUT = 30.0

ACME_EVENTS = ("acme_account_created", "acme_account_loaded", "acme_order_created",
               "acme_challenge_ready", "acme_authorization_valid", "acme_order_finalized",
               "acme_certificate_stored", "acme_certificate_renewed", "acme_failed")

UNRECOGNIZED = re.compile(r"unrecognized.name|alert number 112", re.I)


def have_pebble():
    return os.access(PEBBLE_BIN, os.X_OK) and os.access(CHALLTESTSRV_BIN, os.X_OK)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------------------
# certificates for Pebble's own listener

class ListenerCA:
    """CA + leaf (SAN IP:127.0.0.1, DNS:localhost) for Pebble's HTTPS listeners."""

    def __init__(self, d):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "pebble-listener-ca.pem"
        self.ca_key = self.dir / "pebble-listener-ca.key"
        self.cert = self.dir / "pebble-listener.pem"
        self.key = self.dir / "pebble-listener.key"
        csr = self.dir / "pebble-listener.csr"
        cnf = self.dir / "ca.cnf"
        cnf.write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n"
            "[dn]\nCN = moat e2e Pebble listener CA\n"
            "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
            "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n")
        ext = self.dir / "leaf.ext"
        ext.write_text(
            "[v3_leaf]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
            "subjectAltName = IP:127.0.0.1,DNS:localhost\n")
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", self.ca_key)
        _openssl("req", "-x509", "-new", "-key", self.ca_key, "-config", cnf,
                 "-extensions", "v3_ca", "-days", "30", "-sha256", "-out", self.ca)
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", self.key)
        _openssl("req", "-new", "-key", self.key, "-subj", "/CN=localhost", "-out", csr)
        _openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                 "-set_serial", int(time.time() * 1000) & 0x7FFFFFFF, "-days", "30",
                 "-sha256", "-extfile", ext, "-extensions", "v3_leaf", "-out", self.cert)
        os.chmod(self.key, 0o600)

    def context(self):
        """ssl context that trusts Pebble's listener."""
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="session")
def pebble_listener_ca(tmp_path_factory):
    if not have_pebble():
        pytest.fail("%s / %s not found: install the Debian package `pebble` "
                    "(deploy/deps.sh does)" % (PEBBLE_BIN, CHALLTESTSRV_BIN))
    return ListenerCA(tmp_path_factory.mktemp("pebble-ca"))


# ---------------------------------------------------------------------------
# processes

def _no_proxy_opener(ctx):
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=ctx))


class ChallTestSrv:
    """pebble-challtestsrv as mock DNS only (A -> 127.0.0.1, no AAAA, no
    challenge listeners)."""

    def __init__(self, workdir, label="challtestsrv"):
        self.dir = Path(workdir)
        self.dns_port = free_port()
        self.mgmt_port = free_port()
        self.log_path = self.dir / (label + ".log")
        self.proc = None

    def start(self, timeout=10.0):
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CHALLTESTSRV_BIN, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", "127.0.0.1:%d" % self.dns_port, "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", "127.0.0.1:%d" % self.mgmt_port],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            env=clean_env())
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if wait_port(self.mgmt_port, timeout=0.2) and wait_port(self.dns_port, timeout=0.2):
                return self
        self.stop()
        raise RuntimeError("pebble-challtestsrv did not start:\n%s" % tail(self.log_path))

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 5)
            self._log.close()
            self.proc = None


class Pebble:
    """One Pebble ACME server (with its own challtestsrv for DNS).

    https_port / http_port: where Pebble validates tls-alpn-01 / http-01, i.e.
    moat's listeners. Options: only ("http-01" or "tls-alpn-01": the other
    type cannot validate), validity (certificateValidityPeriod, seconds),
    eab_keys ({kid: base64url key}; sets externalAccountBindingRequired),
    nonce_reject (PEBBLE_WFE_NONCEREJECT %), authz_reuse (PEBBLE_AUTHZREUSE %)."""

    _seq = 0

    def __init__(self, workdir, listener_ca, https_port, http_port, validity=None,
                 eab_keys=None, nonce_reject=0, authz_reuse=0, only=None):
        Pebble._seq += 1
        self.dir = Path(workdir) / ("pebble%d" % Pebble._seq)
        self.dir.mkdir(parents=True)
        self.listener_ca = listener_ca
        self.https_port, self.http_port = https_port, http_port
        # only="http-01" / "tls-alpn-01": Pebble validates the other type against a
        # port where nothing listens, so only that challenge type can succeed.
        self.only = only
        if only == "http-01":
            https_port = free_port()
        elif only == "tls-alpn-01":
            http_port = free_port()
        elif only is not None:
            raise ValueError(only)
        self.port = free_port()
        self.mgmt_port = free_port()
        self.dir_url = "https://127.0.0.1:%d/dir" % self.port
        # moat's directory name for this CA under <storage>/{accounts,certificates}/
        self.ca_key = "127.0.0.1_%d-dir" % self.port
        self.log_path = self.dir / "pebble.log"
        self.config_path = self.dir / "pebble.json"
        self.root = self.dir / "root.pem"
        self.intermediate = self.dir / "intermediate.pem"
        self.dns = ChallTestSrv(self.dir)
        cfg = {
            "listenAddress": "127.0.0.1:%d" % self.port,
            "managementListenAddress": "127.0.0.1:%d" % self.mgmt_port,
            "certificate": str(listener_ca.cert),
            "privateKey": str(listener_ca.key),
            "httpPort": http_port,
            "tlsPort": https_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(eab_keys),
        }
        if validity is not None:
            cfg["certificateValidityPeriod"] = int(validity)
        if eab_keys:
            cfg["externalAccountMACKeys"] = dict(eab_keys)
        self.config = {"pebble": cfg}
        self.config_path.write_text(json.dumps(self.config, indent=2))
        self.env = clean_env({"PEBBLE_VA_NOSLEEP": "1",
                              "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
                              "PEBBLE_AUTHZREUSE": str(authz_reuse)})
        self.proc = None
        self._ctx = listener_ca.context()

    # -- lifecycle ------------------------------------------------------
    def start(self, timeout=15.0):
        t0 = time.monotonic()
        self.dns.start()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PEBBLE_BIN, "-config", str(self.config_path),
             "-dnsserver", "127.0.0.1:%d" % self.dns.dns_port],
            cwd=str(self.dir), stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout * SLOW
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                last = "pebble exited with %s" % self.proc.returncode
                break
            try:
                self.directory()
                break
            except (OSError, ValueError) as e:
                last = e
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("pebble did not answer %s: %s\n%s" % (
                self.dir_url, last, tail(self.log_path)))
        if self.proc.poll() is not None:
            self.stop()
            raise RuntimeError("%s\n%s" % (last, tail(self.log_path)))
        # a new root + intermediate at every start
        self.root.write_bytes(self.mgmt_get("/roots/0"))
        self.intermediate.write_bytes(self.mgmt_get("/intermediates/0"))
        self.started_in = time.monotonic() - t0
        return self

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 5)
            self._log.close()
            self.proc = None
        self.dns.stop()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- HTTP -----------------------------------------------------------
    def get(self, url, timeout=5.0):
        with _no_proxy_opener(self._ctx).open(url, timeout=timeout) as r:
            return r.read()

    def directory(self):
        return json.loads(self.get(self.dir_url, timeout=2.0))

    def mgmt_get(self, path):
        return self.get("https://127.0.0.1:%d%s" % (self.mgmt_port, path))

    # -- log ------------------------------------------------------------
    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def orders(self):
        """Orders Pebble created so far (it prints 'There are now N orders in
        the db' for each)."""
        return len(re.findall(r"There are now \d+ orders in the db", self.log_text()))

    def accounts(self):
        return len(re.findall(r"There are now \d+ accounts in memory", self.log_text()))

    def issued_serials(self):
        """Serials (ints) of the certificates Pebble issued ("Issued certificate
        serial HEX for order ...")."""
        return [int(x, 16) for x in
                re.findall(r"Issued certificate serial ([0-9a-fA-F]+)", self.log_text())]

    def cas(self):
        """(root PEM, intermediate PEM) text."""
        return self.root.read_text(), self.intermediate.read_text()


@pytest.fixture
def pebble_factory(tmp_path, request, pebble_listener_ca):
    """make(https_port, http_port, start=True, **opts) -> Pebble; all stopped at teardown."""
    made = []

    def make(https_port, http_port, start=True, **opts):
        p = Pebble(tmp_path, pebble_listener_ca, https_port, http_port, **opts)
        made.append(p)
        _register_log(request, "pebble log (%s)" % p.dir.name, p.log_path)
        _register_log(request, "challtestsrv log (%s)" % p.dir.name, p.dns.log_path)
        if start:
            p.start()
        return p

    yield make
    for p in made:
        p.stop()


# ---------------------------------------------------------------------------
# certificate inspection (openssl CLI)

PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def pem_certs(text):
    return PEM_RE.findall(text)


def der_to_pem(der):
    return ssl.DER_cert_to_PEM_cert(der)


def same_cert(pem_a, pem_b):
    return ssl.PEM_cert_to_DER_cert(pem_a.strip() + "\n") == \
        ssl.PEM_cert_to_DER_cert(pem_b.strip() + "\n")


class CertInfo:
    """serial, subject, issuer, not_after (openssl text), not_after_ts, sans."""

    def __init__(self, pem):
        self.pem = pem
        r = subprocess.run(["openssl", "x509", "-noout", "-serial", "-subject", "-issuer",
                            "-enddate", "-startdate", "-ext", "subjectAltName",
                            "-nameopt", "RFC2253"],
                           input=pem.encode(), capture_output=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError("openssl x509: %s" % r.stderr.decode(errors="replace"))
        self.text = r.stdout.decode()
        f = {}
        for ln in self.text.splitlines():
            if "=" in ln and not ln.startswith(" "):
                k, v = ln.split("=", 1)
                f.setdefault(k.strip(), v.strip())
        self.serial = f.get("serial", "").upper()
        self.serial_int = int(self.serial, 16) if self.serial else None
        self.subject = f.get("subject", "")
        self.issuer = f.get("issuer", "")
        self.not_after = f.get("notAfter", "")
        self.not_before = f.get("notBefore", "")
        self.not_after_ts = ssl.cert_time_to_seconds(self.not_after)
        self.not_before_ts = ssl.cert_time_to_seconds(self.not_before)
        self.sans = re.findall(r"DNS:([^,\s]+)", self.text)

    @property
    def issuer_cn(self):
        m = re.search(r"CN=([^,]+)", self.issuer)
        return m.group(1) if m else self.issuer

    def __repr__(self):
        return "<cert serial=%s sans=%s issuer=%s notAfter=%s>" % (
            self.serial, self.sans, self.issuer, self.not_after)


def openssl_verify(leaf_pem, root, intermediate, workdir):
    """`openssl verify -CAfile root -untrusted intermediate leaf` -> (ok, output)."""
    leaf = Path(workdir) / ("leaf-%d.pem" % time.monotonic_ns())
    leaf.write_text(leaf_pem)
    r = subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted",
                        str(intermediate), "-purpose", "sslserver", str(leaf)],
                       capture_output=True, timeout=20)
    out = (r.stdout + r.stderr).decode(errors="replace")
    return r.returncode == 0 and ": OK" in out, out


def s_client(port, servername, cafile, timeout=15):
    """openssl s_client -showcerts against port, verifying against cafile with
    what the server sends as chain. Returns (rc, output)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
           servername, "-CAfile", str(cafile), "-verify_return_error", "-showcerts",
           "-verify_hostname", servername]
    req = ("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % servername).encode()
    try:
        r = subprocess.run(cmd, input=req, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout * SLOW, env=clean_env())
        return r.returncode, r.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        return None, (e.output or b"").decode(errors="replace") + "\n<s_client timed out>"


def tls_get(port, host, cafile, path="/", timeout=5.0):
    """One HTTPS GET over a fresh, fully verified TLS connection (no resumption).
    Returns (status, body, leaf DER). Raises OSError / ssl.SSLError on failure."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            der = s.getpeercert(binary_form=True)
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, host)).encode())
            data = b""
            while True:
                try:
                    d = s.recv(65536)
                except ssl.SSLError as e:  # EOF without close_notify
                    if data:
                        break
                    raise e
                if not d:
                    break
                data += d
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3})", head)
    if not m:
        raise OSError("no HTTP response: %r" % data[:200])
    return int(m.group(1)), body, der


def served_cert(port, host, cafile, timeout=5.0):
    """CertInfo of the leaf moat serves for host (verified against cafile)."""
    status, _, der = tls_get(port, host, cafile, timeout=timeout)
    return CertInfo(der_to_pem(der))


def curl_ca(moat, host, cafile, path="/", *args, timeout=60):
    """Like Moat.curl, but trusting cafile (e.g. Pebble's root) instead of the
    test PKI's CA."""
    return moat.curl(host, path, *args, timeout=timeout, cafile=cafile)


# ---------------------------------------------------------------------------
# moat's ACME log events

def acme_events(moat, event=None, name=None):
    return [e for e in moat.logs()
            if e.get("event") in ACME_EVENTS
            and (event is None or e.get("event") == event)
            and (name is None or e.get("name") == name)]


def _event_summary(moat):
    return "\n".join(json.dumps(e) for e in acme_events(moat)) or "<no acme_* events>"


def wait_event(moat, event, name=None, timeout=ISSUE_TIMEOUT, pebble=None, after=0):
    """Wait until moat logs `event` (for `name`); return the entry. Fails with
    moat's ACME events and log (and Pebble's log) on timeout or if moat exits.
    after: ignore the first `after` matching entries (wait for a new one)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        hits = acme_events(moat, event, name)
        if len(hits) > after:
            return hits[after]
        if not moat.running():
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    msg = "moat logged no %s%s within %.0fs (moat %s)\nacme events:\n%s\nmoat stderr:\n%s" % (
        event, " for %s" % name if name else "", timeout * SLOW,
        "running" if moat.running() else "exited with %s" % moat.proc.returncode,
        _event_summary(moat), tail(moat.stderr_path, 60))
    if pebble is not None:
        msg += "\npebble log:\n" + tail(pebble.log_path, 60)
    pytest.fail(msg)


# ---------------------------------------------------------------------------
# storage

def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def storage_files(storage, ca_key, name):
    """Paths moat's spec puts certificate and account files at."""
    storage = Path(storage)
    cert_dir = storage / "certificates" / ca_key / name
    return {
        "crt": cert_dir / (name + ".crt"),
        "key": cert_dir / (name + ".key"),
        "json": cert_dir / (name + ".json"),
        "account_dirs": sorted(p for p in (storage / "accounts" / ca_key).glob("*")
                               if p.is_dir()) if (storage / "accounts" / ca_key).is_dir()
        else [],
    }


def check_storage(storage, ca_key, name):
    """Assert the storage layout and permissions; return the stored leaf PEM."""
    storage = Path(storage)
    f = storage_files(storage, ca_key, name)
    listing = "\n".join("%o %s" % (mode(p), p.relative_to(storage))
                        for p in sorted(storage.rglob("*"))) if storage.exists() else "<none>"
    for k in ("crt", "key", "json"):
        assert f[k].is_file(), "missing %s; storage has:\n%s" % (f[k], listing)
    assert mode(f["key"]) == 0o600, "%s has mode %o, want 600:\n%s" % (
        f["key"], mode(f["key"]), listing)
    json.loads(f["json"].read_text())  # metadata is JSON
    assert len(f["account_dirs"]) == 1, "expected one account dir under accounts/%s:\n%s" % (
        ca_key, listing)
    acct = f["account_dirs"][0]
    assert (acct / "account.json").is_file(), listing
    json.loads((acct / "account.json").read_text())
    assert (acct / "account.key").is_file(), listing
    assert mode(acct / "account.key") == 0o600, "account.key has mode %o, want 600:\n%s" % (
        mode(acct / "account.key"), listing)
    dirs = [storage] + [p for p in storage.rglob("*") if p.is_dir()]
    bad = [str(p) for p in dirs if mode(p) != 0o700]
    assert not bad, "directories not 0700: %s\n%s" % (bad, listing)
    key_text = f["key"].read_text()
    assert "PRIVATE KEY" in key_text, "stored key is not a PEM private key"
    certs = pem_certs(f["crt"].read_text())
    assert certs, "no PEM certificate in %s" % f["crt"]
    return certs


# ---------------------------------------------------------------------------
# one environment per test: planned ports, storage, Pebble, moat

class AcmeEnv:
    """moat's ports are chosen first (Pebble needs them), then Pebble and moat
    start on them. All processes belong to the pebble_factory / moat_factory
    fixtures, which stop them at teardown."""

    def __init__(self, tmp_path, pebble_factory, moat_factory, backend, pki):
        self.tmp = Path(tmp_path)
        self.https_port = free_port()
        self.http_port = free_port()
        self.storage = self.tmp / "storage"  # moat creates it
        self._pebble_factory = pebble_factory
        self._moat_factory = moat_factory
        self.backend = backend
        self.pki = pki
        self.pebble = None

    def make_pebble(self, start=True, **opts):
        self.pebble = self._pebble_factory(self.https_port, self.http_port, start=start,
                                           **opts)
        return self.pebble

    def acme_block(self, challenges=("tls-alpn-01",), **kw):
        d = {"ca": self.pebble.dir_url, "ca_root": str(self.pebble.listener_ca.ca),
             "storage": str(self.storage), "challenges": list(challenges),
             "retry_initial": "2s", "retry_max": "10s"}
        d.update(kw)
        return d

    def acme_site(self, hosts=("app.test",)):
        return {"hosts": list(hosts), "upstreams": [self.backend.addr]}

    def moat(self, sites=None, challenges=("tls-alpn-01",), start=True, acme=None, **over):
        """moat with `run -c`, listening on the planned ports, ACME from Pebble."""
        sites = sites if sites is not None else [self.acme_site()]
        block = self.acme_block(challenges, **(acme or {}))
        return self._moat_factory(
            sites, start=start, acme=block,
            listen={"https": ["127.0.0.1:%d" % self.https_port],
                    "http": ["127.0.0.1:%d" % self.http_port]}, **over)

    def moat_proxy(self, args, timeout=10.0):
        """The one-liner: `moat proxy ARGS...` (the Moat object is owned by
        moat_factory, so it is stopped and checked for sanitizer reports)."""
        m = self._moat_factory([], start=False,
                               listen={"https": ["127.0.0.1:%d" % self.https_port],
                                       "http": ["127.0.0.1:%d" % self.http_port]})
        args = list(map(str, args))
        if "--admin" not in args:
            args += ["--admin", "127.0.0.1:0"]  # tests run in parallel: no fixed port
        m.argv = [MOAT_BIN, "proxy", *args]
        m.config_path.write_text("# not used: started as\n# %s\n" % " ".join(m.argv))
        if not os.path.exists(MOAT_BIN):
            pytest.fail("moat binary not found at %s (set MOAT_BIN)" % MOAT_BIN)
        m._out = open(m.stdout_path, "wb")
        m._err = open(m.stderr_path, "wb")
        m.proc = subprocess.Popen(m.argv, stdin=subprocess.DEVNULL, stdout=m._out,
                                  stderr=m._err, env=m.env)
        m.wait_ready(timeout * SLOW)
        return m

    # -- checks ---------------------------------------------------------
    def wait_issued(self, moat, name="app.test", timeout=ISSUE_TIMEOUT):
        return wait_event(moat, "acme_certificate_stored", name, timeout=timeout,
                          pebble=self.pebble)

    def check_served(self, moat, name="app.test"):
        """curl through moat trusting only Pebble's root; the served chain is
        leaf (SAN = name) + Pebble's intermediate and verifies. Returns CertInfo."""
        p = self.pebble
        r = curl_ca(moat, name, p.root, "/acme-check")
        assert r.rc == 0 and r.status == 200, r
        j = r.json()
        assert j["path"] == "/acme-check" and j["name"] == self.backend.name, j
        rc, out = s_client(moat.https_port, name, p.root)
        assert rc == 0 and "Verify return code: 0 (ok)" in out, out
        chain = pem_certs(out)
        assert len(chain) >= 2, "moat sent no intermediate:\n" + out
        root_pem, inter_pem = p.cas()
        assert same_cert(chain[1], inter_pem), "second certificate is not Pebble's intermediate"
        leaf = CertInfo(chain[0])
        assert leaf.sans == [name], leaf
        assert leaf.issuer == CertInfo(inter_pem).subject, (leaf, CertInfo(inter_pem))
        ok, vout = openssl_verify(chain[0], p.root, p.intermediate, self.tmp)
        assert ok, vout
        return leaf


@pytest.fixture
def acme(tmp_path, pebble_factory, moat_factory, backend, pki):
    return AcmeEnv(tmp_path, pebble_factory, moat_factory, backend, pki)
