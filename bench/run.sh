#!/usr/bin/env bash
# moat vs nginx, side by side on this machine, through the reference harness (shared/bench).
#
# usage: bench/run.sh                    (after `make`; `make bench` does deps + build + this)
#        DURATION=5 ROUNDS=1 bench/run.sh   quicker, noisier
# Settings are the harness's (see its README): PROXIES (default "nginx moat"), ROUNDS,
# DURATION, SCENARIOS, WORKDIR (default /tmp/proxybench), OUT, ...
#   MOAT_BENCH_HARNESS   the harness directory (default: ../shared/bench next to the repo)
#   MOAT_BIN             the moat binary (default: build/moat)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
harness=${MOAT_BENCH_HARNESS:-$repo/../shared/bench}

if [[ ! -f $harness/run.sh ]]; then
    cat >&2 <<MSG
bench: the reference harness is not at $harness
  It is the side-by-side TLS proxy benchmark kept in the project's shared/ folder
  (shared/bench/: run.sh, lib/, conf/, proxies/), which sits next to this repository
  (../shared/bench). Copy or mount it there, or point MOAT_BENCH_HARNESS at it:
    MOAT_BENCH_HARNESS=/path/to/shared/bench bench/run.sh
MSG
    exit 1
fi
harness=$(cd "$harness" && pwd)

export MOAT_BIN=${MOAT_BIN:-$repo/build/moat}
[[ -x $MOAT_BIN ]] || { echo "bench: no moat binary at $MOAT_BIN (run: make)" >&2; exit 1; }
MOAT_BIN=$(readlink -f "$MOAT_BIN")

export PROXIES=${PROXIES:-nginx moat}
export REF=${REF:-nginx}
export WORKDIR=${WORKDIR:-/tmp/proxybench}
export OUT=${OUT:-$WORKDIR/results.md}

# A harness without a moat plugin: pass the same command line through PROXY_CMD.
if [[ ! -f $harness/proxies/moat.sh && " $PROXIES " == *" moat "* ]]; then
    export PROXY_NAME=moat
    export PROXY_CMD="$MOAT_BIN proxy --from bench.test --to {backend} --cert {cert} --key {key} --https-port {port} --http-port 0 --bind 127.0.0.1 --workers 1"
fi

# The idle-memory scenario holds 5,000 connections: raise the soft open-files limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt 12000 ]]; then
    echo "bench: warning: open files limit $(ulimit -n) < 12000; the idle-connection scenario may drop connections" >&2
fi

echo "bench: harness $harness, proxies: $PROXIES (reference $REF), moat: $MOAT_BIN" >&2
bash "$harness/run.sh" "$@"

python3 "$repo/bench/summary.py" --results "$WORKDIR/results.jsonl" --ref "$REF" --proxy moat \
    | tee "$WORKDIR/summary.md"
echo "bench: full report $OUT, summary $WORKDIR/summary.md, raw $WORKDIR/results.jsonl" >&2
