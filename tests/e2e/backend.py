#!/usr/bin/python3
"""Test backend for moat's end-to-end tests: a threaded HTTP/1.1 server.

Run:  backend.py [--port N] [--name NAME]
It listens on 127.0.0.1:PORT (0 = pick a free port) for the traffic under test,
and on a second, free "control" port that serves /stats and /reset without
being counted, so tests can look at the counters without changing them.
Once both listen it prints one line to stdout:  READY <port> <control_port>

Endpoints (main port, every method):
  /stats                   {connections, requests, seen_paths, name}
  /slow?ms=N               sleeps N ms, then answers like /
  /download?bytes=N        N bytes of the test pattern, Content-Length
  /download-chunked?bytes=N  same, Transfer-Encoding: chunked
  /upload[?rate=B]         reads the body streaming (Content-Length or chunked),
                           optionally throttled to B bytes/s, answers
                           {received, sha256, chunked}
  /ws                      WebSocket echo (RFC 6455): sends a "welcome" text frame
                           right after the 101, then echoes text/binary frames,
                           answers pings, echoes close and closes.
  /headers                 {method, path, headers: [[name, value], ...], conn_id}
  /close-delimited?bytes=N N pattern bytes, no Content-Length, then close
  anything else            {method, path, headers: {lname: value}, body_len, conn_id, name}
                           ?close=1: answer with Connection: close and close;
                           ?linger_ms=N: close the connection after N ms idle

Nothing holds a whole large body in memory.
"""

import argparse
import base64
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# ---------------------------------------------------------------------------
# Deterministic byte pattern used for downloads (and by tests for uploads).
# Byte p of a stream is BLOCK[p % PATTERN_LEN]; PATTERN_LEN is prime so that
# lost or repeated 64 KiB chunks change the sha256.
PATTERN_LEN = 65521


def _make_block():
    out = bytearray()
    i = 0
    while len(out) < PATTERN_LEN:
        out += hashlib.sha256(i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:PATTERN_LEN])


BLOCK = _make_block()
_BLOCK3 = memoryview(BLOCK * 3)


def pattern_chunks(n, chunk=65536):
    """Yield the first n bytes of the pattern in pieces of at most `chunk`."""
    assert chunk <= 2 * PATTERN_LEN
    off = 0
    pos = 0
    while pos < n:
        k = min(chunk, n - pos)
        yield _BLOCK3[off:off + k]
        off = (off + k) % PATTERN_LEN
        pos += k


def pattern_sha256(n):
    h = hashlib.sha256()
    for c in pattern_chunks(n):
        h.update(c)
    return h.hexdigest()


WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_frame(opcode, payload, fin=True, mask=None):
    """Build one WebSocket frame; mask is 4 bytes or None."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        payload = ws_mask(payload, mask)
        head += mask
    return head + bytes(payload)


def ws_mask(data, mask):
    if not data:
        return b""
    n = len(data)
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


# ---------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.connections = 0
        self.requests = 0
        self.seen_paths = []

    def snapshot(self, name):
        with self.lock:
            return {"connections": self.connections, "requests": self.requests,
                    "seen_paths": list(self.seen_paths), "name": name}


class BodyReader:
    """Streams a request body: Content-Length, chunked, or none."""

    def __init__(self, rfile, headers):
        self.rfile = rfile
        te = headers.get("Transfer-Encoding")
        self.chunked = bool(te) and te.strip().lower().endswith("chunked")
        cl = headers.get("Content-Length")
        self.remaining = 0
        if not self.chunked and cl is not None:
            self.remaining = int(cl.strip())
        self.chunk_left = 0
        self.done = False

    def read(self, n=65536):
        """Return up to n bytes; b'' at the end of the body."""
        if self.done:
            return b""
        if not self.chunked:
            if self.remaining <= 0:
                self.done = True
                return b""
            data = self.rfile.read1(min(n, self.remaining)) if hasattr(self.rfile, "read1") \
                else self.rfile.read(min(n, self.remaining))
            if not data:
                raise ConnectionError("body truncated")
            self.remaining -= len(data)
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("chunked body truncated")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                # trailers until the empty line
                while True:
                    t = self.rfile.readline(8192)
                    if t in (b"\r\n", b"\n", b""):
                        break
                self.done = True
                return b""
            self.chunk_left = size
        data = self.rfile.read1(min(n, self.chunk_left)) if hasattr(self.rfile, "read1") \
            else self.rfile.read(min(n, self.chunk_left))
        if not data:
            raise ConnectionError("chunk truncated")
        self.chunk_left -= len(data)
        if self.chunk_left == 0:
            crlf = self.rfile.readline(16)
            if crlf not in (b"\r\n", b"\n"):
                raise ConnectionError("bad chunk end %r" % crlf)
        return data


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "moat-test-backend"
    sys_version = ""

    def setup(self):
        super().setup()
        st = self.server.stats
        with st.lock:
            st.connections += 1
            self.conn_id = st.connections

    def log_message(self, fmt, *args):  # quiet
        pass

    def parse_request(self):
        # Record every request line that reaches us, even ones we reject.
        self.path = None
        ok = super().parse_request()
        if self.path is not None:
            st = self.server.stats
            with st.lock:
                st.requests += 1
                if len(st.seen_paths) < 10000:
                    st.seen_paths.append(self.path)
        return ok

    # -- helpers --------------------------------------------------------
    def send_json(self, obj, code=200, extra=()):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def drain_body(self):
        r = BodyReader(self.rfile, self.headers)
        total = 0
        while True:
            d = r.read()
            if not d:
                return total
            total += len(d)

    def echo(self, body_len):
        hdrs = {}
        for k, v in self.headers.items():
            lk = k.lower()
            hdrs[lk] = hdrs[lk] + ", " + v if lk in hdrs else v
        extra = [("Connection", "close")] if self.close_connection else []
        self.send_json({"method": self.command, "path": self.path, "headers": hdrs,
                        "body_len": body_len, "conn_id": self.conn_id,
                        "name": self.server.name}, extra=extra)

    # -- dispatch -------------------------------------------------------
    def handle_any(self):
        try:
            self._handle_any()
        except (ConnectionError, BrokenPipeError, socket.timeout, ValueError) as e:
            self.close_connection = True
            sys.stderr.write("backend: %s %s: %r\n" % (self.command, self.path, e))

    def _handle_any(self):
        u = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        p = u.path
        if p == "/stats":
            self.drain_body()
            self.send_json(self.server.stats.snapshot(self.server.name))
        elif p == "/slow":
            n = self.drain_body()
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            self.echo(n)
        elif p in ("/download", "/download-chunked"):
            self.drain_body()
            n = int(q.get("bytes", "0"))
            chunked = p == "/download-chunked"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(n))
            self.end_headers()
            if self.command == "HEAD":
                return
            for c in pattern_chunks(n):
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(c) + bytes(c) + b"\r\n")
                else:
                    self.wfile.write(c)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        elif p == "/upload":
            rate = int(q.get("rate", "0"))
            r = BodyReader(self.rfile, self.headers)
            h = hashlib.sha256()
            total = 0
            t0 = time.monotonic()
            while True:
                d = r.read(65536)
                if not d:
                    break
                h.update(d)
                total += len(d)
                if rate:
                    ahead = total / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            self.send_json({"received": total, "sha256": h.hexdigest(),
                            "chunked": r.chunked, "conn_id": self.conn_id})
        elif p == "/headers":
            n = self.drain_body()
            self.send_json({"method": self.command, "path": self.path,
                            "headers": [[k, v] for k, v in self.headers.items()],
                            "body_len": n, "conn_id": self.conn_id,
                            "name": self.server.name})
        elif p == "/ws":
            self.websocket()
        elif p == "/close-delimited":
            # HTTP/1.0-style body: no Content-Length, ends when we close
            self.drain_body()
            n = int(q.get("bytes", "0"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            for c in pattern_chunks(n):
                self.wfile.write(c)
            self.close_connection = True
        else:
            n = self.drain_body()
            if q.get("close") == "1":
                self.close_connection = True
            self.echo(n)
            if "linger_ms" in q:
                # close this connection once it has been idle that long
                self.connection.settimeout(int(q["linger_ms"]) / 1000.0)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any

    # -- WebSocket ------------------------------------------------------
    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if (self.headers.get("Upgrade", "").lower() != "websocket" or not key
                or "upgrade" not in self.headers.get("Connection", "").lower()):
            self.send_json({"error": "not a websocket upgrade"}, code=400)
            return
        head = ("HTTP/1.1 101 Switching Protocols\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\n\r\n" % ws_accept(key)).encode()
        # The first frame goes in the same write as the 101 head on purpose.
        self.wfile.write(head + ws_frame(0x1, b"welcome"))
        self.close_connection = True
        rf = self.rfile

        def readn(n):
            out = b""
            while len(out) < n:
                d = rf.read(n - len(out))
                if not d:
                    raise ConnectionError("ws eof")
                out += d
            return out

        while True:
            b0, b1 = readn(2)
            opcode = b0 & 0x0F
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", readn(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", readn(8))[0]
            if not b1 & 0x80:
                raise ConnectionError("client frame not masked")
            mask = readn(4)
            payload = ws_mask(readn(n), mask)
            if opcode == 0x8:
                self.wfile.write(ws_frame(0x8, payload[:2] if len(payload) >= 2 else b""))
                return
            if opcode == 0x9:
                self.wfile.write(ws_frame(0xA, payload))
            elif opcode in (0x0, 0x1, 0x2):
                self.wfile.write(ws_frame(opcode, payload, fin=bool(b0 & 0x80)))


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        if self.path == "/reset":
            with self.server.stats.lock:
                self.server.stats.reset()
        body = json.dumps(self.server.stats.snapshot(self.server.name)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--name", default="backend")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("backend: loopback only")
    stats = Stats()
    srv = Server((a.host, a.port), Handler)
    ctl = Server((a.host, 0), ControlHandler)
    for s in (srv, ctl):
        s.stats = stats
        s.name = a.name
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    sys.stdout.write("READY %d %d\n" % (srv.server_address[1], ctl.server_address[1]))
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
