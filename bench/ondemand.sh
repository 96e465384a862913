#!/usr/bin/env bash
# On-demand TLS latency, moat vs Caddy: how long the first request for a NEW name takes when
# the certificate is obtained during that first handshake (ACME from a local Pebble).
#
# usage: bench/ondemand.sh              (after `make`; `make bench-ondemand` does deps + build + this)
#        N=20 bench/ondemand.sh         more names per proxy (default 12, at least 12 recommended)
# Settings (environment):
#   N             measured names per proxy (default 12); one extra warm-up name is not counted
#   PAUSE         seconds between two names (default 1; not measured): keeps Caddy's built-in
#                 limit of 10 orders per 10 s per ACME account from delaying names (PAUSE=0 shows it)
#   MOAT_BIN      the moat binary (default: build/moat)
#   CADDY_BIN     the Caddy binary (default: caddy on PATH; Debian package `caddy` 2.6.2)
#   WORKDIR       where configs, logs and raw timings go (default: a new /tmp/moat-ondemand.XXXXXX,
#                 kept afterwards)
#   PYTHON        the interpreter for bench/ondemand.py (default: python3; standard library only)
#   PEBBLE_WFE_NONCEREJECT  % of nonces Pebble rejects (default 0 here: no random badNonce retries)
#
# Per proxy, in turn (moat first, then Caddy), everything on 127.0.0.1 with free ports:
#   pebble-challtestsrv (mock DNS: every name -> 127.0.0.1) + its own Pebble (PEBBLE_VA_NOSLEEP=1)
#   validating on that proxy's ports, the proxy with on-demand TLS for *.bench.test (tls-alpn-01
#   only), then one warm-up name and N new names, one curl each, sequentially. The ask endpoint
#   and the backend (bench/ondemand.py serve) are shared. See bench/README.md.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
helper=$repo/bench/ondemand.py
N=${N:-12}
PAUSE=${PAUSE:-1}
PY=${PYTHON:-python3}
MOAT_BIN=${MOAT_BIN:-$repo/build/moat}
CADDY_BIN=${CADDY_BIN:-$(command -v caddy || true)}
NONCEREJECT=${PEBBLE_WFE_NONCEREJECT:-0}
START_TIMEOUT=20     # s: Pebble, challtestsrv, proxies, helper servers
CURL_TIMEOUT=60      # s: one request (includes the whole issuance)

die() { echo "ondemand: $*" >&2; exit 1; }

[[ $N =~ ^[0-9]+$ && $N -ge 1 ]] || die "N must be a positive integer (got '$N')"
[[ $PAUSE =~ ^[0-9]+([.][0-9]+)?$ ]] || die "PAUSE must be a number of seconds (got '$PAUSE')"
[[ $N -ge 12 ]] || echo "ondemand: warning: N=$N < 12: the median is noisy" >&2
[[ -x $MOAT_BIN ]] || die "no moat binary at $MOAT_BIN (run: make)"
MOAT_BIN=$(readlink -f "$MOAT_BIN")
[[ -n $CADDY_BIN && -x $CADDY_BIN ]] || die "caddy not found (install: deploy/deps.sh bench, Debian package caddy)"
for t in pebble pebble-challtestsrv curl openssl "$PY"; do
    command -v "$t" >/dev/null || die "$t not found (install: deploy/deps.sh bench)"
done
[[ -f $helper ]] || die "missing $helper"

if [[ -n ${WORKDIR:-} ]]; then
    mkdir -p "$WORKDIR"
else
    WORKDIR=$(mktemp -d /tmp/moat-ondemand.XXXXXX)
fi
WORKDIR=$(cd "$WORKDIR" && pwd)

# Caddy runs with Go's default GOMAXPROCS (all cores); moat with 1 worker. No CPU pinning.
unset GOMAXPROCS
# No proxy variables: curl, Pebble and Caddy's ACME client must talk to 127.0.0.1 directly.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# ---------------------------------------------------------------------------
# processes: started in the background, remembered by PID, stopped by PID

