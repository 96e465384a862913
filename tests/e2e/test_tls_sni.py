"""TLS termination: certificate selection by SNI, versions, ALPN, resumption.

Clients: `openssl s_client` (verifying against the test CA) and curl."""

import re
import subprocess

import pytest

from conftest import SLOW, clean_env, site


def sites_for(pki, backend):
    return [
        site(["a.test"], pki.a, [backend]),
        site(["b.test"], pki.b, [backend]),
        site(["*.w.test"], pki.w, [backend]),
        site(["rsa.test"], pki.rsa, [backend]),
    ]


class SClient:
    def __init__(self, rc, out):
        self.rc, self.out = rc, out

    @property
    def leaf_pem(self):
        m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", self.out, re.S)
        return m.group(0) if m else None

    def leaf_info(self):
        """(subject line, SAN text) of the served leaf certificate."""
        pem = self.leaf_pem
        assert pem, "no certificate in s_client output:\n" + self.out
        r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName"],
                           input=pem.encode(), capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
        text = r.stdout.decode()
        subject = text.splitlines()[0]
        return subject, text

    @property
    def protocol(self):
        m = re.search(r"^\s*Protocol\s*:\s*(\S+)", self.out, re.M)
        return m.group(1) if m else None

    @property
    def handshake_ok(self):
        return self.rc == 0 and "Verify return code: 0 (ok)" in self.out \
            and not re.search(r"Cipher is \(NONE\)", self.out)

    def __repr__(self):
        return "<s_client rc=%s>\n%s" % (self.rc, self.out)


