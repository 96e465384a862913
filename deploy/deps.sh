#!/usr/bin/env bash
# Installs what moat needs to build, test and benchmark, from Debian bookworm packages.
#
# usage: deploy/deps.sh            build + test dependencies (what `make check` and `make demo` use)
#        deploy/deps.sh bench      the same plus the benchmark tools (nginx, wrk, caddy, ...)
#        deploy/deps.sh build      build dependencies only
#        deploy/deps.sh test       test dependencies only
#
# Only packages that are missing are installed (checked with dpkg-query), and `apt-get update`
# runs only when something is missing, so a second run is a silent no-op. Runs as root, or
# through sudo when it is available. Package installs do not start services (nginx): while
# installing, a temporary /usr/sbin/policy-rc.d denies it unless the machine already has one.
set -euo pipefail

build_pkgs=(build-essential cmake pkg-config libuv1-dev android-libboringssl-dev node-llhttp
            libc-ares-dev libcjson-dev)
# pebble (the ACME test CA, with pebble-challtestsrv) serves both the e2e tests and `make demo`.
test_pkgs=(python3 python3-pytest python3-prometheus-client curl openssl ca-certificates pebble
           procps)
# The reference harness (shared/bench/run.sh) also uses gcc, python3, openssl (above),
# taskset/setsid/unshare (util-linux) and ss (iproute2). caddy: bench/ondemand.sh (on-demand TLS
# against Pebble, moat vs Caddy).
bench_pkgs=(nginx wrk util-linux iproute2 caddy)

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0" >&2; exit 2; }

groups=()
[[ $# -eq 0 ]] && groups=(build test)
for a in "$@"; do
    case $a in
    build | test) groups+=("$a") ;;
    bench | --bench) groups+=(build test bench) ;;
    -h | --help) usage ;;
    *) echo "deps.sh: unknown argument '$a'" >&2; usage ;;
    esac
done

wanted=()
for g in "${groups[@]}"; do
    case $g in
    build) wanted+=("${build_pkgs[@]}") ;;
    test) wanted+=("${test_pkgs[@]}") ;;
    bench) wanted+=("${bench_pkgs[@]}") ;;
    esac
done

installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
for p in "${wanted[@]}"; do
    [[ " ${missing[*]-} " == *" $p "* ]] && continue
    installed "$p" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

as_root=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "deps.sh: run as root (missing: ${missing[*]})" >&2; exit 1; }
    as_root=(sudo)
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/moat-deps.XXXXXX)
policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
    if [[ $made_policy == 1 ]]; then "${as_root[@]}" rm -f "$policy"; fi
    rm -f "$log"
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from moat deploy/deps.sh: do not start services\nexit 101\n' |
        "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod 755 "$policy"
    made_policy=1
fi

run() {  # run CMD...: quiet on success, show the log on failure
    if ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >"$log" 2>&1; then
        cat "$log" >&2
        echo "deps.sh: failed: $*" >&2
        exit 1
    fi
}
run apt-get update -q
run apt-get install -y -q --no-install-recommends "${missing[@]}"

still=()
for p in "${missing[@]}"; do installed "$p" || still+=("$p"); done
if [[ ${#still[@]} -gt 0 ]]; then
    echo "deps.sh: still missing after install: ${still[*]}" >&2
    exit 1
fi
echo "deps.sh: installed ${#missing[@]} package(s)"