pids=()
stop_pid() {  # stop_pid PID: SIGTERM, up to 5 s, then SIGKILL; reap it
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        [[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; then
        echo "ondemand: pid $pid did not stop on SIGTERM within 5s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
stop_all() {
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        [[ -n ${pids[i]} ]] && stop_pid "${pids[i]}"
    done
    pids=()
}
trap 'stop_all' EXIT
trap 'echo "ondemand: interrupted" >&2; exit 130' INT TERM

LAST_PID=
spawn() {  # spawn LOGFILE CMD...: run in the background, output to LOGFILE; sets LAST_PID
    local log=$1
    shift
    "$@" </dev/null >"$log" 2>&1 &
    LAST_PID=$!
    pids+=("$LAST_PID")
}

show_log() {  # show_log FILE [LINES]
    echo "---- last ${2:-40} lines of $1:" >&2
    tail -n "${2:-40}" "$1" >&2 2>/dev/null || echo "<no log>" >&2
    echo "----" >&2
}

wait_ready() {  # wait_ready WHAT PID LOG [helper wait args...]
    local what=$1 pid=$2 log=$3
    shift 3
    if ! "$PY" "$helper" wait --timeout "$START_TIMEOUT" --pid "$pid" --what "$what" "$@"; then
        show_log "$log"
        die "$what did not start"
    fi
}

# ---------------------------------------------------------------------------
# shared: ports, the listener CA for Pebble's own HTTPS, ask endpoint + backend

read -r -a P <<<"$("$PY" "$helper" ports 14)"
[[ ${#P[@]} -eq 14 ]] || die "could not get 14 free ports"
ASK_PORT=${P[0]} BACKEND_PORT=${P[1]}
# per proxy: https http pebble pebble-mgmt dns dns-mgmt
MOAT_PORTS=("${P[@]:2:6}")
CADDY_PORTS=("${P[@]:8:6}")

ca_dir=$WORKDIR/listener-ca
mkdir -p "$ca_dir"
ossl() { openssl "$@" >>"$ca_dir/openssl.log" 2>&1 || { show_log "$ca_dir/openssl.log"; die "openssl $1 failed"; }; }
printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = moat bench Pebble listener CA\n[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n' >"$ca_dir/ca.cnf"
printf '[v3_leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n' >"$ca_dir/leaf.ext"
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ca_dir/ca.key"
ossl req -x509 -new -key "$ca_dir/ca.key" -config "$ca_dir/ca.cnf" -extensions v3_ca -days 2 -sha256 -out "$ca_dir/ca.pem"
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ca_dir/listener.key"
ossl req -new -key "$ca_dir/listener.key" -subj /CN=localhost -out "$ca_dir/listener.csr"
ossl x509 -req -in "$ca_dir/listener.csr" -CA "$ca_dir/ca.pem" -CAkey "$ca_dir/ca.key" -set_serial "$(date +%s)" \
    -days 2 -sha256 -extfile "$ca_dir/leaf.ext" -extensions v3_leaf -out "$ca_dir/listener.pem"
LISTENER_CA=$ca_dir/ca.pem

spawn "$WORKDIR/servers.log" "$PY" "$helper" serve "$ASK_PORT" "$BACKEND_PORT"
servers_pid=$LAST_PID
wait_ready "ask endpoint" "$servers_pid" "$WORKDIR/servers.log" --port "$ASK_PORT"
wait_ready "backend" "$servers_pid" "$WORKDIR/servers.log" --port "$BACKEND_PORT"
ASK_URL=http://127.0.0.1:$ASK_PORT/check

# ---------------------------------------------------------------------------
# per proxy: challtestsrv + Pebble validating on the proxy's ports

start_pebble() {  # start_pebble DIR HTTPS HTTP PEBBLE MGMT DNS DNSMGMT; sets PEBBLE_PID, PEBBLE_ROOT, PEBBLE_DIR_URL
    local d=$1 https=$2 http=$3 port=$4 mgmt=$5 dns=$6 dnsmgmt=$7
    mkdir -p "$d"
    spawn "$d/challtestsrv.log" pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
        -dns01 "127.0.0.1:$dns" -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$dnsmgmt"
    wait_ready "pebble-challtestsrv" "$LAST_PID" "$d/challtestsrv.log" --port "$dnsmgmt"
    cat >"$d/pebble.json" <<EOF
{"pebble": {
  "listenAddress": "127.0.0.1:$port",
  "managementListenAddress": "127.0.0.1:$mgmt",
  "certificate": "$ca_dir/listener.pem",
  "privateKey": "$ca_dir/listener.key",
  "httpPort": $http,
  "tlsPort": $https,
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false
}}
EOF
    spawn "$d/pebble.log" env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT="$NONCEREJECT" \
        PEBBLE_AUTHZREUSE=0 pebble -config "$d/pebble.json" -dnsserver "127.0.0.1:$dns"
    PEBBLE_PID=$LAST_PID
    wait_ready "pebble" "$PEBBLE_PID" "$d/pebble.log" --port "$port" --log "$d/pebble.log" \
        --pattern "Listening on"
    PEBBLE_DIR_URL=https://127.0.0.1:$port/dir
    local i ok=0
    for ((i = 0; i < 100; i++)); do
        if curl -sSf --noproxy '*' --max-time 2 --cacert "$LISTENER_CA" -o /dev/null "$PEBBLE_DIR_URL" 2>/dev/null; then
            ok=1
            break
        fi
        sleep 0.1
    done
    [[ $ok == 1 ]] || { show_log "$d/pebble.log"; die "Pebble does not answer $PEBBLE_DIR_URL"; }
    # Pebble makes a new root at every start: fetch it (curl verifies the served chain up to it)
    PEBBLE_ROOT=$d/root.pem
    curl -sSf --noproxy '*' --max-time 5 --cacert "$LISTENER_CA" -o "$PEBBLE_ROOT" "https://127.0.0.1:$mgmt/roots/0" ||
        die "could not fetch Pebble's root from https://127.0.0.1:$mgmt/roots/0"
    curl -sSf --noproxy '*' --max-time 5 --cacert "$LISTENER_CA" -o "$d/intermediate.pem" \
        "https://127.0.0.1:$mgmt/intermediates/0" || die "could not fetch Pebble's intermediate"
    grep -q 'BEGIN CERTIFICATE' "$PEBBLE_ROOT" || die "Pebble's root $PEBBLE_ROOT is not a PEM certificate"
}

# ---------------------------------------------------------------------------
# the measurement: one warm-up name, then N new names, one fresh curl each

CURL_INSECURE=()
measure() {  # measure PROXY PORT ROOT LOG OUTFILE
    local proxy=$1 port=$2 root=$3 log=$4 out=$5 i name line rc
    : >"$out"
    for ((i = 0; i <= N; i++)); do
        [[ $i -gt 0 ]] && sleep "$PAUSE"
        if [[ $i -eq 0 ]]; then name=warmup-$proxy.bench.test; else name=$(printf '%s-n%02d.bench.test' "$proxy" "$i"); fi
        rc=0
        line=$(curl -sS --noproxy '*' --http1.1 --max-time "$CURL_TIMEOUT" -o /dev/null \
            -w '%{http_code} %{time_connect} %{time_appconnect} %{time_starttransfer}' \
            --resolve "$name:$port:127.0.0.1" --cacert "$root" "${CURL_INSECURE[@]}" \
            "https://$name:$port/" 2>"$WORKDIR/curl.err") || rc=$?
        if [[ $rc -ne 0 || ${line%% *} != 200 ]]; then
            cat "$WORKDIR/curl.err" >&2
            show_log "$log" 60
            die "$proxy: request for new name $name failed (curl exit $rc, result '$line')"
        fi
        if [[ $i -eq 0 ]]; then
            printf '  %-28s %s (warm-up, not counted: includes the ACME account registration)\n' "$name" "$line"
        else
            printf '  %-28s %s\n' "$name" "$line"
            echo "$proxy $name $line" >>"$out"
        fi
    done
}

listeners() {  # listeners PROXY PID DIR: what the proxy listens on (for the record)
    local l
    l=$(ss -Hltnp 2>/dev/null | grep "pid=$2," | awk '{print $4}' | sort | tr '\n' ' ' || true)
    echo "$l" >"$3/listeners.txt"
    echo "  $1 listens on: ${l:-?}"
}

check_issued() {  # check_issued PROXY PEBBLE_LOG: one new certificate per name
    local proxy=$1 plog=$2 n
    n=$(grep -c 'Issued certificate serial' "$plog" || true)
    if [[ $n -ne $((N + 1)) ]]; then
        echo "ondemand: warning: $proxy: Pebble issued $n certificate(s) for $((N + 1)) names" >&2
    fi
    echo "  Pebble issued $n certificates (expected $((N + 1)): warm-up + $N)"
}

host_info() {
    echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "moat:  $MOAT_BIN ($("$MOAT_BIN" --version 2>/dev/null | head -n1 || echo '?')), 1 worker"
    echo "caddy: $CADDY_BIN ($("$CADDY_BIN" version 2>/dev/null | head -n1)), GOMAXPROCS unset (Go default: all $(nproc) cores), admin API off"
    echo "pebble: PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=$NONCEREJECT PEBBLE_AUTHZREUSE=0, one Pebble per proxy"
    echo "challenge: tls-alpn-01 only (http-01 off in both), ask: $ASK_URL, backend: 127.0.0.1:$BACKEND_PORT"
    echo "client: curl --http1.1, a new connection per name, --resolve (DNS time 0), --cacert Pebble root"
    echo "N=$N measured names per proxy (+1 warm-up), ${PAUSE}s pause between names, workdir $WORKDIR"
}

# ---------------------------------------------------------------------------
# moat

run_moat() {
    local https=${MOAT_PORTS[0]} http=${MOAT_PORTS[1]} d=$WORKDIR/moat
    echo
    echo "== moat (https 127.0.0.1:$https, http 127.0.0.1:$http)"
    start_pebble "$d/pebble" "$https" "$http" "${MOAT_PORTS[@]:2:4}"
    cat >"$d/moat.json" <<EOF
{
  "workers": 1,
  "listen": {"https": ["127.0.0.1:$https"], "http": ["127.0.0.1:$http"]},
  "log": {"level": "info", "access": false},
  "acme": {"ca": "$PEBBLE_DIR_URL", "ca_root": "$LISTENER_CA", "storage": "$d/storage",
           "challenges": ["tls-alpn-01"]},
  "on_demand": {"ask": "$ASK_URL", "allow": ["*.bench.test"]},
  "sites": [{"hosts": ["*.bench.test"], "upstreams": ["127.0.0.1:$BACKEND_PORT"]}]
}
EOF
    spawn "$d/moat.log" "$MOAT_BIN" run -c "$d/moat.json"
    local moat_pid=$LAST_PID
    wait_ready "moat" "$moat_pid" "$d/moat.log" --port "$https" --log "$d/moat.log" --pattern '"event" *: *"ready"'
    listeners moat "$moat_pid" "$d"
    measure moat "$https" "$PEBBLE_ROOT" "$d/moat.log" "$WORKDIR/moat.tsv"
    check_issued moat "$d/pebble/pebble.log"
    stop_all_but_servers
}

# ---------------------------------------------------------------------------
# Caddy: the JSON that `caddy adapt` makes from a Caddyfile site `https://*.bench.test:PORT`
# with `tls { on_demand; issuer acme { disable_http_challenge; alt_tlsalpn_port PORT } }`,
# `on_demand_tls { ask URL }`, `acme_ca`/`acme_ca_root`, plus storage and logging.

run_caddy() {
    local https=${CADDY_PORTS[0]} http=${CADDY_PORTS[1]} d=$WORKDIR/caddy
    echo
    echo "== caddy (https 127.0.0.1:$https, http 127.0.0.1:$http)"
    start_pebble "$d/pebble" "$https" "$http" "${CADDY_PORTS[@]:2:4}"
    mkdir -p "$d/home" "$d/data"
    cat >"$d/caddy.json" <<EOF
{
  "admin": {"disabled": true},
  "logging": {"logs": {"default": {"level": "INFO", "writer": {"output": "stderr"}}}},
  "storage": {"module": "file_system", "root": "$d/data"},
  "apps": {
    "http": {
      "http_port": $http,
      "https_port": $https,
      "servers": {
        "bench": {
          "listen": ["127.0.0.1:$https"],
          "automatic_https": {"disable_redirects": true},
          "routes": [{
            "match": [{"host": ["*.bench.test"]}],
            "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:$BACKEND_PORT"}]}],
            "terminal": true
          }]
        }
      }
    },
    "tls": {
      "automation": {
        "policies": [{
          "subjects": ["*.bench.test"],
          "issuers": [{
            "module": "acme",
            "ca": "$PEBBLE_DIR_URL",
            "trusted_roots_pem_files": ["$LISTENER_CA"],
            "challenges": {
              "bind_host": "127.0.0.1",
              "http": {"disabled": true},
              "tls-alpn": {"alternate_port": $https}
            }
          }],
          "on_demand": true
        }],
        "on_demand": {"ask": "$ASK_URL"}
      }
    }
  }
}
EOF
    local envs=(env HOME="$d/home" XDG_DATA_HOME="$d/home" XDG_CONFIG_HOME="$d/home")
    "${envs[@]}" "$CADDY_BIN" validate --config "$d/caddy.json" >"$d/validate.log" 2>&1 ||
        { show_log "$d/validate.log"; die "caddy validate refused $d/caddy.json"; }
    spawn "$d/caddy.log" "${envs[@]}" "$CADDY_BIN" run --config "$d/caddy.json"
    local caddy_pid=$LAST_PID
    wait_ready "caddy" "$caddy_pid" "$d/caddy.log" --port "$https" --log "$d/caddy.log" \
        --pattern 'serving initial configuration'
    listeners caddy "$caddy_pid" "$d"
    measure caddy "$https" "$PEBBLE_ROOT" "$d/caddy.log" "$WORKDIR/caddy.tsv"
    check_issued caddy "$d/pebble/pebble.log"
    "$PY" "$helper" limiter "$d/caddy.log"
    stop_all_but_servers
}

stop_all_but_servers() {  # stop this proxy's processes (newest first), keep ask + backend
    local i keep=()
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        if [[ ${pids[i]} == "$servers_pid" ]]; then keep=("$servers_pid"); else stop_pid "${pids[i]}"; fi
    done
    pids=("${keep[@]}")
}

echo "on-demand TLS: time to first byte for a new name (TCP connect + handshake incl. ACME issuance + request)"
host_info
echo "per name: http_code time_connect time_appconnect time_starttransfer (seconds, from curl's start)"
run_moat
run_caddy
"$PY" "$helper" summary --n "$N" "$WORKDIR/moat.tsv" "$WORKDIR/caddy.tsv" | tee "$WORKDIR/summary.md"
echo
echo "ondemand: raw timings $WORKDIR/{moat,caddy}.tsv, logs $WORKDIR/{moat,caddy}/, summary $WORKDIR/summary.md" >&2
