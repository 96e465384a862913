"""Error handling: malformed requests, limits, upstream failures, timeouts,
slow clients and signals. Every error answer comes over TLS with
`Connection: close`, the connection is closed, and bad requests never reach
the backend."""

import os
import signal
import socket
import ssl
import threading
import time

import pytest

from conftest import SLOW, free_port, site


def H(*lines, body=b""):
    """A raw request: lines joined with CRLF, then an empty line, then body."""
    return b"".join(ln + b"\r\n" for ln in lines) + b"\r\n" + body


BAD_REQUESTS = [
    ("cl-and-te", 400, H(b"POST /e-clte HTTP/1.1", b"Host: a.test", b"Content-Length: 5",
                         b"Transfer-Encoding: chunked", body=b"0\r\n\r\n")),
    ("te-and-cl", 400, H(b"POST /e-tecl HTTP/1.1", b"Host: a.test",
                         b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n")),
    ("two-content-lengths", 400, H(b"POST /e-2cl HTTP/1.1", b"Host: a.test",
                                   b"Content-Length: 5", b"Content-Length: 6", body=b"hello!")),
    ("content-length-list", 400, H(b"POST /e-cllist HTTP/1.1", b"Host: a.test",
                                   b"Content-Length: 5, 6", body=b"hello!")),
    ("content-length-abc", 400, H(b"POST /e-clabc HTTP/1.1", b"Host: a.test",
                                  b"Content-Length: abc", body=b"hello")),
    ("content-length-negative", 400, H(b"POST /e-clneg HTTP/1.1", b"Host: a.test",
                                       b"Content-Length: -1", body=b"hello")),
    ("te-gzip", 400, H(b"POST /e-tegzip HTTP/1.1", b"Host: a.test",
                       b"Transfer-Encoding: gzip", body=b"hello")),
    ("te-chunked-gzip", 400, H(b"POST /e-techgz HTTP/1.1", b"Host: a.test",
                               b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n")),
    ("te-gzip-chunked", 400, H(b"POST /e-tegzch HTTP/1.1", b"Host: a.test",
                               b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n")),
    ("obs-fold", 400, H(b"GET /e-fold HTTP/1.1", b"Host: a.test", b"X-Folded: first",
                        b"  continued", b"X-Other: 1")),
    ("bare-lf", 400, b"GET /e-lf HTTP/1.1\nHost: a.test\nX-A: b\n\n"),
    ("bare-lf-in-header", 400, b"GET /e-lf2 HTTP/1.1\r\nHost: a.test\nX-A: b\r\n\r\n"),
    ("head-over-16k", 431, H(b"GET /e-big HTTP/1.1", b"Host: a.test",
                             b"X-Big: " + b"a" * 17000)),
    ("many-headers-over-16k", 431, H(b"GET /e-many HTTP/1.1", b"Host: a.test",
                                     *[b"X-H%03d: %s" % (i, b"v" * 40) for i in range(400)])),
]


def bad_path(raw):
    return raw.split(b" ", 2)[1].decode()


def expect_error_and_close(moat, raw, status, timeout=10.0):
    """Send raw over TLS; expect `status` with Connection: close, then EOF."""
    with moat.tls_client("a.test", timeout=timeout) as c:
        t0 = time.monotonic()
        c.send_tolerant(raw)
        try:
            r = c.read_response(timeout)
        except EOFError as e:
            raise AssertionError("connection closed without a response%s: %s" % (
                " (reset: moat closed with unread data, no lingering close)" if c.reset else "",
                e))
        elapsed = time.monotonic() - t0
        assert r.status == status, r
        conn = (r.header("Connection") or "").lower()
        assert "close" in conn, "error response without Connection: close: %r" % r
        try:
            c.read_until_eof(5)
        except TimeoutError:
            raise AssertionError("moat kept the connection open after %d" % status)
        return r, elapsed


@pytest.fixture
def moat(pki, backend, moat_factory):
    return moat_factory([site(["a.test"], pki.a, [backend])],
                        timeouts={"request_head": "5s"})


def assert_backend_fine(moat, backend, bad):
    """The bad request never reached the backend, and a good one does."""
    r = moat.curl("a.test", "/good-after")
    assert r.status == 200, r
    st = backend.stats()
    assert bad not in st["seen_paths"], "the bad request reached the backend: %r" % st
    assert st["seen_paths"] == ["/good-after"], st


@pytest.mark.parametrize("name,status,raw", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_request(moat, backend, name, status, raw):
    expect_error_and_close(moat, raw, status)
    assert_backend_fine(moat, backend, bad_path(raw))


def test_bad_request_after_good_one_on_same_connection(moat, backend):
    """A good request, then a bad one on the same keep-alive connection."""
    with moat.tls_client("a.test") as c:
        r = c.request("GET", "/first", "a.test")
        assert r.status == 200, r
        c.send(H(b"POST /e-second HTTP/1.1", b"Host: a.test", b"Content-Length: 3",
                 b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"))
        r = c.read_response(10)
        assert r.status == 400, r
        c.read_until_eof(5)
    assert "/e-second" not in backend.stats()["seen_paths"]


def test_head_under_limit_is_fine(moat, backend):
    raw = H(b"GET /ok-big HTTP/1.1", b"Host: a.test", b"X-Big: " + b"a" * 15000)
    with moat.tls_client("a.test") as c:
        c.send(raw)
        r = c.read_response(10)
    assert r.status == 200, r
    assert r.json()["headers"]["x-big"] == "a" * 15000


def test_configured_max_request_head(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])],
                        limits={"max_request_head": 4096})
    expect_error_and_close(moat, H(b"GET /e-4k HTTP/1.1", b"Host: a.test",
                                   b"X-Big: " + b"b" * 5000), 431)
    r = moat.curl("a.test", "/small", "-H", "X-Small: " + "c" * 2000)
    assert r.status == 200, r
    assert "/e-4k" not in backend.stats()["seen_paths"]


def test_upstream_down_502(pki, moat_factory):
    dead = "127.0.0.1:%d" % free_port()  # nothing listens there
    moat = moat_factory([site(["a.test"], pki.a, [dead])],
                        timeouts={"upstream_connect": "2s"})
    r, elapsed = expect_error_and_close(
        moat, H(b"GET /down HTTP/1.1", b"Host: a.test"), 502)
    assert elapsed < 3.0 * SLOW, "502 took %.2fs" % elapsed
    # and again: moat keeps answering
    r, elapsed = expect_error_and_close(
        moat, H(b"GET /down2 HTTP/1.1", b"Host: a.test"), 502)
    assert elapsed < 3.0 * SLOW
    assert moat.running()


def test_slow_upstream_504(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])],
                        timeouts={"upstream_head": "1s"})
    r, elapsed = expect_error_and_close(
        moat, H(b"GET /slow?ms=5000 HTTP/1.1", b"Host: a.test"), 504)
    assert 0.8 <= elapsed < 3.0 * SLOW, "504 after %.2fs, want about 1s" % elapsed
    # a fast request on the same site still works
    r = moat.curl("a.test", "/slow?ms=100")
    assert r.status == 200, r


def test_slowloris_cut_off(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])],
                        timeouts={"request_head": "2s"})
    other = {}

    def meanwhile():
        time.sleep(0.7)
        other["r"] = moat.curl("a.test", "/meanwhile")

    head = H(b"GET /slowloris HTTP/1.1", b"Host: a.test",
             b"User-Agent: one-byte-at-a-time", b"X-Pad: " + b"p" * 40)
    with moat.tls_client("a.test") as c:
        t = threading.Thread(target=meanwhile)
        t.start()
        t0 = time.monotonic()
        sent = 0
        data = b""
        closed_at = None
        c.sock.settimeout(0.3)
        while time.monotonic() - t0 < 8 * SLOW and sent < len(head):
            try:
                c.sock.sendall(head[sent:sent + 1])
                sent += 1
            except OSError:
                closed_at = time.monotonic()
                break
            try:
                d = c.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                closed_at = time.monotonic()
                break
            if not d:
                closed_at = time.monotonic()
                break
            data += d
            # got something (a 408): read on until EOF
            try:
                c.sock.settimeout(3 * SLOW)
                while True:
                    d = c.sock.recv(65536)
                    if not d:
                        break
                    data += d
            except OSError:
                pass
            closed_at = time.monotonic()
            break
        t.join(30 * SLOW)
    assert closed_at is not None, "slow client not cut off after %.1fs (%d bytes sent)" % (
        time.monotonic() - t0, sent)
    assert sent < len(head)
    elapsed = closed_at - t0
    assert 1.5 <= elapsed <= 4.0 * SLOW, "cut off after %.2fs, want about 2s" % elapsed
    if data:
        assert data.startswith(b"HTTP/1.1 408"), data
    r = other.get("r")
    assert r is not None and r.status == 200, r
    assert r.elapsed < 2.0 * SLOW, "other client waited %.2fs" % r.elapsed
    st = backend.stats()
    assert "/slowloris" not in st["seen_paths"], st
    assert "/meanwhile" in st["seen_paths"], st


