#!/usr/bin/env bash
# Tests the moat container image (deploy/Dockerfile): `make check-image`. Not part of
# `make check`: it needs podman and, for the build, Debian's mirror.
#
# usage: tests/image/test_image.sh           build the image (deploy/image.sh; cached layers
#                                            make a rebuild quick), then test it
#        MOAT_IMAGE_REUSE=1 tests/image/...  test the image already built, if there is one
#
# 1. validate: `moat validate` accepts the image's own /etc/moat/moat.json.
# 2. proxy: the image with a test config mounted read-only (127.0.0.1 listeners on free
#    ports, host network, read-only root filesystem, certificate files made with openssl),
#    in front of a python3 http.server on the host: HTTPS through it reaches the backend,
#    port 80's listener redirects, and the process is moat, uid/gid 10001.
# 3. default: the image's own config and command in a network namespace of its own: moat
#    binds :443 and :80 as uid 10001 (file capability), logs ready although ACME cannot
#    reach the CA, the HEALTHCHECK passes, and SIGTERM (podman stop) ends it with status 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${MOAT_IMAGE:-localhost/moat:latest}
P=(bash deploy/image.sh podman)
NAME=moat-imgtest-$$
T=$(mktemp -d /tmp/moat-imgtest.XXXXXX)
backend_pid=
fails=0

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 && $fails -eq 0 && -s ${PLOG-} ]]; then
        echo "--- podman (test_image.sh stopped with status $rc) ---"
        tail -n 20 "$PLOG"
    fi
    "${P[@]}" rm -f -v -t 0 "$NAME-proxy" "$NAME-default" >/dev/null 2>&1 || true
    if [[ -n $backend_pid ]]; then kill "$backend_pid" 2>/dev/null || true; fi
    rm -rf "$T"
}
trap cleanup EXIT

