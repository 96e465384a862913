#!/usr/bin/env bash
# moat demo: moat obtains a certificate from an ACME CA (a local Pebble) and proxies HTTPS
# to a plain-HTTP backend, all on 127.0.0.1 with free ports, nothing left behind.
#
# usage: deploy/demo.sh            (after `make` and `make deps`; `make demo` does all three)
#   MOAT_BIN   the moat binary (default: build/moat)
#   KEEP=1     keep the temporary directory (certificates, storage, logs) for a look afterwards
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOAT_BIN=${MOAT_BIN:-$repo/build/moat}
NAME=demo.moat.test
ISSUE_TIMEOUT=30   # seconds moat gets to obtain the certificate
START_TIMEOUT=15   # seconds each server gets to start

if [[ -t 1 ]]; then
    bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    bold() { printf '\n== %s\n' "$*"; }
fi
die() { echo "demo: FAILED: $*" >&2; exit 1; }

cat <<EOF
moat demo — what it shows:
  1. Pebble, Let's Encrypt's ACME test CA, running locally (pebble-challtestsrv as its
     DNS: every name, $NAME included, resolves to 127.0.0.1),
  2. a backend that speaks plain HTTP only (python3 -m http.server),
  3. moat in front of it with no certificate file at all:
       moat proxy --from $NAME --to 127.0.0.1:PORT --acme-ca https://127.0.0.1:P/dir ...
     moat creates an ACME account, orders a certificate for $NAME, answers Pebble's
     tls-alpn-01 / http-01 challenge on its own ports, and stores the certificate,
  4. the certificate moat then serves (openssl s_client, verified against Pebble's root),
     an HTTPS request through moat to the backend (curl -v), the plain-HTTP port
     redirecting to HTTPS, \`moat certs list\`, and moat's log (with the access log on).
Everything listens on 127.0.0.1 and is stopped and removed when the demo ends.
EOF

for t in openssl curl python3 pebble pebble-challtestsrv; do
    command -v "$t" >/dev/null || die "missing $t (run: make deps)"
done
[[ -x $MOAT_BIN ]] || die "no moat binary at $MOAT_BIN (run: make)"
# Everything here talks to 127.0.0.1 directly: no HTTP proxy for curl, Pebble or moat.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

T0=$SECONDS
TMP=$(mktemp -d /tmp/moat-demo.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then echo "demo: files kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Free loopback ports, all chosen while every socket is still open (no duplicates). moat's
# ports come first: Pebble is configured with them, since it validates by connecting there.
# The DNS port is free for both TCP and UDP.
read -r HTTPS_PORT HTTP_PORT BACKEND_PORT PEBBLE_PORT PEBBLE_MGMT_PORT DNS_PORT DNS_MGMT_PORT \
    < <(python3 - <<'PY'
import socket
socks = []
def tcp():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    return s.getsockname()[1]
def tcp_udp():
    while True:
        p = tcp()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p))
        except OSError:
            u.close()
            continue
        socks.append(u)
        return p
print(tcp(), tcp(), tcp(), tcp(), tcp(), tcp_udp(), tcp())
PY
)

# listening PORT: a TCP socket is listening on PORT (read from /proc: no probe connection,
# so moat's log shows only the demo's requests).
listening() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# wait_port PORT PID: until PORT is listening, at most START_TIMEOUT s (fails if PID exits).
wait_port() {
    local port=$1 pid=$2
    for _ in $(seq $((START_TIMEOUT * 10))); do
        listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# show_log TITLE FILE: the last lines of a log, for failure messages.
show_log() {
    echo "--- $1 (last 30 lines of $2)" >&2
    tail -n 30 "$2" >&2 || true
}

# ------------------------------------------------------------ Pebble's own TLS
# Pebble serves its ACME API over HTTPS but ships no certificate for it: a small CA and a
# certificate for 127.0.0.1/localhost. moat trusts that CA for the ACME API (--acme-ca-root).
make_listener_cert() {
    local d=$TMP/pebble-tls
    mkdir -p "$d"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$d/ca.key" -sha256 -days 2 -subj "/CN=moat demo Pebble listener CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$d/ca.pem" 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/listener.key" 2>/dev/null
    openssl req -new -key "$d/listener.key" -subj "/CN=localhost" -out "$d/listener.csr" 2>/dev/null
    cat >"$d/leaf.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
    openssl x509 -req -in "$d/listener.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -sha256 -days 1 -extfile "$d/leaf.ext" -out "$d/listener.pem" 2>/dev/null
    chmod 600 "$d"/*.key
    LISTENER_CA=$d/ca.pem
    echo "Pebble's HTTPS listener: certificate $d/listener.pem for 127.0.0.1/localhost," \
        "signed by $LISTENER_CA (ECDSA P-256)"
}

# ------------------------------------------------------------------- Pebble
start_pebble() {
    local d=$TMP/pebble
    mkdir -p "$d"
    # Mock DNS only: every A query answers 127.0.0.1, no AAAA, no challenge listeners.
    pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$DNS_PORT" \
        -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$DNS_MGMT_PORT" \
        </dev/null >"$d/challtestsrv.log" 2>&1 &
    PIDS+=($!)
    if ! wait_port "$DNS_PORT" $! || ! wait_port "$DNS_MGMT_PORT" $!; then
        show_log "pebble-challtestsrv log" "$d/challtestsrv.log"
        die "pebble-challtestsrv did not listen on 127.0.0.1:$DNS_PORT and :$DNS_MGMT_PORT" \
            "within ${START_TIMEOUT}s"
    fi
    echo "DNS: pebble-challtestsrv on 127.0.0.1:$DNS_PORT, every name -> 127.0.0.1 (pid $!)"

    cat >"$d/pebble.json" <<EOF
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_PORT",
            "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
            "certificate": "$TMP/pebble-tls/listener.pem",
            "privateKey": "$TMP/pebble-tls/listener.key",
            "httpPort": $HTTP_PORT, "tlsPort": $HTTPS_PORT,
            "ocspResponderURL": "", "externalAccountBindingRequired": false}}
EOF
    # PEBBLE_VA_NOSLEEP: validate at once (not after up to 15 s); PEBBLE_WFE_NONCEREJECT=0:
    # no random badNonce rejections.
    (cd "$d" && PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
        exec pebble -config "$d/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT") \
        </dev/null >"$d/pebble.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    ACME_DIR=https://127.0.0.1:$PEBBLE_PORT/dir
    for _ in $(seq $((START_TIMEOUT * 10))); do
        curl -sf --max-time 2 --cacert "$LISTENER_CA" "$ACME_DIR" -o "$d/dir.json" && break
        kill -0 "$pid" 2>/dev/null || { show_log "pebble log" "$d/pebble.log"; die "pebble exited"; }
        sleep 0.1
    done
    if [[ ! -s $d/dir.json ]]; then
        show_log "pebble log" "$d/pebble.log"
        die "Pebble did not answer $ACME_DIR within ${START_TIMEOUT}s"
    fi
    echo "ACME CA: Pebble, directory $ACME_DIR, management https://127.0.0.1:$PEBBLE_MGMT_PORT" \
        "(pid $pid); it validates challenges on moat's ports $HTTPS_PORT (tls-alpn-01)" \
        "and $HTTP_PORT (http-01)"
}

# ------------------------------------------------------------------ backend
start_backend() {
    mkdir -p "$TMP/www"
    cat >"$TMP/www/index.html" <<EOF
<!doctype html>
<title>moat demo backend</title>
<p>Hello from the backend on 127.0.0.1:$BACKEND_PORT (plain HTTP) — you reached it through moat over HTTPS.</p>
EOF
    python3 -m http.server --bind 127.0.0.1 --directory "$TMP/www" "$BACKEND_PORT" \
        >"$TMP/backend.log" 2>&1 &
    PIDS+=($!)
    wait_port "$BACKEND_PORT" $! || { show_log "backend log" "$TMP/backend.log"; die "backend did not start"; }
    echo "backend: python3 -m http.server on 127.0.0.1:$BACKEND_PORT (pid $!)"
}

# --------------------------------------------------------------------- moat
start_moat() {
    local cmd=("$MOAT_BIN" proxy --from "$NAME" --to "127.0.0.1:$BACKEND_PORT"
               --https-port "$HTTPS_PORT" --http-port "$HTTP_PORT" --bind 127.0.0.1
               --workers 2 --access-log
               --acme-ca "$ACME_DIR" --acme-ca-root "$LISTENER_CA"
               --storage "$TMP/storage" --challenges "tls-alpn-01,http-01"
               --admin 127.0.0.1:0)
    echo "\$ ${cmd[*]#"$repo/"}"
    "${cmd[@]}" >"$TMP/moat.log" 2>&1 &
    MOAT_PID=$!
    PIDS+=("$MOAT_PID")
    if ! wait_port "$HTTPS_PORT" "$MOAT_PID" || ! wait_port "$HTTP_PORT" "$MOAT_PID"; then
        show_log "moat log" "$TMP/moat.log"
        die "moat did not listen on 127.0.0.1:$HTTPS_PORT and :$HTTP_PORT within ${START_TIMEOUT}s"
    fi
    echo "moat: listening on https://127.0.0.1:$HTTPS_PORT and http://127.0.0.1:$HTTP_PORT (pid $MOAT_PID)"
}

# wait_certificate: echo moat's ACME log lines as they come until "acme_certificate_stored";
# fail on "acme_failed", if moat exits, or after ISSUE_TIMEOUT seconds.
wait_certificate() {
    local shown=0 total line start=$SECONDS
    while :; do
        total=$(wc -l <"$TMP/moat.log") # complete lines only
        if ((total > shown)); then
            while IFS= read -r line; do
                [[ $line == *'"acme_'* ]] && echo "  $line"
                if [[ $line == *'"acme_certificate_stored"'* ]]; then
                    [[ $line =~ \"elapsed_ms\":([0-9]+) ]] &&
                        echo "certificate for $NAME obtained and stored in ${BASH_REMATCH[1]} ms"
                    return 0
                fi
                if [[ $line == *'"acme_failed"'* ]]; then
                    show_log "pebble log" "$TMP/pebble/pebble.log"
                    die "moat could not obtain the certificate: $line"
                fi
            done < <(sed -n "$((shown + 1)),${total}p" "$TMP/moat.log")
            shown=$total
        fi
        if ! kill -0 "$MOAT_PID" 2>/dev/null; then
            show_log "moat log" "$TMP/moat.log"
            die "moat exited before obtaining the certificate"
        fi
        if ((SECONDS - start >= ISSUE_TIMEOUT)); then
            show_log "moat log" "$TMP/moat.log"
            show_log "pebble log" "$TMP/pebble/pebble.log"
            die "no acme_certificate_stored in moat's log after ${ISSUE_TIMEOUT}s"
        fi
        sleep 0.1
    done
}

bold "setup: Pebble (ACME CA) with its DNS, the backend, moat"
make_listener_cert
start_pebble
start_backend
start_moat

bold "1. moat obtains a certificate for $NAME from Pebble (moat's ACME log lines)"
wait_certificate

# Pebble makes a new root and intermediate at every start: fetch this run's.
ROOT=$TMP/pebble/root.pem
mgmt=https://127.0.0.1:$PEBBLE_MGMT_PORT
curl -sSf --max-time 5 --cacert "$LISTENER_CA" "$mgmt/roots/0" -o "$ROOT" ||
    die "could not fetch Pebble's root from $mgmt/roots/0"
curl -sSf --max-time 5 --cacert "$LISTENER_CA" "$mgmt/intermediates/0" -o "$TMP/pebble/intermediate.pem" ||
    die "could not fetch Pebble's intermediate from $mgmt/intermediates/0"
echo "Pebble's root: $(openssl x509 -noout -subject -in "$ROOT")"
echo "Pebble's intermediate: $(openssl x509 -noout -subject -in "$TMP/pebble/intermediate.pem")"

ok=1
fail() { echo "demo: check failed: $*" >&2; ok=0; }

bold "2. the certificate moat serves for SNI $NAME (openssl s_client, verified against Pebble's root)"
echo "\$ openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername $NAME -CAfile root.pem -verify_return_error -verify_hostname $NAME"
s_out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$NAME" -CAfile "$ROOT" \
    -verify_return_error -verify_hostname "$NAME" -showcerts </dev/null 2>&1 || true)
if cert=$(openssl x509 -noout -subject -issuer -dates -ext subjectAltName 2>/dev/null <<<"$s_out"); then
    echo "$cert"
    grep -E '^ *[0-9]+ s:|^ *i:' <<<"$s_out" | sed 's/^ */chain: /'
    grep -E '^(New, |Protocol *:|Server Temp Key|Peer signature type|Verify return code|Verification)' \
        <<<"$s_out" | sed 's/^ *//' | sort -u
    grep -q 'Verify return code: 0 (ok)' <<<"$s_out" || fail "certificate did not verify"
    grep -q "DNS:$NAME" <<<"$cert" || fail "certificate is not for $NAME"
else
    echo "$s_out"
    fail "no certificate from moat"
fi

bold "3. HTTPS through moat to the backend (curl -v, verified against Pebble's root)"
url=https://$NAME:$HTTPS_PORT/
echo "\$ curl -v --cacert root.pem --resolve $NAME:$HTTPS_PORT:127.0.0.1 $url"
if body=$(curl -sS -v --fail --max-time 10 --cacert "$ROOT" \
    --resolve "$NAME:$HTTPS_PORT:127.0.0.1" "$url" 2>"$TMP/curl.err"); then
    grep -v '^[{}] \[' "$TMP/curl.err" # drop curl's "[N bytes data]" trace lines
    echo "$body"
    grep -q 'Hello from the backend' <<<"$body" || fail "not the backend's page"
else
    cat "$TMP/curl.err"
    fail "curl through moat failed"
fi

bold "4. plain HTTP on :$HTTP_PORT redirects to HTTPS (curl -I)"
echo "\$ curl -I --resolve $NAME:$HTTP_PORT:127.0.0.1 http://$NAME:$HTTP_PORT/some/page?x=1"
redir=$(curl -sS -I --max-time 10 --resolve "$NAME:$HTTP_PORT:127.0.0.1" \
    "http://$NAME:$HTTP_PORT/some/page?x=1" 2>&1) || fail "curl to the plain-HTTP port failed"
echo "$redir" | tr -d '\r'
grep -qiE '^HTTP/1\.[01] 30[178]' <<<"$redir" || fail "no redirect"
grep -qiE "^location: https://$NAME(:$HTTPS_PORT)?/some/page\?x=1" <<<"$redir" ||
    fail "redirect does not point at https://$NAME/some/page?x=1"

bold "5. the certificates moat keeps (moat certs list)"
echo "\$ moat certs list --storage $TMP/storage"
if list=$("$MOAT_BIN" certs list --storage "$TMP/storage" 2>&1); then
    echo "$list"
    grep -q "$NAME" <<<"$list" || fail "$NAME not in moat certs list"
else
    echo "$list"
    fail "moat certs list failed"
fi

bold "6. the admin endpoint: health and a few Prometheus metrics"
admin_port=$(sed -n 's/.*"event":"admin_listening".*"port":\([0-9]*\).*/\1/p' "$TMP/moat.log" | head -n 1)
if [[ -n $admin_port ]]; then
    echo "\$ curl http://127.0.0.1:$admin_port/healthz"
    curl -sS --max-time 5 "http://127.0.0.1:$admin_port/healthz" || fail "GET /healthz failed"
    echo "\$ curl http://127.0.0.1:$admin_port/metrics | grep -E 'requests_total|handshakes_total|expiry|orders_total'"
    metrics=$(curl -sS --max-time 5 "http://127.0.0.1:$admin_port/metrics") || fail "GET /metrics failed"
    grep -E '^moat_(requests_total|tls_handshakes_total|certificate_expiry|acme_orders_total)' <<<"$metrics"
    grep -q "moat_requests_total{site=\"$NAME\",code=\"200\"}" <<<"$metrics" ||
        fail "the proxied request is not counted in /metrics"
else
    fail "moat logged no admin_listening line"
fi

sleep 0.3 # let the access log lines reach the file
bold "7. moat's log (stdout + stderr)"
cat "$TMP/moat.log"

bold "backend's log (python3 http.server)"
cat "$TMP/backend.log"

if [[ $ok == 1 ]]; then
    bold "demo OK in $((SECONDS - T0)) s: moat got its certificate for $NAME from the Pebble ACME CA and proxied HTTPS to the plain-HTTP backend"
else
    bold "demo FAILED: see the output above"
    exit 1
fi
