"""Operations: the log file and SIGUSR1 reopening it (logrotate), and dropping
root for `user` after binding, keeping only CAP_NET_BIND_SERVICE so a reload
can still open a port below 1024."""

import os
import pwd
import random
import shutil
import signal
import socket
import stat
import tempfile
import time
from pathlib import Path

import pytest

from conftest import MOAT_BIN, SLOW, TlsClient, parse_log_lines, site

CAP_NET_BIND_SERVICE = 10


def read_log(path):
    try:
        return parse_log_lines(Path(path).read_text(errors="replace"))
    except OSError:
        return []


def wait_in_log(path, pred, timeout=3.0):
    deadline = time.monotonic() + timeout * SLOW
    while True:
        hits = [e for e in read_log(path) if pred(e)]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.03)


def access_for(path):
    return lambda e: e.get("event") == "access" and e.get("path") == path


# ---------------------------------------------------------------------------
# log file + SIGUSR1

def test_log_file_reopened_on_sigusr1(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])], log={"file": "moat.log"})
    log = moat.dir / "moat.log"  # relative to the config file's directory
    assert moat.log_path == log and log.exists()
    assert stat.S_IMODE(log.stat().st_mode) == 0o640, oct(log.stat().st_mode)
    # every line goes to the file, none to stderr
    assert [e for e in read_log(log) if e.get("event") == "ready"]
    assert parse_log_lines(moat.stderr_text()) == [], moat.stderr_text()

    assert moat.curl("a.test", "/before").status == 200
    assert wait_in_log(log, access_for("/before"))
    rotated = moat.dir / "moat.log.1"
    os.rename(log, rotated)
    assert moat.curl("a.test", "/between").status == 200
    assert wait_in_log(rotated, access_for("/between")), "moat lost its log file at rename"

    moat.proc.send_signal(signal.SIGUSR1)
    reopened = wait_in_log(log, lambda e: e.get("event") == "log_reopened") or \
        [e for e in read_log(rotated) if e.get("event") == "log_reopened"]
    assert reopened, "no log_reopened line in either file"
    assert log.exists(), "SIGUSR1 did not create the log file again"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640, oct(log.stat().st_mode)

    assert moat.curl("a.test", "/after").status == 200
    assert wait_in_log(log, access_for("/after")), "the access line did not land in the new file"
    new_paths = [e.get("path") for e in read_log(log) if e.get("event") == "access"]
    old_paths = [e.get("path") for e in read_log(rotated) if e.get("event") == "access"]
    assert new_paths == ["/after"], new_paths
    assert old_paths == ["/before", "/between"], old_paths
    assert moat.running()
    assert parse_log_lines(moat.stderr_text()) == [], moat.stderr_text()

    # twice more: the file is reopened in place (no rename) and keeps its lines
    moat.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.2 * SLOW)
    assert moat.curl("a.test", "/again").status == 200
    assert wait_in_log(log, access_for("/again"))
    assert [e.get("path") for e in read_log(log) if e.get("event") == "access"] == \
        ["/after", "/again"]


def test_sigusr1_without_log_file_is_harmless(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    moat.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3 * SLOW)
    assert moat.running(), "SIGUSR1 killed moat"
    assert moat.curl("a.test", "/usr1").status == 200
    assert moat.wait_event("access", timeout=2)


# ---------------------------------------------------------------------------
# dropping root