def test_sigterm_drains_inflight_request(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    result = {}

    def inflight():
        try:
            with moat.tls_client("a.test", timeout=30) as c:
                result["resp"] = c.request("GET", "/slow?ms=1500", "a.test", timeout=20)
                try:
                    c.read_until_eof(15)
                    result["eof"] = True
                except TimeoutError:
                    result["eof"] = False
        except Exception as e:  # reported by the asserts below
            result["error"] = e

    t = threading.Thread(target=inflight)
    t.start()
    st = backend.wait_seen(lambda s: "/slow?ms=1500" in s["seen_paths"], timeout=5 * SLOW)
    assert "/slow?ms=1500" in st["seen_paths"], (st, result)
    t_sig = time.monotonic()
    moat.proc.send_signal(signal.SIGTERM)

    refused = False
    while time.monotonic() - t_sig < 1.0 * SLOW:
        try:
            socket.create_connection(("127.0.0.1", moat.https_port), timeout=0.5).close()
        except ConnectionRefusedError:
            refused = True
            break
        except OSError:
            pass
        time.sleep(0.05)
    still_running = moat.running()
    t.join(30 * SLOW)

    assert refused, "moat still accepted connections %.1fs after SIGTERM" % (
        time.monotonic() - t_sig)
    assert still_running, "moat exited before the in-flight request finished"
    assert "error" not in result, result
    r = result["resp"]
    assert r.status == 200, r
    assert r.json()["path"] == "/slow?ms=1500"
    rc = moat.wait_exit(12 * SLOW)
    assert rc == 0, "moat exit code %r after SIGTERM" % rc
    assert result.get("eof"), "moat did not close the client connection while draining"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", moat.http_port), timeout=1).close()


def test_sigint_exits_zero(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])])
    assert moat.curl("a.test", "/before-int").status == 200
    rc = moat.stop(signal.SIGINT, timeout=12)
    assert rc == 0, "moat exit code %r after SIGINT" % rc