def s_client(moat, servername, *extra, http_host=None, timeout=15):
    """Run openssl s_client against moat's https port. When the handshake
    succeeds it sends one `Connection: close` request and reads until moat
    closes, so post-handshake messages (session tickets) are received."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % moat.https_port,
           "-CAfile", str(moat.pki.ca), "-verify_return_error", "-ign_eof"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    cmd += list(extra)
    host = http_host or servername or "a.test"
    req = ("GET /tls-check HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode()
    try:
        r = subprocess.run(cmd, input=req, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout * SLOW, env=clean_env())
        return SClient(r.returncode, r.stdout.decode(errors="replace"))
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        return SClient(None, out + "\n<s_client timed out: moat did not close the "
                                   "connection after a Connection: close request>")


UNRECOGNIZED = re.compile(r"unrecognized.name|alert number 112", re.I)


@pytest.mark.parametrize("name,expect_cn,expect_san,bits", [
    ("a.test", "a.test", "DNS:a.test", 256),
    ("b.test", "b.test", "DNS:b.test", 256),
    ("foo.w.test", "*.w.test", "DNS:*.w.test", 256),
    ("bar.w.test", "*.w.test", "DNS:*.w.test", 256),
    ("rsa.test", "rsa.test", "DNS:rsa.test", 2048),
])
def test_sni_selects_certificate(pki, backend, moat_factory, name, expect_cn, expect_san, bits):
    moat = moat_factory(sites_for(pki, backend))
    r = s_client(moat, name)
    assert r.handshake_ok, r
    subject, text = r.leaf_info()
    assert subject.replace(" ", "").endswith("CN=" + expect_cn), (subject, r)
    assert expect_san in text, text
    assert "Server public key is %d bit" % bits in r.out, r
    # the request after the handshake was proxied
    assert "HTTP/1.1 200" in r.out, r
    assert '"path": "/tls-check"' in r.out, r


def test_curl_each_name(pki, backend, moat_factory):
    moat = moat_factory(sites_for(pki, backend))
    for name in ("a.test", "b.test", "foo.w.test", "rsa.test"):
        r = moat.curl(name, "/who")
        assert r.rc == 0 and r.status == 200, r
        j = r.json()
        assert j["path"] == "/who"
        assert j["headers"]["host"].split(":")[0] == name, j
    st = backend.stats()
    assert st["seen_paths"].count("/who") == 4, st


@pytest.mark.parametrize("name", ["x.y.w.test", "w.test", "c.test"])
def test_unknown_sni_fails(pki, backend, moat_factory, name):
    """Names with no certificate (a wildcard covers exactly one label) fail the
    handshake when no default_sni is configured."""
    moat = moat_factory(sites_for(pki, backend))
    r = s_client(moat, name)
    assert r.rc not in (0, None), r
    assert not r.handshake_ok, r
    assert UNRECOGNIZED.search(r.out), r
    c = moat.curl(name, "/")
    assert c.rc != 0 and c.status == 0, c
    assert backend.stats()["requests"] == 0
    assert moat.running()


@pytest.mark.parametrize("name", ["a.test", "rsa.test"])
@pytest.mark.parametrize("version,flag", [("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")])
def test_tls_versions(pki, backend, moat_factory, name, version, flag):
    moat = moat_factory(sites_for(pki, backend))
    r = s_client(moat, name, flag)
    assert r.handshake_ok, r
    assert r.protocol == version, r
    assert "HTTP/1.1 200" in r.out, r


def test_curl_tls_versions(pki, backend, moat_factory):
    moat = moat_factory(sites_for(pki, backend))
    r12 = moat.curl("a.test", "/v12", "--tlsv1.2", "--tls-max", "1.2")
    assert r12.rc == 0 and r12.status == 200, r12
    r13 = moat.curl("a.test", "/v13", "--tlsv1.3")
    assert r13.rc == 0 and r13.status == 200, r13


def test_tls11_refused(pki, backend, moat_factory):
    moat = moat_factory(sites_for(pki, backend))
    # SECLEVEL=0 so that the client really offers TLS 1.1
    r = s_client(moat, "a.test", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert r.rc not in (0, None), r
    assert not re.search(r"New, TLSv1(\.1)?,", r.out), r
    assert "no protocols available" not in r.out, "client did not offer TLS 1.1:\n%s" % r.out
    assert backend.stats()["requests"] == 0
    r = moat.curl("a.test", "/", "--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0")
    assert r.rc != 0 and r.status == 0, r


def test_no_sni_gets_default_certificate(pki, backend, moat_factory):
    moat = moat_factory(sites_for(pki, backend), tls={"default_sni": "b.test"})
    r = s_client(moat, None, http_host="b.test")
    assert r.handshake_ok, r
    subject, text = r.leaf_info()
    assert subject.replace(" ", "").endswith("CN=b.test"), subject
    assert "DNS:b.test" in text


def test_no_sni_without_default_fails(pki, backend, moat_factory):
    moat = moat_factory(sites_for(pki, backend))
    r = s_client(moat, None)
    assert r.rc not in (0, None), r
    assert not r.handshake_ok, r
    assert UNRECOGNIZED.search(r.out), r
    assert moat.running()


def test_alpn_http11(pki, backend, moat_factory):
    moat = moat_factory(sites_for(pki, backend))
    r = s_client(moat, "a.test", "-alpn", "h2,http/1.1")
    assert r.handshake_ok, r
    assert re.search(r"^ALPN protocol: http/1\.1$", r.out, re.M), r
    assert "HTTP/1.1 200" in r.out, r
    # curl offers h2 and http/1.1 by default; it must end up on HTTP/1.1
    c = moat.curl("a.test", "/alpn", "-v")
    assert c.rc == 0 and c.status == 200, c
    assert re.search(r"ALPN.*accepted.*http/1\.1", c.stderr), c.stderr


def _resume(moat, tmp_path, flag, tries):
    sess = tmp_path / ("sess%s.pem" % flag)
    first = s_client(moat, "a.test", flag, "-sess_out", str(sess))
    assert first.handshake_ok, first
    assert "New, " in first.out, first
    results = [first]
    if not sess.exists() or sess.stat().st_size == 0:
        return results, False
    for _ in range(tries):
        results.append(s_client(moat, "a.test", flag, "-sess_in", str(sess)))
    return results, True


@pytest.mark.parametrize("flag,version", [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")])
def test_session_resumption_with_tickets(pki, backend, moat_factory, tmp_path, flag, version):
    # two workers: a ticket issued by one must be accepted by the other
    moat = moat_factory(sites_for(pki, backend), workers=2,
                        tls={"session_tickets": True})
    results, have_session = _resume(moat, tmp_path, flag, 4)
    assert have_session, "s_client wrote no session:\n%s" % results[0].out
    if version == "TLSv1.3":
        assert "Post-Handshake New Session Ticket arrived" in results[0].out, results[0]
    for r in results[1:]:
        assert r.rc == 0, r
        assert re.search(r"^Reused, %s" % re.escape(version), r.out, re.M), r
        assert "HTTP/1.1 200" in r.out, r


def test_no_resumption_without_tickets(pki, backend, moat_factory, tmp_path):
    moat = moat_factory(sites_for(pki, backend), workers=2,
                        tls={"session_tickets": False})
    results, have_session = _resume(moat, tmp_path, "-tls1_3", 2)
    # Either moat issued no ticket (so s_client has no session to offer), or
    # offering the session it got must not resume.
    if not have_session:
        assert "Post-Handshake New Session Ticket arrived" not in results[0].out, results[0]
    for r in results[1:]:
        assert r.handshake_ok, r
        assert not re.search(r"^Reused,", r.out, re.M), r
        assert re.search(r"^New, TLSv1\.3", r.out, re.M), r