def proc_status(pid):
    """/proc/PID/task/*/status of every thread as {tid: {key: value}}."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            text = Path("/proc/%d/task/%s/status" % (pid, tid)).read_text()
        except OSError:
            continue
        out[tid] = dict(ln.split(":\t", 1) for ln in text.splitlines() if ":\t" in ln)
    return out


def low_free_port():
    """A free port below 1024 on 127.0.0.1 (we are root)."""
    ports = list(range(600, 1024))
    random.shuffle(ports)
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue
    pytest.skip("no free port below 1024")


@pytest.fixture
def public_dir():
    """A directory under /tmp that the user nobody can read (tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="moat-e2e-user-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_user_drops_root_and_keeps_net_bind(public_dir, pki, backend, moat_factory):
    nobody = pwd.getpwnam("nobody")
    certs = public_dir / "certs"
    certs.mkdir(mode=0o755)
    cert, key = certs / "a.pem", certs / "a.key"
    shutil.copy(pki.a.chain, cert)
    shutil.copy(pki.a.key, key)
    for f in (cert, key):
        f.chmod(0o644)
    storage = public_dir / "storage"
    storage.mkdir(mode=0o700)
    os.chown(storage, nobody.pw_uid, nobody.pw_gid)
    s = {"hosts": ["a.test"], "certificate": {"cert": str(cert), "key": str(key)},
         "upstreams": [backend.addr]}
    moat = moat_factory([s], start=False, workdir=public_dir, user="nobody",
                        acme={"storage": str(storage)})
    moat.dir.chmod(0o755)
    moat.start()

    groups = sorted(set(os.getgrouplist("nobody", nobody.pw_gid)))
    deadline = time.monotonic() + 3 * SLOW
    while True:
        st = proc_status(moat.pid)
        dropped = all(t["Uid"].split() == [str(nobody.pw_uid)] * 4 for t in st.values())
        if dropped or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(st) >= 2, st.keys()  # the control thread and a worker at least
    for tid, t in st.items():
        assert t["Uid"].split() == [str(nobody.pw_uid)] * 4, (tid, t["Uid"])
        assert t["Gid"].split() == [str(nobody.pw_gid)] * 4, (tid, t["Gid"])
        assert sorted(int(g) for g in t["Groups"].split()) == groups, (tid, t["Groups"])
        eff, prm = int(t["CapEff"], 16), int(t["CapPrm"], 16)
        assert eff & (1 << CAP_NET_BIND_SERVICE), (tid, t["CapEff"])
        assert eff & ~(1 << CAP_NET_BIND_SERVICE) == 0, \
            "capabilities beyond CAP_NET_BIND_SERVICE kept: CapEff %s" % t["CapEff"]
        assert prm & ~(1 << CAP_NET_BIND_SERVICE) == 0, \
            "capabilities beyond CAP_NET_BIND_SERVICE kept: CapPrm %s" % t["CapPrm"]

    r = moat.curl("a.test", "/as-nobody")
    assert r.status == 200 and r.json()["path"] == "/as-nobody", r
    status, _, body = moat.admin("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")

    # a reload as nobody still opens a port below 1024
    low = low_free_port()
    cfg = dict(moat.config)
    cfg["listen"] = dict(cfg["listen"], https=cfg["listen"]["https"] + ["127.0.0.1:%d" % low])
    moat.write_config(cfg)
    e = moat.reload()
    assert e["event"] == "reloaded", e
    with TlsClient(low, "a.test", pki.ca, timeout=10 * SLOW) as c:
        r = c.request("GET", "/low-port", "a.test")
        assert r.status == 200 and r.json()["path"] == "/low-port", r
    assert not [x for x in moat.logs() if x.get("event") == "user_ignored"]


def test_user_ignored_when_not_root(public_dir, pki, backend, moat_factory):
    """Started as a user other than root with `user` set: a warning, and it runs on."""
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv to start moat as another user")
        nobody = pwd.getpwnam("nobody")
        prefix = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                  "--clear-groups", "--"]
    certs = public_dir / "certs"
    certs.mkdir(mode=0o755)
    for src, dst in ((pki.a.chain, certs / "a.pem"), (pki.a.key, certs / "a.key")):
        shutil.copy(src, dst)
        dst.chmod(0o644)
    s = {"hosts": ["a.test"], "certificate": {"cert": str(certs / "a.pem"),
                                              "key": str(certs / "a.key")},
         "upstreams": [backend.addr]}
    moat = moat_factory([s], start=False, workdir=public_dir, user="root")
    moat.dir.chmod(0o755)
    moat.start(argv=prefix + [MOAT_BIN, "run", "-c", str(moat.config_path)])
    warn = [e for e in moat.logs() if e.get("event") == "user_ignored"]
    assert len(warn) == 1 and warn[0]["level"] == "warn", moat.log_text()
    assert moat.curl("a.test", "/").status == 200


def test_one_liner_log_file_and_user(public_dir, pki, backend, moat_factory):
    log = public_dir / "oneliner.log"
    m = moat_factory([], start=False)
    argv = [MOAT_BIN, "proxy", "--from", "a.test", "--to", backend.addr,
            "--cert", pki.a.chain, "--key", pki.a.key, "--bind", "127.0.0.1",
            "--https-port", m.https_port, "--http-port", m.http_port, "--admin", "127.0.0.1:0",
            "--access-log", "--log-file", log, "--user", "nobody"]
    root = os.geteuid() == 0
    m.log_path = log
    m.start(argv=argv)
    assert m.curl("a.test", "/one-liner").status == 200
    assert wait_in_log(log, access_for("/one-liner"))
    assert parse_log_lines(m.stderr_text()) == [], m.stderr_text()
    if root:
        nobody = pwd.getpwnam("nobody")
        for tid, t in proc_status(m.pid).items():
            assert t["Uid"].split() == [str(nobody.pw_uid)] * 4, (tid, t["Uid"])
    else:
        assert [e for e in m.logs() if e.get("event") == "user_ignored"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_log_rotation_after_dropping_root(public_dir, pki, backend, moat_factory):
    """logrotate's way (rename, create the new file for the service user, SIGUSR1)
    works once moat runs as nobody; a reopen it cannot do leaves it running, with its
    lines still written."""
    nobody = pwd.getpwnam("nobody")
    logs = public_dir / "log"
    logs.mkdir(mode=0o755)  # owned by root: nobody cannot create files here
    log = logs / "moat.log"
    moat = moat_factory([site(["a.test"], pki.a, [backend])], workdir=public_dir,
                        user="nobody", log={"file": str(log)})
    assert moat.curl("a.test", "/one").status == 200
    assert wait_in_log(log, access_for("/one"))

    os.rename(log, logs / "moat.log.1")
    log.touch(mode=0o640)
    os.chown(log, nobody.pw_uid, nobody.pw_gid)
    moat.proc.send_signal(signal.SIGUSR1)
    assert wait_in_log(log, lambda e: e.get("event") == "log_reopened") or \
        [e for e in read_log(logs / "moat.log.1") if e.get("event") == "log_reopened"]
    assert moat.curl("a.test", "/two").status == 200
    assert wait_in_log(log, access_for("/two")), "not written to the new file"

    # now a rotation without the new file: nobody cannot create it
    os.rename(log, logs / "moat.log.2")
    moat.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3 * SLOW)
    assert moat.running()
    assert moat.curl("a.test", "/three").status == 200
    deadline = time.monotonic() + 3 * SLOW
    while time.monotonic() < deadline:
        lines = read_log(logs / "moat.log.2") + read_log(log) + \
            parse_log_lines(moat.stderr_text())
        if [e for e in lines if access_for("/three")(e)]:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the access line of /three went nowhere")