def test_keepalive_idle_timeout(pki, backend, moat_factory):
    moat = moat_factory([site(["a.test"], pki.a, [backend])],
                        timeouts={"keepalive_idle": "1s"})
    with moat.tls_client("a.test") as c:
        r = c.request("GET", "/idle", "a.test")
        assert r.status == 200, r
        t0 = time.monotonic()
        try:
            c.read_until_eof(5)
        except TimeoutError:
            raise AssertionError("idle keep-alive connection still open after 5s")
        elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed <= 3.0 * SLOW, "idle connection closed after %.2fs, want ~1s" % elapsed


def test_body_idle_timeout(pki, backend, moat_factory):
    """A client that stops sending in the middle of its body is cut off."""
    moat = moat_factory([site(["a.test"], pki.a, [backend])],
                        timeouts={"body_idle": "1s"})
    with moat.tls_client("a.test") as c:
        c.send(H(b"POST /stalled HTTP/1.1", b"Host: a.test", b"Content-Length: 1000",
                 body=b"x" * 10))
        t0 = time.monotonic()
        try:
            c.read_until_eof(6)
        except TimeoutError:
            raise AssertionError("stalled upload still open after 6s (body_idle 1s)")
        elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed <= 4.0 * SLOW, "stalled upload cut after %.2fs" % elapsed
    assert moat.curl("a.test", "/fine").status == 200


def test_connection_cap_per_worker(pki, backend, moat_factory):
    """Past limits.max_connections_per_worker a new connection is closed at once, the
    ones already open keep working, and a slot frees up when one closes."""
    moat = moat_factory([site(["a.test"], pki.a, [backend])],
                        limits={"max_connections_per_worker": 2})
    first = moat.tls_client("a.test")
    second = moat.tls_client("a.test")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        third = moat.tls_client("a.test", timeout=5.0)
        third.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        third.sock.recv(1)  # EOF or reset: the connection was refused
        raise ConnectionError("EOF")
    for c in (first, second):
        c.send(b"GET /cap HTTP/1.1\r\nHost: a.test\r\n\r\n")
        assert c.read_response().status == 200
    first.close()
    deadline = time.monotonic() + 5 * SLOW
    while True:
        try:
            fourth = moat.tls_client("a.test", timeout=5.0)
            fourth.send(b"GET /again HTTP/1.1\r\nHost: a.test\r\n\r\n")
            assert fourth.read_response().status == 200
            break
        except (ssl.SSLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert any(e.get("event") == "conn_rejected" for e in moat.logs())