ok() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; fails=$((fails + 1)); }
check() {  # check DESCRIPTION CMD...: run CMD, report
    local what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_for_log() {  # wait_for_log CONTAINER PATTERN SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        "${P[@]}" logs "$1" 2>&1 | grep -q "$2" && return 0
        sleep 0.1
    done
    return 1
}
status_field() {  # status_field CONTAINER FIELD: a line of /proc/1/status inside it
    "${P[@]}" exec "$1" cat /proc/1/status | awk -v f="$2:" '$1 == f {$1 = ""; print substr($0, 2)}'
}
has_bind_cap() {  # has_bind_cap HEXMASK: CAP_NET_BIND_SERVICE (bit 10) is set
    (( (16#$1 >> 10) & 1 ))
}

# podman's own complaints (without systemd it cannot set up health-check timers, which this
# test does not need: it runs the check itself) go to a log, shown when something fails.
PLOG=$T/podman.log
quiet() { "$@" 2>>"$PLOG"; }

for t in curl openssl python3; do
    command -v "$t" >/dev/null || { echo "test_image.sh: needs $t (make deps installs it)" >&2; exit 1; }
done

start=$SECONDS
if [[ ${MOAT_IMAGE_REUSE:-0} == 1 ]] && "${P[@]}" image exists "$IMAGE"; then
    echo "reusing $IMAGE"
else
    MOAT_IMAGE=$IMAGE bash deploy/image.sh
fi
built=$SECONDS

# 1. The image's own config is valid.
check "validate: moat validate -c /etc/moat/moat.json in the image" \
    quiet "${P[@]}" run --rm --no-healthcheck "$IMAGE" validate -c /etc/moat/moat.json

# 2. A test config, certificate files and a backend.
mkdir -p "$T/certs" "$T/www"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=moat.test -addext subjectAltName=DNS:moat.test \
    -keyout "$T/certs/moat.test.key" -out "$T/certs/moat.test.pem" 2>/dev/null
# uid 10001 in the container reads these through a read-only bind mount.
chmod 0755 "$T" "$T/certs"
chmod 0644 "$T/certs/moat.test.key" "$T/certs/moat.test.pem"
marker="moat-image-test-$$-$RANDOM"
echo "$marker" >"$T/www/index.html"
https_port=$(free_port)
http_port=$(free_port)
backend_port=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$backend_port" \
    >"$T/backend.log" 2>&1 &
backend_pid=$!
cat >"$T/moat.json" <<JSON
{
  "workers": 2,
  "listen": {"https": ["127.0.0.1:$https_port"], "http": ["127.0.0.1:$http_port"]},
  "log": {"level": "info", "access": true},
  "sites": [
    {
      "hosts": ["moat.test"],
      "certificate": {"cert": "/etc/moat/certs/moat.test.pem", "key": "/etc/moat/certs/moat.test.key"},
      "upstreams": ["127.0.0.1:$backend_port"]
    }
  ]
}
JSON
chmod 0644 "$T/moat.json"

quiet "${P[@]}" run -d --name "$NAME-proxy" --network host --read-only --no-healthcheck \
    -v "$T/moat.json:/etc/moat/moat.json:ro" -v "$T/certs:/etc/moat/certs:ro" \
    "$IMAGE" >/dev/null
if wait_for_log "$NAME-proxy" '"ready"' 15; then
    ok "proxy: moat logged ready"
else
    fail "proxy: moat logged ready"
    "${P[@]}" logs "$NAME-proxy" 2>&1 | tail -n 20
fi
body=
for _ in $(seq 50); do
    body=$(curl -sS --noproxy '*' --max-time 5 --cacert "$T/certs/moat.test.pem" \
        --resolve "moat.test:$https_port:127.0.0.1" "https://moat.test:$https_port/" 2>"$T/curl.err") && break
    sleep 0.1
done
if [[ $body == "$marker" ]]; then
    ok "proxy: https://moat.test:$https_port/ through moat returned the backend's page"
else
    fail "proxy: HTTPS through moat (got '${body:0:80}': $(cat "$T/curl.err"))"
fi
redirect=$(curl -sS --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code} %{redirect_url}' \
    -H 'Host: moat.test' "http://127.0.0.1:$http_port/a?b=c" || true)
check "proxy: port $http_port redirects to HTTPS ($redirect)" \
    test "$redirect" == "308 https://moat.test:$https_port/a?b=c"
check "proxy: the container's process 1 is moat" \
    test "$("${P[@]}" exec "$NAME-proxy" cat /proc/1/comm)" == moat
uid=$(status_field "$NAME-proxy" Uid)
gid=$(status_field "$NAME-proxy" Gid)
check "proxy: moat runs as uid 10001 (Uid: $uid) gid 10001 (Gid: $gid)" \
    test "$uid $gid" == "10001 10001 10001 10001 10001 10001 10001 10001"
check "proxy: id -u in the container is 10001" \
    test "$("${P[@]}" exec "$NAME-proxy" id -u)" == 10001
closed_port=$(free_port)
# The image's HEALTHCHECK command, pointed at another port: it must fail where no admin
# endpoint answers, or the check would pass for a dead moat.
health_cmd=$("${P[@]}" image inspect -f '{{index .Config.Healthcheck.Test 3}}' "$IMAGE")
check "proxy: the HEALTHCHECK asks GET /healthz on the admin endpoint" \
    grep -q "/dev/tcp/127.0.0.1/2019.*GET /healthz" <<<"$health_cmd"
check "proxy: the HEALTHCHECK's command fails where nothing listens (127.0.0.1:$closed_port)" \
    bash -c '! "$@" 2>/dev/null' _ "${P[@]}" exec "$NAME-proxy" bash -c "${health_cmd//2019/$closed_port}"
check "proxy: an access log line for the request" \
    bash -c "${P[*]} logs $NAME-proxy 2>&1 | grep -q '\"access\"'"
quiet "${P[@]}" stop -t 15 "$NAME-proxy" >/dev/null
code=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$NAME-proxy")
check "proxy: podman stop (SIGTERM) ends moat with status 0 (got $code)" test "$code" == 0

# 3. The default config and command, in a network namespace of its own (no route out):
#    binding :443 and :80 needs the file capability, and ACME fails without stopping moat.
quiet "${P[@]}" run -d --name "$NAME-default" --network none "$IMAGE" >/dev/null
if wait_for_log "$NAME-default" '"ready"' 15; then
    ok "default: moat started with the image's config and command, listening on :443 and :80"
else
    fail "default: moat started with the image's config and command"
    "${P[@]}" logs "$NAME-default" 2>&1 | tail -n 20
fi
uid=$(status_field "$NAME-default" Uid)
check "default: moat runs as uid 10001 (Uid: $uid)" test "$uid" == "10001 10001 10001 10001"
capeff=$(status_field "$NAME-default" CapEff)
check "default: CAP_NET_BIND_SERVICE is effective (CapEff $capeff)" has_bind_cap "${capeff%% *}"
check "default: HEALTHCHECK (GET /healthz on 127.0.0.1:2019) passes" \
    quiet "${P[@]}" healthcheck run "$NAME-default"
check "default: ACME failing (no network) is logged and moat keeps running" \
    wait_for_log "$NAME-default" '"acme_failed"' 10
check "default: /data is owned by moat" \
    test "$("${P[@]}" exec "$NAME-default" stat -c %u:%g /data)" == 10001:10001
check "default: libcap2-bin (setcap) is not in the image" \
    bash -c "! ${P[*]} exec $NAME-default sh -c 'command -v setcap'"
quiet "${P[@]}" stop -t 15 "$NAME-default" >/dev/null
code=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$NAME-default")
check "default: podman stop (SIGTERM) ends moat with status 0 (got $code)" test "$code" == 0
check "default: moat drained and logged a clean exit" wait_for_log "$NAME-default" '"stopped"' 1
if [[ $fails -gt 0 ]]; then
    for c in proxy default; do
        echo "--- moat log ($c) ---"
        "${P[@]}" logs "$NAME-$c" 2>&1 | tail -n 20
    done
    echo "--- podman ---"
    tail -n 20 "$PLOG"
fi

echo "image test: $fails failure(s); build $((built - start)) s, tests $((SECONDS - built)) s"
[[ $fails -eq 0 ]]
