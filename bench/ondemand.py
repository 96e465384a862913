#!/usr/bin/env python3
"""Helper for bench/ondemand.sh (on-demand TLS: moat vs Caddy against Pebble).

Standard library only. Subcommands:

  ports N                       print N free TCP ports on 127.0.0.1 (kernel-chosen)
  serve ASK_PORT BACKEND_PORT   the `ask` endpoint (GET /check?domain=NAME -> 200) and the
                                backend (any GET -> 200, 3-byte body), one process, threaded
  wait --timeout S [--pid PID] [--port P] [--log FILE --pattern REGEX] [--what TEXT]
                                wait until P accepts a connection and/or FILE has a line
                                matching REGEX; fail early if PID exits, and at the timeout
  limiter CADDY_LOG             how long Caddy's own order limiter held back names (its
                                "waiting on" / "done waiting on internal rate limiter" lines)
  summary --n N FILE...         each FILE: "proxy name http_code connect appconnect
                                starttransfer" lines (seconds); prints the table and ratio
"""

import argparse
import http.server
import os
import re
import socket
import statistics
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit


def cmd_ports(a):
    socks = []
    try:
        for _ in range(a.n):  # hold them all open so the N ports differ
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bench"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def _reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class AskHandler(_Handler):
    def do_GET(self):
        u = urlsplit(self.path)
        domains = parse_qs(u.query).get("domain", [])
        if u.path == "/check" and domains and domains[0]:
            self.server.asked += 1
            self._reply(200, b"ok\n")
        else:
            self._reply(400, b"want /check?domain=NAME\n")


class BackendHandler(_Handler):
    def do_GET(self):
        self._reply(200, b"ok\n")

    do_HEAD = do_GET


def cmd_serve(a):
    servers = []
    for port, handler in ((a.ask_port, AskHandler), (a.backend_port, BackendHandler)):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        srv.daemon_threads = True
        srv.asked = 0
        servers.append(srv)
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("serving ask on 127.0.0.1:%d/check, backend on 127.0.0.1:%d"
          % (a.ask_port, a.backend_port), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by the shell) counts as dead
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _log_has(path, rx):
    try:
        with open(path, errors="replace") as f:
            return any(rx.search(line) for line in f)
    except OSError:
        return False


def cmd_wait(a):
    rx = re.compile(a.pattern) if a.pattern else None
    what = a.what or "readiness"
    deadline = time.monotonic() + a.timeout
    while True:
        ok = (a.port is None or _port_open(a.port)) and \
             (rx is None or _log_has(a.log, rx))
        if ok:
            return 0
        if a.pid is not None and not _alive(a.pid):
            print("ondemand: %s: process %d exited before it was ready" % (what, a.pid),
                  file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            conds = []
            if a.port is not None:
                conds.append("port 127.0.0.1:%d accepting" % a.port)
            if rx is not None:
                conds.append("%s matching /%s/" % (a.log, a.pattern))
            print("ondemand: %s: not ready after %.0fs (waited for %s)"
                  % (what, a.timeout, " and ".join(conds)), file=sys.stderr)
            return 1
        time.sleep(0.05)


def cmd_limiter(a):
    import json
    start, waits = {}, []
    with open(a.log, errors="replace") as f:
        for line in f:
            if "internal rate limiter" not in line:
                continue
            try:
                j = json.loads(line)
            except ValueError:
                continue
            key = tuple(j.get("identifiers") or ())
            if j.get("msg", "").startswith("waiting on"):
                start[key] = j["ts"]
            elif j.get("msg", "").startswith("done waiting") and key in start:
                waits.append((j["ts"] - start.pop(key), key))
    held = [(w, k) for w, k in waits if w > 0.05]
    if held:
        print("  WARNING: Caddy's internal order limiter held back %d name(s): %s"
              % (len(held), ", ".join("%s %.0f ms" % (",".join(k), w * 1000) for w, k in held)))
    else:
        print("  Caddy's internal order limiter held back no name (%d orders, longest wait %.1f ms)"
              % (len(waits), max((w for w, _ in waits), default=0) * 1000))
    return 0


def cmd_summary(a):
    rows = {}
    order = []
    for path in a.files:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) != 6:
                    continue
                proxy, name, code = p[0], p[1], p[2]
                c, ac, st = (float(x) for x in p[3:])
                if proxy not in rows:
                    rows[proxy] = []
                    order.append(proxy)
                rows[proxy].append((name, code, c, ac, st))
    ms = lambda x: "%.1f" % (x * 1000.0)
    print()
    print("| proxy | names | first byte median ms | min ms | max ms "
          "| TCP connect median ms | TLS done median ms |")
    print("|---|---|---|---|---|---|---|")
    med = {}
    bad = False
    for proxy in order:
        r = rows[proxy]
        st = [x[4] for x in r]
        if len(r) < a.n or any(x[1] != "200" for x in r):
            bad = True
        med[proxy] = statistics.median(st)
        print("| %s | %d | %s | %s | %s | %s | %s |" % (
            proxy, len(r), ms(med[proxy]), ms(min(st)), ms(max(st)),
            ms(statistics.median(x[2] for x in r)), ms(statistics.median(x[3] for x in r))))
    print()
    if "moat" in med and "caddy" in med and med["caddy"] > 0:
        print("moat/Caddy (median time to first byte, lower is better): %.2f"
              % (med["moat"] / med["caddy"]))
    if bad:
        print("WARNING: fewer than %d measured names or a non-200 answer: not comparable"
              % a.n)
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p.set_defaults(fn=cmd_ports)
    p = sub.add_parser("serve")
    p.add_argument("ask_port", type=int)
    p.add_argument("backend_port", type=int)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("wait")
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--pid", type=int)
    p.add_argument("--port", type=int)
    p.add_argument("--log")
    p.add_argument("--pattern")
    p.add_argument("--what")
    p.set_defaults(fn=cmd_wait)
    p = sub.add_parser("limiter")
    p.add_argument("log")
    p.set_defaults(fn=cmd_limiter)
    p = sub.add_parser("summary")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("files", nargs="+")
    p.set_defaults(fn=cmd_summary)
    a = ap.parse_args()
    if a.cmd == "wait" and bool(a.log) != bool(a.pattern):
        ap.error("wait: --log and --pattern go together")
    sys.exit(a.fn(a) or 0)


if __name__ == "__main__":
    main()
