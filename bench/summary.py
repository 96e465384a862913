#!/usr/bin/env python3
"""moat's headline ratios from the harness's results.jsonl (one run, medians over rounds).

Per proxy CPU-second figures: the work done divided by the CPU time the proxy's processes
used during that scenario, so a client-bound scenario still compares the proxies' efficiency.
"""
import argparse
import json
import os
import statistics
from collections import defaultdict

# (key, label, unit, goal text, goal test on the ratio); goals from DESIGN.md.
METRICS = [
    ("small", "a. keep-alive requests per proxy CPU-second", "req/CPU-s", ">= 1.2", lambda r: r >= 1.2),
    ("hs", "b. full TLS handshakes per proxy CPU-second", "hs/CPU-s", ">= 2.0", lambda r: r >= 2.0),
    ("large", "c. 1 MiB responses: MB/s per proxy CPU-second", "MB/CPU-s", "-", None),
    ("mem", "d. KiB RSS per idle TLS connection (lower is better)", "KiB", "<= 0.5", lambda r: r <= 0.5),
]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--ref", default="nginx")
    ap.add_argument("--proxy", default="moat")
    a = ap.parse_args()

    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    vals = defaultdict(lambda: defaultdict(list))  # proxy -> metric -> per-round values
    notes = []
    rounds = set()
    for r in rows:
        p, sc = r["proxy"], r["scenario"]
        if sc == "probe":
            if r.get("alpn") != "http/1.1":
                notes.append(f"{p}: ALPN '{r.get('alpn')}' chosen when h2,http/1.1 offered (want http/1.1)")
            if r.get("tickets"):
                notes.append(f"{p}: sent {r['tickets']} TLS 1.3 session ticket(s) (want 0: no resumption)")
            continue
        rounds.add(r.get("round"))
        cpu = r.get("proxy_cpu_s") or 0
        if sc in ("small", "large"):
            w = r["wrk"]
            errs = sum(w[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
            if errs:
                notes.append(f"{p} round {r['round']} {sc}: {errs} wrk errors")
            work = w["requests"] if sc == "small" else w["bytes"] / 1e6
            vals[p][sc].append(work / cpu if cpu else None)
        elif sc == "hs":
            h = r["hs"]
            errs = h["err_connect"] + h["err_tls"] + h["err_http"]
            if errs:
                notes.append(f"{p} round {r['round']} hs: {errs} errors")
            if h.get("resumed"):
                notes.append(f"{p} round {r['round']} hs: {h['resumed']} resumed handshakes (want 0)")
            vals[p]["hs"].append(h["handshakes"] / cpu if cpu else None)
        elif sc == "mem":
            i = r["idle"]
            if i.get("dropped"):
                notes.append(f"{p} round {r['round']} idle: {i['dropped']} of {i['requested']} connections dropped")
            n = i["idle_open"]
            vals[p]["mem"].append((r["rss_loaded_kib"] - r["rss_base_kib"]) / n if n else None)

    run_id = "?"
    meta = os.path.join(os.path.dirname(os.path.abspath(a.results)), "meta.txt")
    if os.path.exists(meta):
        for line in open(meta):
            if line.startswith("run_id:"):
                run_id = line.split(":", 1)[1].strip()

    ref, me = a.ref, a.proxy
    out = [f"## {me} vs {ref}: per proxy CPU-second (run {run_id}, median of {len(rounds)} round(s))", ""]
    out.append(f"| metric | {ref} | {me} | {me}/{ref} | goal |")
    out.append("|---|---:|---:|---:|---|")
    for key, label, unit, goal, test in METRICS:
        rv, mv = med(vals[ref][key]), med(vals[me][key])
        nd = 1 if key == "mem" else 0
        f = lambda v: "n/a" if v is None else f"{v:,.{nd}f}"
        if rv and mv is not None:
            ratio = mv / rv
            mark = "" if test is None else (" (met)" if test(ratio) else " (not met)")
            rs = f"{ratio:.2f}"
        else:
            rs, mark = "n/a", ""
        out.append(f"| {label} [{unit}] | {f(rv)} | {f(mv)} | {rs} | {goal}{mark} |")
    out.append("")
    if notes:
        out.append("Checks that failed (figures above may not be comparable):")
        out.extend(f"- {n}" for n in notes)
    else:
        out.append("Checks: no errors, no dropped idle connections, no resumption, ALPN http/1.1.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
