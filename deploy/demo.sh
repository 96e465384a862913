#!/usr/bin/env bash
# moat demo: HTTPS in front of a plain-HTTP backend, all on 127.0.0.1, nothing left behind.
#
# usage: deploy/demo.sh            (after `make`; `make demo` does both)
#   MOAT_BIN   the moat binary (default: build/moat)
#   KEEP=1     keep the temporary directory (certificates, logs) for a look afterwards
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MOAT_BIN=${MOAT_BIN:-$repo/build/moat}
NAME=demo.moat.test

if [[ -t 1 ]]; then
    bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    bold() { printf '\n== %s\n' "$*"; }
fi
die() { echo "demo: $*" >&2; exit 1; }

cat <<EOF
moat demo — what it shows:
  1. a backend that speaks plain HTTP only (python3 -m http.server on 127.0.0.1),
  2. moat in front of it: \`moat proxy --from $NAME --to 127.0.0.1:PORT\`, terminating TLS
     with an ECDSA P-256 certificate for $NAME (signed by a throwaway demo CA made here;
     later this step becomes a certificate issued by the Pebble ACME test CA),
  3. the certificate moat serves (openssl s_client), an HTTPS request through moat to the
     backend (curl -v, verified against the demo CA), the plain-HTTP port redirecting to
     HTTPS (curl -I), and moat's own log lines (with the access log on).
Everything listens on 127.0.0.1 and is stopped and removed when the demo ends.
EOF

for t in openssl curl python3; do
    command -v "$t" >/dev/null || die "missing $t (run: make deps)"
done
[[ -x $MOAT_BIN ]] || die "no moat binary at $MOAT_BIN (run: make)"

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

# Three free loopback ports (the sockets stay open until all three are chosen: no duplicates).
read -r BACKEND_PORT HTTPS_PORT HTTP_PORT < <(python3 - <<'PY'
import socket
socks = []
for _ in range(3):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*[s.getsockname()[1] for s in socks])
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

# wait_port PORT PID: until PORT is listening, at most 10 s (fails if PID exits first).
wait_port() {
    local port=$1 pid=$2
    for _ in $(seq 100); do
        listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- certificate
# make_certificate sets CAFILE (what clients trust) and MOAT_CERT_ARGS (how moat gets its
# certificate). When ACME lands, a Pebble variant replaces this function: start Pebble +
# pebble-challtestsrv, set MOAT_CERT_ARGS to the ACME options, and CAFILE to Pebble's
# root (fetched from its management port once moat has obtained the certificate).
make_certificate() {
    local d=$TMP/tls
    mkdir -p "$d"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$d/ca.key" -sha256 -days 2 -subj "/CN=moat demo CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$d/ca.pem" 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$NAME.key" 2>/dev/null
    openssl req -new -key "$d/$NAME.key" -subj "/CN=$NAME" -out "$d/$NAME.csr" 2>/dev/null
    cat >"$d/leaf.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:$NAME
EOF
    openssl x509 -req -in "$d/$NAME.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -sha256 -days 1 -extfile "$d/leaf.ext" -out "$d/$NAME.pem" 2>/dev/null
    chmod 600 "$d"/*.key
    CAFILE=$d/ca.pem
    MOAT_CERT_ARGS=(--cert "$d/$NAME.pem" --key "$d/$NAME.key")
    echo "certificate for $NAME: $d/$NAME.pem (key $d/$NAME.key), demo CA: $CAFILE"
}

# -------------------------------------------------------------------- backend
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
    wait_port "$BACKEND_PORT" $! || { cat "$TMP/backend.log" >&2; die "backend did not start"; }
    echo "backend: python3 -m http.server on 127.0.0.1:$BACKEND_PORT (pid $!)"
}

# ----------------------------------------------------------------------- moat
start_moat() {
    local cmd=("$MOAT_BIN" proxy --from "$NAME" --to "127.0.0.1:$BACKEND_PORT" "${MOAT_CERT_ARGS[@]}"
               --https-port "$HTTPS_PORT" --http-port "$HTTP_PORT" --bind 127.0.0.1
               --workers 2 --access-log)
    echo "moat: ${cmd[*]}"
    "${cmd[@]}" >"$TMP/moat.log" 2>&1 &
    MOAT_PID=$!
    PIDS+=("$MOAT_PID")
    if ! wait_port "$HTTPS_PORT" "$MOAT_PID" || ! wait_port "$HTTP_PORT" "$MOAT_PID"; then
        cat "$TMP/moat.log" >&2
        die "moat did not start listening on 127.0.0.1:$HTTPS_PORT and :$HTTP_PORT"
    fi
    echo "moat: listening on https://127.0.0.1:$HTTPS_PORT and http://127.0.0.1:$HTTP_PORT (pid $MOAT_PID)"
}

bold "setup"
make_certificate
start_backend
start_moat

ok=1

bold "1. the certificate moat serves for SNI $NAME (openssl s_client)"
s_out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$NAME" -CAfile "$CAFILE" \
    -verify_hostname "$NAME" </dev/null 2>&1 || true)
if cert=$(openssl x509 -noout -subject -issuer -dates -ext subjectAltName 2>/dev/null <<<"$s_out"); then
    echo "$cert"
    grep -E '^(New, |Protocol *:|Server Temp Key|Peer signature type|Verify return code|Verification)' \
        <<<"$s_out" | sed 's/^ *//' | sort -u
    grep -q 'Verify return code: 0 (ok)' <<<"$s_out" || ok=0
else
    echo "$s_out"
    ok=0
fi

bold "2. HTTPS through moat to the backend (curl -v, verified against the demo CA)"
url=https://$NAME:$HTTPS_PORT/
echo "\$ curl -v --cacert ca.pem --resolve $NAME:$HTTPS_PORT:127.0.0.1 $url"
if body=$(curl -sS -v --fail --max-time 10 --cacert "$CAFILE" \
    --resolve "$NAME:$HTTPS_PORT:127.0.0.1" "$url" 2>"$TMP/curl.err"); then
    grep -v '^[{}] \[' "$TMP/curl.err" # drop curl's "[N bytes data]" trace lines
    echo "$body"
    grep -q 'Hello from the backend' <<<"$body" || ok=0
else
    cat "$TMP/curl.err"
    ok=0
fi

bold "3. plain HTTP on :$HTTP_PORT redirects to HTTPS (curl -I)"
echo "\$ curl -I --resolve $NAME:$HTTP_PORT:127.0.0.1 http://$NAME:$HTTP_PORT/some/page?x=1"
redir=$(curl -sS -I --max-time 10 --resolve "$NAME:$HTTP_PORT:127.0.0.1" \
    "http://$NAME:$HTTP_PORT/some/page?x=1" 2>&1) || ok=0
echo "$redir" | tr -d '\r'
grep -qiE '^HTTP/1\.[01] 30[178]' <<<"$redir" || ok=0

sleep 0.3 # let the access log line reach the file
bold "4. moat's log (stdout + stderr)"
cat "$TMP/moat.log"

bold "backend's log (python3 http.server)"
cat "$TMP/backend.log"

if [[ $ok == 1 ]]; then
    bold "demo OK: moat served $NAME over TLS and proxied to the plain-HTTP backend"
else
    bold "demo FAILED: see the output above"
    exit 1
fi
